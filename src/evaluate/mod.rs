//! Evaluation commands: replays of public data through the real pipeline, compared with the
//! community's reference results.
//!
//! Owns importing, driving the normalizer and scorer on virtual time, and the agreement report.
//! It must not score anything itself: every number it reports comes from the live scorer.

pub mod metrics;
pub mod mimic_sofa;
pub mod physionet;
pub mod plot;
pub mod report;
pub mod train;
