//! `vigil evaluate mimic-sofa`: the MIMIC-IV demo replayed through the normalizer and the
//! scorer on virtual time, scored at the end of every hour of mimic-code's grid, and compared
//! with mimic-code's hourly SOFA (`sofa_reference.csv`).
//!
//! Owns the replay driver, the output table (mimic-code's column names) and the agreement
//! report. The scores are the live scorer's: [`Scorer::evaluate`] for the 24 h components and
//! [`sofa::hourly_row`] for each hour's own points. The driver feeds the stages itself instead
//! of going through `app::run_pipeline` only because it must stop the clock at every hour's end
//! and read each patient's state there; the stages and their order are the pipeline's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::model::{CensusKind, Drug, IngestRecord, ScoreKind, Timestamp};
use crate::normalize::{NormalizeSettings, NormalizeTables, Normalizer};
use crate::scorer::sofa::{self, SofaHour, ORGANS};
use crate::scorer::{Scorer, ScoringTables};
use crate::sources::replay::mimic::{
    self, format_time, mimic_grid, parse_time, GridHour, MimicImport, MimicItems,
};
use crate::sources::replay::{RecordingReader, RecordingWriter};

const CODES: &str = include_str!("../../device-profiles/codes.toml");
const PLAUSIBILITY: &str = include_str!("../../device-profiles/plausibility.toml");

/// The reference's 24 h columns, compared one by one; the last is the total.
pub const COLUMNS_24H: [&str; 7] = [
    "respiration_24hours",
    "coagulation_24hours",
    "liver_24hours",
    "cardiovascular_24hours",
    "cns_24hours",
    "renal_24hours",
    "sofa_24hours",
];

/// The reference's columns, in its order; the output uses the same.
pub const COLUMNS: [&str; 29] = [
    "stay_id",
    "hr",
    "starttime",
    "endtime",
    "pao2fio2ratio_novent",
    "pao2fio2ratio_vent",
    "rate_epinephrine",
    "rate_norepinephrine",
    "rate_dopamine",
    "rate_dobutamine",
    "meanbp_min",
    "gcs_min",
    "uo_24hr",
    "bilirubin_max",
    "creatinine_max",
    "platelet_min",
    "respiration",
    "coagulation",
    "liver",
    "cardiovascular",
    "cns",
    "renal",
    "respiration_24hours",
    "coagulation_24hours",
    "liver_24hours",
    "cardiovascular_24hours",
    "cns_24hours",
    "renal_24hours",
    "sofa_24hours",
];

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error(transparent)]
    Import(#[from] mimic::MimicError),
    #[error(transparent)]
    Recording(#[from] crate::sources::replay::RecordingError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Reference {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("tables: {0}")]
    Tables(String),
}

/// What `vigil evaluate mimic-sofa` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct MimicSofaOptions {
    /// The demo's directory (`icu/`, `hosp/`, `sofa_reference.csv`).
    pub input: PathBuf,
    /// vigil's hourly table, in the reference's columns.
    pub out: PathBuf,
    /// Score with [`ScoringTables::mimic_compatible`] and mimic-code's plausibility filters.
    pub mimic_compatible: bool,
    /// The reference table; `input/sofa_reference.csv` when not given.
    pub reference: Option<PathBuf>,
    /// Also write the imported recording here (replayable with `vigil replay`).
    pub recording: Option<PathBuf>,
    /// Only these stays (all when empty).
    pub stays: BTreeSet<u64>,
    /// How many differences to list per component.
    pub show: usize,
}

/// vigil's scores for one stay at the end of one grid hour.
#[derive(Clone, Debug, PartialEq)]
pub struct HourScores {
    pub stay_id: u64,
    pub hour: GridHour,
    /// The hour's own values and points.
    pub row: SofaHour,
    /// The 24 h components in [`ORGANS`] order, then the total; `None` when the stay had no
    /// state at that time.
    pub day: Option<[u8; 7]>,
}

/// One row of the reference: its grid hour and its 24 h values.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceRow {
    pub stay_id: u64,
    pub hour: GridHour,
    pub day: [u8; 7],
}

/// Agreement on one column.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColumnAgreement {
    pub column: &'static str,
    pub hours: usize,
    pub matching: usize,
    pub stays_differing: BTreeSet<u64>,
    /// (stay, hr, vigil, reference); vigil `None` = no score for that hour.
    pub differences: Vec<(u64, i64, Option<u8>, u8)>,
}

impl ColumnAgreement {
    pub fn rate(&self) -> f64 {
        if self.hours == 0 {
            1.0
        } else {
            self.matching as f64 / self.hours as f64
        }
    }
}

/// The comparison with the reference.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Agreement {
    pub columns: Vec<ColumnAgreement>,
    /// Reference rows whose stay and hour vigil did not score.
    pub missing: usize,
}

impl Agreement {
    /// True when every column matches on every hour.
    pub fn is_exact(&self) -> bool {
        self.missing == 0 && self.columns.iter().all(|c| c.matching == c.hours)
    }

    /// The printed report, listing at most `show` differences per column.
    pub fn report(&self, show: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<24} {:>13} {:>9} {:>7} {:>7}",
            "component", "agree", "rate", "stays", "hours"
        );
        for c in &self.columns {
            let _ = writeln!(
                s,
                "{:<24} {:>13} {:>8.2}% {:>7} {:>7}",
                c.column,
                format!("{}/{}", c.matching, c.hours),
                100.0 * c.rate(),
                c.stays_differing.len(),
                c.hours - c.matching
            );
        }
        if self.missing > 0 {
            let _ = writeln!(s, "{} reference hours not scored", self.missing);
        }
        for c in self.columns.iter().filter(|c| c.matching < c.hours) {
            let stays: Vec<String> = c.stays_differing.iter().map(u64::to_string).collect();
            let _ = writeln!(s, "\n{}: stays {}", c.column, stays.join(" "));
            for (stay, hr, ours, theirs) in c.differences.iter().take(show) {
                let ours = ours.map_or("-".to_string(), |v| v.to_string());
                let _ = writeln!(
                    s,
                    "  stay {stay} hr {hr}: vigil {ours}, mimic-code {theirs}"
                );
            }
            if c.differences.len() > show {
                let _ = writeln!(s, "  … {} more", c.differences.len() - show);
            }
        }
        s
    }
}

/// The tables a run scores with: the built-in ones, or their mimic-compatible variant (SOFA
/// preset plus the plausibility ranges of `mimic-items.toml`).
pub fn tables(
    mimic_compatible: bool,
    items: &MimicItems,
) -> Result<(NormalizeTables, ScoringTables), EvaluateError> {
    let scoring = ScoringTables::builtin();
    if !mimic_compatible {
        let n = NormalizeTables::builtin().map_err(|p| EvaluateError::Tables(problems(&p)))?;
        return Ok((n, scoring));
    }
    let mut plaus: toml::Table =
        toml::from_str(PLAUSIBILITY).map_err(|e| EvaluateError::Tables(e.to_string()))?;
    let Some(toml::Value::Array(ranges)) = plaus.get_mut("ranges") else {
        return Err(EvaluateError::Tables(
            "plausibility.toml has no `ranges`".into(),
        ));
    };
    for o in &items.mimic_compatible.ranges {
        let found = ranges.iter_mut().find_map(|r| {
            r.as_table_mut()
                .filter(|t| t.get("param").and_then(|p| p.as_str()) == Some(o.param.as_str()))
        });
        let Some(t) = found else {
            return Err(EvaluateError::Tables(format!(
                "mimic-items.toml: no plausibility range for {:?}",
                o.param
            )));
        };
        t.insert("min".into(), toml::Value::Float(o.min));
        t.insert("max".into(), toml::Value::Float(o.max));
        t.insert(
            "source".into(),
            toml::Value::String("mimic-code (mimic-items.toml)".into()),
        );
    }
    let text = toml::to_string(&plaus).map_err(|e| EvaluateError::Tables(e.to_string()))?;
    let n = NormalizeTables::from_sources(
        ("codes.toml", CODES),
        ("plausibility.toml + mimic-items.toml", &text),
    )
    .map_err(|p| EvaluateError::Tables(problems(&p)))?;
    Ok((n, scoring.mimic_compatible()))
}

fn problems(p: &[crate::config::Problem]) -> String {
    p.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a replay did besides scoring.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    pub entries: u64,
    pub records: u64,
    pub rejected: u64,
}

/// Replays the recording through the normalizer and the scorer and scores every stay at the end
/// of each of its grid hours. Data arriving exactly at an hour's end counts in that hour, as in
/// mimic-code (`charttime ≤ endtime`).
pub fn replay(
    import: &MimicImport,
    grid: &BTreeMap<u64, Vec<GridHour>>,
    normalize: NormalizeTables,
    scoring: ScoringTables,
) -> Result<(Vec<HourScores>, ReplayCounts), EvaluateError> {
    // Through the recording format, so what is scored is what a file would replay.
    let mut bytes = Vec::new();
    {
        let mut w = RecordingWriter::new(&mut bytes, &import.header).map_err(|source| {
            EvaluateError::Io {
                path: "<recording>".into(),
                source,
            }
        })?;
        for e in &import.entries {
            w.push(e).map_err(|source| EvaluateError::Io {
                path: "<recording>".into(),
                source,
            })?;
        }
    }
    let mut reader = RecordingReader::from_reader(Box::new(std::io::Cursor::new(bytes)))?;
    let mut normalizer = Normalizer::new(normalize, NormalizeSettings::default());
    let mut d = Driver {
        scorer: Scorer::new(scoring),
        grid,
        next: grid.keys().map(|s| (*s, 0)).collect(),
        admitted: HashMap::new(),
        out: Vec::new(),
    };
    let mut points: Vec<(Timestamp, u64, usize)> = grid
        .iter()
        .flat_map(|(s, hours)| hours.iter().enumerate().map(|(i, h)| (h.end, *s, i)))
        .collect();
    points.sort();
    let mut at = 0usize;
    let mut counts = ReplayCounts::default();
    // Hours that ended before their stay's admit arrived (intime a few seconds past a whole
    // hour), scored once everything arriving with the admit has been ingested.
    let mut deferred: Vec<(u64, usize)> = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        counts.entries += 1;
        deferred.retain(|(stay, i)| {
            let ready = d.admitted.get(stay).is_some_and(|t| *t < entry.t);
            if ready {
                d.up_to(*stay, *i);
            }
            !ready
        });
        while let Some((end, stay, i)) = points.get(at).copied() {
            if end >= entry.t {
                break;
            }
            if d.admitted.contains_key(&stay) {
                d.up_to(stay, i);
            } else {
                deferred.push((stay, i));
            }
            at += 1;
        }
        let payload = entry.payload()?;
        let Ok(n) = normalizer.hl7(&entry.source, &payload, entry.t) else {
            counts.rejected += 1;
            continue;
        };
        for rec in n.records {
            counts.records += 1;
            let census = match &rec {
                IngestRecord::Census(ev) => ev.patient.parse::<u64>().ok().map(|s| (s, ev.kind)),
                IngestRecord::Observation(_) => None,
            };
            if let Some((stay, CensusKind::Discharge)) = census {
                // Its hours up to now are read before the discharge drops the state.
                d.through(stay, entry.t);
            }
            d.scorer.ingest(&rec);
            if let Some((stay, CensusKind::Admit)) = census {
                d.admitted.entry(stay).or_insert(entry.t);
            }
        }
    }
    for (stay, i) in deferred {
        d.up_to(stay, i);
    }
    for (_, stay, i) in points.get(at..).unwrap_or_default() {
        d.up_to(*stay, *i);
    }
    let mut out = d.out;
    out.sort_by_key(|h| (h.stay_id, h.hour.hr));
    Ok((out, counts))
}

struct Driver<'a> {
    scorer: Scorer,
    grid: &'a BTreeMap<u64, Vec<GridHour>>,
    /// Per stay, the first grid hour not yet scored.
    next: HashMap<u64, usize>,
    /// Admitted stays and when their admit arrived.
    admitted: HashMap<u64, Timestamp>,
    out: Vec<HourScores>,
}

impl Driver<'_> {
    /// Scores the stay's hours up to index `i`.
    fn up_to(&mut self, stay: u64, i: usize) {
        while self.next.get(&stay).is_some_and(|n| *n <= i) {
            self.score_next(stay);
        }
    }

    /// Scores the stay's hours ending at or before `t`.
    fn through(&mut self, stay: u64, t: Timestamp) {
        while self.peek(stay).is_some_and(|h| h.end <= t) {
            self.score_next(stay);
        }
    }

    fn peek(&self, stay: u64) -> Option<GridHour> {
        let i = *self.next.get(&stay)?;
        self.grid.get(&stay)?.get(i).copied()
    }

    fn score_next(&mut self, stay: u64) {
        let Some(hour) = self.peek(stay) else { return };
        if let Some(n) = self.next.get_mut(&stay) {
            *n += 1;
        }
        let key = stay.to_string();
        let day = self.scorer.evaluate(&key, hour.end).and_then(|set| {
            let s = set.scores.iter().find(|s| s.kind == ScoreKind::Sofa)?;
            let mut v = [0u8; 7];
            for (slot, name) in v.iter_mut().zip(ORGANS) {
                let p = s.components.iter().find(|c| c.name == name)?.points;
                *slot = points_u8(p);
            }
            if let Some(total) = v.get_mut(6) {
                *total = points_u8(s.value);
            }
            Some(v)
        });
        let row = self
            .scorer
            .state(&key)
            .map(|st| sofa::hourly_row(st, st.row_at(hour.end), self.scorer.tables()))
            .unwrap_or_default();
        self.out.push(HourScores {
            stay_id: stay,
            hour,
            row,
            day,
        });
    }
}

fn points_u8(p: f64) -> u8 {
    // Points are whole numbers 0–24.
    p.round().clamp(0.0, 255.0) as u8
}

/// Reads `sofa_reference.csv`: the grid and the 24 h columns.
pub fn read_reference(path: &Path) -> Result<Vec<ReferenceRow>, EvaluateError> {
    let err = |line: u64, reason: String| EvaluateError::Reference {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut r = csv::Reader::from_path(path).map_err(|e| err(0, e.to_string()))?;
    let headers = r.headers().map_err(|e| err(1, e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| err(1, format!("no column {name:?}")))
    };
    let (c_stay, c_hr, c_start, c_end) = (
        col("stay_id")?,
        col("hr")?,
        col("starttime")?,
        col("endtime")?,
    );
    let day_cols: Vec<usize> = COLUMNS_24H
        .iter()
        .map(|c| col(c))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| err(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let get = |c: usize| rec.get(c).unwrap_or("").trim();
        let stay_id = get(c_stay)
            .parse::<u64>()
            .map_err(|_| err(line, format!("stay_id {:?}", get(c_stay))))?;
        let hr = get(c_hr)
            .parse::<i64>()
            .map_err(|_| err(line, format!("hr {:?}", get(c_hr))))?;
        let start =
            parse_time(get(c_start)).ok_or_else(|| err(line, "starttime is not a time".into()))?;
        let end =
            parse_time(get(c_end)).ok_or_else(|| err(line, "endtime is not a time".into()))?;
        let mut day = [0u8; 7];
        for (slot, c) in day.iter_mut().zip(&day_cols) {
            // NULL counts as 0, as in mimic-code's COALESCE.
            let v = get(*c);
            *slot = if v.is_empty() {
                0
            } else {
                v.parse::<u8>()
                    .map_err(|_| err(line, format!("not a score: {v:?}")))?
            };
        }
        out.push(ReferenceRow {
            stay_id,
            hour: GridHour { hr, start, end },
            day,
        });
    }
    Ok(out)
}

/// Compares vigil's hours with the reference's, column by column.
pub fn compare(ours: &[HourScores], reference: &[ReferenceRow]) -> Agreement {
    let by_key: HashMap<(u64, i64), &HourScores> =
        ours.iter().map(|h| ((h.stay_id, h.hour.hr), h)).collect();
    let mut a = Agreement {
        columns: COLUMNS_24H
            .iter()
            .map(|c| ColumnAgreement {
                column: c,
                ..ColumnAgreement::default()
            })
            .collect(),
        missing: 0,
    };
    for r in reference {
        let mine = by_key
            .get(&(r.stay_id, r.hour.hr))
            .and_then(|h| h.day.filter(|_| h.hour.end == r.hour.end));
        if mine.is_none() {
            a.missing += 1;
        }
        for (i, c) in a.columns.iter_mut().enumerate() {
            let theirs = r.day.get(i).copied().unwrap_or(0);
            let ours = mine.and_then(|d| d.get(i).copied());
            c.hours += 1;
            if ours == Some(theirs) {
                c.matching += 1;
            } else {
                c.stays_differing.insert(r.stay_id);
                c.differences.push((r.stay_id, r.hour.hr, ours, theirs));
            }
        }
    }
    a
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| format!("{x}"))
}

/// vigil's hourly table in the reference's columns (blank = no data).
pub fn write_csv(path: &Path, rows: &[HourScores]) -> Result<(), EvaluateError> {
    let io = |source| EvaluateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(f);
    writeln!(w, "{}", COLUMNS.join(",")).map_err(io)?;
    for h in rows {
        let r = &h.row;
        let dose = |d: Drug| opt(r.doses.iter().find(|(x, _)| *x == d).map(|(_, v)| *v));
        let mut cells = vec![
            h.stay_id.to_string(),
            h.hour.hr.to_string(),
            format_time(h.hour.start),
            format_time(h.hour.end),
            opt(r.pf_unventilated),
            opt(r.pf_ventilated),
            dose(Drug::Epinephrine),
            dose(Drug::Norepinephrine),
            dose(Drug::Dopamine),
            dose(Drug::Dobutamine),
            opt(r.map_min),
            opt(r.gcs_min),
            opt(r.urine_per_day),
            opt(r.bilirubin_max),
            opt(r.creatinine_max),
            opt(r.platelets_min),
        ];
        cells.extend(
            r.points
                .iter()
                .map(|p| p.map_or(String::new(), |p| p.to_string())),
        );
        match h.day {
            Some(d) => cells.extend(d.iter().map(u8::to_string)),
            None => cells.extend(std::iter::repeat_n(String::new(), 7)),
        }
        writeln!(w, "{}", cells.join(",")).map_err(io)?;
    }
    w.flush().map_err(io)
}

/// The grid: the reference's hours when there is a reference, else mimic-code's rule.
pub fn grid_of(
    import: &MimicImport,
    reference: Option<&[ReferenceRow]>,
) -> BTreeMap<u64, Vec<GridHour>> {
    match reference {
        Some(rows) => {
            let stays: BTreeSet<u64> = import.stays.iter().map(|s| s.stay_id).collect();
            let mut g: BTreeMap<u64, Vec<GridHour>> = BTreeMap::new();
            for r in rows.iter().filter(|r| stays.contains(&r.stay_id)) {
                g.entry(r.stay_id).or_default().push(r.hour);
            }
            for hours in g.values_mut() {
                hours.sort_by_key(|h| h.end);
            }
            g
        }
        None => import
            .stays
            .iter()
            .map(|s| (s.stay_id, mimic_grid(s.intime, s.outtime)))
            .collect(),
    }
}

/// Reference hours whose times differ from mimic-code's grid rule (a check on the importer).
pub fn grid_mismatches(import: &MimicImport, reference: &[ReferenceRow]) -> usize {
    let rule: HashMap<u64, Vec<GridHour>> = import
        .stays
        .iter()
        .map(|s| (s.stay_id, mimic_grid(s.intime, s.outtime)))
        .collect();
    let mut bad = 0;
    let mut counted: HashMap<u64, usize> = HashMap::new();
    for r in reference {
        let Some(hours) = rule.get(&r.stay_id) else {
            continue;
        };
        *counted.entry(r.stay_id).or_default() += 1;
        if hours.iter().find(|h| h.hr == r.hour.hr) != Some(&r.hour) {
            bad += 1;
        }
    }
    for (stay, hours) in &rule {
        if let Some(n) = counted.get(stay) {
            bad += hours.len().abs_diff(*n);
        }
    }
    bad
}

/// Runs the whole command: import, replay, write the table, compare and print the report.
pub fn run(opts: &MimicSofaOptions) -> Result<Agreement, EvaluateError> {
    let items = MimicItems::builtin()?;
    let import = mimic::import_dir(&opts.input, &items, &opts.stays)?;
    if let Some(p) = &opts.recording {
        crate::sources::replay::demo::write_recording(p, &import.header, &import.entries).map_err(
            |source| EvaluateError::Io {
                path: p.clone(),
                source,
            },
        )?;
    }
    let reference_path = opts.reference.clone().or_else(|| {
        let p = opts.input.join("sofa_reference.csv");
        p.exists().then_some(p)
    });
    let reference = match &reference_path {
        Some(p) => Some(read_reference(p)?),
        None => None,
    };
    let reference = reference.map(|rows| {
        let stays: BTreeSet<u64> = import.stays.iter().map(|s| s.stay_id).collect();
        rows.into_iter()
            .filter(|r| stays.contains(&r.stay_id))
            .collect::<Vec<_>>()
    });
    let grid = grid_of(&import, reference.as_deref());
    let (normalize, scoring) = tables(opts.mimic_compatible, &items)?;
    let (rows, counts) = replay(&import, &grid, normalize, scoring)?;
    write_csv(&opts.out, &rows)?;

    let s = &import.stats;
    println!(
        "imported {} ICU stays: {} lab messages ({} results, {} sent to a second stay), {} pump \
         reports, {} urine entries",
        s.stays,
        s.lab_messages,
        s.lab_results,
        s.lab_results_shared,
        s.pump_messages,
        s.urine_messages
    );
    println!(
        "replayed {} messages ({} rejected) → {} records; scored {} stay-hours ({} mode) → {}",
        counts.entries,
        counts.rejected,
        counts.records,
        rows.len(),
        if opts.mimic_compatible {
            "mimic-compatible"
        } else {
            "default"
        },
        opts.out.display()
    );
    let Some(reference) = reference else {
        println!("no reference table: nothing to compare");
        return Ok(Agreement::default());
    };
    let mismatched = grid_mismatches(&import, &reference);
    if mismatched > 0 {
        println!("warning: {mismatched} reference hours differ from mimic-code's grid rule");
    }
    let agreement = compare(&rows, &reference);
    println!(
        "\nagreement with {} ({} stay-hours):",
        reference_path
            .as_deref()
            .map_or(String::new(), |p| p.display().to_string()),
        reference.len()
    );
    print!("{}", agreement.report(opts.show));
    Ok(agreement)
}
