//! Builds every kind of ACK for whatever parses (and a reject for whatever does not), then
//! reads it back: the ACK must parse and echo the control ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::protocol::hl7::{
    build_ack, build_unparsed_ack, encode_ack, parse, parse_ack, AckCode, AckErr, ErrLocation,
    TextEncoding,
};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the code; the tail after the last NUL is the error text.
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (msg, text) = match rest.iter().rposition(|&b| b == 0) {
        Some(i) => (
            &rest[..i],
            String::from_utf8_lossy(&rest[i + 1..]).into_owned(),
        ),
        None => (rest, String::from("fuzz |^~\\&# text")),
    };
    let codes = [
        AckCode::AA,
        AckCode::AE,
        AckCode::AR,
        AckCode::CA,
        AckCode::CE,
        AckCode::CR,
    ];
    let code = codes[usize::from(sel) % codes.len()];
    match parse(msg) {
        Ok(m) => {
            let err = AckErr::new(102, text.clone()).at(ErrLocation::field("OBX", 1, 5));
            let ack = build_ack(&m, code, Some(&err), "20240101120000", "ACK|1");
            let bytes = encode_ack(&ack, &m);
            let back = match parse_ack(&bytes) {
                Ok(b) => b,
                Err(e) => panic!("ACK does not read back: {e}\n{ack:?}"),
            };
            assert_eq!(back.code, code);
            assert_eq!(back.ack_control_id, "ACK|1");
            // The sender's MSH-10 bytes come back unchanged.
            let id = encode_ack(m.msh().field(10).as_str(), &m);
            assert!(id.is_empty() || bytes.windows(id.len()).any(|w| w == id));
            // Read back as the same text, unless the original was Latin-1 only by detection
            // (invalid UTF-8, nothing declared): the shorter ACK may then be valid UTF-8.
            let guessed = m.text_encoding() == TextEncoding::Latin1
                && !m.charset().trim().eq_ignore_ascii_case("8859/1");
            if !guessed {
                assert_eq!(back.control_id, m.msh().field(10).decoded());
            }
            if !code.is_accept() {
                assert_eq!(back.error_code, Some(102));
            }
        }
        Err(e) => {
            let ack = build_unparsed_ack(msg, &e, "20240101120000", "R1");
            let back = match parse_ack(ack.as_bytes()) {
                Ok(b) => b,
                Err(e) => panic!("reject does not read back: {e}\n{ack:?}"),
            };
            assert_eq!(back.code, AckCode::AR);
            assert!(matches!(back.error_code, Some(100 | 102)));
        }
    }
});
