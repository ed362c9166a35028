//! The host side of a Data Export session: association, MDS Create acknowledgement, periodic
//! extended polls for numerics and alarms (which are also the keep-alive the monitor needs),
//! and the decoding of poll results into [`DeviceEvent`]s.
//!
//! The driver decodes every frame it is given whatever the session state, so a capture of the
//! monitor's bytes alone (`vigil decode`) yields the same reports as the live session did.

use std::time::Duration;

use crate::model::Timestamp;
use crate::protocol::device::{
    DeviceAlarm, DeviceDriver, DeviceEvent, DeviceIdentity, DeviceReading, DeviceReport,
    FrameStats, ReadingStatus, ReadingValue,
};

use super::float::{decode_float, reading_status};
use super::frame::{encode_frame, FrameDecoder, DEFAULT_MAX_USER_DATA};
use super::nomenclature::{
    action, alert_type, attr, class, event_label, physio_code, physio_label, prod_spec, unit_ucum,
};
use super::pdu::{
    self, AlarmEntry, EventReportResult, Link, Message, NuObsValue, Observation, PollReply,
    PollRequest, UserInfo,
};
use super::time::{decode_abs_time, TimeAnchor};

/// Most readings held for one linked poll result before the rest are dropped.
const MAX_PENDING_READINGS: usize = 4096;
/// Most alarms held for one linked poll result.
const MAX_PENDING_ALARMS: usize = 512;

/// Session settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntellivueSettings {
    /// How often numerics (and alarms) are polled. The monitor answers at most one poll per
    /// object type per second.
    pub poll_interval: Duration,
    /// Poll the alert monitor too, emitting [`DeviceEvent::Alarms`].
    pub alarm_poll: bool,
    /// No frame from the monitor for this long: emit `Disconnected` and associate again.
    pub silence_timeout: Duration,
    /// Longest gap between two host messages while associated; with a `poll_interval` longer
    /// than this an MDS poll is sent in between so the monitor (which aborts after 10 s
    /// without a message) keeps the association.
    pub keep_alive: Duration,
    /// After a refusal, an abort or a release by the monitor, wait this long before the next
    /// association request.
    pub reconnect_after: Duration,
    /// The monitor's clock runs at UTC plus this many minutes (its absolute times are local).
    pub monitor_utc_offset_min: i32,
    /// Frames with more user data are dropped and counted as a resync.
    pub max_user_data: usize,
}

impl Default for IntellivueSettings {
    fn default() -> Self {
        IntellivueSettings {
            poll_interval: Duration::from_secs(1),
            alarm_poll: true,
            silence_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            reconnect_after: Duration::from_secs(5),
            monitor_utc_offset_min: 0,
            max_user_data: DEFAULT_MAX_USER_DATA,
        }
    }
}

/// Protocol counters beyond framing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntellivueCounters {
    /// Values the monitor marked invalid/unavailable or sent as NaN, NRes or ±INF (not emitted).
    pub unavailable_values: u64,
    /// Values with a unit code missing from the unit table (emitted with an empty unit).
    pub unknown_units: u64,
    /// Reports emitted.
    pub reports: u64,
    /// Poll requests sent.
    pub polls_sent: u64,
    /// Remote operation errors received.
    pub remote_errors: u64,
    /// Associations accepted.
    pub associations: u64,
    /// `Disconnected` events emitted.
    pub disconnects: u64,
    /// Well-formed messages this driver has no use for (including host requests in a capture
    /// of both directions).
    pub ignored_messages: u64,
    /// Readings or alarms dropped because one linked result exceeded the bounds.
    pub dropped: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not started (decode-only use, or after a release the host asked for).
    Idle,
    /// Association request sent at `since`.
    Associating { since: Timestamp },
    /// Association accepted; waiting for the MDS Create Event.
    Associated,
    /// Polling.
    Operating,
    /// Host sent a release request.
    Releasing,
    /// Waiting to associate again.
    Backoff { until: Timestamp },
}

/// A poll result being assembled from linked parts.
#[derive(Debug, Default)]
struct Pending {
    invoke_id: u16,
    device_time: Option<Timestamp>,
    alarm_poll: bool,
    readings: Vec<DeviceReading>,
    alarms: Vec<DeviceAlarm>,
}

#[derive(Debug)]
struct Session {
    settings: IntellivueSettings,
    /// `on_connect` was called: the driver may write and time out.
    live: bool,
    state: State,
    last_rx: Timestamp,
    last_tx: Timestamp,
    next_poll: Timestamp,
    invoke_id: u16,
    poll_number: u16,
    anchor: Option<TimeAnchor>,
    pending: Option<Pending>,
    decode_errors: u64,
    counters: IntellivueCounters,
}

/// Host-side driver for Philips IntelliVue monitors on the MIB/RS232 port.
#[derive(Debug)]
pub struct IntellivueDriver {
    framer: FrameDecoder,
    session: Session,
}

impl Default for IntellivueDriver {
    fn default() -> Self {
        IntellivueDriver::new(IntellivueSettings::default())
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl IntellivueDriver {
    pub fn new(settings: IntellivueSettings) -> Self {
        IntellivueDriver {
            framer: FrameDecoder::new(settings.max_user_data),
            session: Session {
                settings,
                live: false,
                state: State::Idle,
                last_rx: Timestamp::default(),
                last_tx: Timestamp::default(),
                next_poll: Timestamp::default(),
                invoke_id: 0,
                poll_number: 0,
                anchor: None,
                pending: None,
                decode_errors: 0,
                counters: IntellivueCounters::default(),
            },
        }
    }

    /// Protocol counters (values withheld as unavailable, polls, errors...).
    pub fn counters(&self) -> IntellivueCounters {
        self.session.counters
    }

    /// Whether the session is polling.
    pub fn is_operating(&self) -> bool {
        self.session.state == State::Operating
    }

    /// Ends the session politely: a Release Request; the monitor's Release Result then emits
    /// `Disconnected` and the driver stays idle until the next `on_connect`.
    pub fn release(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        let s = &mut self.session;
        if matches!(s.state, State::Associated | State::Operating) {
            s.send(&pdu::encode_release_request(), now, out);
            s.state = State::Releasing;
        }
    }
}

impl Session {
    fn send(&mut self, user_data: &[u8], now: Timestamp, out: &mut Vec<u8>) {
        // Our own messages are far below the 64 KiB the length field allows.
        if encode_frame(user_data, out).is_ok() {
            self.last_tx = now;
        }
    }

    fn next_invoke(&mut self) -> u16 {
        self.invoke_id = self.invoke_id.wrapping_add(1);
        self.invoke_id
    }

    fn associate(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        self.send(
            &pdu::encode_association_request(&UserInfo::client()),
            now,
            out,
        );
        self.state = State::Associating { since: now };
        self.last_rx = now;
        self.pending = None;
    }

    fn disconnected(&mut self, reason: String, now: Timestamp, events: &mut Vec<DeviceEvent>) {
        self.counters.disconnects += 1;
        self.pending = None;
        events.push(DeviceEvent::Disconnected { reason });
        self.state = if self.live {
            State::Backoff {
                until: now.plus_ms(ms(self.settings.reconnect_after)),
            }
        } else {
            State::Idle
        };
    }

    fn poll(&mut self, obj_class: u16, attr_group: u16, now: Timestamp, out: &mut Vec<u8>) {
        self.poll_number = self.poll_number.wrapping_add(1);
        let req = PollRequest {
            invoke_id: self.next_invoke(),
            extended: true,
            poll_number: self.poll_number,
            obj_class,
            attr_group,
            period: None,
        };
        self.send(&pdu::encode_poll_request(&req), now, out);
        self.counters.polls_sent += 1;
    }

    fn send_polls(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        self.poll(
            class::NOM_MOC_VMO_METRIC_NU,
            attr::NOM_ATTR_GRP_METRIC_VAL_OBS,
            now,
            out,
        );
        if self.settings.alarm_poll {
            self.poll(
                class::NOM_MOC_VMO_AL_MON,
                attr::NOM_ATTR_GRP_AL_MON,
                now,
                out,
            );
        }
    }

    fn keep_alive(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        self.poll_number = self.poll_number.wrapping_add(1);
        let req = PollRequest {
            invoke_id: self.next_invoke(),
            extended: false,
            poll_number: self.poll_number,
            obj_class: class::NOM_MOC_VMS_MDS,
            attr_group: attr::NOM_ATTR_GRP_SYS_PROD,
            period: None,
        };
        self.send(&pdu::encode_poll_request(&req), now, out);
    }

    fn handle(
        &mut self,
        user_data: &[u8],
        now: Timestamp,
        events: &mut Vec<DeviceEvent>,
        out: &mut Vec<u8>,
    ) {
        self.last_rx = now;
        let msg = match pdu::decode(user_data) {
            Ok(m) => m,
            Err(_) => {
                self.decode_errors += 1;
                return;
            }
        };
        match msg {
            Message::AssociationResult(_) => {
                self.counters.associations += 1;
                self.state = State::Associated;
                events.push(DeviceEvent::Connected);
            }
            Message::Refuse => {
                self.disconnected("monitor refused the association".into(), now, events)
            }
            Message::Abort => {
                self.disconnected("monitor aborted the association".into(), now, events)
            }
            Message::ReleaseResult => {
                self.counters.disconnects += 1;
                self.pending = None;
                events.push(DeviceEvent::Disconnected {
                    reason: "association released".into(),
                });
                self.state = State::Idle;
            }
            Message::ReleaseRequest => {
                if self.live {
                    self.send(&pdu::encode_release_result(), now, out);
                }
                self.disconnected("monitor released the association".into(), now, events);
            }
            Message::MdsCreate(c) => {
                if self.live {
                    let ack = EventReportResult {
                        invoke_id: c.invoke_id,
                        object: c.reporter,
                        current_time: c.event_time,
                        event_type: action::NOM_NOTI_MDS_CREAT,
                    };
                    self.send(&pdu::encode_event_report_result(&ack), now, out);
                }
                let abs = c
                    .attrs
                    .get(attr::NOM_ATTR_TIME_ABS)
                    .and_then(|v| pdu::parse_abs_time(v).ok());
                let rel = c
                    .attrs
                    .get(attr::NOM_ATTR_TIME_REL)
                    .and_then(|v| pdu::parse_rel_time(v).ok());
                if let (Some(abs), Some(rel)) = (abs, rel) {
                    if let Some(abs) = decode_abs_time(&abs, self.settings.monitor_utc_offset_min) {
                        self.anchor = Some(TimeAnchor { rel, abs });
                    }
                }
                if let Some(id) = self.identity(&c.attrs) {
                    events.push(DeviceEvent::Identified(id));
                }
                self.state = State::Operating;
                if self.live {
                    self.send_polls(now, out);
                    self.next_poll = now.plus_ms(ms(self.settings.poll_interval));
                }
            }
            Message::PollResult {
                invoke_id,
                link,
                reply,
            } => self.poll_result(invoke_id, link, &reply, events),
            Message::Error { .. } => self.counters.remote_errors += 1,
            Message::AssociationRequest(_)
            | Message::EventReportResult(_)
            | Message::PollRequest(_)
            | Message::Other { .. } => self.counters.ignored_messages += 1,
        }
    }

    fn identity(&mut self, attrs: &pdu::AttrList<'_>) -> Option<DeviceIdentity> {
        let mut id = DeviceIdentity::default();
        if let Some(v) = attrs.get(attr::NOM_ATTR_ID_MODEL) {
            match pdu::parse_system_model(v) {
                Ok((maker, model)) => {
                    id.manufacturer = Some(maker).filter(|s| !s.is_empty());
                    id.model = Some(model).filter(|s| !s.is_empty());
                }
                Err(_) => self.decode_errors += 1,
            }
        }
        if let Some(v) = attrs.get(attr::NOM_ATTR_ID_PROD_SPECN) {
            match pdu::parse_prod_spec(v) {
                Ok(entries) => {
                    for e in entries.into_iter().filter(|e| !e.text.is_empty()) {
                        match e.spec_type {
                            prod_spec::SERIAL_NUMBER if id.serial.is_none() => {
                                id.serial = Some(e.text)
                            }
                            prod_spec::SW_REVISION | prod_spec::FW_REVISION
                                if id.firmware.is_none() =>
                            {
                                id.firmware = Some(e.text)
                            }
                            _ => {}
                        }
                    }
                }
                Err(_) => self.decode_errors += 1,
            }
        }
        (id != DeviceIdentity::default()).then_some(id)
    }

    /// The report time of a poll result: its absolute time when set (and then the anchor for
    /// relative times), else its relative time through the anchor.
    fn reply_time(&mut self, reply: &PollReply<'_>) -> Option<Timestamp> {
        match decode_abs_time(&reply.abs_time, self.settings.monitor_utc_offset_min) {
            Some(abs) => {
                self.anchor = Some(TimeAnchor {
                    rel: reply.rel_time,
                    abs,
                });
                Some(abs)
            }
            None => self.anchor.as_mut().map(|a| a.advance(reply.rel_time)),
        }
    }

    fn observation_time(&mut self, obs: &Observation<'_>) -> Option<Timestamp> {
        if let Some(v) = obs.attrs.get(attr::NOM_ATTR_TIME_STAMP_ABS) {
            match pdu::parse_abs_time(v) {
                Ok(b) => {
                    if let Some(t) = decode_abs_time(&b, self.settings.monitor_utc_offset_min) {
                        return Some(t);
                    }
                }
                Err(_) => self.decode_errors += 1,
            }
        }
        if let Some(v) = obs.attrs.get(attr::NOM_ATTR_TIME_STAMP_REL) {
            match pdu::parse_rel_time(v) {
                Ok(rel) => return self.anchor.map(|a| a.to_abs(rel)),
                Err(_) => self.decode_errors += 1,
            }
        }
        None
    }

    fn reading(&mut self, v: &NuObsValue, time: Option<Timestamp>) -> Option<DeviceReading> {
        let value = decode_float(v.value);
        let status = reading_status(v.state, value);
        let num = match (status, value.value()) {
            (ReadingStatus::Unavailable, _) | (_, None) => {
                self.counters.unavailable_values += 1;
                return None;
            }
            (_, Some(n)) => n,
        };
        let unit = match unit_ucum(v.unit_code) {
            Some(u) => u,
            None => {
                self.counters.unknown_units += 1;
                ""
            }
        };
        Some(DeviceReading {
            code: physio_code(v.physio_id),
            value: ReadingValue::Num(num),
            unit: unit.to_string(),
            time,
            channel: None,
            label: Some(physio_label(v.physio_id).into_owned()),
            status,
        })
    }

    fn alarm(&self, e: &AlarmEntry, time: Option<Timestamp>) -> DeviceAlarm {
        let priority = match e.alert_type {
            alert_type::HI_PRI_P_AL | alert_type::HI_PRI_T_AL => "high",
            alert_type::MED_PRI_P_AL | alert_type::MED_PRI_T_AL => "medium",
            alert_type::LOW_PRI_P_AL | alert_type::LOW_PRI_T_AL => "low",
            _ => "info",
        };
        let source = physio_label(e.source);
        let event = event_label(e.code);
        let text = e
            .text
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| format!("{source} {event}"));
        DeviceAlarm {
            code: format!("{source}/{event}"),
            text,
            priority,
            time,
        }
    }

    fn poll_result(
        &mut self,
        invoke_id: u16,
        link: Link,
        reply: &PollReply<'_>,
        events: &mut Vec<DeviceEvent>,
    ) {
        let device_time = self.reply_time(reply);
        let alarm_poll = reply.obj_class == class::NOM_MOC_VMO_AL_MON;
        // A new linked series, or a result for another request, closes what was pending.
        let continues = match (&self.pending, link) {
            (Some(p), Link::Linked { state, .. }) => {
                p.invoke_id == invoke_id && state != pdu::rorls::FIRST
            }
            (Some(p), Link::Single) => p.invoke_id == invoke_id,
            (None, _) => false,
        };
        if !continues {
            if let Some(p) = self.pending.take() {
                self.emit(p, events);
            }
        }
        let mut part = self.pending.take().unwrap_or_else(|| Pending {
            invoke_id,
            device_time,
            alarm_poll,
            ..Pending::default()
        });
        part.device_time = part.device_time.or(device_time);
        for obs in &reply.observations {
            let time = self.observation_time(obs);
            for (id, value) in obs.attrs.iter() {
                match id {
                    attr::NOM_ATTR_NU_VAL_OBS => match NuObsValue::parse(value) {
                        Ok(v) => {
                            if let Some(r) = self.reading(&v, time) {
                                push_bounded(
                                    &mut part.readings,
                                    r,
                                    MAX_PENDING_READINGS,
                                    &mut self.counters.dropped,
                                );
                            }
                        }
                        Err(_) => self.decode_errors += 1,
                    },
                    attr::NOM_ATTR_NU_CMPD_VAL_OBS => match NuObsValue::parse_compound(value) {
                        Ok(vs) => {
                            for v in &vs {
                                if let Some(r) = self.reading(v, time) {
                                    push_bounded(
                                        &mut part.readings,
                                        r,
                                        MAX_PENDING_READINGS,
                                        &mut self.counters.dropped,
                                    );
                                }
                            }
                        }
                        Err(_) => self.decode_errors += 1,
                    },
                    attr::NOM_ATTR_AL_MON_P_AL_LIST | attr::NOM_ATTR_AL_MON_T_AL_LIST => {
                        match pdu::parse_alarm_list(value) {
                            Ok(entries) => {
                                for e in &entries {
                                    let a = self.alarm(e, device_time);
                                    push_bounded(
                                        &mut part.alarms,
                                        a,
                                        MAX_PENDING_ALARMS,
                                        &mut self.counters.dropped,
                                    );
                                }
                            }
                            Err(_) => self.decode_errors += 1,
                        }
                    }
                    _ => {}
                }
            }
        }
        match link {
            Link::Linked { .. } => self.pending = Some(part),
            Link::Single => self.emit(part, events),
        }
    }

    fn emit(&mut self, p: Pending, events: &mut Vec<DeviceEvent>) {
        if p.alarm_poll {
            events.push(DeviceEvent::Alarms { alarms: p.alarms });
        }
        if !p.readings.is_empty() {
            self.counters.reports += 1;
            events.push(DeviceEvent::Report(DeviceReport {
                device_time: p.device_time,
                readings: p.readings,
            }));
        }
    }

    fn tick(&mut self, now: Timestamp, events: &mut Vec<DeviceEvent>, out: &mut Vec<u8>) {
        if !self.live {
            return;
        }
        let silence = ms(self.settings.silence_timeout);
        match self.state {
            State::Idle => {}
            State::Backoff { until } => {
                if now >= until {
                    self.associate(now, out);
                }
            }
            State::Associating { since } => {
                // Never connected: ask again, no event.
                if now.since(since) >= silence {
                    self.associate(now, out);
                }
            }
            State::Associated | State::Operating | State::Releasing => {
                if now.since(self.last_rx) >= silence {
                    let reason = format!("monitor silent for {} s", now.since(self.last_rx) / 1000);
                    self.disconnected(reason, now, events);
                    self.associate(now, out);
                    return;
                }
                if self.state != State::Operating {
                    return;
                }
                if now >= self.next_poll {
                    self.send_polls(now, out);
                    let interval = ms(self.settings.poll_interval).max(1);
                    self.next_poll = self.next_poll.plus_ms(interval);
                    if self.next_poll <= now {
                        self.next_poll = now.plus_ms(interval);
                    }
                } else if now.since(self.last_tx) >= ms(self.settings.keep_alive) {
                    self.keep_alive(now, out);
                }
            }
        }
    }
}

fn push_bounded<T>(v: &mut Vec<T>, item: T, max: usize, dropped: &mut u64) {
    if v.len() < max {
        v.push(item);
    } else {
        *dropped += 1;
    }
}

impl DeviceDriver for IntellivueDriver {
    fn protocol(&self) -> &str {
        "intellivue"
    }

    fn on_connect(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        self.framer.reset();
        let s = &mut self.session;
        s.live = true;
        s.anchor = None;
        s.associate(now, out);
    }

    fn on_bytes(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
        events: &mut Vec<DeviceEvent>,
        out: &mut Vec<u8>,
    ) {
        let session = &mut self.session;
        self.framer.feed(bytes, |user_data| {
            session.handle(user_data, now, events, out)
        });
    }

    fn on_tick(&mut self, now: Timestamp, events: &mut Vec<DeviceEvent>, out: &mut Vec<u8>) {
        self.session.tick(now, events, out);
    }

    fn stats(&self) -> FrameStats {
        let mut s = self.framer.stats();
        s.decode_errors += self.session.decode_errors;
        s
    }
}
