//! Proof jobs and each window's proof state, for the admin API (`/proofs`, the `proof` field
//! of `/windows/latest` and `/clearings/latest`). Plain data behind one mutex, touched once
//! per window, per job and per admin request; never on the record path.
//!
//! Bounds: at most `jobs_max` jobs are kept, plus at most one unfinished job per worker (a
//! window span is never refused). When a job is added to a full table, the oldest finished
//! job (done or failed) is evicted; a submitted job that finds no finished job to evict is
//! refused. The states of the newest [`WINDOWS_TRACKED`] windows are kept.

use std::collections::VecDeque;

use fpn_prover::{ClearingWitness, ProveTimings};
use serde_json::{Value, json};

use super::pool::{PoolEvent, SkipReason};

/// Windows whose proof state is kept (the journal keeps 64 lines for `/windows/latest`).
pub const WINDOWS_TRACKED: usize = 1_024;
/// Submitted jobs waiting for a worker, at most (`POST /proofs` answers 503 beyond).
pub const SUBMITTED_QUEUE_MAX: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Proving,
    Done,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Proving => "proving",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    fn finished(self) -> bool {
        matches!(self, JobStatus::Done | JobStatus::Failed)
    }
}

/// A finished proof in snarkjs's JSON (`docs/proofs.md`, "snarkjs format").
#[derive(Debug, Clone, PartialEq)]
pub struct ProofFiles {
    /// `proof.json`.
    pub proof: Value,
    /// `public.json`.
    pub public: Value,
    pub timings: ProveTimings,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    /// The windows proven (`first ..= last`), or `None` for a submitted witness.
    pub windows: Option<(u64, u64)>,
    pub status: JobStatus,
    pub error: Option<String>,
    pub files: Option<ProofFiles>,
    pub created_ns: u64,
    pub finished_ns: u64,
}

impl Job {
    /// The status document (`GET /proofs/{id}`).
    pub fn status_json(&self) -> Value {
        let mut v = json!({ "id": self.id, "status": self.status.as_str() });
        if let Some((first, last)) = self.windows {
            v["windows"] = json!([first, last]);
        }
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        if let Some(f) = &self.files {
            v["prove_ms"] = json!({
                "synthesis": f.timings.synthesis.as_secs_f64() * 1e3,
                "witness_map": f.timings.witness_map.as_secs_f64() * 1e3,
                "msm": f.timings.msm.as_secs_f64() * 1e3,
            });
        }
        if self.finished_ns != 0 {
            v["elapsed_ms"] = json!(self.finished_ns.saturating_sub(self.created_ns) as f64 / 1e6);
        }
        v
    }
}

/// A window's proof state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowProof {
    Queued,
    Empty,
    Skipped(SkipReason),
    Job(u64),
}

/// The table refused a job: every kept job is unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

#[derive(Debug)]
pub struct JobTable {
    jobs: VecDeque<Job>,
    jobs_max: usize,
    next_id: u64,
    windows: VecDeque<(u64, WindowProof)>,
    submitted: VecDeque<(u64, ClearingWitness)>,
    pub evicted_total: u64,
}

impl JobTable {
    pub fn new(jobs_max: usize, workers: usize) -> JobTable {
        JobTable {
            jobs: VecDeque::with_capacity(jobs_max + workers),
            jobs_max,
            next_id: 1,
            windows: VecDeque::with_capacity(WINDOWS_TRACKED),
            submitted: VecDeque::with_capacity(SUBMITTED_QUEUE_MAX),
            evicted_total: 0,
        }
    }

    /// Makes room for one job: evicts the oldest finished one if the table is full. Whether
    /// the table has room now.
    fn make_room(&mut self) -> bool {
        if self.jobs.len() < self.jobs_max {
            return true;
        }
        match self.jobs.iter().position(|j| j.status.finished()) {
            Some(pos) => {
                self.jobs.remove(pos);
                self.evicted_total += 1;
                true
            }
            None => false,
        }
    }

    fn push(&mut self, windows: Option<(u64, u64)>, status: JobStatus, now_ns: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.jobs.push_back(Job {
            id,
            windows,
            status,
            error: None,
            files: None,
            created_ns: now_ns,
            finished_ns: 0,
        });
        id
    }

    /// `POST /proofs`: queue a checked witness (of `windows`, if it is a window's). Its id,
    /// or `TableFull` when the submitted queue is full or the table holds only unfinished jobs.
    pub fn submit(
        &mut self,
        witness: ClearingWitness,
        windows: Option<(u64, u64)>,
        now_ns: u64,
    ) -> Result<u64, TableFull> {
        if self.submitted.len() >= SUBMITTED_QUEUE_MAX || !self.make_room() {
            return Err(TableFull);
        }
        let id = self.push(windows, JobStatus::Pending, now_ns);
        self.submitted.push_back((id, witness));
        Ok(id)
    }

    /// The oldest submitted witness, now proving.
    pub fn take_submitted(&mut self) -> Option<(u64, ClearingWitness)> {
        let (id, witness) = self.submitted.pop_front()?;
        if let Some(job) = self.get_mut(id) {
            job.status = JobStatus::Proving;
        }
        Some((id, witness))
    }

    /// A span goes to a worker: its job, proving. Never refused (see the module bounds).
    pub fn start_span(&mut self, first: u64, last: u64, windows: &[(u64, u64)], now_ns: u64) -> u64 {
        self.make_room();
        let id = self.push(Some((first, last)), JobStatus::Proving, now_ns);
        for &(w, _) in windows {
            self.set_window(w, WindowProof::Job(id));
        }
        id
    }

    pub fn finish(&mut self, id: u64, result: Result<ProofFiles, String>, now_ns: u64) {
        if let Some(job) = self.get_mut(id) {
            match result {
                Ok(files) => {
                    job.status = JobStatus::Done;
                    job.files = Some(files);
                }
                Err(e) => {
                    job.status = JobStatus::Failed;
                    job.error = Some(e);
                }
            }
            job.finished_ns = now_ns;
        }
    }

    pub fn window_event(&mut self, event: PoolEvent) {
        match event {
            PoolEvent::Queued { window_id } => self.set_window(window_id, WindowProof::Queued),
            PoolEvent::Empty { window_id } => self.set_window(window_id, WindowProof::Empty),
            PoolEvent::Skipped { window_id, reason } => {
                self.set_window(window_id, WindowProof::Skipped(reason))
            }
        }
    }

    fn set_window(&mut self, window_id: u64, state: WindowProof) {
        if let Some(slot) = self.window_slot(window_id) {
            *slot = state;
            return;
        }
        if self.windows.back().is_some_and(|&(w, _)| w > window_id) {
            return; // older than anything tracked
        }
        if self.windows.len() == WINDOWS_TRACKED {
            self.windows.pop_front();
        }
        self.windows.push_back((window_id, state));
    }

    fn window_slot(&mut self, window_id: u64) -> Option<&mut WindowProof> {
        let pos = self.windows.binary_search_by_key(&window_id, |&(w, _)| w).ok()?;
        Some(&mut self.windows[pos].1)
    }

    pub fn get(&self, id: u64) -> Option<&Job> {
        let pos = self.jobs.binary_search_by_key(&id, |j| j.id).ok()?;
        Some(&self.jobs[pos])
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Job> {
        let pos = self.jobs.binary_search_by_key(&id, |j| j.id).ok()?;
        Some(&mut self.jobs[pos])
    }

    /// The `proof` field of a window: `{"status": "queued" | "empty" | "skipped", ...}` or the
    /// job's `{"id", "status", "windows"}`. A window newer than any the pool has seen is
    /// `pending` (on its way from the journal); one older than those tracked is `null`.
    pub fn window_json(&self, window_id: u64) -> Value {
        match self.windows.back() {
            None => return json!({ "status": "pending" }),
            Some(&(newest, _)) if window_id > newest => return json!({ "status": "pending" }),
            _ => {}
        }
        let Ok(pos) = self.windows.binary_search_by_key(&window_id, |&(w, _)| w) else {
            return Value::Null;
        };
        match self.windows[pos].1 {
            WindowProof::Queued => json!({ "status": "pending" }),
            WindowProof::Empty => json!({ "status": "empty" }),
            WindowProof::Skipped(reason) => json!({ "status": "skipped", "reason": reason.as_str() }),
            WindowProof::Job(id) => match self.get(id) {
                Some(job) => {
                    let (first, last) = job.windows.expect("window jobs have windows");
                    json!({ "id": id, "status": job.status.as_str(), "windows": [first, last] })
                }
                None => json!({ "id": id, "status": "evicted" }),
            },
        }
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> ProofFiles {
        ProofFiles { proof: json!({}), public: json!([]), timings: ProveTimings::default() }
    }

    #[test]
    fn the_table_keeps_the_newest_jobs_and_evicts_finished_ones_first() {
        let mut t = JobTable::new(3, 1);
        let a = t.submit(ClearingWitness::sample(), None, 1).unwrap();
        let b = t.submit(ClearingWitness::sample(), None, 2).unwrap();
        let c = t.submit(ClearingWitness::sample(), None, 3).unwrap();
        // Full of unfinished jobs: refused.
        assert_eq!(t.submit(ClearingWitness::sample(), None, 4), Err(TableFull));
        assert_eq!(t.take_submitted().map(|(id, _)| id), Some(a));
        assert_eq!(t.get(a).unwrap().status, JobStatus::Proving);
        t.finish(a, Ok(files()), 10);
        assert_eq!(t.get(a).unwrap().status, JobStatus::Done);
        // A span job is never refused; it evicts the finished `a`.
        let s = t.start_span(5, 6, &[(5, 0), (6, 0)], 11);
        assert!(t.get(a).is_none());
        assert_eq!((t.len(), t.evicted_total), (3, 1));
        assert_eq!(t.window_json(5), json!({"id": s, "status": "proving", "windows": [5, 6]}));
        t.take_submitted();
        t.finish(b, Err("boom".into()), 12);
        assert_eq!(t.get(b).unwrap().status_json()["error"], json!("boom"));
        let _ = c;
    }

    #[test]
    fn window_states() {
        let mut t = JobTable::new(8, 1);
        assert_eq!(t.window_json(1), json!({"status": "pending"}));
        t.window_event(PoolEvent::Queued { window_id: 1 });
        t.window_event(PoolEvent::Empty { window_id: 2 });
        t.window_event(PoolEvent::Skipped { window_id: 3, reason: SkipReason::QueueFull });
        assert_eq!(t.window_json(1), json!({"status": "pending"}));
        assert_eq!(t.window_json(2), json!({"status": "empty"}));
        assert_eq!(t.window_json(3), json!({"status": "skipped", "reason": "queue_full"}));
        assert_eq!(t.window_json(4), json!({"status": "pending"}));
        for w in 5..5 + WINDOWS_TRACKED as u64 {
            t.window_event(PoolEvent::Empty { window_id: w });
        }
        assert_eq!(t.window_json(1), Value::Null);
    }
}
