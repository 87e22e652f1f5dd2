//! The log's entries back through the engine's own cores (`docs/log.md`, "Recovery" and
//! "Replay").
//!
//! [`Replayer`] takes the entries of the retained segments in log order. Each intake's
//! entries are what that intake sent its builder shards and the merger, in its order, with
//! its window closes; the sharded engine's results depend on nothing else
//! (`docs/sharding.md`), so feeding them to new `BuilderShard`s and a new `Merger` gives the
//! same windows, byte for byte. Windows before `build_from` are replayed for their state
//! only (bids, book cancels and closes: the auction book; intents and their cancels are
//! skipped, which is what makes a restart fast); windows from `build_from` on are built and
//! come out as [`WindowResult`]s.
//!
//! [`Replayer::finish`] closes what the crash left open (with the closes other intakes
//! logged for the same window, or a new `Drain` close for the open window, which the caller
//! must log before publishing anything) and hands back what a daemon resumes from: the next
//! window id, each intake's last sequence id, its de-duplication pairs of the last horizon
//! and its nonce high-water marks, and the book's open bids.
//!
//! Replay is offline: its queues grow with a window's records (one window at a time), it
//! allocates freely, and it reads no clock (the caller passes `now_ns`).

use std::collections::VecDeque;

use fpn_engine::auction::Bid;
use fpn_engine::shard::{
    BookCancel, BuilderShard, Full, IntentMsg, Merger, MergerOutput, ShardConfig, ShardWindow, Sink, Source,
    ToBuilder, ToMerger,
};
use fpn_engine::{CloseReason, IntentMeta, PendingBid, WindowClose, WindowResult};
use fpn_wire::{Kind, Receipt};

use crate::format::{DEST_MERGER, Entry};
use crate::state::IntakeTrack;

/// An unbounded FIFO: replay holds one window's messages at a time.
#[derive(Debug)]
struct Queue<T>(VecDeque<T>);

impl<T> Default for Queue<T> {
    fn default() -> Queue<T> {
        Queue(VecDeque::new())
    }
}

impl<T> Sink<T> for Queue<T> {
    fn push(&mut self, value: T) -> Result<(), Full<T>> {
        self.0.push_back(value);
        Ok(())
    }
}

impl<T> Source<T> for Queue<T> {
    fn pop(&mut self) -> Option<T> {
        self.0.pop_front()
    }
}

/// The merger's outputs during replay.
#[derive(Debug, Default)]
struct Outputs {
    results: Vec<WindowResult>,
    build_from: u64,
    shard_back: Vec<Queue<Box<ShardWindow>>>,
}

impl MergerOutput for Outputs {
    fn window_result(&mut self, result: &WindowResult) {
        if result.window.window_id >= self.build_from {
            self.results.push(result.clone());
        }
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

/// One intake's progress through the log.
#[derive(Debug, Clone, Default)]
struct Intake {
    track: IntakeTrack,
    /// Its newest close.
    last_close: Option<WindowClose>,
    /// Whether it logged anything for the window after its newest close.
    open_entries: bool,
}

/// Closes replayed, kept while some intake may still need them (see [`Replayer::finish`]).
type Closes = std::collections::BTreeMap<u64, WindowClose>;

/// What a daemon resumes from (see the module doc).
#[derive(Debug, Clone)]
pub struct Recovered {
    /// Windows rebuilt from `build_from` on, in window order: the caller publishes them as
    /// recovered (the ones it has not published yet).
    pub results: Vec<WindowResult>,
    /// Closes recovery made for windows the crash left open, per intake: log them before
    /// publishing anything, so a second recovery closes those windows the same way.
    pub closes: Vec<(usize, WindowClose)>,
    /// The first window id the resumed daemon opens.
    pub next_window_id: u64,
    /// Per intake.
    pub intakes: Vec<RecoveredIntake>,
    /// The auction book's open bids.
    pub book: Vec<Bid>,
}

/// One intake's state to resume from ([`fpn_engine::shard::IntakeCore::restore`]).
#[derive(Debug, Clone, Default)]
pub struct RecoveredIntake {
    pub seq_max: u64,
    /// `(client, nonce, window, seq)`, oldest window first.
    pub pairs: Vec<(u64, u64, u64, u64)>,
    pub marks: Vec<(u64, u64)>,
}

/// See the module doc.
#[derive(Debug)]
pub struct Replayer {
    config: ShardConfig,
    horizon: u64,
    /// The first window replayed (entries of earlier windows only feed the state), set by
    /// the first entry that is not segment-start state.
    first_window: Option<u64>,
    build_from: u64,
    builders: Vec<BuilderShard>,
    merger: Option<Merger>,
    /// `[shard][intake]`.
    to_builder: Vec<Vec<Queue<ToBuilder>>>,
    to_merger: Vec<Queue<ToMerger>>,
    shard_out: Vec<Queue<Box<ShardWindow>>>,
    out: Outputs,
    intakes: Vec<Intake>,
    closes: Closes,
}

impl Replayer {
    /// A replay of a log written by `config`'s intakes and shards (its `intakes_n` and
    /// `shards_n` must be the log's). Windows from `build_from` on are built.
    pub fn new(config: ShardConfig, build_from: u64) -> Replayer {
        config.validate().expect("a valid shard configuration");
        let (n, s) = (config.intakes_n, config.shards_n);
        Replayer {
            horizon: u64::from(config.engine.window.dedup_horizon_windows),
            first_window: None,
            build_from,
            builders: Vec::new(),
            merger: None,
            to_builder: (0..s).map(|_| (0..n).map(|_| Queue::default()).collect()).collect(),
            to_merger: (0..n).map(|_| Queue::default()).collect(),
            shard_out: (0..s).map(|_| Queue::default()).collect(),
            out: Outputs {
                results: Vec::new(),
                build_from,
                shard_back: (0..s).map(|_| Queue::default()).collect(),
            },
            intakes: vec![Intake::default(); n],
            closes: Closes::new(),
            config,
        }
    }

    /// The first window this replay rebuilds, once known.
    pub fn first_window(&self) -> Option<u64> {
        self.first_window
    }

    /// Starts the cores at the first window every intake has all of: one after the newest
    /// window any intake closed before the first replayed segment.
    fn start(&mut self) -> u64 {
        if let Some(w) = self.first_window {
            return w;
        }
        let first = self.intakes.iter().map(|i| i.track.closed).max().unwrap_or(0) + 1;
        self.builders =
            (0..self.config.shards_n).map(|k| BuilderShard::new(&self.config, k, first)).collect();
        self.merger = Some(Merger::new(&self.config, first));
        self.first_window = Some(first);
        first
    }

    /// Takes one entry, in log order.
    pub fn entry(&mut self, e: Entry<'_>) {
        match e {
            // Segment-start state matters only before the first replayed segment: later ones
            // repeat what the entries before them said (their marks more coarsely).
            Entry::IntakeState { .. } | Entry::HighWater { .. } if self.first_window.is_some() => {}
            Entry::IntakeState { intake, seq_max, window_closed } => {
                self.intakes[intake as usize].track.apply_state(seq_max, window_closed)
            }
            Entry::HighWater { intake, marks } => {
                let track = &mut self.intakes[intake as usize].track;
                for (client, mark) in marks.iter() {
                    track.raise_mark(client, mark);
                }
            }
            _ => self.input(e),
        }
    }

    fn input(&mut self, e: Entry<'_>) {
        let first = self.start();
        match e {
            Entry::Intent {
                intake,
                dest,
                window_id,
                seq,
                client_id,
                nonce,
                profit,
                priority,
                rx_ns,
                keys,
            } => {
                self.note_pair(intake as usize, client_id, nonce, window_id, seq);
                if window_id < first.max(self.build_from) {
                    return;
                }
                let meta = IntentMeta { seq, client_id, nonce, profit, priority, rx_ns };
                let msg = IntentMsg::new(window_id, meta, keys.iter());
                let i = intake as usize;
                if dest == DEST_MERGER {
                    self.to_merger[i].0.push_back(ToMerger::Cross(msg));
                    self.to_merger[i].0.extend(IntentMsg::more(keys.iter()).map(ToMerger::More));
                } else {
                    let q = &mut self.to_builder[dest as usize][i];
                    q.0.push_back(ToBuilder::Intent(msg));
                    q.0.extend(IntentMsg::more(keys.iter()).map(ToBuilder::More));
                }
            }
            Entry::Bid { intake, window_id, seq, client_id, nonce, amount, priority, rx_ns } => {
                self.note_pair(intake as usize, client_id, nonce, window_id, seq);
                if window_id < first {
                    return;
                }
                let bid = PendingBid { seq, client_id, nonce, amount, priority, rx_ns };
                self.to_merger[intake as usize].0.push_back(ToMerger::Bid { window_id, bid });
            }
            Entry::Cancel { intake, dest, window_id, seq } => {
                self.intakes[intake as usize].open_entries = true;
                let i = intake as usize;
                if dest == DEST_MERGER {
                    if window_id >= first {
                        self.to_merger[i].0.push_back(ToMerger::CancelPending { window_id, seq });
                    }
                } else if window_id >= first.max(self.build_from) {
                    self.to_builder[dest as usize][i].0.push_back(ToBuilder::Cancel { window_id, seq });
                }
            }
            Entry::BookCancel {
                intake,
                window_id,
                client_id,
                by_nonce,
                target,
                too_late_if_absent,
                rx_ns,
            } => {
                self.intakes[intake as usize].open_entries = true;
                if window_id < first {
                    return;
                }
                let receipt = Receipt {
                    client_id,
                    nonce: if by_nonce { target } else { 0 },
                    seq: if by_nonce { 0 } else { target },
                    window_id,
                    rx_ns,
                    status: Ok(()),
                    for_kind: Some(Kind::Cancel),
                };
                let c = BookCancel { client_id, by_nonce, target, too_late_if_absent, receipt };
                self.to_merger[intake as usize].0.push_back(ToMerger::CancelBook(c));
            }
            Entry::Close { intake, window_id, opened_ns, closed_ns, reason } => {
                let close = WindowClose { window_id, opened_ns, closed_ns, reason };
                self.close(intake as usize, close);
            }
            Entry::IntakeState { .. } | Entry::HighWater { .. } => unreachable!("segment-start state"),
        }
    }

    fn note_pair(&mut self, intake: usize, client: u64, nonce: u64, window: u64, seq: u64) {
        let i = &mut self.intakes[intake];
        i.open_entries = true;
        i.track.note_pair(client, nonce, window, seq);
    }

    fn close(&mut self, intake: usize, close: WindowClose) {
        let first = self.start();
        let i = &mut self.intakes[intake];
        assert!(close.window_id > i.track.closed, "intake {intake} closes window {} twice", close.window_id);
        i.track.close(close.window_id, self.horizon);
        i.last_close = Some(close);
        i.open_entries = false;
        self.closes.insert(close.window_id, close);
        let behind = self.intakes.iter().map(|i| i.track.closed).min().unwrap_or(0);
        while self.closes.first_key_value().is_some_and(|(&w, _)| w <= behind) && self.closes.len() > 1 {
            self.closes.pop_first();
        }
        if close.window_id < first {
            return;
        }
        for k in 0..self.config.shards_n {
            self.to_builder[k][intake].0.push_back(ToBuilder::Close { window_id: close.window_id });
        }
        self.to_merger[intake].0.push_back(ToMerger::Close(close));
        self.pump();
    }

    /// Runs the builders and the merger until they wait for input.
    fn pump(&mut self) {
        let Some(merger) = self.merger.as_mut() else { return };
        loop {
            let mut progress = false;
            for (k, b) in self.builders.iter_mut().enumerate() {
                while let Some(w) = self.out.shard_back[k].pop() {
                    b.handle_returned(w);
                    progress = true;
                }
                progress |= b.poll(&mut self.to_builder[k], &mut self.shard_out[k], usize::MAX);
            }
            progress |= merger.poll(&mut self.to_merger, &mut self.shard_out, &mut self.out, usize::MAX);
            if !progress {
                return;
            }
        }
    }

    /// Windows rebuilt so far (and forgets them).
    pub fn take_results(&mut self) -> Vec<WindowResult> {
        std::mem::take(&mut self.out.results)
    }

    /// Closes what the crash left open and returns the state to resume from (see the module
    /// doc). `now_ns` closes the window that was open at the crash, if anything was logged
    /// in it; it is never before that window opened.
    pub fn finish(mut self, now_ns: u64) -> Recovered {
        let first = self.start();
        let newest = self.intakes.iter().map(|i| i.track.closed).max().unwrap_or(0);
        // Every window up to `newest` was closed by some intake: an intake behind gets the
        // closes it missed, in order, the same ones the others logged.
        let mut closes = Vec::new();
        let logged = self.closes.clone();
        for intake in 0..self.intakes.len() {
            while self.intakes[intake].track.closed < newest {
                let w = self.intakes[intake].track.closed + 1;
                let close = match logged.get(&w) {
                    Some(&c) => c,
                    None => {
                        // No intake's close of `w` is left in the log (it was in a deleted
                        // segment: all of `w` was journaled). Close it as drained.
                        let opened = self.intakes[intake].last_close.map_or(0, |c| c.closed_ns);
                        WindowClose {
                            window_id: w,
                            opened_ns: opened,
                            closed_ns: opened,
                            reason: CloseReason::Drain,
                        }
                    }
                };
                closes.push((intake, close));
                self.close(intake, close);
            }
        }
        // The window open at the crash: closed now if anything was logged in it.
        let open = newest + 1;
        let mut next = open;
        if self.intakes.iter().any(|i| i.open_entries) {
            let opened = logged.get(&newest).map_or(0, |c| c.closed_ns);
            let close = WindowClose {
                window_id: open,
                opened_ns: opened,
                closed_ns: now_ns.max(opened),
                reason: CloseReason::Drain,
            };
            for intake in 0..self.intakes.len() {
                closes.push((intake, close));
                self.close(intake, close);
            }
            next = open + 1;
        }
        debug_assert!(next >= first);
        let horizon = self.horizon;
        let intakes = self.intakes.iter().map(|i| i.track.recovered(next, horizon)).collect();
        let book = self.merger.as_ref().map(|m| m.book().bids().to_vec()).unwrap_or_default();
        Recovered {
            results: std::mem::take(&mut self.out.results),
            closes,
            next_window_id: next,
            intakes,
            book,
        }
    }
}
