//! `fpn probe`: attaches the eBPF latency probes (`fpn-ebpf`, `ebpf/README.md`) to a running
//! `flashpointd`, shows them as a live terminal view and serves them as Prometheus text on
//! this process's own endpoint, until Ctrl-C, SIGTERM, `--duration` or the daemon's exit.
//! Then it detaches and checks that nothing of it is left in the kernel.
//!
//! Exit 0 after a clean detach, 1 when the probes cannot be attached (no privileges, no
//! tracefs, a build without clang, no such daemon) or something was left attached, 2 for
//! usage errors.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use fpn_ebpf::report::{self, Names};
use fpn_ebpf::serve::MetricsServer;
use fpn_ebpf::{Filter, Probes, target};

use crate::net::parse_seconds;
use crate::{Done, UsageError};

const PROC: &str = "/proc";

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The daemon's process id (default: the one in <data-dir>/flashpointd.pid).
    #[arg(long)]
    pub pid: Option<u32>,
    /// The daemon's data directory (default ./data when --pid is not given): its pid file
    /// names the daemon (else the process that owns the UDP port in quic.addr), and its
    /// threads.json labels each thread with its roles.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Hot CPUs, where irq time and other tasks are counted (`0-3,8`). Default: the CPUs the
    /// daemon's executor threads (fpn-cpu<N>) are pinned to, as threads.json lists them.
    #[arg(long)]
    pub cpus: Option<String>,
    /// This process's Prometheus endpoint, host:port (port 0 picks one), or `off`.
    #[arg(long, default_value = "127.0.0.1:9465")]
    pub listen: String,
    /// Seconds between two refreshes of the view and of /metrics.
    #[arg(long, default_value_t = 1.0, value_parser = parse_seconds)]
    pub interval: f64,
    /// Stop after this many seconds (default: until Ctrl-C, SIGTERM or the daemon exits).
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Print each view below the previous one instead of redrawing the screen (the default
    /// when stdout is not a terminal).
    #[arg(long)]
    pub plain: bool,
    /// Leave out the syscall probes: a spinning intake's empty recvmmsg polls then cost nothing
    /// extra (most of the probes' overhead, BENCHMARKS.md).
    #[arg(long)]
    pub no_syscalls: bool,
}

/// Why the loop stopped.
enum Stop {
    Signal(&'static str),
    Duration,
    DaemonExited,
}

pub fn run(args: &ProbeArgs) -> Result<Done, UsageError> {
    let proc = Path::new(PROC);
    let data_dir = match (args.pid, &args.data_dir) {
        (_, Some(dir)) => Some(dir.as_path()),
        (None, None) => Some(Path::new("./data")),
        (Some(_), None) => None,
    };
    let pid = match (args.pid, data_dir) {
        (Some(pid), _) => pid,
        (None, dir) => target::pid_of_data_dir(proc, dir.expect("a data dir without --pid"))
            .map_err(|e| UsageError::invalid(&e.to_string()))?,
    };
    let found = target::discover(proc, pid).map_err(|e| UsageError::invalid(&e.to_string()))?;
    let threads = match data_dir {
        Some(dir) => roles_of(dir, pid)?,
        None => None,
    };
    let hot_cpus: BTreeSet<usize> = match (&args.cpus, &threads) {
        (Some(list), _) => target::parse_cpu_list(list)
            .map_err(|e| crate::usage(format!("--cpus: {e}")))?
            .into_iter()
            .collect(),
        (None, Some(map)) if !map.executor_cpus.is_empty() => map.executor_cpus.clone(),
        (None, _) => found.hot_cpus.clone(),
    };
    if hot_cpus.is_empty() {
        return Err(UsageError::invalid(&format!(
            "pid {pid} ({}) has no thread pinned as fpn-cpu<N>: is it flashpointd? Name the hot CPUs with --cpus",
            found.name
        )));
    }
    let listen: Option<SocketAddr> = match args.listen.as_str() {
        "off" => None,
        addr => Some(addr.parse().map_err(|e| crate::usage(format!("--listen {addr}: {e}")))?),
    };
    let filter = Filter { pid, hot_cpus, ports: found.ports.clone(), syscalls: !args.no_syscalls };
    let roles = threads.map(|t| t.roles).unwrap_or_default();
    let probes = Probes::attach(&filter).map_err(|e| UsageError::invalid(&e.to_string()))?;
    let server = match listen {
        Some(addr) => Some(
            MetricsServer::bind(addr).map_err(|e| UsageError::invalid(&format!("--listen {addr}: {e}")))?,
        ),
        None => None,
    };
    eprintln!(
        "fpn probe: attached {} programs to pid {pid} ({}, {} threads{}); hot CPUs {}; intake ports {}{}",
        probes.program_ids().len(),
        found.name,
        found.threads.len(),
        if roles.is_empty() { "" } else { ", roles from threads.json" },
        target::format_cpu_list(filter.hot_cpus.iter().copied()),
        if filter.ports.is_empty() { "none".to_string() } else { format!("{:?}", filter.ports) },
        server.as_ref().map(|s| format!("; metrics on http://{}/metrics", s.addr())).unwrap_or_default(),
    );
    let redraw = !args.plain && std::io::stdout().is_terminal();
    let started = Instant::now();
    let stop = watch(args, &probes, server.as_ref(), &filter, &roles, redraw, started)?;
    let (view, _) = refresh(&probes, &filter, &roles, started)?;
    if redraw {
        print!("\x1b[H\x1b[2J");
    }
    print!("{view}");
    let _ = std::io::stdout().flush();
    drop(server);
    let ids = probes.detach();
    let left = fpn_ebpf::wait_unloaded(&ids, Duration::from_secs(5))
        .map_err(|e| UsageError::invalid(&e.to_string()))?;
    let why = match stop {
        Stop::Signal(name) => name.to_string(),
        Stop::Duration => "duration reached".to_string(),
        Stop::DaemonExited => format!("pid {pid} exited"),
    };
    if !left.is_empty() {
        return Err(UsageError::invalid(&format!(
            "{why}; detached, but still in the kernel: {}",
            left.join(", ")
        )));
    }
    eprintln!("fpn probe: {why}; detached {} programs, none left in the kernel", ids.len());
    Ok(Done { text: String::new(), code: 0 })
}

/// The roles by thread from `<data_dir>/threads.json`, if the daemon `pid` wrote it; a file
/// of another pid (a daemon that restarted and is not ready yet) is left aside, with a note.
fn roles_of(data_dir: &Path, pid: u32) -> Result<Option<target::ThreadMap>, UsageError> {
    match target::thread_map(data_dir).map_err(|e| UsageError::invalid(&e.to_string()))? {
        Some(map) if map.pid == pid => Ok(Some(map)),
        Some(map) => {
            eprintln!(
                "fpn probe: {} is of pid {}, not {pid}: threads are not labelled with roles",
                data_dir.join(target::THREADS_FILE).display(),
                map.pid
            );
            Ok(None)
        }
        None => Ok(None),
    }
}

/// The view and the Prometheus text of the probes now.
fn refresh(
    probes: &Probes,
    filter: &Filter,
    roles: &BTreeMap<u32, Vec<String>>,
    started: Instant,
) -> Result<(String, String), UsageError> {
    let snapshot = probes.snapshot().map_err(|e| UsageError::invalid(&e.to_string()))?;
    let names = Names {
        pid: filter.pid,
        hot_cpus: filter.hot_cpus.clone(),
        ports: filter.ports.clone(),
        threads: target::thread_names(Path::new(PROC), filter.pid),
        roles: roles.clone(),
        irqs: report::host_irq_names(Path::new(PROC)),
    };
    let view = report::view(&snapshot, &names, started.elapsed().as_secs_f64());
    Ok((view, report::prometheus(&snapshot, &names)))
}

/// Refreshes every `--interval` until a stop.
fn watch(
    args: &ProbeArgs,
    probes: &Probes,
    server: Option<&MetricsServer>,
    filter: &Filter,
    roles: &BTreeMap<u32, Vec<String>>,
    redraw: bool,
    started: Instant,
) -> Result<Stop, UsageError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let deadline = args.duration.map(|s| started + Duration::from_secs_f64(s));
        let process = Path::new(PROC).join(filter.pid.to_string());
        loop {
            let mut wait = Duration::from_secs_f64(args.interval);
            if let Some(deadline) = deadline {
                wait = wait.min(deadline.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                _ = &mut ctrl_c => return Ok(Stop::Signal("SIGINT")),
                _ = terminate.recv() => return Ok(Stop::Signal("SIGTERM")),
                () = tokio::time::sleep(wait) => {}
            }
            let (view, metrics) = refresh(probes, filter, roles, started)?;
            if let Some(server) = server {
                server.publish(metrics);
            }
            if redraw {
                print!("\x1b[H\x1b[2J{view}");
            } else {
                println!("{view}");
            }
            let _ = std::io::stdout().flush();
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Stop::Duration);
            }
            if !process.exists() {
                return Ok(Stop::DaemonExited);
            }
        }
    })
}
