//! The data contracts between stages: observations, census events, scores and alerts.
//! Every record carries a `schema` version.

mod alert;
mod census;
mod observation;
mod param;
mod score;
mod time;

pub use alert::{Alert, AlertState, Evidence, Severity, ALERT_SCHEMA};
pub use census::{CensusEvent, CensusKind, CENSUS_SCHEMA};
pub use observation::{
    hex16, observation_id, BadObsId, Code, CodeSystem, DeviceRef, HexId, ObsId, Observation,
    Origin, Quality, SourceRef, Term, Value, OBSERVATION_SCHEMA,
};
pub use param::{is_sedative_label, Drug, Param};
pub use score::{Component, Score, ScoreKind, ScoreSet, SCORE_SCHEMA};
pub use time::{Timestamp, HOUR_MS, MINUTE_MS};

use serde::{Deserialize, Serialize};

/// What travels on the observations topic: readings and the census changes that give them a
/// patient, in arrival order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// Observations are the common case; boxing them would cost an allocation per reading.
#[allow(clippy::large_enum_variant)]
pub enum IngestRecord {
    Observation(Observation),
    Census(CensusEvent),
}
