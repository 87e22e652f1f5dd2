//! The sans-IO server behind the UDP driver, on a thread of its own, answering the blocking
//! client over loopback: the sockets, GSO transmits and timestamps together.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fpn_quic::client::{Client, ClientOptions, Origin};
use fpn_quic::udp::{TimestampMode, UdpSocket};
use fpn_quic::{Admit, Auth, Limits, Server, ServerConfig};
use fpn_wire::session::ALPN;
use fpn_wire::{FrameWriter, Intent, Receipt, RecordRef, decode_frame};

fn wall_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Accepts every intent into window 1.
struct Accept;

impl Admit for Accept {
    fn ready(&mut self) -> bool {
        true
    }

    fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>) -> Option<Receipt> {
        let mut r = Receipt::for_record(record, rx_ns);
        r.window_id = 1;
        Some(r)
    }

    fn refused(&mut self, _receipt: &Receipt) {}
}

fn intents_frame(client_id: u64, nonces: std::ops::Range<u64>) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, fpn_wire::DATAGRAM_FRAME_LEN_MAX);
    for nonce in nonces {
        let keys = [nonce];
        w.push_intent(&Intent { client_id, nonce, sent_ns: 1, profit: 10, priority: 0, keys: &keys })
            .unwrap();
    }
    w.finish();
    buf
}

/// The nonces and origins of every receipt until `want` came (or 10 s passed).
fn receipts(client: &mut Client, want: usize) -> Vec<(u64, u64, Origin)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < want && Instant::now() < deadline {
        let Some((origin, frame)) = client.next_frame(Duration::from_millis(100)).unwrap() else { continue };
        for record in decode_frame(&frame).unwrap() {
            if let RecordRef::Receipt(r) = record {
                got.push((r.nonce.get(), r.rx_ns.get(), origin));
            }
        }
    }
    got
}

#[test]
fn the_server_behind_the_driver_answers_the_blocking_client() {
    let identity = fpn_quic::tls::self_signed().unwrap();
    let config = ServerConfig { auth: Auth::Open, limits: Limits::default(), mtu_discovery: false };
    let mut server = Server::new(&identity, config, Instant::now()).unwrap();
    let mut socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, TimestampMode::Software).unwrap();
    let addr = socket.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let driver = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut buf = Vec::with_capacity(64 * 1024);
            let local_ip = socket.local_ip();
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                socket
                    .recv_batch(wall_ns, |r| {
                        server.handle_datagram(now, r.rx_ns, r.remote, local_ip, r.data);
                        server.poll_records(now, &mut Accept);
                    })
                    .unwrap();
                server.poll_records(now, &mut Accept);
                server.handle_timeouts(now);
                while let Some(t) = server.poll_transmit(now, &mut buf) {
                    socket.send(t.destination, &buf[..t.size], t.segment_size).unwrap();
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            socket.counters
        }
    });
    let options = ClientOptions {
        pin: identity.sha256,
        alpn: ALPN.to_vec(),
        api_key: b"7".to_vec(),
        flags: 0,
        timeout: Duration::from_secs(20),
    };
    let mut c = Client::connect(addr, &options).unwrap();
    assert_eq!(c.welcome.unwrap().status, Ok(()));
    for f in 0..50u64 {
        c.send_datagram(&intents_frame(7, f * 10..f * 10 + 10)).unwrap();
    }
    c.send_stream(&intents_frame(7, 1_000..1_010)).unwrap();
    let got = receipts(&mut c, 510);
    assert_eq!(got.len(), 510, "{got:?}");
    let by_stream: Vec<u64> = got.iter().filter(|g| g.2 == Origin::ResultStream).map(|g| g.0).collect();
    assert!(by_stream.iter().copied().eq(1_000..1_010), "{by_stream:?}");
    // Receive times are wall-clock ns (the kernel's stamps, or the read time until the kernel
    // turned stamping on), carried from the socket to the receipt.
    assert!(got.iter().all(|g| g.1 > 1_000_000_000_000_000_000), "{got:?}");
    c.close();
    stop.store(true, Ordering::Relaxed);
    let counters = driver.join().unwrap();
    assert!(counters.rx_software_total > 0 && counters.send_calls_total > 0, "{counters:?}");
}
