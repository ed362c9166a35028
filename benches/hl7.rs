//! HL7 parse, parse+decode and parse+normalize throughput on a realistic PCD-01 ORU^R01
//! (2.1 KB, 20 OBX).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

use vigil::model::Timestamp;
use vigil::normalize::{NormalizeSettings, NormalizeTables, Normalizer};
use vigil::protocol::hl7::{decode, parse, DecodeOptions, Decoded};

const ADMIT: &str = "MSH|^~\\&|ADT|HOSP|VIGIL|ICU|20250301100000||ADT^A01^ADT_A01|A1|P|2.5\rEVN|A01|20250301100000\rPID|||HO2009001^^^^MR||Doe^Jane\rPV1||I|3 West ICU^3002^1||||||||||||||||V1\rOBX|1|NM|29463-7^Body weight^LN||70|kg|||||F\r";

/// A bedside monitor report shaped like the IHE PCD-01 Philips example: MDS/VMD/channel rows,
/// NIBP, ECG, SpO2, temperature and respiration metrics (2.1 KB, 20 OBX). Shared with
/// `scripts/bench-peers.sh`, which runs the same message through other HL7 libraries.
const PCD01: &str = include_str!("data/pcd01_20obx.hl7");

fn bench(c: &mut Criterion) {
    let input = PCD01.as_bytes();
    // Guard the fixture: 20 OBX, all decoded.
    let msg = parse(input).expect("fixture parses");
    let opts = DecodeOptions {
        default_offset_min: 60,
    };
    match decode(&msg, &opts).expect("fixture decodes") {
        Decoded::Observations(r) => assert_eq!(r.rows().count(), 20),
        Decoded::Adt(_) => unreachable!(),
    }

    let mut g = c.benchmark_group("hl7_pcd01");
    for (unit, tp) in [
        ("msgs", Throughput::Elements(1)),
        ("bytes", Throughput::Bytes(input.len() as u64)),
    ] {
        g.throughput(tp);
        g.bench_with_input(BenchmarkId::new("parse", unit), input, |b, i| {
            b.iter(|| parse(black_box(i)).map(|m| m.segment_count()))
        });
        g.bench_with_input(BenchmarkId::new("parse_decode", unit), input, |b, i| {
            b.iter(|| {
                let m = parse(black_box(i)).expect("parses");
                match decode(&m, &opts) {
                    Ok(Decoded::Observations(r)) => r.groups.len(),
                    _ => 0,
                }
            })
        });
    }
    // Parse + decode + normalize: codes, units, plausibility, artifacts, patient from the census.
    let mut normalizer = Normalizer::new(
        NormalizeTables::builtin().expect("built-in tables"),
        NormalizeSettings::default(),
    );
    let t = Timestamp::parse_rfc3339("2025-03-01T10:15:01Z").expect("time");
    normalizer.hl7("adt", ADMIT.as_bytes(), t).expect("admit");
    let n = normalizer
        .hl7("monitors", input, t)
        .expect("fixture normalizes");
    assert_eq!(n.unassociated, 0);
    for (unit, tp) in [
        ("msgs", Throughput::Elements(1)),
        ("bytes", Throughput::Bytes(input.len() as u64)),
    ] {
        g.throughput(tp);
        g.bench_with_input(BenchmarkId::new("parse_normalize", unit), input, |b, i| {
            b.iter(|| {
                normalizer
                    .hl7("monitors", black_box(i), t)
                    .map(|n| n.records.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
