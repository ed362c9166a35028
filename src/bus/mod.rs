//! The bus seam between stages.
//!
//! A topic is a [`Publisher`]/[`Subscriber`] pair. The embedded default is an in-process,
//! bounded, ordered channel per topic; a Kafka implementation fills the same seam for
//! deployments across machines. Every topic names what happens when it is full
//! ([`WhenFull`]): ingest and alerts block (back-pressure reaches the sender, whose ACK then
//! waits), nothing is ever dropped silently.

pub mod kafka;
pub mod spooled;

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use kafka::Delivery;
use kafka::{KafkaConfig, KafkaIn, KafkaOut, TopicKind};

use crate::telemetry::Metrics;

/// The records one message produced, published together so the scorer sees a message whole
/// (one evaluation per patient per message, in a deterministic order).
pub type IngestBatch = Vec<crate::model::IngestRecord>;

/// Topic names, as in the Kafka deployment.
pub const TOPIC_OBSERVATIONS: &str = "vigil.observations.v1";
pub const TOPIC_SCORES: &str = "vigil.scores.v1";
pub const TOPIC_ALERTS: &str = "vigil.alerts.v1";

/// What a full topic does to its publisher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room (back-pressure). The default, and the only policy for ingest and alerts.
    Block,
    /// Drop the newest record and count it (for best-effort telemetry topics only).
    DropNewest,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("topic {0} is closed: its consumer has stopped")]
    Closed(&'static str),
    #[error("topic {0} is full and drops new records")]
    Dropped(&'static str),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("cannot encode the record: {0}")]
    Encode(String),
    #[error("spool: {0}")]
    Spool(String),
}

enum PublisherInner<T> {
    Memory(mpsc::Sender<T>),
    Kafka(KafkaOut<T>),
    Spool(spooled::SpoolOut<T>),
}

/// The sending end of a topic.
pub struct Publisher<T> {
    topic: &'static str,
    when_full: WhenFull,
    inner: PublisherInner<T>,
    metrics: Arc<Metrics>,
}

impl<T> Clone for Publisher<T> {
    fn clone(&self) -> Self {
        Publisher {
            topic: self.topic,
            when_full: self.when_full,
            inner: match &self.inner {
                PublisherInner::Memory(tx) => PublisherInner::Memory(tx.clone()),
                PublisherInner::Kafka(k) => PublisherInner::Kafka(k.clone()),
                PublisherInner::Spool(k) => PublisherInner::Spool(k.clone()),
            },
            metrics: self.metrics.clone(),
        }
    }
}

impl<T: Send> Publisher<T> {
    /// Publishes one record under `key` (the partition key: patient, else bed). Returns once
    /// the bus has accepted it.
    pub async fn publish(&self, key: &str, rec: T) -> Result<(), BusError> {
        match &self.inner {
            PublisherInner::Kafka(k) => {
                let started = std::time::Instant::now();
                let r = k.send(key, &rec).await;
                self.metrics.stage_time("kafka_produce", started.elapsed());
                if let Err(e) = &r {
                    tracing::error!(topic = k.topic(), error = %e, "publish failed");
                }
                r
            }
            PublisherInner::Spool(sp) => {
                let started = std::time::Instant::now();
                let r = sp.send(key, &rec).await;
                self.metrics.stage_time("spool_append", started.elapsed());
                if let Err(e) = &r {
                    tracing::error!(topic = sp.topic(), error = %e, "spool append failed");
                }
                r
            }
            PublisherInner::Memory(tx) => {
                let r = match self.when_full {
                    WhenFull::Block => tx.send(rec).await.map_err(|_| BusError::Closed(self.topic)),
                    WhenFull::DropNewest => tx.try_send(rec).map_err(|e| match e {
                        mpsc::error::TrySendError::Full(_) => BusError::Dropped(self.topic),
                        mpsc::error::TrySendError::Closed(_) => BusError::Closed(self.topic),
                    }),
                };
                self.metrics
                    .bus_depth
                    .with_label_values(&[self.topic])
                    .set((tx.max_capacity() - tx.capacity()) as i64);
                r
            }
        }
    }

    pub fn topic(&self) -> &'static str {
        self.topic
    }
}

enum SubscriberInner<T> {
    Memory(mpsc::Receiver<T>),
    Kafka(Box<KafkaIn<T>>),
}

/// The receiving end of a topic. Ends (`None`) once every publisher is gone and it is drained.
pub struct Subscriber<T> {
    topic: &'static str,
    inner: SubscriberInner<T>,
    metrics: Arc<Metrics>,
}

impl<T: Send> Subscriber<T> {
    /// The next record. On Kafka, asking for the next record marks the previous one processed
    /// (its offset is stored and committed); `None` once stopped.
    pub async fn next(&mut self) -> Option<T> {
        match &mut self.inner {
            SubscriberInner::Kafka(k) => k.next(&self.metrics).await,
            SubscriberInner::Memory(rx) => {
                let r = rx.recv().await;
                self.metrics
                    .bus_depth
                    .with_label_values(&[self.topic])
                    .set(rx.len() as i64);
                r
            }
        }
    }
}

impl<T: Send> Subscriber<T> {
    /// Like [`Self::next`], but says which records rebuild state (a Kafka partition newly
    /// given to this consumer is read from its oldest record first) and which partitions were
    /// taken away. The in-process bus only ever delivers live records.
    pub async fn next_delivery(&mut self) -> Option<Delivery<T>> {
        match &mut self.inner {
            SubscriberInner::Kafka(k) => k.next_delivery(&self.metrics).await,
            SubscriberInner::Memory(_) => self.next().await.map(|t| Delivery::Live(t, None)),
        }
    }
}

/// The in-process bus: the embedded default.
#[derive(Clone)]
pub struct MemoryBus {
    metrics: Arc<Metrics>,
}

impl MemoryBus {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        MemoryBus { metrics }
    }

    /// A bounded, ordered topic with a single consumer.
    pub fn topic<T: Send>(
        &self,
        topic: &'static str,
        capacity: usize,
        when_full: WhenFull,
    ) -> (Publisher<T>, Subscriber<T>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Publisher {
                topic,
                when_full,
                inner: PublisherInner::Memory(tx),
                metrics: self.metrics.clone(),
            },
            Subscriber {
                topic,
                inner: SubscriberInner::Memory(rx),
                metrics: self.metrics.clone(),
            },
        )
    }
}

/// Topics on Kafka: one idempotent producer shared by every publisher of the process, one
/// consumer (in its group) per subscriber.
#[derive(Clone)]
pub struct KafkaBus {
    cfg: KafkaConfig,
    producer: rdkafka::producer::FutureProducer,
    metrics: Arc<Metrics>,
}

impl KafkaBus {
    /// Connects (lazily: librdkafka retries in the background) and creates missing topics.
    pub async fn connect(cfg: &KafkaConfig, metrics: Arc<Metrics>) -> Result<Self, BusError> {
        cfg.ensure_topics().await?;
        Ok(KafkaBus {
            producer: cfg.producer()?,
            cfg: cfg.clone(),
            metrics,
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.cfg
    }

    pub fn publisher<T: Serialize>(&self, topic: &'static str, kind: TopicKind) -> Publisher<T> {
        Publisher {
            topic,
            when_full: WhenFull::Block,
            inner: PublisherInner::Kafka(KafkaOut::new(
                self.producer.clone(),
                &self.cfg,
                self.cfg.topic(kind),
                kind,
            )),
            metrics: self.metrics.clone(),
        }
    }

    /// A publisher that appends to `spool` (durably, before it returns) and the forwarder
    /// that drains the spool to the topic: a gateway's store-and-forward.
    pub fn spooled_publisher<T: Serialize>(
        &self,
        topic: &'static str,
        kind: TopicKind,
        spool: Arc<crate::spool::Spool>,
    ) -> (Publisher<T>, spooled::Forwarder<T>) {
        let out = KafkaOut::new(self.producer.clone(), &self.cfg, self.cfg.topic(kind), kind);
        let publisher = Publisher {
            topic,
            when_full: WhenFull::Block,
            inner: PublisherInner::Spool(spooled::SpoolOut {
                spool: spool.clone(),
                kafka: out.clone(),
            }),
            metrics: self.metrics.clone(),
        };
        let forwarder = spooled::Forwarder {
            spool,
            out,
            metrics: spooled::SpoolMetrics::new(&self.metrics),
        };
        (publisher, forwarder)
    }

    /// A subscriber in consumer group `group`; it ends when `stop` fires.
    pub fn subscriber<T: DeserializeOwned>(
        &self,
        topic: &'static str,
        kind: TopicKind,
        group: &str,
        stop: CancellationToken,
    ) -> Result<Subscriber<T>, BusError> {
        let name = self.cfg.topic(kind);
        let consumer = self.cfg.consumer(group, name)?;
        Ok(Subscriber {
            topic,
            inner: SubscriberInner::Kafka(Box::new(KafkaIn::new(
                consumer, name, stop, &self.cfg, true,
            ))),
            metrics: self.metrics.clone(),
        })
    }

    /// Waits until every record produced so far is acknowledged (at shutdown).
    pub fn flush(&self, timeout: std::time::Duration) -> Result<(), BusError> {
        use rdkafka::producer::Producer;
        self.producer
            .flush(timeout)
            .map_err(|e| BusError::Kafka(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn block_policy_applies_back_pressure_and_keeps_order() {
        let bus = MemoryBus::new(Arc::new(Metrics::new()));
        let (tx, mut rx) = bus.topic::<u32>("t", 2, WhenFull::Block);
        tx.publish("k", 1).await.unwrap();
        tx.publish("k", 2).await.unwrap();
        // Full: a third publish waits until the consumer takes one.
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(50), tx.publish("k", 3)).await;
        assert!(
            pending.is_err(),
            "publish into a full Block topic must wait"
        );
        assert_eq!(rx.next().await, Some(1));
        tx.publish("k", 3).await.unwrap();
        drop(tx);
        assert_eq!(rx.next().await, Some(2));
        assert_eq!(rx.next().await, Some(3));
        assert_eq!(rx.next().await, None);
    }

    #[tokio::test]
    async fn drop_newest_reports_the_drop() {
        let bus = MemoryBus::new(Arc::new(Metrics::new()));
        let (tx, _rx) = bus.topic::<u32>("t", 1, WhenFull::DropNewest);
        tx.publish("k", 1).await.unwrap();
        assert!(matches!(
            tx.publish("k", 2).await,
            Err(BusError::Dropped("t"))
        ));
    }
}
