//! The device side of a profile: prints the `[simulate]` frames with values from their traces.

use std::sync::Arc;
use std::time::Duration;

use super::framing::encode;
use super::model::{unescape, DeviceProfile, SimulateSpec};
use super::ProfileError;
use crate::model::Timestamp;
use crate::protocol::device::{DeviceSimulator, SimTrace};

/// A named trace and how many decimals it prints with.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSpec {
    pub name: String,
    pub trace: SimTrace,
    pub decimals: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Bytes(Vec<u8>),
    /// Index into the simulation's traces.
    Trace(usize),
}

/// A frame template: text with `{trace}` placeholders (`{{` and `}}` for braces, escapes as in
/// poll strings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `s`; `traces` are the names placeholders may use.
    pub fn parse(s: &str, traces: &[&str]) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = s;
        let flush = |literal: &mut String, parts: &mut Vec<Part>| -> Result<(), String> {
            if !literal.is_empty() {
                parts.push(Part::Bytes(unescape(literal)?));
                literal.clear();
            }
            Ok(())
        };
        while let Some(c) = rest.chars().next() {
            if let Some(r) = rest.strip_prefix("{{") {
                literal.push('{');
                rest = r;
            } else if let Some(r) = rest.strip_prefix("}}") {
                literal.push('}');
                rest = r;
            } else if c == '{' {
                let inner = rest.get(1..).unwrap_or("");
                let Some(close) = inner.find('}') else {
                    return Err(format!("`{s}` has a `{{` with no `}}`"));
                };
                let name = inner.get(..close).unwrap_or("").trim();
                let Some(i) = traces.iter().position(|t| *t == name) else {
                    return Err(format!(
                        "`{{{name}}}` names no trace (known: {})",
                        if traces.is_empty() {
                            "none".to_string()
                        } else {
                            traces.join(", ")
                        }
                    ));
                };
                flush(&mut literal, &mut parts)?;
                parts.push(Part::Trace(i));
                rest = inner.get(close + 1..).unwrap_or("");
            } else if c == '}' {
                return Err(format!("`{s}` has a `}}` with no `{{` (write `}}}}`)"));
            } else {
                literal.push(c);
                rest = rest.get(c.len_utf8()..).unwrap_or("");
            }
        }
        flush(&mut literal, &mut parts)?;
        Ok(Template { parts })
    }

    /// The frame content `elapsed_ms` after the simulator started.
    pub fn render(&self, traces: &[TraceSpec], elapsed_ms: i64) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.parts {
            match p {
                Part::Bytes(b) => out.extend_from_slice(b),
                Part::Trace(i) => {
                    if let Some(t) = traces.get(*i) {
                        let mut v = t.trace.at(elapsed_ms, t.decimals);
                        if v == 0.0 {
                            v = 0.0; // no "-0"
                        }
                        let d = usize::try_from(t.decimals).unwrap_or(0);
                        out.extend_from_slice(format!("{v:.d$}").as_bytes());
                    }
                }
            }
        }
        out
    }
}

/// A simulated device for a profile: every `interval_ms` (or on each poll) it prints the
/// profile's `[simulate]` frames, framed and checksummed, each followed by its noise bytes.
pub struct ProfileSimulator {
    profile: Arc<DeviceProfile>,
    started: Option<Timestamp>,
    next_due: Option<Timestamp>,
    /// The last host bytes, to spot a poll split over reads.
    heard: Vec<u8>,
    rng: u64,
    /// Frames that could not be encoded (a trace grew past max_frame).
    pub dropped: u64,
}

impl ProfileSimulator {
    /// A simulator for `profile`; fails when it has no `[simulate]` section.
    pub fn new(profile: Arc<DeviceProfile>) -> Result<Self, ProfileError> {
        if profile.simulate.is_none() {
            return Err(ProfileError::NoSimulation {
                profile: profile.name.clone(),
            });
        }
        Ok(ProfileSimulator {
            profile,
            started: None,
            next_due: None,
            heard: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
            dropped: 0,
        })
    }

    fn spec(&self) -> Option<&SimulateSpec> {
        self.profile.simulate.as_ref()
    }

    fn next_noise(&mut self, from: u8, to: u8) -> u8 {
        // xorshift64: deterministic, good enough to look like samples.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let span = u64::from(to.saturating_sub(from)) + 1;
        from.wrapping_add((self.rng % span) as u8)
    }

    fn print(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        let start = *self.started.get_or_insert(now);
        let elapsed = now.since(start);
        let profile = Arc::clone(&self.profile);
        let Some(spec) = profile.simulate.as_ref() else {
            return;
        };
        for t in &spec.frames {
            let content = t.render(&spec.traces, elapsed);
            if encode(&profile, &content, out).is_err() {
                self.dropped += 1;
            }
            if let Some(n) = spec.noise {
                for _ in 0..n.count {
                    let b = self.next_noise(n.from, n.to);
                    out.push(b);
                }
            }
        }
    }
}

impl DeviceSimulator for ProfileSimulator {
    fn on_bytes(&mut self, bytes: &[u8], now: Timestamp, out: &mut Vec<u8>) {
        let Some(spec) = self.spec() else {
            return;
        };
        if !spec.answer_poll {
            return;
        }
        let longest = self
            .profile
            .session
            .polls
            .iter()
            .map(|p| p.bytes.len())
            .max()
            .unwrap_or(0);
        let mut answer = false;
        for &b in bytes {
            self.heard.push(b);
            let found = self
                .profile
                .session
                .polls
                .iter()
                .any(|p| !p.bytes.is_empty() && self.heard.ends_with(&p.bytes));
            if found {
                answer = true;
                self.heard.clear();
            } else if self.heard.len() > longest {
                // Keep only what could still be the start of a poll.
                let cut = self.heard.len() - longest;
                self.heard.drain(..cut);
            }
        }
        if answer {
            self.print(now, out);
        }
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        let Some(spec) = self.spec() else {
            return;
        };
        if spec.answer_poll {
            self.started.get_or_insert(now);
            return;
        }
        let interval = i64::try_from(spec.interval_ms).unwrap_or(i64::MAX);
        let due = *self.next_due.get_or_insert(now);
        if now >= due {
            self.print(now, out);
            // Fell far behind (a paused test clock): carry on from now, do not burst.
            let next = due.plus_ms(interval);
            self.next_due = Some(if next <= now {
                now.plus_ms(interval)
            } else {
                next
            });
        }
    }

    fn tick_interval(&self) -> Duration {
        let interval = self.spec().map_or(100, |s| s.interval_ms);
        Duration::from_millis(interval.clamp(10, 100))
    }
}
