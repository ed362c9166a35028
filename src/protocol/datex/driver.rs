//! Host side of the S/5 Computer Interface, sans I/O.
//!
//! The monitor is silent until asked: on connect the driver requests displayed values (and,
//! if configured, a trend) at an interface level. A monitor ignores requests at a level newer
//! than its own, so when the level is not configured the driver starts at the newest (2015)
//! and, while nothing answers, steps down a level every [`ANSWER_WAIT_MS`] to the oldest
//! (2001), then starts over. The level that got the first answer is kept
//! ([`DatexDriver::accepted_level`]) and used first after a reconnect.
//!
//! Each physiological record becomes one [`DeviceEvent::Report`] stamped with the header's
//! unix time; the first one also yields `Connected` and `Identified`. A monitor silent for
//! [`DatexSettings::silence_timeout`] yields `Disconnected` and a new request.

use std::time::Duration;

use super::codes::{self, level_year, UnavailableCounts, FALLBACK_LEVELS};
use super::frame::{encode_frame, FrameDecoder};
use super::record::{
    request_record, PhdbRequest, PhdbSubrecord, PhdbValue, Record, DRI_MT_PHDB,
    DRI_PHDBCL_REQ_EXT1, DRI_PHDBCL_REQ_EXT2, DRI_PHDBCL_REQ_EXT3, DRI_PH_10S_TREND,
    DRI_PH_60S_TREND, DRI_PH_DISPL, MAX_RECORD_LEN,
};
use crate::model::Timestamp;
use crate::protocol::device::{
    DeviceDriver, DeviceEvent, DeviceIdentity, DeviceReport, FrameStats,
};

/// How long the driver waits for the first record after a request before it tries the next
/// older level (or repeats a configured one). The monitor answers a request with its first
/// record at once, so five levels are tried well within the default silence timeout.
pub const ANSWER_WAIT_MS: i64 = 5_000;

/// Classes asked for: basic, ext1, ext2 and ext3.
const ALL_CLASSES: u32 = DRI_PHDBCL_REQ_EXT1 | DRI_PHDBCL_REQ_EXT2 | DRI_PHDBCL_REQ_EXT3;

/// A trend subscription in addition to displayed values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatexTrend {
    /// 10 s trended values, one record every 10 s.
    TenSeconds,
    /// 60 s trended values, one record every 60 s.
    SixtySeconds,
}

impl DatexTrend {
    fn record_type(self) -> u8 {
        match self {
            DatexTrend::TenSeconds => DRI_PH_10S_TREND,
            DatexTrend::SixtySeconds => DRI_PH_60S_TREND,
        }
    }
}

/// Driver settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatexSettings {
    /// Displayed values every this many seconds (0: no displayed values, only the trend).
    pub interval_s: u16,
    /// Also subscribe to trended values. Their readings carry the same codes; the vendor label
    /// ends in `(10 s trend)` or `(60 s trend)`.
    pub trend: Option<DatexTrend>,
    /// Interface level (`dri_level`, e.g. [`codes::DRI_LEVEL_2005`]); `None` finds it by
    /// falling back from the newest level.
    pub level: Option<u8>,
    /// A monitor silent this long is reported `Disconnected` and asked again.
    pub silence_timeout: Duration,
}

impl Default for DatexSettings {
    fn default() -> Self {
        DatexSettings {
            interval_s: 5,
            trend: None,
            level: None,
            silence_timeout: Duration::from_secs(30),
        }
    }
}

/// Host-side S/5 driver. See the module docs.
#[derive(Debug)]
pub struct DatexDriver {
    settings: DatexSettings,
    framer: FrameDecoder,
    core: Core,
}

/// Everything but the framer, so a record callback can borrow it while the framer runs.
#[derive(Debug, Default)]
struct Core {
    decode_errors: u64,
    unavailable: UnavailableCounts,
    other_records: u64,
    connected: bool,
    silence_reported: bool,
    level_idx: usize,
    requested_level: Option<u8>,
    accepted_level: Option<u8>,
    monitor_level: Option<u8>,
    session_start: Option<Timestamp>,
    last_rx: Option<Timestamp>,
    last_request: Option<Timestamp>,
    scratch: Vec<PhdbValue>,
}

fn unix_seconds(t: u32) -> Option<Timestamp> {
    (t != 0).then(|| Timestamp::from_millis(i64::from(t) * 1000))
}

impl DatexDriver {
    /// A driver that has not connected yet (it can decode a capture right away).
    pub fn new(settings: DatexSettings) -> Self {
        DatexDriver {
            settings,
            framer: FrameDecoder::new(MAX_RECORD_LEN + 1),
            core: Core::default(),
        }
    }

    /// The interface level whose request the monitor answered (the header's level when
    /// decoding a capture without having asked).
    pub fn accepted_level(&self) -> Option<u8> {
        self.core.accepted_level
    }

    /// The level the monitor states in its record headers.
    pub fn monitor_level(&self) -> Option<u8> {
        self.core.monitor_level
    }

    /// The level of the last request sent.
    pub fn requested_level(&self) -> Option<u8> {
        self.core.requested_level
    }

    /// Values the monitor has but sent without a reading, by reason.
    pub fn unavailable(&self) -> UnavailableCounts {
        self.core.unavailable
    }

    /// Verified records that were not physiological data (waveforms, alarms, aux info).
    pub fn other_records(&self) -> u64 {
        self.core.other_records
    }

    fn level(&self) -> u8 {
        self.settings.level.unwrap_or_else(|| {
            FALLBACK_LEVELS
                .get(self.core.level_idx)
                .copied()
                .unwrap_or(codes::DRI_LEVEL_2015)
        })
    }

    fn send_requests(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        let level = self.level();
        let mut requests = Vec::with_capacity(2);
        if self.settings.interval_s > 0 {
            requests.push(PhdbRequest::displayed(
                self.settings.interval_s,
                ALL_CLASSES,
            ));
        }
        if let Some(t) = self.settings.trend {
            requests.push(PhdbRequest::trend(t.record_type(), ALL_CLASSES));
        }
        // One request per record: some monitors take only one subrecord per request.
        for r in requests {
            if let Ok(rec) = request_record(level, &[r]) {
                encode_frame(&rec, out);
            }
        }
        self.core.requested_level = Some(level);
        self.core.last_request = Some(now);
    }

    /// Period after which a connected but quiet monitor is asked again.
    fn resend_ms(&self) -> i64 {
        let period_s = match self.settings.trend {
            Some(DatexTrend::SixtySeconds) if self.settings.interval_s == 0 => 60,
            Some(DatexTrend::TenSeconds) if self.settings.interval_s == 0 => 10,
            _ => i64::from(self.settings.interval_s),
        };
        (3 * period_s * 1000).max(10_000)
    }
}

impl Core {
    fn on_record(&mut self, bytes: &[u8], now: Timestamp, events: &mut Vec<DeviceEvent>) {
        let Ok(rec) = Record::parse(bytes) else {
            self.decode_errors += 1;
            return;
        };
        self.last_rx = Some(now);
        self.silence_reported = false;
        if rec.header.main_type != DRI_MT_PHDB {
            self.other_records += 1;
            return;
        }
        let device_time = unix_seconds(rec.header.r_time);
        let mut readings = Vec::new();
        let mut phdb = 0usize;
        let mut bad = false;
        let mut values = std::mem::take(&mut self.scratch);
        for i in 0..rec.header.subrecords().len() {
            let Ok((sr_type, body)) = rec.subrecord(i) else {
                bad = true;
                continue;
            };
            let trend = match sr_type {
                DRI_PH_DISPL => None,
                DRI_PH_10S_TREND => Some("10 s trend"),
                DRI_PH_60S_TREND => Some("60 s trend"),
                _ => continue,
            };
            let Ok(sub) = PhdbSubrecord::parse(body) else {
                bad = true;
                continue;
            };
            phdb += 1;
            let time = unix_seconds(sub.time).or(device_time);
            values.clear();
            sub.values(&mut values);
            for v in &values {
                match codes::to_reading(v, time) {
                    Ok(mut r) => {
                        if let (Some(t), Some(l)) = (trend, r.label.as_mut()) {
                            l.push_str(&format!(" ({t})"));
                        }
                        readings.push(r);
                    }
                    Err(why) => self.unavailable.count(why),
                }
            }
        }
        self.scratch = values;
        if bad {
            self.decode_errors += 1;
        }
        if phdb == 0 {
            if !bad {
                self.other_records += 1;
            }
            return;
        }
        let level = rec.header.dri_level;
        self.monitor_level = Some(level);
        if !self.connected {
            self.connected = true;
            self.accepted_level = self.requested_level.or(Some(level));
            events.push(DeviceEvent::Connected);
            events.push(DeviceEvent::Identified(DeviceIdentity {
                manufacturer: Some("GE Healthcare (Datex-Ohmeda)".to_string()),
                model: Some("S/5 Computer Interface".to_string()),
                serial: None,
                firmware: Some(match level_year(level) {
                    Some(y) => format!("DRI level {y}"),
                    None => format!("DRI level {level}"),
                }),
            }));
        }
        if !readings.is_empty() {
            events.push(DeviceEvent::Report(DeviceReport {
                device_time,
                readings,
            }));
        }
    }
}

impl DeviceDriver for DatexDriver {
    fn protocol(&self) -> &str {
        "datex"
    }

    fn on_connect(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        self.framer.reset();
        let c = &mut self.core;
        c.connected = false;
        c.silence_reported = false;
        c.session_start = Some(now);
        c.last_rx = None;
        // Start where the last session was answered; else at the newest level.
        c.level_idx = c
            .accepted_level
            .and_then(|l| FALLBACK_LEVELS.iter().position(|&x| x == l))
            .unwrap_or(0);
        self.send_requests(now, out);
    }

    fn on_bytes(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
        events: &mut Vec<DeviceEvent>,
        _out: &mut Vec<u8>,
    ) {
        let core = &mut self.core;
        self.framer
            .decode(bytes, |rec| core.on_record(rec, now, events));
    }

    fn on_tick(&mut self, now: Timestamp, events: &mut Vec<DeviceEvent>, out: &mut Vec<u8>) {
        let Some(start) = self.core.session_start else {
            return; // not connected yet (offline decoding)
        };
        let since_request = self.core.last_request.map_or(i64::MAX, |t| now.since(t));
        if !self.core.connected {
            if since_request >= ANSWER_WAIT_MS {
                if self.settings.level.is_none() {
                    self.core.level_idx = (self.core.level_idx + 1) % FALLBACK_LEVELS.len();
                }
                self.send_requests(now, out);
            }
        } else {
            let quiet = self.core.last_rx.map_or(0, |t| now.since(t));
            let resend = self.resend_ms();
            if quiet >= resend && since_request >= resend {
                self.send_requests(now, out);
            }
        }
        let silence_ms =
            i64::try_from(self.settings.silence_timeout.as_millis()).unwrap_or(i64::MAX);
        let quiet_since = self.core.last_rx.unwrap_or(start);
        if !self.core.silence_reported && now.since(quiet_since) >= silence_ms {
            self.core.silence_reported = true;
            self.core.connected = false;
            events.push(DeviceEvent::Disconnected {
                reason: format!(
                    "no record from the monitor for {} s",
                    self.settings.silence_timeout.as_secs()
                ),
            });
            self.send_requests(now, out);
        }
    }

    fn stats(&self) -> FrameStats {
        let mut s = self.framer.stats();
        s.decode_errors += self.core.decode_errors;
        s
    }
}
