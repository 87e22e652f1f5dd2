//! The daemon-facing subcommands (`submit`, `bid`, `cancel`, `watch`, `status`) against the
//! fpn/1 test server of `fpn_testserver` and a stand-in admin endpoint, on loopback.
//!
//! Timeouts are generous (a shared, busy machine); nothing asserts a time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use fpn_testserver::{TestServerConfig, ThreadedTestServer};

use super::{file, fpn};

fn data_dir(server: &ThreadedTestServer, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fpn-it-{}-{name}", std::process::id()));
    server.write_data_dir(&dir).unwrap();
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

#[test]
fn submit_one_intent_from_flags_with_the_data_dir() {
    let server = ThreadedTestServer::start(TestServerConfig::default()).unwrap();
    let dir = data_dir(&server, "submit-one");
    let d = dir.to_str().unwrap();
    let args = ["submit", "--data-dir", d, "--client-id", "7", "--nonce", "1", "--profit", "500"];
    let out =
        fpn(&[&args[..], &["--resource", "pool:ETH/USDC", "--resource", "42", "--json", "--timeout", "60"]]
            .concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(
        (v["accepted"].as_u64(), v["refused"].as_u64(), v["client_id"].as_u64()),
        (Some(1), Some(0), Some(7))
    );
    assert_eq!(v["via"], "datagram");
    let r = &v["records"][0];
    assert_eq!(
        (r["kind"].as_str(), r["nonce"].as_u64(), r["status"].as_str()),
        (Some("intent"), Some(1), Some("accepted"))
    );
    assert!(r["seq"].as_u64().unwrap() > 0);

    // The same nonce again: refused, exit 1, human output names the reason.
    let out = fpn(&[&args[..], &["--resource", "1", "--timeout", "60"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("refused intent client 7 nonce 1: duplicate_nonce (13)"), "{text}");
    assert!(text.contains("0 accepted, 1 refused"), "{text}");
}

const INTENTS_7: &str = r#"{"client_id": 7, "nonce": 1, "profit": 500, "keys": ["pool:ETH/USDC", "acct:alice"]}
{"client_id": 7, "nonce": 2, "profit": 900, "keys": ["pool:ETH/USDC"]}
# a repeated nonce, a zero profit, another client's record
{"client_id": 7, "nonce": 2, "profit": 450, "keys": ["x"]}
{"client_id": 7, "nonce": 3, "profit": 0, "keys": [7]}
{"client_id": 8, "nonce": 1, "profit": 5, "keys": [7]}
"#;

#[test]
fn submit_a_file_on_the_stream_with_explicit_flags() {
    let server = ThreadedTestServer::start(TestServerConfig::default()).unwrap();
    let path = file("intents7.jsonl", INTENTS_7);
    let pin = server.fingerprint().to_string();
    let addr = server.addr().to_string();
    let p = path.to_str().unwrap();
    let out = fpn(&[
        "submit",
        "--addr",
        &addr,
        "--pin",
        &pin,
        "--input",
        p,
        "--stream",
        "--json",
        "--timeout",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(v["via"], "stream");
    let got: Vec<(u64, String)> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["status"].as_str().unwrap().to_string()))
        .collect();
    let want = [
        (1, "accepted"),
        (2, "accepted"),
        (4, "duplicate_nonce"),
        (5, "zero_amount"),
        (6, "client_mismatch"),
    ];
    assert_eq!(got, want.map(|(l, s)| (l, s.to_string())).to_vec());
    assert_eq!((v["accepted"].as_u64(), v["refused"].as_u64()), (Some(2), Some(3)));

    // A CA file instead of the pin, and standard input.
    let ca = file("ca.pem", &server.cert().cert_pem);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fpn"))
        .args(["submit", "--addr", &addr, "--ca", ca.to_str().unwrap(), "--input", "-", "--timeout", "60"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"client_id\": 9, \"nonce\": 1, \"profit\": 5, \"keys\": [1]}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("accepted line 1: intent client 9 nonce 1"), "{}", stdout(&out));
}

#[test]
fn bid_then_cancel_it() {
    let server = ThreadedTestServer::start(TestServerConfig::default()).unwrap();
    let dir = data_dir(&server, "bid-cancel");
    let d = dir.to_str().unwrap();
    let out = fpn(&[
        "bid",
        "--data-dir",
        d,
        "--client-id",
        "7",
        "--nonce",
        "5",
        "--amount",
        "900",
        "--json",
        "--timeout",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seq = json_of(&out)["records"][0]["seq"].as_u64().unwrap();
    let out = fpn(&[
        "cancel",
        "--data-dir",
        d,
        "--client-id",
        "7",
        "--seq",
        &seq.to_string(),
        "--json",
        "--timeout",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_of(&out)["records"][0]["status"], "accepted");
    // Already cancelled: nothing open to cancel.
    let out =
        fpn(&["cancel", "--data-dir", d, "--client-id", "7", "--nonce", "5", "--stream", "--timeout", "60"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("refused cancel client 7 nonce 5: not_found (17)"), "{}", stdout(&out));
    // A bids file (at_ms is not sent).
    let bids = file("bids7.jsonl", "{\"client_id\": 7, \"nonce\": 6, \"amount\": 10, \"at_ms\": 3}\n");
    let out = fpn(&["bid", "--data-dir", d, "--input", bids.to_str().unwrap(), "--timeout", "60"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn refusals_and_connection_failures_exit_1() {
    let server = ThreadedTestServer::start(TestServerConfig::default()).unwrap();
    let dir = data_dir(&server, "refusals");
    let d = dir.to_str().unwrap();
    let out = fpn(&[
        "submit",
        "--data-dir",
        d,
        "--key",
        "not-a-number",
        "--profit",
        "5",
        "--resource",
        "1",
        "--timeout",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("refused the session: unauthorized"), "{}", stderr(&out));

    let wrong = "ab".repeat(32);
    let out = fpn(&[
        "submit",
        "--data-dir",
        d,
        "--pin",
        &wrong,
        "--client-id",
        "7",
        "--profit",
        "5",
        "--resource",
        "1",
        "--timeout",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not match the pin"), "{}", stderr(&out));

    // Nobody listening: the connection times out.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let nobody = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = fpn(&[
        "submit",
        "--data-dir",
        d,
        "--addr",
        &nobody,
        "--client-id",
        "7",
        "--profit",
        "5",
        "--resource",
        "1",
        "--timeout",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_2() {
    let missing = std::env::temp_dir().join(format!("fpn-it-{}-no-data-dir", std::process::id()));
    let m = missing.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["submit", "--data-dir", m, "--client-id", "7", "--resource", "1"],
        &["submit", "--data-dir", m, "--client-id", "7", "--profit", "5"],
        &["submit", "--data-dir", m, "--client-id", "7", "--profit", "5", "--resource", "1"],
        &["submit", "--pin", "xyz", "--client-id", "7", "--profit", "5", "--resource", "1"],
        &["submit", "--pin", &"00".repeat(32), "--profit", "5", "--resource", "1"],
        &[
            "submit",
            "--pin",
            &"00".repeat(32),
            "--ca",
            "x.pem",
            "--client-id",
            "1",
            "--profit",
            "5",
            "--resource",
            "1",
        ],
        &["submit", "--input", "/nonexistent/intents.jsonl", "--pin", &"00".repeat(32)],
        &["cancel", "--nonce", "1", "--seq", "2", "--client-id", "7"],
        &["cancel", "--client-id", "7"],
        &["watch", "--duration", "0"],
        &["status", "--timeout", "-1"],
    ];
    for args in cases {
        let out = fpn(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty());
    }
}

#[test]
fn watch_prints_window_results_until_count() {
    let window = Some(Duration::from_millis(100));
    let server =
        ThreadedTestServer::start(TestServerConfig { window, ..TestServerConfig::default() }).unwrap();
    let dir = data_dir(&server, "watch");
    let d = dir.to_str().unwrap();
    // The watcher starts first; then records from another client land in a window.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_fpn"))
        .args(["watch", "--data-dir", d, "--count", "1000", "--duration", "120", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["type"], "block");
    let out = fpn(&[
        "submit",
        "--data-dir",
        d,
        "--client-id",
        "7",
        "--nonce",
        "1",
        "--profit",
        "500",
        "--resource",
        "1",
        "--stream",
        "--json",
        "--timeout",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let window_id = json_of(&out)["records"][0]["window_id"].as_u64().unwrap();
    let mut seen = false;
    for line in lines.by_ref() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["type"] == "block" && v["window_id"] == window_id {
            assert_eq!(v["total"], 500);
            assert_eq!(v["entries"][0]["client_id"], 7);
            assert!(v["entries"][0]["rx_ns"].as_u64().is_some_and(|t| t > 0), "{v}");
            seen = true;
            break;
        }
    }
    assert!(seen, "the watcher printed the window of the submitted intent");
    // Ctrl-C stops it with exit 0.
    let int = Command::new("kill").args(["-INT", &watch.id().to_string()]).status().unwrap();
    assert!(int.success());
    for line in lines {
        line.unwrap();
    }
    assert_eq!(watch.wait().unwrap().code(), Some(0));

    // --count stops it (exit 0); human output.
    let out = fpn(&["watch", "--data-dir", d, "--count", "2", "--duration", "120"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().filter(|l| l.contains(": block of")).count(), 2, "{text}");
    assert_eq!(text.lines().filter(|l| l.contains(": clearing of")).count(), 2, "{text}");
    // --duration stops it too.
    let out = fpn(&["watch", "--data-dir", d, "--duration", "0.5"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A stand-in admin endpoint: answers `n` requests with `ready` (200 or 503), metrics and,
/// with `webtransport`, the WebTransport intake's URL (else 404, as with the intake off).
fn admin(ready: bool, n: usize, webtransport: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let mut stream = stream.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let (code, body) = if head.starts_with("GET /health/ready ") {
                if ready {
                    ("200 OK", "ready\n".to_string())
                } else {
                    ("503 Service Unavailable", "starting\n".to_string())
                }
            } else if webtransport && head.starts_with("GET /webtransport ") {
                (
                    "200 OK",
                    format!(
                        r#"{{"url":"https://127.0.0.1:4434/fpn/1","hashes":["{}"],"not_after_unix_s":1}}"#,
                        "ab".repeat(32)
                    ),
                )
            } else if head.starts_with("GET /metrics/json ") {
                let m = r#"{"metrics":[{"name":"fpn_submit_frames_total","type":"counter","help":"h","series":[{"labels":{"shard":"all","outcome":"ok"},"value":12}]}]}"#;
                ("200 OK", m.to_string())
            } else {
                ("404 Not Found", String::new())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {code}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn status_reads_readiness_and_metrics() {
    let addr = admin(true, 3, true);
    let out = fpn(&["status", "--admin", &addr, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!((v["ready"].as_bool(), v["health"].as_str()), (Some(true), Some("ready")));
    assert_eq!(v["metrics"]["metrics"][0]["name"], "fpn_submit_frames_total");
    assert_eq!(v["webtransport"]["url"], "https://127.0.0.1:4434/fpn/1");
    assert_eq!(v["webtransport"]["demo"], format!("http://{addr}/webtransport/demo?key=<api key>"));
    let addr = admin(true, 3, true);
    let text = stdout(&fpn(&["status", "--admin", &addr]));
    let line = format!(
        "webtransport: https://127.0.0.1:4434/fpn/1 (demo page: http://{addr}/webtransport/demo?key=<api key>)"
    );
    assert!(text.contains(&line), "{text}");

    // From <data-dir>/admin.addr, as the daemon writes it; human output; no WebTransport.
    let addr = admin(false, 3, false);
    let dir = std::env::temp_dir().join(format!("fpn-it-{}-status", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("admin.addr"), format!("{addr}\n")).unwrap();
    let out = fpn(&["status", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("not ready (starting)"), "{text}");
    assert!(text.contains("fpn_submit_frames_total{outcome=ok} 12"), "{text}");
    assert!(!text.contains("webtransport"), "{text}");

    // Nobody there.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = fpn(&["status", "--admin", &nobody]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn datagram_records_without_receipts_are_resent() {
    // Every 3rd datagram is lost each way: some records never arrive (their resend is
    // accepted), some receipts never arrive (their resend is refused duplicate_nonce, which
    // means accepted before).
    let config = TestServerConfig { datagram_loss_every: 3, ..TestServerConfig::default() };
    let server = ThreadedTestServer::start(config).unwrap();
    let dir = data_dir(&server, "resend");
    let lines: String = (1..=200)
        .map(|n| format!("{{\"client_id\": 7, \"nonce\": {n}, \"profit\": {n}, \"keys\": [{n}]}}\n"))
        .collect();
    let path = file("lossy.jsonl", &lines);
    let args = ["submit", "--data-dir", dir.to_str().unwrap(), "--input", path.to_str().unwrap()];
    let out = fpn(&[&args[..], &["--json", "--timeout", "60", "--quiet", "0.5", "--resends", "20"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(v["accepted"], 200);
    assert!(v["resends"].as_u64().unwrap() >= 1);
    let statuses: Vec<&str> =
        v["records"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert!(statuses.contains(&"accepted_before"), "{statuses:?}");

    // Without resends the losses show as records without receipts (exit 1).
    let path = file("lossy2.jsonl", &lines.replace("\"client_id\": 7", "\"client_id\": 8"));
    let args = ["submit", "--data-dir", dir.to_str().unwrap(), "--input", path.to_str().unwrap()];
    let out = fpn(&[&args[..], &["--json", "--timeout", "2", "--resends", "0"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json_of(&out);
    assert!(v["no_receipt"].as_u64().unwrap() > 0);
    assert_eq!(v["resends"], 0);
}
