//! Improved: greedy, then bounded local search, then exact branch and bound on small windows.
//!
//! Local search starts from the best of three greedy passes: profit order (the greedy
//! builder's answer), profit/sqrt(keys) order, and arrival order (FIFO's answer). So the
//! improved total is never below the greedy or the FIFO total.
//!
//! Local search repeats two moves until neither improves or the step budget is spent:
//! - **1-for-k**: an unselected intent `j` whose profit exceeds the summed profit of the
//!   selected intents it conflicts with replaces them; the intents those freed resources
//!   now admit are re-added greedily.
//! - **(1,2)**: a selected intent `s` is replaced by two disjoint unselected intents whose
//!   only selected conflict is `s` and whose profits sum to more than `s`'s; then re-add.
//!
//! Every move strictly raises the total, so the search terminates; the budget
//! (`local_search_steps_max`) makes its cost deterministic: one step is one intent looked at
//! (a swap candidate, a neighbour considered for re-adding, or a pair member checked).

use super::exact::{EXACT_INTENTS_LIMIT, Exact};
use super::fifo::BOUND_PASSES_DEFAULT;
use super::greedy::{GreedyCore, INDEX_BITS, INDEX_MASK, order_key};
use super::index::{KeyIndex, NONE};
use super::sort::sort_order_keys;
use super::{BlockBuilder, BuilderKind, Selection, finish};
use crate::batch::IntentBatch;
use crate::pace::{Pace, STEPS_PER_POINT, Unpaced, run_unpaced};

/// Tuning of [`ImprovedBuilder`]. All budgets are counts, never time, so results are
/// deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImprovedConfig {
    /// Local-search budget in steps (see the module doc). 0 disables local search.
    pub local_search_steps_max: u64,
    /// Windows with at most this many intents go to the exact solver (at most 64).
    pub exact_intents_max: usize,
    /// Node budget of the exact solver; when it runs out the block is not marked exact.
    pub exact_nodes_max: u64,
    /// Dual-descent passes for the upper bound when the window is not solved exactly.
    pub bound_passes: u32,
}

impl Default for ImprovedConfig {
    /// Local-search budget sized so that improved costs about three greedy runs on the
    /// 10,000-intent bench window (`benches/build.rs`). Exact search up to 40 intents with
    /// 200,000 nodes: the test `default_budget_solves_forty_intent_windows` holds it to
    /// proving optimality on 40-intent windows.
    fn default() -> ImprovedConfig {
        ImprovedConfig {
            local_search_steps_max: 50_000,
            exact_intents_max: 40,
            exact_nodes_max: 200_000,
            bound_passes: BOUND_PASSES_DEFAULT,
        }
    }
}

/// What the last [`ImprovedBuilder::build`] did, for metrics and the simulator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImprovedStats {
    /// Greedy (profit order) total.
    pub greedy_total: u64,
    /// Greedy total in profit/sqrt(keys) order. Local search starts from the best of this,
    /// `greedy_total` and the FIFO total.
    pub density_total: u64,
    pub local_search_steps: u64,
    pub local_search_moves: u64,
    /// Branch-and-bound nodes visited (0 when the window was too large).
    pub exact_nodes: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct ImprovedCore {
    pub(crate) greedy: GreedyCore,
    config: ImprovedConfig,
    /// Per-intent stamp marks (dedup of conflicts and candidates).
    intent_mark: Vec<u32>,
    /// Per-resource stamp marks ((1,2) pair disjointness).
    resource_mark: Vec<u32>,
    stamp: u32,
    /// Selected intents removed by the current move.
    removed: Vec<u32>,
    /// Packed order keys of re-add or pair candidates.
    candidates: Vec<u64>,
    exact: Exact,
    /// Second greedy start, in density order (see `run`).
    density: GreedyCore,
    /// `round(2^16 / sqrt(k))` for `k` in `0..=64` (entry 0 unused).
    inv_sqrt_q16: [u64; 65],
    steps: u64,
    pub(crate) stats: ImprovedStats,
}

impl ImprovedCore {
    pub(crate) fn new(records_max: usize, keys_max: usize, config: ImprovedConfig) -> ImprovedCore {
        assert!(
            config.exact_intents_max <= EXACT_INTENTS_LIMIT,
            "exact_intents_max must be at most {EXACT_INTENTS_LIMIT}"
        );
        let mut greedy = GreedyCore::new(records_max, keys_max);
        greedy.bound_passes = config.bound_passes;
        ImprovedCore {
            greedy,
            config,
            intent_mark: Vec::with_capacity(records_max),
            resource_mark: Vec::with_capacity(keys_max),
            stamp: 0,
            removed: Vec::with_capacity(64),
            candidates: Vec::with_capacity(records_max),
            exact: Exact::new(),
            density: GreedyCore::without_bound(records_max, keys_max),
            inv_sqrt_q16: std::array::from_fn(|k| {
                // IEEE sqrt is correctly rounded, so this table is the same on every host.
                (65536.0 / (k.max(1) as f64).sqrt()).round() as u64
            }),
            steps: 0,
            stats: ImprovedStats::default(),
        }
    }

    pub(crate) fn config(&self) -> ImprovedConfig {
        self.config
    }

    fn next_stamp(&mut self) -> u32 {
        if self.stamp == u32::MAX {
            self.intent_mark.fill(0);
            self.resource_mark.fill(0);
            self.stamp = 0;
        }
        self.stamp += 1;
        self.stamp
    }

    /// `bound_known`: as for `GreedyCore::run` (used only when the window is not solved
    /// exactly).
    pub(crate) fn run(
        &mut self,
        index: &KeyIndex,
        profits: &[u64],
        bound_known: Option<u64>,
        fifo_known: Option<&Selection>,
        out: &mut Selection,
    ) {
        run_unpaced(self.run_paced(index, profits, bound_known, fifo_known, out, &mut Unpaced));
    }

    /// [`ImprovedCore::run`], pausing at `pace`'s points between phases and inside the
    /// local search (`crate::pace`). Same result.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run_paced(
        &mut self,
        index: &KeyIndex,
        profits: &[u64],
        bound_known: Option<u64>,
        fifo_known: Option<&Selection>,
        out: &mut Selection,
        pace: &mut impl Pace,
    ) {
        let n = profits.len();
        let mut total = self.greedy.select(index, profits);
        pace.point().await;
        self.stats = ImprovedStats { greedy_total: total, ..ImprovedStats::default() };
        // Second start: greedy by profit / sqrt(keys), the classic order for weighted set
        // packing; it favours intents that block few others. Keep whichever start is better.
        // On the 10k bench window it beats profit order by a wide margin (see bench output).
        let density_total = self.density_select(index, profits);
        self.stats.density_total = density_total;
        pace.point().await;
        if density_total > total {
            std::mem::swap(&mut self.greedy.owner, &mut self.density.owner);
            std::mem::swap(&mut self.greedy.selected, &mut self.density.selected);
            total = density_total;
        }
        // Third start: arrival order. Rarely the best, but it makes "improved >= FIFO" a
        // guarantee of the builder rather than of the packer's fallback, for one more pass.
        // `fifo_known`: FIFO's selection on this index (the packer runs FIFO anyway), which
        // is exactly what the arrival-order pass selects; one fill pass fewer.
        let fifo_total = match fifo_known {
            Some(fifo) => {
                self.density.set_selection(index, n, &fifo.picked);
                fifo.total
            }
            None => {
                self.density.order.clear();
                self.density.order.extend(0..n as u64);
                self.density.fill(index, profits)
            }
        };
        if fifo_total > total {
            std::mem::swap(&mut self.greedy.owner, &mut self.density.owner);
            std::mem::swap(&mut self.greedy.selected, &mut self.density.selected);
            total = fifo_total;
        }
        pace.point().await;
        self.intent_mark.clear();
        self.intent_mark.resize(n, 0);
        self.resource_mark.clear();
        self.resource_mark.resize(index.resources_count(), 0);
        self.stamp = 0;
        self.steps = 0;

        total = self.local_search(index, profits, total, pace).await;
        self.stats.local_search_steps = self.steps;
        pace.point().await;

        let mut exact = false;
        if n <= self.config.exact_intents_max {
            let outcome =
                self.exact.solve(index, profits, &self.greedy.order, total, self.config.exact_nodes_max);
            self.stats.exact_nodes = outcome.nodes;
            if outcome.improved {
                self.greedy.selected.fill(false);
                for i in self.exact.best_intents() {
                    self.greedy.selected[i as usize] = true;
                }
                total = outcome.best_total;
            }
            exact = outcome.complete;
            pace.point().await;
        }
        self.greedy.emit(out);
        debug_assert_eq!(out.picked.iter().map(|&i| profits[i as usize]).sum::<u64>(), total);
        let bound = if exact {
            total
        } else {
            bound_known.unwrap_or_else(|| self.greedy.dual.compute(index, profits, self.config.bound_passes))
        };
        finish(out, total, bound);
    }

    fn density_select(&mut self, index: &KeyIndex, profits: &[u64]) -> u64 {
        self.density.order.clear();
        for (i, &p) in profits.iter().enumerate() {
            let k = (index.distinct_count(i) as usize).min(64);
            let weight = (p * self.inv_sqrt_q16[k]) >> 16;
            self.density.order.push(order_key(weight, i));
        }
        sort_order_keys(&mut self.density.order, INDEX_BITS, &mut self.density.sort_scratch);
        self.density.fill(index, profits)
    }

    #[inline]
    fn fits(&self, index: &KeyIndex, i: usize) -> bool {
        index.ids(i).iter().all(|&r| self.greedy.owner[r as usize] == NONE)
    }

    #[inline]
    fn take(&mut self, index: &KeyIndex, i: usize) {
        for &r in index.ids(i) {
            // `i` itself when one of its keys repeats.
            debug_assert!([NONE, i as u32].contains(&self.greedy.owner[r as usize]));
            self.greedy.owner[r as usize] = i as u32;
        }
        self.greedy.selected[i] = true;
    }

    #[inline]
    fn drop_intent(&mut self, index: &KeyIndex, i: usize) {
        for &r in index.ids(i) {
            debug_assert!([NONE, i as u32].contains(&self.greedy.owner[r as usize]));
            self.greedy.owner[r as usize] = NONE;
        }
        self.greedy.selected[i] = false;
    }

    fn budget_left(&self) -> bool {
        self.steps < self.config.local_search_steps_max
    }

    async fn local_search(
        &mut self,
        index: &KeyIndex,
        profits: &[u64],
        mut total: u64,
        pace: &mut impl Pace,
    ) -> u64 {
        let n = profits.len();
        let mut next_point = self.steps + STEPS_PER_POINT;
        while self.budget_left() {
            let mut moved = false;
            // 1-for-k, candidates in greedy order (profit descending).
            for k in 0..n {
                if !self.budget_left() {
                    break;
                }
                let j = (self.greedy.order[k] & INDEX_MASK) as usize;
                if self.greedy.selected[j] {
                    continue;
                }
                if self.steps >= next_point {
                    pace.point().await;
                    next_point = self.steps + STEPS_PER_POINT;
                }
                self.steps += 1;
                if let Some(gain) = self.try_one_for_k(index, profits, j) {
                    total += gain;
                    moved = true;
                }
            }
            // (1,2): each selected intent, same order.
            for k in 0..n {
                if !self.budget_left() {
                    break;
                }
                let s = (self.greedy.order[k] & INDEX_MASK) as usize;
                if !self.greedy.selected[s] {
                    continue;
                }
                if self.steps >= next_point {
                    pace.point().await;
                    next_point = self.steps + STEPS_PER_POINT;
                }
                self.steps += 1;
                if let Some(gain) = self.try_one_for_two(index, profits, s) {
                    total += gain;
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        total
    }

    /// Returns the gain if `j` replaced its conflicts.
    fn try_one_for_k(&mut self, index: &KeyIndex, profits: &[u64], j: usize) -> Option<u64> {
        let stamp = self.next_stamp();
        let profit = profits[j];
        let mut conflict_sum = 0u64;
        self.removed.clear();
        for &r in index.ids(j) {
            let o = self.greedy.owner[r as usize];
            if o != NONE && self.intent_mark[o as usize] != stamp {
                self.intent_mark[o as usize] = stamp;
                self.removed.push(o);
                conflict_sum += profits[o as usize];
                if conflict_sum >= profit {
                    return None;
                }
            }
        }
        debug_assert!(!self.removed.is_empty(), "an unselected greedy intent must conflict");
        let mut removed = std::mem::take(&mut self.removed);
        for &o in &removed {
            self.drop_intent(index, o as usize);
        }
        self.take(index, j);
        let gain = profit - conflict_sum + self.readd(index, profits, &removed);
        removed.clear();
        self.removed = removed;
        self.stats.local_search_moves += 1;
        Some(gain)
    }

    /// Returns the gain if two disjoint intents replaced `s`.
    fn try_one_for_two(&mut self, index: &KeyIndex, profits: &[u64], s: usize) -> Option<u64> {
        let stamp = self.next_stamp();
        let profit_s = profits[s];
        self.candidates.clear();
        for &r in index.ids(s) {
            let holders = index.holders(r as usize);
            // `s` holds `r`: a resource with one holder has no candidate, and skipping it
            // saves reading its run (most resources of an e2e window have one holder).
            if holders.len() < 2 {
                continue;
            }
            for &i in holders {
                let i = i as usize;
                if i == s || self.greedy.selected[i] || self.intent_mark[i] == stamp {
                    continue;
                }
                self.intent_mark[i] = stamp;
                self.steps += 1;
                let only_s = index.ids(i).iter().all(|&q| {
                    let o = self.greedy.owner[q as usize];
                    o == NONE || o == s as u32
                });
                if only_s {
                    self.candidates.push(order_key(profits[i], i));
                }
            }
        }
        if self.candidates.len() < 2 {
            return None;
        }
        // No pair can beat `s` unless the two best can: checking that first skips the sort
        // for most intents (sorting these lists was a quarter of improved/1000 in perf).
        let (mut best, mut second) = (u64::MAX, u64::MAX);
        for &key in &self.candidates {
            if key < best {
                second = best;
                best = key;
            } else if key < second {
                second = key;
            }
        }
        let top_two = profits[(best & INDEX_MASK) as usize] + profits[(second & INDEX_MASK) as usize];
        if top_two <= profit_s {
            return None;
        }
        self.candidates.sort_unstable();
        let mut pair = None;
        'outer: for x in 0..self.candidates.len() - 1 {
            let a = (self.candidates[x] & INDEX_MASK) as usize;
            let best_b = (self.candidates[x + 1] & INDEX_MASK) as usize;
            if profits[a] + profits[best_b] <= profit_s {
                break;
            }
            let stamp_a = self.next_stamp();
            for &r in index.ids(a) {
                self.resource_mark[r as usize] = stamp_a;
            }
            for y in x + 1..self.candidates.len() {
                let b = (self.candidates[y] & INDEX_MASK) as usize;
                if profits[a] + profits[b] <= profit_s || !self.budget_left() {
                    break;
                }
                self.steps += 1;
                if index.ids(b).iter().all(|&r| self.resource_mark[r as usize] != stamp_a) {
                    pair = Some((a, b));
                    break 'outer;
                }
            }
        }
        let (a, b) = pair?;
        self.drop_intent(index, s);
        self.take(index, a);
        self.take(index, b);
        let mut removed = std::mem::take(&mut self.removed);
        removed.clear();
        removed.push(s as u32);
        let gain = profits[a] + profits[b] - profit_s + self.readd(index, profits, &removed);
        removed.clear();
        self.removed = removed;
        self.stats.local_search_moves += 1;
        Some(gain)
    }

    /// Greedily re-adds intents touching resources of `removed` that are free now.
    fn readd(&mut self, index: &KeyIndex, profits: &[u64], removed: &[u32]) -> u64 {
        let stamp = self.next_stamp();
        self.candidates.clear();
        for &o in removed {
            for &r in index.ids(o as usize) {
                if self.greedy.owner[r as usize] != NONE {
                    continue;
                }
                for &i in index.holders(r as usize) {
                    let i = i as usize;
                    if self.greedy.selected[i] || self.intent_mark[i] == stamp {
                        continue;
                    }
                    self.intent_mark[i] = stamp;
                    self.steps += 1;
                    self.candidates.push(order_key(profits[i], i));
                }
            }
        }
        self.candidates.sort_unstable();
        let mut gain = 0u64;
        for c in 0..self.candidates.len() {
            let i = (self.candidates[c] & INDEX_MASK) as usize;
            if self.fits(index, i) {
                self.take(index, i);
                gain += profits[i];
            }
        }
        gain
    }
}

/// Greedy plus local search plus exact search on small windows.
///
/// Call order: [`ImprovedBuilder::new`] once, then [`BlockBuilder::build`] per window;
/// [`ImprovedBuilder::stats`] describes the last build.
#[derive(Debug, Clone)]
pub struct ImprovedBuilder {
    index: KeyIndex,
    core: ImprovedCore,
}

impl ImprovedBuilder {
    pub fn new(records_max: usize, keys_max: usize, config: ImprovedConfig) -> ImprovedBuilder {
        ImprovedBuilder {
            index: KeyIndex::new(records_max, keys_max),
            core: ImprovedCore::new(records_max, keys_max, config),
        }
    }

    pub fn config(&self) -> ImprovedConfig {
        self.core.config()
    }

    pub fn stats(&self) -> ImprovedStats {
        self.core.stats
    }
}

impl BlockBuilder for ImprovedBuilder {
    fn kind(&self) -> BuilderKind {
        BuilderKind::Improved
    }

    fn build(&mut self, batch: &IntentBatch, out: &mut Selection) {
        self.index.prepare(batch);
        self.index.build_adjacency();
        self.core.run(&self.index, batch.profits(), None, None, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::IntentMeta;
    use crate::select::FifoCore;
    use crate::sim::{SimParams, random_batch};

    /// Runs improved on `batch` with the arrival-order pass filled here and with FIFO's
    /// selection handed in; both must agree in everything.
    fn both_ways(batch: &IntentBatch, config: ImprovedConfig) -> (Selection, ImprovedStats) {
        let (records, keys) = (batch.len().max(1), batch.keys_len().max(64));
        let mut index = KeyIndex::new(records, keys);
        index.prepare(batch);
        index.build_adjacency();
        let profits = batch.profits();
        let mut fifo = FifoCore::new(records, keys);
        let mut fifo_selection = Selection::with_capacity(records);
        fifo.run(&index, profits, &mut fifo_selection);
        let mut filled = ImprovedCore::new(records, keys, config);
        let mut handed = ImprovedCore::new(records, keys, config);
        let (mut a, mut b) = (Selection::with_capacity(records), Selection::with_capacity(records));
        filled.run(&index, profits, None, None, &mut a);
        handed.run(&index, profits, None, Some(&fifo_selection), &mut b);
        assert_eq!(a, b);
        assert_eq!(filled.stats, handed.stats);
        (b, handed.stats)
    }

    #[test]
    fn fifos_selection_handed_in_is_the_arrival_order_pass() {
        // No search after the starts, so the best start is the answer.
        let starts_only =
            ImprovedConfig { local_search_steps_max: 0, exact_intents_max: 0, ..ImprovedConfig::default() };
        // Arrival order (6 + 6) beats both greedy orders (10) here.
        let mut batch = IntentBatch::with_capacity(3, 8);
        for (seq, (profit, keys)) in [(6u64, &[1u64][..]), (6, &[2]), (10, &[1, 2])].into_iter().enumerate() {
            let meta = IntentMeta { seq: seq as u64 + 1, profit, ..IntentMeta::default() };
            batch.push(meta, keys).unwrap();
        }
        let (selection, stats) = both_ways(&batch, starts_only);
        assert_eq!((selection.total, stats.greedy_total, stats.density_total), (12, 10, 10));
        assert_eq!(selection.picked, vec![0, 1]);
        for seed in 0..64 {
            let params = SimParams {
                intents: 1 + seed as usize * 7,
                keys_min: 1,
                keys_max: 4,
                conflict_rate: (seed % 8) as f64 / 8.0,
                hot_keys: 16,
                profit_max: 1_000,
            };
            let batch = random_batch(seed, &params).unwrap();
            both_ways(&batch, starts_only);
            both_ways(&batch, ImprovedConfig::default());
        }
    }
}
