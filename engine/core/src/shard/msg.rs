//! What the cores send each other, and the queue traits they send it through.
//!
//! Every message is a fixed-size `Copy` value (a ring slot holds one), except the
//! [`ShardWindow`], which is a preallocated buffer whose ownership moves as a `Box`: the
//! builder shard takes one from its pool, the merger returns it when the window is done.

use fpn_wire::Receipt;

use crate::batch::{IntentBatch, IntentMeta};
use crate::clock::WindowClose;
use crate::select::BoundParts;
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
    /// Free slots toward builder shard `shard` now. Only the intake pushes, so the room
    /// cannot shrink before it pushes: an intent that needs several slots
    /// ([`IntentMsg::slots`]) is sent whole or refused whole.
    fn builder_room(&self, shard: usize) -> usize;
    /// Free slots toward the merger now; as [`IntakeSink::builder_room`].
    fn merger_room(&self) -> usize;
}

/// Keys an [`IntentMsg`] carries inline. Most intents touch a few resources: with 6 inline
/// a slot is 120 bytes (128 with the daemon's send stamp, two cache lines), where 64 inline
/// made every slot about 580 bytes, which the intake wrote and the builder read whole.
pub const INLINE_KEYS: usize = 6;

/// Keys a [`MoreKeys`] continuation slot carries.
pub const MORE_KEYS: usize = 13;

/// One admitted intent, with its first [`INLINE_KEYS`] keys. An intent with more keys is
/// followed, in the same queue and with nothing between, by [`MoreKeys`] slots holding the
/// rest in order; [`Reassembly`] puts them back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntentMsg {
    pub window_id: u64,
    pub meta: IntentMeta,
    /// All of the intent's keys, inline and following.
    keys_len: u8,
    keys: [u64; INLINE_KEYS],
}

/// Up to [`MORE_KEYS`] further keys of the intent before it in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoreKeys {
    len: u8,
    keys: [u64; MORE_KEYS],
}

impl IntentMsg {
    /// The message for an intent with `keys`; the keys past [`INLINE_KEYS`] go in
    /// [`IntentMsg::more`]. Panics if `keys` is empty or longer than [`KEYS_PER_INTENT_MAX`]
    /// (the wire refuses both).
    pub fn new(window_id: u64, meta: IntentMeta, keys: impl ExactSizeIterator<Item = u64>) -> IntentMsg {
        let len = keys.len();
        assert!((1..=KEYS_PER_INTENT_MAX).contains(&len), "1..=64 keys per intent");
        let mut m = IntentMsg { window_id, meta, keys_len: len as u8, keys: [0; INLINE_KEYS] };
        for (slot, k) in m.keys.iter_mut().zip(keys) {
            *slot = k;
        }
        m
    }

    /// All of the intent's keys (`keys_len`), inline and in the [`MoreKeys`] that follow.
    pub fn keys_len(&self) -> usize {
        self.keys_len as usize
    }

    /// The keys carried inline: all of them if [`IntentMsg::slots`] is 1.
    pub fn inline_keys(&self) -> &[u64] {
        &self.keys[..self.keys_len().min(INLINE_KEYS)]
    }

    /// Queue slots the intent takes: this one and its [`MoreKeys`].
    pub fn slots(&self) -> usize {
        slots_for(self.keys_len())
    }

    /// The [`MoreKeys`] slots that follow this message for an intent with `keys` (all of
    /// them, the inline ones included): none if they fit inline.
    pub fn more(keys: impl Iterator<Item = u64>) -> impl Iterator<Item = MoreKeys> {
        let mut keys = keys.skip(INLINE_KEYS).peekable();
        std::iter::from_fn(move || {
            keys.peek()?;
            let mut m = MoreKeys { len: 0, keys: [0; MORE_KEYS] };
            // The slots first: `zip` takes no key once they are used up.
            for (slot, k) in m.keys.iter_mut().zip(keys.by_ref()) {
                *slot = k;
                m.len += 1;
            }
            Some(m)
        })
    }
}

impl MoreKeys {
    pub fn keys(&self) -> &[u64] {
        &self.keys[..self.len as usize]
    }
}

/// Queue slots an intent with `keys_len` keys takes.
pub const fn slots_for(keys_len: usize) -> usize {
    1 + keys_len.saturating_sub(INLINE_KEYS).div_ceil(MORE_KEYS)
}

/// Puts back together the intents of one input queue that span several slots. Preallocated
/// for the largest intent; a consumer keeps one per input, so slots of different queues
/// may interleave freely (and a read may stop between an intent's slots).
#[derive(Debug, Clone)]
pub struct Reassembly {
    meta: IntentMeta,
    keys: Vec<u64>,
    /// Keys still to come; 0 when no intent is in progress.
    left: usize,
}

impl Default for Reassembly {
    fn default() -> Reassembly {
        Reassembly { meta: IntentMeta::default(), keys: Vec::with_capacity(KEYS_PER_INTENT_MAX), left: 0 }
    }
}

impl Reassembly {
    /// An intent's first slot: its keys if it fits in that slot, else `None` (it is kept
    /// until its last [`MoreKeys`]).
    #[inline]
    pub fn start<'m>(&mut self, m: &'m IntentMsg) -> Option<&'m [u64]> {
        assert_eq!(self.left, 0, "an intent's slots arrive together");
        if m.slots() == 1 {
            return Some(m.inline_keys());
        }
        self.meta = m.meta;
        self.keys.clear();
        self.keys.extend_from_slice(m.inline_keys());
        self.left = m.keys_len() - INLINE_KEYS;
        None
    }

    /// A continuation slot: the whole intent once this was its last slot.
    pub fn more(&mut self, k: &MoreKeys) -> Option<(IntentMeta, &[u64])> {
        assert!(k.keys().len() <= self.left, "a continuation slot follows its intent");
        self.keys.extend_from_slice(k.keys());
        self.left -= k.keys().len();
        (self.left == 0).then_some((self.meta, &self.keys[..]))
    }

    /// Whether an intent is waiting for more slots.
    pub fn is_partial(&self) -> bool {
        self.left > 0
    }
}

/// Intake → builder shard. One ring slot each: every variant takes the size of the largest
/// (an intent with [`INLINE_KEYS`] keys, 120 bytes); an intent with more keys takes
/// [`IntentMsg::slots`] slots; see `docs/sharding.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToBuilder {
    /// An intent local to this shard, of the open window.
    Intent(IntentMsg),
    /// More keys of the intent just before.
    More(MoreKeys),
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
    /// The target was accepted in a window that has closed (by seq: the seq is below the
    /// open window's; by nonce: the de-duplication table remembers the pair from an earlier
    /// window), so "no such open bid" is `TooLate` rather than `NotFound` (the engine's rule).
    pub too_late_if_absent: bool,
    /// The receipt to answer, filled but for status and seq; `window_id` is the intake's
    /// open window, reported only on success (as the engine does).
    pub receipt: Receipt,
}

/// Intake → merger. Fixed-size slots, as [`ToBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToMerger {
    /// An intent whose keys live on more than one shard, of the open window.
    Cross(IntentMsg),
    /// More keys of the cross intent just before.
    More(MoreKeys),
    /// A bid of the open window.
    Bid { window_id: u64, bid: PendingBid },
    /// Cancel the open window's cross intent or bid `seq`.
    CancelPending { window_id: u64, seq: u64 },
    /// Cancel a bid of the book (an older window).
    CancelBook(BookCancel),
    /// This intake will send nothing more for `close.window_id`.
    Close(WindowClose),
}

// Two cache lines per ring slot with the daemon's 8-byte stamp.
const _: () = assert!(std::mem::size_of::<ToBuilder>() <= 120);
const _: () = assert!(std::mem::size_of::<ToMerger>() <= 120);

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

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> IntentMeta {
        IntentMeta { seq, client_id: 1, nonce: seq, profit: 1, ..IntentMeta::default() }
    }

    #[test]
    fn every_length_splits_into_its_slots_and_reassembles() {
        for len in 1..=KEYS_PER_INTENT_MAX {
            let keys: Vec<u64> = (100..100 + len as u64).collect();
            let m = IntentMsg::new(7, meta(len as u64), keys.iter().copied());
            let more: Vec<MoreKeys> = IntentMsg::more(keys.iter().copied()).collect();
            assert_eq!(m.slots(), 1 + more.len(), "{len} keys");
            assert_eq!(m.slots(), slots_for(len));
            assert!(more.iter().all(|k| !k.keys().is_empty()));
            let mut r = Reassembly::default();
            let got = match r.start(&m) {
                Some(inline) => {
                    assert!(more.is_empty());
                    inline.to_vec()
                }
                None => {
                    let (last, init) = more.split_last().expect("continuation slots");
                    for k in init {
                        assert!(r.more(k).is_none());
                        assert!(r.is_partial());
                    }
                    let (meta_back, all) = r.more(last).expect("complete after the last slot");
                    assert_eq!(meta_back, m.meta);
                    all.to_vec()
                }
            };
            assert_eq!(got, keys, "{len} keys");
            assert!(!r.is_partial());
        }
    }

    #[test]
    #[should_panic(expected = "a continuation slot follows its intent")]
    fn a_stray_continuation_is_a_bug() {
        let keys: Vec<u64> = (0..20).collect();
        let k = IntentMsg::more(keys.into_iter()).next().unwrap();
        let _ = Reassembly::default().more(&k);
    }
}
