//! Decoding frames of untrusted bytes.
//!
//! Two steps. [`decode_frame`] checks the frame's structure as a whole: magic, version, flags,
//! the declared length, and every record header (kind, version, length consistent with the
//! kind's layout, record inside the frame, nothing after the last). A frame that fails is
//! refused whole with one [`Reason`]: its record boundaries cannot be trusted. A frame that
//! passes yields [`RecordRef`]s that borrow the buffer (no copy). Then the content of each
//! record is checked on its own ([`IntentRef::validate`], [`validate_bid`],
//! [`validate_cancel`]), so one bad record is refused with a receipt naming its client and
//! nonce while its neighbours go through.
//!
//! Nothing here panics on any input; a property test and a fuzz target hold that.

use zerocopy::FromBytes;
use zerocopy::byteorder::little_endian::U64;

use crate::Reason;
use crate::record::*;

/// A structurally valid frame: an iterator over its records.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
    remaining: u16,
}

/// One record, borrowed from the frame.
#[derive(Debug, Clone, Copy)]
pub enum RecordRef<'a> {
    Intent(IntentRef<'a>),
    Bid(&'a BidWire),
    Cancel(&'a CancelWire),
    Receipt(&'a ReceiptWire),
    Block(BlockRef<'a>),
    Clearing(ClearingRef<'a>),
    Proof(&'a ProofWire),
    Watermark(WatermarkRef<'a>),
}

impl RecordRef<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            RecordRef::Intent(_) => Kind::Intent,
            RecordRef::Bid(_) => Kind::Bid,
            RecordRef::Cancel(_) => Kind::Cancel,
            RecordRef::Receipt(_) => Kind::Receipt,
            RecordRef::Block(_) => Kind::Block,
            RecordRef::Clearing(_) => Kind::Clearing,
            RecordRef::Proof(_) => Kind::Proof,
            RecordRef::Watermark(_) => Kind::Watermark,
        }
    }
}

/// An intent and its resource keys.
#[derive(Debug, Clone, Copy)]
pub struct IntentRef<'a> {
    pub fixed: &'a IntentWire,
    /// Resource keys, little-endian, `fixed.keys_count` of them.
    pub keys: &'a [U64],
}

impl<'a> IntentRef<'a> {
    /// The keys as raw little-endian 8-byte groups, for stores that convert in bulk.
    pub fn keys_le(&self) -> &'a [[u8; 8]] {
        // Same bytes, same length; both types are unaligned byte arrays.
        <[[u8; 8]]>::ref_from_bytes(zerocopy::IntoBytes::as_bytes(self.keys))
            .expect("U64 and [u8; 8] share size and alignment")
    }

    pub fn key(&self, i: usize) -> u64 {
        self.keys[i].get()
    }

    /// Content rules: reserved zero, profit in 1..=MAX_AMOUNT, 1..=64 distinct keys.
    pub fn validate(&self) -> Result<(), Reason> {
        let f = self.fixed;
        if f.header.reserved.get() != 0 || f.reserved.get() != 0 {
            return Err(Reason::ReservedNonzero);
        }
        check_amount(f.profit.get())?;
        check_keys(self.keys)
    }
}

/// A block and its entries.
#[derive(Debug, Clone, Copy)]
pub struct BlockRef<'a> {
    pub fixed: &'a BlockWire,
    pub entries: &'a [BlockEntryWire],
}

/// A watermark and its nonce ranges.
#[derive(Debug, Clone, Copy)]
pub struct WatermarkRef<'a> {
    pub fixed: &'a WatermarkWire,
    pub ranges: &'a [NonceRangeWire],
}

/// A clearing and its winners.
#[derive(Debug, Clone, Copy)]
pub struct ClearingRef<'a> {
    pub fixed: &'a ClearingWire,
    pub winners: &'a [WinnerWire],
}

#[inline]
fn check_amount(amount: u64) -> Result<(), Reason> {
    if amount == 0 {
        Err(Reason::ZeroAmount)
    } else if amount > crate::MAX_AMOUNT {
        Err(Reason::AmountTooLarge)
    } else {
        Ok(())
    }
}

#[inline]
fn check_keys(keys: &[U64]) -> Result<(), Reason> {
    let n = keys.len();
    if n == 0 {
        return Err(Reason::NoResources);
    }
    if n > INTENT_KEYS_MAX {
        return Err(Reason::TooManyResources);
    }
    // A 64-bit mask of hashed keys filters the pairwise check: only a key whose bit is
    // already set is compared with the keys before it. Measured on 8-key intents: 32 M
    // records/s with a plain pairwise scan, see BENCHMARKS.md for the filtered figure. The
    // worst case (every bit colliding) is the plain scan, 2,016 compares at 64 keys.
    let mut mask = 0u64;
    for (i, key) in keys.iter().enumerate() {
        let k = key.get();
        let bit = 1u64 << (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58);
        if mask & bit != 0 && keys[..i].iter().any(|o| o.get() == k) {
            return Err(Reason::DuplicateResource);
        }
        mask |= bit;
    }
    Ok(())
}

/// Content rules of a bid: reserved zero, amount in 1..=MAX_AMOUNT.
pub fn validate_bid(bid: &BidWire) -> Result<(), Reason> {
    if bid.header.reserved.get() != 0 || bid.reserved.get() != 0 {
        return Err(Reason::ReservedNonzero);
    }
    check_amount(bid.amount.get())
}

/// Content rules of a cancel: reserved zero, a known mode.
pub fn validate_cancel(cancel: &CancelWire) -> Result<(), Reason> {
    if cancel.header.reserved.get() != 0 || cancel.reserved != [0; 7] {
        return Err(Reason::ReservedNonzero);
    }
    match cancel.mode {
        CANCEL_BY_NONCE | CANCEL_BY_SEQ => Ok(()),
        _ => Err(Reason::BadCancelMode),
    }
}

/// Content rules of a proof announcement: reserved zero, status done or failed (other
/// values are reserved), and a failed one's proof bytes zero.
pub fn validate_proof(proof: &ProofWire) -> Result<(), Reason> {
    if proof.header.reserved.get() != 0 || proof.reserved != [0; 7] {
        return Err(Reason::ReservedNonzero);
    }
    match proof.status {
        PROOF_DONE => Ok(()),
        PROOF_FAILED if proof.proof == [0; PROOF_BYTES_LEN] => Ok(()),
        _ => Err(Reason::ReservedNonzero),
    }
}

/// Content rules of a watermark: reserved zero, a known path, each range's `first <= last`.
pub fn validate_watermark(w: &WatermarkRef<'_>) -> Result<(), Reason> {
    let f = w.fixed;
    if f.header.reserved.get() != 0 || f.reserved != 0 || f.reserved2.get() != 0 {
        return Err(Reason::ReservedNonzero);
    }
    if f.path > WATERMARK_PATH_STREAM || w.ranges.iter().any(|r| r.first.get() > r.last.get()) {
        return Err(Reason::BadLength);
    }
    Ok(())
}

/// Checks a frame's structure and returns its records. See the module doc.
pub fn decode_frame(buf: &[u8]) -> Result<Records<'_>, Reason> {
    let (header, body) = FrameHeader::ref_from_prefix(buf).map_err(|_| Reason::Truncated)?;
    if header.magic != MAGIC {
        return Err(Reason::BadMagic);
    }
    if header.version != VERSION {
        return Err(Reason::UnsupportedVersion);
    }
    if header.flags != 0 || header.reserved.get() != 0 {
        return Err(Reason::ReservedNonzero);
    }
    let count = header.count.get();
    if count == 0 {
        return Err(Reason::EmptyFrame);
    }
    let frame_len = header.len.get() as usize;
    if frame_len < FRAME_HEADER_LEN {
        return Err(Reason::BadLength);
    }
    if frame_len > buf.len() {
        return Err(Reason::Truncated);
    }
    if frame_len < buf.len() {
        return Err(Reason::TrailingBytes);
    }
    // Walk the record headers once; the iterator below can then trust every length.
    let mut rest = body;
    for _ in 0..count {
        let len = check_record_header(rest)?;
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(Reason::TrailingBytes);
    }
    Ok(Records { rest: body, remaining: count })
}

/// Reads the frame header's declared length from the first bytes of a stream, so a stream
/// reader knows how much to read before calling [`decode_frame`].
pub fn peek_frame_len(prefix: &[u8]) -> Result<usize, Reason> {
    let (header, _) = FrameHeader::ref_from_prefix(prefix).map_err(|_| Reason::Truncated)?;
    if header.magic != MAGIC {
        return Err(Reason::BadMagic);
    }
    if header.version != VERSION {
        return Err(Reason::UnsupportedVersion);
    }
    let len = header.len.get() as usize;
    if len < FRAME_HEADER_LEN {
        return Err(Reason::BadLength);
    }
    Ok(len)
}

/// Validates one record header at the start of `buf` and returns the record's length.
#[inline]
fn check_record_header(buf: &[u8]) -> Result<usize, Reason> {
    let (h, _) = RecordHeader::ref_from_prefix(buf).map_err(|_| Reason::Truncated)?;
    let len = h.len.get() as usize;
    if len > buf.len() {
        return Err(Reason::Truncated);
    }
    // Each kind has its own version; an unknown kind is judged against v1 (so it is
    // `unknown_kind` at version 1, as before kinds had versions of their own).
    let kind = Kind::from_u8(h.kind);
    if h.version != kind.map_or(VERSION, Kind::version) {
        return Err(Reason::UnsupportedVersion);
    }
    let kind = kind.ok_or(Reason::UnknownKind)?;
    let expected = match kind {
        Kind::Intent => {
            let f = IntentWire::ref_from_prefix(buf).map_err(|_| Reason::BadLength)?.0;
            INTENT_FIXED_LEN + 8 * f.keys_count.get() as usize
        }
        Kind::Bid => BID_LEN,
        Kind::Cancel => CANCEL_LEN,
        Kind::Receipt => RECEIPT_LEN,
        Kind::Proof => PROOF_LEN,
        Kind::Block => {
            let f = BlockWire::ref_from_prefix(buf).map_err(|_| Reason::BadLength)?.0;
            BLOCK_FIXED_LEN + BLOCK_ENTRY_LEN * f.entries_count.get() as usize
        }
        Kind::Clearing => {
            let f = ClearingWire::ref_from_prefix(buf).map_err(|_| Reason::BadLength)?.0;
            CLEARING_FIXED_LEN + WINNER_LEN * f.winners_count.get() as usize
        }
        Kind::Watermark => {
            let f = WatermarkWire::ref_from_prefix(buf).map_err(|_| Reason::BadLength)?.0;
            WATERMARK_FIXED_LEN + NONCE_RANGE_LEN * f.ranges_count.get() as usize
        }
    };
    if len != expected {
        return Err(Reason::BadLength);
    }
    Ok(len)
}

impl<'a> Iterator for Records<'a> {
    type Item = RecordRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<RecordRef<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // decode_frame checked every header and length, so the slicing below cannot fail;
        // it still goes through checked zerocopy casts, which the optimiser folds.
        let (h, _) = RecordHeader::ref_from_prefix(self.rest).ok()?;
        let (record, rest) = self.rest.split_at(h.len.get() as usize);
        self.rest = rest;
        Some(match Kind::from_u8(h.kind)? {
            Kind::Intent => {
                let (fixed, tail) = IntentWire::ref_from_prefix(record).ok()?;
                RecordRef::Intent(IntentRef { fixed, keys: <[U64]>::ref_from_bytes(tail).ok()? })
            }
            Kind::Bid => RecordRef::Bid(BidWire::ref_from_bytes(record).ok()?),
            Kind::Cancel => RecordRef::Cancel(CancelWire::ref_from_bytes(record).ok()?),
            Kind::Receipt => RecordRef::Receipt(ReceiptWire::ref_from_bytes(record).ok()?),
            Kind::Proof => RecordRef::Proof(ProofWire::ref_from_bytes(record).ok()?),
            Kind::Block => {
                let (fixed, tail) = BlockWire::ref_from_prefix(record).ok()?;
                RecordRef::Block(BlockRef { fixed, entries: <[BlockEntryWire]>::ref_from_bytes(tail).ok()? })
            }
            Kind::Clearing => {
                let (fixed, tail) = ClearingWire::ref_from_prefix(record).ok()?;
                RecordRef::Clearing(ClearingRef {
                    fixed,
                    winners: <[WinnerWire]>::ref_from_bytes(tail).ok()?,
                })
            }
            Kind::Watermark => {
                let (fixed, tail) = WatermarkWire::ref_from_prefix(record).ok()?;
                RecordRef::Watermark(WatermarkRef {
                    fixed,
                    ranges: <[NonceRangeWire]>::ref_from_bytes(tail).ok()?,
                })
            }
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

impl ExactSizeIterator for Records<'_> {}

impl<'a> Records<'a> {
    /// The records, each with the records `n` places further on that have not been handed
    /// out yet: the first item brings the next `n + 1` (itself included), every later item
    /// one. A consumer that starts a record's memory loads when it first sees it in
    /// [`Ahead`] (a de-duplication table's slot, say) has them in flight `n` records early.
    pub fn with_lookahead(self, n: usize) -> Lookahead<'a> {
        Lookahead { ahead: self.clone(), records: self, first: n + 1 }
    }
}

/// See [`Records::with_lookahead`].
#[derive(Debug, Clone)]
pub struct Lookahead<'a> {
    records: Records<'a>,
    ahead: Records<'a>,
    /// How many records the first item brings; 0 once it has been handed out.
    first: usize,
}

/// The records a [`Lookahead`] item brings: an iterator.
#[derive(Debug, Clone)]
pub struct Ahead<'a> {
    records: Records<'a>,
    left: usize,
}

impl<'a> Iterator for Lookahead<'a> {
    type Item = (RecordRef<'a>, Ahead<'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let record = self.records.next()?;
        let take = std::mem::take(&mut self.first).max(1);
        let ahead = Ahead { records: self.ahead.clone(), left: take };
        // Skip what this item brings (an `Records::next` is a header read, cheap).
        for _ in 0..take {
            if self.ahead.next().is_none() {
                break;
            }
        }
        Some((record, ahead))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.records.size_hint()
    }
}

impl<'a> Iterator for Ahead<'a> {
    type Item = RecordRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<RecordRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.records.next()
    }
}
