//! `vigil decode`: a recorded byte capture through a driver, offline. The same driver and
//! normalizer as a live port; the output is one observation per line.
//!
//! Two inputs are read: a vigil replay recording (`.jsonl[.gz]`, as a serial source's
//! `capture` writes: every read with its time) and a raw byte file (as a logic analyser, a
//! terminal program or `socat -x` would save it). A raw file has no times: each byte is taken
//! to arrive at `start` plus its position at the line rate (10 bits a byte at `baud`), which is
//! when a port would have delivered it.

use std::io::{self, Read};
use std::sync::Mutex;

use crate::model::{IngestRecord, Observation, Timestamp};
use crate::normalize::Normalizer;
use crate::protocol::device::{DeviceDriver, FrameStats};
use crate::sources::replay::format::{RecordedProtocol, RecordingError, RecordingReader};

use super::DeviceFeed;

/// What a decode saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecodeSummary {
    pub bytes: u64,
    pub frames: FrameStats,
    /// Readings the driver decoded.
    pub readings: u64,
    /// Observations after normalization.
    pub observations: u64,
    /// Device sessions the driver saw end (monitor released the association, silence).
    pub disconnects: u64,
}

/// Where the bytes come from.
pub enum CaptureInput {
    /// A replay recording; only entries of `serial` sources are decoded (all of them unless a
    /// source is named).
    Recording {
        reader: Box<RecordingReader>,
        source: Option<String>,
    },
    /// Raw device bytes.
    Raw {
        reader: Box<dyn Read + Send>,
        start: Timestamp,
        baud: u32,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("reading the capture: {0}")]
    Io(#[from] io::Error),
    #[error("recording: {0}")]
    Recording(#[from] RecordingError),
    #[error("the recording has no serial source{}", .0.as_deref().map(|s| format!(" named {s:?}")).unwrap_or_default())]
    NoSerialSource(Option<String>),
}

/// Opens `path` as a recording when it is one, else as raw bytes.
pub fn open_capture(
    path: &std::path::Path,
    source: Option<String>,
    start: Timestamp,
    baud: u32,
) -> Result<CaptureInput, DecodeError> {
    let mut head = [0u8; 64];
    let n = {
        let mut f = std::fs::File::open(path)?;
        read_up_to(&mut f, &mut head)?
    };
    let head = head.get(..n).unwrap_or_default();
    let looks_like_recording = head.starts_with(&[0x1f, 0x8b])
        || (head.starts_with(b"{") && head.windows(12).any(|w| w == b"vigil-replay"));
    if looks_like_recording {
        Ok(CaptureInput::Recording {
            reader: Box::new(RecordingReader::open(path)?),
            source,
        })
    } else {
        Ok(CaptureInput::Raw {
            reader: Box::new(std::fs::File::open(path)?),
            start,
            baud,
        })
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(buf.get_mut(n..).unwrap_or_default())? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Decodes a capture, calling `emit` for every observation in order.
pub fn decode_capture(
    driver: &mut dyn DeviceDriver,
    input: CaptureInput,
    normalizer: &Mutex<Normalizer>,
    feed: &mut DeviceFeed,
    mut emit: impl FnMut(&Observation) -> io::Result<()>,
) -> Result<DecodeSummary, DecodeError> {
    let mut summary = DecodeSummary::default();
    let mut events = Vec::new();
    // Decoding only listens: whatever the driver would send is dropped.
    let mut replies = Vec::new();
    let mut step =
        |bytes: &[u8], now: Timestamp, summary: &mut DecodeSummary| -> Result<(), DecodeError> {
            summary.bytes += bytes.len() as u64;
            driver.on_bytes(bytes, now, &mut events, &mut replies);
            replies.clear();
            let outcome = feed.on_events(&mut events, normalizer, now);
            summary.readings += outcome.readings as u64;
            if outcome.disconnected.is_some() {
                summary.disconnects += 1;
            }
            for n in &outcome.normalized {
                for rec in &n.records {
                    if let IngestRecord::Observation(o) = rec {
                        summary.observations += 1;
                        emit(o)?;
                    }
                }
            }
            Ok(())
        };
    match input {
        CaptureInput::Raw {
            mut reader,
            start,
            baud,
        } => {
            let mut buf = vec![0u8; 4096];
            let mut offset: u64 = 0;
            let bits_per_ms = f64::from(baud.max(1)) / 1000.0;
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                // Small pieces, as a port delivers them, so every piece gets its own time.
                for chunk in buf.get(..n).unwrap_or_default().chunks(64) {
                    offset += chunk.len() as u64;
                    let ms = (offset as f64 * 10.0 / bits_per_ms) as i64;
                    step(chunk, start.plus_ms(ms), &mut summary)?;
                }
            }
        }
        CaptureInput::Recording { mut reader, source } => {
            let wanted: Vec<String> = reader
                .header
                .sources
                .iter()
                .filter(|s| s.protocol == RecordedProtocol::Serial)
                .filter(|s| source.as_ref().is_none_or(|n| *n == s.name))
                .map(|s| s.name.clone())
                .collect();
            if wanted.is_empty() {
                return Err(DecodeError::NoSerialSource(source));
            }
            while let Some(entry) = reader.next_entry()? {
                if !wanted.contains(&entry.source) {
                    continue;
                }
                let bytes = entry.payload()?;
                step(&bytes, entry.t, &mut summary)?;
            }
        }
    }
    summary.frames = driver.stats();
    Ok(summary)
}
