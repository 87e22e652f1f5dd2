//! Prover workers: one OS thread each, pinned to its CPU of the core map, at the lowest
//! priority the kernel has (`SCHED_IDLE`, and nice 19 in case the policy is refused).
//!
//! Why a thread and not a glommio task: a proof is about a second of uninterrupted CPU
//! work inside arkworks, with no await point. As a task it would hold its executor, and every
//! role sharing that CPU (on two CPUs: the auction, the journal) would wait for the proof. As
//! a `SCHED_IDLE` thread it runs only when nothing else on its CPU wants to: the kernel's
//! scheduler preempts it as soon as the executor thread wakes, so the shared roles keep their
//! latency and the proof takes the leftover time (`docs/daemon.md`, "Prover pool").
//!
//! Worker 0 loads the keys from `<data_dir>/keys`, or runs the setup the first time (seconds;
//! nothing else waits for it); the others wait for it.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ark_std::rand::rngs::OsRng;
use fpn_prover::{
    CircuitId, CircuitKeys, ClearingWitness, KeyStore, proof_to_compressed, prove_clearing_timed, snarkjs,
};
use fpn_runtime::ring::{Rx, Tx};

use super::jobs::ProofFiles;
use crate::run::sys;

/// The pool's keys, made or loaded once by worker 0.
#[derive(Debug)]
pub struct KeySlot {
    pub dir: PathBuf,
    keys: OnceLock<Result<Arc<CircuitKeys>, String>>,
}

impl KeySlot {
    pub fn new(dir: PathBuf) -> KeySlot {
        KeySlot { dir, keys: OnceLock::new() }
    }

    /// The keys, if loaded (never blocks).
    pub fn get(&self) -> Option<&Result<Arc<CircuitKeys>, String>> {
        self.keys.get()
    }

    /// Loads or sets up the keys (blocks; other callers wait for the first).
    pub fn load(&self) -> &Result<Arc<CircuitKeys>, String> {
        self.keys.get_or_init(|| {
            let store = KeyStore::open(&self.dir).map_err(|e| e.to_string())?;
            store.keys(CircuitId::Clearing).map(Arc::new).map_err(|e| e.to_string())
        })
    }
}

/// Dispatcher → worker.
#[derive(Debug)]
pub struct WorkerJob {
    pub job_id: u64,
    pub witness: ClearingWitness,
}

/// Worker → dispatcher.
#[derive(Debug)]
pub struct WorkerDone {
    pub job_id: u64,
    pub result: Result<ProofFiles, String>,
    /// The whole job on the worker, pre-check included.
    pub elapsed: Duration,
}

/// How the worker's priority was lowered (logged once at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub sched_idle: bool,
    pub nice_19: bool,
}

/// Puts the calling thread on `SCHED_IDLE` and nice 19. Both are per thread on Linux, and
/// lowering one's own priority needs no privilege.
pub fn lower_priority() -> Priority {
    Priority { sched_idle: sys::set_thread_sched_idle(), nice_19: sys::set_thread_nice(19) }
}

/// Starts worker `index` pinned to `cpu`. It proves what arrives on `jobs` and answers on
/// `done` until `stop` is set.
pub fn spawn(
    index: usize,
    cpu: usize,
    keys: Arc<KeySlot>,
    jobs: Rx<WorkerJob>,
    mut done: Tx<WorkerDone>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(format!("fpn-prover{index}")).spawn(move || {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            eprintln!("flashpointd: prover{index}: warning: could not pin to cpu {cpu}");
        }
        let priority = lower_priority();
        if !priority.sched_idle {
            eprintln!(
                "flashpointd: prover{index}: warning: SCHED_IDLE refused ({}); running at nice 19 only",
                io::Error::last_os_error()
            );
        }
        let start = Instant::now();
        let loaded = keys.load();
        match loaded {
            Ok(k) if index == 0 => eprintln!(
                "flashpointd: prover keys ready in {} ms ({}), digest {}",
                start.elapsed().as_millis(),
                keys.dir.display(),
                k.digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>()
            ),
            Ok(_) => {}
            Err(e) => eprintln!("flashpointd: prover{index}: keys unusable, proofs fail: {e}"),
        }
        let mut jobs = jobs;
        while !stop.load(Ordering::Acquire) {
            let Some(job) = jobs.pop() else {
                std::thread::park_timeout(Duration::from_millis(100));
                continue;
            };
            let start = Instant::now();
            // A panic inside arkworks must fail this job, not leave it `proving` forever with
            // the worker gone.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match loaded {
                Ok(k) => prove(k, &job.witness),
                Err(e) => Err(format!("no keys: {e}")),
            }))
            .unwrap_or_else(|_| Err("the prover panicked".to_string()));
            let answer = WorkerDone { job_id: job.job_id, result, elapsed: start.elapsed() };
            // The done ring holds one answer per job the dispatcher may give this worker.
            if done.try_push(answer).is_err() {
                debug_assert!(false, "the done ring has room for every job in flight");
            }
        }
    })
}

/// One job's work on a worker: pre-check, proof, snarkjs JSON.
pub fn prove(keys: &CircuitKeys, witness: &ClearingWitness) -> Result<ProofFiles, String> {
    let (proof, timings) = prove_clearing_timed(&keys.pk, witness, &mut OsRng).map_err(|e| e.to_string())?;
    Ok(ProofFiles {
        proof: snarkjs::proof_to_json(&proof.proof),
        public: snarkjs::public_to_json(&proof.public_inputs.to_field_elements()),
        compressed: proof_to_compressed(&proof.proof),
        timings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_run_at_idle_priority() {
        let (priority, (policy, nice)) = std::thread::spawn(|| {
            let p = lower_priority();
            (p, sys::thread_priority())
        })
        .join()
        .unwrap();
        assert!(priority.nice_19);
        assert_eq!(nice, 19);
        if priority.sched_idle {
            assert_eq!(policy, libc::SCHED_IDLE);
        }
        // The calling (test) thread is untouched: both are per thread.
        assert_ne!(sys::thread_priority().0, libc::SCHED_IDLE);
    }
}
