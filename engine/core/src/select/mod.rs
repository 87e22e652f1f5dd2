//! Block builders: choose a conflict-free subset of a window's intents.
//!
//! Two intents conflict when they share a resource key. Every builder returns a
//! [`Selection`] that holds no two conflicting intents, plus an upper bound on the best
//! possible total so that the optimality gap of every block is known.
//!
//! Builders: [`FifoBuilder`] (arrival order, the baseline), [`GreedyBuilder`] (profit
//! order), [`ImprovedBuilder`] (greedy + local search + exact search on small windows). All
//! intern keys through a [`KeyIndex`] so conflict checks are array lookups, and all bound the
//! optimum with a feasible LP dual ([`DualBound`]).
//!
//! Call order: construct once with the window's capacity (all scratch space is allocated
//! then), then call [`BlockBuilder::build`] once per window. `build` does not allocate
//! while the batch stays within the capacity given at construction.

use crate::batch::IntentBatch;

mod bound;
mod exact;
mod fifo;
mod greedy;
mod improved;
mod index;
#[cfg(test)]
mod pinned;
mod sort;

pub use bound::{BoundParts, DualBound};
pub use exact::EXACT_INTENTS_LIMIT;
pub use fifo::{BOUND_PASSES_DEFAULT, FifoBuilder};
pub use greedy::GreedyBuilder;
pub use improved::{ImprovedBuilder, ImprovedConfig, ImprovedStats};
pub use index::{KeyIndex, RECORDS_MAX_LIMIT};
pub use sort::radix_sort_u64;

pub(crate) use fifo::FifoCore;
pub(crate) use greedy::{GreedyCore, INDEX_MASK as ORDER_INDEX_MASK, order_key};
pub(crate) use improved::ImprovedCore;

/// Sets the totals of a filled selection. A bound equal to the total proves optimality.
#[inline]
pub(crate) fn finish(out: &mut Selection, total: u64, bound: u64) {
    debug_assert!(bound >= total, "upper bound {bound} below feasible total {total}");
    out.total = total;
    out.upper_bound = bound.max(total);
    out.exact = bound <= total;
}

/// Which algorithm produced a selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuilderKind {
    /// Arrival order, skipping conflicts: the baseline.
    Fifo,
    /// Highest profit first, skipping conflicts.
    Greedy,
    /// Greedy, then bounded local search; exact branch and bound on small windows.
    Improved,
}

impl BuilderKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            BuilderKind::Fifo => "fifo",
            BuilderKind::Greedy => "greedy",
            BuilderKind::Improved => "improved",
        }
    }

    pub const fn code(self) -> u8 {
        match self {
            BuilderKind::Fifo => 0,
            BuilderKind::Greedy => 1,
            BuilderKind::Improved => 2,
        }
    }
}

/// A builder name that is not `fifo`, `greedy` or `improved`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown builder {0:?}; expected one of: fifo, greedy, improved")]
pub struct ParseBuilderKindError(pub String);

impl std::str::FromStr for BuilderKind {
    type Err = ParseBuilderKindError;

    fn from_str(s: &str) -> Result<BuilderKind, ParseBuilderKindError> {
        match s {
            "fifo" => Ok(BuilderKind::Fifo),
            "greedy" => Ok(BuilderKind::Greedy),
            "improved" => Ok(BuilderKind::Improved),
            other => Err(ParseBuilderKindError(other.to_string())),
        }
    }
}

/// A builder's answer for one window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Indices into the batch of the chosen intents, ascending.
    pub picked: Vec<u32>,
    /// Sum of the chosen intents' profits.
    pub total: u64,
    /// An upper bound on the maximum total any conflict-free subset can reach.
    /// `upper_bound >= total` always; equal to `total` when `exact`.
    pub upper_bound: u64,
    /// The selection is proven optimal.
    pub exact: bool,
}

impl Selection {
    pub fn with_capacity(records_max: usize) -> Selection {
        Selection { picked: Vec::with_capacity(records_max), ..Selection::default() }
    }

    pub fn clear(&mut self) {
        self.picked.clear();
        self.total = 0;
        self.upper_bound = 0;
        self.exact = false;
    }

    /// `upper_bound - total`, in minor units.
    pub fn gap(&self) -> u64 {
        self.upper_bound - self.total
    }
}

/// One algorithm that selects a conflict-free subset of a batch.
pub trait BlockBuilder {
    fn kind(&self) -> BuilderKind;

    /// Fills `out` (cleared first) with a conflict-free selection of `batch`.
    /// Deterministic: the same batch gives the same selection.
    fn build(&mut self, batch: &IntentBatch, out: &mut Selection);
}
