//! Spool throughput: durable appends per second with 1 and with 16 concurrent appenders, and
//! the drain rate (read in batches of 256, acknowledge each batch) of a filled spool.
//!
//! Every append waits for its `fdatasync`; with 16 appenders the writer commits what queued
//! during the previous sync in one go, so the figure shows the group-commit gain. The device
//! under the temporary directory decides the numbers: run it on the disk the spool will use
//! (`TMPDIR=/var/lib/vigil cargo bench --bench spool`). `Throughput::Elements(1)` per append,
//! so criterion reports appends/s. Records are 200-byte payloads with a 6-byte key (234 bytes
//! framed), about the size of one encoded observation batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use vigil::model::Timestamp;
use vigil::spool::{Spool, SpoolConfig};

fn appends(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let payload = Arc::new(vec![b'x'; 200]);
    let mut group = c.benchmark_group("spool_append");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    for appenders in [1u64, 16] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = Arc::new(
            rt.block_on(Spool::open(SpoolConfig::new(tmp.path())))
                .expect("open"),
        );
        group.bench_with_input(
            BenchmarkId::new("appenders", appenders),
            &appenders,
            |b, &n| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        let mut tasks = tokio::task::JoinSet::new();
                        for t in 0..n {
                            let count = iters / n + u64::from(t < iters % n);
                            let (spool, payload) = (spool.clone(), payload.clone());
                            tasks.spawn(async move {
                                for _ in 0..count {
                                    spool.append(b"bed-07", &payload).await.expect("append");
                                }
                            });
                        }
                        while let Some(done) = tasks.join_next().await {
                            done.expect("appender");
                        }
                        start.elapsed()
                    })
                })
            },
        );
        let stats = spool.stats(Timestamp::now_wall());
        eprintln!(
            "spool_append/appenders/{appenders}: {} appends in {} fdatasyncs ({:.1} appends per sync)",
            stats.appends,
            stats.fsyncs,
            stats.appends as f64 / stats.fsyncs.max(1) as f64
        );
        rt.block_on(spool.close()).expect("close");
    }
    group.finish();
}

/// Drains a spool filled beforehand (the fill is not timed): what the forwarder does when the
/// broker comes back, minus the broker.
fn drain(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let payload = vec![b'x'; 200];
    let mut group = c.benchmark_group("spool_drain");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.bench_function("batch_256", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let tmp = tempfile::tempdir().expect("tempdir");
                let spool = Spool::open(SpoolConfig::new(tmp.path()))
                    .await
                    .expect("open");
                // Fill with 16 appenders so the fill's syncs are grouped.
                let spool = Arc::new(spool);
                let mut tasks = tokio::task::JoinSet::new();
                for t in 0..16u64 {
                    let count = iters / 16 + u64::from(t < iters % 16);
                    let (spool, payload) = (spool.clone(), payload.clone());
                    tasks.spawn(async move {
                        for _ in 0..count {
                            spool.append(b"bed-07", &payload).await.expect("append");
                        }
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    done.expect("appender");
                }
                let start = Instant::now();
                let mut read = 0u64;
                while read < iters {
                    let batch = spool.peek_batch(256).await.expect("peek");
                    let Some(last) = batch.last() else { break };
                    read += batch.len() as u64;
                    spool.ack(last.seq).await.expect("ack");
                }
                spool.flush_cursor().await.expect("cursor");
                let took = start.elapsed();
                assert_eq!(read, iters, "every appended record is read back");
                spool.close().await.expect("close");
                took
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = appends, drain
}
criterion_main!(benches);
