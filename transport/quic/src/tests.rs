//! The sans-IO server against the crate's blocking client over loopback UDP, with a toy
//! engine behind [`Admit`] and a minimal driver thread (the daemon's intake is the real one).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fpn_wire::session::{ALPN, HELLO_SUBSCRIBE_ALL, reason_of_app_error};
use fpn_wire::{Cancel, CancelTarget, FrameWriter, Intent, Reason, Receipt, RecordRef, decode_frame};
use quinn_proto::ConnectionError;

use crate::client::{Client, ClientOptions, Origin};
use crate::udp::{TimestampMode, UdpSocket};
use crate::{Admit, Auth, Limits, Server, ServerConfig};

/// Accepts every intent into window 1 with increasing seqs; cancels go "to the merger".
#[derive(Default)]
struct ToyEngine {
    /// Set by the test: the engine cannot take a frame.
    busy: Arc<AtomicBool>,
    seq: u64,
    refused: usize,
    late: Vec<Receipt>,
}

impl Admit for ToyEngine {
    fn ready(&mut self) -> bool {
        !self.busy.load(Ordering::Relaxed)
    }

    fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>) -> Option<Receipt> {
        assert!(self.ready(), "a record admitted while the engine is busy");
        let mut r = fpn_wire::Receipt::for_record(record, rx_ns);
        match record {
            RecordRef::Intent(i) => match i.validate() {
                Ok(()) => {
                    self.seq += 1;
                    r.seq = self.seq;
                    r.window_id = 1;
                }
                Err(reason) => r.status = Err(reason),
            },
            RecordRef::Cancel(_) => {
                r.status = Err(Reason::NotFound);
                self.late.push(r);
                return None;
            }
            _ => r.status = Err(Reason::UnknownKind),
        }
        Some(r)
    }

    fn refused(&mut self, _receipt: &Receipt) {
        self.refused += 1;
    }
}

struct Harness {
    addr: SocketAddr,
    pin: [u8; 32],
    stop: Arc<AtomicBool>,
    /// Set by the test: push a window result frame for window 1 (and answer late receipts).
    push_window: Arc<AtomicBool>,
    /// Set by the test: the toy engine's `ready` says no.
    busy: Arc<AtomicBool>,
    stats: Arc<Mutex<crate::Counters>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Harness {
    fn start(auth: Auth, limits: Limits) -> Harness {
        let dir = std::env::temp_dir().join(format!(
            "fpn-quic-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let identity = crate::tls::load_or_generate(&dir).unwrap();
        let pin = identity.sha256;
        let mut server =
            Server::new(&identity, ServerConfig { auth, limits, mtu_discovery: false }, Instant::now())
                .unwrap();
        let mut socket =
            UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, TimestampMode::Software).unwrap();
        let addr = socket.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let push_window = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(crate::Counters::default()));
        let thread = std::thread::spawn({
            let (stop, push_window, stats) = (stop.clone(), push_window.clone(), stats.clone());
            let busy = busy.clone();
            move || {
                let mut engine = ToyEngine { busy, ..ToyEngine::default() };
                let mut buf = Vec::with_capacity(64 * 1024);
                let local_ip = socket.local_ip();
                let mut inbox: Vec<(SocketAddr, Vec<u8>, u64)> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    socket.recv_batch(|| 1, |r| inbox.push((r.remote, r.data.to_vec(), r.rx_ns))).unwrap();
                    for (remote, data, rx_ns) in inbox.drain(..) {
                        server.handle_datagram(now, rx_ns, remote, local_ip, &data);
                        server.poll_records(now, &mut engine);
                    }
                    server.poll_records(now, &mut engine);
                    for r in engine.late.drain(..) {
                        server.handle_late_receipt(r);
                    }
                    if push_window.swap(false, Ordering::Relaxed) {
                        let mut frame = Vec::new();
                        let mut w = FrameWriter::new(&mut frame, u32::MAX as usize);
                        w.push_block(
                            &fpn_wire::BlockSummary {
                                window_id: 1,
                                total: 0,
                                fifo_total: 0,
                                surplus: 0,
                                fee: 0,
                                upper_bound: 0,
                                fee_ppm: 0,
                                builder: 0,
                                exact: true,
                            },
                            &[],
                        )
                        .unwrap();
                        w.finish();
                        server.handle_window(1, &frame);
                        // And window 1's proof, which only subscribe_all sessions get.
                        frame.clear();
                        let mut w = FrameWriter::new(&mut frame, u32::MAX as usize);
                        let proof = fpn_wire::ProofAnnounce {
                            window_first: 1,
                            window_last: 1,
                            job_id: 1,
                            proof: Some([5; 128]),
                        };
                        w.push_proof(&proof).unwrap();
                        w.finish();
                        server.handle_proof(&frame);
                        server.poll_records(now, &mut engine);
                    }
                    server.handle_timeouts(now);
                    while let Some(t) = server.poll_transmit(now, &mut buf) {
                        socket.send(t.destination, &buf[..t.size], t.segment_size).unwrap();
                    }
                    *stats.lock().unwrap() = server.counters.clone();
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        });
        Harness { addr, pin, stop, push_window, busy, stats, thread: Some(thread) }
    }

    fn options(&self, key: &str) -> ClientOptions {
        ClientOptions {
            pin: self.pin,
            alpn: ALPN.to_vec(),
            api_key: key.as_bytes().to_vec(),
            flags: 0,
            timeout: Duration::from_secs(20),
        }
    }

    fn counters(&self) -> crate::Counters {
        self.stats.lock().unwrap().clone()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn intents_frame(client_id: u64, nonces: std::ops::Range<u64>) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, fpn_wire::DATAGRAM_FRAME_LEN_MAX);
    for nonce in nonces {
        let keys = [nonce, nonce + 1_000_000];
        w.push_intent(&Intent { client_id, nonce, sent_ns: 1, profit: 10, priority: 0, keys: &keys })
            .unwrap();
    }
    w.finish();
    buf
}

/// Every receipt (nonce → status) until `want` arrived.
fn collect(client: &mut Client, want: usize) -> (HashMap<u64, Result<(), Reason>>, Vec<Origin>, usize) {
    let mut got = HashMap::new();
    let mut origins = Vec::new();
    let mut frames_whole = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() + frames_whole < want && Instant::now() < deadline {
        let Some((origin, frame)) = client.next_frame(Duration::from_millis(100)).unwrap() else { continue };
        origins.push(origin);
        for record in decode_frame(&frame).unwrap() {
            if let RecordRef::Receipt(r) = record {
                let status = match r.status {
                    0 => Ok(()),
                    c => Err(Reason::from_code(c).unwrap()),
                };
                if r.for_kind == 0 {
                    frames_whole += 1;
                    got.insert(u64::MAX - frames_whole as u64, status);
                } else {
                    got.insert(r.nonce.get(), status);
                }
            }
        }
    }
    (got, origins, frames_whole)
}

#[test]
fn datagram_and_stream_records_get_receipts_and_the_window() {
    let h = Harness::start(Auth::Open, Limits::default());
    let mut c = Client::connect(h.addr, &h.options("7")).unwrap();
    let welcome = c.welcome.unwrap();
    assert_eq!(welcome.status, Ok(()));
    assert_eq!(welcome.client_id, 7);
    // 200 datagram frames of 10 intents, then 100 stream frames of 10.
    for f in 0..200u64 {
        c.send_datagram(&intents_frame(7, f * 10..f * 10 + 10)).unwrap();
    }
    let (got, origins, _) = collect(&mut c, 2000);
    assert_eq!(got.len(), 2000, "{:?}", h.counters());
    assert!(got.values().all(|s| s.is_ok()));
    assert!(origins.contains(&Origin::Datagram));
    for f in 0..100u64 {
        c.send_stream(&intents_frame(7, 10_000 + f * 10..10_000 + f * 10 + 10)).unwrap();
    }
    let (got, origins, _) = collect(&mut c, 1000);
    assert_eq!(got.len(), 1000);
    assert!(origins.iter().all(|o| *o == Origin::ResultStream));
    // A cancel is answered late (the toy merger says not_found), on the stream it came by.
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, 1200);
    w.push_cancel(&Cancel { client_id: 7, target: CancelTarget::Nonce(5) }).unwrap();
    w.finish();
    c.send_datagram(&buf).unwrap();
    let (got, _, _) = collect(&mut c, 1);
    assert_eq!(got.get(&5), Some(&Err(Reason::NotFound)));
    // The window this session had records in comes on the result stream.
    h.push_window.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut block = false;
    while !block && Instant::now() < deadline {
        if let Some((origin, frame)) = c.next_frame(Duration::from_millis(100)).unwrap() {
            block = decode_frame(&frame).unwrap().any(|r| matches!(r, RecordRef::Block(_)));
            assert!(!block || origin == Origin::ResultStream);
        }
    }
    assert!(block, "block frame pushed");
    let counters = h.counters();
    assert!(counters.receipts_datagram_total >= 2000 - counters.receipts_fallback_total);
    c.close();
}

#[test]
fn a_busy_engine_answers_datagrams_overloaded_and_leaves_stream_frames_waiting() {
    let h = Harness::start(Auth::Open, Limits::default());
    let mut c = Client::connect(h.addr, &h.options("7")).unwrap();
    h.busy.store(true, Ordering::Relaxed);
    for f in 0..20u64 {
        c.send_datagram(&intents_frame(7, f * 10..f * 10 + 10)).unwrap();
    }
    let (got, _, _) = collect(&mut c, 200);
    assert_eq!(got.len(), 200, "every datagram record answered: {:?}", h.counters());
    assert!(got.values().all(|s| *s == Err(Reason::Overloaded)), "{got:?}");
    // Stream frames wait for the engine instead.
    for f in 0..5u64 {
        c.send_stream(&intents_frame(7, 1_000 + f * 10..1_000 + f * 10 + 10)).unwrap();
    }
    let waiting = collect_for(&mut c, Duration::from_millis(500));
    assert!(waiting.is_empty(), "stream records answered while busy: {waiting:?}");
    h.busy.store(false, Ordering::Relaxed);
    let (got, _, _) = collect(&mut c, 50);
    assert_eq!(got.len(), 50);
    assert!(got.values().all(|s| s.is_ok()));
    let counters = h.counters();
    assert_eq!(counters.records_overloaded_total, 200);
    c.close();
}

/// Every receipt that arrives within `wait`.
fn collect_for(client: &mut Client, wait: Duration) -> HashMap<u64, Result<(), Reason>> {
    let deadline = Instant::now() + wait;
    let mut got = HashMap::new();
    while Instant::now() < deadline {
        let Some((_, frame)) = client.next_frame(Duration::from_millis(50)).unwrap() else { continue };
        for record in decode_frame(&frame).unwrap() {
            if let RecordRef::Receipt(r) = record {
                got.insert(r.nonce.get(), Reason::from_code(r.status).map_or(Ok(()), Err));
            }
        }
    }
    got
}

#[test]
fn refusals_have_reasons() {
    let mut keys = HashMap::new();
    keys.insert(b"secret-9".to_vec(), 9u64);
    let limits = Limits { rate_per_s: 100, burst: 50, conns_per_client: 1, ..Limits::default() };
    let h = Harness::start(Auth::Keys(keys), limits);

    // Wrong key: refused welcome, then CONNECTION_CLOSE 0x100 + unauthorized.
    let mut bad = Client::connect(h.addr, &h.options("secret-8")).unwrap();
    assert_eq!(bad.welcome.unwrap().status, Err(Reason::Unauthorized));
    let deadline = Instant::now() + Duration::from_secs(20);
    while bad.lost().is_none() && Instant::now() < deadline {
        bad.drive(Duration::from_millis(10)).unwrap();
    }
    match bad.lost() {
        Some(ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(reason_of_app_error(close.error_code.into_inner()), Some(Reason::Unauthorized))
        }
        other => panic!("{other:?}"),
    }

    // Wrong ALPN: the handshake fails.
    let mut options = h.options("secret-9");
    options.alpn = b"h3".to_vec();
    assert!(Client::connect(h.addr, &options).is_err());

    let mut c = Client::connect(h.addr, &h.options("secret-9")).unwrap();
    assert_eq!(c.welcome.unwrap().status, Ok(()));
    assert_eq!(c.welcome.unwrap().client_id, 9);
    // A second connection of client 9 is over conns_per_client.
    let second = Client::connect(h.addr, &h.options("secret-9")).unwrap();
    assert_eq!(second.welcome.unwrap().status, Err(Reason::Overloaded));

    // Another client's id on this connection; a malformed frame; an oversized datagram.
    c.send_datagram(&intents_frame(8, 0..1)).unwrap();
    let mut bad_magic = intents_frame(9, 1..2);
    bad_magic[0] = b'X';
    c.send_datagram(&bad_magic).unwrap();
    let mut big = Vec::new();
    let mut w = FrameWriter::new(&mut big, 1300);
    for n in 0..100 {
        let keys = [n];
        if w.push_intent(&Intent {
            client_id: 9,
            nonce: 100 + n,
            sent_ns: 1,
            profit: 1,
            priority: 0,
            keys: &keys,
        })
        .is_err()
        {
            break;
        }
    }
    w.finish();
    assert!(big.len() > 1200);
    let sent_big = big.len() <= c.datagram_max();
    if sent_big {
        c.send_datagram(&big).unwrap();
    }
    let (got, _, whole) = collect(&mut c, if sent_big { 3 } else { 2 });
    assert_eq!(got.get(&0), Some(&Err(Reason::ClientMismatch)));
    assert!(whole >= 1);
    assert!(got.values().any(|s| *s == Err(Reason::BadMagic)));

    // Flooding: 400 records against a burst of 50 at 100/s.
    for f in 0..40u64 {
        c.send_stream(&intents_frame(9, 1000 + f * 10..1000 + f * 10 + 10)).unwrap();
    }
    let (got, _, _) = collect(&mut c, 400);
    let limited = got.values().filter(|s| **s == Err(Reason::RateLimited)).count();
    let ok = got.values().filter(|s| s.is_ok()).count();
    assert_eq!(limited + ok, 400);
    assert!(limited >= 250 && ok >= 50, "ok {ok} limited {limited}");

    // A stream with a bad frame is stopped with the reason.
    let mut garbage = vec![b'F', b'P', 1, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    garbage[8] = 4; // len 4 < header
    c.send_stream_once(&garbage).unwrap();
    let (got, _, _) = collect(&mut c, 1);
    assert!(got.values().any(|s| *s == Err(Reason::BadLength)), "{got:?}");
    let counters = h.counters();
    assert_eq!(counters.sessions_refused_unauthorized_total, 1);
    assert_eq!(counters.sessions_refused_overloaded_total, 1);
    assert!(counters.alpn_refused_total >= 1 || counters.handshakes_failed_total >= 1);
    assert!(counters.records_rate_limited_total >= 250);
    c.close();
}

#[test]
fn subscribe_all_gets_windows_without_records() {
    let h = Harness::start(Auth::Open, Limits::default());
    let mut options = h.options("3");
    options.flags = HELLO_SUBSCRIBE_ALL;
    let mut c = Client::connect(h.addr, &options).unwrap();
    let mut quiet = Client::connect(h.addr, &h.options("4")).unwrap();
    h.push_window.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut block, mut proof) = (false, false);
    while !(block && proof) && Instant::now() < deadline {
        if let Some((origin, frame)) = c.next_frame(Duration::from_millis(100)).unwrap() {
            assert_eq!(origin, Origin::ResultStream);
            for r in decode_frame(&frame).unwrap() {
                match r {
                    RecordRef::Block(_) => block = true,
                    RecordRef::Proof(p) => {
                        assert_eq!((p.window_first.get(), p.job_id.get(), p.proof), (1, 1, [5; 128]));
                        proof = true;
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(block && proof, "the window and its proof reach the subscriber");
    assert!(quiet.next_frame(Duration::from_millis(300)).unwrap().is_none());
    assert!(h.counters().proofs_pushed_total >= 1);
}

#[test]
fn retry_under_load_and_connection_limits() {
    // retry_above 0: every new client passes a Retry first (quinn's client follows it).
    let limits = Limits { retry_above: 0, conns_max: 2, conns_per_ip: 2, ..Limits::default() };
    let h = Harness::start(Auth::Open, limits);
    let a = Client::connect(h.addr, &h.options("1")).unwrap();
    assert_eq!(a.welcome.unwrap().status, Ok(()));
    let b = Client::connect(h.addr, &h.options("2")).unwrap();
    assert_eq!(b.welcome.unwrap().status, Ok(()));
    // A third connection from this IP is over both limits: refused in the handshake.
    let mut options = h.options("3");
    options.timeout = Duration::from_secs(5);
    assert!(Client::connect(h.addr, &options).is_err());
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.counters().conns_refused_max_total + h.counters().conns_refused_ip_total == 0
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let c = h.counters();
    assert!(c.retries_total >= 2, "{c:?}");
    assert_eq!(c.conns_refused_max_total + c.conns_refused_ip_total, 1, "{c:?}");
    a.close();
    b.close();
}

#[test]
fn a_closed_session_gives_its_client_slot_back() {
    let limits = Limits { conns_per_client: 1, ..Limits::default() };
    let h = Harness::start(Auth::Open, limits);
    let a = Client::connect(h.addr, &h.options("5")).unwrap();
    assert_eq!(a.welcome.unwrap().status, Ok(()));
    a.close();
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.counters().conns_closed_total < 1 {
        assert!(Instant::now() < deadline, "the closed connection was never removed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let b = Client::connect(h.addr, &h.options("5")).unwrap();
    assert_eq!(b.welcome.unwrap().status, Ok(()));
}

#[test]
fn a_connection_without_hello_is_closed() {
    let limits = Limits { hello_timeout: Duration::from_millis(300), ..Limits::default() };
    let h = Harness::start(Auth::Open, limits);
    let mut c = crate::client::Client::connect_without_hello(h.addr, &h.options("1")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.lost().is_none() && Instant::now() < deadline {
        c.drive(Duration::from_millis(10)).unwrap();
    }
    match c.lost() {
        Some(ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(reason_of_app_error(close.error_code.into_inner()), Some(Reason::Unauthorized))
        }
        other => panic!("{other:?}"),
    }
    // The driver thread publishes its counters after sending: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.counters().sessions_hello_timeout_total == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(h.counters().sessions_hello_timeout_total, 1);
}
