//! Starts the real daemon on loopback with a temporary data dir and a core map made of the
//! CPUs this test may use, talks to it over the admin endpoint as a client would, stops it
//! with SIGTERM and checks the journal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flashpointd::CpuSet;
use flashpointd::config::{Inputs, load};
use fpn_engine::oracle::OracleEngine;
use fpn_engine::{Pipeline, PipelineConfig, SplitMix64, WindowResult};
use fpn_wire::{Bid, Cancel, CancelTarget, FrameWriter, Intent};
use serde_json::Value;

/// The CPUs this process may run on (`Cpus_allowed_list`), so the test passes under
/// `taskset` and on any CI runner.
pub fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// A fresh directory for one test's daemon, emptied first. Tests of this binary run in
/// parallel in one process, so each name may be taken once: a second test with the same name
/// would empty the first one's directory under its running daemon.
pub fn scratch_dir(name: &str) -> PathBuf {
    static TAKEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    {
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        assert!(!taken.iter().any(|n| n == name), "scratch_dir({name:?}) taken twice in one test run");
        taken.push(name.to_string());
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("flashpointd-it")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn config_text(data_dir: &std::path::Path, duration_ms: u64, shards: usize) -> String {
    let cpus = allowed_cpus();
    let (hot, rest) = (cpus[0], *cpus.last().unwrap());
    format!(
        "[engine]\nprofile = \"test\"\ndata_dir = {dir:?}\n\n[admin]\naddr = \"127.0.0.1:0\"\n\n[quic]\nlisten = \"127.0.0.1:0\"\n\n\
         [window]\nduration_ms = {duration_ms}\n\n[builder]\nshards = {shards}\n\n\
         [cores]\nintake = [{hot}]\nbuilder = [{hot}]\nmerger = [{rest}]\nprover = [{rest}]\n\
         journal = [{rest}]\nadmin = [{rest}]\n\n\
         [prover]\nenabled = false\n",
        dir = data_dir.display().to_string(),
    )
}

/// The admin endpoint's `/metrics` once `ready` holds for it, or as it stands after 10 s (the
/// caller's asserts then say what is missing). Roles publish their counters on their
/// housekeeping timer (every 100 ms), so what a client has seen answered can be a publish
/// ahead of `/metrics`.
pub fn metrics_until(addr: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http(addr, "GET", "/metrics", b"");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let text = String::from_utf8(body).unwrap();
        if ready(&text) || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
pub fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let status: u16 = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
    (status, out[split + 4..].to_vec())
}

/// The running daemon; killed on drop if the test did not stop it (a failing test).
pub struct Daemon {
    child: Option<Child>,
    pub dir: PathBuf,
    pub addr: String,
    config: PathBuf,
}

impl Daemon {
    pub fn start(name: &str, duration_ms: u64, shards: usize) -> Daemon {
        Daemon::start_with(scratch_dir(name), duration_ms, shards, &[])
    }

    pub fn start_with(dir: PathBuf, duration_ms: u64, shards: usize, env: &[(&str, String)]) -> Daemon {
        let text = config_text(&dir.join("data"), duration_ms, shards);
        Daemon::start_text(dir, &text, env)
    }

    /// Starts with the config file `text` (see [`config_text`]).
    pub fn start_text(dir: PathBuf, text: &str, env: &[(&str, String)]) -> Daemon {
        Daemon::start_command(dir, text, env, |_| {})
    }

    /// As [`Daemon::start_text`], with `adjust` applied to the command before the spawn.
    pub fn start_command(
        dir: PathBuf,
        text: &str,
        env: &[(&str, String)],
        adjust: impl FnOnce(&mut Command),
    ) -> Daemon {
        let config = dir.join("flashpointd.toml");
        std::fs::write(&config, text).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_flashpointd"));
        command
            .arg("--config")
            .arg(&config)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
        adjust(&mut command);
        let child = command.spawn().expect("flashpointd starts");
        let mut d = Daemon { child: Some(child), dir, addr: String::new(), config };
        let addr_file = d.dir.join("data").join("admin.addr");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && text.ends_with('\n')
            {
                d.addr = text.trim().to_string();
                break;
            }
            d.assert_running();
            assert!(Instant::now() < deadline, "no admin.addr after 20 s: {}", d.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        while d.get("/health/ready").0 != 200 {
            d.assert_running();
            assert!(Instant::now() < deadline, "not ready after 20 s: {}", d.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("flashpointd exited early with {status}: {}", self.stderr());
        }
    }

    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        http(&self.addr, method, path, body)
    }

    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        self.request("GET", path, b"")
    }

    /// `/metrics` once `ready` holds for it (see [`metrics_until`]).
    pub fn metrics_until(&self, ready: impl Fn(&str) -> bool) -> String {
        metrics_until(&self.addr, ready)
    }

    pub fn submit_json(&self, frame: &[u8]) -> (u16, Value) {
        let (status, body) = self.request("POST", "/submit?format=json", frame);
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// The QUIC intake's address and certificate pin, from the data dir.
    pub fn quic_endpoint(&self) -> (std::net::SocketAddr, [u8; 32]) {
        let data = self.dir.join("data");
        let addr = std::fs::read_to_string(data.join("quic.addr")).unwrap().trim().parse().unwrap();
        let pin = std::fs::read_to_string(data.join("tls/cert.sha256")).unwrap();
        (addr, fpn_quic::tls::parse_pin(&pin).unwrap())
    }

    /// SIGTERM, without waiting.
    pub fn signal_term(&self) {
        let child = self.child.as_ref().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }

    /// The exit code after an earlier [`Daemon::signal_term`] (killed after 40 s).
    pub fn terminate_wait(&mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no exit 40 s after SIGTERM: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit code (killed after 40 s).
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal_term();
        self.terminate_wait()
    }

    /// The journal's windows in order ([`expand_journal`]).
    pub fn journal(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("data").join("journal.jsonl")).unwrap();
        expand_journal(&text)
    }
}

/// A journal's lines as one value per window: a run of idle windows
/// (`{"idle_from":F,"idle_to":L}`, `docs/daemon.md`, "Idle windows") becomes one empty
/// window each, with zero counts and sums, an empty block and an empty clearing.
pub fn expand_journal(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        match (v["idle_from"].as_u64(), v["idle_to"].as_u64()) {
            (Some(from), Some(to)) => {
                assert!(from <= to, "{line}");
                for w in from..=to {
                    out.push(serde_json::json!({
                        "window_id": w, "idle": true,
                        "intents_count": 0, "bids_count": 0, "cancelled_count": 0,
                        "block": {"total": 0, "fifo_total": 0, "fee": 0, "entries": []},
                        "clearing": {"revenue": 0, "winners": []},
                    }));
                }
            }
            _ => out.push(v),
        }
    }
    out
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the test sent, to check the journal against.
#[derive(Debug, Clone)]
pub enum Sent {
    Intent { keys: Vec<u64> },
    Bid,
    Cancel,
}

/// Frames of `per_frame` records from one client each, deterministic from `seed`: intents
/// over a small key space (so they conflict and cross shards), bids, cancels by nonce of the
/// client's earlier records, and some invalid records (zero profit or amount, a repeated
/// nonce, a duplicate key).
pub fn frames(seed: u64, frames_n: usize, per_frame: usize, invalid: bool) -> Vec<(Vec<u8>, Vec<Sent>)> {
    let mut rng = SplitMix64::new(seed);
    let mut nonces: HashMap<u64, u64> = HashMap::new();
    let mut out = Vec::new();
    for f in 0..frames_n {
        let client = 1 + (f as u64 % 7);
        let mut buf = Vec::new();
        let mut sent = Vec::new();
        let mut w = FrameWriter::new(&mut buf, u32::MAX as usize);
        for _ in 0..per_frame {
            let nonce = nonces.entry(client).or_insert(0);
            let pick = rng.below(100);
            let bad = invalid && rng.below(20) == 0;
            if pick < 70 {
                *nonce += 1;
                // One intent in ten has more keys than a ring slot holds inline, so it
                // crosses the rings as several slots (`docs/sharding.md`).
                let k = if rng.below(10) == 0 { 7 + rng.below(30) } else { 1 + rng.below(3) } as usize;
                let mut keys: Vec<u64> = Vec::new();
                while keys.len() < k {
                    let key = 1 + rng.below(60);
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
                if bad {
                    keys.push(keys[0]);
                }
                // A long intent is worth a lot, so blocks pick it and the key checks below
                // see all of its keys.
                let profit = if k > 6 { 1_000_000 } else { 0 } + 1 + rng.below(1000);
                let intent =
                    Intent { client_id: client, nonce: *nonce, sent_ns: 0, profit, priority: 0, keys: &keys };
                w.push_intent(&intent).unwrap();
                sent.push(Sent::Intent { keys });
            } else if pick < 90 {
                if !bad {
                    *nonce += 1;
                }
                let amount = if bad && rng.below(2) == 0 { 0 } else { 1 + rng.below(500) };
                let bid = Bid {
                    client_id: client,
                    nonce: (*nonce).max(1),
                    sent_ns: 0,
                    amount,
                    priority: rng.below(3) as u32,
                };
                w.push_bid(&bid).unwrap();
                sent.push(Sent::Bid);
            } else {
                let target = 1 + rng.below((*nonce).max(1));
                w.push_cancel(&Cancel { client_id: client, target: CancelTarget::Nonce(target) }).unwrap();
                sent.push(Sent::Cancel);
            }
        }
        w.finish();
        out.push((buf, sent));
    }
    out
}

pub fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

#[test]
fn submit_metrics_sigterm_and_journal() {
    let mut d = Daemon::start("submit", 20, 2);
    let input = frames(7, 40, 100, true);
    // seq -> what it was, for every record answered ok
    let mut accepted: BTreeMap<u64, Sent> = BTreeMap::new();
    // seq -> the receipt's rx_ns, which the block entry must carry
    let mut rx_of: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut ok_total, mut records_total, mut cancels_ok) = (0u64, 0u64, 0u64);
    for (frame, sent) in &input {
        let (status, body) = d.submit_json(frame);
        assert_eq!(status, 200, "{body}");
        let receipts = body["receipts"].as_array().unwrap();
        assert_eq!(receipts.len(), sent.len(), "one receipt per record");
        records_total += sent.len() as u64;
        for r in receipts {
            if r["status"] != "ok" {
                continue;
            }
            ok_total += 1;
            match r["kind"].as_str().unwrap() {
                "cancel" => cancels_ok += 1,
                "intent" | "bid" => {
                    // Receipts of one frame come back in record order from the intake;
                    // find this record by its nonce among the frame's records.
                    let seq = r["seq"].as_u64().unwrap();
                    assert!(seq > 0);
                    accepted.insert(seq, Sent::Bid);
                    rx_of.insert(seq, r["rx_ns"].as_u64().unwrap());
                }
                k => panic!("kind {k}"),
            }
        }
        // Map intents' seqs to their keys: intake receipts of intents/bids are in record order.
        let mut oks = receipts.iter().filter(|r| r["kind"] != "cancel");
        for s in sent.iter().filter(|s| !matches!(s, Sent::Cancel)) {
            let r = oks.next().unwrap();
            if r["status"] == "ok" {
                let seq = r["seq"].as_u64().unwrap();
                if let Sent::Intent { .. } = s {
                    assert_eq!(r["kind"], "intent");
                    accepted.insert(seq, s.clone());
                }
            }
        }
    }
    assert!(accepted.len() > 2_000, "most records accepted: {}", accepted.len());
    assert!(ok_total < records_total, "some records refused");

    // A frame refused whole, and a wrong method.
    let (status, body) = d.request("POST", "/submit", b"not a frame at all");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(d.get("/submit").0, 405);

    // Wait for the counts to match what was answered.
    let ok = |text: &str| metric_sum(text, "fpn_records_accepted_total");
    let answered = |text: &str| ok(text) + metric_sum(text, "fpn_records_rejected_total");
    let metrics = d.metrics_until(|text| ok(text) == ok_total && answered(text) == records_total);
    assert!(
        ok(&metrics) == ok_total && answered(&metrics) == records_total,
        "metrics never matched: ok {ok_total} of {records_total}\n{metrics}"
    );
    for name in [
        "fpn_intake_frames_total",
        "fpn_windows_closed_total",
        "fpn_merger_windows_published_total",
        "fpn_journal_windows_written_total",
        "fpn_ring_push_total",
        "fpn_ring_transit_latency_seconds_bucket",
        "fpn_intake_handle_latency_seconds_count",
        "fpn_window_publish_latency_seconds_count",
        "fpn_submit_receipt_latency_seconds_count",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    assert_eq!(metric_sum(&metrics, "fpn_intake_frames_total"), input.len() as u64);
    assert_eq!(
        metric_sum(&metrics, "fpn_submit_frames_total{shard=\"admin\",outcome=\"ok\"}"),
        input.len() as u64
    );
    let (status, body) = d.get("/blocks/latest");
    assert_eq!(status, 200);
    let block: Value = serde_json::from_slice(&body).unwrap();
    assert!(block["entries"].is_array(), "{block}");
    let (status, body) = d.get("/windows/latest?n=3");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap().as_array().unwrap().len(), 3);
    assert_eq!(d.get("/clearings/latest").0, 200);
    assert_eq!(d.get("/metrics/json").0, 200);
    assert_eq!(d.get("/health/live").0, 200);

    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());
    let journal = d.journal();
    assert!(!journal.is_empty());
    let mut counted = 0u64;
    for (i, w) in journal.iter().enumerate() {
        assert_eq!(w["window_id"].as_u64().unwrap(), i as u64 + 1, "window ids contiguous from 1");
        counted += w["intents_count"].as_u64().unwrap()
            + w["bids_count"].as_u64().unwrap()
            + w["cancelled_count"].as_u64().unwrap();
        let mut keys_seen = BTreeSet::new();
        for e in w["block"]["entries"].as_array().unwrap() {
            let seq = e["seq"].as_u64().unwrap();
            let Some(Sent::Intent { keys }) = accepted.get(&seq) else {
                panic!("block entry seq {seq} is no accepted intent")
            };
            let rx_ns = e["rx_ns"].as_u64().unwrap();
            assert_eq!(rx_ns, rx_of[&seq], "seq {seq}: the block entry carries its receipt's rx_ns");
            assert!(rx_ns <= w["published_ns"].as_u64().unwrap(), "received before published: {w}");
            for k in keys {
                assert!(keys_seen.insert(*k), "window {}: key {k} twice in the block", w["window_id"]);
            }
        }
    }
    // The drain closes the open window at once (reason `drain`, or `deadline`/`full` when it
    // was due anyway) and stops only once the journal has it.
    let last = journal.last().unwrap()["window_id"].as_u64().unwrap();
    assert!(d.stderr().contains(&format!("drained: window {last} is the last")), "{}", d.stderr());
    assert_eq!(counted, accepted.len() as u64, "every accepted intent and bid in exactly one window");
    let _ = cancels_ok;
    let _ = &d.config;
}

/// (seq, payout) of every block entry, total; winners' (seq, price), revenue.
type Digest = (Vec<(u64, u64)>, u64, Vec<(u64, u64)>, u64);

fn digest_json(w: &Value) -> Digest {
    let b = &w["block"];
    let c = &w["clearing"];
    (
        b["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["seq"].as_u64().unwrap(), e["payout"].as_u64().unwrap()))
            .collect(),
        b["total"].as_u64().unwrap(),
        c["winners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["seq"].as_u64().unwrap(), x["price"].as_u64().unwrap()))
            .collect(),
        c["revenue"].as_u64().unwrap(),
    )
}

fn digest(r: &WindowResult) -> Digest {
    (
        r.block.entries.iter().map(|e| (e.seq, e.payout)).collect(),
        r.block.total,
        r.clearing.winners.iter().map(|x| (x.seq, x.price)).collect(),
        r.clearing.revenue,
    )
}

/// The windows of the daemon's journal that hold records (with one long window, one). Each
/// attempt has a scratch dir of its own (`scratch_dir` gives a name out once).
fn daemon_digest(shards: usize, attempt: usize, input: &[(Vec<u8>, Vec<Sent>)]) -> Option<(Digest, PathBuf)> {
    let mut d = Daemon::start(&format!("det{shards}-{attempt}"), 1000, shards);
    let mut windows = BTreeSet::new();
    for (frame, _) in input {
        let (status, body) = d.submit_json(frame);
        assert_eq!(status, 200, "{body}");
        for r in body["receipts"].as_array().unwrap() {
            windows.insert(r["window_id"].as_u64().unwrap());
        }
    }
    windows.remove(&0);
    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());
    if windows.len() != 1 {
        // The deadline fell inside the submission: membership differs; the caller retries.
        return None;
    }
    let w = *windows.first().unwrap();
    let journal = d.journal();
    let line = journal.iter().find(|l| l["window_id"] == w).expect("the window is journaled");
    Some((digest_json(line), d.config.clone()))
}

#[test]
fn blocks_are_deterministic_per_shard_count_and_one_shard_is_the_engine() {
    let input = frames(11, 12, 60, false);
    for shards in 1..=4 {
        let (got, config) = (0..3)
            .find_map(|attempt| daemon_digest(shards, attempt, &input))
            .expect("one run of three fits all records in one window");
        // The reference: the same frames through the in-process pipeline with the daemon's
        // own settings (same engine config and shape), drained at once.
        let inputs = Inputs::gather(Some(config), vec![], vec![]).unwrap();
        let settings = load(&inputs, &CpuSet::new(allowed_cpus())).unwrap().settings;
        let shard = settings.shard_config();
        assert_eq!(shard.shards_n, shards);
        let mut p = Pipeline::new(PipelineConfig {
            shard: shard.clone(),
            queue_len: 1 << 12,
            budget_max: 64,
            scheduler_seed: shards as u64,
            start_ns: 0,
        })
        .unwrap();
        for (frame, _) in &input {
            p.submit(1, 1, frame).unwrap();
        }
        p.drain(2);
        let results = p.take_results();
        let want = results.iter().find(|r| !r.block.entries.is_empty() || r.window.bids_count > 0).unwrap();
        assert_eq!(got, digest(want), "shards = {shards}: daemon differs from the pipeline");
        if shards == 1 {
            // The test oracle, the rules written once more on `Window`.
            let mut e = OracleEngine::new(shard.engine.clone(), 0).unwrap();
            for (frame, _) in &input {
                e.handle_frame(1, 1, frame, |_| {}).unwrap();
            }
            let r = e.drain(2);
            assert_eq!(got, digest(r), "one shard differs from the oracle");
        }
    }
}

#[test]
fn notifies_ready_then_watchdog_then_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = scratch_dir("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let env = [
        ("NOTIFY_SOCKET", socket_path.display().to_string()),
        // 600 ms: WATCHDOG=1 every 300 ms while every heartbeat advances.
        ("WATCHDOG_USEC", "600000".to_string()),
    ];
    let mut d = Daemon::start_with(dir, 20, 1, &env);
    let mut buf = [0u8; 1024];
    let mut recv = || {
        let n = socket.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(recv(), "READY=1");
    let t = Instant::now();
    assert_eq!(recv(), "WATCHDOG=1");
    assert_eq!(recv(), "WATCHDOG=1");
    assert!(t.elapsed() >= Duration::from_millis(250), "watchdog paced at about half the timeout");
    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());
    let mut rest = Vec::new();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    while let Ok(n) = socket.recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(rest.last().map(String::as_str), Some("STOPPING=1"), "{rest:?}");
}

/// A window that fills up must not refuse whole frames: while the intake's window is full it
/// leaves frames in the submit ring until the clock closes the window. With a 32-record
/// window and concurrent submitters of 16-record frames, every frame starts in a window with
/// room, so each gets at least one accepted receipt.
#[test]
fn a_full_window_makes_frames_wait_rather_than_refusing_them_whole() {
    let dir = scratch_dir("full-window");
    let env = [
        ("FPN_WINDOW_RECORDS_MAX", "32".to_string()),
        ("FPN_WINDOW_KEYS_MAX", "256".to_string()),
        ("FPN_WINDOW_BIDS_MAX", "32".to_string()),
    ];
    let mut d = Daemon::start_with(dir, 1000, 1, &env);
    let addr = d.addr.clone();
    let submitters: Vec<_> = (0..6u64)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut worst = usize::MAX;
                for f in 0..12u64 {
                    let mut buf = Vec::new();
                    let mut w = FrameWriter::new(&mut buf, 1200);
                    for r in 0..16u64 {
                        let nonce = f * 16 + r;
                        let keys = [t << 32 | nonce];
                        let intent = Intent {
                            client_id: t + 1,
                            nonce,
                            sent_ns: 0,
                            profit: 1,
                            priority: 0,
                            keys: &keys,
                        };
                        w.push_intent(&intent).unwrap();
                    }
                    w.finish();
                    let (status, body) = http(&addr, "POST", "/submit?format=json", &buf);
                    assert_eq!(status, 200);
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let ok = v["receipts"].as_array().unwrap().iter().filter(|r| r["status"] == "ok").count();
                    worst = worst.min(ok);
                }
                worst
            })
        })
        .collect();
    for s in submitters {
        assert!(s.join().unwrap() >= 1, "a frame was refused whole while the window was full");
    }
    assert_eq!(d.terminate(), Some(0));
}
