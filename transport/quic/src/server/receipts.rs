//! Receipts out: each path's queue of receipts in record order (records that came in
//! datagrams are answered in datagrams, records that came on streams on the result stream),
//! and packing them into receipt frames.

use std::collections::VecDeque;
use std::time::Instant;

use fpn_wire::{Kind, Receipt};
use quinn_proto::Connection;

use super::Counters;
use super::outbox::Outbox;
use super::pack::{pack_datagram_receipts, pack_stream_receipts};
use super::watermark::PathWatermark;

/// Which way a record came in, and so which way its receipt goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Path {
    Datagram,
    Stream,
}

/// Receipts of one path not yet packed, in record order. A record the engine answers later
/// (`Admit::admit` returned `None`) leaves a hole; receipts go out only up to the first hole,
/// so the records after it wait for its answer and every frame is answered in record order.
///
/// Late answers come in the order the holes were made (the merger answers in the order it
/// was asked), so each fills the oldest hole. Holes are counted from the queue's first slot
/// ever (`base` is the position of `slots[0]`), which makes filling one O(1).
///
/// A receipt may also wait for durability: the engine tags an accepted record with the
/// position its input log must reach before the record is acknowledged
/// ([`super::Admit::durable_at`]). Receipts go out only while their tag is at or below the
/// log's durable position (`durable`, [`super::Server::set_durable`]); tags are kept
/// non-decreasing along the queue (a receipt waits for the records before it anyway), so
/// the ready receipts are a prefix.
///
/// Bounded: a path holding `Limits::receipts_held_max` receipts behind its first hole (or behind
/// the log) is not read until they can go (see [`ReceiptQueue::is_full`]), so a queue holds
/// at most that plus one poll's frames (packed at the end of the poll).
#[derive(Debug, Default)]
pub(super) struct ReceiptQueue {
    /// Receipts (`None`: a hole) and the durable position each waits for.
    slots: VecDeque<(Option<Receipt>, u64)>,
    /// Positions of the holes, oldest first.
    holes: VecDeque<u64>,
    base: u64,
    /// Reading of this path is paused on a full queue (for counting pauses, not polls).
    paused: bool,
}

impl ReceiptQueue {
    /// The tag of the newest slot (tags never decrease along the queue).
    fn last_tag(&self) -> u64 {
        self.slots.back().map_or(0, |s| s.1)
    }

    /// A receipt that may go once the log is durable up to `durable_at` (0: at once).
    pub(super) fn push(&mut self, receipt: Receipt, durable_at: u64) {
        let tag = durable_at.max(self.last_tag());
        self.slots.push_back((Some(receipt), tag));
    }

    /// A record whose receipt comes later, through [`ReceiptQueue::fill`].
    pub(super) fn push_hole(&mut self) {
        self.holes.push_back(self.base + self.slots.len() as u64);
        let tag = self.last_tag();
        self.slots.push_back((None, tag));
    }

    /// Whether some receipt waits (for a late answer or for the log).
    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The receipt the merger answered for this path's oldest hole; `false` if the path
    /// has no hole (a late receipt nobody asked for).
    pub(super) fn fill(&mut self, receipt: Receipt) -> bool {
        let Some(at) = self.holes.pop_front() else { return false };
        let slot = &mut self.slots[(at - self.base) as usize].0;
        debug_assert!(slot.is_none(), "a hole is filled once");
        *slot = Some(receipt);
        true
    }

    /// Receipts before the first hole and durable by `durable`: those that may go out now.
    fn ready_len(&self, durable: u64) -> usize {
        let before_hole = self.holes.front().map_or(self.slots.len(), |&at| (at - self.base) as usize);
        // Tags never decrease: the durable receipts are a prefix.
        self.slots.iter().take(before_hole).take_while(|s| s.1 <= durable).count()
    }

    /// Whether the path must not be read for now: `held_max` receipts wait behind a hole or
    /// the log. The second value says whether this starts a pause (for the counter).
    pub(super) fn is_full(&mut self, durable: u64, held_max: usize) -> (bool, bool) {
        let full = self.slots.len() - self.ready_len(durable) >= held_max;
        let started = full && !self.paused;
        self.paused = full;
        (full, started)
    }

    /// Takes `n` of the ready receipts, in order.
    fn take(&mut self, n: usize) -> impl Iterator<Item = Receipt> + '_ {
        self.base += n as u64;
        self.slots.drain(..n).map(|slot| slot.0.expect("ready receipts precede the first hole"))
    }
}

/// Packs a datagram path's ready receipts into receipt frames of up to the connection's
/// datagram size (and `datagram_frame_max`). A frame the connection cannot take now (its
/// datagram send buffer is full) goes on the result stream instead: the server never drops
/// a receipt (`pack::pack_datagram_receipts`).
pub(super) fn pack_datagrams(
    queue: &mut ReceiptQueue,
    durable: u64,
    conn: &mut Connection,
    datagram_frame_max: u16,
    frame_buf: &mut Vec<u8>,
    outbox: &mut Outbox,
    counters: &mut Counters,
) {
    let ready = queue.ready_len(durable);
    if ready == 0 {
        return;
    }
    let size = conn.datagrams().max_size().unwrap_or(0).min(datagram_frame_max as usize);
    // Every error (blocked, too large, disabled, unsupported) means not sent now.
    let send = |d| conn.datagrams().send(d, false).is_ok();
    let packed = pack_datagram_receipts(queue.take(ready), size, frame_buf, send, outbox.buf());
    counters.receipts_datagram_total += packed.datagram;
    counters.receipts_fallback_total += packed.fallback;
}

/// Packs a stream path's ready receipts into receipt frames on the result stream.
pub(super) fn pack_stream(
    queue: &mut ReceiptQueue,
    durable: u64,
    outbox: &mut Outbox,
    counters: &mut Counters,
) {
    let ready = queue.ready_len(durable);
    counters.receipts_stream_total += pack_stream_receipts(queue.take(ready), outbox.buf());
}

/// Receipt mode `refusals`: a path's ready answers, in record order. Each intent and bid joins
/// the path's watermark; refused ones, cancels and frames refused whole also get their
/// receipt, on the result stream, before any watermark that lists them. The watermark goes
/// out when it is full or due (`watermark`), and is left pending otherwise. `refusals` is
/// scratch space for one run of receipts.
pub(super) fn pack_refusals(
    queue: &mut ReceiptQueue,
    durable: u64,
    now: Instant,
    watermark: &mut PathWatermark,
    refusals: &mut Vec<Receipt>,
    outbox: &mut Outbox,
    counters: &mut Counters,
) {
    let ready = queue.ready_len(durable);
    for r in queue.take(ready) {
        let listed = matches!(r.for_kind, Some(Kind::Intent | Kind::Bid));
        if listed && !watermark.has_room(r.nonce) {
            write_watermark(watermark, refusals, outbox, counters);
        }
        if !listed || r.status.is_err() {
            refusals.push(r);
        }
        if listed {
            watermark.add(&r, now);
            if watermark.is_full() {
                write_watermark(watermark, refusals, outbox, counters);
            }
        }
    }
    counters.receipts_stream_total += pack_stream_receipts(refusals.drain(..), outbox.buf());
    if watermark.due().is_some_and(|at| at <= now) {
        write_watermark(watermark, refusals, outbox, counters);
    }
}

/// The receipts gathered so far, then the watermark that may list them.
pub(super) fn write_watermark(
    watermark: &mut PathWatermark,
    refusals: &mut Vec<Receipt>,
    outbox: &mut Outbox,
    counters: &mut Counters,
) {
    counters.receipts_stream_total += pack_stream_receipts(refusals.drain(..), outbox.buf());
    counters.watermarks_total += u64::from(watermark.write(outbox.buf()));
}
