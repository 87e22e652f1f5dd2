//! The pieces composed the way the daemon will: a shard role on a pinned executor drains a
//! ring, publishes metrics and beats its heartbeat in housekeeping; the admin server renders
//! `/metrics` and answers `/health/ready` from a heartbeat checker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fpn_runtime::admin::{AdminConfig, AdminServer, Method, Response, Router};
use fpn_runtime::exec::{self, ExecutorSpec, RoleSpec, StopFlag};
use fpn_runtime::heartbeat::Heartbeats;
use fpn_runtime::housekeeping::HousekeepingTimer;
use fpn_runtime::idle::Idler;
use fpn_runtime::metrics::{Counter, Histogram, Labels, MetricDesc, MetricsHub};
use fpn_runtime::ring::ring;

static TEST_ECHO_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_test_echo_total", "Records handled by the test shard.");
static TEST_ECHO_SECONDS: MetricDesc =
    MetricDesc::histogram("fpn_test_echo_seconds", "Time from push to handling in the test shard.");

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    (status, answer.split_once("\r\n\r\n").unwrap().1.to_string())
}

fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn shard_metrics_and_heartbeat_reach_the_admin_endpoint() {
    let _serial = super::exec::SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cpu = exec::allowed_cpus().unwrap()[0];
    let hub = Arc::new(MetricsHub::new());
    hub.describe(&[&TEST_ECHO_TOTAL, &TEST_ECHO_SECONDS]);
    let publisher = hub.register("echo-0");
    let (heartbeats, mut beats) = Heartbeats::new(["echo-0"]);
    let beat = beats.pop().unwrap();
    let (mut tx, mut rx) = ring::<Instant>(1024);

    let stop = StopFlag::new();
    let shard = RoleSpec::new("echo-0", move |ctx| async move {
        let (mut publisher, mut beat) = (publisher, beat);
        let mut idler = Idler::new("spin-then-park:1000:200us".parse().unwrap());
        let mut handled = Counter::default();
        let mut latency = Histogram::new();
        let mut housekeeping =
            HousekeepingTimer::new(Duration::from_millis(10), fpn_runtime::clock::now_ns());
        let ring_labels = Labels::new(&[("ring", "in")]);
        while !ctx.stop.is_stopped() {
            let n = rx.drain(64, |sent| {
                handled.inc();
                latency.record(sent.elapsed());
            });
            if housekeeping.due_at(fpn_runtime::clock::now_ns()) {
                publisher.publish(|s| {
                    s.counter(&TEST_ECHO_TOTAL, &Labels::none(), handled.get());
                    s.histogram(&TEST_ECHO_SECONDS, &Labels::none(), &latency);
                    s.ring_rx(&ring_labels, rx.counters());
                    s.idle(&Labels::none(), idler.counters());
                });
                beat.beat();
            }
            idler.idle(n > 0).perform(ctx.park_mode).await;
        }
    });
    let executors = exec::start(vec![ExecutorSpec::new(cpu, "echo", vec![shard])], stop.clone()).unwrap();

    let ready_checker = Mutex::new(heartbeats.checker());
    let router = Router::new()
        .route(Method::Get, "/metrics", {
            let hub = hub.clone();
            move |_| Response::prometheus(hub.render_prometheus())
        })
        .route(Method::Get, "/health/ready", move |_| {
            let report = ready_checker.lock().unwrap().check();
            if report.all_advanced() {
                Response::text(200, "ready\n")
            } else {
                Response::text(503, format!("stalled: {}\n", report.stalled.join(",")))
            }
        });
    let server =
        AdminServer::start(AdminConfig::new("127.0.0.1:0".parse().unwrap()), move |r| router.handle(r))
            .unwrap();
    let addr = server.local_addr();

    for _ in 0..500 {
        while tx.try_push(Instant::now()).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(
        wait_for(Duration::from_secs(10), || get(addr, "/metrics")
            .1
            .contains("fpn_test_echo_total{shard=\"echo-0\"} 500\n")),
        "metrics never showed 500 records:\n{}",
        get(addr, "/metrics").1
    );
    let metrics = get(addr, "/metrics").1;
    assert!(metrics.contains("fpn_ring_pop_total{shard=\"echo-0\",ring=\"in\"} 500\n"), "{metrics}");
    assert!(metrics.contains("fpn_test_echo_seconds_count{shard=\"echo-0\"} 500\n"), "{metrics}");

    // Housekeeping every 10 ms: two checks 100 ms apart both see progress.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(get(addr, "/health/ready").0, 200);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(get(addr, "/health/ready"), (200, "ready\n".to_string()));

    executors.stop();
    for (name, result) in executors.join() {
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The shard is gone: its heartbeat stops and readiness says so.
    let _ = get(addr, "/health/ready");
    assert_eq!(get(addr, "/health/ready"), (503, "stalled: echo-0\n".to_string()));
    server.shutdown();
}
