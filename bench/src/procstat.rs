//! The few things the harness asks the kernel: CPU time of a process (`/proc/<pid>/stat`),
//! core placement (`sched_setaffinity`), and socket buffer sizes.

use std::os::fd::AsRawFd;

/// Ticks per second of `/proc/<pid>/stat` times.
fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf reads a constant; no memory is passed.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// User + system CPU seconds of a `/proc/<pid>/stat` line (all threads of the process).
pub fn parse_stat_cpu_s(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses: fields restart after the
    // last ')'. utime and stime are fields 14 and 15, so the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks_per_s())
}

/// CPU seconds used so far by process `pid`; `None` once it is gone.
pub fn cpu_s(pid: u32) -> Option<f64> {
    parse_stat_cpu_s(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU seconds used so far by this process.
pub fn self_cpu_s() -> f64 {
    cpu_s(std::process::id()).unwrap_or(0.0)
}

/// Restricts the calling thread (and the threads it starts later) to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        assert!(cpu < 8 * std::mem::size_of::<libc::cpu_set_t>(), "cpu {cpu} out of range");
        // SAFETY: CPU_SET writes one bit inside `set`; the index was checked against its size.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Parses a CPU list such as `1`, `0,1` or `0-3`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list `{text}`");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(format!("empty CPU list `{text}`"));
    }
    Ok(out)
}

/// The CPUs this process may run on (`Cpus_allowed_list` of `/proc/self/status`).
pub fn allowed_cpus() -> Vec<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(|v| v.trim().to_string()))
        })
        .and_then(|v| parse_cpu_list(&v).ok())
        .unwrap_or_else(|| vec![0])
}

/// Asks for 4 MiB socket buffers each way, as the engine's intake does, so a burst (or a
/// client descheduled for a few ms) is not dropped by a 208 KiB default receive buffer:
/// `SO_*BUFFORCE` where privileged, else `SO_*BUF` (capped at `net.core.*mem_max`). Best
/// effort.
pub fn grow_socket_buffers(sock: &impl AsRawFd) {
    let size: libc::c_int = 4 << 20;
    let set = |opt: libc::c_int| {
        // SAFETY: a valid fd, and a pointer to a c_int of the length passed.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        rc == 0
    };
    for (force, plain) in [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)] {
        if !set(force) {
            set(plain);
        }
    }
}

/// A quinn endpoint on `addr` with [`grow_socket_buffers`] applied to its socket.
pub fn quinn_endpoint(
    addr: std::net::SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let sock = std::net::UdpSocket::bind(addr)?;
    grow_socket_buffers(&sock);
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        sock,
        std::sync::Arc::new(quinn::TokioRuntime),
    )
}

/// Sets this process's nice value (children started later inherit it). Negative values
/// need privileges.
pub fn set_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: setpriority on our own process; no memory is passed.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_awkward_name() {
        let line = "1234 (a) b (c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_stat_cpu_s(line), Some(300.0 / clock_ticks_per_s()));
        assert!(self_cpu_s() >= 0.0);
        assert_eq!(parse_cpu_list("0-2, 5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_cpu_list("x").is_err());
    }
}
