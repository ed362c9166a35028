//! Shock index (HR/SBP) and Sepsis-3 septic shock (CLINICAL.md §3, decision 5).

use crate::model::{Param, Score, ScoreKind, Timestamp, SCORE_SCHEMA};

use super::sofa::{round, running_doses};
use super::state::PatientState;
use super::tables::{ScoringTables, ShockTable};
use super::{component, missing_component};

/// HR / SBP rounded to `decimals`; `None` when SBP is not positive.
pub fn shock_index(hr: f64, sbp: f64, decimals: u32) -> Option<f64> {
    (sbp > 0.0).then(|| round(hr / sbp, decimals))
}

/// The septic-shock rule: a vasopressor running and lactate above the threshold. The MAP
/// criterion ("MAP < 65 or a vasopressor keeping it ≥ 65") is met whenever a vasopressor runs.
pub fn septic_shock_met(
    vasopressor_running: bool,
    max_lactate: Option<f64>,
    t: &ShockTable,
) -> bool {
    vasopressor_running && max_lactate.is_some_and(|l| l > t.lactate_above)
}

pub(crate) fn shock_index_score(
    st: &PatientState,
    now: Timestamp,
    tables: &ScoringTables,
) -> Score {
    let t = &tables.shock;
    let hr = st.latest_of(&[Param::HeartRate], now, t.si_fresh_ms);
    let sbp = st.latest_of(&[Param::SbpArt, Param::SbpNibp], now, t.si_fresh_ms);
    let mut missing = Vec::new();
    let mut components = Vec::with_capacity(2);
    for (name, s, unit) in [("heart_rate", hr, "/min"), ("sbp", sbp, "mm[Hg]")] {
        match s {
            Some(s) => components.push(component(name, 0.0, Some(s), unit)),
            None => {
                missing.push(name.to_string());
                components.push(missing_component(name));
            }
        }
    }
    let value = match (hr, sbp) {
        (Some(h), Some(s)) => shock_index(h.value, s.value, t.si_decimals),
        _ => None,
    };
    if value.is_none() && missing.is_empty() {
        missing.push("sbp".into());
    }
    Score {
        schema: SCORE_SCHEMA,
        kind: ScoreKind::ShockIndex,
        patient: st.patient.clone(),
        bed: st.bed.clone(),
        value: value.unwrap_or(0.0),
        components,
        missing,
        window_min: u32::try_from(t.si_fresh_ms / 60_000).ok(),
        computed_at: now,
    }
}

pub(crate) fn septic_shock(st: &PatientState, now: Timestamp, tables: &ScoringTables) -> Score {
    let t = &tables.shock;
    let running: Vec<_> = running_doses(st, now, t.dose_carry_max_ms)
        .into_iter()
        .filter(|(d, _, _)| t.vasopressors.contains(d))
        .collect();
    let map = [Param::MapArt, Param::MapNibp]
        .iter()
        .filter_map(|p| {
            st.series(*p)
                .and_then(|s| s.min_since(now, t.map_window_ms))
        })
        .min_by(|a, b| a.value.total_cmp(&b.value));
    let lactate = st
        .series(Param::Lactate)
        .and_then(|s| s.max_since(now, t.lactate_window_ms));
    let met = septic_shock_met(!running.is_empty(), lactate.map(|s| s.value), t);

    let mut components = Vec::new();
    let mut missing = Vec::new();
    if running.is_empty() {
        let mut c = missing_component("vasopressor");
        c.note = Some("none running".into());
        components.push(c);
    }
    for (drug, rate, since) in &running {
        let mut c = component("vasopressor", 1.0, Some(rate), drug.dose_unit());
        c.note = Some(match since {
            Some(s) => format!("{} running since {s}", drug.name()),
            None => drug.name().to_string(),
        });
        components.push(c);
    }
    match map {
        Some(m) => {
            let low = m.value < t.map_below;
            let mut c = component("map", if low { 1.0 } else { 0.0 }, Some(m), "mm[Hg]");
            c.note = Some(format!(
                "lowest in {} min{}",
                t.map_window_ms / 60_000,
                if low {
                    ""
                } else {
                    "; held by the vasopressor if one runs"
                }
            ));
            components.push(c);
        }
        None => {
            missing.push("map".into());
            components.push(missing_component("map"));
        }
    }
    match lactate {
        Some(l) => {
            let high = l.value > t.lactate_above;
            let mut c = component("lactate", if high { 1.0 } else { 0.0 }, Some(l), "mmol/L");
            c.note = Some(format!("highest in {} min", t.lactate_window_ms / 60_000));
            components.push(c);
        }
        None => {
            missing.push("lactate".into());
            components.push(missing_component("lactate"));
        }
    }
    Score {
        schema: SCORE_SCHEMA,
        kind: ScoreKind::SepticShock,
        patient: st.patient.clone(),
        bed: st.bed.clone(),
        value: if met { 1.0 } else { 0.0 },
        components,
        missing,
        window_min: u32::try_from(t.lactate_window_ms / 60_000).ok(),
        computed_at: now,
    }
}
