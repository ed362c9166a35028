//! The MQTT alert sink against a real Mosquitto broker: each episode change arrives as JSON on
//! its unit's topic at QoS 1; with the broker down the sink degrades and the change is delivered
//! once the broker is back.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Broker, WAIT};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use vigil::alerting::delivery::{
    DeliveryMetrics, DeliveryQueue, MqttPublisher, RetryPolicy, SinkHealth,
};
use vigil::alerting::{AlertView, Transition};
use vigil::model::{AlertState, Severity, Timestamp};
use vigil::telemetry::Metrics;

fn view(id: &str) -> AlertView {
    AlertView {
        id: id.into(),
        patient: "V1".into(),
        bed: Some("BED07".into()),
        unit: Some("ICU-A".into()),
        rule: "qsofa".into(),
        severity: Severity::High,
        state: AlertState::Active,
        raised_at: Timestamp(0),
        updated_at: Timestamp(0),
        explanation: "qSOFA 2 (alert at ≥ 2)".into(),
        evidence: vec![],
        acknowledged_by: None,
        acknowledged_at: None,
        escalation_level: 0,
        rules: vec!["qsofa".into()],
        transition: Transition::Raised,
        by: "system".into(),
        notifications: 1,
    }
}

/// A subscriber to `vigil/+/alerts` sending (topic, payload) on the channel.
async fn subscriber(port: u16) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let mut o = MqttOptions::new("alert-watcher", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_clean_session(false);
    let (client, mut eventloop) = AsyncClient::new(o, 16);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, mut subscribed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client.clone();
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe("vigil/+/alerts", QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(WAIT, subscribed.recv()).await.unwrap();
    rx
}

#[tokio::test]
async fn changes_reach_the_unit_topic_and_survive_a_broker_outage() {
    let mut broker = Broker::start("").await;
    let mut got = subscriber(broker.port).await;
    let metrics = Metrics::new();
    let dm = DeliveryMetrics::new(&metrics);
    let health = Arc::new(SinkHealth::default());
    let q = DeliveryQueue::start(
        "ward-mqtt",
        MqttPublisher::new(
            "t",
            "127.0.0.1",
            broker.port,
            "vigil",
            Duration::from_secs(2),
        ),
        RetryPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            degraded_after: 2,
        },
        8,
        dm.clone(),
        health.clone(),
    );
    q.send(view("aaaa000000000001"), &dm).await;
    let (topic, payload) = tokio::time::timeout(WAIT, got.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(topic, "vigil/ICU-A/alerts");
    let v: AlertView = serde_json::from_slice(&payload).unwrap();
    assert_eq!(v, view("aaaa000000000001"));

    // The broker goes away: the next change is held, the sink degrades.
    broker.stop().await;
    q.send(view("aaaa000000000002"), &dm).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while health.degraded_lines().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never degraded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics
        .render()
        .contains("vigil_alert_sink_up{sink=\"ward-mqtt\"} 0"));

    // Back: delivered (the watcher's persistent session gets it).
    broker.spawn().await;
    let v = loop {
        let (_, payload) = tokio::time::timeout(WAIT, got.recv())
            .await
            .unwrap()
            .unwrap();
        let v: AlertView = serde_json::from_slice(&payload).unwrap();
        if v.id == "aaaa000000000002" {
            break v;
        }
    };
    assert_eq!(v.unit.as_deref(), Some("ICU-A"));
    q.close(WAIT).await;
    assert!(health.degraded_lines().is_empty());
    let m = metrics.render();
    assert!(
        m.contains("vigil_alert_deliveries_total{outcome=\"ok\",sink=\"ward-mqtt\"} 2"),
        "{m}"
    );
}
