//! Per-patient rolling state: what the scores need, and no more.
//!
//! Owns the bounded history of each parameter (hourly rows for the SOFA window, a short
//! per-minute ring for window queries such as "min MAP in the last hour"), the derived series
//! (P/F measured and estimated, doses that count for SOFA), infusion runs, the SOFA baseline and
//! duplicate suppression. Never reads a clock: every time comes from the observations or `now`.

use std::collections::{BTreeMap, HashSet, VecDeque};

use crate::model::{CensusEvent, CensusKind, Drug, ObsId, Observation, Param, Score, Timestamp};
use crate::model::{HOUR_MS, MINUTE_MS};

use super::tables::{DoseInRow, GridAnchor, ScoringTables};

/// Hourly rows kept beyond the scoring window (the partial row and one spare).
/// How long a sedative infusion report is believed without a new one (pumps report every few
/// minutes while running; a stop is reported as flow 0).
pub const SEDATION_CARRY_MS: i64 = 6 * crate::model::HOUR_MS;

const EXTRA_ROWS: i64 = 2;
/// Recent observation ids remembered for duplicate suppression.
const SEEN_IDS: usize = 512;
/// Future device times tolerated before a reading stops counting as "latest".
pub(crate) const FUTURE_SKEW_MS: i64 = 5 * MINUTE_MS;

/// One reading as the scorer keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub time: Timestamp,
    /// The observation id the value came from.
    pub id: ObsId,
}

/// Extremes and last of the samples in one bucket (an hour row or a minute).
#[derive(Clone, Debug)]
pub(crate) struct Agg {
    pub min: Sample,
    pub max: Sample,
    pub last: Sample,
    pub sum: f64,
}

impl Agg {
    fn new(s: Sample) -> Self {
        Agg {
            min: s.clone(),
            max: s.clone(),
            sum: s.value,
            last: s,
        }
    }

    fn add(&mut self, s: Sample) {
        self.sum += s.value;
        if s.value < self.min.value {
            self.min = s.clone();
        }
        if s.value > self.max.value {
            self.max = s.clone();
        }
        if s.time >= self.last.time {
            self.last = s;
        }
    }

    fn merge(&mut self, o: Agg) {
        let sum = self.sum + o.sum;
        self.add(o.min);
        self.add(o.max);
        self.add(o.last);
        self.sum = sum;
    }
}

/// Buckets keyed by an index, sorted, oldest first.
#[derive(Clone, Debug, Default)]
pub(crate) struct Buckets(VecDeque<(i64, Agg)>);

impl Buckets {
    fn add(&mut self, key: i64, s: Sample) {
        match self.0.back_mut() {
            Some((k, agg)) if *k == key => agg.add(s),
            Some((k, _)) if *k < key => self.0.push_back((key, Agg::new(s))),
            None => self.0.push_back((key, Agg::new(s))),
            Some(_) => match self.0.binary_search_by_key(&key, |(k, _)| *k) {
                Ok(i) => {
                    if let Some((_, agg)) = self.0.get_mut(i) {
                        agg.add(s);
                    }
                }
                Err(i) => self.0.insert(i, (key, Agg::new(s))),
            },
        }
    }

    fn add_sum(&mut self, key: i64, agg: Agg) {
        match self.0.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => {
                if let Some((_, a)) = self.0.get_mut(i) {
                    a.merge(agg);
                }
            }
            Err(i) => self.0.insert(i, (key, agg)),
        }
    }

    fn prune_before(&mut self, key: i64) {
        while self.0.front().is_some_and(|(k, _)| *k < key) {
            self.0.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, key: i64) -> Option<&Agg> {
        self.0
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|(_, a)| a)
    }

    /// Buckets with `from <= key <= to`.
    pub fn range(&self, from: i64, to: i64) -> impl DoubleEndedIterator<Item = &(i64, Agg)> {
        self.0.iter().filter(move |(k, _)| *k >= from && *k <= to)
    }
}

/// The bounded history of one parameter.
#[derive(Clone, Debug, Default)]
pub(crate) struct Series {
    /// Hour rows of the SOFA grid, keyed by row index.
    pub rows: Buckets,
    /// Per-minute buckets (minutes since the epoch) for window queries.
    pub ring: Buckets,
    /// How far back the ring reaches, relative to the newest time seen.
    retention_ms: i64,
}

impl Series {
    fn new(retention_ms: i64) -> Self {
        Series {
            retention_ms,
            ..Series::default()
        }
    }

    /// The newest sample, if it is no older than `fresh_ms` at `now`.
    pub fn latest(&self, now: Timestamp, fresh_ms: i64) -> Option<&Sample> {
        let ring = self.ring.0.back().map(|(_, a)| &a.last);
        let row = self.rows.0.back().map(|(_, a)| &a.last);
        let newest = match (ring, row) {
            (Some(a), Some(b)) => Some(if a.time >= b.time { a } else { b }),
            (a, b) => a.or(b),
        }?;
        usable_at(newest, now, fresh_ms).then_some(newest)
    }

    /// The newest sample at or before `t` and no older than `window_ms` before it.
    pub fn at_or_before(&self, t: Timestamp, window_ms: i64) -> Option<&Sample> {
        let min_key = minute_of(t.minus_ms(window_ms));
        for (k, agg) in self.ring.0.iter().rev() {
            if *k > minute_of(t) {
                continue;
            }
            if *k < min_key {
                break;
            }
            let best = [&agg.last, &agg.min, &agg.max]
                .into_iter()
                .filter(|s| s.time <= t && t.since(s.time) <= window_ms)
                .max_by_key(|s| s.time);
            if best.is_some() {
                return best;
            }
        }
        None
    }

    /// Lowest sample in `(now − window_ms, now]` at minute resolution.
    pub fn min_since(&self, now: Timestamp, window_ms: i64) -> Option<&Sample> {
        self.window_samples(now, window_ms, |a| [&a.min, &a.last])
            .min_by(|a, b| a.value.total_cmp(&b.value))
    }

    /// Highest sample in `(now − window_ms, now]` at minute resolution.
    pub fn max_since(&self, now: Timestamp, window_ms: i64) -> Option<&Sample> {
        self.window_samples(now, window_ms, |a| [&a.max, &a.last])
            .max_by(|a, b| a.value.total_cmp(&b.value))
    }

    fn window_samples<'a>(
        &'a self,
        now: Timestamp,
        window_ms: i64,
        pick: impl Fn(&'a Agg) -> [&'a Sample; 2] + 'a,
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        let from = now.minus_ms(window_ms);
        self.ring
            .range(minute_of(from), minute_of(now.plus_ms(FUTURE_SKEW_MS)))
            .flat_map(move |(_, a)| pick(a))
            .filter(move |s| s.time > from && s.time <= now.plus_ms(FUTURE_SKEW_MS))
    }

    fn insert(&mut self, s: Sample, row: i64, keep_row_from: i64, hw: Timestamp) {
        let minute = minute_of(s.time);
        let keep_minute_from = minute_of(hw.minus_ms(self.retention_ms));
        if minute >= keep_minute_from {
            self.ring.add(minute, s.clone());
            self.ring.prune_before(keep_minute_from);
        }
        if row >= keep_row_from {
            self.rows.add(row, s);
            self.rows.prune_before(keep_row_from);
        }
    }

    fn prune(&mut self, keep_row_from: i64, hw: Timestamp) {
        self.rows.prune_before(keep_row_from);
        self.ring
            .prune_before(minute_of(hw.minus_ms(self.retention_ms)));
    }
}

pub(crate) fn usable_at(s: &Sample, now: Timestamp, fresh_ms: i64) -> bool {
    now.since(s.time) <= fresh_ms && s.time.since(now) <= FUTURE_SKEW_MS
}

fn minute_of(t: Timestamp) -> i64 {
    t.millis().div_euclid(MINUTE_MS)
}

/// A drug's infusion as the pump last reported it.
#[derive(Clone, Debug)]
pub(crate) struct Infusion {
    /// The last reported rate (0 = stopped).
    pub rate: Sample,
    /// Start of the current uninterrupted run with rate > 0.
    pub run_start: Option<Timestamp>,
}

/// Recent observation ids, as 64-bit hashes, first in first out.
#[derive(Clone, Debug, Default)]
struct SeenIds {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl SeenIds {
    /// False when `id` was seen recently. The id is already a hash: half of it is the key.
    fn insert(&mut self, id: ObsId) -> bool {
        let key = (id.0 >> 64) as u64 ^ id.0 as u64;
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > SEEN_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Sizes of the state, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub series: usize,
    pub hour_rows: usize,
    pub minute_buckets: usize,
    pub seen_ids: usize,
}

/// Counters of what the state did with its input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub accepted: u64,
    pub duplicates: u64,
    /// Readings with a quality flag: kept out of every score.
    pub flagged: u64,
    /// Readings without a scored parameter or without a finite number.
    pub unscored: u64,
    /// Readings older than the state's window when they arrived.
    pub too_old: u64,
}

/// Derived hourly series the SOFA needs besides the raw parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Derived {
    PfVentilated,
    PfUnventilated,
    PfEstVentilated,
    PfEstUnventilated,
    /// Doses that have run long enough to count (ricu vaso60).
    CountedDose(Drug),
}

/// The rolling state of one patient.
#[derive(Clone, Debug)]
pub struct PatientState {
    pub(crate) patient: String,
    pub(crate) unit: Option<String>,
    pub(crate) bed: Option<String>,
    pub(crate) weight_kg: Option<f64>,
    /// Anchor of the hourly grid: the admit time, else the first observation's time.
    pub(crate) anchor: Option<Timestamp>,
    anchor_from_admit: bool,
    /// Newest clinical time seen (clamped to the receive time): the reference for pruning.
    pub(crate) high_water: Option<Timestamp>,
    // Ordered maps: a dozen keys, looked up on every evaluation; cheaper than SipHash.
    pub(crate) series: BTreeMap<Param, Series>,
    pub(crate) derived: BTreeMap<Derived, Series>,
    pub(crate) last_measured_pf: Option<Timestamp>,
    pub(crate) last_vent: Option<Timestamp>,
    /// The latest sedative-infusion run: (start, last report or stop time, still running).
    pub(crate) sedation: Option<(Timestamp, Timestamp, bool)>,
    pub(crate) infusions: BTreeMap<Drug, Infusion>,
    pub(crate) first_urine: Option<Timestamp>,
    /// SOFA baseline for `sofa_rise`; see `sofa::rise`.
    pub(crate) baseline: Option<f64>,
    pub(crate) hypercapnic: bool,
    seen: SeenIds,
    pub(crate) counts: StateCounts,
    pub(crate) last_activity: Option<Timestamp>,
    /// What the risk models read (`risk_features`).
    pub(crate) risk: super::risk_features::RiskState,
}

impl PatientState {
    pub fn new(patient: &str) -> Self {
        PatientState {
            patient: patient.to_string(),
            unit: None,
            bed: None,
            weight_kg: None,
            anchor: None,
            anchor_from_admit: false,
            high_water: None,
            series: BTreeMap::new(),
            derived: BTreeMap::new(),
            last_measured_pf: None,
            last_vent: None,
            sedation: None,
            infusions: BTreeMap::new(),
            first_urine: None,
            baseline: None,
            hypercapnic: false,
            seen: SeenIds::default(),
            counts: StateCounts::default(),
            last_activity: None,
            risk: Default::default(),
        }
    }

    pub fn patient(&self) -> &str {
        &self.patient
    }
    pub fn unit(&self) -> Option<&str> {
        self.unit.as_deref()
    }
    pub fn bed(&self) -> Option<&str> {
        self.bed.as_deref()
    }
    pub fn weight_kg(&self) -> Option<f64> {
        self.weight_kg
    }
    /// The hourly grid's anchor (admit time, else the first observation's time).
    pub fn anchor(&self) -> Option<Timestamp> {
        self.anchor
    }
    pub fn counts(&self) -> StateCounts {
        self.counts
    }
    /// Flagged readings seen (kept out of the scores).
    pub fn flagged_count(&self) -> u64 {
        self.counts.flagged
    }
    pub fn last_activity(&self) -> Option<Timestamp> {
        self.last_activity
    }
    /// Score NEWS2 SpO2 on Scale 2 regardless of the bed table.
    pub fn set_hypercapnic(&mut self, on: bool) {
        self.hypercapnic = on;
    }
    pub fn hypercapnic(&self) -> bool {
        self.hypercapnic
    }

    pub fn footprint(&self) -> Footprint {
        let all = self.series.values().chain(self.derived.values());
        let mut f = Footprint {
            seen_ids: self.seen.order.len(),
            ..Footprint::default()
        };
        for s in all {
            f.series += 1;
            f.hour_rows += s.rows.len();
            f.minute_buckets += s.ring.len();
        }
        f
    }

    /// Census with the default grid (row 0 ends at the admit time).
    pub fn on_census(&mut self, ev: &CensusEvent) {
        self.on_census_anchored(ev, GridAnchor::Admit);
    }

    /// Census with the grid anchor the SOFA table asks for.
    pub fn on_census_with(&mut self, ev: &CensusEvent, tables: &ScoringTables) {
        self.on_census_anchored(ev, tables.sofa.anchor);
    }

    fn on_census_anchored(&mut self, ev: &CensusEvent, anchor: GridAnchor) {
        if ev.unit.is_some() {
            self.unit.clone_from(&ev.unit);
        }
        if ev.bed.is_some() {
            self.bed.clone_from(&ev.bed);
        }
        if let Some(w) = ev.weight_kg.filter(|w| w.is_finite() && *w > 0.0) {
            self.weight_kg = Some(w);
        }
        if ev.kind == CensusKind::Admit && !self.anchor_from_admit {
            self.set_anchor(anchor.anchor(ev.time));
            self.anchor_from_admit = true;
        }
    }

    /// Re-keys the hour rows on a new anchor; each row moves with its newest sample, so an
    /// extreme can shift by at most one row.
    fn set_anchor(&mut self, anchor: Timestamp) {
        if self.anchor == Some(anchor) {
            return;
        }
        self.anchor = Some(anchor);
        for s in self.series.values_mut().chain(self.derived.values_mut()) {
            let old = std::mem::take(&mut s.rows);
            for (_, agg) in old.0 {
                s.rows.add_sum(row_index(anchor, agg.last.time), agg);
            }
        }
    }

    /// Row k covers (anchor + (k−1) h, anchor + k h].
    pub(crate) fn row_of(&self, t: Timestamp) -> i64 {
        row_index(self.anchor.unwrap_or(t), t)
    }

    /// The hourly row that holds time `t`: row k covers (anchor + (k−1) h, anchor + k h].
    pub fn row_at(&self, t: Timestamp) -> i64 {
        self.row_of(t)
    }

    /// End of row k.
    pub(crate) fn row_end(&self, k: i64) -> Timestamp {
        self.anchor
            .unwrap_or_default()
            .plus_ms(k.saturating_mul(HOUR_MS))
    }

    fn keep_row_from(&self, t: Timestamp, tables: &ScoringTables) -> i64 {
        self.row_of(t) - i64::from(tables.sofa.window_hours) - EXTRA_ROWS + 1
    }

    /// Takes one reading. False when it is a duplicate or cannot be scored (flagged, no
    /// parameter, not a number, older than the window).
    pub fn on_observation(&mut self, obs: &Observation, tables: &ScoringTables) -> bool {
        if !self.seen.insert(obs.id) {
            self.counts.duplicates += 1;
            return false;
        }
        // Observation strings are shared `Arc<str>`; copy into the kept buffers.
        for (mine, theirs) in [(&mut self.unit, obs.unit()), (&mut self.bed, obs.bed())] {
            if let Some(t) = theirs {
                let s = mine.get_or_insert_with(String::new);
                s.clear();
                s.push_str(t);
            }
        }
        self.last_activity = Some(
            self.last_activity
                .map_or(obs.receive_time, |t| t.max(obs.receive_time)),
        );
        if !obs.is_usable() {
            self.counts.flagged += 1;
            return false;
        }
        if let Some(v) = obs.numeric().filter(|v| v.is_finite()) {
            self.risk.on_observation(obs, v);
        }
        let (Some(param), Some(value)) = (obs.param, obs.numeric().filter(|v| v.is_finite()))
        else {
            self.counts.unscored += 1;
            return false;
        };
        let t = obs.corrected_time;
        if self.anchor.is_none() {
            self.anchor = Some(t);
        }
        // A device clock far ahead must not push everything else out of the window.
        let clamped = t.min(obs.receive_time.plus_ms(FUTURE_SKEW_MS));
        let hw = self.high_water.map_or(clamped, |h| h.max(clamped));
        self.high_water = Some(hw);
        let keep = self.keep_row_from(hw, tables);
        if self.row_of(t) < keep {
            self.counts.too_old += 1;
            return false;
        }
        self.counts.accepted += 1;
        let s = Sample {
            value,
            time: t,
            id: obs.id,
        };
        let mut s = s;
        if param == Param::Gcs {
            s.value = self.gcs_as_scored(s.value, t);
        }
        self.add(param, s.clone(), tables, hw);
        match param {
            Param::Dose(drug) => self.on_dose(drug, s, tables),
            Param::PaO2 => self.on_pao2(s, tables, hw),
            Param::SpO2 => self.on_spo2(s, tables, hw),
            Param::GcsEye | Param::GcsMotor | Param::GcsVerbal => self.on_gcs_part(s, tables, hw),
            Param::UrineVolume => {
                self.first_urine = Some(self.first_urine.map_or(t, |f| f.min(t)));
            }
            Param::Weight => self.weight_kg = Some(value),
            Param::Sedation => {
                let running = value > 0.0;
                self.sedation = match (self.sedation, running) {
                    (Some((start, last, true)), true) => Some((start, last.max(t), true)),
                    (Some((start, _, true)), false) => Some((start, t, false)),
                    (_, true) => Some((t, t, true)),
                    (other, false) => other,
                };
            }
            p if tables.sofa.ventilator_params.contains(&p) => {
                self.last_vent = Some(self.last_vent.map_or(t, |v| v.max(t)));
            }
            _ => {}
        }
        if self.counts.accepted % 64 == 0 {
            self.prune(hw, tables);
        }
        true
    }

    fn add(&mut self, param: Param, s: Sample, tables: &ScoringTables, hw: Timestamp) {
        let row = self.row_of(s.time);
        let keep = self.keep_row_from(hw, tables);
        self.series
            .entry(param)
            .or_insert_with(|| Series::new(tables.ring_retention_ms(param)))
            .insert(s, row, keep, hw);
    }

    fn add_derived(&mut self, d: Derived, s: Sample, tables: &ScoringTables, hw: Timestamp) {
        let row = self.row_of(s.time);
        let keep = self.keep_row_from(hw, tables);
        // Derived series answer only hour-row questions; no ring.
        self.derived
            .entry(d)
            .or_insert_with(|| Series::new(0))
            .insert(s, row, keep, hw);
    }

    pub(crate) fn prune(&mut self, now: Timestamp, tables: &ScoringTables) {
        let hw = self.high_water.map_or(now, |h| h.max(now));
        let keep = self.keep_row_from(hw, tables);
        for s in self.series.values_mut().chain(self.derived.values_mut()) {
            s.prune(keep, hw);
        }
        self.series.retain(|_, s| s.rows.len() + s.ring.len() > 0);
        self.derived.retain(|_, s| s.rows.len() > 0);
    }

    /// Ventilated at `t`: a ventilator parameter seen within the window before it.
    pub(crate) fn ventilated_at(&self, t: Timestamp, window_ms: i64) -> bool {
        self.last_vent
            .is_some_and(|v| v <= t.plus_ms(FUTURE_SKEW_MS) && t.since(v) <= window_ms)
    }

    fn fio2_at(&self, t: Timestamp, tables: &ScoringTables) -> Option<(f64, Option<Sample>)> {
        let charted = self
            .series
            .get(&Param::FiO2)
            .and_then(|s| s.at_or_before(t, tables.sofa.fio2_pair_window_ms));
        match charted {
            Some(s) => Some((s.value, Some(s.clone()))),
            None if tables.sofa.assume_room_air_without_fio2 => Some((21.0, None)),
            None => None,
        }
    }

    fn on_pao2(&mut self, s: Sample, tables: &ScoringTables, hw: Timestamp) {
        let Some((fio2, _)) = self.fio2_at(s.time, tables) else {
            return;
        };
        let Some(pf) = pf_ratio(s.value, fio2) else {
            return;
        };
        self.last_measured_pf = Some(self.last_measured_pf.map_or(s.time, |p| p.max(s.time)));
        let d = if self.ventilated_at(s.time, tables.sofa.ventilation_window_ms) {
            Derived::PfVentilated
        } else {
            Derived::PfUnventilated
        };
        self.add_derived(d, Sample { value: pf, ..s }, tables, hw);
    }

    fn on_spo2(&mut self, s: Sample, tables: &ScoringTables, hw: Timestamp) {
        let sf = &tables.sofa.sf_estimate;
        if !sf.enabled || s.value > sf.spo2_max {
            return;
        }
        // A measured P/F within the pairing window makes an estimate unnecessary.
        if self
            .last_measured_pf
            .is_some_and(|p| p <= s.time && s.time.since(p) <= tables.sofa.fio2_pair_window_ms)
        {
            return;
        }
        let Some((fio2, _)) = self.fio2_at(s.time, tables) else {
            return;
        };
        let Some(pf) = rice_pf_from_sf(s.value, fio2, sf.intercept, sf.slope) else {
            return;
        };
        let d = if self.ventilated_at(s.time, tables.sofa.ventilation_window_ms) {
            Derived::PfEstVentilated
        } else {
            Derived::PfEstUnventilated
        };
        self.add_derived(d, Sample { value: pf, ..s }, tables, hw);
    }

    /// A GCS charted while a sedative infusion runs counts as 15 (ricu: sedated → 15; CLINICAL.md
    /// §1): it reflects the drug, not the brain. "Runs" = the GCS time lies in the current run
    /// of sedative reports (from its first running report to its stop, or to the last running
    /// report plus `SEDATION_CARRY_MS`), so a GCS charted late still finds the run it fell in.
    fn gcs_as_scored(&self, gcs: f64, at: Timestamp) -> f64 {
        match self.sedation {
            Some((start, last, running)) if start <= at => {
                let until = if running {
                    last.plus_ms(SEDATION_CARRY_MS)
                } else {
                    last
                };
                if at <= until {
                    15.0
                } else {
                    gcs
                }
            }
            _ => gcs,
        }
    }

    /// Builds a GCS total from E/M/V: a part older than the window counts as its maximum
    /// (ricu), so a lone part still yields a total.
    fn on_gcs_part(&mut self, s: Sample, tables: &ScoringTables, hw: Timestamp) {
        let win = tables.sofa.gcs_component_window_ms;
        let part = |p: Param, max: f64| {
            self.series
                .get(&p)
                .and_then(|x| x.at_or_before(s.time, win))
                .map_or(max, |x| x.value)
        };
        let total =
            part(Param::GcsEye, 4.0) + part(Param::GcsVerbal, 5.0) + part(Param::GcsMotor, 6.0);
        let value = self.gcs_as_scored(total, s.time);
        self.add(Param::Gcs, Sample { value, ..s }, tables, hw);
    }

    /// Tracks the run of an infusion and records, per hour row, the rate once it has run
    /// `min_infusion_ms` without a stop (ricu vaso60). Doses are assumed to arrive in time
    /// order per drug; an older one only enters the raw series.
    fn on_dose(&mut self, drug: Drug, s: Sample, tables: &ScoringTables) {
        let carry = tables.sofa.dose_carry_max_ms;
        let prev = self.infusions.get(&drug).cloned();
        if let Some(p) = &prev {
            if s.time < p.rate.time {
                return;
            }
            self.close_segment(drug, p, s.time, tables);
        }
        let continuing = prev.as_ref().and_then(|p| {
            (p.rate.value > 0.0 && s.time.since(p.rate.time) <= carry)
                .then_some(p.run_start)
                .flatten()
        });
        let run_start = (s.value > 0.0).then(|| continuing.unwrap_or(s.time));
        self.infusions.insert(drug, Infusion { rate: s, run_start });
    }

    /// Records the counted dose of the segment from the last report up to `to`.
    fn close_segment(&mut self, drug: Drug, inf: &Infusion, to: Timestamp, tables: &ScoringTables) {
        let Some(start) = inf.run_start else { return };
        if inf.rate.value <= 0.0 {
            return;
        }
        let end = to.min(inf.rate.time.plus_ms(tables.sofa.dose_carry_max_ms));
        let from = inf
            .rate
            .time
            .max(start.plus_ms(tables.sofa.min_infusion_ms));
        if from > end {
            return;
        }
        let hw = self.high_water.unwrap_or(end).max(end);
        let keep = self.keep_row_from(hw, tables);
        let (k0, k1) = (self.row_of(from).max(keep), self.row_of(end));
        for k in k0..=k1 {
            let row_end = self.row_end(k);
            // mimic-code: a row holds the rate running up to its end (start < end ≤ stop).
            if tables.sofa.dose_in_row == DoseInRow::AtRowEnd && !(from < row_end && row_end <= end)
            {
                continue;
            }
            let time = row_end.min(end).max(from);
            let s = Sample {
                value: inf.rate.value,
                time,
                id: inf.rate.id,
            };
            self.add_derived(Derived::CountedDose(drug), s, tables, hw);
        }
    }

    /// Extends every running infusion's counted dose up to `now`.
    pub(crate) fn close_open_segments(&mut self, now: Timestamp, tables: &ScoringTables) {
        let running: Vec<(Drug, Infusion)> = self
            .infusions
            .iter()
            .filter(|(_, i)| i.rate.value > 0.0 && i.rate.time <= now)
            .map(|(d, i)| (*d, i.clone()))
            .collect();
        for (d, inf) in running {
            self.close_segment(d, &inf, now, tables);
        }
    }

    /// Evaluates every score at `now`: qsofa, sofa, sofa_rise, news2, shock_index, septic_shock.
    pub fn evaluate(&mut self, now: Timestamp, tables: &ScoringTables) -> Vec<Score> {
        if self.anchor.is_none() {
            self.anchor = Some(now);
        }
        self.close_open_segments(now, tables);
        self.prune(now, tables);
        let sofa = super::sofa::evaluate(self, now, tables);
        let rise = super::sofa::rise(self, &sofa, now, tables);
        vec![
            super::qsofa::evaluate(self, now, tables),
            sofa.score,
            rise,
            super::news2::evaluate(self, now, tables),
            super::shock::shock_index_score(self, now, tables),
            super::shock::septic_shock(self, now, tables),
        ]
    }

    pub(crate) fn series(&self, p: Param) -> Option<&Series> {
        self.series.get(&p)
    }

    pub(crate) fn derived(&self, d: Derived) -> Option<&Series> {
        self.derived.get(&d)
    }

    /// The newer of two parameters' latest usable values (e.g. arterial vs NIBP).
    pub(crate) fn latest_of(
        &self,
        params: &[Param],
        now: Timestamp,
        fresh_ms: i64,
    ) -> Option<&Sample> {
        params
            .iter()
            .filter_map(|p| self.series(*p).and_then(|s| s.latest(now, fresh_ms)))
            .max_by_key(|s| s.time)
    }
}

/// Row k covers (anchor + (k−1) h, anchor + k h], i.e. k = ⌈(t − anchor) / 1 h⌉.
pub(crate) fn row_index(anchor: Timestamp, t: Timestamp) -> i64 {
    -(anchor.millis().saturating_sub(t.millis())).div_euclid(HOUR_MS)
}

/// P/F in mmHg from PaO2 (mmHg) and FiO2 (%).
pub fn pf_ratio(pao2: f64, fio2_pct: f64) -> Option<f64> {
    // 100 · PaO2 / FiO2 rather than PaO2 / (FiO2 / 100): exact for whole numbers, so a ratio
    // of exactly 300 or 400 is not pushed across a band by rounding (84 / 0.28 ≠ 300 in f64).
    (fio2_pct > 0.0 && fio2_pct <= 100.0).then(|| 100.0 * pao2 / fio2_pct)
}

/// Rice 2007: S/F = intercept + slope · P/F, so P/F = (S/F − intercept) / slope.
pub fn rice_pf_from_sf(spo2: f64, fio2_pct: f64, intercept: f64, slope: f64) -> Option<f64> {
    let sf = pf_ratio(spo2, fio2_pct)?;
    (slope > 0.0).then(|| (sf - intercept) / slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_index_is_left_open_right_closed() {
        let a = Timestamp(1_000_000_000);
        assert_eq!(row_index(a, a), 0);
        assert_eq!(row_index(a, a.plus_ms(1)), 1);
        assert_eq!(row_index(a, a.plus_ms(HOUR_MS)), 1);
        assert_eq!(row_index(a, a.plus_ms(HOUR_MS + 1)), 2);
        assert_eq!(row_index(a, a.minus_ms(1)), 0);
        assert_eq!(row_index(a, a.minus_ms(HOUR_MS)), -1);
        assert_eq!(row_index(a, a.minus_ms(HOUR_MS + 1)), -1);
    }

    #[test]
    fn rice_mapping_numbers() {
        // S/F 235 ≈ P/F 200 and 315 ≈ 300 (CLINICAL.md §2.3).
        let pf = |spo2, fio2| rice_pf_from_sf(spo2, fio2, 64.0, 0.84).unwrap();
        assert!((pf(94.0, 40.0) - (235.0 - 64.0) / 0.84).abs() < 1e-9);
        assert!(((235.0f64 - 64.0) / 0.84 - 203.6).abs() < 0.1);
        assert!(((315.0f64 - 64.0) / 0.84 - 298.8).abs() < 0.1);
        // SpO2 90 % on air: S/F 428.6 → P/F 434.0.
        assert!((pf(90.0, 21.0) - 434.0).abs() < 0.05);
        assert_eq!(pf_ratio(80.0, 0.0), None);
        assert_eq!(pf_ratio(80.0, 40.0), Some(200.0));
    }

    #[test]
    fn seen_ids_forget_the_oldest() {
        let mut s = SeenIds::default();
        let a = ObsId::of_text("a");
        assert!(s.insert(a));
        assert!(!s.insert(a));
        for i in 0..SEEN_IDS {
            assert!(s.insert(ObsId::of_text(&i.to_string())));
        }
        assert_eq!(s.order.len(), SEEN_IDS);
        assert!(s.insert(a), "evicted after {SEEN_IDS} newer ids");
    }
}
