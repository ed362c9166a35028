//! MEDIBUS slow-mode framing: cutting commands and responses out of a serial byte stream and
//! writing them.
//!
//! Command: `ESC` + command code + arguments + checksum + `CR`. Response: `SOH` + echoed command
//! code + data + checksum + `CR`. The checksum is the 8-bit sum of every byte before it (the
//! `ESC`/`SOH` included), sent as two uppercase ASCII hex characters.
//!
//! The stream also carries bytes that are not slow-mode traffic: `XON`/`XOFF` software
//! handshake characters, and real-time (MEDIBUS.X waveform) traffic — sync bytes (`0xD0`), sync
//! commands (`0xC0`–`0xCF`) and data bytes, all with the high bit set, interleaved anywhere,
//! even inside a slow-mode message. The decoder drops them and counts them in
//! [`FrameStats::skipped_bytes`].
//!
//! MEDIBUS is symmetric and a device may start a command of its own while it is still sending a
//! response: a command (`ESC` … `CR`) nested inside a response is decoded on its own and the
//! response continues after it.
//!
//! This module owns the envelope only; it must not interpret data or keep session state.

use crate::protocol::device::FrameStats;

/// Starts a command.
pub const ESC: u8 = 0x1B;
/// Starts a response.
pub const SOH: u8 = 0x01;
/// Ends a command or a response.
pub const CR: u8 = 0x0D;
/// Software handshake "resume" (DC1), ignored in the stream.
pub const XON: u8 = 0x11;
/// Software handshake "suspend" (DC3), ignored in the stream.
pub const XOFF: u8 = 0x13;
/// Ends one text message record inside a text-messages response.
pub const ETX: u8 = 0x03;

/// Default cap on one message, from its `ESC`/`SOH` to its checksum (the `CR` excluded). The
/// longest standard responses (every data code of a code page) stay well below it.
pub const DEFAULT_MAX_MESSAGE: usize = 4096;

/// The shortest message: start byte, command code, two checksum characters.
const MIN_MESSAGE: usize = 4;

/// The 8-bit sum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

/// `byte` as two uppercase ASCII hex characters.
pub fn hex_pair(byte: u8) -> [u8; 2] {
    [hex_char(byte >> 4), hex_char(byte & 0x0F)]
}

fn hex_char(nibble: u8) -> u8 {
    if nibble < 10 {
        b'0' + nibble
    } else {
        b'A' + (nibble - 10)
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Two ASCII hex characters (either case) as a byte.
pub fn parse_hex_pair(hi: u8, lo: u8) -> Option<u8> {
    Some(hex_value(hi)? << 4 | hex_value(lo)?)
}

/// Whether a message is a command (`ESC`) or a response (`SOH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Command,
    Response,
}

impl MessageKind {
    fn start_byte(self) -> u8 {
        match self {
            MessageKind::Command => ESC,
            MessageKind::Response => SOH,
        }
    }
}

/// One framed message with a good checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    /// The command code (echoed in a response).
    pub code: u8,
    /// Arguments of a command, data of a response: between the code and the checksum.
    pub data: Vec<u8>,
}

/// Appends one message: start byte, `code`, `data`, checksum, `CR`. `data` must be slow-mode
/// characters (7-bit, none of `ESC`, `SOH`, `CR`, `XON`, `XOFF`).
pub fn encode(kind: MessageKind, code: u8, data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.push(kind.start_byte());
    out.push(code);
    out.extend_from_slice(data);
    let sum = checksum(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&hex_pair(sum));
    out.push(CR);
}

/// Appends a command: `ESC` + `code` + `args` + checksum + `CR`.
pub fn encode_command(code: u8, args: &[u8], out: &mut Vec<u8>) {
    encode(MessageKind::Command, code, args, out);
}

/// Appends a response: `SOH` + `code` + `data` + checksum + `CR`.
pub fn encode_response(code: u8, data: &[u8], out: &mut Vec<u8>) {
    encode(MessageKind::Response, code, data, out);
}

/// What the decoder found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A message that framed and passed its checksum.
    Message(Message),
    /// A command whose checksum failed. MEDIBUS answers it with the "command corrupted"
    /// response (`SOH` + `0x15` + checksum + `CR`).
    CorruptCommand,
    /// A response whose checksum failed: the answer to the outstanding request arrived but
    /// cannot be trusted.
    CorruptResponse,
}

/// A message in progress, from its start byte.
#[derive(Debug)]
struct Partial {
    kind: MessageKind,
    bytes: Vec<u8>,
}

impl Partial {
    fn new(kind: MessageKind) -> Self {
        Partial {
            kind,
            bytes: vec![kind.start_byte()],
        }
    }
}

/// Incremental MEDIBUS decoder: feed it reads of any size, it hands back whole messages. It
/// holds at most two partial messages (a response and a command nested in it), each capped at
/// `max_message` bytes.
#[derive(Debug)]
pub struct MedibusDecoder {
    max_message: usize,
    /// The top-level message in progress.
    outer: Option<Partial>,
    /// A command nested in the response in progress.
    inner: Option<Partial>,
    /// Inside a run of bytes that belong to no message (counted as one resync).
    discarding: bool,
    stats: FrameStats,
}

impl Default for MedibusDecoder {
    fn default() -> Self {
        MedibusDecoder::new(DEFAULT_MAX_MESSAGE)
    }
}

impl MedibusDecoder {
    /// A decoder that drops (and counts) any message longer than `max_message` bytes, start
    /// byte and checksum included.
    pub fn new(max_message: usize) -> Self {
        MedibusDecoder {
            max_message,
            outer: None,
            inner: None,
            discarding: false,
            stats: FrameStats::default(),
        }
    }

    /// Framing counters since creation.
    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    /// Counts a message that framed but whose content could not be decoded.
    pub fn note_decode_error(&mut self) {
        self.stats.decode_errors += 1;
    }

    /// Bytes held in partial messages.
    pub fn buffered(&self) -> usize {
        self.outer.as_ref().map_or(0, |p| p.bytes.len())
            + self.inner.as_ref().map_or(0, |p| p.bytes.len())
    }

    /// Forgets partial messages (the port was reopened). Counters are kept; held bytes are
    /// counted as discarded.
    pub fn reset(&mut self) {
        self.abandon();
        self.discarding = false;
    }

    /// Decodes `bytes`, appending what it finds to `out`.
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<Decoded>) {
        for &b in bytes {
            self.push(b, out);
        }
    }

    fn push(&mut self, b: u8, out: &mut Vec<Decoded>) {
        // Real-time traffic has the high bit set; handshake characters carry no data.
        if b >= 0x80 || b == XON || b == XOFF {
            self.stats.skipped_bytes += 1;
            return;
        }
        match b {
            ESC => {
                // A command still open when another starts lost its end.
                if let Some(inner) = self.inner.take() {
                    self.count_dropped(inner.bytes.len());
                }
                match self.outer.as_ref().map(|p| p.kind) {
                    Some(MessageKind::Response) => {
                        self.inner = Some(Partial::new(MessageKind::Command));
                    }
                    Some(MessageKind::Command) => {
                        if let Some(outer) = self.outer.take() {
                            self.count_dropped(outer.bytes.len());
                        }
                        self.outer = Some(Partial::new(MessageKind::Command));
                    }
                    None => self.outer = Some(Partial::new(MessageKind::Command)),
                }
                self.discarding = false;
            }
            SOH => {
                // Responses do not nest: whatever was open is torn.
                self.abandon();
                self.outer = Some(Partial::new(MessageKind::Response));
                self.discarding = false;
            }
            CR => {
                if let Some(p) = self.inner.take().or_else(|| self.outer.take()) {
                    self.finish(p, out);
                } else {
                    self.garbage(1);
                }
            }
            _ => {
                let max = self.max_message;
                let overflow = match self.inner.as_mut().or(self.outer.as_mut()) {
                    None => {
                        self.garbage(1);
                        return;
                    }
                    Some(p) if p.bytes.len() < max => {
                        p.bytes.push(b);
                        false
                    }
                    Some(_) => true,
                };
                if overflow {
                    // Too long to be a message: its end was lost. Drop it and skip to the
                    // next start byte.
                    self.abandon();
                    self.stats.discarded_bytes += 1;
                    self.discarding = true;
                }
            }
        }
    }

    /// Drops both partial messages, counting one resync.
    fn abandon(&mut self) {
        let held = self.buffered();
        self.outer = None;
        self.inner = None;
        if held > 0 {
            self.count_dropped(held);
        }
    }

    fn count_dropped(&mut self, len: usize) {
        self.stats.resyncs += 1;
        self.stats.discarded_bytes += len as u64;
    }

    /// A byte outside any message. A run of them is one resync.
    fn garbage(&mut self, len: u64) {
        if !self.discarding {
            self.stats.resyncs += 1;
            self.discarding = true;
        }
        self.stats.discarded_bytes += len;
    }

    fn finish(&mut self, p: Partial, out: &mut Vec<Decoded>) {
        let n = p.bytes.len();
        if n < MIN_MESSAGE {
            // `ESC CR`, `SOH x CR`: truncated, the CR included.
            self.count_dropped(n + 1);
            return;
        }
        let (body, sum) = p.bytes.split_at(n - 2);
        let sent = match sum {
            [hi, lo] => parse_hex_pair(*hi, *lo),
            _ => None,
        };
        if sent != Some(checksum(body)) {
            self.stats.checksum_failures += 1;
            out.push(match p.kind {
                MessageKind::Command => Decoded::CorruptCommand,
                MessageKind::Response => Decoded::CorruptResponse,
            });
            return;
        }
        let (Some(&code), Some(data)) = (body.get(1), body.get(2..)) else {
            return;
        };
        self.stats.frames += 1;
        out.push(Decoded::Message(Message {
            kind: p.kind,
            code,
            data: data.to_vec(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(d: &mut MedibusDecoder, bytes: &[u8]) -> Vec<Decoded> {
        let mut out = Vec::new();
        d.decode(bytes, &mut out);
        out
    }

    fn response(code: u8, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_response(code, data, &mut v);
        v
    }

    fn msg(kind: MessageKind, code: u8, data: &[u8]) -> Decoded {
        Decoded::Message(Message {
            kind,
            code,
            data: data.to_vec(),
        })
    }

    #[test]
    fn checksums_match_sums_worked_by_hand() {
        // NOP command: 0x1B + 0x30 = 0x4B.
        let mut v = Vec::new();
        encode_command(0x30, &[], &mut v);
        assert_eq!(v, b"\x1b04B\r");
        // ICC command: 0x1B + 0x51 = 0x6C; its response: 0x01 + 0x51 = 0x52.
        v.clear();
        encode_command(0x51, &[], &mut v);
        assert_eq!(v, b"\x1bQ6C\r");
        assert_eq!(response(0x51, b""), b"\x01Q52\r");
        // Measured data with PEEP " 8.0": 01+24+37+38+20+38+2E+30 = 0x14A → "4A".
        assert_eq!(response(0x24, b"78 8.0"), b"\x01$78 8.04A\r");
        // Settings, FiO2 set to 40 %: 01+29+30+31+20+20+20+34+30 = 0x14F → "4F".
        assert_eq!(response(0x29, b"01   40"), b"\x01)01   404F\r");
        // Device id request: 0x1B + 0x52 = 0x6D (lowercase digits are never sent).
        v.clear();
        encode_command(0x52, &[], &mut v);
        assert_eq!(v, b"\x1bR6D\r");
    }

    #[test]
    fn hex_pairs_round_trip_and_accept_lowercase() {
        for b in 0..=255u8 {
            let [hi, lo] = hex_pair(b);
            assert_eq!(parse_hex_pair(hi, lo), Some(b));
        }
        assert_eq!(parse_hex_pair(b'4', b'a'), Some(0x4A));
        assert_eq!(parse_hex_pair(b'G', b'0'), None);
    }

    #[test]
    fn commands_and_responses_round_trip() {
        let mut stream = Vec::new();
        encode_command(0x24, b"", &mut stream);
        encode_response(0x24, b"78 8.0F0  40", &mut stream);
        encode_command(0x54, b"0001", &mut stream);
        let mut d = MedibusDecoder::default();
        let got = decode_all(&mut d, &stream);
        assert_eq!(
            got,
            vec![
                msg(MessageKind::Command, 0x24, b""),
                msg(MessageKind::Response, 0x24, b"78 8.0F0  40"),
                msg(MessageKind::Command, 0x54, b"0001"),
            ]
        );
        assert_eq!(d.stats().frames, 3);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn split_reads_at_every_offset_give_the_same_messages() {
        let mut stream = Vec::new();
        encode_response(0x51, b"", &mut stream);
        encode_response(0x24, b"78 8.0F0  4088 450", &mut stream);
        encode_command(0x30, b"", &mut stream);
        let mut whole = MedibusDecoder::default();
        let want = decode_all(&mut whole, &stream);
        assert_eq!(want.len(), 3);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            let mut d = MedibusDecoder::default();
            let mut got = decode_all(&mut d, a);
            got.extend(decode_all(&mut d, b));
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(d.stats(), whole.stats(), "cut at {cut}");
        }
        // And one byte at a time.
        let mut d = MedibusDecoder::default();
        let mut got = Vec::new();
        for b in &stream {
            got.extend(decode_all(&mut d, std::slice::from_ref(b)));
        }
        assert_eq!(got, want);
    }

    #[test]
    fn bad_checksum_is_counted_and_the_next_message_decodes() {
        let mut bad = response(0x24, b"78 8.0");
        let at = bad.len() - 2; // second checksum digit
        bad[at] = b'B';
        let mut stream = bad;
        stream.extend(response(0x24, b"78 9.0"));
        let mut d = MedibusDecoder::default();
        let got = decode_all(&mut d, &stream);
        assert_eq!(
            got,
            vec![
                Decoded::CorruptResponse,
                msg(MessageKind::Response, 0x24, b"78 9.0")
            ]
        );
        assert_eq!(d.stats().checksum_failures, 1);
        assert_eq!(d.stats().frames, 1);
        assert_eq!(d.stats().resyncs, 0);
    }

    #[test]
    fn corrupt_commands_are_reported_so_they_can_be_answered() {
        let mut stream = b"\x1b0XX\r".to_vec();
        encode_command(0x30, b"", &mut stream);
        let mut d = MedibusDecoder::default();
        let got = decode_all(&mut d, &stream);
        assert_eq!(
            got,
            vec![
                Decoded::CorruptCommand,
                msg(MessageKind::Command, 0x30, b"")
            ]
        );
        assert_eq!(d.stats().checksum_failures, 1);
    }

    #[test]
    fn handshake_and_realtime_bytes_are_skipped_even_inside_messages() {
        let clean = response(0x24, b"78 8.0F0  40");
        let mut noisy = vec![XON, 0xD0, 0xC1, 0x85, 0x9F];
        for (i, b) in clean.iter().enumerate() {
            noisy.push(*b);
            if i % 3 == 1 {
                noisy.extend([0xD0, XOFF, 0xC6, 0xC0, 0xBF]);
            }
        }
        let skipped = (noisy.len() - clean.len()) as u64;
        let mut d = MedibusDecoder::default();
        let got = decode_all(&mut d, &noisy);
        assert_eq!(got, vec![msg(MessageKind::Response, 0x24, b"78 8.0F0  40")]);
        assert_eq!(d.stats().skipped_bytes, skipped);
        assert_eq!(d.stats().discarded_bytes, 0);
        assert_eq!(d.stats().resyncs, 0);
    }

    #[test]
    fn a_command_nested_in_a_response_is_decoded_and_the_response_continues() {
        let full = response(0x24, b"78 8.0F0  40");
        let mut nop = Vec::new();
        encode_command(0x30, b"", &mut nop);
        let mut stream = full[..6].to_vec();
        stream.extend(&nop);
        stream.extend(&full[6..]);
        let mut d = MedibusDecoder::default();
        let got = decode_all(&mut d, &stream);
        assert_eq!(
            got,
            vec![
                msg(MessageKind::Command, 0x30, b""),
                msg(MessageKind::Response, 0x24, b"78 8.0F0  40"),
            ]
        );
        assert_eq!(d.stats().resyncs, 0);
    }

    #[test]
    fn truncated_messages_are_dropped_and_counted() {
        let good = response(0x24, b"78 8.0");
        // A response cut off by a new response, then a bare ESC CR, then noise.
        let mut stream = good[..5].to_vec();
        stream.extend(&good);
        stream.extend(b"\x1b\r");
        stream.extend(b"garbage");
        stream.extend(&good);
        let mut d = MedibusDecoder::default();
        let got = decode_all(&mut d, &stream);
        assert_eq!(got.len(), 2);
        let s = d.stats();
        assert_eq!(s.frames, 2);
        assert_eq!(s.resyncs, 3);
        assert_eq!(s.discarded_bytes, 5 + 2 + 7);
        // A message cut off at the end of the input is held, not emitted.
        let mut d = MedibusDecoder::default();
        assert!(decode_all(&mut d, &good[..good.len() - 1]).is_empty());
        assert_eq!(d.buffered(), good.len() - 1);
        d.reset();
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.stats().discarded_bytes, (good.len() - 1) as u64);
    }

    #[test]
    fn an_oversize_message_is_dropped_and_decoding_resumes() {
        let mut d = MedibusDecoder::new(32);
        let mut stream = vec![SOH, 0x24];
        stream.extend(std::iter::repeat_n(b'7', 100));
        stream.extend(b"\r");
        let good = response(0x24, b"78 8.0");
        stream.extend(&good);
        let got = decode_all(&mut d, &stream);
        assert_eq!(got, vec![msg(MessageKind::Response, 0x24, b"78 8.0")]);
        let s = d.stats();
        assert_eq!(s.resyncs, 1);
        // Everything from SOH to the stray CR: 102 bytes + CR.
        assert_eq!(s.discarded_bytes, 103);
        assert!(d.buffered() <= 32);
    }
}
