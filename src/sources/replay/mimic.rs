//! The MIMIC-IV importer: the demo's CSV tables → a vigil recording (HL7 as the hospital
//! systems would have sent it), for `vigil evaluate mimic-sofa`.
//!
//! Owns reading `icu/icustays`, `hosp/labevents`, `icu/inputevents` and `icu/outputevents`
//! (gzipped CSV), deciding which ICU stay each row reaches under mimic-code's join rules, and
//! writing census (ADT A01/A03), lab results (ORU^R01, LOINC), infusion doses (PCD-01
//! MDC_RATE_DOSE) and urine volumes. Every item id comes from `device-profiles/mimic-items.toml`.
//! It scores nothing: the recording goes through the real normalizer and scorer.
//!
//! Identity and time (docs/sofa-agreement.md):
//! - one encounter per ICU stay: PV1-19 = `stay_id` (vigil's patient key), PID-3 = `subject_id`,
//!   bed = `stay_id`. A lab row is sent to every stay mimic-code would join it to: by `hadm_id`
//!   for labs, by `subject_id` for arterial blood gases; a row joining two stays is sent twice.
//! - the arrival time is the charted time (`charttime`; infusions `starttime`/`endtime`),
//!   except that rows timed before the ICU admission arrive at the admission, right after the
//!   A01, with their own time in OBX-14/OBR-7 ("results of the last hours" sent on admission).
//!   MSH-7 is always the arrival time, so the normalizer sees no device clock error.
//! - the A03 arrives at the end of the stay's last hourly row of mimic-code's grid (or the
//!   outtime, if later), so every row of that grid can be read; EVN-2 carries the outtime.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::demo::{pcd01_message, Identity, PcdDevice, PcdRow, MDS_PUMP};
use super::format::{RecordedProtocol, RecordedSource, RecordingEntry, RecordingHeader};
use super::hl7_writer::{escape, ts, MessageBuilder};
use crate::model::{Timestamp, HOUR_MS};

/// The shipped item mapping.
pub const BUILTIN_ITEMS: &str = include_str!("../../../device-profiles/mimic-items.toml");

/// Attribution written into every recording made from MIMIC-IV.
pub const MIMIC_ATTRIBUTION: &str = "Contains data from the MIMIC-IV Clinical Database Demo v2.2 (Johnson A, Bulgarelli L, Pollard T, Horng S, Celi LA, Mark R; PhysioNet; doi:10.13026/dp1f-ex47), Open Data Commons Open Database License v1.0 (ODbL).";

/// How long before the ICU admission results are sent with it: the 24 h window of row 0 plus
/// the hour the grid's first row can start before the admission, and one spare.
pub const HISTORY_MS: i64 = 26 * HOUR_MS;

/// The ward unit every imported bed belongs to.
pub const UNIT: &str = "MIMIC";

/// Source names in the recording.
pub const SOURCE_ADT: &str = "adt";
pub const SOURCE_LAB: &str = "lab";
pub const SOURCE_PUMPS: &str = "pumps";
pub const SOURCE_CHARTING: &str = "charting";

/// A pump's rate is repeated this often while unchanged, as pumps report periodically (the
/// scorer carries a rate only so long after the last report).
const PUMP_REPEAT_MS: i64 = HOUR_MS;

#[derive(Debug, thiserror::Error)]
pub enum MimicError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Row {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("mimic-items.toml: {0}")]
    Items(String),
}

// ---------------------------------------------------------------------------------------------
// The item mapping

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabJoin {
    /// Every stay of the same hospital admission (`hadm_id`).
    Admission,
    /// Every stay of the same patient (`subject_id`).
    Patient,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabItem {
    pub itemid: u32,
    pub name: String,
    pub loinc: String,
    pub ucum: String,
    pub join: LabJoin,
    /// Only from specimens of this type (value of `specimen_item`).
    #[serde(default)]
    pub specimen: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfusionItem {
    pub itemid: u32,
    pub drug: String,
    pub units: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrineItem {
    pub itemid: u32,
    pub name: String,
    pub sign: i8,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeOverride {
    pub param: String,
    pub min: f64,
    pub max: f64,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MimicCompatible {
    pub ranges: Vec<RangeOverride>,
}

/// `device-profiles/mimic-items.toml`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MimicItems {
    pub labs: Vec<LabItem>,
    pub specimen_item: u32,
    pub infusions: Vec<InfusionItem>,
    pub urine: Vec<UrineItem>,
    pub mimic_compatible: MimicCompatible,
}

impl MimicItems {
    pub fn parse(text: &str) -> Result<Self, MimicError> {
        let items: MimicItems =
            toml::from_str(text).map_err(|e| MimicError::Items(e.to_string()))?;
        for inf in &items.infusions {
            if crate::model::Drug::from_label(&inf.drug).is_none() {
                return Err(MimicError::Items(format!(
                    "infusion item {}: unknown drug {:?}",
                    inf.itemid, inf.drug
                )));
            }
        }
        if let Some(u) = items.urine.iter().find(|u| u.sign != 1 && u.sign != -1) {
            return Err(MimicError::Items(format!(
                "urine item {}: sign must be 1 or -1",
                u.itemid
            )));
        }
        Ok(items)
    }

    pub fn builtin() -> Result<Self, MimicError> {
        Self::parse(BUILTIN_ITEMS)
    }
}

// ---------------------------------------------------------------------------------------------
// Times and the hourly grid

/// A MIMIC time (`2171-11-14 10:00:00`, no zone) as UTC.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|dt| Timestamp(dt.and_utc().timestamp_millis()))
}

/// Formats a time the way MIMIC and mimic-code's tables print it.
pub fn format_time(t: Timestamp) -> String {
    t.to_datetime()
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// One row of mimic-code's hourly grid: (`endtime` − 1 h, `endtime`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridHour {
    pub hr: i64,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// mimic-code's grid for a stay (`icustay_hourly`, rows hr ≥ 0): row 0 ends at the intime + 59
/// min truncated to the hour; the last row is `DATETIME_DIFF(outtime, intime, HOUR)`, the number
/// of clock-hour boundaries between the two (so 23:03 → 15:55 a week later is 184, not 185).
pub fn mimic_grid(intime: Timestamp, outtime: Timestamp) -> Vec<GridHour> {
    let floor = |t: i64| t - t.rem_euclid(HOUR_MS);
    let end0 = Timestamp(floor(intime.millis().saturating_add(59 * 60_000)));
    let last = ((floor(outtime.millis()) - floor(intime.millis())) / HOUR_MS).max(0);
    (0..=last)
        .map(|hr| {
            let end = end0.plus_ms(hr * HOUR_MS);
            GridHour {
                hr,
                start: end.minus_ms(HOUR_MS),
                end,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// CSV reading

/// A gzipped (or plain) CSV with named columns.
struct Table {
    path: PathBuf,
    reader: csv::Reader<Box<dyn Read>>,
    columns: HashMap<String, usize>,
}

impl Table {
    fn open(dir: &Path, name: &str) -> Result<Self, MimicError> {
        let gz = dir.join(format!("{name}.csv.gz"));
        let plain = dir.join(format!("{name}.csv"));
        let (path, inner): (PathBuf, Box<dyn Read>) = if gz.exists() {
            let f = std::fs::File::open(&gz).map_err(|source| MimicError::Io {
                path: gz.clone(),
                source,
            })?;
            (
                gz,
                Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
                    f,
                ))),
            )
        } else {
            let f = std::fs::File::open(&plain).map_err(|source| MimicError::Io {
                path: plain.clone(),
                source,
            })?;
            (plain, Box::new(std::io::BufReader::new(f)))
        };
        let mut reader = csv::Reader::from_reader(inner);
        let headers = reader.headers().map_err(|e| MimicError::Row {
            path: path.clone(),
            line: 1,
            reason: e.to_string(),
        })?;
        let columns = headers
            .iter()
            .enumerate()
            .map(|(i, h)| (h.to_string(), i))
            .collect();
        Ok(Table {
            path,
            reader,
            columns,
        })
    }

    fn col(&self, name: &str) -> Result<usize, MimicError> {
        self.columns
            .get(name)
            .copied()
            .ok_or_else(|| MimicError::Row {
                path: self.path.clone(),
                line: 1,
                reason: format!("no column {name:?}"),
            })
    }

    /// Calls `f` with each row and its line number.
    fn for_each(
        &mut self,
        mut f: impl FnMut(&Row<'_>) -> Result<(), String>,
    ) -> Result<(), MimicError> {
        let mut rec = csv::StringRecord::new();
        loop {
            let more = self
                .reader
                .read_record(&mut rec)
                .map_err(|e| MimicError::Row {
                    path: self.path.clone(),
                    line: e.position().map_or(0, |p| p.line()),
                    reason: e.to_string(),
                })?;
            if !more {
                return Ok(());
            }
            let line = rec.position().map_or(0, |p| p.line());
            f(&Row { rec: &rec }).map_err(|reason| MimicError::Row {
                path: self.path.clone(),
                line,
                reason,
            })?;
        }
    }
}

struct Row<'a> {
    rec: &'a csv::StringRecord,
}

impl Row<'_> {
    fn text(&self, col: usize) -> &str {
        self.rec.get(col).unwrap_or("").trim()
    }
    fn id(&self, col: usize, what: &str) -> Result<Option<u64>, String> {
        let s = self.text(col);
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{what}: not an id: {s:?}"))
    }
    fn req_id(&self, col: usize, what: &str) -> Result<u64, String> {
        self.id(col, what)?
            .ok_or_else(|| format!("{what} is empty"))
    }
    fn num(&self, col: usize, what: &str) -> Result<Option<f64>, String> {
        let s = self.text(col);
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<f64>()
            .map(Some)
            .map_err(|_| format!("{what}: not a number: {s:?}"))
    }
    fn time(&self, col: usize, what: &str) -> Result<Timestamp, String> {
        let s = self.text(col);
        parse_time(s).ok_or_else(|| format!("{what}: not a time: {s:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// The import

/// One ICU stay.
#[derive(Clone, Debug, PartialEq)]
pub struct Stay {
    pub stay_id: u64,
    pub subject_id: u64,
    pub hadm_id: u64,
    pub intime: Timestamp,
    pub outtime: Timestamp,
    /// From the stay's first input event that carries one.
    pub weight_kg: Option<f64>,
}

impl Stay {
    /// When the recording discharges the stay: the end of its last grid row or the outtime.
    pub fn discharge_arrival(&self) -> Timestamp {
        let end = mimic_grid(self.intime, self.outtime)
            .last()
            .map_or(self.outtime, |h| h.end);
        end.max(self.outtime)
    }

    /// The span of charted times sent for this stay.
    fn accepts(&self, t: Timestamp) -> bool {
        t > self.intime.minus_ms(HISTORY_MS) && t <= self.discharge_arrival()
    }

    fn identity(&self) -> Identity {
        Identity {
            mrn: self.subject_id.to_string(),
            visit: self.stay_id.to_string(),
            family: String::new(),
            given: String::new(),
            birth: String::new(),
            sex: "",
            weight_kg: self.weight_kg,
        }
    }
}

/// What the import read and wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportStats {
    pub stays: usize,
    pub lab_messages: usize,
    pub lab_results: usize,
    /// Lab results sent to more than one stay (counted once per extra stay).
    pub lab_results_shared: usize,
    pub pump_messages: usize,
    pub urine_messages: usize,
    /// Infusion rows skipped: rate missing or in a unit the mapping does not list.
    pub infusions_skipped: usize,
}

/// A recording made from MIMIC-IV, in memory.
#[derive(Clone, Debug)]
pub struct MimicImport {
    pub stays: Vec<Stay>,
    pub header: RecordingHeader,
    pub entries: Vec<RecordingEntry>,
    pub stats: ImportStats,
}

/// Ordering of messages with the same arrival time: admit, then data, then discharge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Admit,
    Data,
    Discharge,
}

struct Pending {
    arrival: Timestamp,
    phase: Phase,
    /// The charted time, so history sent at admission stays in time order.
    time: Timestamp,
    stay: u64,
    seq: u64,
    source: &'static str,
    text: String,
}

#[derive(Default)]
struct Specimen {
    subject: u64,
    hadm: Option<u64>,
    time: Option<Timestamp>,
    kind: Option<String>,
    /// (index into `labs`, value) in the mapping's order.
    results: Vec<(usize, f64)>,
}

/// Reads the tables under `dir` (`icu/`, `hosp/`) and builds the recording. `only` limits the
/// import to these stays (all when empty).
pub fn import_dir(
    dir: &Path,
    items: &MimicItems,
    only: &BTreeSet<u64>,
) -> Result<MimicImport, MimicError> {
    let mut stays = read_stays(dir, only)?;
    let mut out: Vec<Pending> = Vec::new();
    let mut seq = 0u64;
    let mut push = |out: &mut Vec<Pending>, stay: &Stay, time, phase, source, text| {
        seq += 1;
        let arrival = match phase {
            Phase::Admit => stay.intime,
            Phase::Discharge => stay.discharge_arrival(),
            Phase::Data => stay.intime.max(time),
        };
        out.push(Pending {
            arrival,
            phase,
            time,
            stay: stay.stay_id,
            seq,
            source,
            text,
        });
    };
    let mut stats = ImportStats {
        stays: stays.len(),
        ..ImportStats::default()
    };

    // Infusions first: they also give the weight for the admit message.
    let infusions = read_infusions(dir, items, &mut stays, &mut stats)?;
    for stay in &stays {
        push(
            &mut out,
            stay,
            stay.intime,
            Phase::Admit,
            SOURCE_ADT,
            adt(stay, true),
        );
        push(
            &mut out,
            stay,
            stay.outtime,
            Phase::Discharge,
            SOURCE_ADT,
            adt(stay, false),
        );
    }
    let by_stay: HashMap<u64, &Stay> = stays.iter().map(|s| (s.stay_id, s)).collect();
    for ((stay_id, drug_ix), rows) in &infusions {
        let (Some(stay), Some(item)) = (by_stay.get(stay_id), items.infusions.get(*drug_ix)) else {
            continue;
        };
        for (t, rate) in pump_reports(rows) {
            if !stay.accepts(t) {
                continue;
            }
            stats.pump_messages += 1;
            let text = pump(stay, *drug_ix, &item.drug, t, stay.intime.max(t), rate);
            push(&mut out, stay, t, Phase::Data, SOURCE_PUMPS, text);
        }
    }

    // Labs, one message per specimen and stay.
    let specimens = read_labs(dir, items)?;
    let mut by_hadm: HashMap<u64, Vec<&Stay>> = HashMap::new();
    let mut by_subject: HashMap<u64, Vec<&Stay>> = HashMap::new();
    for s in &stays {
        by_hadm.entry(s.hadm_id).or_default().push(s);
        by_subject.entry(s.subject_id).or_default().push(s);
    }
    for (specimen_id, sp) in &specimens {
        let Some(time) = sp.time else { continue };
        let candidates = by_subject.get(&sp.subject).map_or(&[][..], Vec::as_slice);
        for stay in candidates {
            if !stay.accepts(time) {
                continue;
            }
            let results: Vec<(&LabItem, f64)> = sp
                .results
                .iter()
                .filter_map(|(i, v)| items.labs.get(*i).map(|it| (it, *v)))
                .filter(|(it, _)| joins(it, sp, stay))
                .collect();
            if results.is_empty() {
                continue;
            }
            stats.lab_messages += 1;
            stats.lab_results += results.len();
            let text = lab(stay, *specimen_id, time, stay.intime.max(time), &results);
            push(&mut out, stay, time, Phase::Data, SOURCE_LAB, text);
        }
    }
    stats.lab_results_shared = shared_results(&specimens, items, &stays);

    // Urine: mimic-code sums the items charted at the same time for a stay.
    for ((stay_id, time), ml) in read_urine(dir, items, &by_stay)? {
        let Some(stay) = by_stay.get(&stay_id) else {
            continue;
        };
        if !stay.accepts(time) {
            continue;
        }
        stats.urine_messages += 1;
        let text = urine(stay, time, stay.intime.max(time), ml);
        push(&mut out, stay, time, Phase::Data, SOURCE_CHARTING, text);
    }

    out.sort_by(|a, b| {
        (a.arrival, a.phase, a.time, a.stay, a.seq)
            .cmp(&(b.arrival, b.phase, b.time, b.stay, b.seq))
    });
    let entries = out
        .into_iter()
        .map(|p| RecordingEntry::text(p.arrival, p.source, p.text))
        .collect();
    let mut header = RecordingHeader::new(
        format!(
            "MIMIC-IV demo: {} ICU stays imported for vigil evaluate mimic-sofa",
            stays.len()
        ),
        [SOURCE_ADT, SOURCE_LAB, SOURCE_PUMPS, SOURCE_CHARTING]
            .into_iter()
            .map(|n| RecordedSource {
                name: n.into(),
                protocol: RecordedProtocol::Hl7,
                profile: None,
                unit: None,
                bed: None,
            })
            .collect(),
    );
    header.attribution = Some(MIMIC_ATTRIBUTION.into());
    Ok(MimicImport {
        stays,
        header,
        entries,
        stats,
    })
}

/// mimic-code's join: labs by admission, blood gases by patient and specimen type.
fn joins(item: &LabItem, sp: &Specimen, stay: &Stay) -> bool {
    let who = match item.join {
        LabJoin::Admission => sp.hadm == Some(stay.hadm_id),
        LabJoin::Patient => sp.subject == stay.subject_id,
    };
    who && item
        .specimen
        .as_ref()
        .is_none_or(|k| sp.kind.as_deref() == Some(k.as_str()))
}

fn shared_results(
    specimens: &BTreeMap<u64, Specimen>,
    items: &MimicItems,
    stays: &[Stay],
) -> usize {
    let mut extra = 0;
    for sp in specimens.values() {
        let Some(time) = sp.time else { continue };
        for (i, _) in &sp.results {
            let Some(it) = items.labs.get(*i) else {
                continue;
            };
            let n = stays
                .iter()
                .filter(|s| s.subject_id == sp.subject && s.accepts(time) && joins(it, sp, s))
                .count();
            extra += n.saturating_sub(1);
        }
    }
    extra
}

fn read_stays(dir: &Path, only: &BTreeSet<u64>) -> Result<Vec<Stay>, MimicError> {
    let mut t = Table::open(&dir.join("icu"), "icustays")?;
    let (c_stay, c_subj, c_hadm, c_in, c_out) = (
        t.col("stay_id")?,
        t.col("subject_id")?,
        t.col("hadm_id")?,
        t.col("intime")?,
        t.col("outtime")?,
    );
    let mut stays = Vec::new();
    t.for_each(|r| {
        let stay_id = r.req_id(c_stay, "stay_id")?;
        if !only.is_empty() && !only.contains(&stay_id) {
            return Ok(());
        }
        stays.push(Stay {
            stay_id,
            subject_id: r.req_id(c_subj, "subject_id")?,
            hadm_id: r.req_id(c_hadm, "hadm_id")?,
            intime: r.time(c_in, "intime")?,
            outtime: r.time(c_out, "outtime")?,
            weight_kg: None,
        });
        Ok(())
    })?;
    stays.sort_by_key(|s| s.stay_id);
    Ok(stays)
}

/// One inputevents row of a mapped drug: (start, end, rate).
type InfusionRow = (Timestamp, Timestamp, f64);

fn read_infusions(
    dir: &Path,
    items: &MimicItems,
    stays: &mut [Stay],
    stats: &mut ImportStats,
) -> Result<BTreeMap<(u64, usize), Vec<InfusionRow>>, MimicError> {
    let mut t = Table::open(&dir.join("icu"), "inputevents")?;
    let (c_stay, c_item, c_start, c_end, c_rate, c_uom, c_weight) = (
        t.col("stay_id")?,
        t.col("itemid")?,
        t.col("starttime")?,
        t.col("endtime")?,
        t.col("rate")?,
        t.col("rateuom")?,
        t.col("patientweight")?,
    );
    let index: HashMap<u64, usize> = stays
        .iter()
        .enumerate()
        .map(|(i, s)| (s.stay_id, i))
        .collect();
    let mut rows: BTreeMap<(u64, usize), Vec<InfusionRow>> = BTreeMap::new();
    // The weight of each stay's earliest input event.
    let mut first_weight: HashMap<u64, (Timestamp, f64)> = HashMap::new();
    t.for_each(|r| {
        let Some(stay_id) = r.id(c_stay, "stay_id")? else {
            return Ok(());
        };
        if !index.contains_key(&stay_id) {
            return Ok(());
        }
        let start = r.time(c_start, "starttime")?;
        if let Some(w) = r.num(c_weight, "patientweight")?.filter(|w| *w > 0.0) {
            let e = first_weight.entry(stay_id).or_insert((start, w));
            if start < e.0 {
                *e = (start, w);
            }
        }
        let item = r.req_id(c_item, "itemid")?;
        let Some(ix) = items
            .infusions
            .iter()
            .position(|i| u64::from(i.itemid) == item)
        else {
            return Ok(());
        };
        let unit_ok = items
            .infusions
            .get(ix)
            .is_some_and(|i| i.units.iter().any(|u| u == r.text(c_uom)));
        let rate = r.num(c_rate, "rate")?;
        let (Some(rate), true) = (rate, unit_ok) else {
            stats.infusions_skipped += 1;
            return Ok(());
        };
        let end = r.time(c_end, "endtime")?;
        rows.entry((stay_id, ix))
            .or_default()
            .push((start, end, rate));
        Ok(())
    })?;
    for (stay_id, (_, w)) in first_weight {
        if let Some(s) = index.get(&stay_id).and_then(|i| stays.get_mut(*i)) {
            s.weight_kg = Some(w);
        }
    }
    Ok(rows)
}

/// The pump reports for one drug of one stay: at every start or end of an inputevents row the
/// rate running from then on (the highest of the rows running, as mimic-code takes the maximum
/// per hour; 0 when none runs), only when it changes, and repeated hourly while unchanged.
/// Rows are half-open [start, end): a row counts at a time `e` when start < e ≤ end, which is
/// exactly "the last report before `e`".
pub fn pump_reports(rows: &[InfusionRow]) -> Vec<(Timestamp, f64)> {
    let cuts: BTreeSet<Timestamp> = rows.iter().flat_map(|(s, e, _)| [*s, *e]).collect();
    let cuts: Vec<Timestamp> = cuts.into_iter().collect();
    let mut out = Vec::new();
    let mut last: Option<f64> = None;
    for (i, b) in cuts.iter().enumerate() {
        let rate = rows
            .iter()
            .filter(|(s, e, _)| s <= b && b < e)
            .map(|(_, _, r)| *r)
            .reduce(f64::max)
            .unwrap_or(0.0);
        if last != Some(rate) && (last.is_some() || rate > 0.0) {
            out.push((*b, rate));
        }
        last = Some(rate);
        if rate > 0.0 {
            let next = cuts.get(i + 1).copied().unwrap_or(*b);
            let mut t = b.plus_ms(PUMP_REPEAT_MS);
            while t < next {
                out.push((t, rate));
                t = t.plus_ms(PUMP_REPEAT_MS);
            }
        }
    }
    out
}

fn read_labs(dir: &Path, items: &MimicItems) -> Result<BTreeMap<u64, Specimen>, MimicError> {
    let mut t = Table::open(&dir.join("hosp"), "labevents")?;
    let (c_spec, c_subj, c_hadm, c_item, c_time, c_value, c_num) = (
        t.col("specimen_id")?,
        t.col("subject_id")?,
        t.col("hadm_id")?,
        t.col("itemid")?,
        t.col("charttime")?,
        t.col("value")?,
        t.col("valuenum")?,
    );
    let mut specimens: BTreeMap<u64, Specimen> = BTreeMap::new();
    let specimen_item = u64::from(items.specimen_item);
    t.for_each(|r| {
        let item = r.req_id(c_item, "itemid")?;
        let lab = items.labs.iter().position(|l| u64::from(l.itemid) == item);
        if lab.is_none() && item != specimen_item {
            return Ok(());
        }
        let sp = specimens
            .entry(r.req_id(c_spec, "specimen_id")?)
            .or_default();
        sp.subject = r.req_id(c_subj, "subject_id")?;
        sp.hadm = sp.hadm.or(r.id(c_hadm, "hadm_id")?);
        let time = r.time(c_time, "charttime")?;
        sp.time = Some(sp.time.map_or(time, |t| t.max(time)));
        match lab {
            None => sp.kind = Some(r.text(c_value).to_string()),
            // A result without a number cannot score; mimic-code drops it too.
            Some(ix) => {
                if let Some(v) = r.num(c_num, "valuenum")? {
                    sp.results.push((ix, v));
                }
            }
        }
        Ok(())
    })?;
    for sp in specimens.values_mut() {
        sp.results.sort_by_key(|(ix, _)| *ix);
    }
    Ok(specimens)
}

fn read_urine(
    dir: &Path,
    items: &MimicItems,
    stays: &HashMap<u64, &Stay>,
) -> Result<BTreeMap<(u64, Timestamp), f64>, MimicError> {
    let mut t = Table::open(&dir.join("icu"), "outputevents")?;
    let (c_stay, c_item, c_time, c_value) = (
        t.col("stay_id")?,
        t.col("itemid")?,
        t.col("charttime")?,
        t.col("value")?,
    );
    let mut sums: BTreeMap<(u64, Timestamp), f64> = BTreeMap::new();
    t.for_each(|r| {
        let Some(stay) = r.id(c_stay, "stay_id")? else {
            return Ok(());
        };
        if !stays.contains_key(&stay) {
            return Ok(());
        }
        let item = r.req_id(c_item, "itemid")?;
        let Some(u) = items.urine.iter().find(|u| u64::from(u.itemid) == item) else {
            return Ok(());
        };
        let Some(v) = r.num(c_value, "value")? else {
            return Ok(());
        };
        *sums
            .entry((stay, r.time(c_time, "charttime")?))
            .or_default() += f64::from(u.sign) * v;
        Ok(())
    })?;
    Ok(sums)
}

// ---------------------------------------------------------------------------------------------
// Messages

/// A number as MIMIC stores it: the shortest text that reads back to the same f64.
fn number(v: f64) -> String {
    format!("{v}")
}

fn adt(stay: &Stay, admit: bool) -> String {
    let (code, event_time, arrival) = if admit {
        ("A01", stay.intime, stay.intime)
    } else {
        ("A03", stay.outtime, stay.discharge_arrival())
    };
    let sent = ts(arrival);
    let when = ts(event_time);
    let msg_type = format!("ADT^{code}^ADT_{code}");
    let control = format!("ADT{}{}", stay.stay_id, code);
    let mut b = MessageBuilder::msh(&[
        "ADT", "HOSP", "VIGIL", UNIT, &sent, "", &msg_type, &control, "P", "2.5.1",
    ]);
    b.segment("EVN", &[code, &when]);
    b.segment("PID", &["1", "", &pid3(stay)]);
    let location = format!("{UNIT}^^{}", stay.stay_id);
    let visit = format!("{}^^^HOSP^VN", stay.stay_id);
    let (admit_t, disch_t) = if admit {
        (when.clone(), String::new())
    } else {
        (String::new(), when.clone())
    };
    let mut pv1: Vec<&str> = vec![""; 45];
    for (n, v) in [
        (1, "1"),
        (2, "I"),
        (3, location.as_str()),
        (19, &visit),
        (44, &admit_t),
        (45, &disch_t),
    ] {
        if let Some(slot) = pv1.get_mut(n - 1) {
            *slot = v;
        }
    }
    b.segment("PV1", &pv1);
    if let (true, Some(kg)) = (admit, stay.weight_kg) {
        let kg = number(kg);
        b.weight_obx(&kg, &when);
    }
    b.finish()
}

/// PID-3: the patient (`subject_id`) as a medical record number.
fn pid3(stay: &Stay) -> String {
    format!("{}^^^HOSP^MR", stay.subject_id)
}

/// An ORU^R01 with one OBR (the specimen) and one OBX per result; MSH-7 = arrival.
fn result_message(
    app: &str,
    stay: &Stay,
    control: &str,
    time: Timestamp,
    arrival: Timestamp,
    panel: &str,
    rows: &[(String, String, String)],
) -> String {
    let sent = ts(arrival);
    let coll = ts(time);
    let mut b = MessageBuilder::msh(&[
        app,
        "HOSP",
        "VIGIL",
        UNIT,
        &sent,
        "",
        "ORU^R01^ORU_R01",
        control,
        "P",
        "2.5.1",
    ]);
    b.segment("PID", &["1", "", &pid3(stay)]);
    let location = format!("{UNIT}^^{}", stay.stay_id);
    let visit = format!("{}^^^HOSP^VN", stay.stay_id);
    let mut pv1: Vec<&str> = vec![""; 19];
    for (n, v) in [(1, "1"), (2, "I"), (3, location.as_str()), (19, &visit)] {
        if let Some(slot) = pv1.get_mut(n - 1) {
            *slot = v;
        }
    }
    b.segment("PV1", &pv1);
    let filler = format!("{control}^{app}");
    let mut obr: Vec<&str> = vec![""; 25];
    for (n, v) in [
        (1, "1"),
        (3, filler.as_str()),
        (4, panel),
        (7, &coll),
        (22, &sent),
        (25, "F"),
    ] {
        if let Some(slot) = obr.get_mut(n - 1) {
            *slot = v;
        }
    }
    b.segment("OBR", &obr);
    for (j, (code, value, unit)) in rows.iter().enumerate() {
        b.final_nm_obx(j + 1, code, value, unit, &coll);
    }
    b.finish()
}

fn lab(
    stay: &Stay,
    specimen_id: u64,
    time: Timestamp,
    arrival: Timestamp,
    results: &[(&LabItem, f64)],
) -> String {
    let rows: Vec<(String, String, String)> = results
        .iter()
        .map(|(it, v)| {
            (
                format!("{}^{}^LN", it.loinc, escape(&it.name)),
                number(*v),
                it.ucum.clone(),
            )
        })
        .collect();
    let control = format!("L{specimen_id}S{}", stay.stay_id);
    let panel = format!("{specimen_id}^Specimen^L");
    result_message("LIS", stay, &control, time, arrival, &panel, &rows)
}

fn urine(stay: &Stay, time: Timestamp, arrival: Timestamp, ml: f64) -> String {
    let rows = [(
        "9187-6^Urine output^LN".to_string(),
        number(ml),
        "mL".to_string(),
    )];
    let control = format!("U{}T{}", stay.stay_id, time.millis() / 1000);
    result_message(
        "CHARTING",
        stay,
        &control,
        time,
        arrival,
        "9187-6^Urine output^LN",
        &rows,
    )
}

fn pump(
    stay: &Stay,
    drug_ix: usize,
    drug: &str,
    time: Timestamp,
    arrival: Timestamp,
    rate: f64,
) -> String {
    let channel = format!("1.1.{}", drug_ix + 1);
    let rows = [
        PcdRow::st(
            184514,
            "MDC_DRUG_NAME_LABEL",
            &format!("{channel}.1"),
            drug,
            time,
        ),
        PcdRow::nm(
            157924,
            "MDC_RATE_DOSE",
            &format!("{channel}.2"),
            &number(rate),
            "265619^MDC_DIM_MICRO_G_PER_KG_PER_MIN^MDC",
            time,
        ),
    ];
    let device = PcdDevice {
        eui64: format!("{:016X}", stay.stay_id * 16 + drug_ix as u64),
        name: format!("PUMP-{}-{}", stay.stay_id, drug_ix + 1),
        mds: MDS_PUMP.into(),
    };
    let control = format!("P{}D{}T{}", stay.stay_id, drug_ix, time.millis() / 1000);
    pcd01_message(
        "MIMIC_PUMP",
        &control,
        arrival,
        Some(&stay.identity()),
        UNIT,
        &stay.stay_id.to_string(),
        &device,
        time,
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        parse_time(s).unwrap()
    }

    #[test]
    fn builtin_items_parse() {
        let items = MimicItems::builtin().unwrap();
        assert_eq!(items.specimen_item, 52033);
        assert!(items
            .labs
            .iter()
            .any(|l| l.itemid == 50816 && l.loinc == "3150-0"));
        // FiO2 precedes PaO2, so a gas's PaO2 finds its FiO2 on arrival.
        let pos = |id| items.labs.iter().position(|l| l.itemid == id).unwrap();
        assert!(pos(50816) < pos(50821));
    }

    #[test]
    fn grid_ends_on_clock_hours_like_mimic_code() {
        // Row 0 ends at intime + 59 min truncated to the hour.
        let g = mimic_grid(t("2171-11-14 10:00:00"), t("2171-11-14 12:00:00"));
        assert_eq!(g[0].end, t("2171-11-14 10:00:00"));
        assert_eq!(g.last().unwrap().hr, 2);
        let g = mimic_grid(t("2171-11-14 10:01:00"), t("2171-11-14 12:59:59"));
        assert_eq!(g[0].end, t("2171-11-14 11:00:00"));
        assert_eq!(g[0].start, t("2171-11-14 10:00:00"));
        // Two clock-hour boundaries between 10:01 and 12:59:59, though ~3 h pass.
        assert_eq!(g.last().unwrap().hr, 2);
        // Stay 31269608 of the demo: 184 rows after row 0, not ⌈184.86⌉.
        let g = mimic_grid(t("2154-04-24 23:03:44"), t("2154-05-02 15:55:21"));
        assert_eq!(g.last().unwrap().hr, 184);
        // Seconds do not round up: row 0 can end up to 59 s before the admission.
        let g = mimic_grid(t("2171-11-14 10:00:59"), t("2171-11-14 11:00:00"));
        assert_eq!(
            g[0].end,
            t("2171-11-14 10:00:00"),
            "seconds do not round up"
        );
    }

    #[test]
    fn pump_reports_take_the_highest_running_row_and_repeat_hourly() {
        let h = |x: f64| t("2100-01-01 00:00:00").plus_ms((x * HOUR_MS as f64) as i64);
        let rows = [
            (h(0.0), h(2.5), 0.1),
            (h(1.0), h(1.5), 0.3),
            (h(2.5), h(3.0), 0.2),
        ];
        let got = pump_reports(&rows);
        assert_eq!(
            got,
            vec![
                (h(0.0), 0.1),
                (h(1.0), 0.3),
                (h(1.5), 0.1),
                (h(2.5), 0.2),
                (h(3.0), 0.0)
            ]
        );
        // A long unchanged row is repeated every hour.
        let got = pump_reports(&[(h(0.0), h(2.5), 0.05)]);
        assert_eq!(
            got,
            vec![
                (h(0.0), 0.05),
                (h(1.0), 0.05),
                (h(2.0), 0.05),
                (h(2.5), 0.0)
            ]
        );
    }

    #[test]
    fn numbers_round_trip() {
        for v in [0.33935095416381955, 0.1, 240.0, 1.8] {
            assert_eq!(number(v).parse::<f64>().unwrap(), v);
        }
        assert_eq!(number(240.0), "240");
    }
}
