//! The `fpn/1` sessions of the endpoint, sans-IO: connection counts, hello and welcome,
//! per-client token buckets, the transport's per-record checks (`fpn_quic::handle_frame`),
//! frames to the engine's ring, receipts packed into datagrams or the result stream, window
//! and proof fan-out. The driver (`endpoint`) does the I/O and calls in; tests drive it in
//! memory.
//!
//! Call order for one session: [`Core::open_session`] once its CONNECT is accepted;
//! [`Core::handle_hello`] with the control stream's bytes until it answers; then
//! [`Core::handle_frame`] per frame; [`Core::handle_answer`] for what the engine sends back;
//! [`Core::flush`] after any of these; [`Core::close_session`] at the end.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use fpn_quic::{Admit, Auth, Limits};
use fpn_wire::session::{Hello, HelloError, Welcome};
use fpn_wire::{FRAME_HEADER_LEN, FrameWriter, RECEIPT_LEN, Reason, Receipt, RecordRef};
use tokio::sync::Notify;

use crate::engine::{FrameIn, SessionKey, ToSession, Via};
use crate::metrics::Counters;

/// Windows with accepted records remembered per session, awaiting their results.
pub const SESSION_WINDOWS_MAX: usize = 64;

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
    windows: VecDeque<u64>,
    /// Result-stream bytes the writer has not taken yet.
    outbox: Vec<u8>,
    port: Box<dyn DatagramPort>,
    /// Set when the session must end, with the reason (`None`: a normal close).
    close: Option<Option<Reason>>,
    /// Wakes the session's tasks: its result-stream writer and its connection task.
    wake: Rc<Notify>,
    dirty: bool,
}

#[derive(Debug)]
struct ClientState {
    conns: u32,
    /// Nano-tokens (10⁻⁹ of a record), and when they were last topped up.
    tokens_n: u128,
    topped_ns: u64,
}

/// The sessions of one endpoint.
pub struct Core {
    auth: Auth,
    limits: Limits,
    sessions: Vec<Option<Session>>,
    free: Vec<u32>,
    generation: u32,
    clients: HashMap<u64, ClientState>,
    per_ip: HashMap<IpAddr, u32>,
    conns: usize,
    frames: rtrb::Producer<FrameIn>,
    dirty: Vec<u32>,
    epoch: Instant,
    verdicts: Vec<Option<Receipt>>,
    frame_buf: Vec<u8>,
    /// `fpn_quic::handle_frame` counts here; folded into `counters`.
    quic: fpn_quic::Counters,
    pub counters: Counters,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("conns", &self.conns).finish_non_exhaustive()
    }
}

/// Why a connection was refused before its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnRefusal {
    Max,
    PerIp,
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
            clients: HashMap::with_capacity(conns_max),
            per_ip: HashMap::with_capacity(conns_max),
            conns: 0,
            frames,
            dirty: Vec::with_capacity(conns_max),
            epoch: now,
            verdicts: Vec::with_capacity(256),
            frame_buf: Vec::with_capacity(2048),
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

    /// A new QUIC connection from `ip`: counted, or refused at a limit.
    pub fn open_connection(&mut self, ip: IpAddr) -> Result<(), ConnRefusal> {
        if self.conns >= self.limits.conns_max {
            self.counters.conns_refused_max_total += 1;
            return Err(ConnRefusal::Max);
        }
        let n = self.per_ip.entry(ip).or_insert(0);
        if *n >= self.limits.conns_per_ip {
            self.counters.conns_refused_ip_total += 1;
            return Err(ConnRefusal::PerIp);
        }
        *n += 1;
        self.conns += 1;
        self.counters.conns_accepted_total += 1;
        self.counters.conns_open = self.conns as u64;
        Ok(())
    }

    pub fn close_connection(&mut self, ip: IpAddr) {
        self.conns -= 1;
        self.counters.conns_open = self.conns as u64;
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
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
            windows: VecDeque::new(),
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
        if counted && let Some(c) = self.clients.get_mut(&client_id) {
            c.conns = c.conns.saturating_sub(1);
            // Its bucket is kept for the client's next connection (a reconnect does not
            // refill it) unless the table is large.
            if c.conns == 0 && self.clients.len() > 4 * self.limits.conns_max {
                self.clients.remove(&client_id);
            }
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
        let decided = match Hello::decode(bytes) {
            Ok((hello, _)) => match self.auth.client_of(hello.api_key) {
                None => Err(Reason::Unauthorized),
                Some(client_id) => {
                    let burst = self.limits.burst;
                    let state = self.clients.entry(client_id).or_insert_with(|| ClientState {
                        conns: 0,
                        tokens_n: u128::from(burst) * 1_000_000_000,
                        topped_ns: now_ns,
                    });
                    if state.conns >= self.limits.conns_per_client {
                        Err(Reason::Overloaded)
                    } else {
                        state.conns += 1;
                        s.counted = true;
                        s.client_id = client_id;
                        s.subscribe_all = hello.subscribe_all();
                        Ok(())
                    }
                }
            },
            Err(HelloError::Incomplete(_)) if !finished => return HelloOutcome::Incomplete,
            Err(HelloError::Incomplete(_)) => Err(Reason::Truncated),
            Err(HelloError::Refused(reason)) => Err(reason),
        };
        let c = &mut self.counters;
        match decided {
            Ok(()) => {
                c.sessions_opened_total += 1;
                s.phase = Phase::Open;
                let datagram_frame_max = s.port.max_size().min(usize::from(self.limits.datagram_frame_max));
                HelloOutcome::Answer(Welcome {
                    status: Ok(()),
                    client_id: s.client_id,
                    rate_per_s: self.limits.rate_per_s,
                    burst: self.limits.burst,
                    datagram_frame_max: datagram_frame_max as u16,
                })
            }
            Err(reason) => {
                match reason {
                    Reason::Unauthorized => c.sessions_refused_unauthorized_total += 1,
                    Reason::Overloaded => c.sessions_refused_overloaded_total += 1,
                    _ => c.sessions_refused_bad_hello_total += 1,
                }
                s.phase = Phase::Closing;
                HelloOutcome::Answer(Welcome::refused(reason))
            }
        }
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
        let mut bucket = || take_token(limits, clients, now_ns, bucket_client);
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
            let mut refuse = RefuseOverloaded { refused: 0 };
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
                note_window(&mut s.windows, &receipt);
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
        for (slot, entry) in self.sessions.iter_mut().enumerate() {
            let Some(s) = entry.as_mut().filter(|s| s.phase == Phase::Open) else { continue };
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
                s.close = Some(Some(Reason::Overloaded));
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
        let per_frame = size.saturating_sub(FRAME_HEADER_LEN) / RECEIPT_LEN;
        for chunk in s.dgram_receipts.chunks(per_frame.max(1)) {
            frame_buf.clear();
            let mut w = FrameWriter::new(frame_buf, u32::MAX as usize);
            for r in chunk {
                w.push_receipt(r).expect("a u32-sized frame holds a datagram's receipts");
            }
            w.finish();
            let n = chunk.len() as u64;
            if per_frame > 0 && s.port.try_send(Bytes::copy_from_slice(frame_buf)) {
                c.receipts_datagram_total += n;
            } else {
                c.receipts_fallback_total += n;
                s.outbox.extend_from_slice(frame_buf);
            }
        }
        s.dgram_receipts.clear();
    }
    if !s.stream_receipts.is_empty() {
        for chunk in s.stream_receipts.chunks(usize::from(u16::MAX)) {
            let mut w = FrameWriter::new(&mut s.outbox, u32::MAX as usize);
            for r in chunk {
                w.push_receipt(r).expect("a u32-sized frame holds 65535 receipts");
            }
            w.finish();
        }
        c.receipts_stream_total += s.stream_receipts.len() as u64;
        s.stream_receipts.clear();
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

/// Takes one token from `client_id`'s bucket (the raw QUIC intake's rule: `rate_per_s`
/// tokens a second up to `burst`, counted in nano-tokens).
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

/// The engine's ring is full: every record the transport passes is answered `overloaded`.
struct RefuseOverloaded {
    refused: u64,
}

impl Admit for RefuseOverloaded {
    fn ready(&mut self) -> bool {
        true
    }
    fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>) -> Option<Receipt> {
        let mut r = Receipt::for_record(record, rx_ns);
        r.status = Err(Reason::Overloaded);
        self.refused += 1;
        Some(r)
    }
    fn refused(&mut self, _: &Receipt) {}
}

#[cfg(test)]
mod tests;
