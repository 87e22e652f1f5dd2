//! Hardware receive timestamps, for [`crate::udp::UdpSocket::bind`] with
//! [`TimestampMode::Hardware`](crate::udp::TimestampMode::Hardware): which network devices a
//! socket receives on (`getifaddrs`, by its local address), whether each can stamp every
//! packet it receives (the ethtool `ETHTOOL_GET_TS_INFO` ioctl: `SOF_TIMESTAMPING_RX_HARDWARE`
//! and `RAW_HARDWARE` offered, and the `HWTSTAMP_FILTER_ALL` receive filter), and switching
//! that stamping on (`SIOCSHWTSTAMP`, device-wide, `CAP_NET_ADMIN`). A device that cannot, or
//! a refusal, leaves the socket on the kernel's software stamps, which it asks for too; the
//! outcome and its reason are in [`RxStamping`].
//!
//! Kernel-facing like `udp`, and with it the crate's only `unsafe`: the three ioctls and
//! `getifaddrs`. The structures are the kernel's UAPI (`include/uapi/linux/ethtool.h`,
//! `net_tstamp.h`, `if.h`), laid out here with `repr(C)` and checked by the tests.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

use crate::udp::{RxSource, SOF_TIMESTAMPING_RAW_HARDWARE, SOF_TIMESTAMPING_RX_HARDWARE};

/// `include/uapi/linux/sockios.h`.
pub const SIOCETHTOOL: libc::c_ulong = 0x8946;
pub const SIOCSHWTSTAMP: libc::c_ulong = 0x89b0;
pub const SIOCGHWTSTAMP: libc::c_ulong = 0x89b1;
/// `include/uapi/linux/ethtool.h`: get time stamping and PHC info.
pub const ETHTOOL_GET_TS_INFO: u32 = 0x41;
/// `include/uapi/linux/net_tstamp.h`, `enum hwtstamp_rx_filters` and `hwtstamp_tx_types`.
pub const HWTSTAMP_FILTER_NONE: i32 = 0;
pub const HWTSTAMP_FILTER_ALL: i32 = 1;
pub const HWTSTAMP_TX_OFF: i32 = 0;

/// `struct ethtool_ts_info`: 44 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EthtoolTsInfo {
    pub cmd: u32,
    /// `SOF_TIMESTAMPING_*` the device supports.
    pub so_timestamping: u32,
    /// The PTP hardware clock (`/dev/ptp<n>`), or -1.
    pub phc_index: i32,
    /// Bit `1 << HWTSTAMP_TX_*` per transmit mode.
    pub tx_types: u32,
    pub tx_reserved: [u32; 3],
    /// Bit `1 << HWTSTAMP_FILTER_*` per receive filter.
    pub rx_filters: u32,
    pub rx_reserved: [u32; 3],
}

/// `struct hwtstamp_config`: 12 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwtstampConfig {
    pub flags: i32,
    pub tx_type: i32,
    pub rx_filter: i32,
}

/// `struct ifreq` with the `ifr_data` member of its union: 40 bytes on 64-bit targets (the
/// union's largest member, `struct ifmap`, is 24).
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    pad: [u8; 16],
}

impl IfReq {
    /// A request for `device` pointing at `data`; `None` for a name the kernel cannot hold.
    fn new(device: &str, data: *mut libc::c_void) -> Option<IfReq> {
        let bytes = device.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return None;
        }
        let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
        for (dst, &src) in name.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        Some(IfReq { name, data, pad: [0; 16] })
    }
}

/// One `ifreq` ioctl on `fd` for `device`, its data at `data`.
///
/// # Safety
/// `T` must be the structure that `request` reads and writes through `ifr_data`.
unsafe fn ifreq_ioctl<T>(fd: RawFd, request: libc::c_ulong, device: &str, data: &mut T) -> io::Result<()> {
    let mut ifr = IfReq::new(device, (data as *mut T).cast())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("bad device name {device:?}")))?;
    // SAFETY: `ifr` is a kernel `ifreq` (name, then the union's `ifr_data` pointer, padded
    // to its 40 bytes) whose pointer is `data`, a live `T` of the layout `request` uses (the
    // caller's promise); both outlive the call.
    let rc = unsafe { libc::ioctl(fd, request, &mut ifr) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The device's time stamping capabilities (`ETHTOOL_GET_TS_INFO`; no privilege needed).
pub fn ts_info(fd: &impl AsRawFd, device: &str) -> io::Result<EthtoolTsInfo> {
    let mut info = EthtoolTsInfo { cmd: ETHTOOL_GET_TS_INFO, ..EthtoolTsInfo::default() };
    // SAFETY: SIOCETHTOOL with the command ETHTOOL_GET_TS_INFO fills a `struct ethtool_ts_info`.
    unsafe { ifreq_ioctl(fd.as_raw_fd(), SIOCETHTOOL, device, &mut info)? };
    Ok(info)
}

/// The device's current hardware stamping configuration (`SIOCGHWTSTAMP`).
pub fn hwtstamp_config(fd: &impl AsRawFd, device: &str) -> io::Result<HwtstampConfig> {
    let mut config = HwtstampConfig::default();
    // SAFETY: SIOCGHWTSTAMP fills a `struct hwtstamp_config`.
    unsafe { ifreq_ioctl(fd.as_raw_fd(), SIOCGHWTSTAMP, device, &mut config)? };
    Ok(config)
}

/// Sets the device's hardware stamping (`SIOCSHWTSTAMP`, `CAP_NET_ADMIN`); returns what the
/// driver applied (it may widen the receive filter).
pub fn set_hwtstamp_config(
    fd: &impl AsRawFd,
    device: &str,
    config: HwtstampConfig,
) -> io::Result<HwtstampConfig> {
    let mut config = config;
    // SAFETY: SIOCSHWTSTAMP reads a `struct hwtstamp_config` and writes back what it applied.
    unsafe { ifreq_ioctl(fd.as_raw_fd(), SIOCSHWTSTAMP, device, &mut config)? };
    Ok(config)
}

/// Whether a device can stamp every received packet in hardware, and with which clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsCaps {
    /// `SOF_TIMESTAMPING_RX_HARDWARE` and `RAW_HARDWARE` offered.
    pub rx_hardware: bool,
    /// The `HWTSTAMP_FILTER_ALL` receive filter offered (a PTP-only NIC stamps PTP packets).
    pub filter_all: bool,
    pub phc_index: Option<u32>,
}

impl TsCaps {
    pub fn from_info(info: &EthtoolTsInfo) -> TsCaps {
        let wanted = SOF_TIMESTAMPING_RX_HARDWARE | SOF_TIMESTAMPING_RAW_HARDWARE;
        TsCaps {
            rx_hardware: info.so_timestamping & wanted == wanted,
            filter_all: info.rx_filters & (1 << HWTSTAMP_FILTER_ALL) != 0,
            phc_index: u32::try_from(info.phc_index).ok(),
        }
    }

    /// `Ok` when the device can stamp every received packet; else why not.
    pub fn check(&self) -> Result<(), &'static str> {
        if !self.rx_hardware {
            Err(
                "the device offers no hardware receive stamping (no SOF_TIMESTAMPING_RX_HARDWARE and RAW_HARDWARE)",
            )
        } else if !self.filter_all {
            Err("the device stamps only some packets in hardware (no HWTSTAMP_FILTER_ALL receive filter)")
        } else {
            Ok(())
        }
    }
}

/// The configuration that stamps every received packet, keeping `current`'s transmit
/// setting (a PTP daemon on the same NIC may use it); `None` when `current` already does.
pub fn config_for_all(current: HwtstampConfig) -> Option<HwtstampConfig> {
    (current.rx_filter != HWTSTAMP_FILTER_ALL).then_some(HwtstampConfig {
        flags: current.flags,
        tx_type: current.tx_type,
        rx_filter: HWTSTAMP_FILTER_ALL,
    })
}

/// The receive timestamps a socket gets, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxStamping {
    /// `Hardware` when at least one of its devices stamps in hardware; `Software` (kernel
    /// stamps); `ReadTime` when no stamps were asked for.
    pub source: RxSource,
    /// One line for the operator: the devices and, for each that gives no hardware stamps,
    /// why.
    pub detail: String,
}

/// Switches hardware receive stamping on for every device the socket `fd`, bound to
/// `local`, receives on (every device that is up for an unspecified address). Never fails:
/// what does not work is said in the result, and the socket keeps its software stamps.
pub fn enable_rx_hardware(fd: &impl AsRawFd, local: IpAddr) -> RxStamping {
    let devices = match devices_of(local) {
        Ok(devices) if devices.is_empty() => {
            return RxStamping {
                source: RxSource::Software,
                detail: format!("no device that is up has {local}"),
            };
        }
        Ok(devices) => devices,
        Err(e) => {
            return RxStamping { source: RxSource::Software, detail: format!("getifaddrs failed: {e}") };
        }
    };
    let (mut hardware, mut software) = (Vec::new(), Vec::new());
    for device in devices {
        match enable_device(fd, &device) {
            Ok(Some(phc)) => hardware.push(format!("{device} (PHC /dev/ptp{phc})")),
            Ok(None) => hardware.push(device),
            Err(why) => software.push(format!("{device}: {why}")),
        }
    }
    let detail = match (hardware.is_empty(), software.is_empty()) {
        (false, true) => format!("hardware on {}", hardware.join(", ")),
        (false, false) => format!("hardware on {}; software on {}", hardware.join(", "), software.join("; ")),
        _ => format!("software on {}", software.join("; ")),
    };
    let source = if hardware.is_empty() { RxSource::Software } else { RxSource::Hardware };
    RxStamping { source, detail }
}

/// Hardware stamping of every received packet on `device`: its PHC index, or why not.
fn enable_device(fd: &impl AsRawFd, device: &str) -> Result<Option<u32>, String> {
    let info = ts_info(fd, device).map_err(|e| format!("ETHTOOL_GET_TS_INFO failed: {e}"))?;
    let caps = TsCaps::from_info(&info);
    caps.check().map_err(str::to_string)?;
    // A driver without SIOCGHWTSTAMP (older ones) starts from all off.
    let current = hwtstamp_config(fd, device).unwrap_or_default();
    if let Some(want) = config_for_all(current) {
        let applied = set_hwtstamp_config(fd, device, want).map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EPERM) { " (it needs CAP_NET_ADMIN)" } else { "" };
            format!("SIOCSHWTSTAMP failed: {e}{hint}")
        })?;
        if applied.rx_filter == HWTSTAMP_FILTER_NONE {
            return Err("the driver left receive stamping off after SIOCSHWTSTAMP".into());
        }
    }
    Ok(caps.phc_index)
}

/// The names of the devices that are up and have `local` (all that are up when `local` is
/// unspecified), each once, in the kernel's order.
pub fn devices_of(local: IpAddr) -> io::Result<Vec<String>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut names: Vec<String> = Vec::new();
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*at };
        at = ifa.ifa_next;
        if ifa.ifa_flags & libc::IFF_UP as libc::c_uint == 0 || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: `ifa_addr` is null or points at a sockaddr of the family it states.
        let ip = unsafe { ip_of(ifa.ifa_addr) };
        let matches = if local.is_unspecified() { true } else { ip == Some(local) };
        if !matches {
            continue;
        }
        // SAFETY: `ifa_name` is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }.to_string_lossy().into_owned();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once; no reference into it remains.
    unsafe { libc::freeifaddrs(list) };
    Ok(names)
}

/// The IP address of a `sockaddr`, for the IPv4 and IPv6 families.
///
/// # Safety
/// `addr` is null or points at a valid `sockaddr` whose `sa_family` says its real type.
unsafe fn ip_of(addr: *const libc::sockaddr) -> Option<IpAddr> {
    if addr.is_null() {
        return None;
    }
    // SAFETY: the caller promises a valid sockaddr; its family is read first.
    match i32::from(unsafe { (*addr).sa_family }) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let sin = unsafe { &*addr.cast::<libc::sockaddr_in>() };
            Some(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let sin6 = unsafe { &*addr.cast::<libc::sockaddr_in6>() };
            Some(IpAddr::from(sin6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn the_structures_have_the_kernels_layout() {
        assert_eq!(size_of::<EthtoolTsInfo>(), 44);
        assert_eq!(offset_of!(EthtoolTsInfo, so_timestamping), 4);
        assert_eq!(offset_of!(EthtoolTsInfo, phc_index), 8);
        assert_eq!(offset_of!(EthtoolTsInfo, tx_types), 12);
        assert_eq!(offset_of!(EthtoolTsInfo, rx_filters), 28);
        assert_eq!(size_of::<HwtstampConfig>(), 12);
        assert_eq!(size_of::<HwtstampConfig>(), size_of::<libc::hwtstamp_config>());
        assert_eq!(offset_of!(HwtstampConfig, rx_filter), 8);
        assert_eq!(size_of::<IfReq>(), 40);
        assert_eq!(size_of::<IfReq>(), size_of::<libc::ifreq>());
        assert_eq!(offset_of!(IfReq, data), 16);
        assert_eq!((SIOCSHWTSTAMP, SIOCGHWTSTAMP), (libc::SIOCSHWTSTAMP, libc::SIOCGHWTSTAMP));
        assert_eq!(HWTSTAMP_FILTER_ALL as libc::c_uint, libc::HWTSTAMP_FILTER_ALL);
    }

    #[test]
    fn device_names_are_checked_before_any_ioctl() {
        let mut x = 0u32;
        let p = (&mut x as *mut u32).cast();
        let req = IfReq::new("eth0", p).unwrap();
        assert_eq!(&req.name[..5], &[b'e' as libc::c_char, b't' as _, b'h' as _, b'0' as _, 0]);
        assert!(IfReq::new("", p).is_none());
        assert!(IfReq::new("a-name-of-16-chr", p).is_none(), "16 bytes leave no room for the NUL");
        assert!(IfReq::new("a\0b", p).is_none());
    }

    /// What drivers answer to `ETHTOOL_GET_TS_INFO`, by kind.
    fn info(so_timestamping: u32, phc_index: i32, rx_filters: u32) -> EthtoolTsInfo {
        EthtoolTsInfo {
            cmd: ETHTOOL_GET_TS_INFO,
            so_timestamping,
            phc_index,
            rx_filters,
            ..Default::default()
        }
    }

    #[test]
    fn capabilities_need_raw_hardware_receive_stamps_of_every_packet() {
        // A NIC with a PHC that stamps everything (TX/RX hardware and software, raw
        // hardware; filters NONE and ALL), as mlx5 or ice answer.
        let full = TsCaps::from_info(&info(0x5f, 0, 0b11));
        assert_eq!(full, TsCaps { rx_hardware: true, filter_all: true, phc_index: Some(0) });
        assert_eq!(full.check(), Ok(()));
        // virtio-net and lo: software only, no PHC.
        let soft = TsCaps::from_info(&info(0x18, -1, 0));
        assert_eq!(soft.phc_index, None);
        assert!(soft.check().unwrap_err().contains("no hardware receive stamping"));
        // A PTP-only NIC: hardware stamps, but only PTP event packets (filters NONE and
        // PTP_V2_L4_EVENT, bit 6).
        let ptp = TsCaps::from_info(&info(0x5f, 1, 0b100_0001));
        assert!(ptp.rx_hardware && !ptp.filter_all);
        assert!(ptp.check().unwrap_err().contains("HWTSTAMP_FILTER_ALL"));
        // RX_HARDWARE without RAW_HARDWARE gives no usable stamp in the cmsg.
        assert!(!TsCaps::from_info(&info(SOF_TIMESTAMPING_RX_HARDWARE, 0, 0b11)).rx_hardware);
    }

    #[test]
    fn enabling_keeps_the_transmit_setting_and_asks_for_every_packet() {
        let off = HwtstampConfig::default();
        assert_eq!(
            config_for_all(off),
            Some(HwtstampConfig { flags: 0, tx_type: HWTSTAMP_TX_OFF, rx_filter: 1 })
        );
        // ptp4l's setting (TX on, PTP v2 events): transmit kept, receive widened.
        let ptp4l = HwtstampConfig { flags: 0, tx_type: 1, rx_filter: 12 };
        assert_eq!(
            config_for_all(ptp4l),
            Some(HwtstampConfig { flags: 0, tx_type: 1, rx_filter: HWTSTAMP_FILTER_ALL })
        );
        assert_eq!(config_for_all(HwtstampConfig { flags: 0, tx_type: 1, rx_filter: 1 }), None, "already on");
    }

    #[test]
    fn the_loopback_device_answers_ts_info_with_software_stamps_only() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let info = ts_info(&socket, "lo").expect("ETHTOOL_GET_TS_INFO needs no privilege");
        assert_eq!(info.cmd, ETHTOOL_GET_TS_INFO);
        assert!(TsCaps::from_info(&info).check().is_err(), "{info:?}");
        assert!(ts_info(&socket, "no-such-dev0").is_err());
        // lo has no hardware stamping to read or set: the ioctls say so (EOPNOTSUPP, or EPERM
        // for setting without CAP_NET_ADMIN), they do not fail silently.
        assert!(hwtstamp_config(&socket, "lo").is_err());
        assert!(
            set_hwtstamp_config(&socket, "lo", HwtstampConfig { rx_filter: 1, ..Default::default() })
                .is_err()
        );
    }

    #[test]
    fn devices_are_found_by_address_and_all_up_ones_for_an_unspecified_address() {
        assert_eq!(devices_of("127.0.0.1".parse().unwrap()).unwrap(), ["lo"]);
        assert!(devices_of("192.0.2.77".parse().unwrap()).unwrap().is_empty(), "TEST-NET-1 is no one's");
        let all = devices_of("0.0.0.0".parse().unwrap()).unwrap();
        assert!(all.contains(&"lo".to_string()), "{all:?}");
    }

    #[test]
    fn without_a_stamping_device_the_socket_stays_on_software_stamps_and_says_why() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let r = enable_rx_hardware(&socket, "127.0.0.1".parse().unwrap());
        assert_eq!(r.source, RxSource::Software);
        assert!(
            r.detail.starts_with("software on lo: the device offers no hardware receive stamping"),
            "{}",
            r.detail
        );
        let r = enable_rx_hardware(&socket, "192.0.2.77".parse().unwrap());
        assert_eq!(
            (r.source, r.detail.as_str()),
            (RxSource::Software, "no device that is up has 192.0.2.77")
        );
        // Every device that is up, for 0.0.0.0: on this VM (lo, a virtio NIC) none stamps.
        let r = enable_rx_hardware(&socket, "0.0.0.0".parse().unwrap());
        if r.source == RxSource::Software {
            assert!(r.detail.contains("lo: "), "{}", r.detail);
        } else {
            assert!(r.detail.starts_with("hardware on "), "{}", r.detail);
        }
    }
}
