//! Crash tests of the input log (`docs/log.md`): the daemon killed with SIGKILL at random
//! moments while clients send, restarted on the same data dir each time; a torn tail; a
//! corrupt batch in the middle of the log.
//!
//! What must hold across every crash: every record that got an `accepted` receipt is in
//! exactly one published window (its block: the intents conflict with nothing, so each
//! accepted one makes its block), a (client, nonce) is accepted at most once, sequence ids
//! and window ids only increase, and `fpn replay` finds every rebuilt window equal to its
//! journal line.
//!
//! `FPN_CRASH_SEED` (else the clock) seeds the kill moments and the load, and is printed;
//! `FPN_CRASH_CYCLES` (default 20) sets the number of kills; `FPN_CRASH_BIN` runs another
//! build of the daemon (`target/release/flashpointd` by hand; CI runs the test build).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fpn_client::{BlockingClient, ClientConfig, Event, Fingerprint, Trust, Via};
use fpn_engine::SplitMix64;
use fpn_wire::{FrameWriter, Intent};

use crate::daemon::{allowed_cpus, expand_journal, http, scratch_dir};

fn daemon_bin() -> PathBuf {
    std::env::var_os("FPN_CRASH_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_flashpointd")), PathBuf::from)
}

fn config(data: &Path) -> String {
    let cpus = allowed_cpus();
    let (hot, rest) = (cpus[0], *cpus.last().unwrap());
    format!(
        "[engine]\nprofile = \"test\"\ndata_dir = {dir:?}\n\n[admin]\naddr = \"127.0.0.1:0\"\n\n\
         [quic]\nlisten = \"127.0.0.1:0\"\nrate_per_s = 0\n\n[window]\nduration_ms = 10\n\n\
         [cores]\nintake = [{hot}]\nbuilder = [{hot}]\nmerger = [{rest}]\nprover = [{rest}]\n\
         journal = [{rest}]\nlog = [{rest}]\nadmin = [{rest}]\n\n[prover]\nenabled = false\n\n\
         [log]\nsegment_bytes_max = 1048576\ngroup_bytes_max = 65536\n",
        dir = data.display().to_string(),
    )
}

/// A daemon started on `dir` (its `data/`), ready; killed on drop (a failing test).
struct Run {
    child: Option<Child>,
    quic: SocketAddr,
    admin: String,
}

impl Run {
    fn start(dir: &Path, cycle: usize) -> Run {
        Run::start_text(dir, cycle, &config(&dir.join("data")), &[])
    }

    /// With config `text` and extra environment `env`; stderr to `stderr-<cycle>.log`.
    fn start_text(dir: &Path, cycle: usize, text: &str, env: &[(&str, &str)]) -> Run {
        let data = dir.join("data");
        for f in ["admin.addr", "quic.addr"] {
            let _ = std::fs::remove_file(data.join(f));
        }
        let conf = dir.join("flashpointd.toml");
        std::fs::write(&conf, text).unwrap();
        let log = dir.join(format!("stderr-{cycle}.log"));
        let child = Command::new(daemon_bin())
            .arg("--config")
            .arg(&conf)
            .env_clear()
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("flashpointd starts");
        // Killed on drop if a check below fails.
        let mut run = Run { child: Some(child), quic: "0.0.0.0:0".parse().unwrap(), admin: String::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        let read = |f: &str| std::fs::read_to_string(data.join(f)).ok().filter(|t| t.ends_with('\n'));
        let (admin, quic) = loop {
            if let Some(status) = run.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "cycle {cycle}: flashpointd exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: no addresses: {}",
                std::fs::read_to_string(&log).unwrap()
            );
            if let (Some(a), Some(q)) = (read("admin.addr"), read("quic.addr")) {
                break (a.trim().to_string(), q.trim().parse().unwrap());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        while http(&admin, "GET", "/health/ready", b"").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: not ready: {}",
                std::fs::read_to_string(&log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        (run.quic, run.admin) = (quic, admin);
        run
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn terminate(mut self) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap().code()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn intent_frame(client: u64, nonces: &[u64]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, 1_100);
    for &nonce in nonces {
        // Keys of its own: every accepted intent makes its block.
        let keys = [client << 40 | nonce << 1, client << 40 | nonce << 1 | 1];
        let i =
            Intent { client_id: client, nonce, sent_ns: 1, profit: 1 + nonce % 97, priority: 0, keys: &keys };
        w.push_intent(&i).unwrap();
    }
    w.finish();
    buf
}

/// What the clients were told, across every cycle.
#[derive(Default)]
struct Told {
    /// (client, nonce) → (seq, window, cycle) of its `accepted` receipt.
    accepted: HashMap<(u64, u64), (u64, u64, usize)>,
    /// The largest seq and window id accepted before each cycle.
    seq_max: u64,
    window_max: u64,
}

impl Told {
    fn receipt(&mut self, cycle: usize, r: &fpn_wire::Receipt) {
        if r.status.is_err() || r.for_kind != Some(fpn_wire::Kind::Intent) {
            return;
        }
        let key = (r.client_id, r.nonce);
        if let Some(prev) = self.accepted.insert(key, (r.seq, r.window_id, cycle)) {
            panic!(
                "(client {}, nonce {}) accepted twice: {prev:?} and cycle {cycle} seq {}",
                key.0, key.1, r.seq
            );
        }
        assert!(
            r.seq > self.seq_max,
            "cycle {cycle}: seq {} not above the earlier runs' {}",
            r.seq,
            self.seq_max
        );
        assert!(
            r.window_id > self.window_max,
            "cycle {cycle}: window {} not above the earlier runs' {}",
            r.window_id,
            self.window_max
        );
    }

    fn end_cycle(&mut self, cycle: usize) {
        for &(seq, window, c) in self.accepted.values() {
            if c == cycle {
                self.seq_max = self.seq_max.max(seq);
                self.window_max = self.window_max.max(window);
            }
        }
    }
}

/// One cycle: clients send until the kill at `kill_after`; receipts are recorded.
fn load(
    run: &Run,
    pin: [u8; 32],
    cycle: usize,
    rng: &mut SplitMix64,
    next_nonce: &mut [u64],
    told: &mut Told,
) {
    let clients: Vec<(u64, BlockingClient)> = (1..=next_nonce.len() as u64)
        .map(|id| {
            let mut c = ClientConfig::new(run.quic, Trust::Pin(Fingerprint(pin)), id.to_string());
            c.reconnect = None;
            (id, BlockingClient::connect(c).expect("connects"))
        })
        .collect();
    let kill_after = Duration::from_millis(50 + rng.next_u64() % 450);
    let start = Instant::now();
    while start.elapsed() < kill_after {
        for (k, (id, c)) in clients.iter().enumerate() {
            // Mostly new nonces; now and then one already sent (a replay, or a retry of a
            // record that had no receipt): never accepted twice.
            let n = 1 + rng.next_u64() % 8;
            let mut nonces: Vec<u64> = (0..n).map(|j| next_nonce[k] + j).collect();
            next_nonce[k] += n;
            if rng.next_u64().is_multiple_of(4) && next_nonce[k] > 20 {
                nonces.push(1 + rng.next_u64() % (next_nonce[k] - 1));
            }
            let via = if rng.next_u64().is_multiple_of(2) { Via::Datagram } else { Via::Stream };
            let _ = c.send_frame(&intent_frame(*id, &nonces), via);
        }
        for (_, c) in &clients {
            while let Some(e) = c.try_recv_event() {
                if let Event::Receipt { receipt, .. } = e {
                    told.receipt(cycle, &receipt);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Kill it now: receipts already on their way are still read below.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(run.pid(), libc::SIGKILL) };
    let drain_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < drain_until {
        for (_, c) in &clients {
            while let Some(e) = c.try_recv_event() {
                if let Event::Receipt { receipt, .. } = e {
                    told.receipt(cycle, &receipt);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for (_, c) in clients {
        c.close();
    }
}

fn seed() -> u64 {
    let seed = std::env::var("FPN_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash test seed: FPN_CRASH_SEED={seed}");
    seed
}

/// Every accepted intent in exactly one journaled block; window ids contiguous and each
/// once; `fpn replay` (the library under it) finds no mismatch.
fn check_journal_and_replay(dir: &Path, told: &Told) {
    let data = dir.join("data");
    let mut text = String::new();
    for f in flashpointd::journal_files::files(&data).unwrap() {
        text.push_str(&std::fs::read_to_string(f).unwrap());
    }
    let windows = expand_journal(&text);
    let mut in_blocks: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    for (i, w) in windows.iter().enumerate() {
        let id = w["window_id"].as_u64().unwrap();
        assert_eq!(id, i as u64 + 1, "window ids contiguous, each once");
        for e in w["block"]["entries"].as_array().unwrap() {
            let entry = in_blocks.entry(e["seq"].as_u64().unwrap()).or_insert((id, 0));
            entry.1 += 1;
        }
    }
    for (&(client, nonce), &(seq, window, cycle)) in &told.accepted {
        let found = in_blocks.get(&seq);
        assert_eq!(
            found.map(|f| f.1),
            Some(1),
            "accepted (client {client}, nonce {nonce}) seq {seq} window {window} (cycle {cycle}) in exactly one block"
        );
        assert_eq!(found.unwrap().0, window, "seq {seq} in the window its receipt named");
    }
    let loaded = flashpointd::load(
        &flashpointd::Inputs {
            file: Some((dir.join("flashpointd.toml"), config(&data))),
            ..flashpointd::Inputs::default()
        },
        &flashpointd::CpuSet::host(),
    )
    .unwrap();
    let report = flashpointd::replay::replay(&loaded.settings, 1, 0, true).unwrap();
    assert_eq!(report.mismatches, 0, "replay mismatch: {:?}", report.first_mismatch);
    assert!(report.rebuilt > 0 && report.matched == report.rebuilt - report.not_journaled.len() as u64);
    assert!(report.not_in_log.is_empty(), "journaled windows the log lacks: {:?}", report.not_in_log);
}

#[test]
fn kill_9_at_random_moments_loses_no_accepted_record() {
    let seed = seed();
    let cycles: usize = std::env::var("FPN_CRASH_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut rng = SplitMix64::new(seed);
    let dir = scratch_dir("crash");
    let mut told = Told::default();
    let mut next_nonce = vec![1u64; 3];
    let mut pin = None;
    for cycle in 0..cycles {
        // Both ways of waiting for a group commit (`log.sync`, docs/log.md): every other
        // cycle the log role sleeps in io_uring_enter for each append.
        let sync = if cycle % 2 == 0 { "poll" } else { "wait" };
        let run = Run::start_text(&dir, cycle, &config(&dir.join("data")), &[("FPN_LOG_SYNC", sync)]);
        let pin = *pin.get_or_insert_with(|| {
            let text = std::fs::read_to_string(dir.join("data/tls/cert.sha256")).unwrap();
            fpn_quic::tls::parse_pin(&text).unwrap()
        });
        load(&run, pin, cycle, &mut rng, &mut next_nonce, &mut told);
        run.kill9();
        told.end_cycle(cycle);
    }
    // A last start recovers the last crash; a clean stop publishes everything.
    let run = Run::start(&dir, cycles);
    assert_eq!(run.terminate(), Some(0));
    let accepted = told.accepted.len();
    eprintln!("crash test: {cycles} kills, {accepted} records accepted");
    assert!(accepted > 100, "the load got records accepted: {accepted}");
    check_journal_and_replay(&dir, &told);
}

/// The newest segment of `data`'s log.
fn newest_segment(data: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> =
        std::fs::read_dir(data.join("log")).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    segs.pop().unwrap()
}

/// Runs a daemon on `dir` with some accepted records, then stops it with SIGKILL.
fn crashed_with_records(dir: &Path) -> Told {
    let mut told = Told::default();
    let run = Run::start(dir, 0);
    let pin = fpn_quic::tls::parse_pin(&std::fs::read_to_string(dir.join("data/tls/cert.sha256")).unwrap())
        .unwrap();
    let mut c = ClientConfig::new(run.quic, Trust::Pin(Fingerprint(pin)), "5");
    c.reconnect = None;
    let c = BlockingClient::connect(c).unwrap();
    for first in [1u64, 11] {
        let nonces: Vec<u64> = (first..first + 10).collect();
        c.send_frame(&intent_frame(5, &nonces), Via::Stream).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = 0;
    while got < 20 {
        assert!(Instant::now() < deadline, "{got} receipts");
        if let Some(Event::Receipt { receipt, .. }) = c.recv_event_timeout(Duration::from_millis(50)) {
            told.receipt(0, &receipt);
            got += 1;
        }
    }
    c.close();
    run.kill9();
    told.end_cycle(0);
    told
}

/// Segments rotate under load (a 1 MiB `log.segment_bytes_max`, the file created off the
/// executor) while receipts keep coming; after a kill -9 every accepted record is in one
/// published window, and the log reads back across every segment.
#[test]
fn segments_rotate_under_load_and_recovery_reads_across_them() {
    let dir = scratch_dir("crash-rotate");
    let mut told = Told::default();
    // `log.sync = wait` (the kill -9 test alternates both): rotation while each append is
    // waited for inline.
    let run = Run::start_text(&dir, 0, &config(&dir.join("data")), &[("FPN_LOG_SYNC", "wait")]);
    let pin = fpn_quic::tls::parse_pin(&std::fs::read_to_string(dir.join("data/tls/cert.sha256")).unwrap())
        .unwrap();
    let mut c = ClientConfig::new(run.quic, Trust::Pin(Fingerprint(pin)), "6");
    c.reconnect = None;
    let c = BlockingClient::connect(c).unwrap();
    // About 90 bytes of log per intent: 40,000 intents fill three 1 MiB segments.
    let (frames, per_frame) = (2_500u64, 16u64);
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for f in 0..frames {
        let nonces: Vec<u64> = (f * per_frame + 1..=(f + 1) * per_frame).collect();
        c.send_frame(&intent_frame(6, &nonces), Via::Stream).unwrap();
        while let Some(Event::Receipt { receipt, .. }) = c.try_recv_event() {
            told.receipt(0, &receipt);
            got += 1;
        }
    }
    while got < frames * per_frame {
        assert!(Instant::now() < deadline, "{got} receipts of {}", frames * per_frame);
        if let Some(Event::Receipt { receipt, .. }) = c.recv_event_timeout(Duration::from_millis(50)) {
            told.receipt(0, &receipt);
            got += 1;
        }
    }
    let segments = std::fs::read_dir(dir.join("data/log")).unwrap().count();
    assert_eq!(metric(&run.admin, "fpn_log_sync_wait"), 1, "log.sync = wait is in force");
    c.close();
    run.kill9();
    told.end_cycle(0);
    assert!(segments >= 3, "{segments} segments for {got} records");
    assert!(told.accepted.len() as u64 > frames * per_frame / 2, "{} accepted", told.accepted.len());
    let run = Run::start(&dir, 1);
    assert_eq!(run.terminate(), Some(0));
    check_journal_and_replay(&dir, &told);
}

#[test]
fn a_torn_tail_is_truncated_and_said() {
    let dir = scratch_dir("crash-torn");
    let told = crashed_with_records(&dir);
    let data = dir.join("data");
    // A group commit cut short: half a batch at the end.
    let seg = newest_segment(&data);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(b"FPLB\x40\0\0\0garbage-of-a-torn-write");
    std::fs::write(&seg, &bytes).unwrap();
    let run = Run::start(&dir, 1);
    let metrics = String::from_utf8(http(&run.admin, "GET", "/metrics", b"").1).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("fpn_log_recovery_total") && l.contains("torn_tail") && l.ends_with(" 1")),
        "{}",
        metrics.lines().filter(|l| l.contains("recovery")).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(run.terminate(), Some(0));
    let stderr = std::fs::read_to_string(dir.join("stderr-1.log")).unwrap();
    assert!(stderr.contains("torn tail"), "{stderr}");
    check_journal_and_replay(&dir, &told);
}

#[test]
fn mid_log_corruption_refuses_to_start_unless_told_to_truncate() {
    let dir = scratch_dir("crash-corrupt");
    crashed_with_records(&dir);
    let data = dir.join("data");
    // A second run adds a segment, so the first one's batches are before the tail.
    let run = Run::start(&dir, 1);
    run.kill9();
    let mut segs: Vec<PathBuf> =
        std::fs::read_dir(data.join("log")).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    assert!(segs.len() >= 2, "{segs:?}");
    let first = &segs[0];
    let mut bytes = std::fs::read(first).unwrap();
    // Flip a byte in the payload of the first batch after the segment's start.
    let at = fpn_log::format::SEGMENT_HEADER_LEN + fpn_log::format::BATCH_HEADER_LEN + 4;
    bytes[at] ^= 0xff;
    std::fs::write(first, &bytes).unwrap();

    let conf = dir.join("flashpointd.toml");
    let out = Command::new(daemon_bin()).arg("--config").arg(&conf).env_clear().output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&first.display().to_string()) && stderr.contains("at byte"), "{stderr}");
    assert!(stderr.contains("FPN_LOG_ON_CORRUPTION=truncate"), "{stderr}");

    // Told to truncate: it starts, and says so.
    let text = std::fs::read_to_string(&conf).unwrap();
    let run = Run::start_text(&dir, 2, &text, &[("FPN_LOG_ON_CORRUPTION", "truncate")]);
    assert_eq!(run.terminate(), Some(0));
    let stderr = std::fs::read_to_string(dir.join("stderr-2.log")).unwrap();
    assert!(stderr.contains("truncated there"), "{stderr}");
}

/// A tmpfs mounted for a test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` when mounting is not allowed here (not root): the test says so and skips.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            other => {
                eprintln!("SKIPPED: cannot mount a tmpfs here (root needed): {other:?}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `path` with a file until a write fails.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

fn submit_statuses(admin: &str, client: u64, nonces: &[u64]) -> (u16, Vec<String>) {
    let (status, body) = http(admin, "POST", "/submit?format=json", &intent_frame(client, nonces));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let statuses = v["receipts"]
        .as_array()
        .map(|a| a.iter().map(|r| r["status"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    (status, statuses)
}

fn metric(admin: &str, name: &str) -> u64 {
    let text = String::from_utf8(http(admin, "GET", "/metrics", b"").1).unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Disk full (a small tmpfs): new records are refused `storage_unavailable`, readiness says
/// degraded, the failure is counted; once space is back, records are accepted again and
/// nothing accepted before is lost.
#[test]
fn a_full_disk_refuses_new_records_until_space_is_back() {
    let dir = scratch_dir("crash-full");
    let Some(_fs) = Tmpfs::mount(&dir.join("data"), "4m") else { return };
    let data = dir.join("data");
    let conf = config(&data).replace("[prover]", "[journal]\nsegment_bytes_max = 1048576\n\n[prover]");
    let run = Run::start_text(&dir, 0, &conf, &[]);
    let (status, before) = submit_statuses(&run.admin, 9, &[1, 2, 3]);
    assert_eq!((status, before.clone()), (200, vec!["ok".to_string(); 3]));

    fill(&data.join("filler"));
    // Idle windows keep the log writing its closes: the next append fails.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = http(&run.admin, "GET", "/health/ready", b"");
        if code == 503 && String::from_utf8_lossy(&body).contains("degraded") {
            break;
        }
        assert!(Instant::now() < deadline, "not degraded: {code} {}", String::from_utf8_lossy(&body));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, refused) = submit_statuses(&run.admin, 9, &[4, 5]);
    assert_eq!((status, refused), (200, vec!["storage_unavailable".to_string(); 2]));
    // Metrics are published every 100 ms.
    for (name, min) in [
        ("fpn_log_failing", 1),
        ("fpn_log_write_errors_total", 1),
        ("fpn_records_rejected_total{shard=\"intake0\",reason=\"storage_unavailable\"}", 2),
    ] {
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric(&run.admin, name) < min {
            assert!(Instant::now() < deadline, "{name} < {min}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    std::fs::remove_file(data.join("filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(&run.admin, "GET", "/health/ready", b"").0 != 200 {
        assert!(Instant::now() < deadline, "not ready again after space came back");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, after) = submit_statuses(&run.admin, 9, &[4, 5]);
    assert_eq!((status, after), (200, vec!["ok".to_string(); 2]), "refused records may be sent again");
    assert_eq!(run.terminate(), Some(0));
    let journal = {
        let mut text = String::new();
        for f in flashpointd::journal_files::files(&data).unwrap() {
            text.push_str(&std::fs::read_to_string(f).unwrap());
        }
        expand_journal(&text)
    };
    let included: usize = journal.iter().map(|w| w["block"]["entries"].as_array().unwrap().len()).sum();
    assert_eq!(included, 5, "the three accepted before and the two after, each in a block");
}
