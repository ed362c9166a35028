//! The configuration file's sections.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// Replay pace: `max` (as fast as the machine allows) or a factor of real time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    Max,
    Factor(f64),
}

impl FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        let s = s
            .strip_suffix('x')
            .or_else(|| s.strip_suffix('×'))
            .unwrap_or(s);
        match s.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Factor(f)),
            _ => Err(format!(
                "speed {s:?} is neither `max` nor a positive number"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Speed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(f) => format!("{f}").parse().map_err(serde::de::Error::custom),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Shown in alerts and used as the observations' `site`.
    #[serde(default)]
    pub name: Option<String>,
    /// Minutes east of UTC assumed for HL7 times that carry no zone.
    #[serde(default)]
    pub timezone_offset_minutes: i32,
    /// Beds whose patients are scored on NEWS2 SpO2 scale 2 (hypercapnic respiratory failure).
    #[serde(default)]
    pub hypercapnic_beds: Vec<String>,
}

/// Where tables live. Absent: the tables built into the binary.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    #[serde(default)]
    pub device_profiles: Option<PathBuf>,
    #[serde(default)]
    pub scoring: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    /// In-process topics: every stage in one process (the embedded default).
    #[default]
    Memory,
    /// Kafka topics (`[kafka]`), also within one `vigil run`.
    Kafka,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    #[serde(default)]
    pub kind: BusKind,
    /// Records each in-process topic holds before publishers wait.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
}

fn default_capacity() -> usize {
    4096
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: BusKind::Memory,
            capacity: default_capacity(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port` for /metrics, /healthz, /readyz. Absent: no HTTP server.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default = "default_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

fn default_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_level(),
            format: LogFormat::Text,
        }
    }
}

/// A source of device traffic.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Replays a recording through the real decoders.
    Replay {
        name: String,
        path: PathBuf,
        #[serde(default = "default_speed")]
        speed: Speed,
    },
    /// Listens for HL7 v2 over MLLP/TCP (device gateways, ADT, lab).
    Mllp(crate::sources::mllp::MllpSourceConfig),
    /// Reads one serial device (a vendor protocol or a device profile).
    Serial(crate::sources::serial::SerialSourceConfig),
    /// Subscribes to an MQTT broker (JSON or SenML device payloads).
    Mqtt(crate::sources::mqtt::MqttSourceConfig),
}

fn default_speed() -> Speed {
    Speed::Factor(1.0)
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Replay { name, .. } => name,
            SourceConfig::Mllp(c) => &c.name,
            SourceConfig::Serial(c) => &c.name,
            SourceConfig::Mqtt(c) => &c.name,
        }
    }
}

/// Where alerts go.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// One line per alert on standard output.
    Console {
        /// Also print resolutions and quiet re-openings, not only new alerts.
        #[serde(default = "yes")]
        show_transitions: bool,
    },
    /// Every alert transition as one JSON line.
    Jsonl { path: PathBuf },
    /// POST each alert transition as JSON.
    Webhook {
        #[serde(default)]
        name: Option<String>,
        url: String,
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
        #[serde(default = "default_attempts")]
        max_attempts: u32,
        #[serde(default = "default_backoff_ms")]
        initial_backoff_ms: u64,
        #[serde(default = "default_max_backoff_ms")]
        max_backoff_ms: u64,
        /// Environment variable holding the HMAC-SHA256 key: each body is signed in
        /// `X-Vigil-Signature: sha256=<hex>`.
        #[serde(default)]
        secret_env: Option<String>,
    },
    /// IHE PCD-04 `ORU^R40` over MLLP to an alarm manager, on every episode change that pages
    /// or acknowledges or resolves.
    Pcd04 {
        #[serde(default)]
        name: Option<String>,
        /// `host:port` of the alarm manager's MLLP listener.
        address: String,
        #[serde(default = "default_facility")]
        facility: String,
        #[serde(default = "default_receiving_app")]
        receiving_application: String,
        #[serde(default = "default_backoff_ms")]
        initial_backoff_ms: u64,
        #[serde(default = "default_max_backoff_ms")]
        max_backoff_ms: u64,
    },
    /// JSON to an MQTT broker, QoS 1, topic `<topic_prefix>/<unit>/alerts`.
    Mqtt {
        #[serde(default)]
        name: Option<String>,
        host: String,
        #[serde(default = "default_mqtt_port")]
        port: u16,
        #[serde(default = "default_topic_prefix")]
        topic_prefix: String,
        #[serde(default = "default_backoff_ms")]
        initial_backoff_ms: u64,
        #[serde(default = "default_max_backoff_ms")]
        max_backoff_ms: u64,
    },
}

fn default_facility() -> String {
    "ICU".into()
}
fn default_receiving_app() -> String {
    "ACM".into()
}
fn default_mqtt_port() -> u16 {
    1883
}
fn default_topic_prefix() -> String {
    "vigil".into()
}

fn yes() -> bool {
    true
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_attempts() -> u32 {
    6
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    #[serde(default)]
    pub sink: Vec<SinkConfig>,
    /// An active alert not acknowledged within this many minutes escalates (0: never).
    #[serde(default = "default_escalate_after")]
    pub escalate_after_minutes: u32,
    /// An escalated alert still not acknowledged pages again this often (0: never).
    #[serde(default = "default_renotify")]
    pub renotify_minutes: u32,
    /// Where alerts, their history and the audit trail are kept.
    #[serde(default)]
    pub store: AlertStoreConfig,
}

fn default_escalate_after() -> u32 {
    15
}
fn default_renotify() -> u32 {
    30
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            sink: Vec::new(),
            escalate_after_minutes: default_escalate_after(),
            renotify_minutes: default_renotify(),
            store: AlertStoreConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlertStoreKind {
    /// SQLite file (`path`, default `<storage dir>/alerts.sqlite`).
    #[default]
    Sqlite,
    /// PostgreSQL (`url`), for deployments that share one store.
    Postgres,
    /// Kept in memory only (demo and replay runs).
    Memory,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertStoreConfig {
    #[serde(default)]
    pub kind: AlertStoreKind,
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `postgres://user@host:port/dbname`; a password is taken from `password_env`.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the PostgreSQL password.
    #[serde(default)]
    pub password_env: Option<String>,
}

/// `[web]`: who may use the API and the dashboard.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    #[serde(default)]
    pub user: Vec<crate::web::auth::UserConfig>,
    /// Lifetime of a login session (default 720 = 12 h).
    #[serde(default)]
    pub session_minutes: Option<u64>,
}

/// Where vigil keeps what it must not lose.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Data directory (dead letters now; the spool and alert store later).
    #[serde(default = "default_data_dir")]
    pub dir: PathBuf,
    /// Bound on the dead-letter store on disk.
    #[serde(default = "default_deadletter_bytes")]
    pub deadletter_max_bytes: u64,
    /// Store-and-forward at a gateway on Kafka: observations are written to a spool in
    /// `<dir>/spool` (fsynced) before the sender is acknowledged, and forwarded to the broker
    /// from there, so a broker outage or a crash loses nothing acknowledged. Off: the sender
    /// is acknowledged when the broker has the record (the source waits while it is away).
    #[serde(default = "default_true")]
    pub spool: bool,
    /// Most bytes of not-yet-forwarded records the spool holds; beyond it, sources wait (and
    /// their senders' acknowledgements with them). Default 1 GiB.
    #[serde(default = "default_spool_bytes")]
    pub spool_max_bytes: u64,
}

fn default_true() -> bool {
    true
}

fn default_spool_bytes() -> u64 {
    1 << 30
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("vigil-data")
}

fn default_deadletter_bytes() -> u64 {
    64 << 20
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            dir: default_data_dir(),
            deadletter_max_bytes: default_deadletter_bytes(),
            spool: true,
            spool_max_bytes: default_spool_bytes(),
        }
    }
}

impl StorageConfig {
    pub fn deadletter_dir(&self) -> PathBuf {
        self.dir.join("deadletters")
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// The gateway census journal (see `sources::census_journal`).
    pub fn census_journal(&self) -> PathBuf {
        self.dir.join("census.journal")
    }
}
