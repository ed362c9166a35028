//! MQTT payloads → [`DeviceReport`]s, sans I/O: vigil's own JSON schema and SenML JSON
//! (RFC 8428). No clock: SenML relative times are resolved against the receive time passed in.
//!
//! Both decoders read the whole payload into a `serde_json::Value` first (its size is bounded by
//! the MQTT source's packet limit), then walk it field by field so every error names the field
//! and what was wrong with it (`observations[2].code: expected a number or a string, found a
//! boolean`). Nothing here panics on any input; the fuzz target `mqtt_payload` checks that.
//!
//! # vigil JSON schema
//! ```json
//! {"device": "mon-7", "model": "X2", "patient": "V-1001", "time": "2026-11-22T08:00:00.000Z",
//!  "observations": [
//!    {"code": 150456, "system": "MDC", "refid": "MDC_PULS_OXIM_SAT_O2", "value": 97, "unit": "%",
//!     "time": "2026-11-22T07:59:58.000Z", "channel": "1", "status": "valid"}]}
//! ```
//! `device`, `model`, `patient`, `time` are optional (the topic may name the device and the
//! patient); `observations` is required (it may be empty). Per observation: `code` is a number
//! or a string; `system` is `MDC` (default when the code is numeric or a `refid` is given),
//! `LOINC` or `LOCAL` (default otherwise); an MDC `refid` without a `code` is resolved through
//! [`mdc_code_for_refid`]; `value` is a number or a string (absent or `null` only when `status`
//! is `unavailable`); `unit` is UCUM (default empty); `time` is RFC 3339; `status` is `valid`
//! (default), `questionable` or `unavailable`. Unknown keys are ignored.
//!
//! # SenML
//! Records are resolved as RFC 8428 §4 says: base name + name, base time + time, base unit
//! unless the record has a unit, base value + value; base fields carry forward until replaced.
//! A resolved time below 2²⁸ s is relative to the receive time (§4.5.3), otherwise seconds since
//! the Unix epoch. Labels ending in `_` are refused (§4.4), `bver` above 10 is refused.
//! How names become devices and codes is [`split_senml_name`] and [`senml_code`]; SenML units
//! become UCUM through [`senml_unit_to_ucum`]. `vs` gives a text reading, `vb` a numeric 1 or 0;
//! `vd` (binary data) and sum-only records are not readings (counted in
//! [`PayloadReport::ignored`]).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::device::{DeviceCode, DeviceReading, DeviceReport, ReadingStatus, ReadingValue};
use crate::model::Timestamp;

/// Which decoder a subscription's payloads go through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// vigil's JSON schema (module docs).
    #[default]
    Json,
    /// SenML JSON, RFC 8428 (`application/senml+json`).
    Senml,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Json => "json",
            PayloadFormat::Senml => "senml",
        }
    }
}

/// The readings of one device in one payload, with who the payload says it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PayloadReport {
    /// The device id the payload carries (`device`, or a SenML base name); `None` when only the
    /// topic can name it.
    pub device: Option<String>,
    pub model: Option<String>,
    /// A patient (encounter) named by the payload.
    pub patient: Option<String>,
    /// Readings with status `Unavailable` are not in here (see `unavailable`).
    pub report: DeviceReport,
    /// Readings the device marked unavailable: counted, not emitted.
    pub unavailable: u32,
    /// SenML records that carry no reading vigil uses (binary `vd`, sum-only).
    pub ignored: u32,
}

/// Why a payload could not be decoded. Every variant names the field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PayloadError {
    /// The bytes are not (UTF-8) JSON.
    #[error("not JSON: {reason} at line {line}, column {column}")]
    Syntax {
        line: usize,
        column: usize,
        reason: String,
    },
    /// A field the format requires is absent.
    #[error("{path}: missing")]
    Missing { path: String },
    /// A field has the wrong JSON type.
    #[error("{path}: expected {expected}, found {found}")]
    Type {
        path: String,
        expected: &'static str,
        found: &'static str,
    },
    /// A field has the right type and a value vigil cannot use.
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    /// A SenML pack from a newer version of the format than RFC 8428 (10).
    #[error(
        "{path}: SenML version {version} is newer than 10 (RFC 8428), the version vigil reads"
    )]
    Version { path: String, version: u64 },
}

impl PayloadError {
    /// Metric label and dead-letter kind.
    pub fn kind(&self) -> &'static str {
        match self {
            PayloadError::Syntax { .. } => "syntax",
            PayloadError::Missing { .. } => "missing",
            PayloadError::Type { .. } => "type",
            PayloadError::Invalid { .. } => "invalid",
            PayloadError::Version { .. } => "version",
        }
    }
}

/// Decodes a payload in `format`. `receive_time` resolves SenML relative times.
pub fn decode(
    format: PayloadFormat,
    payload: &[u8],
    receive_time: Timestamp,
) -> Result<Vec<PayloadReport>, PayloadError> {
    match format {
        PayloadFormat::Json => decode_json(payload).map(|r| vec![r]),
        PayloadFormat::Senml => decode_senml(payload, receive_time),
    }
}

fn parse(payload: &[u8]) -> Result<Value, PayloadError> {
    serde_json::from_slice(payload).map_err(|e| PayloadError::Syntax {
        line: e.line(),
        column: e.column(),
        reason: syntax_reason(&e),
    })
}

/// serde_json's message without its " at line L column C" suffix (reported separately).
fn syntax_reason(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s.get(..i).unwrap_or(&s).to_string(),
        None => s,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn type_err(path: impl Into<String>, expected: &'static str, found: &Value) -> PayloadError {
    PayloadError::Type {
        path: path.into(),
        expected,
        found: type_name(found),
    }
}

fn invalid(path: impl Into<String>, reason: impl Into<String>) -> PayloadError {
    PayloadError::Invalid {
        path: path.into(),
        reason: reason.into(),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// An optional string field (`null` counts as absent).
fn opt_str<'v>(
    obj: &'v Map<String, Value>,
    prefix: &str,
    key: &str,
) -> Result<Option<&'v str>, PayloadError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(type_err(join(prefix, key), "a string", other)),
    }
}

/// An optional identifier: a non-blank string, trimmed.
fn opt_id(
    obj: &Map<String, Value>,
    prefix: &str,
    key: &str,
) -> Result<Option<String>, PayloadError> {
    match opt_str(obj, prefix, key)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Err(invalid(join(prefix, key), "empty")),
        Some(s) => Ok(Some(s.trim().to_string())),
    }
}

/// An optional label that may be sent as a string or a number (`channel: 1`).
fn opt_label(
    obj: &Map<String, Value>,
    prefix: &str,
    key: &str,
) -> Result<Option<String>, PayloadError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(type_err(join(prefix, key), "a string or a number", other)),
    }
}

fn opt_time(
    obj: &Map<String, Value>,
    prefix: &str,
    key: &str,
) -> Result<Option<Timestamp>, PayloadError> {
    match opt_str(obj, prefix, key)? {
        None => Ok(None),
        Some(s) => Timestamp::parse_rfc3339(s.trim())
            .map(Some)
            .map_err(|_| invalid(join(prefix, key), format!("{s:?} is not an RFC 3339 time"))),
    }
}

// ------------------------------------------------------------------------------- MDC refids

/// MDC reference ids vigil resolves without a numeric code: the `mdc` rows of the built-in
/// `device-profiles/codes.toml`, read once.
fn mdc_refids() -> &'static [(&'static str, u32)] {
    static TABLE: std::sync::OnceLock<Vec<(&'static str, u32)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let Ok(table) = include_str!("../../device-profiles/codes.toml").parse::<toml::Table>()
        else {
            return Vec::new();
        };
        let rows = table.get("mdc").and_then(|v| v.as_array());
        rows.into_iter()
            .flatten()
            .filter_map(|r| {
                let refid = r.get("refid")?.as_str()?;
                let code = u32::try_from(r.get("code")?.as_integer()?).ok()?;
                // Leaked once per row of a static table: names that live as long as the program.
                Some((&*Box::leak(refid.to_string().into_boxed_str()), code))
            })
            .collect()
    })
}

/// The numeric MDC code of a reference id vigil knows (`MDC_PULS_OXIM_SAT_O2` → 150456).
pub fn mdc_code_for_refid(refid: &str) -> Option<u32> {
    mdc_refids()
        .iter()
        .find(|(r, _)| *r == refid)
        .map(|(_, c)| *c)
}

/// The first reference id vigil knows for a numeric MDC code.
pub fn mdc_refid_for_code(code: u32) -> Option<&'static str> {
    mdc_refids()
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(r, _)| *r)
}

fn mdc(code: u32, refid: Option<&str>) -> DeviceCode {
    let refid: Cow<'static, str> = match refid {
        Some(r) => match mdc_refids().iter().find(|(k, _)| *k == r) {
            Some((k, _)) => Cow::Borrowed(*k),
            None => Cow::Owned(r.to_string()),
        },
        None => Cow::Borrowed(mdc_refid_for_code(code).unwrap_or("")),
    };
    DeviceCode::Mdc { code, refid }
}

/// `NNNN-N`: digits, a hyphen, one check digit.
fn is_loinc(code: &str) -> bool {
    let Some((num, check)) = code.split_once('-') else {
        return false;
    };
    !num.is_empty()
        && num.len() <= 7
        && num.bytes().all(|b| b.is_ascii_digit())
        && check.len() == 1
        && check.bytes().all(|b| b.is_ascii_digit())
}

// ------------------------------------------------------------------------------- vigil JSON

/// Decodes vigil's JSON schema (module docs): one device per payload.
pub fn decode_json(payload: &[u8]) -> Result<PayloadReport, PayloadError> {
    let root = parse(payload)?;
    let Value::Object(obj) = &root else {
        return Err(type_err("(payload)", "an object", &root));
    };
    let device = opt_id(obj, "", "device")?;
    let model = opt_id(obj, "", "model")?;
    let patient = opt_id(obj, "", "patient")?;
    let device_time = opt_time(obj, "", "time")?;
    let observations = match obj.get("observations") {
        None | Some(Value::Null) => {
            return Err(PayloadError::Missing {
                path: "observations".into(),
            })
        }
        Some(Value::Array(a)) => a,
        Some(other) => return Err(type_err("observations", "an array", other)),
    };
    let mut out = PayloadReport {
        device,
        model,
        patient,
        report: DeviceReport {
            device_time,
            readings: Vec::with_capacity(observations.len()),
        },
        unavailable: 0,
        ignored: 0,
    };
    for (i, o) in observations.iter().enumerate() {
        let path = format!("observations[{i}]");
        let Value::Object(o) = o else {
            return Err(type_err(path, "an object", o));
        };
        let reading = json_observation(o, &path)?;
        if reading.status == ReadingStatus::Unavailable {
            out.unavailable += 1;
        } else {
            out.report.readings.push(reading);
        }
    }
    Ok(out)
}

fn json_observation(o: &Map<String, Value>, path: &str) -> Result<DeviceReading, PayloadError> {
    // The code as text, and as a number when it is one.
    let code_text: Option<String> = match o.get("code") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(invalid(join(path, "code"), "empty"))
        }
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(other) => return Err(type_err(join(path, "code"), "a number or a string", other)),
    };
    let refid = opt_str(o, path, "refid")?
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let numeric = code_text.as_deref().map(|c| c.parse::<u32>());
    let system = match opt_str(o, path, "system")? {
        Some(s) => match s.trim().to_ascii_uppercase().as_str() {
            "MDC" => "MDC",
            "LOINC" | "LN" => "LOINC",
            "LOCAL" | "L" => "LOCAL",
            _ => {
                return Err(invalid(
                    join(path, "system"),
                    format!("{s:?} is not MDC, LOINC or LOCAL"),
                ))
            }
        },
        None if refid.is_some() || matches!(numeric, Some(Ok(_))) => "MDC",
        None => "LOCAL",
    };
    let code = match system {
        "MDC" => {
            let from_refid = refid.and_then(mdc_code_for_refid);
            let code = match (&numeric, from_refid) {
                (Some(Ok(c)), Some(r)) if *c != r => {
                    return Err(invalid(
                        join(path, "code"),
                        format!(
                            "MDC code {c} and refid {} ({r}) disagree",
                            refid.unwrap_or_default()
                        ),
                    ))
                }
                (Some(Ok(c)), _) => *c,
                (Some(Err(_)), _) => {
                    return Err(invalid(
                        join(path, "code"),
                        format!(
                            "{:?} is not a numeric MDC code (partition × 65536 + term)",
                            code_text.as_deref().unwrap_or_default()
                        ),
                    ))
                }
                (None, Some(r)) => r,
                (None, None) => {
                    return Err(match refid {
                        Some(r) => invalid(
                            join(path, "refid"),
                            format!("{r:?} without a code is not a refid vigil resolves; send the numeric code too"),
                        ),
                        None => PayloadError::Missing {
                            path: join(path, "code"),
                        },
                    })
                }
            };
            mdc(code, refid)
        }
        "LOINC" => {
            let Some(c) = code_text else {
                return Err(PayloadError::Missing {
                    path: join(path, "code"),
                });
            };
            if !is_loinc(&c) {
                return Err(invalid(
                    join(path, "code"),
                    format!("{c:?} is not a LOINC code (digits, '-', check digit)"),
                ));
            }
            DeviceCode::Loinc { code: c }
        }
        _ => match code_text {
            Some(c) => DeviceCode::Local { code: c },
            None => {
                return Err(PayloadError::Missing {
                    path: join(path, "code"),
                })
            }
        },
    };
    let status = match opt_str(o, path, "status")? {
        None => ReadingStatus::Valid,
        Some(s) => match s.trim().to_ascii_lowercase().as_str() {
            "valid" => ReadingStatus::Valid,
            "questionable" => ReadingStatus::Questionable,
            "unavailable" => ReadingStatus::Unavailable,
            _ => {
                return Err(invalid(
                    join(path, "status"),
                    format!("{s:?} is not valid, questionable or unavailable"),
                ))
            }
        },
    };
    let value = match o.get("value") {
        None | Some(Value::Null) if status == ReadingStatus::Unavailable => {
            ReadingValue::Text(String::new())
        }
        None | Some(Value::Null) => {
            return Err(PayloadError::Missing {
                path: join(path, "value"),
            })
        }
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => ReadingValue::Num(v),
            _ => return Err(invalid(join(path, "value"), "not a finite number")),
        },
        Some(Value::String(s)) => ReadingValue::Text(s.clone()),
        Some(other) => return Err(type_err(join(path, "value"), "a number or a string", other)),
    };
    Ok(DeviceReading {
        code,
        value,
        unit: opt_str(o, path, "unit")?.unwrap_or("").trim().to_string(),
        time: opt_time(o, path, "time")?,
        channel: opt_label(o, path, "channel")?,
        label: opt_label(o, path, "label")?,
        status,
    })
}

// ------------------------------------------------------------------------------- SenML

/// RFC 8428 §4.5.3: resolved times below 2²⁸ seconds are relative to now.
const SENML_RELATIVE_LIMIT: f64 = 268_435_456.0;
/// The SenML version RFC 8428 defines.
const SENML_VERSION: u64 = 10;
/// Latest instant accepted (9999-12-31T23:59:59.999Z), in ms; earlier than −this is refused too.
const MAX_TIME_MS: f64 = 253_402_300_799_999.0;

/// SenML unit symbols (RFC 8428 §12.1 and common clinical spellings) → UCUM. Anything else is
/// passed on unchanged (the normalizer's unit aliases apply after).
///
/// SenML registers `%` as a ratio (RFC 8428 note 1), but clinical publishers send percentages
/// with it (SpO2 97 `%`): vigil reads `%` as UCUM percent. Send `/` for a 0–1 ratio.
pub fn senml_unit_to_ucum(unit: &str) -> &str {
    match unit {
        "/" => "1",
        "1/min" | "beat/min" | "beats/min" | "breaths/min" | "bpm" => "/min",
        "1/s" => "/s",
        "beats" => "{beats}",
        "mmHg" => "mm[Hg]",
        "cmH2O" => "cm[H2O]",
        "l" => "L",
        "ml" => "mL",
        "l/s" => "L/s",
        "l/min" => "L/min",
        "ml/h" => "mL/h",
        "mg/ml" => "mg/mL",
        other => other,
    }
}

/// RFC 8428 §4.5.1: `A-Z a-z 0-9 - : . / _`, starting with a letter or digit.
fn valid_senml_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'.' | b'/' | b'_'))
}

/// Splits a resolved SenML name into the device it identifies and the sensor part.
///
/// - `urn:dev:<type>:<id>` names (RFC 9039) identify the device by their first four
///   `:`-separated parts; what follows the next `:` or `/` is the sensor
///   (`urn:dev:mac:0024befffe804ff1:MDC_PULS_OXIM_SAT_O2` → device
///   `urn:dev:mac:0024befffe804ff1`, sensor `MDC_PULS_OXIM_SAT_O2`).
/// - Otherwise a base name identifies the device (without its trailing `/` or `:`), and the
///   rest of the name is the sensor (`bn` `mon-7/`, `n` `spo2` → device `mon-7`, sensor `spo2`).
/// - A name with no base name and no `urn:dev:` prefix names only the sensor: the topic must
///   name the device.
pub fn split_senml_name<'n>(name: &'n str, base_name: &str) -> (Option<&'n str>, &'n str) {
    let prefix = "urn:dev:";
    if name
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    {
        let rest = name.get(prefix.len()..).unwrap_or("");
        // <type>:<id>, the id ending at the next ':' or '/'.
        let Some(type_end) = rest.find(':') else {
            return (Some(name), "");
        };
        let after_type = rest.get(type_end + 1..).unwrap_or("");
        let id_len = after_type.find([':', '/']).unwrap_or(after_type.len());
        let device_len = prefix.len() + type_end + 1 + id_len;
        let device = name.get(..device_len).unwrap_or(name);
        let sensor = name.get(device_len + 1..).unwrap_or("");
        return (Some(device), sensor);
    }
    if !base_name.is_empty() {
        if let (Some(sensor), Some(base)) =
            (name.strip_prefix(base_name), name.get(..base_name.len()))
        {
            let device = base.trim_end_matches(['/', ':']);
            if !device.is_empty() {
                return (Some(device), sensor);
            }
        }
    }
    (None, name)
}

/// The code a SenML sensor name stands for. Its last `/`-separated segment decides:
/// `loinc:<code>` → LOINC; else its last `:`-separated part, when it is a number → that MDC
/// code, when it is an MDC refid vigil knows ([`mdc_code_for_refid`]) → that MDC code;
/// anything else → a LOCAL code, the whole sensor name (the resolved name when the sensor part
/// is empty).
pub fn senml_code(sensor: &str, full_name: &str) -> Result<DeviceCode, String> {
    if sensor.is_empty() {
        return Ok(DeviceCode::Local {
            code: full_name.to_string(),
        });
    }
    let segment = sensor.rsplit('/').next().unwrap_or(sensor);
    if segment
        .get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("loinc:"))
    {
        let code = segment.get(6..).unwrap_or("");
        if !is_loinc(code) {
            return Err(format!(
                "{segment:?} is not a LOINC code (digits, '-', check digit)"
            ));
        }
        return Ok(DeviceCode::Loinc {
            code: code.to_string(),
        });
    }
    let key = segment.rsplit(':').next().unwrap_or(segment);
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
        return match key.parse::<u32>() {
            Ok(c) => Ok(mdc(c, None)),
            Err(_) => Err(format!("{key:?} is too large for an MDC code")),
        };
    }
    if let Some(c) = mdc_code_for_refid(key) {
        return Ok(mdc(c, Some(key)));
    }
    Ok(DeviceCode::Local {
        code: sensor.to_string(),
    })
}

/// Base fields in force while walking a pack.
#[derive(Default)]
struct SenmlBase {
    name: String,
    time: f64,
    unit: Option<String>,
    value: f64,
}

fn senml_num(rec: &Map<String, Value>, path: &str, key: &str) -> Result<Option<f64>, PayloadError> {
    match rec.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(invalid(join(path, key), "not a finite number")),
        },
        Some(other) => Err(type_err(join(path, key), "a number", other)),
    }
}

fn senml_str<'v>(
    rec: &'v Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<&'v str>, PayloadError> {
    match rec.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(type_err(join(path, key), "a string", other)),
    }
}

/// Decodes a SenML JSON pack; one [`PayloadReport`] per device, in order of first appearance.
pub fn decode_senml(
    payload: &[u8],
    receive_time: Timestamp,
) -> Result<Vec<PayloadReport>, PayloadError> {
    let root = parse(payload)?;
    let Value::Array(records) = &root else {
        return Err(type_err("(pack)", "an array of records", &root));
    };
    let mut base = SenmlBase::default();
    let mut out: Vec<PayloadReport> = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        let path = format!("[{i}]");
        let Value::Object(rec) = rec else {
            return Err(type_err(path, "an object", rec));
        };
        if let Some(label) = rec.keys().find(|k| k.ends_with('_')) {
            return Err(invalid(
                join(&path, label),
                "a must-understand label (ending in '_') that vigil does not know",
            ));
        }
        if let Some(v) = rec.get("bver") {
            match v.as_u64() {
                Some(0) | None => {
                    return Err(invalid(join(&path, "bver"), "not a positive integer"))
                }
                Some(ver) if ver > SENML_VERSION => {
                    return Err(PayloadError::Version {
                        path: join(&path, "bver"),
                        version: ver,
                    })
                }
                Some(_) => {}
            }
        }
        if let Some(bn) = senml_str(rec, &path, "bn")? {
            base.name = bn.to_string();
        }
        if let Some(bt) = senml_num(rec, &path, "bt")? {
            base.time = bt;
        }
        if let Some(bu) = senml_str(rec, &path, "bu")? {
            base.unit = Some(bu.to_string());
        }
        if let Some(bv) = senml_num(rec, &path, "bv")? {
            base.value = bv;
        }
        // Checked for type even though sums are not used.
        senml_num(rec, &path, "bs")?;
        let sum = senml_num(rec, &path, "s")?;
        let n = senml_str(rec, &path, "n")?;
        let u = senml_str(rec, &path, "u")?;
        let t = senml_num(rec, &path, "t")?;
        senml_num(rec, &path, "ut")?;
        let v = senml_num(rec, &path, "v")?;
        let vs = senml_str(rec, &path, "vs")?;
        let vb = match rec.get("vb") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => return Err(type_err(join(&path, "vb"), "a boolean", other)),
        };
        let vd = senml_str(rec, &path, "vd")?;
        let values = [v.is_some(), vs.is_some(), vb.is_some(), vd.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if values > 1 {
            return Err(invalid(
                path,
                "more than one value field (v, vs, vb, vd); RFC 8428 allows exactly one",
            ));
        }
        if values == 0 {
            let regular = n.is_some() || u.is_some() || t.is_some();
            if sum.is_none() && regular {
                return Err(invalid(path, "no value (v, vs, vb or vd) and no sum (s)"));
            }
            // A record that only sets base fields, or carries only a sum: nothing to read.
            if sum.is_some() {
                note_ignored(&mut out, &base.name, n.unwrap_or(""));
            }
            continue;
        }

        let name = format!("{}{}", base.name, n.unwrap_or(""));
        if name.is_empty() {
            return Err(PayloadError::Missing {
                path: join(&path, "n"),
            });
        }
        if !valid_senml_name(&name) {
            return Err(invalid(
                join(&path, "n"),
                format!("name {name:?} has characters RFC 8428 does not allow (A-Z a-z 0-9 - : . / _, starting with a letter or digit)"),
            ));
        }
        let (device, sensor) = split_senml_name(&name, &base.name);
        let device = device.map(str::to_string);
        let code = senml_code(sensor, &name).map_err(|reason| invalid(join(&path, "n"), reason))?;
        let label = if sensor.is_empty() { &name } else { sensor }.to_string();

        let time = {
            let secs = base.time + t.unwrap_or(0.0);
            let ms = (secs * 1000.0).round();
            if !ms.is_finite() || ms.abs() > MAX_TIME_MS {
                return Err(invalid(
                    join(&path, "t"),
                    format!("time {secs:e} s is out of range"),
                ));
            }
            // In range: the cast is exact.
            let ms = ms as i64;
            if secs < SENML_RELATIVE_LIMIT {
                receive_time.plus_ms(ms)
            } else {
                Timestamp::from_millis(ms)
            }
        };
        let unit = u
            .or(base.unit.as_deref())
            .map(|u| senml_unit_to_ucum(u.trim()).to_string())
            .unwrap_or_default();
        let value = if let Some(v) = v {
            let total = base.value + v;
            if !total.is_finite() {
                return Err(invalid(join(&path, "v"), "base value + value overflows"));
            }
            ReadingValue::Num(total)
        } else if let Some(s) = vs {
            ReadingValue::Text(s.to_string())
        } else if let Some(b) = vb {
            ReadingValue::Num(if b { 1.0 } else { 0.0 })
        } else {
            // vd: binary data is not a reading.
            let i = report_index(&mut out, device);
            if let Some(r) = out.get_mut(i) {
                r.ignored += 1;
            }
            continue;
        };
        let i = report_index(&mut out, device);
        let Some(slot) = out.get_mut(i) else {
            continue;
        };
        slot.report.readings.push(DeviceReading {
            code,
            value,
            unit,
            time: Some(time),
            channel: None,
            label: Some(label),
            status: ReadingStatus::Valid,
        });
    }
    Ok(out)
}

/// The index of `device`'s report, created at the end when it is new.
fn report_index(out: &mut Vec<PayloadReport>, device: Option<String>) -> usize {
    match out.iter().position(|r| r.device == device) {
        Some(i) => i,
        None => {
            out.push(PayloadReport {
                device,
                ..PayloadReport::default()
            });
            out.len() - 1
        }
    }
}

fn note_ignored(out: &mut Vec<PayloadReport>, base_name: &str, n: &str) {
    let name = format!("{base_name}{n}");
    let device = split_senml_name(&name, base_name).0.map(str::to_string);
    let i = report_index(out, device);
    if let Some(r) = out.get_mut(i) {
        r.ignored += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn senml(s: &str) -> Vec<PayloadReport> {
        decode_senml(s.as_bytes(), NOW).unwrap_or_else(|e| panic!("{e}"))
    }

    fn num(r: &DeviceReading) -> f64 {
        r.value.as_f64().unwrap()
    }

    // ------------------------------------------------------------ RFC 8428 §5.1 examples

    #[test]
    fn rfc8428_single_datapoint_is_now_and_celsius() {
        let out = senml(r#"[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]"#);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].device.as_deref(),
            Some("urn:dev:ow:10e2073a01080063")
        );
        let r = &out[0].report.readings[0];
        assert_eq!(num(r), 23.1);
        assert_eq!(r.unit, "Cel");
        assert_eq!(r.time, Some(NOW), "no time: roughly now, the receive time");
        // No sensor part: a LOCAL code named after the resource.
        assert_eq!(
            r.code,
            DeviceCode::Local {
                code: "urn:dev:ow:10e2073a01080063".into()
            }
        );
    }

    #[test]
    fn rfc8428_multiple_datapoints_share_the_base_name() {
        let out = senml(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
                {"n":"current","u":"A","v":1.2}]"#,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].device.as_deref(),
            Some("urn:dev:ow:10e2073a01080063")
        );
        let rs = &out[0].report.readings;
        assert_eq!(rs.len(), 2);
        assert_eq!(
            rs[0].code,
            DeviceCode::Local {
                code: "voltage".into()
            }
        );
        assert_eq!(
            rs[1].code,
            DeviceCode::Local {
                code: "current".into()
            }
        );
        assert_eq!((rs[0].unit.as_str(), rs[1].unit.as_str()), ("V", "A"));
        assert_eq!(rs[1].label.as_deref(), Some("current"));
    }

    #[test]
    fn rfc8428_base_time_and_relative_offsets_resolve_to_absolute_times() {
        let out = senml(
            r#"[{"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
                 "bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
                {"n":"current","t":-5,"v":1.2},
                {"n":"current","t":-4,"v":1.3},
                {"n":"current","t":-3,"v":1.4},
                {"n":"current","t":-2,"v":1.5},
                {"n":"current","t":-1,"v":1.6},
                {"n":"current","v":1.7}]"#,
        );
        let rs = &out[0].report.readings;
        assert_eq!(rs.len(), 7);
        // Tue Jun 8 18:01:16.001 UTC 2010, and each second of the five before.
        let base = Timestamp::parse_rfc3339("2010-06-08T18:01:16.001Z").unwrap();
        assert_eq!(rs[0].time, Some(base));
        assert_eq!(rs[0].unit, "V");
        for (k, r) in rs.iter().skip(1).enumerate() {
            assert_eq!(r.time, Some(base.minus_ms(5_000 - 1_000 * k as i64)));
            assert_eq!(r.unit, "A", "the base unit applies when a record has none");
        }
        assert_eq!(num(&rs[6]), 1.7);
    }

    #[test]
    fn rfc8428_multiple_measurements_and_resolved_form_agree() {
        let packed = senml(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,"bu":"%RH","v":20},
                {"u":"lon","v":24.30621},{"u":"lat","v":60.07965},
                {"t":60,"v":20.3},{"u":"lon","t":60,"v":24.30622},{"u":"lat","t":60,"v":60.07965},
                {"t":120,"v":20.7},{"u":"lon","t":120,"v":24.30623},{"u":"lat","t":120,"v":60.07966},
                {"u":"%EL","t":150,"v":98},
                {"t":180,"v":21.2},{"u":"lon","t":180,"v":24.30628},{"u":"lat","t":180,"v":60.07967}]"#,
        );
        let resolved = senml(
            r#"[{"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,"v":20},
                {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,"v":24.30621},
                {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,"v":60.07965},
                {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,"v":20.3},
                {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,"v":24.30622},
                {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,"v":60.07965},
                {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,"v":20.7},
                {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,"v":24.30623},
                {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,"v":60.07966},
                {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,"v":98},
                {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,"v":21.2},
                {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,"v":24.30628},
                {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,"v":60.07967}]"#,
        );
        assert_eq!(packed, resolved);
        let rs = &packed[0].report.readings;
        assert_eq!(rs.len(), 13);
        // Mon Oct 31 13:24:24 UTC 2011 + 180 s.
        let start = Timestamp::parse_rfc3339("2011-10-31T13:24:24Z").unwrap();
        assert_eq!(rs[0].time, Some(start));
        assert_eq!(rs[12].time, Some(start.plus_ms(180_000)));
        assert_eq!(rs[9].unit, "%EL");
    }

    #[test]
    fn rfc8428_multiple_data_types_text_boolean_and_ignored_binary() {
        let out = senml(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
                {"n":"label","vs":"Machine Room"},
                {"n":"open","vb":false},
                {"n":"nfc-reader","vd":"aGkgCg"}]"#,
        );
        let r = &out[0];
        assert_eq!(r.report.readings.len(), 3);
        assert_eq!(
            r.report.readings[1].value,
            ReadingValue::Text("Machine Room".into())
        );
        assert_eq!(r.report.readings[2].value, ReadingValue::Num(0.0));
        assert_eq!(r.ignored, 1, "vd is not a reading");
    }

    #[test]
    fn rfc8428_collection_of_resources_splits_devices_by_base_name() {
        let out = senml(
            r#"[{"bn":"2001:db8::2/","bt":1.320078429e+09,"n":"temperature","u":"Cel","v":25.2},
                {"n":"humidity","u":"%RH","v":30},
                {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
                {"n":"humidity","u":"%RH","v":67}]"#,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].device.as_deref(), Some("2001:db8::2"));
        assert_eq!(out[1].device.as_deref(), Some("2001:db8::1"));
        // The last record keeps the first record's base time (only bn changed).
        let t = Timestamp::from_millis(1_320_078_429_000);
        assert_eq!(out[1].report.readings[1].time, Some(t));
        assert_eq!(num(&out[1].report.readings[1]), 67.0);
    }

    #[test]
    fn rfc8428_actuator_base_only_record_is_not_an_error() {
        let out = senml(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063:"},
                {"n":"temp","u":"Cel","v":23.1},{"n":"heat","u":"/","v":1},{"n":"fan","u":"/","v":0}]"#,
        );
        assert_eq!(out[0].report.readings.len(), 3);
        assert_eq!(out[0].report.readings[1].unit, "1", "SenML '/' is UCUM '1'");
    }

    #[test]
    fn rfc8428_times_below_2_pow_28_are_relative_even_when_positive() {
        let out = senml(
            r#"[{"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":0.5},
                {"n":"2001:db8::3","t":0.1,"v":0},
                {"bn":"dev/","n":"x","bt":0,"t":0.1,"v":1}]"#,
        );
        let first = &out[0].report.readings;
        assert_eq!(first[1].time, Some(Timestamp(1_320_078_429_100)));
        // bt reset to 0: 0.1 s is 100 ms after the receive time.
        assert_eq!(out[1].report.readings[0].time, Some(NOW.plus_ms(100)));
        // 2**28 itself is absolute (1978).
        let abs = senml(r#"[{"n":"a","t":268435456,"v":1}]"#);
        assert_eq!(
            abs[0].report.readings[0].time,
            Some(Timestamp(268_435_456_000))
        );
    }

    // ------------------------------------------------------------ vigil's SenML mapping

    #[test]
    fn clinical_senml_names_map_to_mdc_loinc_and_local_codes() {
        let out = senml(
            r#"[{"bn":"urn:dev:mac:0024befffe804ff1:","bt":1.8e9},
                {"n":"MDC_PULS_OXIM_SAT_O2","u":"%","v":97},
                {"n":"147842","u":"beat/min","v":72},
                {"n":"nibp/MDC_PRESS_BLD_NONINV_SYS","u":"mmHg","v":121},
                {"n":"loinc:8310-5","u":"Cel","v":37.2},
                {"n":"pleth/quality","v":0.9},
                {"n":"MDC_NOT_A_THING","v":1}]"#,
        );
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(r.device.as_deref(), Some("urn:dev:mac:0024befffe804ff1"));
        let rs = &r.report.readings;
        assert_eq!(rs[0].code, DeviceCode::mdc(150_456, "MDC_PULS_OXIM_SAT_O2"));
        assert_eq!(rs[0].unit, "%");
        assert_eq!(rs[1].code, DeviceCode::mdc(147_842, "MDC_ECG_HEART_RATE"));
        assert_eq!(rs[1].unit, "/min");
        assert_eq!(
            rs[2].code,
            DeviceCode::mdc(150_021, "MDC_PRESS_BLD_NONINV_SYS")
        );
        assert_eq!(rs[2].unit, "mm[Hg]");
        assert_eq!(
            rs[2].label.as_deref(),
            Some("nibp/MDC_PRESS_BLD_NONINV_SYS")
        );
        assert_eq!(
            rs[3].code,
            DeviceCode::Loinc {
                code: "8310-5".into()
            }
        );
        assert_eq!(
            rs[4].code,
            DeviceCode::Local {
                code: "pleth/quality".into()
            }
        );
        assert_eq!(
            rs[5].code,
            DeviceCode::Local {
                code: "MDC_NOT_A_THING".into()
            }
        );
        assert!(rs
            .iter()
            .all(|x| x.time == Some(Timestamp(1_800_000_000_000))));
    }

    #[test]
    fn names_without_a_device_leave_it_to_the_topic() {
        let out = senml(r#"[{"n":"MDC_RESP_RATE","u":"/min","v":18}]"#);
        assert_eq!(out[0].device, None);
        assert_eq!(
            out[0].report.readings[0].code,
            DeviceCode::mdc(151_562, "MDC_RESP_RATE")
        );
        let (d, s) = split_senml_name("urn:dev:ow", "");
        assert_eq!((d, s), (Some("urn:dev:ow"), ""));
        let (d, s) = split_senml_name("urn:dev:os:32473-123456/spo2/150456", "");
        assert_eq!((d, s), (Some("urn:dev:os:32473-123456"), "spo2/150456"));
    }

    #[test]
    fn senml_errors_name_the_record_and_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"n":"a","v":1}"#,
                "(pack): expected an array of records, found an object",
            ),
            (
                r#"[{"n":"a","v":"1"}]"#,
                "[0].v: expected a number, found a string",
            ),
            (
                r#"[{"n":"a","v":1,"vs":"x"}]"#,
                "[0]: more than one value field",
            ),
            (r#"[{"n":"a","u":"Cel"}]"#, "[0]: no value"),
            (
                r#"[{"n":"a","v":1},{"n":"a b","v":2}]"#,
                "[1].n: name \"a b\" has characters",
            ),
            (r#"[{"v":1}]"#, "[0].n: missing"),
            (
                r#"[{"n":"a","v":1,"bver":11}]"#,
                "[0].bver: SenML version 11 is newer",
            ),
            (
                r#"[{"n":"a","v":1,"bver":-1}]"#,
                "[0].bver: not a positive integer",
            ),
            (
                r#"[{"n":"a","v":1,"x_":2}]"#,
                "[0].x_: a must-understand label",
            ),
            (
                r#"[{"n":"a","v":1,"t":1e300}]"#,
                "[0].t: time 1e300 s is out of range",
            ),
            (
                r#"[{"n":"loinc:12","v":1}]"#,
                "[0].n: \"loinc:12\" is not a LOINC code",
            ),
            (
                r#"[{"n":"99999999999","v":1}]"#,
                "too large for an MDC code",
            ),
            (
                r#"[{"bv":1e308,"n":"a","v":1e308}]"#,
                "[0].v: base value + value overflows",
            ),
            (
                r#"[{"n":"a","v":1,}]"#,
                "not JSON: trailing comma at line 1, column",
            ),
            (
                "",
                "not JSON: EOF while parsing a value at line 1, column 0",
            ),
        ];
        for (input, want) in cases {
            let err = decode_senml(input.as_bytes(), NOW).unwrap_err().to_string();
            assert!(err.contains(want), "{input}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn unknown_labels_are_ignored_and_sum_only_records_counted() {
        let out = senml(r#"[{"n":"a","v":1,"foo":2,"l":"x"},{"n":"b","s":5}]"#);
        assert_eq!(out[0].report.readings.len(), 1);
        assert_eq!(out[0].ignored, 1);
    }

    // ------------------------------------------------------------ vigil JSON

    const DOC_EXAMPLE: &str = r#"{"device":"mon-7","model":"X","time":"2026-11-22T08:00:00.000Z",
        "patient":"V-1001",
        "observations":[
          {"code":"150456","system":"MDC","refid":"MDC_PULS_OXIM_SAT_O2","value":97,"unit":"%",
           "channel":1,"status":"valid"},
          {"refid":"MDC_ECG_HEART_RATE","value":72,"unit":"/min","time":"2026-11-22T07:59:59Z"},
          {"code":"8310-5","system":"LOINC","value":37.4,"unit":"Cel","status":"questionable"},
          {"code":"ST-SEG","value":"normal","label":"ST"},
          {"code":151562,"status":"unavailable"}]}"#;

    #[test]
    fn the_documented_json_example_decodes() {
        let r = decode_json(DOC_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(r.device.as_deref(), Some("mon-7"));
        assert_eq!(r.model.as_deref(), Some("X"));
        assert_eq!(r.patient.as_deref(), Some("V-1001"));
        assert_eq!(
            r.report.device_time,
            Some(Timestamp::parse_rfc3339("2026-11-22T08:00:00Z").unwrap())
        );
        let rs = &r.report.readings;
        assert_eq!(
            rs.len(),
            4,
            "the unavailable reading is counted, not emitted"
        );
        assert_eq!(r.unavailable, 1);
        assert_eq!(rs[0].code, DeviceCode::mdc(150_456, "MDC_PULS_OXIM_SAT_O2"));
        assert_eq!(rs[0].channel.as_deref(), Some("1"));
        assert_eq!(rs[1].code, DeviceCode::mdc(147_842, "MDC_ECG_HEART_RATE"));
        assert_eq!(
            rs[1].time,
            Some(Timestamp::parse_rfc3339("2026-11-22T07:59:59Z").unwrap())
        );
        assert_eq!(
            rs[2].code,
            DeviceCode::Loinc {
                code: "8310-5".into()
            }
        );
        assert_eq!(rs[2].status, ReadingStatus::Questionable);
        assert_eq!(
            rs[3].code,
            DeviceCode::Local {
                code: "ST-SEG".into()
            }
        );
        assert_eq!(rs[3].value, ReadingValue::Text("normal".into()));
        assert_eq!(rs[3].label.as_deref(), Some("ST"));
        // A numeric code with a refid vigil does not know keeps the sender's refid.
        let r = decode_json(br#"{"observations":[{"code":1,"refid":"MDC_X","value":1}]}"#).unwrap();
        assert_eq!(
            r.report.readings[0].code,
            DeviceCode::Mdc {
                code: 1,
                refid: "MDC_X".into()
            }
        );
        assert_eq!(r.device, None);
    }

    #[test]
    fn json_errors_name_the_field_and_the_fault() {
        let cases: &[(&str, &str)] = &[
            (r#"[1]"#, "(payload): expected an object, found an array"),
            (r#"{"device":"d"}"#, "observations: missing"),
            (r#"{"observations":{}}"#, "observations: expected an array, found an object"),
            (r#"{"observations":[3]}"#, "observations[0]: expected an object, found a number"),
            (r#"{"observations":[{"value":1}]}"#, "observations[0].code: missing"),
            (r#"{"observations":[{"code":true,"value":1}]}"#, "observations[0].code: expected a number or a string, found a boolean"),
            (r#"{"observations":[{"code":"abc","system":"MDC","value":1}]}"#, "observations[0].code: \"abc\" is not a numeric MDC code"),
            (r#"{"observations":[{"code":150456,"refid":"MDC_ECG_HEART_RATE","value":1}]}"#, "observations[0].code: MDC code 150456 and refid MDC_ECG_HEART_RATE (147842) disagree"),
            (r#"{"observations":[{"refid":"MDC_UNKNOWN","value":1}]}"#, "observations[0].refid: \"MDC_UNKNOWN\" without a code"),
            (r#"{"observations":[{"code":"2524","system":"LOINC","value":1}]}"#, "is not a LOINC code"),
            (r#"{"observations":[{"code":1,"system":"SNOMED","value":1}]}"#, "observations[0].system: \"SNOMED\" is not MDC, LOINC or LOCAL"),
            (r#"{"observations":[{"code":1}]}"#, "observations[0].value: missing"),
            (r#"{"observations":[{"code":1,"value":[1]}]}"#, "observations[0].value: expected a number or a string, found an array"),
            (r#"{"observations":[{"code":1,"value":1,"status":"ok"}]}"#, "observations[0].status: \"ok\" is not valid"),
            (r#"{"observations":[{"code":1,"value":1,"time":"yesterday"}]}"#, "observations[0].time: \"yesterday\" is not an RFC 3339 time"),
            (r#"{"time":1,"observations":[]}"#, "time: expected a string, found a number"),
            (r#"{"device":" ","observations":[]}"#, "device: empty"),
            (r#"{"observations":[{"code":1,"value":1e999}]}"#, "not JSON"),
            ("\u{feff}{}", "not JSON"),
        ];
        for (input, want) in cases {
            let err = decode_json(input.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{input}: got {err:?}, want {want:?}");
        }
        assert_eq!(
            decode_json(b"{").unwrap_err().kind(),
            "syntax",
            "kinds are metric labels"
        );
    }

    #[test]
    fn decode_dispatches_on_the_format() {
        let j = decode(PayloadFormat::Json, br#"{"observations":[]}"#, NOW).unwrap();
        assert_eq!(j.len(), 1);
        let s = decode(PayloadFormat::Senml, b"[]", NOW).unwrap();
        assert!(s.is_empty());
        assert!(decode(PayloadFormat::Senml, br#"{"observations":[]}"#, NOW).is_err());
    }

    #[test]
    fn refids_resolve_through_the_builtin_code_table() {
        assert_eq!(mdc_code_for_refid("MDC_PULS_OXIM_SAT_O2"), Some(150_456));
        assert_eq!(mdc_code_for_refid("MDC_ECG_CARD_BEAT_RATE"), Some(147_842));
        assert_eq!(mdc_code_for_refid("MDC_AWAY_RESP_RATE"), Some(151_570));
        assert_eq!(mdc_code_for_refid("MDC_NOT_A_CODE"), None);
        assert_eq!(mdc_refid_for_code(152_196), Some("MDC_CONC_AWAY_O2_INSP"));
        assert!(mdc_refids().len() >= 50, "the whole mdc table is read");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = String> {
            let key = prop::sample::select(vec![
                "bn",
                "bt",
                "bu",
                "bv",
                "bs",
                "bver",
                "n",
                "u",
                "v",
                "vs",
                "vb",
                "vd",
                "s",
                "t",
                "ut",
                "x_",
                "code",
                "system",
                "refid",
                "value",
                "unit",
                "time",
                "status",
                "device",
                "observations",
            ]);
            let val = prop_oneof![
                Just("null".to_string()),
                any::<bool>().prop_map(|b| b.to_string()),
                any::<f64>()
                    .prop_filter("JSON numbers are finite", |f| f.is_finite())
                    .prop_map(|f| format!("{f:e}")),
                (-300_000_000i64..2_000_000_000).prop_map(|i| i.to_string()),
                "[a-zA-Z0-9:/_.%-]{0,12}".prop_map(|s| format!("{s:?}")),
                prop::sample::select(vec![
                    "\"urn:dev:mac:1:\"",
                    "\"MDC_PULS_OXIM_SAT_O2\"",
                    "\"loinc:8867-4\"",
                    "\"150456\"",
                    "\"unavailable\"",
                    "\"MDC\"",
                    "\"LOINC\"",
                    "\"2026-01-01T00:00:00Z\"",
                    "[]",
                    "{}",
                    "[{}]",
                ])
                .prop_map(str::to_string),
            ];
            (key, val).prop_map(|(k, v)| format!("{k:?}:{v}"))
        }

        fn record() -> impl Strategy<Value = String> {
            prop::collection::vec(field(), 0..6).prop_map(|f| format!("{{{}}}", f.join(",")))
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                let _ = decode_json(&bytes);
                let _ = decode_senml(&bytes, NOW);
            }

            #[test]
            fn structured_packs_decode_or_fail_cleanly(records in prop::collection::vec(record(), 0..6)) {
                let pack = format!("[{}]", records.join(","));
                if let Ok(reports) = decode_senml(pack.as_bytes(), NOW) {
                    for (i, r) in reports.iter().enumerate() {
                        prop_assert!(r.report.readings.iter().all(|x| x.time.is_some()));
                        prop_assert!(r.report.readings.iter().all(|x| x.value.as_f64().is_none_or(f64::is_finite)));
                        prop_assert!(reports.iter().skip(i + 1).all(|o| o.device != r.device));
                    }
                }
                let doc = format!("{{\"observations\":[{}]}}", records.join(","));
                if let Ok(r) = decode_json(doc.as_bytes()) {
                    prop_assert!(r.report.readings.iter().all(|x| x.status != ReadingStatus::Unavailable));
                    prop_assert_eq!(r.report.readings.len() + r.unavailable as usize, records.len());
                }
            }
        }
    }
}
