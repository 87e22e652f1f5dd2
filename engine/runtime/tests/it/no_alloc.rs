//! After start-up the hot-path operations allocate nothing: a counting allocator (counting
//! only on the thread under test) proves it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use fpn_runtime::heartbeat::Heartbeats;
use fpn_runtime::housekeeping::HousekeepingTimer;
use fpn_runtime::idle::{IdleStrategy, Idler};
use fpn_runtime::metrics::{Counter, Histogram, Labels, MetricDesc, MetricsHub};
use fpn_runtime::ring::ring;

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// thread-local counter neither allocates nor touches the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's: `layout` has non-zero size.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout` (we forward every alloc).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: `ptr`/`layout` came from this allocator, which forwards to `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

static TEST_HOT_SECONDS: MetricDesc = MetricDesc::histogram("fpn_test_hot_seconds", "Test latency.");
static TEST_HOT_TOTAL: MetricDesc = MetricDesc::counter("fpn_test_hot_total", "Test records.");

#[test]
fn hot_path_and_housekeeping_allocate_nothing_after_start_up() {
    // Start-up: everything sized here.
    let (mut tx, mut rx) = ring::<[u8; 64]>(128);
    let mut batch: Vec<[u8; 64]> = Vec::with_capacity(32);
    let mut idler = Idler::new("spin-then-park:100:1ms".parse::<IdleStrategy>().unwrap());
    let mut records = Counter::default();
    let mut latency = Histogram::new();
    let hub = MetricsHub::new();
    hub.describe(&[&TEST_HOT_SECONDS, &TEST_HOT_TOTAL]);
    let mut publisher = hub.register("hot-0");
    let labels = Labels::new(&[("ring", "in")]);
    let (_heartbeats, mut beats) = Heartbeats::new(["hot-0"]);
    let mut timer = HousekeepingTimer::new(Duration::from_micros(10), fpn_runtime::clock::now_ns());
    let publish = |publisher: &mut fpn_runtime::metrics::ShardPublisher,
                   tx: &fpn_runtime::ring::Tx<[u8; 64]>,
                   rx: &fpn_runtime::ring::Rx<[u8; 64]>,
                   records: &Counter,
                   latency: &Histogram,
                   idler: &Idler| {
        publisher.publish(|s| {
            s.counter(&TEST_HOT_TOTAL, &Labels::none(), records.get());
            s.histogram(&TEST_HOT_SECONDS, &Labels::none(), latency);
            s.ring_tx(&labels, tx.counters(), tx.occupancy());
            s.ring_rx(&labels, rx.counters());
            s.idle(&Labels::none(), idler.counters());
        })
    };
    // The first publish creates the series (before READY).
    assert!(publish(&mut publisher, &tx, &rx, &records, &latency, &idler));

    let before = allocations();
    let mut housekeepings = 0;
    for i in 0..20_000u64 {
        let _ = tx.try_push([i as u8; 64]);
        if i % 64 == 0 {
            batch.clear();
            let n = rx.drain_into(&mut batch, usize::MAX);
            records.add(n as u64);
            if let Some(v) = rx.pop() {
                records.inc();
                latency.record_ns(u64::from(v[0]) * 100);
            }
        }
        let action = idler.step(i % 5 == 0, Instant::now());
        std::hint::black_box(action);
        if timer.due_at(fpn_runtime::clock::now_ns()) {
            housekeepings += 1;
            assert!(publish(&mut publisher, &tx, &rx, &records, &latency, &idler));
            beats[0].beat();
        }
    }
    let after = allocations();
    assert!(records.get() > 0 && tx.counters().full_total > 0, "the loop exercised full rings");
    assert!(housekeepings > 0, "the loop published");
    assert_eq!(after - before, 0, "allocations on the hot path ({housekeepings} housekeepings)");
}
