//! Arbitrary bytes through the HL7 parser and decoder, walking every piece: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::protocol::hl7::{decode, parse, parse_ts, split_messages, DecodeOptions};

fuzz_target!(|data: &[u8]| {
    let opts = DecodeOptions::default();
    for chunk in split_messages(data) {
        let Ok(m) = parse(chunk) else {
            continue;
        };
        let _ = decode(&m, &opts);
        let _ = (m.control_id(), m.message_type(), m.version(), m.charset());
        let _ = m.get("PID-3[2].4");
        let _ = m.get("OBX[2]-5.1.1");
        for s in m.segments() {
            for f in s.fields() {
                let _ = f.decoded();
                let _ = parse_ts(f.as_str(), 0);
                for r in f.repetitions() {
                    for c in r.components() {
                        let _ = c.decoded();
                        for sc in c.subcomponents() {
                            let _ = sc.decoded();
                        }
                    }
                }
            }
        }
    }
});
