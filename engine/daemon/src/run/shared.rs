//! State shared between the cores, off the hot path: the window-close board, the drain
//! protocol flags, the merger's book counts for the intakes, and the journal's latest lines.
//!
//! Everything here is touched once per window, once per book change or once per
//! housekeeping period, never per record.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fpn_engine::shard::{CLOSE_LAG_MAX, WindowClose, lag_of};

/// Closes kept on the board. The close policy keeps every intake fewer than
/// [`CLOSE_LAG_MAX`] closes behind the leader, so a slot is never overwritten before every
/// intake has read it.
pub const BOARD_SLOTS: usize = 64;
const _: () = assert!(CLOSE_LAG_MAX < BOARD_SLOTS as u64);

/// A value alone on its cache line (two lines: adjacent-line prefetch).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// The close board: intake 0 (the close leader, `fpn_engine::shard::CloseLeader`) publishes
/// each `WindowClose` here; the other intakes (`CloseFollower`s) apply it with
/// `IntakeCore::handle_window` in window order and record how far they got.
#[derive(Debug)]
pub struct CloseBoard {
    /// Id of the newest published close; 0 before the first.
    latest: Padded<AtomicU64>,
    slots: Mutex<[Option<WindowClose>; BOARD_SLOTS]>,
    /// Per intake: the newest close it applied.
    handled: Vec<Padded<AtomicU64>>,
}

impl CloseBoard {
    pub fn new(intakes_n: usize, first_window_id: u64) -> CloseBoard {
        CloseBoard {
            latest: Padded(AtomicU64::new(first_window_id - 1)),
            slots: Mutex::new([None; BOARD_SLOTS]),
            handled: (0..intakes_n).map(|_| Padded(AtomicU64::new(first_window_id - 1))).collect(),
        }
    }

    /// The most closes any intake has still to apply (`fpn_engine::shard::lag_of`).
    pub fn lag(&self) -> u64 {
        let latest = self.latest.0.load(Ordering::Acquire);
        lag_of(latest, self.handled.iter().map(|h| h.0.load(Ordering::Acquire)))
    }

    /// Intake 0: publish `close` (after applying it itself).
    pub fn publish(&self, close: WindowClose) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots[close.window_id as usize % BOARD_SLOTS] = Some(close);
        drop(slots);
        self.latest.0.store(close.window_id, Ordering::Release);
        self.handled[0].0.store(close.window_id, Ordering::Release);
    }

    /// The newest published close id (one relaxed-cost load per loop iteration).
    #[inline]
    pub fn latest(&self) -> u64 {
        self.latest.0.load(Ordering::Acquire)
    }

    /// The published close of `window_id` (which must be published and not yet overwritten:
    /// the close policy keeps every intake within `CLOSE_LAG_MAX < BOARD_SLOTS`).
    pub fn get(&self, window_id: u64) -> WindowClose {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let close = slots[window_id as usize % BOARD_SLOTS].expect("published close");
        assert_eq!(close.window_id, window_id, "close board overrun");
        close
    }

    pub fn set_handled(&self, intake: usize, window_id: u64) {
        self.handled[intake].0.store(window_id, Ordering::Release);
    }
}

/// Everything the roles and the admin side share.
#[derive(Debug)]
pub struct Shared {
    pub board: CloseBoard,
    /// Some intake other than 0 reports `wants_close` (its window is full).
    pub close_request: Padded<AtomicBool>,
    /// Per intake: the merger's `(open, taken_total)` book counts, packed (see [`pack_book`]).
    pub book_open: Vec<Padded<AtomicU64>>,
    /// Submits are refused `shutting_down` (set first on SIGTERM/SIGINT).
    pub draining: AtomicBool,
    /// Set once no submit can enter a ring any more: intakes finish their rings, then
    /// intake 0 closes the open window at once.
    pub drain_requested: AtomicBool,
    /// Per intake: its submit ring is empty and every answer sent, after `drain_requested`.
    pub input_done: Vec<Padded<AtomicBool>>,
    /// The window intake 0 closed for the drain; 0 until then.
    pub final_window_id: AtomicU64,
    /// The newest window the merger published.
    pub merger_window_id: AtomicU64,
    /// The newest window the journal appended.
    pub journal_window_id: AtomicU64,
    /// Per intake: how many messages it handed the log role are on disk (`docs/log.md`,
    /// "Durability"). A record is acknowledged once this passes its position.
    pub log_durable: Vec<Padded<AtomicU64>>,
    /// The newest window whose inputs are all on disk (every intake's close of it is):
    /// the merger publishes nothing newer (`log.durability = "group"`).
    pub log_durable_window: Padded<AtomicU64>,
    /// The log role's last write failed: intakes refuse new records `storage_unavailable`
    /// until a write succeeds again.
    pub log_failing: AtomicBool,
    /// `(window, rx_ns)`: after publishing `window`, the oldest receive time of a bid still
    /// in the auction book was `rx_ns` (`u64::MAX`: none). The log role asks for it with
    /// `book_oldest_asked` before deleting a segment (it keeps every segment with a bid
    /// still open) and the merger answers at its next housekeeping. `(0, 0)`: not known.
    pub book_oldest: Mutex<(u64, u64)>,
    pub book_oldest_asked: AtomicBool,
    /// The journal's newest window lines (window id, JSON text without newline), oldest
    /// first, at most `latest_max`. Kept as text: a full window's block is megabytes as a
    /// parsed value.
    pub latest: Mutex<VecDeque<(u64, String)>>,
    pub latest_max: usize,
}

/// `open` in the low 24 bits (book sizes are at most 2^20), `taken_total` above.
pub fn pack_book(open: usize, taken_total: u64) -> u64 {
    debug_assert!(open < 1 << 24 && taken_total < 1 << 40);
    (taken_total << 24) | open as u64
}

pub fn unpack_book(packed: u64) -> (usize, u64) {
    ((packed & ((1 << 24) - 1)) as usize, packed >> 24)
}

impl Shared {
    pub fn new(intakes_n: usize, first_window_id: u64, latest_max: usize) -> Shared {
        Shared {
            board: CloseBoard::new(intakes_n, first_window_id),
            close_request: Padded(AtomicBool::new(false)),
            book_open: (0..intakes_n).map(|_| Padded(AtomicU64::new(0))).collect(),
            draining: AtomicBool::new(false),
            drain_requested: AtomicBool::new(false),
            input_done: (0..intakes_n).map(|_| Padded(AtomicBool::new(false))).collect(),
            final_window_id: AtomicU64::new(0),
            merger_window_id: AtomicU64::new(first_window_id - 1),
            journal_window_id: AtomicU64::new(first_window_id - 1),
            log_durable: (0..intakes_n).map(|_| Padded(AtomicU64::new(0))).collect(),
            log_durable_window: Padded(AtomicU64::new(first_window_id - 1)),
            log_failing: AtomicBool::new(false),
            book_oldest: Mutex::new((0, 0)),
            book_oldest_asked: AtomicBool::new(false),
            latest: Mutex::new(VecDeque::with_capacity(latest_max)),
            latest_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_counts_round_trip() {
        for (open, taken) in [(0, 0), (1, 2), ((1 << 20) - 1, (1 << 40) - 1)] {
            assert_eq!(unpack_book(pack_book(open, taken)), (open, taken));
        }
    }
}
