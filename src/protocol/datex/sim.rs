//! Device side of the S/5 Computer Interface: a monitor at a chosen interface level that
//! answers transmission requests, sans I/O.
//!
//! It sends nothing until asked. A request at a level newer than its own is ignored (as a
//! real monitor does), so a client's level fallback is exercised. Displayed values come right
//! after the request and then every requested interval; 10 s / 60 s trends every 10 / 60 s.
//! Each record carries one subrecord per requested class: the basic class holds ECG HR,
//! invasive pressure 1 labelled ART, NIBP, temperatures 1 (ESO) and 2 (present, active, but
//! sending the "no data" code), SpO2, CO2 with ambient pressure and O2; the ext classes are
//! sent empty (no module present).

use std::time::Duration;

use super::codes::{self, DATA_INVALID};
use super::frame::{checksum, encode_frame_with_checksum, FrameDecoder};
use super::record::{
    build_record, layout, parse_requests, PhdbBuilder, PhdbClass, PhdbRequest, Record, RecordMeta,
    DRI_MT_PHDB, DRI_PH_10S_TREND, DRI_PH_60S_TREND, DRI_PH_DISPL, MAX_RECORD_LEN, STATUS_ACTIVE,
    STATUS_EXISTS,
};
use crate::model::Timestamp;
use crate::protocol::device::{DeviceSimulator, SimTrace};

/// Simulated monitor settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DatexSimSettings {
    /// The monitor's interface level (`codes::DRI_LEVEL_*`).
    pub level: u8,
    pub plug_id: u16,
    /// Heart rate, /min.
    pub hr: SimTrace,
    /// SpO2, %.
    pub spo2: SimTrace,
    /// NIBP systolic / diastolic, mmHg (mean = (sys + 2 dia) / 3).
    pub nibp_sys: SimTrace,
    pub nibp_dia: SimTrace,
    /// Invasive channel 1, labelled ART, mmHg.
    pub art_sys: SimTrace,
    pub art_dia: SimTrace,
    /// Temperature 1 (ESO), °C.
    pub temp: SimTrace,
    /// End-tidal CO2, mmHg (sent as % of the ambient pressure).
    pub etco2: SimTrace,
    /// Respiration rate from CO2 (and ECG impedance), /min.
    pub resp_rate: SimTrace,
    /// Inspired O2, %.
    pub fio2: SimTrace,
    /// Ambient pressure, mmHg; 0 sends none (the host then keeps etCO2 in %).
    pub amb_press_mmhg: f64,
    /// Send every Nth record with a wrong checksum.
    pub corrupt_every: Option<u32>,
}

impl Default for DatexSimSettings {
    fn default() -> Self {
        DatexSimSettings {
            level: codes::DRI_LEVEL_2009,
            plug_id: 1,
            hr: SimTrace::wave(78.0, 6.0, 60_000),
            spo2: SimTrace::wave(97.0, 1.0, 90_000),
            nibp_sys: SimTrace::wave(118.0, 4.0, 300_000),
            nibp_dia: SimTrace::wave(74.0, 2.0, 300_000),
            art_sys: SimTrace::wave(122.0, 8.0, 45_000),
            art_dia: SimTrace::wave(68.0, 4.0, 45_000),
            temp: SimTrace::wave(37.1, 0.2, 600_000),
            etco2: SimTrace::wave(36.0, 2.0, 120_000),
            resp_rate: SimTrace::wave(14.0, 2.0, 60_000),
            fio2: SimTrace::flat(40.0),
            amb_press_mmhg: 760.0,
            corrupt_every: None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Subscription {
    interval_ms: i64,
    next_due: Timestamp,
    class_bf: u32,
    /// A negative interval asks for one record only.
    once: bool,
}

/// A simulated S/5 monitor. See the module docs.
#[derive(Debug)]
pub struct DatexSimulator {
    settings: DatexSimSettings,
    framer: FrameDecoder,
    started: Option<Timestamp>,
    /// Displayed values, 10 s trend, 60 s trend.
    subs: [Option<Subscription>; 3],
    r_nbr: u8,
    records_sent: u64,
    ignored_requests: u64,
}

fn slot(record_type: u8) -> Option<usize> {
    match record_type {
        DRI_PH_DISPL => Some(0),
        DRI_PH_10S_TREND => Some(1),
        DRI_PH_60S_TREND => Some(2),
        _ => None,
    }
}

fn raw(v: f64, scale: f64) -> i16 {
    let r = (v * scale).round();
    if r.is_finite() {
        r.clamp(-32000.0, 32767.0) as i16
    } else {
        DATA_INVALID
    }
}

impl DatexSimulator {
    /// A silent monitor, waiting for requests.
    pub fn new(settings: DatexSimSettings) -> Self {
        DatexSimulator {
            settings,
            framer: FrameDecoder::new(MAX_RECORD_LEN + 1),
            started: None,
            subs: [None; 3],
            r_nbr: 0,
            records_sent: 0,
            ignored_requests: 0,
        }
    }

    /// Records sent so far (including corrupted ones).
    pub fn records_sent(&self) -> u64 {
        self.records_sent
    }

    /// Requests dropped because their level is newer than the monitor's.
    pub fn ignored_requests(&self) -> u64 {
        self.ignored_requests
    }

    fn start(&mut self, now: Timestamp) -> Timestamp {
        *self.started.get_or_insert(now)
    }

    fn on_request(&mut self, req: &PhdbRequest, now: Timestamp) {
        let Some(i) = slot(req.record_type) else {
            return;
        };
        let Some(s) = self.subs.get_mut(i) else {
            return;
        };
        if req.is_stop() {
            *s = None;
            return;
        }
        let interval_ms = match req.record_type {
            DRI_PH_10S_TREND => 10_000,
            DRI_PH_60S_TREND => 60_000,
            _ => i64::from(req.interval_s.unsigned_abs()).max(1) * 1000,
        };
        *s = Some(Subscription {
            interval_ms,
            next_due: now,
            class_bf: req.class_bf,
            once: req.interval_s < 0,
        });
    }

    fn basic(&self, elapsed: i64) -> PhdbBuilder {
        use layout::basic as L;
        let s = &self.settings;
        let on = STATUS_EXISTS | STATUS_ACTIVE;
        let hr = s.hr.at(elapsed, 0);
        let rr = s.resp_rate.at(elapsed, 0);
        let mut b = PhdbBuilder::new(PhdbClass::Basic);
        b.group(L::ECG, on, 0)
            .value(L::ECG, 0, raw(hr, 1.0))
            .value(L::ECG, 4, raw(rr, 1.0));
        let (sys, dia) = (s.art_sys.at(elapsed, 0), s.art_dia.at(elapsed, 0));
        let p1 = L::P[0];
        b.group(p1, on, 1) // label 1: ART
            .value(p1, 0, raw(sys, 100.0))
            .value(p1, 1, raw(dia, 100.0))
            .value(p1, 2, raw(((sys + 2.0 * dia) / 3.0).round(), 100.0))
            .value(p1, 3, raw(hr, 1.0));
        let (ns, nd) = (s.nibp_sys.at(elapsed, 0), s.nibp_dia.at(elapsed, 0));
        b.group(L::NIBP, on, 3) // adult cuff
            .value(L::NIBP, 0, raw(ns, 100.0))
            .value(L::NIBP, 1, raw(nd, 100.0))
            .value(L::NIBP, 2, raw(((ns + 2.0 * nd) / 3.0).round(), 100.0))
            .value(L::NIBP, 3, raw(hr, 1.0));
        let (t1, t2) = (L::T[0], L::T[1]);
        b.group(t1, on, 1) // ESO
            .value(t1, 0, raw(s.temp.at(elapsed, 2), 100.0));
        // The no-data channel: the probe is there and active, the value is not.
        b.group(t2, on, 0).value(t2, 0, DATA_INVALID);
        b.group(L::SPO2, on, 0)
            .value(L::SPO2, 0, raw(s.spo2.at(elapsed, 0), 100.0))
            .value(L::SPO2, 1, raw(hr, 1.0))
            .value(L::SPO2, 2, 3);
        let amb = s.amb_press_mmhg;
        let et_pct = if amb > 0.0 {
            s.etco2.at(elapsed, 1) / amb * 100.0
        } else {
            s.etco2.at(elapsed, 1) / 760.0 * 100.0
        };
        b.group(L::CO2, on, 1) // RR source: CO2
            .value(L::CO2, 0, raw(et_pct, 100.0))
            .value(L::CO2, 1, 0)
            .value(L::CO2, 2, raw(rr, 1.0))
            .value(
                L::CO2,
                3,
                if amb > 0.0 {
                    raw(amb, 10.0)
                } else {
                    DATA_INVALID
                },
            );
        let fio2 = s.fio2.at(elapsed, 0);
        b.group(L::O2, on, 0)
            .value(L::O2, 0, raw(fio2 - 4.0, 100.0))
            .value(L::O2, 1, raw(fio2, 100.0));
        b
    }

    fn send(&mut self, record_type: u8, class_bf: u32, now: Timestamp, out: &mut Vec<u8>) {
        let start = self.start(now);
        let elapsed = now.since(start);
        let r_time = u32::try_from(now.millis().div_euclid(1000)).unwrap_or(0);
        let probe = PhdbRequest {
            record_type,
            interval_s: 1,
            class_bf,
        };
        let mut bodies = Vec::with_capacity(4);
        for class in probe.classes() {
            let b = match class {
                PhdbClass::Basic => self.basic(elapsed),
                other => PhdbBuilder::new(other),
            };
            bodies.push(b.subrecord(r_time));
        }
        if bodies.is_empty() {
            return;
        }
        let subs: Vec<(u8, &[u8])> = bodies.iter().map(|b| (record_type, b.as_slice())).collect();
        let meta = RecordMeta {
            r_nbr: self.r_nbr,
            dri_level: self.settings.level,
            plug_id: self.settings.plug_id,
            r_time,
            main_type: DRI_MT_PHDB,
        };
        let Ok(rec) = build_record(&meta, &subs) else {
            return;
        };
        self.r_nbr = self.r_nbr.wrapping_add(1);
        self.records_sent += 1;
        let mut sum = checksum(&rec);
        if let Some(n) = self.settings.corrupt_every.filter(|&n| n > 0) {
            if self.records_sent % u64::from(n) == 0 {
                sum = sum.wrapping_add(1);
            }
        }
        encode_frame_with_checksum(&rec, sum, out);
    }

    fn send_due(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        let types = [DRI_PH_DISPL, DRI_PH_10S_TREND, DRI_PH_60S_TREND];
        for (i, record_type) in types.into_iter().enumerate() {
            let Some(Some(sub)) = self.subs.get(i).copied() else {
                continue;
            };
            if now < sub.next_due {
                continue;
            }
            self.send(record_type, sub.class_bf, now, out);
            let next = if sub.once {
                None
            } else {
                // Keep the schedule; skip what a long gap between ticks missed.
                let mut due = sub.next_due;
                while due <= now {
                    due = due.plus_ms(sub.interval_ms);
                }
                Some(Subscription {
                    next_due: due,
                    ..sub
                })
            };
            if let Some(s) = self.subs.get_mut(i) {
                *s = next;
            }
        }
    }
}

impl DeviceSimulator for DatexSimulator {
    fn on_bytes(&mut self, bytes: &[u8], now: Timestamp, out: &mut Vec<u8>) {
        self.start(now);
        let level = self.settings.level;
        let mut requests = Vec::new();
        let mut ignored = 0u64;
        self.framer.decode(bytes, |rec| {
            let Ok(r) = Record::parse(rec) else { return };
            if r.header.main_type != DRI_MT_PHDB {
                return;
            }
            if r.header.dri_level > level {
                ignored += 1;
                return;
            }
            requests.extend(parse_requests(&r));
        });
        self.ignored_requests += ignored;
        for r in &requests {
            self.on_request(r, now);
        }
        self.send_due(now, out);
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        self.start(now);
        self.send_due(now, out);
    }

    fn tick_interval(&self) -> Duration {
        Duration::from_millis(100)
    }
}
