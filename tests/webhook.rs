//! The webhook sink against a real HTTP receiver on loopback: the JSON body is signed with
//! HMAC-SHA256 (verified here with the shared secret), a retry after a failure carries the same
//! body, signature and idempotency key, and a receiver that keeps failing degrades the sink
//! without losing the transition.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vigil::alerting::delivery::{DeliveryMetrics, DeliveryQueue, RetryPolicy, SinkHealth, Webhook};
use vigil::alerting::{AlertView, Transition};
use vigil::model::{AlertState, Severity, Timestamp};
use vigil::telemetry::Metrics;

const SECRET: &[u8] = b"shared-secret-of-the-receiver";
const WAIT: Duration = Duration::from_secs(30);

fn view() -> AlertView {
    AlertView {
        id: "0123456789abcdef".into(),
        patient: "V1".into(),
        bed: Some("BED03".into()),
        unit: Some("ICU-A".into()),
        rule: "septic_shock".into(),
        severity: Severity::Critical,
        state: AlertState::Escalated,
        raised_at: Timestamp(0),
        updated_at: Timestamp(900_000),
        explanation: "Septic shock criteria met".into(),
        evidence: vec![],
        acknowledged_by: None,
        acknowledged_at: None,
        escalation_level: 1,
        rules: vec!["septic_shock".into()],
        transition: Transition::Escalated,
        by: "system".into(),
        notifications: 2,
    }
}

struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Answers each connection with the next status in `statuses`, sending each request back on
/// the channel.
async fn receiver(statuses: Vec<u16>) -> (String, tokio::sync::mpsc::UnboundedReceiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for status in statuses {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..at]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= at + 4 + len {
                        break (head, buf[at + 4..at + 4 + len].to_vec());
                    }
                }
                assert!(n > 0, "connection closed mid-request");
            };
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            tx.send(Request { headers, body }).unwrap();
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            sock.write_all(reply.as_bytes()).await.unwrap();
        }
    });
    (url, rx)
}

fn start(url: &str, metrics: &Metrics) -> (DeliveryQueue, DeliveryMetrics, Arc<SinkHealth>) {
    let dm = DeliveryMetrics::new(metrics);
    let health = Arc::new(SinkHealth::default());
    let hook = Webhook::new(url, Duration::from_secs(5), Some(SECRET.to_vec())).unwrap();
    let q = DeliveryQueue::start(
        "rrt",
        hook,
        RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            degraded_after: 2,
        },
        8,
        dm.clone(),
        health.clone(),
    );
    (q, dm, health)
}

/// The receiver's check: HMAC-SHA256 of the raw body with the shared secret, in constant time.
fn signature_ok(req: &Request) -> bool {
    let Some(sig) = req.header("x-vigil-signature") else {
        return false;
    };
    let Some(hex) = sig.strip_prefix("sha256=") else {
        return false;
    };
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| hex.get(i..i + 2))
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET);
    ring::hmac::verify(&key, &req.body, &bytes).is_ok()
}

#[tokio::test]
async fn signed_body_and_the_same_idempotency_key_on_a_retry() {
    let (url, mut requests) = receiver(vec![503, 200]).await;
    let metrics = Metrics::new();
    let (q, dm, _health) = start(&url, &metrics);
    q.send(view(), &dm).await;
    q.close(WAIT).await;
    let first = requests.recv().await.unwrap();
    let second = requests.recv().await.unwrap();
    assert!(signature_ok(&first) && signature_ok(&second));
    // A tampered body does not verify.
    let tampered = Request {
        headers: second.headers.clone(),
        body: [second.body.clone(), b" ".to_vec()].concat(),
    };
    assert!(!signature_ok(&tampered));
    assert_eq!(first.body, second.body);
    let key = "0123456789abcdef:escalated-1";
    assert_eq!(first.header("idempotency-key"), Some(key));
    assert_eq!(second.header("idempotency-key"), Some(key));
    assert_eq!(first.header("content-type"), Some("application/json"));
    let body: AlertView = serde_json::from_slice(&second.body).unwrap();
    assert_eq!(body, view());
    let m = metrics.render();
    assert!(
        m.contains("vigil_alert_deliveries_total{outcome=\"error\",sink=\"rrt\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("vigil_alert_deliveries_total{outcome=\"ok\",sink=\"rrt\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_degrades_the_sink_then_recovers_without_loss() {
    let (url, mut requests) = receiver(vec![500, 500, 500, 200]).await;
    let metrics = Metrics::new();
    let (q, dm, health) = start(&url, &metrics);
    q.send(view(), &dm).await;
    let mut keys = Vec::new();
    for _ in 0..4 {
        let r = tokio::time::timeout(WAIT, requests.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(signature_ok(&r));
        keys.push(r.header("idempotency-key").unwrap_or("").to_string());
        if keys.len() == 3 {
            // After two failures in a row the sink is degraded; the third is still retried.
            let deadline = tokio::time::Instant::now() + WAIT;
            while health.degraded_lines().is_empty() {
                assert!(tokio::time::Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(metrics
                .render()
                .contains("vigil_alert_sink_up{sink=\"rrt\"} 0"));
        }
    }
    q.close(WAIT).await;
    assert!(keys.iter().all(|k| k == "0123456789abcdef:escalated-1"));
    assert!(health.degraded_lines().is_empty());
    let m = metrics.render();
    assert!(
        m.contains("vigil_alert_deliveries_total{outcome=\"error\",sink=\"rrt\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("vigil_alert_deliveries_total{outcome=\"ok\",sink=\"rrt\"} 1"),
        "{m}"
    );
    assert!(m.contains("vigil_alert_sink_up{sink=\"rrt\"} 1"), "{m}");
}
