//! Closed-loop QUIC load against a running `flashpointd`: `conns` connections (client ids
//! 1..=conns, `quic.auth = "open"`), each sending `records` intents (two keys of its own each,
//! so no conflicts) over datagrams or one uni stream, at most `in_flight` unanswered, and
//! timing each intent from the send of its frame to its receipt.
//!
//! ```sh
//! cargo run --release -p flashpointd --example quic_load -- <data_dir> <records> <conns> <datagram|stream> [in_flight]
//! ```

use std::time::{Duration, Instant};

use fpn_quic::client::{Client, ClientOptions};
use fpn_wire::{FrameWriter, Intent, RecordRef, decode_frame};

struct Tally {
    latencies: Vec<u64>,
    answered: u64,
    accepted: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: quic_load <data_dir> <records> <conns> <datagram|stream> [in_flight]");
        std::process::exit(2);
    }
    let data = std::path::PathBuf::from(&args[1]);
    let records: u64 = args[2].parse().expect("records");
    let conns: u64 = args[3].parse().expect("conns");
    let datagram = args[4] == "datagram";
    let in_flight: u64 = args.get(5).map_or(4_000, |v| v.parse().expect("in_flight"));
    let addr =
        std::fs::read_to_string(data.join("quic.addr")).expect("quic.addr").trim().parse().expect("addr");
    let pin = fpn_quic::tls::parse_pin(&std::fs::read_to_string(data.join("tls/cert.sha256")).expect("pin"))
        .expect("pin hex");
    let start = Instant::now();
    let threads: Vec<_> = (1..=conns)
        .map(|client| {
            std::thread::spawn(move || {
                let options = ClientOptions {
                    pin,
                    alpn: fpn_wire::session::ALPN.to_vec(),
                    api_key: client.to_string().into_bytes(),
                    flags: 0,
                    timeout: Duration::from_secs(30),
                };
                let mut c = Client::connect(addr, &options).expect("connect");
                let len_max = if datagram { c.datagram_max().min(1_200) } else { 16 * 1024 };
                // Nonces unique across runs against one daemon (its de-duplication remembers them).
                let wall =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let base = (wall.as_millis() as u64) << 24 ^ client << 58;
                let mut sent_at = vec![Instant::now(); records as usize];
                let mut t =
                    Tally { latencies: Vec::with_capacity(records as usize), answered: 0, accepted: 0 };
                let mut nonce = 0u64;
                let take = |c: &mut Client, wait: Duration, sent_at: &[Instant], t: &mut Tally| {
                    if let Some((_, f)) = c.next_frame(wait).expect("connection") {
                        for r in decode_frame(&f).expect("valid frame") {
                            if let RecordRef::Receipt(r) = r {
                                let n = r.nonce.get().wrapping_sub(base) as usize;
                                if n < sent_at.len() {
                                    t.latencies.push(sent_at[n].elapsed().as_nanos() as u64);
                                }
                                t.answered += 1;
                                t.accepted += u64::from(r.status == 0);
                            }
                        }
                    }
                };
                while nonce < records {
                    while nonce - t.answered >= in_flight {
                        take(&mut c, Duration::from_millis(5), &sent_at, &mut t);
                    }
                    let mut buf = Vec::new();
                    let mut w = FrameWriter::new(&mut buf, len_max);
                    let first = nonce;
                    while nonce < records && nonce - t.answered < in_flight {
                        let keys = [client << 40 | nonce << 1, client << 40 | nonce << 1 | 1];
                        let i = Intent {
                            client_id: client,
                            nonce: base + nonce,
                            sent_ns: 0,
                            profit: 1 + nonce % 97,
                            priority: 0,
                            keys: &keys,
                        };
                        if w.push_intent(&i).is_err() {
                            break;
                        }
                        nonce += 1;
                    }
                    w.finish();
                    let now = Instant::now();
                    for s in &mut sent_at[first as usize..nonce as usize] {
                        *s = now;
                    }
                    if datagram {
                        c.send_datagram(&buf).expect("send")
                    } else {
                        c.send_stream(&buf).expect("send")
                    }
                }
                let deadline = Instant::now() + Duration::from_secs(60);
                while t.answered < records && Instant::now() < deadline {
                    take(&mut c, Duration::from_millis(20), &sent_at, &mut t);
                }
                c.close();
                (t.answered, t.accepted, t.latencies)
            })
        })
        .collect();
    let (mut answered, mut accepted, mut latencies) = (0, 0, Vec::new());
    for t in threads {
        let (a, ok, l) = t.join().expect("client thread");
        answered += a;
        accepted += ok;
        latencies.extend(l);
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let q = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
            / 1_000
    };
    println!(
        "{} intents over {conns} connection(s) by {} in {secs:.2} s: {:.0} receipts/s, {accepted} accepted, {answered} answered",
        records * conns,
        if datagram { "datagram" } else { "stream" },
        answered as f64 / secs
    );
    println!(
        "receipt latency (send → receipt): p50 {} us, p99 {} us, p99.9 {} us, max {} us",
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0)
    );
}
