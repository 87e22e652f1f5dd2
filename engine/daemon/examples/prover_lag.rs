//! Paced load on a running daemon, then its prover figures: the proof lag
//! (`fpn_prover_lag_seconds`: window close → proof ready), proof times by phase, and what was
//! proven, coalesced and skipped.
//!
//! ```sh
//! cargo run --release -p flashpointd &                      # defaults: 20 ms windows, coalesce
//! cargo run --release -p flashpointd --example prover_lag -- 127.0.0.1:9464 60 20 4 1
//! #                                                          addr   seconds interval_ms intents bids
//! ```
//!
//! Open loop: one frame of `intents` intents and `bids` bids every `interval_ms`, keys drawn
//! from 2^40 (no conflicts), so windows stay within the circuit's 64 entries and 16 winners.
//! After the load it waits until the pool's queue is empty (at most 60 s) and prints the
//! `fpn_prover_*` series of `/metrics/json`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fpn_engine::SplitMix64;
use fpn_wire::{Bid, FrameWriter, Intent};
use serde_json::Value;

fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: l\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(out.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&out[..out.len().min(200)]));
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    out.split_off(split + 4)
}

fn prover_metrics(addr: &str) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&http(addr, "GET", "/metrics/json", b"")).unwrap();
    v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"].as_str().unwrap().starts_with("fpn_prover_"))
        .cloned()
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:9464".into());
    let seconds: u64 = args.get(2).map_or(60, |a| a.parse().unwrap());
    let interval = Duration::from_millis(args.get(3).map_or(20, |a| a.parse().unwrap()));
    let intents: u64 = args.get(4).map_or(4, |a| a.parse().unwrap());
    let bids: u64 = args.get(5).map_or(1, |a| a.parse().unwrap());

    let mut rng = SplitMix64::new(std::process::id().into());
    let client = 1_000 + rng.below(1 << 20);
    let mut nonce = rng.below(1 << 30) << 16;
    let start = Instant::now();
    let mut next = start;
    let mut frames = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        let mut buf = Vec::new();
        let mut w = FrameWriter::new(&mut buf, 1 << 16);
        for _ in 0..intents {
            nonce += 1;
            let keys = [rng.below(1 << 40), rng.below(1 << 40)];
            let profit = 1 + rng.below(10_000);
            w.push_intent(&Intent { client_id: client, nonce, sent_ns: 0, profit, priority: 0, keys: &keys })
                .unwrap();
        }
        for _ in 0..bids {
            nonce += 1;
            let amount = 1 + rng.below(1_000);
            w.push_bid(&Bid { client_id: client, nonce, sent_ns: 0, amount, priority: 0 }).unwrap();
        }
        w.finish();
        http(&addr, "POST", "/submit", &buf);
        frames += 1;
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    eprintln!(
        "sent {frames} frames in {:.1} s; waiting for the pool to drain",
        start.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = prover_metrics(&addr);
        let gauge = |name: &str| {
            m.iter().find(|x| x["name"] == name).map_or(0, |x| x["series"][0]["value"].as_i64().unwrap_or(0))
        };
        if (gauge("fpn_prover_queue_windows") == 0 && gauge("fpn_prover_workers_busy") == 0)
            || Instant::now() > deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for m in prover_metrics(&addr) {
        for s in m["series"].as_array().unwrap() {
            let mut s = s.clone();
            let mut labels = s.as_object_mut().unwrap().remove("labels").unwrap();
            if labels["shard"] == "all" {
                continue;
            }
            labels.as_object_mut().unwrap().remove("shard");
            println!("{} {} {}", m["name"].as_str().unwrap(), labels, s);
        }
    }
}
