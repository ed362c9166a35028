//! `[[source]] kind = "serial"`: one RS-232 port (or USB adapter, or pseudo-terminal) with the
//! driver or device profile that speaks its protocol.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Parity as configured.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ParityConfig {
    None,
    Even,
    Odd,
}

/// Flow control as configured.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FlowControlConfig {
    None,
    /// Hardware handshake (RTS/CTS).
    RtsCts,
    /// Software handshake (XON/XOFF).
    XonXoff,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SerialSourceConfig {
    pub name: String,
    /// The port: `/dev/ttyUSB0`, `/dev/serial/by-id/…`, a pseudo-terminal.
    pub path: PathBuf,
    /// `intellivue`, `medibus`, `datex`, or `profile:<name>` for a device profile in
    /// `device-profiles/devices/`.
    pub driver: String,
    /// Line settings; unset ones take the driver's or profile's defaults.
    #[serde(default)]
    pub baud: Option<u32>,
    #[serde(default)]
    pub data_bits: Option<u8>,
    #[serde(default)]
    pub parity: Option<ParityConfig>,
    #[serde(default)]
    pub stop_bits: Option<u8>,
    #[serde(default)]
    pub flow_control: Option<FlowControlConfig>,
    /// The bed the device stands at (its readings go to the bed's admitted patient, from the
    /// ADT census). A device that names its own patient needs neither.
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub bed: Option<String>,
    /// The device's id in observations (default: what the device reports, else the source
    /// name).
    #[serde(default)]
    pub device_id: Option<String>,
    /// First wait before reopening a lost port; doubles up to `reconnect_max_ms`.
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_ms: u64,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// When set, every byte read from the device is appended to this replay recording
    /// (`.jsonl`), so the session can be decoded (`vigil decode`) or replayed later.
    #[serde(default)]
    pub capture: Option<PathBuf>,
}

fn default_reconnect_initial() -> u64 {
    500
}
fn default_reconnect_max() -> u64 {
    30_000
}

impl SerialSourceConfig {
    /// Paths made absolute against `base` (the config file's directory).
    pub fn resolve(&mut self, base: &Path) {
        if let Some(c) = &mut self.capture {
            if c.is_relative() {
                *c = base.join(&*c);
            }
        }
    }
}

/// Line settings after the driver's defaults were applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialLine {
    pub baud: u32,
    pub data_bits: u8,
    pub parity: ParityConfig,
    pub stop_bits: u8,
    pub flow_control: FlowControlConfig,
}

impl SerialLine {
    pub const fn new(baud: u32, data_bits: u8, parity: ParityConfig, stop_bits: u8) -> Self {
        SerialLine {
            baud,
            data_bits,
            parity,
            stop_bits,
            flow_control: FlowControlConfig::None,
        }
    }

    pub const fn with_flow(mut self, flow: FlowControlConfig) -> Self {
        self.flow_control = flow;
        self
    }

    /// These defaults overridden by whatever the port's config sets.
    pub fn overridden_by(self, c: &SerialSourceConfig) -> Self {
        SerialLine {
            baud: c.baud.unwrap_or(self.baud),
            data_bits: c.data_bits.unwrap_or(self.data_bits),
            parity: c.parity.unwrap_or(self.parity),
            stop_bits: c.stop_bits.unwrap_or(self.stop_bits),
            flow_control: c.flow_control.unwrap_or(self.flow_control),
        }
    }

    /// Every problem with these settings, for `vigil validate`.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.baud == 0 {
            p.push("baud must be positive".to_string());
        }
        if !(5..=8).contains(&self.data_bits) {
            p.push(format!("data_bits {} is not 5, 6, 7 or 8", self.data_bits));
        }
        if !(1..=2).contains(&self.stop_bits) {
            p.push(format!("stop_bits {} is not 1 or 2", self.stop_bits));
        }
        p
    }
}

impl std::fmt::Display for SerialLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parity = match self.parity {
            ParityConfig::None => 'N',
            ParityConfig::Even => 'E',
            ParityConfig::Odd => 'O',
        };
        let flow = match self.flow_control {
            FlowControlConfig::None => "",
            FlowControlConfig::RtsCts => " RTS/CTS",
            FlowControlConfig::XonXoff => " XON/XOFF",
        };
        write!(
            f,
            "{} {}{}{}{}",
            self.baud, self.data_bits, parity, self.stop_bits, flow
        )
    }
}
