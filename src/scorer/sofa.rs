//! Rolling 24 h SOFA (CLINICAL.md §2) and the rise over the patient's baseline.
//!
//! Per hourly row the worst value of each component is scored; a component is the max over
//! the last `window.hours` rows (the current partial row included); missing → 0 and listed.

use crate::model::{Component, Drug, Param, Score, ScoreKind, Timestamp, SCORE_SCHEMA};

use super::state::{Derived, PatientState, Sample, Series};
use super::tables::{Bands, ScoringTables, SofaTable};
use super::{component, missing_component};

/// Respiration points for a P/F (mmHg); 3 and 4 need respiratory support.
pub fn respiration_points(pf: f64, ventilated: bool, t: &SofaTable) -> u8 {
    if ventilated {
        t.pf_ventilated.points(pf)
    } else {
        t.pf_unventilated.points(pf)
    }
}

pub fn coagulation_points(platelets: f64, t: &SofaTable) -> u8 {
    t.platelets.points(platelets)
}

pub fn liver_points(bilirubin: f64, t: &SofaTable) -> u8 {
    t.bilirubin.points(bilirubin)
}

pub fn cns_points(gcs: f64, t: &SofaTable) -> u8 {
    t.gcs.points(gcs)
}

/// Renal points: the worse of creatinine and 24 h urine output (either may be unknown).
pub fn renal_points(creatinine: Option<f64>, urine_per_day: Option<f64>, t: &SofaTable) -> u8 {
    let c = creatinine.map_or(0, |v| t.creatinine.points(v));
    let u = urine_per_day.map_or(0, |v| t.urine_per_day.points(v));
    c.max(u)
}

/// Points for one drug's dose (µg/kg/min) that has run long enough; 0 for unscored drugs.
pub fn dose_points(drug: Drug, dose: f64, t: &SofaTable) -> u8 {
    t.drug_bands
        .iter()
        .find(|(d, _)| *d == drug)
        .map_or(0, |(_, b)| b.points(dose))
}

/// Cardiovascular points from the MAP and the counted doses.
pub fn cardiovascular_points(map: Option<f64>, doses: &[(Drug, f64)], t: &SofaTable) -> u8 {
    let m = map.map_or(0, |v| t.map.points(v));
    doses
        .iter()
        .map(|(d, v)| dose_points(*d, *v, t))
        .fold(m, u8::max)
}

/// Norepinephrine-equivalent dose (µg/kg/min) of the given doses (vasopressin in U/min).
pub fn norepinephrine_equivalent(doses: &[(Drug, f64)], t: &SofaTable) -> f64 {
    doses
        .iter()
        .map(|(d, v)| {
            t.nee_weights
                .iter()
                .find(|(w, _)| w == d)
                .map_or(0.0, |(_, w)| w * v)
        })
        .sum()
}

/// The value that gave a component its points.
#[derive(Clone, Debug)]
struct Cand {
    points: u8,
    value: f64,
    unit: &'static str,
    sample: Sample,
    estimated: bool,
    /// Built only for the winning value: evaluation runs on every reading.
    note: Note,
}

#[derive(Clone, Copy, Debug)]
enum Note {
    None,
    Text(&'static str),
    Dose(Drug, i64),
}

impl Note {
    fn render(self) -> Option<String> {
        match self {
            Note::None => None,
            Note::Text(t) => Some(t.to_string()),
            Note::Dose(d, min) => Some(format!("{} (infusion ≥ {min} min)", d.name())),
        }
    }
}

/// Higher points win; on a tie the newer value, so the evidence is the most recent.
fn keep_worse(best: &mut Option<Cand>, c: Cand) {
    let replace = match best {
        None => true,
        Some(b) => c.points > b.points || (c.points == b.points && c.sample.time > b.sample.time),
    };
    if replace {
        *best = Some(c);
    }
}

fn cand(points: u8, s: &Sample, unit: &'static str) -> Cand {
    Cand {
        points,
        value: s.value,
        unit,
        sample: s.clone(),
        estimated: false,
        note: Note::None,
    }
}

/// SOFA at `now` with what `sofa_rise` needs.
pub(crate) struct SofaEval {
    pub score: Score,
    pub total: f64,
    pub with_data: usize,
}

struct Window {
    from: i64,
    to: i64,
}

/// Worst (min or max) value of `param`'s rows in the window, scored per row.
fn rows_cand(
    st: &PatientState,
    params: &[Param],
    w: &Window,
    lowest: bool,
    bands: &Bands,
    unit: &'static str,
) -> Option<Cand> {
    let mut best = None;
    for p in params {
        let Some(series) = st.series(*p) else {
            continue;
        };
        for (_, agg) in series.rows.range(w.from, w.to) {
            let s = if lowest { &agg.min } else { &agg.max };
            keep_worse(&mut best, cand(bands.points(s.value), s, unit));
        }
    }
    best
}

fn respiration(st: &PatientState, w: &Window, t: &SofaTable) -> Option<Cand> {
    let measured = [
        (st.derived(Derived::PfVentilated), true),
        (st.derived(Derived::PfUnventilated), false),
    ];
    let estimated = [
        (st.derived(Derived::PfEstVentilated), true),
        (st.derived(Derived::PfEstUnventilated), false),
    ];
    let pick = |k: i64, series: &[(Option<&Series>, bool); 2], estimated: bool| {
        let mut best = None;
        for (s, ventilated) in series {
            let Some(agg) = s.and_then(|s| s.rows.get(k)) else {
                continue;
            };
            let mut c = cand(
                respiration_points(agg.min.value, *ventilated, t),
                &agg.min,
                "mm[Hg]",
            );
            c.estimated = estimated;
            c.note = Note::Text(match (estimated, *ventilated) {
                (false, true) => "P/F, ventilated",
                (false, false) => "P/F, not ventilated",
                (true, true) => "P/F estimated from SpO2/FiO2 (Rice), ventilated",
                (true, false) => "P/F estimated from SpO2/FiO2 (Rice), not ventilated",
            });
            keep_worse(&mut best, c);
        }
        best
    };
    if measured.iter().chain(&estimated).all(|(s, _)| s.is_none()) {
        return None;
    }
    let mut best = None;
    for k in w.from..=w.to {
        // A measured P/F in the row takes precedence over estimates.
        let row = pick(k, &measured, false).or_else(|| pick(k, &estimated, true));
        if let Some(c) = row {
            keep_worse(&mut best, c);
        }
    }
    best
}

fn cardiovascular(st: &PatientState, w: &Window, t: &SofaTable) -> Option<Cand> {
    let mut best = rows_cand(
        st,
        &[Param::MapArt, Param::MapNibp],
        w,
        true,
        &t.map,
        "mm[Hg]",
    );
    if let Some(b) = &mut best {
        b.note = Note::Text("MAP");
    }
    for (drug, bands) in &t.drug_bands {
        let Some(series) = st.derived(Derived::CountedDose(*drug)) else {
            continue;
        };
        for (_, agg) in series.rows.range(w.from, w.to) {
            let mut c = cand(bands.points(agg.max.value), &agg.max, drug.dose_unit());
            c.note = Note::Dose(*drug, t.min_infusion_ms / 60_000);
            keep_worse(&mut best, c);
        }
    }
    best
}

/// Urine output over the window scaled to 24 h, when enough of it is documented.
fn urine_per_day(st: &PatientState, w: &Window, t: &SofaTable) -> Option<(f64, Sample)> {
    let series = st.series(Param::UrineVolume)?;
    let mut sum = 0.0;
    let mut last: Option<&Sample> = None;
    for (_, agg) in series.rows.range(w.from, w.to) {
        sum += agg.sum;
        if last.is_none_or(|l| agg.last.time > l.time) {
            last = Some(&agg.last);
        }
    }
    let last = last?;
    let window_start = st.row_end(w.from - 1);
    let start = st.first_urine.map_or(window_start, |f| f.max(window_start));
    let documented = last.time.since(start);
    if documented < t.urine_min_documented_ms || documented <= 0 {
        return None;
    }
    let per_day = sum * (24.0 * 3_600_000.0) / documented as f64;
    Some((
        per_day,
        Sample {
            value: per_day,
            ..last.clone()
        },
    ))
}

fn renal(st: &PatientState, w: &Window, t: &SofaTable) -> Option<Cand> {
    let mut best = rows_cand(st, &[Param::Creatinine], w, false, &t.creatinine, "mg/dL");
    if let Some(b) = &mut best {
        b.note = Note::Text("creatinine");
    }
    if let Some((per_day, s)) = urine_per_day(st, w, t).filter(|_| t.urine_output) {
        let mut c = cand(t.urine_per_day.points(per_day), &s, "mL/d");
        c.note = Note::Text("urine output, scaled to 24 h");
        // On equal points creatinine stays the evidence: it is the measured value.
        if best.as_ref().is_none_or(|b| c.points > b.points) {
            best = Some(c);
        }
    }
    best
}

/// The six organ components, in the order [`SofaHour::points`] holds them.
pub const ORGANS: [&str; 6] = [
    "respiration",
    "coagulation",
    "liver",
    "cardiovascular",
    "cns",
    "renal",
];

/// One hourly row as the scorer sees it: the worst value per input and each component's points
/// for that row alone (`None` = no data in the row). The 24 h components are the maximum of
/// these over the window's rows, except urine output, which is summed over the whole window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SofaHour {
    pub pf_unventilated: Option<f64>,
    pub pf_ventilated: Option<f64>,
    /// Counted dose (µg/kg/min) per scored drug, highest in the row.
    pub doses: Vec<(Drug, f64)>,
    pub map_min: Option<f64>,
    pub gcs_min: Option<f64>,
    /// Urine output over the 24 h window ending with this row, scaled to 24 h.
    pub urine_per_day: Option<f64>,
    pub bilirubin_max: Option<f64>,
    pub creatinine_max: Option<f64>,
    pub platelets_min: Option<f64>,
    /// Points per component in [`ORGANS`] order.
    pub points: [Option<u8>; 6],
}

/// Row `k` of the patient's hourly grid, scored alone. Pure: reads the state as it is, so a
/// caller that wants the running infusions counted up to now evaluates first.
pub fn hourly_row(st: &PatientState, k: i64, tables: &ScoringTables) -> SofaHour {
    let t = &tables.sofa;
    let w = Window { from: k, to: k };
    let row = |s: Option<&Series>, lowest: bool| {
        s.and_then(|s| s.rows.get(k))
            .map(|a| if lowest { a.min.value } else { a.max.value })
    };
    let low = |params: &[Param]| {
        params
            .iter()
            .filter_map(|p| row(st.series(*p), true))
            .reduce(f64::min)
    };
    let doses = t
        .drug_bands
        .iter()
        .filter_map(|(d, _)| row(st.derived(Derived::CountedDose(*d)), false).map(|v| (*d, v)))
        .collect();
    let day = Window {
        from: k - i64::from(t.window_hours) + 1,
        to: k,
    };
    let points = [
        respiration(st, &w, t),
        rows_cand(st, &[Param::Platelets], &w, true, &t.platelets, "10*3/uL"),
        rows_cand(st, &[Param::Bilirubin], &w, false, &t.bilirubin, "mg/dL"),
        cardiovascular(st, &w, t),
        rows_cand(st, &[Param::Gcs], &w, true, &t.gcs, "{score}"),
        renal(st, &w, t),
    ]
    .map(|c| c.map(|c| c.points));
    SofaHour {
        pf_unventilated: row(st.derived(Derived::PfUnventilated), true),
        pf_ventilated: row(st.derived(Derived::PfVentilated), true),
        doses,
        map_min: low(&[Param::MapArt, Param::MapNibp]),
        gcs_min: low(&[Param::Gcs]),
        urine_per_day: urine_per_day(st, &day, t)
            .filter(|_| t.urine_output)
            .map(|(v, _)| v),
        bilirubin_max: row(st.series(Param::Bilirubin), false),
        creatinine_max: row(st.series(Param::Creatinine), false),
        platelets_min: low(&[Param::Platelets]),
        points,
    }
}

/// Doses running at `now` (rate > 0, reported within the carry limit), run-time not required.
pub(crate) fn running_doses(
    st: &PatientState,
    now: Timestamp,
    carry_ms: i64,
) -> Vec<(Drug, &Sample, Option<Timestamp>)> {
    let mut v: Vec<_> = st
        .infusions
        .iter()
        .filter(|(_, i)| {
            i.rate.value > 0.0 && i.rate.time <= now && now.since(i.rate.time) <= carry_ms
        })
        .map(|(d, i)| (*d, &i.rate, i.run_start))
        .collect();
    v.sort_by_key(|(d, _, _)| *d);
    v
}

pub(crate) fn evaluate(st: &PatientState, now: Timestamp, tables: &ScoringTables) -> SofaEval {
    let t = &tables.sofa;
    let to = st.row_of(now);
    let w = Window {
        from: to - i64::from(t.window_hours) + 1,
        to,
    };
    let organs: [(&str, Option<Cand>); 6] = [
        ("respiration", respiration(st, &w, t)),
        (
            "coagulation",
            rows_cand(st, &[Param::Platelets], &w, true, &t.platelets, "10*3/uL"),
        ),
        (
            "liver",
            rows_cand(st, &[Param::Bilirubin], &w, false, &t.bilirubin, "mg/dL"),
        ),
        ("cardiovascular", cardiovascular(st, &w, t)),
        (
            "cns",
            rows_cand(st, &[Param::Gcs], &w, true, &t.gcs, "{score}"),
        ),
        ("renal", renal(st, &w, t)),
    ];
    let mut components = Vec::with_capacity(7);
    let mut missing = Vec::new();
    let mut total = 0.0;
    let mut with_data = 0;
    for (name, c) in organs {
        match c {
            Some(c) => {
                with_data += 1;
                total += f64::from(c.points);
                let mut comp = component(name, f64::from(c.points), Some(&c.sample), c.unit);
                comp.value = Some(c.value);
                comp.estimated = c.estimated;
                comp.note = c.note.render();
                components.push(comp);
            }
            None => {
                missing.push(name.to_string());
                components.push(missing_component(name));
            }
        }
    }
    let doses: Vec<(Drug, f64)> = running_doses(st, now, t.dose_carry_max_ms)
        .into_iter()
        .map(|(d, s, _)| (d, s.value))
        .collect();
    components.push(Component {
        name: "norepinephrine_equivalent".into(),
        points: 0.0,
        value: Some(round(norepinephrine_equivalent(&doses, t), 3)),
        unit: Some("ug/kg/min".into()),
        observation: None,
        time: Some(now),
        estimated: false,
        note: Some("running doses now; for trends, not scored".into()),
    });
    SofaEval {
        score: Score {
            schema: SCORE_SCHEMA,
            kind: ScoreKind::Sofa,
            patient: st.patient.clone(),
            bed: st.bed.clone(),
            value: total,
            components,
            missing,
            window_min: Some(t.window_hours * 60),
            computed_at: now,
        },
        total,
        with_data,
    }
}

/// SOFA total minus the baseline. The baseline is set the first time at least
/// `baseline_min_components` components have data and then follows the running minimum of the
/// total over evaluations with at least that many components (ricu measures Δ against the
/// running minimum). Without a baseline the value is 0 and `missing = ["baseline"]`.
pub(crate) fn rise(
    st: &mut PatientState,
    sofa: &SofaEval,
    now: Timestamp,
    tables: &ScoringTables,
) -> Score {
    if sofa.with_data >= tables.sofa.baseline_min_components {
        st.baseline = Some(st.baseline.map_or(sofa.total, |b| b.min(sofa.total)));
    }
    let mut score = Score {
        schema: SCORE_SCHEMA,
        kind: ScoreKind::SofaRise,
        patient: st.patient.clone(),
        bed: st.bed.clone(),
        value: 0.0,
        components: Vec::new(),
        missing: Vec::new(),
        window_min: Some(tables.sofa.window_hours * 60),
        computed_at: now,
    };
    let total = Component {
        name: "sofa".into(),
        points: sofa.total,
        value: Some(sofa.total),
        unit: None,
        observation: None,
        time: Some(now),
        estimated: false,
        note: Some(format!("{} of 6 components with data", sofa.with_data)),
    };
    score.components.push(total);
    match st.baseline {
        Some(b) => {
            // A total below the baseline (components aged out) is no rise.
            score.value = (sofa.total - b).max(0.0);
            score.components.push(Component {
                name: "baseline".into(),
                points: b,
                value: Some(b),
                unit: None,
                observation: None,
                time: None,
                estimated: false,
                note: Some("running minimum of the total".into()),
            });
        }
        None => score.missing.push("baseline".into()),
    }
    score
}

pub(crate) fn round(v: f64, decimals: u32) -> f64 {
    let f = 10f64.powi(i32::try_from(decimals).unwrap_or(0));
    (v * f).round() / f
}
