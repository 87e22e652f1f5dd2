//! End to end through the daemon's own composition: the [`Topology`] that `flashpointd`
//! runs (intakes, builder shards, build workers, merger; every ring and role as the daemon
//! builds them from its settings), on the executors and CPUs of the daemon's core map, fed
//! through the in-process submit path (`submit_intake<i>` rings, as `POST /submit` feeds
//! them). Reported as intents/s from the first timed frame handed to an intake until the
//! last intent is in a window the merger published.
//!
//! What replaces the daemon's I/O, as tasks on the core map's CPUs:
//! - `load<i>` on intake `i`'s CPU: pushes pre-encoded frames (16 intents of 4 keys each,
//!   distinct nonces; a frame goes to the intake of its client, `client % N`, as the admin
//!   side routes) into the intake's submit ring, reusing the buffers that come back;
//! - `answers` on the admin CPU: drains every intake's answer ring (one receipt per record,
//!   then `Done` with the frame's buffer, as the admin side's collector does) and hands the
//!   buffers back to the loaders;
//! - `results` on the journal's CPU: takes each published window where the journal would
//!   (it is not in this bench: its file I/O is not the engine), counts its intents and
//!   gives the buffer back.
//!
//! No QUIC, no admin HTTP, no prover. Each sample builds the topology, starts the executors,
//! runs two full windows untimed (ring and table pages touched), then times `E2E_INTENTS`
//! (default 2 Mi) intents, and stops. `E2E_VERBOSE=1` prints each run.
//!
//! Run: `cargo bench -p flashpointd --bench e2e`. Settings come from the daemon's loader on
//! the CPUs this process may use (`taskset` narrows them), so on 4 or more CPUs the roles
//! spread over all of them as the daemon's would (`docs/config.md`, "Default maps"). `FPN_*`
//! variables apply: N intakes, K shards and W build workers per shard with
//! `FPN_ENGINE_INTAKES=N FPN_BUILDER_SHARDS=K FPN_BUILDER_WORKERS=W` (the map is laid out for
//! them), `FPN_BUILDER_KIND=greedy`, `FPN_ENGINE_PROFILE=tuned` (hot roles spin).
//! `E2E_VERBOSE=1` prints the core map with the reason for each role's CPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use flashpointd::config::{Inputs, load};
use flashpointd::run::links::{RxLink, TxLink};
use flashpointd::run::topology::{Topology, TopologyIo};
use flashpointd::run::{Answer, ResultMsg, Submit};
use flashpointd::{CpuSet, Loaded, Role, Settings};
use fpn_engine::CloseReason;
use fpn_runtime::clock::now_ns;
use fpn_runtime::exec::{self, RoleSpec, StopFlag};
use fpn_runtime::idle::yield_to_executor;
use fpn_runtime::ring::{Rx, Tx, ring};
use fpn_testkit::{Frames, load_frames};

/// Intents per frame and keys per intent.
const PER_FRAME: usize = 16;
const KEYS_PER_INTENT: usize = 4;
/// Keys are drawn from this many (so a window of 65 536 intents has many conflicts).
const KEY_SPACE: u64 = 1 << 18;
/// Clients; nonces are distinct per client.
const CLIENTS: u64 = 64;
/// Timed intents per sample (`E2E_INTENTS` overrides).
const INTENTS: usize = 2 << 20;
/// Frame buffers each loader cycles through.
const BUFFERS: usize = 4096;

fn settings() -> Loaded {
    let mut env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("FPN_")).collect();
    env.push(("FPN_QUIC_ENABLED".into(), "false".into()));
    env.push(("FPN_PROVER_ENABLED".into(), "false".into()));
    let inputs = Inputs::gather(None, env, vec![]).expect("config inputs");
    load(&inputs, &CpuSet::host()).expect("valid settings")
}

/// The pre-encoded frames of one intake, in order; the first `warm` are the warm-up.
struct Feed {
    frames: Arc<Frames>,
    /// Indices into `frames` of this intake's frames.
    mine: Vec<usize>,
    warm: usize,
}

/// Counters the tasks share; each is written by one task.
#[derive(Default)]
struct Progress {
    /// Intents in published windows, and windows published.
    published: AtomicU64,
    windows: AtomicU64,
    full_windows: AtomicU64,
    /// Records answered ok and refused.
    accepted: AtomicU64,
    refused: AtomicU64,
    /// Loaders that handed their first timed frame over.
    started: AtomicU64,
    start_ns: AtomicU64,
    end_ns: AtomicU64,
    done: AtomicBool,
}

fn load_task(
    feed: Feed,
    mut submit: TxLink<Submit>,
    mut buffers: Rx<Vec<u8>>,
    progress: Arc<Progress>,
    warm_total: u64,
    name: String,
) -> RoleSpec {
    RoleSpec::new(name, move |ctx| async move {
        let mut next = 0;
        let mut rx_ns = now_ns();
        while next < feed.mine.len() && !ctx.stop.is_stopped() {
            if next == feed.warm {
                // The timed part starts once every intake's warm-up is published.
                while progress.published.load(Ordering::Acquire) < warm_total && !ctx.stop.is_stopped() {
                    yield_to_executor().await;
                }
                if progress.started.fetch_add(1, Ordering::AcqRel) == 0 {
                    progress.start_ns.store(now_ns(), Ordering::Release);
                }
            }
            if submit.tx.slots_free() == 0 {
                yield_to_executor().await;
                continue;
            }
            let Some(mut buf) = buffers.pop() else {
                yield_to_executor().await;
                continue;
            };
            buf.clear();
            buf.extend_from_slice(feed.frames.frame(feed.mine[next]));
            rx_ns += 1;
            let pushed = submit.tx.try_push(Submit { rx_ns, frame: buf, records: PER_FRAME });
            assert!(pushed.is_ok(), "room was checked");
            next += 1;
            if next % 64 == 0 {
                yield_to_executor().await;
            }
        }
    })
}

fn answers_task(
    mut answers: Vec<RxLink<Answer>>,
    mut buffers: Vec<Tx<Vec<u8>>>,
    progress: Arc<Progress>,
) -> RoleSpec {
    RoleSpec::new("answers", move |ctx| async move {
        let (mut accepted, mut refused) = (0, 0);
        while !ctx.stop.is_stopped() {
            for (i, a) in answers.iter_mut().enumerate() {
                a.rx.drain(4096, |answer| match answer {
                    Answer::Receipt(r) | Answer::Late(r) => {
                        if r.status.is_ok() {
                            accepted += 1
                        } else {
                            refused += 1
                        }
                    }
                    Answer::Deferred { .. } => {}
                    Answer::Done { frame, .. } => {
                        let back = buffers[i].try_push(frame);
                        assert!(back.is_ok(), "the buffer ring holds every buffer");
                    }
                });
            }
            progress.accepted.store(accepted, Ordering::Release);
            progress.refused.store(refused, Ordering::Release);
            yield_to_executor().await;
        }
    })
}

fn results_task(
    mut results: RxLink<ResultMsg>,
    mut back: TxLink<ResultMsg>,
    progress: Arc<Progress>,
    total: u64,
) -> RoleSpec {
    RoleSpec::new("results", move |ctx| async move {
        let (mut published, mut windows, mut full) = (0, 0, 0);
        while !ctx.stop.is_stopped() {
            while let Some(msg) = results.rx.pop() {
                published += msg.window.intents_count as u64;
                windows += 1;
                full += u64::from(msg.window.reason == CloseReason::Full);
                let pushed = back.tx.try_push(msg);
                assert!(pushed.is_ok(), "the pool ring holds every buffer");
            }
            progress.published.store(published, Ordering::Release);
            progress.windows.store(windows, Ordering::Relaxed);
            progress.full_windows.store(full, Ordering::Relaxed);
            if published >= total && !progress.done.load(Ordering::Relaxed) {
                progress.end_ns.store(now_ns(), Ordering::Release);
                progress.done.store(true, Ordering::Release);
            }
            yield_to_executor().await;
        }
    })
}

/// Every intake's frames: frame `f` belongs to client `1 + f % CLIENTS` (`load_frames`) and
/// goes to intake `client % N`; each intake's first frames up to `warm_intents` in total
/// are the warm-up.
fn feeds(frames: &Arc<Frames>, intakes_n: usize, warm_frames: usize) -> Vec<Feed> {
    let mut mine = vec![Vec::new(); intakes_n];
    for f in 0..frames.len() {
        let client = 1 + f as u64 % CLIENTS;
        mine[(client % intakes_n as u64) as usize].push(f);
    }
    mine.into_iter()
        .map(|mine| {
            let warm = mine.iter().take_while(|&&f| f < warm_frames).count();
            Feed { frames: frames.clone(), mine, warm }
        })
        .collect()
}

struct Run {
    elapsed: Duration,
    intents: u64,
}

/// One sample: the daemon's topology on its core map, warm-up, the timed part, stop.
fn run_once(settings: &Settings, frames: &Arc<Frames>, warm_frames: usize) -> Run {
    let c = settings.shard_config();
    let n = c.intakes_n;
    let total = (frames.len() * PER_FRAME) as u64;
    let warm_total = (warm_frames * PER_FRAME) as u64;
    let mut topology = Topology::build(settings, TopologyIo::default()).expect("topology");
    let progress = Arc::new(Progress::default());
    let map = &settings.core_map;
    let cpu = |role: Role| map.cpu_of(role, 0).or_else(|| map.cpu_of(Role::Merger, 0)).expect("a CPU");
    let mut extra = Vec::new();
    let mut answer_rings = Vec::new();
    let mut buffer_txs = Vec::new();
    for (i, feed) in feeds(frames, n, warm_frames).into_iter().enumerate() {
        let (mut buf_tx, buf_rx) = ring::<Vec<u8>>(BUFFERS);
        for _ in 0..BUFFERS {
            assert!(buf_tx.try_push(Vec::with_capacity(2048)).is_ok());
        }
        buffer_txs.push(buf_tx);
        answer_rings.push(topology.links.plain_rx::<Answer>(&format!("intake{i}_answers")));
        let submit = topology.links.plain_tx::<Submit>(&format!("submit_intake{i}"));
        let intake_cpu = map.cpu_of(Role::Intake, i).expect("every intake has a CPU");
        extra.push((
            intake_cpu,
            load_task(feed, submit, buf_rx, progress.clone(), warm_total, format!("load{i}")),
        ));
    }
    extra.push((cpu(Role::Admin), answers_task(answer_rings, buffer_txs, progress.clone())));
    let (results, back) =
        (topology.links.plain_rx("merger_journal"), topology.links.plain_tx("journal_merger"));
    extra.push((cpu(Role::Journal), results_task(results, back, progress.clone(), total)));
    topology.links.assert_all_taken();
    let specs = topology.executor_specs(map, extra);
    let stop = StopFlag::new();
    let executors = exec::start(specs, stop.clone()).expect("executors");
    let deadline = Instant::now() + Duration::from_secs(600);
    while !progress.done.load(Ordering::Acquire) {
        assert!(!stop.is_stopped(), "an executor stopped");
        assert!(Instant::now() < deadline, "not done within 600 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    executors.stop();
    for (name, r) in executors.join() {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let p = &progress;
    let (start, end) = (p.start_ns.load(Ordering::Acquire), p.end_ns.load(Ordering::Acquire));
    let intents = total - warm_total;
    let run = Run { elapsed: Duration::from_nanos(end - start), intents };
    assert_eq!(p.refused.load(Ordering::Acquire), 0, "no record refused");
    if std::env::var_os("E2E_VERBOSE").is_some() {
        eprintln!(
            "e2e: {:.2} M intents/s ({} intents in {:.3} s; {} windows, {} full; {} receipts)",
            intents as f64 / run.elapsed.as_secs_f64() / 1e6,
            intents,
            run.elapsed.as_secs_f64(),
            p.windows.load(Ordering::Relaxed),
            p.full_windows.load(Ordering::Relaxed),
            p.accepted.load(Ordering::Relaxed),
        );
    }
    run
}

fn e2e(c: &mut Criterion) {
    let loaded = settings();
    let settings = loaded.settings.clone();
    let config = settings.shard_config();
    let warm_intents = 2 * config.engine.window.records_max;
    let intents = std::env::var("E2E_INTENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(INTENTS);
    let warm_frames = warm_intents.div_ceil(PER_FRAME);
    let frames_n = warm_frames + intents.div_ceil(PER_FRAME);
    let frames = Arc::new(load_frames(frames_n, PER_FRAME, KEYS_PER_INTENT, KEY_SPACE, CLIENTS));
    if std::env::var_os("E2E_VERBOSE").is_some() {
        eprint!(
            "e2e: {} intake(s), {} shard(s), {} build worker(s) per shard, window {} ms, records_max {}, core map:\n{}",
            config.intakes_n,
            config.shards_n,
            config.workers_per_shard,
            config.engine.window.window_ns / 1_000_000,
            config.engine.window.records_max,
            settings.core_map.explain(&loaded.placement),
        );
    }
    let mut group = c.benchmark_group("e2e");
    group.throughput(Throughput::Elements((intents.div_ceil(PER_FRAME) * PER_FRAME) as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("submit", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let run = run_once(&settings, &frames, warm_frames);
                assert!(run.intents > 0);
                total += run.elapsed;
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, e2e);
criterion_main!(benches);
