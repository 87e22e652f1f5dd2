//! Receipts in record order when the engine answers a record later (a cancel of a book bid,
//! answered by the merger through `Server::handle_late_receipt`): the records after it wait
//! for its answer, on their own path only.

use std::time::Duration;

use fpn_wire::Reason;

use super::pair::{ClientId, Got, Pair, Rec, frame_of};
use crate::client::Origin;
use crate::server::{Auth, Limits};

/// Receipts a path may hold in these tests: small enough that a path fills before QUIC's
/// 1 MiB datagram receive buffer does.
const HELD_MAX: usize = 4096;

/// A pair whose server holds at most [`HELD_MAX`] receipts a path.
fn pair_held_small() -> Pair {
    Pair::new(Auth::Open, Limits { receipts_held_max: HELD_MAX, ..Limits::default() })
}

/// 15 records, nonces `base..base + 15`; those at `cancels` are cancels (answered late,
/// `not_found`), the others intents.
fn records(base: u64, cancels: &[usize]) -> Vec<Rec> {
    (0..15)
        .map(
            |i| {
                if cancels.contains(&i) { Rec::Cancel(base + i as u64) } else { Rec::Intent(base + i as u64) }
            },
        )
        .collect()
}

/// `got` answers nonces `from..to` in order, from `origin`, cancels `not_found`.
fn assert_in_order(got: &[Got], from: u64, to: u64, cancels: &[u64], origin: Origin) {
    let nonces: Vec<u64> = got.iter().map(|g| g.nonce).collect();
    assert_eq!(nonces, (from..to).collect::<Vec<_>>(), "receipt order");
    for g in got {
        let want = if cancels.contains(&g.nonce) { Err(Reason::NotFound) } else { Ok(()) };
        assert_eq!((g.status, g.origin), (want, origin), "{g:?}");
    }
}

fn send(pair: &mut Pair, c: ClientId, origin: Origin, records: &[Rec]) {
    match origin {
        Origin::Datagram => pair.send_datagram(c, &frame_of(7, records, 1200)),
        Origin::ResultStream => pair.send_stream(c, &frame_of(7, records, 1 << 16)),
    }
}

#[test]
fn a_datagram_frame_is_answered_in_record_order_around_a_late_record() {
    let mut pair = Pair::open();
    let c = pair.connect("7");
    send(&mut pair, c, Origin::Datagram, &records(0, &[12]));
    pair.drive();
    assert_in_order(&pair.receipts(c), 0, 15, &[12], Origin::Datagram);
}

#[test]
fn a_stream_frame_is_answered_in_record_order_around_a_late_record() {
    let mut pair = Pair::open();
    let c = pair.connect("7");
    send(&mut pair, c, Origin::ResultStream, &records(0, &[12]));
    pair.drive();
    assert_in_order(&pair.receipts(c), 0, 15, &[12], Origin::ResultStream);
}

#[test]
fn several_late_records_in_a_frame_keep_record_order_on_both_paths() {
    let mut pair = Pair::open();
    let c = pair.connect("7");
    send(&mut pair, c, Origin::Datagram, &records(0, &[0, 3, 4, 12, 14]));
    send(&mut pair, c, Origin::ResultStream, &records(100, &[1, 7, 13]));
    pair.drive();
    let got = pair.receipts(c);
    let (dgram, stream): (Vec<Got>, Vec<Got>) = got.iter().partition(|g| g.origin == Origin::Datagram);
    assert_in_order(&dgram, 0, 15, &[0, 3, 4, 12, 14], Origin::Datagram);
    assert_in_order(&stream, 100, 115, &[101, 107, 113], Origin::ResultStream);
}

#[test]
fn receipts_after_a_late_record_wait_for_its_answer_and_only_on_its_path() {
    let mut pair = Pair::open();
    let c = pair.connect("7");
    pair.engine.hold_late = true;
    send(&mut pair, c, Origin::Datagram, &records(0, &[12]));
    pair.drive();
    assert_in_order(&pair.receipts(c), 0, 12, &[], Origin::Datagram);
    // Later frames of the same path wait too; the other path does not.
    send(&mut pair, c, Origin::Datagram, &records(15, &[]));
    send(&mut pair, c, Origin::ResultStream, &records(100, &[]));
    pair.advance(Duration::from_millis(100));
    assert_in_order(&pair.receipts(c), 100, 115, &[], Origin::ResultStream);
    // The merger answers: the rest goes out, in order.
    pair.engine.hold_late = false;
    pair.drive();
    assert_in_order(&pair.receipts(c), 12, 30, &[12], Origin::Datagram);
    assert_eq!(pair.server.counters.late_receipts_orphaned_total, 0);
}

#[test]
fn a_late_receipt_for_a_closed_session_is_orphaned() {
    let mut pair = Pair::open();
    let c = pair.connect("7");
    pair.engine.hold_late = true;
    send(&mut pair, c, Origin::Datagram, &records(0, &[12]));
    pair.drive();
    pair.close(c);
    pair.advance(Duration::from_secs(1));
    assert_eq!(pair.server.connections(), 0, "the session is gone");
    // A new session (which may reuse the slot) does not get the old session's answer.
    let d = pair.connect("7");
    pair.engine.hold_late = false;
    pair.drive();
    assert!(pair.receipts(d).is_empty());
    assert_eq!(pair.server.counters.late_receipts_orphaned_total, 1);
}

/// A session of a [`pair_held_small`] whose datagram path holds a late record (nonce 0),
/// then `frames` more frames of 15 intents each, driven: the path stops reading behind it.
fn held_path_with_frames(frames: u64) -> (Pair, ClientId) {
    let mut pair = pair_held_small();
    let c = pair.connect("7");
    pair.engine.hold_late = true;
    send(&mut pair, c, Origin::Datagram, &records(0, &[0]));
    for f in 1..=frames {
        send(&mut pair, c, Origin::Datagram, &records(f * 15, &[]));
    }
    pair.drive();
    (pair, c)
}

#[test]
fn a_path_full_of_receipts_behind_a_late_record_is_not_read_until_it_is_answered() {
    let frames = HELD_MAX as u64 / 15 + 20;
    let (mut pair, c) = held_path_with_frames(frames);
    assert!(pair.receipts(c).is_empty());
    let counters = &pair.server.counters;
    assert_eq!(counters.receipt_queue_full_total, 1, "one pause");
    let read = counters.frames_datagram_total;
    assert!(read < frames, "reading stopped: {read} of {} frames", frames + 1);
    // The held frames are still there when the merger answers.
    pair.engine.hold_late = false;
    pair.drive();
    let end = (frames + 1) * 15;
    assert_in_order(&pair.receipts(c), 0, end, &[0], Origin::Datagram);
    assert_eq!(pair.server.counters.frames_datagram_total, frames + 1);
}

/// A path that stopped reading (its receipts held behind a late record) lets QUIC's datagram
/// receive buffer (1 MiB, oldest dropped first) overflow: what it dropped, and what a session
/// leaves in it, is counted when the session ends (`Counters::datagrams_unread_total`).
#[test]
fn datagrams_a_session_never_read_are_counted_when_it_ends() {
    // About 1.1 KB a frame: twice the server's receive buffer while the path is not read.
    let frames = 2_000u64;
    let (mut pair, c) = held_path_with_frames(frames);
    pair.engine.hold_late = false;
    pair.drive();
    let read = pair.server.counters.frames_datagram_total;
    assert!(read < frames, "QUIC dropped frames the session did not read: read {read} of {}", frames + 1);
    assert_eq!(pair.server.counters.datagrams_unread_total, 0, "counted when the session ends");
    pair.close(c);
    pair.advance(Duration::from_secs(1));
    assert_eq!(pair.server.connections(), 0, "the session is gone");
    assert_eq!(pair.server.counters.datagrams_unread_total, frames + 1 - read);
}
