//! Flashpoint's durable input log (`docs/log.md`).
//!
//! Every record an intake accepts, every cancel it forwards and every window it closes is an
//! **entry** of the log: what the intake sent its builder shards and the merger. The daemon's
//! log role appends them in **batches** (one per group commit, each with a crc32c) to
//! **segment** files, and acknowledges records only once their batch is on disk. After a
//! crash, [`scan`] finds where the valid bytes end and [`replay`] feeds the entries back
//! through the engine's own cores: the windows come out as they were (building is
//! deterministic), and the intakes' and the merger's state is rebuilt.
//!
//! Sans-IO: this crate reads and writes byte slices; the daemon does the file I/O.
//!
//! - [`format`]: segment header, batch header, entries, byte by byte.
//! - [`batch`]: a batch under construction, sealed with its checksum.
//! - [`scan`]: a segment read back: valid batches, a torn tail, corruption.
//! - [`replay`]: entries back through the cores; results and the state to resume from.
//! - [`state`]: each intake's state as its entries go by (segment starts, recovery).
//! - [`journal`]: the results journal's line format, shared by the daemon and `fpn replay`.

pub mod batch;
pub mod encode;
pub mod format;
pub mod journal;
pub mod replay;
pub mod scan;
pub mod state;

pub use batch::BatchBuffer;
pub use encode::{Encoder, LogMsg};
pub use format::{Entry, FormatError, SegmentHeader};
pub use scan::{End, Scanned, scan_segment};
pub use state::{IntakeTrack, LogState};

/// The file name of segment `index`: ten digits and `.fpl`, so names sort as indices do.
pub fn segment_file_name(index: u64) -> String {
    format!("{index:010}.fpl")
}

/// The segment index of a file name made by [`segment_file_name`].
pub fn segment_index_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".fpl")?;
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}
