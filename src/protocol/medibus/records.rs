//! The data of MEDIBUS responses: fixed-width data records, alarm records, text messages, the
//! device identification and the date and time. Parsers for the driver, writers for the
//! simulator; both sides of one layout live together so they cannot drift apart.

use chrono::{Datelike, NaiveDate, Timelike};
use thiserror::Error;

use super::codes::{month_abbrev, month_number, ALARM_PHRASE_LEN, ALARM_RECORD_LEN};
use super::frame::{hex_pair, parse_hex_pair, ETX};
use crate::model::Timestamp;

/// Why the data of a response could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MedibusError {
    /// The data are not a whole number of fixed-width records.
    #[error("{len} data bytes are not a whole number of {record}-byte records")]
    RecordLength { len: usize, record: usize },
    /// A data or alarm code is not two hex characters.
    #[error("record at byte {at}: code is not two hex characters")]
    BadCode { at: usize },
    /// An alarm priority character outside `'0'`–`'O'` (0–31).
    #[error("record at byte {at}: alarm priority byte {byte:#04x} is not 0-31")]
    BadPriority { at: usize, byte: u8 },
    /// A text message whose length or terminator does not fit the data.
    #[error("text message at byte {at} is truncated or lacks its ETX")]
    BadText { at: usize },
    /// A device identification shorter than its 4-character id number.
    #[error("device identification of {len} bytes is shorter than its id number")]
    ShortIdentification { len: usize },
    /// A date and time not in `HH:MM[:SS] DD-MON-YY` form.
    #[error("unreadable date and time {0:?}")]
    BadDateTime(String),
}

/// Splits measured-data or settings data into `(data code, value field)` records of
/// `2 + width` bytes.
pub fn parse_data_records(data: &[u8], width: usize) -> Result<Vec<(u8, &[u8])>, MedibusError> {
    let record = 2 + width;
    if data.len() % record != 0 {
        return Err(MedibusError::RecordLength {
            len: data.len(),
            record,
        });
    }
    data.chunks_exact(record)
        .enumerate()
        .map(|(i, rec)| match rec {
            [hi, lo, value @ ..] => parse_hex_pair(*hi, *lo)
                .map(|code| (code, value))
                .ok_or(MedibusError::BadCode { at: i * record }),
            _ => Err(MedibusError::BadCode { at: i * record }),
        })
        .collect()
}

/// Appends one data record: the code as two hex characters, then `value`, which must already
/// have the table's width.
pub fn write_data_record(code: u8, value: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&hex_pair(code));
    out.extend_from_slice(value.as_bytes());
}

/// One alarm as the device reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmRecord {
    /// 1–31, 31 highest.
    pub priority: u8,
    pub code: u8,
    /// The alarm phrase, trailing blanks removed.
    pub phrase: String,
}

/// Splits alarm data into 15-byte records: priority character (`'0'` + priority), alarm code
/// as two hex characters, 12-character phrase.
pub fn parse_alarms(data: &[u8]) -> Result<Vec<AlarmRecord>, MedibusError> {
    if data.len() % ALARM_RECORD_LEN != 0 {
        return Err(MedibusError::RecordLength {
            len: data.len(),
            record: ALARM_RECORD_LEN,
        });
    }
    data.chunks_exact(ALARM_RECORD_LEN)
        .enumerate()
        .map(|(i, rec)| {
            let at = i * ALARM_RECORD_LEN;
            let [p, hi, lo, phrase @ ..] = rec else {
                return Err(MedibusError::BadCode { at });
            };
            let priority = match p.checked_sub(b'0') {
                Some(v) if v <= 31 => v,
                _ => return Err(MedibusError::BadPriority { at, byte: *p }),
            };
            let code = parse_hex_pair(*hi, *lo).ok_or(MedibusError::BadCode { at })?;
            Ok(AlarmRecord {
                priority,
                code,
                phrase: String::from_utf8_lossy(phrase).trim().to_string(),
            })
        })
        .collect()
}

/// Appends one alarm record; the phrase is cut or padded to 12 characters.
pub fn write_alarm(alarm: &AlarmRecord, out: &mut Vec<u8>) {
    out.push(b'0' + alarm.priority.min(31));
    out.extend_from_slice(&hex_pair(alarm.code));
    let phrase = fixed_ascii(&alarm.phrase, ALARM_PHRASE_LEN);
    out.extend_from_slice(phrase.as_bytes());
}

/// One text message: its code and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextRecord {
    pub code: u8,
    pub text: String,
}

/// Splits text-message data into records: code as two hex characters, one length character
/// (`'0'` + length), the text, `ETX`.
pub fn parse_text_messages(data: &[u8]) -> Result<Vec<TextRecord>, MedibusError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let bad = MedibusError::BadText { at };
        let rest = data.get(at..).unwrap_or_default();
        let [hi, lo, len_char, tail @ ..] = rest else {
            return Err(bad);
        };
        let code = parse_hex_pair(*hi, *lo).ok_or(MedibusError::BadCode { at })?;
        let len = usize::from(len_char.checked_sub(b'0').ok_or(bad.clone())?);
        let (Some(text), Some(&ETX)) = (tail.get(..len), tail.get(len)) else {
            return Err(bad);
        };
        out.push(TextRecord {
            code,
            text: String::from_utf8_lossy(text).trim().to_string(),
        });
        at += 3 + len + 1;
    }
    Ok(out)
}

/// Longest text a length character can announce and stay a 7-bit slow-mode character.
const MAX_TEXT_LEN: usize = 0x7F - b'0' as usize;

/// Appends one text message record (text cut to what the length character can say).
pub fn write_text_message(code: u8, text: &str, out: &mut Vec<u8>) {
    let text = ascii_only(text);
    let text = text.get(..text.len().min(MAX_TEXT_LEN)).unwrap_or("");
    out.extend_from_slice(&hex_pair(code));
    out.push(b'0' + text.len() as u8);
    out.extend_from_slice(text.as_bytes());
    out.push(ETX);
}

/// Who a device says it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceId {
    /// The 4-character device id number.
    pub id: String,
    /// The device name (between apostrophes), when sent.
    pub name: Option<String>,
    /// Revision text after the name, e.g. `04.02:06.00` (device revision, MEDIBUS version).
    pub revision: Option<String>,
}

/// Reads identification data: 4-character id number, then optionally `'name'` and a
/// revision.
pub fn parse_device_id(data: &[u8]) -> Result<DeviceId, MedibusError> {
    let (Some(id), Some(rest)) = (data.get(..4), data.get(4..)) else {
        return Err(MedibusError::ShortIdentification { len: data.len() });
    };
    let text = |b: &[u8]| {
        let s = String::from_utf8_lossy(b).trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    let (name, revision) = match rest.strip_prefix(b"'") {
        Some(quoted) => match quoted.iter().position(|b| *b == b'\'') {
            Some(end) => (
                quoted.get(..end).and_then(text),
                quoted.get(end + 1..).and_then(text),
            ),
            None => (text(quoted), None),
        },
        None => (None, text(rest)),
    };
    Ok(DeviceId {
        id: String::from_utf8_lossy(id).trim().to_string(),
        name,
        revision,
    })
}

/// Appends identification data.
pub fn write_device_id(id: &DeviceId, out: &mut Vec<u8>) {
    out.extend_from_slice(fixed_ascii(&id.id, 4).as_bytes());
    if let Some(name) = &id.name {
        out.push(b'\'');
        out.extend_from_slice(ascii_only(name).replace('\'', " ").as_bytes());
        out.push(b'\'');
    }
    if let Some(rev) = &id.revision {
        out.extend_from_slice(ascii_only(rev).as_bytes());
    }
}

/// Reads a date-and-time response, `HH:MM:SS DD-MON-YY` (seconds and the blank optional,
/// month in German or English), as the device's wall-clock reading taken as UTC. The caller
/// applies the device's UTC offset.
pub fn parse_date_time(data: &[u8]) -> Result<Timestamp, MedibusError> {
    let s = String::from_utf8_lossy(data);
    let bad = || MedibusError::BadDateTime(s.to_string());
    let mut c = Cursor(s.trim().as_bytes());
    let h = c.number(1, 2).filter(|h| *h <= 23).ok_or_else(bad)?;
    c.expect(b':').ok_or_else(bad)?;
    let m = c.number(2, 2).filter(|m| *m <= 59).ok_or_else(bad)?;
    // Seconds are optional (some devices leave them out), and so is the blank before the date.
    let sec = match c.expect(b':') {
        Some(()) => c.number(2, 2).filter(|s| *s <= 59).ok_or_else(bad)?,
        None => 0,
    };
    c.skip_blanks();
    let day = c.number(1, 2).ok_or_else(bad)?;
    c.expect(b'-').ok_or_else(bad)?;
    let month = c.word().and_then(month_number).ok_or_else(bad)?;
    c.expect(b'-').ok_or_else(bad)?;
    let year = c.number(2, 4).ok_or_else(bad)?;
    let year = i32::try_from(if year < 100 { 2000 + year } else { year }).map_err(|_| bad())?;
    let when = NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_opt(h, m, sec))
        .ok_or_else(bad)?;
    Ok(Timestamp::from_millis(when.and_utc().timestamp_millis()))
}

/// A tiny reader over ASCII text.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    /// `min` to `max` decimal digits.
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let n = self
            .0
            .iter()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if n < min {
            return None;
        }
        let (digits, rest) = self.0.split_at(n);
        self.0 = rest;
        digits.iter().try_fold(0u32, |acc, d| {
            acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        let rest = self.0.strip_prefix(&[byte])?;
        self.0 = rest;
        Some(())
    }

    fn skip_blanks(&mut self) {
        while let Some(rest) = self.0.strip_prefix(b" ") {
            self.0 = rest;
        }
    }

    /// ASCII letters.
    fn word(&mut self) -> Option<&'a str> {
        let n = self
            .0
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let (w, rest) = self.0.split_at(n);
        self.0 = rest;
        std::str::from_utf8(w).ok().filter(|w| !w.is_empty())
    }
}

/// Appends `at` as `HH:MM:SSDD-MON-YY` (German month), the fixed 17-character layout.
pub fn write_date_time(at: Timestamp, out: &mut Vec<u8>) {
    let Some(dt) = at.to_datetime() else {
        return;
    };
    let s = format!(
        "{:02}:{:02}:{:02}{:02}-{}-{:02}",
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.day(),
        month_abbrev(dt.month()),
        dt.year().rem_euclid(100)
    );
    out.extend_from_slice(s.as_bytes());
}

/// Printable 7-bit characters only: anything else would break the framing.
fn ascii_only(s: &str) -> String {
    s.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

/// `s` cut or blank-padded to exactly `len` printable ASCII characters.
fn fixed_ascii(s: &str, len: usize) -> String {
    let mut s: String = ascii_only(s).chars().take(len).collect();
    while s.len() < len {
        s.push(' ');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_records_split_on_fixed_width() {
        let recs = parse_data_records(b"78 8.0F0  4088 450", 4).unwrap();
        assert_eq!(
            recs,
            vec![
                (0x78, &b" 8.0"[..]),
                (0xF0, &b"  40"[..]),
                (0x88, &b" 450"[..])
            ]
        );
        assert_eq!(parse_data_records(b"", 4).unwrap(), vec![]);
        assert_eq!(
            parse_data_records(b"78 8.0F0", 4),
            Err(MedibusError::RecordLength { len: 8, record: 6 })
        );
        assert_eq!(
            parse_data_records(b"78 8.0ZZ  40", 4),
            Err(MedibusError::BadCode { at: 6 })
        );
        // Settings use 5-character values.
        let recs = parse_data_records(b"01   400B  8.0", 5).unwrap();
        assert_eq!(recs, vec![(0x01, &b"   40"[..]), (0x0B, &b"  8.0"[..])]);
        let mut out = Vec::new();
        write_data_record(0x0B, "  8.0", &mut out);
        assert_eq!(out, b"0B  8.0");
    }

    #[test]
    fn alarm_records_round_trip() {
        let alarms = vec![
            AlarmRecord {
                priority: 31,
                code: 0x9A,
                phrase: "DISCONNECT".into(),
            },
            AlarmRecord {
                priority: 5,
                code: 0x19,
                phrase: "MV LOW PHRASE TOO LONG".into(),
            },
        ];
        let mut out = Vec::new();
        for a in &alarms {
            write_alarm(a, &mut out);
        }
        assert_eq!(&out[..15], b"O9ADISCONNECT  ");
        let back = parse_alarms(&out).unwrap();
        assert_eq!(back[0], alarms[0]);
        assert_eq!(back[1].phrase, "MV LOW PHRAS");
        assert!(matches!(
            parse_alarms(b"\x7f9ADISCONNECT  "),
            Err(MedibusError::BadPriority { at: 0, .. })
        ));
        assert!(parse_alarms(b"O9ADISC").is_err());
    }

    #[test]
    fn text_messages_round_trip() {
        let mut out = Vec::new();
        write_text_message(0x01, "IPPV", &mut out);
        write_text_message(0x20, "Adults", &mut out);
        assert_eq!(out, b"014IPPV\x03206Adults\x03");
        let back = parse_text_messages(&out).unwrap();
        assert_eq!(
            back,
            vec![
                TextRecord {
                    code: 0x01,
                    text: "IPPV".into()
                },
                TextRecord {
                    code: 0x20,
                    text: "Adults".into()
                },
            ]
        );
        assert!(parse_text_messages(b"014IPP").is_err());
        assert!(parse_text_messages(b"014IPPVX").is_err());
        assert!(parse_text_messages(b"01").is_err());
        // Long texts are cut so the length character stays below 0x80.
        out.clear();
        write_text_message(0x02, &"x".repeat(200), &mut out);
        assert_eq!(out.get(2), Some(&0x7F));
        assert_eq!(parse_text_messages(&out).unwrap()[0].text.len(), 79);
    }

    #[test]
    fn device_ids_read_with_and_without_a_name() {
        let id = DeviceId {
            id: "0161".into(),
            name: Some("Evita 4".into()),
            revision: Some("04.02:06.00".into()),
        };
        let mut out = Vec::new();
        write_device_id(&id, &mut out);
        assert_eq!(out, b"0161'Evita 4'04.02:06.00");
        assert_eq!(parse_device_id(&out).unwrap(), id);
        assert_eq!(
            parse_device_id(b"0161").unwrap(),
            DeviceId {
                id: "0161".into(),
                name: None,
                revision: None
            }
        );
        assert!(parse_device_id(b"01").is_err());
    }

    #[test]
    fn date_and_time_read_in_the_forms_devices_send() {
        let want = Timestamp::parse_rfc3339("2024-10-07T14:05:33Z").unwrap();
        assert_eq!(parse_date_time(b"14:05:3307-OKT-24").unwrap(), want);
        assert_eq!(parse_date_time(b"14:05:33 07-OCT-24").unwrap(), want);
        assert_eq!(
            parse_date_time(b" 9:05 07-MAI-2024").unwrap(),
            Timestamp::parse_rfc3339("2024-05-07T09:05:00Z").unwrap()
        );
        for bad in [
            &b""[..],
            b"14:05:33",
            b"25:00:0007-OKT-24",
            b"14:05:3331-FEB-24",
            b"14:05:3307-XYZ-24",
            b"14:05:3307-OKT-",
        ] {
            assert!(parse_date_time(bad).is_err(), "{bad:?}");
        }
        let mut out = Vec::new();
        write_date_time(want, &mut out);
        assert_eq!(out, b"14:05:3307-OKT-24");
        assert_eq!(parse_date_time(&out).unwrap(), want);
    }
}
