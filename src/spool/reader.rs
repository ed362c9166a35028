//! The read side: position, records read but not yet acknowledged, the cursor file, and
//! deletion of fully forwarded segments. Blocking file I/O; `Spool` runs it off the runtime.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::time::{Duration, Instant};

use super::format::{
    encode_cursor, segment_file_name, ChunkReader, CURSOR_FILE, CURSOR_TMP_FILE, SEGMENT_HEADER_LEN,
};
use super::writer::sync_dir;
use super::{SeqNo, Shared, SpoolError, SpoolRecord};
use crate::model::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    seg: u64,
    off: u64,
}

struct Peeked {
    record: SpoolRecord,
    start: Pos,
    framed: u64,
}

pub(crate) struct ReadState {
    /// Next record to read from disk; `None` until the first segment is looked at.
    pos: Option<Pos>,
    file: Option<(u64, ChunkReader)>,
    /// Read, handed out, not acknowledged.
    peeked: VecDeque<Peeked>,
    /// Highest sequence number read (or acknowledged at open).
    last_read: u64,
    /// Highest sequence number acknowledged.
    acked: u64,
    /// What the cursor file says.
    persisted: u64,
    acks_since_persist: u32,
    last_persist: Instant,
}

impl ReadState {
    pub(crate) fn new(acked: u64) -> Self {
        ReadState {
            pos: None,
            file: None,
            peeked: VecDeque::new(),
            last_read: acked,
            acked,
            persisted: acked,
            acks_since_persist: 0,
            last_persist: Instant::now(),
        }
    }

    /// Where the oldest unacknowledged record starts (or where the next one will).
    fn ack_pos(&self) -> Option<Pos> {
        self.peeked.front().map(|p| p.start).or(self.pos)
    }

    /// Reads the next durable record after everything read so far.
    fn read_next(&mut self, shared: &Shared) -> Result<Option<Peeked>, SpoolError> {
        let dir = &shared.config.dir;
        loop {
            let (pos, seg, next_first) = {
                let st = shared.lock();
                let pos = match self.pos {
                    Some(p) => p,
                    None => match st.segments.front() {
                        Some(s) => Pos {
                            seg: s.first_seq,
                            off: SEGMENT_HEADER_LEN,
                        },
                        None => return Ok(None),
                    },
                };
                match st.segments.iter().position(|s| s.first_seq == pos.seg) {
                    Some(i) => {
                        let next = st.segments.get(i + 1).map(|s| s.first_seq);
                        match st.segments.get(i) {
                            Some(seg) => (pos, seg.clone(), next),
                            None => return Ok(None),
                        }
                    }
                    None => {
                        // Not expected (segments go only after the cursor passed them): go on
                        // with the first later segment.
                        match st.segments.iter().find(|s| s.first_seq > pos.seg) {
                            Some(s) => {
                                self.pos = Some(Pos {
                                    seg: s.first_seq,
                                    off: SEGMENT_HEADER_LEN,
                                });
                                continue;
                            }
                            None => return Ok(None),
                        }
                    }
                }
            };
            self.pos = Some(pos);
            if pos.off >= seg.end {
                match next_first {
                    Some(next) if seg.sealed => {
                        self.pos = Some(Pos {
                            seg: next,
                            off: SEGMENT_HEADER_LEN,
                        });
                        continue;
                    }
                    _ => return Ok(None),
                }
            }
            if self.file.as_ref().map(|(s, _)| *s) != Some(seg.first_seq) {
                let path = dir.join(segment_file_name(seg.first_seq));
                let file = File::open(&path).map_err(SpoolError::io("open segment", &path))?;
                self.file = Some((seg.first_seq, ChunkReader::new(file)));
            }
            let Some((_, reader)) = self.file.as_mut() else {
                return Ok(None);
            };
            let read = reader.frame_at(pos.off, seg.end).map_err(SpoolError::io(
                "read segment",
                dir.join(segment_file_name(seg.first_seq)),
            ))?;
            match read {
                Ok((frame, framed)) => {
                    let next = Pos {
                        seg: pos.seg,
                        off: pos.off + framed as u64,
                    };
                    self.pos = Some(next);
                    if frame.seq <= self.last_read {
                        // Acknowledged before the last open (the head segment is read from
                        // its start).
                        continue;
                    }
                    self.last_read = frame.seq;
                    return Ok(Some(Peeked {
                        record: SpoolRecord {
                            seq: SeqNo(frame.seq),
                            appended_at: Timestamp::from_millis(frame.appended_ms),
                            key: frame.key.to_vec(),
                            payload: frame.payload.to_vec(),
                        },
                        start: pos,
                        framed: framed as u64,
                    }));
                }
                Err(fault) => {
                    // Verified at open or written since: the disk changed under us.
                    let skipped = seg.end - pos.off;
                    tracing::error!(
                        segment = %dir.join(segment_file_name(seg.first_seq)).display(),
                        offset = pos.off, bytes = skipped, reason = %fault,
                        "spool: CORRUPT record while reading: the rest of the segment so far is \
                         skipped and its records are lost"
                    );
                    let lost = seg
                        .last_seq
                        .map_or(0, |last| last.saturating_sub(self.last_read));
                    {
                        let mut st = shared.lock();
                        st.stats.corruptions += 1;
                        st.stats.corrupt_bytes += skipped;
                        st.unacked_bytes = st.unacked_bytes.saturating_sub(skipped);
                        st.unacked_records = st.unacked_records.saturating_sub(lost);
                    }
                    if let Some(last) = seg.last_seq {
                        self.last_read = self.last_read.max(last);
                    }
                    self.pos = Some(Pos {
                        seg: pos.seg,
                        off: seg.end,
                    });
                }
            }
        }
    }

    pub(crate) fn peek(
        &mut self,
        shared: &Shared,
        max: usize,
    ) -> Result<Vec<SpoolRecord>, SpoolError> {
        while self.peeked.len() < max {
            match self.read_next(shared)? {
                Some(p) => self.peeked.push_back(p),
                None => break,
            }
        }
        Ok(self
            .peeked
            .iter()
            .take(max)
            .map(|p| p.record.clone())
            .collect())
    }

    pub(crate) fn ack(&mut self, shared: &Shared, upto: u64) -> Result<(), SpoolError> {
        if upto <= self.acked {
            return Ok(());
        }
        if upto > self.last_read {
            return Err(SpoolError::AckOutOfRange {
                upto: SeqNo(upto),
                last_read: SeqNo(self.last_read),
            });
        }
        let (mut bytes, mut records) = (0u64, 0u64);
        while let Some(front) = self.peeked.front() {
            if front.record.seq.0 > upto {
                break;
            }
            bytes += front.framed;
            records += 1;
            self.peeked.pop_front();
        }
        self.acked = upto;
        {
            let mut st = shared.lock();
            st.unacked_bytes = st.unacked_bytes.saturating_sub(bytes);
            st.unacked_records = st.unacked_records.saturating_sub(records);
            st.stats.drains += records;
            let (max, dir) = (shared.config.max_bytes, &shared.config.dir);
            st.check_fill(max, dir, false);
        }
        // Read one ahead: it dates the oldest record, and moves the ack position into the next
        // segment when this one is done, so that it can go.
        let mut oldest_known = false;
        for _ in 0..2 {
            if let Some(front) = self.peeked.front() {
                shared.lock().oldest_ms = Some(front.record.appended_at.millis());
                oldest_known = true;
                break;
            }
            match self.read_next(shared)? {
                Some(p) => self.peeked.push_back(p),
                None => break,
            }
        }
        if !oldest_known {
            let mut st = shared.lock();
            // Under the lock the writer either has not published more (and will date the
            // next record itself) or has, and then the record waits to be read.
            if st.durable_seq <= self.last_read {
                st.oldest_ms = None;
            }
        }
        self.acks_since_persist = self.acks_since_persist.saturating_add(1);
        let every = Duration::from_millis(shared.config.cursor_every_ms);
        if self.acks_since_persist >= shared.config.cursor_every_acks
            || self.last_persist.elapsed() >= every
            || self.deletable(shared)
        {
            self.persist(shared)?;
        }
        Ok(())
    }

    /// Whether some segment lies wholly before the acknowledged position.
    fn deletable(&self, shared: &Shared) -> bool {
        let Some(ack) = self.ack_pos() else {
            return false;
        };
        let st = shared.lock();
        st.segments.len() > 1 && st.segments.front().is_some_and(|s| s.first_seq < ack.seg)
    }

    pub(crate) fn flush(&mut self, shared: &Shared) -> Result<(), SpoolError> {
        if self.acked > self.persisted || self.deletable(shared) {
            self.persist(shared)?;
        }
        Ok(())
    }

    /// Writes the cursor (temporary file, fsync, rename, fsync the directory), then deletes the
    /// segments it has passed.
    fn persist(&mut self, shared: &Shared) -> Result<(), SpoolError> {
        let dir = &shared.config.dir;
        if self.acked > self.persisted {
            let tmp = dir.join(CURSOR_TMP_FILE);
            let write = || -> io::Result<()> {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)?;
                f.write_all(&encode_cursor(self.acked))?;
                f.sync_all()?;
                fs::rename(&tmp, dir.join(CURSOR_FILE))?;
                sync_dir(dir)
            };
            write().map_err(SpoolError::io("write the cursor", dir.join(CURSOR_FILE)))?;
            self.persisted = self.acked;
        }
        self.acks_since_persist = 0;
        self.last_persist = Instant::now();

        let Some(ack) = self.ack_pos() else {
            return Ok(());
        };
        let mut doomed = Vec::new();
        {
            let mut st = shared.lock();
            while st.segments.len() > 1
                && st.segments.front().is_some_and(|s| s.first_seq < ack.seg)
            {
                if let Some(s) = st.segments.pop_front() {
                    st.disk_bytes = st.disk_bytes.saturating_sub(s.disk_len);
                    doomed.push(s.first_seq);
                }
            }
        }
        for first in doomed {
            if self.file.as_ref().is_some_and(|(s, _)| *s == first) {
                self.file = None;
            }
            let path = dir.join(segment_file_name(first));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Below the cursor: the next open deletes it.
                Err(e) => tracing::warn!(segment = %path.display(), error = %e,
                    "spool: could not delete a forwarded segment"),
            }
        }
        Ok(())
    }
}
