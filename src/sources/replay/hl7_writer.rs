//! A tiny HL7 v2 message builder for the recording generators (`demo`, `physionet`).
//!
//! It owns joining fields into segments and segments into messages with the standard
//! delimiters (`|^~\&`), escaping free text, and formatting timestamps. Callers pass fields
//! that are already encoded (components joined with `^`); only text that came from data (names,
//! drug labels, comments) goes through [`escape`]. It does not parse or validate.

use crate::model::Timestamp;

/// The encoding characters every generated message declares in MSH-2.
pub const ENCODING: &str = "^~\\&";

/// Escapes the delimiters in free text so it stays one field component.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '~' => out.push_str("\\R\\"),
            '\\' => out.push_str("\\E\\"),
            '&' => out.push_str("\\T\\"),
            // A carriage return would end the segment.
            '\r' => out.push_str("\\X0D\\"),
            '\n' => out.push_str("\\X0A\\"),
            c => out.push(c),
        }
    }
    out
}

/// An HL7 DTM in UTC with an explicit offset, to the second: `20260105083000+0000`.
pub fn ts(t: Timestamp) -> String {
    match t.to_datetime() {
        Some(dt) => dt.format("%Y%m%d%H%M%S+0000").to_string(),
        // Out of chrono's range: cannot happen for generated times, and an empty field is valid.
        None => String::new(),
    }
}

/// An HL7 date (`YYYYMMDD`) in UTC.
pub fn date(t: Timestamp) -> String {
    match t.to_datetime() {
        Some(dt) => dt.format("%Y%m%d").to_string(),
        None => String::new(),
    }
}

/// Builds one message: segments joined by `\r`, each ending in `\r`.
#[derive(Debug, Default, Clone)]
pub struct MessageBuilder {
    out: String,
}

impl MessageBuilder {
    /// Starts a message with `MSH|^~\&|` and the fields from MSH-3 on.
    pub fn msh(fields_from_3: &[&str]) -> Self {
        let mut b = MessageBuilder {
            out: String::with_capacity(1024),
        };
        b.out.push_str("MSH|");
        b.out.push_str(ENCODING);
        b.push_fields(fields_from_3);
        b.out.push('\r');
        b
    }

    /// Appends a segment; trailing empty fields are dropped as senders usually do.
    pub fn segment(&mut self, id: &str, fields: &[&str]) -> &mut Self {
        self.out.push_str(id);
        self.push_fields(fields);
        self.out.push('\r');
        self
    }

    fn push_fields(&mut self, fields: &[&str]) {
        let used = fields
            .iter()
            .rposition(|f| !f.is_empty())
            .map_or(0, |i| i + 1);
        for f in fields.iter().take(used) {
            self.out.push('|');
            self.out.push_str(f);
        }
    }

    /// A final numeric OBX: set id, coded identifier (`code^text^system`), value, unit and
    /// observation time (OBX-14), status `F`.
    pub fn final_nm_obx(
        &mut self,
        set_id: usize,
        code: &str,
        value: &str,
        unit: &str,
        when: &str,
    ) -> &mut Self {
        let set_id = set_id.to_string();
        self.segment(
            "OBX",
            &[
                &set_id, "NM", code, "", value, unit, "", "", "", "", "F", "", "", when,
            ],
        )
    }

    /// An OBX with the patient's body weight (LOINC 29463-7, kg), as ADT messages carry it.
    pub fn weight_obx(&mut self, kg: &str, when: &str) -> &mut Self {
        self.final_nm_obx(1, "29463-7^Body weight^LN", kg, "kg", when)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Formats a number the way devices print it: `decimals` places, no negative zero.
pub fn num(value: f64, decimals: usize) -> String {
    let s = format!("{value:.decimals$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_delimiter_and_line_breaks() {
        assert_eq!(escape(r"a|b^c~d\e&f"), r"a\F\b\S\c\R\d\E\e\T\f");
        assert_eq!(escape("x\ry"), r"x\X0D\y");
        assert_eq!(escape("Norepinephrine"), "Norepinephrine");
    }

    #[test]
    fn builds_segments_and_trims_trailing_empty_fields() {
        let mut b = MessageBuilder::msh(&["APP", "FAC", "", "", "20260105000000+0000"]);
        b.segment("PID", &["", "", "M1^^^HOSP^MR", "", ""]);
        b.segment("PID", &["", "", ""]);
        assert_eq!(
            b.finish(),
            "MSH|^~\\&|APP|FAC|||20260105000000+0000\rPID|||M1^^^HOSP^MR\rPID\r"
        );
    }

    #[test]
    fn timestamps_are_utc_with_offset_and_numbers_have_no_negative_zero() {
        let t = Timestamp::parse_rfc3339("2026-01-05T08:30:15.900Z").unwrap();
        assert_eq!(ts(t), "20260105083015+0000");
        assert_eq!(date(t), "20260105");
        assert_eq!(num(-0.04, 1), "0.0");
        assert_eq!(num(-1.26, 1), "-1.3");
        assert_eq!(num(37.26, 1), "37.3");
    }
}
