//! The MLLP listener on real loopback sockets: ACKs for real PCD-01, ADT and lab messages,
//! AE/AR with reasons and dead letters for bad ones, framing edge cases, 64 concurrent senders,
//! oversize frames, idle and reset connections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use vigil::app::{plan_sources, run_pipeline, RunOptions};
use vigil::config::Config;
use vigil::protocol::hl7::ack::{parse_ack, AckCode, ParsedAck};
use vigil::protocol::hl7::split_messages;
use vigil::protocol::mllp::{encode_frame, MllpDecoder};
use vigil::sources::mllp::client::{MllpClient, MllpClientSettings};
use vigil::telemetry::Metrics;

struct Harness {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    dead_letters: PathBuf,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(extra: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[[source]]\nkind = \"mllp\"\nname = \"hl7-in\"\nlisten = \"127.0.0.1:0\"\n{extra}\n"
    );
    let cfg = Config::from_str("test.toml", &toml, dir.path()).unwrap_or_else(|p| panic!("{p}"));
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let dead_letters = dir.path().join("dl");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = RunOptions {
        dead_letters: Some(dead_letters.clone()),
        listening: Some(tx),
        census_journal: None,
        ..RunOptions::default()
    };
    let (m, s) = (metrics.clone(), stop.clone());
    let task = tokio::spawn(async move {
        let plan = plan_sources(&cfg);
        run_pipeline(&cfg, plan, opts, m, s).await.unwrap();
    });
    let (_, addr) = rx.recv().await.unwrap();
    Harness {
        addr,
        metrics,
        stop,
        dead_letters,
        task,
        _dir: dir,
    }
}

impl Harness {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("pipeline stops on cancel")
            .unwrap();
    }

    fn client(&self) -> MllpClient {
        MllpClient::new(
            self.addr,
            MllpClientSettings {
                max_attempts: 1,
                ..MllpClientSettings::default()
            },
        )
    }
}

fn data(path: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/hl7")
        .join(path);
    let bytes = std::fs::read(p).unwrap();
    let first = split_messages(&bytes).next().unwrap().to_vec();
    first
}

fn msh10(msg: &[u8]) -> String {
    vigil::protocol::hl7::parse(msg)
        .unwrap()
        .control_id()
        .to_string()
}

const ADMIT_PHILIPS_BED: &str = "MSH|^~\\&|ADT|HOSP|VIGIL|ICU|20150122180000||ADT^A01^ADT_A01|ADT0001|P|2.5\rEVN|A01|20150122180000\rPID|||HO2009001^^^^MR||Hon^Albert\rPV1||I|HO Surgery^OR^1||||||||||||||||V-HO1\rOBX|1|NM|29463-7^Body weight^LN||80|kg|||||F\r";

fn codes(acks: &[ParsedAck]) -> Vec<AckCode> {
    acks.iter().map(|a| a.code).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_messages_get_the_right_acknowledgements_and_reach_the_scorer() {
    let h = start("").await;
    let mut c = h.client();
    // ADT without MSH-15/16: original mode, AA.
    let acks = c.send(ADMIT_PHILIPS_BED.as_bytes()).await.unwrap();
    assert_eq!(codes(&acks), [AckCode::AA]);
    assert_eq!(acks[0].control_id, "ADT0001");
    // IHE PCD-01 from a Philips gateway, MSH-15 AL / MSH-16 NE: enhanced mode, commit accept only.
    let pcd =
        data("device-ihe-pcd-tf-vol2-examples/00_pcd01_philips_PAT_DEVICE_PHILIPS_C_oru_r01.hl7");
    let acks = c.send(&pcd).await.unwrap();
    assert_eq!(codes(&acks), [AckCode::CA]);
    assert_eq!(acks[0].control_id, msh10(&pcd));
    // PCD-10 infusion event (ORU^R42) and a lab ORU^R01 with LOINC.
    let r42 = data("device-ihe-pcd-tf-vol2-examples/13_pcd10_ipec_delivery_start_oru_r42.hl7");
    assert_eq!(codes(&c.send(&r42).await.unwrap()), [AckCode::CA]);
    let lab = data("parser-tests-node-hl7-complete/valid__nist__ORU_R01_2.5.1_SampleTestCase1.hl7");
    let acks = c.send(&lab).await.unwrap();
    assert_eq!(codes(&acks), [AckCode::AA]);
    assert_eq!(acks[0].control_id, "NIST-100929110701660");

    // The ACKs mean the records are on the bus; wait for the scorer to take them.
    let m = wait_for(&h.metrics, "vigil_scores_computed_total{kind=\"news2\"}").await;
    assert!(
        m.contains("vigil_observations_total{code=\"150021\",param=\"sbp_nibp\",system=\"MDC\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(
            "vigil_observations_total{code=\"157924\",param=\"dose.dopamine\",system=\"MDC\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains("vigil_census_events_total{kind=\"admit\"} 1"),
        "{m}"
    );
    // The Philips readings found the admitted patient through the bed and were scored.
    assert!(
        m.contains("vigil_scores_computed_total{kind=\"news2\"}"),
        "{m}"
    );
    assert!(
        m.contains("vigil_mllp_acks_total{code=\"CA\",source=\"hl7-in\"} 2"),
        "{m}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_ae_or_ar_with_the_reason_and_are_dead_lettered() {
    let h = start("").await;
    let mut c = h.client();
    // Not HL7 at all.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut framed = Vec::new();
    encode_frame(b"hello, is this the lab?", &mut framed);
    s.write_all(&framed).await.unwrap();
    let ack = read_acks(&mut s, 1).await.remove(0);
    assert_eq!(ack.code, AckCode::AR);
    assert!(
        ack.error_text.as_deref().unwrap_or("").contains("MSH"),
        "{ack:?}"
    );
    // A query the gateway does not serve: AR with HL7 error 200 and the reason.
    let qry =
        b"MSH|^~\\&|HIS|H|VIGIL|ICU|20260101||QRY^A19^QRY_A19|Q77|P|2.5\rQRD|20260101|R|I|Q77\r";
    let acks = c.send(qry).await.unwrap();
    assert_eq!(codes(&acks), [AckCode::AR]);
    assert_eq!(acks[0].control_id, "Q77");
    assert!(
        acks[0]
            .error_text
            .as_deref()
            .unwrap_or("")
            .contains("not accepted"),
        "{:?}",
        acks[0]
    );
    // An ADT without PID: AR, "missing".
    let no_pid = b"MSH|^~\\&|ADT|H|VIGIL|ICU|20260101||ADT^A01^ADT_A01|A9|P|2.5\rEVN|A01|20260101\rPV1||I|ICU^^1\r";
    let acks = c.send(no_pid).await.unwrap();
    assert_eq!(codes(&acks), [AckCode::AR]);
    // The listener still serves.
    assert_eq!(
        codes(&c.send(ADMIT_PHILIPS_BED.as_bytes()).await.unwrap()),
        [AckCode::AA]
    );

    let kept = vigil::sources::deadletter::list(&h.dead_letters).unwrap();
    let kinds: Vec<&str> = kept.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(kinds, ["parse", "unsupported", "missing"]);
    assert_eq!(
        kept[1].raw(),
        qry.to_vec(),
        "the raw message is kept byte for byte"
    );
    assert!(kept.iter().all(|d| d
        .peer
        .as_deref()
        .is_some_and(|p| p.starts_with("127.0.0.1:"))));
    let m = h.metrics.render();
    assert!(
        m.contains("vigil_messages_rejected_total{reason=\"unsupported\",source=\"hl7-in\"} 1"),
        "{m}"
    );
    h.stop().await;
}

/// Polls the metrics until `needle` shows up (the stages downstream of the bus are async).
async fn wait_for(metrics: &Metrics, needle: &str) -> String {
    for _ in 0..100 {
        let m = metrics.render();
        if m.contains(needle) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{needle} never appeared in:\n{}", metrics.render());
}

async fn read_acks(s: &mut TcpStream, n: usize) -> Vec<ParsedAck> {
    let mut dec = MllpDecoder::new(1 << 20);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < n {
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(r > 0, "connection closed before {n} acks");
        dec.feed(&buf[..r]);
        while let Some(f) = dec.next_frame().unwrap() {
            out.push(parse_ack(f.payload()).unwrap());
        }
    }
    out
}

fn adt(id: &str, bed: &str) -> Vec<u8> {
    format!("MSH|^~\\&|ADT|H|VIGIL|ICU|20260101||ADT^A01^ADT_A01|{id}|P|2.5\rEVN|A01|20260101\rPID|||M{id}^^^H^MR\rPV1||I|ICU^^{bed}||||||||||||||||V{id}\r").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_across_reads_and_many_per_read_with_garbage_between() {
    let h = start("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    // Three frames and stray bytes in one write.
    let mut bytes = Vec::new();
    encode_frame(&adt("F1", "1"), &mut bytes);
    bytes.extend_from_slice(b"\r\n\r\nnoise");
    encode_frame(&adt("F2", "2"), &mut bytes);
    encode_frame(&adt("F3", "3"), &mut bytes);
    s.write_all(&bytes).await.unwrap();
    let acks = read_acks(&mut s, 3).await;
    let ids: Vec<&str> = acks.iter().map(|a| a.control_id.as_str()).collect();
    assert_eq!(ids, ["F1", "F2", "F3"], "answered in order");
    assert!(acks.iter().all(|a| a.code == AckCode::AA));
    // One frame, one byte per write.
    let mut one = Vec::new();
    encode_frame(&adt("F4", "4"), &mut one);
    for b in one {
        s.write_all(&[b]).await.unwrap();
        s.flush().await.unwrap();
    }
    assert_eq!(read_acks(&mut s, 1).await[0].control_id, "F4");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_senders_each_get_every_answer() {
    let h = start("").await;
    let mut tasks = Vec::new();
    for sender in 0..64 {
        let addr = h.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = MllpClient::new(addr, MllpClientSettings::default());
            let mut ok = 0;
            for i in 0..10 {
                let acks = c
                    .send(&adt(&format!("S{sender}M{i}"), &format!("B{sender}")))
                    .await
                    .unwrap();
                if acks.len() == 1
                    && acks[0].code == AckCode::AA
                    && acks[0].control_id == format!("S{sender}M{i}")
                {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 640);
    let m = h.metrics.render();
    assert!(
        m.contains("vigil_census_events_total{kind=\"admit\"} 640"),
        "{m}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_frame_is_refused_and_the_connection_closed() {
    let h = start("max_frame_bytes = 4096").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut big = vec![0x0b];
    big.extend(std::iter::repeat_n(b'A', 200_000));
    // The server closes once it has seen more than the limit; later writes may fail.
    let _ = s.write_all(&big).await;
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break true,
                Ok(_) => continue,
            }
        }
    })
    .await
    .unwrap();
    assert!(closed);
    let m = h.metrics.render();
    assert!(
        m.contains("vigil_mllp_refused_total{reason=\"too_large\",source=\"hl7-in\"} 1"),
        "{m}"
    );
    let kept = vigil::sources::deadletter::list(&h.dead_letters).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].kind, "too_large");
    // Others are still served.
    assert_eq!(
        codes(&h.client().send(&adt("OK1", "1")).await.unwrap()),
        [AckCode::AA]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_reset_connections_do_not_hurt_the_listener() {
    let h = start("idle_timeout_secs = 1").await;
    // Idle: closed by the server after the timeout.
    let mut idle = TcpStream::connect(h.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "idle connection closed");
    // Reset mid-frame: half a message, then an abortive close.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut half = Vec::new();
    encode_frame(&adt("HALF", "9"), &mut half);
    #[allow(deprecated)]
    s.set_linger(Some(Duration::ZERO)).unwrap();
    s.write_all(&half[..half.len() / 2]).await.unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        codes(&h.client().send(&adt("AFTER", "9")).await.unwrap()),
        [AckCode::AA]
    );
    let m = h.metrics.render();
    assert!(
        m.contains("vigil_mllp_refused_total{reason=\"idle\",source=\"hl7-in\"} 1"),
        "{m}"
    );
    assert!(
        !m.contains("kind=\"admit\"} 2"),
        "the torn message was not taken: {m}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_torn_by_a_new_start_block_is_kept_and_the_next_one_served() {
    let h = start("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut bytes = b"\x0bMSH|^~\\&|TORN|H".to_vec();
    encode_frame(&adt("WHOLE", "5"), &mut bytes);
    s.write_all(&bytes).await.unwrap();
    let acks = read_acks(&mut s, 1).await;
    assert_eq!(
        (acks[0].code, acks[0].control_id.as_str()),
        (AckCode::AA, "WHOLE")
    );
    let kept = vigil::sources::deadletter::list(&h.dead_letters).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].kind, "unterminated");
    assert_eq!(
        kept[0].raw(),
        b"MSH|^~\\&|TORN|H".to_vec(),
        "the torn bytes are kept"
    );
    h.stop().await;
}
