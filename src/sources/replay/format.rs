//! The replay format: raw traffic with arrival times, one JSON object per line.
//!
//! ```text
//! {"format":"vigil-replay","version":1,"description":"…","sources":[{"name":"monitors","protocol":"hl7"}]}
//! {"t":"2026-01-05T00:00:00.000Z","source":"monitors","text":"MSH|^~\\&|…\rPID|…\r"}
//! {"t":"2026-01-05T00:00:01.500Z","source":"vent-3","b64":"G1EC…"}
//! ```
//! The first line is the [`RecordingHeader`]; every further line is one [`RecordingEntry`]: what
//! one source received at arrival time `t` — an HL7 message as text, or raw bytes (serial
//! frames, MQTT payloads) as base64, with an optional MQTT `topic`. Entries are in
//! non-decreasing `t`. Files ending in `.gz` are gzip-compressed. See `docs/replay-format.md`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

pub const FORMAT_NAME: &str = "vigil-replay";
pub const FORMAT_VERSION: u32 = 1;

/// The protocol a recorded source speaks, which picks the decoder on replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedProtocol {
    /// HL7 v2 messages (as received over MLLP, without the MLLP envelope).
    Hl7,
    /// Raw serial bytes, decoded by a driver or device profile named in `profile`.
    Serial,
    /// MQTT payloads with their topic.
    Mqtt,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedSource {
    pub name: String,
    pub protocol: RecordedProtocol,
    /// Serial driver or device profile name, for `serial` sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The bed a serial device stands at (its readings go to the bed's patient).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bed: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingHeader {
    pub format: String,
    pub version: u32,
    #[serde(default)]
    pub description: String,
    pub sources: Vec<RecordedSource>,
    /// Attribution for any real data the recording contains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<String>,
}

impl RecordingHeader {
    pub fn new(description: impl Into<String>, sources: Vec<RecordedSource>) -> Self {
        RecordingHeader {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            description: description.into(),
            sources,
            attribution: None,
        }
    }

    pub fn source(&self, name: &str) -> Option<&RecordedSource> {
        self.sources.iter().find(|s| s.name == name)
    }
}

/// One arrival: what a source received at time `t`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingEntry {
    pub t: Timestamp,
    pub source: String,
    /// Peer address or port, for audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64: Option<String>,
}

impl RecordingEntry {
    pub fn text(t: Timestamp, source: impl Into<String>, text: impl Into<String>) -> Self {
        RecordingEntry {
            t,
            source: source.into(),
            peer: None,
            topic: None,
            text: Some(text.into()),
            b64: None,
        }
    }

    pub fn bytes(t: Timestamp, source: impl Into<String>, bytes: &[u8]) -> Self {
        RecordingEntry {
            t,
            source: source.into(),
            peer: None,
            topic: None,
            text: None,
            b64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }

    /// The payload bytes.
    pub fn payload(&self) -> Result<Vec<u8>, RecordingError> {
        match (&self.text, &self.b64) {
            (Some(t), None) => Ok(t.as_bytes().to_vec()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| RecordingError::Entry {
                    line: 0,
                    reason: format!("bad base64 payload: {e}"),
                }),
            _ => Err(RecordingError::Entry {
                line: 0,
                reason: "an entry needs exactly one of `text` and `b64`".into(),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("cannot read recording: {0}")]
    Io(#[from] std::io::Error),
    #[error("line 1: not a vigil recording header: {0}")]
    Header(String),
    #[error("line {line}: {reason}")]
    Entry { line: usize, reason: String },
}

/// Reads a recording line by line (gzip when the name ends in `.gz` or the bytes say so).
pub struct RecordingReader {
    lines: Box<dyn BufRead + Send>,
    pub header: RecordingHeader,
    line_no: usize,
    last_t: Option<Timestamp>,
    buf: String,
}

impl RecordingReader {
    pub fn open(path: &Path) -> Result<Self, RecordingError> {
        let file = std::fs::File::open(path)?;
        Self::from_reader(Box::new(file))
    }

    /// Reads from any byte stream; gzip is detected from its magic bytes.
    pub fn from_reader(inner: Box<dyn Read + Send>) -> Result<Self, RecordingError> {
        let mut buffered = BufReader::with_capacity(1 << 16, inner);
        let is_gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        let mut lines: Box<dyn BufRead + Send> = if is_gzip {
            Box::new(BufReader::with_capacity(
                1 << 16,
                flate2::bufread::MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        let mut first = String::new();
        lines.read_line(&mut first)?;
        let header: RecordingHeader = serde_json::from_str(first.trim_end())
            .map_err(|e| RecordingError::Header(e.to_string()))?;
        if header.format != FORMAT_NAME {
            return Err(RecordingError::Header(format!(
                "format is {:?}, expected {FORMAT_NAME:?}",
                header.format
            )));
        }
        if header.version != FORMAT_VERSION {
            return Err(RecordingError::Header(format!(
                "version {} is not supported (this build reads version {FORMAT_VERSION})",
                header.version
            )));
        }
        Ok(RecordingReader {
            lines,
            header,
            line_no: 1,
            last_t: None,
            buf: String::new(),
        })
    }

    /// The next entry, `Ok(None)` at the end. Checks order and that the source is declared.
    pub fn next_entry(&mut self) -> Result<Option<RecordingEntry>, RecordingError> {
        loop {
            self.buf.clear();
            if self.lines.read_line(&mut self.buf)? == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let line = self.buf.trim_end();
            if line.is_empty() {
                continue;
            }
            let entry: RecordingEntry =
                serde_json::from_str(line).map_err(|e| RecordingError::Entry {
                    line: self.line_no,
                    reason: e.to_string(),
                })?;
            if self.header.source(&entry.source).is_none() {
                return Err(RecordingError::Entry {
                    line: self.line_no,
                    reason: format!("source {:?} is not declared in the header", entry.source),
                });
            }
            if let Some(prev) = self.last_t {
                if entry.t < prev {
                    return Err(RecordingError::Entry {
                        line: self.line_no,
                        reason: format!("time {} goes back before {}", entry.t, prev),
                    });
                }
            }
            self.last_t = Some(entry.t);
            return Ok(Some(entry));
        }
    }

    pub fn line(&self) -> usize {
        self.line_no
    }
}

/// Writes a recording; entries must be pushed in time order.
pub struct RecordingWriter<W: Write> {
    out: W,
    last_t: Option<Timestamp>,
}

impl<W: Write> RecordingWriter<W> {
    pub fn new(mut out: W, header: &RecordingHeader) -> std::io::Result<Self> {
        serde_json::to_writer(&mut out, header)?;
        out.write_all(b"\n")?;
        Ok(RecordingWriter { out, last_t: None })
    }

    pub fn push(&mut self, entry: &RecordingEntry) -> std::io::Result<()> {
        if let Some(prev) = self.last_t {
            if entry.t < prev {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "entry at {} is before the previous one at {}",
                        entry.t, prev
                    ),
                ));
            }
        }
        self.last_t = Some(entry.t);
        serde_json::to_writer(&mut self.out, entry)?;
        self.out.write_all(b"\n")
    }

    pub fn finish(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RecordingHeader {
        RecordingHeader::new(
            "test",
            vec![RecordedSource {
                name: "monitors".into(),
                protocol: RecordedProtocol::Hl7,
                profile: None,
                unit: None,
                bed: None,
            }],
        )
    }

    #[test]
    fn round_trip_plain_and_gzip() {
        let entries = vec![
            RecordingEntry::text(Timestamp(1000), "monitors", "MSH|^~\\&|A\rPID|||1\r"),
            RecordingEntry::bytes(Timestamp(2000), "monitors", &[0xC0, 0x11, 0x7D, 0xC1]),
        ];
        let mut w = RecordingWriter::new(Vec::new(), &header()).unwrap();
        for e in &entries {
            w.push(e).unwrap();
        }
        let plain = w.finish();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        for bytes in [plain, gz] {
            let mut r =
                RecordingReader::from_reader(Box::new(std::io::Cursor::new(bytes))).unwrap();
            assert_eq!(r.next_entry().unwrap().unwrap(), entries[0]);
            let second = r.next_entry().unwrap().unwrap();
            assert_eq!(second.payload().unwrap(), vec![0xC0, 0x11, 0x7D, 0xC1]);
            assert!(r.next_entry().unwrap().is_none());
        }
    }

    #[test]
    fn out_of_order_and_undeclared_sources_are_positioned_errors() {
        let h = serde_json::to_string(&header()).unwrap();
        let text = format!(
            "{h}\n{{\"t\":\"2026-01-01T00:00:01Z\",\"source\":\"monitors\",\"text\":\"x\"}}\n{{\"t\":\"2026-01-01T00:00:00Z\",\"source\":\"monitors\",\"text\":\"y\"}}\n"
        );
        let mut r = RecordingReader::from_reader(Box::new(std::io::Cursor::new(text.into_bytes())))
            .unwrap();
        r.next_entry().unwrap();
        let err = r.next_entry().unwrap_err().to_string();
        assert!(err.starts_with("line 3: time"), "{err}");

        let text = format!(
            "{h}\n{{\"t\":\"2026-01-01T00:00:01Z\",\"source\":\"pumps\",\"text\":\"x\"}}\n"
        );
        let mut r = RecordingReader::from_reader(Box::new(std::io::Cursor::new(text.into_bytes())))
            .unwrap();
        let err = r.next_entry().unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("pumps"), "{err}");
    }
}
