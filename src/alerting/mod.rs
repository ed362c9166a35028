//! Alerting: score sets → rule alerts (rules, hysteresis, re-alert suppression, levels) →
//! episodes people acknowledge and escalate → store, audit trail and delivery sinks.
//!
//! - [`engine`]: per rule group, when an alert raises and clears. Pure: time from the score set.
//! - [`lifecycle`]: one episode per patient across rules; people's transitions; escalation and
//!   re-notification timers. Pure: `now` passed in.
//! - [`store`]: episodes, their history and the audit trail (SQLite or PostgreSQL).
//! - [`service`]: the lifecycle, the store, subscribers and delivery sinks behind one handle.
//! - [`delivery`], [`pcd04`]: IHE PCD-04 over MLLP, signed webhooks, MQTT, with retries and a
//!   degraded state; [`sinks`]: the console and JSON-lines record of rule alerts.

pub mod delivery;
pub mod engine;
pub mod lifecycle;
pub mod pcd04;
pub mod rules;
pub mod service;
pub mod sinks;
pub mod store;

pub use engine::{alert_id, explain, AlertEngine};
pub use lifecycle::{Action, AlertView, Lifecycle, LifecycleSettings, Transition};
pub use rules::{AlertRules, Rule, Trigger};
pub use service::{AlertService, Burden};
pub use store::{AlertFilter, AlertStore, AuditEntry};
