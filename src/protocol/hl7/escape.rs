//! HL7 escape sequences: resolving them when reading (`\F\`, `\S\`, `\T\`, `\R\`, `\E\`,
//! `\P\`, `\Xhh..\`, `\.br\`) and writing them when encoding text into a field.

use std::borrow::Cow;

use memchr::memchr;

use super::parse::{find_byte, Delimiters};

/// Resolves escape sequences. Unknown or unterminated sequences are kept verbatim: text from
/// the wire is never rejected for its escapes. Borrows when there is nothing to resolve.
pub fn unescape<'t>(raw: &'t str, d: &Delimiters) -> Cow<'t, str> {
    let esc = d.escape;
    let bytes = raw.as_bytes();
    let Some(first) = find_byte(esc, bytes) else {
        return Cow::Borrowed(raw);
    };
    let mut out = String::with_capacity(raw.len());
    let mut last = 0;
    let mut i = first;
    loop {
        out.push_str(raw.get(last..i).unwrap_or(""));
        let Some(close) = bytes.get(i + 1..).and_then(|r| memchr(esc, r)) else {
            out.push_str(raw.get(i..).unwrap_or(""));
            return Cow::Owned(out);
        };
        let j = i + 1 + close;
        let seq = raw.get(i + 1..j).unwrap_or("");
        if !resolve(seq, d, &mut out) {
            out.push_str(raw.get(i..=j).unwrap_or(""));
        }
        last = j + 1;
        match bytes.get(last..).and_then(|r| memchr(esc, r)) {
            Some(n) => i = last + n,
            None => {
                out.push_str(raw.get(last..).unwrap_or(""));
                return Cow::Owned(out);
            }
        }
    }
}

/// Appends what `seq` (the text between two escape characters) stands for; false if unknown.
fn resolve(seq: &str, d: &Delimiters, out: &mut String) -> bool {
    let c = match seq {
        "F" => d.field,
        "S" => d.component,
        "T" => d.subcomponent,
        "R" => d.repetition,
        "E" => d.escape,
        "P" => match d.truncation {
            Some(t) => t,
            None => return false,
        },
        ".br" => b'\n',
        // Highlight on/off: formatting only, no text.
        "H" | "N" => return true,
        _ => return seq.strip_prefix('X').is_some_and(|hex| push_hex(hex, out)),
    };
    out.push(char::from(c));
    true
}

/// `\Xhhhh\`: bytes in hex; UTF-8 when they form it, else Latin-1 (one char per byte).
fn push_hex(hex: &str, out: &mut String) -> bool {
    let h = hex.as_bytes();
    if h.is_empty() || h.len() % 2 != 0 {
        return false;
    }
    let mut bytes = Vec::with_capacity(h.len() / 2);
    for pair in h.chunks_exact(2) {
        match (hex_val(pair[0]), hex_val(pair[1])) {
            (Some(a), Some(b)) => bytes.push(a << 4 | b),
            _ => return false,
        }
    }
    match std::str::from_utf8(&bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.extend(bytes.iter().map(|&b| char::from(b))),
    }
    true
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Escapes `text` so it can stand as one field, component or subcomponent value.
/// Line breaks become `\.br\` (CRLF counts once); other control characters become `\Xhh\`.
pub fn escape(text: &str, d: &Delimiters) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    let e = char::from(d.escape);
    while let Some(c) = chars.next() {
        let code = |letter: char, out: &mut String| {
            out.push(e);
            out.push(letter);
            out.push(e);
        };
        match c {
            _ if c == char::from(d.field) => code('F', &mut out),
            _ if c == char::from(d.component) => code('S', &mut out),
            _ if c == char::from(d.subcomponent) => code('T', &mut out),
            _ if c == char::from(d.repetition) => code('R', &mut out),
            _ if c == e => code('E', &mut out),
            _ if d.truncation.map(char::from) == Some(c) => code('P', &mut out),
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(e);
                out.push_str(".br");
                out.push(e);
            }
            _ if c.is_ascii_control() => {
                out.push(e);
                out.push_str(&format!("X{:02X}", c as u32));
                out.push(e);
            }
            _ => out.push(c),
        }
    }
    out
}
