//! Exact (client id, nonce) de-duplication over the last few windows.
//!
//! # Design
//!
//! Two fixed arrays, both sized once in [`Dedup::new`]:
//!
//! * `log`: a ring of [`DedupEntry`] (client, nonce, window id, value) in insertion order,
//!   `horizon_windows × records_max` long. Window ids only grow, so the oldest entries sit at
//!   the head of the ring and expire from there, one window after another.
//! * `slots`: an open-addressing index over the ring with linear probing. A slot is 8 bytes:
//!   the ring position and 32 bits of the key's hash. There are at least twice as many slots
//!   as ring entries, so the index is never more than half full.
//!
//! Why this shape rather than a table of full entries with generation-based "stale counts as
//! empty": a stale slot that is treated as empty breaks the probe chains of the keys behind
//! it, and a stale slot treated as a tombstone is never reclaimed, so chains grow until every
//! miss scans the table. Here an expired entry is removed with backward-shift deletion, which
//! leaves no tombstones and keeps every chain intact. Finding the slot of an expiring entry
//! is one probe from its hash (we compare the ring position, which is unique, so no key read
//! is needed), and the ring head tells us which entry expires next.
//!
//! Expiry is lazy and paced: [`Dedup::advance`] only moves the window id (O(1), so closing a
//! window does not stall on a burst of deletions); each insert then removes up to
//! [`EXPIRE_STEPS_PER_INSERT`] expired entries from the ring head, and [`Dedup::expire`] lets a
//! driver do more during housekeeping. An expired entry still in the index is skipped by
//! lookups (its window id is checked), so answers are exact whether or not it has been
//! removed yet. When the ring is full, expired entries are removed first; only when every
//! entry is inside the horizon does an insert answer [`Reason::Overloaded`].
//!
//! The slot holds 32 hash bits so that a probe rejects almost every non-matching slot without
//! touching the ring (the ring read is a second cache miss); the ring read happens only when
//! the hash bits agree, i.e. for real duplicates and about one false match in 2^32/slots.
//!
//! The hash is two multiplications (no SipHash): the keys are authenticated client ids and
//! their nonces, and a client can only fill its own probe chains at its rate limit.
//!
//! Measured (`cargo bench -p fpn-engine --bench window -- parts`): about 75 ns per insert
//! including its share of expiry, on-CPU, on a shared 2-core VM with 16 × 65,536 entries.
//! The index and ring (48 MiB) do not fit in L2, so each insert costs one index miss plus
//! one expiry miss; the expiry miss is prefetched, and [`Dedup::prefetch`] lets a caller with
//! a frame in hand hide the insert's.
//!
//! # Memory
//!
//! `entries_max = horizon_windows × records_max`, `slots = (2 × entries_max).next_power_of_two()`,
//! bytes = `32 × entries_max + 8 × slots` (at most 48 bytes per entry). Defaults (16 × 65,536):
//! 32 MiB + 16 MiB.
//!
//! # Call order
//!
//! `new` → per record `check_and_insert` / `insert` (and `get` for lookups) → `advance` when
//! a window opens → optionally `expire` from housekeeping.

use std::collections::HashMap;

use fpn_wire::Reason;

/// Expired entries removed per insert. Two per insert keeps the backlog shrinking even when
/// every new window is as full as the one that expires (each insert adds one entry).
pub const EXPIRE_STEPS_PER_INSERT: usize = 2;

/// Largest supported `horizon_windows × records_max`: ring positions and hash bits fit in u32.
pub const DEDUP_ENTRIES_MAX: usize = 1 << 30;

/// How far ahead of the ring head expiry prefetches index slots. A slot load is a DRAM miss
/// at the default sizes (16 MiB index); 16 removals (8 inserts) ahead covers its latency.
const EXPIRE_PREFETCH_AHEAD: usize = 16;

const EMPTY: u32 = u32::MAX;

/// One remembered pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DedupEntry {
    pub client_id: u64,
    pub nonce: u64,
    /// The window the pair was accepted in.
    pub window_id: u64,
    /// Caller data stored with the pair (the window stores the record's seq).
    pub value: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Position in `log`, or `EMPTY`.
    pos: u32,
    /// 32 bits of the key's hash; its top bits are the home slot.
    tag: u32,
}

const SLOT_EMPTY: Slot = Slot { pos: EMPTY, tag: 0 };

/// Exact de-duplication table for (client id, nonce) pairs seen in the last
/// `horizon_windows` windows, the current one included, and beyond the horizon a per-client
/// nonce high-water mark (see [`Dedup::with_clients`]). See the module docs for the design.
///
/// Call order: `new`, then `check_and_insert`/`insert`/`get` for the current window,
/// `advance` when the next window opens, and `expire` from housekeeping if wanted.
#[derive(Debug, Clone)]
pub struct Dedup {
    slots: Vec<Slot>,
    mask: usize,
    /// `32 - log2(slots)`: the home slot is the top bits of the 32-bit hash.
    home_shift: u32,
    log: Vec<DedupEntry>,
    /// Ring position of the oldest entry.
    head: usize,
    /// Entries in the ring (live and expired-but-not-yet-removed).
    len: usize,
    horizon_windows: u64,
    window_id: u64,
    /// Per client: one above the highest nonce of its pairs that left the horizon (0: none
    /// left yet). `None`: no high-water marks (pairs are forgotten after the horizon).
    high_water: Option<HashMap<u64, u64>>,
    clients_max: usize,
    /// The last insert gave its client a place in the high-water table (for
    /// [`Dedup::undo_insert`]).
    last_insert_new_client: bool,
}

#[inline]
fn hash(client_id: u64, nonce: u64) -> u32 {
    // Multiply-xor-multiply; the top 32 bits of the last product are the best mixed, and
    // both inputs reach them. The home slot is the top bits of these (Fibonacci hashing). Constants: the 64-bit golden ratio and a large odd constant.
    let x = client_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nonce;
    (x.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 32) as u32
}

impl Dedup {
    /// A table remembering pairs for `horizon_windows` windows of up to `records_max` records
    /// each, starting in window `window_id`. All memory is allocated here.
    ///
    /// Panics (programmer error; `WindowConfig::validate` checks these first) if
    /// `horizon_windows` or `records_max` is zero or their product exceeds
    /// [`DEDUP_ENTRIES_MAX`].
    pub fn new(horizon_windows: u32, records_max: usize, window_id: u64) -> Dedup {
        Dedup::with_clients(horizon_windows, records_max, window_id, 0)
    }

    /// [`Dedup::new`] with replay protection beyond the horizon for up to `clients_max`
    /// clients (0: none). A pair that leaves the horizon raises its client's high-water
    /// mark to its nonce; an insert whose nonce is at or below its client's mark is refused
    /// `NonceExpired`, so a pair is never accepted twice however late it is replayed, as
    /// long as each client's nonces increase across the horizon. A client takes its place in
    /// the table with its first pair; once `clients_max` clients have one, a new client's
    /// pairs are refused `Overloaded`. The table is allocated here.
    pub fn with_clients(
        horizon_windows: u32,
        records_max: usize,
        window_id: u64,
        clients_max: usize,
    ) -> Dedup {
        assert!(horizon_windows >= 1, "horizon_windows must be >= 1");
        assert!(records_max >= 1, "records_max must be >= 1");
        let entries_max = (horizon_windows as usize)
            .checked_mul(records_max)
            .filter(|n| *n <= DEDUP_ENTRIES_MAX)
            .expect("horizon_windows * records_max must be <= 2^30");
        let slots_len = (2 * entries_max).next_power_of_two();
        Dedup {
            slots: vec![SLOT_EMPTY; slots_len],
            mask: slots_len - 1,
            home_shift: 32 - slots_len.trailing_zeros(),
            log: vec![DedupEntry::default(); entries_max],
            head: 0,
            len: 0,
            horizon_windows: u64::from(horizon_windows),
            window_id,
            high_water: (clients_max > 0).then(|| HashMap::with_capacity(clients_max)),
            clients_max,
            last_insert_new_client: false,
        }
    }

    /// Remembers `(client_id, nonce)` in window `window_id` (the current window; a newer id
    /// advances the table to it first), or answers
    /// `DuplicateNonce` if the pair is already remembered within the horizon, or `Overloaded`
    /// if all `entries_max` entries are within the horizon. A refused pair is not recorded.
    #[inline]
    pub fn check_and_insert(&mut self, client_id: u64, nonce: u64, window_id: u64) -> Result<(), Reason> {
        self.insert(client_id, nonce, window_id, 0)
    }

    /// [`Dedup::check_and_insert`] that also stores `value` with the pair, for [`Dedup::get`].
    #[inline]
    pub fn insert(&mut self, client_id: u64, nonce: u64, window_id: u64, value: u64) -> Result<(), Reason> {
        debug_assert!(window_id >= self.window_id, "insert into an old window");
        if window_id > self.window_id {
            // Inserting for a newer window opens it (same as `advance` first), so an entry's
            // window id is never ahead of the current one.
            self.advance(window_id);
        }
        // Expire before probing: deletion shifts slots, so the free slot found by the probe
        // must not be invalidated afterwards.
        self.expire(EXPIRE_STEPS_PER_INSERT);
        if let Some(marks) = &self.high_water {
            match marks.get(&client_id) {
                Some(&mark) if nonce < mark => return Err(Reason::NonceExpired),
                Some(_) => {}
                None if marks.len() == self.clients_max => return Err(Reason::Overloaded),
                None => {}
            }
        }
        let tag = hash(client_id, nonce);
        let mut i = self.home(tag);
        loop {
            let slot = self.slots[i];
            if slot.pos == EMPTY {
                break;
            }
            if slot.tag == tag {
                let e = &self.log[slot.pos as usize];
                if e.client_id == client_id && e.nonce == nonce {
                    if self.is_live(e.window_id) {
                        return Err(Reason::DuplicateNonce);
                    }
                    // Left the horizon but not removed yet: its mark is not raised yet.
                    if self.high_water.is_some() {
                        return Err(Reason::NonceExpired);
                    }
                }
            }
            i = (i + 1) & self.mask;
        }
        if self.len == self.log.len() {
            // `expire` above stops early only when the head is live (or after freeing
            // entries), so a full ring here holds nothing but live entries.
            return Err(Reason::Overloaded);
        }
        let mut pos = self.head + self.len;
        if pos >= self.log.len() {
            pos -= self.log.len();
        }
        self.log[pos] = DedupEntry { client_id, nonce, window_id, value };
        self.slots[i] = Slot { pos: pos as u32, tag };
        self.len += 1;
        self.last_insert_new_client = false;
        if let Some(marks) = &mut self.high_water
            && !marks.contains_key(&client_id)
        {
            marks.insert(client_id, 0);
            self.last_insert_new_client = true;
        }
        debug_assert!(2 * self.len <= self.slots.len());
        Ok(())
    }

    /// The live entry for `(client_id, nonce)`, if the pair is remembered within the horizon.
    #[inline]
    pub fn get(&self, client_id: u64, nonce: u64) -> Option<DedupEntry> {
        let tag = hash(client_id, nonce);
        let mut i = self.home(tag);
        loop {
            let slot = self.slots[i];
            if slot.pos == EMPTY {
                return None;
            }
            if slot.tag == tag {
                let e = self.log[slot.pos as usize];
                if e.client_id == client_id && e.nonce == nonce && self.is_live(e.window_id) {
                    return Some(e);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Whether `(client_id, nonce)` is remembered within the horizon.
    #[inline]
    pub fn contains(&self, client_id: u64, nonce: u64) -> bool {
        self.get(client_id, nonce).is_some()
    }

    /// Makes `window_id` the current window. Pairs from windows `<= window_id - horizon`
    /// stop counting at once; their entries are removed lazily (see the module docs). O(1).
    pub fn advance(&mut self, window_id: u64) {
        assert!(window_id >= self.window_id, "window ids only grow");
        self.window_id = window_id;
    }

    /// Removes up to `steps_max` expired entries from the ring head; returns how many it
    /// removed. Inserts call this with a small budget; a driver may call it when idle.
    pub fn expire(&mut self, steps_max: usize) -> usize {
        let mut removed = 0;
        while removed < steps_max && self.len > 0 {
            let head = self.log[self.head];
            if self.is_live(head.window_id) {
                break;
            }
            // The entries after the head expire next: start fetching their index slots now,
            // so their deletion does not wait on a cache miss.
            if EXPIRE_PREFETCH_AHEAD < self.len {
                let mut ahead = self.head + EXPIRE_PREFETCH_AHEAD;
                if ahead >= self.log.len() {
                    ahead -= self.log.len();
                }
                let e = &self.log[ahead];
                self.prefetch_slot(self.home(hash(e.client_id, e.nonce)));
            }
            self.remove_slot_of(self.head, hash(head.client_id, head.nonce));
            if let Some(mark) = self.high_water.as_mut().and_then(|m| m.get_mut(&head.client_id)) {
                *mark = (*mark).max(head.nonce.saturating_add(1));
            }
            self.head += 1;
            if self.head == self.log.len() {
                self.head = 0;
            }
            self.len -= 1;
            removed += 1;
        }
        removed
    }

    /// Deletes the slot pointing at ring position `pos` (home derived from `tag`) with
    /// backward-shift deletion, so no tombstone is left behind.
    fn remove_slot_of(&mut self, pos: usize, tag: u32) {
        let mask = self.mask;
        let mut hole = self.home(tag);
        while self.slots[hole].pos as usize != pos {
            debug_assert!(self.slots[hole].pos != EMPTY, "expiring entry missing from index");
            hole = (hole + 1) & mask;
        }
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let slot = self.slots[j];
            if slot.pos == EMPTY {
                break;
            }
            let home = self.home(slot.tag);
            // The entry at `j` may move back to `hole` unless its home lies cyclically in
            // (hole, j]: then moving it before its home would hide it from lookups.
            let home_in_between = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !home_in_between {
                self.slots[hole] = slot;
                hole = j;
            }
        }
        self.slots[hole] = SLOT_EMPTY;
    }

    /// Starts loading the index slot where `(client_id, nonce)` would be probed first. A
    /// hint for callers holding several records (a decoded frame): prefetch a few records
    /// ahead of the insert, so the insert's probe does not wait on a cache miss.
    #[inline]
    pub fn prefetch(&self, client_id: u64, nonce: u64) {
        self.prefetch_slot(self.home(hash(client_id, nonce)));
    }

    #[inline(always)]
    fn prefetch_slot(&self, i: usize) {
        if let Some(slot) = self.slots.get(i) {
            crate::mem::prefetch(slot);
        }
    }

    /// Home slot of a hash: its top bits, the best-mixed bits of a multiplicative hash.
    #[inline]
    fn home(&self, tag: u32) -> usize {
        // At least 2 slots and at most 2^31, so the shift is 1..=31.
        (tag >> self.home_shift) as usize
    }

    #[inline]
    fn is_live(&self, window_id: u64) -> bool {
        debug_assert!(window_id <= self.window_id);
        self.window_id - window_id < self.horizon_windows
    }

    /// The client's high-water mark: nonces below it are refused `NonceExpired` (`None`: no
    /// pair of the client left the horizon yet, or marks are off).
    pub fn high_water(&self, client_id: u64) -> Option<u64> {
        self.high_water.as_ref()?.get(&client_id).copied().filter(|&m| m > 0)
    }

    /// Every client's high-water mark (for a checkpoint), in no particular order.
    pub fn high_waters(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.high_water.iter().flatten().map(|(&c, &m)| (c, m)).filter(|&(_, m)| m > 0)
    }

    /// Restores a client's high-water mark (recovery): nonces below `mark` are refused.
    /// Takes a place in the client table. Returns `Err(Overloaded)` when the table is full.
    pub fn restore_high_water(&mut self, client_id: u64, mark: u64) -> Result<(), Reason> {
        let Some(marks) = &mut self.high_water else { return Ok(()) };
        if !marks.contains_key(&client_id) && marks.len() == self.clients_max {
            return Err(Reason::Overloaded);
        }
        let m = marks.entry(client_id).or_insert(0);
        *m = (*m).max(mark);
        Ok(())
    }

    /// Forgets the pair the last [`Dedup::insert`] remembered (its record could not be
    /// queued after all): the pair may come again. Panics if `(client_id, nonce)` is not the
    /// newest entry.
    pub fn undo_insert(&mut self, client_id: u64, nonce: u64) {
        assert!(self.len > 0, "undo without an insert");
        let mut pos = self.head + self.len - 1;
        if pos >= self.log.len() {
            pos -= self.log.len();
        }
        let e = self.log[pos];
        assert!(e.client_id == client_id && e.nonce == nonce, "undo of a pair that is not the newest");
        self.remove_slot_of(pos, hash(client_id, nonce));
        self.len -= 1;
        if self.last_insert_new_client
            && let Some(marks) = &mut self.high_water
        {
            marks.remove(&client_id);
        }
        self.last_insert_new_client = false;
    }

    /// Recovery: remembers a pair accepted in `window_id` (at most the current window, and
    /// not older than the pairs restored before it: the ring stays in window order). Pairs
    /// already outside the horizon are not kept. `Err(Overloaded)` when the table (or the
    /// client table) is full.
    pub fn restore_pair(
        &mut self,
        client_id: u64,
        nonce: u64,
        window_id: u64,
        value: u64,
    ) -> Result<(), Reason> {
        assert!(window_id <= self.window_id, "a restored pair from the future");
        if !self.is_live(window_id) {
            return Ok(());
        }
        let current = self.window_id;
        // Insert as if its window were current, then come back: the ring keeps window order.
        self.window_id = window_id;
        let r = self.insert(client_id, nonce, window_id, value);
        self.window_id = current;
        r
    }

    /// Clients holding a place in the high-water table.
    pub fn clients(&self) -> usize {
        self.high_water.as_ref().map_or(0, HashMap::len)
    }

    /// The current window id.
    pub fn window_id(&self) -> u64 {
        self.window_id
    }

    pub fn horizon_windows(&self) -> u32 {
        self.horizon_windows as u32
    }

    /// Entries held, including expired ones not yet removed. Never exceeds `capacity()`.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `horizon_windows × records_max`, fixed at construction.
    pub fn capacity(&self) -> usize {
        self.log.len()
    }

    /// Index slots (a power of two, at least `2 × capacity()`), fixed at construction.
    pub fn slots_len(&self) -> usize {
        self.slots.len()
    }

    /// Heap bytes held, for the memory bound in `docs/windows.md` (the high-water table
    /// counted at 16 bytes a client plus the map's control bytes, roughly).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
            + self.log.capacity() * size_of::<DedupEntry>()
            + self.high_water.as_ref().map_or(0, |m| m.capacity() * 17)
    }

    /// Checks the index against the ring (tests only: O(slots)).
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut used = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if s.pos == EMPTY {
                continue;
            }
            used += 1;
            let e = self.log[s.pos as usize];
            assert_eq!(s.tag, hash(e.client_id, e.nonce));
            // Every slot from home to i is occupied, so lookups reach it.
            let mut k = self.home(s.tag);
            while k != i {
                assert!(self.slots[k].pos != EMPTY, "broken probe chain");
                k = (k + 1) & self.mask;
            }
        }
        assert_eq!(used, self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn duplicate_within_horizon_then_accepted_after() {
        let mut d = Dedup::new(3, 4, 10);
        assert_eq!(d.check_and_insert(1, 7, 10), Ok(()));
        assert_eq!(d.check_and_insert(1, 7, 10), Err(Reason::DuplicateNonce));
        assert_eq!(d.check_and_insert(2, 7, 10), Ok(()), "other client, same nonce");
        d.advance(11);
        d.advance(12);
        assert_eq!(d.check_and_insert(1, 7, 12), Err(Reason::DuplicateNonce));
        d.advance(13);
        // Window 10 is now 3 windows back: outside a horizon of 3.
        assert_eq!(d.check_and_insert(1, 7, 13), Ok(()));
        assert_eq!(d.check_and_insert(1, 7, 13), Err(Reason::DuplicateNonce));
        d.check_invariants();
    }

    #[test]
    fn full_table_answers_overloaded_then_recovers() {
        let mut d = Dedup::new(2, 2, 0);
        assert_eq!(d.check_and_insert(1, 1, 0), Ok(()));
        assert_eq!(d.check_and_insert(1, 2, 0), Ok(()));
        assert_eq!(d.check_and_insert(1, 3, 0), Ok(()));
        assert_eq!(d.check_and_insert(1, 4, 0), Ok(()));
        assert_eq!(d.check_and_insert(1, 5, 0), Err(Reason::Overloaded));
        assert_eq!(d.len(), d.capacity());
        d.advance(1);
        assert_eq!(d.check_and_insert(1, 5, 1), Err(Reason::Overloaded));
        d.advance(2);
        // Window 0 expired: its entries are reclaimed on demand.
        assert_eq!(d.check_and_insert(1, 5, 2), Ok(()));
        assert_eq!(d.check_and_insert(1, 1, 2), Ok(()));
        assert_eq!(d.len(), 2);
        d.check_invariants();
    }

    #[test]
    fn memory_bound_matches_docs() {
        // docs/windows.md: 32 × entries + 8 × next_pow2(2 × entries); defaults 32 + 16 MiB.
        assert_eq!(size_of::<DedupEntry>(), 32);
        assert_eq!(size_of::<Slot>(), 8);
        let d = Dedup::new(16, 65_536, 0);
        assert_eq!(d.capacity(), 1 << 20);
        assert_eq!(d.slots_len(), 1 << 21);
        assert_eq!(d.heap_bytes(), 48 << 20);
        let d = Dedup::new(3, 5, 0);
        assert_eq!(d.slots_len(), 32);
    }

    #[test]
    fn insert_for_a_newer_window_advances() {
        let mut d = Dedup::new(2, 4, 0);
        d.check_and_insert(1, 1, 0).unwrap();
        assert_eq!(d.check_and_insert(1, 2, 5), Ok(()));
        assert_eq!(d.window_id(), 5);
        assert!(!d.contains(1, 1), "window 0 is outside the horizon of window 5");
        assert_eq!(d.check_and_insert(1, 1, 5), Ok(()));
    }

    #[test]
    fn get_returns_value_of_live_entry() {
        let mut d = Dedup::new(1, 8, 5);
        d.insert(3, 9, 5, 42).unwrap();
        assert_eq!(d.get(3, 9).map(|e| e.value), Some(42));
        assert_eq!(d.get(3, 8), None);
        d.advance(6);
        assert_eq!(d.get(3, 9), None, "expired, even before removal");
        assert_eq!(d.expire(10), 1);
        assert!(d.is_empty());
    }

    #[test]
    fn colliding_keys_survive_deletions() {
        // A tiny index forces long clusters and wrap-around; check chains after every step.
        let mut d = Dedup::new(2, 3, 0);
        let mut w = 0;
        for round in 0..50u64 {
            for k in 0..3 {
                assert_eq!(d.check_and_insert(k, round, w), Ok(()));
                d.check_invariants();
            }
            for k in 0..3 {
                assert!(d.contains(k, round));
            }
            w += 1;
            d.advance(w);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert { client_id: u64, nonce: u64 },
        Advance { windows: u64 },
        Expire { steps: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u64..4, 0u64..24).prop_map(|(client_id, nonce)| Op::Insert { client_id, nonce }),
            2 => (0u64..3).prop_map(|windows| Op::Advance { windows }),
            1 => (0usize..4).prop_map(|steps| Op::Expire { steps }),
        ]
    }

    proptest! {
        /// Exactness against a reference model: no false positives, no false negatives,
        /// `Overloaded` exactly when every entry is inside the horizon, and never more than
        /// `capacity()` entries.
        #[test]
        fn agrees_with_reference_model(
            horizon in 1u32..5,
            records_max in 1usize..6,
            ops in proptest::collection::vec(op(), 1..400),
        ) {
            let mut d = Dedup::new(horizon, records_max, 0);
            let capacity = d.capacity();
            let slots_len = d.slots_len();
            let mut model: HashMap<(u64, u64), u64> = HashMap::new();
            let mut w = 0u64;
            let live = |m: &HashMap<(u64, u64), u64>, w: u64, k: (u64, u64)| {
                m.get(&k).is_some_and(|last| w - last < u64::from(horizon))
            };
            for op in ops {
                match op {
                    Op::Insert { client_id, nonce } => {
                        let k = (client_id, nonce);
                        let live_count = model.values().filter(|last| w - **last < u64::from(horizon)).count();
                        let expected = if live(&model, w, k) {
                            Err(Reason::DuplicateNonce)
                        } else if live_count == capacity {
                            Err(Reason::Overloaded)
                        } else {
                            Ok(())
                        };
                        prop_assert_eq!(d.check_and_insert(client_id, nonce, w), expected);
                        if expected.is_ok() {
                            model.insert(k, w);
                        }
                    }
                    Op::Advance { windows } => {
                        w += windows;
                        d.advance(w);
                    }
                    Op::Expire { steps } => {
                        d.expire(steps);
                    }
                }
                prop_assert!(d.len() <= capacity);
                prop_assert_eq!(d.capacity(), capacity);
                prop_assert_eq!(d.slots_len(), slots_len);
                d.check_invariants();
                for c in 0..4 {
                    for n in 0..24 {
                        prop_assert_eq!(d.contains(c, n), live(&model, w, (c, n)));
                    }
                }
            }
        }
    }
}
