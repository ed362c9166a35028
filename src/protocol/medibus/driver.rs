//! The host side of a MEDIBUS session, without I/O.
//!
//! On connect the driver sends ICC; the device's ICC echo brings the session up
//! ([`DeviceEvent::Connected`]), the device identification follows
//! ([`DeviceEvent::Identified`]), then every `poll_interval` one cycle of requests: date and
//! time, measured data code pages 1 and 2, settings and text messages, alarms of code pages 1
//! and 2. MEDIBUS is request/response, so one request is outstanding at a time; the next goes
//! out when the answer arrives (or after `reply_timeout`). When nothing has been sent for
//! `nop_interval` a NOP keeps the device's link timer from expiring. If no valid message
//! arrives for `silence_timeout` the driver reports [`DeviceEvent::Disconnected`] and starts
//! over with ICC.
//!
//! The protocol is symmetric: the device sends commands too (its own ICC, NOP, identification
//! requests). The driver answers every one of them, with the "command corrupted" response when
//! the checksum fails.
//!
//! Responses are decoded whether or not this driver asked for them, so a recording of the
//! device's bytes alone decodes offline.

use std::collections::VecDeque;
use std::time::Duration;

use super::codes::{
    self, alarm_priority, command, lookup, parse_value, Table, MEASURED_VALUE_WIDTH,
    SETTING_VALUE_WIDTH,
};
use super::frame::{encode_command, encode_response, Decoded, MedibusDecoder, MessageKind};
use super::records::{
    parse_alarms, parse_data_records, parse_date_time, parse_device_id, parse_text_messages,
    write_device_id, DeviceId, MedibusError,
};
use crate::model::Timestamp;
use crate::protocol::device::{
    DeviceAlarm, DeviceCode, DeviceDriver, DeviceEvent, DeviceIdentity, DeviceReading,
    DeviceReport, FrameStats, ReadingStatus, ReadingValue,
};

/// Channel of setting readings.
pub const SETTINGS_CHANNEL: &str = "settings";
/// Channel of text-message readings (ventilation mode, patient category…).
pub const TEXT_CHANNEL: &str = "text";

/// How the host drives a MEDIBUS session.
#[derive(Clone, Debug, PartialEq)]
pub struct MedibusSettings {
    /// Time between the starts of two polling cycles.
    pub poll_interval: Duration,
    /// Send a NOP when nothing has been sent for this long. Keep it well below the device's
    /// link timeout (a few seconds on most devices).
    pub nop_interval: Duration,
    /// Ask for the current device settings and text messages every cycle.
    pub request_settings: bool,
    /// Ask for the current alarms (code pages 1 and 2) every cycle.
    pub request_alarms: bool,
    /// Report the link lost and restart with ICC after this long without a valid message.
    pub silence_timeout: Duration,
    /// Ask for the device's date and time every cycle and stamp reports with the device's
    /// clock.
    pub read_device_time: bool,
    /// The device's clock offset from UTC, in minutes (MEDIBUS sends local wall-clock time
    /// with no zone).
    pub device_utc_offset_minutes: i32,
    /// Give up on an unanswered request after this long and move on.
    pub reply_timeout: Duration,
    /// Cap on one message, in bytes.
    pub max_message_len: usize,
}

impl Default for MedibusSettings {
    fn default() -> Self {
        MedibusSettings {
            poll_interval: Duration::from_secs(2),
            nop_interval: Duration::from_secs(1),
            request_settings: true,
            request_alarms: true,
            silence_timeout: Duration::from_secs(10),
            read_device_time: true,
            device_utc_offset_minutes: 0,
            reply_timeout: Duration::from_secs(3),
            max_message_len: super::frame::DEFAULT_MAX_MESSAGE,
        }
    }
}

/// Identification vigil gives when a device asks who it is talking to.
const HOST_ID: &str = "0000";
const HOST_NAME: &str = "vigil";
const HOST_REVISION: &str = "01.00:06.00";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Never connected: decoding a recording, nothing is sent.
    Idle,
    /// ICC sent, waiting for its echo.
    Initialising,
    /// ICC answered: polling.
    Up,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    code: u8,
    sent: Timestamp,
    retried: bool,
}

/// Host-side MEDIBUS driver (Dräger ventilators: Evita, Savina, V-series…).
#[derive(Debug)]
pub struct MedibusDriver {
    settings: MedibusSettings,
    decoder: MedibusDecoder,
    link: Link,
    outstanding: Option<Pending>,
    /// Requests of the current cycle still to send.
    queue: VecDeque<u8>,
    next_cycle: Timestamp,
    last_tx: Timestamp,
    /// Last valid message from the device.
    last_rx: Timestamp,
    /// Device clock minus gateway clock, from the last date-and-time response.
    clock_offset_ms: Option<i64>,
    alarms_cp1: Vec<DeviceAlarm>,
    alarms_cp2: Vec<DeviceAlarm>,
    unavailable: u64,
    corrupt_replies: u64,
    scratch: Vec<Decoded>,
}

impl MedibusDriver {
    pub fn new(settings: MedibusSettings) -> Self {
        MedibusDriver {
            decoder: MedibusDecoder::new(settings.max_message_len),
            settings,
            link: Link::Idle,
            outstanding: None,
            queue: VecDeque::new(),
            next_cycle: Timestamp::default(),
            last_tx: Timestamp::default(),
            last_rx: Timestamp::default(),
            clock_offset_ms: None,
            alarms_cp1: Vec::new(),
            alarms_cp2: Vec::new(),
            unavailable: 0,
            corrupt_replies: 0,
            scratch: Vec::new(),
        }
    }

    /// Values the device sent as "no value" (blank, `---`, non-numeric), not emitted.
    pub fn unavailable_values(&self) -> u64 {
        self.unavailable
    }

    /// "Command corrupted" responses received (the device saw a bad checksum from us).
    pub fn corrupt_replies(&self) -> u64 {
        self.corrupt_replies
    }

    /// Whether the session is up (ICC answered).
    pub fn is_connected(&self) -> bool {
        self.link == Link::Up
    }

    fn send_request(&mut self, code: u8, now: Timestamp, retried: bool, out: &mut Vec<u8>) {
        encode_command(code, &[], out);
        self.outstanding = Some(Pending {
            code,
            sent: now,
            retried,
        });
        self.last_tx = now;
    }

    fn respond(&mut self, code: u8, data: &[u8], now: Timestamp, out: &mut Vec<u8>) {
        encode_response(code, data, out);
        self.last_tx = now;
    }

    /// Starts (or restarts) the session: ICC, nothing else until it is answered.
    fn start(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        self.link = Link::Initialising;
        self.queue.clear();
        self.clock_offset_ms = None;
        self.alarms_cp1.clear();
        self.alarms_cp2.clear();
        self.last_rx = now;
        self.send_request(command::ICC, now, false, out);
    }

    fn cycle(&self) -> Vec<u8> {
        let s = &self.settings;
        let mut c = Vec::with_capacity(7);
        if s.read_device_time {
            c.push(command::DATE_TIME);
        }
        c.extend([command::MEASURED_CP1, command::MEASURED_CP2]);
        if s.request_settings {
            c.extend([command::SETTINGS, command::TEXT_MESSAGES]);
        }
        if s.request_alarms {
            c.extend([command::ALARMS_CP1, command::ALARMS_CP2]);
        }
        c
    }

    /// Sends the next request if none is outstanding: the cycle's next, a new cycle when due,
    /// or a NOP when the line has been quiet.
    fn pump(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        if self.link != Link::Up || self.outstanding.is_some() {
            return;
        }
        if self.queue.is_empty() && now >= self.next_cycle {
            self.queue.extend(self.cycle());
            self.next_cycle = now.plus_ms(ms(self.settings.poll_interval));
        }
        if let Some(code) = self.queue.pop_front() {
            self.send_request(code, now, false, out);
        } else if now.since(self.last_tx) >= ms(self.settings.nop_interval) {
            self.send_request(command::NOP, now, false, out);
        }
    }

    /// Sends the outstanding request again, once; after that the cycle moves on.
    fn retry_outstanding(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        if let Some(p) = self.outstanding.take() {
            if !p.retried {
                self.send_request(p.code, now, true, out);
            }
        }
    }

    fn handle_command(
        &mut self,
        code: u8,
        now: Timestamp,
        events: &mut Vec<DeviceEvent>,
        out: &mut Vec<u8>,
    ) {
        match code {
            command::DEVICE_ID => {
                let mut data = Vec::new();
                write_device_id(
                    &DeviceId {
                        id: HOST_ID.into(),
                        name: Some(HOST_NAME.into()),
                        revision: Some(HOST_REVISION.into()),
                    },
                    &mut data,
                );
                self.respond(code, &data, now, out);
            }
            command::STOP => {
                self.respond(code, &[], now, out);
                if self.link == Link::Up {
                    events.push(DeviceEvent::Disconnected {
                        reason: "device stopped communication".into(),
                    });
                }
                // Try again once the device has had time to settle.
                if self.link != Link::Idle {
                    self.link = Link::Initialising;
                    self.queue.clear();
                    self.outstanding = Some(Pending {
                        code: command::ICC,
                        sent: now,
                        retried: false,
                    });
                }
            }
            command::TIME_CHANGED => {
                self.respond(code, &[], now, out);
                self.clock_offset_ms = None;
                if self.settings.read_device_time && !self.queue.contains(&command::DATE_TIME) {
                    self.queue.push_front(command::DATE_TIME);
                }
            }
            // ICC, NOP, data requests we hold no data for, unknown commands: the echo alone.
            _ => self.respond(code, &[], now, out),
        }
    }

    fn handle_response(
        &mut self,
        code: u8,
        data: &[u8],
        now: Timestamp,
        events: &mut Vec<DeviceEvent>,
        out: &mut Vec<u8>,
    ) {
        if code == command::CORRUPT {
            // The device could not read our last command: send it once more.
            self.corrupt_replies += 1;
            self.retry_outstanding(now, out);
            return;
        }
        if self.outstanding.is_some_and(|p| p.code == code) {
            self.outstanding = None;
        }
        let result = match code {
            command::ICC => {
                if self.link != Link::Up {
                    self.link = Link::Up;
                    events.push(DeviceEvent::Connected);
                    self.queue.clear();
                    self.queue.push_back(command::DEVICE_ID);
                    self.next_cycle = now;
                }
                Ok(())
            }
            command::DEVICE_ID => parse_device_id(data).map(|id| {
                events.push(DeviceEvent::Identified(identity(id)));
            }),
            command::MEASURED_CP1 => self.data_report(Table::MeasuredCp1, data, now, events),
            command::MEASURED_CP2 => self.data_report(Table::MeasuredCp2, data, now, events),
            command::SETTINGS => self.data_report(Table::Settings, data, now, events),
            command::TEXT_MESSAGES => self.text_report(data, now, events),
            command::ALARMS_CP1 | command::ALARMS_CP2 => self.alarms(code, data, now, events),
            command::DATE_TIME => parse_date_time(data).map(|device| {
                let offset = i64::from(self.settings.device_utc_offset_minutes) * 60_000;
                self.clock_offset_ms = Some(device.minus_ms(offset).since(now));
            }),
            // NOP, STOP and anything else: nothing to read.
            _ => Ok(()),
        };
        if result.is_err() {
            self.decoder.note_decode_error();
        }
    }

    fn device_time(&self, now: Timestamp) -> Option<Timestamp> {
        self.clock_offset_ms.map(|o| now.plus_ms(o))
    }

    fn report(&self, readings: Vec<DeviceReading>, now: Timestamp, events: &mut Vec<DeviceEvent>) {
        if !readings.is_empty() {
            events.push(DeviceEvent::Report(DeviceReport {
                device_time: self.device_time(now),
                readings,
            }));
        }
    }

    fn data_report(
        &mut self,
        table: Table,
        data: &[u8],
        now: Timestamp,
        events: &mut Vec<DeviceEvent>,
    ) -> Result<(), MedibusError> {
        let width = match table {
            Table::Settings => SETTING_VALUE_WIDTH,
            Table::MeasuredCp1 | Table::MeasuredCp2 => MEASURED_VALUE_WIDTH,
        };
        let records = parse_data_records(data, width)?;
        let mut readings = Vec::with_capacity(records.len());
        for (code, field) in records {
            let Some(value) = parse_value(field) else {
                self.unavailable += 1;
                continue;
            };
            let mut r = match lookup(table, code) {
                Some(d) => DeviceReading::num(d.device_code(), value * d.scale, d.unit),
                None => DeviceReading::num(table.unknown_code(code), value, ""),
            }
            .labelled(table.label(code));
            if table == Table::Settings {
                r = r.on_channel(SETTINGS_CHANNEL);
            }
            readings.push(r);
        }
        self.report(readings, now, events);
        Ok(())
    }

    fn text_report(
        &mut self,
        data: &[u8],
        now: Timestamp,
        events: &mut Vec<DeviceEvent>,
    ) -> Result<(), MedibusError> {
        let readings = parse_text_messages(data)?
            .into_iter()
            .map(|t| DeviceReading {
                code: DeviceCode::Local {
                    code: format!("MEDIBUS_TEXT_{:02X}", t.code),
                },
                value: ReadingValue::Text(t.text),
                unit: String::new(),
                time: None,
                channel: Some(TEXT_CHANNEL.into()),
                label: Some(format!("{:02X}", t.code)),
                status: ReadingStatus::Valid,
            })
            .collect();
        self.report(readings, now, events);
        Ok(())
    }

    fn alarms(
        &mut self,
        code: u8,
        data: &[u8],
        now: Timestamp,
        events: &mut Vec<DeviceEvent>,
    ) -> Result<(), MedibusError> {
        let page = if code == command::ALARMS_CP1 { 1 } else { 2 };
        let time = self.device_time(now);
        let list: Vec<DeviceAlarm> = parse_alarms(data)?
            .into_iter()
            .map(|a| DeviceAlarm {
                code: format!("CP{page}:{:02X}", a.code),
                text: a.phrase,
                priority: alarm_priority(a.priority),
                time,
            })
            .collect();
        if page == 1 {
            self.alarms_cp1 = list;
        } else {
            self.alarms_cp2 = list;
        }
        // The whole list: both code pages as last polled.
        let alarms = self
            .alarms_cp1
            .iter()
            .chain(&self.alarms_cp2)
            .cloned()
            .collect();
        events.push(DeviceEvent::Alarms { alarms });
        Ok(())
    }
}

fn identity(id: DeviceId) -> DeviceIdentity {
    DeviceIdentity {
        manufacturer: Some("Dräger".into()),
        model: Some(
            id.name
                .clone()
                .unwrap_or_else(|| format!("MEDIBUS device {}", id.id)),
        ),
        serial: None,
        firmware: id.revision,
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl DeviceDriver for MedibusDriver {
    fn protocol(&self) -> &str {
        "medibus"
    }

    fn on_connect(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        self.decoder.reset();
        self.outstanding = None;
        self.start(now, out);
    }

    fn on_bytes(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
        events: &mut Vec<DeviceEvent>,
        out: &mut Vec<u8>,
    ) {
        let mut decoded = std::mem::take(&mut self.scratch);
        self.decoder.decode(bytes, &mut decoded);
        for d in decoded.drain(..) {
            match d {
                Decoded::CorruptCommand => {
                    self.respond(codes::command::CORRUPT, &[], now, out);
                }
                // Most likely the answer to our request, damaged on the line: ask again once
                // rather than wait for the reply timeout.
                Decoded::CorruptResponse => self.retry_outstanding(now, out),
                Decoded::Message(m) => {
                    self.last_rx = now;
                    match m.kind {
                        MessageKind::Command => self.handle_command(m.code, now, events, out),
                        MessageKind::Response => {
                            self.handle_response(m.code, &m.data, now, events, out)
                        }
                    }
                }
            }
        }
        self.scratch = decoded;
        self.pump(now, out);
    }

    fn on_tick(&mut self, now: Timestamp, events: &mut Vec<DeviceEvent>, out: &mut Vec<u8>) {
        if self.link == Link::Idle {
            return;
        }
        let silent = now.since(self.last_rx);
        if silent >= ms(self.settings.silence_timeout) {
            events.push(DeviceEvent::Disconnected {
                reason: format!("no valid MEDIBUS message for {silent} ms"),
            });
            self.outstanding = None;
            self.start(now, out);
            return;
        }
        if let Some(p) = self.outstanding {
            if now.since(p.sent) >= ms(self.settings.reply_timeout) {
                self.outstanding = None;
            }
        }
        if self.link == Link::Initialising && self.outstanding.is_none() {
            self.send_request(command::ICC, now, false, out);
        }
        self.pump(now, out);
    }

    fn tick_interval(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn stats(&self) -> FrameStats {
        self.decoder.stats()
    }
}
