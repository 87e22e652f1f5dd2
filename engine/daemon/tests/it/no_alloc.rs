//! After READY the hot roles' loops (intake, builder shards, merger) do not allocate: the
//! daemon runs in this process under a counting allocator that counts allocations made while
//! a hot loop body runs (`flashpointd::run::alloc_probe`), while frames go through the submit
//! path and windows close, build, clear and reach the journal.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flashpointd::run::alloc_probe;

use crate::daemon::{frames, http, metric_sum};
use crate::inproc::InProcess;

struct Counting;

static HOT_ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to `System` unchanged; counting reads a const thread-local
// and bumps an atomic, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if alloc_probe::is_hot() {
            HOT_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if alloc_probe::is_hot() {
            HOT_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if alloc_probe::is_hot() {
            HOT_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn hot_loops_do_not_allocate_after_ready() {
    // The probe counts: an allocation inside a marked stretch is seen.
    let before = HOT_ALLOCS.load(Ordering::Relaxed);
    alloc_probe::enter();
    let b = std::hint::black_box(Box::new([0u8; 64]));
    alloc_probe::leave();
    drop(b);
    assert!(HOT_ALLOCS.load(Ordering::Relaxed) > before, "the counting allocator sees hot allocations");

    let (settings, data) = crate::inproc::settings("no-alloc", 5, 2);
    let mut d = InProcess::start(settings, data);
    let addr = d.addr.clone();
    // Let the first windows close and the first result go round the pool once.
    std::thread::sleep(Duration::from_millis(100));

    let before = HOT_ALLOCS.load(Ordering::Relaxed);
    let input = frames(3, 60, 100, true);
    for (frame, _) in &input {
        let (status, _) = http(&addr, "POST", "/submit?format=json", frame);
        assert_eq!(status, 200);
    }
    // Windows of 5 ms: many close, build, clear and get journaled meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    let after = HOT_ALLOCS.load(Ordering::Relaxed);

    let metrics = String::from_utf8(http(&addr, "GET", "/metrics", b"").1).unwrap();
    let result = d.stop();
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(metric_sum(&metrics, "fpn_intake_frames_total"), input.len() as u64, "the loops did the work");
    assert!(metric_sum(&metrics, "fpn_merger_windows_published_total") > 10);
    assert_eq!(after - before, 0, "allocations in hot loops after READY");
}
