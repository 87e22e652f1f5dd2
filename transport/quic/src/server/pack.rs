//! Receipt frames out, written once for every transport of `fpn/1`: the raw QUIC server
//! (`receipts`) and the WebTransport endpoint (`fpn-webtransport`) pack their receipts here.
//!
//! Records that came in datagrams are answered in datagrams, as many receipts a frame as the
//! datagram holds; a frame the connection cannot take now goes on the result stream instead,
//! so a receipt is never dropped by the server. Records that came on streams are answered on
//! the result stream, 65,535 receipts a frame (the most a frame's record count holds).

use bytes::Bytes;
use fpn_wire::{FRAME_HEADER_LEN, FrameWriter, RECEIPT_LEN, Receipt};

/// Receipts one receipt frame holds in a datagram of `size` bytes (0: not even one).
pub fn receipts_per_datagram(size: usize) -> usize {
    size.saturating_sub(FRAME_HEADER_LEN) / RECEIPT_LEN
}

/// Where each receipt went, for the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Packed {
    /// Receipts sent in datagrams.
    pub datagram: u64,
    /// Receipts of datagram records that went on the result stream instead.
    pub fallback: u64,
}

/// Packs `receipts` (in record order) into receipt frames for datagrams of up to `size`
/// bytes. Each frame is offered to `send` (one datagram; `false`: the connection cannot take
/// it now); a frame it refuses, or every frame when not one receipt fits a datagram, is
/// appended to `result_stream` instead. `frame_buf` is scratch space.
pub fn pack_datagram_receipts(
    receipts: impl IntoIterator<Item = Receipt>,
    size: usize,
    frame_buf: &mut Vec<u8>,
    mut send: impl FnMut(Bytes) -> bool,
    result_stream: &mut Vec<u8>,
) -> Packed {
    let per_frame = receipts_per_datagram(size);
    let mut receipts = receipts.into_iter().peekable();
    let mut packed = Packed::default();
    while receipts.peek().is_some() {
        frame_buf.clear();
        let mut w = FrameWriter::new(frame_buf, u32::MAX as usize);
        for r in receipts.by_ref().take(per_frame.max(1)) {
            w.push_receipt(&r).expect("a u32-sized frame holds a datagram's receipts");
        }
        let n = u64::from(w.count());
        w.finish();
        if per_frame > 0 && send(Bytes::copy_from_slice(frame_buf)) {
            packed.datagram += n;
        } else {
            packed.fallback += n;
            result_stream.extend_from_slice(frame_buf);
        }
    }
    packed
}

/// Appends `receipts` (in record order) to `result_stream` as receipt frames of up to
/// 65,535 receipts. Returns how many it wrote.
pub fn pack_stream_receipts(receipts: impl IntoIterator<Item = Receipt>, result_stream: &mut Vec<u8>) -> u64 {
    let mut receipts = receipts.into_iter().peekable();
    let mut written = 0;
    while receipts.peek().is_some() {
        let mut w = FrameWriter::new(result_stream, u32::MAX as usize);
        for r in receipts.by_ref().take(usize::from(u16::MAX)) {
            w.push_receipt(&r).expect("a u32-sized frame holds 65535 receipts");
        }
        written += u64::from(w.count());
        w.finish();
    }
    written
}

#[cfg(test)]
mod tests {
    use fpn_wire::{Reason, RecordRef, decode_frame};

    use super::*;

    fn receipts(n: u64) -> Vec<Receipt> {
        (1..=n).map(|nonce| Receipt { nonce, ..Receipt::frame_refused(Reason::Overloaded, 0) }).collect()
    }

    fn nonces(frames: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        let mut rest = frames;
        while !rest.is_empty() {
            let len = fpn_wire::peek_frame_len(rest).unwrap();
            for r in decode_frame(&rest[..len]).unwrap() {
                let RecordRef::Receipt(r) = r else { panic!("a receipt frame") };
                out.push(r.nonce.get());
            }
            rest = &rest[len..];
        }
        out
    }

    #[test]
    fn datagram_receipts_fill_each_datagram_and_fall_back_in_order() {
        let size = FRAME_HEADER_LEN + 3 * RECEIPT_LEN + 5;
        assert_eq!(receipts_per_datagram(size), 3);
        let (mut buf, mut stream, mut sent) = (Vec::new(), Vec::new(), Vec::new());
        // The second datagram finds no room: its frame goes on the result stream.
        let mut calls = 0;
        let packed = pack_datagram_receipts(
            receipts(8),
            size,
            &mut buf,
            |d| {
                calls += 1;
                let ok = calls != 2;
                if ok {
                    sent.extend_from_slice(&d);
                }
                ok
            },
            &mut stream,
        );
        assert_eq!(packed, Packed { datagram: 5, fallback: 3 });
        assert_eq!(nonces(&sent), [1, 2, 3, 7, 8]);
        assert_eq!(nonces(&stream), [4, 5, 6]);
    }

    #[test]
    fn no_room_for_one_receipt_sends_everything_on_the_stream() {
        let (mut buf, mut stream) = (Vec::new(), Vec::new());
        let packed =
            pack_datagram_receipts(receipts(4), 20, &mut buf, |_| panic!("no datagram"), &mut stream);
        assert_eq!(packed, Packed { datagram: 0, fallback: 4 });
        assert_eq!(nonces(&stream), [1, 2, 3, 4]);
        assert_eq!(pack_datagram_receipts(receipts(0), 1200, &mut buf, |_| true, &mut stream).datagram, 0);
    }

    #[test]
    fn stream_receipts_are_cut_at_the_record_count_limit() {
        let mut stream = vec![0xee];
        assert_eq!(pack_stream_receipts(receipts(70_000), &mut stream), 70_000);
        assert_eq!(stream[0], 0xee, "appended after what was there");
        let first = fpn_wire::peek_frame_len(&stream[1..]).unwrap();
        assert_eq!(decode_frame(&stream[1..1 + first]).unwrap().len(), usize::from(u16::MAX));
        assert_eq!(nonces(&stream[1..]), (1..=70_000).collect::<Vec<_>>());
        assert_eq!(pack_stream_receipts(Vec::new(), &mut stream), 0);
    }
}
