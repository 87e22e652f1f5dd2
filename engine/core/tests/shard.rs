//! The sharded engine (intake → builder shards → merger) against the test oracle
//! (`fpn_engine::oracle`, the rules written plainly on `Window`), and against itself under
//! random scheduler interleavings; the offline `Engine` (the same cores in one thread)
//! against the oracle.

use std::collections::{HashMap, HashSet};

use fpn_engine::oracle::OracleEngine;
use fpn_engine::shard::{
    ClosePending, Full, IntakeCore, IntakeSink, Pipeline, PipelineConfig, Route, Router, ShardConfig,
    ToBuilder, ToMerger, WindowClose,
};
use fpn_engine::sim::{SimParams, SplitMix64, random_batch};
use fpn_engine::window::{CloseReason, WindowConfig};
use fpn_engine::{Block, BuilderKind, Engine, EngineConfig, FeeRate, ImprovedConfig, Packer, WindowResult};
use fpn_testkit::{bid_frame, cancel_frame, intent_frame};
use fpn_wire::*;
use proptest::prelude::*;

const MS: u64 = 1_000_000;

/// One input event: at `now`, this frame (and the (client, nonce) and keys of each intent
/// in it).
struct Event {
    now: u64,
    frame: Vec<u8>,
    intents: Vec<((u64, u64), Vec<u64>)>,
}

/// A frame of several intents of one client (so a window can fill up mid-frame).
fn burst_frame(client_id: u64, intents: &[(u64, u64, Vec<u64>)]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, DATAGRAM_FRAME_LEN_MAX);
    for (nonce, profit, keys) in intents {
        w.push_intent(&Intent { client_id, nonce: *nonce, sent_ns: 0, profit: *profit, priority: 0, keys })
            .unwrap();
    }
    w.finish();
    buf
}

/// A random session in the style of `tests/facade.rs`: valid and invalid intents, bids,
/// cancels by seq and nonce, time moving at random.
fn random_events(seed: u64, windows: u64, window_ns: u64, clients: u64) -> Vec<Event> {
    let mut rng = SplitMix64::new(seed);
    let mut now = 0u64;
    let mut events = Vec::new();
    while now < windows * window_ns {
        now += rng.below(window_ns / 12);
        let client = 1 + rng.below(clients);
        let nonce = rng.below(200);
        let keys = |rng: &mut SplitMix64| -> Vec<u64> {
            if rng.below(8) == 0 {
                // Distinct and more than fit in one queue slot (`INLINE_KEYS`): the intent
                // crosses the queues as several slots.
                let (n, start) = (7 + rng.below(18), rng.below(24));
                return (0..n).map(|j| (start + j) % 24).collect();
            }
            let n = 1 + rng.below(4) as usize;
            (0..n).map(|_| rng.below(24)).collect()
        };
        let (frame, intents) = match rng.below(20) {
            0..=10 => {
                let k = keys(&mut rng);
                (intent_frame(client, nonce, rng.below(1_000), &k), vec![((client, nonce), k)])
            }
            11 => {
                let burst: Vec<(u64, u64, Vec<u64>)> = (0..2 + rng.below(6))
                    .map(|j| (nonce + 1000 * j, 1 + rng.below(999), keys(&mut rng)))
                    .collect();
                let intents = burst.iter().map(|(n, _, k)| ((client, *n), k.clone())).collect();
                (burst_frame(client, &burst), intents)
            }
            12..=15 => (bid_frame(client, nonce, rng.below(500), rng.below(3) as u32), Vec::new()),
            16..=17 => (cancel_frame(client, CancelTarget::Nonce(nonce)), Vec::new()),
            _ => (cancel_frame(client, CancelTarget::Seq(rng.below(400))), Vec::new()),
        };
        events.push(Event { now, frame, intents });
    }
    events
}

fn engine_config(records_max: usize, book_bids_max: usize, builder: BuilderKind) -> EngineConfig {
    EngineConfig {
        // 64 keys per window at most: with 48 records, some windows run out of keys first.
        window: WindowConfig {
            window_ns: 5 * MS,
            keys_max: 64,
            ..WindowConfig::with_records_max(records_max)
        },
        book_bids_max,
        builder,
        ..EngineConfig::default()
    }
}

struct Outcome {
    encoded: Vec<u8>,
    receipts: Vec<Receipt>,
    results: Vec<WindowResult>,
    /// Keys of every accepted intent, by seq.
    keys_of: HashMap<u64, Vec<u64>>,
    /// Windows the build workers built (the shards built the rest).
    worker_built: u64,
}

/// Notes the keys of `ev`'s intent if one of `new` (the receipts answered while handling
/// it) accepted it.
fn note_keys(keys_of: &mut HashMap<u64, Vec<u64>>, ev: &Event, new: &[Receipt]) {
    for (pair, keys) in &ev.intents {
        for r in new {
            if r.status.is_ok() && r.for_kind == Some(Kind::Intent) && (r.client_id, r.nonce) == *pair {
                assert!(keys_of.insert(r.seq, keys.clone()).is_none(), "seq {} handed out twice", r.seq);
            }
        }
    }
}

/// The one-thread engines' common API, so one driver runs either.
trait OneThread {
    fn handle_frame(&mut self, now: u64, frame: &[u8], receipt: impl FnMut(Receipt)) -> Result<(), Reason>;
    fn poll_window(&mut self, now: u64) -> Option<&WindowResult>;
    fn drain(&mut self, now: u64) -> &WindowResult;
}

impl OneThread for OracleEngine {
    fn handle_frame(&mut self, now: u64, frame: &[u8], receipt: impl FnMut(Receipt)) -> Result<(), Reason> {
        OracleEngine::handle_frame(self, now, now, frame, receipt)
    }
    fn poll_window(&mut self, now: u64) -> Option<&WindowResult> {
        OracleEngine::poll_window(self, now)
    }
    fn drain(&mut self, now: u64) -> &WindowResult {
        OracleEngine::drain(self, now)
    }
}

impl OneThread for Engine {
    fn handle_frame(&mut self, now: u64, frame: &[u8], receipt: impl FnMut(Receipt)) -> Result<(), Reason> {
        Engine::handle_frame(self, now, now, frame, receipt)
    }
    fn poll_window(&mut self, now: u64) -> Option<&WindowResult> {
        Engine::poll_window(self, now)
    }
    fn drain(&mut self, now: u64) -> &WindowResult {
        Engine::drain(self, now)
    }
}

/// The oracle on `events`.
fn run_engine(config: &EngineConfig, events: &[Event]) -> Outcome {
    run_one_thread(OracleEngine::new(config.clone(), 0).unwrap(), events)
}

fn run_one_thread(mut e: impl OneThread, events: &[Event]) -> Outcome {
    let mut out = Outcome {
        encoded: Vec::new(),
        receipts: Vec::new(),
        results: Vec::new(),
        keys_of: HashMap::new(),
        worker_built: 0,
    };
    let mut now = 0;
    for ev in events {
        now = ev.now;
        let before = out.receipts.len();
        e.handle_frame(now, &ev.frame, |r| out.receipts.push(r)).unwrap();
        note_keys(&mut out.keys_of, ev, &out.receipts[before..]);
        while let Some(r) = e.poll_window(now) {
            r.encode(&mut out.encoded);
            out.results.push(r.clone());
        }
    }
    let r = e.drain(now);
    r.encode(&mut out.encoded);
    out.results.push(r.clone());
    out
}

/// Drives a pipeline. `settle`: run every core to idle after each frame and each clock
/// move (needed to match the engine's receipt order and book count exactly).
fn run_pipeline(config: PipelineConfig, events: &[Event], settle: bool) -> Outcome {
    let mut p = Pipeline::new(config).unwrap();
    let mut now = 0;
    let mut rng = SplitMix64::new(p.window_id() ^ 0x5eed);
    let mut receipts = Vec::new();
    let mut keys_of = HashMap::new();
    for ev in events {
        now = ev.now;
        p.submit(now, now, &ev.frame).unwrap();
        let new = p.take_receipts();
        note_keys(&mut keys_of, ev, &new);
        receipts.extend(new);
        if settle {
            p.run_until_idle();
        } else {
            for _ in 0..rng.below(4) {
                p.step();
            }
        }
        p.advance(now);
        if settle {
            p.run_until_idle();
        }
    }
    p.drain(now);
    let results = p.take_results();
    let mut encoded = Vec::new();
    for r in &results {
        r.encode(&mut encoded);
    }
    receipts.extend(p.take_receipts());
    Outcome { encoded, receipts, results, keys_of, worker_built: p.windows_built_by_workers() }
}

fn pipeline_config(engine: EngineConfig, n: usize, s: usize, queue_len: usize, seed: u64) -> PipelineConfig {
    PipelineConfig {
        shard: ShardConfig::new(engine, n, s),
        queue_len,
        budget_max: 4,
        scheduler_seed: seed,
        start_ns: 0,
    }
}

#[test]
fn one_intake_one_shard_is_the_engine_byte_for_byte() {
    for builder in [BuilderKind::Improved, BuilderKind::Greedy, BuilderKind::Fifo] {
        for seed in 0..12u64 {
            // Small windows (48 records) so some close full; a small book so bids meet BookFull.
            let config = engine_config(48, 4, builder);
            let events = random_events(seed, 14, 5 * MS, 4);
            let want = run_engine(&config, &events);
            let got = run_pipeline(pipeline_config(config, 1, 1, 1 << 12, seed), &events, true);
            assert_eq!(got.receipts.len(), want.receipts.len(), "seed {seed}: receipt count");
            for (k, (a, b)) in got.receipts.iter().zip(&want.receipts).enumerate() {
                assert_eq!(a, b, "{builder:?} seed {seed}: receipt {k} differs");
            }
            assert_eq!(got.results.len(), want.results.len(), "seed {seed}: window count");
            for (a, b) in got.results.iter().zip(&want.results) {
                assert_eq!(a.window, b.window, "{builder:?} seed {seed}: window summary");
                assert_eq!(
                    a.block, b.block,
                    "{builder:?} seed {seed}: block of window {}",
                    a.window.window_id
                );
                assert_eq!(a.clearing.winners, b.clearing.winners, "seed {seed}: winners");
            }
            assert_eq!(got.encoded, want.encoded, "{builder:?} seed {seed}: encoded results differ");
            // The session exercised what it is meant to.
            let reasons: HashSet<_> = want.receipts.iter().filter_map(|r| r.status.err()).collect();
            if seed == 0 {
                assert!(reasons.contains(&Reason::DuplicateNonce) && reasons.contains(&Reason::NotFound));
            }
        }
    }
}

/// The offline engine (the daemon's cores, one intake and one shard, in one thread) is the
/// oracle: same receipts in the same order, same results, byte for byte.
#[test]
fn the_offline_engine_is_the_oracle() {
    for builder in [BuilderKind::Improved, BuilderKind::Greedy, BuilderKind::Fifo] {
        for seed in 0..12u64 {
            let config = engine_config(48, 4, builder);
            let events = random_events(seed, 14, 5 * MS, 4);
            let want = run_engine(&config, &events);
            let got = run_one_thread(Engine::new(config, 0).unwrap(), &events);
            assert_eq!(got.receipts, want.receipts, "{builder:?} seed {seed}: receipts");
            assert_eq!(got.encoded, want.encoded, "{builder:?} seed {seed}: encoded results");
            assert_eq!(got.results.len(), want.results.len(), "{builder:?} seed {seed}: windows");
            for (a, b) in got.results.iter().zip(&want.results) {
                assert_eq!((a.window, &a.block), (b.window, &b.block), "{builder:?} seed {seed}");
            }
        }
    }
}

#[test]
fn the_engine_comparison_covers_full_closes_book_full_and_too_late() {
    let mut reasons = HashSet::new();
    let mut full = 0;
    for seed in 0..12u64 {
        let config = engine_config(48, 4, BuilderKind::Improved);
        let out = run_engine(&config, &random_events(seed, 14, 5 * MS, 4));
        reasons.extend(out.receipts.iter().filter_map(|r| r.status.err()));
        full += out.results.iter().filter(|r| r.window.reason == CloseReason::Full).count();
    }
    for r in [Reason::BookFull, Reason::TooLate, Reason::Overloaded, Reason::DuplicateNonce, Reason::NotFound]
    {
        assert!(reasons.contains(&r), "no {r:?} in the compared sessions");
    }
    assert!(full > 0, "no window closed full");
}

/// What must hold of any run, and the data to compare runs by.
fn check_invariants(label: &str, out: &Outcome) {
    let admitted = out
        .receipts
        .iter()
        .filter(|r| r.status.is_ok() && matches!(r.for_kind, Some(Kind::Intent) | Some(Kind::Bid)))
        .count() as u64;
    let mut windowed = 0u64;
    let mut seen = HashSet::new();
    for (k, r) in out.results.iter().enumerate() {
        let w = &r.window;
        windowed += (w.intents_count + w.bids_count + w.cancelled_count) as u64;
        let b = &r.block;
        assert_eq!(b.window_id, w.window_id, "{label}");
        assert!(b.total >= b.fifo_total, "{label}: surplus < 0");
        assert_eq!(b.entries.iter().map(|e| e.payout).sum::<u64>() + b.fee, b.total, "{label}: balance");
        assert!(b.upper_bound >= b.total, "{label}: bound below total");
        assert_eq!(b.entries.iter().map(|e| e.profit).sum::<u64>(), b.total, "{label}: total");
        if k > 0 {
            assert_eq!(
                w.window_id,
                out.results[k - 1].window.window_id + 1,
                "{label}: window ids contiguous"
            );
        }
        let mut used = HashSet::new();
        for e in &b.entries {
            assert!(seen.insert(e.seq), "{label}: seq {} in two blocks", e.seq);
            let keys =
                out.keys_of.get(&e.seq).unwrap_or_else(|| panic!("{label}: seq {} never accepted", e.seq));
            for key in keys.iter() {
                assert!(used.insert(*key), "{label}: key {key} twice in window {}", w.window_id);
            }
        }
    }
    assert_eq!(windowed, admitted, "{label}: records lost or duplicated");
}

fn sorted_receipts(r: &[Receipt]) -> Vec<String> {
    let mut v: Vec<String> = r.iter().map(|r| format!("{r:?}")).collect();
    v.sort();
    v
}

#[test]
fn any_interleaving_gives_the_same_results() {
    for n in [1usize, 2] {
        for s in [1usize, 2, 3, 4] {
            for seed in 0..4u64 {
                // A book that never fills: BookFull depends on when the merger's counts reach
                // the intakes, which is timing (conservative, never lossy), not input.
                let config = engine_config(48, 1 << 12, BuilderKind::Improved);
                let events = random_events(100 + seed, 10, 5 * MS, 6);
                let first = run_pipeline(pipeline_config(config.clone(), n, s, 1 << 14, 0), &events, false);
                check_invariants(&format!("N={n} S={s} seed {seed}"), &first);
                if s > 1 {
                    // Some published intents really were cross-shard (keys 0..24, up to 4 each).
                    let router = Router::new(s);
                    let cross = first
                        .results
                        .iter()
                        .flat_map(|r| &r.block.entries)
                        .filter(|e| router.route(first.keys_of[&e.seq].iter().copied()) == Route::Cross)
                        .count();
                    assert!(cross > 0, "N={n} S={s} seed {seed}: no cross-shard intent published");
                }
                let mut worker_built = 0;
                for sched in 1..6u64 {
                    // Build workers (0, 1 or 2 per shard) take some windows: the same blocks.
                    let mut pc = pipeline_config(config.clone(), n, s, 1 << 14, sched);
                    pc.shard.workers_per_shard = (sched % 3) as usize;
                    let again = run_pipeline(pc, &events, false);
                    worker_built += again.worker_built;
                    assert_eq!(
                        again.encoded, first.encoded,
                        "N={n} S={s} seed {seed} sched {sched}: results"
                    );
                    assert_eq!(
                        sorted_receipts(&again.receipts),
                        sorted_receipts(&first.receipts),
                        "N={n} S={s} seed {seed} sched {sched}: receipts"
                    );
                }
                assert!(worker_built > 0, "N={n} S={s} seed {seed}: no worker built a window");
            }
        }
    }
}

#[test]
fn tiny_queues_answer_overloaded_and_lose_nothing() {
    let mut overloaded = 0;
    for (n, s) in [(1usize, 1usize), (2, 3), (1, 4)] {
        for seed in 0..4u64 {
            let config = engine_config(48, 64, BuilderKind::Greedy);
            let events = random_events(200 + seed, 8, 5 * MS, 6);
            let mut pc = pipeline_config(config, n, s, 2, seed);
            pc.shard.shard_windows_max = 1;
            let out = run_pipeline(pc, &events, false);
            overloaded += out.receipts.iter().filter(|r| r.status == Err(Reason::Overloaded)).count();
            check_invariants(&format!("tiny N={n} S={s} seed {seed}"), &out);
        }
    }
    assert!(overloaded > 0, "tiny queues never refused anything");
}

#[test]
fn an_overloaded_intent_can_be_retried_with_the_same_nonce() {
    let config = engine_config(1024, 64, BuilderKind::Greedy);
    let mut pc = pipeline_config(config, 1, 2, 1, 9);
    pc.shard.shard_windows_max = 1;
    let mut p = Pipeline::new(pc).unwrap();
    let frames: Vec<Vec<u8>> = (0..6).map(|k| intent_frame(1, k, 10, &[k])).collect();
    for f in &frames {
        p.submit(1, 1, f).unwrap();
    }
    let first = p.take_receipts();
    let refused: Vec<usize> =
        (0..frames.len()).filter(|&k| first[k].status == Err(Reason::Overloaded)).collect();
    assert!(!refused.is_empty(), "queues of one slot must refuse a burst");
    p.run_until_idle();
    for &k in &refused {
        p.submit(2, 2, &frames[k]).unwrap();
        p.run_until_idle();
    }
    let again = p.take_receipts();
    assert!(again.iter().all(|r| r.status.is_ok()), "retries refused: {again:?}");
    p.drain(3);
    let results = p.take_results();
    let total: usize = results.iter().map(|r| r.window.intents_count).sum();
    assert_eq!(total, 6);
}

/// An intake sink whose queues take only what `room` allows.
struct Gate {
    room: usize,
    builder: Vec<Vec<ToBuilder>>,
    merger: Vec<ToMerger>,
}

impl IntakeSink for Gate {
    fn to_builder(&mut self, shard: usize, msg: ToBuilder) -> Result<(), Full<ToBuilder>> {
        if self.room == 0 {
            return Err(Full(msg));
        }
        self.room -= 1;
        self.builder[shard].push(msg);
        Ok(())
    }

    fn to_merger(&mut self, msg: ToMerger) -> Result<(), Full<ToMerger>> {
        if self.room == 0 {
            return Err(Full(msg));
        }
        self.room -= 1;
        self.merger.push(msg);
        Ok(())
    }

    fn builder_room(&self, _shard: usize) -> usize {
        self.room
    }

    fn merger_room(&self) -> usize {
        self.room
    }
}

#[test]
fn close_markers_wait_for_room_and_are_never_dropped() {
    let config = ShardConfig::new(engine_config(64, 64, BuilderKind::Greedy), 1, 2);
    let mut intake = IntakeCore::new(&config, 0, 1);
    let mut gate = Gate { room: 1, builder: vec![Vec::new(), Vec::new()], merger: Vec::new() };
    let close = |id| WindowClose { window_id: id, opened_ns: 0, closed_ns: 1, reason: CloseReason::Drain };
    assert_eq!(intake.handle_window(close(1), &mut gate), Err(ClosePending));
    // While a marker waits, records are refused (nothing of window 2 may overtake it).
    let mut got = Vec::new();
    intake.handle_frame(2, &intent_frame(1, 1, 5, &[1]), &mut gate, |r| got.push(r)).unwrap();
    assert_eq!(got[0].status, Err(Reason::Overloaded));
    // A second close while the first still waits: both stay queued, in order.
    assert_eq!(intake.handle_window(close(2), &mut gate), Err(ClosePending));
    gate.room = 2;
    assert_eq!(intake.poll_pending(&mut gate), Err(ClosePending));
    gate.room = 100;
    assert_eq!(intake.poll_pending(&mut gate), Ok(()));
    for b in &gate.builder {
        assert_eq!(b, &vec![ToBuilder::Close { window_id: 1 }, ToBuilder::Close { window_id: 2 }]);
    }
    assert_eq!(gate.merger, vec![ToMerger::Close(close(1)), ToMerger::Close(close(2))]);
    // And the intake takes records again, in window 3; the refused nonce was not consumed.
    got.clear();
    intake.handle_frame(3, &intent_frame(1, 1, 5, &[1]), &mut gate, |r| got.push(r)).unwrap();
    assert_eq!((got[0].status, got[0].window_id), (Ok(()), 3));
}

#[test]
fn seqs_are_unique_across_intakes_and_increase_per_intake() {
    let config = ShardConfig::new(engine_config(64, 64, BuilderKind::Greedy), 3, 1);
    let mut sink = Gate { room: usize::MAX, builder: vec![Vec::new()], merger: Vec::new() };
    let mut seqs = HashSet::new();
    for i in 0..3 {
        let mut intake = IntakeCore::new(&config, i, 1);
        let mut last = 0;
        for k in 0..10 {
            let mut got = Vec::new();
            intake.handle_frame(1, &intent_frame(1, k, 5, &[k]), &mut sink, |r| got.push(r)).unwrap();
            let seq = got[0].seq;
            assert!(seq > last && (seq - 1) % 3 == i as u64);
            assert!(seqs.insert(seq));
            last = seq;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// With one shard and no cross intents, `pack_merged` on the shard's own selection is
    /// `pack`, field for field.
    #[test]
    fn pack_merged_with_one_shard_is_pack(seed in any::<u64>(), intents in 0usize..120, rate in 0.0f64..1.0) {
        let params = SimParams { intents, keys_min: 1, keys_max: 4, conflict_rate: rate, hot_keys: 16, profit_max: 1_000 };
        let batch = random_batch(seed, &params).unwrap();
        let (records, keys) = (params.intents.max(1), (params.intents * 4).max(64));
        for kind in [BuilderKind::Fifo, BuilderKind::Greedy, BuilderKind::Improved] {
            let fee = FeeRate::from_ppm(123_456).unwrap();
            let mut packer = Packer::new(kind, records, keys, ImprovedConfig::default());
            let mut want = Block::with_capacity(records);
            packer.pack(7, &batch, fee, &mut want);
            let mut shard = Packer::new(kind, records, keys, ImprovedConfig::default());
            let sel = shard.select(&batch).clone();
            let mut merger = Packer::new(kind, records, keys, ImprovedConfig::default());
            let mut got = Block::with_capacity(records);
            merger.pack_merged(7, &batch, &sel.picked, &[], sel.upper_bound, sel.exact, fee, &mut got);
            prop_assert_eq!(&got, &want);
        }
    }
}

mod alloc_free {
    //! The cores do not allocate after construction: intake, builder shards, build workers and merger
    //! driven by hand over preallocated queues, with a counting allocator. Only this test's
    //! thread is counted, and only while `counted` runs, so the other tests are unaffected.

    use fpn_engine::WindowResult;
    use fpn_engine::shard::{
        BoundedQueue, BuildWorker, BuilderShard, Full, IntakeCore, IntakeSink, Merger, MergerOutput,
        ShardConfig, ShardWindow, Sink, Source, ToBuilder, ToMerger, WindowClock,
    };
    use fpn_engine::sim::SplitMix64;
    use fpn_wire::Receipt;

    use super::{BuilderKind, CancelTarget, bid_frame, cancel_frame, engine_config, intent_frame};

    #[global_allocator]
    static GLOBAL: fpn_testkit::Counting = fpn_testkit::Counting;

    use fpn_testkit::counted;

    struct Queues<'a> {
        intake: usize,
        to_builder: &'a mut [Vec<BoundedQueue<ToBuilder>>],
        to_merger: &'a mut [BoundedQueue<ToMerger>],
    }

    impl IntakeSink for Queues<'_> {
        fn to_builder(&mut self, shard: usize, msg: ToBuilder) -> Result<(), Full<ToBuilder>> {
            self.to_builder[shard][self.intake].push(msg)
        }

        fn to_merger(&mut self, msg: ToMerger) -> Result<(), Full<ToMerger>> {
            self.to_merger[self.intake].push(msg)
        }

        fn builder_room(&self, shard: usize) -> usize {
            self.to_builder[shard][self.intake].room()
        }

        fn merger_room(&self) -> usize {
            self.to_merger[self.intake].room()
        }
    }

    struct Out<'a> {
        windows: u64,
        entries: usize,
        receipts: &'a mut Vec<Receipt>,
        book: &'a mut Vec<(usize, usize, u64)>,
        back: &'a mut [BoundedQueue<Box<ShardWindow>>],
    }

    impl MergerOutput for Out<'_> {
        fn window_result(&mut self, result: &WindowResult) {
            self.windows += 1;
            self.entries += result.block.entries.len();
        }

        fn receipt(&mut self, _intake: usize, receipt: Receipt) {
            self.receipts.push(receipt);
        }

        fn book_open(&mut self, intake: usize, open: usize, taken_total: u64) {
            self.book.push((intake, open, taken_total));
        }

        fn return_window(&mut self, shard: usize, w: Box<ShardWindow>) -> Result<(), Full<Box<ShardWindow>>> {
            self.back[shard].push(w)
        }
    }

    #[test]
    fn cores_do_not_allocate_after_construction() {
        // The counter counts.
        let (v, allocs) = counted(|| Vec::<u64>::with_capacity(8));
        assert_eq!((v.capacity() >= 8, allocs), (true, 1));
        let (n, s) = (2usize, 3usize);
        let mut config = ShardConfig::new(engine_config(256, 256, BuilderKind::Improved), n, s);
        config.workers_per_shard = 1;
        let window_ns = config.engine.window.window_ns;
        let mut clock = WindowClock::new(window_ns, 1, 0);
        let mut intakes: Vec<IntakeCore> = (0..n).map(|i| IntakeCore::new(&config, i, 1)).collect();
        let mut builders: Vec<BuilderShard> = (0..s).map(|k| BuilderShard::new(&config, k, 1)).collect();
        let mut merger = Merger::new(&config, 1);
        let mut to_builder: Vec<Vec<BoundedQueue<ToBuilder>>> =
            (0..s).map(|_| (0..n).map(|_| BoundedQueue::new(1024)).collect()).collect();
        let mut to_merger: Vec<BoundedQueue<ToMerger>> = (0..n).map(|_| BoundedQueue::new(1024)).collect();
        let mut shard_out: Vec<BoundedQueue<Box<ShardWindow>>> =
            (0..s).map(|_| BoundedQueue::new(2)).collect();
        let mut back: Vec<BoundedQueue<Box<ShardWindow>>> = (0..s).map(|_| BoundedQueue::new(2)).collect();
        // One build worker per shard, and its queues: `[shard][worker]`.
        let mut workers: Vec<BuildWorker> = (0..s).map(|_| BuildWorker::new(&config)).collect();
        let mut to_worker: Vec<Vec<BoundedQueue<Box<ShardWindow>>>> =
            (0..s).map(|_| vec![BoundedQueue::new(1)]).collect();
        let mut from_worker: Vec<Vec<BoundedQueue<Box<ShardWindow>>>> =
            (0..s).map(|_| vec![BoundedQueue::new(1)]).collect();
        let mut receipts = Vec::with_capacity(1 << 14);
        let mut book = Vec::with_capacity(1 << 14);
        // Frames of 8 windows, built before counting.
        let mut rng = SplitMix64::new(5);
        let windows: Vec<Vec<(u64, Vec<u8>)>> = (0..8u64)
            .map(|w| {
                (0..60u64)
                    .map(|k| {
                        let client = 1 + rng.below(4);
                        let nonce = w * 1000 + k;
                        let frame = match rng.below(10) {
                            0..=6 => {
                                let keys: Vec<u64> = (0..1 + rng.below(3)).map(|_| rng.below(40)).collect();
                                intent_frame(client, nonce, 1 + rng.below(99), &keys)
                            }
                            7..=8 => bid_frame(client, nonce, 1 + rng.below(99), 0),
                            _ => cancel_frame(client, CancelTarget::Nonce(nonce.saturating_sub(3))),
                        };
                        (client, frame)
                    })
                    .collect()
            })
            .collect();
        let mut windows_out = 0;
        let mut run_window = |frames: &[(u64, Vec<u8>)], now: u64| {
            for (client, frame) in frames {
                let i = (*client % n as u64) as usize;
                let mut q = Queues { intake: i, to_builder: &mut to_builder, to_merger: &mut to_merger };
                intakes[i].handle_frame(now, frame, &mut q, |r| receipts.push(r)).unwrap();
            }
            let close = clock.close_now(now, false);
            for (i, intake) in intakes.iter_mut().enumerate() {
                let mut q = Queues { intake: i, to_builder: &mut to_builder, to_merger: &mut to_merger };
                intake.handle_window(close, &mut q).unwrap();
            }
            let mut out =
                Out { windows: 0, entries: 0, receipts: &mut receipts, book: &mut book, back: &mut back };
            for _ in 0..4 {
                for (k, b) in builders.iter_mut().enumerate() {
                    while let Some(w) = out.back[k].pop() {
                        b.handle_returned(w);
                    }
                    // Odd windows take the shard's own build, even ones the worker's.
                    if windows_out % 2 == 1 {
                        b.poll(&mut to_builder[k], &mut shard_out[k], 64);
                    } else {
                        let (to_w, from_w) = (&mut to_worker[k], &mut from_worker[k]);
                        b.poll_with_workers(&mut to_builder[k], &mut shard_out[k], to_w, from_w, 64);
                        workers[k].poll(&mut to_w[0], &mut from_w[0]);
                    }
                }
                merger.poll(&mut to_merger, &mut shard_out, &mut out, 64);
            }
            for &(i, open, taken) in out.book.iter() {
                intakes[i].set_book_open(open, taken);
            }
            out.book.clear();
            windows_out += out.windows;
            assert!(out.windows == 1 && out.entries > 0, "one window, with a block, per round");
        };
        // Warm-up: the first windows touch every buffer once.
        run_window(&windows[0], window_ns);
        run_window(&windows[1], 2 * window_ns);
        let ((), allocs) = counted(|| {
            for (k, frames) in windows[2..].iter().enumerate() {
                run_window(frames, (3 + k as u64) * window_ns);
            }
        });
        assert_eq!(allocs, 0, "the shard cores allocated after construction");
        assert_eq!(windows_out, 8);
        assert!(workers.iter().all(|w| w.windows_built_total() >= 3), "the workers built half the windows");
    }
}
