//! Receipt mode `refusals` (`docs/transport.md`, "Receipt modes"): the watermark of one path
//! of a session, the nonces of its intents and bids answered since the path's previous
//! watermark (`docs/wire.md`, kind 0x85).
//!
//! The receipt queue releases answers in record order, once durable and past every late
//! answer before them (`receipts::ReceiptQueue`); each released intent or bid joins its
//! path's watermark here, and a refused one also gets its receipt on the result stream at
//! once. The watermark goes on the same stream later, so a client has every refusal it
//! lists before it. Nonces are kept as a few ranges (a bulk client's nonces run upwards, so
//! a watermark is a handful of bytes for thousands of records), in a fixed array: no
//! allocation per record.

use std::time::{Duration, Instant};

use fpn_wire::{FrameWriter, Receipt, Watermark, WatermarkPath};

/// Ranges one watermark holds: a nonce that starts a range past this sends the watermark
/// first. 32 ranges are 552 bytes on the wire, under one datagram's frame.
pub const WATERMARK_RANGES_MAX: usize = 32;
/// Answers one watermark covers at most: past this it goes out at once.
pub const WATERMARK_RECORDS_MAX: usize = 4096;
/// How long an answered record waits for its watermark at most: the watermark goes out this
/// long after the first answer it covers, also when the session went quiet.
pub const WATERMARK_INTERVAL: Duration = Duration::from_millis(2);

/// The watermark of one path, being filled.
#[derive(Debug)]
pub(super) struct PathWatermark {
    path: WatermarkPath,
    ranges: [(u64, u64); WATERMARK_RANGES_MAX],
    len: usize,
    /// Answers the pending watermark covers.
    records: usize,
    /// Since the session opened, on this path.
    accepted_total: u64,
    answered_total: u64,
    /// Seq of the last accepted record the pending watermark covers (0: none).
    seq_last: u64,
    /// When the pending watermark got its first answer.
    since: Option<Instant>,
}

impl PathWatermark {
    pub(super) fn new(path: WatermarkPath) -> PathWatermark {
        PathWatermark {
            path,
            ranges: [(0, 0); WATERMARK_RANGES_MAX],
            len: 0,
            records: 0,
            accepted_total: 0,
            answered_total: 0,
            seq_last: 0,
            since: None,
        }
    }

    /// Whether `nonce` joins the last range (inside it, or next to either end).
    fn extends_last(&self, nonce: u64) -> bool {
        let Some(&(first, last)) = self.ranges[..self.len].last() else { return false };
        (first..=last).contains(&nonce)
            || last.checked_add(1) == Some(nonce)
            || nonce.checked_add(1) == Some(first)
    }

    /// Whether `nonce` can join without sending the watermark first.
    pub(super) fn has_room(&self, nonce: u64) -> bool {
        self.len < WATERMARK_RANGES_MAX || self.extends_last(nonce)
    }

    /// Whether the watermark must go now: it covers [`WATERMARK_RECORDS_MAX`] answers.
    pub(super) fn is_full(&self) -> bool {
        self.records >= WATERMARK_RECORDS_MAX
    }

    /// One released answer of an intent or bid of this path (call [`Self::has_room`] first).
    pub(super) fn add(&mut self, receipt: &Receipt, now: Instant) {
        let nonce = receipt.nonce;
        if self.extends_last(nonce) {
            let last = &mut self.ranges[self.len - 1];
            *last = (last.0.min(nonce), last.1.max(nonce));
        } else {
            assert!(self.len < WATERMARK_RANGES_MAX, "has_room is asked first");
            self.ranges[self.len] = (nonce, nonce);
            self.len += 1;
        }
        self.records += 1;
        self.answered_total += 1;
        if receipt.status.is_ok() {
            self.accepted_total += 1;
            self.seq_last = receipt.seq;
        }
        self.since.get_or_insert(now);
    }

    /// When the pending watermark must go out at the latest (`None`: nothing pending).
    pub(super) fn due(&self) -> Option<Instant> {
        self.since.map(|t| t + WATERMARK_INTERVAL)
    }

    /// Forgets the pending watermark (its session is closing: nobody reads it).
    pub(super) fn discard(&mut self) {
        self.len = 0;
        self.records = 0;
        self.seq_last = 0;
        self.since = None;
    }

    /// Appends the pending watermark, as one frame, to `out` and starts the next one.
    /// Returns whether there was one.
    pub(super) fn write(&mut self, out: &mut Vec<u8>) -> bool {
        if self.records == 0 {
            return false;
        }
        let mut w = FrameWriter::new(out, u32::MAX as usize);
        let watermark = Watermark {
            path: self.path,
            accepted_total: self.accepted_total,
            answered_total: self.answered_total,
            seq_last: self.seq_last,
            ranges: &self.ranges[..self.len],
        };
        w.push_watermark(&watermark).expect("a u32-sized frame holds a watermark");
        w.finish();
        self.discard();
        true
    }
}

#[cfg(test)]
mod tests {
    use fpn_wire::{Kind, Reason, RecordRef, decode_frame};

    use super::*;

    fn answer(nonce: u64, seq: u64) -> Receipt {
        let status = if seq == 0 { Err(Reason::RateLimited) } else { Ok(()) };
        Receipt { client_id: 7, nonce, seq, window_id: 1, rx_ns: 0, status, for_kind: Some(Kind::Intent) }
    }

    fn ranges(frame: &[u8]) -> (u64, u64, u64, Vec<(u64, u64)>) {
        let RecordRef::Watermark(w) = decode_frame(frame).unwrap().next().unwrap() else { panic!() };
        let r = w.ranges.iter().map(|r| (r.first.get(), r.last.get())).collect();
        (w.fixed.accepted_total.get(), w.fixed.answered_total.get(), w.fixed.seq_last.get(), r)
    }

    #[test]
    fn nonces_merge_into_ranges_and_totals_accumulate() {
        let now = Instant::now();
        let mut wm = PathWatermark::new(WatermarkPath::Stream);
        assert_eq!(wm.due(), None);
        for (nonce, seq) in [(5, 1), (6, 2), (4, 3), (6, 0), (9, 0), (10, 4)] {
            assert!(wm.has_room(nonce));
            wm.add(&answer(nonce, seq), now);
        }
        assert_eq!(wm.due(), Some(now + WATERMARK_INTERVAL));
        let mut out = Vec::new();
        assert!(wm.write(&mut out));
        assert_eq!(ranges(&out), (4, 6, 4, vec![(4, 6), (9, 10)]));
        out.clear();
        assert!(!wm.write(&mut out), "nothing pending");
        wm.add(&answer(11, 0), now);
        assert!(wm.write(&mut out));
        assert_eq!(ranges(&out), (4, 7, 0, vec![(11, 11)]));
    }

    #[test]
    fn a_nonce_past_the_last_range_needs_room() {
        let now = Instant::now();
        let mut wm = PathWatermark::new(WatermarkPath::Datagram);
        for i in 0..WATERMARK_RANGES_MAX as u64 {
            wm.add(&answer(i * 10, i + 1), now);
        }
        assert!(wm.has_room(311), "extends the last range");
        assert!(!wm.has_room(500));
        assert!(!wm.has_room(u64::MAX));
    }
}
