//! Sources own the I/O: they read bytes from the outside world, stamp receive times and hand
//! decoded records on. They are the only stage that reads a clock.

pub mod census_journal;
pub mod deadletter;
pub mod mllp;
pub mod mqtt;
pub mod replay;
pub mod serial;

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// What a network source (MLLP listener, MQTT subscriber) shares with the pipeline.
#[derive(Clone)]
pub struct SourceContext {
    pub normalizer: Arc<Mutex<crate::normalize::Normalizer>>,
    pub out: crate::bus::Publisher<crate::bus::IngestBatch>,
    pub metrics: Arc<crate::telemetry::Metrics>,
    pub dead_letters: Option<Arc<Mutex<deadletter::DeadLetterStore>>>,
    /// Where accepted ADT messages are journaled before their acknowledgement (a gateway with
    /// a data directory), so the census survives a restart.
    pub census_journal: Option<Arc<census_journal::CensusJournal>>,
    pub stop: CancellationToken,
}
