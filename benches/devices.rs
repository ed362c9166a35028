//! Device protocol decode throughput, per driver: frames per second on one core.
//!
//! Each driver decodes a minute of its own simulator's output (made in memory, device to host),
//! fed in 64-byte reads as a port delivers them. `Throughput::Elements` is the number of frames
//! in the capture, so criterion reports frames/s; a second figure includes normalization to
//! observations.

use std::sync::Mutex;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use vigil::model::Timestamp;
use vigil::normalize::{NormalizeSettings, NormalizeTables, Normalizer};
use vigil::protocol::profile::ProfileSet;
use vigil::sources::serial::drivers::DriverSpec;
use vigil::sources::serial::DeviceFeed;

const DRIVERS: [&str; 5] = [
    "intellivue",
    "medibus",
    "datex",
    "profile:ivy-450c",
    "profile:ascii-pump",
];

fn decode(c: &mut Criterion) {
    let t0 = Timestamp::from_millis(1_767_600_000_000);
    let profiles = ProfileSet::builtin();
    let mut group = c.benchmark_group("device_decode");
    for name in DRIVERS {
        let spec = DriverSpec::parse(name, &profiles).expect("driver");
        let bytes = spec.capture(60, t0).expect("capture");
        let mut events = Vec::new();
        let mut out = Vec::new();
        let mut probe = spec.driver();
        for chunk in bytes.chunks(64) {
            probe.on_bytes(chunk, t0, &mut events, &mut out);
        }
        let frames = probe.stats().frames.max(1);
        group.throughput(Throughput::Elements(frames));
        group.bench_with_input(BenchmarkId::new("frames", name), &bytes, |b, bytes| {
            b.iter(|| {
                let mut d = spec.driver();
                let mut events = Vec::new();
                let mut out = Vec::new();
                for chunk in bytes.chunks(64) {
                    d.on_bytes(chunk, t0, &mut events, &mut out);
                    events.clear();
                    out.clear();
                }
                d.stats().frames
            })
        });
        group.bench_with_input(BenchmarkId::new("normalized", name), &bytes, |b, bytes| {
            let tables = NormalizeTables::builtin().expect("tables");
            b.iter(|| {
                let n = Mutex::new(Normalizer::new(
                    tables.clone(),
                    NormalizeSettings::default(),
                ));
                let mut feed = DeviceFeed::new("bench", "serial", None, Some("ICU"), Some("B1"));
                let mut d = spec.driver();
                let mut events = Vec::new();
                let mut out = Vec::new();
                let mut records = 0usize;
                for chunk in bytes.chunks(64) {
                    d.on_bytes(chunk, t0, &mut events, &mut out);
                    out.clear();
                    for n in feed.on_events(&mut events, &n, t0).normalized {
                        records += n.records.len();
                    }
                }
                records
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
