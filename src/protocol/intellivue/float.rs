//! FLOAT-Type (an 8-bit signed exponent over a 24-bit signed mantissa, value = mantissa ×
//! 10^exponent) and the MeasurementState bits that say whether a value may be used.

use crate::protocol::device::ReadingStatus;

/// Mantissa of NaN ("not a number": no value).
pub const MANTISSA_NAN: u32 = 0x7F_FFFF;
/// Mantissa of NRes ("not at this resolution": the value cannot be represented).
pub const MANTISSA_NRES: u32 = 0x80_0000;
/// Mantissa of +INFINITY.
pub const MANTISSA_POS_INF: u32 = 0x7F_FFFE;
/// Mantissa of -INFINITY.
pub const MANTISSA_NEG_INF: u32 = 0x80_0002;
/// Mantissa reserved by IEEE 11073 for future use; treated as no value.
pub const MANTISSA_RESERVED: u32 = 0x80_0001;

/// The NaN word as sent (exponent 0).
pub const FLOAT_NAN: u32 = MANTISSA_NAN;
/// The NRes word as sent (exponent 0).
pub const FLOAT_NRES: u32 = MANTISSA_NRES;
/// The +INF word as sent (exponent 0).
pub const FLOAT_POS_INF: u32 = MANTISSA_POS_INF;
/// The -INF word as sent (exponent 0).
pub const FLOAT_NEG_INF: u32 = MANTISSA_NEG_INF;

/// Largest mantissa magnitude that is an ordinary number (the specials sit above it).
const MAX_MANTISSA: i64 = 0x7F_FFFD;

/// What a FLOAT-Type word means.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FloatValue {
    /// An ordinary number.
    Value(f64),
    /// Not a number: the device has no value.
    NaN,
    /// Not at this resolution.
    NRes,
    /// Above the representable range.
    PosInf,
    /// Below the representable range.
    NegInf,
}

impl FloatValue {
    /// The number, when there is one.
    pub fn value(self) -> Option<f64> {
        match self {
            FloatValue::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// Decodes a FLOAT-Type word.
pub fn decode_float(word: u32) -> FloatValue {
    let mantissa_bits = word & 0x00FF_FFFF;
    match mantissa_bits {
        MANTISSA_NAN | MANTISSA_RESERVED => return FloatValue::NaN,
        MANTISSA_NRES => return FloatValue::NRes,
        MANTISSA_POS_INF => return FloatValue::PosInf,
        MANTISSA_NEG_INF => return FloatValue::NegInf,
        _ => {}
    }
    // Sign-extend the 24-bit mantissa and the 8-bit exponent.
    let mantissa = ((mantissa_bits << 8) as i32) >> 8;
    let exponent = (word >> 24) as u8 as i8;
    let m = f64::from(mantissa);
    let v = if exponent < 0 {
        // Dividing by an exact power of ten gives the correctly rounded decimal (37.1, not
        // 37.100000000000001 as multiplying by 0.1 would).
        m / 10f64.powi(-i32::from(exponent))
    } else {
        m * 10f64.powi(i32::from(exponent))
    };
    FloatValue::Value(v)
}

/// Builds a FLOAT-Type word from a mantissa and an exponent. `None` when the mantissa is not
/// an ordinary 24-bit value.
pub fn float_from_parts(mantissa: i32, exponent: i8) -> Option<u32> {
    if i64::from(mantissa).abs() > MAX_MANTISSA {
        return None;
    }
    Some((u32::from(exponent as u8) << 24) | (mantissa as u32 & 0x00FF_FFFF))
}

/// Encodes `value` with `decimals` digits after the point (fewer if the mantissa would not
/// fit). Non-finite values become NaN.
pub fn encode_float(value: f64, decimals: u8) -> u32 {
    if !value.is_finite() {
        return FLOAT_NAN;
    }
    let mut d = i32::from(decimals.min(9));
    loop {
        let scaled = (value * 10f64.powi(d)).round();
        if scaled.abs() <= MAX_MANTISSA as f64 {
            // In range by the check above.
            let mantissa = scaled as i32;
            return float_from_parts(mantissa, -d as i8).unwrap_or(FLOAT_NAN);
        }
        if d <= -9 {
            return if value > 0.0 {
                FLOAT_POS_INF
            } else {
                FLOAT_NEG_INF
            };
        }
        d -= 1;
    }
}

/// MeasurementState bits.
pub mod state {
    /// The data are meaningless.
    pub const INVALID: u16 = 0x8000;
    /// A problem exists but the value may still be shown.
    pub const QUESTIONABLE: u16 = 0x4000;
    /// The signal does not permit deriving the value.
    pub const UNAVAILABLE: u16 = 0x2000;
    /// The parameter is being calibrated.
    pub const CALIBRATION_ONGOING: u16 = 0x1000;
    /// Generated test signal, not patient data.
    pub const TEST_DATA: u16 = 0x0800;
    /// Demonstration mode, not patient data.
    pub const DEMO_DATA: u16 = 0x0400;
    /// Manually validated.
    pub const VALIDATED_DATA: u16 = 0x0080;
    /// Early estimate (e.g. NIBP systolic before mean and diastolic).
    pub const EARLY_INDICATION: u16 = 0x0040;
    /// A new aperiodic measurement is running.
    pub const MSMT_ONGOING: u16 = 0x0020;
    /// The numeric is in alarm.
    pub const MSMT_STATE_IN_ALARM: u16 = 0x0002;
    /// Alarms are off for the numeric.
    pub const MSMT_STATE_AL_INHIBITED: u16 = 0x0001;
}

/// How far a value with this state and FLOAT word can be trusted: invalid, unavailable, NaN,
/// NRes and ±INF are `Unavailable` (no usable number); questionable, calibrating, test and
/// demo data are `Questionable`.
pub fn reading_status(measurement_state: u16, value: FloatValue) -> ReadingStatus {
    if measurement_state & (state::INVALID | state::UNAVAILABLE) != 0 || value.value().is_none() {
        return ReadingStatus::Unavailable;
    }
    let doubtful =
        state::QUESTIONABLE | state::CALIBRATION_ONGOING | state::TEST_DATA | state::DEMO_DATA;
    if measurement_state & doubtful != 0 {
        ReadingStatus::Questionable
    } else {
        ReadingStatus::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_values() {
        assert_eq!(decode_float(0xFF00_0173), FloatValue::Value(37.1));
        assert_eq!(decode_float(0x0000_0050), FloatValue::Value(80.0));
        assert_eq!(decode_float(0x0200_0003), FloatValue::Value(300.0));
        assert_eq!(decode_float(0xFEFF_FF9C), FloatValue::Value(-1.0));
        assert_eq!(decode_float(0), FloatValue::Value(0.0));
        // Exponent -128 and +127 stay finite.
        assert!(decode_float(0x8000_0001).value().unwrap() > 0.0);
        assert!(decode_float(0x7F00_0001).value().unwrap().is_finite());
    }

    #[test]
    fn mantissa_boundaries() {
        // Largest ordinary magnitudes on both sides of the specials.
        assert_eq!(decode_float(0x007F_FFFD), FloatValue::Value(8_388_605.0));
        assert_eq!(decode_float(0x0080_0003), FloatValue::Value(-8_388_605.0));
        assert_eq!(float_from_parts(8_388_605, 0), Some(0x007F_FFFD));
        assert_eq!(float_from_parts(-8_388_605, 0), Some(0x0080_0003));
        assert_eq!(float_from_parts(8_388_606, 0), None);
        assert_eq!(float_from_parts(-8_388_606, 0), None);
    }

    #[test]
    fn special_values() {
        assert_eq!(decode_float(FLOAT_NAN), FloatValue::NaN);
        assert_eq!(decode_float(FLOAT_NRES), FloatValue::NRes);
        assert_eq!(decode_float(FLOAT_POS_INF), FloatValue::PosInf);
        assert_eq!(decode_float(FLOAT_NEG_INF), FloatValue::NegInf);
        assert_eq!(decode_float(0x0080_0001), FloatValue::NaN);
        // The specials are mantissa values whatever the exponent.
        assert_eq!(decode_float(0xFF7F_FFFF), FloatValue::NaN);
        for w in [FLOAT_NAN, FLOAT_NRES, FLOAT_POS_INF, FLOAT_NEG_INF] {
            assert_eq!(
                reading_status(0, decode_float(w)),
                ReadingStatus::Unavailable
            );
        }
    }

    #[test]
    fn encode_round_trips_and_scales_down_when_needed() {
        for (v, d) in [
            (37.1, 1),
            (97.0, 0),
            (-12.25, 2),
            (0.0, 3),
            (8_388_605.0, 0),
        ] {
            assert_eq!(decode_float(encode_float(v, d)), FloatValue::Value(v));
        }
        // Too many digits for 24 bits: fewer decimals.
        assert_eq!(
            decode_float(encode_float(123_456.789, 3)),
            FloatValue::Value(123_456.8)
        );
        assert_eq!(encode_float(f64::NAN, 1), FLOAT_NAN);
        assert_eq!(encode_float(1e30, 0), FLOAT_POS_INF);
        assert_eq!(encode_float(-1e30, 0), FLOAT_NEG_INF);
    }

    #[test]
    fn measurement_state_decides_the_status() {
        let v = FloatValue::Value(1.0);
        assert_eq!(reading_status(0, v), ReadingStatus::Valid);
        assert_eq!(
            reading_status(state::VALIDATED_DATA | state::MSMT_STATE_IN_ALARM, v),
            ReadingStatus::Valid
        );
        assert_eq!(
            reading_status(state::INVALID, v),
            ReadingStatus::Unavailable
        );
        assert_eq!(
            reading_status(state::UNAVAILABLE, v),
            ReadingStatus::Unavailable
        );
        for s in [
            state::QUESTIONABLE,
            state::CALIBRATION_ONGOING,
            state::TEST_DATA,
            state::DEMO_DATA,
        ] {
            assert_eq!(reading_status(s, v), ReadingStatus::Questionable);
        }
        // Invalid wins over questionable.
        assert_eq!(
            reading_status(state::INVALID | state::QUESTIONABLE, v),
            ReadingStatus::Unavailable
        );
    }
}
