//! Two intakes: intake 0 owns the window clock and publishes closes on the board; intake 1
//! applies them. Both run on one CPU here (the core map is built by hand: configuration
//! refuses more intakes than `cores.intake` lists CPUs), so it runs where the test may use
//! only one CPU.

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
    let counts = PerRole { intake: 2, builder: 2, auction: 1, prover: 0, journal: 1, admin: 1 };
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
    std::thread::sleep(Duration::from_millis(300));
    let metrics = String::from_utf8(http(&d.addr, "GET", "/metrics", b"").1).unwrap();
    for shard in ["intake0", "intake1"] {
        let frames = metric_sum(&metrics, &format!("fpn_intake_frames_total{{shard=\"{shard}\"}}"));
        assert!(frames > 0, "{shard} took frames");
    }
    let result = d.stop();
    assert!(result.is_ok(), "{result:?}");

    let text = std::fs::read_to_string(data.join("journal.jsonl")).unwrap();
    let mut counted = 0;
    for (i, line) in text.lines().enumerate() {
        let w: Value = serde_json::from_str(line).unwrap();
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
