//! The record of rule alerts: console lines and a JSON-lines file. (Episodes reach people's
//! systems through [`super::delivery`]: PCD-04, webhook, MQTT.)

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::model::{Alert, AlertState};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("alert file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
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
