//! One ring hop between two threads pinned to two CPUs, both spinning: ping-pong over two
//! rings. Criterion's figure is the mean one-way hop (round trip / 2); after it, one pass of
//! 100 000 round trips is recorded into an HdrHistogram and its one-way p50/p99/p99.9 are
//! printed. Each recorded round trip includes two `Instant::now()` reads (~20-40 ns).
//!
//! Both threads spin for the whole bench; the echo thread ends on a sentinel value.
//!
//! Run: `cargo bench -p fpn-runtime --bench ring_hop`

use std::hint::black_box;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use fpn_runtime::ring::{Rx, Tx, ring};

const STOP: u64 = u64::MAX;
const HISTOGRAM_ROUND_TRIPS: u64 = 100_000;
const RING_CAPACITY: usize = 64;

/// The allowed CPUs, read once before any thread is pinned (a pinned thread's spawn
/// inherits its single-CPU mask, so asking again from there would find one CPU only).
static CPUS: std::sync::LazyLock<Vec<core_affinity::CoreId>> =
    std::sync::LazyLock::new(|| core_affinity::get_core_ids().unwrap_or_default());

fn pin(index: usize) {
    let core = CPUS.get(index).copied().unwrap_or_else(|| panic!("this bench needs CPU index {index}"));
    assert!(core_affinity::set_for_current(core), "pinning to {core:?} failed");
}

/// The two ends a ping-pong needs, for the wrapper and for raw rtrb.
trait PingPong: Send + 'static {
    type Echo: Send + 'static;
    fn pair() -> (Self, Self::Echo)
    where
        Self: Sized;
    fn round_trip(&mut self, value: u64) -> u64;
    /// Tells the echo thread to return (it does not answer).
    fn send_stop(&mut self);
    fn echo(echo: Self::Echo);
}

struct Wrapped {
    ping: Tx<u64>,
    pong: Rx<u64>,
}

impl PingPong for Wrapped {
    type Echo = (Rx<u64>, Tx<u64>);
    fn pair() -> (Self, Self::Echo) {
        let (ping_tx, ping_rx) = ring(RING_CAPACITY);
        let (pong_tx, pong_rx) = ring(RING_CAPACITY);
        (Wrapped { ping: ping_tx, pong: pong_rx }, (ping_rx, pong_tx))
    }
    #[inline]
    fn round_trip(&mut self, value: u64) -> u64 {
        let mut value = value;
        while let Err(full) = self.ping.try_push(value) {
            value = full.into_inner();
            std::hint::spin_loop();
        }
        loop {
            if let Some(v) = self.pong.pop() {
                return v;
            }
            std::hint::spin_loop();
        }
    }
    fn send_stop(&mut self) {
        while self.ping.try_push(STOP).is_err() {}
    }
    fn echo((mut rx, mut tx): Self::Echo) {
        loop {
            let Some(v) = rx.pop() else {
                std::hint::spin_loop();
                continue;
            };
            if v == STOP {
                return;
            }
            let mut v = v;
            while let Err(full) = tx.try_push(v) {
                v = full.into_inner();
            }
        }
    }
}

struct Raw {
    ping: rtrb::Producer<u64>,
    pong: rtrb::Consumer<u64>,
}

impl PingPong for Raw {
    type Echo = (rtrb::Consumer<u64>, rtrb::Producer<u64>);
    fn pair() -> (Self, Self::Echo) {
        let (ping_tx, ping_rx) = rtrb::RingBuffer::new(RING_CAPACITY);
        let (pong_tx, pong_rx) = rtrb::RingBuffer::new(RING_CAPACITY);
        (Raw { ping: ping_tx, pong: pong_rx }, (ping_rx, pong_tx))
    }
    #[inline]
    fn round_trip(&mut self, value: u64) -> u64 {
        let mut value = value;
        while let Err(rtrb::PushError::Full(v)) = self.ping.push(value) {
            value = v;
            std::hint::spin_loop();
        }
        loop {
            if let Ok(v) = self.pong.pop() {
                return v;
            }
            std::hint::spin_loop();
        }
    }
    fn send_stop(&mut self) {
        while self.ping.push(STOP).is_err() {}
    }
    fn echo((mut rx, mut tx): Self::Echo) {
        loop {
            let Ok(v) = rx.pop() else {
                std::hint::spin_loop();
                continue;
            };
            if v == STOP {
                return;
            }
            let mut v = v;
            while let Err(rtrb::PushError::Full(back)) = tx.push(v) {
                v = back;
            }
        }
    }
}

fn start<P: PingPong>() -> (P, JoinHandle<()>) {
    let (pinger, echo) = P::pair();
    let handle = std::thread::spawn(move || {
        pin(1);
        P::echo(echo);
    });
    (pinger, handle)
}

fn stop<P: PingPong>(mut pinger: P, handle: JoinHandle<()>) {
    pinger.send_stop();
    handle.join().unwrap();
}

fn one_way_percentiles<P: PingPong>(label: &str) {
    let (mut pinger, handle) = start::<P>();
    let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
    for i in 0..HISTOGRAM_ROUND_TRIPS {
        let t0 = Instant::now();
        black_box(pinger.round_trip(i));
        let rtt_ns = t0.elapsed().as_nanos() as u64;
        histogram.saturating_record((rtt_ns / 2).max(1));
    }
    stop(pinger, handle);
    println!(
        "{label}: one-way hop over {HISTOGRAM_ROUND_TRIPS} round trips: p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        histogram.value_at_quantile(0.50),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max()
    );
}

fn bench_hop<P: PingPong>(c: &mut Criterion, label: &str) {
    pin(0);
    let (mut pinger, handle) = start::<P>();
    c.bench_function(label, |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for i in 0..iters {
                black_box(pinger.round_trip(i));
            }
            // Criterion reports per iteration: one iteration is a round trip, report one hop.
            t0.elapsed() / 2
        })
    });
    stop(pinger, handle);
    one_way_percentiles::<P>(label);
}

fn ring_hop(c: &mut Criterion) {
    bench_hop::<Wrapped>(c, "ring_hop/fpn_ring");
    bench_hop::<Raw>(c, "ring_hop/raw_rtrb");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = ring_hop
}
criterion_main!(benches);
