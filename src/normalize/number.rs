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
/// three times a row, and the standard parser's generality costs several times this loop.
pub fn parse_u32(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    let digits = match b {
        [b'+', rest @ ..] => rest,
        _ => b,
    };
    if digits.is_empty() {
        return None;
    }
    if digits.len() > 9 {
        // Ten digits may overflow: the standard parser decides.
        return s.parse().ok();
    }
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
