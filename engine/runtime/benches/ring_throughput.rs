//! Ring throughput: one producer thread (CPU 0) and one consumer thread (CPU 1), both
//! spinning, moving 64-byte records through a 4096-slot ring. Reported as records/s.
//! Variants: the wrapper with `pop`, the wrapper with batched `drain`, and raw rtrb.
//!
//! Each sample spawns the consumer, pushes `iters` records and ends when the consumer has
//! them all, so both threads stop by themselves.
//!
//! Run: `cargo bench -p fpn-runtime --bench ring_throughput`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fpn_runtime::ring::ring;

const RING_CAPACITY: usize = 4096;
const DRAIN_BATCH_MAX: usize = 256;

/// A 64-byte record: a sequence number and payload.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Record {
    seq: u64,
    payload: [u8; 56],
}

/// The allowed CPUs, read once before any thread is pinned (a pinned thread's spawn
/// inherits its single-CPU mask, so asking again from there would find one CPU only).
static CPUS: std::sync::LazyLock<Vec<core_affinity::CoreId>> =
    std::sync::LazyLock::new(|| core_affinity::get_core_ids().unwrap_or_default());

fn pin(index: usize) {
    let core = CPUS.get(index).copied().unwrap_or_else(|| panic!("this bench needs CPU index {index}"));
    assert!(core_affinity::set_for_current(core), "pinning to {core:?} failed");
}

fn record(seq: u64) -> Record {
    Record { seq, payload: [seq as u8; 56] }
}

#[derive(Clone, Copy)]
enum Variant {
    WrapperPop,
    WrapperDrain,
    RawRtrb,
}

fn transfer(variant: Variant, count: u64) -> Duration {
    match variant {
        Variant::WrapperPop | Variant::WrapperDrain => {
            let (mut tx, mut rx) = ring::<Record>(RING_CAPACITY);
            let consumer = std::thread::spawn(move || {
                pin(1);
                let mut received = 0u64;
                let mut checksum = 0u64;
                while received < count {
                    match variant {
                        Variant::WrapperDrain => {
                            let n = rx.drain(DRAIN_BATCH_MAX, |r| checksum = checksum.wrapping_add(r.seq));
                            if n == 0 {
                                std::hint::spin_loop();
                            }
                            received += n as u64;
                        }
                        _ => match rx.pop() {
                            Some(r) => {
                                checksum = checksum.wrapping_add(r.seq);
                                received += 1;
                            }
                            None => std::hint::spin_loop(),
                        },
                    }
                }
                black_box(checksum);
            });
            let t0 = Instant::now();
            for seq in 0..count {
                let mut value = record(seq);
                while let Err(full) = tx.try_push(value) {
                    value = full.into_inner();
                    std::hint::spin_loop();
                }
            }
            consumer.join().unwrap();
            t0.elapsed()
        }
        Variant::RawRtrb => {
            let (mut tx, mut rx) = rtrb::RingBuffer::<Record>::new(RING_CAPACITY);
            let consumer = std::thread::spawn(move || {
                pin(1);
                let mut received = 0u64;
                let mut checksum = 0u64;
                while received < count {
                    match rx.pop() {
                        Ok(r) => {
                            checksum = checksum.wrapping_add(r.seq);
                            received += 1;
                        }
                        Err(_) => std::hint::spin_loop(),
                    }
                }
                black_box(checksum);
            });
            let t0 = Instant::now();
            for seq in 0..count {
                let mut value = record(seq);
                while let Err(rtrb::PushError::Full(back)) = tx.push(value) {
                    value = back;
                    std::hint::spin_loop();
                }
            }
            consumer.join().unwrap();
            t0.elapsed()
        }
    }
}

fn ring_throughput(c: &mut Criterion) {
    pin(0);
    let mut group = c.benchmark_group("ring_throughput_64b");
    group.throughput(Throughput::Elements(1));
    for (name, variant) in [
        ("fpn_ring_pop", Variant::WrapperPop),
        ("fpn_ring_drain", Variant::WrapperDrain),
        ("raw_rtrb", Variant::RawRtrb),
    ] {
        group.bench_function(name, |b| b.iter_custom(|iters| transfer(variant, iters)));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = ring_throughput
}
criterion_main!(benches);
