//! Serial sources on real pseudo-terminal pairs (`socat`), with vigil's device simulators on
//! the other end: every built-in driver and shipped profile reads its simulator; a pulled cable
//! (the pty pair destroyed) and its return are ridden through without duplicates or gaps; a
//! noisy line is counted and resynchronised.
//!
//! `socat` is installed by `scripts/test.sh`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vigil::bus::{IngestBatch, MemoryBus, Subscriber, WhenFull};
use vigil::model::{IngestRecord, Observation, Param, Timestamp};
use vigil::normalize::{NormalizeSettings, NormalizeTables, Normalizer};
use vigil::protocol::device::DeviceSimulator;
use vigil::protocol::profile::ProfileSet;
use vigil::sources::serial::decode::{decode_capture, open_capture};
use vigil::sources::serial::drivers::DriverSpec;
use vigil::sources::serial::sim::{run_simulator, wait_for_path, SimPort};
use vigil::sources::serial::{self, DeviceContext, DeviceFeed, SerialPlan, SerialSourceConfig};
use vigil::telemetry::Metrics;

mod common;

use common::PtyPair;

const ADMIT: &str = "MSH|^~\\&|ADT|HOSP|VIGIL|ICU|20260105075500||ADT^A01^ADT_A01|A1|P|2.5\rEVN|A01|20260105075500\rPID|||MRN1^^^HOSP^MR||Doe^Jane\rPV1||I|ICU-A^^BED01||||||||||||||||V1\rOBX|1|NM|29463-7^Body weight^LN||80|kg|||||F\r";

struct Gateway {
    rx: Subscriber<IngestBatch>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn spec(name: &str) -> DriverSpec {
    let profiles = ProfileSet::builtin();
    DriverSpec::parse(name, &profiles).unwrap()
}

/// A serial source on `path` for bed ICU-A/BED01, whose patient V1 (80 kg) is admitted.
fn gateway(spec: &DriverSpec, path: &Path) -> Gateway {
    gateway_capturing(spec, path, None)
}

fn gateway_capturing(spec: &DriverSpec, path: &Path, capture: Option<&Path>) -> Gateway {
    let metrics = Arc::new(Metrics::new());
    let bus = MemoryBus::new(metrics.clone());
    let (tx, rx) = bus.topic::<IngestBatch>("observations", 4096, WhenFull::Block);
    let mut n = Normalizer::new(
        NormalizeTables::builtin().unwrap(),
        NormalizeSettings::default(),
    );
    n.hl7("adt", ADMIT.as_bytes(), Timestamp::now_wall())
        .unwrap();
    let stop = CancellationToken::new();
    let cfg = SerialSourceConfig {
        name: "port1".into(),
        path: path.to_path_buf(),
        driver: spec.name(),
        baud: None,
        data_bits: None,
        parity: None,
        stop_bits: None,
        flow_control: None,
        unit: Some("ICU-A".into()),
        bed: Some("BED01".into()),
        device_id: None,
        reconnect_initial_ms: 50,
        reconnect_max_ms: 400,
        capture: capture.map(Path::to_path_buf),
    };
    let plan = SerialPlan {
        line: spec.line_defaults().overridden_by(&cfg),
        protocol: spec.name(),
        factory: spec.factory(),
        cfg,
    };
    let ctx = DeviceContext {
        normalizer: Arc::new(Mutex::new(n)),
        out: tx,
        metrics: metrics.clone(),
        stop: stop.clone(),
    };
    let task = tokio::spawn(serial::run(plan, ctx));
    Gateway {
        rx,
        metrics,
        stop,
        task,
    }
}

fn simulator(
    spec: &DriverSpec,
    dev: &Path,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    simulator_with(spec.simulator().unwrap(), spec, dev, stop)
}

fn simulator_with(
    sim: Box<dyn DeviceSimulator>,
    spec: &DriverSpec,
    dev: &Path,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let port = SimPort::Path(dev.to_path_buf(), spec.line_defaults());
    let stop = stop.clone();
    tokio::spawn(async move {
        run_simulator(port, sim, stop).await.unwrap();
    })
}

/// Collects observations until `done` says so; panics after `limit` (hang protection only).
async fn collect(
    rx: &mut Subscriber<IngestBatch>,
    limit: Duration,
    mut done: impl FnMut(&[Observation]) -> bool,
) -> Vec<Observation> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while !done(&seen) {
        let batch = tokio::time::timeout_at(deadline, rx.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out; got {} observations: {:?}",
                    seen.len(),
                    seen.iter().map(|o| o.param).collect::<HashSet<_>>()
                )
            })
            .expect("the bus closed");
        for r in batch {
            if let IngestRecord::Observation(o) = r {
                seen.push(o);
            }
        }
    }
    seen
}

fn params(obs: &[Observation]) -> HashSet<Param> {
    obs.iter().filter_map(|o| o.param).collect()
}

fn counter(m: &Metrics, name: &str, label: &str) -> u64 {
    m.render()
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn reads_its_simulator(name: &str, want: &[Param]) {
    let dir = tempfile::tempdir().unwrap();
    let pair = PtyPair::start(dir.path());
    let spec = spec(name);
    let stop = CancellationToken::new();
    let sim = simulator(&spec, &pair.dev, &stop);
    let capture = dir.path().join("capture.jsonl");
    let mut gw = gateway_capturing(&spec, &pair.gw, Some(&capture));
    let obs = collect(&mut gw.rx, Duration::from_secs(30), |o| {
        want.iter().all(|p| params(o).contains(p))
    })
    .await;
    for o in &obs {
        assert_eq!(o.bed(), Some("BED01"), "{name}");
        assert_eq!(o.patient(), Some("V1"), "{name}: the bed's patient");
        assert_eq!(&*o.source().protocol, "serial");
    }
    assert!(
        counter(&gw.metrics, "vigil_device_frames_total", "result=\"ok\"") > 0,
        "{name}: frames counted"
    );
    gw.stop.cancel();
    stop.cancel();
    gw.task.await.unwrap();
    sim.await.unwrap();

    // The capture decodes offline, through a fresh driver, to the same observations.
    let input = open_capture(&capture, None, Timestamp::from_millis(0), 9600).unwrap();
    let mut n = Normalizer::new(
        NormalizeTables::builtin().unwrap(),
        NormalizeSettings::default(),
    );
    // The same census as live (a pump's dose needs the patient's weight).
    n.hl7("adt", ADMIT.as_bytes(), Timestamp::from_millis(0))
        .unwrap();
    let normalizer = Mutex::new(n);
    let mut feed = DeviceFeed::new("port1", "serial", None, Some("ICU-A"), Some("BED01"));
    let mut decoded = HashSet::new();
    let mut driver = spec.driver();
    let summary = decode_capture(driver.as_mut(), input, &normalizer, &mut feed, |o| {
        decoded.insert(o.id);
        Ok(())
    })
    .unwrap();
    assert!(summary.frames.frames > 0, "{name}: {summary:?}");
    let missing: Vec<_> = obs.iter().filter(|o| !decoded.contains(&o.id)).collect();
    assert!(
        missing.is_empty(),
        "{name}: the capture lacks {} of {} live observations, e.g. {:?}",
        missing.len(),
        obs.len(),
        missing.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intellivue_monitor_over_a_pty() {
    reads_its_simulator(
        "intellivue",
        &[
            Param::HeartRate,
            Param::SpO2,
            Param::SbpNibp,
            Param::MapArt,
            Param::RespRate,
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medibus_ventilator_over_a_pty() {
    reads_its_simulator("medibus", &[Param::FiO2, Param::Peep, Param::TidalVolume]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datex_monitor_over_a_pty() {
    reads_its_simulator("datex", &[Param::HeartRate, Param::SpO2, Param::SbpNibp]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ascii_monitor_profile_over_a_pty() {
    reads_its_simulator(
        "profile:ivy-450c",
        &[
            Param::HeartRate,
            Param::SpO2,
            Param::SbpNibp,
            Param::RespRate,
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ascii_pump_profile_over_a_pty_gives_a_dose() {
    use vigil::model::Drug;
    reads_its_simulator("profile:ascii-pump", &[Param::Dose(Drug::Norepinephrine)]).await;
}

/// Unplug and replug: the gateway notices, retries with backoff, reassociates and carries on;
/// nothing is duplicated and, once the line is back, nothing is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_cable_is_ridden_through() {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = PtyPair::start(dir.path());
    let spec = spec("intellivue");
    let stop = CancellationToken::new();
    let sim = simulator(&spec, &pair.dev, &stop);
    let mut gw = gateway(&spec, &pair.gw);
    let hr = |o: &Observation| o.code.refid.as_deref() == Some("MDC_ECG_HEART_RATE");

    let before = collect(&mut gw.rx, Duration::from_secs(30), |o| {
        o.iter().filter(|o| hr(o)).count() >= 3
    })
    .await;

    pair.unplug();
    // The gateway sees the line go and keeps trying to reopen it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while counter(&gw.metrics, "vigil_device_reconnects_total", "open_failed") < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no reopen attempts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Whatever was in flight when the cable went is drained before the replug.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut in_flight = Vec::new();
    while let Ok(Some(b)) = tokio::time::timeout(Duration::from_millis(100), gw.rx.next()).await {
        in_flight.extend(b);
    }
    let replugged_at = Timestamp::now_wall();
    pair.plug();

    let after = collect(&mut gw.rx, Duration::from_secs(30), |o| {
        o.iter().filter(|o| hr(o)).count() >= 5
    })
    .await;
    assert!(
        counter(
            &gw.metrics,
            "vigil_device_reconnects_total",
            "source=\"port1\""
        ) >= 2
    );

    let mut all: Vec<Observation> = before;
    all.extend(in_flight.into_iter().filter_map(|r| match r {
        IngestRecord::Observation(o) => Some(o),
        _ => None,
    }));
    let resumed_from = all.len();
    all.extend(after);
    let mut ids = HashSet::new();
    for o in &all {
        assert!(ids.insert(o.id), "observation {} delivered twice", o.id);
    }
    // Per code, device times only move forward: nothing replayed from before the pull.
    let mut last: HashMap<String, Timestamp> = HashMap::new();
    for o in &all {
        let t = o.device_time.unwrap_or(o.corrected_time);
        if let Some(prev) = last.insert(o.code.code.to_string(), t) {
            assert!(t > prev, "{} went back from {prev} to {t}", o.code.code);
        }
    }
    // After the replug the heart rate arrives at the poll rate, without holes: consecutive
    // readings are never more than three poll periods apart.
    let resumed: Vec<Timestamp> = all[resumed_from..]
        .iter()
        .filter(|o| hr(o))
        .map(|o| o.device_time.unwrap_or(o.corrected_time))
        .collect();
    assert!(resumed
        .first()
        .is_some_and(|t| *t >= replugged_at.minus_ms(5_000)));
    for w in resumed.windows(2) {
        assert!(
            w[1].since(w[0]) <= 3_000,
            "gap {} ms after the replug",
            w[1].since(w[0])
        );
    }
    gw.stop.cancel();
    stop.cancel();
    gw.task.await.unwrap();
    sim.await.unwrap();
}

/// A simulator whose line is noisy: every few writes a byte is flipped, noise is inserted and
/// a write is cut short.
struct Noisy {
    inner: Box<dyn DeviceSimulator>,
    writes: u64,
}

impl Noisy {
    fn spoil(&mut self, out: &mut Vec<u8>, from: usize) {
        if out.len() <= from {
            return;
        }
        self.writes += 1;
        let len = out.len() - from;
        match self.writes % 5 {
            1 => {
                let i = from + len / 2;
                out[i] ^= 0x5A;
            }
            2 => {
                let noise = [0x00, 0xFF, 0x7E, 0x7D, 0xC0, 0x1B, 0x01, 0x0D, 0x02, 0x03];
                out.splice(from..from, noise);
            }
            3 => out.truncate(from + len / 3),
            _ => {}
        }
    }
}

impl DeviceSimulator for Noisy {
    fn on_bytes(&mut self, bytes: &[u8], now: Timestamp, out: &mut Vec<u8>) {
        let from = out.len();
        self.inner.on_bytes(bytes, now, out);
        self.spoil(out, from);
    }
    fn on_tick(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        let from = out.len();
        self.inner.on_tick(now, out);
        self.spoil(out, from);
    }
    fn tick_interval(&self) -> Duration {
        self.inner.tick_interval()
    }
}

async fn survives_a_noisy_line(name: &str, want: Param) {
    let dir = tempfile::tempdir().unwrap();
    let pair = PtyPair::start(dir.path());
    let spec = spec(name);
    let stop = CancellationToken::new();
    let noisy = Box::new(Noisy {
        inner: spec.simulator().unwrap(),
        writes: 0,
    });
    let sim = simulator_with(noisy, &spec, &pair.dev, &stop);
    let mut gw = gateway(&spec, &pair.gw);
    let obs = collect(&mut gw.rx, Duration::from_secs(60), |o| {
        o.iter().filter(|o| o.param == Some(want)).count() >= 4
    })
    .await;
    let bad = counter(
        &gw.metrics,
        "vigil_device_frames_total",
        "result=\"checksum\"",
    ) + counter(
        &gw.metrics,
        "vigil_device_frames_total",
        "result=\"resync\"",
    ) + counter(
        &gw.metrics,
        "vigil_device_frames_total",
        "result=\"decode_error\"",
    );
    assert!(bad > 0, "{name}: the spoiled frames were counted");
    // Readings kept flowing: the ones collected came after spoiled frames, not before them.
    assert!(obs.iter().filter(|o| o.param == Some(want)).count() >= 4);
    gw.stop.cancel();
    stop.cancel();
    gw.task.await.unwrap();
    sim.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noisy_lines_are_counted_and_resynchronised() {
    survives_a_noisy_line("intellivue", Param::HeartRate).await;
    survives_a_noisy_line("medibus", Param::FiO2).await;
    survives_a_noisy_line("datex", Param::HeartRate).await;
    survives_a_noisy_line("profile:ivy-450c", Param::HeartRate).await;
}

/// `--pty`: the simulator makes its own pseudo-terminal and links it for the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulator_on_its_own_pty() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("monitor");
    let spec = spec("profile:ivy-450c");
    let stop = CancellationToken::new();
    let port = SimPort::Pty(link.clone());
    let sim_stop = stop.clone();
    let sim = spec.simulator().unwrap();
    let task = tokio::spawn(async move { run_simulator(port, sim, sim_stop).await.unwrap() });
    assert!(wait_for_path(&link, Duration::from_secs(10)).await);
    let mut gw = gateway(&spec, &link);
    collect(&mut gw.rx, Duration::from_secs(30), |o| {
        params(o).contains(&Param::HeartRate)
    })
    .await;
    gw.stop.cancel();
    stop.cancel();
    gw.task.await.unwrap();
    task.await.unwrap();
}
