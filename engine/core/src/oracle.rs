//! The test oracle: the engine's rules written once more, plainly, in one thread, on
//! [`Window`] (admission, de-duplication, cancels) and [`Packer`] / [`Book`] directly.
//!
//! Nothing ships on it: `flashpointd`, the `fpn` CLI and the offline [`crate::Engine`] all
//! admit records through `shard::IntakeCore`. The tests compare the sharded engine (the
//! daemon, [`crate::Pipeline`] under any schedule, [`crate::Engine`]) against this one, so a
//! rule that drifts in either shows up as a difference. Same call order as
//! [`crate::Engine`].

use fpn_wire::{CANCEL_BY_NONCE, Reason, Receipt, RecordRef, decode_frame, validate_bid, validate_cancel};

use crate::auction::{Bid, Book};
use crate::economics::Packer;
use crate::engine::{EngineConfig, EngineConfigError, EngineCounters, WindowResult, WindowSummary};
use crate::window::{CloseReason, ClosedWindow, Window};

/// The reference engine. See the module doc.
#[derive(Debug)]
pub struct OracleEngine {
    config: EngineConfig,
    window: Window,
    closed: ClosedWindow,
    packer: Packer,
    book: Book,
    result: WindowResult,
    /// A window closed because it was full, waiting for `poll_window`.
    result_pending: bool,
    counters: EngineCounters,
}

impl OracleEngine {
    /// Validates `config` and allocates every buffer; nothing allocates afterwards.
    pub fn new(config: EngineConfig, now_ns: u64) -> Result<OracleEngine, EngineConfigError> {
        config.window.validate()?;
        if config.book_bids_max == 0 {
            return Err(EngineConfigError::BookBidsMax);
        }
        let top_k_max = config.auction.top_k;
        config.auction.validate(top_k_max)?;
        let w = config.window;
        Ok(OracleEngine {
            window: Window::new(w, 1, now_ns),
            closed: ClosedWindow::new(&w),
            packer: Packer::new(config.builder, w.records_max, w.keys_max, config.improved),
            book: Book::with_capacity(config.book_bids_max, top_k_max),
            result: WindowResult::with_capacity(w.records_max, &config.auction),
            result_pending: false,
            counters: EngineCounters::default(),
            config,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn counters(&self) -> &EngineCounters {
        &self.counters
    }

    /// The open auction book.
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// The id of the open window.
    pub fn window_id(&self) -> u64 {
        self.window.window_id()
    }

    /// When the open window is due: call [`Engine::poll_window`] at or after this time.
    pub fn poll_timeout(&self) -> u64 {
        if self.result_pending { 0 } else { self.window.deadline_ns() }
    }

    /// Decodes one frame and answers each record through `receipt`. A frame whose structure
    /// is invalid is refused whole: `Err(reason)`, and no record of it is taken.
    pub fn handle_frame(
        &mut self,
        now_ns: u64,
        rx_ns: u64,
        bytes: &[u8],
        mut receipt: impl FnMut(Receipt),
    ) -> Result<(), Reason> {
        self.counters.frames_total += 1;
        let records = match decode_frame(bytes) {
            Ok(records) => records,
            Err(reason) => {
                self.counters.frames_rejected_total += 1;
                return Err(reason);
            }
        };
        for record in records {
            receipt(self.handle_record(now_ns, rx_ns, record));
        }
        Ok(())
    }

    /// Takes one decoded record and returns its receipt.
    pub fn handle_record(&mut self, now_ns: u64, rx_ns: u64, record: RecordRef<'_>) -> Receipt {
        let (receipt, admitted) = self.admit(now_ns, rx_ns, record);
        match receipt.status {
            Ok(()) => self.counters.records_accepted_total += 1,
            Err(reason) => self.counters.records_rejected_total[reason.code() as usize - 1] += 1,
        }
        debug_assert!(admitted || receipt.status.is_err());
        receipt
    }

    fn admit(&mut self, now_ns: u64, rx_ns: u64, record: RecordRef<'_>) -> (Receipt, bool) {
        let mut receipt = Receipt::for_record(record, rx_ns);
        let (client_id, nonce) = (receipt.client_id, receipt.nonce);
        let refuse = |mut r: Receipt, reason| {
            r.status = Err(reason);
            (r, false)
        };
        if self.result_pending {
            // A full window closed and its result has not been collected yet; taking more
            // would need a second result buffer. The driver polls, then the client retries.
            return refuse(receipt, Reason::Overloaded);
        }
        if self.window.is_full() {
            self.close_window(now_ns, CloseReason::Full);
            self.result_pending = true;
            return refuse(receipt, Reason::Overloaded);
        }
        let admitted = match record {
            RecordRef::Intent(i) => match i.validate() {
                Err(reason) => Err(reason),
                Ok(()) => self.window.handle_intent_le_keys(
                    now_ns,
                    client_id,
                    nonce,
                    i.fixed.profit.get(),
                    i.fixed.priority.get(),
                    rx_ns,
                    i.keys_le(),
                ),
            },
            RecordRef::Bid(b) => match validate_bid(b) {
                Err(reason) => Err(reason),
                // Bids join the book when their window closes; refuse here what the book
                // could not take then, so an accepted bid is never lost.
                Ok(()) if self.book.len() + self.window.bids().len() >= self.config.book_bids_max => {
                    Err(Reason::BookFull)
                }
                Ok(()) => {
                    self.window.handle_bid(now_ns, client_id, nonce, b.amount.get(), b.priority.get(), rx_ns)
                }
            },
            RecordRef::Cancel(c) => {
                return match validate_cancel(c).and_then(|()| self.cancel(c.mode, client_id, c.target.get()))
                {
                    Ok(seq) => {
                        receipt.seq = seq;
                        receipt.window_id = self.window.window_id();
                        (receipt, true)
                    }
                    Err(reason) => refuse(receipt, reason),
                };
            }
            RecordRef::Receipt(_)
            | RecordRef::Block(_)
            | RecordRef::Clearing(_)
            | RecordRef::Proof(_)
            | RecordRef::Watermark(_) => Err(Reason::UnknownKind),
        };
        match admitted {
            Ok(a) => {
                receipt.seq = a.seq;
                receipt.window_id = a.window_id;
                (receipt, true)
            }
            Err(reason) => refuse(receipt, reason),
        }
    }

    /// Cancels an open intent or bid (the window's first, then the book's). Returns the
    /// cancelled record's sequence id.
    fn cancel(&mut self, mode: u8, client_id: u64, target: u64) -> Result<u64, Reason> {
        if mode == CANCEL_BY_NONCE {
            let nonce = target;
            if let Ok(seq) = self.window.cancel_intent_nonce(client_id, nonce) {
                return Ok(seq);
            }
            if let Ok(seq) = self.window.cancel_bid_nonce(client_id, nonce) {
                return Ok(seq);
            }
            match self.book.cancel_nonce(client_id, nonce) {
                Ok(b) => Ok(b.seq),
                // The pair was accepted in a window that has closed (the de-duplication table
                // still remembers it) and is not an open bid.
                Err(_)
                    if self
                        .window
                        .dedup()
                        .get(client_id, nonce)
                        .is_some_and(|e| e.window_id < self.window.window_id()) =>
                {
                    Err(Reason::TooLate)
                }
                Err(reason) => Err(reason),
            }
        } else {
            let seq = target;
            if self.window.cancel_intent_seq(client_id, seq).is_ok()
                || self.window.cancel_bid_seq(client_id, seq).is_ok()
            {
                return Ok(seq);
            }
            match self.book.cancel_seq(client_id, seq) {
                Ok(b) => Ok(b.seq),
                // An intent's window has closed once its seq is below the open window's.
                Err(_) if seq < self.window.window_first_seq() && !self.is_open_bid(seq) => {
                    Err(Reason::TooLate)
                }
                Err(reason) => Err(reason),
            }
        }
    }

    fn is_open_bid(&self, seq: u64) -> bool {
        self.book.get(seq).is_some()
    }

    /// Closes the open window if it is due (or was closed full) and returns its result.
    pub fn poll_window(&mut self, now_ns: u64) -> Option<&WindowResult> {
        if self.result_pending {
            self.result_pending = false;
            return Some(&self.result);
        }
        if !self.window.is_due(now_ns) {
            return None;
        }
        self.close_window(now_ns, CloseReason::Deadline);
        Some(&self.result)
    }

    /// Closes the open window now, whatever its deadline (shutdown, end of input), and
    /// returns its result. A result still pending from a full window comes first.
    pub fn drain(&mut self, now_ns: u64) -> &WindowResult {
        if self.result_pending {
            self.result_pending = false;
            return &self.result;
        }
        self.close_window(now_ns, CloseReason::Drain);
        &self.result
    }

    fn close_window(&mut self, now_ns: u64, reason: CloseReason) {
        // The window tells Full, Deadline and Drain apart itself.
        debug_assert!(reason != CloseReason::Full || self.window.is_full());
        self.window.close(now_ns, &mut self.closed);
        let closed = &self.closed;
        let window_id = closed.window_id;
        self.packer.pack(window_id, closed.batch(), self.config.fee_rate, &mut self.result.block);
        for pending in closed.bids() {
            let bid = Bid {
                seq: pending.seq,
                client_id: pending.client_id,
                nonce: pending.nonce,
                amount: pending.amount,
                priority: pending.priority,
                rx_ns: pending.rx_ns,
            };
            let taken = self.book.handle_bid(bid);
            // Admission reserved the room (see `admit`), so the book always takes it.
            assert!(taken.is_ok(), "book refused an admitted bid: {taken:?}");
        }
        self.book.clear(now_ns, window_id, &self.config.auction, &mut self.result.clearing);
        self.counters.bids_expired_total += self.result.clearing.expired_count as u64;
        self.counters.windows_closed_total += 1;
        self.result.window = WindowSummary {
            window_id,
            opened_ns: closed.opened_ns,
            closed_ns: closed.closed_ns,
            reason: closed.reason,
            intents_count: closed.batch().len(),
            bids_count: closed.bids().len(),
            cancelled_count: closed.cancelled_count,
        };
    }
}
