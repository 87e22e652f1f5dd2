//! The daemon's threads, for operators and for `fpn probe` (`docs/daemon.md`, "Threads"):
//!
//! - `<data_dir>/flashpointd.pid` from the start until `run` returns ([`RunFiles`]), so a
//!   tool finds the daemon from its data dir without scanning other processes' sockets;
//! - the realtime priority of the executors that run hot roles (`engine.realtime`): each
//!   such executor puts its own thread on `SCHED_FIFO` before its roles start
//!   ([`attach_setups`]; the system call is `sys::set_thread_fifo`);
//! - `<data_dir>/threads.json` once READY ([`write_threads_file`]): every thread with its
//!   name, its CPU, the roles it runs and its scheduling policy, so the probes can label
//!   what they measure by role.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fpn_runtime::exec::{ExecutorSetup, ExecutorSpec};
use serde::Serialize;

use super::{RunError, sys};
use crate::config::{Realtime, Settings};

/// The pid file, under `engine.data_dir`: the daemon's process id and a newline.
pub const PID_FILE: &str = "flashpointd.pid";
/// The thread map, under `engine.data_dir`, written once READY.
pub const THREADS_FILE: &str = "threads.json";

/// The pid file and the thread map of this run: the pid file is written at creation, and
/// both are removed when this is dropped, that is on every return from `run` (a clean stop
/// or a failed start). A killed daemon leaves them; `fpn probe` then finds no such process.
#[derive(Debug)]
pub struct RunFiles {
    data_dir: PathBuf,
}

impl RunFiles {
    /// Writes the pid file; refuses (and leaves the file alone) when it names another live
    /// process with this one's command name: a second daemon on one data dir would share
    /// its journal and take its pid file.
    pub fn create(data_dir: &Path) -> Result<RunFiles, RunError> {
        let path = data_dir.join(PID_FILE);
        if let Some(pid) = running_daemon(&path) {
            let source = std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("pid {pid} is a running flashpointd with this data dir"),
            );
            return Err(RunError::Io { what: "claiming the data dir: its pid file", path, source });
        }
        write_atomically(&path, format!("{}\n", std::process::id()).as_bytes())
            .map_err(|source| RunError::Io { what: "writing", path, source })?;
        Ok(RunFiles { data_dir: data_dir.to_path_buf() })
    }
}

/// The pid in the pid file at `path`, if that process is alive, is not this one, and has
/// this process's command name.
fn running_daemon(path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    let comm = |p: &str| std::fs::read_to_string(Path::new("/proc").join(p).join("comm")).ok();
    let ours = comm("self")?;
    (pid != std::process::id() && comm(&pid.to_string())? == ours).then_some(pid)
}

impl Drop for RunFiles {
    fn drop(&mut self) {
        for name in [PID_FILE, THREADS_FILE] {
            let _ = std::fs::remove_file(self.data_dir.join(name));
        }
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`, so a
/// reader sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// One executor thread, as its setup saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorThread {
    pub tid: u32,
    pub cpu: usize,
    /// The role tasks it runs (their metrics names: `intake0`, `merger`, ...).
    pub roles: Vec<String>,
}

/// The executor threads, filled in by their setups as they start.
#[derive(Debug, Clone, Default)]
pub struct ExecutorThreads(Arc<Mutex<Vec<ExecutorThread>>>);

impl ExecutorThreads {
    pub fn list(&self) -> Vec<ExecutorThread> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Gives every executor its setup, run on its own thread before its roles: record the
/// thread (for [`write_threads_file`]) and, with `engine.realtime` on and a hot role
/// (`Role::is_hot`) on its CPU, put the thread on `SCHED_FIFO` at `engine.realtime_priority`.
/// A refusal is a warning on stderr under `"try"` and stops the start under `"on"`; either
/// way the message names the executor and why.
pub fn attach_setups(settings: &Settings, specs: &mut [ExecutorSpec]) -> ExecutorThreads {
    let threads = ExecutorThreads::default();
    for spec in specs {
        let cpu = spec.cpu_id;
        let hot =
            settings.core_map.plans.iter().any(|p| p.cpu == cpu && p.roles.iter().any(|r| r.role.is_hot()));
        let fifo = (hot && settings.realtime != Realtime::Off).then_some(settings.realtime_priority);
        let roles: Vec<String> = spec.roles.iter().map(|r| r.name().to_string()).collect();
        let (threads, mode) = (threads.clone(), settings.realtime);
        spec.setup = Some(ExecutorSetup::new(move |ctx| {
            let thread = ExecutorThread { tid: sys::thread_id(), cpu, roles };
            let roles = thread.roles.join(" ");
            threads.0.lock().unwrap_or_else(|p| p.into_inner()).push(thread);
            let Some(priority) = fifo else { return Ok(()) };
            let name = ctx.executor_name;
            match sys::set_thread_fifo(priority) {
                Ok(()) => {
                    eprintln!("flashpointd: executor {name} ({roles}) on SCHED_FIFO priority {priority}");
                    Ok(())
                }
                Err(e) if mode == Realtime::Try => {
                    eprintln!(
                        "flashpointd: warning: engine.realtime = \"try\": executor {name} ({roles}) stays on \
                         SCHED_OTHER: {}",
                        fifo_refusal(&e, priority)
                    );
                    Ok(())
                }
                Err(e) => Err(format!("engine.realtime = \"on\": {}", fifo_refusal(&e, priority))),
            }
        }));
    }
    threads
}

/// Why `SCHED_FIFO` was refused, and what would allow it.
fn fifo_refusal(e: &std::io::Error, priority: u8) -> String {
    let mut why = format!("sched_setscheduler(SCHED_FIFO, priority {priority}) failed: {e}");
    if e.raw_os_error() == Some(libc::EPERM) {
        let limit = match sys::rtprio_limit() {
            Ok(u64::MAX) => "unlimited".to_string(),
            Ok(n) => n.to_string(),
            Err(e) => format!("unknown: {e}"),
        };
        why.push_str(&format!(
            "; it needs CAP_SYS_NICE (the systemd unit grants it: AmbientCapabilities=CAP_SYS_NICE) or an \
             RLIMIT_RTPRIO of at least {priority} (now {limit}; LimitRTPRIO= in the unit, ulimit -r in a shell), \
             and on kernels with CONFIG_RT_GROUP_SCHED a realtime budget for the process's cgroup \
             (cpu.rt_runtime_us)"
        ));
    }
    why
}

/// What a thread of the daemon is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadKind {
    /// The main thread: signals, READY and WATCHDOG, the drain.
    Main,
    /// A pinned executor: its role tasks in `roles`.
    Executor,
    /// glommio's blocking-operation thread of an executor (pinned beside it, idle: the
    /// roles do no blocking file I/O through glommio). Renamed `fpn-cpu<N>-pool`.
    ExecutorPool,
    /// The journal's file writer (`fpn-journal-io`).
    JournalWriter,
    /// A prover worker (`fpn-prover<i>`).
    ProverWorker,
    /// The admin endpoint's acceptor (`fpn-admin`) and the submit path's receipt collector
    /// (`fpn-receipts`). The endpoint's connection threads come and go and are not listed.
    Admin,
    Other,
}

/// One line of `threads.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadInfo {
    pub tid: u32,
    pub name: String,
    pub kind: ThreadKind,
    /// The CPU it is pinned to; `None` when it may run on several.
    pub cpu: Option<usize>,
    /// The roles whose work it does (metrics names: `intake0`, `builder0`, `merger`, ...).
    pub roles: Vec<String>,
    /// `SCHED_OTHER`, `SCHED_FIFO`, `SCHED_IDLE`, ...
    pub policy: &'static str,
    /// The realtime priority (0 outside `SCHED_FIFO`/`SCHED_RR`).
    pub priority: u32,
}

/// The whole of `threads.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadMap {
    pub pid: u32,
    pub threads: Vec<ThreadInfo>,
}

/// The name of a policy number (`/proc/<pid>/task/<tid>/stat`, field 41).
fn policy_name(policy: u32) -> &'static str {
    match policy {
        0 => "SCHED_OTHER",
        1 => "SCHED_FIFO",
        2 => "SCHED_RR",
        3 => "SCHED_BATCH",
        5 => "SCHED_IDLE",
        6 => "SCHED_DEADLINE",
        _ => "unknown",
    }
}

/// `(rt_priority, policy)`: fields 40 and 41 of a `/proc/<pid>/task/<tid>/stat` line. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted from the
/// last `)`.
fn sched_of_stat(stat: &str) -> Option<(u32, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    Some((fields.get(40 - 3)?.parse().ok()?, fields.get(41 - 3)?.parse().ok()?))
}

/// The single CPU of a `Cpus_allowed_list`, if it names exactly one (`3`, not `0-3`).
fn single_cpu(status: &str) -> Option<usize> {
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?.trim();
    list.parse().ok()
}

/// The threads of this process under `proc_self` (`/proc/self`, or a fake tree in tests):
/// executors from `executors`, the others by the names this crate and glommio give them.
/// glommio's pool threads carry their executor's name (`fpn-cpu<N>`); they are renamed
/// `fpn-cpu<N>-pool` here when `rename` (so that a thread name says what the thread is).
pub fn thread_map(proc_self: &Path, pid: u32, executors: &[ExecutorThread], rename: bool) -> ThreadMap {
    let by_tid: BTreeMap<u32, &ExecutorThread> = executors.iter().map(|e| (e.tid, e)).collect();
    let mut tids: Vec<u32> = std::fs::read_dir(proc_self.join("task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    let mut threads = Vec::new();
    for tid in tids {
        let task = proc_self.join("task").join(tid.to_string());
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else { continue };
        let mut name = comm.trim().to_string();
        let (kind, roles) = match by_tid.get(&tid) {
            Some(e) => (ThreadKind::Executor, e.roles.clone()),
            None if tid == pid => (ThreadKind::Main, Vec::new()),
            None if name == "fpn-admin-conn" => continue,
            // Not an executor's own thread, yet named (or renamed) after one.
            None if name.starts_with("fpn-cpu") => {
                if rename && !name.ends_with("-pool") {
                    let pooled = format!("{name}-pool");
                    if std::fs::write(task.join("comm"), &pooled).is_ok() {
                        name = pooled;
                    }
                }
                (ThreadKind::ExecutorPool, Vec::new())
            }
            None if name == "fpn-journal-io" => (ThreadKind::JournalWriter, vec!["journal".to_string()]),
            None if name.starts_with("fpn-prover") => (ThreadKind::ProverWorker, vec!["prover".to_string()]),
            None if name == "fpn-admin" || name == "fpn-receipts" => {
                (ThreadKind::Admin, vec!["admin".to_string()])
            }
            None => (ThreadKind::Other, Vec::new()),
        };
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
        let (priority, policy) = sched_of_stat(&stat).unwrap_or((0, u32::MAX));
        threads.push(ThreadInfo {
            tid,
            name,
            kind,
            cpu: single_cpu(&status),
            roles,
            policy: policy_name(policy),
            priority,
        });
    }
    ThreadMap { pid, threads }
}

/// Writes `<data_dir>/threads.json` (see [`thread_map`]).
pub fn write_threads_file(data_dir: &Path, executors: &ExecutorThreads) -> std::io::Result<ThreadMap> {
    let map = thread_map(Path::new("/proc/self"), std::process::id(), &executors.list(), true);
    let mut text = serde_json::to_string_pretty(&map).map_err(std::io::Error::other)?;
    text.push('\n');
    write_atomically(&data_dir.join(THREADS_FILE), text.as_bytes())?;
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_line(comm: &str, rt_priority: u32, policy: u32) -> String {
        // pid (comm) state, then fields 4..=52 numbered by their position.
        let mut fields: Vec<String> = (4..=52).map(|n| n.to_string()).collect();
        fields[40 - 4] = rt_priority.to_string();
        fields[41 - 4] = policy.to_string();
        format!("123 ({comm}) S {}", fields.join(" "))
    }

    #[test]
    fn policy_and_priority_come_from_fields_40_and_41_after_the_command() {
        assert_eq!(sched_of_stat(&stat_line("fpn-cpu0", 10, 1)), Some((10, 1)));
        // A command name with spaces and parentheses does not shift the fields.
        assert_eq!(sched_of_stat(&stat_line("a (b) c", 0, 5)), Some((0, 5)));
        assert_eq!(sched_of_stat("123 (x) S 1 2"), None);
        assert_eq!(policy_name(1), "SCHED_FIFO");
        assert_eq!(policy_name(5), "SCHED_IDLE");
        assert_eq!(single_cpu("Name:\tx\nCpus_allowed_list:\t3\n"), Some(3));
        assert_eq!(single_cpu("Cpus_allowed_list:\t0-3\n"), None);
    }

    #[test]
    fn threads_are_told_apart_by_executor_tid_then_by_name() {
        let root = std::env::temp_dir().join(format!("fpn-threads-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (tid, comm, cpus, policy) in [
            (100u32, "flashpointd", "1", 0u32),
            (101, "fpn-journal-io", "1", 0),
            (102, "fpn-cpu0", "0", 1),
            (103, "fpn-cpu0", "0", 0),
            (104, "fpn-prover0", "1", 5),
            (105, "fpn-admin", "1", 0),
            (106, "fpn-admin-conn", "1", 0),
            (107, "tokio-rt", "0-1", 0),
        ] {
            let task = root.join("task").join(tid.to_string());
            std::fs::create_dir_all(&task).unwrap();
            std::fs::write(task.join("comm"), format!("{comm}\n")).unwrap();
            std::fs::write(task.join("status"), format!("Cpus_allowed_list:\t{cpus}\n")).unwrap();
            std::fs::write(task.join("stat"), stat_line(comm, if policy == 1 { 10 } else { 0 }, policy))
                .unwrap();
        }
        let executors =
            [ExecutorThread { tid: 102, cpu: 0, roles: vec!["intake0".into(), "builder0".into()] }];
        let map = thread_map(&root, 100, &executors, true);
        let row = |tid: u32| map.threads.iter().find(|t| t.tid == tid).unwrap().clone();
        assert_eq!(map.threads.len(), 7, "the admin connection thread is left out");
        assert_eq!(row(100).kind, ThreadKind::Main);
        let exec = row(102);
        assert_eq!(
            (exec.kind, exec.cpu, exec.policy, exec.priority),
            (ThreadKind::Executor, Some(0), "SCHED_FIFO", 10)
        );
        assert_eq!(exec.roles, ["intake0", "builder0"]);
        let pool = row(103);
        assert_eq!((pool.kind, pool.name.as_str()), (ThreadKind::ExecutorPool, "fpn-cpu0-pool"));
        assert_eq!(std::fs::read_to_string(root.join("task/103/comm")).unwrap(), "fpn-cpu0-pool");
        assert_eq!(
            (row(101).kind, row(101).roles.clone()),
            (ThreadKind::JournalWriter, vec!["journal".to_string()])
        );
        assert_eq!((row(104).kind, row(104).policy), (ThreadKind::ProverWorker, "SCHED_IDLE"));
        assert_eq!(row(105).kind, ThreadKind::Admin);
        assert_eq!((row(107).kind, row(107).cpu), (ThreadKind::Other, None));
        // Read again (after the rename): the same map.
        assert_eq!(thread_map(&root, 100, &executors, true), map);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
