//! What `fpn tune` reads of the host: files under a root path (`/` for real, a fake
//! `/proc` and `/sys` tree in the tests) and each network device's GRO flag, which only the
//! kernel's ethtool interface tells. That ioctl is the only `unsafe` of the command.

use std::path::{Path, PathBuf};

/// The host as the checks see it.
pub trait Host {
    /// The root the kernel's files are read under.
    fn root(&self) -> &Path;

    /// Whether GRO is on for `device`; `None` if it cannot be told.
    fn gro(&self, device: &str) -> Option<bool>;

    /// A file's text, trimmed; `None` if it cannot be read.
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.path(path)).ok().map(|s| s.trim().to_string())
    }

    /// `path` (absolute, as on a real host) under the root.
    fn path(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }

    /// The names in a directory, sorted; empty if it cannot be read.
    fn list(&self, path: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(path))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }
}

/// The machine this runs on.
pub struct RealHost {
    root: PathBuf,
}

impl RealHost {
    pub fn new(root: PathBuf) -> RealHost {
        RealHost { root }
    }
}

impl Host for RealHost {
    fn root(&self) -> &Path {
        &self.root
    }

    fn gro(&self, device: &str) -> Option<bool> {
        ethtool_gro(device)
    }
}

/// A fake tree, and GRO flags given by the test.
#[cfg(test)]
pub struct FakeHost {
    pub root: PathBuf,
    pub gro: std::collections::BTreeMap<String, bool>,
}

#[cfg(test)]
impl Host for FakeHost {
    fn root(&self) -> &Path {
        &self.root
    }

    fn gro(&self, device: &str) -> Option<bool> {
        self.gro.get(device).copied()
    }
}

/// `ETHTOOL_GGRO` through `SIOCETHTOOL` on a UDP socket (`include/uapi/linux/ethtool.h`); no
/// privilege needed to read.
fn ethtool_gro(device: &str) -> Option<bool> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GGRO: u32 = 0x0000_002b;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [libc::c_char; libc::IFNAMSIZ],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    let bytes = device.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return None;
    }
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    let mut value = EthtoolValue { cmd: ETHTOOL_GGRO, data: 0 };
    let mut request = IfReq { name: [0; libc::IFNAMSIZ], data: &mut value, _pad: [0; 16] };
    for (dst, &src) in request.name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `request` is an `ifreq` (name, then the union whose first member is the
    // `ifr_data` pointer, padded to the kernel's 40 bytes) pointing at `value`, an
    // `ethtool_value`; both live across the call, and the socket is open.
    let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&socket), SIOCETHTOOL, &mut request) };
    (r == 0).then_some(value.data != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_device_answers_the_gro_ioctl() {
        // Every Linux host has `lo`; its GRO flag is on or off, but the ioctl answers.
        assert!(ethtool_gro("lo").is_some());
        assert_eq!(ethtool_gro("no-such-dev0"), None);
        assert_eq!(ethtool_gro(""), None);
    }
}
