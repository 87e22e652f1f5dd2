//! The demo: the endpoint with the test engine behind it, and the demo page on a page server.
//!
//! ```sh
//! cargo run -p fpn-webtransport --example serve
//! ```
//!
//! Then open the printed page URL in Chromium (any key is a client id in decimal: `open`
//! authentication). Ctrl-C stops it.

use std::time::Duration;

use fpn_webtransport::page::{DEMO_HTML, FPN_JS};
use fpn_webtransport::testing::{PageServer, TestEngineThread};
use fpn_webtransport::{Config, Endpoint, QueueConfig, queues};

fn main() {
    let (endpoint_side, engine_side) = queues(QueueConfig::default());
    let _engine = TestEngineThread::spawn(engine_side, Duration::from_millis(20));
    let endpoint = Endpoint::start(Config::default(), endpoint_side).expect("the endpoint starts");
    let info = endpoint.info();
    let config = format!("{},\"apiKey\":\"7\"}}", info.json().trim_end_matches('}'));
    let pages = PageServer::start(vec![
        ("/".into(), "text/html; charset=utf-8", DEMO_HTML.as_bytes().to_vec()),
        ("/fpn.js".into(), "text/javascript", FPN_JS.as_bytes().to_vec()),
        ("/config.json".into(), "application/json", config.into_bytes()),
    ])
    .expect("a page server");
    println!("WebTransport endpoint: {} (certificate SHA-256 {})", info.url, info.cert_sha256);
    println!("demo page:             {}", pages.url("/"));
    loop {
        std::thread::sleep(Duration::from_secs(10));
        let c = endpoint.counters();
        println!(
            "sessions {} open, {} frames in, {} receipts out",
            c.sessions_opened_total - c.sessions_closed_total,
            c.frames_datagram_total + c.frames_stream_total,
            c.receipts_datagram_total + c.receipts_stream_total
        );
    }
}
