//! Test support shared by the workspace's test binaries.
//!
//! - [`Counting`]: a global allocator that counts allocations per thread, for the tests that
//!   prove a hot path does not allocate. A test binary installs it with
//!   `#[global_allocator] static GLOBAL: fpn_testkit::Counting = fpn_testkit::Counting;` and
//!   measures with [`counted`] or [`allocations`].
//! - Frame builders for one-record frames, as a client would send them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use fpn_wire::{Bid, Cancel, CancelTarget, DATAGRAM_FRAME_LEN_MAX, FrameWriter, Intent};

/// Counts `alloc`, `alloc_zeroed` and `realloc` calls of the calling thread; forwards
/// everything to [`System`].
pub struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note_alloc() {
    // `try_with`: the allocator also runs while a thread tears its locals down.
    let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is the system allocator's; counting touches only a const-initialised
// thread-local `Cell<u64>`, which never allocates and has no destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations made so far by the calling thread (only counted when [`Counting`] is the
/// binary's global allocator).
pub fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

/// Runs `f` and returns its result with the number of allocations it made on this thread.
pub fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = allocations();
    let r = f();
    (r, allocations() - before)
}

fn frame(push: impl FnOnce(&mut FrameWriter<'_>)) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, DATAGRAM_FRAME_LEN_MAX);
    push(&mut w);
    w.finish();
    buf
}

/// A frame holding one intent.
pub fn intent_frame(client_id: u64, nonce: u64, profit: u64, keys: &[u64]) -> Vec<u8> {
    frame(|w| w.push_intent(&Intent { client_id, nonce, sent_ns: 0, profit, priority: 0, keys }).unwrap())
}

/// A frame holding one bid.
pub fn bid_frame(client_id: u64, nonce: u64, amount: u64, priority: u32) -> Vec<u8> {
    frame(|w| w.push_bid(&Bid { client_id, nonce, sent_ns: 0, amount, priority }).unwrap())
}

/// A frame holding one cancel.
pub fn cancel_frame(client_id: u64, target: CancelTarget) -> Vec<u8> {
    frame(|w| w.push_cancel(&Cancel { client_id, target }).unwrap())
}
