//! Flashpoint wire format v1 (see `docs/wire.md`, the byte-exact contract).

pub mod reason;

pub use reason::Reason;

/// Largest profit or bid amount a record may carry: 2^44 − 1 minor units. With a window
/// record cap of at most 2^20 this keeps every window total below 2^64.
pub const MAX_AMOUNT: u64 = (1 << 44) - 1;
