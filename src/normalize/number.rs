//! Reading device numbers: what `str::parse::<f64>` gives, without its general machinery for
//! the plain decimals devices send.

/// Powers of ten that `f64` holds exactly.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// `s` as a number, bit for bit what `s.parse::<f64>().ok()` gives.
///
/// A plain decimal (`117`, `-3.9`, `38.40`, `.5`) of at most 15 digits is read directly: its
/// digits form an integer below 2^53 and the power of ten is exact, so the one division rounds
/// once, to the correctly rounded value (the classic exact fast path). Anything else (exponents,
/// more digits, `inf`, junk) goes to `str::parse`.
#[inline]
pub fn parse_f64(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let (negative, body) = match b.first() {
        Some(b'-') => (true, b.get(1..).unwrap_or_default()),
        Some(b'+') => (false, b.get(1..).unwrap_or_default()),
        _ => (false, b),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut frac_digits = 0usize;
    let mut seen_point = false;
    for &c in body {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                digits += 1;
                frac_digits += usize::from(seen_point);
            }
            b'.' if !seen_point => seen_point = true,
            _ => return s.parse().ok(),
        }
        if digits > 15 {
            return s.parse().ok();
        }
    }
    if digits == 0 {
        return s.parse().ok();
    }
    let v = mantissa as f64 / POW10.get(frac_digits).copied()?;
    Some(if negative { -v } else { v })
}

/// `s.trim()`, without the Unicode scan when both ends are plainly not white space (the
/// common case: HL7 fields are rarely padded).
#[inline]
pub fn trim(s: &str) -> &str {
    match s.as_bytes() {
        [] => s,
        [first, .., last] | [first @ last]
            if first.is_ascii_graphic() && last.is_ascii_graphic() =>
        {
            s
        }
        _ => s.trim(),
    }
}

/// `s` as a `u32`, exactly what `s.parse::<u32>().ok()` gives: codes (MDC `150456`) are read
/// three times a row, and the standard parser's generality costs several times this.
#[inline]
pub fn parse_u32(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    let digits = match b {
        [b'+', rest @ ..] => rest,
        _ => b,
    };
    match digits.len() {
        0 => None,
        4..=8 => eight_digits(digits),
        // Ten digits may overflow: the standard parser decides.
        10.. => s.parse().ok(),
        _ => {
            let mut v: u32 = 0;
            for &c in digits {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    return None;
                }
                v = v * 10 + u32::from(d);
            }
            Some(v)
        }
    }
}

/// Four to eight ASCII digits at once (SWAR): two overlapping loads make one word, left-padded
/// with `'0'`, checked and converted by the classic three multiplications.
#[inline]
fn eight_digits(d: &[u8]) -> Option<u32> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    const HIGH_NIBBLES: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const SIXES: u64 = 0x0606_0606_0606_0606;
    let n = d.len();
    let word = |at: usize| {
        d.get(at..at + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map(u32::from_le_bytes)
    };
    // Bytes 0..n hold the digits, first digit lowest (the two loads agree where they overlap).
    let w = u64::from(word(0)?) | (u64::from(word(n.checked_sub(4)?)?) << (8 * (n - 4)));
    let pad = 8 * (8 - n.min(8)) as u32;
    let w = w.checked_shl(pad)? | (ZEROS & ((1u64 << pad) - 1));
    // Every byte '0'..='9': high nibble 3, and still 3 after adding 6 (no byte carries).
    if w & HIGH_NIBBLES != ZEROS || w.wrapping_add(SIXES) & HIGH_NIBBLES != ZEROS {
        return None;
    }
    let v = w - ZEROS;
    // Pairs of digits, then fours, then the eight (most significant digit in the lowest byte).
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let lo = (v & 0x0000_00ff_0000_00ff).wrapping_mul(100 + (1_000_000 << 32));
    let hi = ((v >> 16) & 0x0000_00ff_0000_00ff).wrapping_mul(1 + (10_000 << 32));
    Some((lo.wrapping_add(hi) >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u32_codes_read_as_the_standard_parser_reads_them() {
        for s in [
            "",
            "+",
            "-",
            "0",
            "+0",
            "-0",
            "7",
            "150456",
            "000150456",
            "999999999",
            "1000000000",
            "4294967295",
            "4294967296",
            "00000000004294967295",
            "99999999999",
            " 1",
            "1 ",
            "1.0",
            "1e3",
            "MDC_PULS",
            "+-1",
            "++1",
            "١",
            "0x10",
            "12a",
            "\u{0}",
        ] {
            assert_eq!(parse_u32(s), s.parse::<u32>().ok(), "{s:?}");
        }
        // And over a spread of every length up to eleven digits.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 12) as usize;
            let text: String = (0..len)
                .map(|i| char::from(b'0' + ((x >> (4 * i)) % 10) as u8))
                .collect();
            assert_eq!(parse_u32(&text), text.parse::<u32>().ok(), "{text:?}");
            // One byte of the number replaced by each byte that borders or mimics a digit.
            if len > 0 {
                let at = ((x >> 40) as usize) % len;
                for bad in [
                    b'/',
                    b':',
                    b' ',
                    b'+',
                    b'-',
                    b'.',
                    0x00,
                    0x39 + 0x80,
                    0xff,
                    0x20,
                ] {
                    let mut bytes = text.clone().into_bytes();
                    bytes[at] = bad;
                    if let Ok(t) = String::from_utf8(bytes) {
                        assert_eq!(parse_u32(&t), t.parse::<u32>().ok(), "{t:?}");
                    }
                }
                let plus = format!("+{text}");
                assert_eq!(parse_u32(&plus), plus.parse::<u32>().ok(), "{plus:?}");
            }
        }
    }

    fn same(s: &str) {
        let want = s.parse::<f64>().ok().map(f64::to_bits);
        assert_eq!(parse_f64(s).map(f64::to_bits), want, "{s:?}");
    }

    #[test]
    fn plain_and_odd_forms_match_the_standard_parser() {
        for s in [
            "0",
            "-0",
            "+0",
            "117",
            "3.9",
            "-3.9",
            "38.40",
            ".5",
            "5.",
            "-.5",
            "+7.25",
            "0.1",
            "0.3",
            "123456789012345",
            "1234567890123456",
            "0.000000000000001",
            "99.99999999999999",
            "1e3",
            "1E-2",
            "inf",
            "-inf",
            "NaN",
            "",
            "-",
            "+",
            ".",
            "1.2.3",
            "12a",
            " 1",
            "1 ",
            "--1",
            "0x10",
            "١٢",
        ] {
            same(s);
        }
    }

    /// Random decimals of every length up to 17 digits, with and without sign and point.
    #[test]
    fn random_decimals_match_the_standard_parser() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let r = next();
            let len = 1 + (r % 17) as usize;
            let mut s = String::new();
            match (r >> 8) % 3 {
                0 => s.push('-'),
                1 => s.push('+'),
                _ => {}
            }
            let point = ((r >> 16) % (len as u64 + 2)) as usize;
            let mut d = next();
            for i in 0..len {
                if i == point {
                    s.push('.');
                }
                s.push(char::from(b'0' + (d % 10) as u8));
                d /= 10;
                if d == 0 {
                    d = next();
                }
            }
            same(&s);
        }
    }
}
