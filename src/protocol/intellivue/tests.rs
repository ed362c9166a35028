//! Driver ↔ simulator sessions in memory, decode-only use of captures, and robustness.

use proptest::prelude::*;

use super::frame::{encode_frame, FrameDecoder};
use super::nomenclature::alert_type;
use super::pdu::{self, Link, Message};
use super::sim::{default_objects, SimObject};
use super::*;
use crate::model::Timestamp;
use crate::protocol::device::{
    DeviceCode, DeviceDriver, DeviceEvent, DeviceIdentity, DeviceReading, DeviceReport,
    DeviceSimulator, ReadingStatus, ReadingValue,
};

fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-02-03T04:05:06Z").unwrap()
}

fn reports(timeline: &[(Timestamp, DeviceEvent)]) -> Vec<(Timestamp, &DeviceReport)> {
    timeline
        .iter()
        .filter_map(|(t, e)| match e {
            DeviceEvent::Report(r) => Some((*t, r)),
            _ => None,
        })
        .collect()
}

fn mdc(r: &DeviceReading) -> u32 {
    match &r.code {
        DeviceCode::Mdc { code, .. } => *code,
        other => panic!("not MDC: {other:?}"),
    }
}

fn find(r: &DeviceReport, code: u32) -> Option<&DeviceReading> {
    r.readings.iter().find(|x| mdc(x) == code)
}

fn num(r: &DeviceReading) -> f64 {
    r.value.as_f64().unwrap()
}

fn objects_by_physio() -> Vec<(u16, SimObject)> {
    default_objects()
        .into_iter()
        .flat_map(|o| {
            o.values
                .iter()
                .map(|v| (v.physio_id, o.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The value the default simulator sends for `physio` at `elapsed_ms`.
fn expected(physio: u16, elapsed_ms: i64) -> f64 {
    let (_, obj) = objects_by_physio()
        .into_iter()
        .find(|(p, _)| *p == physio)
        .unwrap();
    let at = match obj.episodic_every_ms {
        Some(every) => elapsed_ms - elapsed_ms.rem_euclid(every),
        None => elapsed_ms,
    };
    let n = obj.values.iter().find(|v| v.physio_id == physio).unwrap();
    IntellivueSimulator::value_at(n, at)
}

#[test]
fn full_session_yields_the_monitor_values_with_codes_units_and_times() {
    let mut driver = IntellivueDriver::default();
    let mut sim = IntellivueSimulator::new(IntellivueSimSettings {
        faults: true,
        ..Default::default()
    });
    let (_, timeline) = run_session(6, t0(), &mut driver, &mut sim);

    // Connected, then Identified, then reports.
    let kinds: Vec<&str> = timeline
        .iter()
        .map(|(_, e)| match e {
            DeviceEvent::Connected => "connected",
            DeviceEvent::Identified(_) => "identified",
            DeviceEvent::Report(_) => "report",
            DeviceEvent::Alarms { .. } => "alarms",
            DeviceEvent::Disconnected { .. } => "disconnected",
        })
        .collect();
    assert_eq!(&kinds[..3], &["connected", "identified", "report"]);
    assert!(!kinds.contains(&"disconnected"));
    let identity = timeline.iter().find_map(|(_, e)| match e {
        DeviceEvent::Identified(i) => Some(i.clone()),
        _ => None,
    });
    assert_eq!(
        identity,
        Some(DeviceIdentity {
            manufacturer: Some("Philips".into()),
            model: Some("MP70".into()),
            serial: Some("DE00012345".into()),
            firmware: Some("M.00.03".into()),
        })
    );

    let reps = reports(&timeline);
    // A numerics poll right after the MDS Create, then one a second; the poll sent at the
    // last step is not answered within the session: six reports.
    assert_eq!(reps.len(), 6);
    let table: [(u32, u16, &str); 13] = [
        (147_842, 0x4182, "/min"),
        (150_456, 0x4BB8, "%"),
        (149_530, 0x481A, "/min"),
        (151_562, 0x500A, "/min"),
        (150_021, 0x4A05, "mm[Hg]"),
        (150_022, 0x4A06, "mm[Hg]"),
        (150_023, 0x4A07, "mm[Hg]"),
        (150_037, 0x4A15, "mm[Hg]"),
        (150_038, 0x4A16, "mm[Hg]"),
        (150_039, 0x4A17, "mm[Hg]"),
        (150_344, 0x4B48, "Cel"),
        (151_728, 0x50B0, "mm[Hg]"),
        (150_448, 0x4BB0, "%"),
    ];
    for (at, rep) in &reps {
        // The monitor answers in the step the poll reaches it: its clock is the session's.
        assert_eq!(rep.device_time, Some(*at));
        let elapsed = at.since(t0());
        assert_eq!(
            rep.readings.len(),
            table.len(),
            "the NaN blood temperature is withheld"
        );
        for (code, physio, unit) in table {
            let r = find(rep, code).unwrap_or_else(|| panic!("no {code} at {at}"));
            assert_eq!(r.unit, unit, "{code}");
            if code != 150_448 {
                assert_eq!(num(r), expected(physio, elapsed), "{code} at +{elapsed} ms");
                assert_eq!(r.status, ReadingStatus::Valid);
            }
        }
        // The questionable perfusion index is emitted, flagged.
        let pi = find(rep, 150_448).unwrap();
        assert_eq!((num(pi), pi.status), (2.1, ReadingStatus::Questionable));
        // HR carries the poll's relative time stamp, mapped to the same instant.
        assert_eq!(find(rep, 147_842).unwrap().time, Some(*at));
        assert_eq!(
            find(rep, 147_842).unwrap().label.as_deref(),
            Some("NOM_ECG_CARD_BEAT_RATE")
        );
        // NIBP carries its measurement time (the start, measured every five minutes).
        assert_eq!(find(rep, 150_021).unwrap().time, Some(t0()));
        // Temperature with its decimal.
        assert_eq!(num(find(rep, 150_344).unwrap()), expected(0x4B48, elapsed));
        assert_eq!(find(rep, 188_436), None);
    }
    // The values move with the traces.
    let hr: Vec<f64> = reps
        .iter()
        .map(|(_, r)| num(find(r, 147_842).unwrap()))
        .collect();
    assert!(hr.windows(2).any(|w| w[0] != w[1]));
    let c = driver.counters();
    assert_eq!(c.unavailable_values, 6);
    assert_eq!(c.reports, 6);
    assert_eq!(c.associations, 1);
    assert_eq!(c.remote_errors + c.unknown_units + c.dropped, 0);
    let s = driver.stats();
    assert_eq!(
        (
            s.checksum_failures,
            s.resyncs,
            s.decode_errors,
            s.discarded_bytes
        ),
        (0, 0, 0, 0)
    );
    // AARE + MDS create + (numerics + alarms) per poll round.
    assert_eq!(s.frames, 2 + 2 * 6);
    assert_eq!(sim.ignored(), 0);
}

#[test]
fn relative_time_is_followed_across_the_wrap() {
    let mut driver = IntellivueDriver::default();
    let mut sim = IntellivueSimulator::new(IntellivueSimSettings {
        relative_time_start: IntellivueSimSettings::near_wrap(3),
        abs_time_in_polls: false,
        ..Default::default()
    });
    let (bytes, timeline) = run_session(8, t0(), &mut driver, &mut sim);
    // The monitor's relative time did wrap during the session, and polls carried no absolute time.
    let mut rels = Vec::new();
    FrameDecoder::default().feed(&bytes, |ud| {
        if let Ok(Message::PollResult { reply, .. }) = pdu::decode(ud) {
            assert_eq!(reply.abs_time, [0xFF; 8]);
            rels.push(reply.rel_time);
        }
    });
    assert!(rels.windows(2).any(|w| w[1] < w[0]), "no wrap in {rels:?}");
    let reps = reports(&timeline);
    assert_eq!(reps.len(), 8);
    for (at, rep) in reps {
        assert_eq!(
            rep.device_time,
            Some(at),
            "report at +{} ms",
            at.since(t0())
        );
        assert_eq!(find(rep, 147_842).unwrap().time, Some(at));
    }
}

#[test]
fn monitor_local_time_is_converted_with_the_configured_offset() {
    let sim_settings = IntellivueSimSettings {
        utc_offset_min: 90,
        ..Default::default()
    };
    let mut driver = IntellivueDriver::new(IntellivueSettings {
        monitor_utc_offset_min: 90,
        ..Default::default()
    });
    let (_, timeline) = run_session(
        2,
        t0(),
        &mut driver,
        &mut IntellivueSimulator::new(sim_settings.clone()),
    );
    for (at, rep) in reports(&timeline) {
        assert_eq!(rep.device_time, Some(at));
    }
    // Read as UTC, the same bytes are 90 minutes late.
    let (_, timeline) = run_session(
        2,
        t0(),
        &mut IntellivueDriver::default(),
        &mut IntellivueSimulator::new(sim_settings),
    );
    for (at, rep) in reports(&timeline) {
        assert_eq!(rep.device_time, Some(at.plus_ms(90 * 60_000)));
    }
}

#[test]
fn large_results_arrive_as_linked_parts_and_make_one_report() {
    let mut driver = IntellivueDriver::default();
    let mut sim = IntellivueSimulator::new(IntellivueSimSettings {
        mtu: 120,
        faults: true,
        ..Default::default()
    });
    let (bytes, timeline) = run_session(3, t0(), &mut driver, &mut sim);
    let mut links = Vec::new();
    FrameDecoder::default().feed(&bytes, |ud| {
        if let Ok(Message::PollResult { link, reply, .. }) = pdu::decode(ud) {
            if reply.obj_class == 6 {
                links.push(link);
            }
        }
    });
    let linked = links
        .iter()
        .filter(|l| matches!(l, Link::Linked { .. }))
        .count();
    assert!(
        linked >= 2 * 4,
        "expected several linked parts per poll, got {links:?}"
    );
    assert!(links.iter().any(|l| matches!(
        l,
        Link::Linked {
            state: pdu::rorls::NOT_FIRST_NOT_LAST,
            ..
        }
    )));
    assert!(links.iter().any(|l| matches!(
        l,
        Link::Linked {
            state: pdu::rorls::LAST,
            ..
        }
    )));
    let reps = reports(&timeline);
    assert_eq!(reps.len(), 3);
    for (at, rep) in reps {
        assert_eq!(rep.readings.len(), 13);
        assert_eq!(rep.device_time, Some(at));
    }
}

#[test]
fn alarms_are_reported_with_priority_and_text() {
    let mut sim = IntellivueSimulator::new(IntellivueSimSettings {
        alarms: vec![
            SimAlarm {
                source: 0x4BB8,
                code: 62,
                alert_type: alert_type::MED_PRI_P_AL,
                text: Some("**SpO2 Low".into()),
            },
            SimAlarm {
                source: 0x4182,
                code: 274,
                alert_type: alert_type::LOW_PRI_T_AL,
                text: None,
            },
        ],
        ..Default::default()
    });
    let (_, timeline) = run_session(1, t0(), &mut IntellivueDriver::default(), &mut sim);
    let (at, alarms) = timeline
        .iter()
        .find_map(|(t, e)| match e {
            DeviceEvent::Alarms { alarms } => Some((*t, alarms.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(alarms.len(), 2);
    assert_eq!(alarms[0].text, "**SpO2 Low");
    assert_eq!(alarms[0].priority, "medium");
    assert_eq!(alarms[0].code, "NOM_PULS_OXIM_SAT_O2/NOM_EVT_LO");
    assert_eq!(alarms[0].time, Some(at));
    assert_eq!(alarms[1].text, "NOM_ECG_CARD_BEAT_RATE NOM_EVT_LEADS_OFF");
    assert_eq!(alarms[1].priority, "low");
    // No alarms: an empty list is still reported (the list is the whole current state).
    let (_, timeline) = run_session(
        1,
        t0(),
        &mut IntellivueDriver::default(),
        &mut IntellivueSimulator::default(),
    );
    assert!(timeline
        .iter()
        .any(|(_, e)| matches!(e, DeviceEvent::Alarms { alarms } if alarms.is_empty())));
    // And with alarm polling off, none.
    let mut driver = IntellivueDriver::new(IntellivueSettings {
        alarm_poll: false,
        ..Default::default()
    });
    let (_, timeline) = run_session(2, t0(), &mut driver, &mut IntellivueSimulator::default());
    assert!(!timeline
        .iter()
        .any(|(_, e)| matches!(e, DeviceEvent::Alarms { .. })));
    assert_eq!(reports(&timeline).len(), 2);
}

/// Steps a session by hand so tests can cut the line.
struct Link2 {
    driver: IntellivueDriver,
    sim: IntellivueSimulator,
    host: Vec<u8>,
    now: Timestamp,
    timeline: Vec<(Timestamp, DeviceEvent)>,
}

impl Link2 {
    fn new(driver: IntellivueDriver, sim: IntellivueSimulator) -> Self {
        let mut l = Link2 {
            driver,
            sim,
            host: Vec::new(),
            now: t0(),
            timeline: Vec::new(),
        };
        l.driver.on_connect(l.now, &mut l.host);
        l
    }

    /// Runs until `until_s` seconds after start; `connected` decides whether bytes get through.
    fn run(&mut self, until_s: i64, connected: bool) {
        let end = t0().plus_ms(until_s * 1000);
        let mut events = Vec::new();
        while self.now < end {
            self.now = self.now.plus_ms(50);
            let mut reply = Vec::new();
            if connected && !self.host.is_empty() {
                self.sim.on_bytes(&self.host, self.now, &mut reply);
            }
            self.host.clear();
            self.sim.on_tick(self.now, &mut reply);
            if connected && !reply.is_empty() {
                self.driver
                    .on_bytes(&reply, self.now, &mut events, &mut self.host);
            }
            self.driver.on_tick(self.now, &mut events, &mut self.host);
            let now = self.now;
            self.timeline.extend(events.drain(..).map(|e| (now, e)));
        }
    }

    fn count(&self, f: impl Fn(&DeviceEvent) -> bool) -> usize {
        self.timeline.iter().filter(|(_, e)| f(e)).count()
    }

    fn disconnects(&self) -> Vec<(i64, String)> {
        self.timeline
            .iter()
            .filter_map(|(t, e)| match e {
                DeviceEvent::Disconnected { reason } => Some((t.since(t0()), reason.clone())),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_silent_monitor_is_disconnected_and_the_association_restarts() {
    let mut l = Link2::new(IntellivueDriver::default(), IntellivueSimulator::default());
    l.run(3, true);
    assert!(l.driver.is_operating());
    let before = l.count(|e| matches!(e, DeviceEvent::Report(_)));
    // The line goes dead: the driver gives up ten seconds after the last frame.
    l.run(15, false);
    let d = l.disconnects();
    assert_eq!(d.len(), 1);
    assert!((12_000..=13_100).contains(&d[0].0), "{d:?}");
    assert!(d[0].1.contains("silent"));
    // The monitor, unpolled, dropped the association on its side too.
    assert!(!l.sim.is_associated());
    // Back online: the next association request gets through and polling resumes.
    l.run(40, true);
    assert_eq!(l.count(|e| matches!(e, DeviceEvent::Connected)), 2);
    assert!(l.count(|e| matches!(e, DeviceEvent::Report(_))) > before + 10);
    assert!(l.driver.is_operating());
}

#[test]
fn an_unpolled_monitor_aborts_and_the_driver_reconnects() {
    // Polls every 30 s and no keep-alive: the monitor's 10 s time-out fires.
    let settings = IntellivueSettings {
        poll_interval: std::time::Duration::from_secs(30),
        keep_alive: std::time::Duration::from_secs(60),
        ..Default::default()
    };
    let mut l = Link2::new(
        IntellivueDriver::new(settings),
        IntellivueSimulator::default(),
    );
    l.run(20, true);
    let d = l.disconnects();
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].1.contains("aborted"));
    assert!((10_000..=10_200).contains(&d[0].0));
    // reconnect_after (5 s) later it associates again.
    assert_eq!(l.count(|e| matches!(e, DeviceEvent::Connected)), 2);
    let reconnect = l
        .timeline
        .iter()
        .filter(|(_, e)| matches!(e, DeviceEvent::Connected))
        .nth(1)
        .unwrap()
        .0;
    assert!((15_000..=15_300).contains(&reconnect.since(t0())));
}

#[test]
fn keep_alive_holds_the_association_between_slow_polls() {
    let settings = IntellivueSettings {
        poll_interval: std::time::Duration::from_secs(30),
        ..Default::default()
    };
    let mut l = Link2::new(
        IntellivueDriver::new(settings),
        IntellivueSimulator::default(),
    );
    l.run(65, true);
    assert!(l.disconnects().is_empty());
    assert_eq!(l.count(|e| matches!(e, DeviceEvent::Report(_))), 3);
    // Keep-alive MDS polls in between were answered too.
    assert!(l.sim.polls_answered() > 6 + 8);
}

#[test]
fn release_ends_the_session_without_reconnecting() {
    let mut l = Link2::new(IntellivueDriver::default(), IntellivueSimulator::default());
    l.run(2, true);
    l.driver.release(l.now, &mut l.host);
    l.run(30, true);
    let d = l.disconnects();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].1, "association released");
    assert!(!l.sim.is_associated());
    assert_eq!(l.count(|e| matches!(e, DeviceEvent::Connected)), 1);
    assert!(l.host.is_empty());
}

#[test]
fn refuse_and_monitor_release_disconnect() {
    for (msg, reason) in [
        (pdu::encode_refuse(0), "refused"),
        (pdu::encode_release_request(), "released"),
    ] {
        let mut driver = IntellivueDriver::default();
        let mut out = Vec::new();
        driver.on_connect(t0(), &mut out);
        out.clear();
        let mut frame = Vec::new();
        encode_frame(&msg, &mut frame).unwrap();
        let mut events = Vec::new();
        driver.on_bytes(&frame, t0(), &mut events, &mut out);
        assert!(
            matches!(&events[..], [DeviceEvent::Disconnected { reason: r }] if r.contains(reason)),
            "{events:?}"
        );
        // A release from the monitor is answered.
        if reason == "released" {
            let mut replies = Vec::new();
            FrameDecoder::default().feed(&out, |ud| {
                replies.push(pdu::decode(ud).map(|m| format!("{m:?}")))
            });
            assert_eq!(replies, vec![Ok("ReleaseResult".to_string())]);
        }
        // Backoff, then a new association request.
        out.clear();
        driver.on_tick(t0().plus_ms(4_000), &mut events, &mut out);
        assert!(out.is_empty());
        driver.on_tick(t0().plus_ms(5_000), &mut events, &mut out);
        let mut got = Vec::new();
        FrameDecoder::default().feed(&out, |ud| {
            got.push(matches!(
                pdu::decode(ud),
                Ok(Message::AssociationRequest(_))
            ))
        });
        assert_eq!(got, vec![true]);
    }
}

#[test]
fn association_request_is_repeated_while_unanswered() {
    let mut driver = IntellivueDriver::default();
    let (mut out, mut events) = (Vec::new(), Vec::new());
    driver.on_connect(t0(), &mut out);
    let first = out.clone();
    out.clear();
    driver.on_tick(t0().plus_ms(9_900), &mut events, &mut out);
    assert!(out.is_empty());
    driver.on_tick(t0().plus_ms(10_000), &mut events, &mut out);
    assert_eq!(out, first);
    assert!(events.is_empty(), "never connected, so no Disconnected");
}

fn reports_only(timeline: &[(Timestamp, DeviceEvent)]) -> Vec<DeviceReport> {
    reports(timeline)
        .into_iter()
        .map(|(_, r)| r.clone())
        .collect()
}

fn decode_only(bytes: &[u8], chunk: usize) -> (Vec<DeviceEvent>, IntellivueDriver) {
    let mut driver = IntellivueDriver::default();
    let (mut events, mut out) = (Vec::new(), Vec::new());
    for (i, c) in bytes.chunks(chunk.max(1)).enumerate() {
        driver.on_bytes(c, t0().plus_ms(i as i64), &mut events, &mut out);
    }
    (events, driver)
}

#[test]
fn a_capture_of_the_monitor_side_decodes_to_the_live_reports() {
    let mut live = IntellivueDriver::default();
    let (bytes, timeline) = run_session(20, t0(), &mut live, &mut IntellivueSimulator::default());
    assert_eq!(bytes, capture(20, t0()));
    let live_reports = reports_only(&timeline);
    assert_eq!(live_reports.len(), 20);
    for chunk in [1, 7, 64, bytes.len()] {
        let (events, driver) = decode_only(&bytes, chunk);
        let decoded: Vec<DeviceReport> = events
            .iter()
            .filter_map(|e| match e {
                DeviceEvent::Report(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(decoded, live_reports, "chunk {chunk}");
        assert!(matches!(events.first(), Some(DeviceEvent::Connected)));
        assert!(events
            .iter()
            .any(|e| matches!(e, DeviceEvent::Identified(_))));
        let s = driver.stats();
        assert_eq!(s, live.stats(), "chunk {chunk}");
    }
}

#[test]
fn split_reads_at_every_offset_give_the_same_events() {
    let bytes = capture(2, t0());
    let (whole, _) = decode_only(&bytes, bytes.len());
    // Two cuts at every pair of frame-boundary-crossing offsets would be quadratic; one cut at
    // every offset, with the rest fed at once, covers every split point.
    for cut in 0..=bytes.len() {
        let mut driver = IntellivueDriver::default();
        let (mut events, mut out) = (Vec::new(), Vec::new());
        driver.on_bytes(&bytes[..cut], t0(), &mut events, &mut out);
        driver.on_bytes(&bytes[cut..], t0(), &mut events, &mut out);
        assert_eq!(events, whole, "cut at {cut}");
    }
}

#[test]
fn corrupted_frames_are_counted_and_the_session_goes_on() {
    let bytes = capture(6, t0());
    let mut messages = Vec::new();
    FrameDecoder::default().feed(&bytes, |ud| messages.push(ud.to_vec()));
    let is_numerics = |ud: &[u8]| matches!(pdu::decode(ud), Ok(Message::PollResult { reply, .. }) if reply.obj_class == 6);
    // Re-frame every message; flip one bit inside the 2nd and 4th numerics results.
    let mut noisy = vec![0x00, 0x13, 0x7D, 0xC1, 0x55];
    let mut seen = 0;
    let mut corrupted = 0;
    for m in &messages {
        let mut wire = Vec::new();
        encode_frame(m, &mut wire).unwrap();
        if is_numerics(m) {
            seen += 1;
            if seen == 2 || seen == 4 {
                let mid = (wire.len() / 2..wire.len())
                    .find(|&i| !matches!(wire[i], 0x7C | 0x7D) && wire[i - 1] != 0x7D)
                    .unwrap();
                wire[mid] ^= 0x01;
                corrupted += 1;
            }
        }
        noisy.extend(wire);
    }
    let (events, driver) = decode_only(&noisy, 13);
    let s = driver.stats();
    assert_eq!(s.checksum_failures, corrupted);
    assert_eq!((s.discarded_bytes, s.resyncs), (5, 1));
    assert_eq!(s.frames as usize, messages.len() - 2);
    let got = events
        .iter()
        .filter(|e| matches!(e, DeviceEvent::Report(_)))
        .count();
    assert_eq!(got, seen - 2);
    // What did arrive is identical to the clean decode.
    let (clean, _) = decode_only(&bytes, 13);
    let clean_reports: Vec<&DeviceEvent> = clean
        .iter()
        .filter(|e| matches!(e, DeviceEvent::Report(_)))
        .collect();
    let noisy_reports: Vec<&DeviceEvent> = events
        .iter()
        .filter(|e| matches!(e, DeviceEvent::Report(_)))
        .collect();
    assert_eq!(noisy_reports[0], clean_reports[0]);
    assert_eq!(noisy_reports[1], clean_reports[2]);
}

#[test]
fn malformed_but_checksummed_messages_are_decode_errors() {
    let mut driver = IntellivueDriver::default();
    let (mut events, mut out) = (Vec::new(), Vec::new());
    let mut wire = Vec::new();
    for ud in [
        &[0x42u8, 1, 2][..],
        &[0xE1, 0x00, 0x00, 0x02, 0x00, 0x02, 0x00, 0x40],
        &[],
    ] {
        encode_frame(ud, &mut wire).unwrap();
    }
    driver.on_bytes(&wire, t0(), &mut events, &mut out);
    assert!(events.is_empty());
    assert_eq!(driver.stats().frames, 3);
    assert_eq!(driver.stats().decode_errors, 3);
}

#[test]
fn mutated_messages_never_panic_the_driver() {
    // Every byte of every message of a real session, set to a handful of values, re-framed
    // with a good FCS so the message decoder sees it.
    let bytes = capture(2, t0());
    let mut messages = Vec::new();
    FrameDecoder::default().feed(&bytes, |ud| messages.push(ud.to_vec()));
    let mut driver = IntellivueDriver::default();
    let (mut events, mut out) = (Vec::new(), Vec::new());
    driver.on_connect(t0(), &mut out);
    for m in &messages {
        for i in 0..m.len() {
            for v in [0x00, 0x01, 0x7F, 0x80, 0xFF, m[i].wrapping_add(1)] {
                let mut x = m.clone();
                x[i] = v;
                let mut wire = Vec::new();
                encode_frame(&x, &mut wire).unwrap();
                driver.on_bytes(&wire, t0(), &mut events, &mut out);
                // Truncated at the mutation point too.
                wire.clear();
                encode_frame(&x[..i], &mut wire).unwrap();
                driver.on_bytes(&wire, t0(), &mut events, &mut out);
            }
        }
        events.clear();
        out.clear();
    }
    assert!(driver.stats().decode_errors > 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..64) {
        let mut driver = IntellivueDriver::default();
        let (mut events, mut out) = (Vec::new(), Vec::new());
        driver.on_connect(t0(), &mut out);
        for (i, c) in data.chunks(chunk).enumerate() {
            driver.on_bytes(c, t0().plus_ms(i as i64 * 10), &mut events, &mut out);
            driver.on_tick(t0().plus_ms(i as i64 * 10), &mut events, &mut out);
        }
        let s = driver.stats();
        prop_assert!(s.discarded_bytes <= data.len() as u64);
    }

    #[test]
    fn random_framed_messages_never_panic(ud in proptest::collection::vec(any::<u8>(), 0..512), head in 0usize..6) {
        // Start the user data like a real message so decoding goes deep.
        let heads: [&[u8]; 6] = [
            &[0xE1, 0x00, 0x00, 0x02, 0x00, 0x02],
            &[0xE1, 0x00, 0x00, 0x02, 0x00, 0x05],
            &[0xE1, 0x00, 0x00, 0x02, 0x00, 0x01],
            &[0x0E],
            &[0x0D, 0xFF],
            &[],
        ];
        let mut msg = heads[head].to_vec();
        msg.extend(&ud);
        let mut wire = Vec::new();
        encode_frame(&msg, &mut wire).unwrap();
        let mut driver = IntellivueDriver::default();
        let (mut events, mut out) = (Vec::new(), Vec::new());
        driver.on_bytes(&wire, t0(), &mut events, &mut out);
        prop_assert_eq!(driver.stats().frames, 1);
        let _ = pdu::decode(&msg);
    }
}

#[test]
fn readings_carry_the_expected_shape() {
    // One report, checked field by field for HR.
    let (_, timeline) = run_session(
        1,
        t0(),
        &mut IntellivueDriver::default(),
        &mut IntellivueSimulator::default(),
    );
    let (at, rep) = reports(&timeline)[0];
    let hr = find(rep, 147_842).unwrap();
    assert_eq!(
        hr,
        &DeviceReading {
            code: DeviceCode::mdc(147_842, "MDC_ECG_HEART_RATE"),
            value: ReadingValue::Num(78.0),
            unit: "/min".into(),
            time: Some(at),
            channel: None,
            label: Some("NOM_ECG_CARD_BEAT_RATE".into()),
            status: ReadingStatus::Valid,
        }
    );
}
