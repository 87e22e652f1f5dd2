//! The client's protocol core: one quinn-proto connection and the `fpn/1` session on it
//! (hello, welcome, frames in from datagrams and the result stream). It performs no I/O and
//! reads no clock, like the server: the blocking [`super::Client`] drives it over a UDP
//! socket, and the crate's tests wire it to a [`crate::Server`] in memory with a fake clock.
//!
//! Call order: [`ClientCore::handle_datagram`] for each datagram from the server,
//! [`ClientCore::handle_timeout`] when [`ClientCore::poll_timeout`] is due, and
//! [`ClientCore::poll_transmit`] until `None` after either (and after any send).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fpn_wire::session::{Hello, WELCOME_LEN, Welcome};
use fpn_wire::{FRAME_HEADER_LEN, peek_frame_len};
use quinn_proto::{
    ClientConfig, Connection, ConnectionError, ConnectionHandle, DatagramEvent, Dir, Endpoint,
    EndpointConfig, Event, SendDatagramError, StreamEvent, StreamId, Transmit, TransportConfig, VarInt,
    WriteError,
};

use super::{ClientError, ClientOptions, Origin};
use crate::tls::client_crypto_pinned;

/// One connection to the server, without I/O.
pub struct ClientCore {
    endpoint: Endpoint,
    ch: ConnectionHandle,
    conn: Connection,
    /// The hello to say once the handshake is done (`None` once said, or never to say).
    hello: Option<Vec<u8>>,
    control: Option<StreamId>,
    connected: bool,
    control_buf: Vec<u8>,
    welcome: Option<Welcome>,
    result: Option<StreamId>,
    result_buf: Vec<u8>,
    /// Reads the result stream (a test turns this off to play a slow consumer).
    reading_results: bool,
    data: Option<StreamId>,
    frames: VecDeque<(Origin, Vec<u8>)>,
    lost: Option<ConnectionError>,
    /// Stateless packets the endpoint answered with.
    responses: VecDeque<(Transmit, Vec<u8>)>,
}

impl std::fmt::Debug for ClientCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCore").field("welcome", &self.welcome).finish_non_exhaustive()
    }
}

impl ClientCore {
    /// Starts the handshake with `server`. With `say_hello` the hello goes out as soon as the
    /// handshake is done (streams can be opened once the server's stream limits are known).
    pub fn connect(
        now: Instant,
        server: SocketAddr,
        options: &ClientOptions,
        say_hello: bool,
    ) -> Result<ClientCore, ClientError> {
        let mut endpoint = Endpoint::new(Arc::new(EndpointConfig::default()), None, false, None);
        let (ch, conn) = endpoint
            .connect(now, client_config(options)?, server, "localhost")
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let hello = say_hello.then(|| {
            let mut hello = Vec::new();
            Hello { flags: options.flags, api_key: &options.api_key }.encode(&mut hello);
            hello
        });
        Ok(ClientCore {
            endpoint,
            ch,
            conn,
            hello,
            control: None,
            connected: false,
            control_buf: Vec::new(),
            welcome: None,
            result: None,
            result_buf: Vec::new(),
            reading_results: true,
            data: None,
            frames: VecDeque::new(),
            lost: None,
            responses: VecDeque::new(),
        })
    }

    /// Stops (`false`) or resumes reading the result stream. While stopped, its bytes stay in
    /// QUIC's receive buffer and the server's credit runs out: a slow consumer.
    pub fn read_results(&mut self, on: bool) {
        self.reading_results = on;
    }

    /// Whether the QUIC handshake is done.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The server's answer to the hello, once it came (it may be a refusal: check `status`).
    pub fn welcome(&self) -> Option<Welcome> {
        self.welcome
    }

    /// Why the connection ended, once it has.
    pub fn lost(&self) -> Option<&ConnectionError> {
        self.lost.as_ref()
    }

    /// Largest datagram payload the connection can send now.
    pub fn datagram_max(&mut self) -> usize {
        self.conn.datagrams().max_size().unwrap_or(0)
    }

    /// Queues `frame` as one DATAGRAM; `Blocked` hands it back while the send buffer is full.
    pub fn send_datagram(&mut self, frame: Bytes) -> Result<(), SendDatagramError> {
        self.conn.datagrams().send(frame, false)
    }

    /// This client's data stream (one uni stream, opened at first use).
    pub fn data_stream(&mut self) -> Result<StreamId, ClientError> {
        if let Some(id) = self.data {
            return Ok(id);
        }
        let id = self.open_uni()?;
        self.data = Some(id);
        Ok(id)
    }

    /// A new uni stream.
    pub fn open_uni(&mut self) -> Result<StreamId, ClientError> {
        self.conn.streams().open(Dir::Uni).ok_or(ClientError::Timeout("a uni stream"))
    }

    /// Writes what the stream's flow control takes of `bytes`; `Blocked` while it takes
    /// nothing.
    pub fn write_stream(&mut self, id: StreamId, bytes: &[u8]) -> Result<usize, WriteError> {
        self.conn.send_stream(id).write(bytes)
    }

    /// Ends a stream this client wrote.
    pub fn finish_stream(&mut self, id: StreamId) {
        let _ = self.conn.send_stream(id).finish();
    }

    /// Whether frames from the server are waiting for [`ClientCore::poll_frame`].
    pub fn has_frames(&self) -> bool {
        !self.frames.is_empty()
    }

    /// The next whole frame from the server (receipt datagrams, result-stream frames).
    pub fn poll_frame(&mut self) -> Option<(Origin, Vec<u8>)> {
        self.frames.pop_front()
    }

    /// Closes the connection (code 0); poll transmits to send the close.
    pub fn close(&mut self, now: Instant) {
        self.conn.close(now, VarInt::from_u32(0), Bytes::new());
    }

    /// One UDP datagram from `remote`.
    pub fn handle_datagram(&mut self, now: Instant, remote: SocketAddr, data: &[u8]) {
        let mut response = Vec::new();
        match self.endpoint.handle(now, remote, None, None, BytesMut::from(data), &mut response) {
            Some(DatagramEvent::ConnectionEvent(ch, event)) if ch == self.ch => self.conn.handle_event(event),
            Some(DatagramEvent::Response(t)) => {
                response.truncate(t.size);
                self.responses.push_back((t, response));
            }
            _ => {}
        }
        self.process();
    }

    /// When [`ClientCore::handle_timeout`] has something to do.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.conn.poll_timeout()
    }

    /// The connection's timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.conn.poll_timeout().is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
        }
        self.process();
    }

    /// The next UDP datagram to send, `buf[..transmit.size]`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        buf.clear();
        if let Some((t, bytes)) = self.responses.pop_front() {
            buf.extend_from_slice(&bytes);
            return Some(t);
        }
        let t = self.conn.poll_transmit(now, 1, buf);
        self.process();
        t
    }

    /// Endpoint and application events, then the control and result streams.
    fn process(&mut self) {
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
        if self.connected {
            self.say_hello();
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
        if let Some(id) = self.result
            && self.reading_results
        {
            read_all(&mut self.conn, id, &mut self.result_buf);
            self.cut_result_frames();
        }
    }

    /// Opens the control stream and writes the hello (at most 264 bytes: always within a
    /// fresh stream's credit).
    fn say_hello(&mut self) {
        let Some(hello) = self.hello.take() else { return };
        let Some(id) = self.conn.streams().open(Dir::Bi) else {
            self.hello = Some(hello);
            return;
        };
        self.control = Some(id);
        let written = self.conn.send_stream(id).write(&hello);
        debug_assert_eq!(written.ok(), Some(hello.len()), "a hello fits a fresh stream");
    }

    fn cut_result_frames(&mut self) {
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

/// The client's QUIC config: TLS pinned to the server's certificate, generous receive
/// buffers (a test client must not be the bottleneck), a keep-alive every second.
fn client_config(options: &ClientOptions) -> Result<ClientConfig, ClientError> {
    let crypto =
        client_crypto_pinned(options.pin, &options.alpn).map_err(|e| ClientError::Connect(e.to_string()))?;
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
    Ok(config)
}

fn read_all(conn: &mut Connection, id: StreamId, out: &mut Vec<u8>) {
    let mut stream = conn.recv_stream(id);
    if let Ok(mut chunks) = stream.read(true) {
        while let Ok(Some(chunk)) = chunks.next(usize::MAX) {
            out.extend_from_slice(&chunk.bytes);
        }
        let _ = chunks.finalize();
    }
}
