//! The daemon's own system calls (besides the sockets, in `fpn-quic`, and the executors, in
//! `fpn-runtime`): memory locking and thread priorities (nice, `SCHED_IDLE`, `SCHED_FIFO`).
//! Signals are in `signals.rs`; which thread gets which priority is `threads.rs`.

use super::RunError;
use crate::config::LockMemory;

/// `engine.lock_memory`: `mlockall(MCL_CURRENT | MCL_FUTURE)`, before any role starts, so
/// no page the roles touch is ever taken away and faulted back in (`docs/daemon.md`,
/// "Memory locking").
pub fn lock_memory(mode: LockMemory) -> Result<(), RunError> {
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

/// Sets the calling thread's nice value (`setpriority` on its own thread id). Lowering one's
/// own priority needs no privilege. Whether it took.
pub fn set_thread_nice(nice: i32) -> bool {
    // SAFETY: setpriority takes no memory; `who` is this thread's own id.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) == 0 }
}

/// The calling thread's nice value (`getpriority` on its own thread id; -20..=19).
pub fn thread_nice() -> i32 {
    // SAFETY: getpriority takes no memory; `who` is this thread's own id. It may return -1
    // as a valid value: errno is cleared first and read after to tell an error apart.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t);
        if nice == -1 && *libc::__errno_location() != 0 { 0 } else { nice }
    }
}

/// Puts the calling thread on `SCHED_IDLE`: it runs only when its CPU has nothing else to do.
/// Per thread on Linux, no privilege needed. Whether it took.
pub fn set_thread_sched_idle() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param for SCHED_IDLE
    // (priority 0) and outlives the call.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
}

/// Puts the calling thread on `SCHED_FIFO` at `priority` (`1..=99`), with
/// `SCHED_RESET_ON_FORK` so that a thread it starts does not inherit the policy. Per thread
/// on Linux; needs `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` of at least `priority`.
pub fn set_thread_fifo(priority: u8) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: i32::from(priority) };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param and outlives the
    // call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// The soft `RLIMIT_RTPRIO`: the highest realtime priority the process may set without
/// `CAP_SYS_NICE` (`u64::MAX`: unlimited).
pub fn rtprio_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable `rlimit` for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_RTPRIO, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

/// The calling thread's id (`gettid`), as in `/proc/<pid>/task/<tid>`.
pub fn thread_id() -> u32 {
    // SAFETY: gettid takes nothing and cannot fail.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).expect("thread ids are positive")
}

/// The calling thread's scheduling policy and nice value (`SCHED_*`, -20..=19).
#[cfg(test)]
pub fn thread_priority() -> (i32, i32) {
    // SAFETY: neither call takes memory; 0 is the calling thread.
    unsafe { (libc::sched_getscheduler(0), libc::getpriority(libc::PRIO_PROCESS, 0)) }
}
