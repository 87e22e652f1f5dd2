//! The `fpn/1` sessions of the endpoint, sans-IO: connection counts, hello and welcome,
//! per-client token buckets, the transport's per-record checks (`fpn_quic::handle_frame`),
//! frames to the engine's ring, receipts packed into datagrams or the result stream, window
//! and proof fan-out. The driver (`endpoint`) does the I/O and calls in; tests drive it in
//! memory.
//!
//! The rules are the raw QUIC server's own, taken from `fpn_quic::server`: the connection
//! and client books (`Connections`, `Clients`: limits, token buckets), the decision on a
//! hello and its welcome (`hello`), the per-record checks (`handle_frame`,
//! `RefuseOverloaded`), receipt packing (`pack`) and which windows reach a session
//! (`SessionWindows`). What is here is the session table and the engine's ring.
//!
//! Call order for one session: [`Core::open_session`] once its CONNECT is accepted;
//! [`Core::handle_hello`] with the control stream's bytes until it answers; then
//! [`Core::handle_frame`] per frame; [`Core::handle_answer`] for what the engine sends back;
//! [`Core::flush`] after any of these; [`Core::close_session`] at the end.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use fpn_quic::server::hello::{self, Bound};
use fpn_quic::server::pack::{pack_datagram_receipts, pack_stream_receipts};
use fpn_quic::server::{
    Clients, ConnAdmission, Connections, RefuseOverloaded, SessionWindows, WindowResults,
};
use fpn_quic::{Admit, Auth, Limits};
use fpn_wire::session::Welcome;
use fpn_wire::{Reason, Receipt, RecordRef};
use tokio::sync::Notify;

use crate::engine::{FrameIn, SessionKey, ToSession, Via};
use crate::metrics::Counters;

/// How a session sends HTTP/3 datagrams.
pub trait DatagramPort {
    /// Largest payload one datagram can carry now (0: none can be sent).
    fn max_size(&self) -> usize;
    /// Sends `payload` if the connection has buffer room for it without discarding an
    /// earlier datagram (quinn discards the oldest to make room); `false`: not sent.
    fn try_send(&mut self, payload: Bytes) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    AwaitHello,
    Open,
    Closing,
}

/// What became of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameOutcome {
    /// Handled: forwarded, or answered by the transport.
    Done,
    /// A stream frame that must wait: the engine's ring is full. Offer it again later.
    Wait,
    /// Refused whole (answered): a stream must be stopped with this reason.
    Refused(Reason),
}

/// The hello's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloOutcome {
    /// More bytes are needed.
    Incomplete,
    /// Write this welcome; if refused, close the session after it.
    Answer(Welcome),
}

struct Session {
    generation: u32,
    phase: Phase,
    client_id: u64,
    subscribe_all: bool,
    counted: bool,
    dgram_receipts: Vec<Receipt>,
    stream_receipts: Vec<Receipt>,
    windows: SessionWindows,
    /// Result-stream bytes the writer has not taken yet.
    outbox: Vec<u8>,
    port: Box<dyn DatagramPort>,
    /// Set when the session must end, with the reason (`None`: a normal close).
    close: Option<Option<Reason>>,
    /// Wakes the session's tasks: its result-stream writer and its connection task.
    wake: Rc<Notify>,
    dirty: bool,
}

/// The sessions of one endpoint.
pub struct Core {
    auth: Auth,
    limits: Limits,
    sessions: Vec<Option<Session>>,
    free: Vec<u32>,
    generation: u32,
    clients: Clients,
    conns: Connections,
    frames: rtrb::Producer<FrameIn>,
    dirty: Vec<u32>,
    epoch: Instant,
    verdicts: Vec<Option<Receipt>>,
    frame_buf: Vec<u8>,
    /// The published window's results per client (block excerpts), reused.
    results: WindowResults,
    /// `fpn_quic::handle_frame` counts here; folded into `counters`.
    quic: fpn_quic::Counters,
    pub counters: Counters,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("conns", &self.conns.open()).finish_non_exhaustive()
    }
}

impl Core {
    pub fn new(auth: Auth, limits: Limits, frames: rtrb::Producer<FrameIn>, now: Instant) -> Core {
        let conns_max = limits.conns_max;
        Core {
            auth,
            limits,
            sessions: Vec::with_capacity(conns_max),
            free: Vec::with_capacity(conns_max),
            generation: 0,
            clients: Clients::with_capacity(conns_max),
            conns: Connections::with_capacity(conns_max),
            frames,
            dirty: Vec::with_capacity(conns_max),
            epoch: now,
            verdicts: Vec::with_capacity(256),
            frame_buf: Vec::with_capacity(2048),
            results: WindowResults::default(),
            quic: fpn_quic::Counters::default(),
            counters: Counters::default(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the engine's ring has room for a frame now.
    pub fn engine_has_room(&self) -> bool {
        self.frames.slots() > 0
    }

    /// A new QUIC connection from `ip` (`validated`: its address passed a Retry): accepted
    /// and counted (it is handshaking), sent through a Retry, or refused at a limit. The
    /// driver counts the Retry it sends.
    pub fn open_connection(&mut self, ip: IpAddr, validated: bool) -> ConnAdmission {
        let admission = self.conns.admission(ip, validated, &self.limits);
        match admission {
            ConnAdmission::Accept => {
                self.conns.add(ip);
                self.counters.conns_accepted_total += 1;
                self.counters.conns_open = self.conns.open() as u64;
            }
            ConnAdmission::RefuseMax => self.counters.conns_refused_max_total += 1,
            ConnAdmission::RefuseIp => self.counters.conns_refused_ip_total += 1,
            ConnAdmission::Retry => {}
        }
        admission
    }

    /// An accepted connection's handshake ended (connected or failed).
    pub fn handshake_ended(&mut self) {
        self.conns.handshake_ended();
    }

    /// An accepted connection ended; `handshaking` if its handshake never ended.
    pub fn close_connection(&mut self, ip: IpAddr, handshaking: bool) {
        self.conns.remove(ip, handshaking);
        self.counters.conns_open = self.conns.open() as u64;
    }

    /// A WebTransport session accepted on a connection: it awaits its hello.
    pub fn open_session(&mut self, port: Box<dyn DatagramPort>, wake: Rc<Notify>) -> SessionKey {
        self.generation = self.generation.wrapping_add(1);
        let session = Session {
            generation: self.generation,
            phase: Phase::AwaitHello,
            client_id: 0,
            subscribe_all: false,
            counted: false,
            dgram_receipts: Vec::new(),
            stream_receipts: Vec::new(),
            windows: SessionWindows::default(),
            outbox: Vec::new(),
            port,
            close: None,
            wake,
            dirty: false,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.sessions[slot as usize] = Some(session);
                slot
            }
            None => {
                self.sessions.push(Some(session));
                (self.sessions.len() - 1) as u32
            }
        };
        SessionKey { slot, generation: self.generation }
    }

    fn session(&mut self, key: SessionKey) -> Option<&mut Session> {
        self.sessions.get_mut(key.slot as usize)?.as_mut().filter(|s| s.generation == key.generation)
    }

    pub fn phase(&mut self, key: SessionKey) -> Option<Phase> {
        self.session(key).map(|s| s.phase)
    }

    /// The session ended (its connection closed): its client's connection is released.
    pub fn close_session(&mut self, key: SessionKey) {
        let Some(s) = self.session(key) else { return };
        let (counted, client_id) = (s.counted, s.client_id);
        self.sessions[key.slot as usize] = None;
        self.free.push(key.slot);
        self.dirty.retain(|&d| d != key.slot);
        self.counters.sessions_closed_total += 1;
        if counted {
            self.clients.close_session(client_id);
        }
    }

    /// Asks the session to end (the driver closes its connection); `reason` is the refusal,
    /// if any.
    pub fn request_close(&mut self, key: SessionKey, reason: Option<Reason>) {
        if let Some(s) = self.session(key) {
            s.phase = Phase::Closing;
            s.close.get_or_insert(reason);
            s.wake.notify_waiters();
        }
    }

    /// The close the session was asked for: `Some(reason)` once requested.
    pub fn close_requested(&mut self, key: SessionKey) -> Option<Option<Reason>> {
        self.session(key).map_or(Some(None), |s| s.close)
    }

    /// No hello in time: the session is closed `unauthorized`.
    pub fn hello_timeout(&mut self, key: SessionKey) {
        if self.phase(key) == Some(Phase::AwaitHello) {
            self.counters.sessions_hello_timeout_total += 1;
            self.request_close(key, Some(Reason::Unauthorized));
        }
    }

    /// The control stream's bytes so far (`finished`: the stream ended).
    pub fn handle_hello(
        &mut self,
        key: SessionKey,
        bytes: &[u8],
        finished: bool,
        now: Instant,
    ) -> HelloOutcome {
        let now_ns = self.now_ns(now);
        let Some(s) = self.sessions.get_mut(key.slot as usize).and_then(Option::as_mut) else {
            return HelloOutcome::Incomplete;
        };
        if s.generation != key.generation || s.phase != Phase::AwaitHello {
            return HelloOutcome::Incomplete;
        }
        // Receipt mode `refusals` is not run here (docs/webtransport.md says why): a hello that
        // asks for it is refused `reserved_nonzero` before it counts a session.
        let decided =
            hello::decide(bytes, finished, &self.auth, &mut self.clients, &self.limits, now_ns, false);
        let Some(decided) = decided else { return HelloOutcome::Incomplete };
        let c = &mut self.counters;
        match decided {
            Ok(Bound { client_id, subscribe_all, .. }) => {
                c.sessions_opened_total += 1;
                (s.counted, s.client_id, s.subscribe_all) = (true, client_id, subscribe_all);
                s.phase = Phase::Open;
            }
            Err(reason) => {
                match reason {
                    Reason::Unauthorized => c.sessions_refused_unauthorized_total += 1,
                    Reason::Overloaded => c.sessions_refused_overloaded_total += 1,
                    _ => c.sessions_refused_bad_hello_total += 1,
                }
                s.phase = Phase::Closing;
            }
        }
        // What this session's path carries in one datagram, at most the configured maximum.
        let datagram_frame_max = s.port.max_size().min(usize::from(self.limits.datagram_frame_max));
        HelloOutcome::Answer(hello::welcome_for(decided, &self.limits, datagram_frame_max as u16))
    }

    fn now_ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// One frame of a session: a datagram's payload, or one whole frame cut from a stream
    /// (the driver finds its end with `fpn_wire::peek_frame_len` and refuses a frame over
    /// `stream_frame_max` with [`Core::refuse_frame`]).
    pub fn handle_frame(
        &mut self,
        key: SessionKey,
        via: Via,
        frame: Bytes,
        rx_ns: u64,
        now: Instant,
    ) -> FrameOutcome {
        let now_ns = self.now_ns(now);
        let room = self.engine_has_room();
        if via == Via::Stream && !room {
            self.counters.stream_waits_total += 1;
            return FrameOutcome::Wait;
        }
        let Some(s) = self.sessions.get_mut(key.slot as usize).and_then(Option::as_mut) else {
            return FrameOutcome::Done;
        };
        if s.generation != key.generation || s.phase == Phase::Closing {
            return FrameOutcome::Done;
        }
        match via {
            Via::Datagram => self.counters.frames_datagram_total += 1,
            Via::Stream => self.counters.frames_stream_total += 1,
        }
        self.counters.rx_ns_last = rx_ns;
        if via == Via::Datagram && frame.len() > usize::from(self.limits.datagram_frame_max) {
            self.refuse_frame(key, via, Reason::Oversized, rx_ns);
            return FrameOutcome::Done;
        }
        let client_id = (s.phase == Phase::Open).then_some(s.client_id);
        let (limits, clients, bucket_client) = (&self.limits, &mut self.clients, s.client_id);
        let mut bucket = || clients.take_token(limits, now_ns, bucket_client);
        let verdicts = &mut self.verdicts;
        verdicts.clear();
        let result = if room {
            fpn_quic::handle_frame(
                &frame,
                rx_ns,
                client_id,
                &mut self.quic,
                &mut bucket,
                &mut Defer,
                |a, _| verdicts.push(a),
            )
        } else {
            let mut defer = Defer;
            let mut refuse = RefuseOverloaded::new(&mut defer);
            let r = fpn_quic::handle_frame(
                &frame,
                rx_ns,
                client_id,
                &mut self.quic,
                &mut bucket,
                &mut refuse,
                |a, _| verdicts.push(a),
            );
            self.counters.records_overloaded_total += refuse.refused;
            r
        };
        self.fold_quic_counters();
        if let Err(reason) = result {
            self.refuse_frame(key, via, reason, rx_ns);
            return FrameOutcome::Refused(reason);
        }
        let engine_records = self.verdicts.iter().filter(|v| v.is_none()).count();
        if engine_records == 0 {
            let s = self.sessions[key.slot as usize].as_mut().expect("checked above");
            let out = if via == Via::Datagram { &mut s.dgram_receipts } else { &mut s.stream_receipts };
            out.extend(self.verdicts.iter().flatten());
            mark_dirty(&mut self.dirty, s, key.slot);
            return FrameOutcome::Done;
        }
        let transport =
            if engine_records == self.verdicts.len() { Vec::new() } else { self.verdicts.clone() };
        let records = self.verdicts.len() as u16;
        let item = FrameIn { session: key, rx_ns, via, frame, records, transport };
        if self.frames.push(item).is_err() {
            unreachable!("room was checked and only this thread pushes");
        }
        self.counters.records_forwarded_total += engine_records as u64;
        FrameOutcome::Done
    }

    /// A frame refused whole: one receipt with the reason.
    pub fn refuse_frame(&mut self, key: SessionKey, via: Via, reason: Reason, rx_ns: u64) {
        self.counters.frames_refused_total += 1;
        if via == Via::Stream {
            self.counters.streams_stopped_total += 1;
        }
        let Some(s) = self.sessions.get_mut(key.slot as usize).and_then(Option::as_mut) else { return };
        let r = Receipt::frame_refused(reason, rx_ns);
        match via {
            Via::Datagram => s.dgram_receipts.push(r),
            Via::Stream => s.stream_receipts.push(r),
        }
        mark_dirty(&mut self.dirty, s, key.slot);
    }

    fn fold_quic_counters(&mut self) {
        let q = std::mem::take(&mut self.quic);
        let c = &mut self.counters;
        c.records_rate_limited_total += q.records_rate_limited_total;
        c.records_client_mismatch_total += q.records_client_mismatch_total;
        c.records_unauthorized_total += q.records_unauthorized_total;
    }

    /// One answer of the engine.
    pub fn handle_answer(&mut self, answer: ToSession) {
        match answer {
            ToSession::Receipt { session, via, receipt } => {
                let Some(s) = self.sessions.get_mut(session.slot as usize).and_then(Option::as_mut) else {
                    self.counters.receipts_orphaned_total += 1;
                    return;
                };
                if s.generation != session.generation || s.phase != Phase::Open {
                    self.counters.receipts_orphaned_total += 1;
                    return;
                }
                s.windows.note(&receipt);
                match via {
                    Via::Datagram => s.dgram_receipts.push(receipt),
                    Via::Stream => s.stream_receipts.push(receipt),
                }
                mark_dirty(&mut self.dirty, s, session.slot);
            }
            ToSession::Window { window_id, frame } => self.push_window(window_id, &frame),
            ToSession::Proof { frame } => {
                for (slot, entry) in self.sessions.iter_mut().enumerate() {
                    let Some(s) = entry.as_mut().filter(|s| s.phase == Phase::Open && s.subscribe_all) else {
                        continue;
                    };
                    s.outbox.extend_from_slice(&frame);
                    self.counters.proofs_pushed_total += 1;
                    mark_dirty(&mut self.dirty, s, slot as u32);
                }
            }
        }
    }

    fn push_window(&mut self, window_id: u64, frame: &[u8]) {
        self.results.begin();
        for (slot, entry) in self.sessions.iter_mut().enumerate() {
            let Some(s) = entry.as_mut().filter(|s| s.phase == Phase::Open) else { continue };
            if s.windows.take(window_id) || s.subscribe_all {
                s.outbox.extend_from_slice(self.results.frame_for(frame, s.client_id, s.subscribe_all));
                self.counters.windows_pushed_total += 1;
                mark_dirty(&mut self.dirty, s, slot as u32);
            }
        }
    }

    /// Packs the receipts of every session that has some (datagram receipts into datagrams,
    /// or the result stream when no datagram can be sent; stream receipts into the result
    /// stream), wakes writers, and closes sessions whose result stream is too far behind.
    pub fn flush(&mut self) {
        while let Some(slot) = self.dirty.pop() {
            let Some(s) = self.sessions[slot as usize].as_mut() else { continue };
            s.dirty = false;
            flush_session(s, &self.limits, &mut self.counters, &mut self.frame_buf);
            if s.outbox.len() > self.limits.result_backlog_max && s.phase != Phase::Closing {
                self.counters.sessions_backlog_closed_total += 1;
                s.outbox = Vec::new();
                s.phase = Phase::Closing;
                s.close = Some(Some(Reason::SlowConsumer));
            }
            s.wake.notify_waiters();
        }
    }

    /// Moves the session's result-stream bytes into `out` (empty if none); `None` once the
    /// session is gone or closing.
    pub fn take_outbox(&mut self, key: SessionKey, out: &mut Vec<u8>) -> Option<()> {
        let s = self.session(key)?;
        std::mem::swap(&mut s.outbox, out);
        s.outbox.clear();
        if s.phase == Phase::Closing && out.is_empty() {
            return None;
        }
        Some(())
    }
}

fn mark_dirty(dirty: &mut Vec<u32>, s: &mut Session, slot: u32) {
    if !s.dirty {
        s.dirty = true;
        dirty.push(slot);
    }
}

fn flush_session(s: &mut Session, limits: &Limits, c: &mut Counters, frame_buf: &mut Vec<u8>) {
    if !s.dgram_receipts.is_empty() {
        let size = s.port.max_size().min(usize::from(limits.datagram_frame_max));
        let port = &mut s.port;
        let receipts = s.dgram_receipts.drain(..);
        let packed = pack_datagram_receipts(receipts, size, frame_buf, |d| port.try_send(d), &mut s.outbox);
        c.receipts_datagram_total += packed.datagram;
        c.receipts_fallback_total += packed.fallback;
    }
    c.receipts_stream_total += pack_stream_receipts(s.stream_receipts.drain(..), &mut s.outbox);
}

/// Every record the transport passes is the engine's to answer (through the ring).
struct Defer;

impl Admit for Defer {
    fn ready(&mut self) -> bool {
        true
    }
    fn admit(&mut self, _: u64, _: RecordRef<'_>) -> Option<Receipt> {
        None
    }
    fn refused(&mut self, _: &Receipt) {}
}

#[cfg(test)]
mod tests;
