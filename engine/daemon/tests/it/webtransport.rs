//! The WebTransport intake of the real daemon on loopback: a real browser (headless
//! Chromium) on the demo page the daemon's admin endpoint serves; book cancels answered by
//! the merger on the transport that sent them; records after SIGTERM answered
//! `shutting_down`. Chromium is Debian's `chromium` (or `FPN_CHROMIUM`); `.ci/run` installs it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fpn_client::Event;
use fpn_webtransport::client::{Client, ClientConfig};
use fpn_webtransport::testing::{Chromium, PageServer, SelfTest};
use fpn_wire::{Bid, Cancel, CancelTarget, FrameWriter, Intent, Reason};
use serde_json::Value;

use crate::daemon::{Daemon, config_text, metric_sum, scratch_dir};

/// A daemon with the WebTransport intake on a free port; `extra` is appended to the config.
fn start(name: &str, extra: &str) -> Daemon {
    let dir = scratch_dir(name);
    let text = format!(
        "{}\n[webtransport]\nenabled = true\nlisten = \"127.0.0.1:0\"\n\n{extra}\n",
        config_text(&dir.join("data"), 20, 1)
    );
    Daemon::start_text(dir, &text, &[])
}

/// `GET /webtransport`: the URL and the certificate hashes a page needs.
fn info(d: &Daemon) -> Value {
    let (code, body) = d.get("/webtransport");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("JSON")
}

/// A Rust client of the daemon's endpoint, pinned to the hash the admin endpoint serves.
fn client_config(d: &Daemon, key: &str) -> ClientConfig {
    let addr: SocketAddr = std::fs::read_to_string(d.dir.join("data/webtransport.addr"))
        .expect("webtransport.addr")
        .trim()
        .parse()
        .unwrap();
    let hash = info(d)["hashes"][0].as_str().expect("a hash").parse().expect("hex");
    ClientConfig::pinned(addr, hash, key)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Receipts (nonce → (status, seq)) until `done`, within 10 s.
async fn receipts_until(
    client: &mut Client,
    mut done: impl FnMut(&HashMap<u64, (Result<(), Reason>, u64)>) -> bool,
) -> HashMap<u64, (Result<(), Reason>, u64)> {
    let mut seen = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(&seen) {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(Event::Receipt { receipt, .. })) => {
                seen.insert(receipt.nonce, (receipt.status, receipt.seq));
            }
            Ok(Some(_)) => {}
            other => panic!("{other:?}; receipts so far {seen:?}"),
        }
    }
    seen
}

#[test]
fn chromium_on_the_daemons_demo_page_submits_over_datagrams_and_a_stream() {
    let started = Instant::now();
    let mut d = start("wt-browser", "");
    let info = info(&d);
    let url = info["url"].as_str().expect("url");
    assert!(url.starts_with("https://127.0.0.1:") && url.ends_with("/fpn/1"), "{info}");
    let hash = info["hashes"][0].as_str().expect("hash");
    assert_eq!(hash.len(), 64, "{info}");
    assert!(d.stderr().contains(&format!("WebTransport intake on {url}")), "{}", d.stderr());
    let (code, js) = d.get("/webtransport/fpn.js");
    assert_eq!((code, js.as_slice()), (200, fpn_webtransport::page::FPN_JS.as_bytes()));
    // The page posts its report to a server of this test (the daemon takes no such POST).
    let report = PageServer::start(Vec::new()).expect("a report server on loopback");
    let page =
        format!("http://{}/webtransport/demo?key=7#selftest=100&report={}", d.addr, report.url("/result"));
    let chromium = Chromium::open(&page);
    let posted = report.posted(Duration::from_secs(30)).expect("the page reported within 30 s");
    drop(chromium);
    let result = SelfTest::parse(&posted.body);
    result.assert_complete(100);
    // The page has every answer; the intake's counters can be a publish behind.
    let m = d.metrics_until(|m| {
        metric_sum(m, "fpn_webtransport_frames_refused_total") >= 2
            && metric_sum(m, "fpn_webtransport_streams_stopped_total") >= 1
            && metric_sum(m, "fpn_webtransport_intake_records_total") >= 200
    });
    assert_eq!(metric_sum(&m, "fpn_webtransport_sessions_opened_total"), 1, "{m}");
    assert_eq!(metric_sum(&m, "fpn_webtransport_intake_records_total"), 200, "{m}");
    assert_eq!(metric_sum(&m, "fpn_webtransport_frames_refused_total"), 2, "{m}");
    assert_eq!(metric_sum(&m, "fpn_webtransport_streams_stopped_total"), 1, "{m}");
    assert!(metric_sum(&m, "fpn_webtransport_windows_pushed_total") >= 1, "{m}");
    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());
    // The journal: each of the page's accepted intents in exactly one block.
    let mut in_journal: HashMap<u64, usize> = HashMap::new();
    for w in d.journal() {
        for e in w["block"]["entries"].as_array().unwrap() {
            *in_journal.entry(e["seq"].as_u64().unwrap()).or_default() += 1;
        }
    }
    for (nonce, _, seq, _) in &result.receipts {
        assert_eq!(in_journal.get(seq), Some(&1), "nonce {nonce} seq {seq}");
    }
    eprintln!(
        "daemon browser test: {:?} in all (daemon start, Chromium, 200 intents, drain); the page: {:.0} ms \
         from its first submit until every receipt and block; stream error code {}",
        started.elapsed(),
        result.json["elapsedMs"].as_f64().unwrap_or(0.0),
        result.json["streamErrorCode"],
    );
}

/// One frame of `client`'s bids, nonces `nonces`, under the reserve (they stay in the book).
fn bids(client: u64, nonces: std::ops::RangeInclusive<u64>) -> Vec<u8> {
    let mut frame = Vec::new();
    let mut w = FrameWriter::new(&mut frame, 1_200);
    for nonce in nonces {
        w.push_bid(&Bid { client_id: client, nonce, sent_ns: 1, amount: 10, priority: 1 }).unwrap();
    }
    w.finish();
    frame
}

fn cancels(client: u64, nonces: &[u64]) -> Vec<u8> {
    let mut frame = Vec::new();
    let mut w = FrameWriter::new(&mut frame, 1_200);
    for &n in nonces {
        w.push_cancel(&Cancel { client_id: client, target: CancelTarget::Nonce(n) }).unwrap();
    }
    w.finish();
    frame
}

/// The merger answers book cancels late, in the order the intake forwarded them, whichever
/// transport sent them: interleaved cancels from a WebTransport session and a raw QUIC
/// session each come back on their own session, with their own bids' seqs.
#[test]
fn book_cancels_over_webtransport_and_quic_come_back_on_their_own_sessions() {
    use fpn_quic::client::{Client as QuicClient, Origin};

    let mut d = start("wt-book-cancel", "[auction]\nreserve = 100\n");
    let (quic_addr, pin) = d.quic_endpoint();
    let options = crate::quic::options(pin, "42");
    let mut quic = QuicClient::connect(quic_addr, &options).unwrap();
    let config = client_config(&d, "41");
    runtime().block_on(async {
        let mut wt = Client::connect(&config).await.expect("a WebTransport session");
        wt.send_stream(&bids(41, 1..=10)).await.unwrap();
        let wt_bids = receipts_until(&mut wt, |r| r.len() == 10).await;
        assert!(wt_bids.values().all(|r| r.0.is_ok()), "{wt_bids:?}");
        quic.send_stream(&bids(42, 1..=10)).unwrap();
        let mut quic_bids = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while quic_bids.len() < 10 {
            assert!(Instant::now() < deadline, "QUIC bid receipts: {quic_bids:?}");
            if let Some((_, frame)) = quic.next_frame(Duration::from_millis(20)).unwrap() {
                for r in fpn_wire::decode_frame(&frame).unwrap() {
                    if let fpn_wire::RecordRef::Receipt(r) = r {
                        quic_bids.insert(r.nonce.get(), r.seq.get());
                    }
                }
            }
        }
        // Their window closes: the bids are open in the book.
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Interleaved: WebTransport, QUIC, WebTransport (a nonce never sent: not_found).
        wt.send_stream(&cancels(41, &[3])).await.unwrap();
        quic.send_stream(&cancels(42, &[7])).unwrap();
        wt.send_datagram(&cancels(41, &[9, 99])).await.unwrap();
        let wt_cancels = receipts_until(&mut wt, |r| r.len() == 3).await;
        assert_eq!(wt_cancels[&3], (Ok(()), wt_bids[&3].1), "the cancel names its bid's seq");
        assert_eq!(wt_cancels[&9], (Ok(()), wt_bids[&9].1));
        assert_eq!(wt_cancels[&99].0, Err(Reason::NotFound));
        let mut quic_cancel = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while quic_cancel.is_none() {
            assert!(Instant::now() < deadline, "no QUIC cancel receipt");
            let Some((origin, frame)) = quic.next_frame(Duration::from_millis(20)).unwrap() else { continue };
            for r in fpn_wire::decode_frame(&frame).unwrap() {
                if let fpn_wire::RecordRef::Receipt(r) = r {
                    assert_eq!(origin, Origin::ResultStream, "a stream record's receipt");
                    quic_cancel = Some((r.nonce.get(), r.status, r.seq.get()));
                }
            }
        }
        assert_eq!(quic_cancel, Some((7, 0, quic_bids[&7])));
        wt.close().await;
    });
    quic.close();
    let m = d.metrics_until(|m| metric_sum(m, "fpn_webtransport_late_receipts_total") >= 3);
    assert_eq!(metric_sum(&m, "fpn_webtransport_late_receipts_total"), 3, "{m}");
    assert_eq!(metric_sum(&m, "fpn_webtransport_late_receipts_orphaned_total"), 0, "{m}");
    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());
}

/// Records a WebTransport client keeps sending through SIGTERM: each answered, those after
/// the drain began `shutting_down` (and none accepted after the first of those); then the
/// endpoint closes the session.
#[test]
fn records_after_sigterm_are_answered_shutting_down() {
    let mut d = start("wt-drain", "");
    let config = client_config(&d, "43");
    let pid = d.pid() as i32;
    runtime().block_on(async {
        let mut client = Client::connect(&config).await.expect("a session");
        let mut statuses: Vec<(u64, Result<(), Reason>)> = Vec::new();
        let mut sent = 0u64;
        let started = Instant::now();
        let mut signalled = false;
        loop {
            if !signalled && started.elapsed() > Duration::from_millis(300) {
                // SAFETY: kill(2) on the daemon this test started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                signalled = true;
            }
            sent += 1;
            let keys = [43 << 40 | sent];
            let mut frame = Vec::new();
            let mut w = FrameWriter::new(&mut frame, 1_200);
            let intent =
                Intent { client_id: 43, nonce: sent, sent_ns: 1, profit: 5, priority: 0, keys: &keys };
            w.push_intent(&intent).unwrap();
            w.finish();
            if client.send_datagram(&frame).await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_micros(300), client.next_event()).await {
                Ok(Some(Event::Receipt { receipt, .. })) => statuses.push((receipt.nonce, receipt.status)),
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => break,
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the session outlived the daemon's drain");
        }
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), client.next_event()).await {
            if let Event::Receipt { receipt, .. } = e {
                statuses.push((receipt.nonce, receipt.status));
            }
        }
        statuses.sort_by_key(|s| s.0);
        let first_down = statuses.iter().position(|s| s.1 == Err(Reason::ShuttingDown));
        let first_down = first_down.unwrap_or_else(|| panic!("no shutting_down receipt: {statuses:?}"));
        assert!(statuses[..first_down].iter().all(|s| s.1.is_ok()), "{statuses:?}");
        let after: HashSet<_> = statuses[first_down..].iter().map(|s| s.1).collect();
        assert_eq!(after, HashSet::from([Err(Reason::ShuttingDown)]), "{statuses:?}");
        eprintln!(
            "drain: {} records sent, {} answered before the drain, {} answered shutting_down",
            sent,
            first_down,
            statuses.len() - first_down
        );
    });
    assert_eq!(d.terminate_wait(), Some(0), "{}", d.stderr());
}
