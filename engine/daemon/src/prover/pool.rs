//! The prover pool's scheduling, sans-IO: which windows are proven, together or alone, and
//! which are skipped. No thread, no clock, no proving: the dispatcher role
//! (`run/prover.rs`) drives it, and tests drive it with a fake prover.
//!
//! Call order: [`PoolCore::handle_window`] for each window result, in window order (a gap
//! in the ids is a window lost on a full ring); [`PoolCore::poll_event`] until `None` to
//! learn each window's fate; [`PoolCore::poll_span`] whenever a worker is free.
//!
//! Every window handed in ends in exactly one of: [`PoolEvent::Empty`] (nothing to prove),
//! [`PoolEvent::Skipped`], or one [`Span`] returned by `poll_span`. `Queued` comes first for
//! the windows that wait.

use std::collections::VecDeque;

use fpn_prover::{BLOCK_ENTRIES_MAX, ClearingWitness, SPAN_WINDOWS_MAX, WINNERS_MAX};

/// What the pool does when windows arrive faster than the workers prove them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A free worker proves the oldest queued windows as one span of at most `span_max`
    /// windows (`docs/proofs.md`, "Spans").
    Coalesce { span_max: usize },
    /// A free worker proves the newest queued window; the older ones are skipped.
    Skip,
}

/// Why a window gets no proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The queue was full when a newer window arrived; the oldest queued one made room.
    QueueFull,
    /// `skip` mode: a newer window was taken instead.
    Superseded,
    /// More entries or winners than the circuit holds.
    TooLarge,
    /// The window's result could not be turned into a witness.
    Unprovable,
    /// The journal → prover ring was full: the window never reached the pool.
    RingFull,
}

impl SkipReason {
    pub const ALL: [SkipReason; 5] = [
        SkipReason::QueueFull,
        SkipReason::Superseded,
        SkipReason::TooLarge,
        SkipReason::Unprovable,
        SkipReason::RingFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::QueueFull => "queue_full",
            SkipReason::Superseded => "superseded",
            SkipReason::TooLarge => "too_large",
            SkipReason::Unprovable => "unprovable",
            SkipReason::RingFull => "ring_full",
        }
    }

    fn index(self) -> usize {
        SkipReason::ALL.iter().position(|&r| r == self).expect("listed")
    }
}

/// One window's result as the pool sees it (journal → prover ring).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowInput {
    pub window_id: u64,
    /// When the window closed (ns, the daemon clock): the proof lag is measured from here.
    pub closed_ns: u64,
    /// The window's witness (`windows_count = 1`), or why there is none.
    pub witness: Result<ClearingWitness, SkipReason>,
}

/// A window's fate, in the order decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolEvent {
    /// Waiting for a worker.
    Queued {
        window_id: u64,
    },
    /// No entries and no winners: nothing to prove.
    Empty {
        window_id: u64,
    },
    Skipped {
        window_id: u64,
        reason: SkipReason,
    },
}

/// Windows `first ..= last` to prove as one statement. Empty windows inside the range are
/// covered by it; every other window of the range is in `windows`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub first: u64,
    pub last: u64,
    /// `(window_id, closed_ns)` of the non-empty windows proven, ascending.
    pub windows: Vec<(u64, u64)>,
    /// `window_id = last`, `windows_count = last − first + 1`.
    pub witness: ClearingWitness,
}

#[derive(Debug)]
struct Queued {
    window_id: u64,
    closed_ns: u64,
    witness: ClearingWitness,
    /// Every window between the previously queued one and this one was empty, so the two may
    /// be proven in one span.
    follows: bool,
}

/// Counts, published by the dispatcher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounters {
    pub windows_received_total: u64,
    pub windows_empty_total: u64,
    pub windows_skipped_total: [u64; SkipReason::ALL.len()],
    pub spans_total: u64,
    /// Spans of more than one window.
    pub spans_coalesced_total: u64,
}

impl PoolCounters {
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.windows_skipped_total[reason.index()]
    }
}

/// The scheduler. See the module documentation for the call order.
#[derive(Debug)]
pub struct PoolCore {
    policy: Policy,
    queue: VecDeque<Queued>,
    queue_capacity: usize,
    events: VecDeque<PoolEvent>,
    /// The newest window handed in (`first_window_id − 1` before the first).
    last_seen: u64,
    /// Since the newest queued window, only empty windows were seen, without gaps.
    contiguous: bool,
    counters: PoolCounters,
}

/// Gaps longer than this (windows lost on the ring) are counted but reported as one event
/// per window only up to this many, so a pathological gap cannot flood the event queue.
const GAP_EVENTS_MAX: u64 = 1_024;

impl PoolCore {
    /// A pool whose first window is `first_window_id` (the daemon's first window id).
    pub fn new(policy: Policy, queue_capacity: usize, first_window_id: u64) -> PoolCore {
        assert!(queue_capacity >= 1, "a pool holds at least one window");
        assert!(first_window_id >= 1, "window ids start at 1 or later");
        if let Policy::Coalesce { span_max } = policy {
            assert!((1..=SPAN_WINDOWS_MAX as usize).contains(&span_max), "span_max {span_max}");
        }
        PoolCore {
            policy,
            queue: VecDeque::with_capacity(queue_capacity),
            queue_capacity,
            events: VecDeque::with_capacity(queue_capacity + 16),
            last_seen: first_window_id - 1,
            contiguous: false,
            counters: PoolCounters::default(),
        }
    }

    pub fn counters(&self) -> &PoolCounters {
        &self.counters
    }

    /// Windows waiting for a worker.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn skip(&mut self, window_id: u64, reason: SkipReason) {
        self.counters.windows_skipped_total[reason.index()] += 1;
        self.events.push_back(PoolEvent::Skipped { window_id, reason });
    }

    /// A window's result. Ids must ascend; ids missing since the previous call are windows
    /// the ring refused, skipped as [`SkipReason::RingFull`].
    pub fn handle_window(&mut self, input: WindowInput) {
        let id = input.window_id;
        let last = self.last_seen;
        assert!(id > last, "windows reach the pool in order: {id} after {last}");
        let missing = id - last - 1;
        if missing > 0 {
            self.contiguous = false;
            self.counters.windows_skipped_total[SkipReason::RingFull.index()] += missing;
            for lost in (last + 1..id).take(GAP_EVENTS_MAX as usize) {
                self.events.push_back(PoolEvent::Skipped { window_id: lost, reason: SkipReason::RingFull });
            }
        }
        self.last_seen = id;
        self.counters.windows_received_total += 1;
        let witness = match input.witness {
            Ok(w) => w,
            Err(reason) => {
                self.contiguous = false;
                self.skip(id, reason);
                return;
            }
        };
        debug_assert_eq!((witness.window_id, witness.windows_count), (id, 1));
        if witness.entries.is_empty() && witness.auction.winners.is_empty() {
            self.counters.windows_empty_total += 1;
            self.events.push_back(PoolEvent::Empty { window_id: id });
            return;
        }
        if self.queue.len() == self.queue_capacity {
            let oldest = self.queue.pop_front().expect("full");
            self.skip(oldest.window_id, SkipReason::QueueFull);
        }
        let follows = self.contiguous && !self.queue.is_empty();
        self.queue.push_back(Queued { window_id: id, closed_ns: input.closed_ns, witness, follows });
        self.contiguous = true;
        self.events.push_back(PoolEvent::Queued { window_id: id });
    }

    /// The next decided fate of a window, oldest first.
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        self.events.pop_front()
    }

    /// Work for a free worker, if any window waits.
    pub fn poll_span(&mut self) -> Option<Span> {
        let span = match self.policy {
            Policy::Skip => {
                let newest = self.queue.pop_back()?;
                while let Some(old) = self.queue.pop_front() {
                    self.skip(old.window_id, SkipReason::Superseded);
                }
                Span {
                    first: newest.window_id,
                    last: newest.window_id,
                    windows: vec![(newest.window_id, newest.closed_ns)],
                    witness: newest.witness,
                }
            }
            Policy::Coalesce { span_max } => {
                let first = self.queue.pop_front()?;
                let mut span = Span {
                    first: first.window_id,
                    last: first.window_id,
                    windows: vec![(first.window_id, first.closed_ns)],
                    witness: first.witness,
                };
                while let Some(next) = self.queue.front() {
                    let windows_count = next.window_id - span.first + 1;
                    if !next.follows
                        || windows_count > span_max as u64
                        || !joinable(&span.witness, &next.witness)
                    {
                        break;
                    }
                    let next = self.queue.pop_front().expect("peeked");
                    append(&mut span.witness, next.witness, windows_count as u32);
                    span.last = next.window_id;
                    span.windows.push((next.window_id, next.closed_ns));
                }
                // The next span starts at the new front, whatever preceded it.
                if let Some(front) = self.queue.front_mut() {
                    front.follows = false;
                }
                span
            }
        };
        self.counters.spans_total += 1;
        if span.last > span.first {
            self.counters.spans_coalesced_total += 1;
        }
        Some(span)
    }
}

/// Whether `next` (one window) may be appended to `span` and the result still be a valid span
/// witness (`docs/proofs.md`, "Spans"): the circuit's capacity, the same fee rate and auction
/// rules, and sequence numbers still ascending. Each window is valid on its own (the engine
/// made it), so the sums keep `Σ payout + Σ fee = Σ total` and the fee within the span's
/// bound; the worker's pre-check (`ClearingWitness::check`) has the last word.
pub fn joinable(span: &ClearingWitness, next: &ClearingWitness) -> bool {
    let (a, b) = (&span.auction, &next.auction);
    span.entries.len() + next.entries.len() <= BLOCK_ENTRIES_MAX
        && a.winners.len() + b.winners.len() <= WINNERS_MAX
        && span.fee_ppm == next.fee_ppm
        && (a.pricing, a.reserve, a.uniform_price) == (b.pricing, b.reserve, b.uniform_price)
        && match (span.entries.last(), next.entries.first()) {
            (Some(x), Some(y)) => x.seq < y.seq,
            _ => true,
        }
        && span.fifo_total.checked_add(next.fifo_total).is_some()
}

/// Appends window `next` to the span: entries and winners concatenated, FIFO totals summed,
/// `window_id` the new last window, `windows_count` the span's length.
pub fn append(span: &mut ClearingWitness, next: ClearingWitness, windows_count: u32) {
    span.window_id = next.window_id;
    span.windows_count = windows_count;
    span.fifo_total += next.fifo_total;
    span.entries.extend(next.entries);
    span.auction.winners.extend(next.auction.winners);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fpn_engine::SplitMix64;
    use fpn_prover::{AuctionWitness, EntryWitness, PRICING_FIRST_PRICE, WinnerWitness};

    use super::*;

    /// A valid one-window witness: `entries` entries with seqs above every earlier window's,
    /// a 10 % fee (floors that do not add up across windows), `winners` first-price winners.
    fn window(window_id: u64, entries: usize, winners: usize) -> ClearingWitness {
        let fee_ppm = 100_000u32;
        let entries: Vec<EntryWitness> = (0..entries as u64)
            .map(|i| {
                let profit = if i == 0 { 1_015 } else { 15 + i };
                EntryWitness { seq: window_id * 1_000 + i, profit, payout: profit }
            })
            .collect();
        let fifo_total = 0;
        let total: u64 = entries.iter().map(|e| e.profit).sum();
        let fee = total * u64::from(fee_ppm) / 1_000_000;
        let mut entries = entries;
        if let Some(e) = entries.first_mut() {
            e.payout -= fee;
        }
        let winners = (0..winners as u64)
            .map(|j| WinnerWitness { seq: window_id * 1_000 + 500 + j, amount: 10 + j, price: 10 + j })
            .collect();
        let w = ClearingWitness {
            window_id,
            windows_count: 1,
            fee_ppm,
            fifo_total,
            entries,
            auction: AuctionWitness { pricing: PRICING_FIRST_PRICE, reserve: 0, uniform_price: 0, winners },
        };
        debug_assert!(window_id != 1 || w.check().is_ok(), "the test window is valid");
        w
    }

    fn input(window_id: u64, entries: usize, winners: usize) -> WindowInput {
        WindowInput { window_id, closed_ns: window_id * 20, witness: Ok(window(window_id, entries, winners)) }
    }

    fn events(core: &mut PoolCore) -> Vec<PoolEvent> {
        std::iter::from_fn(|| core.poll_event()).collect()
    }

    #[test]
    fn coalesce_proves_the_oldest_windows_as_one_span_across_empty_windows() {
        let mut core = PoolCore::new(Policy::Coalesce { span_max: 4 }, 8, 1);
        core.handle_window(input(1, 3, 1));
        core.handle_window(input(2, 0, 0));
        core.handle_window(input(3, 2, 2));
        core.handle_window(input(4, 1, 0));
        core.handle_window(input(5, 1, 0));
        assert_eq!(
            events(&mut core),
            vec![
                PoolEvent::Queued { window_id: 1 },
                PoolEvent::Empty { window_id: 2 },
                PoolEvent::Queued { window_id: 3 },
                PoolEvent::Queued { window_id: 4 },
                PoolEvent::Queued { window_id: 5 },
            ]
        );
        let span = core.poll_span().unwrap();
        // span_max 4: windows 1..=4 (2 empty), window 5 would make 5.
        assert_eq!((span.first, span.last), (1, 4));
        assert_eq!(span.windows, vec![(1, 20), (3, 60), (4, 80)]);
        assert_eq!((span.witness.window_id, span.witness.windows_count), (4, 4));
        assert_eq!(span.witness.entries.len(), 6);
        let public = span.witness.check().expect("a span of valid windows is valid");
        // Floors of 10 % of 1048, 1031 and 1015: 104 + 103 + 101 = 308, while the floor of
        // 10 % of the sum is 309: only a span proof accepts it.
        assert_eq!(public.fee, 308);
        let span = core.poll_span().unwrap();
        assert_eq!((span.first, span.last, span.witness.windows_count), (5, 5, 1));
        assert_eq!(core.poll_span(), None);
        assert_eq!(core.counters().spans_coalesced_total, 1);
    }

    #[test]
    fn coalesce_stops_at_capacity_gaps_and_skipped_windows() {
        let mut core = PoolCore::new(Policy::Coalesce { span_max: 64 }, 16, 1);
        core.handle_window(input(1, 40, 0));
        core.handle_window(input(2, 30, 0)); // 70 entries would overflow the circuit
        core.handle_window(WindowInput { window_id: 3, closed_ns: 0, witness: Err(SkipReason::TooLarge) });
        core.handle_window(input(4, 1, 0)); // after a skipped window: a new span
        core.handle_window(input(7, 1, 0)); // 5 and 6 lost on the ring
        let spans: Vec<(u64, u64)> =
            std::iter::from_fn(|| core.poll_span()).map(|s| (s.first, s.last)).collect();
        assert_eq!(spans, vec![(1, 1), (2, 2), (4, 4), (7, 7)]);
        assert_eq!(core.counters().skipped(SkipReason::TooLarge), 1);
        assert_eq!(core.counters().skipped(SkipReason::RingFull), 2);
        let skipped: Vec<PoolEvent> =
            events(&mut core).into_iter().filter(|e| matches!(e, PoolEvent::Skipped { .. })).collect();
        assert_eq!(
            skipped,
            vec![
                PoolEvent::Skipped { window_id: 3, reason: SkipReason::TooLarge },
                PoolEvent::Skipped { window_id: 5, reason: SkipReason::RingFull },
                PoolEvent::Skipped { window_id: 6, reason: SkipReason::RingFull },
            ]
        );
    }

    #[test]
    fn skip_proves_the_newest_and_skips_the_rest() {
        let mut core = PoolCore::new(Policy::Skip, 3, 1);
        for id in 1..=5 {
            core.handle_window(input(id, 1, 0));
        }
        // Capacity 3: windows 1 and 2 were pushed out.
        let span = core.poll_span().unwrap();
        assert_eq!((span.first, span.last), (5, 5));
        assert_eq!(core.poll_span(), None);
        let skipped: Vec<(u64, SkipReason)> = events(&mut core)
            .into_iter()
            .filter_map(|e| match e {
                PoolEvent::Skipped { window_id, reason } => Some((window_id, reason)),
                _ => None,
            })
            .collect();
        assert_eq!(
            skipped,
            vec![
                (1, SkipReason::QueueFull),
                (2, SkipReason::QueueFull),
                (3, SkipReason::Superseded),
                (4, SkipReason::Superseded),
            ]
        );
        assert_eq!(core.counters().skipped(SkipReason::Superseded), 2);
    }

    /// What became of each window in the simulation.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fate {
        Empty,
        Skipped(SkipReason),
        Proven { first: u64, last: u64 },
    }

    /// A seeded simulation with a fake prover: windows arrive every tick (some empty, some
    /// too large, some lost on the ring), `workers` fake workers take `prove_ticks` ticks per
    /// span. Every window ends in exactly one fate; spans are contiguous, never overlap, cover
    /// only empty windows besides their own, and their witnesses pass the pre-check.
    fn simulate(seed: u64, policy: Policy, queue_capacity: usize, workers: usize, prove_ticks: u64) {
        let mut rng = SplitMix64::new(seed);
        let mut core = PoolCore::new(policy, queue_capacity, 1);
        let mut fates: BTreeMap<u64, Fate> = BTreeMap::new();
        let record = |fates: &mut BTreeMap<u64, Fate>, id: u64, fate: Fate| {
            let old = fates.insert(id, fate);
            assert!(old.is_none(), "seed {seed}: window {id} is {old:?} and {fate:?}");
        };
        let mut busy: Vec<Option<(u64, Span)>> = vec![None; workers];
        let mut checked = 0;
        let mut sent = 0u64;
        let mut id = 0u64;
        let windows_n = 240u64;
        for tick in 0..windows_n + 200 * prove_ticks {
            if id < windows_n {
                id += 1;
                let lost = rng.below(20) == 0;
                if !lost {
                    let kind = rng.below(10);
                    let input = match kind {
                        0 => input(id, 0, 0),
                        1 => WindowInput { window_id: id, closed_ns: 0, witness: Err(SkipReason::TooLarge) },
                        _ => input(id, 1 + rng.below(30) as usize, rng.below(6) as usize),
                    };
                    core.handle_window(input);
                    sent = id;
                }
            }
            while let Some(e) = core.poll_event() {
                match e {
                    PoolEvent::Queued { .. } => {}
                    PoolEvent::Empty { window_id } => record(&mut fates, window_id, Fate::Empty),
                    PoolEvent::Skipped { window_id, reason } => {
                        record(&mut fates, window_id, Fate::Skipped(reason))
                    }
                }
            }
            for slot in busy.iter_mut() {
                if let Some((done_at, span)) = slot
                    && *done_at <= tick
                {
                    for &(w, _) in &span.windows {
                        record(&mut fates, w, Fate::Proven { first: span.first, last: span.last });
                    }
                    *slot = None;
                }
                if slot.is_none()
                    && let Some(span) = core.poll_span()
                {
                    assert_eq!(span.witness.window_id, span.last);
                    assert_eq!(u64::from(span.witness.windows_count), span.last - span.first + 1);
                    // The native pre-check costs about a millisecond (Poseidon): run it on the
                    // first few spans of several windows of each run.
                    if span.last > span.first && checked < 4 {
                        checked += 1;
                        span.witness.check().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                    }
                    if let Policy::Coalesce { span_max } = policy {
                        assert!(span.last - span.first < span_max as u64);
                    }
                    *slot = Some((tick + prove_ticks, span));
                }
            }
        }
        // The trailing lost windows never reached the pool: nothing to say about them.
        let expected: Vec<u64> = (1..=sent).collect();
        assert_eq!(
            fates.keys().copied().collect::<Vec<_>>(),
            expected,
            "seed {seed}: every window has a fate"
        );
        // Spans: the windows in a span's range are its own proven windows or empty windows.
        for (&w, fate) in &fates {
            if let Fate::Proven { first, last } = *fate {
                assert!((first..=last).contains(&w));
                for other in first..=last {
                    match fates[&other] {
                        Fate::Empty => {}
                        Fate::Proven { first: f, last: l } => {
                            assert_eq!((f, l), (first, last), "seed {seed}")
                        }
                        Fate::Skipped(r) => {
                            panic!("seed {seed}: window {other} ({r:?}) inside span {first}..={last}")
                        }
                    }
                }
            }
        }
        let counted: u64 = core.counters().windows_skipped_total.iter().sum();
        let skipped = fates.values().filter(|f| matches!(f, Fate::Skipped(_))).count() as u64;
        assert_eq!(counted, skipped, "seed {seed}: skipped counts");
        assert_eq!(
            core.counters().windows_empty_total,
            fates.values().filter(|f| **f == Fate::Empty).count() as u64
        );
        if policy == Policy::Skip {
            assert!(fates.values().all(|f| !matches!(f, Fate::Proven { first, last } if first != last)));
        }
    }

    #[test]
    fn simulated_pool_gives_every_window_exactly_one_fate() {
        for seed in 0..6 {
            // Keeping up, falling behind a little, falling far behind; one and two workers.
            for (workers, prove_ticks) in [(1, 1), (1, 5), (2, 12), (1, 60)] {
                simulate(seed, Policy::Coalesce { span_max: 16 }, 8, workers, prove_ticks);
                simulate(seed, Policy::Coalesce { span_max: 1 }, 8, workers, prove_ticks);
                simulate(seed, Policy::Skip, 8, workers, prove_ticks);
            }
        }
    }

    #[test]
    fn falling_behind_skips_and_counts_in_both_modes() {
        let mut coalesce = PoolCore::new(Policy::Coalesce { span_max: 2 }, 4, 1);
        let mut skip = PoolCore::new(Policy::Skip, 4, 1);
        for id in 1..=10 {
            coalesce.handle_window(input(id, 1, 0));
            skip.handle_window(input(id, 1, 0));
        }
        assert_eq!(coalesce.counters().skipped(SkipReason::QueueFull), 6);
        let spans: Vec<(u64, u64)> =
            std::iter::from_fn(|| coalesce.poll_span()).map(|s| (s.first, s.last)).collect();
        assert_eq!(spans, vec![(7, 8), (9, 10)]);
        assert_eq!(skip.poll_span().map(|s| s.last), Some(10));
        assert_eq!(skip.counters().skipped(SkipReason::QueueFull), 6);
        assert_eq!(skip.counters().skipped(SkipReason::Superseded), 3);
    }
}
