//! One session: a QUIC connection and the `fpn/1` state around it. It goes
//! handshake → await hello → open → closing ([`Phase`]); while open (and, to refuse them,
//! while awaiting the hello) it reads records from datagrams and uni streams, queues their
//! receipts per path, and writes answers to its result stream: every receipt (mode `all`),
//! or the receipts of refusals and cancels and a watermark per path (mode `refusals`).
//!
//! A client that reads its answers too slowly is first held back: past half of
//! `Limits::result_backlog_max` bytes waiting on the result stream the session stops reading
//! records (they wait in QUIC's buffers, and stream flow control slows the client) until the
//! stream drains. Only if the backlog still reaches the limit (window results and answers
//! already owed keep coming) is the session closed, with `0x100 + slow_consumer`.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use fpn_wire::session::app_error;
use fpn_wire::{Reason, Receipt, WatermarkPath};
use quinn_proto::{
    Connection, ConnectionError, Dir, Event, StreamEvent, StreamId, TransportErrorCode, VarInt,
};

use super::hello::{self, Bound, ReceiptMode};
use super::limits::{Auth, Clients, Limits};
use super::outbox::{Flushed, Outbox};
use super::receipts::{Path, ReceiptQueue, pack_datagrams, pack_refusals, pack_stream, write_watermark};
use super::records::{Admit, RefuseOverloaded, handle_frame};
use super::streams::UniIn;
use super::watermark::PathWatermark;
use super::windows::{SessionWindows, WindowResults};
use super::{Counters, LateOrigin, RECORDS_BUDGET, REFUSED_LINGER};

/// TLS alert `no_application_protocol` as a QUIC CRYPTO_ERROR.
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// Where a session is in its life; it only moves down this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Handshaking,
    AwaitHello,
    Open,
    Closing,
}

/// Why a stream's frames were left unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Nothing complete is left.
    No,
    /// The poll's budget is spent, or the engine is not ready: poll again.
    Poll,
    /// The path's receipts wait for a late answer, whose arrival wakes the session.
    LateReceipt,
    /// The result stream is backlogged; its draining (`Writable`) wakes the session.
    Backlog,
}

pub(super) fn varint(code: u64) -> VarInt {
    VarInt::from_u64(code).expect("application error codes are small")
}

/// What a session's record handling borrows from the server.
pub(super) struct Ctx<'a> {
    pub(super) limits: &'a Limits,
    pub(super) auth: &'a Auth,
    pub(super) clients: &'a mut Clients,
    pub(super) counters: &'a mut Counters,
    pub(super) late: &'a mut VecDeque<LateOrigin>,
    pub(super) frame_buf: &'a mut Vec<u8>,
    pub(super) now_ns: u64,
    /// The engine's input log is durable up to here ([`super::Server::set_durable`]).
    pub(super) durable: u64,
}

pub(super) struct Session {
    pub(super) conn: Connection,
    pub(super) generation: u64,
    pub(super) ip: IpAddr,
    pub(super) phase: Phase,
    pub(super) client_id: u64,
    subscribe_all: bool,
    receipts: ReceiptMode,
    control: Option<StreamId>,
    hello: Vec<u8>,
    result: Option<StreamId>,
    outbox: Outbox,
    uni: Vec<UniIn>,
    /// Receipts for datagram records and stream records, not yet packed.
    dgram_receipts: ReceiptQueue,
    stream_receipts: ReceiptQueue,
    /// Receipt mode `refusals`: each path's watermark, and scratch for a run of receipts.
    dgram_watermark: PathWatermark,
    stream_watermark: PathWatermark,
    refusals: Vec<Receipt>,
    /// Reading records is paused on a backlogged result stream (for counting pauses).
    backlog_paused: bool,
    /// Windows this session had records accepted in, whose results are still to come.
    windows: SessionWindows,
    pub(super) last_rx_ns: u64,
    /// When to close the connection, and with which application error code: the hello's
    /// deadline, or the end of a refused session's linger.
    pub(super) close_at: Option<(Instant, u64)>,
    /// Counted in its client's sessions (released when the session is removed).
    pub(super) counted: bool,
    /// Has data for `poll_records`.
    pub(super) pending: bool,
    /// Queued in `Server::dirty` (may have packets to send).
    pub(super) dirty: bool,
    /// DATAGRAM frames this session read from its connection (`Counters::datagrams_unread_total`).
    pub(super) datagrams_read: u64,
}

impl Session {
    pub(super) fn new(conn: Connection, generation: u64, ip: IpAddr, rx_ns: u64) -> Session {
        Session {
            conn,
            generation,
            ip,
            phase: Phase::Handshaking,
            client_id: 0,
            subscribe_all: false,
            receipts: ReceiptMode::All,
            control: None,
            hello: Vec::new(),
            result: None,
            outbox: Outbox::default(),
            uni: Vec::new(),
            dgram_receipts: ReceiptQueue::default(),
            stream_receipts: ReceiptQueue::default(),
            dgram_watermark: PathWatermark::new(WatermarkPath::Datagram),
            stream_watermark: PathWatermark::new(WatermarkPath::Stream),
            refusals: Vec::new(),
            backlog_paused: false,
            windows: SessionWindows::default(),
            last_rx_ns: rx_ns,
            datagrams_read: 0,
            close_at: None,
            counted: false,
            pending: false,
            dirty: false,
        }
    }

    /// The connection's application events: the handshake's end, streams opened, data to
    /// read (marks the session pending), the result stream stopped. Returns whether the
    /// handshake ended (connected or failed), for the server's count of handshakes.
    pub(super) fn handle_events(&mut self, now: Instant, limits: &Limits, counters: &mut Counters) -> bool {
        let mut handshake_ended = false;
        while let Some(event) = self.conn.poll() {
            match event {
                Event::HandshakeDataReady => {}
                Event::Connected => {
                    if self.phase == Phase::Handshaking {
                        self.phase = Phase::AwaitHello;
                        handshake_ended = true;
                        // No hello in time: closed `unauthorized` (cleared by the welcome).
                        self.close_at = Some((now + limits.hello_timeout, app_error(Reason::Unauthorized)));
                    }
                }
                Event::ConnectionLost { reason } => {
                    count_loss(&reason, counters);
                    if self.phase == Phase::Handshaking {
                        counters.handshakes_failed_total += 1;
                        handshake_ended = true;
                    }
                    self.phase = Phase::Closing;
                }
                Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) => self.accept_control(),
                Event::Stream(StreamEvent::Opened { dir: Dir::Uni }) => {
                    while let Some(id) = self.conn.streams().accept(Dir::Uni) {
                        self.uni.push(UniIn::new(id));
                    }
                    self.pending = true;
                }
                Event::Stream(StreamEvent::Readable { .. }) | Event::DatagramReceived => self.pending = true,
                Event::Stream(StreamEvent::Writable { id }) => {
                    if Some(id) == self.result {
                        self.pending = true;
                    }
                }
                Event::Stream(StreamEvent::Stopped { id, .. }) => {
                    if Some(id) == self.result {
                        // The client does not want answers: nothing more to do for it.
                        self.conn.close(now, varint(0), Bytes::new());
                        self.phase = Phase::Closing;
                    }
                }
                Event::Stream(_) | Event::DatagramsUnblocked => {}
            }
        }
        handshake_ended
    }

    /// The first bidirectional stream is the control stream; a second one is stopped.
    fn accept_control(&mut self) {
        while let Some(id) = self.conn.streams().accept(Dir::Bi) {
            if self.control.is_none() {
                self.control = Some(id);
            } else {
                let _ = self.conn.recv_stream(id).stop(varint(app_error(Reason::BadLength)));
            }
        }
        self.pending = true;
    }

    /// Reads the hello (or, once open, watches the control stream), then datagrams and
    /// stream frames, and writes what is queued. Returns whether more is left to do.
    pub(super) fn poll_records(
        &mut self,
        now: Instant,
        slot: usize,
        mut ctx: Ctx<'_>,
        admit: &mut impl Admit,
    ) -> bool {
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
        self.flush_receipts(now, &mut ctx);
        self.flush_outbox(now, ctx.limits, ctx.counters);
        // Paused on the backlog, and the stream took enough: read again at the next poll
        // (no `Writable` may come if it took everything).
        more |= self.backlog_paused && !self.backlogged(ctx.limits, ctx.counters);
        more
    }

    /// Whether the result stream is so far behind that records must not be read: more than
    /// half of `result_backlog_max` waits. Counts each pause once.
    fn backlogged(&mut self, limits: &Limits, counters: &mut Counters) -> bool {
        let backlogged = self.outbox.waiting() > limits.result_backlog_max / 2;
        counters.sessions_backlog_paused_total += u64::from(backlogged && !self.backlog_paused);
        self.backlog_paused = backlogged;
        backlogged
    }

    fn read_hello(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let Some(id) = self.control else { return };
        let finished = hello::read_hello_bytes(&mut self.conn, id, &mut self.hello);
        let Some(decided) =
            hello::decide(&self.hello, finished, ctx.auth, ctx.clients, ctx.limits, ctx.now_ns, true)
        else {
            return;
        };
        self.hello = Vec::new();
        // 32 bytes on a fresh stream always fit its initial credit.
        let _ = self.conn.send_stream(id).write(&hello::welcome(decided, ctx.limits));
        match decided {
            Ok(bound) => self.open(bound, ctx.counters),
            Err(reason) => {
                match reason {
                    Reason::Unauthorized => ctx.counters.sessions_refused_unauthorized_total += 1,
                    Reason::Overloaded => ctx.counters.sessions_refused_overloaded_total += 1,
                    _ => ctx.counters.sessions_refused_bad_hello_total += 1,
                }
                let _ = self.conn.send_stream(id).finish();
                // Open a little longer, so the refused welcome reaches the client.
                self.phase = Phase::Closing;
                self.close_at = Some((now + REFUSED_LINGER, app_error(reason)));
            }
        }
    }

    /// An accepted hello: the session is open and gets its result stream.
    fn open(&mut self, bound: Bound, counters: &mut Counters) {
        counters.sessions_opened_total += 1;
        self.counted = true;
        self.client_id = bound.client_id;
        self.subscribe_all = bound.subscribe_all;
        self.receipts = bound.receipts;
        self.phase = Phase::Open;
        self.close_at = None;
        self.result = self.conn.streams().open(Dir::Uni);
        debug_assert!(self.result.is_some(), "the client allows a uni stream");
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

    /// Datagram frames, up to the budget. Each is taken whole or answered `overloaded`
    /// whole, as the engine is ready or not: a datagram cannot wait for the engine. It waits
    /// (in QUIC's datagram receive buffer) only while the path's receipts wait for a late
    /// answer, which wakes the session.
    fn read_datagrams(&mut self, slot: usize, ctx: &mut Ctx<'_>, admit: &mut impl Admit) -> bool {
        for _ in 0..RECORDS_BUDGET {
            if self.receipts_held(Path::Datagram, ctx) || self.backlogged(ctx.limits, ctx.counters) {
                return false;
            }
            // Asked per frame: one datagram's records must fit the engine's queues.
            let ready = admit.ready();
            let Some(payload) = self.conn.datagrams().recv() else { return false };
            ctx.counters.frames_datagram_total += 1;
            self.datagrams_read += 1;
            let rx_ns = self.last_rx_ns;
            if payload.len() > ctx.limits.datagram_frame_max as usize {
                self.refuse_frame(Reason::Oversized, rx_ns, Path::Datagram, ctx, admit);
                continue;
            }
            let answered = if ready {
                self.handle_frame(&payload, rx_ns, Path::Datagram, slot, ctx, admit)
            } else {
                let mut refuse = RefuseOverloaded::new(admit);
                let answered = self.handle_frame(&payload, rx_ns, Path::Datagram, slot, ctx, &mut refuse);
                ctx.counters.records_overloaded_total += refuse.refused;
                answered
            };
            if let Err(reason) = answered {
                self.refuse_frame(reason, rx_ns, Path::Datagram, ctx, admit);
            }
        }
        true
    }

    /// Frames of every uni stream, up to the budget per stream and while the engine is
    /// ready (else they wait in QUIC's buffers). Returns whether frames are left waiting.
    fn read_streams(&mut self, slot: usize, ctx: &mut Ctx<'_>, admit: &mut impl Admit) -> bool {
        let mut streams = std::mem::take(&mut self.uni);
        let mut more = false;
        let mut i = 0;
        while i < streams.len() {
            let stream = &mut streams[i];
            stream.read(&mut self.conn);
            let (wait, stop) = self.read_stream_frames(stream, slot, ctx, admit);
            more |= wait == Wait::Poll;
            // A stream that ended inside a frame; not one whose whole frames wait their turn.
            let stop = stop.or((wait == Wait::No && stream.truncated()).then_some(Reason::Truncated));
            if let Some(reason) = stop {
                // A frame refused whole: its successors cannot be found safely.
                self.refuse_frame(reason, self.last_rx_ns, Path::Stream, ctx, admit);
                ctx.counters.streams_stopped_total += 1;
                let _ = self.conn.recv_stream(stream.id).stop(varint(app_error(reason)));
                streams.swap_remove(i);
            } else if stream.done() {
                streams.swap_remove(i);
            } else {
                i += 1;
            }
        }
        debug_assert!(self.uni.is_empty(), "streams are accepted in handle_events only");
        self.uni = streams;
        more
    }

    /// The complete frames `stream` holds. Returns whether frames are left waiting, and the
    /// reason to stop the stream if a frame is refused whole.
    fn read_stream_frames(
        &mut self,
        stream: &mut UniIn,
        slot: usize,
        ctx: &mut Ctx<'_>,
        admit: &mut impl Admit,
    ) -> (Wait, Option<Reason>) {
        let rx_ns = self.last_rx_ns;
        let mut frames = 0;
        loop {
            let len = match stream.next_frame_len(ctx.limits.stream_frame_max) {
                Ok(Some(len)) => len,
                Ok(None) => return (Wait::No, None),
                Err(reason) => return (Wait::No, Some(reason)),
            };
            if frames == RECORDS_BUDGET || !admit.ready() {
                return (Wait::Poll, None);
            }
            if self.receipts_held(Path::Stream, ctx) {
                return (Wait::LateReceipt, None);
            }
            if self.backlogged(ctx.limits, ctx.counters) {
                return (Wait::Backlog, None);
            }
            frames += 1;
            ctx.counters.frames_stream_total += 1;
            let answered = self.handle_frame(stream.frame(len), rx_ns, Path::Stream, slot, ctx, admit);
            stream.consume(len);
            if let Err(reason) = answered {
                return (Wait::No, Some(reason));
            }
        }
    }

    /// One frame's records; `Err` if the frame is refused whole (not yet answered).
    fn handle_frame(
        &mut self,
        bytes: &[u8],
        rx_ns: u64,
        path: Path,
        slot: usize,
        ctx: &mut Ctx<'_>,
        admit: &mut impl Admit,
    ) -> Result<(), Reason> {
        let client_id = (self.phase == Phase::Open).then_some(self.client_id);
        let Ctx { limits, clients, counters, now_ns, late, .. } = ctx;
        let mut bucket = || clients.take_token(limits, *now_ns, self.client_id);
        let queue = match path {
            Path::Datagram => &mut self.dgram_receipts,
            Path::Stream => &mut self.stream_receipts,
        };
        let windows = &mut self.windows;
        let generation = self.generation;
        handle_frame(bytes, rx_ns, client_id, counters, &mut bucket, admit, |answered, durable_at| {
            match answered {
                Some(r) => {
                    windows.note(&r);
                    queue.push(r, durable_at);
                }
                None => {
                    queue.push_hole();
                    late.push_back(LateOrigin { slot, generation, path });
                }
            }
        })
    }

    fn refuse_frame(
        &mut self,
        reason: Reason,
        rx_ns: u64,
        path: Path,
        ctx: &mut Ctx<'_>,
        admit: &mut impl Admit,
    ) {
        ctx.counters.frames_refused_total += 1;
        let r = Receipt::frame_refused(reason, rx_ns);
        admit.refused(&r);
        self.queue(path).push(r, 0);
    }

    /// Whether `path` must not be read now: its receipts wait behind a late answer, up to
    /// `Limits::receipts_held_max`. Counts each pause once.
    fn receipts_held(&mut self, path: Path, ctx: &mut Ctx<'_>) -> bool {
        let (full, started) = self.queue(path).is_full(ctx.durable, ctx.limits.receipts_held_max);
        let counters = &mut *ctx.counters;
        counters.receipt_queue_full_total += u64::from(started);
        full
    }

    fn queue(&mut self, path: Path) -> &mut ReceiptQueue {
        match path {
            Path::Datagram => &mut self.dgram_receipts,
            Path::Stream => &mut self.stream_receipts,
        }
    }

    /// A receipt the merger answered for a record of this session, if the session is still
    /// the one that sent it and open: it fills the oldest hole of its path. Returns whether
    /// it was taken.
    pub(super) fn handle_late_receipt(&mut self, generation: u64, path: Path, receipt: Receipt) -> bool {
        if self.generation != generation || self.phase != Phase::Open {
            return false;
        }
        let filled = self.queue(path).fill(receipt);
        debug_assert!(filled, "a late receipt for a path without a hole");
        if !filled {
            return false;
        }
        self.windows.note(&receipt);
        self.pending = true;
        true
    }

    /// A published window: its results go to this session if it had records accepted in it
    /// or subscribed to all. Returns whether they did.
    pub(super) fn handle_window(
        &mut self,
        window_id: u64,
        frame: &[u8],
        results: &mut WindowResults,
    ) -> bool {
        if self.phase != Phase::Open {
            return false;
        }
        let had_records = self.windows.take(window_id);
        if !(had_records || self.subscribe_all) {
            return false;
        }
        self.outbox.push(results.frame_for(frame, self.client_id, self.subscribe_all));
        self.pending = true;
        true
    }

    /// A proof announcement: only `subscribe_all` sessions get it. Returns whether this did.
    pub(super) fn handle_proof(&mut self, frame: &[u8]) -> bool {
        if self.phase != Phase::Open || !self.subscribe_all {
            return false;
        }
        self.outbox.push(frame);
        self.pending = true;
        true
    }

    /// Closes the connection if its `close_at` is due (a hello that never came, a refused
    /// session's linger), writes the watermarks that are due, then the connection's own timers.
    pub(super) fn handle_timeout(&mut self, now: Instant, limits: &Limits, counters: &mut Counters) {
        if self.watermark_due().is_some_and(|at| at <= now) {
            let open = self.phase == Phase::Open;
            for watermark in [&mut self.dgram_watermark, &mut self.stream_watermark] {
                if !open {
                    // A closing session has nobody to confirm to.
                    watermark.discard();
                } else if watermark.due().is_some_and(|at| at <= now) {
                    write_watermark(watermark, &mut self.refusals, &mut self.outbox, counters);
                }
            }
            if open {
                self.flush_outbox(now, limits, counters);
            }
        }
        if let Some((at, code)) = self.close_at
            && at <= now
        {
            self.close_at = None;
            if self.phase == Phase::AwaitHello {
                counters.sessions_hello_timeout_total += 1;
                self.phase = Phase::Closing;
            }
            self.conn.close(now, varint(code), Bytes::new());
        }
        if self.conn.poll_timeout().is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
        }
    }

    /// When the next watermark must go out (receipt mode `refusals`, something pending).
    pub(super) fn watermark_due(&self) -> Option<Instant> {
        match (self.dgram_watermark.due(), self.stream_watermark.due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Packs queued receipts. Mode `all`: datagram ones into datagrams (or the result stream
    /// when the datagram send buffer is full), stream ones into the result stream. Mode
    /// `refusals`: both paths' refusals on the result stream, and their watermarks.
    fn flush_receipts(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if self.receipts == ReceiptMode::Refusals {
            for (queue, watermark) in [
                (&mut self.dgram_receipts, &mut self.dgram_watermark),
                (&mut self.stream_receipts, &mut self.stream_watermark),
            ] {
                let refusals = &mut self.refusals;
                pack_refusals(queue, ctx.durable, now, watermark, refusals, &mut self.outbox, ctx.counters);
            }
            return;
        }
        let max = ctx.limits.datagram_frame_max;
        pack_datagrams(
            &mut self.dgram_receipts,
            ctx.durable,
            &mut self.conn,
            max,
            ctx.frame_buf,
            &mut self.outbox,
            ctx.counters,
        );
        pack_stream(&mut self.stream_receipts, ctx.durable, &mut self.outbox, ctx.counters);
    }

    /// Whether receipts wait in a queue (for a late answer or for the log).
    pub(super) fn holds_receipts(&self) -> bool {
        !self.dgram_receipts.is_empty() || !self.stream_receipts.is_empty()
    }

    fn flush_outbox(&mut self, now: Instant, limits: &Limits, counters: &mut Counters) {
        let Some(id) = self.result else {
            self.outbox.clear();
            return;
        };
        let flushed = self.outbox.write_to(self.conn.send_stream(id), limits.result_backlog_max);
        if flushed == Flushed::TooSlow {
            // Records stopped being read at half the limit; what is owed past it cannot be
            // sent. The client learns why from the code (`docs/transport.md`, "Slow consumers").
            counters.sessions_backlog_closed_total += 1;
            self.conn.close(now, varint(app_error(Reason::SlowConsumer)), Bytes::new());
            self.phase = Phase::Closing;
        }
    }
}

/// Counts why a connection was lost, where a counter names it.
fn count_loss(reason: &ConnectionError, counters: &mut Counters) {
    match reason {
        ConnectionError::TimedOut => counters.conns_idle_timeout_total += 1,
        ConnectionError::TransportError(e)
            if e.code == TransportErrorCode::crypto(ALERT_NO_APPLICATION_PROTOCOL) =>
        {
            counters.alpn_refused_total += 1
        }
        _ => {}
    }
}
