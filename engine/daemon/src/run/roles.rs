//! The run loop of every role: drain input rings, call the sans-IO core, publish, and do
//! housekeeping (metrics publish, heartbeat) on a timer. One loop per role instance, each a
//! task on its CPU's glommio executor (`docs/daemon.md`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fpn_engine::shard::{PREFETCH_AHEAD, ShardWindow, ToBuilder, ToMerger};
use fpn_engine::{
    BuildWorker, BuilderShard, IntakeCore, Merger, MergerOutput, Pace, WindowClock, WindowResult,
    WindowSummary, prefetch_frame,
};
use fpn_runtime::exec::RoleContext;
use fpn_runtime::heartbeat::Heartbeat;
use fpn_runtime::housekeeping::HousekeepingTimer;
use fpn_runtime::idle::{IdleStrategy, Idler};
use fpn_runtime::metrics::{Histogram, Labels, ShardPublisher, Snapshot};
use fpn_runtime::ring::{Rx, Tx};
use fpn_wire::{Reason, Receipt};

use super::metrics::*;
use super::quic::{self, Origin, QuicAdmit, QuicIntake, QuicLabels};
use super::rings::{IntakeRings, RxQ, TxQ, now_ns};
use super::shared::{Shared, pack_book, unpack_book};

/// Messages a core handles from one input ring per loop iteration, at most.
pub const BUDGET: usize = 256;
/// Housekeeping period: metrics publish and heartbeat.
pub const HOUSEKEEPING_PERIOD: Duration = Duration::from_millis(100);

/// One `POST /submit` frame on its way to an intake.
#[derive(Debug)]
pub struct Submit {
    /// Unique per frame: the admin side matches answers (the merger's too) by it.
    pub rx_ns: u64,
    pub frame: Vec<u8>,
    /// Records in the frame: the intake takes the frame only when its answer ring has room
    /// for all of their receipts plus `Done`, so it never has to hold an answer back.
    pub records: usize,
}

/// Intake → admin.
#[derive(Debug)]
pub enum Answer {
    Receipt(Receipt),
    /// Every receipt the intake answers for the frame was sent before this. The frame's
    /// buffer goes back so it is freed on the admin side, not on the hot core.
    Done {
        rx_ns: u64,
        frame: Vec<u8>,
        refused: Option<Reason>,
    },
}

/// Merger → journal: one window's result, encoded (`WindowResult::encode`) into a pooled
/// buffer that the journal hands back.
#[derive(Debug, Default)]
pub struct ResultMsg {
    pub window: WindowSummary,
    pub published_ns: u64,
    pub bytes: Vec<u8>,
}

/// What every loop has besides its core: idle strategy, housekeeping, metrics, heartbeat.
pub struct LoopKit {
    pub idler: Idler,
    pub housekeeping: HousekeepingTimer,
    pub publisher: ShardPublisher,
    pub heartbeat: Heartbeat,
    pub none: Labels,
}

impl LoopKit {
    pub fn new(idle: IdleStrategy, publisher: ShardPublisher, heartbeat: Heartbeat) -> LoopKit {
        LoopKit {
            idler: Idler::new(idle),
            housekeeping: HousekeepingTimer::new(HOUSEKEEPING_PERIOD, now_ns()),
            publisher,
            heartbeat,
            none: Labels::none(),
        }
    }
}

/// One role's part of the loop; [`run_role`] is the loop (`docs/runtime.md`): read `now`
/// once, do the work, housekeeping when due, then idle with the role's strategy.
pub(super) trait RoleLoop {
    /// Whether the loop body is inside the no-allocation probe (the hot roles).
    const HOT: bool = true;

    fn kit(&mut self) -> &mut LoopKit;

    /// One iteration's work at `now` (ns); whether anything was done.
    fn step(&mut self, now: u64) -> bool;

    /// Publish metrics and beat the heartbeat.
    fn housekeep(&mut self);

    /// After the stop flag, before the task ends.
    fn finish(&mut self) {}

    /// Long work `step` left behind (a staged window to build, a window to finalize), run
    /// in slices: `pace` yields to the executor between them. Whether there was any.
    async fn slow(&mut self, _pace: &mut SlicePace) -> bool {
        false
    }
}

/// How long a hot role's long work runs before it yields to the executor, so the roles
/// sharing its CPU (above all the intake, reading its socket) get a turn (`docs/runtime.md`,
/// "Slices").
pub const SLICE: Duration = Duration::from_micros(50);

/// The daemon's [`Pace`]: at a pace point, once [`SLICE`] has passed since the slice began,
/// yields to the executor. The allocation probe is off while other tasks run.
pub struct SlicePace {
    slice_ns: u64,
    started_ns: u64,
    hot: bool,
}

impl SlicePace {
    pub fn new(slice: Duration, hot: bool) -> SlicePace {
        SlicePace { slice_ns: slice.as_nanos() as u64, started_ns: 0, hot }
    }

    /// A slice begins now.
    pub fn start(&mut self) {
        self.started_ns = now_ns();
    }
}

impl Pace for SlicePace {
    async fn point(&mut self) {
        if now_ns().saturating_sub(self.started_ns) < self.slice_ns {
            return;
        }
        if self.hot {
            super::alloc_probe::leave();
        }
        fpn_runtime::idle::yield_to_executor().await;
        if self.hot {
            super::alloc_probe::enter();
        }
        self.started_ns = now_ns();
    }
}

pub(super) async fn run_role<R: RoleLoop>(mut role: R, ctx: RoleContext) {
    role.housekeep();
    let mut pace = SlicePace::new(SLICE, R::HOT);
    while !ctx.stop.is_stopped() {
        if R::HOT {
            super::alloc_probe::enter();
        }
        let now = now_ns();
        let mut did_work = role.step(now);
        pace.start();
        did_work |= role.slow(&mut pace).await;
        if role.kit().housekeeping.due_at(now) {
            role.housekeep();
        }
        let action = role.kit().idler.idle(did_work);
        if R::HOT {
            super::alloc_probe::leave();
        }
        action.perform(ctx.park_mode).await;
    }
    role.finish();
}

fn publish_tx<T>(s: &mut Snapshot, q: &TxQ<T>) {
    s.ring_tx(&q.labels, q.tx.counters(), q.tx.occupancy());
}

fn publish_rx<T>(s: &mut Snapshot, q: &RxQ<T>) {
    s.ring_rx(&q.labels, q.rx.counters());
    s.histogram(&RING_TRANSIT_SECONDS, &q.labels, &q.transit);
}

// ---------------------------------------------------------------------------------------
// Intake

/// Intake `index`: admission of submitted frames into the open window. Intake 0 also owns
/// the [`WindowClock`] and publishes each close on the board; the others apply the board's
/// closes in order and ask intake 0 to close when their window is full.
pub struct IntakeRole {
    pub index: usize,
    pub core: IntakeCore,
    pub clock: Option<WindowClock>,
    pub to_builder: Vec<TxQ<ToBuilder>>,
    pub to_merger: TxQ<ToMerger>,
    pub submits: Rx<Submit>,
    pub submits_labels: Labels,
    pub answers: Tx<Answer>,
    pub answers_labels: Labels,
    pub shared: Arc<Shared>,
    pub kit: LoopKit,
    pub frames_total: u64,
    pub windows_closed_total: u64,
    pub counters: ReceiptCounters,
    pub latency: Histogram,
    /// The merger's last book count applied (`u64::MAX`: none yet).
    pub book_seen: u64,
    /// Last window id whose close this intake applied (intakes other than 0).
    pub closes_handled: u64,
    /// The merger's answers to this intake's book cancels, in the order they were sent.
    pub merger_receipts: Rx<Receipt>,
    pub merger_receipts_labels: Labels,
    /// Where each book cancel still waiting for the merger came from (same order).
    pub origins: VecDeque<Origin>,
    pub quic: Option<Box<QuicIntake>>,
    pub quic_labels: QuicLabels,
}

impl RoleLoop for IntakeRole {
    fn kit(&mut self) -> &mut LoopKit {
        &mut self.kit
    }

    fn finish(&mut self) {
        if let Some(q) = &mut self.quic {
            q.io.close_all();
        }
    }

    fn step(&mut self, now: u64) -> bool {
        for q in &mut self.to_builder {
            q.now_ns = now;
        }
        self.to_merger.now_ns = now;
        let mut did_work = false;

        let book = self.shared.book_open[self.index].0.load(Ordering::Relaxed);
        if book != self.book_seen {
            let (open, taken) = unpack_book(book);
            self.core.set_book_open(open, taken);
            self.book_seen = book;
        }
        if self.core.has_pending() {
            let mut sink = IntakeRings { to_builder: &mut self.to_builder, to_merger: &mut self.to_merger };
            did_work |= self.core.poll_pending(&mut sink).is_ok();
        }

        did_work |= self.handle_merger_receipts();
        did_work |= self.handle_submits();
        did_work |= self.poll_quic(now);
        if self.clock.is_some() {
            did_work |= self.poll_clock(now);
        } else {
            did_work |= self.follow_closes();
        }

        did_work
    }

    fn housekeep(&mut self) {
        let Self {
            kit,
            to_builder,
            to_merger,
            submits,
            answers,
            counters,
            latency,
            merger_receipts,
            quic,
            ..
        } = self;
        let (frames, closed, idle) = (self.frames_total, self.windows_closed_total, kit.idler.counters());
        let (sl, al, none) = (&self.submits_labels, &self.answers_labels, &kit.none);
        let (ml, ql) = (&self.merger_receipts_labels, &self.quic_labels);
        let is_clock = self.clock.is_some();
        kit.publisher.publish(|s| {
            for q in to_builder.iter() {
                publish_tx(s, q);
            }
            publish_tx(s, to_merger);
            s.ring_rx(sl, submits.counters());
            s.ring_tx(al, answers.counters(), answers.occupancy());
            s.idle(none, idle);
            s.counter(&INTAKE_FRAMES_TOTAL, none, frames);
            if is_clock {
                s.counter(&WINDOWS_CLOSED_TOTAL, none, closed);
            }
            counters.publish(s, none);
            s.histogram(&INTAKE_LATENCY_SECONDS, none, latency);
            s.ring_rx(ml, merger_receipts.counters());
            if let Some(q) = quic {
                q.publish(s, ql);
            }
        });
        kit.heartbeat.beat();
    }
}

impl IntakeRole {
    pub async fn run(mut self, ctx: RoleContext) {
        self.book_seen = u64::MAX;
        self.closes_handled = self.core.window_id() - 1;
        run_role(self, ctx).await
    }

    fn handle_submits(&mut self) -> bool {
        let mut did_work = false;
        for _ in 0..BUDGET {
            // A full window (or a close marker still waiting for ring room) would refuse every
            // record of the next frame as `overloaded`; leave the frames in the submit ring
            // until the clock has closed the window, so submitters wait instead of retrying.
            if self.core.wants_close() || self.core.has_pending() {
                if self.clock.is_none() {
                    self.shared.close_request.0.store(true, Ordering::Relaxed);
                }
                break;
            }
            let Some(next) = self.submits.peek() else { break };
            if self.answers.slots_free() < next.records + 1 {
                break;
            }
            let sub = self.submits.pop().expect("peeked");
            if let Some(after) = self.submits.peek() {
                prefetch_frame(&after.frame);
            }
            let mut sink = IntakeRings { to_builder: &mut self.to_builder, to_merger: &mut self.to_merger };
            let now = now_ns();
            // As `IntakeCore::handle_frame`, but noting where each book cancel came from.
            let result = fpn_wire::decode_frame(&sub.frame).map(|records| {
                for (record, ahead) in records.with_lookahead(PREFETCH_AHEAD) {
                    for r in ahead {
                        self.core.prefetch(r);
                    }
                    match self.core.handle_record(now, sub.rx_ns, record, &mut sink) {
                        Some(r) => {
                            self.counters.count(r.status);
                            let pushed = self.answers.try_push(Answer::Receipt(r));
                            debug_assert!(pushed.is_ok(), "room was checked before the frame was taken");
                        }
                        None => self.origins.push_back(Origin::Admin),
                    }
                }
            });
            self.frames_total += 1;
            self.latency.record_ns(now_ns().saturating_sub(sub.rx_ns).max(1));
            let done = Answer::Done { rx_ns: sub.rx_ns, frame: sub.frame, refused: result.err() };
            let pushed = self.answers.try_push(done);
            debug_assert!(pushed.is_ok(), "room was checked before the frame was taken");
            did_work = true;
            if self.core.wants_close() && self.clock.is_none() {
                self.shared.close_request.0.store(true, Ordering::Relaxed);
            }
        }
        if self.shared.drain_requested.load(Ordering::Acquire) && self.submits.is_empty() {
            self.shared.input_done[self.index].0.store(true, Ordering::Release);
        }
        did_work
    }

    /// The merger's answers to book cancels: to the admin side or the QUIC session that sent
    /// the cancel, in order. An admin answer waits for room in the answer ring.
    fn handle_merger_receipts(&mut self) -> bool {
        let mut did_work = false;
        for _ in 0..BUDGET {
            if self.merger_receipts.peek().is_none() {
                break;
            }
            let origin = self.origins.front().copied();
            if origin == Some(Origin::Admin) && self.answers.slots_free() == 0 {
                break;
            }
            let r = self.merger_receipts.pop().expect("peeked");
            self.origins.pop_front();
            match origin {
                Some(Origin::Admin) => {
                    let pushed = self.answers.try_push(Answer::Receipt(r));
                    debug_assert!(pushed.is_ok(), "room was checked");
                }
                Some(Origin::Quic) => {
                    if let Some(q) = &mut self.quic {
                        q.io.server.handle_late_receipt(r);
                    }
                }
                None => debug_assert!(false, "a merger receipt nobody asked for"),
            }
            did_work = true;
        }
        did_work
    }

    /// The QUIC intake: published windows out, datagrams in (records to the core), timers,
    /// datagrams out.
    fn poll_quic(&mut self, now: u64) -> bool {
        let Some(q) = self.quic.as_mut() else { return false };
        let mut did_work = q.io.poll_results(now);
        let draining = self.shared.draining.load(Ordering::Acquire);
        let close_request = self.clock.is_none().then_some(&self.shared.close_request.0);
        let room_min = quic::FRAME_RECORDS_MAX.min(self.to_merger.tx.capacity() / 2);
        let QuicIntake { io, stamps, rx_to_ring, .. } = &mut **q;
        let mut admit = QuicAdmit {
            core: &mut self.core,
            sink: IntakeRings { to_builder: &mut self.to_builder, to_merger: &mut self.to_merger },
            counters: &mut self.counters,
            origins: &mut self.origins,
            stamps,
            rx_to_ring,
            now_ns: now,
            draining,
            room_min,
            close_request,
        };
        did_work |= io.poll_io(&mut admit);
        did_work
    }

    /// Intake 0: close the window when due, full (any intake), or for the drain.
    fn poll_clock(&mut self, now: u64) -> bool {
        let shared = &*self.shared;
        if shared.final_window_id.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let clock = self.clock.as_mut().expect("intake 0 has the clock");
        let full = self.core.wants_close() || shared.close_request.0.load(Ordering::Relaxed);
        let drain = shared.drain_requested.load(Ordering::Acquire)
            && shared.input_done.iter().all(|d| d.0.load(Ordering::Acquire));
        let due = full || drain || now >= clock.deadline_ns();
        if !due || self.core.has_pending() || !shared.board.may_close() {
            return false;
        }
        if full {
            shared.close_request.0.store(false, Ordering::Relaxed);
        }
        let close = clock.close_now(now, full);
        let mut sink = IntakeRings { to_builder: &mut self.to_builder, to_merger: &mut self.to_merger };
        // A marker that does not fit its ring stays pending in the core (never dropped).
        let _ = self.core.handle_window(close, &mut sink);
        if let Some(q) = &mut self.quic {
            q.window_closed(close.closed_ns);
        }
        shared.board.publish(close);
        self.windows_closed_total += 1;
        if drain {
            shared.final_window_id.store(close.window_id, Ordering::Release);
        }
        true
    }

    /// Intakes 1..N: apply the board's closes in order (one at a time, none while a marker of
    /// the previous one is still pending).
    fn follow_closes(&mut self) -> bool {
        let mut did_work = false;
        while self.closes_handled < self.shared.board.latest() && !self.core.has_pending() {
            let close = self.shared.board.get(self.closes_handled + 1);
            let mut sink = IntakeRings { to_builder: &mut self.to_builder, to_merger: &mut self.to_merger };
            let _ = self.core.handle_window(close, &mut sink);
            if let Some(q) = &mut self.quic {
                q.window_closed(close.closed_ns);
            }
            self.closes_handled += 1;
            self.shared.board.set_handled(self.index, self.closes_handled);
            did_work = true;
        }
        if self.core.wants_close() {
            self.shared.close_request.0.store(true, Ordering::Relaxed);
        }
        did_work
    }
}

// ---------------------------------------------------------------------------------------
// Builder shard

/// Builder shard `s`: reads its ring from every intake, builds each window's block of the
/// intents local to it, sends the `ShardWindow` to the merger and gets it back when done.
pub struct BuilderRole {
    pub core: BuilderShard,
    pub inputs: Vec<RxQ<ToBuilder>>,
    pub out: TxQ<Box<ShardWindow>>,
    pub back: RxQ<Box<ShardWindow>>,
    /// To and from this shard's build workers (`builder.workers`), one ring pair each.
    pub to_workers: Vec<TxQ<Box<ShardWindow>>>,
    pub from_workers: Vec<RxQ<Box<ShardWindow>>>,
    pub kit: LoopKit,
}

impl RoleLoop for BuilderRole {
    fn kit(&mut self) -> &mut LoopKit {
        &mut self.kit
    }

    fn step(&mut self, now: u64) -> bool {
        for q in &mut self.inputs {
            q.now_ns = now;
        }
        self.out.now_ns = now;
        self.back.now_ns = now;
        for q in &mut self.to_workers {
            q.now_ns = now;
        }
        for q in &mut self.from_workers {
            q.now_ns = now;
        }
        let mut did_work = false;
        while let Some(w) = fpn_engine::shard::Source::pop(&mut self.back) {
            self.core.handle_returned(w);
            did_work = true;
        }
        did_work |= self.core.take_built(&mut self.from_workers);
        did_work |= self.core.collect(&mut self.inputs, &mut self.out, BUDGET);
        // A staged window goes to an idle build worker; `slow` builds it here otherwise.
        if self.core.dispatch(&mut self.to_workers) {
            did_work = true;
        }
        did_work | self.core.flush(&mut self.out)
    }

    async fn slow(&mut self, pace: &mut SlicePace) -> bool {
        if !self.core.should_build_here() || !self.core.build_staged(pace).await {
            return false;
        }
        self.core.flush(&mut self.out);
        true
    }

    fn housekeep(&mut self) {
        let Self { inputs, out, back, to_workers, from_workers, kit, .. } = self;
        let idle = kit.idler.counters();
        let none = &kit.none;
        kit.publisher.publish(|s| {
            for q in inputs.iter() {
                publish_rx(s, q);
            }
            publish_tx(s, out);
            publish_rx(s, back);
            for q in to_workers.iter() {
                publish_tx(s, q);
            }
            for q in from_workers.iter() {
                publish_rx(s, q);
            }
            s.idle(none, idle);
        });
        kit.heartbeat.beat();
    }
}

impl BuilderRole {
    pub async fn run(self, ctx: RoleContext) {
        run_role(self, ctx).await
    }
}

// ---------------------------------------------------------------------------------------
// Build worker

/// Build worker `i`: builds whole windows its builder shard hands it, in slices like the
/// shard's own builds, and hands them back (`fpn_engine::BuildWorker`).
pub struct BuildRole {
    pub core: BuildWorker,
    pub input: RxQ<Box<ShardWindow>>,
    pub out: TxQ<Box<ShardWindow>>,
    pub kit: LoopKit,
}

impl RoleLoop for BuildRole {
    fn kit(&mut self) -> &mut LoopKit {
        &mut self.kit
    }

    fn step(&mut self, now: u64) -> bool {
        self.input.now_ns = now;
        self.out.now_ns = now;
        let flushed = self.core.flush(&mut self.out);
        flushed | self.core.take(&mut self.input)
    }

    async fn slow(&mut self, pace: &mut SlicePace) -> bool {
        if !self.core.build(pace).await {
            return false;
        }
        self.out.now_ns = now_ns();
        self.core.flush(&mut self.out);
        true
    }

    fn housekeep(&mut self) {
        let Self { core, input, out, kit } = self;
        let idle = kit.idler.counters();
        let none = &kit.none;
        let built = core.windows_built_total();
        kit.publisher.publish(|s| {
            publish_rx(s, input);
            publish_tx(s, out);
            s.counter(&BUILD_WINDOWS_TOTAL, none, built);
            s.idle(none, idle);
        });
        kit.heartbeat.beat();
    }
}

impl BuildRole {
    pub async fn run(self, ctx: RoleContext) {
        run_role(self, ctx).await
    }
}

// ---------------------------------------------------------------------------------------
// Merger (the auction role)

/// The merger's outputs: results to the journal, book-cancel receipts to the admin side,
/// book counts to the intakes, shard windows back to their builders. Values a full ring
/// refuses wait in a local queue (in order) and go first next time.
pub struct MergerRings {
    pub shard_back: Vec<TxQ<Box<ShardWindow>>>,
    pub results: Tx<ResultMsg>,
    pub results_labels: Labels,
    pub results_waiting: VecDeque<ResultMsg>,
    /// Buffers the journal handed back.
    pub pool: Rx<ResultMsg>,
    pub pool_labels: Labels,
    pub bytes_reserve: usize,
    /// Book-cancel answers, one ring per intake.
    pub receipts: Vec<Tx<Receipt>>,
    pub receipts_labels: Vec<Labels>,
    pub receipts_waiting: VecDeque<(usize, Receipt)>,
    /// Published windows for each intake's QUIC sessions (empty without QUIC).
    pub quic_results: Vec<QuicResults>,
    pub shared: Arc<Shared>,
    pub counters: ReceiptCounters,
    pub windows_published_total: u64,
    pub buffers_allocated_total: u64,
    pub publish_latency: Histogram,
}

/// Merger → one intake's QUIC side: published windows, with a pool of buffers coming back.
pub struct QuicResults {
    pub tx: Tx<ResultMsg>,
    pub labels: Labels,
    pub pool: Rx<ResultMsg>,
    pub pool_labels: Labels,
    pub waiting: VecDeque<ResultMsg>,
}

impl MergerOutput for MergerRings {
    fn window_result(&mut self, result: &WindowResult) {
        let mut msg = self.pool.pop().unwrap_or_else(|| {
            self.buffers_allocated_total += 1;
            ResultMsg { bytes: Vec::with_capacity(self.bytes_reserve), ..ResultMsg::default() }
        });
        msg.bytes.clear();
        result.encode(&mut msg.bytes);
        msg.window = result.window;
        msg.published_ns = now_ns();
        for q in &mut self.quic_results {
            let mut copy = q.pool.pop().unwrap_or_else(|| {
                self.buffers_allocated_total += 1;
                ResultMsg { bytes: Vec::with_capacity(self.bytes_reserve), ..ResultMsg::default() }
            });
            copy.bytes.clear();
            copy.bytes.extend_from_slice(&msg.bytes);
            copy.window = msg.window;
            copy.published_ns = msg.published_ns;
            if q.waiting.is_empty() {
                if let Err(full) = q.tx.try_push(copy) {
                    q.waiting.push_back(full.into_inner());
                }
            } else {
                q.waiting.push_back(copy);
            }
        }
        self.publish_latency.record_ns(msg.published_ns.saturating_sub(result.window.closed_ns).max(1));
        self.windows_published_total += 1;
        self.shared.merger_window_id.store(result.window.window_id, Ordering::Release);
        if self.results_waiting.is_empty() {
            if let Err(full) = self.results.try_push(msg) {
                self.results_waiting.push_back(full.into_inner());
            }
        } else {
            self.results_waiting.push_back(msg);
        }
    }

    fn receipt(&mut self, intake: usize, receipt: Receipt) {
        self.counters.count(receipt.status);
        // One queue for all intakes keeps each intake's answers in order.
        if self.receipts_waiting.is_empty() {
            if let Err(full) = self.receipts[intake].try_push(receipt) {
                self.receipts_waiting.push_back((intake, full.into_inner()));
            }
        } else {
            self.receipts_waiting.push_back((intake, receipt));
        }
    }

    fn book_open(&mut self, intake: usize, open: usize, taken_total: u64) {
        self.shared.book_open[intake].0.store(pack_book(open, taken_total), Ordering::Relaxed);
    }

    fn return_window(
        &mut self,
        shard: usize,
        window: Box<ShardWindow>,
    ) -> Result<(), fpn_engine::shard::Full<Box<ShardWindow>>> {
        fpn_engine::shard::Sink::push(&mut self.shard_back[shard], window)
    }
}

impl MergerRings {
    fn flush_waiting(&mut self) -> bool {
        let mut did_work = false;
        while let Some(msg) = self.results_waiting.pop_front() {
            if let Err(full) = self.results.try_push(msg) {
                self.results_waiting.push_front(full.into_inner());
                break;
            }
            did_work = true;
        }
        while let Some((intake, r)) = self.receipts_waiting.pop_front() {
            if let Err(full) = self.receipts[intake].try_push(r) {
                self.receipts_waiting.push_front((intake, full.into_inner()));
                break;
            }
            did_work = true;
        }
        for q in &mut self.quic_results {
            while let Some(msg) = q.waiting.pop_front() {
                if let Err(full) = q.tx.try_push(msg) {
                    q.waiting.push_front(full.into_inner());
                    break;
                }
                did_work = true;
            }
        }
        did_work
    }
}

/// The merger: cross-shard intents, the merged block, the auction book and its clearing.
pub struct MergerRole {
    pub core: Merger,
    pub intakes: Vec<RxQ<ToMerger>>,
    pub shards: Vec<RxQ<Box<ShardWindow>>>,
    pub out: MergerRings,
    pub kit: LoopKit,
}

impl RoleLoop for MergerRole {
    fn kit(&mut self) -> &mut LoopKit {
        &mut self.kit
    }

    fn step(&mut self, now: u64) -> bool {
        for q in &mut self.intakes {
            q.now_ns = now;
        }
        for q in &mut self.shards {
            q.now_ns = now;
        }
        for q in &mut self.out.shard_back {
            q.now_ns = now;
        }
        let mut did_work = self.out.flush_waiting();
        did_work |= self.core.collect(&mut self.intakes, &mut self.shards, &mut self.out, BUDGET);
        did_work
    }

    async fn slow(&mut self, pace: &mut SlicePace) -> bool {
        self.core.finalize_paced(&mut self.out, pace).await
    }

    fn housekeep(&mut self) {
        let Self { intakes, shards, out, kit, .. } = self;
        let idle = kit.idler.counters();
        let none = &kit.none;
        kit.publisher.publish(|s| {
            for q in intakes.iter() {
                publish_rx(s, q);
            }
            for q in shards.iter() {
                publish_rx(s, q);
            }
            for q in out.shard_back.iter() {
                publish_tx(s, q);
            }
            s.ring_tx(&out.results_labels, out.results.counters(), out.results.occupancy());
            s.ring_rx(&out.pool_labels, out.pool.counters());
            for (tx, labels) in out.receipts.iter().zip(&out.receipts_labels) {
                s.ring_tx(labels, tx.counters(), tx.occupancy());
            }
            for q in &out.quic_results {
                s.ring_tx(&q.labels, q.tx.counters(), q.tx.occupancy());
                s.ring_rx(&q.pool_labels, q.pool.counters());
            }
            s.idle(none, idle);
            out.counters.publish(s, none);
            s.counter(&WINDOWS_PUBLISHED_TOTAL, none, out.windows_published_total);
            s.counter(&RESULT_BUFFERS_ALLOCATED_TOTAL, none, out.buffers_allocated_total);
            s.histogram(&WINDOW_PUBLISH_SECONDS, none, &out.publish_latency);
        });
        kit.heartbeat.beat();
    }
}

impl MergerRole {
    pub async fn run(self, ctx: RoleContext) {
        run_role(self, ctx).await
    }
}

// ---------------------------------------------------------------------------------------
// Journal

/// Appends each window result as one JSON line to `<data_dir>/journal.jsonl` and keeps the
/// newest lines for the admin endpoint. Off the latency path: it formats JSON and writes a
/// file, so it allocates and may block briefly in `write`.
pub struct JournalRole {
    pub results: Rx<ResultMsg>,
    pub results_labels: Labels,
    pub back: Tx<ResultMsg>,
    pub back_labels: Labels,
    pub file: super::journal::JournalFile,
    pub shared: Arc<Shared>,
    pub kit: LoopKit,
    /// Capacity of the next line's buffer: the longest line so far (admin keeps the lines).
    pub line_reserve: usize,
    /// The journal → prover ring, when the prover is enabled: each window's witness, or why
    /// there is none. A full ring drops the window (the pool counts it as `ring_full`).
    pub prover: Option<super::prover::ProverFeed>,
}

impl RoleLoop for JournalRole {
    /// The journal formats JSON and writes a file: it allocates by design, off the hot cores.
    const HOT: bool = false;

    fn kit(&mut self) -> &mut LoopKit {
        &mut self.kit
    }

    /// Everything happens in `slow`: a busy window's line is long enough to need slices.
    fn step(&mut self, _now: u64) -> bool {
        false
    }

    async fn slow(&mut self, pace: &mut SlicePace) -> bool {
        let mut did_work = false;
        while self.file.ready() {
            let Some(msg) = self.results.pop() else { break };
            self.append(&msg, pace).await;
            // A full return ring (more buffers than it holds): free this one here.
            let _ = self.back.try_push(msg);
            did_work = true;
            pace.point().await;
        }
        did_work
    }

    fn housekeep(&mut self) {
        let idle = self.kit.idler.counters();
        let Self { results, results_labels, back, back_labels, kit, prover, .. } = self;
        let (w, b, e) = self.file.counters();
        let none = &kit.none;
        kit.publisher.publish(|s| {
            s.ring_rx(results_labels, results.counters());
            s.ring_tx(back_labels, back.counters(), back.occupancy());
            s.idle(none, idle);
            s.counter(&JOURNAL_WINDOWS_WRITTEN_TOTAL, none, w);
            s.counter(&JOURNAL_WRITTEN_BYTES_TOTAL, none, b);
            s.counter(&JOURNAL_WRITE_ERRORS_TOTAL, none, e);
            if let Some(feed) = prover {
                s.ring_tx(&feed.labels, feed.tx.counters(), feed.tx.occupancy());
            }
        });
        kit.heartbeat.beat();
    }

    fn finish(&mut self) {
        self.file.close();
    }
}

impl JournalRole {
    pub async fn run(self, ctx: RoleContext) {
        run_role(self, ctx).await
    }

    async fn append(&mut self, msg: &ResultMsg, pace: &mut SlicePace) {
        let (block, clearing) = super::journal::window_records(msg);
        if let Some(feed) = &mut self.prover {
            let input = crate::prover::pool::WindowInput {
                window_id: msg.window.window_id,
                closed_ns: msg.window.closed_ns,
                witness: crate::prover::witness::frame_witness(block, clearing, feed.reserve),
            };
            let _ = feed.tx.try_push(input);
        }
        let mut line = self.file.buffer(self.line_reserve);
        super::journal::write_line(msg, block, clearing, &mut line, pace).await;
        self.line_reserve = self.line_reserve.max(line.len() + 1);
        // The admin routes keep the newest lines; the file gets this buffer.
        {
            let mut latest = self.shared.latest.lock().unwrap_or_else(|p| p.into_inner());
            // The oldest kept line's buffer takes the copy (no allocation once 64 are kept).
            let mut kept = if latest.len() == self.shared.latest_max {
                latest.pop_front().map(|(_, s)| s).unwrap_or_default()
            } else {
                String::new()
            };
            kept.clear();
            kept.push_str(&line);
            latest.push_back((msg.window.window_id, kept));
        }
        line.push('\n');
        self.file.send(msg.window.window_id, line);
    }
}
