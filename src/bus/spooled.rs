//! Store-and-forward between a gateway's sources and the Kafka producer.
//!
//! A gateway on Kafka publishes its observations into the spool: [`SpoolOut::send`] returns
//! once the record is on disk and `fdatasync`ed, so a source acknowledges its sender (MLLP AA,
//! MQTT PUBACK) for data that survives a crash or a broker outage. One [`Forwarder`] drains the
//! spool in order to the broker and acknowledges a batch to the spool only once the broker has
//! acknowledged every record of it (`acks=all`). After a crash, records appended but not yet
//! acknowledged by the broker are sent again: duplicates carry the same observation ids and
//! are ignored downstream.
//!
//! It must not: acknowledge a spool record before the broker has it, or drop one.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge, Opts};
use tokio_util::sync::CancellationToken;

use super::kafka::KafkaOut;
use super::BusError;
use crate::model::Timestamp;
use crate::spool::{Spool, SpoolError, SpoolStats};
use crate::telemetry::Metrics;

/// Records sent to the broker together before the spool is acknowledged up to the last one.
const BATCH: usize = 512;

/// The publishing side: encode as the broker would get it, append durably.
pub(super) struct SpoolOut<T> {
    pub(super) spool: Arc<Spool>,
    pub(super) kafka: KafkaOut<T>,
}

impl<T> Clone for SpoolOut<T> {
    fn clone(&self) -> Self {
        SpoolOut {
            spool: Arc::clone(&self.spool),
            kafka: self.kafka.clone(),
        }
    }
}

impl<T> SpoolOut<T> {
    pub(super) async fn send(&self, key: &str, rec: &T) -> Result<(), BusError> {
        let payload = self.kafka.encode(rec)?;
        self.spool
            .append(key.as_bytes(), &payload)
            .await
            .map(|_| ())
            .map_err(|e| BusError::Spool(e.to_string()))
    }

    pub(super) fn topic(&self) -> &str {
        self.kafka.topic()
    }
}

/// What a forwarder did before it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardReport {
    /// Records the broker acknowledged (and the spool was told).
    pub forwarded: u64,
    /// True when it ended because every record was forwarded and the spool closed; false when
    /// told to give up first (the rest goes at the next start).
    pub drained: bool,
}

/// Drains a spool to a Kafka topic. One per spool.
pub struct Forwarder<T> {
    pub(super) spool: Arc<Spool>,
    pub(super) out: KafkaOut<T>,
    pub(super) metrics: SpoolMetrics,
}

impl<T> Forwarder<T> {
    /// Forwards until the spool is closed and empty, or until `give_up` fires.
    pub async fn run(self, give_up: CancellationToken) -> ForwardReport {
        let mut report = ForwardReport::default();
        let topic = self.out.topic().to_string();
        loop {
            self.metrics
                .update(&self.spool.stats(Timestamp::now_wall()));
            let batch = tokio::select! {
                _ = give_up.cancelled() => break,
                b = self.spool.next_batch(BATCH) => b,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(SpoolError::Closed) => {
                    report.drained = true;
                    break;
                }
                Err(e) => {
                    // A read error is the disk's: nothing can be forwarded until it is fixed,
                    // and nothing is lost by waiting.
                    tracing::error!(error = %e, "spool read failed; retrying");
                    tokio::select! {
                        _ = give_up.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let Some(last) = batch.last().map(|r| r.seq) else {
                continue;
            };
            // Sent together: the producer keeps them in order per partition (idempotent
            // producer), and each future resolves when the broker has the record.
            let sends = batch
                .iter()
                .map(|r| self.out.send_bytes(&r.key, &r.payload));
            let results = tokio::select! {
                _ = give_up.cancelled() => break,
                r = futures_util::future::join_all(sends) => r,
            };
            if let Some(e) = results.into_iter().find_map(Result::err) {
                // send_bytes retries until acknowledged; an error here is unrecoverable for
                // this process (cannot encode headers): keep the records for the next start.
                tracing::error!(topic = %topic, error = %e, "forwarding stopped; the records stay in the spool");
                break;
            }
            if let Err(e) = self.spool.ack(last).await {
                tracing::error!(error = %e, "spool acknowledgement failed");
                break;
            }
            report.forwarded += batch.len() as u64;
        }
        if let Err(e) = self.spool.flush_cursor().await {
            tracing::warn!(error = %e, "spool cursor not persisted; records since the last one go again at the next start");
        }
        let stats = self.spool.stats(Timestamp::now_wall());
        self.metrics.update(&stats);
        if !report.drained && stats.records > 0 {
            tracing::warn!(
                records = stats.records,
                bytes = stats.bytes,
                "records left in the spool; they are sent at the next start"
            );
        }
        report
    }
}

/// The spool's gauges and counters (names as in `docs/spool.md`).
#[derive(Clone)]
pub struct SpoolMetrics {
    bytes: IntGauge,
    max_bytes: IntGauge,
    disk_bytes: IntGauge,
    segments: IntGauge,
    records: IntGauge,
    oldest_age: prometheus::Gauge,
    failed: IntGauge,
    appends: IntCounter,
    blocked_appends: IntCounter,
    drained: IntCounter,
    fsyncs: IntCounter,
    torn_tails: IntCounter,
    torn_bytes: IntCounter,
    corruptions: IntCounter,
    corrupt_bytes: IntCounter,
    /// The counters as last seen, so each update adds only what is new.
    last: Arc<std::sync::Mutex<SpoolStats>>,
}

impl SpoolMetrics {
    pub fn new(metrics: &Metrics) -> SpoolMetrics {
        fn gauge(m: &Metrics, name: &str, help: &str) -> IntGauge {
            let g = IntGauge::with_opts(Opts::new(name, help))
                .unwrap_or_else(|e| unreachable!("static metric definition {name}: {e}"));
            m.register(Box::new(g.clone()));
            g
        }
        fn counter(m: &Metrics, name: &str, help: &str) -> IntCounter {
            let c = IntCounter::with_opts(Opts::new(name, help))
                .unwrap_or_else(|e| unreachable!("static metric definition {name}: {e}"));
            m.register(Box::new(c.clone()));
            c
        }
        let oldest_age = prometheus::Gauge::with_opts(Opts::new(
            "vigil_spool_oldest_record_age_seconds",
            "Age of the oldest record not yet acknowledged by the broker (0 when empty).",
        ))
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        metrics.register(Box::new(oldest_age.clone()));
        SpoolMetrics {
            bytes: gauge(
                metrics,
                "vigil_spool_bytes",
                "Bytes of spooled records not yet acknowledged by the broker (what max_bytes bounds).",
            ),
            max_bytes: gauge(metrics, "vigil_spool_max_bytes", "The spool's bound in bytes."),
            disk_bytes: gauge(metrics, "vigil_spool_disk_bytes", "Bytes of all spool segment files."),
            segments: gauge(metrics, "vigil_spool_segments", "Spool segment files."),
            records: gauge(
                metrics,
                "vigil_spool_records",
                "Spooled records not yet acknowledged by the broker.",
            ),
            oldest_age,
            failed: gauge(metrics, "vigil_spool_failed", "1 after a spool write failure."),
            appends: counter(metrics, "vigil_spool_appends_total", "Records appended durably."),
            blocked_appends: counter(
                metrics,
                "vigil_spool_blocked_appends_total",
                "Appends that waited for room (the spool was full).",
            ),
            drained: counter(
                metrics,
                "vigil_spool_drained_total",
                "Records forwarded to the broker and acknowledged.",
            ),
            fsyncs: counter(metrics, "vigil_spool_fsyncs_total", "fdatasync calls for appends."),
            torn_tails: counter(
                metrics,
                "vigil_spool_torn_tails_total",
                "Torn tail records (a crash mid-write) truncated on open.",
            ),
            torn_bytes: counter(
                metrics,
                "vigil_spool_torn_bytes_total",
                "Bytes dropped with torn tails.",
            ),
            corruptions: counter(
                metrics,
                "vigil_spool_corruptions_total",
                "Corrupt regions skipped in sealed segments.",
            ),
            corrupt_bytes: counter(
                metrics,
                "vigil_spool_corrupt_bytes_total",
                "Bytes skipped with corrupt regions.",
            ),
            last: Arc::new(std::sync::Mutex::new(SpoolStats::default())),
        }
    }

    pub fn update(&self, s: &SpoolStats) {
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.bytes.set(i(s.bytes));
        self.max_bytes.set(i(s.max_bytes));
        self.disk_bytes.set(i(s.disk_bytes));
        self.segments.set(i(s.segments));
        self.records.set(i(s.records));
        self.oldest_age
            .set(s.oldest_age_ms.unwrap_or(0) as f64 / 1000.0);
        self.failed.set(i64::from(s.failed));
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let add = |c: &IntCounter, now: u64, before: u64| c.inc_by(now.saturating_sub(before));
        add(&self.appends, s.appends, last.appends);
        add(
            &self.blocked_appends,
            s.blocked_appends,
            last.blocked_appends,
        );
        add(&self.drained, s.drains, last.drains);
        add(&self.fsyncs, s.fsyncs, last.fsyncs);
        add(&self.torn_tails, s.torn_tails, last.torn_tails);
        add(&self.torn_bytes, s.torn_bytes, last.torn_bytes);
        add(&self.corruptions, s.corruptions, last.corruptions);
        add(&self.corrupt_bytes, s.corrupt_bytes, last.corrupt_bytes);
        *last = s.clone();
    }
}
