//! Arbitrary bytes fed in arbitrary chunks to the S/5 driver and the bare framer: never
//! panics, the framer stays within its cap, and every record framed from the payload comes
//! back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::model::Timestamp;
use vigil::protocol::datex::{encode_frame, DatexDriver, DatexSettings, FrameDecoder};
use vigil::protocol::device::DeviceDriver;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the chunk pattern and the framer cap; the rest is the stream.
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let cap = 2 + usize::from(step);
    let mut driver = DatexDriver::new(DatexSettings::default());
    let mut framer = FrameDecoder::new(cap);
    let (mut events, mut out) = (Vec::new(), Vec::new());
    let mut now = Timestamp::from_millis(1_767_254_400_000);
    driver.on_connect(now, &mut out);
    let mut at = 0;
    let mut i = 0usize;
    while at < stream.len() {
        let len = 1 + (usize::from(step) + i * 7) % (usize::from(step) + 1);
        let end = (at + len).min(stream.len());
        let chunk = &stream[at..end];
        at = end;
        i += 1;
        driver.on_bytes(chunk, now, &mut events, &mut out);
        driver.on_tick(now, &mut events, &mut out);
        framer.decode(chunk, |rec| assert!(rec.len() < cap));
        assert!(framer.buffered() <= cap);
        now = now.plus_ms(997);
        events.clear();
        out.clear();
    }
    let s = driver.stats();
    assert!(s.frames + s.checksum_failures <= stream.len() as u64);

    // Round trip: the stream as one record must come back as itself.
    if !stream.is_empty() {
        let mut wire = Vec::new();
        encode_frame(stream, &mut wire);
        let mut d = FrameDecoder::new(stream.len() + 1);
        let mut got = Vec::new();
        d.decode(&wire, |rec| got.push(rec.to_vec()));
        assert_eq!(got, vec![stream.to_vec()]);
    }
});
