//! A minimal `fpn/1` server for tests (feature `testing`; never in production builds).
//!
//! It speaks the session of `docs/transport.md` with quinn: checks the hello (open mode: the
//! key is the client id in decimal, or a fixed key table), sends the welcome (or refuses with
//! a welcome and CONNECTION_CLOSE `0x100 + reason`), opens the result stream, and answers
//! every record with one receipt: datagram records in receipt datagrams, stream records on
//! the result stream. It checks what the engine checks at the door (frame structure, record
//! content, the connection's client id, duplicate nonces) and accepts everything else into
//! one window. With [`TestServerConfig::window`] set it publishes a block (the window's
//! intents, first come first served on keys) and a clearing (every bid wins at its amount)
//! to the sessions that had records in the window and to every `subscribe_all` session.
//!
//! It is not the engine: no packing economics, no limits, no rate limiting.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fpn_wire::session::{Hello, HelloError, Welcome, app_error};
use fpn_wire::{
    BlockEntryWire, BlockSummary, CANCEL_BY_NONCE, ClearingSummary, FRAME_HEADER_LEN, FrameWriter, Reason,
    Receipt, RecordRef, WinnerWire, decode_frame, peek_frame_len, validate_bid, validate_cancel,
};
use quinn::VarInt;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::Mutex as AsyncMutex;

use crate::tls::{Fingerprint, provider};

/// A self-signed certificate for `localhost` and `127.0.0.1`.
#[derive(Debug, Clone)]
pub struct TestCert {
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    pub key_der: Vec<u8>,
}

impl TestCert {
    pub fn generate() -> TestCert {
        let key = rcgen::KeyPair::generate().expect("key generation");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("certificate names");
        let cert = params.self_signed(&key).expect("self-signed certificate");
        TestCert { cert_der: cert.der().to_vec(), cert_pem: cert.pem(), key_der: key.serialize_der() }
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(&self.cert_der)
    }
}

#[derive(Debug, Clone)]
pub struct TestServerConfig {
    /// `127.0.0.1:0` picks a free port.
    pub addr: SocketAddr,
    /// `None`: a fresh certificate.
    pub cert: Option<TestCert>,
    /// `None`: open mode (the key is the client id in decimal, ≥ 1). Else key → client id.
    pub keys: Option<HashMap<Vec<u8>, u64>>,
    /// The welcome's largest datagram frame (capped by the path).
    pub datagram_frame_max: u16,
    /// Publish a window result this often; `None`: never.
    pub window: Option<Duration>,
    /// Refuse with a welcome and then CONNECTION_CLOSE (the protocol), or with the
    /// CONNECTION_CLOSE alone (what a client sees when the welcome is lost to the close).
    pub welcome_on_refusal: bool,
    /// Lose every Nth datagram from the client (before reading it) and every Nth receipt
    /// datagram to it, as a lossy path would; 0: lose nothing.
    pub datagram_loss_every: u64,
}

impl Default for TestServerConfig {
    fn default() -> TestServerConfig {
        TestServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            cert: None,
            keys: None,
            datagram_frame_max: fpn_wire::DATAGRAM_FRAME_LEN_MAX as u16,
            window: None,
            welcome_on_refusal: true,
            datagram_loss_every: 0,
        }
    }
}

/// What the server saw, for assertions.
#[derive(Debug, Default)]
pub struct TestServerStats {
    pub sessions_total: AtomicU64,
    pub sessions_refused_total: AtomicU64,
    pub frames_datagram_total: AtomicU64,
    pub frames_stream_total: AtomicU64,
    pub records_accepted_total: AtomicU64,
    pub windows_published_total: AtomicU64,
}

#[derive(Debug, Default)]
struct Window {
    id: u64,
    intents: Vec<(u64, u64, u64, Vec<u64>)>,
    bids: Vec<(u64, u64, u64)>,
    clients: HashSet<u64>,
}

#[derive(Debug)]
struct SessionHandle {
    client_id: u64,
    subscribe_all: bool,
    results: Arc<AsyncMutex<quinn::SendStream>>,
}

#[derive(Debug)]
struct State {
    keys: Option<HashMap<Vec<u8>, u64>>,
    datagram_frame_max: u16,
    welcome_on_refusal: bool,
    datagram_loss_every: u64,
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    seq_next: AtomicU64,
    /// (client, nonce) → seq of every accepted intent or bid, and whether it is open.
    records: Mutex<HashMap<(u64, u64), (u64, bool)>>,
    window: Mutex<Window>,
    sessions: Mutex<HashMap<usize, SessionHandle>>,
    stats: Arc<TestServerStats>,
}

/// A running test server on tokio. [`TestServer::shutdown`] closes every connection; a new
/// server on the same address and certificate is a restart.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    cert: TestCert,
    endpoint: quinn::Endpoint,
    tasks: tokio::task::JoinSet<()>,
    stats: Arc<TestServerStats>,
}

impl TestServer {
    /// Binds (retrying for a while if the address is still held by a server that just shut
    /// down) and starts accepting.
    pub async fn start(config: TestServerConfig) -> std::io::Result<TestServer> {
        let cert = config.cert.clone().unwrap_or_else(TestCert::generate);
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone())),
            )
            .map_err(std::io::Error::other)?;
        tls.alpn_protocols = vec![fpn_wire::session::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls))
            .map_err(std::io::Error::other)?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(2)));
        server_config.transport_config(Arc::new(transport));

        let mut bind_error = None;
        let mut endpoint = None;
        for _ in 0..100 {
            match quinn::Endpoint::server(server_config.clone(), config.addr) {
                Ok(e) => {
                    endpoint = Some(e);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    bind_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
        let Some(endpoint) = endpoint else { return Err(bind_error.expect("a bind error")) };
        let addr = endpoint.local_addr()?;
        let stats = Arc::new(TestServerStats::default());
        let state = Arc::new(State {
            keys: config.keys,
            datagram_frame_max: config.datagram_frame_max,
            welcome_on_refusal: config.welcome_on_refusal,
            datagram_loss_every: config.datagram_loss_every,
            datagrams_in: AtomicU64::new(0),
            datagrams_out: AtomicU64::new(0),
            seq_next: AtomicU64::new(1),
            records: Mutex::new(HashMap::new()),
            window: Mutex::new(Window { id: 1, ..Window::default() }),
            sessions: Mutex::new(HashMap::new()),
            stats: stats.clone(),
        });
        let mut tasks = tokio::task::JoinSet::new();
        let accept = endpoint.clone();
        let accept_state = state.clone();
        tasks.spawn(async move {
            while let Some(incoming) = accept.accept().await {
                tokio::spawn(serve(incoming, accept_state.clone()));
            }
        });
        if let Some(every) = config.window {
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    publish(&state).await;
                }
            });
        }
        Ok(TestServer { addr, cert, endpoint, tasks, stats })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn cert(&self) -> &TestCert {
        &self.cert
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.cert.fingerprint()
    }

    pub fn stats(&self) -> &TestServerStats {
        &self.stats
    }

    /// Writes what the daemon writes for clients into `data_dir`: `quic.addr`,
    /// `tls/cert.sha256` and `tls/cert.pem`.
    pub fn write_data_dir(&self, data_dir: &Path) -> std::io::Result<()> {
        write_data_dir(self.addr, &self.cert, data_dir)
    }

    /// Closes every connection (application code 0), waits until they are gone and releases
    /// the port. Returns the certificate, for a restart with the same identity.
    pub async fn shutdown(mut self) -> TestCert {
        self.endpoint.close(VarInt::from_u32(0), b"server shutdown");
        self.tasks.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.endpoint.wait_idle()).await;
        self.cert
    }
}

/// A [`TestServer`] on its own thread and runtime, for synchronous tests (for example ones
/// that run the `fpn` binary). Dropping it shuts the server down.
#[derive(Debug)]
pub struct ThreadedTestServer {
    addr: SocketAddr,
    cert: TestCert,
    stats: Arc<TestServerStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ThreadedTestServer {
    pub fn start(config: TestServerConfig) -> std::io::Result<ThreadedTestServer> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("fpn-test-server".to_string()).spawn(move || {
            runtime.block_on(async move {
                match TestServer::start(config).await {
                    Ok(server) => {
                        let _ = started_tx.send(Ok((server.addr, server.cert.clone(), server.stats.clone())));
                        let _ = stop_rx.await;
                        server.shutdown().await;
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                    }
                }
            });
        })?;
        let (addr, cert, stats) = started_rx.recv().map_err(std::io::Error::other)??;
        Ok(ThreadedTestServer { addr, cert, stats, stop: Some(stop), thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn cert(&self) -> &TestCert {
        &self.cert
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.cert.fingerprint()
    }

    pub fn stats(&self) -> &TestServerStats {
        &self.stats
    }

    /// As [`TestServer::write_data_dir`].
    pub fn write_data_dir(&self, data_dir: &Path) -> std::io::Result<()> {
        write_data_dir(self.addr, &self.cert, data_dir)
    }
}

impl Drop for ThreadedTestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl State {
    /// Whether the next datagram counted by `counter` is lost on the path.
    fn lose(&self, counter: &AtomicU64) -> bool {
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        self.datagram_loss_every > 0 && n.is_multiple_of(self.datagram_loss_every)
    }
}

fn authenticate(state: &State, key: &[u8]) -> Option<u64> {
    match &state.keys {
        Some(keys) => keys.get(key).copied(),
        None => std::str::from_utf8(key).ok()?.parse::<u64>().ok().filter(|id| *id >= 1),
    }
}

async fn refuse(state: &State, conn: &quinn::Connection, control: &mut quinn::SendStream, reason: Reason) {
    if state.welcome_on_refusal {
        let _ = control.write_all(&Welcome::refused(reason).encode()).await;
        let _ = control.finish();
        // Give the welcome a moment to leave before the close discards it.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.close(VarInt::from_u64(app_error(reason)).expect("small code"), reason.as_str().as_bytes());
}

async fn serve(incoming: quinn::Incoming, state: Arc<State>) {
    let Ok(conn) = incoming.await else { return };
    let Ok((mut control, mut control_recv)) = conn.accept_bi().await else { return };
    let mut hello_buf = Vec::new();
    let (client_id, subscribe_all) = loop {
        match Hello::decode(&hello_buf) {
            Ok((hello, _)) => match authenticate(&state, hello.api_key) {
                Some(id) => break (id, hello.subscribe_all()),
                None => {
                    state.stats.sessions_refused_total.fetch_add(1, Ordering::Relaxed);
                    refuse(&state, &conn, &mut control, Reason::Unauthorized).await;
                    return;
                }
            },
            Err(HelloError::Refused(reason)) => {
                state.stats.sessions_refused_total.fetch_add(1, Ordering::Relaxed);
                refuse(&state, &conn, &mut control, reason).await;
                return;
            }
            Err(HelloError::Incomplete(_)) => {}
        }
        let mut chunk = [0u8; 512];
        match control_recv.read(&mut chunk).await {
            Ok(Some(n)) => hello_buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    let path_max = conn.max_datagram_size().unwrap_or(0);
    let welcome = Welcome {
        status: Ok(()),
        client_id,
        rate_per_s: 0,
        burst: 0,
        datagram_frame_max: state.datagram_frame_max.min(u16::try_from(path_max).unwrap_or(u16::MAX)),
    };
    if control.write_all(&welcome.encode()).await.is_err() {
        return;
    }
    let Ok(results) = conn.open_uni().await else { return };
    let results = Arc::new(AsyncMutex::new(results));
    state.stats.sessions_total.fetch_add(1, Ordering::Relaxed);
    let id = conn.stable_id();
    state
        .sessions
        .lock()
        .unwrap()
        .insert(id, SessionHandle { client_id, subscribe_all, results: results.clone() });

    let mut tasks = tokio::task::JoinSet::new();
    {
        let (conn, state, results) = (conn.clone(), state.clone(), results.clone());
        tasks.spawn(async move {
            while let Ok(datagram) = conn.read_datagram().await {
                if state.lose(&state.datagrams_in) {
                    continue;
                }
                state.stats.frames_datagram_total.fetch_add(1, Ordering::Relaxed);
                let receipts = handle_frame(&state, client_id, &datagram);
                send_receipts_datagrams(&state, &conn, &results, &receipts).await;
            }
        });
    }
    {
        let (conn, state, results) = (conn.clone(), state.clone(), results.clone());
        tasks.spawn(async move {
            while let Ok(recv) = conn.accept_uni().await {
                tokio::spawn(read_records_stream(recv, state.clone(), client_id, results.clone()));
            }
        });
    }
    {
        let conn = conn.clone();
        tasks.spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok(Some(_)) = control_recv.read(&mut buf).await {}
            conn.close(VarInt::from_u32(0), b"control stream ended");
        });
    }
    conn.closed().await;
    tasks.shutdown().await;
    state.sessions.lock().unwrap().remove(&id);
    drop(control);
}

async fn read_records_stream(
    mut recv: quinn::RecvStream,
    state: Arc<State>,
    client_id: u64,
    results: Arc<AsyncMutex<quinn::SendStream>>,
) {
    let mut frame = vec![0u8; FRAME_HEADER_LEN];
    loop {
        frame.resize(FRAME_HEADER_LEN, 0);
        if recv.read_exact(&mut frame).await.is_err() {
            return;
        }
        let len = match peek_frame_len(&frame) {
            Ok(len) if len <= 1 << 20 => len,
            other => {
                let reason = other.err().unwrap_or(Reason::Oversized);
                write_receipts(&results, &[Receipt::frame_refused(reason, now_ns())]).await;
                let _ = recv.stop(VarInt::from_u64(app_error(reason)).expect("small code"));
                return;
            }
        };
        frame.resize(len, 0);
        if recv.read_exact(&mut frame[FRAME_HEADER_LEN..]).await.is_err() {
            return;
        }
        state.stats.frames_stream_total.fetch_add(1, Ordering::Relaxed);
        let receipts = handle_frame(&state, client_id, &frame);
        write_receipts(&results, &receipts).await;
        if let [Receipt { status: Err(reason), for_kind: None, .. }] = receipts[..] {
            let _ = recv.stop(VarInt::from_u64(app_error(reason)).expect("small code"));
            return;
        }
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// One receipt per record, or one for a frame refused whole.
fn handle_frame(state: &State, client_id: u64, frame: &[u8]) -> Vec<Receipt> {
    let rx_ns = now_ns();
    let records = match decode_frame(frame) {
        Ok(records) => records,
        Err(reason) => return vec![Receipt::frame_refused(reason, rx_ns)],
    };
    let mut receipts = Vec::with_capacity(records.len());
    let mut book = state.records.lock().unwrap();
    let mut window = state.window.lock().unwrap();
    for record in records {
        let mut receipt = Receipt::for_record(record, rx_ns);
        let (record_client, nonce) = (receipt.client_id, receipt.nonce);
        receipt.status = match record {
            RecordRef::Intent(i) => i.validate(),
            RecordRef::Bid(b) => validate_bid(b),
            RecordRef::Cancel(c) => validate_cancel(c),
            _ => Err(Reason::UnknownKind),
        };
        if receipt.status.is_ok() && record_client != client_id {
            receipt.status = Err(Reason::ClientMismatch);
        }
        if receipt.status.is_ok() {
            match record {
                RecordRef::Cancel(c) => {
                    let target = c.target.get();
                    let by_nonce = c.mode == CANCEL_BY_NONCE;
                    let found = book.iter_mut().find(|(key, value)| {
                        let ((client, n), seq) = (**key, value.0);
                        client == client_id && if by_nonce { n == target } else { seq == target }
                    });
                    match found {
                        Some((_, (seq, open))) if *open => {
                            *open = false;
                            receipt.seq = *seq;
                            receipt.window_id = window.id;
                        }
                        _ => receipt.status = Err(Reason::NotFound),
                    }
                }
                _ if book.contains_key(&(client_id, nonce)) => receipt.status = Err(Reason::DuplicateNonce),
                _ => {
                    let seq = state.seq_next.fetch_add(1, Ordering::Relaxed);
                    book.insert((client_id, nonce), (seq, true));
                    receipt.seq = seq;
                    receipt.window_id = window.id;
                    match record {
                        RecordRef::Intent(i) => {
                            let keys = (0..i.keys.len()).map(|k| i.key(k)).collect();
                            window.intents.push((seq, client_id, i.fixed.profit.get(), keys));
                        }
                        RecordRef::Bid(b) => window.bids.push((seq, client_id, b.amount.get())),
                        _ => {}
                    }
                    window.clients.insert(client_id);
                }
            }
        }
        if receipt.status.is_ok() {
            state.stats.records_accepted_total.fetch_add(1, Ordering::Relaxed);
        }
        receipts.push(receipt);
    }
    receipts
}

fn receipt_frames(receipts: &[Receipt], len_max: usize) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut rest = receipts;
    while !rest.is_empty() {
        let mut buf = Vec::new();
        let mut w = FrameWriter::new(&mut buf, len_max);
        let mut n = 0;
        while n < rest.len() && w.push_receipt(&rest[n]).is_ok() {
            n += 1;
        }
        assert!(w.finish() > 0, "a receipt fits any datagram frame");
        frames.push(buf);
        rest = &rest[n..];
    }
    frames
}

async fn send_receipts_datagrams(
    state: &State,
    conn: &quinn::Connection,
    results: &AsyncMutex<quinn::SendStream>,
    receipts: &[Receipt],
) {
    let len_max = conn.max_datagram_size().unwrap_or(0).min(fpn_wire::DATAGRAM_FRAME_LEN_MAX);
    if len_max < FRAME_HEADER_LEN + fpn_wire::RECEIPT_LEN {
        write_receipts(results, receipts).await;
        return;
    }
    for frame in receipt_frames(receipts, len_max) {
        if state.lose(&state.datagrams_out) {
            continue;
        }
        // No room for another datagram: the receipts go on the result stream instead.
        if conn.datagram_send_buffer_space() < frame.len()
            || conn.send_datagram(Bytes::from(frame.clone())).is_err()
        {
            let mut stream = results.lock().await;
            let _ = stream.write_all(&frame).await;
        }
    }
}

async fn write_receipts(results: &AsyncMutex<quinn::SendStream>, receipts: &[Receipt]) {
    let frames = receipt_frames(receipts, 1 << 16);
    let mut stream = results.lock().await;
    for frame in frames {
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// Closes the open window: a block of its intents (first come first served on keys, payout
/// = profit, no fee) and a clearing where every bid wins at its amount.
async fn publish(state: &State) {
    let window = {
        let mut open = state.window.lock().unwrap();
        let next = Window { id: open.id + 1, ..Window::default() };
        std::mem::replace(&mut *open, next)
    };
    let mut used = HashSet::new();
    let mut entries = Vec::new();
    for (seq, client, profit, keys) in &window.intents {
        if keys.iter().all(|k| !used.contains(k)) {
            used.extend(keys.iter().copied());
            entries.push(BlockEntryWire::new(*seq, *client, *profit, *profit));
        }
    }
    let total: u64 = entries.iter().map(|e| e.profit.get()).sum();
    let block = BlockSummary {
        window_id: window.id,
        total,
        fifo_total: total,
        upper_bound: window.intents.iter().map(|i| i.2).sum(),
        ..BlockSummary::default()
    };
    let winners: Vec<WinnerWire> =
        window.bids.iter().map(|(s, c, a)| WinnerWire::new(*s, *c, *a, *a)).collect();
    let clearing = ClearingSummary {
        window_id: window.id,
        revenue: window.bids.iter().map(|b| b.2).sum(),
        ..ClearingSummary::default()
    };
    let mut frames = Vec::new();
    let mut w = FrameWriter::new(&mut frames, u32::MAX as usize);
    w.push_block(&block, &entries).expect("no limit");
    w.finish();
    let mut w = FrameWriter::new(&mut frames, u32::MAX as usize);
    w.push_clearing(&clearing, &winners).expect("no limit");
    w.finish();
    let targets: Vec<_> = state
        .sessions
        .lock()
        .unwrap()
        .values()
        .filter(|s| s.subscribe_all || window.clients.contains(&s.client_id))
        .map(|s| s.results.clone())
        .collect();
    for results in targets {
        let _ = results.lock().await.write_all(&frames).await;
    }
    state.stats.windows_published_total.fetch_add(1, Ordering::Relaxed);
}

/// The files a daemon leaves for its clients, for a test server at `addr` with `cert`.
fn write_data_dir(addr: SocketAddr, cert: &TestCert, data_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir.join("tls"))?;
    std::fs::write(data_dir.join("quic.addr"), format!("{addr}\n"))?;
    std::fs::write(data_dir.join("tls/cert.sha256"), format!("{}\n", cert.fingerprint()))?;
    std::fs::write(data_dir.join("tls/cert.pem"), &cert.cert_pem)
}
