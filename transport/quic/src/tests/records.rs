//! Records in and answers out: receipts by the path their records came, refusals with
//! reasons, a busy engine, window results and proofs.

use fpn_wire::{FrameWriter, Intent, Reason, RecordRef, decode_frame};

use super::pair::{Pair, Rec, frame_of, intents_frame};
use crate::client::Origin;
use crate::{Auth, Limits};

#[test]
fn datagram_and_stream_records_get_receipts_by_their_path_and_the_window() {
    let mut pair = Pair::open();
    let c = pair.connect("7");
    // 200 datagram frames of 10 intents, then 100 stream frames of 10.
    for f in 0..200u64 {
        pair.send_datagram(c, &intents_frame(7, f * 10..f * 10 + 10));
    }
    pair.drive();
    let got = pair.receipts(c);
    assert_eq!(got.len(), 2000, "{:?}", pair.server.counters);
    assert!(got.iter().all(|g| g.status.is_ok() && g.origin == Origin::Datagram));
    assert!(got.iter().map(|g| g.nonce).eq(0..2000), "in the order sent");
    for f in 0..100u64 {
        pair.send_stream(c, &intents_frame(7, 10_000 + f * 10..10_000 + f * 10 + 10));
    }
    pair.drive();
    let got = pair.receipts(c);
    assert!(got.iter().map(|g| g.nonce).eq(10_000..11_000));
    assert!(got.iter().all(|g| g.status.is_ok() && g.origin == Origin::ResultStream));
    // A cancel is answered late (the toy merger says not_found), on the path it came by.
    pair.send_datagram(c, &frame_of(7, &[Rec::Cancel(5)], 1200));
    pair.drive();
    let got = pair.receipts(c);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].nonce, got[0].status, got[0].origin), (5, Err(Reason::NotFound), Origin::Datagram));
    // The window this session had records in comes on the result stream.
    pair.publish_window_and_proof();
    let frames = pair.frames(c);
    assert_eq!(frames.len(), 1, "the block, and no proof without subscribe_all");
    assert_eq!(frames[0].0, Origin::ResultStream);
    assert!(decode_frame(&frames[0].1).unwrap().all(|r| matches!(r, RecordRef::Block(_))));
    let counters = &pair.server.counters;
    assert_eq!(counters.receipts_datagram_total + counters.receipts_fallback_total, 2001);
    assert_eq!(counters.receipts_stream_total, 1000);
    assert_eq!(counters.windows_pushed_total, 1);
    assert_eq!(counters.late_receipts_orphaned_total, 0);
}

#[test]
fn a_busy_engine_answers_datagrams_overloaded_and_leaves_stream_frames_waiting() {
    let mut pair = Pair::open();
    let c = pair.connect("7");
    pair.engine.busy = true;
    for f in 0..20u64 {
        pair.send_datagram(c, &intents_frame(7, f * 10..f * 10 + 10));
    }
    pair.drive();
    let got = pair.receipts(c);
    assert_eq!(got.len(), 200, "every datagram record answered: {:?}", pair.server.counters);
    assert!(got.iter().all(|g| g.status == Err(Reason::Overloaded)), "{got:?}");
    // Stream frames wait for the engine instead, however long it takes.
    for f in 0..5u64 {
        pair.send_stream(c, &intents_frame(7, 1_000 + f * 10..1_000 + f * 10 + 10));
    }
    pair.advance(std::time::Duration::from_secs(5));
    assert!(pair.receipts(c).is_empty(), "stream records answered while busy");
    pair.engine.busy = false;
    pair.drive();
    let got = pair.receipts(c);
    assert!(got.iter().map(|g| g.nonce).eq(1_000..1_050), "{got:?}");
    assert!(got.iter().all(|g| g.status.is_ok()));
    assert_eq!(pair.server.counters.records_overloaded_total, 200);
}

#[test]
fn records_of_another_client_and_broken_datagrams_are_refused_with_reasons() {
    let mut pair = Pair::open();
    let c = pair.connect("9");
    // Another client's id on this connection; a malformed frame; an oversized datagram.
    pair.send_datagram(c, &intents_frame(8, 0..1));
    let mut bad_magic = intents_frame(9, 1..2);
    bad_magic[0] = b'X';
    pair.send_datagram(c, &bad_magic);
    let mut big = Vec::new();
    let mut w = FrameWriter::new(&mut big, 1300);
    for n in 0.. {
        let keys = [n];
        let intent = Intent { client_id: 9, nonce: 100 + n, sent_ns: 1, profit: 1, priority: 0, keys: &keys };
        if w.push_intent(&intent).is_err() {
            break;
        }
    }
    w.finish();
    assert!(big.len() > 1200 && big.len() <= pair.client(c).datagram_max());
    pair.send_datagram(c, &big);
    pair.drive();
    let got = pair.receipts(c);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!((got[0].nonce, got[0].status), (0, Err(Reason::ClientMismatch)));
    assert!(got[1].whole_frame && got[1].status == Err(Reason::BadMagic));
    assert!(got[2].whole_frame && got[2].status == Err(Reason::Oversized));
    let counters = &pair.server.counters;
    assert_eq!((counters.records_client_mismatch_total, counters.frames_refused_total), (1, 2));
    assert_eq!(pair.engine.refused, 3);
}

#[test]
fn a_stream_with_a_bad_frame_is_stopped_with_the_reason() {
    let mut pair = Pair::open();
    let c = pair.connect("9");
    // A good frame, then a header whose length (4) is shorter than a header.
    let mut bytes = intents_frame(9, 0..2);
    let mut garbage = vec![b'F', b'P', 1, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    garbage[8] = 4;
    bytes.extend_from_slice(&garbage);
    pair.send_stream_once(c, &bytes);
    pair.drive();
    let got = pair.receipts(c);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[..2].iter().all(|g| g.status.is_ok()));
    assert!(got[2].whole_frame && got[2].status == Err(Reason::BadLength));
    assert_eq!(pair.server.counters.streams_stopped_total, 1);
}

#[test]
fn a_stream_that_ends_inside_a_frame_is_truncated() {
    let mut pair = Pair::open();
    let c = pair.connect("9");
    let frame = intents_frame(9, 0..2);
    pair.send_stream_once(c, &frame[..frame.len() - 1]);
    pair.drive();
    let got = pair.receipts(c);
    assert_eq!(got.len(), 1);
    assert!(got[0].whole_frame && got[0].status == Err(Reason::Truncated));
}

#[test]
fn subscribe_all_gets_windows_and_proofs_without_records() {
    let mut pair = Pair::new(Auth::Open, Limits::default());
    let mut options = pair.options("3");
    options.flags = fpn_wire::session::HELLO_SUBSCRIBE_ALL;
    let subscriber = pair.start(&options, std::net::Ipv4Addr::new(10, 0, 0, 2), true);
    let quiet = pair.connect("4");
    pair.publish_window_and_proof();
    let records: Vec<_> = pair
        .frames(subscriber)
        .into_iter()
        .inspect(|(origin, _)| assert_eq!(*origin, Origin::ResultStream))
        .flat_map(|(_, frame)| {
            decode_frame(&frame)
                .unwrap()
                .map(|r| match r {
                    RecordRef::Block(b) => ("block", b.fixed.window_id.get()),
                    RecordRef::Proof(p) => {
                        assert_eq!((p.job_id.get(), p.proof), (1, [5; 128]));
                        ("proof", p.window_first.get())
                    }
                    _ => ("other", 0),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(records, [("block", 1), ("proof", 1)]);
    assert!(pair.frames(quiet).is_empty());
    assert_eq!(pair.server.counters.proofs_pushed_total, 1);
}

#[test]
fn a_finished_stream_whose_frames_wait_for_the_engine_is_not_truncated() {
    let mut pair = Pair::open();
    let c = pair.connect("9");
    pair.engine.busy = true;
    let mut bytes = intents_frame(9, 0..2);
    bytes.extend_from_slice(&intents_frame(9, 2..4));
    pair.send_stream_once(c, &bytes);
    pair.drive();
    assert!(pair.receipts(c).is_empty());
    pair.engine.busy = false;
    pair.drive();
    let got = pair.receipts(c);
    assert!(got.iter().map(|g| g.nonce).eq(0..4), "{got:?}");
    assert!(got.iter().all(|g| g.status.is_ok()), "{got:?}");
    assert_eq!(pair.server.counters.streams_stopped_total, 0);
}

#[test]
fn a_finished_stream_of_more_frames_than_the_budget_is_read_to_its_end() {
    let mut pair = Pair::open();
    let c = pair.connect("9");
    let frames = crate::server::RECORDS_BUDGET as u64 + 10;
    let bytes: Vec<u8> = (0..frames).flat_map(|n| intents_frame(9, n..n + 1)).collect();
    // All of it arrives while the engine is busy, so one poll finds more than its budget.
    pair.engine.busy = true;
    pair.send_stream_once(c, &bytes);
    pair.drive();
    pair.engine.busy = false;
    pair.drive();
    let got = pair.receipts(c);
    assert!(got.iter().map(|g| g.nonce).eq(0..frames), "{got:?}");
    assert!(got.iter().all(|g| g.status.is_ok()));
}
