//! After READY the hot roles' loops (intake, builder shards, merger, and the input log's
//! role: its encoding, group commits and durable positions) do not allocate: the daemon runs
//! in this process under a counting allocator that counts allocations made while a hot loop
//! body runs (`flashpointd::run::alloc_probe`), while frames go through the submit path, get
//! logged and acknowledged once on disk, and windows close, build, clear and reach the
//! journal. (A log segment's rotation allocates, once per segment, outside the probe.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flashpointd::config::LogSync;
use flashpointd::run::alloc_probe;

use crate::daemon::{frames, http, metric_sum};
use crate::inproc::InProcess;

struct Counting;

static HOT_ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to `System` unchanged; counting reads a const thread-local
// and bumps an atomic, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if alloc_probe::is_hot() {
            HOT_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if alloc_probe::is_hot() {
            HOT_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if alloc_probe::is_hot() {
            HOT_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Frames of at most `len_max` bytes holding `n` intents of `client` from nonce `first`, one
/// key each (their nonce).
fn intent_frames(client: u64, first: u64, n: u64, len_max: usize) -> Vec<Vec<u8>> {
    let (mut out, mut nonce) = (Vec::new(), first);
    while nonce < first + n {
        let mut buf = Vec::new();
        let mut w = fpn_wire::FrameWriter::new(&mut buf, len_max);
        while nonce < first + n {
            let keys = [nonce];
            let i = fpn_wire::Intent {
                client_id: client,
                nonce,
                sent_ns: 1,
                profit: 1,
                priority: 0,
                keys: &keys,
            };
            if w.push_intent(&i).is_err() {
                break;
            }
            nonce += 1;
        }
        w.finish();
        out.push(buf);
    }
    out
}

#[test]
fn hot_loops_do_not_allocate_after_ready() {
    // The probe counts: an allocation inside a marked stretch is seen.
    let before = HOT_ALLOCS.load(Ordering::Relaxed);
    alloc_probe::enter();
    let b = std::hint::black_box(Box::new([0u8; 64]));
    alloc_probe::leave();
    drop(b);
    assert!(HOT_ALLOCS.load(Ordering::Relaxed) > before, "the counting allocator sees hot allocations");

    // Both ways the log role waits for a group commit (`log.sync`, docs/log.md): polled
    // (what `auto` gives this map, the log on a CPU of its own) and waited for inline.
    for sync in [LogSync::Poll, LogSync::Wait] {
        let (mut settings, data) = crate::inproc::settings(&format!("no-alloc-{sync:?}"), 5, 2);
        settings.log.sync = sync;
        hot_loops_stay_allocation_free(settings, data, sync);
    }
}

fn hot_loops_stay_allocation_free(
    settings: flashpointd::config::Settings,
    data: std::path::PathBuf,
    sync: LogSync,
) {
    let mut d = InProcess::start(settings, data);
    let addr = d.addr.clone();
    // Let the first windows close and the first result go round the pool once.
    std::thread::sleep(Duration::from_millis(100));

    let before = HOT_ALLOCS.load(Ordering::Relaxed);
    let input = frames(3, 60, 100, true);
    for (frame, _) in &input {
        let (status, _) = http(&addr, "POST", "/submit?format=json", frame);
        assert_eq!(status, 200);
    }
    // Windows of 5 ms: many close, build, clear and get journaled meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    let after = HOT_ALLOCS.load(Ordering::Relaxed);

    let metrics = d.metrics_until(|m| {
        metric_sum(m, "fpn_intake_frames_total") == input.len() as u64
            && metric_sum(m, "fpn_merger_windows_published_total") > 10
            && metric_sum(m, "fpn_log_entries_total") > input.len() as u64
    });
    let result = d.stop();
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(metric_sum(&metrics, "fpn_intake_frames_total"), input.len() as u64, "the loops did the work");
    assert!(metric_sum(&metrics, "fpn_merger_windows_published_total") > 10);
    assert!(metric_sum(&metrics, "fpn_log_entries_total") > input.len() as u64, "the log wrote the records");
    assert_eq!(
        metric_sum(&metrics, "fpn_log_sync_wait"),
        u64::from(sync == LogSync::Wait),
        "log.sync {sync:?}"
    );
    assert_eq!(after - before, 0, "allocations in hot loops after READY (log.sync {sync:?})");
}

/// The QUIC path is not allocation-free: quinn-proto takes each UDP datagram as an owned
/// `BytesMut` (the server copies it in), hands DATAGRAM payloads and stream chunks out as
/// `Bytes`, and queues outgoing datagrams as `Bytes`; its connection state grows vectors on
/// the way. This measures the allocations in the hot loops per record over QUIC after READY
/// (printed), and fails only on an order-of-magnitude regression.
#[test]
fn quic_path_allocations_per_record_are_measured() {
    use fpn_quic::client::{Client, ClientOptions};

    let (settings, data) = crate::inproc::settings("no-alloc-quic", 5, 1);
    let d = InProcess::start(settings, data);
    let addr = std::fs::read_to_string(d.data.join("quic.addr")).unwrap().trim().parse().unwrap();
    let pin = std::fs::read_to_string(d.data.join("tls/cert.sha256")).unwrap();
    let options = ClientOptions {
        pin: fpn_quic::tls::parse_pin(&pin).unwrap(),
        alpn: fpn_wire::session::ALPN.to_vec(),
        api_key: b"5".to_vec(),
        flags: 0,
        timeout: Duration::from_secs(30),
    };
    let mut c = Client::connect(addr, &options).unwrap();
    let intents = |first, n, len_max| intent_frames(5, first, n, len_max);
    let receipts = |c: &mut Client, want: usize| {
        let mut got = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while got < want && std::time::Instant::now() < deadline {
            if let Some((_, f)) = c.next_frame(Duration::from_millis(20)).unwrap() {
                got += fpn_wire::decode_frame(&f)
                    .unwrap()
                    .filter(|r| matches!(r, fpn_wire::RecordRef::Receipt(_)))
                    .count();
            }
        }
        got
    };
    // Warm the connection up (handshake, MTU, first windows).
    for f in intents(1, 200, 1_200) {
        c.send_datagram(&f).unwrap();
    }
    assert_eq!(receipts(&mut c, 200), 200);
    std::thread::sleep(Duration::from_millis(100));

    for (what, datagram, len_max) in [("datagram", true, 1_200), ("stream", false, 16 * 1024)] {
        let first = if datagram { 10_000 } else { 20_000 };
        let frames = intents(first, 2_000, len_max);
        let before = HOT_ALLOCS.load(Ordering::Relaxed);
        for f in &frames {
            if datagram { c.send_datagram(f).unwrap() } else { c.send_stream(f).unwrap() }
        }
        assert_eq!(receipts(&mut c, 2_000), 2_000);
        let allocs = HOT_ALLOCS.load(Ordering::Relaxed) - before;
        eprintln!(
            "QUIC {what}: {allocs} allocations in hot loops for 2000 records in {} frames ({:.2} per record, {:.1} per frame)",
            frames.len(),
            allocs as f64 / 2_000.0,
            allocs as f64 / frames.len() as f64
        );
        assert!(allocs < 2_000 * 50, "{allocs} allocations for 2000 records");
    }
    c.close();
}

/// The WebTransport path on intake 0: the endpoint's own thread allocates (tokio, quinn and
/// h3, off the pinned executors and outside the probe), intake 0 does not per record: it
/// takes each frame off one ring and answers over another. It copies each published window
/// once for the endpoint's thread, so the bound is per window: with 100 ms windows, a few
/// dozen against the 4,000 records sent.
#[test]
fn webtransport_path_allocates_per_window_not_per_record() {
    use fpn_client::Event;
    use fpn_webtransport::client::{Client, ClientConfig};

    let (mut settings, data) = crate::inproc::settings("no-alloc-wt", 100, 1);
    settings.webtransport.enabled = true;
    settings.webtransport.listen = "127.0.0.1:0".parse().unwrap();
    let d = InProcess::start(settings, data);
    let wt_addr = std::fs::read_to_string(d.data.join("webtransport.addr")).unwrap().trim().parse().unwrap();
    let info: serde_json::Value =
        serde_json::from_slice(&http(&d.addr, "GET", "/webtransport", b"").1).unwrap();
    let hash = info["hashes"][0].as_str().unwrap().parse().unwrap();
    let config = ClientConfig::pinned(wt_addr, hash, "6");
    let intents = |first, n, len_max| intent_frames(6, first, n, len_max);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = Client::connect(&config).await.expect("a session");
        let receipts = async |c: &mut Client, want: usize| {
            let mut got = 0;
            while got < want {
                let e = tokio::time::timeout(Duration::from_secs(30), c.next_event()).await;
                if let Event::Receipt { receipt, .. } = e.expect("receipts within 30 s").expect("the session is open")
                {
                    assert_eq!(receipt.status, Ok(()), "{receipt:?}");
                    got += 1;
                }
            }
        };
        // Warm up: the session, the first windows, the result pool.
        for f in intents(1, 200, 1_100) {
            c.send_datagram(&f).await.unwrap();
        }
        receipts(&mut c, 200).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (datagrams, stream) = (intents(10_000, 2_000, 1_100), intents(20_000, 2_000, 16 * 1024));
        let started = std::time::Instant::now();
        let before = HOT_ALLOCS.load(Ordering::Relaxed);
        for f in &datagrams {
            c.send_datagram(f).await.unwrap();
        }
        for f in &stream {
            c.send_stream(f).await.unwrap();
        }
        receipts(&mut c, 4_000).await;
        let allocs = HOT_ALLOCS.load(Ordering::Relaxed) - before;
        let windows = started.elapsed().as_millis() as u64 / 100 + 2;
        eprintln!(
            "WebTransport: {allocs} allocations in hot loops for 4000 records in {} frames, about {windows} windows",
            datagrams.len() + stream.len()
        );
        assert!(allocs <= 2 * windows, "{allocs} allocations in hot loops for 4000 records, ~{windows} windows");
        c.close().await;
    });
}
