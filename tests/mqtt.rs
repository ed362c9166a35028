//! The MQTT source against a real Mosquitto broker: QoS 1 delivery of vigil-JSON and SenML
//! readings through the whole pipeline, a broker restart and a vigil restart mid-stream with no
//! loss and no duplicate downstream, malformed payloads dead-lettered and acknowledged, TLS, and
//! config validation.
//!
//! Each test starts its own `mosquitto` (found on PATH or in /usr/sbin; `scripts/test.sh`
//! installs it) on a free loopback port, with persistence in a temporary directory, and kills it
//! when done. Every wait is bounded (hang protection, not a speed assertion).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vigil::app::{plan_sources, run_pipeline, RunOptions};
use vigil::bus::{IngestBatch, MemoryBus, WhenFull, TOPIC_OBSERVATIONS};
use vigil::config::Config;
use vigil::model::{IngestRecord, Observation, ScoreSet};
use vigil::normalize::{NormalizeSettings, NormalizeTables, Normalizer};
use vigil::scorer::{Scorer, ScoringTables};
use vigil::sources::deadletter::{self, DeadLetterStore};
use vigil::sources::mqtt::{MqttContext, MqttSource, MqttSourceConfig, MqttSubscription};
use vigil::telemetry::Metrics;

mod common;

use common::{free_port, publisher, Broker, WAIT};

// ------------------------------------------------------------------------------- payloads

const BASE_MS: i64 = 1_767_261_600_000; // 2026-01-01T10:00:00Z

fn rfc3339(ms: i64) -> String {
    vigil::model::Timestamp::from_millis(ms).to_rfc3339()
}

/// Reading `i` of monitor `mon-7`: SpO2 and heart rate, stamped by the device.
fn json_reading(i: i64) -> String {
    let t = rfc3339(BASE_MS + i * 1000);
    format!(
        r#"{{"device":"mon-7","model":"X2","patient":"P-1","time":"{t}","observations":[
            {{"code":150456,"value":{},"unit":"%","time":"{t}"}},
            {{"refid":"MDC_ECG_HEART_RATE","value":{},"unit":"/min","time":"{t}"}}]}}"#,
        90 + i % 8,
        70 + i
    )
}

/// Reading `i` as SenML: respiratory rate at an absolute time.
fn senml_reading(i: i64) -> String {
    format!(
        r#"[{{"bn":"urn:dev:mac:00aa00bb00cc00dd:","bt":{},"n":"MDC_RESP_RATE","u":"1/min","v":{}}}]"#,
        (BASE_MS + i * 1000) / 1000,
        14 + i % 5
    )
}

// ------------------------------------------------------------------------------- waiting

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let r = tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "timed out waiting for {what}");
}

// ------------------------------------------------------------------------------- vigil, direct

/// One MQTT source feeding its own bus; every observation it publishes is collected.
struct Vigil {
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    collector: tokio::task::JoinHandle<()>,
}

fn subscription(filter: &str, payload: &str, map: &str) -> MqttSubscription {
    MqttSubscription {
        filter: filter.into(),
        payload: match payload {
            "senml" => vigil::protocol::mqtt_payload::PayloadFormat::Senml,
            _ => vigil::protocol::mqtt_payload::PayloadFormat::Json,
        },
        topic_map: Some(map.into()),
    }
}

async fn start_vigil(
    port: u16,
    client_id: &str,
    subs: Vec<MqttSubscription>,
    dead_letters: Option<&Path>,
    seen: Arc<Mutex<Vec<Observation>>>,
) -> Vigil {
    let mut cfg = MqttSourceConfig::new("mqtt-in", "127.0.0.1", port, subs);
    cfg.client_id = Some(client_id.into());
    cfg.keep_alive_secs = 5;
    // Long enough that a restarted broker is back before vigil retries.
    cfg.reconnect_initial_ms = 2_000;
    cfg.reconnect_max_ms = 4_000;
    let source = MqttSource::new(cfg).unwrap();
    let metrics = Arc::new(Metrics::new());
    let bus = MemoryBus::new(metrics.clone());
    let (tx, mut rx) = bus.topic::<IngestBatch>(TOPIC_OBSERVATIONS, 64, WhenFull::Block);
    let normalizer = Arc::new(Mutex::new(Normalizer::new(
        NormalizeTables::builtin().unwrap(),
        NormalizeSettings::default(),
    )));
    let dead_letters =
        dead_letters.map(|d| Arc::new(Mutex::new(DeadLetterStore::open(d, 1 << 20).unwrap())));
    let stop = CancellationToken::new();
    let ctx = MqttContext {
        normalizer,
        out: tx,
        metrics: metrics.clone(),
        dead_letters,
        census_journal: None,
        stop: stop.clone(),
    };
    let task = tokio::spawn(source.run(ctx));
    let collector = tokio::spawn(async move {
        while let Some(batch) = rx.next().await {
            for rec in batch {
                if let IngestRecord::Observation(o) = rec {
                    seen.lock().unwrap().push(o);
                }
            }
        }
    });
    let v = Vigil {
        metrics,
        stop,
        task,
        collector,
    };
    let m = v.metrics.clone();
    wait_for("vigil's subscriptions", || {
        m.mqtt_subscribed.with_label_values(&["mqtt-in"]).get() >= 1
    })
    .await;
    v
}

impl Vigil {
    fn acks(&self, outcome: &str) -> u64 {
        self.metrics
            .mqtt_acks
            .with_label_values(&["mqtt-in", outcome])
            .get()
    }

    fn connected(&self) -> i64 {
        self.metrics
            .mqtt_connected
            .with_label_values(&["mqtt-in"])
            .get()
    }

    fn connects(&self, session: &str) -> u64 {
        self.metrics
            .mqtt_connects
            .with_label_values(&["mqtt-in", session])
            .get()
    }

    /// Graceful: the message in hand is finished and acknowledged, then DISCONNECT.
    async fn stop(self) -> Arc<Metrics> {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the MQTT source stops on cancel")
            .unwrap();
        tokio::time::timeout(WAIT, self.collector)
            .await
            .expect("the bus closes once the source is gone")
            .unwrap();
        self.metrics
    }
}

fn unique_ids(seen: &Mutex<Vec<Observation>>) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect::<BTreeSet<_>>()
        .len()
}

// ------------------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_readings_in_json_and_senml_reach_the_scorer_exactly_once_each() {
    let broker = Broker::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[[source]]
kind = "mqtt"
name = "mqtt-in"
host = "127.0.0.1"
port = {port}
client_id = "vigil-qos1"
keep_alive_secs = 5
subscriptions = [
  {{ filter = "icu/+/+/+/vitals", payload = "json", topic_map = "icu/{{unit}}/{{bed}}/{{device}}/#" }},
  {{ filter = "senml/+/+/+", payload = "senml", topic_map = "senml/{{unit}}/{{bed}}/{{patient}}" }},
]
"#,
        port = broker.port
    );
    let cfg = Config::from_str("mqtt.toml", &toml, dir.path()).unwrap_or_else(|p| panic!("{p}"));
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let scores = dir.path().join("scores.jsonl");
    let opts = RunOptions {
        scores_out: Some(scores.clone()),
        dead_letters: Some(dir.path().join("dl")),
        ..RunOptions::default()
    };
    let (m, s) = (metrics.clone(), stop.clone());
    let pipeline = tokio::spawn(async move {
        run_pipeline(&cfg, plan_sources(&cfg), opts, m, s)
            .await
            .unwrap()
    });
    let m = metrics.clone();
    wait_for("both subscriptions granted", || {
        m.mqtt_subscribed.with_label_values(&["mqtt-in"]).get() == 2
    })
    .await;

    const N_JSON: i64 = 12;
    const N_SENML: i64 = 6;
    let mut p = publisher(broker.port, "pub-qos1").await;
    for i in 0..N_JSON {
        p.publish("icu/ICU-A/B07/mon-7/vitals", json_reading(i))
            .await;
    }
    for i in 0..N_SENML {
        p.publish("senml/ICU-A/B09/P-2", senml_reading(i)).await;
    }
    let total = (N_JSON + N_SENML) as u64;
    wait_for("every message acknowledged after reaching the bus", || {
        m.mqtt_acks
            .with_label_values(&["mqtt-in", "accepted"])
            .get()
            == total
    })
    .await;
    stop.cancel();
    tokio::time::timeout(WAIT, pipeline)
        .await
        .expect("the pipeline drains and stops")
        .unwrap();

    let obs = |code: &str, param: &str| {
        metrics
            .observations
            .with_label_values(&["MDC", code, param])
            .get()
    };
    assert_eq!(obs("150456", "spo2"), N_JSON as u64);
    assert_eq!(obs("147842", "heart_rate"), N_JSON as u64);
    assert_eq!(obs("151562", "resp_rate"), N_SENML as u64);
    assert_eq!(
        metrics
            .messages_received
            .with_label_values(&["mqtt-in", "mqtt"])
            .get(),
        total
    );
    assert_eq!(
        metrics
            .mqtt_acks
            .with_label_values(&["mqtt-in", "rejected"])
            .get(),
        0
    );

    // Scored on the right beds: the JSON patient on the topic's B07, the SenML patient (named
    // by the topic) on B09.
    let sets: Vec<ScoreSet> = std::fs::read_to_string(&scores)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let beds: BTreeMap<String, (Option<String>, Option<String>)> = sets
        .iter()
        .map(|s| (s.patient.clone(), (s.unit.clone(), s.bed.clone())))
        .collect();
    assert_eq!(
        beds.get("P-1"),
        Some(&(Some("ICU-A".into()), Some("B07".into())))
    );
    assert_eq!(
        beds.get("P-2"),
        Some(&(Some("ICU-A".into()), Some("B09".into())))
    );
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_and_vigil_restarts_lose_nothing_and_duplicates_share_their_ids() {
    let mut broker = Broker::start("").await;
    let seen = Arc::new(Mutex::new(Vec::<Observation>::new()));
    let subs = || {
        vec![subscription(
            "icu/+/+/+/vitals",
            "json",
            "icu/{unit}/{bed}/{device}/#",
        )]
    };
    const TOPIC: &str = "icu/ICU-A/B07/mon-7/vitals";
    const PER_PHASE: i64 = 8;
    let v1 = start_vigil(broker.port, "vigil-restart", subs(), None, seen.clone()).await;
    assert_eq!(v1.connects("new"), 1);

    // Phase 1: the broker and vigil are up.
    let mut p = publisher(broker.port, "pub-1").await;
    for i in 0..PER_PHASE {
        p.publish(TOPIC, json_reading(i)).await;
    }
    wait_for("phase 1 on the bus", || unique_ids(&seen) == 16).await;
    drop(p);

    // Phase 2: the broker stops (saving the session) and comes back on the same port; the
    // second batch is published while vigil is still backing off, so the broker queues it for
    // vigil's persistent session. One message is published twice (a publisher's QoS 1 retry).
    broker.stop().await;
    wait_for("vigil to notice the broker is gone", || v1.connected() == 0).await;
    broker.spawn().await;
    let mut p = publisher(broker.port, "pub-2").await;
    let vigil_was_down = v1.connected() == 0;
    for i in PER_PHASE..2 * PER_PHASE {
        p.publish(TOPIC, json_reading(i)).await;
    }
    p.publish(TOPIC, json_reading(PER_PHASE)).await;
    drop(p);
    wait_for("phase 2 on the bus", || unique_ids(&seen) == 32).await;
    assert!(
        v1.connects("resumed") >= 1,
        "the broker kept vigil's session across its restart"
    );

    // Phase 3: vigil stops cleanly; the broker queues the third batch; a new vigil with the same
    // client id resumes the session and receives it.
    let m1 = v1.stop().await;
    let mut p = publisher(broker.port, "pub-3").await;
    for i in 2 * PER_PHASE..3 * PER_PHASE {
        p.publish(TOPIC, json_reading(i)).await;
    }
    drop(p);
    let v2 = start_vigil(broker.port, "vigil-restart", subs(), None, seen.clone()).await;
    assert_eq!(
        v2.connects("resumed"),
        1,
        "the session survived vigil's restart"
    );
    wait_for("phase 3 on the bus", || unique_ids(&seen) == 48).await;
    let m2 = v2.stop().await;

    // Every published reading arrived; copies (the publisher's retry, and any redelivery of a
    // message whose PUBACK was lost with the connection) carry the same observation id.
    let seen = seen.lock().unwrap();
    let mut by_key: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    for o in seen.iter() {
        let t = o.device_time.expect("device time").millis();
        by_key
            .entry((o.code.code.to_string(), t))
            .or_default()
            .insert(o.id.to_string());
    }
    let expected: BTreeSet<(String, i64)> = (0..3 * PER_PHASE)
        .flat_map(|i| {
            let t = BASE_MS + i * 1000;
            [("150456".to_string(), t), ("147842".to_string(), t)]
        })
        .collect();
    assert_eq!(
        by_key.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "exactly the published readings"
    );
    assert!(
        by_key.values().all(|ids| ids.len() == 1),
        "one id per reading"
    );
    assert!(
        seen.len() >= 50,
        "the retried message was delivered twice ({} observations)",
        seen.len()
    );

    // Downstream, the scorer takes each observation id once.
    let mut scorer = Scorer::new(ScoringTables::builtin());
    let taken = seen
        .iter()
        .filter(|o| {
            scorer
                .handle(&IngestRecord::Observation((*o).clone()))
                .is_some()
        })
        .count();
    assert_eq!(taken, 48, "the scorer drops repeated observation ids");

    let received = m1
        .messages_received
        .with_label_values(&["mqtt-in", "mqtt"])
        .get()
        + m2.messages_received
            .with_label_values(&["mqtt-in", "mqtt"])
            .get();
    assert!(received > 3 * PER_PHASE as u64);
    eprintln!(
        "deliveries {received}, observations {}, vigil disconnected while phase 2 was published: {vigil_was_down}",
        seen.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_are_dead_lettered_acknowledged_and_not_redelivered() {
    let broker = Broker::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let dl = dir.path().join("dl");
    let seen = Arc::new(Mutex::new(Vec::<Observation>::new()));
    let subs = || vec![subscription("icu/#", "json", "icu/{unit}/{bed}/{device}/#")];
    let v1 = start_vigil(broker.port, "vigil-bad", subs(), Some(&dl), seen.clone()).await;

    const TOPIC: &str = "icu/ICU-A/B07/mon-7/vitals";
    let not_json = b"SpO2=97;HR=72".to_vec();
    let mut p = publisher(broker.port, "pub-bad").await;
    p.publish(TOPIC, json_reading(0)).await;
    p.publish(TOPIC, not_json.clone()).await;
    p.publish(
        TOPIC,
        r#"{"device":"mon-7","observations":[{"code":150456,"unit":"%"}]}"#,
    )
    .await;
    p.publish("icu/ICU-A", json_reading(1)).await;
    p.publish(TOPIC, json_reading(2).replace("mon-7", "mon-9"))
        .await;
    p.publish(TOPIC, json_reading(3)).await;
    wait_for("all six acknowledged", || {
        v1.acks("accepted") + v1.acks("rejected") == 6
    })
    .await;
    assert_eq!((v1.acks("accepted"), v1.acks("rejected")), (2, 4));
    wait_for("the good readings on the bus", || unique_ids(&seen) == 4).await;

    let kept = deadletter::list(&dl).unwrap();
    let kinds: Vec<&str> = kept.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(kinds, ["syntax", "missing", "topic", "conflict"]);
    assert_eq!(kept[0].raw(), not_json, "kept byte for byte");
    assert_eq!(kept[0].peer.as_deref(), Some(TOPIC), "with its topic");
    assert!(
        kept[1].reason.contains("observations[0].value: missing"),
        "{}",
        kept[1].reason
    );
    assert!(
        kept[2].reason.contains("needs at least"),
        "{}",
        kept[2].reason
    );
    assert!(
        kept[3].reason.contains("\"mon-9\" differs"),
        "{}",
        kept[3].reason
    );
    for kind in ["syntax", "missing", "topic", "conflict"] {
        assert_eq!(
            v1.metrics
                .messages_rejected
                .with_label_values(&["mqtt-in", kind])
                .get(),
            1,
            "{kind}"
        );
    }
    v1.stop().await;

    // The rejected messages were acknowledged: a resumed session gets only what is new.
    let v2 = start_vigil(broker.port, "vigil-bad", subs(), Some(&dl), seen.clone()).await;
    assert_eq!(v2.connects("resumed"), 1);
    p.publish(TOPIC, json_reading(4)).await;
    wait_for("the sentinel reading", || unique_ids(&seen) == 6).await;
    let m2 = v2.stop().await;
    assert_eq!(
        m2.messages_received
            .with_label_values(&["mqtt-in", "mqtt"])
            .get(),
        1,
        "nothing was redelivered"
    );
    assert_eq!(deadletter::list(&dl).unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_broker_with_a_private_ca() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let pki = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params
        .signed_by(&key, &rcgen::Issuer::new(ca_params, ca_key))
        .unwrap();
    std::fs::write(pki.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(pki.path().join("server.pem"), cert.pem()).unwrap();
    std::fs::write(pki.path().join("server.key"), key.serialize_pem()).unwrap();

    // A second listener with TLS; the publisher uses the plain one.
    let tls_port = free_port();
    let p = pki.path().display();
    let broker = Broker::start(&format!(
        "listener {tls_port} 127.0.0.1\ncertfile {p}/server.pem\nkeyfile {p}/server.key\n"
    ))
    .await;
    let toml = format!(
        "[[source]]\nkind = \"mqtt\"\nname = \"mqtt-tls\"\nhost = \"localhost\"\nport = {tls_port}\n\
         subscriptions = [{{ filter = \"icu/+/+/+/vitals\", topic_map = \"icu/{{unit}}/{{bed}}/{{device}}/#\" }}]\n\
         [source.tls]\nca = \"ca.pem\"\n"
    );
    let cfg = Config::from_str("tls.toml", &toml, pki.path()).unwrap_or_else(|p| panic!("{p}"));
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let (m, s) = (metrics.clone(), stop.clone());
    let pipeline = tokio::spawn(async move {
        run_pipeline(&cfg, plan_sources(&cfg), RunOptions::default(), m, s)
            .await
            .unwrap()
    });
    let m = metrics.clone();
    wait_for("a TLS session with its subscription", || {
        m.mqtt_subscribed.with_label_values(&["mqtt-tls"]).get() == 1
    })
    .await;
    let mut pb = publisher(broker.port, "pub-tls").await;
    pb.publish("icu/ICU-A/B07/mon-7/vitals", json_reading(0))
        .await;
    wait_for("the reading over TLS", || {
        m.mqtt_acks
            .with_label_values(&["mqtt-tls", "accepted"])
            .get()
            == 1
    })
    .await;
    stop.cancel();
    tokio::time::timeout(WAIT, pipeline).await.unwrap().unwrap();
    assert_eq!(
        metrics
            .observations
            .with_label_values(&["MDC", "150456", "spo2"])
            .get(),
        1
    );
}

#[test]
fn config_problems_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let toml = r#"
[[source]]
kind = "mllp"
name = "hl7"
listen = "127.0.0.1:0"

[[source]]
kind = "mqtt"
name = "bad"
host = ""
port = 0
password_env = "VIGIL_TEST_NO_SUCH_VARIABLE_SET"
reconnect_initial_ms = 5000
reconnect_max_ms = 1000
subscriptions = [
  { filter = "icu/#/x" },
  { filter = "icu/+/+", topic_map = "icu/{unit}/{room}" },
  { filter = "lab/+", topic_map = "icu/{bed}" },
  { filter = "icu/+/+/+", topic_map = "icu/{unit}/bed-{bed}/+" },
]
[source.tls]
ca = "missing-ca.pem"

[[source]]
kind = "mqtt"
name = "empty"
host = "broker"
subscriptions = []
"#;
    let problems = Config::from_str("mqtt.toml", toml, dir.path())
        .expect_err("problems")
        .to_string();
    for want in [
        "mqtt.toml:7: [[source]] \"bad\": host is empty",
        "mqtt.toml:7: [[source]] \"bad\": port 0 is not a broker port",
        "password_env without a username",
        "reconnect_max_ms 1000 is below reconnect_initial_ms 5000",
        "subscriptions[0]: filter \"icu/#/x\": level 2 \"#\": '#' must be a whole level and the last one",
        "subscriptions[1]: topic_map \"icu/{unit}/{room}\": level 3 \"{room}\": {room} is not a placeholder",
        "subscriptions[2]: topic_map \"icu/{bed}\" does not fit filter \"lab/+\"",
        "subscriptions[3]: topic_map \"icu/{unit}/bed-{bed}/+\": level 3 \"bed-{bed}\": a placeholder must be a whole level",
        "tls: ",
        "missing-ca.pem does not exist",
        "mqtt.toml:24: [[source]] \"empty\": subscriptions is empty",
    ] {
        assert!(problems.contains(want), "missing {want:?} in:\n{problems}");
    }
}

#[test]
fn the_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/mqtt.toml");
    if let Err(p) = Config::load(&path) {
        panic!("{p}");
    }
}
