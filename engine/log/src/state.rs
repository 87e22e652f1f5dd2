//! What each intake's log entries say about its state, kept as the entries go by: its
//! newest closed window, its highest sequence id, its (client, nonce) pairs of the windows
//! a horizon still covers and the nonce high-water marks of the pairs that left it.
//!
//! [`crate::replay::Replayer`] keeps one with the de-duplication horizon, to hand a daemon
//! what it resumes from. The daemon's log role keeps one with a horizon of one window (a
//! window's pairs become marks when it closes) to write each segment's start
//! (`docs/log.md`, "Segment start"): those marks are one above the highest nonce each
//! client had in any closed window before the segment.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchBuffer;
use crate::format::{Entry, MARKS_PER_CHUNK};
use crate::replay::RecoveredIntake;

/// One intake's state (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct IntakeTrack {
    /// The newest window it closed (0: none).
    pub closed: u64,
    pub seq_max: u64,
    /// `(client, nonce, window, seq)` of the windows the horizon may still cover, oldest
    /// first; older ones are folded into `marks`.
    pub pairs: VecDeque<(u64, u64, u64, u64)>,
    /// Per client: one above the highest nonce of its pairs that left the horizon.
    pub marks: HashMap<u64, u64>,
}

impl IntakeTrack {
    /// An accepted intent or bid.
    pub fn note_pair(&mut self, client: u64, nonce: u64, window: u64, seq: u64) {
        self.seq_max = self.seq_max.max(seq);
        self.pairs.push_back((client, nonce, window, seq));
    }

    /// The intake closed `window_id`: pairs the horizon no longer covers once the next
    /// window opens become marks.
    pub fn close(&mut self, window_id: u64, horizon: u64) {
        self.closed = self.closed.max(window_id);
        while self.pairs.front().is_some_and(|p| window_id + 1 - p.2.min(window_id + 1) >= horizon) {
            let (client, nonce, _, _) = self.pairs.pop_front().expect("checked");
            self.raise_mark(client, nonce.saturating_add(1));
        }
    }

    /// Segment-start state.
    pub fn apply_state(&mut self, seq_max: u64, window_closed: u64) {
        self.seq_max = self.seq_max.max(seq_max);
        self.closed = self.closed.max(window_closed);
    }

    pub fn raise_mark(&mut self, client: u64, mark: u64) {
        let m = self.marks.entry(client).or_insert(0);
        *m = (*m).max(mark);
    }

    /// What the intake resumes from when window `next` opens.
    pub fn recovered(&self, next: u64, horizon: u64) -> RecoveredIntake {
        RecoveredIntake {
            seq_max: self.seq_max,
            pairs: self.pairs.iter().copied().filter(|p| next - p.2.min(next) < horizon).collect(),
            marks: self.marks.iter().map(|(&c, &m)| (c, m)).collect(),
        }
    }
}

/// Every intake's [`IntakeTrack`], fed entries in log order.
#[derive(Debug, Clone)]
pub struct LogState {
    pub intakes: Vec<IntakeTrack>,
    horizon: u64,
}

impl LogState {
    pub fn new(intakes_n: usize, horizon: u64) -> LogState {
        LogState { intakes: vec![IntakeTrack::default(); intakes_n], horizon }
    }

    /// With room for `pairs` pairs and `clients` marks per intake, so feeding entries does
    /// not allocate while they fit.
    pub fn with_capacity(intakes_n: usize, horizon: u64, pairs: usize, clients: usize) -> LogState {
        let track = || IntakeTrack {
            pairs: VecDeque::with_capacity(pairs),
            marks: HashMap::with_capacity(clients),
            ..IntakeTrack::default()
        };
        LogState { intakes: (0..intakes_n).map(|_| track()).collect(), horizon }
    }

    /// Takes the state a daemon resumed with (window `closed` the newest closed).
    pub fn restore(&mut self, intakes: &[RecoveredIntake], closed: u64) {
        for (t, r) in self.intakes.iter_mut().zip(intakes) {
            t.closed = closed;
            t.seq_max = r.seq_max;
            t.pairs.clear();
            t.pairs.extend(r.pairs.iter().copied());
            t.marks.clear();
            t.marks.extend(r.marks.iter().copied());
        }
        let horizon = self.horizon;
        for t in &mut self.intakes {
            t.close(closed, horizon);
        }
    }

    pub fn horizon(&self) -> u64 {
        self.horizon
    }

    /// Takes one entry, in log order.
    pub fn entry(&mut self, e: &Entry<'_>) {
        match *e {
            Entry::Intent { intake, window_id, seq, client_id, nonce, .. }
            | Entry::Bid { intake, window_id, seq, client_id, nonce, .. } => {
                self.intakes[intake as usize].note_pair(client_id, nonce, window_id, seq)
            }
            Entry::Close { intake, window_id, .. } => {
                self.intakes[intake as usize].close(window_id, self.horizon)
            }
            Entry::IntakeState { intake, seq_max, window_closed } => {
                self.intakes[intake as usize].apply_state(seq_max, window_closed)
            }
            Entry::HighWater { intake, marks } => {
                for (client, mark) in marks.iter() {
                    self.intakes[intake as usize].raise_mark(client, mark);
                }
            }
            Entry::Cancel { .. } | Entry::BookCancel { .. } => {}
        }
    }

    /// The first window every intake still has open: one after the oldest newest close.
    pub fn open_window(&self) -> u64 {
        self.intakes.iter().map(|i| i.closed).min().unwrap_or(0) + 1
    }

    /// A segment's start: each intake's state and high-water marks, as sealed batches of at
    /// most `batch_bytes` of entries each, appended to `out`. The pairs the horizon still
    /// covers are not written: they are in the segments a reader must keep (`docs/log.md`,
    /// "Retention").
    pub fn write_start(&self, batch_bytes: usize, out: &mut Vec<u8>) {
        let mut batch = BatchBuffer::with_capacity(batch_bytes);
        let flush = |batch: &mut BatchBuffer, out: &mut Vec<u8>| {
            if !batch.is_empty() {
                out.extend_from_slice(batch.seal());
                batch.clear();
            }
        };
        let mut chunk = Vec::with_capacity(MARKS_PER_CHUNK);
        for (i, t) in self.intakes.iter().enumerate() {
            let i = i as u8;
            if batch.payload_len() >= batch_bytes {
                flush(&mut batch, out);
            }
            batch.push(|w| w.intake_state(i, t.seq_max, t.closed));
            let mut marks: Vec<(u64, u64)> = t.marks.iter().map(|(&c, &m)| (c, m)).collect();
            marks.sort_unstable();
            for part in marks.chunks(MARKS_PER_CHUNK) {
                chunk.clear();
                chunk.extend_from_slice(part);
                if batch.payload_len() >= batch_bytes {
                    flush(&mut batch, out);
                }
                batch.push(|w| w.high_water(i, &chunk));
            }
        }
        flush(&mut batch, out);
    }
}
