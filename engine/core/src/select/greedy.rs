//! Greedy: highest profit first (ties: lower index first), skipping conflicts.

use super::bound::DualBound;
use super::fifo::BOUND_PASSES_DEFAULT;
use super::index::{KeyIndex, NONE};
use super::sort::sort_order_keys;
use super::{BlockBuilder, BuilderKind, Selection, finish};
use crate::amount::MAX_AMOUNT;
use crate::batch::IntentBatch;
use crate::mem::prefetch;

/// Bits of the intent index in a packed sort key.
pub(crate) const INDEX_BITS: u32 = 20;
pub(crate) const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// Windows from this many intents on prefetch in `GreedyCore::fill`.
const FILL_PREFETCH_INTENTS_MIN: usize = 16_384;

/// Intents between two prefetch stages of `GreedyCore::fill`.
const FILL_AHEAD: usize = 4;

/// Packs `(profit desc, index asc)` into one `u64` that sorts ascending: 44 bits of
/// `MAX_AMOUNT - profit`, 20 bits of index. One integer compare per step is what makes
/// `sort_unstable` fast here.
#[inline]
pub(crate) fn order_key(profit: u64, index: usize) -> u64 {
    debug_assert!(profit <= MAX_AMOUNT && (index as u64) <= INDEX_MASK);
    (MAX_AMOUNT.saturating_sub(profit) << INDEX_BITS) | index as u64
}

/// Greedy state on a prepared [`KeyIndex`]. Also the starting point of the improved builder,
/// which continues from `owner`/`selected`.
#[derive(Debug, Clone)]
pub(crate) struct GreedyCore {
    /// Packed order keys, ascending = profit descending.
    pub(crate) order: Vec<u64>,
    /// Selected intent holding each resource, or `NONE`.
    pub(crate) owner: Vec<u32>,
    pub(crate) selected: Vec<bool>,
    pub(crate) dual: DualBound,
    pub(crate) bound_passes: u32,
    pub(crate) sort_scratch: Vec<u64>,
    /// One bit per resource, set when `fill` gives it an owner: the fill's conflict checks
    /// read these bits (20 KB for 166k resources, in the first-level cache) instead of
    /// `owner` (4 bytes per resource, which missed cache on nearly every check of a large
    /// window visited in random order). Min of 40/24, 3 alternations: `select` 232 -> 222
    /// ns per intent on the bench's 10k window, 319-324 -> 300-308 on a 20k e2e-like one.
    taken: Vec<u64>,
}

impl GreedyCore {
    pub(crate) fn new(records_max: usize, keys_max: usize) -> GreedyCore {
        let mut core = GreedyCore::without_bound(records_max, keys_max);
        core.dual = DualBound::new(records_max, keys_max);
        core
    }

    /// A core whose `run` is never called (only `select`/`fill`): no bound scratch, which
    /// is `8 × keys_max` bytes.
    pub(crate) fn without_bound(records_max: usize, keys_max: usize) -> GreedyCore {
        GreedyCore {
            order: Vec::with_capacity(records_max),
            owner: Vec::with_capacity(keys_max),
            selected: Vec::with_capacity(records_max),
            dual: DualBound::new(0, 0),
            bound_passes: BOUND_PASSES_DEFAULT,
            sort_scratch: Vec::with_capacity(records_max),
            taken: Vec::with_capacity(keys_max.div_ceil(64)),
        }
    }

    /// Sorts, then takes every intent that fits. Returns the total.
    pub(crate) fn select(&mut self, index: &KeyIndex, profits: &[u64]) -> u64 {
        self.order.clear();
        self.order.extend(profits.iter().enumerate().map(|(i, &p)| order_key(p, i)));
        sort_order_keys(&mut self.order, INDEX_BITS, &mut self.sort_scratch);
        self.fill(index, profits)
    }

    /// Takes every intent that fits, in `self.order`. Returns the total.
    pub(crate) fn fill(&mut self, index: &KeyIndex, profits: &[u64]) -> u64 {
        self.owner.clear();
        self.owner.resize(index.resources_count(), NONE);
        self.selected.clear();
        self.selected.resize(profits.len(), false);
        self.taken.clear();
        self.taken.resize(index.resources_count().div_ceil(64), 0);
        let mut total = 0u64;
        let n = self.order.len();
        // Small windows' data stays in cache, where the prefetches only cost instructions.
        let ahead = if n >= FILL_PREFETCH_INTENTS_MIN { n } else { 0 };
        for k in 0..n {
            // The order visits intents at random: start loading the next ones' data in
            // stages (their ids' position, then their ids), each a few intents before it is
            // needed. Prefetching changes no result (`BENCHMARKS.md`, "Measurements behind
            // code choices").
            if k + 3 * FILL_AHEAD < ahead {
                index.prefetch_starts((self.order[k + 3 * FILL_AHEAD] & INDEX_MASK) as usize);
            }
            if k + 2 * FILL_AHEAD < ahead {
                let i = (self.order[k + 2 * FILL_AHEAD] & INDEX_MASK) as usize;
                index.prefetch_ids(i);
                prefetch(&profits[i]);
            }
            let key = self.order[k];
            let i = (key & INDEX_MASK) as usize;
            let ids = index.ids(i);
            if ids.iter().all(|&r| self.taken[r as usize / 64] & (1 << (r % 64)) == 0) {
                for &r in ids {
                    self.taken[r as usize / 64] |= 1 << (r % 64);
                    self.owner[r as usize] = i as u32;
                }
                self.selected[i] = true;
                total += profits[i];
            }
        }
        total
    }

    /// Sets the selection to `picked` (conflict-free, of a window of `intents_count`), as
    /// `fill` leaves it.
    pub(crate) fn set_selection(&mut self, index: &KeyIndex, intents_count: usize, picked: &[u32]) {
        self.owner.clear();
        self.owner.resize(index.resources_count(), NONE);
        self.selected.clear();
        self.selected.resize(intents_count, false);
        for &i in picked {
            for &r in index.ids(i as usize) {
                // `i` itself when one of its keys repeats.
                debug_assert!([NONE, i].contains(&self.owner[r as usize]), "picked intents conflict");
                self.owner[r as usize] = i;
            }
            self.selected[i as usize] = true;
        }
    }

    /// Writes the selected intents, ascending, into `out.picked` (after `out.clear()`).
    pub(crate) fn emit(&self, out: &mut Selection) {
        out.clear();
        out.picked.extend(self.selected.iter().enumerate().filter(|(_, s)| **s).map(|(i, _)| i as u32));
    }

    /// `bound_known`: the dual bound of this window with the same passes, if the caller
    /// already has it (the bound depends only on the window, so the packer computes it once).
    pub(crate) fn run(
        &mut self,
        index: &KeyIndex,
        profits: &[u64],
        bound_known: Option<u64>,
        out: &mut Selection,
    ) {
        let total = self.select(index, profits);
        self.emit(out);
        let bound = bound_known.unwrap_or_else(|| self.dual.compute(index, profits, self.bound_passes));
        finish(out, total, bound);
    }
}

/// Highest profit first builder.
///
/// Call order: [`GreedyBuilder::new`] once, then [`BlockBuilder::build`] per window.
#[derive(Debug, Clone)]
pub struct GreedyBuilder {
    index: KeyIndex,
    core: GreedyCore,
}

impl GreedyBuilder {
    pub fn new(records_max: usize, keys_max: usize) -> GreedyBuilder {
        GreedyBuilder {
            index: KeyIndex::new(records_max, keys_max),
            core: GreedyCore::new(records_max, keys_max),
        }
    }

    /// Sets the dual-descent passes of the upper bound (default [`BOUND_PASSES_DEFAULT`]).
    pub fn with_bound_passes(mut self, passes: u32) -> GreedyBuilder {
        self.core.bound_passes = passes;
        self
    }
}

impl BlockBuilder for GreedyBuilder {
    fn kind(&self) -> BuilderKind {
        BuilderKind::Greedy
    }

    fn build(&mut self, batch: &IntentBatch, out: &mut Selection) {
        self.index.prepare(batch);
        if self.core.bound_passes > 0 {
            self.index.build_adjacency();
        }
        self.core.run(&self.index, batch.profits(), None, out);
    }
}
