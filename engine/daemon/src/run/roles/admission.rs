//! The one admission path of an intake: every record that enters the engine, whichever
//! entry point it came through (`POST /submit`, a QUIC or WebTransport datagram or stream),
//! is admitted by
//! [`Admission::admit`], which hands it to the intake's sans-IO `IntakeCore` (validation,
//! de-duplication, sequence id, routing onto the rings to the builder shards and the
//! merger) and counts its receipt. The offline model (`fpn_engine::Engine`) drives the same
//! `IntakeCore`.
//!
//! A record `IntakeCore` cannot answer itself (a cancel of a bid in the auction book) is
//! answered later by the merger, over the merger → intake ring, in the order the intake
//! forwarded them; [`Admission`] remembers where each came from ([`Origin`]) so the answer
//! goes back the same way. At most as many such records are outstanding as that ring holds,
//! so the merger never meets a full ring: a cancel that finds them all outstanding is
//! refused `overloaded` before it reaches the core.

use std::collections::VecDeque;

use fpn_engine::shard::{PREFETCH_AHEAD, ToBuilder, ToMerger};
use fpn_engine::{IntakeCore, WindowClose};
use fpn_runtime::metrics::{Labels, MetricDesc, Snapshot};
use fpn_wire::{Reason, Receipt, RecordRef, decode_frame};

use crate::run::links::{IntakeRings, LogTx, TxQ};

pub static RECORDS_ACCEPTED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_records_accepted_total",
    "Records answered ok (intakes; the merger for book cancels).",
);
pub static RECORDS_REJECTED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_records_rejected_total",
    "Records refused, by reason (intakes; the merger for book cancels).",
);

/// Who sent a record the merger answers later (a book cancel): the answer goes back the
/// same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Admin,
    Quic,
    WebTransport,
}

/// Receipt counts by status, counted locally; labels made once at start-up.
#[derive(Debug)]
pub struct ReceiptCounters {
    pub accepted_total: u64,
    /// Indexed by `Reason::code() - 1`.
    pub rejected_total: [u64; Reason::ALL.len()],
    reason_labels: Vec<Labels>,
}

impl Default for ReceiptCounters {
    fn default() -> ReceiptCounters {
        ReceiptCounters {
            accepted_total: 0,
            rejected_total: [0; Reason::ALL.len()],
            reason_labels: Reason::ALL.iter().map(|r| Labels::new(&[("reason", r.as_str())])).collect(),
        }
    }
}

impl ReceiptCounters {
    #[inline]
    pub fn count(&mut self, status: Result<(), Reason>) {
        match status {
            Ok(()) => self.accepted_total += 1,
            Err(reason) => self.rejected_total[reason.code() as usize - 1] += 1,
        }
    }

    pub fn publish(&self, s: &mut Snapshot, none: &Labels) {
        s.counter(&RECORDS_ACCEPTED_TOTAL, none, self.accepted_total);
        for (i, labels) in self.reason_labels.iter().enumerate() {
            s.counter(&RECORDS_REJECTED_TOTAL, labels, self.rejected_total[i]);
        }
    }
}

/// An intake's admission: its core, its output rings, its receipt counts and the origins of
/// the records the merger will answer. See the module doc.
pub struct Admission {
    pub core: IntakeCore,
    pub to_builder: Vec<TxQ<ToBuilder>>,
    pub to_merger: TxQ<ToMerger>,
    /// The copy of what it pushes for the log role, and the log position.
    pub log: LogTx,
    /// The log role's writes fail: new records are refused `storage_unavailable` (set once
    /// per loop iteration from `Shared::log_failing`).
    pub storage_failing: bool,
    pub counters: ReceiptCounters,
    /// Where each record waiting for the merger's answer came from, in forwarding order.
    origins: VecDeque<Origin>,
    origins_max: usize,
}

impl Admission {
    /// `deferred_max`: how many records the merger may answer at once for this intake (the
    /// merger → intake ring's capacity).
    pub fn new(
        core: IntakeCore,
        to_builder: Vec<TxQ<ToBuilder>>,
        to_merger: TxQ<ToMerger>,
        log: LogTx,
        deferred_max: usize,
    ) -> Admission {
        Admission {
            core,
            to_builder,
            to_merger,
            log,
            storage_failing: false,
            counters: ReceiptCounters::default(),
            origins: VecDeque::with_capacity(deferred_max),
            origins_max: deferred_max,
        }
    }

    /// Stamps this iteration's pushes with `now_ns`.
    #[inline]
    pub fn set_now(&mut self, now_ns: u64) {
        for q in &mut self.to_builder {
            q.now_ns = now_ns;
        }
        self.to_merger.now_ns = now_ns;
    }

    /// The log position the receipt of the record admitted last waits for.
    #[inline]
    pub fn log_position(&self) -> u64 {
        self.log.pushed
    }

    /// Closes the open window on this intake: its close markers go to every builder shard and
    /// the merger; one that does not fit its ring stays pending (never dropped), and the
    /// window refuses records until [`Admission::poll_pending`] delivered it.
    pub fn apply_close(&mut self, close: WindowClose) {
        let mut sink = IntakeRings {
            to_builder: &mut self.to_builder,
            to_merger: &mut self.to_merger,
            log: &mut self.log,
        };
        let _ = self.core.handle_window(close, &mut sink);
    }

    /// Retries close markers that waited for ring room; whether none is left.
    pub fn poll_pending(&mut self) -> bool {
        let mut sink = IntakeRings {
            to_builder: &mut self.to_builder,
            to_merger: &mut self.to_merger,
            log: &mut self.log,
        };
        self.core.poll_pending(&mut sink).is_ok()
    }

    /// The open window takes no record until the close: it is full, or a close marker still
    /// waits for ring room.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.core.wants_close() || self.core.has_pending()
    }

    /// Every output ring has at least `slots` free.
    pub fn has_room(&self, slots: usize) -> bool {
        self.to_builder.iter().all(|q| q.tx.slots_free() >= slots)
            && self.to_merger.tx.slots_free() >= slots
            && self.log.room() >= slots
    }

    /// Every output ring has room for all of `frame`'s records (no record takes more ring
    /// slots than 48 of its bytes: `quic::FRAME_RECORDS_MAX`), or for half a ring when the
    /// frame is larger than that.
    pub fn has_room_for(&self, frame: &[u8]) -> bool {
        self.has_room((frame.len() / 48 + 1).min(self.to_merger.tx.capacity() / 2))
    }

    /// Admits one record that arrived at `rx_ns` through `origin`: its receipt, or `None`
    /// when the merger answers it later (then [`Admission::take_origin`] says where to).
    #[inline]
    pub fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>, origin: Origin) -> Option<Receipt> {
        let refusal = if self.storage_failing {
            // Nothing new is accepted that the log cannot keep (`docs/log.md`, "Failing writes").
            Some(Reason::StorageUnavailable)
        } else if matches!(record, RecordRef::Cancel(_)) && self.origins.len() == self.origins_max {
            // It might be a book cancel, and the merger's answers for this intake are all
            // outstanding: refuse it rather than wait.
            Some(Reason::Overloaded)
        } else {
            None
        };
        if let Some(reason) = refusal {
            let mut r = Receipt::for_record(record, rx_ns);
            r.status = Err(reason);
            self.counters.count(r.status);
            return Some(r);
        }
        let mut sink = IntakeRings {
            to_builder: &mut self.to_builder,
            to_merger: &mut self.to_merger,
            log: &mut self.log,
        };
        match self.core.handle_record(rx_ns, record, &mut sink) {
            Some(r) => {
                self.counters.count(r.status);
                Some(r)
            }
            None => {
                self.origins.push_back(origin);
                None
            }
        }
    }

    /// Admits every record of `frame` through `origin`, with the de-duplication prefetch
    /// [`PREFETCH_AHEAD`] records ahead; `answer` gets each record's receipt in record order
    /// (`None`: answered later by the merger). `Err`: the frame is refused whole.
    pub fn admit_frame(
        &mut self,
        rx_ns: u64,
        frame: &[u8],
        origin: Origin,
        mut answer: impl FnMut(Option<Receipt>),
    ) -> Result<(), Reason> {
        for (record, ahead) in decode_frame(frame)?.with_lookahead(PREFETCH_AHEAD) {
            for r in ahead {
                self.core.prefetch(r);
            }
            answer(self.admit(rx_ns, record, origin));
        }
        Ok(())
    }

    /// Where the merger's next answer goes (the origin of the oldest outstanding record).
    pub fn take_origin(&mut self) -> Option<Origin> {
        self.origins.pop_front()
    }

    /// The origin of the merger's next answer, without taking it.
    pub fn next_origin(&self) -> Option<Origin> {
        self.origins.front().copied()
    }

    pub fn publish(&self, s: &mut Snapshot, none: &Labels) {
        for q in &self.to_builder {
            q.publish(s);
        }
        self.to_merger.publish(s);
        self.counters.publish(s, none);
    }
}
