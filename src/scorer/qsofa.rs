//! qSOFA (CLINICAL.md §1): RR, SBP and altered mentation from the latest usable values.

use crate::model::{Param, Score, ScoreKind, Timestamp, SCORE_SCHEMA};

use super::state::PatientState;
use super::tables::{QsofaTable, ScoringTables};
use super::{component, missing_component};

/// Points per item; a missing input scores 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QsofaPoints {
    pub resp_rate: u8,
    pub sbp: u8,
    pub mentation: u8,
}

impl QsofaPoints {
    pub fn total(self) -> u8 {
        self.resp_rate + self.sbp + self.mentation
    }
}

/// qSOFA from RR (/min), SBP (mmHg) and GCS; `None` inputs score 0.
pub fn score(rr: Option<f64>, sbp: Option<f64>, gcs: Option<f64>, t: &QsofaTable) -> QsofaPoints {
    QsofaPoints {
        resp_rate: rr.map_or(0, |v| t.resp_rate.points(v)),
        sbp: sbp.map_or(0, |v| t.sbp.points(v)),
        mentation: gcs.map_or(0, |v| t.gcs.points(v)),
    }
}

pub(crate) fn evaluate(st: &PatientState, now: Timestamp, tables: &ScoringTables) -> Score {
    let t = &tables.qsofa;
    let rr = st.latest_of(&[Param::RespRate], now, t.vitals_fresh_ms);
    let sbp = st.latest_of(&[Param::SbpArt, Param::SbpNibp], now, t.vitals_fresh_ms);
    let gcs = st.latest_of(&[Param::Gcs], now, t.gcs_fresh_ms);
    let p = score(
        rr.map(|s| s.value),
        sbp.map(|s| s.value),
        gcs.map(|s| s.value),
        t,
    );
    let mut components = Vec::with_capacity(3);
    let mut missing = Vec::new();
    for (name, sample, points, unit) in [
        ("resp_rate", rr, p.resp_rate, "/min"),
        ("sbp", sbp, p.sbp, "mm[Hg]"),
        ("gcs", gcs, p.mentation, "{score}"),
    ] {
        match sample {
            Some(s) => components.push(component(name, f64::from(points), Some(s), unit)),
            None => {
                missing.push(name.to_string());
                components.push(missing_component(name));
            }
        }
    }
    Score {
        schema: SCORE_SCHEMA,
        kind: ScoreKind::Qsofa,
        patient: st.patient.clone(),
        bed: st.bed.clone(),
        value: f64::from(p.total()),
        components,
        missing,
        window_min: u32::try_from(t.vitals_fresh_ms / 60_000).ok(),
        computed_at: now,
    }
}
