//! Two intakes: intake 0 owns the window clock and publishes closes on the board; intake 1
//! applies them. Both run on one CPU here (the core map is built by hand, so the test does
//! not depend on the host's CPUs), so it runs where the test may use only one CPU.

use std::collections::BTreeSet;
use std::time::Duration;

use flashpointd::{CoreMap, PerRole, Role};
use serde_json::Value;

use crate::daemon::{frames, http, metric_sum};
use crate::inproc::{InProcess, settings};

#[test]
fn two_intakes_share_the_window_clock_and_lose_nothing() {
    let (mut s, data) = settings("two-intakes", 5, 2);
    let cpu = s.core_map.cpu_of(Role::Intake, 0).unwrap();
    let build = 2 * s.builder.workers;
    let counts = PerRole {
        intake: 2,
        builder: 2,
        build_worker: build,
        merger: 1,
        prover: 0,
        journal: 1,
        log: 1,
        admin: 1,
    };
    let lists = PerRole::from_fn(|_| vec![cpu]);
    s.core_map = CoreMap::resolve(&lists, &counts);
    assert_eq!(s.intakes_n(), 2);
    let mut d = InProcess::start(s, data.clone());

    // Clients 1..=7: odd ones go to intake 1, even ones to intake 0.
    let input = frames(5, 70, 100, true);
    let mut accepted = BTreeSet::new();
    for (frame, _) in &input {
        let (status, body) = http(&d.addr, "POST", "/submit?format=json", frame);
        assert_eq!(status, 200);
        let body: Value = serde_json::from_slice(&body).unwrap();
        for r in body["receipts"].as_array().unwrap() {
            if r["status"] == "ok" && r["kind"] != "cancel" {
                assert!(accepted.insert(r["seq"].as_u64().unwrap()), "seqs are unique across intakes");
            }
        }
    }
    let frames_of =
        |m: &str, shard: &str| metric_sum(m, &format!("fpn_intake_frames_total{{shard=\"{shard}\"}}"));
    let metrics = d.metrics_until(|m| frames_of(m, "intake0") > 0 && frames_of(m, "intake1") > 0);
    for shard in ["intake0", "intake1"] {
        let frames = frames_of(&metrics, shard);
        assert!(frames > 0, "{shard} took frames");
    }
    let result = d.stop();
    assert!(result.is_ok(), "{result:?}");

    let text = std::fs::read_to_string(data.join("journal.jsonl")).unwrap();
    let mut counted = 0;
    for (i, w) in crate::daemon::expand_journal(&text).into_iter().enumerate() {
        assert_eq!(w["window_id"].as_u64().unwrap(), i as u64 + 1, "window ids contiguous");
        counted += w["intents_count"].as_u64().unwrap()
            + w["bids_count"].as_u64().unwrap()
            + w["cancelled_count"].as_u64().unwrap();
        for e in w["block"]["entries"].as_array().unwrap() {
            assert!(accepted.contains(&e["seq"].as_u64().unwrap()), "block entries are accepted seqs");
        }
    }
    assert!(text.lines().count() > 5, "several windows closed while records arrived");
    assert_eq!(counted, accepted.len() as u64, "every accepted intent and bid in exactly one window");
}

/// Two intakes, each with its own QUIC socket in one `SO_REUSEPORT` group: 16 connections
/// spread over both (by 4-tuple), every intent answered, seqs unique across intakes.
#[test]
fn two_intakes_share_the_quic_port() {
    use fpn_quic::client::{Client, ClientOptions};

    let (mut s, data) = settings("two-intakes-quic", 5, 1);
    let cpu = s.core_map.cpu_of(Role::Intake, 0).unwrap();
    let build = s.builder.workers;
    let counts = PerRole {
        intake: 2,
        builder: 1,
        build_worker: build,
        merger: 1,
        prover: 0,
        journal: 1,
        log: 1,
        admin: 1,
    };
    let lists = PerRole::from_fn(|_| vec![cpu]);
    s.core_map = CoreMap::resolve(&lists, &counts);
    let mut d = InProcess::start(s, data.clone());
    let addr = std::fs::read_to_string(data.join("quic.addr")).unwrap().trim().parse().unwrap();
    let pin =
        fpn_quic::tls::parse_pin(&std::fs::read_to_string(data.join("tls/cert.sha256")).unwrap()).unwrap();
    let mut seqs = BTreeSet::new();
    let mut clients = Vec::new();
    for client in 1..=16u64 {
        let options = ClientOptions {
            pin,
            alpn: fpn_wire::session::ALPN.to_vec(),
            api_key: client.to_string().into_bytes(),
            flags: 0,
            timeout: Duration::from_secs(30),
        };
        clients.push((client, Client::connect(addr, &options).unwrap()));
    }
    for (client, c) in &mut clients {
        let mut buf = Vec::new();
        let mut w = fpn_wire::FrameWriter::new(&mut buf, 64 * 1024);
        for nonce in 1..=300u64 {
            let keys = [*client << 32 | nonce];
            let i = fpn_wire::Intent {
                client_id: *client,
                nonce,
                sent_ns: 1,
                profit: 3,
                priority: 0,
                keys: &keys,
            };
            w.push_intent(&i).unwrap();
        }
        w.finish();
        c.send_stream(&buf).unwrap();
    }
    for (_, c) in &mut clients {
        let mut got = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while got < 300 {
            assert!(std::time::Instant::now() < deadline, "{got} of 300 receipts");
            let Some((_, f)) = c.next_frame(Duration::from_millis(20)).unwrap() else { continue };
            for r in fpn_wire::decode_frame(&f).unwrap() {
                if let fpn_wire::RecordRef::Receipt(r) = r {
                    assert_eq!(r.status, 0, "accepted");
                    assert!(seqs.insert(r.seq.get()), "seqs are unique across intakes");
                    got += 1;
                }
            }
        }
    }
    let opened_on = |m: &str, shard: &str| {
        metric_sum(m, &format!("fpn_quic_sessions_total{{shard=\"{shard}\",outcome=\"opened\"}}"))
    };
    let metrics = d.metrics_until(|m| opened_on(m, "intake0") > 0 && opened_on(m, "intake1") > 0);
    for shard in ["intake0", "intake1"] {
        let frames = opened_on(&metrics, shard);
        assert!(
            frames > 0,
            "{shard} took QUIC sessions:\n{}",
            metrics.lines().filter(|l| l.starts_with("fpn_quic_sessions")).collect::<Vec<_>>().join("\n")
        );
    }
    for (_, c) in clients {
        c.close();
    }
    let result = d.stop();
    assert!(result.is_ok(), "{result:?}");
}
