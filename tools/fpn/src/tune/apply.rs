//! `fpn tune apply`: the files that make a host pass `fpn tune check` for a plan: a sysctl.d
//! file, a tuned profile and a kernel command line for GRUB. `--dry-run` prints them; without
//! it they are written under the root and the sysctls are set now. Nothing here reboots, runs
//! update-grub or switches the tuned profile: those are the operator's steps, printed last.

use std::collections::BTreeSet;
use std::path::Path;

use fpn_ebpf::target::format_cpu_list;

use super::check::{Plan, kernel_cmdline, online_cpus};
use super::host::Host;

/// One file to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: &'static str,
    pub text: String,
}

pub const SYSCTL_PATH: &str = "/etc/sysctl.d/60-flashpointd.conf";
pub const TUNED_PATH: &str = "/etc/tuned/flashpointd/tuned.conf";
pub const GRUB_PATH: &str = "/etc/default/grub.d/60-flashpointd.cfg";

/// The sysctls, `(name, value)`: socket buffers at least what the intake asks (never lower
/// than the host has), busy polling of the device queue, and little swapping.
pub fn sysctls(host: &dyn Host, plan: &Plan) -> Vec<(&'static str, u64)> {
    let current = |name: &str| {
        host.read(&format!("/proc/sys/net/core/{name}")).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    vec![
        ("net.core.rmem_max", current("rmem_max").max(plan.socket_buffer_bytes)),
        ("net.core.wmem_max", current("wmem_max").max(plan.socket_buffer_bytes)),
        ("net.core.busy_read", 50),
        ("net.core.busy_poll", 50),
        ("vm.swappiness", 1),
    ]
}

/// The three files for `plan` on `host`.
pub fn files(host: &dyn Host, plan: &Plan) -> Vec<File> {
    let online = online_cpus(host);
    let housekeeping: BTreeSet<usize> = online.difference(&plan.hot_cpus).copied().collect();
    let hot = format_cpu_list(plan.hot_cpus.iter().copied());
    let sysctls = sysctls(host, plan);
    let mut sysctl = format!(
        "# Written by `fpn tune apply` (docs/tuning.md): the intake asks {} byte socket buffers.\n",
        plan.socket_buffer_bytes
    );
    for (name, value) in &sysctls {
        sysctl.push_str(&format!("{name} = {value}\n"));
    }
    // Isolation needs a CPU left for the kernel; without one, the profile and GRUB file say so.
    let cmdline = (!housekeeping.is_empty()).then(|| kernel_cmdline(&plan.hot_cpus, &housekeeping));
    let mut tuned = format!(
        "# Written by `fpn tune apply` (docs/tuning.md). Activate: tuned-adm profile flashpointd\n\
         [main]\nsummary=flashpointd: hot CPUs {hot} isolated, performance governor, no deep idle\n\
         include=latency-performance\n\n[cpu]\ngovernor=performance\nforce_latency=1\n\n\
         [vm]\ntransparent_hugepages=madvise\n\n[sysctl]\n"
    );
    for (name, value) in &sysctls {
        tuned.push_str(&format!("{name}={value}\n"));
    }
    let grub = match &cmdline {
        Some(line) => {
            tuned.push_str(&format!(
                "\n[bootloader]\ncmdline_flashpointd={line}\n\n[irqbalance]\nbanned_cpus={hot}\n"
            ));
            format!(
                "# Written by `fpn tune apply` (docs/tuning.md). Takes effect after update-grub and a reboot.\n\
                 GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT {line}\"\n"
            )
        }
        None => {
            let note = format!(
                "# No kernel isolation: every online CPU ({}) carries a hot role, and the kernel needs one\n\
                 # of its own. On 4 or more CPUs use engine.profile = \"tuned\" (docs/config.md).\n",
                format_cpu_list(online.iter().copied())
            );
            tuned.push_str(&format!("\n{note}"));
            format!("# Written by `fpn tune apply` (docs/tuning.md).\n{note}")
        }
    };
    vec![
        File { path: SYSCTL_PATH, text: sysctl },
        File { path: TUNED_PATH, text: tuned },
        File { path: GRUB_PATH, text: grub },
    ]
}

/// The files as `--dry-run` prints them.
pub fn render(files: &[File]) -> String {
    let mut out = String::new();
    for file in files {
        out.push_str(&format!("==> {} <==\n{}\n", file.path, file.text));
    }
    out
}

/// Writes the files under the host's root and sets the sysctls now (through
/// `<root>/proc/sys`); returns what it did, one line each.
pub fn write(host: &dyn Host, plan: &Plan, files: &[File]) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    for file in files {
        let path = host.path(file.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        std::fs::write(&path, &file.text).map_err(|e| format!("write {}: {e}", path.display()))?;
        done.push(format!("wrote {}", path.display()));
    }
    for (name, value) in sysctls(host, plan) {
        let path = host.path(&format!("/proc/sys/{}", name.replace('.', "/")));
        if !Path::new(&path).exists() {
            done.push(format!("skipped {name}: {} does not exist", path.display()));
            continue;
        }
        std::fs::write(&path, format!("{value}\n"))
            .map_err(|e| format!("set {name} ({}): {e}", path.display()))?;
        done.push(format!("set {name} = {value}"));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::super::host::FakeHost;
    use super::*;
    use std::collections::BTreeMap;
    use std::fs;

    fn host(name: &str, online: &str) -> FakeHost {
        let root = std::env::temp_dir().join(format!("fpn-apply-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("sys/devices/system/cpu")).unwrap();
        fs::create_dir_all(root.join("proc/sys/net/core")).unwrap();
        fs::write(root.join("sys/devices/system/cpu/online"), online).unwrap();
        fs::write(root.join("proc/sys/net/core/rmem_max"), "212992\n").unwrap();
        fs::write(root.join("proc/sys/net/core/wmem_max"), "16777216\n").unwrap();
        FakeHost { root, gro: BTreeMap::new() }
    }

    fn plan(hot: &[usize]) -> Plan {
        Plan {
            hot_cpus: hot.iter().copied().collect(),
            listen: "127.0.0.1:4433".parse().unwrap(),
            lock_memory: "try",
            realtime: "off",
            realtime_priority: 10,
            socket_buffer_bytes: 4 << 20,
        }
    }

    #[test]
    fn dry_run_prints_the_three_files_and_writes_nothing() {
        let host = host("dry", "0-7\n");
        let text = render(&files(&host, &plan(&[2, 3, 4])));
        assert!(text.contains("==> /etc/sysctl.d/60-flashpointd.conf <=="));
        assert!(text.contains("net.core.rmem_max = 4194304\n"), "raised to what the intake asks");
        assert!(text.contains("net.core.wmem_max = 16777216\n"), "never lowered");
        assert!(text.contains("==> /etc/tuned/flashpointd/tuned.conf <=="));
        assert!(text.contains("cmdline_flashpointd=isolcpus=managed_irq,domain,2-4 nohz_full=2-4 rcu_nocbs=2-4 irqaffinity=0-1,5-7\n"));
        assert!(text.contains("banned_cpus=2-4\n"));
        assert!(text.contains("==> /etc/default/grub.d/60-flashpointd.cfg <=="));
        assert!(text.contains(
            "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT isolcpus=managed_irq,domain,2-4 nohz_full=2-4 rcu_nocbs=2-4 irqaffinity=0-1,5-7\"\n"
        ));
        assert!(!host.root.join("etc").exists(), "a dry run writes nothing");
        fs::remove_dir_all(&host.root).unwrap();
    }

    #[test]
    fn without_a_housekeeping_cpu_there_is_no_isolation() {
        let host = host("allhot", "0-1\n");
        let files = files(&host, &plan(&[0, 1]));
        assert!(!files[2].text.contains("GRUB_CMDLINE"), "{}", files[2].text);
        assert!(files[2].text.contains("every online CPU (0-1) carries a hot role"));
        assert!(!files[1].text.contains("[bootloader]"));
        fs::remove_dir_all(&host.root).unwrap();
    }

    #[test]
    fn apply_writes_the_files_under_the_root_and_sets_the_sysctls() {
        let host = host("write", "0-3\n");
        let plan = plan(&[2, 3]);
        let files = files(&host, &plan);
        let done = write(&host, &plan, &files).unwrap();
        for file in &files {
            assert_eq!(fs::read_to_string(host.path(file.path)).unwrap(), file.text);
        }
        assert_eq!(fs::read_to_string(host.root.join("proc/sys/net/core/rmem_max")).unwrap(), "4194304\n");
        assert!(done.iter().any(|l| l == "set net.core.rmem_max = 4194304"));
        assert!(done.iter().any(|l| l.starts_with("skipped vm.swappiness")), "{done:?}");
        fs::remove_dir_all(&host.root).unwrap();
    }
}
