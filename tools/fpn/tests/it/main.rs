//! `fpn` run as a user would: the built binary, real files, exit codes and output.

mod daemon;
mod probe;
mod real_daemon;
mod tune;

use std::io::Write;
use std::process::{Command, Output};

fn fpn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fpn")).args(args).output().expect("fpn runs")
}

fn file(name: &str, body: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fpn-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().write_all(body.as_bytes()).unwrap();
    path
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// The example of docs/jsonl.md, plus a duplicate nonce and a zero profit.
const INTENTS: &str = r#"{"client_id": 1, "nonce": 1, "profit": 500, "keys": ["pool:ETH/USDC", "acct:alice"]}
{"client_id": 2, "nonce": 1, "profit": 900, "keys": ["pool:ETH/USDC"]}
{"client_id": 3, "nonce": 1, "profit": 450, "keys": ["acct:alice", "pool:BTC/USDC"]}
# a comment, then two lines the engine refuses
{"client_id": 3, "nonce": 1, "profit": 450, "keys": ["x"]}
{"client_id": 4, "nonce": 1, "profit": 0, "keys": [7]}
"#;

#[test]
fn build_matches_the_documented_example() {
    let path = file("intents.jsonl", INTENTS);
    let v = json(&fpn(&["build", "--input", path.to_str().unwrap(), "--json"]));
    assert_eq!(v["total"], 1350);
    assert_eq!(v["fifo_total"], 500);
    assert_eq!(v["surplus"], 850);
    assert_eq!(v["fee"], 85);
    assert_eq!(v["exact"], true);
    let lines: Vec<u64> =
        v["entries"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![2, 3]);
    let payouts: u64 = v["entries"].as_array().unwrap().iter().map(|e| e["payout"].as_u64().unwrap()).sum();
    assert_eq!(payouts + 85, 1350);
    let rejected: Vec<(u64, String)> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(rejected, vec![(5, "duplicate_nonce".to_string()), (6, "zero_amount".to_string())]);
    // FIFO as the builder publishes the baseline: no surplus, no fee.
    let v = json(&fpn(&["build", "--input", path.to_str().unwrap(), "--json", "--builder", "fifo"]));
    assert_eq!(
        (v["total"].as_u64(), v["surplus"].as_u64(), v["fee"].as_u64()),
        (Some(500), Some(0), Some(0))
    );
}

const BIDS: &str = r#"{"client_id": 1, "nonce": 1, "amount": 900, "priority": 1, "at_ms": 0}
{"client_id": 2, "nonce": 1, "amount": 700, "priority": 0, "at_ms": 5}
{"client_id": 3, "nonce": 1, "amount": 400, "priority": 0, "at_ms": 9}
"#;

#[test]
fn clear_matches_the_documented_example_and_honours_every_flag() {
    let path = file("bids.jsonl", BIDS);
    let p = path.to_str().unwrap();
    let v = json(&fpn(&["clear", "--input", p, "--top-k", "2", "--pricing", "uniform", "--json"]));
    let prices: Vec<(u64, u64)> = v["winners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["client_id"].as_u64().unwrap(), w["price"].as_u64().unwrap()))
        .collect();
    assert_eq!(prices, vec![(2, 700), (3, 400)]);
    assert_eq!(v["uniform_price"], 900);
    // Amount order, reserve 500: 900 and 700 win, 400 is not eligible.
    let v = json(&fpn(&["clear", "--input", p, "--order", "amount-desc", "--reserve", "500", "--json"]));
    assert_eq!(v["eligible"], 2);
    assert_eq!(v["revenue"], 1600);
    // Budget cap 1000: 900 is taken under amount order; 700 would pass the cap and is skipped.
    let v = json(&fpn(&["clear", "--input", p, "--order", "amount-desc", "--budget-cap", "1000", "--json"]));
    let amounts: Vec<u64> =
        v["winners"].as_array().unwrap().iter().map(|w| w["amount"].as_u64().unwrap()).collect();
    assert_eq!(amounts, vec![900]);
    // Recency 5 ms at now 9: the bid at 0 ms is too old.
    let v = json(&fpn(&["clear", "--input", p, "--recency-ms", "5", "--json"]));
    assert_eq!(v["expired"], 1);
    assert_eq!(v["winners"].as_array().unwrap().len(), 2);
}

#[test]
fn sim_is_deterministic_per_seed_and_reports_every_builder() {
    let a = fpn(&["sim", "--windows", "3", "--intents", "300", "--seed", "9", "--json"]);
    let b = fpn(&["sim", "--windows", "3", "--intents", "300", "--seed", "9", "--json"]);
    assert_eq!(a.stdout, b.stdout);
    let v = json(&a);
    let t = &v["total"];
    let (fifo, greedy, improved, bound) = (
        t["fifo"].as_u64().unwrap(),
        t["greedy"].as_u64().unwrap(),
        t["improved"].as_u64().unwrap(),
        t["upper_bound"].as_u64().unwrap(),
    );
    assert!(improved >= greedy && improved >= fifo && bound >= improved, "{t}");
    assert_eq!(v["windows"].as_array().unwrap().len(), 3);
    let human = fpn(&["sim", "--windows", "2", "--intents", "50"]);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("greedy vs fifo") && text.contains("upper_bound"), "{text}");
}

#[test]
fn bad_input_and_flags_exit_2_with_a_message() {
    let bad_json =
        file("bad.jsonl", "{\"client_id\": 1, \"nonce\": 1, \"profit\": 5, \"keys\": [1]}\n{not json}\n");
    let out = fpn(&["build", "--input", bad_json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = fpn(&["sim", "--fee-rate", "1.5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fee_rate must be within [0, 1]"));

    let out = fpn(&["sim", "--keys-min", "9", "--keys-max", "2"]);
    assert_eq!(out.status.code(), Some(2));

    let out = fpn(&["build", "--input", "/nonexistent/file.jsonl"]);
    assert_eq!(out.status.code(), Some(2));

    let path = file("bids2.jsonl", BIDS);
    let out = fpn(&["clear", "--input", path.to_str().unwrap(), "--top-k", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = fpn(&["clear", "--input", path.to_str().unwrap(), "--now-ms", "3"]);
    assert_eq!(out.status.code(), Some(2), "bids after --now-ms are an input error");
}

#[test]
fn zk_setup_prove_verify_and_refuse_a_tampered_input() {
    let dir = std::env::temp_dir().join(format!("fpn-it-zk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keys = dir.join("keys");
    let out = dir.join("out");
    let intents = file("zk-intents.jsonl", INTENTS);
    // The bids use nonces the intents do not (intents and bids share a client's nonce space).
    let bids = file("zk-bids.jsonl", &BIDS.replace("\"nonce\": 1", "\"nonce\": 2"));
    let setup = fpn(&["zk", "setup", "--keys", keys.to_str().unwrap()]);
    assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));
    let v = json(&fpn(&[
        "zk",
        "prove",
        "--keys",
        keys.to_str().unwrap(),
        "--intents",
        intents.to_str().unwrap(),
        "--bids",
        bids.to_str().unwrap(),
        "--pricing",
        "uniform",
        "--top-k",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(
        (v["entries"].as_u64(), v["winners"].as_u64(), v["fee"].as_u64()),
        (Some(2), Some(2), Some(85))
    );
    let ok = fpn(&["zk", "verify", "--dir", out.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "valid\n");
    // Claim a different window id: the proof no longer verifies.
    let public = out.join("public.json");
    let mut inputs: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&public).unwrap()).unwrap();
    inputs[0] = "999".to_string();
    std::fs::write(&public, serde_json::to_string(&inputs).unwrap()).unwrap();
    let bad = fpn(&["zk", "verify", "--dir", out.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("INVALID"));
    // A window larger than the circuit is refused, not partly proven.
    let many: String = (0..70)
        .map(|n| format!("{{\"client_id\": 9, \"nonce\": {n}, \"profit\": 5, \"keys\": [{n}]}}\n"))
        .collect();
    let big = file("zk-big.jsonl", &many);
    let refused = fpn(&[
        "zk",
        "prove",
        "--keys",
        keys.to_str().unwrap(),
        "--intents",
        big.to_str().unwrap(),
        "--out",
        dir.join("big").to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("holds 64"));
}
