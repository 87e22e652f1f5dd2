//! The I/O driver: a thread of its own running a current-thread tokio runtime with quinn and
//! h3 (never the daemon's pinned executors), around the sans-IO [`Core`].
//!
//! One task accepts QUIC connections (limits, Retry), one per connection serves its HTTP/3
//! requests until the WebTransport CONNECT on the configured path and then its session
//! (datagrams, streams, the hello timeout), one per control stream reads the hello, one per
//! records stream cuts frames, one per session writes its result stream, one takes the
//! engine's answers, and one does housekeeping (counter snapshots, certificate renewal).

use std::cell::RefCell;
use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use fpn_quic::server::ConnAdmission;
use fpn_quic::{Auth, Limits};
use fpn_tls::Fingerprint;
use fpn_wire::session::{API_KEY_LEN_MAX, HELLO_FIXED_LEN, app_error};
use fpn_wire::{FRAME_HEADER_LEN, Reason, peek_frame_len};
use h3::ext::Protocol;
use h3::quic::{BidiStream as _, RecvStream as _};
use h3_webtransport::server::{AcceptedBi, WebTransportSession};
use http::{Method, Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::task::{LocalSet, spawn_local};

use crate::cert::{CertError, CertSource, Certificate};
use crate::engine::{EndpointQueues, SessionKey, Via, Wake};
use crate::metrics::Counters;
use crate::session::{Core, DatagramPort, FrameOutcome, HelloOutcome, Phase};
use crate::wt::{DEFAULT_PATH, stream_error_code};

/// How often the endpoint publishes its counters and checks its certificate.
pub const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// How long a refused session stays open so its refused welcome reaches the client.
pub const REFUSED_LINGER: Duration = Duration::from_millis(50);
/// Longest a stream's frame waits before the endpoint looks at the engine's ring again, in
/// case a wake-up was missed.
const ROOM_RECHECK: Duration = Duration::from_millis(5);
/// HTTP/3's "no error" code, for closing a connection.
const H3_NO_ERROR: u32 = 0x100;

type Conn = crate::stream_start::Conn;
type Session = WebTransportSession<Conn, Bytes>;
type WtSend = h3_webtransport::stream::SendStream<h3_quinn::SendStream<Bytes>, Bytes>;
type WtRecv = h3_webtransport::stream::RecvStream<crate::stream_start::UniRecv, Bytes>;
type WtBidi = h3_webtransport::stream::BidiStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// The endpoint's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The UDP address to listen on (its own port, not the raw QUIC intake's).
    pub bind: SocketAddr,
    /// The host in the published URL; the bind address's IP when `None`.
    pub url_host: Option<String>,
    /// The path of the extended CONNECT that opens a session.
    pub path: String,
    pub cert: CertSource,
    pub auth: Auth,
    pub limits: Limits,
    /// The clock of receive times (`rx_ns` of receipts: ns since the Unix epoch). The daemon
    /// passes its own, so every entry point stamps records with one clock.
    pub clock: fn() -> u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            url_host: None,
            path: DEFAULT_PATH.to_string(),
            cert: CertSource::default(),
            auth: Auth::Open,
            limits: Limits::default(),
            clock: unix_now_ns,
        }
    }
}

/// What a page needs to connect: the URL and the certificate hashes to pass as
/// `serverCertificateHashes` (the current one first; the one before it while connections
/// made with it may still be starting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    pub url: String,
    pub cert_sha256: Fingerprint,
    pub cert_sha256_previous: Option<Fingerprint>,
    /// Expiry of the current certificate (seconds since the Unix epoch), if generated here.
    pub not_after_unix_s: Option<u64>,
}

impl EndpointInfo {
    /// `{"url": ..., "hashes": [hex, ...], "not_after_unix_s": n|null}`, for the admin
    /// endpoint and the demo page.
    pub fn json(&self) -> String {
        let mut hashes = format!("\"{}\"", self.cert_sha256);
        if let Some(prev) = self.cert_sha256_previous {
            hashes.push_str(&format!(",\"{prev}\""));
        }
        let not_after = self.not_after_unix_s.map_or("null".to_string(), |s| s.to_string());
        format!("{{\"url\":\"{}\",\"hashes\":[{hashes}],\"not_after_unix_s\":{not_after}}}", self.url)
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("starting the endpoint thread: {0}")]
    Thread(std::io::Error),
    #[error("the endpoint thread failed: {0}")]
    Runtime(String),
}

#[derive(Debug, Default)]
struct Control {
    stop: Notify,
    rotate: AtomicBool,
}

/// The running endpoint. Dropping it stops the endpoint (as [`EndpointHandle::stop`]).
#[derive(Debug)]
pub struct EndpointHandle {
    local_addr: SocketAddr,
    watch: EndpointWatch,
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

/// What the endpoint publishes, readable from any thread and cloned freely (the daemon's
/// admin endpoint serves its [`EndpointInfo`], the intake publishes its [`Counters`]).
#[derive(Debug, Clone)]
pub struct EndpointWatch {
    info: Arc<Mutex<EndpointInfo>>,
    counters: Arc<Mutex<Counters>>,
}

impl EndpointWatch {
    /// The current URL and certificate hashes.
    pub fn info(&self) -> EndpointInfo {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The counters as of the endpoint's last housekeeping (copied: no allocation).
    pub fn counters(&self) -> Counters {
        self.counters.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl EndpointHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The current URL and certificate hashes.
    pub fn info(&self) -> EndpointInfo {
        self.watch.info()
    }

    /// The counters as of the last housekeeping.
    pub fn counters(&self) -> Counters {
        self.watch.counters()
    }

    /// A handle on what the endpoint publishes, for other threads.
    pub fn watch(&self) -> EndpointWatch {
        self.watch.clone()
    }

    /// Replaces a generated certificate at the next housekeeping, due or not (an operator's
    /// command, and the tests').
    pub fn renew_certificate(&self) {
        self.control.rotate.store(true, Ordering::Release);
    }

    /// Closes every connection and ends the thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.control.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EndpointHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Starts an endpoint.
pub struct Endpoint;

impl Endpoint {
    /// Binds `config.bind`, makes or loads the certificate, and starts the endpoint's thread
    /// (`fpn-webtransport`), which hands frames to the engine through `queues`.
    pub fn start(config: Config, queues: EndpointQueues) -> Result<EndpointHandle, StartError> {
        let socket =
            UdpSocket::bind(config.bind).map_err(|source| StartError::Bind { addr: config.bind, source })?;
        let local_addr =
            socket.local_addr().map_err(|source| StartError::Bind { addr: config.bind, source })?;
        let cert = Certificate::from_source(&config.cert, SystemTime::now())?;
        let server_config = quinn_server_config(&cert, &config.limits)?;
        let host = config.url_host.clone().unwrap_or_else(|| match local_addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        });
        let info = EndpointInfo {
            url: format!("https://{host}:{}{}", local_addr.port(), config.path),
            cert_sha256: cert.sha256,
            cert_sha256_previous: None,
            not_after_unix_s: cert.not_after_unix_s,
        };
        let info = Arc::new(Mutex::new(info));
        let counters = Arc::new(Mutex::new(Counters::default()));
        let control = Arc::new(Control::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let shared = Published { info: info.clone(), counters: counters.clone(), control: control.clone() };
        let thread = std::thread::Builder::new()
            .name("fpn-webtransport".into())
            .spawn(move || run(config, queues, socket, server_config, cert, shared, ready_tx))
            .map_err(StartError::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StartError::Runtime(e)),
            Err(_) => return Err(StartError::Runtime("the thread ended before it was ready".into())),
        }
        let watch = EndpointWatch { info, counters };
        Ok(EndpointHandle { local_addr, watch, control, thread: Some(thread) })
    }
}

/// What the endpoint thread publishes to its handle.
struct Published {
    info: Arc<Mutex<EndpointInfo>>,
    counters: Arc<Mutex<Counters>>,
    control: Arc<Control>,
}

fn quinn_server_config(cert: &Certificate, limits: &Limits) -> Result<quinn::ServerConfig, CertError> {
    let mut server_config = quinn::ServerConfig::with_crypto(cert.quic_crypto()?);
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(limits.idle_timeout).expect("idle timeout in range");
    transport
        // The CONNECT request, the control stream, and a spare for a refused extra one.
        .max_concurrent_bidi_streams(4u32.into())
        // HTTP/3's control and QPACK streams, and the client's records streams.
        .max_concurrent_uni_streams(19u32.into())
        .max_idle_timeout(Some(idle))
        .stream_receive_window((1u32 << 20).into())
        .receive_window((4u32 << 20).into())
        .send_window(8 << 20)
        .datagram_receive_buffer_size(Some(1 << 20))
        .datagram_send_buffer_size(1 << 20);
    server_config.transport_config(Arc::new(transport));
    server_config.max_incoming(limits.conns_max.max(1));
    Ok(server_config)
}

/// State shared by the endpoint thread's tasks.
struct Shared {
    core: RefCell<Core>,
    config: Config,
    wake: Arc<Wake>,
}

/// The default [`Config::clock`]: the wall clock.
pub fn unix_now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn run(
    config: Config,
    queues: EndpointQueues,
    socket: UdpSocket,
    server_config: quinn::ServerConfig,
    cert: Certificate,
    published: Published,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return drop(ready.send(Err(e.to_string()))),
    };
    let local = LocalSet::new();
    local.block_on(&rt, async move {
        let runtime = Arc::new(quinn::TokioRuntime);
        let endpoint = match quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            runtime,
        ) {
            Ok(e) => e,
            Err(e) => return drop(ready.send(Err(e.to_string()))),
        };
        let EndpointQueues { frames, answers, wake } = queues;
        let core = Core::new(config.auth.clone(), config.limits.clone(), frames, Instant::now());
        let shared = Rc::new(Shared { core: RefCell::new(core), config, wake });
        spawn_local(dispatch(shared.clone(), answers));
        spawn_local(housekeeping(
            shared.clone(),
            endpoint.clone(),
            cert,
            published.info,
            published.counters.clone(),
            published.control.clone(),
        ));
        let _ = ready.send(Ok(()));
        loop {
            tokio::select! {
                incoming = endpoint.accept() => match incoming {
                    Some(incoming) => on_incoming(&shared, incoming),
                    None => break,
                },
                _ = published.control.stop.notified() => break,
            }
        }
        endpoint.close(H3_NO_ERROR.into(), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        *published.counters.lock().expect("counters lock") = shared.core.borrow().counters.clone();
    });
}

fn on_incoming(shared: &Rc<Shared>, incoming: quinn::Incoming) {
    let ip = incoming.remote_address().ip();
    let admission = shared.core.borrow_mut().open_connection(ip, incoming.remote_address_validated());
    match admission {
        ConnAdmission::Accept => drop(spawn_local(connection(shared.clone(), incoming, ip))),
        ConnAdmission::Retry if incoming.may_retry() => {
            shared.core.borrow_mut().counters.retries_total += 1;
            let _ = incoming.retry();
        }
        ConnAdmission::Retry => incoming.ignore(),
        ConnAdmission::RefuseMax | ConnAdmission::RefuseIp => incoming.refuse(),
    }
}

async fn connection(shared: Rc<Shared>, incoming: quinn::Incoming, ip: IpAddr) {
    let conn = match incoming.accept() {
        Ok(connecting) => connecting.await,
        Err(e) => Err(e),
    };
    shared.core.borrow_mut().handshake_ended();
    match conn {
        Ok(conn) => serve(&shared, conn).await,
        Err(_) => shared.core.borrow_mut().counters.handshakes_failed_total += 1,
    }
    shared.core.borrow_mut().close_connection(ip, false);
}

/// Serves a connection's requests until the WebTransport CONNECT, then its session.
async fn serve(shared: &Rc<Shared>, conn: quinn::Connection) {
    let deadline = tokio::time::Instant::now() + shared.config.limits.hello_timeout;
    let mut builder = h3::server::builder();
    builder
        .enable_webtransport(true)
        .enable_extended_connect(true)
        .enable_datagram(true)
        .max_webtransport_sessions(1);
    let built = builder.build::<_, Bytes>(crate::stream_start::Conn(h3_quinn::Connection::new(conn.clone())));
    let Ok(Ok(mut h3c)) = tokio::time::timeout_at(deadline, built).await else { return };
    let (req, stream) = loop {
        let Ok(Ok(Some(resolver))) = tokio::time::timeout_at(deadline, h3c.accept()).await else { return };
        let Ok((req, mut stream)) = resolver.resolve_request().await else { return };
        let is_wt = req.method() == Method::CONNECT
            && req.extensions().get::<Protocol>() == Some(&Protocol::WEB_TRANSPORT);
        if is_wt && req.uri().path() == shared.config.path {
            break (req, stream);
        }
        shared.core.borrow_mut().counters.requests_refused_total += 1;
        let response = Response::builder().status(StatusCode::NOT_FOUND).body(()).expect("a valid response");
        let _ = stream.send_response(response).await;
        let _ = stream.finish().await;
    };
    let session_id = stream.id().into_inner();
    let Ok(session) = WebTransportSession::accept(req, stream, h3c).await else { return };
    let port =
        H3Port { sender: session.datagram_sender(), conn: conn.clone(), prefix: varint_len(session_id / 4) };
    let wake = Rc::new(Notify::new());
    let key = shared.core.borrow_mut().open_session(Box::new(port), wake.clone());
    let session = Rc::new(session);
    let reason = run_session(shared, &conn, &session, key, &wake, deadline).await;
    shared.core.borrow_mut().close_session(key);
    let text = match reason {
        Some(reason) => format!("fpn/1 {}", reason.as_str()),
        None => String::new(),
    };
    conn.close(H3_NO_ERROR.into(), text.as_bytes());
}

/// The session's loop; returns the reason it was closed for, if any.
async fn run_session(
    shared: &Rc<Shared>,
    conn: &quinn::Connection,
    session: &Rc<Session>,
    key: SessionKey,
    wake: &Rc<Notify>,
    hello_deadline: tokio::time::Instant,
) -> Option<Reason> {
    let mut datagrams = session.datagram_reader();
    let mut control_seen = false;
    // Kept across iterations: dropping it between taking a bidirectional stream and reading
    // its first bytes would lose the stream.
    let mut bi = std::pin::pin!(session.accept_bi());
    loop {
        let notified = wake.notified();
        if let Some(close) = shared.core.borrow_mut().close_requested(key) {
            return close;
        }
        let awaiting_hello = shared.core.borrow_mut().phase(key) == Some(Phase::AwaitHello);
        // Biased, bidirectional before unidirectional: polling for a bidirectional stream
        // also sorts newly arrived unidirectional streams into h3's queue without waking
        // anyone, and `accept_uni` polled after it in the same round picks them up.
        tokio::select! {
            biased;
            _ = notified => {}
            b = &mut bi => {
                match b {
                    Ok(Some(AcceptedBi::BidiStream(_, bidi))) if !control_seen => {
                        control_seen = true;
                        spawn_local(control_stream(shared.clone(), session.clone(), bidi, key, wake.clone()));
                    }
                    Ok(Some(AcceptedBi::BidiStream(_, mut extra))) => {
                        extra.stop_sending(stream_error_code(app_error(Reason::BadLength) as u32));
                    }
                    Ok(Some(AcceptedBi::Request(_, mut stream))) => {
                        shared.core.borrow_mut().counters.requests_refused_total += 1;
                        let response =
                            Response::builder().status(StatusCode::NOT_FOUND).body(()).expect("a valid response");
                        let _ = stream.send_response(response).await;
                    }
                    _ => return None,
                }
                bi.set(session.accept_bi());
            }
            u = session.accept_uni() => {
                let Ok(Some((_, stream))) = u else { return None };
                spawn_local(read_records(shared.clone(), stream, key));
            }
            d = datagrams.read_datagram() => {
                let Ok(d) = d else { return None };
                let mut core = shared.core.borrow_mut();
                core.handle_frame(key, Via::Datagram, d.into_payload(), (shared.config.clock)(), Instant::now());
                core.flush();
            }
            _ = tokio::time::sleep_until(hello_deadline), if awaiting_hello => {
                shared.core.borrow_mut().hello_timeout(key);
            }
            _ = conn.closed() => return None,
        }
    }
}

/// The control stream: the hello in, the welcome out, then the session lasts as long as it.
async fn control_stream(
    shared: Rc<Shared>,
    session: Rc<Session>,
    bidi: WtBidi,
    key: SessionKey,
    wake: Rc<Notify>,
) {
    let (mut send, mut recv) = bidi.split();
    let mut hello = Vec::with_capacity(HELLO_FIXED_LEN + API_KEY_LEN_MAX);
    let welcome = loop {
        let chunk = poll_fn(|cx| recv.poll_data(cx)).await;
        let finished = !matches!(chunk, Ok(Some(_)));
        if let Ok(Some(mut chunk)) = chunk {
            let take = chunk.len().min(HELLO_FIXED_LEN + API_KEY_LEN_MAX - hello.len());
            hello.extend_from_slice(&bytes::Buf::copy_to_bytes(&mut chunk, take));
        }
        let full = hello.len() == HELLO_FIXED_LEN + API_KEY_LEN_MAX;
        match shared.core.borrow_mut().handle_hello(key, &hello, finished || full, Instant::now()) {
            HelloOutcome::Answer(welcome) => break welcome,
            HelloOutcome::Incomplete if finished => return,
            HelloOutcome::Incomplete => {}
        }
    };
    let _ = send.write_all(&welcome.encode()).await;
    if let Err(reason) = welcome.status {
        let _ = send.shutdown().await;
        tokio::time::sleep(REFUSED_LINGER).await;
        shared.core.borrow_mut().request_close(key, Some(reason));
        return;
    }
    match session.open_uni(session.session_id()).await {
        Ok(result) => drop(spawn_local(write_results(shared.clone(), result, key, wake))),
        Err(_) => return shared.core.borrow_mut().request_close(key, None),
    }
    // Nothing more comes on the control stream; its end ends the session.
    while let Ok(Some(_)) = poll_fn(|cx| recv.poll_data(cx)).await {}
    shared.core.borrow_mut().request_close(key, None);
}

/// Writes the session's result stream: receipts, windows, proofs.
async fn write_results(shared: Rc<Shared>, mut send: WtSend, key: SessionKey, wake: Rc<Notify>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let notified = wake.notified();
        if shared.core.borrow_mut().take_outbox(key, &mut buf).is_none() {
            break;
        }
        if buf.is_empty() {
            notified.await;
            continue;
        }
        if send.write_all(&buf).await.is_err() {
            break;
        }
    }
    let _ = send.shutdown().await;
}

/// A records stream: frames back to back, each handed to the core when the engine has room.
async fn read_records(shared: Rc<Shared>, mut stream: WtRecv, key: SessionKey) {
    let frame_max = shared.config.limits.stream_frame_max;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let clock = shared.config.clock;
    let mut rx_ns = clock();
    loop {
        while buf.len() >= FRAME_HEADER_LEN {
            let len = match peek_frame_len(&buf) {
                Ok(len) if len > frame_max => Err(Reason::Oversized),
                other => other,
            };
            let len = match len {
                Ok(len) => len,
                Err(reason) => return stop_records(&shared, &mut stream, key, reason, rx_ns, true),
            };
            if buf.len() < len {
                break;
            }
            let frame = buf.split_to(len).freeze();
            loop {
                let room = shared.wake.room.notified();
                let outcome = shared.core.borrow_mut().handle_frame(
                    key,
                    Via::Stream,
                    frame.clone(),
                    rx_ns,
                    Instant::now(),
                );
                match outcome {
                    FrameOutcome::Done => break,
                    FrameOutcome::Refused(reason) => {
                        return stop_records(&shared, &mut stream, key, reason, rx_ns, false);
                    }
                    FrameOutcome::Wait => {
                        shared.wake.stream_waiting.store(true, Ordering::Release);
                        let _ = tokio::time::timeout(ROOM_RECHECK, room).await;
                    }
                }
            }
            shared.core.borrow_mut().flush();
        }
        match poll_fn(|cx| stream.poll_data(cx)).await {
            Ok(Some(chunk)) => {
                rx_ns = clock();
                buf.extend_from_slice(&chunk);
            }
            Ok(None) if buf.is_empty() => return,
            Ok(None) => return stop_records(&shared, &mut stream, key, Reason::Truncated, rx_ns, true),
            Err(_) => return,
        }
    }
}

/// A frame refused whole on a stream: its successors cannot be found, so the stream is
/// stopped with the reason (`refuse`: the core has not answered it yet).
fn stop_records(
    shared: &Rc<Shared>,
    stream: &mut WtRecv,
    key: SessionKey,
    reason: Reason,
    rx_ns: u64,
    refuse: bool,
) {
    let mut core = shared.core.borrow_mut();
    if refuse {
        core.refuse_frame(key, Via::Stream, reason, rx_ns);
    }
    core.flush();
    stream.stop_sending(stream_error_code(app_error(reason) as u32));
}

/// Takes the engine's answers to their sessions.
async fn dispatch(shared: Rc<Shared>, mut answers: rtrb::Consumer<ToSessionAlias>) {
    loop {
        let notified = shared.wake.answers.notified();
        let mut n = 0usize;
        while let Ok(answer) = answers.pop() {
            shared.core.borrow_mut().handle_answer(answer);
            n += 1;
            if n.is_multiple_of(4096) {
                shared.core.borrow_mut().flush();
                tokio::task::yield_now().await;
            }
        }
        if n > 0 {
            shared.core.borrow_mut().flush();
            continue;
        }
        notified.await;
    }
}

type ToSessionAlias = crate::engine::ToSession;

async fn housekeeping(
    shared: Rc<Shared>,
    endpoint: quinn::Endpoint,
    mut cert: Certificate,
    info: Arc<Mutex<EndpointInfo>>,
    counters: Arc<Mutex<Counters>>,
    control: Arc<Control>,
) {
    let mut tick = tokio::time::interval(HOUSEKEEPING);
    loop {
        tick.tick().await;
        let now = SystemTime::now();
        let forced = control.rotate.swap(false, Ordering::AcqRel);
        if (forced || cert.due(now)) && matches!(shared.config.cert, CertSource::SelfSigned { .. }) {
            // On failure the current certificate stays, and the next tick tries again.
            if let Ok((server_config, next)) = Certificate::from_source(&shared.config.cert, now)
                .and_then(|next| Ok((quinn_server_config(&next, &shared.config.limits)?, next)))
            {
                endpoint.set_server_config(Some(server_config));
                let mut info = info.lock().expect("info lock");
                info.cert_sha256_previous = Some(cert.sha256);
                info.cert_sha256 = next.sha256;
                info.not_after_unix_s = next.not_after_unix_s;
                cert = next;
                shared.core.borrow_mut().counters.cert_rotations_total += 1;
            }
        }
        *counters.lock().expect("counters lock") = shared.core.borrow().counters.clone();
    }
}

/// Datagrams of one session through h3-datagram, with quinn's buffer checked first.
struct H3Port {
    sender: h3_datagram::datagram_handler::DatagramSender<h3_quinn::datagram::SendDatagramHandler, Bytes>,
    conn: quinn::Connection,
    /// Bytes of the HTTP datagram prefix (the quarter stream id).
    prefix: usize,
}

impl DatagramPort for H3Port {
    fn max_size(&self) -> usize {
        self.conn.max_datagram_size().map_or(0, |m| m.saturating_sub(self.prefix))
    }

    fn try_send(&mut self, payload: Bytes) -> bool {
        if self.conn.datagram_send_buffer_space() < payload.len() + self.prefix {
            return false;
        }
        self.sender.send_datagram(payload).is_ok()
    }
}

fn varint_len(v: u64) -> usize {
    let mut out = Vec::with_capacity(8);
    crate::wt::put_varint(&mut out, v);
    out.len()
}
