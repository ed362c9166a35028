//! From a parsed [`Message`] to the plain structs the normalizer consumes: observation reports
//! (ORU^R01 device and lab results, ORU^R42 infusion events) and ADT census events.
//!
//! Text borrows the message (`Cow::Borrowed`) unless an escape had to be resolved, so decoding a
//! device report allocates only its row vectors. It keeps codes and units as sent: mapping them
//! to parameters is the normalizer's job. Z-segments and unknown segments are skipped.

use std::borrow::Cow;

use thiserror::Error;

use super::parse::{find_byte, first_rep_components, Delimiters, Field, Message, Segment};
use super::time::parse_ts;
use crate::model::Timestamp;
use crate::normalize::number::{parse_u32, trim};

type Text<'m> = Cow<'m, str>;

fn own(t: Text<'_>) -> Text<'static> {
    Cow::Owned(t.into_owned())
}

fn own_opt(t: Option<Text<'_>>) -> Option<Text<'static>> {
    t.map(own)
}

/// What the decoder needs from the site.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Minutes east of UTC assumed for timestamps without a zone.
    pub default_offset_min: i32,
}

/// Why a parsed message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// A message type vigil does not consume (answered AR by the MLLP layer).
    #[error("unsupported message type {message_type:?}")]
    Unsupported { message_type: String },
    /// A segment or field the message type requires is absent.
    #[error("missing {what} in {position}")]
    Missing {
        what: &'static str,
        position: String,
    },
}

/// A decoded message.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded<'m> {
    Observations(ObservationReport<'m>),
    Adt(AdtEvent<'m>),
}

impl Decoded<'_> {
    /// Detaches from the message buffer (for sending across tasks).
    pub fn into_owned(self) -> Decoded<'static> {
        match self {
            Decoded::Observations(r) => Decoded::Observations(r.into_owned()),
            Decoded::Adt(a) => Decoded::Adt(a.into_owned()),
        }
    }
}

/// A CE/CWE code triple: `code^text^system`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodedValue<'m> {
    pub code: Text<'m>,
    pub text: Text<'m>,
    pub system: Text<'m>,
}

impl CodedValue<'_> {
    pub fn into_owned(self) -> CodedValue<'static> {
        CodedValue {
            code: own(self.code),
            text: own(self.text),
            system: own(self.system),
        }
    }
}

/// One PID-3 (CX) identifier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatientIdentifier<'m> {
    /// CX.1.
    pub id: Text<'m>,
    /// CX.4 namespace, or its universal id when the namespace is empty.
    pub authority: Text<'m>,
    /// CX.5, e.g. `MR`, `PI`.
    pub id_type: Text<'m>,
}

impl PatientIdentifier<'_> {
    pub fn into_owned(self) -> PatientIdentifier<'static> {
        PatientIdentifier {
            id: own(self.id),
            authority: own(self.authority),
            id_type: own(self.id_type),
        }
    }
}

/// Who the message is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatientIds<'m> {
    /// PID-3 repetitions (PID-2 when PID-3 is empty).
    pub ids: Vec<PatientIdentifier<'m>>,
    /// PV1-19.1.
    pub visit_number: Option<Text<'m>>,
}

impl PatientIds<'_> {
    pub fn into_owned(self) -> PatientIds<'static> {
        PatientIds {
            ids: self
                .ids
                .into_iter()
                .map(PatientIdentifier::into_owned)
                .collect(),
            visit_number: own_opt(self.visit_number),
        }
    }
}

/// A PL location: `point_of_care^room^bed^facility`; empty strings where absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location<'m> {
    pub unit: Text<'m>,
    pub room: Text<'m>,
    pub bed: Text<'m>,
    pub facility: Text<'m>,
}

impl Location<'_> {
    pub fn is_empty(&self) -> bool {
        self.unit.is_empty() && self.room.is_empty() && self.bed.is_empty()
    }
    pub fn into_owned(self) -> Location<'static> {
        Location {
            unit: own(self.unit),
            room: own(self.room),
            bed: own(self.bed),
            facility: own(self.facility),
        }
    }
}

/// ORU^R01 / ORU^R42: observations grouped under their OBR. Rows are [`ObxRow`]s (every field,
/// escapes resolved) or, for the normalizer's fast path, [`ObxFields`] (see [`decode_fields`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ObservationReport<'m, R = ObxRow<'m>> {
    pub control_id: Text<'m>,
    /// MSH-9.2: `R01` or `R42`.
    pub trigger: Text<'m>,
    /// MSH-3.1 (MSH-3.2 when .1 is empty).
    pub sending_app: Text<'m>,
    /// MSH-4.1.
    pub sending_facility: Text<'m>,
    /// MSH-7.
    pub message_time: Option<Timestamp>,
    pub patient: PatientIds<'m>,
    /// PV1-3.
    pub location: Location<'m>,
    pub groups: Vec<ObsGroup<'m, R>>,
}

impl ObservationReport<'_> {
    /// Every OBX row in message order.
    pub fn rows(&self) -> impl Iterator<Item = &ObxRow<'_>> {
        self.groups.iter().flat_map(|g| g.rows.iter())
    }
    pub fn into_owned(self) -> ObservationReport<'static> {
        ObservationReport {
            control_id: own(self.control_id),
            trigger: own(self.trigger),
            sending_app: own(self.sending_app),
            sending_facility: own(self.sending_facility),
            message_time: self.message_time,
            patient: self.patient.into_owned(),
            location: self.location.into_owned(),
            groups: self.groups.into_iter().map(ObsGroup::into_owned).collect(),
        }
    }
}

/// One OBR and the OBX rows after it. OBX rows before any OBR form a group with empty OBR fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObsGroup<'m, R = ObxRow<'m>> {
    /// OBR-2.1.
    pub placer_id: Text<'m>,
    /// OBR-3.1 (a device's EUI-64 in PCD-01).
    pub filler_id: Text<'m>,
    /// OBR-4.
    pub device_code: CodedValue<'m>,
    /// OBR-7.
    pub obs_time: Option<Timestamp>,
    pub rows: Vec<R>,
}

impl ObsGroup<'_> {
    pub fn into_owned(self) -> ObsGroup<'static> {
        ObsGroup {
            placer_id: own(self.placer_id),
            filler_id: own(self.filler_id),
            device_code: self.device_code.into_owned(),
            obs_time: self.obs_time,
            rows: self.rows.into_iter().map(ObxRow::into_owned).collect(),
        }
    }
}

/// One OBX, fields as sent (escapes resolved).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObxRow<'m> {
    /// 0-based segment position in the message, for error reports and dead letters.
    pub segment: usize,
    /// OBX-1.
    pub set_id: Text<'m>,
    /// OBX-2: `NM`, `ST`, `CWE`, `NA`/`MA` (waveforms), …; empty on PCD-01 device rows.
    pub value_type: Text<'m>,
    /// OBX-3.1, e.g. `150456` or `2524-7`.
    pub code: Text<'m>,
    /// OBX-3.2, e.g. `MDC_PULS_OXIM_SAT_O2`.
    pub refid: Text<'m>,
    /// OBX-3.3, e.g. `MDC`, `LN`.
    pub system: Text<'m>,
    /// OBX-4, e.g. `1.3.1.1`.
    pub sub_id: Text<'m>,
    /// OBX-5, first repetition (components kept, joined by the message's separator).
    pub value: Text<'m>,
    /// OBX-5 repetitions after the first (empty when it does not repeat); see [`Self::values`].
    pub more_values: Vec<Text<'m>>,
    /// OBX-6.1, .2, .3.
    pub unit_code: Text<'m>,
    pub unit_refid: Text<'m>,
    pub unit_system: Text<'m>,
    /// The UCUM unit: OBX-6.1 when OBX-6.3 is `UCUM`, else OBX-6.4 when OBX-6.6 is `UCUM`.
    pub unit_ucum: Option<Text<'m>>,
    /// OBX-7.
    pub ref_range: Text<'m>,
    /// OBX-8 (all repetitions, raw separators kept, e.g. `L~PM~SP`).
    pub abnormal: Text<'m>,
    /// OBX-11: `X` device rows, `R`/`F` results.
    pub status: Text<'m>,
    /// OBX-14.
    pub time: Option<Timestamp>,
    /// OBX-18.1 (EUI-64 or device id).
    pub equipment_id: Text<'m>,
    /// OBX-18.2.
    pub equipment_name: Text<'m>,
}

impl<'m> ObxRow<'m> {
    /// Every OBX-5 repetition.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.value.as_ref()).chain(self.more_values.iter().map(|v| v.as_ref()))
    }
    /// PCD-01 containment rows (MDS/VMD/channel): status `X` and no value.
    pub fn is_device_row(&self) -> bool {
        self.status.as_ref() == "X" && self.value.is_empty()
    }
    /// Waveform rows (`NA`, `MA`).
    pub fn is_waveform(&self) -> bool {
        matches!(self.value_type.as_ref(), "NA" | "MA")
    }
    pub fn into_owned(self) -> ObxRow<'static> {
        ObxRow {
            segment: self.segment,
            set_id: own(self.set_id),
            value_type: own(self.value_type),
            code: own(self.code),
            refid: own(self.refid),
            system: own(self.system),
            sub_id: own(self.sub_id),
            value: own(self.value),
            more_values: self.more_values.into_iter().map(own).collect(),
            unit_code: own(self.unit_code),
            unit_refid: own(self.unit_refid),
            unit_system: own(self.unit_system),
            unit_ucum: own_opt(self.unit_ucum),
            ref_range: own(self.ref_range),
            abnormal: own(self.abnormal),
            status: own(self.status),
            time: self.time,
            equipment_id: own(self.equipment_id),
            equipment_name: own(self.equipment_name),
        }
    }
}

/// The OBX fields normalization reads, borrowed: from the message when the segment holds no
/// escape (see [`decode_fields`]), else from a decoded [`ObxRow`] ([`ObxRow::fields`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ObxFields<'a> {
    /// A PCD-01 containment row ([`ObxRow::is_device_row`]): only `code` and `sub_id` are read.
    pub device_row: bool,
    /// OBX-2.
    pub value_type: &'a str,
    /// OBX-3.1, .2, .3.
    pub code: &'a str,
    /// `code` (trimmed) as a number, as MDC codes are: read once here for every reader.
    pub code_num: Option<u32>,
    pub refid: &'a str,
    pub system: &'a str,
    /// OBX-4.
    pub sub_id: &'a str,
    /// OBX-5, first repetition.
    pub value: &'a str,
    /// OBX-6.1, .2, .3 and the UCUM unit (as [`ObxRow::unit_ucum`]).
    pub unit_code: &'a str,
    pub unit_refid: &'a str,
    pub unit_system: &'a str,
    pub unit_ucum: Option<&'a str>,
    /// OBX-14.
    pub time: Option<Timestamp>,
    /// OBX-18.1.
    pub equipment_id: &'a str,
}

impl ObxFields<'_> {
    /// Waveform rows (`NA`, `MA`).
    pub fn is_waveform(&self) -> bool {
        matches!(self.value_type, "NA" | "MA")
    }
}

impl ObxRow<'_> {
    /// The fields normalization reads, borrowed from this row.
    pub fn fields(&self) -> ObxFields<'_> {
        ObxFields {
            device_row: self.is_device_row(),
            value_type: &self.value_type,
            code: &self.code,
            code_num: code_number(&self.code),
            refid: &self.refid,
            system: &self.system,
            sub_id: &self.sub_id,
            value: &self.value,
            unit_code: &self.unit_code,
            unit_refid: &self.unit_refid,
            unit_system: &self.unit_system,
            unit_ucum: self.unit_ucum.as_deref(),
            time: self.time,
            equipment_id: &self.equipment_id,
        }
    }
}

impl ObservationReport<'_> {
    /// The same report with [`ObxFields`] rows borrowed from this one.
    pub fn fields_view(&self) -> ObservationReport<'_, ObxFields<'_>> {
        fn br<'x>(t: &'x Text<'_>) -> Text<'x> {
            Cow::Borrowed(t.as_ref())
        }
        fn loc<'x>(l: &'x Location<'_>) -> Location<'x> {
            Location {
                unit: br(&l.unit),
                room: br(&l.room),
                bed: br(&l.bed),
                facility: br(&l.facility),
            }
        }
        ObservationReport {
            control_id: br(&self.control_id),
            trigger: br(&self.trigger),
            sending_app: br(&self.sending_app),
            sending_facility: br(&self.sending_facility),
            message_time: self.message_time,
            patient: PatientIds {
                ids: self
                    .patient
                    .ids
                    .iter()
                    .map(|i| PatientIdentifier {
                        id: br(&i.id),
                        authority: br(&i.authority),
                        id_type: br(&i.id_type),
                    })
                    .collect(),
                visit_number: self.patient.visit_number.as_ref().map(br),
            },
            location: loc(&self.location),
            groups: self
                .groups
                .iter()
                .map(|g| ObsGroup {
                    placer_id: br(&g.placer_id),
                    filler_id: br(&g.filler_id),
                    device_code: CodedValue {
                        code: br(&g.device_code.code),
                        text: br(&g.device_code.text),
                        system: br(&g.device_code.system),
                    },
                    obs_time: g.obs_time,
                    rows: g.rows.iter().map(ObxRow::fields).collect(),
                })
                .collect(),
        }
    }
}

/// An ADT census event.
#[derive(Clone, Debug, PartialEq)]
pub struct AdtEvent<'m> {
    pub control_id: Text<'m>,
    /// `A01`, `A02`, …: MSH-9.2, or EVN-1 when MSH-9.2 is empty.
    pub trigger: Text<'m>,
    /// EVN-2, else MSH-7.
    pub event_time: Option<Timestamp>,
    pub message_time: Option<Timestamp>,
    pub patient: PatientIds<'m>,
    /// PV1-3.
    pub location: Location<'m>,
    /// PV1-6.
    pub prior_location: Location<'m>,
    /// MRG-1 repetitions (A40 merge, A13/A11 corrections when sent).
    pub merge_prior_ids: Vec<PatientIdentifier<'m>>,
    /// MRG-5.1.
    pub merge_prior_visit: Option<Text<'m>>,
    /// From an OBX body weight row (LOINC 29463-7 / 3141-9, MDC 68063 / 188736), in kg.
    pub weight_kg: Option<f64>,
    /// From an OBX body height row (LOINC 8302-2 / 3137-7, MDC 68060), in cm.
    pub height_cm: Option<f64>,
}

impl AdtEvent<'_> {
    pub fn into_owned(self) -> AdtEvent<'static> {
        AdtEvent {
            control_id: own(self.control_id),
            trigger: own(self.trigger),
            event_time: self.event_time,
            message_time: self.message_time,
            patient: self.patient.into_owned(),
            location: self.location.into_owned(),
            prior_location: self.prior_location.into_owned(),
            merge_prior_ids: self
                .merge_prior_ids
                .into_iter()
                .map(PatientIdentifier::into_owned)
                .collect(),
            merge_prior_visit: own_opt(self.merge_prior_visit),
            weight_kg: self.weight_kg,
            height_cm: self.height_cm,
        }
    }
}

const ADT_TRIGGERS: [&str; 9] = [
    "A01", "A02", "A03", "A04", "A08", "A11", "A12", "A13", "A40",
];

/// Decodes the message types vigil consumes; anything else is [`DecodeError::Unsupported`].
pub fn decode<'m>(msg: &'m Message<'_>, opts: &DecodeOptions) -> Result<Decoded<'m>, DecodeError> {
    let (code, trigger, _) = msg.message_type();
    match (code, trigger) {
        ("ORU", "R01" | "R42") => decode_oru(msg, opts).map(Decoded::Observations),
        ("ADT", _) => {
            let trig = if trigger.is_empty() {
                msg.segment("EVN").map_or("", |e| e.field(1).as_str())
            } else {
                trigger
            };
            if ADT_TRIGGERS.contains(&trig) {
                decode_adt(msg, trig, opts).map(Decoded::Adt)
            } else {
                Err(unsupported(msg))
            }
        }
        _ => Err(unsupported(msg)),
    }
}

fn unsupported(msg: &Message<'_>) -> DecodeError {
    DecodeError::Unsupported {
        message_type: msg.msh().field(9).as_str().to_owned(),
    }
}

fn ts(f: Field<'_>, opts: &DecodeOptions) -> Option<Timestamp> {
    let s = f.component(1).as_str();
    if s.is_empty() {
        return None;
    }
    parse_ts(s, opts.default_offset_min).ok().map(|t| t.ts)
}

fn comp<'m>(f: Field<'m>, n: usize) -> Text<'m> {
    f.component(n).decoded()
}

fn non_empty(t: Text<'_>) -> Option<Text<'_>> {
    if t.is_empty() {
        None
    } else {
        Some(t)
    }
}

/// Components 1–3, the field split once. (Struct fields are evaluated in the order written.)
fn coded(f: Field<'_>) -> CodedValue<'_> {
    let mut c = f.components();
    let mut next = || c.next().map_or(Cow::Borrowed(""), |c| c.decoded());
    CodedValue {
        code: next(),
        text: next(),
        system: next(),
    }
}

/// PL components 1–4, first subcomponent of each, the field split once.
fn location(f: Field<'_>) -> Location<'_> {
    let mut c = f.components();
    let mut next = || {
        c.next()
            .map_or(Cow::Borrowed(""), |c| c.subcomponent(1).decoded())
    };
    Location {
        unit: next(),
        room: next(),
        bed: next(),
        facility: next(),
    }
}

/// CX repetitions with an id: each repetition split into components once.
fn identifiers(f: Field<'_>) -> Vec<PatientIdentifier<'_>> {
    f.repetitions()
        .filter_map(|r| {
            let mut c = r.components();
            let id = c.next().filter(|id| !id.is_empty())?;
            let auth = c.nth(2);
            let id_type = c.next();
            let authority = match auth.map(|a| a.subcomponent(1).decoded()) {
                Some(a) if !a.is_empty() => a,
                _ => auth.map_or(Cow::Borrowed(""), |a| a.subcomponent(2).decoded()),
            };
            Some(PatientIdentifier {
                id: id.decoded(),
                authority,
                id_type: id_type.map_or(Cow::Borrowed(""), |t| t.decoded()),
            })
        })
        .collect()
}

fn patient_ids<'m>(pid: Option<Segment<'m>>, pv1: Option<Segment<'m>>) -> PatientIds<'m> {
    let ids = match pid {
        Some(p) => {
            let ids = identifiers(p.field(3));
            if ids.is_empty() {
                identifiers(p.field(2))
            } else {
                ids
            }
        }
        None => Vec::new(),
    };
    PatientIds {
        ids,
        visit_number: pv1.and_then(|v| non_empty(comp(v.field(19), 1))),
    }
}

/// Text of a piece: borrowed as is when its segment holds no escape character (the common
/// case, checked once per segment instead of once per piece).
fn piece<'m>(raw: &'m str, plain: bool, decode: impl FnOnce() -> Text<'m>) -> Text<'m> {
    if plain {
        Cow::Borrowed(raw)
    } else {
        decode()
    }
}

/// Components 1..=N of a field's first repetition, split in one pass.
fn components<'m, const N: usize>(f: Field<'m>, plain: bool) -> [Text<'m>; N] {
    let mut it = f.components();
    std::array::from_fn(|_| match it.next() {
        Some(c) => piece(c.as_str(), plain, || c.decoded()),
        None => Cow::Borrowed(""),
    })
}

/// Timestamps repeat within a message (OBX-14 is often the same for every row, or alternates
/// between a few values): the last few parsed are kept and reused when the same text comes again.
#[derive(Default)]
struct TsCache<'m> {
    last: [Option<(&'m str, Option<Timestamp>)>; 4],
    next: usize,
}

impl<'m> TsCache<'m> {
    fn get(&mut self, f: Field<'m>, opts: &DecodeOptions) -> Option<Timestamp> {
        self.text(f.component(1).as_str(), opts)
    }

    #[inline]
    fn text(&mut self, s: &'m str, opts: &DecodeOptions) -> Option<Timestamp> {
        if s.is_empty() {
            return None;
        }
        for (prev, t) in self.last.iter().flatten() {
            if *prev == s {
                return *t;
            }
        }
        let t = parse_ts(s, opts.default_offset_min).ok().map(|t| t.ts);
        if let Some(slot) = self.last.get_mut(self.next % 4) {
            *slot = Some((s, t));
        }
        self.next = self.next.wrapping_add(1);
        t
    }
}

/// A code's number (MDC codes are numbers), read once for every reader of the row.
fn code_number(code: &str) -> Option<u32> {
    parse_u32(trim(code))
}

/// The text before the first `sep`.
#[inline]
fn first_piece(s: &str, sep: u8) -> &str {
    match find_byte(sep, s.as_bytes()) {
        Some(i) => s.get(..i).unwrap_or(""),
        None => s,
    }
}

/// [`ObxFields`] straight from a segment, borrowing the message; `None` when the segment holds
/// an escape character (the caller then decodes an [`ObxRow`], which resolves escapes).
/// Containment rows get only their code and sub-id: nothing else of them is read.
fn obx_fields<'m>(
    s: Segment<'m>,
    plain: bool,
    opts: &DecodeOptions,
    times: &mut TsCache<'m>,
) -> Option<ObxFields<'m>> {
    let d = s.delimiters();
    if !plain && find_byte(d.escape, s.as_str().as_bytes()).is_some() {
        return None;
    }
    let (c, r) = (d.component, d.repetition);
    let [code, refid, system] = first_rep_components::<3>(s.field(3).as_str(), c, r);
    let sub_id = s.field(4).as_str();
    let value = first_piece(s.field(5).as_str(), d.repetition);
    if value.is_empty() && s.field(11).as_str() == "X" {
        return Some(ObxFields {
            device_row: true,
            code,
            code_num: code_number(code),
            sub_id,
            ..ObxFields::default()
        });
    }
    let [unit_code, unit_refid, unit_system, unit_alt, _, unit_alt_system] =
        first_rep_components::<6>(s.field(6).as_str(), c, r);
    let unit_ucum = if unit_system.eq_ignore_ascii_case("UCUM") {
        Some(unit_code).filter(|u| !u.is_empty())
    } else if unit_alt_system.eq_ignore_ascii_case("UCUM") {
        Some(unit_alt).filter(|u| !u.is_empty())
    } else {
        None
    };
    let [f14] = first_rep_components::<1>(s.field(14).as_str(), c, r);
    let time = times.text(f14, opts);
    let [equipment_id] = first_rep_components::<1>(s.field(18).as_str(), c, r);
    Some(ObxFields {
        device_row: false,
        value_type: s.field(2).as_str(),
        code,
        code_num: code_number(code),
        refid,
        system,
        sub_id,
        value,
        unit_code,
        unit_refid,
        unit_system,
        unit_ucum,
        time,
        equipment_id,
    })
}

/// Decodes an ORU^R01 / ORU^R42 into [`ObxFields`] rows that borrow the message: the
/// normalizer's path, which reads only what it maps. `Ok(None)` when an OBX holds an escape
/// (use [`decode`] then) or the message is not an observation report.
pub fn decode_fields<'m>(
    msg: &'m Message<'_>,
    opts: &DecodeOptions,
) -> Result<Option<ObservationReport<'m, ObxFields<'m>>>, DecodeError> {
    let (code, trigger, _) = msg.message_type();
    decode_fields_with(msg, (code, trigger), opts, &mut RowBuffers::default())
}

/// [`decode_fields`] for a caller that has read MSH-9 already (`(code, trigger)`), with row
/// vectors taken from `spare` (give them back with [`RowBuffers::give_back`]).
pub fn decode_fields_with<'m>(
    msg: &'m Message<'_>,
    (code, trigger): (&str, &'m str),
    opts: &DecodeOptions,
    spare: &mut RowBuffers,
) -> Result<Option<ObservationReport<'m, ObxFields<'m>>>, DecodeError> {
    if !matches!((code, trigger), ("ORU", "R01" | "R42")) {
        return Ok(None);
    }
    // One search over the message instead of one per OBX: the escape character normally
    // appears once, in MSH-2's encoding characters, and nowhere else.
    let plain = msg.escapes_only_in_msh2();
    decode_oru_with(
        msg,
        opts,
        plain.then_some(trigger),
        |s, o, t| obx_fields(s, plain, o, t),
        || spare.take(),
    )
}

/// Row vectors kept from one message to the next, so a report's rows cost no allocation.
#[derive(Debug, Default)]
pub struct RowBuffers(Vec<Vec<ObxFields<'static>>>);

impl RowBuffers {
    /// Vectors kept at most, and the largest capacity kept: a burst of huge messages does not
    /// pin its memory.
    const KEEP: usize = 8;
    const KEEP_ROWS: usize = 256;

    fn take<'m>(&mut self) -> Vec<ObxFields<'m>> {
        match self.0.pop() {
            Some(v) => relabel(v),
            None => Vec::with_capacity(24),
        }
    }

    /// Keeps the row vectors of a report that is done with.
    pub fn give_back(&mut self, report: ObservationReport<'_, ObxFields<'_>>) {
        for g in report.groups {
            if self.0.len() < Self::KEEP && g.rows.capacity() <= Self::KEEP_ROWS {
                self.0.push(relabel(g.rows));
            }
        }
    }
}

/// The same allocation, emptied, under another lifetime: nothing borrowed crosses over. (A
/// vector's own iterator collected into elements of the same layout is collected in place.)
fn relabel<'b>(mut v: Vec<ObxFields<'_>>) -> Vec<ObxFields<'b>> {
    v.clear();
    v.into_iter().map(|_| ObxFields::default()).collect()
}

fn obx_row<'m>(s: Segment<'m>, opts: &DecodeOptions, times: &mut TsCache<'m>) -> ObxRow<'m> {
    let d = s.delimiters();
    let plain = find_byte(d.escape, s.as_str().as_bytes()).is_none();
    let field = |n: usize| {
        let f = s.field(n);
        piece(f.as_str(), plain, || f.decoded())
    };
    let [code, refid, system] = components::<3>(s.field(3), plain);
    let f5 = s.field(5);
    let mut reps = f5.repetitions();
    let value = reps.next().map_or(Cow::Borrowed(""), |r| {
        piece(r.as_str(), plain, || r.decoded())
    });
    let more_values: Vec<Text<'m>> = reps
        .map(|r| piece(r.as_str(), plain, || r.decoded()))
        .collect();
    let f6 = s.field(6);
    let [unit_code, unit_refid, unit_system, unit_alt, _, unit_alt_system] =
        components::<6>(f6, plain);
    let unit_ucum = if unit_system.eq_ignore_ascii_case("UCUM") {
        non_empty(unit_code.clone())
    } else if unit_alt_system.eq_ignore_ascii_case("UCUM") {
        non_empty(unit_alt)
    } else {
        None
    };
    let [equipment_id, equipment_name] = components::<2>(s.field(18).repetition(1), plain);
    ObxRow {
        segment: s.position(),
        set_id: field(1),
        value_type: field(2),
        code,
        refid,
        system,
        sub_id: field(4),
        value,
        more_values,
        unit_code,
        unit_refid,
        unit_system,
        unit_ucum,
        ref_range: field(7),
        abnormal: field(8),
        status: field(11),
        time: times.get(s.field(14), opts),
        equipment_id,
        equipment_name,
    }
}

fn header_app(f: Field<'_>) -> Text<'_> {
    match comp(f, 1) {
        a if a.is_empty() => comp(f, 2),
        a => a,
    }
}

fn decode_oru<'m>(
    msg: &'m Message<'_>,
    opts: &DecodeOptions,
) -> Result<ObservationReport<'m>, DecodeError> {
    let full = |s: Segment<'m>, o: &DecodeOptions, t: &mut TsCache<'m>| Some(obx_row(s, o, t));
    decode_oru_with(msg, opts, None, full, || Vec::with_capacity(24))?.ok_or_else(|| {
        DecodeError::Missing {
            what: "OBX segment",
            position: format!("{} message", msg.msh().field(9).as_str()),
        }
    })
}

/// The ORU walk shared by [`decode`] and [`decode_fields`]; `Ok(None)` when `row` gives up.
/// `plain_trigger`: the message holds no escape, so header fields are borrowed as they stand;
/// its MSH-9 trigger as the caller read it.
fn decode_oru_with<'m, R: Default>(
    msg: &'m Message<'_>,
    opts: &DecodeOptions,
    plain_trigger: Option<&'m str>,
    mut row: impl FnMut(Segment<'m>, &DecodeOptions, &mut TsCache<'m>) -> Option<R>,
    mut new_rows: impl FnMut() -> Vec<R>,
) -> Result<Option<ObservationReport<'m, R>>, DecodeError> {
    let msh = msg.msh();
    let d = msg.delimiters();
    let mut pid = None;
    let mut pv1 = None;
    let mut groups: Vec<ObsGroup<'m, R>> = Vec::new();
    let mut n_obx = 0usize;
    let mut times = TsCache::default();
    for s in msg.segments() {
        match s.name() {
            "PID" if pid.is_none() => pid = Some(s),
            "PV1" if pv1.is_none() => pv1 = Some(s),
            "OBR" if plain_trigger.is_some() => {
                let [placer] = plain_components(s.field(2), &d);
                let [filler] = plain_components(s.field(3), &d);
                let [code, text, system] = plain_components(s.field(4), &d);
                let [time] = plain_components(s.field(7), &d);
                groups.push(ObsGroup {
                    placer_id: Cow::Borrowed(placer),
                    filler_id: Cow::Borrowed(filler),
                    device_code: CodedValue {
                        code: Cow::Borrowed(code),
                        text: Cow::Borrowed(text),
                        system: Cow::Borrowed(system),
                    },
                    obs_time: times.text(time, opts),
                    rows: new_rows(),
                });
            }
            "OBR" => groups.push(ObsGroup {
                placer_id: comp(s.field(2), 1),
                filler_id: comp(s.field(3), 1),
                device_code: coded(s.field(4)),
                obs_time: times.get(s.field(7), opts),
                rows: new_rows(),
            }),
            "OBX" => {
                n_obx += 1;
                let Some(row) = row(s, opts, &mut times) else {
                    return Ok(None);
                };
                match groups.last_mut() {
                    Some(g) => g.rows.push(row),
                    None => {
                        let mut rows = new_rows();
                        rows.push(row);
                        groups.push(ObsGroup {
                            rows,
                            ..ObsGroup::default()
                        });
                    }
                }
            }
            _ => {}
        }
    }
    if n_obx == 0 {
        return Err(DecodeError::Missing {
            what: "OBX segment",
            position: format!("{} message", msh.field(9).as_str()),
        });
    }
    if let Some(trigger) = plain_trigger {
        let [time] = plain_components(msh.field(7), &d);
        return Ok(Some(ObservationReport {
            control_id: Cow::Borrowed(msh.field(10).as_str()),
            trigger: Cow::Borrowed(trigger),
            sending_app: plain_header_app(msh.field(3), &d),
            sending_facility: plain_header_app(msh.field(4), &d),
            message_time: times.text(time, opts),
            patient: plain_patient_ids(pid, pv1, &d),
            location: pv1.map_or_else(Location::default, |v| plain_location(v.field(3), &d)),
            groups,
        }));
    }
    Ok(Some(ObservationReport {
        control_id: msh.field(10).decoded(),
        trigger: comp(msh.field(9), 2),
        sending_app: header_app(msh.field(3)),
        sending_facility: header_app(msh.field(4)),
        message_time: ts(msh.field(7), opts),
        patient: patient_ids(pid, pv1),
        location: pv1.map_or_else(Location::default, |v| location(v.field(3))),
        groups,
    }))
}

// Header fields of a message that holds no escape: borrowed as they stand, each field split
// once. They read exactly as `comp`, `coded`, `header_app`, `location` and `patient_ids` do
// (`plain_reads_match_the_decoded_ones`).

/// Components 1..=N of a field's first repetition.
fn plain_components<'m, const N: usize>(f: Field<'m>, d: &Delimiters) -> [&'m str; N] {
    first_rep_components::<N>(f.as_str(), d.component, d.repetition)
}

fn plain_header_app<'m>(f: Field<'m>, d: &Delimiters) -> Text<'m> {
    let [namespace, universal] = plain_components(f, d);
    Cow::Borrowed(if namespace.is_empty() {
        universal
    } else {
        namespace
    })
}

fn plain_location<'m>(f: Field<'m>, d: &Delimiters) -> Location<'m> {
    let sub = |c: &'m str| Cow::Borrowed(first_piece(c, d.subcomponent));
    let [unit, room, bed, facility] = plain_components(f, d);
    Location {
        unit: sub(unit),
        room: sub(room),
        bed: sub(bed),
        facility: sub(facility),
    }
}

fn plain_identifiers<'m>(f: Field<'m>, d: &Delimiters) -> Vec<PatientIdentifier<'m>> {
    f.as_str()
        .split(char::from(d.repetition))
        .filter_map(|rep| {
            let [id, _, _, auth, id_type] =
                first_rep_components::<5>(rep, d.component, d.repetition);
            if id.is_empty() {
                return None;
            }
            let [namespace, universal] =
                first_rep_components::<2>(auth, d.subcomponent, d.repetition);
            Some(PatientIdentifier {
                id: Cow::Borrowed(id),
                authority: Cow::Borrowed(if namespace.is_empty() {
                    universal
                } else {
                    namespace
                }),
                id_type: Cow::Borrowed(id_type),
            })
        })
        .collect()
}

fn plain_patient_ids<'m>(
    pid: Option<Segment<'m>>,
    pv1: Option<Segment<'m>>,
    d: &Delimiters,
) -> PatientIds<'m> {
    let ids = match pid {
        Some(p) => {
            let ids = plain_identifiers(p.field(3), d);
            if ids.is_empty() {
                plain_identifiers(p.field(2), d)
            } else {
                ids
            }
        }
        None => Vec::new(),
    };
    let visit = pv1.map(|v| plain_components::<1>(v.field(19), d)[0]);
    PatientIds {
        ids,
        visit_number: visit.filter(|v| !v.is_empty()).map(Cow::Borrowed),
    }
}

fn decode_adt<'m>(
    msg: &'m Message<'_>,
    trigger: &'m str,
    opts: &DecodeOptions,
) -> Result<AdtEvent<'m>, DecodeError> {
    let msh = msg.msh();
    let position = || format!("ADT^{trigger} message");
    let pid = msg.segment("PID").ok_or_else(|| DecodeError::Missing {
        what: "PID segment",
        position: position(),
    })?;
    let pv1 = msg.segment("PV1");
    let mrg = msg.segment("MRG");
    if trigger == "A40" && mrg.is_none() {
        return Err(DecodeError::Missing {
            what: "MRG segment",
            position: position(),
        });
    }
    let message_time = ts(msh.field(7), opts);
    let event_time = msg
        .segment("EVN")
        .and_then(|e| ts(e.field(2), opts))
        .or(message_time);
    let (mut weight_kg, mut height_cm) = (None, None);
    for s in msg.segments_named("OBX") {
        match body_measure(s) {
            Some(Measure::WeightKg(v)) => weight_kg = Some(v),
            Some(Measure::HeightCm(v)) => height_cm = Some(v),
            None => {}
        }
    }
    Ok(AdtEvent {
        control_id: msh.field(10).decoded(),
        trigger: Cow::Borrowed(trigger),
        event_time,
        message_time,
        patient: patient_ids(Some(pid), pv1),
        location: pv1.map_or_else(Location::default, |v| location(v.field(3))),
        prior_location: pv1.map_or_else(Location::default, |v| location(v.field(6))),
        merge_prior_ids: mrg.map_or_else(Vec::new, |m| identifiers(m.field(1))),
        merge_prior_visit: mrg.and_then(|m| non_empty(comp(m.field(5), 1))),
        weight_kg,
        height_cm,
    })
}

enum Measure {
    WeightKg(f64),
    HeightCm(f64),
}

const WEIGHT_CODES: [&str; 6] = [
    "29463-7",
    "3141-9",
    "68063",
    "188736",
    "MDC_ATTR_PT_WEIGHT",
    "MDC_MASS_BODY_ACTUAL",
];
const HEIGHT_CODES: [&str; 5] = [
    "8302-2",
    "3137-7",
    "68060",
    "MDC_ATTR_PT_HEIGHT",
    "MDC_LEN_BODY_ACTUAL",
];

/// A body weight or height OBX, converted to kg / cm. Unknown units give nothing rather than a
/// wrong number.
fn body_measure(s: Segment<'_>) -> Option<Measure> {
    let f3 = s.field(3);
    let is = |codes: &[&str]| {
        codes.contains(&f3.component(1).as_str()) || codes.contains(&f3.component(2).as_str())
    };
    let value: f64 = s.field(5).repetition(1).as_str().trim().parse().ok()?;
    if !value.is_finite() || value <= 0.0 {
        return None;
    }
    let f6 = s.field(6);
    let unit = match f6.component(1).as_str() {
        "" => f6.component(4).as_str(),
        u => u,
    }
    .to_ascii_lowercase();
    if is(&WEIGHT_CODES) {
        let factor = match unit.as_str() {
            "" | "kg" | "kilogram" | "kilograms" | "263875" | "mdc_dim_kilo_g" => 1.0,
            "g" | "263872" | "mdc_dim_g" => 0.001,
            "[lb_av]" | "lb" | "lbs" | "[lb_us]" => 0.453_592_37,
            _ => return None,
        };
        return Some(Measure::WeightKg(value * factor));
    }
    if is(&HEIGHT_CODES) {
        let factor = match unit.as_str() {
            "" | "cm" | "263441" | "mdc_dim_centi_m" => 1.0,
            "m" | "263424" | "mdc_dim_x_m" => 100.0,
            "in" | "[in_i]" | "[in_us]" | "inch" | "inches" => 2.54,
            _ => return None,
        };
        return Some(Measure::HeightCm(value * factor));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::hl7::parse;

    const OPTS: DecodeOptions = DecodeOptions {
        default_offset_min: 0,
    };

    fn adt(raw: &str) -> AdtEvent<'static> {
        let m = parse(raw.as_bytes()).unwrap();
        match decode(&m, &OPTS).unwrap() {
            Decoded::Adt(a) => a.into_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn adt_transfer_with_prior_location_weight_height() {
        let a = adt(
            "MSH|^~\\&|ADT|H|||20240101120000||ADT^A02^ADT_A02|C1|P|2.5\r\
EVN|A02|20240101115500+0100\r\
PID|||MRN1^^^HOSP&1.2.3&ISO^MR||Doe^J\r\
PV1||I|ICU^12^B^MAIN||||||||||||||||V77\r\
PV1||I|WRONG\r\
OBX|1|NM|29463-7^Body weight^LN||176.37|[lb_av]^pound^UCUM|||||F\r\
OBX|2|NM|8302-2^Body height^LN||70|in^inch^UCUM|||||F\r",
        );
        assert_eq!(a.trigger, "A02");
        assert_eq!(a.control_id, "C1");
        assert_eq!(a.event_time.unwrap().millis(), 1_704_106_500_000);
        assert_eq!(a.message_time.unwrap().millis(), 1_704_110_400_000);
        assert_eq!(a.patient.ids[0].id, "MRN1");
        assert_eq!(a.patient.ids[0].authority, "HOSP");
        assert_eq!(a.patient.visit_number.as_deref(), Some("V77"));
        assert_eq!(
            (
                &*a.location.unit,
                &*a.location.room,
                &*a.location.bed,
                &*a.location.facility
            ),
            ("ICU", "12", "B", "MAIN")
        );
        assert!(a.prior_location.is_empty());
        assert!((a.weight_kg.unwrap() - 80.0).abs() < 0.01);
        assert!((a.height_cm.unwrap() - 177.8).abs() < 1e-9);
    }

    #[test]
    fn adt_weight_units_and_unknown_units() {
        let base = "MSH|^~\\&|A|H|||20240101||ADT^A08|C|P|2.5\rPID|||M1\r";
        let w = |obx: &str| adt(&format!("{base}{obx}")).weight_kg;
        assert_eq!(w("OBX|1|NM|29463-7^^LN||82|kg"), Some(82.0));
        assert_eq!(
            w("OBX|1|NM|68063^MDC_ATTR_PT_WEIGHT^MDC||82.0|263875^MDC_DIM_KILO_G^MDC"),
            Some(82.0)
        );
        assert_eq!(w("OBX|1|NM|3141-9^^LN||82000|g"), Some(82.0));
        assert_eq!(w("OBX|1|NM|29463-7^^LN||82|stone"), None);
        assert_eq!(w("OBX|1|NM|29463-7^^LN||heavy|kg"), None);
        assert_eq!(w("OBX|1|NM|29463-7^^LN||-3|kg"), None);
        assert_eq!(w("OBX|1|NM|8867-4^^LN||82|kg"), None);
        let h = adt(&format!("{base}OBX|1|NM|8302-2^^LN||1.8|m")).height_cm;
        assert!((h.unwrap() - 180.0).abs() < 1e-9);
    }

    #[test]
    fn adt_merge_and_trigger_from_evn() {
        let a = adt("MSH|^~\\&|A|H|||20240101||ADT^A40^ADT_A39|C|P|2.5\r\
EVN||20240101\rPID|||NEW1^^^H^MR\rMRG|OLD1^^^H^MR~OLD2^^^H^PI||||V-OLD\r");
        assert_eq!(a.trigger, "A40");
        let old: Vec<_> = a.merge_prior_ids.iter().map(|i| &*i.id).collect();
        assert_eq!(old, ["OLD1", "OLD2"]);
        assert_eq!(a.merge_prior_visit.as_deref(), Some("V-OLD"));
        // MSH-9.2 empty: EVN-1 names the trigger.
        let a = adt("MSH|^~\\&|A|H|||20240101||ADT|C|P|2.3\rEVN|A03|20240101\rPID|||X\r");
        assert_eq!(a.trigger, "A03");
    }

    #[test]
    fn missing_and_unsupported() {
        let e = |raw: &str| {
            let m = parse(raw.as_bytes()).unwrap();
            decode(&m, &OPTS).unwrap_err()
        };
        assert_eq!(
            e("MSH|^~\\&|A|H|||2024||ADT^A01|C|P|2.5\rEVN|A01\rPV1||I|X"),
            DecodeError::Missing {
                what: "PID segment",
                position: "ADT^A01 message".into()
            }
        );
        assert!(matches!(
            e("MSH|^~\\&|A|H|||2024||ADT^A40|C|P|2.5\rPID|||X"),
            DecodeError::Missing {
                what: "MRG segment",
                ..
            }
        ));
        assert_eq!(
            e("MSH|^~\\&|A|H|||2024||ORU^R01|C|P|2.5\rPID|||X\rOBR|1"),
            DecodeError::Missing {
                what: "OBX segment",
                position: "ORU^R01 message".into()
            }
        );
        for t in ["ADT^A31", "ORU^R40", "ORM^O01", "ACK", ""] {
            let got = e(&format!(
                "MSH|^~\\&|A|H|||2024||{t}|C|P|2.5\rPID|||X\rOBX|1"
            ));
            assert_eq!(
                got,
                DecodeError::Unsupported {
                    message_type: t.into()
                }
            );
        }
    }

    #[test]
    fn oru_groups_rows_repeats_and_escapes() {
        let raw = "MSH|^~\\&|^EUI^X|FAC|||20240101120000+0000||ORU^R01|C9|P|2.6\r\
OBX|1|ST|X^^LOCAL||before any OBR\r\
OBR|1||F1^G|69965^MDS^MDC|||20240101115900\r\
OBX|2|NM|150456^SPO2^MDC|1.3.1.1|97~98|%^%^UCUM|90-100|L~PM~SP|||R|||bad-time||||DEV1^Monitor\r\
ZXT|ignored\r\
OBX|3|TX|T^^LN||a\\S\\b\\.br\\c|||||||F\r\
OBR|2||F2|70050^VMD^MDC\r\
OBX|4|NA|131330^ECG^MDC||1^2^3\r";
        let m = parse(raw.as_bytes()).unwrap();
        let Decoded::Observations(r) = decode(&m, &OPTS).unwrap() else {
            panic!()
        };
        assert_eq!(r.sending_app, "EUI");
        assert!(r.patient.ids.is_empty());
        assert!(r.location.is_empty());
        assert_eq!(r.groups.len(), 3);
        assert_eq!(r.groups[0].filler_id, "");
        assert_eq!(r.groups[0].rows[0].value, "before any OBR");
        let g = &r.groups[1];
        assert_eq!((&*g.filler_id, &*g.device_code.text), ("F1", "MDS"));
        assert_eq!(g.obs_time.unwrap().millis(), 1_704_110_340_000);
        let spo2 = &g.rows[0];
        assert_eq!(spo2.values().collect::<Vec<_>>(), ["97", "98"]);
        assert_eq!(spo2.unit_ucum.as_deref(), Some("%"));
        assert_eq!(spo2.abnormal, "L~PM~SP");
        assert_eq!(spo2.time, None);
        assert_eq!(
            (&*spo2.equipment_id, &*spo2.equipment_name),
            ("DEV1", "Monitor")
        );
        assert_eq!(spo2.segment, 3);
        assert!(matches!(spo2.value, Cow::Borrowed(_)));
        let tx = &g.rows[1];
        assert_eq!(tx.value, "a^b\nc");
        assert!(matches!(tx.value, Cow::Owned(_)));
        assert!(r.groups[2].rows[0].is_waveform());
        let owned = Decoded::Observations(r.clone()).into_owned();
        assert_eq!(owned, Decoded::Observations(r));
    }

    #[test]
    fn fields_fast_path_matches_the_full_decode() {
        let raw = include_str!("../../../benches/data/pcd01_20obx.hl7");
        let raw = format!(
            "{raw}\rOBX|21|NM|150456^SPO2^MDC|1.3.1.1|97~98|%^%^ISO+^pct^^UCUM|||||R|||20250301101500||||DEV9^Mon\r\
OBX|22|NA|131330^ECG^MDC|1.2.1.2|1^2^3||||||R\r"
        );
        assert!(assert_fast_matches_full(raw.as_bytes(), "bench"));
        let m = parse(raw.as_bytes()).unwrap();
        let fast = decode_fields(&m, &OPTS)
            .unwrap()
            .expect("no escapes: fast path");
        let rows: Vec<_> = fast.groups.iter().flat_map(|g| &g.rows).collect();
        assert_eq!(rows.iter().filter(|r| r.device_row).count(), 7);
        let spo2 = rows.iter().find(|r| r.equipment_id == "DEV9").unwrap();
        assert_eq!((spo2.value, spo2.unit_ucum), ("97", Some("pct")));
        assert!(rows.last().unwrap().is_waveform());
        // An escape anywhere in an OBX sends the message down the full decode.
        let esc = format!("{raw}OBX|23|ST|X^^L||a\\T\\b\r");
        let m = parse(esc.as_bytes()).unwrap();
        assert_eq!(decode_fields(&m, &OPTS).unwrap(), None);
        // Not an observation report: nothing for the fast path.
        let adt = parse(b"MSH|^~\\&|A|H|||2024||ADT^A01|C|P|2.5\rPID|||X\r").unwrap();
        assert_eq!(decode_fields(&adt, &OPTS).unwrap(), None);
        // An escape outside the OBX segments (here in the patient name) keeps the fast path,
        // and its rows are the same.
        let named = raw.replacen("PID|", "PID|||||O\\T\\Brien|", 1);
        assert_ne!(named, raw, "the bench message has a PID");
        let m = parse(named.as_bytes()).unwrap();
        let again = decode_fields(&m, &OPTS).unwrap().expect("fast path");
        assert_eq!(again.groups, fast.groups);
    }

    /// The fast path against the full decode on one message: header, groups and every row
    /// the normalizer reads.
    fn assert_fast_matches_full(raw: &[u8], name: &str) -> bool {
        let Ok(m) = parse(raw) else {
            return false;
        };
        let Ok(Some(fast)) = decode_fields(&m, &OPTS) else {
            return false;
        };
        let Ok(Decoded::Observations(full)) = decode(&m, &OPTS) else {
            panic!("{name}: the fast path read an ORU the full decode does not");
        };
        let view = full.fields_view();
        assert_eq!(fast.control_id, view.control_id, "{name}");
        assert_eq!(fast.trigger, view.trigger, "{name}");
        assert_eq!(fast.sending_app, view.sending_app, "{name}");
        assert_eq!(fast.sending_facility, view.sending_facility, "{name}");
        assert_eq!(fast.message_time, view.message_time, "{name}");
        assert_eq!(fast.patient, view.patient, "{name}");
        assert_eq!(fast.location, view.location, "{name}");
        assert_eq!(fast.groups.len(), view.groups.len(), "{name}");
        for (a, b) in fast.groups.iter().zip(&view.groups) {
            assert_eq!(a.placer_id, b.placer_id, "{name}");
            assert_eq!(a.filler_id, b.filler_id, "{name}");
            assert_eq!(a.device_code, b.device_code, "{name}");
            assert_eq!(a.obs_time, b.obs_time, "{name}");
            assert_eq!(a.rows.len(), b.rows.len(), "{name}");
            for (x, y) in a.rows.iter().zip(&b.rows) {
                if y.device_row {
                    // Containment rows carry only what the normalizer reads of them.
                    assert!(x.device_row, "{name}");
                    assert_eq!((x.code, x.sub_id), (y.code, y.sub_id), "{name}");
                } else {
                    assert_eq!(x, y, "{name}");
                }
            }
        }
        true
    }

    /// Every message file of the conformance corpus (`tests/data/hl7/`), with its path.
    fn corpus() -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/hl7"
        ))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "hl7") {
                    let raw = std::fs::read(&path).unwrap();
                    files.push((path, raw));
                }
            }
        }
        files
    }

    #[test]
    fn escapes_after_msh2_are_found_as_a_count_finds_them() {
        // The definition: as many escape characters in the message as in MSH-2.
        fn counted(m: &Message<'_>) -> bool {
            let esc = m.delimiters().escape;
            let in_msh2 = m
                .msh()
                .field(2)
                .as_str()
                .bytes()
                .filter(|&b| b == esc)
                .count();
            m.as_str().bytes().filter(|&b| b == esc).count() == in_msh2
        }
        let mut texts: Vec<Vec<u8>> = corpus().into_iter().map(|(_, raw)| raw).collect();
        for t in [
            "MSH|^~\\&",
            "MSH|^~\\&|",
            "MSH|^~\\&|A\\B|",
            "MSH|^~\\&#|A|B|||20250101||ORU^R01|C1|P|2.6\rOBX|1|ST|X||a\\T\\b\r",
            "MSH|^~#&|A|B|||20250101||ORU^R01|C1|P|2.6\rOBX|1|ST|X||a\\b\r",
            "MSH|^~#&|A|B|||20250101||ORU^R01|C1|P|2.6\rOBX|1|ST|X||a#T#b\r",
            "\u{feff}\r\nMSH|^~\\&|A|B|||20250101||ORU^R01|C1|P|2.6\rOBX|1|ST|X||1\r",
        ] {
            texts.push(t.as_bytes().to_vec());
        }
        let (mut plain, mut escaped) = (0, 0);
        for raw in &texts {
            let Ok(m) = parse(raw) else { continue };
            let want = counted(&m);
            assert_eq!(m.escapes_only_in_msh2(), want, "{}", m.as_str());
            if want {
                plain += 1;
            } else {
                escaped += 1;
            }
        }
        assert!(
            plain >= 20 && escaped >= 3,
            "{plain} plain, {escaped} with escapes"
        );
    }

    #[test]
    fn plain_reads_match_the_decoded_ones() {
        // Every observation report of the conformance corpus.
        let mut compared = 0;
        for (path, raw) in corpus() {
            if assert_fast_matches_full(&raw, &path.display().to_string()) {
                compared += 1;
            }
        }
        assert!(compared >= 20, "only {compared} reports compared");
        // Header shapes the corpus may lack: several identifiers, the authority only as a
        // universal id, a location with subcomponents, a sender named by its universal id
        // only, a repeated device code, the visit number; once plain and once with an
        // escape in a header field (the decoded branch).
        let tricky =
            "MSH|^~\\&|^urn:oid:1.2^ISO|^^|||20250301101500+0100||ORU^R01^ORU_R01|C9|P|2.6\r\
PID|||~MRN1^^^&2.16.840^ISO^MR~PAT9^^^HOSP^PI||Doe^Jane\r\
PV1||I|ICU&Main^R1^B2&x^FAC||||||||||||||||V77^^^HOSP\r\
OBR|1|P1^A|F1^B|69965^MDS^MDC~1^2^3|||20250301101500\r\
OBX|1|NM|147842^HR^MDC|1.2.1.1|80|264864^bpm^MDC|||||R\r";
        assert!(assert_fast_matches_full(tricky.as_bytes(), "tricky"));
        let escaped = tricky.replace("FAC|", "F\\T\\C|");
        assert!(assert_fast_matches_full(escaped.as_bytes(), "escaped"));
        let m = parse(escaped.as_bytes()).unwrap();
        let loc = decode_fields(&m, &OPTS).unwrap().unwrap().location;
        assert_eq!(loc.facility, "F&C");
        let m = parse(tricky.as_bytes()).unwrap();
        let r = decode_fields(&m, &OPTS).unwrap().unwrap();
        assert_eq!(r.sending_app, "urn:oid:1.2");
        assert_eq!(r.patient.ids.len(), 2);
        assert_eq!(r.patient.ids[0].authority, "2.16.840");
        assert_eq!(r.patient.visit_number.as_deref(), Some("V77"));
        assert_eq!((&*r.location.unit, &*r.location.bed), ("ICU", "B2"));
    }

    #[test]
    fn first_rep_components_split_like_a_plain_split() {
        // Against a plain split on every short string over a small alphabet (separators,
        // letters, a multi-byte character), at every length up to three words.
        fn naive<const N: usize>(s: &str) -> [&str; N] {
            let first = s.split('~').next().unwrap_or("");
            let mut out = [""; N];
            for (slot, piece) in out.iter_mut().zip(first.split('^')) {
                *slot = piece;
            }
            out
        }
        let alphabet = ["^", "~", "a", "b", "é", "&"];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 25) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((seed >> (i % 60)) as usize + i * 7) % alphabet.len()])
                .collect();
            assert_eq!(
                first_rep_components::<1>(&s, b'^', b'~'),
                naive::<1>(&s),
                "{s}"
            );
            assert_eq!(
                first_rep_components::<3>(&s, b'^', b'~'),
                naive::<3>(&s),
                "{s}"
            );
            assert_eq!(
                first_rep_components::<6>(&s, b'^', b'~'),
                naive::<6>(&s),
                "{s}"
            );
        }
        assert_eq!(
            first_rep_components::<6>("264864^MDC_DIM_BEAT_PER_MIN^MDC^/min^^UCUM~x", b'^', b'~'),
            ["264864", "MDC_DIM_BEAT_PER_MIN", "MDC", "/min", "", "UCUM"]
        );
    }

    #[test]
    fn row_vectors_come_back_empty_and_are_reused() {
        let raw = include_str!("../../../benches/data/pcd01_20obx.hl7");
        let short = "MSH|^~\\&|GW|ICU|||20250301101500||ORU^R01|C2|P|2.6\r\
OBR|1||F1|69965^MDS^MDC|||20250301101500\r\
OBX|1|NM|147842^HR^MDC|1.2.1.1|80|264864^bpm^MDC|||||R\r";
        let mut spare = RowBuffers::default();
        let first = parse(raw.as_bytes()).unwrap();
        let r = decode_fields_with(&first, ("ORU", "R01"), &OPTS, &mut spare)
            .unwrap()
            .expect("fast path");
        let capacity = r.groups.first().map(|g| g.rows.capacity()).unwrap_or(0);
        assert!(capacity >= 20);
        spare.give_back(r);
        // The next message gets the kept vector: its allocation, none of its rows.
        let second = parse(short.as_bytes()).unwrap();
        let r = decode_fields_with(&second, ("ORU", "R01"), &OPTS, &mut spare)
            .unwrap()
            .expect("fast path");
        assert_eq!(r.groups.first().map(|g| g.rows.capacity()), Some(capacity));
        assert_eq!(
            r,
            decode_fields(&second, &OPTS).unwrap().expect("fast path")
        );
        assert_eq!(r.groups.iter().map(|g| g.rows.len()).sum::<usize>(), 1);
        spare.give_back(r);
        // A vector grown past the limit is not kept.
        let mut big = RowBuffers::default();
        let mut report = decode_fields(&second, &OPTS).unwrap().expect("fast path");
        if let Some(g) = report.groups.first_mut() {
            g.rows.reserve(RowBuffers::KEEP_ROWS * 2);
        }
        big.give_back(report);
        assert!(big.0.is_empty());
    }
}
