//! Cost of each idle action on a pinned glommio executor (CPU 0), the numbers behind the
//! idle-strategy trade-off in `docs/runtime.md`:
//! - `spin_hint`: one `std::hint::spin_loop()`.
//! - `yield`: one task-level yield with nothing else runnable.
//! - `park_timer/<d>`: one glommio timer sleep of `d` (`ParkMode::ExecutorTimer`);
//!   criterion's time is the real time asleep.
//! - `park_thread/<d>`: one thread sleep of `d` on the executor thread (`ParkMode::ThreadSleep`).
//!
//! A watchdog thread ends the process if no action completes for 10 s (glommio 0.9 can lose
//! a timer wake-up, see `docs/runtime.md`), so the bench always stops by itself.
//!
//! After criterion, one pass of parks per length prints the wake-up overshoot percentiles
//! (time asleep minus the requested park) and the executor thread's CPU use while parked.
//!
//! Run: `cargo bench -p fpn-runtime --bench idle`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fpn_runtime::idle::{IdleAction, ParkMode};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};

const PARKS: [Duration; 3] =
    [Duration::from_micros(50), Duration::from_micros(100), Duration::from_millis(1)];
const OVERSHOOT_PARKS: u32 = 500;
const MODES: [(&str, ParkMode); 2] =
    [("park_timer", ParkMode::ExecutorTimer), ("park_thread", ParkMode::ThreadSleep)];

static PROGRESS: AtomicU64 = AtomicU64::new(0);

/// Ends the process if no park completes for 10 s.
fn start_watchdog() {
    std::thread::spawn(|| {
        let mut last = u64::MAX;
        loop {
            std::thread::sleep(Duration::from_secs(10));
            let now = PROGRESS.load(Ordering::Relaxed);
            if now == last {
                eprintln!("idle bench: no park completed for 10 s (lost glommio timer wake-up); exiting");
                std::process::exit(3);
            }
            last = now;
        }
    });
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID needs no other state.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn executor() -> LocalExecutor {
    LocalExecutorBuilder::new(Placement::Fixed(0))
        .preempt_timer(fpn_runtime::exec::PREEMPT_TIMER_DEFAULT)
        .io_memory(fpn_runtime::exec::IO_MEMORY_BYTES_DEFAULT)
        .make()
        .expect("glommio executor on CPU 0")
}

fn idle(c: &mut Criterion) {
    start_watchdog();
    // As on the executor threads `exec::start` makes.
    fpn_runtime::exec::set_timer_slack_ns(1).unwrap();
    let ex = executor();
    let mut group = c.benchmark_group("idle");
    group.bench_function("spin_hint", |b| {
        b.iter_custom(|iters| {
            ex.run(async {
                let t0 = Instant::now();
                PROGRESS.fetch_add(1, Ordering::Relaxed);
                for _ in 0..iters {
                    IdleAction::Spin.perform(ParkMode::ExecutorTimer).await;
                }
                t0.elapsed()
            })
        })
    });
    group.bench_function("yield", |b| {
        b.iter_custom(|iters| {
            ex.run(async {
                let t0 = Instant::now();
                PROGRESS.fetch_add(1, Ordering::Relaxed);
                for _ in 0..iters {
                    IdleAction::Yield.perform(ParkMode::ExecutorTimer).await;
                }
                t0.elapsed()
            })
        })
    });
    group.sample_size(10).measurement_time(Duration::from_secs(2));
    for (name, mode) in MODES {
        for park in PARKS {
            group.bench_with_input(BenchmarkId::new(name, format!("{park:?}")), &park, |b, &park| {
                b.iter_custom(|iters| {
                    ex.run(async {
                        let t0 = Instant::now();
                        for _ in 0..iters {
                            IdleAction::Park(park).perform(mode).await;
                            PROGRESS.fetch_add(1, Ordering::Relaxed);
                        }
                        t0.elapsed()
                    })
                })
            });
        }
    }
    group.finish();

    for (name, mode) in MODES {
        for park in PARKS {
            let (histogram, wall, cpu) = ex.run(async {
                let mut histogram =
                    hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
                let (wall0, cpu0) = (Instant::now(), thread_cpu_time());
                for _ in 0..OVERSHOOT_PARKS {
                    let t0 = Instant::now();
                    IdleAction::Park(park).perform(mode).await;
                    PROGRESS.fetch_add(1, Ordering::Relaxed);
                    let overshoot = t0.elapsed().saturating_sub(park);
                    histogram.saturating_record((overshoot.as_nanos() as u64).max(1));
                }
                (histogram, wall0.elapsed(), thread_cpu_time() - cpu0)
            });
            println!(
                "{name} {park:?}: overshoot p50 {} us, p99 {} us, max {} us; executor thread CPU {:.1} % while parking",
                histogram.value_at_quantile(0.5) / 1000,
                histogram.value_at_quantile(0.99) / 1000,
                histogram.max() / 1000,
                100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = idle
}
criterion_main!(benches);
