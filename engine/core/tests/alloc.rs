//! Proves the window path does not allocate after construction.
//!
//! A separate integration-test binary, so its counting global allocator does not slow down
//! or interfere with the unit tests. Only allocations made on the test's own thread while
//! counting is switched on are counted, so the test harness's threads do not disturb it.

use fpn_engine::{ClosedWindow, Window, WindowConfig};

#[global_allocator]
static GLOBAL: fpn_testkit::Counting = fpn_testkit::Counting;

use fpn_testkit::counted;

#[test]
fn counting_allocator_counts() {
    let (v, allocs) = counted(|| vec![1u8; 16]);
    assert_eq!(v.len(), 16);
    assert_eq!(allocs, 1, "the counter must see an allocation, or the test below proves nothing");
}

#[test]
fn window_path_does_not_allocate_after_construction() {
    let cfg = WindowConfig {
        records_max: 256,
        keys_max: 256 * 8,
        bids_max: 64,
        dedup_horizon_windows: 4,
        ..WindowConfig::default()
    };
    let mut window = Window::new(cfg, 0, 0);
    let mut closed = [ClosedWindow::new(&cfg), ClosedWindow::new(&cfg)];
    let keys: Vec<u64> = (0..64).collect();
    let keys_le: Vec<[u8; 8]> = keys.iter().map(|k| k.to_le_bytes()).collect();

    let (accepted, allocs) = counted(|| {
        let mut accepted = 0u64;
        let mut now = 0u64;
        // 40 windows: ten times the horizon, so the dedup ring wraps and expires many times,
        // and the windows close by deadline, by size and by drain.
        for round in 0..40u64 {
            for i in 0..300u64 {
                let client_id = i % 7;
                let nonce = round * 1_000 + i;
                let r = match i % 5 {
                    0 => window.handle_bid(now, client_id, nonce, 10, 0, now),
                    1 => window.handle_intent_le_keys(now, client_id, nonce, 10, 0, now, &keys_le[..4]),
                    _ => {
                        window.handle_intent(now, client_id, nonce, 10, 0, now, &keys[..(i % 9 + 1) as usize])
                    }
                };
                if let Ok(a) = r {
                    accepted += 1;
                    if i % 11 == 0 {
                        let _ = window.cancel_intent_seq(client_id, a.seq);
                    }
                    if i % 13 == 0 {
                        let _ = window.cancel_bid_nonce(client_id, nonce);
                    }
                }
                // A duplicate and a cancel of something absent: the error paths too.
                let _ = window.handle_bid(now, client_id, nonce, 10, 0, now);
                let _ = window.cancel_intent_nonce(client_id, u64::MAX);
                now += 50_000;
                if window.is_full() || i == 299 {
                    let out = &mut closed[(round % 2) as usize];
                    if !window.poll_close(now, out) {
                        window.close(now, out);
                    }
                    assert!(out.intents_count + out.bids_count + out.cancelled_count > 0);
                }
            }
            window.expire_dedup(16);
        }
        accepted
    });
    assert!(accepted > 5_000, "the loop must exercise the window: {accepted}");
    assert_eq!(allocs, 0, "the window path allocated {allocs} times after construction");
}
