//! Records per second through the open window's push path: dedup check-and-insert plus the
//! column-store push, for intents with 4 resource keys.
//!
//! Each iteration fills one window of 65,536 records. Only the pushes are timed; the close
//! (swap + window advance) runs between iterations outside the timed part. Nonces keep
//! growing, so the dedup table is at steady state (inserting while expiring the window that
//! falls out of the 16-window horizon), which is the cost the engine pays in production.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fpn_engine::{ClosedWindow, Window, WindowConfig};

const RECORDS: usize = 65_536;
const CLIENTS: u64 = 1_024;

fn push_intents(c: &mut Criterion) {
    let cfg = WindowConfig::with_records_max(RECORDS);
    let mut window = Window::new(cfg, 0, 0);
    let mut out = ClosedWindow::new(&cfg);
    let mut nonce = 0u64;
    let mut now = 0u64;

    // Fill the whole dedup horizon first, so every timed window also expires an old one.
    for _ in 0..cfg.dedup_horizon_windows {
        fill(&mut window, &mut nonce, now);
        now += 1;
        window.close(now, &mut out);
    }

    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("push_intent_4_keys_65536", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                fill(&mut window, &mut nonce, now);
                timed += start.elapsed();
                now += 1;
                window.close(now, &mut out);
                black_box(&out);
            }
            timed
        });
    });
    // Same, with the driver-side hint a frame decoder can give: prefetch the dedup slot of
    // the record `PREFETCH_AHEAD` positions ahead.
    group.bench_function("push_intent_4_keys_65536_prefetch", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                fill_prefetch(&mut window, &mut nonce, now);
                timed += start.elapsed();
                now += 1;
                window.close(now, &mut out);
                black_box(&out);
            }
            timed
        });
    });
    group.finish();
}

#[inline(never)]
fn fill(window: &mut Window, nonce: &mut u64, now: u64) {
    for _ in 0..RECORDS {
        *nonce += 1;
        let n = *nonce;
        let client_id = n % CLIENTS;
        let keys = [n, n ^ 0x5555, n.rotate_left(17), n.wrapping_mul(3)];
        let r = window.handle_intent(now, client_id, n, 1_000 + (n & 0xff), 0, now, &keys);
        debug_assert!(r.is_ok());
        black_box(r.ok());
    }
}

const PREFETCH_AHEAD: u64 = 8;

#[inline(never)]
fn fill_prefetch(window: &mut Window, nonce: &mut u64, now: u64) {
    for _ in 0..RECORDS {
        *nonce += 1;
        let n = *nonce;
        let ahead = n + PREFETCH_AHEAD;
        window.prefetch(ahead % CLIENTS, ahead);
        let client_id = n % CLIENTS;
        let keys = [n, n ^ 0x5555, n.rotate_left(17), n.wrapping_mul(3)];
        let r = window.handle_intent(now, client_id, n, 1_000 + (n & 0xff), 0, now, &keys);
        debug_assert!(r.is_ok());
        black_box(r.ok());
    }
}

criterion_group!(benches, push_intents);
criterion_main!(benches);
