//! The test submit path (until the QUIC intake lands): `POST /submit` with one binary frame
//! (`docs/wire.md`) → the intake of the frame's first client over an SPSC ring → receipts
//! back over rings (the intake's, and the merger's for book cancels) → the HTTP response.
//!
//! Admin threads only: each intake's submit ring has one producer end behind a mutex. A
//! collector thread drains the answer rings and hands each receipt to the request waiting
//! for it, matched by the frame's `rx_ns`, which is unique per frame (a receipt carries it,
//! also one answered by the merger).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fpn_runtime::admin::{Request, Response};
use fpn_runtime::metrics::{Histogram, Labels, ShardPublisher};
use fpn_runtime::ring::{Rx, Tx};
use fpn_wire::{FrameWriter, Reason, Receipt, RecordRef, decode_frame};

use super::metrics::{SUBMIT_FRAMES_TOTAL, SUBMIT_RECEIPT_SECONDS};
use super::rings::now_ns;
use super::roles::{Answer, Submit};
use super::shared::Shared;

/// How long a request waits for its receipts.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(5);

const OUTCOMES: [&str; 5] = ["ok", "refused", "shutting_down", "overloaded", "timeout"];

#[derive(Debug, Default)]
struct Waiter {
    expected: usize,
    receipts: Vec<Receipt>,
    done: bool,
    refused: Option<Reason>,
}

impl Waiter {
    fn complete(&self) -> bool {
        self.done && (self.refused.is_some() || self.receipts.len() >= self.expected)
    }
}

struct Stats {
    publisher: ShardPublisher,
    latency: Histogram,
    outcomes: [u64; OUTCOMES.len()],
    labels: Vec<Labels>,
}

/// The admin side of the submit path.
pub struct SubmitPath {
    shared: Arc<Shared>,
    txs: Vec<Mutex<Tx<Submit>>>,
    waiters: Mutex<HashMap<u64, Waiter>>,
    /// Receipts arrived for some waiter (the collector notifies the requests).
    arrived: Condvar,
    /// A request registered a waiter (the request notifies the collector, which otherwise
    /// sleeps while nobody waits).
    submitted: Condvar,
    last_rx_ns: AtomicU64,
    stats: Mutex<Stats>,
}

fn first_client(record: RecordRef<'_>) -> u64 {
    match record {
        RecordRef::Intent(i) => i.fixed.client_id.get(),
        RecordRef::Bid(b) => b.client_id.get(),
        RecordRef::Cancel(c) => c.client_id.get(),
        _ => 0,
    }
}

fn receipt_json(r: &Receipt) -> serde_json::Value {
    serde_json::json!({
        "client_id": r.client_id,
        "nonce": r.nonce,
        "seq": r.seq,
        "window_id": r.window_id,
        "rx_ns": r.rx_ns,
        "kind": r.for_kind.map(|k| k.as_str()),
        "status": match r.status { Ok(()) => "ok", Err(reason) => reason.as_str() },
    })
}

fn refusal(status: u16, reason: Reason, json: bool) -> Response {
    if json {
        Response::json(status, serde_json::json!({ "error": reason.as_str() }).to_string())
    } else {
        Response::text(status, format!("{}\n", reason.as_str()))
    }
}

impl SubmitPath {
    pub fn new(shared: Arc<Shared>, txs: Vec<Tx<Submit>>, publisher: ShardPublisher) -> SubmitPath {
        let mut stats = Stats {
            publisher,
            latency: Histogram::new(),
            outcomes: [0; OUTCOMES.len()],
            labels: OUTCOMES.iter().map(|o| Labels::new(&[("outcome", o)])).collect(),
        };
        Self::publish(&mut stats);
        SubmitPath {
            shared,
            txs: txs.into_iter().map(Mutex::new).collect(),
            waiters: Mutex::new(HashMap::new()),
            arrived: Condvar::new(),
            submitted: Condvar::new(),
            last_rx_ns: AtomicU64::new(0),
            stats: Mutex::new(stats),
        }
    }

    fn publish(stats: &mut Stats) {
        let Stats { publisher, latency, outcomes, labels } = stats;
        publisher.publish(|s| {
            for (i, l) in labels.iter().enumerate() {
                s.counter(&SUBMIT_FRAMES_TOTAL, l, outcomes[i]);
            }
            s.histogram(&SUBMIT_RECEIPT_SECONDS, &Labels::none(), latency);
        });
    }

    fn count(&self, outcome: &str, latency_ns: Option<u64>) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let i = OUTCOMES.iter().position(|o| *o == outcome).expect("known outcome");
        stats.outcomes[i] += 1;
        if let Some(ns) = latency_ns {
            stats.latency.record_ns(ns.max(1));
        }
        Self::publish(&mut stats);
    }

    /// A receive time unique to this frame (strictly above every earlier one).
    fn unique_rx_ns(&self) -> u64 {
        let now = now_ns();
        let prev = self.last_rx_ns.fetch_max(now, Ordering::AcqRel);
        if prev < now { now } else { self.last_rx_ns.fetch_add(1, Ordering::AcqRel) + 1 }
    }

    /// After this returns, no submit enters a ring any more.
    pub fn close(&self) {
        self.shared.draining.store(true, Ordering::Release);
        for tx in &self.txs {
            drop(tx.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// `POST /submit`.
    pub fn handle(&self, request: &Request) -> Response {
        let json = request.query.as_deref().is_some_and(|q| q.split('&').any(|kv| kv == "format=json"));
        if self.shared.draining.load(Ordering::Acquire) {
            self.count("shutting_down", None);
            return refusal(503, Reason::ShuttingDown, json);
        }
        let (records, client) = match decode_frame(&request.body) {
            Ok(records) => {
                let mut n = 0;
                let mut client = 0;
                for r in records {
                    if n == 0 {
                        client = first_client(r);
                    }
                    n += 1;
                }
                (n, client)
            }
            Err(reason) => {
                self.count("refused", None);
                return refusal(400, reason, json);
            }
        };
        let intake = (client % self.txs.len() as u64) as usize;
        let rx_ns = self.unique_rx_ns();
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).insert(
            rx_ns,
            Waiter { expected: records, receipts: Vec::with_capacity(records), ..Waiter::default() },
        );
        self.submitted.notify_one();
        let pushed = {
            let mut tx = self.txs[intake].lock().unwrap_or_else(|p| p.into_inner());
            if self.shared.draining.load(Ordering::Acquire) {
                Err(Reason::ShuttingDown)
            } else {
                tx.try_push(Submit { rx_ns, frame: request.body.clone(), records })
                    .map_err(|_| Reason::Overloaded)
            }
        };
        if let Err(reason) = pushed {
            self.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(&rx_ns);
            self.count(reason.as_str(), None);
            return refusal(503, reason, json);
        }
        let deadline = Instant::now() + RECEIPT_TIMEOUT;
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if waiters.get(&rx_ns).is_some_and(Waiter::complete) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                waiters.remove(&rx_ns);
                drop(waiters);
                self.count("timeout", None);
                return Response::text(504, "timeout waiting for receipts\n");
            }
            waiters = self.arrived.wait_timeout(waiters, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        let waiter = waiters.remove(&rx_ns).expect("complete waiter");
        drop(waiters);
        if let Some(reason) = waiter.refused {
            self.count("refused", None);
            return refusal(400, reason, json);
        }
        self.count("ok", Some(now_ns().saturating_sub(rx_ns)));
        if json {
            let list: Vec<_> = waiter.receipts.iter().map(receipt_json).collect();
            Response::json(200, serde_json::json!({ "receipts": list }).to_string())
        } else {
            let mut buf = Vec::new();
            let mut w = FrameWriter::new(&mut buf, u32::MAX as usize);
            for r in &waiter.receipts {
                w.push_receipt(r).expect("a u32-sized frame holds every receipt of a request");
            }
            w.finish();
            Response::new(200, "application/octet-stream", buf)
        }
    }

    /// The collector: drains every answer ring until `stop`, waking the waiting requests.
    pub fn collect(&self, mut answers: Vec<Rx<Answer>>, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            let mut got = false;
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            for rx in &mut answers {
                while let Some(a) = rx.pop() {
                    got = true;
                    match a {
                        Answer::Receipt(r) => {
                            if let Some(w) = waiters.get_mut(&r.rx_ns) {
                                w.receipts.push(r);
                            }
                        }
                        Answer::Done { rx_ns, frame, refused } => {
                            drop(frame);
                            if let Some(w) = waiters.get_mut(&rx_ns) {
                                w.done = true;
                                w.refused = refused;
                            }
                        }
                    }
                }
            }
            if got {
                drop(waiters);
                self.arrived.notify_all();
            } else if waiters.is_empty() {
                // Nobody waits: sleep until a request registers (or 10 ms, to see `stop`).
                // Book-cancel receipts of timed-out requests wait in their ring till then.
                drop(self.submitted.wait_timeout(waiters, Duration::from_millis(10)));
            } else {
                drop(waiters);
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}
