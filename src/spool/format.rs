//! The on-disk format: segment names and headers, record frames, the cursor file.
//!
//! Everything here is little-endian and sans-I/O except [`ChunkReader`], a positioned reader
//! that never reads past the end its caller vouches for.
//!
//! ```text
//! segment  = header record*
//! header   = "VGLSPL01"                            (magic; "01" is the format version)
//! record   = body_len:u32 crc:u32 body            (crc = CRC-32 of body_len bytes ++ body)
//! body     = seq:u64 appended_ms:i64 key_len:u32 key payload
//! cursor   = "VGLCURS1" acked_seq:u64 crc:u32     (crc = CRC-32 of the first 16 bytes)
//! ```

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The first 8 bytes of every segment file (format version 1).
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"VGLSPL01";
/// Length of the segment header.
pub(crate) const SEGMENT_HEADER_LEN: u64 = SEGMENT_MAGIC.len() as u64;
/// `body_len` + `crc`.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// `seq` + `appended_ms` + `key_len`.
pub(crate) const BODY_FIXED_LEN: usize = 20;
/// The largest body the format accepts; a length field above it is corruption, whatever the
/// configuration says (it also bounds what a garbage length can make a reader allocate).
pub(crate) const MAX_BODY_LEN: usize = 64 * 1024 * 1024;

/// The cursor file: magic, acknowledged sequence number, CRC.
pub(crate) const CURSOR_MAGIC: [u8; 8] = *b"VGLCURS1";
pub(crate) const CURSOR_LEN: usize = 20;
pub(crate) const CURSOR_FILE: &str = "cursor";
pub(crate) const CURSOR_TMP_FILE: &str = "cursor.tmp";

const SEGMENT_SUFFIX: &str = ".seg";

/// `00000000000000000042.seg` for the segment whose first record is 42.
pub(crate) fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// The first sequence number a segment file name stands for, or `None` for any other file.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Total on-disk size of a record with this key and payload.
pub(crate) fn framed_len(key_len: usize, payload_len: usize) -> usize {
    FRAME_HEADER_LEN + BODY_FIXED_LEN + key_len + payload_len
}

/// A record frame built by its appender before it has a sequence number.
///
/// The appender copies key and payload and checksums everything after `seq` (the expensive
/// part, done in the appender's task); the writer fills in `seq` and finishes the CRC by
/// combining (cheap), so sequence numbers follow the order in which the writer receives records.
pub(crate) struct PendingFrame {
    bytes: Vec<u8>,
    tail_crc: crc32fast::Hasher,
}

impl PendingFrame {
    pub(crate) fn new(appended_ms: i64, key: &[u8], payload: &[u8]) -> Self {
        let total = framed_len(key.len(), payload.len());
        let body_len = (total - FRAME_HEADER_LEN) as u32;
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(&body_len.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]); // crc, filled by `seal`
        bytes.extend_from_slice(&[0; 8]); // seq, filled by `seal`
        let tail_start = bytes.len();
        bytes.extend_from_slice(&appended_ms.to_le_bytes());
        bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(payload);
        let mut tail_crc = crc32fast::Hasher::new();
        tail_crc.update(bytes.get(tail_start..).unwrap_or_default());
        PendingFrame { bytes, tail_crc }
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Stamps `seq` and the checksum, and appends the finished frame to `out`.
    pub(crate) fn seal_into(&self, seq: u64, out: &mut Vec<u8>) {
        let mut crc = crc32fast::Hasher::new();
        let len_bytes = self.bytes.get(..4).unwrap_or_default();
        crc.update(len_bytes);
        crc.update(&seq.to_le_bytes());
        crc.combine(&self.tail_crc);
        out.extend_from_slice(len_bytes);
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(self.bytes.get(16..).unwrap_or_default());
    }
}

/// Encodes one complete frame (tests and tools; the writer uses [`PendingFrame`]).
#[cfg(test)]
pub(crate) fn encode_frame(
    out: &mut Vec<u8>,
    seq: u64,
    appended_ms: i64,
    key: &[u8],
    payload: &[u8],
) {
    PendingFrame::new(appended_ms, key, payload).seal_into(seq, out);
}

/// Why bytes at a record boundary are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameFault {
    /// Fewer bytes than the frame header, or than the length field promises.
    Truncated,
    /// The length field is below the fixed body or above [`MAX_BODY_LEN`].
    BadLength,
    /// The checksum does not match.
    BadChecksum,
    /// The key length runs past the body.
    BadKeyLength,
}

impl std::fmt::Display for FrameFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameFault::Truncated => "truncated record",
            FrameFault::BadLength => "impossible record length",
            FrameFault::BadChecksum => "checksum mismatch",
            FrameFault::BadKeyLength => "key length past the record",
        })
    }
}

/// A decoded record borrowing its bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FrameRef<'a> {
    pub seq: u64,
    pub appended_ms: i64,
    pub key: &'a [u8],
    pub payload: &'a [u8],
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The full frame length announced by a frame header, checked against the format's bounds.
pub(crate) fn frame_len(header: &[u8]) -> Result<usize, FrameFault> {
    let body_len = le_u32(header, 0).ok_or(FrameFault::Truncated)? as usize;
    if !(BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&body_len) {
        return Err(FrameFault::BadLength);
    }
    Ok(FRAME_HEADER_LEN + body_len)
}

/// Decodes the frame at the start of `buf`, returning it and its length.
pub(crate) fn decode_frame(buf: &[u8]) -> Result<(FrameRef<'_>, usize), FrameFault> {
    let total = frame_len(buf)?;
    let frame = buf.get(..total).ok_or(FrameFault::Truncated)?;
    let stored_crc = le_u32(frame, 4).ok_or(FrameFault::Truncated)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(frame.get(..4).unwrap_or_default());
    crc.update(frame.get(FRAME_HEADER_LEN..).unwrap_or_default());
    if crc.finalize() != stored_crc {
        return Err(FrameFault::BadChecksum);
    }
    let seq = le_u64(frame, 8).ok_or(FrameFault::Truncated)?;
    let appended_ms = le_u64(frame, 16).ok_or(FrameFault::Truncated)? as i64;
    let key_len = le_u32(frame, 24).ok_or(FrameFault::Truncated)? as usize;
    let key_start = FRAME_HEADER_LEN + BODY_FIXED_LEN;
    let key_end = key_start
        .checked_add(key_len)
        .ok_or(FrameFault::BadKeyLength)?;
    let key = frame
        .get(key_start..key_end)
        .ok_or(FrameFault::BadKeyLength)?;
    let payload = frame.get(key_end..).ok_or(FrameFault::BadKeyLength)?;
    Ok((
        FrameRef {
            seq,
            appended_ms,
            key,
            payload,
        },
        total,
    ))
}

/// Encodes the cursor file.
pub(crate) fn encode_cursor(acked: u64) -> [u8; CURSOR_LEN] {
    let mut out = [0u8; CURSOR_LEN];
    let mut body = Vec::with_capacity(16);
    body.extend_from_slice(&CURSOR_MAGIC);
    body.extend_from_slice(&acked.to_le_bytes());
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    for (o, b) in out.iter_mut().zip(body) {
        *o = b;
    }
    out
}

/// Decodes the cursor file; `None` when it is not a valid cursor.
pub(crate) fn decode_cursor(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != CURSOR_LEN || bytes.get(..8)? != CURSOR_MAGIC {
        return None;
    }
    let crc = le_u32(bytes, 16)?;
    if crc32fast::hash(bytes.get(..16)?) != crc {
        return None;
    }
    le_u64(bytes, 8)
}

/// A positioned, buffered reader over one segment file.
///
/// Bytes below the end a caller passes are immutable (segments only grow, and only after the
/// data is durable does anyone read it), so buffered bytes never go stale.
pub(crate) struct ChunkReader {
    file: File,
    buf: Vec<u8>,
    start: u64,
}

const CHUNK: usize = 256 * 1024;

impl ChunkReader {
    pub(crate) fn new(file: File) -> Self {
        ChunkReader {
            file,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// `len` bytes at `off`; the caller guarantees `off + len <= end <= file length`.
    pub(crate) fn get(&mut self, off: u64, len: usize, end: u64) -> io::Result<&[u8]> {
        let buf_end = self.start + self.buf.len() as u64;
        let want_end = off + len as u64;
        if !(off >= self.start && want_end <= buf_end) {
            let avail = end.saturating_sub(off);
            let read_len = (len.max(CHUNK) as u64).min(avail) as usize;
            if read_len < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the readable end of a segment",
                ));
            }
            self.buf.resize(read_len, 0);
            self.start = off;
            if let Err(e) = self.file.read_exact_at(&mut self.buf, off) {
                self.buf.clear();
                return Err(e);
            }
        }
        let from = (off - self.start) as usize;
        self.buf
            .get(from..from + len)
            .ok_or_else(|| io::Error::other("chunk reader out of range"))
    }

    /// Reads and decodes the frame at `off`, reading no byte at or past `end`.
    /// `Ok(Err(fault))` is a bad frame; `Err` is an I/O failure.
    pub(crate) fn frame_at(
        &mut self,
        off: u64,
        end: u64,
    ) -> io::Result<Result<(FrameRef<'_>, usize), FrameFault>> {
        let remaining = end.saturating_sub(off);
        if remaining < FRAME_HEADER_LEN as u64 {
            return Ok(Err(FrameFault::Truncated));
        }
        let total = match frame_len(self.get(off, FRAME_HEADER_LEN, end)?) {
            Ok(total) => total,
            Err(fault) => return Ok(Err(fault)),
        };
        if total as u64 > remaining {
            return Ok(Err(FrameFault::Truncated));
        }
        let bytes = self.get(off, total, end)?;
        Ok(decode_frame(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_every_bit_flip_is_caught() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 42, 1_700_000_000_123, b"bed-7", b"payload bytes");
        let (frame, len) = decode_frame(&buf).expect("decodes");
        assert_eq!(len, buf.len());
        assert_eq!(
            frame,
            FrameRef {
                seq: 42,
                appended_ms: 1_700_000_000_123,
                key: b"bed-7",
                payload: b"payload bytes"
            }
        );
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                if let Some(b) = bad.get_mut(i) {
                    *b ^= 1 << bit;
                }
                assert!(
                    decode_frame(&bad).is_err(),
                    "flip of bit {bit} at byte {i} accepted"
                );
            }
        }
        for cut in 0..buf.len() {
            assert!(decode_frame(buf.get(..cut).unwrap_or_default()).is_err());
        }
    }

    #[test]
    fn empty_key_and_payload() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 1, -5, b"", b"");
        let (frame, len) = decode_frame(&buf).expect("decodes");
        assert_eq!(len, framed_len(0, 0));
        assert_eq!(
            (frame.key, frame.payload, frame.appended_ms),
            (&b""[..], &b""[..], -5)
        );
    }

    #[test]
    fn zeroes_are_not_a_frame() {
        assert_eq!(decode_frame(&[0; 64]), Err(FrameFault::BadLength));
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_file_name("00000000000000000001.seg"), Some(1));
        assert_eq!(parse_segment_file_name("0000000000000000001.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000x.seg"), None);
        assert_eq!(parse_segment_file_name("cursor"), None);
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
    }

    #[test]
    fn cursor_round_trip_and_corruption() {
        let bytes = encode_cursor(123_456);
        assert_eq!(decode_cursor(&bytes), Some(123_456));
        for i in 0..bytes.len() {
            let mut bad = bytes;
            if let Some(b) = bad.get_mut(i) {
                *b ^= 0x10;
            }
            assert_eq!(decode_cursor(&bad), None, "byte {i}");
        }
        assert_eq!(decode_cursor(bytes.get(..19).unwrap_or_default()), None);
    }
}
