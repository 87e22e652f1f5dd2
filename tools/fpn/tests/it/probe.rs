//! `fpn probe` against the real `flashpointd` (as root, as CI runs): the probes attach to the
//! daemon found through its data dir, count exactly the datagrams its intake reads, see its
//! threads switch and wake on its CPUs, serve all of it on their own `/metrics`, and leave
//! nothing in the kernel once the probe exits. Not root: skipped, loudly.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::fpn;
use super::real_daemon::{Daemon, scratch, text};

const DATAGRAMS: u64 = 1000;

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    uid.split_whitespace().nth(1) == Some("0")
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// The sum of every series of `name` whose labels contain all of `with`.
fn sum(metrics: &str, name: &str, with: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            (n == name && with.iter().all(|w| labels.contains(w))).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Polls `f` until it holds or `limit` passes; the last value either way.
fn wait_until(limit: Duration, mut f: impl FnMut() -> (bool, String)) -> (bool, String) {
    let deadline = Instant::now() + limit;
    loop {
        let (ok, last) = f();
        if ok || Instant::now() >= deadline {
            return (ok, last);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `fpn probe` as a child: its stderr lines come through the channel.
fn start_probe(data: &str, out: &std::path::Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fpn"))
        .args(["probe", "--data-dir", data, "--listen", "127.0.0.1:0", "--interval", "0.2", "--plain"])
        .args(["--duration", "120"])
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fpn probe starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

#[test]
fn fpn_probe_counts_the_daemons_datagrams_and_leaves_nothing_attached() {
    if !is_root() {
        eprintln!(
            "\n\n*** SKIPPED fpn_probe_counts_the_daemons_datagrams_and_leaves_nothing_attached: not root \
             (loading eBPF needs CAP_BPF and CAP_PERFMON; CI runs as root) ***\n"
        );
        return;
    }
    if !fpn_ebpf::BUILT_WITH_CLANG && std::env::var_os("CI").is_none() {
        eprintln!(
            "\n\n*** SKIPPED fpn_probe_counts_the_daemons_datagrams_and_leaves_nothing_attached: fpn was built \
             without clang (CI installs it and fails here instead) ***\n"
        );
        return;
    }
    let dir = scratch("probe");
    let daemon = Daemon::start_with(&dir, "127.0.0.1:0", "\n[prover]\nenabled = false\n");
    let data = daemon.data();
    let d = data.to_str().unwrap();
    let admin = std::fs::read_to_string(data.join("admin.addr")).unwrap().trim().to_string();
    let datagrams =
        || sum(&http_get(&admin, "/metrics"), "fpn_quic_udp_datagrams_total", &["shard=\"intake0\""]);
    let before = datagrams();

    let (mut probe, lines) = start_probe(d, &dir.join("probe.out"));
    let attached = lines.recv_timeout(Duration::from_secs(60)).expect("fpn probe says it attached");
    assert!(attached.starts_with("fpn probe: attached 16 programs to pid "), "{attached}");
    assert!(attached.contains(&format!("pid {} (flashpointd", daemon.pid())), "{attached}");
    assert!(
        attached.contains("roles from threads.json"),
        "found by its pid file, labelled by its thread map: {attached}"
    );
    let metrics_addr =
        attached.split("metrics on http://").nth(1).unwrap().trim_end_matches("/metrics").to_string();

    // Garbage datagrams (the fixed bit clear): the intake reads and counts each one, and
    // answers none, so every datagram is one recvmmsg message and one queueing sample.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..DATAGRAMS {
        socket.send_to(&[0u8; 64], daemon.quic_addr()).unwrap();
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let (ok, seen) = wait_until(Duration::from_secs(20), || {
        let n = datagrams() - before;
        (n >= DATAGRAMS as f64, format!("{n}"))
    });
    assert!(ok, "the daemon read {seen} of {DATAGRAMS} datagrams");
    let (ok, metrics) = wait_until(Duration::from_secs(20), || {
        let m = http_get(&metrics_addr, "/metrics");
        let read = sum(&m, "fpn_ebpf_syscall_messages_total", &["syscall=\"recvmmsg\""]);
        (read >= DATAGRAMS as f64, m)
    });
    assert!(ok, "the probes saw fewer recvmmsg messages than {DATAGRAMS}:\n{metrics}");

    let hot: Vec<String> = attached
        .split("hot CPUs ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .map(|list| {
            fpn_ebpf::target::parse_cpu_list(list).unwrap().iter().map(|c| format!("cpu=\"{c}\"")).collect()
        })
        .unwrap();
    let queue = sum(&metrics, "fpn_ebpf_socket_queue_delay_seconds_count", &[]);
    let unmatched = sum(&metrics, "fpn_ebpf_socket_unmatched_reads_total", &[]);
    assert_eq!(
        sum(&metrics, "fpn_ebpf_socket_queued_total", &[]),
        DATAGRAMS as f64,
        "one stamp per datagram queued"
    );
    assert_eq!(queue + unmatched, DATAGRAMS as f64, "one sample per datagram read:\n{metrics}");
    assert!(unmatched <= DATAGRAMS as f64 / 20.0, "unmatched {unmatched}");
    assert_eq!(sum(&metrics, "fpn_ebpf_socket_queue_bytes_total", &[]), 64.0 * queue);
    assert_eq!(sum(&metrics, "fpn_ebpf_socket_drops_total", &[]), 0.0);
    assert_eq!(sum(&metrics, "fpn_ebpf_syscall_messages_total", &["syscall=\"recvmmsg\""]), DATAGRAMS as f64);
    assert!(
        sum(&metrics, "fpn_ebpf_syscall_seconds_count", &["syscall=\"recvmmsg\"", "outcome=\"again\""]) > 0.0
    );
    let on_hot = |name: &str| hot.iter().map(|cpu| sum(&metrics, name, &[cpu.as_str()])).sum::<f64>();
    assert!(on_hot("fpn_ebpf_offcpu_seconds_count") > 0.0, "the daemon's threads switch on its CPUs");
    assert!(on_hot("fpn_ebpf_runqueue_latency_seconds_count") > 0.0, "its parked threads are woken");
    assert!(on_hot("fpn_ebpf_softirq_seconds_count") > 0.0, "softirqs run on its CPUs");
    // Device interrupts on the daemon's CPUs are not asserted: an idle VM may have none in
    // these seconds. The series exist when they happen.
    assert!(metrics.contains("fpn_ebpf_target_info{pid=\""), "{metrics}");
    // The intake's reads are labelled with the roles of the thread that made them.
    assert!(
        sum(&metrics, "fpn_ebpf_syscall_messages_total", &["syscall=\"recvmmsg\"", "intake0"])
            == DATAGRAMS as f64,
        "recvmmsg of the thread running intake0:\n{metrics}"
    );

    // A QUIC session: the daemon now answers, with sendmsg (GSO).
    let out = fpn(&[
        "submit",
        "--data-dir",
        d,
        "--client-id",
        "7",
        "--profit",
        "100",
        "--resource",
        "a",
        "--timeout",
        "30",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (ok, metrics) = wait_until(Duration::from_secs(10), || {
        let m = http_get(&metrics_addr, "/metrics");
        (sum(&m, "fpn_ebpf_syscall_bytes_total", &["syscall=\"sendmsg\""]) > 0.0, m)
    });
    assert!(ok, "no sendmsg of the daemon seen:\n{metrics}");

    let status = Command::new("kill").args(["-INT", &probe.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = probe.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "fpn probe did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<String> = lines.try_iter().collect();
    assert_eq!(exit.code(), Some(0), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("SIGINT; detached 16 programs, none left in the kernel")),
        "{rest:?}"
    );
    let view = std::fs::read_to_string(dir.join("probe.out")).unwrap();
    assert!(view.contains("socket queueing delay") && view.contains("fpn-cpu"), "{view}");
    // The loader's own check, from this process, and bpftool's where it is installed.
    assert_eq!(fpn_ebpf::still_loaded(&[]).unwrap(), Vec::<String>::new());
    if let Ok(out) = Command::new("bpftool").args(["prog", "list"]).output() {
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(!listing.contains(" name fpn_"), "bpftool still lists probes:\n{listing}");
    }
}

#[test]
fn fpn_probe_without_privileges_names_what_is_missing() {
    if !is_root() {
        eprintln!(
            "\n\n*** SKIPPED fpn_probe_without_privileges_names_what_is_missing: not root (it drops root itself) ***\n"
        );
        return;
    }
    let Ok(setpriv) = Command::new("setpriv").arg("--help").output() else {
        panic!("setpriv (util-linux) is missing");
    };
    assert!(setpriv.status.success());
    // A copy nobody may execute wherever the build tree is.
    let bin = std::env::temp_dir().join(format!("fpn-unprivileged-{}", std::process::id()));
    std::fs::copy(env!("CARGO_BIN_EXE_fpn"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // This process as the target: an unprivileged prober may read its threads but not load.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(&bin)
        .args(["probe", "--pid", &std::process::id().to_string(), "--cpus", "0", "--listen", "off"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&bin);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("loading eBPF probes needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN; run as root)"),
        "{err}"
    );
}
