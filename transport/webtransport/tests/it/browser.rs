//! A real Chromium (headless) against the endpoint and the test engine, on loopback: the
//! demo page (`js/demo.html`, with `js/fpn.js`) from a page server, in its self-test mode,
//! posts what it saw back. The daemon's browser test runs the same page against the real
//! `flashpointd` (`engine/daemon/tests/it/webtransport.rs`). Needs Debian's `chromium`
//! package (or `FPN_CHROMIUM` naming a Chromium binary).

use std::time::{Duration, Instant};

use fpn_webtransport::page::{DEMO_HTML, FPN_JS};
use fpn_webtransport::testing::{Chromium, PageServer, Posted, SelfTest};
use fpn_webtransport::{Config, QueueConfig};

use super::util::start;

/// Serves the demo page at `/page.html` with `fpn.js` and `config.json`, opens it in
/// Chromium with `fragment` and returns what it posted, within `timeout`.
fn run_page(fragment: &str, config_json: String, timeout: Duration) -> Posted {
    let routes = vec![
        ("/page.html".to_string(), "text/html; charset=utf-8", DEMO_HTML.as_bytes().to_vec()),
        ("/fpn.js".to_string(), "text/javascript", FPN_JS.as_bytes().to_vec()),
        ("/config.json".to_string(), "application/json", config_json.into_bytes()),
    ];
    let pages = PageServer::start(routes).expect("a page server on loopback");
    let _chromium = Chromium::open(&pages.url(&format!("/page.html{fragment}")));
    pages.posted(timeout).unwrap_or_else(|| panic!("the page posted nothing within {timeout:?}"))
}

/// The endpoint's `EndpointInfo::json` with the API key added.
fn config_json(info: &fpn_webtransport::EndpointInfo, api_key: &str) -> String {
    let json = info.json();
    format!("{},\"apiKey\":\"{api_key}\"}}", json.trim_end_matches('}'))
}

#[test]
fn chromium_submits_over_datagrams_and_a_stream_and_gets_receipts_blocks_and_reasons() {
    let started = Instant::now();
    let running = start(Config::default(), QueueConfig::default());
    let info = running.endpoint.info();
    let posted = run_page("#selftest=100", config_json(&info, "7"), Duration::from_secs(30));
    let result = SelfTest::parse(&posted.body);
    result.assert_complete(100);
    // The endpoint publishes its counters every 100 ms: the page can see its last receipt first.
    running.wait_counters(Duration::from_secs(10), |c| {
        c.frames_refused_total >= 2 && c.streams_stopped_total >= 1
    });
    let c = running.endpoint.counters();
    assert_eq!((c.sessions_opened_total, c.frames_refused_total, c.streams_stopped_total), (1, 2, 1));
    eprintln!(
        "browser test: {:?} in all; stream error code {}; page: 200 receipts and their blocks in {:.0} ms, \
         datagram frames up to {} bytes",
        started.elapsed(),
        result.json["streamErrorCode"],
        result.json["elapsedMs"].as_f64().unwrap_or(0.0),
        result.json["datagramFrameMax"],
    );
}

#[test]
fn the_demo_page_connects_and_shows_its_intents_in_blocks() {
    let running = start(Config::default(), QueueConfig::default());
    let posted = run_page("#selftest", config_json(&running.endpoint.info(), "8"), Duration::from_secs(30));
    // The page's visible text once a block holds its intents (10 by default on each channel).
    let result = SelfTest::parse(&posted.body);
    let text = result.json["text"].as_str().expect("the page's text");
    assert!(text.contains("connected to https://127.0.0.1:"), "{text}");
    assert!(text.contains("as client 8"), "{text}");
    assert!(text.contains("(20 accepted, 2 refused)"), "{text}");
    assert!(text.contains("ours: seq"), "{text}");
}
