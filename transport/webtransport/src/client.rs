//! A Rust WebTransport client of `fpn/1`, for tests and the bench harness: one session over
//! quinn, with just enough HTTP/3 for it (SETTINGS, one extended CONNECT, WebTransport
//! streams and HTTP datagrams).
//!
//! Why not h3's client: h3 0.0.8's `client::Builder` cannot announce
//! `SETTINGS_ENABLE_WEBTRANSPORT`, and h3-webtransport's server refuses a session from a
//! peer that did not (`H3_SETTINGS_ERROR`). `docs/webtransport.md` has the evidence.
//!
//! What it does not do: QPACK's dynamic table (it announces a capacity of 0, so the server
//! may not use one) and Huffman-coded response fields other than `:status` from the static
//! table; server push; more than one session per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fpn_client::{Event, Trust, decode_server_frame};
use fpn_tls::{PinVerifier, provider};
use fpn_wire::session::{HELLO_SUBSCRIBE_ALL, Hello, WELCOME_LEN, Welcome};
use fpn_wire::{FRAME_HEADER_LEN, peek_frame_len};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::mpsc;

use crate::engine::Via;
use crate::wt::{ALPN_H3, BIDI_SIGNAL, UNI_STREAM_TYPE, get_varint, put_varint};

/// HTTP/3 frame and stream types, and settings (RFC 9114, RFC 9297, the WebTransport draft).
const STREAM_CONTROL: u64 = 0x00;
const FRAME_HEADERS: u64 = 0x01;
const FRAME_SETTINGS: u64 = 0x04;
const SETTING_QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
const SETTING_ENABLE_CONNECT_PROTOCOL: u64 = 0x08;
const SETTING_H3_DATAGRAM: u64 = 0x33;
const SETTING_ENABLE_WEBTRANSPORT: u64 = 0x2b60_3742;
/// Largest HTTP/3 frame this client reads on its request or control stream.
const H3_FRAME_MAX: u64 = 16 * 1024;
/// Events buffered before the reader waits for the caller.
const EVENTS_MAX: usize = 1 << 16;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub addr: SocketAddr,
    /// TLS server name (and `:authority` host).
    pub server_name: String,
    pub path: String,
    pub trust: Trust,
    pub api_key: Vec<u8>,
    pub subscribe_all: bool,
    pub timeout: Duration,
}

impl ClientConfig {
    /// Loopback defaults for `addr`, pinned to `pin`, with the API key `key`.
    pub fn pinned(addr: SocketAddr, pin: fpn_tls::Fingerprint, key: &str) -> ClientConfig {
        ClientConfig {
            addr,
            server_name: "localhost".into(),
            path: crate::wt::DEFAULT_PATH.into(),
            trust: Trust::Pin(pin),
            api_key: key.as_bytes().to_vec(),
            subscribe_all: false,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why a session could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("connecting: {0}")]
    Connect(String),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("HTTP/3: {0}")]
    Protocol(String),
    #[error("the server answered the CONNECT with status {0}")]
    Status(u16),
    #[error("the session was refused: {0}")]
    Refused(fpn_wire::Reason),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("stream: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("datagram: {0}")]
    Datagram(#[from] quinn::SendDatagramError),
}

/// One open `fpn/1` session over WebTransport.
pub struct Client {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    welcome: Welcome,
    /// The HTTP datagram prefix: the CONNECT stream's quarter id.
    prefix: Vec<u8>,
    session_id: u64,
    records: Option<quinn::SendStream>,
    events: mpsc::Receiver<Event>,
    /// Kept open: closing the HTTP/3 control stream, the CONNECT stream or the `fpn/1`
    /// control stream ends the session.
    _streams: (quinn::SendStream, quinn::SendStream, quinn::SendStream),
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("welcome", &self.welcome).finish_non_exhaustive()
    }
}

impl Client {
    /// Opens a session: QUIC (ALPN `h3`), SETTINGS, the extended CONNECT, the control stream
    /// with the hello, and the welcome. Runs on the caller's tokio runtime.
    pub async fn connect(config: &ClientConfig) -> Result<Client, ClientError> {
        let t = config.timeout;
        let bind: SocketAddr = if config.addr.is_ipv6() {
            "[::]:0".parse().expect("addr")
        } else {
            "0.0.0.0:0".parse().expect("addr")
        };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| ClientError::Connect(e.to_string()))?;
        endpoint.set_default_client_config(quic_config(&config.trust)?);
        let connecting = endpoint
            .connect(config.addr, &config.server_name)
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let conn = within(t, "handshake", async { Ok(connecting.await?) }).await?;
        // HTTP/3 control stream with our SETTINGS; then the server's SETTINGS.
        let mut h3_control = conn.open_uni().await?;
        h3_control.write_all(&settings_stream()).await?;
        let (server_settings, pending_uni) =
            within(t, "server SETTINGS", read_server_settings(&conn)).await?;
        if server_settings.get(&SETTING_ENABLE_WEBTRANSPORT) != Some(&1)
            || server_settings.get(&SETTING_H3_DATAGRAM) != Some(&1)
        {
            return Err(ClientError::Protocol(
                "the server does not offer WebTransport with HTTP datagrams".into(),
            ));
        }
        // The extended CONNECT.
        let (mut connect_send, mut connect_recv) = conn.open_bi().await?;
        let session_id = quinn::VarInt::from(connect_send.id()).into_inner();
        let authority = format!("{}:{}", config.server_name, config.addr.port());
        connect_send.write_all(&headers_frame(&connect_request(&authority, &config.path))).await?;
        let status = within(t, "CONNECT response", read_response_status(&mut connect_recv)).await?;
        if status != 200 {
            return Err(ClientError::Status(status));
        }
        // The `fpn/1` control stream: a WebTransport bidirectional stream with the hello.
        let (mut control_send, mut control_recv) = conn.open_bi().await?;
        let mut hello = Vec::new();
        put_varint(&mut hello, BIDI_SIGNAL);
        put_varint(&mut hello, session_id);
        let flags = if config.subscribe_all { HELLO_SUBSCRIBE_ALL } else { 0 };
        Hello { flags, api_key: &config.api_key }.encode(&mut hello);
        control_send.write_all(&hello).await?;
        let mut bytes = [0u8; WELCOME_LEN];
        within(t, "welcome", async {
            control_recv
                .read_exact(&mut bytes)
                .await
                .map_err(|e| ClientError::Protocol(format!("welcome: {e}")))
        })
        .await?;
        let welcome = Welcome::decode(&bytes).map_err(|e| ClientError::Protocol(format!("welcome: {e}")))?;
        if let Err(reason) = welcome.status {
            return Err(ClientError::Refused(reason));
        }
        let mut prefix = Vec::new();
        put_varint(&mut prefix, session_id / 4);
        let (tx, events) = mpsc::channel(EVENTS_MAX);
        tokio::spawn(read_datagrams(conn.clone(), prefix.clone(), tx.clone()));
        tokio::spawn(accept_uni(conn.clone(), session_id, pending_uni, tx));
        Ok(Client {
            endpoint,
            conn,
            welcome,
            prefix,
            session_id,
            records: None,
            events,
            _streams: (h3_control, connect_send, control_send),
        })
    }

    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Largest frame a datagram can carry: the smaller of the welcome's and the path's.
    pub fn datagram_frame_max(&self) -> usize {
        let path = self.conn.max_datagram_size().map_or(0, |m| m.saturating_sub(self.prefix.len()));
        path.min(usize::from(self.welcome.datagram_frame_max))
    }

    /// Sends one frame in an HTTP datagram, waiting for room in the send buffer rather than
    /// discarding an older datagram.
    pub async fn send_datagram(&self, frame: &[u8]) -> Result<(), ClientError> {
        self.datagrams().send(frame).await
    }

    /// A handle that sends datagrams of this session, for another task than the one reading
    /// events (the bench harness's sender).
    pub fn datagrams(&self) -> DatagramSender {
        DatagramSender { conn: self.conn.clone(), prefix: Bytes::copy_from_slice(&self.prefix) }
    }

    /// Sends frames on the records stream (opened at the first call and kept open).
    pub async fn send_stream(&mut self, frames: &[u8]) -> Result<(), ClientError> {
        if self.records.is_none() {
            let mut stream = self.conn.open_uni().await?;
            let mut header = Vec::new();
            put_varint(&mut header, UNI_STREAM_TYPE);
            put_varint(&mut header, self.session_id);
            stream.write_all(&header).await?;
            self.records = Some(stream);
        }
        let stream = self.records.as_mut().expect("opened above");
        Ok(stream.write_all(frames).await?)
    }

    /// The next receipt, block, clearing or proof; `None` once the session has ended and
    /// everything received was delivered.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The QUIC connection (statistics, close reason).
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Closes the connection and waits (briefly) for the close to be sent.
    pub async fn close(self) {
        self.conn.close(0x100u32.into(), b"");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// Sends HTTP datagrams of one session (see [`Client::datagrams`]).
#[derive(Debug, Clone)]
pub struct DatagramSender {
    conn: quinn::Connection,
    /// The HTTP datagram prefix: the CONNECT stream's quarter id.
    prefix: Bytes,
}

impl DatagramSender {
    /// As [`Client::send_datagram`].
    pub async fn send(&self, frame: &[u8]) -> Result<(), ClientError> {
        let mut payload = BytesMut::with_capacity(self.prefix.len() + frame.len());
        payload.extend_from_slice(&self.prefix);
        payload.extend_from_slice(frame);
        Ok(self.conn.send_datagram_wait(payload.freeze()).await?)
    }
}

async fn within<T>(
    timeout: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(timeout, fut).await.map_err(|_| ClientError::Timeout(what))?
}

fn quic_config(trust: &Trust) -> Result<quinn::ClientConfig, ClientError> {
    let tls_err = |e: rustls::Error| ClientError::Tls(e.to_string());
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?;
    let mut tls = match trust {
        Trust::Pin(fp) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier::new(*fp, provider())))
            .with_no_client_auth(),
        Trust::CaFile(path) => {
            let pem =
                std::fs::read(path).map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
            builder.with_root_certificates(roots(&pem)?).with_no_client_auth()
        }
        Trust::CaPem(pem) => builder.with_root_certificates(roots(pem.as_bytes())?).with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls))
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

fn roots(pem: &[u8]) -> Result<rustls::RootCertStore, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| ClientError::Tls(format!("CA: {e}")))?;
        roots.add(cert).map_err(|e| ClientError::Tls(format!("CA: {e}")))?;
    }
    Ok(roots)
}

/// Our control stream's opening: its type and a SETTINGS frame.
fn settings_stream() -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in [
        (SETTING_QPACK_MAX_TABLE_CAPACITY, 0),
        (SETTING_ENABLE_CONNECT_PROTOCOL, 1),
        (SETTING_H3_DATAGRAM, 1),
        (SETTING_ENABLE_WEBTRANSPORT, 1),
    ] {
        put_varint(&mut payload, id);
        put_varint(&mut payload, value);
    }
    let mut out = Vec::new();
    put_varint(&mut out, STREAM_CONTROL);
    put_varint(&mut out, FRAME_SETTINGS);
    put_varint(&mut out, payload.len() as u64);
    out.extend_from_slice(&payload);
    out
}

/// Reads one HTTP/3 frame (type, payload) from a stream; `None` at its clean end.
async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Option<(u64, Vec<u8>)>, ClientError> {
    let Some(ty) = read_varint(recv).await? else { return Ok(None) };
    let len = read_varint(recv).await?.ok_or_else(|| ClientError::Protocol("frame cut short".into()))?;
    if len > H3_FRAME_MAX {
        return Err(ClientError::Protocol(format!("a {len}-byte HTTP/3 frame")));
    }
    let mut payload = vec![0; len as usize];
    recv.read_exact(&mut payload).await.map_err(|e| ClientError::Protocol(e.to_string()))?;
    Ok(Some((ty, payload)))
}

async fn read_varint(recv: &mut quinn::RecvStream) -> Result<Option<u64>, ClientError> {
    let mut first = [0u8; 1];
    match recv.read(&mut first).await.map_err(|e| ClientError::Protocol(e.to_string()))? {
        None | Some(0) => return Ok(None),
        Some(_) => {}
    }
    let mut buf = [0u8; 8];
    let len = 1usize << (first[0] >> 6);
    buf[0] = first[0];
    recv.read_exact(&mut buf[1..len]).await.map_err(|e| ClientError::Protocol(e.to_string()))?;
    Ok(get_varint(&buf[..len]).map(|(v, _)| v))
}

/// Accepts the server's unidirectional streams until its control stream's SETTINGS; returns
/// them and the WebTransport streams that came first.
async fn read_server_settings(
    conn: &quinn::Connection,
) -> Result<(std::collections::HashMap<u64, u64>, Vec<quinn::RecvStream>), ClientError> {
    let mut early = Vec::new();
    loop {
        let mut recv = conn.accept_uni().await?;
        match read_varint(&mut recv).await? {
            Some(STREAM_CONTROL) => {
                let Some((FRAME_SETTINGS, payload)) = read_frame(&mut recv).await? else {
                    return Err(ClientError::Protocol(
                        "the control stream does not start with SETTINGS".into(),
                    ));
                };
                let mut settings = std::collections::HashMap::new();
                let mut rest = &payload[..];
                while let Some((id, n)) = get_varint(rest) {
                    let (value, m) = get_varint(&rest[n..])
                        .ok_or_else(|| ClientError::Protocol("SETTINGS cut short".into()))?;
                    settings.insert(id, value);
                    rest = &rest[n + m..];
                }
                // The rest of the control stream (GOAWAY at most) is not needed; keep reading
                // it so its flow control never blocks the server.
                tokio::spawn(
                    async move { while let Ok(Some(_)) = recv.read_chunk(usize::MAX, true).await {} },
                );
                return Ok((settings, early));
            }
            Some(UNI_STREAM_TYPE) => early.push(recv),
            // QPACK encoder/decoder streams and reserved types: read and ignore.
            Some(_) => drop(tokio::spawn(async move {
                while let Ok(Some(_)) = recv.read_chunk(usize::MAX, true).await {}
            })),
            None => {}
        }
    }
}

/// The extended CONNECT of a WebTransport session, as (name, value) fields.
fn connect_request(authority: &str, path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "CONNECT".into()),
        (":scheme", "https".into()),
        (":authority", authority.into()),
        (":path", path.into()),
        (":protocol", "webtransport".into()),
        ("sec-webtransport-http3-draft02", "1".into()),
    ]
}

/// QPACK static table entries this client uses (RFC 9204, Appendix A).
const STATIC_AUTHORITY: u64 = 0;
const STATIC_PATH: u64 = 1;
const STATIC_METHOD_CONNECT: u64 = 15;
const STATIC_SCHEME_HTTPS: u64 = 23;
/// `:status` values of the static table, by index.
const STATIC_STATUS: [(u64, u16); 14] = [
    (24, 103),
    (25, 200),
    (26, 304),
    (27, 404),
    (28, 503),
    (63, 100),
    (64, 204),
    (65, 206),
    (66, 302),
    (67, 400),
    (68, 403),
    (69, 421),
    (70, 425),
    (71, 500),
];

/// A HEADERS frame with `fields` encoded without the dynamic table or Huffman coding.
fn headers_frame(fields: &[(&'static str, String)]) -> Vec<u8> {
    let mut block = vec![0, 0]; // Required Insert Count 0, Delta Base 0.
    for (name, value) in fields {
        match (*name, value.as_str()) {
            (":method", "CONNECT") => qpack_int(&mut block, 0xc0, 6, STATIC_METHOD_CONNECT),
            (":scheme", "https") => qpack_int(&mut block, 0xc0, 6, STATIC_SCHEME_HTTPS),
            (":authority", v) | (":path", v) => {
                let index = if *name == ":authority" { STATIC_AUTHORITY } else { STATIC_PATH };
                qpack_int(&mut block, 0x50, 4, index);
                qpack_string(&mut block, v.as_bytes());
            }
            (name, v) => {
                qpack_int(&mut block, 0x20, 3, name.len() as u64);
                block.extend_from_slice(name.as_bytes());
                qpack_string(&mut block, v.as_bytes());
            }
        }
    }
    let mut out = Vec::new();
    put_varint(&mut out, FRAME_HEADERS);
    put_varint(&mut out, block.len() as u64);
    out.extend_from_slice(&block);
    out
}

/// A QPACK prefixed integer (RFC 7541 §5.1) with `flags` in the bits above the prefix.
fn qpack_int(out: &mut Vec<u8>, flags: u8, prefix_bits: u8, mut v: u64) {
    let max = (1u64 << prefix_bits) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn qpack_string(out: &mut Vec<u8>, s: &[u8]) {
    qpack_int(out, 0x00, 7, s.len() as u64);
    out.extend_from_slice(s);
}

/// Reads a QPACK prefixed integer; returns it and the bytes it took.
fn get_qpack_int(buf: &[u8], prefix_bits: u8) -> Option<(u64, usize)> {
    let max = (1u64 << prefix_bits) - 1;
    let first = u64::from(*buf.first()?) & max;
    if first < max {
        return Some((first, 1));
    }
    let (mut v, mut shift) = (max, 0u32);
    for (i, b) in buf[1..].iter().enumerate() {
        v = v.checked_add(u64::from(b & 0x7f).checked_shl(shift)?)?;
        if b & 0x80 == 0 {
            return Some((v, i + 2));
        }
        shift += 7;
        if shift > 56 {
            return None;
        }
    }
    None
}

/// The `:status` of the response HEADERS on the CONNECT stream.
async fn read_response_status(recv: &mut quinn::RecvStream) -> Result<u16, ClientError> {
    loop {
        let Some((ty, payload)) = read_frame(recv).await? else {
            return Err(ClientError::Protocol("the CONNECT stream ended without a response".into()));
        };
        if ty == FRAME_HEADERS {
            return status_of(&payload);
        }
        // Reserved (grease) frame types are skipped.
    }
}

fn status_of(block: &[u8]) -> Result<u16, ClientError> {
    let bad = |what: &str| ClientError::Protocol(format!("response headers: {what}"));
    let (ric, n) = get_qpack_int(block, 8).ok_or_else(|| bad("prefix"))?;
    if ric != 0 {
        return Err(bad("uses the dynamic table"));
    }
    let (_, m) = get_qpack_int(&block[n..], 7).ok_or_else(|| bad("prefix"))?;
    let mut rest = &block[n + m..];
    while let Some(&first) = rest.first() {
        if first & 0x80 != 0 {
            // Indexed field line; static when T (0x40) is set.
            let (index, n) = get_qpack_int(rest, 6).ok_or_else(|| bad("index"))?;
            if first & 0x40 != 0
                && let Some(&(_, status)) = STATIC_STATUS.iter().find(|(i, _)| *i == index)
            {
                return Ok(status);
            }
            rest = &rest[n..];
        } else if first & 0x40 != 0 {
            // Literal with a name reference.
            let (index, n) = get_qpack_int(rest, 4).ok_or_else(|| bad("name index"))?;
            let value = &rest[n..];
            let huffman = value.first().is_some_and(|b| b & 0x80 != 0);
            let (len, m) = get_qpack_int(value, 7).ok_or_else(|| bad("value"))?;
            let text = value.get(m..m + len as usize).ok_or_else(|| bad("value cut short"))?;
            let is_status = first & 0x10 != 0 && STATIC_STATUS.iter().any(|(i, _)| *i == index);
            if is_status {
                if huffman {
                    return Err(bad("a Huffman-coded :status"));
                }
                let text = std::str::from_utf8(text).map_err(|_| bad(":status"))?;
                return text.parse().map_err(|_| bad(":status"));
            }
            rest = &value[m + len as usize..];
        } else if first & 0x20 != 0 {
            // Literal with a literal name: skip the name and the value.
            let (name_len, n) = get_qpack_int(rest, 3).ok_or_else(|| bad("name"))?;
            let value = rest.get(n + name_len as usize..).ok_or_else(|| bad("name cut short"))?;
            let (len, m) = get_qpack_int(value, 7).ok_or_else(|| bad("value"))?;
            rest = value.get(m + len as usize..).ok_or_else(|| bad("value cut short"))?;
        } else {
            return Err(bad("uses the dynamic table"));
        }
    }
    Err(bad("no :status"))
}

async fn read_datagrams(conn: quinn::Connection, prefix: Vec<u8>, tx: mpsc::Sender<Event>) {
    let mut out = Vec::new();
    while let Ok(d) = conn.read_datagram().await {
        let Some(frame) = d.strip_prefix(prefix.as_slice()) else { continue };
        decode_server_frame(frame, fpn_client::Via::Datagram, &mut out);
        for e in out.drain(..) {
            if tx.send(e).await.is_err() {
                return;
            }
        }
    }
}

async fn accept_uni(
    conn: quinn::Connection,
    session_id: u64,
    early: Vec<quinn::RecvStream>,
    tx: mpsc::Sender<Event>,
) {
    for recv in early {
        tokio::spawn(read_result_stream(recv, session_id, tx.clone()));
    }
    while let Ok(mut recv) = conn.accept_uni().await {
        match read_varint(&mut recv).await {
            Ok(Some(UNI_STREAM_TYPE)) => drop(tokio::spawn(read_result_stream(recv, session_id, tx.clone()))),
            _ => drop(tokio::spawn(async move {
                while let Ok(Some(_)) = recv.read_chunk(usize::MAX, true).await {}
            })),
        }
    }
}

/// A result stream: after its session id, wire frames back to back.
async fn read_result_stream(mut recv: quinn::RecvStream, session_id: u64, tx: mpsc::Sender<Event>) {
    match read_varint(&mut recv).await {
        Ok(Some(id)) if id == session_id => {}
        _ => return,
    }
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = Vec::new();
    loop {
        while buf.len() >= FRAME_HEADER_LEN {
            let Ok(len) = peek_frame_len(&buf) else { return };
            if buf.len() < len {
                break;
            }
            let frame: Bytes = buf.split_to(len).freeze();
            decode_server_frame(&frame, fpn_client::Via::Stream, &mut out);
            for e in out.drain(..) {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            _ => return,
        }
    }
}

/// The crate's [`Via`] of a client event's.
pub fn via_of(via: fpn_client::Via) -> Via {
    match via {
        fpn_client::Via::Datagram => Via::Datagram,
        fpn_client::Via::Stream => Via::Stream,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qpack_integers_round_trip_at_prefix_edges() {
        for (prefix, v) in
            [(3u8, 0u64), (3, 6), (3, 7), (3, 30), (4, 14), (4, 15), (4, 90), (6, 62), (6, 63), (7, 300)]
        {
            let mut out = Vec::new();
            qpack_int(&mut out, 0, prefix, v);
            assert_eq!(get_qpack_int(&out, prefix), Some((v, out.len())), "prefix {prefix} value {v}");
        }
        // RFC 7541 §C.1.2: 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        qpack_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
    }

    #[test]
    fn reads_the_status_of_indexed_and_literal_responses() {
        // :status 200 indexed from the static table (what h3's encoder writes).
        assert_eq!(status_of(&[0, 0, 0xd9]).unwrap(), 200);
        assert_eq!(status_of(&[0, 0, 0xdb]).unwrap(), 404);
        // A literal header first, then :status 418 as a literal with a static name reference.
        let mut block = vec![0, 0];
        qpack_int(&mut block, 0x20, 3, 4);
        block.extend_from_slice(b"x-id");
        qpack_string(&mut block, b"7");
        qpack_int(&mut block, 0x50, 4, 24);
        qpack_string(&mut block, b"418");
        assert_eq!(status_of(&block).unwrap(), 418);
        assert!(status_of(&[0x01, 0, 0xd9]).is_err(), "dynamic table");
        assert!(status_of(&[0, 0]).is_err(), "no status");
    }

    #[test]
    fn the_connect_request_uses_the_static_table_where_it_can() {
        let frame = headers_frame(&connect_request("localhost:4434", "/fpn/1"));
        let (ty, n) = get_varint(&frame).unwrap();
        let (len, m) = get_varint(&frame[n..]).unwrap();
        assert_eq!(ty, FRAME_HEADERS);
        let block = &frame[n + m..];
        assert_eq!(block.len() as u64, len);
        // Prefix, :method CONNECT (15), :scheme https (23), :authority by name reference.
        assert_eq!(&block[..5], &[0, 0, 0xcf, 0xd7, 0x50]);
        assert!(block.windows(12).any(|w| w == b"webtransport"));
    }
}
