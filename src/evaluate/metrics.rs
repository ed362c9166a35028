//! Validation metrics for hourly predictions (VALIDATION.md): the PhysioNet 2019 utility,
//! hourly AUROC and AUPRC, per-episode sensitivity, lead time, alert burden, PPV and
//! calibration.
//!
//! Owns the arithmetic only; rows arrive per patient in file order. Pure functions, no I/O.

use serde::Serialize;

/// Utility parameters of the challenge (hours relative to the onset row t_s).
pub const DT_EARLY: f64 = -12.0;
pub const DT_OPTIMAL: f64 = -6.0;
pub const DT_LATE: f64 = 3.0;
pub const MAX_U_TP: f64 = 1.0;
pub const MIN_U_FN: f64 = -2.0;
pub const U_FP: f64 = -0.05;
pub const U_TN: f64 = 0.0;

/// The onset row t_s: the first labelled row plus 6 (`None` for a non-septic patient).
pub fn onset_row(labels: &[bool]) -> Option<usize> {
    labels.iter().position(|l| *l).map(|i| i + 6)
}

/// The utility of one patient's predictions, row by row as VALIDATION.md defines it (the
/// challenge's `compute_prediction_utility`). `labels` and `predictions` have one entry per row.
pub fn patient_utility(labels: &[bool], predictions: &[bool]) -> f64 {
    let onset = onset_row(labels).map(|t| t as f64);
    let m1 = MAX_U_TP / (DT_OPTIMAL - DT_EARLY);
    let b1 = -m1 * DT_EARLY;
    let m2 = -MAX_U_TP / (DT_LATE - DT_OPTIMAL);
    let b2 = -m2 * DT_LATE;
    let m3 = MIN_U_FN / (DT_LATE - DT_OPTIMAL);
    let b3 = -m3 * DT_OPTIMAL;
    let mut u = 0.0;
    for (t, pred) in predictions.iter().enumerate() {
        let t = t as f64;
        u += match onset {
            Some(ts) => {
                let d = t - ts;
                if d > DT_LATE {
                    0.0
                } else if *pred {
                    if d <= DT_OPTIMAL {
                        (m1 * d + b1).max(U_FP)
                    } else {
                        m2 * d + b2
                    }
                } else if d <= DT_OPTIMAL {
                    0.0
                } else {
                    m3 * d + b3
                }
            }
            None => {
                if *pred {
                    U_FP
                } else {
                    U_TN
                }
            }
        };
    }
    u
}

/// The best predictions: positive from t_s − 12 to t_s + 3 for septic patients, never else.
pub fn best_predictions(labels: &[bool]) -> Vec<bool> {
    let n = labels.len();
    let mut out = vec![false; n];
    if let Some(ts) = onset_row(labels) {
        let from = (ts as f64 + DT_EARLY).max(0.0) as usize;
        let to = ((ts as f64 + DT_LATE) as usize + 1).min(n);
        for p in out.iter_mut().take(to).skip(from) {
            *p = true;
        }
    }
    out
}

/// The three sums the normalised utility is made of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct UtilitySums {
    pub observed: f64,
    pub best: f64,
    pub no_alarms: f64,
}

impl UtilitySums {
    pub fn add(&mut self, labels: &[bool], predictions: &[bool]) {
        self.observed += patient_utility(labels, predictions);
        self.best += patient_utility(labels, &best_predictions(labels));
        self.no_alarms += patient_utility(labels, &vec![false; labels.len()]);
    }

    /// (U − U_no_alarms) / (U_best − U_no_alarms); 0 when the cohort has nothing to gain.
    pub fn normalized(&self) -> f64 {
        let d = self.best - self.no_alarms;
        if d.abs() < f64::EPSILON {
            0.0
        } else {
            (self.observed - self.no_alarms) / d
        }
    }
}

/// Normalised utility over patients given as (labels, predictions).
pub fn normalized_utility<'a>(patients: impl IntoIterator<Item = (&'a [bool], &'a [bool])>) -> f64 {
    let mut s = UtilitySums::default();
    for (l, p) in patients {
        s.add(l, p);
    }
    s.normalized()
}

/// One point of a ROC or precision-recall curve per distinct score, from the highest score
/// down: (false-positive rate, true-positive rate, precision).
pub fn curve(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64, f64)> {
    let mut idx: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    idx.sort_by(|a, b| {
        let (x, y) = (
            scores.get(*a).copied().unwrap_or(0.0),
            scores.get(*b).copied().unwrap_or(0.0),
        );
        y.total_cmp(&x)
    });
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    let mut out = vec![(0.0, 0.0, 1.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let s = idx
            .get(i)
            .and_then(|k| scores.get(*k))
            .copied()
            .unwrap_or(0.0);
        while let Some(k) = idx.get(i) {
            if scores.get(*k).copied().unwrap_or(0.0).total_cmp(&s) != std::cmp::Ordering::Equal {
                break;
            }
            if labels.get(*k).copied().unwrap_or(false) {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        let fpr = if neg > 0.0 { fp / neg } else { 0.0 };
        let tpr = if pos > 0.0 { tp / pos } else { 0.0 };
        out.push((fpr, tpr, tp / (tp + fp)));
    }
    out
}

/// Area under the ROC curve (trapezoids; ties count half).
pub fn auroc(scores: &[f64], labels: &[bool]) -> f64 {
    let c = curve(scores, labels);
    c.windows(2)
        .map(|w| match w {
            [a, b] => (b.0 - a.0) * (a.1 + b.1) / 2.0,
            _ => 0.0,
        })
        .sum()
}

/// Area under the precision-recall curve as the challenge computes it (recall steps times
/// the precision at each distinct threshold).
pub fn auprc(scores: &[f64], labels: &[bool]) -> f64 {
    let c = curve(scores, labels);
    c.windows(2)
        .map(|w| match w {
            [a, b] => (b.1 - a.1) * b.2,
            _ => 0.0,
        })
        .sum()
}

/// Per-episode figures of one predictor.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EpisodeStats {
    pub patients: usize,
    pub septic_patients: usize,
    /// Septic patients with an alert at or before t_s + 3 (and no more than 48 h before t_s).
    pub detected: usize,
    pub sensitivity: f64,
    /// Hours from the first such alert to t_s, per detected patient.
    pub lead_times_h: Vec<f64>,
    pub median_lead_h: Option<f64>,
    /// Alert episodes: runs of consecutive positive rows.
    pub alerts: usize,
    pub patient_days: f64,
    pub alerts_per_patient_day: f64,
    /// Alert episodes in septic patients that overlap [t_s − 12, t_s + 3].
    pub true_alerts: usize,
    pub ppv: Option<f64>,
}

/// How far before onset an alert still counts as detecting the episode.
pub const DETECT_BEFORE_H: f64 = 48.0;

/// Episode statistics over patients given as (labels, predictions).
pub fn episodes<'a>(patients: impl IntoIterator<Item = (&'a [bool], &'a [bool])>) -> EpisodeStats {
    let mut s = EpisodeStats::default();
    let mut rows = 0usize;
    for (labels, preds) in patients {
        s.patients += 1;
        rows += preds.len();
        let onset = onset_row(labels).map(|t| t as f64);
        if let Some(ts) = onset {
            s.septic_patients += 1;
            let first = preds.iter().enumerate().find(|(t, p)| {
                let d = *t as f64 - ts;
                **p && (-DETECT_BEFORE_H..=DT_LATE).contains(&d)
            });
            if let Some((t, _)) = first {
                s.detected += 1;
                s.lead_times_h.push(ts - t as f64);
            }
        }
        let mut start: Option<usize> = None;
        for t in 0..=preds.len() {
            let on = preds.get(t).copied().unwrap_or(false);
            match (start, on) {
                (None, true) => start = Some(t),
                (Some(a), false) => {
                    s.alerts += 1;
                    if let Some(ts) = onset {
                        let (a, b) = (a as f64, (t - 1) as f64);
                        if b >= ts + DT_EARLY && a <= ts + DT_LATE {
                            s.true_alerts += 1;
                        }
                    }
                    start = None;
                }
                _ => {}
            }
        }
    }
    s.sensitivity = ratio(s.detected, s.septic_patients).unwrap_or(0.0);
    s.median_lead_h = median(&s.lead_times_h);
    s.patient_days = rows as f64 / 24.0;
    s.alerts_per_patient_day = if s.patient_days > 0.0 {
        s.alerts as f64 / s.patient_days
    } else {
        0.0
    };
    s.ppv = ratio(s.true_alerts, s.alerts);
    s
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let mid = s.get(n / 2).copied()?;
    Some(if n % 2 == 1 {
        mid
    } else {
        (s.get(n / 2 - 1).copied()? + mid) / 2.0
    })
}

/// One calibration bin.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CalibrationBin {
    pub from: f64,
    pub to: f64,
    pub rows: usize,
    pub mean_predicted: f64,
    pub observed: f64,
}

/// Calibration over bins of equal row count (quantiles of the prediction), and the Brier
/// score.
pub fn calibration(probs: &[f64], labels: &[bool], bins: usize) -> (Vec<CalibrationBin>, f64) {
    let n = probs.len().min(labels.len());
    if n == 0 || bins == 0 {
        return (Vec::new(), 0.0);
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|a, b| {
        probs
            .get(*a)
            .copied()
            .unwrap_or(0.0)
            .total_cmp(&probs.get(*b).copied().unwrap_or(0.0))
    });
    let mut out = Vec::new();
    for b in 0..bins {
        let lo = b * n / bins;
        let hi = (b + 1) * n / bins;
        let Some(part) = idx.get(lo..hi) else {
            continue;
        };
        if part.is_empty() {
            continue;
        }
        let p: Vec<f64> = part.iter().filter_map(|i| probs.get(*i).copied()).collect();
        let y = part
            .iter()
            .filter(|i| labels.get(**i).copied().unwrap_or(false))
            .count();
        out.push(CalibrationBin {
            from: p.first().copied().unwrap_or(0.0),
            to: p.last().copied().unwrap_or(0.0),
            rows: part.len(),
            mean_predicted: p.iter().sum::<f64>() / p.len() as f64,
            observed: y as f64 / part.len() as f64,
        });
    }
    let brier = probs
        .iter()
        .zip(labels)
        .map(|(p, y)| {
            let d = p - if *y { 1.0 } else { 0.0 };
            d * d
        })
        .sum::<f64>()
        / n as f64;
    (out, brier)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize, first: Option<usize>) -> Vec<bool> {
        (0..n).map(|t| first.is_some_and(|f| t >= f)).collect()
    }

    fn one(n: usize, at: usize) -> Vec<bool> {
        (0..n).map(|t| t == at).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// What one positive row adds over predicting nothing at all.
    fn gain(l: &[bool], t: usize) -> f64 {
        patient_utility(l, &one(l.len(), t)) - patient_utility(l, &vec![false; l.len()])
    }

    // A septic patient of 40 rows labelled from row 14: t_s = 20. One positive row at a time.
    #[test]
    fn utility_early_optimal_late_and_too_early() {
        let l = labels(40, Some(14));
        assert_eq!(onset_row(&l), Some(20));
        // Early branch: t_s − 9 = row 11 → (−9)/6 + 2 = 0.5.
        assert!(close(gain(&l, 11), 0.5));
        // Optimal: t_s − 6 = row 14 → 1.0.
        assert!(close(gain(&l, 14), 1.0));
        // Late: t_s + 1 = row 21: positive −1/9 + 1/3 = 2/9 instead of the missed
        // −2/9·(1 + 6) = −14/9.
        assert!(close(gain(&l, 21), 2.0 / 9.0 + 14.0 / 9.0));
        // At t_s + 3 a positive is worth 0, a negative −2.
        assert!(close(gain(&l, 23), 2.0));
        // Earlier than t_s − 12 the early line is floored at the false-alarm value −0.05.
        assert!(close(gain(&l, 2), -0.05));
        // t_s − 12 exactly: 0 (the line starts there).
        assert!(close(gain(&l, 8), 0.0));
        // After t_s + 3 nothing counts, positive or not.
        assert!(close(gain(&l, 30), 0.0));
    }

    #[test]
    fn utility_missed_and_non_septic() {
        let l = labels(40, Some(14));
        // Never alerting: rows 15..=23 (t_s − 5 … t_s + 3) cost −2/9·(d + 6) each.
        let missed: f64 = (15..=23)
            .map(|t| -2.0 / 9.0 * ((t as f64 - 20.0) + 6.0))
            .sum();
        assert!(close(patient_utility(&l, &[false; 40]), missed));
        assert!(close(missed, -10.0));
        // Missed branch, one row alone: the positive at row 14 still misses rows 15..=23.
        assert!(close(patient_utility(&l, &one(40, 14)) - 1.0, missed));
        // Non-septic: every positive −0.05, negatives 0.
        let n = labels(30, None);
        assert!(close(patient_utility(&n, &[true; 30]), -1.5));
        assert!(close(patient_utility(&n, &[false; 30]), 0.0));
    }

    #[test]
    fn normalised_utility_is_one_for_the_best_and_zero_for_no_alarms() {
        let a = labels(40, Some(14));
        let b = labels(10, None);
        let best_a = best_predictions(&a);
        // Rows 8 through 23 are positive in the best predictions.
        assert_eq!(best_a.iter().filter(|p| **p).count(), 16);
        assert!(best_a[8] && best_a[23] && !best_a[7] && !best_a[24]);
        let none_a = [false; 40];
        let none_b = [false; 10];
        let u = normalized_utility([(&a[..], &best_a[..]), (&b[..], &none_b[..])]);
        assert!(close(u, 1.0));
        let u = normalized_utility([(&a[..], &none_a[..]), (&b[..], &none_b[..])]);
        assert!(close(u, 0.0));
        // Alerting on every row: the septic stay gains 7.1 − (−10), the long non-septic stay
        // loses 400 × 0.05 = 20: worse than never alerting.
        let b = labels(400, None);
        let all_a = vec![true; 40];
        let all_b = vec![true; 400];
        assert!(close(patient_utility(&a, &all_a), -0.4 + 3.5 + 4.0));
        assert!(normalized_utility([(&a[..], &all_a[..]), (&b[..], &all_b[..])]) < 0.0);
    }

    #[test]
    fn labelled_from_the_first_row_has_onset_at_six() {
        let l = labels(10, Some(0));
        assert_eq!(onset_row(&l), Some(6));
        // best: rows 0..=9 (t_s − 12 is before the stay).
        assert!(best_predictions(&l).iter().all(|p| *p));
    }

    #[test]
    fn auroc_and_auprc() {
        let s = [0.9, 0.8, 0.7, 0.6];
        let y = [true, false, true, false];
        assert!(close(auroc(&s, &y), 0.75));
        // precision 1 at recall .5, 2/3 at recall 1.
        assert!(close(auprc(&s, &y), 0.5 + 0.5 * 2.0 / 3.0));
        // Ties count half.
        assert!(close(auroc(&[0.5, 0.5], &[true, false]), 0.5));
        assert!(close(auroc(&[0.1, 0.9], &[false, true]), 1.0));
    }

    #[test]
    fn episodes_count_alerts_lead_and_ppv() {
        let a = labels(40, Some(14)); // t_s = 20
        let mut pa = [false; 40];
        pa[5] = true; // an early false alarm (overlaps nothing near onset)
        for p in pa.iter_mut().take(18).skip(12) {
            *p = true; // rows 12..=17: lead 8 h
        }
        let b = labels(8, None);
        let mut pb = [false; 8];
        pb[2] = true;
        let s = episodes([(&a[..], &pa[..]), (&b[..], &pb[..])]);
        assert_eq!((s.septic_patients, s.detected), (1, 1));
        assert_eq!(s.lead_times_h, vec![15.0]);
        assert_eq!(s.alerts, 3);
        assert_eq!(s.true_alerts, 1);
        assert!(close(s.ppv.unwrap(), 1.0 / 3.0));
        assert!(close(s.patient_days, 2.0));
        assert!(close(s.alerts_per_patient_day, 1.5));
    }

    #[test]
    fn calibration_bins() {
        let p = [0.1, 0.1, 0.9, 0.9];
        let y = [false, false, true, true];
        let (bins, brier) = calibration(&p, &y, 2);
        assert_eq!(bins.len(), 2);
        assert!(close(bins[0].observed, 0.0) && close(bins[1].observed, 1.0));
        assert!(close(brier, 0.01));
    }
}
