//! Admission on one intake shard: validation, dedup, seqs, routing, open-window cancels.

use std::collections::VecDeque;

use fpn_wire::{CANCEL_BY_NONCE, Reason, Receipt, RecordRef, decode_frame, validate_bid, validate_cancel};

use crate::batch::IntentMeta;
use crate::clock::WindowClose;
use crate::dedup::Dedup;
use crate::shard::ShardConfig;
use crate::shard::msg::{BookCancel, IntakeSink, IntentMsg, ToBuilder, ToMerger};
use crate::shard::route::{Route, Router};
use crate::window::PendingBid;

/// How many records ahead of the one being admitted a frame's driver calls
/// [`IntakeCore::prefetch`] (see [`fpn_wire::Records::with_lookahead`]): enough misses in flight to cover DRAM latency, few enough to stay
/// within the core's line-fill buffers.
pub const PREFETCH_AHEAD: usize = 8;

/// Where an open-window record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Shard(usize),
    Merger,
}

/// One record this intake accepted in the open window. (Its kind does not matter: a cancel
/// by seq takes an intent or a bid alike, as in the engine.)
#[derive(Debug, Clone, Copy)]
struct Arrival {
    dest: Dest,
    client_id: u64,
    cancelled: bool,
}

/// Window close markers are still waiting for room in some queue; the intake refuses
/// records (`Overloaded`) until [`IntakeCore::poll_pending`] has delivered them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosePending;

/// Intake shard `index` of `N`: takes frames, answers receipts, and routes accepted records
/// to the builder shards and the merger.
///
/// Call order: [`IntakeCore::new`]; then, for input, [`IntakeCore::handle_frame`] /
/// [`IntakeCore::handle_record`]; at every window close (the shared [`crate::shard::WindowClock`]),
/// [`IntakeCore::handle_window`]; after an `Err(ClosePending)`, [`IntakeCore::poll_pending`]
/// until it is `Ok`; whenever the merger publishes this intake's book count,
/// [`IntakeCore::set_book_open`]. After each frame, close the window early if
/// [`IntakeCore::wants_close`] (as the engine closes a full window).
///
/// Receipts are the engine's: same checks in the same order. A record's nonce is
/// remembered before it is pushed to its queue and forgotten again if the queue is full
/// (`Dedup::undo_insert`), so a full queue answers `Overloaded` and the client may retry the
/// same nonce.
#[derive(Debug)]
pub struct IntakeCore {
    index: usize,
    intakes_n: usize,
    first_seq: u64,
    router: Router,
    window_id: u64,
    dedup: Dedup,
    /// Records this intake has accepted ever; the next seq is `seq_of(local_next)`.
    local_next: u64,
    /// `local_next` when the open window opened.
    local_at_open: u64,
    arrivals: Vec<Arrival>,
    records_cap: usize,
    keys_cap: usize,
    bids_cap: usize,
    keys_len: usize,
    bids_len: usize,
    /// Latched when a record is refused for lack of key or bid room (as `Window` does).
    exhausted: bool,
    book_share: usize,
    /// The merger's last published count of open book bids from this intake, and how many
    /// of this intake's bids it had taken in by then.
    book_open: usize,
    book_taken_total: u64,
    bids_admitted_total: u64,
    /// Closes not yet delivered everywhere; `sent[d]` of them went to destination `d`
    /// (`0..S` builders, `S` the merger).
    pending: VecDeque<WindowClose>,
    pending_max: usize,
    sent: Vec<usize>,
}

impl IntakeCore {
    /// Intake `index` of `config.intakes_n`, starting in window `first_window_id`. Allocates
    /// everything (the dedup table is `dedup_horizon_windows × records_cap` entries).
    /// Panics if `config` does not validate (check with [`ShardConfig::validate`] first).
    pub fn new(config: &ShardConfig, index: usize, first_window_id: u64) -> IntakeCore {
        config.validate().expect("valid ShardConfig");
        assert!(index < config.intakes_n, "intake index out of range");
        let w = &config.engine.window;
        let records_cap = config.records_cap();
        IntakeCore {
            index,
            intakes_n: config.intakes_n,
            first_seq: w.first_seq,
            router: Router::new(config.shards_n),
            window_id: first_window_id,
            dedup: Dedup::with_clients(w.dedup_horizon_windows, records_cap, first_window_id, w.clients_max),
            local_next: 0,
            local_at_open: 0,
            arrivals: Vec::with_capacity(records_cap),
            records_cap,
            keys_cap: config.keys_cap(),
            bids_cap: config.bids_cap(),
            keys_len: 0,
            bids_len: 0,
            exhausted: false,
            book_share: config.book_share(),
            book_open: 0,
            book_taken_total: 0,
            bids_admitted_total: 0,
            pending: VecDeque::with_capacity(config.closes_pending_max),
            pending_max: config.closes_pending_max,
            sent: vec![0; config.shards_n + 1],
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// Recovery (`fpn-log`): this intake, new at its first window, resumes after a log:
    /// sequence ids continue after `seq_max` (this intake's highest, 0 if none), the
    /// de-duplication table holds `pairs` (`(client, nonce, window, seq)` of the last horizon,
    /// in window order), the high-water marks `marks`, and the merger's book holds
    /// `book_open` of this intake's bids. Clients the table cannot take are counted in the
    /// result: `Err(n)`.
    pub fn restore(
        &mut self,
        seq_max: u64,
        pairs: impl IntoIterator<Item = (u64, u64, u64, u64)>,
        marks: impl IntoIterator<Item = (u64, u64)>,
        book_open: usize,
    ) -> Result<(), usize> {
        assert_eq!(self.local_next, 0, "restore a fresh intake");
        let n = self.intakes_n as u64;
        if seq_max >= self.first_seq {
            let rel = seq_max - self.first_seq;
            debug_assert_eq!(rel % n, self.index as u64, "a seq of another intake");
            self.local_next = rel / n + 1;
            self.local_at_open = self.local_next;
        }
        let mut refused = 0;
        for (client, mark) in marks {
            if self.dedup.restore_high_water(client, mark).is_err() {
                refused += 1;
            }
        }
        for (client, nonce, window, seq) in pairs {
            debug_assert!(window <= self.window_id);
            if self.dedup.restore_pair(client, nonce, window, seq).is_err() {
                refused += 1;
            }
        }
        self.book_open = book_open;
        if refused == 0 { Ok(()) } else { Err(refused) }
    }

    /// The open window's id.
    pub fn window_id(&self) -> u64 {
        self.window_id
    }

    /// The seq of this intake's `local`-th record: `first_seq + local × N + index`. Unique
    /// across intakes, increasing per intake.
    #[inline]
    fn seq_of(&self, local: u64) -> u64 {
        self.first_seq + local * self.intakes_n as u64 + self.index as u64
    }

    /// The open-window arrival of `seq`, if this intake handed `seq` out in this window.
    fn open_arrival(&self, seq: u64) -> Option<usize> {
        let rel = seq.checked_sub(self.first_seq)?;
        let n = self.intakes_n as u64;
        if rel % n != self.index as u64 {
            return None;
        }
        let local = rel / n;
        (local >= self.local_at_open && local < self.local_next)
            .then(|| (local - self.local_at_open) as usize)
    }

    /// The open window holds its per-intake cap of records, or ran out of key or bid room:
    /// close it now (the engine closes a full window as `Full`). Records are refused until then.
    pub fn wants_close(&self) -> bool {
        self.arrivals.len() >= self.records_cap || self.exhausted
    }

    /// Whether close markers wait for queue room (see [`ClosePending`]).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The merger's published count of open book bids from this intake, and how many of
    /// this intake's bids it had taken in (cumulative) when it counted. Bids admitted since
    /// are `bids_admitted - taken`; a bid is refused `BookFull` when
    /// `open + (admitted - taken) >= book_bids_max / N`, so the book always has room.
    pub fn set_book_open(&mut self, open: usize, taken_total: u64) {
        debug_assert!(taken_total <= self.bids_admitted_total);
        self.book_open = open;
        self.book_taken_total = taken_total;
    }

    /// Decodes one frame and answers each record through `receipt`, as `Engine::handle_frame`.
    /// A cancel of a book bid is answered later, by the merger.
    pub fn handle_frame(
        &mut self,
        rx_ns: u64,
        bytes: &[u8],
        sink: &mut impl IntakeSink,
        mut receipt: impl FnMut(Receipt),
    ) -> Result<(), Reason> {
        for (record, ahead) in decode_frame(bytes)?.with_lookahead(PREFETCH_AHEAD) {
            for r in ahead {
                self.prefetch(r);
            }
            if let Some(r) = self.handle_record(rx_ns, record, sink) {
                receipt(r);
            }
        }
        Ok(())
    }

    /// Hints the de-duplication slot `record` will probe into the cache. The table is far
    /// larger than the caches and each (client, nonce) lands on a random slot, so without
    /// the hint every admitted record waits for one DRAM miss; a caller that has a frame in
    /// hand calls this [`PREFETCH_AHEAD`] records before [`IntakeCore::handle_record`]
    /// (`handle_frame` does). Only a hint: it changes nothing.
    #[inline]
    pub fn prefetch(&self, record: RecordRef<'_>) {
        match record {
            RecordRef::Intent(i) => self.dedup.prefetch(i.fixed.client_id.get(), i.fixed.nonce.get()),
            RecordRef::Bid(b) => self.dedup.prefetch(b.client_id.get(), b.nonce.get()),
            _ => {}
        }
    }

    /// Takes one decoded record. `None`: the record is a cancel forwarded to the merger as a
    /// [`BookCancel`], which answers it.
    pub fn handle_record(
        &mut self,
        rx_ns: u64,
        record: RecordRef<'_>,
        sink: &mut impl IntakeSink,
    ) -> Option<Receipt> {
        let mut receipt = Receipt::for_record(record, rx_ns);
        // The engine refuses everything while its window is full, before validation.
        if self.has_pending() || self.wants_close() {
            receipt.status = Err(Reason::Overloaded);
            return Some(receipt);
        }
        let (client_id, nonce) = (receipt.client_id, receipt.nonce);
        let admitted = match record {
            RecordRef::Intent(i) => i.validate().and_then(|()| {
                let keys_le = i.keys_le();
                let meta = IntentMeta {
                    seq: 0,
                    client_id,
                    nonce,
                    profit: i.fixed.profit.get(),
                    priority: i.fixed.priority.get(),
                    rx_ns,
                };
                self.admit_intent(meta, keys_le, sink)
            }),
            RecordRef::Bid(b) => validate_bid(b).and_then(|()| {
                let bid = PendingBid {
                    seq: 0,
                    client_id,
                    nonce,
                    amount: b.amount.get(),
                    priority: b.priority.get(),
                    rx_ns,
                };
                self.admit_bid(bid, sink)
            }),
            RecordRef::Cancel(c) => {
                let by_nonce = c.mode == CANCEL_BY_NONCE;
                let target = c.target.get();
                return match validate_cancel(c) {
                    Err(reason) => {
                        receipt.status = Err(reason);
                        Some(receipt)
                    }
                    Ok(()) => self.cancel(by_nonce, client_id, target, receipt, sink),
                };
            }
            RecordRef::Receipt(_)
            | RecordRef::Block(_)
            | RecordRef::Clearing(_)
            | RecordRef::Proof(_)
            | RecordRef::Watermark(_) => Err(Reason::UnknownKind),
        };
        match admitted {
            Ok(seq) => {
                receipt.seq = seq;
                receipt.window_id = self.window_id;
            }
            Err(reason) => receipt.status = Err(reason),
        }
        Some(receipt)
    }

    fn admit_intent(
        &mut self,
        mut meta: IntentMeta,
        keys_le: &[[u8; 8]],
        sink: &mut impl IntakeSink,
    ) -> Result<u64, Reason> {
        if self.keys_len + keys_le.len() > self.keys_cap {
            self.exhausted = true;
            return Err(Reason::Overloaded);
        }
        meta.seq = self.seq_of(self.local_next);
        // Remembered now (`DuplicateNonce`, `NonceExpired`), forgotten again below if the
        // record cannot be queued, so the client may retry the same nonce.
        self.dedup.insert(meta.client_id, meta.nonce, self.window_id, meta.seq)?;
        let keys = keys_le.iter().map(|k| u64::from_le_bytes(*k));
        let msg = IntentMsg::new(self.window_id, meta, keys.clone());
        let route = self.router.route(keys.clone());
        // All of the intent's slots, or none of them. (Asking for room reads the consumer's
        // position, a line the other core writes: only for intents that need it.)
        if msg.slots() > 1 {
            let room = match route {
                Route::Local(s) => sink.builder_room(s),
                Route::Cross => sink.merger_room(),
            };
            if room < msg.slots() {
                self.dedup.undo_insert(meta.client_id, meta.nonce);
                return Err(Reason::Overloaded);
            }
        }
        let first = match route {
            Route::Local(s) => sink.to_builder(s, ToBuilder::Intent(msg)).is_ok(),
            Route::Cross => sink.to_merger(ToMerger::Cross(msg)).is_ok(),
        };
        if !first {
            self.dedup.undo_insert(meta.client_id, meta.nonce);
            return Err(Reason::Overloaded);
        }
        let rest = match route {
            Route::Local(s) => IntentMsg::more(keys).all(|m| sink.to_builder(s, ToBuilder::More(m)).is_ok()),
            Route::Cross => IntentMsg::more(keys).all(|m| sink.to_merger(ToMerger::More(m)).is_ok()),
        };
        assert!(rest, "a queue refused a slot its room promised");
        let dest = match route {
            Route::Local(s) => Dest::Shard(s),
            Route::Cross => Dest::Merger,
        };
        self.keys_len += keys_le.len();
        self.accept(meta.client_id, dest);
        Ok(meta.seq)
    }

    fn admit_bid(&mut self, mut bid: PendingBid, sink: &mut impl IntakeSink) -> Result<u64, Reason> {
        // Bids join the book when their window closes; refuse here what this intake's share
        // of the book could not take then, so an accepted bid is never lost.
        let unconfirmed = (self.bids_admitted_total - self.book_taken_total) as usize;
        if self.book_open + unconfirmed >= self.book_share {
            return Err(Reason::BookFull);
        }
        if self.bids_len >= self.bids_cap {
            self.exhausted = true;
            return Err(Reason::Overloaded);
        }
        bid.seq = self.seq_of(self.local_next);
        self.dedup.insert(bid.client_id, bid.nonce, self.window_id, bid.seq)?;
        if sink.to_merger(ToMerger::Bid { window_id: self.window_id, bid }).is_err() {
            self.dedup.undo_insert(bid.client_id, bid.nonce);
            return Err(Reason::Overloaded);
        }
        self.bids_len += 1;
        self.bids_admitted_total += 1;
        self.accept(bid.client_id, Dest::Merger);
        Ok(bid.seq)
    }

    /// The record is in its queue (its pair remembered): note the arrival.
    fn accept(&mut self, client_id: u64, dest: Dest) {
        debug_assert!(self.arrivals.len() < self.arrivals.capacity());
        self.arrivals.push(Arrival { dest, client_id, cancelled: false });
        self.local_next += 1;
    }

    /// The engine's cancel rules: the open window first (answered here), then the book
    /// (answered by the merger).
    fn cancel(
        &mut self,
        by_nonce: bool,
        client_id: u64,
        target: u64,
        mut receipt: Receipt,
        sink: &mut impl IntakeSink,
    ) -> Option<Receipt> {
        let open = if by_nonce {
            // An open-window record of this pair, not cancelled yet; else the book decides.
            self.dedup
                .get(client_id, target)
                .filter(|e| e.window_id == self.window_id)
                .and_then(|e| self.open_arrival(e.value).map(|k| (k, e.value)))
                .filter(|&(k, _)| !self.arrivals[k].cancelled)
        } else {
            match self.open_arrival(target) {
                Some(k) => {
                    let a = self.arrivals[k];
                    if a.cancelled || a.client_id != client_id {
                        // Not in the book either (the book holds closed windows' bids only).
                        receipt.status = Err(Reason::NotFound);
                        return Some(receipt);
                    }
                    Some((k, target))
                }
                None => None,
            }
        };
        if let Some((k, seq)) = open {
            let a = self.arrivals[k];
            let sent = match a.dest {
                Dest::Shard(s) => {
                    sink.to_builder(s, ToBuilder::Cancel { window_id: self.window_id, seq }).is_ok()
                }
                Dest::Merger => {
                    sink.to_merger(ToMerger::CancelPending { window_id: self.window_id, seq }).is_ok()
                }
            };
            if !sent {
                receipt.status = Err(Reason::Overloaded);
                return Some(receipt);
            }
            self.arrivals[k].cancelled = true;
            receipt.seq = seq;
            receipt.window_id = self.window_id;
            return Some(receipt);
        }
        let n = self.intakes_n as u64;
        let own_future = !by_nonce
            && target >= self.first_seq
            && (target - self.first_seq) % n == self.index as u64
            && (target - self.first_seq) / n >= self.local_next;
        if own_future {
            // Not handed out yet, so neither open nor in the book.
            receipt.status = Err(Reason::NotFound);
            return Some(receipt);
        }
        // A closed window's record, unless the book holds it: by seq, below this intake's open
        // window (for another intake's seq this compares positions in the two intakes'
        // sequences; see docs/sharding.md); by nonce, a pair the de-duplication table
        // remembers from an earlier window (the open window's was handled above).
        let too_late_if_absent = if by_nonce {
            self.dedup.get(client_id, target).is_some_and(|e| e.window_id < self.window_id)
        } else {
            target < self.seq_of(self.local_at_open).saturating_sub(self.index as u64)
        };
        receipt.window_id = self.window_id;
        let msg =
            ToMerger::CancelBook(BookCancel { client_id, by_nonce, target, too_late_if_absent, receipt });
        if sink.to_merger(msg).is_err() {
            receipt.status = Err(Reason::Overloaded);
            receipt.window_id = 0;
            return Some(receipt);
        }
        None
    }

    /// Closes the open window `close.window_id` on this intake: sends `Close` to every
    /// builder shard and to the merger and opens the next window. A marker that does not fit
    /// its queue stays pending (never dropped): `Err(ClosePending)`, records are refused
    /// `Overloaded`, and the driver calls [`IntakeCore::poll_pending`] until `Ok`.
    ///
    /// Panics if more than `closes_pending_max` closes are pending (the driver did not poll).
    pub fn handle_window(
        &mut self,
        close: WindowClose,
        sink: &mut impl IntakeSink,
    ) -> Result<(), ClosePending> {
        assert_eq!(close.window_id, self.window_id, "windows close in order");
        assert!(self.pending.len() < self.pending_max, "closes_pending_max exceeded: poll_pending");
        self.pending.push_back(close);
        self.window_id += 1;
        self.local_at_open = self.local_next;
        self.arrivals.clear();
        self.keys_len = 0;
        self.bids_len = 0;
        self.exhausted = false;
        self.dedup.advance(self.window_id);
        self.poll_pending(sink)
    }

    /// Delivers pending close markers, in order per queue. `Ok` once none is left.
    pub fn poll_pending(&mut self, sink: &mut impl IntakeSink) -> Result<(), ClosePending> {
        let shards_n = self.sent.len() - 1;
        for d in 0..self.sent.len() {
            while self.sent[d] < self.pending.len() {
                let close = self.pending[self.sent[d]];
                let r = if d < shards_n {
                    sink.to_builder(d, ToBuilder::Close { window_id: close.window_id }).is_ok()
                } else {
                    sink.to_merger(ToMerger::Close(close)).is_ok()
                };
                if !r {
                    break;
                }
                self.sent[d] += 1;
            }
        }
        while !self.pending.is_empty() && self.sent.iter().all(|&s| s > 0) {
            self.pending.pop_front();
            for s in &mut self.sent {
                *s -= 1;
            }
        }
        if self.pending.is_empty() { Ok(()) } else { Err(ClosePending) }
    }
}
