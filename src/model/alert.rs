//! Alerts raised for the rapid-response team.

use serde::{Deserialize, Serialize};

use super::{Component, ScoreKind, Timestamp};

pub const ALERT_SCHEMA: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Active,
    Acknowledged,
    Escalated,
    Resolved,
    Suppressed,
}

impl AlertState {
    /// The name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Active => "active",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Escalated => "escalated",
            AlertState::Resolved => "resolved",
            AlertState::Suppressed => "suppressed",
        }
    }
}

/// The score behind an alert, as it stood when the alert changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub kind: ScoreKind,
    pub value: f64,
    pub components: Vec<Component>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// One alert transition (raised, re-raised, resolved).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub schema: u32,
    /// Deterministic: hash of patient + rule + episode start.
    pub id: String,
    pub rule: String,
    pub severity: Severity,
    pub state: AlertState,
    pub patient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bed: Option<String>,
    /// When the condition first held in this episode.
    pub episode_start: Timestamp,
    /// Time of this transition.
    pub at: Timestamp,
    /// A sentence a clinician can read: what crossed which threshold, with values.
    pub reason: String,
    pub evidence: Vec<Evidence>,
}
