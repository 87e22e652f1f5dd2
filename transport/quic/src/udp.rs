//! The thin UDP driver: one non-blocking socket per intake core (`SO_REUSEPORT` across the
//! intake cores, so the kernel keeps each client 4-tuple on one core), batched reads with
//! `recvmmsg` and UDP GRO, receive timestamps with `SO_TIMESTAMPING`, and writes with
//! `sendmsg` and UDP GSO (`UDP_SEGMENT`). Linux only. All `unsafe` of the crate is here and
//! in `hwtstamp` (switching a NIC's hardware receive stamping on).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// Kernel ABI constants (include/uapi/linux/{udp,net_tstamp}.h, asm-generic/socket.h). Spelled
// here because libc's `SO_TIMESTAMPING` follows the libc's time64 choice; the kernel's
// `SO_TIMESTAMPING_OLD` with a 64-bit `timespec` is what a 64-bit target receives.
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
const SO_TIMESTAMPING_OLD: libc::c_int = 37;
pub(crate) const SOF_TIMESTAMPING_RX_HARDWARE: libc::c_uint = 1 << 2;
const SOF_TIMESTAMPING_RX_SOFTWARE: libc::c_uint = 1 << 3;
const SOF_TIMESTAMPING_SOFTWARE: libc::c_uint = 1 << 4;
pub(crate) const SOF_TIMESTAMPING_RAW_HARDWARE: libc::c_uint = 1 << 6;

/// Messages per `recvmmsg` call.
pub const RECV_BATCH: usize = 32;
/// Bytes per message buffer: a full GRO batch (64 KiB).
pub const RECV_BUF_LEN: usize = 64 * 1024;
const CMSG_SPACE: usize = 128;
/// Socket receive and send buffers asked for.
pub const SOCKET_BUFFER_BYTES: libc::c_int = 4 << 20;

/// Which receive timestamps to ask the kernel for (`quic.rx_timestamps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampMode {
    /// None: the read time is used.
    Off,
    /// Kernel software RX timestamps.
    Software,
    /// NIC hardware RX timestamps where the device offers them: `bind` switches the
    /// stamping of every received packet on for the socket's devices
    /// ([`crate::hwtstamp::enable_rx_hardware`]), and any datagram without a hardware stamp
    /// falls back to the software one. [`UdpSocket::rx_stamping`] says what took.
    Hardware,
}

/// Where a datagram's receive time came from (and, in [`RxStamping`], which stamps a socket
/// gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxSource {
    Hardware,
    Software,
    /// No timestamp with the datagram: the time the batch was read.
    ReadTime,
}

/// Driver counters.
#[derive(Debug, Default, Clone)]
pub struct UdpCounters {
    pub rx_hardware_total: u64,
    pub rx_software_total: u64,
    pub rx_read_time_total: u64,
    pub recv_calls_total: u64,
    pub gro_batches_total: u64,
    pub send_calls_total: u64,
    pub gso_sends_total: u64,
    /// Transmits dropped because the socket buffer was full (QUIC retransmits what mattered).
    pub send_dropped_total: u64,
    pub send_errors_total: u64,
    pub recv_truncated_total: u64,
}

/// One datagram (one GRO segment) as read.
#[derive(Debug)]
pub struct Received<'a> {
    pub remote: SocketAddr,
    pub data: &'a [u8],
    pub rx_ns: u64,
    pub source: RxSource,
}

/// A bound UDP socket with batched I/O. `Send`: it holds no pointers between calls.
#[derive(Debug)]
pub struct UdpSocket {
    fd: OwnedFd,
    local: SocketAddr,
    gso: bool,
    bufs: Vec<u8>,
    cmsgs: Vec<u8>,
    rx_stamping: RxStamping,
    pub counters: UdpCounters,
}

pub use crate::hwtstamp::RxStamping;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: T) -> io::Result<()> {
    // SAFETY: `value` lives across the call and its size is passed; the kernel copies it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    cvt(r).map(drop)
}

fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sets `fd`'s receive and send buffers to `bytes` (past `net.core.rmem_max` where allowed).
pub fn set_buffers(fd: &impl AsRawFd, bytes: libc::c_int) {
    let set = |name, value: libc::c_int| {
        // SAFETY: `value` lives across the call and its size is passed.
        let r = unsafe {
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, name, (&value as *const libc::c_int).cast(), 4)
        };
        r == 0
    };
    // The FORCE variants pass `net.core.rmem_max` (with CAP_NET_ADMIN); else the capped one.
    if !set(libc::SO_RCVBUFFORCE, bytes) {
        set(libc::SO_RCVBUF, bytes);
    }
    if !set(libc::SO_SNDBUFFORCE, bytes) {
        set(libc::SO_SNDBUF, bytes);
    }
}

impl UdpSocket {
    /// Binds `addr` non-blocking, with `SO_REUSEPORT` when `reuseport` (every intake socket
    /// of the group sets it), UDP GRO, the requested receive timestamps, don't-fragment (for
    /// QUIC path MTU discovery) and 4 MiB socket buffers.
    pub fn bind(addr: SocketAddr, reuseport: bool, timestamps: TimestampMode) -> io::Result<UdpSocket> {
        let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = cvt(unsafe {
            libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
        })?;
        // SAFETY: `raw` is a fresh descriptor this function owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if reuseport {
            setsockopt(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1 as libc::c_int)?;
        }
        if addr.is_ipv6() {
            setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1 as libc::c_int)?;
            let _ = setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_PROBE);
        } else {
            let _ = setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE);
        }
        set_buffers(&fd, SOCKET_BUFFER_BYTES);
        let _ = setsockopt(&fd, libc::SOL_UDP, UDP_GRO, 1 as libc::c_int);
        let flags = match timestamps {
            TimestampMode::Off => 0,
            TimestampMode::Software => SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE,
            TimestampMode::Hardware => {
                SOF_TIMESTAMPING_RX_SOFTWARE
                    | SOF_TIMESTAMPING_SOFTWARE
                    | SOF_TIMESTAMPING_RX_HARDWARE
                    | SOF_TIMESTAMPING_RAW_HARDWARE
            }
        };
        if flags != 0 {
            setsockopt(&fd, libc::SOL_SOCKET, SO_TIMESTAMPING_OLD, flags)?;
        }
        let (storage, len) = to_sockaddr(&addr);
        // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
        cvt(unsafe { libc::bind(fd.as_raw_fd(), (&storage as *const libc::sockaddr_storage).cast(), len) })?;
        // SAFETY: sockaddr_storage is plain old data.
        let mut bound: libc::sockaddr_storage = unsafe { zeroed() };
        let mut bound_len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `bound` has `bound_len` bytes of room.
        cvt(unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut bound as *mut libc::sockaddr_storage).cast(),
                &mut bound_len,
            )
        })?;
        let local = from_sockaddr(&bound).ok_or_else(|| io::Error::other("unknown address family"))?;
        let rx_stamping = match timestamps {
            TimestampMode::Off => RxStamping { source: RxSource::ReadTime, detail: "none asked for".into() },
            TimestampMode::Software => {
                RxStamping { source: RxSource::Software, detail: "kernel software".into() }
            }
            TimestampMode::Hardware => crate::hwtstamp::enable_rx_hardware(&fd, local.ip()),
        };
        Ok(UdpSocket {
            fd,
            local,
            gso: true,
            bufs: vec![0; RECV_BATCH * RECV_BUF_LEN],
            cmsgs: vec![0; RECV_BATCH * CMSG_SPACE],
            rx_stamping,
            counters: UdpCounters::default(),
        })
    }

    /// The receive timestamps this socket gets (hardware, software or none) and why.
    pub fn rx_stamping(&self) -> &RxStamping {
        &self.rx_stamping
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn local_ip(&self) -> Option<IpAddr> {
        (!self.local.ip().is_unspecified()).then(|| self.local.ip())
    }

    /// One `recvmmsg`: every datagram read (GRO batches split into their segments) goes to
    /// `f` with its receive time. `read_ns` is the time to use where the kernel gave none.
    /// Returns the number of datagrams; 0 when nothing was waiting.
    pub fn recv_batch(
        &mut self,
        read_ns: impl Fn() -> u64,
        mut f: impl FnMut(Received<'_>),
    ) -> io::Result<usize> {
        // SAFETY: all-zero iovec/mmsghdr/sockaddr_storage values are valid; each is filled below.
        let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { zeroed() };
        // Zeroed, not uninit: the kernel may fill fewer bytes than the storage holds.
        // SAFETY: as above.
        let mut names: [libc::sockaddr_storage; RECV_BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { zeroed() };
        let bufs = self.bufs.as_mut_ptr();
        let cmsgs = self.cmsgs.as_mut_ptr();
        for i in 0..RECV_BATCH {
            // SAFETY: `i * RECV_BUF_LEN` stays inside `bufs` (RECV_BATCH * RECV_BUF_LEN bytes).
            let base = unsafe { bufs.add(i * RECV_BUF_LEN) };
            iovs[i] = libc::iovec { iov_base: base.cast(), iov_len: RECV_BUF_LEN };
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
            // SAFETY: as above.
            hdr.msg_control = unsafe { cmsgs.add(i * CMSG_SPACE) }.cast();
            hdr.msg_controllen = CMSG_SPACE as _;
        }
        self.counters.recv_calls_total += 1;
        // SAFETY: every mmsghdr points at live buffers of the sizes it states, all owned by
        // `self` or this stack frame, for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                RECV_BATCH as _,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        let read_time = read_ns();
        let mut datagrams = 0;
        for (i, msg) in msgs.iter().enumerate().take(n) {
            let len = msg.msg_len as usize;
            let hdr = &msg.msg_hdr;
            if hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.counters.recv_truncated_total += 1;
            }
            // An unfilled family is 0 from the zeroed start and maps to None.
            let Some(remote) = from_sockaddr(&names[i]) else { continue };
            let (mut segment, mut rx) = (len, None);
            // SAFETY: `hdr` is the header the kernel just filled; CMSG_* walk its control
            // buffer within `msg_controllen`.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(hdr);
                while !c.is_null() {
                    let (level, ty) = ((*c).cmsg_level, (*c).cmsg_type);
                    let data = libc::CMSG_DATA(c);
                    if level == libc::SOL_UDP && ty == UDP_GRO {
                        let seg = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                        if seg > 0 {
                            segment = seg as usize;
                        }
                    } else if level == libc::SOL_SOCKET && ty == SO_TIMESTAMPING_OLD {
                        let ts = std::ptr::read_unaligned(data.cast::<[libc::timespec; 3]>());
                        let ns = |t: &libc::timespec| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
                        if ts[2].tv_sec != 0 || ts[2].tv_nsec != 0 {
                            rx = Some((ns(&ts[2]), RxSource::Hardware));
                        } else if ts[0].tv_sec != 0 || ts[0].tv_nsec != 0 {
                            rx = Some((ns(&ts[0]), RxSource::Software));
                        }
                    }
                    c = libc::CMSG_NXTHDR(hdr, c);
                }
            }
            let (rx_ns, source) = rx.unwrap_or((read_time, RxSource::ReadTime));
            let data = &self.bufs[i * RECV_BUF_LEN..i * RECV_BUF_LEN + len.min(RECV_BUF_LEN)];
            if segment < data.len() {
                self.counters.gro_batches_total += 1;
            }
            for chunk in data.chunks(segment.max(1)) {
                datagrams += 1;
                match source {
                    RxSource::Hardware => self.counters.rx_hardware_total += 1,
                    RxSource::Software => self.counters.rx_software_total += 1,
                    RxSource::ReadTime => self.counters.rx_read_time_total += 1,
                }
                f(Received { remote, data: chunk, rx_ns, source });
            }
            if len == 0 {
                // An empty datagram is a datagram too (garbage to the server).
                datagrams += 1;
                self.counters.rx_read_time_total += 1;
                f(Received { remote, data: &[], rx_ns, source });
            }
        }
        Ok(datagrams)
    }

    /// Sends `buf` to `to`: one datagram, or `buf.len() / segment` datagrams with GSO. A
    /// full socket buffer drops the transmit (counted; QUIC's loss recovery resends).
    pub fn send(&mut self, to: SocketAddr, buf: &[u8], segment: Option<usize>) -> io::Result<()> {
        let segment = segment.filter(|&s| s < buf.len());
        if let Some(s) = segment
            && !self.gso
        {
            // No GSO on this path: one datagram per segment.
            for chunk in buf.chunks(s) {
                self.send_one(to, chunk, None)?;
            }
            return Ok(());
        }
        match self.send_one(to, buf, segment) {
            Err(e) if segment.is_some() && e.raw_os_error() == Some(libc::EIO) => {
                // The device cannot segment (kernel says EIO): stop asking.
                self.gso = false;
                self.send(to, buf, segment)
            }
            other => other,
        }
    }

    fn send_one(&mut self, to: SocketAddr, buf: &[u8], segment: Option<usize>) -> io::Result<()> {
        let (storage, name_len) = to_sockaddr(&to);
        let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
        let mut control = [0u8; 64];
        // SAFETY: an all-zero msghdr is valid; the fields used are set below.
        let mut hdr: libc::msghdr = unsafe { zeroed() };
        hdr.msg_name = (&storage as *const libc::sockaddr_storage).cast_mut().cast();
        hdr.msg_namelen = name_len;
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        if let Some(seg) = segment {
            hdr.msg_control = control.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE is a pure size computation.
            hdr.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
            // SAFETY: `control` has room for one cmsg carrying a u16 (CMSG_SPACE above ≤ 64).
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&hdr);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
            }
            self.counters.gso_sends_total += 1;
        }
        self.counters.send_calls_total += 1;
        // SAFETY: `hdr` points at `storage`, `iov` (over `buf`) and `control`, all alive for
        // the call.
        let r = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &hdr, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => {
                    self.counters.send_dropped_total += 1;
                    Ok(())
                }
                _ if e.raw_os_error() == Some(libc::EIO) && segment.is_some() => Err(e),
                _ => {
                    // Unreachable peers and the like: the connection times out on its own.
                    self.counters.send_errors_total += 1;
                    Ok(())
                }
            };
        }
        Ok(())
    }
}
