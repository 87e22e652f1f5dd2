//! [`BlockingClient`]: the async [`Client`] for plain threads.

use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::client::{Client, ClientConfig, ConnectError, Events, SendError, SessionInfo};
use crate::event::{Event, Via};
use crate::pack::Record;

/// A [`Client`] whose tokio runtime (current-thread) runs on its own thread, `fpn-client`.
/// Every method blocks the calling thread; none may be called from inside an async task
/// (tokio panics on a nested `block_on`). It is `Sync`: one thread may send while another
/// reads events.
#[derive(Debug)]
pub struct BlockingClient {
    client: Client,
    events: Mutex<Events>,
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BlockingClient {
    /// Starts the runtime thread and opens the first session (see [`Client::connect`]).
    pub fn connect(config: ClientConfig) -> Result<BlockingClient, ConnectError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("fpn-client".to_string()).spawn(move || {
            runtime.block_on(async move {
                let connected = Client::connect(config).await;
                let ok = connected.is_ok();
                if started_tx.send((connected, Handle::current())).is_ok() && ok {
                    // Drives the client's I/O and timers until the BlockingClient goes.
                    let _ = stop_rx.await;
                }
            });
        })?;
        let (connected, handle) = started_rx.recv().expect("the client thread reports once");
        match connected {
            Ok((client, events)) => Ok(BlockingClient {
                client,
                events: Mutex::new(events),
                handle,
                stop: Some(stop),
                thread: Some(thread),
            }),
            Err(e) => {
                let _ = thread.join();
                Err(e)
            }
        }
    }

    /// The async client, for use on the runtime thread via [`BlockingClient::handle`].
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The runtime the client runs on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    pub fn session(&self) -> Option<SessionInfo> {
        self.client.session()
    }

    pub fn client_id(&self) -> Option<u64> {
        self.client.client_id()
    }

    pub fn wait_connected(&self, timeout: Duration) -> Result<SessionInfo, SendError> {
        self.handle.block_on(self.client.wait_connected(timeout))
    }

    pub fn send_datagram(&self, frame: &[u8]) -> Result<(), SendError> {
        self.handle.block_on(self.client.send_datagram(frame))
    }

    pub fn send_stream(&self, frame: &[u8]) -> Result<(), SendError> {
        self.handle.block_on(self.client.send_stream(frame))
    }

    pub fn send_frame(&self, frame: &[u8], via: Via) -> Result<(), SendError> {
        self.handle.block_on(self.client.send_frame(frame, via))
    }

    pub fn send_records(&self, records: &[Record<'_>], via: Via) -> Result<usize, SendError> {
        self.handle.block_on(self.client.send_records(records, via))
    }

    /// The next event, waiting as long as it takes; `None` once the client is closed and
    /// every event was read.
    pub fn recv_event(&self) -> Option<Event> {
        let mut events = self.events.lock().expect("events lock");
        events.blocking_recv()
    }

    /// The next event, waiting at most `timeout`.
    pub fn recv_event_timeout(&self, timeout: Duration) -> Option<Event> {
        let mut events = self.events.lock().expect("events lock");
        self.handle.block_on(async { tokio::time::timeout(timeout, events.recv()).await.ok().flatten() })
    }

    /// An event if one is ready.
    pub fn try_recv_event(&self) -> Option<Event> {
        self.events.lock().expect("events lock").try_recv().ok()
    }

    /// Closes the session, stops the runtime thread and waits for it.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(stop) = self.stop.take() else { return };
        self.handle.block_on(self.client.close());
        let _ = stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BlockingClient {
    fn drop(&mut self) {
        self.shutdown();
    }
}
