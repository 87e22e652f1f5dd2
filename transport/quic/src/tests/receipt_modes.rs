//! Receipt modes (`docs/transport.md`, "Receipt modes"): `all` answers every record with a
//! receipt; `refusals` answers refused records and cancels with receipts on the result
//! stream and confirms accepted intents and bids with watermarks, which a client reads with
//! `fpn_wire::confirm::Ledger`. And slow consumers: held back first, closed
//! `slow_consumer` only if the result stream still backs up.

use std::net::Ipv4Addr;
use std::time::Duration;

use fpn_wire::confirm::{Ledger, Outcome};
use fpn_wire::session::{HELLO_RECEIPTS_REFUSALS, HELLO_SUBSCRIBE_ALL, reason_of_app_error};
use fpn_wire::{
    BlockEntryWire, BlockSummary, FrameWriter, Kind, Reason, Receipt, RecordRef, WatermarkPath, decode_frame,
};
use quinn_proto::ConnectionError;

use super::pair::{ClientId, Pair, Rec, frame_of, intents_frame};
use crate::client::Origin;
use crate::server::{WATERMARK_INTERVAL, WATERMARK_RECORDS_MAX};
use crate::{Auth, Limits};

const NS: Duration = Duration::from_nanos(1);

/// What a client got, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Receipt { origin: Origin, receipt: Receipt },
    Watermark { path: WatermarkPath, accepted_total: u64, answered_total: u64, ranges: Vec<(u64, u64)> },
    Other,
}

fn answers(pair: &mut Pair, c: ClientId) -> Vec<Answer> {
    let mut out = Vec::new();
    for (origin, frame) in pair.frames(c) {
        for record in decode_frame(&frame).expect("a frame from the server decodes") {
            out.push(match record {
                RecordRef::Receipt(r) => {
                    Answer::Receipt { origin, receipt: Receipt::from_wire(r).expect("a known status") }
                }
                RecordRef::Watermark(w) => {
                    fpn_wire::validate_watermark(&w).unwrap();
                    assert_eq!(origin, Origin::ResultStream, "watermarks go on the result stream");
                    Answer::Watermark {
                        path: WatermarkPath::from_code(w.fixed.path).unwrap(),
                        accepted_total: w.fixed.accepted_total.get(),
                        answered_total: w.fixed.answered_total.get(),
                        ranges: w.ranges.iter().map(|r| (r.first.get(), r.last.get())).collect(),
                    }
                }
                _ => Answer::Other,
            });
        }
    }
    out
}

/// Feeds `answers` to `ledger`; returns the outcomes in the order they became known.
fn settle(ledger: &mut Ledger, answers: &[Answer]) -> Vec<(u64, Outcome)> {
    let mut out = Vec::new();
    let mut accepted = Vec::new();
    for a in answers {
        match a {
            Answer::Receipt { receipt, .. } => out.extend(ledger.handle_receipt(receipt)),
            Answer::Watermark { path, ranges, .. } => {
                accepted.clear();
                ledger.handle_watermark(*path, ranges.iter().copied(), &mut accepted);
                out.extend(accepted.iter().map(|&n| (n, Outcome::Accepted)));
            }
            Answer::Other => {}
        }
    }
    out
}

fn refusals_session(pair: &mut Pair, key: &str, flags: u8) -> ClientId {
    let mut options = pair.options(key);
    options.flags = HELLO_RECEIPTS_REFUSALS | flags;
    let c = pair.start(&options, Ipv4Addr::new(10, 0, 0, 2), true);
    assert_eq!(pair.welcome(c).map(|w| w.status), Some(Ok(())));
    c
}

/// One frame: intents of client 7 with these nonces, but those in `foreign` carry client 8's
/// id (refused `client_mismatch`), and `Rec::Cancel`s stay cancels.
fn mixed_frame(records: &[Rec], foreign: &[u64], len_max: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, len_max);
    for record in records {
        match *record {
            Rec::Intent(nonce) => {
                let client_id = if foreign.contains(&nonce) { 8 } else { 7 };
                let keys = [nonce];
                let intent =
                    fpn_wire::Intent { client_id, nonce, sent_ns: 1, profit: 10, priority: 0, keys: &keys };
                w.push_intent(&intent).unwrap();
            }
            Rec::Cancel(nonce) => w
                .push_cancel(&fpn_wire::Cancel { client_id: 7, target: fpn_wire::CancelTarget::Nonce(nonce) })
                .unwrap(),
        }
    }
    w.finish();
    buf
}

#[test]
fn mode_all_answers_every_record_with_a_receipt_and_no_watermark() {
    let mut pair = Pair::open();
    let c = pair.connect("7");
    pair.send_datagram(c, &intents_frame(7, 1..11));
    pair.send_stream(c, &intents_frame(7, 11..21));
    pair.advance(WATERMARK_INTERVAL * 4);
    let got = answers(&mut pair, c);
    assert_eq!(got.len(), 20);
    let mut ledger = Ledger::new();
    (1..11).for_each(|n| ledger.sent(WatermarkPath::Datagram, n));
    (11..21).for_each(|n| ledger.sent(WatermarkPath::Stream, n));
    for a in &got {
        let Answer::Receipt { origin, receipt } = a else { panic!("only receipts: {a:?}") };
        let want = if receipt.nonce < 11 { Origin::Datagram } else { Origin::ResultStream };
        assert_eq!((*origin, receipt.status), (want, Ok(())));
    }
    assert_eq!(settle(&mut ledger, &got).len(), 20);
    assert_eq!(ledger.pending_len(), 0);
    assert_eq!(pair.server.counters.watermarks_total, 0);
}

#[test]
fn mode_refusals_sends_refusals_and_cancels_then_a_watermark_on_the_result_stream() {
    let mut pair = Pair::open();
    let c = refusals_session(&mut pair, "7", 0);
    let dgram: Vec<Rec> = (1..=10).map(Rec::Intent).chain([Rec::Cancel(3)]).collect();
    pair.send_datagram(c, &mixed_frame(&dgram, &[4, 9], 1200));
    let stream: Vec<Rec> = (100..=199).map(Rec::Intent).collect();
    pair.send_stream(c, &mixed_frame(&stream, &[150], 1 << 16));
    pair.drive();
    // Refusals and the cancel's answer are there at once; every receipt on the result stream.
    let early = answers(&mut pair, c);
    let mut receipts: Vec<(u64, Result<(), Reason>, Option<Kind>)> = early
        .iter()
        .map(|a| match a {
            Answer::Receipt { origin: Origin::ResultStream, receipt: r } => (r.nonce, r.status, r.for_kind),
            other => panic!("before the interval only receipts on the stream: {other:?}"),
        })
        .collect();
    receipts.sort_by_key(|r| r.0);
    let mismatch = Err(Reason::ClientMismatch);
    let intent = Some(Kind::Intent);
    assert_eq!(
        receipts,
        [
            (3, Err(Reason::NotFound), Some(Kind::Cancel)),
            (4, mismatch, intent),
            (9, mismatch, intent),
            (150, mismatch, intent)
        ]
    );
    // The watermarks go out one interval after the first answer they list, not before.
    pair.advance(WATERMARK_INTERVAL - NS);
    assert!(answers(&mut pair, c).is_empty());
    pair.advance(NS);
    let late = answers(&mut pair, c);
    let mut watermarks: Vec<_> = late
        .iter()
        .map(|a| match a {
            Answer::Watermark { path, accepted_total, answered_total, ranges } => {
                (*path, *accepted_total, *answered_total, ranges.clone())
            }
            other => panic!("only watermarks now: {other:?}"),
        })
        .collect();
    watermarks.sort_by_key(|w| w.0.code());
    assert_eq!(
        watermarks,
        [(WatermarkPath::Datagram, 8, 10, vec![(1, 10)]), (WatermarkPath::Stream, 99, 100, vec![(100, 199)])]
    );
    let mut ledger = Ledger::new();
    (1..=10).for_each(|n| ledger.sent(WatermarkPath::Datagram, n));
    (100..=199).for_each(|n| ledger.sent(WatermarkPath::Stream, n));
    let outcomes = settle(&mut ledger, &[early, late].concat());
    assert_eq!(ledger.pending_len(), 0, "every intent answered");
    let mut refused: Vec<u64> = outcomes.iter().filter(|o| o.1 != Outcome::Accepted).map(|o| o.0).collect();
    refused.sort_unstable();
    assert_eq!(refused, [4, 9, 150]);
    assert_eq!(outcomes.len(), 110);
    let counters = &pair.server.counters;
    assert_eq!((counters.watermarks_total, counters.receipts_datagram_total), (2, 0));
}

#[test]
fn a_full_watermark_goes_out_before_its_interval() {
    let mut pair = Pair::open();
    let c = refusals_session(&mut pair, "7", 0);
    let n = WATERMARK_RECORDS_MAX as u64 + 10;
    let mut frame = Vec::new();
    for start in (0..n).step_by(1000) {
        frame.extend(intents_frame_stream(start..(start + 1000).min(n)));
    }
    pair.send_stream(c, &frame);
    pair.drive();
    let got = answers(&mut pair, c);
    let [Answer::Watermark { answered_total, ranges, .. }] = &got[..] else { panic!("{got:?}") };
    assert_eq!((*answered_total, ranges.clone()), (WATERMARK_RECORDS_MAX as u64, vec![(0, n - 11)]));
    pair.advance(WATERMARK_INTERVAL);
    let got = answers(&mut pair, c);
    let [Answer::Watermark { answered_total, ranges, .. }] = &got[..] else { panic!("{got:?}") };
    assert_eq!((*answered_total, ranges.clone()), (n, vec![(n - 10, n - 1)]));
}

fn intents_frame_stream(nonces: std::ops::Range<u64>) -> Vec<u8> {
    let records: Vec<Rec> = nonces.map(Rec::Intent).collect();
    frame_of(7, &records, 1 << 20)
}

#[test]
fn a_watermark_never_lists_a_record_before_the_log_made_it_durable() {
    let mut pair = Pair::open();
    pair.engine.logged = true;
    let c = refusals_session(&mut pair, "7", 0);
    // Nonces 1, 2, 4, 5, 6 get seqs 1..=5, each durable at its seq; nonce 3 is refused and
    // waits behind nonce 2 (tags never decrease along a path).
    pair.send_stream(c, &mixed_frame(&(1..=6).map(Rec::Intent).collect::<Vec<_>>(), &[3], 1 << 16));
    pair.advance(WATERMARK_INTERVAL * 10);
    assert!(answers(&mut pair, c).is_empty(), "nothing is durable yet");
    pair.server.set_durable(2);
    pair.advance(WATERMARK_INTERVAL);
    let got = answers(&mut pair, c);
    let mut ledger = Ledger::new();
    (1..=6).for_each(|n| ledger.sent(WatermarkPath::Stream, n));
    let outcomes = settle(&mut ledger, &got);
    assert_eq!(
        outcomes,
        [(3, Outcome::Refused(Reason::ClientMismatch)), (1, Outcome::Accepted), (2, Outcome::Accepted)]
    );
    assert_eq!(ledger.unanswered().map(|u| u.0).collect::<Vec<_>>(), [4, 5, 6]);
    pair.server.set_durable(5);
    pair.advance(WATERMARK_INTERVAL);
    let outcomes = settle(&mut ledger, &answers(&mut pair, c));
    assert_eq!(outcomes, [(4, Outcome::Accepted), (5, Outcome::Accepted), (6, Outcome::Accepted)]);
}

#[test]
fn lost_and_reordered_datagrams_are_told_apart_by_nonce() {
    let mut pair = Pair::open();
    let c = refusals_session(&mut pair, "7", 0);
    let mut ledger = Ledger::new();
    let frames: Vec<Vec<u8>> = (0..4).map(|f| intents_frame(7, f * 10 + 1..f * 10 + 11)).collect();
    (1..=40).for_each(|n| ledger.sent(WatermarkPath::Datagram, n));
    // The network reorders the first three datagrams and loses the second.
    pair.send_datagram(c, &frames[2]);
    pair.send_datagram(c, &frames[0]);
    pair.send_datagram(c, &frames[3]);
    pair.advance(WATERMARK_INTERVAL);
    let got = answers(&mut pair, c);
    let [Answer::Watermark { accepted_total: 30, answered_total: 30, ranges, .. }] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(ranges, &[(21, 30), (1, 10), (31, 40)]);
    settle(&mut ledger, &got);
    let pending: Vec<u64> = ledger.unanswered().map(|u| u.0).collect();
    assert_eq!(pending, (11..=20).collect::<Vec<_>>(), "exactly the lost datagram's records");
    // The client resends them with the same nonces: confirmed now.
    pair.send_datagram(c, &frames[1]);
    pair.advance(WATERMARK_INTERVAL);
    let outcomes = settle(&mut ledger, &answers(&mut pair, c));
    assert_eq!(outcomes.len(), 10);
    assert_eq!(ledger.pending_len(), 0);
}

#[test]
fn a_late_answer_holds_the_watermark_and_its_receipt_comes_first() {
    let mut pair = Pair::open();
    let c = refusals_session(&mut pair, "7", 0);
    pair.engine.hold_late = true;
    let records: Vec<Rec> =
        (1..=5).map(Rec::Intent).chain([Rec::Cancel(2)]).chain((7..=9).map(Rec::Intent)).collect();
    pair.send_datagram(c, &frame_of(7, &records, 1200));
    pair.advance(WATERMARK_INTERVAL * 3);
    let got = answers(&mut pair, c);
    let [Answer::Watermark { ranges, .. }] = &got[..] else { panic!("{got:?}") };
    assert_eq!(ranges, &[(1, 5)], "the records after the cancel wait for its answer");
    pair.engine.hold_late = false;
    pair.advance(WATERMARK_INTERVAL);
    let got = answers(&mut pair, c);
    let [Answer::Receipt { receipt, .. }, Answer::Watermark { ranges, .. }] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(
        (receipt.nonce, receipt.status, receipt.for_kind),
        (2, Err(Reason::NotFound), Some(Kind::Cancel))
    );
    assert_eq!(ranges, &[(7, 9)]);
}

/// A valid frame of one block of about `len` bytes, for filling result streams.
fn big_window_frame(window_id: u64, len: usize) -> Vec<u8> {
    let n = (len - 12 - 72) / 40;
    let entries: Vec<BlockEntryWire> = (0..n as u64).map(|i| BlockEntryWire::new(i, 1, 1, 1, 1)).collect();
    let mut frame = Vec::new();
    let mut w = FrameWriter::new(&mut frame, u32::MAX as usize);
    w.push_block(&BlockSummary { window_id, ..BlockSummary::default() }, &entries).unwrap();
    w.finish();
    frame
}

fn closed_with(pair: &Pair, c: ClientId) -> Option<Reason> {
    match pair.lost(c)? {
        ConnectionError::ApplicationClosed(close) => reason_of_app_error(close.error_code.into_inner()),
        other => panic!("lost otherwise: {other:?}"),
    }
}

/// A subscriber that stops reading, and window results until its session stops reading
/// records (returns the windows published).
fn back_up(pair: &mut Pair, c: ClientId, limits: &Limits) -> u64 {
    pair.client(c).read_results(false);
    let frame_len = limits.result_backlog_max / 4;
    for window in 1..=200 {
        pair.server.handle_window(window, &big_window_frame(window, frame_len));
        pair.drive();
        if pair.server.counters.sessions_backlog_paused_total > 0 {
            return window;
        }
    }
    panic!("the session never paused");
}

#[test]
fn a_slow_consumer_is_held_back_and_resumes_when_it_reads() {
    let limits = Limits { result_backlog_max: 1 << 20, ..Limits::default() };
    let mut pair = Pair::new(Auth::Open, limits.clone());
    let c = refusals_session(&mut pair, "7", HELLO_SUBSCRIBE_ALL);
    back_up(&mut pair, c, &limits);
    let read = pair.server.counters.frames_datagram_total;
    pair.send_datagram(c, &intents_frame(7, 1..11));
    pair.advance(WATERMARK_INTERVAL * 3);
    assert_eq!(pair.server.counters.frames_datagram_total, read, "records wait while the stream is behind");
    assert!(pair.lost(c).is_none());
    // The client reads again: the stream drains, the datagram is read and confirmed.
    pair.client(c).read_results(true);
    let mut ledger = Ledger::new();
    (1..11).for_each(|n| ledger.sent(WatermarkPath::Datagram, n));
    for _ in 0..1000 {
        pair.advance(WATERMARK_INTERVAL);
        settle(&mut ledger, &answers(&mut pair, c));
        if ledger.pending_len() == 0 {
            break;
        }
    }
    assert_eq!(ledger.pending_len(), 0);
    assert_eq!(pair.server.counters.frames_datagram_total, read + 1);
    let counters = &pair.server.counters;
    assert_eq!((counters.sessions_backlog_paused_total, counters.sessions_backlog_closed_total), (1, 0));
}

#[test]
fn a_consumer_that_stays_behind_is_closed_slow_consumer_without_reading_more() {
    let limits = Limits { result_backlog_max: 1 << 20, ..Limits::default() };
    let mut pair = Pair::new(Auth::Open, limits.clone());
    let c = refusals_session(&mut pair, "7", HELLO_SUBSCRIBE_ALL);
    let first = back_up(&mut pair, c, &limits);
    let read = pair.server.counters.frames_datagram_total;
    pair.send_datagram(c, &intents_frame(7, 1..11));
    pair.drive();
    // Window results keep coming while the client reads nothing.
    for window in first + 1..first + 10 {
        pair.server.handle_window(window, &big_window_frame(window, limits.result_backlog_max / 4));
        pair.drive();
    }
    pair.advance(WATERMARK_INTERVAL);
    assert_eq!(closed_with(&pair, c), Some(Reason::SlowConsumer));
    let counters = &pair.server.counters;
    assert_eq!(counters.sessions_backlog_closed_total, 1);
    assert_eq!(counters.frames_datagram_total, read, "nothing was read, so nothing is owed an answer");
}
