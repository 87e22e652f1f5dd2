//! The load generator's I/O driver: one code path for every target.
//!
//! A target is reached over [`Datagrams`] (a QUIC connection after the fpn/1 hello, or a
//! connected UDP socket for the physical floor), or over a WebTransport session
//! (`fpn_webtransport::client`: the same fpn/1 session inside HTTP/3, datagrams sent through
//! [`SendFrames`], answers read as the client's events). Per connection, a sender task keeps
//! the [`Schedule`] and a receiver task matches answers in the [`Tracker`]; QUIC sessions
//! also read the result stream, where a server puts receipts it could not send as datagrams.
//! Everything runs on one current-thread tokio runtime on the client's core.
//!
//! Sending precisely: tokio's timer has 1 ms granularity, so the sender sleeps only until
//! 1.5 ms before the next due datagram and then yields in a loop (each yield lets the runtime
//! poll its sockets) until the due time. That costs client CPU, which the client's core has.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fpn_wire::session::{Hello, Welcome, reason_of_app_error};
use fpn_wire::{FRAME_HEADER_LEN, peek_frame_len};
use hdrhistogram::Histogram;

use crate::load::{FrameGen, Schedule, Shape};
use crate::procstat;
use crate::track::{Counts, Tracker, new_histogram};

/// Where a sender puts its datagrams.
pub trait SendFrames: Clone + 'static {
    fn send(&self, frame: Bytes) -> impl Future<Output = io::Result<()>>;
}

/// One message-oriented link to the target, both ways.
pub trait Datagrams: SendFrames {
    fn recv(&self) -> impl Future<Output = io::Result<Bytes>>;
}

impl SendFrames for quinn::Connection {
    async fn send(&self, frame: Bytes) -> io::Result<()> {
        // Waits for room in the datagram send buffer rather than dropping the oldest queued
        // datagram: a full buffer then shows as send lag, not as lost records.
        self.send_datagram_wait(frame).await.map_err(io::Error::other)
    }
}

impl SendFrames for fpn_webtransport::client::DatagramSender {
    async fn send(&self, frame: Bytes) -> io::Result<()> {
        // Waits for room too (`send_datagram_wait`).
        fpn_webtransport::client::DatagramSender::send(self, &frame).await.map_err(io::Error::other)
    }
}

impl Datagrams for quinn::Connection {
    async fn recv(&self) -> io::Result<Bytes> {
        self.read_datagram().await.map_err(io::Error::other)
    }
}

/// A connected UDP socket: the plain-UDP floor.
#[derive(Clone)]
pub struct Udp(pub Rc<tokio::net::UdpSocket>);

impl SendFrames for Udp {
    async fn send(&self, frame: Bytes) -> io::Result<()> {
        self.0.send(&frame).await.map(drop)
    }
}

impl Datagrams for Udp {
    async fn recv(&self) -> io::Result<Bytes> {
        let mut buf = vec![0u8; 65_536];
        let n = self.0.recv(&mut buf).await?;
        buf.truncate(n);
        Ok(Bytes::from(buf))
    }
}

/// Monotonic time since the phase's start, and the wall clock for the records' `sent_ns`.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    t0: Instant,
    unix_t0_ns: u64,
}

impl Clock {
    pub fn starting_at(t0: Instant) -> Clock {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let behind = t0.saturating_duration_since(Instant::now());
        Clock { t0, unix_t0_ns: (since_epoch + behind).as_nanos() as u64 }
    }

    /// Nanoseconds since `t0` (0 before it).
    pub fn now_ns(&self) -> u64 {
        Instant::now().saturating_duration_since(self.t0).as_nanos() as u64
    }

    pub fn at(&self, ns: u64) -> Instant {
        self.t0 + Duration::from_nanos(ns)
    }

    pub fn unix_ns(&self, ns: u64) -> u64 {
        self.unix_t0_ns + ns
    }
}

/// The sender keeps busy-yielding when the next datagram is due within this.
const SPIN_BELOW_NS: u64 = 1_500_000;

/// When a sender stops early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// Give up (the client cannot offer this rate) when this far behind the schedule.
    pub give_up_lag_ns: u64,
    /// Stop at this time whatever is left (the blast phase).
    pub stop_at_ns: u64,
}

impl SendLimits {
    pub const NONE: SendLimits = SendLimits { give_up_lag_ns: u64::MAX, stop_at_ns: u64::MAX };
}

/// Sends every datagram of `schedule` at (or as soon as possible after) its intended time.
/// Gives up (returns `Ok(false)`) when it is more than `limits.give_up_lag_ns` behind:
/// catching up would only make the phase longer. Stops (returns `Ok(true)`) at
/// `limits.stop_at_ns`.
pub async fn send_loop<D: SendFrames>(
    link: D,
    frames: Rc<FrameGen>,
    client_id: u64,
    schedule: Schedule,
    tracker: Rc<RefCell<Tracker>>,
    clock: Clock,
    limits: SendLimits,
) -> io::Result<bool> {
    for j in 0..schedule.dgrams {
        let due = schedule.intended_ns(j);
        let now = clock.now_ns();
        if now.saturating_sub(due) > limits.give_up_lag_ns {
            return Ok(false);
        }
        if now >= limits.stop_at_ns {
            return Ok(true);
        }
        loop {
            let now = clock.now_ns();
            if now >= due {
                break;
            }
            if due - now > SPIN_BELOW_NS {
                tokio::time::sleep_until(clock.at(due - SPIN_BELOW_NS).into()).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        let mut buf = Vec::with_capacity(2048);
        let now = clock.now_ns();
        let len = frames.frame(client_id, j, clock.unix_ns(now), &mut buf);
        tracker.borrow_mut().handle_sent(j, len, now);
        link.send(Bytes::from(buf)).await?;
        // Let the receivers (and other connections) run between datagrams even when this
        // sender is catching up a backlog, so answers are timed when they arrive.
        tokio::task::yield_now().await;
    }
    Ok(true)
}

/// Matches every answer datagram until the link fails or the task is aborted.
pub async fn recv_loop<D: Datagrams>(link: D, tracker: Rc<RefCell<Tracker>>, clock: Clock) {
    while let Ok(frame) = link.recv().await {
        let now = clock.now_ns();
        tracker.borrow_mut().handle_answer_frame(&frame, false, now);
    }
}

/// Matches every receipt of a WebTransport session (datagrams and the result stream, as the
/// client decoded them) until the session ends or the task is aborted.
async fn wt_events(
    mut client: fpn_webtransport::client::Client,
    tracker: Rc<RefCell<Tracker>>,
    clock: Clock,
) {
    while let Some(event) = client.next_event().await {
        if let fpn_client::Event::Receipt { receipt, via } = event {
            let now = clock.now_ns();
            let kind = receipt.for_kind.map_or(0, |k| k as u8);
            let status = receipt.status.err().map_or(0, fpn_wire::Reason::code);
            let via_stream = via == fpn_client::Via::Stream;
            tracker.borrow_mut().handle_answer(kind, receipt.nonce, status, via_stream, now);
        }
    }
}

/// Reads the frames of every result stream the server opens (receipts that did not go as
/// datagrams; blocks and clearings, which are skipped).
async fn result_streams(conn: quinn::Connection, tracker: Rc<RefCell<Tracker>>, clock: Clock) {
    while let Ok(mut stream) = conn.accept_uni().await {
        let tracker = tracker.clone();
        tokio::task::spawn_local(async move {
            let mut frame = vec![0; FRAME_HEADER_LEN];
            loop {
                frame.truncate(FRAME_HEADER_LEN);
                if stream.read_exact(&mut frame).await.is_err() {
                    return;
                }
                let Ok(len) = peek_frame_len(&frame) else { return };
                if len > 64 << 20 {
                    return;
                }
                frame.resize(len, 0);
                if stream.read_exact(&mut frame[FRAME_HEADER_LEN..]).await.is_err() {
                    return;
                }
                let now = clock.now_ns();
                tracker.borrow_mut().handle_answer_frame(&frame, true, now);
            }
        });
    }
}

/// Records and datagrams a bare server received on one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub records: u64,
    pub dgrams: u64,
}

/// The stats request of the bare servers: one byte on the control stream, answered with
/// 16 bytes (records, datagrams, u64 LE). Not part of fpn/1; the engine is never asked.
pub const STATS_REQUEST: u8 = b'S';

/// An open fpn/1 session.
pub struct QuicSession {
    pub conn: quinn::Connection,
    pub welcome: Welcome,
    control_send: quinn::SendStream,
    control_recv: quinn::RecvStream,
}

impl QuicSession {
    /// Connects, sends the hello with the API key `client_id` in decimal (the engine's `open`
    /// auth; the bare servers accept it the same way) and reads the welcome.
    pub async fn connect(
        endpoint: &quinn::Endpoint,
        config: quinn::ClientConfig,
        addr: SocketAddr,
        client_id: u64,
        flags: u8,
    ) -> Result<QuicSession, String> {
        let conn = endpoint
            .connect_with(config, addr, "localhost")
            .map_err(|e| format!("connect {addr}: {e}"))?
            .await
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
        let (mut control_send, mut control_recv) =
            conn.open_bi().await.map_err(|e| format!("control stream: {e}"))?;
        let key = client_id.to_string();
        let mut hello = Vec::new();
        Hello { flags, api_key: key.as_bytes() }.encode(&mut hello);
        control_send.write_all(&hello).await.map_err(|e| format!("hello: {e}"))?;
        let mut buf = [0u8; fpn_wire::session::WELCOME_LEN];
        if let Err(e) = control_recv.read_exact(&mut buf).await {
            // A refusal closes the connection with `0x100 + reason`, which may overtake the
            // refused welcome.
            if let Some(quinn::ConnectionError::ApplicationClosed(close)) = conn.close_reason()
                && let Some(reason) = reason_of_app_error(close.error_code.into_inner())
            {
                return Err(format!("refused: {}", reason.as_str()));
            }
            return Err(format!("welcome: {e}"));
        }
        let welcome = Welcome::decode(&buf).map_err(|e| format!("welcome: {e}"))?;
        if let Err(reason) = welcome.status {
            return Err(format!("refused: {}", reason.as_str()));
        }
        Ok(QuicSession { conn, welcome, control_send, control_recv })
    }

    /// Largest frame this session takes in a datagram: the welcome's and QUIC's limits.
    pub fn frame_len_max(&self) -> usize {
        let quic = self.conn.max_datagram_size().unwrap_or(0);
        quic.min(usize::from(self.welcome.datagram_frame_max))
    }

    /// Asks a bare server for its counters (see [`STATS_REQUEST`]).
    pub async fn query_stats(&mut self) -> io::Result<ServerStats> {
        self.control_send.write_all(&[STATS_REQUEST]).await?;
        let mut buf = [0u8; 16];
        self.control_recv.read_exact(&mut buf).await.map_err(io::Error::other)?;
        Ok(ServerStats {
            records: u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")),
            dgrams: u64::from_le_bytes(buf[8..].try_into().expect("8 bytes")),
        })
    }
}

/// Where a phase sends.
#[derive(Debug, Clone)]
pub enum Target {
    /// An fpn/1 server: the engine or a bare quinn server. `stats`: it answers the stats
    /// request (the bare servers). `answers`: it sends receipts (not the sink).
    Quic { addr: SocketAddr, pin: Option<[u8; 32]>, stats: bool, answers: bool },
    /// The plain UDP echo.
    Udp { addr: SocketAddr },
    /// The engine's WebTransport intake (`https://<addr><path>`), its certificate pinned.
    WebTransport { addr: SocketAddr, path: String, pin: [u8; 32] },
}

impl Target {
    pub fn answers(&self) -> bool {
        match self {
            Target::Quic { answers, .. } => *answers,
            Target::Udp { .. } | Target::WebTransport { .. } => true,
        }
    }
}

/// Client settings that do not change the load.
#[derive(Debug, Clone)]
pub struct ClientOpts {
    /// Connection `c` uses client id `client_id_base + c`.
    pub client_id_base: u64,
    pub initial_mtu: u16,
    /// Largest frame the client sends (further capped by each session).
    pub frame_len_max: usize,
    /// How long to wait for the last answers after the last send.
    pub drain: Duration,
    pub seed: u64,
    /// The server's process, for its CPU time over the measured interval.
    pub server_pid: Option<u32>,
    /// A sender this far behind its schedule stops (see [`send_loop`]).
    pub give_up_lag: Duration,
    /// Blast: never give up, send as fast as possible up to the rate, stop at the phase's
    /// end; the phase's figure is throughput over the whole phase ([`PhaseOutcome::blast_per_s`]).
    pub blast: bool,
    /// With several clients in one phase ([`run_clients`]): where they meet once connected, so
    /// that all start sending at one time.
    pub start_gate: Option<Arc<StartGate>>,
    /// fpn/1 sessions in receipt mode `refusals` (the hello's bit 1): accepted records are
    /// confirmed by watermarks, refused ones by receipts ([`crate::track::Tracker`]).
    pub refusals: bool,
}

/// Starts the clients of one phase together: each connects its sessions, then waits for the
/// others, and all take the same start time, so their measured intervals coincide.
#[derive(Debug)]
pub struct StartGate {
    clients: usize,
    arrived: AtomicUsize,
    failed: AtomicBool,
    t0: OnceLock<Instant>,
}

impl StartGate {
    pub fn new(clients: usize) -> Arc<StartGate> {
        Arc::new(StartGate {
            clients,
            arrived: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            t0: OnceLock::new(),
        })
    }

    /// Waits until every client has arrived; the common start time (20 ms after the last
    /// arrived, so that every client sees it before it comes), or `None` when a client failed.
    pub async fn arrive(&self) -> Option<Instant> {
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.clients {
            let _ = self.t0.set(Instant::now() + Duration::from_millis(20));
        }
        loop {
            if self.failed.load(Ordering::Acquire) {
                return None;
            }
            if let Some(t0) = self.t0.get() {
                return Some(*t0);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// A client failed (before or after arriving): the others stop waiting.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }
}

/// What one client of a phase with several ([`run_clients`]) sent and got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTotals {
    pub cpu: usize,
    pub sent_records: u64,
    pub answered_all: u64,
    pub accepted_all: u64,
    /// What the bare server counted on this client's connections.
    pub server_records: Option<u64>,
}

/// What one phase measured.
#[derive(Debug)]
pub struct PhaseOutcome {
    pub shape: Shape,
    pub corrected: Histogram<u64>,
    pub naive: Histogram<u64>,
    pub send_lag: Histogram<u64>,
    pub counts: Counts,
    /// Records the bare server received during the whole phase, warm-up included (the
    /// connections are new, so it counts this phase's records only).
    pub server_records: Option<u64>,
    /// A sender fell too far behind its schedule and stopped: the client could not offer
    /// this rate.
    pub abandoned: bool,
    pub frame_len_max: usize,
    pub client_cpu_s: f64,
    pub server_cpu_s: Option<f64>,
    /// Records still unanswered when the drain ended (all of them, warm-up included).
    pub unanswered: u64,
    /// DATAGRAM frames QUIC received on the client's connections. More than the answer
    /// datagrams the client read means the client's own receive buffer overflowed (a
    /// client too slow to read), not that the server failed to answer.
    pub client_quic_rx_dgrams: Option<u64>,
    /// One entry per client when several ran the phase ([`run_clients`]); empty with one.
    pub per_client: Vec<ClientTotals>,
}

impl PhaseOutcome {
    pub fn offered_per_s(&self) -> f64 {
        self.shape.rate_per_s
    }

    /// Records per second that made it: answered (echo), accepted (engine: status 0), or
    /// received by the server (sink: over the whole phase, which it cannot tell apart).
    pub fn achieved_per_s(&self, accepted_only: bool) -> f64 {
        let secs = self.shape.duration.as_secs_f64();
        match self.server_records {
            Some(n) if self.counts.measured_answered == 0 => n as f64 / self.shape.total().as_secs_f64(),
            _ if accepted_only => self.counts.measured_accepted as f64 / secs,
            _ => self.counts.measured_answered as f64 / secs,
        }
    }

    /// Throughput over the whole phase (warm-up included, as the sink counts): what the sink
    /// received, or what came back accepted (engine) or answered, per second; and what the
    /// client managed to send per second. For the blast phase, where the client sends as fast
    /// as it can: when `sent` is not clearly above the server's figure, the client, not the
    /// server, was the limit.
    pub fn blast_per_s(&self, accepted_only: bool) -> (f64, f64) {
        let secs = self.shape.total().as_secs_f64();
        let got = match self.server_records {
            Some(n) if self.counts.answered_all == 0 => n,
            _ if accepted_only => self.counts.accepted_all,
            _ => self.counts.answered_all,
        };
        (got as f64 / secs, self.counts.sent_records as f64 / secs)
    }

    /// Share of the sent records the sink did not count (lost in a buffer on the way).
    pub fn sink_loss(&self) -> Option<f64> {
        let got = self.server_records?;
        let sent = self.counts.sent_records.max(1);
        Some(1.0 - got.min(sent) as f64 / sent as f64)
    }

    /// The clients of one phase as one: histograms and counts added, rates and connections
    /// summed (each client offered the phase's rate), CPU time summed over the clients, the
    /// server's CPU time as one client measured it (they measured the same process over the
    /// same interval). `None` for no parts.
    pub fn merge(parts: Vec<(usize, PhaseOutcome)>) -> Option<PhaseOutcome> {
        let mut parts = parts.into_iter();
        let (cpu, mut out) = parts.next()?;
        let totals = |cpu: usize, o: &PhaseOutcome| ClientTotals {
            cpu,
            sent_records: o.counts.sent_records,
            answered_all: o.counts.answered_all,
            accepted_all: o.counts.accepted_all,
            server_records: o.server_records,
        };
        out.per_client = vec![totals(cpu, &out)];
        for (cpu, p) in parts {
            out.per_client.push(totals(cpu, &p));
            out.shape.rate_per_s += p.shape.rate_per_s;
            out.shape.conns += p.shape.conns;
            out.corrected.add(&p.corrected).expect("same bounds");
            out.naive.add(&p.naive).expect("same bounds");
            out.send_lag.add(&p.send_lag).expect("same bounds");
            out.counts.add(&p.counts);
            out.server_records = out.server_records.zip(p.server_records).map(|(a, b)| a + b);
            out.abandoned |= p.abandoned;
            out.frame_len_max = out.frame_len_max.min(p.frame_len_max);
            out.client_cpu_s += p.client_cpu_s;
            out.server_cpu_s = out.server_cpu_s.or(p.server_cpu_s);
            out.unanswered += p.unanswered;
            out.client_quic_rx_dgrams =
                out.client_quic_rx_dgrams.zip(p.client_quic_rx_dgrams).map(|(a, b)| a + b);
        }
        Some(out)
    }

    pub fn mean_record_bytes(&self) -> f64 {
        let records = self.counts.sent_records.max(1) as f64;
        (self.counts.sent_bytes as f64 - self.counts.sent_dgrams as f64 * FRAME_HEADER_LEN as f64) / records
    }
}

async fn sum_stats(sessions: &mut [QuicSession]) -> io::Result<ServerStats> {
    let mut sum = ServerStats::default();
    for s in sessions {
        let st = s.query_stats().await?;
        sum.records += st.records;
        sum.dgrams += st.dgrams;
    }
    Ok(sum)
}

/// One connection's sender task ([`send_loop`]).
fn spawn_sender<D: SendFrames>(
    link: D,
    frames: &Rc<FrameGen>,
    client_id: u64,
    schedule: Schedule,
    tracker: Rc<RefCell<Tracker>>,
    clock: Clock,
    limits: SendLimits,
) -> tokio::task::JoinHandle<io::Result<bool>> {
    tokio::task::spawn_local(send_loop(link, frames.clone(), client_id, schedule, tracker, clock, limits))
}

/// Runs one phase of `shape` against `target`. Call inside a `tokio::task::LocalSet`.
pub async fn run_phase(target: &Target, shape: &Shape, opts: &ClientOpts) -> Result<PhaseOutcome, String> {
    let conns = shape.conns as usize;
    let mut quic: Vec<QuicSession> = Vec::new();
    let mut udp: Vec<Udp> = Vec::new();
    let mut wt: Vec<fpn_webtransport::client::Client> = Vec::new();
    let mut endpoint = None;
    let mut frame_len_max = opts.frame_len_max;
    match target {
        Target::Quic { addr, pin, .. } => {
            let bind: SocketAddr =
                if addr.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse().expect("literal");
            let ep = procstat::quinn_endpoint(bind, None).map_err(|e| format!("client endpoint: {e}"))?;
            let pin = pin.ok_or("no certificate pin for the QUIC target (--pin, or its cert.sha256)")?;
            let config = crate::tls::client_config(pin, opts.initial_mtu);
            let flags = if opts.refusals { fpn_wire::session::HELLO_RECEIPTS_REFUSALS } else { 0 };
            for c in 0..conns {
                let id = opts.client_id_base + c as u64;
                let s = QuicSession::connect(&ep, config.clone(), *addr, id, flags).await?;
                frame_len_max = frame_len_max.min(s.frame_len_max());
                quic.push(s);
            }
            endpoint = Some(ep);
        }
        Target::WebTransport { addr, path, pin } => {
            for c in 0..conns {
                let key = (opts.client_id_base + c as u64).to_string();
                let mut config =
                    fpn_webtransport::client::ClientConfig::pinned(*addr, fpn_tls::Fingerprint(*pin), &key);
                config.path = path.clone();
                let s = fpn_webtransport::client::Client::connect(&config)
                    .await
                    .map_err(|e| format!("WebTransport session with {addr}: {e}"))?;
                frame_len_max = frame_len_max.min(s.datagram_frame_max());
                wt.push(s);
            }
        }
        Target::Udp { addr } => {
            let bind = if addr.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" };
            for _ in 0..conns {
                let sock = tokio::net::UdpSocket::bind(bind).await.map_err(|e| format!("udp bind: {e}"))?;
                procstat::grow_socket_buffers(&sock);
                sock.connect(addr).await.map_err(|e| format!("udp connect {addr}: {e}"))?;
                udp.push(Udp(Rc::new(sock)));
            }
        }
    }
    let frames = Rc::new(FrameGen::new(shape, frame_len_max, opts.seed).map_err(|e| e.to_string())?);
    let measure_from = shape.warmup.as_nanos() as u64;
    let measure_to = shape.total().as_nanos() as u64;
    // Start a little in the future so that every task is spawned before the first send; with
    // other clients, when the last of them has connected.
    let t0 = match &opts.start_gate {
        Some(gate) => gate.arrive().await.ok_or("another client of the phase failed")?,
        None => Instant::now() + Duration::from_millis(20),
    };
    let clock = Clock::starting_at(t0);
    let limits = if opts.blast {
        SendLimits { give_up_lag_ns: u64::MAX, stop_at_ns: shape.total().as_nanos() as u64 }
    } else {
        SendLimits { give_up_lag_ns: opts.give_up_lag.as_nanos() as u64, stop_at_ns: u64::MAX }
    };
    let mut trackers = Vec::new();
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    // The sessions' connections, to close them once the receivers (which own the clients)
    // are aborted.
    let wt_conns: Vec<quinn::Connection> = wt.iter().map(|s| s.connection().clone()).collect();
    let mut wt = wt.into_iter();
    for c in 0..conns {
        let schedule = Schedule::new(shape, c as u32);
        let tracker =
            Rc::new(RefCell::new(Tracker::new(schedule, shape.records_per_dgram, measure_from, measure_to)));
        trackers.push(tracker.clone());
        let client_id = opts.client_id_base + c as u64;
        match target {
            Target::Quic { .. } => {
                let conn = quic[c].conn.clone();
                // Records carry the id the server bound to the session.
                let client_id = quic[c].welcome.client_id;
                receivers.push(tokio::task::spawn_local(recv_loop(conn.clone(), tracker.clone(), clock)));
                receivers.push(tokio::task::spawn_local(result_streams(
                    conn.clone(),
                    tracker.clone(),
                    clock,
                )));
                senders.push(spawn_sender(conn, &frames, client_id, schedule, tracker, clock, limits));
            }
            Target::WebTransport { .. } => {
                let session = wt.next().expect("one session per connection");
                let link = session.datagrams();
                let client_id = session.welcome().client_id;
                receivers.push(tokio::task::spawn_local(wt_events(session, tracker.clone(), clock)));
                senders.push(spawn_sender(link, &frames, client_id, schedule, tracker, clock, limits));
            }
            Target::Udp { .. } => {
                let link = udp[c].clone();
                receivers.push(tokio::task::spawn_local(recv_loop(link.clone(), tracker.clone(), clock)));
                senders.push(spawn_sender(link, &frames, client_id, schedule, tracker, clock, limits));
            }
        }
    }
    // CPU time over the measured interval.
    let stats_wanted = matches!(target, Target::Quic { stats: true, .. });
    tokio::time::sleep_until(clock.at(measure_from).into()).await;
    // This thread's time: everything of one client runs on it.
    let cpu0 = (procstat::thread_cpu_s(), opts.server_pid.and_then(procstat::cpu_s));
    tokio::time::sleep_until(clock.at(measure_to).into()).await;
    let cpu1 = (procstat::thread_cpu_s(), opts.server_pid.and_then(procstat::cpu_s));
    let mut abandoned = false;
    for s in senders {
        abandoned |= !s.await.map_err(|e| format!("sender: {e}"))?.map_err(|e| format!("send: {e}"))?;
    }
    // The bare server's counters once the last datagrams had time to land: what it got of
    // the whole phase (its connections are new).
    let stats = if stats_wanted {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some(sum_stats(&mut quic).await.map_err(|e| format!("stats: {e}"))?)
    } else {
        None
    };
    if target.answers() {
        let deadline = Instant::now() + opts.drain;
        while Instant::now() < deadline && trackers.iter().any(|t| t.borrow().outstanding() > 0) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for r in receivers {
        r.abort();
    }
    let client_quic_rx_dgrams =
        (!quic.is_empty()).then(|| quic.iter().map(|s| s.conn.stats().frame_rx.datagram).sum::<u64>());
    for s in &quic {
        s.conn.close(0u32.into(), b"done");
    }
    for conn in &wt_conns {
        conn.close(0x100u32.into(), b"done");
    }
    if let Some(ep) = endpoint {
        ep.close(0u32.into(), b"done");
    }
    let mut out = PhaseOutcome {
        shape: shape.clone(),
        corrected: new_histogram(),
        naive: new_histogram(),
        send_lag: new_histogram(),
        counts: Counts::default(),
        server_records: stats.map(|s| s.records),
        abandoned,
        frame_len_max,
        client_cpu_s: cpu1.0 - cpu0.0,
        server_cpu_s: cpu0.1.zip(cpu1.1).map(|(a, b)| b - a),
        unanswered: 0,
        client_quic_rx_dgrams,
        per_client: Vec::new(),
    };
    for t in trackers {
        let t = t.borrow();
        out.corrected.add(&t.corrected).expect("same bounds");
        out.naive.add(&t.naive).expect("same bounds");
        out.send_lag.add(&t.send_lag).expect("same bounds");
        out.counts.add(&t.counts);
        if target.answers() {
            out.unanswered += t.outstanding();
        }
    }
    Ok(out)
}

/// Runs one phase of `shape` with one client per CPU of `cpus`, each a thread pinned to its CPU
/// with its own runtime, its own connections (`shape.conns`, client ids from
/// `opts.client_id_base + i × shape.conns`) and the whole of `shape`'s rate, all starting
/// together ([`StartGate`]); the outcomes merged ([`PhaseOutcome::merge`]). Call inside a
/// `tokio::task::LocalSet`: the calling task only waits for the threads.
pub async fn run_clients(
    target: &Target,
    shape: &Shape,
    opts: &ClientOpts,
    cpus: &[usize],
) -> Result<PhaseOutcome, String> {
    let gate = StartGate::new(cpus.len());
    let mut handles = Vec::new();
    for (i, &cpu) in cpus.iter().enumerate() {
        let (target, shape, mine) = (target.clone(), shape.clone(), gate.clone());
        let opts = ClientOpts {
            client_id_base: opts.client_id_base + i as u64 * u64::from(shape.conns),
            start_gate: Some(gate.clone()),
            ..opts.clone()
        };
        let spawned = std::thread::Builder::new().name(format!("client{i}")).spawn(move || {
            let result = client_thread(cpu, &target, &shape, &opts);
            if result.is_err() {
                mine.fail();
            }
            result
        });
        match spawned {
            Ok(h) => handles.push((cpu, h)),
            Err(e) => {
                gate.fail();
                return Err(format!("client thread: {e}"));
            }
        }
    }
    while handles.iter().any(|(_, h)| !h.is_finished()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut parts = Vec::new();
    let mut errors = Vec::new();
    for (cpu, h) in handles {
        match h.join() {
            Ok(Ok(o)) => parts.push((cpu, o)),
            Ok(Err(e)) => errors.push(format!("client on cpu {cpu}: {e}")),
            Err(_) => errors.push(format!("client on cpu {cpu} panicked")),
        }
    }
    // The first error is the cause; the others only report that it stopped them.
    if let Some(first) =
        errors.iter().find(|e| !e.ends_with("another client of the phase failed")).or(errors.first())
    {
        return Err(first.clone());
    }
    PhaseOutcome::merge(parts).ok_or_else(|| "no clients".to_string())
}

fn client_thread(
    cpu: usize,
    target: &Target,
    shape: &Shape,
    opts: &ClientOpts,
) -> Result<PhaseOutcome, String> {
    procstat::pin_current_thread(&[cpu]).map_err(|e| format!("pinning to cpu {cpu}: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    tokio::task::LocalSet::new().block_on(&rt, run_phase(target, shape, opts))
}
