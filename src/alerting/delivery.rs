//! Delivery of episode transitions to the systems a care team already runs: an alarm manager
//! (IHE PCD-04 `ORU^R40` over MLLP), a webhook (signed JSON), an MQTT broker (a topic per unit).
//!
//! Each sink runs in its own task behind a bounded queue. A delivery is retried with
//! exponential backoff until it succeeds; it is never dropped. After `degraded_after` failures in
//! a row the sink is marked degraded: an error in the log, `vigil_alert_sink_up{sink} 0`, and a
//! line in `/readyz`. The first success afterwards marks it up again (logged).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::lifecycle::AlertView;
use crate::model::Timestamp;
use crate::telemetry::Metrics;

/// Counters and gauges of every delivery sink.
#[derive(Clone)]
pub struct DeliveryMetrics {
    pub deliveries: IntCounterVec,
    pub up: IntGaugeVec,
    pub queued: IntGaugeVec,
}

impl DeliveryMetrics {
    /// Creates the collectors and registers them with `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        let deliveries = IntCounterVec::new(
            Opts::new(
                "vigil_alert_deliveries_total",
                "Alert delivery attempts by sink and outcome (ok, error).",
            ),
            &["sink", "outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let up = IntGaugeVec::new(
            Opts::new(
                "vigil_alert_sink_up",
                "1 while a delivery sink delivers; 0 once it is degraded (failures in a row).",
            ),
            &["sink"],
        )
        .unwrap_or_else(|_| unreachable_gauge());
        let queued = IntGaugeVec::new(
            Opts::new(
                "vigil_alert_sink_queued",
                "Alert transitions waiting for delivery, per sink.",
            ),
            &["sink"],
        )
        .unwrap_or_else(|_| unreachable_gauge());
        metrics.register(Box::new(deliveries.clone()));
        metrics.register(Box::new(up.clone()));
        metrics.register(Box::new(queued.clone()));
        DeliveryMetrics {
            deliveries,
            up,
            queued,
        }
    }
}

// The metric definitions above are constant and valid; these keep the constructors total.
fn unreachable_metric() -> IntCounterVec {
    IntCounterVec::new(Opts::new("vigil_invalid_metric", "-"), &["sink", "outcome"])
        .unwrap_or_else(|_| std::process::abort())
}
fn unreachable_gauge() -> IntGaugeVec {
    IntGaugeVec::new(Opts::new("vigil_invalid_gauge", "-"), &["sink"])
        .unwrap_or_else(|_| std::process::abort())
}

/// One sink's health, for `/readyz` and the API.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SinkStatus {
    pub up: bool,
    /// Wall-clock time of the last change between up and degraded.
    pub since: Timestamp,
    pub last_error: Option<String>,
    pub failures_in_a_row: u32,
    pub delivered: u64,
}

/// Every sink's health.
#[derive(Default)]
pub struct SinkHealth {
    sinks: Mutex<BTreeMap<String, SinkStatus>>,
}

impl SinkHealth {
    pub fn snapshot(&self) -> BTreeMap<String, SinkStatus> {
        self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Lines for `/readyz`: one per degraded sink.
    pub fn degraded_lines(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .filter(|(_, s)| !s.up)
            .map(|(name, s)| {
                format!(
                    "sink {name}: degraded since {} after {} failures in a row: {}",
                    s.since,
                    s.failures_in_a_row,
                    s.last_error.as_deref().unwrap_or("-")
                )
            })
            .collect()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut SinkStatus)) {
        let mut m = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        let s = m.entry(name.to_string()).or_insert_with(|| SinkStatus {
            up: true,
            since: Timestamp::now_wall(),
            last_error: None,
            failures_in_a_row: 0,
            delivered: 0,
        });
        f(s);
    }
}

/// Retry policy of a sink.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Failures in a row after which the sink counts as degraded.
    pub degraded_after: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            degraded_after: 3,
        }
    }
}

/// One way of delivering a transition; `Err` is retried.
pub trait Deliver: Send + 'static {
    fn deliver(&mut self, v: &AlertView) -> impl Future<Output = Result<(), String>> + Send;
}

/// A running sink: `send` queues, its task delivers.
pub struct DeliveryQueue {
    pub name: String,
    tx: mpsc::Sender<AlertView>,
    handle: JoinHandle<()>,
}

impl DeliveryQueue {
    /// Starts the sink's task.
    pub fn start<D: Deliver>(
        name: &str,
        mut sink: D,
        policy: RetryPolicy,
        queue: usize,
        metrics: DeliveryMetrics,
        health: Arc<SinkHealth>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<AlertView>(queue.max(1));
        let n = name.to_string();
        health.update(&n, |_| {});
        metrics.up.with_label_values(&[&n]).set(1);
        let handle = tokio::spawn(async move {
            let ok = metrics.deliveries.with_label_values(&[&n, "ok"]);
            let error = metrics.deliveries.with_label_values(&[&n, "error"]);
            let up = metrics.up.with_label_values(&[&n]);
            let queued = metrics.queued.with_label_values(&[&n]);
            let mut failures: u32 = 0;
            while let Some(v) = rx.recv().await {
                let mut backoff = policy.initial_backoff;
                loop {
                    match sink.deliver(&v).await {
                        Ok(()) => {
                            ok.inc();
                            queued.dec();
                            if failures >= policy.degraded_after.max(1) {
                                tracing::info!(sink = %n, after = failures, "alert sink recovered");
                            }
                            failures = 0;
                            up.set(1);
                            health.update(&n, |s| {
                                if !s.up {
                                    s.since = Timestamp::now_wall();
                                }
                                s.up = true;
                                s.failures_in_a_row = 0;
                                s.delivered += 1;
                            });
                            break;
                        }
                        Err(reason) => {
                            error.inc();
                            failures = failures.saturating_add(1);
                            let degraded = failures >= policy.degraded_after.max(1);
                            if failures == policy.degraded_after.max(1) {
                                tracing::error!(sink = %n, alert = %v.id, failures, %reason,
                                    "alert sink degraded; deliveries held and retried");
                            } else {
                                tracing::warn!(sink = %n, alert = %v.id, failures, %reason,
                                    "alert delivery failed; retrying");
                            }
                            if degraded {
                                up.set(0);
                            }
                            health.update(&n, |s| {
                                if degraded && s.up {
                                    s.up = false;
                                    s.since = Timestamp::now_wall();
                                }
                                s.failures_in_a_row = failures;
                                s.last_error = Some(reason);
                            });
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(policy.max_backoff);
                        }
                    }
                }
            }
        });
        DeliveryQueue {
            name: name.to_string(),
            tx,
            handle,
        }
    }

    /// Queues a transition; waits when the queue is full (nothing is dropped).
    pub async fn send(&self, v: AlertView, metrics: &DeliveryMetrics) {
        metrics.queued.with_label_values(&[&self.name]).inc();
        if self.tx.send(v).await.is_err() {
            metrics.queued.with_label_values(&[&self.name]).dec();
            tracing::error!(sink = %self.name, "alert sink task has stopped; transition not queued");
        }
    }

    /// Closes the queue and waits up to `deadline` for what is queued; what is left is
    /// abandoned with an error in the log.
    pub async fn close(self, deadline: Duration) {
        let DeliveryQueue { name, tx, handle } = self;
        drop(tx);
        let abort = handle.abort_handle();
        if tokio::time::timeout(deadline, handle).await.is_err() {
            abort.abort();
            tracing::error!(sink = %name, "alert deliveries still pending at shutdown were abandoned");
        }
    }
}

/// Hex HMAC-SHA256 of `body` with `secret`: the `X-Vigil-Signature: sha256=<hex>` value.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    tag.as_ref().iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// POSTs each transition as JSON, signed when a secret is set.
pub struct Webhook {
    pub url: String,
    pub client: reqwest::Client,
    pub secret: Option<Vec<u8>>,
}

impl Webhook {
    pub fn new(url: &str, timeout: Duration, secret: Option<Vec<u8>>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("webhook {url}: {e}"))?;
        Ok(Webhook {
            url: url.to_string(),
            client,
            secret,
        })
    }
}

impl Deliver for Webhook {
    async fn deliver(&mut self, v: &AlertView) -> Result<(), String> {
        let body = serde_json::to_vec(v).map_err(|e| e.to_string())?;
        let mut req = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", v.idempotency_key());
        if let Some(secret) = &self.secret {
            req = req.header(
                "x-vigil-signature",
                format!("sha256={}", signature(secret, &body)),
            );
        }
        match req.body(body).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Publishes each transition as JSON with QoS 1 to `<prefix>/<unit>/alerts` and waits for the
/// broker's PUBACK. After a failure the connection is made anew, so a retry is not queued
/// behind the copy that failed.
pub struct MqttPublisher {
    options: rumqttc::MqttOptions,
    conn: Option<(rumqttc::AsyncClient, rumqttc::EventLoop)>,
    prefix: String,
    timeout: Duration,
}

impl MqttPublisher {
    pub fn new(name: &str, host: &str, port: u16, prefix: &str, timeout: Duration) -> Self {
        let mut o = rumqttc::MqttOptions::new(format!("vigil-alerts-{name}"), host, port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(true);
        MqttPublisher {
            options: o,
            conn: None,
            prefix: prefix.trim_end_matches('/').to_string(),
            timeout,
        }
    }

    /// The topic of a unit (`-` when the alert has none; `/`, `+`, `#` replaced by `_`).
    pub fn topic(prefix: &str, unit: Option<&str>) -> String {
        let unit: String = unit
            .unwrap_or("-")
            .chars()
            .map(|c| if matches!(c, '/' | '+' | '#') { '_' } else { c })
            .collect();
        format!("{prefix}/{unit}/alerts")
    }

    async fn publish(&mut self, topic: String, body: Vec<u8>) -> Result<(), String> {
        let (client, eventloop) = self
            .conn
            .get_or_insert_with(|| rumqttc::AsyncClient::new(self.options.clone(), 16));
        client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, body)
            .await
            .map_err(|e| e.to_string())?;
        let wait = async {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(format!("no PUBACK within {:?}", self.timeout)),
        }
    }
}

impl Deliver for MqttPublisher {
    async fn deliver(&mut self, v: &AlertView) -> Result<(), String> {
        let body = serde_json::to_vec(v).map_err(|e| e.to_string())?;
        let topic = Self::topic(&self.prefix, v.unit.as_deref());
        let r = self.publish(topic, body).await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }
}

/// Sends each transition as an IHE PCD-04 `ORU^R40` over MLLP and checks the answer.
pub struct Pcd04 {
    client: crate::sources::mllp::client::MllpClient,
    pub settings: super::pcd04::Pcd04Settings,
}

impl Pcd04 {
    pub fn new(addr: std::net::SocketAddr, settings: super::pcd04::Pcd04Settings) -> Self {
        let client = crate::sources::mllp::client::MllpClient::new(
            addr,
            crate::sources::mllp::client::MllpClientSettings {
                // Retries are the delivery queue's (with backoff and the degraded state).
                max_attempts: 1,
                ..Default::default()
            },
        );
        Pcd04 { client, settings }
    }
}

impl Deliver for Pcd04 {
    async fn deliver(&mut self, v: &AlertView) -> Result<(), String> {
        let msg = super::pcd04::oru_r40(v, &self.settings, Timestamp::now_wall());
        let acks = self
            .client
            .send_once(msg.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        match acks.first() {
            Some(a) if a.code.is_accept() => Ok(()),
            Some(a) => Err(format!(
                "alarm manager answered {}: {}",
                a.code.as_str(),
                a.error_text.as_deref().unwrap_or("-")
            )),
            None => Err("no acknowledgement".into()),
        }
    }
}
