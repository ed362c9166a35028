//! The writer thread: the only code that writes segments.
//!
//! It takes every append that arrived while the previous `fdatasync` ran, stamps sequence
//! numbers in arrival order, writes them with one `write` and one `fdatasync` (group commit),
//! then publishes the new durable end to readers and answers the appenders. A blocking thread
//! rather than a task: `fdatasync` takes milliseconds and must not stall a runtime worker.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::format::{segment_file_name, PendingFrame, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};
use super::{SegmentInfo, SeqNo, Shared, SpoolError};

/// A batch stops growing at this size, so one huge burst does not delay every appender in it.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

pub(crate) struct Pending {
    pub frame: PendingFrame,
    pub appended_ms: i64,
    pub reply: oneshot::Sender<Result<SeqNo, SpoolError>>,
}

pub(crate) enum WriterMsg {
    Append(Pending),
    /// Finish what came before, answer, and stop.
    Shutdown(oneshot::Sender<()>),
}

/// The segment appends go to.
struct Active {
    first_seq: u64,
    file: File,
    /// Bytes in the file, including what is buffered in `Writer::buf` for it.
    len: u64,
    records: u64,
    last_seq: Option<u64>,
}

impl Active {
    fn info(&self, sealed: bool) -> SegmentInfo {
        SegmentInfo {
            first_seq: self.first_seq,
            end: self.len,
            disk_len: self.len,
            last_seq: self.last_seq,
            sealed,
        }
    }
}

/// The segment the recovery left open for appending: first seq, length, records, last seq.
pub(crate) struct ActiveOnOpen {
    pub first_seq: u64,
    pub len: u64,
    pub records: u64,
    pub last_seq: u64,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    active: Option<Active>,
    next_seq: u64,
    buf: Vec<u8>,
    failed: Option<String>,
}

/// fsyncs the directory, so that a created (or renamed) file's entry is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        next_seq: u64,
        active: Option<ActiveOnOpen>,
    ) -> io::Result<Self> {
        let active = match active {
            Some(a) => {
                let path = shared.config.dir.join(segment_file_name(a.first_seq));
                let mut file = OpenOptions::new().write(true).open(path)?;
                file.seek(SeekFrom::Start(a.len))?;
                Some(Active {
                    first_seq: a.first_seq,
                    file,
                    len: a.len,
                    records: a.records,
                    last_seq: Some(a.last_seq),
                })
            }
            None => None,
        };
        Ok(Writer {
            shared,
            active,
            next_seq,
            buf: Vec::new(),
            failed: None,
        })
    }

    pub(crate) fn run(mut self, rx: Receiver<WriterMsg>) {
        let mut batch = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut shutdown = None;
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    WriterMsg::Append(p) => {
                        bytes += p.frame.len();
                        batch.push(p);
                    }
                    WriterMsg::Shutdown(done) => shutdown = Some(done),
                }
                if shutdown.is_none() && bytes < MAX_BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
            if let Some(done) = shutdown {
                let _ = done.send(());
                return;
            }
        }
    }

    fn commit(&mut self, batch: &mut Vec<Pending>) {
        let bytes: u64 = batch.iter().map(|p| p.frame.len() as u64).sum();
        let outcome = match &self.failed {
            Some(reason) => Err(reason.clone()),
            None => self.write_batch(batch).map_err(|e| {
                let reason = e.to_string();
                tracing::error!(
                    dir = %self.shared.config.dir.display(), error = %reason,
                    "spool write failed: no more appends until the spool is reopened"
                );
                self.failed = Some(reason.clone());
                reason
            }),
        };
        match outcome {
            Ok(update) => {
                let first_seq = self.next_seq - batch.len() as u64;
                {
                    let mut st = self.shared.lock();
                    let st = &mut *st;
                    for info in update.segments {
                        st.disk_bytes += info.disk_len;
                        match st.segments.back_mut() {
                            Some(last) if last.first_seq == info.first_seq => {
                                st.disk_bytes = st.disk_bytes.saturating_sub(last.disk_len);
                                *last = info;
                            }
                            _ => st.segments.push_back(info),
                        }
                    }
                    st.durable_seq = self.next_seq - 1;
                    st.reserved_bytes = st.reserved_bytes.saturating_sub(bytes);
                    st.unacked_bytes += bytes;
                    st.unacked_records += batch.len() as u64;
                    if st.oldest_ms.is_none() {
                        st.oldest_ms = batch.first().map(|p| p.appended_ms);
                    }
                    st.stats.appends += batch.len() as u64;
                    st.stats.fsyncs += update.fsyncs;
                }
                self.shared.new_data.notify_waiters();
                for (i, p) in batch.drain(..).enumerate() {
                    let _ = p.reply.send(Ok(SeqNo(first_seq + i as u64)));
                }
            }
            Err(reason) => {
                {
                    let mut st = self.shared.lock();
                    st.reserved_bytes = st.reserved_bytes.saturating_sub(bytes);
                    st.failed = Some(reason.clone());
                }
                self.shared.room.notify_waiters();
                self.shared.new_data.notify_waiters();
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(SpoolError::Failed(reason.clone())));
                }
            }
        }
    }

    /// Writes and syncs the batch, rolling segments as needed. On error the caller stops the
    /// spool: what reached the file is unknown, and the next open re-verifies it.
    fn write_batch(&mut self, batch: &[Pending]) -> io::Result<BatchUpdate> {
        let segment_bytes = self.shared.config.segment_bytes;
        let mut update = BatchUpdate::default();
        self.buf.clear();
        let mut seq = self.next_seq;
        for p in batch {
            let len = p.frame.len() as u64;
            let roll = match &self.active {
                None => true,
                Some(a) => a.records > 0 && a.len + len > segment_bytes,
            };
            if roll {
                if let Some(mut old) = self.active.take() {
                    // The old segment is complete on disk before the new one exists, so only
                    // the last segment can ever have a torn tail.
                    old.file.write_all(&self.buf)?;
                    self.buf.clear();
                    old.file.sync_data()?;
                    update.fsyncs += 1;
                    update.segments.push(old.info(true));
                }
                self.active = Some(self.create_segment(seq)?);
            }
            let Some(active) = self.active.as_mut() else {
                return Err(io::Error::other("no active segment"));
            };
            p.frame.seal_into(seq, &mut self.buf);
            active.len += len;
            active.records += 1;
            active.last_seq = Some(seq);
            seq += 1;
        }
        let Some(active) = self.active.as_mut() else {
            return Err(io::Error::other("no active segment"));
        };
        active.file.write_all(&self.buf)?;
        self.buf.clear();
        active.file.sync_data()?;
        update.fsyncs += 1;
        update.segments.push(active.info(false));
        self.next_seq = seq;
        Ok(update)
    }

    fn create_segment(&self, first_seq: u64) -> io::Result<Active> {
        let dir = &self.shared.config.dir;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(segment_file_name(first_seq)))?;
        file.write_all(&SEGMENT_MAGIC)?;
        file.sync_all()?;
        sync_dir(dir)?;
        Ok(Active {
            first_seq,
            file,
            len: SEGMENT_HEADER_LEN,
            records: 0,
            last_seq: None,
        })
    }
}

#[derive(Default)]
struct BatchUpdate {
    /// Segments written to, oldest first (a sealed one, then the active one, on a roll).
    segments: Vec<SegmentInfo>,
    fsyncs: u64,
}
