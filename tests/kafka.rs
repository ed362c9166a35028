//! The Kafka transport against a real Kafka-protocol broker (tansu, started by each test on a
//! free loopback port with memory storage; `scripts/test.sh` installs it): gateway, scorer and
//! alerter as three `vigil` processes give the same alerts as the in-process replay of the same
//! recording.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use vigil::app::{plan_sources, run_pipeline, RunOptions};
use vigil::config::Config;

mod common;

use common::free_port;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tansu_binary() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([home.join(".cargo/bin")])
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "tansu is not installed: these tests run against a real Kafka-protocol broker; \
                 scripts/test.sh installs it (cargo install tansu --locked --features dynostore,postgres)"
            )
        })
}

/// A tansu broker with memory storage; killed on drop.
struct Tansu {
    child: Child,
    port: u16,
}

impl Tansu {
    fn start() -> Tansu {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Tansu { child, port }
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `vigil` role process, stopped with SIGTERM (and reaped) on drop.
struct Role {
    name: &'static str,
    child: Child,
}

impl Role {
    fn start(name: &'static str, config: &Path, log: &Path) -> Role {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg(name)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info,vigil::bus::kafka=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Role { name, child }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{} ignored SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Role {
    /// Waits for a role that ends by itself (a gateway replaying a recording).
    fn wait_for_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(Instant::now() < deadline, "{} did not finish", self.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The kill tests' recording: the seeded demo generator with 16 beds over 26 h (114,776
/// records, > 50,000 observations, 25,529 messages), written into `dir`.
fn sixteen_bed_recording(dir: &Path) -> PathBuf {
    use vigil::sources::replay::demo;
    let params = demo::DemoParams {
        beds: 16,
        ..Default::default()
    };
    let (header, entries) = demo::generate_demo(&params, None);
    let path = dir.join("icu16.jsonl.gz");
    demo::write_recording(&path, &header, &entries).unwrap();
    path
}

/// Waits until `alerts` holds `want` lines (hang protection, not a speed limit), then a
/// little longer, so that an alert written twice would show.
fn wait_for_alerts(alerts: &Path, want: usize, logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while sorted_lines(alerts).len() < want {
        assert!(
            Instant::now() < deadline,
            "{} of {want} alerts; {}",
            sorted_lines(alerts).len(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
}

/// The alerts of the in-process replay of `recording`: the golden run.
fn golden_alerts(recording: &Path, dir: &Path) -> Vec<String> {
    let out = dir.join("golden.jsonl");
    let toml = format!(
        "[site]\nname = \"Demo ICU\"\nhypercapnic_beds = [\"BED02\"]\n\n[[source]]\nkind = \"replay\"\nname = \"demo\"\npath = {:?}\nspeed = \"max\"\n",
        recording
    );
    let cfg = Config::from_str("golden.toml", &toml, dir).unwrap_or_else(|p| panic!("{p}"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = RunOptions {
            alerts_out: Some(out.clone()),
            ..RunOptions::default()
        };
        run_pipeline(
            &cfg,
            plan_sources(&cfg),
            opts,
            Arc::new(vigil::telemetry::Metrics::new()),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    });
    sorted_lines(&out)
}

fn sorted_lines(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// A role config on `brokers` with topics and groups of its own (`tag`).
fn role_config(dir: &Path, role: &str, brokers: &str, tag: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{role}.toml"));
    let text = format!(
        "[site]\nname = \"Demo ICU\"\nhypercapnic_beds = [\"BED02\"]\n\n[storage]\ndir = {:?}\n\n\
         [kafka]\nbrokers = \"{brokers}\"\npartitions = 4\n\
         observations_topic = \"obs-{tag}\"\nscores_topic = \"scores-{tag}\"\nalerts_topic = \"alerts-{tag}\"\n\
         scorer_group = \"scorer-{tag}\"\nalerter_group = \"alerter-{tag}\"\n\n{extra}",
        dir.join(format!("data-{role}"))
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn three_processes_on_kafka_alert_as_the_in_process_replay_does() {
    let dir = tempfile::tempdir().unwrap();
    let recording = repo().join("replay-data/demo-icu.jsonl.gz");
    let golden = golden_alerts(&recording, dir.path());
    assert!(
        golden.len() > 20,
        "the demo raises alerts: {}",
        golden.len()
    );

    let broker = Tansu::start();
    let brokers = broker.brokers();
    let alerts = dir.path().join("alerts.jsonl");
    let gw = role_config(
        dir.path(),
        "gateway",
        &brokers,
        "demo",
        &format!(
            "[[source]]\nkind = \"replay\"\nname = \"demo\"\npath = {:?}\nspeed = \"max\"\n",
            recording
        ),
    );
    let sc = role_config(dir.path(), "scorer", &brokers, "demo", "");
    let al = role_config(
        dir.path(),
        "alerter",
        &brokers,
        "demo",
        &format!("[[alerting.sink]]\nkind = \"jsonl\"\npath = {alerts:?}\n"),
    );
    let mut scorer = Role::start("scorer", &sc, &dir.path().join("scorer.log"));
    let mut alerter = Role::start("alerter", &al, &dir.path().join("alerter.log"));
    let mut gateway = Role::start("gateway", &gw, &dir.path().join("gateway.log"));

    // The gateway ends with its recording, every record acknowledged by the broker.
    let status = gateway.wait_for_exit(Duration::from_secs(300));
    let log = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap_or_default();
    assert!(status.success(), "gateway failed:\n{}", log("gateway.log"));

    // The scorer and alerter catch up; nothing more arrives: no alert twice.
    wait_for_alerts(&alerts, golden.len(), || {
        format!(
            "scorer:\n{}\nalerter:\n{}",
            log("scorer.log"),
            log("alerter.log")
        )
    });
    assert!(
        scorer.terminate().success(),
        "scorer:\n{}",
        log("scorer.log")
    );
    assert!(
        alerter.terminate().success(),
        "alerter:\n{}",
        log("alerter.log")
    );
    let got = sorted_lines(&alerts);
    assert_eq!(got.len(), golden.len(), "alert count");
    assert_eq!(
        got, golden,
        "the alerts differ from the in-process replay's"
    );
    drop(broker);
}

/// The broker goes away mid-stream and comes back (librdkafka's mock cluster, which can take a
/// broker down and up in place; tansu's memory storage would lose its data on a restart): the
/// producer holds every record until the broker returns, nothing is lost, no alert is raised
/// twice, and the alerts equal the in-process replay's.
#[test]
fn a_broker_outage_mid_stream_loses_nothing() {
    use rdkafka::mocking::MockCluster;
    let dir = tempfile::tempdir().unwrap();
    let recording = sixteen_bed_recording(dir.path());
    let golden = golden_alerts(&recording, dir.path());

    let cluster = MockCluster::new(1).unwrap();
    for t in ["obs-mock", "scores-mock", "alerts-mock"] {
        cluster.create_topic(t, 8, 1).unwrap();
    }
    let alerts = dir.path().join("alerts.jsonl");
    let toml = format!(
        "[site]\nname = \"Demo ICU\"\nhypercapnic_beds = [\"BED02\"]\n\n[bus]\nkind = \"kafka\"\n\n\
         [kafka]\nbrokers = \"{}\"\ncreate_topics = false\npartitions = 8\n\
         observations_topic = \"obs-mock\"\nscores_topic = \"scores-mock\"\nalerts_topic = \"alerts-mock\"\n\
         scorer_group = \"scorer-mock\"\nalerter_group = \"alerter-mock\"\n\n\
         [[source]]\nkind = \"replay\"\nname = \"demo\"\npath = {:?}\nspeed = \"max\"\n\n\
         [[alerting.sink]]\nkind = \"jsonl\"\npath = {:?}\n",
        cluster.bootstrap_servers(),
        recording,
        alerts
    );
    let cfg = Config::from_str("mock.toml", &toml, dir.path()).unwrap_or_else(|p| panic!("{p}"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = CancellationToken::new();
    let metrics = Arc::new(vigil::telemetry::Metrics::new());
    let (s, m) = (stop.clone(), metrics.clone());
    let pipeline = rt.spawn(async move {
        run_pipeline(&cfg, plan_sources(&cfg), RunOptions::default(), m, s).await
    });

    // Let the stream get going, then take the broker away for two seconds.
    let produced = |m: &vigil::telemetry::Metrics| -> u64 {
        m.render()
            .lines()
            .filter(|l| l.starts_with("vigil_stage_latency_seconds_count{stage=\"kafka_produce\"}"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while produced(&metrics) < 2_000 {
        assert!(Instant::now() < deadline, "nothing produced");
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.broker_down(1).unwrap();
    let during = produced(&metrics);
    std::thread::sleep(Duration::from_secs(2));
    let stalled = produced(&metrics);
    cluster.broker_up(1).unwrap();
    assert!(
        stalled - during < 50,
        "publishes kept completing with the broker down ({during} → {stalled})"
    );

    // Should the hang guard fire, where delivery stood: the pipeline's counters and gauges.
    wait_for_alerts(&alerts, golden.len(), || {
        let lines: Vec<_> = metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("vigil_") && !l.contains("_bucket"))
            .map(str::to_owned)
            .collect();
        format!("pipeline metrics:\n{}", lines.join("\n"))
    });
    stop.cancel();
    let report = rt.block_on(pipeline).unwrap().unwrap();
    let entries: u64 = report.replay.iter().map(|r| r.entries).sum();
    assert_eq!(entries, 25_529, "the whole recording went through");
    assert_eq!(
        sorted_lines(&alerts),
        golden,
        "the alerts differ from the in-process replay's"
    );
}

/// Two scorers share the observations; one is killed (SIGKILL) mid-stream. The other is given
/// its partitions, rebuilds those patients' state from the partitions' history, and carries
/// on; the alerter ignores score sets re-published for records the dead scorer had processed
/// but not committed. The alerts equal the in-process replay's: none missing, none twice.
///
/// On librdkafka's mock cluster (served on a loopback port the role processes connect to):
/// tansu 0.6's consumer groups do not reliably hand a dead member's partitions to the
/// survivor (`DEPENDENCIES.md`), which is the path this test is about. The mock cluster keeps
/// only the newest 5 MB of each partition: the records are LZ4-compressed (the producer's
/// default) and spread over 8 partitions so that the whole history stays.
#[test]
fn a_scorer_killed_mid_stream_is_replaced_without_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    let recording = sixteen_bed_recording(dir.path());
    let golden = golden_alerts(&recording, dir.path());

    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    for topic in ["obs-kill", "scores-kill", "alerts-kill"] {
        cluster.create_topic(topic, 8, 1).unwrap();
    }
    let brokers = cluster.bootstrap_servers();
    let alerts = dir.path().join("alerts.jsonl");
    // A dead member is noticed after 6 s instead of the default 45 s.
    let fast_group = "[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n";
    let gw = role_config(
        dir.path(),
        "gateway",
        &brokers,
        "kill",
        &format!(
            "[[source]]\nkind = \"replay\"\nname = \"demo\"\npath = {:?}\nspeed = 2400\n",
            recording
        ),
    );
    let sc = role_config(dir.path(), "scorer", &brokers, "kill", fast_group);
    let al = role_config(
        dir.path(),
        "alerter",
        &brokers,
        "kill",
        &format!("[[alerting.sink]]\nkind = \"jsonl\"\npath = {alerts:?}\n\n{fast_group}"),
    );
    // The mock cluster's topics are made above, not through the admin API.
    for f in [&gw, &sc, &al] {
        let text = std::fs::read_to_string(f).unwrap();
        std::fs::write(
            f,
            text.replace(
                "partitions = 4\n",
                "partitions = 8\ncreate_topics = false\n",
            ),
        )
        .unwrap();
    }
    let mut a = Role::start("scorer", &sc, &dir.path().join("scorer-a.log"));
    let mut b = Role::start("scorer", &sc, &dir.path().join("scorer-b.log"));
    let mut alerter = Role::start("alerter", &al, &dir.path().join("alerter.log"));
    std::thread::sleep(Duration::from_secs(3));
    let mut gateway = Role::start("gateway", &gw, &dir.path().join("gateway.log"));

    // Mid-stream (the recording takes ~40 s at 2400×): scorer A dies without a goodbye.
    std::thread::sleep(Duration::from_secs(15));
    assert!(
        matches!(gateway.child.try_wait(), Ok(None)),
        "the gateway should still be replaying"
    );
    let _ = a.child.kill();
    let _ = a.child.wait();

    let log = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap_or_default();
    let status = gateway.wait_for_exit(Duration::from_secs(300));
    assert!(status.success(), "gateway failed:\n{}", log("gateway.log"));
    wait_for_alerts(&alerts, golden.len(), || {
        format!(
            "scorer B:\n{}\nalerter:\n{}",
            log("scorer-b.log"),
            log("alerter.log")
        )
    });
    assert!(
        b.terminate().success(),
        "scorer B:\n{}",
        log("scorer-b.log")
    );
    assert!(
        alerter.terminate().success(),
        "alerter:\n{}",
        log("alerter.log")
    );
    assert!(
        log("scorer-b.log").contains("state rebuilt from its history"),
        "scorer B never rebuilt a partition:\n{}",
        log("scorer-b.log")
    );
    assert!(
        !log("scorer-b.log").contains("records before it are gone"),
        "a partition's history was cut by retention (the mock cluster keeps 5 MB a partition):\n{}",
        log("scorer-b.log")
    );
    let got = sorted_lines(&alerts);
    let brief = |l: &String| -> String {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        format!("{} {} {} {}", v["patient"], v["rule"], v["state"], v["at"])
    };
    let missing: Vec<String> = golden
        .iter()
        .filter(|l| !got.contains(l))
        .map(brief)
        .collect();
    let extra: Vec<String> = got
        .iter()
        .filter(|l| !golden.contains(l))
        .map(brief)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && got.len() == golden.len(),
        "the alerts differ from the in-process replay's ({} vs {}):\nmissing {missing:#?}\nextra {extra:#?}",
        got.len(),
        golden.len()
    );
    drop(cluster);
}

/// Sends every HL7 entry of `recording`, in order, to an MLLP receiver the way a real
/// sender does: one message at a time, and a message that got no acknowledgement (the
/// receiver died, the connection broke) is sent again with the same control id until it is
/// answered. Returns (answered, resends).
fn send_recording(recording: &Path, port: u16, answered: &std::sync::atomic::AtomicUsize) -> usize {
    use std::sync::atomic::Ordering;
    use vigil::sources::mllp::client::{MllpClient, MllpClientSettings};
    use vigil::sources::replay::format::RecordingReader;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let settings = MllpClientSettings {
        connect_timeout: Duration::from_secs(2),
        ack_timeout: Duration::from_secs(10),
        max_attempts: 1,
        backoff: Duration::from_millis(10),
        ..MllpClientSettings::default()
    };
    let mut reader = RecordingReader::open(recording).unwrap();
    let mut client = MllpClient::new(addr, settings.clone());
    let mut resends = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while let Some(entry) = reader.next_entry().unwrap() {
        let payload = entry.payload().unwrap();
        loop {
            assert!(
                Instant::now() < deadline,
                "sender: no acknowledgement for 10 minutes"
            );
            match rt.block_on(client.send(&payload)) {
                Ok(_) => break,
                Err(_) => {
                    // No answer: the message is not stored; send it again, on a new connection.
                    resends += 1;
                    std::thread::sleep(Duration::from_millis(50));
                    client = MllpClient::new(addr, settings.clone());
                }
            }
        }
        answered.fetch_add(1, Ordering::SeqCst);
    }
    resends
}

/// Every record of `topic`, from the start of each partition to its end now.
///
/// The end is where each partition's high watermark was when reading began *and* where no
/// record came for two seconds: tansu's offset listing can report a high watermark below the
/// last record it acknowledged, and a reader that trusted it alone would stop one record short
/// (seen as a reading missing from one of two identical runs). The writers have stopped before
/// this is called, so a quiet topic is a complete one.
fn read_topic(brokers: &str, topic: &str) -> Vec<vigil::model::IngestRecord> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions: Vec<i32> = meta.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for p in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .unwrap();
        ends.insert(*p, high);
        tpl.add_partition_offset(topic, *p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut done: std::collections::HashSet<i32> = ends
        .iter()
        .filter(|(_, h)| **h == 0)
        .map(|(p, _)| *p)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last_record = Instant::now();
    while done.len() < partitions.len() || last_record.elapsed() < Duration::from_secs(2) {
        assert!(Instant::now() < deadline, "reading {topic} took too long");
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        last_record = Instant::now();
        let m = m.unwrap();
        let batch: Vec<vigil::model::IngestRecord> =
            serde_json::from_slice(m.payload().unwrap()).unwrap();
        out.extend(batch);
        if m.offset() + 1 >= ends[&m.partition()] {
            done.insert(m.partition());
        }
    }
    out
}

/// What the scorer would see of an observations topic: each observation by id with its
/// patient, and the census events.
fn contents(
    records: &[vigil::model::IngestRecord],
) -> (
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
) {
    use vigil::model::IngestRecord;
    let mut obs = std::collections::BTreeSet::new();
    let mut census = std::collections::BTreeSet::new();
    for r in records {
        match r {
            IngestRecord::Observation(o) => {
                obs.insert(format!("{} {:?}", o.id, o.patient()));
            }
            IngestRecord::Census(c) => {
                census.insert(format!(
                    "{:?} {} {:?} {}",
                    c.kind, c.patient, c.bed, c.message
                ));
            }
        }
    }
    (obs, census)
}

/// The readings behind differing (id, patient) keys, in full, each beside the other run's
/// readings of the same device, code and device time: what a failure needs to be understood.
fn differing_readings(
    golden: &[vigil::model::IngestRecord],
    got: &[vigil::model::IngestRecord],
    missing: &[&String],
    extra: &[&String],
) -> String {
    use vigil::model::IngestRecord;
    let obs = |rs: &[IngestRecord]| -> Vec<vigil::model::Observation> {
        rs.iter()
            .filter_map(|r| match r {
                IngestRecord::Observation(o) => Some(o.clone()),
                IngestRecord::Census(_) => None,
            })
            .collect()
    };
    let (golden, got) = (obs(golden), obs(got));
    let mut out = String::new();
    for (label, keys, here, other) in [
        ("missing", missing, &golden, &got),
        ("extra", extra, &got, &golden),
    ] {
        for key in keys {
            let Some(o) = here
                .iter()
                .find(|o| format!("{} {:?}", o.id, o.patient()) == **key)
            else {
                continue;
            };
            out.push_str(&format!(
                "{label}: {}\n",
                serde_json::to_string(o).unwrap_or_default()
            ));
            for p in other.iter().filter(|p| {
                p.device().id == o.device().id && p.code == o.code && p.device_time == o.device_time
            }) {
                out.push_str(&format!(
                    "  the other run: {}\n",
                    serde_json::to_string(p).unwrap_or_default()
                ));
            }
        }
    }
    out
}

fn gateway_config(dir: &Path, brokers: &str, tag: &str, port: u16) -> PathBuf {
    let cfg = role_config(
        dir,
        &format!("gateway-{tag}"),
        brokers,
        tag,
        &format!("[[source]]\nkind = \"mllp\"\nname = \"hl7\"\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    cfg
}

/// Stops a gateway with SIGTERM. A gateway that could not forward its whole spool within its
/// shutdown grace period (a loaded machine) keeps the rest for its next start, as documented:
/// start it again, with no sender, until a stop leaves the spool empty. Returns the logs.
fn stop_gateway_drained(
    mut gw: Role,
    first_log: &Path,
    cfg: &Path,
    dir: &Path,
    tag: &str,
) -> String {
    let mut logs = String::new();
    let mut log_path = first_log.to_path_buf();
    for round in 1..=4 {
        let status = gw.terminate();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        assert!(status.success(), "{log}");
        logs.push_str(&log);
        if !log.contains("records left in the spool") {
            return logs;
        }
        eprintln!(
            "{tag}: records were left in the spool at stop {round}; starting again to drain them"
        );
        log_path = dir.join(format!("{tag}-drain{round}.log"));
        gw = Role::start("gateway", cfg, &log_path);
    }
    panic!("{tag}: the spool did not drain in four starts:\n{logs}");
}

/// A gateway is SIGKILLed mid-stream while an MLLP sender streams a 16-bed recording to it,
/// and started again. What it acknowledged was in its spool (and the census in its journal):
/// the restarted gateway forwards it, the sender resends what was not acknowledged, and the
/// observations topic ends up with exactly the observations (with their patients) and census
/// events of an uninterrupted run of the same sender; duplicates share ids.
#[test]
fn a_gateway_killed_mid_stream_loses_nothing_acknowledged() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let recording = sixteen_bed_recording(dir.path());
    let total = {
        let mut r = vigil::sources::replay::format::RecordingReader::open(&recording).unwrap();
        let mut n = 0;
        while r.next_entry().unwrap().is_some() {
            n += 1;
        }
        n
    };
    let broker = Tansu::start();
    let brokers = broker.brokers();

    // The uninterrupted run.
    let port = free_port();
    let cfg = gateway_config(dir.path(), &brokers, "golden", port);
    let gw = Role::start("gateway", &cfg, &dir.path().join("golden.log"));
    let answered = AtomicUsize::new(0);
    let resends = send_recording(&recording, port, &answered);
    assert_eq!(answered.load(Ordering::SeqCst), total);
    stop_gateway_drained(
        gw,
        &dir.path().join("golden.log"),
        &cfg,
        dir.path(),
        "golden",
    );
    let golden = read_topic(&brokers, "obs-golden");
    let (golden_obs, golden_census) = contents(&golden);
    assert!(
        golden_obs.len() > 50_000,
        "{} observations",
        golden_obs.len()
    );
    assert!(!golden_census.is_empty());
    let _ = resends;

    // The same sender; the gateway dies mid-stream.
    let port = free_port();
    let cfg = gateway_config(dir.path(), &brokers, "kill", port);
    let mut gw = Role::start("gateway", &cfg, &dir.path().join("kill-1.log"));
    let answered = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (recording, answered) = (recording.clone(), answered.clone());
        std::thread::spawn(move || send_recording(&recording, port, &answered))
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while answered.load(Ordering::SeqCst) < total * 2 / 5 {
        assert!(Instant::now() < deadline, "the sender made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = gw.child.kill();
    let _ = gw.child.wait();
    let at_kill = answered.load(Ordering::SeqCst);
    assert!(at_kill < total, "the stream had ended before the kill");
    std::thread::sleep(Duration::from_millis(500));
    let gw = Role::start("gateway", &cfg, &dir.path().join("kill-2.log"));
    let resends = sender.join().unwrap();
    assert!(
        resends > 0,
        "the sender never had to resend: the kill was not mid-stream"
    );
    let restarted = stop_gateway_drained(
        gw,
        &dir.path().join("kill-2.log"),
        &cfg,
        dir.path(),
        "kill-2",
    );
    assert!(
        restarted.contains("census rebuilt from the journal"),
        "the restarted gateway did not rebuild its census:\n{restarted}"
    );
    assert!(restarted.contains("spool open"), "{restarted}");

    let got = read_topic(&brokers, "obs-kill");
    let (obs, census) = contents(&got);
    let missing: Vec<&String> = golden_obs.difference(&obs).take(10).collect();
    let extra: Vec<&String> = obs.difference(&golden_obs).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "observations differ from the uninterrupted run ({} vs {}; killed after {at_kill} of {total} answered, {resends} resends):\nmissing {missing:#?}\nextra {extra:#?}\n{}",
        obs.len(),
        golden_obs.len(),
        differing_readings(&golden, &got, &missing, &extra)
    );
    assert_eq!(census, golden_census, "census events differ");
    eprintln!(
        "gateway kill: {} observations, {} records read ({} duplicates), killed after {at_kill} of {total} messages, {resends} resends",
        obs.len(),
        got.len(),
        got.len() - golden.len()
    );
    drop(broker);
}
