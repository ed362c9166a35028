//! `vigil evaluate physionet`: PhysioNet/CinC 2019 patient files replayed through the
//! normalizer and the live scorer on virtual time; one prediction per input row in the
//! challenge's format, and a report comparing vigil's model with the rule baselines.
//!
//! Owns reading a directory of challenge files (labels from the files or `--labels DIR`), the
//! per-patient replay driver (also used by `vigil train physionet` to collect the features the
//! live scorer computes), the prediction files and the cohort recording. Every number comes from
//! the scorer: this module only stops the clock at the end of each hour and reads the score set.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::model::{IngestRecord, ScoreKind, ScoreSet, Timestamp, HOUR_MS};
use crate::normalize::{NormalizeSettings, NormalizeTables, Normalizer};
use crate::scorer::risk::RiskModel;
use crate::scorer::{Scorer, ScoringTables};
use crate::sources::replay::demo::DemoSources;
use crate::sources::replay::format::{RecordedProtocol, RecordedSource};
use crate::sources::replay::physionet::{
    parse_physionet, physionet_to_hl7, PhysionetError, PhysionetPatient,
};
use crate::sources::replay::{RecordingEntry, RecordingHeader, RecordingReader, RecordingWriter};

/// Where every replayed stay starts: a whole hour, so the scorer's clock-hour buckets are the
/// file's rows.
pub const ADMIT: Timestamp = Timestamp(1_577_836_800_000); // 2020-01-01T00:00:00Z
/// The unit the replayed beds belong to.
pub const UNIT: &str = "PHYSIONET";

/// The attribution every recording or sample made from the challenge data carries.
pub const ATTRIBUTION: &str = "PhysioNet/Computing in Cardiology Challenge 2019 (Reyna MA et al., \
Crit Care Med 48(2):210-217, 2020; doi:10.13026/v64v-d857); Goldberger A et al., Circulation \
101(23):e215-e220, 2000. Open Access (PhysioNet).";

#[derive(Debug, thiserror::Error)]
pub enum PhysionetEvalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: PhysionetError,
    },
    #[error("{path}: {reason}")]
    Labels { path: PathBuf, reason: String },
    #[error("{0}: no challenge files (*.psv) found")]
    Empty(PathBuf),
    #[error(transparent)]
    Recording(#[from] crate::sources::replay::RecordingError),
    #[error("{0}")]
    Model(#[from] crate::scorer::risk::RiskModelError),
    #[error("tables: {0}")]
    Tables(String),
    #[error("{0}")]
    Fit(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PhysionetEvalError + '_ {
    move |source| PhysionetEvalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One input file.
#[derive(Clone, Debug, PartialEq)]
pub struct PatientFile {
    /// The file name (predictions are written under the same name).
    pub name: String,
    pub patient: PhysionetPatient,
    /// One label per row, from the file or the labels directory; `None` when neither has them.
    pub labels: Option<Vec<bool>>,
}

/// Reads the `SepsisLabel` column of a labels file (any `|`-separated file with that column).
pub fn read_labels(path: &Path) -> Result<Vec<bool>, PhysionetEvalError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let bad = |reason: String| PhysionetEvalError::Labels {
        path: path.to_path_buf(),
        reason,
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or_else(|| bad("empty file".into()))?;
    let col = header
        .trim_end_matches('\r')
        .split('|')
        .position(|h| h.trim() == "SepsisLabel")
        .ok_or_else(|| bad("no SepsisLabel column".into()))?;
    lines
        .enumerate()
        .map(|(i, l)| {
            let f = l.trim_end_matches('\r').split('|').nth(col).map(str::trim);
            match f {
                Some("1") | Some("1.0") => Ok(true),
                Some("0") | Some("0.0") => Ok(false),
                other => Err(bad(format!("line {}: SepsisLabel {other:?}", i + 2))),
            }
        })
        .collect()
}

/// Reads every `*.psv` file of `input` (sorted by name). Labels come from the files'
/// `SepsisLabel` column, or from the same-named file in `labels` when given (which wins).
pub fn read_dir(
    input: &Path,
    labels: Option<&Path>,
) -> Result<Vec<PatientFile>, PhysionetEvalError> {
    let mut names: Vec<String> = std::fs::read_dir(input)
        .map_err(io_err(input))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".psv"))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(PhysionetEvalError::Empty(input.to_path_buf()));
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let path = input.join(&name);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let id = name.trim_end_matches(".psv").to_string();
        let patient = parse_physionet(&id, &text).map_err(|source| PhysionetEvalError::Parse {
            path: path.clone(),
            source,
        })?;
        let own: Option<Vec<bool>> = patient.rows.iter().map(|r| r.sepsis_label).collect();
        let labels = match labels {
            Some(dir) => {
                let lp = dir.join(&name);
                let l = read_labels(&lp)?;
                if l.len() != patient.rows.len() {
                    return Err(PhysionetEvalError::Labels {
                        path: lp,
                        reason: format!(
                            "{} labels for {} rows of {}",
                            l.len(),
                            patient.rows.len(),
                            path.display()
                        ),
                    });
                }
                Some(l)
            }
            None => own.filter(|l| !l.is_empty()),
        };
        out.push(PatientFile {
            name,
            patient,
            labels,
        });
    }
    Ok(out)
}

/// The bed a patient is replayed in (one bed per patient).
pub fn bed_of(index: usize) -> String {
    format!("PN{:05}", index + 1)
}

/// The sources of a PhysioNet recording.
pub fn recorded_sources() -> Vec<RecordedSource> {
    let s = DemoSources::default();
    [s.monitors, s.adt, s.lab]
        .into_iter()
        .map(|name| RecordedSource {
            name,
            protocol: RecordedProtocol::Hl7,
            profile: None,
            unit: None,
            bed: None,
        })
        .collect()
}

/// The whole cohort as one recording: one bed per patient, every stay admitted at [`ADMIT`].
pub fn cohort_recording(files: &[PatientFile]) -> (RecordingHeader, Vec<RecordingEntry>) {
    let sources = DemoSources::default();
    let mut entries = Vec::new();
    for (i, f) in files.iter().enumerate() {
        entries.extend(physionet_to_hl7(
            &f.patient,
            &bed_of(i),
            UNIT,
            ADMIT,
            &sources,
        ));
    }
    // Stable: equal times keep patient order.
    entries.sort_by_key(|e| e.t);
    let mut header = RecordingHeader::new(
        format!(
            "PhysioNet 2019 cohort: {} patients, one bed each",
            files.len()
        ),
        recorded_sources(),
    );
    header.attribution = Some(ATTRIBUTION.into());
    (header, entries)
}

/// What the scorer said at the end of one row's hour.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowScores {
    /// `sepsis_risk` (absent without a model).
    pub risk: Option<f64>,
    pub shock_points: f64,
    pub qsofa: f64,
    pub news2: f64,
    pub sofa_rise: f64,
    /// Hours since the admit.
    pub hours: f64,
    /// The model's features (only when asked for, for training).
    pub features: Option<Vec<f64>>,
}

/// How a replay scores.
#[derive(Clone)]
pub struct ReplaySetup {
    pub normalize: NormalizeTables,
    pub scoring: ScoringTables,
    pub model: Option<Arc<RiskModel>>,
    /// Also return each row's feature vector.
    pub features: bool,
}

impl ReplaySetup {
    /// The built-in tables with `model` (`None`: no `sepsis_risk`).
    pub fn builtin(
        model: Option<Arc<RiskModel>>,
        features: bool,
    ) -> Result<Self, PhysionetEvalError> {
        let normalize = NormalizeTables::builtin().map_err(|p| {
            PhysionetEvalError::Tables(
                p.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        Ok(ReplaySetup {
            normalize,
            scoring: ScoringTables::builtin(),
            model,
            features,
        })
    }
}

fn value(set: &ScoreSet, kind: ScoreKind) -> f64 {
    set.get(kind).map_or(0.0, |s| s.value)
}

/// Replays one patient alone (bed `bed`, admitted at [`ADMIT`]) through the recording format,
/// the normalizer and the scorer, and reads the scores at the end of every row's hour: after
/// everything that arrived up to that instant, before anything later.
pub fn replay_patient(
    p: &PhysionetPatient,
    bed: &str,
    setup: &ReplaySetup,
) -> Result<Vec<RowScores>, PhysionetEvalError> {
    let entries = physionet_to_hl7(p, bed, UNIT, ADMIT, &DemoSources::default());
    let mut bytes = Vec::new();
    {
        let header = RecordingHeader::new("physionet patient", recorded_sources());
        let mut w =
            RecordingWriter::new(&mut bytes, &header).map_err(io_err(Path::new("<recording>")))?;
        for e in &entries {
            w.push(e).map_err(io_err(Path::new("<recording>")))?;
        }
    }
    let mut reader = RecordingReader::from_reader(Box::new(std::io::Cursor::new(bytes)))?;
    let mut normalizer = Normalizer::new(setup.normalize.clone(), NormalizeSettings::default());
    let mut scorer = Scorer::new(setup.scoring.clone());
    scorer.set_risk_model(setup.model.clone());
    let first = p.rows.first().map_or(0, |r| r.iculos);
    let ends: Vec<Timestamp> = p
        .rows
        .iter()
        .map(|r| ADMIT.plus_ms((i64::from(r.iculos - first) + 1) * HOUR_MS))
        .collect();
    let mut out = Vec::with_capacity(ends.len());
    let mut patient: Option<String> = None;
    let score_until = |scorer: &mut Scorer,
                       patient: &Option<String>,
                       out: &mut Vec<RowScores>,
                       upto: Option<Timestamp>| {
        while let Some(end) = ends.get(out.len()).copied() {
            if upto.is_some_and(|t| t <= end) {
                break;
            }
            let row = patient
                .as_deref()
                .and_then(|key| {
                    let set = scorer.evaluate(key, end)?;
                    let features = if setup.features {
                        scorer.risk_features(key, end, &set)
                    } else {
                        None
                    };
                    Some(RowScores {
                        risk: set.get(ScoreKind::SepsisRisk).map(|s| s.value),
                        shock_points: value(&set, ScoreKind::ShockRisk),
                        qsofa: value(&set, ScoreKind::Qsofa),
                        news2: value(&set, ScoreKind::News2),
                        sofa_rise: value(&set, ScoreKind::SofaRise),
                        hours: end.since(ADMIT) as f64 / HOUR_MS as f64,
                        features,
                    })
                })
                .unwrap_or_default();
            out.push(row);
        }
    };
    while let Some(entry) = reader.next_entry()? {
        score_until(&mut scorer, &patient, &mut out, Some(entry.t));
        let payload = entry.payload()?;
        let Ok(n) = normalizer.hl7(&entry.source, &payload, entry.t) else {
            continue;
        };
        for rec in &n.records {
            if let IngestRecord::Census(ev) = rec {
                patient.get_or_insert_with(|| ev.patient.clone());
            }
            scorer.ingest(rec);
        }
    }
    score_until(&mut scorer, &patient, &mut out, None);
    Ok(out)
}

/// Replays every file on `jobs` threads; the result is in file order and does not depend on
/// `jobs`. With `progress`, a line on stderr counts the patients done.
pub fn replay_all(
    files: &[PatientFile],
    setup: &ReplaySetup,
    jobs: usize,
    progress: bool,
) -> Result<Vec<Vec<RowScores>>, PhysionetEvalError> {
    let jobs = jobs.clamp(1, 64);
    let done = AtomicUsize::new(0);
    let total = files.len();
    let started = std::time::Instant::now();
    let results: Vec<Vec<PatientResult>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..jobs)
            .map(|k| {
                let done = &done;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for (i, f) in files.iter().enumerate().skip(k).step_by(jobs) {
                        mine.push((i, replay_patient(&f.patient, &bed_of(i), setup)));
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if progress && (n % 25 == 0 || n == total) {
                            progress_line(n, total, started.elapsed().as_secs_f64());
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    if progress {
        eprintln!();
    }
    let mut slots: Vec<Option<Vec<RowScores>>> = vec![None; total];
    for (i, r) in results.into_iter().flatten() {
        if let Some(slot) = slots.get_mut(i) {
            *slot = Some(r?);
        }
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.ok_or_else(|| {
                PhysionetEvalError::Fit(format!(
                    "patient {} was not replayed (a worker thread failed)",
                    files.get(i).map_or("?", |f| f.name.as_str())
                ))
            })
        })
        .collect()
}

/// One patient's scores, by its index in the input.
type PatientResult = (usize, Result<Vec<RowScores>, PhysionetEvalError>);

fn progress_line(done: usize, total: usize, secs: f64) {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let bar: String = (0..WIDTH)
        .map(|i| if i < filled { '#' } else { '.' })
        .collect();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    // A bar redrawn in place on a terminal; in a log, a line at every tenth of the way.
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprint!("\r[{bar}] {done}/{total} patients, {secs:.0} s ({rate:.0}/s)");
    } else {
        let step = (total / 10).max(1);
        if done % step == 0 || done == total {
            eprintln!("[{bar}] {done}/{total} patients, {secs:.0} s ({rate:.0}/s)");
        }
    }
}

/// The prediction file: header, then `probability|label` per row.
pub fn predictions_text(probs: &[f64], threshold: f64) -> String {
    let mut s = String::with_capacity(32 + probs.len() * 12);
    s.push_str("PredictedProbability|PredictedLabel\n");
    for p in probs {
        s.push_str(&format!("{p:.6}|{}\n", u8::from(*p >= threshold)));
    }
    s
}
