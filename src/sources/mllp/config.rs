//! `[[source]] kind = "mllp"`: an HL7 v2 listener over MLLP/TCP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Serve MLLP over TLS (absent: plain TCP).
    #[serde(default)]
    pub tls: Option<MllpTlsConfig>,
}

/// TLS for an MLLP listener: PEM files, relative to the config file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MllpTlsConfig {
    /// The server certificate chain.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl MllpTlsConfig {
    /// Paths made absolute against `base`.
    pub fn resolve(&mut self, base: &Path) {
        let r = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        r(&mut self.cert);
        r(&mut self.key);
        if let Some(ca) = &mut self.client_ca {
            r(ca);
        }
    }

    /// Loads the files into a TLS acceptor; every problem is described with its file.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, String> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("certificate {}: {e}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "certificate {}: no certificate in the file",
                self.cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("private key {}: {e}", self.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                let cas = CertificateDer::pem_file_iter(ca)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
                for c in cas {
                    roots
                        .add(c)
                        .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(certs, key).map_err(|e| {
            format!(
                "certificate {} with key {}: {e}",
                self.cert.display(),
                self.key.display()
            )
        })?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
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
            tls: None,
        }
    }
}
