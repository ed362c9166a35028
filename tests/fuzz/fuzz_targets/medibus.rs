//! Arbitrary bytes into the MEDIBUS decoder and driver, in arbitrary chunks: no panic, partial
//! messages never above the cap, every emitted number finite, counters consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::model::Timestamp;
use vigil::protocol::device::{DeviceDriver, DeviceEvent, ReadingValue};
use vigil::protocol::medibus::{Decoded, MedibusDecoder, MedibusDriver, MedibusSettings};

fuzz_target!(|data: &[u8]| {
    // First byte: the cap (8..=263) and whether the driver is connected; second: the chunking.
    let (Some(&sel), Some(&step)) = (data.first(), data.get(1)) else {
        return;
    };
    let cap = 8 + usize::from(sel);
    let stream = &data[2..];

    let mut decoder = MedibusDecoder::new(cap);
    let mut driver = MedibusDriver::new(MedibusSettings {
        max_message_len: cap,
        ..Default::default()
    });
    let mut now = Timestamp::from_millis(1_767_261_600_000);
    let mut out = Vec::new();
    let mut events = Vec::new();
    if sel & 1 == 1 {
        driver.on_connect(now, &mut out);
    }

    let mut decoded = Vec::new();
    let mut at = 0;
    let mut i = 0usize;
    while at < stream.len() {
        let len = 1 + (usize::from(step) + i * 13) % (usize::from(step) + 1);
        let end = (at + len).min(stream.len());
        let chunk = &stream[at..end];
        at = end;
        i += 1;

        decoder.decode(chunk, &mut decoded);
        // A response and one command nested in it, each within the cap.
        assert!(decoder.buffered() <= 2 * cap);
        for d in decoded.drain(..) {
            if let Decoded::Message(m) = d {
                assert!(m.data.len() + 4 <= cap);
            }
        }

        driver.on_bytes(chunk, now, &mut events, &mut out);
        driver.on_tick(now, &mut events, &mut out);
        for e in events.drain(..) {
            if let DeviceEvent::Report(r) = e {
                for reading in r.readings {
                    if let ReadingValue::Num(v) = reading.value {
                        assert!(v.is_finite());
                    }
                }
            }
        }
        // What the driver writes is well-formed MEDIBUS.
        let mut check = MedibusDecoder::default();
        let mut msgs = Vec::new();
        check.decode(&out, &mut msgs);
        assert_eq!(check.stats().checksum_failures, 0);
        assert_eq!(check.buffered(), 0);
        out.clear();
        now = now.plus_ms(i64::from(step) * 7);
    }

    let d = decoder.stats();
    let s = driver.stats();
    // Both saw the same bytes through the same framing.
    assert_eq!(d.frames, s.frames);
    assert_eq!(d.checksum_failures, s.checksum_failures);
    assert_eq!(d.skipped_bytes, s.skipped_bytes);
    assert!(d.skipped_bytes + d.discarded_bytes <= stream.len() as u64);
});
