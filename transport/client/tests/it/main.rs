//! `fpn-client` against the minimal fpn/1 server of `fpn_testserver` (the offline engine behind quinn sessions), on loopback.
//!
//! Timeouts are generous (the machine is shared with other builds); nothing asserts a time.

use std::collections::HashMap;
use std::time::Duration;

use fpn_client::{
    Backoff, Bid, BlockingClient, Cancel, CancelTarget, Client, ClientConfig, ConnectError, Event, Events,
    Fingerprint, Intent, Kind, Reason, Receipt, Record, SendError, Trust, Via,
};
use fpn_testserver::{TestServer, TestServerConfig, ThreadedTestServer};

const WAIT: Duration = Duration::from_secs(60);

fn config(server_addr: std::net::SocketAddr, pin: Fingerprint, key: &str) -> ClientConfig {
    let mut config = ClientConfig::new(server_addr, Trust::Pin(pin), key);
    config.connect_timeout = Duration::from_secs(20);
    config.reconnect = Some(Backoff {
        delay_initial: Duration::from_millis(50),
        delay_max: Duration::from_millis(500),
        attempts_max: None,
    });
    config
}

async fn next_event(events: &mut Events) -> Event {
    tokio::time::timeout(WAIT, events.recv()).await.expect("an event in time").expect("events open")
}

/// Reads events until `n` receipts arrived; returns them keyed by (kind, nonce).
async fn receipts(events: &mut Events, n: usize) -> HashMap<(Option<Kind>, u64), (Receipt, Via)> {
    let mut out = HashMap::new();
    while out.len() < n {
        if let Event::Receipt { receipt, via } = next_event(events).await {
            out.insert((receipt.for_kind, receipt.nonce), (receipt, via));
        }
    }
    out
}

fn intents(client_id: u64, nonces: std::ops::Range<u64>, keys: &[u64]) -> Vec<Record<'_>> {
    nonces
        .map(|nonce| {
            Record::Intent(Intent { client_id, nonce, sent_ns: 0, profit: 100 + nonce, priority: 0, keys })
        })
        .collect()
}

#[tokio::test]
async fn hello_welcome_and_the_first_event() {
    let server = TestServer::start(TestServerConfig::default()).await.unwrap();
    let (client, mut events) =
        Client::connect(config(server.addr(), server.fingerprint(), "7")).await.unwrap();
    let session = client.session().expect("connected");
    assert_eq!(session.epoch, 0);
    assert_eq!(session.welcome.status, Ok(()));
    assert_eq!(session.welcome.client_id, 7);
    assert!(session.datagram_frame_max > 0 && session.datagram_frame_max <= 1200);
    assert_eq!(client.client_id(), Some(7));
    match next_event(&mut events).await {
        Event::Connected { epoch: 0, welcome } => assert_eq!(welcome.client_id, 7),
        other => panic!("{other:?}"),
    }
    client.close().await;
    assert_eq!(next_event(&mut events).await, Event::Closed { error: None });
    assert_eq!(client.send_datagram(b"x").await, Err(SendError::Closed));
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_key_is_a_typed_error() {
    let server = TestServer::start(TestServerConfig::default()).await.unwrap();
    for key in ["alice", "0"] {
        match Client::connect(config(server.addr(), server.fingerprint(), key)).await {
            Err(ConnectError::Refused(Reason::Unauthorized)) => {}
            other => panic!("key {key:?}: {other:?}"),
        }
    }
    assert!(matches!(
        Client::connect(config(server.addr(), server.fingerprint(), "")).await,
        Err(ConnectError::BadKey(0))
    ));
    server.shutdown().await;

    // A key table: listed keys get their client id, others are refused.
    let keys = HashMap::from([(b"k-alice".to_vec(), 11u64)]);
    let server = TestServer::start(TestServerConfig { keys: Some(keys), ..TestServerConfig::default() })
        .await
        .unwrap();
    let (client, _events) =
        Client::connect(config(server.addr(), server.fingerprint(), "k-alice")).await.unwrap();
    assert_eq!(client.client_id(), Some(11));
    let refused = Client::connect(config(server.addr(), server.fingerprint(), "11")).await;
    assert!(matches!(refused, Err(ConnectError::Refused(Reason::Unauthorized))), "{refused:?}");
    assert_eq!(server.stats().sessions_refused_total.load(std::sync::atomic::Ordering::Relaxed), 1);
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_close_without_a_welcome_still_gives_the_reason() {
    let config_server = TestServerConfig { welcome_on_refusal: false, ..TestServerConfig::default() };
    let server = TestServer::start(config_server).await.unwrap();
    match Client::connect(config(server.addr(), server.fingerprint(), "alice")).await {
        Err(ConnectError::Refused(Reason::Unauthorized)) => {}
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn datagram_frames_respect_the_welcome_limit() {
    let server =
        TestServer::start(TestServerConfig { datagram_frame_max: 300, ..TestServerConfig::default() })
            .await
            .unwrap();
    let (client, mut events) =
        Client::connect(config(server.addr(), server.fingerprint(), "7")).await.unwrap();
    assert_eq!(client.session().unwrap().datagram_frame_max, 300);
    // 56-byte intents, 5 to a 300-byte frame.
    let keys = [1u64];
    let records = intents(7, 1..21, &keys);
    assert_eq!(client.send_records(&records, Via::Datagram).await, Ok(4));
    let got = receipts(&mut events, 20).await;
    assert!(got.values().all(|(r, via)| r.status.is_ok() && *via == Via::Datagram));
    let frames = server.stats().frames_datagram_total.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(frames, 4);
    assert_eq!(client.send_datagram(&[0u8; 301]).await, Err(SendError::TooLarge { len: 301, max: 300 }));
    // A record larger than the limit cannot be sent as a datagram at all.
    let many: Vec<u64> = (0..40).collect();
    let big = intents(7, 100..101, &many);
    assert!(matches!(client.send_records(&big, Via::Datagram).await, Err(SendError::RecordTooLarge(_))));
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn datagram_records_get_datagram_receipts() {
    let server = TestServer::start(TestServerConfig::default()).await.unwrap();
    let (client, mut events) =
        Client::connect(config(server.addr(), server.fingerprint(), "7")).await.unwrap();
    let keys = [1u64, 2];
    let mut records = intents(7, 1..41, &keys);
    records.push(Record::Bid(Bid { client_id: 7, nonce: 41, sent_ns: 0, amount: 5, priority: 0 }));
    let frames = client.send_records(&records, Via::Datagram).await.unwrap();
    assert!(frames >= 2, "{frames} frames");
    let got = receipts(&mut events, records.len()).await;
    for r in &records {
        let (receipt, via) = got[&(Some(r.kind()), r.receipt_nonce())];
        assert_eq!(receipt.status, Ok(()), "{receipt:?}");
        assert_eq!(receipt.client_id, 7);
        assert!(receipt.seq > 0 && receipt.window_id > 0);
        assert_eq!(via, Via::Datagram);
    }
    // The same nonce again, someone else's client id, a zero profit: refused with reasons.
    let bad = [
        Record::Intent(Intent { client_id: 7, nonce: 1, sent_ns: 0, profit: 1, priority: 0, keys: &keys }),
        Record::Intent(Intent { client_id: 8, nonce: 100, sent_ns: 0, profit: 1, priority: 0, keys: &keys }),
        Record::Intent(Intent { client_id: 7, nonce: 101, sent_ns: 0, profit: 0, priority: 0, keys: &keys }),
        Record::Cancel(Cancel { client_id: 7, target: CancelTarget::Nonce(41) }),
    ];
    client.send_records(&bad, Via::Datagram).await.unwrap();
    let got = receipts(&mut events, 4).await;
    let status = |kind, nonce| got[&(Some(kind), nonce)].0.status;
    assert_eq!(status(Kind::Intent, 1), Err(Reason::DuplicateNonce));
    assert_eq!(status(Kind::Intent, 100), Err(Reason::ClientMismatch));
    assert_eq!(status(Kind::Intent, 101), Err(Reason::ZeroAmount));
    assert_eq!(status(Kind::Cancel, 41), Ok(()));
    // Oversized for a datagram: refused before sending.
    let big = vec![0u8; 1300];
    assert!(matches!(client.send_datagram(&big).await, Err(SendError::TooLarge { len: 1300, .. })));
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn stream_records_get_stream_receipts_in_order() {
    let server = TestServer::start(TestServerConfig::default()).await.unwrap();
    let (client, mut events) =
        Client::connect(config(server.addr(), server.fingerprint(), "9")).await.unwrap();
    let keys: Vec<u64> = (0..8).collect();
    let records = intents(9, 1..2001, &keys);
    let frames = client.send_records(&records, Via::Stream).await.unwrap();
    assert!(frames >= 2, "{frames} frames of at most 64 KiB");
    let mut nonces = Vec::new();
    while nonces.len() < records.len() {
        if let Event::Receipt { receipt, via } = next_event(&mut events).await {
            assert_eq!((receipt.status, via), (Ok(()), Via::Stream), "{receipt:?}");
            nonces.push(receipt.nonce);
        }
    }
    assert_eq!(nonces, (1..2001).collect::<Vec<_>>(), "stream receipts come in record order");

    // A frame refused whole: one receipt with kind 0, and the server stops the stream. The
    // next sends open a new stream.
    client.send_stream(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    loop {
        if let Event::Receipt { receipt, .. } = next_event(&mut events).await {
            assert_eq!((receipt.for_kind, receipt.status), (None, Err(Reason::BadMagic)));
            break;
        }
    }
    let after = intents(9, 3000..3001, &keys);
    let mut sent = false;
    for _ in 0..100 {
        match client.send_records(&after, Via::Stream).await {
            Ok(_) => {
                // The write may have raced the STOP_SENDING: a receipt proves it arrived.
                let got = tokio::time::timeout(Duration::from_secs(5), receipts(&mut events, 1)).await;
                if let Ok(got) = got {
                    assert_eq!(got[&(Some(Kind::Intent), 3000)].0.status, Ok(()));
                    sent = true;
                    break;
                }
            }
            Err(SendError::StreamStopped(reason)) => assert_eq!(reason, Some(Reason::BadMagic)),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(sent, "a record gets through on a new stream");
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_pin_mismatch_is_refused() {
    let server = TestServer::start(TestServerConfig::default()).await.unwrap();
    let wrong = Fingerprint::of_der(b"some other certificate");
    match Client::connect(config(server.addr(), wrong, "7")).await {
        Err(ConnectError::PinMismatch { expected, got }) => {
            assert_eq!(expected, wrong);
            assert_eq!(got, server.fingerprint());
        }
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_ca_file_authenticates_the_server() {
    let server = TestServer::start(TestServerConfig::default()).await.unwrap();
    let mut ca = config(server.addr(), server.fingerprint(), "7");
    ca.trust = Trust::CaPem(server.cert().cert_pem.clone());
    let (client, _events) = Client::connect(ca.clone()).await.unwrap();
    client.close().await;
    // The certificate does not name this server.
    ca.server_name = "elsewhere.example".to_string();
    assert!(Client::connect(ca.clone()).await.is_err());
    // Another CA.
    ca.server_name = "localhost".to_string();
    ca.trust = Trust::CaPem(fpn_testserver::TestCert::generate().cert_pem);
    assert!(Client::connect(ca).await.is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let server = TestServer::start(TestServerConfig::default()).await.unwrap();
    let addr = server.addr();
    let (client, mut events) = Client::connect(config(addr, server.fingerprint(), "7")).await.unwrap();
    assert!(matches!(next_event(&mut events).await, Event::Connected { epoch: 0, .. }));
    let keys = [5u64];
    client.send_records(&intents(7, 1..2, &keys), Via::Stream).await.unwrap();
    receipts(&mut events, 1).await;

    let cert = server.shutdown().await;
    match next_event(&mut events).await {
        Event::Disconnected { epoch: 0, .. } => {}
        other => panic!("{other:?}"),
    }
    assert!(client.session().is_none());
    assert_eq!(client.send_stream(b"x").await, Err(SendError::NotConnected));

    let server =
        TestServer::start(TestServerConfig { addr, cert: Some(cert), ..TestServerConfig::default() })
            .await
            .unwrap();
    loop {
        match next_event(&mut events).await {
            Event::Connected { epoch: 1, welcome } => {
                assert_eq!(welcome.client_id, 7);
                break;
            }
            Event::Disconnected { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(client.wait_connected(WAIT).await.unwrap().epoch, 1);
    // The restarted server forgot nonce 1; a resend is accepted on the new session.
    client.send_records(&intents(7, 1..3, &keys), Via::Stream).await.unwrap();
    let got = receipts(&mut events, 2).await;
    assert!(got.values().all(|(r, _)| r.status.is_ok()), "{got:?}");
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn without_reconnect_a_loss_closes_the_client() {
    let server = TestServer::start(TestServerConfig::default()).await.unwrap();
    let mut cfg = config(server.addr(), server.fingerprint(), "7");
    cfg.reconnect = None;
    let (client, mut events) = Client::connect(cfg).await.unwrap();
    assert!(matches!(next_event(&mut events).await, Event::Connected { .. }));
    server.shutdown().await;
    assert!(matches!(next_event(&mut events).await, Event::Disconnected { epoch: 0, .. }));
    assert!(matches!(next_event(&mut events).await, Event::Closed { error: Some(_) }));
    assert_eq!(client.wait_connected(Duration::from_secs(1)).await, Err(SendError::Closed));
}

#[tokio::test]
async fn subscribers_get_blocks_and_clearings() {
    let window = Some(Duration::from_millis(100));
    let server = TestServer::start(TestServerConfig { window, ..TestServerConfig::default() }).await.unwrap();
    let mut watch_cfg = config(server.addr(), server.fingerprint(), "1");
    watch_cfg.subscribe_all = true;
    let (watcher, mut watched) = Client::connect(watch_cfg).await.unwrap();
    let (client, mut events) =
        Client::connect(config(server.addr(), server.fingerprint(), "7")).await.unwrap();
    let keys = [1u64];
    let records = [
        Record::Intent(Intent { client_id: 7, nonce: 1, sent_ns: 0, profit: 500, priority: 0, keys: &keys }),
        Record::Bid(Bid { client_id: 7, nonce: 2, sent_ns: 0, amount: 900, priority: 0 }),
    ];
    client.send_records(&records, Via::Stream).await.unwrap();
    let got = receipts(&mut events, 2).await;
    let window_id = got[&(Some(Kind::Intent), 1)].0.window_id;
    // The submitter gets its window's result; the subscriber gets every window's.
    for events in [&mut events, &mut watched] {
        let (mut block, mut clearing) = (None, None);
        while block.is_none() || clearing.is_none() {
            match next_event(events).await {
                Event::Block(b) if b.summary.window_id == window_id => block = Some(b),
                Event::Clearing(c) if c.summary.window_id == window_id => clearing = Some(c),
                _ => {}
            }
        }
        let (block, clearing) = (block.unwrap(), clearing.unwrap());
        assert_eq!(block.summary.total, 500);
        assert_eq!(block.entries.len(), 1);
        assert_eq!(block.entries[0].client_id, 7);
        assert_eq!(clearing.winners.len(), 1);
        assert_eq!(clearing.winners[0].amount, 900);
    }
    client.close().await;
    watcher.close().await;
    server.shutdown().await;
}

#[test]
fn the_blocking_client_works_from_a_plain_thread() {
    let server = ThreadedTestServer::start(TestServerConfig::default()).unwrap();
    let client = BlockingClient::connect(config(server.addr(), server.fingerprint(), "3")).unwrap();
    assert_eq!(client.client_id(), Some(3));
    assert!(matches!(client.recv_event_timeout(WAIT), Some(Event::Connected { epoch: 0, .. })));
    let keys = [42u64];
    let records = intents(3, 1..11, &keys);
    client.send_records(&records[..5], Via::Datagram).unwrap();
    client.send_records(&records[5..], Via::Stream).unwrap();
    let mut seen = HashMap::new();
    while seen.len() < 10 {
        match client.recv_event_timeout(WAIT) {
            Some(Event::Receipt { receipt, via }) => {
                assert_eq!(receipt.status, Ok(()));
                seen.insert(receipt.nonce, via);
            }
            Some(_) => {}
            None => panic!("receipts missing: have {seen:?}"),
        }
    }
    assert_eq!(seen[&1], Via::Datagram);
    assert_eq!(seen[&10], Via::Stream);
    assert!(client.try_recv_event().is_none());
    client.close();
}

#[test]
fn client_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn check(client: &Client) {
        send(&client.send_datagram(b""));
        send(&client.send_stream(b""));
        send(&client.send_records(&[], Via::Stream));
        send(&client.wait_connected(WAIT));
        send(&client.close());
    }
    let _ = check;
    send(&Client::connect(ClientConfig::new(
        "127.0.0.1:1".parse().unwrap(),
        Trust::Pin(Fingerprint([0; 32])),
        "1",
    )));
}
