//! What the cores send each other, and the queue traits they send it through.
//!
//! Every message is a fixed-size `Copy` value (a ring slot holds one), except the
//! [`ShardWindow`], which is a preallocated buffer whose ownership moves as a `Box`: the
//! builder shard takes one from its pool, the merger returns it when the window is done.

use fpn_wire::Receipt;

use crate::batch::{IntentBatch, IntentMeta};
use crate::build::BoundParts;
use crate::clock::WindowClose;
use crate::window::{KEYS_PER_INTENT_MAX, PendingBid};

/// A queue refused a value because it is full; the value is handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full<T>(pub T);

/// The producer end of a bounded queue. Never blocks.
pub trait Sink<T> {
    fn push(&mut self, value: T) -> Result<(), Full<T>>;
}

/// The consumer end of a queue. Never blocks.
pub trait Source<T> {
    fn pop(&mut self) -> Option<T>;

    /// Hands up to `count_max` values to `f` by reference, oldest first, and stops after the
    /// first one `f` returns `false` for; every value handed over is taken. Returns how many
    /// were taken. This default pops; a ring overrides it to read the values in place (a
    /// slot has room for an intent with 64 keys, and most intents use a few).
    fn read_with(&mut self, count_max: usize, mut f: impl FnMut(&T) -> bool) -> usize {
        let mut taken = 0;
        while taken < count_max {
            let Some(value) = self.pop() else { break };
            taken += 1;
            if !f(&value) {
                break;
            }
        }
        taken
    }
}

/// An intake's outputs: one queue to each builder shard and one to the merger.
///
/// The refused message comes back by value although it is large (an intent with its keys
/// inline): that is the ring's contract, and a refusal is the rare, overloaded path.
#[allow(clippy::result_large_err)]
pub trait IntakeSink {
    fn to_builder(&mut self, shard: usize, msg: ToBuilder) -> Result<(), Full<ToBuilder>>;
    fn to_merger(&mut self, msg: ToMerger) -> Result<(), Full<ToMerger>>;
}

/// One admitted intent, keys inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntentMsg {
    pub window_id: u64,
    pub meta: IntentMeta,
    keys_len: u8,
    keys: [u64; KEYS_PER_INTENT_MAX],
}

impl IntentMsg {
    /// Panics if `keys` is empty or longer than [`KEYS_PER_INTENT_MAX`] (the wire refuses both).
    pub fn new(window_id: u64, meta: IntentMeta, keys: impl ExactSizeIterator<Item = u64>) -> IntentMsg {
        let len = keys.len();
        assert!((1..=KEYS_PER_INTENT_MAX).contains(&len), "1..=64 keys per intent");
        let mut m = IntentMsg { window_id, meta, keys_len: len as u8, keys: [0; KEYS_PER_INTENT_MAX] };
        for (slot, k) in m.keys.iter_mut().zip(keys) {
            *slot = k;
        }
        m
    }

    pub fn keys(&self) -> &[u64] {
        &self.keys[..self.keys_len as usize]
    }
}

/// Intake → builder shard. One ring slot each: every variant takes the size of the largest
/// (an intent with 64 keys inline, about 580 bytes), so the ring needs no variable-length
/// framing; see `docs/sharding.md`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToBuilder {
    /// An intent local to this shard, of the open window.
    Intent(IntentMsg),
    /// Cancel the open window's intent `seq` (the intake checked the client).
    Cancel { window_id: u64, seq: u64 },
    /// This intake will send nothing more for `window_id`.
    Close { window_id: u64 },
}

/// A cancel the intake cannot answer because its target is not in the open window: the
/// merger looks in the book and answers `receipt` itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookCancel {
    pub client_id: u64,
    /// `true`: `target` is a nonce; `false`: a seq.
    pub by_nonce: bool,
    pub target: u64,
    /// By seq: the seq belongs to a closed window, so "no such open bid" is `TooLate`
    /// rather than `NotFound` (the engine's rule).
    pub too_late_if_absent: bool,
    /// The receipt to answer, filled but for status and seq; `window_id` is the intake's
    /// open window, reported only on success (as the engine does).
    pub receipt: Receipt,
}

/// Intake → merger. Fixed-size slots, as [`ToBuilder`].
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToMerger {
    /// An intent whose keys live on more than one shard, of the open window.
    Cross(IntentMsg),
    /// A bid of the open window.
    Bid { window_id: u64, bid: PendingBid },
    /// Cancel the open window's cross intent or bid `seq`.
    CancelPending { window_id: u64, seq: u64 },
    /// Cancel a bid of the book (an older window).
    CancelBook(BookCancel),
    /// This intake will send nothing more for `close.window_id`.
    Close(WindowClose),
}

/// One builder shard's closed window: its intents in seq order and the builder's selection.
/// Preallocated (window capacity) and passed by `Box` so nothing allocates after start-up.
#[derive(Debug, Clone)]
pub struct ShardWindow {
    pub shard: usize,
    pub window_id: u64,
    /// The shard's surviving intents of the window, ascending seq.
    pub batch: IntentBatch,
    /// The builder's selection: ascending indices into `batch`.
    pub picked: Vec<u32>,
    pub total: u64,
    pub upper_bound: u64,
    pub exact: bool,
    /// Intents of the window cancelled before the close.
    pub cancelled_count: usize,
    /// FIFO on `batch`: its selection (ascending indices), total and unrounded bound. Shards
    /// own disjoint keys, so for a window without cross intents the merger assembles FIFO
    /// on the whole window from these instead of running it again.
    pub fifo_picked: Vec<u32>,
    pub fifo_total: u64,
    pub fifo_bound: BoundParts,
}

impl ShardWindow {
    pub fn with_capacity(shard: usize, records_max: usize, keys_max: usize) -> ShardWindow {
        ShardWindow {
            shard,
            window_id: 0,
            batch: IntentBatch::with_capacity(records_max, keys_max),
            picked: Vec::with_capacity(records_max),
            total: 0,
            upper_bound: 0,
            exact: false,
            cancelled_count: 0,
            fifo_picked: Vec::with_capacity(records_max),
            fifo_total: 0,
            fifo_bound: BoundParts::default(),
        }
    }
}
