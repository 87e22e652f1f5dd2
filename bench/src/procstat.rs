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

/// CPU seconds used so far by the calling thread (`CLOCK_THREAD_CPUTIME_ID`): a client
/// thread's own time when several run in this process.
pub fn thread_cpu_s() -> f64 {
    // SAFETY: timespec is plain data; zeroed is a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc == 0 { ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9 } else { 0.0 }
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

/// A UDP socket bound to `addr`, with `SO_REUSEPORT` when `reuseport` (every socket of the
/// group must set it before binding: the kernel then spreads flows over the group by their
/// 4-tuple, as over the engine's intake sockets), and [`grow_socket_buffers`].
pub fn bind_udp(addr: std::net::SocketAddr, reuseport: bool) -> std::io::Result<std::net::UdpSocket> {
    use std::os::fd::{FromRawFd, OwnedFd};
    if !reuseport {
        let sock = std::net::UdpSocket::bind(addr)?;
        grow_socket_buffers(&sock);
        return Ok(sock);
    }
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket(2); the result is checked before use.
    let raw = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one: libc::c_int = 1;
    // SAFETY: a valid fd, and a pointer to a c_int of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: sockaddr_in and sockaddr_in6 are plain data; zeroed is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin =
                unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 =
                unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: `storage` holds a sockaddr of `len` bytes for this socket's family.
    let rc = unsafe {
        libc::bind(raw, (&storage as *const libc::sockaddr_storage).cast(), len as libc::socklen_t)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let sock = std::net::UdpSocket::from(fd);
    grow_socket_buffers(&sock);
    Ok(sock)
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

    /// Two sockets share a port with `SO_REUSEPORT`; a third without it cannot join.
    #[test]
    fn reuseport_group_shares_a_port() {
        let first = bind_udp("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind_udp(addr, true).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        assert!(bind_udp(addr, false).is_err());
        let v6 = bind_udp("[::1]:0".parse().unwrap(), true);
        // A host without IPv6 on loopback cannot bind it at all; where it can, the port is kept.
        if let Ok(v6) = v6 {
            assert_eq!(
                bind_udp(v6.local_addr().unwrap(), true).unwrap().local_addr().unwrap(),
                v6.local_addr().unwrap()
            );
        }
    }
}
