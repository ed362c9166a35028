//! HL7 DTM/TS values: `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]` to a UTC instant.

use chrono::NaiveDate;
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
    let s = match s.as_bytes().iter().position(|&b| b == b'^') {
        Some(i) => s.get(..i).unwrap_or(""),
        None => s,
    }
    .trim();
    if s.is_empty() {
        return Err(TsError::Empty);
    }
    let shape = || TsError::BadShape(s.to_owned());
    let (body, zone) = match s.find(['+', '-']) {
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
    // Digits are ASCII, so byte slicing is on char boundaries; absent parts default.
    let num = |a: usize, b: usize, dflt: u32| -> u32 {
        digits
            .get(a..b)
            .and_then(|t| t.parse().ok())
            .unwrap_or(dflt)
    };
    let year = num(0, 4, 0) as i32;
    let (month, day) = (num(4, 6, 1), num(6, 8, 1));
    let (hour, minute, second) = (num(8, 10, 0), num(10, 12, 0), num(12, 14, 0));
    let date =
        NaiveDate::from_ymd_opt(year, month, day).ok_or_else(|| TsError::BadDate(s.to_owned()))?;
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
    let days = date.signed_duration_since(epoch()).num_days();
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

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

/// `+HHMM` / `-HHMM` to minutes east of UTC.
fn parse_zone(z: &str) -> Option<i32> {
    let (sign, rest) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    if rest.len() != 4 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = rest[..2].parse().ok()?;
    let m: i32 = rest[2..].parse().ok()?;
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
}
