//! The prover pool (`docs/daemon.md`, "Prover pool"): Groth16 clearing proofs of the
//! published windows, on dedicated low-priority threads, never in the intake's way.
//!
//! - [`pool`]: the sans-IO scheduler (coalesce or skip, what was skipped and why).
//! - [`jobs`]: proof jobs and window proof states for the admin API, bounded.
//! - [`witness`]: witnesses from journal lines and from `POST /proofs` bodies.
//! - [`worker`]: the pinned `SCHED_IDLE` worker threads and the key slot.
//! - [`api`]: the `/proofs` admin routes.
//!
//! The dispatcher that drives them is a role loop (`run/prover.rs`).

pub mod api;
pub mod jobs;
pub mod pool;
pub mod witness;
pub mod worker;

use std::sync::{Arc, Mutex};

use fpn_runtime::metrics::MetricDesc;
use fpn_runtime::ring::Rx;

use jobs::JobTable;
use worker::KeySlot;

/// "Proof ready (or failed) for windows `first ..= last`": one per finished window job, in
/// finishing order, on the announcement ring. The consumer end is in
/// [`ProverShared::announcements`]; the client transport takes it at start-up to push these
/// to subscribers. While nobody takes it the ring fills and further announcements are
/// counted as dropped (`fpn_prover_announcements_dropped_total`), never waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofAnnouncement {
    pub job_id: u64,
    pub first_window_id: u64,
    pub last_window_id: u64,
    /// `true`: done, fetch `GET /proofs/{job_id}/proof`; `false`: the job failed.
    pub ok: bool,
}

/// Slots of the announcement ring.
pub const ANNOUNCEMENTS_CAPACITY: usize = 256;

/// What the dispatcher, the workers and the admin routes share.
#[derive(Debug)]
pub struct ProverShared {
    pub table: Mutex<JobTable>,
    pub keys: Arc<KeySlot>,
    /// The consumer end of the announcement ring, until someone takes it.
    pub announcements: Mutex<Option<Rx<ProofAnnouncement>>>,
    /// The auction reserve (`auction.reserve`), for witnesses of journal lines.
    pub reserve: u64,
}

impl ProverShared {
    pub fn table(&self) -> std::sync::MutexGuard<'_, JobTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the consumer end of the announcement ring (once; `None` afterwards).
    pub fn take_announcements(&self) -> Option<Rx<ProofAnnouncement>> {
        self.announcements.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

pub static WINDOWS_RECEIVED_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_prover_windows_received_total", "Window results that reached the prover pool.");
pub static WINDOWS_EMPTY_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_prover_windows_empty_total",
    "Windows without entries or winners: nothing to prove.",
);
pub static WINDOWS_SKIPPED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_prover_windows_skipped_total",
    "Windows that get no proof, by reason (queue_full, superseded, too_large, unprovable, ring_full).",
);
pub static WINDOWS_PROVEN_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_prover_windows_proven_total", "Non-empty windows covered by a finished proof.");
pub static SPANS_COALESCED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_prover_spans_coalesced_total",
    "Window proofs that cover more than one window (coalesce mode).",
);
pub static PROOFS_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_prover_proofs_total",
    "Proof jobs finished, by source (windows, submitted) and outcome (done, failed).",
);
pub static JOBS_EVICTED_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_prover_jobs_evicted_total", "Finished proof jobs evicted from the job table.");
pub static ANNOUNCEMENTS_DROPPED_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_prover_announcements_dropped_total",
    "Proof announcements dropped because the announcement ring was full (no consumer yet).",
);
pub static QUEUE_WINDOWS: MetricDesc =
    MetricDesc::gauge("fpn_prover_queue_windows", "Windows waiting for a prover worker.");
pub static WORKERS_BUSY: MetricDesc = MetricDesc::gauge("fpn_prover_workers_busy", "Prover workers proving.");
pub static KEYS_READY: MetricDesc =
    MetricDesc::gauge("fpn_prover_keys_ready", "1 once the proving keys are loaded (or set up), else 0.");
pub static LAG_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_prover_lag_seconds",
    "From a window's close until the proof covering it was ready, per proven window.",
);
pub static PROVE_SECONDS: MetricDesc = MetricDesc::histogram(
    "fpn_prover_prove_seconds",
    "One proof job on its worker, by phase (synthesis, witness_map, msm) and in total (all).",
);

pub static PROVER_METRICS: [&MetricDesc; 13] = [
    &WINDOWS_RECEIVED_TOTAL,
    &WINDOWS_EMPTY_TOTAL,
    &WINDOWS_SKIPPED_TOTAL,
    &WINDOWS_PROVEN_TOTAL,
    &SPANS_COALESCED_TOTAL,
    &PROOFS_TOTAL,
    &JOBS_EVICTED_TOTAL,
    &ANNOUNCEMENTS_DROPPED_TOTAL,
    &QUEUE_WINDOWS,
    &WORKERS_BUSY,
    &KEYS_READY,
    &LAG_SECONDS,
    &PROVE_SECONDS,
];
