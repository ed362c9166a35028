//! The MQTT subscriber: one persistent session with a broker, QoS 1 subscriptions, payloads
//! decoded and normalized, and each message acknowledged only once its records are on the bus.
//!
//! Two tasks share the session. The connection task owns rumqttc's event loop: it polls it
//! (keep-alives, acks going out), stamps each PUBLISH with the receive time, hands it to the
//! worker over a bounded channel, reconnects with capped exponential backoff and resubscribes
//! when the broker has no session for us. The worker decodes, normalizes, publishes to the bus
//! and then sends the PUBACK, in arrival order (MQTT 3.1.1 §4.6). A message that cannot be read
//! is dead-lettered with its reason, counted, and acknowledged, so the broker never redelivers
//! it forever. A PUBACK is sent only on the connection the message came in on: after a
//! reconnect the broker delivers unacknowledged messages again, and the copies are recognised
//! downstream by their observation ids (device, code, time, value).
//!
//! Back-pressure: while the bus is full the worker waits, the connection task keeps the session
//! alive, and the broker stops sending once its in-flight window of unacknowledged messages is
//! full. The hand-off and rumqttc's request channel each hold 1024, more than brokers' windows
//! (mosquitto: 20).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectionError, Event, MqttOptions, Outgoing, Packet, Publish, QoS, StateError,
    SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;

use super::config::MqttSourceConfig;
use super::topic::{check_filter, filter_matches, TopicFields, TopicMap};
use crate::model::Timestamp;
use crate::normalize::DeviceOrigin;
use crate::protocol::mqtt_payload::{decode, PayloadFormat};
use crate::sources::deadletter::{keep, DeadLetter};
use crate::sources::replay::source::{batch_key, count_normalized};

/// What the source shares with the rest of the pipeline.
pub type MqttContext = crate::sources::SourceContext;

#[derive(Debug, thiserror::Error)]
pub enum MqttSourceError {
    /// The configuration cannot make a session (config validation reports the same faults).
    #[error("MQTT source {name}: {reason}")]
    Config { name: String, reason: String },
}

/// Messages handed from the connection task to the worker.
const HANDOFF: usize = 1024;
/// rumqttc's request channel (PUBACKs, SUBSCRIBE, DISCONNECT).
const REQUESTS: usize = 1024;
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);
/// At shutdown, how long the worker may take to finish the message in hand.
const DRAIN: Duration = Duration::from_secs(5);
/// At shutdown, how long the DISCONNECT may take.
const GOODBYE: Duration = Duration::from_secs(2);
/// Room for the topic and header on top of `max_payload_bytes` in rumqttc's packet limit.
const TOPIC_OVERHEAD: usize = 64 * 1024;

struct Route {
    filter: String,
    format: PayloadFormat,
    map: Option<TopicMap>,
}

/// A configured MQTT source, ready to run.
pub struct MqttSource {
    cfg: MqttSourceConfig,
    options: MqttOptions,
    routes: Vec<Route>,
}

struct Delivery {
    publish: Publish,
    receive_time: Timestamp,
    /// The connection it arrived on.
    generation: u64,
}

enum Outcome {
    Accepted,
    Rejected,
    NotHandedOn,
}

/// Capped exponential backoff.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }
    fn reset(&mut self) {
        self.next = self.initial;
    }
    fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        d
    }
}

impl MqttSource {
    /// Checks the configuration and prepares the session options (TLS files are read, the
    /// password is taken from its environment variable). Nothing connects yet.
    pub fn new(cfg: MqttSourceConfig) -> Result<Self, MqttSourceError> {
        let err = |reason: String| MqttSourceError::Config {
            name: cfg.name.clone(),
            reason,
        };
        let client_id = cfg.client_id();
        if client_id.is_empty() {
            return Err(err("client_id is empty".into()));
        }
        if cfg.host.trim().is_empty() || cfg.port == 0 {
            return Err(err(format!(
                "no broker at {:?} port {}",
                cfg.host, cfg.port
            )));
        }
        let mut routes = Vec::with_capacity(cfg.subscriptions.len());
        for s in &cfg.subscriptions {
            check_filter(&s.filter).map_err(|e| err(format!("filter {:?}: {e}", s.filter)))?;
            let map = match &s.topic_map {
                Some(m) => {
                    Some(TopicMap::parse(m).map_err(|e| err(format!("topic_map {m:?}: {e}")))?)
                }
                None => None,
            };
            routes.push(Route {
                filter: s.filter.clone(),
                format: s.payload,
                map,
            });
        }
        if routes.is_empty() {
            return Err(err("no subscriptions".into()));
        }
        let mut o = MqttOptions::new(client_id, cfg.host.trim(), cfg.port);
        o.set_keep_alive(Duration::from_secs(
            cfg.keep_alive_secs.min(u64::from(u16::MAX)),
        ));
        o.set_clean_session(cfg.clean_session);
        o.set_manual_acks(true);
        o.set_max_packet_size(
            cfg.max_payload_bytes.saturating_add(TOPIC_OVERHEAD),
            TOPIC_OVERHEAD,
        );
        if let Some(user) = &cfg.username {
            let password = match &cfg.password_env {
                Some(var) => std::env::var(var)
                    .map_err(|_| err(format!("password_env: {var} is not set")))?,
                None => String::new(),
            };
            o.set_credentials(user.clone(), password);
        }
        if let Some(tls) = &cfg.tls {
            let c = tls.client_config().map_err(|e| err(format!("tls: {e}")))?;
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(c),
            )));
        }
        Ok(MqttSource {
            cfg,
            options: o,
            routes,
        })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Runs the session until `ctx.stop` fires; then lets the message in hand finish and be
    /// acknowledged, and disconnects cleanly (the broker keeps the session and queues for it).
    pub async fn run(self, ctx: MqttContext) {
        let MqttSource {
            cfg,
            options,
            routes,
        } = self;
        let name = cfg.name.clone();
        let broker = format!("{}:{}", cfg.host.trim(), cfg.port);
        let ctx = Arc::new(ctx);
        let (client, mut eventloop) = AsyncClient::new(options, REQUESTS);
        let generation = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<Delivery>(HANDOFF);
        let mut worker = tokio::spawn(work(
            rx,
            client.clone(),
            Arc::new(routes),
            name.clone(),
            cfg.max_payload_bytes,
            ctx.clone(),
            generation.clone(),
        ));
        let connected_gauge = ctx.metrics.mqtt_connected.with_label_values(&[&name]);
        let subscribed_gauge = ctx.metrics.mqtt_subscribed.with_label_values(&[&name]);
        let filters: Vec<String> = cfg.subscriptions.iter().map(|s| s.filter.clone()).collect();
        let mut backoff = Backoff::new(
            Duration::from_millis(cfg.reconnect_initial_ms.max(1)),
            Duration::from_millis(cfg.reconnect_max_ms.max(cfg.reconnect_initial_ms).max(1)),
        );
        let mut connected_at: Option<Instant> = None;
        let mut failures: u32 = 0;
        let mut subscribed = false;
        let mut granted_subscriptions: i64 = 0;
        let mut must_subscribe = false;
        tracing::info!(source = %name, %broker, client_id = %cfg.client_id(),
            clean_session = cfg.clean_session, tls = cfg.tls.is_some(), "mqtt source starting");
        loop {
            let polled = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                ev = eventloop.poll() => ev,
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    generation.fetch_add(1, Ordering::SeqCst);
                    connected_at = Some(Instant::now());
                    connected_gauge.set(1);
                    let session = if ack.session_present {
                        "resumed"
                    } else {
                        "new"
                    };
                    ctx.metrics
                        .mqtt_connects
                        .with_label_values(&[&name, session])
                        .inc();
                    tracing::info!(source = %name, %broker, session, failed_attempts = failures,
                        "mqtt connected");
                    failures = 0;
                    if !ack.session_present || !subscribed {
                        subscribed = false;
                        must_subscribe = true;
                        subscribed_gauge.set(0);
                    } else {
                        subscribed_gauge.set(granted_subscriptions);
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let mut granted = 0;
                    for (filter, code) in filters.iter().zip(&ack.return_codes) {
                        match code {
                            SubscribeReasonCode::Failure => {
                                tracing::error!(source = %name, %filter,
                                    "the broker refused the subscription (check its ACL)");
                            }
                            SubscribeReasonCode::Success(QoS::AtMostOnce) => {
                                tracing::warn!(source = %name, %filter,
                                    "the broker granted QoS 0 only: messages may be lost");
                            }
                            SubscribeReasonCode::Success(_) => granted += 1,
                        }
                    }
                    subscribed = true;
                    granted_subscriptions = granted;
                    subscribed_gauge.set(granted);
                    tracing::info!(source = %name, granted, of = filters.len(), "mqtt subscribed");
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let d = Delivery {
                        receive_time: Timestamp::now_wall(),
                        generation: generation.load(Ordering::SeqCst),
                        publish,
                    };
                    let handed = tokio::select! {
                        biased;
                        _ = ctx.stop.cancelled() => break,
                        r = tx.send(d) => r,
                    };
                    if handed.is_err() {
                        break; // The worker ended: the bus is closed.
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    generation.fetch_add(1, Ordering::SeqCst);
                    let kind = error_kind(&e);
                    ctx.metrics
                        .mqtt_connection_errors
                        .with_label_values(&[&name, kind])
                        .inc();
                    let was_up = connected_at.take();
                    if was_up.is_some_and(|t| t.elapsed() >= STABLE) {
                        backoff.reset();
                    }
                    let delay = backoff.step();
                    let retry_in_ms = delay.as_millis() as u64;
                    if was_up.is_some() {
                        connected_gauge.set(0);
                        subscribed_gauge.set(0);
                        tracing::warn!(source = %name, %broker, error = %e, kind, retry_in_ms,
                            "mqtt connection lost");
                    } else {
                        failures = failures.saturating_add(1);
                        if failures == 1 || failures % 10 == 0 {
                            tracing::warn!(source = %name, %broker, error = %e, kind, retry_in_ms,
                                failed_attempts = failures, "mqtt broker unreachable");
                        } else {
                            tracing::info!(source = %name, error = %e, kind, retry_in_ms,
                                failed_attempts = failures, "mqtt connect failed");
                        }
                    }
                    if kind == "too_large" {
                        tracing::error!(source = %name, limit = cfg.max_payload_bytes,
                            "a packet over max_payload_bytes + 64 KiB cannot be read; the broker \
                             will send it again: raise max_payload_bytes or set the broker's \
                             message_size_limit below it");
                    }
                    let slept = tokio::select! {
                        biased;
                        _ = ctx.stop.cancelled() => false,
                        _ = tokio::time::sleep(delay) => true,
                    };
                    if !slept {
                        break;
                    }
                }
            }
            if must_subscribe {
                let request = filters
                    .iter()
                    .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                // Never wait on the request channel here: only this task drains it.
                if client.try_subscribe_many(request).is_ok() {
                    must_subscribe = false;
                }
            }
            if worker.is_finished() {
                break;
            }
        }

        // Shutdown: no new hand-offs; the worker finishes the message in hand (its ack goes out
        // while we keep polling), then a clean DISCONNECT.
        drop(tx);
        let mut link_up = connected_at.is_some();
        let deadline = tokio::time::Instant::now() + DRAIN;
        let mut worker_done = worker.is_finished();
        while !worker_done {
            tokio::select! {
                biased;
                _ = &mut worker => worker_done = true,
                _ = tokio::time::sleep_until(deadline) => {
                    worker.abort();
                    ctx.metrics.mqtt_unacked.with_label_values(&[&name, "shutdown"]).inc();
                    tracing::warn!(source = %name,
                        "the message in hand was not finished in time; the broker will send it again");
                    break;
                }
                ev = eventloop.poll(), if link_up => {
                    if ev.is_err() {
                        link_up = false;
                    }
                }
            }
        }
        if link_up && client.try_disconnect().is_ok() {
            let bye = tokio::time::timeout(GOODBYE, async {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            if bye.is_err() {
                tracing::warn!(source = %name, "mqtt disconnect timed out");
            }
        }
        connected_gauge.set(0);
        subscribed_gauge.set(0);
        tracing::info!(source = %name, "mqtt source stopped");
    }
}

fn error_kind(e: &ConnectionError) -> &'static str {
    match e {
        ConnectionError::Io(_)
        | ConnectionError::MqttState(StateError::Io(_))
        | ConnectionError::MqttState(StateError::ConnectionAborted) => "io",
        ConnectionError::NetworkTimeout
        | ConnectionError::FlushTimeout
        | ConnectionError::MqttState(StateError::AwaitPingResp) => "timeout",
        ConnectionError::Tls(_) => "tls",
        ConnectionError::ConnectionRefused(_) => "refused",
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_),
        )) => "too_large",
        _ => "protocol",
    }
}

/// The worker: handles deliveries in order and acknowledges each on its own connection.
async fn work(
    mut rx: mpsc::Receiver<Delivery>,
    client: AsyncClient,
    routes: Arc<Vec<Route>>,
    name: String,
    max_payload: usize,
    ctx: Arc<MqttContext>,
    generation: Arc<AtomicU64>,
) {
    let unacked = |reason: &str| {
        ctx.metrics
            .mqtt_unacked
            .with_label_values(&[&name, reason])
            .inc();
    };
    loop {
        let d = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => break,
            d = rx.recv() => match d {
                Some(d) => d,
                None => break,
            },
        };
        let outcome = handle(&d, &routes, &name, max_payload, &ctx).await;
        let label = match outcome {
            Outcome::Accepted => "accepted",
            Outcome::Rejected => "rejected",
            Outcome::NotHandedOn => {
                unacked("bus_closed");
                break;
            }
        };
        if d.publish.qos == QoS::AtMostOnce {
            continue;
        }
        if d.generation != generation.load(Ordering::SeqCst) {
            // The connection it came on is gone; the broker sends it again on the next one.
            unacked("connection_lost");
            continue;
        }
        match client.ack(&d.publish).await {
            Ok(()) => ctx
                .metrics
                .mqtt_acks
                .with_label_values(&[&name, label])
                .inc(),
            Err(_) => {
                unacked("shutdown");
                break;
            }
        }
    }
    rx.close();
    let mut left = 0;
    while rx.try_recv().is_ok() {
        left += 1;
    }
    if left > 0 {
        ctx.metrics
            .mqtt_unacked
            .with_label_values(&[&name, "shutdown"])
            .inc_by(left);
    }
}

/// Counts, logs and keeps a message that cannot be read; it is then acknowledged.
fn reject(ctx: &MqttContext, name: &str, d: &Delivery, kind: &str, reason: &str) -> Outcome {
    ctx.metrics.message_rejected(name, kind, reason);
    let dl = DeadLetter::new(
        d.receive_time,
        name,
        Some(&d.publish.topic),
        kind,
        reason,
        &d.publish.payload,
    );
    keep(ctx.dead_letters.as_deref(), &dl);
    Outcome::Rejected
}

/// One of the payload's and the topic's values, or why they disagree.
fn agree<'a>(
    what: &str,
    payload: Option<&'a String>,
    topic: Option<&'a String>,
) -> Result<Option<&'a String>, String> {
    match (payload, topic) {
        (Some(p), Some(t)) if p != t => Err(format!(
            "the payload's {what} {p:?} differs from the topic's {t:?}"
        )),
        (Some(p), _) => Ok(Some(p)),
        (None, t) => Ok(t),
    }
}

async fn handle(
    d: &Delivery,
    routes: &[Route],
    name: &str,
    max_payload: usize,
    ctx: &MqttContext,
) -> Outcome {
    let p = &d.publish;
    ctx.metrics
        .messages_received
        .with_label_values(&[name, "mqtt"])
        .inc();
    if p.dup {
        ctx.metrics
            .mqtt_redelivered
            .with_label_values(&[name])
            .inc();
    }
    if p.payload.len() > max_payload {
        let reason = format!(
            "payload of {} bytes is over max_payload_bytes {max_payload}",
            p.payload.len()
        );
        return reject(ctx, name, d, "too_large", &reason);
    }
    let Some(route) = routes.iter().find(|r| filter_matches(&r.filter, &p.topic)) else {
        let reason = format!("topic {:?} matches no configured subscription", p.topic);
        return reject(ctx, name, d, "unrouted", &reason);
    };
    let fields = match &route.map {
        None => TopicFields::default(),
        Some(m) => match m.apply(&p.topic) {
            Ok(f) => f,
            Err(e) => {
                let reason = format!("topic {:?} does not fit the topic_map: {e}", p.topic);
                return reject(ctx, name, d, "topic", &reason);
            }
        },
    };
    let reports = match decode(route.format, &p.payload, d.receive_time) {
        Ok(r) => r,
        Err(e) => {
            let reason = format!("{} payload: {e}", route.format.as_str());
            return reject(ctx, name, d, e.kind(), &reason);
        }
    };
    // Every report is checked before any is normalized: a message is taken whole or not at all.
    let message = format!("{}#{}", p.topic, p.pkid);
    let mut origins = Vec::with_capacity(reports.len());
    for r in &reports {
        let device = match agree("device", r.device.as_ref(), fields.device.as_ref()) {
            Ok(Some(dev)) => dev.clone(),
            Ok(None) => {
                return reject(ctx, name, d, "no_device",
                    "neither the payload nor the topic names the device (send a device, or map a {device} topic level)")
            }
            Err(e) => return reject(ctx, name, d, "conflict", &e),
        };
        let patient = match agree("patient", r.patient.as_ref(), fields.patient.as_ref()) {
            Ok(pt) => pt.cloned(),
            Err(e) => return reject(ctx, name, d, "conflict", &e),
        };
        origins.push(DeviceOrigin {
            protocol: "mqtt",
            device_id: device,
            model: r.model.clone(),
            unit: fields.unit.clone(),
            bed: fields.bed.clone(),
            patient,
            message: message.clone(),
        });
    }
    let mut records = Vec::new();
    let started = Instant::now();
    {
        let mut normalizer = match ctx.normalizer.lock() {
            Ok(n) => n,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (r, origin) in reports.iter().zip(&origins) {
            let n = normalizer.device(name, origin, &r.report, d.receive_time);
            count_normalized(&ctx.metrics, name, &n);
            records.extend(n.records);
        }
    }
    ctx.metrics.stage_time("normalize", started.elapsed());
    let (unavailable, ignored) = reports.iter().fold((0u64, 0u64), |(u, i), r| {
        (u + u64::from(r.unavailable), i + u64::from(r.ignored))
    });
    if unavailable > 0 {
        ctx.metrics
            .mqtt_readings_skipped
            .with_label_values(&[name, "unavailable"])
            .inc_by(unavailable);
    }
    if ignored > 0 {
        ctx.metrics
            .mqtt_readings_skipped
            .with_label_values(&[name, "not_a_reading"])
            .inc_by(ignored);
    }
    if records.is_empty() {
        return Outcome::Accepted;
    }
    let key = batch_key(&records);
    match ctx.out.publish(&key, records).await {
        Ok(()) => Outcome::Accepted,
        Err(_) => Outcome::NotHandedOn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_millis(3000));
        let steps: Vec<u128> = (0..6).map(|_| b.step().as_millis()).collect();
        assert_eq!(steps, [500, 1000, 2000, 3000, 3000, 3000]);
        b.reset();
        assert_eq!(b.step(), Duration::from_millis(500));
    }

    #[test]
    fn payload_and_topic_must_agree_on_device_and_patient() {
        let (a, b) = ("mon-7".to_string(), "mon-8".to_string());
        assert_eq!(agree("device", Some(&a), None).unwrap(), Some(&a));
        assert_eq!(agree("device", None, Some(&b)).unwrap(), Some(&b));
        assert_eq!(agree("device", Some(&a), Some(&a)).unwrap(), Some(&a));
        assert!(agree("device", Some(&a), Some(&b))
            .unwrap_err()
            .contains("\"mon-7\" differs from the topic's \"mon-8\""));
        assert_eq!(agree("device", None, None).unwrap(), None);
    }

    #[test]
    fn options_refuse_what_cannot_make_a_session() {
        use super::super::config::MqttSubscription;
        let sub = MqttSubscription {
            filter: "icu/#".into(),
            payload: PayloadFormat::Json,
            topic_map: Some("icu/{unit}/{bed}/#".into()),
        };
        assert!(MqttSource::new(MqttSourceConfig::new(
            "m",
            "localhost",
            1883,
            vec![sub.clone()]
        ))
        .is_ok());
        let mut c = MqttSourceConfig::new("m", "localhost", 1883, vec![sub.clone()]);
        c.client_id = Some(String::new());
        assert!(MqttSource::new(c).is_err());
        assert!(MqttSource::new(MqttSourceConfig::new("m", "localhost", 1883, vec![])).is_err());
        let bad = MqttSubscription {
            topic_map: Some("icu/{room}".into()),
            ..sub
        };
        let e = MqttSource::new(MqttSourceConfig::new("m", "h", 1, vec![bad]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("{room}"), "{e}");
    }
}
