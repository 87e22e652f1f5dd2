//! Sessions: the hello and its welcome, keys and connection limits, and the timers that end a
//! session (hello timeout, a refused session's linger, the idle timeout), to the nanosecond.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use fpn_wire::Reason;
use fpn_wire::session::reason_of_app_error;
use quinn_proto::ConnectionError;

use super::pair::{Pair, Rec, frame_of, intents_frame};
use crate::server::REFUSED_LINGER;
use crate::{Auth, Limits};

const MS: Duration = Duration::from_millis(1);

/// The application error reason `c`'s connection was closed with, if it was.
fn closed_with(pair: &Pair, c: usize) -> Option<Reason> {
    match pair.lost(c)? {
        ConnectionError::ApplicationClosed(close) => reason_of_app_error(close.error_code.into_inner()),
        other => panic!("lost otherwise: {other:?}"),
    }
}

fn keys() -> Auth {
    Auth::Keys(HashMap::from([(b"secret-9".to_vec(), 9u64)]))
}

#[test]
fn a_welcome_binds_the_client_and_states_the_limits() {
    let limits = Limits { rate_per_s: 100, burst: 50, datagram_frame_max: 1100, ..Limits::default() };
    let mut pair = Pair::new(keys(), limits);
    let c = pair.connect("secret-9");
    let welcome = pair.welcome(c).unwrap();
    assert_eq!(welcome.status, Ok(()));
    assert_eq!(
        (welcome.client_id, welcome.rate_per_s, welcome.burst, welcome.datagram_frame_max),
        (9, 100, 50, 1100)
    );
    assert_eq!(pair.server.counters.sessions_opened_total, 1);
}

#[test]
fn a_wrong_key_is_refused_and_closed_after_the_linger() {
    let mut pair = Pair::new(keys(), Limits::default());
    let c = pair.connect("secret-8");
    assert_eq!(pair.welcome(c).unwrap().status, Err(Reason::Unauthorized));
    // The connection stays open exactly REFUSED_LINGER, so the welcome can arrive first.
    pair.advance(REFUSED_LINGER - MS);
    assert!(pair.lost(c).is_none(), "closed before the linger ended");
    pair.advance(MS);
    assert_eq!(closed_with(&pair, c), Some(Reason::Unauthorized));
    assert_eq!(pair.server.counters.sessions_refused_unauthorized_total, 1);
}

#[test]
fn an_open_key_must_be_a_client_id() {
    let mut pair = Pair::open();
    for key in ["0", "x7", "123456789012345678901"] {
        let c = pair.connect(key);
        assert_eq!(pair.welcome(c).unwrap().status, Err(Reason::Unauthorized), "{key}");
    }
    let c = pair.connect("7");
    assert_eq!(pair.welcome(c).unwrap().client_id, 7);
}

#[test]
fn a_wrong_alpn_fails_the_handshake() {
    let mut pair = Pair::open();
    let mut options = pair.options("7");
    options.alpn = b"h3".to_vec();
    let c = pair.start(&options, Ipv4Addr::new(10, 0, 0, 2), true);
    assert!(pair.welcome(c).is_none());
    assert!(matches!(pair.lost(c), Some(ConnectionError::ConnectionClosed(_))), "{:?}", pair.lost(c));
    // The client's first Initial already fails TLS, inside `accept`: no connection is held.
    assert_eq!(pair.server.counters.handshakes_failed_total, 1);
    assert_eq!(pair.server.connections(), 0);
}

#[test]
fn a_second_connection_over_conns_per_client_is_refused_overloaded() {
    let limits = Limits { conns_per_client: 1, ..Limits::default() };
    let mut pair = Pair::new(keys(), limits);
    let first = pair.connect("secret-9");
    assert_eq!(pair.welcome(first).unwrap().status, Ok(()));
    let second = pair.connect("secret-9");
    assert_eq!(pair.welcome(second).unwrap().status, Err(Reason::Overloaded));
    pair.advance(REFUSED_LINGER);
    assert_eq!(closed_with(&pair, second), Some(Reason::Overloaded));
    assert_eq!(pair.server.counters.sessions_refused_overloaded_total, 1);
}

#[test]
fn a_closed_session_gives_its_client_slot_back() {
    let limits = Limits { conns_per_client: 1, ..Limits::default() };
    let mut pair = Pair::new(Auth::Open, limits);
    let a = pair.connect("5");
    pair.close(a);
    // The server holds the closed connection while it drains (three probe timeouts).
    assert_eq!(pair.server.connections(), 1);
    pair.advance(Duration::from_secs(1));
    assert_eq!((pair.server.connections(), pair.server.counters.conns_closed_total), (0, 1));
    let b = pair.connect("5");
    assert_eq!(pair.welcome(b).unwrap().status, Ok(()));
}

#[test]
fn a_connection_without_hello_is_closed_at_the_hello_timeout() {
    let limits = Limits { hello_timeout: Duration::from_secs(3), ..Limits::default() };
    let mut pair = Pair::new(Auth::Open, limits);
    let options = pair.options("1");
    let c = pair.start(&options, Ipv4Addr::new(10, 0, 0, 2), false);
    assert!(pair.client(c).is_connected());
    // Keep-alives every second do not keep a session without a hello open.
    pair.advance(Duration::from_secs(3) - MS);
    assert!(pair.lost(c).is_none());
    assert_eq!(pair.server.counters.sessions_hello_timeout_total, 0);
    pair.advance(MS);
    assert_eq!(closed_with(&pair, c), Some(Reason::Unauthorized));
    assert_eq!(pair.server.counters.sessions_hello_timeout_total, 1);
}

#[test]
fn records_before_the_welcome_are_refused_unauthorized() {
    let mut pair = Pair::open();
    let options = pair.options("1");
    let c = pair.start(&options, Ipv4Addr::new(10, 0, 0, 2), false);
    pair.send_datagram(c, &intents_frame(1, 0..3));
    pair.drive();
    let got = pair.receipts(c);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|g| g.status == Err(Reason::Unauthorized)), "{got:?}");
    assert_eq!(pair.server.counters.records_unauthorized_total, 3);
    assert_eq!(pair.engine.refused, 3);
}

#[test]
fn a_silent_client_times_out_after_exactly_the_idle_timeout() {
    let limits = Limits { idle_timeout: Duration::from_secs(5), ..Limits::default() };
    let mut pair = Pair::new(Auth::Open, limits);
    let c = pair.connect("3");
    pair.advance(Duration::from_millis(500));
    // The last exchange: a datagram in, its receipt out, both at this instant.
    pair.send_datagram(c, &intents_frame(3, 0..1));
    pair.drive();
    assert_eq!(pair.receipts(c).len(), 1);
    pair.cut_off(c);
    pair.advance(Duration::from_secs(5) - MS);
    assert_eq!(pair.server.counters.conns_idle_timeout_total, 0);
    pair.advance(MS);
    assert_eq!(pair.server.counters.conns_idle_timeout_total, 1);
}

#[test]
fn connection_limits_refuse_in_the_handshake_and_retry_validates_first() {
    // retry_above 0: every new client passes a Retry first (quinn's client follows it).
    let limits = Limits { retry_above: 0, conns_max: 3, conns_per_ip: 2, ..Limits::default() };
    let mut pair = Pair::new(Auth::Open, limits);
    let ip_a = Ipv4Addr::new(10, 0, 0, 2);
    for key in ["1", "2"] {
        let options = pair.options(key);
        let c = pair.start(&options, ip_a, true);
        assert_eq!(pair.welcome(c).unwrap().status, Ok(()));
    }
    // A third from the same IP is over conns_per_ip.
    let options = pair.options("3");
    let c = pair.start(&options, ip_a, true);
    assert!(matches!(pair.lost(c), Some(ConnectionError::ConnectionClosed(_))), "{:?}", pair.lost(c));
    // Another IP is welcome, until conns_max.
    let ip_b = Ipv4Addr::new(10, 0, 0, 3);
    let options = pair.options("4");
    let c = pair.start(&options, ip_b, true);
    assert_eq!(pair.welcome(c).unwrap().status, Ok(()));
    let options = pair.options("5");
    let c = pair.start(&options, ip_b, true);
    assert!(pair.lost(c).is_some());
    let counters = &pair.server.counters;
    assert_eq!((counters.conns_refused_ip_total, counters.conns_refused_max_total), (1, 1));
    assert_eq!(counters.retries_total, 3, "one for each accepted client: {counters:?}");
    assert_eq!(pair.server.connections(), 3);
}

#[test]
fn the_token_bucket_refills_at_its_rate() {
    let limits = Limits { rate_per_s: 100, burst: 50, ..Limits::default() };
    let mut pair = Pair::new(Auth::Open, limits);
    let c = pair.connect("9");
    let count = |got: &[super::pair::Got]| {
        let limited = got.iter().filter(|g| g.status == Err(Reason::RateLimited)).count();
        (got.len() - limited, limited)
    };
    let intents =
        |from: u64, n: u64| frame_of(9, &(from..from + n).map(Rec::Intent).collect::<Vec<_>>(), 1 << 16);
    // The burst, then nothing.
    pair.send_stream(c, &intents(0, 60));
    pair.drive();
    assert_eq!(count(&pair.receipts(c)), (50, 10));
    // 10 ms at 100/s is one record.
    pair.advance(Duration::from_millis(10));
    pair.send_stream(c, &intents(100, 2));
    pair.drive();
    assert_eq!(count(&pair.receipts(c)), (1, 1));
    // A second refills the bucket, but not past its burst.
    pair.advance(Duration::from_secs(1));
    pair.send_stream(c, &intents(200, 60));
    pair.drive();
    assert_eq!(count(&pair.receipts(c)), (50, 10));
    assert_eq!(pair.server.counters.records_rate_limited_total, 21);
}
