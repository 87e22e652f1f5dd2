//! The QUIC intake on each intake core (`docs/transport.md`): the intake loop polls its
//! [`UdpSocket`] (one per intake, `SO_REUSEPORT`) and drives its sans-IO [`Server`] in the
//! same iteration as the submit ring and the window clock. No tokio, no extra thread.
//!
//! Waiting for packets: the loop does not sleep on the socket. It polls it every iteration
//! and idles with the role's strategy (`[idle] intake`): `spin` reads a packet within the
//! loop's period, `spin-then-park:<budget>:<park>` and `park:<park>` add up to one park
//! (`200us` in the `default` and `test` profiles) plus the wake-up overshoot to the first
//! packet after a quiet spell. The kernel queues packets meanwhile (4 MiB socket buffer).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use fpn_quic::tls::{Identity, load_or_generate, load_pem};
use fpn_quic::udp::{RxSource, TimestampMode, UdpSocket};
use fpn_quic::{Admit, Server, ServerConfig};
use fpn_runtime::clock::now_ns;
use fpn_runtime::metrics::{Histogram, Labels, MetricDesc, Snapshot};
use fpn_wire::{Reason, Receipt, RecordRef};

use super::admission::{Admission, Origin};
use super::merger::ResultMsg;
use crate::config::{QuicSettings, RxTimestamps};
use crate::prover::ProofAnnouncement;
use crate::run::RunError;
use crate::run::links::{RxLink, TxLink};
use crate::run::shared::Shared;
use crate::run::topology::Wiring;

/// File the bound QUIC address is written to, under `engine.data_dir`.
pub const QUIC_ADDR_FILE: &str = "quic.addr";
/// Directory of the generated TLS pair, under `engine.data_dir`.
pub const TLS_DIR: &str = "tls";
/// Records of the largest stream frame (64 KiB of 48-byte records), the ring room a frame
/// needs at most: no record takes more ring slots per byte than a 48-byte one (an intent
/// with `k` keys is `INTENT_FIXED_LEN + 8k` bytes in `slots_for(k)` slots; checked below).
pub const FRAME_RECORDS_MAX: usize = 64 * 1024 / 48 + 1;
const _: () = {
    let mut k = 1;
    while k <= fpn_engine::KEYS_PER_INTENT_MAX {
        assert!(fpn_engine::shard::slots_for(k) * 48 <= fpn_wire::INTENT_FIXED_LEN + 8 * k);
        k += 1;
    }
};
pub use crate::prover::PROOF_FRAME_LEN;

/// One intake's QUIC side: the server, its socket, the published windows and proofs coming
/// in, and the latency histograms of the records it admits.
pub struct QuicIntake {
    pub io: QuicIo,
    /// When each record accepted over QUIC in the open window was admitted (ns).
    stamps: Vec<u64>,
    rx_to_ring: Histogram,
    ring_to_close: Histogram,
    labels: QuicLabels,
}

/// The server, its socket, and the published windows coming in.
pub struct QuicIo {
    pub server: Server,
    pub socket: UdpSocket,
    tx_buf: Vec<u8>,
    /// Published windows from the merger, and their buffers back.
    results: RxLink<ResultMsg>,
    results_back: TxLink<ResultMsg>,
    /// This intake's announcement ring from the prover (`None` with the prover off).
    announcements: Option<RxLink<ProofAnnouncement>>,
    /// One proof frame, encoded here (sized once: 180 bytes).
    proof_buf: Vec<u8>,
    close_to_here: Histogram,
    publish_to_push: Histogram,
    recv_errors_total: u64,
    send_errors_total: u64,
}

/// One server and socket per intake, the bound address, and the TLS identity.
pub type Bound = (Vec<(Server, UdpSocket)>, SocketAddr, Identity);

/// Binds one socket per intake on `quic.listen` (the first picks the port if it is 0; the
/// others join its `SO_REUSEPORT` group), loads or makes the TLS identity, and builds one
/// sans-IO server per intake.
pub fn bind(q: &QuicSettings, data_dir: &Path, intakes_n: usize) -> Result<Bound, RunError> {
    let identity = match &q.cert_key {
        Some((cert, key)) => load_pem(cert, key),
        None => load_or_generate(&data_dir.join(TLS_DIR)),
    }
    .map_err(|e| RunError::Config(format!("quic TLS identity: {e}")))?;
    let timestamps = match q.rx_timestamps {
        RxTimestamps::Off => TimestampMode::Off,
        RxTimestamps::Software => TimestampMode::Software,
        RxTimestamps::Hardware => TimestampMode::Hardware,
    };
    let quic_err = |addr: SocketAddr| move |source| RunError::Quic { addr, source };
    // `SO_REUSEPORT` would let a second daemon of the same user join this port's group and
    // take half the connections. A plain bind first fails if anyone holds the port.
    if q.listen.port() != 0 {
        drop(std::net::UdpSocket::bind(q.listen).map_err(quic_err(q.listen))?);
    }
    let first = UdpSocket::bind(q.listen, true, timestamps).map_err(quic_err(q.listen))?;
    let addr = first.local_addr();
    let mut sockets = vec![first];
    for _ in 1..intakes_n {
        sockets.push(UdpSocket::bind(addr, true, timestamps).map_err(quic_err(addr))?);
    }
    let (auth, limits) = (q.auth(), q.limits());
    let now = Instant::now();
    let mut out = Vec::with_capacity(intakes_n);
    for socket in sockets {
        let config = ServerConfig { auth: auth.clone(), limits: limits.clone(), mtu_discovery: true };
        let server = Server::new(&identity, config, now)
            .map_err(|e| RunError::Config(format!("quic TLS configuration: {e}")))?;
        out.push((server, socket));
    }
    Ok((out, addr, identity))
}

/// The intake's admission as a transport of `fpn/1` sees it ([`Admit`]): the raw QUIC
/// server, and the WebTransport endpoint's `EngineSide` (`webtransport.rs`).
pub(super) struct QuicAdmit<'a> {
    admission: &'a mut Admission,
    /// Where the records come from (for the merger's late answers).
    origin: Origin,
    stamps: &'a mut Vec<u64>,
    rx_to_ring: &'a mut Histogram,
    now_ns: u64,
    draining: bool,
    /// Free slots every output ring must have before a frame is taken: the records of one
    /// frame never meet a full ring; until there is room, stream frames wait in QUIC's
    /// buffers and datagram records are answered `overloaded` by the transport.
    room_min: usize,
    /// Receipts of accepted records wait for the log.
    gate: bool,
}

impl<'a> QuicAdmit<'a> {
    /// Admission for one iteration at `now` of records from `origin`; `stamps` and
    /// `rx_to_ring` take each accepted record's admission time and its rx → admitted latency;
    /// `gate`: receipts of accepted records wait for the log.
    pub(super) fn new(
        admission: &'a mut Admission,
        origin: Origin,
        stamps: &'a mut Vec<u64>,
        rx_to_ring: &'a mut Histogram,
        now_ns: u64,
        shared: &Shared,
        gate: bool,
    ) -> QuicAdmit<'a> {
        let room_min = FRAME_RECORDS_MAX.min(admission.to_merger.tx.capacity() / 2);
        let draining = shared.draining.load(Ordering::Acquire);
        QuicAdmit { admission, origin, stamps, rx_to_ring, now_ns, draining, room_min, gate }
    }
}

impl Admit for QuicAdmit<'_> {
    fn ready(&mut self) -> bool {
        self.draining || (!self.admission.is_full() && self.admission.has_room(self.room_min))
    }

    fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>) -> Option<Receipt> {
        if self.draining {
            let mut r = Receipt::for_record(record, rx_ns);
            r.status = Err(Reason::ShuttingDown);
            self.admission.counters.count(r.status);
            return Some(r);
        }
        let receipt = self.admission.admit(rx_ns, record, self.origin);
        self.rx_to_ring.record_ns(self.now_ns.saturating_sub(rx_ns).max(1));
        if receipt.is_some_and(|r| r.status.is_ok()) && self.stamps.len() < self.stamps.capacity() {
            self.stamps.push(self.now_ns);
        }
        receipt
    }

    fn refused(&mut self, receipt: &Receipt) {
        self.admission.counters.count(receipt.status);
    }

    fn prefetch(&mut self, record: RecordRef<'_>) {
        self.admission.core.prefetch(record);
    }

    fn durable_at(&self) -> u64 {
        if self.gate { self.admission.log_position() } else { 0 }
    }
}

impl QuicIntake {
    /// Intake `i`'s QUIC side, when the topology has a server for it (`quic.enabled`).
    pub fn build(w: &mut Wiring<'_>, i: usize) -> Result<Option<QuicIntake>, RunError> {
        let Some((server, socket)) = w.take_quic(i) else { return Ok(None) };
        Ok(Some(QuicIntake {
            io: QuicIo {
                server,
                socket,
                tx_buf: Vec::with_capacity(64 * 1024),
                results: w.links.plain_rx(&format!("merger_quic{i}")),
                results_back: w.links.plain_tx(&format!("quic{i}_merger")),
                announcements: w.links.try_plain_rx(&format!("prover_quic{i}")),
                proof_buf: Vec::with_capacity(PROOF_FRAME_LEN),
                close_to_here: Histogram::new(),
                publish_to_push: Histogram::new(),
                recv_errors_total: 0,
                send_errors_total: 0,
            },
            stamps: Vec::with_capacity(w.shard_config.records_cap()),
            rx_to_ring: Histogram::new(),
            ring_to_close: Histogram::new(),
            labels: QuicLabels::default(),
        }))
    }

    /// One iteration: published windows and proofs out to the sessions, datagrams in (their
    /// records through `admission`), timers, datagrams out. A follower (not `leader`) whose
    /// window is full asks the leader to close it.
    /// `gate`: receipts of accepted records wait for the log (`log.durability = "group"`).
    pub fn poll(
        &mut self,
        now: u64,
        admission: &mut Admission,
        shared: &Shared,
        leader: bool,
        gate: bool,
    ) -> bool {
        let mut did_work = self.io.poll_results(now);
        let (stamps, rx_to_ring) = (&mut self.stamps, &mut self.rx_to_ring);
        let mut admit = QuicAdmit::new(admission, Origin::Quic, stamps, rx_to_ring, now, shared, gate);
        did_work |= self.io.poll_io(&mut admit);
        if !leader && admit.admission.is_full() {
            shared.close_request.0.store(true, Ordering::Relaxed);
        }
        did_work
    }

    /// The open window closed at `closed_ns`: every record accepted in it waited from its
    /// admission until then.
    pub fn window_closed(&mut self, closed_ns: u64) {
        for &t in &self.stamps {
            self.ring_to_close.record_ns(closed_ns.saturating_sub(t).max(1));
        }
        self.stamps.clear();
    }

    pub fn publish(&self, s: &mut Snapshot) {
        let labels = &self.labels;
        self.io.publish(s, labels);
        s.histogram(&QUIC_RX_TO_RING_SECONDS, &labels.none, &self.rx_to_ring);
        s.histogram(&QUIC_RING_TO_CLOSE_SECONDS, &labels.none, &self.ring_to_close);
    }
}

impl QuicIo {
    /// Published windows to the sessions; buffers back to the merger.
    fn poll_results(&mut self, now_ns: u64) -> bool {
        let mut did_work = false;
        while let Some(msg) = self.results.rx.pop() {
            self.close_to_here.record_ns(now_ns.saturating_sub(msg.window.closed_ns).max(1));
            self.server.handle_window(msg.window.window_id, &msg.bytes);
            self.publish_to_push.record_ns(now_ns.saturating_sub(msg.published_ns).max(1));
            // The merger takes a buffer from this pool only while it is here to give back.
            let back = self.results_back.tx.try_push(msg);
            debug_assert!(back.is_ok(), "the pool ring holds every buffer");
            did_work = true;
        }
        while let Some(a) = self.announcements.as_mut().and_then(|r| r.rx.pop()) {
            a.write_frame(&mut self.proof_buf);
            self.server.handle_proof(&self.proof_buf);
            did_work = true;
        }
        did_work
    }

    /// Reads every waiting datagram (one `recvmmsg` batch) into the server, handing records
    /// to `admit` after each; then timers and sends.
    fn poll_io(&mut self, admit: &mut QuicAdmit<'_>) -> bool {
        let now = Instant::now();
        let server = &mut self.server;
        let local_ip = self.socket.local_ip();
        let mut did_work = match self.socket.recv_batch(now_ns, |r| {
            server.handle_datagram(now, r.rx_ns, r.remote, local_ip, r.data);
            server.poll_records(now, admit);
        }) {
            Ok(n) => n > 0,
            Err(_) => {
                self.recv_errors_total += 1;
                false
            }
        };
        if self.server.has_pending() {
            did_work |= self.server.poll_records(now, admit);
        }
        self.server.handle_timeouts(now);
        while let Some(t) = self.server.poll_transmit(now, &mut self.tx_buf) {
            did_work = true;
            if self.socket.send(t.destination, &self.tx_buf[..t.size], t.segment_size).is_err() {
                self.send_errors_total += 1;
            }
        }
        did_work
    }

    /// At shutdown: close every connection (`shutting_down`) and send the closes once.
    pub fn close_all(&mut self) {
        let now = Instant::now();
        self.server.close_all(now, Reason::ShuttingDown);
        while let Some(t) = self.server.poll_transmit(now, &mut self.tx_buf) {
            let _ = self.socket.send(t.destination, &self.tx_buf[..t.size], t.segment_size);
        }
    }

    fn publish(&self, s: &mut Snapshot, labels: &QuicLabels) {
        let c = &self.server.counters;
        let u = &self.socket.counters;
        let none = &labels.none;
        s.counter(&QUIC_UDP_DATAGRAMS_TOTAL, none, c.udp_datagrams_total);
        s.counter(&QUIC_UDP_GARBAGE_TOTAL, none, c.udp_garbage_total);
        for (i, v) in [u.rx_hardware_total, u.rx_software_total, u.rx_read_time_total].into_iter().enumerate()
        {
            s.counter(&QUIC_RX_TIMESTAMPS_TOTAL, &labels.ts[i], v);
        }
        let in_use = self.socket.rx_stamping().source;
        for (i, source) in
            [RxSource::Hardware, RxSource::Software, RxSource::ReadTime].into_iter().enumerate()
        {
            s.gauge(&QUIC_RX_TIMESTAMP_SOURCE, &labels.ts[i], i64::from(in_use == source));
        }
        let conns = [
            c.conns_accepted_total,
            c.conns_refused_max_total,
            c.conns_refused_ip_total,
            c.retries_total,
            c.handshakes_failed_total,
            c.alpn_refused_total,
            c.conns_closed_total,
            c.conns_idle_timeout_total,
        ];
        for (i, v) in conns.into_iter().enumerate() {
            s.counter(&QUIC_CONNECTIONS_TOTAL, &labels.conns[i], v);
        }
        let sessions = [
            c.sessions_opened_total,
            c.sessions_refused_unauthorized_total,
            c.sessions_refused_overloaded_total,
            c.sessions_refused_bad_hello_total,
            c.sessions_backlog_closed_total,
            c.sessions_hello_timeout_total,
        ];
        for (i, v) in sessions.into_iter().enumerate() {
            s.counter(&QUIC_SESSIONS_TOTAL, &labels.sessions[i], v);
        }
        for (i, v) in
            [c.frames_datagram_total, c.frames_stream_total, c.frames_refused_total].into_iter().enumerate()
        {
            s.counter(&QUIC_FRAMES_TOTAL, &labels.frames[i], v);
        }
        s.counter(&QUIC_STREAMS_STOPPED_TOTAL, none, c.streams_stopped_total);
        let refused = [
            c.records_rate_limited_total,
            c.records_client_mismatch_total,
            c.records_unauthorized_total,
            c.records_overloaded_total,
        ];
        for (i, v) in refused.into_iter().enumerate() {
            s.counter(&QUIC_RECORDS_REFUSED_TOTAL, &labels.refused[i], v);
        }
        let receipts = [c.receipts_datagram_total, c.receipts_stream_total, c.receipts_fallback_total];
        for (i, v) in receipts.into_iter().enumerate() {
            s.counter(&QUIC_RECEIPTS_TOTAL, &labels.receipts[i], v);
        }
        s.counter(&QUIC_WINDOWS_PUSHED_TOTAL, none, c.windows_pushed_total);
        s.counter(&QUIC_PROOFS_PUSHED_TOTAL, none, c.proofs_pushed_total);
        s.counter(&QUIC_LATE_RECEIPTS_ORPHANED_TOTAL, none, c.late_receipts_orphaned_total);
        s.counter(&QUIC_RECEIPT_QUEUE_FULL_TOTAL, none, c.receipt_queue_full_total);
        s.counter(&QUIC_DATAGRAMS_UNREAD_TOTAL, none, c.datagrams_unread_total);
        s.counter(&QUIC_BACKLOG_PAUSES_TOTAL, none, c.sessions_backlog_paused_total);
        s.counter(&QUIC_WATERMARKS_TOTAL, none, c.watermarks_total);
        s.counter(&QUIC_SEND_DROPPED_TOTAL, none, u.send_dropped_total);
        s.counter(
            &QUIC_IO_ERRORS_TOTAL,
            none,
            self.recv_errors_total + self.send_errors_total + u.send_errors_total,
        );
        s.gauge(&QUIC_CONNECTIONS_OPEN, none, self.server.connections() as i64);
        s.histogram(&QUIC_CLOSE_TO_RESULT_SECONDS, none, &self.close_to_here);
        s.histogram(&QUIC_PUBLISH_TO_PUSH_SECONDS, none, &self.publish_to_push);
    }
}

/// Label sets, made once.
#[derive(Debug)]
pub struct QuicLabels {
    none: Labels,
    ts: Vec<Labels>,
    conns: Vec<Labels>,
    sessions: Vec<Labels>,
    frames: Vec<Labels>,
    refused: Vec<Labels>,
    receipts: Vec<Labels>,
}

impl Default for QuicLabels {
    fn default() -> QuicLabels {
        let make = |key: &str, values: &[&str]| values.iter().map(|v| Labels::new(&[(key, v)])).collect();
        QuicLabels {
            none: Labels::none(),
            ts: make("source", &["hardware", "software", "read_time"]),
            conns: make(
                "outcome",
                &[
                    "accepted",
                    "refused_max",
                    "refused_ip",
                    "retry",
                    "handshake_failed",
                    "alpn_refused",
                    "closed",
                    "idle_timeout",
                ],
            ),
            sessions: make(
                "outcome",
                &["opened", "unauthorized", "overloaded", "bad_hello", "backlog_closed", "hello_timeout"],
            ),
            frames: make("source", &["datagram", "stream", "refused"]),
            refused: make("reason", &["rate_limited", "client_mismatch", "unauthorized", "overloaded"]),
            receipts: make("path", &["datagram", "stream", "fallback"]),
        }
    }
}

pub static QUIC_UDP_DATAGRAMS_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_quic_udp_datagrams_total", "UDP datagrams read by the intake sockets.");
pub static QUIC_UDP_GARBAGE_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_udp_garbage_total",
    "UDP datagrams dropped before QUIC parsing (empty, or the QUIC fixed bit clear).",
);
pub static QUIC_RX_TIMESTAMPS_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_rx_timestamps_total",
    "Receive timestamps by source: hardware, software (kernel) or read_time (none given).",
);
pub static QUIC_RX_TIMESTAMP_SOURCE: MetricDesc = MetricDesc::gauge(
    "fpn_quic_rx_timestamp_source",
    "1 for the receive timestamps this intake socket was set up with (hardware, software or read_time), 0 for the others.",
);
pub static QUIC_CONNECTIONS_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_quic_connections_total", "QUIC connection attempts and ends, by outcome.");
pub static QUIC_SESSIONS_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_quic_sessions_total", "Hellos answered, by outcome (opened or the refusal).");
pub static QUIC_FRAMES_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_frames_total",
    "Wire frames read, by source (datagram, stream), and frames refused whole (refused).",
);
pub static QUIC_STREAMS_STOPPED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_streams_stopped_total",
    "Client streams stopped after a frame refused whole.",
);
pub static QUIC_RECORDS_REFUSED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_records_refused_total",
    "Records the transport refused before the engine, by reason.",
);
pub static QUIC_RECEIPTS_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_receipts_total",
    "Receipts sent, by path: datagram, stream, or fallback (datagram records answered on the result stream).",
);
pub static QUIC_WINDOWS_PUSHED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_windows_pushed_total",
    "Block and clearing frames written to result streams.",
);
pub static QUIC_PROOFS_PUSHED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_proofs_pushed_total",
    "Proof announcement frames written to result streams (subscribe_all sessions).",
);
pub static QUIC_LATE_RECEIPTS_ORPHANED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_late_receipts_orphaned_total",
    "Merger receipts whose connection had gone.",
);
pub static QUIC_RECEIPT_QUEUE_FULL_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_receipt_queue_full_total",
    "Times a session stopped reading a path because receipts waited behind a record the merger had not answered yet.",
);
pub static QUIC_DATAGRAMS_UNREAD_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_datagrams_unread_total",
    "DATAGRAM frames QUIC took for a session that never read them (dropped from its receive buffer while it had stopped reading, or left there at its close), counted when the session ends: their records got no answer.",
);
pub static QUIC_BACKLOG_PAUSES_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_backlog_pauses_total",
    "Times a session stopped reading records because its result stream was more than half of its backlog limit behind (a slow consumer).",
);
pub static QUIC_WATERMARKS_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_watermarks_total",
    "Watermark records written to sessions in receipt mode refusals.",
);
pub static QUIC_SEND_DROPPED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_quic_send_dropped_total",
    "Transmits dropped because the socket send buffer was full.",
);
pub static QUIC_IO_ERRORS_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_quic_io_errors_total", "Socket errors on the intake sockets.");
pub static QUIC_CONNECTIONS_OPEN: MetricDesc =
    MetricDesc::gauge("fpn_quic_connections_open", "QUIC connections held (handshaking, open or closing).");
pub static QUIC_RX_TO_RING_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_quic_rx_to_ring_latency_seconds",
    "Per record: from the datagram's receive timestamp until the intake admitted it (ring push, receipt queued).",
);
pub static QUIC_RING_TO_CLOSE_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_quic_ring_to_close_latency_seconds",
    "Per accepted record: from its admission until its window closed.",
);
pub static QUIC_CLOSE_TO_RESULT_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_quic_close_to_result_latency_seconds",
    "Per window: from its close until its block and clearing reached this intake.",
);
pub static QUIC_PUBLISH_TO_PUSH_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_quic_publish_to_push_latency_seconds",
    "Per window: from the merger's publish until the block was written to the sessions' result streams.",
);

pub static METRICS: [&MetricDesc; 24] = [
    &QUIC_UDP_DATAGRAMS_TOTAL,
    &QUIC_UDP_GARBAGE_TOTAL,
    &QUIC_RX_TIMESTAMPS_TOTAL,
    &QUIC_RX_TIMESTAMP_SOURCE,
    &QUIC_CONNECTIONS_TOTAL,
    &QUIC_SESSIONS_TOTAL,
    &QUIC_FRAMES_TOTAL,
    &QUIC_STREAMS_STOPPED_TOTAL,
    &QUIC_RECORDS_REFUSED_TOTAL,
    &QUIC_RECEIPTS_TOTAL,
    &QUIC_WINDOWS_PUSHED_TOTAL,
    &QUIC_LATE_RECEIPTS_ORPHANED_TOTAL,
    &QUIC_RECEIPT_QUEUE_FULL_TOTAL,
    &QUIC_DATAGRAMS_UNREAD_TOTAL,
    &QUIC_SEND_DROPPED_TOTAL,
    &QUIC_IO_ERRORS_TOTAL,
    &QUIC_CONNECTIONS_OPEN,
    &QUIC_RX_TO_RING_SECONDS,
    &QUIC_RING_TO_CLOSE_SECONDS,
    &QUIC_CLOSE_TO_RESULT_SECONDS,
    &QUIC_PUBLISH_TO_PUSH_SECONDS,
    &QUIC_PROOFS_PUSHED_TOTAL,
    &QUIC_BACKLOG_PAUSES_TOTAL,
    &QUIC_WATERMARKS_TOTAL,
];
