//! `[[source]] kind = "mqtt"`: a subscriber to an MQTT 3.1.1 broker.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::topic::{check_filter, TopicMap};
use crate::protocol::mqtt_payload::PayloadFormat;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    pub name: String,
    /// The broker's host name or address (with TLS, the name its certificate carries).
    pub host: String,
    /// 1883 for plain MQTT, 8883 for MQTT over TLS by convention.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The session's client id; default `vigil-<name>`. Keep it stable: the broker keeps the
    /// persistent session (subscriptions, queued messages) under it.
    #[serde(default)]
    pub client_id: Option<String>,
    /// `false` (the default): a persistent session, so QoS 1 messages published while vigil is
    /// disconnected are queued by the broker and delivered on reconnect.
    #[serde(default)]
    pub clean_session: bool,
    /// Keep-alive interval; 0 turns keep-alives off.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    #[serde(default)]
    pub username: Option<String>,
    /// The name of the environment variable holding the password (never the password itself).
    #[serde(default)]
    pub password_env: Option<String>,
    /// MQTT over TLS (absent: plain TCP).
    #[serde(default)]
    pub tls: Option<MqttTlsConfig>,
    /// A larger payload is dead-lettered and acknowledged. Packets larger than this plus 64 KiB
    /// (topic and header) cannot be read at all and break the connection: keep the broker's own
    /// `message_size_limit` below this.
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: usize,
    /// First wait before reconnecting; doubled per failed attempt up to `reconnect_max_ms`.
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_ms: u64,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// What to subscribe to (always QoS 1) and how to read it.
    pub subscriptions: Vec<MqttSubscription>,
}

/// One subscription: a filter, the payload format on it, and where the topic names the bed.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttSubscription {
    /// An MQTT topic filter (`icu/+/+/+/vitals`).
    pub filter: String,
    #[serde(default)]
    pub payload: PayloadFormat,
    /// Which topic levels name the unit, bed, device and patient (`icu/{unit}/{bed}/{device}/#`;
    /// see `docs/mqtt.md`). Absent: only the payload names them.
    #[serde(default)]
    pub topic_map: Option<String>,
}

/// TLS to the broker: PEM files, relative to the config file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsConfig {
    /// The CA certificate(s) the broker's certificate must chain to.
    pub ca: PathBuf,
    /// A client certificate chain, for brokers that require one (with `key`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: Option<PathBuf>,
}

fn default_port() -> u16 {
    1883
}
fn default_keep_alive() -> u64 {
    30
}
fn default_max_payload() -> usize {
    256 * 1024
}
fn default_reconnect_initial() -> u64 {
    500
}
fn default_reconnect_max() -> u64 {
    30_000
}

impl MqttTlsConfig {
    /// Paths made absolute against `base`.
    pub fn resolve(&mut self, base: &Path) {
        let r = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        r(&mut self.ca);
        if let Some(c) = &mut self.cert {
            r(c);
        }
        if let Some(k) = &mut self.key {
            r(k);
        }
    }

    /// Loads the files into a rustls client configuration (ring provider); every problem is
    /// described with its file.
    pub fn client_config(&self) -> Result<tokio_rustls::rustls::ClientConfig, String> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.ca)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("CA {}: {e}", self.ca.display()))?;
        if cas.is_empty() {
            return Err(format!(
                "CA {}: no certificate in the file",
                self.ca.display()
            ));
        }
        for c in cas {
            roots
                .add(c)
                .map_err(|e| format!("CA {}: {e}", self.ca.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        match (&self.cert, &self.key) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("client certificate {}: {e}", cert.display()))?;
                if certs.is_empty() {
                    return Err(format!(
                        "client certificate {}: no certificate in the file",
                        cert.display()
                    ));
                }
                let k = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("client key {}: {e}", key.display()))?;
                builder.with_client_auth_cert(certs, k).map_err(|e| {
                    format!(
                        "client certificate {} with key {}: {e}",
                        cert.display(),
                        key.display()
                    )
                })
            }
            (Some(_), None) => Err("a client cert needs its key".into()),
            (None, Some(_)) => Err("a client key needs its cert".into()),
        }
    }
}

impl MqttSourceConfig {
    /// A plain-TCP source with the defaults and the given subscriptions.
    pub fn new(name: &str, host: &str, port: u16, subscriptions: Vec<MqttSubscription>) -> Self {
        MqttSourceConfig {
            name: name.to_string(),
            host: host.to_string(),
            port,
            client_id: None,
            clean_session: false,
            keep_alive_secs: default_keep_alive(),
            username: None,
            password_env: None,
            tls: None,
            max_payload_bytes: default_max_payload(),
            reconnect_initial_ms: default_reconnect_initial(),
            reconnect_max_ms: default_reconnect_max(),
            subscriptions,
        }
    }

    /// The client id in use: the configured one or `vigil-<name>`.
    pub fn client_id(&self) -> String {
        match &self.client_id {
            Some(id) => id.clone(),
            None => format!("vigil-{}", self.name),
        }
    }

    /// Resolves relative TLS paths against `base` and returns every problem, each a sentence
    /// naming the key (the config loader adds file, line and source name).
    pub fn check(&mut self, base: &Path) -> Vec<String> {
        let mut p = Vec::new();
        if self.host.trim().is_empty() {
            p.push("host is empty".to_string());
        }
        if self.port == 0 {
            p.push("port 0 is not a broker port".to_string());
        }
        let id = self.client_id();
        if id.is_empty() {
            p.push("client_id is empty (a persistent session needs one)".to_string());
        } else if id.len() > 65_535 {
            p.push(format!(
                "client_id is {} bytes, over MQTT's 65535",
                id.len()
            ));
        }
        if self.keep_alive_secs > u64::from(u16::MAX) {
            p.push(format!(
                "keep_alive_secs {} is over MQTT's 65535",
                self.keep_alive_secs
            ));
        }
        match (&self.username, &self.password_env) {
            (None, Some(_)) => p.push("password_env without a username".to_string()),
            (_, Some(var)) if std::env::var_os(var).is_none() => p.push(format!(
                "password_env: the environment variable {var} is not set"
            )),
            _ => {}
        }
        if self.max_payload_bytes < 1024 {
            p.push(format!(
                "max_payload_bytes {} is too small (at least 1024)",
                self.max_payload_bytes
            ));
        } else if self.max_payload_bytes > 64 << 20 {
            p.push(format!(
                "max_payload_bytes {} is over 64 MiB",
                self.max_payload_bytes
            ));
        }
        if self.reconnect_initial_ms == 0 {
            p.push("reconnect_initial_ms must be at least 1".to_string());
        }
        if self.reconnect_max_ms < self.reconnect_initial_ms {
            p.push(format!(
                "reconnect_max_ms {} is below reconnect_initial_ms {}",
                self.reconnect_max_ms, self.reconnect_initial_ms
            ));
        }
        if self.subscriptions.is_empty() {
            p.push("subscriptions is empty: nothing to receive".to_string());
        }
        for (i, s) in self.subscriptions.iter().enumerate() {
            let at = format!("subscriptions[{i}]");
            if let Err(e) = check_filter(&s.filter) {
                p.push(format!("{at}: filter {:?}: {e}", s.filter));
            } else if let Some(map) = &s.topic_map {
                match TopicMap::parse(map) {
                    Err(e) => p.push(format!("{at}: topic_map {map:?}: {e}")),
                    Ok(m) => {
                        if let Err(e) = m.check_against(&s.filter) {
                            p.push(format!(
                                "{at}: topic_map {map:?} does not fit filter {:?}: {e}",
                                s.filter
                            ));
                        }
                    }
                }
            }
            if self
                .subscriptions
                .iter()
                .take(i)
                .any(|o| o.filter == s.filter)
            {
                p.push(format!("{at}: filter {:?} is listed twice", s.filter));
            }
        }
        if let Some(tls) = &mut self.tls {
            tls.resolve(base);
            for f in [Some(&tls.ca), tls.cert.as_ref(), tls.key.as_ref()]
                .into_iter()
                .flatten()
            {
                if !f.is_file() {
                    p.push(format!("tls: {} does not exist", f.display()));
                }
            }
            if p.iter().all(|m| !m.starts_with("tls:")) {
                if let Err(e) = tls.client_config() {
                    p.push(format!("tls: {e}"));
                }
            }
        }
        p
    }
}
