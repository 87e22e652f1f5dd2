//! The sans-IO `fpn/1` server (`docs/transport.md`): a quinn-proto [`Endpoint`] and its
//! connections, plus the session logic around them. It performs no I/O and reads no clock:
//! the driver hands it UDP datagrams with their receive time and `now`, and sends what it
//! polls.
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
//!
//! This file admits connections and routes to sessions; the rest is one concern a file:
//! `session` (one connection's state machine), `hello` (the preamble), `streams` (frames
//! off uni streams), `records` (the checks on each record, [`handle_frame`]), `receipts`
//! (receipt queues), `pack` (receipt frames), `watermark` (receipt mode `refusals`),
//! `outbox` (the result stream's backlog), `limits` (keys, connection counts, token
//! buckets), `counters`.
//!
//! Public for the other transport of `fpn/1` (`fpn-webtransport`), so each rule is written
//! once: `limits` (the connection and client books), `hello` (the decision on a hello and
//! its welcome), `records` ([`handle_frame`], [`RefuseOverloaded`]), `pack` (receipt frames)
//! and `windows` (which published windows go to a session).

mod counters;
pub mod hello;
pub mod limits;
mod outbox;
pub mod pack;
mod receipts;
pub mod records;
mod session;
mod streams;
mod watermark;
pub mod windows;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fpn_wire::session::app_error;
use fpn_wire::{Reason, Receipt};
use quinn_proto::{
    ConnectionHandle, DatagramEvent, Endpoint, EndpointConfig, IdleTimeout, Incoming, TransportConfig, VarInt,
};

pub use counters::Counters;
pub use hello::ReceiptMode;
pub use limits::{Auth, Clients, ConnAdmission, Connections, Limits};
pub use quinn_proto::Transmit;
pub use records::{Admit, PREFETCH_AHEAD, RefuseOverloaded, handle_frame};
pub use watermark::{WATERMARK_INTERVAL, WATERMARK_RANGES_MAX, WATERMARK_RECORDS_MAX};
pub use windows::{SESSION_WINDOWS_MAX, SessionWindows, WindowResults};

use crate::tls::{Identity, TlsError, server_crypto};
use receipts::Path;
use session::{Ctx, Phase, Session, varint};

/// Datagrams one transmit may carry with GSO, at most.
pub const GSO_SEGMENTS_MAX: usize = 16;
/// Datagrams and stream frames handled per session per [`Server::poll_records`] call.
pub const RECORDS_BUDGET: usize = 256;
/// How long a refused session stays open so the refused welcome can reach the client.
pub const REFUSED_LINGER: Duration = Duration::from_millis(50);
/// The default of [`Limits::receipts_held_max`]: receipts one path of a session (its
/// datagrams, or its streams) may hold behind a record the engine answers later or behind
/// the input log's next group commit, before the session stops reading that path until they
/// go. Past it a session's datagrams wait in QUIC's 1 MiB receive buffer, which drops the
/// oldest when full (`Counters::datagrams_unread_total`): at 4,096 a one-connection blast
/// with group commit lost 62 % of its records there, at 65,536 6–8 % (none with four
/// connections; `BENCHMARKS.md`, "Scale-out (issue 16)"). Bounds a path's receipt queue: this many held (48 bytes a slot,
/// 3 MiB), plus the one frame read past it and the receipts of one poll, which go out at its
/// end.
pub const RECEIPTS_HELD_MAX: usize = 65_536;

/// Everything the server needs.
#[derive(Debug)]
pub struct ServerConfig {
    pub auth: Auth,
    pub limits: Limits,
    /// Path MTU discovery (the driver sets don't-fragment on its socket).
    pub mtu_discovery: bool,
}

/// Where a late receipt goes: the session (by slot, and its generation, since a slot is
/// reused) and the path its record came by.
#[derive(Debug, Clone, Copy)]
struct LateOrigin {
    slot: usize,
    generation: u64,
    path: Path,
}

/// The sans-IO server. See the module doc for the call order.
pub struct Server {
    endpoint: Endpoint,
    server_config: Arc<quinn_proto::ServerConfig>,
    config: ServerConfig,
    /// Indexed by quinn-proto's connection handle.
    sessions: Vec<Option<Session>>,
    conns: Connections,
    clients: Clients,
    /// Counts sessions ever accepted, to tell a reused slot from the session it held.
    generation: u64,
    /// Sessions with data for `poll_records`.
    pending: Vec<usize>,
    /// Sessions that may have packets to send.
    dirty: VecDeque<usize>,
    /// Where the records answered late went, in the order `Admit::admit` returned `None`.
    late: VecDeque<LateOrigin>,
    /// The engine's input log is durable up to here; receipts tagged above it wait.
    durable: u64,
    /// Sessions whose receipts wait (for the log or a late answer), flushed again when
    /// `durable` moves.
    holding: Vec<usize>,
    /// Stateless packets to send (refusals, Retry, version negotiation).
    responses: VecDeque<(Transmit, Vec<u8>)>,
    next_timeout: Option<Instant>,
    /// The published window's results per client (`windows::WindowResults`), reused.
    results: windows::WindowResults,
    scratch: Vec<u8>,
    frame_buf: Vec<u8>,
    /// `now` at creation: token buckets count time from it.
    epoch: Instant,
    pub counters: Counters,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("sessions_open", &self.conns.open()).finish_non_exhaustive()
    }
}

impl Server {
    /// A server with `identity` as its certificate. Allocates the session table for
    /// `limits.conns_max` connections.
    pub fn new(identity: &Identity, config: ServerConfig, now: Instant) -> Result<Server, TlsError> {
        let server_config = Arc::new(quic_server_config(identity, &config)?);
        // No fixed-bit greasing (RFC 9287): every packet to us then has the bit set, which is
        // what `handle_datagram` checks to drop non-QUIC bytes early.
        let mut endpoint_config = EndpointConfig::default();
        endpoint_config.grease_quic_bit(false);
        let endpoint =
            Endpoint::new(Arc::new(endpoint_config), Some(server_config.clone()), config.mtu_discovery, None);
        let conns_max = config.limits.conns_max;
        Ok(Server {
            endpoint,
            server_config,
            config,
            sessions: Vec::with_capacity(conns_max),
            conns: Connections::with_capacity(conns_max),
            clients: Clients::with_capacity(conns_max),
            generation: 0,
            pending: Vec::with_capacity(conns_max),
            dirty: VecDeque::with_capacity(conns_max),
            durable: 0,
            holding: Vec::with_capacity(conns_max),
            late: VecDeque::with_capacity(1024),
            responses: VecDeque::with_capacity(64),
            next_timeout: None,
            results: windows::WindowResults::default(),
            scratch: Vec::with_capacity(64 * 1024),
            frame_buf: Vec::with_capacity(64 * 1024),
            epoch: now,
            counters: Counters::default(),
        })
    }

    /// Connections the server holds (handshaking, open or closing).
    pub fn connections(&self) -> usize {
        self.conns.open()
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
            Some(DatagramEvent::Response(t)) => self.respond(t),
            None => {}
        }
    }

    /// A new connection: refused, sent through Retry, or accepted into a session.
    fn handle_incoming(&mut self, now: Instant, rx_ns: u64, incoming: Incoming) {
        let ip = incoming.remote_address().ip();
        let admission = self.conns.admission(ip, incoming.remote_address_validated(), &self.config.limits);
        self.scratch.clear();
        match admission {
            ConnAdmission::RefuseMax | ConnAdmission::RefuseIp => {
                if admission == ConnAdmission::RefuseMax {
                    self.counters.conns_refused_max_total += 1;
                } else {
                    self.counters.conns_refused_ip_total += 1;
                }
                let t = self.endpoint.refuse(incoming, &mut self.scratch);
                self.respond(t);
            }
            ConnAdmission::Retry => match self.endpoint.retry(incoming, &mut self.scratch) {
                Ok(t) => {
                    self.counters.retries_total += 1;
                    self.respond(t);
                }
                Err(e) => self.endpoint.ignore(e.into_incoming()),
            },
            ConnAdmission::Accept => self.accept(now, rx_ns, ip, incoming),
        }
    }

    fn accept(&mut self, now: Instant, rx_ns: u64, ip: IpAddr, incoming: Incoming) {
        match self.endpoint.accept(incoming, now, &mut self.scratch, Some(self.server_config.clone())) {
            Ok((ch, conn)) => {
                self.counters.conns_accepted_total += 1;
                self.generation += 1;
                if self.sessions.len() <= ch.0 {
                    self.sessions.resize_with(ch.0 + 1, || None);
                }
                debug_assert!(self.sessions[ch.0].is_none(), "quinn-proto reused a live handle");
                self.sessions[ch.0] = Some(Session::new(conn, self.generation, ip, rx_ns));
                self.conns.add(ip);
                self.process_conn(now, ch.0);
            }
            Err(e) => {
                self.counters.handshakes_failed_total += 1;
                if let Some(t) = e.response {
                    self.respond(t);
                }
            }
        }
    }

    /// Queues the stateless packet in `scratch`.
    fn respond(&mut self, t: Transmit) {
        let bytes = self.scratch[..t.size].to_vec();
        self.responses.push_back((t, bytes));
    }

    /// After input to a connection: endpoint events, application events, and bookkeeping.
    fn process_conn(&mut self, now: Instant, slot: usize) {
        let Some(s) = self.sessions[slot].as_mut() else { return };
        let mut drained = false;
        while let Some(ev) = s.conn.poll_endpoint_events() {
            drained |= ev.is_drained();
            if let Some(back) = self.endpoint.handle_event(ConnectionHandle(slot), ev) {
                s.conn.handle_event(back);
            }
        }
        if s.handle_events(now, &self.config.limits, &mut self.counters) {
            self.conns.handshake_ended();
        }
        if s.pending && !self.pending.contains(&slot) {
            self.pending.push(slot);
        }
        if !s.dirty {
            s.dirty = true;
            self.dirty.push_back(slot);
        }
        // The session's own deadline (the hello's, a refused session's linger) is a timer
        // too, whatever the connection's timers are.
        let session_timers = s.close_at.map(|(at, _)| at).into_iter().chain(s.watermark_due());
        for t in s.conn.poll_timeout().into_iter().chain(session_timers) {
            self.next_timeout = Some(self.next_timeout.map_or(t, |n| n.min(t)));
        }
        if drained {
            self.remove(slot);
        }
    }

    fn remove(&mut self, slot: usize) {
        let Some(s) = self.sessions[slot].take() else { return };
        self.counters.conns_closed_total += 1;
        self.counters.datagrams_unread_total +=
            s.conn.stats().frame_rx.datagram.saturating_sub(s.datagrams_read);
        self.conns.remove(s.ip, s.phase == Phase::Handshaking);
        if s.counted {
            self.clients.close_session(s.client_id);
        }
        self.pending.retain(|&p| p != slot);
    }

    /// Reads hellos, datagrams and stream frames of the sessions that have some, and hands
    /// their records to `admit` (only while `admit.ready()`).
    /// Returns whether anything moved (a hello, a frame, a receipt or window written), so a
    /// loop whose engine is not ready for more does not count waiting frames as work.
    pub fn poll_records(&mut self, now: Instant, admit: &mut impl Admit) -> bool {
        let before = self.counters.progress();
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
                durable: self.durable,
            };
            let more = s.poll_records(now, slot, ctx, admit);
            s.pending |= more;
            if s.holds_receipts() && !self.holding.contains(&slot) {
                self.holding.push(slot);
            }
            if !s.dirty {
                s.dirty = true;
                self.dirty.push_back(slot);
            }
            if s.pending {
                i += 1;
            } else {
                self.pending.swap_remove(i);
            }
            // Events raised by what was written (e.g. a close) are handled at once, and the
            // session's timers scheduled.
            self.process_conn(now, slot);
        }
        self.counters.progress() != before
    }

    /// The engine's input log is durable up to `position` ([`Admit::durable_at`]): receipts
    /// that waited for it may go. Call once per loop iteration, before [`Server::poll_records`].
    pub fn set_durable(&mut self, position: u64) {
        if position <= self.durable {
            return;
        }
        self.durable = position;
        for slot in self.holding.drain(..) {
            if let Some(s) = self.sessions.get_mut(slot).and_then(Option::as_mut) {
                s.pending = true;
                if !self.pending.contains(&slot) {
                    self.pending.push(slot);
                }
            }
        }
    }

    /// A receipt the merger answered for a record [`Admit::admit`] took with `None`; receipts
    /// must come in the order of those `None`s. It fills the oldest hole in its session's
    /// receipt queue for the path the record came by, which releases the receipts behind it.
    /// A session that closed meanwhile, or a receipt nobody waits for, is counted orphaned.
    pub fn handle_late_receipt(&mut self, receipt: Receipt) {
        let Some(origin) = self.late.pop_front() else {
            self.counters.late_receipts_orphaned_total += 1;
            return;
        };
        let session = self.sessions.get_mut(origin.slot).and_then(Option::as_mut);
        if session.is_some_and(|s| s.handle_late_receipt(origin.generation, origin.path, receipt)) {
            self.mark_pending(origin.slot);
        } else {
            self.counters.late_receipts_orphaned_total += 1;
        }
    }

    fn mark_pending(&mut self, slot: usize) {
        if !self.pending.contains(&slot) {
            self.pending.push(slot);
        }
    }

    /// A published window: its block and clearing `frame` goes on the result stream of every
    /// `subscribe_all` session, and its excerpt for the session's client (that client's block
    /// entries, `fpn_wire::excerpt`) on that of every other session that had a record
    /// accepted in it.
    pub fn handle_window(&mut self, window_id: u64, frame: &[u8]) {
        self.results.begin();
        for slot in 0..self.sessions.len() {
            let Some(s) = self.sessions[slot].as_mut() else { continue };
            if s.handle_window(window_id, frame, &mut self.results) {
                self.counters.windows_pushed_total += 1;
                self.mark_pending(slot);
            }
        }
    }

    /// A proof announcement (`docs/wire.md`, kind 0x84): `frame` goes on the result stream of
    /// every `subscribe_all` session. Sessions that only had records in the proven windows do
    /// not get it: the server forgets a session's windows once their results are pushed.
    pub fn handle_proof(&mut self, frame: &[u8]) {
        for slot in 0..self.sessions.len() {
            let Some(s) = self.sessions[slot].as_mut() else { continue };
            if s.handle_proof(frame) {
                self.counters.proofs_pushed_total += 1;
                self.mark_pending(slot);
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
            s.handle_timeout(now, &self.config.limits, &mut self.counters);
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

/// quinn-proto's server config from ours: TLS (ALPN `fpn/1` only), stream and datagram
/// windows, the idle timeout, the connection limit, no migration.
fn quic_server_config(
    identity: &Identity,
    config: &ServerConfig,
) -> Result<quinn_proto::ServerConfig, TlsError> {
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
    Ok(server_config)
}
