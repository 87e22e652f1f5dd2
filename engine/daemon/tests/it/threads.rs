//! The daemon's threads as the kernel sees them: `engine.realtime` puts exactly the
//! executors of hot roles on `SCHED_FIFO` (read back with `sched_getscheduler` on every
//! thread of the running daemon), a refusal is a warning under "try" and a failed start
//! under "on"; the pid file and `threads.json` name the process and its threads, and go
//! when it stops.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::daemon::{Daemon, allowed_cpus, config_text, scratch_dir};

/// Every thread of `pid`: tid → (name, policy, realtime priority), from the kernel.
fn threads_of(pid: u32) -> BTreeMap<u32, (String, i32, i32)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let tid: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
        let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_string();
        let mut param = libc::sched_param { sched_priority: -1 };
        // SAFETY: both calls read the scheduling of thread `tid` into valid memory.
        let (policy, rc) = unsafe { (libc::sched_getscheduler(tid), libc::sched_getparam(tid, &mut param)) };
        if policy < 0 || rc != 0 {
            continue; // the thread ended meanwhile
        }
        out.insert(tid as u32, (name, policy & !libc::SCHED_RESET_ON_FORK, param.sched_priority));
    }
    out
}

/// A core map with every hot role on the first allowed CPU and the journal, input log,
/// admin and prover on the last (an executor with no hot role, when there are two CPUs).
fn config(data: &Path, realtime: &str) -> String {
    let cpus = allowed_cpus();
    let (hot, rest) = (cpus[0], *cpus.last().unwrap());
    config_text(data, 20, 1)
        .replace("[engine]\n", &format!("[engine]\nrealtime = \"{realtime}\"\nrealtime_priority = 7\n"))
        .replace(&format!("merger = [{rest}]"), &format!("merger = [{hot}]\nbuild_worker = [{hot}]"))
        .replace("[builder]\nshards = 1\n", "[builder]\nshards = 1\nworkers = 1\n")
}

fn is_root() -> bool {
    // SAFETY: geteuid takes nothing.
    unsafe { libc::geteuid() == 0 }
}

/// The daemon started without `CAP_SYS_NICE` (dropped from the bounding set, so root's
/// exec does not regain it) and with `RLIMIT_RTPRIO` 0: `SCHED_FIFO` is refused.
fn without_realtime(command: &mut Command) {
    /// `include/uapi/linux/capability.h`.
    const CAP_SYS_NICE: libc::c_ulong = 23;
    // SAFETY: between fork and exec only async-signal-safe calls (prctl, setrlimit); their
    // arguments are plain integers and a valid rlimit.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0);
            let zero = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::setrlimit(libc::RLIMIT_RTPRIO, &zero) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn realtime_puts_exactly_the_hot_executors_on_sched_fifo_and_the_run_files_name_them() {
    if !is_root() {
        eprintln!("skipped: SCHED_FIFO needs root (or CAP_SYS_NICE); the refusal test runs anyway");
        return;
    }
    let dir = scratch_dir("threads-fifo");
    let data = dir.join("data");
    let mut d = Daemon::start_text(dir.clone(), &config(&data, "on"), &[]);
    let pid = d.pid();
    assert_eq!(std::fs::read_to_string(data.join("flashpointd.pid")).unwrap(), format!("{pid}\n"));
    let map: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("threads.json")).unwrap()).unwrap();
    assert_eq!(map["pid"], pid);
    let cpus = allowed_cpus();
    let (hot, rest) = (cpus[0], *cpus.last().unwrap());

    let kernel = threads_of(pid);
    let listed = map["threads"].as_array().unwrap();
    let mut executors = 0;
    for t in listed {
        let tid = t["tid"].as_u64().unwrap() as u32;
        let Some((name, policy, priority)) = kernel.get(&tid) else { continue };
        assert_eq!(t["name"], name.as_str(), "{t}");
        let roles: Vec<&str> = t["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        if t["kind"] == "executor" {
            executors += 1;
            let cpu = t["cpu"].as_u64().unwrap() as usize;
            assert_eq!(name, &format!("fpn-cpu{cpu}"), "an executor's name says its CPU");
            if cpu == hot {
                assert!(roles.contains(&"intake0") && roles.contains(&"merger"), "{t}");
                assert_eq!((*policy, *priority), (libc::SCHED_FIFO, 7), "{t}");
                assert_eq!((t["policy"].as_str(), t["priority"].as_u64()), (Some("SCHED_FIFO"), Some(7)));
            } else {
                assert_eq!(roles, ["journal", "log"], "{t}");
                assert_eq!(*policy, libc::SCHED_OTHER, "no hot role, no SCHED_FIFO: {t}");
            }
        } else {
            // Main, pool, journal writer, admin: none inherits the executors' policy.
            assert_ne!(*policy, libc::SCHED_FIFO, "{t}");
        }
    }
    assert_eq!(executors, if hot == rest { 1 } else { 2 }, "{map}");
    // Every FIFO thread of the process is a listed executor.
    let fifo = kernel.values().filter(|(_, p, _)| *p == libc::SCHED_FIFO).count();
    assert_eq!(fifo, 1, "{kernel:?}");
    assert!(d.stderr().contains(&format!("executor cpu{hot} (")), "{}", d.stderr());
    assert!(d.stderr().contains("on SCHED_FIFO priority 7"), "{}", d.stderr());

    // A second daemon on this data dir is refused before it touches anything.
    let second = Command::new(env!("CARGO_BIN_EXE_flashpointd"))
        .arg("--config")
        .arg(dir.join("flashpointd.toml"))
        .env_clear()
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("pid {pid} is a running flashpointd with this data dir")), "{stderr}");
    assert_eq!(std::fs::read_to_string(data.join("flashpointd.pid")).unwrap(), format!("{pid}\n"));

    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());
    assert!(!data.join("flashpointd.pid").exists(), "the pid file goes at a clean exit");
    assert!(!data.join("threads.json").exists());
}

#[test]
fn a_refused_sched_fifo_is_a_warning_under_try_and_a_failed_start_under_on() {
    let dir = scratch_dir("threads-try");
    let data = dir.join("data");
    let mut d = Daemon::start_command(dir.clone(), &config(&data, "try"), &[], without_realtime);
    let stderr = d.stderr();
    assert!(stderr.contains("warning: engine.realtime = \"try\": executor cpu"), "{stderr}");
    assert!(stderr.contains("stays on SCHED_OTHER") && stderr.contains("CAP_SYS_NICE"), "{stderr}");
    assert!(stderr.contains("RLIMIT_RTPRIO of at least 7 (now 0"), "{stderr}");
    let kernel = threads_of(d.pid());
    assert!(kernel.values().all(|(_, policy, _)| *policy != libc::SCHED_FIFO), "{kernel:?}");
    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());

    let dir = scratch_dir("threads-on");
    let data = dir.join("data");
    std::fs::write(dir.join("flashpointd.toml"), config(&data, "on")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_flashpointd"));
    command.arg("--config").arg(dir.join("flashpointd.toml")).env_clear();
    without_realtime(&mut command);
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("setup: engine.realtime = \"on\": sched_setscheduler(SCHED_FIFO, priority 7)"),
        "{stderr}"
    );
    assert!(stderr.contains("CAP_SYS_NICE"), "{stderr}");
    assert!(!data.join("flashpointd.pid").exists(), "a failed start leaves no pid file");
}
