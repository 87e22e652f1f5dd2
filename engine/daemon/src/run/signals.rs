//! SIGTERM and SIGINT as synchronous events: blocked in every thread (the mask is inherited,
//! so block them before any thread starts) and taken by the main thread with `sigtimedwait`.

use std::time::Duration;

fn term_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set we pass it; sigaddset adds valid signal
    // numbers to that initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread (and every thread it starts later).
pub fn block_term_signals() -> std::io::Result<()> {
    let set = term_set();
    // SAFETY: `set` is an initialised signal set; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::from_raw_os_error(rc)) }
}

/// Waits at most `timeout` for SIGTERM or SIGINT; returns its name.
pub fn wait_term_signal(timeout: Duration) -> Option<&'static str> {
    let set = term_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `set` and `ts` are initialised and live for the call; a null siginfo pointer
    // is allowed.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    match sig {
        libc::SIGTERM => Some("SIGTERM"),
        libc::SIGINT => Some("SIGINT"),
        _ => None,
    }
}
