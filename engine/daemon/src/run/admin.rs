//! Admin routes (`docs/daemon.md`, "Admin endpoint"), served by `fpn_runtime::admin` on
//! std threads, off the shard cores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fpn_runtime::admin::{Method, Request, Response, Router};
use fpn_runtime::heartbeat::{HeartbeatChecker, Heartbeats};
use fpn_runtime::metrics::MetricsHub;
use serde_json::{Value, json};

use super::roles::HOUSEKEEPING_PERIOD;
use super::shared::Shared;
use super::submit::SubmitPath;
use crate::prover::ProverShared;

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
