//! Per-window conflict structure: resource keys interned to dense ids, and the
//! resource-to-intents adjacency.
//!
//! Call order: [`KeyIndex::new`] once (allocates everything), then [`KeyIndex::prepare`] once
//! per window, then [`KeyIndex::build_adjacency`] if `holders` is needed, then any number of
//! reads. `prepare` never allocates while the batch is within
//! the `records_max`/`keys_max` given at construction.
//!
//! Known limitation: the hash is a fixed multiply-xorshift mix, not keyed. Keys are chosen by
//! clients, so a client that knows the mix could pick keys that collide and lengthen probe
//! chains (the load factor stays at most 1/2, so this costs time, never correctness).
//! A per-process random key would close it; the builders' determinism does not depend on
//! the hash because ids are assigned in first-seen order.

use crate::batch::IntentBatch;
use crate::mem::prefetch;

/// Largest record capacity: greedy packs `(profit, index)` into one `u64` sort key with
/// 44 bits of profit and 20 bits of index.
pub const RECORDS_MAX_LIMIT: usize = 1 << 20;

/// Marks "no intent" in owner arrays.
pub(crate) const NONE: u32 = u32::MAX;

/// One open-addressing slot. Key and tag sit together so a probe touches one cache line.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    key: u64,
    /// `stamp << 32 | dense id`. A slot whose stamp is not the current one is empty, so the
    /// table never needs clearing between windows.
    tag: u64,
}

/// Dense resource ids and adjacency of one window. See the module doc for the call order.
#[derive(Debug, Clone)]
pub struct KeyIndex {
    slots: Vec<Slot>,
    stamp: u32,
    /// The key of every dense id, for rehashing when the table prefix grows.
    keys_by_id: Vec<u64>,
    /// Table prefix the last window ended with: the next window starts there.
    slots_used_last: usize,
    /// Dense id of every key occurrence, parallel to `IntentBatch::all_keys`.
    ids: Vec<u32>,
    /// `ids[starts[i]..starts[i + 1]]` are the ids of intent `i`.
    starts: Vec<u32>,
    /// `adj[adj_starts[r]..adj_starts[r + 1]]` are the intents holding resource `r`,
    /// ascending, each once. One array, so a resource's run costs one cache miss, not two
    /// (perf on `select/improved/20000`: the start and end loads were a fifth of the (1,2)
    /// move's time).
    adj_starts: Vec<u32>,
    adj: Vec<u32>,
    /// Last intent that counted each resource as distinct (only for intents with more than
    /// `DISTINCT_SCAN_MAX` keys; smaller ones compare their ids among themselves).
    last_holder: Vec<u32>,
    /// Distinct resources per intent (equals the key count when keys are distinct, which
    /// the wire layer enforces; counted anyway so the dual bound stays valid regardless).
    distinct: Vec<u32>,
    resources_count: usize,
    /// Some intent of the window repeats a key.
    repeats_any: bool,
    adjacency_ready: bool,
    records_max: usize,
    keys_max: usize,
}

/// Intents with at most this many keys count their distinct resources by comparing their
/// ids with each other, without `last_holder`, whose random reads were 9 % of `prepare` in
/// perf. The comparison has no early exit (with `contains` it mispredicted). Why 4:
/// `BENCHMARKS.md`, "Measurements behind code choices".
const DISTINCT_SCAN_MAX: usize = 4;

/// How many keys ahead `prepare` prefetches the slot of: far enough to cover a miss, near
/// enough to stay within the line-fill buffers (`BENCHMARKS.md`, "Measurements behind code
/// choices").
const PREFETCH_AHEAD: usize = 8;

/// Distinct keys at which a table prefix of `slots_used` slots doubles: half full. Fuller
/// prefixes fit more windows in cache but their longer probe chains cost more than the
/// misses saved (`BENCHMARKS.md`, "Measurements behind code choices").
#[inline]
fn grow_threshold(slots_used: usize) -> u32 {
    (slots_used / 2) as u32
}

#[inline]
fn hash(key: u64) -> u64 {
    // Multiply-xorshift-multiply (a murmur3-style finaliser): sequential and strided keys
    // spread over all the high bits we index with.
    let mut h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 32;
    h.wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

impl KeyIndex {
    /// Allocates for windows of up to `records_max` intents and `keys_max` keys in total.
    pub fn new(records_max: usize, keys_max: usize) -> KeyIndex {
        assert!(records_max <= RECORDS_MAX_LIMIT, "records_max {records_max} exceeds {RECORDS_MAX_LIMIT}");
        assert!(keys_max < u32::MAX as usize, "keys_max must fit in u32");
        // Load factor at most 1/2 at full capacity.
        let slots_count = (2 * keys_max).max(16).next_power_of_two();
        let mut starts = Vec::with_capacity(records_max + 1);
        // An empty window until the first `prepare`.
        starts.push(0);
        KeyIndex {
            slots: vec![Slot::default(); slots_count],
            stamp: 0,
            keys_by_id: Vec::with_capacity(keys_max),
            slots_used_last: 0,
            ids: Vec::with_capacity(keys_max),
            starts,
            adj_starts: Vec::with_capacity(keys_max + 2),
            adj: Vec::with_capacity(keys_max),
            last_holder: Vec::with_capacity(keys_max),
            distinct: Vec::with_capacity(records_max),
            resources_count: 0,
            repeats_any: false,
            adjacency_ready: false,
            records_max,
            keys_max,
        }
    }

    /// A fresh stamp: every slot written under an older stamp reads as empty.
    fn bump_stamp(&mut self) {
        if self.stamp == u32::MAX {
            for slot in &mut self.slots {
                slot.tag = 0;
            }
            self.stamp = 0;
        }
        self.stamp += 1;
    }

    /// Re-inserts every key interned so far into the first `slots_used` slots under a
    /// fresh stamp, with the ids they have.
    fn rehash(&mut self, slots_used: usize) {
        self.bump_stamp();
        let stamp = u64::from(self.stamp);
        let mask = slots_used - 1;
        let shift = 64 - slots_used.trailing_zeros();
        for (id, &key) in self.keys_by_id.iter().enumerate() {
            let mut s = (hash(key) >> shift) as usize;
            while self.slots[s].tag >> 32 == stamp {
                s = (s + 1) & mask;
            }
            self.slots[s] = Slot { key, tag: (stamp << 32) | id as u64 };
        }
    }

    pub fn records_max(&self) -> usize {
        self.records_max
    }

    pub fn keys_max(&self) -> usize {
        self.keys_max
    }

    /// Interns the window's keys (see [`KeyIndex::build_adjacency`] for the adjacency). Ids are assigned in first-seen
    /// order, so the result depends only on the batch.
    pub fn prepare(&mut self, batch: &IntentBatch) {
        let intents_count = batch.len();
        let keys = batch.all_keys();
        assert!(
            intents_count <= self.records_max && keys.len() <= self.keys_max,
            "batch ({intents_count} intents, {} keys) exceeds builder capacity ({}, {})",
            keys.len(),
            self.records_max,
            self.keys_max
        );
        // Use only a prefix of the table sized to this window, so small windows and windows
        // with few distinct keys stay in cache: start at the prefix the last window ended
        // with (consecutive windows are alike), at least a quarter of the worst case (every
        // key distinct), and double it whenever it gets half full. Doubling rehashes only
        // the distinct keys seen so far, under a fresh stamp (which empties the table in
        // O(1)); ids stay as assigned, so no key is interned twice (`BENCHMARKS.md`,
        // "Measurements behind code choices").
        let slots_needed = (2 * keys.len()).max(16).next_power_of_two();
        debug_assert!(slots_needed <= self.slots.len());
        let mut slots_used = (slots_needed / 4).max(self.slots_used_last).clamp(16, slots_needed);
        self.bump_stamp();
        let mut stamp = u64::from(self.stamp);
        let mut mask = slots_used - 1;
        let mut shift = 64 - slots_used.trailing_zeros();
        let mut grow_at = grow_threshold(slots_used);
        self.ids.clear();
        self.distinct.clear();
        self.last_holder.clear();
        self.keys_by_id.clear();
        self.starts.clear();
        self.starts.push(0);
        let mut next: u32 = 0;
        let mut distinct_sum = 0u64;
        // Position of `key` in `keys`, for prefetching the slot of the key `PREFETCH_AHEAD`
        // further on: the probes of a large window miss cache, and nothing else hides that.
        let mut at = 0usize;
        for i in 0..intents_count {
            let intent_keys = batch.keys(i);
            let first = self.ids.len();
            for &key in intent_keys {
                if let Some(&ahead) = keys.get(at + PREFETCH_AHEAD) {
                    prefetch(&self.slots[(hash(ahead) >> shift) as usize]);
                }
                at += 1;
                let mut s = (hash(key) >> shift) as usize;
                let id = loop {
                    let slot = &mut self.slots[s];
                    if slot.tag >> 32 != stamp {
                        if next == grow_at && slots_used < slots_needed {
                            slots_used *= 2;
                            self.rehash(slots_used);
                            stamp = u64::from(self.stamp);
                            mask = slots_used - 1;
                            shift = 64 - slots_used.trailing_zeros();
                            grow_at = grow_threshold(slots_used);
                            s = (hash(key) >> shift) as usize;
                            continue;
                        }
                        *slot = Slot { key, tag: (stamp << 32) | u64::from(next) };
                        self.keys_by_id.push(key);
                        self.last_holder.push(NONE);
                        next += 1;
                        break next - 1;
                    }
                    if slot.key == key {
                        break slot.tag as u32;
                    }
                    s = (s + 1) & mask;
                };
                self.ids.push(id);
            }
            let ids = &self.ids[first..];
            let distinct = if ids.len() <= DISTINCT_SCAN_MAX {
                // Without early exits: the branches of `contains` mispredicted.
                let mut repeats = 0u32;
                for k in 1..ids.len() {
                    let mut seen = false;
                    for &earlier in &ids[..k] {
                        seen |= earlier == ids[k];
                    }
                    repeats += u32::from(seen);
                }
                ids.len() as u32 - repeats
            } else {
                let mut distinct = 0;
                for &id in ids {
                    let last = &mut self.last_holder[id as usize];
                    if *last != i as u32 {
                        *last = i as u32;
                        distinct += 1;
                    }
                }
                distinct
            };
            distinct_sum += u64::from(distinct);
            self.distinct.push(distinct);
            self.starts.push(self.ids.len() as u32);
        }
        self.slots_used_last = slots_used;
        let resources_count = next as usize;
        self.resources_count = resources_count;
        self.repeats_any = distinct_sum as usize != keys.len();
        debug_assert_eq!(self.ids.len(), keys.len());
        self.adjacency_ready = false;
    }

    /// Builds the resource-to-intents adjacency of the prepared window (needed by
    /// [`KeyIndex::holders`]: local search and dual descent). Separate from `prepare` because
    /// FIFO and greedy without descent passes do not need it, and it is about a third of
    /// `prepare`'s cost. Idempotent per window.
    pub fn build_adjacency(&mut self) {
        if self.adjacency_ready {
            return;
        }
        self.adjacency_ready = true;
        let resources_count = self.resources_count;
        let intents_count = self.intents_count();
        // Counting sort of (resource, intent) pairs by resource; intents ascend within a
        // resource because we scan intents in order. A repeated key of one intent is listed
        // once. Counts go to `adj_starts[r + 2]`, so that after the prefix sum
        // `adj_starts[r + 1]` is the start of `r`'s run and serves as its fill cursor, which
        // leaves it at the end of the run, that is the start of `r + 1`'s.
        self.adj_starts.clear();
        self.adj_starts.resize(resources_count + 2, 0);
        if self.repeats_any {
            for i in 0..intents_count {
                let (a, b) = (self.starts[i] as usize, self.starts[i + 1] as usize);
                let repeats = (self.distinct[i] as usize) < b - a;
                for k in a..b {
                    let r = self.ids[k];
                    if repeats && self.ids[a..k].contains(&r) {
                        continue;
                    }
                    self.adj_starts[r as usize + 2] += 1;
                }
            }
        } else {
            for &r in &self.ids {
                self.adj_starts[r as usize + 2] += 1;
            }
        }
        for r in 2..resources_count + 2 {
            self.adj_starts[r] += self.adj_starts[r - 1];
        }
        self.adj.clear();
        self.adj.resize(self.adj_starts[resources_count + 1] as usize, NONE);
        for i in 0..intents_count {
            let (a, b) = (self.starts[i] as usize, self.starts[i + 1] as usize);
            let repeats = (self.distinct[i] as usize) < b - a;
            for k in a..b {
                let r = self.ids[k] as usize;
                if repeats && self.ids[a..k].contains(&(r as u32)) {
                    continue;
                }
                let cursor = &mut self.adj_starts[r + 1];
                self.adj[*cursor as usize] = i as u32;
                *cursor += 1;
            }
        }
        self.adj_starts.pop();
        debug_assert_eq!(self.adj_starts[resources_count] as usize, self.adj.len());
    }

    /// The adjacency of the current window has been built.
    pub fn has_adjacency(&self) -> bool {
        self.adjacency_ready
    }

    /// Intents in the prepared window.
    #[inline]
    pub fn intents_count(&self) -> usize {
        self.starts.len() - 1
    }

    /// Distinct resources in the prepared window.
    #[inline]
    pub fn resources_count(&self) -> usize {
        self.resources_count
    }

    /// Starts loading what `ids(i)` reads first (`prefetch_ids` needs it).
    #[inline(always)]
    pub(crate) fn prefetch_starts(&self, i: usize) {
        prefetch(&self.starts[i]);
    }

    /// Starts loading the ids of intent `i` (best after `prefetch_starts(i)` has had time).
    #[inline(always)]
    pub(crate) fn prefetch_ids(&self, i: usize) {
        if let Some(first) = self.ids.get(self.starts[i] as usize) {
            prefetch(first);
        }
    }

    /// Dense resource ids of intent `i` (in key order; may repeat if its keys repeat).
    #[inline]
    pub fn ids(&self, i: usize) -> &[u32] {
        &self.ids[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// Intents holding resource `r`, ascending, each once.
    #[inline]
    pub fn holders(&self, r: usize) -> &[u32] {
        debug_assert!(self.adjacency_ready, "call build_adjacency first");
        &self.adj[self.adj_starts[r] as usize..self.adj_starts[r + 1] as usize]
    }

    /// Number of distinct resources of intent `i`.
    #[inline]
    pub fn distinct_count(&self, i: usize) -> u32 {
        self.distinct[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::IntentMeta;

    fn batch(intents: &[&[u64]]) -> IntentBatch {
        let mut b = IntentBatch::with_capacity(8, 32);
        for (i, keys) in intents.iter().enumerate() {
            let meta = IntentMeta { seq: i as u64 + 1, profit: 1, ..IntentMeta::default() };
            b.push(meta, keys).unwrap();
        }
        b
    }

    #[test]
    fn interns_in_first_seen_order_and_builds_adjacency() {
        let mut index = KeyIndex::new(8, 32);
        index.prepare(&batch(&[&[100, 7], &[7, 9], &[9, 100, 5]]));
        index.build_adjacency();
        assert_eq!(index.resources_count(), 4);
        assert_eq!(index.ids(0), &[0, 1]);
        assert_eq!(index.ids(1), &[1, 2]);
        assert_eq!(index.ids(2), &[2, 0, 3]);
        assert_eq!(index.holders(0), &[0, 2]);
        assert_eq!(index.holders(1), &[0, 1]);
        assert_eq!(index.holders(2), &[1, 2]);
        assert_eq!(index.holders(3), &[2]);
        // A second window reuses the table without clearing and must not see old keys.
        index.prepare(&batch(&[&[5], &[6, 5]]));
        assert!(!index.has_adjacency());
        index.build_adjacency();
        assert_eq!(index.resources_count(), 2);
        assert_eq!(index.ids(1), &[1, 0]);
        assert_eq!(index.holders(0), &[0, 1]);
    }

    #[test]
    fn duplicate_keys_in_one_intent_count_once() {
        let mut index = KeyIndex::new(8, 32);
        index.prepare(&batch(&[&[3, 3, 4], &[4]]));
        index.build_adjacency();
        assert_eq!(index.holders(0), &[0]);
        assert_eq!(index.holders(1), &[0, 1]);
        assert_eq!(index.distinct_count(0), 2);
    }

    #[test]
    fn colliding_keys_probe_correctly() {
        // Many keys in a small table: forces probing chains.
        let mut index = KeyIndex::new(4, 16);
        let mut b = IntentBatch::with_capacity(4, 16);
        for i in 0..4u64 {
            let keys: Vec<u64> = (0..4).map(|k| (k + i) << 40).collect();
            b.push(IntentMeta { seq: i + 1, profit: 1, ..IntentMeta::default() }, &keys).unwrap();
        }
        index.prepare(&b);
        index.build_adjacency();
        assert_eq!(index.resources_count(), 7);
        for i in 0..4 {
            for (k, &key) in b.keys(i).iter().enumerate() {
                let id = index.ids(i)[k] as usize;
                assert!(index.holders(id).contains(&(i as u32)));
                // Same key, same id across intents.
                for j in 0..4 {
                    if let Some(pos) = b.keys(j).iter().position(|&x| x == key) {
                        assert_eq!(index.ids(j)[pos] as usize, id);
                    }
                }
            }
        }
    }

    #[test]
    fn ids_are_first_seen_order_across_growth_and_window_sizes() {
        // Windows of very different sizes in a row: the prefix grows (rehashing mid-window)
        // and the next window starts from the last one's prefix, large or small.
        use std::collections::HashMap;
        let (records_max, keys_max) = (2_000, 8_000);
        let mut index = KeyIndex::new(records_max, keys_max);
        let mut rng = crate::sim::SplitMix64::new(11);
        // (intents, keys per intent, key space).
        let windows = [
            (2_000, 3, 1u64 << 40),
            (3, 2, 4),
            // 8,000 keys over 4,000: the prefix doubles at 2,048 distinct, and nearly every
            // key interned before that comes back after it.
            (2_000, 4, 4_000),
            (1_500, 2, 300),
            (2_000, 4, 1 << 40),
            (700, 1, 1 << 40),
            (1, 1, 1),
        ];
        for (w, &(intents, keys_n, key_space)) in windows.iter().enumerate() {
            let mut b = IntentBatch::with_capacity(records_max, keys_max);
            for i in 0..intents {
                let keys: Vec<u64> = (0..keys_n).map(|_| rng.below(key_space)).collect();
                b.push(IntentMeta { seq: i as u64 + 1, profit: 1, ..IntentMeta::default() }, &keys).unwrap();
            }
            index.prepare(&b);
            let mut want: HashMap<u64, u32> = HashMap::new();
            for i in 0..b.len() {
                let ids: Vec<u32> = b
                    .keys(i)
                    .iter()
                    .map(|k| {
                        let n = want.len() as u32;
                        *want.entry(*k).or_insert(n)
                    })
                    .collect();
                assert_eq!(index.ids(i), &ids[..], "window {w} intent {i}");
            }
            assert_eq!(index.resources_count(), want.len(), "window {w}");
        }
    }
}
