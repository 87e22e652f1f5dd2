//! One builder shard: collects its intents of a window from every intake, then builds.

use crate::batch::IntentBatch;
use crate::economics::Packer;
use crate::pace::{Pace, Unpaced, run_unpaced};
use crate::shard::ShardConfig;
use crate::shard::msg::{Reassembly, ShardWindow, Sink, Source, ToBuilder};

/// Builder shard `shard` of `S`.
///
/// Call order: [`BuilderShard::new`]; then [`BuilderShard::poll`] in the shard's run loop
/// with its `N` input queues (one per intake, index = intake) and its output queue to the
/// merger; [`BuilderShard::handle_returned`] for every [`ShardWindow`] the merger gives
/// back.
///
/// A queue is not read past its `Close(w)` until all `N` closes of `w` are in; then the
/// shard drops the cancelled intents, orders the rest by seq, runs the configured builder
/// and sends the [`ShardWindow`]. With no free `ShardWindow` (the merger is behind) it
/// waits, and its input queues fill up: the intakes then answer `Overloaded`.
///
/// **Build workers** (`ShardConfig::workers_per_shard`, `W`): with `W > 0` a staged window
/// goes to an idle [`BuildWorker`](crate::shard::BuildWorker) of this shard
/// ([`BuilderShard::dispatch`]: worker 0 whenever it is idle, the others only while the
/// shard is behind), which builds it with its own builder and hands it back
/// ([`BuilderShard::take_built`]); the shard builds a window itself only when every worker
/// is busy and it is behind ([`BuilderShard::should_build_here`]). A window's build depends
/// on its batch alone, so which of them builds it changes nothing in the block. Windows go
/// to the merger in window order whoever built them: a window built early waits in `done`
/// for the ones before it.
#[derive(Debug)]
pub struct BuilderShard {
    shard: usize,
    intakes_n: usize,
    window_id: u64,
    batch: IntentBatch,
    /// Seqs cancelled in the open window.
    tombstones: Vec<u64>,
    closed: Vec<bool>,
    /// Per intake: an intent whose slots are not all read yet.
    parts: Vec<Reassembly>,
    closed_count: usize,
    /// Free windows. Boxed because the box is what moves through the queues: a window's
    /// buffers change hands without being copied or reallocated.
    #[allow(clippy::vec_box)]
    pool: Vec<Box<ShardWindow>>,
    /// A window whose intents are copied in, to be built (`build_staged`) or handed to a
    /// worker (`dispatch`).
    staged: Option<Box<ShardWindow>>,
    /// Built windows not yet sent, ascending window id: the merger takes them in window
    /// order, and a worker may finish after a later window. Boxed as `pool`.
    #[allow(clippy::vec_box)]
    done: Vec<Box<ShardWindow>>,
    /// The window the merger takes next.
    next_out: u64,
    /// Per build worker: it holds one of this shard's windows.
    worker_busy: Vec<bool>,
    packer: Packer,
    order: Vec<u32>,
}

impl BuilderShard {
    /// Shard `shard` of `config.shards_n`, first window `first_window_id`. Allocates the
    /// open batch, the builder and `shard_windows_max` [`ShardWindow`]s. Panics if `config`
    /// does not validate.
    pub fn new(config: &ShardConfig, shard: usize, first_window_id: u64) -> BuilderShard {
        config.validate().expect("valid ShardConfig");
        assert!(shard < config.shards_n, "shard index out of range");
        let (records_max, keys_max) = config.window_capacity();
        let e = &config.engine;
        // A worker holds a window while it builds: one more buffer each.
        let windows = config.shard_windows_max + config.workers_per_shard;
        BuilderShard {
            shard,
            intakes_n: config.intakes_n,
            window_id: first_window_id,
            batch: IntentBatch::with_capacity(records_max, keys_max),
            tombstones: Vec::with_capacity(records_max),
            closed: vec![false; config.intakes_n],
            parts: vec![Reassembly::default(); config.intakes_n],
            closed_count: 0,
            pool: (0..windows)
                .map(|_| Box::new(ShardWindow::with_capacity(shard, records_max, keys_max)))
                .collect(),
            staged: None,
            done: Vec::with_capacity(windows),
            next_out: first_window_id,
            worker_busy: vec![false; config.workers_per_shard],
            packer: Packer::new(e.builder, records_max, keys_max, e.improved),
            order: Vec::with_capacity(records_max),
        }
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The window being collected.
    pub fn window_id(&self) -> u64 {
        self.window_id
    }

    /// Free [`ShardWindow`]s.
    pub fn pool_len(&self) -> usize {
        self.pool.len()
    }

    /// A [`ShardWindow`] back from the merger.
    pub fn handle_returned(&mut self, window: Box<ShardWindow>) {
        assert_eq!(window.shard, self.shard, "ShardWindow returned to the wrong shard");
        self.pool.push(window);
    }

    /// Reads up to `budget` messages from each input, builds and sends the window once all
    /// its closes are in. Returns whether anything happened.
    pub fn poll<Q: Source<ToBuilder>>(
        &mut self,
        inputs: &mut [Q],
        out: &mut impl Sink<Box<ShardWindow>>,
        budget: usize,
    ) -> bool {
        let mut progress = self.collect(inputs, out, budget);
        if run_unpaced(self.build_staged(&mut Unpaced)) {
            progress = true;
            self.flush(out);
        }
        progress
    }

    /// [`BuilderShard::poll`] with build workers (`to_workers[k]` / `from_workers[k]`: the
    /// queues to and from worker `k` of this shard): takes the windows they built, collects,
    /// hands a staged window to a worker ([`BuilderShard::dispatch`]), and builds it here
    /// only when [`BuilderShard::should_build_here`].
    pub fn poll_with_workers<Q: Source<ToBuilder>>(
        &mut self,
        inputs: &mut [Q],
        out: &mut impl Sink<Box<ShardWindow>>,
        to_workers: &mut [impl Sink<Box<ShardWindow>>],
        from_workers: &mut [impl Source<Box<ShardWindow>>],
        budget: usize,
    ) -> bool {
        let mut progress = self.take_built(from_workers);
        progress |= self.collect(inputs, out, budget);
        progress |= self.dispatch(to_workers);
        if self.should_build_here() && run_unpaced(self.build_staged(&mut Unpaced)) {
            progress = true;
        }
        progress | self.flush(out)
    }

    /// Hands the staged window to the first idle worker whose queue takes it. Worker 0
    /// takes a window as soon as it is idle; the others are overflow: they take one only
    /// while the shard is behind (the next window has closed too), so that worker 0 gets
    /// every window it can keep up with (in the 2-CPU map worker 0 has the second CPU and
    /// worker 1 shares the intake's). Whether one took it.
    pub fn dispatch(&mut self, to_workers: &mut [impl Sink<Box<ShardWindow>>]) -> bool {
        assert_eq!(to_workers.len(), self.worker_busy.len(), "one queue per build worker");
        let Some(mut w) = self.staged.take() else { return false };
        let behind = self.closed_count == self.intakes_n;
        for (j, (busy, q)) in self.worker_busy.iter_mut().zip(to_workers.iter_mut()).enumerate() {
            if *busy || (j > 0 && !behind) {
                continue;
            }
            match q.push(w) {
                Ok(()) => {
                    *busy = true;
                    return true;
                }
                Err(full) => w = full.0,
            }
        }
        self.staged = Some(w);
        false
    }

    /// Takes the windows the workers built (they go to the merger in window order). Whether
    /// there were any.
    pub fn take_built(&mut self, from_workers: &mut [impl Source<Box<ShardWindow>>]) -> bool {
        assert_eq!(from_workers.len(), self.worker_busy.len(), "one queue per build worker");
        let mut progress = false;
        for (busy, q) in self.worker_busy.iter_mut().zip(from_workers.iter_mut()) {
            while let Some(w) = q.pop() {
                assert!(*busy, "a build worker returned a window it was not given");
                assert_eq!(w.shard, self.shard, "a ShardWindow of another shard");
                *busy = false;
                insert_by_window(&mut self.done, w);
                progress = true;
            }
        }
        progress
    }

    /// Whether the staged window is best built here now: there is one, and no build worker
    /// can take it soon: there are none, or all are busy and the next window has closed
    /// too (so the shard would otherwise stop reading at its close markers). While a worker
    /// is busy and the next window is still open, the shard keeps reading and the window
    /// waits for the worker: the shard's CPU is the intakes' in the 2-CPU map.
    pub fn should_build_here(&self) -> bool {
        self.staged.is_some()
            && (self.worker_busy.is_empty()
                || (self.worker_busy.iter().all(|b| *b) && self.closed_count == self.intakes_n))
    }

    /// Build workers holding a window of this shard.
    pub fn workers_busy(&self) -> usize {
        self.worker_busy.iter().filter(|b| **b).count()
    }

    /// [`BuilderShard::poll`] without the build: sends a built window, reads the inputs and,
    /// once all closes of the window are in, stages it (its intents copied in seq order into
    /// a free [`ShardWindow`]; the next window opens). Then [`BuilderShard::has_staged`] holds
    /// and [`BuilderShard::build_staged`] is next (the daemon's way, so that the build can
    /// pause; `crate::pace`). Returns whether anything happened.
    pub fn collect<Q: Source<ToBuilder>>(
        &mut self,
        inputs: &mut [Q],
        out: &mut impl Sink<Box<ShardWindow>>,
        budget: usize,
    ) -> bool {
        assert_eq!(inputs.len(), self.intakes_n, "one input per intake");
        let mut progress = self.flush(out);
        for (i, input) in inputs.iter_mut().enumerate() {
            if self.closed[i] {
                continue;
            }
            let (batch, tombstones, open) = (&mut self.batch, &mut self.tombstones, self.window_id);
            let part = &mut self.parts[i];
            let mut closed = false;
            // Each intake admits at most its share of records and keys per window.
            let push = |batch: &mut IntentBatch, meta, keys: &[u64]| {
                assert!(batch.push(meta, keys).is_ok(), "shard batch over capacity");
            };
            // In place: only the meta and the keys the intent has are read from its slot.
            let taken = input.read_with(budget, |msg| match msg {
                ToBuilder::Intent(m) => {
                    debug_assert_eq!(m.window_id, open);
                    if let Some(keys) = part.start(m) {
                        push(batch, m.meta, keys);
                    }
                    true
                }
                ToBuilder::More(k) => {
                    if let Some((meta, keys)) = part.more(k) {
                        push(batch, meta, keys);
                    }
                    true
                }
                ToBuilder::Cancel { window_id, seq } => {
                    debug_assert_eq!(*window_id, open);
                    tombstones.push(*seq);
                    true
                }
                ToBuilder::Close { window_id } => {
                    assert_eq!(*window_id, open, "close markers arrive in window order");
                    closed = true;
                    false
                }
            });
            progress |= taken > 0;
            if closed {
                self.closed[i] = true;
                self.closed_count += 1;
            }
        }
        if self.closed_count == self.intakes_n && self.stage_window() {
            progress = true;
        }
        progress
    }

    /// A window is staged: [`BuilderShard::build_staged`] builds it.
    pub fn has_staged(&self) -> bool {
        self.staged.is_some()
    }

    /// Builds the staged window here, pausing at `pace`'s points; the built window waits for
    /// [`BuilderShard::flush`] (or the next `collect`). Whether there was one.
    pub async fn build_staged(&mut self, pace: &mut impl Pace) -> bool {
        let Some(mut w) = self.staged.take() else { return false };
        build_window(&mut self.packer, &mut w, pace).await;
        insert_by_window(&mut self.done, w);
        true
    }

    /// Sends the built windows that are next in window order. Whether it sent any (it
    /// stops at the first the merger's queue refuses, or at a window not built yet).
    pub fn flush(&mut self, out: &mut impl Sink<Box<ShardWindow>>) -> bool {
        let mut sent = false;
        while self.done.first().is_some_and(|w| w.window_id == self.next_out) {
            let w = self.done.remove(0);
            match out.push(w) {
                Ok(()) => {
                    self.next_out += 1;
                    sent = true;
                }
                Err(full) => {
                    self.done.insert(0, full.0);
                    break;
                }
            }
        }
        sent
    }

    /// Copies the collected window into a pooled [`ShardWindow`] (into `staged`) and opens
    /// the next. `false` if the pool is empty or a window is still staged.
    fn stage_window(&mut self) -> bool {
        if self.staged.is_some() {
            return false;
        }
        let Some(mut w) = self.pool.pop() else { return false };
        self.tombstones.sort_unstable();
        let batch = &self.batch;
        let tombstones = &self.tombstones;
        self.order.clear();
        self.order.extend(
            (0..batch.len() as u32)
                .filter(|&i| tombstones.binary_search(&batch.meta(i as usize).seq).is_err()),
        );
        // Arrivals from several intakes interleave; the batch must be in seq order.
        if !self.order.is_sorted_by_key(|&i| batch.meta(i as usize).seq) {
            self.order.sort_unstable_by_key(|&i| batch.meta(i as usize).seq);
        }
        w.batch.clear();
        if self.order.len() == batch.len() && self.order.is_sorted() {
            // Nothing cancelled and already in seq order (one intake always is): hand the
            // collected batch over instead of copying it. Both batches have the window's
            // capacity, so they can trade places.
            std::mem::swap(&mut self.batch, &mut w.batch);
        } else {
            for &i in &self.order {
                let r = w.batch.push(*batch.meta(i as usize), batch.keys(i as usize));
                debug_assert!(r.is_ok());
            }
        }
        w.window_id = self.window_id;
        w.cancelled_count = self.tombstones.len();
        self.staged = Some(w);
        self.batch.clear();
        self.tombstones.clear();
        self.closed.fill(false);
        self.closed_count = 0;
        self.window_id += 1;
        true
    }
}

/// Runs `packer` on `w`'s batch and fills in its selection and FIFO parts: the build of one
/// window, by a shard or by a [`BuildWorker`](crate::shard::BuildWorker). Depends only on the
/// batch (and the builder's configuration).
pub(crate) async fn build_window(packer: &mut Packer, w: &mut ShardWindow, pace: &mut impl Pace) {
    let selection = packer.select_paced(&w.batch, pace).await;
    w.picked.clear();
    w.picked.extend_from_slice(&selection.picked);
    w.total = selection.total;
    w.upper_bound = selection.upper_bound;
    w.exact = selection.exact;
    let fifo = packer.last_fifo_selection();
    w.fifo_picked.clear();
    w.fifo_picked.extend_from_slice(&fifo.picked);
    w.fifo_total = fifo.total;
    w.fifo_bound = packer.last_fifo_bound_parts();
}

/// Inserts `w` into `done`, which stays in ascending window order.
#[allow(clippy::vec_box)]
fn insert_by_window(done: &mut Vec<Box<ShardWindow>>, w: Box<ShardWindow>) {
    let at = done.partition_point(|d| d.window_id < w.window_id);
    debug_assert!(done.get(at).is_none_or(|d| d.window_id != w.window_id), "window built twice");
    done.insert(at, w);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::IntentMeta;
    use crate::engine::EngineConfig;
    use crate::shard::msg::IntentMsg;
    use crate::shard::pipeline::BoundedQueue;
    use crate::window::WindowConfig;

    fn config(intakes_n: usize) -> ShardConfig {
        let engine = EngineConfig { window: WindowConfig::with_records_max(64), ..EngineConfig::default() };
        ShardConfig { shard_windows_max: 1, ..ShardConfig::new(engine, intakes_n, 1) }
    }

    fn intent(window_id: u64, seq: u64, profit: u64, key: u64) -> ToBuilder {
        let meta = IntentMeta { seq, client_id: 1, nonce: seq, profit, ..IntentMeta::default() };
        ToBuilder::Intent(IntentMsg::new(window_id, meta, [key].into_iter()))
    }

    #[test]
    fn waits_for_every_close_then_builds_in_seq_order_without_the_cancelled() {
        let mut shard = BuilderShard::new(&config(2), 0, 1);
        let mut inputs: Vec<BoundedQueue<ToBuilder>> = (0..2).map(|_| BoundedQueue::new(16)).collect();
        let mut out = BoundedQueue::new(1);
        // Intake 0 has odd seqs, intake 1 even; intake 1's arrive first.
        for m in
            [intent(1, 2, 5, 20), intent(1, 4, 7, 40), ToBuilder::Close { window_id: 1 }, intent(2, 6, 1, 60)]
        {
            inputs[1].push(m).unwrap();
        }
        for m in [intent(1, 1, 3, 10), ToBuilder::Cancel { window_id: 1, seq: 1 }, intent(1, 3, 2, 30)] {
            inputs[0].push(m).unwrap();
        }
        assert!(shard.poll(&mut inputs, &mut out, 8));
        assert!(out.is_empty(), "intake 0 has not closed window 1");
        // Window 2's intent stays queued behind intake 1's close.
        assert_eq!(inputs[1].len(), 1);
        inputs[0].push(ToBuilder::Close { window_id: 1 }).unwrap();
        assert!(shard.poll(&mut inputs, &mut out, 8));
        let w = out.pop().expect("window 1 built");
        let seqs: Vec<u64> = w.batch.metas().iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![2, 3, 4]);
        assert_eq!((w.window_id, w.cancelled_count, w.total), (1, 1, 14));
        assert_eq!(w.picked, vec![0, 1, 2]);
        // No free ShardWindow until the merger returns this one: window 2 waits.
        for input in &mut inputs {
            input.push(ToBuilder::Close { window_id: 2 }).unwrap();
        }
        shard.poll(&mut inputs, &mut out, 8);
        assert!(out.is_empty() && shard.pool_len() == 0);
        shard.handle_returned(w);
        assert!(shard.poll(&mut inputs, &mut out, 8));
        let w2 = out.pop().expect("window 2 built once a buffer came back");
        assert_eq!((w2.window_id, w2.batch.len()), (2, 1));
    }

    #[test]
    fn a_worker_builds_when_idle_and_windows_reach_the_merger_in_order() {
        let mut c = config(1);
        // Three buffers: the merger never returns any here.
        (c.workers_per_shard, c.shard_windows_max) = (1, 2);
        let mut shard = BuilderShard::new(&c, 0, 1);
        let mut worker = crate::shard::BuildWorker::new(&c);
        let mut inputs = vec![BoundedQueue::new(16)];
        let (mut to_worker, mut from_worker) = (vec![BoundedQueue::new(1)], vec![BoundedQueue::new(1)]);
        let mut out = BoundedQueue::new(4);
        let window = |w: u64| [intent(w, w, 2 + w, 10 * w), ToBuilder::Close { window_id: w }];
        for m in window(1).into_iter().chain(window(2)) {
            inputs[0].push(m).unwrap();
        }
        // Window 1 goes to the idle worker. Window 2 finds it busy, and waits for it while
        // window 3 is open.
        assert!(shard.poll_with_workers(&mut inputs, &mut out, &mut to_worker, &mut from_worker, 8));
        assert_eq!(shard.workers_busy(), 1);
        shard.poll_with_workers(&mut inputs, &mut out, &mut to_worker, &mut from_worker, 8);
        assert!(shard.has_staged() && !shard.should_build_here() && out.is_empty());
        // Window 3 closes too: now window 2 is built here, and waits for window 1.
        for m in window(3) {
            inputs[0].push(m).unwrap();
        }
        assert!(shard.poll_with_workers(&mut inputs, &mut out, &mut to_worker, &mut from_worker, 8));
        assert!(out.is_empty(), "window 2 waits for window 1");
        assert!(worker.poll(&mut to_worker[0], &mut from_worker[0]));
        // Window 1 is back: 1 and 2 go out in order, and window 3 goes to the worker.
        assert!(shard.poll_with_workers(&mut inputs, &mut out, &mut to_worker, &mut from_worker, 8));
        assert_eq!(shard.workers_busy(), 1);
        assert!(worker.poll(&mut to_worker[0], &mut from_worker[0]));
        assert!(shard.poll_with_workers(&mut inputs, &mut out, &mut to_worker, &mut from_worker, 8));
        let ids: Vec<(u64, u64)> = std::iter::from_fn(|| out.pop()).map(|w| (w.window_id, w.total)).collect();
        assert_eq!(ids, vec![(1, 3), (2, 4), (3, 5)]);
        assert_eq!(worker.windows_built_total(), 2);
    }

    #[test]
    fn overflow_workers_take_a_window_only_while_the_shard_is_behind() {
        let mut c = config(1);
        (c.workers_per_shard, c.shard_windows_max) = (2, 2);
        let mut shard = BuilderShard::new(&c, 0, 1);
        let mut inputs = vec![BoundedQueue::new(16)];
        let mut to_workers = vec![BoundedQueue::new(1), BoundedQueue::new(1)];
        let mut from_workers: Vec<BoundedQueue<Box<ShardWindow>>> =
            vec![BoundedQueue::new(1), BoundedQueue::new(1)];
        let mut out = BoundedQueue::new(4);
        let window = |w: u64| [intent(w, w, 1, w), ToBuilder::Close { window_id: w }];
        for m in window(1).into_iter().chain(window(2)) {
            inputs[0].push(m).unwrap();
        }
        shard.poll_with_workers(&mut inputs, &mut out, &mut to_workers, &mut from_workers, 8);
        shard.poll_with_workers(&mut inputs, &mut out, &mut to_workers, &mut from_workers, 8);
        // Window 1 went to worker 0; window 2 waits for it, worker 1 idle, while 3 is open.
        assert_eq!((to_workers[0].len(), to_workers[1].len()), (1, 0));
        assert!(shard.has_staged());
        for m in window(3) {
            inputs[0].push(m).unwrap();
        }
        shard.poll_with_workers(&mut inputs, &mut out, &mut to_workers, &mut from_workers, 8);
        // Behind: window 2 goes to worker 1.
        assert_eq!((to_workers[0].len(), to_workers[1].len(), shard.workers_busy()), (1, 1, 2));
        assert_eq!(to_workers[1].pop().map(|w| w.window_id), Some(2));
        // Window 3 is staged at the next read, and waits: both workers are busy.
        shard.poll_with_workers(&mut inputs, &mut out, &mut to_workers, &mut from_workers, 8);
        assert!(shard.has_staged() && !shard.should_build_here());
    }
}
