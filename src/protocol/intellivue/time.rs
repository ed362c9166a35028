//! IntelliVue time: AbsoluteTime (eight BCD bytes: century, year, month, day, hour, minute,
//! second, hundredths; the monitor's local wall clock, 0xFF when unset) and RelativeTime (a u32
//! count of 1/8 ms ticks since an arbitrary origin, wrapping about every 6.2 days).
//!
//! A [`TimeAnchor`] pairs a relative time with the absolute time it corresponds to (both sent
//! together in the MDS Create Event and in every poll result) and converts later relative times
//! across the wrap.

use chrono::{Datelike, NaiveDate, Timelike};

use crate::model::Timestamp;

/// RelativeTime ticks per millisecond (1 tick = 125 µs).
pub const TICKS_PER_MS: i64 = 8;

/// An unset AbsoluteTime (all fields 0xFF).
pub const ABS_TIME_UNSET: [u8; 8] = [0xFF; 8];

fn bcd(b: u8) -> Option<u32> {
    let (hi, lo) = (b >> 4, b & 0x0F);
    (hi <= 9 && lo <= 9).then(|| u32::from(hi) * 10 + u32::from(lo))
}

fn to_bcd(v: u32) -> u8 {
    let v = v % 100;
    ((v / 10) as u8) << 4 | (v % 10) as u8
}

/// Decodes an AbsoluteTime to the instant it names, reading the monitor's wall clock as UTC
/// plus `utc_offset_min` (so a monitor on UTC+1 is given `60`). `None` when unset or not a
/// valid date. Hundredths are used when they are valid BCD (the monitor itself sends whole
/// seconds).
pub fn decode_abs_time(b: &[u8; 8], utc_offset_min: i32) -> Option<Timestamp> {
    let century = bcd(b[0])?;
    let year = century * 100 + bcd(b[1])?;
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, bcd(b[2])?, bcd(b[3])?)?;
    let hundredths = bcd(b[7]).unwrap_or(0);
    let dt = date.and_hms_milli_opt(bcd(b[4])?, bcd(b[5])?, bcd(b[6])?, hundredths * 10)?;
    let local_ms = dt.and_utc().timestamp_millis();
    Some(Timestamp::from_millis(
        local_ms.checked_sub(i64::from(utc_offset_min) * 60_000)?,
    ))
}

/// Encodes an instant as the AbsoluteTime of a monitor whose clock runs at UTC plus
/// `utc_offset_min`. Years outside 0..=9999 give the unset value.
pub fn encode_abs_time(t: Timestamp, utc_offset_min: i32) -> [u8; 8] {
    let local = t.plus_ms(i64::from(utc_offset_min) * 60_000);
    let Some(dt) = local.to_datetime() else {
        return ABS_TIME_UNSET;
    };
    let Ok(year) = u32::try_from(dt.year()) else {
        return ABS_TIME_UNSET;
    };
    if year > 9999 {
        return ABS_TIME_UNSET;
    }
    [
        to_bcd(year / 100),
        to_bcd(year % 100),
        to_bcd(dt.month()),
        to_bcd(dt.day()),
        to_bcd(dt.hour()),
        to_bcd(dt.minute()),
        to_bcd(dt.second()),
        to_bcd(dt.timestamp_subsec_millis() / 10),
    ]
}

/// A relative time and the absolute instant it corresponds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeAnchor {
    pub rel: u32,
    pub abs: Timestamp,
}

impl TimeAnchor {
    /// The instant of `rel`. The tick difference is read as a signed 32-bit number, so the
    /// u32 wrap is crossed in either direction as long as `rel` lies within ±3.1 days of the
    /// anchor.
    pub fn to_abs(&self, rel: u32) -> Timestamp {
        let ticks = i64::from(rel.wrapping_sub(self.rel) as i32);
        self.abs.plus_ms(ticks.div_euclid(TICKS_PER_MS))
    }

    /// Converts `rel` and moves the anchor there, so a stream of increasing relative times
    /// (one per poll) is followed across any number of wraps.
    pub fn advance(&mut self, rel: u32) -> Timestamp {
        let t = self.to_abs(rel);
        *self = TimeAnchor { rel, abs: t };
        t
    }
}

/// Ticks for a duration in milliseconds, wrapping like the monitor's counter.
pub fn ms_to_ticks(ms: i64) -> u32 {
    ms.wrapping_mul(TICKS_PER_MS) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn bcd_round_trip() {
        let t = ts("2026-03-14T15:09:26.530Z");
        let b = encode_abs_time(t, 0);
        assert_eq!(b, [0x20, 0x26, 0x03, 0x14, 0x15, 0x09, 0x26, 0x53]);
        assert_eq!(decode_abs_time(&b, 0), Some(t));
        // A monitor on UTC+2 shows 17:09; read back with the offset it is the same instant.
        let local = encode_abs_time(t, 120);
        assert_eq!(local[4], 0x17);
        assert_eq!(decode_abs_time(&local, 120), Some(t));
    }

    #[test]
    fn unset_and_invalid_times_are_none() {
        assert_eq!(decode_abs_time(&ABS_TIME_UNSET, 0), None);
        assert_eq!(
            decode_abs_time(&[0x20, 0x26, 0x13, 0x01, 0, 0, 0, 0], 0),
            None
        );
        assert_eq!(
            decode_abs_time(&[0x20, 0x26, 0x02, 0x30, 0, 0, 0, 0], 0),
            None
        );
        assert_eq!(
            decode_abs_time(&[0x20, 0x2A, 0x01, 0x01, 0, 0, 0, 0], 0),
            None
        );
        assert_eq!(
            decode_abs_time(&[0x20, 0x26, 0x01, 0x01, 0x24, 0, 0, 0], 0),
            None
        );
        // Hundredths that are not BCD are ignored (the monitor leaves them unused).
        let b = [0x20, 0x26, 0x01, 0x01, 0x00, 0x00, 0x05, 0xFF];
        assert_eq!(decode_abs_time(&b, 0), Some(ts("2026-01-01T00:00:05Z")));
    }

    #[test]
    fn relative_time_crosses_the_wrap() {
        let base = ts("2026-01-01T00:00:00Z");
        // One second before the wrap.
        let mut anchor = TimeAnchor {
            rel: u32::MAX - 7_999,
            abs: base,
        };
        let after = anchor.to_abs(anchor.rel.wrapping_add(16_000));
        assert_eq!(after, base.plus_ms(2_000));
        // Earlier times (a measurement taken before the anchor) go back across the wrap too.
        let a2 = TimeAnchor {
            rel: 100,
            abs: base,
        };
        assert_eq!(a2.to_abs(u32::MAX - 7_899), base.minus_ms(1_000));
        // Advancing in steps follows many wraps.
        let step = ms_to_ticks(86_400_000); // one day
        let mut rel = anchor.rel;
        for day in 1..=20 {
            rel = rel.wrapping_add(step);
            assert_eq!(anchor.advance(rel), base.plus_ms(day * 86_400_000));
        }
    }
}
