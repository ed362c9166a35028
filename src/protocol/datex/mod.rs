//! GE Datex-Ohmeda S/5 Computer Interface (S/5, CARESCAPE B-series monitors), sans I/O.
//!
//! Serial 19200 baud, 8 data bits, even parity, 1 stop bit, RTS/CTS. The host asks for
//! physiological data at an interface level; the monitor then sends records on its own.
//!
//! - [`frame`]: `0x7E` flags, `0x7D` escaping, the 8-bit checksum, the length cap.
//! - [`record`]: the 40-byte record header, subrecord descriptors, transmission requests and
//!   the physiological database classes (basic, ext1..3) with their groups and status bits.
//! - [`codes`]: interface levels, the reserved "no value" codes, and each parameter's scaling,
//!   MDC code and UCUM unit.
//! - [`driver`]: [`DatexDriver`], the host side (requests, level fallback, silence).
//! - [`sim`]: [`DatexSimulator`], a monitor for tests and demonstrations.
//!
//! This module owns the protocol only: it must not open ports, read a clock or decide what an
//! observation means clinically (the normalizer does).

pub mod codes;
pub mod driver;
pub mod frame;
pub mod record;
pub mod sim;

#[cfg(test)]
mod tests;

pub use codes::{NoValue, UnavailableCounts};
pub use driver::{DatexDriver, DatexSettings, DatexTrend};
pub use frame::{checksum, encode_frame, FrameDecoder};
pub use sim::{DatexSimSettings, DatexSimulator};

use crate::model::Timestamp;
use crate::protocol::device::{DeviceDriver, DeviceSimulator};

/// Runs a default driver against a default simulator in memory for `seconds` from `start`
/// (100 ms steps) and returns the bytes the monitor sent, for decode tests and benchmarks. The
/// simulated monitor is at level 2009, so the first request (2015) goes unanswered and data
/// starts after one fallback step. A fresh driver fed only these bytes decodes them.
pub fn capture(seconds: u32, start: Timestamp) -> Vec<u8> {
    let mut driver = DatexDriver::new(DatexSettings::default());
    let mut sim = DatexSimulator::new(DatexSimSettings::default());
    let mut to_device = Vec::new();
    let mut from_device = Vec::new();
    let mut events = Vec::new();
    let mut captured = Vec::new();
    let end = start.plus_ms(i64::from(seconds) * 1000);
    driver.on_connect(start, &mut to_device);
    let mut now = start;
    // Zero latency both ways: requests reach the monitor in the step they are sent.
    let mut exchange = |driver: &mut DatexDriver,
                        sim: &mut DatexSimulator,
                        to_device: &mut Vec<u8>,
                        from_device: &mut Vec<u8>,
                        now: Timestamp| {
        if !to_device.is_empty() {
            sim.on_bytes(to_device, now, from_device);
            to_device.clear();
        }
        if !from_device.is_empty() {
            captured.extend_from_slice(from_device);
            driver.on_bytes(from_device, now, &mut events, to_device);
            from_device.clear();
            events.clear();
        }
    };
    loop {
        exchange(&mut driver, &mut sim, &mut to_device, &mut from_device, now);
        sim.on_tick(now, &mut from_device);
        exchange(&mut driver, &mut sim, &mut to_device, &mut from_device, now);
        driver.on_tick(now, &mut Vec::new(), &mut to_device);
        exchange(&mut driver, &mut sim, &mut to_device, &mut from_device, now);
        if now >= end {
            break;
        }
        now = now.plus_ms(100);
    }
    captured
}
