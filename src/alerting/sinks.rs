//! Alert delivery: console, JSON-lines file, HTTP webhook.
//!
//! Every sink counts what it delivered, retried and failed; a failure is logged and counted,
//! never dropped silently. The webhook runs in its own task behind a bounded queue that blocks
//! when full (alerts never drop), so a slow receiver cannot stall scoring for long.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::model::{Alert, AlertState};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("alert file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("webhook {url}: {reason}")]
    Webhook { url: String, reason: String },
}

/// One line a person reads on the console.
pub fn console_line(a: &Alert) -> String {
    let place = match (&a.unit, &a.bed) {
        (Some(u), Some(b)) => format!("{u}/{b}"),
        (None, Some(b)) => b.clone(),
        _ => "-".to_string(),
    };
    let what = match a.state {
        AlertState::Active => "ALERT   ",
        AlertState::Resolved => "resolved",
        AlertState::Suppressed => "reopened",
        AlertState::Acknowledged => "acked   ",
        AlertState::Escalated => "ESCALATE",
    };
    let sev = a.severity.as_str();
    format!(
        "{} {what} {sev:<8} {:<14} {place:<12} patient {:<10} {}",
        a.at, a.rule, a.patient, a.reason
    )
}

/// Appends alerts as JSON lines, flushed after each so a crash loses none already written.
pub struct JsonlSink {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl JsonlSink {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let f = std::fs::File::create(path).map_err(|source| SinkError::File {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(JsonlSink {
            path: path.to_path_buf(),
            out: std::io::BufWriter::new(f),
        })
    }

    /// Opens the file for appending (created if missing): a daemon's alert log survives its
    /// restarts.
    pub fn append(path: &Path) -> Result<Self, SinkError> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SinkError::File {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(JsonlSink {
            path: path.to_path_buf(),
            out: std::io::BufWriter::new(f),
        })
    }

    pub fn write<T: serde::Serialize>(&mut self, rec: &T) -> Result<(), SinkError> {
        let map = |source| SinkError::File {
            path: self.path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, rec).map_err(|e| map(e.into()))?;
        self.out.write_all(b"\n").map_err(map)?;
        self.out.flush().map_err(map)
    }
}

/// Webhook delivery settings.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub name: String,
    pub url: String,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub queue: usize,
}

/// A running webhook sink: `send` queues, the task POSTs with retries.
pub struct WebhookSink {
    tx: mpsc::Sender<Alert>,
    pub handle: JoinHandle<()>,
}

impl WebhookSink {
    pub fn start(settings: WebhookSettings, metrics: Arc<Metrics>) -> Result<Self, SinkError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| SinkError::Webhook {
                url: settings.url.clone(),
                reason: e.to_string(),
            })?;
        let (tx, mut rx) = mpsc::channel::<Alert>(settings.queue.max(1));
        let handle = tokio::spawn(async move {
            while let Some(alert) = rx.recv().await {
                deliver(&client, &settings, &metrics, &alert).await;
            }
        });
        Ok(WebhookSink { tx, handle })
    }

    /// Queues an alert; waits when the queue is full (alerts never drop).
    pub async fn send(&self, alert: Alert) {
        if self.tx.send(alert).await.is_err() {
            tracing::error!("webhook task has stopped; alert not queued");
        }
    }

    /// Closes the queue; the task drains what is queued and ends.
    pub fn close(self) -> JoinHandle<()> {
        drop(self.tx);
        self.handle
    }
}

async fn deliver(client: &reqwest::Client, s: &WebhookSettings, metrics: &Metrics, alert: &Alert) {
    let mut backoff = s.initial_backoff;
    for attempt in 1..=s.max_attempts.max(1) {
        let res = client
            .post(&s.url)
            .header("content-type", "application/json")
            .header(
                "idempotency-key",
                format!("{}:{}", alert.id, alert.state.as_str()),
            )
            .json(alert)
            .send()
            .await;
        let outcome = match res {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                metrics
                    .sink_deliveries
                    .with_label_values(&[&s.name, "ok"])
                    .inc();
                return;
            }
            Err(reason) if attempt < s.max_attempts => {
                metrics
                    .sink_deliveries
                    .with_label_values(&[&s.name, "retry"])
                    .inc();
                tracing::warn!(sink = %s.name, attempt, %reason, "webhook delivery failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(s.max_backoff);
            }
            Err(reason) => {
                metrics
                    .sink_deliveries
                    .with_label_values(&[&s.name, "failed"])
                    .inc();
                tracing::error!(sink = %s.name, alert = %alert.id, attempts = attempt, %reason,
                    "webhook delivery failed; giving up on this alert");
            }
        }
    }
}
