//! The single-threaded engine driven as a client would: frames in, receipts and window
//! results out.

use std::collections::{HashMap, HashSet};

use fpn_engine::sim::SplitMix64;
use fpn_engine::window::WindowConfig;
use fpn_engine::{Engine, EngineConfig};
use fpn_testkit::{bid_frame, cancel_frame, intent_frame};
use fpn_wire::*;

const MS: u64 = 1_000_000;

fn small_config() -> EngineConfig {
    EngineConfig {
        window: WindowConfig { window_ns: 20 * MS, ..WindowConfig::with_records_max(64) },
        book_bids_max: 64,
        ..EngineConfig::default()
    }
}

/// Sends one frame and returns its single receipt.
fn send(engine: &mut Engine, now_ns: u64, frame: &[u8]) -> Receipt {
    let mut out = Vec::new();
    engine.handle_frame(now_ns, now_ns, frame, |r| out.push(r)).expect("frame structure is valid");
    assert_eq!(out.len(), 1);
    out[0]
}

#[test]
fn an_intent_goes_from_frame_to_block_and_receipt() {
    let mut e = Engine::new(small_config(), 0).unwrap();
    let r = send(&mut e, MS, &intent_frame(7, 1, 2_500, &[0xA1, 0xB2]));
    assert_eq!(r.status, Ok(()));
    assert_eq!((r.client_id, r.nonce, r.window_id, r.for_kind), (7, 1, 1, Some(Kind::Intent)));
    assert!(r.seq >= 1);
    assert!(e.poll_window(19 * MS).is_none(), "not due before the deadline");
    let result = e.poll_window(20 * MS).expect("due at the deadline");
    assert_eq!(result.window.window_id, 1);
    assert_eq!(result.block.entries.len(), 1);
    assert_eq!(result.block.entries[0].seq, r.seq);
    assert_eq!(result.block.total, 2_500);
    assert_eq!(e.window_id(), 2);
}

#[test]
fn each_block_entry_carries_its_records_receive_time_into_the_result_and_the_wire() {
    let mut e = Engine::new(small_config(), 0).unwrap();
    // Receive times unlike the engine's `now`, as a NIC or kernel stamp would be.
    let mut sent = Vec::new();
    for (nonce, rx_ns) in [(1u64, 1_000_123u64), (2, 1_500_077), (3, 2_000_001)] {
        let mut out = Vec::new();
        let frame = intent_frame(7, nonce, 100 * nonce, &[nonce]);
        e.handle_frame(3 * MS, rx_ns, &frame, |r| out.push(r)).unwrap();
        assert_eq!((out[0].status, out[0].rx_ns), (Ok(()), rx_ns));
        sent.push((out[0].seq, rx_ns));
    }
    let result = e.poll_window(20 * MS).expect("due");
    let got: Vec<(u64, u64)> = result.block.entries.iter().map(|x| (x.seq, x.rx_ns)).collect();
    assert_eq!(got, sent);
    let mut bytes = Vec::new();
    result.encode(&mut bytes);
    let Some(RecordRef::Block(b)) = decode_frame(&bytes).unwrap().next() else { panic!("a block first") };
    let wire: Vec<(u64, u64)> = b.entries.iter().map(|x| (x.seq.get(), x.rx_ns.get())).collect();
    assert_eq!(wire, sent);
}

#[test]
fn every_bad_record_gets_its_reason_and_a_counter() {
    let mut e = Engine::new(small_config(), 0).unwrap();
    let cases: Vec<(Vec<u8>, Reason)> = vec![
        (intent_frame(1, 1, 0, &[1]), Reason::ZeroAmount),
        (intent_frame(1, 2, MAX_AMOUNT + 1, &[1]), Reason::AmountTooLarge),
        (intent_frame(1, 3, 5, &[]), Reason::NoResources),
        (intent_frame(1, 4, 5, &(0..65).collect::<Vec<_>>()), Reason::TooManyResources),
        (intent_frame(1, 5, 5, &[9, 9]), Reason::DuplicateResource),
        (bid_frame(1, 6, 0, 0), Reason::ZeroAmount),
        (cancel_frame(1, CancelTarget::Nonce(999)), Reason::NotFound),
    ];
    let mut expected: HashMap<Reason, u64> = HashMap::new();
    for (frame, reason) in &cases {
        assert_eq!(send(&mut e, 0, frame).status, Err(*reason), "{reason}");
        *expected.entry(*reason).or_default() += 1;
        assert_eq!(e.counters().rejected(*reason), expected[reason], "{reason} counted");
    }
    assert_eq!(send(&mut e, 0, &intent_frame(1, 10, 5, &[1])).status, Ok(()));
    assert_eq!(send(&mut e, 0, &intent_frame(1, 10, 5, &[2])).status, Err(Reason::DuplicateNonce));
    // Engine → client kinds are not input.
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, 1200);
    w.push_receipt(&Receipt::frame_refused(Reason::BadMagic, 0)).unwrap();
    w.finish();
    assert_eq!(send(&mut e, 0, &buf).status, Err(Reason::UnknownKind));
    // A broken frame is refused whole.
    let mut broken = intent_frame(1, 11, 5, &[1]);
    broken[0] = b'X';
    assert_eq!(
        e.handle_frame(0, 0, &broken, |_| panic!("no receipt for a refused frame")),
        Err(Reason::BadMagic)
    );
    assert_eq!(e.counters().frames_rejected_total, 1);
}

#[test]
fn cancels_remove_intents_and_bids() {
    let mut e = Engine::new(small_config(), 0).unwrap();
    let a = send(&mut e, 0, &intent_frame(1, 1, 100, &[1]));
    let b = send(&mut e, 0, &intent_frame(1, 2, 200, &[2]));
    let bid = send(&mut e, 0, &bid_frame(1, 3, 50, 0));
    assert_eq!(send(&mut e, 0, &cancel_frame(2, CancelTarget::Seq(a.seq))).status, Err(Reason::NotFound));
    let c1 = send(&mut e, 0, &cancel_frame(1, CancelTarget::Seq(a.seq)));
    assert_eq!((c1.status, c1.seq), (Ok(()), a.seq));
    let c2 = send(&mut e, 0, &cancel_frame(1, CancelTarget::Nonce(3)));
    assert_eq!((c2.status, c2.seq), (Ok(()), bid.seq));
    assert_eq!(send(&mut e, 0, &cancel_frame(1, CancelTarget::Seq(a.seq))).status, Err(Reason::NotFound));
    // A cancelled nonce cannot be reused.
    assert_eq!(send(&mut e, 0, &intent_frame(1, 1, 100, &[1])).status, Err(Reason::DuplicateNonce));
    let result = e.poll_window(20 * MS).unwrap();
    assert_eq!(result.block.entries.iter().map(|x| x.seq).collect::<Vec<_>>(), vec![b.seq]);
    assert!(result.clearing.winners.is_empty());
    assert_eq!(result.window.cancelled_count, 2);
    // Once its window closed, an intent can no longer be cancelled.
    assert_eq!(
        send(&mut e, 21 * MS, &cancel_frame(1, CancelTarget::Seq(b.seq))).status,
        Err(Reason::TooLate)
    );
}

#[test]
fn bids_clear_at_the_window_close_and_open_bids_can_be_cancelled() {
    let config = EngineConfig {
        auction: fpn_engine::auction::AuctionRules { top_k: 1, ..Default::default() },
        ..small_config()
    };
    let mut e = Engine::new(config, 0).unwrap();
    let high = send(&mut e, 0, &bid_frame(1, 1, 900, 0));
    let low = send(&mut e, 0, &bid_frame(2, 1, 400, 0));
    let result = e.poll_window(20 * MS).unwrap();
    assert_eq!(result.clearing.winners.len(), 1);
    assert_eq!(result.clearing.winners[0].seq, high.seq);
    assert_eq!(result.clearing.winners[0].price, 900);
    assert_eq!(e.book().len(), 1, "the loser stays open");
    let c = send(&mut e, 25 * MS, &cancel_frame(2, CancelTarget::Seq(low.seq)));
    assert_eq!(c.status, Ok(()));
    assert_eq!(e.book().len(), 0);
}

#[test]
fn a_full_window_closes_and_the_record_is_answered_overloaded() {
    let config = EngineConfig {
        window: WindowConfig { window_ns: 20 * MS, ..WindowConfig::with_records_max(2) },
        ..small_config()
    };
    let mut e = Engine::new(config, 0).unwrap();
    assert_eq!(send(&mut e, 0, &intent_frame(1, 1, 1, &[1])).status, Ok(()));
    assert_eq!(send(&mut e, 0, &intent_frame(1, 2, 1, &[2])).status, Ok(()));
    assert_eq!(send(&mut e, 0, &intent_frame(1, 3, 1, &[3])).status, Err(Reason::Overloaded));
    assert_eq!(e.poll_timeout(), 0, "a closed result waits");
    let result = e.poll_window(MS).unwrap();
    assert_eq!(result.block.entries.len(), 2);
    assert_eq!(send(&mut e, MS, &intent_frame(1, 3, 1, &[3])).status, Ok(()), "the retry lands");
}

#[test]
fn a_full_book_refuses_bids_at_admission() {
    let config = EngineConfig { book_bids_max: 2, ..small_config() };
    let mut e = Engine::new(config, 0).unwrap();
    assert_eq!(send(&mut e, 0, &bid_frame(1, 1, 10, 0)).status, Ok(()));
    assert_eq!(send(&mut e, 0, &bid_frame(1, 2, 10, 0)).status, Ok(()));
    assert_eq!(send(&mut e, 0, &bid_frame(1, 3, 10, 0)).status, Err(Reason::BookFull));
}

/// What one seeded session produced.
struct Session {
    encoded: Vec<u8>,
    receipts: Vec<Receipt>,
    /// (window id, block seqs) per closed window.
    blocks: Vec<(u64, Vec<u64>)>,
    admitted: u64,
    windowed: u64,
    balanced: bool,
    keys_of: HashMap<u64, Vec<u64>>,
}

/// A random stream of valid and invalid records and time steps, from a seed.
fn random_session(seed: u64, windows: u64) -> Session {
    let config = EngineConfig {
        window: WindowConfig { window_ns: 5 * MS, ..WindowConfig::with_records_max(48) },
        book_bids_max: 256,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(config, 0).unwrap();
    let mut rng = SplitMix64::new(seed);
    let mut s = Session {
        encoded: Vec::new(),
        receipts: Vec::new(),
        blocks: Vec::new(),
        admitted: 0,
        windowed: 0,
        balanced: true,
        keys_of: HashMap::new(),
    };
    let mut now = 0u64;
    let take = |s: &mut Session, r: &fpn_engine::WindowResult| {
        r.encode(&mut s.encoded);
        s.blocks.push((r.window.window_id, r.block.entries.iter().map(|x| x.seq).collect()));
        s.windowed += (r.window.intents_count + r.window.bids_count + r.window.cancelled_count) as u64;
        s.balanced &= r.block.entries.iter().map(|x| x.payout).sum::<u64>() + r.block.fee == r.block.total;
    };
    while now < windows * 5 * MS {
        now += rng.below(400_000);
        let client = 1 + rng.below(4);
        let nonce = rng.below(200);
        let (frame, keys) = match rng.below(10) {
            0..=5 => {
                let n = 1 + rng.below(4) as usize;
                let keys: Vec<u64> = (0..n).map(|_| rng.below(24)).collect();
                (intent_frame(client, nonce, rng.below(1_000), &keys), Some(keys))
            }
            6..=7 => (bid_frame(client, nonce, rng.below(500), rng.below(3) as u32), None),
            8 => (cancel_frame(client, CancelTarget::Nonce(nonce)), None),
            _ => (cancel_frame(client, CancelTarget::Seq(rng.below(400))), None),
        };
        let mut got = Vec::new();
        e.handle_frame(now, now, &frame, |r| got.push(r)).unwrap();
        for r in got {
            if r.status.is_ok() {
                match r.for_kind {
                    Some(Kind::Intent) => {
                        s.keys_of.insert(r.seq, keys.clone().unwrap());
                        s.admitted += 1;
                    }
                    Some(Kind::Bid) => s.admitted += 1,
                    _ => {}
                }
            }
            s.receipts.push(r);
        }
        while let Some(result) = e.poll_window(now) {
            take(&mut s, result);
        }
    }
    take(&mut s, e.drain(now));
    s
}

#[test]
fn seeded_sessions_lose_nothing_and_replay_byte_for_byte() {
    for seed in 0..20u64 {
        let a = random_session(seed, 12);
        let b = random_session(seed, 12);
        assert_eq!(a.encoded, b.encoded, "seed {seed}: results differ between two runs");
        assert_eq!(a.receipts, b.receipts, "seed {seed}: receipts differ");
        assert!(a.balanced, "seed {seed}: payouts + fee != total");
        // Every admitted intent or bid is counted in exactly one closed window.
        assert_eq!(a.windowed, a.admitted, "seed {seed}: records lost or duplicated");
        let mut seen = HashSet::new();
        for (window_id, seqs) in &a.blocks {
            let mut used = HashSet::new();
            for seq in seqs {
                assert!(seen.insert(*seq), "seed {seed}: seq {seq} in two blocks");
                for k in &a.keys_of[seq] {
                    assert!(used.insert(*k), "seed {seed}: key {k} twice in window {window_id}");
                }
            }
        }
        let ids: Vec<u64> = a.blocks.iter().map(|(w, _)| *w).collect();
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "seed {seed}: window ids contiguous");
        // The output decodes: one frame of a block and a clearing per window.
        let mut rest = &a.encoded[..];
        while !rest.is_empty() {
            let len = peek_frame_len(rest).unwrap();
            assert_eq!(decode_frame(&rest[..len]).unwrap().count(), 2);
            rest = &rest[len..];
        }
    }
}

/// The offline engine or the oracle, driven alike.
enum AnyEngine {
    Engine(Box<Engine>),
    Oracle(Box<fpn_engine::oracle::OracleEngine>),
}

impl AnyEngine {
    fn send(&mut self, now: u64, frame: &[u8]) -> Receipt {
        let mut out = Vec::new();
        match self {
            AnyEngine::Engine(e) => e.handle_frame(now, now, frame, |r| out.push(r)).unwrap(),
            AnyEngine::Oracle(e) => e.handle_frame(now, now, frame, |r| out.push(r)).unwrap(),
        }
        assert_eq!(out.len(), 1);
        out[0]
    }

    fn poll_window(&mut self, now: u64) -> bool {
        match self {
            AnyEngine::Engine(e) => e.poll_window(now).is_some(),
            AnyEngine::Oracle(e) => e.poll_window(now).is_some(),
        }
    }
}

/// `docs/wire.md`: a cancel names an open record; once its window closed the answer is
/// `too_late` (while the engine remembers the pair: the de-duplication horizon), by nonce
/// as by seq. A bid still open in the book is cancelled by nonce after its window closed.
#[test]
fn a_cancel_after_the_window_closed_is_too_late_by_nonce_and_by_seq() {
    // A reserve above the bid keeps it open in the book after its window's clearing.
    let config = EngineConfig {
        auction: fpn_engine::AuctionRules { reserve: 100, ..fpn_engine::AuctionRules::default() },
        ..small_config()
    };
    let engines = [
        ("engine", AnyEngine::Engine(Box::new(Engine::new(config.clone(), 0).unwrap()))),
        ("oracle", AnyEngine::Oracle(Box::new(fpn_engine::oracle::OracleEngine::new(config, 0).unwrap()))),
    ];
    for (label, mut e) in engines {
        let intent = e.send(MS, &intent_frame(7, 1, 100, &[1]));
        let bid = e.send(MS, &bid_frame(7, 2, 50, 0));
        assert_eq!(bid.status, Ok(()), "{label}");
        assert!(e.send(MS, &intent_frame(7, 3, 100, &[2])).status.is_ok());
        assert_eq!(e.send(MS, &cancel_frame(7, CancelTarget::Nonce(3))).status, Ok(()));
        // Cancelled already, in the open window: nothing open to cancel.
        assert_eq!(
            e.send(MS, &cancel_frame(7, CancelTarget::Nonce(3))).status,
            Err(Reason::NotFound),
            "{label}"
        );
        assert!(e.poll_window(20 * MS));
        let by_nonce = e.send(21 * MS, &cancel_frame(7, CancelTarget::Nonce(1)));
        assert_eq!((by_nonce.status, by_nonce.nonce, by_nonce.seq), (Err(Reason::TooLate), 1, 0), "{label}");
        let by_seq = e.send(21 * MS, &cancel_frame(7, CancelTarget::Seq(intent.seq)));
        assert_eq!((by_seq.status, by_seq.seq), (Err(Reason::TooLate), intent.seq), "{label}");
        assert_eq!(
            e.send(21 * MS, &cancel_frame(7, CancelTarget::Nonce(3))).status,
            Err(Reason::TooLate),
            "{label}"
        );
        // The bid is in the book: cancelled by nonce after its window closed.
        let bid_cancel = e.send(21 * MS, &cancel_frame(7, CancelTarget::Nonce(2)));
        assert_eq!((bid_cancel.status, bid_cancel.seq), (Ok(()), bid.seq), "{label}");
        // Never seen: not found.
        assert_eq!(
            e.send(21 * MS, &cancel_frame(7, CancelTarget::Nonce(99))).status,
            Err(Reason::NotFound),
            "{label}"
        );
    }
}
