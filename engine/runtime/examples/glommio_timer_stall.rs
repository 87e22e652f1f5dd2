//! Evidence for `docs/runtime.md`: glommio 0.9 can lose the wake-up of a timer sleep.
//!
//! One executor pinned to CPU 0 sleeps `park_us` in a loop with a preempt timer of
//! `preempt_us`; a watchdog thread prints progress every second and exits with status 2
//! ("STALL") when no sleep completed for a second, or 0 after `limit_s` seconds.
//!
//! `cargo run --profile bench -p fpn-runtime --example glommio_timer_stall -- 100 1000 20`
//! stalled within seconds on the dev VM (kernel 6.18); with a 10-100 ms preempt timer no
//! stall showed in 20 s. While stalled the executor thread sits in `io_cqring_wait`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

fn arg(index: usize, default: u64) -> u64 {
    std::env::args().nth(index).and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() {
    let park = Duration::from_micros(arg(1, 100));
    let preempt = Duration::from_micros(arg(2, 1000));
    let limit = Duration::from_secs(arg(3, 20));
    let progress = Arc::new(AtomicU64::new(0));
    let watched = progress.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut last = 0;
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = watched.load(Ordering::Relaxed);
            println!("{:?}: {now} sleeps of {park:?} (preempt timer {preempt:?})", started.elapsed());
            if now == last {
                println!("STALL");
                std::process::exit(2);
            }
            if started.elapsed() >= limit {
                println!("no stall");
                std::process::exit(0);
            }
            last = now;
        }
    });
    let executor = LocalExecutorBuilder::new(Placement::Fixed(0))
        .io_memory(1 << 20)
        .preempt_timer(preempt)
        .make()
        .expect("glommio executor on CPU 0");
    executor.run(async {
        loop {
            glommio::timer::sleep(park).await;
            progress.fetch_add(1, Ordering::Relaxed);
        }
    });
}
