//! Internal events: every notable runtime event is one method here that both logs (without
//! PHI: no patient ids, names or values at info level) and counts in Prometheus.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The process's metrics. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    pub messages_received: IntCounterVec,
    pub messages_rejected: IntCounterVec,
    pub observations: IntCounterVec,
    pub observations_flagged: IntCounterVec,
    pub observations_unassociated: IntCounterVec,
    pub census_events: IntCounterVec,
    pub scores_computed: IntCounterVec,
    pub alerts: IntCounterVec,
    pub stage_latency: HistogramVec,
    pub bus_depth: IntGaugeVec,
    pub patients: IntGauge,
    pub ready: IntGauge,
    pub mllp_connections: IntGaugeVec,
    pub mllp_acks: IntCounterVec,
    pub mllp_refused: IntCounterVec,
    pub device_connected: IntGaugeVec,
    pub device_reconnects: IntCounterVec,
    pub device_frames: IntCounterVec,
    pub mqtt_connected: IntGaugeVec,
    pub mqtt_subscribed: IntGaugeVec,
    pub mqtt_connects: IntCounterVec,
    pub mqtt_connection_errors: IntCounterVec,
    pub mqtt_acks: IntCounterVec,
    pub mqtt_unacked: IntCounterVec,
    pub mqtt_redelivered: IntCounterVec,
    pub mqtt_readings_skipped: IntCounterVec,
    pub kafka_restores: IntCounterVec,
    pub reading_latency: HistogramVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("static metric definition {name}: {e}"));
    // Registration fails only for duplicate names, which would be a programming error.
    let _ = registry.register(Box::new(c.clone()));
    c
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let messages_received = counter(
            &registry,
            "vigil_messages_received_total",
            "Messages received, by source and protocol.",
            &["source", "protocol"],
        );
        let messages_rejected = counter(
            &registry,
            "vigil_messages_rejected_total",
            "Messages rejected (answered with a negative acknowledgement and dead-lettered), by source and reason.",
            &["source", "reason"],
        );
        let observations = counter(
            &registry,
            "vigil_observations_total",
            "Normalized observations, by code system, code and parameter.",
            &["system", "code", "param"],
        );
        let observations_flagged = counter(
            &registry,
            "vigil_observations_flagged_total",
            "Observations kept but flagged and excluded from scoring, by parameter and flag.",
            &["param", "flag"],
        );
        let observations_unassociated = counter(
            &registry,
            "vigil_observations_unassociated_total",
            "Observations with no admitted patient for their bed, by source.",
            &["source"],
        );
        let census_events = counter(
            &registry,
            "vigil_census_events_total",
            "Census changes from ADT, by kind.",
            &["kind"],
        );
        let scores_computed = counter(
            &registry,
            "vigil_scores_computed_total",
            "Scores computed, by kind.",
            &["kind"],
        );
        let alerts = counter(
            &registry,
            "vigil_alerts_total",
            "Alert transitions, by rule, severity and state.",
            &["rule", "severity", "state"],
        );
        let stage_latency = HistogramVec::new(
            HistogramOpts::new(
                "vigil_stage_latency_seconds",
                "Processing time per record in each stage (wall clock).",
            )
            .buckets(vec![
                1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0,
            ]),
            &["stage"],
        )
        .unwrap_or_else(|e| unreachable!("static histogram definition: {e}"));
        let _ = registry.register(Box::new(stage_latency.clone()));
        let bus_depth = IntGaugeVec::new(
            Opts::new(
                "vigil_bus_depth",
                "Records waiting in each in-process topic.",
            ),
            &["topic"],
        )
        .unwrap_or_else(|e| unreachable!("static gauge definition: {e}"));
        let _ = registry.register(Box::new(bus_depth.clone()));
        let patients = IntGauge::new("vigil_patients", "Patients with scorer state.")
            .unwrap_or_else(|e| unreachable!("static gauge definition: {e}"));
        let _ = registry.register(Box::new(patients.clone()));
        let ready = IntGauge::new("vigil_ready", "1 once every stage is running.")
            .unwrap_or_else(|e| unreachable!("static gauge definition: {e}"));
        let _ = registry.register(Box::new(ready.clone()));
        let mllp_connections = IntGaugeVec::new(
            Opts::new(
                "vigil_mllp_connections",
                "Open MLLP connections, by source.",
            ),
            &["source"],
        )
        .unwrap_or_else(|e| unreachable!("static gauge definition: {e}"));
        let _ = registry.register(Box::new(mllp_connections.clone()));
        let mllp_acks = counter(
            &registry,
            "vigil_mllp_acks_total",
            "Acknowledgements sent, by source and MSA-1 code (AA, AE, AR, CA, CE, CR).",
            &["source", "code"],
        );
        let mllp_refused = counter(
            &registry,
            "vigil_mllp_refused_total",
            "MLLP connections or frames refused, by source and reason (too_large, idle, unterminated, busy).",
            &["source", "reason"],
        );
        let device_connected = IntGaugeVec::new(
            Opts::new(
                "vigil_device_connected",
                "1 while a device source's port is open and its session is up, by source.",
            ),
            &["source", "protocol"],
        )
        .unwrap_or_else(|e| unreachable!("static gauge definition: {e}"));
        let _ = registry.register(Box::new(device_connected.clone()));
        let device_reconnects = counter(
            &registry,
            "vigil_device_reconnects_total",
            "Times a device source lost its port or session and reopened it, by source and reason (open_failed, read_error, closed, silent, session).",
            &["source", "reason"],
        );
        let device_frames = counter(
            &registry,
            "vigil_device_frames_total",
            "Device protocol frames, by source and result (ok, checksum, resync, decode_error).",
            &["source", "result"],
        );
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["source"])
                .unwrap_or_else(|e| unreachable!("static gauge definition {name}: {e}"));
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let mqtt_connected = gauge(
            "vigil_mqtt_connected",
            "1 while the MQTT source is connected to its broker, by source.",
        );
        let mqtt_subscribed = gauge(
            "vigil_mqtt_subscribed",
            "Subscriptions the broker granted at QoS 1 on the current connection, by source.",
        );
        let mqtt_connects = counter(
            &registry,
            "vigil_mqtt_connects_total",
            "MQTT connections made, by source and session (new, resumed).",
            &["source", "session"],
        );
        let mqtt_connection_errors = counter(
            &registry,
            "vigil_mqtt_connection_errors_total",
            "MQTT connection failures and losses, by source and kind (io, timeout, tls, refused, protocol, too_large).",
            &["source", "kind"],
        );
        let mqtt_acks = counter(
            &registry,
            "vigil_mqtt_acks_total",
            "PUBACKs sent, by source and outcome (accepted: on the bus; rejected: dead-lettered).",
            &["source", "outcome"],
        );
        let mqtt_unacked = counter(
            &registry,
            "vigil_mqtt_unacked_total",
            "Messages left unacknowledged for the broker to deliver again, by source and reason (connection_lost, shutdown, bus_closed).",
            &["source", "reason"],
        );
        let mqtt_redelivered = counter(
            &registry,
            "vigil_mqtt_redelivered_total",
            "Messages the broker marked as redelivered (DUP), by source.",
            &["source"],
        );
        let mqtt_readings_skipped = counter(
            &registry,
            "vigil_mqtt_readings_skipped_total",
            "Readings in MQTT payloads not emitted, by source and reason (unavailable, not_a_reading).",
            &["source", "reason"],
        );
        let kafka_restores = counter(
            &registry,
            "vigil_kafka_restores_total",
            "Partitions whose history was read to rebuild state on assignment, by topic and outcome (complete; truncated: retention had removed the oldest records; timed_out).",
            &["topic", "outcome"],
        );
        let reading_latency = HistogramVec::new(
            HistogramOpts::new(
                "vigil_reading_latency_seconds",
                "Wall time from a reading's arrival at a source to its score set being published by the scorer (path=score) or applied by the alerter (path=alerter); live sources only.",
            )
            .buckets(vec![
                5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["path"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let _ = registry.register(Box::new(reading_latency.clone()));
        Metrics {
            kafka_restores,
            reading_latency,
            registry,
            device_connected,
            device_reconnects,
            device_frames,
            mqtt_connected,
            mqtt_subscribed,
            mqtt_connects,
            mqtt_connection_errors,
            mqtt_acks,
            mqtt_unacked,
            mqtt_redelivered,
            mqtt_readings_skipped,
            mllp_connections,
            mllp_acks,
            mllp_refused,
            messages_received,
            messages_rejected,
            observations,
            observations_flagged,
            observations_unassociated,
            census_events,
            scores_computed,
            alerts,
            stage_latency,
            bus_depth,
            patients,
            ready,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Registers a collector owned elsewhere (a component with metrics of its own, created
    /// only when that component runs), so it is rendered with the rest.
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        // Fails only for a name registered twice (a second instance of the component): the
        // first one's series are kept.
        let _ = self.registry.register(c);
    }

    /// Records how long ago (wall clock) the newest reading behind a score set arrived. A
    /// replayed reading's time is virtual, not an arrival: anything not within the last five
    /// minutes is left out.
    pub fn reading_latency(&self, path: &str, arrived: crate::model::Timestamp) {
        let lag_ms = crate::model::Timestamp::now_wall()
            .millis()
            .saturating_sub(arrived.millis());
        if (0..=300_000).contains(&lag_ms) {
            self.reading_latency
                .with_label_values(&[path])
                .observe(lag_ms as f64 / 1000.0);
        }
    }

    pub fn stage_time(&self, stage: &str, d: Duration) {
        self.stage_latency
            .with_label_values(&[stage])
            .observe(d.as_secs_f64());
    }

    /// A message could not be decoded or normalized. Logged without its content.
    pub fn message_rejected(&self, source: &str, reason_kind: &str, detail: &str) {
        self.messages_rejected
            .with_label_values(&[source, reason_kind])
            .inc();
        tracing::warn!(source, reason = reason_kind, detail, "message rejected");
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Sets up `tracing` output: `RUST_LOG` wins over `default_level`.
pub fn init_logging(default_level: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
