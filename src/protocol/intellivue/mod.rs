//! Philips IntelliVue MIB/RS232 Data Export protocol, sans I/O.
//!
//! Layers, each its own file:
//! - [`frame`]: `0xC0`/`0xC1` framing with `0x7D` escapes, header and RFC 1662 FCS; the
//!   incremental decoder counts checksum failures, resyncs and discarded bytes.
//! - [`pdu`]: association control and the Data Export remote operations (MDS Create Event,
//!   polls, poll results, linked results, errors) with their attribute values.
//! - [`float`]: FLOAT-Type values and MeasurementState.
//! - [`time`]: absolute (BCD) and relative (1/8 ms, wrapping) time.
//! - [`nomenclature`]: Philips ids to IEEE 11073 MDC codes and units to UCUM.
//! - [`driver`]: [`IntellivueDriver`], the host session ([`crate::protocol::device::DeviceDriver`]).
//! - [`sim`]: [`IntellivueSimulator`], a monitor for tests and demonstrations.
//!
//! Nothing here reads a clock or a port; `docs/devices/intellivue.md` describes the session.

pub mod driver;
pub mod float;
pub mod frame;
pub mod nomenclature;
pub mod pdu;
pub mod sim;
pub mod time;

#[cfg(test)]
mod tests;

pub use driver::{IntellivueCounters, IntellivueDriver, IntellivueSettings};
pub use sim::{IntellivueSimSettings, IntellivueSimulator, SimAlarm, SimNumeric, SimObject};

use crate::model::Timestamp;
use crate::protocol::device::{DeviceDriver, DeviceEvent, DeviceSimulator};

/// Step of the in-memory sessions below.
const SESSION_STEP_MS: i64 = 50;

/// Runs a driver against a simulator in memory for `seconds` from `start`, stepping time by
/// 50 ms and pumping bytes both ways. Returns the monitor → host bytes and, with the time each
/// was emitted, the driver's events.
pub fn run_session(
    seconds: u32,
    start: Timestamp,
    driver: &mut IntellivueDriver,
    sim: &mut IntellivueSimulator,
) -> (Vec<u8>, Vec<(Timestamp, DeviceEvent)>) {
    let mut device_bytes = Vec::new();
    let mut timeline = Vec::new();
    let mut host = Vec::new();
    let mut events = Vec::new();
    driver.on_connect(start, &mut host);
    let end = start.plus_ms(i64::from(seconds) * 1000);
    let mut now = start;
    loop {
        let mut reply = Vec::new();
        if !host.is_empty() {
            sim.on_bytes(&host, now, &mut reply);
            host.clear();
        }
        sim.on_tick(now, &mut reply);
        if !reply.is_empty() {
            device_bytes.extend_from_slice(&reply);
            driver.on_bytes(&reply, now, &mut events, &mut host);
        }
        driver.on_tick(now, &mut events, &mut host);
        timeline.extend(events.drain(..).map(|e| (now, e)));
        if now >= end {
            break;
        }
        now = now.plus_ms(SESSION_STEP_MS);
    }
    (device_bytes, timeline)
}

/// `seconds` of a default session (driver and simulator with default settings) from `start`:
/// the bytes the monitor sent. A driver fed only these bytes decodes the same reports, so this
/// makes capture files for benchmarks and `vigil decode`.
pub fn capture(seconds: u32, start: Timestamp) -> Vec<u8> {
    let mut driver = IntellivueDriver::default();
    let mut sim = IntellivueSimulator::default();
    run_session(seconds, start, &mut driver, &mut sim).0
}
