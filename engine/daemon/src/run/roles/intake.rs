//! Role `intake<i>`: admission of records into the open window.
//!
//! Each iteration it applies the merger's book counts, retries close markers that waited
//! for ring room, forwards the merger's late answers, takes `POST /submit` frames from its
//! submit ring, runs its QUIC side (`quic.rs`) and, on intake 0, the WebTransport endpoint's
//! rings (`webtransport.rs`), and then closes windows: intake 0 leads
//! (`fpn_engine::shard::CloseLeader`, publishing each close on the board in `Shared`), the
//! others follow the board (`CloseFollower`). Every record goes through the one admission
//! path (`admission.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fpn_engine::shard::{CloseFollower, CloseLeader, LeaderView};
use fpn_engine::{IntakeCore, WindowClose, prefetch_frame};
use fpn_runtime::clock::now_ns;
use fpn_runtime::metrics::{Histogram, MetricDesc};
use fpn_wire::{Reason, Receipt};

use super::admission::{Admission, Origin};
use super::quic::QuicIntake;
use super::webtransport::WebTransportIntake;
use crate::cores::Role;
use crate::run::links::{LogTx, RxLink, TxLink};
use crate::run::role::{BUDGET, LoopKit, RoleLoop};
use crate::run::shared::{Shared, unpack_book};
use crate::run::topology::Wiring;

pub static INTAKE_FRAMES_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_intake_frames_total", "Frames handed to an intake core.");
pub static WINDOWS_CLOSED_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_windows_closed_total", "Windows closed by the window clock (intake 0).");
pub static INTAKE_LATENCY_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_intake_handle_latency_seconds",
    "From receipt of a frame (rx) until its intake handled it.",
);

pub static METRICS: [&MetricDesc; 3] = [&INTAKE_FRAMES_TOTAL, &WINDOWS_CLOSED_TOTAL, &INTAKE_LATENCY_SECONDS];

/// One `POST /submit` frame on its way to an intake.
#[derive(Debug)]
pub struct Submit {
    /// Unique per frame: the admin side matches answers (the merger's too) by it.
    pub rx_ns: u64,
    pub frame: Vec<u8>,
    /// Records in the frame: the intake takes the frame only when its answer ring has room
    /// for all of their receipts plus `Done`, so it never has to hold an answer back.
    pub records: usize,
}

/// Intake → admin, in order: per record of a frame a `Receipt` or a `Deferred` (answered by
/// the merger later, as a `Late` receipt that takes the first `Deferred` place of its
/// frame), then `Done`.
#[derive(Debug)]
pub enum Answer {
    Receipt(Receipt),
    /// The record in this place is answered later by the merger.
    Deferred {
        rx_ns: u64,
    },
    /// The merger's answer to a `Deferred` record of the frame `receipt.rx_ns`.
    Late(Receipt),
    /// Every record of the frame has its place. The frame's buffer goes back so it is freed
    /// on the admin side, not on the hot core.
    Done {
        rx_ns: u64,
        frame: Vec<u8>,
        refused: Option<Reason>,
        /// The log position the frame's receipts wait for (`Shared::log_durable` of this
        /// intake; 0: none).
        durable_at: u64,
    },
}

/// Who closes windows on this intake.
enum Closes {
    Leader(CloseLeader),
    Follower(CloseFollower),
}

pub struct IntakeRole {
    index: usize,
    admission: Admission,
    closes: Closes,
    submits: RxLink<Submit>,
    answers: TxLink<Answer>,
    /// The merger's answers to this intake's book cancels, in the order they were sent.
    late: RxLink<Receipt>,
    quic: Option<Box<QuicIntake>>,
    webtransport: Option<Box<WebTransportIntake>>,
    shared: Arc<Shared>,
    kit: LoopKit,
    frames_total: u64,
    windows_closed_total: u64,
    latency: Histogram,
    /// The merger's last book count applied (`u64::MAX`: none yet).
    book_seen: u64,
    /// Receipts of accepted records wait until the log has them (`log.durability =
    /// "group"`).
    gate: bool,
}

impl IntakeRole {
    pub fn build(w: &mut Wiring<'_>, i: usize) -> Result<IntakeRole, crate::run::RunError> {
        let c = w.shard_config.clone();
        let mut core = IntakeCore::new(&c, i, w.first_window_id);
        if let Some((r, book_open)) = w.resume_intake(i) {
            let refused =
                core.restore(r.seq_max, r.pairs.iter().copied(), r.marks.iter().copied(), book_open);
            if let Err(n) = refused {
                eprintln!(
                    "flashpointd: recovery: intake {i}: {n} de-duplication entries did not fit (window.clients_max); those clients' old nonces are not refused"
                );
            }
        }
        let to_builder = (0..c.shards_n).map(|k| w.links.tx(&format!("intake{i}_builder{k}"))).collect();
        let late = w.links.plain_rx::<Receipt>(&format!("merger_intake{i}"));
        let log = LogTx { tx: w.links.try_plain_tx(&format!("intake{i}_log")), pushed: 0 };
        let gate = w.gate_on_log();
        let admission = Admission::new(
            core,
            to_builder,
            w.links.tx(&format!("intake{i}_merger")),
            log,
            late.rx.capacity(),
        );
        let closes = if i == 0 {
            Closes::Leader(CloseLeader::new(c.engine.window.window_ns, w.first_window_id, w.now_ns))
        } else {
            Closes::Follower(CloseFollower::new(w.first_window_id))
        };
        Ok(IntakeRole {
            index: i,
            admission,
            closes,
            submits: w.links.plain_rx(&format!("submit_intake{i}")),
            answers: w.links.plain_tx(&format!("intake{i}_answers")),
            late,
            quic: QuicIntake::build(w, i)?.map(Box::new),
            webtransport: WebTransportIntake::build(w, i).map(Box::new),
            shared: w.shared.clone(),
            kit: w.kit(Role::Intake, &format!("intake{i}")),
            frames_total: 0,
            windows_closed_total: 0,
            latency: Histogram::new(),
            book_seen: u64::MAX,
            gate,
        })
    }

    /// Frames from the submit ring, each answered in record order over the answer ring.
    fn handle_submits(&mut self) -> bool {
        let mut did_work = false;
        for _ in 0..BUDGET {
            // A full window (or a close marker still waiting for ring room) would refuse every
            // record of the next frame as `overloaded`, and so would full rings to the builder
            // shards; leave the frames in the submit ring until the window closed and the rings
            // drained, so submitters wait instead of retrying.
            if self.admission.is_full() {
                break;
            }
            let Some(next) = self.submits.rx.peek() else { break };
            if self.answers.tx.slots_free() < next.records + 1 || !self.admission.has_room_for(&next.frame) {
                break;
            }
            let sub = self.submits.rx.pop().expect("peeked");
            if let Some(after) = self.submits.rx.peek() {
                prefetch_frame(&after.frame);
            }
            let answers = &mut self.answers.tx;
            let rx_ns = sub.rx_ns;
            let logged_before = self.admission.log_position();
            let result = self.admission.admit_frame(rx_ns, &sub.frame, Origin::Admin, |r| {
                let a = match r {
                    Some(r) => Answer::Receipt(r),
                    None => Answer::Deferred { rx_ns },
                };
                let pushed = answers.try_push(a);
                debug_assert!(pushed.is_ok(), "room was checked before the frame was taken");
            });
            self.frames_total += 1;
            self.latency.record_ns(now_ns().saturating_sub(rx_ns).max(1));
            // The frame's answers wait for the log only if it logged something (a frame
            // refused record by record, as while the log fails, is answered at once).
            let logged = self.admission.log_position();
            let durable_at = if self.gate && logged > logged_before { logged } else { 0 };
            let done = Answer::Done { rx_ns, frame: sub.frame, refused: result.err(), durable_at };
            let pushed = self.answers.tx.try_push(done);
            debug_assert!(pushed.is_ok(), "room was checked before the frame was taken");
            did_work = true;
        }
        if self.shared.drain_requested.load(Ordering::Acquire) && self.submits.rx.is_empty() {
            self.shared.input_done[self.index].0.store(true, Ordering::Release);
        }
        did_work
    }

    /// The merger's answers to book cancels: to the admin side or the QUIC session that sent
    /// the cancel, in order. An admin answer waits for room in the answer ring.
    fn handle_late(&mut self) -> bool {
        let mut did_work = false;
        for _ in 0..BUDGET {
            if self.late.rx.peek().is_none() {
                break;
            }
            let origin = self.admission.next_origin();
            if origin == Some(Origin::Admin) && self.answers.tx.slots_free() == 0 {
                break;
            }
            let r = self.late.rx.pop().expect("peeked");
            self.admission.take_origin();
            match origin {
                Some(Origin::Admin) => {
                    let pushed = self.answers.tx.try_push(Answer::Late(r));
                    debug_assert!(pushed.is_ok(), "room was checked");
                }
                Some(Origin::Quic) => {
                    if let Some(q) = &mut self.quic {
                        q.io.server.handle_late_receipt(r);
                    }
                }
                Some(Origin::WebTransport) => {
                    if let Some(wt) = &mut self.webtransport {
                        wt.side.handle_late_receipt(r);
                    }
                }
                None => debug_assert!(false, "a merger receipt nobody asked for"),
            }
            did_work = true;
        }
        did_work
    }

    /// Applies a close to this intake (its core and its QUIC side).
    fn apply_close(&mut self, close: WindowClose) {
        self.admission.apply_close(close);
        if let Some(q) = &mut self.quic {
            q.window_closed(close.closed_ns);
        }
    }

    /// Intake 0: close the window when the policy says so, and publish the close.
    fn lead_closes(&mut self, now: u64) -> bool {
        let shared = self.shared.clone();
        let Closes::Leader(leader) = &mut self.closes else { unreachable!("intake 0 leads") };
        let requested = shared.close_request.0.load(Ordering::Relaxed);
        let view = LeaderView {
            now_ns: now,
            full: self.admission.core.wants_close() || requested,
            drain: shared.drain_requested.load(Ordering::Acquire)
                && shared.input_done.iter().all(|d| d.0.load(Ordering::Acquire)),
            markers_pending: self.admission.core.has_pending(),
            lag: shared.board.lag(),
        };
        let Some(close) = leader.poll(&view) else { return false };
        let last = leader.final_window_id();
        if view.full {
            shared.close_request.0.store(false, Ordering::Relaxed);
        }
        self.apply_close(close);
        shared.board.publish(close);
        self.windows_closed_total += 1;
        if let Some(last) = last {
            shared.final_window_id.store(last, Ordering::Release);
        }
        true
    }

    /// Intakes 1..N: apply the board's closes in order; ask intake 0 to close when full.
    fn follow_closes(&mut self) -> bool {
        let mut did_work = false;
        loop {
            let Closes::Follower(follower) = &self.closes else { unreachable!("intakes 1.. follow") };
            let latest = self.shared.board.latest();
            let Some(id) = follower.next(latest, self.admission.core.has_pending()) else { break };
            let close = self.shared.board.get(id);
            self.apply_close(close);
            let Closes::Follower(follower) = &mut self.closes else { unreachable!() };
            follower.applied(id);
            self.shared.board.set_handled(self.index, id);
            did_work = true;
        }
        if self.admission.core.wants_close() {
            self.shared.close_request.0.store(true, Ordering::Relaxed);
        }
        did_work
    }
}

impl RoleLoop for IntakeRole {
    fn kit(&mut self) -> &mut LoopKit {
        &mut self.kit
    }

    /// At the stop, after the drain: records still queued in the socket or in the sessions
    /// are answered (`shutting_down`: the drain set `Shared::draining`), every receipt that
    /// waited for the log goes (the drain waited until the last window's inputs were on
    /// disk), the answers are sent, and only then the connections are closed, so a client
    /// gets an answer to every record it sent before it saw the close (`docs/daemon.md`,
    /// "Drain").
    fn finish(&mut self) {
        let (index, gate, leader) = (self.index, self.gate, matches!(self.closes, Closes::Leader(_)));
        if let Some(q) = &mut self.quic {
            if gate {
                q.io.server.set_durable(self.shared.log_durable[index].0.load(Ordering::Acquire));
            }
            for _ in 0..16 {
                if !q.poll(now_ns(), &mut self.admission, &self.shared, leader, gate) {
                    break;
                }
            }
            q.io.close_all();
        }
        // The WebTransport side's last answers: what its ring still holds (`shutting_down`)
        // and the receipts that waited for the log. The endpoint sends them before it closes
        // its sessions (`run` stops it after the executors).
        if let Some(wt) = &mut self.webtransport {
            for _ in 0..16 {
                if !wt.poll(now_ns(), &mut self.admission, &self.shared, gate) {
                    break;
                }
            }
        }
    }

    fn step(&mut self, now: u64) -> bool {
        self.admission.set_now(now);
        self.admission.storage_failing = self.shared.log_failing.load(Ordering::Relaxed);
        let mut did_work = false;
        let book = self.shared.book_open[self.index].0.load(Ordering::Relaxed);
        if book != self.book_seen {
            let (open, taken) = unpack_book(book);
            self.admission.core.set_book_open(open, taken);
            self.book_seen = book;
        }
        if self.admission.core.has_pending() {
            did_work |= self.admission.poll_pending();
        }
        did_work |= self.handle_late();
        did_work |= self.handle_submits();
        if let Some(q) = self.quic.as_mut() {
            let leader = matches!(self.closes, Closes::Leader(_));
            if self.gate {
                q.io.server.set_durable(self.shared.log_durable[self.index].0.load(Ordering::Acquire));
            }
            did_work |= q.poll(now, &mut self.admission, &self.shared, leader, self.gate);
        }
        if let Some(wt) = self.webtransport.as_mut() {
            did_work |= wt.poll(now, &mut self.admission, &self.shared, self.gate);
        }
        if self.admission.is_full() && matches!(self.closes, Closes::Follower(_)) {
            self.shared.close_request.0.store(true, Ordering::Relaxed);
        }
        did_work |= match self.closes {
            Closes::Leader(_) => self.lead_closes(now),
            Closes::Follower(_) => self.follow_closes(),
        };
        did_work
    }

    fn housekeep(&mut self) {
        let Self { kit, admission, submits, answers, late, quic, webtransport, latency, .. } = self;
        let (frames, closed, idle) = (self.frames_total, self.windows_closed_total, kit.idler.counters());
        let leader = matches!(self.closes, Closes::Leader(_));
        let none = &kit.none;
        kit.publisher.publish(|s| {
            admission.publish(s, none);
            submits.publish(s);
            answers.publish(s);
            late.publish(s);
            s.idle(none, idle);
            s.counter(&INTAKE_FRAMES_TOTAL, none, frames);
            if leader {
                s.counter(&WINDOWS_CLOSED_TOTAL, none, closed);
            }
            s.histogram(&INTAKE_LATENCY_SECONDS, none, latency);
            if let Some(q) = quic {
                q.publish(s);
            }
            if let Some(wt) = webtransport {
                wt.publish(s);
            }
        });
        kit.heartbeat.beat();
    }
}
