//! The gateway's census (which patient is in which bed) survives a restart.
//!
//! Device data names a bed, not a patient: the gateway learns the patient from ADT. A gateway
//! that restarted with an empty census would hand on every reading unassociated until the
//! next ADT for that bed, which may be days away. So every ADT message a live source accepts
//! is appended to a journal (its raw bytes, the source and the receive time), and `fdatasync`ed
//! before the sender is acknowledged; at start the journal is read back through the same
//! normalizer, which rebuilds the census exactly as the messages built it the first time.
//!
//! Format: one JSON object per line (`source`, `receive_ms`, `hl7` in base64, since HL7 may
//! be in any 8-bit character set). A line cut short by a crash is the last line: it is
//! dropped (its message was never acknowledged) and the file truncated to the lines before it.
//!
//! It must not acknowledge before the line is on disk, or stop a start over a torn tail.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum CensusJournalError {
    #[error("census journal {path}: {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("census journal {path}, line {line}: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("census journal: the writer task failed: {0}")]
    Task(String),
}

/// One accepted ADT message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    pub source: String,
    pub receive_time: Timestamp,
    pub hl7: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    source: String,
    receive_ms: i64,
    hl7: String,
}

/// An append-only journal of accepted ADT messages.
pub struct CensusJournal {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl CensusJournal {
    /// Opens (or creates) the journal and returns the entries it holds, oldest first. A torn
    /// last line is cut away; a bad line anywhere else is an error (the file was edited).
    pub fn open(path: &Path) -> Result<(CensusJournal, Vec<JournalEntry>), CensusJournalError> {
        let io = |op: &'static str| {
            let path = path.to_path_buf();
            move |source| CensusJournalError::Io { op, path, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io("create the directory"))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io("open"))?;
        let mut entries = Vec::new();
        let mut good_len = 0u64;
        let mut torn = None;
        {
            let mut reader = BufReader::new(&mut file);
            let mut buf = Vec::new();
            let mut line_no = 0usize;
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf).map_err(io("read"))?;
                if n == 0 {
                    break;
                }
                line_no += 1;
                let complete = buf.ends_with(b"\n");
                match parse_line(&buf) {
                    Ok(e) if complete => {
                        entries.push(e);
                        good_len += n as u64;
                    }
                    Ok(_) | Err(_) if !complete => {
                        torn = Some(line_no);
                        break;
                    }
                    Err(reason) => {
                        return Err(CensusJournalError::Corrupt {
                            path: path.to_path_buf(),
                            line: line_no,
                            reason,
                        })
                    }
                    Ok(_) => unreachable!("complete and incomplete lines are both handled"),
                }
            }
        }
        if let Some(line) = torn {
            tracing::warn!(path = %path.display(), line, "census journal: torn last line dropped (a crash mid-write; that message was never acknowledged)");
            file.set_len(good_len).map_err(io("truncate a torn tail"))?;
            file.sync_data().map_err(io("sync"))?;
        }
        Ok((
            CensusJournal {
                path: path.to_path_buf(),
                file: Arc::new(Mutex::new(file)),
            },
            entries,
        ))
    }

    /// Appends one accepted ADT message; returns once it is on disk.
    pub async fn append(
        &self,
        source: &str,
        receive_time: Timestamp,
        hl7: &[u8],
    ) -> Result<(), CensusJournalError> {
        let line = Line {
            source: source.to_string(),
            receive_ms: receive_time.millis(),
            hl7: base64::engine::general_purpose::STANDARD.encode(hl7),
        };
        let mut bytes = serde_json::to_vec(&line).map_err(|e| CensusJournalError::Corrupt {
            path: self.path.clone(),
            line: 0,
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        let (file, path) = (self.file.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let mut f = file.lock().unwrap_or_else(PoisonError::into_inner);
            let io = |op: &'static str| {
                let path = path.clone();
                move |source| CensusJournalError::Io { op, path, source }
            };
            f.write_all(&bytes).map_err(io("append"))?;
            f.sync_data().map_err(io("sync"))
        })
        .await
        .map_err(|e| CensusJournalError::Task(e.to_string()))?
    }
}

fn parse_line(buf: &[u8]) -> Result<JournalEntry, String> {
    let text = buf.strip_suffix(b"\n").unwrap_or(buf);
    let line: Line = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let hl7 = base64::engine::general_purpose::STANDARD
        .decode(line.hl7.as_bytes())
        .map_err(|e| format!("hl7: {e}"))?;
    Ok(JournalEntry {
        source: line.source,
        receive_time: Timestamp::from_millis(line.receive_ms),
        hl7,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn entries_come_back_in_order_with_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("census.journal");
        let (j, before) = CensusJournal::open(&path).unwrap();
        assert!(before.is_empty());
        let latin1 =
            b"MSH|^~\\&|ADT||||20260105||ADT^A01|1|P|2.5|||||8859/1\rPID|||1||M\xfcller\r".to_vec();
        rt().block_on(async {
            j.append("adt", Timestamp::from_millis(1000), &latin1)
                .await
                .unwrap();
            j.append("adt", Timestamp::from_millis(2000), b"MSH|two")
                .await
                .unwrap();
        });
        drop(j);
        let (_, got) = CensusJournal::open(&path).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].hl7, latin1);
        assert_eq!(got[0].receive_time, Timestamp::from_millis(1000));
        assert_eq!(got[1].hl7, b"MSH|two");
        assert_eq!(got[1].source, "adt");
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_cut_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("census.journal");
        let (j, _) = CensusJournal::open(&path).unwrap();
        rt().block_on(async {
            j.append("adt", Timestamp::from_millis(1), b"MSH|one")
                .await
                .unwrap();
        });
        drop(j);
        let whole = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"source\":\"adt\",\"rece").unwrap();
        drop(f);
        let (j, got) = CensusJournal::open(&path).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        // Appends continue after the cut, not after the garbage.
        rt().block_on(async {
            j.append("adt", Timestamp::from_millis(2), b"MSH|two")
                .await
                .unwrap();
        });
        drop(j);
        let (_, got) = CensusJournal::open(&path).unwrap();
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn a_bad_line_in_the_middle_is_an_error_not_a_silent_skip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("census.journal");
        std::fs::write(
            &path,
            "not json\n{\"source\":\"a\",\"receive_ms\":1,\"hl7\":\"\"}\n",
        )
        .unwrap();
        match CensusJournal::open(&path) {
            Err(CensusJournalError::Corrupt { line, .. }) => assert_eq!(line, 1),
            other => panic!(
                "expected a corrupt-line error, got {:?}",
                other.map(|r| r.1)
            ),
        }
    }
}
