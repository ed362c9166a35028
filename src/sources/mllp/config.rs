//! `[[source]] kind = "mllp"`: an HL7 v2 listener over MLLP/TCP.

use std::net::SocketAddr;

use serde::Deserialize;

/// How the listener answers senders that set MSH-15 but understand only original-mode codes.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AckCompatConfig {
    /// HL7 rules: enhanced mode (CA/CE/CR, then AA/AE/AR if MSH-16 asks) when MSH-15 or
    /// MSH-16 is set, original mode (AA/AE/AR) otherwise.
    #[default]
    Standard,
    /// Always one original-mode answer.
    OriginalCodes,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MllpSourceConfig {
    pub name: String,
    /// `host:port`; the IANA port for HL7 over MLLP is 2575.
    pub listen: SocketAddr,
    /// A frame larger than this is refused and its connection closed (nothing larger is ever
    /// buffered).
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: usize,
    /// Connections served at once; further ones wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection silent this long is closed.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    #[serde(default)]
    pub ack_compat: AckCompatConfig,
}

fn default_max_frame() -> usize {
    1 << 20
}
fn default_max_connections() -> usize {
    64
}
fn default_idle() -> u64 {
    300
}

impl MllpSourceConfig {
    pub fn new(name: &str, listen: SocketAddr) -> Self {
        MllpSourceConfig {
            name: name.to_string(),
            listen,
            max_frame_bytes: default_max_frame(),
            max_connections: default_max_connections(),
            idle_timeout_secs: default_idle(),
            ack_compat: AckCompatConfig::Standard,
        }
    }
}
