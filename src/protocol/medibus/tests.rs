//! Driver ↔ simulator sessions, captures and hostile input.

use std::time::Duration;

use proptest::prelude::*;

use super::codes::command;
use super::frame::{encode_command, encode_response, SOH, XOFF, XON};
use super::sim::{run_loopback, Direction};
use super::*;
use crate::protocol::device::{
    DeviceCode, DeviceDriver, DeviceEvent, DeviceReading, DeviceSimulator, FrameStats,
    ReadingValue, SimTrace,
};

const T0: i64 = 1_767_261_600_000; // 2026-01-01T10:00:00Z

fn t0() -> Timestamp {
    Timestamp::from_millis(T0)
}

struct Session {
    events: Vec<DeviceEvent>,
    /// (time, direction, bytes) of every chunk.
    wire: Vec<(Timestamp, Direction, Vec<u8>)>,
    driver: MedibusDriver,
    sim: MedibusSimulator,
}

fn session(driver: MedibusSettings, sim: MedibusSimSettings, seconds: i64) -> Session {
    let mut driver = MedibusDriver::new(driver);
    let mut sim = MedibusSimulator::new(sim);
    let mut events = Vec::new();
    let mut wire = Vec::new();
    run_loopback(
        &mut driver,
        &mut sim,
        t0(),
        seconds * 1000,
        50,
        &mut events,
        &mut |t, d, b| wire.push((t, d, b.to_vec())),
    );
    Session {
        events,
        wire,
        driver,
        sim,
    }
}

fn readings(events: &[DeviceEvent]) -> Vec<&DeviceReading> {
    events
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::Report(r) => Some(&r.readings),
            _ => None,
        })
        .flatten()
        .collect()
}

fn mdc(code: u32) -> impl Fn(&&DeviceReading) -> bool {
    move |r| matches!(&r.code, DeviceCode::Mdc { code: c, .. } if *c == code)
}

fn local(code: &'static str) -> impl Fn(&&DeviceReading) -> bool {
    move |r| matches!(&r.code, DeviceCode::Local { code: c } if c == code)
}

fn last_num<'a>(
    rs: &[&'a DeviceReading],
    pred: impl Fn(&&DeviceReading) -> bool,
) -> &'a DeviceReading {
    rs.iter()
        .rev()
        .find(|r| pred(r))
        .copied()
        .unwrap_or_else(|| panic!("no such reading"))
}

fn value(r: &DeviceReading) -> f64 {
    r.value.as_f64().unwrap_or(f64::NAN)
}

fn count(events: &[DeviceEvent], pred: impl Fn(&DeviceEvent) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}

/// The commands the host sent (code bytes after ESC), with their times.
fn host_commands(wire: &[(Timestamp, Direction, Vec<u8>)]) -> Vec<(Timestamp, u8)> {
    let mut d = MedibusDecoder::default();
    let mut out = Vec::new();
    for (t, dir, bytes) in wire {
        if *dir != Direction::ToDevice {
            continue;
        }
        let mut msgs = Vec::new();
        d.decode(bytes, &mut msgs);
        for m in msgs {
            if let Decoded::Message(m) = m {
                if m.kind == MessageKind::Command {
                    out.push((*t, m.code));
                }
            }
        }
    }
    out
}

#[test]
fn a_full_session_yields_the_ventilator_readings_with_codes_and_units() {
    let sim = MedibusSimSettings {
        alarms: vec![
            SimAlarm {
                codepage: 1,
                priority: 28,
                code: 0x9A,
                phrase: "DISCONNECT".into(),
            },
            SimAlarm {
                codepage: 2,
                priority: 4,
                code: 0xA7,
                phrase: "VT NOT REACH".into(),
            },
        ],
        ..Default::default()
    };
    let s = session(MedibusSettings::default(), sim, 12);
    let ev = &s.events;

    assert_eq!(ev.first(), Some(&DeviceEvent::Connected));
    assert_eq!(count(ev, |e| matches!(e, DeviceEvent::Connected)), 1);
    assert_eq!(
        count(ev, |e| matches!(e, DeviceEvent::Disconnected { .. })),
        0
    );
    let identity = ev.iter().find_map(|e| match e {
        DeviceEvent::Identified(id) => Some(id.clone()),
        _ => None,
    });
    let identity = identity.expect("identified");
    assert_eq!(identity.manufacturer.as_deref(), Some("Dräger"));
    assert_eq!(identity.model.as_deref(), Some("Evita 4"));
    assert_eq!(identity.firmware.as_deref(), Some("04.02:06.00"));

    let rs = readings(ev);
    let fio2 = last_num(&rs, mdc(152_196));
    assert_eq!((value(fio2), fio2.unit.as_str()), (40.0, "%"));
    assert_eq!(fio2.label.as_deref(), Some("F0"));
    let peep = last_num(&rs, mdc(151_976));
    assert_eq!((value(peep), peep.unit.as_str()), (8.0, "mbar"));
    let vt = last_num(&rs, mdc(151_980));
    assert_eq!(vt.unit, "mL");
    assert!((430.0..=470.0).contains(&value(vt)), "{}", value(vt));
    let rr = last_num(&rs, mdc(151_586));
    assert_eq!(rr.unit, "/min");
    assert!((16.0..=20.0).contains(&value(rr)));
    let et = last_num(&rs, mdc(151_708));
    assert_eq!(et.unit, "mm[Hg]");
    assert!((36.0..=40.0).contains(&value(et)));
    assert_eq!(last_num(&rs, mdc(151_817)).unit, "mbar"); // peak
    assert_eq!(last_num(&rs, mdc(151_784)).unit, "mbar"); // plateau
    assert_eq!(value(last_num(&rs, mdc(151_819))), 12.0); // mean
    assert_eq!(last_num(&rs, mdc(151_880)).unit, "L/min"); // minute volume
    assert_eq!(last_num(&rs, mdc(151_688)).unit, "mL/mbar"); // compliance
    let vte = last_num(&rs, local("MEDIBUS_VTE"));
    assert_eq!(vte.label.as_deref(), Some("CP2:21"));
    // The blank pulse-rate field is counted, not emitted.
    assert!(!rs.iter().any(mdc(149_530)));
    assert!(s.driver.unavailable_values() >= 1);

    // Settings on their own channel, LOCAL codes, VT converted from L.
    let set = |code| last_num(&rs, local(code));
    for (code, want, unit) in [
        ("MEDIBUS_SET_FIO2", 40.0, "%"),
        ("MEDIBUS_SET_PEEP", 8.0, "mbar"),
        ("MEDIBUS_SET_RR", 18.0, "/min"),
        ("MEDIBUS_SET_VT", 450.0, "mL"),
    ] {
        let r = set(code);
        assert_eq!((value(r), r.unit.as_str()), (want, unit), "{code}");
        assert_eq!(r.channel.as_deref(), Some(SETTINGS_CHANNEL));
    }
    assert!(rs
        .iter()
        .filter(|r| r.channel.as_deref() == Some(SETTINGS_CHANNEL))
        .all(
            |r| matches!(&r.code, DeviceCode::Local { code } if code.starts_with("MEDIBUS_SET_"))
        ));
    let mode = last_num(&rs, local("MEDIBUS_TEXT_01"));
    assert_eq!(mode.value, ReadingValue::Text("IPPV".into()));

    // Both alarm pages in one list, priorities mapped.
    let alarms = ev
        .iter()
        .rev()
        .find_map(|e| match e {
            DeviceEvent::Alarms { alarms } => Some(alarms.clone()),
            _ => None,
        })
        .expect("alarms");
    let summary: Vec<_> = alarms
        .iter()
        .map(|a| (a.code.as_str(), a.text.as_str(), a.priority))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("CP1:9A", "DISCONNECT", "high"),
            ("CP2:A7", "VT NOT REACH", "low")
        ]
    );

    // Reports carry the device clock (read with 1 s resolution).
    for e in ev {
        if let DeviceEvent::Report(r) = e {
            let dt = r.device_time.expect("device time");
            assert!(dt <= t0().plus_ms(12_000) && dt >= t0().minus_ms(1000));
        }
    }
    // Polls every 2 s: about six cycles of measured data in 12 s.
    let cp1 = count(
        ev,
        |e| matches!(e, DeviceEvent::Report(r) if r.readings.iter().any(|x| x.label.as_deref() == Some("F0"))),
    );
    assert!((5..=7).contains(&cp1), "{cp1} CP1 reports");

    let stats = s.driver.stats();
    assert_eq!(stats.checksum_failures, 0);
    assert_eq!(stats.decode_errors, 0);
    assert_eq!(stats.resyncs, 0);
    assert!(stats.frames > 40);
    assert!(s.sim.is_linked());
}

#[test]
fn one_request_is_outstanding_at_a_time() {
    let s = session(MedibusSettings::default(), MedibusSimSettings::default(), 6);
    // Replay the wire: between two host requests there is always a device response.
    let mut d_host = MedibusDecoder::default();
    let mut d_dev = MedibusDecoder::default();
    let mut waiting = false;
    for (_, dir, bytes) in &s.wire {
        let mut msgs = Vec::new();
        match dir {
            Direction::ToDevice => d_dev.decode(bytes, &mut msgs),
            Direction::ToHost => d_host.decode(bytes, &mut msgs),
        }
        for m in msgs {
            let Decoded::Message(m) = m else { continue };
            match (dir, m.kind) {
                (Direction::ToDevice, MessageKind::Command) => {
                    assert!(!waiting, "second request before the answer");
                    waiting = true;
                }
                (Direction::ToHost, MessageKind::Response) => waiting = false,
                _ => {}
            }
        }
    }
}

#[test]
fn the_driver_sends_nop_when_idle_and_keeps_the_link() {
    let driver = MedibusSettings {
        poll_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let sim = MedibusSimSettings {
        nop_interval: None,
        link_timeout: Duration::from_millis(1500),
        ..Default::default()
    };
    let s = session(driver, sim, 20);
    let cmds = host_commands(&s.wire);
    // After the first cycle only NOPs go out, about one per second.
    let nops: Vec<Timestamp> = cmds
        .iter()
        .filter(|(t, c)| *c == command::NOP && *t > t0().plus_ms(2000))
        .map(|(t, _)| *t)
        .collect();
    assert!(nops.len() >= 15, "{} NOPs", nops.len());
    for w in nops.windows(2) {
        let gap = w[1].since(w[0]);
        assert!((1000..=1100).contains(&gap), "NOP gap {gap} ms");
    }
    assert!(cmds
        .iter()
        .filter(|(t, _)| *t > t0().plus_ms(2000))
        .all(|(_, c)| *c == command::NOP));
    assert!(s.sim.is_linked(), "the device link timed out");
    assert_eq!(
        count(&s.events, |e| matches!(e, DeviceEvent::Disconnected { .. })),
        0
    );
}

#[test]
fn without_keep_alive_the_device_drops_the_link() {
    // The control for the test above: a host that never sends NOP loses the device.
    let mut sim = MedibusSimulator::new(MedibusSimSettings {
        nop_interval: None,
        link_timeout: Duration::from_millis(1500),
        ..Default::default()
    });
    let mut out = Vec::new();
    let mut icc = Vec::new();
    encode_command(command::ICC, b"", &mut icc);
    sim.on_bytes(&icc, t0(), &mut out);
    assert!(sim.is_linked());
    sim.on_tick(t0().plus_ms(1400), &mut out);
    assert!(sim.is_linked());
    sim.on_tick(t0().plus_ms(1600), &mut out);
    assert!(!sim.is_linked());
    // Unlinked, it answers nothing but ICC.
    out.clear();
    let mut poll = Vec::new();
    encode_command(command::MEASURED_CP1, b"", &mut poll);
    sim.on_bytes(&poll, t0().plus_ms(1700), &mut out);
    assert!(out.is_empty());
}

#[test]
fn silence_reports_disconnected_and_restarts_with_icc() {
    let settings = MedibusSettings::default();
    let mut driver = MedibusDriver::new(settings);
    let mut out = Vec::new();
    let mut events = Vec::new();
    driver.on_connect(t0(), &mut out);
    assert_eq!(out, b"\x1bQ6C\r");
    out.clear();
    let mut echo = Vec::new();
    encode_response(command::ICC, b"", &mut echo);
    driver.on_bytes(&echo, t0().plus_ms(100), &mut events, &mut out);
    assert_eq!(events, vec![DeviceEvent::Connected]);
    assert!(driver.is_connected());
    // The device id request went out at once.
    assert_eq!(out, b"\x1bR6D\r");
    // Then nothing comes back. Ticks retry and keep alive but report nothing before 10 s.
    let mut t = t0().plus_ms(100);
    while t < t0().plus_ms(20_000) {
        out.clear();
        driver.on_tick(t, &mut events, &mut out);
        if events.len() > 1 {
            break;
        }
        t = t.plus_ms(100);
    }
    assert!(matches!(
        events.get(1),
        Some(DeviceEvent::Disconnected { .. })
    ));
    assert_eq!(t.since(t0()), 10_100, "10 s after the last valid message");
    assert!(!driver.is_connected());
    // The restart is an ICC.
    assert!(out.ends_with(b"\x1bQ6C\r"));
    // A device that answers again brings the session back.
    events.clear();
    driver.on_bytes(&echo, t.plus_ms(50), &mut events, &mut out);
    assert_eq!(events, vec![DeviceEvent::Connected]);
}

#[test]
fn the_driver_answers_the_devices_own_commands() {
    let mut driver = MedibusDriver::new(MedibusSettings::default());
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut from_device = Vec::new();
    encode_command(command::ICC, b"", &mut from_device);
    encode_command(command::NOP, b"", &mut from_device);
    encode_command(command::DEVICE_ID, b"", &mut from_device);
    from_device.extend_from_slice(b"\x1b0FF\r"); // NOP with a wrong checksum
    encode_command(0x7E, b"", &mut from_device); // unknown command
    driver.on_bytes(&from_device, t0(), &mut events, &mut out);
    let mut want = Vec::new();
    encode_response(command::ICC, b"", &mut want);
    encode_response(command::NOP, b"", &mut want);
    encode_response(command::DEVICE_ID, b"0000'vigil'01.00:06.00", &mut want);
    encode_response(command::CORRUPT, b"", &mut want);
    encode_response(0x7E, b"", &mut want);
    assert_eq!(out, want);
    assert_eq!(
        out.get(out.len() - 10..out.len() - 5),
        Some(&[SOH, 0x15, b'1', b'6', b'\r'][..])
    );
    // Idle (decoding a recording): answering is all it does.
    assert!(events.is_empty());
    assert_eq!(driver.stats().checksum_failures, 1);

    // A device that stops communication ends a live session.
    let mut live = MedibusDriver::new(MedibusSettings::default());
    out.clear();
    live.on_connect(t0(), &mut out);
    let mut bytes = Vec::new();
    encode_response(command::ICC, b"", &mut bytes);
    encode_command(command::STOP, b"", &mut bytes);
    live.on_bytes(&bytes, t0(), &mut events, &mut out);
    assert_eq!(
        events,
        vec![
            DeviceEvent::Connected,
            DeviceEvent::Disconnected {
                reason: "device stopped communication".into()
            }
        ]
    );
    assert!(!live.is_connected());
}

#[test]
fn a_command_corrupted_reply_makes_the_driver_resend_once() {
    let mut driver = MedibusDriver::new(MedibusSettings::default());
    let mut out = Vec::new();
    let mut events = Vec::new();
    driver.on_connect(t0(), &mut out);
    let mut echo = Vec::new();
    encode_response(command::ICC, b"", &mut echo);
    out.clear();
    driver.on_bytes(&echo, t0(), &mut events, &mut out);
    assert_eq!(out, b"\x1bR6D\r");
    let mut nak = Vec::new();
    encode_response(command::CORRUPT, b"", &mut nak);
    out.clear();
    driver.on_bytes(&nak, t0().plus_ms(10), &mut events, &mut out);
    assert_eq!(out, b"\x1bR6D\r", "resent");
    out.clear();
    driver.on_bytes(&nak, t0().plus_ms(20), &mut events, &mut out);
    // Not a third time: the cycle moves on.
    assert!(!out.starts_with(b"\x1bR6D\r"));
    assert_eq!(driver.corrupt_replies(), 2);
}

#[test]
fn corrupted_responses_are_counted_and_the_session_goes_on() {
    let sim = MedibusSimSettings {
        corrupt_every: 4,
        ..Default::default()
    };
    let s = session(MedibusSettings::default(), sim, 20);
    let stats = s.driver.stats();
    assert!(stats.checksum_failures >= 10, "{stats:?}");
    assert_eq!(
        count(&s.events, |e| matches!(e, DeviceEvent::Disconnected { .. })),
        0
    );
    let rs = readings(&s.events);
    assert!(rs.iter().filter(|r| mdc(152_196)(r)).count() >= 4);
}

#[test]
fn device_time_applies_the_configured_offset() {
    let sim = MedibusSimSettings {
        utc_offset_minutes: 60,
        ..Default::default()
    };
    let aware = MedibusSettings {
        device_utc_offset_minutes: 60,
        ..Default::default()
    };
    let s = session(aware, sim.clone(), 4);
    let times: Vec<i64> = s
        .events
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::Report(r) => r.device_time.map(|t| t.since(t0())),
            _ => None,
        })
        .collect();
    assert!(!times.is_empty());
    assert!(
        times.iter().all(|d| (-1000..=4000).contains(d)),
        "{times:?}"
    );
    // Without the offset the device clock reads an hour ahead.
    let naive = session(MedibusSettings::default(), sim, 4);
    let t = naive.events.iter().find_map(|e| match e {
        DeviceEvent::Report(r) => r.device_time,
        _ => None,
    });
    let ahead = t.map(|t| t.since(t0())).unwrap_or(0);
    assert!((3_599_000..=3_604_000).contains(&ahead), "{ahead}");
}

fn decode_capture(bytes: &[u8], chunks: &[usize]) -> (Vec<DeviceEvent>, FrameStats) {
    let mut driver = MedibusDriver::new(MedibusSettings::default());
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let n = chunks
            .get(i % chunks.len().max(1))
            .copied()
            .unwrap_or(64)
            .max(1);
        let end = (at + n).min(bytes.len());
        driver.on_bytes(&bytes[at..end], t0(), &mut events, &mut out);
        at = end;
        i += 1;
    }
    (events, driver.stats())
}

#[test]
fn a_capture_decodes_from_the_device_bytes_alone() {
    let bytes = capture(10, t0());
    let (events, stats) = decode_capture(&bytes, &[4096]);
    assert_eq!(events.first(), Some(&DeviceEvent::Connected));
    assert!(events
        .iter()
        .any(|e| matches!(e, DeviceEvent::Identified(_))));
    let rs = readings(&events);
    assert_eq!(value(last_num(&rs, mdc(152_196))), 40.0);
    assert_eq!(value(last_num(&rs, mdc(151_976))), 8.0);
    assert_eq!(value(last_num(&rs, local("MEDIBUS_SET_PEEP"))), 8.0);
    assert_eq!(stats.checksum_failures, 0);
    assert_eq!(stats.resyncs, 0);
    // The capture holds no host bytes: no command the host sent appears in it.
    let mut d = MedibusDecoder::default();
    let mut msgs = Vec::new();
    d.decode(&bytes, &mut msgs);
    assert!(msgs.iter().all(|m| match m {
        Decoded::Message(m) =>
            m.kind == MessageKind::Response || [command::ICC, command::NOP].contains(&m.code),
        Decoded::CorruptCommand | Decoded::CorruptResponse => false,
    }));
}

#[test]
fn a_capture_split_at_every_offset_decodes_the_same() {
    let bytes = capture(3, t0());
    let (want, want_stats) = decode_capture(&bytes, &[bytes.len()]);
    assert!(want.len() >= 5);
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        let mut driver = MedibusDriver::new(MedibusSettings::default());
        let mut events = Vec::new();
        let mut out = Vec::new();
        driver.on_bytes(a, t0(), &mut events, &mut out);
        driver.on_bytes(b, t0(), &mut events, &mut out);
        assert_eq!(events, want, "cut at {cut}");
        assert_eq!(driver.stats(), want_stats, "cut at {cut}");
    }
}

#[test]
fn handshake_and_realtime_bytes_in_a_capture_change_nothing_but_skipped_bytes() {
    let bytes = capture(4, t0());
    let (want, want_stats) = decode_capture(&bytes, &[bytes.len()]);
    let mut noisy = Vec::new();
    let mut added = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        if i % 7 == 3 {
            noisy.extend([0xD0, 0xC1, 0x8F, 0xA3, XON]);
            added += 5;
        }
        if i % 11 == 5 {
            noisy.extend([XOFF, 0xC6, 0xC0]);
            added += 3;
        }
        noisy.push(*b);
    }
    let (got, stats) = decode_capture(&noisy, &[1, 5, 64, 3]);
    assert_eq!(got, want);
    assert_eq!(stats.skipped_bytes, want_stats.skipped_bytes + added);
    assert_eq!(stats.frames, want_stats.frames);
    assert_eq!(stats.discarded_bytes, 0);
}

#[test]
fn unreadable_data_count_as_decode_errors_and_blanks_as_unavailable() {
    let mut driver = MedibusDriver::new(MedibusSettings::default());
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut bytes = Vec::new();
    encode_response(command::MEASURED_CP1, b"78 8.0F0  4", &mut bytes); // short record
    encode_response(command::ALARMS_CP1, b"O9ADISCONN", &mut bytes); // short alarm
    encode_response(
        command::MEASURED_CP1,
        b"78----F0    88 ---D6  18",
        &mut bytes,
    );
    driver.on_bytes(&bytes, t0(), &mut events, &mut out);
    assert_eq!(driver.stats().decode_errors, 2);
    assert_eq!(driver.unavailable_values(), 3);
    let rs = readings(&events);
    assert_eq!(rs.len(), 1);
    assert_eq!(value(rs[0]), 18.0);
    assert_eq!(rs[0].code, DeviceCode::mdc(151_586, "MDC_VENT_RESP_RATE"));
    // Unknown data codes are kept as LOCAL observations.
    events.clear();
    bytes.clear();
    encode_response(command::MEASURED_CP1, b"4C  12", &mut bytes);
    driver.on_bytes(&bytes, t0(), &mut events, &mut out);
    let rs = readings(&events);
    assert_eq!(
        rs.first().map(|r| (&r.code, value(r))),
        Some((
            &DeviceCode::Local {
                code: "MEDIBUS_CP1_4C".into()
            },
            12.0
        ))
    );
}

#[test]
fn a_changing_trace_reaches_the_readings() {
    let sim = MedibusSimSettings {
        fio2: SimTrace {
            base: 40.0,
            swing: 0.0,
            period_ms: 60_000,
            step: 30.0,
            step_after_ms: 5_000,
        },
        ..Default::default()
    };
    let s = session(MedibusSettings::default(), sim, 10);
    let fio2: Vec<f64> = readings(&s.events)
        .into_iter()
        .filter(mdc(152_196))
        .map(value)
        .collect();
    assert_eq!(fio2.first(), Some(&40.0));
    assert_eq!(fio2.last(), Some(&70.0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_and_stay_bounded(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        step in 1usize..64,
        connected in any::<bool>(),
    ) {
        let mut driver = MedibusDriver::new(MedibusSettings {
            max_message_len: 256,
            ..Default::default()
        });
        let mut out = Vec::new();
        let mut events = Vec::new();
        if connected {
            driver.on_connect(t0(), &mut out);
        }
        let mut t = t0();
        for chunk in data.chunks(step) {
            driver.on_bytes(chunk, t, &mut events, &mut out);
            driver.on_tick(t, &mut events, &mut out);
            t = t.plus_ms(37);
        }
        let s = driver.stats();
        prop_assert!(s.skipped_bytes + s.discarded_bytes <= data.len() as u64 + 256 * 2);
        let mut d = MedibusDecoder::new(64);
        let mut msgs = Vec::new();
        for chunk in data.chunks(step) {
            d.decode(chunk, &mut msgs);
            prop_assert!(d.buffered() <= 128);
        }
    }

    #[test]
    fn mutated_captures_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..40),
    ) {
        let mut bytes = capture(2, t0());
        let len = bytes.len();
        for (at, b) in flips {
            if let Some(x) = bytes.get_mut(at % len) {
                *x = b;
            }
        }
        let (_, stats) = decode_capture(&bytes, &[7, 1, 300]);
        let ends = bytes.iter().filter(|b| **b == b'\r').count() as u64;
        prop_assert!(stats.frames + stats.checksum_failures <= ends);
    }
}

#[test]
fn the_normalizer_takes_medibus_reports_to_canonical_units() {
    use crate::model::{IngestRecord, Param};
    use crate::normalize::{DeviceOrigin, NormalizeSettings, NormalizeTables, Normalizer};

    let s = session(MedibusSettings::default(), MedibusSimSettings::default(), 3);
    let report = s
        .events
        .iter()
        .find_map(|e| match e {
            DeviceEvent::Report(r) if r.readings.iter().any(|x| mdc(151_976)(&x)) => {
                Some(r.clone())
            }
            _ => None,
        })
        .expect("a measured-data report");
    let tables = NormalizeTables::builtin().expect("builtin tables");
    let mut n = Normalizer::new(tables, NormalizeSettings::default());
    let origin = DeviceOrigin {
        protocol: "serial",
        device_id: "evita-1".into(),
        bed: Some("B1".into()),
        message: "1".into(),
        ..Default::default()
    };
    let out = n.device("medibus", &origin, &report, t0().plus_ms(3000));
    let obs: Vec<_> = out
        .records
        .iter()
        .filter_map(|r| match r {
            IngestRecord::Observation(o) => Some(o),
            _ => None,
        })
        .collect();
    let find = |p: Param| obs.iter().find(|o| o.param == Some(p));
    let peep = find(Param::Peep).expect("PEEP observation");
    assert_eq!(peep.ucum, "cm[H2O]");
    let v = peep.numeric().unwrap_or(f64::NAN);
    assert!((v - 8.0 * 1.019_72).abs() < 0.06, "PEEP {v}");
    let fio2 = find(Param::FiO2).expect("FiO2 observation");
    assert_eq!(fio2.numeric(), Some(40.0));
    assert!(find(Param::TidalVolume).is_some());
    assert!(find(Param::RespRate).is_some());
    assert!(find(Param::EtCO2).is_some());
}
