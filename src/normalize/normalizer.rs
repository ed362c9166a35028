//! The gateway's normalizer: one instance shared by every source, holding the census and the
//! device clock offsets. Raw HL7 in, [`IngestRecord`]s out.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::model::{
    is_sedative_label, observation_id, CensusEvent, CensusKind, Code, CodeSystem, DeviceRef, Drug,
    IngestRecord, Observation, Origin, Param, Quality, SourceRef, Term, Timestamp, Value,
    CENSUS_SCHEMA, OBSERVATION_SCHEMA,
};
use crate::protocol::device::{DeviceCode, DeviceReport, ReadingStatus, ReadingValue};
use crate::protocol::hl7::{
    self, AdtEvent, DecodeOptions, Decoded, Location, ObsGroup, ObservationReport, ObxFields,
    ObxRow, PatientIds,
};

use super::census::Census;
use super::number::{parse_f64, parse_u32, trim};
use super::tables::{MappedParam, NormalizeTables};
use super::units::{flow_to_dose, to_canonical};

/// MDC_RATE_DOSE, for doses computed from pump flow.
const MDC_RATE_DOSE: &str = "157924";
/// How many shared strings (beds, units, patients, devices, sources) are kept for reuse
/// before the set starts afresh.
const SHARED_MAX: usize = 4096;
/// How many recent messages per device the clock-offset estimate looks at.
const CLOCK_SAMPLES: usize = 16;

/// Why a message was rejected. `kind()` is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    #[error("HL7 parse error: {0}")]
    Parse(#[from] hl7::ParseError),
    #[error("{0}")]
    Decode(#[from] hl7::DecodeError),
}

impl NormalizeError {
    pub fn kind(&self) -> &'static str {
        match self {
            NormalizeError::Parse(_) => "parse",
            NormalizeError::Decode(hl7::DecodeError::Unsupported { .. }) => "unsupported",
            NormalizeError::Decode(_) => "missing",
        }
    }
}

/// Settings the normalizer takes from the config.
#[derive(Clone, Debug)]
pub struct NormalizeSettings {
    pub site: Option<String>,
    /// Minutes east of UTC for HL7 times without a zone.
    pub default_offset_min: i32,
    /// Clock differences smaller than this are transport delay, not clock error.
    pub clock_tolerance_ms: i64,
}

impl Default for NormalizeSettings {
    fn default() -> Self {
        NormalizeSettings {
            site: None,
            default_offset_min: 0,
            clock_tolerance_ms: 10_000,
        }
    }
}

/// What one message became.
#[derive(Debug, Default)]
pub struct Normalized {
    /// MSH-10; the same string the readings' source names.
    pub control_id: Arc<str>,
    /// e.g. `ORU^R01`.
    pub message_type: Cow<'static, str>,
    pub records: Vec<IngestRecord>,
    /// Observations with no patient for their bed.
    pub unassociated: usize,
}

/// `code^trigger`; the accepted types without an allocation.
fn message_type_name(code: &str, trigger: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 12] = [
        "ORU^R01", "ORU^R42", "ADT^A01", "ADT^A02", "ADT^A03", "ADT^A04", "ADT^A08", "ADT^A11",
        "ADT^A12", "ADT^A13", "ADT^A40", "ORU^R40",
    ];
    let known = KNOWN.iter().find(|k| {
        k.len() == code.len() + 1 + trigger.len()
            && k.starts_with(code)
            && k.ends_with(trigger)
            && k.as_bytes().get(code.len()) == Some(&b'^')
    });
    match known {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(format!("{code}^{trigger}")),
    }
}

/// Where a device source's readings belong and who sent them: from the source's config (a
/// serial port's bed) or the message (an MQTT topic's bed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceOrigin {
    /// `serial`, `mqtt`: the protocol recorded in each observation's source.
    pub protocol: &'static str,
    /// The device's id (serial number, configured name, MQTT client): clock offsets are tracked
    /// per id.
    pub device_id: String,
    pub model: Option<String>,
    pub unit: Option<String>,
    pub bed: Option<String>,
    /// A patient named by the sender; otherwise the census's occupant of the bed.
    pub patient: Option<String>,
    /// What identifies the report in logs and dead letters (a frame number, a topic and packet id).
    pub message: String,
}

/// Tracks one device's clock against the gateway's: the smallest recent (receive − sent)
/// difference, since transport only ever adds delay.
#[derive(Debug, Default)]
struct DeviceClock {
    samples: VecDeque<i64>,
}

impl DeviceClock {
    fn offset(&mut self, receive: Timestamp, sent: Option<Timestamp>, tolerance: i64) -> i64 {
        if let Some(sent) = sent {
            if self.samples.len() == CLOCK_SAMPLES {
                self.samples.pop_front();
            }
            self.samples.push_back(receive.since(sent));
        }
        let min = self.samples.iter().copied().min().unwrap_or(0);
        if min.abs() < tolerance {
            0
        } else {
            min
        }
    }
}

pub struct Normalizer {
    tables: NormalizeTables,
    settings: NormalizeSettings,
    census: Census,
    /// FxHash: keyed by configured source and sending application, not by message content.
    clocks: FxHashMap<String, DeviceClock>,
    /// Scratch for the clock key, reused across messages.
    clock_key: String,
    site: Option<Arc<str>>,
    protocol: Arc<str>,
    /// The parser's index vectors, reused from message to message.
    parse_buffers: hl7::ParseBuffers,
    /// The decoder's row vectors, reused likewise.
    row_buffers: hl7::RowBuffers,
    /// Strings that recur message after message (bed, unit, patient, device, source): one
    /// shared copy each instead of an allocation per message.
    shared: Shared,
}

/// A bounded set of shared strings.
#[derive(Default)]
struct Shared(FxHashSet<Arc<str>>);

impl Shared {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return Arc::clone(a);
        }
        if self.0.len() >= SHARED_MAX {
            self.0.clear();
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(Arc::clone(&a));
        a
    }
}

fn text(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// `1.1.2.5` → `1.1.2`: the channel a metric belongs to (PCD-01 containment).
fn channel_of(sub_id: &str) -> &str {
    let mut dots = sub_id.match_indices('.').map(|(i, _)| i);
    match (dots.next(), dots.next()) {
        (Some(_), Some(second)) => {
            let rest = &sub_id[second + 1..];
            match rest.find('.') {
                Some(i) => &sub_id[..second + 1 + i],
                None => sub_id,
            }
        }
        _ => "",
    }
}

impl Normalizer {
    pub fn new(tables: NormalizeTables, settings: NormalizeSettings) -> Self {
        Normalizer {
            site: settings.site.as_deref().map(Arc::from),
            tables,
            settings,
            census: Census::new(),
            clocks: FxHashMap::default(),
            clock_key: String::new(),
            protocol: Arc::from("hl7"),
            parse_buffers: hl7::ParseBuffers::default(),
            row_buffers: hl7::RowBuffers::default(),
            shared: Shared::default(),
        }
    }

    pub fn census(&self) -> &Census {
        &self.census
    }

    /// Parses, decodes and normalizes one HL7 message received at `receive_time`.
    pub fn hl7(
        &mut self,
        source: &str,
        raw: &[u8],
        receive_time: Timestamp,
    ) -> Result<Normalized, NormalizeError> {
        let msg = hl7::parse_with(raw, std::mem::take(&mut self.parse_buffers))?;
        let out = self.message(source, &msg, receive_time);
        self.parse_buffers = msg.into_buffers();
        out
    }

    /// Normalizes readings a device driver or MQTT payload produced, through the same code and
    /// unit tables, plausibility checks, artifact rules, clock-offset tracking and pump dose
    /// computation as HL7 device data.
    pub fn device(
        &mut self,
        source: &str,
        origin: &DeviceOrigin,
        report: &DeviceReport,
        receive_time: Timestamp,
    ) -> Normalized {
        let mut rows = Vec::with_capacity(report.readings.len());
        let mut flagged = Vec::with_capacity(report.readings.len());
        for (i, r) in report.readings.iter().enumerate() {
            if r.status == ReadingStatus::Unavailable {
                continue;
            }
            let (code, refid, system) = match &r.code {
                DeviceCode::Mdc { code, refid } => (code.to_string(), refid.to_string(), "MDC"),
                DeviceCode::Loinc { code } => (code.clone(), String::new(), "LN"),
                DeviceCode::Local { code } => (code.clone(), String::new(), "L"),
            };
            let value = match &r.value {
                ReadingValue::Num(v) if v.is_finite() => v.to_string(),
                ReadingValue::Num(_) => continue,
                ReadingValue::Text(t) if !t.trim().is_empty() => t.clone(),
                ReadingValue::Text(_) => continue,
            };
            if code.trim().is_empty() {
                continue;
            }
            flagged.push(r.status == ReadingStatus::Questionable);
            let sub_id = match &r.channel {
                Some(ch) => format!("1.1.{}.{}", ch.replace('.', "_"), i + 1),
                None => String::new(),
            };
            rows.push(ObxRow {
                segment: i,
                value_type: Cow::Borrowed(match r.value {
                    ReadingValue::Num(_) => "NM",
                    ReadingValue::Text(_) => "ST",
                }),
                code: Cow::Owned(code),
                refid: Cow::Owned(refid),
                system: Cow::Borrowed(system),
                sub_id: Cow::Owned(sub_id),
                value: Cow::Owned(value),
                unit_ucum: Some(Cow::Owned(r.unit.clone())),
                unit_system: Cow::Borrowed("UCUM"),
                status: Cow::Borrowed("F"),
                time: r.time,
                ..ObxRow::default()
            });
        }
        let report_hl7 = ObservationReport {
            control_id: Cow::Borrowed(origin.message.as_str()),
            trigger: Cow::Borrowed("R01"),
            sending_app: Cow::Borrowed(origin.device_id.as_str()),
            sending_facility: Cow::Borrowed(""),
            message_time: report.device_time,
            patient: PatientIds {
                ids: Vec::new(),
                visit_number: origin.patient.as_deref().map(Cow::Borrowed),
            },
            location: Location {
                unit: Cow::Borrowed(origin.unit.as_deref().unwrap_or("")),
                bed: Cow::Borrowed(origin.bed.as_deref().unwrap_or("")),
                ..Location::default()
            },
            groups: vec![ObsGroup {
                filler_id: Cow::Borrowed(origin.device_id.as_str()),
                device_code: hl7::CodedValue {
                    text: Cow::Borrowed(origin.model.as_deref().unwrap_or("")),
                    ..hl7::CodedValue::default()
                },
                obs_time: report.device_time,
                rows,
                ..ObsGroup::default()
            }],
        };
        let protocol: Arc<str> = Arc::from(origin.protocol);
        let mut n = self.observations(
            source,
            &report_hl7.fields_view(),
            receive_time,
            Cow::Borrowed(origin.protocol),
            protocol,
        );
        // Each row became exactly one observation, in order (empty rows were left out above);
        // derived doses and sedation records follow them.
        for (rec, flagged) in n.records.iter_mut().zip(&flagged) {
            if let (IngestRecord::Observation(o), true) = (rec, *flagged) {
                o.quality.push(Quality::DeviceFlagged);
            }
        }
        n
    }

    /// Decodes and normalizes a message already parsed (the MLLP source parses once, for the
    /// ACK and for this).
    pub fn message(
        &mut self,
        source: &str,
        msg: &hl7::Message<'_>,
        receive_time: Timestamp,
    ) -> Result<Normalized, NormalizeError> {
        let opts = DecodeOptions {
            default_offset_min: self.settings.default_offset_min,
        };
        let (code, trigger, _) = msg.message_type();
        if code.trim().is_empty() {
            return Err(NormalizeError::Decode(hl7::DecodeError::Missing {
                what: "message type (MSH-9)",
                position: "MSH".into(),
            }));
        }
        let message_type = message_type_name(code, trigger);
        // The common case: rows borrowed from the message, only the fields normalization reads.
        let mut spare = std::mem::take(&mut self.row_buffers);
        let fast = hl7::decode_fields_with(msg, (code, trigger), &opts, &mut spare);
        if let Ok(Some(r)) = fast {
            let protocol = Arc::clone(&self.protocol);
            let out = self.observations(source, &r, receive_time, message_type, protocol);
            spare.give_back(r);
            self.row_buffers = spare;
            return Ok(out);
        }
        self.row_buffers = spare;
        // A decode error ends here; a report the fast path does not take goes to the full decode.
        fast?;
        match hl7::decode(msg, &opts)? {
            Decoded::Observations(r) => {
                let protocol = Arc::clone(&self.protocol);
                Ok(self.observations(
                    source,
                    &r.fields_view(),
                    receive_time,
                    message_type,
                    protocol,
                ))
            }
            Decoded::Adt(a) => Ok(self.adt(&a, receive_time, message_type)),
        }
    }

    fn adt(
        &mut self,
        a: &AdtEvent<'_>,
        receive_time: Timestamp,
        message_type: Cow<'static, str>,
    ) -> Normalized {
        let kind = match a.trigger.as_ref() {
            "A01" | "A04" => CensusKind::Admit,
            "A02" => CensusKind::Transfer,
            "A03" => CensusKind::Discharge,
            "A11" => CensusKind::CancelAdmit,
            "A12" => CensusKind::CancelTransfer,
            "A13" => CensusKind::CancelDischarge,
            "A40" => CensusKind::Merge,
            _ => CensusKind::Update,
        };
        let mrn = a.patient.ids.first().and_then(|i| text(&i.id));
        let patient = a
            .patient
            .visit_number
            .as_deref()
            .and_then(text)
            .or_else(|| mrn.clone())
            .unwrap_or_default();
        let prior_patient = a
            .merge_prior_visit
            .as_deref()
            .and_then(text)
            .or_else(|| a.merge_prior_ids.first().and_then(|i| text(&i.id)));
        let ev = CensusEvent {
            schema: CENSUS_SCHEMA,
            kind,
            patient,
            prior_patient,
            unit: text(&a.location.unit),
            bed: text(&a.location.bed),
            prior_bed: text(&a.prior_location.bed),
            weight_kg: a.weight_kg,
            height_cm: a.height_cm,
            time: a.event_time.or(a.message_time).unwrap_or(receive_time),
            receive_time,
            message: a.control_id.to_string(),
        };
        self.census.apply(&ev, mrn.as_deref());
        Normalized {
            control_id: Arc::from(a.control_id.as_ref()),
            message_type,
            records: vec![IngestRecord::Census(ev)],
            unassociated: 0,
        }
    }

    fn observations(
        &mut self,
        source: &str,
        r: &ObservationReport<'_, ObxFields<'_>>,
        receive_time: Timestamp,
        message_type: Cow<'static, str>,
        protocol: Arc<str>,
    ) -> Normalized {
        // Who: the encounter, else the MRN's current encounter, else whoever is in the bed.
        let visit = r.patient.visit_number.as_deref().map(str::trim);
        let visit = visit.filter(|v| !v.is_empty());
        let unit_in_msg = non_empty(&r.location.unit);
        let bed_in_msg = non_empty(&r.location.bed);
        let census = &self.census;
        let occupant = visit
            .and_then(|v| census.patient(v))
            .or_else(|| {
                r.patient
                    .ids
                    .iter()
                    .find_map(|i| census.by_mrn(i.id.trim()))
            })
            .or_else(|| census.patient_in(unit_in_msg, bed_in_msg));
        // Strings every observation of the message shares, and that recur from message to
        // message: taken from the shared set.
        let mut shared = std::mem::take(&mut self.shared);
        let patient = visit
            .or_else(|| occupant.map(|o| o.patient.as_str()))
            .map(|s| shared.get(s));
        let unit = unit_in_msg
            .or_else(|| occupant.and_then(|o| o.unit.as_deref()))
            .map(|s| shared.get(s));
        let bed = bed_in_msg
            .or_else(|| occupant.and_then(|o| o.bed.as_deref()))
            .map(|s| shared.get(s));
        let weight = occupant.and_then(|o| o.weight_kg);

        let offset = self.clock_offset(source, &r.sending_app, receive_time, r.message_time);
        let control_id: Arc<str> = Arc::from(r.control_id.as_ref());
        let ctx = Ctx {
            source,
            sending_app: &r.sending_app,
            site: self.site.clone(),
            unit,
            bed,
            patient,
            source_ref: SourceRef {
                protocol,
                source: shared.get(source),
                message: Arc::clone(&control_id),
            },
            receive_time,
            offset,
            message_time: r.message_time,
        };
        let mut out = Normalized {
            control_id,
            message_type,
            records: Vec::with_capacity(
                r.groups
                    .iter()
                    .map(|g| g.rows.iter().filter(|r| !r.device_row).count())
                    .sum(),
            ),
            unassociated: 0,
        };
        // Each reading is built straight into the output (a record is a few hundred bytes:
        // every move is a copy), then the group's readings are checked as a whole.
        for g in &r.groups {
            let first = out.records.len();
            self.group(&ctx, g, weight, &mut shared, &mut out.records);
            if let Some(group) = out.records.get_mut(first..) {
                flag_arterial_artifacts(&self.tables, group);
                flag_low_perfusion_spo2(&self.tables, group);
            }
        }
        self.shared = shared;
        if ctx.patient.is_none() {
            out.unassociated = out.records.len();
        }
        out
    }

    /// The device clock offset for `source/app`; the key is built in a reused buffer so a known
    /// device costs no allocation.
    fn clock_offset(
        &mut self,
        source: &str,
        app: &str,
        receive_time: Timestamp,
        sent: Option<Timestamp>,
    ) -> i64 {
        let tolerance = self.settings.clock_tolerance_ms;
        let key = &mut self.clock_key;
        key.clear();
        key.push_str(source);
        key.push('/');
        key.push_str(app);
        if let Some(c) = self.clocks.get_mut(key.as_str()) {
            return c.offset(receive_time, sent, tolerance);
        }
        self.clocks
            .entry(key.clone())
            .or_default()
            .offset(receive_time, sent, tolerance)
    }

    fn group<'m>(
        &self,
        ctx: &Ctx<'_>,
        g: &'m ObsGroup<'m, ObxFields<'m>>,
        census_weight: Option<f64>,
        shared: &mut Shared,
        out: &mut Vec<IngestRecord>,
    ) {
        // Pump channels: the drug named on a channel applies to its dose and flow rows. Few
        // channels per message, so a vector beats a map.
        let mut drugs: Vec<(&'m str, Drug)> = Vec::new();
        let mut sedatives: Vec<(&'m str, &'m str)> = Vec::new();
        let mut labelled: Vec<&'m str> = Vec::new();
        let mut pump_weight: Option<f64> = None;
        for row in &g.rows {
            if let Some(code) = row.code_num {
                if self.tables.is_drug_name_code(code) {
                    labelled.push(channel_of(row.sub_id));
                    if is_sedative_label(row.value) {
                        sedatives.push((channel_of(row.sub_id), row.value.trim()));
                    }
                    if let Some(d) = Drug::from_label(row.value) {
                        let ch = channel_of(row.sub_id);
                        match drugs.iter_mut().find(|(c, _)| *c == ch) {
                            Some(slot) => slot.1 = d,
                            None => drugs.push((ch, d)),
                        }
                    }
                }
                if code == 68_063 {
                    pump_weight = row.value.trim().parse::<f64>().ok().filter(|w| *w > 0.0);
                }
            }
        }
        let weight = census_weight.or(pump_weight);
        let drug_on = |ch: &str| -> Option<Drug> {
            drugs
                .iter()
                .find(|(c, _)| *c == ch)
                .map(|(_, d)| *d)
                // A channel without its own drug name takes the message's only drug; a channel
                // named for another drug (propofol beside norepinephrine) never does.
                .or(match drugs.as_slice() {
                    [(_, only)] if !labelled.contains(&ch) => Some(*only),
                    _ => None,
                })
        };
        let model = non_empty(&g.device_code.text).map(|m| shared.get(m));
        let group_id = non_empty(&g.filler_id)
            .or(non_empty(ctx.sending_app))
            .unwrap_or(ctx.source);
        // The group's device (OBR-3, else the sender); a row naming its own equipment (OBX-18)
        // gets an origin of its own.
        let group_origin = ctx.origin(shared.get(group_id), model.clone());

        // Per channel: flow and concentration, and whether a dose row came.
        let mut flows: Vec<(&'m str, ChannelFlow)> = Vec::new();
        let mut last_equipment: Option<(&'m str, Arc<Origin>)> = None;
        for row in &g.rows {
            if row.device_row || row.is_waveform() || trim(row.value).is_empty() {
                continue;
            }
            let origin = match non_empty(row.equipment_id) {
                None => Arc::clone(&group_origin),
                Some(e) => match &last_equipment {
                    Some((prev, o)) if *prev == e => Arc::clone(o),
                    _ => {
                        let o = ctx.origin(shared.get(e), model.clone());
                        last_equipment = Some((e, Arc::clone(&o)));
                        o
                    }
                },
            };
            if !self.row(ctx, g, row, origin, &drug_on, out) {
                continue;
            }
            let Some(IngestRecord::Observation(o)) = out.last() else {
                continue;
            };
            if matches!(
                o.param,
                Some(Param::PumpFlow | Param::DrugConc | Param::Dose(_))
            ) {
                let ch = channel_of(row.sub_id);
                let i = match flows.iter().position(|(c, _)| *c == ch) {
                    Some(i) => i,
                    None => {
                        flows.push((ch, ChannelFlow::default()));
                        flows.len() - 1
                    }
                };
                if let Some((_, f)) = flows.get_mut(i) {
                    match o.param {
                        Some(Param::PumpFlow) if o.is_usable() => {
                            if let Some(v) = o.numeric() {
                                f.flow = Some((v, o.corrected_time, o.device_time));
                            }
                        }
                        Some(Param::DrugConc) if o.is_usable() => f.conc = o.numeric(),
                        Some(Param::Dose(_)) => f.has_dose = true,
                        _ => {}
                    }
                }
            }
        }
        if flows.is_empty() {
            return;
        }
        flows.sort_by(|a, b| a.0.cmp(b.0));
        // A sedative channel that reports its flow says whether sedation is running; the scorer
        // reads a GCS charted under sedation accordingly.
        for (ch, f) in &flows {
            let (Some((ml_h, corrected, device_time)), Some((_, label))) =
                (f.flow, sedatives.iter().find(|(c, _)| c == ch))
            else {
                continue;
            };
            let code = Code {
                system: CodeSystem::Local,
                code: "VIGIL_SEDATIVE_INFUSION".into(),
                refid: Some((*label).to_string().into()),
            };
            let running = if ml_h > 0.0 { 1.0 } else { 0.0 };
            out.push(IngestRecord::Observation(ctx.observation(
                Arc::clone(&group_origin),
                code,
                Some(Param::Sedation),
                Value::Num(running),
                Param::Sedation.canonical_unit().into(),
                device_time,
                corrected,
                Vec::new(),
            )));
        }
        // A channel that reports flow and concentration but no dose: compute the dose with the
        // patient's weight. Without a weight, drug or concentration, no dose is guessed.
        for (ch, f) in &flows {
            let (Some((ml_h, corrected, device_time)), Some(conc), false) =
                (f.flow, f.conc, f.has_dose)
            else {
                continue;
            };
            let Some(drug) = drug_on(ch) else {
                continue;
            };
            if drug == Drug::Vasopressin {
                continue; // U/min needs U/mL, not mg/mL.
            }
            let Some(dose) = weight.and_then(|w| flow_to_dose(ml_h, conc, w)) else {
                continue;
            };
            let dose = (dose * 10_000.0).round() / 10_000.0;
            let code = Code {
                system: CodeSystem::Mdc,
                code: MDC_RATE_DOSE.into(),
                refid: Some("MDC_RATE_DOSE".into()),
            };
            let param = Param::Dose(drug);
            let mut quality = Vec::new();
            if let Some((lo, hi)) = self.tables.range(param) {
                if dose < lo || dose > hi {
                    quality.push(Quality::OutOfRange);
                }
            }
            out.push(IngestRecord::Observation(ctx.observation(
                Arc::clone(&group_origin),
                code,
                Some(param),
                Value::Num(dose),
                param.canonical_unit().into(),
                device_time,
                corrected,
                quality,
            )));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &self,
        ctx: &Ctx<'_>,
        g: &ObsGroup<'_, ObxFields<'_>>,
        row: &ObxFields<'_>,
        origin: Arc<Origin>,
        drug_on: &dyn Fn(&str) -> Option<Drug>,
        out: &mut Vec<IngestRecord>,
    ) -> bool {
        let sys = trim(row.system);
        let code_str = trim(row.code);
        if code_str.is_empty() {
            return false;
        }
        let mdc_num = row.code_num;
        let system = match sys {
            "MDC" => CodeSystem::Mdc,
            "LN" | "LOINC" | "LNC" => CodeSystem::Loinc,
            "" if mdc_num.is_some() && row.refid.starts_with("MDC_") => CodeSystem::Mdc,
            _ => CodeSystem::Local,
        };
        let entry = match (system, mdc_num) {
            (CodeSystem::Mdc, Some(n)) => self.tables.mdc_entry(n),
            _ => None,
        };
        let mapped = match (system, entry) {
            (CodeSystem::Mdc, e) => e.map(|e| e.param),
            (CodeSystem::Loinc, _) => self.tables.loinc(code_str),
            _ => None,
        };
        let param = match mapped {
            Some(MappedParam::Param(p)) => Some(p),
            Some(MappedParam::Dose) => drug_on(channel_of(row.sub_id)).map(Param::Dose),
            None => None,
        };
        let sent_unit = self.unit_of(row);
        let device_time = row.time.or(g.obs_time).or(ctx.message_time);
        let corrected = device_time
            .map(|t| t.plus_ms(ctx.offset).min(ctx.receive_time))
            .unwrap_or(ctx.receive_time);
        let mut quality = Vec::new();
        let raw = trim(row.value);
        // A mapped MDC code's text and reference id are the table's own when they match. The
        // entry was found by the code's number, read from `code_str` (an optional `+`, then
        // digits): the text is the table's exactly when no sign or leading zero lengthens it.
        let code = Code {
            system,
            code: match entry {
                Some(e) if e.code.len() == code_str.len() => Cow::Borrowed(e.code),
                _ => self.tables.term(code_str),
            },
            refid: non_empty(row.refid).map(|r| match entry {
                Some(e) if e.refid == r => Cow::Borrowed(e.refid),
                _ => self.tables.term(r),
            }),
        };
        let (value, param, ucum) = match parse_f64(raw) {
            Some(v) if v.is_finite() => {
                if self.tables.is_sentinel(v) {
                    quality.push(Quality::Sentinel);
                    (v, param, self.unit_term(sent_unit))
                } else if let Some(p) = param {
                    match to_canonical(p, v, sent_unit.text) {
                        Ok(c) => {
                            let c = round_like_device(c);
                            if let Some((lo, hi)) = self.tables.range(p) {
                                if c < lo || c > hi {
                                    quality.push(Quality::OutOfRange);
                                }
                            }
                            (c, param, Cow::Borrowed(p.canonical_unit()))
                        }
                        Err(_) => {
                            quality.push(Quality::UnitUnknown);
                            (v, param, self.unit_term(sent_unit))
                        }
                    }
                } else {
                    (v, param, self.unit_term(sent_unit))
                }
            }
            _ => {
                // A text value cannot feed a numeric score.
                out.push(IngestRecord::Observation(ctx.observation(
                    origin,
                    code,
                    None,
                    Value::Text(raw.to_string()),
                    self.unit_term(sent_unit),
                    device_time,
                    corrected,
                    quality,
                )));
                return true;
            }
        };
        out.push(IngestRecord::Observation(ctx.observation(
            origin,
            code,
            param,
            Value::Num(value),
            ucum,
            device_time,
            corrected,
            quality,
        )));
        true
    }

    /// The UCUM unit of a row: the UCUM alternate when given, else the MDC unit code, else
    /// the unit text through the alias table.
    fn unit_of<'s>(&'s self, row: &ObxFields<'s>) -> SentUnit<'s> {
        let alias = |text: &'s str| match self.tables.ucum_alias_of(text) {
            Some(t) => SentUnit::table(t),
            None => SentUnit { text, table: None },
        };
        if let Some(u) = row.unit_ucum.map(trim).filter(|u| !u.is_empty()) {
            return alias(u);
        }
        let code = trim(row.unit_code);
        if trim(row.unit_system) == "MDC" || row.unit_refid.starts_with("MDC_DIM") {
            if let Some(u) = parse_u32(code).and_then(|c| self.tables.mdc_unit(c)) {
                return SentUnit::table(u);
            }
        }
        if code.is_empty() {
            return SentUnit::table("");
        }
        alias(code)
    }

    /// A row's unit as a term: the tables' copy as it stands, else looked up.
    fn unit_term(&self, u: SentUnit<'_>) -> Term {
        match u.table {
            Some(t) => Cow::Borrowed(t),
            None => self.tables.term(u.text),
        }
    }
}

/// A row's unit: its UCUM text, and the tables' own copy of it when it came from them (an MDC
/// unit code or an alias), so the term needs no lookup.
#[derive(Clone, Copy)]
struct SentUnit<'s> {
    text: &'s str,
    table: Option<&'static str>,
}

impl SentUnit<'_> {
    fn table(t: &'static str) -> Self {
        SentUnit {
            text: t,
            table: Some(t),
        }
    }
}

/// Trims float noise from conversions (e.g. 37.00000000001) without losing device precision.
fn round_like_device(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// What one pump channel reported in a message.
#[derive(Default)]
struct ChannelFlow {
    /// mL/h with its corrected and device times.
    flow: Option<(f64, Timestamp, Option<Timestamp>)>,
    /// mg/mL.
    conc: Option<f64>,
    has_dose: bool,
}

/// What every observation of one message shares.
struct Ctx<'a> {
    source: &'a str,
    sending_app: &'a str,
    site: Option<Arc<str>>,
    unit: Option<Arc<str>>,
    bed: Option<Arc<str>>,
    patient: Option<Arc<str>>,
    source_ref: SourceRef,
    receive_time: Timestamp,
    offset: i64,
    message_time: Option<Timestamp>,
}

impl Ctx<'_> {
    /// The origin of readings from device `id` in this message.
    fn origin(&self, id: Arc<str>, model: Option<Arc<str>>) -> Arc<Origin> {
        Arc::new(Origin {
            site: self.site.clone(),
            unit: self.unit.clone(),
            bed: self.bed.clone(),
            patient: self.patient.clone(),
            device: DeviceRef {
                id,
                model,
                profile: None,
            },
            source: self.source_ref.clone(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn observation(
        &self,
        origin: Arc<Origin>,
        code: Code,
        param: Option<Param>,
        value: Value,
        ucum: Term,
        device_time: Option<Timestamp>,
        corrected: Timestamp,
        quality: Vec<Quality>,
    ) -> Observation {
        Observation {
            schema: OBSERVATION_SCHEMA,
            id: observation_id(
                &origin.device.id,
                &code,
                device_time.unwrap_or(corrected),
                &value,
            ),
            origin,
            code,
            param,
            value,
            ucum,
            device_time,
            receive_time: self.receive_time,
            corrected_time: corrected,
            quality,
        }
    }
}

/// `s` trimmed, or `None` when that leaves nothing.
fn non_empty(s: &str) -> Option<&str> {
    let t = trim(s);
    (!t.is_empty()).then_some(t)
}

/// The readings among a group's records (all of them are readings; census events never mix in).
fn readings(recs: &[IngestRecord]) -> impl Iterator<Item = &Observation> {
    recs.iter().filter_map(|r| match r {
        IngestRecord::Observation(o) => Some(o),
        IngestRecord::Census(_) => None,
    })
}

fn readings_mut(recs: &mut [IngestRecord]) -> impl Iterator<Item = &mut Observation> {
    recs.iter_mut().filter_map(|r| match r {
        IngestRecord::Observation(o) => Some(o),
        IngestRecord::Census(_) => None,
    })
}

fn reading(recs: &[IngestRecord], i: usize) -> Option<&Observation> {
    match recs.get(i) {
        Some(IngestRecord::Observation(o)) => Some(o),
        _ => None,
    }
}

fn reading_mut(recs: &mut [IngestRecord], i: usize) -> Option<&mut Observation> {
    match recs.get_mut(i) {
        Some(IngestRecord::Observation(o)) => Some(o),
        _ => None,
    }
}

fn flag_artifact(o: &mut Observation) {
    if !o.quality.contains(&Quality::Artifact) {
        o.quality.push(Quality::Artifact);
    }
}

/// A SpO2 measured together with a perfusion index below the limit (CLINICAL.md §5: the
/// SpO2–SaO2 discrepancy becomes significant below 0.6 %) is flagged as an artifact.
fn flag_low_perfusion_spo2(t: &NormalizeTables, recs: &mut [IngestRecord]) {
    let rule = &t.spo2_low_perfusion;
    if !rule.enabled {
        return;
    }
    let weak: Vec<(Timestamp, Arc<str>)> = readings(recs)
        .filter(|o| o.param == Some(Param::PerfusionIndex) && o.is_usable())
        .filter(|o| o.numeric().is_some_and(|v| v < rule.perfusion_index_below))
        .map(|o| (o.corrected_time, o.origin.device.id.clone()))
        .collect();
    if weak.is_empty() {
        return;
    }
    for o in readings_mut(recs).filter(|o| o.param == Some(Param::SpO2)) {
        let hit = weak
            .iter()
            .any(|(t, d)| (o.corrected_time.since(*t)).abs() <= 60_000 && *d == o.origin.device.id);
        if hit {
            flag_artifact(o);
        }
    }
}

/// ART1 (CLINICAL.md §5): a systolic/diastolic/mean arterial triple measured at the same time
/// that matches an artifact pattern is flagged as a whole.
fn flag_arterial_artifacts(t: &NormalizeTables, recs: &mut [IngestRecord]) {
    let a = &t.arterial;
    if !a.enabled {
        return;
    }
    let find = |recs: &[IngestRecord], p: Param, at: Timestamp| {
        recs.iter().position(|r| {
            matches!(r, IngestRecord::Observation(o) if o.param == Some(p)
                && o.corrected_time == at
                && !o.quality.contains(&Quality::Sentinel))
        })
    };
    let times: Vec<Timestamp> = readings(recs)
        .filter(|o| o.param == Some(Param::SbpArt))
        .map(|o| o.corrected_time)
        .collect();
    for at in times {
        let (Some(si), Some(di)) = (find(recs, Param::SbpArt, at), find(recs, Param::DbpArt, at))
        else {
            continue;
        };
        let mi = find(recs, Param::MapArt, at);
        let (Some(sbp), Some(dbp)) = (
            reading(recs, si).and_then(Observation::numeric),
            reading(recs, di).and_then(Observation::numeric),
        ) else {
            continue;
        };
        let map = mi
            .and_then(|i| reading(recs, i))
            .and_then(Observation::numeric);
        let pp = sbp - dbp;
        let mut artifact = (sbp > a.sbp_high && pp < a.pp_min_high)
            || (sbp > a.sbp_mid && sbp <= a.sbp_high && pp < a.pp_min_mid)
            || (sbp >= a.sbp_low && sbp <= a.sbp_mid && pp < a.pp_min_low)
            || (sbp < a.sbp_low && pp < a.pp_min_below_low)
            || sbp <= a.sbp_or_dbp_at_most
            || dbp <= a.sbp_or_dbp_at_most;
        if let Some(m) = map {
            artifact |= (sbp == dbp && dbp == m) || m < a.map_below || m >= a.map_at_least;
        }
        if artifact {
            for i in [Some(si), Some(di), mi].into_iter().flatten() {
                if let Some(o) = reading_mut(recs, i) {
                    flag_artifact(o);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
