//! The drivers a serial source can name: the built-in vendor protocols and every device
//! profile. One place resolves `driver = "…"` for the serial source, replays, `vigil decode`,
//! `vigil simulate-device` and the benchmarks.

use std::sync::Arc;

use crate::model::Timestamp;
use crate::protocol::datex::{DatexDriver, DatexSettings, DatexSimSettings, DatexSimulator};
use crate::protocol::device::{DeviceDriver, DeviceSimulator};
use crate::protocol::intellivue::{
    IntellivueDriver, IntellivueSettings, IntellivueSimSettings, IntellivueSimulator,
};
use crate::protocol::medibus::{
    MedibusDriver, MedibusSettings, MedibusSimSettings, MedibusSimulator,
};
use crate::protocol::profile::{DeviceProfile, ProfileDriver, ProfileSet, ProfileSimulator};

use super::config::{FlowControlConfig, ParityConfig, SerialLine};
use super::DriverFactory;

/// The names of the built-in vendor drivers.
pub const BUILTIN: [&str; 3] = ["intellivue", "medibus", "datex"];

/// A resolved `driver = "…"`.
#[derive(Clone, Debug)]
pub enum DriverSpec {
    /// Philips IntelliVue MIB/RS232 Data Export.
    Intellivue,
    /// Dräger MEDIBUS.
    Medibus,
    /// GE Datex-Ohmeda S/5 Computer Interface.
    Datex,
    /// A declarative device profile.
    Profile(Arc<DeviceProfile>),
}

impl DriverSpec {
    /// Resolves `intellivue`, `medibus`, `datex` or `profile:<name>`.
    pub fn parse(spec: &str, profiles: &ProfileSet) -> Result<Self, String> {
        let spec = spec.trim();
        match spec {
            "intellivue" => Ok(DriverSpec::Intellivue),
            "medibus" => Ok(DriverSpec::Medibus),
            "datex" => Ok(DriverSpec::Datex),
            _ => match spec.strip_prefix("profile:") {
                Some(name) => profiles.get(name).map(DriverSpec::Profile).ok_or_else(|| {
                    format!(
                        "no device profile {name:?} (known: {})",
                        profiles.names().join(", ")
                    )
                }),
                None => Err(format!(
                    "unknown driver {spec:?}: use {}, or profile:<name> with one of: {}",
                    BUILTIN.join(", "),
                    profiles.names().join(", ")
                )),
            },
        }
    }

    /// The name used in logs, metrics and recordings.
    pub fn name(&self) -> String {
        match self {
            DriverSpec::Intellivue => "intellivue".into(),
            DriverSpec::Medibus => "medibus".into(),
            DriverSpec::Datex => "datex".into(),
            DriverSpec::Profile(p) => format!("profile:{}", p.name),
        }
    }

    /// The line settings the device uses out of the box (DEVICES.md; a profile's own).
    pub fn line_defaults(&self) -> SerialLine {
        match self {
            DriverSpec::Intellivue => SerialLine::new(115_200, 8, ParityConfig::None, 1),
            DriverSpec::Medibus => SerialLine::new(19_200, 8, ParityConfig::Even, 1),
            DriverSpec::Datex => SerialLine::new(19_200, 8, ParityConfig::Even, 1)
                .with_flow(FlowControlConfig::RtsCts),
            DriverSpec::Profile(p) => {
                use crate::protocol::profile::{FlowControl, Parity};
                let s = &p.serial;
                SerialLine::new(
                    s.baud,
                    s.data_bits,
                    match s.parity {
                        Parity::None => ParityConfig::None,
                        Parity::Even => ParityConfig::Even,
                        Parity::Odd => ParityConfig::Odd,
                    },
                    s.stop_bits,
                )
                .with_flow(match s.flow_control {
                    FlowControl::None => FlowControlConfig::None,
                    FlowControl::RtsCts => FlowControlConfig::RtsCts,
                    FlowControl::XonXoff => FlowControlConfig::XonXoff,
                })
            }
        }
    }

    pub fn driver(&self) -> Box<dyn DeviceDriver> {
        match self {
            DriverSpec::Intellivue => {
                Box::new(IntellivueDriver::new(IntellivueSettings::default()))
            }
            DriverSpec::Medibus => Box::new(MedibusDriver::new(MedibusSettings::default())),
            DriverSpec::Datex => Box::new(DatexDriver::new(DatexSettings::default())),
            DriverSpec::Profile(p) => Box::new(ProfileDriver::new(Arc::clone(p))),
        }
    }

    pub fn factory(&self) -> DriverFactory {
        let spec = self.clone();
        Arc::new(move || spec.driver())
    }

    /// The device side, for `vigil simulate-device` and the tests.
    pub fn simulator(&self) -> Result<Box<dyn DeviceSimulator>, String> {
        Ok(match self {
            DriverSpec::Intellivue => {
                Box::new(IntellivueSimulator::new(IntellivueSimSettings::default()))
            }
            DriverSpec::Medibus => Box::new(MedibusSimulator::new(MedibusSimSettings::default())),
            DriverSpec::Datex => Box::new(DatexSimulator::new(DatexSimSettings::default())),
            DriverSpec::Profile(p) => {
                Box::new(ProfileSimulator::new(Arc::clone(p)).map_err(|e| e.to_string())?)
            }
        })
    }

    /// `seconds` of what the device sends in a session with a host, made in memory.
    pub fn capture(&self, seconds: u32, start: Timestamp) -> Result<Vec<u8>, String> {
        Ok(match self {
            DriverSpec::Intellivue => crate::protocol::intellivue::capture(seconds, start),
            DriverSpec::Medibus => crate::protocol::medibus::capture(seconds, start),
            DriverSpec::Datex => crate::protocol::datex::capture(seconds, start),
            DriverSpec::Profile(p) => {
                crate::protocol::profile::capture(p, seconds, start).map_err(|e| e.to_string())?
            }
        })
    }
}
