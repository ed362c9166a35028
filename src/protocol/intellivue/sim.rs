//! A simulated IntelliVue monitor: it accepts an association, sends the MDS Create Event,
//! answers extended polls for numerics and alarms (in linked parts when one message would
//! exceed its MTU), answers releases and aborts an association that has not been polled for
//! its time-out, like the monitor does.

use std::time::Duration;

use crate::model::Timestamp;
use crate::protocol::device::{DeviceSimulator, SimTrace};

use super::float::{encode_float, state, FLOAT_NAN};
use super::frame::{encode_frame, FrameDecoder};
use super::nomenclature::{action, alert_type, attr, class, prod_spec};
use super::pdu::{
    self, rorls, AlarmEntry, Link, ManagedObjectId, Message, NuObsValue, ObservationOut,
    PollReplyHeader, PollRequest, ProdSpec,
};
use super::time::{encode_abs_time, ms_to_ticks, ABS_TIME_UNSET};

/// Unit codes the default monitor uses.
const DIM_BPM: u16 = 0x0AA0;
const DIM_PERCENT: u16 = 0x0220;
const DIM_RESP_PER_MIN: u16 = 0x0AE0;
const DIM_MMHG: u16 = 0x0F20;
const DIM_DEGC: u16 = 0x17A0;

/// Bytes of a poll result besides its objects (action result, reply header, one context).
const REPLY_OVERHEAD: usize = 10 + 22 + 4 + 6;

/// One simulated value.
#[derive(Clone, Debug, PartialEq)]
pub struct SimNumeric {
    /// Philips physiological id.
    pub physio_id: u16,
    /// Philips unit code.
    pub unit_code: u16,
    pub trace: SimTrace,
    /// Digits after the point in the FLOAT-Type value.
    pub decimals: u8,
    /// MeasurementState sent with the value.
    pub state: u16,
    /// Send NaN instead of the value.
    pub nan: bool,
}

impl SimNumeric {
    pub fn new(physio_id: u16, unit_code: u16, trace: SimTrace, decimals: u8) -> Self {
        SimNumeric {
            physio_id,
            unit_code,
            trace,
            decimals,
            state: 0,
            nan: false,
        }
    }
}

/// One simulated Numeric object.
#[derive(Clone, Debug, PartialEq)]
pub struct SimObject {
    pub handle: u16,
    /// One value: a NOM_ATTR_NU_VAL_OBS; several: one NOM_ATTR_NU_CMPD_VAL_OBS (blood pressures).
    pub values: Vec<SimNumeric>,
    /// Measured every this many ms (NIBP): values hold between measurements and carry the
    /// measurement's NOM_ATTR_TIME_STAMP_ABS.
    pub episodic_every_ms: Option<i64>,
    /// Carry the poll's relative time as NOM_ATTR_TIME_STAMP_REL.
    pub relative_stamp: bool,
}

/// An active alarm the alert monitor reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimAlarm {
    /// Physiological id the alarm is about.
    pub source: u16,
    /// Event code (NOM_EVT_...).
    pub code: u16,
    /// AlertType (priority; physiological or technical).
    pub alert_type: u16,
    /// Alarm text, sent as StrAlMonInfo.
    pub text: Option<String>,
}

/// Simulator settings.
#[derive(Clone, Debug, PartialEq)]
pub struct IntellivueSimSettings {
    pub manufacturer: String,
    pub model: String,
    pub serial: Option<String>,
    pub software: Option<String>,
    pub objects: Vec<SimObject>,
    pub alarms: Vec<SimAlarm>,
    /// Add a questionable perfusion index and a NaN blood temperature to the numerics.
    pub faults: bool,
    /// The monitor's clock runs at UTC plus this many minutes.
    pub utc_offset_min: i32,
    /// Relative time at the simulator's start (see [`Self::near_wrap`]).
    pub relative_time_start: u32,
    /// Fill the absolute time of poll results; when false only relative times are sent and
    /// the host must map them through the MDS Create Event's time pair.
    pub abs_time_in_polls: bool,
    /// Largest command in bytes; larger poll results go out as linked results.
    pub mtu: usize,
    /// No message from the host for this long: Abort.
    pub association_timeout: Duration,
}

impl IntellivueSimSettings {
    /// Relative time that wraps `seconds` after the start.
    pub fn near_wrap(seconds: u32) -> u32 {
        0u32.wrapping_sub(seconds.wrapping_mul(8_000))
    }
}

/// The default monitor's numerics: HR, SpO2, pulse rate, RR, NIBP, ABP, temperature, etCO2.
pub fn default_objects() -> Vec<SimObject> {
    let one = |handle, n: SimNumeric, relative_stamp| SimObject {
        handle,
        values: vec![n],
        episodic_every_ms: None,
        relative_stamp,
    };
    vec![
        one(
            1,
            SimNumeric::new(0x4182, DIM_BPM, SimTrace::wave(78.0, 6.0, 90_000), 0),
            true,
        ),
        one(
            2,
            SimNumeric::new(0x4BB8, DIM_PERCENT, SimTrace::wave(97.0, 1.5, 120_000), 0),
            false,
        ),
        one(
            3,
            SimNumeric::new(0x481A, DIM_BPM, SimTrace::wave(77.0, 6.0, 90_000), 0),
            false,
        ),
        one(
            4,
            SimNumeric::new(
                0x500A,
                DIM_RESP_PER_MIN,
                SimTrace::wave(16.0, 3.0, 60_000),
                0,
            ),
            false,
        ),
        SimObject {
            handle: 5,
            values: vec![
                SimNumeric::new(0x4A05, DIM_MMHG, SimTrace::wave(122.0, 10.0, 1_800_000), 0),
                SimNumeric::new(0x4A06, DIM_MMHG, SimTrace::wave(78.0, 6.0, 1_800_000), 0),
                SimNumeric::new(0x4A07, DIM_MMHG, SimTrace::wave(93.0, 7.0, 1_800_000), 0),
            ],
            episodic_every_ms: Some(300_000),
            relative_stamp: false,
        },
        SimObject {
            handle: 6,
            values: vec![
                SimNumeric::new(0x4A15, DIM_MMHG, SimTrace::wave(118.0, 8.0, 30_000), 0),
                SimNumeric::new(0x4A16, DIM_MMHG, SimTrace::wave(72.0, 5.0, 30_000), 0),
                SimNumeric::new(0x4A17, DIM_MMHG, SimTrace::wave(88.0, 6.0, 30_000), 0),
            ],
            episodic_every_ms: None,
            relative_stamp: false,
        },
        one(
            7,
            SimNumeric::new(0x4B48, DIM_DEGC, SimTrace::wave(37.1, 0.3, 600_000), 1),
            false,
        ),
        one(
            8,
            SimNumeric::new(0x50B0, DIM_MMHG, SimTrace::wave(38.0, 2.0, 60_000), 0),
            false,
        ),
    ]
}

/// The two extra objects of [`IntellivueSimSettings::faults`].
pub fn fault_objects() -> Vec<SimObject> {
    let mut pi = SimNumeric::new(0x4BB0, DIM_PERCENT, SimTrace::flat(2.1), 1);
    pi.state = state::QUESTIONABLE;
    let mut tblood = SimNumeric::new(0xE014, DIM_DEGC, SimTrace::flat(37.0), 1);
    tblood.nan = true;
    [pi, tblood]
        .into_iter()
        .zip([20u16, 21])
        .map(|(n, handle)| SimObject {
            handle,
            values: vec![n],
            episodic_every_ms: None,
            relative_stamp: false,
        })
        .collect()
}

impl Default for IntellivueSimSettings {
    fn default() -> Self {
        IntellivueSimSettings {
            manufacturer: "Philips".into(),
            model: "MP70".into(),
            serial: Some("DE00012345".into()),
            software: Some("M.00.03".into()),
            objects: default_objects(),
            alarms: Vec::new(),
            faults: false,
            utc_offset_min: 0,
            relative_time_start: 0x0100_0000,
            abs_time_in_polls: true,
            mtu: 1_000,
            association_timeout: Duration::from_secs(10),
        }
    }
}

/// The simulated monitor.
#[derive(Debug)]
pub struct IntellivueSimulator {
    settings: IntellivueSimSettings,
    objects: Vec<SimObject>,
    framer: FrameDecoder,
    start: Option<Timestamp>,
    associated: bool,
    create_acked: bool,
    last_host: Timestamp,
    mtu: usize,
    invoke_id: u16,
    sequence_no: u16,
    /// Polls answered, by kind, for tests.
    answered: u64,
    ignored: u64,
}

impl Default for IntellivueSimulator {
    fn default() -> Self {
        IntellivueSimulator::new(IntellivueSimSettings::default())
    }
}

impl IntellivueSimulator {
    pub fn new(settings: IntellivueSimSettings) -> Self {
        let mut objects = settings.objects.clone();
        if settings.faults {
            objects.extend(fault_objects());
        }
        let mtu = settings.mtu;
        IntellivueSimulator {
            settings,
            objects,
            framer: FrameDecoder::default(),
            start: None,
            associated: false,
            create_acked: false,
            last_host: Timestamp::default(),
            mtu,
            invoke_id: 0,
            sequence_no: 0,
            answered: 0,
            ignored: 0,
        }
    }

    /// Whether an association is open.
    pub fn is_associated(&self) -> bool {
        self.associated
    }

    /// Poll requests answered so far.
    pub fn polls_answered(&self) -> u64 {
        self.answered
    }

    /// Host messages ignored (polls before the MDS Create was acknowledged, unknown requests).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// The value the monitor shows for `n` at `elapsed_ms` after start.
    pub fn value_at(n: &SimNumeric, elapsed_ms: i64) -> f64 {
        n.trace.at(elapsed_ms, i32::from(n.decimals))
    }

    fn start(&mut self, now: Timestamp) -> Timestamp {
        *self.start.get_or_insert(now)
    }

    fn rel_time(&mut self, now: Timestamp) -> u32 {
        let start = self.start(now);
        self.settings
            .relative_time_start
            .wrapping_add(ms_to_ticks(now.since(start)))
    }

    fn abs_time(&self, t: Timestamp) -> [u8; 8] {
        encode_abs_time(t, self.settings.utc_offset_min)
    }

    fn send(out: &mut Vec<u8>, user_data: &[u8]) {
        // Simulator messages are bounded by its MTU.
        let _ = encode_frame(user_data, out);
    }

    fn next_invoke(&mut self) -> u16 {
        self.invoke_id = self.invoke_id.wrapping_add(1);
        self.invoke_id
    }

    fn mds_create(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        let rel = self.rel_time(now);
        let s = &self.settings;
        let mut attrs = vec![(
            attr::NOM_ATTR_ID_MODEL,
            pdu::encode_system_model(&s.manufacturer, &s.model),
        )];
        let mut spec = Vec::new();
        if let Some(serial) = &s.serial {
            spec.push(ProdSpec {
                spec_type: prod_spec::SERIAL_NUMBER,
                component: 0,
                text: serial.clone(),
            });
        }
        if let Some(sw) = &s.software {
            spec.push(ProdSpec {
                spec_type: prod_spec::SW_REVISION,
                component: 0,
                text: sw.clone(),
            });
        }
        if !spec.is_empty() {
            attrs.push((attr::NOM_ATTR_ID_PROD_SPECN, pdu::encode_prod_spec(&spec)));
        }
        attrs.push((attr::NOM_ATTR_TIME_ABS, self.abs_time(now).to_vec()));
        attrs.push((attr::NOM_ATTR_TIME_REL, rel.to_be_bytes().to_vec()));
        // MDS status OPERATING.
        attrs.push((attr::NOM_ATTR_VMS_MDS_STAT, 6u16.to_be_bytes().to_vec()));
        let invoke = self.next_invoke();
        Self::send(out, &pdu::encode_mds_create(invoke, rel, &attrs));
    }

    fn numeric_objects(&self, now: Timestamp, start: Timestamp, rel: u32) -> Vec<ObservationOut> {
        let elapsed = now.since(start);
        self.objects
            .iter()
            .map(|o| {
                let (at, stamp) = match o.episodic_every_ms {
                    Some(every) if every > 0 => {
                        let measured = elapsed - elapsed.rem_euclid(every);
                        (measured, Some(start.plus_ms(measured)))
                    }
                    _ => (elapsed, None),
                };
                let values: Vec<NuObsValue> = o
                    .values
                    .iter()
                    .map(|n| NuObsValue {
                        physio_id: n.physio_id,
                        state: n.state,
                        unit_code: n.unit_code,
                        value: if n.nan {
                            FLOAT_NAN
                        } else {
                            encode_float(Self::value_at(n, at), n.decimals)
                        },
                    })
                    .collect();
                let mut attrs = Vec::new();
                match values.as_slice() {
                    [one] => attrs.push((attr::NOM_ATTR_NU_VAL_OBS, one.encode())),
                    many => attrs.push((
                        attr::NOM_ATTR_NU_CMPD_VAL_OBS,
                        NuObsValue::encode_compound(many),
                    )),
                }
                if let Some(t) = stamp {
                    attrs.push((attr::NOM_ATTR_TIME_STAMP_ABS, self.abs_time(t).to_vec()));
                }
                if o.relative_stamp {
                    attrs.push((attr::NOM_ATTR_TIME_STAMP_REL, rel.to_be_bytes().to_vec()));
                }
                ObservationOut {
                    handle: o.handle,
                    attrs,
                }
            })
            .collect()
    }

    fn alarm_objects(&self) -> Vec<ObservationOut> {
        let (physio, technical): (Vec<&SimAlarm>, Vec<&SimAlarm>) = self
            .settings
            .alarms
            .iter()
            .partition(|a| a.alert_type >= alert_type::LOW_PRI_P_AL);
        let entries = |list: Vec<&SimAlarm>| -> Vec<AlarmEntry> {
            list.into_iter()
                .map(|a| AlarmEntry {
                    source: a.source,
                    code: a.code,
                    alert_type: a.alert_type,
                    state: 0,
                    object: ManagedObjectId {
                        class: class::NOM_MOC_VMO_METRIC_NU,
                        context: 0,
                        handle: 0,
                    },
                    text: a.text.clone(),
                })
                .collect()
        };
        vec![ObservationOut {
            handle: 100,
            attrs: vec![
                (
                    attr::NOM_ATTR_AL_MON_P_AL_LIST,
                    pdu::encode_alarm_list(&entries(physio)),
                ),
                (
                    attr::NOM_ATTR_AL_MON_T_AL_LIST,
                    pdu::encode_alarm_list(&entries(technical)),
                ),
            ],
        }]
    }

    /// Splits objects so each message's command stays within the MTU (one object at least).
    fn split(&self, objects: Vec<ObservationOut>) -> Vec<Vec<ObservationOut>> {
        let mut parts: Vec<Vec<ObservationOut>> = Vec::new();
        let mut size = REPLY_OVERHEAD;
        let mut current = Vec::new();
        for o in objects {
            let n = 6 + o.attrs.iter().map(|(_, v)| 4 + v.len()).sum::<usize>();
            if !current.is_empty() && size + n > self.mtu {
                parts.push(std::mem::take(&mut current));
                size = REPLY_OVERHEAD;
            }
            size += n;
            current.push(o);
        }
        parts.push(current);
        parts
    }

    fn answer_poll(&mut self, req: &PollRequest, now: Timestamp, out: &mut Vec<u8>) {
        let start = self.start(now);
        let rel = self.rel_time(now);
        let objects = match (req.extended, req.obj_class) {
            (_, class::NOM_MOC_VMO_METRIC_NU) => self.numeric_objects(now, start, rel),
            (_, class::NOM_MOC_VMO_AL_MON) => self.alarm_objects(),
            _ => Vec::new(),
        };
        self.sequence_no = self.sequence_no.wrapping_add(1);
        let header = PollReplyHeader {
            extended: req.extended,
            poll_number: req.poll_number,
            sequence_no: self.sequence_no,
            rel_time: rel,
            abs_time: if self.settings.abs_time_in_polls {
                self.abs_time(now)
            } else {
                ABS_TIME_UNSET
            },
            obj_class: req.obj_class,
            attr_group: req.attr_group,
            context_id: 0,
        };
        let parts = self.split(objects);
        let n = parts.len();
        for (i, part) in parts.iter().enumerate() {
            let link = if i + 1 == n {
                Link::Single
            } else {
                let state = match i {
                    0 => rorls::FIRST,
                    _ if i + 2 == n => rorls::LAST,
                    _ => rorls::NOT_FIRST_NOT_LAST,
                };
                Link::Linked {
                    state,
                    count: u8::try_from(i + 1).unwrap_or(u8::MAX),
                }
            };
            Self::send(
                out,
                &pdu::encode_poll_result(req.invoke_id, link, &header, part),
            );
        }
        self.answered += 1;
    }

    fn handle(&mut self, user_data: &[u8], now: Timestamp, out: &mut Vec<u8>) {
        let Ok(msg) = pdu::decode(user_data) else {
            self.ignored += 1;
            return;
        };
        match msg {
            Message::AssociationRequest(info) => {
                let answer = pdu::server_user_info(
                    info.as_ref(),
                    u32::try_from(self.settings.mtu).unwrap_or(u32::MAX),
                );
                self.mtu = answer.poll_profile.map_or(self.settings.mtu, |p| {
                    usize::try_from(p.max_mtu_rx).unwrap_or(self.settings.mtu)
                });
                Self::send(out, &pdu::encode_association_result(&answer));
                self.associated = true;
                self.create_acked = false;
                self.last_host = now;
                self.mds_create(now, out);
            }
            _ if !self.associated => self.ignored += 1,
            Message::EventReportResult(r) if r.event_type == action::NOM_NOTI_MDS_CREAT => {
                self.create_acked = true;
                self.last_host = now;
            }
            Message::PollRequest(req) => {
                self.last_host = now;
                if self.create_acked {
                    self.answer_poll(&req, now, out);
                } else {
                    self.ignored += 1;
                }
            }
            Message::ReleaseRequest => {
                Self::send(out, &pdu::encode_release_result());
                self.associated = false;
            }
            Message::Abort => self.associated = false,
            _ => {
                self.last_host = now;
                self.ignored += 1;
            }
        }
    }
}

impl DeviceSimulator for IntellivueSimulator {
    fn on_bytes(&mut self, bytes: &[u8], now: Timestamp, out: &mut Vec<u8>) {
        self.start(now);
        let mut frames = Vec::new();
        self.framer.feed(bytes, |f| frames.push(f.to_vec()));
        for f in frames {
            self.handle(&f, now, out);
        }
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        self.start(now);
        let timeout =
            i64::try_from(self.settings.association_timeout.as_millis()).unwrap_or(i64::MAX);
        if self.associated && now.since(self.last_host) >= timeout {
            Self::send(out, &pdu::encode_abort());
            self.associated = false;
        }
    }
}
