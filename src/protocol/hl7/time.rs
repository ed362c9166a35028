//! HL7 DTM/TS values: `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]` to a UTC instant.

use thiserror::Error;

use crate::model::Timestamp;

/// How much of the timestamp the sender gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TsPrecision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    /// Seconds with 1–4 (tolerated: up to 6) fractional digits.
    Fraction,
}

/// A parsed HL7 time: the UTC instant, its precision and whether the zone was explicit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hl7Time {
    pub ts: Timestamp,
    pub precision: TsPrecision,
    /// False when no `+/-ZZZZ` was present and the site offset was assumed.
    pub explicit_zone: bool,
}

/// Why a timestamp was rejected. Carries the input text.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TsError {
    #[error("empty timestamp")]
    Empty,
    #[error("timestamp {0:?}: expected YYYY[MM[DD[HH[MM[SS[.S…]]]]]] digits")]
    BadShape(String),
    #[error("timestamp {0:?}: no such date")]
    BadDate(String),
    #[error("timestamp {0:?}: time of day out of range")]
    BadTime(String),
    #[error("timestamp {0:?}: bad zone offset (want +/-HHMM)")]
    BadZone(String),
}

/// Parses a DTM/TS. Takes component 1 of a TS (`20150122182658+0000^S`). Without a zone the
/// time is local at `default_offset_min` minutes east of UTC.
pub fn parse_ts(s: &str, default_offset_min: i32) -> Result<Hl7Time, TsError> {
    if let Some(t) = parse_common(s, default_offset_min) {
        return Ok(t);
    }
    let s = match s.as_bytes().iter().position(|&b| b == b'^') {
        Some(i) => s.get(..i).unwrap_or(""),
        None => s,
    }
    .trim();
    if s.is_empty() {
        return Err(TsError::Empty);
    }
    let shape = || TsError::BadShape(s.to_owned());
    let (body, zone) = match s.bytes().position(|b| b == b'+' || b == b'-') {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let (digits, frac) = match body.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (body, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(shape());
    }
    let precision = match (digits.len(), frac) {
        (4, None) => TsPrecision::Year,
        (6, None) => TsPrecision::Month,
        (8, None) => TsPrecision::Day,
        (10, None) => TsPrecision::Hour,
        (12, None) => TsPrecision::Minute,
        (14, None) => TsPrecision::Second,
        (14, Some(f)) if (1..=6).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            TsPrecision::Fraction
        }
        _ => return Err(shape()),
    };
    // Every byte of `digits` is an ASCII digit (checked above); absent parts default.
    let d = digits.as_bytes();
    let num = |a: usize, b: usize, dflt: u32| -> u32 {
        match d.get(a..b) {
            Some(t) => t.iter().fold(0, |n, &c| n * 10 + u32::from(c - b'0')),
            None => dflt,
        }
    };
    let year = num(0, 4, 0) as i32;
    let (month, day) = (num(4, 6, 1), num(6, 8, 1));
    let (hour, minute, second) = (num(8, 10, 0), num(10, 12, 0), num(12, 14, 0));
    let days = days_from_civil(year, month, day).ok_or_else(|| TsError::BadDate(s.to_owned()))?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err(TsError::BadTime(s.to_owned()));
    }
    let millis = match frac {
        Some(f) => {
            let mut ms = 0u32;
            for (k, b) in f.bytes().take(3).enumerate() {
                ms += u32::from(b - b'0') * [100, 10, 1][k];
            }
            ms
        }
        None => 0,
    };
    let offset_min = match zone {
        None => default_offset_min,
        Some(z) => parse_zone(z).ok_or_else(|| TsError::BadZone(s.to_owned()))?,
    };
    let local_ms = days * 86_400_000
        + i64::from(hour) * 3_600_000
        + i64::from(minute) * 60_000
        + i64::from(second) * 1000
        + i64::from(millis);
    Ok(Hl7Time {
        ts: Timestamp(local_ms - i64::from(offset_min) * 60_000),
        precision,
        explicit_zone: zone.is_some(),
    })
}

/// The shape nearly every device sends, `YYYYMMDDHHMMSS[+/-ZZZZ]`, read in one pass. `None`
/// for any other shape or any invalid value: the general path then parses it or names the fault.
fn parse_common(s: &str, default_offset_min: i32) -> Option<Hl7Time> {
    let (digits, zone) = match s.len() {
        14 => (s.as_bytes(), None),
        19 => (s.as_bytes().get(..14)?, Some(s.get(14..)?)),
        _ => return None,
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let two = |a: usize| -> u32 {
        match digits.get(a..a + 2) {
            Some([h, l]) => u32::from(h - b'0') * 10 + u32::from(l - b'0'),
            _ => 99,
        }
    };
    let year = two(0) * 100 + two(2);
    let (hour, minute, second) = (two(8), two(10), two(12));
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year as i32, two(4), two(6))?;
    let offset_min = match zone {
        None => default_offset_min,
        Some(z) => parse_zone(z)?,
    };
    let local_ms = days * 86_400_000
        + i64::from(hour) * 3_600_000
        + i64::from(minute) * 60_000
        + i64::from(second) * 1000;
    Some(Hl7Time {
        ts: Timestamp(local_ms - i64::from(offset_min) * 60_000),
        precision: TsPrecision::Second,
        explicit_zone: zone.is_some(),
    })
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar, or `None` for a date
/// that does not exist (month 13, 30 February). The era arithmetic of the civil calendar: no
/// table, no loop, exact for every year.
fn days_from_civil(year: i32, month: u32, day: u32) -> Option<i64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > month_days {
        return None;
    }
    // Years start in March, so the leap day is the last of the year.
    let (y, m, d) = (i64::from(year), i64::from(month), i64::from(day));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `+HHMM` / `-HHMM` to minutes east of UTC.
fn parse_zone(z: &str) -> Option<i32> {
    let (sign, rest) = match z.as_bytes() {
        [b'+', rest @ ..] => (1, rest),
        [b'-', rest @ ..] => (-1, rest),
        _ => return None,
    };
    let &[h1, h2, m1, m2] = rest else {
        return None;
    };
    if !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let two = |a: u8, b: u8| i32::from(a - b'0') * 10 + i32::from(b - b'0');
    let (h, m) = (two(h1, h2), two(m1, m2));
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (h * 60 + m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        parse_ts(s, 0).unwrap().ts.millis()
    }

    #[test]
    fn every_precision() {
        let cases = [
            ("2024", TsPrecision::Year, 1_704_067_200_000),
            ("202402", TsPrecision::Month, 1_706_745_600_000),
            ("20240229", TsPrecision::Day, 1_709_164_800_000),
            ("2024022913", TsPrecision::Hour, 1_709_211_600_000),
            ("202402291314", TsPrecision::Minute, 1_709_212_440_000),
            ("20240229131415", TsPrecision::Second, 1_709_212_455_000),
            ("20240229131415.5", TsPrecision::Fraction, 1_709_212_455_500),
            (
                "20240229131415.1234",
                TsPrecision::Fraction,
                1_709_212_455_123,
            ),
            (
                "20240229131415.123456",
                TsPrecision::Fraction,
                1_709_212_455_123,
            ),
        ];
        for (s, p, ms) in cases {
            let t = parse_ts(s, 0).unwrap();
            assert_eq!(
                (t.precision, t.ts.millis(), t.explicit_zone),
                (p, ms, false),
                "{s}"
            );
        }
    }

    #[test]
    fn zones_and_default_offset() {
        let base = utc("20150122182658");
        assert_eq!(utc("20150122182658+0000"), base);
        assert_eq!(utc("20150122182658+0130"), base - 90 * 60_000);
        assert_eq!(utc("20150122182658-0500"), base + 5 * 3_600_000);
        assert_eq!(utc("201501221826-0500"), base - 58_000 + 5 * 3_600_000);
        assert_eq!(utc("2015+0100"), utc("2015") - 3_600_000);
        assert_eq!(utc("20150122182658.25-0500"), base + 250 + 5 * 3_600_000);
        let t = parse_ts("20150122182658", 120).unwrap();
        assert_eq!((t.ts.millis(), t.explicit_zone), (base - 7_200_000, false));
        let t = parse_ts("20150122182658+0000", 120).unwrap();
        assert_eq!((t.ts.millis(), t.explicit_zone), (base, true));
        // TS with its degree-of-precision component.
        assert_eq!(utc("20150122182658+0000^S"), base);
        assert_eq!(utc(" 20150122182658 "), base);
        assert_eq!(utc("19700101000000"), 0);
        assert_eq!(utc("19691231235959"), -1000);
        assert_eq!(utc("20150122182658-1400"), base + 14 * 3_600_000);
        for bad in [
            "+1500", "+0060", "+01a0", "+010", "+01000", "*0100", "+", "-",
        ] {
            assert!(
                matches!(
                    parse_ts(&format!("20150122182658{bad}"), 0),
                    Err(TsError::BadZone(_) | TsError::BadShape(_))
                ),
                "{bad}"
            );
        }
    }

    /// The one-pass reading of the common shape gives what the general path gives.
    #[test]
    fn common_shape_matches_the_general_path() {
        for s in [
            "20240229131415",
            "20240229131415+0000",
            "20240229131415-0530",
            "19691231235959+1400",
            "00010101000000",
            "99991231235959-1200",
        ] {
            let fast = parse_common(s, 90);
            let general = parse_ts(&format!(" {s} "), 90).ok();
            assert!(fast.is_some(), "{s}");
            assert_eq!(fast, general, "{s}");
        }
        for s in [
            "20240230131415",
            "20240229241415",
            "20240229131415+2400",
            "2024022913141Z",
        ] {
            assert_eq!(parse_common(s, 0), None, "{s}");
        }
    }

    #[test]
    fn invalid_values_are_errors() {
        for bad in [
            "",
            "^S",
            "202",
            "20241",
            "2024010",
            "20241301",
            "20240230",
            "20230229",
            "20240100",
            "2024010124",
            "202401011260",
            "20240101235960",
            "20240101.5",
            "2024010112.5",
            "20240101120000.",
            "20240101120000.1234567",
            "20240101120000+01",
            "20240101120000+2400",
            "20240101120000+0160",
            "20240101120000+01:00",
            "2024-01-01",
            "2024O101",
            "٢٠٢٤",
            "20240101120000Z",
            "20240101120000.1a",
        ] {
            assert!(parse_ts(bad, 0).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse_ts("20240230", 0),
            Err(TsError::BadDate("20240230".into()))
        );
        assert_eq!(
            parse_ts("20240101246000", 0),
            Err(TsError::BadTime("20240101246000".into()))
        );
        assert!(parse_ts("20240229", 0).is_ok());
    }

    /// The calendar arithmetic agrees with chrono on every day of years 0000 to 9999 sampled
    /// across leap rules (divisible by 4, 100, 400) and on every date that does not exist.
    #[test]
    fn civil_days_match_chrono() {
        use chrono::NaiveDate;
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let years = (0..=9999)
            .step_by(37)
            .chain([1600, 1900, 1969, 1970, 2000, 2024, 2100]);
        for year in years {
            for month in 0..=13 {
                for day in 0..=32 {
                    let want = NaiveDate::from_ymd_opt(year, month, day)
                        .map(|d| d.signed_duration_since(epoch).num_days());
                    assert_eq!(
                        days_from_civil(year, month, day),
                        want,
                        "{year}-{month}-{day}"
                    );
                }
            }
        }
    }
}
