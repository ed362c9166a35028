//! The webhook sink against a real HTTP receiver on loopback: retries with backoff after a
//! failure, delivers the alert JSON with an idempotency key, and counts what happened.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vigil::alerting::sinks::{WebhookSettings, WebhookSink};
use vigil::model::{Alert, AlertState, Severity, Timestamp, ALERT_SCHEMA};
use vigil::telemetry::Metrics;

fn alert() -> Alert {
    Alert {
        schema: ALERT_SCHEMA,
        id: "0123456789abcdef0123456789abcdef".into(),
        rule: "septic_shock".into(),
        severity: Severity::Critical,
        state: AlertState::Active,
        patient: "V1".into(),
        unit: Some("ICU-A".into()),
        bed: Some("BED03".into()),
        episode_start: Timestamp(0),
        at: Timestamp(0),
        reason: "Septic shock criteria met".into(),
        evidence: vec![],
    }
}

/// Answers each connection with the next status in `statuses`, sending each request's raw
/// text back on the channel.
async fn receiver(statuses: Vec<u16>) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for status in statuses {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read headers, then the body by content-length.
            loop {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            tx.send(String::from_utf8_lossy(&buf).to_string()).unwrap();
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            sock.write_all(reply.as_bytes()).await.unwrap();
        }
    });
    (url, rx)
}

fn settings(url: String, attempts: u32) -> WebhookSettings {
    WebhookSettings {
        name: "rrt".into(),
        url,
        timeout: Duration::from_secs(5),
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        queue: 8,
    }
}

#[tokio::test]
async fn retries_after_a_server_error_then_delivers() {
    let (url, mut requests) = receiver(vec![503, 200]).await;
    let metrics = Arc::new(Metrics::new());
    let sink = WebhookSink::start(settings(url, 3), metrics.clone()).unwrap();
    sink.send(alert()).await;
    sink.close().await.unwrap();
    let first = requests.recv().await.unwrap();
    let second = requests.recv().await.unwrap();
    assert!(first.starts_with("POST /hook"));
    assert_eq!(
        first.split_once("\r\n\r\n").unwrap().1,
        second.split_once("\r\n\r\n").unwrap().1
    );
    assert!(second
        .to_ascii_lowercase()
        .contains("idempotency-key: 0123456789abcdef0123456789abcdef:active"));
    let body: Alert = serde_json::from_str(second.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body, alert());
    let m = metrics.render();
    assert!(
        m.contains("vigil_sink_deliveries_total{outcome=\"retry\",sink=\"rrt\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("vigil_sink_deliveries_total{outcome=\"ok\",sink=\"rrt\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_is_counted_as_failed_not_dropped_silently() {
    let (url, _requests) = receiver(vec![500, 500]).await;
    let metrics = Arc::new(Metrics::new());
    let sink = WebhookSink::start(settings(url, 2), metrics.clone()).unwrap();
    sink.send(alert()).await;
    sink.close().await.unwrap();
    let m = metrics.render();
    assert!(
        m.contains("vigil_sink_deliveries_total{outcome=\"failed\",sink=\"rrt\"} 1"),
        "{m}"
    );
    assert!(!m.contains("outcome=\"ok\""), "{m}");
}
