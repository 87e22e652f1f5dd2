//! The thread-per-core runtime of `flashpointd`: [`run`] binds the sockets, builds the
//! [`topology::Topology`] (every role and ring) from the validated [`Settings`], starts one
//! pinned glommio executor per CPU of the core map (roles sharing a CPU are tasks on it),
//! serves the admin endpoint, signals READY/WATCHDOG to systemd, and drains on
//! SIGTERM/SIGINT. `docs/daemon.md` describes the whole.
//!
//! - `topology`: the composition (roles and named rings); `links`: the ring registry and
//!   adapters; `role`: the one run loop; `roles/`: one file per role; `shared`: cross-core
//!   state touched once per window; `signals`, `sys`: the kernel.

pub mod alloc_probe;
pub mod links;
pub mod log_file;
pub mod role;
pub mod roles;
mod shared;
mod signals;
pub(crate) mod sys;
pub mod threads;
pub mod topology;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fpn_runtime::admin::{AdminConfig, AdminServer};
use fpn_runtime::clock::now_ns;
use fpn_runtime::exec::{self, Executors, StopFlag};
use fpn_runtime::notify::{Notifier, watchdog_timeout_from_env};
use thiserror::Error;

pub use log_file::sync_dir;
pub use roles::admin::SUBMIT_BODY_BYTES_MAX;
pub use roles::intake::{Answer, Submit};
pub use roles::journal::JOURNAL_FILE;
pub use roles::merger::ResultMsg;
pub use roles::prover::KEYS_DIR;
pub use shared::Shared;

use crate::config::Settings;
use crate::cores::Role;
use roles::admin::{Health, SubmitPath};
use roles::quic;
use roles::webtransport::{self, WEBTRANSPORT_ADDR_FILE};
use topology::{Topology, TopologyIo};

/// File the bound admin address is written to, under `engine.data_dir`.
pub const ADMIN_ADDR_FILE: &str = "admin.addr";
/// How long the drain waits for the last window to reach the journal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
    #[error("WebTransport intake on {addr}: {source}")]
    WebTransport { addr: SocketAddr, source: fpn_webtransport::StartError },
    #[error("executors: {0}")]
    Exec(#[from] exec::ExecError),
    #[error("a shard stopped: {0}")]
    Stopped(String),
    #[error("drain: {0}")]
    Drain(String),
    #[error(
        "the input log is corrupt: {path} at byte {offset} ({error}); refusing to start. Move the log away, or start once with log.on_corruption = \"truncate\" (FPN_LOG_ON_CORRUPTION=truncate) to drop it from that byte on"
    )]
    LogCorrupt { path: PathBuf, offset: usize, error: String },
}

impl RunError {
    /// The process exit code: 2 for configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if matches!(self, RunError::Config(_)) { crate::EXIT_CONFIG } else { 1 }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.to_path_buf();
    move |source| RunError::Io { what, path, source }
}

/// Runs the daemon until SIGTERM or SIGINT, then drains. Returns once every executor
/// stopped and the last window is in the journal.
pub fn run(settings: &Settings) -> Result<(), RunError> {
    signals::block_term_signals().map_err(io("blocking SIGTERM/SIGINT", "".as_ref()))?;
    let start = Instant::now();
    now_ns();
    sys::lock_memory(settings.lock_memory)?;
    std::fs::create_dir_all(&settings.data_dir).map_err(io("creating data dir", &settings.data_dir))?;
    let run_files = threads::RunFiles::create(&settings.data_dir)?;
    let quic = bind_quic(settings)?;
    let recovery = crate::recovery::recover(settings, now_ns())?;
    if settings.log.durability == crate::config::Durability::None {
        eprintln!(
            "flashpointd: warning: log.durability = \"none\": records are acknowledged before they are on disk (benchmarks and development only)"
        );
    }
    if settings.log.sync == crate::config::LogSync::Auto
        && settings.log_sync() == crate::config::LogSync::Wait
    {
        eprintln!(
            "flashpointd: log.sync = \"auto\": the log role shares its CPU with an intake, so each group commit is waited for in io_uring_enter (\"wait\"; docs/log.md, \"Waiting for the disk\")"
        );
    }
    let (wt_endpoint, wt_io) = start_webtransport(settings)?.unzip();
    let wt_watch = wt_io.as_ref().map(|io| io.watch.clone());
    let topology_io = TopologyIo {
        quic,
        webtransport: wt_io,
        journal: true,
        log: Some(recovery.log),
        resume: recovery.resume,
    };
    let mut topology = Topology::build(settings, topology_io)?;
    let mut specs = topology.executor_specs(&settings.core_map, Vec::new());
    let executor_threads = threads::attach_setups(settings, &mut specs);
    let c = settings.shard_config();
    let submit_txs =
        (0..c.intakes_n).map(|i| topology.links.plain_tx(&format!("submit_intake{i}")).tx).collect();
    let answers =
        (0..c.intakes_n).map(|i| topology.links.plain_rx(&format!("intake{i}_answers")).rx).collect();
    topology.links.assert_all_taken();
    let (shared, hub) = (topology.shared.clone(), topology.hub.clone());
    let submit = Arc::new(SubmitPath::new(shared.clone(), submit_txs, hub.register("admin")));
    let health = Arc::new(Health::new(topology.heartbeats.clone()));

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
            move || submit.collect(answers, &stop)
        })
        .map_err(io("spawning the receipt collector", "".as_ref()))?;
    let admin = match start_admin(settings, &topology, &submit, &health, wt_watch) {
        Ok(admin) => admin,
        Err(e) => {
            executors.stop();
            drop(executors.join());
            return Err(e);
        }
    };

    let notifier = Notifier::from_env().unwrap_or_else(|e| {
        eprintln!("flashpointd: warning: NOTIFY_SOCKET unusable ({e}); not notifying systemd");
        Notifier::disabled()
    });
    let running = Running {
        settings,
        topology,
        executors,
        stop,
        submit,
        health,
        admin,
        collector,
        collector_stop,
        notifier,
        wt_endpoint,
        executor_threads,
        _run_files: run_files,
    };
    match running.serve_until_signal(start) {
        Some(signal) => running.drain_and_stop(signal),
        None => Err(RunError::Stopped(join_errors(running.executors))),
    }
}

/// Binds the QUIC intake's sockets and loads its TLS identity, before anything starts, so an
/// address in use or a bad certificate stops the start here. None with `quic.enabled` off.
fn bind_quic(settings: &Settings) -> Result<Vec<(fpn_quic::Server, fpn_quic::udp::UdpSocket)>, RunError> {
    if !settings.quic.enabled {
        return Ok(Vec::new());
    }
    let intakes_n = settings.shard_config().intakes_n;
    let (servers, addr, identity) = quic::bind(&settings.quic, &settings.data_dir, intakes_n)?;
    let addr_path = settings.data_dir.join(quic::QUIC_ADDR_FILE);
    std::fs::write(&addr_path, format!("{addr}\n")).map_err(io("writing", &addr_path))?;
    eprintln!(
        "flashpointd: QUIC intake on {addr} (written to {}), ALPN fpn/1, certificate sha256 {}{}",
        addr_path.display(),
        identity.sha256_hex(),
        if identity.generated { " (generated)" } else { "" },
    );
    if settings.quic.rx_timestamps == crate::config::RxTimestamps::Hardware {
        // Every intake socket has the same address, so the same devices.
        let stamping = servers[0].1.rx_stamping();
        let warning = if stamping.source == fpn_quic::udp::RxSource::Hardware { "" } else { "warning: " };
        eprintln!(
            "flashpointd: {warning}quic.rx_timestamps = \"hardware\": receive timestamps {}",
            stamping.detail
        );
    }
    if settings.quic.auth == crate::config::QuicAuth::Open {
        eprintln!(
            "flashpointd: warning: quic.auth = \"open\": any client may claim any client id (development only)"
        );
    }
    Ok(servers)
}

/// Starts the WebTransport endpoint (`webtransport.enabled`) on its own thread, before the
/// executors, so an address in use or a bad certificate stops the start here; its address is
/// written to the data dir.
fn start_webtransport(
    settings: &Settings,
) -> Result<Option<(fpn_webtransport::EndpointHandle, webtransport::WebTransportIo)>, RunError> {
    let Some((handle, wt_io)) = webtransport::start(settings)? else { return Ok(None) };
    let addr_path = settings.data_dir.join(WEBTRANSPORT_ADDR_FILE);
    std::fs::write(&addr_path, format!("{}\n", handle.local_addr())).map_err(io("writing", &addr_path))?;
    let info = handle.info();
    let expiry = info.not_after_unix_s.map_or(String::new(), |s| format!(", valid until unix time {s}"));
    eprintln!(
        "flashpointd: WebTransport intake on {} (written to {}), certificate sha256 {}{expiry}",
        info.url,
        addr_path.display(),
        info.cert_sha256,
    );
    Ok(Some((handle, wt_io)))
}

/// The admin endpoint (`admin.enabled`), its address written to the data dir.
fn start_admin(
    settings: &Settings,
    topology: &Topology,
    submit: &Arc<SubmitPath>,
    health: &Arc<Health>,
    webtransport: Option<fpn_webtransport::EndpointWatch>,
) -> Result<Option<AdminServer>, RunError> {
    if !settings.admin.enabled {
        return Ok(None);
    }
    let mut config = AdminConfig::new(settings.admin.addr);
    config.body_bytes_max = SUBMIT_BODY_BYTES_MAX;
    let shared = topology.shared.clone();
    let prover = topology.prover.as_ref().map(|p| p.shared.clone());
    let router = roles::admin::router(
        topology.hub.clone(),
        shared.clone(),
        submit.clone(),
        health.clone(),
        prover.clone(),
    );
    let proofs = prover.map(|prover| crate::prover::api::ProofsApi { prover, shared });
    let pages = webtransport.map(roles::admin::WebTransportPages::new);
    let handle = move |r: &fpn_runtime::admin::Request| {
        (pages.as_ref().and_then(|p| p.handle(r)))
            .or_else(|| proofs.as_ref().and_then(|p| p.handle(r)))
            .unwrap_or_else(|| router.handle(r))
    };
    let server = AdminServer::start(config, handle)
        .map_err(|source| RunError::Admin { addr: settings.admin.addr, source })?;
    let addr = server.local_addr();
    let addr_path = settings.data_dir.join(ADMIN_ADDR_FILE);
    std::fs::write(&addr_path, format!("{addr}\n")).map_err(io("writing", &addr_path))?;
    eprintln!("flashpointd: admin endpoint on http://{addr} (written to {})", addr_path.display());
    if settings.webtransport.enabled {
        eprintln!("flashpointd: WebTransport demo page on http://{addr}/webtransport/demo?key=<api key>");
    }
    Ok(Some(server))
}

/// The started daemon, between READY and the end of the drain.
struct Running<'a> {
    settings: &'a Settings,
    topology: Topology,
    executors: Executors,
    stop: StopFlag,
    submit: Arc<SubmitPath>,
    health: Arc<Health>,
    admin: Option<AdminServer>,
    collector: JoinHandle<()>,
    collector_stop: Arc<AtomicBool>,
    notifier: Notifier,
    /// Stopped after the executors (intake 0 drives its rings until then).
    wt_endpoint: Option<fpn_webtransport::EndpointHandle>,
    /// The executor threads as they started, for `threads.json`.
    executor_threads: threads::ExecutorThreads,
    /// The pid file and `threads.json`, removed when this is dropped.
    _run_files: threads::RunFiles,
}

impl Running<'_> {
    /// Waits for every role's first heartbeat (READY), then serves until SIGTERM or SIGINT,
    /// sending WATCHDOG while every role's heartbeat advances. `None`: an executor stopped.
    fn serve_until_signal(&self, start: Instant) -> Option<&'static str> {
        let notifier = &self.notifier;
        let watchdog =
            watchdog_timeout_from_env().ok().flatten().map(|t| (t / 2).max(3 * role::HOUSEKEEPING_PERIOD));
        let heartbeats = &self.topology.heartbeats;
        let mut watchdog_checker = heartbeats.checker();
        let mut watchdog_last = Instant::now();
        loop {
            if let Some(signal) = signals::wait_term_signal(Duration::from_millis(50)) {
                let _ = notifier.status("draining");
                return Some(signal);
            }
            if self.stop.is_stopped() {
                return None;
            }
            if !self.health.ready.load(Ordering::Acquire) && heartbeats.values().iter().all(|&v| v > 0) {
                // Every long-lived thread exists by now; the file is there before READY.
                if let Err(e) = threads::write_threads_file(&self.settings.data_dir, &self.executor_threads) {
                    eprintln!("flashpointd: warning: writing {}: {e}", threads::THREADS_FILE);
                }
                self.health.ready.store(true, Ordering::Release);
                let _ = notifier.ready();
                let c = self.settings.shard_config();
                eprintln!(
                    "flashpointd: ready in {} ms: {} intake(s), {} builder shard(s), window {} ms, journal {}",
                    start.elapsed().as_millis(),
                    c.intakes_n,
                    c.shards_n,
                    c.engine.window.window_ns / 1_000_000,
                    self.settings.data_dir.join(JOURNAL_FILE).display()
                );
            }
            if let Some(interval) = watchdog
                && self.health.ready.load(Ordering::Acquire)
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
        }
    }

    /// Drain: no more submits, let the intakes empty their rings, close the window now, wait
    /// until the journal has it; then stop every thread.
    fn drain_and_stop(self, signal: &str) -> Result<(), RunError> {
        let shared = &self.topology.shared;
        eprintln!("flashpointd: {signal}: draining");
        self.submit.close();
        shared.drain_requested.store(true, Ordering::Release);
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let drained = loop {
            let last = shared.final_window_id.load(Ordering::Acquire);
            if last != 0 && shared.journal_window_id.load(Ordering::Acquire) >= last {
                break Ok(last);
            }
            if self.stop.is_stopped() {
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
        let journal_path = self.settings.data_dir.join(JOURNAL_FILE);
        self.executors.stop();
        let errors = join_errors(self.executors);
        if let Some(endpoint) = self.wt_endpoint {
            endpoint.stop();
        }
        if let Some(prover) = self.topology.prover {
            prover.threads.stop();
        }
        self.collector_stop.store(true, Ordering::Release);
        let _ = self.collector.join();
        if let Some(server) = self.admin {
            server.shutdown();
        }
        let _ = self.notifier.stopping();
        let last = drained?;
        if !errors.is_empty() {
            return Err(RunError::Stopped(errors));
        }
        eprintln!("flashpointd: drained: window {last} is the last in {}; bye", journal_path.display());
        Ok(())
    }
}

fn join_errors(executors: Executors) -> String {
    let errors: Vec<String> = executors
        .join()
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|e| format!("{name}: {e}")))
        .collect();
    errors.join("; ")
}
