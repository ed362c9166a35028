//! Patient ↔ bed associations, from ADT.

use serde::{Deserialize, Serialize};

use super::Timestamp;

pub const CENSUS_SCHEMA: u32 = 1;

/// What an ADT event did to the census.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CensusKind {
    /// A01/A04: the patient now occupies the bed.
    Admit,
    /// A02: moved from `prior_bed` to `bed`.
    Transfer,
    /// A03: the bed is free.
    Discharge,
    /// A08: demographics or measurements changed (weight, height).
    Update,
    /// A11: the admit was entered in error.
    CancelAdmit,
    /// A12: the transfer was entered in error; the patient is back in `bed`.
    CancelTransfer,
    /// A13: the discharge was entered in error; the patient is back in `bed`.
    CancelDischarge,
    /// A40: `prior_patient` is merged into `patient`.
    Merge,
}

impl CensusKind {
    /// The name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CensusKind::Admit => "admit",
            CensusKind::Transfer => "transfer",
            CensusKind::Discharge => "discharge",
            CensusKind::Update => "update",
            CensusKind::CancelAdmit => "cancel_admit",
            CensusKind::CancelTransfer => "cancel_transfer",
            CensusKind::CancelDischarge => "cancel_discharge",
            CensusKind::Merge => "merge",
        }
    }
}

/// One change to the census.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CensusEvent {
    pub schema: u32,
    pub kind: CensusKind,
    /// Encounter id (visit number, else the first patient identifier).
    pub patient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_bed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_kg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height_cm: Option<f64>,
    /// Event time (EVN-2 / MSH-7).
    pub time: super::Timestamp,
    pub receive_time: Timestamp,
    /// HL7 control id of the message that carried it.
    pub message: String,
}
