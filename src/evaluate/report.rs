//! The validation report of `vigil evaluate physionet`: every predictor on the same rows
//! (vigil's fitted model, the shock points baseline, qSOFA ≥ 2, NEWS2 ≥ 5, SOFA rise ≥ 2 and
//! the length-of-stay reference), as `report.json`, `report.html` and PNG plots.
//!
//! Owns the choice of predictors and thresholds for the comparison and the output files; the
//! arithmetic is in [`super::metrics`], the drawing in [`super::plot`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::metrics::{self, CalibrationBin, EpisodeStats, UtilitySums};
use super::physionet::{self, PatientFile, PhysionetEvalError, ReplaySetup, RowScores};
use super::plot::{Chart, PALETTE};
use crate::scorer::risk::{RiskModel, P_MIN};

/// Points of the shock baseline at which it alerts in the comparison.
pub const SHOCK_POINTS_ALERT: f64 = 3.0;
/// The length-of-stay reference of VALIDATION.md: alert from 55 h in the unit.
pub const HOURS_ALERT: f64 = 55.0;

/// One predictor of the comparison: a score per row and the threshold it alerts at.
pub struct Predictor {
    pub key: &'static str,
    pub name: String,
    pub score: fn(&RowScores) -> f64,
    pub threshold: f64,
}

/// The predictors compared, vigil's model first.
pub fn predictors(threshold: f64) -> Vec<Predictor> {
    vec![
        Predictor {
            key: "sepsis_risk",
            name: format!("vigil sepsis_risk ≥ {threshold}"),
            score: |r| r.risk.unwrap_or(P_MIN),
            threshold,
        },
        Predictor {
            key: "shock_risk",
            name: format!("shock points ≥ {SHOCK_POINTS_ALERT}"),
            score: |r| r.shock_points,
            threshold: SHOCK_POINTS_ALERT,
        },
        Predictor {
            key: "qsofa",
            name: "qSOFA ≥ 2".into(),
            score: |r| r.qsofa,
            threshold: 2.0,
        },
        Predictor {
            key: "news2",
            name: "NEWS2 ≥ 5".into(),
            score: |r| r.news2,
            threshold: 5.0,
        },
        Predictor {
            key: "sofa_rise",
            name: "SOFA rise ≥ 2".into(),
            score: |r| r.sofa_rise,
            threshold: 2.0,
        },
        Predictor {
            key: "hours_in_unit",
            name: format!("hours in unit ≥ {HOURS_ALERT} (reference)"),
            score: |r| r.hours,
            threshold: HOURS_ALERT,
        },
    ]
}

/// One predictor's figures.
#[derive(Clone, Debug, Serialize)]
pub struct PredictorReport {
    pub key: String,
    pub name: String,
    pub threshold: f64,
    /// Over labelled rows.
    pub auroc: Option<f64>,
    pub auprc: Option<f64>,
    pub utility: Option<f64>,
    pub utility_sums: Option<UtilitySums>,
    pub accuracy: Option<f64>,
    pub f_measure: Option<f64>,
    /// Positive rows / all rows (all patients).
    pub alert_rows: f64,
    /// Episode figures over labelled patients (alert burden over all patients in `burden`).
    pub episodes: Option<EpisodeStats>,
    pub alerts_per_patient_day: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Vec<CalibrationBin>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brier: Option<f64>,
    #[serde(skip)]
    pub roc: Vec<(f64, f64)>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub input: String,
    pub patients: usize,
    pub rows: usize,
    pub labelled_patients: usize,
    pub septic_patients: usize,
    pub labelled_rows: usize,
    pub positive_rows: usize,
    pub model: String,
    pub seconds: f64,
    pub jobs: usize,
    pub predictors: Vec<PredictorReport>,
    pub definitions: Vec<(String, String)>,
}

/// Scores every predictor on the replayed rows.
pub fn build(
    files: &[PatientFile],
    rows: &[Vec<RowScores>],
    preds: &[Predictor],
) -> Vec<PredictorReport> {
    let labelled: Vec<(usize, &Vec<bool>)> = files
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.labels.as_ref().map(|l| (i, l)))
        .collect();
    let mut out = Vec::new();
    for p in preds {
        let scores: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| r.iter().map(p.score).collect())
            .collect();
        let alerts: Vec<Vec<bool>> = scores
            .iter()
            .map(|s| s.iter().map(|v| *v >= p.threshold).collect())
            .collect();
        let all_rows: usize = alerts.iter().map(Vec::len).sum();
        let pos_rows: usize = alerts.iter().flatten().filter(|a| **a).count();
        let burden = metrics::episodes(alerts.iter().map(|a| (&[][..], &a[..])));
        let mut r = PredictorReport {
            key: p.key.into(),
            name: p.name.clone(),
            threshold: p.threshold,
            auroc: None,
            auprc: None,
            utility: None,
            utility_sums: None,
            accuracy: None,
            f_measure: None,
            alert_rows: if all_rows > 0 {
                pos_rows as f64 / all_rows as f64
            } else {
                0.0
            },
            episodes: None,
            alerts_per_patient_day: burden.alerts_per_patient_day,
            calibration: None,
            brier: None,
            roc: Vec::new(),
        };
        if !labelled.is_empty() {
            let mut flat_s = Vec::new();
            let mut flat_y = Vec::new();
            let mut flat_a = Vec::new();
            let mut sums = UtilitySums::default();
            let mut pairs = Vec::new();
            for (i, l) in &labelled {
                let (Some(s), Some(a)) = (scores.get(*i), alerts.get(*i)) else {
                    continue;
                };
                let n = l.len().min(s.len());
                flat_s.extend_from_slice(s.get(..n).unwrap_or_default());
                flat_y.extend_from_slice(l.get(..n).unwrap_or_default());
                flat_a.extend_from_slice(a.get(..n).unwrap_or_default());
                sums.add(
                    l.get(..n).unwrap_or_default(),
                    a.get(..n).unwrap_or_default(),
                );
                pairs.push((
                    l.get(..n).unwrap_or_default(),
                    a.get(..n).unwrap_or_default(),
                ));
            }
            let (mut tp, mut fp, mut fneg, mut tn) = (0.0, 0.0, 0.0, 0.0);
            for (a, y) in flat_a.iter().zip(&flat_y) {
                match (a, y) {
                    (true, true) => tp += 1.0,
                    (true, false) => fp += 1.0,
                    (false, true) => fneg += 1.0,
                    (false, false) => tn += 1.0,
                }
            }
            let n = tp + fp + fneg + tn;
            r.accuracy = (n > 0.0).then(|| (tp + tn) / n);
            r.f_measure = (tp > 0.0).then(|| 2.0 * tp / (2.0 * tp + fp + fneg));
            r.auroc = Some(metrics::auroc(&flat_s, &flat_y));
            r.auprc = Some(metrics::auprc(&flat_s, &flat_y));
            r.utility = Some(sums.normalized());
            r.utility_sums = Some(sums);
            r.episodes = Some(metrics::episodes(pairs));
            let c = metrics::curve(&flat_s, &flat_y);
            let step = (c.len() / 400).max(1);
            r.roc = c
                .iter()
                .enumerate()
                .filter(|(i, _)| i % step == 0 || *i + 1 == c.len())
                .map(|(_, p)| (p.0, p.1))
                .collect();
            if p.key == "sepsis_risk" {
                let (bins, brier) = metrics::calibration(&flat_s, &flat_y, 10);
                r.calibration = Some(bins);
                r.brier = Some(brier);
            }
        }
        out.push(r);
    }
    out
}

fn color_hex(i: usize) -> String {
    let c = PALETTE.get(i % PALETTE.len()).copied().unwrap_or([0, 0, 0]);
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), PhysionetEvalError> {
    std::fs::write(path, bytes).map_err(|source| PhysionetEvalError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the PNG plots into `dir`; returns their file names with captions.
pub fn write_plots(
    dir: &Path,
    report: &Report,
) -> Result<Vec<(String, String)>, PhysionetEvalError> {
    let mut out = Vec::new();
    let labelled = report.labelled_patients > 0;
    if labelled {
        let mut c = Chart::new(480, 480, (0.0, 1.0), (0.0, 1.0));
        c.line((0.0, 0.0), (1.0, 1.0), [190, 190, 190], 1);
        for (i, p) in report.predictors.iter().enumerate().rev() {
            c.polyline(
                &p.roc,
                PALETTE[i % PALETTE.len()],
                if i == 0 { 3 } else { 2 },
            );
        }
        write(&dir.join("roc.png"), &c.png())?;
        out.push((
            "roc.png".into(),
            "ROC over hourly rows: x false-positive rate 0–1, y true-positive rate 0–1; grid at tenths".into(),
        ));
        if let Some(bins) = report
            .predictors
            .first()
            .and_then(|p| p.calibration.as_ref())
        {
            let top = bins
                .iter()
                .map(|b| b.mean_predicted.max(b.observed))
                .fold(0.0_f64, f64::max)
                .max(0.01);
            let top = (top * 10.0).ceil() / 10.0;
            let mut c = Chart::new(480, 480, (0.0, top), (0.0, top));
            c.line((0.0, 0.0), (top, top), [190, 190, 190], 1);
            let pts: Vec<(f64, f64)> = bins
                .iter()
                .map(|b| (b.mean_predicted, b.observed))
                .collect();
            c.polyline(&pts, PALETTE[0], 2);
            for p in &pts {
                c.marker(*p, PALETTE[0]);
            }
            write(&dir.join("calibration.png"), &c.png())?;
            out.push((
                "calibration.png".into(),
                format!(
                    "Calibration of sepsis_risk in deciles of the prediction: x mean predicted, y observed label rate, both 0–{top:.1}; grid at tenths of that"
                ),
            ));
        }
        if let Some(ep) = report.predictors.first().and_then(|p| p.episodes.as_ref()) {
            // Lead time histogram: 2 h bins from −3 to 48 h.
            let edges: Vec<f64> = (0..=26).map(|i| -4.0 + 2.0 * f64::from(i)).collect();
            let mut counts = vec![0usize; edges.len() - 1];
            for l in &ep.lead_times_h {
                if let Some(i) = edges.windows(2).position(|w| *l >= w[0] && *l < w[1]) {
                    if let Some(c) = counts.get_mut(i) {
                        *c += 1;
                    }
                }
            }
            let maxc = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
            let mut c = Chart::new(560, 360, (-4.0, 48.0), (0.0, maxc));
            for (i, n) in counts.iter().enumerate() {
                if let (Some(a), Some(b)) = (edges.get(i), edges.get(i + 1)) {
                    c.rect((a + 0.15, 0.0), (b - 0.15, *n as f64), PALETTE[1]);
                }
            }
            c.line((0.0, 0.0), (0.0, maxc), [0, 0, 0], 1);
            write(&dir.join("lead_time.png"), &c.png())?;
            out.push((
                "lead_time.png".into(),
                format!(
                    "Lead time of vigil's first alert before onset (t_s), detected septic patients: x −4 to 48 h in 2 h bins (vertical line at 0), y patients 0–{maxc:.0}"
                ),
            ));
        }
    }
    let maxb = report
        .predictors
        .iter()
        .map(|p| p.alerts_per_patient_day)
        .fold(0.0_f64, f64::max)
        .max(0.1);
    let top = (maxb * 1.1 * 10.0).ceil() / 10.0;
    let n = report.predictors.len() as f64;
    let mut c = Chart::new(480, 360, (0.0, n), (0.0, top));
    for (i, p) in report.predictors.iter().enumerate() {
        let x = i as f64;
        c.rect(
            (x + 0.15, 0.0),
            (x + 0.85, p.alerts_per_patient_day),
            PALETTE[i % PALETTE.len()],
        );
    }
    write(&dir.join("alert_burden.png"), &c.png())?;
    out.push((
        "alert_burden.png".into(),
        format!(
            "Alert episodes per patient-day, one bar per predictor in table order: y 0–{top:.1}"
        ),
    ));
    Ok(out)
}

fn f(v: Option<f64>, d: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.d$}"))
}

/// The HTML page: the table, the plots and the definitions.
pub fn html(report: &Report, plots: &[(String, String)]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>vigil validation: PhysioNet 2019</title>\
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:3px 8px;text-align:right}}\
td:first-child,th:first-child{{text-align:left}}table{{border-collapse:collapse}}tr:nth-child(even){{background:#f4f4f4}}\
figure{{display:inline-block;margin:1em}}</style></head><body>\
<h1>vigil validation on PhysioNet 2019 files</h1>\
<p>Input <code>{}</code>: {} patients, {} hourly rows; {} patients labelled ({} septic), {} of {} labelled rows positive. \
Model: {}. Replayed through the normalizer and the live scorer in {:.1} s on {} threads.</p>",
        html_escape(&report.input),
        report.patients,
        report.rows,
        report.labelled_patients,
        report.septic_patients,
        report.positive_rows,
        report.labelled_rows,
        html_escape(&report.model),
        report.seconds,
        report.jobs
    );
    s.push_str("<table><tr><th>predictor</th><th>AUROC</th><th>AUPRC</th><th>utility</th><th>sensitivity</th><th>median lead (h)</th><th>alerts / patient-day</th><th>PPV</th><th>alert rows</th><th>accuracy</th><th>F</th></tr>");
    for (i, p) in report.predictors.iter().enumerate() {
        let ep = p.episodes.as_ref();
        let _ = write!(
            s,
            "<tr><td><span style=\"color:{}\">■</span> {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{:.1} %</td><td>{}</td><td>{}</td></tr>",
            color_hex(i),
            html_escape(&p.name),
            f(p.auroc, 3),
            f(p.auprc, 3),
            f(p.utility, 3),
            f(ep.map(|e| e.sensitivity), 3),
            f(ep.and_then(|e| e.median_lead_h), 1),
            p.alerts_per_patient_day,
            f(ep.and_then(|e| e.ppv), 3),
            100.0 * p.alert_rows,
            f(p.accuracy, 3),
            f(p.f_measure, 3),
        );
    }
    s.push_str("</table>");
    if let Some(b) = report.predictors.first().and_then(|p| p.brier) {
        let _ = write!(s, "<p>Brier score of sepsis_risk: {b:.4}.</p>");
    }
    for (file, caption) in plots {
        let _ = write!(
            s,
            "<figure><img src=\"{file}\" alt=\"{c}\"><figcaption>{c}</figcaption></figure>",
            c = html_escape(caption)
        );
    }
    s.push_str("<h2>Definitions</h2><dl>");
    for (k, v) in &report.definitions {
        let _ = write!(
            s,
            "<dt><b>{}</b></dt><dd>{}</dd>",
            html_escape(k),
            html_escape(v)
        );
    }
    s.push_str("</dl></body></html>\n");
    s
}

fn html_escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn definitions() -> Vec<(String, String)> {
    [
        ("row", "one hourly row of a challenge file; its prediction is vigil's score at the end of that hour, after every message of that row and before any of the next"),
        ("utility", "PhysioNet 2019 normalised utility (VALIDATION.md): onset t_s = first SepsisLabel row + 6; (U − U_no_alarms) / (U_best − U_no_alarms)"),
        ("AUROC / AUPRC", "over all labelled rows, the predictor's score against SepsisLabel; ties count half (AUROC), precision at each distinct score (AUPRC)"),
        ("sensitivity", "septic patients with an alert at most 48 h before and at most 3 h after t_s"),
        ("median lead", "hours from that first alert to t_s, median over detected patients"),
        ("alert", "an episode: a run of consecutive positive rows"),
        ("alerts / patient-day", "alert episodes per 24 rows, all patients"),
        ("PPV", "alert episodes in septic patients that overlap [t_s − 12, t_s + 3], over all alert episodes of labelled patients"),
        ("calibration", "deciles of the predicted probability: mean prediction against the rate of SepsisLabel = 1"),
        ("shock points", "the transparent shock-transition baseline (docs/scoring.md): 0–11 points from shock index, sustained shock index, MAP, lactate, vasopressor, temperature and haemoglobin"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

/// What `vigil evaluate physionet` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct PhysionetOptions {
    pub input: PathBuf,
    pub predictions_out: PathBuf,
    pub report_out: PathBuf,
    /// Overrides the model's alert threshold.
    pub threshold: Option<f64>,
    pub labels: Option<PathBuf>,
    /// A model file instead of the built-in one.
    pub model: Option<PathBuf>,
    /// Also write the cohort as one recording (replayable with `vigil replay`).
    pub recording: Option<PathBuf>,
    /// Worker threads (0: one per core).
    pub jobs: usize,
    pub progress: bool,
}

/// Worker threads for `jobs` (0: one per core).
pub fn jobs(jobs: usize) -> usize {
    if jobs > 0 {
        jobs
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Runs the whole command: read, replay, write predictions, plots and the report.
pub fn run(opts: &PhysionetOptions) -> Result<Report, PhysionetEvalError> {
    let files = physionet::read_dir(&opts.input, opts.labels.as_deref())?;
    let model = match &opts.model {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| PhysionetEvalError::Io {
                path: p.clone(),
                source,
            })?;
            Arc::new(RiskModel::from_json(&p.display().to_string(), &text)?)
        }
        None => RiskModel::builtin().ok_or_else(|| {
            PhysionetEvalError::Fit("the built-in model scoring/sepsis-risk.json is invalid".into())
        })?,
    };
    let threshold = opts.threshold.unwrap_or(model.threshold);
    if let Some(p) = &opts.recording {
        let (header, entries) = physionet::cohort_recording(&files);
        crate::sources::replay::demo::write_recording(p, &header, &entries).map_err(|source| {
            PhysionetEvalError::Io {
                path: p.clone(),
                source,
            }
        })?;
    }
    let setup = ReplaySetup::builtin(Some(model.clone()), false)?;
    let jobs = jobs(opts.jobs);
    let started = std::time::Instant::now();
    let rows = physionet::replay_all(&files, &setup, jobs, opts.progress)?;
    let seconds = started.elapsed().as_secs_f64();
    for dir in [&opts.predictions_out, &opts.report_out] {
        std::fs::create_dir_all(dir).map_err(|source| PhysionetEvalError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    for (f, r) in files.iter().zip(&rows) {
        let probs: Vec<f64> = r.iter().map(|x| x.risk.unwrap_or(P_MIN)).collect();
        write(
            &opts.predictions_out.join(&f.name),
            physionet::predictions_text(&probs, threshold).as_bytes(),
        )?;
    }
    let preds = predictors(threshold);
    let labelled: Vec<&Vec<bool>> = files.iter().filter_map(|f| f.labels.as_ref()).collect();
    let report = Report {
        input: opts.input.display().to_string(),
        patients: files.len(),
        rows: rows.iter().map(Vec::len).sum(),
        labelled_patients: labelled.len(),
        septic_patients: labelled.iter().filter(|l| l.iter().any(|x| *x)).count(),
        labelled_rows: labelled.iter().map(|l| l.len()).sum(),
        positive_rows: labelled
            .iter()
            .map(|l| l.iter().filter(|x| **x).count())
            .sum(),
        model: format!("{} (threshold {threshold})", model.name),
        seconds,
        jobs,
        predictors: build(&files, &rows, &preds),
        definitions: definitions(),
    };
    let plots = write_plots(&opts.report_out, &report)?;
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| PhysionetEvalError::Fit(format!("report.json: {e}")))?;
    write(&opts.report_out.join("report.json"), json.as_bytes())?;
    write(
        &opts.report_out.join("report.html"),
        html(&report, &plots).as_bytes(),
    )?;
    Ok(report)
}

/// The summary printed after a run.
pub fn summary(r: &Report) -> String {
    let mut s = format!(
        "{} patients, {} rows ({} labelled patients, {} septic) in {:.1} s on {} threads\n",
        r.patients, r.rows, r.labelled_patients, r.septic_patients, r.seconds, r.jobs
    );
    let _ = writeln!(
        s,
        "{:<40} {:>6} {:>6} {:>7} {:>6} {:>6} {:>9} {:>6}",
        "predictor", "AUROC", "AUPRC", "utility", "sens", "lead h", "alerts/pd", "PPV"
    );
    for p in &r.predictors {
        let ep = p.episodes.as_ref();
        let _ = writeln!(
            s,
            "{:<40} {:>6} {:>6} {:>7} {:>6} {:>6} {:>9.2} {:>6}",
            p.name,
            f(p.auroc, 3),
            f(p.auprc, 3),
            f(p.utility, 3),
            f(ep.map(|e| e.sensitivity), 3),
            f(ep.and_then(|e| e.median_lead_h), 1),
            p.alerts_per_patient_day,
            f(ep.and_then(|e| e.ppv), 3)
        );
    }
    s
}
