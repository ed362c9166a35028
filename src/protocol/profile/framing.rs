//! Cutting a profile's byte stream into frames, checking checksums, and the reverse for the
//! simulator.
//!
//! The framer works a byte at a time, so a read split anywhere decodes the same. It never holds
//! more than `max_frame` content bytes plus a 3-byte header and a 4-byte checksum: a frame that
//! grows past the cap is thrown away (counted in `resyncs` and `discarded_bytes`) and the framer
//! looks for the next one.

use super::model::{DeviceProfile, Framing, Terminator};
use crate::protocol::device::FrameStats;

/// A set of byte values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByteSet([u64; 4]);

impl ByteSet {
    pub fn insert(&mut self, b: u8) {
        if let Some(w) = self.0.get_mut(usize::from(b >> 6)) {
            *w |= 1 << (b & 63);
        }
    }
    pub fn contains(&self, b: u8) -> bool {
        self.0
            .get(usize::from(b >> 6))
            .is_some_and(|w| w & (1 << (b & 63)) != 0)
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    Big,
    Little,
}

/// 16-bit CRCs by their catalogue names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crc16 {
    /// CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected.
    Ccitt,
    /// CRC-16/XMODEM: poly 0x1021, init 0.
    Xmodem,
    /// CRC-16/X-25 (the PPP FCS): reflected 0x8408, init 0xFFFF, final complement.
    X25,
    /// CRC-16/MODBUS: reflected 0xA001, init 0xFFFF.
    Modbus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumAlgo {
    /// Sum of the bytes modulo 256.
    Sum8,
    /// XOR of the bytes.
    Xor8,
    Crc16(Crc16),
}

impl ChecksumAlgo {
    /// Bytes of the raw checksum value.
    pub fn width(self) -> usize {
        match self {
            ChecksumAlgo::Sum8 | ChecksumAlgo::Xor8 => 1,
            ChecksumAlgo::Crc16(_) => 2,
        }
    }

    fn init(self) -> u16 {
        match self {
            ChecksumAlgo::Sum8 | ChecksumAlgo::Xor8 => 0,
            ChecksumAlgo::Crc16(Crc16::Xmodem) => 0,
            ChecksumAlgo::Crc16(_) => 0xFFFF,
        }
    }

    fn update(self, mut acc: u16, data: &[u8]) -> u16 {
        for &b in data {
            acc = match self {
                ChecksumAlgo::Sum8 => (acc + u16::from(b)) & 0xFF,
                ChecksumAlgo::Xor8 => acc ^ u16::from(b),
                ChecksumAlgo::Crc16(Crc16::Ccitt | Crc16::Xmodem) => {
                    let mut c = acc ^ (u16::from(b) << 8);
                    for _ in 0..8 {
                        c = if c & 0x8000 != 0 {
                            (c << 1) ^ 0x1021
                        } else {
                            c << 1
                        };
                    }
                    c
                }
                ChecksumAlgo::Crc16(c @ (Crc16::X25 | Crc16::Modbus)) => {
                    let poly = if c == Crc16::X25 { 0x8408 } else { 0xA001 };
                    let mut c = acc ^ u16::from(b);
                    for _ in 0..8 {
                        c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
                    }
                    c
                }
            };
        }
        acc
    }

    fn finish(self, acc: u16) -> u16 {
        match self {
            ChecksumAlgo::Crc16(Crc16::X25) => !acc,
            _ => acc,
        }
    }

    /// The checksum of the concatenation of `parts`.
    pub fn compute(self, parts: &[&[u8]]) -> u16 {
        let acc = parts.iter().fold(self.init(), |acc, p| self.update(acc, p));
        self.finish(acc)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Upper-case ASCII hex digits (lower case accepted on input), most significant first.
    Hex,
    /// The raw bytes.
    Binary,
}

/// Where the checksum sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// The last bytes of the frame content, before the end byte or terminator (inside the
    /// length of a length-prefixed frame).
    BeforeEnd,
    /// After the end byte (after the counted length of a length-prefixed frame).
    AfterEnd,
}

/// A frame checksum: algorithm, encoding, position and what it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChecksumSpec {
    pub algo: ChecksumAlgo,
    pub encoding: Encoding,
    pub position: Position,
    /// Covers the start byte (the sync byte and length of a length-prefixed frame).
    pub covers_start: bool,
    /// Covers the end byte.
    pub covers_end: bool,
    /// Byte order of a binary 16-bit checksum.
    pub byte_order: ByteOrder,
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

impl ChecksumSpec {
    /// Bytes the checksum takes on the wire.
    pub fn encoded_len(&self) -> usize {
        match self.encoding {
            Encoding::Hex => self.algo.width() * 2,
            Encoding::Binary => self.algo.width(),
        }
    }

    /// Appends `value` as it goes on the wire.
    pub fn encode(&self, value: u16, out: &mut Vec<u8>) {
        let width = self.algo.width();
        match self.encoding {
            Encoding::Hex => {
                for i in (0..width * 2).rev() {
                    let nibble = usize::from((value >> (i * 4)) & 0xF);
                    out.push(HEX.get(nibble).copied().unwrap_or(b'0'));
                }
            }
            Encoding::Binary => {
                let [hi, lo] = value.to_be_bytes();
                match (width, self.byte_order) {
                    (1, _) => out.push(lo),
                    (_, ByteOrder::Big) => out.extend_from_slice(&[hi, lo]),
                    (_, ByteOrder::Little) => out.extend_from_slice(&[lo, hi]),
                }
            }
        }
    }

    /// The value of the checksum bytes as received, `None` when they are not well formed.
    pub fn decode(&self, bytes: &[u8]) -> Option<u16> {
        if bytes.len() != self.encoded_len() {
            return None;
        }
        match self.encoding {
            Encoding::Hex => bytes.iter().try_fold(0u16, |acc, b| {
                let d = (*b as char).to_digit(16)?;
                Some((acc << 4) | d as u16)
            }),
            Encoding::Binary => match (bytes, self.byte_order) {
                ([b], _) => Some(u16::from(*b)),
                ([hi, lo], ByteOrder::Big) | ([lo, hi], ByteOrder::Little) => {
                    Some(u16::from_be_bytes([*hi, *lo]))
                }
                _ => None,
            },
        }
    }

    /// Could `b` be part of this checksum on the wire?
    fn admits(&self, b: u8) -> bool {
        match self.encoding {
            Encoding::Hex => b.is_ascii_hexdigit(),
            Encoding::Binary => true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between frames (looking for a start byte).
    Idle,
    /// Collecting content (line text, bytes after STX).
    Content,
    /// A line grew past the cap: dropping bytes up to the next terminator.
    Overflow,
    /// Collecting a length prefix (and its sync byte).
    Header,
    /// Collecting `remaining` more content bytes of a length-prefixed frame.
    Body { remaining: usize },
    /// Collecting the checksum that follows the end byte or the counted length.
    Trailer,
}

/// Cuts frames out of a profile's byte stream.
#[derive(Clone, Debug)]
pub struct Framer {
    framing: Framing,
    max_frame: usize,
    checksum: Option<ChecksumSpec>,
    skip: ByteSet,
    state: State,
    /// Content of the frame being collected (markers and header excluded).
    buf: Vec<u8>,
    /// Sync byte and length bytes of a length-prefixed frame.
    header: Vec<u8>,
    trailer: Vec<u8>,
    /// Inside a run of thrown-away bytes (one resync per run).
    in_garbage: bool,
}

impl Framer {
    pub fn new(profile: &DeviceProfile) -> Self {
        let mut f = Framer {
            framing: profile.framing,
            max_frame: profile.max_frame,
            checksum: profile.checksum,
            skip: profile.skip,
            state: State::Idle,
            buf: Vec::with_capacity(profile.max_frame.min(4096) + 1),
            header: Vec::with_capacity(3),
            trailer: Vec::with_capacity(4),
            in_garbage: false,
        };
        f.reset();
        f
    }

    /// Forgets any partial frame (the port reopened).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.header.clear();
        self.trailer.clear();
        self.in_garbage = false;
        self.state = match self.framing {
            Framing::Line { .. } => State::Content,
            Framing::StxEtx { .. } | Framing::LengthPrefix { start: Some(_), .. } => State::Idle,
            Framing::LengthPrefix { start: None, .. } => State::Header,
        };
    }

    /// Bytes held for a partial frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.header.len() + self.trailer.len()
    }

    /// Feeds bytes; every frame that passes framing and checksum is handed to `on_frame`
    /// (content only: no markers, header or checksum).
    pub fn feed(&mut self, bytes: &[u8], stats: &mut FrameStats, on_frame: &mut dyn FnMut(&[u8])) {
        for &b in bytes {
            self.byte(b, stats, on_frame);
        }
    }

    fn garbage(&mut self, n: usize, stats: &mut FrameStats) {
        stats.discarded_bytes += n as u64;
        if !self.in_garbage {
            stats.resyncs += 1;
            self.in_garbage = true;
        }
    }

    fn byte(&mut self, b: u8, stats: &mut FrameStats, on_frame: &mut dyn FnMut(&[u8])) {
        match self.framing {
            Framing::Line { terminator } => self.line_byte(b, terminator, stats, on_frame),
            Framing::StxEtx { start, end } => self.stx_byte(b, start, end, stats, on_frame),
            Framing::LengthPrefix { .. } => self.length_byte(b, stats, on_frame),
        }
    }

    fn line_byte(
        &mut self,
        b: u8,
        terminator: Terminator,
        stats: &mut FrameStats,
        on_frame: &mut dyn FnMut(&[u8]),
    ) {
        // Lines are text: a byte of a skipped range cannot be part of one, wherever it falls.
        if self.skip.contains(b) {
            stats.skipped_bytes += 1;
            return;
        }
        let ends = match terminator {
            Terminator::Cr => b == b'\r',
            Terminator::Lf | Terminator::Crlf => b == b'\n',
        };
        if ends {
            if self.state == State::Overflow {
                stats.discarded_bytes += 1;
                self.state = State::Content;
                self.in_garbage = false;
                return;
            }
            if terminator != Terminator::Cr && self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            if !self.buf.is_empty() {
                let content = std::mem::take(&mut self.buf);
                self.finish(&content, &[], &[], stats, on_frame);
                self.buf = content;
                self.buf.clear();
            }
            return;
        }
        if self.state == State::Overflow {
            stats.discarded_bytes += 1;
            return;
        }
        // An LF after a CR terminator (CRLF devices on a CR profile) starts no line.
        if terminator == Terminator::Cr && b == b'\n' && self.buf.is_empty() {
            return;
        }
        // One byte of slack for the CR of a CRLF pair.
        if self.buf.len() > self.max_frame {
            stats.resyncs += 1;
            stats.discarded_bytes += self.buf.len() as u64 + 1;
            self.buf.clear();
            self.state = State::Overflow;
            return;
        }
        self.buf.push(b);
    }

    fn stx_byte(
        &mut self,
        b: u8,
        start: u8,
        end: u8,
        stats: &mut FrameStats,
        on_frame: &mut dyn FnMut(&[u8]),
    ) {
        match self.state {
            State::Content => {
                if b == end {
                    if self
                        .checksum
                        .is_some_and(|c| c.position == Position::AfterEnd)
                    {
                        self.trailer.clear();
                        self.state = State::Trailer;
                    } else {
                        self.finish_taken(&[start], &[end], stats, on_frame);
                        self.state = State::Idle;
                    }
                } else if b == start {
                    // A new frame began before this one ended: the partial one is lost.
                    stats.resyncs += 1;
                    stats.discarded_bytes += self.buf.len() as u64 + 1;
                    self.buf.clear();
                } else if self.buf.len() >= self.max_frame {
                    self.buf.clear();
                    self.state = State::Idle;
                    self.in_garbage = false;
                    self.garbage(self.max_frame + 2, stats);
                } else {
                    self.buf.push(b);
                }
            }
            State::Trailer => {
                let Some(c) = self.checksum else {
                    self.state = State::Idle;
                    return;
                };
                if !c.admits(b) {
                    // Cut short: the frame fails, and this byte may start the next.
                    stats.checksum_failures += 1;
                    self.buf.clear();
                    self.trailer.clear();
                    self.state = State::Idle;
                    self.stx_byte(b, start, end, stats, on_frame);
                    return;
                }
                self.trailer.push(b);
                if self.trailer.len() >= c.encoded_len() {
                    self.finish_taken(&[start], &[end], stats, on_frame);
                    self.state = State::Idle;
                }
            }
            _ => {
                if b == start {
                    self.in_garbage = false;
                    self.buf.clear();
                    self.state = State::Content;
                } else if self.skip.contains(b) {
                    stats.skipped_bytes += 1;
                } else {
                    self.garbage(1, stats);
                }
            }
        }
    }

    fn length_byte(&mut self, b: u8, stats: &mut FrameStats, on_frame: &mut dyn FnMut(&[u8])) {
        let Framing::LengthPrefix {
            start,
            length_bytes,
            byte_order,
            includes_header,
        } = self.framing
        else {
            return;
        };
        match self.state {
            State::Idle => {
                if Some(b) == start {
                    self.in_garbage = false;
                    self.header.clear();
                    self.header.push(b);
                    self.state = State::Header;
                } else if self.skip.contains(b) {
                    stats.skipped_bytes += 1;
                } else {
                    self.garbage(1, stats);
                }
            }
            State::Header => {
                self.header.push(b);
                let header_len = usize::from(start.is_some()) + usize::from(length_bytes);
                if self.header.len() < header_len {
                    return;
                }
                let len_bytes = self
                    .header
                    .get(usize::from(start.is_some())..)
                    .unwrap_or(&[]);
                let raw = match (len_bytes, byte_order) {
                    ([l], _) => usize::from(*l),
                    ([hi, lo], ByteOrder::Big) | ([lo, hi], ByteOrder::Little) => {
                        usize::from(u16::from_be_bytes([*hi, *lo]))
                    }
                    _ => usize::MAX,
                };
                let payload = if includes_header {
                    raw.checked_sub(header_len)
                } else {
                    Some(raw)
                };
                let inner = self
                    .checksum
                    .filter(|c| c.position == Position::BeforeEnd)
                    .map_or(0, |c| c.encoded_len());
                match payload.filter(|p| *p <= self.max_frame && *p >= inner) {
                    Some(0) => {
                        self.buf.clear();
                        self.after_body(stats, on_frame);
                    }
                    Some(p) => {
                        self.buf.clear();
                        self.state = State::Body { remaining: p };
                    }
                    None => self.bad_header(stats, on_frame),
                }
            }
            State::Body { remaining } => {
                self.buf.push(b);
                let left = remaining.saturating_sub(1);
                if left == 0 {
                    self.after_body(stats, on_frame);
                } else {
                    self.state = State::Body { remaining: left };
                }
            }
            State::Trailer => {
                self.trailer.push(b);
                if self
                    .checksum
                    .is_none_or(|c| self.trailer.len() >= c.encoded_len())
                {
                    self.finish_length(stats, on_frame);
                }
            }
            State::Content | State::Overflow => self.reset(),
        }
    }

    /// A length out of bounds: drop the first header byte and look again in the rest.
    fn bad_header(&mut self, stats: &mut FrameStats, on_frame: &mut dyn FnMut(&[u8])) {
        let header = std::mem::take(&mut self.header);
        let Framing::LengthPrefix { start, .. } = self.framing else {
            return;
        };
        self.state = if start.is_some() {
            State::Idle
        } else {
            State::Header
        };
        // Bad lengths in a row are one resync; a finished frame or a sync byte ends the run.
        self.garbage(1, stats);
        for &b in header.get(1..).unwrap_or(&[]) {
            self.length_byte(b, stats, on_frame);
        }
    }

    fn after_body(&mut self, stats: &mut FrameStats, on_frame: &mut dyn FnMut(&[u8])) {
        if self
            .checksum
            .is_some_and(|c| c.position == Position::AfterEnd)
        {
            self.trailer.clear();
            self.state = State::Trailer;
        } else {
            self.finish_length(stats, on_frame);
        }
    }

    fn finish_length(&mut self, stats: &mut FrameStats, on_frame: &mut dyn FnMut(&[u8])) {
        let header = std::mem::take(&mut self.header);
        self.finish_taken(&header, &[], stats, on_frame);
        self.header = header;
        self.header.clear();
        self.in_garbage = false;
        let Framing::LengthPrefix { start, .. } = self.framing else {
            return;
        };
        self.state = if start.is_some() {
            State::Idle
        } else {
            State::Header
        };
    }

    /// Finishes the frame in `buf` with the trailer collected so far.
    fn finish_taken(
        &mut self,
        start: &[u8],
        end: &[u8],
        stats: &mut FrameStats,
        on_frame: &mut dyn FnMut(&[u8]),
    ) {
        let content = std::mem::take(&mut self.buf);
        self.finish(&content, start, end, stats, on_frame);
        self.buf = content;
        self.buf.clear();
        self.trailer.clear();
    }

    /// Checks the checksum of a complete frame and hands its content on.
    fn finish(
        &mut self,
        content: &[u8],
        start: &[u8],
        end: &[u8],
        stats: &mut FrameStats,
        on_frame: &mut dyn FnMut(&[u8]),
    ) {
        if matches!(self.framing, Framing::Line { .. }) && content.len() > self.max_frame {
            stats.resyncs += 1;
            stats.discarded_bytes += content.len() as u64 + 1;
            return;
        }
        let Some(c) = self.checksum else {
            stats.frames += 1;
            on_frame(content);
            return;
        };
        let (data, received) = match c.position {
            Position::BeforeEnd => match content.len().checked_sub(c.encoded_len()) {
                Some(at) => (
                    content.get(..at).unwrap_or(&[]),
                    content.get(at..).unwrap_or(&[]),
                ),
                None => {
                    stats.checksum_failures += 1;
                    return;
                }
            },
            Position::AfterEnd => (content, self.trailer.as_slice()),
        };
        let start = if c.covers_start { start } else { &[] };
        let end = if c.covers_end { end } else { &[] };
        let expected = c.algo.compute(&[start, data, end]);
        if c.decode(received) == Some(expected) {
            stats.frames += 1;
            on_frame(data);
        } else {
            stats.checksum_failures += 1;
        }
    }
}

/// Why a frame could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("frame of {len} bytes is over the profile's max_frame {max}")]
    TooLong { len: usize, max: usize },
    #[error("frame content contains the framing byte {0:#04x}")]
    Marker(u8),
}

/// Wraps `content` in the profile's framing and checksum, as the device would send it.
pub fn encode(
    profile: &DeviceProfile,
    content: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let c = profile.checksum;
    let inner = c
        .filter(|c| c.position == Position::BeforeEnd)
        .map_or(0, |c| c.encoded_len());
    let len = content.len() + inner;
    if len > profile.max_frame {
        return Err(EncodeError::TooLong {
            len,
            max: profile.max_frame,
        });
    }
    let push_checksum = |out: &mut Vec<u8>, start: &[u8], end: &[u8], pos: Position| {
        if let Some(c) = c.filter(|c| c.position == pos) {
            let start = if c.covers_start { start } else { &[] };
            let end = if c.covers_end { end } else { &[] };
            c.encode(c.algo.compute(&[start, content, end]), out);
        }
    };
    match profile.framing {
        Framing::Line { terminator } => {
            if let Some(m) = content.iter().find(|b| **b == b'\r' || **b == b'\n') {
                return Err(EncodeError::Marker(*m));
            }
            out.extend_from_slice(content);
            push_checksum(out, &[], &[], Position::BeforeEnd);
            out.extend_from_slice(terminator.bytes());
        }
        Framing::StxEtx { start, end } => {
            if let Some(m) = content.iter().find(|b| **b == start || **b == end) {
                return Err(EncodeError::Marker(*m));
            }
            out.push(start);
            out.extend_from_slice(content);
            push_checksum(out, &[start], &[end], Position::BeforeEnd);
            out.push(end);
            push_checksum(out, &[start], &[end], Position::AfterEnd);
        }
        Framing::LengthPrefix {
            start,
            length_bytes,
            byte_order,
            includes_header,
        } => {
            let header_len = usize::from(start.is_some()) + usize::from(length_bytes);
            let n = len + if includes_header { header_len } else { 0 };
            let mut header: Vec<u8> = start.into_iter().collect();
            let [hi, lo] = u16::try_from(n)
                .map_err(|_| EncodeError::TooLong {
                    len,
                    max: profile.max_frame,
                })?
                .to_be_bytes();
            match (length_bytes, byte_order) {
                (1, _) if hi == 0 => header.push(lo),
                (1, _) => {
                    return Err(EncodeError::TooLong {
                        len,
                        max: profile.max_frame,
                    })
                }
                (_, ByteOrder::Big) => header.extend_from_slice(&[hi, lo]),
                (_, ByteOrder::Little) => header.extend_from_slice(&[lo, hi]),
            }
            out.extend_from_slice(&header);
            out.extend_from_slice(content);
            push_checksum(out, &header, &[], Position::BeforeEnd);
            push_checksum(out, &header, &[], Position::AfterEnd);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_the_catalogue_check_values() {
        let data: &[&[u8]] = &[b"1234", b"56789"];
        assert_eq!(ChecksumAlgo::Crc16(Crc16::Ccitt).compute(data), 0x29B1);
        assert_eq!(ChecksumAlgo::Crc16(Crc16::Xmodem).compute(data), 0x31C3);
        assert_eq!(ChecksumAlgo::Crc16(Crc16::X25).compute(data), 0x906E);
        assert_eq!(ChecksumAlgo::Crc16(Crc16::Modbus).compute(data), 0x4B37);
        assert_eq!(ChecksumAlgo::Sum8.compute(data), 0xDD);
        assert_eq!(ChecksumAlgo::Xor8.compute(data), 0x31);
    }

    #[test]
    fn hex_and_binary_encodings_round_trip() {
        for (algo, encoding, order) in [
            (ChecksumAlgo::Sum8, Encoding::Hex, ByteOrder::Big),
            (
                ChecksumAlgo::Crc16(Crc16::Ccitt),
                Encoding::Hex,
                ByteOrder::Big,
            ),
            (
                ChecksumAlgo::Crc16(Crc16::Ccitt),
                Encoding::Binary,
                ByteOrder::Little,
            ),
            (ChecksumAlgo::Xor8, Encoding::Binary, ByteOrder::Big),
        ] {
            let spec = ChecksumSpec {
                algo,
                encoding,
                position: Position::AfterEnd,
                covers_start: false,
                covers_end: false,
                byte_order: order,
            };
            let v = algo.compute(&[b"P1;x"]);
            let mut out = Vec::new();
            spec.encode(v, &mut out);
            assert_eq!(out.len(), spec.encoded_len());
            assert_eq!(spec.decode(&out), Some(v));
        }
        let hex = ChecksumSpec {
            algo: ChecksumAlgo::Sum8,
            encoding: Encoding::Hex,
            position: Position::AfterEnd,
            covers_start: false,
            covers_end: false,
            byte_order: ByteOrder::Big,
        };
        assert_eq!(hex.decode(b"aF"), Some(0xAF));
        assert_eq!(hex.decode(b"G0"), None);
    }

    #[test]
    fn byte_set_holds_what_was_inserted() {
        let mut s = ByteSet::default();
        assert!(s.is_empty());
        s.insert(0x80);
        s.insert(0xFF);
        assert!(s.contains(0x80) && s.contains(0xFF));
        assert!(!s.contains(0x7F) && !s.contains(0x00));
    }
}
