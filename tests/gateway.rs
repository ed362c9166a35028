//! One bed's gateway, end to end, on real parts: a simulated IntelliVue monitor, a MEDIBUS
//! ventilator and an ASCII infusion pump on socat pseudo-terminals, a point-of-care analyser
//! publishing to a real Mosquitto, and the ADT admit over MLLP/TCP. The scorer's output for the
//! bed's patient must draw on every one of them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vigil::app::{plan_sources, run_pipeline, RunOptions};
use vigil::config::Config;
use vigil::model::{Score, ScoreKind, ScoreSet, Timestamp};
use vigil::protocol::profile::ProfileSet;
use vigil::sources::mllp::client::{MllpClient, MllpClientSettings};
use vigil::sources::serial::drivers::DriverSpec;
use vigil::sources::serial::sim::{run_simulator, SimPort};
use vigil::telemetry::Metrics;

mod common;

use common::{publisher, Broker, PtyPair};

const ADMIT: &str = "MSH|^~\\&|ADT|HOSP|VIGIL|ICU|20260105075500||ADT^A01^ADT_A01|A1|P|2.5\rEVN|A01|20260105075500\rPID|||MRN1^^^HOSP^MR||Doe^Jane\rPV1||I|ICU-A^^BED01||||||||||||||||V1\rOBX|1|NM|29463-7^Body weight^LN||80|kg|||||F\r";

fn serial(name: &str, driver: &str, path: &Path) -> String {
    format!(
        "[[source]]\nkind = \"serial\"\nname = \"{name}\"\npath = \"{}\"\ndriver = \"{driver}\"\n\
         unit = \"ICU-A\"\nbed = \"BED01\"\nreconnect_initial_ms = 50\nreconnect_max_ms = 500\n\n",
        path.display()
    )
}

fn component<'a>(
    set: &'a ScoreSet,
    kind: ScoreKind,
    name: &str,
) -> Option<&'a vigil::model::Component> {
    set.scores
        .iter()
        .find(|s: &&Score| s.kind == kind)?
        .components
        .iter()
        .find(|c| c.name == name && c.value.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_ventilator_pump_and_mqtt_analyser_feed_one_patient() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start("").await;
    let mon = PtyPair::start(&dir.path().join("mon"));
    let vent = PtyPair::start(&dir.path().join("vent"));
    let pump = PtyPair::start(&dir.path().join("pump"));

    let toml = format!(
        "[site]\nname = \"Test ICU\"\n\n[[source]]\nkind = \"mllp\"\nname = \"adt\"\nlisten = \"127.0.0.1:0\"\n\n\
         {}{}{}\
         [[source]]\nkind = \"mqtt\"\nname = \"poc\"\nhost = \"127.0.0.1\"\nport = {}\n\
         subscriptions = [{{ filter = \"icu/+/+/+/labs\", payload = \"json\", topic_map = \"icu/{{unit}}/{{bed}}/{{device}}/#\" }}]\n",
        serial("monitor", "intellivue", &mon.gw),
        serial("vent", "medibus", &vent.gw),
        serial("pump", "profile:ascii-pump", &pump.gw),
        broker.port,
    );
    let cfg = Config::from_str("gateway.toml", &toml, dir.path()).unwrap_or_else(|p| panic!("{p}"));
    let scores = dir.path().join("scores.jsonl");
    let (tx, mut listening) = tokio::sync::mpsc::unbounded_channel();
    let opts = RunOptions {
        scores_out: Some(scores.clone()),
        dead_letters: Some(dir.path().join("dl")),
        listening: Some(tx),
        census_journal: None,
        ..RunOptions::default()
    };
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let (m, s) = (metrics.clone(), stop.clone());
    let pipeline = tokio::spawn(async move {
        run_pipeline(&cfg, plan_sources(&cfg), opts, m, s)
            .await
            .unwrap()
    });
    let (_, adt_addr) = listening.recv().await.unwrap();

    // The patient is admitted to the bed; the devices know only the bed.
    let mut client = MllpClient::new(adt_addr, MllpClientSettings::default());
    let acks = client.send(ADMIT.as_bytes()).await.unwrap();
    assert_eq!(acks.last().map(|a| a.code.as_str()), Some("AA"));

    let profiles = ProfileSet::builtin();
    let sims_stop = CancellationToken::new();
    let mut sims = Vec::new();
    for (driver, pair) in [
        ("intellivue", &mon),
        ("medibus", &vent),
        ("profile:ascii-pump", &pump),
    ] {
        let spec = DriverSpec::parse(driver, &profiles).unwrap();
        let port = SimPort::Path(pair.dev.clone(), spec.line_defaults());
        let sim = spec.simulator().unwrap();
        let stop = sims_stop.clone();
        sims.push(tokio::spawn(async move {
            run_simulator(port, sim, stop).await.unwrap()
        }));
    }

    // A blood gas from the point-of-care analyser, over MQTT.
    let mut p = publisher(broker.port, "poc-analyser").await;
    let now = Timestamp::now_wall().to_rfc3339();
    p.publish(
        "icu/ICU-A/BED01/abl-1/labs",
        format!(
            "{{\"time\":\"{now}\",\"observations\":[\
             {{\"code\":\"2524-7\",\"system\":\"LOINC\",\"value\":4.2,\"unit\":\"mmol/L\"}},\
             {{\"code\":\"2703-7\",\"system\":\"LOINC\",\"value\":62,\"unit\":\"mm[Hg]\"}}]}}"
        ),
    )
    .await;

    // Wait until the patient's scores draw on every device (bounded: hang protection only).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let last = loop {
        let text = std::fs::read_to_string(&scores).unwrap_or_default();
        let last = text
            .lines()
            .filter_map(|l| serde_json::from_str::<ScoreSet>(l).ok())
            .rfind(|s| s.patient == "V1");
        if let Some(set) = &last {
            let complete = component(set, ScoreKind::News2, "pulse").is_some()
                && component(set, ScoreKind::News2, "spo2").is_some()
                && component(set, ScoreKind::Sofa, "respiration").is_some()
                && component(set, ScoreKind::SepticShock, "vasopressor").is_some()
                && component(set, ScoreKind::SepticShock, "lactate").is_some();
            if complete {
                break last.unwrap();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scores never drew on every device; last: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(last.bed.as_deref(), Some("BED01"));
    // Monitor: pulse and SpO2 in NEWS2.
    let pulse = component(&last, ScoreKind::News2, "pulse").unwrap();
    assert!((40.0..=180.0).contains(&pulse.value.unwrap()), "{pulse:?}");
    // Ventilator FiO2 with the analyser's PaO2: the SOFA respiratory ratio.
    let resp = component(&last, ScoreKind::Sofa, "respiration").unwrap();
    assert!(
        resp.points >= 1.0,
        "PaO2 62 on the ventilator's FiO2 scores: {resp:?}"
    );
    // Pump: a norepinephrine dose computed from mL/h, mg/mL and the admit weight.
    let vaso = component(&last, ScoreKind::SepticShock, "vasopressor").unwrap();
    assert!(vaso.value.unwrap() > 0.0, "{vaso:?}");
    assert!(
        vaso.note
            .as_deref()
            .unwrap_or("")
            .contains("norepinephrine"),
        "{vaso:?}"
    );
    // Analyser: the lactate.
    let lactate = component(&last, ScoreKind::SepticShock, "lactate").unwrap();
    assert_eq!(lactate.value, Some(4.2));

    sims_stop.cancel();
    for s in sims {
        s.await.unwrap();
    }
    stop.cancel();
    pipeline.await.unwrap();
    drop(broker);
}
