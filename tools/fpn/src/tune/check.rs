//! The host checks of `fpn tune check`: each compares what the kernel says (through [`Host`],
//! so the tests use fake trees) with what the daemon's configuration needs ([`Plan`]), and
//! gives one [`Line`]: pass, warn or fail, and the exact fix. Read-only; no privileges.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use fpn_ebpf::target::{format_cpu_list, parse_cpu_list};

use super::host::Host;

/// What the daemon's configuration asks of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// CPUs of the hot roles (intake, builder, build workers, merger).
    pub hot_cpus: BTreeSet<usize>,
    /// The QUIC intake's address (`quic.listen`).
    pub listen: SocketAddr,
    /// `engine.lock_memory`: "off", "try" or "on".
    pub lock_memory: &'static str,
    /// `engine.realtime` ("off", "try" or "on") and `engine.realtime_priority`.
    pub realtime: &'static str,
    pub realtime_priority: u8,
    /// Socket buffer bytes the intake asks for (`fpn_quic::udp::SOCKET_BUFFER_BYTES`).
    pub socket_buffer_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to run or set to pass; `None` when it passes.
    pub fix: Option<String>,
}

fn pass(name: &'static str, detail: String) -> Line {
    Line { name, status: Status::Pass, detail, fix: None }
}

fn warn(name: &'static str, detail: String, fix: String) -> Line {
    Line { name, status: Status::Warn, detail, fix: Some(fix) }
}

fn fail(name: &'static str, detail: String, fix: String) -> Line {
    Line { name, status: Status::Fail, detail, fix: Some(fix) }
}

/// Every check, in the order `docs/tuning.md` lists them.
pub fn run(host: &dyn Host, plan: &Plan) -> Vec<Line> {
    let online = online_cpus(host);
    let housekeeping: BTreeSet<usize> = online.difference(&plan.hot_cpus).copied().collect();
    let cmdline = host.read("/proc/cmdline").unwrap_or_default();
    let caps = capabilities(host);
    vec![
        isolation(host, plan, &housekeeping, &cmdline, "isolcpus"),
        isolation(host, plan, &housekeeping, &cmdline, "nohz_full"),
        isolation(host, plan, &housekeeping, &cmdline, "rcu_nocbs"),
        irq_affinity(host, plan, &housekeeping),
        governor(host, plan),
        idle_states(host, plan),
        thp(host),
        swap(host, plan),
        memlock(host, plan, caps),
        realtime(host, plan, caps),
        socket_buffer(host, plan, "rmem_max"),
        socket_buffer(host, plan, "wmem_max"),
        busy_poll(host, plan),
        gro(host, plan),
        clocksource(host),
    ]
}

/// CPUs the kernel has online (`/sys/devices/system/cpu/online`).
pub fn online_cpus(host: &dyn Host) -> BTreeSet<usize> {
    host.read("/sys/devices/system/cpu/online")
        .and_then(|t| parse_cpu_list(&t).ok())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The value of `name=` on the kernel command line, as CPUs (flags such as `managed_irq,`
/// and `domain,` before the list are skipped).
fn cmdline_cpus(cmdline: &str, name: &str) -> Option<BTreeSet<usize>> {
    let value = cmdline.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('='))?;
    let list = value
        .split(',')
        .filter(|p| p.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(",");
    parse_cpu_list(&list).ok().map(|v| v.into_iter().collect())
}

fn cpus(set: &BTreeSet<usize>) -> String {
    if set.is_empty() { "none".to_string() } else { format_cpu_list(set.iter().copied()) }
}

/// The kernel command line the hot CPUs need (`fpn tune apply` writes it).
pub fn kernel_cmdline(hot: &BTreeSet<usize>, housekeeping: &BTreeSet<usize>) -> String {
    let hot = cpus(hot);
    format!(
        "isolcpus=managed_irq,domain,{hot} nohz_full={hot} rcu_nocbs={hot} irqaffinity={}",
        cpus(housekeeping)
    )
}

const APPLY_CMDLINE: &str =
    "`fpn tune apply` writes it to /etc/default/grub.d/60-flashpointd.cfg; then update-grub and reboot";

fn no_housekeeping(name: &'static str, plan: &Plan) -> Line {
    warn(
        name,
        format!(
            "every online CPU ({}) carries a hot role: isolating them would leave the kernel no CPU",
            cpus(&plan.hot_cpus)
        ),
        "give the host at least one CPU without hot roles: on 4 or more CPUs, engine.profile = \"tuned\" (docs/config.md)"
            .to_string(),
    )
}

/// isolcpus, nohz_full and rcu_nocbs must cover the hot CPUs.
fn isolation(
    host: &dyn Host,
    plan: &Plan,
    housekeeping: &BTreeSet<usize>,
    cmdline: &str,
    name: &'static str,
) -> Line {
    let covered: BTreeSet<usize> = match name {
        "isolcpus" => host
            .read("/sys/devices/system/cpu/isolated")
            .and_then(|t| parse_cpu_list(&t).ok())
            .unwrap_or_default()
            .into_iter()
            .collect(),
        "nohz_full" => host
            .read("/sys/devices/system/cpu/nohz_full")
            .and_then(|t| parse_cpu_list(&t).ok())
            .unwrap_or_default()
            .into_iter()
            .collect(),
        // nohz_full CPUs are RCU no-callback CPUs too.
        _ => cmdline_cpus(cmdline, "rcu_nocbs")
            .unwrap_or_default()
            .union(&cmdline_cpus(cmdline, "nohz_full").unwrap_or_default())
            .copied()
            .collect(),
    };
    let missing: BTreeSet<usize> = plan.hot_cpus.difference(&covered).copied().collect();
    if missing.is_empty() {
        return pass(name, format!("hot CPUs {} are in {name} ({})", cpus(&plan.hot_cpus), cpus(&covered)));
    }
    if housekeeping.is_empty() {
        return no_housekeeping(name, plan);
    }
    let value = if name == "isolcpus" {
        format!("managed_irq,domain,{}", cpus(&plan.hot_cpus))
    } else {
        cpus(&plan.hot_cpus)
    };
    warn(
        name,
        format!("hot CPUs {} are not in {name} ({})", cpus(&missing), cpus(&covered)),
        format!("kernel command line {name}={value} ({APPLY_CMDLINE})"),
    )
}

/// No device interrupt should be delivered to a hot CPU.
fn irq_affinity(host: &dyn Host, plan: &Plan, housekeeping: &BTreeSet<usize>) -> Line {
    let name = "irq_affinity";
    let mut on_hot = Vec::new();
    for irq in host.list("/proc/irq").into_iter().filter(|n| n.parse::<u32>().is_ok()) {
        let dir = format!("/proc/irq/{irq}");
        let list = host
            .read(&format!("{dir}/effective_affinity_list"))
            .or_else(|| host.read(&format!("{dir}/smp_affinity_list")));
        let Some(Ok(allowed)) = list.map(|l| parse_cpu_list(&l)) else { continue };
        if allowed.iter().any(|c| plan.hot_cpus.contains(c)) {
            on_hot.push(irq);
        }
    }
    let default_mask =
        host.read("/proc/irq/default_smp_affinity").map(|hex| mask_cpus(&hex)).unwrap_or_default();
    let default_on_hot = !default_mask.is_disjoint(&plan.hot_cpus);
    if on_hot.is_empty() && !default_on_hot {
        return pass(name, format!("no interrupt is routed to hot CPUs {}", cpus(&plan.hot_cpus)));
    }
    if housekeeping.is_empty() {
        return no_housekeeping(name, plan);
    }
    on_hot.sort_by_key(|irq| irq.parse::<u32>().unwrap_or(0));
    let shown: Vec<&str> = on_hot.iter().take(8).map(String::as_str).collect();
    let more = if on_hot.len() > 8 { format!(" and {} more", on_hot.len() - 8) } else { String::new() };
    let hk = cpus(housekeeping);
    warn(
        name,
        format!(
            "irqs {}{more} may run on hot CPUs{}",
            if shown.is_empty() { "none".to_string() } else { shown.join(",") },
            if default_on_hot { "; the default affinity for new irqs includes them" } else { "" }
        ),
        format!(
            "for n in {}; do echo {hk} > /proc/irq/$n/smp_affinity_list; done; echo {} > /proc/irq/default_smp_affinity; \
             IRQBALANCE_BANNED_CPULIST={} in /etc/default/irqbalance; kernel command line irqaffinity={hk} (managed irqs refuse the echo: isolcpus=managed_irq moves them)",
            on_hot.join(" "),
            cpu_mask(housekeeping),
            cpus(&plan.hot_cpus)
        ),
    )
}

/// A hex CPU mask (`/proc/irq/default_smp_affinity`: `ff` or `00000000,0000000f`).
fn mask_cpus(hex: &str) -> BTreeSet<usize> {
    let digits: String = hex.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let mut set = BTreeSet::new();
    for (i, c) in digits.chars().rev().enumerate() {
        let nibble = c.to_digit(16).unwrap_or(0);
        for bit in 0..4 {
            if nibble & (1 << bit) != 0 {
                set.insert(i * 4 + bit);
            }
        }
    }
    set
}

/// The hex mask of a CPU set, as `default_smp_affinity` takes it.
fn cpu_mask(set: &BTreeSet<usize>) -> String {
    let top = set.iter().max().copied().unwrap_or(0);
    let mut digits = String::new();
    for nibble in (0..=top / 4).rev() {
        let value =
            (0..4).filter(|bit| set.contains(&(nibble * 4 + bit))).fold(0u32, |v, bit| v | (1 << bit));
        digits.push(char::from_digit(value, 16).expect("a nibble"));
    }
    digits
}

fn governor(host: &dyn Host, plan: &Plan) -> Line {
    let name = "cpu_governor";
    let mut slow = Vec::new();
    let mut seen = 0;
    for cpu in &plan.hot_cpus {
        if let Some(governor) =
            host.read(&format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"))
        {
            seen += 1;
            if governor != "performance" {
                slow.push(format!("cpu{cpu} {governor}"));
            }
        }
    }
    if seen == 0 {
        return pass(
            name,
            "no cpufreq governor on the hot CPUs (a VM, or the firmware sets the frequency)".into(),
        );
    }
    if slow.is_empty() {
        return pass(name, "performance on every hot CPU".into());
    }
    warn(
        name,
        format!("not performance: {}", slow.join(", ")),
        format!(
            "for c in {}; do echo performance > /sys/devices/system/cpu/cpu$c/cpufreq/scaling_governor; done (or the tuned profile of `fpn tune apply`)",
            plan.hot_cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(" ")
        ),
    )
}

/// Idle states deeper than this exit latency cost a hot CPU that wakes from them.
const IDLE_LATENCY_US_MAX: u64 = 10;

fn idle_states(host: &dyn Host, plan: &Plan) -> Line {
    let name = "idle_states";
    let mut deep = Vec::new();
    let mut fixes = Vec::new();
    let mut seen = false;
    for cpu in &plan.hot_cpus {
        let dir = format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle");
        for state in host.list(&dir).into_iter().filter(|s| s.starts_with("state")) {
            seen = true;
            let read = |f: &str| host.read(&format!("{dir}/{state}/{f}"));
            let latency: u64 = read("latency").and_then(|l| l.parse().ok()).unwrap_or(0);
            let disabled = read("disable").as_deref() == Some("1");
            if latency > IDLE_LATENCY_US_MAX && !disabled {
                deep.push(format!(
                    "cpu{cpu} {} ({latency} us)",
                    read("name").unwrap_or_else(|| state.clone())
                ));
                fixes.push(format!("echo 1 > {dir}/{state}/disable"));
            }
        }
    }
    if !seen {
        let driver =
            host.read("/sys/devices/system/cpu/cpuidle/current_driver").unwrap_or_else(|| "none".into());
        return pass(
            name,
            format!("no cpuidle states on the hot CPUs (driver {driver}): the CPU halts, no deep C-states"),
        );
    }
    if deep.is_empty() {
        return pass(
            name,
            format!("no enabled idle state exits slower than {IDLE_LATENCY_US_MAX} us on the hot CPUs"),
        );
    }
    warn(
        name,
        format!("enabled deep idle states: {}", deep.join(", ")),
        format!("{} (or the tuned profile's force_latency)", fixes.join("; ")),
    )
}

fn thp(host: &dyn Host) -> Line {
    let name = "transparent_hugepages";
    let path = "/sys/kernel/mm/transparent_hugepage/enabled";
    let Some(text) = host.read(path) else {
        return pass(name, "no transparent hugepages in this kernel".into());
    };
    let current = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
        .unwrap_or("?")
        .to_string();
    if current == "always" {
        return warn(
            name,
            "always: page faults may compact memory and khugepaged scans the daemon's memory".into(),
            format!("echo madvise > {path} (or never; the tuned profile sets it)"),
        );
    }
    pass(name, current)
}

fn swap(host: &dyn Host, plan: &Plan) -> Line {
    let name = "swap";
    let devices = host
        .read("/proc/swaps")
        .map(|t| t.lines().skip(1).filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0);
    if devices == 0 {
        return pass(name, "no swap".into());
    }
    if plan.lock_memory == "on" {
        return pass(
            name,
            format!("{devices} swap device(s), but engine.lock_memory = \"on\" keeps the daemon resident"),
        );
    }
    warn(
        name,
        format!("{devices} swap device(s) and engine.lock_memory = \"{}\": unlocked pages can be swapped out", plan.lock_memory),
        "swapoff -a (and remove swap from /etc/fstab), or engine.lock_memory = \"on\" with LimitMEMLOCK=infinity".into(),
    )
}

/// The effective capabilities of this process (`CapEff:` of `/proc/self/status`).
fn capabilities(host: &dyn Host) -> u64 {
    host.read("/proc/self/status")
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .unwrap_or(0)
}

const CAP_IPC_LOCK: u32 = 14;

fn memlock(host: &dyn Host, plan: &Plan, caps: u64) -> Line {
    let name = "memlock";
    let limits = host.read("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or("?")
        .to_string();
    if soft == "unlimited" {
        return pass(name, "RLIMIT_MEMLOCK unlimited".into());
    }
    if caps & (1 << CAP_IPC_LOCK) != 0 {
        return pass(name, format!("RLIMIT_MEMLOCK {soft} bytes, but CAP_IPC_LOCK lifts it"));
    }
    let detail = format!(
        "RLIMIT_MEMLOCK {soft} bytes without CAP_IPC_LOCK: mlockall of the daemon fails (engine.lock_memory = \"{}\")",
        plan.lock_memory
    );
    let fix = "LimitMEMLOCK=infinity in the unit (systemd/flashpointd.service has it), or `ulimit -l unlimited`, or \
               a line `<user> - memlock unlimited` in /etc/security/limits.d/flashpointd.conf"
        .to_string();
    match plan.lock_memory {
        "off" => {
            pass(name, format!("RLIMIT_MEMLOCK {soft} bytes; engine.lock_memory = \"off\" locks nothing"))
        }
        "on" => fail(name, detail, fix),
        _ => warn(name, detail, fix),
    }
}

const CAP_SYS_NICE: u32 = 23;

/// `engine.realtime`: can the daemon put its hot executors on `SCHED_FIFO`
/// (`CAP_SYS_NICE`, or `RLIMIT_RTPRIO` up to the priority), and does the kernel keep RT
/// throttling on (`kernel.sched_rt_runtime_us` ≠ -1: without it a spinning `SCHED_FIFO`
/// thread holds its CPU for good).
fn realtime(host: &dyn Host, plan: &Plan, caps: u64) -> Line {
    let name = "realtime";
    let priority = plan.realtime_priority;
    if plan.realtime == "off" {
        return pass(name, "engine.realtime = \"off\": the executors stay on SCHED_OTHER".into());
    }
    let runtime = host.read("/proc/sys/kernel/sched_rt_runtime_us").unwrap_or_default();
    if runtime.trim() == "-1" {
        return warn(
            name,
            "kernel.sched_rt_runtime_us = -1: RT throttling is off, so a spinning SCHED_FIFO executor never lets \
             its CPU's other tasks run"
                .into(),
            "sysctl -w kernel.sched_rt_runtime_us=950000 (the kernel default)".into(),
        );
    }
    let limits = host.read("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max realtime priority"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or("0")
        .to_string();
    if caps & (1 << CAP_SYS_NICE) != 0 {
        return pass(name, format!("SCHED_FIFO priority {priority} allowed: CAP_SYS_NICE"));
    }
    if soft == "unlimited" || soft.parse::<u32>().is_ok_and(|n| n >= u32::from(priority)) {
        return pass(name, format!("SCHED_FIFO priority {priority} allowed: RLIMIT_RTPRIO {soft}"));
    }
    let detail = format!(
        "engine.realtime = \"{}\" but neither CAP_SYS_NICE nor RLIMIT_RTPRIO ≥ {priority} (it is {soft}): the hot \
         executors stay on SCHED_OTHER",
        plan.realtime
    );
    let fix = format!(
        "AmbientCapabilities=CAP_SYS_NICE in the unit (systemd/flashpointd.service has it), or LimitRTPRIO={priority}, \
         or `ulimit -r {priority}`"
    );
    if plan.realtime == "on" { fail(name, detail, fix) } else { warn(name, detail, fix) }
}

fn socket_buffer(host: &dyn Host, plan: &Plan, sysctl: &'static str) -> Line {
    let name = if sysctl == "rmem_max" { "net.core.rmem_max" } else { "net.core.wmem_max" };
    let path = format!("/proc/sys/net/core/{sysctl}");
    let Some(value) = host.read(&path).and_then(|v| v.parse::<u64>().ok()) else {
        return warn(
            name,
            format!("{path} unreadable"),
            format!("sysctl -w {name}={}", plan.socket_buffer_bytes),
        );
    };
    let want = plan.socket_buffer_bytes;
    if value >= want {
        return pass(name, format!("{value} >= the {want} bytes the intake asks"));
    }
    fail(
        name,
        format!(
            "{value} < the {want} bytes the intake asks: the kernel caps its socket buffer at {value} \
             (unless the daemon has CAP_NET_ADMIN), and bursts overflow it"
        ),
        format!(
            "sysctl -w {name}={want}, and in /etc/sysctl.d/60-flashpointd.conf (`fpn tune apply` writes it)"
        ),
    )
}

fn busy_poll(host: &dyn Host, plan: &Plan) -> Line {
    let name = "busy_poll";
    if plan.listen.ip().is_loopback() {
        return pass(name, format!("quic.listen {} is loopback: no device queue to poll", plan.listen));
    }
    let read = host.read("/proc/sys/net/core/busy_read").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    if read > 0 {
        return pass(name, format!("net.core.busy_read = {read} us"));
    }
    warn(
        name,
        "net.core.busy_read = 0: the intake's reads wait for the NIC's interrupt and softirq instead of polling its queue".into(),
        "sysctl -w net.core.busy_read=50 net.core.busy_poll=50, and in /etc/sysctl.d/60-flashpointd.conf".into(),
    )
}

/// The devices the intake's datagrams arrive on: `lo` for a loopback address, else every
/// device that is up (without a routing lookup, a specific address is treated the same way).
fn intake_devices(host: &dyn Host, plan: &Plan) -> Vec<String> {
    if plan.listen.ip().is_loopback() {
        return vec!["lo".to_string()];
    }
    host.list("/sys/class/net")
        .into_iter()
        .filter(|dev| {
            dev != "lo" && host.read(&format!("/sys/class/net/{dev}/operstate")).as_deref() == Some("up")
        })
        .collect()
}

fn gro(host: &dyn Host, plan: &Plan) -> Line {
    let name = "gro";
    let devices = intake_devices(host, plan);
    if devices.is_empty() {
        return warn(name, "no network device is up".into(), "bring the intake's device up".into());
    }
    let mut off = Vec::new();
    let mut unknown = Vec::new();
    for dev in &devices {
        match host.gro(dev) {
            Some(true) => {}
            Some(false) => off.push(dev.clone()),
            None => unknown.push(dev.clone()),
        }
    }
    if off.is_empty() && unknown.is_empty() {
        return pass(
            name,
            format!("on for {}: the intake reads batches of datagrams (UDP_GRO)", devices.join(", ")),
        );
    }
    let fix =
        off.iter().chain(&unknown).map(|d| format!("ethtool -K {d} gro on")).collect::<Vec<_>>().join("; ");
    let mut detail = Vec::new();
    if !off.is_empty() {
        detail.push(format!("off for {}", off.join(", ")));
    }
    if !unknown.is_empty() {
        detail.push(format!("unknown for {} (the ethtool ioctl failed)", unknown.join(", ")));
    }
    warn(name, format!("{}: the intake reads datagram by datagram", detail.join("; ")), fix)
}

fn clocksource(host: &dyn Host) -> Line {
    let name = "clocksource";
    let dir = "/sys/devices/system/clocksource/clocksource0";
    let current = host.read(&format!("{dir}/current_clocksource")).unwrap_or_else(|| "?".into());
    let available = host.read(&format!("{dir}/available_clocksource")).unwrap_or_default();
    match current.as_str() {
        "tsc" | "arch_sys_counter" => pass(name, format!("{current}: clock_gettime stays in the vDSO")),
        "kvm-clock" | "hyperv_clocksource_tsc_page" => pass(
            name,
            format!("{current}: a paravirtual clock with a vDSO path (tsc is cheaper where it is stable)"),
        ),
        _ => {
            let fix = if available.split_whitespace().any(|c| c == "tsc") {
                format!("echo tsc > {dir}/current_clocksource, and kernel command line clocksource=tsc")
            } else {
                "a host whose TSC is stable (available clocksources: ".to_string() + &available + ")"
            };
            warn(name, format!("{current}: every clock_gettime may be a system call"), fix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::host::FakeHost;
    use super::*;
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::Path;

    /// A fake /proc and /sys of a 4-CPU host, tuned for hot CPUs 2-3 or not.
    fn fake_host(name: &str, tuned: bool) -> FakeHost {
        let root = std::env::temp_dir().join(format!("fpn-tune-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let put = |path: &str, text: &str| {
            let p = root.join(path.trim_start_matches('/'));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        put("/sys/devices/system/cpu/online", "0-3\n");
        put("/sys/devices/system/cpu/isolated", if tuned { "2-3\n" } else { "\n" });
        put("/sys/devices/system/cpu/nohz_full", if tuned { "2-3\n" } else { "(null)\n" });
        put(
            "/proc/cmdline",
            if tuned { "ro quiet isolcpus=managed_irq,domain,2-3 nohz_full=2-3\n" } else { "ro quiet\n" },
        );
        put("/proc/irq/default_smp_affinity", if tuned { "3\n" } else { "f\n" });
        put("/proc/irq/24/smp_affinity_list", if tuned { "0-1\n" } else { "0-3\n" });
        put("/proc/irq/24/effective_affinity_list", if tuned { "0\n" } else { "2\n" });
        put("/proc/irq/25/smp_affinity_list", "0\n");
        for cpu in 0..4 {
            put(
                &format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"),
                if tuned { "performance\n" } else { "powersave\n" },
            );
            put(&format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle/state0/name"), "POLL\n");
            put(&format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle/state0/latency"), "0\n");
            put(&format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle/state0/disable"), "0\n");
            put(&format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle/state2/name"), "C6\n");
            put(&format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle/state2/latency"), "133\n");
            put(
                &format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle/state2/disable"),
                if tuned { "1\n" } else { "0\n" },
            );
        }
        put(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            if tuned { "always [madvise] never\n" } else { "[always] madvise never\n" },
        );
        put(
            "/proc/swaps",
            if tuned {
                "Filename Type Size Used Priority\n"
            } else {
                "Filename Type Size Used Priority\n/swapfile file 1048572 0 -2\n"
            },
        );
        put(
            "/proc/self/limits",
            &format!(
                "Limit                     Soft Limit           Hard Limit           Units\nMax locked memory         {}      {}      bytes\n",
                if tuned { "unlimited" } else { "8388608" },
                if tuned { "unlimited" } else { "8388608" }
            ),
        );
        put("/proc/self/status", "Name:\tfpn\nCapEff:\t0000000000000000\n");
        put("/proc/sys/net/core/rmem_max", if tuned { "8388608\n" } else { "212992\n" });
        put("/proc/sys/net/core/wmem_max", if tuned { "4194304\n" } else { "212992\n" });
        put("/proc/sys/net/core/busy_read", if tuned { "50\n" } else { "0\n" });
        put("/sys/class/net/eth0/operstate", "up\n");
        put("/sys/class/net/eth1/operstate", "down\n");
        put("/sys/class/net/lo/operstate", "unknown\n");
        put(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            if tuned { "tsc\n" } else { "hpet\n" },
        );
        put("/sys/devices/system/clocksource/clocksource0/available_clocksource", "tsc hpet acpi_pm\n");
        FakeHost { root, gro: BTreeMap::from([("eth0".to_string(), tuned)]) }
    }

    fn plan(hot: &[usize], listen: &str, lock_memory: &'static str) -> Plan {
        Plan {
            hot_cpus: hot.iter().copied().collect(),
            listen: listen.parse().unwrap(),
            lock_memory,
            realtime: "off",
            realtime_priority: 10,
            socket_buffer_bytes: 4 << 20,
        }
    }

    fn by_name<'a>(lines: &'a [Line], name: &str) -> &'a Line {
        lines.iter().find(|l| l.name == name).unwrap_or_else(|| panic!("no check {name}"))
    }

    fn cleanup(root: &Path) {
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_tuned_host_passes_every_check() {
        let host = fake_host("tuned", true);
        let lines = run(&host, &plan(&[2, 3], "10.0.0.5:4433", "try"));
        assert_eq!(lines.len(), 15);
        for line in &lines {
            assert_eq!(line.status, Status::Pass, "{line:?}");
            assert_eq!(line.fix, None);
        }
        assert!(by_name(&lines, "rcu_nocbs").detail.contains("2-3"), "nohz_full implies rcu_nocbs");
        cleanup(&host.root);
    }

    #[test]
    fn an_untuned_host_warns_and_fails_with_exact_fixes() {
        let host = fake_host("untuned", false);
        let lines = run(&host, &plan(&[2, 3], "10.0.0.5:4433", "on"));
        let status = |name| by_name(&lines, name).status;
        let fix = |name| by_name(&lines, name).fix.clone().unwrap();
        for name in ["isolcpus", "nohz_full", "rcu_nocbs", "irq_affinity", "cpu_governor", "idle_states"] {
            assert_eq!(status(name), Status::Warn, "{name}");
        }
        assert_eq!(
            fix("isolcpus"),
            format!("kernel command line isolcpus=managed_irq,domain,2-3 ({APPLY_CMDLINE})")
        );
        assert!(fix("nohz_full").starts_with("kernel command line nohz_full=2-3 "));
        let irq = by_name(&lines, "irq_affinity");
        assert!(
            irq.detail.starts_with("irqs 24 may run on hot CPUs; the default affinity"),
            "{}",
            irq.detail
        );
        assert!(irq.fix.as_ref().unwrap().starts_with("for n in 24; do echo 0-1 > /proc/irq/$n/smp_affinity_list; done; echo 3 > /proc/irq/default_smp_affinity"));
        assert!(fix("cpu_governor").starts_with("for c in 2 3; do echo performance"));
        assert!(fix("idle_states").contains("echo 1 > /sys/devices/system/cpu/cpu2/cpuidle/state2/disable"));
        assert!(!fix("idle_states").contains("state0"), "POLL exits at once");
        assert_eq!(status("transparent_hugepages"), Status::Warn);
        assert_eq!(status("swap"), Status::Pass, "lock_memory on keeps it resident");
        assert_eq!(status("memlock"), Status::Fail, "lock_memory on cannot lock under 8 MiB");
        assert_eq!(status("net.core.rmem_max"), Status::Fail);
        assert!(fix("net.core.rmem_max").starts_with("sysctl -w net.core.rmem_max=4194304"));
        assert_eq!(status("net.core.wmem_max"), Status::Fail);
        assert_eq!(status("busy_poll"), Status::Warn);
        assert_eq!(status("gro"), Status::Warn);
        assert_eq!(fix("gro"), "ethtool -K eth0 gro on", "the up device only");
        assert_eq!(status("clocksource"), Status::Warn);
        assert!(fix("clocksource").starts_with("echo tsc > "));
        cleanup(&host.root);
    }

    #[test]
    fn lock_memory_decides_how_bad_swap_and_memlock_are() {
        let host = fake_host("lock", false);
        let try_lines = run(&host, &plan(&[2, 3], "127.0.0.1:4433", "try"));
        assert_eq!(by_name(&try_lines, "swap").status, Status::Warn);
        assert_eq!(by_name(&try_lines, "memlock").status, Status::Warn);
        let off_lines = run(&host, &plan(&[2, 3], "127.0.0.1:4433", "off"));
        assert_eq!(by_name(&off_lines, "memlock").status, Status::Pass);
        // Loopback: nothing to busy-poll, and GRO is asked of `lo` (unknown to this fake).
        assert_eq!(by_name(&off_lines, "busy_poll").status, Status::Pass);
        assert!(by_name(&off_lines, "gro").detail.contains("unknown for lo"));
        cleanup(&host.root);
    }

    #[test]
    fn realtime_needs_cap_sys_nice_or_rlimit_rtprio_and_rt_throttling() {
        let host = fake_host("rt", false);
        let check = |realtime: &'static str| {
            let plan = Plan { realtime, realtime_priority: 10, ..plan(&[2, 3], "127.0.0.1:4433", "try") };
            run(&host, &plan).into_iter().find(|l| l.name == "realtime").unwrap()
        };
        assert_eq!(check("off").status, Status::Pass);
        // No CAP_SYS_NICE (CapEff 0) and no RLIMIT_RTPRIO line (0).
        let try_line = check("try");
        assert_eq!(try_line.status, Status::Warn, "{try_line:?}");
        assert!(try_line.detail.contains("RLIMIT_RTPRIO ≥ 10 (it is 0)"), "{}", try_line.detail);
        assert!(try_line.fix.unwrap().contains("LimitRTPRIO=10"));
        assert_eq!(check("on").status, Status::Fail);
        let limits = host.root.join("proc/self/limits");
        let text = fs::read_to_string(&limits).unwrap();
        fs::write(
            &limits,
            format!("{text}Max realtime priority     10                   10                   \n"),
        )
        .unwrap();
        assert_eq!(check("on").status, Status::Pass, "RLIMIT_RTPRIO 10 allows priority 10");
        fs::write(&limits, &text).unwrap();
        fs::write(host.root.join("proc/self/status"), "Name:\tfpn\nCapEff:\t0000000000800000\n").unwrap();
        let line = check("on");
        assert_eq!(line.status, Status::Pass);
        assert!(line.detail.ends_with("CAP_SYS_NICE"), "{}", line.detail);
        fs::create_dir_all(host.root.join("proc/sys/kernel")).unwrap();
        fs::write(host.root.join("proc/sys/kernel/sched_rt_runtime_us"), "-1\n").unwrap();
        let line = check("try");
        assert_eq!(line.status, Status::Warn);
        assert!(line.fix.unwrap().starts_with("sysctl -w kernel.sched_rt_runtime_us=950000"));
        cleanup(&host.root);
    }

    #[test]
    fn with_every_cpu_hot_isolation_says_there_is_no_cpu_left() {
        let host = fake_host("allhot", false);
        let lines = run(&host, &plan(&[0, 1, 2, 3], "127.0.0.1:4433", "try"));
        for name in ["isolcpus", "nohz_full", "rcu_nocbs", "irq_affinity"] {
            let line = by_name(&lines, name);
            assert_eq!(line.status, Status::Warn);
            assert!(line.detail.starts_with("every online CPU (0-3) carries a hot role"), "{}", line.detail);
            assert!(line.fix.as_ref().unwrap().contains("engine.profile = \"tuned\""));
        }
        cleanup(&host.root);
    }

    #[test]
    fn cmdline_masks_and_the_kernel_line() {
        assert_eq!(
            cmdline_cpus("a isolcpus=managed_irq,domain,2-3,6 b", "isolcpus"),
            Some(BTreeSet::from([2, 3, 6]))
        );
        assert_eq!(cmdline_cpus("rcu_nocbs=1", "rcu_nocbs"), Some(BTreeSet::from([1])));
        assert_eq!(cmdline_cpus("quiet", "rcu_nocbs"), None);
        assert_eq!(mask_cpus("00000000,0000000f"), BTreeSet::from([0, 1, 2, 3]));
        assert_eq!(mask_cpus("3"), BTreeSet::from([0, 1]));
        assert_eq!(cpu_mask(&BTreeSet::from([0, 1])), "3");
        assert_eq!(cpu_mask(&BTreeSet::from([4])), "10");
        assert_eq!(
            kernel_cmdline(&BTreeSet::from([2, 3]), &BTreeSet::from([0, 1])),
            "isolcpus=managed_irq,domain,2-3 nohz_full=2-3 rcu_nocbs=2-3 irqaffinity=0-1"
        );
    }
}
