//! Records per second through the open window's push path: dedup check-and-insert plus the
//! column-store push, for intents with 4 resource keys.
//!
//! `window/*` times `Window::handle_intent`, without and with the `Window::prefetch` hint a
//! frame driver can give (8 records ahead), each on the wall clock and on this thread's
//! on-CPU time (for shared machines). `parts/*` times the dedup table and the batch push
//! alone, to show where the time goes.
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
    for clock in [Clock::Wall, Clock::OnCpu] {
        for prefetch in [false, true] {
            let name = format!(
                "push_intent_4_keys_65536{}/{}",
                if prefetch { "_prefetch" } else { "" },
                clock.name()
            );
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let start = clock.now();
                        if prefetch {
                            fill_prefetch(&mut window, &mut nonce, now);
                        } else {
                            fill(&mut window, &mut nonce, now);
                        }
                        timed += clock.now() - start;
                        now += 1;
                        window.close(now, &mut out);
                        black_box(&out);
                    }
                    timed
                });
            });
        }
    }
    group.finish();
}

/// Wall time, or the time this thread spent on a CPU (Linux `/proc/thread-self/schedstat`).
/// The second is for shared machines: other processes' time slices are not counted, though
/// their cache pollution still is.
#[derive(Clone, Copy)]
enum Clock {
    Wall,
    OnCpu,
}

impl Clock {
    fn name(self) -> &'static str {
        match self {
            Clock::Wall => "wall",
            Clock::OnCpu => "on_cpu",
        }
    }

    fn now(self) -> Duration {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        match self {
            Clock::Wall => START.get_or_init(Instant::now).elapsed(),
            Clock::OnCpu => std::fs::read_to_string("/proc/thread-self/schedstat")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .map(Duration::from_nanos)
                .unwrap_or_else(|| Clock::Wall.now()),
        }
    }
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

/// The two halves of the push path, separately (on-CPU time).
fn parts(c: &mut Criterion) {
    use fpn_engine::{Dedup, IntentBatch, IntentMeta};
    let mut group = c.benchmark_group("parts");
    group.throughput(Throughput::Elements(RECORDS as u64));
    let mut d = Dedup::new(16, RECORDS, 0);
    let mut w = 0u64;
    let mut nonce = 0u64;
    group.bench_function("dedup_only/on_cpu", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Clock::OnCpu.now();
                for _ in 0..RECORDS {
                    nonce += 1;
                    black_box(d.insert(nonce % CLIENTS, nonce, w, nonce).is_ok());
                }
                timed += Clock::OnCpu.now() - start;
                w += 1;
                d.advance(w);
            }
            timed
        });
    });
    let mut batch = IntentBatch::with_capacity(RECORDS, RECORDS * 8);
    group.bench_function("batch_only/on_cpu", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Clock::OnCpu.now();
                for _ in 0..RECORDS {
                    nonce += 1;
                    let n = nonce;
                    let keys = [n, n ^ 0x5555, n.rotate_left(17), n.wrapping_mul(3)];
                    let m = IntentMeta {
                        seq: n,
                        client_id: n % CLIENTS,
                        nonce: n,
                        profit: 1000,
                        priority: 0,
                        rx_ns: 0,
                    };
                    black_box(batch.push(m, &keys).is_ok());
                }
                timed += Clock::OnCpu.now() - start;
                batch.clear();
            }
            timed
        });
    });
    group.finish();
}

criterion_group!(benches, push_intents, parts);
criterion_main!(benches);
