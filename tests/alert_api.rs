//! The alert API over real HTTP: the demo recording replayed into a SQLite-backed alert
//! service, then login, roles (a viewer may read but not acknowledge), acknowledgement with the
//! audit trail (user, action, time, peer), and a restart that keeps the acknowledgement.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use vigil::alerting::AlertService;
use vigil::app::{self, run_pipeline, ReplayInput, RunOptions, SourcePlan};
use vigil::config::{Config, Speed};
use vigil::telemetry::Metrics;
use vigil::web::auth::hash_password;
use vigil::web::{AuthStore, WebState};

const NURSE_PW: &str = "correct horse battery staple";
const STUDENT_PW: &str = "viewer only";
const WALLBOARD_TOKEN: &str = "0f9e8d7c6b5a49382716f5e4d3c2b1a00f9e8d7c6b5a49382716f5e4d3c2b1a0";

fn config(dir: &Path) -> Config {
    let token_sha = Sha256::digest(WALLBOARD_TOKEN.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let src = format!(
        "[storage]\ndir = {:?}\n\n[alerting]\nescalate_after_minutes = 15\nrenotify_minutes = 30\n\n\
         [[web.user]]\nname = \"nurse\"\nrole = \"clinician\"\npassword_pbkdf2 = {:?}\n\n\
         [[web.user]]\nname = \"student\"\nrole = \"viewer\"\npassword_pbkdf2 = {:?}\n\n\
         [[web.user]]\nname = \"wallboard\"\nrole = \"viewer\"\ntoken_sha256 = {:?}\n",
        dir.join("data"),
        hash_password(NURSE_PW),
        hash_password(STUDENT_PW),
        token_sha
    );
    Config::from_str("test.toml", &src, dir).unwrap()
}

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

async fn serve(cfg: &Config, metrics: Arc<Metrics>, alerts: Arc<AlertService>) -> Server {
    let auth = AuthStore::from_config(&cfg.web.user, cfg.web.session_minutes).unwrap();
    let stop = CancellationToken::new();
    let state = WebState {
        metrics,
        auth: Arc::new(auth),
        alerts: Some(alerts),
        live: None,
    };
    let (addr, handle) = vigil::web::serve("127.0.0.1:0".parse().unwrap(), state, stop.clone())
        .await
        .unwrap();
    Server { addr, stop, handle }
}

async fn login(c: &reqwest::Client, addr: SocketAddr, user: &str, pw: &str) -> String {
    let r = c
        .post(format!("http://{addr}/api/login"))
        .json(&json!({"user": user, "password": pw}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["user"], user);
    cookie.split(';').next().unwrap().to_string()
}

async fn get(
    c: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    cookie: &str,
) -> (StatusCode, Value) {
    let r = c
        .get(format!("http://{addr}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn post(
    c: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    cookie: &str,
    body: Value,
) -> (StatusCode, Value) {
    let r = c
        .post(format!("http://{addr}{path}"))
        .header("cookie", cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_acknowledgement_audit_and_a_restart_that_keeps_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let metrics = Arc::new(Metrics::new());
    let alerts = app::alert_service(&cfg, &metrics, false).await.unwrap();
    let server = serve(&cfg, metrics.clone(), alerts.clone()).await;
    let addr = server.addr;

    // The demo recording through the whole pipeline into the service.
    let plan = vec![SourcePlan::replay(
        "demo",
        ReplayInput::File(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("replay-data/demo-icu.jsonl.gz"),
        ),
        Speed::Max,
    )];
    let opts = RunOptions {
        alerts: Some(alerts.clone()),
        ..RunOptions::default()
    };
    let report = run_pipeline(&cfg, plan, opts, metrics.clone(), CancellationToken::new())
        .await
        .unwrap();
    assert!(report.alerts_active > 0);

    let c = reqwest::Client::new();
    // Unauthenticated: the API refuses with a JSON error, the operations endpoints answer.
    let (s, body) = get(&c, addr, "/api/alerts", "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body["error"].is_string());
    assert_eq!(
        c.get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let bad = c
        .post(format!("http://{addr}/api/login"))
        .json(&json!({"user": "nurse", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);

    // A viewer reads: the septic patient in bed 3 has one episode, not one per rule.
    let student = login(&c, addr, "student", STUDENT_PW).await;
    let (s, list) = get(&c, addr, "/api/alerts?bed=BED03", &student).await;
    assert_eq!(s, StatusCode::OK);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{list:#?}");
    let ep = &list[0];
    assert_eq!(ep["severity"], "critical");
    assert_eq!(ep["rule"], "septic_shock");
    let rules: Vec<&str> = ep["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        rules.contains(&"septic_shock") && rules.contains(&"qsofa"),
        "{rules:?}"
    );
    // Not acknowledged within 15 minutes of alert time: escalated by the timer.
    assert_eq!(ep["state"], "escalated");
    assert!(ep["raised_at"].as_str().unwrap().ends_with('Z'));
    let id = ep["id"].as_str().unwrap().to_string();

    // A viewer may not acknowledge.
    let (s, body) = post(
        &c,
        addr,
        &format!("/api/alerts/{id}/acknowledge"),
        &student,
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("clinician"));
    // A program with a bearer token is who its token says.
    let me: Value = c
        .get(format!("http://{addr}/api/me"))
        .bearer_auth(WALLBOARD_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me, json!({"user": "wallboard", "role": "viewer"}));

    // A clinician acknowledges, with a note.
    let nurse = login(&c, addr, "nurse", NURSE_PW).await;
    let mut events = alerts.subscribe();
    let (s, acked) = post(
        &c,
        addr,
        &format!("/api/alerts/{id}/acknowledge"),
        &nurse,
        json!({"note": "seen, fluids started"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "nurse");
    let ev = events.recv().await.unwrap();
    assert_eq!(
        (ev.id.as_str(), ev.transition.as_str()),
        (id.as_str(), "acknowledged")
    );
    // Twice is a conflict; an unknown id is not found.
    let (s, _) = post(
        &c,
        addr,
        &format!("/api/alerts/{id}/acknowledge"),
        &nurse,
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = post(
        &c,
        addr,
        "/api/alerts/ffffffffffffffff/acknowledge",
        &nurse,
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The audit trail: who, what, when, from where; readable by a viewer.
    let (s, audit) = get(&c, addr, &format!("/api/audit?alert={id}"), &student).await;
    assert_eq!(s, StatusCode::OK);
    let audit = audit.as_array().unwrap();
    let entry = audit.iter().find(|e| e["user"] == "nurse").unwrap();
    assert_eq!(entry["action"], "acknowledge");
    assert_eq!(entry["from"], "escalated");
    assert_eq!(entry["to"], "acknowledged");
    assert_eq!(entry["note"], "seen, fluids started");
    assert!(entry["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(entry["at"].as_str().unwrap().starts_with("2026-01-0"));
    // The timer's escalation is in it too.
    assert!(audit
        .iter()
        .any(|e| e["user"] == "system" && e["action"] == "escalate"));
    let (_, one) = get(&c, addr, &format!("/api/alerts/{id}"), &student).await;
    let hist: Vec<&str> = one["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["transition"].as_str())
        .collect();
    assert_eq!(hist.first(), Some(&"raised"));
    assert_eq!(hist.last(), Some(&"acknowledged"));
    assert!(
        hist.contains(&"severity_raised") && hist.contains(&"escalated"),
        "{hist:?}"
    );

    // Burden figures: fewer episodes than rule alerts, one acknowledgement.
    let (_, b) = get(&c, addr, "/api/burden", &student).await;
    assert!(
        b["episodes"].as_u64().unwrap() < b["rule_alerts"].as_u64().unwrap(),
        "{b}"
    );
    assert_eq!(b["acknowledged"], 1);
    assert!(b["patient_days"].as_f64().unwrap() > 5.0, "{b}");
    let m = metrics.render();
    assert!(
        m.contains("vigil_alert_episodes_total{rule=\"news2_medium\"}"),
        "{m}"
    );
    assert!(
        m.contains("vigil_alert_time_to_acknowledge_seconds_count 1"),
        "{m}"
    );

    // Logging out ends the session.
    let r = c
        .post(format!("http://{addr}/api/logout"))
        .header("cookie", &nurse)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, _) = get(&c, addr, "/api/me", &nurse).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Restart: a new service and server over the same store.
    server.stop.cancel();
    server.handle.await.unwrap();
    drop(alerts);
    let metrics = Arc::new(Metrics::new());
    let alerts = app::alert_service(&cfg, &metrics, false).await.unwrap();
    let server = serve(&cfg, metrics, alerts.clone()).await;
    let addr = server.addr;
    let nurse = login(&c, addr, "nurse", NURSE_PW).await;
    let (s, one) = get(&c, addr, &format!("/api/alerts/{id}"), &nurse).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["state"], "acknowledged");
    assert_eq!(one["acknowledged_by"], "nurse");
    let (_, audit) = get(&c, addr, &format!("/api/audit?alert={id}"), &nurse).await;
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["user"] == "nurse"));
    // The episode is open again in the lifecycle: still acknowledged, and it can be escalated.
    let (s, _) = post(
        &c,
        addr,
        &format!("/api/alerts/{id}/acknowledge"),
        &nurse,
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, esc) = post(
        &c,
        addr,
        &format!("/api/alerts/{id}/escalate"),
        &nurse,
        json!({"note": "needs ICU consultant"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{esc}");
    assert_eq!(esc["state"], "escalated");
    assert_eq!(esc["acknowledged_by"], "nurse");
    let (s, res) = post(
        &c,
        addr,
        &format!("/api/alerts/{id}/resolve"),
        &nurse,
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(res["state"], "resolved");
    let (_, open) = get(&c, addr, "/api/alerts?bed=BED03&state=resolved", &nurse).await;
    assert_eq!(open.as_array().unwrap().len(), 1);
    let (s, _) = get(&c, addr, "/api/alerts?state=bogus", &nurse).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    server.stop.cancel();
    server.handle.await.unwrap();
}
