//! The module that talks to the kernel, and the crate's only `unsafe`: checks what loading
//! needs (a build with clang, privileges, BTF, tracefs), loads the CO-RE object with aya,
//! sets its filters, attaches every program, reads the maps, and detaches.
//!
//! Every link is a file descriptor owned by this process (nothing is pinned in bpffs), so
//! the kernel detaches and unloads everything when the process exits, however it exits.
//! [`Probes::detach`] does it early and [`still_loaded`] checks that it did.

use std::collections::BTreeSet;
use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::hist::{Log2Hist, SLOTS};
use crate::{Intruder, ProbeError, Snapshot};

/// The object `build.rs` compiled from `bpf/probes.bpf.c` (empty without clang).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probes.bpf.o"));

/// Whether this build has the probes: `build.rs` found clang.
pub const BUILT_WITH_CLANG: bool = option_env!("FPN_EBPF_NO_CLANG").is_none();

/// Every program name starts with this (the kernel keeps 15 characters of a name).
pub const PROGRAM_PREFIX: &str = "fpn_";

/// CPUs the object's `hot_cpus` bitmap can name (`CPUS_MAX` in the C).
pub const CPUS_MAX: usize = 1024;

const TRACEFS: &str = "/sys/kernel/tracing";
const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Where a program attaches: a BTF-typed tracepoint or a classic one (category, name).
enum Attach {
    Btf(&'static str),
    Classic(&'static str, &'static str),
}

/// Every program of the object, by its function name.
const PROGRAMS: &[(&str, Attach)] = &[
    ("fpn_data_ready", Attach::Btf("sk_data_ready")),
    ("fpn_recv_len", Attach::Btf("sock_recv_length")),
    ("fpn_udp_drop", Attach::Btf("udp_fail_queue_rcv_skb")),
    ("fpn_switch", Attach::Btf("sched_switch")),
    ("fpn_wakeup", Attach::Btf("sched_wakeup")),
    ("fpn_wakeup_new", Attach::Btf("sched_wakeup_new")),
    ("fpn_irq_entry", Attach::Btf("irq_handler_entry")),
    ("fpn_irq_exit", Attach::Btf("irq_handler_exit")),
    ("fpn_softirq_in", Attach::Btf("softirq_entry")),
    ("fpn_softirq_out", Attach::Btf("softirq_exit")),
    ("fpn_rmmsg_in", Attach::Classic("syscalls", "sys_enter_recvmmsg")),
    ("fpn_rmmsg_out", Attach::Classic("syscalls", "sys_exit_recvmmsg")),
    ("fpn_smmsg_in", Attach::Classic("syscalls", "sys_enter_sendmmsg")),
    ("fpn_smmsg_out", Attach::Classic("syscalls", "sys_exit_sendmmsg")),
    ("fpn_smsg_in", Attach::Classic("syscalls", "sys_enter_sendmsg")),
    ("fpn_smsg_out", Attach::Classic("syscalls", "sys_exit_sendmsg")),
];

/// `struct hist_key` of the C.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HistKey {
    pub kind: u32,
    pub cpu: u32,
    pub id: u32,
    pub aux: u32,
}

/// `struct hist` of the C.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RawHist {
    slots: [u64; SLOTS],
    sum_ns: u64,
    items: u64,
}

/// `struct intruder_key` of the C.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct IntruderKey {
    cpu: u32,
    comm: [u8; 16],
}

/// `struct intruder` of the C.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RawIntruder {
    runs: u64,
    run_ns: u64,
    preemptions: u64,
}

// SAFETY: each type is `repr(C)`, made only of integers with no padding (4 × u32; 42 × u64;
// u32 + 16 bytes; 3 × u64), so every bit pattern the kernel writes is a valid value, and the
// layouts equal the C structs the maps were declared with.
unsafe impl aya::Pod for HistKey {}
// SAFETY: as above.
unsafe impl aya::Pod for RawHist {}
// SAFETY: as above.
unsafe impl aya::Pod for IntruderKey {}
// SAFETY: as above.
unsafe impl aya::Pod for RawIntruder {}

/// What the probes are filtered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The daemon's process id (every thread of it).
    pub pid: u32,
    /// The hot CPUs: irq time and other tasks are counted on these only.
    pub hot_cpus: BTreeSet<usize>,
    /// The intake's UDP ports: datagrams queued on sockets bound to them are stamped.
    pub ports: BTreeSet<u16>,
    /// Attach the syscall probes (5). Off, a spinning intake's empty `recvmmsg` polls cost
    /// nothing extra (they are most of the probes' cost: `BENCHMARKS.md`, "eBPF probes"),
    /// and tracefs is not needed.
    pub syscalls: bool,
}

/// The attached probes. Dropping them detaches them, as [`Probes::detach`] does.
pub struct Probes {
    ebpf: Ebpf,
    program_ids: Vec<u32>,
}

impl Probes {
    /// Checks what loading needs, loads the object with `filter` and attaches every program.
    pub fn attach(filter: &Filter) -> Result<Probes, ProbeError> {
        preflight(filter.syscalls)?;
        if filter.pid == 0 {
            return Err(ProbeError::Target("pid 0 is not a process".into()));
        }
        let mut hot = [0u64; CPUS_MAX / 64];
        for &cpu in &filter.hot_cpus {
            if cpu >= CPUS_MAX {
                return Err(ProbeError::Target(format!("CPU {cpu} is beyond the probes' {CPUS_MAX}")));
            }
            hot[cpu / 64] |= 1 << (cpu % 64);
        }
        let btf = Btf::from_sys_fs().map_err(|e| ProbeError::Btf(e.to_string()))?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("target_tgid", &filter.pid, true)
            .override_global("hot_cpus", &hot, true)
            .load(OBJECT)
            .map_err(|e| ProbeError::Load(error_chain(&e)))?;
        {
            let map = ebpf.map_mut("fpn_ports").ok_or_else(|| missing("map fpn_ports"))?;
            let mut ports: BpfHashMap<&mut MapData, u16, u8> =
                BpfHashMap::try_from(map).map_err(|e| ProbeError::Load(error_chain(&e)))?;
            for &port in &filter.ports {
                ports.insert(port, 1, 0).map_err(|e| ProbeError::Load(error_chain(&e)))?;
            }
        }
        let mut program_ids = Vec::with_capacity(PROGRAMS.len());
        for (name, attach) in PROGRAMS {
            if matches!(attach, Attach::Classic(..)) && !filter.syscalls {
                continue;
            }
            let program = ebpf.program_mut(name).ok_or_else(|| missing(&format!("program {name}")))?;
            let fail =
                |e: &dyn std::error::Error| ProbeError::Attach { program: name, message: error_chain(e) };
            match attach {
                Attach::Btf(tracepoint) => {
                    let p: &mut BtfTracePoint = program.try_into().map_err(|e| fail(&e))?;
                    p.load(tracepoint, &btf).map_err(|e| fail(&e))?;
                    p.attach().map_err(|e| fail(&e))?;
                    program_ids.push(p.info().map_err(|e| fail(&e))?.id());
                }
                Attach::Classic(category, tracepoint) => {
                    let p: &mut TracePoint = program.try_into().map_err(|e| fail(&e))?;
                    p.load().map_err(|e| fail(&e))?;
                    p.attach(category, tracepoint).map_err(|e| fail(&e))?;
                    program_ids.push(p.info().map_err(|e| fail(&e))?.id());
                }
            }
        }
        Ok(Probes { ebpf, program_ids })
    }

    /// The kernel's ids of the attached programs.
    pub fn program_ids(&self) -> &[u32] {
        &self.program_ids
    }

    /// Everything counted since the probes were attached.
    pub fn snapshot(&self) -> Result<Snapshot, ProbeError> {
        let read = |e: aya::maps::MapError| ProbeError::Read(error_chain(&e));
        let map = self.ebpf.map("fpn_hists").ok_or_else(|| missing("map fpn_hists"))?;
        let hists: BpfHashMap<&MapData, HistKey, RawHist> = BpfHashMap::try_from(map).map_err(read)?;
        let mut snapshot = Snapshot::default();
        for entry in hists.iter() {
            let (key, raw) = entry.map_err(read)?;
            let hist = Log2Hist { slots: raw.slots, sum_ns: raw.sum_ns, items: raw.items };
            snapshot.hists.push((key, hist));
        }
        let map = self.ebpf.map("fpn_intruders").ok_or_else(|| missing("map fpn_intruders"))?;
        let intruders: BpfHashMap<&MapData, IntruderKey, RawIntruder> =
            BpfHashMap::try_from(map).map_err(read)?;
        for entry in intruders.iter() {
            let (key, raw) = entry.map_err(read)?;
            let end = key.comm.iter().position(|&b| b == 0).unwrap_or(key.comm.len());
            snapshot.intruders.push(Intruder {
                cpu: key.cpu,
                comm: String::from_utf8_lossy(&key.comm[..end]).into_owned(),
                runs: raw.runs,
                run_ns: raw.run_ns,
                preemptions: raw.preemptions,
            });
        }
        let map = self.ebpf.map("fpn_stats").ok_or_else(|| missing("map fpn_stats"))?;
        let stats: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map).map_err(read)?;
        let sum =
            |index: u32| -> Result<u64, ProbeError> { Ok(stats.get(&index, 0).map_err(read)?.iter().sum()) };
        snapshot.samples_lost_total = sum(0)?;
        snapshot.queued_total = sum(1)?;
        snapshot.unmatched_total = sum(2)?;
        snapshot.sort();
        Ok(snapshot)
    }

    /// Detaches and unloads every program and map; returns the ids the programs had, for
    /// [`still_loaded`].
    pub fn detach(self) -> Vec<u32> {
        let ids = self.program_ids.clone();
        drop(self.ebpf);
        ids
    }
}

/// Waits up to `limit` until [`still_loaded`] is empty, and returns what it last found. The
/// kernel frees a detached program after an RCU grace period, so right after
/// [`Probes::detach`] it may still be listed for some milliseconds.
pub fn wait_unloaded(ids: &[u32], limit: std::time::Duration) -> Result<Vec<String>, ProbeError> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let found = still_loaded(ids)?;
        if found.is_empty() || std::time::Instant::now() >= deadline {
            return Ok(found);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Programs still loaded, or links still attached, among `ids` or with a name starting with
/// [`PROGRAM_PREFIX`], as `"program <id> <name>"` or `"link <id> of program <id>"`. Empty
/// once [`Probes::detach`] has taken effect (and after any `fpn probe` has exited) unless
/// another prober is running.
pub fn still_loaded(ids: &[u32]) -> Result<Vec<String>, ProbeError> {
    let mut found = Vec::new();
    for program in aya::programs::loaded_programs() {
        let program = program.map_err(|e| ProbeError::Read(error_chain(&e)))?;
        let name = program.name_as_str().unwrap_or("").to_string();
        if ids.contains(&program.id()) || name.starts_with(PROGRAM_PREFIX) {
            found.push(format!("program {} {name}", program.id()));
        }
    }
    for link in aya::programs::loaded_links() {
        let link = link.map_err(|e| ProbeError::Read(error_chain(&e)))?;
        if ids.contains(&link.program_id()) {
            found.push(format!("link {} of program {}", link.id(), link.program_id()));
        }
    }
    Ok(found)
}

/// What loading needs, checked in the order an operator can fix it, each with its fix.
fn preflight(tracefs: bool) -> Result<(), ProbeError> {
    if !BUILT_WITH_CLANG {
        return Err(ProbeError::BuiltWithoutClang);
    }
    let caps = effective_capabilities(&std::fs::read_to_string("/proc/self/status").unwrap_or_default());
    if let Some(missing) = missing_capabilities(caps) {
        return Err(ProbeError::Privileges(missing));
    }
    if !Path::new(BTF_VMLINUX).exists() {
        return Err(ProbeError::Btf(format!(
            "{BTF_VMLINUX} is missing (a kernel built without CONFIG_DEBUG_INFO_BTF)"
        )));
    }
    if tracefs { ensure_tracefs() } else { Ok(()) }
}

/// The effective capability set from `/proc/self/status` (`CapEff:` in hex).
pub fn effective_capabilities(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

/// What is missing to load tracing programs: `CAP_BPF` and `CAP_PERFMON` (Linux 5.8+), or
/// `CAP_SYS_ADMIN`, which covers both.
pub fn missing_capabilities(caps: u64) -> Option<String> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return None;
    }
    let mut missing = Vec::new();
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    Some(format!("{} (or CAP_SYS_ADMIN; run as root)", missing.join(" and ")))
}

/// The syscall probes attach through tracefs: mount it at `/sys/kernel/tracing` when it is
/// not there and this process may.
fn ensure_tracefs() -> Result<(), ProbeError> {
    let events = Path::new(TRACEFS).join("events");
    if events.exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    let source = c"nodev";
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: the three pointers are NUL-terminated literals that outlive the call, and a
    // null `data` is allowed for tracefs.
    let r = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        return Err(ProbeError::Tracefs(format!(
            "tracefs is not mounted at {TRACEFS} and mounting it failed ({e}); \
             mount it with `mount -t tracefs nodev {TRACEFS}`"
        )));
    }
    if !events.exists() {
        return Err(ProbeError::Tracefs(format!(
            "{TRACEFS} mounted but has no events/ (kernel without CONFIG_FTRACE?)"
        )));
    }
    Ok(())
}

fn missing(what: &str) -> ProbeError {
    ProbeError::Load(format!("{what} is not in the object (stale build?)"))
}

/// An error with its sources, `a: b: c` (aya puts the verifier log in a source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
