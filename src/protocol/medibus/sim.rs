//! The device side of MEDIBUS, without I/O: an Evita-like ventilator for tests, demos and users
//! without hardware.
//!
//! It ignores everything until the host's ICC, then answers every command vigil uses with the
//! layouts of the MEDIBUS tables and correct checksums (or a wrong one every
//! `corrupt_every` responses, to exercise the host's error path), sends its own ICC and NOP
//! keep-alives like real devices do, answers corrupted commands with "command corrupted", and
//! drops the link when it hears nothing valid for `link_timeout`.

use std::time::Duration;

use super::codes::{command, format_value, MEASURED_VALUE_WIDTH, SETTING_VALUE_WIDTH};
use super::frame::{encode_command, encode_response, Decoded, MedibusDecoder, MessageKind};
use super::records::{
    write_alarm, write_data_record, write_date_time, write_device_id, write_text_message,
    AlarmRecord, DeviceId,
};
use crate::model::Timestamp;
use crate::protocol::device::{DeviceDriver, DeviceEvent, DeviceSimulator, SimTrace};

/// An alarm the simulator reports while it is active.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimAlarm {
    /// 1 or 2: which alarm request (`0x27` or `0x2E`) reports it.
    pub codepage: u8,
    /// 1–31, 31 highest.
    pub priority: u8,
    pub code: u8,
    /// Up to 12 characters.
    pub phrase: String,
}

/// What the simulated ventilator reports and how it behaves on the link.
#[derive(Clone, Debug, PartialEq)]
pub struct MedibusSimSettings {
    /// Inspiratory O2, % (code page 1, `F0`).
    pub fio2: SimTrace,
    /// PEEP, mbar (`78`).
    pub peep: SimTrace,
    /// Tidal volume, mL (`88`).
    pub tidal_volume: SimTrace,
    /// Respiratory rate, /min (`D6`).
    pub resp_rate: SimTrace,
    /// End-tidal CO2, mmHg (`E6`).
    pub etco2: SimTrace,
    /// Peak airway pressure, mbar (`7D`).
    pub peak_pressure: SimTrace,
    /// Plateau pressure, mbar (`74`).
    pub plateau_pressure: SimTrace,
    /// Mean airway pressure, mbar (`73`).
    pub mean_pressure: SimTrace,
    /// Minute volume, L/min (`B9`).
    pub minute_volume: SimTrace,
    /// Compliance, mL/mbar (`06`).
    pub compliance: SimTrace,
    /// Settings: O2 %, PEEP mbar, frequency /min, tidal volume mL (sent in L, code `04`).
    pub set_fio2: f64,
    pub set_peep: f64,
    pub set_rate: f64,
    pub set_tidal_volume: f64,
    /// Ventilation mode, reported as text message `01`.
    pub mode: String,
    pub alarms: Vec<SimAlarm>,
    /// The device drops the link after this long without a valid message from the host.
    pub link_timeout: Duration,
    /// The device's own NOP keep-alive, sent when it has sent nothing for this long.
    pub nop_interval: Option<Duration>,
    /// Send every Nth response with a wrong checksum (0: never).
    pub corrupt_every: u32,
    pub identity: DeviceId,
    /// The device clock's offset from UTC, minutes.
    pub utc_offset_minutes: i32,
}

impl Default for MedibusSimSettings {
    fn default() -> Self {
        MedibusSimSettings {
            fio2: SimTrace::flat(40.0),
            peep: SimTrace::flat(8.0),
            tidal_volume: SimTrace::wave(450.0, 20.0, 90_000),
            resp_rate: SimTrace::wave(18.0, 2.0, 120_000),
            etco2: SimTrace::wave(38.0, 2.0, 150_000),
            peak_pressure: SimTrace::wave(22.0, 2.0, 90_000),
            plateau_pressure: SimTrace::wave(19.0, 1.0, 90_000),
            mean_pressure: SimTrace::flat(12.0),
            minute_volume: SimTrace::wave(8.1, 0.6, 120_000),
            compliance: SimTrace::wave(45.0, 3.0, 300_000),
            set_fio2: 40.0,
            set_peep: 8.0,
            set_rate: 18.0,
            set_tidal_volume: 450.0,
            mode: "IPPV".into(),
            alarms: Vec::new(),
            link_timeout: Duration::from_secs(5),
            nop_interval: Some(Duration::from_secs(3)),
            corrupt_every: 0,
            identity: DeviceId {
                id: "0161".into(),
                name: Some("Evita 4".into()),
                revision: Some("04.02:06.00".into()),
            },
            utc_offset_minutes: 0,
        }
    }
}

/// Device-side MEDIBUS simulator.
#[derive(Debug)]
pub struct MedibusSimulator {
    settings: MedibusSimSettings,
    decoder: MedibusDecoder,
    linked: bool,
    start: Option<Timestamp>,
    last_rx: Timestamp,
    last_tx: Timestamp,
    responses: u64,
    scratch: Vec<Decoded>,
}

impl MedibusSimulator {
    pub fn new(settings: MedibusSimSettings) -> Self {
        MedibusSimulator {
            settings,
            decoder: MedibusDecoder::default(),
            linked: false,
            start: None,
            last_rx: Timestamp::default(),
            last_tx: Timestamp::default(),
            responses: 0,
            scratch: Vec::new(),
        }
    }

    /// Whether the host's ICC was accepted and the link has not timed out since.
    pub fn is_linked(&self) -> bool {
        self.linked
    }

    fn elapsed(&self, now: Timestamp) -> i64 {
        self.start.map_or(0, |s| now.since(s))
    }

    fn respond(&mut self, code: u8, data: &[u8], now: Timestamp, out: &mut Vec<u8>) {
        encode_response(code, data, out);
        self.responses += 1;
        let every = u64::from(self.settings.corrupt_every);
        if every > 0 && self.responses % every == 0 {
            // The first checksum digit, just before the second one and CR.
            if let Some(c) = out.len().checked_sub(3).and_then(|i| out.get_mut(i)) {
                *c = if *c == b'0' { b'1' } else { b'0' };
            }
        }
        self.last_tx = now;
    }

    fn command(&mut self, code: u8, now: Timestamp, out: &mut Vec<u8>) {
        encode_command(code, &[], out);
        self.last_tx = now;
    }

    fn measured_cp1(&self, now: Timestamp) -> Vec<u8> {
        let s = &self.settings;
        let t = self.elapsed(now);
        let w = MEASURED_VALUE_WIDTH;
        let fields: [(u8, Option<f64>, usize); 11] = [
            (0xF0, Some(s.fio2.at(t, 0)), 0),
            (0x78, Some(s.peep.at(t, 1)), 1),
            (0x7D, Some(s.peak_pressure.at(t, 0)), 0),
            (0x74, Some(s.plateau_pressure.at(t, 0)), 0),
            (0x73, Some(s.mean_pressure.at(t, 0)), 0),
            (0x88, Some(s.tidal_volume.at(t, 0)), 0),
            (0xB9, Some(s.minute_volume.at(t, 1)), 1),
            (0xD6, Some(s.resp_rate.at(t, 0)), 0),
            (0xE6, Some(s.etco2.at(t, 0)), 0),
            (0x06, Some(s.compliance.at(t, 0)), 0),
            // No pulse oximeter attached: the code comes with a blank value.
            (0xE1, None, 0),
        ];
        let mut data = Vec::with_capacity(fields.len() * (2 + w));
        for (code, value, decimals) in fields {
            write_data_record(code, &format_value(value, w, decimals), &mut data);
        }
        data
    }

    fn measured_cp2(&self, now: Timestamp) -> Vec<u8> {
        let vt = self.settings.tidal_volume.at(self.elapsed(now), 0);
        let mut data = Vec::new();
        for (code, value) in [(0x21, vt - 5.0), (0x22, vt + 5.0)] {
            let v = format_value(Some(value), MEASURED_VALUE_WIDTH, 0);
            write_data_record(code, &v, &mut data);
        }
        data
    }

    fn settings_data(&self) -> Vec<u8> {
        let s = &self.settings;
        let w = SETTING_VALUE_WIDTH;
        let mut data = Vec::new();
        for (code, value, decimals) in [
            (0x01, s.set_fio2, 0),
            (0x0B, s.set_peep, 1),
            (0x0A, s.set_rate, 0),
            (0x04, s.set_tidal_volume / 1000.0, 3),
        ] {
            write_data_record(code, &format_value(Some(value), w, decimals), &mut data);
        }
        data
    }

    fn alarms_data(&self, codepage: u8) -> Vec<u8> {
        let mut data = Vec::new();
        for a in self
            .settings
            .alarms
            .iter()
            .filter(|a| a.codepage == codepage)
        {
            let record = AlarmRecord {
                priority: a.priority,
                code: a.code,
                phrase: a.phrase.clone(),
            };
            write_alarm(&record, &mut data);
        }
        data
    }

    fn handle_command(&mut self, code: u8, now: Timestamp, out: &mut Vec<u8>) {
        if !self.linked && code != command::ICC {
            // Nothing is answered before the session is initialised.
            return;
        }
        let data = match code {
            command::ICC => {
                let was_linked = self.linked;
                self.linked = true;
                self.respond(code, &[], now, out);
                if !was_linked {
                    // Devices initialise their own direction of the link too.
                    self.command(command::ICC, now, out);
                }
                return;
            }
            command::STOP => {
                self.respond(code, &[], now, out);
                self.linked = false;
                return;
            }
            command::DEVICE_ID => {
                let mut d = Vec::new();
                write_device_id(&self.settings.identity, &mut d);
                d
            }
            command::MEASURED_CP1 => self.measured_cp1(now),
            command::MEASURED_CP2 => self.measured_cp2(now),
            command::SETTINGS => self.settings_data(),
            command::TEXT_MESSAGES => {
                let mut d = Vec::new();
                write_text_message(0x01, &self.settings.mode, &mut d);
                write_text_message(0x20, "Adults", &mut d);
                d
            }
            command::ALARMS_CP1 => self.alarms_data(1),
            command::ALARMS_CP2 => self.alarms_data(2),
            command::DATE_TIME => {
                let offset = i64::from(self.settings.utc_offset_minutes) * 60_000;
                let mut d = Vec::new();
                write_date_time(now.plus_ms(offset), &mut d);
                d
            }
            // NOP, time changed, limits and anything unknown: the echo alone.
            _ => Vec::new(),
        };
        self.respond(code, &data, now, out);
    }
}

impl DeviceSimulator for MedibusSimulator {
    fn on_bytes(&mut self, bytes: &[u8], now: Timestamp, out: &mut Vec<u8>) {
        self.start.get_or_insert(now);
        let mut decoded = std::mem::take(&mut self.scratch);
        self.decoder.decode(bytes, &mut decoded);
        for d in decoded.drain(..) {
            match d {
                Decoded::CorruptCommand => {
                    if self.linked {
                        self.respond(command::CORRUPT, &[], now, out);
                    }
                }
                // The host's answer to our ICC or NOP, damaged: nothing to redo.
                Decoded::CorruptResponse => {}
                Decoded::Message(m) => {
                    self.last_rx = now;
                    if m.kind == MessageKind::Command {
                        self.handle_command(m.code, now, out);
                    }
                }
            }
        }
        self.scratch = decoded;
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        self.start.get_or_insert(now);
        if !self.linked {
            return;
        }
        if now.since(self.last_rx) > ms(self.settings.link_timeout) {
            self.linked = false;
            return;
        }
        if let Some(nop) = self.settings.nop_interval {
            if now.since(self.last_tx) >= ms(nop) {
                self.command(command::NOP, now, out);
            }
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Which way bytes travel in [`run_loopback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    ToHost,
    ToDevice,
}

/// Runs `driver` against `sim` in memory for `duration_ms` from `start`, ticking both every
/// `step_ms` and delivering bytes instantly. `tap` sees every chunk, with its time and
/// direction.
pub(crate) fn run_loopback(
    driver: &mut dyn DeviceDriver,
    sim: &mut dyn DeviceSimulator,
    start: Timestamp,
    duration_ms: i64,
    step_ms: i64,
    events: &mut Vec<DeviceEvent>,
    tap: &mut dyn FnMut(Timestamp, Direction, &[u8]),
) {
    let mut to_device = Vec::new();
    let mut to_host = Vec::new();
    driver.on_connect(start, &mut to_device);
    let end = start.plus_ms(duration_ms);
    let mut now = start;
    while now < end {
        sim.on_tick(now, &mut to_host);
        if !to_host.is_empty() {
            tap(now, Direction::ToHost, &to_host);
            driver.on_bytes(&to_host, now, events, &mut to_device);
            to_host.clear();
        }
        driver.on_tick(now, events, &mut to_device);
        // Exchange until both sides are quiet (bounded: a reply to a reply is unusual).
        for _ in 0..16 {
            if to_device.is_empty() {
                break;
            }
            tap(now, Direction::ToDevice, &to_device);
            sim.on_bytes(&to_device, now, &mut to_host);
            to_device.clear();
            if to_host.is_empty() {
                break;
            }
            tap(now, Direction::ToHost, &to_host);
            driver.on_bytes(&to_host, now, events, &mut to_device);
            to_host.clear();
        }
        now = now.plus_ms(step_ms.max(1));
    }
}
