//! A durable store-and-forward queue: the gateway appends records here before anything else
//! sees them, and a forwarder drains them to the bus at its own pace.
//!
//! The spool owns a directory of segment files (a FIFO of opaque records: a key and a payload,
//! both bytes), one writer thread that group-commits appends with `fdatasync`, a read position
//! and a persisted acknowledgement cursor. It knows nothing of Kafka, observations or HL7: what
//! a record means is the caller's business.
//!
//! Guarantees (details, format and failure handling in `docs/spool.md`):
//! - [`Spool::append`] returns only once the record is on disk and `fdatasync`ed; concurrent
//!   appenders share one sync.
//! - Records are read back in append order ([`SeqNo`] order), never a byte that failed its
//!   checksum.
//! - Delivery is **at least once**: after a restart, every record after the last persisted
//!   acknowledgement is delivered again, including records that had been forwarded and
//!   acknowledged but whose acknowledgement had not reached the cursor file yet. Downstream
//!   deduplicates (by observation id).
//! - The spool is bounded in bytes: a full spool makes `append` wait (back-pressure), it never
//!   drops a record.
//! - A torn tail (a crash in the middle of a write) is truncated on open and counted; a
//!   checksum failure inside a sealed segment (bit rot) loses the rest of that segment only,
//!   and is logged and counted.
//!
//! It must not: read a record before it is durable, hold more than `max_bytes` of
//! unacknowledged records, or delete a segment before the cursor past it is on disk.

mod format;
mod reader;
mod recover;
mod writer;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{oneshot, Notify};

use crate::model::Timestamp;

use reader::ReadState;
use writer::{Pending, WriterMsg};

/// Sequence number of a record: 1 for the first record a spool directory ever held, then +1
/// per record, never reused. Gaps appear only where corrupt records were skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqNo(pub u64);

impl std::fmt::Display for SeqNo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One record read back from the spool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Position in the spool; pass the last one handled to [`Spool::ack`].
    pub seq: SeqNo,
    /// When the record was appended (wall clock of the appender, or the time given to
    /// [`Spool::append_at`]).
    pub appended_at: Timestamp,
    /// The key given to `append` (e.g. a partition key); may be empty.
    pub key: Vec<u8>,
    /// The payload given to `append`.
    pub payload: Vec<u8>,
}

/// Settings of a spool (the `[spool]` section a role may embed).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// The directory holding segments and the cursor; created if missing. One spool per
    /// directory: two processes must not open the same one.
    pub dir: PathBuf,
    /// A segment is sealed and a new one started once the next record would take it past this
    /// size. Default 16 MiB.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// Most bytes of unacknowledged records (framing included) the spool holds; `append` waits
    /// beyond it. Default 1 GiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Largest record (key + payload + 28 bytes of framing) `append` accepts. Default 1 MiB.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
    /// The cursor file is rewritten after this many acknowledgements... Default 1000.
    #[serde(default = "default_cursor_every_acks")]
    pub cursor_every_acks: u32,
    /// ...or once this many milliseconds have passed since it was last written, whichever comes
    /// first (also when a segment has been fully forwarded, and at close). Default 1000.
    #[serde(default = "default_cursor_every_ms")]
    pub cursor_every_ms: u64,
}

fn default_segment_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_max_bytes() -> u64 {
    1024 * 1024 * 1024
}
fn default_max_record_bytes() -> u64 {
    1024 * 1024
}
fn default_cursor_every_acks() -> u32 {
    1000
}
fn default_cursor_every_ms() -> u64 {
    1000
}

/// The smallest segment size accepted (keeps tests able to roll often, keeps typos out).
pub const MIN_SEGMENT_BYTES: u64 = 256;

impl SpoolConfig {
    /// Defaults for everything but the directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolConfig {
            dir: dir.into(),
            segment_bytes: default_segment_bytes(),
            max_bytes: default_max_bytes(),
            max_record_bytes: default_max_record_bytes(),
            cursor_every_acks: default_cursor_every_acks(),
            cursor_every_ms: default_cursor_every_ms(),
        }
    }

    /// Checks the settings against each other; every fault in one message.
    pub fn validate(&self) -> Result<(), SpoolError> {
        let mut faults = Vec::new();
        if self.dir.as_os_str().is_empty() {
            faults.push("dir is empty".to_string());
        }
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            faults.push(format!(
                "segment_bytes {} is below {MIN_SEGMENT_BYTES}",
                self.segment_bytes
            ));
        }
        let min_record = format::framed_len(0, 0) as u64;
        let max_format = (format::FRAME_HEADER_LEN + format::MAX_BODY_LEN) as u64;
        if self.max_record_bytes < min_record || self.max_record_bytes > max_format {
            faults.push(format!(
                "max_record_bytes {} is outside {min_record}..={max_format}",
                self.max_record_bytes
            ));
        }
        if self.max_record_bytes
            > self
                .segment_bytes
                .saturating_sub(format::SEGMENT_HEADER_LEN)
        {
            faults.push(format!(
                "max_record_bytes {} does not fit a segment of {} bytes",
                self.max_record_bytes, self.segment_bytes
            ));
        }
        if self.max_record_bytes > self.max_bytes {
            faults.push(format!(
                "max_record_bytes {} is above max_bytes {}",
                self.max_record_bytes, self.max_bytes
            ));
        }
        if self.cursor_every_acks == 0 {
            faults.push("cursor_every_acks must be at least 1".to_string());
        }
        if self.cursor_every_ms == 0 {
            faults.push("cursor_every_ms must be at least 1".to_string());
        }
        if faults.is_empty() {
            Ok(())
        } else {
            Err(SpoolError::InvalidConfig(faults.join("; ")))
        }
    }
}

/// What can go wrong with a spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The settings are inconsistent (all faults listed).
    #[error("invalid spool settings: {0}")]
    InvalidConfig(String),
    /// A file operation failed while opening, reading or writing the cursor.
    #[error("spool {op} {path}: {source}")]
    Io {
        /// What the spool was doing.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The record is larger than `max_record_bytes`.
    #[error("record of {size} bytes is larger than max_record_bytes {max}")]
    RecordTooLarge {
        /// Framed size of the rejected record.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// A write or `fdatasync` failed earlier; the spool takes no more appends until it is
    /// reopened (after a failed sync the kernel's view of the file is unknown, so it must be
    /// re-verified from disk). Records already durable can still be read.
    #[error("the spool stopped taking appends after a write failure: {0}")]
    Failed(String),
    /// The spool has been closed.
    #[error("the spool is closed")]
    Closed,
    /// `ack` named a record that has not been read yet.
    #[error("cannot acknowledge {upto}: the last record read is {last_read}")]
    AckOutOfRange {
        /// The sequence number passed to `ack`.
        upto: SeqNo,
        /// The highest sequence number handed out by `peek_batch`/`next_batch`.
        last_read: SeqNo,
    },
    /// A blocking task of the spool could not run (runtime shutting down).
    #[error("spool task failed: {0}")]
    Task(String),
}

impl SpoolError {
    fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| SpoolError::Io { op, path, source }
    }
}

/// Gauges and counters of a spool, for metrics (see `docs/spool.md` for the names to use).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Gauge: bytes of unacknowledged records plus appends in flight (what `max_bytes` bounds).
    pub bytes: u64,
    /// The configured bound.
    pub max_bytes: u64,
    /// Gauge: bytes of all segment files (acknowledged records linger until their segment is
    /// fully forwarded and the cursor past it is on disk).
    pub disk_bytes: u64,
    /// Gauge: segment files.
    pub segments: u64,
    /// Gauge: unacknowledged records on disk.
    pub records: u64,
    /// Gauge: age of the oldest unacknowledged record at the `now` given to
    /// [`Spool::stats`], in milliseconds; `None` when empty.
    pub oldest_age_ms: Option<i64>,
    /// Counter: records appended (durable) since open.
    pub appends: u64,
    /// Counter: appends that had to wait for room (back-pressure events).
    pub blocked_appends: u64,
    /// Counter: records acknowledged (drained) since open.
    pub drains: u64,
    /// Counter: `fdatasync` calls for appends (appends / fsyncs = group-commit factor).
    pub fsyncs: u64,
    /// Counter: torn tails truncated away on open.
    pub torn_tails: u64,
    /// Counter: bytes dropped with torn tails.
    pub torn_bytes: u64,
    /// Counter: corrupt regions skipped (checksum or sequence failure in a sealed segment, on
    /// open or while reading).
    pub corruptions: u64,
    /// Counter: bytes skipped with corrupt regions.
    pub corrupt_bytes: u64,
    /// Whether appends have stopped after a write failure ([`SpoolError::Failed`]).
    pub failed: bool,
}

/// What the spool knows about one segment file.
#[derive(Clone, Debug)]
pub(crate) struct SegmentInfo {
    pub first_seq: u64,
    /// End of the readable (durable, verified) records.
    pub end: u64,
    /// Length of the file (above `end` for a segment cut short by corruption).
    pub disk_len: u64,
    /// Last readable record, if any.
    pub last_seq: Option<u64>,
    /// Whether the writer has moved on to a later segment.
    pub sealed: bool,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub segments: VecDeque<SegmentInfo>,
    /// Highest durable sequence number.
    pub durable_seq: u64,
    pub unacked_bytes: u64,
    pub reserved_bytes: u64,
    pub unacked_records: u64,
    pub oldest_ms: Option<i64>,
    pub disk_bytes: u64,
    pub stats: SpoolStats,
    pub failed: Option<String>,
    pub closed: bool,
    warned_high: bool,
    warned_full: bool,
}

impl State {
    /// Warns once when the spool crosses 80 % (re-armed below 70 %) and once when it is full
    /// (re-armed below 80 %).
    fn check_fill(&mut self, max: u64, dir: &std::path::Path, full_now: bool) {
        let used = self.unacked_bytes.saturating_add(self.reserved_bytes);
        let pct = used.saturating_mul(100) / max.max(1);
        if full_now && !self.warned_full {
            self.warned_full = true;
            tracing::warn!(
                dir = %dir.display(), bytes = used, max_bytes = max,
                "spool is full: appends wait until the forwarder catches up"
            );
        }
        if pct >= 80 && !self.warned_high {
            self.warned_high = true;
            tracing::warn!(
                dir = %dir.display(), bytes = used, max_bytes = max,
                "spool is over 80 % full: the forwarder is not keeping up"
            );
        }
        if pct < 80 {
            self.warned_full = false;
        }
        if pct < 70 {
            self.warned_high = false;
        }
    }
}

pub(crate) struct Shared {
    pub config: SpoolConfig,
    state: Mutex<State>,
    /// Woken when records become durable (and at close).
    pub new_data: Notify,
    /// Woken when room is freed (acks, failed appends, close).
    pub room: Notify,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters behind: keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A durable store-and-forward queue in a directory. See the module docs.
///
/// Appenders share it (`Arc<Spool>`); reading (`peek_batch`/`next_batch`/`ack`) is meant for one
/// forwarder at a time.
pub struct Spool {
    shared: Arc<Shared>,
    /// To the writer thread. Sends happen under the state lock so that nothing follows the
    /// shutdown message.
    tx: std::sync::mpsc::Sender<WriterMsg>,
    reader: Arc<Mutex<ReadState>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn lock_reader(reader: &Mutex<ReadState>) -> MutexGuard<'_, ReadState> {
    reader.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SpoolError::Task(e.to_string()))?
}

impl Spool {
    /// Opens (or creates) the spool in `config.dir`: verifies every record of every segment,
    /// truncates a torn tail, skips corrupt regions, reads the cursor, and starts the writer.
    pub async fn open(config: SpoolConfig) -> Result<Spool, SpoolError> {
        config.validate()?;
        let cfg = config.clone();
        let recovered = blocking(move || recover::recover(&cfg)).await?;
        let mut state = State {
            segments: recovered.segments,
            durable_seq: recovered.durable_seq,
            unacked_bytes: recovered.unacked_bytes,
            unacked_records: recovered.unacked_records,
            oldest_ms: recovered.oldest_ms,
            disk_bytes: recovered.disk_bytes,
            ..State::default()
        };
        state.stats.torn_tails = recovered.torn_tails;
        state.stats.torn_bytes = recovered.torn_bytes;
        state.stats.corruptions = recovered.corruptions;
        state.stats.corrupt_bytes = recovered.corrupt_bytes;
        state.check_fill(config.max_bytes, &config.dir, false);
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(state),
            new_data: Notify::new(),
            room: Notify::new(),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let writer =
            writer::Writer::new(shared.clone(), recovered.next_seq, recovered.active).map_err(
                SpoolError::io("open the active segment", &shared.config.dir),
            )?;
        let handle = std::thread::Builder::new()
            .name("vigil-spool-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(SpoolError::io(
                "start the writer thread",
                &shared.config.dir,
            ))?;
        Ok(Spool {
            reader: Arc::new(Mutex::new(ReadState::new(recovered.acked))),
            shared,
            tx,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// The settings this spool runs with.
    pub fn config(&self) -> &SpoolConfig {
        &self.shared.config
    }

    /// Appends a record stamped with the wall clock; see [`Spool::append_at`].
    pub async fn append(&self, key: &[u8], payload: &[u8]) -> Result<SeqNo, SpoolError> {
        self.append_at(key, payload, Timestamp::now_wall()).await
    }

    /// Appends a record and returns its sequence number once it is durable (written and
    /// `fdatasync`ed, together with whatever other appends arrived meanwhile).
    ///
    /// Waits while the spool is full. Dropping the future before it completes is safe: while
    /// waiting for room nothing has happened; afterwards the record may or may not be stored.
    pub async fn append_at(
        &self,
        key: &[u8],
        payload: &[u8],
        at: Timestamp,
    ) -> Result<SeqNo, SpoolError> {
        let size = format::framed_len(key.len(), payload.len()) as u64;
        let max = self.shared.config.max_record_bytes;
        if size > max {
            return Err(SpoolError::RecordTooLarge { size, max });
        }
        let frame = format::PendingFrame::new(at.millis(), key, payload);
        let (reply, done) = oneshot::channel();
        let mut pending = Some(Pending {
            frame,
            appended_ms: at.millis(),
            reply,
        });
        let mut waited = false;
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut st = self.shared.lock();
                if let Some(reason) = &st.failed {
                    return Err(SpoolError::Failed(reason.clone()));
                }
                if st.closed {
                    return Err(SpoolError::Closed);
                }
                let used = st.unacked_bytes.saturating_add(st.reserved_bytes);
                if used.saturating_add(size) <= self.shared.config.max_bytes {
                    st.reserved_bytes += size;
                    st.check_fill(self.shared.config.max_bytes, &self.shared.config.dir, false);
                    let Some(p) = pending.take() else {
                        return Err(SpoolError::Closed);
                    };
                    if self.tx.send(WriterMsg::Append(p)).is_err() {
                        st.reserved_bytes -= size;
                        return Err(SpoolError::Closed);
                    }
                    break;
                }
                if !waited {
                    waited = true;
                    st.stats.blocked_appends += 1;
                    st.check_fill(self.shared.config.max_bytes, &self.shared.config.dir, true);
                }
            }
            room.await;
        }
        done.await.unwrap_or(Err(SpoolError::Closed))
    }

    /// Up to `max` of the oldest unacknowledged records, in order, without consuming them:
    /// calling it again before [`Spool::ack`] returns the same records (and possibly more).
    /// Empty when everything durable has been read and acknowledged.
    pub async fn peek_batch(&self, max: usize) -> Result<Vec<SpoolRecord>, SpoolError> {
        let (shared, reader) = (self.shared.clone(), self.reader.clone());
        blocking(move || lock_reader(&reader).peek(&shared, max)).await
    }

    /// Like [`Spool::peek_batch`] but waits until there is at least one record. Persists a
    /// pending acknowledgement while idle. Fails with [`SpoolError::Closed`] (or `Failed`) once
    /// the spool is closed (or has failed) and everything has been read.
    pub async fn next_batch(&self, max: usize) -> Result<Vec<SpoolRecord>, SpoolError> {
        let max = max.max(1);
        let idle = Duration::from_millis(self.shared.config.cursor_every_ms);
        loop {
            let new_data = self.shared.new_data.notified();
            tokio::pin!(new_data);
            new_data.as_mut().enable();
            let batch = self.peek_batch(max).await?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            {
                let st = self.shared.lock();
                if let Some(reason) = &st.failed {
                    return Err(SpoolError::Failed(reason.clone()));
                }
                if st.closed {
                    return Err(SpoolError::Closed);
                }
            }
            if tokio::time::timeout(idle, new_data).await.is_err() {
                self.flush_cursor().await?;
            }
        }
    }

    /// Marks every record up to and including `upto` as forwarded. Their room is freed at
    /// once; the cursor file is rewritten every `cursor_every_acks` acks or `cursor_every_ms`,
    /// and when a segment has been fully forwarded (which then is deleted).
    ///
    /// `upto` must not be past the last record returned by `peek_batch`/`next_batch`;
    /// acknowledging something already acknowledged does nothing.
    pub async fn ack(&self, upto: SeqNo) -> Result<(), SpoolError> {
        let (shared, reader) = (self.shared.clone(), self.reader.clone());
        let result = blocking(move || lock_reader(&reader).ack(&shared, upto.0)).await;
        self.shared.room.notify_waiters();
        result
    }

    /// Writes the cursor now if an acknowledgement is not on disk yet.
    pub async fn flush_cursor(&self) -> Result<(), SpoolError> {
        let (shared, reader) = (self.shared.clone(), self.reader.clone());
        blocking(move || lock_reader(&reader).flush(&shared)).await
    }

    /// Gauges and counters; `now` gives the age of the oldest record.
    pub fn stats(&self, now: Timestamp) -> SpoolStats {
        let st = self.shared.lock();
        SpoolStats {
            bytes: st.unacked_bytes.saturating_add(st.reserved_bytes),
            max_bytes: self.shared.config.max_bytes,
            disk_bytes: st.disk_bytes,
            segments: st.segments.len() as u64,
            records: st.unacked_records,
            oldest_age_ms: st.oldest_ms.map(|t| now.millis().saturating_sub(t).max(0)),
            failed: st.failed.is_some(),
            ..st.stats.clone()
        }
    }

    /// Stops taking appends, lets the writer finish what it was given, persists the cursor.
    /// Appends waiting for room fail with [`SpoolError::Closed`]. Idempotent.
    pub async fn close(&self) -> Result<(), SpoolError> {
        let done = {
            let mut st = self.shared.lock();
            if st.closed {
                None
            } else {
                st.closed = true;
                // Under the lock: no append can be sent after this.
                let (done_tx, done_rx) = oneshot::channel();
                let _ = self.tx.send(WriterMsg::Shutdown(done_tx));
                Some(done_rx)
            }
        };
        self.shared.room.notify_waiters();
        if let Some(done) = done {
            // An error only means the writer is gone already.
            let _ = done.await;
        }
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            blocking(move || {
                handle
                    .join()
                    .map_err(|_| SpoolError::Task("the writer thread panicked".into()))
            })
            .await?;
        }
        self.shared.new_data.notify_waiters();
        self.flush_cursor().await
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // The writer ends when the channel closes (after writing what it holds). Persist the
        // acknowledgements best-effort; `close` is the way to see errors.
        let mut reader = lock_reader(&self.reader);
        if let Err(e) = reader.flush(&self.shared) {
            tracing::warn!(error = %e, "spool cursor not persisted at drop");
        }
    }
}

#[cfg(test)]
mod tests;
