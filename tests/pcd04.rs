//! The PCD-04 sink against a real MLLP receiver on loopback: each `ORU^R40` has the shape of
//! the Dräger reference PCD-04 message (tests/data/hl7/device-ihe-pcd-acm-draeger), is answered
//! with an ACK and counted; with the receiver down the sink turns degraded (metric, health,
//! /readyz line), holds the transition, and delivers it once the receiver is back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vigil::alerting::delivery::{DeliveryMetrics, DeliveryQueue, Pcd04, RetryPolicy, SinkHealth};
use vigil::alerting::pcd04::Pcd04Settings;
use vigil::alerting::{AlertView, Transition};
use vigil::model::{AlertState, Evidence, ScoreKind, Severity, Timestamp};
use vigil::protocol::hl7::parse;
use vigil::protocol::mllp::{encode_frame, MllpDecoder};
use vigil::telemetry::Metrics;

const WAIT: Duration = Duration::from_secs(30);

fn view(transition: Transition, state: AlertState) -> AlertView {
    AlertView {
        id: "5f2c0e9a1b7d4c38".into(),
        patient: "V2600103".into(),
        bed: Some("BED03".into()),
        unit: Some("ICU-A".into()),
        rule: "septic_shock".into(),
        severity: Severity::Critical,
        state,
        raised_at: Timestamp(1_767_600_000_000),
        updated_at: Timestamp(1_767_600_060_000),
        explanation: "Septic shock criteria met: lactate 4.2 mmol/L, vasopressor".into(),
        evidence: vec![Evidence {
            kind: ScoreKind::SepticShock,
            value: 1.0,
            components: vec![],
            missing: vec![],
        }],
        acknowledged_by: None,
        acknowledged_at: None,
        escalation_level: 0,
        rules: vec!["septic_shock".into(), "qsofa".into()],
        transition,
        by: "system".into(),
        notifications: 1,
    }
}

/// Accepts connections on `listener`; sends every received message's text on the channel and
/// answers it with `ACK^R40` (MSA-1 `CA`, MSA-2 its MSH-10).
fn receiver(listener: TcpListener) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut dec = MllpDecoder::new(1 << 20);
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    dec.feed(&buf[..n]);
                    while let Ok(Some(frame)) = dec.next_frame() {
                        let text = String::from_utf8_lossy(frame.payload()).to_string();
                        let control = parse(frame.payload())
                            .map(|m| m.control_id().to_string())
                            .unwrap_or_default();
                        let ack = format!(
                            "MSH|^~\\&|MockAM||VIGIL||20260105100000||ACK^R40|A{control}|P|2.6\rMSA|CA|{control}\r"
                        );
                        let mut out = Vec::new();
                        encode_frame(ack.as_bytes(), &mut out);
                        let _ = tx.send(text);
                        if sock.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    rx
}

fn segment_names(text: &str) -> Vec<String> {
    text.split('\r')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.get(..3).unwrap_or(s).to_string())
        .collect()
}

/// OBX-3 identifiers (the code before the first `^`) of a message.
fn obx_codes(text: &str) -> Vec<String> {
    let m = parse(text.as_bytes()).unwrap();
    m.segments_named("OBX")
        .map(|s| {
            s.field(3)
                .as_str()
                .split('^')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn start(addr: SocketAddr, metrics: &Metrics) -> (DeliveryQueue, DeliveryMetrics, Arc<SinkHealth>) {
    let dm = DeliveryMetrics::new(metrics);
    let health = Arc::new(SinkHealth::default());
    let q = DeliveryQueue::start(
        "acm",
        Pcd04::new(addr, Pcd04Settings::default()),
        RetryPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            degraded_after: 3,
        },
        16,
        dm.clone(),
        health.clone(),
    );
    (q, dm, health)
}

#[tokio::test]
async fn oru_r40_has_the_reference_shape_and_is_acknowledged() {
    let sample_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/hl7/device-ihe-pcd-acm-draeger/PCD04_alarm.hl7"
    );
    let sample = std::fs::read_to_string(sample_path).unwrap();
    let sample_msg = parse(sample.as_bytes()).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut got = receiver(listener);
    let metrics = Metrics::new();
    let (q, dm, health) = start(addr, &metrics);
    q.send(view(Transition::Raised, AlertState::Active), &dm)
        .await;
    q.send(view(Transition::Resolved, AlertState::Resolved), &dm)
        .await;
    let raised = tokio::time::timeout(WAIT, got.recv())
        .await
        .unwrap()
        .unwrap();
    let resolved = tokio::time::timeout(WAIT, got.recv())
        .await
        .unwrap()
        .unwrap();
    q.close(WAIT).await;

    let m = parse(raised.as_bytes()).unwrap();
    // Same message type, structure, version and ACM profile as the reference message.
    assert_eq!(m.message_type(), sample_msg.message_type());
    assert_eq!(
        m.msh().field(12).as_str(),
        sample_msg.msh().field(12).as_str()
    );
    assert_eq!(
        m.msh().field(21).as_str(),
        sample_msg.msh().field(21).as_str()
    );
    assert_eq!(m.msh().field(15).as_str(), "AL");
    let names = segment_names(&raised);
    let sample_names = segment_names(&sample);
    assert_eq!(names[..4], sample_names[..4], "MSH, PID, PV1, OBR first");
    assert!(names[4..].iter().all(|n| n == "OBX"));
    let obr = m.segment("OBR").unwrap();
    assert_eq!(
        obr.field(4).as_str(),
        sample_msg.segment("OBR").unwrap().field(4).as_str(),
        "OBR-4 is MDC_EVT_ALARM"
    );
    assert!(obr.field(3).as_str().starts_with("5f2c0e9a1b7d4c38^"));
    // Every MDC alert attribute the reference message reports is reported.
    let ours = obx_codes(&raised);
    for code in ["68480", "68481", "68482", "68483", "68484", "68485"] {
        assert!(obx_codes(&sample).contains(&code.to_string()), "{code}");
        assert!(
            ours.contains(&code.to_string()),
            "{code} missing in {raised}"
        );
    }
    let value = |text: &str, code: &str| -> String {
        let m = parse(text.as_bytes()).unwrap();
        let row = m
            .segments_named("OBX")
            .find(|s| s.field(3).as_str().starts_with(&format!("{code}^")))
            .unwrap();
        row.field(5).as_str().to_string()
    };
    // The same vocabulary as the reference: phase, state, priority, type.
    assert_eq!(value(&sample, "68481"), "start");
    assert_eq!(value(&raised, "68481"), "start");
    assert_eq!(value(&raised, "68482"), "active");
    assert_eq!(value(&raised, "68483"), "enabled");
    assert_eq!(value(&raised, "68484"), "PH");
    assert_eq!(value(&raised, "68485"), "SP");
    assert_eq!(value(&raised, "68480"), "septic_shock^septic_shock^99VIGIL");
    assert_eq!(value(&resolved, "68481"), "end");
    assert_eq!(value(&resolved, "68482"), "inactive");
    // Patient and bed.
    assert_eq!(
        m.segment("PID").unwrap().field(3).as_str(),
        "V2600103^^^^MR"
    );
    assert!(m
        .segment("PV1")
        .unwrap()
        .field(3)
        .as_str()
        .starts_with("ICU-A^^BED03"));
    // The explanation is the first OBX's text.
    assert!(raised.contains("Septic shock criteria met: lactate 4.2 mmol/L, vasopressor"));

    let text = metrics.render();
    assert!(
        text.contains("vigil_alert_deliveries_total{outcome=\"ok\",sink=\"acm\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("vigil_alert_sink_up{sink=\"acm\"} 1"),
        "{text}"
    );
    assert!(health.degraded_lines().is_empty());
}

#[tokio::test]
async fn a_receiver_that_is_down_degrades_the_sink_and_nothing_is_lost() {
    // A port with nothing listening.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let metrics = Metrics::new();
    let (q, dm, health) = start(addr, &metrics);
    q.send(view(Transition::Raised, AlertState::Active), &dm)
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while health.degraded_lines().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never degraded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = &health.degraded_lines()[0];
    assert!(line.starts_with("sink acm: degraded"), "{line}");
    let text = metrics.render();
    assert!(
        text.contains("vigil_alert_sink_up{sink=\"acm\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("vigil_alert_sink_queued{sink=\"acm\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vigil_alert_deliveries_total{outcome=\"ok\",sink=\"acm\"} 0"),
        "{text}"
    );

    // The alarm manager comes back on the same port: the held transition is delivered.
    let listener = TcpListener::bind(addr).await.unwrap();
    let mut got = receiver(listener);
    let msg = tokio::time::timeout(WAIT, got.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(msg.contains("ORU^R40"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !health.degraded_lines().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    q.close(WAIT).await;
    let text = metrics.render();
    assert!(
        text.contains("vigil_alert_deliveries_total{outcome=\"ok\",sink=\"acm\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vigil_alert_sink_up{sink=\"acm\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vigil_alert_sink_queued{sink=\"acm\"} 0"),
        "{text}"
    );
}
