//! Packing client records into wire frames with `fpn_wire::FrameWriter`.

use fpn_wire::{Bid, Cancel, CancelTarget, FrameFull, FrameWriter, Intent, Kind};

/// Frames packed for a stream are at most this long. A stream frame may be larger on the
/// wire (its header gives its length); 64 KiB keeps one frame's receipts within one result
/// frame of the server's and bounds what a reader must buffer.
pub const STREAM_FRAME_LEN_MAX: usize = 64 * 1024;

/// One client → engine record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'k> {
    Intent(Intent<'k>),
    Bid(Bid),
    Cancel(Cancel),
}

impl Record<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Record::Intent(_) => Kind::Intent,
            Record::Bid(_) => Kind::Bid,
            Record::Cancel(_) => Kind::Cancel,
        }
    }

    pub fn client_id(&self) -> u64 {
        match self {
            Record::Intent(i) => i.client_id,
            Record::Bid(b) => b.client_id,
            Record::Cancel(c) => c.client_id,
        }
    }

    /// The nonce its receipt will carry: the record's own, a cancel's target nonce, or 0 for
    /// a cancel by sequence id (`docs/transport.md`: receipts match by (kind, nonce)).
    pub fn receipt_nonce(&self) -> u64 {
        match self {
            Record::Intent(i) => i.nonce,
            Record::Bid(b) => b.nonce,
            Record::Cancel(Cancel { target: CancelTarget::Nonce(n), .. }) => *n,
            Record::Cancel(Cancel { target: CancelTarget::Seq(_), .. }) => 0,
        }
    }

    fn push(&self, w: &mut FrameWriter<'_>) -> Result<(), FrameFull> {
        match self {
            Record::Intent(i) => w.push_intent(i),
            Record::Bid(b) => w.push_bid(b),
            Record::Cancel(c) => w.push_cancel(c),
        }
    }
}

/// A record too large for a frame of the requested size on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("record {index} does not fit a frame of {frame_len_max} bytes")]
pub struct RecordTooLarge {
    pub index: usize,
    pub frame_len_max: usize,
}

/// Packs `records` in order into as few frames of at most `frame_len_max` bytes as
/// [`FrameWriter`] allows, appended to `frames`; returns how many were added.
pub fn pack_frames(
    records: &[Record<'_>],
    frame_len_max: usize,
    frames: &mut Vec<Vec<u8>>,
) -> Result<usize, RecordTooLarge> {
    let before = frames.len();
    let mut i = 0;
    while i < records.len() {
        let mut buf = Vec::with_capacity(frame_len_max.min(STREAM_FRAME_LEN_MAX));
        let mut w = FrameWriter::new(&mut buf, frame_len_max);
        while i < records.len() && records[i].push(&mut w).is_ok() {
            i += 1;
        }
        if w.finish() == 0 {
            frames.truncate(before);
            return Err(RecordTooLarge { index: i, frame_len_max });
        }
        frames.push(buf);
    }
    Ok(frames.len() - before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fpn_wire::{RecordRef, decode_frame};

    #[test]
    fn packs_in_order_within_the_limit() {
        let keys = [1u64, 2, 3];
        let mut records = Vec::new();
        for n in 0..100u64 {
            records.push(match n % 3 {
                0 => Record::Intent(Intent {
                    client_id: 7,
                    nonce: n,
                    sent_ns: 0,
                    profit: 1 + n,
                    priority: 0,
                    keys: &keys,
                }),
                1 => Record::Bid(Bid { client_id: 7, nonce: n, sent_ns: 0, amount: 5, priority: 1 }),
                _ => Record::Cancel(Cancel { client_id: 7, target: CancelTarget::Nonce(n - 2) }),
            });
        }
        let mut frames = Vec::new();
        let n = pack_frames(&records, 1200, &mut frames).unwrap();
        assert_eq!(n, frames.len());
        assert!(n > 1);
        let mut nonces = Vec::new();
        for f in &frames {
            assert!(f.len() <= 1200);
            for r in decode_frame(f).unwrap() {
                nonces.push(match r {
                    RecordRef::Intent(i) => i.fixed.nonce.get(),
                    RecordRef::Bid(b) => b.nonce.get(),
                    RecordRef::Cancel(c) => c.target.get() + 2,
                    other => panic!("{other:?}"),
                });
            }
        }
        assert_eq!(nonces, (0..100).collect::<Vec<_>>());
        assert_eq!(records[2].receipt_nonce(), 0);
    }

    #[test]
    fn a_record_larger_than_a_frame_is_an_error() {
        let keys: Vec<u64> = (0..64).collect();
        let intent = Intent { client_id: 7, nonce: 1, sent_ns: 0, profit: 1, priority: 0, keys: &keys };
        let bid = Bid { client_id: 7, nonce: 2, sent_ns: 0, amount: 5, priority: 1 };
        let mut frames = vec![b"kept".to_vec()];
        let err = pack_frames(&[Record::Bid(bid), Record::Intent(intent)], 200, &mut frames).unwrap_err();
        assert_eq!(err, RecordTooLarge { index: 1, frame_len_max: 200 });
        assert_eq!(frames, vec![b"kept".to_vec()]);
        assert_eq!(pack_frames(&[], 200, &mut frames), Ok(0));
    }
}
