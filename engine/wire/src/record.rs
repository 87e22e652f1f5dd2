//! Record layouts of wire format v1.
//!
//! Every struct here is `repr(C)`, built only from byte-order-aware unaligned integers, so a
//! `&Struct` can be taken at any offset of a received buffer without copying (zerocopy checks
//! the size; alignment is 1). All integers are little-endian. `docs/wire.md` is the contract.

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `FP`, the first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"FP";
/// The frame version this crate speaks, and the version of every record kind whose layout
/// has not changed since v1 (all but the block: [`Kind::version`]).
pub const VERSION: u8 = 1;
/// The block record's version: 2 since its entries carry the receive time (`rx_ns`); v1
/// entries were 32 bytes without it. A reader refuses a block of another version
/// (`unsupported_version`), as it does any record at a version it does not know.
pub const BLOCK_VERSION: u8 = 2;
/// Most resource keys one intent may name.
pub const INTENT_KEYS_MAX: usize = 64;

/// Record kinds. Client → engine kinds are below 0x80, engine → client kinds above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Intent = 0x01,
    Bid = 0x02,
    Cancel = 0x03,
    Receipt = 0x81,
    Block = 0x82,
    Clearing = 0x83,
    Proof = 0x84,
    Watermark = 0x85,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            0x01 => Kind::Intent,
            0x02 => Kind::Bid,
            0x03 => Kind::Cancel,
            0x81 => Kind::Receipt,
            0x82 => Kind::Block,
            0x83 => Kind::Clearing,
            0x84 => Kind::Proof,
            0x85 => Kind::Watermark,
            _ => return None,
        })
    }

    /// The record version of this kind that this crate reads and writes (`docs/wire.md`,
    /// "Versions"): each kind has its own, raised when its layout changes.
    pub const fn version(self) -> u8 {
        match self {
            Kind::Block => BLOCK_VERSION,
            _ => VERSION,
        }
    }

    /// Sent by clients (intent, bid, cancel) rather than by the engine.
    pub const fn is_client_kind(self) -> bool {
        (self as u8) < 0x80
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Intent => "intent",
            Kind::Bid => "bid",
            Kind::Cancel => "cancel",
            Kind::Receipt => "receipt",
            Kind::Block => "block",
            Kind::Clearing => "clearing",
            Kind::Proof => "proof",
            Kind::Watermark => "watermark",
        }
    }
}

/// Starts every frame (a datagram payload, or one unit on a stream). 12 bytes.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FrameHeader {
    pub magic: [u8; 2],
    pub version: u8,
    /// Reserved, zero.
    pub flags: u8,
    /// Records that follow, at least 1.
    pub count: U16,
    /// Reserved, zero.
    pub reserved: U16,
    /// Bytes in the frame, this header included.
    pub len: U32,
}

/// Starts every record. 8 bytes.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RecordHeader {
    pub kind: u8,
    pub version: u8,
    /// Reserved, zero.
    pub reserved: U16,
    /// Bytes in the record, this header included.
    pub len: U32,
}

/// Intent (kind 0x01): 48 bytes, then `keys_count` little-endian u64 resource keys.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct IntentWire {
    pub header: RecordHeader,
    pub client_id: U64,
    /// Unique per client within the de-duplication horizon.
    pub nonce: U64,
    /// Client's send time, ns since the Unix epoch (informational; latency stats).
    pub sent_ns: U64,
    /// Minor units, 1..=MAX_AMOUNT.
    pub profit: U64,
    pub priority: U32,
    pub keys_count: U16,
    /// Reserved, zero.
    pub reserved: U16,
}

/// Bid (kind 0x02): 48 bytes.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BidWire {
    pub header: RecordHeader,
    pub client_id: U64,
    pub nonce: U64,
    pub sent_ns: U64,
    /// Minor units, 1..=MAX_AMOUNT.
    pub amount: U64,
    /// Lower is served first under priority-first ordering.
    pub priority: U32,
    /// Reserved, zero.
    pub reserved: U32,
}

/// Cancel modes.
pub const CANCEL_BY_NONCE: u8 = 1;
pub const CANCEL_BY_SEQ: u8 = 2;

/// Cancel (kind 0x03): 32 bytes.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CancelWire {
    pub header: RecordHeader,
    pub client_id: U64,
    /// [`CANCEL_BY_NONCE`] or [`CANCEL_BY_SEQ`].
    pub mode: u8,
    /// Reserved, zero.
    pub reserved: [u8; 7],
    /// The client nonce or the engine sequence id of the record to cancel.
    pub target: U64,
}

/// Receipt (kind 0x81): 56 bytes. Answers exactly one client record.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ReceiptWire {
    pub header: RecordHeader,
    pub client_id: U64,
    /// The answered record's nonce (a cancel's target nonce, or 0 for cancel by seq).
    pub nonce: U64,
    /// Engine sequence id; 0 when rejected (a cancel by seq echoes its target).
    pub seq: U64,
    /// Window the record joined; 0 when rejected.
    pub window_id: U64,
    /// Engine receive timestamp, ns since the Unix epoch.
    pub rx_ns: U64,
    /// 0 = accepted, else a [`crate::Reason`] code.
    pub status: u8,
    /// Kind of the answered record.
    pub for_kind: u8,
    /// Reserved, zero.
    pub reserved: [u8; 6],
}

/// Block (kind 0x82, record version [`BLOCK_VERSION`]): 72 bytes, then `entries_count`
/// [`BlockEntryWire`]s.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockWire {
    pub header: RecordHeader,
    pub window_id: U64,
    pub total: U64,
    pub fifo_total: U64,
    pub surplus: U64,
    pub fee: U64,
    /// Upper bound on the best conflict-free total of the window.
    pub upper_bound: U64,
    pub fee_ppm: U32,
    pub entries_count: U32,
    /// 0 fifo, 1 greedy, 2 improved.
    pub builder: u8,
    /// 1 when the block is proven optimal.
    pub exact: u8,
    /// [`BLOCK_SCOPE_WHOLE`], or [`BLOCK_SCOPE_CLIENT`]: the entries are those of the
    /// receiving session's client only (the fixed part is still the whole block's).
    pub scope: u8,
    /// Reserved, zero.
    pub reserved: [u8; 5],
}

/// Block `scope`: every entry of the block.
pub const BLOCK_SCOPE_WHOLE: u8 = 0;
/// Block `scope`: the entries of one client only, the one the session is bound to
/// ([`crate::excerpt`]); totals, fee and bound stay the whole block's.
pub const BLOCK_SCOPE_CLIENT: u8 = 1;

/// One selected intent of a block. 40 bytes (block version 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockEntryWire {
    pub seq: U64,
    pub client_id: U64,
    pub profit: U64,
    pub payout: U64,
    /// The engine's receive time of the intent, ns since the Unix epoch: its receipt's
    /// `rx_ns`.
    pub rx_ns: U64,
}

/// Clearing (kind 0x83): 40 bytes, then `winners_count` [`WinnerWire`]s.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ClearingWire {
    pub header: RecordHeader,
    pub window_id: U64,
    /// The uniform price P before each winner's cap at its own bid; 0 under first-price.
    pub uniform_price: U64,
    /// Sum of the winners' prices.
    pub revenue: U64,
    pub winners_count: U32,
    /// 0 first-price, 1 uniform.
    pub pricing: u8,
    /// 0 priority-first, 1 amount-descending.
    pub order: u8,
    /// Reserved, zero.
    pub reserved: U16,
}

/// One auction winner. 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct WinnerWire {
    pub seq: U64,
    pub client_id: U64,
    pub amount: U64,
    pub price: U64,
}

/// Bytes of a Groth16 proof over BN254, ark-serialize compressed (A in G1, B in G2, C in G1).
pub const PROOF_BYTES_LEN: usize = 128;
/// Proof status: the proof is ready.
pub const PROOF_DONE: u8 = 0;
/// Proof status: the job failed; the proof bytes are zero.
pub const PROOF_FAILED: u8 = 1;

/// Proof (kind 0x84): 168 bytes. The clearing proof of windows `window_first ..=
/// window_last` is ready (or failed). Its public inputs and the verifying key come from the
/// admin endpoint (`GET /proofs/{job_id}/proof`, `GET /proofs/vk`).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ProofWire {
    pub header: RecordHeader,
    pub window_first: U64,
    pub window_last: U64,
    /// The prover's job id (`GET /proofs/{job_id}`).
    pub job_id: U64,
    /// [`PROOF_DONE`] or [`PROOF_FAILED`].
    pub status: u8,
    /// Reserved, zero.
    pub reserved: [u8; 7],
    /// The compressed Groth16 proof; zeros when failed.
    pub proof: [u8; PROOF_BYTES_LEN],
}

/// Watermark path: records that came in datagrams.
pub const WATERMARK_PATH_DATAGRAM: u8 = 0;
/// Watermark path: records that came on streams.
pub const WATERMARK_PATH_STREAM: u8 = 1;

/// Watermark (kind 0x85): 40 bytes, then `ranges_count` [`NonceRangeWire`]s. Sent on the
/// result stream of a session in receipt mode `refusals` instead of the receipts of its
/// accepted intents and bids (`docs/wire.md`): the nonces of the intents and bids of one path
/// answered since the path's previous watermark. Every refused one among them had its own
/// receipt earlier on the same stream; every other one was accepted and is durable.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct WatermarkWire {
    pub header: RecordHeader,
    /// [`WATERMARK_PATH_DATAGRAM`] or [`WATERMARK_PATH_STREAM`].
    pub path: u8,
    /// Reserved, zero.
    pub reserved: u8,
    pub ranges_count: U16,
    /// Reserved, zero.
    pub reserved2: U32,
    /// Intents and bids of this path accepted since the session opened (cumulative).
    pub accepted_total: U64,
    /// Intents and bids of this path answered (accepted or refused) since the session opened.
    pub answered_total: U64,
    /// Engine sequence id of the last accepted record this watermark covers; 0 if none.
    pub seq_last: U64,
}

/// Nonces `first ..= last` of one client, answered. 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct NonceRangeWire {
    pub first: U64,
    pub last: U64,
}

pub const FRAME_HEADER_LEN: usize = size_of::<FrameHeader>();
pub const RECORD_HEADER_LEN: usize = size_of::<RecordHeader>();
pub const INTENT_FIXED_LEN: usize = size_of::<IntentWire>();
pub const BID_LEN: usize = size_of::<BidWire>();
pub const CANCEL_LEN: usize = size_of::<CancelWire>();
pub const RECEIPT_LEN: usize = size_of::<ReceiptWire>();
pub const BLOCK_FIXED_LEN: usize = size_of::<BlockWire>();
pub const BLOCK_ENTRY_LEN: usize = size_of::<BlockEntryWire>();
pub const CLEARING_FIXED_LEN: usize = size_of::<ClearingWire>();
pub const WINNER_LEN: usize = size_of::<WinnerWire>();
pub const PROOF_LEN: usize = size_of::<ProofWire>();
pub const WATERMARK_FIXED_LEN: usize = size_of::<WatermarkWire>();
pub const NONCE_RANGE_LEN: usize = size_of::<NonceRangeWire>();

const _: () = {
    assert!(FRAME_HEADER_LEN == 12);
    assert!(RECORD_HEADER_LEN == 8);
    assert!(INTENT_FIXED_LEN == 48);
    assert!(BID_LEN == 48);
    assert!(CANCEL_LEN == 32);
    assert!(RECEIPT_LEN == 56);
    assert!(BLOCK_FIXED_LEN == 72);
    assert!(BLOCK_ENTRY_LEN == 40);
    assert!(CLEARING_FIXED_LEN == 40);
    assert!(WINNER_LEN == 32);
    assert!(PROOF_LEN == 168);
    assert!(WATERMARK_FIXED_LEN == 40);
    assert!(NONCE_RANGE_LEN == 16);
};
