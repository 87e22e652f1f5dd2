//! Block excerpts (`docs/wire.md`, block `scope`): a window's result frame with its block cut
//! down to the entries of one client, for a session that only needs its own.
//!
//! The server sends each published window's results to every session that had a record in
//! it. Sent whole, the block costs every such session 40 bytes per intent of the window, so
//! the server's sending grew with sessions × block size (`BENCHMARKS.md`, "Scale-out
//! (issue 16)"). An excerpt keeps the block's fixed part (window, totals, fee, bound) with
//! `scope` = [`BLOCK_SCOPE_CLIENT`] and only that client's entries, in seq order; every other
//! record of the frame (the clearing) is copied as it is.

use zerocopy::FromBytes;
use zerocopy::little_endian::U32;

use crate::decode::{RecordRef, decode_frame};
use crate::encode::FrameWriter;
use crate::record::{
    BLOCK_ENTRY_LEN, BLOCK_FIXED_LEN, BLOCK_SCOPE_CLIENT, BlockEntryWire, FRAME_HEADER_LEN, RecordHeader,
};

/// The entries of `frame`'s block (`None`: the frame does not decode or holds no block).
pub fn block_entries(frame: &[u8]) -> Option<&[BlockEntryWire]> {
    decode_frame(frame).ok()?.find_map(|r| match r {
        RecordRef::Block(b) => Some(b.entries),
        _ => None,
    })
}

/// Appends to `out` the frame `frame` with its block's entries replaced by `entries` (one
/// client's, in seq order: the caller picks them from [`block_entries`]) and its `scope` set
/// to [`BLOCK_SCOPE_CLIENT`]; every other record is copied unchanged. Returns `false`, and
/// appends nothing, if `frame` does not decode or holds no block.
pub fn write_excerpt(
    frame: &[u8],
    entries: impl ExactSizeIterator<Item = BlockEntryWire>,
    out: &mut Vec<u8>,
) -> bool {
    let Ok(records) = decode_frame(frame) else { return false };
    if !records.clone().any(|r| matches!(r, RecordRef::Block(_))) {
        return false;
    }
    let mut entries = Some(entries);
    let mut w = FrameWriter::new(out, u32::MAX as usize);
    // decode_frame checked every record's header and length: walk the raw records beside it.
    let mut rest = &frame[FRAME_HEADER_LEN..];
    for record in records {
        let len = RecordHeader::ref_from_prefix(rest).map_or(rest.len(), |(h, _)| h.len.get() as usize);
        let (raw, tail) = rest.split_at(len);
        rest = tail;
        let written = match record {
            RecordRef::Block(b) if entries.is_some() => {
                let entries = entries.take().expect("checked");
                let mut fixed = *b.fixed;
                let n = entries.len();
                fixed.header.len = U32::new((BLOCK_FIXED_LEN + BLOCK_ENTRY_LEN * n) as u32);
                fixed.entries_count = U32::new(n as u32);
                fixed.scope = BLOCK_SCOPE_CLIENT;
                w.push_block_wire(&fixed, entries)
            }
            _ => w.push_raw(raw),
        };
        assert_eq!(written, Ok(()), "a u32-sized frame holds what one frame held");
    }
    w.finish();
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{BlockSummary, ClearingSummary};
    use crate::record::{BLOCK_SCOPE_WHOLE, WinnerWire};

    fn window_frame() -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = FrameWriter::new(&mut out, 1 << 20);
        let summary =
            BlockSummary { window_id: 9, total: 60, fee: 6, exact: true, ..BlockSummary::default() };
        let entries = [
            BlockEntryWire::new(1, 7, 10, 9, 100),
            BlockEntryWire::new(2, 8, 20, 18, 200),
            BlockEntryWire::new(3, 7, 30, 27, 300),
        ];
        w.push_block(&summary, &entries).unwrap();
        let clearing = ClearingSummary { window_id: 9, uniform_price: 5, ..ClearingSummary::default() };
        w.push_clearing(&clearing, &[WinnerWire::new(4, 8, 50, 5)]).unwrap();
        w.finish();
        out
    }

    #[test]
    fn an_excerpt_keeps_the_totals_one_clients_entries_and_the_clearing() {
        let frame = window_frame();
        let entries = block_entries(&frame).unwrap();
        assert_eq!(entries.len(), 3);
        let mut out = vec![0xAA];
        let mine: Vec<BlockEntryWire> = entries.iter().copied().filter(|e| e.client_id.get() == 7).collect();
        assert!(write_excerpt(&frame, mine.into_iter(), &mut out));
        assert_eq!(out[0], 0xAA, "appended");
        let records: Vec<RecordRef<'_>> = decode_frame(&out[1..]).unwrap().collect();
        assert_eq!(records.len(), 2);
        let RecordRef::Block(b) = records[0] else { panic!("block first") };
        assert_eq!((b.fixed.window_id.get(), b.fixed.total.get(), b.fixed.fee.get()), (9, 60, 6));
        assert_eq!(b.fixed.scope, BLOCK_SCOPE_CLIENT);
        assert_eq!(b.entries.iter().map(|e| e.seq.get()).collect::<Vec<_>>(), [1, 3]);
        let RecordRef::Clearing(c) = records[1] else { panic!("clearing second") };
        assert_eq!((c.fixed.uniform_price.get(), c.winners.len()), (5, 1));

        // A client with no entry gets the totals alone; the whole block says scope 0.
        let mut none = Vec::new();
        assert!(write_excerpt(&frame, std::iter::empty(), &mut none));
        let Some(RecordRef::Block(b)) = decode_frame(&none).unwrap().next() else { panic!() };
        assert_eq!((b.entries.len(), b.fixed.entries_count.get(), b.fixed.total.get()), (0, 0, 60));
        let Some(RecordRef::Block(b)) = decode_frame(&frame).unwrap().next() else { panic!() };
        assert_eq!(b.fixed.scope, BLOCK_SCOPE_WHOLE);
    }

    #[test]
    fn no_block_no_excerpt() {
        let mut out = Vec::new();
        assert!(!write_excerpt(b"garbage", std::iter::empty(), &mut out));
        let mut clearing_only = Vec::new();
        let mut w = FrameWriter::new(&mut clearing_only, 1 << 20);
        let clearing = ClearingSummary { window_id: 1, ..ClearingSummary::default() };
        w.push_clearing(&clearing, &[]).unwrap();
        w.finish();
        assert!(!write_excerpt(&clearing_only, std::iter::empty(), &mut out));
        assert!(out.is_empty());
        assert_eq!(block_entries(&clearing_only), None);
    }
}
