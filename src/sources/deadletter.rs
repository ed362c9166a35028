//! The dead-letter store: every rejected message is kept — raw bytes, reason, peer, time — for
//! an integration engineer to inspect with `vigil deadletters`.
//!
//! On disk it is a directory with `deadletters.jsonl` (current) and `deadletters.1.jsonl`
//! (previous). When the current file would pass half the byte bound it becomes the previous one,
//! so the store never holds more than `max_bytes` and always keeps the newest rejects. Each
//! record is flushed and synced before the sender is answered, so a reject acknowledged with
//! AE/AR is on disk.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

const CURRENT: &str = "deadletters.jsonl";
const PREVIOUS: &str = "deadletters.1.jsonl";

/// One rejected message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub time: Timestamp,
    /// The configured source (and recorded sub-source for replays).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Metric label: `parse`, `unsupported`, `missing`, `too_large`, ….
    pub kind: String,
    /// The reason as the sender was told it.
    pub reason: String,
    /// The message exactly as received.
    pub raw_b64: String,
}

impl DeadLetter {
    pub fn new(
        time: Timestamp,
        source: &str,
        peer: Option<&str>,
        kind: &str,
        reason: &str,
        raw: &[u8],
    ) -> Self {
        DeadLetter {
            time,
            source: source.to_string(),
            peer: peer.map(str::to_string),
            kind: kind.to_string(),
            reason: reason.to_string(),
            raw_b64: base64::engine::general_purpose::STANDARD.encode(raw),
        }
    }

    pub fn raw(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.raw_b64)
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An open store. Not shared across processes.
pub struct DeadLetterStore {
    dir: PathBuf,
    max_bytes: u64,
    file: File,
    bytes: u64,
    written: u64,
}

impl DeadLetterStore {
    /// Opens (creating) the store in `dir`, bounded to `max_bytes` on disk.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, DeadLetterError> {
        let io = |source| DeadLetterError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(CURRENT);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        Ok(DeadLetterStore {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(4096),
            file,
            bytes,
            written: 0,
        })
    }

    /// Appends one record durably (written and synced).
    pub fn append(&mut self, d: &DeadLetter) -> Result<(), DeadLetterError> {
        let io = |source| DeadLetterError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut line = serde_json::to_vec(d).map_err(|e| io(e.into()))?;
        line.push(b'\n');
        if self.bytes > 0 && self.bytes + line.len() as u64 > self.max_bytes / 2 {
            self.rotate()?;
        }
        let io = |source| DeadLetterError::Io {
            path: self.dir.clone(),
            source,
        };
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.bytes += line.len() as u64;
        self.written += 1;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), DeadLetterError> {
        let io = |source| DeadLetterError::Io {
            path: self.dir.clone(),
            source,
        };
        std::fs::rename(self.dir.join(CURRENT), self.dir.join(PREVIOUS)).map_err(io)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(CURRENT))
            .map_err(io)?;
        self.bytes = 0;
        tracing::info!(
            "dead-letter store rotated; the oldest rejects were dropped to stay within its bound"
        );
        Ok(())
    }

    /// Records appended since opening.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Keeps a rejected message in a shared store, if there is one. A store that cannot write is
/// logged (the reject itself was already counted); the message path never fails on it.
pub fn keep(store: Option<&std::sync::Mutex<DeadLetterStore>>, d: &DeadLetter) {
    let Some(store) = store else { return };
    let r = match store.lock() {
        Ok(mut s) => s.append(d),
        Err(p) => p.into_inner().append(d),
    };
    if let Err(e) = r {
        tracing::error!(error = %e, "cannot keep a rejected message in the dead-letter store");
    }
}

/// Every record in the store, oldest first. A torn last line (a crash mid-write) is skipped.
pub fn list(dir: &Path) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let mut out = Vec::new();
    for name in [PREVIOUS, CURRENT] {
        let path = dir.join(name);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(DeadLetterError::Io { path, source }),
        };
        for line in BufReader::new(f).lines() {
            let line = line.map_err(|source| DeadLetterError::Io {
                path: path.clone(),
                source,
            })?;
            if let Ok(d) = serde_json::from_str::<DeadLetter>(&line) {
                out.push(d);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopening_and_raw_bytes_are_exact() {
        let dir = tempfile::tempdir().unwrap();
        let raw = b"MSH|^~\\&|X\r\xff\x00OBX|garbage";
        {
            let mut s = DeadLetterStore::open(dir.path(), 1 << 20).unwrap();
            s.append(&DeadLetter::new(
                Timestamp(5),
                "mllp",
                Some("127.0.0.1:5000"),
                "parse",
                "byte 3: bad",
                raw,
            ))
            .unwrap();
        }
        let mut s = DeadLetterStore::open(dir.path(), 1 << 20).unwrap();
        s.append(&DeadLetter::new(
            Timestamp(6),
            "mllp",
            None,
            "unsupported",
            "QRY",
            b"x",
        ))
        .unwrap();
        let all = list(dir.path()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].raw(), raw.to_vec());
        assert_eq!(all[0].peer.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(all[1].kind, "unsupported");
    }

    #[test]
    fn the_store_stays_within_its_bound_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DeadLetterStore::open(dir.path(), 8192).unwrap();
        for i in 0..500 {
            s.append(&DeadLetter::new(
                Timestamp(i),
                "m",
                None,
                "parse",
                "bad",
                &[b'x'; 100],
            ))
            .unwrap();
        }
        let size: u64 = [CURRENT, PREVIOUS]
            .iter()
            .map(|n| {
                std::fs::metadata(dir.path().join(n))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum();
        assert!(size <= 8192, "{size}");
        let all = list(dir.path()).unwrap();
        assert_eq!(all.last().unwrap().time, Timestamp(499));
        assert!(all.len() < 500 && all.len() > 10);
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DeadLetterStore::open(dir.path(), 1 << 20).unwrap();
        s.append(&DeadLetter::new(
            Timestamp(1),
            "m",
            None,
            "parse",
            "bad",
            b"a",
        ))
        .unwrap();
        drop(s);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(CURRENT))
            .unwrap();
        f.write_all(b"{\"time\":\"2026-").unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 1);
    }
}
