//! The open batch window: admission, de-duplication, cancels and the close.
//!
//! See `docs/windows.md` for the lifecycle, the close and drift rules and cancel semantics.

use fpn_wire::Reason;
use thiserror::Error;

use crate::batch::{IntentBatch, IntentMeta};
use crate::clock::WindowClock;
use crate::dedup::{DEDUP_ENTRIES_MAX, Dedup};

/// Most resource keys one intent may name (the wire decoder refuses more with
/// `Reason::TooManyResources`). A window's key budget is at least this, so an intent that
/// does not fit a non-empty window always fits the next one.
pub const KEYS_PER_INTENT_MAX: usize = 64;

const NS_PER_MS: u64 = 1_000_000;

/// Sizes and timing of the batch windows. Every buffer is sized from this at construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    /// Window length, `1 ms ..= 1000 ms` in ns. Default 20 ms.
    pub window_ns: u64,
    /// Records (intents + bids) per window, `1 ..= 2^20`. Default 65,536.
    pub records_max: usize,
    /// Resource keys of all intents of one window, `64 ..= records_max × 64`.
    /// Default `max(records_max × 8, 64)`.
    pub keys_max: usize,
    /// Bids per window, `0 ..= records_max`. Default `records_max`.
    pub bids_max: usize,
    /// Windows a (client, nonce) pair is remembered for, the current one included,
    /// `1 ..= 4096` and `dedup_horizon_windows × records_max <= 2^30`. Default 16.
    pub dedup_horizon_windows: u32,
    /// The first engine sequence id handed out, `>= 1` (journal replay resumes from here).
    /// Default 1.
    pub first_seq: u64,
    /// Clients whose nonce high-water marks are kept beyond the de-duplication horizon
    /// (replay protection; `Dedup::with_clients`), `1 ..= 2^24`. Past it, a new client's
    /// records are refused `Overloaded`. Default 65,536.
    pub clients_max: usize,
}

impl WindowConfig {
    pub const WINDOW_NS_MIN: u64 = NS_PER_MS;
    pub const WINDOW_NS_MAX: u64 = 1000 * NS_PER_MS;
    pub const RECORDS_MAX_MAX: usize = 1 << 20;
    pub const DEDUP_HORIZON_WINDOWS_MAX: u32 = 4096;
    pub const CLIENTS_MAX_MAX: usize = 1 << 24;

    /// Defaults for a given `records_max`, with `keys_max` and `bids_max` derived from it.
    pub fn with_records_max(records_max: usize) -> WindowConfig {
        WindowConfig {
            window_ns: 20 * NS_PER_MS,
            records_max,
            keys_max: records_max.saturating_mul(8).max(KEYS_PER_INTENT_MAX),
            bids_max: records_max,
            dedup_horizon_windows: 16,
            first_seq: 1,
            clients_max: 65_536,
        }
    }

    /// Checks every field against its allowed range; the error names the field.
    pub fn validate(&self) -> Result<(), WindowConfigError> {
        if !(Self::WINDOW_NS_MIN..=Self::WINDOW_NS_MAX).contains(&self.window_ns) {
            return Err(WindowConfigError::WindowNs(self.window_ns));
        }
        if !(1..=Self::RECORDS_MAX_MAX).contains(&self.records_max) {
            return Err(WindowConfigError::RecordsMax(self.records_max));
        }
        let keys_max_max = self.records_max * KEYS_PER_INTENT_MAX;
        if !(KEYS_PER_INTENT_MAX..=keys_max_max).contains(&self.keys_max) {
            return Err(WindowConfigError::KeysMax { value: self.keys_max, max: keys_max_max });
        }
        if self.bids_max > self.records_max {
            return Err(WindowConfigError::BidsMax { value: self.bids_max, max: self.records_max });
        }
        let horizon_ok = (1..=Self::DEDUP_HORIZON_WINDOWS_MAX).contains(&self.dedup_horizon_windows)
            && self.dedup_horizon_windows as usize * self.records_max <= DEDUP_ENTRIES_MAX;
        if !horizon_ok {
            return Err(WindowConfigError::DedupHorizonWindows {
                value: self.dedup_horizon_windows,
                records_max: self.records_max,
            });
        }
        if self.first_seq == 0 {
            return Err(WindowConfigError::FirstSeq);
        }
        if !(1..=Self::CLIENTS_MAX_MAX).contains(&self.clients_max) {
            return Err(WindowConfigError::ClientsMax(self.clients_max));
        }
        Ok(())
    }

    /// Entries the de-duplication table holds: `dedup_horizon_windows × records_max`.
    pub fn dedup_entries_max(&self) -> usize {
        self.dedup_horizon_windows as usize * self.records_max
    }
}

impl Default for WindowConfig {
    fn default() -> WindowConfig {
        WindowConfig::with_records_max(65_536)
    }
}

/// A [`WindowConfig`] field outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WindowConfigError {
    #[error("window_ns must be in 1_000_000..=1_000_000_000 (1 ms to 1000 ms), got {0}")]
    WindowNs(u64),
    #[error("records_max must be in 1..=1048576 (2^20), got {0}")]
    RecordsMax(usize),
    #[error("keys_max must be in 64..={max} (64 to records_max * 64), got {value}")]
    KeysMax { value: usize, max: usize },
    #[error("bids_max must be in 0..={max} (at most records_max), got {value}")]
    BidsMax { value: usize, max: usize },
    #[error(
        "dedup_horizon_windows must be in 1..=4096 with dedup_horizon_windows * records_max \
         <= 2^30, got {value} (records_max {records_max})"
    )]
    DedupHorizonWindows { value: u32, records_max: usize },
    #[error("first_seq must be >= 1, got 0")]
    FirstSeq,
    #[error("clients_max must be in 1..=16777216 (2^24), got {0}")]
    ClientsMax(usize),
}

/// A bid waiting in the open window; it moves into the auction book when the window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingBid {
    pub seq: u64,
    pub client_id: u64,
    pub nonce: u64,
    /// Bid amount in minor units, `1..=MAX_AMOUNT`.
    pub amount: u64,
    pub priority: u32,
    pub rx_ns: u64,
}

/// A record the window accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// Engine sequence id, unique and increasing over intents and bids together.
    pub seq: u64,
    /// The window the record will close in.
    pub window_id: u64,
    /// Arrival index among the open window's intents (or bids). Indices shift when the
    /// window closes and tombstones are compacted; use `seq` to name the record afterwards.
    pub index: u32,
}

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Intent,
    Bid,
}

/// Why a window closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloseReason {
    /// `now_ns` reached the deadline.
    #[default]
    Deadline,
    /// A fixed buffer ran out: `records_max` records, or the key or bid budget.
    Full,
    /// Closed before its deadline on the driver's request (shutdown, journal cut).
    Drain,
}

/// One accepted record, in arrival (= seq) order. `seq - window_first_seq` indexes these.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    index: u32,
    kind: RecordKind,
    cancelled: bool,
}

/// A closed window: its intents and bids without the cancelled ones, and its accounting.
///
/// Owns buffers as large as the window's; [`Window::close`] swaps them, so closing copies
/// nothing and allocates nothing. Reuse one `ClosedWindow` (or two, double-buffered) for the
/// life of the engine.
#[derive(Debug, Clone)]
pub struct ClosedWindow {
    batch: IntentBatch,
    bids: Vec<PendingBid>,
    bids_max: usize,
    pub window_id: u64,
    pub opened_ns: u64,
    pub closed_ns: u64,
    pub reason: CloseReason,
    /// Seq of the window's first record; the window's seqs are `first_seq..seq_end`.
    pub first_seq: u64,
    pub seq_end: u64,
    /// Intents in `batch()` (cancelled ones removed).
    pub intents_count: usize,
    /// Bids in `bids()` (cancelled ones removed).
    pub bids_count: usize,
    /// Records accepted in this window and cancelled before the close.
    pub cancelled_count: usize,
}

impl ClosedWindow {
    /// Buffers sized for windows made from `cfg`. Allocates; call at start-up.
    pub fn new(cfg: &WindowConfig) -> ClosedWindow {
        ClosedWindow {
            batch: IntentBatch::with_capacity(cfg.records_max, cfg.keys_max),
            bids: Vec::with_capacity(cfg.bids_max),
            bids_max: cfg.bids_max,
            window_id: 0,
            opened_ns: 0,
            closed_ns: 0,
            reason: CloseReason::Deadline,
            first_seq: 0,
            seq_end: 0,
            intents_count: 0,
            bids_count: 0,
            cancelled_count: 0,
        }
    }

    /// The window's surviving intents, in seq order.
    pub fn batch(&self) -> &IntentBatch {
        &self.batch
    }

    /// The window's surviving bids, in seq order.
    pub fn bids(&self) -> &[PendingBid] {
        &self.bids
    }

    /// Mutable access, so a consumer can drain the bids into the auction book in place.
    /// Keep the Vec's capacity (`drain`, not `mem::take`): the next close swaps it into the
    /// open window, and `close` asserts it is still `bids_max`.
    pub fn bids_mut(&mut self) -> &mut Vec<PendingBid> {
        &mut self.bids
    }
}

/// The open batch window: takes intents, bids and cancels, de-duplicates (client, nonce)
/// over `dedup_horizon_windows` windows, hands out sequence ids, and on close swaps its
/// records into a [`ClosedWindow`] and opens the next window.
///
/// Call order:
/// 1. `new` (allocates everything, once), plus one or two `ClosedWindow::new`.
/// 2. Per record: `handle_intent` / `handle_intent_le_keys` / `handle_bid`; per cancel:
///    `cancel_intent_seq` / `cancel_intent_nonce` / `cancel_bid_seq` / `cancel_bid_nonce`.
///    On `Err(Overloaded)` with `is_full()` true, close first and retry in the next window.
/// 3. Whenever time passes or a record was added: `poll_close(now_ns, out)` closes the window
///    if `is_due(now_ns)`; `deadline_ns()` is when to wake up next. `close` closes
///    unconditionally (drain). Consume `out` before the next close into it.
///
/// Nothing after `new` allocates.
#[derive(Debug, Clone)]
pub struct Window {
    cfg: WindowConfig,
    /// Window id, opening time, deadline and the drift rule.
    clock: WindowClock,
    /// Seq of this window's first record.
    window_first_seq: u64,
    /// Next seq to hand out; this window holds `window_first_seq..seq_next`.
    seq_next: u64,
    batch: IntentBatch,
    bids: Vec<PendingBid>,
    arrivals: Vec<Arrival>,
    /// Per intent index: cancelled? (`retain_indices` asks by index at close.)
    intent_cancelled: Vec<bool>,
    cancelled_count: usize,
    /// Latched when a record is refused for lack of key or bid space, so the window closes
    /// (as `Full`) rather than refusing records until its deadline.
    exhausted: bool,
    dedup: Dedup,
}

impl Window {
    /// Opens window `first_window_id` at `now_ns`. Allocates every buffer.
    ///
    /// Panics if `cfg` does not validate; [`Window::try_new`] returns the typed error.
    pub fn new(cfg: WindowConfig, first_window_id: u64, now_ns: u64) -> Window {
        match Window::try_new(cfg, first_window_id, now_ns) {
            Ok(w) => w,
            Err(e) => panic!("invalid WindowConfig: {e}"),
        }
    }

    /// [`Window::new`], or the first config field out of range.
    pub fn try_new(
        cfg: WindowConfig,
        first_window_id: u64,
        now_ns: u64,
    ) -> Result<Window, WindowConfigError> {
        cfg.validate()?;
        Ok(Window {
            cfg,
            clock: WindowClock::new(cfg.window_ns, first_window_id, now_ns),
            window_first_seq: cfg.first_seq,
            seq_next: cfg.first_seq,
            batch: IntentBatch::with_capacity(cfg.records_max, cfg.keys_max),
            bids: Vec::with_capacity(cfg.bids_max),
            arrivals: Vec::with_capacity(cfg.records_max),
            intent_cancelled: Vec::with_capacity(cfg.records_max),
            cancelled_count: 0,
            exhausted: false,
            dedup: Dedup::with_clients(
                cfg.dedup_horizon_windows,
                cfg.records_max,
                first_window_id,
                cfg.clients_max,
            ),
        })
    }

    /// Admits one intent whose input the wire decoder already validated (profit in
    /// `1..=MAX_AMOUNT`, `1..=64` distinct keys).
    ///
    /// Errors: `Overloaded` if the window is full (close it and retry), `DuplicateNonce` if
    /// the pair was accepted within the horizon. A refused intent leaves no trace: capacity is
    /// checked before the nonce is remembered, so a retry in the next window is not a
    /// duplicate of itself.
    #[allow(clippy::too_many_arguments)] // Mirrors the wire record; a struct would be a copy.
    #[inline]
    pub fn handle_intent(
        &mut self,
        now_ns: u64,
        client_id: u64,
        nonce: u64,
        profit: u64,
        priority: u32,
        rx_ns: u64,
        keys: &[u64],
    ) -> Result<Admitted, Reason> {
        let meta = self.admit_intent(now_ns, client_id, nonce, profit, priority, rx_ns, keys.len())?;
        let index = self.batch.push(meta, keys);
        self.finish_intent(index)
    }

    /// [`Window::handle_intent`] with keys as little-endian bytes, as they sit in a wire
    /// record (saves a copy in the decoder).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn handle_intent_le_keys(
        &mut self,
        now_ns: u64,
        client_id: u64,
        nonce: u64,
        profit: u64,
        priority: u32,
        rx_ns: u64,
        keys_le: &[[u8; 8]],
    ) -> Result<Admitted, Reason> {
        let meta = self.admit_intent(now_ns, client_id, nonce, profit, priority, rx_ns, keys_le.len())?;
        let index = self.batch.push_le_keys(meta, keys_le);
        self.finish_intent(index)
    }

    /// Capacity check, then dedup; on success the intent's meta with its seq.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn admit_intent(
        &mut self,
        now_ns: u64,
        client_id: u64,
        nonce: u64,
        profit: u64,
        priority: u32,
        rx_ns: u64,
        keys_len: usize,
    ) -> Result<IntentMeta, Reason> {
        debug_assert!(now_ns >= self.clock.opened_ns(), "time went backwards");
        debug_assert!((1..=crate::MAX_AMOUNT).contains(&profit), "profit not validated");
        debug_assert!((1..=KEYS_PER_INTENT_MAX).contains(&keys_len), "key count not validated");
        if self.is_full() {
            return Err(Reason::Overloaded);
        }
        if self.batch.keys_len() + keys_len > self.cfg.keys_max {
            self.exhausted = true;
            return Err(Reason::Overloaded);
        }
        let seq = self.seq_next;
        self.dedup_insert(client_id, nonce, seq)?;
        Ok(IntentMeta { seq, client_id, nonce, profit, priority, rx_ns })
    }

    #[inline]
    fn dedup_insert(&mut self, client_id: u64, nonce: u64, seq: u64) -> Result<(), Reason> {
        let r = self.dedup.insert(client_id, nonce, self.clock.window_id(), seq);
        if r == Err(Reason::Overloaded) {
            // Cannot happen within the configured bounds (the table holds the horizon's
            // records_max per window); if it does, closing the window lets entries expire,
            // where refusing until the deadline would not.
            self.exhausted = true;
        }
        r
    }

    #[inline]
    fn finish_intent(&mut self, index: Result<u32, crate::BatchFull>) -> Result<Admitted, Reason> {
        // Records and keys were checked in `admit_intent`, so the push cannot fail.
        let index = index.expect("batch capacity checked before push");
        self.intent_cancelled.push(false);
        Ok(self.record_arrival(index, RecordKind::Intent))
    }

    #[inline]
    fn record_arrival(&mut self, index: u32, kind: RecordKind) -> Admitted {
        let seq = self.seq_next;
        debug_assert_eq!(seq - self.window_first_seq, self.arrivals.len() as u64);
        debug_assert!(self.arrivals.len() < self.arrivals.capacity());
        self.arrivals.push(Arrival { index, kind, cancelled: false });
        self.seq_next += 1;
        Admitted { seq, window_id: self.clock.window_id(), index }
    }

    /// Admits one bid (amount validated by the decoder) into the window's bid buffer.
    /// Errors as for [`Window::handle_intent`].
    #[inline]
    pub fn handle_bid(
        &mut self,
        now_ns: u64,
        client_id: u64,
        nonce: u64,
        amount: u64,
        priority: u32,
        rx_ns: u64,
    ) -> Result<Admitted, Reason> {
        debug_assert!(now_ns >= self.clock.opened_ns(), "time went backwards");
        debug_assert!((1..=crate::MAX_AMOUNT).contains(&amount), "amount not validated");
        if self.is_full() {
            return Err(Reason::Overloaded);
        }
        if self.bids.len() >= self.cfg.bids_max {
            self.exhausted = true;
            return Err(Reason::Overloaded);
        }
        let seq = self.seq_next;
        self.dedup_insert(client_id, nonce, seq)?;
        let index = self.bids.len() as u32;
        self.bids.push(PendingBid { seq, client_id, nonce, amount, priority, rx_ns });
        Ok(self.record_arrival(index, RecordKind::Bid))
    }

    /// Hint: starts loading the dedup slot for `(client_id, nonce)`. A driver holding a
    /// decoded frame calls this a few records ahead of `handle_*` to overlap cache misses.
    /// Has no effect on results.
    #[inline]
    pub fn prefetch(&self, client_id: u64, nonce: u64) {
        self.dedup.prefetch(client_id, nonce);
    }

    /// Cancels the open intent `seq` of `client_id`. `NotFound` if `seq` is not an open,
    /// uncancelled intent of this client in this window (wrong client included: a client
    /// learns nothing about other clients' records).
    pub fn cancel_intent_seq(&mut self, client_id: u64, seq: u64) -> Result<(), Reason> {
        self.cancel_seq(client_id, seq, RecordKind::Intent)
    }

    /// Cancels the open intent `(client_id, nonce)` and returns its seq. `NotFound` as for
    /// `cancel_intent_seq`.
    pub fn cancel_intent_nonce(&mut self, client_id: u64, nonce: u64) -> Result<u64, Reason> {
        let seq = self.open_seq_of(client_id, nonce)?;
        self.cancel_seq(client_id, seq, RecordKind::Intent)?;
        Ok(seq)
    }

    /// Cancels the pending bid `seq` of `client_id`.
    pub fn cancel_bid_seq(&mut self, client_id: u64, seq: u64) -> Result<(), Reason> {
        self.cancel_seq(client_id, seq, RecordKind::Bid)
    }

    /// Cancels the pending bid `(client_id, nonce)` and returns its seq.
    pub fn cancel_bid_nonce(&mut self, client_id: u64, nonce: u64) -> Result<u64, Reason> {
        let seq = self.open_seq_of(client_id, nonce)?;
        self.cancel_seq(client_id, seq, RecordKind::Bid)?;
        Ok(seq)
    }

    /// The seq of the record `(client_id, nonce)` if it was accepted in this window. The dedup
    /// table stores each pair's seq, so this is one hash probe.
    fn open_seq_of(&self, client_id: u64, nonce: u64) -> Result<u64, Reason> {
        match self.dedup.get(client_id, nonce) {
            Some(e) if e.window_id == self.clock.window_id() => Ok(e.value),
            _ => Err(Reason::NotFound),
        }
    }

    fn cancel_seq(&mut self, client_id: u64, seq: u64, kind: RecordKind) -> Result<(), Reason> {
        if seq < self.window_first_seq || seq >= self.seq_next {
            return Err(Reason::NotFound);
        }
        let arrival = &mut self.arrivals[(seq - self.window_first_seq) as usize];
        if arrival.kind != kind || arrival.cancelled {
            return Err(Reason::NotFound);
        }
        let owner = match kind {
            RecordKind::Intent => self.batch.meta(arrival.index as usize).client_id,
            RecordKind::Bid => self.bids[arrival.index as usize].client_id,
        };
        if owner != client_id {
            return Err(Reason::NotFound);
        }
        // A tombstone until the close; the nonce stays in the dedup table, so a cancelled
        // nonce cannot be replayed within the horizon.
        arrival.cancelled = true;
        if kind == RecordKind::Intent {
            self.intent_cancelled[arrival.index as usize] = true;
        }
        self.cancelled_count += 1;
        Ok(())
    }

    /// Whether the window refuses records until closed: it holds `records_max` records, or
    /// a record was refused for lack of key or bid space (or dedup space, which the
    /// configured bounds rule out).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.arrivals.len() >= self.cfg.records_max || self.exhausted
    }

    /// Whether the window should close now: full, or `now_ns` at or past the deadline.
    #[inline]
    pub fn is_due(&self, now_ns: u64) -> bool {
        self.is_full() || now_ns >= self.clock.deadline_ns()
    }

    /// Closes the window into `out` if [`Window::is_due`]; returns whether it closed.
    pub fn poll_close(&mut self, now_ns: u64, out: &mut ClosedWindow) -> bool {
        if self.is_due(now_ns) {
            self.close(now_ns, out);
            true
        } else {
            false
        }
    }

    /// Closes the window now, whatever its state, into `out` (whose previous contents are
    /// dropped), and opens window `window_id + 1`.
    ///
    /// The reason is `Full` if the window is full, else `Deadline` if `now_ns` reached the
    /// deadline, else `Drain`. Drift rule for the next deadline: if this close is a deadline
    /// close less than one window late, the next deadline is `deadline + window_ns` (windows
    /// stay on their grid; the next window is shorter by the lateness). Otherwise (late by a
    /// window or more after a stall, or an early `Full`/`Drain` close) the next deadline is
    /// `now_ns + window_ns`, so missed windows are not replayed as a burst of empty closes.
    /// Either way the next deadline is after `now_ns`.
    pub fn close(&mut self, now_ns: u64, out: &mut ClosedWindow) {
        assert!(
            out.batch.records_max() == self.cfg.records_max
                && out.batch.keys_max() == self.cfg.keys_max
                && out.bids_max == self.cfg.bids_max
                // A consumer that took the bid Vec out (`mem::take`) would hand the window a
                // Vec that allocates on push.
                && out.bids.capacity() >= self.cfg.bids_max,
            "ClosedWindow sized for another WindowConfig, or its bid buffer was replaced"
        );
        let close = self.clock.close_now(now_ns, self.is_full());

        std::mem::swap(&mut self.batch, &mut out.batch);
        std::mem::swap(&mut self.bids, &mut out.bids);
        self.batch.clear();
        self.bids.clear();

        let first_seq = self.window_first_seq;
        if self.cancelled_count > 0 {
            let intent_cancelled = &self.intent_cancelled;
            out.batch.retain_indices(|i| !intent_cancelled[i]);
            // Seq order equals arrival order, so `seq - first_seq` finds each bid's flag.
            let arrivals = &self.arrivals;
            out.bids.retain(|b| !arrivals[(b.seq - first_seq) as usize].cancelled);
        }

        out.window_id = close.window_id;
        out.opened_ns = close.opened_ns;
        out.closed_ns = close.closed_ns;
        out.reason = close.reason;
        out.first_seq = first_seq;
        out.seq_end = self.seq_next;
        out.intents_count = out.batch.len();
        out.bids_count = out.bids.len();
        out.cancelled_count = self.cancelled_count;
        debug_assert_eq!(out.intents_count + out.bids_count + out.cancelled_count, self.arrivals.len());

        self.window_first_seq = self.seq_next;
        self.arrivals.clear();
        self.intent_cancelled.clear();
        self.cancelled_count = 0;
        self.exhausted = false;
        self.dedup.advance(self.clock.window_id());
    }

    /// The open window's id.
    pub fn window_id(&self) -> u64 {
        self.clock.window_id()
    }

    /// When the open window opened (the `now_ns` of `new` or of the previous close).
    pub fn opened_ns(&self) -> u64 {
        self.clock.opened_ns()
    }

    /// When the open window is due; the driver's timer target.
    pub fn deadline_ns(&self) -> u64 {
        self.clock.deadline_ns()
    }

    /// Seq of the open window's first record (or of its next record, if it has none).
    /// Seqs below this belong to closed windows.
    pub fn window_first_seq(&self) -> u64 {
        self.window_first_seq
    }

    /// The next seq to be handed out.
    pub fn seq_next(&self) -> u64 {
        self.seq_next
    }

    /// Records accepted in the open window, cancelled ones included.
    pub fn records_len(&self) -> usize {
        self.arrivals.len()
    }

    /// Cancelled records in the open window.
    pub fn cancelled_len(&self) -> usize {
        self.cancelled_count
    }

    /// The open window's intents, tombstones included.
    pub fn batch(&self) -> &IntentBatch {
        &self.batch
    }

    /// The open window's bids, tombstones included.
    pub fn bids(&self) -> &[PendingBid] {
        &self.bids
    }

    pub fn config(&self) -> &WindowConfig {
        &self.cfg
    }

    /// The de-duplication table (read-only: for metrics and tests).
    pub fn dedup(&self) -> &Dedup {
        &self.dedup
    }

    /// Housekeeping: removes up to `steps_max` expired dedup entries now rather than on later
    /// inserts. Returns how many it removed.
    pub fn expire_dedup(&mut self, steps_max: usize) -> usize {
        self.dedup.expire(steps_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const MS: u64 = NS_PER_MS;

    fn cfg(records_max: usize) -> WindowConfig {
        WindowConfig {
            window_ns: 10 * MS,
            dedup_horizon_windows: 3,
            ..WindowConfig::with_records_max(records_max)
        }
    }

    fn intent(w: &mut Window, now_ns: u64, client_id: u64, nonce: u64) -> Result<Admitted, Reason> {
        w.handle_intent(now_ns, client_id, nonce, 100, 0, now_ns, &[client_id, nonce + 1000])
    }

    fn bid(w: &mut Window, now_ns: u64, client_id: u64, nonce: u64) -> Result<Admitted, Reason> {
        w.handle_bid(now_ns, client_id, nonce, 50, 1, now_ns)
    }

    fn seqs(out: &ClosedWindow) -> (Vec<u64>, Vec<u64>) {
        (out.batch().metas().iter().map(|m| m.seq).collect(), out.bids().iter().map(|b| b.seq).collect())
    }

    #[test]
    fn config_validation_names_the_field() {
        let ok = WindowConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.records_max, 65_536);
        assert_eq!(ok.keys_max, 65_536 * 8);
        assert_eq!(ok.window_ns, 20 * MS);
        let cases: [(WindowConfig, &str); 8] = [
            (WindowConfig { window_ns: MS - 1, ..ok }, "window_ns"),
            (WindowConfig { window_ns: 1000 * MS + 1, ..ok }, "window_ns"),
            (WindowConfig { records_max: 0, ..ok }, "records_max"),
            (WindowConfig { records_max: (1 << 20) + 1, ..ok }, "records_max"),
            (WindowConfig { keys_max: 63, ..ok }, "keys_max"),
            (WindowConfig { bids_max: 65_537, ..ok }, "bids_max"),
            (WindowConfig { dedup_horizon_windows: 0, ..ok }, "dedup_horizon_windows"),
            (WindowConfig { first_seq: 0, ..ok }, "first_seq"),
        ];
        for (c, field) in cases {
            let e = c.validate().expect_err(field);
            assert!(e.to_string().starts_with(field), "{e}");
        }
        // The product bound: 2^20 records × 4096 windows is far beyond 2^30 entries.
        let big = WindowConfig {
            records_max: 1 << 20,
            keys_max: 1 << 23,
            bids_max: 0,
            dedup_horizon_windows: 4096,
            ..ok
        };
        assert!(matches!(
            Window::try_new(WindowConfig { first_seq: 0, ..ok }, 0, 0),
            Err(WindowConfigError::FirstSeq)
        ));
        assert!(matches!(big.validate(), Err(WindowConfigError::DedupHorizonWindows { .. })));
        assert_eq!(WindowConfig { dedup_horizon_windows: 1024, ..big }.validate(), Ok(()));
    }

    #[test]
    fn closes_at_deadline_with_aligned_next_deadline() {
        let mut w = Window::new(cfg(16), 7, 1_000);
        let mut out = ClosedWindow::new(w.config());
        assert_eq!(w.deadline_ns(), 1_000 + 10 * MS);
        let a = intent(&mut w, 2_000, 1, 1).unwrap();
        assert_eq!((a.seq, a.window_id, a.index), (1, 7, 0));
        assert!(!w.poll_close(1_000 + 10 * MS - 1, &mut out));
        // Closed 3 ms late: the next deadline stays on the 10 ms grid.
        assert!(w.poll_close(1_000 + 13 * MS, &mut out));
        assert_eq!(out.reason, CloseReason::Deadline);
        assert_eq!((out.window_id, out.opened_ns, out.closed_ns), (7, 1_000, 1_000 + 13 * MS));
        assert_eq!((out.intents_count, out.bids_count, out.cancelled_count), (1, 0, 0));
        assert_eq!(w.window_id(), 8);
        assert_eq!(w.opened_ns(), 1_000 + 13 * MS);
        assert_eq!(w.deadline_ns(), 1_000 + 20 * MS);
        // Closed more than a window late (stall): restart from now.
        assert!(w.poll_close(1_000 + 45 * MS, &mut out));
        assert_eq!(out.reason, CloseReason::Deadline);
        assert_eq!(w.deadline_ns(), 1_000 + 55 * MS);
        // Drain before the deadline: restart from now.
        w.close(1_000 + 50 * MS, &mut out);
        assert_eq!(out.reason, CloseReason::Drain);
        assert_eq!(out.window_id, 9);
        assert_eq!(w.deadline_ns(), 1_000 + 60 * MS);
    }

    #[test]
    fn closes_when_full_and_refuses_until_closed() {
        let mut w = Window::new(cfg(3), 0, 0);
        let mut out = ClosedWindow::new(w.config());
        intent(&mut w, 1, 1, 1).unwrap();
        bid(&mut w, 1, 1, 2).unwrap();
        assert!(!w.is_full());
        intent(&mut w, 1, 1, 3).unwrap();
        assert!(w.is_full() && w.is_due(1));
        assert_eq!(intent(&mut w, 1, 1, 4), Err(Reason::Overloaded));
        assert_eq!(bid(&mut w, 1, 1, 4), Err(Reason::Overloaded));
        assert!(w.poll_close(2, &mut out));
        assert_eq!(out.reason, CloseReason::Full);
        assert_eq!(seqs(&out), (vec![1, 3], vec![2]));
        assert_eq!(w.deadline_ns(), 2 + 10 * MS);
        // The refused record was not remembered: it is admitted in the next window.
        let a = intent(&mut w, 3, 1, 4).unwrap();
        assert_eq!((a.seq, a.window_id), (4, 1));
    }

    #[test]
    fn key_and_bid_budgets_close_the_window() {
        let c = WindowConfig { keys_max: 64, bids_max: 1, ..cfg(8) };
        let mut w = Window::new(c, 0, 0);
        let mut out = ClosedWindow::new(&c);
        let keys: Vec<u64> = (0..40).collect();
        w.handle_intent(0, 1, 1, 5, 0, 0, &keys).unwrap();
        assert_eq!(w.handle_intent(0, 1, 2, 5, 0, 0, &keys), Err(Reason::Overloaded));
        assert!(w.is_full());
        assert!(w.poll_close(0, &mut out));
        assert_eq!(out.reason, CloseReason::Full);
        w.handle_intent(0, 1, 2, 5, 0, 0, &keys).unwrap();
        bid(&mut w, 0, 1, 3).unwrap();
        assert_eq!(bid(&mut w, 0, 1, 4), Err(Reason::Overloaded));
        assert!(w.is_full());
    }

    #[test]
    fn duplicates_rejected_within_horizon_and_expired_after() {
        let mut w = Window::new(cfg(8), 0, 0);
        let mut out = ClosedWindow::new(w.config());
        intent(&mut w, 0, 1, 1).unwrap();
        assert_eq!(intent(&mut w, 0, 1, 1), Err(Reason::DuplicateNonce));
        // Intents and bids share the nonce space.
        assert_eq!(bid(&mut w, 0, 1, 1), Err(Reason::DuplicateNonce));
        assert!(intent(&mut w, 0, 2, 1).is_ok(), "other client");
        w.close(1, &mut out);
        w.close(2, &mut out);
        assert_eq!(intent(&mut w, 3, 1, 1), Err(Reason::DuplicateNonce));
        w.close(4, &mut out);
        // Window 0 is 3 windows back now; the horizon is 3: the pair is refused for good.
        assert_eq!(intent(&mut w, 5, 1, 1), Err(Reason::NonceExpired));
        // A higher nonce of the same client is new.
        assert_eq!(intent(&mut w, 5, 1, 2).map(|a| a.window_id), Ok(3));
    }

    #[test]
    fn cancels_by_seq_and_nonce_leave_tombstones_until_close() {
        let mut w = Window::new(cfg(16), 0, 0);
        let mut out = ClosedWindow::new(w.config());
        let i1 = intent(&mut w, 0, 1, 10).unwrap();
        let b1 = bid(&mut w, 0, 1, 11).unwrap();
        let i2 = intent(&mut w, 0, 2, 10).unwrap();
        let b2 = bid(&mut w, 0, 2, 11).unwrap();
        let i3 = intent(&mut w, 0, 1, 12).unwrap();

        // Wrong client, wrong kind, unknown seq, unknown nonce: NotFound.
        assert_eq!(w.cancel_intent_seq(2, i1.seq), Err(Reason::NotFound));
        assert_eq!(w.cancel_intent_seq(1, b1.seq), Err(Reason::NotFound));
        assert_eq!(w.cancel_bid_seq(1, i1.seq), Err(Reason::NotFound));
        assert_eq!(w.cancel_intent_seq(1, 99), Err(Reason::NotFound));
        assert_eq!(w.cancel_intent_nonce(1, 99), Err(Reason::NotFound));
        assert_eq!(w.cancel_bid_nonce(2, 10), Err(Reason::NotFound), "kind mismatch");

        assert_eq!(w.cancel_intent_seq(1, i1.seq), Ok(()));
        assert_eq!(w.cancel_intent_seq(1, i1.seq), Err(Reason::NotFound), "twice");
        assert_eq!(w.cancel_bid_nonce(2, 11), Ok(b2.seq));
        assert_eq!(w.cancel_intent_nonce(2, 10), Ok(i2.seq));
        // Tombstones stay until the close.
        assert_eq!(w.batch().len(), 3);
        assert_eq!(w.cancelled_len(), 3);
        // A cancelled nonce cannot be reused.
        assert_eq!(intent(&mut w, 0, 1, 10), Err(Reason::DuplicateNonce));

        w.close(1, &mut out);
        assert_eq!(seqs(&out), (vec![i3.seq], vec![b1.seq]));
        assert_eq!(out.batch().keys(0), &[1, 1012]);
        assert_eq!((out.intents_count, out.bids_count, out.cancelled_count), (1, 1, 3));
        assert_eq!((out.first_seq, out.seq_end), (1, 6));
        let _ = (i2, b2);
        // Closed records cannot be cancelled, by seq or nonce; the nonce stays taken.
        assert_eq!(w.cancel_intent_seq(1, i3.seq), Err(Reason::NotFound));
        assert_eq!(w.cancel_intent_nonce(1, 12), Err(Reason::NotFound));
        assert_eq!(intent(&mut w, 2, 1, 12), Err(Reason::DuplicateNonce));
    }

    #[test]
    fn le_keys_variant_and_first_seq() {
        let c = WindowConfig { first_seq: 1_000, ..cfg(4) };
        let mut w = Window::new(c, 0, 0);
        let a = w.handle_intent_le_keys(0, 1, 1, 9, 0, 0, &[5u64.to_le_bytes(), 6u64.to_le_bytes()]).unwrap();
        assert_eq!(a.seq, 1_000);
        assert_eq!(w.batch().keys(0), &[5, 6]);
        assert_eq!(w.seq_next(), 1_001);
    }

    #[test]
    fn record_sizes_match_docs() {
        assert_eq!(size_of::<IntentMeta>(), 48);
        assert_eq!(size_of::<PendingBid>(), 48);
        assert_eq!(size_of::<Arrival>(), 8);
    }

    #[test]
    fn buffers_never_grow() {
        let c = cfg(32);
        let mut w = Window::new(c, 0, 0);
        let mut a = ClosedWindow::new(&c);
        let mut b = ClosedWindow::new(&c);
        let dedup_bytes = w.dedup().heap_bytes();
        let mut nonce = 0;
        for round in 0..20u64 {
            // Bounded, so a table that refuses everything fails the test instead of hanging.
            for _ in 0..64 {
                if w.is_full() {
                    break;
                }
                nonce += 1;
                let _ = if nonce % 3 == 0 {
                    bid(&mut w, round, nonce % 5, nonce)
                } else {
                    intent(&mut w, round, nonce % 5, nonce)
                };
            }
            let out = if round % 2 == 0 { &mut a } else { &mut b };
            assert!(w.poll_close(round, out));
            assert_eq!(out.batch().records_max(), 32);
            assert!(out.bids_mut().capacity() == c.bids_max);
            assert_eq!(w.batch().records_max(), 32);
            assert_eq!(w.dedup().heap_bytes(), dedup_bytes);
            assert!(w.dedup().len() <= w.dedup().capacity());
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Intent { client_id: u64, nonce: u64, keys_len: usize },
        Bid { client_id: u64, nonce: u64 },
        CancelSeq { client_id: u64, pick: usize, bid: bool },
        CancelNonce { client_id: u64, nonce: u64, bid: bool },
        Advance { dt_ns: u64 },
        Drain,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u64..3, 0u64..40, 1usize..65)
                .prop_map(|(client_id, nonce, keys_len)| Op::Intent { client_id, nonce, keys_len }),
            3 => (0u64..3, 0u64..40).prop_map(|(client_id, nonce)| Op::Bid { client_id, nonce }),
            2 => (0u64..3, any::<usize>(), any::<bool>())
                .prop_map(|(client_id, pick, bid)| Op::CancelSeq { client_id, pick, bid }),
            1 => (0u64..3, 0u64..40, any::<bool>())
                .prop_map(|(client_id, nonce, bid)| Op::CancelNonce { client_id, nonce, bid }),
            2 => (0u64..25 * MS).prop_map(|dt_ns| Op::Advance { dt_ns }),
            1 => Just(Op::Drain),
        ]
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Rec {
        kind: RecordKind,
        client_id: u64,
        nonce: u64,
        window_id: u64,
        cancelled: bool,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Driven like the facade does (close when due, close and retry on a full window):
        /// every accepted, uncancelled record appears in exactly one closed window, in seq
        /// order; window ids are contiguous; dedup agrees with a reference model.
        #[test]
        fn no_record_lost_and_dedup_exact(
            records_max in 1usize..8,
            bids_max_pick in 0usize..8,
            keys_max_extra in 0usize..32,
            horizon in 1u32..4,
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let c = WindowConfig {
                window_ns: 10 * MS,
                records_max,
                keys_max: (64 + keys_max_extra).min(records_max * 64),
                bids_max: bids_max_pick.min(records_max),
                dedup_horizon_windows: horizon,
                first_seq: 1,
                clients_max: 64,
            };
            let mut now = 5u64;
            let mut w = Window::new(c, 100, now);
            let mut out = ClosedWindow::new(&c);
            let mut accepted: Vec<(u64, Rec)> = Vec::new(); // (seq, record)
            let mut last_window: HashMap<(u64, u64), u64> = HashMap::new();
            let mut closed_windows: Vec<u64> = Vec::new();
            let mut seen: HashMap<u64, u64> = HashMap::new(); // seq -> closed window
            let dedup_capacity = w.dedup().capacity();

            let collect = |out: &ClosedWindow, seen: &mut HashMap<u64, u64>, closed: &mut Vec<u64>| {
                if let Some(last) = closed.last() {
                    assert_eq!(out.window_id, last + 1);
                }
                closed.push(out.window_id);
                let (i, b) = seqs(out);
                assert!(i.windows(2).all(|p| p[0] < p[1]));
                assert!(b.windows(2).all(|p| p[0] < p[1]));
                for s in i.iter().chain(&b) {
                    assert!(*s >= out.first_seq && *s < out.seq_end);
                    assert!(seen.insert(*s, out.window_id).is_none(), "seq {s} closed twice");
                }
                assert_eq!(out.intents_count + out.bids_count + out.cancelled_count,
                    (out.seq_end - out.first_seq) as usize);
            };

            for op in ops {
                if w.poll_close(now, &mut out) {
                    collect(&out, &mut seen, &mut closed_windows);
                }
                match op {
                    Op::Intent { client_id, nonce, .. } | Op::Bid { client_id, nonce } => {
                        let is_bid = matches!(op, Op::Bid { .. });
                        let keys_len = if let Op::Intent { keys_len, .. } = op { keys_len } else { 0 };
                        let keys: Vec<u64> = (0..keys_len as u64).collect();
                        let mut retried = false;
                        loop {
                            let wid = w.window_id();
                            let seen_at = last_window.get(&(client_id, nonce)).copied();
                            let dup = seen_at.is_some_and(|l| wid - l < u64::from(horizon));
                            let replay_after_horizon = seen_at.is_some_and(|l| wid - l >= u64::from(horizon));
                            // The highest nonce of the client's accepted pairs that left the
                            // horizon: a high-water mark may refuse nonces up to it.
                            let mark = last_window
                                .iter()
                                .filter(|&(&(c, _), &l)| c == client_id && wid - l >= u64::from(horizon))
                                .map(|(&(_, n), _)| n)
                                .max();
                            let r = if is_bid {
                                bid(&mut w, now, client_id, nonce)
                            } else {
                                w.handle_intent(now, client_id, nonce, 7, 0, now, &keys)
                            };
                            match r {
                                Err(Reason::Overloaded) => {
                                    prop_assert!(w.is_full());
                                    prop_assert!(!retried || (is_bid && c.bids_max == 0),
                                        "refused by an empty window");
                                    if retried { break; }
                                    w.close(now, &mut out);
                                    collect(&out, &mut seen, &mut closed_windows);
                                    retried = true;
                                }
                                Err(Reason::DuplicateNonce) => {
                                    prop_assert!(dup, "false positive");
                                    break;
                                }
                                Err(Reason::NonceExpired) => {
                                    prop_assert!(mark.is_some_and(|m| nonce <= m), "refused above every expired nonce");
                                    break;
                                }
                                Ok(a) => {
                                    prop_assert!(!dup, "false negative");
                                    prop_assert!(!replay_after_horizon, "a pair accepted twice");
                                    prop_assert_eq!(a.window_id, wid);
                                    prop_assert_eq!(a.seq, accepted.len() as u64 + 1);
                                    last_window.insert((client_id, nonce), wid);
                                    accepted.push((a.seq, Rec {
                                        kind: if is_bid { RecordKind::Bid } else { RecordKind::Intent },
                                        client_id, nonce, window_id: wid, cancelled: false,
                                    }));
                                    break;
                                }
                                Err(other) => prop_assert!(false, "unexpected {other:?}"),
                            }
                        }
                    }
                    Op::CancelSeq { client_id, pick, bid } => {
                        let seq = if accepted.is_empty() { 1 } else { accepted[pick % accepted.len()].0 };
                        let kind = if bid { RecordKind::Bid } else { RecordKind::Intent };
                        let expect_ok = accepted.get(seq as usize - 1).is_some_and(|(_, r)| {
                            r.kind == kind && r.client_id == client_id
                                && r.window_id == w.window_id() && !r.cancelled
                        });
                        let r = if bid { w.cancel_bid_seq(client_id, seq) } else { w.cancel_intent_seq(client_id, seq) };
                        prop_assert_eq!(r, if expect_ok { Ok(()) } else { Err(Reason::NotFound) });
                        if expect_ok { accepted[seq as usize - 1].1.cancelled = true; }
                    }
                    Op::CancelNonce { client_id, nonce, bid } => {
                        let kind = if bid { RecordKind::Bid } else { RecordKind::Intent };
                        let target = accepted.iter().position(|(_, r)| {
                            r.kind == kind && r.client_id == client_id && r.nonce == nonce
                                && r.window_id == w.window_id() && !r.cancelled
                        });
                        let r = if bid { w.cancel_bid_nonce(client_id, nonce) } else { w.cancel_intent_nonce(client_id, nonce) };
                        prop_assert_eq!(r, match target { Some(t) => Ok(accepted[t].0), None => Err(Reason::NotFound) });
                        if let Some(t) = target { accepted[t].1.cancelled = true; }
                    }
                    Op::Advance { dt_ns } => now += dt_ns,
                    Op::Drain => {
                        w.close(now, &mut out);
                        collect(&out, &mut seen, &mut closed_windows);
                    }
                }
                prop_assert!(w.dedup().len() <= dedup_capacity);
                prop_assert_eq!(w.dedup().capacity(), dedup_capacity);
                prop_assert!(w.deadline_ns() > w.opened_ns());
            }
            w.close(now, &mut out);
            collect(&out, &mut seen, &mut closed_windows);

            for (seq, r) in &accepted {
                if r.cancelled {
                    prop_assert!(!seen.contains_key(seq), "cancelled seq {} closed", seq);
                } else {
                    prop_assert_eq!(seen.get(seq), Some(&r.window_id), "seq {} lost", seq);
                }
            }
            prop_assert_eq!(seen.len(), accepted.iter().filter(|(_, r)| !r.cancelled).count());
            prop_assert_eq!(closed_windows.first(), Some(&100));
        }
    }
}
