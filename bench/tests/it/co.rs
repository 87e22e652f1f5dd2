//! The coordinated-omission test. A fake in-process server answers every datagram at once,
//! except that once it stalls for 200 ms and takes nothing meanwhile, so the sender's `send`
//! blocks (as a closed-loop client waits on a stuck server, or as a full socket buffer
//! blocks). The records that were *due* during the stall are sent late, all at once, and
//! answered at once. Measured from the intended send time (corrected) they waited up to
//! 200 ms; measured from the actual send time (naive) they did not wait at all.
//!
//! Robust on a busy machine: the stall is 200 ms against sub-millisecond answers, 20 % of
//! the measured records fall in it, the rate is low enough for a debug build on a loaded
//! CPU (2,000 datagrams/s), and the bounds leave a factor of 3–4 on each side. A client that
//! falls behind only raises the corrected figures, which the test bounds from below.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fpn_bench::client::{Clock, Datagrams, SendFrames, SendLimits, recv_loop, send_loop};
use fpn_bench::echo::answer_frames;
use fpn_bench::load::{FrameGen, Schedule, Shape};
use fpn_bench::track::Tracker;

#[derive(Clone)]
struct StallingServer {
    answers: Rc<RefCell<VecDeque<Bytes>>>,
    ready: Rc<tokio::sync::Notify>,
    received: Rc<Cell<u64>>,
    stall_at: u64,
    stall: Duration,
}

impl SendFrames for StallingServer {
    async fn send(&self, frame: Bytes) -> io::Result<()> {
        let n = self.received.get();
        self.received.set(n + 1);
        if n == self.stall_at {
            // The server is stuck: it takes this datagram only when the stall ends.
            tokio::time::sleep(self.stall).await;
        }
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        answer_frames(&frame, None, 0, 1200, &mut out, &mut ends);
        let mut start = 0;
        for end in ends {
            self.answers.borrow_mut().push_back(Bytes::copy_from_slice(&out[start..end]));
            start = end;
        }
        self.ready.notify_one();
        Ok(())
    }
}

impl Datagrams for StallingServer {
    async fn recv(&self) -> io::Result<Bytes> {
        loop {
            if let Some(b) = self.answers.borrow_mut().pop_front() {
                return Ok(b);
            }
            self.ready.notified().await;
        }
    }
}

#[test]
fn corrected_percentiles_see_an_injected_stall_and_naive_ones_do_not() {
    // 8,000 records/s in datagrams of 4: one datagram every 500 µs, 0.1 s warm-up, 1 s
    // measured. The stall starts at datagram 1,000 (0.5 s) and lasts 200 ms.
    let shape = Shape {
        rate_per_s: 8_000.0,
        conns: 1,
        records_per_dgram: 4,
        burst: 1,
        bids_per_mille: 100,
        warmup: Duration::from_millis(100),
        duration: Duration::from_secs(1),
    };
    let stall = Duration::from_millis(200);
    let server = StallingServer {
        answers: Rc::default(),
        ready: Rc::default(),
        received: Rc::default(),
        stall_at: 1_000,
        stall,
    };
    let schedule = Schedule::new(&shape, 0);
    let tracker = Rc::new(RefCell::new(Tracker::new(schedule, 4, 100_000_000, 1_100_000_000)));
    let frames = Rc::new(FrameGen::new(&shape, 1200, 3).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    let started = Instant::now();
    local.block_on(&rt, async {
        let clock = Clock::starting_at(Instant::now());
        let receiver = tokio::task::spawn_local(recv_loop(server.clone(), tracker.clone(), clock));
        let done = send_loop(server.clone(), frames, 7, schedule, tracker.clone(), clock, SendLimits::NONE)
            .await
            .unwrap();
        assert!(done);
        let deadline = Instant::now() + Duration::from_secs(2);
        while tracker.borrow().outstanding() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        receiver.abort();
    });
    assert!(started.elapsed() < Duration::from_secs(8), "the test itself must stay fast");

    let t = tracker.borrow();
    let ms = |ns: u64| ns as f64 / 1e6;
    let (c, n) = (&t.corrected, &t.naive);
    let report = format!(
        "corrected p50 {:.3} p90 {:.3} p99 {:.3} max {:.3} ms; naive p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3} ms",
        ms(c.value_at_quantile(0.5)),
        ms(c.value_at_quantile(0.9)),
        ms(c.value_at_quantile(0.99)),
        ms(c.max()),
        ms(n.value_at_quantile(0.5)),
        ms(n.value_at_quantile(0.99)),
        ms(n.value_at_quantile(0.999)),
        ms(n.max()),
    );
    eprintln!("{report}");
    assert_eq!(t.outstanding(), 0, "every record answered: {report}");
    assert_eq!(c.len(), 8_000, "{report}");
    assert_eq!(n.len(), c.len());
    // About 20 % of the measured records were due during the stall: the corrected
    // distribution has them from ~0 to 200 ms, so p90 is near 100 ms and p99 near 200 ms.
    assert!(c.value_at_quantile(0.99) >= 150_000_000, "corrected p99 must see the stall: {report}");
    assert!(c.value_at_quantile(0.9) >= 50_000_000, "corrected p90 must see the stall: {report}");
    assert!(c.max() >= 190_000_000, "{report}");
    // The naive distribution does not: only the one datagram caught inside the stalled send
    // (4 of 8,000 records, 0.05 %) shows it, below p99.9.
    assert!(n.value_at_quantile(0.999) < 50_000_000, "naive p99.9 must not see the stall: {report}");
    assert!(n.value_at_quantile(0.99) < 50_000_000, "{report}");
    // The sender's lag shows where the time went.
    assert!(t.send_lag.max() >= 190_000_000, "{report}");
}
