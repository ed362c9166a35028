//! Conformance over every HL7 message in `tests/data/hl7/` (real messages from public sources,
//! see ATTRIBUTION.md): each is sent over real MLLP to the listener and normalized, and the
//! answer and what it became are compared with a golden file. Device messages must give their
//! observations, ADT must change the census, lab results must land in canonical units, and every
//! malformed or unsupported message must get AE/AR with a reason — while the listener keeps
//! serving.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use vigil::app::{plan_sources, run_pipeline, RunOptions};
use vigil::config::Config;
use vigil::model::{IngestRecord, Timestamp};
use vigil::normalize::{NormalizeSettings, NormalizeTables, Normalizer};
use vigil::protocol::hl7::ack::{parse_ack, ParsedAck};
use vigil::protocol::hl7::split_messages;
use vigil::protocol::mllp::{encode_frame, MllpDecoder};
use vigil::sources::mllp::client::{MllpClient, MllpClientSettings};
use vigil::telemetry::Metrics;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hl7");
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "hl7") {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let name = f.strip_prefix(&root).unwrap().display().to_string();
        for (i, m) in split_messages(&bytes).enumerate() {
            out.push((format!("{name}#{i}"), m.to_vec()));
        }
    }
    out
}

/// Whether the pipeline rejects the message (it then must be dead-lettered, answered or not).
fn summary_rejected(n: &mut Normalizer, msg: &[u8]) -> bool {
    let is_ack = vigil::protocol::hl7::parse(msg).is_ok_and(|m| m.message_type().0 == "ACK");
    !is_ack && n.hl7("check", msg, Timestamp(0)).is_err()
}

/// What the normalizer made of a message, in one line.
fn summary(n: &mut Normalizer, msg: &[u8]) -> String {
    let t = Timestamp::parse_rfc3339("2026-01-05T12:00:00Z").unwrap();
    match n.hl7("conformance", msg, t) {
        Err(e) => format!("rejected[{}] {}", e.kind(), e),
        Ok(out) => {
            let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut census = Vec::new();
            let mut other = 0;
            for r in &out.records {
                match r {
                    IngestRecord::Census(c) => census.push(format!(
                        "{:?} {}@{}/{} w={:?}",
                        c.kind,
                        c.patient,
                        c.unit.as_deref().unwrap_or("-"),
                        c.bed.as_deref().unwrap_or("-"),
                        c.weight_kg
                    )),
                    IngestRecord::Observation(o) => match o.param {
                        Some(p) => {
                            let mut v = format!(
                                "{}{}",
                                o.value.as_f64().map(|v| format!("{v}")).unwrap_or_default(),
                                o.ucum
                            );
                            if !o.quality.is_empty() {
                                let _ = write!(v, "{:?}", o.quality);
                            }
                            params.entry(p.name()).or_default().push(v);
                        }
                        None => other += 1,
                    },
                }
            }
            let mut s = format!("{} records={}", out.message_type, out.records.len());
            for c in census {
                let _ = write!(s, " census:{c}");
            }
            for (p, v) in params {
                let _ = write!(s, " {p}={}", v.join(","));
            }
            let _ = write!(s, " uncoded={other}");
            s
        }
    }
}

fn render(acks: &[ParsedAck]) -> String {
    acks.iter()
        .map(|a| {
            let mut s = a.code.as_str().to_string();
            if let Some(t) = &a.error_text {
                let _ = write!(s, "({t})");
            }
            s
        })
        .collect::<Vec<_>>()
        .join("+")
}

/// Writes one frame on a fresh connection and collects whatever answers come within 500 ms.
async fn raw_exchange(addr: std::net::SocketAddr, msg: &[u8]) -> Vec<ParsedAck> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut framed = Vec::new();
    encode_frame(msg, &mut framed);
    s.write_all(&framed).await.unwrap();
    let mut dec = MllpDecoder::new(1 << 20);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(std::time::Duration::from_millis(500), s.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        dec.feed(&buf[..n]);
        while let Ok(Some(f)) = dec.next_frame() {
            if let Ok(a) = parse_ack(f.payload()) {
                out.push(a);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_message_is_answered_and_normalized_as_the_golden_file_says() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::from_str(
        "c.toml",
        "[[source]]\nkind = \"mllp\"\nname = \"conformance\"\nlisten = \"127.0.0.1:0\"\n",
        dir.path(),
    )
    .unwrap();
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = RunOptions {
        listening: Some(tx),
        census_journal: None,
        dead_letters: Some(dir.path().join("dl")),
        ..RunOptions::default()
    };
    let (m, s) = (metrics.clone(), stop.clone());
    let task = tokio::spawn(async move {
        run_pipeline(&cfg, plan_sources(&cfg), opts, m, s)
            .await
            .unwrap();
    });
    let (_, addr) = rx.recv().await.unwrap();
    let mut client = MllpClient::new(
        addr,
        MllpClientSettings {
            max_attempts: 1,
            ack_timeout: std::time::Duration::from_secs(5),
            ..Default::default()
        },
    );
    let mut normalizer = Normalizer::new(
        NormalizeTables::builtin().unwrap(),
        NormalizeSettings::default(),
    );

    let mut got = String::new();
    let messages = corpus();
    assert!(messages.len() > 80, "{}", messages.len());
    let mut rejected = 0;
    for (name, msg) in &messages {
        let parsed = vigil::protocol::hl7::parse(msg);
        let is_ack = parsed.as_ref().is_ok_and(|m| m.message_type().0 == "ACK");
        let answer = if parsed.is_err() || is_ack {
            // The client refuses to send what does not parse; write the bytes as they are.
            let acks = raw_exchange(addr, msg).await;
            if acks.is_empty() {
                "none".to_string()
            } else {
                render(&acks)
            }
        } else {
            match client.send(msg).await {
                Ok(acks) if acks.is_empty() => "none(MSH-15/16 NE)".to_string(),
                Ok(acks) => render(&acks),
                Err(e) => format!("no-ack({e})"),
            }
        };
        if summary_rejected(&mut normalizer, msg) {
            rejected += 1;
        }
        let line = format!("{name}: {answer} | {}\n", summary(&mut normalizer, msg));
        got.push_str(&line);
    }
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/conformance.txt");
    if std::env::var_os("VIGIL_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap();
    for (g, w) in got.lines().zip(want.lines()) {
        assert_eq!(
            g, w,
            "conformance changed; review, then VIGIL_UPDATE_GOLDEN=1"
        );
    }
    assert_eq!(got.lines().count(), want.lines().count());
    // Whatever came in, the listener still answers.
    assert!(!got.contains("no-ack"), "a message went unanswered");
    let kept = vigil::sources::deadletter::list(&dir.path().join("dl")).unwrap();
    assert_eq!(
        kept.len(),
        rejected,
        "every rejected message is dead-lettered"
    );
    stop.cancel();
    task.await.unwrap();
}
