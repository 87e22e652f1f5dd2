//! A small blocking `fpn/1` client on quinn-proto over a std UDP socket, for tests and tools
//! of this crate and the daemon (the client library proper is `fpn-client`). One connection,
//! driven by the calling thread: every call sends what is due and reads what arrived.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fpn_wire::session::{Hello, HelloError, WELCOME_LEN, Welcome};
use fpn_wire::{FRAME_HEADER_LEN, peek_frame_len};
use quinn_proto::{
    ClientConfig, Connection, ConnectionError, ConnectionHandle, DatagramEvent, Dir, Endpoint,
    EndpointConfig, Event, SendDatagramError, StreamEvent, StreamId, TransportConfig, VarInt, WriteError,
};

use crate::tls::client_crypto_pinned;

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

/// One connection to the server.
pub struct Client {
    socket: UdpSocket,
    endpoint: Endpoint,
    ch: ConnectionHandle,
    conn: Connection,
    control: Option<StreamId>,
    connected: bool,
    control_buf: Vec<u8>,
    pub welcome: Option<Welcome>,
    result: Option<StreamId>,
    result_buf: Vec<u8>,
    data: Option<StreamId>,
    frames: VecDeque<(Origin, Vec<u8>)>,
    lost: Option<ConnectionError>,
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
        let crypto = client_crypto_pinned(options.pin, &options.alpn)
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let crypto = quinn_proto::crypto::rustls::QuicClientConfig::try_from(crypto)
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let mut config = ClientConfig::new(Arc::new(crypto));
        let mut transport = TransportConfig::default();
        // Loopback: start at a 1,452-byte path so 1,200-byte frames fit one datagram.
        transport
            .initial_mtu(1452)
            .datagram_receive_buffer_size(Some(4 << 20))
            .datagram_send_buffer_size(4 << 20)
            .stream_receive_window(VarInt::from_u32(8 << 20))
            .receive_window(VarInt::from_u32(16 << 20))
            .max_concurrent_uni_streams(VarInt::from_u32(4))
            .keep_alive_interval(Some(Duration::from_secs(1)));
        config.transport_config(Arc::new(transport));
        let mut endpoint = Endpoint::new(Arc::new(EndpointConfig::default()), None, false, None);
        let (ch, conn) = endpoint
            .connect(Instant::now(), config, server, "localhost")
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let mut client = Client {
            socket,
            endpoint,
            ch,
            conn,
            control: None,
            connected: false,
            control_buf: Vec::new(),
            welcome: None,
            result: None,
            result_buf: Vec::new(),
            data: None,
            frames: VecDeque::new(),
            lost: None,
            send_buf: Vec::with_capacity(64 * 1024),
            recv_buf: vec![0; 64 * 1024],
        };
        let deadline = Instant::now() + options.timeout;
        // Streams can be opened once the handshake told us the server's stream limits.
        while !client.connected {
            if let Some(e) = &client.lost {
                return Err(ClientError::Lost(e.clone()));
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout("handshake"));
            }
            client.drive(Duration::from_millis(5))?;
        }
        if !hello {
            return Ok(client);
        }
        let control =
            client.conn.streams().open(Dir::Bi).ok_or(ClientError::Timeout("the control stream"))?;
        client.control = Some(control);
        let mut hello = Vec::new();
        Hello { flags: options.flags, api_key: &options.api_key }.encode(&mut hello);
        client.write_stream(control, &hello)?;
        while client.welcome.is_none() {
            if let Some(e) = &client.lost {
                return Err(ClientError::Lost(e.clone()));
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout("welcome"));
            }
            client.drive(Duration::from_millis(5))?;
        }
        Ok(client)
    }

    /// Why the connection ended, once it has.
    pub fn lost(&self) -> Option<&ConnectionError> {
        self.lost.as_ref()
    }

    /// Largest datagram payload the connection can send now.
    pub fn datagram_max(&mut self) -> usize {
        self.conn.datagrams().max_size().unwrap_or(0)
    }

    /// Sends `frame` as one DATAGRAM, waiting (driving the connection) while the send buffer
    /// is full.
    pub fn send_datagram(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        let mut data = Bytes::copy_from_slice(frame);
        loop {
            if let Some(e) = &self.lost {
                return Err(ClientError::Lost(e.clone()));
            }
            match self.conn.datagrams().send(data, false) {
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
        let id = match self.data {
            Some(id) => id,
            None => {
                let id = self.conn.streams().open(Dir::Uni).ok_or(ClientError::Timeout("a uni stream"))?;
                self.data = Some(id);
                id
            }
        };
        self.write_stream(id, frame)
    }

    /// Writes `bytes` on a new uni stream and finishes it.
    pub fn send_stream_once(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let id = self.conn.streams().open(Dir::Uni).ok_or(ClientError::Timeout("a uni stream"))?;
        self.write_stream(id, bytes)?;
        let _ = self.conn.send_stream(id).finish();
        self.drive(Duration::ZERO)
    }

    fn write_stream(&mut self, id: StreamId, bytes: &[u8]) -> Result<(), ClientError> {
        let mut off = 0;
        while off < bytes.len() {
            if let Some(e) = &self.lost {
                return Err(ClientError::Lost(e.clone()));
            }
            match self.conn.send_stream(id).write(&bytes[off..]) {
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
            if let Some(f) = self.frames.pop_front() {
                return Ok(Some(f));
            }
            if self.lost.is_some() || Instant::now() >= deadline {
                return Ok(None);
            }
            self.drive(Duration::from_millis(2))?;
        }
    }

    /// Closes the connection (code 0) and sends the close.
    pub fn close(mut self) {
        self.conn.close(Instant::now(), VarInt::from_u32(0), Bytes::new());
        let _ = self.drive(Duration::ZERO);
    }

    /// Sends what is due, then reads packets for up to `wait` (at least one pass), handles
    /// timers and events.
    pub fn drive(&mut self, wait: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + wait;
        loop {
            self.flush()?;
            let now = Instant::now();
            let until = self.conn.poll_timeout().map_or(deadline, |t| t.min(deadline));
            let block = until.saturating_duration_since(now);
            let got = self.recv(block)?;
            let now = Instant::now();
            if self.conn.poll_timeout().is_some_and(|t| t <= now) {
                self.conn.handle_timeout(now);
            }
            self.events();
            self.flush()?;
            if now >= deadline || (got && wait.is_zero()) || self.lost.is_some() {
                return Ok(());
            }
            if got && !self.frames.is_empty() {
                return Ok(());
            }
        }
    }

    fn flush(&mut self) -> Result<(), ClientError> {
        loop {
            self.send_buf.clear();
            let Some(t) = self.conn.poll_transmit(Instant::now(), 1, &mut self.send_buf) else {
                return Ok(());
            };
            match self.socket.send_to(&self.send_buf[..t.size], t.destination) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
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
                    let data = BytesMut::from(&self.recv_buf[..n]);
                    let mut resp = Vec::new();
                    match self.endpoint.handle(Instant::now(), from, None, None, data, &mut resp) {
                        Some(DatagramEvent::ConnectionEvent(ch, ev)) if ch == self.ch => {
                            self.conn.handle_event(ev)
                        }
                        Some(DatagramEvent::Response(t)) => {
                            let _ = self.socket.send_to(&resp[..t.size], t.destination);
                        }
                        _ => {}
                    }
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

    fn events(&mut self) {
        while let Some(ev) = self.conn.poll_endpoint_events() {
            if let Some(back) = self.endpoint.handle_event(self.ch, ev) {
                self.conn.handle_event(back);
            }
        }
        while let Some(event) = self.conn.poll() {
            match event {
                Event::Connected => self.connected = true,
                Event::ConnectionLost { reason } => self.lost = Some(reason),
                Event::Stream(StreamEvent::Opened { dir: Dir::Uni }) => {
                    while let Some(id) = self.conn.streams().accept(Dir::Uni) {
                        if self.result.is_none() {
                            self.result = Some(id);
                        }
                    }
                }
                Event::DatagramReceived => {
                    while let Some(d) = self.conn.datagrams().recv() {
                        self.frames.push_back((Origin::Datagram, d.to_vec()));
                    }
                }
                _ => {}
            }
        }
        // Read the control and result streams whatever the events said (cheap, and it never
        // misses data that arrived with the stream's opening).
        if self.welcome.is_none()
            && let Some(control) = self.control
        {
            read_all(&mut self.conn, control, &mut self.control_buf);
            if self.control_buf.len() >= WELCOME_LEN {
                self.welcome = Welcome::decode(&self.control_buf).ok();
            }
        }
        if let Some(id) = self.result {
            read_all(&mut self.conn, id, &mut self.result_buf);
            let mut start = 0;
            while self.result_buf.len() - start >= FRAME_HEADER_LEN {
                let Ok(len) = peek_frame_len(&self.result_buf[start..]) else { break };
                if self.result_buf.len() - start < len {
                    break;
                }
                self.frames.push_back((Origin::ResultStream, self.result_buf[start..start + len].to_vec()));
                start += len;
            }
            self.result_buf.drain(..start);
        }
    }
}

fn read_all(conn: &mut Connection, id: StreamId, out: &mut Vec<u8>) {
    if let Ok(mut chunks) = conn.recv_stream(id).read(true) {
        while let Ok(Some(chunk)) = chunks.next(usize::MAX) {
            out.extend_from_slice(&chunk.bytes);
        }
        let _ = chunks.finalize();
    }
}
