use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::format::{decode_frame, SEGMENT_HEADER_LEN};
use super::*;

/// Hang protection only: nothing here should take more than a fraction of it.
const HANG: Duration = Duration::from_secs(30);

/// Runs a test body on a current-thread runtime, failing it if it hangs.
fn bounded(body: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(4 * HANG, body)
            .await
            .expect("test hung");
    });
}

fn small_config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 256,
        max_record_bytes: 200,
        ..SpoolConfig::new(dir)
    }
}

/// Key and payload of test record `i`: 70 bytes framed (three per 256-byte segment).
fn record(i: u64) -> (Vec<u8>, Vec<u8>) {
    let key = format!("k{}", i % 10).into_bytes();
    let payload = format!("payload-{i:032}").into_bytes();
    (key, payload)
}

async fn append_n(spool: &Spool, range: std::ops::RangeInclusive<u64>) -> Vec<SeqNo> {
    let mut seqs = Vec::new();
    for i in range {
        let (k, p) = record(i);
        seqs.push(
            spool
                .append_at(&k, &p, Timestamp::from_millis(i as i64))
                .await
                .expect("append"),
        );
    }
    seqs
}

/// Reads and acknowledges everything available.
async fn drain(spool: &Spool) -> Vec<SpoolRecord> {
    let mut out = Vec::new();
    loop {
        let batch = spool.peek_batch(7).await.expect("peek");
        let Some(last) = batch.last() else {
            return out;
        };
        spool.ack(last.seq).await.expect("ack");
        out.extend(batch);
    }
}

fn payloads(records: &[SpoolRecord]) -> Vec<Vec<u8>> {
    records.iter().map(|r| r.payload.clone()).collect()
}

fn expected_payloads(ids: impl IntoIterator<Item = u64>) -> Vec<Vec<u8>> {
    ids.into_iter().map(|i| record(i).1).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

/// Record boundaries (end offsets) of a segment file.
fn record_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut off = SEGMENT_HEADER_LEN as usize;
    while let Ok((_, len)) = decode_frame(bytes.get(off..).unwrap_or_default()) {
        off += len;
        ends.push(off);
    }
    ends
}

#[test]
fn round_trip_in_order_with_keys_and_times() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(SpoolConfig::new(tmp.path()))
            .await
            .expect("open");
        let seqs = append_n(&spool, 1..=20).await;
        assert_eq!(seqs, (1..=20).map(SeqNo).collect::<Vec<_>>());
        let empty = spool.append(b"", b"").await.expect("empty record");
        assert_eq!(empty, SeqNo(21));

        let got = drain(&spool).await;
        assert_eq!(got.len(), 21);
        for (i, r) in got.iter().take(20).enumerate() {
            let n = i as u64 + 1;
            assert_eq!(r.seq, SeqNo(n));
            assert_eq!((r.key.clone(), r.payload.clone()), record(n));
            assert_eq!(r.appended_at, Timestamp::from_millis(n as i64));
        }
        assert!(got
            .last()
            .is_some_and(|r| r.key.is_empty() && r.payload.is_empty()));
        let stats = spool.stats(Timestamp::from_millis(0));
        assert_eq!(
            (stats.records, stats.bytes, stats.appends, stats.drains),
            (0, 0, 21, 21)
        );
        assert_eq!(stats.oldest_age_ms, None);
        spool.close().await.expect("close");

        // Everything was acknowledged and the cursor persisted at close: nothing comes back.
        let spool = Spool::open(SpoolConfig::new(tmp.path()))
            .await
            .expect("reopen");
        assert!(spool.peek_batch(100).await.expect("peek").is_empty());
        assert_eq!(
            spool.append(b"k", b"next").await.expect("append"),
            SeqNo(22)
        );
        assert_eq!(payloads(&drain(&spool).await), vec![b"next".to_vec()]);
    });
}

#[test]
fn peek_is_repeatable_until_ack_and_ack_beyond_read_is_refused() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(SpoolConfig::new(tmp.path()))
            .await
            .expect("open");
        append_n(&spool, 1..=5).await;
        let first = spool.peek_batch(3).await.expect("peek");
        let again = spool.peek_batch(3).await.expect("peek");
        assert_eq!(first, again);
        assert_eq!(
            first.iter().map(|r| r.seq.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(matches!(
            spool.ack(SeqNo(5)).await,
            Err(SpoolError::AckOutOfRange {
                upto: SeqNo(5),
                last_read: SeqNo(3)
            })
        ));
        spool.ack(SeqNo(2)).await.expect("ack");
        spool
            .ack(SeqNo(1))
            .await
            .expect("acking the past is a no-op");
        let rest = spool.peek_batch(10).await.expect("peek");
        assert_eq!(
            rest.iter().map(|r| r.seq.0).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(spool.stats(Timestamp::from_millis(100)).records, 3);
        assert_eq!(
            spool.stats(Timestamp::from_millis(100)).oldest_age_ms,
            Some(97)
        );
    });
}

#[test]
fn unpersisted_acks_are_redelivered_after_a_crash() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = SpoolConfig {
            cursor_every_acks: 1000,
            cursor_every_ms: 3_600_000,
            ..SpoolConfig::new(tmp.path().join("live"))
        };
        let spool = Spool::open(config.clone()).await.expect("open");
        append_n(&spool, 1..=10).await;
        let batch = spool.peek_batch(4).await.expect("peek");
        assert_eq!(batch.len(), 4);
        spool.ack(SeqNo(4)).await.expect("ack");

        // A crash now leaves the directory as it is: the ack is not on disk yet.
        let crashed = tmp.path().join("crash1");
        copy_dir(&config.dir, &crashed);
        let reopened = Spool::open(SpoolConfig::new(&crashed))
            .await
            .expect("open copy");
        assert_eq!(payloads(&drain(&reopened).await), expected_payloads(1..=10));

        spool.flush_cursor().await.expect("flush");
        let crashed = tmp.path().join("crash2");
        copy_dir(&config.dir, &crashed);
        let reopened = Spool::open(SpoolConfig::new(&crashed))
            .await
            .expect("open copy");
        assert_eq!(payloads(&drain(&reopened).await), expected_payloads(5..=10));
        assert_eq!(reopened.stats(Timestamp::from_millis(0)).drains, 6);
    });
}

#[test]
fn cursor_is_written_every_n_acks() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = SpoolConfig {
            cursor_every_acks: 3,
            cursor_every_ms: 3_600_000,
            ..SpoolConfig::new(tmp.path().join("live"))
        };
        let spool = Spool::open(config.clone()).await.expect("open");
        append_n(&spool, 1..=10).await;
        for seq in 1..=4 {
            spool.peek_batch(1).await.expect("peek");
            spool.ack(SeqNo(seq)).await.expect("ack");
        }
        // The third ack wrote the cursor, the fourth did not.
        let crashed = tmp.path().join("crash");
        copy_dir(&config.dir, &crashed);
        let reopened = Spool::open(SpoolConfig::new(&crashed))
            .await
            .expect("open copy");
        assert_eq!(payloads(&drain(&reopened).await), expected_payloads(4..=10));
    });
}

#[test]
fn segments_roll_and_forwarded_ones_are_deleted() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(small_config(tmp.path())).await.expect("open");
        append_n(&spool, 1..=10).await;
        // Three 70-byte records per 256-byte segment.
        let names: Vec<_> = segment_files(tmp.path())
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(String::from))
            .collect();
        assert_eq!(
            names,
            [1, 4, 7, 10].map(format::segment_file_name).to_vec(),
            "segments named after their first record"
        );
        let stats = spool.stats(Timestamp::from_millis(0));
        assert_eq!((stats.segments, stats.records, stats.bytes), (4, 10, 700));
        assert_eq!(stats.disk_bytes, 3 * 218 + 78);

        let batch = spool.peek_batch(5).await.expect("peek");
        spool.ack(SeqNo(5)).await.expect("ack");
        assert_eq!(batch.len(), 5);
        // Segment 1 is forwarded (and deleted at once), segment 4 is not finished.
        assert_eq!(segment_files(tmp.path()).len(), 3);
        let rest = drain(&spool).await;
        assert_eq!(payloads(&rest), expected_payloads(6..=10));
        // The active segment stays.
        assert_eq!(
            segment_files(tmp.path()),
            vec![tmp.path().join(format::segment_file_name(10))]
        );
        let stats = spool.stats(Timestamp::from_millis(0));
        assert_eq!((stats.segments, stats.disk_bytes, stats.bytes), (1, 78, 0));

        // Appends go on in the same segment, then roll.
        append_n(&spool, 11..=13).await;
        assert_eq!(segment_files(tmp.path()).len(), 2);
        spool.close().await.expect("close");
        let spool = Spool::open(small_config(tmp.path())).await.expect("reopen");
        assert_eq!(payloads(&drain(&spool).await), expected_payloads(11..=13));
    });
}

#[test]
fn concurrent_appenders_share_fsyncs_and_keep_their_order() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = Arc::new(
            Spool::open(SpoolConfig::new(tmp.path()))
                .await
                .expect("open"),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..16u64 {
            let spool = spool.clone();
            tasks.spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..8u64 {
                    let payload = format!("{t}:{i}");
                    seqs.push(spool.append(&t.to_le_bytes(), payload.as_bytes()).await);
                }
                seqs
            });
        }
        let mut all = Vec::new();
        while let Some(seqs) = tasks.join_next().await {
            let seqs: Vec<SeqNo> = seqs
                .expect("task")
                .into_iter()
                .map(|s| s.expect("append"))
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "one task's appends in order"
            );
            all.extend(seqs);
        }
        all.sort();
        assert_eq!(all, (1..=128).map(SeqNo).collect::<Vec<_>>());
        let stats = spool.stats(Timestamp::from_millis(0));
        assert_eq!(stats.appends, 128);
        // 16 appenders issue their appends in the same scheduler pass; the writer takes what
        // queued during each sync, so there are far fewer syncs than appends.
        assert!(
            stats.fsyncs < 128,
            "no group commit: {} fsyncs",
            stats.fsyncs
        );

        let got = drain(&spool).await;
        assert_eq!(
            got.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=128).map(SeqNo).collect::<Vec<_>>()
        );
        for t in 0..16u64 {
            let mine: Vec<_> = got
                .iter()
                .filter(|r| r.key == t.to_le_bytes())
                .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
                .collect();
            assert_eq!(mine, (0..8).map(|i| format!("{t}:{i}")).collect::<Vec<_>>());
        }
    });
}

#[test]
fn a_full_spool_blocks_appends_until_acks_make_room() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = SpoolConfig {
            max_bytes: 700,
            ..small_config(tmp.path())
        };
        let spool = Arc::new(Spool::open(config).await.expect("open"));
        append_n(&spool, 1..=10).await;
        assert_eq!(spool.stats(Timestamp::from_millis(0)).bytes, 700);

        let blocked = {
            let spool = spool.clone();
            tokio::spawn(async move {
                let (k, p) = record(11);
                spool.append(&k, &p).await
            })
        };
        // It cannot complete: there is no room, whatever the timing.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!blocked.is_finished());
        let stats = spool.stats(Timestamp::from_millis(0));
        assert_eq!(
            (stats.records, stats.blocked_appends, stats.appends),
            (10, 1, 10)
        );

        spool.peek_batch(1).await.expect("peek");
        spool.ack(SeqNo(1)).await.expect("ack");
        let seq = tokio::time::timeout(HANG, blocked)
            .await
            .expect("unblocked")
            .expect("task")
            .expect("append");
        assert_eq!(seq, SeqNo(11));
        assert_eq!(spool.stats(Timestamp::from_millis(0)).bytes, 700);
        assert_eq!(payloads(&drain(&spool).await), expected_payloads(2..=11));
    });
}

#[test]
fn next_batch_waits_for_records() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = Arc::new(
            Spool::open(SpoolConfig::new(tmp.path()))
                .await
                .expect("open"),
        );
        let consumer = {
            let spool = spool.clone();
            tokio::spawn(async move { spool.next_batch(10).await })
        };
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!consumer.is_finished());
        spool.append(b"k", b"hello").await.expect("append");
        let batch = tokio::time::timeout(HANG, consumer)
            .await
            .expect("woken")
            .expect("task")
            .expect("batch");
        assert_eq!(payloads(&batch), vec![b"hello".to_vec()]);
    });
}

#[test]
fn close_stops_appends_and_readers() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(SpoolConfig::new(tmp.path()))
            .await
            .expect("open");
        spool.append(b"k", b"v").await.expect("append");
        spool.close().await.expect("close");
        spool.close().await.expect("close twice");
        assert!(matches!(
            spool.append(b"k", b"v").await,
            Err(SpoolError::Closed)
        ));
        // What is durable can still be read out, then the reader learns it is over.
        let batch = tokio::time::timeout(HANG, spool.next_batch(10))
            .await
            .expect("hang")
            .expect("batch");
        spool
            .ack(batch.last().map(|r| r.seq).unwrap_or(SeqNo(0)))
            .await
            .expect("ack");
        let end = tokio::time::timeout(HANG, spool.next_batch(10))
            .await
            .expect("hang");
        assert!(matches!(end, Err(SpoolError::Closed)));
    });
}

#[test]
fn oversized_records_and_bad_settings_are_refused() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(small_config(tmp.path())).await.expect("open");
        let big = vec![0u8; 200];
        assert!(matches!(
            spool.append(b"", &big).await,
            Err(SpoolError::RecordTooLarge {
                size: 228,
                max: 200
            })
        ));
        assert_eq!(spool.stats(Timestamp::from_millis(0)).bytes, 0);

        let bad = SpoolConfig {
            segment_bytes: 10,
            max_record_bytes: 2,
            max_bytes: 1,
            cursor_every_acks: 0,
            ..SpoolConfig::new("")
        };
        let Err(SpoolError::InvalidConfig(msg)) = bad.validate() else {
            panic!("accepted bad settings");
        };
        for needle in [
            "dir",
            "segment_bytes",
            "max_record_bytes 2 is outside",
            "cursor_every_acks",
        ] {
            assert!(msg.contains(needle), "{needle} missing from {msg}");
        }
        assert!(SpoolConfig::new("/x").validate().is_ok());
        let parsed: SpoolConfig =
            toml::from_str("dir = \"/var/spool\"\nmax_bytes = 5000000").expect("toml");
        assert_eq!(
            parsed,
            SpoolConfig {
                max_bytes: 5_000_000,
                ..SpoolConfig::new("/var/spool")
            }
        );
        assert!(toml::from_str::<SpoolConfig>("dir = \"/x\"\nmax_byte = 1").is_err());
    });
}

/// Three records in one segment, the segment's bytes and its record ends.
async fn one_segment_of_three(dir: &Path) -> (Vec<u8>, Vec<usize>) {
    let spool = Spool::open(small_config(dir)).await.expect("open");
    append_n(&spool, 1..=3).await;
    spool.close().await.expect("close");
    let files = segment_files(dir);
    assert_eq!(files.len(), 1);
    let bytes = fs::read(files.first().expect("segment")).expect("read");
    let ends = record_ends(&bytes);
    assert_eq!(ends.last().copied(), Some(bytes.len()));
    (bytes, ends)
}

#[test]
fn torn_tail_at_every_byte_offset_is_truncated_and_counted() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (bytes, ends) = one_segment_of_three(&tmp.path().join("orig")).await;
        let boundaries: Vec<usize> = std::iter::once(SEGMENT_HEADER_LEN as usize)
            .chain(ends.iter().copied())
            .collect();
        for cut in 0..=bytes.len() {
            let dir = tmp.path().join(format!("cut{cut}"));
            fs::create_dir_all(&dir).expect("mkdir");
            let seg = dir.join(format::segment_file_name(1));
            fs::write(&seg, bytes.get(..cut).expect("cut")).expect("write");

            let spool = Spool::open(small_config(&dir)).await.expect("open");
            let kept = ends.iter().filter(|&&e| e <= cut).count() as u64;
            let torn = cut != 0 && !boundaries.contains(&cut);
            let stats = spool.stats(Timestamp::from_millis(0));
            assert_eq!(stats.torn_tails, u64::from(torn), "cut {cut}");
            assert_eq!(stats.records, kept, "cut {cut}");
            assert_eq!(stats.corruptions, 0, "cut {cut}");
            if kept > 0 {
                let good_end = ends.get(kept as usize - 1).copied().unwrap_or(0) as u64;
                assert_eq!(
                    fs::metadata(&seg).expect("meta").len(),
                    good_end,
                    "cut {cut}: truncated"
                );
            } else {
                assert!(
                    !seg.exists(),
                    "cut {cut}: a segment without records is removed"
                );
            }
            // The next append follows the last good record, and reads back with the survivors.
            let (k, p) = record(100);
            assert_eq!(
                spool.append(&k, &p).await.expect("append"),
                SeqNo(kept + 1),
                "cut {cut}"
            );
            let got = drain(&spool).await;
            assert_eq!(
                payloads(&got),
                expected_payloads((1..=kept).chain([100])),
                "cut {cut}"
            );
            spool.close().await.expect("close");
            let again = Spool::open(small_config(&dir)).await.expect("reopen");
            assert_eq!(
                again.stats(Timestamp::from_millis(0)).torn_tails,
                0,
                "cut {cut}: clean now"
            );
            fs::remove_dir_all(&dir).expect("cleanup");
        }
    });
}

#[test]
fn a_bad_byte_in_the_last_segment_is_a_torn_tail_never_data() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (bytes, ends) = one_segment_of_three(&tmp.path().join("orig")).await;
        let second_start = ends.first().copied().expect("ends");
        // Every byte of the last two records: the damaged record and all after it go.
        for at in second_start..bytes.len() {
            let dir = tmp.path().join(format!("flip{at}"));
            fs::create_dir_all(&dir).expect("mkdir");
            let mut damaged = bytes.clone();
            if let Some(b) = damaged.get_mut(at) {
                *b ^= 0x5a;
            }
            fs::write(dir.join(format::segment_file_name(1)), &damaged).expect("write");
            let spool = Spool::open(small_config(&dir)).await.expect("open");
            let kept = ends.iter().filter(|&&e| e <= at).count() as u64;
            let stats = spool.stats(Timestamp::from_millis(0));
            assert_eq!((stats.torn_tails, stats.corruptions), (1, 0), "byte {at}");
            assert_eq!(
                payloads(&drain(&spool).await),
                expected_payloads(1..=kept),
                "byte {at}"
            );
            fs::remove_dir_all(&dir).expect("cleanup");
        }
    });
}

#[test]
fn corruption_in_a_sealed_segment_skips_to_the_next_segment() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let orig = tmp.path().join("orig");
        {
            let spool = Spool::open(small_config(&orig)).await.expect("open");
            append_n(&spool, 1..=8).await;
            spool.close().await.expect("close");
        }
        let files = segment_files(&orig);
        assert_eq!(files.len(), 3, "segments 1, 4, 7");
        let first = fs::read(files.first().expect("seg")).expect("read");
        let ends = record_ends(&first);
        assert_eq!(ends.len(), 3);
        for at in 0..first.len() {
            let dir = tmp.path().join(format!("rot{at}"));
            copy_dir(&orig, &dir);
            let mut damaged = first.clone();
            if let Some(b) = damaged.get_mut(at) {
                *b ^= 0x01;
            }
            fs::write(dir.join(format::segment_file_name(1)), &damaged).expect("write");
            let spool = Spool::open(small_config(&dir)).await.expect("open");
            let kept = ends.iter().filter(|&&e| e <= at).count() as u64;
            let stats = spool.stats(Timestamp::from_millis(0));
            assert_eq!((stats.corruptions, stats.torn_tails), (1, 0), "byte {at}");
            assert_eq!(stats.records, kept + 5, "byte {at}");
            let got = drain(&spool).await;
            assert_eq!(
                payloads(&got),
                expected_payloads((1..=kept).chain(4..=8)),
                "byte {at}"
            );
            // New appends continue after the newest record.
            assert_eq!(spool.append(b"k", b"new").await.expect("append"), SeqNo(9));
            // Once forwarded past, the damaged segment is deleted like any other.
            drain(&spool).await;
            assert!(
                !dir.join(format::segment_file_name(1)).exists(),
                "byte {at}"
            );
            fs::remove_dir_all(&dir).expect("cleanup");
        }
    });
}

#[test]
fn corruption_found_while_reading_is_skipped_and_counted() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(small_config(tmp.path())).await.expect("open");
        append_n(&spool, 1..=8).await;
        // Bit rot after open, in the second record of segment 1.
        let seg = tmp.path().join(format::segment_file_name(1));
        let mut bytes = fs::read(&seg).expect("read");
        let at = record_ends(&bytes).first().copied().expect("ends") + 30;
        if let Some(b) = bytes.get_mut(at) {
            *b ^= 0xff;
        }
        fs::write(&seg, &bytes).expect("write");
        let got = drain(&spool).await;
        assert_eq!(
            payloads(&got),
            expected_payloads([1].into_iter().chain(4..=8))
        );
        let stats = spool.stats(Timestamp::from_millis(0));
        assert_eq!((stats.corruptions, stats.records, stats.bytes), (1, 0, 0));
    });
}

#[test]
fn a_corrupt_cursor_means_everything_is_delivered_again() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let spool = Spool::open(SpoolConfig::new(tmp.path()))
                .await
                .expect("open");
            append_n(&spool, 1..=5).await;
            spool.peek_batch(3).await.expect("peek");
            spool.ack(SeqNo(3)).await.expect("ack");
            spool.close().await.expect("close");
        }
        let spool = Spool::open(SpoolConfig::new(tmp.path()))
            .await
            .expect("open");
        assert_eq!(payloads(&drain(&spool).await), expected_payloads(4..=5));
        spool.close().await.expect("close");
        drop(spool);
        fs::write(tmp.path().join("cursor"), b"garbage").expect("write");
        let spool = Spool::open(SpoolConfig::new(tmp.path()))
            .await
            .expect("open");
        assert_eq!(payloads(&drain(&spool).await), expected_payloads(1..=5));
    });
}

#[test]
fn oldest_age_follows_the_head_of_the_queue() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(small_config(tmp.path())).await.expect("open");
        let now = Timestamp::from_millis(10_000);
        assert_eq!(spool.stats(now).oldest_age_ms, None);
        append_n(&spool, 1..=5).await; // appended at 1..=5 ms
        assert_eq!(spool.stats(now).oldest_age_ms, Some(9_999));
        spool.peek_batch(4).await.expect("peek");
        spool.ack(SeqNo(4)).await.expect("ack");
        assert_eq!(spool.stats(now).oldest_age_ms, Some(9_995));
        spool.close().await.expect("close");
        let spool = Spool::open(small_config(tmp.path())).await.expect("reopen");
        assert_eq!(
            spool.stats(now).oldest_age_ms,
            Some(9_995),
            "dated from disk on open"
        );
        drain(&spool).await;
        assert_eq!(spool.stats(now).oldest_age_ms, None);
    });
}
