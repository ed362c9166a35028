//! MLLP framing without I/O: `0x0B` + payload + `0x1C 0x0D`, cut out of a byte stream that
//! arrives in arbitrary pieces.
//!
//! It owns the envelope only: finding frames, skipping what lies between them, the size cap and
//! the release 2 commit blocks (`0x06` / `0x15`). It must not read sockets, parse HL7 or decide
//! acknowledgements. Unlike the `hl7-mllp-codec` crate it replaces, two frames in one read come
//! out as two frames, and the bytes held for one connection are bounded by the cap.
//!
//! Use: after each read, [`MllpDecoder::feed`] the bytes, then call
//! [`MllpDecoder::next_frame`] until it returns `Ok(None)`. Held memory is then at most
//! `max_frame` + one read.

use memchr::{memchr, memchr2};
use thiserror::Error;

/// Start block.
pub const VT: u8 = 0x0B;
/// End block, followed by [`CR`].
pub const FS: u8 = 0x1C;
pub const CR: u8 = 0x0D;
/// MLLP release 2 positive commit acknowledgement payload.
pub const ACK: u8 = 0x06;
/// MLLP release 2 negative commit acknowledgement payload.
pub const NAK: u8 = 0x15;

/// Buffers larger than this are given back to the allocator once mostly empty.
const SHRINK_ABOVE: usize = 256 * 1024;

/// A framing fault. Positions are byte offsets in the connection's stream.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MllpError {
    /// The frame in progress passed the cap. The decoder stops buffering: every later call
    /// returns this error again and fed bytes are dropped. Close the connection.
    #[error("frame at byte {offset} exceeds the {limit}-byte limit ({seen} bytes without an end marker)")]
    FrameTooLarge {
        limit: usize,
        seen: usize,
        offset: u64,
    },
    /// A start block arrived before the frame in progress ended. `partial` holds the torn
    /// payload (for the dead-letter store); decoding continues with the new frame.
    #[error("frame at byte {offset} torn after {len} bytes: a new start block came before its end marker")]
    UnterminatedFrame {
        len: usize,
        offset: u64,
        partial: Vec<u8>,
    },
}

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// An HL7 message (or anything else that is not a commit block).
    Message,
    /// Release 2 commit acknowledgement: the payload is the single byte `0x06`.
    CommitAck,
    /// Release 2 negative commit acknowledgement: the payload is the single byte `0x15`.
    CommitNak,
}

/// One frame's payload, owned. Often it reuses the decoder's read buffer instead of copying.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Frame {
    /// The bytes between the start block and the end block.
    pub fn payload(&self) -> &[u8] {
        self.data.get(self.start..self.end).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn kind(&self) -> FrameKind {
        match self.payload() {
            [ACK] => FrameKind::CommitAck,
            [NAK] => FrameKind::CommitNak,
            _ => FrameKind::Message,
        }
    }

    /// A release 2 commit block, positive or negative (see [`Frame::kind`] for which).
    pub fn is_commit_ack(&self) -> bool {
        self.kind() != FrameKind::Message
    }

    /// The payload as its own vector.
    pub fn into_payload(mut self) -> Vec<u8> {
        self.data.truncate(self.end);
        self.data.drain(..self.start);
        self.data
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.payload();
        let shown = &p[..p.len().min(64)];
        f.debug_struct("Frame")
            .field("len", &p.len())
            .field("payload", &String::from_utf8_lossy(shown))
            .finish()
    }
}

/// Appends `payload` wrapped in the MLLP envelope to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 3);
    out.push(VT);
    out.extend_from_slice(payload);
    out.push(FS);
    out.push(CR);
}

/// Incremental MLLP frame decoder for one connection.
///
/// Invariant between calls: `buf[pos..]` is empty or starts with [`VT`] (a frame in
/// progress); bytes outside frames are dropped as soon as they are seen.
#[derive(Debug)]
pub struct MllpDecoder {
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`.
    pos: usize,
    /// Where the marker search resumes, so a frame fed byte by byte is scanned once.
    scan: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    max_frame: usize,
    skipped: u64,
    failed: Option<MllpError>,
}

impl MllpDecoder {
    /// A decoder refusing frames whose payload exceeds `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        MllpDecoder {
            buf: Vec::new(),
            pos: 0,
            scan: 0,
            base: 0,
            max_frame,
            skipped: 0,
            failed: None,
        }
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Bytes received outside any frame (garbage, CR/LF keep-alives) and dropped.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped
    }

    /// Bytes held that no frame has been returned for yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Memory the decoder holds (its buffer's capacity).
    pub fn held_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// True once [`MllpError::FrameTooLarge`] was returned; the decoder is then spent.
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Adds bytes read from the connection. Dropped once the decoder has failed.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.pos == self.buf.len() && self.pos > 0 {
            self.reset_buf();
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, MllpError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            let Some(&first) = self.buf.get(self.pos) else {
                self.reset_buf();
                return Ok(None);
            };
            if first != VT {
                self.skip_to_start();
                continue;
            }
            let body_start = self.pos + 1;
            self.scan = self.scan.max(body_start);
            let found = self
                .buf
                .get(self.scan..)
                .and_then(|rest| memchr2(VT, FS, rest))
                .map(|i| self.scan + i);
            let Some(at) = found else {
                self.scan = self.buf.len();
                self.check_cap(self.buf.len() - body_start)?;
                self.compact();
                return Ok(None);
            };
            if self.buf.get(at) == Some(&VT) {
                return Err(self.tear(body_start, at));
            }
            match self.buf.get(at + 1) {
                Some(&CR) => {
                    self.check_cap(at - body_start)?;
                    return Ok(Some(self.take_frame(body_start, at)));
                }
                // The CR may still be on its way: look at this FS again next time.
                None => {
                    self.scan = at;
                    self.check_cap(at - body_start)?;
                    self.compact();
                    return Ok(None);
                }
                // A lone FS is not an end marker; keep it as payload.
                Some(_) => self.scan = at + 1,
            }
        }
    }

    /// Drops bytes up to the next start block (or all of them), counting them.
    fn skip_to_start(&mut self) {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let n = memchr(VT, rest).unwrap_or(rest.len());
        self.skipped += n as u64;
        self.pos += n;
        self.scan = self.pos;
    }

    fn check_cap(&mut self, seen: usize) -> Result<(), MllpError> {
        if seen <= self.max_frame {
            return Ok(());
        }
        let e = MllpError::FrameTooLarge {
            limit: self.max_frame,
            seen,
            offset: self.base + self.pos as u64,
        };
        self.failed = Some(e.clone());
        self.buf = Vec::new();
        self.pos = 0;
        self.scan = 0;
        Err(e)
    }

    /// Reports the frame in `body_start..at` as torn and moves on to the start block at `at`.
    fn tear(&mut self, body_start: usize, at: usize) -> MllpError {
        let len = at - body_start;
        if let Err(e) = self.check_cap(len) {
            return e;
        }
        let partial = self.buf.get(body_start..at).unwrap_or_default().to_vec();
        let offset = self.base + self.pos as u64;
        self.pos = at;
        self.scan = at + 1;
        MllpError::UnterminatedFrame {
            len,
            offset,
            partial,
        }
    }

    /// Hands out the payload `body_start..end` and consumes it with its end marker. When the
    /// frame fills most of the buffer and nothing follows it, the buffer itself becomes the
    /// frame (no copy); otherwise the payload is copied out.
    fn take_frame(&mut self, body_start: usize, end: usize) -> Frame {
        let next = end + 2;
        let len = end - body_start;
        if next == self.buf.len() && len >= self.buf.capacity() / 2 {
            let data = std::mem::take(&mut self.buf);
            self.base += data.len() as u64;
            self.pos = 0;
            self.scan = 0;
            return Frame {
                data,
                start: body_start,
                end,
            };
        }
        let data = self.buf.get(body_start..end).unwrap_or_default().to_vec();
        self.pos = next;
        self.scan = next;
        Frame {
            data,
            start: 0,
            end: len,
        }
    }

    /// Empties the buffer, keeping a modest allocation for the next read.
    fn reset_buf(&mut self) {
        self.base += self.buf.len() as u64;
        self.buf.clear();
        self.pos = 0;
        self.scan = 0;
        if self.buf.capacity() > SHRINK_ABOVE {
            self.buf.shrink_to(SHRINK_ABOVE / 4);
        }
    }

    /// Moves the frame in progress to the front. Each frame is moved at most once (only
    /// after something before it was consumed), so this stays linear.
    fn compact(&mut self) {
        if self.pos == 0 {
            return;
        }
        self.buf.copy_within(self.pos.., 0);
        self.buf.truncate(self.buf.len() - self.pos);
        self.base += self.pos as u64;
        self.scan -= self.pos;
        self.pos = 0;
        let cap = self.buf.capacity();
        if cap > SHRINK_ABOVE && self.buf.len() < cap / 4 {
            self.buf
                .shrink_to((self.buf.len() * 2).max(SHRINK_ABOVE / 4));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(d: &mut MllpDecoder) -> Vec<Result<Vec<u8>, MllpError>> {
        let mut out = Vec::new();
        loop {
            match d.next_frame() {
                Ok(Some(f)) => out.push(Ok(f.payload().to_vec())),
                Ok(None) => return out,
                Err(e) => {
                    let fatal = matches!(e, MllpError::FrameTooLarge { .. });
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }

    fn ok(frames: &[&[u8]]) -> Vec<Result<Vec<u8>, MllpError>> {
        frames.iter().map(|f| Ok(f.to_vec())).collect()
    }

    /// Regression: `hl7-mllp-codec` returned these as one merged frame.
    #[test]
    fn two_frames_in_one_read_come_out_separately() {
        let mut d = MllpDecoder::new(1024);
        d.feed(b"\x0bMSH|one\x1c\r\x0bMSH|two\x1c\r");
        assert_eq!(drain(&mut d), ok(&[b"MSH|one", b"MSH|two"]));
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.skipped_bytes(), 0);
        // The form the codec was caught with: the end of one and the start of the next.
        let mut d = MllpDecoder::new(1024);
        d.feed(b"\x0bMSH|one");
        assert_eq!(drain(&mut d), ok(&[]));
        d.feed(b"\x1c\r\x0bMSH|two");
        assert_eq!(drain(&mut d), ok(&[b"MSH|one"]));
        d.feed(b"\x1c\r");
        assert_eq!(drain(&mut d), ok(&[b"MSH|two"]));
    }

    #[test]
    fn byte_by_byte_frames_come_out_whole() {
        let msg = include_bytes!(
            "../../tests/data/hl7/device-ihe-pcd-tf-vol2-examples/00_pcd01_philips_PAT_DEVICE_PHILIPS_C_oru_r01.hl7"
        );
        let mut wire = Vec::new();
        encode_frame(msg, &mut wire);
        encode_frame(b"MSH|x", &mut wire);
        let mut d = MllpDecoder::new(msg.len());
        let mut got = Vec::new();
        for b in &wire {
            d.feed(std::slice::from_ref(b));
            got.extend(drain(&mut d));
        }
        assert_eq!(got, ok(&[msg, b"MSH|x"]));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn garbage_and_keepalives_between_frames_are_skipped_and_counted() {
        let mut d = MllpDecoder::new(64);
        d.feed(b"\r\n\r\nnoise\x0bA\x1c\r\r\n\x1c\r\x0bB\x1c\r  ");
        assert_eq!(drain(&mut d), ok(&[b"A", b"B"]));
        // 4 CR/LF + 5 noise before A; CR LF FS CR between; 2 spaces after B.
        assert_eq!(d.skipped_bytes(), 9 + 4 + 2);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn torn_frame_is_reported_and_the_next_one_decoded() {
        let mut d = MllpDecoder::new(64);
        d.feed(b"\x0bMSH|torn\x0bMSH|next\x1c\r");
        let got = drain(&mut d);
        assert_eq!(
            got,
            vec![
                Err(MllpError::UnterminatedFrame {
                    len: 8,
                    offset: 0,
                    partial: b"MSH|torn".to_vec()
                }),
                Ok(b"MSH|next".to_vec()),
            ]
        );
    }

    #[test]
    fn lone_fs_is_payload_and_a_split_end_marker_is_found() {
        let mut d = MllpDecoder::new(64);
        d.feed(b"\x0ba\x1cb\x1c");
        assert_eq!(drain(&mut d), ok(&[]));
        d.feed(b"\r");
        assert_eq!(drain(&mut d), ok(&[b"a\x1cb"]));
    }

    #[test]
    fn empty_frame_and_commit_blocks() {
        let mut d = MllpDecoder::new(64);
        d.feed(b"\x0b\x1c\r\x0b\x06\x1c\r\x0b\x15\x1c\r\x0b\x06\x06\x1c\r");
        let kinds: Vec<_> = std::iter::from_fn(|| d.next_frame().ok().flatten())
            .map(|f| (f.len(), f.kind(), f.is_commit_ack()))
            .collect();
        assert_eq!(
            kinds,
            [
                (0, FrameKind::Message, false),
                (1, FrameKind::CommitAck, true),
                (1, FrameKind::CommitNak, true),
                (2, FrameKind::Message, false),
            ]
        );
    }

    #[test]
    fn cap_boundary_exact_size_passes_one_more_fails() {
        let body = vec![b'x'; 100];
        let mut wire = Vec::new();
        encode_frame(&body, &mut wire);
        // Exactly the cap, however it is split (including between FS and CR).
        for cut in [1, 50, 101, 102, wire.len()] {
            let mut d = MllpDecoder::new(100);
            d.feed(&wire[..cut]);
            let mut got = drain(&mut d);
            d.feed(&wire[cut..]);
            got.extend(drain(&mut d));
            assert_eq!(got, ok(&[&body]), "cut {cut}");
        }
        let mut d = MllpDecoder::new(99);
        d.feed(&wire);
        assert_eq!(
            drain(&mut d),
            vec![Err(MllpError::FrameTooLarge {
                limit: 99,
                seen: 100,
                offset: 0
            })]
        );
        // Spent: the same error again, and later bytes are not kept.
        d.feed(b"\x0bok\x1c\r");
        assert!(matches!(
            d.next_frame(),
            Err(MllpError::FrameTooLarge { .. })
        ));
        assert_eq!(d.buffered(), 0);
        assert!(d.is_failed());
    }

    /// Regression: `hl7-mllp-codec` buffered 64 MiB without an end marker.
    #[test]
    fn sixty_four_mib_without_end_marker_stays_bounded() {
        const MAX: usize = 1 << 20;
        const READ: usize = 64 * 1024;
        let mut d = MllpDecoder::new(MAX);
        let chunk = vec![b'A'; READ];
        d.feed(b"\x0bMSH|");
        let mut fed = 5usize;
        let mut error_at = None;
        let mut peak = 0;
        while fed < 64 << 20 {
            d.feed(&chunk);
            fed += READ;
            peak = peak.max(d.held_bytes());
            match d.next_frame() {
                Ok(None) => {}
                Err(MllpError::FrameTooLarge { limit, seen, .. }) => {
                    assert_eq!(limit, MAX);
                    assert!(seen > MAX && seen <= MAX + READ, "seen {seen}");
                    error_at.get_or_insert(fed);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let error_at = error_at.unwrap();
        assert!(error_at <= MAX + READ + 5, "error after {error_at} bytes");
        assert!(peak <= 2 * (MAX + READ), "peak {peak}");
        assert_eq!(d.held_bytes(), 0);
    }

    #[test]
    fn held_memory_shrinks_after_a_large_frame() {
        let mut d = MllpDecoder::new(4 << 20);
        let big = vec![b'x'; 3 << 20];
        let mut wire = Vec::new();
        encode_frame(&big, &mut wire);
        // The big frame plus the start of a small one: the big one is copied out.
        wire.extend_from_slice(b"\x0bMSH|small");
        d.feed(&wire);
        assert_eq!(d.next_frame().unwrap().unwrap().len(), big.len());
        assert_eq!(d.next_frame().unwrap(), None);
        assert!(d.held_bytes() <= SHRINK_ABOVE, "held {}", d.held_bytes());
        d.feed(b"\x1c\r");
        assert_eq!(d.next_frame().unwrap().unwrap().payload(), b"MSH|small");
    }

    #[test]
    fn offsets_count_from_the_start_of_the_stream() {
        let mut d = MllpDecoder::new(4);
        d.feed(b"\x0bab\x1c\rxx");
        assert_eq!(drain(&mut d), ok(&[b"ab"]));
        d.feed(b"\x0bcd\x0befghij");
        let got = drain(&mut d);
        assert_eq!(
            got[0],
            Err(MllpError::UnterminatedFrame {
                len: 2,
                offset: 7,
                partial: b"cd".to_vec()
            })
        );
        assert_eq!(
            got[1],
            Err(MllpError::FrameTooLarge {
                limit: 4,
                seen: 6,
                offset: 10
            })
        );
    }

    #[test]
    fn frame_owns_only_its_payload() {
        let mut d = MllpDecoder::new(64);
        d.feed(b"junk\x0bhello\x1c\r");
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(format!("{f:?}"), "Frame { len: 5, payload: \"hello\" }");
        assert_eq!(f.into_payload(), b"hello");
        let mut out = Vec::new();
        encode_frame(b"hi", &mut out);
        assert_eq!(out, b"\x0bhi\x1c\r");
    }
}
