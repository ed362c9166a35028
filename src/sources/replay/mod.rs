//! Replay: recorded raw traffic fed through the real decoders on virtual time.

pub mod demo;
pub mod format;
pub mod hl7_writer;
pub mod mimic;
pub mod physionet;

pub use format::{
    RecordedProtocol, RecordedSource, RecordingEntry, RecordingError, RecordingHeader,
    RecordingReader, RecordingWriter,
};
pub mod source;
