//! The host side of a profile: frames in, one report per frame out; polls and keep-alives on
//! ticks; a silent device ends the session.

use std::sync::Arc;
use std::time::Duration;

use super::extract;
use super::framing::Framer;
use super::model::DeviceProfile;
use crate::model::Timestamp;
use crate::protocol::device::{DeviceDriver, DeviceEvent, DeviceReport, FrameStats};

/// A [`DeviceDriver`] for any device a profile describes. Protocol name `profile:<name>`.
pub struct ProfileDriver {
    profile: Arc<DeviceProfile>,
    protocol: String,
    framer: Framer,
    stats: FrameStats,
    /// Fields that carried a "no value" marker.
    unavailable: u64,
    /// When each poll is next due (empty until `on_connect`).
    polls_due: Vec<Timestamp>,
    last_heard: Option<Timestamp>,
    /// `Connected` was sent for this session.
    connected: bool,
    /// `Disconnected` was sent and nothing was heard since.
    silent: bool,
}

impl ProfileDriver {
    pub fn new(profile: Arc<DeviceProfile>) -> Self {
        ProfileDriver {
            protocol: format!("profile:{}", profile.name),
            framer: Framer::new(&profile),
            profile,
            stats: FrameStats::default(),
            unavailable: 0,
            polls_due: Vec::new(),
            last_heard: None,
            connected: false,
            silent: false,
        }
    }

    pub fn profile(&self) -> &Arc<DeviceProfile> {
        &self.profile
    }

    /// Fields the device sent as "no value" (empty, `---`, …), counted and not emitted.
    pub fn unavailable(&self) -> u64 {
        self.unavailable
    }

    /// Bytes held for a partial frame (never more than the profile's max_frame plus a few).
    pub fn buffered(&self) -> usize {
        self.framer.buffered()
    }
}

impl DeviceDriver for ProfileDriver {
    fn protocol(&self) -> &str {
        &self.protocol
    }

    fn on_connect(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        self.framer.reset();
        out.extend_from_slice(&self.profile.session.on_connect);
        self.polls_due = vec![now; self.profile.session.polls.len()];
        self.last_heard = Some(now);
        self.connected = false;
        self.silent = false;
    }

    fn on_bytes(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
        events: &mut Vec<DeviceEvent>,
        _out: &mut Vec<u8>,
    ) {
        if bytes.is_empty() {
            return;
        }
        self.last_heard = Some(now);
        self.silent = false;
        let ProfileDriver {
            profile,
            framer,
            stats,
            unavailable,
            connected,
            ..
        } = self;
        let mut decode_errors = 0u64;
        framer.feed(bytes, stats, &mut |content| {
            let d = extract::decode(&profile.frames, content);
            *unavailable += u64::from(d.unavailable);
            if !d.matched || d.errors > 0 {
                decode_errors += 1;
            }
            if d.matched && !*connected {
                *connected = true;
                events.push(DeviceEvent::Connected);
            }
            if !d.readings.is_empty() {
                events.push(DeviceEvent::Report(DeviceReport {
                    device_time: None,
                    readings: d.readings,
                }));
            }
        });
        stats.decode_errors += decode_errors;
    }

    fn on_tick(&mut self, now: Timestamp, events: &mut Vec<DeviceEvent>, out: &mut Vec<u8>) {
        for (due, poll) in self.polls_due.iter_mut().zip(&self.profile.session.polls) {
            if now >= *due {
                out.extend_from_slice(&poll.bytes);
                let every = i64::try_from(poll.every_ms).unwrap_or(i64::MAX);
                let next = due.plus_ms(every);
                // Late ticks do not burst polls to catch up.
                *due = if next <= now {
                    now.plus_ms(every)
                } else {
                    next
                };
            }
        }
        if let (Some(limit), Some(heard)) =
            (self.profile.session.silence_timeout_ms, self.last_heard)
        {
            let quiet = now.since(heard);
            if !self.silent && quiet >= i64::try_from(limit).unwrap_or(i64::MAX) {
                self.silent = true;
                self.connected = false;
                self.framer.reset();
                events.push(DeviceEvent::Disconnected {
                    reason: format!("no bytes from the device for {quiet} ms"),
                });
            }
        }
    }

    fn tick_interval(&self) -> Duration {
        let fastest = self
            .profile
            .session
            .polls
            .iter()
            .map(|p| p.every_ms)
            .min()
            .unwrap_or(250);
        Duration::from_millis(fastest.clamp(10, 250))
    }

    fn stats(&self) -> FrameStats {
        self.stats
    }
}
