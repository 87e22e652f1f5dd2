//! End-to-end load through the submit path of a running daemon:
//! HTTP `POST /submit` → submit ring → intake → builder/merger rings → receipts back.
//!
//! ```sh
//! cargo run --release -p flashpointd --example submit_load -- 127.0.0.1:9464 2000 500 2
//! #                                                          addr          frames records/frame connections
//! ```
//!
//! Prints records/s (all answered, and accepted) and the per-request latency. Closed loop:
//! each connection thread sends its next frame when the previous answer is in, so this
//! measures the submit path's capacity including HTTP on loopback, not the engine's
//! (see `fpn-runtime`'s ring benches and `fpn-engine`'s for those).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fpn_runtime::metrics::Histogram;
use fpn_wire::{FrameWriter, Intent};

fn post(addr: &str, body: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!("POST /submit HTTP/1.1\r\nHost: l\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(out.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&out[..out.len().min(200)]));
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    out.split_off(split + 4)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:9464".into());
    let frames_n: usize = args.get(2).map_or(2000, |a| a.parse().unwrap());
    let per_frame: usize = args.get(3).map_or(500, |a| a.parse().unwrap());
    let conns: usize = args.get(4).map_or(2, |a| a.parse().unwrap());
    let run_id =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;

    // Prebuilt frames: one client per frame (unique per run), 1-4 keys from a large space.
    let mut rng = fpn_engine::SplitMix64::new(run_id);
    let frames: Vec<Vec<u8>> = (0..frames_n)
        .map(|f| {
            let client = (run_id % 1_000_000) * 1_000_000 + f as u64;
            let mut buf = Vec::new();
            let mut w = FrameWriter::new(&mut buf, u32::MAX as usize);
            for nonce in 1..=per_frame as u64 {
                let keys: Vec<u64> = (0..1 + rng.below(4)).map(|i| (rng.below(1 << 20) << 3) | i).collect();
                let profit = 1 + rng.below(10_000);
                w.push_intent(&Intent {
                    client_id: client,
                    nonce,
                    sent_ns: 0,
                    profit,
                    priority: 0,
                    keys: &keys,
                })
                .unwrap();
            }
            w.finish();
            buf
        })
        .collect();

    let start = Instant::now();
    let results: Vec<(Histogram, u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                let (frames, addr) = (&frames, &addr);
                scope.spawn(move || {
                    let mut latency = Histogram::new();
                    let (mut answered, mut accepted) = (0u64, 0u64);
                    for frame in frames.iter().skip(c).step_by(conns) {
                        let t = Instant::now();
                        let body = post(addr, frame);
                        latency.record(t.elapsed());
                        for record in fpn_wire::decode_frame(&body).unwrap() {
                            if let fpn_wire::RecordRef::Receipt(r) = record {
                                answered += 1;
                                accepted += u64::from(r.status == 0);
                            }
                        }
                    }
                    (latency, answered, accepted)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut latency = Histogram::new();
    let (mut answered, mut accepted) = (0, 0);
    for (h, a, k) in &results {
        latency.merge(h);
        answered += a;
        accepted += k;
    }
    println!(
        "{frames_n} frames x {per_frame} intents over {conns} connection(s) in {elapsed:.2} s: \
         {:.0} records/s answered, {:.0} records/s accepted ({accepted} of {answered})",
        answered as f64 / elapsed,
        accepted as f64 / elapsed
    );
    println!(
        "request latency: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        latency.value_at_quantile_ns(0.5) as f64 / 1e3,
        latency.value_at_quantile_ns(0.99) as f64 / 1e3,
        latency.max_ns() as f64 / 1e3
    );
}
