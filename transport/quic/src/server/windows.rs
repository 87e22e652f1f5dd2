//! Which published windows go to a session: those it had a record accepted in (and all of
//! them with `subscribe_all`), and what of each it gets: the whole result frame with
//! `subscribe_all`, else the excerpt of its client's block entries (`docs/transport.md`,
//! "Window results"). Written once for every transport of `fpn/1`.

use std::collections::{HashMap, VecDeque};

use fpn_wire::Receipt;
use fpn_wire::excerpt::{block_entries, write_excerpt};

/// Windows with accepted records remembered per session, awaiting their results.
pub const SESSION_WINDOWS_MAX: usize = 64;

/// The windows a session had records accepted in, whose results are still to come, oldest
/// first; past [`SESSION_WINDOWS_MAX`] the oldest is forgotten.
#[derive(Debug, Default)]
pub struct SessionWindows(VecDeque<u64>);

impl SessionWindows {
    /// Notes the window of an accepted record's receipt.
    pub fn note(&mut self, receipt: &Receipt) {
        let w = &mut self.0;
        if receipt.status.is_ok() && receipt.window_id != 0 && w.back() != Some(&receipt.window_id) {
            if w.len() == SESSION_WINDOWS_MAX {
                w.pop_front();
            }
            w.push_back(receipt.window_id);
        }
    }

    /// Window `window_id` was published (windows are published in order): whether the
    /// session had a record in it. Older windows it remembers are forgotten.
    pub fn take(&mut self, window_id: u64) -> bool {
        let w = &mut self.0;
        while w.front().is_some_and(|&id| id < window_id) {
            w.pop_front();
        }
        let had_records = w.front() == Some(&window_id);
        if had_records {
            w.pop_front();
        }
        had_records
    }
}

/// One published window's results as each session gets them: the frame itself for a
/// `subscribe_all` session, else the excerpt of its client's entries, written once per
/// client per window. Sent whole, the block cost the server 40 bytes per intent of the
/// window for every session that had a record in it (`BENCHMARKS.md`, "Scale-out (issue
/// 16)"). Kept across windows, so that its buffers are reused.
#[derive(Debug, Default)]
pub struct WindowResults {
    /// This window's excerpts, back to back; `at` says where each client's is.
    buf: Vec<u8>,
    at: HashMap<u64, (usize, usize)>,
    /// The block's entry indices ordered by client (a stable sort: each client's run stays
    /// in seq order), made when the first excerpt is asked for.
    order: Vec<u32>,
    sorted: bool,
}

impl WindowResults {
    /// A new window: forgets the previous one's excerpts.
    pub fn begin(&mut self) {
        self.buf.clear();
        self.at.clear();
        self.order.clear();
        self.sorted = false;
    }

    /// What a session bound to `client_id` gets of the window's result `frame`: the frame
    /// itself with `subscribe_all` (or if it holds no block), else its client's excerpt.
    pub fn frame_for<'s>(&'s mut self, frame: &'s [u8], client_id: u64, subscribe_all: bool) -> &'s [u8] {
        if subscribe_all {
            return frame;
        }
        if let Some(&(a, b)) = self.at.get(&client_id) {
            return &self.buf[a..b];
        }
        let Some(entries) = block_entries(frame) else { return frame };
        if !self.sorted {
            self.order.extend(0..entries.len() as u32);
            self.order.sort_by_key(|&i| entries[i as usize].client_id.get());
            self.sorted = true;
        }
        let client_of = |i: &u32| entries[*i as usize].client_id.get();
        let first = self.order.partition_point(|i| client_of(i) < client_id);
        let end = self.order.partition_point(|i| client_of(i) <= client_id);
        let mine = self.order[first..end].iter().map(|&i| entries[i as usize]);
        let start = self.buf.len();
        if !write_excerpt(frame, mine, &mut self.buf) {
            return frame;
        }
        self.at.insert(client_id, (start, self.buf.len()));
        &self.buf[start..]
    }
}

#[cfg(test)]
mod tests {
    use fpn_wire::Reason;

    use super::*;

    fn receipt(window_id: u64, status: Result<(), Reason>) -> Receipt {
        Receipt { window_id, status, ..Receipt::frame_refused(Reason::Overloaded, 0) }
    }

    #[test]
    fn a_session_gets_the_windows_it_had_accepted_records_in() {
        let mut w = SessionWindows::default();
        for (id, status) in [(3, Ok(())), (3, Ok(())), (4, Err(Reason::ZeroAmount)), (5, Ok(())), (0, Ok(()))]
        {
            w.note(&receipt(id, status));
        }
        assert!(!w.take(2));
        assert!(w.take(3));
        assert!(!w.take(3), "once");
        assert!(!w.take(4), "refused records join no window");
        assert!(w.take(5));
        for id in 1..=SESSION_WINDOWS_MAX as u64 + 1 {
            w.note(&receipt(id, Ok(())));
        }
        assert!(!w.take(1), "forgotten past the bound");
        assert!(w.take(2));
    }

    #[test]
    fn sessions_get_their_clients_entries_and_subscribers_the_whole_block() {
        use fpn_wire::{
            BLOCK_SCOPE_CLIENT, BlockEntryWire, BlockSummary, FrameWriter, RecordRef, decode_frame,
        };

        let mut frame = Vec::new();
        let mut w = FrameWriter::new(&mut frame, 1 << 20);
        let entries =
            [(1, 8), (2, 7), (3, 8), (4, 9), (5, 7)].map(|(seq, c)| BlockEntryWire::new(seq, c, 5, 4, 0));
        w.push_block(&BlockSummary { window_id: 3, total: 25, ..BlockSummary::default() }, &entries).unwrap();
        w.finish();
        let seqs = |f: &[u8]| -> (u8, Vec<u64>) {
            let Some(RecordRef::Block(b)) = decode_frame(f).unwrap().next() else { panic!("a block") };
            (b.fixed.scope, b.entries.iter().map(|e| e.seq.get()).collect())
        };
        let mut r = WindowResults::default();
        for _ in 0..2 {
            r.begin();
            assert_eq!(r.frame_for(&frame, 7, true), &frame[..]);
            assert_eq!(seqs(r.frame_for(&frame, 8, false)), (BLOCK_SCOPE_CLIENT, vec![1, 3]));
            assert_eq!(seqs(r.frame_for(&frame, 7, false)), (BLOCK_SCOPE_CLIENT, vec![2, 5]));
            assert_eq!(seqs(r.frame_for(&frame, 8, false)), (BLOCK_SCOPE_CLIENT, vec![1, 3]));
            assert_eq!(seqs(r.frame_for(&frame, 6, false)), (BLOCK_SCOPE_CLIENT, vec![]));
            assert_eq!(r.at.len(), 3, "one excerpt per client");
        }
        r.begin();
        assert_eq!(r.frame_for(b"not a frame", 7, false), b"not a frame");
    }
}
