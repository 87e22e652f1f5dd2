//! Properties of the codec: round trips, and no panic on any input.

use fpn_wire::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Rec {
    Intent { client_id: u64, nonce: u64, sent_ns: u64, profit: u64, priority: u32, keys: Vec<u64> },
    Bid(Bid),
    Cancel(Cancel),
}

fn rec() -> impl Strategy<Value = Rec> {
    prop_oneof![
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            1..=MAX_AMOUNT,
            any::<u32>(),
            prop::collection::btree_set(any::<u64>(), 1..=64)
        )
            .prop_map(|(client_id, nonce, sent_ns, profit, priority, keys)| Rec::Intent {
                client_id,
                nonce,
                sent_ns,
                profit,
                priority,
                keys: keys.into_iter().collect()
            }),
        (any::<u64>(), any::<u64>(), any::<u64>(), 1..=MAX_AMOUNT, any::<u32>()).prop_map(
            |(client_id, nonce, sent_ns, amount, priority)| Rec::Bid(Bid {
                client_id,
                nonce,
                sent_ns,
                amount,
                priority
            })
        ),
        (any::<u64>(), any::<bool>(), any::<u64>()).prop_map(|(client_id, by_seq, t)| Rec::Cancel(Cancel {
            client_id,
            target: if by_seq { CancelTarget::Seq(t) } else { CancelTarget::Nonce(t) }
        })),
    ]
}

fn encode(recs: &[Rec]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, usize::from(u16::MAX) * 600);
    for r in recs {
        match r {
            Rec::Intent { client_id, nonce, sent_ns, profit, priority, keys } => w
                .push_intent(&Intent {
                    client_id: *client_id,
                    nonce: *nonce,
                    sent_ns: *sent_ns,
                    profit: *profit,
                    priority: *priority,
                    keys,
                })
                .unwrap(),
            Rec::Bid(b) => w.push_bid(b).unwrap(),
            Rec::Cancel(c) => w.push_cancel(c).unwrap(),
        }
    }
    w.finish();
    buf
}

/// Decodes and touches every field, as the engine would. Must never panic.
fn consume(bytes: &[u8]) -> Result<usize, Reason> {
    let records = decode_frame(bytes)?;
    let mut n = 0;
    for r in records {
        n += 1;
        match r {
            RecordRef::Intent(i) => {
                let _ = i.validate();
                let _: u64 = i.keys.iter().map(|k| k.get()).fold(0, u64::wrapping_add);
                let _ = i.keys_le().len();
            }
            RecordRef::Bid(b) => {
                let _ = validate_bid(b);
            }
            RecordRef::Cancel(c) => {
                let _ = validate_cancel(c);
            }
            RecordRef::Receipt(r) => {
                let _ = Reason::from_code(r.status);
            }
            RecordRef::Block(b) => {
                let _: u64 = b.entries.iter().map(|e| e.payout.get()).fold(0, u64::wrapping_add);
            }
            RecordRef::Clearing(c) => {
                let _: u64 = c.winners.iter().map(|w| w.price.get()).fold(0, u64::wrapping_add);
            }
            RecordRef::Proof(p) => {
                let _ = validate_proof(p);
            }
            RecordRef::Watermark(w) => {
                let _ = validate_watermark(&w);
            }
        }
    }
    Ok(n)
}

proptest! {
    /// Every record comes out once in order, and is brought by the lookahead exactly once,
    /// `n` items before its own (or by the first item).
    #[test]
    fn lookahead_brings_each_record_once_n_early(recs in prop::collection::vec(rec(), 1..40), n in 0usize..12) {
        let bytes = encode(&recs);
        let plain: Vec<_> = decode_frame(&bytes).unwrap().map(|r| format!("{r:?}")).collect();
        let mut items = Vec::new();
        let mut brought = Vec::new();
        for (i, (record, ahead)) in decode_frame(&bytes).unwrap().with_lookahead(n).enumerate() {
            items.push(format!("{record:?}"));
            for r in ahead {
                brought.push((i, format!("{r:?}")));
            }
        }
        prop_assert_eq!(&items, &plain);
        prop_assert_eq!(brought.len(), plain.len());
        for (j, (at, r)) in brought.iter().enumerate() {
            prop_assert_eq!(r, &plain[j]);
            prop_assert_eq!(*at, j.saturating_sub(n));
        }
    }
}

proptest! {
    #[test]
    fn round_trip(recs in prop::collection::vec(rec(), 1..40)) {
        let bytes = encode(&recs);
        let decoded: Vec<_> = decode_frame(&bytes).unwrap().collect();
        prop_assert_eq!(decoded.len(), recs.len());
        for (d, r) in decoded.iter().zip(&recs) {
            match (d, r) {
                (RecordRef::Intent(i), Rec::Intent { client_id, nonce, sent_ns, profit, priority, keys }) => {
                    prop_assert_eq!(i.validate(), Ok(()));
                    prop_assert_eq!(i.fixed.client_id.get(), *client_id);
                    prop_assert_eq!(i.fixed.nonce.get(), *nonce);
                    prop_assert_eq!(i.fixed.sent_ns.get(), *sent_ns);
                    prop_assert_eq!(i.fixed.profit.get(), *profit);
                    prop_assert_eq!(i.fixed.priority.get(), *priority);
                    let got: Vec<u64> = i.keys.iter().map(|k| k.get()).collect();
                    prop_assert_eq!(&got, keys);
                    let le: Vec<u64> = i.keys_le().iter().map(|k| u64::from_le_bytes(*k)).collect();
                    prop_assert_eq!(&le, keys);
                }
                (RecordRef::Bid(w), Rec::Bid(b)) => {
                    prop_assert_eq!(validate_bid(w), Ok(()));
                    prop_assert_eq!(
                        (w.client_id.get(), w.nonce.get(), w.sent_ns.get(), w.amount.get(), w.priority.get()),
                        (b.client_id, b.nonce, b.sent_ns, b.amount, b.priority)
                    );
                }
                (RecordRef::Cancel(w), Rec::Cancel(c)) => {
                    prop_assert_eq!(validate_cancel(w), Ok(()));
                    let target = match w.mode {
                        CANCEL_BY_NONCE => CancelTarget::Nonce(w.target.get()),
                        _ => CancelTarget::Seq(w.target.get()),
                    };
                    prop_assert_eq!(Cancel { client_id: w.client_id.get(), target }, *c);
                }
                _ => prop_assert!(false, "kind mismatch"),
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = consume(&bytes);
    }

    /// Arbitrary bytes behind a plausible header reach the record checks, which random
    /// bytes alone almost never do.
    #[test]
    fn arbitrary_bodies_never_panic(count in 1u16..6, body in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = vec![b'F', b'P', 1, 0];
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&((12 + body.len()) as u32).to_le_bytes());
        bytes.extend_from_slice(&body);
        let _ = consume(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(recs in prop::collection::vec(rec(), 1..8), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = encode(&recs);
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = consume(&bytes);
    }

    #[test]
    fn every_truncation_is_refused(recs in prop::collection::vec(rec(), 1..8), at in any::<prop::sample::Index>()) {
        let bytes = encode(&recs);
        let cut = at.index(bytes.len());
        prop_assert!(decode_frame(&bytes[..cut]).is_err());
    }

    #[test]
    fn trailing_bytes_are_refused(recs in prop::collection::vec(rec(), 1..8), extra in prop::collection::vec(any::<u8>(), 1..16)) {
        let mut bytes = encode(&recs);
        bytes.extend_from_slice(&extra);
        prop_assert_eq!(decode_frame(&bytes).err(), Some(Reason::TrailingBytes));
    }
}

fn one_intent(profit: u64, keys: &[u64]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, 1 << 16);
    w.push_intent(&Intent { client_id: 1, nonce: 1, sent_ns: 0, profit, priority: 0, keys }).unwrap();
    w.finish();
    buf
}

fn intent_verdict(bytes: &[u8]) -> Result<(), Reason> {
    match decode_frame(bytes)?.next() {
        Some(RecordRef::Intent(i)) => i.validate(),
        other => panic!("expected an intent, got {other:?}"),
    }
}

#[test]
fn intent_content_errors_have_their_reasons() {
    assert_eq!(intent_verdict(&one_intent(0, &[1])), Err(Reason::ZeroAmount));
    assert_eq!(intent_verdict(&one_intent(MAX_AMOUNT + 1, &[1])), Err(Reason::AmountTooLarge));
    assert_eq!(intent_verdict(&one_intent(MAX_AMOUNT, &[1])), Ok(()));
    assert_eq!(intent_verdict(&one_intent(5, &[])), Err(Reason::NoResources));
    let many: Vec<u64> = (0..65).collect();
    assert_eq!(intent_verdict(&one_intent(5, &many)), Err(Reason::TooManyResources));
    assert_eq!(intent_verdict(&one_intent(5, &many[..64])), Ok(()));
    assert_eq!(intent_verdict(&one_intent(5, &[3, 9, 3])), Err(Reason::DuplicateResource));
    // The long-list path (more than 16 keys) sorts a copy.
    let mut long: Vec<u64> = (100..140).collect();
    assert_eq!(intent_verdict(&one_intent(5, &long)), Ok(()));
    long[39] = 100;
    assert_eq!(intent_verdict(&one_intent(5, &long)), Err(Reason::DuplicateResource));
}

#[test]
fn frame_structure_errors_have_their_reasons() {
    let good = one_intent(5, &[1, 2]);
    assert!(decode_frame(&good).is_ok());
    let with = |i: usize, v: u8| {
        let mut b = good.clone();
        b[i] = v;
        decode_frame(&b).err()
    };
    assert_eq!(with(0, b'X'), Some(Reason::BadMagic));
    assert_eq!(with(2, 2), Some(Reason::UnsupportedVersion));
    assert_eq!(with(3, 1), Some(Reason::ReservedNonzero));
    assert_eq!(with(4, 0), Some(Reason::EmptyFrame));
    assert_eq!(with(4, 2), Some(Reason::Truncated), "two records declared, one present");
    assert_eq!(with(12, 0x7f), Some(Reason::UnknownKind));
    assert_eq!(with(13, 9), Some(Reason::UnsupportedVersion));
    assert_eq!(with(16, 56), Some(Reason::BadLength), "record len disagrees with keys_count");
    assert_eq!(with(56, 3), Some(Reason::BadLength), "keys_count disagrees with the record len");
    assert_eq!(with(16, 0xff), Some(Reason::Truncated), "record len runs past the frame");
    assert_eq!(with(8, 0x40), Some(Reason::TrailingBytes), "frame len shorter than the datagram");
    assert_eq!(with(8, 0xff), Some(Reason::Truncated), "frame len longer than the datagram");
    assert_eq!(decode_frame(&good[..5]).err(), Some(Reason::Truncated));
    // Reserved bytes inside a record are a content error, answered per record.
    let mut b = good.clone();
    b[12 + 46] = 1;
    assert_eq!(intent_verdict(&b), Err(Reason::ReservedNonzero));
}

#[test]
fn frame_writer_respects_its_limit_and_drops_empty_frames() {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, DATAGRAM_FRAME_LEN_MAX);
    let keys = [1u64, 2, 3, 4];
    let mut n = 0;
    while w
        .push_intent(&Intent { client_id: 1, nonce: n, sent_ns: 0, profit: 1, priority: 0, keys: &keys })
        .is_ok()
    {
        n += 1;
    }
    // 12 + n × 80 ≤ 1200 → n = 14.
    assert_eq!(n, 14);
    let len = w.finish();
    assert!(len <= DATAGRAM_FRAME_LEN_MAX);
    assert_eq!(decode_frame(&buf).unwrap().count(), 14);

    let mut empty = vec![9u8];
    assert_eq!(FrameWriter::new(&mut empty, 64).finish(), 0);
    assert_eq!(empty, vec![9u8]);
}

#[test]
fn peek_frame_len_reads_the_header() {
    let good = one_intent(5, &[1, 2]);
    assert_eq!(peek_frame_len(&good[..12]), Ok(good.len()));
    assert_eq!(peek_frame_len(&good[..11]), Err(Reason::Truncated));
}

proptest! {
    /// The filtered duplicate check agrees with a naive one, on key lists drawn from a small
    /// range so duplicates and mask collisions are both common.
    #[test]
    fn duplicate_check_matches_a_naive_one(keys in prop::collection::vec(0u64..96, 1..=64)) {
        let naive_dup = keys.iter().enumerate().any(|(i, k)| keys[..i].contains(k));
        let verdict = intent_verdict(&one_intent(5, &keys));
        prop_assert_eq!(verdict == Err(Reason::DuplicateResource), naive_dup);
        prop_assert_eq!(verdict.is_ok(), !naive_dup);
    }
}

fn proof_announce() -> impl Strategy<Value = ProofAnnounce> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>(), prop::array::uniform32(any::<u8>())).prop_map(
        |(window_first, window_last, job_id, ok, seed)| {
            let mut bytes = [0u8; PROOF_BYTES_LEN];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = seed[i % 32] ^ (i as u8);
            }
            ProofAnnounce { window_first, window_last, job_id, proof: ok.then_some(bytes) }
        },
    )
}

proptest! {
    /// Proof announcements, alone or several to a frame, decode to what was encoded.
    #[test]
    fn proof_round_trip(proofs in prop::collection::vec(proof_announce(), 1..6)) {
        let mut bytes = Vec::new();
        let mut w = FrameWriter::new(&mut bytes, 1 << 16);
        for p in &proofs {
            w.push_proof(p).unwrap();
        }
        w.finish();
        let decoded: Vec<_> = decode_frame(&bytes).unwrap().collect();
        prop_assert_eq!(decoded.len(), proofs.len());
        for (rec, p) in decoded.iter().zip(&proofs) {
            let RecordRef::Proof(w) = rec else { panic!("not a proof") };
            prop_assert_eq!(validate_proof(w), Ok(()));
            let got = ProofAnnounce {
                window_first: w.window_first.get(),
                window_last: w.window_last.get(),
                job_id: w.job_id.get(),
                proof: (w.status == PROOF_DONE).then_some(w.proof),
            };
            prop_assert_eq!(&got, p);
        }
    }
}

fn one_proof(proof: Option<[u8; PROOF_BYTES_LEN]>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut w = FrameWriter::new(&mut bytes, 1 << 16);
    w.push_proof(&ProofAnnounce { window_first: 3, window_last: 4, job_id: 9, proof }).unwrap();
    w.finish();
    bytes
}

fn proof_verdict(bytes: &[u8]) -> Result<(), Reason> {
    let recs: Vec<_> = decode_frame(bytes)?.collect();
    let RecordRef::Proof(p) = recs[0] else { panic!("not a proof") };
    validate_proof(p)
}

#[test]
fn proof_refusals_have_their_reasons() {
    let good = one_proof(Some([7; PROOF_BYTES_LEN]));
    assert_eq!(good.len(), FRAME_HEADER_LEN + PROOF_LEN);
    assert_eq!(proof_verdict(&good), Ok(()));
    assert_eq!(proof_verdict(&one_proof(None)), Ok(()));
    // The record length must be exactly 168.
    for len in [PROOF_LEN - 8, PROOF_LEN + 8] {
        let mut bytes = good.clone();
        bytes[FRAME_HEADER_LEN + 4..FRAME_HEADER_LEN + 8].copy_from_slice(&(len as u32).to_le_bytes());
        if len > PROOF_LEN {
            bytes.extend_from_slice(&[0; 8]);
        }
        let frame_len = bytes.len() as u32;
        bytes[8..12].copy_from_slice(&frame_len.to_le_bytes());
        assert_eq!(decode_frame(&bytes).err(), Some(Reason::BadLength), "record len {len}");
    }
    // Truncated inside the proof bytes.
    assert!(decode_frame(&good[..good.len() - 1]).is_err());
    // Reserved bytes (record header, after the status), an unknown status, and a failed
    // proof with bytes.
    let rec = FRAME_HEADER_LEN;
    for at in [rec + 2, rec + 3, rec + 33, rec + 39] {
        let mut bytes = good.clone();
        bytes[at] = 1;
        assert_eq!(proof_verdict(&bytes), Err(Reason::ReservedNonzero), "byte {at}");
    }
    let mut bytes = good.clone();
    bytes[rec + 32] = 2;
    assert_eq!(proof_verdict(&bytes), Err(Reason::ReservedNonzero));
    let mut bytes = one_proof(None);
    bytes[rec + 40] = 1;
    assert_eq!(proof_verdict(&bytes), Err(Reason::ReservedNonzero));
}

fn block_entry() -> impl Strategy<Value = BlockEntryWire> {
    (any::<u64>(), any::<u64>(), 1..=MAX_AMOUNT, any::<u64>(), any::<u64>()).prop_map(
        |(seq, client_id, profit, payout, rx_ns)| BlockEntryWire::new(seq, client_id, profit, payout, rx_ns),
    )
}

fn one_block(entries: &[BlockEntryWire]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut w = FrameWriter::new(&mut bytes, 1 << 20);
    let summary = BlockSummary { window_id: 9, fee_ppm: 1, builder: 2, ..BlockSummary::default() };
    w.push_block(&summary, entries).unwrap();
    w.finish();
    bytes
}

proptest! {
    /// Blocks (version 2) decode to the entries encoded, `rx_ns` included, in 40 bytes each.
    #[test]
    fn block_round_trip(entries in prop::collection::vec(block_entry(), 0..40)) {
        let bytes = one_block(&entries);
        prop_assert_eq!(bytes.len(), FRAME_HEADER_LEN + BLOCK_FIXED_LEN + 40 * entries.len());
        prop_assert_eq!(bytes[FRAME_HEADER_LEN + 1], BLOCK_VERSION);
        let decoded: Vec<_> = decode_frame(&bytes).unwrap().collect();
        let [RecordRef::Block(b)] = decoded[..] else { panic!("one block expected") };
        prop_assert_eq!(b.fixed.window_id.get(), 9);
        prop_assert_eq!(b.entries, &entries[..]);
        // The receive time is the entry's last 8 bytes.
        for (k, e) in entries.iter().enumerate() {
            let at = FRAME_HEADER_LEN + BLOCK_FIXED_LEN + 40 * k + 32;
            prop_assert_eq!(&bytes[at..at + 8], &e.rx_ns.get().to_le_bytes()[..]);
        }
    }
}

#[test]
fn record_versions_are_per_kind() {
    assert_eq!(Kind::Block.version(), 2);
    for kind in
        [Kind::Intent, Kind::Bid, Kind::Cancel, Kind::Receipt, Kind::Clearing, Kind::Proof, Kind::Watermark]
    {
        assert_eq!(kind.version(), 1, "{kind:?}");
    }
    let entry = BlockEntryWire::new(1, 2, 3, 3, 4);
    let good = one_block(&[entry]);
    let version_at = FRAME_HEADER_LEN + 1;
    // A block written by a version-1 engine (32-byte entries) or at any other version is
    // refused whole, as an older reader refuses this engine's version 2.
    for v in [0, 1, 3, 0xff] {
        let mut b = good.clone();
        b[version_at] = v;
        assert_eq!(decode_frame(&b).err(), Some(Reason::UnsupportedVersion), "block version {v}");
    }
    let mut v1 = good[..FRAME_HEADER_LEN + BLOCK_FIXED_LEN + 32].to_vec();
    v1[version_at] = 1;
    v1[FRAME_HEADER_LEN + 4..FRAME_HEADER_LEN + 8]
        .copy_from_slice(&((BLOCK_FIXED_LEN + 32) as u32).to_le_bytes());
    let frame_len = v1.len() as u32;
    v1[8..12].copy_from_slice(&frame_len.to_le_bytes());
    assert_eq!(decode_frame(&v1).err(), Some(Reason::UnsupportedVersion), "a v1 block");
    // At version 2 a 32-byte entry is a bad length.
    v1[version_at] = 2;
    assert_eq!(decode_frame(&v1).err(), Some(Reason::BadLength));
    // Another kind at version 2 is refused; an unknown kind at version 1 is unknown_kind.
    let mut intent = one_intent(5, &[1]);
    intent[version_at] = 2;
    assert_eq!(decode_frame(&intent).err(), Some(Reason::UnsupportedVersion));
    intent[version_at] = 1;
    intent[FRAME_HEADER_LEN] = 0x7f;
    assert_eq!(decode_frame(&intent).err(), Some(Reason::UnknownKind));
}

proptest! {
    /// A watermark comes back as written, whatever its ranges and counts.
    #[test]
    fn watermark_round_trips(
        ranges in prop::collection::vec((any::<u64>(), any::<u64>()).prop_map(|(a, b)| (a.min(b), a.max(b))), 0..80),
        totals in (any::<u64>(), any::<u64>(), any::<u64>()),
        stream in any::<bool>(),
    ) {
        let path = if stream { WatermarkPath::Stream } else { WatermarkPath::Datagram };
        let (accepted_total, answered_total, seq_last) = totals;
        let mut buf = Vec::new();
        let mut w = FrameWriter::new(&mut buf, 1 << 20);
        w.push_watermark(&Watermark { path, accepted_total, answered_total, seq_last, ranges: &ranges }).unwrap();
        w.finish();
        let decoded: Vec<_> = decode_frame(&buf).unwrap().collect();
        let [RecordRef::Watermark(got)] = decoded[..] else { panic!("one watermark expected") };
        validate_watermark(&got).unwrap();
        prop_assert_eq!(WatermarkPath::from_code(got.fixed.path), Some(path));
        prop_assert_eq!(
            (got.fixed.accepted_total.get(), got.fixed.answered_total.get(), got.fixed.seq_last.get()),
            totals
        );
        let back: Vec<_> = got.ranges.iter().map(|r| (r.first.get(), r.last.get())).collect();
        prop_assert_eq!(back, ranges);
    }
}
