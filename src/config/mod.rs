//! Configuration: one TOML file for every role, checked in full before any port opens.
//!
//! [`Config::load`] reports *every* fault it finds — in the file itself, in the device-profile
//! tables and in the scoring tables it points at — each with its file and line, so an
//! integration engineer fixes them in one pass. Relative paths are relative to the config file.

pub mod problem;
pub mod types;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::Spanned;

pub use problem::{line_of, Problem, Problems};
pub use types::*;

use crate::alerting::AlertRules;
use crate::normalize::NormalizeTables;
use crate::protocol::profile::ProfileSet;
use crate::scorer::ScoringTables;
use crate::sources::serial::drivers::DriverSpec;

/// The example printed by `vigil generate-config`.
pub const EXAMPLE: &str = include_str!("../../deploy/vigil.example.toml");

/// A checked configuration with its tables loaded.
#[derive(Clone, Debug)]
pub struct Config {
    pub site: SiteConfig,
    pub paths: PathsConfig,
    pub bus: BusConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub storage: StorageConfig,
    /// Brokers, security and topics, for `[bus] kind = "kafka"` and the separate roles.
    pub kafka: crate::bus::kafka::KafkaConfig,
    pub sources: Vec<SourceConfig>,
    pub alerting: AlertingConfig,
    /// Users of the API and dashboard.
    pub web: WebConfig,
    pub normalize_tables: NormalizeTables,
    /// Device profiles: the built-in ones, plus `[paths] device_profiles`/devices/*.toml.
    pub device_profiles: ProfileSet,
    pub scoring_tables: ScoringTables,
    pub alert_rules: AlertRules,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    site: Option<Spanned<toml::Value>>,
    paths: Option<Spanned<toml::Value>>,
    bus: Option<Spanned<toml::Value>>,
    http: Option<Spanned<toml::Value>>,
    log: Option<Spanned<toml::Value>>,
    storage: Option<Spanned<toml::Value>>,
    kafka: Option<Spanned<toml::Value>>,
    #[serde(default)]
    source: Vec<Spanned<toml::Value>>,
    alerting: Option<Spanned<toml::Value>>,
    web: Option<Spanned<toml::Value>>,
}

fn sink_line_of(section: &Option<Spanned<toml::Value>>, src: &str) -> Option<usize> {
    section.as_ref().map(|a| line_of(src, a.span().start))
}

/// Deserializes one top-level table from the whole document, so a fault's span (and line)
/// points at the offending key or value, not at the section header.
fn section<T: DeserializeOwned + Default>(
    file: &str,
    src: &str,
    name: &str,
    present: bool,
    problems: &mut Vec<Problem>,
) -> T {
    if !present {
        return T::default();
    }
    match deserialize_key::<T>(src, name) {
        Ok(t) => t,
        Err(e) => {
            let mut p = Problem::from_toml(file, src, &e);
            p.message = format!("[{name}]: {}", p.message);
            problems.push(p);
            T::default()
        }
    }
}

/// `{ <name> = T, .. }` with every other key ignored.
fn deserialize_key<T: DeserializeOwned>(src: &str, name: &str) -> Result<T, toml::de::Error> {
    struct Pick<T> {
        name: String,
        value: Option<T>,
    }
    impl<'de, T: DeserializeOwned> serde::de::DeserializeSeed<'de> for &mut Pick<T> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de, T: DeserializeOwned> serde::de::Visitor<'de> for &mut Pick<T> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a table")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                if key == self.name {
                    self.value = Some(map.next_value::<T>()?);
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }
    let mut pick = Pick {
        name: name.to_string(),
        value: None,
    };
    let de = toml::de::Deserializer::parse(src)?;
    serde::de::DeserializeSeed::deserialize(&mut pick, de)?;
    pick.value
        .ok_or_else(|| <toml::de::Error as serde::de::Error>::custom(format!("missing [{name}]")))
}

impl Config {
    /// Reads and checks a config file and every table it references.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let shown = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem::new(
                &shown,
                None,
                format!("cannot read: {e}"),
            )])
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_str(&shown, &src, &base)
    }

    /// Checks config text; `base` resolves relative paths.
    pub fn from_str(file: &str, src: &str, base: &Path) -> Result<Config, Problems> {
        let mut problems = Vec::new();
        let raw: RawConfig = match toml::from_str(src) {
            Ok(r) => r,
            Err(e) => return Err(Problems(vec![Problem::from_toml(file, src, &e)])),
        };
        let site: SiteConfig = section(file, src, "site", raw.site.is_some(), &mut problems);
        let mut paths: PathsConfig =
            section(file, src, "paths", raw.paths.is_some(), &mut problems);
        let bus: BusConfig = section(file, src, "bus", raw.bus.is_some(), &mut problems);
        let http: HttpConfig = section(file, src, "http", raw.http.is_some(), &mut problems);
        let mut kafka: crate::bus::kafka::KafkaConfig =
            section(file, src, "kafka", raw.kafka.is_some(), &mut problems);
        kafka.resolve(base);
        let kafka_line = raw.kafka.as_ref().map(|k| line_of(src, k.span().start));
        // Kafka settings matter when the bus is Kafka or a section says how to reach it (the
        // gateway, scorer and alerter roles always use it).
        if raw.kafka.is_some() || bus.kind == BusKind::Kafka {
            for p in kafka.problems() {
                problems.push(Problem::new(file, kafka_line, format!("[kafka]: {p}")));
            }
        }
        let log: LogConfig = section(file, src, "log", raw.log.is_some(), &mut problems);
        let mut storage: StorageConfig =
            section(file, src, "storage", raw.storage.is_some(), &mut problems);
        let mut alerting: AlertingConfig =
            section(file, src, "alerting", raw.alerting.is_some(), &mut problems);
        let web: WebConfig = section(file, src, "web", raw.web.is_some(), &mut problems);
        let web_line = raw.web.as_ref().map(|w| line_of(src, w.span().start));
        if let Err(errs) = crate::web::auth::AuthStore::check_config(&web.user) {
            for e in errs {
                problems.push(Problem::new(file, web_line, e.to_string()));
            }
        }
        if alerting.store.kind == AlertStoreKind::Postgres && alerting.store.url.is_none() {
            problems.push(Problem::new(
                file,
                sink_line_of(&raw.alerting, src),
                "[alerting.store]: kind = \"postgres\" needs url = \"postgres://user@host:port/db\"",
            ));
        }
        if let Some(p) = &mut alerting.store.path {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }

        if bus.capacity == 0 {
            problems.push(Problem::new(
                file,
                None,
                "[bus]: capacity must be at least 1",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&log.level).is_err() {
            problems.push(Problem::new(
                file,
                None,
                format!("[log]: level {:?} is not a valid filter", log.level),
            ));
        }

        let resolve = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        storage.dir = resolve(&storage.dir);
        if storage.deadletter_max_bytes < 4096 {
            problems.push(Problem::new(
                file,
                None,
                "[storage]: deadletter_max_bytes must be at least 4096",
            ));
        }
        if storage.spool {
            let mut sc = crate::spool::SpoolConfig::new(storage.spool_dir());
            sc.max_bytes = storage.spool_max_bytes;
            if let Err(e) = sc.validate() {
                problems.push(Problem::new(
                    file,
                    None,
                    format!("[storage]: spool_max_bytes: {e}"),
                ));
            }
        }
        if storage.dir.exists() && !storage.dir.is_dir() {
            problems.push(Problem::new(
                file,
                None,
                format!(
                    "[storage]: {} exists and is not a directory",
                    storage.dir.display()
                ),
            ));
        }

        let mut sources = Vec::new();
        // Serial sources are checked once the device profiles are loaded.
        let mut serial_lines = Vec::new();
        for s in raw.source {
            let line = Some(line_of(src, s.span().start));
            match s.into_inner().try_into::<SourceConfig>() {
                Err(e) => problems.push(Problem::new(
                    file,
                    line,
                    format!("[[source]]: {}", e.message().trim()),
                )),
                Ok(mut sc) => {
                    if sources.iter().any(|x: &SourceConfig| x.name() == sc.name()) {
                        problems.push(Problem::new(
                            file,
                            line,
                            format!("[[source]]: the name {:?} is used twice", sc.name()),
                        ));
                    }
                    if let SourceConfig::Mllp(c) = &sc {
                        let clash = sources.iter().any(|x: &SourceConfig| {
                            matches!(x, SourceConfig::Mllp(o) if o.listen == c.listen && c.listen.port() != 0)
                        });
                        if clash {
                            problems.push(Problem::new(
                                file,
                                line,
                                format!(
                                    "[[source]] {:?}: another source already listens on {}",
                                    c.name, c.listen
                                ),
                            ));
                        }
                        if c.max_frame_bytes < 1024 {
                            problems.push(Problem::new(file, line, format!(
                                "[[source]] {:?}: max_frame_bytes {} is too small for any HL7 message (at least 1024)", c.name, c.max_frame_bytes)));
                        }
                        if c.max_connections == 0 {
                            problems.push(Problem::new(
                                file,
                                line,
                                format!(
                                    "[[source]] {:?}: max_connections must be at least 1",
                                    c.name
                                ),
                            ));
                        }
                    }
                    match &mut sc {
                        SourceConfig::Replay { name, path, .. } => {
                            *path = resolve(path);
                            if let Err(e) = crate::sources::replay::RecordingReader::open(path) {
                                problems.push(Problem::new(
                                    file,
                                    line,
                                    format!(
                                        "[[source]] {name:?}: recording {}: {e}",
                                        path.display()
                                    ),
                                ));
                            }
                        }
                        SourceConfig::Serial(c) => {
                            c.resolve(base);
                            serial_lines.push((sources.len(), line));
                        }
                        SourceConfig::Mllp(c) => {
                            if let Some(tls) = &mut c.tls {
                                tls.resolve(base);
                                if let Err(e) = tls.acceptor() {
                                    problems.push(Problem::new(
                                        file,
                                        line,
                                        format!("[[source]] {:?} tls: {e}", c.name),
                                    ));
                                }
                            }
                        }
                        SourceConfig::Mqtt(c) => {
                            for e in c.check(base) {
                                problems.push(Problem::new(
                                    file,
                                    line,
                                    format!("[[source]] {:?}: {e}", c.name),
                                ));
                            }
                        }
                    }
                    sources.push(sc);
                }
            }
        }

        let sink_line = raw.alerting.as_ref().map(|a| line_of(src, a.span().start));
        for sink in &mut alerting.sink {
            match sink {
                SinkConfig::Jsonl { path } => {
                    *path = resolve(path);
                    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                        if !parent.is_dir() {
                            problems.push(Problem::new(
                                file,
                                sink_line,
                                format!(
                                    "[[alerting.sink]] jsonl: directory {} does not exist",
                                    parent.display()
                                ),
                            ));
                        }
                    }
                }
                SinkConfig::Webhook {
                    url, max_attempts, ..
                } => {
                    match reqwest::Url::parse(url) {
                        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                        Ok(u) => problems.push(Problem::new(
                            file,
                            sink_line,
                            format!(
                                "[[alerting.sink]] webhook: scheme {:?} is not http or https",
                                u.scheme()
                            ),
                        )),
                        Err(e) => problems.push(Problem::new(
                            file,
                            sink_line,
                            format!("[[alerting.sink]] webhook: url {url:?}: {e}"),
                        )),
                    }
                    if *max_attempts == 0 {
                        problems.push(Problem::new(
                            file,
                            sink_line,
                            "[[alerting.sink]] webhook: max_attempts must be at least 1",
                        ));
                    }
                }
                SinkConfig::Console { .. } => {}
                SinkConfig::Pcd04 { address, .. } => {
                    if address.parse::<std::net::SocketAddr>().is_err() {
                        problems.push(Problem::new(
                            file,
                            sink_line,
                            format!("[[alerting.sink]] pcd04: address {address:?} is not host:port (an IP address and a port)"),
                        ));
                    }
                }
                SinkConfig::Mqtt { host, .. } => {
                    if host.trim().is_empty() {
                        problems.push(Problem::new(
                            file,
                            sink_line,
                            "[[alerting.sink]] mqtt: host is empty",
                        ));
                    }
                }
            }
        }

        let normalize_tables = match &paths.device_profiles {
            Some(dir) => {
                let dir = resolve(dir);
                let r = NormalizeTables::load_dir(&dir);
                paths.device_profiles = Some(dir);
                r
            }
            None => NormalizeTables::builtin(),
        };
        let normalize_tables = normalize_tables.map_err(|e| problems.extend(e)).ok();

        let device_profiles = match &paths.device_profiles {
            Some(dir) if dir.join("devices").is_dir() => ProfileSet::load_dir(&dir.join("devices")),
            _ => Ok(ProfileSet::builtin()),
        };
        let device_profiles = device_profiles.map_err(|e| problems.extend(e)).ok();
        if let Some(profiles) = &device_profiles {
            for (i, line) in serial_lines {
                let Some(SourceConfig::Serial(c)) = sources.get(i) else {
                    continue;
                };
                let mut fault = |msg: String| {
                    problems.push(Problem::new(
                        file,
                        line,
                        format!("[[source]] {:?}: {msg}", c.name),
                    ))
                };
                match DriverSpec::parse(&c.driver, profiles) {
                    Err(e) => fault(e),
                    Ok(spec) => {
                        for p in spec.line_defaults().overridden_by(c).problems() {
                            fault(p);
                        }
                    }
                }
                if c.path.as_os_str().is_empty() {
                    fault("path is empty".into());
                }
                if c.reconnect_initial_ms == 0 {
                    fault("reconnect_initial_ms must be at least 1".into());
                }
                if c.reconnect_max_ms < c.reconnect_initial_ms {
                    fault(format!(
                        "reconnect_max_ms {} is below reconnect_initial_ms {}",
                        c.reconnect_max_ms, c.reconnect_initial_ms
                    ));
                }
                if let Some(parent) = c
                    .capture
                    .as_deref()
                    .and_then(Path::parent)
                    .filter(|p| !p.as_os_str().is_empty() && !p.is_dir())
                {
                    fault(format!(
                        "capture: directory {} does not exist",
                        parent.display()
                    ));
                }
                let same_port = sources
                    .iter()
                    .take(i)
                    .any(|o| matches!(o, SourceConfig::Serial(o) if o.path == c.path));
                if same_port {
                    fault(format!("another source already reads {}", c.path.display()));
                }
            }
        }

        let (scoring_tables, alert_rules) = match &paths.scoring {
            Some(dir) => {
                let dir = resolve(dir);
                let s = ScoringTables::load_dir(&dir).map_err(|errs| {
                    problems.extend(errs.into_iter().map(|e| {
                        Problem::new(
                            if e.file.contains('/') {
                                e.file.clone()
                            } else {
                                dir.join(&e.file).display().to_string()
                            },
                            (e.line > 0).then_some(e.line),
                            e.message,
                        )
                    }))
                });
                let a = AlertRules::load_dir(&dir).map_err(|e| problems.extend(e));
                paths.scoring = Some(dir);
                (s.ok(), a.ok())
            }
            None => (
                Some(ScoringTables::builtin()),
                AlertRules::builtin().map_err(|e| problems.extend(e)).ok(),
            ),
        };

        match (
            normalize_tables,
            scoring_tables,
            alert_rules,
            device_profiles,
        ) {
            (
                Some(normalize_tables),
                Some(scoring_tables),
                Some(alert_rules),
                Some(device_profiles),
            ) if problems.is_empty() => Ok(Config {
                site,
                paths,
                bus,
                http,
                log,
                storage,
                kafka,
                sources,
                alerting,
                web,
                normalize_tables,
                device_profiles,
                scoring_tables,
                alert_rules,
            }),
            _ => Err(Problems(problems)),
        }
    }

    /// The settings for demo and replay runs: built-in tables, no sources, no sinks.
    pub fn embedded() -> Result<Config, Problems> {
        Self::from_str("<built-in>", "", Path::new("."))
    }
}

#[cfg(test)]
mod tests;
