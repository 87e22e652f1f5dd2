//! Reading a segment back: its header, its batches in order, each checked against its crc32c,
//! and where the valid bytes end (`docs/log.md`, "Recovery").
//!
//! A problem after the last valid batch of the **last** segment, with no valid batch after
//! it, is a **torn tail**: a crash cut the last group commit short. Anything else (a bad
//! batch followed by a valid one, a bad batch in an earlier segment, a batch whose checksum
//! holds but whose entries do not decode) is **corruption**.

use crate::format::{
    BATCH_HEADER_LEN, BatchHeader, Entry, FormatError, SEGMENT_HEADER_LEN, SegmentHeader, entries,
};

/// How a segment's bytes end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every byte belongs to a valid batch.
    Clean,
    /// A torn last write from `offset` on (only in the last segment): truncate there.
    TornTail { offset: usize },
    /// Bad bytes at `offset` with valid data after them, or in a segment that is not the last.
    Corrupt { offset: usize, error: FormatError },
}

/// A scanned segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    pub header: SegmentHeader,
    /// Bytes of the segment up to the end of its last valid batch.
    pub valid_len: usize,
    pub batches: usize,
    pub end: End,
}

/// The batch at `at`: its payload and the offset after it.
fn batch_at(bytes: &[u8], at: usize) -> Result<(&[u8], usize), FormatError> {
    let h = BatchHeader::decode(&bytes[at..])?;
    let start = at + BATCH_HEADER_LEN;
    let end = start.checked_add(h.payload_len as usize).ok_or(FormatError::BadLength)?;
    if end > bytes.len() {
        return Err(FormatError::Truncated);
    }
    let payload = &bytes[start..end];
    if crc32c::crc32c(payload) != h.crc {
        return Err(FormatError::BadChecksum);
    }
    Ok((payload, end))
}

/// Whether a valid batch starts anywhere after `from` (at an 8-byte boundary).
fn valid_batch_after(bytes: &[u8], from: usize) -> bool {
    let mut at = (from + 8) & !7;
    while at + BATCH_HEADER_LEN <= bytes.len() {
        if batch_at(bytes, at).is_ok() {
            return true;
        }
        at += 8;
    }
    false
}

/// Scans one segment's bytes, handing every entry of every valid batch to `f` with the
/// offset of its batch. `last`: this is the newest segment (a torn tail is possible).
pub fn scan_segment(
    bytes: &[u8],
    last: bool,
    mut f: impl FnMut(usize, Entry<'_>),
) -> Result<Scanned, FormatError> {
    let header = SegmentHeader::decode(bytes)?;
    let mut at = SEGMENT_HEADER_LEN;
    let mut batches = 0;
    let end = loop {
        if at == bytes.len() {
            break End::Clean;
        }
        match batch_at(bytes, at) {
            Ok((payload, next)) => {
                // The checksum held: entries that do not decode are corruption, not a tear.
                for e in entries(payload) {
                    match e {
                        Ok(e) => f(at, e),
                        Err(error) => {
                            return Ok(Scanned {
                                header,
                                valid_len: at,
                                batches,
                                end: End::Corrupt { offset: at, error },
                            });
                        }
                    }
                }
                batches += 1;
                at = next;
            }
            Err(error) if last && !valid_batch_after(bytes, at) => {
                let _ = error;
                break End::TornTail { offset: at };
            }
            Err(error) => break End::Corrupt { offset: at, error },
        }
    };
    Ok(Scanned { header, valid_len: at, batches, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuffer;
    use fpn_engine::{CloseReason, WindowClose};

    fn segment(batches: usize) -> Vec<u8> {
        let mut bytes =
            SegmentHeader { index: 1, created_ns: 0, intakes_n: 1, shards_n: 1 }.encode().to_vec();
        for w in 0..batches {
            let mut b = BatchBuffer::with_capacity(4096);
            let close = WindowClose {
                window_id: w as u64 + 1,
                opened_ns: 0,
                closed_ns: 1,
                reason: CloseReason::Deadline,
            };
            b.push(|e| e.close(0, &close));
            bytes.extend_from_slice(b.seal());
        }
        bytes
    }

    fn count(bytes: &[u8], last: bool) -> (Scanned, usize) {
        let mut n = 0;
        let s = scan_segment(bytes, last, |_, _| n += 1).unwrap();
        (s, n)
    }

    #[test]
    fn clean_segment_reads_every_entry() {
        let bytes = segment(3);
        let (s, n) = count(&bytes, true);
        assert_eq!((s.end, s.batches, s.valid_len, n), (End::Clean, 3, bytes.len(), 3));
    }

    #[test]
    fn a_cut_last_batch_is_a_torn_tail_in_the_last_segment_only() {
        let full = segment(3);
        let batch = (full.len() - SEGMENT_HEADER_LEN) / 3;
        for cut in [1, BATCH_HEADER_LEN - 1, BATCH_HEADER_LEN + 3, batch - 1] {
            let bytes = &full[..full.len() - batch + cut];
            let (s, n) = count(bytes, true);
            assert_eq!(s.end, End::TornTail { offset: full.len() - batch }, "cut {cut}");
            assert_eq!(n, 2);
            let (s, _) = count(bytes, false);
            assert!(matches!(s.end, End::Corrupt { .. }), "cut {cut}: not the last segment");
        }
    }

    #[test]
    fn a_flipped_byte_before_a_valid_batch_is_corruption() {
        let mut bytes = segment(3);
        let batch = (bytes.len() - SEGMENT_HEADER_LEN) / 3;
        bytes[SEGMENT_HEADER_LEN + batch + BATCH_HEADER_LEN + 2] ^= 0x40;
        let (s, n) = count(&bytes, true);
        assert_eq!(
            s.end,
            End::Corrupt { offset: SEGMENT_HEADER_LEN + batch, error: FormatError::BadChecksum }
        );
        assert_eq!(n, 1);
        // The same flip in the last batch is a torn tail.
        let mut bytes = segment(3);
        let last = bytes.len() - 4;
        bytes[last] ^= 0x40;
        assert_eq!(count(&bytes, true).0.end, End::TornTail { offset: SEGMENT_HEADER_LEN + 2 * batch });
    }
}
