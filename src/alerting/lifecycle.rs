//! The people-facing alert lifecycle: one episode per patient across every rule, its state as
//! the care team sees it, escalation and re-notification timers.
//!
//! ```text
//!             ┌──────── acknowledge ───────┐
//!  raise ──> active ── escalate / timer ──> escalated ── acknowledge ──> acknowledged
//!   │           │  ▲ severity rises (pages again)                           │
//!   │           └──┴──────────────── resolve (person, or every rule cleared) ┴──> resolved
//!   └─ condition back within the suppression window ──> suppressed (quiet; ack/escalate/resolve)
//! ```
//!
//! The rule engine ([`super::AlertEngine`]) decides when each rule group raises and clears
//! (hysteresis, hold, suppression window). This layer folds those rule alerts into a single
//! episode per patient: the first rule alert opens it (and names it: the episode's id is that
//! alert's id), a later rule of the same or lower severity joins it quietly, a more severe one
//! raises the episode's severity and pages again; the episode resolves when every rule in it has
//! cleared, or when a person resolves it.
//!
//! Pure: every method takes `now`; nothing reads a clock.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::rules::AlertRules;
use crate::model::{Alert, AlertState, Evidence, Severity, Timestamp};

/// What changed in an episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// A new episode: pages.
    Raised,
    /// The condition came back within the suppression window: visible, does not page.
    Reopened,
    /// Another rule joined at the same or a lower severity: visible, does not page.
    Merged,
    /// A rule of higher severity joined: pages again and needs a new acknowledgement.
    SeverityRaised,
    /// A rule in the episode cleared but others remain: visible, does not page.
    Updated,
    Acknowledged,
    /// By a person, or by the timer when not acknowledged in time.
    Escalated,
    /// Still not acknowledged: paged again.
    Renotified,
    Resolved,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Raised => "raised",
            Transition::Reopened => "reopened",
            Transition::Merged => "merged",
            Transition::SeverityRaised => "severity_raised",
            Transition::Updated => "updated",
            Transition::Acknowledged => "acknowledged",
            Transition::Escalated => "escalated",
            Transition::Renotified => "renotified",
            Transition::Resolved => "resolved",
        }
    }

    /// Whether delivery sinks (alarm manager, webhook, MQTT) are told.
    pub fn delivered(self) -> bool {
        !matches!(
            self,
            Transition::Reopened | Transition::Merged | Transition::Updated
        )
    }
}

/// An episode as the API, the dashboard and the delivery sinks see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    pub id: String,
    pub patient: String,
    pub bed: Option<String>,
    pub unit: Option<String>,
    /// The rule shown: the most severe one in the episode.
    pub rule: String,
    pub severity: Severity,
    pub state: AlertState,
    pub raised_at: Timestamp,
    pub updated_at: Timestamp,
    /// The shown rule's sentence: what crossed which threshold, with values.
    pub explanation: String,
    pub evidence: Vec<Evidence>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<Timestamp>,
    /// 0 until escalated; each escalation adds one.
    pub escalation_level: u32,
    /// Every rule open in this episode.
    pub rules: Vec<String>,
    /// The change this view reports.
    pub transition: Transition,
    /// Who made it (a user name, or `system` for the rules and timers).
    pub by: String,
    /// How many times this episode has paged (raise, severity rise, escalation, re-notify).
    pub notifications: u32,
}

impl AlertView {
    /// `<id>:<transition>`, with the level or count for transitions that repeat: the same
    /// change gets the same key on every delivery attempt.
    pub fn idempotency_key(&self) -> String {
        match self.transition {
            Transition::Escalated => format!("{}:escalated-{}", self.id, self.escalation_level),
            Transition::Renotified => format!("{}:renotified-{}", self.id, self.notifications),
            Transition::SeverityRaised => {
                format!("{}:severity_raised-{}", self.id, self.severity.as_str())
            }
            t => format!("{}:{}", self.id, t.as_str()),
        }
    }

    pub fn is_open(&self) -> bool {
        self.state != AlertState::Resolved
    }
}

/// Timers of the lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifecycleSettings {
    /// An active episode not acknowledged within this escalates (0: never).
    pub escalate_after_ms: i64,
    /// An escalated episode still not acknowledged pages again this often (0: never).
    pub renotify_ms: i64,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        LifecycleSettings {
            escalate_after_ms: 15 * 60_000,
            renotify_ms: 30 * 60_000,
        }
    }
}

/// Why a person's action was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransitionError {
    #[error("alert {0} is not open")]
    NotOpen(String),
    #[error("alert {id} is {from}; it cannot be {action}")]
    Invalid {
        id: String,
        from: &'static str,
        action: &'static str,
    },
}

/// A person's action on an episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Acknowledge,
    Escalate,
    Resolve,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Acknowledge => "acknowledge",
            Action::Escalate => "escalate",
            Action::Resolve => "resolve",
        }
    }
    fn past(self) -> &'static str {
        match self {
            Action::Acknowledge => "acknowledged",
            Action::Escalate => "escalated",
            Action::Resolve => "resolved",
        }
    }
}

#[derive(Clone, Debug)]
struct RuleAlert {
    rule: String,
    severity: Severity,
    explanation: String,
    evidence: Vec<Evidence>,
}

#[derive(Clone, Debug)]
struct Episode {
    view: AlertView,
    /// Open rule alerts by rule group.
    groups: BTreeMap<String, RuleAlert>,
    /// Since when the episode has waited for an acknowledgement (escalation timer).
    waiting_since: Timestamp,
    last_notified: Timestamp,
}

/// Open episodes, one per patient.
pub struct Lifecycle {
    settings: LifecycleSettings,
    group_of: HashMap<String, String>,
    open: HashMap<String, Episode>,
}

impl Lifecycle {
    pub fn new(rules: &AlertRules, settings: LifecycleSettings) -> Self {
        Lifecycle {
            settings,
            group_of: rules
                .rules
                .iter()
                .map(|r| (r.name.clone(), r.group.clone()))
                .collect(),
            open: HashMap::new(),
        }
    }

    pub fn settings(&self) -> LifecycleSettings {
        self.settings
    }

    fn group(&self, rule: &str) -> String {
        self.group_of
            .get(rule)
            .cloned()
            .unwrap_or_else(|| rule.to_string())
    }

    /// Takes back open episodes from the store after a restart. Their rule alerts are taken as
    /// still open: the rule engine starts empty and re-raises what still holds, which joins the
    /// restored episode instead of paging again.
    pub fn restore(&mut self, views: Vec<AlertView>) {
        for v in views.into_iter().filter(AlertView::is_open) {
            let mut groups = BTreeMap::new();
            for r in &v.rules {
                groups.insert(
                    self.group(r),
                    RuleAlert {
                        rule: r.clone(),
                        severity: if *r == v.rule {
                            v.severity
                        } else {
                            Severity::Low
                        },
                        explanation: v.explanation.clone(),
                        evidence: Vec::new(),
                    },
                );
            }
            let ep = Episode {
                waiting_since: v.updated_at,
                last_notified: v.updated_at,
                groups,
                view: v,
            };
            self.open.insert(ep.view.patient.clone(), ep);
        }
    }

    /// The open episode with this id.
    pub fn get(&self, id: &str) -> Option<&AlertView> {
        self.open.values().map(|e| &e.view).find(|v| v.id == id)
    }

    /// Every open episode.
    pub fn open(&self) -> impl Iterator<Item = &AlertView> {
        self.open.values().map(|e| &e.view)
    }

    /// Forgets a patient's open episode (discharged, or the partition moved away).
    pub fn forget(&mut self, patient: &str) {
        self.open.remove(patient);
    }

    /// Folds the rule engine's transitions of one evaluation into episodes. Raises and
    /// re-openings are applied before resolutions, so a rule group stepping down a level
    /// (resolved at the higher, continuing at the lower) keeps its episode open.
    pub fn on_rule_alerts(&mut self, alerts: &[Alert]) -> Vec<AlertView> {
        let mut out = Vec::new();
        let (resolved, raised): (Vec<&Alert>, Vec<&Alert>) =
            alerts.iter().partition(|a| a.state == AlertState::Resolved);
        for a in raised {
            self.raise(a, &mut out);
        }
        for a in resolved {
            self.clear(a, &mut out);
        }
        out
    }

    fn raise(&mut self, a: &Alert, out: &mut Vec<AlertView>) {
        let group = self.group(&a.rule);
        let now = a.at;
        let rule_alert = RuleAlert {
            rule: a.rule.clone(),
            severity: a.severity,
            explanation: a.reason.clone(),
            evidence: a.evidence.clone(),
        };
        let quiet = a.state == AlertState::Suppressed;
        match self.open.get_mut(&a.patient) {
            None => {
                let (state, transition) = if quiet {
                    (AlertState::Suppressed, Transition::Reopened)
                } else {
                    (AlertState::Active, Transition::Raised)
                };
                let view = AlertView {
                    id: a.id.clone(),
                    patient: a.patient.clone(),
                    bed: a.bed.clone(),
                    unit: a.unit.clone(),
                    rule: a.rule.clone(),
                    severity: a.severity,
                    state,
                    raised_at: now,
                    updated_at: now,
                    explanation: a.reason.clone(),
                    evidence: a.evidence.clone(),
                    acknowledged_by: None,
                    acknowledged_at: None,
                    escalation_level: 0,
                    rules: vec![a.rule.clone()],
                    transition,
                    by: "system".into(),
                    notifications: u32::from(!quiet),
                };
                let mut groups = BTreeMap::new();
                groups.insert(group, rule_alert);
                out.push(view.clone());
                self.open.insert(
                    a.patient.clone(),
                    Episode {
                        view,
                        groups,
                        waiting_since: now,
                        last_notified: now,
                    },
                );
            }
            Some(ep) => {
                ep.groups.insert(group, rule_alert);
                let v = &mut ep.view;
                v.updated_at = now;
                v.by = "system".into();
                if a.bed.is_some() {
                    v.bed = a.bed.clone();
                    v.unit = a.unit.clone();
                }
                if a.severity > v.severity && !quiet {
                    v.severity = a.severity;
                    v.rule = a.rule.clone();
                    v.explanation = a.reason.clone();
                    v.evidence = a.evidence.clone();
                    v.transition = Transition::SeverityRaised;
                    v.notifications += 1;
                    // A worse condition needs its own acknowledgement.
                    if v.state != AlertState::Escalated {
                        v.state = AlertState::Active;
                    }
                    v.acknowledged_by = None;
                    v.acknowledged_at = None;
                    ep.waiting_since = now;
                    ep.last_notified = now;
                } else {
                    if a.rule == v.rule {
                        v.explanation = a.reason.clone();
                        v.evidence = a.evidence.clone();
                    }
                    v.transition = Transition::Merged;
                }
                v.rules = ep.groups.values().map(|r| r.rule.clone()).collect();
                out.push(v.clone());
            }
        }
    }

    fn clear(&mut self, a: &Alert, out: &mut Vec<AlertView>) {
        let group = self.group(&a.rule);
        let Some(ep) = self.open.get_mut(&a.patient) else {
            return;
        };
        match ep.groups.get(&group) {
            None => return,
            // The group stepped down a level in the same evaluation (raises are applied
            // first): the lower level stays, only the shown rule may change.
            Some(r) if r.rule != a.rule => {}
            Some(_) => {
                ep.groups.remove(&group);
            }
        }
        let v = &mut ep.view;
        v.updated_at = a.at;
        v.by = "system".into();
        v.rules = ep.groups.values().map(|r| r.rule.clone()).collect();
        match ep.groups.values().max_by_key(|r| r.severity) {
            None => {
                v.state = AlertState::Resolved;
                v.transition = Transition::Resolved;
                out.push(v.clone());
                self.open.remove(&a.patient);
            }
            Some(top) => {
                // The most severe rule left is shown; a fall in severity does not page.
                if top.rule != v.rule {
                    v.rule = top.rule.clone();
                    v.severity = top.severity;
                    v.explanation = top.explanation.clone();
                    v.evidence = top.evidence.clone();
                }
                v.transition = Transition::Updated;
                out.push(v.clone());
            }
        }
    }

    /// A person's action on an open episode.
    pub fn act(
        &mut self,
        id: &str,
        action: Action,
        user: &str,
        now: Timestamp,
    ) -> Result<AlertView, TransitionError> {
        let Some(patient) = self
            .open
            .iter()
            .find(|(_, e)| e.view.id == id)
            .map(|(p, _)| p.clone())
        else {
            return Err(TransitionError::NotOpen(id.to_string()));
        };
        let Some(ep) = self.open.get_mut(&patient) else {
            return Err(TransitionError::NotOpen(id.to_string()));
        };
        let v = &mut ep.view;
        let invalid = |v: &AlertView| TransitionError::Invalid {
            id: v.id.clone(),
            from: v.state.as_str(),
            action: action.past(),
        };
        match action {
            Action::Acknowledge => {
                if v.state == AlertState::Acknowledged {
                    return Err(invalid(v));
                }
                v.state = AlertState::Acknowledged;
                v.acknowledged_by = Some(user.to_string());
                v.acknowledged_at = Some(now);
                v.transition = Transition::Acknowledged;
            }
            Action::Escalate => {
                v.state = AlertState::Escalated;
                v.escalation_level += 1;
                v.notifications += 1;
                v.transition = Transition::Escalated;
                ep.waiting_since = now;
                ep.last_notified = now;
            }
            Action::Resolve => {
                v.state = AlertState::Resolved;
                v.transition = Transition::Resolved;
            }
        }
        v.updated_at = now;
        v.by = user.to_string();
        let out = v.clone();
        if action == Action::Resolve {
            self.open.remove(&patient);
        }
        Ok(out)
    }

    /// Runs the timers: an active episode not acknowledged within `escalate_after` escalates;
    /// an escalated one still not acknowledged pages again every `renotify`. Episodes in
    /// patient order, so the output does not depend on hashing.
    pub fn tick(&mut self, now: Timestamp) -> Vec<AlertView> {
        let s = self.settings;
        let mut out = Vec::new();
        let mut patients: Vec<&String> = self.open.keys().collect();
        patients.sort();
        let patients: Vec<String> = patients.into_iter().cloned().collect();
        for p in patients {
            let Some(ep) = self.open.get_mut(&p) else {
                continue;
            };
            let v = &mut ep.view;
            match v.state {
                AlertState::Active
                    if s.escalate_after_ms > 0
                        && now.since(ep.waiting_since) >= s.escalate_after_ms =>
                {
                    v.state = AlertState::Escalated;
                    v.escalation_level += 1;
                    v.notifications += 1;
                    v.transition = Transition::Escalated;
                    ep.last_notified = now;
                }
                AlertState::Escalated
                    if s.renotify_ms > 0 && now.since(ep.last_notified) >= s.renotify_ms =>
                {
                    v.notifications += 1;
                    v.transition = Transition::Renotified;
                    ep.last_notified = now;
                }
                _ => continue,
            }
            v.updated_at = now;
            v.by = "system".into();
            out.push(v.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::alert_id;
    use crate::model::{ALERT_SCHEMA, MINUTE_MS};

    fn rule_alert(rule: &str, sev: Severity, state: AlertState, min: i64) -> Alert {
        Alert {
            schema: ALERT_SCHEMA,
            id: alert_id("V1", rule, Timestamp(0)),
            rule: rule.into(),
            severity: sev,
            state,
            patient: "V1".into(),
            unit: Some("ICU-A".into()),
            bed: Some("BED03".into()),
            episode_start: Timestamp(0),
            at: Timestamp(min * MINUTE_MS),
            reason: format!("{rule} reason"),
            evidence: vec![],
        }
    }

    fn lc() -> Lifecycle {
        Lifecycle::new(
            &AlertRules::builtin().unwrap(),
            LifecycleSettings {
                escalate_after_ms: 15 * MINUTE_MS,
                renotify_ms: 30 * MINUTE_MS,
            },
        )
    }

    fn t(views: &[AlertView]) -> Vec<(Transition, AlertState, Severity)> {
        views
            .iter()
            .map(|v| (v.transition, v.state, v.severity))
            .collect()
    }

    #[test]
    fn one_episode_per_patient_pages_again_only_when_severity_rises() {
        use AlertState::*;
        use Severity::*;
        let mut l = lc();
        let a = l.on_rule_alerts(&[rule_alert("news2_medium", Medium, Active, 0)]);
        assert_eq!(t(&a), [(Transition::Raised, Active, Medium)]);
        let id = a[0].id.clone();
        let ack = l
            .act(&id, Action::Acknowledge, "ann", Timestamp(MINUTE_MS))
            .unwrap();
        assert_eq!(ack.acknowledged_by.as_deref(), Some("ann"));
        // qSOFA (high) joins: pages again, needs a new acknowledgement.
        let b = l.on_rule_alerts(&[rule_alert("qsofa", High, Active, 5)]);
        assert_eq!(t(&b), [(Transition::SeverityRaised, Active, High)]);
        assert_eq!(b[0].id, id);
        assert_eq!(b[0].acknowledged_by, None);
        assert!(b[0].transition.delivered());
        // sofa_rise (also high) joins quietly.
        let c = l.on_rule_alerts(&[rule_alert("sofa_rise", High, Active, 6)]);
        assert_eq!(t(&c), [(Transition::Merged, Active, High)]);
        assert!(!c[0].transition.delivered());
        assert_eq!(c[0].rules.len(), 3);
        // Septic shock: critical.
        let d = l.on_rule_alerts(&[rule_alert("septic_shock", Critical, Active, 7)]);
        assert_eq!(d[0].rule, "septic_shock");
        assert_eq!(d[0].notifications, 3);
        // Rules clear one by one; the shown severity follows, quietly; the last resolves.
        let e = l.on_rule_alerts(&[rule_alert("septic_shock", Critical, Resolved, 100)]);
        assert_eq!(t(&e), [(Transition::Updated, Active, High)]);
        l.on_rule_alerts(&[rule_alert("qsofa", High, Resolved, 101)]);
        l.on_rule_alerts(&[rule_alert("sofa_rise", High, Resolved, 102)]);
        let f = l.on_rule_alerts(&[rule_alert("news2_medium", Medium, Resolved, 103)]);
        assert_eq!(t(&f), [(Transition::Resolved, Resolved, Medium)]);
        assert_eq!(l.open().count(), 0);
    }

    #[test]
    fn a_group_stepping_down_a_level_keeps_the_episode_open() {
        use Severity::*;
        let mut l = lc();
        l.on_rule_alerts(&[rule_alert("news2_high", High, AlertState::Active, 0)]);
        // The engine's step down: high resolved, medium continues quietly.
        let v = l.on_rule_alerts(&[
            rule_alert("news2_high", High, AlertState::Resolved, 40),
            rule_alert("news2_medium", Medium, AlertState::Suppressed, 40),
        ]);
        let last = v.last().unwrap();
        assert_eq!(last.state, AlertState::Active);
        assert_eq!(last.rules, ["news2_medium"]);
        assert_eq!(l.open().count(), 1);
    }

    #[test]
    fn unacknowledged_escalates_then_renotifies_until_acknowledged() {
        use AlertState::*;
        let mut l = lc();
        let a = l.on_rule_alerts(&[rule_alert("qsofa", Severity::High, Active, 0)]);
        let id = a[0].id.clone();
        assert!(l.tick(Timestamp(14 * MINUTE_MS)).is_empty());
        let e = l.tick(Timestamp(15 * MINUTE_MS));
        assert_eq!(t(&e), [(Transition::Escalated, Escalated, Severity::High)]);
        assert_eq!(e[0].escalation_level, 1);
        assert_eq!(e[0].idempotency_key(), format!("{id}:escalated-1"));
        assert!(l.tick(Timestamp(44 * MINUTE_MS)).is_empty());
        let r = l.tick(Timestamp(45 * MINUTE_MS));
        assert_eq!(r[0].transition, Transition::Renotified);
        assert_eq!(r[0].notifications, 3);
        l.act(&id, Action::Acknowledge, "ann", Timestamp(50 * MINUTE_MS))
            .unwrap();
        assert!(l.tick(Timestamp(500 * MINUTE_MS)).is_empty());
    }

    #[test]
    fn invalid_transitions_are_refused() {
        let mut l = lc();
        let a = l.on_rule_alerts(&[rule_alert("qsofa", Severity::High, AlertState::Active, 0)]);
        let id = a[0].id.clone();
        l.act(&id, Action::Acknowledge, "ann", Timestamp(1))
            .unwrap();
        assert!(matches!(
            l.act(&id, Action::Acknowledge, "bob", Timestamp(2)),
            Err(TransitionError::Invalid {
                from: "acknowledged",
                ..
            })
        ));
        let esc = l.act(&id, Action::Escalate, "bob", Timestamp(3)).unwrap();
        assert_eq!(esc.state, AlertState::Escalated);
        assert_eq!(esc.acknowledged_by.as_deref(), Some("ann"));
        l.act(&id, Action::Resolve, "bob", Timestamp(4)).unwrap();
        assert_eq!(
            l.act(&id, Action::Resolve, "bob", Timestamp(5)),
            Err(TransitionError::NotOpen(id.clone()))
        );
        // A rule clearing after a person resolved changes nothing.
        assert!(l
            .on_rule_alerts(&[rule_alert(
                "qsofa",
                Severity::High,
                AlertState::Resolved,
                60
            )])
            .is_empty());
    }

    #[test]
    fn a_reopening_is_quiet_and_restored_episodes_absorb_a_re_raise() {
        let mut l = lc();
        let r = l.on_rule_alerts(&[rule_alert(
            "qsofa",
            Severity::High,
            AlertState::Suppressed,
            0,
        )]);
        assert_eq!(r[0].state, AlertState::Suppressed);
        assert!(!r[0].transition.delivered());
        // Suppressed episodes do not escalate on the timer.
        assert!(l.tick(Timestamp(100 * MINUTE_MS)).is_empty());
        let mut acked = r[0].clone();
        acked.state = AlertState::Acknowledged;
        let mut l2 = lc();
        l2.restore(vec![acked]);
        let again =
            l2.on_rule_alerts(&[rule_alert("qsofa", Severity::High, AlertState::Active, 200)]);
        assert_eq!(again[0].transition, Transition::Merged);
        assert_eq!(again[0].state, AlertState::Acknowledged);
    }
}
