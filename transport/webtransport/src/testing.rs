//! For tests and the example (feature `testing`): a test engine behind [`EngineSide`], a
//! tiny HTTP/1.1 server for pages on loopback, a headless Chromium, and the check of what
//! the demo page's self-test reports. Neither is the engine nor a web server; the daemon's
//! browser test uses the last three against the real `flashpointd`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fpn_quic::Admit;
use fpn_wire::{
    BlockEntryWire, BlockSummary, ClearingSummary, FrameWriter, Reason, Receipt, RecordRef, validate_bid,
    validate_cancel,
};

use crate::engine::EngineSide;

/// Accepts every valid intent and bid with increasing sequence ids into the open window
/// (validated with `fpn-wire`, de-duplicated by (client, nonce)); a cancel is `not_found`. A
/// window's block holds all its intents in arrival order, with no conflict check.
#[derive(Debug)]
pub struct TestEngine {
    next_seq: u64,
    window_id: u64,
    seen: HashSet<(u64, u64)>,
    entries: Vec<BlockEntryWire>,
    /// While `false` the engine takes no frame (as a full window would).
    pub ready: bool,
    pub accepted: u64,
}

impl Default for TestEngine {
    fn default() -> TestEngine {
        TestEngine {
            next_seq: 1,
            window_id: 1,
            seen: HashSet::new(),
            entries: Vec::new(),
            ready: true,
            accepted: 0,
        }
    }
}

impl TestEngine {
    /// Closes the open window: its block and clearing frame (`None` if it had no intent).
    pub fn close_window(&mut self) -> Option<(u64, Bytes)> {
        let window_id = self.window_id;
        self.window_id += 1;
        if self.entries.is_empty() {
            return None;
        }
        let total = self.entries.iter().map(|e| e.profit.get()).sum();
        let block = BlockSummary {
            window_id,
            total,
            fifo_total: total,
            upper_bound: total,
            exact: true,
            ..Default::default()
        };
        let mut buf = Vec::new();
        let mut w = FrameWriter::new(&mut buf, u32::MAX as usize);
        w.push_block(&block, &self.entries).expect("a u32-sized frame");
        w.push_clearing(&ClearingSummary { window_id, ..Default::default() }, &[])
            .expect("a u32-sized frame");
        w.finish();
        self.entries.clear();
        Some((window_id, Bytes::from(buf)))
    }
}

impl Admit for TestEngine {
    fn ready(&mut self) -> bool {
        self.ready
    }

    fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>) -> Option<Receipt> {
        let mut receipt = Receipt::for_record(record, rx_ns);
        let checked = match record {
            RecordRef::Intent(i) => i.validate(),
            RecordRef::Bid(b) => validate_bid(b),
            RecordRef::Cancel(c) => validate_cancel(c).and(Err(Reason::NotFound)),
            _ => Err(Reason::UnknownKind),
        };
        let checked = checked.and_then(|()| {
            if self.seen.insert((receipt.client_id, receipt.nonce)) {
                Ok(())
            } else {
                Err(Reason::DuplicateNonce)
            }
        });
        match checked {
            Ok(()) => {
                receipt.seq = self.next_seq;
                receipt.window_id = self.window_id;
                self.next_seq += 1;
                self.accepted += 1;
                if let RecordRef::Intent(i) = record {
                    let profit = i.fixed.profit.get();
                    self.entries.push(BlockEntryWire::new(
                        receipt.seq,
                        receipt.client_id,
                        profit,
                        profit,
                        receipt.rx_ns,
                    ));
                }
            }
            Err(reason) => receipt.status = Err(reason),
        }
        Some(receipt)
    }

    fn refused(&mut self, _: &Receipt) {}
}

/// A [`TestEngine`] on a thread of its own, closing a window every `window`.
#[derive(Debug)]
pub struct TestEngineThread {
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    thread: Option<JoinHandle<(EngineSide, TestEngine)>>,
}

impl TestEngineThread {
    pub fn spawn(mut side: EngineSide, window: Duration) -> TestEngineThread {
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicBool::new(true));
        let (stop2, ready2) = (stop.clone(), ready.clone());
        let thread = std::thread::Builder::new()
            .name("fpn-wt-test-engine".into())
            .spawn(move || {
                let mut engine = TestEngine::default();
                let mut close_at = Instant::now() + window;
                while !stop2.load(Ordering::Acquire) {
                    engine.ready = ready2.load(Ordering::Acquire);
                    let took = side.poll_records(&mut engine);
                    if Instant::now() >= close_at {
                        close_at += window;
                        if let Some((id, frame)) = engine.close_window() {
                            side.handle_window(id, frame);
                        }
                    }
                    if !took {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                (side, engine)
            })
            .expect("spawning the test engine");
        TestEngineThread { stop, ready, thread: Some(thread) }
    }

    /// Whether the engine takes frames (`false`: its ring fills up).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Stops the thread; returns its side of the rings and the engine.
    pub fn stop(mut self) -> (EngineSide, TestEngine) {
        self.stop.store(true, Ordering::Release);
        self.thread.take().expect("running").join().expect("the test engine panicked")
    }
}

impl Drop for TestEngineThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request a [`PageServer`] answered with a POST body.
#[derive(Debug, Clone)]
pub struct Posted {
    pub path: String,
    pub body: String,
}

/// An HTTP/1.1 server on 127.0.0.1 for pages in tests: GET of a registered path answers its
/// body; a POST's body goes to [`PageServer::posted`]. One request per connection.
#[derive(Debug)]
pub struct PageServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    posted: mpsc::Receiver<Posted>,
}

type Routes = Arc<Mutex<Vec<(String, &'static str, Vec<u8>)>>>;

impl PageServer {
    /// Serves `routes`: (path, content type, body).
    pub fn start(routes: Vec<(String, &'static str, Vec<u8>)>) -> std::io::Result<PageServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, posted) = mpsc::channel();
        let routes: Routes = Arc::new(Mutex::new(routes));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new().name("fpn-wt-pages".into()).spawn(move || {
            while !stop2.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = serve_one(stream, &routes, &tx);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => break,
                }
            }
        })?;
        Ok(PageServer { addr, stop, thread: Some(thread), posted })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next POST, waiting up to `timeout`.
    pub fn posted(&self, timeout: Duration) -> Option<Posted> {
        self.posted.recv_timeout(timeout).ok()
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(stream: TcpStream, routes: &Routes, posted: &mpsc::Sender<Posted>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/").to_string());
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut stream = stream;
    if method == "POST" {
        let mut body = vec![0; length.min(1 << 20)];
        reader.read_exact(&mut body)?;
        let _ = posted.send(Posted { path, body: String::from_utf8_lossy(&body).into_owned() });
        return stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
    }
    let route = routes
        .lock()
        .expect("routes lock")
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, t, b)| (*t, b.clone()));
    match route {
        Some((content_type, body)) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body)
        }
        None => stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
    }
}

/// A headless Chromium showing one URL; killed with its process group, and its profile
/// removed, when dropped. The binary is `chromium` (Debian's package) or `$FPN_CHROMIUM`.
#[derive(Debug)]
pub struct Chromium {
    child: Child,
    profile: PathBuf,
}

impl Chromium {
    /// Opens `url` in a fresh profile.
    ///
    /// # Panics
    /// When Chromium cannot be started, naming the package to install.
    pub fn open(url: &str) -> Chromium {
        use std::os::unix::process::CommandExt;
        let binary = std::env::var("FPN_CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let profile = std::env::temp_dir().join(format!("fpn-chromium-{}-{nanos}", std::process::id()));
        let spawned = Command::new(&binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
            ])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        match spawned {
            Ok(child) => Chromium { child, profile },
            Err(e) => panic!(
                "cannot start {binary} ({e}): this test needs Chromium; install the Debian package `chromium` \
                 (apt-get install -y chromium) or set FPN_CHROMIUM to a Chromium binary"
            ),
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Chromium's renderer, GPU and network processes are in its process group.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// What the demo page's self-test (`#selftest=<n>`, `js/demo.html`) posted: `n` intents
/// over datagrams and `n` over a stream, then a frame with a bad magic on each channel.
#[derive(Debug, Clone)]
pub struct SelfTest {
    /// The whole report, as the page posted it.
    pub json: serde_json::Value,
    /// (nonce, status code, seq, via) of every intent's receipt, in nonce order.
    pub receipts: Vec<(u64, u8, u64, String)>,
    /// Seqs of our intents seen in blocks.
    pub in_blocks: HashSet<u64>,
    /// (reason code, via) of the receipts of frames refused whole.
    pub refusals: Vec<(u8, String)>,
}

impl SelfTest {
    /// Parses a self-test report.
    ///
    /// # Panics
    /// If it is not one, or the page reported a failure.
    pub fn parse(posted: &str) -> SelfTest {
        let json: serde_json::Value = serde_json::from_str(posted).expect("JSON from the page");
        assert_eq!(json["ok"], true, "the page failed: {json}");
        let list = |key: &str| json[key].as_array().unwrap_or_else(|| panic!("no {key}: {json}")).clone();
        let via = |v: &serde_json::Value| v["via"].as_str().expect("via").to_string();
        let num = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
        let mut receipts: Vec<_> = list("receipts")
            .iter()
            .map(|r| (num(r, "nonce"), num(r, "status") as u8, num(r, "seq"), via(r)))
            .collect();
        receipts.sort_by_key(|r| r.0);
        let in_blocks = list("inBlocks").iter().filter_map(serde_json::Value::as_u64).collect();
        let mut refusals: Vec<_> = list("refusals").iter().map(|r| (num(r, "code") as u8, via(r))).collect();
        refusals.sort();
        SelfTest { json, receipts, in_blocks, refusals }
    }

    /// Every one of the `n` + `n` intents accepted on the channel it was sent on (the first
    /// `n` nonces by datagram, the next `n` on the stream), every accepted seq in a published
    /// block, and the bad frame answered `bad_magic` (code 1) on both channels with the
    /// records stream stopped (Chromium's `streamErrorCode` is `0x100 + 1` when it reports
    /// one: a write still in flight may fail first with a plain `NetworkError`).
    ///
    /// # Panics
    /// On the first difference, with the report.
    pub fn assert_complete(&self, n: usize) {
        let json = &self.json;
        assert_eq!(self.receipts.len(), 2 * n, "{json}");
        for (i, (nonce, status, seq, via)) in self.receipts.iter().enumerate() {
            assert_eq!(*status, 0, "nonce {nonce} refused: {json}");
            let expected = if i < n { "datagram" } else { "stream" };
            assert_eq!(via, expected, "nonce {nonce}: {json}");
            assert!(self.in_blocks.contains(seq), "seq {seq} in no block: {json}");
        }
        let bad_magic = Reason::BadMagic.code();
        assert_eq!(
            self.refusals,
            [(bad_magic, "datagram".to_string()), (bad_magic, "stream".to_string())],
            "{json}"
        );
        assert_ne!(json["stopError"], "not stopped", "{json}");
        assert_ne!(json["stopError"], "closed", "{json}");
        if !json["streamErrorCode"].is_null() {
            assert_eq!(json["streamErrorCode"], 0x100 + u64::from(bad_magic), "{json}");
        }
    }
}
