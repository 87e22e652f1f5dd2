//! The merger: cross-shard intents, the merged block, and the auction.

use fpn_wire::{Reason, Receipt};

use crate::amount::FeeRate;
use crate::auction::{AuctionRules, Bid, Book};
use crate::batch::IntentBatch;
use crate::clock::WindowClose;
use crate::economics::{Packer, Published, fill_block_from};
use crate::engine::{WindowResult, WindowSummary};
use crate::pace::{Pace, Unpaced, run_unpaced};
use crate::select::{BoundParts, BuilderKind};
use crate::shard::ShardConfig;
use crate::shard::msg::{BookCancel, Full, Reassembly, ShardWindow, Source, ToMerger};
use crate::window::PendingBid;

/// Where the merger's outputs go.
pub trait MergerOutput {
    /// A window's result, in window order. Copy what you need before returning.
    fn window_result(&mut self, result: &WindowResult);
    /// The answer to a [`BookCancel`] from intake `intake` (answered in the order that
    /// intake sent its book cancels).
    fn receipt(&mut self, intake: usize, receipt: Receipt);
    /// Intake `intake`'s open book bids and how many of its bids the merger has taken in
    /// (cumulative); forward to [`crate::shard::IntakeCore::set_book_open`].
    fn book_open(&mut self, intake: usize, open: usize, taken_total: u64);
    /// Gives a [`ShardWindow`] back to builder `shard` (queue merger → builder).
    fn return_window(&mut self, shard: usize, window: Box<ShardWindow>)
    -> Result<(), Full<Box<ShardWindow>>>;
}

/// The merger (it runs on the auction role).
///
/// Call order: [`Merger::new`]; then [`Merger::poll`] in the run loop with the `N` intake
/// queues (index = intake) and the `S` builder queues (index = shard).
///
/// Window `w` is finalized once all `S` [`ShardWindow`]s of `w` and all `N` intake closes of
/// `w` are in; an intake's queue is not read past its close of `w` before that, so every
/// message is applied in the window it was sent in. Finalizing merges the shards' batches
/// and the cross intents by seq, packs the block with [`Packer::pack_merged`], moves the
/// window's bids into the book and clears it: the same [`WindowResult`] as the engine.
/// A window without cross intents skips the merge and the packer: its FIFO baseline is
/// the union of the shards' FIFO results (the shards own disjoint keys), so the block is
/// assembled from what the shards computed (`pack_disjoint`; same block, tests check it).
#[derive(Debug)]
pub struct Merger {
    intakes_n: usize,
    shards_n: usize,
    first_seq: u64,
    window_id: u64,
    closes: Vec<Option<WindowClose>>,
    closes_count: usize,
    shard_windows: Vec<Option<Box<ShardWindow>>>,
    shard_windows_count: usize,
    cross: IntentBatch,
    /// Per intake: a cross intent whose slots are not all read yet.
    parts: Vec<Reassembly>,
    cross_order: Vec<u32>,
    bids: Vec<PendingBid>,
    /// Seqs of cross intents and bids cancelled in the open window.
    tombstones: Vec<u64>,
    merged: IntentBatch,
    shard_picks: Vec<u32>,
    cross_picks: Vec<u32>,
    cursors: Vec<usize>,
    pick_pos: Vec<usize>,
    packer: Packer,
    fee_rate: FeeRate,
    rules: AuctionRules,
    book: Book,
    result: WindowResult,
    /// Windows the builder queues refused back; retried first.
    #[allow(clippy::vec_box)] // The boxes go back as they came (see `BuilderShard`).
    returns: Vec<Box<ShardWindow>>,
    open_per_intake: Vec<usize>,
    taken_per_intake: Vec<u64>,
}

impl Merger {
    /// Allocates everything: the cross batch, the merged batch, the packer, the book.
    /// Panics if `config` does not validate.
    pub fn new(config: &ShardConfig, first_window_id: u64) -> Merger {
        config.validate().expect("valid ShardConfig");
        let (records_max, keys_max) = config.window_capacity();
        let e = &config.engine;
        Merger {
            intakes_n: config.intakes_n,
            shards_n: config.shards_n,
            first_seq: e.window.first_seq,
            window_id: first_window_id,
            closes: vec![None; config.intakes_n],
            closes_count: 0,
            shard_windows: (0..config.shards_n).map(|_| None).collect(),
            shard_windows_count: 0,
            cross: IntentBatch::with_capacity(records_max, keys_max),
            parts: vec![Reassembly::default(); config.intakes_n],
            cross_order: Vec::with_capacity(records_max),
            bids: Vec::with_capacity(config.bids_cap() * config.intakes_n),
            tombstones: Vec::with_capacity(records_max),
            merged: IntentBatch::with_capacity(records_max, keys_max),
            shard_picks: Vec::with_capacity(records_max),
            cross_picks: Vec::with_capacity(records_max),
            cursors: vec![0; config.shards_n + 1],
            pick_pos: vec![0; config.shards_n],
            packer: Packer::new(e.builder, records_max, keys_max, e.improved),
            fee_rate: e.fee_rate,
            rules: e.auction,
            book: Book::with_capacity(e.book_bids_max, e.auction.top_k),
            result: WindowResult::with_capacity(records_max, &e.auction),
            returns: Vec::with_capacity(config.shards_n * config.shard_windows_max),
            open_per_intake: vec![0; config.intakes_n],
            taken_per_intake: vec![0; config.intakes_n],
        }
    }

    /// Recovery: puts `bids` (the open bids of a replayed book, `fpn-log`) into the empty
    /// book and counts them per intake. Returns each intake's open count, for
    /// [`crate::shard::IntakeCore::restore`]. Panics if the book already holds bids or
    /// cannot take them all (programmer error: the configuration changed the book's size
    /// below what the log holds; the daemon checks that first).
    pub fn restore_book(&mut self, bids: impl IntoIterator<Item = Bid>) -> Vec<usize> {
        assert!(self.book.is_empty(), "restore into an empty book");
        for bid in bids {
            let i = self.intake_of(bid.seq);
            let taken = self.book.handle_bid(bid);
            assert!(taken.is_ok(), "the book takes every recovered bid: {taken:?}");
            self.open_per_intake[i] += 1;
        }
        self.open_per_intake.clone()
    }

    /// The next window to finalize.
    pub fn window_id(&self) -> u64 {
        self.window_id
    }

    /// The auction book.
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// Which intake handed out `seq`.
    fn intake_of(&self, seq: u64) -> usize {
        ((seq - self.first_seq) % self.intakes_n as u64) as usize
    }

    /// Reads up to `budget` messages from each intake queue (not past its close of the open
    /// window) and one [`ShardWindow`] per shard, and finalizes every window that is
    /// complete. Returns whether anything happened.
    pub fn poll<QI: Source<ToMerger>, QS: Source<Box<ShardWindow>>>(
        &mut self,
        intakes: &mut [QI],
        shards: &mut [QS],
        out: &mut impl MergerOutput,
        budget: usize,
    ) -> bool {
        self.poll_inner(intakes, shards, out, budget, true)
    }

    /// [`Merger::poll`] that stops at a window whose parts are all in instead of finalizing
    /// it: then [`Merger::is_ready`] holds and [`Merger::finalize_paced`] is next (the
    /// daemon's way, so that the finalize can pause; `crate::pace`). Nothing more is read
    /// until then.
    pub fn collect<QI: Source<ToMerger>, QS: Source<Box<ShardWindow>>>(
        &mut self,
        intakes: &mut [QI],
        shards: &mut [QS],
        out: &mut impl MergerOutput,
        budget: usize,
    ) -> bool {
        self.poll_inner(intakes, shards, out, budget, false)
    }

    /// Every part of the open window is in: [`Merger::finalize_paced`] will publish it.
    pub fn is_ready(&self) -> bool {
        self.closes_count == self.intakes_n && self.shard_windows_count == self.shards_n
    }

    /// Finalizes the open window if [`Merger::is_ready`], pausing at `pace`'s points; the
    /// same result as [`Merger::poll`] gives. Whether a window was published.
    pub async fn finalize_paced(&mut self, out: &mut impl MergerOutput, pace: &mut impl Pace) -> bool {
        if !self.is_ready() {
            return false;
        }
        self.finalize(out, pace).await;
        true
    }

    fn poll_inner<QI: Source<ToMerger>, QS: Source<Box<ShardWindow>>>(
        &mut self,
        intakes: &mut [QI],
        shards: &mut [QS],
        out: &mut impl MergerOutput,
        budget: usize,
        finalize_now: bool,
    ) -> bool {
        assert!(budget >= 1, "budget must be at least 1");
        assert_eq!(intakes.len(), self.intakes_n, "one queue per intake");
        assert_eq!(shards.len(), self.shards_n, "one queue per shard");
        let mut progress = false;
        while let Some(w) = self.returns.pop() {
            let shard = w.shard;
            if let Err(Full(w)) = out.return_window(shard, w) {
                self.returns.push(w);
                break;
            }
            progress = true;
        }
        loop {
            let mut step = false;
            for (i, input) in intakes.iter_mut().enumerate() {
                let mut n = 0;
                while n < budget && self.closes[i].is_none() {
                    let Some(msg) = input.pop() else { break };
                    n += 1;
                    step = true;
                    self.handle_intake_msg(i, msg, out);
                }
            }
            for (s, input) in shards.iter_mut().enumerate() {
                if self.shard_windows[s].is_none()
                    && let Some(w) = input.pop()
                {
                    assert_eq!((w.shard, w.window_id), (s, self.window_id), "shard windows arrive in order");
                    self.shard_windows[s] = Some(w);
                    self.shard_windows_count += 1;
                    step = true;
                }
            }
            progress |= step;
            if self.is_ready() {
                if !finalize_now {
                    return progress;
                }
                run_unpaced(self.finalize(out, &mut Unpaced));
                progress = true;
                // The next window's messages may already be queued.
                continue;
            }
            return progress;
        }
    }

    fn handle_intake_msg(&mut self, intake: usize, msg: ToMerger, out: &mut impl MergerOutput) {
        match msg {
            ToMerger::Cross(m) => {
                debug_assert_eq!(m.window_id, self.window_id);
                if let Some(keys) = self.parts[intake].start(&m) {
                    let r = self.cross.push(m.meta, keys);
                    assert!(r.is_ok(), "cross batch over capacity");
                }
            }
            ToMerger::More(k) => {
                if let Some((meta, keys)) = self.parts[intake].more(&k) {
                    let r = self.cross.push(meta, keys);
                    assert!(r.is_ok(), "cross batch over capacity");
                }
            }
            ToMerger::Bid { window_id, bid } => {
                debug_assert_eq!(window_id, self.window_id);
                assert!(self.bids.len() < self.bids.capacity(), "bids over capacity");
                self.bids.push(bid);
            }
            ToMerger::CancelPending { window_id, seq } => {
                debug_assert_eq!(window_id, self.window_id);
                self.tombstones.push(seq);
            }
            ToMerger::CancelBook(c) => {
                let receipt = self.cancel_book(c, out);
                out.receipt(intake, receipt);
            }
            ToMerger::Close(close) => {
                assert_eq!(close.window_id, self.window_id, "close markers arrive in window order");
                self.closes[intake] = Some(close);
                self.closes_count += 1;
            }
        }
    }

    /// The engine's book-cancel rule: cancel the client's open bid, else `TooLate` for a
    /// closed window's seq that is no open bid, else `NotFound`.
    fn cancel_book(&mut self, c: BookCancel, out: &mut impl MergerOutput) -> Receipt {
        let mut receipt = c.receipt;
        let r = if c.by_nonce {
            self.book.cancel_nonce(c.client_id, c.target)
        } else {
            self.book.cancel_seq(c.client_id, c.target)
        };
        match r {
            Ok(bid) => {
                receipt.status = Ok(());
                receipt.seq = bid.seq;
                let i = self.intake_of(bid.seq);
                self.open_per_intake[i] -= 1;
                // The book shrank: the intake may take more bids.
                out.book_open(i, self.open_per_intake[i], self.taken_per_intake[i]);
            }
            Err(reason) => {
                // By nonce, the book has no open bid of that pair; by seq, check the seq itself.
                let absent = c.by_nonce || self.book.get(c.target).is_none();
                let reason = if c.too_late_if_absent && absent { Reason::TooLate } else { reason };
                receipt.status = Err(reason);
                receipt.window_id = 0;
                receipt.seq = if c.by_nonce { 0 } else { c.target };
            }
        }
        receipt
    }

    /// All parts of the open window are in: merge, pack, clear, publish, return buffers.
    async fn finalize(&mut self, out: &mut impl MergerOutput, pace: &mut impl Pace) {
        let close = self.closes[0].expect("all closes are in");
        debug_assert!(self.closes.iter().all(|c| *c == Some(close)), "intakes disagree on the close");
        let window_id = self.window_id;
        self.tombstones.sort_unstable();
        let tombstones = &self.tombstones;
        let dead = |seq: u64| tombstones.binary_search(&seq).is_ok();

        // Bids: every bid of the window counts as taken in (cancelled or not), for the quota.
        for b in &self.bids {
            let i = ((b.seq - self.first_seq) % self.intakes_n as u64) as usize;
            self.taken_per_intake[i] += 1;
        }
        let bids_received = self.bids.len();
        self.bids.retain(|b| !dead(b.seq));
        self.bids.sort_unstable_by_key(|b| b.seq);
        let mut cancelled_count = bids_received - self.bids.len();

        // Cross intents in seq order, cancelled ones dropped.
        let cross = &self.cross;
        self.cross_order.clear();
        self.cross_order.extend((0..cross.len() as u32).filter(|&i| !dead(cross.meta(i as usize).seq)));
        cancelled_count += cross.len() - self.cross_order.len();
        self.cross_order.sort_unstable_by_key(|&i| cross.meta(i as usize).seq);

        let s_n = self.shards_n;
        let mut shard_bound = 0u64;
        for w in self.shard_windows.iter().flatten() {
            shard_bound = shard_bound.saturating_add(w.upper_bound);
            cancelled_count += w.cancelled_count;
        }
        pace.point().await;
        let intents_count = if self.cross_order.is_empty() {
            self.pack_disjoint(window_id, shard_bound)
        } else {
            self.pack_with_cross(window_id, shard_bound, pace).await
        };
        pace.point().await;

        // The auction, as the engine: the window's bids join the book in seq order, then clear.
        for p in &self.bids {
            let bid = Bid {
                seq: p.seq,
                client_id: p.client_id,
                nonce: p.nonce,
                amount: p.amount,
                priority: p.priority,
                rx_ns: p.rx_ns,
            };
            let taken = self.book.handle_bid(bid);
            // Each intake refused bids beyond its share of the book (see `IntakeCore`).
            assert!(taken.is_ok(), "book refused an admitted bid: {taken:?}");
        }
        self.book.clear(close.closed_ns, window_id, &self.rules, &mut self.result.clearing);
        pace.point().await;
        self.result.window = WindowSummary {
            window_id,
            opened_ns: close.opened_ns,
            closed_ns: close.closed_ns,
            reason: close.reason,
            intents_count,
            bids_count: self.bids.len(),
            cancelled_count,
        };
        out.window_result(&self.result);

        // Open bids per intake, recounted (clearing removes winners and expired bids).
        self.open_per_intake.fill(0);
        for b in self.book.bids() {
            let i = ((b.seq - self.first_seq) % self.intakes_n as u64) as usize;
            self.open_per_intake[i] += 1;
        }
        for i in 0..self.intakes_n {
            out.book_open(i, self.open_per_intake[i], self.taken_per_intake[i]);
        }

        for s in 0..s_n {
            let w = self.shard_windows[s].take().expect("all shard windows are in");
            if let Err(Full(w)) = out.return_window(s, w) {
                self.returns.push(w);
            }
        }
        self.shard_windows_count = 0;
        self.closes.fill(None);
        self.closes_count = 0;
        self.cross.clear();
        self.bids.clear();
        self.tombstones.clear();
        self.window_id += 1;
    }

    /// The block of a window with cross intents: the shards' batches and the cross intents
    /// merged by seq, then [`Packer::pack_merged`]. Returns the window's intent count.
    async fn pack_with_cross(&mut self, window_id: u64, shard_bound: u64, pace: &mut impl Pace) -> usize {
        let s_n = self.shards_n;
        // k-way merge by seq: the S shard batches (each ascending) and the cross intents.
        self.merged.clear();

        self.shard_picks.clear();
        self.cross_picks.clear();
        self.cursors.fill(0);
        self.pick_pos.fill(0);
        // `cursors[s]` walks shard s's batch, `cursors[S]` the cross order; picks are
        // matched by walking each shard's ascending `picked` alongside (`pick_pos[s]`).
        // S is small (a few shards), so a linear scan of the heads beats a heap.
        loop {
            let mut best: Option<(u64, usize)> = None;
            for s in 0..s_n {
                let w = self.shard_windows[s].as_deref().expect("all shard windows are in");
                if let Some(m) = w.batch.metas().get(self.cursors[s])
                    && best.is_none_or(|(seq, _)| m.seq < seq)
                {
                    best = Some((m.seq, s));
                }
            }
            if let Some(&i) = self.cross_order.get(self.cursors[s_n]) {
                let seq = self.cross.meta(i as usize).seq;
                if best.is_none_or(|(b, _)| seq < b) {
                    best = Some((seq, s_n));
                }
            }
            let Some((_, s)) = best else { break };
            let m = self.merged.len() as u32;
            let r = if s < s_n {
                let w = self.shard_windows[s].as_deref().expect("all shard windows are in");
                let j = self.cursors[s];
                if w.picked.get(self.pick_pos[s]) == Some(&(j as u32)) {
                    self.shard_picks.push(m);
                    self.pick_pos[s] += 1;
                }
                self.merged.push(*w.batch.meta(j), w.batch.keys(j))
            } else {
                let i = self.cross_order[self.cursors[s_n]] as usize;
                self.cross_picks.push(m);
                self.merged.push(*self.cross.meta(i), self.cross.keys(i))
            };
            assert!(r.is_ok(), "merged batch over capacity");
            self.cursors[s] += 1;
        }
        pace.point().await;
        let shard_exact = s_n == 1 && self.shard_windows[0].as_deref().is_some_and(|w| w.exact);
        self.packer
            .pack_merged_paced(
                window_id,
                &self.merged,
                &self.shard_picks,
                &self.cross_picks,
                shard_bound,
                shard_exact,
                self.fee_rate,
                &mut self.result.block,
                pace,
            )
            .await;
        self.merged.len()
    }

    /// The block of a window without cross intents, from what the shards computed, with
    /// [`Packer::pack_merged`]'s rule. The shards own disjoint keys, so FIFO on the whole
    /// window takes exactly the union of the shards' FIFO selections, and its dual bound is
    /// the sum of theirs before rounding ([`BoundParts`]); the builder's selection is the
    /// union of the shards' (no cross intents to add). Only the published entries are
    /// merged by seq, so the merger does a few ns per intent instead of packing the window
    /// again (`BENCHMARKS.md`, "Measurements behind code choices"). Returns the window's
    /// intent count.
    fn pack_disjoint(&mut self, window_id: u64, shard_bound: u64) -> usize {
        let windows = &self.shard_windows;
        let shard = |s: usize| windows[s].as_deref().expect("all shard windows are in");
        let mut intents_count = 0;
        let (mut total, mut fifo_total) = (0u64, 0u64);
        let mut fifo_parts = BoundParts::default();
        for s in 0..self.shards_n {
            let w = shard(s);
            intents_count += w.batch.len();
            total += w.total;
            fifo_total += w.fifo_total;
            fifo_parts = fifo_parts + w.fifo_bound;
        }
        // As `finish` does for FIFO's own selection.
        let fifo_bound = fifo_parts.bound();
        let fifo_upper_bound = fifo_bound.max(fifo_total);
        let bound = shard_bound.min(fifo_upper_bound).max(total);
        let use_fifo = total < fifo_total;
        let published = if use_fifo {
            Published { total: fifo_total, exact: fifo_bound <= fifo_total, builder: BuilderKind::Fifo }
        } else {
            let exact = self.shards_n == 1 && shard(0).exact;
            Published { total, exact, builder: self.packer.kind() }
        };
        fn picks(w: &ShardWindow, use_fifo: bool) -> &[u32] {
            if use_fifo { &w.fifo_picked } else { &w.picked }
        }
        let pos = &mut self.pick_pos;
        pos.fill(0);
        // S is small: a linear scan of the heads, as in `pack_with_cross`.
        let entries = std::iter::from_fn(|| {
            let mut best: Option<(u64, usize)> = None;
            for (s, &p) in pos.iter().enumerate() {
                let w = shard(s);
                if let Some(&i) = picks(w, use_fifo).get(p) {
                    let seq = w.batch.meta(i as usize).seq;
                    if best.is_none_or(|(b, _)| seq < b) {
                        best = Some((seq, s));
                    }
                }
            }
            let (_, s) = best?;
            let w = shard(s);
            let i = picks(w, use_fifo)[pos[s]];
            pos[s] += 1;
            Some(w.batch.meta(i as usize))
        });
        fill_block_from(
            window_id,
            self.fee_rate,
            published,
            fifo_total,
            bound,
            entries,
            &mut self.result.block,
        );
        intents_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::IntentMeta;
    use crate::economics::Block;
    use crate::engine::EngineConfig;
    use crate::shard::msg::{IntentMsg, ToBuilder};
    use crate::shard::{BoundedQueue, BuilderShard, Sink};
    use crate::sim::SplitMix64;
    use crate::window::{CloseReason, WindowConfig};

    #[derive(Default)]
    struct Out {
        block: Option<Block>,
        #[allow(clippy::vec_box)]
        back: Vec<Box<ShardWindow>>,
    }

    impl MergerOutput for Out {
        fn window_result(&mut self, result: &WindowResult) {
            self.block = Some(result.block.clone());
        }

        fn receipt(&mut self, _intake: usize, _receipt: Receipt) {}

        fn book_open(&mut self, _intake: usize, _open: usize, _taken_total: u64) {}

        fn return_window(
            &mut self,
            _shard: usize,
            window: Box<ShardWindow>,
        ) -> Result<(), Full<Box<ShardWindow>>> {
            self.back.push(window);
            Ok(())
        }
    }

    /// The general path on the same shard windows: merge their batches by seq and run
    /// `pack_merged` with no cross intents.
    fn general_block(config: &ShardConfig, windows: &[Box<ShardWindow>]) -> Block {
        let (records_max, keys_max) = config.window_capacity();
        let mut merged = IntentBatch::with_capacity(records_max, keys_max);
        let mut picks = Vec::new();
        let mut all: Vec<(u64, usize, usize)> = Vec::new();
        for (s, w) in windows.iter().enumerate() {
            all.extend(w.batch.metas().iter().enumerate().map(|(j, m)| (m.seq, s, j)));
        }
        all.sort_unstable();
        for (_, s, j) in all {
            let w = &windows[s];
            if w.picked.contains(&(j as u32)) {
                picks.push(merged.len() as u32);
            }
            merged.push(*w.batch.meta(j), w.batch.keys(j)).unwrap();
        }
        let bound = windows.iter().map(|w| w.upper_bound).sum();
        let exact = windows.len() == 1 && windows[0].exact;
        let e = &config.engine;
        let mut packer = Packer::new(e.builder, records_max, keys_max, e.improved);
        let mut block = Block::with_capacity(records_max);
        packer.pack_merged(1, &merged, &picks, &[], bound, exact, e.fee_rate, &mut block);
        block
    }

    #[test]
    fn a_window_without_cross_intents_gets_the_general_paths_block() {
        let mut published = [0usize; 3];
        for kind in [BuilderKind::Fifo, BuilderKind::Greedy, BuilderKind::Improved] {
            for shards_n in 1..=3usize {
                for seed in 0..60u64 {
                    let engine = EngineConfig {
                        window: WindowConfig::with_records_max(64),
                        builder: kind,
                        fee_rate: FeeRate::from_ppm(123_456).unwrap(),
                        ..EngineConfig::default()
                    };
                    let config =
                        ShardConfig { shard_windows_max: 1, ..ShardConfig::new(engine, 1, shards_n) };
                    let mut rng = SplitMix64::new(seed);
                    // Few keys per shard for dense conflicts, many for sparse ones.
                    let keys_per_shard = 2 + rng.below(40);
                    let mut inputs: Vec<[BoundedQueue<ToBuilder>; 1]> =
                        (0..shards_n).map(|_| [BoundedQueue::new(128)]).collect();
                    for seq in 1..=rng.below(64) {
                        // Every intent's keys in one shard's range: no cross intents.
                        let s = rng.below(shards_n as u64);
                        let mut keys: Vec<u64> =
                            (0..1 + rng.below(3)).map(|_| s * 1000 + rng.below(keys_per_shard)).collect();
                        keys.sort_unstable();
                        keys.dedup();
                        let meta = IntentMeta {
                            seq,
                            client_id: 1,
                            nonce: seq,
                            profit: 1 + rng.below(1000),
                            ..IntentMeta::default()
                        };
                        let msg = ToBuilder::Intent(IntentMsg::new(1, meta, keys.into_iter()));
                        inputs[s as usize][0].push(msg).unwrap();
                    }
                    let mut merger = Merger::new(&config, 1);
                    let mut from_shards: Vec<BoundedQueue<Box<ShardWindow>>> =
                        (0..shards_n).map(|_| BoundedQueue::new(1)).collect();
                    for (s, input) in inputs.iter_mut().enumerate() {
                        input[0].push(ToBuilder::Close { window_id: 1 }).unwrap();
                        let mut shard = BuilderShard::new(&config, s, 1);
                        assert!(shard.poll(input, &mut from_shards[s], 256));
                    }
                    let mut intake = [BoundedQueue::new(1)];
                    let close = WindowClose {
                        window_id: 1,
                        opened_ns: 0,
                        closed_ns: 1,
                        reason: CloseReason::Deadline,
                    };
                    intake[0].push(ToMerger::Close(close)).unwrap();
                    let mut out = Out::default();
                    assert!(merger.poll(&mut intake, &mut from_shards, &mut out, 256));
                    let got = out.block.take().expect("window 1 published");
                    out.back.sort_unstable_by_key(|w| w.shard);
                    let want = general_block(&config, &out.back);
                    assert_eq!(got, want, "{kind:?} S={shards_n} seed {seed}");
                    published[got.builder.code() as usize] += 1;
                }
            }
        }
        // Both arms ran: FIFO published over the builder, and the builder over FIFO.
        assert!(published.iter().all(|&n| n > 0), "published by builder kind: {published:?}");
    }
}
