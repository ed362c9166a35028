//! The normalized reading every source produces and every stage after `normalize` consumes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Param, Timestamp};

/// Version of the [`Observation`] record layout.
pub const OBSERVATION_SCHEMA: u32 = 1;

/// Terminology a code belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CodeSystem {
    /// ISO/IEEE 11073-10101 nomenclature.
    Mdc,
    Loinc,
    /// A site- or vendor-local code that no standard table covers.
    Local,
}

/// A coded parameter, e.g. `MDC 150456 MDC_PULS_OXIM_SAT_O2` or `LOINC 2524-7`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Code {
    pub system: CodeSystem,
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refid: Option<String>,
}

/// A reading's value: numeric where the device sent a number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Num(f64),
    Text(String),
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(v) => Some(*v),
            Value::Text(_) => None,
        }
    }
}

/// Why a reading should not be trusted as it stands. Flagged readings are kept and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Matched an artifact pattern (e.g. arterial-line flush: pulse pressure collapsed).
    Artifact,
    /// Outside the plausibility range for the parameter.
    OutOfRange,
    /// A vendor sentinel for "no value" (-100, -999, -99.9).
    Sentinel,
    /// Older than the freshness limit when it arrived.
    Stale,
    ManualEntry,
    Calibrating,
    /// The unit could not be converted to the canonical one.
    UnitUnknown,
}

/// The device a reading came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRef {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// Where a reading entered vigil, for audit back to the raw message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// `hl7`, `serial`, `mqtt`.
    pub protocol: String,
    /// The configured source name.
    pub source: String,
    /// The message id (HL7 MSH-10) or a frame sequence number.
    pub message: String,
}

/// One normalized reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub schema: u32,
    /// Stable hash of device + code + device time + value: repeats of one reading share it.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bed: Option<String>,
    /// Encounter id, absent while the bed has no admitted patient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    pub device: DeviceRef,
    pub code: Code,
    /// What the scorer knows this reading as; absent for codes no score uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<Param>,
    pub value: Value,
    /// UCUM unit of `value` (canonical for `param` when `param` is set).
    pub ucum: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_time: Option<Timestamp>,
    pub receive_time: Timestamp,
    /// Device time mapped onto the gateway clock; the time scoring uses.
    pub corrected_time: Timestamp,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quality: Vec<Quality>,
    pub source: SourceRef,
}

impl Observation {
    /// True when no quality flag excludes the reading from scoring.
    pub fn is_usable(&self) -> bool {
        self.quality.is_empty()
    }

    pub fn numeric(&self) -> Option<f64> {
        self.value.as_f64()
    }

    /// The partition key: patient, else `bed:<unit>/<bed>`.
    pub fn key(&self) -> String {
        match (&self.patient, &self.bed) {
            (Some(p), _) => p.clone(),
            (None, Some(b)) => format!("bed:{}/{}", self.unit.as_deref().unwrap_or(""), b),
            (None, None) => format!("device:{}", self.device.id),
        }
    }
}

/// The stable observation id: the first 16 bytes of SHA-256 over device, code, time and value.
pub fn observation_id(device: &str, code: &Code, time: Timestamp, value: &Value) -> String {
    let mut h = Sha256::new();
    h.update(device.as_bytes());
    h.update([0]);
    h.update(code.code.as_bytes());
    h.update([0]);
    h.update(time.millis().to_be_bytes());
    match value {
        Value::Num(v) => h.update(v.to_bits().to_be_bytes()),
        Value::Text(s) => h.update(s.as_bytes()),
    }
    hex16(&h.finalize())
}

/// Lower-case hex of the first 16 bytes of a digest.
pub fn hex16(digest: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(32);
    for b in digest.iter().take(16) {
        let _ = write!(s, "{b:02x}");
    }
    s
}
