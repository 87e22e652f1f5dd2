//! `fpn` and `fpn-client` against the real `flashpointd` and its QUIC intake, on loopback.
//!
//! The daemon binary is another package's, so the test builds it first with the same cargo,
//! profile and target directory (`cargo build -p flashpointd`; quick when it is up to date)
//! and starts it with a temporary data dir and the CPUs this process may use.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fpn_client::{
    Backoff, BlockingClient, ClientConfig, ConnectError, Event, Fingerprint, Intent, Reason, Record, Trust,
    Via,
};

use super::fpn;

const WAIT: Duration = Duration::from_secs(60);

/// `target/<profile>/flashpointd`, built once per test process.
fn flashpointd() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_fpn")).parent().unwrap().to_path_buf();
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(other) => other.to_string(),
        };
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "-p", "flashpointd", "--bin", "flashpointd", "--profile", &profile])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // Cargo sets these for this test; build scripts (ring's) watch some of them, so they
        // would make the inner build and the next outer one rebuild half the workspace.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_for_tests = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_CFG_"]
                .iter()
                .any(|p| name.starts_with(p))
                || matches!(&*name, "CARGO_TARGET_TMPDIR" | "CARGO_PRIMARY_PACKAGE");
            if set_for_tests {
                cargo.env_remove(&*name);
            }
        }
        let status = cargo.status().expect("cargo runs");
        assert!(status.success(), "cargo build -p flashpointd failed");
        dir.join("flashpointd")
    })
}

fn allowed_cpus() -> Vec<usize> {
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

/// A running daemon; killed on drop.
pub(super) struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Daemon {
    /// Starts with its QUIC intake on `listen` and waits until it is ready.
    fn start(dir: &Path, listen: &str) -> Daemon {
        Daemon::start_with(dir, listen, "")
    }

    /// As [`Daemon::start`], with `extra` TOML appended to the configuration file.
    pub(super) fn start_with(dir: &Path, listen: &str, extra: &str) -> Daemon {
        let data = dir.join("data");
        for file in ["quic.addr", "admin.addr"] {
            let _ = std::fs::remove_file(data.join(file));
        }
        let cpus = allowed_cpus();
        let (hot, rest) = (cpus[0], *cpus.last().unwrap());
        let config = format!(
            "[engine]\nprofile = \"test\"\ndata_dir = {data:?}\n\n[admin]\naddr = \"127.0.0.1:0\"\n\n\
             [quic]\nlisten = \"{listen}\"\n\n[window]\nduration_ms = 50\n\n\
             [cores]\nintake = [{hot}]\nbuilder = [{hot}]\nmerger = [{rest}]\nprover = [{rest}]\n\
             journal = [{rest}]\nadmin = [{rest}]\n{extra}",
            data = data.display().to_string(),
        );
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("flashpointd.toml"), config).unwrap();
        let child = Command::new(flashpointd())
            .arg("--config")
            .arg(dir.join("flashpointd.toml"))
            .env_clear()
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .expect("flashpointd starts");
        let mut d = Daemon { child, dir: dir.to_path_buf() };
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = ["quic.addr", "admin.addr"]
                .iter()
                .all(|f| std::fs::read_to_string(data.join(f)).is_ok_and(|t| t.ends_with('\n')));
            if ready && fpn(&["status", "--data-dir", data.to_str().unwrap()]).status.success() {
                return d;
            }
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("flashpointd exited with {status}: {}", d.stderr());
            }
            assert!(Instant::now() < deadline, "flashpointd not ready: {}", d.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(super) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    pub(super) fn quic_addr(&self) -> String {
        std::fs::read_to_string(self.data().join("quic.addr")).unwrap().trim().to_string()
    }

    fn pin(&self) -> Fingerprint {
        Fingerprint::parse_hex(&std::fs::read_to_string(self.data().join("tls/cert.sha256")).unwrap())
            .unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn scratch(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fpn-real-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub(super) fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_cli_against_the_real_daemon() {
    let daemon = Daemon::start(&scratch("cli"), "127.0.0.1:0");
    let data = daemon.data();
    let d = data.to_str().unwrap();

    let one = ["--data-dir", d, "--client-id", "7", "--nonce", "1", "--timeout", "60"];
    let out =
        fpn(&[&["submit"][..], &one, &["--profit", "500", "--resource", "pool:ETH/USDC", "--json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"][0]["status"], "accepted");
    // Resent on the stream: the daemon remembers the nonce.
    let out = fpn(&[&["submit"][..], &one, &["--profit", "500", "--resource", "1", "--stream"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("duplicate_nonce (13)"), "{}", text(&out));

    let out = fpn(&[
        "bid",
        "--data-dir",
        d,
        "--client-id",
        "7",
        "--nonce",
        "2",
        "--amount",
        "900",
        "--timeout",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = fpn(&["watch", "--data-dir", d, "--count", "2", "--duration", "120", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let kinds: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["block", "clearing", "block", "clearing"]);

    // The daemon's self-signed certificate as a CA file instead of the pin.
    let ca = data.join("tls/cert.pem");
    let args = ["submit", "--data-dir", d, "--ca", ca.to_str().unwrap(), "--client-id", "7", "--nonce", "3"];
    let out =
        fpn(&[&args[..], &["--profit", "5", "--resource", "2", "--stream", "--timeout", "60"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Receipt mode `refusals`: the accepted intents are confirmed by watermarks (no seq), the
    // one of another client is refused by its receipt.
    let file = data.join("refusals.jsonl");
    let lines: String = (10..=14)
        .map(|n| {
            format!(
                "{{\"client_id\": {}, \"nonce\": {n}, \"profit\": 5, \"keys\": [{n}]}}\n",
                if n == 12 { 8 } else { 7 }
            )
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
    for via in [&[][..], &["--stream"][..]] {
        let args = ["submit", "--data-dir", d, "--input", file.to_str().unwrap(), "--receipts", "refusals"];
        let out = fpn(&[&args[..], via, &["--json", "--timeout", "60"]].concat());
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let got: Vec<(u64, &str, bool)> = v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["nonce"].as_u64().unwrap(), r["status"].as_str().unwrap(), r.get("seq").is_some()))
            .collect();
        // The second round resends the same nonces: accepted before, told by duplicate_nonce.
        let accepted = if via.is_empty() { "accepted" } else { "duplicate_nonce" };
        let want = [
            (10, accepted, false),
            (11, accepted, false),
            (12, "client_mismatch", false),
            (13, accepted, false),
            (14, accepted, false),
        ];
        assert_eq!(got, want, "{}", text(&out));
    }

    let out = fpn(&["status", "--data-dir", d, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let out =
        fpn(&["submit", "--data-dir", d, "--key", "not-a-client-id", "--profit", "5", "--resource", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("unauthorized"), "{}", text(&out));
}

fn client_config(daemon: &Daemon, key: &str) -> ClientConfig {
    let mut config = ClientConfig::new(daemon.quic_addr().parse().unwrap(), Trust::Pin(daemon.pin()), key);
    config.connect_timeout = Duration::from_secs(20);
    config.keep_alive = Duration::from_millis(500);
    config.idle_timeout = Duration::from_secs(3);
    config.reconnect = Some(Backoff {
        delay_initial: Duration::from_millis(50),
        delay_max: Duration::from_millis(500),
        attempts_max: None,
    });
    config
}

/// Receipts (nonce → accepted) and the block entries' seqs, until `n` receipts and a block
/// holding every accepted seq arrived.
fn collect(client: &BlockingClient, n: usize) -> usize {
    let mut accepted = std::collections::HashMap::new();
    let mut in_blocks = std::collections::HashSet::new();
    let deadline = Instant::now() + WAIT;
    while accepted.len() < n || !accepted.values().all(|seq| in_blocks.contains(seq)) {
        assert!(Instant::now() < deadline, "{} receipts, {} in blocks", accepted.len(), in_blocks.len());
        match client.recv_event_timeout(Duration::from_secs(1)) {
            Some(Event::Receipt { receipt, .. }) => {
                assert_eq!(receipt.status, Ok(()), "{receipt:?}");
                accepted.insert(receipt.nonce, receipt.seq);
            }
            Some(Event::Block(b)) => in_blocks.extend(b.entries.iter().map(|e| e.seq)),
            _ => {}
        }
    }
    accepted.len()
}

#[test]
fn the_client_library_against_the_real_daemon_and_its_restart() {
    let dir = scratch("lib");
    let daemon = Daemon::start(&dir, "127.0.0.1:0");
    match BlockingClient::connect(client_config(&daemon, "bob")) {
        Err(ConnectError::Refused(Reason::Unauthorized)) => {}
        other => panic!("{other:?}"),
    }
    let client = BlockingClient::connect(client_config(&daemon, "11")).unwrap();
    assert_eq!(client.client_id(), Some(11));
    let keys: Vec<[u64; 1]> = (0..400u64).map(|n| [11 << 32 | n]).collect();
    let records: Vec<Record<'_>> = (0..400u64)
        .map(|n| {
            Record::Intent(Intent {
                client_id: 11,
                nonce: n + 1,
                sent_ns: 0,
                profit: 1 + n,
                priority: 0,
                keys: &keys[n as usize],
            })
        })
        .collect();
    client.send_records(&records[..200], Via::Datagram).unwrap();
    assert_eq!(collect(&client, 200), 200);
    client.send_records(&records[200..300], Via::Stream).unwrap();
    assert_eq!(collect(&client, 100), 100);

    // Restart on the same port, with the same certificate (kept in the data dir).
    let addr = daemon.quic_addr();
    drop(daemon);
    let mut reconnected = false;
    let daemon = Daemon::start(&dir, &addr);
    let deadline = Instant::now() + WAIT;
    while !reconnected {
        assert!(Instant::now() < deadline, "no reconnect: {}", daemon.stderr());
        if let Some(Event::Connected { epoch, .. }) = client.recv_event_timeout(Duration::from_secs(1)) {
            reconnected = epoch >= 1;
        }
    }
    client.send_records(&records[300..], Via::Stream).unwrap();
    assert_eq!(collect(&client, 100), 100);
    client.close();
}
