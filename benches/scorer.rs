//! Scorer throughput: observation ingest + evaluation of all scores, for one patient and
//! interleaved across 1,000 patients. Run with `cargo bench --bench scorer`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vigil::model::{
    Code, CodeSystem, Drug, IngestRecord, ObsId, Observation, Origin, Param, Timestamp, Value,
};
use vigil::scorer::{Scorer, ScoringTables};

const T0: i64 = 1_767_225_600_000;

/// A bedside mix: vitals every second in rotation, with a gas, labs and a pump now and then.
fn stream(patients: usize, per_patient: usize) -> Vec<IngestRecord> {
    let vitals = [
        (Param::HeartRate, 95.0),
        (Param::SpO2, 94.0),
        (Param::RespRate, 23.0),
        (Param::SbpArt, 98.0),
        (Param::MapArt, 64.0),
        (Param::Temp, 38.4),
        (Param::FiO2, 40.0),
        (Param::Peep, 8.0),
    ];
    let mut out = Vec::with_capacity(patients * per_patient);
    for i in 0..per_patient {
        for p in 0..patients {
            let (param, value) = match i % 97 {
                13 => (Param::PaO2, 75.0),
                41 => (Param::Lactate, 2.6),
                57 => (Param::Platelets, 90.0),
                71 => (Param::Dose(Drug::Norepinephrine), 0.12),
                83 => (Param::Gcs, 13.0),
                _ => vitals[i % vitals.len()],
            };
            let t = Timestamp(T0 + (i as i64) * 1000);
            out.push(IngestRecord::Observation(Observation {
                schema: 1,
                id: ObsId::of_text(&format!("{p}-{i}")),
                origin: Arc::new(Origin {
                    unit: Some("ICU".into()),
                    bed: Some(p.to_string().into()),
                    patient: Some(format!("P{p}").into()),
                    ..Origin::default()
                }),
                code: Code {
                    system: CodeSystem::Local,
                    code: param.name().into(),
                    refid: None,
                },
                param: Some(param),
                value: Value::Num(value + (i % 5) as f64 * 0.1),
                ucum: param.canonical_unit().into(),
                device_time: Some(t),
                receive_time: t,
                corrected_time: t,
                quality: Vec::new(),
            }));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let tables = ScoringTables::builtin();
    let mut g = c.benchmark_group("scorer");

    let one = stream(1, 10_000);
    g.throughput(Throughput::Elements(one.len() as u64));
    g.bench_function("ingest_evaluate_1_patient", |b| {
        b.iter_batched(
            || Scorer::new(tables.clone()),
            |mut s| {
                for r in &one {
                    black_box(s.handle(r));
                }
                s
            },
            BatchSize::LargeInput,
        )
    });

    let many = stream(1_000, 20);
    g.throughput(Throughput::Elements(many.len() as u64));
    g.bench_function("ingest_evaluate_1000_patients", |b| {
        b.iter_batched(
            || Scorer::new(tables.clone()),
            |mut s| {
                for r in &many {
                    black_box(s.handle(r));
                }
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
