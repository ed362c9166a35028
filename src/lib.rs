//! vigil: ICU bedside-monitoring ingest and early-warning daemon.
//!
//! ```text
//!  sources ──> protocol decoders ──> normalize ──> bus ──> scorer ──> alerting ──> sinks
//!  (replay,    (HL7 v2: PCD-01,      (codes, units, (memory  (qSOFA, SOFA,  (rules, hysteresis,
//!   MLLP,       ADT, lab ORU)         plausibility,  or      NEWS2, shock   suppression; console,
//!   serial,                           bed↔patient)   Kafka)  index, septic  JSONL, webhook)
//!   MQTT)                                                    shock)
//! ```
//!
//! - [`protocol`] is sans-I/O: parsing and framing with no tokio, so it can be fuzzed and benched.
//! - [`sources`] own the I/O and stamp receive times (the only place the clock is read).
//! - [`normalize`] turns decoded messages into [`model::Observation`]s and census events.
//! - [`bus`] moves records between stages behind the [`bus::Bus`] seam.
//! - [`scorer`] keeps per-patient rolling state; every score is a pure function of state and `now`.
//! - [`alerting`] turns score sets into alerts against alarm fatigue and delivers them.
//! - [`web`] serves `/metrics`, `/healthz`, `/readyz`.

pub mod alerting;
pub mod app;
pub mod bus;
pub mod config;
pub mod evaluate;
pub mod model;
pub mod normalize;
pub mod protocol;
pub mod scorer;
pub mod sources;
pub mod spool;
pub mod telemetry;
pub mod web;
