//! Property tests for the sans-I/O protocol code: MLLP framing under arbitrary read splits and
//! byte soup, ACK build → parse round trips, and HL7 escaping round trips.

use proptest::prelude::*;
use vigil::protocol::hl7::{
    build_ack, escape, parse, parse_ack, AckCode, AckErr, Delimiters, ErrLocation,
};
use vigil::protocol::mllp::{encode_frame, Frame, MllpDecoder, MllpError, VT};

/// Feeds `wire` in pieces ending at `cuts` and drains after each feed, checking the memory
/// bound as it goes.
fn decode_chunked(
    d: &mut MllpDecoder,
    wire: &[u8],
    cuts: &[usize],
) -> Vec<Result<Vec<u8>, MllpError>> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut largest = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    ends.push(wire.len());
    ends.sort_unstable();
    for end in ends {
        let chunk = &wire[at..end];
        at = end;
        d.feed(chunk);
        // Held memory is bounded by the cap plus the largest read so far (allocations are
        // reused, and grow by doubling).
        largest = largest.max(chunk.len());
        let bound = d.max_frame() + 2 + chunk.len();
        assert!(d.buffered() <= bound, "buffered {} > {bound}", d.buffered());
        let held_bound = 2 * (d.max_frame() + 2 + largest) + 64;
        assert!(d.held_bytes() <= held_bound, "held {}", d.held_bytes());
        drain(d, &mut out);
        assert!(
            d.buffered() <= d.max_frame() + 2,
            "after drain {}",
            d.buffered()
        );
        if d.is_failed() {
            // Spent: the server closes the connection here.
            assert_eq!(d.held_bytes(), 0);
            break;
        }
    }
    out
}

fn drain(d: &mut MllpDecoder, out: &mut Vec<Result<Vec<u8>, MllpError>>) {
    loop {
        match d.next_frame() {
            Ok(Some(f)) => out.push(Ok(check_frame(d, f))),
            Ok(None) => return,
            Err(e) => {
                let fatal = matches!(e, MllpError::FrameTooLarge { .. });
                out.push(Err(e));
                if fatal {
                    return;
                }
            }
        }
    }
}

fn check_frame(d: &MllpDecoder, f: Frame) -> Vec<u8> {
    assert!(f.len() <= d.max_frame());
    assert!(!f.payload().contains(&VT));
    f.into_payload()
}

/// The size reached when the cap tripped depends on how the bytes were split; nothing else may.
fn without_seen(r: Vec<Result<Vec<u8>, MllpError>>) -> Vec<Result<Vec<u8>, MllpError>> {
    r.into_iter()
        .map(|x| match x {
            Err(MllpError::FrameTooLarge { limit, offset, .. }) => Err(MllpError::FrameTooLarge {
                limit,
                seen: 0,
                offset,
            }),
            other => other,
        })
        .collect()
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        any::<u8>().prop_filter("no markers", |b| *b != 0x0B && *b != 0x1C),
        0..300,
    )
}

/// Bytes rich in MLLP markers: about half of them are VT, FS, CR or ACK. A plain byte vector
/// mapped afterwards keeps generation and shrinking cheap.
fn soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..1500).prop_map(|v| {
        v.into_iter()
            .map(|b| match b {
                0..=39 => 0x0B,
                40..=79 => 0x1C,
                80..=119 => 0x0D,
                120..=129 => 0x06,
                _ => b,
            })
            .collect()
    })
}

/// Five distinct legal delimiters: field, component, repetition, escape, subcomponent.
fn delimiters() -> impl Strategy<Value = Delimiters> {
    let pool: Vec<u8> = b"|^~\\&#$%@*!+-/:;=?_".to_vec();
    (Just(pool.clone()).prop_shuffle(), any::<bool>()).prop_map(|(p, trunc)| Delimiters {
        field: p[0],
        component: p[1],
        repetition: p[2],
        escape: p[3],
        subcomponent: p[4],
        truncation: trunc.then_some(p[5]),
    })
}

/// Text as it reads back after escaping: line breaks become `\n` (CRLF once).
fn normalized(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

fn header(d: &Delimiters, control_id: &str, version: &str) -> String {
    let f = char::from(d.field);
    let c = char::from(d.component);
    format!(
        "MSH{f}{enc}{f}MON{c}1{f}ICU{f}VIGIL{f}HOSP{f}20240101{f}{f}ORU{c}R01{c}{structure}{f}{id}{f}P{f}{version}{f}{f}{f}AL{f}NE\r",
        enc = d.encoding_characters(),
        id = escape(control_id, d),
        structure = escape("ORU_R01", d),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (a) Encoded payloads split at arbitrary points decode to the same payloads.
    #[test]
    fn encoded_payloads_survive_any_split(
        payloads in prop::collection::vec(payload(), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut wire = Vec::new();
        for p in &payloads {
            encode_frame(p, &mut wire);
        }
        let mut d = MllpDecoder::new(300);
        let got = decode_chunked(&mut d, &wire, &cuts);
        let want: Vec<Result<Vec<u8>, MllpError>> = payloads.into_iter().map(Ok).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(d.skipped_bytes(), 0);
        prop_assert_eq!(d.buffered(), 0);
    }

    /// (b) Byte soup never panics, never holds more than the cap allows, and decodes the same
    /// whatever the read boundaries.
    #[test]
    fn byte_soup_is_bounded_and_split_independent(
        soup in soup(),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
        max in 0usize..64,
    ) {
        let mut chunked = MllpDecoder::new(max);
        let a = decode_chunked(&mut chunked, &soup, &cuts);
        let mut whole = MllpDecoder::new(max);
        let b = decode_chunked(&mut whole, &soup, &[]);
        prop_assert_eq!(without_seen(a), without_seen(b));
        if !chunked.is_failed() {
            prop_assert_eq!(chunked.skipped_bytes(), whole.skipped_bytes());
        }
    }

    /// (c) An ACK built for any control id, error text and delimiter set reads back the same.
    #[test]
    fn ack_round_trips(
        d in delimiters(),
        control_id in "\\PC{0,30}",
        new_id in "[ -~]{0,20}",
        text in any::<String>(),
        code in prop::sample::select(vec![AckCode::AA, AckCode::AE, AckCode::AR, AckCode::CA, AckCode::CE, AckCode::CR]),
        err_code in 100u16..300,
        version in prop::sample::select(vec!["2.3.1", "2.5", "2.6", "2.8"]),
    ) {
        let f = char::from(d.field);
        let raw = header(&d, &control_id, version) + &format!("PID{f}{f}{f}1\r");
        let m = parse(raw.as_bytes()).unwrap();
        prop_assert_eq!(m.msh().field(10).decoded(), normalized(&control_id));
        let err = AckErr::new(err_code, text.clone()).at(ErrLocation::field("OBX", 2, 5));
        let ack = build_ack(&m, code, Some(&err), "20240101120000", &new_id);
        let back = parse_ack(ack.as_bytes()).unwrap();
        prop_assert_eq!(back.code, code);
        prop_assert_eq!(back.control_id, normalized(&control_id));
        prop_assert_eq!(back.ack_control_id, new_id);
        let am = parse(ack.as_bytes()).unwrap();
        prop_assert_eq!(am.delimiters(), d);
        prop_assert_eq!(am.version(), version);
        if code.is_accept() {
            prop_assert_eq!(back.error_code, None);
            prop_assert_eq!(back.error_text, None);
        } else {
            prop_assert_eq!(back.error_code, Some(err_code));
            let t = normalized(&text).trim().to_owned();
            if !t.is_empty() {
                prop_assert_eq!(back.error_text, Some(t));
            }
        }
    }

    /// (d) Field values written with `escape` parse back to the same decoded values.
    #[test]
    fn escaped_fields_parse_back(
        d in delimiters(),
        values in prop::collection::vec(any::<String>(), 1..12),
    ) {
        let f = char::from(d.field);
        let mut raw = header(&d, "C1", "2.6");
        raw.push_str("ZZ1");
        for v in &values {
            raw.push(f);
            raw.push_str(&escape(v, &d));
        }
        raw.push('\r');
        let m = parse(raw.as_bytes()).unwrap();
        let seg = m.segment("ZZ1").unwrap();
        for (i, v) in values.iter().enumerate() {
            let field = seg.field(i + 1);
            prop_assert_eq!(field.decoded(), normalized(v));
            prop_assert_eq!(field.component(1).decoded(), normalized(v));
            prop_assert_eq!(field.repetitions().count(), 1);
        }
    }
}
