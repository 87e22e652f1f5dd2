//! End to end through intake → builder → merger on two pinned, spinning threads, over the
//! daemon's own ring adapters (`flashpointd::run::rings`), with the daemon's default
//! settings (20 ms windows of at most 65 536 records, the `improved` builder, one build
//! worker per shard, 65 536-slot rings). Reported as intents/s from the first frame handed
//! to the intake until the last intent is in a window the merger published.
//!
//! - CPU 0: the intake role's work: `IntakeCore::handle_frame` on pre-encoded frames (16
//!   intents of 4 keys each, distinct nonces), the `WindowClock` (closes on time, or at the
//!   window's cap as the engine does), close markers.
//! - CPU 1: the merger (`Merger::poll`), and in the `receipts` variant the answer ring.
//! - The builder shards and the build workers (`builder.workers` per shard) run as tasks
//!   beside those, on the CPU the daemon's core map gives each (`cores.builder`,
//!   `cores.build`; by default the shard and the overflow worker on CPU 0, worker 0 on
//!   CPU 1). A thread polls its tasks in turn after each round of its own work; a task
//!   yields after each step, and a build at its first pace point after 50 µs, as the
//!   daemon's roles do on their executors (`roles::SLICE`). The map must put the intake on
//!   the first allowed CPU and the auction on the second.
//!
//! Variants: `no_receipts` (receipts counted on the intake thread, as a transport that
//! answers in place would) and `receipts` (every receipt, then `Done`, goes over the
//! intake's answer ring to CPU 1, as the submit path returns them; the admin side's HTTP
//! and waiter table are not in it).
//!
//! Each sample starts both threads, warms up (two full windows, untimed: dedup table and
//! ring pages touched), then times `INTENTS` intents. The intake takes a frame only when
//! every output ring has room for all its records (as the role does for its answer ring),
//! so no record is refused `overloaded` for a full ring; the wait is counted as
//! backpressure. Set `E2E_VERBOSE=1` for a per-run breakdown on stderr, `E2E_INTENTS` for
//! another sample size.
//!
//! Run: `cargo bench -p flashpointd --bench e2e`
//! Settings come from the daemon's loader: `FPN_*` variables apply (e.g.
//! `FPN_BUILDER_SHARDS=2`, `FPN_BUILDER_WORKERS=0`, or the layout before build workers:
//! `FPN_BUILDER_WORKERS=0 FPN_CORES_BUILDER=1`, the shard beside the merger).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use flashpointd::config::{Inputs, load};
use flashpointd::run::rings::{IntakeRings, RxQ, Stamped, TxQ, WorkerRings, now_ns, stamped_ring};
use flashpointd::run::{Answer, ResultMsg};
use flashpointd::{CpuSet, Role, Settings};
use fpn_engine::shard::{Full, ShardWindow, Sink, Source, ToBuilder, ToMerger};
use fpn_engine::{
    BuildWorker, BuilderShard, IntakeCore, Merger, MergerOutput, Pace, ShardConfig, WindowClock,
    WindowResult, prefetch_frame, yield_once,
};
use fpn_runtime::ring::{Rx, Tx, ring};
use fpn_testkit::{Frames, load_frames};
use fpn_wire::Receipt;

/// Intents per frame and keys per intent.
const PER_FRAME: usize = 16;
const KEYS_PER_INTENT: usize = 4;
/// Keys are drawn from this many (so a window of 65 536 intents has many conflicts).
const KEY_SPACE: u64 = 1 << 18;
/// Clients; nonces are distinct per client.
const CLIENTS: u64 = 64;
/// Timed intents per sample (`E2E_INTENTS` overrides).
const INTENTS: usize = 2 << 20;
/// Frames handled per loop iteration, as the intake role (`roles::BUDGET`).
const BUDGET: usize = 256;

/// The allowed CPUs, read once before any thread is pinned.
static CPUS: std::sync::LazyLock<Vec<core_affinity::CoreId>> =
    std::sync::LazyLock::new(|| core_affinity::get_core_ids().unwrap_or_default());

fn pin(index: usize) {
    let core = CPUS.get(index).copied().unwrap_or_else(|| panic!("this bench needs CPU index {index}"));
    assert!(core_affinity::set_for_current(core), "pinning to {core:?} failed");
}

fn settings() -> Settings {
    let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("FPN_")).collect();
    let inputs = Inputs::gather(None, env, vec![]).expect("config inputs");
    let cpus = CpuSet::new(CPUS.iter().map(|c| c.id));
    load(&inputs, &cpus).expect("valid settings").settings
}

/// Pre-encoded frames (`fpn_testkit::load_frames`): the first `warm` of them are the
/// untimed warm-up.
struct Input {
    frames: Frames,
    warm: usize,
}

impl Input {
    fn len(&self) -> usize {
        self.frames.len()
    }

    fn frame(&self, i: usize) -> &[u8] {
        self.frames.frame(i)
    }
}

fn encode(warm_intents: usize, timed_intents: usize) -> Input {
    let frames_n = (warm_intents + timed_intents).div_ceil(PER_FRAME);
    Input {
        frames: load_frames(frames_n, PER_FRAME, KEYS_PER_INTENT, KEY_SPACE, CLIENTS),
        warm: warm_intents / PER_FRAME,
    }
}

/// The merger's outputs: published windows are counted, shard windows go back.
struct MergerCount {
    shard_back: Vec<TxQ<Box<ShardWindow>>>,
    stats: Arc<Stats>,
    /// The result bytes the merger role encodes for the journal (`WindowResult::encode`).
    msg: ResultMsg,
}

impl MergerOutput for MergerCount {
    fn window_result(&mut self, result: &WindowResult) {
        self.msg.bytes.clear();
        result.encode(&mut self.msg.bytes);
        let s = &self.stats;
        s.intents.fetch_add(result.window.intents_count as u64, Ordering::Relaxed);
        s.windows.fetch_add(1, Ordering::Relaxed);
        let full = matches!(result.window.reason, fpn_engine::CloseReason::Full);
        s.full_windows.fetch_add(u64::from(full), Ordering::Relaxed);
        s.last_window_id.store(result.window.window_id, Ordering::Release);
    }

    fn receipt(&mut self, _intake: usize, _receipt: Receipt) {}

    fn book_open(&mut self, _intake: usize, _open: usize, _taken_total: u64) {}

    fn return_window(
        &mut self,
        shard: usize,
        window: Box<ShardWindow>,
    ) -> Result<(), Full<Box<ShardWindow>>> {
        self.shard_back[shard].push(window)
    }
}

/// Touches every slot of a ring once, so its pages are mapped before the timed run.
fn prefault<T: Copy>(tx: &mut Tx<Stamped<T>>, rx: &mut Rx<Stamped<T>>, value: T) {
    while tx.try_push(Stamped { sent_ns: 0, msg: value }).is_ok() {}
    while rx.pop().is_some() {}
}

#[derive(Debug, Default, Clone, Copy)]
struct IntakeStats {
    frames: u64,
    accepted: u64,
    refused: u64,
    /// Time the intake waited for ring room.
    backpressure_ns: u64,
    /// Time in `handle_frame` (and the receipt pushes).
    handle_ns: u64,
}

/// Counters both threads add to; reset (all but `last_window_id`) when the timed part starts.
#[derive(Debug, Default)]
struct Stats {
    /// On-CPU time (ns) in each kind of task: the shards' reading and hand-offs, the shards'
    /// own builds, the workers' builds, the merger.
    collect_ns: AtomicU64,
    shard_build_ns: AtomicU64,
    /// By the thread the worker runs on.
    worker_build_ns: [AtomicU64; 2],
    merge_ns: AtomicU64,
    /// Windows built by the shards themselves and by their workers (by thread).
    shard_builds: AtomicU64,
    worker_builds: [AtomicU64; 2],
    answers: AtomicU64,
    intents: AtomicU64,
    windows: AtomicU64,
    full_windows: AtomicU64,
    last_window_id: AtomicU64,
}

impl Stats {
    fn reset(&self) {
        for c in [
            &self.collect_ns,
            &self.shard_build_ns,
            &self.worker_build_ns[0],
            &self.worker_build_ns[1],
            &self.merge_ns,
            &self.shard_builds,
            &self.worker_builds[0],
            &self.worker_builds[1],
            &self.answers,
            &self.intents,
            &self.windows,
            &self.full_windows,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    fn add(c: &AtomicU64, v: u64) {
        c.fetch_add(v, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy)]
struct Run {
    elapsed: Duration,
    intents: u64,
    intake: IntakeStats,
}

/// The thread (0: the intake's, 1: the merger's) of every builder shard and every build
/// worker, from the daemon's core map.
#[derive(Debug, Clone)]
struct Placement {
    shards: Vec<usize>,
    workers: Vec<usize>,
}

impl Placement {
    fn of(settings: &Settings) -> Placement {
        let map = &settings.core_map;
        let thread = |role: Role, i: usize| {
            let cpu = map.cpu_of(role, i).unwrap_or_else(|| panic!("{role}#{i} has no CPU"));
            CPUS.iter().take(2).position(|c| c.id == cpu).unwrap_or_else(|| {
                panic!("{role}#{i} is on cpu {cpu}: this bench runs on the first two allowed CPUs only")
            })
        };
        assert_eq!(thread(Role::Intake, 0), 0, "the intake must be on the first allowed CPU");
        assert_eq!(thread(Role::Merger, 0), 1, "the auction must be on the second allowed CPU");
        let c = settings.shard_config();
        Placement {
            shards: (0..c.shards_n).map(|k| thread(Role::Builder, k)).collect(),
            workers: (0..c.shards_n * c.workers_per_shard).map(|i| thread(Role::BuildWorker, i)).collect(),
        }
    }
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

thread_local! {
    /// When the running task's slice began (`BenchPace`).
    static SLICE_START: Cell<u64> = const { Cell::new(0) };
}

/// Polls each task once, its slice starting now.
fn run_tasks(tasks: &mut [Task]) {
    for task in tasks {
        SLICE_START.with(|s| s.set(now_ns()));
        let _ = task.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    }
}

/// Builder shard `k`: returned windows, workers' windows, collect, hand-off, and the build
/// of a window no worker was free for.
fn shard_task(
    mut shard: BuilderShard,
    mut inputs: Vec<RxQ<ToBuilder>>,
    mut out: TxQ<Box<ShardWindow>>,
    mut back: RxQ<Box<ShardWindow>>,
    mut to_workers: Vec<TxQ<Box<ShardWindow>>>,
    mut from_workers: Vec<RxQ<Box<ShardWindow>>>,
    stats: Arc<Stats>,
) -> Task {
    Box::pin(async move {
        loop {
            let t = now_ns();
            for q in &mut inputs {
                q.now_ns = t;
            }
            out.now_ns = t;
            back.now_ns = t;
            to_workers.iter_mut().for_each(|q| q.now_ns = t);
            from_workers.iter_mut().for_each(|q| q.now_ns = t);
            while let Some(w) = back.pop() {
                shard.handle_returned(w);
            }
            shard.take_built(&mut from_workers);
            shard.collect(&mut inputs, &mut out, BUDGET);
            shard.dispatch(&mut to_workers);
            shard.flush(&mut out);
            Stats::add(&stats.collect_ns, now_ns() - t);
            if shard.should_build_here() {
                let mut t = now_ns();
                let mut pace = BenchPace { busy_ns: &stats.shard_build_ns, resumed_ns: &mut t };
                shard.build_staged(&mut pace).await;
                let end = now_ns();
                Stats::add(&stats.shard_build_ns, end - t);
                Stats::add(&stats.shard_builds, 1);
                out.now_ns = end;
                shard.flush(&mut out);
            }
            yield_once().await;
        }
    })
}

/// A build worker: takes, builds (paced), hands back.
fn worker_task(
    mut worker: BuildWorker,
    mut input: RxQ<Box<ShardWindow>>,
    mut back: TxQ<Box<ShardWindow>>,
    stats: Arc<Stats>,
    thread: usize,
) -> Task {
    Box::pin(async move {
        loop {
            let now = now_ns();
            input.now_ns = now;
            back.now_ns = now;
            worker.flush(&mut back);
            if worker.take(&mut input) {
                let mut t = now_ns();
                let mut pace = BenchPace { busy_ns: &stats.worker_build_ns[thread], resumed_ns: &mut t };
                worker.build(&mut pace).await;
                let end = now_ns();
                Stats::add(&stats.worker_build_ns[thread], end - t);
                Stats::add(&stats.worker_builds[thread], 1);
                back.now_ns = end;
                worker.flush(&mut back);
            }
            yield_once().await;
        }
    })
}

/// One sample: both threads, warm-up, then the timed part.
fn run_once(
    config: &ShardConfig,
    ring_capacity: usize,
    input: &Arc<Input>,
    receipts: bool,
    placement: &Placement,
) -> Run {
    let s_n = config.shards_n;
    let w_n = config.workers_per_shard;
    let window_ns = config.engine.window.window_ns;
    let stats = Arc::new(Stats::default());
    let mut to_builder_tx = Vec::new();
    let mut to_builder_rx = Vec::new();
    for k in 0..s_n {
        let (mut tx, mut rx) = stamped_ring::<ToBuilder>(ring_capacity, &format!("intake0_builder{k}"));
        prefault(&mut tx.tx, &mut rx.rx, ToBuilder::Close { window_id: 0 });
        to_builder_tx.push(tx);
        to_builder_rx.push(vec![rx]);
    }
    let (mut to_merger_tx, mut to_merger_rx) = stamped_ring::<ToMerger>(ring_capacity, "intake0_merger");
    prefault(&mut to_merger_tx.tx, &mut to_merger_rx.rx, ToMerger::CancelPending { window_id: 0, seq: 0 });
    let windows = config.shard_windows_max;
    let (shard_out_tx, shard_out_rx): (Vec<_>, Vec<_>) =
        (0..s_n).map(|k| stamped_ring::<Box<ShardWindow>>(windows, &format!("builder{k}_merger"))).unzip();
    let (shard_back_tx, shard_back_rx): (Vec<_>, Vec<_>) =
        (0..s_n).map(|k| stamped_ring::<Box<ShardWindow>>(windows, &format!("merger_builder{k}"))).unzip();
    let (mut answers_tx, answers_rx) = ring::<Answer>(ring_capacity.max(16_384));

    // The shards' and the workers' tasks, on the CPUs the core map gives them.
    let mut tasks: [Vec<Task>; 2] = [Vec::new(), Vec::new()];
    for (k, ((inputs, out), back)) in
        to_builder_rx.into_iter().zip(shard_out_tx).zip(shard_back_rx).enumerate()
    {
        let (mut to_workers, mut from_workers) = (Vec::new(), Vec::new());
        for j in 0..w_n {
            let i = k * w_n + j;
            let rings = WorkerRings::new(k, i);
            to_workers.push(rings.shard.0);
            from_workers.push(rings.shard.1);
            let (input, back) = rings.worker;
            let thread = placement.workers[i];
            tasks[thread].push(worker_task(BuildWorker::new(config), input, back, stats.clone(), thread));
        }
        let shard = BuilderShard::new(config, k, 1);
        let task = shard_task(shard, inputs, out, back, to_workers, from_workers, stats.clone());
        tasks[placement.shards[k]].push(task);
    }
    let [mut cpu0_tasks, cpu1_tasks] = tasks;

    let intake = IntakeCore::new(config, 0, 1);
    let merger = Merger::new(config, 1);

    // Warm-up → both threads reach the barrier → timed part.
    let barrier = Arc::new(Barrier::new(2));
    let warm_done = Arc::new(AtomicBool::new(false));
    // Window id of the last close of each phase (0: not closed yet).
    let phase_last = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let end_ns = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));

    let consumer = std::thread::spawn({
        let (barrier, warm_done, phase_last, end_ns, done, stats) = (
            barrier.clone(),
            warm_done.clone(),
            phase_last.clone(),
            end_ns.clone(),
            done.clone(),
            stats.clone(),
        );
        let mut merger = merger;
        let mut shard_in = shard_out_rx;
        let mut intakes = vec![to_merger_rx];
        let mut answers = answers_rx;
        let mut tasks = cpu1_tasks;
        move || {
            pin(1);
            let mut out = MergerCount {
                shard_back: shard_back_tx,
                stats: stats.clone(),
                msg: ResultMsg { bytes: Vec::with_capacity(8 << 20), ..ResultMsg::default() },
            };
            for phase in 0..2 {
                loop {
                    let last = phase_last[phase].load(Ordering::Acquire);
                    if last != 0 && stats.last_window_id.load(Ordering::Acquire) >= last {
                        break;
                    }
                    let now = now_ns();
                    intakes[0].now_ns = now;
                    for q in &mut shard_in {
                        q.now_ns = now;
                    }
                    for q in &mut out.shard_back {
                        q.now_ns = now;
                    }
                    merger.poll(&mut intakes, &mut shard_in, &mut out, BUDGET);
                    Stats::add(&stats.merge_ns, now_ns() - now);
                    if receipts {
                        Stats::add(&stats.answers, answers.drain(usize::MAX, std::mem::drop) as u64);
                    }
                    run_tasks(&mut tasks);
                }
                if phase == 0 {
                    warm_done.store(true, Ordering::Release);
                    barrier.wait();
                }
            }
            end_ns.store(now_ns(), Ordering::Release);
            done.store(true, Ordering::Release);
        }
    });

    pin(0);
    let mut core = intake;
    let mut to_builder = to_builder_tx;
    let mut to_merger = to_merger_tx;
    let mut clock = WindowClock::new(window_ns, 1, now_ns());
    let mut istats = IntakeStats::default();
    let mut start_ns = 0;
    let phases = [(0, input.warm), (input.warm, input.len())];
    // The next frame is prefetched while this one is decoded, as the submit path does;
    // `E2E_PREFETCH=0` leaves it out, for comparison.
    let prefetch_next = std::env::var_os("E2E_PREFETCH").is_none_or(|v| v != "0");
    for (phase, &(from, to)) in phases.iter().enumerate() {
        if phase == 1 {
            while !warm_done.load(Ordering::Acquire) {
                run_tasks(&mut cpu0_tasks);
            }
            stats.reset();
            barrier.wait();
            istats = IntakeStats::default();
            start_ns = now_ns();
        }
        let mut next = from;
        let mut blocked_since: Option<Instant> = None;
        let mut phase_closed = false;
        // Until the phase's last close is out: a close that found a ring full stays pending
        // in the core and is delivered by `poll_pending` at the top of the loop. (Leaving
        // with it pending hung the bench: the consumer never saw the phase end.)
        while !phase_closed || core.has_pending() {
            let now = now_ns();
            for q in &mut to_builder {
                q.now_ns = now;
            }
            to_merger.now_ns = now;
            let mut sink = IntakeRings { to_builder: &mut to_builder, to_merger: &mut to_merger };
            if core.has_pending() {
                let _ = core.poll_pending(&mut sink);
            }
            for _ in 0..BUDGET {
                if next == to || core.has_pending() || core.wants_close() {
                    break;
                }
                let room = sink.to_builder.iter().all(|q| q.tx.slots_free() >= PER_FRAME)
                    && sink.to_merger.tx.slots_free() >= PER_FRAME
                    && (!receipts || answers_tx.slots_free() > PER_FRAME);
                if !room {
                    blocked_since.get_or_insert_with(Instant::now);
                    break;
                }
                let t = Instant::now();
                if let Some(since) = blocked_since.take() {
                    istats.backpressure_ns += t.duration_since(since).as_nanos() as u64;
                }
                if prefetch_next && next + 1 < to {
                    prefetch_frame(input.frame(next + 1));
                }
                let rx_ns = now_ns();
                let (accepted, refused) = (&mut istats.accepted, &mut istats.refused);
                let result = if receipts {
                    let answers = &mut answers_tx;
                    let r = core.handle_frame(now_ns(), rx_ns, input.frame(next), &mut sink, |r| {
                        if r.status.is_ok() {
                            *accepted += 1
                        } else {
                            *refused += 1
                        }
                        let pushed = answers.try_push(Answer::Receipt(r));
                        debug_assert!(pushed.is_ok());
                    });
                    let done = Answer::Done { rx_ns, frame: Vec::new(), refused: r.err() };
                    let pushed = answers.try_push(done);
                    debug_assert!(pushed.is_ok());
                    r
                } else {
                    core.handle_frame(now_ns(), rx_ns, input.frame(next), &mut sink, |r| {
                        if r.status.is_ok() { *accepted += 1 } else { *refused += 1 }
                    })
                };
                assert!(result.is_ok(), "frame refused: {result:?}");
                istats.handle_ns += t.elapsed().as_nanos() as u64;
                istats.frames += 1;
                next += 1;
            }
            // The window clock, as intake 0's `poll_clock`: close when due or full, or at the
            // end of the phase.
            let full = core.wants_close();
            let end = next == to;
            let now = now_ns();
            if !phase_closed && !core.has_pending() && (full || end || now >= clock.deadline_ns()) {
                let close = clock.close_now(now, full);
                let mut sink = IntakeRings { to_builder: &mut to_builder, to_merger: &mut to_merger };
                let _ = core.handle_window(close, &mut sink);
                if end {
                    phase_last[phase].store(close.window_id, Ordering::Release);
                    phase_closed = true;
                }
            }
            // The other tasks of this CPU get their turn (a shard may be blocking the ring).
            let t = Instant::now();
            run_tasks(&mut cpu0_tasks);
            if blocked_since.is_some() {
                // Their time is not the intake's wait.
                blocked_since = blocked_since.map(|b| b + t.elapsed());
            }
        }
    }
    // Tasks here may still hold the last windows.
    while !done.load(Ordering::Acquire) {
        run_tasks(&mut cpu0_tasks);
    }
    consumer.join().expect("consumer thread");
    let elapsed = Duration::from_nanos(end_ns.load(Ordering::Acquire) - start_ns);
    let intents = Stats::get(&stats.intents);
    assert_eq!(istats.refused, 0, "no record refused");
    assert_eq!(intents, istats.accepted, "every accepted intent is in a published window");
    let run = Run { elapsed, intents, intake: istats };
    report_stats(&run, &stats, receipts);
    run
}

fn report_stats(run: &Run, s: &Stats, receipts: bool) {
    if std::env::var_os("E2E_VERBOSE").is_none() {
        return;
    }
    let per = |c: &AtomicU64| Stats::get(c) as f64 / run.intents as f64;
    let i = run.intake;
    eprintln!(
        "{}: {:.2} M intents/s ({} intents, {:.3} s, {} windows, {} full) | cpu0 intake {:.1} ns/intent, \
         backpressure {:.1} | shards collect {:.1}, build {:.1} ({} windows) | workers build cpu0 {:.1} \
         ({} windows), cpu1 {:.1} ({} windows) | merger (cpu1) {:.1}, answers {}",
        if receipts { "receipts" } else { "no_receipts" },
        run.intents as f64 / run.elapsed.as_secs_f64() / 1e6,
        run.intents,
        run.elapsed.as_secs_f64(),
        Stats::get(&s.windows),
        Stats::get(&s.full_windows),
        i.handle_ns as f64 / run.intents as f64,
        i.backpressure_ns as f64 / run.intents as f64,
        per(&s.collect_ns),
        per(&s.shard_build_ns),
        Stats::get(&s.shard_builds),
        per(&s.worker_build_ns[0]),
        Stats::get(&s.worker_builds[0]),
        per(&s.worker_build_ns[1]),
        Stats::get(&s.worker_builds[1]),
        per(&s.merge_ns),
        Stats::get(&s.answers),
    );
}

fn e2e(c: &mut Criterion) {
    let settings = settings();
    let config = settings.shard_config();
    config.validate().expect("valid shard config");
    let placement = Placement::of(&settings);
    let ring_capacity = settings.rings.capacity;
    let warm = 2 * config.records_cap();
    let intents = std::env::var("E2E_INTENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(INTENTS);
    let input = Arc::new(encode(warm, intents));
    if std::env::var_os("E2E_VERBOSE").is_some() {
        eprintln!(
            "e2e: {} shard(s) on threads {:?}, {} worker(s) per shard on threads {:?}, window {} ms, \
             records_max {}, ring {} slots of {} B (ToBuilder), {} B (ToMerger)",
            config.shards_n,
            placement.shards,
            config.workers_per_shard,
            placement.workers,
            config.engine.window.window_ns / 1_000_000,
            config.engine.window.records_max,
            ring_capacity,
            std::mem::size_of::<Stamped<ToBuilder>>(),
            std::mem::size_of::<Stamped<ToMerger>>(),
        );
    }
    let timed = (input.len() - input.warm) * PER_FRAME;
    let mut group = c.benchmark_group("e2e");
    group.throughput(Throughput::Elements(timed as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    for (name, receipts) in [("no_receipts", false), ("receipts", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += run_once(&config, ring_capacity, &input, receipts, &placement).elapsed;
                }
                total
            });
        });
    }
    group.finish();
}

/// The bench's pace: at a point, once the slice (`SLICE_START`) has run `SLICE_NS`, counts
/// the on-CPU time since the build last resumed into `busy_ns` and yields; the thread's
/// loop polls again at the task's next turn.
struct BenchPace<'a> {
    busy_ns: &'a AtomicU64,
    resumed_ns: &'a mut u64,
}

/// The daemon's `roles::SLICE`.
const SLICE_NS: u64 = 50_000;

impl Pace for BenchPace<'_> {
    async fn point(&mut self) {
        let now = now_ns();
        if now.saturating_sub(SLICE_START.with(Cell::get)) >= SLICE_NS {
            Stats::add(self.busy_ns, now - *self.resumed_ns);
            yield_once().await;
            *self.resumed_ns = now_ns();
        }
    }
}

criterion_group!(benches, e2e);
criterion_main!(benches);
