//! The zero-copy message tree: one scan over the bytes records where segments and fields
//! start; repetitions, components and subcomponents are split lazily on access.

use std::borrow::Cow;

use memchr::{memchr, memchr3};
use thiserror::Error;

use super::escape::unescape;

const CR: u8 = b'\r';
const LF: u8 = b'\n';
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The separators a message declares in MSH-1 and MSH-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delimiters {
    pub field: u8,
    pub component: u8,
    pub repetition: u8,
    pub escape: u8,
    pub subcomponent: u8,
    /// The v2.7+ truncation character (fifth MSH-2 character), when declared.
    pub truncation: Option<u8>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            field: b'|',
            component: b'^',
            repetition: b'~',
            escape: b'\\',
            subcomponent: b'&',
            truncation: None,
        }
    }
}

impl Delimiters {
    /// MSH-2 as it would be written for these delimiters.
    pub fn encoding_characters(&self) -> String {
        let mut s = String::with_capacity(5);
        for b in [
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ] {
            s.push(char::from(b));
        }
        if let Some(t) = self.truncation {
            s.push(char::from(t));
        }
        s
    }
}

/// How the message bytes were turned into text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextEncoding {
    Utf8,
    /// ISO-8859-1: declared in MSH-18, or the bytes were not valid UTF-8.
    Latin1,
}

/// What was wrong with the input.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ParseErrorKind {
    #[error("empty message")]
    Empty,
    #[error("message does not start with MSH (found {found:?})")]
    NotMsh { found: String },
    #[error("MSH segment too short to hold the encoding characters")]
    MshTooShort,
    #[error("bad encoding characters {found:?}: {why}")]
    BadEncodingChars { found: String, why: &'static str },
    #[error("bad segment name {found:?} (want 3 upper-case letters or digits)")]
    BadSegmentName { found: String },
    #[error("message larger than 4 GiB")]
    TooLarge,
}

/// A parse failure with the byte offset (into the input) and the segment where known.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("byte {offset}{}: {kind}", seg_label(.segment_index, .segment_name))]
pub struct ParseError {
    pub offset: usize,
    /// 1-based index of the segment (blank lines not counted).
    pub segment_index: Option<usize>,
    pub segment_name: Option<String>,
    pub kind: ParseErrorKind,
}

fn seg_label(index: &Option<usize>, name: &Option<String>) -> String {
    match (index, name) {
        (Some(i), Some(n)) => format!(" (segment {i} {n})"),
        (Some(i), None) => format!(" (segment {i})"),
        (None, Some(n)) => format!(" ({n})"),
        (None, None) => String::new(),
    }
}

impl ParseError {
    fn new(offset: usize, segment: Option<(usize, &[u8])>, kind: ParseErrorKind) -> Self {
        ParseError {
            offset,
            segment_index: segment.map(|(i, _)| i),
            segment_name: segment.map(|(_, n)| short_lossy(n)),
            kind,
        }
    }
}

fn short_lossy(b: &[u8]) -> String {
    let cut = &b[..b.len().min(16)];
    String::from_utf8_lossy(cut).into_owned()
}

#[derive(Clone, Copy, Debug)]
struct SegSpan {
    start: u32,
    end: u32,
    /// `seps[sep_lo..sep_hi]` are the field-separator positions inside this segment.
    sep_lo: u32,
    sep_hi: u32,
    /// MSH, FHS, BHS: field 1 is the separator itself. Settled once, when the segment is found.
    header: bool,
}

struct Index {
    delims: Delimiters,
    segs: Vec<SegSpan>,
    seps: Vec<u32>,
}

/// One parsed message. Borrows the input unless it had to be transcoded from Latin-1.
pub struct Message<'a> {
    text: Cow<'a, str>,
    encoding: TextEncoding,
    idx: Index,
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("type", &self.message_type())
            .field("control_id", &self.control_id())
            .field("segments", &self.idx.segs.len())
            .finish()
    }
}

/// Parses one message (no MLLP envelope). Never panics; malformed input is a positioned error.
pub fn parse(input: &[u8]) -> Result<Message<'_>, ParseError> {
    parse_with(input, ParseBuffers::default())
}

/// The vectors a parse fills with segment and separator positions, handed from one message to
/// the next ([`parse_with`], [`Message::into_buffers`]) so a steady stream parses without
/// allocating them anew.
#[derive(Default)]
pub struct ParseBuffers {
    segs: Vec<SegSpan>,
    seps: Vec<u32>,
}

impl ParseBuffers {
    /// Entries a kept buffer may hold: one unusually large message does not pin its memory.
    const KEEP: usize = 1 << 16;

    fn trimmed(mut self) -> Self {
        if self.seps.capacity() > Self::KEEP {
            self.seps = Vec::new();
        }
        if self.segs.capacity() > Self::KEEP {
            self.segs = Vec::new();
        }
        self
    }
}

/// [`parse`] into buffers a previous message gave back.
pub fn parse_with(input: &[u8], bufs: ParseBuffers) -> Result<Message<'_>, ParseError> {
    if u32::try_from(input.len()).is_err() {
        return Err(ParseError::new(0, None, ParseErrorKind::TooLarge));
    }
    let idx = index(input, bufs)?;
    let declared_latin1 = declared_charset(input, &idx).is_some_and(is_latin1_name);
    let utf8 = std::str::from_utf8(input).ok();
    match utf8 {
        Some(s) if !declared_latin1 || s.is_ascii() => Ok(Message {
            text: Cow::Borrowed(s),
            encoding: TextEncoding::Utf8,
            idx,
        }),
        _ => {
            // Latin-1 maps each byte to one char, so nothing is lost; the delimiters are
            // ASCII, so the structure is unchanged and re-indexing cannot fail differently.
            let owned: String = input.iter().map(|&b| char::from(b)).collect();
            let bufs = ParseBuffers {
                segs: idx.segs,
                seps: idx.seps,
            };
            let idx = index(owned.as_bytes(), bufs)?;
            Ok(Message {
                text: Cow::Owned(owned),
                encoding: TextEncoding::Latin1,
                idx,
            })
        }
    }
}

/// First `needle` in `hay`. HL7 pieces are short (a few bytes), where a plain loop beats the
/// fixed cost of a vectorised search; long text still gets memchr.
/// Short pieces are searched eight bytes at a time in a `u64` (SWAR, exact zero-byte test).
#[inline]
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() >= 32 {
        return memchr(needle, hay);
    }
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let pat = ONES * u64::from(needle);
    let mut i = 0;
    while let Some(chunk) = hay.get(i..i + 8) {
        let word = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes) ^ pat;
        // High bit set exactly in the bytes equal to `needle`.
        let hits = !(((word & LOW7).wrapping_add(LOW7)) | word | LOW7);
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let tail = hay.get(i..).unwrap_or_default();
    tail.iter().position(|&b| b == needle).map(|p| i + p)
}

/// First `a` or `b` in `hay`, as [`find_byte`] does for one byte.
#[inline]
pub(crate) fn find_either(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() >= 48 {
        return memchr::memchr2(a, b, hay);
    }
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let zero = |x: u64| !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7);
    let (pa, pb) = (ONES * u64::from(a), ONES * u64::from(b));
    let mut i = 0;
    while let Some(chunk) = hay.get(i..i + 8) {
        let word = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes);
        let hits = zero(word ^ pa) | zero(word ^ pb);
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let tail = hay.get(i..).unwrap_or_default();
    tail.iter().position(|&c| c == a || c == b).map(|p| i + p)
}

/// The first `N` components of the first repetition of `s`, in one scan: split on `comp`,
/// stopping at the first `rep`.
#[inline(always)]
pub(crate) fn first_rep_components<const N: usize>(s: &str, comp: u8, rep: u8) -> [&str; N] {
    let mut out = [""; N];
    let mut rest = s;
    for slot in out.iter_mut() {
        match find_either(comp, rep, rest.as_bytes()) {
            Some(i) => {
                *slot = rest.get(..i).unwrap_or("");
                if rest.as_bytes().get(i) == Some(&rep) {
                    break;
                }
                rest = rest.get(i + 1..).unwrap_or("");
            }
            None => {
                *slot = rest;
                break;
            }
        }
    }
    out
}

fn is_latin1_name(cs: &[u8]) -> bool {
    let cs = cs.trim_ascii();
    cs.eq_ignore_ascii_case(b"8859/1") || cs.eq_ignore_ascii_case(b"ISO-8859-1")
}

/// MSH-18, first repetition, read from the index before any text conversion.
fn declared_charset<'b>(bytes: &'b [u8], idx: &Index) -> Option<&'b [u8]> {
    let msh = idx.segs.first()?;
    // MSH-18 is generic field 17 (MSH-1 is the separator itself).
    let (a, b) = generic_field_bounds(msh, &idx.seps, 17)?;
    let f = bytes.get(a..b)?;
    let end = memchr(idx.delims.repetition, f).unwrap_or(f.len());
    f.get(..end)
}

fn skip_prefix(bytes: &[u8]) -> usize {
    let mut p = 0;
    loop {
        match bytes.get(p..) {
            Some(r) if r.starts_with(BOM) => p += BOM.len(),
            Some([b, ..]) if b.is_ascii_whitespace() => p += 1,
            _ => return p,
        }
    }
}

fn valid_delim(b: u8) -> bool {
    b.is_ascii_graphic() && !b.is_ascii_alphanumeric()
}

fn read_delimiters(bytes: &[u8], p: usize) -> Result<Delimiters, ParseError> {
    let msh = Some((1, &b"MSH"[..]));
    let Some(&fs) = bytes.get(p + 3) else {
        return Err(ParseError::new(
            bytes.len(),
            msh,
            ParseErrorKind::MshTooShort,
        ));
    };
    if !valid_delim(fs) {
        return Err(ParseError::new(
            p + 3,
            msh,
            ParseErrorKind::BadEncodingChars {
                found: short_lossy(&[fs]),
                why: "field separator must be a printable non-alphanumeric ASCII character",
            },
        ));
    }
    let start = p + 4;
    let rest = bytes.get(start..).unwrap_or_default();
    let len = memchr3(fs, CR, LF, rest).unwrap_or(rest.len());
    let enc = &rest[..len];
    let bad = |why| {
        Err(ParseError::new(
            start,
            msh,
            ParseErrorKind::BadEncodingChars {
                found: short_lossy(enc),
                why,
            },
        ))
    };
    if enc.len() < 4 {
        if start + len >= bytes.len() || rest.get(len) != Some(&fs) {
            return Err(ParseError::new(
                start + len,
                msh,
                ParseErrorKind::MshTooShort,
            ));
        }
        return bad("need 4 or 5 characters");
    }
    if enc.len() > 5 {
        return bad("need 4 or 5 characters");
    }
    if !enc.iter().all(|&b| valid_delim(b)) {
        return bad("each must be a printable non-alphanumeric ASCII character");
    }
    for (i, &a) in enc.iter().enumerate() {
        if a == fs || enc[i + 1..].contains(&a) {
            return bad("the separators must all differ");
        }
    }
    Ok(Delimiters {
        field: fs,
        component: enc[0],
        repetition: enc[1],
        escape: enc[2],
        subcomponent: enc[3],
        truncation: enc.get(4).copied(),
    })
}

fn valid_name(n: &[u8]) -> bool {
    matches!(n, [a, b, c] if a.is_ascii_uppercase()
        && (b.is_ascii_uppercase() || b.is_ascii_digit())
        && (c.is_ascii_uppercase() || c.is_ascii_digit()))
}

fn index(bytes: &[u8], bufs: ParseBuffers) -> Result<Index, ParseError> {
    let p = skip_prefix(bytes);
    if p >= bytes.len() {
        return Err(ParseError::new(p, None, ParseErrorKind::Empty));
    }
    if !bytes[p..].starts_with(b"MSH") {
        let rest = &bytes[p..];
        let n = memchr3(b'|', CR, LF, rest).unwrap_or(rest.len());
        return Err(ParseError::new(
            p,
            Some((1, &rest[..n.min(3)])),
            ParseErrorKind::NotMsh {
                found: short_lossy(&rest[..n]),
            },
        ));
    }
    let delims = read_delimiters(bytes, p)?;
    let fs = delims.field;
    let ParseBuffers { mut segs, mut seps } = bufs;
    segs.clear();
    seps.clear();
    segs.reserve(bytes.len() / 48 + 2);
    seps.reserve(bytes.len() / 6 + 4);

    // One pass in 64-byte blocks: a branch-free compare builds a bit mask of the separators
    // and line ends, then only the hits are visited. Separators sit a few bytes apart, so a
    // per-hit vectorised search or a per-byte branch costs more.
    let mut st = Scan {
        seg_start: p,
        sep_lo: 0,
        segs,
        seps,
    };
    let body = bytes.get(p..).unwrap_or_default();
    let mut blocks = body.chunks_exact(64);
    let mut base = p;
    for block in blocks.by_ref() {
        if let Ok(full) = <&[u8; 64]>::try_from(block) {
            st.visit(bytes, base, block_mask(full, fs), fs)?;
        }
        base += 64;
    }
    // The last, short block, padded; the padding's bits are dropped.
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut pad = [0u8; 64];
        if let Some(dst) = pad.get_mut(..tail.len()) {
            dst.copy_from_slice(tail);
        }
        let live = (1u64 << tail.len()) - 1;
        st.visit(bytes, base, block_mask(&pad, fs) & live, fs)?;
    }
    st.close_segment(bytes, bytes.len())?;
    Ok(Index {
        delims,
        segs: st.segs,
        seps: st.seps,
    })
}

/// The index loop's state between blocks.
struct Scan {
    seg_start: usize,
    sep_lo: usize,
    segs: Vec<SegSpan>,
    seps: Vec<u32>,
}

impl Scan {
    /// Visits one block's hits (bit i is `bytes[base + i]`): separators are recorded, line ends
    /// close segments.
    #[inline(always)]
    fn visit(
        &mut self,
        bytes: &[u8],
        base: usize,
        mut mask: u64,
        fs: u8,
    ) -> Result<(), ParseError> {
        loop {
            mask = push_separators(bytes, base, mask, fs, &mut self.seps);
            if mask == 0 {
                return Ok(());
            }
            let at = base + mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let b = bytes.get(at).copied().unwrap_or(LF);
            // The mask also marks the other control characters below CR; only CR and LF end
            // a line.
            if b != LF && b != CR {
                continue;
            }
            if b == LF
                && at > self.seg_start
                && bytes.get(at - 1) != Some(&CR)
                && is_continuation(bytes, at + 1, fs)
            {
                continue;
            }
            self.close_segment(bytes, at)?;
        }
    }

    /// Records the segment from `seg_start` to the line end at `end` (the common shape inline,
    /// the rest through [`finish_segment`]); the next one starts after it.
    #[inline(always)]
    fn close_segment(&mut self, bytes: &[u8], end: usize) -> Result<(), ParseError> {
        let (start, lo) = (self.seg_start, self.sep_lo);
        if !push_named_segment(bytes, &mut self.segs, &self.seps, start, end, lo) {
            finish_segment(bytes, &mut self.segs, &self.seps, start, end, lo)?;
        }
        self.seg_start = end + 1;
        self.sep_lo = self.seps.len();
        Ok(())
    }
}

/// Records the field separators among `mask`'s hits (bit i is `bytes[base + i]`), lowest
/// first, up to the first line end; gives back the hits from that line end on (0 when none is
/// left). Kept small so the loop holds its state in registers.
#[inline]
fn push_separators(bytes: &[u8], base: usize, mut mask: u64, fs: u8, seps: &mut Vec<u32>) -> u64 {
    while mask != 0 {
        let at = base + mask.trailing_zeros() as usize;
        if bytes.get(at) != Some(&fs) {
            return mask;
        }
        seps.push(at as u32);
        mask &= mask - 1;
    }
    0
}

/// Bit i set where `block[i]` is the field separator or a control character up to CR (so
/// every CR and LF, and the rare tab or NUL, which the caller passes over). Eight bytes at a
/// time in a `u64` (SWAR), two exact byte tests: equal to the separator, below 14.
#[inline(always)]
fn block_mask(block: &[u8; 64], fs: u8) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = !LOW7;
    // For a byte below 0x80, its low seven bits plus 0x7f carry into the high bit unless the
    // byte is 0; plus 0x72 (0x80 − 14), unless it is below 14. No carry crosses a byte.
    const BELOW_14: u64 = ONES * (0x80 - 14);
    let f = ONES * u64::from(fs);
    let mut mask = 0u64;
    for (k, chunk) in block.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let y = x ^ f;
        let not_fs = ((y & LOW7).wrapping_add(LOW7)) | y;
        let not_ctl = ((x & LOW7).wrapping_add(BELOW_14)) | x;
        let hits = !(not_fs & not_ctl) & HIGH;
        // Gathers the eight high bits into the top byte: byte j's bit lands on bit 56 + j.
        let bits = ((hits >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
        mask |= bits << (8 * k);
    }
    mask
}

/// The common segment: a three-character name, then a separator. Recorded and true; false
/// leaves the segment to [`finish_segment`] (blank lines, bare names, bad names).
#[inline(always)]
fn push_named_segment(
    bytes: &[u8],
    segs: &mut Vec<SegSpan>,
    seps: &[u32],
    start: usize,
    end: usize,
    sep_lo: usize,
) -> bool {
    if seps.get(sep_lo).map(|&s| s as usize) != Some(start + 3) {
        return false;
    }
    let Some(name) = bytes.get(start..start + 3).filter(|n| valid_name(n)) else {
        return false;
    };
    push_span(segs, seps.len(), start, end, sep_lo, name);
    true
}

/// Records a segment whose name was checked; its separators are `seps[sep_lo..sep_hi]`.
#[inline(always)]
fn push_span(
    segs: &mut Vec<SegSpan>,
    sep_hi: usize,
    start: usize,
    end: usize,
    sep_lo: usize,
    name: &[u8],
) {
    segs.push(SegSpan {
        start: start as u32,
        end: end as u32,
        sep_lo: sep_lo as u32,
        sep_hi: sep_hi as u32,
        header: matches!(name, b"MSH" | b"FHS" | b"BHS"),
    });
}

/// Records the segment `bytes[start..end]` unless it is blank; checks its name. The general
/// case, behind [`push_named_segment`].
#[inline(never)]
fn finish_segment(
    bytes: &[u8],
    segs: &mut Vec<SegSpan>,
    seps: &[u32],
    start: usize,
    end: usize,
    sep_lo: usize,
) -> Result<(), ParseError> {
    let Some(line) = bytes.get(start..end).filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    let first_sep = seps.get(sep_lo).map(|&s| s as usize);
    if first_sep.is_none() && line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let name = bytes
        .get(start..first_sep.unwrap_or(end))
        .unwrap_or_default();
    if !valid_name(name) {
        return Err(bad_segment_name(start, segs.len() + 1, name));
    }
    push_span(segs, seps.len(), start, end, sep_lo, name);
    Ok(())
}

/// The error for segment `n` (1-based) at byte `start`, whose name is not three capitals or
/// digits. Out of line: the index loop stays small.
#[cold]
#[inline(never)]
fn bad_segment_name(start: usize, n: usize, name: &[u8]) -> ParseError {
    ParseError::new(
        start,
        Some((n, name)),
        ParseErrorKind::BadSegmentName {
            found: short_lossy(name),
        },
    )
}

/// Whether the line at `p` continues the segment before it: text with a hard line wrap (a
/// bare LF inside a field, as editors and some exports leave) rather than a new segment.
fn is_continuation(bytes: &[u8], p: usize, fs: u8) -> bool {
    let rest = bytes.get(p..).unwrap_or_default();
    let starts_segment = rest.get(..3).is_some_and(valid_name)
        && rest.get(3).is_none_or(|&b| b == fs || b == CR || b == LF);
    if starts_segment {
        return false;
    }
    let line = &rest[..memchr::memchr2(CR, LF, rest).unwrap_or(rest.len())];
    !line.iter().all(u8::is_ascii_whitespace)
}

/// Bounds of generic field `n` (1 = text after the first separator). Not MSH-aware.
fn generic_field_bounds(span: &SegSpan, all: &[u32], n: usize) -> Option<(usize, usize)> {
    let seps = all.get(span.sep_lo as usize..span.sep_hi as usize)?;
    let start = *seps.get(n.checked_sub(1)?)? as usize + 1;
    let end = seps.get(n).map_or(span.end as usize, |&e| e as usize);
    Some((start, end))
}

impl<'a> Message<'a> {
    /// Gives the index vectors back for the next [`parse_with`].
    pub fn into_buffers(self) -> ParseBuffers {
        ParseBuffers {
            segs: self.idx.segs,
            seps: self.idx.seps,
        }
        .trimmed()
    }

    /// The whole message text (after any Latin-1 transcoding).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn delimiters(&self) -> Delimiters {
        self.idx.delims
    }

    pub fn text_encoding(&self) -> TextEncoding {
        self.encoding
    }

    pub fn segment_count(&self) -> usize {
        self.idx.segs.len()
    }

    pub fn segments(&self) -> impl ExactSizeIterator<Item = Segment<'_>> + '_ {
        self.idx
            .segs
            .iter()
            .enumerate()
            .map(move |(i, &span)| self.make_segment(i, span))
    }

    #[inline]
    fn make_segment(&self, position: usize, span: SegSpan) -> Segment<'_> {
        let seps = self
            .idx
            .seps
            .get(span.sep_lo as usize..span.sep_hi as usize)
            .unwrap_or_default();
        Segment {
            text: &self.text,
            span,
            seps,
            delims: self.idx.delims,
            position,
        }
    }

    /// The segment at 0-based position `i`.
    pub fn segment_at(&self, i: usize) -> Option<Segment<'_>> {
        Some(self.make_segment(i, *self.idx.segs.get(i)?))
    }

    /// The first segment called `name`.
    pub fn segment(&self, name: &str) -> Option<Segment<'_>> {
        self.segments_named(name).next()
    }

    pub fn segments_named<'s>(&'s self, name: &str) -> impl Iterator<Item = Segment<'s>> + 's {
        let bytes = self.text.as_bytes();
        let want: Option<[u8; 3]> = name.as_bytes().try_into().ok();
        self.idx.segs.iter().enumerate().filter_map(move |(i, s)| {
            let st = s.start as usize;
            let here = bytes.get(st..st + 3)?;
            (want.as_ref().map(|w| &w[..]) == Some(here)).then(|| self.make_segment(i, *s))
        })
    }

    /// The MSH segment (always the first).
    /// Whether the message's only escape character is the one in MSH-2 (so no field holds an
    /// escape sequence). MSH-2's characters all differ, so it holds the escape character once;
    /// one search of the text after it decides, stopping at the first hit.
    pub(crate) fn escapes_only_in_msh2(&self) -> bool {
        let bytes = self.text.as_bytes();
        let Some(msh) = self.idx.segs.first() else {
            return false;
        };
        // MSH-1 is the separator at `sep_lo`; MSH-2 ends at the next one.
        let msh2_end = self
            .idx
            .seps
            .get(msh.sep_lo as usize + 1)
            .filter(|_| msh.sep_hi > msh.sep_lo + 1)
            .map_or(msh.end, |&s| s) as usize;
        let rest = bytes.get(msh2_end..).unwrap_or_default();
        memchr(self.idx.delims.escape, rest).is_none()
    }

    pub fn msh(&self) -> Segment<'_> {
        match self.segment_at(0) {
            Some(s) => s,
            // An index always holds MSH first; this arm only keeps the accessor total.
            None => Segment {
                text: "",
                span: SegSpan {
                    start: 0,
                    end: 0,
                    sep_lo: 0,
                    sep_hi: 0,
                    header: true,
                },
                seps: &[],
                delims: self.idx.delims,
                position: 0,
            },
        }
    }

    /// MSH-10, raw.
    pub fn control_id(&self) -> &str {
        self.msh().field(10).as_str()
    }

    /// MSH-9 as (message code, trigger event, message structure), raw.
    pub fn message_type(&self) -> (&str, &str, &str) {
        let d = &self.idx.delims;
        let [code, trigger, structure] =
            first_rep_components(self.msh().field(9).as_str(), d.component, d.repetition);
        (code, trigger, structure)
    }

    /// MSH-12.1, e.g. `2.6`.
    pub fn version(&self) -> &str {
        self.msh().field(12).component(1).as_str()
    }

    /// MSH-18 first repetition, e.g. `8859/1` or `UNICODE UTF-8`.
    pub fn charset(&self) -> &str {
        self.msh().field(18).repetition(1).as_str()
    }

    /// A value by path: `PID-3`, `PID-3.1`, `PID-3.4.2`, `OBX[2]-5` (2nd OBX),
    /// `PID-3[2].1` (2nd repetition). 1-based; raw text; `None` for a bad path or absent segment.
    pub fn get(&self, path: &str) -> Option<&str> {
        let (seg_part, rest) = path.split_once('-')?;
        let (name, seg_n) = split_index(seg_part)?;
        let seg = self.segments_named(name).nth(seg_n.checked_sub(1)?)?;
        let mut parts = rest.split('.');
        let fpart = parts.next()?;
        let (fnum, rep) = split_index(fpart)?;
        let field = seg.field(fnum.parse().ok()?);
        let field = if fpart.contains('[') {
            field.repetition(rep)
        } else {
            field
        };
        let Some(c) = parts.next() else {
            return Some(field.as_str());
        };
        let comp = field.component(c.parse().ok()?);
        let Some(s) = parts.next() else {
            return Some(comp.as_str());
        };
        if parts.next().is_some() {
            return None;
        }
        Some(comp.subcomponent(s.parse().ok()?).as_str())
    }
}

/// `OBX[2]` → ("OBX", 2); `OBX` → ("OBX", 1).
fn split_index(s: &str) -> Option<(&str, usize)> {
    match s.split_once('[') {
        None => Some((s, 1)),
        Some((a, b)) => Some((a, b.strip_suffix(']')?.parse().ok()?)),
    }
}

/// One segment of a message.
#[derive(Clone, Copy)]
pub struct Segment<'m> {
    text: &'m str,
    span: SegSpan,
    seps: &'m [u32],
    delims: Delimiters,
    position: usize,
}

impl std::fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Segment").field(&self.as_str()).finish()
    }
}

impl<'m> Segment<'m> {
    pub fn name(&self) -> &'m str {
        let st = self.span.start as usize;
        self.text.get(st..st + 3).unwrap_or("")
    }

    /// The segment's raw text, without the terminator.
    pub fn as_str(&self) -> &'m str {
        self.text
            .get(self.span.start as usize..self.span.end as usize)
            .unwrap_or("")
    }

    /// The message's separators.
    pub fn delimiters(&self) -> Delimiters {
        self.delims
    }

    /// 0-based position in the message.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Byte offset of the segment in the message text.
    pub fn offset(&self) -> usize {
        self.span.start as usize
    }

    fn is_header(&self) -> bool {
        self.span.header
    }

    /// Highest field number present.
    pub fn field_count(&self) -> usize {
        if self.is_header() {
            self.seps.len() + 1
        } else {
            self.seps.len()
        }
    }

    /// Field `n` (1-based, HL7 numbering; for MSH, field 1 is the separator and field 2 the
    /// encoding characters). An absent field is empty.
    #[inline]
    pub fn field(&self, n: usize) -> Field<'m> {
        let raw = self.raw_field(n);
        Field {
            raw,
            delims: self.delims,
            opaque: n <= 2 && self.is_header(),
        }
    }

    #[inline]
    fn raw_field(&self, n: usize) -> &'m str {
        if n == 0 {
            return self.name();
        }
        let n = if self.is_header() {
            if n == 1 {
                let at = self.seps.first().map_or(0, |&p| p as usize);
                return self.text.get(at..at + 1).unwrap_or("");
            }
            n - 1
        } else {
            n
        };
        let Some(&s) = self.seps.get(n - 1) else {
            return "";
        };
        let end = self.seps.get(n).map_or(self.span.end, |&e| e);
        self.text.get(s as usize + 1..end as usize).unwrap_or("")
    }

    /// Fields 1..=field_count.
    pub fn fields(&self) -> impl Iterator<Item = Field<'m>> + '_ {
        (1..=self.field_count()).map(move |n| self.field(n))
    }
}

/// Splits on `sep`, yielding every piece (empty ones too).
#[derive(Clone)]
pub struct Pieces<'m> {
    rest: Option<&'m str>,
    /// `None` yields the text whole.
    sep: Option<u8>,
}

impl<'m> Iterator for Pieces<'m> {
    type Item = &'m str;
    fn next(&mut self) -> Option<&'m str> {
        let r = self.rest?;
        match self.sep.and_then(|sep| find_byte(sep, r.as_bytes())) {
            Some(i) => {
                self.rest = r.get(i + 1..);
                r.get(..i)
            }
            None => {
                self.rest = None;
                Some(r)
            }
        }
    }
}

fn pieces(s: &str, sep: Option<u8>) -> Pieces<'_> {
    Pieces { rest: Some(s), sep }
}

/// Piece `n` (1-based) of `s` split on `sep`; empty when absent.
fn nth_piece(s: &str, sep: u8, n: usize) -> &str {
    let Some(k) = n.checked_sub(1) else {
        return "";
    };
    if k == 0 {
        // Common case: the first piece, found with one search.
        return match find_byte(sep, s.as_bytes()) {
            Some(i) => s.get(..i).unwrap_or(""),
            None => s,
        };
    }
    pieces(s, Some(sep)).nth(k).unwrap_or("")
}

/// One field, or one repetition of a field.
#[derive(Clone, Copy, Debug)]
pub struct Field<'m> {
    raw: &'m str,
    delims: Delimiters,
    /// MSH-1 and MSH-2 hold delimiter characters and are never split.
    opaque: bool,
}

impl<'m> Field<'m> {
    pub fn as_str(&self) -> &'m str {
        self.raw
    }
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
    /// HL7's explicit null `""`.
    pub fn is_null(&self) -> bool {
        self.raw == "\"\""
    }
    /// The text with escape sequences resolved.
    pub fn decoded(&self) -> Cow<'m, str> {
        if self.opaque {
            return Cow::Borrowed(self.raw);
        }
        unescape(self.raw, &self.delims)
    }
    pub fn repetitions(&self) -> impl Iterator<Item = Field<'m>> + 'm {
        let (d, opaque) = (self.delims, self.opaque);
        let sep = if opaque { None } else { Some(d.repetition) };
        pieces(self.raw, sep).map(move |raw| Field {
            raw,
            delims: d,
            opaque,
        })
    }
    /// Repetition `n` (1-based); empty when absent.
    pub fn repetition(&self, n: usize) -> Field<'m> {
        let raw = if self.opaque {
            if n == 1 {
                self.raw
            } else {
                ""
            }
        } else {
            nth_piece(self.raw, self.delims.repetition, n)
        };
        Field { raw, ..*self }
    }
    fn first_rep(&self) -> &'m str {
        if self.opaque {
            self.raw
        } else {
            nth_piece(self.raw, self.delims.repetition, 1)
        }
    }
    /// Component `n` (1-based) of the first repetition.
    pub fn component(&self, n: usize) -> Component<'m> {
        let rep = self.first_rep();
        let raw = if self.opaque {
            if n == 1 {
                rep
            } else {
                ""
            }
        } else {
            nth_piece(rep, self.delims.component, n)
        };
        Component {
            raw,
            delims: self.delims,
        }
    }
    /// Components of the first repetition.
    pub fn components(&self) -> impl Iterator<Item = Component<'m>> + 'm {
        let d = self.delims;
        let sep = if self.opaque { None } else { Some(d.component) };
        pieces(self.first_rep(), sep).map(move |raw| Component { raw, delims: d })
    }
}

/// One component of a field.
#[derive(Clone, Copy, Debug)]
pub struct Component<'m> {
    raw: &'m str,
    delims: Delimiters,
}

impl<'m> Component<'m> {
    pub fn as_str(&self) -> &'m str {
        self.raw
    }
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
    pub fn decoded(&self) -> Cow<'m, str> {
        unescape(self.raw, &self.delims)
    }
    /// Subcomponent `n` (1-based); empty when absent.
    pub fn subcomponent(&self, n: usize) -> Subcomponent<'m> {
        Subcomponent {
            raw: nth_piece(self.raw, self.delims.subcomponent, n),
            delims: self.delims,
        }
    }
    pub fn subcomponents(&self) -> impl Iterator<Item = Subcomponent<'m>> + 'm {
        let d = self.delims;
        pieces(self.raw, Some(d.subcomponent)).map(move |raw| Subcomponent { raw, delims: d })
    }
}

/// One subcomponent.
#[derive(Clone, Copy, Debug)]
pub struct Subcomponent<'m> {
    raw: &'m str,
    delims: Delimiters,
}

impl<'m> Subcomponent<'m> {
    pub fn as_str(&self) -> &'m str {
        self.raw
    }
    pub fn decoded(&self) -> Cow<'m, str> {
        unescape(self.raw, &self.delims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &str = "MSH|^~\\&|MON|ICU|||20240101120000+0000||ORU^R01^ORU_R01|CTL42|P|2.6\r\
PID|||P1^^^HOSP^MR~P2^^^NAT^PI||Doe^Jane\r\
OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R\r\
NTE|1||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g&h^i~j\r";

    #[test]
    fn block_mask_marks_exactly_the_separators_and_control_characters() {
        // Every byte value at every position, next to separators (borrows between bytes
        // would show as false hits on neighbours).
        for fs in [b'|', b'#'] {
            for v in 0u8..=255 {
                let mut block = [v; 64];
                for i in (0..64).step_by(5) {
                    block[i] = [fs, CR, LF, v.wrapping_add(1), 0, 13, 14][i % 7];
                }
                let mut want = 0u64;
                for (i, &b) in block.iter().enumerate() {
                    want |= u64::from(b == fs || b < 14) << i;
                }
                assert_eq!(block_mask(&block, fs), want, "fs {fs} v {v}");
            }
        }
    }

    #[test]
    fn control_characters_inside_fields_do_not_end_segments() {
        // Tab, NUL, vertical tab and form feed share the line ends' bit in the block mask; in
        // a field they are text. Placed on both sides of a 64-byte block boundary.
        for pad in 0..70 {
            let text = format!(
                "MSH|^~\\&|A|B|||20250101||ORU^R01|C{}|P|2.6\rOBX|1|ST|X\t1|\0|a\x0bb\x0cc|\rOBX|2|NM|Y||7\r",
                "9".repeat(pad)
            );
            let m = parse(text.as_bytes()).unwrap();
            let segs: Vec<_> = m.segments().collect();
            assert_eq!(segs.len(), 3, "pad {pad}");
            assert_eq!(segs[1].field(3).as_str(), "X\t1");
            assert_eq!(segs[1].field(4).as_str(), "\0");
            assert_eq!(segs[1].field(5).as_str(), "a\x0bb\x0cc");
            assert_eq!(segs[2].field(5).as_str(), "7");
        }
    }

    #[test]
    fn msh_numbering_counts_the_separator_as_field_1() {
        let m = parse(ORU.as_bytes()).unwrap();
        let msh = m.msh();
        assert_eq!(msh.field(0).as_str(), "MSH");
        assert_eq!(msh.field(1).as_str(), "|");
        assert_eq!(msh.field(2).as_str(), "^~\\&");
        // MSH-2 is opaque: not split on its own characters, not unescaped.
        assert_eq!(msh.field(2).component(1).as_str(), "^~\\&");
        assert_eq!(msh.field(2).decoded(), "^~\\&");
        assert_eq!(msh.field(3).as_str(), "MON");
        assert_eq!(msh.field(9).as_str(), "ORU^R01^ORU_R01");
        assert_eq!(msh.field(10).as_str(), "CTL42");
        assert_eq!(msh.field(12).as_str(), "2.6");
        assert_eq!(msh.field(13).as_str(), "");
        assert_eq!(msh.field_count(), 12);
        assert_eq!(m.message_type(), ("ORU", "R01", "ORU_R01"));
        assert_eq!(m.control_id(), "CTL42");
        assert_eq!(m.version(), "2.6");
        // Other segments: field 1 follows the first separator.
        let obx = m.segment("OBX").unwrap();
        assert_eq!(obx.field(1).as_str(), "1");
        assert_eq!(obx.field(5).as_str(), "97");
        assert_eq!(obx.field(11).as_str(), "R");
        assert_eq!(obx.field(12).as_str(), "");
        assert_eq!(obx.field(999).as_str(), "");
    }

    #[test]
    fn repetitions_components_subcomponents() {
        let m = parse(ORU.as_bytes()).unwrap();
        let pid3 = m.segment("PID").unwrap().field(3);
        let reps: Vec<_> = pid3.repetitions().map(|r| r.as_str()).collect();
        assert_eq!(reps, ["P1^^^HOSP^MR", "P2^^^NAT^PI"]);
        assert_eq!(pid3.component(1).as_str(), "P1");
        assert_eq!(pid3.component(5).as_str(), "MR");
        assert_eq!(pid3.repetition(2).component(4).as_str(), "NAT");
        assert_eq!(pid3.repetition(3).as_str(), "");
        assert_eq!(pid3.component(9).as_str(), "");
        assert_eq!(pid3.components().count(), 5);
        let nte = m.segment("NTE").unwrap().field(3);
        assert_eq!(nte.component(1).subcomponent(2).as_str(), "h");
        assert_eq!(m.get("PID-3.1"), Some("P1"));
        assert_eq!(m.get("PID-3[2].4"), Some("NAT"));
        assert_eq!(m.get("PID-3[2]"), Some("P2^^^NAT^PI"));
        assert_eq!(m.get("OBX-3.2"), Some("MDC_PULS_OXIM_SAT_O2"));
        assert_eq!(m.get("OBX-5"), Some("97"));
        assert_eq!(m.get("MSH-9.2"), Some("R01"));
        assert_eq!(m.get("NTE-3.1.2"), Some("h"));
        assert_eq!(m.get("OBX[2]-5"), None);
        assert_eq!(m.get("ZZZ-1"), None);
        assert_eq!(m.get("PID"), None);
        assert_eq!(m.get("PID-x"), None);
    }

    #[test]
    fn escapes_resolve_and_unknown_ones_stay() {
        let m = parse(ORU.as_bytes()).unwrap();
        let nte = m.segment("NTE").unwrap().field(3);
        assert_eq!(nte.decoded(), "a|b^c&d~e\\f\ng&h^i~j");
        let d = Delimiters::default();
        assert_eq!(unescape("no escapes", &d), "no escapes");
        assert!(matches!(unescape("plain", &d), Cow::Borrowed(_)));
        assert_eq!(unescape("\\X41C3A9\\", &d), "Aé");
        assert_eq!(unescape("\\XE9\\", &d), "é"); // not UTF-8: Latin-1
        assert_eq!(unescape("\\XZZ\\|\\X4\\", &d), "\\XZZ\\|\\X4\\");
        assert_eq!(unescape("\\Q\\ \\Zfoo\\", &d), "\\Q\\ \\Zfoo\\");
        assert_eq!(unescape("open\\F", &d), "open\\F");
        assert_eq!(unescape("\\H\\bold\\N\\", &d), "bold");
        assert_eq!(unescape("\\P\\", &d), "\\P\\");
        let d7 = Delimiters {
            truncation: Some(b'#'),
            ..d
        };
        assert_eq!(unescape("\\P\\", &d7), "#");
    }

    #[test]
    fn escape_round_trips() {
        let d = Delimiters::default();
        let text = "a|b^c&d~e\\f\r\ng\nh\u{1}é";
        let e = super::super::escape(text, &d);
        assert_eq!(e, "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g\\.br\\h\\X01\\é");
        assert_eq!(unescape(&e, &d), "a|b^c&d~e\\f\ng\nh\u{1}é");
    }

    #[test]
    fn custom_delimiters() {
        let raw =
            "MSH#$%@*#APP#FAC#####ORU$R01#ID7#P#2.5\rPID###A1$$$AUTH@x%A2#\rOBX#1#ST#c##a@F@b";
        let m = parse(raw.as_bytes()).unwrap();
        let d = m.delimiters();
        assert_eq!(
            (d.field, d.component, d.repetition, d.escape, d.subcomponent),
            (b'#', b'$', b'%', b'@', b'*')
        );
        assert_eq!(m.msh().field(1).as_str(), "#");
        assert_eq!(m.msh().field(2).as_str(), "$%@*");
        assert_eq!(m.message_type(), ("ORU", "R01", ""));
        assert_eq!(m.control_id(), "ID7");
        let pid3 = m.segment("PID").unwrap().field(3);
        assert_eq!(pid3.component(4).as_str(), "AUTH@x");
        assert_eq!(pid3.repetition(2).as_str(), "A2");
        assert_eq!(m.segment("OBX").unwrap().field(5).decoded(), "a#b");
    }

    #[test]
    fn truncation_character_is_read() {
        let m = parse(b"MSH|^~\\&#|A|B|||20240101||ACK^R40|1|P|2.7").unwrap();
        assert_eq!(m.delimiters().truncation, Some(b'#'));
        assert_eq!(m.msh().field(2).as_str(), "^~\\&#");
        assert_eq!(m.version(), "2.7");
    }

    #[test]
    fn cr_lf_crlf_mixed_blank_lines_bom() {
        let body = [
            "MSH|^~\\&|A|B|||1||ADT^A01|9|P|2.5",
            "EVN|A01",
            "PID|||X",
            "PV1||I|ICU^1^2",
        ];
        for sep in ["\r", "\n", "\r\n", "\n\r"] {
            let raw = body.join(sep) + sep + sep + "  " + sep;
            let m = parse(raw.as_bytes()).unwrap();
            let names: Vec<_> = m.segments().map(|s| s.name()).collect();
            assert_eq!(names, ["MSH", "EVN", "PID", "PV1"], "sep {sep:?}");
            assert_eq!(m.get("PV1-3.3"), Some("2"));
        }
        let mixed =
            "\u{feff} \r\nMSH|^~\\&|A|B|||1||ADT^A01|9|P|2.5\rEVN|A01\nPID|||X\r\nPV1||I\r\n\r\n";
        let m = parse(mixed.as_bytes()).unwrap();
        assert_eq!(m.segment_count(), 4);
        assert_eq!(m.segment("PV1").unwrap().field(2).as_str(), "I");
        assert_eq!(m.segments_named("PID").count(), 1);
        assert_eq!(m.segments_named("PIDX").count(), 0);
    }

    #[test]
    fn segment_without_fields_and_z_segments() {
        let m = parse(b"MSH|^~\\&|A\rPD1\rZP1|x|y\r").unwrap();
        assert_eq!(m.segment("PD1").unwrap().field_count(), 0);
        assert_eq!(m.segment("ZP1").unwrap().field(2).as_str(), "y");
    }

    #[test]
    fn latin1_declared_or_detected() {
        let mut raw = b"MSH|^~\\&|A|B|||1||ORU^R01|1|P|2.6|||||".to_vec();
        raw.extend_from_slice(b"|8859/1\rPID|||1||M\xfcller^J\xf6rg");
        let m = parse(&raw).unwrap();
        assert_eq!(m.text_encoding(), TextEncoding::Latin1);
        assert_eq!(m.charset(), "8859/1");
        assert_eq!(m.get("PID-5.1"), Some("Müller"));
        assert_eq!(m.get("PID-5.2"), Some("Jörg"));
        // Undeclared but not UTF-8: Latin-1 too.
        let m = parse(b"MSH|^~\\&|A\rPID|||1||Ren\xe9").unwrap();
        assert_eq!(m.get("PID-5"), Some("René"));
        // Declared Latin-1 wins even when the bytes happen to be valid UTF-8.
        let mut raw = b"MSH|^~\\&|A|B|||1||ORU^R01|1|P|2.6||||||8859/1\rPID|||1||".to_vec();
        raw.extend_from_slice("é".as_bytes());
        let m = parse(&raw).unwrap();
        assert_eq!(m.get("PID-5"), Some("Ã©"));
        // UTF-8 stays UTF-8 and borrows.
        let m = parse("MSH|^~\\&|A\rPID|||1||Zoë".as_bytes()).unwrap();
        assert_eq!(m.text_encoding(), TextEncoding::Utf8);
        assert_eq!(m.get("PID-5"), Some("Zoë"));
    }

    /// Every segment's name, fields and components, as text: two parses that agree on this
    /// read the same.
    fn dump(m: &Message<'_>) -> Vec<String> {
        m.segments()
            .map(|s| {
                let fields: Vec<String> = (0..=s.field_count())
                    .map(|n| {
                        let f = s.field(n);
                        format!("{}={:?}/{:?}", n, f.as_str(), f.component(2).as_str())
                    })
                    .collect();
                format!("{}#{} {}", s.name(), s.position(), fields.join(" "))
            })
            .collect()
    }

    #[test]
    fn reused_buffers_read_exactly_as_fresh_ones() {
        let long = ORU.replace("NTE|", "NTE|x|y|z\rOBX|9|ST|||long|||||||||||||||\r");
        let short = "MSH|^~\\&|A|B|||1||ADT^A01|9|P|2.5\rEVN|A01\rPID|||7^^^H^MR\r";
        let latin1 = b"MSH|^~\\&|A|B|||1||ORU^R01|1|P|2.6||||||8859/1\rPID|||1||M\xfcller";
        let mut bufs = ParseBuffers::default();
        // Each message parsed into what the one before left behind (longer, shorter, Latin-1,
        // a parse error in between) reads as it does parsed alone.
        let inputs: [&[u8]; 6] = [
            long.as_bytes(),
            short.as_bytes(),
            ORU.as_bytes(),
            latin1,
            b"not hl7",
            short.as_bytes(),
        ];
        for raw in inputs {
            let fresh = parse(raw);
            match parse_with(raw, std::mem::take(&mut bufs)) {
                Ok(m) => {
                    let fresh = fresh.unwrap();
                    assert_eq!(dump(&m), dump(&fresh));
                    assert_eq!(m.msh().field(2).as_str(), "^~\\&", "MSH-2 is opaque");
                    bufs = m.into_buffers();
                }
                Err(e) => assert_eq!(Some(e), fresh.err()),
            }
        }
        // A buffer grown past the limit by one huge message is not kept.
        let mut huge = String::from("MSH|^~\\&|A\rOBX");
        huge.push_str(&"|".repeat(ParseBuffers::KEEP + 10));
        let bufs = parse(huge.as_bytes()).unwrap().into_buffers();
        assert_eq!(bufs.seps.capacity(), 0);
        let bufs = parse(ORU.as_bytes()).unwrap().into_buffers();
        assert!(bufs.seps.capacity() >= 20);
    }

    fn err(raw: &[u8]) -> ParseError {
        match parse(raw) {
            Err(e) => e,
            Ok(m) => panic!("parsed: {m:?}"),
        }
    }

    #[test]
    fn errors_carry_position_and_kind() {
        assert_eq!(err(b"").kind, ParseErrorKind::Empty);
        assert_eq!(err(b" \r\n\xEF\xBB\xBF").kind, ParseErrorKind::Empty);
        let e = err(b"\r\nPID|||1");
        assert!(matches!(e.kind, ParseErrorKind::NotMsh { .. }));
        assert_eq!((e.offset, e.segment_index), (2, Some(1)));
        assert_eq!(
            e.to_string(),
            "byte 2 (segment 1 PID): message does not start with MSH (found \"PID\")"
        );
        assert_eq!(err(b"MSH").kind, ParseErrorKind::MshTooShort);
        assert_eq!(err(b"MSH|^~").kind, ParseErrorKind::MshTooShort);
        assert_eq!(err(b"MSH|^~\r").kind, ParseErrorKind::MshTooShort);
        assert!(matches!(
            err(b"MSH|^~|A").kind,
            ParseErrorKind::BadEncodingChars { .. }
        ));
        assert!(matches!(
            err(b"MSH|^^\\&|A").kind,
            ParseErrorKind::BadEncodingChars { .. }
        ));
        assert!(matches!(
            err(b"MSHA^~\\&A").kind,
            ParseErrorKind::BadEncodingChars { .. }
        ));
        assert!(matches!(
            err(b"MSH|^~\\&xy|A").kind,
            ParseErrorKind::BadEncodingChars { .. }
        ));
        assert!(matches!(
            err(b"MSH|^~\\&#!|A").kind,
            ParseErrorKind::BadEncodingChars { .. }
        ));
        let e = err(b"MSH|^~\\&|A\rPID|1\rob1|x\r");
        assert_eq!(
            e.to_string(),
            "byte 17 (segment 3 ob1): bad segment name \"ob1\" (want 3 upper-case letters or digits)"
        );
        let e = err(b"MSH|^~\\&|A\rPIDX|1");
        assert_eq!((e.offset, e.segment_index), (11, Some(2)));
        // After CR, text that is not a segment is an error; after a bare LF it continues.
        assert!(parse(b"MSH|^~\\&|A\rNTE|1||two\nlines").is_ok());
        assert!(parse(b"MSH|^~\\&|A\rNTE|1||two\rlines").is_err());
    }

    /// Real messages cut at every offset and with bytes flipped: errors or parses, never panics.
    #[test]
    fn mutated_real_messages_never_panic() {
        let samples: [&[u8]; 3] = [
            include_bytes!("../../../tests/data/hl7/device-ihe-pcd-tf-vol2-examples/00_pcd01_philips_PAT_DEVICE_PHILIPS_C_oru_r01.hl7"),
            include_bytes!("../../../tests/data/hl7/device-ihe-pcd-tf-vol2-examples/13_pcd10_ipec_delivery_start_oru_r42.hl7"),
            include_bytes!("../../../tests/data/hl7/converter-samples-ms-fhir-converter/ADT-A01-01.hl7"),
        ];
        let opts = super::super::DecodeOptions::default();
        let exercise = |b: &[u8]| {
            if let Ok(m) = parse(b) {
                let _ = super::super::decode(&m, &opts);
                for s in m.segments() {
                    for f in s.fields() {
                        for r in f.repetitions() {
                            for c in r.components() {
                                let _ = c.decoded();
                                for sc in c.subcomponents() {
                                    let _ = sc.decoded();
                                }
                            }
                        }
                    }
                }
            }
        };
        // A fixed xorshift so the run is reproducible.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let specials = [
            b'|', b'^', b'~', b'\\', b'&', b'\r', b'\n', 0xC3, 0xFF, b'0', b'+',
        ];
        for s in samples {
            // Every offset of the device messages; a stride through the long ADT.
            let stride = if s.len() > 4000 { 7 } else { 1 };
            for cut in (0..=s.len()).step_by(stride) {
                exercise(&s[..cut]);
            }
            for _ in 0..1500 {
                let mut m = s.to_vec();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() as usize) % m.len();
                    m[at] = if next() % 2 == 0 {
                        specials[(next() as usize) % specials.len()]
                    } else {
                        next() as u8
                    };
                }
                exercise(&m);
            }
        }
        for _ in 0..2000 {
            let len = (next() % 200) as usize;
            let mut junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if next() % 2 == 0 {
                junk.splice(0..0, b"MSH|^~\\&|".iter().copied());
            }
            exercise(&junk);
        }
    }

    #[test]
    fn find_either_agrees_with_a_plain_search_for_every_byte() {
        // Pairs that differ in one bit (`^`/`~`, the one-test path) and pairs that do not.
        for (a, b) in [
            (b'^', b'~'),
            (b'~', b'^'),
            (b'&', b'\''),
            (b'^', b'#'),
            (b'|', b'\\'),
        ] {
            for c in 0u8..=255 {
                for len in [5, 8, 13, 21] {
                    for at in 0..len {
                        let mut hay = vec![b'a'; len];
                        hay[at] = c;
                        let want = hay.iter().position(|&x| x == a || x == b);
                        assert_eq!(find_either(a, b, &hay), want, "{a} {b} {c} {len} {at}");
                    }
                }
            }
        }
    }

    #[test]
    fn find_byte_agrees_with_a_plain_search_at_every_length_and_offset() {
        for len in 0..40 {
            for at in 0..=len {
                for second in [at + 1, at + 3, at + 9, len] {
                    let mut hay = vec![b'a'; len];
                    if let Some(b) = hay.get_mut(at) {
                        *b = b'^';
                    }
                    if let Some(b) = hay.get_mut(second) {
                        *b = b'~';
                    }
                    // A byte with the high bit set next to the needle must not confuse the test.
                    if let Some(b) = hay.get_mut(at + 1).filter(|b| **b == b'a') {
                        *b = 0xDF;
                    }
                    let want = hay.iter().position(|&b| b == b'^');
                    assert_eq!(find_byte(b'^', &hay), want, "len {len} at {at}");
                    assert_eq!(find_byte(0xDE, &hay), None, "len {len}");
                    let either = hay.iter().position(|&b| b == b'^' || b == b'~');
                    assert_eq!(find_either(b'~', b'^', &hay), either, "len {len} at {at}");
                    let tilde = hay.iter().position(|&b| b == b'~');
                    assert_eq!(find_either(b'~', b'#', &hay), tilde, "len {len} at {at}");
                }
            }
        }
    }
}
