//! Crash tests for the spool: a child process (this test binary, run again with an environment
//! variable) appends from 16 tasks, and optionally forwards and acknowledges, printing every
//! append that returned `Ok` and every acknowledgement it is about to make. The parent
//! SIGKILLs it mid-stream, reopens the directory and checks that every `Ok` append is there
//! exactly once and in order (unless it was acknowledged), and that nothing else comes back
//! but whole, valid records.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil::model::Timestamp;
use vigil::spool::{Spool, SpoolConfig, SpoolRecord};

const CHILD_ENV: &str = "VIGIL_SPOOL_CRASH_CHILD";
/// Hang protection only.
const HANG: Duration = Duration::from_secs(60);
const APPENDERS: u64 = 16;

fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        // Small segments, so that kills land around rolls and deletions too.
        segment_bytes: 4096,
        max_record_bytes: 1024,
        cursor_every_acks: 5,
        ..SpoolConfig::new(dir)
    }
}

fn key(task: u64) -> Vec<u8> {
    format!("t{task}").into_bytes()
}

/// A payload that names its task and index and has a length and content derived from them.
fn payload(task: u64, i: u64) -> Vec<u8> {
    let mut p = format!("{task}:{i}:").into_bytes();
    let len = (i * 37 + task * 11) % 400;
    p.extend((0..len).map(|j| b'a' + ((task + i + j) % 26) as u8));
    p
}

fn parse_payload(p: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(p).ok()?;
    let mut parts = text.splitn(3, ':');
    let task = parts.next()?.parse().ok()?;
    let i = parts.next()?.parse().ok()?;
    Some((task, i))
}

fn say(line: String) {
    // Straight to the pipe (not through the test harness's capture), one line per write.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The child: appends until killed (or until its own deadline, as hang protection).
#[test]
#[ignore = "helper run as a child process by the crash tests"]
fn spool_crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, mode) = spec.split_once('|').expect("spec");
    let forward = mode == "forward";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let spool = Arc::new(Spool::open(config(Path::new(dir))).await.expect("open"));
        let deadline = Instant::now() + HANG;
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..APPENDERS {
            let spool = spool.clone();
            tasks.spawn(async move {
                let mut i = 0;
                while Instant::now() < deadline {
                    let seq = spool
                        .append(&key(task), &payload(task, i))
                        .await
                        .expect("append");
                    say(format!("OK {seq} {task} {i}"));
                    i += 1;
                }
            });
        }
        if forward {
            let spool = spool.clone();
            tasks.spawn(async move {
                while Instant::now() < deadline {
                    let batch = spool.next_batch(20).await.expect("next_batch");
                    if let Some(last) = batch.last() {
                        say(format!("ACK {}", last.seq));
                        spool.ack(last.seq).await.expect("ack");
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

struct ChildRun {
    /// seq → (task, i) for every append the child saw succeed.
    ok: BTreeMap<u64, (u64, u64)>,
    /// The highest acknowledgement the child started.
    max_ack: u64,
}

fn run_child_and_kill(dir: &Path, mode: &str, kill_after: usize) -> ChildRun {
    let exe = std::env::current_exe().expect("current_exe");
    let log = std::fs::File::create(dir.with_extension("log")).expect("log");
    let mut child = Command::new(exe)
        .args([
            "spool_crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}|{mode}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut oks = 0;
    let started = Instant::now();
    while oks < kill_after {
        let Some(left) = HANG.checked_sub(started.elapsed()) else {
            break;
        };
        match rx.recv_timeout(left) {
            Ok(line) => {
                oks += usize::from(line.starts_with("OK "));
                lines.push(line);
            }
            Err(_) => break,
        }
    }
    child.kill().expect("SIGKILL"); // SIGKILL on Unix
    child.wait().expect("wait");
    reader.join().expect("reader thread");
    // Lines the child wrote before it died are still in the pipe.
    lines.extend(rx.try_iter());
    let log = std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default();
    assert!(
        oks >= kill_after,
        "the child produced only {oks} appends; its stderr:\n{log}"
    );

    let mut run = ChildRun {
        ok: BTreeMap::new(),
        max_ack: 0,
    };
    for line in &lines {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["OK", seq, task, i] => {
                let parse = |s: &str| s.parse::<u64>().expect("number");
                let previous = run.ok.insert(parse(seq), (parse(task), parse(i)));
                assert!(previous.is_none(), "seq {seq} acknowledged to two appends");
            }
            ["ACK", seq] => run.max_ack = run.max_ack.max(seq.parse().expect("number")),
            _ => {} // the test harness's own lines
        }
    }
    run
}

fn reopen_and_read(dir: &Path) -> (Vec<SpoolRecord>, vigil::spool::SpoolStats) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(HANG, async {
            let spool = Spool::open(config(dir)).await.expect("reopen");
            let mut records = Vec::new();
            loop {
                let batch = spool.peek_batch(100).await.expect("peek");
                let Some(last) = batch.last() else { break };
                spool.ack(last.seq).await.expect("ack");
                records.extend(batch);
            }
            let stats = spool.stats(Timestamp::from_millis(0));
            spool.close().await.expect("close");
            (records, stats)
        })
        .await
        .expect("reading back hung")
    })
}

fn check(dir: &Path, run: &ChildRun, forward: bool) {
    let (records, stats) = reopen_and_read(dir);
    eprintln!(
        "{}: {} appends returned Ok, child acked up to {}, {} records back from {:?}, {} torn tails",
        dir.display(),
        run.ok.len(),
        run.max_ack,
        records.len(),
        records.first().map(|r| r.seq.0),
        stats.torn_tails
    );
    assert_eq!(stats.corruptions, 0, "a kill is not corruption");

    // In order, no duplicates, nothing but whole valid records.
    assert!(
        records.windows(2).all(|w| w[0].seq < w[1].seq),
        "records out of order or repeated"
    );
    let mut last_i: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &records {
        let (task, i) = parse_payload(&r.payload).expect("payload names task and index");
        assert_eq!(r.key, key(task), "seq {}", r.seq);
        assert_eq!(
            r.payload,
            payload(task, i),
            "seq {}: garbage payload",
            r.seq
        );
        if let Some(prev) = last_i.insert(task, i) {
            assert!(prev < i, "task {task}: index {i} after {prev}");
        }
    }

    let by_seq: BTreeMap<u64, &SpoolRecord> = records.iter().map(|r| (r.seq.0, r)).collect();
    // Records before the first one delivered must have been acknowledged by the child.
    let floor = records.first().map_or(u64::MAX, |r| r.seq.0);
    for (&seq, &(task, i)) in &run.ok {
        if forward && seq < floor {
            assert!(
                seq <= run.max_ack,
                "seq {seq} was appended, never acknowledged, and is gone"
            );
            continue;
        }
        let r = by_seq
            .get(&seq)
            .unwrap_or_else(|| panic!("seq {seq} returned Ok to its appender and is gone"));
        assert_eq!(
            r.payload,
            payload(task, i),
            "seq {seq} holds another record"
        );
    }
    if !forward {
        assert_eq!(floor, 1, "nothing was acknowledged, everything is there");
    }
    // Appending after the crash goes on after the last record.
    let last = records.last().map_or(0, |r| r.seq.0);
    let max_ok = run.ok.keys().next_back().copied().unwrap_or(0);
    assert!(last >= max_ok);
}

fn crash_test(mode: &str, kill_points: &[usize]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    for &kill_after in kill_points {
        let dir = tmp.path().join(format!("{mode}-{kill_after}"));
        let run = run_child_and_kill(&dir, mode, kill_after);
        check(&dir, &run, mode == "forward");
        // A second crash on the recovered directory.
        let again = run_child_and_kill(&dir, mode, kill_after / 2 + 1);
        check(&dir, &again, true);
    }
}

#[test]
fn sigkill_while_appending_loses_no_acknowledged_append() {
    crash_test("append", &[1, 60, 400]);
}

#[test]
fn sigkill_while_appending_and_forwarding_loses_nothing_unacknowledged() {
    crash_test("forward", &[30, 300, 900]);
}
