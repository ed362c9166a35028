//! Arbitrary bytes fed in arbitrary chunks: never panics, frames respect the cap and the
//! decoder never holds more than the cap plus the largest read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::protocol::mllp::{MllpDecoder, MllpError, VT};

fuzz_target!(|data: &[u8]| {
    // First two bytes choose the cap and the chunk pattern; the rest is the stream.
    let (Some(&cap), Some(&step)) = (data.first(), data.get(1)) else {
        return;
    };
    // Small caps (0..128) probe the boundary; larger ones (up to ~16 KiB) let real messages
    // through.
    let max = if cap < 128 {
        usize::from(cap)
    } else {
        usize::from(cap - 128) * 128
    };
    let stream = &data[2..];
    let mut d = MllpDecoder::new(max);
    let mut at = 0;
    let mut largest = 0;
    let mut i = 0usize;
    while at < stream.len() {
        // Chunk sizes cycle through 1..=step+1, varied by position.
        let len = 1 + (usize::from(step) + i * 7) % (usize::from(step) + 1);
        let end = (at + len).min(stream.len());
        let chunk = &stream[at..end];
        at = end;
        i += 1;
        largest = largest.max(chunk.len());
        d.feed(chunk);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.len() <= max);
                    assert!(!f.payload().contains(&VT));
                }
                Ok(None) => break,
                Err(MllpError::UnterminatedFrame { len, partial, .. }) => {
                    assert!(len <= max);
                    assert_eq!(partial.len(), len);
                }
                Err(MllpError::FrameTooLarge { limit, seen, .. }) => {
                    assert_eq!(limit, max);
                    assert!(seen > max);
                    assert_eq!(d.buffered(), 0);
                    break;
                }
            }
        }
        assert!(d.buffered() <= max + 2);
        assert!(d.held_bytes() <= 2 * (max + 2 + largest) + 64);
    }
});
