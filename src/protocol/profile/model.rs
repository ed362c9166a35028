//! A checked profile ([`DeviceProfile`]) and the checks that build it from the raw file.
//!
//! Every check runs even after one failed, so `vigil validate` lists every fault of a profile
//! with its line in one pass.

use std::ops::Range;
use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};
use toml::Spanned;

use super::extract;
use super::framing::{ByteOrder, ByteSet, ChecksumAlgo, ChecksumSpec, Crc16, Encoding, Position};
use super::schema::{self, RawExtract, Removed};
use super::sim::{Template, TraceSpec};
use crate::config::problem::{line_of, Problem};
use crate::normalize::NormalizeTables;
use crate::protocol::device::{DeviceCode, SimTrace};

/// Largest frame a profile may declare.
pub const MAX_FRAME_LIMIT: usize = 65_535;
/// Compiled regexes are capped so a profile cannot ask for unbounded memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Most noise bytes a simulator may interleave after one frame.
const MAX_NOISE: u32 = 4096;

/// A declarative device profile: how to talk to a simple serial device and what its frames
/// mean. Built by [`DeviceProfile::parse`] from a TOML file (see `device-profiles/devices/`).
#[derive(Clone, Debug)]
pub struct DeviceProfile {
    /// Unique name (`ivy-450c`); the driver's protocol is `profile:<name>`.
    pub name: String,
    pub description: String,
    /// The file it came from, for messages.
    pub origin: String,
    /// Line settings the serial source uses when the port config does not override them.
    pub serial: SerialDefaults,
    pub framing: Framing,
    /// Largest frame content in bytes (markers and terminator excluded, checksum included).
    pub max_frame: usize,
    pub checksum: Option<ChecksumSpec>,
    /// Bytes that are not the profile's business outside a frame (binary waveform runs).
    pub skip: ByteSet,
    pub session: SessionSpec,
    /// Frame types, tried in order; the first that matches decodes the frame.
    pub frames: Vec<FrameSpec>,
    pub simulate: Option<SimulateSpec>,
}

/// Serial line settings a profile recommends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialDefaults {
    pub baud: u32,
    /// 5 to 8.
    pub data_bits: u8,
    pub parity: Parity,
    /// 1 or 2.
    pub stop_bits: u8,
    pub flow_control: FlowControl,
}

impl Default for SerialDefaults {
    fn default() -> Self {
        SerialDefaults {
            baud: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow_control: FlowControl::None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowControl {
    None,
    /// Hardware handshake.
    RtsCts,
    /// Software handshake (DC1/DC3).
    XonXoff,
}

/// How frames are delimited in the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Text lines. A CR before an LF terminator is dropped, as is an LF right after a CR
    /// terminator, so CR, LF and CRLF devices all frame cleanly.
    Line { terminator: Terminator },
    /// `start` content `end`; a `start` inside a frame begins a new one.
    StxEtx { start: u8, end: u8 },
    /// An optional sync byte, a 1- or 2-byte length, then that many bytes.
    LengthPrefix {
        start: Option<u8>,
        length_bytes: u8,
        byte_order: ByteOrder,
        /// The length counts the sync byte and the length bytes too.
        includes_header: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminator {
    Cr,
    Lf,
    Crlf,
}

impl Terminator {
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Terminator::Cr => b"\r",
            Terminator::Lf => b"\n",
            Terminator::Crlf => b"\r\n",
        }
    }
}

impl Framing {
    /// Bytes that delimit frames and so cannot be skipped or appear in a frame's content.
    pub fn markers(&self) -> Vec<u8> {
        match *self {
            Framing::Line { .. } => vec![b'\r', b'\n'],
            Framing::StxEtx { start, end } => vec![start, end],
            Framing::LengthPrefix { start, .. } => start.into_iter().collect(),
        }
    }
}

/// What the host sends and when it gives up on a silent device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionSpec {
    /// Sent when the port opens.
    pub on_connect: Vec<u8>,
    /// Sent periodically (requests or keep-alives), the first on the first tick.
    pub polls: Vec<PollSpec>,
    /// No bytes for this long ends the session (`Disconnected`).
    pub silence_timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollSpec {
    pub bytes: Vec<u8>,
    pub every_ms: u64,
}

/// One kind of frame and the readings in it.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub name: String,
    pub matcher: Matcher,
    pub extract: Extract,
    /// Channel of every reading in the frame, unless a field names its own.
    pub channel: Option<Location>,
    pub fields: Vec<FieldSpec>,
}

/// Which frames a frame type takes.
#[derive(Clone, Debug)]
pub enum Matcher {
    Any,
    /// The frame starts with this text; delimited fields are counted after it.
    Prefix(String),
    /// The regex matches; delimited fields are counted after the match.
    Pattern(Regex),
}

/// How fields are cut out of a frame.
#[derive(Clone, Debug)]
pub enum Extract {
    /// The text after the key, split on `separator`; fields by index from 0.
    Delimited { separator: String },
    /// Byte columns of the whole frame content.
    Fixed,
    /// Named captures of a regex that must match the frame.
    Regex(Regex),
}

/// Where a value sits in a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Index(usize),
    Columns {
        start: usize,
        width: usize,
    },
    Capture(String),
    /// A fixed value (channels only).
    Constant(String),
}

/// Whether a field holds a number or text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Number,
    Text,
}

/// One value of a frame and the reading it becomes.
#[derive(Clone, Debug)]
pub struct FieldSpec {
    pub location: Location,
    pub code: DeviceCode,
    /// UCUM, empty when dimensionless.
    pub unit: String,
    pub kind: ValueKind,
    /// reading = value × scale + offset.
    pub scale: f64,
    pub offset: f64,
    /// Texts meaning "no value" besides the empty field (`---`, `-1`).
    pub no_value: Vec<String>,
    pub channel: Option<Location>,
    /// Vendor label on the reading (default: the frame name).
    pub label: String,
    /// A frame may end before this field without it being a decode error.
    pub optional: bool,
}

/// What a simulated device prints.
#[derive(Clone, Debug)]
pub struct SimulateSpec {
    /// Every `interval_ms` (or on each poll, with `answer_poll`) the device sends every frame.
    pub interval_ms: u64,
    pub frames: Vec<Template>,
    pub traces: Vec<TraceSpec>,
    /// Bytes interleaved after each frame.
    pub noise: Option<NoiseSpec>,
    /// Send the frames when a poll arrives instead of on a timer.
    pub answer_poll: bool,
}

/// Pseudo-random bytes in `from..=to` after each simulated frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseSpec {
    pub count: u32,
    pub from: u8,
    pub to: u8,
}

impl DeviceProfile {
    /// Parses and checks a profile, reporting every problem with `file` and its line.
    pub fn parse(file: &str, src: &str) -> Result<DeviceProfile, Vec<Problem>> {
        let parsed = schema::parse(file, src);
        let mut cx = Ctx {
            file,
            src,
            removed: &parsed.removed,
            problems: parsed.problems,
        };
        let profile = parsed.raw.and_then(|raw| build(&mut cx, raw, &parsed.root));
        match profile {
            Some(p) if cx.problems.is_empty() => Ok(p),
            _ => {
                if cx.problems.is_empty() {
                    cx.problems
                        .push(Problem::new(file, None, "profile could not be read"));
                }
                // In file order, as an engineer fixes them.
                cx.problems.sort_by_key(|p| p.line.unwrap_or(0));
                Err(cx.problems)
            }
        }
    }

    /// The frame type named `name`.
    pub fn frame(&self, name: &str) -> Option<&FrameSpec> {
        self.frames.iter().find(|f| f.name == name)
    }
}

struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
    removed: &'a Removed,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn at(&mut self, span: &Range<usize>, msg: impl Into<String>) {
        self.problems.push(Problem::new(
            self.file,
            Some(line_of(self.src, span.start)),
            msg,
        ));
    }

    /// A required key is absent (unless it was removed for a fault already reported).
    fn missing(&mut self, table: &Range<usize>, key: &str, msg: impl Into<String>) {
        if !self.removed.key(table, key) {
            self.at(table, msg);
        }
    }

    fn regex(&mut self, span: &Range<usize>, what: &str, pattern: &str) -> Option<Regex> {
        match RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(r) => Some(r),
            Err(e) => {
                let text = e.to_string();
                let reason = text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("invalid")
                    .trim()
                    .trim_start_matches("error: ")
                    .to_string();
                self.at(
                    span,
                    format!("{what} `{pattern}` is not a valid regex: {reason}"),
                );
                None
            }
        }
    }

    fn escaped(&mut self, s: &Spanned<String>, what: &str) -> Option<Vec<u8>> {
        match unescape(s.get_ref()) {
            Ok(b) => Some(b),
            Err(e) => {
                self.at(&s.span(), format!("{what}: {e}"));
                None
            }
        }
    }
}

/// Interprets `\r`, `\n`, `\t`, `\0`, `\\` and `\xHH` in a profile string (TOML's own escapes
/// have already been applied to double-quoted strings; single-quoted ones arrive raw).
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hi = chars.next().and_then(|c| c.to_digit(16));
                let lo = chars.next().and_then(|c| c.to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(((h << 4) | l) as u8),
                    _ => return Err("`\\x` needs two hex digits".to_string()),
                }
            }
            Some(other) => return Err(format!("unknown escape `\\{other}`")),
            None => return Err("a trailing `\\` escapes nothing".to_string()),
        }
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn build(cx: &mut Ctx<'_>, raw: schema::RawProfile, root: &Range<usize>) -> Option<DeviceProfile> {
    let name = match &raw.name {
        Some(n) => {
            if !valid_name(n.get_ref()) {
                cx.at(
                    &n.span(),
                    format!(
                        "name `{}`: use lowercase letters, digits, `.`, `_` and `-` (at most 64)",
                        n.get_ref()
                    ),
                );
            }
            n.get_ref().clone()
        }
        None => {
            cx.missing(root, "name", "the profile needs a `name`");
            String::new()
        }
    };
    let serial = serial(cx, raw.serial.as_ref());
    let framing_parts = raw.framing.as_ref().and_then(|f| framing(cx, f));
    if raw.framing.is_none() {
        cx.missing(root, "framing", "the profile needs a [framing] section");
    }
    let (framing, max_frame) = match framing_parts {
        Some(f) => (Some(f.0), f.1),
        None => (None, 512),
    };
    let checksum = match (&raw.checksum, framing) {
        (Some(c), Some(f)) => checksum(cx, c, f),
        _ => None,
    };
    let skip = skip(cx, &raw.skip, framing);
    let session = session(cx, raw.session.as_ref());
    let frames = frames(cx, &raw.frames, max_frame);
    let simulate = raw.simulate.as_ref().and_then(|s| {
        simulate(
            cx,
            s,
            &session,
            &skip,
            framing,
            max_frame,
            checksum.as_ref(),
            &frames,
        )
    });
    Some(DeviceProfile {
        name,
        description: raw.description.unwrap_or_default(),
        origin: cx.file.to_string(),
        serial,
        framing: framing?,
        max_frame,
        checksum,
        skip,
        session,
        frames,
        simulate,
    })
}

fn serial(cx: &mut Ctx<'_>, raw: Option<&Spanned<schema::RawSerial>>) -> SerialDefaults {
    let mut s = SerialDefaults::default();
    let Some(raw) = raw else {
        return s;
    };
    let r = raw.get_ref();
    if let Some(b) = &r.baud {
        if !(50..=4_000_000).contains(b.get_ref()) {
            cx.at(
                &b.span(),
                format!("baud {} is not a serial rate", b.get_ref()),
            );
        }
        s.baud = *b.get_ref();
    }
    if let Some(d) = &r.data_bits {
        if !(5..=8).contains(d.get_ref()) {
            cx.at(&d.span(), "data_bits must be 5, 6, 7 or 8");
        }
        s.data_bits = *d.get_ref();
    }
    if let Some(p) = r.parity {
        s.parity = match p {
            schema::RawParity::None => Parity::None,
            schema::RawParity::Even => Parity::Even,
            schema::RawParity::Odd => Parity::Odd,
        };
    }
    if let Some(b) = &r.stop_bits {
        if !(1..=2).contains(b.get_ref()) {
            cx.at(&b.span(), "stop_bits must be 1 or 2");
        }
        s.stop_bits = *b.get_ref();
    }
    if let Some(f) = r.flow_control {
        s.flow_control = match f {
            schema::RawFlowControl::None => FlowControl::None,
            schema::RawFlowControl::RtsCts => FlowControl::RtsCts,
            schema::RawFlowControl::XonXoff => FlowControl::XonXoff,
        };
    }
    s
}

fn byte_order(o: schema::RawByteOrder) -> ByteOrder {
    match o {
        schema::RawByteOrder::Big => ByteOrder::Big,
        schema::RawByteOrder::Little => ByteOrder::Little,
    }
}

fn framing(cx: &mut Ctx<'_>, raw: &Spanned<schema::RawFraming>) -> Option<(Framing, usize)> {
    use schema::RawFramingKind as K;
    let span = raw.span();
    let r = raw.get_ref();
    let max_frame = match &r.max_frame {
        Some(m) => {
            let v = *m.get_ref() as usize;
            if !(1..=MAX_FRAME_LIMIT).contains(&v) {
                cx.at(
                    &m.span(),
                    format!("max_frame must be 1 to {MAX_FRAME_LIMIT}"),
                );
            }
            v.clamp(1, MAX_FRAME_LIMIT)
        }
        None => 512,
    };
    let Some(kind) = r.kind else {
        cx.missing(
            &span,
            "type",
            "[framing] needs a `type`: line, stx_etx or length_prefix",
        );
        return None;
    };
    let not_for = |cx: &mut Ctx<'_>, key: &str, s: Option<Range<usize>>, what: &str| {
        if let Some(s) = s {
            cx.at(&s, format!("`{key}` does not apply to {what} framing"));
        }
    };
    let framing = match kind {
        K::Line => {
            not_for(cx, "start", r.start.as_ref().map(|s| s.span()), "line");
            not_for(cx, "end", r.end.as_ref().map(|s| s.span()), "line");
            not_for(
                cx,
                "length_bytes",
                r.length_bytes.as_ref().map(|s| s.span()),
                "line",
            );
            not_for(
                cx,
                "byte_order",
                r.byte_order.as_ref().map(|s| s.span()),
                "line",
            );
            not_for(
                cx,
                "length_includes_header",
                r.length_includes_header.as_ref().map(|s| s.span()),
                "line",
            );
            let terminator = match r.terminator.as_ref().map(|t| *t.get_ref()) {
                Some(schema::RawTerminator::Cr) => Terminator::Cr,
                Some(schema::RawTerminator::Lf) => Terminator::Lf,
                Some(schema::RawTerminator::Crlf) | None => Terminator::Crlf,
            };
            Framing::Line { terminator }
        }
        K::StxEtx => {
            not_for(
                cx,
                "terminator",
                r.terminator.as_ref().map(|s| s.span()),
                "stx_etx",
            );
            not_for(
                cx,
                "length_bytes",
                r.length_bytes.as_ref().map(|s| s.span()),
                "stx_etx",
            );
            not_for(
                cx,
                "byte_order",
                r.byte_order.as_ref().map(|s| s.span()),
                "stx_etx",
            );
            not_for(
                cx,
                "length_includes_header",
                r.length_includes_header.as_ref().map(|s| s.span()),
                "stx_etx",
            );
            let start = r.start.as_ref().map(|s| *s.get_ref()).unwrap_or(0x02);
            let end = r.end.as_ref().map(|s| *s.get_ref()).unwrap_or(0x03);
            if start == end {
                let at = r.end.as_ref().map(|s| s.span()).unwrap_or(span.clone());
                cx.at(&at, "start and end bytes must differ");
            }
            Framing::StxEtx { start, end }
        }
        K::LengthPrefix => {
            not_for(
                cx,
                "terminator",
                r.terminator.as_ref().map(|s| s.span()),
                "length_prefix",
            );
            not_for(cx, "end", r.end.as_ref().map(|s| s.span()), "length_prefix");
            let length_bytes = match &r.length_bytes {
                Some(l) => {
                    if !(1..=2).contains(l.get_ref()) {
                        cx.at(&l.span(), "length_bytes must be 1 or 2");
                    }
                    (*l.get_ref()).clamp(1, 2)
                }
                None => 1,
            };
            let start = r.start.as_ref().map(|s| *s.get_ref());
            let includes_header = r
                .length_includes_header
                .as_ref()
                .is_some_and(|b| *b.get_ref());
            let header = usize::from(start.is_some()) + usize::from(length_bytes);
            let largest = if length_bytes == 1 { 0xFF } else { 0xFFFF };
            let needed = max_frame + if includes_header { header } else { 0 };
            if needed > largest {
                let at = r
                    .max_frame
                    .as_ref()
                    .map(|m| m.span())
                    .unwrap_or(span.clone());
                cx.at(
                    &at,
                    format!(
                        "max_frame {max_frame} cannot be expressed in a {length_bytes}-byte length"
                    ),
                );
            }
            Framing::LengthPrefix {
                start,
                length_bytes,
                byte_order: r
                    .byte_order
                    .as_ref()
                    .map(|o| byte_order(*o.get_ref()))
                    .unwrap_or(ByteOrder::Big),
                includes_header,
            }
        }
    };
    Some((framing, max_frame))
}

fn checksum(
    cx: &mut Ctx<'_>,
    raw: &Spanned<schema::RawChecksum>,
    framing: Framing,
) -> Option<ChecksumSpec> {
    use schema::RawChecksumKind as K;
    let span = raw.span();
    let r = raw.get_ref();
    let Some(kind) = r.kind else {
        cx.missing(
            &span,
            "type",
            "[checksum] needs a `type`: none, sum8, xor8, crc16-ccitt, crc16-xmodem, crc16-x25 or crc16-modbus",
        );
        return None;
    };
    let algo = match kind {
        K::None => return None,
        K::Sum8 => ChecksumAlgo::Sum8,
        K::Xor8 => ChecksumAlgo::Xor8,
        K::Crc16Ccitt => ChecksumAlgo::Crc16(Crc16::Ccitt),
        K::Crc16Xmodem => ChecksumAlgo::Crc16(Crc16::Xmodem),
        K::Crc16X25 => ChecksumAlgo::Crc16(Crc16::X25),
        K::Crc16Modbus => ChecksumAlgo::Crc16(Crc16::Modbus),
    };
    let encoding = match r.encoding.as_ref().map(|e| *e.get_ref()) {
        Some(schema::RawEncoding::Binary) => Encoding::Binary,
        Some(schema::RawEncoding::Hex) | None => Encoding::Hex,
    };
    let default_position = match framing {
        Framing::StxEtx { .. } => Position::AfterEnd,
        _ => Position::BeforeEnd,
    };
    let position = match r.position.as_ref().map(|p| *p.get_ref()) {
        Some(schema::RawPosition::BeforeEnd) => Position::BeforeEnd,
        Some(schema::RawPosition::AfterEnd) => Position::AfterEnd,
        None => default_position,
    };
    let pos_span = r
        .position
        .as_ref()
        .map(|p| p.span())
        .unwrap_or(span.clone());
    let covers_start = r.covers_start.as_ref().is_some_and(|b| *b.get_ref());
    let covers_end = r.covers_end.as_ref().is_some_and(|b| *b.get_ref());
    match framing {
        Framing::Line { .. } => {
            if position == Position::AfterEnd {
                cx.at(
                    &pos_span,
                    "checksum position after_end conflicts with line framing: bytes after the terminator belong to the next line; use before_end",
                );
            }
            if let Some(c) = r.covers_start.as_ref().filter(|c| *c.get_ref()) {
                cx.at(&c.span(), "covers_start: a line has no start byte");
            }
            if let Some(c) = r.covers_end.as_ref().filter(|c| *c.get_ref()) {
                cx.at(
                    &c.span(),
                    "covers_end: a line's terminator follows its checksum",
                );
            }
        }
        Framing::StxEtx { .. } => {
            if position == Position::BeforeEnd {
                if let Some(c) = r.covers_end.as_ref().filter(|c| *c.get_ref()) {
                    cx.at(
                        &c.span(),
                        "covers_end conflicts with position before_end: the end byte follows the checksum",
                    );
                }
            }
        }
        Framing::LengthPrefix { .. } => {
            if let Some(c) = r.covers_end.as_ref().filter(|c| *c.get_ref()) {
                cx.at(
                    &c.span(),
                    "covers_end: length_prefix frames have no end byte",
                );
            }
        }
    }
    let delimited = !matches!(framing, Framing::LengthPrefix { .. });
    if encoding == Encoding::Binary && delimited {
        let enc_span = r
            .encoding
            .as_ref()
            .map(|e| e.span())
            .unwrap_or(span.clone());
        if position == Position::BeforeEnd {
            cx.at(
                &enc_span,
                "a binary checksum before the end marker can equal the marker and cut the frame; use encoding = \"hex\" or position = \"after_end\"",
            );
        }
    }
    if let Some(o) = &r.byte_order {
        if encoding != Encoding::Binary || !matches!(algo, ChecksumAlgo::Crc16(_)) {
            cx.at(
                &o.span(),
                "byte_order applies only to binary crc16 checksums",
            );
        }
    }
    Some(ChecksumSpec {
        algo,
        encoding,
        position,
        covers_start,
        covers_end,
        byte_order: r
            .byte_order
            .as_ref()
            .map(|o| byte_order(*o.get_ref()))
            .unwrap_or(ByteOrder::Big),
    })
}

fn skip(cx: &mut Ctx<'_>, raw: &[Spanned<schema::RawSkip>], framing: Option<Framing>) -> ByteSet {
    let mut set = ByteSet::default();
    for s in raw {
        let span = s.span();
        if cx.removed.element(&span) {
            continue;
        }
        let r = s.get_ref();
        let Some(from) = &r.from else {
            cx.missing(&span, "from", "a [[skip]] range needs `from`");
            continue;
        };
        let from_v = *from.get_ref();
        let to_v = r.to.as_ref().map(|t| *t.get_ref()).unwrap_or(from_v);
        if from_v > to_v {
            cx.at(
                &span,
                format!("skip range {from_v:#04x}..={to_v:#04x} is empty"),
            );
            continue;
        }
        if let Some(f) = framing {
            if let Framing::LengthPrefix { start: None, .. } = f {
                cx.at(
                    &span,
                    "length_prefix framing without a start byte cannot tell skipped bytes from a length",
                );
            }
            for m in f.markers() {
                if (from_v..=to_v).contains(&m) {
                    cx.at(
                        &span,
                        format!("skip range {from_v:#04x}..={to_v:#04x} contains the framing byte {m:#04x}"),
                    );
                }
            }
        }
        for b in from_v..=to_v {
            set.insert(b);
        }
    }
    set
}

fn session(cx: &mut Ctx<'_>, raw: Option<&Spanned<schema::RawSession>>) -> SessionSpec {
    let mut s = SessionSpec::default();
    let Some(raw) = raw else {
        return s;
    };
    let r = raw.get_ref();
    if let Some(c) = &r.on_connect {
        s.on_connect = cx.escaped(c, "on_connect").unwrap_or_default();
    }
    for p in &r.poll {
        let span = p.span();
        if cx.removed.element(&span) {
            continue;
        }
        let pr = p.get_ref();
        let bytes = match &pr.send {
            Some(b) => match cx.escaped(b, "send") {
                Some(v) if v.is_empty() => {
                    cx.at(&b.span(), "a poll sends at least one byte");
                    v
                }
                Some(v) => v,
                None => Vec::new(),
            },
            None => {
                cx.missing(&span, "send", "a [[session.poll]] needs `send`");
                Vec::new()
            }
        };
        let every_ms = match &pr.every_ms {
            Some(e) => {
                if *e.get_ref() < 10 {
                    cx.at(&e.span(), "every_ms must be at least 10");
                }
                (*e.get_ref()).max(10)
            }
            None => {
                cx.missing(&span, "every_ms", "a [[session.poll]] needs `every_ms`");
                1000
            }
        };
        s.polls.push(PollSpec { bytes, every_ms });
    }
    if let Some(t) = &r.silence_timeout_ms {
        let v = *t.get_ref();
        if v < 100 {
            cx.at(&t.span(), "silence_timeout_ms must be at least 100");
        }
        if let Some(slowest) = s.polls.iter().map(|p| p.every_ms).max() {
            if v <= slowest {
                cx.at(
                    &t.span(),
                    format!(
                        "silence_timeout_ms {v} is not longer than the slowest poll ({slowest} ms): a device that only answers polls would be dropped between them"
                    ),
                );
            }
        }
        s.silence_timeout_ms = Some(v.max(100));
    }
    s
}

/// What a location may be, given the frame's extraction.
struct LocationRules<'a> {
    extract: Option<RawExtract>,
    captures: &'a [String],
    field_count: Option<usize>,
    max_frame: usize,
    constant_allowed: bool,
}

#[allow(clippy::too_many_arguments)]
fn location(
    cx: &mut Ctx<'_>,
    span: &Range<usize>,
    what: &str,
    index: Option<&Spanned<u32>>,
    start: Option<&Spanned<u32>>,
    width: Option<&Spanned<u32>>,
    capture: Option<&Spanned<String>>,
    constant: Option<&Spanned<String>>,
    rules: &LocationRules<'_>,
) -> Option<Location> {
    let given = [
        index.is_some(),
        start.is_some() || width.is_some(),
        capture.is_some(),
        constant.is_some(),
    ];
    let count = given.iter().filter(|g| **g).count();
    if count > 1 {
        cx.at(
            span,
            format!(
                "{what}: give one of `index`, `start`+`width`, `capture`{}",
                if rules.constant_allowed {
                    ", `value`"
                } else {
                    ""
                }
            ),
        );
        return None;
    }
    if let Some(v) = constant {
        if !rules.constant_allowed {
            cx.at(&v.span(), format!("{what}: `value` is only for channels"));
            return None;
        }
        return Some(Location::Constant(v.get_ref().clone()));
    }
    let extract = rules.extract?;
    let hint = match extract {
        RawExtract::Delimited => "`index`",
        RawExtract::Fixed => "`start` and `width`",
        RawExtract::Regex => "`capture`",
    };
    if let Some(i) = index {
        if extract != RawExtract::Delimited {
            cx.at(
                &i.span(),
                format!("{what}: `index` is for delimited frames; use {hint}"),
            );
            return None;
        }
        let v = *i.get_ref() as usize;
        if let Some(n) = rules.field_count {
            if v >= n {
                cx.at(
                    &i.span(),
                    format!("{what}: index {v} is beyond the frame's {n} fields (field_count)"),
                );
                return None;
            }
        }
        if v >= rules.max_frame {
            cx.at(
                &i.span(),
                format!(
                    "{what}: index {v} cannot fit in a {}-byte frame",
                    rules.max_frame
                ),
            );
            return None;
        }
        return Some(Location::Index(v));
    }
    if start.is_some() || width.is_some() {
        let at = start.or(width).map(|s| s.span()).unwrap_or(span.clone());
        if extract != RawExtract::Fixed {
            cx.at(
                &at,
                format!("{what}: `start`/`width` are for fixed frames; use {hint}"),
            );
            return None;
        }
        let (Some(s), Some(w)) = (start, width) else {
            cx.at(
                &at,
                format!("{what}: fixed columns need both `start` and `width`"),
            );
            return None;
        };
        let (s, w) = (*s.get_ref() as usize, *w.get_ref() as usize);
        if w == 0 {
            cx.at(&at, format!("{what}: width must be at least 1"));
            return None;
        }
        if s + w > rules.max_frame {
            cx.at(
                &at,
                format!(
                    "{what}: columns {s}..{} are beyond max_frame {}",
                    s + w,
                    rules.max_frame
                ),
            );
            return None;
        }
        return Some(Location::Columns { start: s, width: w });
    }
    if let Some(c) = capture {
        if extract != RawExtract::Regex {
            cx.at(
                &c.span(),
                format!("{what}: `capture` is for regex frames; use {hint}"),
            );
            return None;
        }
        if !rules.captures.iter().any(|n| n == c.get_ref()) {
            // The regex itself failed when there are no captures to check against.
            if !rules.captures.is_empty() {
                cx.at(
                    &c.span(),
                    format!(
                        "{what}: the frame's regex has no capture named `{}` (it has {})",
                        c.get_ref(),
                        rules.captures.join(", ")
                    ),
                );
            }
            return None;
        }
        return Some(Location::Capture(c.get_ref().clone()));
    }
    cx.at(span, format!("{what}: say where the value is with {hint}"));
    None
}

/// Which frames a frame type takes, as far as shadowing goes.
enum Takes {
    All,
    Prefix(String),
    /// Depends on a regex: not known to shadow anything.
    Some,
}

fn frames(cx: &mut Ctx<'_>, raw: &[Spanned<schema::RawFrame>], max_frame: usize) -> Vec<FrameSpec> {
    let mut out: Vec<FrameSpec> = Vec::new();
    // (name, line, what it takes) of frames so far, to find unreachable ones.
    let mut seen: Vec<(String, usize, Takes)> = Vec::new();
    for f in raw {
        let span = f.span();
        if cx.removed.element(&span) {
            continue;
        }
        let r = f.get_ref();
        let line = line_of(cx.src, span.start);
        let name = match &r.name {
            Some(n) if !n.get_ref().trim().is_empty() => {
                if let Some((_, l, _)) = seen.iter().find(|s| s.0 == *n.get_ref()) {
                    cx.at(
                        &n.span(),
                        format!("frame `{}` is already defined at line {l}", n.get_ref()),
                    );
                }
                n.get_ref().clone()
            }
            Some(n) => {
                cx.at(&n.span(), "a frame name cannot be empty");
                String::new()
            }
            None => {
                cx.missing(&span, "name", "a [[frame]] needs a `name`");
                String::new()
            }
        };
        let extract_kind = r
            .extract
            .as_ref()
            .map(|e| *e.get_ref())
            .unwrap_or(RawExtract::Delimited);
        let mut ok = true;
        let mut matcher_ok = true;
        if r.prefix.is_some() && r.pattern.is_some() {
            if let Some(p) = &r.pattern {
                cx.at(&p.span(), "give `prefix` or `pattern`, not both");
            }
            matcher_ok = false;
        }
        let matcher = match (&r.prefix, &r.pattern) {
            (Some(p), _) => {
                if p.get_ref().is_empty() {
                    cx.at(
                        &p.span(),
                        "an empty prefix matches every frame; leave it out",
                    );
                }
                Matcher::Prefix(p.get_ref().clone())
            }
            (None, Some(p)) => {
                if extract_kind == RawExtract::Regex {
                    cx.at(&p.span(), "regex frames match with their `regex`; `pattern` is for delimited and fixed frames");
                }
                match cx.regex(&p.span(), "pattern", p.get_ref()) {
                    Some(re) => Matcher::Pattern(re),
                    None => {
                        matcher_ok = false;
                        Matcher::Any
                    }
                }
            }
            (None, None) => Matcher::Any,
        };
        // Unreachable: an earlier frame takes everything, or everything with a prefix of ours.
        let takes = match &matcher {
            Matcher::Any if extract_kind != RawExtract::Regex => Takes::All,
            Matcher::Prefix(p) if extract_kind != RawExtract::Regex => Takes::Prefix(p.clone()),
            _ => Takes::Some,
        };
        for (other, other_line, other_takes) in &seen {
            let shadowed = match (other_takes, &matcher) {
                (Takes::All, _) => true,
                (Takes::Prefix(op), Matcher::Prefix(mp)) => mp.starts_with(op.as_str()),
                _ => false,
            };
            if shadowed {
                cx.at(
                    &span,
                    format!("frame `{name}` can never match: frame `{other}` (line {other_line}) takes its frames first"),
                );
                break;
            }
        }
        if matcher_ok {
            seen.push((name.clone(), line, takes));
        }
        let not_for = |cx: &mut Ctx<'_>, key: &str, s: Option<Range<usize>>| {
            if let Some(s) = s {
                cx.at(
                    &s,
                    format!(
                        "`{key}` does not apply to {} frames",
                        match extract_kind {
                            RawExtract::Delimited => "delimited",
                            RawExtract::Fixed => "fixed",
                            RawExtract::Regex => "regex",
                        }
                    ),
                );
            }
        };
        let mut captures: Vec<String> = Vec::new();
        let extract = match extract_kind {
            RawExtract::Delimited => {
                not_for(cx, "regex", r.regex.as_ref().map(|s| s.span()));
                let sep = match &r.separator {
                    Some(s) if s.get_ref().is_empty() => {
                        cx.at(&s.span(), "separator cannot be empty");
                        ";".to_string()
                    }
                    Some(s) => s.get_ref().clone(),
                    None => ";".to_string(),
                };
                Extract::Delimited { separator: sep }
            }
            RawExtract::Fixed => {
                not_for(cx, "regex", r.regex.as_ref().map(|s| s.span()));
                not_for(cx, "separator", r.separator.as_ref().map(|s| s.span()));
                not_for(cx, "field_count", r.field_count.as_ref().map(|s| s.span()));
                Extract::Fixed
            }
            RawExtract::Regex => {
                not_for(cx, "separator", r.separator.as_ref().map(|s| s.span()));
                not_for(cx, "field_count", r.field_count.as_ref().map(|s| s.span()));
                match &r.regex {
                    Some(p) => match cx.regex(&p.span(), "regex", p.get_ref()) {
                        Some(re) => {
                            captures = re.capture_names().flatten().map(str::to_string).collect();
                            if captures.is_empty() {
                                cx.at(&p.span(), "regex has no named captures (`(?P<name>...)`) to take fields from");
                            }
                            Extract::Regex(re)
                        }
                        None => {
                            ok = false;
                            Extract::Fixed
                        }
                    },
                    None => {
                        cx.missing(
                            &span,
                            "regex",
                            "a regex frame needs a `regex` with named captures",
                        );
                        ok = false;
                        Extract::Fixed
                    }
                }
            }
        };
        let rules = LocationRules {
            extract: if ok { Some(extract_kind) } else { None },
            captures: &captures,
            field_count: r.field_count.as_ref().map(|c| *c.get_ref() as usize),
            max_frame,
            constant_allowed: true,
        };
        let channel = r.channel.as_ref().and_then(|c| {
            let cr = c.get_ref();
            location(
                cx,
                &c.span(),
                "channel",
                cr.index.as_ref(),
                cr.start.as_ref(),
                cr.width.as_ref(),
                cr.capture.as_ref(),
                cr.value.as_ref(),
                &rules,
            )
        });
        let frame_no_value = r.no_value.clone().unwrap_or_default();
        let mut fields = Vec::new();
        for fl in &r.fields {
            if let Some(field) = field(cx, fl, &name, &rules, &frame_no_value) {
                fields.push(field);
            }
        }
        out.push(FrameSpec {
            name,
            matcher,
            extract,
            channel,
            fields,
        });
    }
    out
}

fn field(
    cx: &mut Ctx<'_>,
    raw: &Spanned<schema::RawField>,
    frame: &str,
    rules: &LocationRules<'_>,
    frame_no_value: &[String],
) -> Option<FieldSpec> {
    let span = raw.span();
    if cx.removed.element(&span) {
        return None;
    }
    let r = raw.get_ref();
    let what = format!("frame `{frame}` field");
    let field_rules = LocationRules {
        constant_allowed: false,
        ..*rules
    };
    let loc = location(
        cx,
        &span,
        &what,
        r.index.as_ref(),
        r.start.as_ref(),
        r.width.as_ref(),
        r.capture.as_ref(),
        None,
        &field_rules,
    );
    let code = match &r.code {
        Some(c) => match parse_code(c.get_ref()) {
            Ok(code) => {
                if let Err(e) = check_known_mdc(&code) {
                    cx.at(&c.span(), e);
                }
                Some(code)
            }
            Err(e) => {
                cx.at(&c.span(), e);
                None
            }
        },
        None => {
            cx.missing(&span, "code", format!("{what} needs a `code` (`MDC <number> <REFID>`, `LOINC <code>` or `LOCAL <code>`)"));
            None
        }
    };
    let kind = match r.kind.as_ref().map(|k| *k.get_ref()) {
        Some(schema::RawValueKind::Text) => ValueKind::Text,
        _ => ValueKind::Number,
    };
    let unit = match &r.unit {
        Some(u) => {
            if let Err(e) = check_unit(u.get_ref()) {
                cx.at(&u.span(), e);
            }
            if kind == ValueKind::Text && !u.get_ref().is_empty() {
                cx.at(&u.span(), "a text field has no unit");
            }
            u.get_ref().clone()
        }
        None => String::new(),
    };
    let number = |cx: &mut Ctx<'_>, v: Option<&Spanned<f64>>, key: &str, default: f64| match v {
        Some(s) => {
            let x = *s.get_ref();
            if kind == ValueKind::Text {
                cx.at(&s.span(), format!("`{key}` does not apply to a text field"));
            } else if !x.is_finite() || (key == "scale" && x == 0.0) {
                cx.at(&s.span(), format!("{key} {x} is not usable"));
            }
            x
        }
        None => default,
    };
    let scale = number(cx, r.scale.as_ref(), "scale", 1.0);
    let offset = number(cx, r.offset.as_ref(), "offset", 0.0);
    let channel = r.channel.as_ref().and_then(|c| {
        let cr = c.get_ref();
        location(
            cx,
            &c.span(),
            "channel",
            cr.index.as_ref(),
            cr.start.as_ref(),
            cr.width.as_ref(),
            cr.capture.as_ref(),
            cr.value.as_ref(),
            rules,
        )
    });
    let no_value: Vec<String> = r
        .no_value
        .clone()
        .unwrap_or_else(|| frame_no_value.to_vec())
        .into_iter()
        .map(|s| s.trim().to_string())
        .collect();
    Some(FieldSpec {
        location: loc?,
        code: code?,
        unit,
        kind,
        scale,
        offset,
        no_value,
        channel,
        label: r.label.clone().unwrap_or_else(|| frame.to_string()),
        optional: r.optional,
    })
}

/// `MDC 147842 MDC_ECG_HEART_RATE`, `LOINC 8867-4` or `LOCAL PUMP_STATE` (what `DeviceCode`
/// displays).
pub fn parse_code(s: &str) -> Result<DeviceCode, String> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    match parts.as_slice() {
        ["MDC", num, refid] => {
            let code: u32 = num
                .parse()
                .map_err(|_| format!("code `{s}`: `{num}` is not an MDC code number"))?;
            if code == 0 {
                return Err(format!("code `{s}`: MDC codes are not 0"));
            }
            let refid_ok = refid.starts_with("MDC_")
                && refid.len() > 4
                && refid
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !refid_ok {
                return Err(format!(
                    "code `{s}`: `{refid}` is not an MDC reference id (MDC_ followed by capitals, digits and _)"
                ));
            }
            Ok(DeviceCode::Mdc {
                code,
                refid: refid.to_string().into(),
            })
        }
        ["LOINC", code] => {
            if loinc_ok(code) {
                Ok(DeviceCode::Loinc {
                    code: code.to_string(),
                })
            } else {
                Err(format!(
                    "code `{s}`: `{code}` is not a LOINC code (digits, `-`, a check digit that matches)"
                ))
            }
        }
        ["LOCAL", code] => {
            if code.len() <= 64
                && code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
            {
                Ok(DeviceCode::Local {
                    code: code.to_string(),
                })
            } else {
                Err(format!(
                    "code `{s}`: a local code is letters, digits, `_`, `-`, `.`, `:` (at most 64)"
                ))
            }
        }
        _ => Err(format!(
            "code `{s}`: write `MDC <number> <REFID>`, `LOINC <code>` or `LOCAL <code>`"
        )),
    }
}

/// LOINC codes end in a mod-10 check digit (the Luhn scheme).
fn loinc_ok(code: &str) -> bool {
    let Some((body, check)) = code.split_once('-') else {
        return false;
    };
    if body.is_empty()
        || body.len() > 7
        || check.len() != 1
        || !body.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    let Some(check) = check.bytes().next().filter(u8::is_ascii_digit) else {
        return false;
    };
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                x / 10 + x % 10
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10 == u32::from(check - b'0')
}

/// (code, refid) rows of the shipped code table, to catch a mistyped code or reference id.
fn known_mdc() -> &'static [(u32, String)] {
    static KNOWN: OnceLock<Vec<(u32, String)>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let src = include_str!("../../../device-profiles/codes.toml");
        let Ok(doc) = src.parse::<toml::Table>() else {
            return Vec::new();
        };
        doc.get("mdc")
            .and_then(|v| v.as_array())
            .map(|rows| {
                rows.iter()
                    .filter_map(|row| {
                        let code = u32::try_from(row.get("code")?.as_integer()?).ok()?;
                        let refid = row.get("refid")?.as_str()?.to_string();
                        Some((code, refid))
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
}

fn check_known_mdc(code: &DeviceCode) -> Result<(), String> {
    let DeviceCode::Mdc { code, refid } = code else {
        return Ok(());
    };
    let known = known_mdc();
    let refids: Vec<&str> = known
        .iter()
        .filter(|(c, _)| c == code)
        .map(|(_, r)| r.as_str())
        .collect();
    if !refids.is_empty() && !refids.contains(&refid.as_ref()) {
        return Err(format!(
            "MDC {code} is {} in codes.toml, not {refid}",
            refids.join(" / ")
        ));
    }
    if let Some((other, _)) = known.iter().find(|(c, r)| r == refid.as_ref() && c != code) {
        return Err(format!("{refid} is MDC {other} in codes.toml, not {code}"));
    }
    Ok(())
}

/// UCUM syntax as far as a profile needs it, and the spellings the code tables know as aliases
/// (`mmHg` → `mm[Hg]`) refused with the UCUM to write instead.
pub fn check_unit(unit: &str) -> Result<(), String> {
    if unit.is_empty() {
        return Ok(());
    }
    static TABLES: OnceLock<Option<NormalizeTables>> = OnceLock::new();
    if let Some(t) = TABLES.get_or_init(|| NormalizeTables::builtin().ok()) {
        let ucum = t.ucum_alias(unit);
        if ucum != unit {
            return Err(format!("unit `{unit}` is not UCUM; write `{ucum}`"));
        }
    }
    let mut square = false;
    let mut curly = false;
    for c in unit.chars() {
        match c {
            '[' if !square && !curly => square = true,
            ']' if square => square = false,
            '{' if !square && !curly => curly = true,
            '}' if curly => curly = false,
            _ if curly => {}
            c if c.is_ascii_alphanumeric() || "%/.*^_-'".contains(c) => {}
            _ => return Err(format!("unit `{unit}` is not UCUM (`{c}` is out of place)")),
        }
    }
    if square || curly {
        return Err(format!("unit `{unit}` has an unclosed bracket"));
    }
    if unit.ends_with('/') || unit.ends_with('.') || unit.contains("//") || unit.contains("..") {
        return Err(format!("unit `{unit}` is not UCUM (a dangling operator)"));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn simulate(
    cx: &mut Ctx<'_>,
    raw: &Spanned<schema::RawSimulate>,
    session: &SessionSpec,
    skip: &ByteSet,
    framing: Option<Framing>,
    max_frame: usize,
    checksum: Option<&ChecksumSpec>,
    frames: &[FrameSpec],
) -> Option<SimulateSpec> {
    let span = raw.span();
    let r = raw.get_ref();
    let interval_ms = match &r.interval_ms {
        Some(i) => {
            if *i.get_ref() < 10 {
                cx.at(&i.span(), "interval_ms must be at least 10");
            }
            (*i.get_ref()).max(10)
        }
        None => 1000,
    };
    let mut traces = Vec::new();
    for (name, t) in &r.trace {
        let tr = t.get_ref();
        let base = match tr.base {
            Some(b) if b.is_finite() => b,
            Some(_) => {
                cx.at(
                    &t.span(),
                    format!("trace `{name}`: base must be a finite number"),
                );
                0.0
            }
            None => {
                cx.missing(&t.span(), "base", format!("trace `{name}` needs a `base`"));
                0.0
            }
        };
        let period_ms = match &tr.period_ms {
            Some(p) if *p.get_ref() > 0 => *p.get_ref(),
            Some(p) => {
                cx.at(
                    &p.span(),
                    format!("trace `{name}`: period_ms must be positive"),
                );
                60_000
            }
            None => 60_000,
        };
        let decimals = match &tr.decimals {
            Some(d) if (0..=6).contains(d.get_ref()) => *d.get_ref(),
            Some(d) => {
                cx.at(
                    &d.span(),
                    format!("trace `{name}`: decimals must be 0 to 6"),
                );
                0
            }
            None => 0,
        };
        let swing = tr.swing.unwrap_or(0.0);
        let step = tr.step.unwrap_or(0.0);
        if !swing.is_finite() || !step.is_finite() {
            cx.at(
                &t.span(),
                format!("trace `{name}`: swing and step must be finite"),
            );
        }
        traces.push(TraceSpec {
            name: name.clone(),
            trace: SimTrace {
                base,
                swing,
                period_ms,
                step,
                step_after_ms: tr.step_after_ms.unwrap_or(i64::MAX),
            },
            decimals,
        });
    }
    let names: Vec<&str> = traces.iter().map(|t| t.name.as_str()).collect();
    let mut templates = Vec::new();
    if r.frames.is_empty() {
        cx.missing(&span, "frames", "[simulate] needs `frames` to print");
    }
    for f in &r.frames {
        match Template::parse(f.get_ref(), &names) {
            Ok(t) => templates.push((f.span(), t)),
            Err(e) => cx.at(&f.span(), format!("simulate frame: {e}")),
        }
    }
    let noise = r.noise.as_ref().and_then(|n| {
        let nr = n.get_ref();
        let (Some(count), Some(from)) = (&nr.count, &nr.from) else {
            cx.at(&n.span(), "noise needs `count` and `from` (and `to`)");
            return None;
        };
        let from_v = *from.get_ref();
        let to_v = nr.to.as_ref().map(|t| *t.get_ref()).unwrap_or(from_v);
        if *count.get_ref() > MAX_NOISE {
            cx.at(&count.span(), format!("noise count is at most {MAX_NOISE}"));
        }
        if from_v > to_v {
            cx.at(&n.span(), "noise range is empty");
            return None;
        }
        if let Some(b) = (from_v..=to_v).find(|b| !skip.contains(*b)) {
            cx.at(
                &n.span(),
                format!("noise byte {b:#04x} is not in a [[skip]] range: the driver would count it as garbage"),
            );
        }
        Some(NoiseSpec {
            count: (*count.get_ref()).min(MAX_NOISE),
            from: from_v,
            to: to_v,
        })
    });
    if r.answer_poll && session.polls.is_empty() {
        cx.at(
            &span,
            "answer_poll needs at least one [[session.poll]] to answer",
        );
    }
    // Each template, rendered at its start values, must be a frame this profile decodes.
    if let Some(framing) = framing {
        for (tspan, t) in &templates {
            let content = t.render(&traces, 0);
            let inner_checksum = checksum
                .filter(|c| c.position == Position::BeforeEnd)
                .map_or(0, ChecksumSpec::encoded_len);
            if content.len() + inner_checksum > max_frame {
                cx.at(
                    tspan,
                    format!(
                        "simulate frame is {} bytes with its checksum, over max_frame {max_frame}",
                        content.len() + inner_checksum
                    ),
                );
                continue;
            }
            if !matches!(framing, Framing::LengthPrefix { .. }) {
                if let Some(m) = framing.markers().into_iter().find(|m| content.contains(m)) {
                    cx.at(
                        tspan,
                        format!("simulate frame contains the framing byte {m:#04x}"),
                    );
                    continue;
                }
            }
            if matches!(framing, Framing::Line { .. }) {
                if let Some(b) = content.iter().find(|b| skip.contains(**b)) {
                    cx.at(
                        tspan,
                        format!("simulate frame contains {b:#04x}, a byte the profile skips"),
                    );
                    continue;
                }
            }
            let d = extract::decode(frames, &content);
            if !d.matched {
                cx.at(tspan, "simulate frame matches no [[frame]]");
            } else if d.errors > 0 {
                cx.at(
                    tspan,
                    format!(
                        "simulate frame does not decode: {}",
                        d.first_error.unwrap_or_default()
                    ),
                );
            }
        }
    }
    Some(SimulateSpec {
        interval_ms,
        frames: templates.into_iter().map(|(_, t)| t).collect(),
        traces,
        noise,
        answer_poll: r.answer_poll,
    })
}
