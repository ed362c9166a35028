//! The whole pipeline on the bundled demo recording: decode → normalize → bus → score → alert.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use vigil::app::{run_pipeline, ReplayInput, RunOptions, SourcePlan};
use vigil::config::{Config, Speed};
use vigil::model::{Alert, AlertState, ScoreKind, ScoreSet};
use vigil::telemetry::Metrics;

fn demo_recording() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("replay-data/demo-icu.jsonl.gz")
}

async fn replay(alerts: &Path, scores: Option<&Path>) -> (vigil::app::RunReport, Arc<Metrics>) {
    let cfg = Config::embedded().unwrap();
    let metrics = Arc::new(Metrics::new());
    let plan = vec![SourcePlan::replay(
        "demo",
        ReplayInput::File(demo_recording()),
        Speed::Max,
    )];
    let opts = RunOptions {
        alerts_out: Some(alerts.to_path_buf()),
        scores_out: scores.map(Path::to_path_buf),
        dead_letters: None,
        listening: None,
        census_journal: None,
        alerts: None,
        live: None,
    };
    let report = run_pipeline(&cfg, plan, opts, metrics.clone(), CancellationToken::new())
        .await
        .unwrap();
    (report, metrics)
}

fn read_alerts(p: &Path) -> Vec<Alert> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `at state rule bed patient`, one alert transition per line.
fn golden_lines(alerts: &[Alert]) -> String {
    alerts
        .iter()
        .map(|a| {
            format!(
                "{} {:?} {} {} {}\n",
                a.at,
                a.state,
                a.rule,
                a.bed.as_deref().unwrap_or("-"),
                a.patient
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_alerts_match_the_golden_list_and_are_byte_identical_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2) = (dir.path().join("a1.jsonl"), dir.path().join("a2.jsonl"));
    let (s1, s2) = (dir.path().join("s1.jsonl"), dir.path().join("s2.jsonl"));
    let (report, metrics) = replay(&a1, Some(&s1)).await;
    replay(&a2, Some(&s2)).await;
    let b1 = std::fs::read(&a1).unwrap();
    assert!(!b1.is_empty());
    assert_eq!(
        b1,
        std::fs::read(&a2).unwrap(),
        "alerts differ between two replays"
    );
    assert!(
        std::fs::read(&s1).unwrap() == std::fs::read(&s2).unwrap(),
        "scores differ between two replays"
    );

    let alerts = read_alerts(&a1);
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/demo-alerts.txt");
    let got = golden_lines(&alerts);
    if std::env::var_os("VIGIL_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden_path).unwrap();
    assert_eq!(
        got, want,
        "demo alerts changed; review, then VIGIL_UPDATE_GOLDEN=1"
    );

    // The clinical point of the demo: septic shock for the two deteriorating beds only.
    let mut shock_beds: Vec<&str> = alerts
        .iter()
        .filter(|a| a.rule == "septic_shock" && a.state == AlertState::Active)
        .filter_map(|a| a.bed.as_deref())
        .collect();
    shock_beds.sort();
    shock_beds.dedup();
    assert_eq!(shock_beds, ["BED03", "BED07"]);
    for a in alerts.iter().filter(|a| a.rule == "septic_shock") {
        let ev = &a.evidence[0];
        assert_eq!(ev.kind, ScoreKind::SepticShock);
        let names: Vec<&str> = ev.components.iter().map(|c| c.name.as_str()).collect();
        assert!(
            names.contains(&"lactate") && names.contains(&"vasopressor"),
            "{names:?}"
        );
        assert!(a.reason.contains("lactate"), "{}", a.reason);
    }
    // Every alert explains itself with at least one contributing value.
    assert!(alerts
        .iter()
        .all(|a| !a.reason.is_empty() && !a.evidence.is_empty()));

    // The malformed message is rejected and counted, everything else lands.
    let rejected: u64 = report.replay.iter().map(|r| r.rejected).sum();
    assert_eq!(rejected, 1);
    let text = metrics.render();
    assert!(
        text.contains(
            "vigil_messages_rejected_total{reason=\"missing\",source=\"demo/monitors\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("vigil_observations_flagged_total{flag=\"artifact\",param=\"sbp_art\"}"));
    assert!(text.contains("vigil_observations_flagged_total{flag=\"sentinel\",param=\"spo2\"} 1"));
    assert!(text.contains(
        "vigil_alerts_total{rule=\"septic_shock\",severity=\"critical\",state=\"active\"} 2"
    ));
    let span = report.span.unwrap();
    assert!(span.1.since(span.0) >= 24 * 3_600_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stable_beds_never_meet_septic_shock_in_any_score_set() {
    let dir = tempfile::tempdir().unwrap();
    let scores = dir.path().join("s.jsonl");
    replay(&dir.path().join("a.jsonl"), Some(&scores)).await;
    let text = std::fs::read_to_string(&scores).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines() {
        let set: ScoreSet = serde_json::from_str(line).unwrap();
        let shock = set
            .get(ScoreKind::SepticShock)
            .map(|s| s.value)
            .unwrap_or(0.0);
        if shock >= 1.0 {
            seen.insert(set.bed.clone().unwrap_or_default());
        }
        // Every score set is computed at the arrival time it was triggered by (virtual time).
        assert!(set.scores.iter().all(|s| s.computed_at == set.at));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["BED03", "BED07"]);
}
