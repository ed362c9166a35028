//! Arbitrary bytes into the IntelliVue driver, raw or wrapped in a valid frame so the message
//! decoder sees them: never panics, and the framing counters stay consistent with the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::model::Timestamp;
use vigil::protocol::device::DeviceDriver;
use vigil::protocol::intellivue::frame::encode_frame;
use vigil::protocol::intellivue::IntellivueDriver;

fuzz_target!(|data: &[u8]| {
    let (Some(&mode), Some(&step)) = (data.first(), data.get(1)) else {
        return;
    };
    let rest = &data[2..];
    let mut driver = IntellivueDriver::default();
    let mut events = Vec::new();
    let mut out = Vec::new();
    let t0 = Timestamp::from_millis(1_770_000_000_000);
    // Odd modes start a live session, so replies and polls are written too.
    if mode & 1 == 1 {
        driver.on_connect(t0, &mut out);
    }
    let stream: Vec<u8> = if mode & 2 == 2 {
        // Wrapped: one frame per 0x00-separated piece, each with a good FCS.
        let mut wire = Vec::new();
        for piece in rest.split(|&b| b == 0x00) {
            let _ = encode_frame(piece, &mut wire);
        }
        wire
    } else {
        rest.to_vec()
    };
    let chunk = usize::from(step % 64) + 1;
    for (i, c) in stream.chunks(chunk).enumerate() {
        let now = t0.plus_ms(i as i64 * 97);
        driver.on_bytes(c, now, &mut events, &mut out);
        driver.on_tick(now, &mut events, &mut out);
        events.clear();
        out.clear();
    }
    let s = driver.stats();
    assert!(s.discarded_bytes <= stream.len() as u64);
    assert!(s.frames + s.checksum_failures <= stream.len() as u64 / 2 + 1);
});
