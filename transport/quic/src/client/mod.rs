//! A small blocking `fpn/1` client on quinn-proto over a std UDP socket, for tests and tools
//! of this crate and the daemon (the client library proper is `fpn-client`). One connection,
//! driven by the calling thread: every call sends what is due and reads what arrived.
//!
//! The protocol is [`ClientCore`] (`sans_io`), which does no I/O; [`Client`] is the thin
//! socket driver around it.

mod sans_io;

pub use sans_io::ClientCore;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fpn_wire::session::{HelloError, Welcome};
use quinn_proto::{ConnectionError, SendDatagramError, StreamId, WriteError};

/// Why the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("connect: {0}")]
    Connect(String),
    #[error("connection lost: {0}")]
    Lost(ConnectionError),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("bad welcome: {0:?}")]
    BadWelcome(HelloError),
}

/// Where a frame from the server came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Datagram,
    ResultStream,
}

/// Client options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub pin: [u8; 32],
    pub alpn: Vec<u8>,
    pub api_key: Vec<u8>,
    pub flags: u8,
    pub timeout: Duration,
}

/// One connection to the server, driven over a UDP socket by the calling thread.
pub struct Client {
    socket: UdpSocket,
    core: ClientCore,
    /// The welcome, once [`Client::connect`] returned (`None` after `connect_without_hello`).
    pub welcome: Option<Welcome>,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("welcome", &self.welcome).finish_non_exhaustive()
    }
}

impl Client {
    /// Connects, sends the hello and waits for the welcome (which may be a refusal: check
    /// `welcome.status`).
    pub fn connect(server: SocketAddr, options: &ClientOptions) -> Result<Client, ClientError> {
        Client::start(server, options, true)
    }

    /// Completes the QUIC handshake only, and says no hello (tests of the hello timeout).
    pub fn connect_without_hello(server: SocketAddr, options: &ClientOptions) -> Result<Client, ClientError> {
        Client::start(server, options, false)
    }

    fn start(server: SocketAddr, options: &ClientOptions, hello: bool) -> Result<Client, ClientError> {
        let bind: SocketAddr =
            if server.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse().expect("addr");
        let socket = UdpSocket::bind(bind)?;
        crate::udp::set_buffers(&socket, crate::udp::SOCKET_BUFFER_BYTES);
        let core = ClientCore::connect(Instant::now(), server, options, hello)?;
        let mut client = Client {
            socket,
            core,
            welcome: None,
            send_buf: Vec::with_capacity(64 * 1024),
            recv_buf: vec![0; 64 * 1024],
        };
        let deadline = Instant::now() + options.timeout;
        let done = |c: &ClientCore| c.is_connected() && (!hello || c.welcome().is_some());
        while !done(&client.core) {
            if let Some(e) = client.core.lost() {
                return Err(ClientError::Lost(e.clone()));
            }
            if Instant::now() >= deadline {
                let what = if client.core.is_connected() { "welcome" } else { "handshake" };
                return Err(ClientError::Timeout(what));
            }
            client.drive(Duration::from_millis(5))?;
        }
        client.welcome = client.core.welcome();
        Ok(client)
    }

    /// Why the connection ended, once it has.
    pub fn lost(&self) -> Option<&ConnectionError> {
        self.core.lost()
    }

    /// Largest datagram payload the connection can send now.
    pub fn datagram_max(&mut self) -> usize {
        self.core.datagram_max()
    }

    /// Sends `frame` as one DATAGRAM, waiting (driving the connection) while the send buffer
    /// is full.
    pub fn send_datagram(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        let mut data = Bytes::copy_from_slice(frame);
        loop {
            if let Some(e) = self.core.lost() {
                return Err(ClientError::Lost(e.clone()));
            }
            match self.core.send_datagram(data) {
                Ok(()) => break,
                Err(SendDatagramError::Blocked(back)) => {
                    data = back;
                    self.drive(Duration::from_millis(1))?;
                }
                Err(e) => return Err(ClientError::Connect(e.to_string())),
            }
        }
        self.drive(Duration::ZERO)
    }

    /// Writes `frame` on this client's data stream (one uni stream, opened at first use).
    pub fn send_stream(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        let id = self.core.data_stream()?;
        self.write_stream(id, frame)
    }

    /// Writes `bytes` on a new uni stream and finishes it.
    pub fn send_stream_once(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let id = self.core.open_uni()?;
        self.write_stream(id, bytes)?;
        self.core.finish_stream(id);
        self.drive(Duration::ZERO)
    }

    fn write_stream(&mut self, id: StreamId, bytes: &[u8]) -> Result<(), ClientError> {
        let mut off = 0;
        while off < bytes.len() {
            if let Some(e) = self.core.lost() {
                return Err(ClientError::Lost(e.clone()));
            }
            match self.core.write_stream(id, &bytes[off..]) {
                Ok(n) => off += n,
                Err(WriteError::Blocked) => self.drive(Duration::from_millis(1))?,
                Err(e) => return Err(ClientError::Connect(e.to_string())),
            }
        }
        self.drive(Duration::ZERO)
    }

    /// The next frame from the server, driving the connection up to `wait` for one.
    pub fn next_frame(&mut self, wait: Duration) -> Result<Option<(Origin, Vec<u8>)>, ClientError> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(f) = self.core.poll_frame() {
                return Ok(Some(f));
            }
            if self.core.lost().is_some() || Instant::now() >= deadline {
                return Ok(None);
            }
            self.drive(Duration::from_millis(2))?;
        }
    }

    /// Closes the connection (code 0) and sends the close.
    pub fn close(mut self) {
        self.core.close(Instant::now());
        let _ = self.drive(Duration::ZERO);
    }

    /// Sends what is due, then reads packets for up to `wait` (at least one pass), handles
    /// timers and events.
    pub fn drive(&mut self, wait: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + wait;
        loop {
            self.flush()?;
            let now = Instant::now();
            let until = self.core.poll_timeout().map_or(deadline, |t| t.min(deadline));
            let got = self.recv(until.saturating_duration_since(now))?;
            self.core.handle_timeout(Instant::now());
            self.flush()?;
            if Instant::now() >= deadline || (got && wait.is_zero()) || self.core.lost().is_some() {
                return Ok(());
            }
            if got && self.core.has_frames() {
                return Ok(());
            }
        }
    }

    fn flush(&mut self) -> Result<(), ClientError> {
        while let Some(t) = self.core.poll_transmit(Instant::now(), &mut self.send_buf) {
            match self.socket.send_to(&self.send_buf[..t.size], t.destination) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads every datagram waiting, blocking up to `block` for the first.
    fn recv(&mut self, block: Duration) -> Result<bool, ClientError> {
        let mut got = false;
        loop {
            if got || block.is_zero() {
                self.socket.set_nonblocking(true)?;
            } else {
                self.socket.set_nonblocking(false)?;
                self.socket.set_read_timeout(Some(block.max(Duration::from_micros(50))))?;
            }
            match self.socket.recv_from(&mut self.recv_buf) {
                Ok((n, from)) => {
                    got = true;
                    self.core.handle_datagram(Instant::now(), from, &self.recv_buf[..n]);
                }
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    return Ok(got);
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(got),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
