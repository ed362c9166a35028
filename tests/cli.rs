//! The `vigil` binary as a user runs it: validate, generate-config, replay, and the daemon with
//! its HTTP endpoints and graceful shutdown on SIGTERM, over real TCP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn validate_lists_every_fault_with_file_and_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("broken.toml");
    std::fs::write(
        &cfg,
        "[site]\ntimezone_offset_minutes = \"CET\"\n\n[http]\nlisten = \"nowhere\"\n\n[[source]]\nkind = \"replay\"\nname = \"r\"\npath = \"missing.jsonl\"\n\n[[alerting.sink]]\nkind = \"pager\"\n\n[paths]\nscoring = \"no-such-dir\"\n",
    )
    .unwrap();
    let out = vigil()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let shown = cfg.display().to_string();
    for needle in [
        format!("{shown}:2: [site]"),
        format!("{shown}:5: [http]"),
        format!("{shown}:7: [[source]] \"r\""),
        "unknown variant `pager`".to_string(),
        "no-such-dir".to_string(),
    ] {
        assert!(err.contains(&needle), "missing {needle:?} in:\n{err}");
    }
    assert!(err.lines().next().unwrap().contains("problem(s)"), "{err}");
}

#[test]
fn generated_config_validates_and_the_example_configs_are_valid() {
    let out = vigil().arg("generate-config").output().unwrap();
    assert!(out.status.success());
    // Saved at the repository root, its relative paths resolve.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.toml");
    let text = String::from_utf8(out.stdout).unwrap().replace(
        "path = \"replay-data/demo-icu.jsonl.gz\"",
        &format!("path = {:?}", repo().join("replay-data/demo-icu.jsonl.gz")),
    );
    std::fs::write(&cfg, text).unwrap();
    let v = vigil()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    for example in [
        "deploy/examples/replay.toml",
        "deploy/examples/mllp.toml",
        "deploy/examples/gateway.toml",
        "deploy/examples/mqtt.toml",
    ] {
        let v = vigil()
            .args(["validate", "--config"])
            .arg(repo().join(example))
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&v.stderr)
        );
    }
}

#[test]
fn every_command_has_help() {
    for cmd in [
        &[][..],
        &["demo"],
        &["replay"],
        &["run"],
        &["validate"],
        &["generate-config"],
        &["recording", "demo"],
        &["decode"],
        &["simulate-device"],
        &["send"],
    ] {
        let out = vigil().args(cmd).arg("--help").output().unwrap();
        assert!(out.status.success(), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{cmd:?}"
        );
    }
}

#[test]
fn replay_of_a_missing_or_corrupt_recording_is_a_clear_error() {
    let out = vigil()
        .args(["replay", "does-not-exist.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does-not-exist.jsonl does not exist"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"format\":\"something-else\",\"version\":1,\"sources\":[]}\n",
    )
    .unwrap();
    let out = vigil().arg("replay").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 1") && err.contains("something-else"),
        "{err}"
    );
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Reads stderr lines until one contains `needle`, returning it; keeps draining afterwards.
fn wait_for_line(child: &mut std::process::Child, needle: &str) -> String {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains(needle) {
                return line;
            }
        }
    }
    panic!("no stderr line with {needle:?}");
}

#[test]
fn run_serves_metrics_and_health_then_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.toml");
    let alerts = dir.path().join("alerts.jsonl");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n[[source]]\nkind = \"replay\"\nname = \"demo\"\npath = {:?}\nspeed = \"max\"\n[[alerting.sink]]\nkind = \"jsonl\"\npath = {:?}\n",
            repo().join("replay-data/demo-icu.jsonl.gz"),
            alerts
        ),
    )
    .unwrap();
    let mut child = vigil()
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = wait_for_line(&mut child, "/metrics /healthz /readyz");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = v["fields"]["local"].as_str().unwrap().to_string();
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    // Wait until the replay has drained, then read the counters.
    let deadline = Instant::now() + Duration::from_secs(120);
    let body = loop {
        let (_, body) = http_get(&addr, "/metrics");
        let done =
            "vigil_alerts_total{rule=\"septic_shock\",severity=\"critical\",state=\"active\"} 2";
        if body.contains(done) || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        body.contains("vigil_messages_received_total{protocol=\"hl7\",source=\"demo/monitors\"}"),
        "{body}"
    );
    assert!(body.contains("vigil_scores_computed_total{kind=\"sofa\"}"));
    assert!(body.contains("vigil_stage_latency_seconds_bucket{stage=\"normalize\""));
    assert!(body.contains(
        "vigil_alerts_total{rule=\"septic_shock\",severity=\"critical\",state=\"active\"} 2"
    ));
    // No patient identifiers in metric labels.
    assert!(!body.contains("V26001"), "PHI in metrics");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "vigil did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    let written = std::fs::read_to_string(&alerts).unwrap();
    assert!(
        written
            .lines()
            .filter(|l| l.contains("\"septic_shock\""))
            .count()
            >= 2
    );
    assert!(Path::new(&alerts).exists());
}

#[test]
fn rejected_messages_are_kept_and_listed_by_deadletters() {
    let dir = tempfile::tempdir().unwrap();
    let dl = dir.path().join("dl");
    let out = vigil()
        .args(["replay", "--no-console", "--dead-letters"])
        .arg(&dl)
        .arg(repo().join("replay-data/demo-icu.jsonl.gz"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = vigil()
        .args(["deadletters", "--dir"])
        .arg(&dl)
        .output()
        .unwrap();
    assert!(list.status.success());
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.starts_with("1 dead letter(s)"), "{text}");
    assert!(
        text.contains("replay/monitors") && text.contains("[missing] missing message type (MSH-9)"),
        "{text}"
    );
    // The raw message is shown as received: the truncated MSH.
    assert!(text.contains("MSH|^~\\&|"), "{text}");
    let json = vigil()
        .args(["deadletters", "--json", "--dir"])
        .arg(&dl)
        .output()
        .unwrap();
    let rec: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&json.stdout).trim()).unwrap();
    assert_eq!(rec["kind"], "missing");
}

#[test]
fn decode_turns_simulated_captures_into_coded_observations_with_statistics() {
    let dir = tempfile::tempdir().unwrap();
    for (protocol, code) in [
        ("intellivue", "\"147842\""),
        ("medibus", "\"152196\""),
        ("datex", "\"150456\""),
        ("profile:ivy-450c", "\"147842\""),
    ] {
        let capture = dir
            .path()
            .join(format!("{}.bin", protocol.replace(':', "_")));
        let made = vigil()
            .args([
                "simulate-device",
                "--protocol",
                protocol,
                "--seconds",
                "20",
                "--capture",
            ])
            .arg(&capture)
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "{protocol}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let out = vigil()
            .args([
                "decode",
                "--protocol",
                protocol,
                "--start",
                "2026-01-05T08:00:00Z",
                "--bed",
                "ICU-A/BED04",
                "--input",
            ])
            .arg(&capture)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{protocol}: {stderr}");
        assert!(
            stderr.contains(" frames, 0 checksum failures, 0 resyncs"),
            "{protocol}: {stderr}"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines.len() > 10, "{protocol}: {} observations", lines.len());
        assert!(stdout.contains(code), "{protocol}: no {code}");
        assert!(
            lines
                .iter()
                .all(|o| o["bed"] == "BED04" && o["ucum"].is_string()),
            "{protocol}"
        );

        // The same capture with bytes spoiled: counted, resynchronised, still decoded.
        let mut bytes = std::fs::read(&capture).unwrap();
        for i in (7..bytes.len()).step_by(97) {
            bytes[i] ^= 0x21;
        }
        let spoiled = dir.path().join("spoiled.bin");
        std::fs::write(&spoiled, &bytes).unwrap();
        let out = vigil()
            .args(["decode", "--protocol", protocol, "--quiet", "--input"])
            .arg(&spoiled)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let failures: u64 = ["checksum failures", "resyncs", "undecodable frames"]
            .iter()
            .filter_map(|what| {
                let end = stderr.find(what)?;
                stderr[..end]
                    .trim_end()
                    .rsplit(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        assert!(
            failures > 0,
            "{protocol}: spoiled bytes went unnoticed: {stderr}"
        );
    }
}

#[test]
fn decode_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"this is not a monitor").unwrap();
    let out = vigil()
        .args(["decode", "--protocol", "intellivue", "--input"])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no frame decoded"));
    let out = vigil()
        .args(["decode", "--protocol", "profile:nope", "--input"])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no device profile \"nope\"") && stderr.contains("ivy-450c"),
        "{stderr}"
    );
}

#[test]
fn a_bad_serial_source_is_reported_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[source]]\nkind = \"serial\"\nname = \"a\"\npath = \"/dev/ttyS9\"\ndriver = \"philips\"\n\n\
         [[source]]\nkind = \"serial\"\nname = \"b\"\npath = \"/dev/ttyS9\"\ndriver = \"medibus\"\ndata_bits = 9\n\
         reconnect_initial_ms = 100\nreconnect_max_ms = 10\ncapture = \"nowhere/cap.jsonl\"\n",
    )
    .unwrap();
    let out = vigil()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for fault in [
        "bad.toml:1: [[source]] \"a\": unknown driver \"philips\"",
        "bad.toml:7: [[source]] \"b\": data_bits 9",
        "reconnect_max_ms 10 is below",
        "capture: directory",
        "another source already reads /dev/ttyS9",
    ] {
        assert!(stderr.contains(fault), "missing {fault:?} in:\n{stderr}");
    }
}
