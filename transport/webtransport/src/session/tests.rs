//! The sessions in memory: a fake datagram port, the engine's ring read directly.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fpn_quic::{Auth, Limits};
use fpn_wire::session::{HELLO_SUBSCRIBE_ALL, Hello};
use fpn_wire::{FrameWriter, Intent, Reason, RecordRef, decode_frame};
use tokio::sync::Notify;

use super::*;
use crate::engine::{FrameIn, SessionKey, ToSession, Via};

#[derive(Clone, Default)]
struct Port {
    sent: Rc<RefCell<Vec<Bytes>>>,
    blocked: Rc<RefCell<bool>>,
}

impl DatagramPort for Port {
    fn max_size(&self) -> usize {
        1100
    }
    fn try_send(&mut self, payload: Bytes) -> bool {
        if *self.blocked.borrow() {
            return false;
        }
        self.sent.borrow_mut().push(payload);
        true
    }
}

struct Fixture {
    core: Core,
    frames: rtrb::Consumer<FrameIn>,
    now: Instant,
}

fn fixture(auth: Auth, limits: Limits, ring: usize) -> Fixture {
    let (tx, frames) = rtrb::RingBuffer::new(ring);
    let now = Instant::now();
    Fixture { core: Core::new(auth, limits, tx, now), frames, now }
}

fn hello(key: &str, flags: u8) -> Vec<u8> {
    let mut out = Vec::new();
    Hello { flags, api_key: key.as_bytes() }.encode(&mut out);
    out
}

fn intents(client_id: u64, nonces: std::ops::Range<u64>) -> Bytes {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, 64 * 1024);
    for nonce in nonces {
        w.push_intent(&Intent { client_id, nonce, sent_ns: 0, profit: 10, priority: 0, keys: &[nonce] })
            .unwrap();
    }
    w.finish();
    Bytes::from(buf)
}

/// (nonce, status) of every receipt in `frames`.
fn receipts(frames: &[u8]) -> Vec<(u64, Result<(), Reason>)> {
    let mut out = Vec::new();
    let mut rest = frames;
    while !rest.is_empty() {
        let len = fpn_wire::peek_frame_len(rest).unwrap();
        for r in decode_frame(&rest[..len]).unwrap() {
            let RecordRef::Receipt(r) = r else { panic!("not a receipt") };
            let status = if r.status == 0 { Ok(()) } else { Err(Reason::from_code(r.status).unwrap()) };
            out.push((r.nonce.get(), status));
        }
        rest = &rest[len..];
    }
    out
}

impl Fixture {
    fn open(&mut self, key: &str, flags: u8) -> (SessionKey, Port) {
        let port = Port::default();
        let s = self.core.open_session(Box::new(port.clone()), Rc::new(Notify::new()));
        let answer = self.core.handle_hello(s, &hello(key, flags), false, self.now);
        let HelloOutcome::Answer(w) = answer else { panic!("{answer:?}") };
        assert_eq!(w.status, Ok(()));
        (s, port)
    }

    fn outbox(&mut self, s: SessionKey) -> Vec<u8> {
        let mut out = Vec::new();
        self.core.take_outbox(s, &mut out);
        out
    }

    fn dgram_receipts(&self, port: &Port) -> Vec<(u64, Result<(), Reason>)> {
        port.sent.borrow().iter().flat_map(|d| receipts(d)).collect()
    }
}

#[test]
fn hello_opens_the_session_with_the_limits_in_the_welcome() {
    let limits = Limits { rate_per_s: 100, burst: 10, ..Limits::default() };
    let mut f = fixture(Auth::Open, limits, 16);
    let port = Port::default();
    let s = f.core.open_session(Box::new(port), Rc::new(Notify::new()));
    let bytes = hello("7", 0);
    assert_eq!(f.core.handle_hello(s, &bytes[..5], false, f.now), HelloOutcome::Incomplete);
    let HelloOutcome::Answer(w) = f.core.handle_hello(s, &bytes, false, f.now) else { panic!() };
    assert_eq!((w.status, w.client_id, w.rate_per_s, w.burst), (Ok(()), 7, 100, 10));
    // The smaller of the port's datagram size and the configured maximum.
    assert_eq!(w.datagram_frame_max, 1100);
    assert_eq!(f.core.phase(s), Some(Phase::Open));
    assert_eq!(f.core.counters.sessions_opened_total, 1);
}

#[test]
fn receipt_mode_refusals_is_refused_before_it_counts_a_session() {
    let limits = Limits { conns_per_client: 1, ..Limits::default() };
    let mut f = fixture(Auth::Open, limits, 16);
    let s = f.core.open_session(Box::new(Port::default()), Rc::new(Notify::new()));
    let bytes = hello("7", fpn_wire::session::HELLO_RECEIPTS_REFUSALS);
    let HelloOutcome::Answer(w) = f.core.handle_hello(s, &bytes, false, f.now) else { panic!() };
    assert_eq!(w.status, Err(Reason::ReservedNonzero));
    assert_eq!(f.core.counters.sessions_refused_bad_hello_total, 1);
    // The client's one allowed session is still free: mode `all` opens.
    f.open("7", 0);
}

#[test]
fn hellos_are_refused_with_the_raw_intakes_reasons() {
    let keys = Auth::Keys(HashMap::from([(b"secret".to_vec(), 9)]));
    let limits = Limits { conns_per_client: 1, ..Limits::default() };
    let mut f = fixture(keys, limits, 16);
    let refused = |f: &mut Fixture, bytes: &[u8], finished| {
        let s = f.core.open_session(Box::new(Port::default()), Rc::new(Notify::new()));
        match f.core.handle_hello(s, bytes, finished, f.now) {
            HelloOutcome::Answer(w) => w.status,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(refused(&mut f, &hello("7", 0), false), Err(Reason::Unauthorized));
    assert_eq!(refused(&mut f, b"GET / HTTP/1.1", false), Err(Reason::BadMagic));
    assert_eq!(refused(&mut f, &hello("secret", 0)[..6], true), Err(Reason::Truncated));
    assert_eq!(refused(&mut f, &hello("secret", 0), false), Ok(()));
    assert_eq!(
        refused(&mut f, &hello("secret", 0), false),
        Err(Reason::Overloaded),
        "one connection per client"
    );
    let c = &f.core.counters;
    assert_eq!((c.sessions_refused_unauthorized_total, c.sessions_refused_bad_hello_total), (1, 2));
    assert_eq!(c.sessions_refused_overloaded_total, 1);
}

#[test]
fn a_closed_session_releases_its_clients_connection() {
    let limits = Limits { conns_per_client: 1, ..Limits::default() };
    let mut f = fixture(Auth::Open, limits, 16);
    let (s, _) = f.open("7", 0);
    f.core.close_session(s);
    let (s2, _) = f.open("7", 0);
    assert_ne!(s, s2, "a reused slot has a new generation");
    assert_eq!(f.core.phase(s), None);
}

#[test]
fn records_go_to_the_engine_and_transport_refusals_stay_in_place() {
    let mut f = fixture(Auth::Open, Limits::default(), 16);
    let (s, port) = f.open("7", 0);
    let frame = intents(7, 1..3);
    assert_eq!(f.core.handle_frame(s, Via::Datagram, frame.clone(), 99, f.now), FrameOutcome::Done);
    let item = f.frames.pop().unwrap();
    assert_eq!((item.session, item.rx_ns, item.via, item.records), (s, 99, Via::Datagram, 2));
    assert_eq!(item.frame, frame);
    assert!(item.transport.is_empty());
    // A record of another client in the middle: refused by the transport, in its place.
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, 4096);
    for (client_id, nonce) in [(7, 3), (8, 4), (7, 5)] {
        w.push_intent(&Intent { client_id, nonce, sent_ns: 0, profit: 1, priority: 0, keys: &[1] }).unwrap();
    }
    w.finish();
    f.core.handle_frame(s, Via::Stream, Bytes::from(buf), 100, f.now);
    let item = f.frames.pop().unwrap();
    let statuses: Vec<_> = item.transport.iter().map(|r| r.map(|r| r.status)).collect();
    assert_eq!(statuses, vec![None, Some(Err(Reason::ClientMismatch)), None]);
    assert_eq!(f.core.counters.records_client_mismatch_total, 1);
    assert_eq!(f.core.counters.records_forwarded_total, 4);
    f.core.flush();
    assert!(port.sent.borrow().is_empty(), "nothing answered yet: the engine answers");
}

#[test]
fn records_before_the_welcome_are_unauthorized_and_answered_at_once() {
    let mut f = fixture(Auth::Open, Limits::default(), 16);
    let port = Port::default();
    let s = f.core.open_session(Box::new(port.clone()), Rc::new(Notify::new()));
    f.core.handle_frame(s, Via::Datagram, intents(7, 1..3), 1, f.now);
    assert!(f.frames.pop().is_err(), "nothing reaches the engine");
    f.core.flush();
    assert_eq!(f.dgram_receipts(&port), vec![(1, Err(Reason::Unauthorized)), (2, Err(Reason::Unauthorized))]);
}

#[test]
fn a_full_ring_answers_datagrams_overloaded_and_holds_stream_frames() {
    let mut f = fixture(Auth::Open, Limits::default(), 1);
    let (s, port) = f.open("7", 0);
    f.core.handle_frame(s, Via::Datagram, intents(7, 1..2), 1, f.now);
    assert_eq!(f.core.handle_frame(s, Via::Datagram, intents(7, 2..4), 1, f.now), FrameOutcome::Done);
    assert_eq!(f.core.handle_frame(s, Via::Stream, intents(7, 4..5), 1, f.now), FrameOutcome::Wait);
    f.core.flush();
    assert_eq!(f.dgram_receipts(&port), vec![(2, Err(Reason::Overloaded)), (3, Err(Reason::Overloaded))]);
    assert_eq!(f.core.counters.records_overloaded_total, 2);
    assert_eq!(f.core.counters.stream_waits_total, 1);
    f.frames.pop().unwrap();
    assert_eq!(f.core.handle_frame(s, Via::Stream, intents(7, 4..5), 1, f.now), FrameOutcome::Done);
}

#[test]
fn the_token_bucket_refuses_past_the_burst_and_refills() {
    let limits = Limits { rate_per_s: 10, burst: 2, ..Limits::default() };
    let mut f = fixture(Auth::Open, limits, 16);
    let (s, _) = f.open("7", 0);
    f.core.handle_frame(s, Via::Stream, intents(7, 1..4), 1, f.now);
    let item = f.frames.pop().unwrap();
    let refused: Vec<_> = item.transport.iter().map(|r| r.map(|r| r.status)).collect();
    assert_eq!(refused, vec![None, None, Some(Err(Reason::RateLimited))]);
    // 100 ms later one token is back.
    f.core.handle_frame(s, Via::Stream, intents(7, 4..6), 1, f.now + Duration::from_millis(100));
    let refused: Vec<_> = f.frames.pop().unwrap().transport.iter().map(|r| r.map(|r| r.status)).collect();
    assert_eq!(refused, vec![None, Some(Err(Reason::RateLimited))]);
    assert_eq!(f.core.counters.records_rate_limited_total, 2);
}

#[test]
fn malformed_and_oversized_frames_are_refused_whole() {
    let limits = Limits { datagram_frame_max: 200, ..Limits::default() };
    let mut f = fixture(Auth::Open, limits, 16);
    let (s, port) = f.open("7", 0);
    let mut bad = intents(7, 1..2).to_vec();
    bad[0] = b'X';
    f.core.handle_frame(s, Via::Datagram, Bytes::from(bad.clone()), 1, f.now);
    f.core.handle_frame(s, Via::Datagram, intents(7, 1..5), 1, f.now);
    assert_eq!(
        f.core.handle_frame(s, Via::Stream, Bytes::from(bad), 1, f.now),
        FrameOutcome::Refused(Reason::BadMagic)
    );
    f.core.flush();
    assert_eq!(f.dgram_receipts(&port), vec![(0, Err(Reason::BadMagic)), (0, Err(Reason::Oversized))]);
    assert_eq!(receipts(&f.outbox(s)), vec![(0, Err(Reason::BadMagic))]);
    assert_eq!(f.core.counters.frames_refused_total, 3);
}

fn receipt(nonce: u64, window_id: u64) -> fpn_wire::Receipt {
    fpn_wire::Receipt {
        client_id: 7,
        nonce,
        seq: nonce,
        window_id,
        rx_ns: 1,
        status: Ok(()),
        for_kind: Some(fpn_wire::Kind::Intent),
    }
}

#[test]
fn engine_receipts_go_back_on_their_channel_and_fall_back_to_the_stream() {
    let mut f = fixture(Auth::Open, Limits::default(), 16);
    let (s, port) = f.open("7", 0);
    f.core.handle_answer(ToSession::Receipt { session: s, via: Via::Datagram, receipt: receipt(1, 3) });
    f.core.handle_answer(ToSession::Receipt { session: s, via: Via::Stream, receipt: receipt(2, 3) });
    f.core.flush();
    assert_eq!(f.dgram_receipts(&port), vec![(1, Ok(()))]);
    assert_eq!(receipts(&f.outbox(s)), vec![(2, Ok(()))]);
    *port.blocked.borrow_mut() = true;
    f.core.handle_answer(ToSession::Receipt { session: s, via: Via::Datagram, receipt: receipt(3, 3) });
    f.core.flush();
    assert_eq!(receipts(&f.outbox(s)), vec![(3, Ok(()))]);
    assert_eq!(f.core.counters.receipts_fallback_total, 1);
    // A receipt for a session that is gone is counted, not delivered.
    f.core.close_session(s);
    f.core.handle_answer(ToSession::Receipt { session: s, via: Via::Stream, receipt: receipt(4, 3) });
    assert_eq!(f.core.counters.receipts_orphaned_total, 1);
}

#[test]
fn windows_reach_sessions_with_records_in_them_and_subscribers() {
    let mut f = fixture(Auth::Open, Limits::default(), 16);
    let (with, _) = f.open("7", 0);
    let (without, _) = f.open("8", 0);
    let (all, _) = f.open("9", HELLO_SUBSCRIBE_ALL);
    f.core.handle_answer(ToSession::Receipt { session: with, via: Via::Stream, receipt: receipt(1, 5) });
    f.core.flush();
    f.outbox(with);
    f.core.handle_answer(ToSession::Window { window_id: 5, frame: Bytes::from_static(b"W5") });
    f.core.handle_answer(ToSession::Window { window_id: 6, frame: Bytes::from_static(b"W6") });
    f.core.handle_answer(ToSession::Proof { frame: Bytes::from_static(b"P") });
    f.core.flush();
    assert_eq!(f.outbox(with), b"W5");
    assert_eq!(f.outbox(without), b"");
    assert_eq!(f.outbox(all), b"W5W6P");
    assert_eq!((f.core.counters.windows_pushed_total, f.core.counters.proofs_pushed_total), (3, 1));
}

#[test]
fn a_result_stream_too_far_behind_closes_its_session() {
    let limits = Limits { result_backlog_max: 100, ..Limits::default() };
    let mut f = fixture(Auth::Open, limits, 16);
    let (s, _) = f.open("7", HELLO_SUBSCRIBE_ALL);
    f.core.handle_answer(ToSession::Proof { frame: Bytes::from(vec![0; 101]) });
    f.core.flush();
    assert_eq!(f.core.close_requested(s), Some(Some(Reason::SlowConsumer)));
    assert_eq!(f.core.counters.sessions_backlog_closed_total, 1);
    assert!(f.core.take_outbox(s, &mut Vec::new()).is_none(), "the writer stops");
}

#[test]
fn connection_limits_in_total_and_per_ip_and_retry_under_load() {
    let limits = Limits { conns_max: 3, conns_per_ip: 2, retry_above: 2, ..Limits::default() };
    let mut f = fixture(Auth::Open, limits, 16);
    let (a, b) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
    assert_eq!(f.core.open_connection(a, false), ConnAdmission::Accept);
    assert_eq!(f.core.open_connection(a, false), ConnAdmission::Accept);
    assert_eq!(f.core.open_connection(a, true), ConnAdmission::RefuseIp);
    // Two handshakes in flight: a new address must pass a Retry, a validated one not.
    assert_eq!(f.core.open_connection(b, false), ConnAdmission::Retry);
    assert_eq!(f.core.open_connection(b, true), ConnAdmission::Accept);
    assert_eq!(f.core.open_connection(b, true), ConnAdmission::RefuseMax);
    f.core.handshake_ended();
    f.core.close_connection(a, false);
    assert_eq!(f.core.open_connection(b, true), ConnAdmission::Accept);
    assert_eq!(f.core.counters.conns_open, 3);
    let c = &f.core.counters;
    assert_eq!((c.conns_accepted_total, c.conns_refused_ip_total, c.conns_refused_max_total), (4, 1, 1));
}

#[test]
fn no_hello_in_time_closes_the_session_unauthorized() {
    let mut f = fixture(Auth::Open, Limits::default(), 16);
    let s = f.core.open_session(Box::new(Port::default()), Rc::new(Notify::new()));
    assert_eq!(f.core.close_requested(s), None, "no close asked yet");
    f.core.hello_timeout(s);
    assert_eq!(f.core.close_requested(s), Some(Some(Reason::Unauthorized)));
    assert_eq!(f.core.counters.sessions_hello_timeout_total, 1);
    // An open session is not closed by a late timer.
    let (open, _) = f.open("7", 0);
    f.core.hello_timeout(open);
    assert_eq!(f.core.close_requested(open), None);
}
