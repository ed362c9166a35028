//! Datex-Ohmeda record framing: `0x7E` record bytes + checksum `0x7E`, with `0x7D` escaping.
//!
//! Owns the envelope only: the flags, the escape rule, the 8-bit checksum and the length cap.
//! It knows nothing about record headers; a frame that passes the checksum is handed on as the
//! unescaped record bytes (checksum removed).
//!
//! On the wire every record is `0x7E`, the escaped record, the escaped checksum, `0x7E`. A
//! record byte (or checksum) equal to `0x7E` or `0x7D` is sent as `0x7D` followed by the byte
//! with bit 5 toggled (XOR `0x20`): `0x7E` → `7D 5E`, `0x7D` → `7D 5D`. The checksum is the
//! 8-bit sum of the unescaped record bytes.
//!
//! The decoder accepts a closing flag that doubles as the next opening flag, and empty frames
//! (`7E 7E`) in between. Bytes before the first flag are noise. A stray `7D 7E` aborts the frame
//! in progress; a frame longer than the cap is dropped and the decoder hunts for the next flag.

use crate::protocol::device::FrameStats;

/// Frame delimiter, sent at both ends of a record.
pub const FLAG: u8 = 0x7E;
/// Escape: the next byte is sent with bit 5 toggled.
pub const ESC: u8 = 0x7D;
/// What an escaped byte is XOR-ed with.
pub const ESC_XOR: u8 = 0x20;

/// 8-bit sum of the unescaped record bytes (the checksum sent before the closing flag).
pub fn checksum(record: &[u8]) -> u8 {
    record.iter().fold(0u8, |sum, b| sum.wrapping_add(*b))
}

/// Appends one framed record: flag, escaped record, escaped checksum, flag.
pub fn encode_frame(record: &[u8], out: &mut Vec<u8>) {
    encode_frame_with_checksum(record, checksum(record), out);
}

/// Frames `record` with the given checksum byte (simulators use it to send a wrong one).
pub(crate) fn encode_frame_with_checksum(record: &[u8], sum: u8, out: &mut Vec<u8>) {
    out.reserve(record.len() + record.len() / 16 + 4);
    out.push(FLAG);
    for &b in record {
        push_escaped(b, out);
    }
    push_escaped(sum, out);
    out.push(FLAG);
}

fn push_escaped(b: u8, out: &mut Vec<u8>) {
    if b == FLAG || b == ESC {
        out.push(ESC);
        out.push(b ^ ESC_XOR);
    } else {
        out.push(b);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for a flag; everything else is noise.
    Hunting,
    /// Inside a frame (or between frames, after a closing flag).
    InFrame,
    /// The previous byte was `0x7D`.
    Escaped,
}

/// Incremental frame decoder. Feed it reads of any size; complete, checksum-verified records
/// come out of [`FrameDecoder::decode`]'s callback. Holds at most `max_len` bytes.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    state: State,
    max_len: usize,
    /// Inside a run of discarded bytes: the run counts as one resync.
    in_noise: bool,
    stats: FrameStats,
}

impl FrameDecoder {
    /// `max_len`: the longest frame kept, counted in unescaped bytes including the checksum
    /// (at least 2). [`super::record::MAX_RECORD_LEN`] + 1 fits every record of the interface.
    pub fn new(max_len: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            state: State::Hunting,
            max_len: max_len.max(2),
            in_noise: false,
            stats: FrameStats::default(),
        }
    }

    /// Framing counters since creation (`decode_errors` and `skipped_bytes` stay 0 here).
    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    /// Bytes held for the frame in progress.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forgets the frame in progress (the port was reopened); counters are kept.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.state = State::Hunting;
        self.in_noise = false;
    }

    /// Decodes `bytes`; calls `on_record` with each verified record (checksum removed).
    pub fn decode(&mut self, bytes: &[u8], mut on_record: impl FnMut(&[u8])) {
        for &b in bytes {
            match self.state {
                State::Hunting => {
                    if b == FLAG {
                        self.in_noise = false;
                        self.state = State::InFrame;
                    } else {
                        self.noise(1);
                    }
                }
                State::InFrame => match b {
                    FLAG => {
                        if !self.buf.is_empty() {
                            self.finish(&mut on_record);
                        }
                    }
                    ESC => self.state = State::Escaped,
                    _ => self.push(b),
                },
                State::Escaped => {
                    if b == FLAG {
                        // `7D 7E`: the frame was aborted; this flag opens the next one.
                        let dropped = self.buf.len() as u64 + 1;
                        self.buf.clear();
                        self.in_noise = false;
                        self.noise(dropped);
                        self.in_noise = false;
                        self.state = State::InFrame;
                    } else {
                        self.state = State::InFrame;
                        self.push(b ^ ESC_XOR);
                    }
                }
            }
        }
    }

    fn noise(&mut self, n: u64) {
        if !self.in_noise {
            self.stats.resyncs += 1;
            self.in_noise = true;
        }
        self.stats.discarded_bytes += n;
    }

    fn push(&mut self, b: u8) {
        if self.buf.len() >= self.max_len {
            // Too long for any record: drop it and hunt for the next flag.
            let dropped = self.buf.len() as u64 + 1;
            self.buf.clear();
            self.in_noise = false;
            self.noise(dropped);
            self.state = State::Hunting;
            return;
        }
        self.buf.push(b);
    }

    fn finish(&mut self, on_record: &mut impl FnMut(&[u8])) {
        match self.buf.split_last() {
            Some((&sum, body)) if !body.is_empty() => {
                if checksum(body) == sum {
                    self.stats.frames += 1;
                    on_record(body);
                } else {
                    self.stats.checksum_failures += 1;
                }
            }
            // A single byte between flags cannot be a record and its checksum.
            _ => {
                let n = self.buf.len() as u64;
                self.in_noise = false;
                self.noise(n);
                self.in_noise = false;
            }
        }
        self.buf.clear();
    }
}
