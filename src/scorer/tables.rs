//! The scoring tables: every threshold the scores use, loaded from `scoring/*.toml`.
//!
//! Owns parsing and validation of those files. Every fault is reported with its file and line,
//! all of them at once, so `vigil validate` and startup can show the complete list.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, ValueDeserializer};
use toml::Spanned;

use crate::model::{Drug, Param, Timestamp, HOUR_MS, MINUTE_MS};

/// The files a scoring directory holds.
pub const TABLE_FILES: [&str; 4] = ["qsofa.toml", "sofa.toml", "news2.toml", "shock.toml"];

/// One problem in a scoring file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct TableError {
    pub file: String,
    /// 1-based; 0 when the problem concerns the whole file (unreadable, absent).
    pub line: usize,
    pub message: String,
}

/// One band's condition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    Lt(f64),
    Le(f64),
    Gt(f64),
    Ge(f64),
    /// The catch-all last band.
    Else,
}

impl Bound {
    fn holds(self, v: f64) -> bool {
        match self {
            Bound::Lt(t) => v < t,
            Bound::Le(t) => v <= t,
            Bound::Gt(t) => v > t,
            Bound::Ge(t) => v >= t,
            Bound::Else => true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Band {
    pub bound: Bound,
    pub points: u8,
}

/// Ordered bands: the first whose bound holds gives the points.
#[derive(Clone, Debug, PartialEq)]
pub struct Bands(Vec<Band>);

impl Bands {
    pub fn points(&self, v: f64) -> u8 {
        self.0
            .iter()
            .find(|b| b.bound.holds(v))
            .map_or(0, |b| b.points)
    }

    pub fn bands(&self) -> &[Band] {
        &self.0
    }
}

/// qSOFA mentation rule (decision 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mentation {
    /// GCS < 15, Sepsis-3 operational wording.
    GcsLt15,
    /// GCS ≤ 13, the mimic-code / ricu variant.
    GcsLe13,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QsofaTable {
    pub mentation: Mentation,
    pub positive_at: u8,
    pub resp_rate: Bands,
    pub sbp: Bands,
    /// The bands of the selected mentation variant.
    pub gcs: Bands,
    pub vitals_fresh_ms: i64,
    pub gcs_fresh_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SfEstimate {
    pub enabled: bool,
    pub spo2_max: f64,
    pub intercept: f64,
    pub slope: f64,
}

/// Where the hourly SOFA grid is anchored (`[window] anchor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridAnchor {
    /// Row 0 ends at the admit time itself.
    Admit,
    /// Row 0 ends at the admit time plus 59 min, truncated to the clock hour (mimic-code's
    /// `icustay_hourly`): rows end on whole clock hours.
    ClockHour,
}

impl GridAnchor {
    /// The end of row 0 for an admission at `admit`.
    pub fn anchor(self, admit: Timestamp) -> Timestamp {
        match self {
            GridAnchor::Admit => admit,
            GridAnchor::ClockHour => {
                let t = admit.millis().saturating_add(59 * MINUTE_MS);
                Timestamp(t - t.rem_euclid(HOUR_MS))
            }
        }
    }
}

/// Which dose of an infusion an hourly row holds (`[cardiovascular] dose_in_row`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoseInRow {
    /// The highest counted rate at any time in the row (worst value per hour, like every
    /// other component).
    Worst,
    /// Only the rate running up to the row's end (mimic-code: infusion start < row end ≤
    /// infusion end).
    AtRowEnd,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SofaTable {
    pub window_hours: u32,
    pub anchor: GridAnchor,
    pub baseline_min_components: usize,
    pub fio2_pair_window_ms: i64,
    pub ventilation_window_ms: i64,
    pub ventilator_params: Vec<Param>,
    pub assume_room_air_without_fio2: bool,
    pub pf_ventilated: Bands,
    pub pf_unventilated: Bands,
    pub sf_estimate: SfEstimate,
    pub platelets: Bands,
    pub bilirubin: Bands,
    pub map: Bands,
    pub min_infusion_ms: i64,
    pub dose_carry_max_ms: i64,
    pub dose_in_row: DoseInRow,
    /// Scored drugs and their bands (dopamine, dobutamine, epinephrine, norepinephrine).
    pub drug_bands: Vec<(Drug, Bands)>,
    /// NE-equivalent weights per drug.
    pub nee_weights: Vec<(Drug, f64)>,
    pub gcs: Bands,
    pub gcs_component_window_ms: i64,
    pub creatinine: Bands,
    pub urine_per_day: Bands,
    pub urine_min_documented_ms: i64,
    /// False: renal scores creatinine only.
    pub urine_output: bool,
}

impl SofaTable {
    /// The preset that reproduces mimic-code's hourly SOFA (`vigil evaluate mimic-sofa
    /// --mimic-compatible`, docs/sofa-agreement.md): clock-hour grid, the dose running at each
    /// row's end with no minimum run time, FiO2 only from the same blood gas (same time), and
    /// no urine output (mimic-code's urine rate needs heart-rate charting the demo lacks).
    pub fn mimic_compatible(&self) -> SofaTable {
        SofaTable {
            anchor: GridAnchor::ClockHour,
            dose_in_row: DoseInRow::AtRowEnd,
            min_infusion_ms: 0,
            fio2_pair_window_ms: 0,
            urine_output: false,
            ..self.clone()
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct News2Table {
    pub resp_rate: Bands,
    pub spo2_scale1: Bands,
    pub spo2_scale2_air: Bands,
    pub spo2_scale2_o2: Bands,
    pub sbp: Bands,
    pub pulse: Bands,
    pub temperature: Bands,
    pub o2_fio2_above: f64,
    pub o2_window_ms: i64,
    pub o2_points: u8,
    pub alert_gcs_min: f64,
    pub not_alert_points: u8,
    pub vitals_fresh_ms: i64,
    pub temperature_fresh_ms: i64,
    pub gcs_fresh_ms: i64,
    pub hypercapnic_beds: Vec<String>,
}

impl News2Table {
    /// True when the bed is configured for SpO2 Scale 2 (`bed` or `unit/bed`).
    pub fn bed_is_hypercapnic(&self, unit: Option<&str>, bed: Option<&str>) -> bool {
        let Some(bed) = bed else { return false };
        self.hypercapnic_beds.iter().any(|b| {
            b == bed
                || unit.is_some_and(|u| {
                    b.split_once('/')
                        .is_some_and(|(bu, bb)| bu == u && bb == bed)
                })
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ShockTable {
    pub si_fresh_ms: i64,
    pub si_decimals: u32,
    pub vasopressors: Vec<Drug>,
    pub dose_carry_max_ms: i64,
    pub map_below: f64,
    pub map_window_ms: i64,
    pub lactate_above: f64,
    pub lactate_window_ms: i64,
}

/// Everything from `scoring/*.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoringTables {
    pub qsofa: QsofaTable,
    pub sofa: SofaTable,
    pub news2: News2Table,
    pub shock: ShockTable,
}

/// How long the fine-grained (per-minute) history of a parameter has to reach back.
const DEFAULT_RING_MS: i64 = 10 * MINUTE_MS;
/// Extra reach for late lab results paired against older charting.
const LATE_SLACK_MS: i64 = 120 * MINUTE_MS;

impl ScoringTables {
    /// Loads and validates `qsofa.toml`, `sofa.toml`, `news2.toml` and `shock.toml` from `dir`.
    /// Other files in `dir` belong to other stages (e.g. the alerting rules) and are left alone.
    pub fn load_dir(dir: &Path) -> Result<Self, Vec<TableError>> {
        let mut errors = Vec::new();
        let mut contents: Vec<(String, String)> = Vec::new();
        for name in TABLE_FILES {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(s) => contents.push((name.to_string(), s)),
                Err(e) => errors.push(TableError {
                    file: path.display().to_string(),
                    line: 0,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        let files: Vec<(&str, &str)> = contents
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect();
        match Self::from_sources(&files) {
            Ok(t) if errors.is_empty() => Ok(t),
            Ok(_) => Err(errors),
            Err(more) => {
                let unreadable: Vec<String> = errors.iter().map(|e| e.file.clone()).collect();
                for mut e in more {
                    // Name files by their path, as the operator will look for them.
                    e.file = dir.join(&e.file).display().to_string();
                    if !unreadable.contains(&e.file) {
                        errors.push(e);
                    }
                }
                Err(errors)
            }
        }
    }

    /// Same as [`ScoringTables::load_dir`] from in-memory files; all four must be present.
    pub fn from_sources(files: &[(&str, &str)]) -> Result<Self, Vec<TableError>> {
        let mut errors = Vec::new();
        let find = |n: &str| files.iter().find(|(f, _)| *f == n).map(|(_, s)| *s);
        for (name, _) in files {
            if !TABLE_FILES.contains(name) {
                errors.push(TableError {
                    file: (*name).to_string(),
                    line: 0,
                    message: "unknown scoring file".into(),
                });
            }
        }
        let missing = |name: &str, errors: &mut Vec<TableError>| {
            errors.push(TableError {
                file: name.to_string(),
                line: 0,
                message: "file missing".into(),
            })
        };
        let qsofa = match find("qsofa.toml") {
            Some(s) => parse_qsofa(&mut Ctx::new("qsofa.toml", s, &mut errors)),
            None => {
                missing("qsofa.toml", &mut errors);
                None
            }
        };
        let sofa = match find("sofa.toml") {
            Some(s) => parse_sofa(&mut Ctx::new("sofa.toml", s, &mut errors)),
            None => {
                missing("sofa.toml", &mut errors);
                None
            }
        };
        let news2 = match find("news2.toml") {
            Some(s) => parse_news2(&mut Ctx::new("news2.toml", s, &mut errors)),
            None => {
                missing("news2.toml", &mut errors);
                None
            }
        };
        let shock = match find("shock.toml") {
            Some(s) => parse_shock(&mut Ctx::new("shock.toml", s, &mut errors)),
            None => {
                missing("shock.toml", &mut errors);
                None
            }
        };
        match (qsofa, sofa, news2, shock) {
            (Some(qsofa), Some(sofa), Some(news2), Some(shock)) if errors.is_empty() => {
                Ok(ScoringTables {
                    qsofa,
                    sofa,
                    news2,
                    shock,
                })
            }
            _ => Err(errors),
        }
    }

    /// The shipped `scoring/*.toml`, embedded at build time.
    pub fn builtin() -> Self {
        match Self::from_sources(&BUILTIN_SOURCES) {
            Ok(t) => t,
            // The embedded files are checked by a unit test; reaching this is a build defect.
            Err(errors) => unreachable!("embedded scoring tables are invalid: {errors:?}"),
        }
    }

    /// The same tables with SOFA set to [`SofaTable::mimic_compatible`].
    pub fn mimic_compatible(&self) -> ScoringTables {
        ScoringTables {
            sofa: self.sofa.mimic_compatible(),
            ..self.clone()
        }
    }

    /// How far back the per-minute history of `param` must reach for the window queries.
    pub(crate) fn ring_retention_ms(&self, param: Param) -> i64 {
        match param {
            Param::MapArt | Param::MapNibp => self.shock.map_window_ms.max(DEFAULT_RING_MS),
            Param::Lactate => self.shock.lactate_window_ms + LATE_SLACK_MS,
            Param::FiO2 => {
                self.sofa.fio2_pair_window_ms.max(self.news2.o2_window_ms) + LATE_SLACK_MS
            }
            Param::GcsEye | Param::GcsMotor | Param::GcsVerbal => self.sofa.gcs_component_window_ms,
            _ => DEFAULT_RING_MS,
        }
    }
}

/// The shipped tables as (file name, contents).
pub const BUILTIN_SOURCES: [(&str, &str); 4] = [
    ("qsofa.toml", include_str!("../../scoring/qsofa.toml")),
    ("sofa.toml", include_str!("../../scoring/sofa.toml")),
    ("news2.toml", include_str!("../../scoring/news2.toml")),
    ("shock.toml", include_str!("../../scoring/shock.toml")),
];

// ---------------------------------------------------------------------------------------------
// Parsing helpers

struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
    errors: &'a mut Vec<TableError>,
    root: Option<DeTable<'a>>,
}

impl<'a> Ctx<'a> {
    fn new(file: &'a str, src: &'a str, errors: &'a mut Vec<TableError>) -> Self {
        let (root, syntax) = DeTable::parse_recoverable(src);
        let mut ctx = Ctx {
            file,
            src,
            errors,
            root: None,
        };
        let broken = !syntax.is_empty();
        for e in syntax {
            ctx.err(e.span().unwrap_or(0..0), e.message().to_string());
        }
        if !broken {
            ctx.root = Some(root.into_inner());
        }
        ctx
    }

    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.src.len());
        self.src
            .as_bytes()
            .iter()
            .take(end)
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let line = self.line(span.start);
        self.errors.push(TableError {
            file: self.file.to_string(),
            line,
            message: message.into(),
        });
    }

    /// Reports top-level keys other than `known`.
    fn only_keys(&mut self, known: &[&str]) {
        let unknown: Vec<(Range<usize>, String)> = match &self.root {
            Some(root) => root
                .iter()
                .filter(|(k, _)| !known.contains(&k.get_ref().as_ref()))
                .map(|(k, _)| (k.span(), k.get_ref().to_string()))
                .collect(),
            None => Vec::new(),
        };
        for (span, key) in unknown {
            self.err(
                span,
                format!("unknown key `{key}` (expected {})", known.join(", ")),
            );
        }
    }

    /// Deserializes the top-level entry `key`; reports a missing key or a type error.
    fn take<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let value = {
            let root = self.root.as_ref()?;
            root.iter()
                .find(|(k, _)| k.get_ref().as_ref() == key)
                .map(|(_, v)| v.clone())
        };
        match value {
            None => {
                self.err(0..0, format!("missing `{key}`"));
                None
            }
            Some(v) => match T::deserialize(ValueDeserializer::from(v)) {
                Ok(t) => Some(t),
                Err(e) => {
                    let span = e.span().unwrap_or(0..0);
                    self.err(span, format!("in `{key}`: {}", e.message()));
                    None
                }
            },
        }
    }

    fn bands(&mut self, name: &str, raw: &[Spanned<RawBand>]) -> Option<Bands> {
        let mut out = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (i, rb) in raw.iter().enumerate() {
            let b = rb.get_ref();
            let set: Vec<Bound> = [
                b.lt.map(Bound::Lt),
                b.le.map(Bound::Le),
                b.gt.map(Bound::Gt),
                b.ge.map(Bound::Ge),
            ]
            .into_iter()
            .flatten()
            .collect();
            let last = i + 1 == raw.len();
            let bound = match (set.as_slice(), last) {
                ([], true) => Bound::Else,
                ([], false) => {
                    self.err(
                        rb.span(),
                        format!("{name}: only the last band may have no bound"),
                    );
                    ok = false;
                    continue;
                }
                ([_], true) => {
                    self.err(
                        rb.span(),
                        format!("{name}: the last band must have no bound (it catches the rest)"),
                    );
                    ok = false;
                    continue;
                }
                ([one], false) => *one,
                _ => {
                    self.err(
                        rb.span(),
                        format!("{name}: a band takes one of lt, le, gt, ge"),
                    );
                    ok = false;
                    continue;
                }
            };
            if let Bound::Lt(t) | Bound::Le(t) | Bound::Gt(t) | Bound::Ge(t) = bound {
                if !t.is_finite() {
                    self.err(rb.span(), format!("{name}: bound must be a finite number"));
                    ok = false;
                }
            }
            if b.points > 4 {
                self.err(rb.span(), format!("{name}: points must be 0–4"));
                ok = false;
            }
            out.push((
                rb.span(),
                Band {
                    bound,
                    points: b.points,
                },
            ));
        }
        if raw.is_empty() {
            self.err(0..0, format!("{name}: no bands"));
            return None;
        }
        // Direction and order: lt/le ascending, or gt/ge descending, never mixed.
        let mut dir: Option<bool> = None;
        let mut prev: Option<f64> = None;
        for (span, band) in &out {
            let (asc, t) = match band.bound {
                Bound::Lt(t) | Bound::Le(t) => (true, t),
                Bound::Gt(t) | Bound::Ge(t) => (false, t),
                Bound::Else => continue,
            };
            if dir.is_some_and(|d| d != asc) {
                self.err(
                    span.clone(),
                    format!("{name}: mixes lt/le with gt/ge; use one direction"),
                );
                ok = false;
            }
            dir = Some(asc);
            if let Some(p) = prev {
                if (asc && t < p) || (!asc && t > p) {
                    self.err(
                        span.clone(),
                        format!(
                            "{name}: bounds out of order ({t} after {p}); this band could never match"
                        ),
                    );
                    ok = false;
                }
            }
            prev = Some(t);
        }
        ok.then(|| Bands(out.into_iter().map(|(_, b)| b).collect()))
    }

    fn minutes(&mut self, name: &str, v: &Spanned<i64>, min: i64, max: i64) -> Option<i64> {
        let m = *v.get_ref();
        if m < min || m > max {
            self.err(
                v.span(),
                format!("{name} = {m} minutes is outside {min}–{max}"),
            );
            return None;
        }
        Some(m * MINUTE_MS)
    }

    fn number(&mut self, name: &str, v: &Spanned<f64>, min: f64, max: f64) -> Option<f64> {
        let x = *v.get_ref();
        if !(x.is_finite() && x >= min && x <= max) {
            self.err(v.span(), format!("{name} = {x} is outside {min}–{max}"));
            return None;
        }
        Some(x)
    }

    fn drug(&mut self, v: &Spanned<String>) -> Option<Drug> {
        let found = Drug::ALL.iter().find(|d| d.name() == v.get_ref()).copied();
        if found.is_none() {
            self.err(v.span(), format!("unknown drug `{}`", v.get_ref()));
        }
        found
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBand {
    lt: Option<f64>,
    le: Option<f64>,
    gt: Option<f64>,
    ge: Option<f64>,
    points: u8,
}

type RawBands = Vec<Spanned<RawBand>>;

// ---------------------------------------------------------------------------------------------
// qsofa.toml

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QsofaBandsRaw {
    resp_rate: RawBands,
    sbp: RawBands,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FreshnessRaw {
    vitals_min: Spanned<i64>,
    gcs_min: Spanned<i64>,
}

const DAY_MIN: i64 = 24 * 60;

fn parse_qsofa(c: &mut Ctx<'_>) -> Option<QsofaTable> {
    c.root.as_ref()?;
    c.only_keys(&[
        "mentation",
        "positive_at",
        "bands",
        "mentation_variants",
        "freshness",
    ]);
    let mentation: Option<Spanned<String>> = c.take("mentation");
    let positive_at: Option<Spanned<u8>> = c.take("positive_at");
    let bands: Option<QsofaBandsRaw> = c.take("bands");
    let variants: Option<BTreeMap<String, RawBands>> = c.take("mentation_variants");
    let fresh: Option<FreshnessRaw> = c.take("freshness");

    let rr = bands
        .as_ref()
        .and_then(|b| c.bands("bands.resp_rate", &b.resp_rate));
    let sbp = bands.as_ref().and_then(|b| c.bands("bands.sbp", &b.sbp));
    let (mode, gcs) = match (&mentation, &variants) {
        (Some(m), Some(vs)) => {
            let mode = match m.get_ref().as_str() {
                "gcs_lt_15" => Some(Mentation::GcsLt15),
                "gcs_le_13" => Some(Mentation::GcsLe13),
                other => {
                    c.err(
                        m.span(),
                        format!("mentation `{other}`: expected \"gcs_lt_15\" or \"gcs_le_13\""),
                    );
                    None
                }
            };
            let bands = match vs.get(m.get_ref()) {
                Some(raw) => c.bands(&format!("mentation_variants.{}", m.get_ref()), raw),
                None => {
                    c.err(
                        m.span(),
                        format!("mentation_variants has no `{}`", m.get_ref()),
                    );
                    None
                }
            };
            // Check the variants not selected too, so switching later cannot fail at startup.
            for (k, raw) in vs {
                if k != m.get_ref() {
                    let _ = c.bands(&format!("mentation_variants.{k}"), raw);
                }
            }
            (mode, bands)
        }
        _ => (None, None),
    };
    let pos = positive_at.and_then(|p| {
        if (1..=3).contains(p.get_ref()) {
            Some(*p.get_ref())
        } else {
            c.err(p.span(), "positive_at must be 1–3");
            None
        }
    });
    let vf = fresh
        .as_ref()
        .and_then(|f| c.minutes("freshness.vitals_min", &f.vitals_min, 1, DAY_MIN));
    let gf = fresh
        .as_ref()
        .and_then(|f| c.minutes("freshness.gcs_min", &f.gcs_min, 1, DAY_MIN));
    Some(QsofaTable {
        mentation: mode?,
        positive_at: pos?,
        resp_rate: rr?,
        sbp: sbp?,
        gcs: gcs?,
        vitals_fresh_ms: vf?,
        gcs_fresh_ms: gf?,
    })
}

// ---------------------------------------------------------------------------------------------
// sofa.toml

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowRaw {
    hours: Spanned<i64>,
    #[serde(default)]
    anchor: Option<Spanned<String>>,
    baseline_min_components: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SfRaw {
    enabled: bool,
    spo2_max: Spanned<f64>,
    intercept: Spanned<f64>,
    slope: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RespirationRaw {
    fio2_pair_window_min: Spanned<i64>,
    ventilation_window_min: Spanned<i64>,
    ventilator_params: Vec<Spanned<String>>,
    assume_room_air_without_fio2: bool,
    pf_ventilated: RawBands,
    pf_unventilated: RawBands,
    sf_estimate: SfRaw,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CoagulationRaw {
    platelets: RawBands,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiverRaw {
    bilirubin: RawBands,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardioRaw {
    map: RawBands,
    min_infusion_min: Spanned<i64>,
    dose_carry_max_min: Spanned<i64>,
    #[serde(default)]
    dose_in_row: Option<Spanned<String>>,
    dopamine: RawBands,
    dobutamine: RawBands,
    epinephrine: RawBands,
    norepinephrine: RawBands,
    norepinephrine_equivalent: BTreeMap<String, Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CnsRaw {
    gcs: RawBands,
    component_window_min: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenalRaw {
    creatinine: RawBands,
    urine_per_day: RawBands,
    urine_min_documented_h: Spanned<i64>,
    #[serde(default = "yes")]
    urine_output: bool,
}

fn yes() -> bool {
    true
}

fn parse_sofa(c: &mut Ctx<'_>) -> Option<SofaTable> {
    c.root.as_ref()?;
    c.only_keys(&[
        "window",
        "respiration",
        "coagulation",
        "liver",
        "cardiovascular",
        "cns",
        "renal",
    ]);
    let window: Option<WindowRaw> = c.take("window");
    let resp: Option<RespirationRaw> = c.take("respiration");
    let coag: Option<CoagulationRaw> = c.take("coagulation");
    let liver: Option<LiverRaw> = c.take("liver");
    let cardio: Option<CardioRaw> = c.take("cardiovascular");
    let cns: Option<CnsRaw> = c.take("cns");
    let renal: Option<RenalRaw> = c.take("renal");

    let hours = window.as_ref().and_then(|w| {
        let h = *w.hours.get_ref();
        if (1..=48).contains(&h) {
            u32::try_from(h).ok()
        } else {
            c.err(w.hours.span(), "window.hours must be 1–48");
            None
        }
    });
    let baseline = window.as_ref().and_then(|w| {
        let n = *w.baseline_min_components.get_ref();
        if (1..=6).contains(&n) {
            usize::try_from(n).ok()
        } else {
            c.err(
                w.baseline_min_components.span(),
                "window.baseline_min_components must be 1–6",
            );
            None
        }
    });

    let anchor = match window.as_ref().and_then(|w| w.anchor.as_ref()) {
        None => Some(GridAnchor::Admit),
        Some(a) => match a.get_ref().as_str() {
            "admit" => Some(GridAnchor::Admit),
            "clock_hour" => Some(GridAnchor::ClockHour),
            other => {
                c.err(
                    a.span(),
                    format!("window.anchor `{other}`: expected \"admit\" or \"clock_hour\""),
                );
                None
            }
        },
    };

    let mut resp_out = None;
    if let Some(r) = &resp {
        let pair = c.minutes(
            "respiration.fio2_pair_window_min",
            &r.fio2_pair_window_min,
            0,
            DAY_MIN,
        );
        let vent = c.minutes(
            "respiration.ventilation_window_min",
            &r.ventilation_window_min,
            1,
            DAY_MIN,
        );
        let mut params = Vec::new();
        let mut params_ok = true;
        for p in &r.ventilator_params {
            match p.get_ref().parse::<Param>() {
                Ok(param) => params.push(param),
                Err(e) => {
                    c.err(p.span(), e);
                    params_ok = false;
                }
            }
        }
        let pv = c.bands("respiration.pf_ventilated", &r.pf_ventilated);
        let pu = c.bands("respiration.pf_unventilated", &r.pf_unventilated);
        let sf = &r.sf_estimate;
        let spo2_max = c.number("sf_estimate.spo2_max", &sf.spo2_max, 50.0, 100.0);
        let intercept = c.number("sf_estimate.intercept", &sf.intercept, -500.0, 500.0);
        let slope = c.number("sf_estimate.slope", &sf.slope, 0.01, 10.0);
        resp_out = (|| {
            Some((
                pair?,
                vent?,
                params_ok.then_some(params)?,
                pv?,
                pu?,
                SfEstimate {
                    enabled: sf.enabled,
                    spo2_max: spo2_max?,
                    intercept: intercept?,
                    slope: slope?,
                },
            ))
        })();
    }

    let platelets = coag
        .as_ref()
        .and_then(|x| c.bands("coagulation.platelets", &x.platelets));
    let bilirubin = liver
        .as_ref()
        .and_then(|x| c.bands("liver.bilirubin", &x.bilirubin));

    let mut cardio_out = None;
    if let Some(cv) = &cardio {
        let map = c.bands("cardiovascular.map", &cv.map);
        let min_inf = c.minutes(
            "cardiovascular.min_infusion_min",
            &cv.min_infusion_min,
            0,
            DAY_MIN,
        );
        let carry = c.minutes(
            "cardiovascular.dose_carry_max_min",
            &cv.dose_carry_max_min,
            1,
            DAY_MIN,
        );
        let in_row = match cv.dose_in_row.as_ref() {
            None => Some(DoseInRow::Worst),
            Some(d) => match d.get_ref().as_str() {
                "worst" => Some(DoseInRow::Worst),
                "at_row_end" => Some(DoseInRow::AtRowEnd),
                other => {
                    c.err(
                        d.span(),
                        format!(
                            "cardiovascular.dose_in_row `{other}`: expected \"worst\" or \"at_row_end\""
                        ),
                    );
                    None
                }
            },
        };
        let drugs = [
            (Drug::Dopamine, &cv.dopamine),
            (Drug::Dobutamine, &cv.dobutamine),
            (Drug::Epinephrine, &cv.epinephrine),
            (Drug::Norepinephrine, &cv.norepinephrine),
        ];
        let mut drug_bands = Vec::new();
        let mut ok = true;
        for (d, raw) in drugs {
            match c.bands(&format!("cardiovascular.{}", d.name()), raw) {
                Some(b) => drug_bands.push((d, b)),
                None => ok = false,
            }
        }
        let mut nee = Vec::new();
        for (name, w) in &cv.norepinephrine_equivalent {
            let drug = Drug::ALL.iter().find(|d| d.name() == name).copied();
            let weight = c.number(&format!("norepinephrine_equivalent.{name}"), w, 0.0, 100.0);
            match (drug, weight) {
                (Some(d), Some(w)) => nee.push((d, w)),
                (None, _) => {
                    c.err(w.span(), format!("unknown drug `{name}`"));
                    ok = false;
                }
                _ => ok = false,
            }
        }
        cardio_out = (|| {
            Some((
                map?,
                min_inf?,
                carry?,
                in_row?,
                ok.then_some((drug_bands, nee))?,
            ))
        })();
    }

    let mut cns_out = None;
    if let Some(x) = &cns {
        let g = c.bands("cns.gcs", &x.gcs);
        let w = c.minutes(
            "cns.component_window_min",
            &x.component_window_min,
            1,
            DAY_MIN,
        );
        cns_out = (|| Some((g?, w?)))();
    }
    let mut renal_out = None;
    if let Some(x) = &renal {
        let cr = c.bands("renal.creatinine", &x.creatinine);
        let uo = c.bands("renal.urine_per_day", &x.urine_per_day);
        let h = *x.urine_min_documented_h.get_ref();
        let doc = if (1..=24).contains(&h) {
            Some(h * 60 * MINUTE_MS)
        } else {
            c.err(
                x.urine_min_documented_h.span(),
                "renal.urine_min_documented_h must be 1–24",
            );
            None
        };
        renal_out = (|| Some((cr?, uo?, doc?, x.urine_output)))();
    }

    let (pair, vent, params, pv, pu, sf) = resp_out?;
    let (map, min_inf, carry, dose_in_row, (drug_bands, nee)) = cardio_out?;
    let (gcs, gcs_win) = cns_out?;
    let (creatinine, urine, urine_doc, urine_output) = renal_out?;
    let resp = resp?;
    Some(SofaTable {
        window_hours: hours?,
        anchor: anchor?,
        baseline_min_components: baseline?,
        fio2_pair_window_ms: pair,
        ventilation_window_ms: vent,
        ventilator_params: params,
        assume_room_air_without_fio2: resp.assume_room_air_without_fio2,
        pf_ventilated: pv,
        pf_unventilated: pu,
        sf_estimate: sf,
        platelets: platelets?,
        bilirubin: bilirubin?,
        map,
        min_infusion_ms: min_inf,
        dose_carry_max_ms: carry,
        dose_in_row,
        drug_bands,
        nee_weights: nee,
        gcs,
        gcs_component_window_ms: gcs_win,
        creatinine,
        urine_per_day: urine,
        urine_min_documented_ms: urine_doc,
        urine_output,
    })
}

// ---------------------------------------------------------------------------------------------
// news2.toml

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct News2BandsRaw {
    resp_rate: RawBands,
    spo2_scale1: RawBands,
    spo2_scale2_air: RawBands,
    spo2_scale2_o2: RawBands,
    sbp: RawBands,
    pulse: RawBands,
    temperature: RawBands,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct News2FreshnessRaw {
    vitals_min: Spanned<i64>,
    temperature_min: Spanned<i64>,
    gcs_min: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OxygenRaw {
    fio2_above: Spanned<f64>,
    window_min: Spanned<i64>,
    points: Spanned<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsciousnessRaw {
    alert_gcs_min: Spanned<f64>,
    not_alert_points: Spanned<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scale2Raw {
    hypercapnic_beds: Vec<String>,
}

fn points3(c: &mut Ctx<'_>, name: &str, v: &Spanned<u8>) -> Option<u8> {
    if *v.get_ref() <= 3 {
        Some(*v.get_ref())
    } else {
        c.err(v.span(), format!("{name} must be 0–3"));
        None
    }
}

fn parse_news2(c: &mut Ctx<'_>) -> Option<News2Table> {
    c.root.as_ref()?;
    c.only_keys(&["bands", "oxygen", "consciousness", "freshness", "scale2"]);
    let bands: Option<News2BandsRaw> = c.take("bands");
    let oxy: Option<OxygenRaw> = c.take("oxygen");
    let cons: Option<ConsciousnessRaw> = c.take("consciousness");
    let fresh: Option<News2FreshnessRaw> = c.take("freshness");
    let scale2: Option<Scale2Raw> = c.take("scale2");

    let mut b_out = None;
    if let Some(b) = &bands {
        let rr = c.bands("bands.resp_rate", &b.resp_rate);
        let s1 = c.bands("bands.spo2_scale1", &b.spo2_scale1);
        let s2a = c.bands("bands.spo2_scale2_air", &b.spo2_scale2_air);
        let s2o = c.bands("bands.spo2_scale2_o2", &b.spo2_scale2_o2);
        let sbp = c.bands("bands.sbp", &b.sbp);
        let pulse = c.bands("bands.pulse", &b.pulse);
        let temp = c.bands("bands.temperature", &b.temperature);
        b_out = (|| Some((rr?, s1?, s2a?, s2o?, sbp?, pulse?, temp?)))();
    }
    let mut o_out = None;
    if let Some(o) = &oxy {
        let above = c.number("oxygen.fio2_above", &o.fio2_above, 20.0, 100.0);
        let win = c.minutes("oxygen.window_min", &o.window_min, 1, DAY_MIN);
        let pts = points3(c, "oxygen.points", &o.points);
        o_out = (|| Some((above?, win?, pts?)))();
    }
    let mut c_out = None;
    if let Some(x) = &cons {
        let g = c.number("consciousness.alert_gcs_min", &x.alert_gcs_min, 3.0, 15.0);
        let p = points3(c, "consciousness.not_alert_points", &x.not_alert_points);
        c_out = (|| Some((g?, p?)))();
    }
    let vf = fresh
        .as_ref()
        .and_then(|f| c.minutes("freshness.vitals_min", &f.vitals_min, 1, DAY_MIN));
    let gf = fresh
        .as_ref()
        .and_then(|f| c.minutes("freshness.gcs_min", &f.gcs_min, 1, DAY_MIN));
    let tf = fresh
        .as_ref()
        .and_then(|f| c.minutes("freshness.temperature_min", &f.temperature_min, 1, DAY_MIN));

    let (resp_rate, spo2_scale1, spo2_scale2_air, spo2_scale2_o2, sbp, pulse, temperature) = b_out?;
    let (o2_fio2_above, o2_window_ms, o2_points) = o_out?;
    let (alert_gcs_min, not_alert_points) = c_out?;
    Some(News2Table {
        resp_rate,
        spo2_scale1,
        spo2_scale2_air,
        spo2_scale2_o2,
        sbp,
        pulse,
        temperature,
        o2_fio2_above,
        o2_window_ms,
        o2_points,
        alert_gcs_min,
        not_alert_points,
        vitals_fresh_ms: vf?,
        temperature_fresh_ms: tf?,
        gcs_fresh_ms: gf?,
        hypercapnic_beds: scale2?.hypercapnic_beds,
    })
}

// ---------------------------------------------------------------------------------------------
// shock.toml

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShockIndexRaw {
    freshness_min: Spanned<i64>,
    decimals: Spanned<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SepticRaw {
    vasopressors: Vec<Spanned<String>>,
    dose_carry_max_min: Spanned<i64>,
    map_below: Spanned<f64>,
    map_window_min: Spanned<i64>,
    lactate_above: Spanned<f64>,
    lactate_window_min: Spanned<i64>,
}

fn parse_shock(c: &mut Ctx<'_>) -> Option<ShockTable> {
    c.root.as_ref()?;
    c.only_keys(&["shock_index", "septic_shock"]);
    let si: Option<ShockIndexRaw> = c.take("shock_index");
    let ss: Option<SepticRaw> = c.take("septic_shock");
    let mut si_out = None;
    if let Some(s) = &si {
        let f = c.minutes("shock_index.freshness_min", &s.freshness_min, 1, DAY_MIN);
        let d = if *s.decimals.get_ref() <= 6 {
            Some(*s.decimals.get_ref())
        } else {
            c.err(s.decimals.span(), "shock_index.decimals must be 0–6");
            None
        };
        si_out = (|| Some((f?, d?)))();
    }
    let mut ss_out = None;
    if let Some(s) = &ss {
        let mut drugs = Vec::new();
        let mut ok = true;
        for d in &s.vasopressors {
            match c.drug(d) {
                Some(drug) if drug.is_vasopressor() => drugs.push(drug),
                Some(drug) => {
                    c.err(
                        d.span(),
                        format!("{} is an inotrope, not a vasopressor", drug.name()),
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        if drugs.is_empty() && ok {
            c.err(0..0, "septic_shock.vasopressors is empty");
            ok = false;
        }
        let carry = c.minutes(
            "septic_shock.dose_carry_max_min",
            &s.dose_carry_max_min,
            1,
            DAY_MIN,
        );
        let map = c.number("septic_shock.map_below", &s.map_below, 30.0, 120.0);
        let mw = c.minutes("septic_shock.map_window_min", &s.map_window_min, 1, 360);
        let lac = c.number("septic_shock.lactate_above", &s.lactate_above, 0.0, 20.0);
        let lw = c.minutes(
            "septic_shock.lactate_window_min",
            &s.lactate_window_min,
            1,
            DAY_MIN,
        );
        ss_out = (|| Some((ok.then_some(drugs)?, carry?, map?, mw?, lac?, lw?)))();
    }
    let (si_fresh_ms, si_decimals) = si_out?;
    let (
        vasopressors,
        dose_carry_max_ms,
        map_below,
        map_window_ms,
        lactate_above,
        lactate_window_ms,
    ) = ss_out?;
    Some(ShockTable {
        si_fresh_ms,
        si_decimals,
        vasopressors,
        dose_carry_max_ms,
        map_below,
        map_window_ms,
        lactate_above,
        lactate_window_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(file: &str, from: &str, to: &str) -> Vec<(&'static str, String)> {
        BUILTIN_SOURCES
            .iter()
            .map(|(n, s)| {
                let s = if *n == file {
                    assert!(s.contains(from), "{from:?} not in {file}");
                    s.replacen(from, to, 1)
                } else {
                    s.to_string()
                };
                (*n, s)
            })
            .collect()
    }

    fn load(files: &[(&'static str, String)]) -> Result<ScoringTables, Vec<TableError>> {
        let refs: Vec<(&str, &str)> = files.iter().map(|(n, s)| (*n, s.as_str())).collect();
        ScoringTables::from_sources(&refs)
    }

    fn line_of(file: &str, needle: &str) -> usize {
        let src = BUILTIN_SOURCES.iter().find(|(n, _)| *n == file).unwrap().1;
        src.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn builtin_tables_load() {
        let t = ScoringTables::from_sources(&BUILTIN_SOURCES).unwrap();
        assert_eq!(t.qsofa.mentation, Mentation::GcsLt15);
        assert_eq!(t.sofa.window_hours, 24);
        assert_eq!(t.sofa.baseline_min_components, 3);
        assert_eq!(
            t.sofa.ventilator_params,
            vec![Param::Peep, Param::TidalVolume]
        );
        assert_eq!(t.shock.vasopressors.len(), 5);
        assert_eq!(t, ScoringTables::builtin());
    }

    #[test]
    fn load_dir_reads_the_shipped_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scoring");
        assert_eq!(
            ScoringTables::load_dir(&dir).unwrap(),
            ScoringTables::builtin()
        );
    }

    #[test]
    fn load_dir_reports_a_missing_file_and_ignores_other_stages_files() {
        let dir = tempfile::tempdir().unwrap();
        for (n, s) in BUILTIN_SOURCES.iter().skip(1) {
            std::fs::write(dir.path().join(n), s).unwrap();
        }
        std::fs::write(dir.path().join("alerts.toml"), "").unwrap();
        let errs = ScoringTables::load_dir(dir.path()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs.iter().any(|e| e.file.ends_with("qsofa.toml")),
            "{errs:?}"
        );
    }

    #[test]
    fn mimic_variant_is_selectable() {
        let t = load(&with(
            "qsofa.toml",
            "mentation = \"gcs_lt_15\"",
            "mentation = \"gcs_le_13\"",
        ))
        .unwrap();
        assert_eq!(t.qsofa.mentation, Mentation::GcsLe13);
        assert_eq!(t.qsofa.gcs.points(13.0), 1);
        assert_eq!(t.qsofa.gcs.points(14.0), 0);
    }

    #[test]
    fn every_problem_is_reported_with_file_and_line() {
        let mut files = with(
            "sofa.toml",
            "{ lt = 50, points = 3 },",
            "{ lt = 500, points = 3 },",
        );
        // A second problem in another file and a third in the same file.
        files = files
            .into_iter()
            .map(|(n, s)| match n {
                "news2.toml" => (
                    n,
                    s.replacen("window_min = 60", "window_min = \"sixty\"", 1),
                ),
                "sofa.toml" => (n, s.replacen("hours = 24", "hours = 99", 1)),
                _ => (n, s),
            })
            .collect();
        let errs = load(&files).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        let order = errs
            .iter()
            .find(|e| e.message.contains("out of order"))
            .unwrap();
        assert_eq!(order.file, "sofa.toml");
        // Reported on the band that can never match: the one after the 500.
        assert_eq!(
            order.line,
            line_of("sofa.toml", "{ lt = 50, points = 3 },") + 1
        );
        let hours = errs.iter().find(|e| e.message.contains("hours")).unwrap();
        assert_eq!(hours.line, line_of("sofa.toml", "hours = 24"));
        let ty = errs.iter().find(|e| e.file == "news2.toml").unwrap();
        assert_eq!(ty.line, line_of("news2.toml", "window_min = 60"), "{ty}");
    }

    #[test]
    fn syntax_errors_unknown_keys_and_bad_bands_are_located() {
        let files = with(
            "shock.toml",
            "decimals = 2",
            "decimals = 2\ncolour = \"red\"",
        );
        let errs = load(&files).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, line_of("shock.toml", "decimals = 2") + 1);

        let files = with("qsofa.toml", "[bands]", "[bands\n");
        let errs = load(&files).unwrap_err();
        assert!(!errs.is_empty());
        assert_eq!(errs[0].file, "qsofa.toml");
        assert_eq!(errs[0].line, line_of("qsofa.toml", "[bands]"));

        let files = with(
            "qsofa.toml",
            "sbp = [{ le = 100, points = 1 }, { points = 0 }]",
            "sbp = [{ le = 100, points = 1 }, { ge = 5, points = 0 }]",
        );
        let errs = load(&files).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].message.contains("last band"), "{errs:?}");

        let files = with("shock.toml", "\"dopamine\", ", "\"dobutamine\", ");
        let errs = load(&files).unwrap_err();
        assert!(errs[0].message.contains("inotrope"), "{errs:?}");

        let files = with(
            "qsofa.toml",
            "mentation = \"gcs_lt_15\"",
            "mentation = \"avpu\"",
        );
        assert!(load(&files).is_err());
    }

    #[test]
    fn sofa_variant_options_parse_and_the_mimic_preset_sets_them() {
        let t = ScoringTables::builtin();
        assert_eq!(t.sofa.anchor, GridAnchor::Admit);
        assert_eq!(t.sofa.dose_in_row, DoseInRow::Worst);
        assert!(t.sofa.urine_output);
        let m = t.mimic_compatible();
        assert_eq!(m.sofa.anchor, GridAnchor::ClockHour);
        assert_eq!(m.sofa.dose_in_row, DoseInRow::AtRowEnd);
        assert_eq!((m.sofa.min_infusion_ms, m.sofa.fio2_pair_window_ms), (0, 0));
        assert!(!m.sofa.urine_output);
        assert_eq!(m.sofa.platelets, t.sofa.platelets, "bands unchanged");

        let files = with("sofa.toml", "anchor = \"admit\"", "anchor = \"clock_hour\"");
        assert_eq!(load(&files).unwrap().sofa.anchor, GridAnchor::ClockHour);
        let files = with("sofa.toml", "anchor = \"admit\"", "anchor = \"midnight\"");
        let errs = load(&files).unwrap_err();
        assert_eq!(
            errs[0].line,
            line_of("sofa.toml", "anchor = \"admit\""),
            "{errs:?}"
        );
        let files = with(
            "sofa.toml",
            "dose_in_row = \"worst\"",
            "dose_in_row = \"first\"",
        );
        assert!(load(&files).is_err());
        let files = with(
            "sofa.toml",
            "fio2_pair_window_min = 240",
            "fio2_pair_window_min = 0",
        );
        assert_eq!(load(&files).unwrap().sofa.fio2_pair_window_ms, 0);
    }

    #[test]
    fn clock_hour_anchor_is_admit_plus_59_min_truncated() {
        let h = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        let a = GridAnchor::ClockHour;
        assert_eq!(
            a.anchor(h("2100-01-01T10:00:00Z")),
            h("2100-01-01T10:00:00Z")
        );
        assert_eq!(
            a.anchor(h("2100-01-01T10:00:59Z")),
            h("2100-01-01T10:00:00Z")
        );
        assert_eq!(
            a.anchor(h("2100-01-01T10:01:00Z")),
            h("2100-01-01T11:00:00Z")
        );
        assert_eq!(
            a.anchor(h("2100-01-01T10:59:59Z")),
            h("2100-01-01T11:00:00Z")
        );
        assert_eq!(
            GridAnchor::Admit.anchor(h("2100-01-01T10:01:00Z")),
            h("2100-01-01T10:01:00Z")
        );
    }

    #[test]
    fn hypercapnic_beds_match_bed_or_unit_slash_bed() {
        let files = with(
            "news2.toml",
            "hypercapnic_beds = []",
            "hypercapnic_beds = [\"ICU1/3\", \"7\"]",
        );
        let t = load(&files).unwrap();
        assert!(t.news2.bed_is_hypercapnic(Some("ICU1"), Some("3")));
        assert!(!t.news2.bed_is_hypercapnic(Some("ICU2"), Some("3")));
        assert!(t.news2.bed_is_hypercapnic(None, Some("7")));
        assert!(!t.news2.bed_is_hypercapnic(Some("ICU1"), None));
    }
}
