//! Receipts out: each path's queue of receipts (records that came in datagrams are answered
//! in datagrams, records that came on streams on the result stream), and packing them into
//! receipt frames.

use bytes::Bytes;
use fpn_wire::{FRAME_HEADER_LEN, FrameWriter, RECEIPT_LEN, Receipt};
use quinn_proto::{Connection, SendDatagramError};

use super::Counters;
use super::outbox::Outbox;

/// Which way a record came in, and so which way its receipt goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Path {
    Datagram,
    Stream,
}

/// Receipts of one path not yet packed, in the order they were answered.
#[derive(Debug, Default)]
pub(super) struct ReceiptQueue {
    receipts: Vec<Receipt>,
}

impl ReceiptQueue {
    pub(super) fn push(&mut self, receipt: Receipt) {
        self.receipts.push(receipt);
    }

    /// A receipt the merger answered for a record of this path.
    pub(super) fn push_late(&mut self, receipt: Receipt) {
        self.receipts.push(receipt);
    }

    /// The receipts that may go out now; [`ReceiptQueue::sent`] says how many went.
    fn ready(&self) -> &[Receipt] {
        &self.receipts
    }

    fn sent(&mut self, n: usize) {
        self.receipts.drain(..n);
    }
}

/// Packs a datagram path's ready receipts into receipt frames of up to the connection's
/// datagram size (and `datagram_frame_max`). A frame the connection cannot take now (its
/// datagram send buffer is full) goes on the result stream instead: the server never drops
/// a receipt.
pub(super) fn pack_datagrams(
    queue: &mut ReceiptQueue,
    conn: &mut Connection,
    datagram_frame_max: u16,
    frame_buf: &mut Vec<u8>,
    outbox: &mut Outbox,
    counters: &mut Counters,
) {
    let ready = queue.ready();
    if ready.is_empty() {
        return;
    }
    let size = conn.datagrams().max_size().unwrap_or(0).min(datagram_frame_max as usize);
    let per_frame = size.saturating_sub(FRAME_HEADER_LEN) / RECEIPT_LEN;
    for chunk in ready.chunks(per_frame.max(1)) {
        frame_buf.clear();
        let mut w = FrameWriter::new(frame_buf, u32::MAX as usize);
        for r in chunk {
            w.push_receipt(r).expect("room for the chunk");
        }
        w.finish();
        let n = chunk.len() as u64;
        let sent = per_frame > 0
            && match conn.datagrams().send(Bytes::copy_from_slice(frame_buf), false) {
                Ok(()) => true,
                Err(SendDatagramError::Blocked(_))
                | Err(SendDatagramError::TooLarge)
                | Err(SendDatagramError::Disabled)
                | Err(SendDatagramError::UnsupportedByPeer) => false,
            };
        if sent {
            counters.receipts_datagram_total += n;
        } else {
            counters.receipts_fallback_total += n;
            outbox.push(frame_buf);
        }
    }
    let n = ready.len();
    queue.sent(n);
}

/// Packs a stream path's ready receipts into receipt frames on the result stream (65,535
/// receipts a frame, the most a frame's record count holds).
pub(super) fn pack_stream(queue: &mut ReceiptQueue, outbox: &mut Outbox, counters: &mut Counters) {
    let ready = queue.ready();
    if ready.is_empty() {
        return;
    }
    for chunk in ready.chunks(u16::MAX as usize) {
        let mut w = FrameWriter::new(outbox.buf(), u32::MAX as usize);
        for r in chunk {
            w.push_receipt(r).expect("a u32-sized frame holds 65535 receipts");
        }
        w.finish();
    }
    counters.receipts_stream_total += ready.len() as u64;
    let n = ready.len();
    queue.sent(n);
}
