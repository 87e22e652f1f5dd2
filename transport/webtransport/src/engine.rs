//! The interface between the endpoint (its own thread) and the engine's intake (the daemon's
//! pinned intake loop, or [`crate::testing::TestEngine`]): two bounded SPSC rings and a
//! wake-up.
//!
//! - Endpoint → engine: [`FrameIn`], one wire frame of a session whose structure and
//!   transport checks (session open, client id, token bucket) already passed. When the ring
//!   is full the endpoint answers a datagram's records `overloaded` at once, and leaves a
//!   stream's next frame in QUIC's buffers until there is room (flow control then slows the
//!   client down). Nothing is dropped.
//! - Engine → endpoint: [`ToSession`], receipts (each to its session), window frames and
//!   proof frames. [`EngineSide`] takes a frame only when the ring has room for all of its
//!   receipts and for those held back, so a receipt never waits for room; windows and proofs
//!   that find the ring full wait in a bounded queue, and past it are dropped and counted.
//!   An accepted record's receipt waits on the engine side until the engine's input log is
//!   durable up to its position ([`Admit::durable_at`], [`EngineSide::set_durable`]), and
//!   every receipt after it waits behind it, so receipts keep their order.
//!
//! The engine implements [`fpn_quic::Admit`], the same trait the raw QUIC intake calls, and
//! drives [`EngineSide`] in its loop (call order on the type).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use fpn_quic::Admit;
use fpn_quic::server::PREFETCH_AHEAD;
use fpn_wire::{Receipt, decode_frame};
use tokio::sync::Notify;

/// Which channel a frame came in on, and so which channel its receipts go back on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An HTTP/3 datagram: receipts in datagrams (the result stream when none can be sent).
    Datagram,
    /// A unidirectional stream: receipts on the result stream.
    Stream,
}

/// A session of the endpoint: its slot and the slot's generation (a slot is reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub slot: u32,
    pub generation: u32,
}

/// One frame for the engine.
#[derive(Debug, Clone)]
pub struct FrameIn {
    pub session: SessionKey,
    /// When the endpoint read it (ns since the Unix epoch, the endpoint thread's clock).
    pub rx_ns: u64,
    pub via: Via,
    /// The frame as the client sent it; [`fpn_wire::decode_frame`] accepts it.
    pub frame: Bytes,
    /// Records in the frame.
    pub records: u16,
    /// Empty when every record is the engine's to answer. Otherwise one entry per record:
    /// `Some` for a record the transport refused (its receipt, passed back in place so the
    /// session gets its receipts in record order), `None` for the engine's.
    pub transport: Vec<Option<Receipt>>,
}

/// What the engine sends back.
#[derive(Debug, Clone)]
pub enum ToSession {
    Receipt {
        session: SessionKey,
        via: Via,
        receipt: Receipt,
    },
    /// A published window: its block and clearing frame, for the sessions that had records
    /// accepted in it and those subscribed to all.
    Window {
        window_id: u64,
        frame: Bytes,
    },
    /// A proof announcement frame, for the sessions subscribed to all.
    Proof {
        frame: Bytes,
    },
}

/// Ring sizes, fixed at construction.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Frames in flight from the endpoint to the engine.
    pub frames_len: usize,
    /// Answers in flight to the endpoint. At least [`RECORDS_PER_FRAME_MAX`], so any frame's
    /// receipts fit.
    pub answers_len: usize,
    /// Windows and proofs that may wait for room in the answer ring.
    pub results_pending_max: usize,
    /// Records the engine may answer later ([`EngineSide::handle_late_receipt`]).
    pub late_max: usize,
}

/// Most records one frame can hold: a 64 KiB stream frame of 32-byte cancels.
pub const RECORDS_PER_FRAME_MAX: usize = 64 * 1024 / fpn_wire::CANCEL_LEN;

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig { frames_len: 4096, answers_len: 16_384, results_pending_max: 64, late_max: 4096 }
    }
}

/// Wake-ups across the two threads.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    /// The engine pushed answers.
    pub answers: Notify,
    /// The engine took frames while a stream waited for room.
    pub room: Notify,
    pub stream_waiting: AtomicBool,
}

/// The endpoint's ends of the rings. Give it to [`crate::Endpoint::start`].
pub struct EndpointQueues {
    pub(crate) frames: rtrb::Producer<FrameIn>,
    pub(crate) answers: rtrb::Consumer<ToSession>,
    pub(crate) wake: Arc<Wake>,
}

impl std::fmt::Debug for EndpointQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointQueues").field("frames_room", &self.frames.slots()).finish_non_exhaustive()
    }
}

/// Engine-side counters (the engine's thread publishes them with the endpoint's).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EngineCounters {
    pub frames_total: u64,
    pub records_admitted_total: u64,
    pub late_receipts_total: u64,
    pub late_receipts_orphaned_total: u64,
    /// Windows and proofs dropped because the answer ring and its waiting queue were full.
    pub results_dropped_total: u64,
}

/// The engine's ends of the rings.
///
/// Call order, in each iteration of the engine's loop: [`EngineSide::poll_records`] (frames
/// in, receipts out), then [`EngineSide::handle_late_receipt`] for records the engine
/// answered later, [`EngineSide::handle_window`] and [`EngineSide::handle_proof`] for what it
/// published. Each call wakes the endpoint if it pushed anything.
pub struct EngineSide {
    frames: rtrb::Consumer<FrameIn>,
    answers: rtrb::Producer<ToSession>,
    wake: Arc<Wake>,
    late: VecDeque<(SessionKey, Via)>,
    late_max: usize,
    pending: VecDeque<ToSession>,
    pending_max: usize,
    /// Receipts waiting for the log, in order, each with the log position it waits for
    /// (never decreasing). At most the answer ring's size plus `late_max`.
    held: VecDeque<(u64, ToSession)>,
    /// The log is durable up to here ([`EngineSide::set_durable`]).
    durable: u64,
    pub counters: EngineCounters,
}

impl std::fmt::Debug for EngineSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSide").field("counters", &self.counters).finish_non_exhaustive()
    }
}

/// Makes the two ends, sized by `config`.
pub fn queues(config: QueueConfig) -> (EndpointQueues, EngineSide) {
    assert!(config.frames_len >= 1, "the frame ring holds at least one frame");
    assert!(
        config.answers_len >= RECORDS_PER_FRAME_MAX,
        "the answer ring must hold the receipts of the largest frame ({RECORDS_PER_FRAME_MAX})"
    );
    let (frames_tx, frames_rx) = rtrb::RingBuffer::new(config.frames_len);
    let (answers_tx, answers_rx) = rtrb::RingBuffer::new(config.answers_len);
    let wake = Arc::new(Wake::default());
    let endpoint = EndpointQueues { frames: frames_tx, answers: answers_rx, wake: wake.clone() };
    let engine = EngineSide {
        frames: frames_rx,
        answers: answers_tx,
        wake,
        late: VecDeque::with_capacity(config.late_max),
        late_max: config.late_max,
        pending: VecDeque::with_capacity(config.results_pending_max + config.late_max),
        pending_max: config.results_pending_max,
        held: VecDeque::with_capacity(config.answers_len + config.late_max),
        durable: 0,
        counters: EngineCounters::default(),
    };
    (endpoint, engine)
}

impl EngineSide {
    /// Takes frames while `admit` is ready and the answer ring has room for each frame's
    /// receipts, hands each record the transport passed to `admit`, and sends its answer to
    /// the record's session (`None` from [`Admit::admit`]: answered later through
    /// [`EngineSide::handle_late_receipt`]). [`Admit::refused`] is not called: the endpoint
    /// counts its own refusals (`fpn_webtransport_*`). Returns whether it took a frame or
    /// sent receipts that waited for the log.
    pub fn poll_records(&mut self, admit: &mut impl Admit) -> bool {
        self.retry_pending();
        let mut pushed = self.release_held();
        let mut took = false;
        while let Ok(next) = self.frames.peek() {
            if self.answers.slots() < next.records as usize + self.held.len() || !admit.ready() {
                break;
            }
            let f = self.frames.pop().expect("peeked");
            took = true;
            self.counters.frames_total += 1;
            let records = decode_frame(&f.frame).expect("the endpoint checked the frame's structure");
            for (i, (record, ahead)) in records.with_lookahead(PREFETCH_AHEAD).enumerate() {
                for r in ahead {
                    admit.prefetch(r);
                }
                let answer = match f.transport.get(i).copied().flatten() {
                    Some(refused) => Some(refused),
                    None => {
                        self.counters.records_admitted_total += 1;
                        admit.admit(f.rx_ns, record)
                    }
                };
                match answer {
                    Some(receipt) => {
                        let durable_at = if receipt.status.is_ok() { admit.durable_at() } else { 0 };
                        let msg = ToSession::Receipt { session: f.session, via: f.via, receipt };
                        let tag = durable_at.max(self.held.back().map_or(0, |h| h.0));
                        if tag > self.durable || !self.held.is_empty() {
                            self.held.push_back((tag, msg));
                        } else {
                            self.answers.push(msg).expect("room was checked for the frame");
                            pushed = true;
                        }
                    }
                    None => {
                        assert!(self.late.len() < self.late_max, "more late receipts than late_max");
                        self.late.push_back((f.session, f.via));
                    }
                }
            }
        }
        if took && self.wake.stream_waiting.swap(false, Ordering::AcqRel) {
            self.wake.room.notify_waiters();
        }
        if pushed {
            self.wake.answers.notify_one();
        }
        took || pushed
    }

    /// The later answer to a record [`Admit::admit`] answered `None`; answers come in the
    /// order of those `None`s.
    pub fn handle_late_receipt(&mut self, receipt: Receipt) {
        let Some((session, via)) = self.late.pop_front() else {
            self.counters.late_receipts_orphaned_total += 1;
            return;
        };
        self.counters.late_receipts_total += 1;
        let msg = ToSession::Receipt { session, via, receipt };
        match self.held.back() {
            // Behind the receipts that wait for the log: answers keep their order.
            Some(&(tag, _)) => self.held.push_back((tag, msg)),
            None => self.send(msg),
        }
    }

    /// The engine's input log is durable up to `position` (the positions
    /// [`Admit::durable_at`] gives): the receipts that waited for it go at the next
    /// [`EngineSide::poll_records`]. Without a log, never called (every tag is 0).
    pub fn set_durable(&mut self, position: u64) {
        self.durable = position;
    }

    /// Receipts that wait for the log.
    pub fn receipts_held(&self) -> usize {
        self.held.len()
    }

    /// Moves the receipts whose log position is durable onto the ring, in order, as far as
    /// it has room. Returns whether it moved any.
    fn release_held(&mut self) -> bool {
        let mut pushed = false;
        while let Some(&(tag, _)) = self.held.front() {
            if tag > self.durable || self.answers.slots() == 0 || !self.pending.is_empty() {
                break;
            }
            let (_, msg) = self.held.pop_front().expect("peeked");
            self.answers.push(msg).expect("room was checked");
            pushed = true;
        }
        if pushed {
            self.wake.answers.notify_one();
        }
        pushed
    }

    /// A published window's block and clearing frame.
    pub fn handle_window(&mut self, window_id: u64, frame: Bytes) {
        self.send(ToSession::Window { window_id, frame });
    }

    /// A proof announcement frame (`docs/wire.md`, kind 0x84).
    pub fn handle_proof(&mut self, frame: Bytes) {
        self.send(ToSession::Proof { frame });
    }

    /// Frames waiting for the engine.
    pub fn frames_waiting(&self) -> usize {
        self.frames.slots()
    }

    fn send(&mut self, msg: ToSession) {
        self.retry_pending();
        if !self.pending.is_empty() {
            return self.wait(msg);
        }
        match self.answers.push(msg) {
            Ok(()) => self.wake.answers.notify_one(),
            Err(rtrb::PushError::Full(msg)) => self.wait(msg),
        }
    }

    fn wait(&mut self, msg: ToSession) {
        // A receipt is never dropped: at most `late_max` of them wait (each answers a `None`
        // of `Admit::admit`). Windows and proofs wait up to `results_pending_max`.
        if !matches!(msg, ToSession::Receipt { .. }) {
            let results = self.pending.iter().filter(|m| !matches!(m, ToSession::Receipt { .. })).count();
            if results >= self.pending_max {
                self.counters.results_dropped_total += 1;
                return;
            }
        }
        self.pending.push_back(msg);
    }

    fn retry_pending(&mut self) {
        let mut pushed = false;
        while let Some(msg) = self.pending.pop_front() {
            match self.answers.push(msg) {
                Ok(()) => pushed = true,
                Err(rtrb::PushError::Full(msg)) => {
                    self.pending.push_front(msg);
                    break;
                }
            }
        }
        if pushed {
            self.wake.answers.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fpn_wire::{FrameWriter, Intent, Reason, RecordRef};

    struct Seqs {
        next: u64,
        ready: bool,
        late_every: Option<u64>,
        /// Each accepted record's log position is its seq ([`Admit::durable_at`]).
        logged: bool,
    }

    impl Admit for Seqs {
        fn ready(&mut self) -> bool {
            self.ready
        }
        fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>) -> Option<Receipt> {
            self.next += 1;
            if self.late_every.is_some_and(|n| self.next.is_multiple_of(n)) {
                return None;
            }
            let mut r = Receipt::for_record(record, rx_ns);
            r.seq = self.next;
            r.window_id = 1;
            Some(r)
        }
        fn refused(&mut self, _: &Receipt) {
            panic!("the engine side does not pass refusals on");
        }
        fn durable_at(&self) -> u64 {
            if self.logged { self.next } else { 0 }
        }
    }

    fn frame(nonces: std::ops::Range<u64>) -> Bytes {
        let mut buf = Vec::new();
        let mut w = FrameWriter::new(&mut buf, u32::MAX as usize);
        for nonce in nonces {
            w.push_intent(&Intent {
                client_id: 7,
                nonce,
                sent_ns: 0,
                profit: 1,
                priority: 0,
                keys: &[nonce],
            })
            .unwrap();
        }
        w.finish();
        Bytes::from(buf)
    }

    fn frame_in(session: u32, frame: Bytes, transport: Vec<Option<Receipt>>) -> FrameIn {
        let records = decode_frame(&frame).unwrap().len() as u16;
        FrameIn {
            session: SessionKey { slot: session, generation: 1 },
            rx_ns: 5,
            via: Via::Stream,
            frame,
            records,
            transport,
        }
    }

    fn drain(q: &mut EndpointQueues) -> Vec<ToSession> {
        std::iter::from_fn(|| q.answers.pop().ok()).collect()
    }

    #[test]
    fn receipts_keep_record_order_with_transport_refusals_in_place() {
        let (mut ep, mut engine) =
            queues(QueueConfig { answers_len: RECORDS_PER_FRAME_MAX, ..Default::default() });
        let f = frame(1..4);
        let mut refused = Receipt::for_record(decode_frame(&f).unwrap().nth(1).unwrap(), 5);
        refused.status = Err(Reason::RateLimited);
        ep.frames.push(frame_in(3, f, vec![None, Some(refused), None])).unwrap();
        let mut admit = Seqs { next: 0, ready: true, late_every: None, logged: false };
        assert!(engine.poll_records(&mut admit));
        let got: Vec<(u64, u64, Result<(), Reason>)> = drain(&mut ep)
            .into_iter()
            .map(|m| match m {
                ToSession::Receipt { session, receipt, .. } => {
                    assert_eq!(session.slot, 3);
                    (receipt.nonce, receipt.seq, receipt.status)
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, vec![(1, 1, Ok(())), (2, 0, Err(Reason::RateLimited)), (3, 2, Ok(()))]);
        assert_eq!(engine.counters.records_admitted_total, 2);
    }

    #[test]
    fn a_frame_waits_while_the_engine_is_not_ready_or_its_receipts_do_not_fit() {
        let (mut ep, mut engine) =
            queues(QueueConfig { answers_len: RECORDS_PER_FRAME_MAX, ..Default::default() });
        ep.frames.push(frame_in(0, frame(0..RECORDS_PER_FRAME_MAX as u64 - 10), Vec::new())).unwrap();
        ep.frames.push(frame_in(0, frame(0..20), Vec::new())).unwrap();
        let mut admit = Seqs { next: 0, ready: false, late_every: None, logged: false };
        assert!(!engine.poll_records(&mut admit));
        admit.ready = true;
        assert!(engine.poll_records(&mut admit));
        // The second frame's 20 receipts do not fit behind the first's until the endpoint reads.
        assert_eq!(engine.frames_waiting(), 1);
        assert_eq!(drain(&mut ep).len(), RECORDS_PER_FRAME_MAX - 10);
        assert!(engine.poll_records(&mut admit));
        assert_eq!(drain(&mut ep).len(), 20);
    }

    #[test]
    fn late_receipts_go_to_their_sessions_in_order_and_windows_wait_bounded() {
        let (mut ep, mut engine) = queues(QueueConfig {
            answers_len: RECORDS_PER_FRAME_MAX,
            results_pending_max: 2,
            ..Default::default()
        });
        ep.frames.push(frame_in(1, frame(1..3), Vec::new())).unwrap();
        ep.frames.push(frame_in(2, frame(3..5), Vec::new())).unwrap();
        let mut admit = Seqs { next: 0, ready: true, late_every: Some(2), logged: false };
        engine.poll_records(&mut admit);
        assert_eq!(drain(&mut ep).len(), 2);
        let late = |nonce| Receipt { nonce, ..Receipt::frame_refused(Reason::NotFound, 0) };
        engine.handle_late_receipt(late(2));
        engine.handle_late_receipt(late(4));
        engine.handle_late_receipt(late(9));
        let slots: Vec<u32> = drain(&mut ep)
            .into_iter()
            .map(|m| match m {
                ToSession::Receipt { session, .. } => session.slot,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(slots, vec![1, 2]);
        assert_eq!(engine.counters.late_receipts_orphaned_total, 1);
        // Fill the answer ring, then publish three windows: two wait, one is dropped.
        while engine.answers.push(ToSession::Proof { frame: Bytes::new() }).is_ok() {}
        for w in 1..=3 {
            engine.handle_window(w, Bytes::from_static(b"w"));
        }
        assert_eq!(engine.counters.results_dropped_total, 1);
        assert_eq!(drain(&mut ep).len(), RECORDS_PER_FRAME_MAX);
        engine.handle_proof(Bytes::from_static(b"p"));
        let after: Vec<_> = drain(&mut ep).into_iter().map(|m| format!("{m:?}")).collect();
        assert_eq!(after.len(), 3, "{after:?}");
        assert!(after[0].contains("window_id: 1") && after[1].contains("window_id: 2"));
    }

    #[test]
    fn receipts_wait_for_the_log_in_order_and_late_ones_queue_behind_them() {
        let (mut ep, mut engine) =
            queues(QueueConfig { answers_len: RECORDS_PER_FRAME_MAX, ..Default::default() });
        let f = frame(1..4);
        let mut refused = Receipt::for_record(decode_frame(&f).unwrap().nth(1).unwrap(), 5);
        refused.status = Err(Reason::RateLimited);
        ep.frames.push(frame_in(3, f, vec![None, Some(refused), None])).unwrap();
        let mut admit = Seqs { next: 0, ready: true, late_every: None, logged: true };
        assert!(engine.poll_records(&mut admit));
        // Nothing is durable: the refusal waits behind the accepted record before it.
        assert!(drain(&mut ep).is_empty());
        assert_eq!(engine.receipts_held(), 3);
        let nonces = |got: Vec<ToSession>| -> Vec<u64> {
            got.into_iter()
                .map(|m| match m {
                    ToSession::Receipt { receipt, .. } => receipt.nonce,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        engine.set_durable(1);
        engine.poll_records(&mut admit);
        assert_eq!(nonces(drain(&mut ep)), vec![1, 2]);
        // A later answer to another record goes behind the one still held.
        engine.late.push_back((SessionKey { slot: 3, generation: 1 }, Via::Stream));
        engine.handle_late_receipt(Receipt { nonce: 9, ..Receipt::frame_refused(Reason::NotFound, 0) });
        engine.poll_records(&mut admit);
        assert!(drain(&mut ep).is_empty());
        engine.set_durable(2);
        engine.poll_records(&mut admit);
        assert_eq!(nonces(drain(&mut ep)), vec![3, 9]);
        assert_eq!(engine.receipts_held(), 0);
    }
}
