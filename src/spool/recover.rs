//! Opening a spool directory: the cursor, then every segment, every record checksummed.
//!
//! - Segments wholly before the cursor are deleted unread (a deletion the last run did not
//!   finish).
//! - The last segment may end in a torn write (the process or the machine died mid-write): an
//!   incomplete or failing record at its end is truncated away and counted. Nothing after it
//!   was ever acknowledged to an appender, because appends are acknowledged only after sync.
//! - Any other segment was synced whole before the next one was created, so a failing record
//!   there is corruption (bit rot, a bad disk, a foreign write): the rest of that segment is
//!   skipped, counted and logged, and reading goes on with the next segment. The file is kept
//!   as it is for inspection until the cursor passes it.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

use super::format::{
    decode_cursor, parse_segment_file_name, segment_file_name, ChunkReader, FrameFault,
    CURSOR_FILE, CURSOR_TMP_FILE, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
use super::writer::{sync_dir, ActiveOnOpen};
use super::{SegmentInfo, SpoolConfig, SpoolError};

#[derive(Default)]
pub(crate) struct Recovered {
    pub segments: VecDeque<SegmentInfo>,
    pub acked: u64,
    pub durable_seq: u64,
    pub next_seq: u64,
    pub active: Option<ActiveOnOpen>,
    pub unacked_bytes: u64,
    pub unacked_records: u64,
    pub oldest_ms: Option<i64>,
    pub disk_bytes: u64,
    pub torn_tails: u64,
    pub torn_bytes: u64,
    pub corruptions: u64,
    pub corrupt_bytes: u64,
}

/// Why a segment stops being readable before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Header missing or not ours.
    Header,
    /// A record that is not one: torn if at the end of the last segment, corrupt elsewhere.
    Frame(FrameFault),
    /// A valid record with the wrong sequence number: never a torn write.
    Sequence { found: u64, expected: u64 },
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Header => f.write_str("missing or foreign segment header"),
            Stop::Frame(fault) => fault.fmt(f),
            Stop::Sequence { found, expected } => {
                write!(f, "record {found} where {expected} was expected")
            }
        }
    }
}

struct SegmentScan {
    len: u64,
    valid_end: u64,
    stop: Option<Stop>,
    records: u64,
    last_seq: Option<u64>,
    unacked_records: u64,
    unacked_bytes: u64,
    oldest_unacked_ms: Option<i64>,
}

/// Reads and checks one segment; `after` is the last sequence number of the segments before.
fn scan_segment(path: &Path, first_seq: u64, after: u64, acked: u64) -> io::Result<SegmentScan> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut scan = SegmentScan {
        len,
        valid_end: 0,
        stop: None,
        records: 0,
        last_seq: None,
        unacked_records: 0,
        unacked_bytes: 0,
        oldest_unacked_ms: None,
    };
    let mut reader = ChunkReader::new(file);
    if len < SEGMENT_HEADER_LEN || reader.get(0, SEGMENT_MAGIC.len(), len)? != SEGMENT_MAGIC {
        scan.stop = Some(Stop::Header);
        return Ok(scan);
    }
    let mut off = SEGMENT_HEADER_LEN;
    let mut expected = first_seq;
    if first_seq <= after {
        // Overlaps the segment before: not something this writer produces.
        scan.stop = Some(Stop::Sequence {
            found: first_seq,
            expected: after.saturating_add(1),
        });
        scan.valid_end = off;
        return Ok(scan);
    }
    while off < len {
        match reader.frame_at(off, len)? {
            Ok((frame, framed)) => {
                if frame.seq != expected {
                    scan.stop = Some(Stop::Sequence {
                        found: frame.seq,
                        expected,
                    });
                    break;
                }
                if frame.seq > acked {
                    scan.unacked_records += 1;
                    scan.unacked_bytes += framed as u64;
                    scan.oldest_unacked_ms.get_or_insert(frame.appended_ms);
                }
                scan.records += 1;
                scan.last_seq = Some(frame.seq);
                expected = expected.saturating_add(1);
                off += framed as u64;
            }
            Err(fault) => {
                scan.stop = Some(Stop::Frame(fault));
                break;
            }
        }
    }
    scan.valid_end = off;
    Ok(scan)
}

fn read_cursor(dir: &Path) -> Result<u64, SpoolError> {
    let path = dir.join(CURSOR_FILE);
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(f) => {
            // A valid cursor is 20 bytes: read a little more to notice a longer file.
            f.take(64)
                .read_to_end(&mut bytes)
                .map_err(SpoolError::io("read the cursor", &path))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(SpoolError::io("open the cursor", &path)(e)),
    }
    match decode_cursor(&bytes) {
        Some(acked) => Ok(acked),
        None => {
            // Written by rename, so this is not a torn write: redeliver everything rather
            // than guess (at-least-once).
            tracing::error!(
                path = %path.display(),
                "spool cursor is corrupt: every record in the spool will be delivered again"
            );
            Ok(0)
        }
    }
}

pub(crate) fn recover(config: &SpoolConfig) -> Result<Recovered, SpoolError> {
    let dir = config.dir.as_path();
    fs::create_dir_all(dir).map_err(SpoolError::io("create", dir))?;
    let tmp = dir.join(CURSOR_TMP_FILE);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(SpoolError::io("remove", &tmp)(e)),
    }
    let acked = read_cursor(dir)?;

    let mut firsts = Vec::new();
    for entry in fs::read_dir(dir).map_err(SpoolError::io("list", dir))? {
        let entry = entry.map_err(SpoolError::io("list", dir))?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();

    // Segments followed by one starting at or before acked + 1 hold only acknowledged records.
    let mut kept = Vec::with_capacity(firsts.len());
    for (i, &first) in firsts.iter().enumerate() {
        match firsts.get(i + 1) {
            Some(&next) if next <= acked.saturating_add(1) => {
                let path = dir.join(segment_file_name(first));
                fs::remove_file(&path).map_err(SpoolError::io("remove", &path))?;
            }
            _ => kept.push(first),
        }
    }

    let mut rec = Recovered {
        acked,
        ..Recovered::default()
    };
    let mut last_seq = 0u64;
    let mut changed_dir = false;
    let count = kept.len();
    for (i, &first) in kept.iter().enumerate() {
        let is_last = i + 1 == count;
        let path = dir.join(segment_file_name(first));
        let scan = scan_segment(&path, first, last_seq, acked)
            .map_err(SpoolError::io("read segment", &path))?;
        let mut info = SegmentInfo {
            first_seq: first,
            end: scan.valid_end.max(SEGMENT_HEADER_LEN),
            disk_len: scan.len,
            last_seq: scan.last_seq,
            sealed: true,
        };
        let torn = is_last && matches!(scan.stop, Some(Stop::Frame(_) | Stop::Header));
        if torn {
            let dropped = scan.len - scan.valid_end;
            // A zero-length newest segment is a crash right after its creation: nothing torn.
            rec.torn_tails += u64::from(dropped > 0);
            rec.torn_bytes += dropped;
            if dropped > 0 {
                tracing::warn!(
                segment = %path.display(), offset = scan.valid_end, bytes = dropped,
                reason = %scan.stop.map(|s| s.to_string()).unwrap_or_default(),
                "spool: torn tail truncated (a write cut short by a crash; it was never acknowledged)"
                );
            }
        } else if let Some(stop) = scan.stop {
            let skipped = scan.len - scan.valid_end;
            rec.corruptions += 1;
            rec.corrupt_bytes += skipped;
            tracing::error!(
                segment = %path.display(), offset = scan.valid_end, bytes = skipped, reason = %stop,
                "spool: CORRUPT segment: the rest of it is skipped and its records are lost; \
                 reading goes on with the next segment"
            );
        }
        if is_last && scan.records == 0 && (torn || scan.stop.is_none()) {
            // Nothing readable in the newest segment: the writer starts a fresh one.
            fs::remove_file(&path).map_err(SpoolError::io("remove", &path))?;
            changed_dir = true;
            continue;
        }
        if torn {
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(SpoolError::io("open", &path))?;
            f.set_len(scan.valid_end)
                .and_then(|()| f.sync_all())
                .map_err(SpoolError::io("truncate", &path))?;
            info.disk_len = scan.valid_end;
        }
        if is_last && (torn || scan.stop.is_none()) {
            info.sealed = false;
        }
        rec.unacked_records += scan.unacked_records;
        rec.unacked_bytes += scan.unacked_bytes;
        if rec.oldest_ms.is_none() {
            rec.oldest_ms = scan.oldest_unacked_ms;
        }
        rec.disk_bytes += info.disk_len;
        last_seq = last_seq.max(scan.last_seq.unwrap_or(0));
        rec.segments.push_back(info);
    }
    if changed_dir {
        sync_dir(dir).map_err(SpoolError::io("sync", dir))?;
    }

    rec.durable_seq = last_seq.max(acked);
    rec.next_seq = rec.durable_seq.saturating_add(1);
    if let Some(last) = rec.segments.back_mut() {
        match last.last_seq {
            // Appends continue in the newest segment only if they follow on from it.
            Some(seq) if !last.sealed && seq.saturating_add(1) == rec.next_seq => {
                rec.active = Some(ActiveOnOpen {
                    first_seq: last.first_seq,
                    len: last.disk_len,
                    records: seq - last.first_seq + 1,
                    last_seq: seq,
                });
            }
            _ => last.sealed = true,
        }
    }
    Ok(rec)
}
