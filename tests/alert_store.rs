//! The alert store's contract, run against both back ends: SQLite in a file (the default), and
//! PostgreSQL on a cluster this test creates and starts itself (`initdb` + `pg_ctl` from
//! Debian's `postgresql` package, on a free loopback port, in a temporary directory; stopped
//! and deleted at the end). scripts/test.sh installs the package when it is missing.
//!
//! What must hold for both: an episode's latest state replaces the earlier one, its history
//! keeps every transition in order, the audit trail is newest first and filterable by alert,
//! list filters and ordering, and everything survives closing and reopening the store.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use vigil::alerting::store::AlertStore;
use vigil::alerting::{AlertFilter, AlertView, AuditEntry};
use vigil::model::Timestamp;

const T0: i64 = 1_767_614_400_000; // 2026-01-05T12:00:00Z

fn view(
    id: &str,
    patient: &str,
    bed: &str,
    state: &str,
    transition: &str,
    at_min: i64,
) -> AlertView {
    let at = Timestamp::from_millis(T0 + at_min * 60_000);
    let raised = Timestamp::from_millis(T0);
    serde_json::from_value(serde_json::json!({
        "id": id,
        "patient": patient,
        "bed": bed,
        "unit": "ICU-A",
        "rule": "septic_shock",
        "severity": "critical",
        "state": state,
        "raised_at": raised,
        "updated_at": at,
        "explanation": format!("{id} {transition}"),
        "evidence": [],
        "acknowledged_by": if state == "acknowledged" { Some("dr.chen") } else { None },
        "acknowledged_at": if state == "acknowledged" { Some(at) } else { None },
        "escalation_level": 0,
        "rules": ["septic_shock"],
        "transition": transition,
        "by": if transition == "acknowledged" { "dr.chen" } else { "system" },
        "notifications": 1,
    }))
    .expect("an AlertView from JSON")
}

fn audit(alert: &str, user: &str, action: &str, from: &str, to: &str, at_min: i64) -> AuditEntry {
    AuditEntry {
        at: Timestamp::from_millis(T0 + at_min * 60_000),
        user: user.into(),
        role: "clinician".into(),
        action: action.into(),
        alert_id: alert.into(),
        from: from.into(),
        to: to.into(),
        note: Some(format!("{action} from the bedside")),
        peer: Some("10.1.2.3:51000".into()),
    }
}

/// Writes a known set of episodes, then checks what the store gives back.
async fn write_fixture(store: &AlertStore) {
    store
        .record(&view("a1", "P1", "BED01", "active", "raised", 0), None)
        .await
        .expect("record a1 raised");
    store
        .record(&view("a2", "P2", "BED02", "active", "raised", 1), None)
        .await
        .expect("record a2 raised");
    store
        .record(
            &view("a1", "P1", "BED01", "acknowledged", "acknowledged", 5),
            Some(&audit(
                "a1",
                "dr.chen",
                "acknowledge",
                "active",
                "acknowledged",
                5,
            )),
        )
        .await
        .expect("record a1 acknowledged");
    store
        .record(&view("a3", "P3", "BED03", "resolved", "resolved", 7), None)
        .await
        .expect("record a3 resolved");
    store
        .record(
            &view("a2", "P2", "BED02", "escalated", "escalated", 9),
            Some(&audit("a2", "system", "escalate", "active", "escalated", 9)),
        )
        .await
        .expect("record a2 escalated");
}

async fn check_fixture(store: &AlertStore) {
    // The latest state of each episode, newest change first.
    let all = store.list(&AlertFilter::default()).await.expect("list");
    let ids: Vec<(&str, &str)> = all
        .iter()
        .map(|v| (v.id.as_str(), v.state.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("a2", "escalated"),
            ("a3", "resolved"),
            ("a1", "acknowledged")
        ],
        "one row per episode, its latest state, newest first"
    );
    let a1 = &all[2];
    assert_eq!(a1.acknowledged_by.as_deref(), Some("dr.chen"));

    // Filters.
    let f =
        |state: Option<&str>, patient: Option<&str>, bed: Option<&str>, limit: usize| AlertFilter {
            state: state.map(str::to_string),
            patient: patient.map(str::to_string),
            bed: bed.map(str::to_string),
            limit,
        };
    let escalated = store
        .list(&f(Some("escalated"), None, None, 0))
        .await
        .expect("by state");
    assert_eq!(escalated.len(), 1);
    assert_eq!(escalated[0].id, "a2");
    let p1 = store
        .list(&f(None, Some("P1"), None, 0))
        .await
        .expect("by patient");
    assert_eq!(p1.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["a1"]);
    let bed3 = store
        .list(&f(None, None, Some("BED03"), 0))
        .await
        .expect("by bed");
    assert_eq!(
        bed3.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
        ["a3"]
    );
    let one = store.list(&f(None, None, None, 1)).await.expect("limit");
    assert_eq!(one.len(), 1);
    assert!(store
        .list(&f(Some("active"), None, None, 0))
        .await
        .expect("none active")
        .is_empty());

    // Open episodes (reloaded into the lifecycle at start): not the resolved one.
    let mut open: Vec<String> = store
        .open_alerts()
        .await
        .expect("open")
        .into_iter()
        .map(|v| v.id)
        .collect();
    open.sort();
    assert_eq!(open, ["a1", "a2"]);

    // History, oldest first, every transition kept.
    let (latest, history) = store.get("a1").await.expect("get").expect("a1 exists");
    assert_eq!(latest.state.as_str(), "acknowledged");
    let steps: Vec<(String, String)> = history
        .iter()
        .map(|h| (h.state.clone(), h.by.clone()))
        .collect();
    assert_eq!(
        steps,
        [
            ("active".to_string(), "system".to_string()),
            ("acknowledged".to_string(), "dr.chen".to_string())
        ]
    );
    assert!(history[0].at < history[1].at);
    assert!(store.get("nope").await.expect("get missing").is_none());

    // Audit: newest first; per alert; who, what, from where.
    let trail = store.audit(None, 0).await.expect("audit");
    assert_eq!(
        trail
            .iter()
            .map(|a| (a.alert_id.as_str(), a.user.as_str(), a.action.as_str()))
            .collect::<Vec<_>>(),
        [
            ("a2", "system", "escalate"),
            ("a1", "dr.chen", "acknowledge")
        ]
    );
    let a1_trail = store.audit(Some("a1"), 0).await.expect("audit a1");
    assert_eq!(a1_trail.len(), 1);
    assert_eq!(
        a1_trail[0],
        audit("a1", "dr.chen", "acknowledge", "active", "acknowledged", 5),
        "the audit entry comes back as written"
    );
}

#[tokio::test]
async fn sqlite_store_keeps_states_history_and_audit_across_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("alerts.sqlite");
    {
        let store = AlertStore::sqlite(&path).expect("open");
        write_fixture(&store).await;
        check_fixture(&store).await;
    }
    let reopened = AlertStore::sqlite(&path).expect("reopen");
    check_fixture(&reopened).await;
}

/// A PostgreSQL cluster of this test's own; stopped and removed on drop.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

fn postgres_bin() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .max();
    found.unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed: this test starts a \
             cluster of its own; scripts/test.sh installs Debian's postgresql package"
        )
    })
}

/// Runs a PostgreSQL program, as the `postgres` user when this process is root (initdb and
/// the server refuse to run as root).
fn pg_command(bin: &Path, program: &str) -> Command {
    let exe = bin.join(program);
    if common::running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

impl Postgres {
    fn start() -> Postgres {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        // The server's user must own its directory.
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let out = pg_command(&bin, "initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "vigil",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = common::free_port();
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            dir.path().display()
        );
        let out = pg_command(&bin, "pg_ctl")
            .args(["-w", "-t", "60", "-o", &opts, "-l"])
            .arg(dir.path().join("server.log"))
            .arg("-D")
            .arg(&data)
            .arg("start")
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Postgres {
            bin,
            data,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("postgres://vigil@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = pg_command(&self.bin, "pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .output();
    }
}

#[tokio::test]
async fn postgres_store_keeps_states_history_and_audit_across_a_reconnect() {
    let pg = Postgres::start();
    {
        let store = AlertStore::postgres(&pg.url(), None)
            .await
            .expect("connect to the test's own PostgreSQL");
        assert_eq!(store.kind(), "postgres");
        write_fixture(&store).await;
        check_fixture(&store).await;
    }
    // A new connection (an alerter restart) sees the same; creating the tables again is a
    // no-op.
    let again = AlertStore::postgres(&pg.url(), None)
        .await
        .expect("reconnect");
    check_fixture(&again).await;
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error() {
    let port = common::free_port();
    let err =
        match AlertStore::postgres(&format!("postgres://vigil@127.0.0.1:{port}/x"), None).await {
            Ok(_) => panic!("nothing listens there"),
            Err(e) => e.to_string(),
        };
    assert!(err.contains("postgres"), "{err}");
}
