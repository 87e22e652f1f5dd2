//! A live sharded engine (intakes, builder shards, merger) whose intakes' messages are logged
//! as the daemon logs them; the log replayed through new cores must give the same windows
//! byte for byte and the same state, whole or cut at any entry (a crash).

use std::collections::VecDeque;

use fpn_engine::shard::{
    Full, IntakeCore, IntakeSink, Merger, MergerOutput, ShardConfig, ShardWindow, Sink, Source, ToBuilder,
    ToMerger,
};
use fpn_engine::sim::SplitMix64;
use fpn_engine::window::WindowConfig;
use fpn_engine::{BuilderShard, EngineConfig, WindowClock, WindowResult};
use fpn_log::format::SegmentHeader;
use fpn_log::replay::Replayer;
use fpn_log::{BatchBuffer, Encoder, End, LogMsg, scan_segment};
use fpn_testkit::{bid_frame, cancel_frame, intent_frame};
use fpn_wire::{CancelTarget, Receipt};

const MS: u64 = 1_000_000;

struct Q<T>(VecDeque<T>);

impl<T> Default for Q<T> {
    fn default() -> Q<T> {
        Q(VecDeque::new())
    }
}

impl<T> Sink<T> for Q<T> {
    fn push(&mut self, v: T) -> Result<(), Full<T>> {
        self.0.push_back(v);
        Ok(())
    }
}

impl<T> Source<T> for Q<T> {
    fn pop(&mut self) -> Option<T> {
        self.0.pop_front()
    }
}

/// One intake's outputs, logged as the daemon's sink logs them.
struct Logged<'a> {
    to_builder: &'a mut [Vec<Q<ToBuilder>>],
    to_merger: &'a mut Q<ToMerger>,
    intake: usize,
    log: &'a mut Vec<(usize, LogMsg)>,
}

impl IntakeSink for Logged<'_> {
    fn to_builder(&mut self, shard: usize, msg: ToBuilder) -> Result<(), Full<ToBuilder>> {
        self.to_builder[shard][self.intake].push(msg)?;
        let m = LogMsg::Builder { shard: shard as u16, msg };
        if m.is_logged() {
            self.log.push((self.intake, m));
        }
        Ok(())
    }

    fn to_merger(&mut self, msg: ToMerger) -> Result<(), Full<ToMerger>> {
        self.to_merger.push(msg)?;
        self.log.push((self.intake, LogMsg::Merger(msg)));
        Ok(())
    }

    fn builder_room(&self, _: usize) -> usize {
        usize::MAX
    }

    fn merger_room(&self) -> usize {
        usize::MAX
    }
}

struct Out {
    results: Vec<WindowResult>,
    book: Vec<(usize, usize, u64)>,
    back: Vec<Q<Box<ShardWindow>>>,
}

impl MergerOutput for Out {
    fn window_result(&mut self, r: &WindowResult) {
        self.results.push(r.clone());
    }
    fn receipt(&mut self, _: usize, _: Receipt) {}
    fn book_open(&mut self, i: usize, open: usize, taken: u64) {
        self.book.push((i, open, taken));
    }
    fn return_window(&mut self, s: usize, w: Box<ShardWindow>) -> Result<(), Full<Box<ShardWindow>>> {
        self.back[s].push(w)
    }
}

fn config(intakes_n: usize, shards_n: usize) -> ShardConfig {
    let engine = EngineConfig {
        window: WindowConfig {
            window_ns: 5 * MS,
            keys_max: 256,
            dedup_horizon_windows: 3,
            ..WindowConfig::with_records_max(32)
        },
        book_bids_max: 8,
        ..EngineConfig::default()
    };
    ShardConfig::new(engine, intakes_n, shards_n)
}

/// A random session through a live engine: its results, its log, its final book.
fn live(seed: u64, c: &ShardConfig) -> (Vec<WindowResult>, Vec<(usize, LogMsg)>, Vec<u64>) {
    let (n, s) = (c.intakes_n, c.shards_n);
    let mut intakes: Vec<IntakeCore> = (0..n).map(|i| IntakeCore::new(c, i, 1)).collect();
    let mut builders: Vec<BuilderShard> = (0..s).map(|k| BuilderShard::new(c, k, 1)).collect();
    let mut merger = Merger::new(c, 1);
    let mut to_builder: Vec<Vec<Q<ToBuilder>>> =
        (0..s).map(|_| (0..n).map(|_| Q::default()).collect()).collect();
    let mut to_merger: Vec<Q<ToMerger>> = (0..n).map(|_| Q::default()).collect();
    let mut shard_out: Vec<Q<Box<ShardWindow>>> = (0..s).map(|_| Q::default()).collect();
    let mut out = Out { results: Vec::new(), book: Vec::new(), back: (0..s).map(|_| Q::default()).collect() };
    let mut clock = WindowClock::new(c.engine.window.window_ns, 1, 0);
    let mut log = Vec::new();
    let mut rng = SplitMix64::new(seed);
    let mut now = 0;
    let pump = |builders: &mut Vec<BuilderShard>,
                merger: &mut Merger,
                intakes: &mut Vec<IntakeCore>,
                to_builder: &mut Vec<Vec<Q<ToBuilder>>>,
                to_merger: &mut Vec<Q<ToMerger>>,
                shard_out: &mut Vec<Q<Box<ShardWindow>>>,
                out: &mut Out| loop {
        let mut progress = false;
        for (k, b) in builders.iter_mut().enumerate() {
            while let Some(w) = out.back[k].pop() {
                b.handle_returned(w);
                progress = true;
            }
            progress |= b.poll(&mut to_builder[k], &mut shard_out[k], usize::MAX);
        }
        progress |= merger.poll(to_merger, shard_out, out, usize::MAX);
        for (i, open, taken) in out.book.drain(..) {
            intakes[i].set_book_open(open, taken);
        }
        if !progress {
            return;
        }
    };
    for _ in 0..600 {
        now += rng.below(MS);
        let client = 1 + rng.below(6);
        let i = (client % n as u64) as usize;
        let nonce = 1 + rng.below(120);
        let frame = match rng.below(10) {
            0..=5 => {
                let k = 1 + rng.below(9) as usize;
                let keys: Vec<u64> = (0..k as u64).map(|j| (rng.below(40) + j * 41) % 400).collect();
                let mut keys = keys;
                keys.sort_unstable();
                keys.dedup();
                intent_frame(client, nonce, 1 + rng.below(900), &keys)
            }
            6..=7 => bid_frame(client, nonce, 1 + rng.below(500), rng.below(3) as u32),
            8 => cancel_frame(client, CancelTarget::Nonce(1 + rng.below(120))),
            _ => cancel_frame(client, CancelTarget::Seq(1 + rng.below(200))),
        };
        let mut sink =
            Logged { to_builder: &mut to_builder, to_merger: &mut to_merger[i], intake: i, log: &mut log };
        let _ = intakes[i].handle_frame(now, &frame, &mut sink, |_| {});
        pump(
            &mut builders,
            &mut merger,
            &mut intakes,
            &mut to_builder,
            &mut to_merger,
            &mut shard_out,
            &mut out,
        );
        let full = intakes.iter().any(IntakeCore::wants_close);
        if let Some(close) = clock.poll(now, full) {
            for (i, intake) in intakes.iter_mut().enumerate() {
                let mut sink = Logged {
                    to_builder: &mut to_builder,
                    to_merger: &mut to_merger[i],
                    intake: i,
                    log: &mut log,
                };
                assert!(intake.handle_window(close, &mut sink).is_ok());
            }
            pump(
                &mut builders,
                &mut merger,
                &mut intakes,
                &mut to_builder,
                &mut to_merger,
                &mut shard_out,
                &mut out,
            );
        }
    }
    let book = merger.book().bids().iter().map(|b| b.seq).collect();
    (out.results, log, book)
}

/// The log's messages as one segment's bytes, in batches of up to `batch_entries`.
fn segment(c: &ShardConfig, log: &[(usize, LogMsg)], batch_entries: u32) -> Vec<u8> {
    let header =
        SegmentHeader { index: 1, created_ns: 0, intakes_n: c.intakes_n as u16, shards_n: c.shards_n as u16 };
    let mut bytes = header.encode().to_vec();
    let mut enc = Encoder::new(c.intakes_n);
    let mut batch = BatchBuffer::with_capacity(1 << 16);
    for (i, m) in log {
        enc.push(*i, m, &mut batch);
        if batch.entries() >= batch_entries && !(0..c.intakes_n).any(|i| enc.is_partial(i)) {
            bytes.extend_from_slice(batch.seal());
            batch.clear();
        }
    }
    if !batch.is_empty() {
        bytes.extend_from_slice(batch.seal());
    }
    bytes
}

fn encoded(r: &WindowResult) -> Vec<u8> {
    let mut b = Vec::new();
    r.encode(&mut b);
    b
}

#[test]
fn a_whole_log_replays_to_the_same_windows_and_book() {
    for (seed, n, s) in [(1, 1, 1), (2, 1, 3), (3, 2, 2), (4, 3, 1), (5, 2, 3)] {
        let c = config(n, s);
        let (results, log, book) = live(seed, &c);
        assert!(results.len() > 20, "seed {seed}: a session of many windows");
        let bytes = segment(&c, &log, 7);
        let mut r = Replayer::new(c.clone(), 1);
        let scanned = scan_segment(&bytes, true, |_, e| r.entry(e)).unwrap();
        assert_eq!(scanned.end, End::Clean);
        let got = r.take_results();
        assert_eq!(got.len(), results.len(), "seed {seed}: windows");
        for (a, b) in got.iter().zip(&results) {
            assert_eq!(encoded(a), encoded(b), "seed {seed}: window {}", b.window.window_id);
            assert_eq!(a.window, b.window, "seed {seed}");
        }
        let recovered = r.finish(u64::MAX / 2);
        let mut got_book: Vec<u64> = recovered.book.iter().map(|b| b.seq).collect();
        let mut want_book = book.clone();
        got_book.sort_unstable();
        want_book.sort_unstable();
        assert_eq!(got_book, want_book, "seed {seed}: the book");
    }
}

#[test]
fn a_log_cut_anywhere_recovers_every_closed_window_and_closes_the_open_one() {
    let c = config(2, 2);
    let (results, log, _) = live(9, &c);
    let mut rng = SplitMix64::new(99);
    for _ in 0..40 {
        let cut = 1 + rng.below(log.len() as u64) as usize;
        let bytes = segment(&c, &log[..cut], 1);
        let mut r = Replayer::new(c.clone(), 1);
        // The intents and bids that made it into the log (an intent cut between its slots
        // did not: the log role writes whole entries).
        let mut logged_seqs = Vec::new();
        scan_segment(&bytes, true, |_, e| {
            match e {
                fpn_log::Entry::Intent { intake, seq, .. } | fpn_log::Entry::Bid { intake, seq, .. } => {
                    logged_seqs.push((intake as usize, seq))
                }
                _ => {}
            }
            r.entry(e)
        })
        .unwrap();
        let mut got = r.take_results();
        let recovered = r.finish(u64::MAX / 2);
        got.extend(recovered.results.iter().cloned());
        // Every window closed by every intake in the prefix comes out as it was live.
        for g in &got {
            let live = results.iter().find(|x| x.window.window_id == g.window.window_id);
            match live {
                Some(l)
                    if recovered.closes.iter().all(|(_, close)| close.window_id != g.window.window_id) =>
                {
                    assert_eq!(encoded(g), encoded(l), "cut {cut}: window {}", g.window.window_id)
                }
                _ => {} // closed by recovery: its own close
            }
        }
        let ids: Vec<u64> = got.iter().map(|g| g.window.window_id).collect();
        assert_eq!(
            ids,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "cut {cut}: windows in order, none missing"
        );
        assert_eq!(recovered.next_window_id, ids.len() as u64 + 1, "cut {cut}");
        // Sequence ids continue after the highest logged.
        for (i, seq) in logged_seqs {
            assert!(
                recovered.intakes[i].seq_max >= seq,
                "cut {cut}: intake {i} seq {seq} > {}",
                recovered.intakes[i].seq_max
            );
        }
    }
}
