//! Exact branch and bound for small windows (at most 64 intents, one bit each).
//!
//! Call order: [`Exact::new`] once; then per window [`Exact::solve`] after the index is
//! prepared and an incumbent (the local-search result) is known.

use super::greedy::INDEX_MASK;
use super::index::KeyIndex;

/// Largest window the solver accepts: intents are bits of a `u64`.
pub const EXACT_INTENTS_LIMIT: usize = 64;

/// Outcome of one solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExactOutcome {
    /// The search finished within the node budget: `best_total` is optimal.
    pub(crate) complete: bool,
    /// Best total found; at least the incumbent.
    pub(crate) best_total: u64,
    /// Intents (as batch indices) of a strictly better set than the incumbent, if one was
    /// found; read them with [`Exact::best_intents`].
    pub(crate) improved: bool,
    pub(crate) nodes: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Exact {
    /// Batch index of each position; positions are in profit-descending order.
    intent_of: Vec<u32>,
    profit: Vec<u64>,
    /// Positions conflicting with each position, itself included.
    conflict: Vec<u64>,
    /// Per position, the position masks of its resources (each mask is a clique).
    cliques: Vec<u64>,
    clique_starts: Vec<u32>,
    /// Position mask per window resource; scratch while building `cliques`.
    resource_mask: Vec<u64>,
    nodes: u64,
    nodes_max: u64,
    best_total: u64,
    best_set: u64,
    improved: bool,
}

impl Exact {
    pub(crate) fn new() -> Exact {
        let keys_max = EXACT_INTENTS_LIMIT * 64;
        Exact {
            intent_of: Vec::with_capacity(EXACT_INTENTS_LIMIT),
            profit: Vec::with_capacity(EXACT_INTENTS_LIMIT),
            conflict: Vec::with_capacity(EXACT_INTENTS_LIMIT),
            cliques: Vec::with_capacity(keys_max),
            clique_starts: Vec::with_capacity(EXACT_INTENTS_LIMIT + 1),
            resource_mask: Vec::with_capacity(keys_max),
            nodes: 0,
            nodes_max: 0,
            best_total: 0,
            best_set: 0,
            improved: false,
        }
    }

    /// Searches for a set better than `incumbent_total`. `order` holds the window's packed
    /// greedy order keys (profit descending), which fixes the branching order.
    pub(crate) fn solve(
        &mut self,
        index: &KeyIndex,
        profits: &[u64],
        order: &[u64],
        incumbent_total: u64,
        nodes_max: u64,
    ) -> ExactOutcome {
        let n = order.len();
        assert!(n <= EXACT_INTENTS_LIMIT, "exact solver takes at most 64 intents");
        self.intent_of.clear();
        self.profit.clear();
        for &key in order {
            let i = (key & INDEX_MASK) as usize;
            self.intent_of.push(i as u32);
            self.profit.push(profits[i]);
        }
        self.resource_mask.clear();
        self.resource_mask.resize(index.resources_count(), 0);
        for pos in 0..n {
            for &r in index.ids(self.intent_of[pos] as usize) {
                self.resource_mask[r as usize] |= 1 << pos;
            }
        }
        self.conflict.clear();
        self.cliques.clear();
        self.clique_starts.clear();
        self.clique_starts.push(0);
        for pos in 0..n {
            let mut conflict = 1u64 << pos;
            for &r in index.ids(self.intent_of[pos] as usize) {
                let mask = self.resource_mask[r as usize];
                conflict |= mask;
                self.cliques.push(mask);
            }
            self.conflict.push(conflict);
            self.clique_starts.push(self.cliques.len() as u32);
        }
        self.nodes = 0;
        self.nodes_max = nodes_max;
        self.best_total = incumbent_total;
        self.best_set = 0;
        self.improved = false;
        let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let complete = self.search(all, 0, 0);
        ExactOutcome { complete, best_total: self.best_total, improved: self.improved, nodes: self.nodes }
    }

    /// Batch indices of the best set found (valid when the outcome says `improved`).
    pub(crate) fn best_intents(&self) -> impl Iterator<Item = u32> + '_ {
        let set = self.best_set;
        (0..self.intent_of.len()).filter(move |&pos| set & (1 << pos) != 0).map(|pos| self.intent_of[pos])
    }

    /// Upper bound on what the candidates can add: cover them by cliques (intents sharing
    /// one resource); a clique contributes at most its best profit, which is its
    /// lowest-position member because positions are in profit-descending order.
    #[inline]
    fn clique_bound(&self, mut candidates: u64) -> u64 {
        let mut bound = 0u64;
        while candidates != 0 {
            let pos = candidates.trailing_zeros() as usize;
            bound += self.profit[pos];
            let mut cover = 1u64 << pos;
            let (a, b) = (self.clique_starts[pos] as usize, self.clique_starts[pos + 1] as usize);
            for &clique in &self.cliques[a..b] {
                let c = clique & candidates;
                if c.count_ones() > cover.count_ones() {
                    cover = c;
                }
            }
            candidates &= !cover;
        }
        bound
    }

    /// Depth-first: include the best remaining candidate, then exclude it. Returns false
    /// when the node budget ran out. Depth is at most 64.
    fn search(&mut self, candidates: u64, value: u64, set: u64) -> bool {
        self.nodes += 1;
        if self.nodes > self.nodes_max {
            return false;
        }
        if value > self.best_total {
            self.best_total = value;
            self.best_set = set;
            self.improved = true;
        }
        if candidates == 0 {
            return true;
        }
        if value + self.clique_bound(candidates) <= self.best_total {
            return true;
        }
        let pos = candidates.trailing_zeros() as usize;
        let bit = 1u64 << pos;
        if !self.search(candidates & !self.conflict[pos], value + self.profit[pos], set | bit) {
            return false;
        }
        self.search(candidates & !bit, value, set)
    }
}
