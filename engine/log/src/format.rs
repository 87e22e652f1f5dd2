//! The input log's bytes (`docs/log.md` is the contract, field by field). All integers are
//! little-endian at fixed offsets; every length is a multiple of 8.
//!
//! A **segment** is a file: a 64-byte [`SegmentHeader`], then batches back to back. A
//! **batch** is what one group commit writes: a 24-byte header (magic, payload length,
//! crc32c of the payload, entry count) and its entries. An **entry** is one logged input of
//! one intake: an 8-byte entry header (kind, intake, destination, length) and its fields.

use fpn_engine::CloseReason;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FPNLOG\0\x01";
/// Segment header bytes.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// First bytes of every batch header: `FPLB`.
pub const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"FPLB");
/// Batch header bytes.
pub const BATCH_HEADER_LEN: usize = 24;
/// Entry header bytes.
pub const ENTRY_HEADER_LEN: usize = 8;
/// The destination of an entry that goes to the merger (not a builder shard).
pub const DEST_MERGER: u16 = u16::MAX;
/// Largest entry: an intent with 64 keys (`8 + 56 + 8 × 64`), or a high-water chunk.
pub const ENTRY_LEN_MAX: usize = ENTRY_HEADER_LEN + 56 + 8 * 64;
/// High-water marks per [`Entry::HighWater`] chunk: one entry stays under [`ENTRY_LEN_MAX`].
pub const MARKS_PER_CHUNK: usize = 32;

/// Entry kinds (the first byte of an entry).
pub mod kind {
    pub const INTENT: u8 = 1;
    pub const BID: u8 = 2;
    pub const CANCEL: u8 = 3;
    pub const BOOK_CANCEL: u8 = 4;
    pub const CLOSE: u8 = 5;
    pub const HIGH_WATER: u8 = 6;
    pub const INTAKE_STATE: u8 = 7;
}

/// The 64-byte header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's index: its file is `<index, 10 digits>.fpl`; indices count up from 1.
    pub index: u64,
    /// When it was created (ns since the Unix epoch, the daemon's clock).
    pub created_ns: u64,
    /// The engine's shape when it was written: replay needs the same.
    pub intakes_n: u16,
    pub shards_n: u16,
}

impl SegmentHeader {
    /// The header's 64 bytes: magic (8), version u32, header length u32, index u64,
    /// created_ns u64, intakes u16, shards u16, 24 reserved zero bytes, crc32c of bytes
    /// 0..60 as u32 at 60.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.index.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_ns.to_le_bytes());
        b[32..34].copy_from_slice(&self.intakes_n.to_le_bytes());
        b[34..36].copy_from_slice(&self.shards_n.to_le_bytes());
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentHeader, FormatError> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(FormatError::Truncated);
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic);
        }
        if u32_at(b, 8) != VERSION || u32_at(b, 12) != SEGMENT_HEADER_LEN as u32 {
            return Err(FormatError::UnsupportedVersion);
        }
        if crc32c::crc32c(&b[..60]) != u32_at(b, 60) || b[36..60].iter().any(|&x| x != 0) {
            return Err(FormatError::BadChecksum);
        }
        Ok(SegmentHeader {
            index: u64_at(b, 16),
            created_ns: u64_at(b, 24),
            intakes_n: u16::from_le_bytes([b[32], b[33]]),
            shards_n: u16::from_le_bytes([b[34], b[35]]),
        })
    }
}

/// The 24-byte header of a batch: magic u32, payload length u32, crc32c of the payload
/// u32, entry count u32, 8 reserved zero bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub payload_len: u32,
    pub crc: u32,
    pub entries: u32,
}

impl BatchHeader {
    pub fn encode(&self) -> [u8; BATCH_HEADER_LEN] {
        let mut b = [0u8; BATCH_HEADER_LEN];
        b[0..4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.payload_len.to_le_bytes());
        b[8..12].copy_from_slice(&self.crc.to_le_bytes());
        b[12..16].copy_from_slice(&self.entries.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<BatchHeader, FormatError> {
        if b.len() < BATCH_HEADER_LEN {
            return Err(FormatError::Truncated);
        }
        if u32_at(b, 0) != BATCH_MAGIC {
            return Err(FormatError::BadMagic);
        }
        if b[16..24].iter().any(|&x| x != 0) {
            return Err(FormatError::BadLength);
        }
        let h = BatchHeader { payload_len: u32_at(b, 4), crc: u32_at(b, 8), entries: u32_at(b, 12) };
        if !(h.payload_len as usize).is_multiple_of(8) {
            return Err(FormatError::BadLength);
        }
        Ok(h)
    }
}

/// What is wrong with some bytes of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("the bytes end inside a header or an entry")]
    Truncated,
    #[error("bad magic")]
    BadMagic,
    #[error("unsupported version")]
    UnsupportedVersion,
    #[error("checksum mismatch")]
    BadChecksum,
    #[error("a length field disagrees with the layout")]
    BadLength,
    #[error("unknown entry kind {0}")]
    UnknownKind(u8),
}

/// One logged input of intake `intake`. The fields are what the intake sent its builder
/// shards and the merger (`docs/log.md` lists them by offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// An accepted intent, for builder shard `dest` (or the merger: a cross intent).
    Intent {
        intake: u8,
        dest: u16,
        window_id: u64,
        seq: u64,
        client_id: u64,
        nonce: u64,
        profit: u64,
        priority: u32,
        rx_ns: u64,
        /// The keys, 8 little-endian bytes each.
        keys: Keys<'a>,
    },
    /// An accepted bid (it goes to the merger).
    Bid {
        intake: u8,
        window_id: u64,
        seq: u64,
        client_id: u64,
        nonce: u64,
        amount: u64,
        priority: u32,
        rx_ns: u64,
    },
    /// An open-window cancel of record `seq`, for shard `dest` (or the merger).
    Cancel { intake: u8, dest: u16, window_id: u64, seq: u64 },
    /// A cancel forwarded to the merger, which looks in the auction book.
    BookCancel {
        intake: u8,
        window_id: u64,
        client_id: u64,
        by_nonce: bool,
        target: u64,
        too_late_if_absent: bool,
        rx_ns: u64,
    },
    /// The intake closed `window_id`: nothing more of it follows from this intake.
    Close { intake: u8, window_id: u64, opened_ns: u64, closed_ns: u64, reason: CloseReason },
    /// High-water marks at a segment's start: per client, one above the highest nonce of
    /// its records in the segments before (`docs/log.md`, "Segment start").
    HighWater { intake: u8, marks: Marks<'a> },
    /// An intake's state at a segment's start: its highest seq so far (0: none) and the
    /// newest window it closed (0: none).
    IntakeState { intake: u8, seq_max: u64, window_closed: u64 },
}

/// Intent keys as stored: 8 little-endian bytes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys<'a>(&'a [u8]);

impl<'a> Keys<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / 8
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = u64> + Clone + 'a {
        self.0.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
    }
}

/// High-water marks as stored: `(client_id, mark)` pairs of 8 little-endian bytes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks<'a>(&'a [u8]);

impl<'a> Marks<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / 16
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        self.0.chunks_exact(16).map(|c| (u64_at(c, 0), u64_at(c, 8)))
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn reason_code(r: CloseReason) -> u8 {
    match r {
        CloseReason::Deadline => 0,
        CloseReason::Full => 1,
        CloseReason::Drain => 2,
    }
}

fn reason_of(code: u8) -> Result<CloseReason, FormatError> {
    Ok(match code {
        0 => CloseReason::Deadline,
        1 => CloseReason::Full,
        2 => CloseReason::Drain,
        _ => return Err(FormatError::BadLength),
    })
}

/// Appends entries to a caller-owned buffer; never reallocates within the buffer's capacity.
pub struct EntryWriter<'b> {
    buf: &'b mut Vec<u8>,
}

impl<'b> EntryWriter<'b> {
    pub fn new(buf: &'b mut Vec<u8>) -> EntryWriter<'b> {
        EntryWriter { buf }
    }

    fn header(&mut self, kind: u8, intake: u8, dest: u16, len: usize) {
        debug_assert!(len.is_multiple_of(8) && len <= u32::MAX as usize);
        self.buf.extend_from_slice(&[kind, intake]);
        self.buf.extend_from_slice(&dest.to_le_bytes());
        self.buf.extend_from_slice(&(len as u32).to_le_bytes());
    }

    fn u64s(&mut self, values: &[u64]) {
        for v in values {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Intent: header, window u64, seq u64, client u64, nonce u64, profit u64, rx_ns u64,
    /// priority u32, keys count u32, then the keys (8 bytes each).
    pub fn intent(
        &mut self,
        intake: u8,
        dest: u16,
        window_id: u64,
        meta: &fpn_engine::IntentMeta,
        keys: impl ExactSizeIterator<Item = u64>,
    ) {
        let n = keys.len();
        self.header(kind::INTENT, intake, dest, ENTRY_HEADER_LEN + 56 + 8 * n);
        self.u64s(&[window_id, meta.seq, meta.client_id, meta.nonce, meta.profit, meta.rx_ns]);
        self.buf.extend_from_slice(&meta.priority.to_le_bytes());
        self.buf.extend_from_slice(&(n as u32).to_le_bytes());
        for k in keys {
            self.buf.extend_from_slice(&k.to_le_bytes());
        }
    }

    /// Bid: header, window, seq, client, nonce, amount, rx_ns (u64 each), priority u32, 4 zero.
    pub fn bid(&mut self, intake: u8, window_id: u64, bid: &fpn_engine::PendingBid) {
        self.header(kind::BID, intake, DEST_MERGER, ENTRY_HEADER_LEN + 56);
        self.u64s(&[window_id, bid.seq, bid.client_id, bid.nonce, bid.amount, bid.rx_ns]);
        self.buf.extend_from_slice(&bid.priority.to_le_bytes());
        self.buf.extend_from_slice(&[0; 4]);
    }

    /// Cancel: header, window u64, seq u64.
    pub fn cancel(&mut self, intake: u8, dest: u16, window_id: u64, seq: u64) {
        self.header(kind::CANCEL, intake, dest, ENTRY_HEADER_LEN + 16);
        self.u64s(&[window_id, seq]);
    }

    /// Book cancel: header, window, client, target, rx_ns (u64 each), flags u8 (bit 0 by
    /// nonce, bit 1 too late if absent), 7 zero. The window and the receive time are the
    /// receipt's.
    pub fn book_cancel(&mut self, intake: u8, c: &fpn_engine::shard::BookCancel) {
        self.header(kind::BOOK_CANCEL, intake, DEST_MERGER, ENTRY_HEADER_LEN + 40);
        self.u64s(&[c.receipt.window_id, c.client_id, c.target, c.receipt.rx_ns]);
        let flags = u8::from(c.by_nonce) | u8::from(c.too_late_if_absent) << 1;
        self.buf.extend_from_slice(&[flags, 0, 0, 0, 0, 0, 0, 0]);
    }

    /// Close: header, window, opened_ns, closed_ns (u64 each), reason u8 (0 deadline, 1
    /// full, 2 drain), 7 zero.
    pub fn close(&mut self, intake: u8, close: &fpn_engine::WindowClose) {
        self.header(kind::CLOSE, intake, DEST_MERGER, ENTRY_HEADER_LEN + 32);
        self.u64s(&[close.window_id, close.opened_ns, close.closed_ns]);
        self.buf.extend_from_slice(&[reason_code(close.reason), 0, 0, 0, 0, 0, 0, 0]);
    }

    /// High-water marks of intake `intake`: header, then `(client u64, mark u64)` pairs; at
    /// most [`MARKS_PER_CHUNK`] per entry.
    pub fn high_water(&mut self, intake: u8, marks: &[(u64, u64)]) {
        assert!(marks.len() <= MARKS_PER_CHUNK, "one chunk of marks per entry");
        self.header(kind::HIGH_WATER, intake, 0, ENTRY_HEADER_LEN + 16 * marks.len());
        for &(c, m) in marks {
            self.u64s(&[c, m]);
        }
    }

    /// Intake state: header, seq_max u64, window_closed u64.
    pub fn intake_state(&mut self, intake: u8, seq_max: u64, window_closed: u64) {
        self.header(kind::INTAKE_STATE, intake, 0, ENTRY_HEADER_LEN + 16);
        self.u64s(&[seq_max, window_closed]);
    }
}

/// Decodes the entry at the start of `b`: the entry and its length.
pub fn decode_entry(b: &[u8]) -> Result<(Entry<'_>, usize), FormatError> {
    if b.len() < ENTRY_HEADER_LEN {
        return Err(FormatError::Truncated);
    }
    let (k, intake, dest) = (b[0], b[1], u16::from_le_bytes([b[2], b[3]]));
    let len = u32_at(b, 4) as usize;
    if len < ENTRY_HEADER_LEN || !len.is_multiple_of(8) {
        return Err(FormatError::BadLength);
    }
    if b.len() < len {
        return Err(FormatError::Truncated);
    }
    let f = &b[ENTRY_HEADER_LEN..len];
    let fixed = |n: usize| if f.len() == n { Ok(()) } else { Err(FormatError::BadLength) };
    let entry = match k {
        kind::INTENT => {
            if f.len() < 56 {
                return Err(FormatError::BadLength);
            }
            let n = u32_at(f, 52) as usize;
            if n == 0 || n > fpn_engine::KEYS_PER_INTENT_MAX || f.len() != 56 + 8 * n {
                return Err(FormatError::BadLength);
            }
            Entry::Intent {
                intake,
                dest,
                window_id: u64_at(f, 0),
                seq: u64_at(f, 8),
                client_id: u64_at(f, 16),
                nonce: u64_at(f, 24),
                profit: u64_at(f, 32),
                rx_ns: u64_at(f, 40),
                priority: u32_at(f, 48),
                keys: Keys(&f[56..]),
            }
        }
        kind::BID => {
            fixed(56)?;
            Entry::Bid {
                intake,
                window_id: u64_at(f, 0),
                seq: u64_at(f, 8),
                client_id: u64_at(f, 16),
                nonce: u64_at(f, 24),
                amount: u64_at(f, 32),
                rx_ns: u64_at(f, 40),
                priority: u32_at(f, 48),
            }
        }
        kind::CANCEL => {
            fixed(16)?;
            Entry::Cancel { intake, dest, window_id: u64_at(f, 0), seq: u64_at(f, 8) }
        }
        kind::BOOK_CANCEL => {
            fixed(40)?;
            Entry::BookCancel {
                intake,
                window_id: u64_at(f, 0),
                client_id: u64_at(f, 8),
                target: u64_at(f, 16),
                rx_ns: u64_at(f, 24),
                by_nonce: f[32] & 1 != 0,
                too_late_if_absent: f[32] & 2 != 0,
            }
        }
        kind::CLOSE => {
            fixed(32)?;
            Entry::Close {
                intake,
                window_id: u64_at(f, 0),
                opened_ns: u64_at(f, 8),
                closed_ns: u64_at(f, 16),
                reason: reason_of(f[24])?,
            }
        }
        kind::HIGH_WATER => {
            if !f.len().is_multiple_of(16) {
                return Err(FormatError::BadLength);
            }
            Entry::HighWater { intake, marks: Marks(f) }
        }
        kind::INTAKE_STATE => {
            fixed(16)?;
            Entry::IntakeState { intake, seq_max: u64_at(f, 0), window_closed: u64_at(f, 8) }
        }
        other => return Err(FormatError::UnknownKind(other)),
    };
    Ok((entry, len))
}

/// The entries of a batch's payload, in order; stops at the first undecodable one.
pub fn entries(payload: &[u8]) -> impl Iterator<Item = Result<Entry<'_>, FormatError>> {
    let mut at = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || at >= payload.len() {
            return None;
        }
        match decode_entry(&payload[at..]) {
            Ok((e, len)) => {
                at += len;
                Some(Ok(e))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fpn_engine::{IntentMeta, PendingBid, WindowClose};

    #[test]
    fn every_entry_round_trips() {
        let mut buf = Vec::new();
        let mut w = EntryWriter::new(&mut buf);
        let meta = IntentMeta { seq: 5, client_id: 7, nonce: 9, profit: 100, priority: 3, rx_ns: 11 };
        w.intent(1, 2, 40, &meta, [10u64, 20, 30].into_iter());
        let bid = PendingBid { seq: 6, client_id: 7, nonce: 10, amount: 900, priority: 1, rx_ns: 12 };
        w.bid(1, 40, &bid);
        w.cancel(1, DEST_MERGER, 40, 6);
        let receipt = fpn_wire::Receipt {
            window_id: 40,
            rx_ns: 13,
            ..fpn_wire::Receipt::frame_refused(fpn_wire::Reason::NotFound, 0)
        };
        let c = fpn_engine::shard::BookCancel {
            client_id: 7,
            by_nonce: true,
            target: 3,
            too_late_if_absent: true,
            receipt,
        };
        w.book_cancel(1, &c);
        let close = WindowClose { window_id: 40, opened_ns: 1, closed_ns: 2, reason: CloseReason::Full };
        w.close(1, &close);
        w.high_water(1, &[(7, 11), (8, 1)]);
        w.intake_state(1, 6, 39);
        let got: Vec<Entry<'_>> = entries(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 7);
        match got[0] {
            Entry::Intent {
                intake,
                dest,
                window_id,
                seq,
                client_id,
                nonce,
                profit,
                priority,
                rx_ns,
                keys,
            } => {
                assert_eq!((intake, dest, window_id, seq, client_id, nonce), (1, 2, 40, 5, 7, 9));
                assert_eq!((profit, priority, rx_ns), (100, 3, 11));
                assert_eq!(keys.iter().collect::<Vec<_>>(), [10, 20, 30]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            got[1],
            Entry::Bid {
                intake: 1,
                window_id: 40,
                seq: 6,
                client_id: 7,
                nonce: 10,
                amount: 900,
                priority: 1,
                rx_ns: 12
            }
        );
        assert_eq!(got[2], Entry::Cancel { intake: 1, dest: DEST_MERGER, window_id: 40, seq: 6 });
        assert_eq!(
            got[3],
            Entry::BookCancel {
                intake: 1,
                window_id: 40,
                client_id: 7,
                by_nonce: true,
                target: 3,
                too_late_if_absent: true,
                rx_ns: 13
            }
        );
        assert_eq!(
            got[4],
            Entry::Close { intake: 1, window_id: 40, opened_ns: 1, closed_ns: 2, reason: CloseReason::Full }
        );
        match got[5] {
            Entry::HighWater { intake, marks } => {
                assert_eq!(intake, 1);
                assert_eq!(marks.iter().collect::<Vec<_>>(), [(7, 11), (8, 1)]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(got[6], Entry::IntakeState { intake: 1, seq_max: 6, window_closed: 39 });
    }

    #[test]
    fn headers_round_trip_and_refuse_damage() {
        let h = SegmentHeader { index: 3, created_ns: 77, intakes_n: 2, shards_n: 4 };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[20] ^= 1;
        assert_eq!(SegmentHeader::decode(&b), Err(FormatError::BadChecksum));
        let bh = BatchHeader { payload_len: 64, crc: 5, entries: 2 };
        assert_eq!(BatchHeader::decode(&bh.encode()), Ok(bh));
        let mut odd = bh.encode();
        odd[4] = 3;
        assert_eq!(BatchHeader::decode(&odd), Err(FormatError::BadLength));
    }
}
