//! The prover pool in the real daemon: intents and bids go in through `POST /submit`, a
//! window's proof comes out of `/proofs`, and `fpn-prover`'s verifier accepts it (and refuses
//! it with a public input changed). A `subscribe_all` client of the QUIC intake gets the same
//! proof announced on its result stream.

use std::time::{Duration, Instant};

use fpn_client::{BlockingClient, ClientConfig, Event, Fingerprint, Trust};
use fpn_prover::snarkjs::{proof_from_json, public_from_json, vk_from_json};
use fpn_prover::{
    BLOCK_ENTRIES_MAX, ClearingPublic, EntryWitness, Fr, WINNERS_MAX, WinnerWitness, entries_commitment,
    prepare_verifying_key, proof_from_compressed, proof_to_compressed, verify_raw, winners_commitment,
};
use serde_json::{Value, json};

use crate::daemon::{Daemon, frames, metric_sum, scratch_dir};

/// Polls `f` every 200 ms until it returns `Some`, for at most `limit` (proofs take seconds
/// and the first start runs the key setup; the machine may be busy).
fn wait_for<T>(d: &mut Daemon, limit: Duration, what: &str, mut f: impl FnMut(&Daemon) -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = f(d) {
            return t;
        }
        d.assert_running();
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}: {}", d.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get_json(d: &Daemon, path: &str) -> (u16, Value) {
    let (status, body) = d.get(path);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Fetches job `id`'s proof and checks it with the pool's verifying key; also with one public
/// input changed, which must fail. Returns the public inputs.
fn verify_job(d: &Daemon, id: u64) -> ClearingPublic {
    let (status, files) = get_json(d, &format!("/proofs/{id}/proof"));
    assert_eq!(status, 200, "{files}");
    let (status, vk) = get_json(d, "/proofs/vk");
    assert_eq!(status, 200, "{vk}");
    let pvk = prepare_verifying_key(&vk_from_json(&vk).unwrap());
    let proof = proof_from_json(&files["proof"]).unwrap();
    let mut inputs = public_from_json(&files["public"]).unwrap();
    assert!(verify_raw(&pvk, &inputs, &proof).unwrap(), "job {id}'s proof verifies");
    let public = ClearingPublic::from_field_elements(&inputs).unwrap();
    inputs[4] += Fr::from(1u64); // the fee
    assert!(!verify_raw(&pvk, &inputs, &proof).unwrap(), "a changed fee is refused");
    public
}

#[test]
fn windows_are_proven_and_the_proofs_verify() {
    let env = [
        ("FPN_PROVER_ENABLED", "true".to_string()),
        // At most 16 winners per window: the circuit's capacity.
        ("FPN_AUCTION_TOP_K", "16".to_string()),
    ];
    let mut d = Daemon::start_with(scratch_dir("prover"), 200, 1, &env);
    // A watcher on the QUIC intake, subscribed to every window (and so to every proof).
    let data = d.dir.join("data");
    let addr = std::fs::read_to_string(data.join("quic.addr")).unwrap().trim().parse().unwrap();
    let pin =
        fpn_quic::tls::parse_pin(&std::fs::read_to_string(data.join("tls/cert.sha256")).unwrap()).unwrap();
    let mut config = ClientConfig::new(addr, Trust::Pin(Fingerprint(pin)), "5");
    config.subscribe_all = true;
    config.reconnect = None;
    let watcher = BlockingClient::connect(config).unwrap();
    watcher.wait_connected(Duration::from_secs(30)).unwrap();

    // Before anything is proven: the routes answer.
    assert_eq!(get_json(&d, "/proofs/12345").0, 404);
    assert_eq!(d.request("POST", "/proofs", b"{}").0, 400);
    assert_eq!(d.request("POST", "/proofs", b"not json").0, 400);

    // Small frames, one per poll, until a window's proof shows in /windows/latest (which keeps
    // the newest 64 windows, 12.8 s at 200 ms; the first proof waits for the key setup):
    // windows of at most 64 entries and 16 winners.
    // A submit answered 504 (no receipts within 5 s: the host was too busy) is counted and
    // let pass a few times: this loop submits for as long as the first proof takes.
    let mut input = frames(11, 2_000, 4, false).into_iter();
    let mut timeouts = 0;
    let (id, first, last) = wait_for(&mut d, Duration::from_secs(300), "a window proof", |d| {
        let (frame, _) = input.next().expect("enough frames");
        let (status, body) = d.submit_json(&frame);
        if status == 504 {
            timeouts += 1;
            assert!(timeouts < 4, "{timeouts} submits timed out: {}", d.stderr());
        } else {
            assert_eq!(status, 200, "{body}");
        }
        let (_, windows) = get_json(d, "/windows/latest?n=64");
        for w in windows.as_array()? {
            let proof = &w["proof"];
            assert!(proof.is_object(), "every window has a proof state: {w}");
            assert_ne!(proof["status"], "failed", "{proof}");
            if proof["status"] == "done" {
                let span = proof["windows"].as_array()?;
                return Some((proof["id"].as_u64()?, span[0].as_u64()?, span[1].as_u64()?));
            }
        }
        None
    });
    let (status, job) = get_json(&d, &format!("/proofs/{id}"));
    assert_eq!(status, 200);
    assert_eq!(job["status"], "done", "{job}");
    let public = verify_job(&d, id);
    assert_eq!(public.window_id, last);
    assert_eq!(u64::from(public.windows_count), last - first + 1);

    // The watcher got the same proof announced (proofs come in finishing order; earlier ones
    // may precede it).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (window_first, window_last, announced) = loop {
        assert!(Instant::now() < deadline, "no proof announcement for job {id}: {}", d.stderr());
        match watcher.recv_event_timeout(Duration::from_millis(200)) {
            Some(Event::Proof { window_first, window_last, job_id, proof }) if job_id == id => {
                break (window_first, window_last, proof.expect("job done, so the proof is there"));
            }
            Some(Event::Closed { error }) => panic!("watcher closed: {error:?}"),
            Some(Event::Disconnected { error, .. }) => panic!("watcher disconnected: {error}"),
            Some(Event::BadFrame { reason, .. }) => panic!("bad frame from the daemon: {reason:?}"),
            _ => {}
        }
    };
    assert_eq!((window_first, window_last), (first, last));
    let (_, files) = get_json(&d, &format!("/proofs/{id}/proof"));
    let proof = proof_from_json(&files["proof"]).unwrap();
    assert_eq!(announced, proof_to_compressed(&proof), "the announced bytes are /proofs/{id}/proof");
    let (_, vk) = get_json(&d, "/proofs/vk");
    let pvk = prepare_verifying_key(&vk_from_json(&vk).unwrap());
    let inputs = public_from_json(&files["public"]).unwrap();
    let decompressed = proof_from_compressed(&announced).expect("a valid compressed proof");
    assert!(verify_raw(&pvk, &inputs, &decompressed).unwrap(), "the announced proof verifies");

    // A submitted witness (the sample of docs/proofs.md) and one window by id.
    let sample = json!({"witness": {
        "window_id": 42, "fee_ppm": 100000, "fifo_total": 1200,
        "entries": [{"seq": 3, "profit": 1000, "payout": 900}, {"seq": 5, "profit": 2500, "payout": 2300},
                    {"seq": 11, "profit": 700, "payout": 700}],
        "auction": {"pricing": "uniform", "reserve": 100, "uniform_price": 500,
                    "winners": [{"seq": 7, "amount": 800, "price": 500}, {"seq": 9, "amount": 300, "price": 300}]}
    }});
    let (status, body) = d.request("POST", "/proofs", sample.to_string().as_bytes());
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let submitted = serde_json::from_slice::<Value>(&body).unwrap()["id"].as_u64().unwrap();
    let mut bad = sample.clone();
    bad["witness"]["fifo_total"] = json!(1201);
    let (status, body) = d.request("POST", "/proofs", bad.to_string().as_bytes());
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, body) = d.request("POST", "/proofs", json!({"window_id": last}).to_string().as_bytes());
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let by_window = serde_json::from_slice::<Value>(&body).unwrap()["id"].as_u64().unwrap();
    for job in [submitted, by_window] {
        wait_for(&mut d, Duration::from_secs(120), "a submitted proof", |d| {
            let (_, status) = get_json(d, &format!("/proofs/{job}"));
            assert_ne!(status["status"], "failed", "{status}");
            (status["status"] == "done").then_some(())
        });
    }
    let p = verify_job(&d, submitted);
    assert_eq!((p.window_id, p.total, p.fee, p.revenue), (42, 4200, 300, 800));
    assert_eq!(verify_job(&d, by_window).window_id, last);

    let metrics = d.metrics_until(|m| {
        metric_sum(m, "fpn_prover_windows_proven_total") >= 1
            && metric_sum(m, "fpn_quic_proofs_pushed_total") >= 1
    });
    assert!(metric_sum(&metrics, "fpn_prover_windows_proven_total") >= 1, "{metrics}");
    assert!(metrics.contains("fpn_prover_lag_seconds_count{shard=\"prover\"}"), "{metrics}");
    assert_eq!(metric_sum(&metrics, "fpn_prover_keys_ready"), 1);
    assert!(metric_sum(&metrics, "fpn_quic_proofs_pushed_total") >= 1, "{metrics}");
    watcher.close();
    let (_, clearing) = get_json(&d, "/clearings/latest");
    assert!(clearing["proof"]["status"].is_string(), "{clearing}");

    assert_eq!(d.terminate(), Some(0), "{}", d.stderr());

    // The proven statement is the journal's: sums over the span, and the commitments of the
    // windows' entries and winners concatenated in window order.
    let journal = d.journal();
    let span: Vec<&Value> =
        journal.iter().filter(|w| (first..=last).contains(&w["window_id"].as_u64().unwrap())).collect();
    assert_eq!(span.len() as u64, last - first + 1);
    let sum = |f: &dyn Fn(&Value) -> u64| span.iter().map(|w| f(w)).sum::<u64>();
    assert_eq!(public.total, sum(&|w| w["block"]["total"].as_u64().unwrap()));
    assert_eq!(public.fifo_total, sum(&|w| w["block"]["fifo_total"].as_u64().unwrap()));
    assert_eq!(public.fee, sum(&|w| w["block"]["fee"].as_u64().unwrap()));
    assert_eq!(public.revenue, sum(&|w| w["clearing"]["revenue"].as_u64().unwrap()));
    let entries: Vec<EntryWitness> = span
        .iter()
        .flat_map(|w| w["block"]["entries"].as_array().unwrap().clone())
        .map(|e| EntryWitness {
            seq: e["seq"].as_u64().unwrap(),
            profit: e["profit"].as_u64().unwrap(),
            payout: e["payout"].as_u64().unwrap(),
        })
        .collect();
    let winners: Vec<WinnerWitness> = span
        .iter()
        .flat_map(|w| w["clearing"]["winners"].as_array().unwrap().clone())
        .map(|x| WinnerWitness {
            seq: x["seq"].as_u64().unwrap(),
            amount: x["amount"].as_u64().unwrap(),
            price: x["price"].as_u64().unwrap(),
        })
        .collect();
    assert!(!entries.is_empty() || !winners.is_empty());
    assert_eq!(public.entries_commitment, entries_commitment(last, &entries, BLOCK_ENTRIES_MAX));
    assert_eq!(public.winners_commitment, winners_commitment(last, &winners, WINNERS_MAX));
}
