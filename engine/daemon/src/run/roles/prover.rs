//! Role `prover`: the dispatcher of the prover pool (`docs/daemon.md`, "Prover pool").
//!
//! A light role loop on the CPU of `prover#0`: it drains the journal → prover ring into the
//! sans-IO [`PoolCore`], records each window's fate in the job table, hands spans and
//! submitted witnesses to free workers, and collects their proofs. The proving itself runs
//! on the worker threads (`prover::worker`), never on an executor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use fpn_runtime::metrics::{Histogram, Labels};
use fpn_runtime::ring::{Rx, Tx, ring};

use crate::config::{ProverMode, Settings};
use crate::cores::Role;
use crate::prover::jobs::JobTable;
use crate::prover::pool::{Policy, PoolCore, SkipReason, WindowInput};
use crate::prover::worker::{self, KeySlot, WorkerDone, WorkerJob};
use crate::prover::*;
use crate::run::RunError;
use crate::run::links::{RxLink, TxLink};
use crate::run::role::{BUDGET, LoopKit, RoleLoop};
use crate::run::topology::Wiring;

/// Directory of the proving keys under `engine.data_dir`.
pub const KEYS_DIR: &str = "keys";
/// How long the stop waits for workers to finish their proof before leaving them behind.
pub const WORKER_STOP_GRACE: Duration = Duration::from_secs(3);

/// The journal's end of the journal → prover ring.
pub struct ProverFeed {
    pub tx: TxLink<WindowInput>,
    /// `auction.reserve`, for the witnesses.
    pub reserve: u64,
}

/// The job a worker is on.
struct InFlight {
    job_id: u64,
    /// `(window_id, closed_ns)` of the windows a span proves; empty for a submitted job.
    windows: Vec<(u64, u64)>,
    span: Option<(u64, u64)>,
}

struct WorkerLink {
    jobs: Tx<WorkerJob>,
    done: Rx<WorkerDone>,
    thread: Thread,
    busy: Option<InFlight>,
}

/// The worker threads, stopped after the executors.
pub struct ProverThreads {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl ProverThreads {
    /// Asks every worker to stop and joins those that finish within [`WORKER_STOP_GRACE`]. A
    /// worker in the middle of a proof or of the key setup cannot be interrupted; it is left
    /// to end with the process.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for h in &self.handles {
            h.thread().unpark();
        }
        let deadline = Instant::now() + WORKER_STOP_GRACE;
        let mut left = 0;
        for h in self.handles {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                left += 1;
            }
        }
        if left > 0 {
            eprintln!("flashpointd: {left} prover worker(s) still busy at exit; their proofs are dropped");
        }
    }
}

/// The pool's parts `run` keeps: what the admin routes share with it, and its threads.
pub struct ProverHandles {
    pub shared: Arc<ProverShared>,
    pub threads: ProverThreads,
}

impl ProverRole {
    /// The dispatcher on the journal → prover ring and one announcement ring per QUIC
    /// intake (`prover_quic<i>`) and the WebTransport endpoint's (`prover_wt`), with its
    /// workers started.
    pub fn build(w: &mut Wiring<'_>, quic_intakes: usize) -> Result<(ProverRole, ProverHandles), RunError> {
        let feed = w.links.plain_rx("journal_prover");
        let mut announce: Vec<_> =
            (0..quic_intakes).map(|i| w.links.plain_tx(&format!("prover_quic{i}"))).collect();
        announce.extend(w.links.try_plain_tx("prover_wt"));
        let kit = w.kit(Role::Prover, "prover");
        start(w.settings, kit, feed, announce).map_err(|source| RunError::Io {
            what: "starting the prover workers",
            path: "".into(),
            source,
        })
    }
}

/// Builds the pool and starts its workers (pinned, idle priority). Nothing waits for the keys.
pub fn start(
    settings: &Settings,
    kit: LoopKit,
    windows: RxLink<WindowInput>,
    announce: Vec<TxLink<ProofAnnouncement>>,
) -> std::io::Result<(ProverRole, ProverHandles)> {
    let p = &settings.prover;
    let policy = match p.mode {
        ProverMode::Coalesce => Policy::Coalesce { span_max: p.span_max },
        ProverMode::Skip => Policy::Skip,
    };
    let keys = Arc::new(KeySlot::new(settings.data_dir.join(KEYS_DIR)));
    let shared = Arc::new(ProverShared {
        table: Mutex::new(JobTable::new(p.jobs_max, p.workers)),
        keys: keys.clone(),
        reserve: settings.auction.reserve,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut links = Vec::with_capacity(p.workers);
    let mut handles = Vec::with_capacity(p.workers);
    for i in 0..p.workers {
        let cpu = settings.core_map.cpu_of(Role::Prover, i).expect("every prover worker has a CPU");
        let (jobs_tx, jobs_rx) = ring(1);
        let (done_tx, done_rx) = ring(1);
        let handle = worker::spawn(i, cpu, keys.clone(), jobs_rx, done_tx, stop.clone())?;
        links.push(WorkerLink { jobs: jobs_tx, done: done_rx, thread: handle.thread().clone(), busy: None });
        handles.push(handle);
    }
    let label = |pairs: &[(&str, &str)]| Labels::new(pairs);
    let role = ProverRole {
        core: PoolCore::new(policy, p.queue_capacity, 1),
        windows,
        workers: links,
        shared: shared.clone(),
        announce,
        kit,
        lag: Histogram::new(),
        prove: std::array::from_fn(|_| Histogram::new()),
        prove_labels: ["synthesis", "witness_map", "msm", "all"].map(|phase| label(&[("phase", phase)])),
        skipped_labels: SkipReason::ALL.map(|r| label(&[("reason", r.as_str())])),
        proofs_labels: [
            ("windows", "done"),
            ("windows", "failed"),
            ("submitted", "done"),
            ("submitted", "failed"),
        ]
        .map(|(source, outcome)| label(&[("source", source), ("outcome", outcome)])),
        proofs_total: [0; 4],
        windows_proven_total: 0,
        announcements_dropped_total: 0,
        jobs_evicted_total: 0,
    };
    Ok((role, ProverHandles { shared, threads: ProverThreads { stop, handles } }))
}

/// The dispatcher. See the module documentation.
pub struct ProverRole {
    core: PoolCore,
    windows: RxLink<WindowInput>,
    workers: Vec<WorkerLink>,
    shared: Arc<ProverShared>,
    /// One announcement ring per QUIC intake.
    announce: Vec<TxLink<ProofAnnouncement>>,
    kit: LoopKit,
    lag: Histogram,
    prove: [Histogram; 4],
    prove_labels: [Labels; 4],
    skipped_labels: [Labels; SkipReason::ALL.len()],
    /// `[windows done, windows failed, submitted done, submitted failed]`.
    proofs_labels: [Labels; 4],
    proofs_total: [u64; 4],
    windows_proven_total: u64,
    announcements_dropped_total: u64,
    jobs_evicted_total: u64,
}

impl RoleLoop for ProverRole {
    /// The dispatcher moves witnesses and JSON around: it allocates, off the hot roles.
    const HOT: bool = false;

    fn kit(&mut self) -> &mut LoopKit {
        &mut self.kit
    }

    fn step(&mut self, now: u64) -> bool {
        let mut did_work = false;
        for _ in 0..BUDGET {
            let Some(input) = self.windows.rx.pop() else { break };
            self.core.handle_window(input);
            did_work = true;
        }
        let shared = self.shared.clone();
        let mut table = shared.table();
        // Finished jobs.
        for w in &mut self.workers {
            while let Some(done) = w.done.pop() {
                did_work = true;
                let flight = w.busy.take().expect("a worker answers only the job it was given");
                debug_assert_eq!(flight.job_id, done.job_id);
                let ok = done.result.is_ok();
                let compressed = done.result.as_ref().ok().map(|files| files.compressed);
                if let Ok(files) = &done.result {
                    let t = files.timings;
                    for (h, d) in self.prove.iter_mut().zip([t.synthesis, t.witness_map, t.msm, done.elapsed])
                    {
                        h.record(d);
                    }
                    for &(_, closed_ns) in &flight.windows {
                        self.lag.record_ns(now.saturating_sub(closed_ns).max(1));
                    }
                    self.windows_proven_total += flight.windows.len() as u64;
                }
                let source = if flight.windows.is_empty() { 2 } else { 0 };
                self.proofs_total[source + usize::from(!ok)] += 1;
                table.finish(done.job_id, done.result, now);
                if let Some((first, last)) = flight.span {
                    let a = ProofAnnouncement {
                        job_id: done.job_id,
                        first_window_id: first,
                        last_window_id: last,
                        proof: compressed,
                    };
                    for link in &mut self.announce {
                        if link.tx.try_push(a).is_err() {
                            self.announcements_dropped_total += 1;
                        }
                    }
                }
            }
        }
        // New work for free workers, once the keys are settled (a failed load fails each job
        // with the reason).
        if self.shared.keys.get().is_some() {
            for w in &mut self.workers {
                if w.busy.is_some() {
                    continue;
                }
                let (job, flight) = if let Some((job_id, witness)) = table.take_submitted() {
                    (WorkerJob { job_id, witness }, InFlight { job_id, windows: Vec::new(), span: None })
                } else if let Some(span) = self.core.poll_span() {
                    let job_id = table.start_span(span.first, span.last, &span.windows, now);
                    let flight =
                        InFlight { job_id, windows: span.windows, span: Some((span.first, span.last)) };
                    (WorkerJob { job_id, witness: span.witness }, flight)
                } else {
                    break;
                };
                did_work = true;
                let pushed = w.jobs.try_push(job);
                assert!(pushed.is_ok(), "an idle worker's job ring is empty");
                w.busy = Some(flight);
                w.thread.unpark();
            }
        }
        while let Some(event) = self.core.poll_event() {
            table.window_event(event);
        }
        self.jobs_evicted_total = table.evicted_total;
        did_work
    }

    fn housekeep(&mut self) {
        let Self { core, windows, announce, kit, lag, prove, .. } = self;
        let idle = kit.idler.counters();
        let c = *core.counters();
        let queued = core.queued() as i64;
        let busy = self.workers.iter().filter(|w| w.busy.is_some()).count() as i64;
        let keys_ready = matches!(self.shared.keys.get(), Some(Ok(_))) as i64;
        let (skipped_labels, proofs_labels, prove_labels) =
            (&self.skipped_labels, &self.proofs_labels, &self.prove_labels);
        let (proofs, proven, dropped, evicted) = (
            self.proofs_total,
            self.windows_proven_total,
            self.announcements_dropped_total,
            self.jobs_evicted_total,
        );
        let none = &kit.none;
        kit.publisher.publish(|s| {
            windows.publish(s);
            announce.iter().for_each(|a| a.publish(s));
            s.idle(none, idle);
            s.counter(&WINDOWS_RECEIVED_TOTAL, none, c.windows_received_total);
            s.counter(&WINDOWS_EMPTY_TOTAL, none, c.windows_empty_total);
            for (labels, &n) in skipped_labels.iter().zip(&c.windows_skipped_total) {
                s.counter(&WINDOWS_SKIPPED_TOTAL, labels, n);
            }
            s.counter(&WINDOWS_PROVEN_TOTAL, none, proven);
            s.counter(&SPANS_COALESCED_TOTAL, none, c.spans_coalesced_total);
            for (labels, &n) in proofs_labels.iter().zip(&proofs) {
                s.counter(&PROOFS_TOTAL, labels, n);
            }
            s.counter(&JOBS_EVICTED_TOTAL, none, evicted);
            s.counter(&ANNOUNCEMENTS_DROPPED_TOTAL, none, dropped);
            s.gauge(&QUEUE_WINDOWS, none, queued);
            s.gauge(&WORKERS_BUSY, none, busy);
            s.gauge(&KEYS_READY, none, keys_ready);
            s.histogram(&LAG_SECONDS, none, lag);
            for (labels, h) in prove_labels.iter().zip(prove.iter()) {
                s.histogram(&PROVE_SECONDS, labels, h);
            }
        });
        kit.heartbeat.beat();
    }
}

#[cfg(test)]
mod tests {
    use fpn_prover::ClearingWitness;
    use fpn_runtime::heartbeat::Heartbeats;
    use fpn_runtime::metrics::MetricsHub;

    use super::*;
    use fpn_runtime::clock::now_ns;

    use crate::config::{Flag, Inputs, load};
    use crate::cores::CpuSet;

    /// The dispatcher with a real worker: a window goes in over the journal's feed, its proof
    /// comes out on the announcement ring and in the job table.
    #[test]
    fn a_proven_window_is_announced() {
        let dir = std::env::temp_dir().join(format!("fpn-dispatcher-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let flags = vec![Flag::Set(format!("engine.data_dir={}", dir.display()))];
        let settings = load(&Inputs { flags, ..Inputs::default() }, &CpuSet::host()).unwrap().settings;
        let (_, mut beats) = Heartbeats::new(vec!["prover".to_string()]);
        let hub = MetricsHub::new();
        let kit = LoopKit::new(*settings.idle.get(Role::Prover), hub.register("prover"), beats.remove(0));
        let (mut feed, windows) = ring(4);
        let (announce, mut announcements) = ring(4);
        let windows = RxLink { rx: windows, labels: Labels::none() };
        let announce = vec![TxLink { tx: announce, labels: Labels::none() }];
        let (mut role, ProverHandles { shared, threads }) = start(&settings, kit, windows, announce).unwrap();

        let witness = ClearingWitness { window_id: 1, ..ClearingWitness::sample() };
        let input = WindowInput { window_id: 1, closed_ns: now_ns(), witness: Ok(witness) };
        assert!(feed.try_push(input).is_ok());
        let deadline = Instant::now() + Duration::from_secs(300);
        let announced = loop {
            role.step(now_ns());
            if let Some(a) = announcements.pop() {
                break a;
            }
            assert!(Instant::now() < deadline, "no announcement within 300 s");
            std::thread::sleep(Duration::from_millis(5));
        };
        let job = shared.table().get(1).unwrap().clone();
        assert_eq!(job.status, crate::prover::jobs::JobStatus::Done);
        let files = job.files.as_ref().expect("a done job has its files");
        assert_eq!(
            announced,
            ProofAnnouncement {
                job_id: 1,
                first_window_id: 1,
                last_window_id: 1,
                proof: Some(files.compressed)
            }
        );
        // The compressed bytes are the proof of proof.json.
        let from_json = fpn_prover::snarkjs::proof_from_json(&files.proof).unwrap();
        assert_eq!(fpn_prover::proof_from_compressed(&files.compressed), Some(from_json));
        assert_eq!((role.windows_proven_total, role.lag.count()), (1, 1));
        threads.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
