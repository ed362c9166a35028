//! Messages per second on one core for vigil and other Rust HL7 v2 parsers, on one corpus.
//!
//! Every parser does the same work: parse the message, read PID-3.1 and every OBX-5 (first
//! repetition, escapes resolved where the library resolves them). vigil is also measured doing
//! its real job, parse + decode + normalize into observations, and halfway (parse + decode into
//! the rows the normalizer reads).
//!
//! A cell's time is split into five slices run in turn with the other implementations; the
//! best slice is reported.
//!
//! Usage:
//!   vigil-bench-peers CORPUS_DIR [SECONDS_PER_CELL]     table as TSV on stdout
//!   vigil-bench-peers CORPUS_DIR --only NAME --iters N [--msg K]
//!                                 N runs of NAME over corpus message K (default 1), for callgrind

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use vigil::model::Timestamp;
use vigil::normalize::{NormalizeSettings, NormalizeTables, Normalizer};

/// Gives the normalizer a patient in the bed the corpus messages report, as in production.
const ADMIT: &str = "MSH|^~\\&|ADT|HOSP|VIGIL|ICU|20250301100000||ADT^A01^ADT_A01|A1|P|2.5\rEVN|A01|20250301100000\rPID|||HO2009001^^^^MR||Doe^Jane\rPV1||I|3 West ICU^3002^1||||||||||||||||V1\r";

type Runner = Box<dyn FnMut(&str) -> usize>;

fn vigil_parse(m: &str) -> usize {
    let Ok(msg) = vigil::protocol::hl7::parse(m.as_bytes()) else {
        return 0;
    };
    let mut n = msg
        .segment("PID")
        .map_or(0, |p| p.field(3).component(1).decoded().len());
    for s in msg.segments_named("OBX") {
        n += s.field(5).repetition(1).decoded().len();
    }
    n
}

/// The first two of vigil's three stages: the rows the normalizer reads, borrowed.
fn vigil_parse_decode(m: &str) -> usize {
    let Ok(msg) = vigil::protocol::hl7::parse(m.as_bytes()) else {
        return 0;
    };
    let opts = vigil::protocol::hl7::DecodeOptions::default();
    match vigil::protocol::hl7::decode_fields(&msg, &opts) {
        Ok(Some(r)) => r.groups.iter().map(|g| g.rows.len()).sum(),
        _ => 0,
    }
}

fn hl7_parser(m: &str) -> usize {
    let Ok(msg) = hl7_parser::Message::parse(m) else {
        return 0;
    };
    let mut n = msg
        .segment("PID")
        .and_then(|p| p.field(3))
        .and_then(|f| f.component(1))
        .map_or(0, |c| c.raw_value().len());
    for s in msg.segments().filter(|s| s.name == "OBX") {
        n += s
            .field(5)
            .and_then(|f| f.repeat(1))
            .map_or(0, |r| r.raw_value().len());
    }
    n
}

fn er7_read(msg: &hl7_2::er7::Message) -> usize {
    let seps = &msg.separators;
    let mut n = msg
        .segment("PID")
        .and_then(|p| p.component(3, 1))
        .and_then(|c| c.subcomponent(1))
        .map_or(0, |s| s.value(seps).len());
    for s in msg.segments_named("OBX") {
        n += s
            .field(5)
            .and_then(|f| f.repetition(1))
            .map_or(0, |r| r.to_text(seps).len());
    }
    n
}

fn er7(m: &str) -> usize {
    hl7_2::er7::parse(m).map_or(0, |msg| er7_read(&msg))
}

fn hl7_2(m: &str) -> usize {
    hl7_2::parse(m).map_or(0, |msg| er7_read(msg.raw()))
}

fn runners(receive: Timestamp) -> Vec<(&'static str, Runner)> {
    let mut normalizer = Normalizer::new(
        NormalizeTables::builtin().expect("built-in tables"),
        NormalizeSettings::default(),
    );
    normalizer
        .hl7("adt", ADMIT.as_bytes(), receive)
        .expect("admit");
    vec![
        ("vigil parse", Box::new(vigil_parse)),
        ("vigil parse+decode", Box::new(vigil_parse_decode)),
        (
            "vigil parse+normalize",
            Box::new(move |m: &str| {
                normalizer
                    .hl7("monitors", m.as_bytes(), receive)
                    .map_or(0, |n| n.records.len())
            }),
        ),
        ("er7 0.1.4 parse", Box::new(er7)),
        ("hl7-2 0.2.7 parse", Box::new(hl7_2)),
        ("hl7-parser 0.3.0 parse", Box::new(hl7_parser)),
    ]
}

/// Segments end in CR and no byte-order mark leads, for every parser (some accept only that);
/// the corpus files use CR, LF or CRLF and one starts with a BOM.
fn load(dir: &Path) -> Vec<(String, String)> {
    let list = std::fs::read_to_string(dir.join("corpus.txt")).expect("corpus.txt");
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|rel| {
            let raw = std::fs::read_to_string(dir.join(rel)).expect("corpus file");
            let text = raw
                .trim_start_matches('\u{feff}')
                .replace("\r\n", "\r")
                .replace('\n', "\r")
                .trim_end()
                .to_string();
            let name = Path::new(rel)
                .file_stem()
                .map_or(rel.to_string(), |s| s.to_string_lossy().into_owned());
            (name, text)
        })
        .collect()
}

/// Messages per second for `f` over `msgs`, run for at least `budget`.
fn rate(f: &mut Runner, msgs: &[&str], budget: Duration) -> f64 {
    // Warm up caches and the branch predictor.
    for m in msgs.iter().cycle().take(200) {
        black_box(f(black_box(m)));
    }
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        for m in msgs {
            black_box(f(black_box(m)));
        }
        n += msgs.len() as u64;
        let t = start.elapsed();
        if t >= budget {
            return n as f64 / t.as_secs_f64();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(1).map_or("benches/peers", String::as_str)).to_path_buf();
    let corpus = load(&dir);
    let receive = Timestamp::parse_rfc3339("2025-03-01T10:15:01Z").expect("time");
    let mut runners = runners(receive);

    if let Some(i) = args.iter().position(|a| a == "--only") {
        let name = args.get(i + 1).expect("--only NAME");
        let iters: usize = args
            .iter()
            .position(|a| a == "--iters")
            .and_then(|j| args.get(j + 1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(1000);
        let (_, f) = runners
            .iter_mut()
            .find(|(n, _)| n.starts_with(name.as_str()))
            .expect("known runner");
        // `--msg K`: the K-th corpus message (1-based; default the first).
        let k: usize = args
            .iter()
            .position(|a| a == "--msg")
            .and_then(|j| args.get(j + 1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let m = &corpus.get(k.saturating_sub(1)).expect("--msg within the corpus").1;
        let mut sink = 0;
        for _ in 0..iters {
            sink += f(black_box(m));
        }
        println!("{sink}");
        return;
    }

    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let budget = Duration::from_secs_f64(secs);
    // Check every parser reads every corpus message, so no rate is an error path's.
    for (name, f) in runners.iter_mut() {
        for (msg_name, m) in &corpus {
            if f(m) == 0 {
                eprintln!("warning: {name} read nothing from {msg_name}");
            }
        }
    }
    let mut header = vec!["impl".to_string()];
    header.extend(corpus.iter().map(|(n, _)| n.clone()));
    header.push("corpus".into());
    println!("{}", header.join("\t"));
    // Columns: each message alone, then the whole corpus in turn.
    let mut columns: Vec<Vec<&str>> = corpus.iter().map(|(_, m)| vec![m.as_str()]).collect();
    columns.push(corpus.iter().map(|(_, m)| m.as_str()).collect());
    // Every implementation gets ROUNDS slices of each column, interleaved, and is credited
    // with its best slice: on a shared machine, load and clock changes only ever slow a slice
    // down, so the best is the steadiest estimate, and interleaving gives every
    // implementation the same conditions.
    const ROUNDS: u32 = 5;
    let slice = budget / ROUNDS;
    let mut best = vec![vec![0f64; columns.len()]; runners.len()];
    for _ in 0..ROUNDS {
        for (c, msgs) in columns.iter().enumerate() {
            for (r, (_, f)) in runners.iter_mut().enumerate() {
                let v = rate(f, msgs, slice);
                if let Some(b) = best.get_mut(r).and_then(|row| row.get_mut(c)) {
                    *b = b.max(v);
                }
            }
        }
    }
    for ((name, _), rates) in runners.iter().zip(&best) {
        let mut row = vec![name.to_string()];
        row.extend(rates.iter().map(|v| format!("{v:.0}")));
        println!("{}", row.join("\t"));
    }
}
