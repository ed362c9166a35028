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

use std::collections::HashMap;

use super::format::{RecordedProtocol, RecordedSource, RecordingReader};
use crate::bus::{IngestBatch, Publisher};
use crate::config::Speed;
use crate::model::{IngestRecord, Timestamp};
use crate::normalize::{Normalized, Normalizer};
use crate::protocol::device::DeviceDriver;
use crate::protocol::profile::ProfileSet;
use crate::sources::deadletter::{keep, DeadLetter, DeadLetterStore};
use crate::sources::serial::drivers::DriverSpec;
use crate::sources::serial::DeviceFeed;
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
    /// Device profiles, for recorded serial sources that name one.
    pub profiles: ProfileSet,
}

/// A recorded serial source being decoded: its driver and what it knows of the device.
struct SerialReplay {
    driver: Box<dyn DeviceDriver>,
    feed: DeviceFeed,
    events: Vec<crate::protocol::device::DeviceEvent>,
    replies: Vec<u8>,
}

impl SerialReplay {
    fn new(source: &RecordedSource, profiles: &ProfileSet) -> Result<Self, String> {
        let spec = source
            .profile
            .as_deref()
            .ok_or_else(|| "the recording names no driver for this serial source".to_string())
            .and_then(|p| DriverSpec::parse(p, profiles))?;
        Ok(SerialReplay {
            driver: spec.driver(),
            feed: DeviceFeed::new(
                &source.name,
                "serial",
                None,
                source.unit.as_deref(),
                source.bed.as_deref(),
            ),
            events: Vec::new(),
            replies: Vec::new(),
        })
    }

    fn feed(
        &mut self,
        bytes: &[u8],
        t: Timestamp,
        normalizer: &Mutex<Normalizer>,
    ) -> Vec<Normalized> {
        self.driver
            .on_bytes(bytes, t, &mut self.events, &mut self.replies);
        // A replay only listens.
        self.replies.clear();
        self.feed
            .on_events(&mut self.events, normalizer, t)
            .normalized
    }
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
        profiles,
    } = ctx;
    let dl = dead_letters.as_deref();
    let mut serial: HashMap<String, Result<SerialReplay, String>> = HashMap::new();
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
            (Ok(raw), RecordedProtocol::Serial) => {
                let replay = serial.entry(entry.source.clone()).or_insert_with(|| {
                    match reader.header.source(&entry.source) {
                        Some(src) => SerialReplay::new(src, &profiles),
                        None => Err("undeclared source".to_string()),
                    }
                });
                match replay {
                    Ok(r) => {
                        let started = Instant::now();
                        let out = r.feed(raw, entry.t, &normalizer);
                        metrics.stage_time("normalize", started.elapsed());
                        Ok(out)
                    }
                    Err(e) => Err(("unsupported", e.clone())),
                }
            }
            (Ok(_), RecordedProtocol::Mqtt) => Err((
                "unsupported",
                "this build does not replay MQTT sources".to_string(),
            )),
            (Ok(raw), RecordedProtocol::Hl7) => {
                let started = Instant::now();
                let result = match normalizer.lock() {
                    Ok(mut n) => n.hl7(&entry.source, raw, entry.t),
                    Err(poisoned) => poisoned.into_inner().hl7(&entry.source, raw, entry.t),
                };
                metrics.stage_time("normalize", started.elapsed());
                result
                    .map(|n| vec![n])
                    .map_err(|e| (e.kind(), e.to_string()))
            }
        };
        let normalized = match decoded {
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
        for n in normalized {
            count_normalized(&metrics, &source_label, &n);
            if n.records.is_empty() {
                continue;
            }
            stats.records += n.records.len() as u64;
            let key = batch_key(&n.records);
            rt.block_on(out.publish(&key, n.records))
                .map_err(|_| ReplayError::BusClosed)?;
        }
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
