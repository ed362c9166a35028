//! Wiring: config → channels → tasks → shutdown order.
//!
//! ```text
//! replay/source tasks ──IngestRecord──> scorer task ──ScoreSet──> alerter task ──> sinks
//! ```
//! Shutdown: sources stop first (end of recording, or the cancellation token); each stage then
//! drains its input and ends when its upstream has closed; sinks get a deadline to deliver.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::alerting::delivery::{DeliveryQueue, MqttPublisher, Pcd04, RetryPolicy, Webhook};
use crate::alerting::pcd04::Pcd04Settings;
use crate::alerting::sinks::{console_line, JsonlSink};
use crate::alerting::{AlertEngine, AlertService, AlertStore, Lifecycle, LifecycleSettings};
use crate::bus::kafka::TopicKind;
use crate::bus::Delivery;
use crate::bus::{
    IngestBatch, KafkaBus, MemoryBus, WhenFull, TOPIC_ALERTS, TOPIC_OBSERVATIONS, TOPIC_SCORES,
};
use crate::config::{AlertStoreKind, BusKind, Config, SinkConfig, SourceConfig, Speed};
use crate::model::{Alert, AlertState, ScoreKind, ScoreSet, Timestamp};
use crate::normalize::{NormalizeSettings, Normalizer};
use crate::scorer::Scorer;
use crate::sources::census_journal::CensusJournal;
use crate::sources::deadletter::DeadLetterStore;
use crate::sources::mllp::{MllpSource, MllpSourceConfig};
use crate::sources::mqtt::{MqttSource, MqttSourceConfig};
use crate::sources::replay::source::{run_blocking, ReplayContext, ReplayStats};
use crate::sources::serial::drivers::DriverSpec;
use crate::sources::serial::{self, DeviceContext, SerialPlan};
use crate::sources::SourceContext;
use crate::spool::{Spool, SpoolConfig};
use crate::telemetry::Metrics;

/// How long a gateway's forwarder keeps draining its spool after a stop is requested.
const SPOOL_DRAIN_GRACE: Duration = Duration::from_secs(10);

/// A recording to replay: a file or bytes built into the binary.
pub enum ReplayInput {
    File(PathBuf),
    Bytes(&'static [u8]),
}

impl ReplayInput {
    fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        match self {
            ReplayInput::File(p) => Ok(Box::new(std::fs::File::open(p)?)),
            ReplayInput::Bytes(b) => Ok(Box::new(std::io::Cursor::new(*b))),
        }
    }
}

/// One source as the pipeline runs it.
pub enum SourcePlan {
    /// A recording replayed on virtual time; ends with the recording.
    Replay {
        name: String,
        input: ReplayInput,
        speed: Speed,
    },
    /// An MLLP listener; runs until the pipeline is stopped.
    Mllp(MllpSourceConfig),
    /// A serial device; runs until the pipeline is stopped, reopening its port as needed.
    Serial(SerialPlan),
    /// An MQTT subscriber; runs until the pipeline is stopped.
    Mqtt(MqttSourceConfig),
}

impl SourcePlan {
    pub fn replay(name: &str, input: ReplayInput, speed: Speed) -> Self {
        SourcePlan::Replay {
            name: name.to_string(),
            input,
            speed,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            SourcePlan::Replay { name, .. } => name,
            SourcePlan::Mllp(c) => &c.name,
            SourcePlan::Serial(p) => &p.cfg.name,
            SourcePlan::Mqtt(c) => &c.name,
        }
    }
}

/// Extra outputs for `demo` and `replay`.
#[derive(Default)]
pub struct RunOptions {
    /// Every alert transition as JSON lines.
    pub alerts_out: Option<PathBuf>,
    /// Every score set as JSON lines.
    pub scores_out: Option<PathBuf>,
    /// Keep rejected messages in a dead-letter store in this directory.
    pub dead_letters: Option<PathBuf>,
    /// A gateway journals accepted ADT messages here and rebuilds its census from them at
    /// start (`sources::census_journal`).
    pub census_journal: Option<PathBuf>,
    /// Told each listener's name and bound address once it is listening (for port 0).
    pub listening: Option<tokio::sync::mpsc::UnboundedSender<(String, std::net::SocketAddr)>>,
    /// The alert service the alerter feeds (shared with the HTTP API). Absent: the alerter
    /// makes its own from the config ([`alert_service`]).
    pub alerts: Option<Arc<AlertService>>,
    /// Fed with every score set the alerter sees, for the dashboard.
    pub live: Option<Arc<crate::web::LiveView>>,
}

/// Per bed (and patient): what happened over the run.
#[derive(Debug, Default, Clone)]
pub struct BedSummary {
    pub unit: String,
    pub bed: String,
    pub patient: String,
    pub alerts: u32,
    pub alert_rules: Vec<String>,
    pub worst_sofa: f64,
    pub max_qsofa: f64,
    pub max_news2: f64,
    pub shock_ms: i64,
    pub first_shock: Option<Timestamp>,
    last_at: Option<Timestamp>,
    in_shock: bool,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    pub beds: Vec<BedSummary>,
    pub replay: Vec<ReplayStats>,
    pub alerts_active: u32,
    pub score_sets: u64,
    /// Alarm-burden figures of the run (episodes, pages, suppressions, time to acknowledge).
    pub burden: Option<crate::alerting::Burden>,
    pub span: Option<(Timestamp, Timestamp)>,
}

#[derive(Default)]
struct Summary {
    beds: BTreeMap<(String, String, String), BedSummary>,
    score_sets: u64,
}

impl Summary {
    fn key(unit: &Option<String>, bed: &Option<String>, patient: &str) -> (String, String, String) {
        (
            unit.clone().unwrap_or_default(),
            bed.clone().unwrap_or_else(|| "-".into()),
            patient.to_string(),
        )
    }

    fn on_scores(&mut self, set: &ScoreSet) {
        self.score_sets += 1;
        let k = Self::key(&set.unit, &set.bed, &set.patient);
        let b = self.beds.entry(k.clone()).or_insert_with(|| BedSummary {
            unit: k.0,
            bed: k.1,
            patient: k.2,
            ..Default::default()
        });
        let v = |kind| set.get(kind).map(|s| s.value).unwrap_or(0.0);
        b.worst_sofa = b.worst_sofa.max(v(ScoreKind::Sofa));
        b.max_qsofa = b.max_qsofa.max(v(ScoreKind::Qsofa));
        b.max_news2 = b.max_news2.max(v(ScoreKind::News2));
        if let (Some(prev), true) = (b.last_at, b.in_shock) {
            b.shock_ms += set.at.since(prev).max(0);
        }
        b.in_shock = v(ScoreKind::SepticShock) >= 1.0;
        if b.in_shock && b.first_shock.is_none() {
            b.first_shock = Some(set.at);
        }
        b.last_at = Some(set.at);
    }

    fn on_alert(&mut self, a: &Alert) {
        let k = Self::key(&a.unit, &a.bed, &a.patient);
        let b = self.beds.entry(k.clone()).or_insert_with(|| BedSummary {
            unit: k.0,
            bed: k.1,
            patient: k.2,
            ..Default::default()
        });
        if a.state == AlertState::Active {
            b.alerts += 1;
            if !b.alert_rules.contains(&a.rule) {
                b.alert_rules.push(a.rule.clone());
            }
        }
    }
}

enum SourceTask {
    Replay(
        tokio::task::JoinHandle<Result<ReplayStats, crate::sources::replay::source::ReplayError>>,
    ),
    Listener(tokio::task::JoinHandle<()>),
}

enum Sink {
    Console { show_transitions: bool },
    Jsonl(JsonlSink),
}

/// Per patient, the newest score set time the alerter has applied and digests of the sets
/// applied at that time: score sets arrive in order per patient, so an older or repeated one
/// is a re-publication.
#[derive(Default)]
struct ScoreSetsSeen {
    last: HashMap<String, (Timestamp, Vec<u128>, Option<i32>)>,
}

impl ScoreSetsSeen {
    fn first_time(&mut self, set: &ScoreSet, partition: Option<i32>) -> bool {
        let digest = serde_json::to_vec(set)
            .map(|b| xxhash_rust::xxh3::xxh3_128(&b))
            .unwrap_or_default();
        match self.last.get_mut(&set.patient) {
            Some((at, _, _)) if set.at < *at => false,
            Some((at, digests, _)) if set.at == *at => {
                if digests.contains(&digest) {
                    false
                } else {
                    digests.push(digest);
                    true
                }
            }
            Some(entry) => {
                *entry = (set.at, vec![digest], partition);
                true
            }
            None => {
                self.last
                    .insert(set.patient.clone(), (set.at, vec![digest], partition));
                true
            }
        }
    }

    /// Forgets the patients of a partition taken away; returns them.
    fn revoke(&mut self, partition: i32) -> Vec<String> {
        let gone: Vec<String> = self
            .last
            .iter()
            .filter(|(_, (_, _, p))| *p == Some(partition))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.last.remove(k);
        }
        gone
    }
}

/// Which stages a process runs. `vigil run` runs all three; `vigil gateway`, `vigil scorer`
/// and `vigil alerter` one each, joined by Kafka.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    pub gateway: bool,
    pub scorer: bool,
    pub alerter: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        gateway: true,
        scorer: true,
        alerter: true,
    };
    pub const GATEWAY: Roles = Roles {
        gateway: true,
        scorer: false,
        alerter: false,
    };
    pub const SCORER: Roles = Roles {
        gateway: false,
        scorer: true,
        alerter: false,
    };
    pub const ALERTER: Roles = Roles {
        gateway: false,
        scorer: false,
        alerter: true,
    };
}

/// Runs the whole pipeline until every source has ended (or `stop` fires), then drains every
/// stage. On the in-process bus by default; on Kafka with `[bus] kind = "kafka"` (then the
/// scorer and alerter run until `stop`).
pub async fn run_pipeline(
    cfg: &Config,
    sources: Vec<SourcePlan>,
    opts: RunOptions,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<RunReport> {
    run_roles(cfg, Roles::ALL, sources, opts, metrics, stop).await
}

/// Runs the stages `roles` names. A process that runs only some of them always uses Kafka
/// between them. The gateway returns when its sources end (every record acknowledged by the
/// broker); the scorer and alerter consume until `stop`.
pub async fn run_roles(
    cfg: &Config,
    roles: Roles,
    sources: Vec<SourcePlan>,
    opts: RunOptions,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<RunReport> {
    let sources = if roles.gateway { sources } else { Vec::new() };
    // Ports first: a port that cannot be bound stops the run before anything else starts.
    let mut listeners = Vec::new();
    let mut subscribers = Vec::new();
    for plan in &sources {
        if let SourcePlan::Mllp(c) = plan {
            let l = MllpSource::bind(c.clone()).await?;
            if let (Some(tx), Some(addr)) = (&opts.listening, l.local_addr()) {
                let _ = tx.send((c.name.clone(), addr));
            }
            listeners.push(l);
        }
        if let SourcePlan::Mqtt(c) = plan {
            subscribers.push(MqttSource::new(c.clone())?);
        }
    }

    let kafka = if cfg.bus.kind == BusKind::Kafka || roles != Roles::ALL {
        let k = KafkaBus::connect(&cfg.kafka, metrics.clone())
            .await
            .with_context(|| format!("kafka at {}", cfg.kafka.brokers))?;
        tracing::info!(brokers = %cfg.kafka.brokers, "kafka transport");
        Some(k)
    } else {
        None
    };
    // Store-and-forward: a gateway on Kafka acknowledges its senders once a record is in its
    // spool on disk; a forwarder drains the spool to the broker.
    let spool = match (&kafka, roles.gateway && cfg.storage.spool) {
        (Some(_), true) => {
            let mut sc = SpoolConfig::new(cfg.storage.spool_dir());
            sc.max_bytes = cfg.storage.spool_max_bytes;
            let sp = Spool::open(sc)
                .await
                .with_context(|| format!("spool in {}", cfg.storage.spool_dir().display()))?;
            let st = sp.stats(Timestamp::now_wall());
            tracing::info!(dir = %cfg.storage.spool_dir().display(), records = st.records,
                bytes = st.bytes, torn_tails = st.torn_tails, "spool open");
            Some(Arc::new(sp))
        }
        _ => None,
    };
    let mut forwarder = None;
    let gateway_out = match (&kafka, &spool) {
        (Some(k), Some(sp)) => {
            let (p, f) =
                k.spooled_publisher(TOPIC_OBSERVATIONS, TopicKind::Observations, sp.clone());
            forwarder = Some(f);
            Some(p)
        }
        (Some(k), None) if roles.gateway => {
            Some(k.publisher(TOPIC_OBSERVATIONS, TopicKind::Observations))
        }
        _ => None,
    };
    let (obs_tx, obs_rx, scores_tx, scores_rx, alerts_tx) = match &kafka {
        None => {
            let bus = MemoryBus::new(metrics.clone());
            let cap = cfg.bus.capacity;
            let (otx, orx) = bus.topic::<IngestBatch>(TOPIC_OBSERVATIONS, cap, WhenFull::Block);
            let (stx, srx) = bus.topic::<ScoreSet>(TOPIC_SCORES, cap, WhenFull::Block);
            (Some(otx), Some(orx), Some(stx), Some(srx), None)
        }
        Some(k) => {
            let kc = k.config();
            (
                gateway_out,
                match roles.scorer {
                    true => Some(k.subscriber(
                        TOPIC_OBSERVATIONS,
                        TopicKind::Observations,
                        &kc.scorer_group,
                        stop.clone(),
                    )?),
                    false => None,
                },
                roles
                    .scorer
                    .then(|| k.publisher(TOPIC_SCORES, TopicKind::Scores)),
                match roles.alerter {
                    true => Some(k.subscriber(
                        TOPIC_SCORES,
                        TopicKind::Scores,
                        &kc.alerter_group,
                        stop.clone(),
                    )?),
                    false => None,
                },
                roles
                    .alerter
                    .then(|| k.publisher::<Alert>(TOPIC_ALERTS, TopicKind::Alerts)),
            )
        }
    };

    let normalizer = Arc::new(Mutex::new(Normalizer::new(
        cfg.normalize_tables.clone(),
        NormalizeSettings {
            site: cfg.site.name.clone(),
            default_offset_min: cfg.site.timezone_offset_minutes,
            ..NormalizeSettings::default()
        },
    )));

    // Sinks are opened before any source starts, so a bad path fails the run up front. Only
    // the process that raises alerts opens them.
    let mut sinks = Vec::new();
    let sink_configs: &[SinkConfig] = if roles.alerter {
        &cfg.alerting.sink
    } else {
        &[]
    };
    for s in sink_configs {
        sinks.push(match s {
            SinkConfig::Console { show_transitions } => Sink::Console {
                show_transitions: *show_transitions,
            },
            SinkConfig::Jsonl { path } => Sink::Jsonl(JsonlSink::append(path)?),
            // Episode sinks are the alert service's (see `alert_service`).
            SinkConfig::Webhook { .. } | SinkConfig::Pcd04 { .. } | SinkConfig::Mqtt { .. } => {
                continue
            }
        });
    }
    if let Some(p) = &opts.alerts_out {
        sinks.push(Sink::Jsonl(JsonlSink::create(p).context("--alerts")?));
    }
    let mut scores_file = match &opts.scores_out {
        Some(p) => Some(JsonlSink::create(p).context("--scores")?),
        None => None,
    };

    let dead_letters = match &opts.dead_letters {
        Some(dir) => Some(Arc::new(Mutex::new(
            DeadLetterStore::open(dir, cfg.storage.deadletter_max_bytes)
                .context("dead-letter store")?,
        ))),
        None => None,
    };

    // The forwarder runs until the spool is closed and empty; once a stop is requested it
    // gets a grace period, then what is left stays in the spool for the next start.
    let forwarder_task = forwarder.map(|f| {
        let give_up = CancellationToken::new();
        let (g, s) = (give_up.clone(), stop.clone());
        tokio::spawn(async move {
            s.cancelled().await;
            tokio::time::sleep(SPOOL_DRAIN_GRACE).await;
            g.cancel();
        });
        tokio::spawn(f.run(give_up))
    });

    // The census as the journaled ADT messages left it, before any source starts.
    let census_journal = match (&opts.census_journal, roles.gateway) {
        (Some(path), true) => {
            let (journal, entries) = CensusJournal::open(path)?;
            let mut rebuilt = 0usize;
            let mut n = normalizer.lock().unwrap_or_else(|p| p.into_inner());
            for e in &entries {
                match crate::protocol::hl7::parse(&e.hl7) {
                    Ok(msg) => {
                        if n.message(&e.source, &msg, e.receive_time).is_ok() {
                            rebuilt += 1;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "census journal: an entry no longer parses; skipped")
                    }
                }
            }
            drop(n);
            if !entries.is_empty() {
                tracing::info!(
                    path = %path.display(),
                    messages = rebuilt,
                    "census rebuilt from the journal"
                );
            }
            Some(Arc::new(journal))
        }
        _ => None,
    };

    let summary = Arc::new(Mutex::new(Summary::default()));

    // Scorer stage.
    // NEWS2 SpO2 scale 2 beds: the site's list joins the scoring table's.
    let mut tables = cfg.scoring_tables.clone();
    for bed in &cfg.site.hypercapnic_beds {
        if !tables.news2.hypercapnic_beds.contains(bed) {
            tables.news2.hypercapnic_beds.push(bed.clone());
        }
    }
    let scorer = Scorer::new(tables);
    let scorer_metrics = metrics.clone();
    let scorer_summary = summary.clone();
    let scorer_task = match (obs_rx, scores_tx) {
        (Some(obs_rx), Some(scores_tx)) => Some(tokio::spawn(async move {
            crate::scorer::task::run(scorer, obs_rx, scores_tx, scorer_metrics, move |set| {
                if let Ok(mut s) = scorer_summary.lock() {
                    s.on_scores(set);
                }
                if let Some(f) = scores_file.as_mut() {
                    if let Err(e) = f.write(set) {
                        tracing::error!(error = %e, "cannot write scores file");
                    }
                }
            })
            .await
        })),
        _ => None,
    };

    // Alerter stage.
    let mut engine = AlertEngine::new(&cfg.alert_rules);
    let service = match (roles.alerter, opts.alerts.clone()) {
        (false, _) => None,
        (true, Some(s)) => Some(s),
        // No service handed in (library callers, tests): episodes kept in memory, so a run
        // never picks up another run's open episodes from a shared file.
        (true, None) => Some(alert_service(cfg, &metrics, true).await?),
    };
    let alert_service_handle = service.clone();
    let alert_metrics = metrics.clone();
    let alert_summary = summary.clone();
    let live_view = opts.live.clone();
    let alerter_task = scores_rx.map(|mut scores_rx| {
        tokio::spawn(async move {
            let mut active = 0u32;
            let mut seen = ScoreSetsSeen::default();
            while let Some(delivery) = scores_rx.next_delivery().await {
                let (set, live, partition) = match delivery {
                    Delivery::Live(s, p) => (s, true, p),
                    Delivery::Restore(s, p) => (s, false, Some(p)),
                    Delivery::Revoked { partition } => {
                        for patient in seen.revoke(partition) {
                            engine.forget(&patient);
                            if let Some(svc) = &service {
                                svc.forget(&patient).await;
                            }
                        }
                        continue;
                    }
                };
                // A score set seen before (a scorer re-publishing after a restart) changes
                // nothing and pages no one.
                if !seen.first_time(&set, partition) {
                    alert_metrics
                        .messages_rejected
                        .with_label_values(&["alerter", "duplicate_score_set"])
                        .inc();
                    continue;
                }
                if live {
                    alert_metrics.reading_latency("alerter", set.at);
                }
                // Restored history too: the dashboard's trends start where the owner's left.
                if let Some(view) = &live_view {
                    view.on_scores(&set);
                }
                let started = std::time::Instant::now();
                let alerts = engine.on_scores(&set);
                alert_metrics.stage_time("alert", started.elapsed());
                // Rebuilding the engine's state from history: what it raised was delivered
                // by the previous owner.
                let alerts = if live { alerts } else { Vec::new() };
                if let (Some(svc), true) = (&service, live) {
                    if let Err(e) = svc.on_evaluation(&set, &alerts).await {
                        tracing::error!(error = %e, "alert store: a change could not be stored");
                    }
                }
                for a in alerts {
                    alert_metrics
                        .alerts
                        .with_label_values(&[&a.rule, a.severity.as_str(), a.state.as_str()])
                        .inc();
                    if a.state == AlertState::Active {
                        active += 1;
                    }
                    if let Ok(mut s) = alert_summary.lock() {
                        s.on_alert(&a);
                    }
                    if let Some(tx) = &alerts_tx {
                        // Keyed by alert id: the topic compacts to each alert's latest state.
                        let _ = tx.publish(&a.id, a.clone()).await;
                    }
                    for sink in &mut sinks {
                        match sink {
                            Sink::Console { show_transitions } => {
                                if a.state == AlertState::Active || *show_transitions {
                                    println!("{}", console_line(&a));
                                }
                            }
                            Sink::Jsonl(f) => {
                                if let Err(e) = f.write(&a) {
                                    tracing::error!(error = %e, "cannot write alert file");
                                }
                            }
                        }
                    }
                }
            }
            // Upstream closed: give the delivery sinks a deadline for what is queued.
            if let Some(svc) = &service {
                svc.close_sinks(Duration::from_secs(30)).await;
            }
            active
        })
    });

    // Sources.
    metrics.ready.set(1);
    let mut source_tasks = Vec::new();
    if let Some(obs_tx) = obs_tx {
        for plan in sources {
            let (name, input, speed) = match plan {
                SourcePlan::Replay { name, input, speed } => (name, input, speed),
                SourcePlan::Mllp(_) | SourcePlan::Mqtt(_) => continue,
                SourcePlan::Serial(p) => {
                    let ctx = DeviceContext {
                        normalizer: normalizer.clone(),
                        out: obs_tx.clone(),
                        metrics: metrics.clone(),
                        stop: stop.clone(),
                    };
                    let name = p.cfg.name.clone();
                    source_tasks.push((
                        name,
                        SourceTask::Listener(tokio::spawn(serial::run(p, ctx))),
                    ));
                    continue;
                }
            };
            let input = input
                .open()
                .with_context(|| format!("source {name}: cannot open the recording"))?;
            let ctx = ReplayContext {
                normalizer: normalizer.clone(),
                out: obs_tx.clone(),
                metrics: metrics.clone(),
                stop: stop.clone(),
                rt: tokio::runtime::Handle::current(),
                dead_letters: dead_letters.clone(),
                profiles: cfg.device_profiles.clone(),
            };
            let task_name = name.clone();
            let task =
                tokio::task::spawn_blocking(move || run_blocking(&task_name, input, speed, ctx));
            source_tasks.push((name, SourceTask::Replay(task)));
        }
        let ctx = SourceContext {
            normalizer: normalizer.clone(),
            out: obs_tx.clone(),
            metrics: metrics.clone(),
            dead_letters: dead_letters.clone(),
            census_journal: census_journal.clone(),
            stop: stop.clone(),
        };
        for listener in listeners {
            let name = listener.name().to_string();
            let run = listener.run(ctx.clone());
            source_tasks.push((name, SourceTask::Listener(tokio::spawn(run))));
        }
        for subscriber in subscribers {
            let ctx = ctx.clone();
            let name = subscriber.name().to_string();
            source_tasks.push((
                name,
                SourceTask::Listener(tokio::spawn(subscriber.run(ctx))),
            ));
        }
        drop(obs_tx);
    }

    let mut report = RunReport::default();
    for (name, t) in source_tasks {
        let t = match t {
            SourceTask::Replay(t) => t,
            SourceTask::Listener(h) => {
                if let Err(e) = h.await {
                    return Err(anyhow::anyhow!("source {name} crashed: {e}"));
                }
                continue;
            }
        };
        match t.await {
            Ok(Ok(stats)) => {
                tracing::info!(source = %name, entries = stats.entries, records = stats.records,
                    rejected = stats.rejected, "source finished");
                report.replay.push(stats);
            }
            Ok(Err(e)) => {
                metrics.ready.set(0);
                return Err(anyhow::anyhow!("source {name}: {e}"));
            }
            Err(e) => return Err(anyhow::anyhow!("source {name} crashed: {e}")),
        }
    }
    if let (Some(sp), Some(task)) = (&spool, forwarder_task) {
        // Sources are done: nothing more is appended. The forwarder sends what is left.
        if let Err(e) = sp.close().await {
            tracing::error!(error = %e, "spool close");
        }
        let r = task.await.context("spool forwarder")?;
        tracing::info!(
            forwarded = r.forwarded,
            drained = r.drained,
            "spool forwarder stopped"
        );
    }
    if let Some(k) = &kafka {
        if roles.gateway {
            k.flush(Duration::from_secs(30))
                .context("kafka: records still unacknowledged at shutdown")?;
        }
    }
    if let Some(t) = scorer_task {
        let scorer = t.await.context("scorer task")?;
        tracing::info!(patients = scorer.patients(), "scorer drained");
    }
    if let Some(t) = alerter_task {
        report.alerts_active = t.await.context("alerter task")?;
    }
    report.burden = alert_service_handle.map(|s| s.burden());
    metrics.ready.set(0);
    tracing::info!("pipeline drained");

    let s = summary
        .lock()
        .map_err(|_| anyhow::anyhow!("summary lock poisoned"))?;
    report.score_sets = s.score_sets;
    report.beds = s.beds.values().cloned().collect();
    let first = report.replay.iter().filter_map(|r| r.first).min();
    let last = report.replay.iter().filter_map(|r| r.last).max();
    report.span = first.zip(last);
    Ok(report)
}

/// The alert service of a config: its store (`memory` forces an in-memory one, for demo and
/// replay runs), the lifecycle timers, and its delivery sinks (PCD-04, webhook, MQTT), started.
pub async fn alert_service(
    cfg: &Config,
    metrics: &Arc<Metrics>,
    memory: bool,
) -> anyhow::Result<Arc<AlertService>> {
    let a = &cfg.alerting;
    let store = match (memory, a.store.kind) {
        (true, _) | (false, AlertStoreKind::Memory) => {
            AlertStore::sqlite(std::path::Path::new(":memory:"))?
        }
        (false, AlertStoreKind::Sqlite) => {
            let path = match &a.store.path {
                Some(p) => p.clone(),
                None => {
                    std::fs::create_dir_all(&cfg.storage.dir)
                        .with_context(|| format!("alert store: {}", cfg.storage.dir.display()))?;
                    cfg.storage.dir.join("alerts.sqlite")
                }
            };
            AlertStore::sqlite(&path)?
        }
        (false, AlertStoreKind::Postgres) => {
            let url = a.store.url.clone().unwrap_or_default();
            let password =
                match &a.store.password_env {
                    Some(var) => Some(std::env::var(var).with_context(|| {
                        format!("[alerting.store] password_env: {var} is not set")
                    })?),
                    None => None,
                };
            AlertStore::postgres(&url, password)
                .await
                .context("[alerting.store] postgres")?
        }
    };
    let lifecycle = Lifecycle::new(
        &cfg.alert_rules,
        LifecycleSettings {
            escalate_after_ms: i64::from(a.escalate_after_minutes) * 60_000,
            renotify_ms: i64::from(a.renotify_minutes) * 60_000,
        },
    );
    let svc = AlertService::open(lifecycle, store, metrics).await?;
    let dm = svc.delivery_metrics();
    let health = svc.sink_health();
    for s in &a.sink {
        let policy = |initial: u64, max: u64| RetryPolicy {
            initial_backoff: Duration::from_millis(initial.max(1)),
            max_backoff: Duration::from_millis(max.max(initial).max(1)),
            degraded_after: 3,
        };
        let q = match s {
            SinkConfig::Webhook {
                name,
                url,
                timeout_ms,
                max_attempts,
                initial_backoff_ms,
                max_backoff_ms,
                secret_env,
            } => {
                let secret = match secret_env {
                    Some(var) => Some(
                        std::env::var(var)
                            .with_context(|| format!("webhook secret_env: {var} is not set"))?
                            .into_bytes(),
                    ),
                    None => None,
                };
                let hook = Webhook::new(url, Duration::from_millis(*timeout_ms), secret)
                    .map_err(anyhow::Error::msg)?;
                let mut p = policy(*initial_backoff_ms, *max_backoff_ms);
                p.degraded_after = (*max_attempts).max(1);
                DeliveryQueue::start(
                    name.as_deref().unwrap_or("webhook"),
                    hook,
                    p,
                    1024,
                    dm.clone(),
                    health.clone(),
                )
            }
            SinkConfig::Pcd04 {
                name,
                address,
                facility,
                receiving_application,
                initial_backoff_ms,
                max_backoff_ms,
            } => {
                let addr: std::net::SocketAddr = address
                    .parse()
                    .with_context(|| format!("pcd04 address {address:?}"))?;
                let settings = Pcd04Settings {
                    facility: facility.clone(),
                    receiving_application: receiving_application.clone(),
                    ..Pcd04Settings::default()
                };
                DeliveryQueue::start(
                    name.as_deref().unwrap_or("pcd04"),
                    Pcd04::new(addr, settings),
                    policy(*initial_backoff_ms, *max_backoff_ms),
                    1024,
                    dm.clone(),
                    health.clone(),
                )
            }
            SinkConfig::Mqtt {
                name,
                host,
                port,
                topic_prefix,
                initial_backoff_ms,
                max_backoff_ms,
            } => {
                let n = name.as_deref().unwrap_or("mqtt");
                DeliveryQueue::start(
                    n,
                    MqttPublisher::new(n, host, *port, topic_prefix, Duration::from_secs(10)),
                    policy(*initial_backoff_ms, *max_backoff_ms),
                    1024,
                    dm.clone(),
                    health.clone(),
                )
            }
            SinkConfig::Console { .. } | SinkConfig::Jsonl { .. } => continue,
        };
        svc.add_sink(q);
    }
    Ok(Arc::new(svc))
}

/// The configuration `vigil demo` runs with: the built-in tables, plus the demo recording's
/// site facts (bed 2's COPD patient is scored on NEWS2 SpO2 scale 2).
pub fn demo_config() -> Result<Config, crate::config::Problems> {
    let mut cfg = Config::embedded()?;
    cfg.site.name = Some("Demo ICU".into());
    cfg.site.hypercapnic_beds.push("BED02".into());
    Ok(cfg)
}

/// The plan for a config's sources.
pub fn plan_sources(cfg: &Config) -> Vec<SourcePlan> {
    cfg.sources
        .iter()
        .filter_map(|s| match s {
            SourceConfig::Replay { name, path, speed } => Some(SourcePlan::Replay {
                name: name.clone(),
                input: ReplayInput::File(path.clone()),
                speed: *speed,
            }),
            SourceConfig::Mllp(c) => Some(SourcePlan::Mllp(c.clone())),
            SourceConfig::Serial(c) => match DriverSpec::parse(&c.driver, &cfg.device_profiles) {
                Ok(spec) => Some(SourcePlan::Serial(SerialPlan {
                    line: spec.line_defaults().overridden_by(c),
                    protocol: spec.name(),
                    factory: spec.factory(),
                    cfg: c.clone(),
                })),
                // `Config::load` reports this before anything runs; only a config built by
                // hand can get here.
                Err(e) => {
                    tracing::error!(source = %c.name, error = %e, "serial source skipped");
                    None
                }
            },
            SourceConfig::Mqtt(c) => Some(SourcePlan::Mqtt(c.clone())),
        })
        .collect()
}

/// The end-of-run table a person reads.
pub fn summary_table(report: &RunReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "unit     bed      patient    alerts   SOFA  qSOFA  NEWS2  in shock  rules"
    );
    for b in &report.beds {
        let shock = if b.shock_ms > 0 {
            format!(
                "{}h{:02}",
                b.shock_ms / 3_600_000,
                (b.shock_ms / 60_000) % 60
            )
        } else {
            "-".into()
        };
        let _ = writeln!(
            s,
            "{:<8} {:<8} {:<10} {:>6} {:>6} {:>6} {:>6} {:>9}  {}",
            b.unit,
            b.bed,
            b.patient,
            b.alerts,
            b.worst_sofa,
            b.max_qsofa,
            b.max_news2,
            shock,
            b.alert_rules.join(",")
        );
    }
    s
}
