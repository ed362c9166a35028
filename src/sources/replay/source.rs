//! The replay source: reads a recording and feeds each arrival through the real decoder and
//! normalizer, on virtual time (`receive_time` = the recorded arrival time).
//!
//! At `--speed max` it goes as fast as the bus accepts; at a factor it sleeps so virtual time
//! advances that many times faster than the wall clock. Reading and decoding run on a blocking
//! thread; publishing waits for room on the bus (back-pressure, nothing dropped).

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::format::{RecordedProtocol, RecordingReader};
use crate::bus::{IngestBatch, Publisher};
use crate::config::Speed;
use crate::model::{IngestRecord, Timestamp};
use crate::normalize::{Normalized, Normalizer};
use crate::sources::deadletter::{keep, DeadLetter, DeadLetterStore};
use crate::telemetry::Metrics;

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct ReplayStats {
    pub entries: u64,
    pub records: u64,
    pub rejected: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Recording(#[from] super::format::RecordingError),
    #[error("the bus closed before the replay ended")]
    BusClosed,
}

/// Where a replay sends what it decodes, and how it is stopped.
pub struct ReplayContext {
    pub normalizer: Arc<Mutex<Normalizer>>,
    pub out: Publisher<IngestBatch>,
    pub metrics: Arc<Metrics>,
    pub stop: CancellationToken,
    /// The runtime the publisher's futures run on (this function runs on a blocking thread).
    pub rt: tokio::runtime::Handle,
    /// Where rejected messages are kept, if anywhere.
    pub dead_letters: Option<Arc<Mutex<DeadLetterStore>>>,
}

/// Replays `input` into `ctx.out`. Returns when the recording ends or `ctx.stop` fires.
pub fn run_blocking(
    name: &str,
    input: Box<dyn Read + Send>,
    speed: Speed,
    ctx: ReplayContext,
) -> Result<ReplayStats, ReplayError> {
    let ReplayContext {
        normalizer,
        out,
        metrics,
        stop,
        rt,
        dead_letters,
    } = ctx;
    let dl = dead_letters.as_deref();
    let mut reader = RecordingReader::from_reader(input)?;
    let mut stats = ReplayStats::default();
    let wall_start = Instant::now();
    let mut virtual_start: Option<Timestamp> = None;
    while let Some(entry) = reader.next_entry()? {
        if stop.is_cancelled() {
            tracing::info!(source = name, "replay stopped early");
            break;
        }
        let v0 = *virtual_start.get_or_insert(entry.t);
        if let Speed::Factor(f) = speed {
            let due = Duration::from_secs_f64((entry.t.since(v0).max(0) as f64 / 1000.0) / f);
            // Sleep in short steps so a stop request is honoured promptly.
            while let Some(left) = due.checked_sub(wall_start.elapsed()) {
                if stop.is_cancelled() || left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(Duration::from_millis(100)));
            }
        }
        stats.entries += 1;
        stats.first.get_or_insert(entry.t);
        stats.last = Some(entry.t);
        let protocol = reader
            .header
            .source(&entry.source)
            .map(|s| s.protocol)
            .unwrap_or(RecordedProtocol::Hl7);
        let source_label = format!("{name}/{}", entry.source);
        metrics
            .messages_received
            .with_label_values(&[&source_label, protocol_name(protocol)])
            .inc();
        let payload = entry.payload();
        let decoded = match (&payload, protocol) {
            (Err(e), _) => Err(("payload", e.to_string())),
            (Ok(_), p) if p != RecordedProtocol::Hl7 => Err((
                "unsupported",
                "this build replays HL7 sources only".to_string(),
            )),
            (Ok(raw), _) => {
                let started = Instant::now();
                let result = match normalizer.lock() {
                    Ok(mut n) => n.hl7(&entry.source, raw, entry.t),
                    Err(poisoned) => poisoned.into_inner().hl7(&entry.source, raw, entry.t),
                };
                metrics.stage_time("normalize", started.elapsed());
                result.map_err(|e| (e.kind(), e.to_string()))
            }
        };
        let n = match decoded {
            Ok(n) => n,
            Err((kind, reason)) => {
                stats.rejected += 1;
                metrics.message_rejected(&source_label, kind, &reason);
                let raw = payload.as_deref().unwrap_or_default();
                keep(
                    dl,
                    &DeadLetter::new(entry.t, &source_label, None, kind, &reason, raw),
                );
                continue;
            }
        };
        count_normalized(&metrics, &source_label, &n);
        if n.records.is_empty() {
            continue;
        }
        stats.records += n.records.len() as u64;
        let key = batch_key(&n.records);
        rt.block_on(out.publish(&key, n.records))
            .map_err(|_| ReplayError::BusClosed)?;
    }
    Ok(stats)
}

fn protocol_name(p: RecordedProtocol) -> &'static str {
    match p {
        RecordedProtocol::Hl7 => "hl7",
        RecordedProtocol::Serial => "serial",
        RecordedProtocol::Mqtt => "mqtt",
    }
}

/// The partition key of a message's records: its first record's patient, else its bed.
pub fn batch_key(records: &[IngestRecord]) -> String {
    match records.first() {
        Some(IngestRecord::Observation(o)) => o.key(),
        Some(IngestRecord::Census(c)) => c.patient.clone(),
        None => String::new(),
    }
}

/// Counts what one message became: its records, and readings with no patient for their bed.
pub fn count_normalized(metrics: &Metrics, source: &str, n: &Normalized) {
    if n.unassociated > 0 {
        metrics
            .observations_unassociated
            .with_label_values(&[source])
            .inc_by(n.unassociated as u64);
    }
    for rec in &n.records {
        count_record(metrics, rec);
    }
}

/// Counts a normalized record in the metrics.
pub fn count_record(metrics: &Metrics, rec: &IngestRecord) {
    match rec {
        IngestRecord::Observation(o) => {
            let param = o.param.map(|p| p.name()).unwrap_or_default();
            metrics
                .observations
                .with_label_values(&[o.code.system.as_str(), &o.code.code, &param])
                .inc();
            for q in &o.quality {
                metrics
                    .observations_flagged
                    .with_label_values(&[&param, q.as_str()])
                    .inc();
            }
        }
        IngestRecord::Census(c) => {
            metrics
                .census_events
                .with_label_values(&[c.kind.as_str()])
                .inc();
        }
    }
}
