//! A [`Snapshot`] as Prometheus text (the probe process's `/metrics`) and as the terminal
//! view of `fpn probe`. Both are pure functions of the snapshot and the names to label it with.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

use crate::hist::{Log2Hist, SLOTS, human_ns};
use crate::target::format_cpu_list;
use crate::{HistKey, Kind, Snapshot, outcome_name, softirq_name};

/// The slots rendered as Prometheus buckets: `le` from 2^10 ns (about 1 µs) to 2^35 ns (about
/// 34 s); shorter samples fall in the first bucket, longer ones only in `+Inf`.
const FIRST_BUCKET_SLOT: usize = 9;
const LAST_BUCKET_SLOT: usize = 34;
const _: () = assert!(LAST_BUCKET_SLOT < SLOTS);

/// What the numbers in a snapshot are called.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// The daemon's pid, its hot CPUs and intake ports (the `fpn_ebpf_target_info` labels).
    pub pid: u32,
    pub hot_cpus: BTreeSet<usize>,
    pub ports: BTreeSet<u16>,
    /// Thread names by tid (`/proc/<pid>/task/<tid>/comm`).
    pub threads: BTreeMap<u32, String>,
    /// The roles each thread runs, by tid (the daemon's `threads.json`; empty without it).
    pub roles: BTreeMap<u32, Vec<String>>,
    /// Interrupt names by irq (the last column of `/proc/interrupts`).
    pub irqs: BTreeMap<u32, String>,
}

impl Names {
    pub fn thread(&self, tid: u32) -> &str {
        self.threads.get(&tid).map(String::as_str).unwrap_or("exited")
    }

    /// The roles of thread `tid`, comma-separated; empty when unknown.
    pub fn roles(&self, tid: u32) -> String {
        self.roles.get(&tid).map(|r| r.join(",")).unwrap_or_default()
    }

    fn irq(&self, irq: u32) -> &str {
        self.irqs.get(&irq).map(String::as_str).unwrap_or("")
    }
}

/// Interrupt names from `/proc/interrupts` text: `  24:  10  0  PCI-MSI 49152-edge  virtio0-input.0`.
pub fn parse_irq_names(text: &str) -> BTreeMap<u32, String> {
    let mut names = BTreeMap::new();
    for line in text.lines() {
        let Some((irq, rest)) = line.trim_start().split_once(':') else { continue };
        let Ok(irq) = irq.parse::<u32>() else { continue };
        if let Some(name) = rest.split_whitespace().last() {
            names.insert(irq, name.to_string());
        }
    }
    names
}

/// Why an intake socket refused a datagram (the errno `__udp_enqueue_schedule_skb` gave).
pub fn drop_reason(errno: u32) -> String {
    match errno {
        12 => "rcvbuf_full".to_string(),
        105 => "no_buffer_space".to_string(),
        other => format!("errno_{other}"),
    }
}

/// Interrupt names of this host (`/proc/interrupts`).
pub fn host_irq_names(proc: &Path) -> BTreeMap<u32, String> {
    parse_irq_names(&std::fs::read_to_string(proc.join("interrupts")).unwrap_or_default())
}

/// Escapes a Prometheus label value.
fn esc(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn seconds(ns: u64) -> String {
    format!("{}", ns as f64 / 1e9)
}

/// One metric family: its header, then its series.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
    started: bool,
    help: &'static str,
    kind: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &'static str, help: &'static str) -> Family<'a> {
        Family { out, name, started: false, help, kind }
    }

    fn header(&mut self) {
        if !self.started {
            let _ =
                writeln!(self.out, "# HELP {} {}\n# TYPE {} {}", self.name, self.help, self.name, self.kind);
            self.started = true;
        }
    }

    fn value(&mut self, labels: &str, value: impl std::fmt::Display) {
        self.header();
        if labels.is_empty() {
            let _ = writeln!(self.out, "{} {value}", self.name);
        } else {
            let _ = writeln!(self.out, "{}{{{labels}}} {value}", self.name);
        }
    }

    fn histogram(&mut self, labels: &str, h: &Log2Hist) {
        self.header();
        let mut cumulative = 0;
        for slot in 0..=LAST_BUCKET_SLOT {
            cumulative += h.slots[slot];
            if slot >= FIRST_BUCKET_SLOT {
                let le = seconds(Log2Hist::upper_ns(slot));
                let _ = writeln!(self.out, "{}_bucket{{{labels},le=\"{le}\"}} {cumulative}", self.name);
            }
        }
        let count = h.count();
        let _ = writeln!(self.out, "{}_bucket{{{labels},le=\"+Inf\"}} {count}", self.name);
        let _ = writeln!(self.out, "{}_sum{{{labels}}} {}", self.name, seconds(h.sum_ns));
        let _ = writeln!(self.out, "{}_count{{{labels}}} {count}", self.name);
    }
}

fn thread_labels(key: &HistKey, names: &Names) -> String {
    format!(
        "thread=\"{}\",tid=\"{}\",cpu=\"{}\",roles=\"{}\"",
        esc(names.thread(key.id)),
        key.id,
        key.cpu,
        esc(&names.roles(key.id))
    )
}

/// The Prometheus text exposition (version 0.0.4) of a snapshot. Every series is cumulative
/// since the probes were attached; histograms are in seconds.
pub fn prometheus(snapshot: &Snapshot, names: &Names) -> String {
    let mut out = String::new();
    let mut f = Family::new(&mut out, "fpn_ebpf_target_info", "gauge", "The process the probes follow.");
    f.value(
        &format!(
            "pid=\"{}\",hot_cpus=\"{}\",ports=\"{}\"",
            names.pid,
            format_cpu_list(names.hot_cpus.iter().copied()),
            names.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
        ),
        1,
    );
    let mut f = Family::new(
        &mut out,
        "fpn_ebpf_socket_queue_delay_seconds",
        "histogram",
        "Datagram on an intake socket: queued (sk_data_ready) to read by a daemon thread (sock_recv_length).",
    );
    for (key, h) in snapshot.of_kind(Kind::Queue) {
        f.histogram(&format!("{},port=\"{}\"", thread_labels(key, names), key.aux), h);
    }
    let mut f = Family::new(
        &mut out,
        "fpn_ebpf_socket_queue_bytes_total",
        "counter",
        "Bytes of those datagrams read.",
    );
    for (key, h) in snapshot.of_kind(Kind::Queue) {
        f.value(&format!("{},port=\"{}\"", thread_labels(key, names), key.aux), h.items);
    }
    let mut f = Family::new(
        &mut out,
        "fpn_ebpf_socket_drops_total",
        "counter",
        "Datagrams an intake socket refused (rcvbuf_full: its receive buffer was full).",
    );
    for (key, h) in snapshot.of_kind(Kind::Drop) {
        f.value(
            &format!("cpu=\"{}\",port=\"{}\",reason=\"{}\"", key.cpu, key.aux, drop_reason(key.id)),
            h.count(),
        );
    }
    let mut f = Family::new(
        &mut out,
        "fpn_ebpf_offcpu_seconds",
        "histogram",
        "Daemon thread switched out to switched back in; cause preempted (still runnable) or blocked.",
    );
    for (key, h) in snapshot.of_kind(Kind::OffCpu) {
        let cause = if key.aux == 1 { "preempted" } else { "blocked" };
        f.histogram(&format!("{},cause=\"{cause}\"", thread_labels(key, names)), h);
    }
    let mut f = Family::new(
        &mut out,
        "fpn_ebpf_runqueue_latency_seconds",
        "histogram",
        "Daemon thread woken (sched_wakeup) to running (sched_switch).",
    );
    for (key, h) in snapshot.of_kind(Kind::RunQueue) {
        f.histogram(&thread_labels(key, names), h);
    }
    let mut f = Family::new(
        &mut out,
        "fpn_ebpf_hardirq_seconds",
        "histogram",
        "Device interrupt handlers on the hot CPUs.",
    );
    for (key, h) in snapshot.of_kind(Kind::HardIrq) {
        f.histogram(
            &format!("cpu=\"{}\",irq=\"{}\",name=\"{}\"", key.cpu, key.id, esc(names.irq(key.id))),
            h,
        );
    }
    let mut f = Family::new(&mut out, "fpn_ebpf_softirq_seconds", "histogram", "Softirqs on the hot CPUs.");
    for (key, h) in snapshot.of_kind(Kind::SoftIrq) {
        f.histogram(&format!("cpu=\"{}\",vec=\"{}\"", key.cpu, softirq_name(key.id)), h);
    }
    syscall_families(&mut out, snapshot, names);
    intruder_families(&mut out, snapshot);
    let mut f = Family::new(
        &mut out,
        "fpn_ebpf_samples_lost_total",
        "counter",
        "Samples lost to a full histogram map.",
    );
    f.value("", snapshot.samples_lost_total);
    let mut f = Family::new(
        &mut out,
        "fpn_ebpf_socket_queued_total",
        "counter",
        "Datagrams stamped when queued on an intake socket.",
    );
    f.value("", snapshot.queued_total);
    let mut f = Family::new(
        &mut out,
        "fpn_ebpf_socket_unmatched_reads_total",
        "counter",
        "Datagrams read with no stamp (queued before the probes were attached, or read before the stamp).",
    );
    f.value("", snapshot.unmatched_total);
    out
}

const SYSCALL_KINDS: [Kind; 3] = [Kind::Recvmmsg, Kind::Sendmmsg, Kind::Sendmsg];

fn syscall_families(out: &mut String, snapshot: &Snapshot, names: &Names) {
    let mut f = Family::new(
        out,
        "fpn_ebpf_syscall_seconds",
        "histogram",
        "recvmmsg, sendmmsg and sendmsg of the daemon's threads, entry to exit; outcome ok, again (EAGAIN) or error.",
    );
    for kind in SYSCALL_KINDS {
        for (key, h) in snapshot.of_kind(kind) {
            let syscall = kind.syscall().expect("a syscall kind");
            f.histogram(
                &format!(
                    "{},syscall=\"{syscall}\",outcome=\"{}\"",
                    thread_labels(key, names),
                    outcome_name(key.aux)
                ),
                h,
            );
        }
    }
    let mut f = Family::new(
        out,
        "fpn_ebpf_syscall_messages_total",
        "counter",
        "Messages returned by recvmmsg and sendmmsg.",
    );
    for kind in [Kind::Recvmmsg, Kind::Sendmmsg] {
        for (key, h) in snapshot.of_kind(kind).filter(|(k, _)| k.aux == 0) {
            f.value(
                &format!(
                    "{},syscall=\"{}\"",
                    thread_labels(key, names),
                    kind.syscall().expect("a syscall kind")
                ),
                h.items,
            );
        }
    }
    let mut f = Family::new(out, "fpn_ebpf_syscall_bytes_total", "counter", "Bytes returned by sendmsg.");
    for (key, h) in snapshot.of_kind(Kind::Sendmsg).filter(|(k, _)| k.aux == 0) {
        f.value(&format!("{},syscall=\"sendmsg\"", thread_labels(key, names)), h.items);
    }
}

fn intruder_families(out: &mut String, snapshot: &Snapshot) {
    let label = |i: &crate::Intruder| format!("cpu=\"{}\",comm=\"{}\"", i.cpu, esc(&i.comm));
    let mut f = Family::new(
        out,
        "fpn_ebpf_cpu_other_runs_total",
        "counter",
        "Other tasks' turns on a hot CPU, by command.",
    );
    for i in &snapshot.intruders {
        f.value(&label(i), i.runs);
    }
    let mut f = Family::new(
        out,
        "fpn_ebpf_cpu_other_seconds_total",
        "counter",
        "Other tasks' time on a hot CPU, by command.",
    );
    for i in &snapshot.intruders {
        f.value(&label(i), seconds(i.run_ns));
    }
    let mut f = Family::new(
        out,
        "fpn_ebpf_cpu_other_preemptions_total",
        "counter",
        "Times another task took a hot CPU from a runnable daemon thread, by command.",
    );
    for i in &snapshot.intruders {
        f.value(&label(i), i.preemptions);
    }
}

fn quantiles(h: &Log2Hist) -> String {
    let q = |v: Option<u64>| v.map(human_ns).unwrap_or_else(|| "-".into());
    format!(
        "{:>9} {:>9} {:>9} {:>9}",
        q(h.quantile_ns(0.5)),
        q(h.quantile_ns(0.99)),
        q(h.max_ns()),
        human_ns(h.sum_ns)
    )
}

const QUANTILE_HEADER: &str = "      p50       p99       max     total";

/// The terminal view: one table per probe, cumulative since attach. Quantiles are log2 slot
/// upper edges (`ebpf/README.md`, "Reading the numbers").
pub fn view(snapshot: &Snapshot, names: &Names, attached_s: f64) -> String {
    let mut out = String::new();
    let ports: Vec<String> = names.ports.iter().map(u16::to_string).collect();
    let _ = writeln!(
        out,
        "fpn probe: pid {}, hot CPUs {}, intake ports {}, attached {attached_s:.1} s (quantiles are log2 bucket upper edges)",
        names.pid,
        format_cpu_list(names.hot_cpus.iter().copied()),
        if ports.is_empty() { "none".to_string() } else { ports.join(",") },
    );
    if !names.roles.is_empty() {
        let _ = writeln!(out, "\nroles by thread (threads.json)");
        for (tid, roles) in &names.roles {
            let _ = writeln!(out, "{:<16} {:>6}  {}", names.thread(*tid), tid, roles.join(" "));
        }
    }
    let thread_row = |key: &HistKey| format!("{:<16} {:>6} {:>3}", names.thread(key.id), key.id, key.cpu);
    let _ = writeln!(out, "\nsocket queueing delay (queued -> read)     {:>8} {QUANTILE_HEADER}", "count");
    let _ = writeln!(out, "{:<16} {:>6} {:>3} {:>5}", "thread", "tid", "cpu", "port");
    for (key, h) in snapshot.of_kind(Kind::Queue) {
        let _ = writeln!(out, "{} {:>5} {:>12} {}", thread_row(key), key.aux, h.count(), quantiles(h));
    }
    for (key, h) in snapshot.of_kind(Kind::Drop) {
        let _ = writeln!(
            out,
            "  dropped on cpu {} port {}: {} ({})",
            key.cpu,
            key.aux,
            h.count(),
            drop_reason(key.id)
        );
    }
    let _ = writeln!(out, "\noff-CPU time of daemon threads             {:>8} {QUANTILE_HEADER}", "count");
    for (key, h) in snapshot.of_kind(Kind::OffCpu) {
        let cause = if key.aux == 1 { "preempted" } else { "blocked" };
        let _ = writeln!(out, "{} {:<9} {:>8} {}", thread_row(key), cause, h.count(), quantiles(h));
    }
    let _ = writeln!(out, "\nrun-queue latency (wakeup -> running)      {:>8} {QUANTILE_HEADER}", "count");
    for (key, h) in snapshot.of_kind(Kind::RunQueue) {
        let _ = writeln!(out, "{} {:>18} {}", thread_row(key), h.count(), quantiles(h));
    }
    let _ =
        writeln!(out, "\nsyscalls                                   {:>8} {QUANTILE_HEADER}  items", "count");
    for kind in SYSCALL_KINDS {
        for (key, h) in snapshot.of_kind(kind) {
            let what = format!("{} {}", kind.syscall().expect("a syscall kind"), outcome_name(key.aux));
            let _ = writeln!(
                out,
                "{} {:<14} {:>3} {} {:>6}",
                thread_row(key),
                what,
                h.count(),
                quantiles(h),
                h.items
            );
        }
    }
    let _ = writeln!(out, "\nirq time on hot CPUs                       {:>8} {QUANTILE_HEADER}", "count");
    for (key, h) in snapshot.of_kind(Kind::HardIrq) {
        let what = format!("hardirq {} {}", key.id, names.irq(key.id));
        let _ = writeln!(out, "cpu {:<3} {:<30} {:>10} {}", key.cpu, what, h.count(), quantiles(h));
    }
    for (key, h) in snapshot.of_kind(Kind::SoftIrq) {
        let what = format!("softirq {}", softirq_name(key.id));
        let _ = writeln!(out, "cpu {:<3} {:<30} {:>10} {}", key.cpu, what, h.count(), quantiles(h));
    }
    let _ =
        writeln!(out, "\nother tasks on hot CPUs               runs       time  preempted a daemon thread");
    for i in snapshot.intruders.iter().take(20) {
        let _ = writeln!(
            out,
            "cpu {:<3} {:<16} {:>14} {:>10} {:>10}",
            i.cpu,
            i.comm,
            i.runs,
            human_ns(i.run_ns),
            i.preemptions
        );
    }
    if snapshot.samples_lost_total > 0 {
        let _ = writeln!(out, "\n{} samples lost: the histogram map is full", snapshot.samples_lost_total);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Intruder;

    fn hist(samples: &[u64], items: u64) -> Log2Hist {
        let mut h = Log2Hist::default();
        for &ns in samples {
            h.record(ns);
        }
        h.items = items;
        h
    }

    fn key(kind: u32, cpu: u32, id: u32, aux: u32) -> HistKey {
        HistKey { kind, cpu, id, aux }
    }

    fn sample() -> (Snapshot, Names) {
        let mut snapshot = Snapshot {
            hists: vec![
                (key(1, 0, 701, 4433), hist(&[3_000, 5_000, 70_000], 300)),
                (key(2, 1, 12, 4433), hist(&[0], 0)),
                (key(3, 0, 701, 1), hist(&[20_000], 0)),
                (key(3, 0, 701, 0), hist(&[200_000, 300_000], 0)),
                (key(4, 0, 701, 0), hist(&[2_000], 0)),
                (key(5, 1, 24, 0), hist(&[900], 0)),
                (key(6, 0, 3, 0), hist(&[4_000], 0)),
                (key(7, 0, 701, 0), hist(&[1_500], 3)),
                (key(7, 0, 701, 1), hist(&[400, 500], 0)),
                (key(9, 0, 701, 0), hist(&[8_000], 1200)),
            ],
            intruders: vec![Intruder {
                cpu: 0,
                comm: "kworker/0:1".into(),
                runs: 4,
                run_ns: 12_000,
                preemptions: 1,
            }],
            samples_lost_total: 0,
            queued_total: 3,
            unmatched_total: 0,
        };
        snapshot.sort();
        let names = Names {
            pid: 700,
            hot_cpus: BTreeSet::from([0, 1]),
            ports: BTreeSet::from([4433]),
            threads: BTreeMap::from([(701, "fpn-cpu0".to_string())]),
            roles: BTreeMap::from([(701, vec!["intake0".to_string(), "builder0".to_string()])]),
            irqs: BTreeMap::from([(24, "virtio0-input.0".to_string())]),
        };
        (snapshot, names)
    }

    /// The value of the series `name{labels}` (labels exactly as rendered).
    fn series(text: &str, name_and_labels: &str) -> Option<String> {
        text.lines().find_map(|l| {
            l.strip_prefix(name_and_labels).and_then(|rest| rest.strip_prefix(' ')).map(str::to_string)
        })
    }

    #[test]
    fn prometheus_histograms_are_cumulative_in_seconds_with_every_label() {
        let (snapshot, names) = sample();
        let text = prometheus(&snapshot, &names);
        let q = "fpn_ebpf_socket_queue_delay_seconds";
        let labels = "thread=\"fpn-cpu0\",tid=\"701\",cpu=\"0\",roles=\"intake0,builder0\",port=\"4433\"";
        // 3 µs and 5 µs fall in slots 11 and 12 (le 4.096 µs and 8.192 µs), 70 µs in slot 16.
        assert_eq!(
            series(&text, &format!("{q}_bucket{{{labels},le=\"0.000001024\"}}")).as_deref(),
            Some("0")
        );
        assert_eq!(
            series(&text, &format!("{q}_bucket{{{labels},le=\"0.000004096\"}}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            series(&text, &format!("{q}_bucket{{{labels},le=\"0.000008192\"}}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            series(&text, &format!("{q}_bucket{{{labels},le=\"0.000131072\"}}")).as_deref(),
            Some("3")
        );
        assert_eq!(series(&text, &format!("{q}_bucket{{{labels},le=\"+Inf\"}}")).as_deref(), Some("3"));
        assert_eq!(series(&text, &format!("{q}_count{{{labels}}}")).as_deref(), Some("3"));
        assert_eq!(series(&text, &format!("{q}_sum{{{labels}}}")).as_deref(), Some("0.000078"));
        assert_eq!(
            series(&text, &format!("fpn_ebpf_socket_queue_bytes_total{{{labels}}}")).as_deref(),
            Some("300")
        );
        assert_eq!(
            series(&text, "fpn_ebpf_socket_drops_total{cpu=\"1\",port=\"4433\",reason=\"rcvbuf_full\"}")
                .as_deref(),
            Some("1")
        );
        let t = "thread=\"fpn-cpu0\",tid=\"701\",cpu=\"0\",roles=\"intake0,builder0\"";
        assert_eq!(
            series(&text, &format!("fpn_ebpf_offcpu_seconds_count{{{t},cause=\"blocked\"}}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            series(&text, &format!("fpn_ebpf_offcpu_seconds_count{{{t},cause=\"preempted\"}}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            series(&text, &format!("fpn_ebpf_runqueue_latency_seconds_count{{{t}}}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            series(&text, "fpn_ebpf_hardirq_seconds_count{cpu=\"1\",irq=\"24\",name=\"virtio0-input.0\"}")
                .as_deref(),
            Some("1")
        );
        assert_eq!(
            series(&text, "fpn_ebpf_softirq_seconds_count{cpu=\"0\",vec=\"net_rx\"}").as_deref(),
            Some("1")
        );
        let s = "fpn_ebpf_syscall_seconds_count";
        assert_eq!(
            series(&text, &format!("{s}{{{t},syscall=\"recvmmsg\",outcome=\"ok\"}}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            series(&text, &format!("{s}{{{t},syscall=\"recvmmsg\",outcome=\"again\"}}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            series(&text, &format!("fpn_ebpf_syscall_messages_total{{{t},syscall=\"recvmmsg\"}}")).as_deref(),
            Some("3")
        );
        assert_eq!(
            series(&text, &format!("fpn_ebpf_syscall_bytes_total{{{t},syscall=\"sendmsg\"}}")).as_deref(),
            Some("1200")
        );
        assert_eq!(
            series(&text, "fpn_ebpf_cpu_other_runs_total{cpu=\"0\",comm=\"kworker/0:1\"}").as_deref(),
            Some("4")
        );
        assert_eq!(
            series(&text, "fpn_ebpf_cpu_other_seconds_total{cpu=\"0\",comm=\"kworker/0:1\"}").as_deref(),
            Some("0.000012")
        );
        assert_eq!(
            series(&text, "fpn_ebpf_target_info{pid=\"700\",hot_cpus=\"0-1\",ports=\"4433\"}").as_deref(),
            Some("1")
        );
        assert_eq!(series(&text, "fpn_ebpf_socket_queued_total").as_deref(), Some("3"));
        // One HELP and TYPE per family, before its first series.
        assert_eq!(text.matches("# TYPE fpn_ebpf_offcpu_seconds histogram").count(), 1);
        assert!(!text.contains("{}"), "no empty label sets");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_view_has_one_table_per_probe() {
        let (snapshot, names) = sample();
        let text = view(&snapshot, &names, 2.0);
        for heading in [
            "socket queueing delay",
            "off-CPU time",
            "run-queue latency",
            "syscalls",
            "irq time",
            "other tasks",
        ] {
            assert!(text.contains(heading), "{heading} in\n{text}");
        }
        assert!(text.contains("pid 700, hot CPUs 0-1, intake ports 4433"), "{text}");
        assert!(
            text.contains("roles by thread (threads.json)\nfpn-cpu0            701  intake0 builder0\n"),
            "{text}"
        );
        let queue = text.lines().find(|l| l.starts_with("fpn-cpu0") && l.contains("4433")).unwrap();
        assert!(queue.contains(" 3 ") && queue.contains("8.2 µs") && queue.contains("131.1 µs"), "{queue}");
        assert!(text.contains("dropped on cpu 1 port 4433: 1 (rcvbuf_full)"), "{text}");
        assert!(text.contains("hardirq 24 virtio0-input.0"), "{text}");
        assert!(text.contains("kworker/0:1"), "{text}");
    }

    #[test]
    fn host_names_parse() {
        let interrupts = "           CPU0       CPU1\n  24:         10          0   PCI-MSI 49152-edge      virtio0-input.0\nNMI:          0          0   Non-maskable interrupts\n";
        assert_eq!(parse_irq_names(interrupts), BTreeMap::from([(24, "virtio0-input.0".to_string())]));
        assert_eq!(drop_reason(12), "rcvbuf_full");
        assert_eq!(drop_reason(7), "errno_7");
    }
}
