//! The alert lifecycle: score sets in, alert transitions out. Pure: time is the score set's
//! `at`, never a clock, so replays give the same alerts byte for byte.

use std::collections::HashMap;
use std::fmt::Write;

use sha2::{Digest, Sha256};

use super::rules::{AlertRules, Rule, Trigger};
use crate::model::{
    hex16, Alert, AlertState, Evidence, Score, ScoreKind, ScoreSet, Timestamp, ALERT_SCHEMA,
};

/// The deterministic alert id: patient + rule + episode start. A restart or replay that sees
/// the same episode produces the same id, so a receiver can deduplicate.
pub fn alert_id(patient: &str, rule: &str, episode_start: Timestamp) -> String {
    let mut h = Sha256::new();
    h.update(patient.as_bytes());
    h.update([0]);
    h.update(rule.as_bytes());
    h.update([0]);
    h.update(episode_start.millis().to_be_bytes());
    hex16(&h.finalize())
}

#[derive(Debug, Default, Clone)]
struct GroupState {
    /// Index (into the group's rules, highest severity first) of the level now active.
    level: Option<usize>,
    episode_start: Timestamp,
    clear_since: Option<Timestamp>,
    resolved_at: Option<Timestamp>,
}

/// Alert state for every patient and rule group.
pub struct AlertEngine {
    groups: Vec<(String, Vec<Rule>)>,
    state: HashMap<(String, usize), GroupState>,
}

fn any_single_3(score: &Score) -> bool {
    score.components.iter().any(|c| c.points >= 3.0)
}

fn raised(rule: &Rule, score: &Score) -> bool {
    match rule.trigger {
        Trigger::Threshold { raise_at, .. } => score.value >= raise_at,
        Trigger::AnySingle3 => any_single_3(score),
    }
}

fn clearing(rule: &Rule, score: Option<&Score>) -> bool {
    match (score, &rule.trigger) {
        // No score this time (inputs gone): it counts toward clearing.
        (None, _) => true,
        (Some(s), Trigger::Threshold { clear_below, .. }) => s.value < *clear_below,
        (Some(s), Trigger::AnySingle3) => !any_single_3(s),
    }
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A sentence that says why: the score, its threshold, the contributing values and what was
/// missing.
pub fn explain(rule: &Rule, score: &Score) -> String {
    let mut s = String::new();
    let label = match score.kind {
        ScoreKind::Qsofa => "qSOFA",
        ScoreKind::Sofa => "SOFA",
        ScoreKind::SofaRise => "SOFA rise over baseline",
        ScoreKind::News2 => "NEWS2",
        ScoreKind::ShockIndex => "Shock index",
        ScoreKind::SepticShock => "Septic shock criteria",
        ScoreKind::ShockRisk => "Shock-transition points",
        ScoreKind::SepsisRisk => "Sepsis risk",
    };
    match (&rule.trigger, score.kind) {
        (_, ScoreKind::SepticShock) => {
            let _ = write!(s, "{label} met");
        }
        (Trigger::Threshold { raise_at, .. }, _) => {
            let _ = write!(
                s,
                "{label} {} (alert at ≥ {})",
                fmt_num(score.value),
                fmt_num(*raise_at)
            );
        }
        (Trigger::AnySingle3, _) => {
            let _ = write!(
                s,
                "{label} {}: a single parameter scores 3",
                fmt_num(score.value)
            );
        }
    }
    let shown: Vec<String> = score
        .components
        .iter()
        .filter(|c| c.points > 0.0 || score.kind == ScoreKind::SepticShock)
        .map(|c| {
            let mut part = c.name.replace('_', " ");
            if let Some(v) = c.value {
                let _ = write!(part, " {}", fmt_num(v));
                if let Some(u) = &c.unit {
                    let _ = write!(part, " {u}");
                }
            }
            if c.estimated {
                part.push_str(" (estimated)");
            }
            if score.kind != ScoreKind::SepticShock && score.kind != ScoreKind::ShockIndex {
                let _ = write!(part, " [+{}]", fmt_num(c.points));
            }
            if let Some(n) = &c.note {
                let _ = write!(part, " ({n})");
            }
            part
        })
        .collect();
    if !shown.is_empty() {
        let _ = write!(s, ": {}", shown.join(", "));
    }
    if !score.missing.is_empty() {
        let _ = write!(s, "; missing: {}", score.missing.join(", "));
    }
    s
}

impl AlertEngine {
    pub fn new(rules: &AlertRules) -> Self {
        let groups = rules
            .groups()
            .into_iter()
            .map(|(g, rs)| (g, rs.into_iter().cloned().collect()))
            .collect();
        AlertEngine {
            groups,
            state: HashMap::new(),
        }
    }

    /// Forgets a discharged patient.
    pub fn forget(&mut self, patient: &str) {
        self.state.retain(|(p, _), _| p != patient);
    }

    /// Applies one evaluation; returns the alert transitions it caused, in rule order.
    pub fn on_scores(&mut self, set: &ScoreSet) -> Vec<Alert> {
        let now = set.at;
        let mut out = Vec::new();
        for (gi, (_, rules)) in self.groups.iter().enumerate() {
            let met = rules
                .iter()
                .position(|r| set.get(r.score).is_some_and(|s| raised(r, s)));
            let st = self.state.entry((set.patient.clone(), gi)).or_default();
            let make = |rule: &Rule, state: AlertState, episode_start: Timestamp| -> Alert {
                let score = set.get(rule.score);
                Alert {
                    schema: ALERT_SCHEMA,
                    id: alert_id(&set.patient, &rule.name, episode_start),
                    rule: rule.name.clone(),
                    severity: rule.severity,
                    state,
                    patient: set.patient.clone(),
                    unit: set.unit.clone(),
                    bed: set.bed.clone(),
                    episode_start,
                    at: now,
                    reason: score
                        .map(|s| explain(rule, s))
                        .unwrap_or_else(|| format!("{}: inputs no longer available", rule.name)),
                    evidence: score
                        .map(|s| Evidence {
                            kind: s.kind,
                            value: s.value,
                            components: s.components.clone(),
                            missing: s.missing.clone(),
                        })
                        .into_iter()
                        .collect(),
                }
            };
            match st.level {
                None => {
                    if let Some(m) = met {
                        let rule = &rules[m];
                        let reopen = st
                            .resolved_at
                            .is_some_and(|r| now.since(r) < rule.suppress_ms);
                        if reopen {
                            out.push(make(rule, AlertState::Suppressed, st.episode_start));
                        } else {
                            st.episode_start = now;
                            out.push(make(rule, AlertState::Active, now));
                        }
                        st.level = Some(m);
                        st.clear_since = None;
                        st.resolved_at = None;
                    }
                }
                Some(l) => {
                    let current = &rules[l];
                    if let Some(m) = met.filter(|m| *m < l) {
                        // Escalation to a more severe level pages again.
                        st.level = Some(m);
                        st.clear_since = None;
                        out.push(make(&rules[m], AlertState::Active, st.episode_start));
                    } else if clearing(current, set.get(current.score)) {
                        let since = *st.clear_since.get_or_insert(now);
                        if now.since(since) >= current.hold_ms {
                            out.push(make(current, AlertState::Resolved, st.episode_start));
                            st.clear_since = None;
                            match met {
                                Some(m) => {
                                    // Still met at a lower level: continue quietly.
                                    st.level = Some(m);
                                    out.push(make(
                                        &rules[m],
                                        AlertState::Suppressed,
                                        st.episode_start,
                                    ));
                                }
                                None => {
                                    st.level = None;
                                    st.resolved_at = Some(now);
                                }
                            }
                        }
                    } else {
                        st.clear_since = None;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Component, HOUR_MS, MINUTE_MS, SCORE_SCHEMA};

    fn set(at_min: i64, kind: ScoreKind, value: f64, comps: &[(&str, f64)]) -> ScoreSet {
        ScoreSet {
            schema: 1,
            patient: "V1".into(),
            unit: Some("ICU-A".into()),
            bed: Some("BED01".into()),
            at: Timestamp(at_min * MINUTE_MS),
            scores: vec![Score {
                schema: SCORE_SCHEMA,
                kind,
                patient: "V1".into(),
                bed: Some("BED01".into()),
                value,
                components: comps
                    .iter()
                    .map(|(n, p)| Component {
                        name: (*n).into(),
                        points: *p,
                        value: None,
                        unit: None,
                        observation: None,
                        time: None,
                        estimated: false,
                        note: None,
                    })
                    .collect(),
                missing: vec![],
                window_min: None,
                computed_at: Timestamp(at_min * MINUTE_MS),
            }],
        }
    }

    fn engine() -> AlertEngine {
        AlertEngine::new(&AlertRules::builtin().unwrap())
    }

    fn states(a: &[Alert]) -> Vec<(String, AlertState)> {
        a.iter().map(|a| (a.rule.clone(), a.state)).collect()
    }

    #[test]
    fn qsofa_raises_at_two_and_flapping_does_not_page_twice() {
        let mut e = engine();
        assert!(e
            .on_scores(&set(0, ScoreKind::Qsofa, 1.0, &[("resp_rate", 1.0)]))
            .is_empty());
        let a = e.on_scores(&set(
            1,
            ScoreKind::Qsofa,
            2.0,
            &[("resp_rate", 1.0), ("sbp", 1.0)],
        ));
        assert_eq!(states(&a), [("qsofa".into(), AlertState::Active)]);
        assert!(
            a[0].reason
                .starts_with("qSOFA 2 (alert at ≥ 2): resp rate [+1], sbp [+1]"),
            "{}",
            a[0].reason
        );
        let id = a[0].id.clone();
        // Dips below for less than the hold time, comes back: nothing new.
        assert!(e.on_scores(&set(10, ScoreKind::Qsofa, 1.0, &[])).is_empty());
        assert!(e.on_scores(&set(20, ScoreKind::Qsofa, 2.0, &[])).is_empty());
        // Below for the full 30 min hold: resolved, same id.
        assert!(e.on_scores(&set(30, ScoreKind::Qsofa, 1.0, &[])).is_empty());
        let r = e.on_scores(&set(60, ScoreKind::Qsofa, 0.0, &[]));
        assert_eq!(states(&r), [("qsofa".into(), AlertState::Resolved)]);
        assert_eq!(r[0].id, id);
        // Back within the suppression window: re-opened quietly under the same id.
        let s = e.on_scores(&set(90, ScoreKind::Qsofa, 2.0, &[]));
        assert_eq!(states(&s), [("qsofa".into(), AlertState::Suppressed)]);
        assert_eq!(s[0].id, id);
    }

    #[test]
    fn a_new_episode_after_the_suppression_window_pages_with_a_new_id() {
        let mut e = engine();
        let a = e.on_scores(&set(0, ScoreKind::Qsofa, 2.0, &[]));
        e.on_scores(&set(10, ScoreKind::Qsofa, 0.0, &[]));
        let r = e.on_scores(&set(40, ScoreKind::Qsofa, 0.0, &[]));
        assert_eq!(r[0].state, AlertState::Resolved);
        let b = e.on_scores(&set(40 + 121, ScoreKind::Qsofa, 3.0, &[]));
        assert_eq!(states(&b), [("qsofa".into(), AlertState::Active)]);
        assert_ne!(a[0].id, b[0].id);
        assert_eq!(
            b[0].id,
            alert_id("V1", "qsofa", Timestamp((40 + 121) * MINUTE_MS))
        );
    }

    #[test]
    fn news2_levels_escalate_but_do_not_page_on_the_way_down() {
        let mut e = engine();
        let a = e.on_scores(&set(0, ScoreKind::News2, 3.0, &[("resp_rate", 3.0)]));
        assert_eq!(states(&a), [("news2_single_3".into(), AlertState::Active)]);
        let b = e.on_scores(&set(
            5,
            ScoreKind::News2,
            5.0,
            &[("resp_rate", 3.0), ("pulse", 2.0)],
        ));
        assert_eq!(states(&b), [("news2_medium".into(), AlertState::Active)]);
        let c = e.on_scores(&set(10, ScoreKind::News2, 8.0, &[]));
        assert_eq!(states(&c), [("news2_high".into(), AlertState::Active)]);
        assert_eq!(c[0].episode_start, a[0].episode_start);
        // Falls to 5 (medium still met, high clearing: < 5 is needed, so not clearing yet).
        assert!(e.on_scores(&set(20, ScoreKind::News2, 5.0, &[])).is_empty());
        // Falls to 4: high clears after the hold, medium is no longer met → resolved.
        assert!(e.on_scores(&set(30, ScoreKind::News2, 4.0, &[])).is_empty());
        let d = e.on_scores(&set(60, ScoreKind::News2, 4.0, &[]));
        assert_eq!(states(&d), [("news2_high".into(), AlertState::Resolved)]);
    }

    #[test]
    fn septic_shock_resolves_only_after_an_hour_clear() {
        let mut e = engine();
        let a = e.on_scores(&set(
            0,
            ScoreKind::SepticShock,
            1.0,
            &[("vasopressor", 0.0)],
        ));
        assert_eq!(a[0].severity, crate::model::Severity::Critical);
        assert!(a[0]
            .reason
            .starts_with("Septic shock criteria met: vasopressor"));
        assert!(e
            .on_scores(&set(10, ScoreKind::SepticShock, 0.0, &[]))
            .is_empty());
        assert!(e
            .on_scores(&set(69, ScoreKind::SepticShock, 0.0, &[]))
            .is_empty());
        let r = e.on_scores(&set(70, ScoreKind::SepticShock, 0.0, &[]));
        assert_eq!(r[0].state, AlertState::Resolved);
        assert_eq!(HOUR_MS, 60 * MINUTE_MS);
    }
}
