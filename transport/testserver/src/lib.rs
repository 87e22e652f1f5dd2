//! A minimal `fpn/1` server for tests (`fpn-client`'s and `fpn-cli`'s; never in production
//! builds): quinn sessions in front of the offline engine.
//!
//! It speaks the session of `docs/transport.md` with quinn: checks the hello (open mode: the
//! key is the client id in decimal, or a fixed key table), sends the welcome (or refuses with
//! a welcome and CONNECTION_CLOSE `0x100 + reason`), opens the result stream, and answers
//! every record with one receipt: datagram records in receipt datagrams, stream records on
//! the result stream. Records go through the raw QUIC intake's per-record checks
//! (`fpn_quic::handle_frame`: the connection's client id) into `fpn_engine::Engine`, the
//! daemon's own admission, builders, economics and auction in one thread: receipts, blocks
//! and clearings are the engine's. Windows close on [`TestServerConfig::window`]'s timer (or
//! when full); each window's block and clearing go to the sessions that had a record
//! accepted in it and to every `subscribe_all` session.
//!
//! It is not the daemon: one engine behind one lock, no rate limits, no connection limits.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fpn_engine::window::WindowConfig;
use fpn_engine::{Engine, EngineConfig, WindowResult};
use fpn_quic::Admit;
use fpn_tls::{Fingerprint, provider};
use fpn_wire::session::{Hello, HelloError, Welcome, app_error};
use fpn_wire::{FRAME_HEADER_LEN, FrameWriter, Reason, Receipt, RecordRef, peek_frame_len};
use quinn::VarInt;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::Mutex as AsyncMutex;

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

/// The engine and which clients had records accepted in each window.
#[derive(Debug)]
struct Engined {
    engine: Engine,
    clients: HashMap<u64, HashSet<u64>>,
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
    engine: Mutex<Engined>,
    started: Instant,
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
            engine: Mutex::new(Engined { engine: engine(config.window), clients: HashMap::new() }),
            started: Instant::now(),
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
                    let results = state.poll_windows();
                    publish(&state, results).await;
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

/// The engine behind the server: the daemon's defaults with smaller windows (a test server
/// starts often), `window` long (1 s without a timer: nothing closes but full windows).
fn engine(window: Option<Duration>) -> Engine {
    let window_ns = window.map_or(1_000_000_000, |w| w.as_nanos().clamp(1_000_000, 1_000_000_000) as u64);
    let config = EngineConfig {
        window: WindowConfig {
            window_ns,
            dedup_horizon_windows: 4,
            ..WindowConfig::with_records_max(16_384)
        },
        book_bids_max: 16_384,
        ..EngineConfig::default()
    };
    Engine::new(config, 0).expect("a valid engine configuration")
}

/// One record at a time into the engine, which answers at once.
struct EngineAdmit<'a> {
    engine: &'a mut Engine,
    now_ns: u64,
}

impl Admit for EngineAdmit<'_> {
    fn ready(&mut self) -> bool {
        true
    }

    fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>) -> Option<Receipt> {
        Some(self.engine.handle_record(self.now_ns, rx_ns, record))
    }

    fn refused(&mut self, _receipt: &Receipt) {}
}

impl State {
    fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Every window due now (its deadline passed, or it is full), closed: each result's
    /// frame and the clients to send it to.
    fn poll_windows(&self) -> Vec<Published> {
        let now = self.now_ns();
        let mut e = self.engine.lock().unwrap();
        let Engined { engine, clients } = &mut *e;
        let mut out = Vec::new();
        while let Some(result) = engine.poll_window(now) {
            out.push(published(result, clients));
        }
        out
    }

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
                let (receipts, closed) = handle_frame(&state, client_id, &datagram);
                send_receipts_datagrams(&state, &conn, &results, &receipts).await;
                publish(&state, closed).await;
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
                write_receipts(&results, &[Receipt::frame_refused(reason, state.now_ns())]).await;
                let _ = recv.stop(VarInt::from_u64(app_error(reason)).expect("small code"));
                return;
            }
        };
        frame.resize(len, 0);
        if recv.read_exact(&mut frame[FRAME_HEADER_LEN..]).await.is_err() {
            return;
        }
        state.stats.frames_stream_total.fetch_add(1, Ordering::Relaxed);
        let (receipts, closed) = handle_frame(&state, client_id, &frame);
        write_receipts(&results, &receipts).await;
        publish(&state, closed).await;
        if let [Receipt { status: Err(reason), for_kind: None, .. }] = receipts[..] {
            let _ = recv.stop(VarInt::from_u64(app_error(reason)).expect("small code"));
            return;
        }
    }
}

/// One receipt per record, or one for a frame refused whole: the transport's checks, then
/// the engine. Returns the receipts and the windows that closed full meanwhile.
fn handle_frame(state: &State, client_id: u64, frame: &[u8]) -> (Vec<Receipt>, Vec<Published>) {
    let now_ns = state.now_ns();
    let mut receipts = Vec::new();
    let mut published_now = Vec::new();
    let mut e = state.engine.lock().unwrap();
    let Engined { engine, clients } = &mut *e;
    let mut counters = fpn_quic::Counters::default();
    let mut admit = EngineAdmit { engine, now_ns };
    let result = fpn_quic::handle_frame(
        frame,
        now_ns,
        Some(client_id),
        &mut counters,
        &mut || true,
        &mut admit,
        |r, _| receipts.push(r.expect("the offline engine answers every record at once")),
    );
    if let Err(reason) = result {
        return (vec![Receipt::frame_refused(reason, now_ns)], Vec::new());
    }
    for r in &receipts {
        if r.status.is_ok() && r.window_id != 0 {
            clients.entry(r.window_id).or_default().insert(client_id);
            state.stats.records_accepted_total.fetch_add(1, Ordering::Relaxed);
        }
    }
    while let Some(result) = engine.poll_window(now_ns) {
        published_now.push(published(result, clients));
    }
    (receipts, published_now)
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

/// A published window: its block and clearing frame, and the clients that had records in it.
struct Published {
    frame: Vec<u8>,
    clients: HashSet<u64>,
}

fn published(result: &WindowResult, clients: &mut HashMap<u64, HashSet<u64>>) -> Published {
    let mut frame = Vec::new();
    result.encode(&mut frame);
    Published { frame, clients: clients.remove(&result.window.window_id).unwrap_or_default() }
}

/// Writes each published window to the result streams of the sessions that had records in
/// it and of every `subscribe_all` session.
async fn publish(state: &State, published: Vec<Published>) {
    for p in published {
        let targets: Vec<_> = state
            .sessions
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.subscribe_all || p.clients.contains(&s.client_id))
            .map(|s| s.results.clone())
            .collect();
        for results in targets {
            let _ = results.lock().await.write_all(&p.frame).await;
        }
        state.stats.windows_published_total.fetch_add(1, Ordering::Relaxed);
    }
}

/// The files a daemon leaves for its clients, for a test server at `addr` with `cert`.
fn write_data_dir(addr: SocketAddr, cert: &TestCert, data_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir.join("tls"))?;
    std::fs::write(data_dir.join("quic.addr"), format!("{addr}\n"))?;
    std::fs::write(data_dir.join("tls/cert.sha256"), format!("{}\n", cert.fingerprint()))?;
    std::fs::write(data_dir.join("tls/cert.pem"), &cert.cert_pem)
}
