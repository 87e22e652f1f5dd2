//! What the probes filter on, found in a `/proc` tree (every function takes its root, so the
//! tests use a fake one): the daemon's pid (given, or from `<data_dir>/flashpointd.pid`, or
//! for a daemon that writes none the owner of the UDP socket that `<data_dir>/quic.addr`
//! names), its threads and their names, the CPUs its executor threads are pinned to, and its
//! UDP ports; and from `<data_dir>/threads.json`, which roles each thread runs.
//!
//! The daemon's executor threads are named `fpn-cpu<N>` and pinned to one CPU each
//! (`fpn_runtime::exec`), which is how the hot CPUs are found without its configuration;
//! `threads.json`, where present, says the same with the roles.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

use crate::ProbeError;

/// The prefix of the daemon's executor threads (`fpn-` and the executor's name, `cpu<N>`).
pub const EXECUTOR_THREAD_PREFIX: &str = "fpn-cpu";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    pub tid: u32,
    pub name: String,
    /// `Cpus_allowed_list` of the thread.
    pub cpus_allowed: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pid: u32,
    /// The process's command name.
    pub name: String,
    pub threads: Vec<Thread>,
    /// CPUs an executor thread is pinned to.
    pub hot_cpus: BTreeSet<usize>,
    /// Local ports of the process's UDP sockets (the intake's).
    pub ports: BTreeSet<u16>,
}

/// Reads the process `pid` under `proc`.
pub fn discover(proc: &Path, pid: u32) -> Result<Target, ProbeError> {
    let base = proc.join(pid.to_string());
    let name = std::fs::read_to_string(base.join("comm"))
        .map_err(|e| ProbeError::Target(format!("no process {pid} ({}: {e})", base.join("comm").display())))?
        .trim()
        .to_string();
    let mut threads = Vec::new();
    for (tid, name) in thread_names(proc, pid) {
        let status = std::fs::read_to_string(base.join("task").join(tid.to_string()).join("status"))
            .unwrap_or_default();
        let cpus_allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .and_then(|list| parse_cpu_list(list.trim()).ok())
            .unwrap_or_default();
        threads.push(Thread { tid, name, cpus_allowed });
    }
    let hot_cpus = threads
        .iter()
        .filter(|t| t.name.starts_with(EXECUTOR_THREAD_PREFIX) && t.cpus_allowed.len() == 1)
        .map(|t| t.cpus_allowed[0])
        .collect();
    let inodes = socket_inodes(proc, pid);
    let ports = udp_sockets(&base)
        .into_iter()
        .filter(|(_, inode)| inodes.contains(inode))
        .map(|(port, _)| port)
        .collect();
    Ok(Target { pid, name, threads, hot_cpus, ports })
}

/// Every thread of `pid` with its name (`task/<tid>/comm`); empty once the process is gone.
pub fn thread_names(proc: &Path, pid: u32) -> BTreeMap<u32, String> {
    let task = proc.join(pid.to_string()).join("task");
    let mut names = BTreeMap::new();
    for entry in std::fs::read_dir(&task).into_iter().flatten().flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        names.insert(tid, name.trim().to_string());
    }
    names
}

/// The daemon's pid file under its data dir (`flashpointd::run::threads::PID_FILE`).
pub const PID_FILE: &str = "flashpointd.pid";
/// The daemon's thread map under its data dir, written once it is ready.
pub const THREADS_FILE: &str = "threads.json";

/// The daemon of `data_dir`: the pid in its pid file, which must be a live process; without
/// a pid file (a daemon from before it wrote one), the owner of the UDP port in
/// `<data_dir>/quic.addr`, which needs root to see other processes' sockets.
pub fn pid_of_data_dir(proc: &Path, data_dir: &Path) -> Result<u32, ProbeError> {
    let file = data_dir.join(PID_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let pid: u32 = text.trim().parse().map_err(|_| {
                ProbeError::Target(format!("{}: `{}` is not a pid", file.display(), text.trim()))
            })?;
            if !proc.join(pid.to_string()).join("comm").exists() {
                return Err(ProbeError::Target(format!(
                    "{} names pid {pid}, which is not running: a stale pid file of a daemon that was killed? \
                     Start flashpointd, or pass --pid",
                    file.display()
                )));
            }
            Ok(pid)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => pid_of_port_file(proc, data_dir),
        Err(e) => Err(ProbeError::Target(format!("cannot read {}: {e}", file.display()))),
    }
}

/// What `<data_dir>/threads.json` says about the daemon's threads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadMap {
    /// The pid it was written by.
    pub pid: u32,
    /// The roles of each thread that has some (metrics names: `intake0`, `merger`, ...).
    pub roles: BTreeMap<u32, Vec<String>>,
    /// The CPUs of the executor threads.
    pub executor_cpus: BTreeSet<usize>,
}

/// Reads `<data_dir>/threads.json`; `None` when there is none (a daemon not ready yet, or
/// one from before the file).
pub fn thread_map(data_dir: &Path) -> Result<Option<ThreadMap>, ProbeError> {
    let file = data_dir.join(THREADS_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ProbeError::Target(format!("cannot read {}: {e}", file.display()))),
    };
    let bad = |what: &str| ProbeError::Target(format!("{}: {what}", file.display()));
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    let pid = v["pid"].as_u64().and_then(|p| u32::try_from(p).ok()).ok_or_else(|| bad("no pid"))?;
    let mut map = ThreadMap { pid, ..ThreadMap::default() };
    for t in v["threads"].as_array().ok_or_else(|| bad("no threads"))? {
        let tid = t["tid"]
            .as_u64()
            .and_then(|t| u32::try_from(t).ok())
            .ok_or_else(|| bad("a thread without tid"))?;
        let roles: Vec<String> = t["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        if t["kind"] == "executor"
            && let Some(cpu) = t["cpu"].as_u64()
        {
            map.executor_cpus.insert(cpu as usize);
        }
        if !roles.is_empty() {
            map.roles.insert(tid, roles);
        }
    }
    Ok(Some(map))
}

/// The pid of the process that owns the UDP socket bound to the port in `<data_dir>/quic.addr`
/// (the daemon writes that file once its intake socket is bound).
fn pid_of_port_file(proc: &Path, data_dir: &Path) -> Result<u32, ProbeError> {
    let file = data_dir.join("quic.addr");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        ProbeError::Target(format!(
            "cannot read {} ({e}): is flashpointd running with this data dir?",
            file.display()
        ))
    })?;
    let addr: SocketAddr = text.trim().parse().map_err(|e| {
        ProbeError::Target(format!("{}: `{}` is not an address ({e})", file.display(), text.trim()))
    })?;
    let port = addr.port();
    let inodes: BTreeSet<u64> = udp_sockets(&proc.join("self"))
        .into_iter()
        .filter(|(p, _)| *p == port)
        .map(|(_, inode)| inode)
        .collect();
    let mut owners = BTreeSet::new();
    if !inodes.is_empty() {
        for entry in std::fs::read_dir(proc).into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if !socket_inodes(proc, pid).is_disjoint(&inodes) {
                owners.insert(pid);
            }
        }
    }
    match owners.len() {
        1 => Ok(*owners.first().expect("one owner")),
        0 => Err(ProbeError::Target(format!(
            "no process owns UDP port {port} (from {}): is flashpointd running? (reading other \
             processes' sockets needs root)",
            file.display()
        ))),
        _ => {
            Err(ProbeError::Target(format!("several processes own UDP port {port}: {owners:?}; pass --pid")))
        }
    }
}

/// The inodes of the sockets among `pid`'s open files (`fd/<n>` → `socket:[inode]`).
fn socket_inodes(proc: &Path, pid: u32) -> BTreeSet<u64> {
    let fd_dir = proc.join(pid.to_string()).join("fd");
    let mut inodes = BTreeSet::new();
    for entry in std::fs::read_dir(&fd_dir).into_iter().flatten().flatten() {
        let Ok(link) = std::fs::read_link(entry.path()) else { continue };
        let link = link.to_string_lossy();
        if let Some(Ok(inode)) =
            link.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')).map(str::parse)
        {
            inodes.insert(inode);
        }
    }
    inodes
}

/// (local port, inode) of every UDP socket in the network namespace of `process_dir`
/// (`<proc>/<pid>` or `<proc>/self`): its `net/udp` and `net/udp6`.
fn udp_sockets(process_dir: &Path) -> Vec<(u16, u64)> {
    let mut sockets = Vec::new();
    for table in ["udp", "udp6"] {
        let text = std::fs::read_to_string(process_dir.join("net").join(table)).unwrap_or_default();
        sockets.extend(text.lines().skip(1).filter_map(parse_udp_row));
    }
    sockets
}

/// One row of `/proc/net/udp`: `sl local_address rem_address st tx:rx tr:tm retrnsmt uid
/// timeout inode ...`, the local address as `HEXIP:HEXPORT`.
fn parse_udp_row(row: &str) -> Option<(u16, u64)> {
    let fields: Vec<&str> = row.split_whitespace().collect();
    let local = fields.get(1)?;
    let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
    let inode = fields.get(9)?.parse().ok()?;
    Some((port, inode))
}

/// A kernel CPU list: `0-3,8,10-11`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    if text.trim().is_empty() {
        return Ok(cpus);
    }
    for part in text.trim().split(',') {
        let part = part.trim();
        let bad = || format!("`{part}` in CPU list `{text}` is not a CPU or a range");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// A CPU list in the kernel's short form: `0-3,8`.
pub fn format_cpu_list(cpus: impl IntoIterator<Item = usize>) -> String {
    let mut cpus: Vec<usize> = cpus.into_iter().collect();
    cpus.sort_unstable();
    cpus.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        while i + 1 < cpus.len() && cpus[i + 1] == cpus[i] + 1 {
            i += 1;
        }
        parts.push(if cpus[i] == start { start.to_string() } else { format!("{start}-{}", cpus[i]) });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fpn-ebpf-target-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    const UDP_HEADER: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n";

    /// A fake /proc with a daemon (pid 700: executors on CPUs 2 and 3, an admin thread on
    /// 0-3, a UDP socket on port 4433) and another process (pid 800, a UDP socket on 53).
    fn fake_proc(root: &Path) {
        let udp = format!(
            "{UDP_HEADER}  1: 0100007F:1151 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0\n\
             \x20 2: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5353 2 0000000000000000 0\n"
        );
        for (pid, comm, threads, socket) in [
            (
                700u32,
                "flashpointd",
                vec![
                    (700u32, "flashpointd", "0-3"),
                    (701, "fpn-cpu2", "2"),
                    (702, "fpn-cpu3", "3"),
                    (703, "fpn-admin", "0-3"),
                ],
                4242u64,
            ),
            (800, "resolver", vec![(800, "resolver", "0-3")], 5353),
        ] {
            let base = root.join(pid.to_string());
            fs::create_dir_all(base.join("net")).unwrap();
            fs::create_dir_all(base.join("fd")).unwrap();
            fs::write(base.join("comm"), format!("{comm}\n")).unwrap();
            fs::write(base.join("net/udp"), &udp).unwrap();
            fs::write(base.join("net/udp6"), UDP_HEADER).unwrap();
            std::os::unix::fs::symlink(format!("socket:[{socket}]"), base.join("fd/3")).unwrap();
            std::os::unix::fs::symlink("/dev/null", base.join("fd/0")).unwrap();
            for (tid, name, cpus) in threads {
                let task = base.join("task").join(tid.to_string());
                fs::create_dir_all(&task).unwrap();
                fs::write(task.join("comm"), format!("{name}\n")).unwrap();
                fs::write(task.join("status"), format!("Name:\t{name}\nCpus_allowed_list:\t{cpus}\n"))
                    .unwrap();
            }
        }
        std::os::unix::fs::symlink("700", root.join("self")).unwrap();
    }

    #[test]
    fn discovers_threads_hot_cpus_and_udp_ports() {
        let root = temp_dir("discover");
        fake_proc(&root);
        let target = discover(&root, 700).unwrap();
        assert_eq!(target.name, "flashpointd");
        assert_eq!(target.threads.len(), 4);
        assert_eq!(target.threads[1], Thread { tid: 701, name: "fpn-cpu2".into(), cpus_allowed: vec![2] });
        assert_eq!(target.hot_cpus, BTreeSet::from([2, 3]), "pinned executors only, not the admin thread");
        assert_eq!(target.ports, BTreeSet::from([4433]), "its own socket, not the other process's");
        let err = discover(&root, 999).unwrap_err().to_string();
        assert!(err.contains("no process 999"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_data_dir_names_the_port_and_the_port_names_the_pid() {
        let root = temp_dir("datadir");
        fake_proc(&root);
        let data = root.join("data");
        fs::create_dir_all(&data).unwrap();
        fs::write(data.join("quic.addr"), "127.0.0.1:4433\n").unwrap();
        assert_eq!(pid_of_data_dir(&root, &data).unwrap(), 700);
        fs::write(data.join("quic.addr"), "127.0.0.1:9999\n").unwrap();
        let err = pid_of_data_dir(&root, &data).unwrap_err().to_string();
        assert!(err.contains("no process owns UDP port 9999"), "{err}");
        let err = pid_of_data_dir(&root, &root.join("nowhere")).unwrap_err().to_string();
        assert!(err.contains("is flashpointd running"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_pid_file_names_the_daemon_and_a_stale_one_is_refused() {
        let root = temp_dir("pidfile");
        fake_proc(&root);
        let data = root.join("data");
        fs::create_dir_all(&data).unwrap();
        // No quic.addr at all: the pid file is enough, and no socket scan is needed.
        fs::write(data.join(PID_FILE), "700\n").unwrap();
        assert_eq!(pid_of_data_dir(&root, &data).unwrap(), 700);
        fs::write(data.join(PID_FILE), "999\n").unwrap();
        let err = pid_of_data_dir(&root, &data).unwrap_err().to_string();
        assert!(err.contains("names pid 999, which is not running"), "{err}");
        fs::write(data.join(PID_FILE), "x\n").unwrap();
        assert!(pid_of_data_dir(&root, &data).unwrap_err().to_string().contains("is not a pid"));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_thread_map_gives_roles_by_tid_and_the_executor_cpus() {
        let root = temp_dir("threadmap");
        assert_eq!(thread_map(&root).unwrap(), None);
        fs::write(
            root.join(THREADS_FILE),
            r#"{"pid": 700, "threads": [
                {"tid": 700, "name": "flashpointd", "kind": "main", "cpu": 3, "roles": [], "policy": "SCHED_OTHER", "priority": 0},
                {"tid": 701, "name": "fpn-cpu2", "kind": "executor", "cpu": 2, "roles": ["intake0", "builder0"], "policy": "SCHED_FIFO", "priority": 10},
                {"tid": 702, "name": "fpn-cpu3", "kind": "executor", "cpu": 3, "roles": ["merger"], "policy": "SCHED_OTHER", "priority": 0},
                {"tid": 705, "name": "fpn-cpu3-pool", "kind": "executor_pool", "cpu": 3, "roles": [], "policy": "SCHED_OTHER", "priority": 0},
                {"tid": 704, "name": "fpn-journal-io", "kind": "journal_writer", "cpu": 3, "roles": ["journal"], "policy": "SCHED_OTHER", "priority": 0}
            ]}"#,
        )
        .unwrap();
        let map = thread_map(&root).unwrap().unwrap();
        assert_eq!(map.pid, 700);
        assert_eq!(map.executor_cpus, BTreeSet::from([2, 3]));
        assert_eq!(map.roles[&701], ["intake0", "builder0"]);
        assert_eq!(map.roles[&704], ["journal"]);
        assert!(!map.roles.contains_key(&700) && !map.roles.contains_key(&705));
        fs::write(root.join(THREADS_FILE), "{").unwrap();
        assert!(thread_map(&root).is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn cpu_lists_parse_and_format() {
        assert_eq!(parse_cpu_list("0-3,8,10-11").unwrap(), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("3,1,1").unwrap(), vec![1, 3]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert_eq!(format_cpu_list([0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list([5]), "5");
        assert_eq!(format_cpu_list([]), "");
    }
}
