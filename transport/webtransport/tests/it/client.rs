//! The Rust client against the endpoint.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fpn_client::{Event, Trust, Via};
use fpn_quic::{Auth, Limits};
use fpn_webtransport::client::{Client, ClientError};
use fpn_webtransport::{CertSource, Config, QueueConfig};
use fpn_wire::Reason;

use super::util::{events_until, intents, runtime, start};

#[test]
fn intents_over_datagrams_and_a_stream_get_receipts_and_blocks() {
    let running = start(Config::default(), QueueConfig::default());
    let config = running.client_config("7");
    runtime().block_on(async {
        let mut client = Client::connect(&config).await.expect("a session");
        assert_eq!(client.welcome().client_id, 7);
        assert!(client.datagram_frame_max() >= 200, "{}", client.datagram_frame_max());
        // 50 intents in 10 datagrams, 50 on the records stream in 2 frames.
        for chunk in 0..10u64 {
            client.send_datagram(&intents(7, chunk * 5 + 1..=chunk * 5 + 5)).await.unwrap();
        }
        client.send_stream(&intents(7, 51..=75)).await.unwrap();
        client.send_stream(&intents(7, 76..=100)).await.unwrap();
        let mut receipts = HashMap::new();
        let mut in_blocks = HashSet::new();
        events_until(&mut client, Duration::from_secs(10), |e| {
            match e {
                Event::Receipt { receipt, via } => {
                    assert_eq!(receipt.status, Ok(()), "{receipt:?}");
                    let expected = if receipt.nonce <= 50 { Via::Datagram } else { Via::Stream };
                    assert_eq!(*via, expected, "nonce {}", receipt.nonce);
                    receipts.insert(receipt.nonce, receipt.seq);
                }
                Event::Block(b) => in_blocks.extend(b.entries.iter().map(|e| e.seq)),
                _ => {}
            }
            receipts.len() == 100 && receipts.values().all(|s| in_blocks.contains(s))
        })
        .await;
        client.close().await;
    });
    running.wait_counters(Duration::from_secs(10), |c| c.sessions_closed_total == 1);
    let c = running.endpoint.counters();
    assert_eq!((c.sessions_opened_total, c.frames_datagram_total, c.frames_stream_total), (1, 10, 2));
    assert_eq!(
        (c.records_forwarded_total, c.receipts_datagram_total, c.receipts_stream_total),
        (100, 50, 50)
    );
    assert!(c.windows_pushed_total >= 1 && c.rx_ns_last > 0);
    let (_, engine) = running.engine.stop();
    assert_eq!(engine.accepted, 100);
}

#[test]
fn refusals_carry_the_raw_intakes_reason_codes() {
    let keys = Auth::Keys(HashMap::from([(b"k-9".to_vec(), 9)]));
    let limits = Limits { rate_per_s: 1, burst: 3, ..Limits::default() };
    let running = start(Config { auth: keys, limits, ..Config::default() }, QueueConfig::default());
    runtime().block_on(async {
        let mut wrong_path = running.client_config("k-9");
        wrong_path.path = "/elsewhere".into();
        assert!(matches!(Client::connect(&wrong_path).await, Err(ClientError::Status(404))));
        let bad_key = running.client_config("7");
        assert!(matches!(Client::connect(&bad_key).await, Err(ClientError::Refused(Reason::Unauthorized))));
        let mut client = Client::connect(&running.client_config("k-9")).await.expect("a session");
        // Four records with a burst of three, then one of another client.
        client.send_datagram(&intents(9, 1..=4)).await.unwrap();
        client.send_datagram(&intents(10, [5])).await.unwrap();
        // A malformed frame on the stream: refused whole, and the stream is stopped.
        let mut bad = intents(9, [6]);
        bad[0] = b'X';
        client.send_stream(&bad).await.unwrap();
        let mut statuses = Vec::new();
        events_until(&mut client, Duration::from_secs(5), |e| {
            if let Event::Receipt { receipt, .. } = e {
                statuses.push((receipt.nonce, receipt.for_kind.is_some(), receipt.status));
            }
            statuses.len() == 6
        })
        .await;
        statuses.sort_by_key(|s| s.0);
        assert_eq!(
            statuses,
            vec![
                (0, false, Err(Reason::BadMagic)),
                (1, true, Ok(())),
                (2, true, Ok(())),
                (3, true, Ok(())),
                (4, true, Err(Reason::RateLimited)),
                (5, true, Err(Reason::ClientMismatch)),
            ]
        );
        // The next write on the stopped stream sees STOP_SENDING with 0x100 + bad_magic.
        let mut stopped = None;
        for _ in 0..50 {
            if let Err(e) = client.send_stream(&intents(9, [7])).await {
                stopped = Some(e);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match stopped {
            Some(ClientError::Write(quinn::WriteError::Stopped(code))) => {
                let app = fpn_webtransport::wt::app_code_of_stream_error(code.into_inner());
                assert_eq!(app, Some(0x100 + u32::from(Reason::BadMagic.code())));
            }
            other => panic!("{other:?}"),
        }
        client.close().await;
    });
    running.wait_counters(Duration::from_secs(10), |c| c.sessions_closed_total == 2);
    let c = running.endpoint.counters();
    assert_eq!((c.requests_refused_total, c.sessions_refused_unauthorized_total), (1, 1));
    assert_eq!(
        (c.records_rate_limited_total, c.records_client_mismatch_total, c.streams_stopped_total),
        (1, 1, 1)
    );
}

#[test]
fn a_full_engine_ring_answers_datagrams_overloaded_and_holds_streams() {
    let queue = QueueConfig { frames_len: 1, ..QueueConfig::default() };
    let running = start(Config::default(), queue);
    running.engine.set_ready(false);
    runtime().block_on(async {
        let mut client = Client::connect(&running.client_config("7")).await.expect("a session");
        client.send_datagram(&intents(7, [1])).await.unwrap(); // fills the ring
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.send_datagram(&intents(7, [2])).await.unwrap();
        client.send_stream(&intents(7, [3])).await.unwrap();
        let first =
            events_until(&mut client, Duration::from_secs(5), |e| matches!(e, Event::Receipt { .. })).await;
        let Some(Event::Receipt { receipt, via: Via::Datagram }) = first.last() else { panic!("{first:?}") };
        assert_eq!((receipt.nonce, receipt.status), (2, Err(Reason::Overloaded)));
        // The stream's frame waited; once the engine takes frames again both are accepted.
        tokio::time::sleep(Duration::from_millis(100)).await;
        running.engine.set_ready(true);
        let mut accepted = HashSet::new();
        events_until(&mut client, Duration::from_secs(5), |e| {
            if let Event::Receipt { receipt, .. } = e {
                assert_eq!(receipt.status, Ok(()));
                accepted.insert(receipt.nonce);
            }
            accepted.len() == 2
        })
        .await;
        assert_eq!(accepted, HashSet::from([1, 3]));
        client.close().await;
    });
    running.wait_counters(Duration::from_secs(10), |c| c.sessions_closed_total == 1);
    let c = running.endpoint.counters();
    assert_eq!(c.records_overloaded_total, 1);
    assert!(c.stream_waits_total >= 1);
}

#[test]
fn a_renewed_certificate_serves_new_connections_and_old_sessions_go_on() {
    let running = start(Config::default(), QueueConfig::default());
    let before = running.endpoint.info();
    runtime().block_on(async {
        let mut old = Client::connect(&running.client_config("7")).await.expect("a session");
        running.endpoint.renew_certificate();
        running.wait_counters(Duration::from_secs(10), |c| c.cert_rotations_total == 1);
        let after = running.endpoint.info();
        assert_ne!(after.cert_sha256, before.cert_sha256);
        assert_eq!(after.cert_sha256_previous, Some(before.cert_sha256));
        assert!(after.json().contains(&after.cert_sha256.to_string()));
        // The old pin no longer connects; the new one does; the old session still works.
        let mut stale = running.client_config("8");
        stale.trust = Trust::Pin(before.cert_sha256);
        let stale = Client::connect(&stale).await;
        assert!(matches!(stale, Err(ClientError::Connection(_)) | Err(ClientError::Connect(_))), "{stale:?}");
        let mut new = Client::connect(&running.client_config("8")).await.expect("a session with the new pin");
        old.send_stream(&intents(7, [1])).await.unwrap();
        new.send_stream(&intents(8, [1])).await.unwrap();
        for client in [&mut old, &mut new] {
            let got =
                events_until(client, Duration::from_secs(5), |e| matches!(e, Event::Receipt { .. })).await;
            assert!(matches!(got.last(), Some(Event::Receipt { receipt, .. }) if receipt.status.is_ok()));
        }
        old.close().await;
        new.close().await;
    });
}

#[test]
fn a_ca_issued_pem_certificate_works_without_a_pin() {
    let dir = std::env::temp_dir().join(format!("fpn-wt-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    let cert = CertSource::Pem { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    let running = start(Config { cert, ..Config::default() }, QueueConfig::default());
    assert_eq!(running.endpoint.info().not_after_unix_s, None);
    let mut config = running.client_config("7");
    config.trust = Trust::CaPem(ca.pem());
    runtime().block_on(async {
        let client = Client::connect(&config).await.expect("a session trusted through the CA");
        assert_eq!(client.welcome().client_id, 7);
        client.close().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// h3 0.0.8 alone leaves this frame unread: the stream's header and its only frame arrive in
/// one read and the stream stays open (`stream_start`).
#[test]
fn one_small_frame_on_a_stream_that_stays_open_is_answered() {
    let running = start(Config::default(), QueueConfig::default());
    runtime().block_on(async {
        let mut client = Client::connect(&running.client_config("7")).await.expect("a session");
        client.send_stream(&intents(7, [1])).await.unwrap();
        let got =
            events_until(&mut client, Duration::from_secs(3), |e| matches!(e, Event::Receipt { .. })).await;
        let Some(Event::Receipt { receipt, via: Via::Stream }) = got.last() else { panic!("{got:?}") };
        assert_eq!((receipt.nonce, receipt.status), (1, Ok(())));
        client.close().await;
    });
}

#[test]
fn a_generated_certificate_is_renewed_before_it_expires() {
    // Valid 4 s in all (2 s of it backdated), renewed 1 s before its expiry.
    let cert = CertSource::SelfSigned {
        names: vec!["localhost".into()],
        validity: Duration::from_secs(4),
        renew_before: Duration::from_secs(1),
    };
    let running = start(Config { cert, ..Config::default() }, QueueConfig::default());
    let first = running.endpoint.info();
    running.wait_counters(Duration::from_secs(3), |c| c.cert_rotations_total >= 1);
    let renewed = running.endpoint.info();
    assert_ne!(renewed.cert_sha256, first.cert_sha256);
    assert!(renewed.not_after_unix_s > first.not_after_unix_s);
    runtime().block_on(async {
        let client =
            Client::connect(&running.client_config("7")).await.expect("the renewed certificate serves");
        client.close().await;
    });
}
