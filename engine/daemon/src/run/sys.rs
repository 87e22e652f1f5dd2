//! The daemon's own system calls (besides the sockets, in `fpn-quic`, and the executors, in
//! `fpn-runtime`): memory locking. Signals are in `signals.rs`.

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
