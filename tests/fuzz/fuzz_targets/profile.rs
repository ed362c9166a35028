//! Arbitrary bytes in arbitrary chunks through the shipped profiles' drivers (Ivy 450C lines
//! with waveform bytes, the STX/ETX sum8 pump): never panics, the framer never holds more than
//! the profile's cap, and every byte is counted at most once as skipped or discarded.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use vigil::model::Timestamp;
use vigil::protocol::device::DeviceDriver;
use vigil::protocol::profile::{ProfileDriver, ProfileSet};

fuzz_target!(|data: &[u8]| {
    // First byte: profile (low bit) and chunk pattern; the rest is the stream.
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let set = ProfileSet::builtin();
    let name = if sel & 1 == 0 { "ivy-450c" } else { "ascii-pump" };
    let Some(profile) = set.get(name) else {
        return;
    };
    let step = usize::from(sel >> 1) + 1;
    let mut d = ProfileDriver::new(Arc::clone(&profile));
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut now = Timestamp::from_millis(1_767_600_000_000);
    d.on_connect(now, &mut out);
    let mut at = 0;
    let mut i = 0usize;
    while at < stream.len() {
        let len = 1 + (step + i * 7) % step;
        let end = (at + len).min(stream.len());
        d.on_bytes(&stream[at..end], now, &mut events, &mut out);
        assert!(d.buffered() <= profile.max_frame + 8);
        at = end;
        i += 1;
        now = now.plus_ms(37);
        d.on_tick(now, &mut events, &mut out);
    }
    let s = d.stats();
    assert!(s.discarded_bytes + s.skipped_bytes <= stream.len() as u64);
    assert!(s.frames + s.checksum_failures <= stream.len() as u64);
});
