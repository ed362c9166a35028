//! NEWS2 (CLINICAL.md §3.1): seven parameters from the latest usable values.

use crate::model::{Component, Param, Score, ScoreKind, Timestamp, SCORE_SCHEMA};

use super::state::PatientState;
use super::tables::{News2Table, ScoringTables};
use super::{component, missing_component};

/// Name of the component that carries the highest single-parameter points (not in the total).
pub const MAX_SINGLE: &str = "max_single";

pub fn resp_rate_points(v: f64, t: &News2Table) -> u8 {
    t.resp_rate.points(v)
}

/// SpO2 points: Scale 1, or Scale 2 (hypercapnic) where oxygen matters.
pub fn spo2_points(v: f64, scale2: bool, on_oxygen: bool, t: &News2Table) -> u8 {
    match (scale2, on_oxygen) {
        (false, _) => t.spo2_scale1.points(v),
        (true, false) => t.spo2_scale2_air.points(v),
        (true, true) => t.spo2_scale2_o2.points(v),
    }
}

pub fn oxygen_points(on_oxygen: bool, t: &News2Table) -> u8 {
    if on_oxygen {
        t.o2_points
    } else {
        0
    }
}

pub fn sbp_points(v: f64, t: &News2Table) -> u8 {
    t.sbp.points(v)
}

pub fn pulse_points(v: f64, t: &News2Table) -> u8 {
    t.pulse.points(v)
}

pub fn temperature_points(v: f64, t: &News2Table) -> u8 {
    t.temperature.points(v)
}

/// GCS → AVPU as ricu: at least `alert_gcs_min` is Alert (0), anything lower is not.
pub fn consciousness_points(gcs: f64, t: &News2Table) -> u8 {
    if gcs >= t.alert_gcs_min {
        0
    } else {
        t.not_alert_points
    }
}

/// True when a single NEWS2 parameter scored 3 (the "low–medium" trigger).
pub fn any_single_three(score: &Score) -> bool {
    score
        .components
        .iter()
        .find(|c| c.name == MAX_SINGLE)
        .and_then(|c| c.value)
        .is_some_and(|v| v >= 3.0)
}

pub(crate) fn evaluate(st: &PatientState, now: Timestamp, tables: &ScoringTables) -> Score {
    let t = &tables.news2;
    let vit = t.vitals_fresh_ms;
    let rr = st.latest_of(&[Param::RespRate], now, vit);
    let spo2 = st.latest_of(&[Param::SpO2], now, vit);
    let sbp = st.latest_of(&[Param::SbpArt, Param::SbpNibp], now, vit);
    let pulse = st.latest_of(&[Param::HeartRate], now, vit);
    let temp = st.latest_of(&[Param::Temp], now, t.temperature_fresh_ms);
    let gcs = st.latest_of(&[Param::Gcs], now, t.gcs_fresh_ms);
    let fio2 = st.latest_of(&[Param::FiO2], now, t.o2_window_ms);
    let ventilated = st.ventilated_at(now, t.o2_window_ms);
    let on_o2 = ventilated || fio2.is_some_and(|f| f.value > t.o2_fio2_above);
    let scale2 = st.hypercapnic || t.bed_is_hypercapnic(st.unit.as_deref(), st.bed.as_deref());

    let mut components: Vec<Component> = Vec::with_capacity(8);
    let mut missing = Vec::new();
    let mut total = 0u32;
    let mut max_single = 0u8;
    let items = [
        (
            "resp_rate",
            rr,
            "/min",
            rr.map(|s| resp_rate_points(s.value, t)),
        ),
        (
            "spo2",
            spo2,
            "%",
            spo2.map(|s| spo2_points(s.value, scale2, on_o2, t)),
        ),
        ("sbp", sbp, "mm[Hg]", sbp.map(|s| sbp_points(s.value, t))),
        (
            "pulse",
            pulse,
            "/min",
            pulse.map(|s| pulse_points(s.value, t)),
        ),
        (
            "consciousness",
            gcs,
            "{score}",
            gcs.map(|s| consciousness_points(s.value, t)),
        ),
        (
            "temperature",
            temp,
            "Cel",
            temp.map(|s| temperature_points(s.value, t)),
        ),
    ];
    for (name, sample, unit, points) in items {
        match (sample, points) {
            (Some(s), Some(p)) => {
                total += u32::from(p);
                max_single = max_single.max(p);
                let mut c = component(name, f64::from(p), Some(s), unit);
                if name == "spo2" && scale2 {
                    c.note = Some("scale 2".into());
                }
                if name == "consciousness" {
                    c.note = Some(if p == 0 { "A" } else { "not A (GCS)" }.into());
                }
                components.push(c);
            }
            _ => {
                missing.push(name.to_string());
                components.push(missing_component(name));
            }
        }
    }
    let o2p = oxygen_points(on_o2, t);
    total += u32::from(o2p);
    max_single = max_single.max(o2p);
    let mut o2 = component("air_or_oxygen", f64::from(o2p), fio2, "%");
    o2.note = Some(
        match (on_o2, ventilated) {
            (true, true) => "oxygen (ventilated)",
            (true, false) => "oxygen",
            (false, _) => "air",
        }
        .into(),
    );
    if fio2.is_none() && !ventilated {
        // Scored as air, but say that nothing told us so.
        missing.push("fio2".into());
    }
    components.push(o2);
    components.push(Component {
        name: MAX_SINGLE.into(),
        points: 0.0,
        value: Some(f64::from(max_single)),
        unit: None,
        observation: None,
        time: None,
        estimated: false,
        note: Some(if max_single >= 3 {
            "any single 3; not part of the total".into()
        } else {
            "highest single parameter; not part of the total".into()
        }),
    });
    Score {
        schema: SCORE_SCHEMA,
        kind: ScoreKind::News2,
        patient: st.patient.clone(),
        bed: st.bed.clone(),
        value: f64::from(total),
        components,
        missing,
        window_min: u32::try_from(vit / 60_000).ok(),
        computed_at: now,
    }
}
