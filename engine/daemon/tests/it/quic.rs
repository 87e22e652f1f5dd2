//! The QUIC intake of the real daemon on loopback: intents over datagrams and over a stream,
//! every one answered and every accepted one in exactly one block; refusals with reasons.
//!
//! Counts: `FPN_IT_QUIC_RECORDS` intents per path (default 100,000).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use fpn_quic::client::{Client, ClientOptions, Origin};
use fpn_wire::session::{ALPN, reason_of_app_error};
use fpn_wire::{FrameWriter, Intent, Reason, RecordRef, decode_frame};

use crate::daemon::{Daemon, config_text, metric_sum, scratch_dir};

fn records_n() -> usize {
    std::env::var("FPN_IT_QUIC_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

fn start(name: &str, quic: &str) -> (Daemon, SocketAddr, [u8; 32]) {
    let dir = scratch_dir(name);
    let text = config_text(&dir.join("data"), 20, 1).replace(
        "[quic]\nlisten = \"127.0.0.1:0\"\n",
        &format!("[quic]\nlisten = \"127.0.0.1:0\"\n{quic}\n"),
    );
    let d = Daemon::start_text(dir, &text, &[]);
    let data = d.dir.join("data");
    let addr = std::fs::read_to_string(data.join("quic.addr")).unwrap().trim().parse().unwrap();
    let pin =
        fpn_quic::tls::parse_pin(&std::fs::read_to_string(data.join("tls/cert.sha256")).unwrap()).unwrap();
    (d, addr, pin)
}

pub fn options(pin: [u8; 32], key: &str) -> ClientOptions {
    ClientOptions {
        pin,
        alpn: ALPN.to_vec(),
        api_key: key.as_bytes().to_vec(),
        flags: 0,
        timeout: Duration::from_secs(30),
    }
}

/// Frames of intents of `client`, nonces from `first`, each intent with two keys of its own
/// (no conflicts: every accepted intent must make its block), at most `len_max` bytes each.
fn intent_frames(client: u64, first: u64, count: usize, len_max: usize) -> Vec<(Vec<u8>, usize)> {
    frames_of(client, &(first..first + count as u64).collect::<Vec<_>>(), len_max)
}

/// [`intent_frames`] for the given nonces.
fn frames_of(client: u64, nonces: &[u64], len_max: usize) -> Vec<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < nonces.len() {
        let mut buf = Vec::new();
        let mut w = FrameWriter::new(&mut buf, len_max);
        while let Some(&nonce) = nonces.get(k) {
            let keys = [client << 40 | nonce << 1, client << 40 | nonce << 1 | 1];
            let intent = Intent {
                client_id: client,
                nonce,
                sent_ns: 1,
                profit: 1 + nonce % 1000,
                priority: 0,
                keys: &keys,
            };
            if w.push_intent(&intent).is_err() {
                break;
            }
            k += 1;
        }
        let n = w.count() as usize;
        w.finish();
        out.push((buf, n));
    }
    out
}

/// [`send_all`] of `count` intents from nonce 1, then again for the records answered
/// `overloaded` (the engine refuses datagram records while its rings are full, and the
/// client may retry the same nonce) until none is. Returns the receipts and the rounds.
fn send_retrying(
    c: &mut Client,
    client: u64,
    count: usize,
    len_max: usize,
    datagram: bool,
    in_flight_max: usize,
) -> (Seen, usize) {
    let mut seen = send_all(c, &intent_frames(client, 1, count, len_max), datagram, in_flight_max);
    for round in 1.. {
        let over: Vec<u64> =
            seen.receipts.iter().filter(|(_, r)| r.0 == Err(Reason::Overloaded)).map(|(n, _)| *n).collect();
        if over.is_empty() {
            return (seen, round);
        }
        assert!(round < 100, "{} records still overloaded after {round} rounds", over.len());
        for n in &over {
            seen.receipts.remove(n);
        }
        let again = send_all(c, &frames_of(client, &over, len_max), datagram, in_flight_max);
        seen.by_datagram += again.by_datagram;
        seen.by_stream += again.by_stream;
        seen.repeated += again.repeated;
        for (seq, k) in again.block_seqs {
            *seen.block_seqs.entry(seq).or_default() += k;
        }
        seen.receipts.extend(again.receipts);
        seen.receipt_rx.extend(again.receipt_rx);
        seen.block_rx.extend(again.block_rx);
        seen.frames_refused.extend(again.frames_refused);
    }
    unreachable!()
}

#[derive(Debug, Default)]
struct Seen {
    /// nonce → (status, seq, window_id).
    receipts: HashMap<u64, (Result<(), Reason>, u64, u64)>,
    frames_refused: Vec<Reason>,
    /// Every block entry seen on the result stream: seq → times seen.
    block_seqs: HashMap<u64, usize>,
    /// seq → rx_ns, of the accepted receipts and of the block entries.
    receipt_rx: HashMap<u64, u64>,
    block_rx: HashMap<u64, u64>,
    blocks: usize,
    by_datagram: usize,
    by_stream: usize,
    /// Receipts for a nonce already answered (a record sent twice).
    repeated: usize,
}

impl Seen {
    fn take(&mut self, origin: Origin, frame: &[u8]) {
        match origin {
            Origin::Datagram => self.by_datagram += 1,
            Origin::ResultStream => self.by_stream += 1,
        }
        for record in decode_frame(frame).expect("the server sends valid frames") {
            match record {
                RecordRef::Receipt(r) => {
                    let status = match r.status {
                        0 => Ok(()),
                        c => Err(Reason::from_code(c).unwrap()),
                    };
                    if r.for_kind == 0 {
                        self.frames_refused.push(status.unwrap_err());
                    } else {
                        if status.is_ok() {
                            self.receipt_rx.insert(r.seq.get(), r.rx_ns.get());
                        }
                        let prev =
                            self.receipts.insert(r.nonce.get(), (status, r.seq.get(), r.window_id.get()));
                        if prev.is_some() {
                            self.repeated += 1;
                        }
                    }
                }
                RecordRef::Block(b) => {
                    self.blocks += 1;
                    for e in b.entries {
                        *self.block_seqs.entry(e.seq.get()).or_default() += 1;
                        self.block_rx.insert(e.seq.get(), e.rx_ns.get());
                    }
                }
                _ => {}
            }
        }
    }

    fn answered(&self) -> usize {
        self.receipts.len() + self.frames_refused.len() + self.repeated
    }
}

/// Sends `frames` (datagrams or the data stream) keeping at most `in_flight_max` records
/// unanswered, then waits for the rest of the receipts.
fn send_all(c: &mut Client, frames: &[(Vec<u8>, usize)], datagram: bool, in_flight_max: usize) -> Seen {
    let mut seen = Seen::default();
    let total: usize = frames.iter().map(|f| f.1).sum();
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    for (frame, n) in frames {
        while sent - seen.answered() + n > in_flight_max {
            assert!(Instant::now() < deadline, "stalled at {} of {sent} answered", seen.answered());
            if let Some((o, f)) = c.next_frame(Duration::from_millis(20)).unwrap() {
                seen.take(o, &f);
            }
        }
        if datagram {
            c.send_datagram(frame).unwrap();
        } else {
            c.send_stream(frame).unwrap();
        }
        sent += n;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.answered() < total {
        assert!(Instant::now() < deadline, "{} of {total} answered; lost {:?}", seen.answered(), c.lost());
        if let Some((o, f)) = c.next_frame(Duration::from_millis(50)).unwrap() {
            seen.take(o, &f);
        }
    }
    seen
}

/// Reads the result stream until every accepted seq of `seen` was in a block.
fn await_blocks(c: &mut Client, seen: &mut Seen) {
    let accepted: Vec<u64> = seen.receipts.values().filter(|r| r.0.is_ok()).map(|r| r.1).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !accepted.iter().all(|s| seen.block_seqs.contains_key(s)) {
        assert!(Instant::now() < deadline, "blocks missing after 60 s");
        if let Some((o, f)) = c.next_frame(Duration::from_millis(50)).unwrap() {
            seen.take(o, &f);
        }
    }
    for s in &accepted {
        assert_eq!(seen.block_seqs[s], 1, "seq {s} in one block on the result stream");
        // The datagram's kernel timestamp, in the receipt and in the block entry.
        assert_eq!(
            seen.block_rx.get(s),
            seen.receipt_rx.get(s),
            "seq {s}: the block carries the receipt's rx_ns"
        );
    }
}

#[test]
fn quic_datagrams_and_streams_every_record_answered_and_in_one_block() {
    let n = records_n();
    let (mut d, addr, pin) = start("quic-volume", "rate_per_s = 0");
    let mut a = Client::connect(addr, &options(pin, "11")).unwrap();
    let welcome = a.welcome.unwrap();
    assert_eq!((welcome.status, welcome.client_id), (Ok(()), 11));
    let len_max = (welcome.datagram_frame_max as usize).min(a.datagram_max());
    let t = Instant::now();
    let (mut by_dgram, dgram_rounds) = send_retrying(&mut a, 11, n, len_max, true, 1_000);
    let dgram_s = t.elapsed().as_secs_f64();
    let mut b = Client::connect(addr, &options(pin, "12")).unwrap();
    let t = Instant::now();
    let (mut by_stream, stream_rounds) = send_retrying(&mut b, 12, n, 16 * 1024, false, 8_000);
    let stream_s = t.elapsed().as_secs_f64();
    eprintln!(
        "quic: {n} intents by datagram in {dgram_s:.2} s ({:.0}/s, {dgram_rounds} rounds), {n} by stream in \
         {stream_s:.2} s ({:.0}/s, {stream_rounds} rounds)",
        n as f64 / dgram_s,
        n as f64 / stream_s
    );
    // Stream frames wait for room rather than being refused.
    assert_eq!(stream_rounds, 1, "stream records are never answered overloaded");
    for (name, seen) in [("datagram", &by_dgram), ("stream", &by_stream)] {
        assert_eq!(seen.receipts.len(), n, "{name}: one receipt per intent");
        assert!(seen.frames_refused.is_empty(), "{name}: {:?}", seen.frames_refused);
        assert_eq!(seen.repeated, 0, "{name}: one receipt per nonce");
        let refused: Vec<_> = seen.receipts.values().filter(|r| r.0.is_err()).take(5).collect();
        assert!(refused.is_empty(), "{name}: refused {refused:?}");
    }
    assert!(by_dgram.by_datagram > 0, "datagram records are answered by datagram");
    assert_eq!(by_stream.by_datagram, 0, "stream records are answered on the result stream");
    await_blocks(&mut a, &mut by_dgram);
    await_blocks(&mut b, &mut by_stream);

    // Every accepted intent is in exactly one published block: one receive → published
    // sample each (the merger's series; `shard="all"` repeats it).
    let rx_to_publish = "fpn_window_rx_to_publish_seconds_count{shard=\"merger\"}";
    let metrics = d.metrics_until(|m| metric_sum(m, rx_to_publish) >= 2 * n as u64);
    assert!(metric_sum(&metrics, "fpn_quic_frames_total") > 0);
    assert!(metric_sum(&metrics, "fpn_quic_rx_to_ring_latency_seconds_count") >= 2 * n as u64);
    assert_eq!(metric_sum(&metrics, rx_to_publish), 2 * n as u64, "{metrics}");
    a.close();
    b.close();
    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());

    // The journal: every accepted seq in exactly one block.
    let mut in_blocks: BTreeMap<u64, usize> = BTreeMap::new();
    for w in d.journal() {
        for e in w["block"]["entries"].as_array().unwrap() {
            *in_blocks.entry(e["seq"].as_u64().unwrap()).or_default() += 1;
        }
    }
    let accepted: HashSet<u64> =
        by_dgram.receipts.values().chain(by_stream.receipts.values()).map(|r| r.1).collect();
    assert_eq!(accepted.len(), 2 * n);
    for s in &accepted {
        assert_eq!(in_blocks.get(s), Some(&1), "seq {s} in exactly one journal block");
    }
    assert_eq!(in_blocks.len(), 2 * n, "nothing else in the blocks");
}

#[test]
fn quic_refusals_keys_rate_limits_and_malformed_records() {
    let dir = scratch_dir("quic-keys-file");
    let keys = dir.join("keys");
    std::fs::write(&keys, "# client api-key\n21 key-twenty-one\n22 key-twenty-two\n").unwrap();
    let quic = format!(
        "auth = \"keys\"\nkeys_file = {:?}\nrate_per_s = 200\nburst = 100",
        keys.display().to_string()
    );
    let (mut d, addr, pin) = start("quic-refusals", &quic);

    // A wrong key: refused welcome, then the close with 0x100 + unauthorized.
    let mut bad = Client::connect(addr, &options(pin, "key-twenty-three")).unwrap();
    assert_eq!(bad.welcome.unwrap().status, Err(Reason::Unauthorized));
    let deadline = Instant::now() + Duration::from_secs(20);
    while bad.lost().is_none() && Instant::now() < deadline {
        bad.drive(Duration::from_millis(10)).unwrap();
    }
    match bad.lost() {
        Some(fpn_quic::quinn_proto::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(reason_of_app_error(c.error_code.into_inner()), Some(Reason::Unauthorized))
        }
        other => panic!("{other:?}"),
    }
    // The open-mode key form is no key here.
    assert_eq!(
        Client::connect(addr, &options(pin, "21")).unwrap().welcome.unwrap().status,
        Err(Reason::Unauthorized)
    );
    // A wrong ALPN fails the handshake.
    let mut wrong_alpn = options(pin, "key-twenty-one");
    wrong_alpn.alpn = b"h3".to_vec();
    wrong_alpn.timeout = Duration::from_secs(10);
    assert!(Client::connect(addr, &wrong_alpn).is_err());
    // Garbage UDP at the port: counted, nothing answers, nobody is hurt.
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..50u8 {
        junk.send_to(&[i & 0x3f; 100], addr).unwrap();
        junk.send_to(&[], addr).unwrap();
    }

    // A flooding client against its bucket (burst 100, 200/s) while a second client's
    // intents, paced under its own bucket, all land.
    let mut flood = Client::connect(addr, &options(pin, "key-twenty-one")).unwrap();
    let mut calm = Client::connect(addr, &options(pin, "key-twenty-two")).unwrap();
    assert_eq!(calm.welcome.unwrap().client_id, 22);
    let flood_seen = send_all(&mut flood, &intent_frames(21, 1, 3_000, 1_200), true, 3_000);
    let limited = flood_seen.receipts.values().filter(|r| r.0 == Err(Reason::RateLimited)).count();
    let ok = flood_seen.receipts.values().filter(|r| r.0.is_ok()).count();
    assert_eq!(limited + ok, 3_000);
    assert!(limited >= 1_500, "flood: {ok} ok, {limited} rate_limited");
    let mut calm_seen = Seen::default();
    for f in intent_frames(22, 1, 200, 1_200).chunks(1) {
        calm_seen = merge(calm_seen, send_all(&mut calm, f, true, 100));
        std::thread::sleep(Duration::from_millis(60));
    }
    assert_eq!(calm_seen.receipts.len(), 200);
    assert!(
        calm_seen.receipts.values().all(|r| r.0.is_ok()),
        "{:?}",
        calm_seen.receipts.values().find(|r| r.0.is_err())
    );

    // Malformed records, each with its documented reason.
    std::thread::sleep(Duration::from_millis(600)); // refill calm's bucket
    let mut frame = Vec::new();
    let mut w = FrameWriter::new(&mut frame, 1_200);
    let k = [1u64 << 50];
    w.push_intent(&Intent { client_id: 22, nonce: 1_001, sent_ns: 1, profit: 0, priority: 0, keys: &k })
        .unwrap();
    w.push_intent(&Intent { client_id: 22, nonce: 1_002, sent_ns: 1, profit: 5, priority: 0, keys: &[7, 7] })
        .unwrap();
    w.push_intent(&Intent { client_id: 21, nonce: 1_003, sent_ns: 1, profit: 5, priority: 0, keys: &k })
        .unwrap();
    w.push_intent(&Intent {
        client_id: 22,
        nonce: 1_004,
        sent_ns: 1,
        profit: 5,
        priority: 0,
        keys: &[1 << 51],
    })
    .unwrap();
    w.push_intent(&Intent {
        client_id: 22,
        nonce: 1_004,
        sent_ns: 1,
        profit: 5,
        priority: 0,
        keys: &[1 << 52],
    })
    .unwrap();
    w.finish();
    let seen = send_all(&mut calm, &[(frame.clone(), 5)], true, 10);
    assert_eq!(seen.receipts[&1_001].0, Err(Reason::ZeroAmount));
    assert_eq!(seen.receipts[&1_002].0, Err(Reason::DuplicateResource));
    assert_eq!(seen.receipts[&1_003].0, Err(Reason::ClientMismatch));
    // The first 1_004 is accepted; its repeat in the same frame is the duplicate (receipts
    // are keyed by nonce here, so the later one is what remains).
    assert_eq!(seen.receipts[&1_004].0, Err(Reason::DuplicateNonce));
    // Whole-frame refusals: an unknown record version, a truncated datagram, bad magic.
    let mut version = frame.clone();
    version[13] = 9;
    let truncated = frame[..frame.len() - 5].to_vec();
    let mut magic = frame.clone();
    magic[0] = b'X';
    let whole = [(version, 1), (truncated, 1), (magic, 1)];
    let seen = send_all(&mut calm, &whole, true, 10);
    let mut reasons = seen.frames_refused.clone();
    reasons.sort_by_key(|r| r.code());
    assert_eq!(reasons, vec![Reason::BadMagic, Reason::UnsupportedVersion, Reason::Truncated]);

    let counted = |metrics: &str| {
        [
            metric_sum(metrics, "fpn_quic_udp_garbage_total") >= 50,
            rejected(metrics, "rate_limited") >= limited as u64,
            rejected(metrics, "client_mismatch") >= 1 && rejected(metrics, "bad_magic") >= 1,
            metric_sum(metrics, "fpn_quic_sessions_total") >= 4,
        ]
    };
    let metrics = d.metrics_until(|m| counted(m).iter().all(|&ok| ok));
    assert_eq!(
        counted(&metrics),
        [true; 4],
        "garbage, rate_limited, client_mismatch and bad_magic, sessions: {metrics}"
    );
    flood.close();
    calm.close();
    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());
}

/// `fpn_records_rejected_total` for `reason`, over every shard.
fn rejected(metrics: &str, reason: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("fpn_records_rejected_total") && l.contains(&format!("reason=\"{reason}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

fn merge(mut a: Seen, b: Seen) -> Seen {
    a.receipts.extend(b.receipts);
    a.frames_refused.extend(b.frames_refused);
    a
}

/// The client library of the other side (`fpn-client`, quinn on tokio) against this server:
/// receipts by datagram and on the result stream, and the blocks of its windows.
#[test]
fn fpn_client_library_against_the_daemon() {
    use fpn_client::{BlockingClient, ClientConfig, Event, Fingerprint, Trust, Via};

    let (mut d, addr, pin) = start("quic-fpn-client", "rate_per_s = 0");
    let mut config = ClientConfig::new(addr, Trust::Pin(Fingerprint(pin)), "31");
    config.reconnect = None;
    let c = BlockingClient::connect(config).unwrap();
    assert_eq!(c.client_id(), Some(31));
    let n = 5_000;
    // nonce → (status, seq, via)
    let mut receipts: HashMap<u64, (Result<(), Reason>, u64, Via)> = HashMap::new();
    let mut block_seqs: HashMap<u64, usize> = HashMap::new();
    let take = |c: &BlockingClient,
                wait: Duration,
                receipts: &mut HashMap<_, _>,
                blocks: &mut HashMap<u64, usize>| {
        match c.recv_event_timeout(wait) {
            Some(Event::Receipt { receipt, via }) => {
                assert!(receipts.insert(receipt.nonce, (receipt.status, receipt.seq, via)).is_none());
            }
            Some(Event::Block(b)) => {
                for e in &b.entries {
                    *blocks.entry(e.seq).or_default() += 1;
                }
            }
            Some(Event::Closed { error }) => panic!("closed: {error:?}"),
            Some(Event::BadFrame { via, reason }) => {
                panic!("bad frame from the server via {via:?}: {reason:?}")
            }
            _ => {}
        }
    };
    let plan = [
        (intent_frames(31, 1, n, 1_000), Via::Datagram),
        (intent_frames(31, 100_001, n, 16 * 1024), Via::Stream),
    ];
    let mut sent = 0;
    for (frames, via) in &plan {
        for (f, k) in frames {
            let deadline = Instant::now() + Duration::from_secs(60);
            while sent - receipts.len() > 1_000 {
                assert!(Instant::now() < deadline, "receipts stalled at {}", receipts.len());
                take(&c, Duration::from_millis(20), &mut receipts, &mut block_seqs);
            }
            c.send_frame(f, *via).unwrap();
            sent += k;
        }
    }
    // Datagram records answered `overloaded` (the engine's rings were full) are sent again
    // with the same nonces, as a client should, until none is.
    for round in 0.. {
        let deadline = Instant::now() + Duration::from_secs(60);
        while receipts.len() < 2 * n {
            assert!(Instant::now() < deadline, "{} receipts of {}", receipts.len(), 2 * n);
            take(&c, Duration::from_millis(20), &mut receipts, &mut block_seqs);
        }
        let over: Vec<u64> = receipts
            .iter()
            .filter(|(_, r)| r.0 == Err(Reason::Overloaded))
            .map(|(nonce, _)| *nonce)
            .collect();
        if over.is_empty() {
            break;
        }
        assert!(round < 100, "{} records still overloaded", over.len());
        assert!(over.iter().all(|&nonce| nonce < 100_001), "stream records wait, never overloaded");
        for nonce in &over {
            receipts.remove(nonce);
        }
        for (f, _) in frames_of(31, &over, 1_000) {
            c.send_frame(&f, Via::Datagram).unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let accepted: Vec<u64> = receipts.values().filter(|r| r.0.is_ok()).map(|r| r.1).collect();
        if receipts.len() == 2 * n && accepted.iter().all(|s| block_seqs.contains_key(s)) {
            break;
        }
        assert!(Instant::now() < deadline, "{} receipts, {} block entries", receipts.len(), block_seqs.len());
        take(&c, Duration::from_millis(20), &mut receipts, &mut block_seqs);
    }
    assert!(receipts.values().all(|r| r.0.is_ok()), "{:?}", receipts.values().find(|r| r.0.is_err()));
    let by_datagram = receipts.iter().filter(|(nonce, r)| **nonce < 100_001 && r.2 == Via::Datagram).count();
    assert!(by_datagram > 0, "datagram records answered by datagram");
    assert!(receipts.iter().filter(|(nonce, _)| **nonce >= 100_001).all(|(_, r)| r.2 == Via::Stream));
    assert!(block_seqs.values().all(|&k| k == 1), "each block once");
    c.close();
    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());
}

/// Receipt mode `refusals` through `fpn-client`: `n` intents by datagram and `n` on the
/// stream, every tenth of another client (refused `client_mismatch`). Only refusals come as
/// receipts; every accepted intent is confirmed by a watermark (`Ledger`), and the client
/// resends what no answer covers (datagrams lost or answered `overloaded`) until every
/// nonce is answered.
#[test]
fn quic_receipt_mode_refusals_confirms_every_accepted_record() {
    use fpn_client::{
        BlockingClient, ClientConfig, Event, Fingerprint, Ledger, Outcome, ReceiptMode, Trust, Via,
    };

    let (mut d, addr, pin) = start("quic-receipt-mode-refusals", "rate_per_s = 0");
    let mut config = ClientConfig::new(addr, Trust::Pin(Fingerprint(pin)), "33");
    config.reconnect = None;
    config.receipts = ReceiptMode::Refusals;
    let c = BlockingClient::connect(config).unwrap();
    let n = 5_000u64;
    let foreign = |nonce: u64| nonce.is_multiple_of(10);
    // Intents of client 33, but of client 34 for the foreign nonces; two keys of their own.
    let frames = |nonces: &[u64], len_max: usize| -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = nonces;
        while !rest.is_empty() {
            let mut buf = Vec::new();
            let mut w = FrameWriter::new(&mut buf, len_max);
            while let Some((&nonce, tail)) = rest.split_first() {
                let keys = [33u64 << 40 | nonce << 1, 33u64 << 40 | nonce << 1 | 1];
                let client_id = if foreign(nonce) { 34 } else { 33 };
                let intent = Intent { client_id, nonce, sent_ns: 1, profit: 5, priority: 0, keys: &keys };
                if w.push_intent(&intent).is_err() {
                    break;
                }
                rest = tail;
            }
            w.finish();
            out.push(buf);
        }
        out
    };
    let mut ledger = Ledger::new();
    let mut outcomes: HashMap<u64, Outcome> = HashMap::new();
    let mut resent: HashSet<u64> = HashSet::new();
    let (mut watermarks, mut accepted) = (0, Vec::new());
    let mut take = |wait: Duration, ledger: &mut Ledger, outcomes: &mut HashMap<u64, Outcome>| -> bool {
        match c.recv_event_timeout(wait) {
            Some(Event::Receipt { receipt, via }) => {
                assert!(receipt.status.is_err(), "an accepted intent got a receipt: {receipt:?}");
                assert_eq!(via, Via::Stream, "refusals go on the result stream");
                // `None`: the second answer of a nonce sent twice (a resend that crossed the
                // first copy's answer).
                if let Some((nonce, outcome)) = ledger.handle_receipt(&receipt) {
                    outcomes.insert(nonce, outcome);
                }
            }
            Some(Event::Watermark(w)) => {
                watermarks += 1;
                accepted.clear();
                ledger.handle_watermark(w.path, w.ranges.iter().copied(), &mut accepted);
                outcomes.extend(accepted.iter().map(|&nonce| (nonce, Outcome::Accepted)));
            }
            Some(Event::Closed { error }) => panic!("closed: {error:?}"),
            Some(Event::Disconnected { error, .. }) => panic!("disconnected: {error}"),
            Some(Event::BadFrame { via, reason }) => panic!("bad frame via {via:?}: {reason:?}"),
            Some(_) => {}
            None => return false,
        }
        true
    };
    let dgram: Vec<u64> = (1..=n).collect();
    let stream: Vec<u64> = (100_001..100_001 + n).collect();
    let plan =
        [(frames(&dgram, 1_000), &dgram, Via::Datagram), (frames(&stream, 16 * 1024), &stream, Via::Stream)];
    for (batch, nonces, via) in &plan {
        nonces.iter().for_each(|&nonce| ledger.sent(via.path(), nonce));
        for f in batch {
            c.send_frame(f, *via).unwrap();
            while take(Duration::ZERO, &mut ledger, &mut outcomes) {}
        }
    }
    for round in 0.. {
        // Until every nonce is answered, or the answers pause while only datagram records are
        // unanswered (a datagram lost on the way). Stream records are never lost: on a busy
        // host their answers may pause longer, and they are waited for up to the deadline.
        let deadline = Instant::now() + Duration::from_secs(60);
        let stream_pending = |ledger: &Ledger| ledger.unanswered().any(|(nonce, _)| nonce > n);
        while ledger.pending_len() > 0
            && (take(Duration::from_millis(500), &mut ledger, &mut outcomes) || stream_pending(&ledger))
        {
            assert!(Instant::now() < deadline, "{} intents unanswered", ledger.pending_len());
        }
        let overloaded: Vec<u64> = outcomes
            .iter()
            .filter(|(_, o)| **o == Outcome::Refused(Reason::Overloaded))
            .map(|(&nonce, _)| nonce)
            .collect();
        let again: Vec<u64> = ledger.unanswered().map(|u| u.0).chain(overloaded).collect();
        if again.is_empty() {
            break;
        }
        assert!(round < 100, "{} intents still unanswered or overloaded", again.len());
        assert!(again.iter().all(|&nonce| nonce <= n), "stream records are never lost nor overloaded");
        for &nonce in &again {
            outcomes.remove(&nonce);
            resent.insert(nonce);
            ledger.sent(Via::Datagram.path(), nonce);
        }
        for f in frames(&again, 1_000) {
            c.send_frame(&f, Via::Datagram).unwrap();
        }
    }
    assert_eq!(outcomes.len() as u64, 2 * n, "every intent answered once");
    for (&nonce, &outcome) in &outcomes {
        let want = if foreign(nonce) {
            Outcome::Refused(Reason::ClientMismatch)
        } else if outcome == Outcome::Refused(Reason::DuplicateNonce) && resent.contains(&nonce) {
            // A resend of a datagram whose first copy got in after the resend was decided.
            outcome
        } else {
            Outcome::Accepted
        };
        assert_eq!(outcome, want, "nonce {nonce}");
    }
    assert!(watermarks > 0 && watermarks < 2 * n as usize, "{watermarks} watermarks for {} intents", 2 * n);
    // At least those received (a late second copy's may still be on its way).
    let metrics = d.metrics_until(|m| metric_sum(m, "fpn_quic_watermarks_total") >= watermarks as u64);
    assert!(metric_sum(&metrics, "fpn_quic_watermarks_total") >= watermarks as u64, "{metrics}");
    c.close();
    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());
}

/// A cancel of a bid in the book is answered by the merger; the answer comes back through
/// the intake to the QUIC session that sent the cancel.
#[test]
fn quic_book_cancel_is_answered_by_the_merger() {
    use fpn_wire::{Bid, Cancel, CancelTarget};

    // Bids under the reserve never win: they stay open in the book.
    let (mut d, addr, pin) = start("quic-book-cancel", "rate_per_s = 0\n\n[auction]\nreserve = 100");
    let mut c = Client::connect(addr, &options(pin, "41")).unwrap();
    let mut frame = Vec::new();
    let mut w = FrameWriter::new(&mut frame, 64 * 1024);
    for nonce in 1..=100u64 {
        w.push_bid(&Bid { client_id: 41, nonce, sent_ns: 1, amount: 10, priority: nonce as u32 }).unwrap();
    }
    w.finish();
    let bids = send_all(&mut c, &[(frame, 100)], false, 100);
    assert!(bids.receipts.values().all(|r| r.0.is_ok()), "bids accepted");
    std::thread::sleep(Duration::from_millis(200)); // the bids' window closes: they are in the book
    let mut frame = Vec::new();
    let mut w = FrameWriter::new(&mut frame, 1_200);
    w.push_cancel(&Cancel { client_id: 41, target: CancelTarget::Nonce(100) }).unwrap(); // open in the book
    w.push_cancel(&Cancel { client_id: 41, target: CancelTarget::Nonce(500) }).unwrap(); // never sent
    w.finish();
    let seen = send_all(&mut c, &[(frame, 2)], true, 10);
    assert_eq!(seen.receipts[&100].0, Ok(()), "the open bid is cancelled in the book");
    assert_eq!(seen.receipts[&100].1, bids.receipts[&100].1, "the receipt names the bid's seq");
    assert_eq!(seen.receipts[&500].0, Err(Reason::NotFound));
    c.close();
    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());
}

/// A second daemon on a QUIC port in use exits 1 (it must not join the first one's
/// `SO_REUSEPORT` group and take half its connections).
#[test]
fn a_quic_port_in_use_stops_the_start() {
    let (mut d, addr, _) = start("quic-port-a", "");
    let dir = scratch_dir("quic-port-b");
    let text = config_text(&dir.join("data"), 20, 1)
        .replace("[quic]\nlisten = \"127.0.0.1:0\"\n", &format!("[quic]\nlisten = \"{addr}\"\n"));
    let config = dir.join("flashpointd.toml");
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flashpointd"))
        .arg("--config")
        .arg(&config)
        .env_clear()
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("QUIC intake on {addr}")), "{stderr}");
    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());
}

/// The drain answers what it takes (`docs/daemon.md`, "Drain"): records sent after SIGTERM
/// and before the client sees the connection close are each answered, `ok` or
/// `shutting_down`; none is left without an answer but the last few on the wire when the
/// close left.
#[test]
fn records_sent_during_the_drain_are_answered() {
    use fpn_client::{BlockingClient, ClientConfig, Event, Fingerprint, Trust, Via};

    let (mut d, addr, pin) = start("quic-drain", "rate_per_s = 0");
    let mut config = ClientConfig::new(addr, Trust::Pin(Fingerprint(pin)), "41");
    config.reconnect = None;
    let c = BlockingClient::connect(config).unwrap();
    let mut answers: HashMap<u64, Result<(), Reason>> = HashMap::new();
    let mut closed_at = None;
    let mut nonce = 0u64;
    let mut term_nonce = None;
    let started = Instant::now();
    while closed_at.is_none() {
        assert!(started.elapsed() < Duration::from_secs(60), "no close 60 s after SIGTERM");
        // Eight one-record datagrams at a time.
        for _ in 0..8 {
            nonce += 1;
            let (frame, _) = intent_frames(41, nonce, 1, 1_000).pop().unwrap();
            if c.send_frame(&frame, Via::Datagram).is_err() {
                closed_at = Some(nonce);
                break;
            }
            if nonce == 2_000 {
                d.signal_term();
                term_nonce = Some(nonce);
            }
        }
        while let Some(e) = c.try_recv_event() {
            match e {
                Event::Receipt { receipt, .. } => {
                    answers.insert(receipt.nonce, receipt.status);
                }
                Event::Closed { .. } | Event::Disconnected { .. } => closed_at = Some(nonce),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let deadline = Instant::now() + Duration::from_millis(500);
    while let Some(e) = c.recv_event_timeout(deadline.saturating_duration_since(Instant::now())) {
        if let Event::Receipt { receipt, .. } = e {
            answers.insert(receipt.nonce, receipt.status);
        }
    }
    let (term, last) = (term_nonce.unwrap(), closed_at.unwrap());
    let sent_after = last - term;
    let answered_after = (term + 1..=last).filter(|n| answers.contains_key(n)).count() as u64;
    let shutting_down = answers.values().filter(|s| **s == Err(Reason::ShuttingDown)).count();
    eprintln!(
        "drain: {sent_after} records sent after SIGTERM, {answered_after} answered, {shutting_down} shutting_down"
    );
    assert!(answers.values().all(|s| s.is_ok() || *s == Err(Reason::ShuttingDown)), "{answers:?}");
    // Two bursts at least: on a loaded machine (the whole suite on 2 CPUs) this thread sends
    // slowly and the drain is short, 49 records in one such run; alone, hundreds.
    assert!(sent_after >= 16, "the drain took some records: {sent_after}");
    // What the drain took is answered: the unanswered records are the last ones sent, those
    // the close overtook on the wire (sent before the client saw it), never one between
    // answered ones.
    let last_answered = (term + 1..=last).rev().find(|n| answers.contains_key(n)).unwrap_or(term);
    let holes: Vec<u64> = (term + 1..=last_answered).filter(|n| !answers.contains_key(n)).collect();
    assert!(
        holes.is_empty(),
        "records sent during the drain left unanswered before later answered ones: {holes:?}"
    );
    // And they are few, never most: bursts of eight the client sent before it saw the close
    // (17 of 73 in 2 of 13 runs on the 2-CPU VM, at 5173f98 and since). Before the intake
    // answered what was queued at the stop, 10,412 of 10,494 went unanswered in one run.
    let unanswered = sent_after - answered_after;
    assert!(
        unanswered <= 32 + sent_after / 50,
        "{unanswered} of {sent_after} records sent during the drain unanswered"
    );
    assert_eq!(d.terminate_wait(), Some(0), "{}", d.stderr());
}

#[test]
fn quic_hardware_timestamps_fall_back_to_software_where_the_nic_has_none() {
    // Loopback has no hardware stamping (nor this VM's virtio NIC): the start says why, the
    // gauge says software, and the intents' kernel stamps reach the receipts and the blocks.
    let (mut d, addr, pin) = start("quic-hwts", "rx_timestamps = \"hardware\"\nrate_per_s = 0");
    let stderr = d.stderr();
    assert!(
        stderr.contains(
            "warning: quic.rx_timestamps = \"hardware\": receive timestamps software on lo: the device offers no \
             hardware receive stamping"
        ),
        "{stderr}"
    );
    let mut c = Client::connect(addr, &options(pin, "31")).unwrap();
    let len_max = (c.welcome.unwrap().datagram_frame_max as usize).min(c.datagram_max());
    let (mut seen, _) = send_retrying(&mut c, 31, 500, len_max, true, 200);
    assert!(seen.receipts.values().all(|r| r.0.is_ok()), "every intent accepted");
    await_blocks(&mut c, &mut seen);
    assert_eq!(seen.block_rx.len(), 500);
    let gauge = |metrics: &str, source: &str| {
        metric_sum(metrics, &format!("fpn_quic_rx_timestamp_source{{shard=\"intake0\",source=\"{source}\"}}"))
    };
    let stamps = |metrics: &str, source: &str| {
        metric_sum(metrics, &format!("fpn_quic_rx_timestamps_total{{shard=\"intake0\",source=\"{source}\"}}"))
    };
    let metrics = d.metrics_until(|m| stamps(m, "software") > 0);
    let g = |source| gauge(&metrics, source);
    assert_eq!((g("hardware"), g("software"), g("read_time")), (0, 1, 0), "{metrics}");
    assert_eq!(stamps(&metrics, "hardware"), 0);
    assert!(stamps(&metrics, "software") > 0, "{metrics}");
    c.close();
    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());
}
