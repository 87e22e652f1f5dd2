//! eBPF latency probes of `flashpointd` (`ebpf/README.md`).
//!
//! The probes (`bpf/probes.bpf.c`, CO-RE, built by `build.rs` with clang) count, for one
//! daemon process: the socket queueing delay of the intake's datagrams and their drops, the off-CPU time and
//! preemptions of its threads, hardirq and softirq time and other tasks on its hot CPUs, the
//! run-queue latency of its wake-ups, and its `recvmmsg`/`sendmmsg`/`sendmsg` latency. Each
//! is a log2 histogram per thread (or CPU) and CPU ([`hist`]).
//!
//! [`Probes`] (module `sys`, the only one that talks to the kernel) attaches and reads them;
//! [`target`] finds the daemon's pid, threads, CPUs and ports in `/proc`; [`report`] renders
//! a [`Snapshot`] as Prometheus text and as the terminal view of `fpn probe`; [`serve`] is
//! the probe process's own `/metrics` endpoint.

pub mod hist;
pub mod report;
pub mod serve;
mod sys;
pub mod target;

pub use hist::Log2Hist;
pub use sys::{
    BUILT_WITH_CLANG, CPUS_MAX, Filter, HistKey, PROGRAM_PREFIX, Probes, still_loaded, wait_unloaded,
};

/// What a histogram measures: the `kind` of its [`HistKey`] (the `KIND_*` of the C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A datagram queued on an intake socket → read by a daemon thread. `id` tid, `aux`
    /// port, items: bytes read.
    Queue,
    /// A datagram an intake socket refused (count only). `id` the errno, `aux` port.
    Drop,
    /// A daemon thread switched out → back in. `id` tid, `aux` 1 preempted, 0 blocked.
    OffCpu,
    /// A daemon thread woken → running. `id` tid.
    RunQueue,
    /// A device interrupt handler on a hot CPU. `id` irq.
    HardIrq,
    /// A softirq on a hot CPU. `id` vector.
    SoftIrq,
    /// The syscalls, entry → exit. `id` tid, `aux` [`Outcome`]; items: messages (the mmsg
    /// calls) or bytes (`sendmsg`).
    Recvmmsg,
    Sendmmsg,
    Sendmsg,
}

impl Kind {
    pub fn from_raw(kind: u32) -> Option<Kind> {
        Some(match kind {
            1 => Kind::Queue,
            2 => Kind::Drop,
            3 => Kind::OffCpu,
            4 => Kind::RunQueue,
            5 => Kind::HardIrq,
            6 => Kind::SoftIrq,
            7 => Kind::Recvmmsg,
            8 => Kind::Sendmmsg,
            9 => Kind::Sendmsg,
            _ => return None,
        })
    }

    /// The syscall's name, for the three syscall kinds.
    pub fn syscall(self) -> Option<&'static str> {
        match self {
            Kind::Recvmmsg => Some("recvmmsg"),
            Kind::Sendmmsg => Some("sendmmsg"),
            Kind::Sendmsg => Some("sendmsg"),
            _ => None,
        }
    }
}

/// How a probed syscall returned (`aux` of its histograms).
pub fn outcome_name(aux: u32) -> &'static str {
    match aux {
        0 => "ok",
        1 => "again",
        _ => "error",
    }
}

/// Softirq vector names (`include/linux/interrupt.h`, stable since 2.6).
pub fn softirq_name(vec: u32) -> &'static str {
    const NAMES: [&str; 10] =
        ["hi", "timer", "net_tx", "net_rx", "block", "irq_poll", "tasklet", "sched", "hrtimer", "rcu"];
    NAMES.get(vec as usize).copied().unwrap_or("unknown")
}

/// Another task's time on a hot CPU, by command name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intruder {
    pub cpu: u32,
    pub comm: String,
    /// Times it was switched out after running there.
    pub runs: u64,
    pub run_ns: u64,
    /// Times it took the CPU from a daemon thread that was still runnable.
    pub preemptions: u64,
}

/// Everything the probes counted since they were attached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Sorted by key.
    pub hists: Vec<(HistKey, Log2Hist)>,
    /// Sorted by CPU, then by time taken, longest first.
    pub intruders: Vec<Intruder>,
    /// Samples lost because the histogram map was full.
    pub samples_lost_total: u64,
    /// Datagrams stamped when queued on an intake socket.
    pub queued_total: u64,
    /// Datagrams read with no stamp: queued before the probes, or read before the softirq that
    /// queued them had stamped them.
    pub unmatched_total: u64,
}

impl Snapshot {
    pub fn sort(&mut self) {
        self.hists.sort_by_key(|(key, _)| *key);
        self.intruders
            .sort_by(|a, b| a.cpu.cmp(&b.cpu).then(b.run_ns.cmp(&a.run_ns)).then(a.comm.cmp(&b.comm)));
    }

    /// The histograms of one kind.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &(HistKey, Log2Hist)> {
        self.hists.iter().filter(move |(key, _)| Kind::from_raw(key.kind) == Some(kind))
    }

    /// All histograms of one kind merged.
    pub fn total(&self, kind: Kind) -> Log2Hist {
        let mut total = Log2Hist::default();
        for (_, hist) in self.of_kind(kind) {
            total.merge(hist);
        }
        total
    }
}

/// Why the probes could not be attached or read. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "this build of fpn has no eBPF probes: clang was not found when it was built \
         (install clang, e.g. `apt-get install clang`, and rebuild)"
    )]
    BuiltWithoutClang,
    #[error("loading eBPF probes needs {0}")]
    Privileges(String),
    #[error("kernel BTF: {0}")]
    Btf(String),
    #[error("{0}")]
    Tracefs(String),
    #[error("target: {0}")]
    Target(String),
    #[error("loading the eBPF object failed: {0}")]
    Load(String),
    #[error("attaching {program} failed: {message}")]
    Attach { program: &'static str, message: String },
    #[error("reading the probes' maps failed: {0}")]
    Read(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_capabilities_name_what_is_missing() {
        assert_eq!(sys::missing_capabilities(1 << 21), None, "CAP_SYS_ADMIN covers both");
        assert_eq!(sys::missing_capabilities((1 << 38) | (1 << 39)), None);
        let none = sys::missing_capabilities(0).unwrap();
        assert!(none.starts_with("CAP_BPF and CAP_PERFMON"), "{none}");
        let no_perfmon = sys::missing_capabilities(1 << 39).unwrap();
        assert!(no_perfmon.starts_with("CAP_PERFMON ("), "{no_perfmon}");
    }

    #[test]
    fn effective_capabilities_come_from_cap_eff() {
        let status = "Name:\tfpn\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(sys::effective_capabilities(status), 0x1ff_ffff_ffff);
        assert_eq!(sys::effective_capabilities("Name:\tx\n"), 0);
    }

    #[test]
    fn kinds_round_trip_and_unknown_kinds_are_none() {
        for raw in 1..=9 {
            assert!(Kind::from_raw(raw).is_some());
        }
        assert_eq!(Kind::from_raw(0), None);
        assert_eq!(Kind::from_raw(10), None);
        assert_eq!(Kind::Recvmmsg.syscall(), Some("recvmmsg"));
        assert_eq!(softirq_name(3), "net_rx");
        assert_eq!(softirq_name(99), "unknown");
    }
}
