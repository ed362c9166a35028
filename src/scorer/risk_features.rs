//! Rolling features for the risk models: the one feature code used both to train the fitted
//! model (`vigil train physionet`) and to serve it in the live scorer, so the two cannot drift.
//!
//! Owns a compact per-patient history of the channels the models read (vital signs in hourly
//! buckets over the last 24 h; labs as last, previous and count) and the feature vector computed
//! from it at `now`. Buckets are clock hours (`floor(t / 1 h)`); a feature at `now` reads the
//! buckets up to the one holding `now − 1 ms`, and only samples at or before `now`, so nothing
//! later than `now` can leak in. Never reads a clock.

use std::collections::VecDeque;

use crate::model::{Observation, Param, Timestamp, HOUR_MS};

/// Hourly buckets kept per vital sign (the 24 h window plus the one being filled).
const KEEP_BUCKETS: i64 = 25;
/// Hours-since-last features saturate here (also the value when never measured).
const VITAL_SINCE_CAP_H: f64 = 24.0;
const LAB_SINCE_CAP_H: f64 = 72.0;

/// Where a channel's readings come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelSource {
    /// Any of these scorer parameters (canonical units).
    Params(&'static [Param]),
    /// A LOINC code no score uses, read in the unit the sender gives.
    Loinc(&'static str),
}

/// One input of the risk models.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Channel {
    pub name: &'static str,
    pub source: ChannelSource,
    /// A vital sign (hourly window statistics) or a lab (last, change, count).
    pub vital: bool,
    /// The value used when the channel was never measured (a normal value; the `measured`
    /// feature says it was imputed).
    pub normal: f64,
}

const fn vital(name: &'static str, params: &'static [Param], normal: f64) -> Channel {
    Channel {
        name,
        source: ChannelSource::Params(params),
        vital: true,
        normal,
    }
}

const fn lab(name: &'static str, params: &'static [Param], normal: f64) -> Channel {
    Channel {
        name,
        source: ChannelSource::Params(params),
        vital: false,
        normal,
    }
}

const fn loinc(name: &'static str, code: &'static str, normal: f64) -> Channel {
    Channel {
        name,
        source: ChannelSource::Loinc(code),
        vital: false,
        normal,
    }
}

/// The channels, in feature order. LOINC channels are matched before parameters (SaO2 shares
/// the SpO2 parameter for scoring but is a lab here).
pub const CHANNELS: [Channel; 34] = [
    vital("hr", &[Param::HeartRate], 80.0),
    vital("spo2", &[Param::SpO2], 97.0),
    vital("temp", &[Param::Temp], 37.0),
    vital("sbp", &[Param::SbpArt, Param::SbpNibp], 120.0),
    vital("map", &[Param::MapArt, Param::MapNibp], 80.0),
    vital("dbp", &[Param::DbpArt, Param::DbpNibp], 60.0),
    vital("resp", &[Param::RespRate], 18.0),
    vital("etco2", &[Param::EtCO2], 33.0),
    lab("fio2", &[Param::FiO2], 21.0),
    lab("lactate", &[Param::Lactate], 1.5),
    lab("platelets", &[Param::Platelets], 220.0),
    lab("bilirubin", &[Param::Bilirubin], 0.7),
    lab("creatinine", &[Param::Creatinine], 1.0),
    loinc("base_excess", "1925-7", 0.0),
    loinc("hco3", "1963-8", 24.0),
    loinc("ph", "2744-1", 7.4),
    loinc("paco2", "2019-8", 40.0),
    loinc("sao2", "2708-6", 96.0),
    loinc("ast", "1920-8", 30.0),
    loinc("bun", "3094-0", 15.0),
    loinc("alkaline_phosphatase", "6768-6", 80.0),
    loinc("calcium", "17861-6", 8.8),
    loinc("chloride", "2075-0", 104.0),
    loinc("bilirubin_direct", "1968-7", 0.2),
    loinc("glucose", "2345-7", 120.0),
    loinc("magnesium", "19123-9", 2.0),
    loinc("phosphate", "2777-1", 3.5),
    loinc("potassium", "2823-3", 4.0),
    loinc("troponin_i", "10839-9", 0.02),
    loinc("hct", "4544-3", 32.0),
    loinc("hgb", "718-7", 10.5),
    loinc("ptt", "3173-2", 30.0),
    loinc("wbc", "6690-2", 10.0),
    loinc("fibrinogen", "3255-7", 300.0),
];

/// Per-vital features, in order.
const VITAL_FEATURES: [&str; 10] = [
    "last",
    "measured",
    "hours_since",
    "mean6",
    "min6",
    "max6",
    "delta6",
    "mean24",
    "sd24",
    "n24",
];
/// Per-lab features, in order.
const LAB_FEATURES: [&str; 5] = ["last", "measured", "hours_since", "delta", "count"];
/// Features of the whole patient, in order (after the channels).
const GLOBAL_FEATURES: [&str; 12] = [
    "hours_in_unit",
    "log_hours_in_unit",
    "labs_measured",
    "shock_index",
    "pulse_pressure",
    "qsofa",
    "news2",
    "sofa",
    "sofa_rise",
    "shock_points",
    "spo2_fio2",
    "bun_creatinine",
];

/// The feature names, in vector order (`<channel>_<feature>`, then the global ones).
pub fn feature_names() -> Vec<String> {
    let mut out = Vec::new();
    for c in &CHANNELS {
        let list: &[&str] = if c.vital {
            &VITAL_FEATURES
        } else {
            &LAB_FEATURES
        };
        out.extend(list.iter().map(|f| format!("{}_{f}", c.name)));
    }
    out.extend(GLOBAL_FEATURES.iter().map(|f| (*f).to_string()));
    out
}

/// Index of the channel that takes this reading, if any.
pub fn channel_of(obs: &Observation) -> Option<usize> {
    let by_code = CHANNELS
        .iter()
        .position(|c| matches!(c.source, ChannelSource::Loinc(code) if code == &*obs.code.code));
    if by_code.is_some() {
        return by_code;
    }
    let p = obs.param?;
    CHANNELS
        .iter()
        .position(|c| matches!(c.source, ChannelSource::Params(ps) if ps.contains(&p)))
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    key: i64,
    sum: f64,
    sum_sq: f64,
    n: u32,
    min: f64,
    max: f64,
    last: (Timestamp, f64),
}

#[derive(Clone, Debug, Default)]
struct ChannelState {
    last: Option<(Timestamp, f64)>,
    /// The reading before `last` (labs: the change since the previous result).
    prev: Option<(Timestamp, f64)>,
    count: u32,
    /// Vitals only: hourly buckets, oldest first.
    buckets: VecDeque<Bucket>,
}

impl ChannelState {
    fn add(&mut self, t: Timestamp, v: f64, vital: bool) {
        self.count = self.count.saturating_add(1);
        match self.last {
            Some((lt, _)) if t < lt => {
                // A late reading: it may still be newer than `prev`.
                if self.prev.is_none_or(|(pt, _)| t > pt) {
                    self.prev = Some((t, v));
                }
            }
            _ => {
                self.prev = self.last;
                self.last = Some((t, v));
            }
        }
        if !vital {
            return;
        }
        let key = t.millis().div_euclid(HOUR_MS);
        let newest = self.buckets.back().map_or(key, |b| b.key.max(key));
        if key <= newest - KEEP_BUCKETS {
            return;
        }
        let fresh = Bucket {
            key,
            sum: v,
            sum_sq: v * v,
            n: 1,
            min: v,
            max: v,
            last: (t, v),
        };
        match self.buckets.iter().position(|b| b.key >= key) {
            Some(i) => match self.buckets.get_mut(i) {
                Some(b) if b.key == key => {
                    b.sum += v;
                    b.sum_sq += v * v;
                    b.n += 1;
                    b.min = b.min.min(v);
                    b.max = b.max.max(v);
                    if t >= b.last.0 {
                        b.last = (t, v);
                    }
                }
                _ => self.buckets.insert(i, fresh),
            },
            None => self.buckets.push_back(fresh),
        }
        while self
            .buckets
            .front()
            .is_some_and(|b| b.key <= newest - KEEP_BUCKETS)
        {
            self.buckets.pop_front();
        }
    }
}

/// The per-patient history the risk models read.
#[derive(Clone, Debug, Default)]
pub struct RiskState {
    channels: Vec<ChannelState>,
}

/// Scores of the same evaluation that the models read as features.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RuleInputs {
    pub qsofa: f64,
    pub news2: f64,
    pub sofa: f64,
    pub sofa_rise: f64,
    pub shock_points: f64,
}

impl RiskState {
    /// Takes one usable numeric reading.
    pub fn on_observation(&mut self, obs: &Observation, value: f64) {
        let Some(i) = channel_of(obs) else { return };
        if self.channels.is_empty() {
            self.channels = vec![ChannelState::default(); CHANNELS.len()];
        }
        let vital = CHANNELS.get(i).is_some_and(|c| c.vital);
        if let Some(c) = self.channels.get_mut(i) {
            c.add(obs.corrected_time, value, vital);
        }
    }

    /// The newest value of a channel at or before `now`.
    pub fn last(&self, name: &str, now: Timestamp) -> Option<f64> {
        let i = CHANNELS.iter().position(|c| c.name == name)?;
        let c = self.channels.get(i)?;
        last_at(c, now).map(|(_, v)| v)
    }

    /// The newest value of a channel at or before `now` and no older than `window_ms`.
    pub fn last_within(&self, name: &str, now: Timestamp, window_ms: i64) -> Option<f64> {
        let i = CHANNELS.iter().position(|c| c.name == name)?;
        let c = self.channels.get(i)?;
        last_at(c, now)
            .filter(|(t, _)| now.since(*t) <= window_ms)
            .map(|(_, v)| v)
    }

    /// The fraction of the last `hours` hourly buckets holding both HR and SBP in which the
    /// bucket's mean HR / mean SBP exceeds `above`; `None` when no bucket has both.
    pub fn sustained_shock_index(&self, now: Timestamp, hours: i64, above: f64) -> Option<f64> {
        let hr = self.channels.first()?;
        let sbp = self.channels.get(3)?;
        let current = (now.millis() - 1).div_euclid(HOUR_MS);
        let (mut both, mut high) = (0u32, 0u32);
        for h in hr
            .buckets
            .iter()
            .filter(|b| b.key <= current && b.key > current - hours && b.n > 0)
        {
            let Some(s) = sbp.buckets.iter().find(|b| b.key == h.key && b.n > 0) else {
                continue;
            };
            if s.sum <= 0.0 {
                continue;
            }
            both += 1;
            let si = (h.sum / f64::from(h.n)) / (s.sum / f64::from(s.n));
            if si > above {
                high += 1;
            }
        }
        (both > 0).then(|| f64::from(high) / f64::from(both))
    }

    /// The feature vector at `now`, in [`feature_names`] order. `admit` is the start of the
    /// stay (hours in the unit are counted from it).
    pub fn features(
        &self,
        now: Timestamp,
        admit: Option<Timestamp>,
        rules: RuleInputs,
    ) -> Vec<f64> {
        let mut out = Vec::with_capacity(CHANNELS.len() * 10 + GLOBAL_FEATURES.len());
        let empty = ChannelState::default();
        let current = (now.millis() - 1).div_euclid(HOUR_MS);
        let mut labs_measured = 0.0;
        for (i, ch) in CHANNELS.iter().enumerate() {
            let c = self.channels.get(i).unwrap_or(&empty);
            let last = last_at(c, now);
            let value = last.map_or(ch.normal, |(_, v)| v);
            let measured = if last.is_some() { 1.0 } else { 0.0 };
            let cap = if ch.vital {
                VITAL_SINCE_CAP_H
            } else {
                LAB_SINCE_CAP_H
            };
            let since = last.map_or(cap, |(t, _)| {
                (now.since(t) as f64 / HOUR_MS as f64).min(cap)
            });
            if !ch.vital {
                if last.is_some() {
                    labs_measured += 1.0;
                }
                let prev = match (c.last, c.prev) {
                    (Some((t, _)), Some(p)) if t <= now => Some(p),
                    (Some(_), Some(p)) if p.0 <= now => None,
                    _ => None,
                };
                let delta = match (last, prev) {
                    (Some((_, v)), Some((_, p))) => v - p,
                    _ => 0.0,
                };
                out.extend([value, measured, since, delta, f64::from(c.count).ln_1p()]);
                continue;
            }
            let window = |hours: i64| {
                c.buckets
                    .iter()
                    .filter(move |b| b.key <= current && b.key > current - hours)
                    .filter(move |b| b.last.0 <= now)
            };
            let (mut n6, mut sum6, mut min6, mut max6) =
                (0u32, 0.0, f64::INFINITY, f64::NEG_INFINITY);
            for b in window(6) {
                n6 += b.n;
                sum6 += b.sum;
                min6 = min6.min(b.min);
                max6 = max6.max(b.max);
            }
            let (mean6, min6, max6) = if n6 > 0 {
                (sum6 / f64::from(n6), min6, max6)
            } else {
                (value, value, value)
            };
            let (mut n24, mut sum24, mut sq24) = (0u32, 0.0, 0.0);
            for b in window(24) {
                n24 += b.n;
                sum24 += b.sum;
                sq24 += b.sum_sq;
            }
            let (mean24, sd24) = if n24 > 0 {
                let m = sum24 / f64::from(n24);
                (m, (sq24 / f64::from(n24) - m * m).max(0.0).sqrt())
            } else {
                (value, 0.0)
            };
            // The change over 6 h: now against the newest reading at least 6 buckets back.
            let before = c
                .buckets
                .iter()
                .rev()
                .find(|b| b.key <= current - 6)
                .map(|b| b.last.1);
            let delta6 = match (last, before) {
                (Some((_, v)), Some(b)) => v - b,
                _ => 0.0,
            };
            out.extend([
                value,
                measured,
                since,
                mean6,
                min6,
                max6,
                delta6,
                mean24,
                sd24,
                f64::from(n24).ln_1p(),
            ]);
        }
        let hours = admit.map_or(0.0, |a| (now.since(a) as f64 / HOUR_MS as f64).max(0.0));
        let get = |name: &str| {
            let i = CHANNELS.iter().position(|c| c.name == name);
            i.and_then(|i| self.channels.get(i))
                .and_then(|c| last_at(c, now))
                .map(|(_, v)| v)
        };
        let shock_index = match (get("hr"), get("sbp")) {
            (Some(h), Some(s)) if s > 0.0 => h / s,
            _ => 80.0 / 120.0,
        };
        let pulse_pressure = match (get("sbp"), get("dbp")) {
            (Some(s), Some(d)) => s - d,
            _ => 60.0,
        };
        let spo2_fio2 = match (get("spo2"), get("fio2")) {
            (Some(s), Some(f)) if f > 0.0 => s / f * 100.0,
            (Some(s), None) => s / 21.0 * 100.0,
            _ => 97.0 / 21.0 * 100.0,
        };
        let bun_creatinine = match (get("bun"), get("creatinine")) {
            (Some(b), Some(c)) if c > 0.0 => b / c,
            _ => 15.0,
        };
        out.extend([
            hours,
            hours.ln_1p(),
            labs_measured,
            shock_index,
            pulse_pressure,
            rules.qsofa,
            rules.news2,
            rules.sofa,
            rules.sofa_rise,
            rules.shock_points,
            spo2_fio2,
            bun_creatinine,
        ]);
        out
    }
}

/// The newest reading at or before `now`: `last`, else `prev`, else (vitals) the newest
/// bucket's last reading at or before `now`.
fn last_at(c: &ChannelState, now: Timestamp) -> Option<(Timestamp, f64)> {
    [c.last, c.prev]
        .into_iter()
        .flatten()
        .find(|(t, _)| *t <= now)
        .or_else(|| {
            c.buckets
                .iter()
                .rev()
                .map(|b| b.last)
                .find(|(t, _)| *t <= now)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_vector() {
        let st = RiskState::default();
        let f = st.features(
            Timestamp(HOUR_MS * 10),
            Some(Timestamp(0)),
            RuleInputs::default(),
        );
        assert_eq!(f.len(), feature_names().len());
        let names = feature_names();
        let at = |n: &str| names.iter().position(|x| x == n).unwrap();
        assert_eq!(f[at("hours_in_unit")], 10.0);
        assert_eq!(f[at("hr_last")], 80.0);
        assert_eq!(f[at("hr_measured")], 0.0);
        assert_eq!(f[at("wbc_hours_since")], LAB_SINCE_CAP_H);
    }

    #[test]
    fn windows_read_only_up_to_now() {
        let mut c = ChannelState::default();
        for h in 0..10 {
            c.add(Timestamp(h * HOUR_MS + 30_000), 60.0 + h as f64, true);
        }
        let mut st = RiskState {
            channels: vec![ChannelState::default(); CHANNELS.len()],
        };
        st.channels[0] = c;
        let names = feature_names();
        let at = |n: &str| names.iter().position(|x| x == n).unwrap();
        // At the end of hour 5: readings of hours 0..=5 only.
        let f = st.features(
            Timestamp(6 * HOUR_MS),
            Some(Timestamp(0)),
            RuleInputs::default(),
        );
        assert_eq!(f[at("hr_last")], 65.0);
        assert_eq!(f[at("hr_max6")], 65.0);
        assert_eq!(f[at("hr_min6")], 60.0);
        assert!((f[at("hr_mean6")] - 62.5).abs() < 1e-9);
        assert_eq!(f[at("hr_delta6")], 0.0);
        let f = st.features(
            Timestamp(7 * HOUR_MS),
            Some(Timestamp(0)),
            RuleInputs::default(),
        );
        assert_eq!(f[at("hr_delta6")], 6.0);
    }
}
