//! The input log's append path (`docs/log.md`) against a plain sequential write of the same
//! bytes to the same disk, in the same run.
//!
//! - `log_role`: what the log role does per group commit: encode a group of intake messages
//!   (`fpn_log::Encoder`, intents of 4 keys, 96 bytes per entry) into a batch, seal it
//!   (crc32c), append it with one io_uring write linked to an `fdatasync`
//!   (`flashpointd::run::log_file::SegmentWriter`) and wait for the completion.
//! - `plain_write`: the same sealed bytes with `write(2)` and `fdatasync(2)` on a file opened
//!   the plain way.
//!
//! Throughput is records per second; bytes per record are printed once. Groups of 64 records
//! (latency-bound: one `fdatasync` per 6 KB) and 4,096 (bandwidth-bound: 390 KB). The files
//! go under `target/bench-log` (on the same disk as the build, not a tmpfs).
//!
//! Run: `cargo bench -p flashpointd --bench log_append`.

use std::io::Write;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flashpointd::run::log_file::{Appended, SegmentWriter};
use fpn_engine::IntentMeta;
use fpn_engine::shard::{IntentMsg, ToBuilder};
use fpn_log::{BatchBuffer, Encoder, LogMsg};

/// A segment is started afresh (the old one deleted) past this many bytes.
const SEGMENT_BYTES: u64 = 256 << 20;

fn dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-log");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn messages(n: usize) -> Vec<LogMsg> {
    (0..n as u64)
        .map(|i| {
            let meta = IntentMeta {
                seq: i + 1,
                client_id: i % 64,
                nonce: i,
                profit: 1 + i % 1000,
                priority: 0,
                rx_ns: i,
            };
            let keys = [i, i + 1, i + 2, i + 3];
            LogMsg::Builder { shard: 0, msg: ToBuilder::Intent(IntentMsg::new(1, meta, keys.into_iter())) }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = dir();
    let mut g = c.benchmark_group("log_append");
    let mut index = 0;
    for records in [64usize, 4096] {
        let msgs = messages(records);
        let mut encoder = Encoder::new(1);
        let mut batch = BatchBuffer::with_capacity(records * 128);
        for m in &msgs {
            encoder.push(0, m, &mut batch);
        }
        let sealed = batch.seal().to_vec();
        eprintln!(
            "log_append: {records} records per group, {} bytes ({} per record)",
            sealed.len(),
            sealed.len() / records
        );
        g.throughput(Throughput::Elements(records as u64));

        index += 1;
        let mut writer = SegmentWriter::create(&dir, index, b"").unwrap();
        g.bench_function(format!("log_role/{records}"), |b| {
            b.iter(|| {
                batch.clear();
                for m in &msgs {
                    encoder.push(0, m, &mut batch);
                }
                let bytes = batch.seal();
                if writer.bytes() + bytes.len() as u64 > SEGMENT_BYTES {
                    let old = dir.join(fpn_log::segment_file_name(index));
                    index += 1;
                    let path = dir.join(fpn_log::segment_file_name(index));
                    writer.install(index, flashpointd::run::log_file::create(&path, b"").unwrap(), 0);
                    std::fs::remove_file(old).unwrap();
                }
                // SAFETY: `batch` is neither changed nor moved until `wait` returned.
                unsafe { writer.submit(bytes).unwrap() };
                assert_eq!(writer.wait().unwrap().unwrap(), Appended::Durable);
            })
        });
        drop(writer);

        let path = dir.join("plain");
        let mut file = std::fs::File::create(&path).unwrap();
        let mut len = 0u64;
        g.bench_function(format!("plain_write/{records}"), |b| {
            b.iter(|| {
                if len + sealed.len() as u64 > SEGMENT_BYTES {
                    file = std::fs::File::create(&path).unwrap();
                    len = 0;
                }
                file.write_all(&sealed).unwrap();
                file.sync_data().unwrap();
                len += sealed.len() as u64;
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The two paths alternated group by group (the disk's speed drifts by 2× between
/// criterion's runs of one and the other on the dev VM): p50 and p99 of each, and their
/// ratio. `LOG_APPEND_ROUNDS` (default 2,000) groups each.
fn interleaved(_: &mut Criterion) {
    let rounds: usize = std::env::var("LOG_APPEND_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let dir = dir();
    for records in [64usize, 4096] {
        let msgs = messages(records);
        let mut encoder = Encoder::new(1);
        let mut batch = BatchBuffer::with_capacity(records * 128);
        let mut writer = SegmentWriter::create(&dir, 1, b"").unwrap();
        let mut plain = std::fs::File::create(dir.join("plain")).unwrap();
        let (mut log_ns, mut plain_ns) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
        let mut sealed = Vec::new();
        for _ in 0..rounds.min(if records > 64 { rounds / 8 } else { rounds }) {
            let t = std::time::Instant::now();
            batch.clear();
            for m in &msgs {
                encoder.push(0, m, &mut batch);
            }
            let bytes = batch.seal();
            // SAFETY: `batch` is neither changed nor moved until `wait` returned.
            unsafe { writer.submit(bytes).unwrap() };
            assert_eq!(writer.wait().unwrap().unwrap(), Appended::Durable);
            log_ns.push(t.elapsed().as_nanos() as u64);
            sealed.clear();
            sealed.extend_from_slice(batch.bytes());
            let t = std::time::Instant::now();
            plain.write_all(&sealed).unwrap();
            plain.sync_data().unwrap();
            plain_ns.push(t.elapsed().as_nanos() as u64);
        }
        let pct = |v: &mut Vec<u64>, q: f64| {
            v.sort_unstable();
            v[((v.len() - 1) as f64 * q) as usize] as f64 / 1e3
        };
        let (l50, l99, p50, p99) = (
            pct(&mut log_ns, 0.5),
            pct(&mut log_ns, 0.99),
            pct(&mut plain_ns, 0.5),
            pct(&mut plain_ns, 0.99),
        );
        let bytes = batch.bytes().len() as f64;
        eprintln!(
            "log_append interleaved, {records} records ({bytes} B) per group, {} groups each: log role p50 {l50:.0} µs p99 {l99:.0} µs ({:.1} MB/s at p50); plain write p50 {p50:.0} µs p99 {p99:.0} µs ({:.1} MB/s); log/plain throughput at p50 {:.0}%",
            log_ns.len(),
            bytes / l50,
            bytes / p50,
            p50 / l50 * 100.0
        );
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
    }
}

criterion_group!(benches, interleaved, bench);
criterion_main!(benches);
