//! Block economics: which selection is published, the sequencer fee, and each intent's payout.
//!
//! Rule (also in `docs/economics.md`):
//! 1. The FIFO selection and the configured builder's selection are computed on the window.
//!    The builder's selection is published when its total is at least the FIFO total;
//!    otherwise the FIFO selection is published and the block says `builder = Fifo`. So a
//!    published block is never worse than FIFO and `surplus = total - fifo_total >= 0`.
//! 2. `fee = floor(fee_rate × surplus)`: the sequencer keeps a share of what it added over
//!    FIFO, never of what FIFO would have paid anyway.
//! 3. The fee is split over the block's intents pro rata to profit:
//!    `fee_i = floor(fee × profit_i / total)` (exact, in `u128`), then the
//!    `r = fee - Σ fee_i` leftover units (`r` < number of entries) are charged one each to
//!    the first `r` entries in ascending `seq`. `payout_i = profit_i - fee_i`.
//!
//! Invariants: `Σ payout_i + fee = total` exactly, `fee_i <= profit_i`, entries ascend by
//! `seq`, `upper_bound >= total`.

use crate::amount::FeeRate;
use crate::batch::{IntentBatch, IntentMeta};
use crate::pace::{Pace, Unpaced, run_unpaced};
use crate::select::{
    BoundParts, BuilderKind, FifoCore, GreedyCore, ImprovedConfig, ImprovedCore, ImprovedStats, KeyIndex,
    Selection, order_key,
};

/// One intent of a published block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockEntry {
    pub seq: u64,
    pub client_id: u64,
    pub nonce: u64,
    pub profit: u64,
    /// This intent's share of the block fee.
    pub fee: u64,
    /// `profit - fee`.
    pub payout: u64,
    /// The intent's receive time (`IntentMeta::rx_ns`), carried into the published block.
    pub rx_ns: u64,
}

/// A published block. Reused across windows: [`Packer::pack`] overwrites it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub window_id: u64,
    /// The builder whose selection was published (`Fifo` when the fallback applied).
    pub builder: BuilderKind,
    /// Ascending `seq`.
    pub entries: Vec<BlockEntry>,
    /// Σ profit of the entries.
    pub total: u64,
    /// Total of the FIFO selection of the same window.
    pub fifo_total: u64,
    /// `total - fifo_total`.
    pub surplus: u64,
    /// `floor(fee_rate × surplus)`, equal to Σ entry fees.
    pub fee: u64,
    pub fee_rate: FeeRate,
    /// Upper bound on the best total any conflict-free subset of the window reaches.
    pub upper_bound: u64,
    /// The published selection is proven optimal.
    pub exact: bool,
}

impl Block {
    /// An empty block that holds up to `records_max` entries without allocating.
    pub fn with_capacity(records_max: usize) -> Block {
        Block {
            window_id: 0,
            builder: BuilderKind::Fifo,
            entries: Vec::with_capacity(records_max),
            total: 0,
            fifo_total: 0,
            surplus: 0,
            fee: 0,
            fee_rate: FeeRate::ZERO,
            upper_bound: 0,
            exact: false,
        }
    }

    /// `upper_bound - total`.
    pub fn gap(&self) -> u64 {
        self.upper_bound - self.total
    }
}

/// One builder's result on a window, as reported by [`Packer::compare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BuilderOutcome {
    pub total: u64,
    pub upper_bound: u64,
    pub exact: bool,
    pub picked_count: usize,
}

impl BuilderOutcome {
    fn of(selection: &Selection) -> BuilderOutcome {
        BuilderOutcome {
            total: selection.total,
            upper_bound: selection.upper_bound,
            exact: selection.exact,
            picked_count: selection.picked.len(),
        }
    }
}

/// All three builders on one window, for the simulator and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Comparison {
    pub fifo: BuilderOutcome,
    pub greedy: BuilderOutcome,
    pub improved: BuilderOutcome,
    pub improved_stats: ImprovedStats,
}

impl Comparison {
    /// The tightest of the three bounds (all are valid).
    pub fn upper_bound(&self) -> u64 {
        self.fifo.upper_bound.min(self.greedy.upper_bound).min(self.improved.upper_bound)
    }
}

/// Turns windows into blocks.
///
/// Call order: [`Packer::new`] once (allocates all scratch for `records_max` intents and
/// `keys_max` keys), then [`Packer::pack`] (or [`Packer::compare`]) once per window. Neither
/// allocates while the batch stays within that capacity and `out` came from
/// [`Block::with_capacity`] with at least `records_max`.
///
/// Memory: all three builders are allocated whatever the kind (so `compare` works), about
/// 90–120 bytes per key of `keys_max` (the key table alone is 32–64) and 150 per record.
/// Size `keys_max` from the expected keys per window, not `records_max × 64`.
#[derive(Debug, Clone)]
pub struct Packer {
    kind: BuilderKind,
    index: KeyIndex,
    fifo: FifoCore,
    greedy: GreedyCore,
    improved: ImprovedCore,
    fifo_selection: Selection,
    chosen_selection: Selection,
    /// Scratch of [`Packer::pack_merged`]: resources taken, and the cross intents' order.
    merge_taken: Vec<bool>,
    merge_order: Vec<u64>,
    records_max: usize,
}

impl Packer {
    pub fn new(kind: BuilderKind, records_max: usize, keys_max: usize, config: ImprovedConfig) -> Packer {
        Packer {
            kind,
            index: KeyIndex::new(records_max, keys_max),
            fifo: FifoCore::new(records_max, keys_max),
            greedy: GreedyCore::new(records_max, keys_max),
            improved: ImprovedCore::new(records_max, keys_max, config),
            fifo_selection: Selection::with_capacity(records_max),
            chosen_selection: Selection::with_capacity(records_max),
            merge_taken: Vec::with_capacity(keys_max),
            merge_order: Vec::with_capacity(records_max),
            records_max,
        }
    }

    pub fn kind(&self) -> BuilderKind {
        self.kind
    }

    pub fn records_max(&self) -> usize {
        self.records_max
    }

    /// Stats of the improved builder's last run (zero unless it ran).
    pub fn improved_stats(&self) -> ImprovedStats {
        self.improved.stats
    }

    /// Builds the block of one window into `out` (see the module doc for the rule).
    pub fn pack(&mut self, window_id: u64, batch: &IntentBatch, fee_rate: FeeRate, out: &mut Block) {
        run_unpaced(self.run_builders(batch, &mut Unpaced));
        let chosen = self.last_selection();
        let kind = self.kind;
        let fifo = &self.fifo_selection;
        let (published, kind) =
            if chosen.total >= fifo.total { (chosen, kind) } else { (fifo, BuilderKind::Fifo) };
        // Both bounds are valid, so the smaller is too.
        let bound = chosen.upper_bound.min(fifo.upper_bound);
        fill_block(window_id, batch, fee_rate, published, kind, fifo.total, bound, out);
    }

    /// Runs the configured builder on `batch` (and FIFO, whose bound it reuses) and returns
    /// its selection, without economics: what a builder shard sends to the merger. Same
    /// selection as the one [`Packer::pack`] compares with FIFO.
    pub fn select(&mut self, batch: &IntentBatch) -> &Selection {
        run_unpaced(self.run_builders(batch, &mut Unpaced));
        self.last_selection()
    }

    /// [`Packer::select`], pausing at `pace`'s points (`crate::pace`). Same selection.
    pub async fn select_paced(&mut self, batch: &IntentBatch, pace: &mut impl Pace) -> &Selection {
        self.run_builders(batch, pace).await;
        self.last_selection()
    }

    /// FIFO and the configured builder on `batch`; results in `fifo_selection` and (unless
    /// the kind is `Fifo`) `chosen_selection`.
    async fn run_builders(&mut self, batch: &IntentBatch, pace: &mut impl Pace) {
        self.index.prepare(batch);
        let needs_adjacency = match self.kind {
            BuilderKind::Fifo => self.fifo.bound_passes > 0,
            BuilderKind::Greedy => self.fifo.bound_passes > 0 || self.greedy.bound_passes > 0,
            BuilderKind::Improved => true,
        };
        pace.point().await;
        if needs_adjacency {
            self.index.build_adjacency();
            pace.point().await;
        }
        let profits = batch.profits();
        self.fifo.run(&self.index, profits, &mut self.fifo_selection);
        pace.point().await;
        match self.kind {
            BuilderKind::Fifo => {}
            BuilderKind::Greedy => {
                let known =
                    (self.greedy.bound_passes == self.fifo.bound_passes).then_some(self.fifo.bound_last);
                self.greedy.run(&self.index, profits, known, &mut self.chosen_selection);
            }
            BuilderKind::Improved => {
                let known = (self.improved.config().bound_passes == self.fifo.bound_passes)
                    .then_some(self.fifo.bound_last);
                let fifo = Some(&self.fifo_selection);
                self.improved
                    .run_paced(&self.index, profits, known, fifo, &mut self.chosen_selection, pace)
                    .await;
            }
        }
    }

    /// Builds the block of a window assembled from builder shards (see `docs/sharding.md`).
    ///
    /// `merged` is the whole window in seq order; `shard_picks` (indices into `merged`) is
    /// the union of the shards' selections, which are conflict-free together because the
    /// shards own disjoint keys; `cross` (indices into `merged`) are the cross-shard intents;
    /// `shard_bound` is the sum of the shards' upper bounds; `shard_exact` is the single
    /// shard's `exact` flag (pass `false` with more than one shard).
    ///
    /// Rule: B = `shard_picks`, then the cross intents by profit (ties: lower seq) that
    /// conflict with nothing taken. F = FIFO on `merged`. B is published (as the configured
    /// builder) when its total is at least F's, else F (as `Fifo`); the bound is
    /// `min(shard_bound + Σ cross profits, F's bound)`; economics as [`Packer::pack`]. With
    /// one shard and no cross intents this is exactly `pack` on `merged`.
    #[allow(clippy::too_many_arguments)]
    pub fn pack_merged(
        &mut self,
        window_id: u64,
        merged: &IntentBatch,
        shard_picks: &[u32],
        cross: &[u32],
        shard_bound: u64,
        shard_exact: bool,
        fee_rate: FeeRate,
        out: &mut Block,
    ) {
        run_unpaced(self.pack_merged_paced(
            window_id,
            merged,
            shard_picks,
            cross,
            shard_bound,
            shard_exact,
            fee_rate,
            out,
            &mut Unpaced,
        ));
    }

    /// [`Packer::pack_merged`], pausing at `pace`'s points (`crate::pace`). Same block.
    #[allow(clippy::too_many_arguments)]
    pub async fn pack_merged_paced(
        &mut self,
        window_id: u64,
        merged: &IntentBatch,
        shard_picks: &[u32],
        cross: &[u32],
        shard_bound: u64,
        shard_exact: bool,
        fee_rate: FeeRate,
        out: &mut Block,
        pace: &mut impl Pace,
    ) {
        self.index.prepare(merged);
        pace.point().await;
        if self.fifo.bound_passes > 0 {
            self.index.build_adjacency();
            pace.point().await;
        }
        let profits = merged.profits();
        self.fifo.run(&self.index, profits, &mut self.fifo_selection);
        pace.point().await;

        let b = &mut self.chosen_selection;
        b.clear();
        self.merge_taken.clear();
        self.merge_taken.resize(self.index.resources_count(), false);
        let mut total = 0u64;
        for &i in shard_picks {
            for &r in self.index.ids(i as usize) {
                debug_assert!(!self.merge_taken[r as usize], "shard selections share a key");
                self.merge_taken[r as usize] = true;
            }
            b.picked.push(i);
            total += profits[i as usize];
        }
        self.merge_order.clear();
        let mut cross_profit = 0u64;
        for &i in cross {
            self.merge_order.push(order_key(profits[i as usize], i as usize));
            cross_profit += profits[i as usize];
        }
        // Profit descending, then index (= seq) ascending; `sort_unstable` does not allocate.
        self.merge_order.sort_unstable();
        for &key in &self.merge_order {
            let i = (key & crate::select::ORDER_INDEX_MASK) as usize;
            let ids = self.index.ids(i);
            if ids.iter().all(|&r| !self.merge_taken[r as usize]) {
                for &r in ids {
                    self.merge_taken[r as usize] = true;
                }
                b.picked.push(i as u32);
                total += profits[i];
            }
        }
        b.picked.sort_unstable();
        pace.point().await;
        let fifo = &self.fifo_selection;
        let bound = shard_bound.saturating_add(cross_profit).min(fifo.upper_bound).max(total);
        b.total = total;
        b.upper_bound = bound;
        b.exact = shard_exact && cross.is_empty();
        let (published, kind) =
            if b.total >= fifo.total { (&*b, self.kind) } else { (fifo, BuilderKind::Fifo) };
        fill_block(window_id, merged, fee_rate, published, kind, fifo.total, bound, out);
    }

    /// Runs FIFO, greedy and improved on one window and reports their totals and bounds.
    /// Afterwards [`Packer::last_selection`] holds the improved selection unless the
    /// packer's kind is `Fifo`. Publishes nothing; use [`Packer::pack`] for the block.
    pub fn compare(&mut self, batch: &IntentBatch) -> Comparison {
        self.index.prepare(batch);
        self.index.build_adjacency();
        let profits = batch.profits();
        self.fifo.run(&self.index, profits, &mut self.fifo_selection);
        let fifo = BuilderOutcome::of(&self.fifo_selection);
        // The bound depends only on the window: compute it once when the passes agree.
        let known = (self.greedy.bound_passes == self.fifo.bound_passes).then_some(self.fifo.bound_last);
        self.greedy.run(&self.index, profits, known, &mut self.chosen_selection);
        let greedy = BuilderOutcome::of(&self.chosen_selection);
        let known =
            (self.improved.config().bound_passes == self.fifo.bound_passes).then_some(self.fifo.bound_last);
        self.improved.run(
            &self.index,
            profits,
            known,
            Some(&self.fifo_selection),
            &mut self.chosen_selection,
        );
        let improved = BuilderOutcome::of(&self.chosen_selection);
        Comparison { fifo, greedy, improved, improved_stats: self.improved.stats }
    }

    /// The configured builder's selection from the last `pack` (FIFO's when the kind is
    /// `Fifo`), or the improved selection after `compare`.
    pub fn last_selection(&self) -> &Selection {
        match self.kind {
            BuilderKind::Fifo => &self.fifo_selection,
            _ => &self.chosen_selection,
        }
    }

    /// The FIFO selection of the last `pack` or `compare`.
    pub fn last_fifo_selection(&self) -> &Selection {
        &self.fifo_selection
    }

    /// The FIFO bound of the last `pack`, `select` or `compare` before rounding: what the
    /// merger adds up over key-disjoint shards instead of running FIFO on their union.
    pub fn last_fifo_bound_parts(&self) -> BoundParts {
        self.fifo.bound_parts_last
    }
}

#[allow(clippy::too_many_arguments)]
fn fill_block(
    window_id: u64,
    batch: &IntentBatch,
    fee_rate: FeeRate,
    published: &Selection,
    builder: BuilderKind,
    fifo_total: u64,
    bound: u64,
    out: &mut Block,
) {
    let entries = published.picked.iter().map(|&i| batch.meta(i as usize));
    let published = Published { total: published.total, exact: published.exact, builder };
    fill_block_from(window_id, fee_rate, published, fifo_total, bound, entries, out);
}

/// The published selection's totals, for [`fill_block_from`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Published {
    pub(crate) total: u64,
    pub(crate) exact: bool,
    pub(crate) builder: BuilderKind,
}

/// The block rule's economics (module doc) over the published intents `entries`, which
/// the caller yields in ascending seq (the merger's fast path merges them from the shards).
pub(crate) fn fill_block_from<'a>(
    window_id: u64,
    fee_rate: FeeRate,
    published: Published,
    fifo_total: u64,
    bound: u64,
    entries: impl Iterator<Item = &'a IntentMeta>,
    out: &mut Block,
) {
    debug_assert!(published.total >= fifo_total);
    let total = published.total;
    let surplus = total - fifo_total;
    let fee = fee_rate.apply_floor(surplus);
    debug_assert!(fee <= total);
    out.window_id = window_id;
    out.builder = published.builder;
    out.total = total;
    out.fifo_total = fifo_total;
    out.surplus = surplus;
    out.fee = fee;
    out.fee_rate = fee_rate;
    out.upper_bound = bound.max(total);
    out.exact = published.exact;
    out.entries.clear();
    let mut charged = 0u64;
    for meta in entries {
        let profit = meta.profit;
        let share =
            if total == 0 { 0 } else { (u128::from(fee) * u128::from(profit) / u128::from(total)) as u64 };
        charged += share;
        out.entries.push(BlockEntry {
            seq: meta.seq,
            client_id: meta.client_id,
            nonce: meta.nonce,
            profit,
            fee: share,
            payout: 0,
            rx_ns: meta.rx_ns,
        });
    }
    // Picked indices ascend, and seq ascends with arrival, so this is already sorted; the
    // check is O(n) and keeps the published order right even for a hand-built batch.
    if !out.entries.is_sorted_by_key(|e| e.seq) {
        out.entries.sort_unstable_by_key(|e| e.seq);
    }
    let leftover = fee - charged;
    debug_assert!(leftover as usize <= out.entries.len());
    for (k, entry) in out.entries.iter_mut().enumerate() {
        if (k as u64) < leftover {
            entry.fee += 1;
        }
        debug_assert!(entry.fee <= entry.profit);
        entry.payout = entry.profit - entry.fee;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::IntentMeta;

    /// A busy window: `n` intents of 4 keys drawn from `space`.
    fn random_batch(n: usize, space: u64, seed: u64) -> IntentBatch {
        let mut rng = crate::SplitMix64::new(seed);
        let mut b = IntentBatch::with_capacity(n, 4 * n);
        for i in 0..n {
            // Distinct keys, as the wire layer enforces.
            let mut keys: Vec<u64> = Vec::with_capacity(4);
            while keys.len() < 4.min(space as usize) {
                let k = rng.below(space);
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            let meta = IntentMeta {
                seq: 1 + i as u64,
                client_id: 1 + rng.below(64),
                nonce: i as u64,
                profit: 1 + rng.below(1_000_000),
                ..IntentMeta::default()
            };
            b.push(meta, &keys).unwrap();
        }
        b
    }

    #[test]
    fn pausing_at_every_point_changes_no_selection_or_block() {
        use crate::pace::{EveryPoint, run_to_completion};
        for kind in [BuilderKind::Fifo, BuilderKind::Greedy, BuilderKind::Improved] {
            for (n, space, seed) in [(3_000, 4_096, 1), (40, 64, 2), (0, 1, 3)] {
                let b = random_batch(n, space, seed);
                let mut plain = Packer::new(kind, n.max(1), 4 * n.max(1), ImprovedConfig::default());
                let mut paced = Packer::new(kind, n.max(1), 4 * n.max(1), ImprovedConfig::default());
                let expected = plain.select(&b).clone();
                let mut pace = EveryPoint::default();
                let got = run_to_completion(paced.select_paced(&b, &mut pace)).clone();
                assert_eq!(got, expected, "{kind:?} n={n}");
                if kind == BuilderKind::Improved && n == 3_000 {
                    // Phases plus the local search's inner points.
                    assert!(pace.points > 10, "{} points", pace.points);
                }
                // The merger's path: the selection as the shard picks, no cross intents.
                let fee = FeeRate::from_ppm(100_000).unwrap();
                let (mut b1, mut b2) = (Block::with_capacity(n), Block::with_capacity(n));
                plain.pack_merged(
                    1,
                    &b,
                    &expected.picked,
                    &[],
                    expected.upper_bound,
                    expected.exact,
                    fee,
                    &mut b1,
                );
                let mut pace = EveryPoint::default();
                run_to_completion(paced.pack_merged_paced(
                    1,
                    &b,
                    &expected.picked,
                    &[],
                    expected.upper_bound,
                    expected.exact,
                    fee,
                    &mut b2,
                    &mut pace,
                ));
                assert_eq!(b1, b2, "{kind:?} n={n}");
                assert!(pace.points >= 3);
            }
        }
    }

    fn batch(intents: &[(u64, &[u64])]) -> IntentBatch {
        let mut b = IntentBatch::with_capacity(16, 64);
        for (i, (profit, keys)) in intents.iter().enumerate() {
            let meta = IntentMeta {
                seq: 10 + i as u64,
                client_id: 100 + i as u64,
                nonce: i as u64,
                profit: *profit,
                ..IntentMeta::default()
            };
            b.push(meta, keys).unwrap();
        }
        b
    }

    #[test]
    fn worked_example_from_docs() {
        // FIFO takes #0 (10) and then nothing else fits with key 1 taken except #3.
        // Greedy takes #1 (30) and #2 (25) and #3 (4): total 59. FIFO: 10 + 4 = 14.
        let b = batch(&[(10, &[1, 2]), (30, &[1]), (25, &[2]), (4, &[9])]);
        let mut packer = Packer::new(BuilderKind::Greedy, 16, 64, ImprovedConfig::default());
        let mut block = Block::with_capacity(16);
        let rate = FeeRate::parse_decimal("0.1").unwrap();
        packer.pack(7, &b, rate, &mut block);
        assert_eq!(block.window_id, 7);
        assert_eq!(block.builder, BuilderKind::Greedy);
        assert_eq!(block.total, 59);
        assert_eq!(block.fifo_total, 14);
        assert_eq!(block.surplus, 45);
        assert_eq!(block.fee, 4);
        // Shares: floor(4·30/59)=2, floor(4·25/59)=1, floor(4·4/59)=0; leftover 1 goes to the
        // lowest seq (#1, seq 11).
        let fees: Vec<_> = block.entries.iter().map(|e| (e.seq, e.fee, e.payout)).collect();
        assert_eq!(fees, vec![(11, 3, 27), (12, 1, 24), (13, 0, 4)]);
        assert_eq!(block.entries[0].client_id, 101);
        assert!(block.upper_bound >= 59);
    }

    #[test]
    fn fee_rate_one_takes_whole_surplus() {
        let b = batch(&[(1, &[1, 2]), (5, &[1]), (5, &[2])]);
        let mut packer = Packer::new(BuilderKind::Improved, 16, 64, ImprovedConfig::default());
        let mut block = Block::with_capacity(16);
        packer.pack(1, &b, FeeRate::ONE, &mut block);
        assert_eq!(block.total, 10);
        assert_eq!(block.fifo_total, 1);
        assert_eq!(block.fee, 9);
        assert!(block.exact);
        assert_eq!(block.upper_bound, 10);
        let paid: u64 = block.entries.iter().map(|e| e.payout).sum();
        assert_eq!(paid + block.fee, block.total);
    }

    #[test]
    fn fifo_kind_has_no_surplus() {
        let b = batch(&[(1, &[1, 2]), (5, &[1]), (5, &[2])]);
        let mut packer = Packer::new(BuilderKind::Fifo, 16, 64, ImprovedConfig::default());
        let mut block = Block::with_capacity(16);
        packer.pack(1, &b, FeeRate::ONE, &mut block);
        assert_eq!(block.builder, BuilderKind::Fifo);
        assert_eq!((block.total, block.surplus, block.fee), (1, 0, 0));
        assert_eq!(block.entries[0].payout, 1);
    }

    #[test]
    fn greedy_worse_than_fifo_falls_back() {
        // Greedy takes 10 first and blocks two 6s that FIFO takes (arrival order).
        let b = batch(&[(6, &[1]), (6, &[2]), (10, &[1, 2])]);
        let mut packer = Packer::new(BuilderKind::Greedy, 16, 64, ImprovedConfig::default());
        let mut block = Block::with_capacity(16);
        packer.pack(3, &b, FeeRate::ONE, &mut block);
        assert_eq!(block.builder, BuilderKind::Fifo);
        assert_eq!((block.total, block.fifo_total, block.surplus), (12, 12, 0));
        assert_eq!(packer.last_selection().total, 10);
    }

    #[test]
    fn empty_window() {
        let b = batch(&[]);
        let mut packer = Packer::new(BuilderKind::Improved, 16, 64, ImprovedConfig::default());
        let mut block = Block::with_capacity(16);
        packer.pack(0, &b, FeeRate::ONE, &mut block);
        assert_eq!((block.total, block.fee, block.upper_bound), (0, 0, 0));
        assert!(block.entries.is_empty());
    }

    #[test]
    fn merged_block_adds_cross_intents_by_profit_around_the_shard_picks() {
        // Seq order: #0 local (key 1), #1 cross (keys 1, 2), #2 local (key 3), #3 cross (2, 4).
        let b = batch(&[(5, &[1]), (9, &[1, 2]), (4, &[3]), (6, &[2, 4])]);
        let mut packer = Packer::new(BuilderKind::Greedy, 16, 64, ImprovedConfig::default());
        let mut block = Block::with_capacity(16);
        // #1 (9) is tried first but conflicts with the shard pick #0; #3 (6) fits.
        packer.pack_merged(4, &b, &[0, 2], &[1, 3], 9, true, FeeRate::ONE, &mut block);
        let seqs: Vec<_> = block.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![10, 12, 13]);
        assert_eq!((block.total, block.builder, block.exact), (15, BuilderKind::Greedy, false));
        // FIFO takes the same here, so there is no surplus.
        assert_eq!((block.fifo_total, block.surplus, block.fee), (15, 0, 0));
        assert!(block.upper_bound >= 15 && block.upper_bound <= 9 + 15);
    }

    #[test]
    fn merged_block_beats_fifo_or_falls_back_to_it() {
        // #0 cross (keys 1, 2) first in FIFO order; the two locals are worth more together.
        let b = batch(&[(10, &[1, 2]), (6, &[1]), (6, &[2])]);
        let mut packer = Packer::new(BuilderKind::Improved, 16, 64, ImprovedConfig::default());
        let mut block = Block::with_capacity(16);
        packer.pack_merged(1, &b, &[1, 2], &[0], 12, false, FeeRate::ONE, &mut block);
        assert_eq!((block.total, block.fifo_total, block.fee), (12, 10, 2));
        assert_eq!(block.builder, BuilderKind::Improved);
        // A shard selection worse than FIFO (here: empty) is replaced by FIFO.
        packer.pack_merged(2, &b, &[], &[], 0, false, FeeRate::ONE, &mut block);
        assert_eq!((block.total, block.builder, block.surplus), (10, BuilderKind::Fifo, 0));
        // The bound is never below the published total, even when the shards' bound is.
        assert!(block.upper_bound >= 10);
    }
}
