//! A deterministic in-process pipeline: N intakes, S builder shards and the merger wired
//! with bounded queues, stepped by a seeded scheduler.
//!
//! For tests (and the daemon's tests): the same input under any scheduler seed must give
//! the same window results, and a failure replays from its seeds. Intakes run
//! synchronously in [`Pipeline::submit`] (their input order is the input); the scheduler
//! interleaves the builder shards, the merger and the retries of pending close markers, with
//! a random budget per step. This allocates freely (it keeps every result); the cores do not.

use crate::pace::{EveryPoint, run_to_completion};
use std::collections::VecDeque;

use fpn_wire::{Reason, Receipt, decode_frame};

use crate::clock::{WindowClock, WindowClose};
use crate::engine::WindowResult;
use crate::shard::builder::BuilderShard;
use crate::shard::intake::IntakeCore;
use crate::shard::merger::{Merger, MergerOutput};
use crate::shard::msg::{Full, IntakeSink, ShardWindow, Sink, Source, ToBuilder, ToMerger};
use crate::shard::worker::BuildWorker;
use crate::shard::{ShardConfig, ShardConfigError};
use crate::sim::SplitMix64;

/// A FIFO queue of at most `cap` values: the stand-in for an SPSC ring.
#[derive(Debug)]
pub struct BoundedQueue<T> {
    items: VecDeque<T>,
    cap: usize,
}

impl<T> BoundedQueue<T> {
    pub fn new(cap: usize) -> BoundedQueue<T> {
        assert!(cap >= 1, "a queue holds at least one value");
        BoundedQueue { items: VecDeque::with_capacity(cap), cap }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Free slots.
    pub fn room(&self) -> usize {
        self.cap - self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl<T> Sink<T> for BoundedQueue<T> {
    fn push(&mut self, value: T) -> Result<(), Full<T>> {
        if self.items.len() >= self.cap {
            return Err(Full(value));
        }
        self.items.push_back(value);
        Ok(())
    }
}

impl<T> Source<T> for BoundedQueue<T> {
    fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }
}

/// Shape and scheduling of a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub shard: ShardConfig,
    /// Capacity of every intake → builder and intake → merger queue.
    pub queue_len: usize,
    /// A scheduled step handles `1..=budget_max` messages per input queue.
    pub budget_max: usize,
    /// Seed of the scheduler: which core steps next, and with what budget.
    pub scheduler_seed: u64,
    /// `now_ns` when the first window opens.
    pub start_ns: u64,
}

/// Everything wired together. See the module doc.
///
/// Call order: [`Pipeline::new`]; then [`Pipeline::submit`] for frames and
/// [`Pipeline::advance`] as time passes (a frame at `now` goes to the window open at `now`,
/// then `advance(now)` closes it if due, the engine's order), [`Pipeline::run_until_idle`]
/// whenever the results or the merger's answers are wanted, and [`Pipeline::drain`] at the
/// end. Results and receipts accumulate; take them with [`Pipeline::take_results`] and
/// [`Pipeline::take_receipts`].
#[derive(Debug)]
pub struct Pipeline {
    budget_max: usize,
    clock: WindowClock,
    intakes: Vec<IntakeCore>,
    builders: Vec<BuilderShard>,
    merger: Merger,
    /// `[shard][intake]`, so a builder's inputs are one slice.
    to_builder: Vec<Vec<BoundedQueue<ToBuilder>>>,
    /// `[intake]`.
    to_merger: Vec<BoundedQueue<ToMerger>>,
    /// `[shard]`: built windows to the merger, and back.
    shard_out: Vec<BoundedQueue<Box<ShardWindow>>>,
    shard_back: Vec<BoundedQueue<Box<ShardWindow>>>,
    /// `[shard][worker]`: build workers and their queues from and to their shard.
    workers: Vec<Vec<BuildWorker>>,
    to_worker: Vec<Vec<BoundedQueue<Box<ShardWindow>>>>,
    from_worker: Vec<Vec<BoundedQueue<Box<ShardWindow>>>>,
    rng: SplitMix64,
    receipts: Vec<Receipt>,
    results: Vec<WindowResult>,
    closes: Vec<WindowClose>,
}

struct IntakeQueues<'a> {
    intake: usize,
    to_builder: &'a mut [Vec<BoundedQueue<ToBuilder>>],
    to_merger: &'a mut BoundedQueue<ToMerger>,
}

impl IntakeSink for IntakeQueues<'_> {
    fn to_builder(&mut self, shard: usize, msg: ToBuilder) -> Result<(), Full<ToBuilder>> {
        self.to_builder[shard][self.intake].push(msg)
    }

    fn to_merger(&mut self, msg: ToMerger) -> Result<(), Full<ToMerger>> {
        self.to_merger.push(msg)
    }

    fn builder_room(&self, shard: usize) -> usize {
        self.to_builder[shard][self.intake].room()
    }

    fn merger_room(&self) -> usize {
        self.to_merger.room()
    }
}

struct MergerQueues<'a> {
    results: &'a mut Vec<WindowResult>,
    receipts: &'a mut Vec<Receipt>,
    intakes: &'a mut [IntakeCore],
    shard_back: &'a mut [BoundedQueue<Box<ShardWindow>>],
}

impl MergerOutput for MergerQueues<'_> {
    fn window_result(&mut self, result: &WindowResult) {
        self.results.push(result.clone());
    }

    fn receipt(&mut self, _intake: usize, receipt: Receipt) {
        self.receipts.push(receipt);
    }

    fn book_open(&mut self, intake: usize, open: usize, taken_total: u64) {
        self.intakes[intake].set_book_open(open, taken_total);
    }

    fn return_window(
        &mut self,
        shard: usize,
        window: Box<ShardWindow>,
    ) -> Result<(), Full<Box<ShardWindow>>> {
        self.shard_back[shard].push(window)
    }
}

impl Pipeline {
    pub fn new(config: PipelineConfig) -> Result<Pipeline, ShardConfigError> {
        let c = &config.shard;
        c.validate()?;
        let (n, s) = (c.intakes_n, c.shards_n);
        let first = 1;
        Ok(Pipeline {
            budget_max: config.budget_max.max(1),
            clock: WindowClock::new(c.engine.window.window_ns, first, config.start_ns),
            intakes: (0..n).map(|i| IntakeCore::new(c, i, first)).collect(),
            builders: (0..s).map(|k| BuilderShard::new(c, k, first)).collect(),
            merger: Merger::new(c, first),
            to_builder: (0..s)
                .map(|_| (0..n).map(|_| BoundedQueue::new(config.queue_len)).collect())
                .collect(),
            to_merger: (0..n).map(|_| BoundedQueue::new(config.queue_len)).collect(),
            shard_out: (0..s).map(|_| BoundedQueue::new(c.shard_windows_max)).collect(),
            shard_back: (0..s).map(|_| BoundedQueue::new(c.shard_windows_max)).collect(),
            workers: (0..s)
                .map(|_| (0..c.workers_per_shard).map(|_| BuildWorker::new(c)).collect())
                .collect(),
            to_worker: (0..s)
                .map(|_| (0..c.workers_per_shard).map(|_| BoundedQueue::new(1)).collect())
                .collect(),
            from_worker: (0..s)
                .map(|_| (0..c.workers_per_shard).map(|_| BoundedQueue::new(1)).collect())
                .collect(),
            rng: SplitMix64::new(config.scheduler_seed),
            receipts: Vec::new(),
            results: Vec::new(),
            closes: Vec::new(),
        })
    }

    pub fn intakes_n(&self) -> usize {
        self.intakes.len()
    }

    /// The intake that takes frames of `client_id`: `client_id % N`. A client stays on one
    /// intake (its dedup horizon lives there).
    pub fn intake_of(&self, client_id: u64) -> usize {
        (client_id % self.intakes.len() as u64) as usize
    }

    /// The open window's id.
    pub fn window_id(&self) -> u64 {
        self.clock.window_id()
    }

    /// When the open window is due.
    pub fn deadline_ns(&self) -> u64 {
        self.clock.deadline_ns()
    }

    /// Hands one frame to the intake of its first record's client, which answers it (a
    /// book cancel is answered by the merger, later). Closes the window if the intake is
    /// full. `Err`: the frame was refused whole.
    pub fn submit(&mut self, now_ns: u64, rx_ns: u64, frame: &[u8]) -> Result<(), Reason> {
        let first = decode_frame(frame)?.next();
        let i = first.map_or(0, |r| self.intake_of(Receipt::for_record(r, rx_ns).client_id));
        let mut q =
            IntakeQueues { intake: i, to_builder: &mut self.to_builder, to_merger: &mut self.to_merger[i] };
        let intake = &mut self.intakes[i];
        if intake.has_pending() {
            let _ = intake.poll_pending(&mut q);
        }
        let receipts = &mut self.receipts;
        intake.handle_frame(rx_ns, frame, &mut q, |r| receipts.push(r))?;
        if self.intakes[i].wants_close() {
            self.close_now(now_ns);
        }
        Ok(())
    }

    /// Moves the clock to `now_ns`: closes the open window if it is due.
    pub fn advance(&mut self, now_ns: u64) {
        let full = self.intakes.iter().any(IntakeCore::wants_close);
        if let Some(close) = self.clock.poll(now_ns, full) {
            self.broadcast(close);
        }
    }

    /// Closes the open window now (reason `Full` if an intake is full, else as the clock says).
    pub fn close_now(&mut self, now_ns: u64) {
        let full = self.intakes.iter().any(IntakeCore::wants_close);
        let close = self.clock.close_now(now_ns, full);
        self.broadcast(close);
    }

    fn broadcast(&mut self, close: WindowClose) {
        self.closes.push(close);
        for i in 0..self.intakes.len() {
            let mut q = IntakeQueues {
                intake: i,
                to_builder: &mut self.to_builder,
                to_merger: &mut self.to_merger[i],
            };
            let _ = self.intakes[i].poll_pending(&mut q);
            // Room for one more pending close: let the consumers catch up first.
            while self.intakes[i].has_pending() {
                if !self.step_any() {
                    break;
                }
                let mut q = IntakeQueues {
                    intake: i,
                    to_builder: &mut self.to_builder,
                    to_merger: &mut self.to_merger[i],
                };
                let _ = self.intakes[i].poll_pending(&mut q);
            }
            let mut q = IntakeQueues {
                intake: i,
                to_builder: &mut self.to_builder,
                to_merger: &mut self.to_merger[i],
            };
            let _ = self.intakes[i].handle_window(close, &mut q);
        }
    }

    /// Closes the open window and runs every core until nothing is left to do.
    pub fn drain(&mut self, now_ns: u64) {
        self.close_now(now_ns);
        self.run_until_idle();
    }

    /// Cores the scheduler picks from: the builder shards, the merger, the intakes' pending
    /// closes, then the build workers.
    fn cores_n(&self) -> usize {
        self.builders.len() + 2 + self.workers.iter().map(Vec::len).sum::<usize>()
    }

    /// One scheduled step: a random core (a builder shard, the merger, the intakes' pending
    /// closes or a build worker) with a random budget. Returns whether it did anything.
    pub fn step(&mut self) -> bool {
        let pick = self.rng.below(self.cores_n() as u64) as usize;
        let budget = 1 + self.rng.below(self.budget_max as u64) as usize;
        self.step_core(pick, budget)
    }

    fn step_core(&mut self, pick: usize, budget: usize) -> bool {
        let s_n = self.builders.len();
        if pick < s_n {
            let mut progress = false;
            while let Some(w) = self.shard_back[pick].pop() {
                self.builders[pick].handle_returned(w);
                progress = true;
            }
            let b = &mut self.builders[pick];
            let (inputs, out) = (&mut self.to_builder[pick], &mut self.shard_out[pick]);
            let (to_workers, from_workers) = (&mut self.to_worker[pick], &mut self.from_worker[pick]);
            progress |= b.take_built(from_workers);
            // Half the steps take the daemon's way: collect, hand the window to an idle
            // worker, else build it here, paused at every pace point (`crate::pace`); the
            // results must not depend on it, nor on who builds.
            match self.rng.below(4) {
                0 => progress | b.poll(inputs, out, budget),
                1 => progress | b.poll_with_workers(inputs, out, to_workers, from_workers, budget),
                _ => {
                    progress |= b.collect(inputs, out, budget);
                    progress |= b.dispatch(to_workers);
                    if run_to_completion(b.build_staged(&mut EveryPoint::default())) {
                        progress = true;
                    }
                    progress | b.flush(out)
                }
            }
        } else if pick == s_n {
            let mut out = MergerQueues {
                results: &mut self.results,
                receipts: &mut self.receipts,
                intakes: &mut self.intakes,
                shard_back: &mut self.shard_back,
            };
            if self.rng.below(2) == 0 {
                self.merger.poll(&mut self.to_merger, &mut self.shard_out, &mut out, budget)
            } else {
                let progress =
                    self.merger.collect(&mut self.to_merger, &mut self.shard_out, &mut out, budget);
                progress | run_to_completion(self.merger.finalize_paced(&mut out, &mut EveryPoint::default()))
            }
        } else if pick > s_n + 1 {
            let (mut shard, mut k) = (0, pick - s_n - 2);
            while k >= self.workers[shard].len() {
                k -= self.workers[shard].len();
                shard += 1;
            }
            let worker = &mut self.workers[shard][k];
            let (input, out) = (&mut self.to_worker[shard][k], &mut self.from_worker[shard][k]);
            if self.rng.below(2) == 0 {
                worker.poll(input, out)
            } else {
                let mut progress = worker.flush(out);
                progress |= worker.take(input);
                if run_to_completion(worker.build(&mut EveryPoint::default())) {
                    progress = true;
                    worker.flush(out);
                }
                progress
            }
        } else {
            let mut progress = false;
            for i in 0..self.intakes.len() {
                if self.intakes[i].has_pending() {
                    let mut q = IntakeQueues {
                        intake: i,
                        to_builder: &mut self.to_builder,
                        to_merger: &mut self.to_merger[i],
                    };
                    progress |= self.intakes[i].poll_pending(&mut q).is_ok();
                }
            }
            progress
        }
    }

    /// Every core once, in order, with the full budget (to tell idle from unlucky).
    fn step_any(&mut self) -> bool {
        let mut progress = false;
        for pick in 0..self.cores_n() {
            progress |= self.step_core(pick, self.budget_max);
        }
        progress
    }

    /// Random steps until no core can do anything.
    pub fn run_until_idle(&mut self) {
        loop {
            let mut progress = false;
            for _ in 0..2 * self.cores_n() {
                progress |= self.step();
            }
            if !progress && !self.step_any() {
                return;
            }
        }
    }

    /// Window results finalized so far (and forgets them).
    pub fn take_results(&mut self) -> Vec<WindowResult> {
        std::mem::take(&mut self.results)
    }

    /// Receipts answered so far, in the order they were answered (and forgets them).
    pub fn take_receipts(&mut self) -> Vec<Receipt> {
        std::mem::take(&mut self.receipts)
    }

    /// Windows the build workers built since start (the shards built the others).
    pub fn windows_built_by_workers(&self) -> u64 {
        self.workers.iter().flatten().map(BuildWorker::windows_built_total).sum()
    }

    /// Every window close so far, in order.
    pub fn closes(&self) -> &[WindowClose] {
        &self.closes
    }
}
