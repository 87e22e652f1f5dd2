//! The async client: one QUIC connection at a time, a driver task that reads what the server
//! sends and reconnects after a loss.
//!
//! Call order: [`Client::connect`] (handshake, hello, welcome; errors are returned), then any
//! number of `send_*` calls from any task and [`Events`] reads, then [`Client::close`]. The
//! driver task runs from `connect` until `close` or until the last `Client` handle is dropped.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fpn_wire::session::{
    HELLO_RECEIPTS_REFUSALS, HELLO_SUBSCRIBE_ALL, Hello, HelloError, WELCOME_LEN, Welcome,
    reason_of_app_error,
};
use fpn_wire::{FRAME_HEADER_LEN, Reason, peek_frame_len};
use quinn::{ConnectionError, ReadExactError, RecvStream, SendStream, VarInt, WriteError};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinSet;

use crate::event::{Event, Via, decode_server_frame};
use crate::pack::{Record, RecordTooLarge, STREAM_FRAME_LEN_MAX, pack_frames};
use crate::tls::{Fingerprint, PinVerifier, Trust, quic_client_config};

/// The receiver of a client's events. Bounded: a caller that stops reading slows the result
/// stream down through QUIC flow control, and the oldest unread receipt datagrams are
/// dropped by quinn's receive buffer.
pub type Events = mpsc::Receiver<Event>;

/// Capped exponential backoff between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait before the first attempt.
    pub delay_initial: Duration,
    /// The wait doubles after each failed attempt up to this.
    pub delay_max: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub attempts_max: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            delay_initial: Duration::from_millis(100),
            delay_max: Duration::from_secs(5),
            attempts_max: None,
        }
    }
}

/// How the server answers this client's accepted intents and bids (`docs/transport.md`,
/// "Receipt modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReceiptMode {
    /// One [`Event::Receipt`] per record.
    #[default]
    All,
    /// [`Event::Receipt`]s for refused records and cancels only (on the result stream);
    /// accepted intents and bids come as [`Event::Watermark`]s, every few milliseconds.
    /// A bulk sender then does no receive work per record. [`crate::Ledger`] tells which
    /// nonces are answered.
    Refusals,
}

/// How to reach and authenticate a server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub addr: SocketAddr,
    /// TLS server name (SNI); with [`Trust::CaFile`] the certificate must name it.
    pub server_name: String,
    pub trust: Trust,
    /// The hello's API key (1..=256 bytes). In the daemon's open mode it is the client id in
    /// decimal.
    pub api_key: Vec<u8>,
    /// Ask for every window's block and clearing, not only those of windows the client had
    /// records in.
    pub subscribe_all: bool,
    /// Receipt mode of the session (the hello's flag bit 1).
    pub receipts: ReceiptMode,
    /// Limit on one connection attempt: handshake, hello and welcome.
    pub connect_timeout: Duration,
    /// QUIC keep-alive interval; also how soon a dead server is noticed together with the
    /// idle timeout.
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
    /// `None`: a lost connection ends the client ([`Event::Closed`]).
    pub reconnect: Option<Backoff>,
    /// Capacity of the [`Events`] channel.
    pub events_capacity: usize,
    /// Largest frame accepted on the result stream (blocks grow with the window).
    pub result_frame_len_max: usize,
}

impl ClientConfig {
    pub fn new(addr: SocketAddr, trust: Trust, api_key: impl Into<Vec<u8>>) -> ClientConfig {
        ClientConfig {
            addr,
            server_name: "localhost".to_string(),
            trust,
            api_key: api_key.into(),
            subscribe_all: false,
            receipts: ReceiptMode::All,
            connect_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            reconnect: Some(Backoff::default()),
            events_capacity: 65_536,
            result_frame_len_max: 64 << 20,
        }
    }
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The welcome refused the session (or the server closed the connection with
    /// `0x100 + reason`): `unauthorized`, `overloaded`, or a hello the server could not read.
    #[error("server refused the session: {}", .0.as_str())]
    Refused(Reason),
    #[error("server certificate {got} does not match the pin {expected}")]
    PinMismatch { expected: Fingerprint, got: Fingerprint },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("API key of {0} bytes (1..=256)")]
    BadKey(usize),
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(ConnectionError),
    #[error("no session within {0:?} (handshake, hello, welcome)")]
    Timeout(Duration),
    #[error("bad welcome: {0}")]
    BadWelcome(HelloError),
    #[error("control stream: {0}")]
    Protocol(String),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

impl ConnectError {
    /// Errors that the same attempt would meet again: reconnecting does not help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ConnectError::Refused(
                Reason::Unauthorized
                    | Reason::BadMagic
                    | Reason::UnsupportedVersion
                    | Reason::ReservedNonzero
                    | Reason::BadLength
            ) | ConnectError::PinMismatch { .. }
                | ConnectError::Tls(_)
                | ConnectError::BadKey(_)
                | ConnectError::BadWelcome(_)
        )
    }
}

/// Why a frame was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Between sessions (reconnecting). Wait for [`Event::Connected`] or
    /// [`Client::wait_connected`], then resend.
    #[error("not connected")]
    NotConnected,
    /// The client was closed, or gave up reconnecting.
    #[error("client closed")]
    Closed,
    /// The server closed the session because this client read its answers too slowly
    /// (`slow_consumer`, `docs/transport.md`). The client reconnects; resend what has no
    /// answer with its same nonce.
    #[error("closed by the server: slow consumer")]
    SlowConsumer,
    #[error("frame of {len} bytes exceeds the datagram limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("the server takes no datagrams on this connection")]
    DatagramsUnsupported,
    /// The connection ended while sending; what was sent before may or may not have arrived.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The server stopped the records stream (a frame refused whole, `0x100 + reason`); the
    /// next send opens a new stream.
    #[error("records stream stopped by the server ({})", .0.map_or("no reason", Reason::as_str))]
    StreamStopped(Option<Reason>),
    #[error(transparent)]
    RecordTooLarge(#[from] RecordTooLarge),
}

/// One open session.
#[derive(Debug)]
struct Session {
    conn: quinn::Connection,
    welcome: Welcome,
    epoch: u64,
    /// Kept open for the session's life: dropping it would finish the control stream, and a
    /// finished control stream closes the session.
    _control: SendStream,
    /// The records stream, opened at the first stream send.
    records: Mutex<Option<SendStream>>,
}

impl Session {
    fn datagram_frame_max(&self) -> usize {
        let path = self.conn.max_datagram_size().unwrap_or(0);
        usize::from(self.welcome.datagram_frame_max).min(path)
    }
}

/// What the caller can see of the current session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// 0 for the first session, then one more per reconnect.
    pub epoch: u64,
    pub welcome: Welcome,
    /// Largest frame [`Client::send_datagram`] takes now: the welcome's limit, capped by
    /// what the path carries.
    pub datagram_frame_max: usize,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    endpoint: quinn::Endpoint,
    quic: quinn::ClientConfig,
    pin: Option<Arc<PinVerifier>>,
    session: watch::Sender<Option<Arc<Session>>>,
    stop: watch::Sender<bool>,
}

/// Stops the driver when the last [`Client`] handle goes.
#[derive(Debug)]
struct StopOnDrop(Arc<Inner>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.send_replace(true);
    }
}

/// A Flashpoint client (`docs/transport.md`). Cheap to clone; every clone sends on the same
/// session. Must be used inside a tokio runtime; [`crate::BlockingClient`] wraps it for
/// plain threads.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
}

impl Client {
    /// Opens the first session: QUIC handshake, hello on the first bidirectional stream,
    /// welcome. A refused welcome is [`ConnectError::Refused`]. Then starts the driver task
    /// that delivers [`Event`]s and reconnects.
    pub async fn connect(config: ClientConfig) -> Result<(Client, Events), ConnectError> {
        if !(1..=fpn_wire::session::API_KEY_LEN_MAX).contains(&config.api_key.len()) {
            return Err(ConnectError::BadKey(config.api_key.len()));
        }
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(config.keep_alive));
        transport.max_idle_timeout(Some(
            config
                .idle_timeout
                .try_into()
                .map_err(|_| ConnectError::Protocol("idle timeout too large".into()))?,
        ));
        let (quic, pin) = quic_client_config(&config.trust, Arc::new(transport))?;
        let bind: SocketAddr = if config.addr.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = quinn::Endpoint::client(bind)?;
        let (events_tx, events) = mpsc::channel(config.events_capacity.max(1));
        let inner = Arc::new(Inner {
            config,
            endpoint,
            quic,
            pin,
            session: watch::Sender::new(None),
            stop: watch::Sender::new(false),
        });
        let (session, control) = inner.open_session(0).await?;
        inner.session.send_replace(Some(session.clone()));
        let _ = events_tx.try_send(Event::Connected { epoch: 0, welcome: session.welcome });
        tokio::spawn(drive(inner.clone(), session, control, events_tx));
        Ok((Client { inner: inner.clone(), _stop: Arc::new(StopOnDrop(inner)) }, events))
    }

    /// The current session, if one is open.
    pub fn session(&self) -> Option<SessionInfo> {
        self.inner.session.borrow().as_ref().map(|s| SessionInfo {
            epoch: s.epoch,
            welcome: s.welcome,
            datagram_frame_max: s.datagram_frame_max(),
        })
    }

    /// The client id the server bound to the current session.
    pub fn client_id(&self) -> Option<u64> {
        self.session().map(|s| s.welcome.client_id)
    }

    /// Waits until a session is open (at most `timeout`) and returns it.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<SessionInfo, SendError> {
        let mut session = self.inner.session.subscribe();
        let mut stop = self.inner.stop.subscribe();
        let wait = async {
            tokio::select! {
                r = session.wait_for(Option::is_some) => r.map(|_| ()).map_err(|_| SendError::Closed),
                () = stopped(&mut stop) => Err(SendError::Closed),
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(())) => self.session().ok_or(SendError::NotConnected),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SendError::NotConnected),
        }
    }

    fn current(&self) -> Result<Arc<Session>, SendError> {
        if *self.inner.stop.borrow() {
            return Err(SendError::Closed);
        }
        self.inner.session.borrow().clone().ok_or(SendError::NotConnected)
    }

    /// Sends one frame as one QUIC datagram. Waits while the connection's datagram send
    /// buffer is full rather than dropping an older datagram. Unreliable: the frame or its
    /// receipts may be lost in the network; resend (same nonce) what has no receipt.
    pub async fn send_datagram(&self, frame: &[u8]) -> Result<(), SendError> {
        let session = self.current()?;
        let max = session.datagram_frame_max();
        if max == 0 {
            return Err(SendError::DatagramsUnsupported);
        }
        if frame.len() > max {
            return Err(SendError::TooLarge { len: frame.len(), max });
        }
        session.conn.send_datagram_wait(Bytes::copy_from_slice(frame)).await.map_err(|e| match e {
            quinn::SendDatagramError::TooLarge => SendError::TooLarge { len: frame.len(), max },
            quinn::SendDatagramError::UnsupportedByPeer | quinn::SendDatagramError::Disabled => {
                SendError::DatagramsUnsupported
            }
            quinn::SendDatagramError::ConnectionLost(e) => lost(&e),
        })
    }

    /// Writes one frame on the session's records stream (a unidirectional stream, opened at
    /// the first call). Reliable and ordered while the connection lives; returns once QUIC
    /// has buffered the frame.
    pub async fn send_stream(&self, frame: &[u8]) -> Result<(), SendError> {
        let session = self.current()?;
        let mut records = session.records.lock().await;
        if records.is_none() {
            let stream = session.conn.open_uni().await.map_err(|e| lost(&e))?;
            *records = Some(stream);
        }
        let stream = records.as_mut().expect("opened above");
        match stream.write_all(frame).await {
            Ok(()) => Ok(()),
            Err(WriteError::Stopped(code)) => {
                *records = None;
                Err(SendError::StreamStopped(reason_of_app_error(code.into_inner())))
            }
            Err(WriteError::ConnectionLost(e)) => Err(lost(&e)),
            Err(e) => {
                *records = None;
                Err(SendError::ConnectionLost(e.to_string()))
            }
        }
    }

    pub async fn send_frame(&self, frame: &[u8], via: Via) -> Result<(), SendError> {
        match via {
            Via::Datagram => self.send_datagram(frame).await,
            Via::Stream => self.send_stream(frame).await,
        }
    }

    /// Packs `records` into frames (the datagram limit of the session, or
    /// [`STREAM_FRAME_LEN_MAX`] on the stream) and sends them in order. Returns the number
    /// of frames. On an error some frames may have been sent: match receipts by (kind, nonce)
    /// and resend the rest.
    pub async fn send_records(&self, records: &[Record<'_>], via: Via) -> Result<usize, SendError> {
        let len_max = match via {
            Via::Datagram => {
                let max = self.current()?.datagram_frame_max();
                if max == 0 {
                    return Err(SendError::DatagramsUnsupported);
                }
                max
            }
            Via::Stream => STREAM_FRAME_LEN_MAX,
        };
        let mut frames = Vec::new();
        pack_frames(records, len_max, &mut frames)?;
        for frame in &frames {
            self.send_frame(frame, via).await?;
        }
        Ok(frames.len())
    }

    /// Closes the session (application code 0) and stops the driver; the event receiver then
    /// yields [`Event::Closed`]. Stream data not yet delivered is discarded: wait for the
    /// receipts you need first.
    pub async fn close(&self) {
        self.inner.stop.send_replace(true);
        if let Some(session) = self.inner.session.send_replace(None) {
            if let Some(mut records) = session.records.lock().await.take() {
                let _ = records.finish();
            }
            session.conn.close(VarInt::from_u32(0), b"client closed");
        }
        // Lets the CONNECTION_CLOSE go out; bounded so a dead path does not hold the caller.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }
}

impl Inner {
    /// One connection attempt, bounded by the connect timeout.
    async fn open_session(&self, epoch: u64) -> Result<(Arc<Session>, RecvStream), ConnectError> {
        let timeout = self.config.connect_timeout;
        match tokio::time::timeout(timeout, self.handshake(epoch)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout(timeout)),
        }
    }

    async fn handshake(&self, epoch: u64) -> Result<(Arc<Session>, RecvStream), ConnectError> {
        let connecting =
            self.endpoint.connect_with(self.quic.clone(), self.config.addr, &self.config.server_name)?;
        let conn = connecting.await.map_err(|e| self.connection_error(e))?;
        let (mut control, mut recv) = conn.open_bi().await.map_err(|e| self.connection_error(e))?;
        let mut hello = Vec::with_capacity(fpn_wire::session::HELLO_FIXED_LEN + self.config.api_key.len());
        let mut flags = if self.config.subscribe_all { HELLO_SUBSCRIBE_ALL } else { 0 };
        if self.config.receipts == ReceiptMode::Refusals {
            flags |= HELLO_RECEIPTS_REFUSALS;
        }
        Hello { flags, api_key: &self.config.api_key }.encode(&mut hello);
        if let Err(e) = control.write_all(&hello).await {
            return Err(match e {
                WriteError::ConnectionLost(e) => self.connection_error(e),
                e => ConnectError::Protocol(e.to_string()),
            });
        }
        let mut buf = [0u8; WELCOME_LEN];
        if let Err(e) = recv.read_exact(&mut buf).await {
            return Err(match e {
                ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e)) => self.connection_error(e),
                // The stream ended early: the connection's close code may say why.
                e => match conn.close_reason() {
                    Some(close) => self.connection_error(close),
                    None => ConnectError::Protocol(e.to_string()),
                },
            });
        }
        let welcome = Welcome::decode(&buf).map_err(ConnectError::BadWelcome)?;
        if let Err(reason) = welcome.status {
            conn.close(VarInt::from_u32(0), b"refused");
            return Err(ConnectError::Refused(reason));
        }
        let session = Session { conn, welcome, epoch, _control: control, records: Mutex::new(None) };
        Ok((Arc::new(session), recv))
    }

    /// A connection error, explained: a reason code from the server, or a pin mismatch seen
    /// by our verifier.
    fn connection_error(&self, e: ConnectionError) -> ConnectError {
        if let ConnectionError::ApplicationClosed(close) = &e
            && let Some(reason) = reason_of_app_error(close.error_code.into_inner())
        {
            return ConnectError::Refused(reason);
        }
        if let Some(pin) = &self.pin
            && let Some(got) = pin.take_refused()
        {
            return ConnectError::PinMismatch { expected: pin.pin(), got };
        }
        ConnectError::Connection(e)
    }
}

/// Completes when the client is closed. The watch guard is dropped inside, so futures that
/// select on this stay `Send`.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

enum Ended {
    Stopped,
    /// Why, and the reason the server closed the connection with, if it did.
    Lost(String, Option<Reason>),
}

async fn emit(events: &mpsc::Sender<Event>, event: Event) {
    // A caller that dropped its receiver does not want events; sending is then a no-op.
    let _ = events.send(event).await;
}

/// The driver: reads the session, and after a loss reconnects with backoff.
async fn drive(
    inner: Arc<Inner>,
    mut session: Arc<Session>,
    mut control: RecvStream,
    events: mpsc::Sender<Event>,
) {
    let mut stop = inner.stop.subscribe();
    loop {
        let epoch = session.epoch;
        let ended = run_session(&inner, &session, control, &events, &mut stop).await;
        inner.session.send_replace(None);
        match ended {
            Ended::Stopped => {
                session.conn.close(VarInt::from_u32(0), b"client closed");
                return finish(&inner, &events, None).await;
            }
            Ended::Lost(error, reason) => emit(&events, Event::Disconnected { epoch, error, reason }).await,
        }
        drop(session);
        let Some(backoff) = inner.config.reconnect else {
            return finish(&inner, &events, Some("connection lost; reconnect is off".to_string())).await;
        };
        let mut delay = backoff.delay_initial;
        let mut failures = 0u32;
        (session, control) = loop {
            let attempt = async {
                tokio::time::sleep(delay).await;
                inner.open_session(epoch + 1).await
            };
            let result = tokio::select! {
                r = attempt => Some(r),
                () = stopped(&mut stop) => None,
            };
            let Some(result) = result else {
                return finish(&inner, &events, None).await;
            };
            match result {
                Ok(opened) => break opened,
                Err(e) if e.is_permanent() => return finish(&inner, &events, Some(e.to_string())).await,
                Err(e) => {
                    failures += 1;
                    if backoff.attempts_max.is_some_and(|max| failures >= max) {
                        let error = format!("gave up after {failures} reconnect attempts: {e}");
                        return finish(&inner, &events, Some(error)).await;
                    }
                    delay = (delay * 2).min(backoff.delay_max);
                }
            }
        };
        inner.session.send_replace(Some(session.clone()));
        if *stop.borrow() {
            // Closed while the last attempt was finishing.
            continue;
        }
        emit(&events, Event::Connected { epoch: session.epoch, welcome: session.welcome }).await;
    }
}

/// The driver's end: sends fail with [`SendError::Closed`] from here on, and the last event
/// says why.
async fn finish(inner: &Inner, events: &mpsc::Sender<Event>, error: Option<String>) {
    inner.stop.send_replace(true);
    emit(events, Event::Closed { error }).await;
}

/// Reads one session until its connection ends or the client is closed.
async fn run_session(
    inner: &Inner,
    session: &Session,
    mut control: RecvStream,
    events: &mpsc::Sender<Event>,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let mut tasks = JoinSet::new();
    let conn = session.conn.clone();
    let tx = events.clone();
    tasks.spawn(async move {
        let mut out = Vec::new();
        while let Ok(datagram) = conn.read_datagram().await {
            decode_server_frame(&datagram, Via::Datagram, &mut out);
            for event in out.drain(..) {
                emit(&tx, event).await;
            }
        }
    });
    let conn = session.conn.clone();
    tasks.spawn(async move {
        // Nothing follows the welcome on the control stream; its end ends the session.
        let mut buf = [0u8; 64];
        while let Ok(Some(_)) = control.read(&mut buf).await {}
        conn.close(VarInt::from_u32(0), b"control stream ended");
    });
    let conn = session.conn.clone();
    let tx = events.clone();
    let frame_len_max = inner.config.result_frame_len_max;
    tasks.spawn(async move {
        // The server opens one result stream per session; read any it opens.
        let mut readers = JoinSet::new();
        while let Ok(recv) = conn.accept_uni().await {
            readers.spawn(read_result_stream(recv, tx.clone(), frame_len_max));
        }
        while readers.join_next().await.is_some() {}
    });
    tokio::select! {
        error = session.conn.closed() => {
            // Let the readers hand over what they already read.
            let drain = async { while tasks.join_next().await.is_some() {} };
            let _ = tokio::time::timeout(Duration::from_millis(200), drain).await;
            if *stop.borrow() { Ended::Stopped } else { Ended::Lost(describe(&error), close_reason(&error)) }
        }
        () = stopped(stop) => Ended::Stopped,
    }
}

fn describe(error: &ConnectionError) -> String {
    match close_reason(error) {
        Some(reason) => format!("closed by the server: {}", reason.as_str()),
        None => error.to_string(),
    }
}

/// The reason a connection closed by the server carries (`0x100 + reason`).
fn close_reason(error: &ConnectionError) -> Option<Reason> {
    let ConnectionError::ApplicationClosed(close) = error else { return None };
    reason_of_app_error(close.error_code.into_inner())
}

/// A send that met the connection's end: [`SendError::SlowConsumer`] when the server closed
/// it for that.
fn lost(error: &ConnectionError) -> SendError {
    match close_reason(error) {
        Some(Reason::SlowConsumer) => SendError::SlowConsumer,
        _ => SendError::ConnectionLost(error.to_string()),
    }
}

/// Reads wire frames back to back from a result stream.
async fn read_result_stream(mut recv: RecvStream, events: mpsc::Sender<Event>, frame_len_max: usize) {
    let mut frame = vec![0u8; FRAME_HEADER_LEN];
    let mut out = Vec::new();
    loop {
        frame.resize(FRAME_HEADER_LEN, 0);
        if recv.read_exact(&mut frame).await.is_err() {
            return;
        }
        let len = match peek_frame_len(&frame) {
            Ok(len) if len <= frame_len_max => len,
            other => {
                // The stream's framing is lost: nothing after this can be read safely.
                let reason = other.err().unwrap_or(Reason::Oversized);
                emit(&events, Event::BadFrame { via: Via::Stream, reason }).await;
                let _ =
                    recv.stop(VarInt::from_u64(fpn_wire::session::app_error(reason)).expect("small code"));
                return;
            }
        };
        frame.resize(len, 0);
        if recv.read_exact(&mut frame[FRAME_HEADER_LEN..]).await.is_err() {
            return;
        }
        decode_server_frame(&frame, Via::Stream, &mut out);
        for event in out.drain(..) {
            emit(&events, event).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(code: u64) -> ConnectionError {
        ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: VarInt::from_u64(code).unwrap(),
            reason: Bytes::new(),
        })
    }

    #[test]
    fn a_slow_consumer_close_is_told_apart_from_other_losses() {
        let slow = closed(fpn_wire::session::app_error(Reason::SlowConsumer));
        assert_eq!(close_reason(&slow), Some(Reason::SlowConsumer));
        assert_eq!(lost(&slow), SendError::SlowConsumer);
        assert_eq!(describe(&slow), "closed by the server: slow_consumer");
        let event = Event::Disconnected { epoch: 3, error: describe(&slow), reason: close_reason(&slow) };
        assert!(event.is_slow_consumer());
        let shutdown = closed(fpn_wire::session::app_error(Reason::ShuttingDown));
        assert!(matches!(lost(&shutdown), SendError::ConnectionLost(_)));
        assert_eq!(close_reason(&closed(0)), None);
        assert!(!Event::Disconnected { epoch: 0, error: String::new(), reason: None }.is_slow_consumer());
        assert!(matches!(lost(&ConnectionError::TimedOut), SendError::ConnectionLost(_)));
    }
}
