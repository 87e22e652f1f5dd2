//! An endpoint with the test engine behind it.

use std::time::{Duration, Instant};

use fpn_client::Event;
use fpn_webtransport::client::{Client, ClientConfig};
use fpn_webtransport::testing::TestEngineThread;
use fpn_webtransport::{Config, Endpoint, EndpointHandle, QueueConfig, queues};
use fpn_wire::{FrameWriter, Intent};

pub struct Running {
    pub endpoint: EndpointHandle,
    pub engine: TestEngineThread,
}

pub fn start(config: Config, queue: QueueConfig) -> Running {
    let (endpoint_side, engine_side) = queues(queue);
    let engine = TestEngineThread::spawn(engine_side, Duration::from_millis(20));
    let endpoint = Endpoint::start(config, endpoint_side).expect("the endpoint starts");
    Running { endpoint, engine }
}

impl Running {
    pub fn client_config(&self, key: &str) -> ClientConfig {
        ClientConfig::pinned(self.endpoint.local_addr(), self.endpoint.info().cert_sha256, key)
    }

    /// Waits up to `timeout` for the counters to satisfy `ok`.
    pub fn wait_counters(&self, timeout: Duration, ok: impl Fn(&fpn_webtransport::Counters) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ok(&self.endpoint.counters()) {
            assert!(Instant::now() < deadline, "counters: {:?}", self.endpoint.counters());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One frame of intents of `client_id` with these nonces (one key each, the nonce).
pub fn intents(client_id: u64, nonces: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, 64 * 1024);
    for nonce in nonces {
        let keys = [nonce];
        w.push_intent(&Intent {
            client_id,
            nonce,
            sent_ns: 1,
            profit: 100 + nonce,
            priority: 0,
            keys: &keys,
        })
        .expect("room");
    }
    w.finish();
    buf
}

/// Events until `done` says so, or panics after `timeout`.
pub async fn events_until(
    client: &mut Client,
    timeout: Duration,
    mut done: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(e)) => {
                let stop = done(&e);
                out.push(e);
                if stop {
                    return out;
                }
            }
            Ok(None) => panic!("the session ended; events so far: {out:?}"),
            Err(_) => panic!("timed out; events so far: {out:?}"),
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}
