//! The normalized reading every source produces and every stage after `normalize` consumes.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

impl CodeSystem {
    /// The name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeSystem::Mdc => "MDC",
            CodeSystem::Loinc => "LOINC",
            CodeSystem::Local => "LOCAL",
        }
    }
}

/// Text an observation carries that usually comes from a fixed vocabulary (codes, reference
/// ids, units): borrowed from the loaded code tables when it is one of theirs, so the common
/// reading costs no allocation; owned otherwise.
pub type Term = Cow<'static, str>;

/// A coded parameter, e.g. `MDC 150456 MDC_PULS_OXIM_SAT_O2` or `LOINC 2524-7`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Code {
    pub system: CodeSystem,
    pub code: Term,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refid: Option<Term>,
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
    /// The device itself flagged the reading (questionable, artifact, demo data).
    DeviceFlagged,
}

impl Quality {
    /// The name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Artifact => "artifact",
            Quality::OutOfRange => "out_of_range",
            Quality::Sentinel => "sentinel",
            Quality::Stale => "stale",
            Quality::ManualEntry => "manual_entry",
            Quality::Calibrating => "calibrating",
            Quality::UnitUnknown => "unit_unknown",
            Quality::DeviceFlagged => "device_flagged",
        }
    }
}

/// The device a reading came from. Strings shared by every reading of a message are `Arc<str>`:
/// a clone per reading is a counter increment, not an allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRef {
    pub id: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// Where a reading entered vigil, for audit back to the raw message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// `hl7`, `serial`, `mqtt`.
    pub protocol: Arc<str>,
    /// The configured source name.
    pub source: Arc<str>,
    /// The message id (HL7 MSH-10) or a frame sequence number.
    pub message: Arc<str>,
}

/// Where a reading belongs and where it came from: the same for every reading of a message
/// from one device, so those readings share one copy (one reference count per reading instead
/// of one per string).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub site: Option<Arc<str>>,
    pub unit: Option<Arc<str>>,
    pub bed: Option<Arc<str>>,
    /// Encounter id, absent while the bed has no admitted patient.
    pub patient: Option<Arc<str>>,
    pub device: DeviceRef,
    pub source: SourceRef,
}

/// One normalized reading. In JSON the [`Origin`]'s fields sit beside the reading's own, as
/// `site`, `unit`, `bed`, `patient`, `device` and `source`.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub schema: u32,
    /// Stable hash of device + code + device time + value: repeats of one reading share it.
    /// See [`observation_id`].
    pub id: ObsId,
    /// Site, unit, bed, patient, device and source, shared with the message's other readings.
    pub origin: Arc<Origin>,
    pub code: Code,
    /// What the scorer knows this reading as; absent for codes no score uses.
    pub param: Option<Param>,
    pub value: Value,
    /// UCUM unit of `value` (canonical for `param` when `param` is set).
    pub ucum: Term,
    pub device_time: Option<Timestamp>,
    pub receive_time: Timestamp,
    /// Device time mapped onto the gateway clock; the time scoring uses.
    pub corrected_time: Timestamp,
    pub quality: Vec<Quality>,
}

impl Observation {
    /// True when no quality flag excludes the reading from scoring.
    pub fn is_usable(&self) -> bool {
        self.quality.is_empty()
    }

    pub fn numeric(&self) -> Option<f64> {
        self.value.as_f64()
    }

    pub fn site(&self) -> Option<&str> {
        self.origin.site.as_deref()
    }

    pub fn unit(&self) -> Option<&str> {
        self.origin.unit.as_deref()
    }

    pub fn bed(&self) -> Option<&str> {
        self.origin.bed.as_deref()
    }

    /// Encounter id, absent while the bed has no admitted patient.
    pub fn patient(&self) -> Option<&str> {
        self.origin.patient.as_deref()
    }

    pub fn device(&self) -> &DeviceRef {
        &self.origin.device
    }

    pub fn source(&self) -> &SourceRef {
        &self.origin.source
    }

    /// The partition key: patient, else `bed:<unit>/<bed>`.
    pub fn key(&self) -> String {
        let o = &*self.origin;
        match (&o.patient, &o.bed) {
            (Some(p), _) => p.to_string(),
            (None, Some(b)) => format!("bed:{}/{}", o.unit.as_deref().unwrap_or(""), b),
            (None, None) => format!("device:{}", o.device.id),
        }
    }
}

/// The JSON form of an [`Observation`], borrowed for writing: flat, as it has always been.
#[derive(Serialize)]
struct ObservationOut<'a> {
    schema: u32,
    id: ObsId,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<&'a Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bed: Option<&'a Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patient: Option<&'a Arc<str>>,
    device: &'a DeviceRef,
    code: &'a Code,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<Param>,
    value: &'a Value,
    ucum: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_time: Option<Timestamp>,
    receive_time: Timestamp,
    corrected_time: Timestamp,
    #[serde(skip_serializing_if = "<[Quality]>::is_empty")]
    quality: &'a [Quality],
    source: &'a SourceRef,
}

/// The JSON form of an [`Observation`], owned for reading.
#[derive(Deserialize)]
struct ObservationIn {
    schema: u32,
    id: ObsId,
    #[serde(default)]
    site: Option<Arc<str>>,
    #[serde(default)]
    unit: Option<Arc<str>>,
    #[serde(default)]
    bed: Option<Arc<str>>,
    #[serde(default)]
    patient: Option<Arc<str>>,
    device: DeviceRef,
    code: Code,
    #[serde(default)]
    param: Option<Param>,
    value: Value,
    ucum: Term,
    #[serde(default)]
    device_time: Option<Timestamp>,
    receive_time: Timestamp,
    corrected_time: Timestamp,
    #[serde(default)]
    quality: Vec<Quality>,
    source: SourceRef,
}

impl Serialize for Observation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let o = &*self.origin;
        ObservationOut {
            schema: self.schema,
            id: self.id,
            site: o.site.as_ref(),
            unit: o.unit.as_ref(),
            bed: o.bed.as_ref(),
            patient: o.patient.as_ref(),
            device: &o.device,
            code: &self.code,
            param: self.param,
            value: &self.value,
            ucum: &self.ucum,
            device_time: self.device_time,
            receive_time: self.receive_time,
            corrected_time: self.corrected_time,
            quality: &self.quality,
            source: &o.source,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Observation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = ObservationIn::deserialize(d)?;
        Ok(Observation {
            schema: w.schema,
            id: w.id,
            origin: Arc::new(Origin {
                site: w.site,
                unit: w.unit,
                bed: w.bed,
                patient: w.patient,
                device: w.device,
                source: w.source,
            }),
            code: w.code,
            param: w.param,
            value: w.value,
            ucum: w.ucum,
            device_time: w.device_time,
            receive_time: w.receive_time,
            corrected_time: w.corrected_time,
            quality: w.quality,
        })
    }
}

/// An observation id: 128 bits, written as 32 lower-case hex digits in JSON and logs. Held as a
/// number so making, copying and comparing one costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObsId(pub u128);

impl ObsId {
    /// The 32 hex digits, on the stack.
    pub fn to_hex(self) -> HexId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0.to_be_bytes()) {
            pair.copy_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]);
        }
        HexId(out)
    }

    /// An id for a reading that has no natural one (tests, synthetic sources): the hash of
    /// `text`.
    pub fn of_text(text: &str) -> ObsId {
        ObsId(xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
    }
}

/// An [`ObsId`] as text, without an allocation.
#[derive(Clone, Copy)]
pub struct HexId([u8; 32]);

impl HexId {
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for ObsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl fmt::Debug for ObsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObsId({self})")
    }
}

/// Why a text is not an observation id.
#[derive(Debug, thiserror::Error)]
#[error("an observation id is 32 hex digits, not {0:?}")]
pub struct BadObsId(String);

impl std::str::FromStr for ObsId {
    type Err = BadObsId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadObsId(s.chars().take(40).collect()));
        }
        u128::from_str_radix(s, 16)
            .map(ObsId)
            .map_err(|_| BadObsId(s.to_string()))
    }
}

impl Serialize for ObsId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.to_hex().as_str())
    }
}

impl<'de> Deserialize<'de> for ObsId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The stable observation id: XXH3-128 (a fixed, published algorithm: the same on every platform
/// and release) over device, code, time and value. A dedup key, not a security boundary, so a
/// cryptographic hash would only cost time.
#[inline]
pub fn observation_id(device: &str, code: &Code, time: Timestamp, value: &Value) -> ObsId {
    let text = match value {
        Value::Num(_) => &[][..],
        Value::Text(s) => s.as_bytes(),
    };
    // device 0 code 0 time(8) tag value: laid out on the stack for the common short case.
    let len = device.len() + code.code.len() + 2 + 8 + 1 + text.len().max(8);
    let mut stack = [0u8; 96];
    let mut heap = Vec::new();
    let buf: &mut [u8] = match stack.get_mut(..len) {
        Some(b) => b,
        None => {
            heap.resize(len, 0);
            &mut heap
        }
    };
    let mut w = Writer { buf, at: 0 };
    w.put(device.as_bytes());
    w.put(&[0]);
    w.put(code.code.as_bytes());
    w.put(&[0]);
    w.put(&time.millis().to_be_bytes());
    match value {
        Value::Num(v) => {
            w.put(b"n");
            w.put(&v.to_bits().to_be_bytes());
        }
        Value::Text(s) => {
            w.put(b"t");
            w.put(s.as_bytes());
        }
    }
    let used = w.at;
    ObsId(xxhash_rust::xxh3::xxh3_128(
        buf.get(..used).unwrap_or_default(),
    ))
}

/// Appends into a buffer sized beforehand; never panics (a short buffer truncates).
struct Writer<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.at..self.at + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.at += bytes.len();
        }
    }
}

/// Lower-case hex of the first 16 bytes of a digest.
pub fn hex16(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (pair, &b) in out.chunks_exact_mut(2).zip(digest.iter().take(16)) {
        pair.copy_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]);
    }
    let n = 2 * digest.len().min(16);
    // Only ASCII hex digits were written.
    std::str::from_utf8(out.get(..n).unwrap_or_default())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(c: &str) -> Code {
        Code {
            system: CodeSystem::Mdc,
            code: c.to_string().into(),
            refid: None,
        }
    }

    #[test]
    fn observation_id_is_pinned_and_separates_its_inputs() {
        let t = Timestamp(1_740_824_100_000);
        let id = observation_id("dev1", &code("150456"), t, &Value::Num(94.0));
        // Pinned: ids are dedup keys stored downstream, so the scheme must never drift.
        assert_eq!(id.to_string(), "f80ed0b2b29872a81de9695e40e80498");
        let others = [
            observation_id("dev1", &code("150456"), t, &Value::Num(95.0)),
            observation_id("dev2", &code("150456"), t, &Value::Num(94.0)),
            observation_id("dev1", &code("150457"), t, &Value::Num(94.0)),
            observation_id("dev1", &code("150456"), t.plus_ms(1), &Value::Num(94.0)),
            observation_id("dev1", &code("150456"), t, &Value::Text("94".into())),
            // The separator keeps device/code boundaries apart.
            observation_id("dev11", &code("50456"), t, &Value::Num(94.0)),
        ];
        for o in &others {
            assert_ne!(*o, id);
        }
    }

    #[test]
    fn observation_id_takes_long_text_values() {
        let t = Timestamp(0);
        let long = "x".repeat(1000);
        let a = observation_id("d", &code("1"), t, &Value::Text(long.clone()));
        let b = observation_id("d", &code("1"), t, &Value::Text(long + "y"));
        assert_ne!(a, b);
    }

    #[test]
    fn observation_ids_travel_as_32_hex_digits_and_come_back() {
        let id = ObsId(0x00ab_0000_0000_0000_0000_0000_0000_0f01);
        let json = serde_json::to_string(&id).unwrap_or_default();
        assert_eq!(json, "\"00ab0000000000000000000000000f01\"");
        let back: ObsId = serde_json::from_str(&json).unwrap_or(ObsId(0));
        assert_eq!(back, id);
        // Upper-case digits are the same number; anything else is refused with the text.
        assert_eq!(
            "00AB0000000000000000000000000F01".parse::<ObsId>().ok(),
            Some(id)
        );
        for bad in [
            "",
            "ab",
            "00ab0000000000000000000000000f0",
            "g0ab0000000000000000000000000f01",
        ] {
            let err = serde_json::from_str::<ObsId>(&format!("\"{bad}\"")).err();
            assert!(
                err.is_some_and(|e| e.to_string().contains("32 hex digits")),
                "{bad}"
            );
        }
    }

    #[test]
    fn hex16_is_lower_case_and_takes_sixteen_bytes() {
        let bytes: Vec<u8> = (0u8..20).map(|i| i * 13).collect();
        assert_eq!(hex16(&bytes), "000d1a2734414e5b6875828f9ca9b6c3");
    }
}
