//! Normalize: decoded messages → [`Observation`](crate::model::Observation)s and census events.
//!
//! Owns code mapping (MDC/LOINC → parameter, from `device-profiles/`), unit conversion to the
//! canonical UCUM unit of each parameter, plausibility and artifact flags (flagged values are
//! kept and counted, never dropped), device clock offsets, and the bed ↔ patient census.
//! It must not score or decide anything clinical beyond "is this value believable".

pub mod census;
pub mod number;
pub mod tables;
pub mod units;

pub use tables::NormalizeTables;
pub mod normalizer;

pub use normalizer::{DeviceOrigin, NormalizeError, NormalizeSettings, Normalized, Normalizer};
