//! The prover pool (`docs/daemon.md`, "Prover pool"): Groth16 clearing proofs of the
//! published windows, on dedicated low-priority threads, never in the intake's way.
//!
//! - [`pool`]: the sans-IO scheduler (coalesce or skip, what was skipped and why).
//! - [`jobs`]: proof jobs and window proof states for the admin API, bounded.
//! - [`witness`]: witnesses from journal lines and from `POST /proofs` bodies.
//! - [`worker`]: the pinned `SCHED_IDLE` worker threads and the key slot.
//! - [`api`]: the `/proofs` admin routes.
//!
//! The dispatcher that drives them is a role loop (`run/roles/prover.rs`).

pub mod api;
pub mod jobs;
pub mod pool;
pub mod witness;
pub mod worker;

use std::sync::{Arc, Mutex};

use fpn_prover::PROOF_COMPRESSED_LEN;
use fpn_runtime::metrics::MetricDesc;

use jobs::JobTable;
use worker::KeySlot;

/// "Proof ready (or failed) for windows `first ..= last`": one per finished window job, in
/// finishing order, pushed to one announcement ring per QUIC intake (`prover_quic<i>`),
/// which writes a proof record to its `subscribe_all` sessions. A full ring drops
/// the announcement for that consumer and counts it
/// (`fpn_prover_announcements_dropped_total`), never waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofAnnouncement {
    pub job_id: u64,
    pub first_window_id: u64,
    pub last_window_id: u64,
    /// The Groth16 proof, ark-serialize compressed, when the job is done (also
    /// `GET /proofs/{job_id}/proof`); `None` when it failed.
    pub proof: Option<[u8; PROOF_COMPRESSED_LEN]>,
}

/// Slots of each announcement ring (announcements come about once a second at most).
pub const ANNOUNCEMENTS_CAPACITY: usize = 256;

/// Bytes of a frame holding one proof announcement.
pub const PROOF_FRAME_LEN: usize = fpn_wire::FRAME_HEADER_LEN + fpn_wire::PROOF_LEN;

impl ProofAnnouncement {
    /// The announcement as the wire frame sessions get (`docs/wire.md`, kind 0x84), written
    /// over `buf` (which holds [`PROOF_FRAME_LEN`] bytes without growing).
    pub fn write_frame(&self, buf: &mut Vec<u8>) {
        buf.clear();
        let mut w = fpn_wire::FrameWriter::new(buf, PROOF_FRAME_LEN);
        let proof = fpn_wire::ProofAnnounce {
            window_first: self.first_window_id,
            window_last: self.last_window_id,
            job_id: self.job_id,
            proof: self.proof,
        };
        w.push_proof(&proof).expect("a proof frame holds one proof record");
        w.finish();
    }
}

/// What the dispatcher, the workers and the admin routes share.
#[derive(Debug)]
pub struct ProverShared {
    pub table: Mutex<JobTable>,
    pub keys: Arc<KeySlot>,
    /// The auction reserve (`auction.reserve`), for witnesses of journal lines.
    pub reserve: u64,
}

impl ProverShared {
    pub fn table(&self) -> std::sync::MutexGuard<'_, JobTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
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
    "Proof announcements dropped because a consumer's announcement ring was full (counted per ring).",
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
