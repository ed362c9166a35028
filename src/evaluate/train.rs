//! `vigil train physionet`: fits the `sepsis_risk` model on PhysioNet 2019 files, with
//! patient-level k-fold cross-validation, and writes the artifact the live scorer loads.
//!
//! Owns the fit (L2-penalised logistic regression by Newton's method on the standardised
//! features of [`crate::scorer::risk_features`] plus squares of the level features), the fold
//! assignment, the threshold choice for the utility and the cross-validated figures. The
//! features are collected by replaying every patient through the normalizer and the live
//! scorer ([`super::physionet::replay_all`]): the code that computes them in training is the
//! code that computes them in service. Deterministic: same files, same artifact.

use std::path::PathBuf;

use serde::Serialize;

use super::metrics::{self, UtilitySums};
use super::physionet::{self, PatientFile, PhysionetEvalError, ReplaySetup};
use crate::scorer::risk::{design_row, sigmoid, RiskModel, P_MAX, P_MIN};
use crate::scorer::risk_features::feature_names;

/// Standardised features are clipped to this many standard deviations.
pub const CLIP: f64 = 5.0;

/// What `vigil train physionet` was asked to do.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub input: PathBuf,
    pub labels: Option<PathBuf>,
    pub out: PathBuf,
    pub folds: usize,
    /// L2 penalty on the (standardised) weights, per row-sum of the log-loss.
    pub l2: f64,
    pub seed: u64,
    pub jobs: usize,
    pub progress: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            input: PathBuf::new(),
            labels: None,
            out: PathBuf::from("scoring/sepsis-risk.json"),
            folds: 5,
            l2: 10.0,
            seed: 2019,
            jobs: 0,
            progress: false,
        }
    }
}

/// The training rows: features per row, labels, and which patient each row belongs to.
pub struct Dataset {
    pub x: Vec<Vec<f64>>,
    pub y: Vec<bool>,
    pub patient: Vec<usize>,
    /// Per patient: its rows' range in `x`.
    pub ranges: Vec<std::ops::Range<usize>>,
    pub names: Vec<String>,
}

/// Features whose square also enters the model: the levels of the vital signs and labs, and
/// the hours in the unit (their risk is U-shaped or saturating).
pub fn quadratic_features() -> Vec<usize> {
    feature_names()
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            n.ends_with("_last")
                || n.ends_with("_mean24")
                || matches!(
                    n.as_str(),
                    "hours_in_unit" | "shock_index" | "pulse_pressure"
                )
        })
        .map(|(i, _)| i)
        .collect()
}

/// Replays every labelled file and collects the features the live scorer computes.
pub fn collect(
    files: &[PatientFile],
    jobs: usize,
    progress: bool,
) -> Result<Dataset, PhysionetEvalError> {
    let setup = ReplaySetup::builtin(None, true)?;
    let rows = physionet::replay_all(files, &setup, jobs, progress)?;
    let mut d = Dataset {
        x: Vec::new(),
        y: Vec::new(),
        patient: Vec::new(),
        ranges: Vec::new(),
        names: Vec::new(),
    };
    for (i, (f, r)) in files.iter().zip(rows).enumerate() {
        let Some(labels) = &f.labels else {
            return Err(PhysionetEvalError::Labels {
                path: f.name.clone().into(),
                reason: "no SepsisLabel column (and no --labels file): cannot train".into(),
            });
        };
        let start = d.x.len();
        for (row, l) in r.into_iter().zip(labels) {
            d.x.push(row.features.unwrap_or_default());
            d.y.push(*l);
            d.patient.push(i);
        }
        d.ranges.push(start..d.x.len());
        d.names.push(f.name.clone());
    }
    Ok(d)
}

/// Patient folds: a seeded shuffle of the patients (in file-name order), dealt round-robin.
pub fn assign_folds(patients: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..patients).collect();
    let mut s = seed ^ 0x9e37_79b9_7f4a_7c15;
    for i in (1..order.len()).rev() {
        // splitmix64
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let j = (z % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut fold = vec![0; patients];
    for (k, p) in order.into_iter().enumerate() {
        if let Some(f) = fold.get_mut(p) {
            *f = k % folds.max(1);
        }
    }
    fold
}

/// Mean and standard deviation of every feature over the given rows.
fn standardise(x: &[Vec<f64>], rows: &[usize], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0; dim];
    let mut sq = vec![0.0; dim];
    for r in rows {
        if let Some(v) = x.get(*r) {
            for ((m, s), a) in mean.iter_mut().zip(sq.iter_mut()).zip(v) {
                *m += a;
                *s += a * a;
            }
        }
    }
    let n = rows.len().max(1) as f64;
    let scale = mean
        .iter_mut()
        .zip(&sq)
        .map(|(m, s)| {
            *m /= n;
            let var = (s / n - *m * *m).max(0.0);
            if var > 1e-12 {
                var.sqrt()
            } else {
                1.0
            }
        })
        .collect();
    (mean, scale)
}

/// A fitted model before it is wrapped into an artifact.
#[derive(Clone, Debug)]
pub struct Fit {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    pub quadratic: Vec<usize>,
    /// Design weights (linear, then quadratic), then the intercept last.
    pub w: Vec<f64>,
    pub iterations: usize,
}

impl Fit {
    pub fn predict(&self, x: &[f64]) -> f64 {
        let z = design_row(x, &self.mean, &self.scale, CLIP, &self.quadratic);
        let b = self.w.last().copied().unwrap_or(0.0);
        let s: f64 = z.iter().zip(&self.w).map(|(a, b)| a * b).sum();
        sigmoid(s + b).clamp(P_MIN, P_MAX)
    }
}

/// A block's Hessian (upper triangle) and gradient.
type Sums = (Vec<f64>, Vec<f64>);

/// Row blocks of a Newton step's sums (see [`fit`]).
const BLOCKS: usize = 16;

/// Gradient and upper triangle of the Hessian of the log-loss over one block of rows.
fn block_sums(zs: &[Vec<f32>], ys: &[f64], w: &[f64], d: usize) -> Sums {
    let mut h = vec![0.0f64; d * d];
    let mut g = vec![0.0f64; d];
    let mut zf = vec![0.0f64; d];
    for (z, yv) in zs.iter().zip(ys) {
        for (a, b) in zf.iter_mut().zip(z) {
            *a = f64::from(*b);
        }
        let s: f64 = zf.iter().zip(w).map(|(a, b)| a * b).sum();
        let p = sigmoid(s);
        let r = p - yv;
        let pw = (p * (1.0 - p)).max(1e-10);
        for (gi, zi) in g.iter_mut().zip(&zf) {
            *gi += r * zi;
        }
        for i in 0..d {
            let a = pw * zf[i];
            let row = &mut h[i * d + i..i * d + d];
            for (hv, zj) in row.iter_mut().zip(&zf[i..]) {
                *hv += a * zj;
            }
        }
    }
    (h, g)
}

/// Fits L2-penalised logistic regression on `rows` by Newton's method.
pub fn fit(
    x: &[Vec<f64>],
    y: &[bool],
    rows: &[usize],
    l2: f64,
    jobs: usize,
) -> Result<Fit, PhysionetEvalError> {
    let dim = x.first().map_or(0, Vec::len);
    let quadratic = quadratic_features();
    let (mean, scale) = standardise(x, rows, dim);
    let design: Vec<Vec<f32>> = rows
        .iter()
        .filter_map(|r| x.get(*r))
        .map(|v| {
            design_row(v, &mean, &scale, CLIP, &quadratic)
                .into_iter()
                .map(|a| a as f32)
                .chain(std::iter::once(1.0))
                .collect()
        })
        .collect();
    let ys: Vec<f64> = rows
        .iter()
        .map(|r| {
            if y.get(*r).copied().unwrap_or(false) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let d = dim + quadratic.len() + 1;
    let mut w = vec![0.0; d];
    // Start at the base rate.
    let rate = (ys.iter().sum::<f64>() / ys.len().max(1) as f64).clamp(1e-4, 1.0 - 1e-4);
    if let Some(b) = w.last_mut() {
        *b = (rate / (1.0 - rate)).ln();
    }
    let jobs = jobs.clamp(1, 16);
    let mut iterations = 0;
    for _ in 0..25 {
        iterations += 1;
        // Sums over a fixed number of row blocks, added in block order: the fit is the same to
        // the last bit whatever the number of threads.
        let chunk = design.len().div_ceil(BLOCKS).max(1);
        let blocks: Vec<(&[Vec<f32>], &[f64])> =
            design.chunks(chunk).zip(ys.chunks(chunk)).collect();
        let mut parts: Vec<(usize, Sums)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..jobs)
                .map(|k| {
                    let (w, blocks) = (&w, &blocks);
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for (b, (zs, yc)) in blocks.iter().enumerate().skip(k).step_by(jobs) {
                            mine.push((b, block_sums(zs, yc, w, d)));
                        }
                        mine
                    })
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        if parts.len() != blocks.len() {
            return Err(PhysionetEvalError::Fit("a worker thread failed".into()));
        }
        parts.sort_unstable_by_key(|(b, _)| *b);
        let mut h = vec![0.0; d * d];
        let mut g = vec![0.0; d];
        for (_, (ph, pg)) in parts {
            for (a, b) in h.iter_mut().zip(ph) {
                *a += b;
            }
            for (a, b) in g.iter_mut().zip(pg) {
                *a += b;
            }
        }
        // Penalty on everything but the intercept; mirror the upper triangle.
        for i in 0..d {
            for j in 0..i {
                h[i * d + j] = h[j * d + i];
            }
            if i + 1 < d {
                h[i * d + i] += l2;
                g[i] += l2 * w[i];
            } else {
                h[i * d + i] += 1e-9;
            }
        }
        let step = cholesky_solve(&mut h, &g, d).ok_or_else(|| {
            PhysionetEvalError::Fit("the Hessian is not positive definite".into())
        })?;
        // Damped Newton: halve the step until the penalised loss decreases.
        let before = objective(&design, &ys, &w, l2);
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..30 {
            let cand: Vec<f64> = w.iter().zip(&step).map(|(a, b)| a - t * b).collect();
            let after = objective(&design, &ys, &cand, l2);
            if after.is_finite() && after <= before {
                accepted = Some((cand, before - after));
                break;
            }
            t /= 2.0;
        }
        let Some((next, gain)) = accepted else { break };
        let biggest = w
            .iter()
            .zip(&next)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        w = next;
        if biggest < 1e-4 || gain < 1e-6 * before.abs().max(1.0) {
            break;
        }
    }
    Ok(Fit {
        mean,
        scale,
        quadratic,
        w,
        iterations,
    })
}

/// The penalised log-loss (intercept, the last weight, not penalised).
fn objective(design: &[Vec<f32>], ys: &[f64], w: &[f64], l2: f64) -> f64 {
    let mut loss = 0.0;
    for (z, y) in design.iter().zip(ys) {
        let s: f64 = z.iter().zip(w).map(|(a, b)| f64::from(*a) * b).sum();
        // log(1 + e^s) − y·s, stably.
        let softplus = if s > 0.0 {
            s + (-s).exp().ln_1p()
        } else {
            s.exp().ln_1p()
        };
        loss += softplus - y * s;
    }
    let n = w.len().saturating_sub(1);
    loss + 0.5 * l2 * w.iter().take(n).map(|v| v * v).sum::<f64>()
}

/// Solves `a x = b` for symmetric positive-definite `a` (row-major `n`×`n`, overwritten).
fn cholesky_solve(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut s = a[j * n + j];
        for k in 0..j {
            s -= a[j * n + k] * a[j * n + k];
        }
        if s <= 0.0 || !s.is_finite() {
            return None;
        }
        let l = s.sqrt();
        a[j * n + j] = l;
        for i in j + 1..n {
            let mut t = a[i * n + j];
            for k in 0..j {
                t -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = t / l;
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut t = b[i];
        for k in 0..i {
            t -= a[i * n + k] * y[k];
        }
        y[i] = t / a[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut t = y[i];
        for k in i + 1..n {
            t -= a[k * n + i] * x[k];
        }
        x[i] = t / a[i * n + i];
    }
    Some(x)
}

/// Candidate alert thresholds: log-spaced from 0.2 % to 50 %.
pub fn candidate_thresholds() -> Vec<f64> {
    (0..=120)
        .map(|i| 0.002 * (250.0f64).powf(f64::from(i) / 120.0))
        .collect()
}

/// Normalised utility of `probs ≥ t` over the given patients.
fn utility_at(d: &Dataset, probs: &[f64], patients: &[usize], t: f64) -> f64 {
    let mut s = UtilitySums::default();
    for p in patients {
        let Some(r) = d.ranges.get(*p) else { continue };
        let (Some(l), Some(pr)) = (d.y.get(r.clone()), probs.get(r.clone())) else {
            continue;
        };
        let a: Vec<bool> = pr.iter().map(|v| *v >= t).collect();
        s.add(l, &a);
    }
    s.normalized()
}

/// The threshold with the best utility over the patients.
pub fn best_threshold(d: &Dataset, probs: &[f64], patients: &[usize]) -> (f64, f64) {
    candidate_thresholds()
        .into_iter()
        .map(|t| (t, utility_at(d, probs, patients, t)))
        .fold((0.5, f64::NEG_INFINITY), |best, c| {
            if c.1 > best.1 {
                c
            } else {
                best
            }
        })
}

/// One fold's held-out figures.
#[derive(Clone, Debug, Serialize)]
pub struct FoldResult {
    pub fold: usize,
    pub patients: usize,
    pub rows: usize,
    pub auroc: f64,
    pub auprc: f64,
    /// At the threshold chosen on the other folds' held-out predictions.
    pub threshold: f64,
    pub utility: f64,
    pub newton_iterations: usize,
}

/// Mean with a t-based 95 % interval over folds.
#[derive(Clone, Debug, Serialize)]
pub struct Interval {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

fn interval(v: &[f64]) -> Interval {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    // t quantiles (0.975) for 1–9 degrees of freedom.
    let t = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262,
    ]
    .get(v.len().saturating_sub(2))
    .copied()
    .unwrap_or(1.96);
    let half = t * sd / n.max(1.0).sqrt();
    Interval {
        mean,
        low: mean - half,
        high: mean + half,
    }
}

/// Cross-validated figures.
#[derive(Clone, Debug, Serialize)]
pub struct CvSummary {
    pub patients: usize,
    pub septic_patients: usize,
    pub rows: usize,
    pub positive_rows: usize,
    pub folds: Vec<FoldResult>,
    pub auroc: Interval,
    pub auprc: Interval,
    pub utility: Interval,
    /// Pooled held-out predictions at the pooled best threshold (slightly optimistic: the
    /// threshold is chosen on the same predictions).
    pub pooled_auroc: f64,
    pub pooled_threshold: f64,
    pub pooled_utility: f64,
    /// 95 % bootstrap interval over patients of the pooled utility at that threshold.
    pub pooled_utility_bootstrap: (f64, f64),
    pub calibration: Vec<metrics::CalibrationBin>,
    pub brier: f64,
    pub episodes: metrics::EpisodeStats,
    pub l2: f64,
    pub seed: u64,
}

fn bootstrap_utility(d: &Dataset, probs: &[f64], t: f64, seed: u64) -> (f64, f64) {
    let per: Vec<UtilitySums> = d
        .ranges
        .iter()
        .map(|r| {
            let mut s = UtilitySums::default();
            if let (Some(l), Some(p)) = (d.y.get(r.clone()), probs.get(r.clone())) {
                let a: Vec<bool> = p.iter().map(|v| *v >= t).collect();
                s.add(l, &a);
            }
            s
        })
        .collect();
    let n = per.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mut state = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut us: Vec<f64> = (0..1000)
        .map(|_| {
            let mut s = UtilitySums::default();
            for _ in 0..n {
                if let Some(p) = per.get((next() % n as u64) as usize) {
                    s.observed += p.observed;
                    s.best += p.best;
                    s.no_alarms += p.no_alarms;
                }
            }
            s.normalized()
        })
        .collect();
    us.sort_by(f64::total_cmp);
    (
        us.get(25).copied().unwrap_or(0.0),
        us.get(974).copied().unwrap_or(0.0),
    )
}

/// Cross-validates, fits on everything and returns the artifact with its CV summary.
pub fn train(
    d: &Dataset,
    opts: &TrainOptions,
) -> Result<(RiskModel, CvSummary), PhysionetEvalError> {
    let k = opts.folds.max(2);
    let fold = assign_folds(d.ranges.len(), k, opts.seed);
    let mut oof = vec![0.5; d.x.len()];
    let mut fits = Vec::new();
    for f in 0..k {
        let train_rows: Vec<usize> = (0..d.x.len())
            .filter(|r| d.patient.get(*r).and_then(|p| fold.get(*p)) != Some(&f))
            .collect();
        let m = fit(&d.x, &d.y, &train_rows, opts.l2, opts.jobs)?;
        for (p, r) in d.ranges.iter().enumerate() {
            if fold.get(p) == Some(&f) {
                for i in r.clone() {
                    if let (Some(o), Some(x)) = (oof.get_mut(i), d.x.get(i)) {
                        *o = m.predict(x);
                    }
                }
            }
        }
        if opts.progress {
            eprintln!("fold {}/{k}: {} Newton iterations", f + 1, m.iterations);
        }
        fits.push(m.iterations);
    }
    let mut folds = Vec::new();
    for f in 0..k {
        let inside: Vec<usize> = (0..d.ranges.len())
            .filter(|p| fold.get(*p) == Some(&f))
            .collect();
        let others: Vec<usize> = (0..d.ranges.len())
            .filter(|p| fold.get(*p) != Some(&f))
            .collect();
        let (t, _) = best_threshold(d, &oof, &others);
        let rows: Vec<usize> = inside
            .iter()
            .flat_map(|p| d.ranges.get(*p).cloned().unwrap_or_default())
            .collect();
        let s: Vec<f64> = rows.iter().filter_map(|r| oof.get(*r).copied()).collect();
        let y: Vec<bool> = rows.iter().filter_map(|r| d.y.get(*r).copied()).collect();
        folds.push(FoldResult {
            fold: f,
            patients: inside.len(),
            rows: rows.len(),
            auroc: metrics::auroc(&s, &y),
            auprc: metrics::auprc(&s, &y),
            threshold: t,
            utility: utility_at(d, &oof, &inside, t),
            newton_iterations: fits.get(f).copied().unwrap_or(0),
        });
    }
    let all: Vec<usize> = (0..d.ranges.len()).collect();
    let (pooled_threshold, pooled_utility) = best_threshold(d, &oof, &all);
    let (calibration, brier) = metrics::calibration(&oof, &d.y, 10);
    let alerts: Vec<bool> = oof.iter().map(|p| *p >= pooled_threshold).collect();
    let episodes = metrics::episodes(d.ranges.iter().map(|r| {
        (
            d.y.get(r.clone()).unwrap_or_default(),
            alerts.get(r.clone()).unwrap_or_default(),
        )
    }));
    let summary = CvSummary {
        patients: d.ranges.len(),
        septic_patients: d
            .ranges
            .iter()
            .filter(|r| d.y.get((*r).clone()).is_some_and(|l| l.iter().any(|x| *x)))
            .count(),
        rows: d.x.len(),
        positive_rows: d.y.iter().filter(|y| **y).count(),
        auroc: interval(&folds.iter().map(|f| f.auroc).collect::<Vec<_>>()),
        auprc: interval(&folds.iter().map(|f| f.auprc).collect::<Vec<_>>()),
        utility: interval(&folds.iter().map(|f| f.utility).collect::<Vec<_>>()),
        folds,
        pooled_auroc: metrics::auroc(&oof, &d.y),
        pooled_threshold,
        pooled_utility,
        pooled_utility_bootstrap: bootstrap_utility(d, &oof, pooled_threshold, opts.seed),
        calibration,
        brier,
        episodes,
        l2: opts.l2,
        seed: opts.seed,
    };
    let all_rows: Vec<usize> = (0..d.x.len()).collect();
    let m = fit(&d.x, &d.y, &all_rows, opts.l2, opts.jobs)?;
    let dim = m.mean.len();
    let weights = m.w.get(..dim).unwrap_or_default().to_vec();
    let quadratic_weights =
        m.w.get(dim..dim + m.quadratic.len())
            .unwrap_or_default()
            .to_vec();
    let mut training =
        serde_json::to_value(&summary).map_err(|e| PhysionetEvalError::Fit(e.to_string()))?;
    if let Some(o) = training.as_object_mut() {
        o.remove("calibration");
        o.remove("episodes");
        o.insert("final_newton_iterations".into(), m.iterations.into());
    }
    let model = RiskModel {
        schema: 1,
        name: "sepsis-risk logistic v1".into(),
        label: "PhysioNet 2019 SepsisLabel (Sepsis-3 onset − 6 h onward), hourly rows".into(),
        features: feature_names(),
        mean: m.mean,
        scale: m.scale,
        clip: CLIP,
        intercept: m.w.last().copied().unwrap_or(0.0),
        weights,
        quadratic: m.quadratic,
        quadratic_weights,
        threshold: round_sig(pooled_threshold),
        training,
    };
    model.check("trained model")?;
    Ok((model, summary))
}

fn round_sig(v: f64) -> f64 {
    (v * 1e5).round() / 1e5
}

/// Runs the whole command: read, replay, cross-validate, fit, write the artifact.
pub fn run(opts: &TrainOptions) -> Result<(RiskModel, CvSummary), PhysionetEvalError> {
    let files = physionet::read_dir(&opts.input, opts.labels.as_deref())?;
    let jobs = super::report::jobs(opts.jobs);
    let d = collect(&files, jobs, opts.progress)?;
    let opts = TrainOptions {
        jobs,
        ..opts.clone()
    };
    let (model, summary) = train(&d, &opts)?;
    let json =
        serde_json::to_string_pretty(&model).map_err(|e| PhysionetEvalError::Fit(e.to_string()))?;
    std::fs::write(&opts.out, json + "\n").map_err(|source| PhysionetEvalError::Io {
        path: opts.out.clone(),
        source,
    })?;
    Ok((model, summary))
}
