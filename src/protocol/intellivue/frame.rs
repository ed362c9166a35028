//! MIB/RS232 framing: `0xC0` + escaped (header + user data + FCS) + `0xC1`.
//!
//! The header is the protocol id `0x11`, the message type `0x01` and the big-endian length of
//! the user data; the FCS is the 16-bit PPP frame check sequence of RFC 1662 over header and user
//! data, sent least significant byte first. Inside a frame `0x7D` escapes the next byte, which
//! is XOR-ed with `0x20`, so `0xC0`, `0xC1` and `0x7D` never appear raw. `0x7D 0xC1` aborts the
//! frame in progress.
//!
//! This module owns the envelope only; it hands out the user data of frames that passed the
//! FCS and the header checks. Its buffer is bounded by the configured maximum user-data length.

use thiserror::Error;

use crate::protocol::device::FrameStats;

/// Begin of frame.
pub const BOF: u8 = 0xC0;
/// End of frame.
pub const EOF: u8 = 0xC1;
/// Escape: the next byte is XOR-ed with [`ESCAPE_XOR`].
pub const ESC: u8 = 0x7D;
/// What an escaped byte is XOR-ed with.
pub const ESCAPE_XOR: u8 = 0x20;
/// Header protocol id of the Data Export protocol.
pub const PROTOCOL_ID: u8 = 0x11;
/// Header message type.
pub const MESSAGE_TYPE: u8 = 0x01;
/// Header bytes before the user data.
pub const HEADER_LEN: usize = 4;
/// FCS bytes after the user data.
pub const FCS_LEN: usize = 2;
/// The FCS register after running over data followed by its own (complemented, little-endian)
/// FCS: RFC 1662's "good final FCS value".
pub const FCS_GOOD: u16 = 0xF0B8;
/// Default cap on user data per frame. The monitor sends at most 1000 bytes of command data
/// on the RS232 interface (plus a few header bytes); this leaves ample room.
pub const DEFAULT_MAX_USER_DATA: usize = 8192;

/// An encoding fault.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The header's 16-bit length field cannot describe this much user data.
    #[error("user data of {0} bytes does not fit the 16-bit frame length")]
    TooLong(usize),
}

/// RFC 1662 FCS-16 update (reflected polynomial 0x8408), bit-wise; frames are short.
pub fn fcs16_update(mut fcs: u16, data: &[u8]) -> u16 {
    for &b in data {
        fcs ^= u16::from(b);
        for _ in 0..8 {
            fcs = if fcs & 1 != 0 {
                (fcs >> 1) ^ 0x8408
            } else {
                fcs >> 1
            };
        }
    }
    fcs
}

/// The FCS to transmit for `data`: initial 0xFFFF, ones-complemented at the end.
pub fn fcs16(data: &[u8]) -> u16 {
    !fcs16_update(0xFFFF, data)
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    if matches!(b, BOF | EOF | ESC) {
        out.push(ESC);
        out.push(b ^ ESCAPE_XOR);
    } else {
        out.push(b);
    }
}

/// Appends one complete frame carrying `user_data` to `out`.
pub fn encode_frame(user_data: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let len = u16::try_from(user_data.len()).map_err(|_| FrameError::TooLong(user_data.len()))?;
    let [lh, ll] = len.to_be_bytes();
    let header = [PROTOCOL_ID, MESSAGE_TYPE, lh, ll];
    let fcs = !fcs16_update(fcs16_update(0xFFFF, &header), user_data);
    out.reserve(user_data.len() + 12);
    out.push(BOF);
    for &b in header.iter().chain(user_data).chain(&fcs.to_le_bytes()) {
        push_escaped(out, b);
    }
    out.push(EOF);
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Looking for `0xC0`; bytes seen here are noise.
    Hunting,
    /// Inside a frame.
    InFrame,
    /// Inside a frame, the previous byte was `0x7D`.
    Escaped,
}

/// Incremental frame decoder: bytes may arrive in any split. Holds at most one frame's
/// unescaped bytes (header + cap + FCS).
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    state: State,
    buf: Vec<u8>,
    /// Raw (escaped) bytes of the frame in progress, counting its `0xC0`.
    raw_len: u64,
    /// Whether the last byte was thrown away (so a run of noise counts as one resync).
    discarding: bool,
    max_user_data: usize,
    stats: FrameStats,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_USER_DATA)
    }
}

impl FrameDecoder {
    /// A decoder that drops frames with more than `max_user_data` bytes of user data.
    pub fn new(max_user_data: usize) -> Self {
        FrameDecoder {
            state: State::Hunting,
            buf: Vec::new(),
            raw_len: 0,
            discarding: false,
            max_user_data,
            stats: FrameStats::default(),
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    /// Unescaped bytes held for the frame in progress.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forget any partial frame (the port was reopened). Counters are kept.
    pub fn reset(&mut self) {
        self.state = State::Hunting;
        self.buf.clear();
        self.raw_len = 0;
        self.discarding = false;
    }

    fn discard(&mut self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        if !self.discarding {
            self.stats.resyncs += 1;
            self.discarding = true;
        }
        self.stats.discarded_bytes += bytes;
    }

    /// Throws the frame in progress away (torn, aborted or too long).
    fn drop_frame(&mut self) {
        self.discard(self.raw_len);
        self.buf.clear();
        self.raw_len = 0;
        self.state = State::Hunting;
    }

    fn begin(&mut self) {
        self.buf.clear();
        self.raw_len = 1;
        self.discarding = false;
        self.state = State::InFrame;
    }

    fn push_data(&mut self, b: u8) {
        if self.buf.len() >= HEADER_LEN + self.max_user_data + FCS_LEN {
            // `raw_len` already counts this byte: it goes with the dropped frame.
            self.drop_frame();
            return;
        }
        self.buf.push(b);
        self.state = State::InFrame;
    }

    /// Checks the frame just closed; returns the user-data range on success.
    fn finish(&mut self) -> Option<std::ops::Range<usize>> {
        self.state = State::Hunting;
        let n = self.buf.len();
        if n < HEADER_LEN + FCS_LEN {
            self.drop_frame();
            return None;
        }
        self.raw_len = 0;
        if fcs16_update(0xFFFF, &self.buf) != FCS_GOOD {
            self.stats.checksum_failures += 1;
            return None;
        }
        self.stats.frames += 1;
        let body = n - FCS_LEN;
        let declared = match (self.buf.first(), self.buf.get(1), self.buf.get(2..4)) {
            (Some(&PROTOCOL_ID), Some(&MESSAGE_TYPE), Some(&[h, l])) => {
                usize::from(u16::from_be_bytes([h, l]))
            }
            _ => {
                self.stats.decode_errors += 1;
                return None;
            }
        };
        if declared != body - HEADER_LEN {
            self.stats.decode_errors += 1;
            return None;
        }
        Some(HEADER_LEN..body)
    }

    /// Feeds bytes; calls `on_frame` with the user data of every good frame completed.
    pub fn feed(&mut self, bytes: &[u8], mut on_frame: impl FnMut(&[u8])) {
        for &b in bytes {
            match (self.state, b) {
                (State::Hunting, BOF) => self.begin(),
                (State::Hunting, _) => self.discard(1),
                // A new frame start inside a frame: the one in progress was torn.
                (State::InFrame | State::Escaped, BOF) => {
                    self.drop_frame();
                    self.begin();
                }
                (State::InFrame, EOF) => {
                    self.raw_len += 1;
                    if let Some(range) = self.finish() {
                        if let Some(user) = self.buf.get(range) {
                            on_frame(user);
                        }
                    }
                    self.buf.clear();
                }
                // `0x7D 0xC1`: frame abort.
                (State::Escaped, EOF) => {
                    self.raw_len += 1;
                    self.drop_frame();
                }
                (State::InFrame, ESC) => {
                    self.raw_len += 1;
                    self.state = State::Escaped;
                }
                (State::InFrame, _) => {
                    self.raw_len += 1;
                    self.push_data(b);
                }
                (State::Escaped, _) => {
                    self.raw_len += 1;
                    self.push_data(b ^ ESCAPE_XOR);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(dec: &mut FrameDecoder, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        dec.feed(bytes, |f| got.push(f.to_vec()));
        got
    }

    fn framed(user: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(user, &mut out).unwrap();
        out
    }

    #[test]
    fn fcs_matches_rfc1662_check_value_and_residue() {
        // CRC-16/X-25 (the PPP FCS) of "123456789" is 0x906E.
        assert_eq!(fcs16(b"123456789"), 0x906E);
        let mut data = b"123456789".to_vec();
        data.extend_from_slice(&fcs16(b"123456789").to_le_bytes());
        assert_eq!(fcs16_update(0xFFFF, &data), FCS_GOOD);
        // Any single-bit error breaks the residue.
        data[3] ^= 0x04;
        assert_ne!(fcs16_update(0xFFFF, &data), FCS_GOOD);
    }

    #[test]
    fn round_trip_escapes_every_special_byte() {
        let user: Vec<u8> = (0..=255u8)
            .chain([BOF, EOF, ESC, BOF, ESC, ESC, EOF])
            .collect();
        let wire = framed(&user);
        // Inside the frame no raw C0/C1 and no 7D that is not an escape.
        let inner = &wire[1..wire.len() - 1];
        assert!(!inner.contains(&BOF) && !inner.contains(&EOF));
        let mut it = inner.iter();
        while let Some(&b) = it.next() {
            if b == ESC {
                let next = *it.next().unwrap();
                assert!(matches!(next ^ ESCAPE_XOR, BOF | EOF | ESC));
            }
        }
        let mut dec = FrameDecoder::default();
        assert_eq!(frames_of(&mut dec, &wire), vec![user]);
        assert_eq!(dec.stats().frames, 1);
        assert_eq!(dec.stats().discarded_bytes, 0);
        // The header carries the length big-endian, the FCS goes out little-endian.
        let mut unesc = Vec::new();
        let mut esc = false;
        for &b in inner {
            if esc {
                unesc.push(b ^ ESCAPE_XOR);
                esc = false;
            } else if b == ESC {
                esc = true;
            } else {
                unesc.push(b);
            }
        }
        assert_eq!(&unesc[..4], &[0x11, 0x01, 0x01, 0x07]);
        let n = unesc.len();
        let fcs = fcs16(&unesc[..n - 2]);
        assert_eq!(&unesc[n - 2..], &fcs.to_le_bytes());
    }

    #[test]
    fn split_reads_at_every_offset() {
        let a: Vec<u8> = vec![0xE1, 0x00, 0x7D, 0xC0, 0xC1, 0x11, 0x20];
        let b: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37)).collect();
        let mut wire = framed(&a);
        wire.extend(framed(&b));
        for cut1 in 0..=wire.len() {
            for cut2 in cut1..=wire.len() {
                let mut dec = FrameDecoder::default();
                let mut got = frames_of(&mut dec, &wire[..cut1]);
                got.extend(frames_of(&mut dec, &wire[cut1..cut2]));
                got.extend(frames_of(&mut dec, &wire[cut2..]));
                assert_eq!(got, vec![a.clone(), b.clone()], "cuts at {cut1}/{cut2}");
                assert_eq!(
                    dec.stats(),
                    FrameStats {
                        frames: 2,
                        ..Default::default()
                    }
                );
            }
        }
    }

    #[test]
    fn bad_fcs_is_counted_and_the_next_frame_decodes() {
        let mut bad = framed(b"first frame");
        let at = bad.len() / 2;
        bad[at] ^= 0x01;
        let good = framed(b"second frame");
        let mut dec = FrameDecoder::default();
        let got = frames_of(&mut dec, &[bad, good].concat());
        assert_eq!(got, vec![b"second frame".to_vec()]);
        let s = dec.stats();
        assert_eq!((s.frames, s.checksum_failures, s.resyncs), (1, 1, 0));
    }

    #[test]
    fn noise_between_frames_is_discarded_and_counted() {
        let f = framed(b"abc");
        let noise = [0x00, 0x7D, 0xC1, 0x55, 0xFF];
        let wire = [&noise[..], &f, &noise, &f, &[0x42]].concat();
        let mut dec = FrameDecoder::default();
        assert_eq!(frames_of(&mut dec, &wire).len(), 2);
        let s = dec.stats();
        assert_eq!(s.frames, 2);
        assert_eq!(s.discarded_bytes, 11);
        assert_eq!(s.resyncs, 3);
    }

    #[test]
    fn truncated_frame_is_dropped_when_the_next_begins() {
        let f = framed(b"complete");
        let torn = &f[..f.len() - 4];
        let mut dec = FrameDecoder::default();
        let got = frames_of(&mut dec, &[torn, &f].concat());
        assert_eq!(got, vec![b"complete".to_vec()]);
        let s = dec.stats();
        assert_eq!(s.resyncs, 1);
        assert_eq!(s.discarded_bytes, torn.len() as u64);
        // Too short to hold header and FCS.
        let mut dec = FrameDecoder::default();
        assert!(frames_of(&mut dec, &[BOF, 0x11, EOF, BOF, EOF]).is_empty());
        assert_eq!(dec.stats().discarded_bytes, 5);
        assert_eq!(dec.stats().frames, 0);
        // 7D C1 aborts.
        let mut dec = FrameDecoder::default();
        let mut aborted = f[..6].to_vec();
        aborted.extend([ESC, EOF]);
        assert_eq!(frames_of(&mut dec, &[&aborted[..], &f].concat()).len(), 1);
        assert_eq!(dec.stats().discarded_bytes, aborted.len() as u64);
    }

    #[test]
    fn oversize_frame_resyncs_and_the_buffer_stays_bounded() {
        let mut dec = FrameDecoder::new(16);
        let big = framed(&[0x33; 64]);
        let small = framed(&[0x44; 16]);
        let mut max_held = 0;
        let mut got = Vec::new();
        for chunk in [&big[..], &small[..]].concat().chunks(3) {
            dec.feed(chunk, |f| got.push(f.to_vec()));
            max_held = max_held.max(dec.buffered());
        }
        assert_eq!(got, vec![vec![0x44; 16]]);
        assert!(max_held <= HEADER_LEN + 16 + FCS_LEN);
        let s = dec.stats();
        assert_eq!(s.resyncs, 1);
        assert_eq!(s.discarded_bytes, big.len() as u64);
        assert_eq!(s.frames, 1);
    }

    #[test]
    fn header_mismatch_is_a_decode_error() {
        // Valid FCS, wrong length in the header.
        let mut unesc = vec![PROTOCOL_ID, MESSAGE_TYPE, 0x00, 0x05, 1, 2, 3];
        let fcs = fcs16(&unesc);
        unesc.extend(fcs.to_le_bytes());
        let mut wire = vec![BOF];
        for b in unesc {
            push_escaped(&mut wire, b);
        }
        wire.push(EOF);
        let mut dec = FrameDecoder::default();
        assert!(frames_of(&mut dec, &wire).is_empty());
        assert_eq!(dec.stats().decode_errors, 1);
        assert_eq!(dec.stats().frames, 1);
    }

    #[test]
    fn encoder_refuses_what_the_length_field_cannot_hold() {
        let mut out = Vec::new();
        assert_eq!(
            encode_frame(&vec![0; 70_000], &mut out),
            Err(FrameError::TooLong(70_000))
        );
        assert!(out.is_empty());
    }
}
