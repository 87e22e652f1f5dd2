//! A minimal, bounded HTTP/1.1 server for the admin endpoint.
//!
//! It runs on plain std threads, off the pinned cores: one acceptor thread plus one short-
//! lived thread per connection, at most `connections_max` at a time (one more is answered
//! `503` and closed). Admin traffic is a scrape every few seconds and the odd health probe;
//! blocking sockets with deadlines keep it simple, need no io_uring memlock and cannot steal
//! time from a shard's executor. Each connection carries exactly one request
//! (`Connection: close`).
//!
//! Limits: the request head (request line + headers) is at most `head_bytes_max` (else
//! `431`), a body at most `body_bytes_max` and must come with `Content-Length` (else `413` /
//! `411`; `Transfer-Encoding` gets `501`), the whole request must arrive within
//! `request_timeout` (else `408`), and writing the answer gets `write_timeout`. Malformed
//! requests get `400`, methods other than `GET`/`POST` get `501`. A panicking handler
//! answers `500`; garbage never panics the server.
//!
//! Routing is the daemon's: [`AdminServer::start`] takes any `Fn(&Request) -> Response`;
//! [`Router`] is a small exact-path table that answers `404` and `405` itself.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most headers accepted in one request.
pub const HEADERS_COUNT_MAX: usize = 64;

/// Limits and address of the admin server.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    pub connections_max: usize,
    pub head_bytes_max: usize,
    pub body_bytes_max: usize,
    pub request_timeout: Duration,
    pub write_timeout: Duration,
}

impl AdminConfig {
    /// Defaults: 16 connections, 8 KiB head, 64 KiB body, 5 s to read, 5 s to write.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            connections_max: 16,
            head_bytes_max: 8 * 1024,
            body_bytes_max: 64 * 1024,
            request_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// Request methods served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// A parsed request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    /// Path without the query, e.g. `/metrics`.
    pub path: String,
    /// The text after `?`, if any (not decoded).
    pub query: Option<String>,
    /// Header names lower-cased, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A response to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    /// Extra headers (not `Content-Length`/`Connection`, which the server writes).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self { status, content_type: content_type.to_string(), headers: Vec::new(), body: body.into() }
    }

    /// `text/plain; charset=utf-8`.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// `application/json`.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "application/json", body.into())
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn prometheus(body: impl Into<String>) -> Self {
        Self::new(200, "text/plain; version=0.0.4; charset=utf-8", body.into())
    }

    pub fn not_found() -> Self {
        Self::text(404, "not found\n")
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// Reason phrase for the status codes this server and its routes use.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// Exact-path routing table: unknown path `404`, known path with another method `405`.
#[derive(Default)]
pub struct Router {
    routes: Vec<(Method, String, Box<Handler>)>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route for `method` on exactly `path`.
    ///
    /// # Panics
    /// If the same method and path are routed twice, or `path` does not start with `/`.
    pub fn route(
        mut self,
        method: Method,
        path: &str,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Self {
        assert!(path.starts_with('/'), "route path {path:?} must start with /");
        assert!(
            !self.routes.iter().any(|(m, p, _)| *m == method && p == path),
            "route {method:?} {path} twice"
        );
        self.routes.push((method, path.to_string(), Box::new(handler)));
        self
    }

    /// Dispatches a request.
    pub fn handle(&self, request: &Request) -> Response {
        let mut allowed = Vec::new();
        for (method, path, handler) in &self.routes {
            if *path == request.path {
                if *method == request.method {
                    return handler(request);
                }
                allowed.push(match method {
                    Method::Get => "GET",
                    Method::Post => "POST",
                });
            }
        }
        if allowed.is_empty() {
            Response::not_found()
        } else {
            Response::text(405, "method not allowed\n").with_header("Allow", &allowed.join(", "))
        }
    }
}

/// Counters of the admin server (it is off the hot path, so atomics are fine here).
#[derive(Debug, Default)]
pub struct AdminStats {
    pub accepted_total: AtomicU64,
    /// Connections refused with `503` because `connections_max` were open.
    pub busy_total: AtomicU64,
    /// Requests answered with a 4xx/5xx by the server itself (not by the handler).
    pub refused_total: AtomicU64,
    pub handler_panic_total: AtomicU64,
}

/// A running admin server. [`AdminServer::shutdown`] stops it.
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    stats: Arc<AdminStats>,
    acceptor: Option<JoinHandle<()>>,
    drain_timeout: Duration,
}

impl AdminServer {
    /// Binds `config.bind` and serves `handler` on a background thread.
    pub fn start(
        config: AdminConfig,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        assert!(config.connections_max > 0, "connections_max must be at least 1");
        let listener = TcpListener::bind(config.bind)?;
        let local_addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(AdminStats::default());
        let handler: Arc<Handler> = Arc::new(handler);
        let drain_timeout = config.request_timeout + config.write_timeout;
        let acceptor = std::thread::Builder::new().name("fpn-admin".into()).spawn({
            let (stop, active, stats) = (stop.clone(), active.clone(), stats.clone());
            move || accept_loop(listener, config, handler, stop, active, stats)
        })?;
        Ok(Self { local_addr, stop, active, stats, acceptor: Some(acceptor), drain_timeout })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> &AdminStats {
        &self.stats
    }

    /// Connections being served right now.
    pub fn connections_active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Stops accepting, then waits (at most the request plus write timeout) for open
    /// connections to finish.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept with a connection of our own.
        let wake_ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let _ = TcpStream::connect_timeout(
            &SocketAddr::new(wake_ip, self.local_addr.port()),
            Duration::from_secs(1),
        );
        let _ = acceptor.join();
        let deadline = Instant::now() + self.drain_timeout;
        while self.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

/// Decrements the active-connection count when a connection thread ends, however it ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn accept_loop(
    listener: TcpListener,
    config: AdminConfig,
    handler: Arc<Handler>,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    stats: Arc<AdminStats>,
) {
    let config = Arc::new(config);
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::Acquire) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            // EMFILE, ECONNABORTED, ...: back off briefly rather than spin.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        stats.accepted_total.fetch_add(1, Ordering::Relaxed);
        if active.load(Ordering::Acquire) >= config.connections_max {
            stats.busy_total.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = write_response(&stream, &Response::text(503, "busy\n"));
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let guard = ActiveGuard(active.clone());
        let (config, handler, stats) = (config.clone(), handler.clone(), stats.clone());
        let spawned = std::thread::Builder::new().name("fpn-admin-conn".into()).spawn(move || {
            let _guard = guard;
            serve_connection(stream, peer, &config, &*handler, &stats);
        });
        // On spawn failure the closure (stream and guard) is dropped: connection closed.
        drop(spawned);
    }
}

fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    config: &AdminConfig,
    handler: &Handler,
    stats: &AdminStats,
) {
    let _ = stream.set_nodelay(true);
    let response = match read_request(&stream, peer, config) {
        Ok(request) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&request))) {
            Ok(response) => response,
            Err(_) => {
                stats.handler_panic_total.fetch_add(1, Ordering::Relaxed);
                Response::text(500, "internal error\n")
            }
        },
        Err(ReadError::Closed) => return,
        Err(ReadError::Refuse(status, reason)) => {
            stats.refused_total.fetch_add(1, Ordering::Relaxed);
            Response::text(status, format!("{reason}\n"))
        }
    };
    let _ = stream.set_write_timeout(Some(config.write_timeout));
    let _ = write_response(&stream, &response);
    let _ = stream.shutdown(Shutdown::Write);
}

enum ReadError {
    /// The peer went away or the socket failed: nothing to answer.
    Closed,
    /// Answer with this status and reason.
    Refuse(u16, &'static str),
}

/// Reads into `buf` until `buf` holds `len_wanted` bytes or the deadline passes.
fn read_more(
    mut stream: &TcpStream,
    buf: &mut Vec<u8>,
    len_cap: usize,
    deadline: Instant,
) -> Result<usize, ReadError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(ReadError::Refuse(408, "request timeout"));
    }
    stream.set_read_timeout(Some(remaining)).map_err(|_| ReadError::Closed)?;
    let mut chunk = [0u8; 4096];
    let want = chunk.len().min(len_cap.saturating_sub(buf.len()).max(1));
    match stream.read(&mut chunk[..want]) {
        Ok(0) => Err(ReadError::Closed),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            Err(ReadError::Refuse(408, "request timeout"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
        Err(_) => Err(ReadError::Closed),
    }
}

fn read_request(stream: &TcpStream, peer: SocketAddr, config: &AdminConfig) -> Result<Request, ReadError> {
    let deadline = Instant::now() + config.request_timeout;
    let mut buf = Vec::with_capacity(config.head_bytes_max.min(16 * 1024));
    // Read one byte past the limit so that "exactly at the limit" is still accepted.
    let head_len = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > config.head_bytes_max {
            return Err(ReadError::Refuse(431, "request head too large"));
        }
        read_more(stream, &mut buf, config.head_bytes_max + 1, deadline)?;
    };
    if head_len > config.head_bytes_max {
        return Err(ReadError::Refuse(431, "request head too large"));
    }
    let head = parse_head(&buf[..head_len])?;
    let mut body = buf.split_off(head_len);
    let content_length = head.content_length.unwrap_or(0);
    if content_length > config.body_bytes_max {
        return Err(ReadError::Refuse(413, "body too large"));
    }
    if head.method == Method::Post && head.content_length.is_none() {
        return Err(ReadError::Refuse(411, "content-length required"));
    }
    if body.len() > content_length {
        // Pipelined or trailing bytes: one request per connection.
        return Err(ReadError::Refuse(400, "bytes after the body"));
    }
    body.reserve_exact(content_length - body.len());
    while body.len() < content_length {
        read_more(stream, &mut body, content_length, deadline)?;
    }
    Ok(Request { method: head.method, path: head.path, query: head.query, headers: head.headers, body, peer })
}

/// Index just past the `\r\n\r\n` ending the head, if present.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

#[derive(Debug)]
struct Head {
    method: Method,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    content_length: Option<usize>,
}

fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_head(bytes: &[u8]) -> Result<Head, ReadError> {
    let bad = |reason| ReadError::Refuse(400, reason);
    let text = std::str::from_utf8(bytes).map_err(|_| bad("request head is not UTF-8"))?;
    let text = text.strip_suffix("\r\n\r\n").ok_or(bad("unterminated head"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if !is_token(method) {
        return Err(bad("malformed method"));
    }
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(if version.starts_with("HTTP/") {
            ReadError::Refuse(505, "HTTP version not supported")
        } else {
            bad("malformed version")
        });
    }
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad("malformed target"));
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (target.to_string(), None),
    };
    let mut headers = Vec::new();
    let mut content_length: Option<usize> = None;
    for line in lines {
        if headers.len() == HEADERS_COUNT_MAX {
            return Err(ReadError::Refuse(431, "too many headers"));
        }
        let (name, value) = line.split_once(':').ok_or(bad("malformed header"))?;
        if !is_token(name) {
            // Also refuses obsolete line folding (a line starting with whitespace).
            return Err(bad("malformed header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(bad("control character in header"));
        }
        let name = name.to_ascii_lowercase();
        if name == "transfer-encoding" {
            return Err(ReadError::Refuse(501, "transfer-encoding not supported"));
        }
        if name == "content-length" {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("malformed content-length"));
            }
            // Huge values saturate and are refused by the body limit.
            let length = value.parse::<usize>().unwrap_or(usize::MAX);
            if content_length.is_some_and(|l| l != length) {
                return Err(bad("conflicting content-length"));
            }
            content_length = Some(length);
        }
        headers.push((name, value.to_string()));
    }
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        _ => return Err(ReadError::Refuse(501, "method not implemented")),
    };
    Ok(Head { method, path, query, headers, content_length })
}

fn write_response(mut stream: &TcpStream, response: &Response) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        reason_phrase(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        // Handler-supplied text must not split the header block.
        if is_token(name) && !value.contains(['\r', '\n']) {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&response.body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Head, u16> {
        parse_head(text.as_bytes()).map_err(|e| match e {
            ReadError::Refuse(status, _) => status,
            ReadError::Closed => 0,
        })
    }

    #[test]
    fn heads_parse() {
        let h = head("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nX-Y:  z \r\n\r\n").unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path, "/metrics");
        assert_eq!(h.query.as_deref(), Some("x=1"));
        assert_eq!(h.headers, [("host".into(), "a".into()), ("x-y".into(), "z".into())]);
        assert_eq!(h.content_length, None);
        let h = head("POST /submit HTTP/1.0\r\nContent-Length: 12\r\ncontent-length: 12\r\n\r\n").unwrap();
        assert_eq!((h.method, h.content_length), (Method::Post, Some(12)));
    }

    #[test]
    fn bad_heads_are_refused_with_the_right_status() {
        for (text, status) in [
            ("GET /\r\n\r\n", 400),
            ("GET  / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1 x\r\n\r\n", 400),
            ("GET x HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\n\r\n", 505),
            ("GET / FTP/1.0\r\n\r\n", 400),
            ("DELETE / HTTP/1.1\r\n\r\n", 501),
            ("G(T / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n folded: x\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nA: b\x01c\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        ] {
            assert_eq!(head(text).unwrap_err(), status, "{text:?}");
        }
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(HEADERS_COUNT_MAX + 1));
        assert_eq!(head(&many).unwrap_err(), 431);
        assert_eq!(head("GET /\u{0} HTTP/1.1\r\n\r\n").unwrap_err(), 400);
    }

    #[test]
    fn parse_head_never_panics_on_arbitrary_bytes() {
        // Deterministic xorshift stream over a small alphabet of HTTP-ish bytes.
        let alphabet = b"GETPOS /:?\r\n\t0123456789HTP.-\x00\xff\xc3";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut bytes = Vec::new();
            for _ in 0..(state % 64) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            bytes.extend_from_slice(b"\r\n\r\n");
            let _ = parse_head(&bytes);
        }
    }

    #[test]
    fn router_answers_404_and_405() {
        let router = Router::new().route(Method::Get, "/a", |_| Response::text(200, "a")).route(
            Method::Post,
            "/b",
            |r| Response::text(200, format!("{}", r.body.len())),
        );
        let request = |method, path: &str| Request {
            method,
            path: path.into(),
            query: None,
            headers: vec![],
            body: b"xyz".to_vec(),
            peer: "127.0.0.1:1".parse().unwrap(),
        };
        assert_eq!(router.handle(&request(Method::Get, "/a")).body, b"a");
        assert_eq!(router.handle(&request(Method::Post, "/b")).body, b"3");
        assert_eq!(router.handle(&request(Method::Get, "/c")).status, 404);
        let r = router.handle(&request(Method::Get, "/b"));
        assert_eq!(r.status, 405);
        assert_eq!(r.headers, [("Allow".to_string(), "POST".to_string())]);
    }
}
