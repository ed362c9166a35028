//! IHE PCD-04 (Alert Communication Management, Report Alert) `ORU^R40` messages for episode
//! transitions, shaped like the Dräger reference implementation's samples
//! (`tests/data/pcd04/`): MSH with the ACM profile in MSH-21, PID, PV1 with the bed, an OBR for
//! the alert, then OBX rows for the alert (type code and text), its source observation, event
//! phase, alarm state, inactivation state, priority and alert type, all as MDC attributes.
//!
//! Sans-I/O: text in, text out; the MLLP delivery is [`super::delivery::Pcd04`].

use sha2::{Digest, Sha256};

use super::lifecycle::{AlertView, Transition};
use crate::model::{AlertState, Severity, Timestamp};
use crate::protocol::hl7::{escape, Delimiters};

/// The IHE PCD ACM profile identifier (MSH-21).
pub const ACM_PROFILE: &str = "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.4.1^ISO";
/// The local coding system vigil's own codes (rules, scores) use.
pub const LOCAL_CODES: &str = "99VIGIL";

#[derive(Clone, Debug)]
pub struct Pcd04Settings {
    /// MSH-3 sending application.
    pub sending_application: String,
    /// MSH-4 sending facility (and PV1-3.4).
    pub facility: String,
    /// MSH-5 receiving application.
    pub receiving_application: String,
}

impl Default for Pcd04Settings {
    fn default() -> Self {
        Pcd04Settings {
            sending_application: "VIGIL".into(),
            facility: "ICU".into(),
            receiving_application: "ACM".into(),
        }
    }
}

fn hl7_time(t: Timestamp) -> String {
    match t.to_datetime() {
        Some(dt) => dt.format("%Y%m%d%H%M%S%.3f+0000").to_string(),
        None => String::new(),
    }
}

/// MDC event phase (`MDC_ATTR_EVENT_PHASE`) of a transition.
pub fn event_phase(t: Transition) -> &'static str {
    match t {
        Transition::Raised | Transition::Reopened => "start",
        Transition::SeverityRaised | Transition::Escalated => "escalate",
        Transition::Renotified | Transition::Merged => "continue",
        Transition::Acknowledged | Transition::Updated => "update",
        Transition::Resolved => "end",
    }
}

/// `MDC_ATTR_ALARM_STATE` and `MDC_ATTR_ALARM_INACTIVATION_STATE` of an episode.
pub fn alarm_states(s: AlertState) -> (&'static str, &'static str) {
    match s {
        AlertState::Active | AlertState::Escalated => ("active", "enabled"),
        AlertState::Acknowledged => ("active", "alert-acknowledged"),
        AlertState::Suppressed => ("active", "alarm-paused"),
        AlertState::Resolved => ("inactive", "enabled"),
    }
}

/// `MDC_ATTR_ALARM_PRIORITY`: PH high, PM medium, PL low.
pub fn priority(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "PH",
        Severity::Medium => "PM",
        Severity::Low => "PL",
    }
}

/// MSH-10: the same for every attempt at the same transition (derived from its idempotency
/// key), so an alarm manager can tell a resend from a new report.
pub fn control_id(v: &AlertView) -> String {
    let h = Sha256::digest(v.idempotency_key().as_bytes());
    h.iter().take(10).fold(String::new(), |mut s, b| {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The `ORU^R40` for one transition, segments separated by CR.
pub fn oru_r40(v: &AlertView, s: &Pcd04Settings, sent: Timestamp) -> String {
    let d = Delimiters::default();
    let e = |t: &str| escape(t, &d);
    let mut segs: Vec<String> = Vec::new();
    segs.push(format!(
        "MSH|^~\\&|{}|{}|{}||{}||ORU^R40^ORU_R40|{}|P|2.6|||AL|NE|||||{ACM_PROFILE}",
        e(&s.sending_application),
        e(&s.facility),
        e(&s.receiving_application),
        hl7_time(sent),
        control_id(v),
    ));
    segs.push(format!("PID|||{}^^^^MR", e(&v.patient)));
    segs.push(format!(
        "PV1||I|{}^^{}^{}",
        e(v.unit.as_deref().unwrap_or("")),
        e(v.bed.as_deref().unwrap_or("")),
        e(&s.facility)
    ));
    let alert_time = hl7_time(v.updated_at);
    segs.push(format!(
        "OBR|1||{}^{}|196616^MDC_EVT_ALARM^MDC|||{}",
        e(&v.id),
        e(&s.sending_application),
        hl7_time(v.raised_at)
    ));
    let (state, inactivation) = alarm_states(v.state);
    let source = v.evidence.first();
    let mut obx = |value_type: &str, code: String, sub: u32, value: String| {
        let n = segs.len() - 3;
        segs.push(format!(
            "OBX|{n}|{value_type}|{code}|1.1.1.{sub}|{value}||||||F|||{alert_time}"
        ));
    };
    // The alert itself: vigil's rule as the event code, the explanation as its text.
    obx(
        "ST",
        format!(
            "{}^{}^{LOCAL_CODES}",
            e(&v.rule),
            e(&v.rule.replace('_', " "))
        ),
        1,
        e(&v.explanation),
    );
    // The source observation: the score behind the alert, as a code and its value.
    if let Some(src) = source {
        obx(
            "CWE",
            "68480^MDC_ATTR_ALERT_SOURCE^MDC".into(),
            2,
            format!("{}^{}^{LOCAL_CODES}", src.kind.name(), src.kind.name()),
        );
        obx(
            "NM",
            format!("{}^{}^{LOCAL_CODES}", src.kind.name(), src.kind.name()),
            3,
            format!("{}", src.value),
        );
    }
    obx(
        "ST",
        "68481^MDC_ATTR_EVENT_PHASE^MDC".into(),
        4,
        event_phase(v.transition).into(),
    );
    obx(
        "ST",
        "68482^MDC_ATTR_ALARM_STATE^MDC".into(),
        5,
        state.into(),
    );
    obx(
        "ST",
        "68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC".into(),
        6,
        inactivation.into(),
    );
    obx(
        "ST",
        "68484^MDC_ATTR_ALARM_PRIORITY^MDC".into(),
        7,
        priority(v.severity).into(),
    );
    // SP: a physiological alert (the patient), not a technical one (a device).
    obx("ST", "68485^MDC_ATTR_ALERT_TYPE^MDC".into(), 8, "SP".into());
    let mut out = segs.join("\r");
    out.push('\r');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Evidence, ScoreKind};
    use crate::protocol::hl7::parse;

    fn view() -> AlertView {
        AlertView {
            id: "0123456789abcdef".into(),
            patient: "V2600103".into(),
            bed: Some("BED03".into()),
            unit: Some("ICU-A".into()),
            rule: "septic_shock".into(),
            severity: Severity::Critical,
            state: AlertState::Active,
            raised_at: Timestamp(1_767_600_000_000),
            updated_at: Timestamp(1_767_600_000_000),
            explanation: "Septic shock criteria met: lactate 4.1 mmol/L | vasopressor".into(),
            evidence: vec![Evidence {
                kind: ScoreKind::SepticShock,
                value: 1.0,
                components: vec![],
                missing: vec![],
            }],
            acknowledged_by: None,
            acknowledged_at: None,
            escalation_level: 0,
            rules: vec!["septic_shock".into()],
            transition: Transition::Raised,
            by: "system".into(),
            notifications: 1,
        }
    }

    #[test]
    fn the_message_parses_and_carries_the_acm_attributes() {
        let m = oru_r40(
            &view(),
            &Pcd04Settings::default(),
            Timestamp(1_767_600_001_000),
        );
        let msg = parse(m.as_bytes()).unwrap();
        assert_eq!(msg.control_id(), control_id(&view()));
        assert!(m.contains("|ORU^R40^ORU_R40|"));
        assert!(m.contains("OBX|5|ST|68482^MDC_ATTR_ALARM_STATE^MDC|1.1.1.5|active|"));
        assert!(m.contains("OBX|7|ST|68484^MDC_ATTR_ALARM_PRIORITY^MDC|1.1.1.7|PH|"));
        // The separator in the explanation is escaped.
        assert!(m.contains("mmol/L \\F\\ vasopressor"), "{m}");
        let mut resolved = view();
        resolved.state = AlertState::Resolved;
        resolved.transition = Transition::Resolved;
        let r = oru_r40(&resolved, &Pcd04Settings::default(), Timestamp(0));
        assert!(r.contains("68481^MDC_ATTR_EVENT_PHASE^MDC|1.1.1.4|end|"));
        assert!(r.contains("|inactive|"));
        assert_ne!(control_id(&resolved), control_id(&view()));
    }
}
