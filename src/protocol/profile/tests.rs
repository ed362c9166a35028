use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::model::Timestamp;
use crate::protocol::device::{DeviceCode, DeviceEvent, DeviceReading, FrameStats, ReadingValue};

fn t0() -> Timestamp {
    Timestamp::from_millis(1_767_600_000_000)
}

fn builtin(name: &str) -> Arc<DeviceProfile> {
    ProfileSet::builtin()
        .get(name)
        .unwrap_or_else(|| panic!("no built-in profile {name}"))
}

fn profile(src: &str) -> Arc<DeviceProfile> {
    match DeviceProfile::parse("test.toml", src) {
        Ok(p) => Arc::new(p),
        Err(e) => panic!("{}", Problems(e)),
    }
}

/// Feeds `chunks` to a fresh driver; returns its events and counters.
fn run(p: &Arc<DeviceProfile>, chunks: &[&[u8]]) -> (Vec<DeviceEvent>, FrameStats, u64) {
    let mut d = ProfileDriver::new(Arc::clone(p));
    let mut events = Vec::new();
    let mut out = Vec::new();
    for c in chunks {
        d.on_bytes(c, t0(), &mut events, &mut out);
    }
    (events, d.stats(), d.unavailable())
}

fn readings(events: &[DeviceEvent]) -> Vec<&DeviceReading> {
    events
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::Report(r) => Some(r.readings.iter()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn reports(events: &[DeviceEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, DeviceEvent::Report(_)))
        .count()
}

fn mdc(r: &DeviceReading) -> u32 {
    match &r.code {
        DeviceCode::Mdc { code, .. } => *code,
        other => panic!("not MDC: {other}"),
    }
}

fn num(r: &DeviceReading) -> f64 {
    r.value.as_f64().unwrap_or(f64::NAN)
}

/// Bytes ≥ 0x80, as an Ivy's waveform samples.
fn waveform(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| 0x80 | ((i as u8).wrapping_mul(37).wrapping_add(seed) & 0x7F))
        .collect()
}

fn ivy_stream() -> (Vec<u8>, u64) {
    let lines: [&[u8]; 5] = [
        b"HR=1;80;ECG-II-DIAG;\r\n",
        b"SPO2=2;97;PLETH;\r\n",
        b"NIBP=4;121;75;92;80;;\r\n",
        b"RESP=3;16;IMP;\r\n",
        b"TEMP=5;36.8;T1;\r\n",
    ];
    let mut bytes = Vec::new();
    let mut skipped = 0;
    for (i, l) in lines.iter().enumerate() {
        let w = waveform(10 + i * 7, i as u8);
        skipped += w.len() as u64;
        bytes.extend_from_slice(&w);
        bytes.extend_from_slice(l);
    }
    (bytes, skipped)
}

#[test]
fn shipped_profiles_parse() {
    for (file, src) in BUILTIN {
        if let Err(e) = DeviceProfile::parse(file, src) {
            panic!("{}", Problems(e));
        }
    }
    let set = ProfileSet::builtin();
    assert_eq!(set.names(), vec!["ascii-pump", "ivy-450c"]);
    let ivy = builtin("ivy-450c");
    assert_eq!(ivy.serial.baud, 9600);
    assert_eq!(ivy.serial.flow_control, FlowControl::None);
    assert!(ivy.skip.contains(0x80) && ivy.skip.contains(0xFF) && !ivy.skip.contains(b'H'));
    assert!(ivy.simulate.is_some());
    let pump = builtin("ascii-pump");
    assert_eq!(pump.session.polls.len(), 1);
    assert!(pump.session.on_connect.is_empty());
    assert_eq!(ProfileDriver::new(pump).protocol(), "profile:ascii-pump");
}

#[test]
fn the_shipped_directory_validates_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PROFILES_DIR);
    let problems = validate_dir(&dir);
    assert!(problems.is_empty(), "{}", Problems(problems));
}

#[test]
fn ivy_lines_between_waveform_bytes_decode_to_codes_values_and_units() {
    let p = builtin("ivy-450c");
    let (bytes, skipped) = ivy_stream();
    let (events, stats, unavailable) = run(&p, &[&bytes]);
    assert_eq!(events.first(), Some(&DeviceEvent::Connected));
    assert_eq!(reports(&events), 5, "one report per line");
    let got: Vec<(u32, f64, &str, Option<&str>)> = readings(&events)
        .iter()
        .map(|r| (mdc(r), num(r), r.unit.as_str(), r.label.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (147842, 80.0, "/min", Some("HR")),
            (150456, 97.0, "%", Some("SPO2")),
            (150021, 121.0, "mm[Hg]", Some("NIBP-SYS")),
            (150022, 75.0, "mm[Hg]", Some("NIBP-DIA")),
            (150023, 92.0, "mm[Hg]", Some("NIBP-MEAN")),
            (149546, 80.0, "/min", Some("NIBP-PR")),
            (151562, 16.0, "/min", Some("RESP")),
            (150344, 36.8, "Cel", Some("TEMP")),
        ]
    );
    assert_eq!(
        stats,
        FrameStats {
            frames: 5,
            skipped_bytes: skipped,
            ..FrameStats::default()
        },
        "waveform bytes are skipped, not resyncs"
    );
    assert_eq!(unavailable, 0);
}

#[test]
fn waveform_bytes_inside_a_line_are_skipped_too() {
    let p = builtin("ivy-450c");
    let (events, stats, _) = run(&p, &[b"HR=1;8\x90\xA1\xFF2;ECG;\r\n"]);
    assert_eq!(
        readings(&events).iter().map(|r| num(r)).collect::<Vec<_>>(),
        vec![82.0]
    );
    assert_eq!(stats.skipped_bytes, 3);
    assert_eq!(stats.resyncs, 0);
}

#[test]
fn cr_only_and_lf_only_devices_frame_on_a_crlf_profile() {
    let p = builtin("ivy-450c");
    let (events, stats, _) = run(&p, &[b"HR=1;70;X;\nHR=1;71;X;\r\n\r\nHR=1;72;X;\n"]);
    assert_eq!(
        readings(&events).iter().map(|r| num(r)).collect::<Vec<_>>(),
        vec![70.0, 71.0, 72.0]
    );
    assert_eq!(stats.frames, 3);
}

/// Every way of splitting `bytes` in two gives the same events and counters as one read, and so
/// does a byte at a time.
fn assert_split_invariant(p: &Arc<DeviceProfile>, bytes: &[u8]) {
    let whole = run(p, &[bytes]);
    assert!(whole.1.frames > 0);
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(run(p, &[a, b]), whole, "split at {at}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(p, &singles), whole, "byte at a time");
}

#[test]
fn split_reads_at_every_offset_decode_the_same() {
    let (ivy_bytes, _) = ivy_stream();
    assert_split_invariant(&builtin("ivy-450c"), &ivy_bytes);
    let pump = builtin("ascii-pump");
    let mut pump_bytes = Vec::new();
    encode(&pump, b"P1;norepinephrine;12.5;0.064;RUN", &mut pump_bytes).unwrap();
    pump_bytes.extend_from_slice(b"\x00junk");
    encode(&pump, b"P2;propofol;15;10;RUN", &mut pump_bytes).unwrap();
    assert_split_invariant(&pump, &pump_bytes);
    let lp = length_prefixed();
    let mut lp_bytes = Vec::new();
    encode(&lp, b"HR 072", &mut lp_bytes).unwrap();
    lp_bytes.push(0x99);
    encode(&lp, b"HR 073", &mut lp_bytes).unwrap();
    assert_split_invariant(&lp, &lp_bytes);
}

#[test]
fn the_pump_frame_checksum_is_sum8_hex_over_content_and_etx() {
    let pump = builtin("ascii-pump");
    let mut out = Vec::new();
    encode(&pump, b"P1;norepinephrine;12.5;0.064;RUN", &mut out).unwrap();
    let sum = b"P1;norepinephrine;12.5;0.064;RUN\x03"
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b));
    let mut want = b"\x02P1;norepinephrine;12.5;0.064;RUN\x03".to_vec();
    want.extend_from_slice(format!("{sum:02X}").as_bytes());
    assert_eq!(out, want);
    let (events, stats, _) = run(&pump, &[&out]);
    let r = readings(&events);
    assert_eq!(stats.frames, 1);
    assert_eq!(r.len(), 4);
    assert!(
        r.iter().all(|r| r.channel.as_deref() == Some("1")),
        "one channel"
    );
    assert_eq!(r[0].code, DeviceCode::mdc(184330, "MDC_DRUG_NAME_TYPE"));
    assert_eq!(r[0].value, ReadingValue::Text("norepinephrine".into()));
    assert_eq!(
        (mdc(r[1]), num(r[1]), r[1].unit.as_str()),
        (157784, 12.5, "mL/h")
    );
    assert_eq!(
        (mdc(r[2]), num(r[2]), r[2].unit.as_str()),
        (157760, 0.064, "mg/mL")
    );
    assert_eq!(
        r[3].code,
        DeviceCode::Local {
            code: "PUMP_STATE".into()
        }
    );
    assert_eq!(r[3].value, ReadingValue::Text("RUN".into()));
}

#[test]
fn checksum_failures_are_counted_and_the_next_frame_decodes() {
    let pump = builtin("ascii-pump");
    let mut good = Vec::new();
    encode(&pump, b"P1;norepinephrine;12.5;0.064;RUN", &mut good).unwrap();
    // One content byte changed: the checksum no longer matches.
    let mut bad = good.clone();
    if let Some(b) = bad.iter_mut().find(|b| **b == b'5') {
        *b = b'6';
    }
    // The checksum cut short by the next frame's STX.
    let mut cut = good.clone();
    cut.truncate(cut.len() - 1);
    let stream = [bad.as_slice(), cut.as_slice(), good.as_slice()].concat();
    let (events, stats, _) = run(&pump, &[&stream]);
    assert_eq!(stats.checksum_failures, 2);
    assert_eq!(stats.frames, 1);
    assert_eq!(reports(&events), 1);
    assert_eq!(
        num(readings(&events)[1]),
        12.5,
        "the good frame, not the bad one"
    );
}

#[test]
fn oversize_lines_resync_and_stay_bounded() {
    let p = builtin("ivy-450c");
    let mut d = ProfileDriver::new(Arc::clone(&p));
    let mut events = Vec::new();
    let mut out = Vec::new();
    let long = vec![b'A'; 300];
    for chunk in long.chunks(7) {
        d.on_bytes(chunk, t0(), &mut events, &mut out);
        assert!(d.buffered() <= p.max_frame + 1, "held {}", d.buffered());
    }
    d.on_bytes(b"\r\nHR=1;64;X;\r\n", t0(), &mut events, &mut out);
    let s = d.stats();
    assert_eq!(s.resyncs, 1);
    assert_eq!(
        s.discarded_bytes, 302,
        "the whole bad line and its terminator"
    );
    assert_eq!(s.frames, 1);
    assert_eq!(
        readings(&events).iter().map(|r| num(r)).collect::<Vec<_>>(),
        vec![64.0]
    );

    // An STX frame that never ends is dropped at the cap; the next one decodes.
    let pump = builtin("ascii-pump");
    let mut stream = vec![0x02];
    stream.extend(std::iter::repeat_n(b'x', 200));
    encode(&pump, b"P1;x;1;1;RUN", &mut stream).unwrap();
    let (events, stats, _) = run(&pump, &[&stream]);
    assert_eq!(stats.resyncs, 1);
    assert_eq!(stats.frames, 1);
    assert_eq!(reports(&events), 1);
}

#[test]
fn no_value_markers_are_counted_not_emitted() {
    let p = builtin("ivy-450c");
    let (events, stats, unavailable) = run(
        &p,
        &[b"HR=1;---;ECG;\r\nSPO2=2;-1;PLETH;\r\nNIBP=4;121;75;92;;;\r\nRESP=3;;IMP;\r\n"],
    );
    assert_eq!(unavailable, 4);
    let r = readings(&events);
    assert_eq!(
        r.iter().map(|r| mdc(r)).collect::<Vec<_>>(),
        vec![150021, 150022, 150023]
    );
    assert_eq!(
        reports(&events),
        1,
        "frames with nothing to say send no report"
    );
    assert_eq!(stats.decode_errors, 0);
    assert_eq!(stats.frames, 4);
}

#[test]
fn short_lines_garbage_and_unknown_lines_are_decode_errors() {
    let p = builtin("ivy-450c");
    // Pulse rate is optional: a line that ends before it is fine.
    let (events, stats, _) = run(&p, &[b"NIBP=4;121;75;92\r\n"]);
    assert_eq!(readings(&events).len(), 3);
    assert_eq!(stats.decode_errors, 0);
    // A missing required field, a value that is not a number, a line no frame type takes.
    let (events, stats, _) = run(&p, &[b"HR=1\r\nSPO2=2;9x7;\r\nALARM=3;HR HIGH;\r\n"]);
    assert_eq!(reports(&events), 0);
    assert_eq!(stats.decode_errors, 3);
    assert_eq!(stats.frames, 3);
}

const MISTAKES: &str = r#"name = "bad-one"
colour = "red"
[framing]
type = "line"
max_frame = 64
[checksum]
type = "sum8"
position = "after_end"
[[frame]]
name = "HR"
pattern = '^HR=('
field_count = 2
  [[frame.field]]
  index = 5
  code = "MDC 147842 MDC_ECG_HEART_RATE"
  unit = "mmHg"
  [[frame.field]]
  index = 1
  code = "MDC heart"
  unit = "/min"
  speed = 3
[[frame]]
name = "LAB"
prefix = "L="
  [[frame.field]]
  index = 0
  code = "LOINC 8867-5"
[simulate]
frames = ["HR=1;{pulse};"]
[simulate.trace]
hr = { base = 80 }
"#;

#[test]
fn a_profile_with_several_mistakes_reports_all_of_them_by_line() {
    let problems = DeviceProfile::parse("bad.toml", MISTAKES).unwrap_err();
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    let expected = [
        (2, "colour"),
        (8, "after_end conflicts with line framing"),
        (11, "not a valid regex"),
        (14, "index 5 is beyond"),
        (16, "write `mm[Hg]`"),
        (19, "MDC heart"),
        (21, "speed"),
        (27, "LOINC"),
        (29, "{pulse}"),
    ];
    for (line, text) in expected {
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with(&format!("bad.toml:{line}:")) && s.contains(text)),
            "no problem at line {line} about {text}: {shown:#?}"
        );
    }
    assert_eq!(shown.len(), expected.len(), "{shown:#?}");
}

#[test]
fn more_mistakes_framing_conflicts_and_unreachable_frames() {
    let src = r#"name = "bad-two"
[framing]
type = "stx_etx"
terminator = "cr"
[checksum]
type = "crc16-ccitt"
encoding = "binary"
position = "before_end"
covers_end = true
[[skip]]
from = 0x00
to = 0x1F
[session]
silence_timeout_ms = 500
  [[session.poll]]
  send = '\q'
  every_ms = 1000
[[frame]]
name = "ALL"
[[frame]]
name = "V"
prefix = "V"
extract = "fixed"
  [[frame.field]]
  start = 600
  width = 10
  code = "MDC 150456 MDC_ECG_HEART_RATE"
[[frame]]
name = "R"
extract = "regex"
regex = '^R(?P<v>\d+)'
  [[frame.field]]
  capture = "w"
  code = "LOCAL R"
[simulate]
frames = ["V}"]
"#;
    let problems = DeviceProfile::parse("two.toml", src).unwrap_err();
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    let expected = [
        (4, "`terminator` does not apply"),
        (7, "binary checksum before the end marker"),
        (9, "covers_end conflicts with position before_end"),
        (10, "framing byte 0x02"),
        (10, "framing byte 0x03"),
        (14, "not longer than the slowest poll"),
        (16, "unknown escape"),
        (20, "can never match"),
        (25, "beyond max_frame"),
        (27, "MDC 150456 is MDC_PULS_OXIM_SAT_O2"),
        (28, "can never match"),
        (33, "no capture named `w`"),
        (36, "`}` with no `{`"),
    ];
    for (line, text) in expected {
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with(&format!("two.toml:{line}:")) && s.contains(text)),
            "no problem at line {line} about {text}: {shown:#?}"
        );
    }
    assert_eq!(shown.len(), expected.len(), "{shown:#?}");
}

#[test]
fn validate_dir_reports_every_file_and_load_dir_overrides_builtins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad-one.toml"), MISTAKES).unwrap();
    std::fs::write(
        dir.path().join("wrong-name.toml"),
        "name = \"other\"\n[framing]\ntype = \"line\"\n",
    )
    .unwrap();
    let problems = validate_dir(dir.path());
    assert_eq!(problems.len(), 10, "{}", Problems(problems.clone()));
    assert!(problems
        .iter()
        .any(|p| p.file.ends_with("wrong-name.toml") && p.line == Some(1)));

    let dir = tempfile::tempdir().unwrap();
    let custom = BUILTIN
        .iter()
        .find(|(f, _)| *f == "ivy-450c.toml")
        .map(|(_, s)| s.replace("max_frame = 128", "max_frame = 100"))
        .unwrap();
    std::fs::write(dir.path().join("ivy-450c.toml"), custom).unwrap();
    std::fs::write(
        dir.path().join("plain.toml"),
        "name = \"plain\"\n[framing]\ntype = \"line\"\n",
    )
    .unwrap();
    let set = ProfileSet::load_dir(dir.path()).unwrap();
    assert_eq!(set.names(), vec!["ascii-pump", "ivy-450c", "plain"]);
    assert_eq!(set.get("ivy-450c").map(|p| p.max_frame), Some(100));
    assert!(validate_dir(dir.path()).is_empty());
    assert!(validate_dir(&dir.path().join("missing")).len() == 1);
}

#[test]
fn ivy_driver_and_simulator_round_trip() {
    let p = builtin("ivy-450c");
    let bytes = capture(&p, 10, t0()).unwrap();
    let (events, stats, unavailable) = run(&p, &[&bytes]);
    assert_eq!(stats.frames, 50, "5 lines a second for 10 s");
    assert_eq!(stats.skipped_bytes, 50 * 48, "noise after every line");
    assert_eq!(
        (
            stats.resyncs,
            stats.discarded_bytes,
            stats.checksum_failures,
            stats.decode_errors
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(unavailable, 0);
    assert_eq!(reports(&events), 50);
    let r = readings(&events);
    // The first second prints each trace's base.
    let first: Vec<(u32, f64)> = r.iter().take(8).map(|r| (mdc(r), num(r))).collect();
    assert_eq!(
        first,
        vec![
            (147842, 82.0),
            (150456, 96.0),
            (150021, 121.0),
            (150022, 75.0),
            (150023, 90.0),
            (149546, 80.0),
            (151562, 16.0),
            (150344, 36.8),
        ]
    );
    // Values change over time as the traces swing.
    let hrs: Vec<f64> = r
        .iter()
        .filter(|r| mdc(r) == 147842)
        .map(|r| num(r))
        .collect();
    assert_eq!(hrs.len(), 10);
    assert!(hrs.iter().any(|v| *v != 82.0));
}

#[test]
fn pump_driver_polls_and_the_simulator_answers() {
    let p = builtin("ascii-pump");
    let mut drv = ProfileDriver::new(Arc::clone(&p));
    let mut sim = ProfileSimulator::new(Arc::clone(&p)).unwrap();
    let mut to_dev = Vec::new();
    let mut to_host = Vec::new();
    let mut events = Vec::new();
    drv.on_connect(t0(), &mut to_dev);
    assert!(to_dev.is_empty());
    let mut now = t0();
    let end = t0().plus_ms(12_000);
    let mut polls = 0;
    while now < end {
        drv.on_tick(now, &mut events, &mut to_dev);
        polls += to_dev.len();
        sim.on_bytes(&to_dev, now, &mut to_host);
        to_dev.clear();
        sim.on_tick(now, &mut to_host);
        drv.on_bytes(&to_host, now, &mut events, &mut Vec::new());
        to_host.clear();
        now = now.plus_ms(drv.tick_interval().as_millis() as i64);
    }
    // ENQ at 0, 5 and 10 s.
    assert_eq!(polls, 3);
    let stats = drv.stats();
    assert_eq!(stats.frames, 6, "two channels answered three times");
    assert_eq!(
        (stats.checksum_failures, stats.resyncs, stats.decode_errors),
        (0, 0, 0)
    );
    assert_eq!(events.first(), Some(&DeviceEvent::Connected));
    let r = readings(&events);
    let ch2: Vec<&&DeviceReading> = r
        .iter()
        .filter(|r| r.channel.as_deref() == Some("2"))
        .collect();
    assert_eq!(ch2.len(), 12);
    assert_eq!(ch2[0].value, ReadingValue::Text("propofol".into()));
    assert_eq!(num(ch2[1]), 15.0);
    assert_eq!(num(ch2[2]), 10.0);
    assert!(!events
        .iter()
        .any(|e| matches!(e, DeviceEvent::Disconnected { .. })));
}

#[test]
fn silence_ends_the_session_once_and_polls_do_not_burst() {
    let p = builtin("ascii-pump");
    let mut drv = ProfileDriver::new(Arc::clone(&p));
    let mut out = Vec::new();
    let mut events = Vec::new();
    drv.on_connect(t0(), &mut out);
    out.clear();
    drv.on_tick(t0(), &mut events, &mut out);
    assert_eq!(out, b"\x05");
    out.clear();
    drv.on_tick(t0().plus_ms(4_999), &mut events, &mut out);
    assert!(out.is_empty());
    // A late tick sends one poll, not the three it missed.
    drv.on_tick(t0().plus_ms(14_999), &mut events, &mut out);
    assert_eq!(out, b"\x05");
    assert!(events.is_empty());
    drv.on_tick(t0().plus_ms(15_000), &mut events, &mut out);
    drv.on_tick(t0().plus_ms(16_000), &mut events, &mut out);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, DeviceEvent::Disconnected { .. }))
            .count(),
        1
    );
    // Without on_connect (offline decode) nothing is polled and nothing times out.
    let mut offline = ProfileDriver::new(p);
    let mut ev = Vec::new();
    let mut o = Vec::new();
    offline.on_tick(t0().plus_ms(100_000), &mut ev, &mut o);
    assert!(ev.is_empty() && o.is_empty());
}

#[test]
fn a_profile_without_simulate_has_no_simulator() {
    let p = profile("name = \"plain\"\n[framing]\ntype = \"line\"\n");
    assert!(matches!(
        ProfileSimulator::new(Arc::clone(&p)),
        Err(ProfileError::NoSimulation { .. })
    ));
    assert!(capture(&p, 1, t0()).is_err());
}

fn length_prefixed() -> Arc<DeviceProfile> {
    profile(
        r#"name = "lp"
[framing]
type = "length_prefix"
start = 0xAA
length_bytes = 2
byte_order = "little"
length_includes_header = true
max_frame = 64
[checksum]
type = "crc16-ccitt"
encoding = "binary"
position = "after_end"
byte_order = "big"
covers_start = true
[[skip]]
from = 0x80
to = 0x9F
[[frame]]
name = "HR"
prefix = "HR "
extract = "fixed"
  [[frame.field]]
  start = 3
  width = 3
  code = "MDC 147842 MDC_ECG_HEART_RATE"
  unit = "/min"
[simulate]
interval_ms = 500
frames = ["HR {hr}"]
noise = { count = 5, from = 0x80, to = 0x9F }
[simulate.trace]
hr = { base = 100, swing = 20, period_ms = 4000 }
"#,
    )
}

#[test]
fn length_prefixed_frames_with_a_binary_crc() {
    let p = length_prefixed();
    let mut bytes = Vec::new();
    encode(&p, b"HR 072", &mut bytes).unwrap();
    // sync, length 1+2+6 = 9 little-endian, content, CRC over header and content, big-endian.
    assert_eq!(bytes.get(..3), Some(&[0xAA, 9, 0][..]));
    let crc = ChecksumAlgo::Crc16(Crc16::Ccitt).compute(&[&[0xAA, 9, 0], b"HR 072"]);
    assert_eq!(bytes.get(9..), Some(&crc.to_be_bytes()[..]));
    let (events, stats, _) = run(&p, &[&bytes]);
    assert_eq!(stats.frames, 1);
    assert_eq!(num(readings(&events)[0]), 72.0);

    // A corrupt length is resynchronised past; a corrupt CRC is counted.
    let mut bad_len = vec![0xAA, 0xFF, 0x7F];
    bad_len.extend_from_slice(&bytes);
    let mut bad_crc = bytes.clone();
    if let Some(last) = bad_crc.last_mut() {
        *last ^= 1;
    }
    let stream = [bad_len.as_slice(), bad_crc.as_slice(), bytes.as_slice()].concat();
    let (events, stats, _) = run(&p, &[&stream]);
    assert_eq!(stats.resyncs, 1);
    assert_eq!(stats.checksum_failures, 1);
    assert_eq!(stats.frames, 2);
    assert_eq!(reports(&events), 2);

    let cap = capture(&p, 3, t0()).unwrap();
    let (events, stats, _) = run(&p, &[&cap]);
    assert_eq!(stats.frames, 6);
    assert_eq!(stats.skipped_bytes, 30);
    assert_eq!((stats.resyncs, stats.checksum_failures), (0, 0));
    assert_eq!(num(readings(&events)[0]), 100.0);
}

#[test]
fn regex_extraction_scales_and_takes_channels_from_captures() {
    let p = profile(
        r#"name = "rx"
[framing]
type = "line"
terminator = "cr"
[session]
on_connect = 'ID\r\x05'
[checksum]
type = "xor8"
[[frame]]
name = "T"
extract = "regex"
regex = '^T(?P<ch>\d):(?P<t>-?\d+)dC'
channel = { capture = "ch" }
  [[frame.field]]
  capture = "t"
  code = "MDC 150344 MDC_TEMP"
  unit = "Cel"
  scale = 0.1
[[frame]]
name = "S"
prefix = "S"
extract = "fixed"
channel = { value = "bed" }
  [[frame.field]]
  start = 1
  width = 4
  code = "LOINC 8867-4"
  unit = "/min"
  offset = 1
"#,
    );
    let mut bytes = Vec::new();
    encode(&p, b"T2:368dC", &mut bytes).unwrap();
    encode(&p, b"S  59", &mut bytes).unwrap();
    bytes.extend_from_slice(b"T1:370dC00\r");
    let (events, stats, _) = run(&p, &[&bytes]);
    let mut hello = Vec::new();
    ProfileDriver::new(Arc::clone(&p)).on_connect(t0(), &mut hello);
    assert_eq!(hello, b"ID\r\x05");
    let r = readings(&events);
    assert_eq!(r.len(), 2);
    assert!((num(r[0]) - 36.8).abs() < 1e-9);
    assert_eq!(r[0].channel.as_deref(), Some("2"));
    assert_eq!(num(r[1]), 60.0);
    assert_eq!(r[1].channel.as_deref(), Some("bed"));
    assert_eq!(
        r[1].code,
        DeviceCode::Loinc {
            code: "8867-4".into()
        }
    );
    assert_eq!(stats.checksum_failures, 1);
}

#[test]
fn pump_reports_become_a_dose_in_the_normalizer() {
    use crate::model::{Drug, IngestRecord, Param, Value};
    use crate::normalize::{DeviceOrigin, NormalizeSettings, NormalizeTables, Normalizer};

    let mut n = Normalizer::new(
        NormalizeTables::builtin().unwrap(),
        NormalizeSettings::default(),
    );
    let adt = "MSH|^~\\&|ADT|HOSP|VIGIL|ICU|20260105075500||ADT^A01^ADT_A01|A1|P|2.5\rEVN|A01|20260105075500\rPID|||MRN7^^^HOSP^MR||Doe^Jane\rPV1||I|ICU-A^^BED07||||||||||||||||V7\rOBX|1|NM|29463-7^Body weight^LN||80|kg|||||F\r";
    let t = Timestamp::parse_rfc3339("2026-01-05T08:00:00Z").unwrap();
    n.hl7("adt", adt.as_bytes(), t).unwrap();
    let p = builtin("ascii-pump");
    let mut frame = Vec::new();
    encode(&p, b"P1;norepinephrine;12.5;0.064;RUN", &mut frame).unwrap();
    let (events, _, _) = run(&p, &[&frame]);
    let Some(DeviceEvent::Report(report)) =
        events.iter().find(|e| matches!(e, DeviceEvent::Report(_)))
    else {
        panic!("no report");
    };
    let origin = DeviceOrigin {
        protocol: "serial",
        device_id: "PUMP1".into(),
        bed: Some("BED07".into()),
        unit: Some("ICU-A".into()),
        message: "frame 1".into(),
        ..DeviceOrigin::default()
    };
    let out = n.device("serial", &origin, report, t.plus_ms(60_000));
    let dose = out
        .records
        .iter()
        .find_map(|r| match r {
            IngestRecord::Observation(o) if o.param == Some(Param::Dose(Drug::Norepinephrine)) => {
                Some(o)
            }
            _ => None,
        })
        .expect("a norepinephrine dose");
    // 12.5 mL/h × 0.064 mg/mL × 1000 / (60 × 80 kg)
    let Value::Num(v) = dose.value else {
        panic!("dose is not a number");
    };
    assert!((v - 0.1667).abs() < 0.001, "{v}");
    assert_eq!(dose.ucum, "ug/kg/min");
}

fn fuzz_profiles() -> Vec<Arc<DeviceProfile>> {
    vec![
        builtin("ivy-450c"),
        builtin("ascii-pump"),
        length_prefixed(),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic_and_stay_bounded(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        step in 1usize..64,
    ) {
        for p in fuzz_profiles() {
            let mut d = ProfileDriver::new(Arc::clone(&p));
            let mut events = Vec::new();
            let mut out = Vec::new();
            d.on_connect(t0(), &mut out);
            for c in data.chunks(step) {
                d.on_bytes(c, t0(), &mut events, &mut out);
                prop_assert!(d.buffered() <= p.max_frame + 8);
            }
            d.on_tick(t0().plus_ms(60_000), &mut events, &mut out);
            let s = d.stats();
            prop_assert!(s.discarded_bytes + s.skipped_bytes <= data.len() as u64);
        }
    }

    #[test]
    fn noise_between_good_frames_never_loses_them(
        noise in proptest::collection::vec(0x80u8..=0xFF, 0..64),
    ) {
        let p = builtin("ivy-450c");
        let mut bytes = noise.clone();
        bytes.extend_from_slice(b"HR=1;77;X;\r\n");
        bytes.extend_from_slice(&noise);
        bytes.extend_from_slice(b"RESP=3;12;X;\r\n");
        let (events, stats, _) = run(&p, &[&bytes]);
        prop_assert_eq!(readings(&events).len(), 2);
        prop_assert_eq!(stats.skipped_bytes, 2 * noise.len() as u64);
        prop_assert_eq!(stats.resyncs, 0);
    }
}

#[test]
fn simulated_frames_the_profile_cannot_decode_are_reported() {
    let src = r#"name = "sim-bad"
[framing]
type = "line"
[[frame]]
name = "HR"
prefix = "HR="
  [[frame.field]]
  index = 1
  code = "MDC 147842 MDC_ECG_HEART_RATE"
  unit = "/min"
[simulate]
frames = [
  "HR=1;{hr};",
  "BP=1;2;",
  "HR=1;x;",
]
noise = { count = 4, from = 0x80, to = 0x81 }
[simulate.trace]
hr = { base = 80 }
"#;
    let problems = DeviceProfile::parse("sim.toml", src).unwrap_err();
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(shown.len(), 3, "{shown:#?}");
    assert!(shown[0].starts_with("sim.toml:14:") && shown[0].contains("matches no [[frame]]"));
    assert!(shown[1].starts_with("sim.toml:15:") && shown[1].contains("not a number"));
    assert!(shown[2].starts_with("sim.toml:17:") && shown[2].contains("not in a [[skip]] range"));
}
