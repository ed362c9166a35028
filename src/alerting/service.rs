//! The alert service: the lifecycle, its store, its subscribers and its delivery sinks behind
//! one handle shared by the alerter stage and the HTTP API.
//!
//! Every change goes the same way: applied to the lifecycle, written to the store (with the
//! audit entry for a person's action), then broadcast to subscribers (the dashboard's event
//! stream) and queued to each delivery sink. The lifecycle is locked across the store write,
//! so the store sees changes in the order they happened.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};
use serde::Serialize;
use tokio::sync::broadcast;

use super::delivery::{DeliveryMetrics, DeliveryQueue, SinkHealth};
use super::lifecycle::{Action, AlertView, Lifecycle, Transition, TransitionError};
use super::store::{AlertFilter, AlertStore, AuditEntry, HistoryEntry, StoreError};
use crate::model::{Alert, AlertState, ScoreSet, Timestamp};
use crate::telemetry::Metrics;
use crate::web::auth::Principal;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no alert {0}")]
    NotFound(String),
    #[error(transparent)]
    Conflict(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Alarm-burden figures.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Burden {
    /// Patients' observed time, summed, in days.
    pub patient_days: f64,
    pub patients: usize,
    /// Episodes opened (each paged once when raised).
    pub episodes: u64,
    pub episodes_per_patient_day: f64,
    /// Rule alerts the rule engine raised (before folding into episodes).
    pub rule_alerts: u64,
    pub rule_alerts_per_patient_day: f64,
    /// Episodes by the rule that opened them.
    pub episodes_by_rule: BTreeMap<String, u64>,
    /// Pages sent: raises, severity rises, escalations, re-notifications.
    pub notifications: u64,
    /// Rule alerts that did not page: joined an open episode, or re-opened one quietly.
    pub suppressed: BTreeMap<String, u64>,
    pub escalations: u64,
    pub acknowledged: u64,
    /// Time from a page to its acknowledgement, seconds (median, 90th centile, worst).
    pub time_to_ack_s: Option<TimeToAck>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TimeToAck {
    pub median: f64,
    pub p90: f64,
    pub max: f64,
}

#[derive(Default)]
struct BurdenState {
    spans: HashMap<String, (Timestamp, Timestamp)>,
    rule_alerts: u64,
    episodes_by_rule: BTreeMap<String, u64>,
    notifications: u64,
    suppressed: BTreeMap<String, u64>,
    escalations: u64,
    ack_secs: Vec<f64>,
    /// When each open episode last paged (for time to acknowledge).
    paged_at: HashMap<String, Timestamp>,
}

struct BurdenMetrics {
    episodes: IntCounterVec,
    suppressed: IntCounterVec,
    notifications: IntCounterVec,
    time_to_ack: Histogram,
    open: IntGauge,
}

impl BurdenMetrics {
    fn new(metrics: &Metrics) -> Option<Self> {
        let episodes = IntCounterVec::new(
            Opts::new(
                "vigil_alert_episodes_total",
                "Alert episodes opened, by the rule that opened them.",
            ),
            &["rule"],
        )
        .ok()?;
        let suppressed = IntCounterVec::new(
            Opts::new(
                "vigil_alert_suppressed_total",
                "Rule alerts that did not page: merged into an open episode, or re-opened quietly.",
            ),
            &["reason"],
        )
        .ok()?;
        let notifications = IntCounterVec::new(
            Opts::new(
                "vigil_alert_notifications_total",
                "Pages by kind of transition (raised, severity_raised, escalated, renotified).",
            ),
            &["transition"],
        )
        .ok()?;
        let time_to_ack = Histogram::with_opts(
            HistogramOpts::new(
                "vigil_alert_time_to_acknowledge_seconds",
                "From a page to its acknowledgement (alert time: virtual in replays).",
            )
            .buckets(vec![30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0]),
        )
        .ok()?;
        let open =
            IntGauge::new("vigil_alert_episodes_open", "Alert episodes not resolved.").ok()?;
        metrics.register(Box::new(episodes.clone()));
        metrics.register(Box::new(suppressed.clone()));
        metrics.register(Box::new(notifications.clone()));
        metrics.register(Box::new(time_to_ack.clone()));
        metrics.register(Box::new(open.clone()));
        Some(BurdenMetrics {
            episodes,
            suppressed,
            notifications,
            time_to_ack,
            open,
        })
    }
}

/// The alert time a person's action happens at: the newest evaluation time seen, advanced by
/// the wall time since (so in a live daemon it is the wall clock; in a replay it follows the
/// recording).
struct Clock {
    last: Option<(Timestamp, Instant)>,
}

impl Clock {
    fn now(&self) -> Timestamp {
        match self.last {
            Some((t, at)) => t.plus_ms(i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX)),
            None => Timestamp::now_wall(),
        }
    }
}

struct Inner {
    lifecycle: Lifecycle,
    store: AlertStore,
    clock: Clock,
}

pub struct AlertService {
    inner: tokio::sync::Mutex<Inner>,
    events: broadcast::Sender<AlertView>,
    sinks: Mutex<Vec<Arc<DeliveryQueue>>>,
    delivery_metrics: DeliveryMetrics,
    health: Arc<SinkHealth>,
    burden: Mutex<BurdenState>,
    metrics: Option<BurdenMetrics>,
}

impl AlertService {
    /// A service over `store`, with the store's open episodes restored into `lifecycle`.
    pub async fn open(
        mut lifecycle: Lifecycle,
        store: AlertStore,
        metrics: &Metrics,
    ) -> Result<Self, StoreError> {
        let open = store.open_alerts().await?;
        if !open.is_empty() {
            tracing::info!(
                open = open.len(),
                store = store.kind(),
                "open alerts restored"
            );
        }
        let bm = BurdenMetrics::new(metrics);
        if let Some(m) = &bm {
            m.open.set(i64::try_from(open.len()).unwrap_or(i64::MAX));
        }
        lifecycle.restore(open);
        let (events, _) = broadcast::channel(1024);
        Ok(AlertService {
            inner: tokio::sync::Mutex::new(Inner {
                lifecycle,
                store,
                clock: Clock { last: None },
            }),
            events,
            sinks: Mutex::new(Vec::new()),
            delivery_metrics: DeliveryMetrics::new(metrics),
            health: Arc::new(SinkHealth::default()),
            burden: Mutex::new(BurdenState::default()),
            metrics: bm,
        })
    }

    /// Every transition, after it is stored. A slow subscriber misses the oldest (it is told
    /// how many with `RecvError::Lagged`) and should re-read `GET /api/alerts`.
    pub fn subscribe(&self) -> broadcast::Receiver<AlertView> {
        self.events.subscribe()
    }

    /// The metrics and health every delivery sink shares.
    pub fn delivery_metrics(&self) -> DeliveryMetrics {
        self.delivery_metrics.clone()
    }

    pub fn sink_health(&self) -> Arc<SinkHealth> {
        self.health.clone()
    }

    /// Adds a delivery sink: it gets every delivered transition from now on.
    pub fn add_sink(&self, q: DeliveryQueue) {
        self.sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(q));
    }

    /// Closes every sink, giving each `deadline` to deliver what is queued.
    pub async fn close_sinks(&self, deadline: Duration) {
        let sinks: Vec<Arc<DeliveryQueue>> =
            std::mem::take(&mut *self.sinks.lock().unwrap_or_else(|p| p.into_inner()));
        for s in sinks {
            match Arc::try_unwrap(s) {
                Ok(q) => q.close(deadline).await,
                Err(_) => tracing::warn!("an alert sink is still in use at shutdown"),
            }
        }
    }

    /// One evaluation: the timers run at the score set's time, then the rule engine's
    /// transitions for it are folded into episodes.
    pub async fn on_evaluation(
        &self,
        set: &ScoreSet,
        rule_alerts: &[Alert],
    ) -> Result<Vec<AlertView>, StoreError> {
        {
            let mut b = self.burden.lock().unwrap_or_else(|p| p.into_inner());
            let span = b
                .spans
                .entry(set.patient.clone())
                .or_insert((set.at, set.at));
            span.0 = span.0.min(set.at);
            span.1 = span.1.max(set.at);
            b.rule_alerts += rule_alerts
                .iter()
                .filter(|a| a.state == AlertState::Active)
                .count() as u64;
        }
        let mut inner = self.inner.lock().await;
        let newest = inner.clock.last.map_or(set.at, |(t, _)| t.max(set.at));
        inner.clock.last = Some((newest, Instant::now()));
        let mut views = inner.lifecycle.tick(set.at);
        views.extend(inner.lifecycle.on_rule_alerts(rule_alerts));
        for v in &views {
            let audit = (v.transition == Transition::Escalated).then(|| AuditEntry {
                at: v.updated_at,
                user: "system".into(),
                role: "system".into(),
                action: "escalate".into(),
                alert_id: v.id.clone(),
                from: AlertState::Active.as_str().into(),
                to: v.state.as_str().into(),
                note: Some("not acknowledged in time".into()),
                peer: None,
            });
            inner.store.record(v, audit.as_ref()).await?;
        }
        let open = inner.lifecycle.open().count();
        drop(inner);
        if let Some(m) = &self.metrics {
            m.open.set(i64::try_from(open).unwrap_or(i64::MAX));
        }
        for v in &views {
            self.account(v);
            self.publish(v.clone()).await;
        }
        Ok(views)
    }

    /// Runs the timers at `now` without an evaluation (a daemon with quiet beds).
    pub async fn tick(&self, now: Timestamp) -> Result<Vec<AlertView>, StoreError> {
        let mut inner = self.inner.lock().await;
        let views = inner.lifecycle.tick(now);
        for v in &views {
            inner.store.record(v, None).await?;
        }
        drop(inner);
        for v in &views {
            self.account(v);
            self.publish(v.clone()).await;
        }
        Ok(views)
    }

    /// Forgets a patient's open episode in memory (the partition moved to another alerter);
    /// the store keeps it.
    pub async fn forget(&self, patient: &str) {
        self.inner.lock().await.lifecycle.forget(patient);
    }

    /// A person acknowledges, escalates or resolves an episode.
    pub async fn act(
        &self,
        id: &str,
        action: Action,
        who: &Principal,
        peer: Option<SocketAddr>,
        note: Option<String>,
    ) -> Result<AlertView, ServiceError> {
        let mut inner = self.inner.lock().await;
        let now = inner.clock.now();
        let from = match inner.lifecycle.get(id) {
            Some(v) => v.state,
            None => {
                return match inner.store.get(id).await? {
                    Some((v, _)) => Err(ServiceError::Conflict(TransitionError::Invalid {
                        id: id.to_string(),
                        from: v.state.as_str(),
                        action: match action {
                            Action::Acknowledge => "acknowledged",
                            Action::Escalate => "escalated",
                            Action::Resolve => "resolved",
                        },
                    })),
                    None => Err(ServiceError::NotFound(id.to_string())),
                }
            }
        };
        let v = inner.lifecycle.act(id, action, &who.user, now)?;
        let audit = AuditEntry {
            at: now,
            user: who.user.clone(),
            role: who.role.as_str().into(),
            action: action.as_str().into(),
            alert_id: id.to_string(),
            from: from.as_str().into(),
            to: v.state.as_str().into(),
            note: note.filter(|n| !n.trim().is_empty()),
            peer: peer.map(|p| p.to_string()),
        };
        inner.store.record(&v, Some(&audit)).await?;
        let open = inner.lifecycle.open().count();
        drop(inner);
        if let Some(m) = &self.metrics {
            m.open.set(i64::try_from(open).unwrap_or(i64::MAX));
        }
        tracing::info!(alert = %id, user = %who.user, action = action.as_str(),
            from = from.as_str(), to = v.state.as_str(), "alert changed by a person");
        self.account(&v);
        self.publish(v.clone()).await;
        Ok(v)
    }

    pub async fn list(&self, f: &AlertFilter) -> Result<Vec<AlertView>, StoreError> {
        self.inner.lock().await.store.list(f).await
    }

    pub async fn get(
        &self,
        id: &str,
    ) -> Result<Option<(AlertView, Vec<HistoryEntry>)>, StoreError> {
        self.inner.lock().await.store.get(id).await
    }

    pub async fn audit(
        &self,
        alert: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.lock().await.store.audit(alert, limit).await
    }

    async fn publish(&self, v: AlertView) {
        let _ = self.events.send(v.clone());
        if !v.transition.delivered() {
            return;
        }
        let sinks: Vec<Arc<DeliveryQueue>> =
            self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for s in sinks {
            s.send(v.clone(), &self.delivery_metrics).await;
        }
    }

    fn account(&self, v: &AlertView) {
        let mut b = self.burden.lock().unwrap_or_else(|p| p.into_inner());
        let m = self.metrics.as_ref();
        match v.transition {
            Transition::Raised => {
                *b.episodes_by_rule.entry(v.rule.clone()).or_default() += 1;
                if let Some(m) = m {
                    m.episodes.with_label_values(&[&v.rule]).inc();
                }
            }
            Transition::Merged | Transition::Reopened => {
                let reason = v.transition.as_str();
                *b.suppressed.entry(reason.to_string()).or_default() += 1;
                if let Some(m) = m {
                    m.suppressed.with_label_values(&[reason]).inc();
                }
            }
            Transition::Escalated => b.escalations += 1,
            Transition::Acknowledged => {
                if let Some(paged) = b.paged_at.get(&v.id).copied() {
                    let s = v.updated_at.since(paged).max(0) as f64 / 1000.0;
                    b.ack_secs.push(s);
                    if let Some(m) = m {
                        m.time_to_ack.observe(s);
                    }
                }
            }
            Transition::Resolved => {
                b.paged_at.remove(&v.id);
            }
            _ => {}
        }
        if matches!(
            v.transition,
            Transition::Raised
                | Transition::SeverityRaised
                | Transition::Escalated
                | Transition::Renotified
        ) {
            b.notifications += 1;
            // Time to acknowledge counts from the first page not yet acknowledged.
            b.paged_at.entry(v.id.clone()).or_insert(v.updated_at);
            if let Some(m) = m {
                m.notifications
                    .with_label_values(&[v.transition.as_str()])
                    .inc();
            }
        }
        if v.transition == Transition::Acknowledged {
            b.paged_at.remove(&v.id);
        }
    }

    /// The alarm-burden figures so far.
    pub fn burden(&self) -> Burden {
        let b = self.burden.lock().unwrap_or_else(|p| p.into_inner());
        let patient_days: f64 = b
            .spans
            .values()
            .map(|(a, z)| z.since(*a).max(0) as f64 / 86_400_000.0)
            .sum();
        let episodes: u64 = b.episodes_by_rule.values().sum();
        let per_day = |n: u64| {
            if patient_days > 0.0 {
                (n as f64 / patient_days * 100.0).round() / 100.0
            } else {
                0.0
            }
        };
        let time_to_ack_s = (!b.ack_secs.is_empty()).then(|| {
            let mut v = b.ack_secs.clone();
            v.sort_by(f64::total_cmp);
            let at = |q: f64| {
                let i = ((v.len() - 1) as f64 * q).round() as usize;
                v.get(i).copied().unwrap_or(0.0)
            };
            TimeToAck {
                median: at(0.5),
                p90: at(0.9),
                max: v.last().copied().unwrap_or(0.0),
            }
        });
        Burden {
            patient_days: (patient_days * 100.0).round() / 100.0,
            patients: b.spans.len(),
            episodes,
            episodes_per_patient_day: per_day(episodes),
            rule_alerts: b.rule_alerts,
            rule_alerts_per_patient_day: per_day(b.rule_alerts),
            episodes_by_rule: b.episodes_by_rule.clone(),
            notifications: b.notifications,
            suppressed: b.suppressed.clone(),
            escalations: b.escalations,
            acknowledged: b.ack_secs.len() as u64,
            time_to_ack_s,
        }
    }
}

impl Burden {
    /// Lines for the end-of-run summary.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "alarm burden: {} episode(s) over {:.2} patient-days ({:.2}/patient-day) from {} rule alert(s) ({:.2}/patient-day); {} page(s), {} escalation(s)",
            self.episodes,
            self.patient_days,
            self.episodes_per_patient_day,
            self.rule_alerts,
            self.rule_alerts_per_patient_day,
            self.notifications,
            self.escalations
        );
        let rules: Vec<String> = self
            .episodes_by_rule
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let sup: Vec<String> = self
            .suppressed
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "  episodes by rule: {}; not paged: {}",
            if rules.is_empty() {
                "-".into()
            } else {
                rules.join(", ")
            },
            if sup.is_empty() {
                "-".into()
            } else {
                sup.join(", ")
            }
        );
        match &self.time_to_ack_s {
            Some(t) => {
                let _ = writeln!(
                    s,
                    "  acknowledged {}: time to acknowledge median {:.0} s, p90 {:.0} s, max {:.0} s",
                    self.acknowledged, t.median, t.p90, t.max
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "  acknowledged 0{}",
                    if self.notifications > self.episodes {
                        " (no one acknowledged: open episodes escalated and paged again on their timers)"
                    } else {
                        ""
                    }
                );
            }
        }
        s
    }
}
