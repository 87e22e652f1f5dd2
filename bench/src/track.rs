//! Matching answers to records and recording latencies. Sans-IO: times are passed in.
//!
//! A record's nonce names its datagram (`(nonce − 1) / R`) and so both of its times: the
//! *intended* send time from the [`Schedule`], and the *actual* send time the sender noted
//! ([`Tracker::handle_sent`]). Every answer is recorded twice:
//! - `corrected`: answer time − intended time. A stall anywhere, in the server or in the
//!   client's own sending, shows in full (wrk2's correction of coordinated omission);
//! - `naive`: answer time − actual send time. What a closed-loop tool would report: a stall
//!   that held the sender back is invisible to it.
//!
//! Only records *intended* inside the measured interval `[measure_from_ns, measure_to_ns)` are
//! counted; warm-up records are matched and dropped.

use fpn_wire::{RecordRef, decode_frame};
use hdrhistogram::Histogram;

use crate::load::Schedule;

/// Latency histograms: 1 ns to 60 s at 3 significant digits (0.1 % resolution).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static bounds are valid")
}

/// Counts of one connection (or, summed, of a phase). Counts with `measured_` cover only the
/// records intended inside the measured interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub sent_records: u64,
    pub sent_dgrams: u64,
    pub sent_bytes: u64,
    pub measured_sent: u64,
    /// Measured records answered, accepted (status 0), and refused by reason code.
    pub measured_answered: u64,
    pub measured_accepted: u64,
    pub measured_rejected: Vec<(u8, u64)>,
    /// Receipts for frames refused whole (kind 0), by reason code.
    pub frames_refused: Vec<(u8, u64)>,
    /// A second answer to a record, and answers naming no record we sent.
    pub duplicates: u64,
    pub unmatched: u64,
    /// Answer frames that did not decode.
    pub bad_answers: u64,
    /// Receipts that came on the result stream rather than in a datagram.
    pub via_stream: u64,
    /// Watermarks read (receipt mode `refusals`).
    pub watermarks: u64,
    /// Answer datagrams the client read.
    pub answer_dgrams: u64,
    /// Records answered, and accepted, over the whole phase (warm-up included).
    pub answered_all: u64,
    pub accepted_all: u64,
}

fn bump(v: &mut Vec<(u8, u64)>, code: u8) {
    bump_n(v, code, 1);
}

fn bump_n(v: &mut Vec<(u8, u64)>, code: u8, by: u64) {
    match v.iter_mut().find(|(c, _)| *c == code) {
        Some((_, n)) => *n += by,
        None => {
            v.push((code, by));
            v.sort_unstable();
        }
    }
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.sent_records += o.sent_records;
        self.sent_dgrams += o.sent_dgrams;
        self.sent_bytes += o.sent_bytes;
        self.measured_sent += o.measured_sent;
        self.measured_answered += o.measured_answered;
        self.measured_accepted += o.measured_accepted;
        for &(c, n) in &o.measured_rejected {
            bump_n(&mut self.measured_rejected, c, n);
        }
        for &(c, n) in &o.frames_refused {
            bump_n(&mut self.frames_refused, c, n);
        }
        self.duplicates += o.duplicates;
        self.unmatched += o.unmatched;
        self.bad_answers += o.bad_answers;
        self.via_stream += o.via_stream;
        self.watermarks += o.watermarks;
        self.answer_dgrams += o.answer_dgrams;
        self.answered_all += o.answered_all;
        self.accepted_all += o.accepted_all;
    }
}

/// One connection's records in flight and what came back.
#[derive(Debug)]
pub struct Tracker {
    schedule: Schedule,
    records_per_dgram: u64,
    measure_from_ns: u64,
    measure_to_ns: u64,
    /// Actual send time per datagram; `u64::MAX` until sent.
    sent_ns: Vec<u64>,
    /// One bit per record: answered.
    answered: Vec<u64>,
    pub corrected: Histogram<u64>,
    pub naive: Histogram<u64>,
    /// How late each measured datagram left: actual − intended send time. Large values say
    /// the client could not keep the schedule (client-bound, or a blocked send).
    pub send_lag: Histogram<u64>,
    pub counts: Counts,
}

impl Tracker {
    pub fn new(
        schedule: Schedule,
        records_per_dgram: u16,
        measure_from_ns: u64,
        measure_to_ns: u64,
    ) -> Tracker {
        let records = schedule.dgrams * u64::from(records_per_dgram);
        Tracker {
            schedule,
            records_per_dgram: u64::from(records_per_dgram),
            measure_from_ns,
            measure_to_ns,
            sent_ns: vec![u64::MAX; schedule.dgrams as usize],
            answered: vec![0; records.div_ceil(64) as usize],
            corrected: new_histogram(),
            naive: new_histogram(),
            send_lag: new_histogram(),
            counts: Counts::default(),
        }
    }

    fn measured(&self, j: u64) -> bool {
        (self.measure_from_ns..self.measure_to_ns).contains(&self.schedule.intended_ns(j))
    }

    /// Datagram `j` (of `bytes` bytes) is being handed to the transport at `now_ns`.
    pub fn handle_sent(&mut self, j: u64, bytes: usize, now_ns: u64) {
        self.sent_ns[j as usize] = now_ns;
        self.counts.sent_dgrams += 1;
        self.counts.sent_records += self.records_per_dgram;
        self.counts.sent_bytes += bytes as u64;
        if self.measured(j) {
            self.counts.measured_sent += self.records_per_dgram;
            self.send_lag.saturating_record(now_ns.saturating_sub(self.schedule.intended_ns(j)).max(1));
        }
    }

    /// One receipt: the record with `nonce` was answered with `status` at `now_ns`.
    pub fn handle_receipt(&mut self, nonce: u64, status: u8, now_ns: u64) {
        let Some(i) = nonce.checked_sub(1).filter(|i| i / self.records_per_dgram < self.schedule.dgrams)
        else {
            self.counts.unmatched += 1;
            return;
        };
        let j = i / self.records_per_dgram;
        let sent = self.sent_ns[j as usize];
        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        if sent == u64::MAX {
            self.counts.unmatched += 1;
            return;
        }
        if self.answered[word] & bit != 0 {
            self.counts.duplicates += 1;
            return;
        }
        self.answered[word] |= bit;
        self.counts.answered_all += 1;
        self.counts.accepted_all += u64::from(status == 0);
        if !self.measured(j) {
            return;
        }
        self.counts.measured_answered += 1;
        if status == 0 {
            self.counts.measured_accepted += 1;
        } else {
            bump(&mut self.counts.measured_rejected, status);
        }
        let intended = self.schedule.intended_ns(j);
        self.corrected.saturating_record(now_ns.saturating_sub(intended).max(1));
        self.naive.saturating_record(now_ns.saturating_sub(sent).max(1));
    }

    /// An answer frame (receipts) received at `now_ns`, in a datagram or (`via_stream`) on
    /// the result stream.
    pub fn handle_answer_frame(&mut self, frame: &[u8], via_stream: bool, now_ns: u64) {
        self.counts.answer_dgrams += u64::from(!via_stream);
        let Ok(records) = decode_frame(frame) else {
            self.counts.bad_answers += 1;
            return;
        };
        for record in records {
            // Blocks and clearings on the result stream are not answers to records.
            match record {
                RecordRef::Receipt(r) => {
                    self.handle_answer(r.for_kind, r.nonce.get(), r.status, via_stream, now_ns)
                }
                RecordRef::Watermark(w) => {
                    self.counts.watermarks += 1;
                    for r in w.ranges {
                        self.handle_confirmed(r.first.get(), r.last.get(), now_ns);
                    }
                }
                _ => {}
            }
        }
    }

    /// A watermark range (receipt mode `refusals`, `docs/transport.md`): every nonce in
    /// `first..=last` was answered; those without a refusal receipt (which comes before the
    /// watermark, on the same stream) were accepted, answered at `now_ns`. Nonces past what
    /// this connection can have sent are ignored.
    pub fn handle_confirmed(&mut self, first: u64, last: u64, now_ns: u64) {
        let records = self.schedule.dgrams * self.records_per_dgram;
        for nonce in first.max(1)..=last.min(records) {
            let i = nonce - 1;
            if self.answered[(i / 64) as usize] & (1u64 << (i % 64)) == 0 {
                self.handle_receipt(nonce, 0, now_ns);
            }
        }
    }

    /// One receipt (for a record of kind `for_kind`, 0 for a frame refused whole), in a
    /// datagram or (`via_stream`) on the result stream, received at `now_ns`.
    pub fn handle_answer(&mut self, for_kind: u8, nonce: u64, status: u8, via_stream: bool, now_ns: u64) {
        if for_kind == 0 {
            bump(&mut self.counts.frames_refused, status);
            return;
        }
        self.counts.via_stream += u64::from(via_stream);
        self.handle_receipt(nonce, status, now_ns);
    }

    /// Records sent and not (yet) answered, all of them (warm-up included).
    pub fn outstanding(&self) -> u64 {
        let answered: u64 = self.answered.iter().map(|w| u64::from(w.count_ones())).sum();
        self.counts.sent_records - answered
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::Shape;

    #[test]
    fn corrected_and_naive_split_a_late_send() {
        // 1,000 records/s, 1 per datagram: datagram j is intended at j ms.
        let shape = Shape {
            rate_per_s: 1000.0,
            conns: 1,
            records_per_dgram: 1,
            burst: 1,
            bids_per_mille: 0,
            warmup: Duration::from_millis(2),
            duration: Duration::from_millis(8),
        };
        let s = Schedule::new(&shape, 0);
        let mut t = Tracker::new(s, 1, 2_000_000, 10_000_000);
        // Datagram 5 (intended at 5 ms) leaves at 9 ms and is answered at 9.1 ms.
        t.handle_sent(5, 100, 9_000_000);
        t.handle_receipt(6, 0, 9_100_000);
        assert_eq!(t.naive.max(), t.naive.highest_equivalent(100_000));
        assert_eq!(t.corrected.max(), t.corrected.highest_equivalent(4_100_000));
        // Warm-up records are matched but not measured; twice is a duplicate; unknown nonces
        // and unsent datagrams are unmatched.
        t.handle_sent(0, 100, 0);
        t.handle_receipt(1, 0, 10);
        t.handle_receipt(6, 0, 9_200_000);
        t.handle_receipt(0, 0, 1);
        t.handle_receipt(8, 0, 1);
        t.handle_receipt(1_000_000, 0, 1);
        assert_eq!(t.corrected.len(), 1);
        assert_eq!((t.counts.duplicates, t.counts.unmatched, t.counts.measured_sent), (1, 3, 1));
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn a_watermark_accepts_what_no_refusal_answered() {
        // 1,000 records/s, 2 per datagram, all measured: records 1..=20.
        let shape = Shape {
            rate_per_s: 1000.0,
            conns: 1,
            records_per_dgram: 2,
            burst: 1,
            bids_per_mille: 0,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(20),
        };
        let s = Schedule::new(&shape, 0);
        let mut t = Tracker::new(s, 2, 0, u64::MAX);
        for j in 0..4 {
            t.handle_sent(j, 100, j * 2_000_000);
        }
        // Record 3 refused by its receipt; then a watermark listing 1..=6 and 40..=50, and one
        // listing 7..=8 (datagram 3) twice: record 7's and 8's answers count once.
        let mut frame = Vec::new();
        let mut w = fpn_wire::FrameWriter::new(&mut frame, 4096);
        let r = |nonce: u64, status: Result<(), fpn_wire::Reason>| fpn_wire::Receipt {
            client_id: 1,
            nonce,
            seq: 0,
            window_id: 0,
            rx_ns: 0,
            status,
            for_kind: Some(fpn_wire::Kind::Intent),
        };
        w.push_receipt(&r(3, Err(fpn_wire::Reason::RateLimited))).unwrap();
        let ranges = [(1, 6), (40, 50)];
        w.push_watermark(&fpn_wire::Watermark {
            path: fpn_wire::WatermarkPath::Datagram,
            accepted_total: 5,
            answered_total: 6,
            seq_last: 5,
            ranges: &ranges,
        })
        .unwrap();
        w.finish();
        t.handle_answer_frame(&frame, true, 10_000_000);
        t.handle_confirmed(7, 8, 11_000_000);
        t.handle_confirmed(7, 8, 12_000_000);
        let c = &t.counts;
        assert_eq!((c.watermarks, c.measured_answered, c.measured_accepted), (1, 8, 7));
        assert_eq!(c.measured_rejected, vec![(fpn_wire::Reason::RateLimited.code(), 1)]);
        assert_eq!((c.duplicates, c.unmatched), (0, 0));
        assert_eq!(t.outstanding(), 0);
        // Answered at the watermark's arrival: records 1 and 2 were intended at 0, read at 10 ms.
        assert_eq!(t.corrected.max(), t.corrected.highest_equivalent(10_000_000));
    }
}
