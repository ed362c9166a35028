//! The live view behind the dashboard: per patient, the latest scores with their components,
//! the latest vitals those components carry (with the time of each), and a bounded 24 h
//! history of every score for sparklines.
//!
//! Fed with every score set the alerter sees ([`LiveView::on_scores`]). All ages are virtual:
//! measured from the newest score-set time seen, never from the wall clock, so a replay at any
//! speed shows the same freshness as the ward did.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::model::{Component, Score, ScoreKind, ScoreSet, Timestamp, HOUR_MS, MINUTE_MS};

/// How much history each score keeps.
pub const HISTORY_MS: i64 = 24 * HOUR_MS;
/// One history point per this much virtual time (the worst value within it).
pub const BUCKET_MS: i64 = 5 * MINUTE_MS;
/// Hard cap on points per score (24 h of 5 min buckets, plus the current one).
pub const MAX_POINTS: usize = (HISTORY_MS / BUCKET_MS) as usize + 1;
/// Patients kept; beyond this the least recently updated go first.
pub const MAX_PATIENTS: usize = 2000;
/// A patient with no score set for this long (virtual) leaves the grid.
pub const FORGET_AFTER_MS: i64 = HISTORY_MS;

/// One sparkline point: `[epoch ms, value]`.
pub type Point = (i64, f64);

/// A vital sign as the newest score component reported it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Vital {
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// When the reading was taken.
    pub time: Timestamp,
    /// Virtual seconds from `time` to the newest score set seen.
    pub age_s: i64,
    /// Older than the freshness limit for this kind of value.
    pub stale: bool,
    /// The score whose component carried it.
    pub from: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observation: Option<String>,
}

/// Colour of a bed: the worst finding in its latest scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    None,
    Low,
    Medium,
    High,
    Critical,
}

/// The latest value of one score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoreBrief {
    pub value: f64,
    pub computed_at: Timestamp,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// One tile of the bed grid.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BedView {
    pub patient: String,
    pub unit: Option<String>,
    pub bed: Option<String>,
    /// The newest score set of this patient.
    pub at: Timestamp,
    /// Virtual seconds from `at` to the newest score set seen (any patient).
    pub age_s: i64,
    pub level: Level,
    pub scores: BTreeMap<&'static str, ScoreBrief>,
    pub vitals: BTreeMap<&'static str, Vital>,
    /// Sparkline points per score, oldest first.
    pub trend: BTreeMap<&'static str, Vec<Point>>,
}

/// `GET /api/patients/{id}/scores`: the bed tile plus every latest score with its components
/// and the history of the last `hours`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatientScores {
    #[serde(flatten)]
    pub bed: BedView,
    pub latest: Vec<Score>,
    pub hours: u32,
    pub history: BTreeMap<&'static str, Vec<Point>>,
}

/// The scores the grid draws sparklines for.
pub const GRID_TRENDS: [ScoreKind; 4] = [
    ScoreKind::Qsofa,
    ScoreKind::Sofa,
    ScoreKind::News2,
    ScoreKind::SepsisRisk,
];

/// Component name (per score) → vital key, and how long that kind of value stays fresh.
fn vital_of(kind: ScoreKind, component: &str) -> Option<(&'static str, i64)> {
    const VITAL: i64 = 30 * MINUTE_MS;
    let v = match (kind, component) {
        (_, "heart_rate") | (ScoreKind::News2, "pulse") => ("hr", VITAL),
        (_, "resp_rate") => ("rr", VITAL),
        (_, "spo2") => ("spo2", VITAL),
        (_, "sbp") => ("sbp", VITAL),
        (ScoreKind::SepticShock, "map") => ("map", VITAL),
        (_, "temperature") => ("temp", 4 * HOUR_MS),
        (ScoreKind::Qsofa, "gcs") | (ScoreKind::News2, "consciousness") => ("gcs", 8 * HOUR_MS),
        (ScoreKind::SepticShock, "lactate") => ("lactate", 6 * HOUR_MS),
        (ScoreKind::News2, "air_or_oxygen") => ("fio2", VITAL),
        (ScoreKind::SepticShock, "vasopressor") => ("vasopressor", VITAL),
        _ => return None,
    };
    Some(v)
}

struct Stored {
    value: f64,
    unit: Option<String>,
    time: Timestamp,
    fresh_ms: i64,
    from: &'static str,
    observation: Option<String>,
}

struct PatientLive {
    unit: Option<String>,
    bed: Option<String>,
    at: Timestamp,
    version: u64,
    latest: BTreeMap<ScoreKind, Score>,
    vitals: BTreeMap<&'static str, Stored>,
    history: BTreeMap<ScoreKind, VecDeque<Point>>,
}

impl PatientLive {
    fn apply(&mut self, set: &ScoreSet) {
        if set.unit.is_some() {
            self.unit = set.unit.clone();
        }
        if set.bed.is_some() {
            self.bed = set.bed.clone();
        }
        self.at = self.at.max(set.at);
        for s in &set.scores {
            for c in &s.components {
                self.take_vital(s.kind, c);
            }
            push_point(
                self.history.entry(s.kind).or_default(),
                set.at.millis(),
                s.value,
            );
            // Out-of-order sets must not replace a newer latest value.
            let newer = self
                .latest
                .get(&s.kind)
                .is_none_or(|old| old.computed_at <= s.computed_at);
            if newer {
                self.latest.insert(s.kind, s.clone());
            }
        }
    }

    fn take_vital(&mut self, kind: ScoreKind, c: &Component) {
        let (Some(value), Some(time)) = (c.value, c.time) else {
            return;
        };
        let Some((key, fresh_ms)) = vital_of(kind, &c.name) else {
            return;
        };
        if self.vitals.get(key).is_some_and(|v| v.time > time) {
            return;
        }
        self.vitals.insert(
            key,
            Stored {
                value,
                unit: c.unit.clone(),
                time,
                fresh_ms,
                from: kind.name(),
                observation: c.observation.clone(),
            },
        );
    }

    fn level(&self) -> Level {
        let v = |k| self.latest.get(&k).map(|s: &Score| s.value);
        let news2 = v(ScoreKind::News2).unwrap_or(0.0);
        let news2_single3 = self
            .latest
            .get(&ScoreKind::News2)
            .is_some_and(|s| s.components.iter().any(|c| c.points >= 3.0));
        if v(ScoreKind::SepticShock).unwrap_or(0.0) >= 1.0 {
            Level::Critical
        } else if news2 >= 7.0
            || v(ScoreKind::Qsofa).unwrap_or(0.0) >= 2.0
            || v(ScoreKind::SofaRise).unwrap_or(0.0) >= 2.0
        {
            Level::High
        } else if news2 >= 5.0 || news2_single3 || v(ScoreKind::ShockIndex).unwrap_or(0.0) >= 1.0 {
            Level::Medium
        } else if news2 >= 1.0 || v(ScoreKind::Qsofa).unwrap_or(0.0) >= 1.0 {
            Level::Low
        } else {
            Level::None
        }
    }

    fn view(&self, patient: &str, now: Timestamp) -> BedView {
        let age = |t: Timestamp| now.since(t).max(0) / 1000;
        BedView {
            patient: patient.to_string(),
            unit: self.unit.clone(),
            bed: self.bed.clone(),
            at: self.at,
            age_s: age(self.at),
            level: self.level(),
            scores: self
                .latest
                .iter()
                .map(|(k, s)| {
                    (
                        k.name(),
                        ScoreBrief {
                            value: s.value,
                            computed_at: s.computed_at,
                            missing: s.missing.clone(),
                        },
                    )
                })
                .collect(),
            vitals: self
                .vitals
                .iter()
                .map(|(k, v)| {
                    (
                        *k,
                        Vital {
                            value: v.value,
                            unit: v.unit.clone(),
                            time: v.time,
                            age_s: age(v.time),
                            stale: now.since(v.time) > v.fresh_ms,
                            from: v.from,
                            observation: v.observation.clone(),
                        },
                    )
                })
                .collect(),
            trend: GRID_TRENDS
                .iter()
                .filter_map(|k| {
                    self.history
                        .get(k)
                        .map(|h| (k.name(), h.iter().copied().collect()))
                })
                .collect(),
        }
    }
}

/// Adds a point, one per [`BUCKET_MS`] (the worst value of the bucket, at its newest time),
/// and drops what is older than [`HISTORY_MS`] before it or beyond [`MAX_POINTS`].
fn push_point(h: &mut VecDeque<Point>, at: i64, value: f64) {
    if !value.is_finite() {
        return;
    }
    let bucket = at.div_euclid(BUCKET_MS);
    match h.back_mut() {
        Some(last) if last.0.div_euclid(BUCKET_MS) == bucket => {
            last.0 = last.0.max(at);
            last.1 = last.1.max(value);
        }
        // Older than the newest bucket: the sparkline has moved on.
        Some(last) if last.0 > at => return,
        _ => h.push_back((at, value)),
    }
    let from = at.saturating_sub(HISTORY_MS);
    while h.front().is_some_and(|p| p.0 < from) || h.len() > MAX_POINTS {
        h.pop_front();
    }
}

#[derive(Default)]
struct State {
    patients: HashMap<String, PatientLive>,
    /// The newest score-set time seen: "now" for every age.
    latest_at: Option<Timestamp>,
    version: u64,
}

impl State {
    fn now(&self) -> Timestamp {
        self.latest_at.unwrap_or_default()
    }

    /// Drops patients not heard from within [`FORGET_AFTER_MS`], then the least recently
    /// updated beyond [`MAX_PATIENTS`].
    fn prune(&mut self) {
        let now = self.now();
        self.patients
            .retain(|_, p| now.since(p.at) <= FORGET_AFTER_MS);
        if self.patients.len() > MAX_PATIENTS {
            let mut ages: Vec<(Timestamp, String)> = self
                .patients
                .iter()
                .map(|(k, p)| (p.at, k.clone()))
                .collect();
            ages.sort();
            let excess = self.patients.len() - MAX_PATIENTS;
            for (_, k) in ages.into_iter().take(excess) {
                self.patients.remove(&k);
            }
        }
    }
}

/// A patient id and its state.
type Tenant<'a> = (&'a String, &'a PatientLive);

/// The shared live view.
#[derive(Default)]
pub struct LiveView {
    state: Mutex<State>,
}

impl LiveView {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent data (each update is
        // whole before the lock is released): keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one evaluation of one patient.
    pub fn on_scores(&self, set: &ScoreSet) {
        let mut st = self.lock();
        st.latest_at = Some(st.latest_at.map_or(set.at, |t| t.max(set.at)));
        st.version += 1;
        let version = st.version;
        let p = st
            .patients
            .entry(set.patient.clone())
            .or_insert_with(|| PatientLive {
                unit: None,
                bed: None,
                at: set.at,
                version,
                latest: BTreeMap::new(),
                vitals: BTreeMap::new(),
                history: BTreeMap::new(),
            });
        p.apply(set);
        p.version = version;
        if version % 256 == 0 || st.patients.len() > MAX_PATIENTS {
            st.prune();
        }
    }

    /// The newest score-set time seen.
    pub fn latest_at(&self) -> Option<Timestamp> {
        self.lock().latest_at
    }

    /// The grid: one tile per bed (the newest patient in it), then patients without a bed;
    /// ordered by unit, then bed with numbers in numeric order, then patient.
    pub fn beds(&self) -> Vec<BedView> {
        let st = self.lock();
        let now = st.now();
        // (unit, bed) → the newest patient in it.
        let mut newest: HashMap<(Option<&str>, &str), Tenant<'_>> = HashMap::new();
        let mut unbedded = Vec::new();
        for (id, p) in &st.patients {
            match &p.bed {
                Some(b) => {
                    let key = (p.unit.as_deref(), b.as_str());
                    let e = newest.entry(key).or_insert((id, p));
                    if (p.at, id) > (e.1.at, e.0) {
                        *e = (id, p);
                    }
                }
                None => unbedded.push((id, p)),
            }
        }
        let mut out: Vec<BedView> = newest
            .into_values()
            .chain(unbedded)
            .map(|(id, p)| p.view(id, now))
            .collect();
        out.sort_by(bed_order);
        out
    }

    /// Tiles of patients updated after `version`, and the current version.
    pub fn changed_since(&self, version: u64) -> (Vec<BedView>, u64) {
        let st = self.lock();
        let now = st.now();
        let mut out: Vec<BedView> = st
            .patients
            .iter()
            .filter(|(_, p)| p.version > version)
            .map(|(id, p)| p.view(id, now))
            .collect();
        out.sort_by(bed_order);
        (out, st.version)
    }

    /// One patient's latest scores and the history of the last `hours` (virtual, back from
    /// the newest score set seen).
    pub fn patient(&self, patient: &str, hours: u32) -> Option<PatientScores> {
        let st = self.lock();
        let now = st.now();
        let p = st.patients.get(patient)?;
        let from = now.millis().saturating_sub(i64::from(hours) * HOUR_MS);
        Some(PatientScores {
            bed: p.view(patient, now),
            latest: p.latest.values().cloned().collect(),
            hours,
            history: p
                .history
                .iter()
                .map(|(k, h)| {
                    (
                        k.name(),
                        h.iter().copied().filter(|pt| pt.0 >= from).collect(),
                    )
                })
                .collect(),
        })
    }
}

/// Unit, then bed (numbers compared as numbers, so BED2 < BED10), beds before no bed, then
/// patient.
fn bed_order(a: &BedView, b: &BedView) -> Ordering {
    let bed = |v: &BedView| (v.bed.is_none(), v.unit.clone().unwrap_or_default());
    bed(a)
        .cmp(&bed(b))
        .then_with(|| {
            natural_cmp(
                a.bed.as_deref().unwrap_or(""),
                b.bed.as_deref().unwrap_or(""),
            )
        })
        .then_with(|| a.patient.cmp(&b.patient))
}

/// Compares strings with runs of digits taken as numbers.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.len() - a.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let db = b.len() - b.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let (na, ra) = a.split_at(da);
                let (nb, rb) = b.split_at(db);
                let (ta, tb) = (na.trim_start_matches('0'), nb.trim_start_matches('0'));
                let o = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if o != Ordering::Equal {
                    return o;
                }
                a = ra;
                b = rb;
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                a = &a[x.len_utf8()..];
                b = &b[y.len_utf8()..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SCORE_SCHEMA;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn comp(name: &str, value: f64, time: i64) -> Component {
        Component {
            name: name.into(),
            points: 0.0,
            value: Some(value),
            unit: Some("/min".into()),
            observation: Some(format!("obs-{name}-{time}")),
            time: Some(Timestamp(time)),
            estimated: false,
            note: None,
        }
    }

    fn score(kind: ScoreKind, value: f64, at: i64, components: Vec<Component>) -> Score {
        Score {
            schema: SCORE_SCHEMA,
            kind,
            patient: "P".into(),
            bed: None,
            value,
            components,
            missing: vec![],
            window_min: None,
            computed_at: Timestamp(at),
        }
    }

    fn set(patient: &str, bed: &str, at: i64, scores: Vec<Score>) -> ScoreSet {
        ScoreSet {
            schema: SCORE_SCHEMA,
            patient: patient.into(),
            unit: Some("ICU-A".into()),
            bed: Some(bed.into()),
            at: Timestamp(at),
            scores,
        }
    }

    #[test]
    fn history_is_one_point_per_bucket_with_the_worst_value_and_at_most_24h() {
        let live = LiveView::new();
        // One set a minute for 30 h: NEWS2 rises and falls inside each 5 min bucket.
        for m in 0..(30 * 60) {
            let at = T0 + m * MINUTE_MS;
            let v = if m % 5 == 2 { 9.0 } else { 1.0 };
            live.on_scores(&set(
                "P",
                "BED1",
                at,
                vec![score(ScoreKind::News2, v, at, vec![])],
            ));
        }
        let p = live.patient("P", 48).unwrap();
        let h = &p.history["news2"];
        assert!(h.len() <= MAX_POINTS, "{} points", h.len());
        assert!(h.len() >= MAX_POINTS - 2, "{} points", h.len());
        let newest = T0 + (30 * 60 - 1) * MINUTE_MS;
        assert!(h.iter().all(|pt| pt.0 >= newest - HISTORY_MS));
        // Every full bucket kept its peak, not its last value.
        assert!(h[..h.len() - 1].iter().all(|pt| pt.1 == 9.0));
        // Buckets are distinct and ascending.
        assert!(h
            .windows(2)
            .all(|w| w[0].0 / BUCKET_MS < w[1].0 / BUCKET_MS));
        // The latest value is the last set's, not the bucket's peak.
        assert_eq!(p.bed.scores["news2"].value, 1.0);
        // hours narrows the history.
        let short = live.patient("P", 1).unwrap();
        assert!(short.history["news2"].len() <= 13);
        assert!(short.history["news2"]
            .iter()
            .all(|pt| pt.0 >= newest - HOUR_MS));
    }

    #[test]
    fn an_older_set_does_not_rewrite_history_or_latest() {
        let mut h = VecDeque::new();
        push_point(&mut h, T0 + 20 * MINUTE_MS, 3.0);
        push_point(&mut h, T0, 8.0);
        push_point(&mut h, T0 + 21 * MINUTE_MS, f64::NAN);
        assert_eq!(h, VecDeque::from(vec![(T0 + 20 * MINUTE_MS, 3.0)]));

        let live = LiveView::new();
        let late = T0 + HOUR_MS;
        live.on_scores(&set(
            "P",
            "BED1",
            late,
            vec![score(ScoreKind::Sofa, 4.0, late, vec![])],
        ));
        live.on_scores(&set(
            "P",
            "BED1",
            T0,
            vec![score(ScoreKind::Sofa, 9.0, T0, vec![])],
        ));
        let b = &live.beds()[0];
        assert_eq!(b.scores["sofa"].value, 4.0);
        assert_eq!(b.at, Timestamp(late));
    }

    #[test]
    fn beds_are_ordered_naturally_and_show_the_newest_patient() {
        let live = LiveView::new();
        for (p, bed, at) in [
            ("A", "BED10", T0),
            ("B", "BED2", T0),
            ("C", "BED1", T0),
            ("OLD", "BED3", T0),
            ("NEW", "BED3", T0 + MINUTE_MS),
        ] {
            live.on_scores(&set(
                p,
                bed,
                at,
                vec![score(ScoreKind::Qsofa, 0.0, at, vec![])],
            ));
        }
        let mut s = set("Z", "x", T0, vec![]);
        s.bed = None;
        live.on_scores(&s);
        let order: Vec<(String, Option<String>)> = live
            .beds()
            .into_iter()
            .map(|b| (b.patient, b.bed))
            .collect();
        let want = [
            ("C", Some("BED1")),
            ("B", Some("BED2")),
            ("NEW", Some("BED3")),
            ("A", Some("BED10")),
            ("Z", None),
        ];
        let want: Vec<(String, Option<String>)> = want
            .iter()
            .map(|(p, b)| (p.to_string(), b.map(String::from)))
            .collect();
        assert_eq!(order, want);
        assert_eq!(natural_cmp("BED02", "BED2"), Ordering::Equal);
        assert_eq!(natural_cmp("B9", "B10"), Ordering::Less);
    }

    #[test]
    fn vitals_carry_their_own_time_and_age_on_virtual_time() {
        let live = LiveView::new();
        let at = T0 + 2 * HOUR_MS;
        let hr_time = at - 2 * MINUTE_MS;
        let rr_time = at - 45 * MINUTE_MS;
        let lactate_time = at - 2 * HOUR_MS;
        live.on_scores(&set(
            "P",
            "BED1",
            at,
            vec![
                score(
                    ScoreKind::ShockIndex,
                    0.8,
                    at,
                    vec![
                        comp("heart_rate", 96.0, hr_time),
                        comp("sbp", 120.0, hr_time),
                    ],
                ),
                score(
                    ScoreKind::Qsofa,
                    1.0,
                    at,
                    vec![comp("resp_rate", 23.0, rr_time)],
                ),
                score(
                    ScoreKind::SepticShock,
                    0.0,
                    at,
                    vec![comp("lactate", 2.1, lactate_time)],
                ),
                // Older pulse in NEWS2 must not replace the newer heart rate.
                score(
                    ScoreKind::News2,
                    3.0,
                    at,
                    vec![comp("pulse", 70.0, at - HOUR_MS)],
                ),
            ],
        ));
        // Another patient's later set moves "now" forward by 10 min.
        let later = at + 10 * MINUTE_MS;
        live.on_scores(&set("Q", "BED2", later, vec![]));
        let b = live.beds().into_iter().find(|b| b.patient == "P").unwrap();
        assert_eq!(b.age_s, 600);
        let hr = &b.vitals["hr"];
        assert_eq!(
            (hr.value, hr.time, hr.age_s, hr.stale),
            (96.0, Timestamp(hr_time), 720, false)
        );
        assert_eq!(hr.from, "shock_index");
        assert_eq!(
            hr.observation.as_deref(),
            Some(&*format!("obs-heart_rate-{hr_time}"))
        );
        let rr = &b.vitals["rr"];
        assert_eq!((rr.age_s, rr.stale), (55 * 60, true));
        // Labs stay fresh longer than vitals.
        assert!(!b.vitals["lactate"].stale);
        assert_eq!(b.level, Level::Low);
    }

    #[test]
    fn level_follows_the_worst_finding() {
        let live = LiveView::new();
        live.on_scores(&set(
            "P",
            "BED1",
            T0,
            vec![score(ScoreKind::News2, 7.0, T0, vec![])],
        ));
        assert_eq!(live.beds()[0].level, Level::High);
        live.on_scores(&set(
            "P",
            "BED1",
            T0 + 1,
            vec![score(ScoreKind::SepticShock, 1.0, T0 + 1, vec![])],
        ));
        assert_eq!(live.beds()[0].level, Level::Critical);
    }

    #[test]
    fn quiet_patients_are_forgotten_and_changes_are_versioned() {
        let live = LiveView::new();
        live.on_scores(&set("GONE", "BED1", T0, vec![]));
        let (changed, v1) = live.changed_since(0);
        assert_eq!(changed.len(), 1);
        // 300 sets from another bed, 25 h later: pruning runs and drops the quiet patient.
        for i in 0..300 {
            live.on_scores(&set("HERE", "BED2", T0 + 25 * HOUR_MS + i, vec![]));
        }
        let beds: Vec<String> = live.beds().into_iter().map(|b| b.patient).collect();
        assert_eq!(beds, ["HERE"]);
        let (changed, v2) = live.changed_since(v1);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].patient, "HERE");
        assert!(live.changed_since(v2).0.is_empty());
        assert!(live.patient("GONE", 24).is_none());
    }
}
