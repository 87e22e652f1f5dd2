//! Flashpoint wire format v1.
//!
//! `docs/wire.md` is the byte-exact contract; tests decode the examples printed there. This
//! crate has no engine and no I/O, so clients and the transport can depend on it alone.
//!
//! A frame (one datagram payload, or one unit on a stream) is a 12-byte [`FrameHeader`] and
//! then `count` records, each starting with an 8-byte [`RecordHeader`] that gives its kind
//! and its length. All integers are little-endian at fixed offsets.

pub mod confirm;
pub mod decode;
pub mod encode;
pub mod excerpt;
pub mod reason;
pub mod record;
pub mod session;

pub use decode::{
    Ahead, BlockRef, ClearingRef, IntentRef, Lookahead, RecordRef, Records, WatermarkRef, decode_frame,
    peek_frame_len, validate_bid, validate_cancel, validate_proof, validate_watermark,
};
pub use encode::{
    Bid, BlockSummary, Cancel, CancelTarget, ClearingSummary, FrameFull, FrameWriter, Intent, ProofAnnounce,
    Receipt, Watermark, WatermarkPath,
};
pub use reason::Reason;
pub use record::*;

/// Largest profit or bid amount a record may carry: 2^44 − 1 minor units. With a window
/// record cap of at most 2^20 this keeps every window total below 2^64.
pub const MAX_AMOUNT: u64 = (1 << 44) - 1;

/// A frame that fits one QUIC datagram on a 1,280-byte-MTU path with room to spare. Clients
/// pack records into frames up to this size by default.
pub const DATAGRAM_FRAME_LEN_MAX: usize = 1_200;
