//! HL7 v2 acknowledgements: which ones to send ([`plan`], table 0155 in MSH-15/16), building
//! them ([`build_ack`], [`build_unparsed_ack`]) and reading the ones we receive ([`parse_ack`]).
//!
//! It owns the ACK message layout (MSH/MSA/ERR) and the acknowledgement-mode rules. It must not
//! decide whether a message is acceptable (the caller passes an [`Outcome`]), read a clock
//! (the timestamp and the new control id are arguments) or frame bytes for the wire (MLLP).
//!
//! Mode rules (HL7 v2 chapter 2, CLINICAL.md §4.4):
//! - both MSH-15 and MSH-16 empty: original mode, one answer AA / AE / AR;
//! - either non-empty: enhanced mode. The accept (commit) answer CA / CE / CR is sent as MSH-15
//!   asks; an application answer AA / AE / AR follows only as MSH-16 asks (`AL` always, `ER` on
//!   error only, `SU` on success only, `NE` never).
//!
//! So the IHE PCD-01 header `MSH-15 AL, MSH-16 NE` (the Philips sample among them) is *enhanced*
//! mode: one `CA` and no application ACK. Some senders (the Philips Efficia HL7 spec) answer and
//! expect `AA` while setting MSH-15. Receiving, [`ParsedAck::accepted`] treats AA and CA alike;
//! sending, the standard codes are the default and [`AckCompat::OriginalCodes`] exists for a
//! device profile that needs one original-mode answer whatever MSH-15/16 say.

use std::fmt::Write as _;

use thiserror::Error;

use super::escape::escape;
use super::parse::{parse, Delimiters, Message, ParseError, ParseErrorKind, TextEncoding};

/// MSA-1 values (HL7 table 0008).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Application accept.
    AA,
    /// Application error.
    AE,
    /// Application reject.
    AR,
    /// Commit accept (enhanced mode).
    CA,
    /// Commit error (enhanced mode).
    CE,
    /// Commit reject (enhanced mode).
    CR,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    /// Case-insensitive, surrounding blanks ignored.
    pub fn parse(s: &str) -> Option<AckCode> {
        let s = s.trim();
        let all = [
            AckCode::AA,
            AckCode::AE,
            AckCode::AR,
            AckCode::CA,
            AckCode::CE,
            AckCode::CR,
        ];
        all.into_iter().find(|c| c.as_str().eq_ignore_ascii_case(s))
    }

    /// AA or CA.
    pub fn is_accept(self) -> bool {
        matches!(self, AckCode::AA | AckCode::CA)
    }

    /// CA, CE or CR: an enhanced-mode accept (commit) acknowledgement.
    pub fn is_commit(self) -> bool {
        matches!(self, AckCode::CA | AckCode::CE | AckCode::CR)
    }
}

impl std::fmt::Display for AckCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which acknowledgement protocol the sender asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    Original,
    Enhanced,
}

impl AckMode {
    /// Enhanced when MSH-15 or MSH-16 is non-empty.
    pub fn of(msh15: &str, msh16: &str) -> AckMode {
        if msh15.trim().is_empty() && msh16.trim().is_empty() {
            AckMode::Original
        } else {
            AckMode::Enhanced
        }
    }
}

/// How the sender's codes are honoured; chosen per device profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AckCompat {
    /// HL7 rules as in the module docs.
    #[default]
    Standard,
    /// Always one original-mode answer (AA / AE / AR), for senders that set MSH-15 but only
    /// understand application codes.
    OriginalCodes,
}

/// What became of a received message, as the receiver knows it when answering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored and processed.
    Accepted,
    /// Stored, but the content has a fault (e.g. one OBX unreadable): commit accept, then an
    /// application error if MSH-16 asks for one.
    ContentError(AckErr),
    /// Not stored, for a reason that may pass (queue full, internal fault): the sender should
    /// send it again. Original AE, enhanced CE.
    Error(AckErr),
    /// Never acceptable as sent (unparseable, unsupported type or version). Original AR,
    /// enhanced CR.
    Rejected(AckErr),
}

impl Outcome {
    pub fn err(&self) -> Option<&AckErr> {
        match self {
            Outcome::Accepted => None,
            Outcome::ContentError(e) | Outcome::Error(e) | Outcome::Rejected(e) => Some(e),
        }
    }

    /// The error detail for an answer with `code` (none on accept codes).
    pub fn err_for(&self, code: AckCode) -> Option<&AckErr> {
        if code.is_accept() {
            None
        } else {
            self.err()
        }
    }
}

/// HL7 table 0155 condition in MSH-15 / MSH-16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Condition {
    Always,
    Never,
    OnError,
    OnSuccess,
}

impl Condition {
    /// Unknown values answer: a missing ACK makes the sender time out and resend, an extra
    /// one costs little.
    fn read(field: &str, when_empty: Condition) -> Condition {
        match field.trim().to_ascii_uppercase().as_str() {
            "" => when_empty,
            "NE" => Condition::Never,
            "ER" => Condition::OnError,
            "SU" => Condition::OnSuccess,
            _ => Condition::Always,
        }
    }

    fn sends(self, success: bool) -> bool {
        match self {
            Condition::Always => true,
            Condition::Never => false,
            Condition::OnError => !success,
            Condition::OnSuccess => success,
        }
    }
}

/// The acknowledgements to send, in order, for a message with these MSH-15 / MSH-16 values.
///
/// In enhanced mode an empty MSH-15 counts as `AL` (the sender did opt into enhanced mode and
/// waits for a commit answer) and an empty MSH-16 as `NE` (no application answer unasked).
/// After CE / CR no application answer follows: the message was not taken.
pub fn plan(msh15: &str, msh16: &str, outcome: &Outcome) -> Vec<AckCode> {
    plan_with(msh15, msh16, outcome, AckCompat::Standard)
}

/// [`plan`] with a per-device compatibility choice.
pub fn plan_with(msh15: &str, msh16: &str, outcome: &Outcome, compat: AckCompat) -> Vec<AckCode> {
    let original = match outcome {
        Outcome::Accepted => AckCode::AA,
        Outcome::ContentError(_) | Outcome::Error(_) => AckCode::AE,
        Outcome::Rejected(_) => AckCode::AR,
    };
    if compat == AckCompat::OriginalCodes || AckMode::of(msh15, msh16) == AckMode::Original {
        return vec![original];
    }
    let commit = Condition::read(msh15, Condition::Always);
    let app = Condition::read(msh16, Condition::Never);
    let mut out = Vec::with_capacity(2);
    match outcome {
        Outcome::Accepted | Outcome::ContentError(_) => {
            if commit.sends(true) {
                out.push(AckCode::CA);
            }
            let ok = matches!(outcome, Outcome::Accepted);
            if app.sends(ok) {
                out.push(original);
            }
        }
        // A negative commit answer ends the exchange. When the sender declined commit answers
        // but asked for application answers (e.g. MSH-15 NE, MSH-16 AL), the refusal goes back
        // as the application answer instead: a sender is never left waiting for nothing.
        Outcome::Error(_) => {
            if commit.sends(false) {
                out.push(AckCode::CE);
            } else if app.sends(false) {
                out.push(AckCode::AE);
            }
        }
        Outcome::Rejected(_) => {
            if commit.sends(false) {
                out.push(AckCode::CR);
            } else if app.sends(false) {
                out.push(AckCode::AR);
            }
        }
    }
    out
}

/// HL7 table 0357 (message error condition codes) used by vigil.
pub mod err_code {
    pub const SEGMENT_SEQUENCE: u16 = 100;
    pub const REQUIRED_FIELD_MISSING: u16 = 101;
    pub const DATA_TYPE: u16 = 102;
    pub const TABLE_VALUE_NOT_FOUND: u16 = 103;
    pub const VALUE_TOO_LONG: u16 = 104;
    pub const UNSUPPORTED_MESSAGE_TYPE: u16 = 200;
    pub const UNSUPPORTED_EVENT: u16 = 201;
    pub const UNSUPPORTED_PROCESSING_ID: u16 = 202;
    pub const UNSUPPORTED_VERSION: u16 = 203;
    pub const UNKNOWN_KEY: u16 = 204;
    pub const DUPLICATE_KEY: u16 = 205;
    pub const RECORD_LOCKED: u16 = 206;
    pub const INTERNAL_ERROR: u16 = 207;

    /// The table's text for a code.
    pub fn description(code: u16) -> Option<&'static str> {
        Some(match code {
            0 => "Message accepted",
            SEGMENT_SEQUENCE => "Segment sequence error",
            REQUIRED_FIELD_MISSING => "Required field missing",
            DATA_TYPE => "Data type error",
            TABLE_VALUE_NOT_FOUND => "Table value not found",
            VALUE_TOO_LONG => "Value too long",
            UNSUPPORTED_MESSAGE_TYPE => "Unsupported message type",
            UNSUPPORTED_EVENT => "Unsupported event code",
            UNSUPPORTED_PROCESSING_ID => "Unsupported processing id",
            UNSUPPORTED_VERSION => "Unsupported version id",
            UNKNOWN_KEY => "Unknown key identifier",
            DUPLICATE_KEY => "Duplicate key identifier",
            RECORD_LOCKED => "Application record locked",
            INTERNAL_ERROR => "Application internal error",
            _ => return None,
        })
    }
}

/// Where in the received message the fault is (ERR-2, data type ERL). 1-based.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrLocation {
    /// Segment ID, e.g. `OBX`.
    pub segment: String,
    /// Which occurrence of that segment.
    pub sequence: Option<u32>,
    pub field: Option<u32>,
    pub repetition: Option<u32>,
    pub component: Option<u32>,
    pub subcomponent: Option<u32>,
}

impl ErrLocation {
    /// `segment^sequence^field`, e.g. `OBX^3^5`.
    pub fn field(segment: &str, sequence: u32, field: u32) -> Self {
        ErrLocation {
            segment: segment.to_owned(),
            sequence: Some(sequence),
            field: Some(field),
            ..ErrLocation::default()
        }
    }

    pub fn segment(segment: &str, sequence: u32) -> Self {
        ErrLocation {
            segment: segment.to_owned(),
            sequence: Some(sequence),
            ..ErrLocation::default()
        }
    }
}

/// The ERR segment content of a negative answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckErr {
    pub location: Option<ErrLocation>,
    /// HL7 table 0357 code, see [`err_code`].
    pub code: u16,
    /// Free text for the sender's operators (ERR-8), plain (escaped when written).
    pub text: String,
}

impl AckErr {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        AckErr {
            location: None,
            code,
            text: text.into(),
        }
    }

    pub fn at(mut self, location: ErrLocation) -> Self {
        self.location = Some(location);
        self
    }
}

/// Builds the answer to `original` (segments end with `\r`; no MLLP envelope).
///
/// Uses the sender's delimiters and version; swaps MSH-3/4 with MSH-5/6; MSH-9 is
/// `ACK^<trigger>^ACK`; MSH-7 is `now_hl7_ts` and MSH-10 `control_id` (both from the caller);
/// MSA-2 echoes the original MSH-10. Negative codes carry an ERR segment (207 when `err` is
/// `None`); for versions before 2.5 the error goes in ERR-1 and MSA-3, the layout they define.
/// Do not answer a message that is itself an ACK.
pub fn build_ack(
    original: &Message,
    code: AckCode,
    err: Option<&AckErr>,
    now_hl7_ts: &str,
    control_id: &str,
) -> String {
    let d = original.delimiters();
    let msh = original.msh();
    let raw = |n: usize| msh.field(n).as_str();
    let version = if raw(12).is_empty() { "2.5" } else { raw(12) };
    let processing = if raw(11).is_empty() { "P" } else { raw(11) };
    let (_, trigger, _) = original.message_type();
    let mut w = Writer::new(d);
    w.msh();
    w.raw(raw(5));
    w.sep();
    w.raw(raw(6));
    w.sep();
    w.raw(raw(3));
    w.sep();
    w.raw(raw(4));
    w.sep();
    w.text(now_hl7_ts);
    w.sep();
    w.sep();
    w.message_type(trigger);
    w.sep();
    w.text(control_id);
    w.sep();
    w.raw(processing);
    w.sep();
    w.raw(version);
    let charset = raw(18);
    if !charset.is_empty() {
        // Empty MSH-13..17, then MSH-18: the ACK is written in the sender's character set.
        for _ in 12..18 {
            w.sep();
        }
        w.raw(charset);
    }
    w.end();
    w.ack_body(code, original.control_id(), err, legacy_err(version));
    w.out
}

/// An AR answer for bytes that did not parse: standard delimiters, version 2.5, MSA-2 the
/// MSH-10 found by a best-effort look at the first line (empty if none), ERR code 100 for a
/// missing or misplaced MSH and bad segment names, 102 for a malformed MSH header.
pub fn build_unparsed_ack(
    raw: &[u8],
    error: &ParseError,
    now_hl7_ts: &str,
    control_id: &str,
) -> String {
    let code = match error.kind {
        ParseErrorKind::Empty
        | ParseErrorKind::NotMsh { .. }
        | ParseErrorKind::BadSegmentName { .. } => err_code::SEGMENT_SEQUENCE,
        ParseErrorKind::MshTooShort
        | ParseErrorKind::BadEncodingChars { .. }
        | ParseErrorKind::TooLarge => err_code::DATA_TYPE,
    };
    let err = AckErr::new(code, error.to_string());
    let d = Delimiters::default();
    let mut w = Writer::new(d);
    w.msh();
    w.sep();
    w.sep();
    w.sep();
    w.sep();
    w.text(now_hl7_ts);
    w.sep();
    w.sep();
    w.raw("ACK");
    w.sep();
    w.text(control_id);
    w.sep();
    w.raw("P");
    w.sep();
    w.raw("2.5");
    w.end();
    let msa2 = escape(&guess_control_id(raw), &d);
    w.ack_body(AckCode::AR, &msa2, Some(&err), false);
    w.out
}

/// MSH-10 of a header line that failed to parse, split on its own field separator.
fn guess_control_id(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| !b.is_ascii_whitespace() && !matches!(b, 0xEF | 0xBB | 0xBF))
        .unwrap_or(raw.len());
    let line = raw.get(start..).unwrap_or_default();
    let line = &line[..memchr::memchr2(b'\r', b'\n', line).unwrap_or(line.len())];
    let Some(rest) = line.strip_prefix(b"MSH") else {
        return String::new();
    };
    let Some(&fs) = rest.first() else {
        return String::new();
    };
    if !fs.is_ascii_graphic() || fs.is_ascii_alphanumeric() {
        return String::new();
    }
    // Pieces after "MSH": [""(before the first separator), MSH-2, MSH-3, ..., MSH-10].
    let Some(id) = rest.split(|&b| b == fs).nth(9) else {
        return String::new();
    };
    // ST is at most 199 characters; longer is not a control id worth echoing.
    let id = &id[..id.len().min(199)];
    String::from_utf8_lossy(id).into_owned()
}

/// ERR-1 (ELD) and MSA-3 instead of ERR-2..8 before v2.5.
fn legacy_err(version: &str) -> bool {
    let mut parts = version.split(['.', '^']);
    let major = parts.next().and_then(|p| p.trim().parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.trim().parse::<u32>().ok());
    matches!((major, minor), (Some(2), Some(m)) if m < 5)
}

/// Writes segments with one message's delimiters.
struct Writer {
    d: Delimiters,
    out: String,
}

impl Writer {
    fn new(d: Delimiters) -> Self {
        Writer {
            d,
            out: String::with_capacity(256),
        }
    }
    fn sep(&mut self) {
        self.out.push(char::from(self.d.field));
    }
    fn comp(&mut self) {
        self.out.push(char::from(self.d.component));
    }
    fn sub(&mut self) {
        self.out.push(char::from(self.d.subcomponent));
    }
    fn end(&mut self) {
        self.out.push('\r');
    }
    /// Already in the sender's syntax (copied from its message).
    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }
    /// Plain text, escaped.
    fn text(&mut self, s: &str) {
        self.out.push_str(&escape(s, &self.d));
    }
    /// `MSH|^~\&|` up to and including the separator before MSH-3.
    fn msh(&mut self) {
        self.out.push_str("MSH");
        self.sep();
        self.out.push_str(&self.d.encoding_characters());
        self.sep();
    }
    fn message_type(&mut self, trigger: &str) {
        self.raw("ACK");
        if !trigger.is_empty() {
            self.comp();
            self.raw(trigger);
            self.comp();
            self.raw("ACK");
        }
    }
    fn num(&mut self, n: Option<u32>) {
        if let Some(n) = n {
            let _ = write!(self.out, "{n}");
        }
    }

    /// MSA and, for negative codes, ERR. `msa2` is raw (already escaped).
    fn ack_body(&mut self, code: AckCode, msa2: &str, err: Option<&AckErr>, legacy: bool) {
        let fallback;
        let err = if code.is_accept() {
            None
        } else {
            Some(match err {
                Some(e) => e,
                None => {
                    fallback = AckErr::new(err_code::INTERNAL_ERROR, "");
                    &fallback
                }
            })
        };
        self.raw("MSA");
        self.sep();
        self.raw(code.as_str());
        self.sep();
        self.raw(msa2);
        if let (true, Some(e)) = (legacy, err) {
            if !e.text.is_empty() {
                self.sep();
                self.text(&e.text);
            }
        }
        self.end();
        let Some(e) = err else {
            return;
        };
        self.raw("ERR");
        self.sep();
        if legacy {
            self.location(e.location.as_ref(), 3);
            self.comp();
            self.error_code(e.code, true);
        } else {
            self.sep();
            self.location(e.location.as_ref(), 6);
            self.sep();
            self.error_code(e.code, false);
            self.sep();
            self.raw("E");
            if !e.text.is_empty() {
                self.sep();
                self.sep();
                self.sep();
                self.sep();
                self.text(&e.text);
            }
        }
        self.end();
    }

    /// ERL components (v2.5: six, trailing empties trimmed) or the first three of the
    /// v2.4 ELD (always written, so the code lands in component 4).
    fn location(&mut self, loc: Option<&ErrLocation>, parts: usize) {
        if let Some(l) = loc {
            self.text(&l.segment);
        }
        let nums = loc.map_or([None; 5], |l| {
            [
                l.sequence,
                l.field,
                l.repetition,
                l.component,
                l.subcomponent,
            ]
        });
        let keep = if parts == 6 {
            nums.iter().rposition(Option::is_some).map_or(0, |i| i + 1)
        } else {
            parts - 1
        };
        for n in nums.iter().take(keep) {
            self.comp();
            self.num(*n);
        }
    }

    /// CWE `code^text^HL70357`, or as subcomponents inside the v2.4 ELD.
    fn error_code(&mut self, code: u16, nested: bool) {
        let _ = write!(self.out, "{code}");
        let desc = err_code::description(code).unwrap_or("");
        if nested {
            self.sub();
            self.text(desc);
            self.sub();
        } else {
            self.comp();
            self.text(desc);
            self.comp();
        }
        self.raw("HL70357");
    }
}

/// The ACK text as bytes in the sender's encoding: Latin-1 when the original was read as
/// Latin-1 or declares it in MSH-18 (which the ACK echoes), else UTF-8. Characters Latin-1
/// cannot hold become `?`.
pub fn encode_ack(ack: &str, original: &Message) -> Vec<u8> {
    let cs = original.charset().trim();
    let latin1 = original.text_encoding() == TextEncoding::Latin1
        || cs.eq_ignore_ascii_case("8859/1")
        || cs.eq_ignore_ascii_case("ISO-8859-1");
    if latin1 {
        ack.chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect()
    } else {
        ack.as_bytes().to_vec()
    }
}

/// A received acknowledgement, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedAck {
    pub code: AckCode,
    /// MSA-2: the control id of the message being acknowledged.
    pub control_id: String,
    /// MSH-10 of the ACK itself.
    pub ack_control_id: String,
    /// Table 0357 code from ERR-3 (or ERR-1.4 before v2.5).
    pub error_code: Option<u16>,
    /// The first non-empty of ERR-8, MSA-3, ERR-5.2, ERR-3.2, ERR-1.4.2.
    pub error_text: Option<String>,
}

impl ParsedAck {
    /// AA or CA: some senders use AA for a commit accept, so both count.
    pub fn accepted(&self) -> bool {
        self.code.is_accept()
    }
}

/// Why a received acknowledgement could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AckParseError {
    #[error("acknowledgement does not parse: {0}")]
    Parse(#[from] ParseError),
    #[error("acknowledgement has no MSA segment ({segments} segments)")]
    NoMsa { segments: usize },
    #[error("MSA-1 {found:?} at byte {offset} is not an HL7 table 0008 code")]
    UnknownCode { found: String, offset: usize },
}

/// Reads an acknowledgement (ACK or any message with an MSA segment).
pub fn parse_ack(bytes: &[u8]) -> Result<ParsedAck, AckParseError> {
    let m = parse(bytes)?;
    let msa = m.segment("MSA").ok_or(AckParseError::NoMsa {
        segments: m.segment_count(),
    })?;
    let found = msa.field(1).as_str();
    let code = AckCode::parse(found).ok_or_else(|| AckParseError::UnknownCode {
        found: found.chars().take(16).collect(),
        offset: msa.offset(),
    })?;
    let err = m.segment("ERR");
    let nonempty = |s: std::borrow::Cow<'_, str>| {
        let t = s.trim();
        (!t.is_empty()).then(|| t.to_owned())
    };
    let error_text = err
        .and_then(|e| nonempty(e.field(8).decoded()))
        .or_else(|| nonempty(msa.field(3).decoded()))
        .or_else(|| err.and_then(|e| nonempty(e.field(5).component(2).decoded())))
        .or_else(|| err.and_then(|e| nonempty(e.field(3).component(2).decoded())))
        .or_else(|| err.and_then(|e| nonempty(e.field(1).component(4).subcomponent(2).decoded())));
    let error_code = err.and_then(|e| {
        let v25 = e.field(3).component(1).as_str().trim();
        let legacy = e.field(1).component(4).subcomponent(1).as_str().trim();
        v25.parse().ok().or_else(|| legacy.parse().ok())
    });
    Ok(ParsedAck {
        code,
        control_id: msa.field(2).decoded().into_owned(),
        ack_control_id: m.msh().field(10).decoded().into_owned(),
        error_code,
        error_text,
    })
}

/// True when the message is itself an acknowledgement (MSH-9.1 `ACK`), which is never answered.
pub fn is_ack(msg: &Message) -> bool {
    msg.message_type().0.trim().eq_ignore_ascii_case("ACK")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHILIPS: &[u8] = include_bytes!(
        "../../../tests/data/hl7/device-ihe-pcd-tf-vol2-examples/00_pcd01_philips_PAT_DEVICE_PHILIPS_C_oru_r01.hl7"
    );
    const NOW: &str = "20240101120000+0000";

    fn obx_err() -> AckErr {
        AckErr::new(err_code::DATA_TYPE, "OBX-5 \"x|y\" is not a number")
            .at(ErrLocation::field("OBX", 3, 5))
    }

    fn segments(ack: &str) -> Vec<&str> {
        ack.split_terminator('\r').collect()
    }

    /// MSH-15 `AL` is non-empty, so IHE PCD-01 senders are in enhanced mode: one commit accept
    /// and, with MSH-16 `NE`, no application ACK.
    #[test]
    fn ihe_pcd01_al_ne_is_enhanced_mode_with_commit_accept_only() {
        let m = parse(PHILIPS).unwrap();
        let (f15, f16) = (m.msh().field(15).as_str(), m.msh().field(16).as_str());
        assert_eq!((f15, f16), ("AL", "NE"));
        assert_eq!(AckMode::of(f15, f16), AckMode::Enhanced);
        assert_eq!(plan(f15, f16, &Outcome::Accepted), [AckCode::CA]);
        // Content fault after commit: still only CA, because NE asks for no application ACK.
        assert_eq!(
            plan(f15, f16, &Outcome::ContentError(obx_err())),
            [AckCode::CA]
        );
        assert_eq!(plan(f15, f16, &Outcome::Error(obx_err())), [AckCode::CE]);
        assert_eq!(plan(f15, f16, &Outcome::Rejected(obx_err())), [AckCode::CR]);
        let ack = build_ack(&m, AckCode::CA, None, NOW, "VIGIL1");
        assert_eq!(
            segments(&ack),
            [
                "MSH|^~\\&|||PAT_DEVICE_PHILIPS_C|Philips|20240101120000+0000||ACK^R01^ACK|VIGIL1|P|2.6||||||8859/1",
                "MSA|CA|HP0122182658686QQ000CND119C0WS61",
            ]
        );
        assert_eq!(parse(ack.as_bytes()).unwrap().charset(), "8859/1");
        let back = parse_ack(ack.as_bytes()).unwrap();
        assert_eq!(back.code, AckCode::CA);
        assert_eq!(back.control_id, "HP0122182658686QQ000CND119C0WS61");
        assert_eq!(back.ack_control_id, "VIGIL1");
        assert!(back.accepted());
        assert_eq!(back.error_text, None);
    }

    #[test]
    fn plan_follows_table_0155() {
        use AckCode::*;
        let ok = Outcome::Accepted;
        let content = Outcome::ContentError(obx_err());
        let error = Outcome::Error(obx_err());
        let reject = Outcome::Rejected(obx_err());
        // Original mode: exactly one answer.
        assert_eq!(plan("", "", &ok), [AA]);
        assert_eq!(plan(" ", "", &content), [AE]);
        assert_eq!(plan("", "", &error), [AE]);
        assert_eq!(plan("", "", &reject), [AR]);
        // Enhanced: MSH-16 decides the application answer.
        assert_eq!(plan("AL", "AL", &ok), [CA, AA]);
        assert_eq!(plan("AL", "AL", &content), [CA, AE]);
        assert_eq!(plan("AL", "ER", &ok), [CA]);
        assert_eq!(plan("AL", "ER", &content), [CA, AE]);
        assert_eq!(plan("AL", "SU", &ok), [CA, AA]);
        assert_eq!(plan("AL", "SU", &content), [CA]);
        // No application answer after a commit error or reject.
        assert_eq!(plan("AL", "AL", &error), [CE]);
        assert_eq!(plan("AL", "AL", &reject), [CR]);
        // MSH-15 decides the commit answer.
        assert_eq!(plan("NE", "AL", &ok), [AA]);
        assert_eq!(plan("NE", "NE", &ok), Vec::<AckCode>::new());
        assert_eq!(plan("NE", "NE", &reject), Vec::<AckCode>::new());
        assert_eq!(plan("ER", "NE", &ok), Vec::<AckCode>::new());
        assert_eq!(plan("ER", "NE", &error), [CE]);
        assert_eq!(plan("SU", "NE", &ok), [CA]);
        assert_eq!(plan("SU", "NE", &reject), Vec::<AckCode>::new());
        // Empty MSH-15 in enhanced mode answers; unknown values answer; case does not matter.
        assert_eq!(plan("", "AL", &ok), [CA, AA]);
        assert_eq!(plan("xx", "", &ok), [CA]);
        assert_eq!(plan("al", "su", &ok), [CA, AA]);
        // Devices that only understand application codes.
        let compat = AckCompat::OriginalCodes;
        assert_eq!(plan_with("AL", "NE", &ok, compat), [AA]);
        assert_eq!(plan_with("AL", "NE", &reject, compat), [AR]);
        assert_eq!(content.err_for(CA), None);
        assert_eq!(content.err_for(AE), Some(&obx_err()));
    }

    #[test]
    fn negative_ack_carries_err_with_location_code_severity_and_escaped_text() {
        let m = parse(PHILIPS).unwrap();
        let ack = build_ack(&m, AckCode::AE, Some(&obx_err()), NOW, "V2");
        let segs = segments(&ack);
        assert_eq!(segs[1], "MSA|AE|HP0122182658686QQ000CND119C0WS61");
        assert_eq!(
            segs[2],
            "ERR||OBX^3^5|102^Data type error^HL70357|E||||OBX-5 \"x\\F\\y\" is not a number"
        );
        assert_eq!(segs.len(), 3);
        let back = parse_ack(ack.as_bytes()).unwrap();
        assert_eq!(back.code, AckCode::AE);
        assert!(!back.accepted());
        assert_eq!(back.error_code, Some(102));
        assert_eq!(
            back.error_text.as_deref(),
            Some("OBX-5 \"x|y\" is not a number")
        );
        // No detail given: 207, no location, no text.
        let ack = build_ack(&m, AckCode::CR, None, NOW, "V3");
        assert_eq!(
            segments(&ack)[2],
            "ERR|||207^Application internal error^HL70357|E"
        );
        let back = parse_ack(ack.as_bytes()).unwrap();
        assert_eq!(
            (back.error_code, back.error_text.as_deref()),
            (Some(207), Some("Application internal error"))
        );
        // A full location keeps inner empties and trims trailing ones.
        let loc = ErrLocation {
            component: Some(2),
            ..ErrLocation::field("PID", 1, 3)
        };
        let ack = build_ack(
            &m,
            AckCode::AR,
            Some(&AckErr::new(101, "").at(loc)),
            NOW,
            "V4",
        );
        assert!(segments(&ack)[2].starts_with("ERR||PID^1^3^^2|101^Required field missing^"));
    }

    #[test]
    fn custom_delimiters_are_echoed_and_used_for_escaping() {
        let raw = "MSH#$%@*#MON#ICU#VIGIL#HOSP#20240101##ORU$R01$ORU_R01#ID@F@7#T#2.6#\rPID###A1";
        let m = parse(raw.as_bytes()).unwrap();
        let err = AckErr::new(200, "bad # and $ and | here").at(ErrLocation::segment("PID", 1));
        let ack = build_ack(&m, AckCode::AR, Some(&err), "2024", "N#1");
        assert_eq!(
            segments(&ack),
            [
                "MSH#$%@*#VIGIL#HOSP#MON#ICU#2024##ACK$R01$ACK#N@F@1#T#2.6",
                "MSA#AR#ID@F@7",
                "ERR##PID$1#200$Unsupported message type$HL70357#E####bad @F@ and @S@ and | here",
            ]
        );
        let back = parse_ack(ack.as_bytes()).unwrap();
        assert_eq!(back.control_id, "ID#7");
        assert_eq!(back.ack_control_id, "N#1");
        assert_eq!(back.error_text.as_deref(), Some("bad # and $ and | here"));
    }

    #[test]
    fn versions_before_2_5_get_err_1_and_msa_3() {
        let raw = b"MSH|^~\\&|LAB|H|||2001||ORU^R01|C9|P|2.3.1\rPID|||1";
        let m = parse(raw).unwrap();
        let ack = build_ack(&m, AckCode::AE, Some(&obx_err()), NOW, "A1");
        let segs = segments(&ack);
        assert_eq!(
            segs[0],
            "MSH|^~\\&|||LAB|H|20240101120000+0000||ACK^R01^ACK|A1|P|2.3.1"
        );
        assert_eq!(segs[1], "MSA|AE|C9|OBX-5 \"x\\F\\y\" is not a number");
        assert_eq!(segs[2], "ERR|OBX^3^5^102&Data type error&HL70357");
        let back = parse_ack(ack.as_bytes()).unwrap();
        assert_eq!(back.error_code, Some(102));
        assert_eq!(
            back.error_text.as_deref(),
            Some("OBX-5 \"x|y\" is not a number")
        );
        // Without a location the ELD still puts the code in component 4.
        let ack = build_ack(&m, AckCode::AR, Some(&AckErr::new(200, "")), NOW, "A2");
        assert_eq!(
            segments(&ack)[2],
            "ERR|^^^200&Unsupported message type&HL70357"
        );
    }

    #[test]
    fn truncation_character_is_echoed_and_escaped() {
        let raw = b"MSH|^~\\&#|DEV|X|||20191127||ORU^R40^ORU_R40|c#1|P|2.7";
        let m = parse(raw).unwrap();
        let ack = build_ack(&m, AckCode::CE, Some(&AckErr::new(207, "a#b")), NOW, "z");
        let segs = segments(&ack);
        assert!(segs[0].starts_with("MSH|^~\\&#|||DEV|X|"), "{}", segs[0]);
        assert!(segs[2].ends_with("|a\\P\\b"), "{}", segs[2]);
        assert_eq!(
            parse_ack(ack.as_bytes()).unwrap().error_text.as_deref(),
            Some("a#b")
        );
    }

    #[test]
    fn missing_trigger_version_and_processing_id_get_defaults() {
        let m = parse(b"MSH|^~\\&|A").unwrap();
        let ack = build_ack(&m, AckCode::AA, None, NOW, "1");
        assert_eq!(
            segments(&ack),
            ["MSH|^~\\&|||A||20240101120000+0000||ACK|1|P|2.5", "MSA|AA|"]
        );
        assert!(is_ack(&parse(ack.as_bytes()).unwrap()));
        assert!(!is_ack(&m));
    }

    #[test]
    fn unparsable_input_gets_ar_with_best_effort_control_id() {
        // The sender's field separator is `#`, so its `|` is text and gets escaped.
        let raw = b"MSH#^~#APP#FAC###2024##ORU^R01#CTL|9#P#2.6\rPID";
        let e = parse(raw).unwrap_err();
        let ack = build_unparsed_ack(raw, &e, NOW, "R1");
        let segs = segments(&ack);
        assert_eq!(segs[0], "MSH|^~\\&|||||20240101120000+0000||ACK|R1|P|2.5");
        assert_eq!(segs[1], "MSA|AR|CTL\\F\\9");
        assert!(
            segs[2].starts_with("ERR|||102^Data type error^HL70357|E||||byte 4"),
            "{}",
            segs[2]
        );
        let back = parse_ack(ack.as_bytes()).unwrap();
        assert_eq!(
            (back.code, back.control_id.as_str()),
            (AckCode::AR, "CTL|9")
        );
        let raw = b"\r\nPID|||1\rMSH|^~\\&|A";
        let e = parse(raw).unwrap_err();
        let ack = build_unparsed_ack(raw, &e, NOW, "R2");
        let back = parse_ack(ack.as_bytes()).unwrap();
        assert_eq!((back.control_id.as_str(), back.error_code), ("", Some(100)));
        let e = parse(b"").unwrap_err();
        let back = parse_ack(build_unparsed_ack(b"", &e, NOW, "R3").as_bytes()).unwrap();
        assert_eq!(back.error_code, Some(100));
    }

    #[test]
    fn real_acks_from_ihe_and_draeger_samples_parse() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hl7/");
        let read = |rel: &str| std::fs::read(format!("{dir}{rel}")).unwrap();
        let a = parse_ack(&read("device-ihe-pcd-acm-draeger/ACK_watchdog.hl7")).unwrap();
        assert_eq!(a.code, AckCode::CA);
        assert_eq!(a.control_id, "2df8823a-f8fb-44e0-a4ba-1d826e0809f1");
        assert_eq!(a.ack_control_id, "");
        let a = parse_ack(&read(
            "device-ihe-pcd-tf-vol2-examples/03_piv_pcd03_ack_o15_accept.hl7",
        ))
        .unwrap();
        assert_eq!((a.code, a.control_id.as_str()), (AckCode::CA, "1"));
        let a = parse_ack(&read(
            "device-ihe-pcd-tf-vol2-examples/06_piv_pcd03_rrg_o16_app_reject.hl7",
        ))
        .unwrap();
        assert_eq!((a.code, a.control_id.as_str()), (AckCode::AR, "102"));
        assert_eq!(a.error_code, Some(207));
        assert_eq!(
            a.error_text.as_deref(),
            Some("Unable to match medication to drug library")
        );
        let a = parse_ack(&read(
            "device-ihe-pcd-tf-vol2-examples/12_dec_ws_soap_embedded_ack.hl7",
        ))
        .unwrap();
        assert_eq!((a.code, a.control_id.as_str()), (AckCode::AA, "MSGID1234"));
        assert_eq!(a.error_text.as_deref(), Some("Message Accepted"));
        assert!(a.accepted());
        // Not an ACK at all.
        assert_eq!(
            parse_ack(PHILIPS),
            Err(AckParseError::NoMsa { segments: 21 })
        );
        assert!(matches!(
            parse_ack(b"MSH|^~\\&|A\rMSA|OK|1"),
            Err(AckParseError::UnknownCode { ref found, offset: 11 }) if found == "OK"
        ));
    }

    #[test]
    fn latin1_senders_get_latin1_bytes() {
        let mut raw = b"MSH|^~\\&|M\xdcN|X|||1||ORU^R01|1|P|2.6||||||8859/1".to_vec();
        raw.extend_from_slice(b"\rPID|||1");
        let m = parse(&raw).unwrap();
        let ack = build_ack(
            &m,
            AckCode::AE,
            Some(&AckErr::new(207, "Müller ✓")),
            NOW,
            "1",
        );
        let bytes = encode_ack(&ack, &m);
        assert!(bytes.windows(4).any(|w| w == b"M\xdcN|"));
        assert!(bytes.ends_with(b"M\xfcller ?\r"));
        let back = parse_ack(&bytes).unwrap();
        assert_eq!(back.error_text.as_deref(), Some("Müller ?"));
        // Declared Latin-1 but plain ASCII (read as UTF-8): still answered in Latin-1.
        let m = parse(PHILIPS).unwrap();
        assert_eq!(m.text_encoding(), TextEncoding::Utf8);
        let ack = build_ack(&m, AckCode::CE, Some(&AckErr::new(207, "é")), NOW, "1");
        let back = parse_ack(&encode_ack(&ack, &m)).unwrap();
        assert_eq!(back.error_text.as_deref(), Some("é"));
        // UTF-8 senders get UTF-8.
        let m = parse("MSH|^~\\&|A\rPID|||1||Zoë".as_bytes()).unwrap();
        assert_eq!(encode_ack("é", &m), "é".as_bytes());
    }

    #[test]
    fn a_refusal_is_never_silent_when_the_sender_asked_for_application_answers() {
        let rej = Outcome::Rejected(AckErr::new(200, "unsupported"));
        let err = Outcome::Error(AckErr::new(207, "busy"));
        // No commit answers wanted, application answers wanted: the refusal is the answer.
        assert_eq!(plan("NE", "AL", &rej), [AckCode::AR]);
        assert_eq!(plan("NE", "ER", &err), [AckCode::AE]);
        // Neither wanted: nothing is sent (the message is still counted and dead-lettered).
        assert_eq!(plan("NE", "NE", &rej), Vec::<AckCode>::new());
        // Commit answers wanted: the negative commit ends the exchange.
        assert_eq!(plan("AL", "AL", &rej), [AckCode::CR]);
    }
}
