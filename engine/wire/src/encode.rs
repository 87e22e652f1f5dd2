//! Encoding records into frames.
//!
//! [`FrameWriter`] appends one frame to a caller-owned `Vec<u8>`: it never reallocates when
//! the vector has the capacity, so hot paths pre-size their buffers once. A frame has a byte
//! limit (a datagram's payload size, say); a record that would cross it is handed back as
//! [`FrameFull`] and the caller starts the next frame.

use zerocopy::IntoBytes;
use zerocopy::byteorder::little_endian::{U16, U32, U64};

use crate::Reason;
use crate::decode::RecordRef;
use crate::record::*;

/// An intent to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent<'k> {
    pub client_id: u64,
    pub nonce: u64,
    pub sent_ns: u64,
    pub profit: u64,
    pub priority: u32,
    pub keys: &'k [u64],
}

/// A sealed bid to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bid {
    pub client_id: u64,
    pub nonce: u64,
    pub sent_ns: u64,
    pub amount: u64,
    pub priority: u32,
}

/// What a cancel names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelTarget {
    /// The client's own nonce of an intent or bid.
    Nonce(u64),
    /// The engine sequence id from the record's receipt.
    Seq(u64),
}

/// A cancel to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancel {
    pub client_id: u64,
    pub target: CancelTarget,
}

/// A receipt to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub client_id: u64,
    pub nonce: u64,
    pub seq: u64,
    pub window_id: u64,
    pub rx_ns: u64,
    pub status: Result<(), Reason>,
    /// The answered record's kind; `None` for a frame refused whole (wire value 0).
    pub for_kind: Option<Kind>,
}

impl Receipt {
    /// The receipt of `record` before the engine decides on it: the record's client, its
    /// nonce (a cancel by nonce: the target nonce), its kind and receive time, status `Ok`,
    /// no window yet. A cancel by sequence id echoes its target in `seq` (nonce 0), whatever
    /// the answer; every other record gets its `seq` from the engine (0 when refused).
    ///
    /// The one receipt builder: the engine's admission, the test oracle and the transport
    /// (which refuses some records before the engine sees them) all start from it, so a
    /// receipt does not depend on which layer answered.
    pub fn for_record(record: RecordRef<'_>, rx_ns: u64) -> Receipt {
        let (client_id, nonce, seq) = match record {
            RecordRef::Intent(i) => (i.fixed.client_id.get(), i.fixed.nonce.get(), 0),
            RecordRef::Bid(b) => (b.client_id.get(), b.nonce.get(), 0),
            RecordRef::Cancel(c) if c.mode == CANCEL_BY_NONCE => (c.client_id.get(), c.target.get(), 0),
            RecordRef::Cancel(c) => (c.client_id.get(), 0, c.target.get()),
            // Engine → client kinds are not input.
            RecordRef::Receipt(_)
            | RecordRef::Block(_)
            | RecordRef::Clearing(_)
            | RecordRef::Proof(_)
            | RecordRef::Watermark(_) => (0, 0, 0),
        };
        Receipt { client_id, nonce, seq, window_id: 0, rx_ns, status: Ok(()), for_kind: Some(record.kind()) }
    }

    /// The receipt a decoded receipt record carries; `None` when its status is no known
    /// reason code (a newer engine's, say).
    pub fn from_wire(w: &ReceiptWire) -> Option<Receipt> {
        let status = match w.status {
            0 => Ok(()),
            code => Err(Reason::from_code(code)?),
        };
        Some(Receipt {
            client_id: w.client_id.get(),
            nonce: w.nonce.get(),
            seq: w.seq.get(),
            window_id: w.window_id.get(),
            rx_ns: w.rx_ns.get(),
            status,
            for_kind: Kind::from_u8(w.for_kind),
        })
    }

    /// The one receipt for a frame refused whole, before any record could be read.
    pub fn frame_refused(reason: Reason, rx_ns: u64) -> Receipt {
        Receipt { client_id: 0, nonce: 0, seq: 0, window_id: 0, rx_ns, status: Err(reason), for_kind: None }
    }
}

/// The fixed part of a block result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockSummary {
    pub window_id: u64,
    pub total: u64,
    pub fifo_total: u64,
    pub surplus: u64,
    pub fee: u64,
    pub upper_bound: u64,
    pub fee_ppm: u32,
    pub builder: u8,
    pub exact: bool,
}

/// The fixed part of a clearing result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClearingSummary {
    pub window_id: u64,
    pub uniform_price: u64,
    pub revenue: u64,
    pub pricing: u8,
    pub order: u8,
}

/// A proof announcement to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofAnnounce {
    pub window_first: u64,
    pub window_last: u64,
    pub job_id: u64,
    /// The compressed proof, or `None` when the job failed (wire: status 1, zero bytes).
    pub proof: Option<[u8; PROOF_BYTES_LEN]>,
}

/// Which way the records a watermark covers came in (wire: `path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatermarkPath {
    Datagram,
    Stream,
}

impl WatermarkPath {
    pub const fn code(self) -> u8 {
        match self {
            WatermarkPath::Datagram => WATERMARK_PATH_DATAGRAM,
            WatermarkPath::Stream => WATERMARK_PATH_STREAM,
        }
    }

    pub const fn from_code(code: u8) -> Option<WatermarkPath> {
        match code {
            WATERMARK_PATH_DATAGRAM => Some(WatermarkPath::Datagram),
            WATERMARK_PATH_STREAM => Some(WatermarkPath::Stream),
            _ => None,
        }
    }
}

/// A watermark to encode (`docs/wire.md`, kind 0x85): the nonces of one path's intents and
/// bids answered since that path's previous watermark, as inclusive ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark<'r> {
    pub path: WatermarkPath,
    pub accepted_total: u64,
    pub answered_total: u64,
    pub seq_last: u64,
    /// Inclusive `(first, last)` nonce ranges, each `first <= last`.
    pub ranges: &'r [(u64, u64)],
}

impl BlockEntryWire {
    pub fn new(seq: u64, client_id: u64, profit: u64, payout: u64, rx_ns: u64) -> BlockEntryWire {
        BlockEntryWire {
            seq: U64::new(seq),
            client_id: U64::new(client_id),
            profit: U64::new(profit),
            payout: U64::new(payout),
            rx_ns: U64::new(rx_ns),
        }
    }
}

impl WinnerWire {
    pub fn new(seq: u64, client_id: u64, amount: u64, price: u64) -> WinnerWire {
        WinnerWire {
            seq: U64::new(seq),
            client_id: U64::new(client_id),
            amount: U64::new(amount),
            price: U64::new(price),
        }
    }
}

/// The record does not fit in the frame's byte limit (or the frame holds 65,535 records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameFull;

/// Appends one frame to a buffer. Call order: `new`, any number of `push_*`, then `finish`.
#[derive(Debug)]
pub struct FrameWriter<'b> {
    buf: &'b mut Vec<u8>,
    start: usize,
    count: u16,
    len_max: usize,
}

fn record_header(kind: Kind, len: usize) -> RecordHeader {
    RecordHeader { kind: kind as u8, version: kind.version(), reserved: U16::ZERO, len: U32::new(len as u32) }
}

impl<'b> FrameWriter<'b> {
    /// Starts a frame at the end of `buf`, at most `len_max` bytes long (header included).
    pub fn new(buf: &'b mut Vec<u8>, len_max: usize) -> FrameWriter<'b> {
        assert!(len_max >= FRAME_HEADER_LEN && len_max <= u32::MAX as usize);
        let start = buf.len();
        let header = FrameHeader {
            magic: MAGIC,
            version: VERSION,
            flags: 0,
            count: U16::ZERO,
            reserved: U16::ZERO,
            len: U32::ZERO,
        };
        buf.extend_from_slice(header.as_bytes());
        FrameWriter { buf, start, count: 0, len_max }
    }

    /// Records written so far.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Bytes written so far, the header included.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn reserve(&self, record_len: usize) -> Result<(), FrameFull> {
        if self.count == u16::MAX || self.len() + record_len > self.len_max {
            return Err(FrameFull);
        }
        Ok(())
    }

    pub fn push_intent(&mut self, intent: &Intent<'_>) -> Result<(), FrameFull> {
        let len = INTENT_FIXED_LEN + 8 * intent.keys.len();
        self.reserve(len)?;
        assert!(intent.keys.len() <= u16::MAX as usize);
        let fixed = IntentWire {
            header: record_header(Kind::Intent, len),
            client_id: U64::new(intent.client_id),
            nonce: U64::new(intent.nonce),
            sent_ns: U64::new(intent.sent_ns),
            profit: U64::new(intent.profit),
            priority: U32::new(intent.priority),
            keys_count: U16::new(intent.keys.len() as u16),
            reserved: U16::ZERO,
        };
        self.buf.extend_from_slice(fixed.as_bytes());
        for key in intent.keys {
            self.buf.extend_from_slice(&key.to_le_bytes());
        }
        self.count += 1;
        Ok(())
    }

    pub fn push_bid(&mut self, bid: &Bid) -> Result<(), FrameFull> {
        self.reserve(BID_LEN)?;
        let wire = BidWire {
            header: record_header(Kind::Bid, BID_LEN),
            client_id: U64::new(bid.client_id),
            nonce: U64::new(bid.nonce),
            sent_ns: U64::new(bid.sent_ns),
            amount: U64::new(bid.amount),
            priority: U32::new(bid.priority),
            reserved: U32::ZERO,
        };
        self.buf.extend_from_slice(wire.as_bytes());
        self.count += 1;
        Ok(())
    }

    pub fn push_cancel(&mut self, cancel: &Cancel) -> Result<(), FrameFull> {
        self.reserve(CANCEL_LEN)?;
        let (mode, target) = match cancel.target {
            CancelTarget::Nonce(n) => (CANCEL_BY_NONCE, n),
            CancelTarget::Seq(s) => (CANCEL_BY_SEQ, s),
        };
        let wire = CancelWire {
            header: record_header(Kind::Cancel, CANCEL_LEN),
            client_id: U64::new(cancel.client_id),
            mode,
            reserved: [0; 7],
            target: U64::new(target),
        };
        self.buf.extend_from_slice(wire.as_bytes());
        self.count += 1;
        Ok(())
    }

    pub fn push_receipt(&mut self, receipt: &Receipt) -> Result<(), FrameFull> {
        self.reserve(RECEIPT_LEN)?;
        let wire = ReceiptWire {
            header: record_header(Kind::Receipt, RECEIPT_LEN),
            client_id: U64::new(receipt.client_id),
            nonce: U64::new(receipt.nonce),
            seq: U64::new(receipt.seq),
            window_id: U64::new(receipt.window_id),
            rx_ns: U64::new(receipt.rx_ns),
            status: match receipt.status {
                Ok(()) => 0,
                Err(r) => r.code(),
            },
            for_kind: receipt.for_kind.map_or(0, |k| k as u8),
            reserved: [0; 6],
        };
        self.buf.extend_from_slice(wire.as_bytes());
        self.count += 1;
        Ok(())
    }

    pub fn push_block(
        &mut self,
        summary: &BlockSummary,
        entries: &[BlockEntryWire],
    ) -> Result<(), FrameFull> {
        self.push_block_iter(summary, entries.iter().copied())
    }

    /// As [`FrameWriter::push_block`], from an iterator of exactly known length, so a block
    /// can be written straight from the engine's entries without an intermediate vector.
    pub fn push_block_iter(
        &mut self,
        summary: &BlockSummary,
        entries: impl ExactSizeIterator<Item = BlockEntryWire>,
    ) -> Result<(), FrameFull> {
        let n = entries.len();
        let len = BLOCK_FIXED_LEN + BLOCK_ENTRY_LEN * n;
        self.reserve(len)?;
        assert!(n <= u32::MAX as usize);
        let wire = BlockWire {
            header: record_header(Kind::Block, len),
            window_id: U64::new(summary.window_id),
            total: U64::new(summary.total),
            fifo_total: U64::new(summary.fifo_total),
            surplus: U64::new(summary.surplus),
            fee: U64::new(summary.fee),
            upper_bound: U64::new(summary.upper_bound),
            fee_ppm: U32::new(summary.fee_ppm),
            entries_count: U32::new(n as u32),
            builder: summary.builder,
            exact: u8::from(summary.exact),
            scope: BLOCK_SCOPE_WHOLE,
            reserved: [0; 5],
        };
        let start = self.buf.len();
        self.buf.extend_from_slice(wire.as_bytes());
        for e in entries {
            self.buf.extend_from_slice(e.as_bytes());
        }
        assert_eq!(self.buf.len() - start, len, "iterator reported a wrong length");
        self.count += 1;
        Ok(())
    }

    /// A block from its fixed part, whose header length and `entries_count` the caller set
    /// for `entries` (re-framing a block read from another frame, [`crate::excerpt`]).
    pub(crate) fn push_block_wire(
        &mut self,
        fixed: &BlockWire,
        entries: impl ExactSizeIterator<Item = BlockEntryWire>,
    ) -> Result<(), FrameFull> {
        let len = BLOCK_FIXED_LEN + BLOCK_ENTRY_LEN * entries.len();
        assert_eq!(fixed.header.len.get() as usize, len, "the header says the entries' length");
        self.reserve(len)?;
        self.buf.extend_from_slice(fixed.as_bytes());
        for e in entries {
            self.buf.extend_from_slice(e.as_bytes());
        }
        self.count += 1;
        Ok(())
    }

    /// A record as read from another frame, header included.
    pub(crate) fn push_raw(&mut self, record: &[u8]) -> Result<(), FrameFull> {
        self.reserve(record.len())?;
        self.buf.extend_from_slice(record);
        self.count += 1;
        Ok(())
    }

    pub fn push_clearing(
        &mut self,
        summary: &ClearingSummary,
        winners: &[WinnerWire],
    ) -> Result<(), FrameFull> {
        self.push_clearing_iter(summary, winners.iter().copied())
    }

    /// As [`FrameWriter::push_clearing`], from an iterator of exactly known length.
    pub fn push_clearing_iter(
        &mut self,
        summary: &ClearingSummary,
        winners: impl ExactSizeIterator<Item = WinnerWire>,
    ) -> Result<(), FrameFull> {
        let n = winners.len();
        let len = CLEARING_FIXED_LEN + WINNER_LEN * n;
        self.reserve(len)?;
        assert!(n <= u32::MAX as usize);
        let wire = ClearingWire {
            header: record_header(Kind::Clearing, len),
            window_id: U64::new(summary.window_id),
            uniform_price: U64::new(summary.uniform_price),
            revenue: U64::new(summary.revenue),
            winners_count: U32::new(n as u32),
            pricing: summary.pricing,
            order: summary.order,
            reserved: U16::ZERO,
        };
        let start = self.buf.len();
        self.buf.extend_from_slice(wire.as_bytes());
        for x in winners {
            self.buf.extend_from_slice(x.as_bytes());
        }
        assert_eq!(self.buf.len() - start, len, "iterator reported a wrong length");
        self.count += 1;
        Ok(())
    }

    pub fn push_proof(&mut self, proof: &ProofAnnounce) -> Result<(), FrameFull> {
        self.reserve(PROOF_LEN)?;
        let wire = ProofWire {
            header: record_header(Kind::Proof, PROOF_LEN),
            window_first: U64::new(proof.window_first),
            window_last: U64::new(proof.window_last),
            job_id: U64::new(proof.job_id),
            status: if proof.proof.is_some() { PROOF_DONE } else { PROOF_FAILED },
            reserved: [0; 7],
            proof: proof.proof.unwrap_or([0; PROOF_BYTES_LEN]),
        };
        self.buf.extend_from_slice(wire.as_bytes());
        self.count += 1;
        Ok(())
    }

    pub fn push_watermark(&mut self, watermark: &Watermark<'_>) -> Result<(), FrameFull> {
        let n = watermark.ranges.len();
        let len = WATERMARK_FIXED_LEN + NONCE_RANGE_LEN * n;
        self.reserve(len)?;
        assert!(n <= u16::MAX as usize, "a watermark holds at most 65535 ranges");
        let wire = WatermarkWire {
            header: record_header(Kind::Watermark, len),
            path: watermark.path.code(),
            reserved: 0,
            ranges_count: U16::new(n as u16),
            reserved2: U32::ZERO,
            accepted_total: U64::new(watermark.accepted_total),
            answered_total: U64::new(watermark.answered_total),
            seq_last: U64::new(watermark.seq_last),
        };
        self.buf.extend_from_slice(wire.as_bytes());
        for &(first, last) in watermark.ranges {
            debug_assert!(first <= last, "a nonce range runs upwards");
            let range = NonceRangeWire { first: U64::new(first), last: U64::new(last) };
            self.buf.extend_from_slice(range.as_bytes());
        }
        self.count += 1;
        Ok(())
    }

    /// Completes the frame and returns its length, or removes it and returns 0 when it holds
    /// no record (an empty frame is not valid on the wire).
    pub fn finish(self) -> usize {
        if self.count == 0 {
            self.buf.truncate(self.start);
            return 0;
        }
        let len = self.len();
        let header = &mut self.buf[self.start..self.start + FRAME_HEADER_LEN];
        header[4..6].copy_from_slice(&self.count.to_le_bytes());
        header[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        len
    }
}
