//! FIFO: arrival order, skipping any intent that conflicts with one already taken.

use super::bound::{BoundParts, DualBound};
use super::index::KeyIndex;
use super::{BlockBuilder, BuilderKind, Selection, finish};
use crate::batch::IntentBatch;

/// Default dual-descent passes for every builder's bound. Measured on the 1k and 10k bench
/// windows: one pass lowers the bound by 14–22 %, and the bound is identical for 1 to 100
/// passes (the lower-only descent reaches its fixed point in one sweep), so more passes only
/// cost time.
pub const BOUND_PASSES_DEFAULT: u32 = 1;

/// The FIFO algorithm on a prepared [`KeyIndex`]; shared by [`FifoBuilder`] and the packer.
#[derive(Debug, Clone)]
pub(crate) struct FifoCore {
    taken: Vec<bool>,
    dual: DualBound,
    pub(crate) bound_passes: u32,
    /// Upper bound of the last run (the packer hands it to the chosen builder).
    pub(crate) bound_last: u64,
    /// `bound_last` before rounding (a builder shard hands it to the merger).
    pub(crate) bound_parts_last: BoundParts,
}

impl FifoCore {
    pub(crate) fn new(records_max: usize, keys_max: usize) -> FifoCore {
        FifoCore {
            taken: Vec::with_capacity(keys_max),
            dual: DualBound::new(records_max, keys_max),
            bound_passes: BOUND_PASSES_DEFAULT,
            bound_last: 0,
            bound_parts_last: BoundParts::default(),
        }
    }

    pub(crate) fn run(&mut self, index: &KeyIndex, profits: &[u64], out: &mut Selection) {
        out.clear();
        self.taken.clear();
        self.taken.resize(index.resources_count(), false);
        let mut total = 0u64;
        for (i, &profit) in profits.iter().enumerate() {
            let ids = index.ids(i);
            if ids.iter().all(|&r| !self.taken[r as usize]) {
                for &r in ids {
                    self.taken[r as usize] = true;
                }
                out.picked.push(i as u32);
                total += profit;
            }
        }
        let parts = self.dual.compute_parts(index, profits, self.bound_passes);
        let bound = parts.bound();
        self.bound_last = bound;
        self.bound_parts_last = parts;
        finish(out, total, bound);
    }
}

/// Arrival-order builder: the baseline every published block is compared against.
///
/// Call order: [`FifoBuilder::new`] once, then [`BlockBuilder::build`] per window.
#[derive(Debug, Clone)]
pub struct FifoBuilder {
    index: KeyIndex,
    core: FifoCore,
}

impl FifoBuilder {
    pub fn new(records_max: usize, keys_max: usize) -> FifoBuilder {
        FifoBuilder {
            index: KeyIndex::new(records_max, keys_max),
            core: FifoCore::new(records_max, keys_max),
        }
    }

    /// Sets the dual-descent passes of the upper bound (default [`BOUND_PASSES_DEFAULT`]).
    pub fn with_bound_passes(mut self, passes: u32) -> FifoBuilder {
        self.core.bound_passes = passes;
        self
    }
}

impl BlockBuilder for FifoBuilder {
    fn kind(&self) -> BuilderKind {
        BuilderKind::Fifo
    }

    fn build(&mut self, batch: &IntentBatch, out: &mut Selection) {
        self.index.prepare(batch);
        if self.core.bound_passes > 0 {
            self.index.build_adjacency();
        }
        self.core.run(&self.index, batch.profits(), out);
    }
}
