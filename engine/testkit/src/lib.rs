//! Test support shared by the workspace's test binaries.
//!
//! - [`Counting`]: a global allocator that counts allocations per thread, for the tests that
//!   prove a hot path does not allocate. A test binary installs it with
//!   `#[global_allocator] static GLOBAL: fpn_testkit::Counting = fpn_testkit::Counting;` and
//!   measures with [`counted`] or [`allocations`].
//! - Frame builders for one-record frames, as a client would send them.
//! - [`load_frames`]: a deterministic load of many-intent frames, back to back in one
//!   buffer, for the benches that drive an intake.
//! - [`window_result_frame`]: a published window's block and clearing frame, for the tests
//!   of what reads one (the journal line, the prover's witness).

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

/// Frames back to back in one buffer, as a receive buffer holds them (so a reader walks them
/// in address order, not scattered over the heap).
pub struct Frames {
    pub bytes: Vec<u8>,
    /// Each frame's end in `bytes`.
    pub ends: Vec<usize>,
}

impl Frames {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Frame `i`.
    pub fn frame(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// `frames_n` frames of `per_frame` intents, each with `keys_per_intent` distinct keys drawn
/// from `1..=key_space` and a profit in `1..=1000`. Frame `f` is client `1 + f % clients`'s
/// (a frame is one client's: the daemon routes a frame by its first client), and each
/// client's nonces count up from 1. Deterministic (SplitMix64 from seed 7).
pub fn load_frames(
    frames_n: usize,
    per_frame: usize,
    keys_per_intent: usize,
    key_space: u64,
    clients: u64,
) -> Frames {
    let mut state = 7u64;
    let mut rng = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut nonces = vec![0u64; clients as usize];
    let mut out = Frames { bytes: Vec::new(), ends: Vec::with_capacity(frames_n) };
    let mut keys = Vec::with_capacity(keys_per_intent);
    let mut buf = Vec::new();
    for f in 0..frames_n {
        let client = f as u64 % clients;
        buf.clear();
        let mut w = FrameWriter::new(&mut buf, u32::MAX as usize);
        for _ in 0..per_frame {
            nonces[client as usize] += 1;
            keys.clear();
            while keys.len() < keys_per_intent {
                let key = 1 + rng() % key_space;
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            let intent = Intent {
                client_id: 1 + client,
                nonce: nonces[client as usize],
                sent_ns: 0,
                profit: 1 + rng() % 1000,
                priority: 0,
                keys: &keys,
            };
            w.push_intent(&intent).expect("a u32-sized frame has room");
        }
        w.finish();
        out.bytes.extend_from_slice(&buf);
        out.ends.push(out.bytes.len());
    }
    out
}

/// A published window's frame: window 7's block (builder improved, total the sum of the
/// profits, FIFO 1,000, surplus 3,200, fee 320 at 100,000 ppm, upper bound 5,000) with one
/// entry per `(seq, client, profit, payout)`, each received at `100 + 1,000 × seq` ns, and,
/// with `pricing`, its clearing (revenue 800, one winner: seq 9 of client 3 paying 800).
pub fn window_result_frame(entries: &[(u64, u64, u64, u64)], pricing: Option<u8>) -> Vec<u8> {
    use fpn_wire::{BlockEntryWire, BlockSummary, ClearingSummary, WinnerWire};
    let mut bytes = Vec::new();
    let mut w = FrameWriter::new(&mut bytes, u32::MAX as usize);
    let block = BlockSummary {
        window_id: 7,
        total: entries.iter().map(|e| e.2).sum(),
        fifo_total: 1000,
        surplus: 3200,
        fee: 320,
        upper_bound: 5000,
        fee_ppm: 100_000,
        builder: 2,
        exact: false,
    };
    let block_entries = entries.iter().map(|&(s, c, p, y)| BlockEntryWire::new(s, c, p, y, 100 + 1_000 * s));
    w.push_block_iter(&block, block_entries.collect::<Vec<_>>().into_iter()).expect("a u32-sized frame");
    if let Some(pricing) = pricing {
        let clearing = ClearingSummary { window_id: 7, uniform_price: 0, revenue: 800, pricing, order: 0 };
        w.push_clearing(&clearing, &[WinnerWire::new(9, 3, 800, 800)]).expect("a u32-sized frame");
    }
    w.finish();
    bytes
}
