//! Declarative device profiles: a simple serial device described in TOML, not code.
//!
//! A profile (`device-profiles/devices/<name>.toml`, format in that folder's README) gives the
//! serial defaults, the framing (lines, STX/ETX, length prefix), an optional checksum, byte
//! ranges to skip (waveform runs), the frame types and the fields each carries (with their MDC,
//! LOINC or local code and UCUM unit), the polls and keep-alives to send, and optionally what a
//! simulated device prints. [`ProfileDriver`] decodes any profile; [`ProfileSimulator`] plays
//! the device side.
//!
//! This module owns parsing and checking profiles and the sans-I/O driver and simulator. It
//! must not open ports or read clocks: the serial source does that and hands bytes in.

mod driver;
mod extract;
mod framing;
mod model;
mod schema;
mod sim;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

pub use driver::ProfileDriver;
pub use extract::{decode, Decoded};
pub use framing::{
    encode, ByteOrder, ByteSet, ChecksumAlgo, ChecksumSpec, Crc16, EncodeError, Encoding, Framer,
    Position,
};
pub use model::{
    check_unit, parse_code, unescape, DeviceProfile, Extract, FieldSpec, FlowControl, FrameSpec,
    Framing, Location, Matcher, NoiseSpec, Parity, PollSpec, SerialDefaults, SessionSpec,
    SimulateSpec, Terminator, ValueKind, MAX_FRAME_LIMIT,
};
pub use sim::{ProfileSimulator, Template, TraceSpec};

use crate::config::problem::{Problem, Problems};
use crate::model::Timestamp;
use crate::protocol::device::{DeviceDriver, DeviceSimulator};

/// Where shipped profiles live, relative to the repository root.
pub const PROFILES_DIR: &str = "device-profiles/devices";

/// Profiles compiled into the binary: (file name, text).
const BUILTIN: &[(&str, &str)] = &[
    (
        "ivy-450c.toml",
        include_str!("../../../device-profiles/devices/ivy-450c.toml"),
    ),
    (
        "ascii-pump.toml",
        include_str!("../../../device-profiles/devices/ascii-pump.toml"),
    ),
];

/// Errors of the profile module.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A simulator was asked of a profile with no `[simulate]` section.
    #[error("profile `{profile}` has no [simulate] section")]
    NoSimulation { profile: String },
    /// No profile by that name is loaded.
    #[error("no device profile named `{0}`")]
    Unknown(String),
    /// Profile files with faults, each with its file and line.
    #[error("{0}")]
    Invalid(Problems),
}

/// A set of profiles by name: the built-in ones, overridden or extended by a directory's.
#[derive(Clone, Debug, Default)]
pub struct ProfileSet {
    profiles: BTreeMap<String, Arc<DeviceProfile>>,
}

impl ProfileSet {
    /// The profiles shipped in `device-profiles/devices/`, compiled in. (The tests check they
    /// all parse; one that did not would be left out rather than stop the program.)
    pub fn builtin() -> ProfileSet {
        static SET: OnceLock<ProfileSet> = OnceLock::new();
        SET.get_or_init(|| {
            let mut set = ProfileSet::default();
            for (file, src) in BUILTIN {
                if let Ok(p) = DeviceProfile::parse(&format!("{PROFILES_DIR}/{file}"), src) {
                    set.insert(p);
                }
            }
            set
        })
        .clone()
    }

    /// The built-in profiles plus every `*.toml` in `dir` (same name: the directory's wins).
    /// Every problem of every file is reported.
    pub fn load_dir(dir: &Path) -> Result<ProfileSet, Vec<Problem>> {
        let mut set = ProfileSet::builtin();
        let mut problems = Vec::new();
        let shown_dir = dir.display().to_string();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                return Err(vec![Problem::new(
                    shown_dir,
                    None,
                    format!("cannot read the profile directory: {e}"),
                )])
            }
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for path in files {
            let shown = path.display().to_string();
            let src = match std::fs::read_to_string(&path) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(Problem::new(shown, None, format!("cannot read: {e}")));
                    continue;
                }
            };
            match DeviceProfile::parse(&shown, &src) {
                Ok(p) => {
                    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                    if p.name != stem {
                        problems.push(Problem::new(
                            &shown,
                            name_line(&src),
                            format!(
                                "profile name `{}` differs from its file name `{stem}.toml`",
                                p.name
                            ),
                        ));
                    } else {
                        set.insert(p);
                    }
                }
                Err(mut e) => problems.append(&mut e),
            }
        }
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(problems)
        }
    }

    /// Adds or replaces a profile.
    pub fn insert(&mut self, profile: DeviceProfile) {
        self.profiles
            .insert(profile.name.clone(), Arc::new(profile));
    }

    pub fn get(&self, name: &str) -> Option<Arc<DeviceProfile>> {
        self.profiles.get(name).cloned()
    }

    /// Profile names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.profiles.keys().map(String::as_str).collect()
    }

    /// A driver for the profile named `name`.
    pub fn driver(&self, name: &str) -> Result<ProfileDriver, ProfileError> {
        self.get(name)
            .map(ProfileDriver::new)
            .ok_or_else(|| ProfileError::Unknown(name.to_string()))
    }
}

fn name_line(src: &str) -> Option<usize> {
    src.lines()
        .position(|l| l.trim_start().starts_with("name"))
        .map(|i| i + 1)
}

/// Every problem of every profile in `dir` (empty when all are sound), each with its file and
/// line: what `vigil validate` prints for `device-profiles/devices`.
pub fn validate_dir(dir: &Path) -> Vec<Problem> {
    ProfileSet::load_dir(dir).err().unwrap_or_default()
}

/// What the profile's simulated device sends in `seconds` from `start`, host polls answered as
/// a real session would (the driver's `on_connect` and ticks drive the simulator). For decode
/// tests and benchmarks.
pub fn capture(
    profile: &Arc<DeviceProfile>,
    seconds: u32,
    start: Timestamp,
) -> Result<Vec<u8>, ProfileError> {
    let mut sim = ProfileSimulator::new(Arc::clone(profile))?;
    let mut driver = ProfileDriver::new(Arc::clone(profile));
    let step = sim
        .tick_interval()
        .min(driver.tick_interval())
        .as_millis()
        .clamp(1, 1000) as i64;
    let end = start.plus_ms(i64::from(seconds) * 1000);
    let mut host = Vec::new();
    let mut events = Vec::new();
    let mut device = Vec::new();
    driver.on_connect(start, &mut host);
    let mut now = start;
    while now < end {
        driver.on_tick(now, &mut events, &mut host);
        events.clear();
        if !host.is_empty() {
            sim.on_bytes(&host, now, &mut device);
            host.clear();
        }
        sim.on_tick(now, &mut device);
        now = now.plus_ms(step);
    }
    Ok(device)
}
