//! Turning one frame's content into readings, by the profile's frame types.

use std::borrow::Cow;

use regex::Captures;

use super::model::{Extract, FieldSpec, FrameSpec, Location, Matcher, ValueKind};
use crate::protocol::device::{DeviceReading, ReadingStatus, ReadingValue};

/// What one frame decoded to.
#[derive(Debug, Default)]
pub struct Decoded {
    /// A frame type took the frame.
    pub matched: bool,
    /// Name of that frame type.
    pub frame: Option<String>,
    pub readings: Vec<DeviceReading>,
    /// Fields that carried a "no value" marker (counted, not emitted).
    pub unavailable: u32,
    /// Fields that were required but absent, or not a number.
    pub errors: u32,
    /// The first of those faults, for messages.
    pub first_error: Option<String>,
}

impl Decoded {
    fn error(&mut self, msg: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(msg());
        }
    }
}

/// The frame's content as matched: the whole text, the text after the key, and the captures of
/// a regex frame.
struct View<'t> {
    text: &'t str,
    body: &'t str,
    captures: Option<Captures<'t>>,
}

impl<'t> View<'t> {
    fn get(&self, loc: &'t Location, extract: &Extract) -> Option<Cow<'t, str>> {
        match loc {
            Location::Index(i) => match extract {
                Extract::Delimited { separator } => self
                    .body
                    .split(separator.as_str())
                    .nth(*i)
                    .map(Cow::Borrowed),
                _ => None,
            },
            Location::Columns { start, width } => {
                let bytes = self.text.as_bytes();
                if *start >= bytes.len() {
                    return None;
                }
                let end = start.saturating_add(*width).min(bytes.len());
                bytes.get(*start..end).map(String::from_utf8_lossy)
            }
            Location::Capture(name) => self
                .captures
                .as_ref()
                .and_then(|c| c.name(name))
                .map(|m| Cow::Borrowed(m.as_str())),
            Location::Constant(v) => Some(Cow::Borrowed(v.as_str())),
        }
    }
}

/// Decodes `content` with the first frame type that takes it.
pub fn decode(frames: &[FrameSpec], content: &[u8]) -> Decoded {
    let text = String::from_utf8_lossy(content);
    let text: &str = &text;
    let mut out = Decoded::default();
    for f in frames {
        let body = match &f.matcher {
            Matcher::Any => Some(text),
            Matcher::Prefix(p) => text.strip_prefix(p.as_str()),
            Matcher::Pattern(re) => re.find(text).and_then(|m| text.get(m.end()..)),
        };
        let Some(body) = body else {
            continue;
        };
        let captures = match &f.extract {
            Extract::Regex(re) => match re.captures(text) {
                Some(c) => Some(c),
                None => continue,
            },
            _ => None,
        };
        let view = View {
            text,
            body,
            captures,
        };
        out.matched = true;
        out.frame = Some(f.name.clone());
        let frame_channel = f
            .channel
            .as_ref()
            .and_then(|c| view.get(c, &f.extract))
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        for field in &f.fields {
            field_reading(&view, f, field, frame_channel.as_deref(), &mut out);
        }
        return out;
    }
    out
}

fn field_reading(
    view: &View<'_>,
    frame: &FrameSpec,
    field: &FieldSpec,
    frame_channel: Option<&str>,
    out: &mut Decoded,
) {
    let Some(raw) = view.get(&field.location, &frame.extract) else {
        if !field.optional {
            out.error(|| format!("frame `{}`: field {} is missing", frame.name, field.label));
        }
        return;
    };
    let raw = raw.trim();
    if raw.is_empty() || field.no_value.iter().any(|n| n == raw) {
        out.unavailable += 1;
        return;
    }
    let value = match field.kind {
        ValueKind::Text => ReadingValue::Text(raw.to_string()),
        ValueKind::Number => match raw.parse::<f64>() {
            Ok(v) if v.is_finite() => {
                let v = v * field.scale + field.offset;
                if !v.is_finite() {
                    out.unavailable += 1;
                    return;
                }
                ReadingValue::Num(v)
            }
            // NaN / inf spelled out by the device: no value.
            Ok(_) => {
                out.unavailable += 1;
                return;
            }
            Err(_) => {
                out.error(|| {
                    format!(
                        "frame `{}`: {} `{raw}` is not a number",
                        frame.name, field.label
                    )
                });
                return;
            }
        },
    };
    let channel = match &field.channel {
        Some(loc) => view
            .get(loc, &frame.extract)
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty()),
        None => frame_channel.map(str::to_string),
    };
    out.readings.push(DeviceReading {
        code: field.code.clone(),
        value,
        unit: field.unit.clone(),
        time: None,
        channel,
        label: Some(field.label.clone()),
        status: ReadingStatus::Valid,
    });
}
