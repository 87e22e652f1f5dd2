//! The sans-IO `fpn/1` server (`docs/transport.md`): a quinn-proto [`Endpoint`] and its
//! connections, plus the session logic around them (hello, authentication, limits, token
//! buckets, receipt packing, the result stream). It performs no I/O and reads no clock: the
//! driver hands it UDP datagrams with their receive time and `now`, and sends what it polls.
//!
//! Call order, once per loop iteration of the intake that owns it:
//! 1. [`Server::handle_datagram`] for each received UDP datagram, and after each (or after a
//!    batch) [`Server::poll_records`], which hands every record that may enter the engine to an
//!    [`Admit`] and queues its receipt;
//! 2. [`Server::handle_late_receipt`] for receipts the merger answered (book cancels), in the
//!    order [`Admit::admit`] returned `None` for them; [`Server::handle_window`] for each
//!    published window (its block and clearing frame);
//! 3. [`Server::handle_timeouts`] with `now`;
//! 4. [`Server::poll_transmit`] until `None`, sending each transmit.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fpn_wire::session::{Hello, HelloError, SESSION_VERSION, Welcome, app_error};
use fpn_wire::{
    FRAME_HEADER_LEN, FrameWriter, RECEIPT_LEN, Reason, Receipt, RecordRef, decode_frame, peek_frame_len,
};
use quinn_proto::{
    ConnectionError, ConnectionHandle, DatagramEvent, Dir, Endpoint, EndpointConfig, Event, IdleTimeout,
    Incoming, SendDatagramError, StreamEvent, StreamId, TransportConfig, TransportErrorCode, VarInt,
    WriteError,
};

pub use quinn_proto::Transmit;

use crate::tls::{Identity, TlsError, server_crypto};

/// Datagrams one transmit may carry with GSO, at most.
pub const GSO_SEGMENTS_MAX: usize = 16;
/// Datagrams and stream frames handled per session per [`Server::poll_records`] call.
pub const RECORDS_BUDGET: usize = 256;
/// Windows with accepted records remembered per session, awaiting their results.
pub const SESSION_WINDOWS_MAX: usize = 64;
/// How long a refused session stays open so the refused welcome can reach the client.
pub const REFUSED_LINGER: Duration = Duration::from_millis(50);
/// TLS alert `no_application_protocol` as a QUIC CRYPTO_ERROR.
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// How API keys map to client ids (`quic.auth`).
#[derive(Debug, Clone)]
pub enum Auth {
    /// The key is the client id in decimal (development only).
    Open,
    /// Only these keys, each bound to its client id.
    Keys(HashMap<Vec<u8>, u64>),
}

impl Auth {
    /// The client id `key` authenticates as, if any.
    pub fn client_of(&self, key: &[u8]) -> Option<u64> {
        match self {
            Auth::Open => {
                if key.is_empty() || key.len() > 20 || !key.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                std::str::from_utf8(key).ok()?.parse::<u64>().ok().filter(|&id| id >= 1)
            }
            Auth::Keys(map) => map.get(key).copied(),
        }
    }
}

/// Session limits (`[quic]`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Token bucket per client: records per second (0: unlimited) and burst.
    pub rate_per_s: u32,
    pub burst: u32,
    pub conns_per_client: u32,
    pub conns_per_ip: u32,
    pub conns_max: usize,
    pub idle_timeout: Duration,
    /// A connection that sends no hello this long after its handshake is closed
    /// `unauthorized` (keep-alives would otherwise hold it open forever).
    pub hello_timeout: Duration,
    /// Handshakes in flight above which new clients must pass a Retry first.
    pub retry_above: usize,
    /// Largest frame taken in one datagram.
    pub datagram_frame_max: u16,
    /// Largest frame taken on a stream.
    pub stream_frame_max: usize,
    /// Bytes a session's result stream may have queued before the session is closed as too
    /// slow (`overloaded`).
    pub result_backlog_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            rate_per_s: 0,
            burst: 0,
            conns_per_client: 16,
            conns_per_ip: 64,
            conns_max: 1024,
            idle_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            retry_above: 64,
            datagram_frame_max: fpn_wire::DATAGRAM_FRAME_LEN_MAX as u16,
            stream_frame_max: 64 * 1024,
            result_backlog_max: 16 << 20,
        }
    }
}

/// Everything the server needs.
#[derive(Debug)]
pub struct ServerConfig {
    pub auth: Auth,
    pub limits: Limits,
    /// Path MTU discovery (the driver sets don't-fragment on its socket).
    pub mtu_discovery: bool,
}

/// Where the engine side takes records.
pub trait Admit {
    /// Whether the next frame may be taken now (asked before each frame). While `false`,
    /// stream frames wait in QUIC's buffers (flow control slows the client down), and
    /// datagram records are answered `overloaded` at once: a datagram left waiting would be
    /// dropped without a word once the connection's receive buffer is full.
    fn ready(&mut self) -> bool;
    /// One record of a structurally valid frame, already checked for the session's client id
    /// and its token bucket. `None`: answered later through [`Server::handle_late_receipt`].
    fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>) -> Option<Receipt>;
    /// A receipt the transport made itself (`rate_limited`, `client_mismatch`,
    /// `unauthorized`, a frame refused whole): for the engine's counters.
    fn refused(&mut self, receipt: &Receipt);
    /// A record [`Admit::admit`] will see a few records from now: a chance to start its
    /// memory loads early (the engine prefetches its de-duplication slot). Only a hint.
    fn prefetch(&mut self, record: RecordRef<'_>) {
        let _ = record;
    }
}

/// How many records ahead of the one being admitted [`handle_frame`] calls
/// [`Admit::prefetch`].
pub const PREFETCH_AHEAD: usize = 8;

/// Transport counters (published by the driver as `fpn_quic_*`).
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub udp_datagrams_total: u64,
    pub udp_bytes_total: u64,
    /// UDP payloads that cannot be QUIC (empty, or the fixed bit clear).
    pub udp_garbage_total: u64,
    pub conns_accepted_total: u64,
    pub conns_refused_max_total: u64,
    pub conns_refused_ip_total: u64,
    pub retries_total: u64,
    pub handshakes_failed_total: u64,
    pub alpn_refused_total: u64,
    pub sessions_opened_total: u64,
    pub sessions_refused_unauthorized_total: u64,
    pub sessions_refused_overloaded_total: u64,
    pub sessions_refused_bad_hello_total: u64,
    /// Connections closed for sending no hello within `Limits::hello_timeout`.
    pub sessions_hello_timeout_total: u64,
    pub conns_closed_total: u64,
    pub conns_idle_timeout_total: u64,
    pub frames_datagram_total: u64,
    pub frames_stream_total: u64,
    pub frames_refused_total: u64,
    pub streams_stopped_total: u64,
    pub records_rate_limited_total: u64,
    /// Datagram records answered `overloaded` because the engine could not take a frame.
    pub records_overloaded_total: u64,
    pub records_client_mismatch_total: u64,
    pub records_unauthorized_total: u64,
    pub receipts_datagram_total: u64,
    pub receipts_stream_total: u64,
    /// Datagram receipts that went on the result stream (datagram send buffer full).
    pub receipts_fallback_total: u64,
    pub windows_pushed_total: u64,
    /// Proof announcement frames written to result streams.
    pub proofs_pushed_total: u64,
    pub sessions_backlog_closed_total: u64,
    pub late_receipts_orphaned_total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshaking,
    AwaitHello,
    Open,
    Closing,
}

#[derive(Debug)]
struct UniIn {
    id: StreamId,
    buf: Vec<u8>,
    /// Bytes of `buf` already handled.
    start: usize,
    finished: bool,
}

struct Session {
    conn: quinn_proto::Connection,
    generation: u64,
    ip: IpAddr,
    phase: Phase,
    client_id: u64,
    subscribe_all: bool,
    control: Option<StreamId>,
    hello: Vec<u8>,
    result: Option<StreamId>,
    /// Result-stream bytes not yet taken by QUIC; `outbox[sent..]` is what is left.
    outbox: Vec<u8>,
    sent: usize,
    uni: Vec<UniIn>,
    /// Receipts for datagram records and stream records, not yet packed.
    dgram_receipts: Vec<Receipt>,
    stream_receipts: Vec<Receipt>,
    /// Windows this session had records accepted in, whose results are still to come.
    windows: VecDeque<u64>,
    last_rx_ns: u64,
    close_at: Option<(Instant, u64)>,
    /// Counted in its client's connections (released when the session is removed).
    counted: bool,
    /// Has data for `poll_records`.
    pending: bool,
    /// Queued in `Server::dirty` (may have packets to send).
    dirty: bool,
}

/// Where a late receipt goes.
#[derive(Debug, Clone, Copy)]
struct LateOrigin {
    slot: usize,
    generation: u64,
    datagram: bool,
}

#[derive(Debug, Default)]
struct ClientState {
    conns: u32,
    /// Nano-tokens (10⁻⁹ of a record), and the time they were last topped up.
    tokens_n: u128,
    topped_ns: u64,
}

/// The sans-IO server. See the module doc for the call order.
pub struct Server {
    endpoint: Endpoint,
    server_config: Arc<quinn_proto::ServerConfig>,
    config: ServerConfig,
    sessions: Vec<Option<Session>>,
    sessions_open: usize,
    generation: u64,
    handshakes: usize,
    per_ip: HashMap<IpAddr, u32>,
    clients: HashMap<u64, ClientState>,
    pending: Vec<usize>,
    dirty: VecDeque<usize>,
    late: VecDeque<LateOrigin>,
    responses: VecDeque<(Transmit, Vec<u8>)>,
    next_timeout: Option<Instant>,
    scratch: Vec<u8>,
    frame_buf: Vec<u8>,
    epoch: Instant,
    pub counters: Counters,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("sessions_open", &self.sessions_open).finish_non_exhaustive()
    }
}

fn varint(code: u64) -> VarInt {
    VarInt::from_u64(code).expect("application error codes are small")
}

impl Server {
    /// A server with `identity` as its certificate. Allocates the session table for
    /// `limits.conns_max` connections.
    pub fn new(identity: &Identity, config: ServerConfig, now: Instant) -> Result<Server, TlsError> {
        let crypto = quinn_proto::crypto::rustls::QuicServerConfig::try_from(server_crypto(identity)?)
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let mut server_config = quinn_proto::ServerConfig::with_crypto(Arc::new(crypto));
        let l = &config.limits;
        let mut transport = TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(VarInt::from_u32(1))
            .max_concurrent_uni_streams(VarInt::from_u32(16))
            .max_idle_timeout(Some(IdleTimeout::try_from(l.idle_timeout).expect("idle timeout in range")))
            .stream_receive_window(VarInt::from_u32(1 << 20))
            .receive_window(VarInt::from_u32(4 << 20))
            .send_window(8 << 20)
            .datagram_receive_buffer_size(Some(1 << 20))
            .datagram_send_buffer_size(1 << 20);
        if !config.mtu_discovery {
            transport.mtu_discovery_config(None);
        }
        server_config.transport_config(Arc::new(transport));
        server_config.max_incoming(l.conns_max.max(1));
        // A migrated connection's new 4-tuple could hash to another intake's socket
        // (`SO_REUSEPORT`), whose endpoint does not know it.
        server_config.migration(false);
        let server_config = Arc::new(server_config);
        // No fixed-bit greasing (RFC 9287): every packet to us then has the bit set, which is
        // what `handle_datagram` checks to drop non-QUIC bytes early.
        let mut endpoint_config = EndpointConfig::default();
        endpoint_config.grease_quic_bit(false);
        let endpoint =
            Endpoint::new(Arc::new(endpoint_config), Some(server_config.clone()), config.mtu_discovery, None);
        let conns_max = l.conns_max;
        Ok(Server {
            endpoint,
            server_config,
            config,
            sessions: Vec::with_capacity(conns_max),
            sessions_open: 0,
            generation: 0,
            handshakes: 0,
            per_ip: HashMap::with_capacity(conns_max),
            clients: HashMap::with_capacity(conns_max),
            pending: Vec::with_capacity(conns_max),
            dirty: VecDeque::with_capacity(conns_max),
            late: VecDeque::with_capacity(1024),
            responses: VecDeque::with_capacity(64),
            next_timeout: None,
            scratch: Vec::with_capacity(64 * 1024),
            frame_buf: Vec::with_capacity(64 * 1024),
            epoch: now,
            counters: Counters::default(),
        })
    }

    /// Connections the server holds (handshaking, open or closing).
    pub fn connections(&self) -> usize {
        self.sessions_open
    }

    /// The earliest time [`Server::handle_timeouts`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timeout
    }

    /// Whether [`Server::poll_records`] has work (sessions with unread data).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// One received UDP datagram (a GRO batch is split by the driver), its receive time
    /// `rx_ns` (ns since the Unix epoch) and the local address it came to.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        rx_ns: u64,
        remote: SocketAddr,
        local_ip: Option<IpAddr>,
        data: &[u8],
    ) {
        self.counters.udp_datagrams_total += 1;
        self.counters.udp_bytes_total += data.len() as u64;
        // Every QUIC v1 packet has the fixed bit set (RFC 9000 §17); drop what cannot be QUIC
        // before it costs a copy.
        if data.is_empty() || data[0] & 0x40 == 0 {
            self.counters.udp_garbage_total += 1;
            return;
        }
        self.scratch.clear();
        let event =
            self.endpoint.handle(now, remote, local_ip, None, BytesMut::from(data), &mut self.scratch);
        match event {
            Some(DatagramEvent::NewConnection(incoming)) => self.handle_incoming(now, rx_ns, incoming),
            Some(DatagramEvent::ConnectionEvent(ch, event)) => {
                if let Some(s) = self.sessions.get_mut(ch.0).and_then(Option::as_mut) {
                    s.last_rx_ns = rx_ns;
                    s.conn.handle_event(event);
                    self.process_conn(now, ch.0);
                }
            }
            Some(DatagramEvent::Response(t)) => {
                let bytes = self.scratch[..t.size].to_vec();
                self.responses.push_back((t, bytes));
            }
            None => {}
        }
    }

    fn handle_incoming(&mut self, now: Instant, rx_ns: u64, incoming: Incoming) {
        let ip = incoming.remote_address().ip();
        let l = &self.config.limits;
        self.scratch.clear();
        if self.sessions_open >= l.conns_max {
            self.counters.conns_refused_max_total += 1;
            let t = self.endpoint.refuse(incoming, &mut self.scratch);
            self.responses.push_back((t, self.scratch.clone()));
            return;
        }
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= l.conns_per_ip {
            self.counters.conns_refused_ip_total += 1;
            let t = self.endpoint.refuse(incoming, &mut self.scratch);
            self.responses.push_back((t, self.scratch.clone()));
            return;
        }
        if self.handshakes >= l.retry_above && !incoming.remote_address_validated() {
            match self.endpoint.retry(incoming, &mut self.scratch) {
                Ok(t) => {
                    self.counters.retries_total += 1;
                    self.responses.push_back((t, self.scratch.clone()));
                }
                Err(e) => self.endpoint.ignore(e.into_incoming()),
            }
            return;
        }
        match self.endpoint.accept(incoming, now, &mut self.scratch, Some(self.server_config.clone())) {
            Ok((ch, conn)) => {
                self.counters.conns_accepted_total += 1;
                self.generation += 1;
                let session = Session {
                    conn,
                    generation: self.generation,
                    ip,
                    phase: Phase::Handshaking,
                    client_id: 0,
                    subscribe_all: false,
                    control: None,
                    hello: Vec::new(),
                    result: None,
                    outbox: Vec::new(),
                    sent: 0,
                    uni: Vec::new(),
                    dgram_receipts: Vec::new(),
                    stream_receipts: Vec::new(),
                    windows: VecDeque::new(),
                    last_rx_ns: rx_ns,
                    close_at: None,
                    counted: false,
                    pending: false,
                    dirty: false,
                };
                if self.sessions.len() <= ch.0 {
                    self.sessions.resize_with(ch.0 + 1, || None);
                }
                debug_assert!(self.sessions[ch.0].is_none(), "quinn-proto reused a live handle");
                self.sessions[ch.0] = Some(session);
                self.sessions_open += 1;
                self.handshakes += 1;
                *self.per_ip.entry(ip).or_insert(0) += 1;
                self.process_conn(now, ch.0);
            }
            Err(e) => {
                self.counters.handshakes_failed_total += 1;
                if let Some(t) = e.response {
                    self.responses.push_back((t, self.scratch.clone()));
                }
            }
        }
    }

    /// After input to a connection: endpoint events, application events, and bookkeeping.
    fn process_conn(&mut self, now: Instant, slot: usize) {
        let Some(s) = self.sessions[slot].as_mut() else { return };
        let ch = ConnectionHandle(slot);
        let mut drained = false;
        while let Some(ev) = s.conn.poll_endpoint_events() {
            drained |= ev.is_drained();
            if let Some(back) = self.endpoint.handle_event(ch, ev) {
                s.conn.handle_event(back);
            }
        }
        while let Some(event) = s.conn.poll() {
            match event {
                Event::HandshakeDataReady => {}
                Event::Connected => {
                    if s.phase == Phase::Handshaking {
                        s.phase = Phase::AwaitHello;
                        self.handshakes -= 1;
                        // No hello in time: closed `unauthorized` (cleared by the welcome).
                        let at = now + self.config.limits.hello_timeout;
                        s.close_at = Some((at, app_error(Reason::Unauthorized)));
                        self.next_timeout = Some(self.next_timeout.map_or(at, |n| n.min(at)));
                    }
                }
                Event::ConnectionLost { reason } => {
                    match &reason {
                        ConnectionError::TimedOut => self.counters.conns_idle_timeout_total += 1,
                        ConnectionError::TransportError(e)
                            if e.code == TransportErrorCode::crypto(ALERT_NO_APPLICATION_PROTOCOL) =>
                        {
                            self.counters.alpn_refused_total += 1
                        }
                        _ => {}
                    }
                    if s.phase == Phase::Handshaking {
                        self.counters.handshakes_failed_total += 1;
                        self.handshakes -= 1;
                    }
                    s.phase = Phase::Closing;
                }
                Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) => {
                    while let Some(id) = s.conn.streams().accept(Dir::Bi) {
                        if s.control.is_none() {
                            s.control = Some(id);
                        } else {
                            let _ = s.conn.recv_stream(id).stop(varint(app_error(Reason::BadLength)));
                        }
                    }
                    s.pending = true;
                }
                Event::Stream(StreamEvent::Opened { dir: Dir::Uni }) => {
                    while let Some(id) = s.conn.streams().accept(Dir::Uni) {
                        s.uni.push(UniIn { id, buf: Vec::new(), start: 0, finished: false });
                    }
                    s.pending = true;
                }
                Event::Stream(StreamEvent::Readable { .. }) | Event::DatagramReceived => s.pending = true,
                Event::Stream(StreamEvent::Writable { id }) => {
                    if Some(id) == s.result {
                        s.pending = true;
                    }
                }
                Event::Stream(StreamEvent::Stopped { id, .. }) => {
                    if Some(id) == s.result {
                        // The client does not want answers: nothing more to do for it.
                        s.conn.close(now, varint(0), Bytes::new());
                        s.phase = Phase::Closing;
                    }
                }
                Event::Stream(_) | Event::DatagramsUnblocked => {}
            }
        }
        if s.pending && !self.pending.contains(&slot) {
            self.pending.push(slot);
        }
        if !s.dirty {
            s.dirty = true;
            self.dirty.push_back(slot);
        }
        if let Some(t) = s.conn.poll_timeout() {
            self.next_timeout = Some(self.next_timeout.map_or(t, |n| n.min(t)));
        }
        if drained {
            self.remove(slot);
        }
    }

    fn remove(&mut self, slot: usize) {
        let Some(s) = self.sessions[slot].take() else { return };
        self.counters.conns_closed_total += 1;
        self.sessions_open -= 1;
        if s.phase == Phase::Handshaking {
            self.handshakes -= 1;
        }
        if s.counted {
            release_client(&mut self.clients, s.client_id, 4 * self.config.limits.conns_max);
        }
        if let Some(n) = self.per_ip.get_mut(&s.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&s.ip);
            }
        }
        self.pending.retain(|&p| p != slot);
    }

    /// Reads hellos, datagrams and stream frames of the sessions that have some, and hands
    /// their records to `admit` (only while `admit.ready()`).
    /// Returns whether anything moved (a hello, a frame, a receipt or window written), so a
    /// loop whose engine is not ready for more does not count waiting frames as work.
    pub fn poll_records(&mut self, now: Instant, admit: &mut impl Admit) -> bool {
        let before = self.progress();
        let mut i = 0;
        while i < self.pending.len() {
            let slot = self.pending[i];
            let Some(s) = self.sessions[slot].as_mut() else {
                self.pending.swap_remove(i);
                continue;
            };
            s.pending = false;
            let ctx = Ctx {
                limits: &self.config.limits,
                auth: &self.config.auth,
                clients: &mut self.clients,
                counters: &mut self.counters,
                late: &mut self.late,
                frame_buf: &mut self.frame_buf,
                now_ns: now.saturating_duration_since(self.epoch).as_nanos() as u64,
            };
            let more = s.poll_records(now, slot, ctx, admit);
            s.pending |= more;
            if !s.dirty {
                s.dirty = true;
                self.dirty.push_back(slot);
            }
            if let Some(t) = s.conn.poll_timeout() {
                self.next_timeout = Some(self.next_timeout.map_or(t, |n| n.min(t)));
            }
            if s.pending {
                i += 1;
            } else {
                self.pending.swap_remove(i);
            }
            // Events raised by what was written (e.g. a close) are handled at once.
            self.process_conn(now, slot);
        }
        self.progress() != before
    }

    fn progress(&self) -> u64 {
        let c = &self.counters;
        c.frames_datagram_total
            + c.frames_stream_total
            + c.sessions_opened_total
            + c.sessions_refused_unauthorized_total
            + c.sessions_refused_overloaded_total
            + c.sessions_refused_bad_hello_total
            + c.receipts_datagram_total
            + c.receipts_stream_total
            + c.receipts_fallback_total
            + c.windows_pushed_total
            + c.proofs_pushed_total
    }

    /// A receipt the merger answered for a record [`Admit::admit`] took with `None`; receipts
    /// must come in the order of those `None`s.
    pub fn handle_late_receipt(&mut self, receipt: Receipt) {
        let Some(origin) = self.late.pop_front() else {
            self.counters.late_receipts_orphaned_total += 1;
            return;
        };
        match self.sessions.get_mut(origin.slot).and_then(Option::as_mut) {
            Some(s) if s.generation == origin.generation && s.phase == Phase::Open => {
                if origin.datagram {
                    s.dgram_receipts.push(receipt);
                } else {
                    s.stream_receipts.push(receipt);
                }
                note_window(&mut s.windows, &receipt);
                s.pending = true;
                if !self.pending.contains(&origin.slot) {
                    self.pending.push(origin.slot);
                }
            }
            _ => self.counters.late_receipts_orphaned_total += 1,
        }
    }

    /// A published window: its block and clearing `frame` goes on the result stream of every
    /// session that had a record accepted in it, and of every `subscribe_all` session.
    pub fn handle_window(&mut self, window_id: u64, frame: &[u8]) {
        for (slot, entry) in self.sessions.iter_mut().enumerate() {
            let Some(s) = entry.as_mut() else { continue };
            if s.phase != Phase::Open {
                continue;
            }
            while s.windows.front().is_some_and(|&w| w < window_id) {
                s.windows.pop_front();
            }
            let had_records = s.windows.front() == Some(&window_id);
            if had_records {
                s.windows.pop_front();
            }
            if had_records || s.subscribe_all {
                s.outbox.extend_from_slice(frame);
                self.counters.windows_pushed_total += 1;
                s.pending = true;
                if !self.pending.contains(&slot) {
                    self.pending.push(slot);
                }
            }
        }
    }

    /// A proof announcement (`docs/wire.md`, kind 0x84): `frame` goes on the result stream of
    /// every `subscribe_all` session. Sessions that only had records in the proven windows do
    /// not get it: the server forgets a session's windows once their results are pushed.
    pub fn handle_proof(&mut self, frame: &[u8]) {
        for (slot, entry) in self.sessions.iter_mut().enumerate() {
            let Some(s) = entry.as_mut() else { continue };
            if s.phase != Phase::Open || !s.subscribe_all {
                continue;
            }
            s.outbox.extend_from_slice(frame);
            self.counters.proofs_pushed_total += 1;
            s.pending = true;
            if !self.pending.contains(&slot) {
                self.pending.push(slot);
            }
        }
    }

    /// Closes every connection with `reason` (at shutdown); poll transmits to send the closes.
    pub fn close_all(&mut self, now: Instant, reason: Reason) {
        for slot in 0..self.sessions.len() {
            let Some(s) = self.sessions[slot].as_mut() else { continue };
            s.conn.close(now, varint(app_error(reason)), Bytes::new());
            self.process_conn(now, slot);
        }
    }

    /// Timers of every connection that are due, and refused sessions to close.
    pub fn handle_timeouts(&mut self, now: Instant) {
        if self.next_timeout.is_none_or(|t| t > now) {
            return;
        }
        self.next_timeout = None;
        for slot in 0..self.sessions.len() {
            let Some(s) = self.sessions[slot].as_mut() else { continue };
            if let Some((at, code)) = s.close_at
                && at <= now
            {
                s.close_at = None;
                if s.phase == Phase::AwaitHello {
                    self.counters.sessions_hello_timeout_total += 1;
                    s.phase = Phase::Closing;
                }
                s.conn.close(now, varint(code), Bytes::new());
            }
            if s.conn.poll_timeout().is_some_and(|t| t <= now) {
                s.conn.handle_timeout(now);
            }
            if let Some((at, _)) = s.close_at {
                self.next_timeout = Some(self.next_timeout.map_or(at, |n| n.min(at)));
            }
            self.process_conn(now, slot);
        }
    }

    /// The next UDP datagram(s) to send: `buf[..transmit.size]`, in segments of
    /// `transmit.segment_size` when GSO batched several.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if let Some((t, bytes)) = self.responses.pop_front() {
            buf.clear();
            buf.extend_from_slice(&bytes);
            return Some(t);
        }
        while let Some(&slot) = self.dirty.front() {
            let Some(s) = self.sessions.get_mut(slot).and_then(Option::as_mut) else {
                self.dirty.pop_front();
                continue;
            };
            buf.clear();
            if let Some(t) = s.conn.poll_transmit(now, GSO_SEGMENTS_MAX, buf) {
                return Some(t);
            }
            s.dirty = false;
            self.dirty.pop_front();
            self.process_conn(now, slot);
            // `process_conn` re-queues the session as dirty; it has nothing to send now.
            if let Some(s) = self.sessions.get_mut(slot).and_then(Option::as_mut)
                && self.dirty.back() == Some(&slot)
            {
                self.dirty.pop_back();
                s.dirty = false;
            }
        }
        None
    }
}

/// A session of `client_id` ended. Its bucket is kept for the client's next connection (a
/// reconnect does not refill it), unless the table holds more than `kept_max` clients.
fn release_client(clients: &mut HashMap<u64, ClientState>, client_id: u64, kept_max: usize) {
    if let Some(c) = clients.get_mut(&client_id) {
        c.conns = c.conns.saturating_sub(1);
        if c.conns == 0 && clients.len() > kept_max {
            clients.remove(&client_id);
        }
    }
}

fn note_window(windows: &mut VecDeque<u64>, receipt: &Receipt) {
    if receipt.status.is_ok() && receipt.window_id != 0 && windows.back() != Some(&receipt.window_id) {
        if windows.len() == SESSION_WINDOWS_MAX {
            windows.pop_front();
        }
        windows.push_back(receipt.window_id);
    }
}

/// One wire frame of a session: the frame's structure, then for each record the transport's
/// checks (a session must be open: `client_id` is `Some`; the record's client id must be
/// the session's; `take_token` must give a token) and the engine (`admit`). Every record's
/// answer goes to `answer` in record order: `Some(receipt)`, or `None` when the engine
/// answers later. `Err`: the frame is refused whole (nothing was answered).
///
/// This is the intake's handling of untrusted bytes after QUIC; the fuzz target
/// `quic_datagram` drives it with arbitrary datagram payloads.
pub fn handle_frame(
    bytes: &[u8],
    rx_ns: u64,
    client_id: Option<u64>,
    counters: &mut Counters,
    take_token: &mut dyn FnMut() -> bool,
    admit: &mut impl Admit,
    mut answer: impl FnMut(Option<Receipt>),
) -> Result<(), Reason> {
    for (record, ahead) in decode_frame(bytes)?.with_lookahead(PREFETCH_AHEAD) {
        for r in ahead {
            admit.prefetch(r);
        }
        let mut receipt = Receipt::for_record(record, rx_ns);
        let refusal = match client_id {
            None => {
                counters.records_unauthorized_total += 1;
                Some(Reason::Unauthorized)
            }
            Some(id) if record.kind().is_client_kind() && receipt.client_id != id => {
                counters.records_client_mismatch_total += 1;
                Some(Reason::ClientMismatch)
            }
            Some(_) if !take_token() => {
                counters.records_rate_limited_total += 1;
                Some(Reason::RateLimited)
            }
            Some(_) => None,
        };
        answer(match refusal {
            Some(reason) => {
                receipt.status = Err(reason);
                admit.refused(&receipt);
                Some(receipt)
            }
            None => admit.admit(rx_ns, record),
        });
    }
    Ok(())
}

/// Answers every record `overloaded` (after the transport's own checks): how a datagram is
/// handled while the engine cannot take a frame.
struct RefuseOverloaded<'a, A> {
    inner: &'a mut A,
    refused: u64,
}

impl<A: Admit> Admit for RefuseOverloaded<'_, A> {
    fn ready(&mut self) -> bool {
        true
    }

    fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>) -> Option<Receipt> {
        let mut receipt = Receipt::for_record(record, rx_ns);
        receipt.status = Err(Reason::Overloaded);
        self.inner.refused(&receipt);
        self.refused += 1;
        Some(receipt)
    }

    fn refused(&mut self, receipt: &Receipt) {
        self.inner.refused(receipt);
    }
}

/// What a session's record handling borrows from the server.
struct Ctx<'a> {
    limits: &'a Limits,
    auth: &'a Auth,
    clients: &'a mut HashMap<u64, ClientState>,
    counters: &'a mut Counters,
    late: &'a mut VecDeque<LateOrigin>,
    frame_buf: &'a mut Vec<u8>,
    now_ns: u64,
}

impl Session {
    /// Whether more is left to do.
    fn poll_records(&mut self, now: Instant, slot: usize, mut ctx: Ctx<'_>, admit: &mut impl Admit) -> bool {
        if self.phase == Phase::AwaitHello {
            self.read_hello(now, &mut ctx);
        }
        if self.phase == Phase::Open {
            self.drain_control(now);
        }
        let mut more = false;
        if matches!(self.phase, Phase::Open | Phase::AwaitHello) {
            more |= self.read_datagrams(slot, &mut ctx, admit);
            more |= self.read_streams(slot, &mut ctx, admit);
        }
        self.flush_receipts(&mut ctx);
        self.flush_outbox(now, &mut ctx);
        more
    }

    fn read_hello(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let Some(id) = self.control else { return };
        let mut finished = false;
        if let Ok(mut chunks) = self.conn.recv_stream(id).read(true) {
            loop {
                match chunks.next(fpn_wire::session::HELLO_FIXED_LEN + fpn_wire::session::API_KEY_LEN_MAX) {
                    Ok(Some(chunk)) => {
                        self.hello.extend_from_slice(&chunk.bytes);
                        if self.hello.len()
                            >= fpn_wire::session::HELLO_FIXED_LEN + fpn_wire::session::API_KEY_LEN_MAX
                        {
                            break;
                        }
                    }
                    Ok(None) => {
                        finished = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let _ = chunks.finalize();
        }
        let decided = match Hello::decode(&self.hello) {
            Ok((hello, _)) => {
                let client = ctx.auth.client_of(hello.api_key);
                match client {
                    None => Err(Reason::Unauthorized),
                    Some(client_id) => {
                        let state = ctx.clients.entry(client_id).or_insert_with(|| ClientState {
                            conns: 0,
                            tokens_n: u128::from(ctx.limits.burst) * 1_000_000_000,
                            topped_ns: ctx.now_ns,
                        });
                        if state.conns >= ctx.limits.conns_per_client {
                            Err(Reason::Overloaded)
                        } else {
                            state.conns += 1;
                            self.counted = true;
                            self.client_id = client_id;
                            self.subscribe_all = hello.subscribe_all();
                            Ok(())
                        }
                    }
                }
            }
            Err(HelloError::Incomplete(_)) if !finished => return,
            Err(HelloError::Incomplete(_)) => Err(Reason::Truncated),
            Err(HelloError::Refused(reason)) => Err(reason),
        };
        self.hello = Vec::new();
        let welcome = match decided {
            Ok(()) => Welcome {
                status: Ok(()),
                client_id: self.client_id,
                rate_per_s: ctx.limits.rate_per_s,
                burst: ctx.limits.burst,
                datagram_frame_max: ctx.limits.datagram_frame_max,
            },
            Err(reason) => Welcome::refused(reason),
        };
        debug_assert_eq!(welcome.encode()[4], SESSION_VERSION);
        let mut send = self.conn.send_stream(id);
        // 32 bytes on a fresh stream always fit its initial credit.
        let _ = send.write(&welcome.encode());
        match decided {
            Ok(()) => {
                ctx.counters.sessions_opened_total += 1;
                self.phase = Phase::Open;
                self.close_at = None;
                self.result = self.conn.streams().open(Dir::Uni);
                debug_assert!(self.result.is_some(), "the client allows a uni stream");
            }
            Err(reason) => {
                match reason {
                    Reason::Unauthorized => ctx.counters.sessions_refused_unauthorized_total += 1,
                    Reason::Overloaded => ctx.counters.sessions_refused_overloaded_total += 1,
                    _ => ctx.counters.sessions_refused_bad_hello_total += 1,
                }
                let _ = self.conn.send_stream(id).finish();
                self.phase = Phase::Closing;
                self.close_at = Some((now + REFUSED_LINGER, app_error(reason)));
            }
        }
    }

    /// After the welcome the control stream carries nothing; its end ends the session.
    fn drain_control(&mut self, now: Instant) {
        let Some(id) = self.control else { return };
        let mut closed = false;
        if let Ok(mut chunks) = self.conn.recv_stream(id).read(true) {
            loop {
                match chunks.next(usize::MAX) {
                    Ok(Some(_)) => {}
                    Err(quinn_proto::ReadError::Blocked) => break,
                    Ok(None) | Err(quinn_proto::ReadError::Reset(_)) => {
                        closed = true;
                        break;
                    }
                }
            }
            let _ = chunks.finalize();
        }
        if closed {
            self.conn.close(now, varint(0), Bytes::new());
            self.phase = Phase::Closing;
        }
    }

    fn read_datagrams(&mut self, slot: usize, ctx: &mut Ctx<'_>, admit: &mut impl Admit) -> bool {
        for _ in 0..RECORDS_BUDGET {
            // Asked per frame: one datagram's records must fit the engine's queues.
            let ready = admit.ready();
            let Some(payload) = self.conn.datagrams().recv() else { return false };
            ctx.counters.frames_datagram_total += 1;
            let rx_ns = self.last_rx_ns;
            if payload.len() > ctx.limits.datagram_frame_max as usize {
                self.refuse_frame(Reason::Oversized, rx_ns, true, ctx, admit);
                continue;
            }
            if ready {
                self.handle_frame(&payload, rx_ns, true, slot, ctx, admit);
            } else {
                let mut refuse = RefuseOverloaded { inner: admit, refused: 0 };
                self.handle_frame(&payload, rx_ns, true, slot, ctx, &mut refuse);
                ctx.counters.records_overloaded_total += refuse.refused;
            }
        }
        true
    }

    fn read_streams(&mut self, slot: usize, ctx: &mut Ctx<'_>, admit: &mut impl Admit) -> bool {
        let mut more = false;
        let mut i = 0;
        while i < self.uni.len() {
            let id = self.uni[i].id;
            let mut stream =
                std::mem::replace(&mut self.uni[i], UniIn { id, buf: Vec::new(), start: 0, finished: false });
            let mut stop: Option<Reason> = None;
            let mut frames = 0;
            // Compact what was handled, then read what QUIC has.
            if stream.start > 0 {
                stream.buf.drain(..stream.start);
                stream.start = 0;
            }
            if !stream.finished
                && let Ok(mut chunks) = self.conn.recv_stream(stream.id).read(true)
            {
                loop {
                    match chunks.next(usize::MAX) {
                        Ok(Some(chunk)) => stream.buf.extend_from_slice(&chunk.bytes),
                        Ok(None) => {
                            stream.finished = true;
                            break;
                        }
                        Err(quinn_proto::ReadError::Blocked) => break,
                        Err(quinn_proto::ReadError::Reset(_)) => {
                            stream.finished = true;
                            stream.buf.clear();
                            break;
                        }
                    }
                }
                let _ = chunks.finalize();
            }
            let rx_ns = self.last_rx_ns;
            loop {
                let rest = &stream.buf[stream.start..];
                if rest.len() < FRAME_HEADER_LEN {
                    break;
                }
                let len = match peek_frame_len(rest) {
                    Ok(len) if len > ctx.limits.stream_frame_max => Err(Reason::Oversized),
                    other => other,
                };
                let len = match len {
                    Ok(len) => len,
                    Err(reason) => {
                        stop = Some(reason);
                        break;
                    }
                };
                if rest.len() < len {
                    break;
                }
                if frames == RECORDS_BUDGET || !admit.ready() {
                    more = true;
                    break;
                }
                frames += 1;
                ctx.counters.frames_stream_total += 1;
                let frame = &stream.buf[stream.start..stream.start + len];
                if let Err(reason) = self.handle_frame_ref(frame, rx_ns, false, slot, ctx, admit) {
                    stop = Some(reason);
                    stream.start += len;
                    break;
                }
                stream.start += len;
            }
            if stop.is_none() && stream.finished && stream.buf.len() > stream.start {
                stop = Some(Reason::Truncated);
            }
            if let Some(reason) = stop {
                // A frame refused whole: its successors cannot be found safely.
                self.refuse_frame(reason, rx_ns, false, ctx, admit);
                ctx.counters.streams_stopped_total += 1;
                let _ = self.conn.recv_stream(stream.id).stop(varint(app_error(reason)));
                self.uni.swap_remove(i);
                continue;
            }
            if stream.finished && stream.buf.len() == stream.start {
                self.uni.swap_remove(i);
                continue;
            }
            self.uni[i] = stream;
            i += 1;
        }
        more
    }

    fn handle_frame(
        &mut self,
        bytes: &[u8],
        rx_ns: u64,
        datagram: bool,
        slot: usize,
        ctx: &mut Ctx<'_>,
        admit: &mut impl Admit,
    ) {
        if let Err(reason) = self.handle_frame_ref(bytes, rx_ns, datagram, slot, ctx, admit) {
            self.refuse_frame(reason, rx_ns, datagram, ctx, admit);
        }
    }

    /// One frame's records; `Err` if the frame is refused whole (not yet answered).
    fn handle_frame_ref(
        &mut self,
        bytes: &[u8],
        rx_ns: u64,
        datagram: bool,
        slot: usize,
        ctx: &mut Ctx<'_>,
        admit: &mut impl Admit,
    ) -> Result<(), Reason> {
        let client_id = (self.phase == Phase::Open).then_some(self.client_id);
        let Ctx { limits, clients, counters, now_ns, late, .. } = ctx;
        let mut bucket = || take_token(limits, clients, *now_ns, self.client_id);
        let (dgram, stream) = (&mut self.dgram_receipts, &mut self.stream_receipts);
        let windows = &mut self.windows;
        let generation = self.generation;
        handle_frame(bytes, rx_ns, client_id, counters, &mut bucket, admit, |answered| match answered {
            Some(r) => {
                note_window(windows, &r);
                if datagram { dgram.push(r) } else { stream.push(r) }
            }
            None => late.push_back(LateOrigin { slot, generation, datagram }),
        })
    }

    fn refuse_frame(
        &mut self,
        reason: Reason,
        rx_ns: u64,
        datagram: bool,
        ctx: &mut Ctx<'_>,
        admit: &mut impl Admit,
    ) {
        ctx.counters.frames_refused_total += 1;
        let r = Receipt::frame_refused(reason, rx_ns);
        admit.refused(&r);
        if datagram {
            self.dgram_receipts.push(r);
        } else {
            self.stream_receipts.push(r);
        }
    }

    /// Packs queued receipts: datagram ones into datagrams (or the result stream when the
    /// datagram send buffer is full), stream ones into the result stream.
    fn flush_receipts(&mut self, ctx: &mut Ctx<'_>) {
        if !self.dgram_receipts.is_empty() {
            let size =
                self.conn.datagrams().max_size().unwrap_or(0).min(ctx.limits.datagram_frame_max as usize);
            let per_frame = size.saturating_sub(FRAME_HEADER_LEN) / RECEIPT_LEN;
            let mut start = 0;
            while start < self.dgram_receipts.len() {
                let end = (start + per_frame.max(1)).min(self.dgram_receipts.len());
                ctx.frame_buf.clear();
                let mut w = FrameWriter::new(ctx.frame_buf, u32::MAX as usize);
                for r in &self.dgram_receipts[start..end] {
                    w.push_receipt(r).expect("room for the chunk");
                }
                w.finish();
                let n = (end - start) as u64;
                let sent = per_frame > 0
                    && match self.conn.datagrams().send(Bytes::copy_from_slice(ctx.frame_buf), false) {
                        Ok(()) => true,
                        Err(SendDatagramError::Blocked(_))
                        | Err(SendDatagramError::TooLarge)
                        | Err(SendDatagramError::Disabled)
                        | Err(SendDatagramError::UnsupportedByPeer) => false,
                    };
                if sent {
                    ctx.counters.receipts_datagram_total += n;
                } else {
                    ctx.counters.receipts_fallback_total += n;
                    self.outbox.extend_from_slice(ctx.frame_buf);
                }
                start = end;
            }
            self.dgram_receipts.clear();
        }
        if !self.stream_receipts.is_empty() {
            for chunk in self.stream_receipts.chunks(u16::MAX as usize) {
                let mut w = FrameWriter::new(&mut self.outbox, u32::MAX as usize);
                for r in chunk {
                    w.push_receipt(r).expect("a u32-sized frame holds 65535 receipts");
                }
                w.finish();
            }
            ctx.counters.receipts_stream_total += self.stream_receipts.len() as u64;
            self.stream_receipts.clear();
        }
    }

    fn flush_outbox(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let Some(id) = self.result else {
            self.outbox.clear();
            self.sent = 0;
            return;
        };
        while self.sent < self.outbox.len() {
            match self.conn.send_stream(id).write(&self.outbox[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(WriteError::Blocked) => break,
                Err(_) => {
                    // Stopped or closed: nobody reads the answers any more.
                    self.outbox.clear();
                    self.sent = 0;
                    return;
                }
            }
        }
        if self.sent == self.outbox.len() {
            self.outbox.clear();
            self.sent = 0;
        } else if self.outbox.len() - self.sent > ctx.limits.result_backlog_max {
            ctx.counters.sessions_backlog_closed_total += 1;
            self.conn.close(now, varint(app_error(Reason::Overloaded)), Bytes::new());
            self.phase = Phase::Closing;
            self.outbox = Vec::new();
            self.sent = 0;
        } else if self.sent > (1 << 20) {
            self.outbox.drain(..self.sent);
            self.sent = 0;
        }
    }
}

/// Takes one token from `client_id`'s bucket.
fn take_token(l: &Limits, clients: &mut HashMap<u64, ClientState>, now_ns: u64, client_id: u64) -> bool {
    if l.rate_per_s == 0 {
        return true;
    }
    let Some(c) = clients.get_mut(&client_id) else { return true };
    const UNIT: u128 = 1_000_000_000;
    let elapsed = now_ns.saturating_sub(c.topped_ns);
    c.topped_ns = now_ns;
    let cap = u128::from(l.burst.max(1)) * UNIT;
    c.tokens_n = (c.tokens_n + u128::from(elapsed) * u128::from(l.rate_per_s)).min(cap);
    if c.tokens_n >= UNIT {
        c.tokens_n -= UNIT;
        true
    } else {
        false
    }
}
