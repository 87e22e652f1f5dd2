//! End to end through intake → builder → merger on two pinned, spinning threads, over the
//! daemon's own ring adapters (`flashpointd::run::rings`), with the daemon's default
//! settings (20 ms windows of at most 65 536 records, the `improved` builder, 65 536-slot
//! rings). Reported as intents/s from the first frame handed to the intake until the last
//! intent is in a window the merger published.
//!
//! - CPU 0: the intake role's work: `IntakeCore::handle_frame` on pre-encoded frames (16
//!   intents of 4 keys each, distinct nonces), the `WindowClock` (closes on time, or at the
//!   window's cap as the engine does), close markers.
//! - CPU 1: the builder shard(s) and the merger (`BuilderShard::poll`, `Merger::poll`),
//!   windows returned to the builders, and in the `receipts` variant the answer ring.
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
//! `FPN_BUILDER_SHARDS=2`, both shards then on CPU 1).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use flashpointd::config::{Inputs, load};
use flashpointd::run::rings::{IntakeRings, Stamped, TxQ, now_ns, stamped_ring};
use flashpointd::run::{Answer, ResultMsg};
use flashpointd::{CpuSet, Settings};
use fpn_engine::shard::{Full, ShardWindow, Sink, Source, ToBuilder, ToMerger};
use fpn_engine::{BuilderShard, IntakeCore, Merger, MergerOutput, ShardConfig, WindowClock, WindowResult};
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
    intents_total: u64,
    windows_total: u64,
    full_windows_total: u64,
    last_window_id: u64,
    /// The result bytes the merger role encodes for the journal (`WindowResult::encode`).
    msg: ResultMsg,
}

impl MergerOutput for MergerCount {
    fn window_result(&mut self, result: &WindowResult) {
        self.msg.bytes.clear();
        result.encode(&mut self.msg.bytes);
        self.intents_total += result.window.intents_count as u64;
        self.windows_total += 1;
        self.full_windows_total += u64::from(matches!(result.window.reason, fpn_engine::CloseReason::Full));
        self.last_window_id = result.window.window_id;
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

#[derive(Debug, Default, Clone, Copy)]
struct BuilderStats {
    /// Time in `BuilderShard::poll` calls that built a window, and in the others.
    build_ns: u64,
    collect_ns: u64,
    merge_ns: u64,
    answers: u64,
    windows: u64,
    full_windows: u64,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    elapsed: Duration,
    intents: u64,
    intake: IntakeStats,
    builder: BuilderStats,
}

/// One sample: both threads, warm-up, then the timed part.
fn run_once(config: &ShardConfig, ring_capacity: usize, input: &Arc<Input>, receipts: bool) -> Run {
    let s_n = config.shards_n;
    let window_ns = config.engine.window.window_ns;
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

    let intake = IntakeCore::new(config, 0, 1);
    let builders: Vec<BuilderShard> = (0..s_n).map(|k| BuilderShard::new(config, k, 1)).collect();
    let merger = Merger::new(config, 1);

    // Warm-up → both threads reach the barrier → timed part.
    let barrier = Arc::new(Barrier::new(2));
    let warm_done = Arc::new(AtomicBool::new(false));
    // Window id of the last close of each phase (0: not closed yet).
    let phase_last = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let end_ns = Arc::new(AtomicU64::new(0));

    let consumer = std::thread::spawn({
        let (barrier, warm_done, phase_last, end_ns) =
            (barrier.clone(), warm_done.clone(), phase_last.clone(), end_ns.clone());
        let mut builders = builders;
        let mut merger = merger;
        let mut inputs = to_builder_rx;
        let mut shard_out = shard_out_tx;
        let mut shard_in = shard_out_rx;
        let mut back = shard_back_rx;
        let mut intakes = vec![to_merger_rx];
        let mut answers = answers_rx;
        move || {
            pin(1);
            let mut out = MergerCount {
                shard_back: shard_back_tx,
                intents_total: 0,
                windows_total: 0,
                full_windows_total: 0,
                last_window_id: 0,
                msg: ResultMsg { bytes: Vec::with_capacity(8 << 20), ..ResultMsg::default() },
            };
            let mut stats = BuilderStats::default();
            let mut intents_at_start = 0;
            for phase in 0..2 {
                loop {
                    let last = phase_last[phase].load(Ordering::Acquire);
                    if last != 0 && out.last_window_id >= last {
                        break;
                    }
                    let now = now_ns();
                    for k in 0..s_n {
                        inputs[k][0].now_ns = now;
                        shard_out[k].now_ns = now;
                        back[k].now_ns = now;
                        out.shard_back[k].now_ns = now;
                        while let Some(w) = back[k].pop() {
                            builders[k].handle_returned(w);
                        }
                        let t = Instant::now();
                        let before = builders[k].window_id();
                        builders[k].poll(&mut inputs[k], &mut shard_out[k], BUDGET);
                        let ns = t.elapsed().as_nanos() as u64;
                        if builders[k].window_id() != before {
                            stats.build_ns += ns;
                        } else {
                            stats.collect_ns += ns;
                        }
                    }
                    intakes[0].now_ns = now;
                    for q in &mut shard_in {
                        q.now_ns = now;
                    }
                    let t = Instant::now();
                    merger.poll(&mut intakes, &mut shard_in, &mut out, BUDGET);
                    stats.merge_ns += t.elapsed().as_nanos() as u64;
                    if receipts {
                        stats.answers += answers.drain(usize::MAX, std::mem::drop) as u64;
                    }
                }
                if phase == 0 {
                    warm_done.store(true, Ordering::Release);
                    barrier.wait();
                    stats = BuilderStats::default();
                    intents_at_start = out.intents_total;
                    out.windows_total = 0;
                    out.full_windows_total = 0;
                }
            }
            end_ns.store(now_ns(), Ordering::Release);
            stats.windows = out.windows_total;
            stats.full_windows = out.full_windows_total;
            (out.intents_total - intents_at_start, stats)
        }
    });

    pin(0);
    let mut core = intake;
    let mut to_builder = to_builder_tx;
    let mut to_merger = to_merger_tx;
    let mut clock = WindowClock::new(window_ns, 1, now_ns());
    let mut stats = IntakeStats::default();
    let mut start_ns = 0;
    let phases = [(0, input.warm), (input.warm, input.len())];
    for (phase, &(from, to)) in phases.iter().enumerate() {
        if phase == 1 {
            while !warm_done.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            barrier.wait();
            stats = IntakeStats::default();
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
                    stats.backpressure_ns += t.duration_since(since).as_nanos() as u64;
                }
                let rx_ns = now_ns();
                let (accepted, refused) = (&mut stats.accepted, &mut stats.refused);
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
                stats.handle_ns += t.elapsed().as_nanos() as u64;
                stats.frames += 1;
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
        }
    }
    let (intents, builder) = consumer.join().expect("consumer thread");
    let elapsed = Duration::from_nanos(end_ns.load(Ordering::Acquire) - start_ns);
    assert_eq!(stats.refused, 0, "no record refused");
    assert_eq!(intents, stats.accepted, "every accepted intent is in a published window");
    Run { elapsed, intents, intake: stats, builder }
}

fn report(name: &str, run: &Run) {
    if std::env::var_os("E2E_VERBOSE").is_none() {
        return;
    }
    let per = |ns: u64| ns as f64 / run.intents as f64;
    let (i, b) = (run.intake, run.builder);
    eprintln!(
        "{name}: {:.2} M intents/s ({} intents, {:.3} s, {} windows, {} full) | cpu0 handle {:.1} ns/intent, \
         backpressure {:.1} ns/intent | cpu1 collect {:.1}, build {:.1}, merge {:.1} ns/intent, answers {}",
        run.intents as f64 / run.elapsed.as_secs_f64() / 1e6,
        run.intents,
        run.elapsed.as_secs_f64(),
        b.windows,
        b.full_windows,
        per(i.handle_ns),
        per(i.backpressure_ns),
        per(b.collect_ns),
        per(b.build_ns),
        per(b.merge_ns),
        b.answers,
    );
}

fn e2e(c: &mut Criterion) {
    let settings = settings();
    let config = settings.shard_config();
    config.validate().expect("valid shard config");
    let ring_capacity = settings.rings.capacity;
    let warm = 2 * config.records_cap();
    let intents = std::env::var("E2E_INTENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(INTENTS);
    let input = Arc::new(encode(warm, intents));
    if std::env::var_os("E2E_VERBOSE").is_some() {
        eprintln!(
            "e2e: {} shard(s), window {} ms, records_max {}, ring {} slots of {} B (ToBuilder), {} B (ToMerger)",
            config.shards_n,
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
                    let run = run_once(&config, ring_capacity, &input, receipts);
                    report(name, &run);
                    total += run.elapsed;
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, e2e);
criterion_main!(benches);
