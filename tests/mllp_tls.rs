//! MLLP over TLS on loopback, with certificates made for the test: a TLS client gets its ACK, a
//! plain-TCP client is refused, and a bad certificate path is a config problem.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use vigil::app::{plan_sources, run_pipeline, RunOptions};
use vigil::config::Config;
use vigil::protocol::hl7::ack::{parse_ack, AckCode};
use vigil::protocol::mllp::{encode_frame, MllpDecoder};
use vigil::telemetry::Metrics;

const ADT: &[u8] = b"MSH|^~\\&|ADT|H|VIGIL|ICU|20260101||ADT^A01^ADT_A01|TLS1|P|2.5\rEVN|A01|20260101\rPID|||M1^^^H^MR\rPV1||I|ICU^^1||||||||||||||||V1\r";

struct Pki {
    ca_pem: String,
    dir: tempfile::TempDir,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_are_served_and_plain_tcp_is_refused() {
    let pki = pki();
    let toml = "[[source]]\nkind = \"mllp\"\nname = \"tls-in\"\nlisten = \"127.0.0.1:0\"\n[source.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n";
    let cfg = Config::from_str("tls.toml", toml, pki.dir.path()).unwrap_or_else(|p| panic!("{p}"));
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = RunOptions {
        listening: Some(tx),
        census_journal: None,
        ..RunOptions::default()
    };
    let (m, s) = (metrics.clone(), stop.clone());
    let task = tokio::spawn(async move {
        run_pipeline(&cfg, plan_sources(&cfg), opts, m, s)
            .await
            .unwrap();
    });
    let (_, addr) = rx.recv().await.unwrap();

    // A TLS client that trusts the test CA.
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut framed = Vec::new();
    encode_frame(ADT, &mut framed);
    tls.write_all(&framed).await.unwrap();
    tls.flush().await.unwrap();
    let mut dec = MllpDecoder::new(1 << 20);
    let mut buf = [0u8; 4096];
    let ack = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        dec.feed(&buf[..n]);
        if let Some(f) = dec.next_frame().unwrap() {
            break parse_ack(f.payload()).unwrap();
        }
    };
    assert_eq!((ack.code, ack.control_id.as_str()), (AckCode::AA, "TLS1"));

    // Plain MLLP to the TLS port: the handshake fails, nothing is accepted.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(&framed).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut got)).await;
    assert!(dec_ack(&got).is_none(), "no ACK over plain TCP");
    let m = metrics.render();
    assert!(
        m.contains("vigil_mllp_refused_total{reason=\"tls\",source=\"tls-in\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("vigil_census_events_total{kind=\"admit\"} 1"),
        "{m}"
    );
    stop.cancel();
    task.await.unwrap();
}

fn dec_ack(bytes: &[u8]) -> Option<AckCode> {
    let mut d = MllpDecoder::new(1 << 20);
    d.feed(bytes);
    d.next_frame()
        .ok()
        .flatten()
        .and_then(|f| parse_ack(f.payload()).ok())
        .map(|a| a.code)
}

#[test]
fn a_missing_certificate_is_a_config_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[[source]]\nkind = \"mllp\"\nname = \"tls-in\"\nlisten = \"127.0.0.1:0\"\n[source.tls]\ncert = \"nope.pem\"\nkey = \"nope.key\"\n";
    let errs = Config::from_str("tls.toml", toml, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        errs.starts_with("tls.toml:1: [[source]] \"tls-in\" tls: certificate")
            && errs.contains("nope.pem"),
        "{errs}"
    );
}
