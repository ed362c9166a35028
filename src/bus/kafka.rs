//! The Kafka transport: the same topics as the in-process bus, across machines.
//!
//! - **Producer**: idempotent, `acks=all`, retrying without end while the broker is away (a
//!   publish returns only once the broker has the record, so a source's acknowledgement to its
//!   sender still means "stored"). Records are keyed by patient, else `bed:<unit>/<bed>`, so one
//!   patient's records stay in order on one partition.
//! - **Records**: JSON, the schema version in every record, one Kafka record per bus record (an
//!   observations record is the batch one message produced). Headers: `vigil-schema`,
//!   `vigil-kind`, `content-type`.
//! - **Consumer**: a consumer group; a record's offset is stored only when the consumer comes
//!   back for the next one (the previous record was processed and what it produced was
//!   accepted downstream), and stored offsets are committed every second and at shutdown: at
//!   least once. Duplicates are harmless downstream (observation ids, deterministic alert ids).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{BusError, TOPIC_ALERTS, TOPIC_OBSERVATIONS, TOPIC_SCORES};
use crate::telemetry::Metrics;

/// The record schema version carried in every record and in the `vigil-schema` header.
pub const SCHEMA_VERSION: &str = "1";

/// `[kafka]`: brokers, security and topic names.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`. The environment variable `VIGIL_KAFKA_BROKERS` overrides it.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default = "default_observations")]
    pub observations_topic: String,
    #[serde(default = "default_scores")]
    pub scores_topic: String,
    #[serde(default = "default_alerts")]
    pub alerts_topic: String,
    /// Consumer group of the scorers (they share the observations topic's partitions).
    #[serde(default = "default_scorer_group")]
    pub scorer_group: String,
    #[serde(default = "default_alerter_group")]
    pub alerter_group: String,
    /// Create missing topics at start with this many partitions (the most scorers that can
    /// share the work) and this replication factor.
    #[serde(default = "default_true")]
    pub create_topics: bool,
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default = "default_replication")]
    pub replication: i32,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[serde(default = "default_security")]
    pub security_protocol: String,
    /// PEM CA bundle for the brokers' certificates (relative to the config file).
    #[serde(default)]
    pub ssl_ca: Option<PathBuf>,
    /// Client certificate and key (PEM), when the brokers require them.
    #[serde(default)]
    pub ssl_cert: Option<PathBuf>,
    #[serde(default)]
    pub ssl_key: Option<PathBuf>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// The name of the environment variable holding the SASL password.
    #[serde(default)]
    pub sasl_password_env: Option<String>,
    /// Further librdkafka settings, passed as given (e.g. `"linger.ms" = "5"`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_brokers() -> String {
    "127.0.0.1:9092".into()
}
fn default_client_id() -> String {
    "vigil".into()
}
fn default_observations() -> String {
    TOPIC_OBSERVATIONS.into()
}
fn default_scores() -> String {
    TOPIC_SCORES.into()
}
fn default_alerts() -> String {
    TOPIC_ALERTS.into()
}
fn default_scorer_group() -> String {
    "vigil-scorer".into()
}
fn default_alerter_group() -> String {
    "vigil-alerter".into()
}
fn default_true() -> bool {
    true
}
fn default_partitions() -> i32 {
    8
}
fn default_replication() -> i32 {
    1
}
fn default_security() -> String {
    "plaintext".into()
}

impl Default for KafkaConfig {
    fn default() -> Self {
        // Every field has a serde default.
        toml::from_str("").unwrap_or_else(|e| unreachable!("empty [kafka] parses: {e}"))
    }
}

/// Which kind of record a topic carries (the `vigil-kind` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicKind {
    Observations,
    Scores,
    Alerts,
}

impl TopicKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::Observations => "observations",
            TopicKind::Scores => "scores",
            TopicKind::Alerts => "alerts",
        }
    }
}

impl KafkaConfig {
    /// Applies `VIGIL_KAFKA_BROKERS` and makes paths absolute against `base`.
    pub fn resolve(&mut self, base: &Path) {
        if let Ok(b) = std::env::var("VIGIL_KAFKA_BROKERS") {
            if !b.trim().is_empty() {
                self.brokers = b.trim().to_string();
            }
        }
        for p in [&mut self.ssl_ca, &mut self.ssl_cert, &mut self.ssl_key]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Every problem, for `vigil validate`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.brokers.split(',').any(|b| {
            let b = b.trim();
            b.is_empty() || !b.contains(':')
        }) {
            out.push(format!(
                "brokers {:?}: expected host:port[,host:port…]",
                self.brokers
            ));
        }
        if !matches!(
            self.security_protocol.as_str(),
            "plaintext" | "ssl" | "sasl_plaintext" | "sasl_ssl"
        ) {
            out.push(format!(
                "security_protocol {:?} is not plaintext, ssl, sasl_plaintext or sasl_ssl",
                self.security_protocol
            ));
        }
        if self.security_protocol.starts_with("sasl") {
            match self.sasl_mechanism.as_deref() {
                Some("PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") => {}
                other => out.push(format!(
                    "sasl_mechanism {other:?}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                )),
            }
            if self.sasl_username.is_none() {
                out.push("sasl_username is required with SASL".into());
            }
            match &self.sasl_password_env {
                None => out.push("sasl_password_env is required with SASL".into()),
                Some(v) if std::env::var_os(v).is_none() => out.push(format!(
                    "sasl_password_env: the environment variable {v} is not set"
                )),
                Some(_) => {}
            }
        }
        for (what, p) in [
            ("ssl_ca", &self.ssl_ca),
            ("ssl_cert", &self.ssl_cert),
            ("ssl_key", &self.ssl_key),
        ] {
            if let Some(p) = p {
                if !p.is_file() {
                    out.push(format!("{what}: {} is not a file", p.display()));
                }
            }
        }
        if self.ssl_cert.is_some() != self.ssl_key.is_some() {
            out.push("ssl_cert and ssl_key go together".into());
        }
        if self.partitions < 1 {
            out.push("partitions must be at least 1".into());
        }
        if self.replication < 1 {
            out.push("replication must be at least 1".into());
        }
        for (name, t) in [
            ("observations_topic", &self.observations_topic),
            ("scores_topic", &self.scores_topic),
            ("alerts_topic", &self.alerts_topic),
        ] {
            let ok = !t.is_empty()
                && t.len() <= 249
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                out.push(format!("{name} {t:?} is not a valid Kafka topic name"));
            }
        }
        out
    }

    pub fn topic(&self, kind: TopicKind) -> &str {
        match kind {
            TopicKind::Observations => &self.observations_topic,
            TopicKind::Scores => &self.scores_topic,
            TopicKind::Alerts => &self.alerts_topic,
        }
    }

    /// The settings every client shares: brokers, identity, security, extra properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("security.protocol", &self.security_protocol);
        if let Some(ca) = &self.ssl_ca {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        if let (Some(cert), Some(key)) = (&self.ssl_cert, &self.ssl_key) {
            c.set("ssl.certificate.location", cert.display().to_string())
                .set("ssl.key.location", key.display().to_string());
        }
        if let Some(m) = &self.sasl_mechanism {
            c.set("sasl.mechanism", m);
        }
        if let Some(u) = &self.sasl_username {
            c.set("sasl.username", u);
        }
        if let Some(v) = &self.sasl_password_env {
            if let Ok(p) = std::env::var(v) {
                c.set("sasl.password", p);
            }
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// An idempotent producer that waits for every in-sync replica and retries without end.
    pub fn producer(&self) -> Result<FutureProducer, BusError> {
        let mut c = self.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            // 0 = no limit: while the broker is away, publishes wait instead of failing.
            .set("message.timeout.ms", "0")
            // A source publishes one record at a time and waits for it: lingering only adds
            // latency. Concurrent publishers still batch while a request is in flight.
            .set("linger.ms", "0")
            // JSON records shrink 5-10x: the broker keeps that much more history for a
            // partition's new owner to rebuild state from, in the same retention bytes.
            .set("compression.type", "lz4");
        // The site's own settings win over these defaults.
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c.create().map_err(|e| BusError::Kafka(e.to_string()))
    }

    /// A consumer in `group`, subscribed to `topic`, starting at the earliest record when the
    /// group has no committed offset.
    pub fn consumer(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<StreamConsumer<TrackingContext>, BusError> {
        let mut c = self.client_config();
        c.set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // How long a fetch may wait at the broker for new records. librdkafka's 500 ms is
            // the latency floor of each hop on a broker that holds the fetch for the whole
            // wait (tansu does); 100 ms cut the reading-to-alerter p50 from 746 to 370 ms at
            // 200 msgs/s and kept up at 1,000 msgs/s (docs/performance.md).
            .set("fetch.wait.max.ms", "100");
        // The site's own settings win over these defaults.
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        let consumer: StreamConsumer<TrackingContext> = c
            .create_with_context(TrackingContext::default())
            .map_err(|e| BusError::Kafka(e.to_string()))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| BusError::Kafka(e.to_string()))?;
        Ok(consumer)
    }

    /// Creates the topics that do not exist yet (when `create_topics` is on).
    pub async fn ensure_topics(&self) -> Result<(), BusError> {
        if !self.create_topics {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .map_err(|e| BusError::Kafka(e.to_string()))?;
        let topics: Vec<NewTopic<'_>> = [
            &self.observations_topic,
            &self.scores_topic,
            &self.alerts_topic,
        ]
        .into_iter()
        .map(|t| {
            NewTopic::new(
                t,
                self.partitions,
                TopicReplication::Fixed(self.replication),
            )
        })
        .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(topics.iter(), &opts)
            .await
            .map_err(|e| BusError::Kafka(format!("creating topics: {e}")))?;
        for r in results {
            match r {
                Ok(t) => tracing::info!(topic = %t, partitions = self.partitions, "topic created"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => {
                    return Err(BusError::Kafka(format!("creating topic {t}: {e}")));
                }
            }
        }
        Ok(())
    }
}

/// A partition assignment change, as the consumer context saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rebalanced {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// Records assignment changes for the consumer loop (the callbacks run inside librdkafka's
/// poll and must return quickly).
#[derive(Clone, Default)]
pub struct TrackingContext {
    events: Arc<std::sync::Mutex<Vec<Rebalanced>>>,
}

impl TrackingContext {
    fn take(&self) -> Vec<Rebalanced> {
        match self.events.lock() {
            Ok(mut e) => std::mem::take(&mut *e),
            Err(_) => Vec::new(),
        }
    }
    fn push(&self, r: Rebalanced) {
        if let Ok(mut e) = self.events.lock() {
            e.push(r);
        }
    }
}

fn partitions(tpl: &rdkafka::TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl rdkafka::ClientContext for TrackingContext {}

impl rdkafka::consumer::ConsumerContext for TrackingContext {
    fn pre_rebalance(
        &self,
        _: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Revoke(tpl) = rebalance {
            self.push(Rebalanced::Revoked(partitions(tpl)));
        }
    }
    fn post_rebalance(
        &self,
        _: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Assign(tpl) = rebalance {
            self.push(Rebalanced::Assigned(partitions(tpl)));
        }
    }
}

/// What a Kafka subscriber hands out.
#[derive(Debug, PartialEq)]
pub enum Delivery<T> {
    /// A record to process (and the partition it came from, on Kafka).
    Live(T, Option<i32>),
    /// A record read again to rebuild state for a partition this consumer was just given:
    /// process it as before but publish and deliver nothing.
    Restore(T, i32),
    /// This consumer no longer owns the partition: drop the state it built from it.
    Revoked { partition: i32 },
}

/// What a publisher needs to send one record kind to Kafka.
pub(super) struct KafkaOut<T> {
    /// Replaced when librdkafka declares it fatally failed (an idempotent producer that lost
    /// its sequence with the broker): a new producer takes over and the record is sent again.
    producer: Arc<std::sync::Mutex<FutureProducer>>,
    cfg: Arc<KafkaConfig>,
    topic: Arc<str>,
    kind: TopicKind,
    encode: fn(&T) -> Result<Vec<u8>, String>,
}

impl<T> Clone for KafkaOut<T> {
    fn clone(&self) -> Self {
        KafkaOut {
            producer: Arc::clone(&self.producer),
            cfg: Arc::clone(&self.cfg),
            topic: Arc::clone(&self.topic),
            kind: self.kind,
            encode: self.encode,
        }
    }
}

fn encode_json<T: Serialize>(t: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(t).map_err(|e| e.to_string())
}

impl<T: Serialize> KafkaOut<T> {
    pub(super) fn new(
        producer: FutureProducer,
        cfg: &KafkaConfig,
        topic: &str,
        kind: TopicKind,
    ) -> Self {
        KafkaOut {
            producer: Arc::new(std::sync::Mutex::new(producer)),
            cfg: Arc::new(cfg.clone()),
            topic: Arc::from(topic),
            kind,
            encode: encode_json::<T>,
        }
    }
}

impl<T> KafkaOut<T> {
    pub(super) fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends one record and waits for the broker's acknowledgement.
    pub(super) async fn send(&self, key: &str, rec: &T) -> Result<(), BusError> {
        let payload = (self.encode)(rec).map_err(BusError::Encode)?;
        self.send_bytes(key.as_bytes(), &payload).await
    }

    /// The record as it goes on the wire (what a spool keeps until the broker has it).
    pub(super) fn encode(&self, rec: &T) -> Result<Vec<u8>, BusError> {
        (self.encode)(rec).map_err(BusError::Encode)
    }

    /// Sends an encoded record and waits for the broker's acknowledgement, retrying (with a
    /// new producer after a fatal error) until it is acknowledged.
    pub(super) async fn send_bytes(&self, key: &[u8], payload: &[u8]) -> Result<(), BusError> {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "vigil-schema",
                value: Some(SCHEMA_VERSION),
            })
            .insert(Header {
                key: "vigil-kind",
                value: Some(self.kind.as_str()),
            })
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            });
        let mut backoff = Duration::from_millis(100);
        loop {
            let producer = match self.producer.lock() {
                Ok(p) => p.clone(),
                Err(_) => return Err(BusError::Kafka("producer lock poisoned".into())),
            };
            let record = FutureRecord::to(&self.topic)
                .key(key)
                .payload(payload)
                .headers(headers.clone());
            match producer.send(record, Timeout::Never).await {
                Ok(_) => return Ok(()),
                Err((e, _)) => {
                    // The record is not acknowledged: the caller's sender is not acknowledged
                    // either. Try again (with a new producer if this one is finished) rather
                    // than fail a source over a broker hiccup.
                    use rdkafka::producer::Producer;
                    let fatal = producer.client().fatal_error();
                    tracing::warn!(topic = %self.topic, error = %e, fatal = ?fatal,
                        retry_ms = backoff.as_millis() as u64, "produce failed; retrying");
                    if fatal.is_some() {
                        if let (Ok(fresh), Ok(mut slot)) =
                            (self.cfg.producer(), self.producer.lock())
                        {
                            *slot = fresh;
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// The receiving end of a Kafka topic.
pub(super) struct KafkaIn<T> {
    consumer: Arc<StreamConsumer<TrackingContext>>,
    /// Rebuild state from a partition's history before its first live record.
    restore: bool,
    /// Partitions assigned and not yet restored.
    unrestored: std::collections::HashSet<i32>,
    /// Decoded history to hand out before the live record that triggered it.
    /// With the position to mark processed once the caller has it (live records only).
    #[allow(clippy::type_complexity)]
    queue: std::collections::VecDeque<(Delivery<T>, Option<(String, i32, i64)>)>,
    cfg: KafkaConfig,
    decode: fn(&[u8]) -> Result<T, String>,
    /// The record handed out last: its offset is stored when the next one is asked for.
    pending: Option<(String, i32, i64)>,
    stop: CancellationToken,
    topic: String,
}

fn decode_json<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    serde_json::from_slice(b).map_err(|e| e.to_string())
}

impl<T: DeserializeOwned> KafkaIn<T> {
    pub(super) fn new(
        consumer: StreamConsumer<TrackingContext>,
        topic: &str,
        stop: CancellationToken,
        cfg: &KafkaConfig,
        restore: bool,
    ) -> Self {
        KafkaIn {
            consumer: Arc::new(consumer),
            restore,
            unrestored: std::collections::HashSet::new(),
            queue: std::collections::VecDeque::new(),
            cfg: cfg.clone(),
            decode: decode_json::<T>,
            pending: None,
            stop,
            topic: topic.to_string(),
        }
    }
}

impl<T> KafkaIn<T> {
    /// Applies assignment changes the consumer context recorded: revocations are queued for
    /// the caller, new partitions wait for their history to be read.
    fn drain_rebalances(&mut self) {
        for ev in self.consumer.context().take() {
            match ev {
                Rebalanced::Assigned(ps) => {
                    for (_, p) in ps {
                        if self.restore {
                            self.unrestored.insert(p);
                        }
                    }
                }
                Rebalanced::Revoked(ps) => {
                    for (_, p) in ps {
                        self.unrestored.remove(&p);
                        self.queue
                            .push_back((Delivery::Revoked { partition: p }, None));
                    }
                }
            }
        }
    }

    fn pop_queued(&mut self) -> Option<Delivery<T>> {
        let (d, at) = self.queue.pop_front()?;
        if at.is_some() {
            self.pending = at;
        }
        Some(d)
    }

    fn store_pending(&mut self) {
        if let Some((topic, partition, offset)) = self.pending.take() {
            if let Err(e) = self.consumer.store_offset(&topic, partition, offset + 1) {
                // A partition revoked meanwhile: its new owner starts from the last commit.
                tracing::debug!(topic, partition, offset, error = %e, "offset not stored");
            }
        }
    }

    /// The next record; `None` once stopped (stored offsets are committed first).
    pub(super) async fn next(&mut self, metrics: &Metrics) -> Option<T> {
        loop {
            match self.next_delivery(metrics).await? {
                Delivery::Live(t, _) | Delivery::Restore(t, _) => return Some(t),
                Delivery::Revoked { .. } => continue,
            }
        }
    }

    /// Reads `partition` from its oldest retained record up to `until` (exclusive) with a
    /// consumer outside the group, decoding what it can.
    async fn history(&self, partition: i32, until: i64, metrics: &Metrics) -> Vec<T> {
        let mut out = Vec::new();
        let group = format!("{}-restore", self.cfg.client_id);
        let mut c = self.cfg.client_config();
        c.set("group.id", &group)
            .set("enable.auto.commit", "false")
            // No end-of-partition events: one came before the first fetch had returned
            // anything (a partition of hundreds of records restored as empty). The records
            // below `until` exist, so the reader stops on reaching it.
            .set("enable.partition.eof", "false");
        let consumer: StreamConsumer = match c.create() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "restore consumer");
                return out;
            }
        };
        let mut tpl = rdkafka::TopicPartitionList::new();
        if let Err(e) = tpl.add_partition_offset(&self.topic, partition, rdkafka::Offset::Beginning)
        {
            tracing::error!(error = %e, "restore assignment");
            return out;
        }
        if let Err(e) = consumer.assign(&tpl) {
            tracing::error!(error = %e, "restore assignment");
            return out;
        }
        let mut first = true;
        let mut outcome = "complete";
        loop {
            let msg = tokio::select! {
                _ = self.stop.cancelled() => return out,
                m = tokio::time::timeout(Duration::from_secs(30), consumer.recv()) => m,
            };
            let msg = match msg {
                Err(_) => {
                    tracing::error!(partition, until, "restore read timed out; state is partial");
                    metrics
                        .kafka_restores
                        .with_label_values(&[&self.topic, "timed_out"])
                        .inc();
                    return out;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "restore read");
                    continue;
                }
                Ok(Ok(m)) => m,
            };
            if first && msg.offset() > 0 {
                // Retention removed the oldest records: the state rebuilt lacks them.
                tracing::warn!(partition, first = msg.offset(), until,
                    "partition history begins after offset 0: records before it are gone (retention); state rebuilt from what is left");
                outcome = "truncated";
            }
            first = false;
            if msg.offset() >= until {
                tracing::debug!(
                    partition,
                    offset = msg.offset(),
                    until,
                    "restore read past its end"
                );
                metrics
                    .kafka_restores
                    .with_label_values(&[&self.topic, outcome])
                    .inc();
                return out;
            }
            match msg.payload().map(|p| (self.decode)(p)) {
                Some(Ok(v)) => out.push(v),
                _ => {
                    metrics
                        .messages_rejected
                        .with_label_values(&[&self.topic, "kafka_record"])
                        .inc();
                }
            }
            if msg.offset() + 1 >= until {
                metrics
                    .kafka_restores
                    .with_label_values(&[&self.topic, outcome])
                    .inc();
                return out;
            }
        }
    }

    /// The next delivery: live records, history of newly assigned partitions before their
    /// first live record, and revocations.
    pub(super) async fn next_delivery(&mut self, metrics: &Metrics) -> Option<Delivery<T>> {
        self.store_pending();
        loop {
            if let Some(d) = self.pop_queued() {
                return Some(d);
            }
            self.drain_rebalances();
            if let Some(d) = self.pop_queued() {
                return Some(d);
            }
            let msg = tokio::select! {
                _ = self.stop.cancelled() => {
                    if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
                        tracing::debug!(error = %e, "final commit");
                    }
                    return None;
                }
                m = self.consumer.recv() => m,
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let at = (msg.topic().to_string(), msg.partition(), msg.offset());
            let schema_ok = msg
                .headers()
                .map(|h| {
                    h.iter().all(|h| {
                        h.key != "vigil-schema" || h.value == Some(SCHEMA_VERSION.as_bytes())
                    })
                })
                .unwrap_or(true);
            let decoded = match (schema_ok, msg.payload()) {
                (false, _) => Err("unsupported vigil-schema header".to_string()),
                (true, None) => Err("empty record".to_string()),
                (true, Some(p)) => (self.decode)(p),
            };
            match decoded {
                Ok(v) => {
                    let (partition, offset) = (at.1, at.2);
                    // A rebalance may have run inside this receive: its revocations go first
                    // and a partition it assigned is rebuilt before this record.
                    self.drain_rebalances();
                    if self.unrestored.remove(&partition) && offset > 0 {
                        let history = self.history(partition, offset, metrics).await;
                        tracing::info!(
                            partition,
                            records = history.len(),
                            until = offset,
                            "partition assigned: state rebuilt from its history"
                        );
                        self.queue.extend(
                            history
                                .into_iter()
                                .map(|h| (Delivery::Restore(h, partition), None)),
                        );
                        self.queue
                            .push_back((Delivery::Live(v, Some(partition)), Some(at)));
                        continue;
                    }
                    if !self.queue.is_empty() {
                        self.queue
                            .push_back((Delivery::Live(v, Some(partition)), Some(at)));
                        continue;
                    }
                    self.pending = Some(at);
                    return Some(Delivery::Live(v, Some(partition)));
                }
                Err(e) => {
                    // Skipped, counted and logged (without its content); never retried forever.
                    metrics
                        .messages_rejected
                        .with_label_values(&[&self.topic, "kafka_record"])
                        .inc();
                    tracing::warn!(topic = %at.0, partition = at.1, offset = at.2, error = %e,
                        "undecodable record skipped");
                    self.pending = Some(at);
                    self.store_pending();
                }
            }
        }
    }
}
