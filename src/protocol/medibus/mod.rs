//! Dräger MEDIBUS (RS-232, slow mode): ventilators such as Evita, Savina, Oxylog and the
//! V-series, and anaesthesia machines.
//!
//! - [`frame`]: the envelope (`ESC`/`SOH` … checksum `CR`), checksums, the incremental decoder
//!   that skips handshake and real-time bytes.
//! - [`codes`]: command codes, data-code tables with their units and IEEE 11073 codes.
//! - [`records`]: layouts of response data (data records, alarms, text messages,
//!   identification, date and time).
//! - [`driver`]: [`MedibusDriver`], the host-side session.
//! - [`sim`]: [`MedibusSimulator`], an Evita-like device.
//!
//! Sans-I/O: no clock, no port. What the module must not do: real-time (waveform) decoding,
//! which MEDIBUS.X carries in high-bit bytes that are skipped here.

pub mod codes;
pub mod driver;
pub mod frame;
pub mod records;
pub mod sim;

#[cfg(test)]
mod tests;

pub use driver::{MedibusDriver, MedibusSettings, SETTINGS_CHANNEL, TEXT_CHANNEL};
pub use frame::{Decoded, MedibusDecoder, Message, MessageKind};
pub use records::MedibusError;
pub use sim::{MedibusSimSettings, MedibusSimulator, SimAlarm};

use crate::model::Timestamp;

/// Runs a default [`MedibusDriver`] against a default [`MedibusSimulator`] in memory for
/// `seconds` from `start` and returns the bytes the device sent, in order: a capture a fresh
/// driver decodes from the device's side alone (it decodes responses it did not ask for).
pub fn capture(seconds: u32, start: Timestamp) -> Vec<u8> {
    let mut driver = MedibusDriver::new(MedibusSettings::default());
    let mut sim = MedibusSimulator::new(MedibusSimSettings::default());
    let mut events = Vec::new();
    let mut bytes = Vec::new();
    sim::run_loopback(
        &mut driver,
        &mut sim,
        start,
        i64::from(seconds) * 1000,
        50,
        &mut events,
        &mut |_, direction, chunk| {
            if direction == sim::Direction::ToHost {
                bytes.extend_from_slice(chunk);
            }
        },
    );
    bytes
}
