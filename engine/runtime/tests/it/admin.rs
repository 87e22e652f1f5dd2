use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fpn_runtime::admin::{AdminConfig, AdminServer, Method, Response, Router};
use fpn_runtime::metrics::{Counter, Labels, MetricDesc, MetricsHub};

static TEST_SUBMIT_TOTAL: MetricDesc = MetricDesc::counter("fpn_test_submit_total", "Test submissions.");

fn config() -> AdminConfig {
    let mut config = AdminConfig::new("127.0.0.1:0".parse().unwrap());
    config.connections_max = 4;
    config.head_bytes_max = 1024;
    config.body_bytes_max = 256;
    config.request_timeout = Duration::from_millis(500);
    config.write_timeout = Duration::from_millis(500);
    config
}

fn server_with(config: AdminConfig) -> AdminServer {
    let hub = Arc::new(MetricsHub::new());
    hub.describe(&[&TEST_SUBMIT_TOTAL]);
    let mut publisher = hub.register("builder-0");
    let mut submits = Counter::default();
    submits.add(3);
    publisher.publish(|s| s.counter(&TEST_SUBMIT_TOTAL, &Labels::none(), submits.get()));
    let router = Router::new()
        .route(Method::Get, "/metrics", {
            let hub = hub.clone();
            move |_| Response::prometheus(hub.render_prometheus())
        })
        .route(Method::Get, "/metrics/json", move |_| Response::json(200, hub.render_json()))
        .route(Method::Get, "/health/live", |_| Response::text(200, "live\n"))
        .route(Method::Post, "/submit", |r| {
            Response::text(202, format!("got {} bytes, query {:?}", r.body.len(), r.query))
        })
        .route(Method::Get, "/panic", |_| panic!("handler bug"));
    AdminServer::start(config, move |r| router.handle(r)).unwrap()
}

/// Sends raw bytes, half-closes, reads the whole answer.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn status(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

#[test]
fn routes_answer_over_loopback() {
    let server = server_with(config());
    let addr = server.local_addr();

    let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.contains("Content-Type: text/plain; version=0.0.4"), "{answer}");
    assert!(answer.contains("Connection: close\r\n"));
    assert!(body(&answer).contains("fpn_test_submit_total{shard=\"builder-0\"} 3\n"), "{answer}");
    let content_length: usize = answer
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert_eq!(content_length, body(&answer).len());

    let answer = exchange(addr, b"GET /metrics/json HTTP/1.1\r\n\r\n");
    let json: serde_json::Value = serde_json::from_str(body(&answer)).unwrap();
    assert!(json["metrics"].as_array().unwrap().iter().any(|m| m["name"] == "fpn_test_submit_total"));

    let answer = exchange(addr, b"POST /submit?dry=1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(status(&answer), 202, "{answer}");
    assert_eq!(body(&answer), "got 5 bytes, query Some(\"dry=1\")");

    // The body may arrive in pieces after the head.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"POST /submit HTTP/1.1\r\nContent-Length: 6\r\n\r\nab").unwrap();
    std::thread::sleep(Duration::from_millis(30));
    stream.write_all(b"cdef").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(body(&answer), "got 6 bytes, query None");

    assert_eq!(status(&exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n")), 404);
    let answer = exchange(addr, b"GET /submit HTTP/1.1\r\n\r\n");
    assert_eq!(status(&answer), 405);
    assert!(answer.contains("Allow: POST\r\n"));
    server.shutdown();
}

#[test]
fn bad_requests_are_refused_and_the_server_survives() {
    let server = server_with(config());
    let addr = server.local_addr();
    let big_head = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(2000));
    let cases: Vec<(&[u8], u16)> = vec![
        (b"garbage\r\n\r\n", 400),
        (b"\x00\x01\x02\xff\r\n\r\n", 400),
        (b"PUT / HTTP/1.1\r\n\r\n", 501),
        (b"POST /submit HTTP/1.1\r\n\r\n", 411),
        (b"POST /submit HTTP/1.1\r\nContent-Length: 257\r\n\r\n", 413),
        (b"POST /submit HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413),
        (b"POST /submit HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (big_head.as_bytes(), 431),
        (b"GET /panic HTTP/1.1\r\n\r\n", 500),
        (b"GET /health/live HTTP/1.1\r\n\r\nGET /health/live HTTP/1.1\r\n\r\n", 400),
    ];
    for (request, expected) in cases {
        let answer = exchange(addr, request);
        assert_eq!(status(&answer), expected, "{:?} -> {answer}", String::from_utf8_lossy(request));
    }
    assert_eq!(server.stats().handler_panic_total.load(Ordering::Relaxed), 1);

    // Arbitrary byte strings: every connection gets an answer or a close, never a crash.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200 {
        let mut bytes = Vec::new();
        for _ in 0..(state % 300) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push((state >> 24) as u8);
        }
        bytes.extend_from_slice(b"\r\n\r\n");
        let answer = exchange(addr, &bytes);
        let code = status(&answer);
        assert!(code == 0 || (400..600).contains(&code), "{answer}");
    }
    assert_eq!(status(&exchange(addr, b"GET /health/live HTTP/1.1\r\n\r\n")), 200);
    server.shutdown();
}

#[test]
fn slow_clients_time_out() {
    let server = server_with(config());
    let addr = server.local_addr();
    // A client that never finishes its head gets 408 after the request timeout (500 ms).
    let started = Instant::now();
    let answer = exchange_slow(addr, b"GET /health/live HTTP/1.1\r\n");
    assert_eq!(status(&answer), 408, "{answer}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(450) && waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(server.stats().refused_total.load(Ordering::Relaxed), 1);
    server.shutdown();
}

#[test]
fn connections_are_bounded() {
    // Long request timeout: the idle clients below must hold their slots while we look.
    let mut config = config();
    config.request_timeout = Duration::from_secs(10);
    let server = server_with(config);
    let addr = server.local_addr();

    // Fill every connection slot with idle clients; the next one is refused with 503.
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.connections_active() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(server.connections_active(), 4);
    let answer = exchange(addr, b"GET /health/live HTTP/1.1\r\n\r\n");
    assert_eq!(status(&answer), 503, "{answer}");
    assert_eq!(server.stats().busy_total.load(Ordering::Relaxed), 1);
    drop(idle);

    // Slots come back once the idle clients are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.connections_active() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.connections_active(), 0);
    assert_eq!(status(&exchange(addr, b"GET /health/live HTTP/1.1\r\n\r\n")), 200);
    server.shutdown();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(), "listener closed");
}

/// Sends a partial request and waits for the server to answer, without half-closing.
fn exchange_slow(addr: SocketAddr, partial: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(partial).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}
