//! What every device protocol (serial vendor drivers, declarative profiles, MQTT payloads)
//! produces and how a host-side session is driven, without I/O.
//!
//! A driver is a state machine: the source feeds it the bytes it read and the time it read them,
//! and asks it, on every tick, for the bytes to write (association, polls, keep-alives). It
//! answers with [`DeviceEvent`]s. The same driver decodes a recorded capture offline
//! (`vigil decode`) and a live port; a simulator implements [`DeviceSimulator`], the device side
//! of the same protocol, for tests and for users without hardware.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::model::Timestamp;

/// The code a device reading carries, before the normalizer maps it to a parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "system", rename_all = "snake_case")]
pub enum DeviceCode {
    /// IEEE 11073-10101 MDC: the numeric code (partition × 2¹⁶ + term) and its reference id.
    Mdc { code: u32, refid: Cow<'static, str> },
    /// A LOINC code, e.g. `2524-7`.
    Loinc { code: String },
    /// A vendor label with no standard code (kept as a local observation).
    Local { code: String },
}

impl DeviceCode {
    pub const fn mdc(code: u32, refid: &'static str) -> Self {
        DeviceCode::Mdc {
            code,
            refid: Cow::Borrowed(refid),
        }
    }
}

impl fmt::Display for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceCode::Mdc { code, refid } => write!(f, "MDC {code} {refid}"),
            DeviceCode::Loinc { code } => write!(f, "LOINC {code}"),
            DeviceCode::Local { code } => write!(f, "LOCAL {code}"),
        }
    }
}

/// How far a reading can be trusted, as the device said it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadingStatus {
    #[default]
    Valid,
    /// The device flagged it (questionable, artifact, calibrating, demo data…).
    Questionable,
    /// The device sent a "no value" code (NaN, not available, no data, out of range code).
    /// Drivers count these and do not emit them as readings.
    Unavailable,
}

/// One numeric (or text) reading as the device reported it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceReading {
    pub code: DeviceCode,
    /// The value in `unit`.
    pub value: ReadingValue,
    /// UCUM unit (e.g. `/min`, `mm[Hg]`, `%`, `mL/h`), empty when dimensionless or unknown.
    pub unit: String,
    /// The device's time for this reading, when it has one (else the report's time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// Channel within the device (pump channel, module slot), PCD-01 style `1.1.2` or a label.
    /// Readings of one channel share it (a pump's flow, concentration and drug name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The vendor's own label (`HR`, `NOM_ECG_CARD_BEAT_RATE`, MEDIBUS code `B7`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub status: ReadingStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ReadingValue {
    Num(f64),
    Text(String),
}

impl ReadingValue {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ReadingValue::Num(v) => Some(*v),
            ReadingValue::Text(_) => None,
        }
    }
}

impl DeviceReading {
    /// A valid numeric reading.
    pub fn num(code: DeviceCode, value: f64, unit: &str) -> Self {
        DeviceReading {
            code,
            value: ReadingValue::Num(value),
            unit: unit.to_string(),
            time: None,
            channel: None,
            label: None,
            status: ReadingStatus::Valid,
        }
    }
    pub fn at(mut self, time: Option<Timestamp>) -> Self {
        self.time = time;
        self
    }
    pub fn labelled(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
    pub fn on_channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }
}

/// A set of readings that arrived together (one poll reply, one line, one MQTT message).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeviceReport {
    /// The device's own time for the report, when the protocol carries one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_time: Option<Timestamp>,
    pub readings: Vec<DeviceReading>,
}

/// Who the device says it is (IntelliVue MDS attributes, MEDIBUS device id, …).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeviceIdentity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
}

/// A device alarm as reported (kept as information; vigil's own alerts come from scores).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceAlarm {
    /// Vendor or MDC code of the alarm source.
    pub code: String,
    pub text: String,
    /// Vendor priority mapped to `high` / `medium` / `low` / `info`.
    pub priority: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
}

/// What a driver tells its session.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeviceEvent {
    /// Readings decoded from one frame or reply.
    Report(DeviceReport),
    /// The device identified itself.
    Identified(DeviceIdentity),
    /// Alarms currently active on the device (the whole list, as polled).
    Alarms { alarms: Vec<DeviceAlarm> },
    /// The session is up (association accepted, ICC answered): polls will follow.
    Connected,
    /// The device ended or refused the session; the source should reconnect after backoff.
    Disconnected { reason: String },
}

/// Framing counters, kept by every framer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FrameStats {
    /// Frames that passed framing and checksum.
    pub frames: u64,
    /// Frames dropped for a bad checksum / FCS.
    pub checksum_failures: u64,
    /// Times the framer threw bytes away to find the next frame start (noise, truncation, a
    /// frame too long, a stray escape).
    pub resyncs: u64,
    /// Bytes thrown away while resynchronising (waveform bytes a profile skips by design are
    /// counted in `skipped_bytes`, not here).
    pub discarded_bytes: u64,
    /// Bytes a profile declares as not its business (binary waveform runs between lines).
    pub skipped_bytes: u64,
    /// Frames that framed correctly but whose content could not be decoded.
    pub decode_errors: u64,
}

impl FrameStats {
    pub fn add(&mut self, o: &FrameStats) {
        self.frames += o.frames;
        self.checksum_failures += o.checksum_failures;
        self.resyncs += o.resyncs;
        self.discarded_bytes += o.discarded_bytes;
        self.skipped_bytes += o.skipped_bytes;
        self.decode_errors += o.decode_errors;
    }
}

/// Host side of a device protocol, sans I/O. `now` is the gateway time the bytes were read or
/// the tick fired; drivers never read a clock.
pub trait DeviceDriver: Send {
    /// Protocol name for logs and metrics (`intellivue`, `medibus`, `datex`, `profile:ivy-450c`).
    fn protocol(&self) -> &str;
    /// The port opened (or reopened): reset the session; append what to send first
    /// (association request, ICC) to `out`.
    fn on_connect(&mut self, now: Timestamp, out: &mut Vec<u8>);
    /// Bytes read from the device. Decoded events go to `events`; replies the protocol needs
    /// right away (acknowledge an MDS create event) go to `out`.
    fn on_bytes(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
        events: &mut Vec<DeviceEvent>,
        out: &mut Vec<u8>,
    );
    /// Called at least every [`Self::tick_interval`]: append polls and keep-alives that are due
    /// to `out`; push `Disconnected` to `events` when the device has been silent too long.
    fn on_tick(&mut self, now: Timestamp, events: &mut Vec<DeviceEvent>, out: &mut Vec<u8>);
    /// How often the session should call [`Self::on_tick`].
    fn tick_interval(&self) -> Duration {
        Duration::from_millis(250)
    }
    /// Framing counters since creation.
    fn stats(&self) -> FrameStats;
}

/// Device side of a protocol, for tests and demonstrations, sans I/O. A simulator answers the
/// host's requests from the protocol's specification and produces readings that change
/// deterministically with `now`.
pub trait DeviceSimulator: Send {
    /// Bytes from the host; replies go to `out`.
    fn on_bytes(&mut self, bytes: &[u8], now: Timestamp, out: &mut Vec<u8>);
    /// Unsolicited output that is due (protocols where the device talks on its own, e.g. an
    /// ASCII monitor printing a line every second).
    fn on_tick(&mut self, now: Timestamp, out: &mut Vec<u8>);
    fn tick_interval(&self) -> Duration {
        Duration::from_millis(100)
    }
}

/// A deterministic vital-sign trace for simulators: a base value with a slow sine swing and a
/// step (e.g. a deterioration) after `step_after_ms` from the simulator's start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimTrace {
    pub base: f64,
    pub swing: f64,
    pub period_ms: i64,
    pub step: f64,
    pub step_after_ms: i64,
}

impl SimTrace {
    pub const fn flat(base: f64) -> Self {
        SimTrace {
            base,
            swing: 0.0,
            period_ms: 60_000,
            step: 0.0,
            step_after_ms: i64::MAX,
        }
    }
    pub const fn wave(base: f64, swing: f64, period_ms: i64) -> Self {
        SimTrace {
            base,
            swing,
            period_ms,
            step: 0.0,
            step_after_ms: i64::MAX,
        }
    }
    /// The value `elapsed_ms` after the simulator started, rounded to `decimals`.
    pub fn at(&self, elapsed_ms: i64, decimals: i32) -> f64 {
        let period = self.period_ms.max(1) as f64;
        let phase = (elapsed_ms as f64 / period) * std::f64::consts::TAU;
        let mut v = self.base + self.swing * phase.sin();
        if elapsed_ms >= self.step_after_ms {
            v += self.step;
        }
        let k = 10f64.powi(decimals);
        (v * k).round() / k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_trace_steps_and_rounds() {
        let t = SimTrace {
            base: 80.0,
            swing: 0.0,
            period_ms: 1000,
            step: 30.0,
            step_after_ms: 5_000,
        };
        assert_eq!(t.at(4_999, 0), 80.0);
        assert_eq!(t.at(5_000, 0), 110.0);
        let w = SimTrace::wave(10.0, 2.0, 4_000);
        assert_eq!(w.at(1_000, 1), 12.0);
        assert_eq!(w.at(3_000, 1), 8.0);
    }

    #[test]
    fn codes_display_their_system() {
        assert_eq!(
            DeviceCode::mdc(147_842, "MDC_ECG_HEART_RATE").to_string(),
            "MDC 147842 MDC_ECG_HEART_RATE"
        );
    }
}
