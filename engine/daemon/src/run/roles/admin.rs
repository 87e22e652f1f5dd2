//! Role `admin`: the admin endpoint (`docs/daemon.md`, "Admin endpoint") and the submit
//! path, on plain std threads served by `fpn_runtime::admin`, off the shard cores: the
//! routes, readiness, and `POST /submit` with its receipt collector.
//!
//! The submit path (for tests and tools): `POST /submit` with one binary frame
//! (`docs/wire.md`) → the intake of the frame's first client over its submit ring → the
//! answers back over the intake's answer ring (the merger's answers to book cancels come
//! through the intake too, in their record's place) → the HTTP response. Each intake's
//! submit ring has one producer end behind a mutex; a collector thread drains the answer
//! rings and hands each answer to the request waiting for it, matched by the frame's
//! `rx_ns`, which is unique per frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fpn_runtime::admin::{Method, Request, Response, Router};
use fpn_runtime::clock::now_ns;
use fpn_runtime::heartbeat::{HeartbeatChecker, Heartbeats};
use fpn_runtime::metrics::{Histogram, Labels, MetricDesc, MetricsHub, ShardPublisher};
use fpn_runtime::ring::{Rx, Tx};
use fpn_wire::{FrameWriter, Reason, Receipt, RecordRef, decode_frame};
use serde_json::{Value, json};

use super::intake::{Answer, Submit};
use crate::prover::ProverShared;
use crate::run::role::HOUSEKEEPING_PERIOD;
use crate::run::shared::Shared;

/// Admin request bodies, at most (one frame).
pub const SUBMIT_BODY_BYTES_MAX: usize = 64 * 1024;
/// How long a request waits for its receipts.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(5);

pub static SUBMIT_FRAMES_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_submit_frames_total",
    "POST /submit requests, by outcome (ok, refused, shutting_down, overloaded, timeout).",
);
pub static SUBMIT_RECEIPT_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_submit_receipt_latency_seconds",
    "From receipt of a POST /submit frame until every receipt of it was back on the admin side.",
);

pub static METRICS: [&MetricDesc; 2] = [&SUBMIT_FRAMES_TOTAL, &SUBMIT_RECEIPT_SECONDS];

/// Readiness: READY was sent and every shard's heartbeat advanced since the previous check
/// (checks are at least three housekeeping periods apart; a request in between gets the
/// last answer).
pub struct Health {
    pub heartbeats: Heartbeats,
    pub ready: AtomicBool,
    last: Mutex<(HeartbeatChecker, Instant, Vec<String>)>,
}

impl Health {
    pub fn new(heartbeats: Heartbeats) -> Health {
        let checker = heartbeats.checker();
        Health {
            heartbeats,
            ready: AtomicBool::new(false),
            last: Mutex::new((checker, Instant::now(), vec!["starting".into()])),
        }
    }

    /// Shards whose heartbeat did not advance (empty: all advanced).
    pub fn stalled(&self) -> Vec<String> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.1.elapsed() >= 3 * HOUSEKEEPING_PERIOD {
            last.2 = last.0.check().stalled;
            last.1 = Instant::now();
        }
        last.2.clone()
    }
}

/// The newest `n` journal lines as a JSON array text, newest first. With the prover on, each
/// line gains a `proof` field (`docs/daemon.md`, "Prover pool"), spliced into the text before
/// its closing brace rather than parsing the line.
fn latest_array(shared: &Shared, prover: Option<&ProverShared>, n: usize) -> String {
    let latest = shared.latest.lock().unwrap_or_else(|p| p.into_inner());
    let table = prover.map(ProverShared::table);
    let lines: Vec<String> = latest
        .iter()
        .rev()
        .take(n)
        .map(|(window_id, line)| match &table {
            Some(t) => format!("{},\"proof\":{}}}", &line[..line.len() - 1], t.window_json(*window_id)),
            None => line.clone(),
        })
        .collect();
    format!("[{}]", lines.join(","))
}

/// A field (`block`, `clearing`) of the newest journal line; the clearing gains the window's
/// `proof` field when the prover is on.
fn latest_field(shared: &Shared, prover: Option<&ProverShared>, field: &str) -> Response {
    let line = shared.latest.lock().unwrap_or_else(|p| p.into_inner()).back().cloned();
    match line {
        Some((window_id, line)) => {
            let mut value: Value = serde_json::from_str(&line).expect("the journal writes JSON");
            if let Some(p) = prover
                && field == "clearing"
            {
                value[field]["proof"] = p.table().window_json(window_id);
            }
            Response::json(200, value[field].to_string())
        }
        None => Response::json(404, json!({"error": "no window published yet"}).to_string()),
    }
}

fn query_n(request: &Request) -> Result<usize, String> {
    let Some(q) = request.query.as_deref() else { return Ok(1) };
    for kv in q.split('&') {
        if let Some(v) = kv.strip_prefix("n=") {
            return v.parse().map_err(|_| format!("n={v:?} is not a count"));
        }
    }
    Ok(1)
}

pub fn router(
    hub: Arc<MetricsHub>,
    shared: Arc<Shared>,
    submit: Arc<SubmitPath>,
    health: Arc<Health>,
    prover: Option<Arc<ProverShared>>,
) -> Router {
    let (h1, h2) = (hub.clone(), hub);
    let (p1, p2) = (prover.clone(), prover);
    let (s1, s2, s3, s4) = (shared.clone(), shared.clone(), shared.clone(), shared);
    let health2 = health.clone();
    Router::new()
        .route(Method::Get, "/metrics", move |_| Response::prometheus(h1.render_prometheus()))
        .route(Method::Get, "/metrics/json", move |_| Response::json(200, h2.render_json()))
        .route(Method::Get, "/health/live", |_| Response::text(200, "live\n"))
        .route(Method::Get, "/health/ready", move |_| {
            if !health.ready.load(Ordering::Acquire) {
                return Response::text(503, "starting\n");
            }
            if s4.draining.load(Ordering::Acquire) {
                return Response::text(503, "draining\n");
            }
            if s4.log_failing.load(Ordering::Acquire) {
                // New records are refused `storage_unavailable` until a log write succeeds.
                return Response::text(503, "degraded: input log writes failing\n");
            }
            let stalled = health.stalled();
            if stalled.is_empty() {
                Response::text(200, "ready\n")
            } else {
                Response::text(503, format!("stalled: {}\n", stalled.join(" ")))
            }
        })
        .route(Method::Get, "/blocks/latest", move |_| latest_field(&s1, None, "block"))
        .route(Method::Get, "/clearings/latest", move |_| latest_field(&s2, p1.as_deref(), "clearing"))
        .route(Method::Get, "/windows/latest", move |request| match query_n(request) {
            Ok(n) => Response::json(200, latest_array(&s3, p2.as_deref(), n)),
            Err(e) => Response::json(400, json!({ "error": e }).to_string()),
        })
        .route(Method::Post, "/submit", move |request| submit.handle(request))
        .route(Method::Get, "/health", move |_| {
            let names = health2.heartbeats.names().to_vec();
            let values = health2.heartbeats.values();
            let beats: serde_json::Map<String, Value> =
                names.into_iter().zip(values).map(|(n, v)| (n, json!(v))).collect();
            Response::json(200, json!({ "heartbeats": beats }).to_string())
        })
}

// ---------------------------------------------------------------------------------------
// The WebTransport pages (with `webtransport.enabled`)

/// `GET /webtransport` (and `/webtransport/config.json`, where the demo page looks): the
/// endpoint's URL and its current certificate hashes, as a page needs them to connect
/// (`{"url", "hashes", "not_after_unix_s"}`, `docs/webtransport.md`); `GET
/// /webtransport/demo`: the demo page; `GET /webtransport/fpn.js`: the browser module.
pub struct WebTransportPages {
    endpoint: fpn_webtransport::EndpointWatch,
}

impl WebTransportPages {
    pub fn new(endpoint: fpn_webtransport::EndpointWatch) -> WebTransportPages {
        WebTransportPages { endpoint }
    }

    /// The answer to `request` if it is one of these routes.
    pub fn handle(&self, request: &Request) -> Option<Response> {
        use fpn_webtransport::page::{DEMO_HTML, FPN_JS};
        let rest = request.path.strip_prefix("/webtransport")?;
        if request.method != Method::Get {
            return Some(Response::text(405, "method not allowed\n").with_header("Allow", "GET"));
        }
        let page = |content_type: &str, body: &str| {
            Response::new(200, content_type, body.as_bytes()).with_header("Cache-Control", "no-store")
        };
        Some(match rest {
            "" | "/" | "/config.json" => {
                Response::json(200, self.endpoint.info().json()).with_header("Cache-Control", "no-store")
            }
            "/demo" => page("text/html; charset=utf-8", DEMO_HTML),
            "/fpn.js" => page("text/javascript; charset=utf-8", FPN_JS),
            _ => Response::not_found(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// The submit path

const OUTCOMES: [&str; 5] = ["ok", "refused", "shutting_down", "overloaded", "timeout"];

/// One request's answers, in record order: `None` marks a record the merger answers later.
#[derive(Debug, Default)]
struct Waiter {
    expected: usize,
    intake: usize,
    receipts: Vec<Option<Receipt>>,
    done: bool,
    refused: Option<Reason>,
    /// The log position of the intake the frame's receipts wait for.
    durable_at: u64,
}

impl Waiter {
    /// Every receipt is in, and the log has the records (`docs/log.md`, "Durability").
    fn complete(&self, shared: &Shared) -> bool {
        self.done
            && (self.refused.is_some()
                || (self.receipts.len() >= self.expected && self.receipts.iter().all(Option::is_some)))
            && shared.log_durable[self.intake].0.load(Ordering::Acquire) >= self.durable_at
    }

    /// The merger's answer takes the first place left for one.
    fn fill(&mut self, late: Receipt) {
        match self.receipts.iter_mut().find(|r| r.is_none()) {
            Some(place) => *place = Some(late),
            None => debug_assert!(false, "a late receipt without its place"),
        }
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
            Waiter { expected: records, intake, receipts: Vec::with_capacity(records), ..Waiter::default() },
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
            if waiters.get(&rx_ns).is_some_and(|w| w.complete(&self.shared)) {
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
        let receipts: Vec<Receipt> = waiter.receipts.into_iter().flatten().collect();
        if let Some(reason) = waiter.refused {
            self.count("refused", None);
            return refusal(400, reason, json);
        }
        self.count("ok", Some(now_ns().saturating_sub(rx_ns)));
        if json {
            let list: Vec<_> = receipts.iter().map(receipt_json).collect();
            Response::json(200, serde_json::json!({ "receipts": list }).to_string())
        } else {
            let mut buf = Vec::new();
            let mut w = FrameWriter::new(&mut buf, u32::MAX as usize);
            for r in &receipts {
                w.push_receipt(r).expect("a u32-sized frame holds every receipt of a request");
            }
            w.finish();
            Response::new(200, "application/octet-stream", buf)
        }
    }

    /// The collector: drains every answer ring until `stop`, waking the waiting requests.
    pub fn collect(&self, mut answers: Vec<Rx<Answer>>, stop: &AtomicBool) {
        let mut durable_seen = 0;
        while !stop.load(Ordering::Acquire) {
            // Requests also wait for the log: wake them when it moves.
            let durable: u64 = self.shared.log_durable.iter().map(|d| d.0.load(Ordering::Acquire)).sum();
            let mut got = durable != std::mem::replace(&mut durable_seen, durable);
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            for rx in &mut answers {
                while let Some(a) = rx.pop() {
                    got = true;
                    match a {
                        Answer::Receipt(r) => {
                            if let Some(w) = waiters.get_mut(&r.rx_ns) {
                                w.receipts.push(Some(r));
                            }
                        }
                        Answer::Deferred { rx_ns } => {
                            if let Some(w) = waiters.get_mut(&rx_ns) {
                                w.receipts.push(None);
                            }
                        }
                        Answer::Late(r) => {
                            if let Some(w) = waiters.get_mut(&r.rx_ns) {
                                w.fill(r);
                            }
                        }
                        Answer::Done { rx_ns, frame, refused, durable_at } => {
                            drop(frame);
                            if let Some(w) = waiters.get_mut(&rx_ns) {
                                w.done = true;
                                w.refused = refused;
                                w.durable_at = durable_at;
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
