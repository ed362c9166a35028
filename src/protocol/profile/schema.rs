//! The profile file as written: serde shapes with spans, read so that every fault is found.
//!
//! Serde stops at the first fault. To report them all, [`parse`] reads the document into
//! toml's spanned tree, deserializes, and on a fault removes the offending entry (the deepest
//! key or array element whose span holds the fault) and tries again. Every key is optional
//! here; what a profile must have is checked in `model.rs`, which skips what was removed so a
//! bad value is not also reported as missing.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeArray, DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::config::problem::Problem;

/// A document cannot have more faults than this worth reporting in one pass.
const MAX_RECOVERIES: usize = 200;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub name: Option<Spanned<String>>,
    pub description: Option<String>,
    pub serial: Option<Spanned<RawSerial>>,
    pub framing: Option<Spanned<RawFraming>>,
    pub checksum: Option<Spanned<RawChecksum>>,
    #[serde(default)]
    pub skip: Vec<Spanned<RawSkip>>,
    pub session: Option<Spanned<RawSession>>,
    #[serde(default, rename = "frame")]
    pub frames: Vec<Spanned<RawFrame>>,
    pub simulate: Option<Spanned<RawSimulate>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSerial {
    pub baud: Option<Spanned<u32>>,
    pub data_bits: Option<Spanned<u8>>,
    pub parity: Option<RawParity>,
    pub stop_bits: Option<Spanned<u8>>,
    pub flow_control: Option<RawFlowControl>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawParity {
    None,
    Even,
    Odd,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawFlowControl {
    None,
    RtsCts,
    XonXoff,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFraming {
    #[serde(rename = "type")]
    pub kind: Option<RawFramingKind>,
    pub terminator: Option<Spanned<RawTerminator>>,
    pub start: Option<Spanned<u8>>,
    pub end: Option<Spanned<u8>>,
    pub length_bytes: Option<Spanned<u8>>,
    pub byte_order: Option<Spanned<RawByteOrder>>,
    pub length_includes_header: Option<Spanned<bool>>,
    pub max_frame: Option<Spanned<u32>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawFramingKind {
    Line,
    StxEtx,
    LengthPrefix,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawTerminator {
    #[serde(alias = "CR")]
    Cr,
    #[serde(alias = "LF")]
    Lf,
    #[serde(alias = "CRLF")]
    Crlf,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawByteOrder {
    Big,
    Little,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChecksum {
    #[serde(rename = "type")]
    pub kind: Option<RawChecksumKind>,
    pub encoding: Option<Spanned<RawEncoding>>,
    pub position: Option<Spanned<RawPosition>>,
    pub covers_start: Option<Spanned<bool>>,
    pub covers_end: Option<Spanned<bool>>,
    pub byte_order: Option<Spanned<RawByteOrder>>,
}

#[derive(Deserialize, Clone, Copy)]
pub(super) enum RawChecksumKind {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "sum8")]
    Sum8,
    #[serde(rename = "xor8")]
    Xor8,
    #[serde(rename = "crc16-ccitt", alias = "crc16_ccitt")]
    Crc16Ccitt,
    #[serde(rename = "crc16-xmodem", alias = "crc16_xmodem")]
    Crc16Xmodem,
    #[serde(rename = "crc16-x25", alias = "crc16_x25")]
    Crc16X25,
    #[serde(rename = "crc16-modbus", alias = "crc16_modbus")]
    Crc16Modbus,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawEncoding {
    Hex,
    Binary,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawPosition {
    BeforeEnd,
    AfterEnd,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSkip {
    pub from: Option<Spanned<u8>>,
    pub to: Option<Spanned<u8>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSession {
    pub on_connect: Option<Spanned<String>>,
    pub silence_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub poll: Vec<Spanned<RawPoll>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoll {
    pub send: Option<Spanned<String>>,
    pub every_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFrame {
    pub name: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub pattern: Option<Spanned<String>>,
    pub extract: Option<Spanned<RawExtract>>,
    pub separator: Option<Spanned<String>>,
    pub field_count: Option<Spanned<u32>>,
    pub regex: Option<Spanned<String>>,
    pub channel: Option<Spanned<RawLocation>>,
    pub no_value: Option<Vec<String>>,
    #[serde(default, rename = "field")]
    pub fields: Vec<Spanned<RawField>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawExtract {
    Delimited,
    Fixed,
    Regex,
}

/// Where a value sits in a frame: exactly one of these (checked in `model.rs`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocation {
    pub index: Option<Spanned<u32>>,
    pub start: Option<Spanned<u32>>,
    pub width: Option<Spanned<u32>>,
    pub capture: Option<Spanned<String>>,
    /// A constant (channels only).
    pub value: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawField {
    pub index: Option<Spanned<u32>>,
    pub start: Option<Spanned<u32>>,
    pub width: Option<Spanned<u32>>,
    pub capture: Option<Spanned<String>>,
    pub code: Option<Spanned<String>>,
    pub unit: Option<Spanned<String>>,
    pub kind: Option<Spanned<RawValueKind>>,
    pub scale: Option<Spanned<f64>>,
    pub offset: Option<Spanned<f64>>,
    pub no_value: Option<Vec<String>>,
    pub channel: Option<Spanned<RawLocation>>,
    pub label: Option<String>,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawValueKind {
    Number,
    Text,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSimulate {
    pub interval_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub frames: Vec<Spanned<String>>,
    #[serde(default)]
    pub trace: BTreeMap<String, Spanned<RawTrace>>,
    pub noise: Option<Spanned<RawNoise>>,
    #[serde(default)]
    pub answer_poll: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrace {
    pub base: Option<f64>,
    pub swing: Option<f64>,
    pub period_ms: Option<Spanned<i64>>,
    pub decimals: Option<Spanned<i32>>,
    pub step: Option<f64>,
    pub step_after_ms: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNoise {
    pub count: Option<Spanned<u32>>,
    pub from: Option<Spanned<u8>>,
    pub to: Option<Spanned<u8>>,
}

/// What the recovering parse removed, so the checks do not report it twice.
#[derive(Default)]
pub(super) struct Removed {
    /// (span of the table that held the key, key).
    keys: Vec<(Range<usize>, String)>,
    /// Spans of array elements (tables emptied in place).
    elements: Vec<Range<usize>>,
}

impl Removed {
    /// Was `key` of the table at `table` removed for a fault already reported?
    pub fn key(&self, table: &Range<usize>, key: &str) -> bool {
        self.keys.iter().any(|(t, k)| t == table && k == key)
    }

    /// Was the array element (a table) at `span` emptied for a fault already reported?
    pub fn element(&self, span: &Range<usize>) -> bool {
        self.elements.iter().any(|s| s == span)
    }
}

/// A parsed document: the raw profile, the span of the whole document, what was removed and
/// the problems found.
pub(super) struct Parsed {
    pub raw: Option<RawProfile>,
    pub root: Range<usize>,
    pub removed: Removed,
    pub problems: Vec<Problem>,
}

/// Reads a profile document, reporting every syntax and shape fault (unknown keys, wrong
/// types, unknown enumeration values) with its line.
pub(super) fn parse(file: &str, src: &str) -> Parsed {
    let (table, errors) = DeTable::parse_recoverable(src);
    let root_span = table.span();
    let mut parsed = Parsed {
        raw: None,
        root: root_span.clone(),
        removed: Removed::default(),
        problems: Vec::new(),
    };
    if !errors.is_empty() {
        parsed.problems = errors
            .iter()
            .map(|e| Problem::from_toml(file, src, e))
            .collect();
        return parsed;
    }
    let mut root = Spanned::new(root_span, DeValue::Table(table.into_inner()));
    for _ in 0..MAX_RECOVERIES {
        match RawProfile::deserialize(ValueDeserializer::from(root.clone())) {
            Ok(raw) => {
                parsed.raw = Some(raw);
                return parsed;
            }
            Err(e) => {
                parsed.problems.push(Problem::from_toml(file, src, &e));
                let Some(span) = e.span() else {
                    return parsed;
                };
                if !remove_at(&mut root, &span, &mut parsed.removed) {
                    return parsed;
                }
            }
        }
    }
    parsed
}

enum Step {
    Key(String),
    Index(usize),
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// The path to the deepest key or element whose key or value span holds `target`.
fn deepest(
    value: &Spanned<DeValue<'_>>,
    target: &Range<usize>,
    path: &mut Vec<Step>,
    best: &mut Option<Vec<Step>>,
) {
    let better = |path: &Vec<Step>, best: &Option<Vec<Step>>| {
        best.as_ref().is_none_or(|b| path.len() > b.len())
    };
    match value.get_ref() {
        DeValue::Table(t) => {
            for (k, v) in t.iter() {
                path.push(Step::Key(k.get_ref().to_string()));
                if (contains(&k.span(), target) || contains(&v.span(), target))
                    && better(path, best)
                {
                    *best = Some(clone_path(path));
                }
                deepest(v, target, path, best);
                path.pop();
            }
        }
        DeValue::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                path.push(Step::Index(i));
                if contains(&v.span(), target) && better(path, best) {
                    *best = Some(clone_path(path));
                }
                deepest(v, target, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

fn clone_path(path: &[Step]) -> Vec<Step> {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => Step::Key(k.clone()),
            Step::Index(i) => Step::Index(*i),
        })
        .collect()
}

/// Removes the entry the fault at `target` lies in. False when there is nothing to remove (the
/// fault is about the document itself).
fn remove_at(
    root: &mut Spanned<DeValue<'_>>,
    target: &Range<usize>,
    removed: &mut Removed,
) -> bool {
    let mut best = None;
    deepest(root, target, &mut Vec::new(), &mut best);
    let Some(path) = best else {
        return false;
    };
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = root;
    for step in parents {
        let next = match (node.get_mut(), step) {
            (DeValue::Table(t), Step::Key(k)) => t
                .iter_mut()
                .find(|(kk, _)| kk.get_ref().as_ref() == k.as_str())
                .map(|(_, v)| v),
            (DeValue::Array(a), Step::Index(i)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    let parent_span = node.span();
    match (node.get_mut(), last) {
        (DeValue::Table(t), Step::Key(k)) => {
            removed.keys.push((parent_span, k.clone()));
            t.remove(k.as_str()).is_some()
        }
        (DeValue::Array(a), Step::Index(i)) => {
            let Some(elem) = a.get(*i) else {
                return false;
            };
            let elem_span = elem.span();
            if matches!(elem.get_ref(), DeValue::Table(t) if !t.is_empty()) {
                // Arrays of tables keep their shape: the element becomes an empty table that the
                // checks skip.
                if let Some(e) = a.get_mut(*i) {
                    *e = Spanned::new(elem_span.clone(), DeValue::Table(DeTable::new()));
                }
                removed.elements.push(elem_span);
            } else {
                let mut kept = DeArray::new();
                for (j, v) in a.iter().enumerate() {
                    if j != *i {
                        kept.push(v.clone());
                    }
                }
                *a = kept;
            }
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_fault_is_reported_once() {
        let src = "name = 'x'\nbogus = 1\n[framing]\ntype = 'line'\nmax_frame = 'big'\n\
                   [[frame]]\nname = 'a'\nextract = 'nope'\n[[frame.field]]\nindex = 1\nwat = 2\n\
                   [[frame]]\nname = 'b'\nhuh = 3\n";
        let p = parse("t.toml", src);
        let shown: Vec<String> = p.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown.len(), 5, "{shown:#?}");
        assert!(shown[0].starts_with("t.toml:2:") && shown[0].contains("bogus"));
        assert!(shown
            .iter()
            .any(|s| s.starts_with("t.toml:5:") && s.contains("big")));
        assert!(shown
            .iter()
            .any(|s| s.starts_with("t.toml:8:") && s.contains("nope")));
        assert!(shown
            .iter()
            .any(|s| s.starts_with("t.toml:11:") && s.contains("wat")));
        assert!(shown
            .iter()
            .any(|s| s.starts_with("t.toml:14:") && s.contains("huh")));
        let raw = p.raw.expect("recovered");
        assert_eq!(raw.frames.len(), 2);
        assert!(raw.framing.is_some_and(|f| f.get_ref().max_frame.is_none()));
    }

    #[test]
    fn syntax_errors_stop_with_their_line() {
        let p = parse("t.toml", "name = 'x'\n[framing\n");
        assert!(p.raw.is_none());
        assert_eq!(p.problems.first().and_then(|p| p.line), Some(2));
    }
}
