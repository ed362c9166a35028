//! Alerting: score sets → alert transitions (rules, hysteresis, re-alert suppression, levels)
//! → delivery sinks. The lifecycle ([`engine`]) is pure and takes time from the score set;
//! only the sinks do I/O.

pub mod engine;
pub mod rules;
pub mod sinks;

pub use engine::{alert_id, explain, AlertEngine};
pub use rules::{AlertRules, Rule, Trigger};
