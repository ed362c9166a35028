//! MQTT topic filters (MQTT 3.1.1 §4.7) and topic maps: which topic levels name the unit, the
//! bed, the device and the patient. Pure functions, no I/O.
//!
//! A topic map is a topic pattern, level by level:
//! - a literal level must equal the topic's level (`icu`);
//! - `{unit}`, `{bed}`, `{device}`, `{patient}` take the whole level as that field;
//! - `+` matches any one level and takes nothing;
//! - `#`, last, matches whatever levels remain (none included).
//!
//! `icu/{unit}/{bed}/{device}/#` maps `icu/ICU-A/B07/mon-7/vitals` to unit `ICU-A`, bed `B07`,
//! device `mon-7`. A placeholder is always a whole level (`bed-{bed}` is refused), each at most
//! once.

use std::fmt;

/// What a topic map can take from a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicField {
    Unit,
    Bed,
    Device,
    Patient,
}

impl TopicField {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "unit" => Some(TopicField::Unit),
            "bed" => Some(TopicField::Bed),
            "device" => Some(TopicField::Device),
            "patient" => Some(TopicField::Patient),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TopicField::Unit => "unit",
            TopicField::Bed => "bed",
            TopicField::Device => "device",
            TopicField::Patient => "patient",
        }
    }
}

impl fmt::Display for TopicField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum MapLevel {
    Literal(String),
    Any,
    Field(TopicField),
    Rest,
}

/// A parsed topic map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMap {
    levels: Vec<MapLevel>,
}

/// What a topic map took from one topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicFields {
    pub unit: Option<String>,
    pub bed: Option<String>,
    pub device: Option<String>,
    pub patient: Option<String>,
}

/// Checks a subscription filter against MQTT 3.1.1 §4.7: non-empty, no NUL, at most 65535
/// bytes, `+` and `#` each a whole level, `#` only last.
pub fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("an empty filter".into());
    }
    if filter.len() > 65_535 {
        return Err(format!("{} bytes, over MQTT's 65535", filter.len()));
    }
    if filter.contains('\0') {
        return Err("contains a NUL character".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len().saturating_sub(1);
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != last) {
            return Err(format!(
                "level {} {level:?}: '#' must be a whole level and the last one",
                i + 1
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!(
                "level {} {level:?}: '+' must be a whole level",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Whether `topic` matches `filter` (a valid filter). Topics starting with `$` are not matched
/// by filters starting with a wildcard (§4.7.2).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl TopicMap {
    /// Parses a topic map; the error says which level is wrong and why.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("an empty topic_map".into());
        }
        let parts: Vec<&str> = pattern.split('/').collect();
        let last = parts.len().saturating_sub(1);
        let mut levels = Vec::with_capacity(parts.len());
        let mut seen: Vec<TopicField> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let at = || format!("level {} {part:?}", i + 1);
            let level = if *part == "#" {
                if i != last {
                    return Err(format!("{}: '#' must be the last level", at()));
                }
                MapLevel::Rest
            } else if *part == "+" {
                MapLevel::Any
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let Some(field) = TopicField::parse(name) else {
                    return Err(format!(
                        "{}: {{{name}}} is not a placeholder (use {{unit}}, {{bed}}, {{device}} or {{patient}})",
                        at()
                    ));
                };
                if seen.contains(&field) {
                    return Err(format!("{}: {field} appears twice", at()));
                }
                seen.push(field);
                MapLevel::Field(field)
            } else if part.contains(['{', '}']) {
                return Err(format!(
                    "{}: a placeholder must be a whole level, like {{bed}}",
                    at()
                ));
            } else if part.contains(['+', '#']) {
                return Err(format!("{}: '+' and '#' must be whole levels", at()));
            } else {
                MapLevel::Literal((*part).to_string())
            };
            levels.push(level);
        }
        Ok(TopicMap { levels })
    }

    /// The fields this map takes.
    pub fn fields(&self) -> impl Iterator<Item = TopicField> + '_ {
        self.levels.iter().filter_map(|l| match l {
            MapLevel::Field(f) => Some(*f),
            _ => None,
        })
    }

    /// Takes the fields from a topic; the error says where the topic does not fit the map.
    pub fn apply(&self, topic: &str) -> Result<TopicFields, String> {
        let mut out = TopicFields::default();
        let mut parts = topic.split('/');
        for (i, level) in self.levels.iter().enumerate() {
            if *level == MapLevel::Rest {
                return Ok(out);
            }
            let Some(part) = parts.next() else {
                return Err(format!(
                    "the topic has {i} levels; the topic_map needs at least {}",
                    self.levels.iter().filter(|l| **l != MapLevel::Rest).count()
                ));
            };
            match level {
                MapLevel::Literal(want) if want != part => {
                    return Err(format!(
                        "level {} is {part:?} where the topic_map has {want:?}",
                        i + 1
                    ))
                }
                MapLevel::Field(f) => {
                    if part.trim().is_empty() {
                        return Err(format!("level {} for {f} is empty", i + 1));
                    }
                    let v = Some(part.to_string());
                    match f {
                        TopicField::Unit => out.unit = v,
                        TopicField::Bed => out.bed = v,
                        TopicField::Device => out.device = v,
                        TopicField::Patient => out.patient = v,
                    }
                }
                _ => {}
            }
        }
        match parts.next() {
            None => Ok(out),
            Some(_) => Err(format!(
                "the topic has more than the topic_map's {} levels (end the map with /# to allow more)",
                self.levels.len()
            )),
        }
    }

    /// Whether topics matching `filter` (a valid filter) can fit this map: an error names the
    /// first level where they never can.
    pub fn check_against(&self, filter: &str) -> Result<(), String> {
        let f: Vec<&str> = filter.split('/').collect();
        let n = f.len().max(self.levels.len());
        for i in 0..n {
            let (fl, ml) = (f.get(i).copied(), self.levels.get(i));
            match (fl, ml) {
                (_, Some(MapLevel::Rest)) | (Some("#"), _) => return Ok(()),
                (Some(a), Some(MapLevel::Literal(b))) if a != "+" && a != b => {
                    return Err(format!(
                        "level {}: the filter has {a:?} where the topic_map has {b:?}, so no topic fits",
                        i + 1
                    ))
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "the topic_map has more levels ({}) than topics matching the filter ({})",
                        self.levels.len(),
                        f.len()
                    ))
                }
                (Some(_), None) => {
                    return Err(format!(
                        "topics matching the filter have {} levels, the topic_map only {} (end it with /#)",
                        f.len(),
                        self.levels.len()
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_mqtt_3_1_1() {
        for ok in [
            "#",
            "+",
            "a/b",
            "icu/+/+/+/vitals",
            "a/#",
            "+/+",
            "/",
            "$SYS/#",
        ] {
            assert!(check_filter(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("a/#/b", "last"),
            ("a#", "whole level"),
            ("a/b+", "whole level"),
            ("a\0b", "NUL"),
        ] {
            let e = check_filter(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn matching_follows_the_spec_examples() {
        assert!(filter_matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1"
        ));
        assert!(filter_matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon"
        ));
        assert!(filter_matches("sport/#", "sport"));
        assert!(filter_matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!filter_matches(
            "sport/tennis/+",
            "sport/tennis/player1/ranking"
        ));
        assert!(filter_matches("+/+", "/finance"));
        assert!(filter_matches("/+", "/finance"));
        assert!(!filter_matches("+", "/finance"));
        assert!(!filter_matches("#", "$SYS/broker"));
        assert!(filter_matches("$SYS/#", "$SYS/broker"));
        assert!(!filter_matches("icu/+/+/+/vitals", "icu/A/B/C/alarms"));
    }

    #[test]
    fn a_topic_map_takes_unit_bed_device_and_patient() {
        let m = TopicMap::parse("icu/{unit}/{bed}/{device}/#").unwrap();
        let f = m.apply("icu/ICU-A/B07/mon-7/vitals").unwrap();
        assert_eq!(f.unit.as_deref(), Some("ICU-A"));
        assert_eq!(f.bed.as_deref(), Some("B07"));
        assert_eq!(f.device.as_deref(), Some("mon-7"));
        assert_eq!(f.patient, None);
        let m = TopicMap::parse("ward/+/{patient}").unwrap();
        assert_eq!(
            m.apply("ward/x/V-1").unwrap().patient.as_deref(),
            Some("V-1")
        );
        let fields: Vec<_> = m.fields().collect();
        assert_eq!(fields, [TopicField::Patient]);
    }

    #[test]
    fn topics_that_do_not_fit_say_where() {
        let m = TopicMap::parse("icu/{unit}/{bed}").unwrap();
        assert!(m
            .apply("lab/A/B")
            .unwrap_err()
            .contains("level 1 is \"lab\""));
        assert!(m.apply("icu/A").unwrap_err().contains("needs at least 3"));
        assert!(m.apply("icu/A/B/C").unwrap_err().contains("more than"));
        assert!(m.apply("icu//B").unwrap_err().contains("{unit} is empty"));
    }

    #[test]
    fn bad_maps_are_refused_with_the_level() {
        for (bad, why) in [
            ("icu/{room}", "{room} is not a placeholder"),
            ("icu/bed-{bed}", "whole level"),
            ("icu/{bed}/{bed}", "appears twice"),
            ("icu/#/x", "last level"),
            ("icu/a+", "whole levels"),
            ("", "empty"),
        ] {
            let e = TopicMap::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn maps_are_checked_against_their_filter() {
        let m = TopicMap::parse("icu/{unit}/{bed}/{device}/#").unwrap();
        assert!(m.check_against("icu/+/+/+/vitals").is_ok());
        assert!(m.check_against("icu/#").is_ok());
        assert!(m
            .check_against("lab/+/+/+/vitals")
            .unwrap_err()
            .contains("level 1"));
        let short = TopicMap::parse("icu/{unit}").unwrap();
        assert!(short
            .check_against("icu/+/+")
            .unwrap_err()
            .contains("only 2"));
        let long = TopicMap::parse("icu/{unit}/{bed}").unwrap();
        assert!(long
            .check_against("icu/+")
            .unwrap_err()
            .contains("more levels"));
    }
}
