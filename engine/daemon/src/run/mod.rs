//! The thread-per-core runtime of `flashpointd`: builds every ring and core from the
//! validated [`Settings`], starts one pinned glommio executor per CPU of the core map (roles
//! sharing a CPU are tasks on it), serves the admin endpoint, signals READY/WATCHDOG to
//! systemd, and drains on SIGTERM/SIGINT. `docs/daemon.md` describes the whole.

mod admin;
pub mod alloc_probe;
mod journal;
mod metrics;
mod prover;
mod quic;
/// Public for the benches (`benches/e2e.rs`), which wire the cores over the same adapters.
pub mod rings;
mod roles;
mod shared;
mod signals;
mod submit;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fpn_engine::shard::{ShardWindow, ToBuilder, ToMerger};
use fpn_engine::{BuildWorker, BuilderShard, IntakeCore, Merger, WindowClock};
use fpn_runtime::admin::{AdminConfig, AdminServer};
use fpn_runtime::exec::{self, ExecutorSpec, RoleSpec, StopFlag};
use fpn_runtime::heartbeat::Heartbeats;
use fpn_runtime::metrics::{Histogram, Labels, MetricsHub};
use fpn_runtime::notify::{Notifier, watchdog_timeout_from_env};
use fpn_runtime::ring::ring;
use thiserror::Error;

pub use prover::KEYS_DIR;
pub use rings::now_ns;
pub use roles::{Answer, ResultMsg, Submit};
pub use shared::Shared;

use crate::config::{LockMemory, Settings};
use crate::cores::Role;
use metrics::{DAEMON_METRICS, ReceiptCounters};
use rings::{RxQ, TxQ, WorkerRings, stamped_ring};
use roles::{BuildRole, BuilderRole, IntakeRole, JournalRole, LoopKit, MergerRings, MergerRole};

/// File name of the journal under `engine.data_dir`.
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// File the bound admin address is written to, under `engine.data_dir`.
pub const ADMIN_ADDR_FILE: &str = "admin.addr";
/// Window lines kept for `/windows/latest`.
pub const LATEST_WINDOWS_MAX: usize = 64;
/// Result buffers preallocated for merger → journal.
pub const RESULT_POOL: usize = 4;
/// How long the drain waits for the last window to reach the journal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin request bodies, at most (one frame).
pub const SUBMIT_BODY_BYTES_MAX: usize = 64 * 1024;

/// Why the daemon could not start or stop cleanly.
#[derive(Debug, Error)]
pub enum RunError {
    /// The settings are valid one by one but the engine refuses them together.
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("admin endpoint on {addr}: {source}")]
    Admin { addr: SocketAddr, source: std::io::Error },
    #[error("QUIC intake on {addr}: {source}")]
    Quic { addr: SocketAddr, source: std::io::Error },
    #[error("executors: {0}")]
    Exec(#[from] exec::ExecError),
    #[error("a shard stopped: {0}")]
    Stopped(String),
    #[error("drain: {0}")]
    Drain(String),
}

impl RunError {
    /// The process exit code: 2 for configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if matches!(self, RunError::Config(_)) { crate::EXIT_CONFIG } else { 1 }
    }
}

fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.to_path_buf();
    move |source| RunError::Io { what, path, source }
}

/// Every role's state before it moves onto its executor.
enum RoleState {
    Intake(Box<IntakeRole>),
    Builder(Box<BuilderRole>),
    Build(Box<BuildRole>),
    Merger(Box<MergerRole>),
    Journal(Box<JournalRole>),
    Prover(Box<prover::ProverRole>),
}

impl RoleState {
    fn spec(self, name: String) -> RoleSpec {
        match self {
            RoleState::Intake(r) => RoleSpec::new(name, move |ctx| r.run(ctx)),
            RoleState::Builder(r) => RoleSpec::new(name, move |ctx| r.run(ctx)),
            RoleState::Build(r) => RoleSpec::new(name, move |ctx| r.run(ctx)),
            RoleState::Merger(r) => RoleSpec::new(name, move |ctx| r.run(ctx)),
            RoleState::Journal(r) => RoleSpec::new(name, move |ctx| r.run(ctx)),
            RoleState::Prover(r) => RoleSpec::new(name, move |ctx| r.run(ctx)),
        }
    }
}

/// `engine.lock_memory`: `mlockall(MCL_CURRENT | MCL_FUTURE)`, before any role starts, so
/// no page the roles touch is ever taken away and faulted back in (`docs/daemon.md`,
/// "Memory locking").
fn lock_memory(mode: LockMemory) -> Result<(), RunError> {
    if mode == LockMemory::Off {
        return Ok(());
    }
    // SAFETY: mlockall takes flags only.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } == 0 {
        eprintln!("flashpointd: memory locked (engine.lock_memory = {:?})", mode.as_str());
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if mode == LockMemory::On {
        return Err(RunError::Io {
            what: "locking memory (engine.lock_memory = \"on\"): mlockall",
            path: "".into(),
            source: e,
        });
    }
    eprintln!(
        "flashpointd: engine.lock_memory = \"try\": mlockall failed ({e}; needs CAP_IPC_LOCK or a large enough \
         RLIMIT_MEMLOCK); running with unlocked memory"
    );
    Ok(())
}

/// Runs the daemon until SIGTERM or SIGINT, then drains. Returns once every executor
/// stopped and the last window is in the journal.
pub fn run(settings: &Settings) -> Result<(), RunError> {
    signals::block_term_signals().map_err(io("blocking SIGTERM/SIGINT", "".as_ref()))?;
    let start = Instant::now();
    now_ns();
    lock_memory(settings.lock_memory)?;

    let shard_config = settings.shard_config();
    shard_config.validate().map_err(|e| RunError::Config(e.to_string()))?;
    let (n, s) = (shard_config.intakes_n, shard_config.shards_n);
    let workers_n = shard_config.workers_per_shard;

    std::fs::create_dir_all(&settings.data_dir).map_err(io("creating data dir", &settings.data_dir))?;
    let journal_path = settings.data_dir.join(JOURNAL_FILE);
    let journal_file: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal_path)
        .map_err(io("opening journal", &journal_path))?;

    // The QUIC intake: sockets bound and the TLS identity ready before anything starts, so an
    // address in use or a bad certificate stops the start here.
    let mut quic_servers = Vec::new();
    if settings.quic.enabled {
        let (servers, addr, identity) = quic::bind(&settings.quic, &settings.data_dir, n)?;
        let addr_path = settings.data_dir.join(quic::QUIC_ADDR_FILE);
        std::fs::write(&addr_path, format!("{addr}\n")).map_err(io("writing", &addr_path))?;
        eprintln!(
            "flashpointd: QUIC intake on {addr} (written to {}), ALPN fpn/1, certificate sha256 {}{}",
            addr_path.display(),
            identity.sha256_hex(),
            if identity.generated { " (generated)" } else { "" },
        );
        if settings.quic.auth == crate::config::QuicAuth::Open {
            eprintln!(
                "flashpointd: warning: quic.auth = \"open\": any client may claim any client id (development only)"
            );
        }
        quic_servers = servers;
    }

    let first_window_id = 1;
    let shared = Arc::new(Shared::new(n, first_window_id, LATEST_WINDOWS_MAX));
    let hub = Arc::new(MetricsHub::new());
    hub.describe(&DAEMON_METRICS);
    hub.describe(&crate::prover::PROVER_METRICS);
    if settings.quic.enabled {
        hub.describe(&quic::QUIC_METRICS);
        hub.describe(&quic::QUIC_METRICS_MORE);
    }

    let role_names: Vec<String> = (0..n)
        .map(|i| format!("intake{i}"))
        .chain((0..s).map(|k| format!("builder{k}")))
        .chain((0..s * workers_n).map(|i| format!("build{i}")))
        .chain(["auction".to_string(), "journal".to_string()])
        .chain(settings.prover.enabled.then(|| "prover".to_string()))
        .collect();
    let (heartbeats, mut beats) = Heartbeats::new(role_names.clone());
    let mut beats = beats.drain(..);
    let idle = |role: Role| *settings.idle.get(role);
    let kit = |name: &str, role: Role, beat| LoopKit::new(idle(role), hub.register(name), beat);

    // Rings. `[shard][intake]` for intake → builder.
    let cap = settings.rings.capacity;
    let mut to_builder_tx: Vec<Vec<TxQ<ToBuilder>>> = (0..n).map(|_| Vec::with_capacity(s)).collect();
    let mut to_builder_rx: Vec<Vec<RxQ<ToBuilder>>> = (0..s).map(|_| Vec::with_capacity(n)).collect();
    for (k, inputs) in to_builder_rx.iter_mut().enumerate() {
        for (i, outputs) in to_builder_tx.iter_mut().enumerate() {
            let (tx, rx) = stamped_ring(cap, &format!("intake{i}_builder{k}"));
            outputs.push(tx);
            inputs.push(rx);
        }
    }
    let (mut to_merger_tx, mut to_merger_rx): (Vec<_>, Vec<_>) =
        (0..n).map(|i| stamped_ring::<ToMerger>(cap, &format!("intake{i}_merger"))).unzip();
    let windows = shard_config.shard_windows_max;
    let (shard_out_tx, mut shard_out_rx): (Vec<_>, Vec<_>) =
        (0..s).map(|k| stamped_ring::<Box<ShardWindow>>(windows, &format!("builder{k}_merger"))).unzip();
    let (mut shard_back_tx, shard_back_rx): (Vec<_>, Vec<_>) =
        (0..s).map(|k| stamped_ring::<Box<ShardWindow>>(windows, &format!("merger_builder{k}"))).unzip();
    // Builder shard `k` ↔ its build workers `k × W .. (k + 1) × W` (`build{i}`): one window
    // in flight each way.
    let mut to_workers: Vec<Vec<TxQ<Box<ShardWindow>>>> = Vec::with_capacity(s);
    let mut from_workers: Vec<Vec<RxQ<Box<ShardWindow>>>> = Vec::with_capacity(s);
    let mut worker_ends = Vec::with_capacity(s * workers_n);
    for k in 0..s {
        let (mut to, mut from) = (Vec::with_capacity(workers_n), Vec::with_capacity(workers_n));
        for j in 0..workers_n {
            let rings = WorkerRings::new(k, k * workers_n + j);
            to.push(rings.shard.0);
            from.push(rings.shard.1);
            worker_ends.push(rings.worker);
        }
        to_workers.push(to);
        from_workers.push(from);
    }
    // Every record of the largest request body gets a receipt, plus `Done`: the answer ring
    // holds at least that, so an intake can always take a frame once the ring has drained.
    let answers_cap = cap.max((SUBMIT_BODY_BYTES_MAX / fpn_wire::RECORD_HEADER_LEN + 1).next_power_of_two());
    let (submit_tx, mut submit_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| ring::<Submit>(cap)).unzip();
    let (mut answers_tx, answers_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| ring::<Answer>(answers_cap)).unzip();
    let (receipts_tx, mut receipts_rx): (Vec<_>, Vec<_>) =
        (0..n).map(|_| ring::<fpn_wire::Receipt>(cap)).unzip();
    let (results_tx, results_rx) = ring::<ResultMsg>(settings.rings.results_capacity);
    let (mut pool_tx, pool_rx) = ring::<ResultMsg>(settings.rings.results_capacity + RESULT_POOL);
    let w = &shard_config.engine;
    let bytes_reserve = 1024 + 32 * (w.window.records_max + w.auction.top_k as usize);
    for _ in 0..RESULT_POOL {
        let buf = ResultMsg { bytes: Vec::with_capacity(bytes_reserve), ..ResultMsg::default() };
        pool_tx.try_push(buf).expect("the pool ring holds the pool");
    }
    // Merger → each intake's QUIC sessions: published windows, with their own buffer pools.
    let mut quic_results = Vec::new();
    let mut quic_ends = Vec::new();
    for i in 0..quic_servers.len() {
        let (tx, rx) = ring::<ResultMsg>(settings.rings.results_capacity);
        let (mut back_tx, pool_rx) = ring::<ResultMsg>(settings.rings.results_capacity + RESULT_POOL);
        for _ in 0..RESULT_POOL {
            let buf = ResultMsg { bytes: Vec::with_capacity(bytes_reserve), ..ResultMsg::default() };
            back_tx.try_push(buf).expect("the pool ring holds the pool");
        }
        quic_results.push(roles::QuicResults {
            tx,
            labels: Labels::new(&[("ring", &format!("merger_quic{i}"))]),
            pool: pool_rx,
            pool_labels: Labels::new(&[("ring", &format!("quic{i}_merger"))]),
            waiting: VecDeque::with_capacity(RESULT_POOL),
        });
        quic_ends.push((rx, back_tx));
    }
    let mut quic_servers = quic_servers.into_iter();
    let mut quic_ends = quic_ends.into_iter();

    // Cores and roles, in heartbeat-name order.
    let mut states: Vec<(Role, usize, RoleState)> = Vec::new();
    let now = now_ns();
    for (i, to_builder) in to_builder_tx.into_iter().enumerate() {
        let name = format!("intake{i}");
        let role = IntakeRole {
            index: i,
            core: IntakeCore::new(&shard_config, i, first_window_id),
            clock: (i == 0).then(|| WindowClock::new(w.window.window_ns, first_window_id, now)),
            to_builder,
            to_merger: to_merger_tx.remove(0),
            submits: submit_rx.remove(0),
            submits_labels: Labels::new(&[("ring", &format!("submit_intake{i}"))]),
            answers: answers_tx.remove(0),
            answers_labels: Labels::new(&[("ring", &format!("intake{i}_answers"))]),
            shared: shared.clone(),
            kit: kit(&name, Role::Intake, beats.next().expect("one beat per role")),
            frames_total: 0,
            windows_closed_total: 0,
            counters: ReceiptCounters::default(),
            latency: Histogram::new(),
            book_seen: u64::MAX,
            closes_handled: 0,
            merger_receipts: receipts_rx.remove(0),
            merger_receipts_labels: Labels::new(&[("ring", &format!("merger_intake{i}"))]),
            origins: VecDeque::with_capacity(cap),
            quic: quic_servers.next().map(|(server, socket)| {
                let (results, results_back) = quic_ends.next().expect("one result ring per QUIC intake");
                Box::new(quic::QuicIntake {
                    io: quic::QuicIo {
                        server,
                        socket,
                        tx_buf: Vec::with_capacity(64 * 1024),
                        results,
                        results_back,
                        announcements: None,
                        proof_buf: Vec::with_capacity(quic::PROOF_FRAME_LEN),
                        close_to_here: Histogram::new(),
                        publish_to_push: Histogram::new(),
                        recv_errors_total: 0,
                        send_errors_total: 0,
                    },
                    stamps: Vec::with_capacity(shard_config.records_cap()),
                    rx_to_ring: Histogram::new(),
                    ring_to_close: Histogram::new(),
                })
            }),
            quic_labels: quic::QuicLabels::default(),
        };
        states.push((Role::Intake, i, RoleState::Intake(Box::new(role))));
    }
    let shard_rings = to_builder_rx.into_iter().zip(shard_out_tx).zip(shard_back_rx);
    for (k, (((inputs, out), back), (to_workers, from_workers))) in
        shard_rings.zip(to_workers.into_iter().zip(from_workers)).enumerate()
    {
        let name = format!("builder{k}");
        let role = BuilderRole {
            core: BuilderShard::new(&shard_config, k, first_window_id),
            inputs,
            out,
            back,
            to_workers,
            from_workers,
            kit: kit(&name, Role::Builder, beats.next().expect("one beat per role")),
        };
        states.push((Role::Builder, k, RoleState::Builder(Box::new(role))));
    }
    for (i, (input, out)) in worker_ends.into_iter().enumerate() {
        let name = format!("build{i}");
        let role = BuildRole {
            core: BuildWorker::new(&shard_config),
            input,
            out,
            kit: kit(&name, Role::BuildWorker, beats.next().expect("one beat per role")),
        };
        states.push((Role::BuildWorker, i, RoleState::Build(Box::new(role))));
    }
    let merger = MergerRole {
        core: Merger::new(&shard_config, first_window_id),
        intakes: std::mem::take(&mut to_merger_rx),
        shards: std::mem::take(&mut shard_out_rx),
        out: MergerRings {
            shard_back: std::mem::take(&mut shard_back_tx),
            results: results_tx,
            results_labels: Labels::new(&[("ring", "merger_journal")]),
            results_waiting: VecDeque::with_capacity(RESULT_POOL),
            pool: pool_rx,
            pool_labels: Labels::new(&[("ring", "journal_merger")]),
            bytes_reserve,
            receipts: receipts_tx,
            receipts_labels: (0..n).map(|i| Labels::new(&[("ring", &format!("merger_intake{i}"))])).collect(),
            receipts_waiting: VecDeque::with_capacity(cap),
            quic_results,
            shared: shared.clone(),
            counters: ReceiptCounters::default(),
            windows_published_total: 0,
            buffers_allocated_total: 0,
            publish_latency: Histogram::new(),
        },
        kit: kit("auction", Role::Merger, beats.next().expect("one beat per role")),
    };
    states.push((Role::Merger, 0, RoleState::Merger(Box::new(merger))));
    let journal = JournalRole {
        results: results_rx,
        results_labels: Labels::new(&[("ring", "merger_journal")]),
        back: pool_tx,
        back_labels: Labels::new(&[("ring", "journal_merger")]),
        file: journal::JournalFile::start(
            journal_file,
            shared.clone(),
            settings.core_map.cpu_of(Role::Journal, 0),
        )
        .map_err(io("starting the journal writer thread", &journal_path))?,
        shared: shared.clone(),
        kit: kit("journal", Role::Journal, beats.next().expect("one beat per role")),
        line_reserve: 1024,
        prover: None,
    };
    let mut journal = journal;
    // The prover pool: its dispatcher role on prover#0's CPU, its workers on their own threads
    // (started here, proving nothing until the keys are loaded on worker 0; READY does not
    // wait for that).
    let prover = if settings.prover.enabled {
        let prover_kit = kit("prover", Role::Prover, beats.next().expect("one beat per role"));
        // One announcement ring per QUIC intake: proofs reach the sessions of every intake.
        let quic_intakes = states
            .iter()
            .filter(|(_, _, state)| matches!(state, RoleState::Intake(r) if r.quic.is_some()))
            .count();
        let start = prover::start(settings, prover_kit, quic_intakes)
            .map_err(io("starting the prover workers", "".as_ref()))?;
        for (_, _, state) in &mut states {
            if let RoleState::Intake(r) = state
                && let Some(q) = r.quic.as_mut()
            {
                q.io.announcements = start.shared.take_announcements();
                debug_assert!(q.io.announcements.is_some(), "one announcement ring per QUIC intake");
            }
        }
        assert!(start.shared.take_announcements().is_none(), "every announcement ring has its intake");
        journal.prover = Some(start.feed);
        states.push((Role::Prover, 0, RoleState::Prover(Box::new(start.role))));
        Some((start.shared, start.threads))
    } else {
        None
    };
    states.push((Role::Journal, 0, RoleState::Journal(Box::new(journal))));

    // One executor per CPU of the core map; the admin instance and the prover instances other
    // than prover#0 (the dispatcher) run no task here.
    let mut specs = Vec::new();
    for plan in &settings.core_map.plans {
        let mut roles = Vec::new();
        for instance in &plan.roles {
            if let Some(pos) = states.iter().position(|(r, i, _)| *r == instance.role && *i == instance.index)
            {
                let (role, index, state) = states.remove(pos);
                let name = if matches!(role, Role::Intake | Role::Builder | Role::BuildWorker) {
                    format!("{role}{index}")
                } else {
                    role.to_string()
                };
                roles.push(state.spec(name));
            }
        }
        if !roles.is_empty() {
            specs.push(ExecutorSpec::new(plan.cpu, format!("cpu{}", plan.cpu), roles));
        }
    }
    assert!(states.is_empty(), "every role has a CPU in the core map");
    let submit = Arc::new(submit::SubmitPath::new(shared.clone(), submit_tx, hub.register("admin")));
    let health = Arc::new(admin::Health::new(heartbeats.clone()));

    let stop = StopFlag::new();
    let executors = exec::start(specs, stop.clone())?;
    for (name, cpu) in executors.executors() {
        eprintln!("flashpointd: executor {name} pinned to cpu {cpu}");
    }
    // Threads started from here on (admin, collector) inherit the admin CPU.
    if let Some(cpu) = settings.core_map.cpu_of(Role::Admin, 0)
        && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
    {
        eprintln!("flashpointd: warning: could not pin the admin threads to cpu {cpu}");
    }

    let collector_stop = Arc::new(AtomicBool::new(false));
    let collector = std::thread::Builder::new()
        .name("fpn-receipts".into())
        .spawn({
            let (submit, stop) = (submit.clone(), collector_stop.clone());
            move || submit.collect(answers_rx, &stop)
        })
        .map_err(io("spawning the receipt collector", "".as_ref()))?;

    let admin_server = if settings.admin.enabled {
        let mut config = AdminConfig::new(settings.admin.addr);
        config.body_bytes_max = SUBMIT_BODY_BYTES_MAX;
        let prover_shared = prover.as_ref().map(|(p, _)| p.clone());
        let router =
            admin::router(hub.clone(), shared.clone(), submit.clone(), health.clone(), prover_shared.clone());
        let proofs =
            prover_shared.map(|prover| crate::prover::api::ProofsApi { prover, shared: shared.clone() });
        let handle = move |r: &fpn_runtime::admin::Request| {
            proofs.as_ref().and_then(|p| p.handle(r)).unwrap_or_else(|| router.handle(r))
        };
        let server = match AdminServer::start(config, handle) {
            Ok(server) => server,
            Err(source) => {
                executors.stop();
                drop(executors.join());
                return Err(RunError::Admin { addr: settings.admin.addr, source });
            }
        };
        let addr = server.local_addr();
        let addr_path = settings.data_dir.join(ADMIN_ADDR_FILE);
        std::fs::write(&addr_path, format!("{addr}\n")).map_err(io("writing", &addr_path))?;
        eprintln!("flashpointd: admin endpoint on http://{addr} (written to {})", addr_path.display());
        Some(server)
    } else {
        None
    };

    let notifier = Notifier::from_env().unwrap_or_else(|e| {
        eprintln!("flashpointd: warning: NOTIFY_SOCKET unusable ({e}); not notifying systemd");
        Notifier::disabled()
    });
    let watchdog =
        watchdog_timeout_from_env().ok().flatten().map(|t| (t / 2).max(3 * roles::HOUSEKEEPING_PERIOD));
    let mut watchdog_checker = heartbeats.checker();
    let mut watchdog_last = Instant::now();

    // Wait for READY, then serve until a signal.
    let signal = loop {
        if let Some(signal) = signals::wait_term_signal(Duration::from_millis(50)) {
            break signal;
        }
        if stop.is_stopped() {
            return Err(RunError::Stopped(join_errors(executors)));
        }
        if !health.ready.load(Ordering::Acquire) && heartbeats.values().iter().all(|&v| v > 0) {
            health.ready.store(true, Ordering::Release);
            let _ = notifier.ready();
            eprintln!(
                "flashpointd: ready in {} ms: {n} intake(s), {s} builder shard(s), window {} ms, journal {}",
                start.elapsed().as_millis(),
                w.window.window_ns / 1_000_000,
                journal_path.display()
            );
        }
        if let Some(interval) = watchdog
            && health.ready.load(Ordering::Acquire)
            && watchdog_last.elapsed() >= interval
        {
            watchdog_last = Instant::now();
            let report = watchdog_checker.check();
            if report.all_advanced() {
                let _ = notifier.watchdog();
            } else {
                eprintln!("flashpointd: watchdog withheld: stalled {}", report.stalled.join(" "));
            }
        }
    };

    // Drain: no more submits, let the intakes empty their rings, close the window now, wait
    // until the journal has it.
    eprintln!("flashpointd: {signal}: draining");
    let _ = notifier.status("draining");
    submit.close();
    shared.drain_requested.store(true, Ordering::Release);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let drained = loop {
        let last = shared.final_window_id.load(Ordering::Acquire);
        if last != 0 && shared.journal_window_id.load(Ordering::Acquire) >= last {
            break Ok(last);
        }
        if stop.is_stopped() {
            break Err(RunError::Stopped("a shard stopped during the drain".into()));
        }
        if Instant::now() >= deadline {
            break Err(RunError::Drain(format!(
                "the last window did not reach the journal within {} s (closed {last}, merged {}, journaled {})",
                DRAIN_TIMEOUT.as_secs(),
                shared.merger_window_id.load(Ordering::Acquire),
                shared.journal_window_id.load(Ordering::Acquire),
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    executors.stop();
    let errors = join_errors(executors);
    if let Some((_, threads)) = prover {
        threads.stop();
    }
    collector_stop.store(true, Ordering::Release);
    let _ = collector.join();
    if let Some(server) = admin_server {
        server.shutdown();
    }
    let _ = notifier.stopping();
    let last = drained?;
    if !errors.is_empty() {
        return Err(RunError::Stopped(errors));
    }
    eprintln!("flashpointd: drained: window {last} is the last in {}; bye", journal_path.display());
    Ok(())
}

fn join_errors(executors: exec::Executors) -> String {
    let errors: Vec<String> = executors
        .join()
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|e| format!("{name}: {e}")))
        .collect();
    errors.join("; ")
}
