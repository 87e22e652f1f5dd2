//! The stable list of reason codes carried in receipts.
//!
//! A code never changes meaning once published; new codes are appended. `docs/wire.md`
//! lists the same table, and a test keeps the two in step.

/// Why a record (or a whole frame) was refused. `0` on the wire means "accepted".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reason {
    /// Frame does not start with the magic bytes `FP`.
    BadMagic = 1,
    /// Frame or record version is not one this engine speaks.
    UnsupportedVersion = 2,
    /// Record kind is not known (or not accepted in this direction).
    UnknownKind = 3,
    /// The bytes end before a header or record is complete.
    Truncated = 4,
    /// Bytes follow the last record the frame declares.
    TrailingBytes = 5,
    /// A length field disagrees with the record's contents.
    BadLength = 6,
    /// A reserved field or flag is not zero.
    ReservedNonzero = 7,
    /// Intent profit or bid amount is zero.
    ZeroAmount = 8,
    /// An intent names no resource.
    NoResources = 9,
    /// An intent names more than 64 resources.
    TooManyResources = 10,
    /// An intent names the same resource key twice.
    DuplicateResource = 11,
    /// An amount exceeds [`crate::MAX_AMOUNT`].
    AmountTooLarge = 12,
    /// The (client id, nonce) pair was already seen inside the de-duplication horizon.
    DuplicateNonce = 13,
    /// A ring or table on the record's path is full; retry later.
    Overloaded = 14,
    /// The client is past its token bucket.
    RateLimited = 15,
    /// The connection's credentials do not allow this record.
    Unauthorized = 16,
    /// A cancel names nothing open.
    NotFound = 17,
    /// A cancel arrived after its target's window closed.
    TooLate = 18,
    /// The engine is draining and takes no new records.
    ShuttingDown = 19,
    /// A frame declares zero records.
    EmptyFrame = 20,
    /// A cancel's mode byte is not one of the documented modes.
    BadCancelMode = 21,
    /// The client id in the record is not the one bound to the connection.
    ClientMismatch = 22,
    /// The auction book is at capacity.
    BookFull = 23,
    /// A frame is larger than the transport accepts.
    Oversized = 24,
    /// The nonce is at or below the client's high-water mark: the highest nonce among the
    /// client's records that left the de-duplication horizon (replay protection beyond the
    /// horizon; nonces must increase per client across it).
    NonceExpired = 25,
    /// The engine cannot make records durable now (its input log cannot be written: disk
    /// full, write error); the record was not taken. Retry later.
    StorageUnavailable = 26,
    /// The client did not read its session's answers fast enough: the session is closed with
    /// application code `0x100 + 27` (`docs/transport.md`, "Slow consumers"). Never a receipt status.
    SlowConsumer = 27,
}

impl Reason {
    /// Every reason, in code order. Used by docs tests and metrics (one counter per reason).
    pub const ALL: [Reason; 27] = [
        Reason::BadMagic,
        Reason::UnsupportedVersion,
        Reason::UnknownKind,
        Reason::Truncated,
        Reason::TrailingBytes,
        Reason::BadLength,
        Reason::ReservedNonzero,
        Reason::ZeroAmount,
        Reason::NoResources,
        Reason::TooManyResources,
        Reason::DuplicateResource,
        Reason::AmountTooLarge,
        Reason::DuplicateNonce,
        Reason::Overloaded,
        Reason::RateLimited,
        Reason::Unauthorized,
        Reason::NotFound,
        Reason::TooLate,
        Reason::ShuttingDown,
        Reason::EmptyFrame,
        Reason::BadCancelMode,
        Reason::ClientMismatch,
        Reason::BookFull,
        Reason::Oversized,
        Reason::NonceExpired,
        Reason::StorageUnavailable,
        Reason::SlowConsumer,
    ];

    /// The wire code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The reason for a wire code, or `None` for `0` (accepted) and unknown codes.
    pub fn from_code(code: u8) -> Option<Reason> {
        Reason::ALL.get((code as usize).checked_sub(1)?).copied()
    }

    /// The snake_case name used in docs, JSON output and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::BadMagic => "bad_magic",
            Reason::UnsupportedVersion => "unsupported_version",
            Reason::UnknownKind => "unknown_kind",
            Reason::Truncated => "truncated",
            Reason::TrailingBytes => "trailing_bytes",
            Reason::BadLength => "bad_length",
            Reason::ReservedNonzero => "reserved_nonzero",
            Reason::ZeroAmount => "zero_amount",
            Reason::NoResources => "no_resources",
            Reason::TooManyResources => "too_many_resources",
            Reason::DuplicateResource => "duplicate_resource",
            Reason::AmountTooLarge => "amount_too_large",
            Reason::DuplicateNonce => "duplicate_nonce",
            Reason::Overloaded => "overloaded",
            Reason::RateLimited => "rate_limited",
            Reason::Unauthorized => "unauthorized",
            Reason::NotFound => "not_found",
            Reason::TooLate => "too_late",
            Reason::ShuttingDown => "shutting_down",
            Reason::EmptyFrame => "empty_frame",
            Reason::BadCancelMode => "bad_cancel_mode",
            Reason::ClientMismatch => "client_mismatch",
            Reason::BookFull => "book_full",
            Reason::Oversized => "oversized",
            Reason::NonceExpired => "nonce_expired",
            Reason::StorageUnavailable => "storage_unavailable",
            Reason::SlowConsumer => "slow_consumer",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_and_round_trip() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.code() as usize, i + 1);
            assert_eq!(Reason::from_code(r.code()), Some(*r));
        }
        assert_eq!(Reason::from_code(0), None);
        assert_eq!(Reason::from_code(Reason::ALL.len() as u8 + 1), None);
    }
}
