use std::time::Duration;

use proptest::prelude::*;

use super::codes::*;
use super::record::*;
use super::*;
use crate::model::Timestamp;
use crate::protocol::device::{
    DeviceCode, DeviceEvent, DeviceReading, DeviceReport, ReadingStatus, SimTrace,
};

/// 2026-01-01T08:00:00Z.
const T0: Timestamp = Timestamp::from_millis(1_767_254_400_000);

fn decode_all(d: &mut FrameDecoder, bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    d.decode(bytes, |r| out.push(r.to_vec()));
    out
}

fn framed(records: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        encode_frame(r, &mut out);
    }
    out
}

fn reports(events: &[DeviceEvent]) -> Vec<&DeviceReport> {
    events
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::Report(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn find<'a>(r: &'a DeviceReport, label: &str) -> Option<&'a DeviceReading> {
    r.readings
        .iter()
        .find(|x| x.label.as_deref() == Some(label))
}

fn num(r: &DeviceReading) -> f64 {
    r.value.as_f64().unwrap_or(f64::NAN)
}

fn mdc_code(r: &DeviceReading) -> Option<u32> {
    match &r.code {
        DeviceCode::Mdc { code, .. } => Some(*code),
        _ => None,
    }
}

/// A driver and a simulator wired together in memory, stepped 100 ms at a time.
struct Link {
    driver: DatexDriver,
    sim: DatexSimulator,
    now: Timestamp,
    events: Vec<DeviceEvent>,
    to_device: Vec<u8>,
    from_device: Vec<u8>,
    /// When false the monitor's output is lost (cable pulled).
    up: bool,
}

impl Link {
    fn new(settings: DatexSettings, sim: DatexSimSettings) -> Self {
        let mut l = Link {
            driver: DatexDriver::new(settings),
            sim: DatexSimulator::new(sim),
            now: T0,
            events: Vec::new(),
            to_device: Vec::new(),
            from_device: Vec::new(),
            up: true,
        };
        l.driver.on_connect(T0, &mut l.to_device);
        l
    }

    /// Host bytes reach the monitor at once; its replies reach the driver at once.
    fn deliver(&mut self) {
        if !self.to_device.is_empty() {
            self.sim
                .on_bytes(&self.to_device, self.now, &mut self.from_device);
            self.to_device.clear();
        }
        if self.up && !self.from_device.is_empty() {
            self.driver.on_bytes(
                &self.from_device,
                self.now,
                &mut self.events,
                &mut self.to_device,
            );
        }
        self.from_device.clear();
    }

    fn step(&mut self) {
        self.deliver();
        self.sim.on_tick(self.now, &mut self.from_device);
        self.deliver();
        self.driver
            .on_tick(self.now, &mut self.events, &mut self.to_device);
        self.deliver();
    }

    /// Runs until `ms` after T0 (inclusive).
    fn run_until(&mut self, ms: i64) {
        while self.now.since(T0) <= ms {
            self.step();
            self.now = self.now.plus_ms(100);
        }
    }

    fn connected_at(&self) -> Option<usize> {
        self.events
            .iter()
            .position(|e| matches!(e, DeviceEvent::Connected))
    }
}

/// One displayed-values record holding `builder`'s basic class.
fn basic_record(b: &PhdbBuilder, r_time: u32) -> Vec<u8> {
    let sub = b.subrecord(r_time);
    let meta = RecordMeta {
        r_nbr: 1,
        dri_level: DRI_LEVEL_2005,
        plug_id: 7,
        r_time,
        main_type: DRI_MT_PHDB,
    };
    build_record(&meta, &[(DRI_PH_DISPL, &sub)]).unwrap()
}

fn decode_record(rec: &[u8]) -> (DatexDriver, Vec<DeviceEvent>) {
    let mut d = DatexDriver::new(DatexSettings::default());
    let mut events = Vec::new();
    let mut out = Vec::new();
    d.on_bytes(&framed(&[rec]), T0, &mut events, &mut out);
    (d, events)
}

// ---------------------------------------------------------------- framing

#[test]
fn checksum_by_hand_on_a_tiny_record() {
    // 0x01 + 0x02 + 0xFF = 0x102 → 0x02.
    assert_eq!(checksum(&[0x01, 0x02, 0xFF]), 0x02);
    assert_eq!(
        framed(&[&[0x01, 0x02, 0xFF]]),
        [0x7E, 0x01, 0x02, 0xFF, 0x02, 0x7E]
    );
    // 0x70 + 0x0E = 0x7E: the checksum itself is escaped.
    assert_eq!(
        framed(&[&[0x70, 0x0E]]),
        [0x7E, 0x70, 0x0E, 0x7D, 0x5E, 0x7E]
    );
    let mut d = FrameDecoder::new(64);
    let got = decode_all(&mut d, &[0x7E, 0x70, 0x0E, 0x7D, 0x5E, 0x7E]);
    assert_eq!(got, vec![vec![0x70, 0x0E]]);
    // The same frame with a checksum off by one is dropped and counted.
    let got = decode_all(&mut d, &[0x7E, 0x70, 0x0E, 0x7D, 0x5F, 0x7E]);
    assert!(got.is_empty());
    assert_eq!(d.stats().frames, 1);
    assert_eq!(d.stats().checksum_failures, 1);
}

#[test]
fn flag_and_escape_bytes_are_escaped_and_restored() {
    let rec = [0x7E, 0x00, 0x7D, 0x5E, 0x5D, 0x7E, 0x7D];
    let wire = framed(&[&rec]);
    // Only the two delimiters are raw flags.
    assert_eq!(wire.iter().filter(|&&b| b == 0x7E).count(), 2);
    assert_eq!(wire.first(), Some(&0x7E));
    assert_eq!(wire.last(), Some(&0x7E));
    assert_eq!(&wire[1..3], &[0x7D, 0x5E]);
    assert_eq!(&wire[4..6], &[0x7D, 0x5D]);
    let mut d = FrameDecoder::new(64);
    assert_eq!(decode_all(&mut d, &wire), vec![rec.to_vec()]);
}

#[test]
fn split_reads_at_every_offset_give_the_same_records() {
    let a: Vec<u8> = (0u8..=255).collect(); // contains 7D and 7E
    let b = vec![0x7E; 5];
    let c = basic_record(&PhdbBuilder::new(PhdbClass::Basic), 0x7E7D_7E7D);
    let wire = framed(&[&a, &b, &c]);
    let want = vec![a.clone(), b.clone(), c.clone()];
    for k in 0..=wire.len() {
        let mut d = FrameDecoder::new(MAX_RECORD_LEN + 1);
        let mut got = decode_all(&mut d, &wire[..k]);
        got.extend(decode_all(&mut d, &wire[k..]));
        assert_eq!(got, want, "split at {k}");
        assert_eq!(d.stats().frames, 3);
        assert_eq!(d.stats().checksum_failures + d.stats().resyncs, 0);
    }
    let mut d = FrameDecoder::new(MAX_RECORD_LEN + 1);
    let mut got = Vec::new();
    for byte in &wire {
        got.extend(decode_all(&mut d, std::slice::from_ref(byte)));
    }
    assert_eq!(got, want);
}

#[test]
fn driver_decodes_the_same_reports_at_every_split() {
    let wire = capture(6, T0); // one record (after the first fallback step)
    let whole = {
        let mut d = DatexDriver::new(DatexSettings::default());
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        d.on_bytes(&wire, T0, &mut ev, &mut out);
        ev
    };
    assert_eq!(reports(&whole).len(), 1);
    for k in 0..=wire.len() {
        let mut d = DatexDriver::new(DatexSettings::default());
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        d.on_bytes(&wire[..k], T0, &mut ev, &mut out);
        d.on_bytes(&wire[k..], T0, &mut ev, &mut out);
        assert_eq!(ev, whole, "split at {k}");
    }
}

#[test]
fn bad_checksum_is_counted_and_the_next_record_decoded() {
    let good = [0x10, 0x20, 0x30];
    let mut wire = framed(&[&good]);
    // Corrupt a data byte of the first frame.
    wire[2] ^= 0x01;
    wire.extend(framed(&[&good]));
    let mut d = FrameDecoder::new(64);
    assert_eq!(decode_all(&mut d, &wire), vec![good.to_vec()]);
    let s = d.stats();
    assert_eq!((s.frames, s.checksum_failures), (1, 1));
}

#[test]
fn noise_before_between_and_after_frames_is_discarded() {
    let a = [0x01, 0x02, 0x03];
    let b = [0x7E, 0x7D, 0x42];
    let mut wire = vec![0x00, 0x55, 0xAA, 0x7D]; // noise (even a stray escape) before the start
    wire.extend(framed(&[&a]));
    wire.extend([0x7E, 0x7E, 0x7E]); // empty frames
    wire.extend(framed(&[&b]));
    let mut d = FrameDecoder::new(64);
    assert_eq!(decode_all(&mut d, &wire), vec![a.to_vec(), b.to_vec()]);
    let s = d.stats();
    assert_eq!(s.discarded_bytes, 4);
    assert_eq!(s.resyncs, 1);
    assert_eq!(s.checksum_failures, 0);

    // Noise between frames, after a closing flag, reads as a frame and fails its checksum;
    // the next frame still decodes.
    let mut wire = framed(&[&a]);
    wire.extend([0x13, 0x37, 0x99]);
    wire.extend(framed(&[&b]));
    let mut d = FrameDecoder::new(64);
    assert_eq!(decode_all(&mut d, &wire), vec![a.to_vec(), b.to_vec()]);
    assert_eq!(d.stats().checksum_failures, 1);
}

#[test]
fn truncated_frames_do_not_swallow_the_next_one() {
    let a: Vec<u8> = (1..=40).collect();
    let b = [0x09, 0x08, 0x07];
    let full = framed(&[&a]);
    // The first frame is cut off before its checksum and closing flag.
    let mut wire = full[..20].to_vec();
    wire.extend(framed(&[&b]));
    let mut d = FrameDecoder::new(64);
    assert_eq!(decode_all(&mut d, &wire), vec![b.to_vec()]);
    assert_eq!(d.stats().checksum_failures, 1);
    // A frame cut off at the end of the stream is held, not emitted, and bounded.
    let mut d = FrameDecoder::new(64);
    assert!(decode_all(&mut d, &full[..30]).is_empty());
    assert_eq!(d.buffered(), 29);

    // A framed record shorter than its length field is a decode error for the driver.
    let rec = basic_record(&PhdbBuilder::new(PhdbClass::Basic), 1);
    let (d, ev) = decode_record(&rec[..100]);
    assert!(ev.is_empty());
    assert_eq!(d.stats().decode_errors, 1);
    assert_eq!(d.stats().frames, 1);
}

#[test]
fn aborted_frame_resynchronises_on_the_flag() {
    let b = [0x05, 0x06];
    let mut wire = vec![0x7E, 0x01, 0x02, 0x7D]; // `7D 7E` aborts
    wire.extend(framed(&[&b])); // its opening flag ends the aborted frame
    let mut d = FrameDecoder::new(64);
    assert_eq!(decode_all(&mut d, &wire), vec![b.to_vec()]);
    assert_eq!(d.stats().resyncs, 1);
    assert_eq!(d.stats().discarded_bytes, 3);
}

#[test]
fn oversize_frame_is_dropped_and_the_decoder_resyncs() {
    let big = vec![0x11u8; 100];
    let small = [0x01, 0x02];
    let mut wire = framed(&[&big]);
    wire.extend(framed(&[&small]));
    let mut d = FrameDecoder::new(64);
    let got = decode_all(&mut d, &wire);
    // The big frame's closing flag is taken as noise end/next start, so `small` decodes.
    assert_eq!(got, vec![small.to_vec()]);
    let s = d.stats();
    assert_eq!(s.resyncs, 1);
    assert!(s.discarded_bytes >= 65);
    assert!(d.buffered() <= 64);
}

// ---------------------------------------------------------------- records

#[test]
fn request_record_has_the_documented_layout() {
    let rec = request_record(DRI_LEVEL_2005, &[PhdbRequest::displayed(10, 0x0E)]).unwrap();
    assert_eq!(rec.len(), 49);
    assert_eq!(&rec[0..2], &[49, 0]); // r_len
    assert_eq!(rec[3], DRI_LEVEL_2005);
    assert_eq!(&rec[14..16], &[0, 0]); // DRI_MT_PHDB
    assert_eq!(&rec[16..19], &[0, 0, DRI_PH_XMIT_REQ]);
    assert_eq!(rec[21], DRI_EOL_SUBR_LIST);
    assert_eq!(rec[40], DRI_PH_DISPL);
    assert_eq!(&rec[41..43], &[10, 0]);
    assert_eq!(&rec[43..47], &[0x0E, 0, 0, 0]);
    let parsed = Record::parse(&rec).unwrap();
    assert_eq!(parsed.header.dri_level, DRI_LEVEL_2005);
    assert_eq!(
        parse_requests(&parsed),
        vec![PhdbRequest::displayed(10, 0x0E)]
    );
    assert!(PhdbRequest::stop(DRI_PH_DISPL).is_stop());
    assert!(!PhdbRequest::displayed(5, 0).is_stop());
}

#[test]
fn scaled_values_codes_and_units() {
    use layout::basic as L;
    let on = STATUS_EXISTS | STATUS_ACTIVE;
    let mut b = PhdbBuilder::new(PhdbClass::Basic);
    b.group(L::ECG, on, 0)
        .value(L::ECG, 0, 72)
        .value(L::ECG, 1, -25);
    b.group(L::P[0], on, 1) // ART
        .value(L::P[0], 0, 12_034)
        .value(L::P[0], 1, 6_550)
        .value(L::P[0], 2, 8_400)
        .value(L::P[0], 3, 71);
    b.group(L::P[1], on, 2).value(L::P[1], 2, 850); // CVP mean
    b.group(L::P[2], on, 7).value(L::P[2], 2, 1_200); // ICP: no MDC code here
    b.group(L::NIBP, on, 3)
        .value(L::NIBP, 0, 11_800)
        .value(L::NIBP, 1, 7_400)
        .value(L::NIBP, 2, 8_900)
        .value(L::NIBP, 3, 70);
    b.group(L::T[0], on, 4).value(L::T[0], 0, 3_712); // RECT
    b.group(L::T[2], on, 9).value(L::T[2], 0, 2_150); // ROOM
    b.group(L::SPO2, on, 0)
        .value(L::SPO2, 0, 9_650)
        .value(L::SPO2, 1, 73)
        .value(L::SPO2, 2, 4);
    b.group(L::CO2, on, 0)
        .value(L::CO2, 0, 500) // 5.00 %
        .value(L::CO2, 1, 20)
        .value(L::CO2, 2, 16)
        .value(L::CO2, 3, 7_600); // 760.0 mmHg
    b.group(L::O2, on, 0)
        .value(L::O2, 0, 3_600)
        .value(L::O2, 1, 4_000);
    b.group(L::FLOW_VOL, on, 0)
        .value(L::FLOW_VOL, 2, 550) // PEEP 5.5 cmH2O
        .value(L::FLOW_VOL, 5, 4_500); // TV exp 450 mL
    let (d, ev) = decode_record(&basic_record(&b, 1_767_254_405));
    assert!(matches!(ev.first(), Some(DeviceEvent::Connected)));
    assert!(matches!(ev.get(1), Some(DeviceEvent::Identified(_))));
    let r = reports(&ev);
    assert_eq!(r.len(), 1);
    let r = r[0];
    assert_eq!(r.device_time, Some(T0.plus_ms(5_000)));
    let want: &[(&str, Option<u32>, f64, &str)] = &[
        ("ECG HR", Some(147_842), 72.0, "/min"),
        ("ECG ST1", None, -0.25, "mm"),
        ("P1 ART SYS", Some(150_033), 120.34, "mm[Hg]"),
        ("P1 ART DIA", Some(150_034), 65.5, "mm[Hg]"),
        ("P1 ART MEAN", Some(150_035), 84.0, "mm[Hg]"),
        ("P1 ART PR", Some(149_522), 71.0, "/min"),
        ("P2 CVP MEAN", Some(150_087), 8.5, "mm[Hg]"),
        ("P3 ICP MEAN", None, 12.0, "mm[Hg]"),
        ("NIBP SYS", Some(150_021), 118.0, "mm[Hg]"),
        ("NIBP DIA", Some(150_022), 74.0, "mm[Hg]"),
        ("NIBP MEAN", Some(150_023), 89.0, "mm[Hg]"),
        ("NIBP PR", Some(149_546), 70.0, "/min"),
        ("T1 RECT", Some(188_420), 37.12, "Cel"),
        ("T3 ROOM", None, 21.5, "Cel"),
        ("SpO2", Some(150_456), 96.5, "%"),
        ("SpO2 PR", Some(149_530), 73.0, "/min"),
        ("CO2 ET", Some(151_708), 38.0, "mm[Hg]"),
        ("CO2 FI", None, 0.2, "%"),
        ("CO2 RR", Some(151_594), 16.0, "/min"),
        ("CO2 PAMB", None, 760.0, "mm[Hg]"),
        ("O2 FI", Some(152_196), 40.0, "%"),
        ("O2 ET", None, 36.0, "%"),
        ("FLOW-VOL PEEP", Some(151_976), 5.5, "cm[H2O]"),
        ("FLOW-VOL TV-EXP", Some(151_980), 450.0, "mL"),
    ];
    for (label, code, value, unit) in want {
        let x = find(r, label).unwrap_or_else(|| panic!("{label} missing"));
        assert_eq!(mdc_code(x), *code, "{label}");
        assert!((num(x) - value).abs() < 1e-9, "{label}: {}", num(x));
        assert_eq!(x.unit, *unit, "{label}");
        assert_eq!(x.status, ReadingStatus::Valid, "{label}");
        assert_eq!(x.time, r.device_time, "{label}");
    }
    assert_eq!(
        find(r, "P3 ICP MEAN").unwrap().code,
        DeviceCode::Local {
            code: "DATEX_ICP_MEAN".into()
        }
    );
    assert_eq!(
        find(r, "T3 ROOM").unwrap().code,
        DeviceCode::Local {
            code: "DATEX_TEMP_ROOM".into()
        }
    );
    assert_eq!(
        find(r, "P1 ART SYS").unwrap().channel.as_deref(),
        Some("p1")
    );
    assert_eq!(find(r, "T1 RECT").unwrap().channel.as_deref(), Some("t1"));
    // Zero-filled values of existing groups are readings, not gaps; nothing was unavailable.
    assert_eq!(d.unavailable().total(), 0);
}

#[test]
fn every_reserved_code_is_counted_not_emitted() {
    use layout::basic as L;
    let on = STATUS_EXISTS | STATUS_ACTIVE;
    let mut b = PhdbBuilder::new(PhdbClass::Basic);
    b.group(L::NIBP, on, 3)
        .value(L::NIBP, 0, DATA_INVALID)
        .value(L::NIBP, 1, DATA_NOT_UPDATED)
        .value(L::NIBP, 2, DATA_DISCONT)
        .value(L::NIBP, 3, DATA_UNDER_RANGE);
    b.group(L::P[0], on, 1)
        .value(L::P[0], 0, DATA_OVER_RANGE)
        .value(L::P[0], 1, DATA_NOT_CALIBRATED)
        .value(L::P[0], 2, -32_001) // reserved, no name
        .value(L::P[0], 3, i16::MIN);
    // -32000 is the smallest real value.
    b.group(L::T[0], on, 0).value(L::T[0], 0, -32_000);
    // Exists but not active: its values count as inactive whatever they hold.
    b.group(L::SPO2, STATUS_EXISTS, 0).value(L::SPO2, 0, 9_800);
    // Not present: nothing counted.
    b.group(L::CO2, 0, 0).value(L::CO2, 0, 500);
    let (d, ev) = decode_record(&basic_record(&b, 1_767_254_400));
    let r = reports(&ev);
    let r = r[0];
    assert_eq!(r.readings.len(), 1, "{:?}", r.readings);
    assert!((num(&r.readings[0]) + 320.0).abs() < 1e-9);
    let u = d.unavailable();
    assert_eq!(
        u,
        UnavailableCounts {
            invalid: 1,
            not_updated: 1,
            discontinuity: 1,
            under_range: 1,
            over_range: 1,
            not_calibrated: 1,
            reserved: 2,
            inactive: 3, // SpO2, PR, IR amplitude
        }
    );
    for raw in [
        DATA_INVALID,
        DATA_NOT_UPDATED,
        DATA_DISCONT,
        DATA_UNDER_RANGE,
        DATA_OVER_RANGE,
        DATA_NOT_CALIBRATED,
    ] {
        assert!(NoValue::classify(raw).is_some());
        assert!(raw < DATA_INVALID_LIMIT + 1);
    }
    assert_eq!(NoValue::classify(-32_000), None);
    assert_eq!(NoValue::classify(0), None);
}

#[test]
fn status_bits_mark_questionable_and_off() {
    use layout::basic as L;
    let on = STATUS_EXISTS | STATUS_ACTIVE;
    let mut b = PhdbBuilder::new(PhdbClass::Basic);
    b.group(L::ECG, on | (1 << 8), 0).value(L::ECG, 0, 90); // artifact
    b.group(L::P[0], on | (1 << 2), 1).value(L::P[0], 0, 10_000); // zeroing
    b.group(L::NIBP, on, 1 << 7).value(L::NIBP, 0, 12_000); // calibrating (label bit)
    b.group(L::O2, on | (1 << 3), 0).value(L::O2, 1, 5_000); // O2 measurement off
    b.group(L::CO2, on | (1 << 5), 0) // occlusion, no ambient pressure
        .value(L::CO2, 0, 480)
        .value(L::CO2, 3, DATA_INVALID);
    let (d, ev) = decode_record(&basic_record(&b, 1_767_254_400));
    let r = reports(&ev)[0];
    for label in ["ECG HR", "P1 ART SYS", "NIBP SYS", "CO2 ET"] {
        assert_eq!(
            find(r, label).unwrap().status,
            ReadingStatus::Questionable,
            "{label}"
        );
    }
    assert!(find(r, "O2 FI").is_none());
    assert_eq!(d.unavailable().inactive, 2);
    // No ambient pressure: etCO2 stays in % under a local code.
    let et = find(r, "CO2 ET").unwrap();
    assert_eq!(
        et.code,
        DeviceCode::Local {
            code: "DATEX_CO2_ET".into()
        }
    );
    assert_eq!(et.unit, "%");
    assert!((num(et) - 4.8).abs() < 1e-9);
}

#[test]
fn ext_classes_decode_their_groups() {
    let on = STATUS_EXISTS | STATUS_ACTIVE;
    let mut e1 = PhdbBuilder::new(PhdbClass::Ext1);
    e1.group(layout::ext1::P[0], on, 8) // P7 labelled ABP
        .value(layout::ext1::P[0], 0, 11_000);
    e1.group(layout::ext1::T[1], on, 15) // T6 CORE
        .value(layout::ext1::T[1], 0, 3_650);
    let mut e2 = PhdbBuilder::new(PhdbClass::Ext2);
    e2.group(layout::ext2::EEG_BIS, on, 0)
        .value(layout::ext2::EEG_BIS, 0, 45);
    let subs = [e1.subrecord(1_767_254_400), e2.subrecord(1_767_254_400)];
    let meta = RecordMeta {
        dri_level: DRI_LEVEL_2009,
        r_time: 1_767_254_400,
        main_type: DRI_MT_PHDB,
        ..RecordMeta::default()
    };
    let rec = build_record(&meta, &[(DRI_PH_DISPL, &subs[0]), (DRI_PH_DISPL, &subs[1])]).unwrap();
    let (_, ev) = decode_record(&rec);
    let r = reports(&ev)[0];
    assert_eq!(mdc_code(find(r, "P7 ABP SYS").unwrap()), Some(150_037));
    assert_eq!(mdc_code(find(r, "T6 CORE").unwrap()), Some(150_368));
    assert!((num(find(r, "BIS").unwrap()) - 45.0).abs() < 1e-9);
}

#[test]
fn hostile_offsets_and_classes_are_decode_errors() {
    let b = PhdbBuilder::new(PhdbClass::Basic);
    let mut rec = basic_record(&b, 1);
    // Subrecord offset beyond the data area.
    rec[16..18].copy_from_slice(&1000i16.to_le_bytes());
    let (d, ev) = decode_record(&rec);
    assert!(ev.is_empty());
    assert_eq!(d.stats().decode_errors, 1);
    // Negative offset.
    rec[16..18].copy_from_slice(&(-5i16).to_le_bytes());
    assert_eq!(decode_record(&rec).0.stats().decode_errors, 1);
    // Unknown class in cl_drilvl_subt.
    let mut rec = basic_record(&b, 1);
    let at = HEADER_LEN + PHDB_SUBRECORD_LEN - 2;
    rec[at..at + 2].copy_from_slice(&(0x0F00u16).to_le_bytes());
    assert_eq!(decode_record(&rec).0.stats().decode_errors, 1);
    // r_len below the header size.
    let mut rec = basic_record(&b, 1);
    rec[0..2].copy_from_slice(&(10i16).to_le_bytes());
    assert_eq!(decode_record(&rec).0.stats().decode_errors, 1);
}

// ---------------------------------------------------------------- sessions

#[test]
fn driver_and_simulator_session_yields_the_expected_readings() {
    let sim = DatexSimSettings::default();
    let mut link = Link::new(DatexSettings::default(), sim.clone());
    link.run_until(60_000);
    // Level 2015 unanswered, 2009 (the simulator's) accepted after one fallback step.
    assert_eq!(link.driver.accepted_level(), Some(DRI_LEVEL_2009));
    assert_eq!(link.driver.monitor_level(), Some(DRI_LEVEL_2009));
    assert_eq!(link.sim.ignored_requests(), 1);
    assert_eq!(link.connected_at(), Some(0));
    assert!(!link
        .events
        .iter()
        .any(|e| matches!(e, DeviceEvent::Disconnected { .. })));
    let reps = reports(&link.events);
    // Requested at 5 s, then every 5 s through 60 s.
    assert_eq!(reps.len(), 12);
    let mut last = None;
    for r in &reps {
        let t = r.device_time.unwrap();
        assert_eq!(t.millis() % 5_000, 0);
        if let Some(prev) = last {
            assert_eq!(t.since(prev), 5_000);
        }
        last = Some(t);
        let elapsed = t.since(T0); // the simulator started at T0
        let hr = find(r, "ECG HR").unwrap();
        assert_eq!((mdc_code(hr), hr.unit.as_str()), (Some(147_842), "/min"));
        assert_eq!(num(hr), sim.hr.at(elapsed, 0));
        let spo2 = find(r, "SpO2").unwrap();
        assert_eq!((mdc_code(spo2), spo2.unit.as_str()), (Some(150_456), "%"));
        assert_eq!(num(spo2), sim.spo2.at(elapsed, 0));
        assert_eq!(
            num(find(r, "SpO2 PR").unwrap()),
            sim.hr.at(elapsed, 0),
            "pulse rate"
        );
        let art = find(r, "P1 ART SYS").unwrap();
        assert_eq!(
            (mdc_code(art), art.unit.as_str()),
            (Some(150_033), "mm[Hg]")
        );
        assert_eq!(num(art), sim.art_sys.at(elapsed, 0));
        assert_eq!(
            num(find(r, "P1 ART DIA").unwrap()),
            sim.art_dia.at(elapsed, 0)
        );
        let nibp = find(r, "NIBP SYS").unwrap();
        assert_eq!(mdc_code(nibp), Some(150_021));
        assert_eq!(num(nibp), sim.nibp_sys.at(elapsed, 0));
        assert_eq!(mdc_code(find(r, "NIBP MEAN").unwrap()), Some(150_023));
        let temp = find(r, "T1 ESO").unwrap();
        assert_eq!((mdc_code(temp), temp.unit.as_str()), (Some(150_344), "Cel"));
        assert!((num(temp) - sim.temp.at(elapsed, 2)).abs() < 1e-9);
        let et = find(r, "CO2 ET").unwrap();
        assert_eq!((mdc_code(et), et.unit.as_str()), (Some(151_708), "mm[Hg]"));
        assert!(
            (num(et) - sim.etco2.at(elapsed, 1)).abs() <= 0.1,
            "{}",
            num(et)
        );
        assert_eq!(mdc_code(find(r, "CO2 RR").unwrap()), Some(151_594));
        assert_eq!(num(find(r, "O2 FI").unwrap()), 40.0);
        // The no-data channel never appears.
        assert!(r
            .readings
            .iter()
            .all(|x| x.channel.as_deref() != Some("t2")));
        assert!(r.readings.iter().all(|x| x.time == r.device_time));
    }
    // One "no data" temperature per record; the empty ext classes count nothing.
    assert_eq!(link.driver.unavailable().invalid, 12);
    assert_eq!(link.driver.unavailable().total(), 12);
    let s = link.driver.stats();
    assert_eq!(s.frames, 12);
    assert_eq!(s.checksum_failures + s.resyncs + s.decode_errors, 0);
}

#[test]
fn level_fallback_reaches_an_old_monitor() {
    let sim = DatexSimSettings {
        level: DRI_LEVEL_2001,
        ..DatexSimSettings::default()
    };
    let mut link = Link::new(DatexSettings::default(), sim);
    link.run_until(19_900);
    assert!(reports(&link.events).is_empty());
    assert_eq!(link.driver.requested_level(), Some(DRI_LEVEL_2003));
    link.run_until(20_000);
    assert_eq!(link.driver.accepted_level(), Some(DRI_LEVEL_2001));
    assert_eq!(link.sim.ignored_requests(), 4); // 2015, 2009, 2005, 2003
    assert_eq!(link.connected_at(), Some(0));
    let first = reports(&link.events)[0];
    assert_eq!(first.device_time, Some(T0.plus_ms(20_000)));
    // No more walking once answered, and the level is kept across a reconnect.
    link.run_until(60_000);
    assert_eq!(link.sim.ignored_requests(), 4);
    let mut out = Vec::new();
    link.driver.on_connect(link.now, &mut out);
    assert_eq!(link.driver.requested_level(), Some(DRI_LEVEL_2001));
    let rec = Record::parse(&decode_all(&mut FrameDecoder::new(2000), &out)[0])
        .unwrap()
        .header;
    assert_eq!(rec.dri_level, DRI_LEVEL_2001);
}

#[test]
fn a_configured_level_is_used_without_fallback() {
    let settings = DatexSettings {
        level: Some(DRI_LEVEL_2005),
        ..DatexSettings::default()
    };
    let mut link = Link::new(settings, DatexSimSettings::default());
    link.run_until(0);
    assert_eq!(link.driver.accepted_level(), Some(DRI_LEVEL_2005));
    assert_eq!(reports(&link.events)[0].device_time, Some(T0));
    // A configured level newer than the monitor's is retried, never walked down.
    let settings = DatexSettings {
        level: Some(DRI_LEVEL_2015),
        ..DatexSettings::default()
    };
    let mut link = Link::new(settings, DatexSimSettings::default());
    link.run_until(20_000);
    assert!(reports(&link.events).is_empty());
    assert_eq!(link.driver.requested_level(), Some(DRI_LEVEL_2015));
    assert_eq!(link.sim.ignored_requests(), 5);
}

#[test]
fn silence_reports_disconnected_once_and_asks_again() {
    let mut link = Link::new(DatexSettings::default(), DatexSimSettings::default());
    link.run_until(20_000);
    let before = reports(&link.events).len();
    assert!(before > 0);
    link.up = false; // the monitor's output is lost from here on
    link.run_until(20_000 + 29_900);
    assert!(!link
        .events
        .iter()
        .any(|e| matches!(e, DeviceEvent::Disconnected { .. })));
    link.run_until(20_000 + 30_000);
    link.run_until(80_000);
    let n = link
        .events
        .iter()
        .filter(|e| matches!(e, DeviceEvent::Disconnected { .. }))
        .count();
    assert_eq!(n, 1);
    // The monitor comes back: reports resume with a new Connected.
    link.up = true;
    link.run_until(120_000);
    assert!(reports(&link.events).len() > before);
    let connected = link
        .events
        .iter()
        .filter(|e| matches!(e, DeviceEvent::Connected))
        .count();
    assert_eq!(connected, 2);
}

#[test]
fn corrupted_records_are_counted_and_the_rest_decoded() {
    let sim = DatexSimSettings {
        corrupt_every: Some(3),
        ..DatexSimSettings::default()
    };
    let mut link = Link::new(DatexSettings::default(), sim);
    link.run_until(60_000);
    let s = link.driver.stats();
    assert_eq!(link.sim.records_sent(), 12);
    assert_eq!(s.checksum_failures, 4);
    assert_eq!(s.frames, 8);
    assert_eq!(reports(&link.events).len(), 8);
}

#[test]
fn trend_subscription_adds_labelled_trend_reports() {
    let settings = DatexSettings {
        trend: Some(DatexTrend::TenSeconds),
        ..DatexSettings::default()
    };
    let mut link = Link::new(settings, DatexSimSettings::default());
    link.run_until(60_000);
    let reps = reports(&link.events);
    let trend: Vec<_> = reps
        .iter()
        .filter(|r| find(r, "ECG HR (10 s trend)").is_some())
        .collect();
    // 5 s, 15 s, … 55 s.
    assert_eq!(trend.len(), 6);
    assert_eq!(
        mdc_code(find(trend[0], "ECG HR (10 s trend)").unwrap()),
        Some(147_842)
    );
}

#[test]
fn capture_decodes_with_a_fresh_driver() {
    let wire = capture(60, T0);
    assert_eq!(wire.first(), Some(&0x7E));
    assert_eq!(wire.last(), Some(&0x7E));
    let mut d = DatexDriver::new(DatexSettings::default());
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    d.on_bytes(&wire, T0, &mut ev, &mut out);
    assert!(out.is_empty());
    assert_eq!(reports(&ev).len(), 12);
    assert_eq!(d.accepted_level(), Some(DRI_LEVEL_2009));
    let s = d.stats();
    assert_eq!(s.frames, 12);
    assert_eq!(s.checksum_failures + s.resyncs + s.decode_errors, 0);
    assert_eq!(capture(60, T0), wire, "deterministic");
}

#[test]
fn random_bytes_never_panic_in_a_loop() {
    // A cheap xorshift so the test is deterministic without a dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let valid = capture(12, T0);
    for round in 0..200 {
        let mut d = DatexDriver::new(DatexSettings::default());
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        let mut bytes: Vec<u8> = (0..2_000).map(|_| next() as u8).collect();
        if round % 2 == 0 {
            // Mutate a valid capture instead: flags and lengths in odd places.
            bytes = valid.clone();
            for _ in 0..20 {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
        }
        for chunk in bytes.chunks(1 + (next() as usize) % 300) {
            d.on_bytes(chunk, T0, &mut ev, &mut out);
            d.on_tick(T0, &mut ev, &mut out);
        }
        let s = d.stats();
        assert!(s.frames + s.checksum_failures <= bytes.len() as u64);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000), cut in 0usize..3000) {
        let mut d = DatexDriver::new(DatexSettings::default());
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        let k = cut.min(bytes.len());
        d.on_bytes(&bytes[..k], T0, &mut ev, &mut out);
        d.on_bytes(&bytes[k..], T0.plus_ms(1), &mut ev, &mut out);
        let _ = Record::parse(&bytes).map(|r| parse_requests(&r));
        if let Ok(s) = PhdbSubrecord::parse(&bytes) {
            let mut v = Vec::new();
            s.values(&mut v);
        }
    }

    #[test]
    fn frames_round_trip(records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..200), 1..6), cut in 0usize..2000) {
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let wire = framed(&refs);
        let k = cut.min(wire.len());
        let mut d = FrameDecoder::new(256);
        let mut got = decode_all(&mut d, &wire[..k]);
        got.extend(decode_all(&mut d, &wire[k..]));
        prop_assert_eq!(got, records);
    }
}

#[test]
fn settings_defaults_match_the_documentation() {
    let s = DatexSettings::default();
    assert_eq!(s.interval_s, 5);
    assert_eq!(s.trend, None);
    assert_eq!(s.level, None);
    assert_eq!(s.silence_timeout, Duration::from_secs(30));
    assert_eq!(
        FALLBACK_LEVELS.first().copied().and_then(level_year),
        Some(2015)
    );
    assert_eq!(
        FALLBACK_LEVELS.last().copied().and_then(level_year),
        Some(2001)
    );
    let _ = SimTrace::flat(0.0);
}

#[test]
fn reports_normalize_into_scored_parameters() {
    use crate::model::{IngestRecord, Param};
    use crate::normalize::{DeviceOrigin, NormalizeSettings, NormalizeTables, Normalizer};
    let mut link = Link::new(DatexSettings::default(), DatexSimSettings::default());
    link.run_until(10_000);
    let report = reports(&link.events)[0].clone();
    let mut n = Normalizer::new(
        NormalizeTables::builtin().unwrap(),
        NormalizeSettings::default(),
    );
    let origin = DeviceOrigin {
        protocol: "serial",
        device_id: "S5-1".into(),
        bed: Some("BED01".into()),
        message: "1".into(),
        ..DeviceOrigin::default()
    };
    let out = n.device("datex", &origin, &report, report.device_time.unwrap());
    let obs: Vec<_> = out
        .records
        .iter()
        .filter_map(|x| match x {
            IngestRecord::Observation(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(obs.len(), report.readings.len());
    for (p, unit) in [
        (Param::HeartRate, "/min"),
        (Param::SpO2, "%"),
        (Param::SbpArt, "mm[Hg]"),
        (Param::MapArt, "mm[Hg]"),
        (Param::SbpNibp, "mm[Hg]"),
        (Param::Temp, "Cel"),
        (Param::EtCO2, "mm[Hg]"),
        (Param::FiO2, "%"),
        (Param::RespRate, "/min"),
    ] {
        let o = obs
            .iter()
            .find(|o| o.param == Some(p))
            .unwrap_or_else(|| panic!("no {p}"));
        assert_eq!(o.ucum, unit, "{p}");
        assert!(o.quality.is_empty(), "{p}: {:?}", o.quality);
    }
    // Parameters without a standard code are kept, with no parameter.
    assert!(obs
        .iter()
        .any(|o| o.param.is_none() && o.code.code == "DATEX_AMB_PRESS"));
}
