//! The answers of the bare echo baselines (QUIC and UDP).
//!
//! Design: the echo must cost the client exactly what the engine's receipts cost it, so the
//! client's matching code cannot tell them apart. For each received datagram the echo checks
//! the frame's structure with [`decode_frame`] (as the engine's first step does) and answers
//! every record with a 56-byte receipt (`docs/wire.md`): the record's client id and nonce,
//! `seq` = nonce, window 0, `rx_ns` = the echo's receive time, status 0 (accepted), and the
//! record's kind. The receipts of one datagram go back in one datagram (16 receipts are 908
//! bytes), split only if they do not fit `answer_len_max`, as the engine packs them. A frame
//! refused whole gets the one kind-0 receipt the engine would send. What the echo does *not*
//! do is everything the engine adds: content validation, de-duplication, sequencing, routing
//! to a window. The ratio engine / echo is therefore the price of the engine on the round trip.

use fpn_wire::{FrameWriter, Kind, Reason, Receipt, RecordRef, decode_frame};

/// What a record says about itself: `(kind, client_id, nonce)`; `None` for engine → client
/// kinds, which a client must not send.
fn record_id(r: &RecordRef<'_>) -> Option<(Kind, u64, u64)> {
    Some(match r {
        RecordRef::Intent(i) => (Kind::Intent, i.fixed.client_id.get(), i.fixed.nonce.get()),
        RecordRef::Bid(b) => (Kind::Bid, b.client_id.get(), b.nonce.get()),
        RecordRef::Cancel(c) => (Kind::Cancel, c.client_id.get(), c.target.get()),
        _ => return None,
    })
}

/// Appends the answer frames for `frame` to `out`, and the end offset of each in `out` to
/// `ends`. `bound_client` is the session's client id (QUIC); records of another client are
/// refused `client_mismatch`, as the engine refuses them. UDP has no session: pass `None`.
pub fn answer_frames(
    frame: &[u8],
    bound_client: Option<u64>,
    rx_ns: u64,
    answer_len_max: usize,
    out: &mut Vec<u8>,
    ends: &mut Vec<usize>,
) {
    let records = match decode_frame(frame) {
        Ok(records) => records,
        Err(reason) => {
            let mut w = FrameWriter::new(out, answer_len_max);
            w.push_receipt(&Receipt::frame_refused(reason, rx_ns)).expect("one receipt fits");
            w.finish();
            ends.push(out.len());
            return;
        }
    };
    let mut w = FrameWriter::new(out, answer_len_max);
    for record in records {
        let receipt = match record_id(&record) {
            Some((kind, client_id, nonce)) => Receipt {
                client_id,
                nonce,
                seq: nonce,
                window_id: 0,
                rx_ns,
                status: match bound_client {
                    Some(bound) if bound != client_id => Err(Reason::ClientMismatch),
                    _ => Ok(()),
                },
                for_kind: Some(kind),
            },
            None => Receipt {
                client_id: 0,
                nonce: 0,
                seq: 0,
                window_id: 0,
                rx_ns,
                status: Err(Reason::UnknownKind),
                for_kind: Some(record.kind()),
            },
        };
        if w.push_receipt(&receipt).is_err() {
            w.finish();
            ends.push(out.len());
            w = FrameWriter::new(out, answer_len_max);
            w.push_receipt(&receipt).expect("one receipt fits an empty frame");
        }
    }
    w.finish();
    ends.push(out.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{FrameGen, Shape};
    use crate::track::Tracker;

    #[test]
    fn echo_answers_match_like_receipts() {
        let shape = Shape {
            rate_per_s: 16_000.0,
            conns: 1,
            records_per_dgram: 16,
            burst: 1,
            bids_per_mille: 200,
            warmup: std::time::Duration::ZERO,
            duration: std::time::Duration::from_secs(1),
        };
        let g = FrameGen::new(&shape, 1548, 1).unwrap();
        let s = crate::load::Schedule::new(&shape, 0);
        let mut t = Tracker::new(s, 16, 0, u64::MAX);
        let mut frame = Vec::new();
        g.frame(5, 2, 0, &mut frame);
        t.handle_sent(2, frame.len(), 2_000_000);
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        answer_frames(&frame, Some(5), 1, 1200, &mut out, &mut ends);
        assert_eq!(ends, vec![12 + 16 * 56]);
        t.handle_answer_frame(&out, false, 2_500_000);
        assert_eq!((t.counts.measured_answered, t.counts.measured_accepted), (16, 16));
        assert_eq!(t.outstanding(), 0);
        // Small answer frames split; a wrong client is refused like the engine does.
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        answer_frames(&frame, Some(6), 1, 12 + 5 * 56, &mut out, &mut ends);
        assert_eq!(ends.len(), 4);
        let mismatched = decode_frame(&out[..ends[0]]).unwrap().all(|r| match r {
            RecordRef::Receipt(r) => r.status == Reason::ClientMismatch.code(),
            _ => false,
        });
        assert!(mismatched);
        // A frame refused whole gets one kind-0 receipt.
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        answer_frames(b"garbage!garbage!", None, 1, 1200, &mut out, &mut ends);
        t.handle_answer_frame(&out, false, 3);
        assert_eq!(t.counts.frames_refused, vec![(Reason::BadMagic.code(), 1)]);
    }
}
