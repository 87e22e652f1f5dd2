//! What an intake sent its builder shards and the merger, as log entries.
//!
//! The daemon's intakes hand the log role a copy of every message they pushed
//! ([`LogMsg`]); [`Encoder`] turns those into entries: an intent and its continuation slots
//! become one intent entry, a close marker becomes one close entry per intake (the one sent
//! to the merger carries the window's timing; the builders' copies are not logged).

use fpn_engine::shard::{IntentMsg, Reassembly, ToBuilder, ToMerger};

use crate::batch::BatchBuffer;
use crate::format::{DEST_MERGER, ENTRY_LEN_MAX};

/// A message an intake pushed, and where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogMsg {
    /// To builder shard `shard`.
    Builder { shard: u16, msg: ToBuilder },
    /// To the merger.
    Merger(ToMerger),
}

impl LogMsg {
    /// Whether the log keeps this message (a builder's close marker is implied by the
    /// merger's).
    pub fn is_logged(&self) -> bool {
        !matches!(self, LogMsg::Builder { msg: ToBuilder::Close { .. }, .. })
    }
}

/// Per intake: a multi-slot intent being put back together.
#[derive(Debug)]
pub struct Encoder {
    parts: Vec<(Reassembly, u16, u64)>,
}

impl Encoder {
    pub fn new(intakes_n: usize) -> Encoder {
        Encoder { parts: (0..intakes_n).map(|_| (Reassembly::default(), 0, 0)).collect() }
    }

    /// Whether `batch` has room for whatever entry the next message of any intake makes.
    pub fn has_room(batch: &BatchBuffer) -> bool {
        batch.has_room(ENTRY_LEN_MAX)
    }

    /// Whether intake `intake` is in the middle of a multi-slot intent.
    pub fn is_partial(&self, intake: usize) -> bool {
        self.parts[intake].0.is_partial()
    }

    /// Appends the entry of intake `intake`'s message `msg` to `batch` (nothing for a
    /// continuation slot until the intent's last one). The batch must have room
    /// ([`Encoder::has_room`]).
    pub fn push(&mut self, intake: usize, msg: &LogMsg, batch: &mut BatchBuffer) {
        let i = intake as u8;
        match msg {
            LogMsg::Builder { shard, msg } => match msg {
                ToBuilder::Intent(m) => self.intent(intake, *shard, m, batch),
                ToBuilder::More(k) => self.more(intake, k, batch),
                ToBuilder::Cancel { window_id, seq } => batch.push(|w| w.cancel(i, *shard, *window_id, *seq)),
                ToBuilder::Close { .. } => {}
            },
            LogMsg::Merger(msg) => match msg {
                ToMerger::Cross(m) => self.intent(intake, DEST_MERGER, m, batch),
                ToMerger::More(k) => self.more(intake, k, batch),
                ToMerger::Bid { window_id, bid } => batch.push(|w| w.bid(i, *window_id, bid)),
                ToMerger::CancelPending { window_id, seq } => {
                    batch.push(|w| w.cancel(i, DEST_MERGER, *window_id, *seq))
                }
                ToMerger::CancelBook(c) => batch.push(|w| w.book_cancel(i, c)),
                ToMerger::Close(close) => batch.push(|w| w.close(i, close)),
            },
        }
    }

    fn intent(&mut self, intake: usize, dest: u16, m: &IntentMsg, batch: &mut BatchBuffer) {
        let (part, d, window) = &mut self.parts[intake];
        match part.start(m) {
            Some(keys) => {
                batch.push(|w| w.intent(intake as u8, dest, m.window_id, &m.meta, keys.iter().copied()))
            }
            None => (*d, *window) = (dest, m.window_id),
        }
    }

    fn more(&mut self, intake: usize, k: &fpn_engine::shard::MoreKeys, batch: &mut BatchBuffer) {
        let (part, dest, window) = &mut self.parts[intake];
        if let Some((meta, keys)) = part.more(k) {
            batch.push(|w| w.intent(intake as u8, *dest, *window, &meta, keys.iter().copied()));
        }
    }
}
