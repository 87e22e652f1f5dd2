//! The probe process's own metrics endpoint: `GET /metrics` answers the latest Prometheus text
//! that [`MetricsServer::publish`] was given. One std thread, one connection at a time; a
//! scrape every few seconds is all it is for.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct MetricsServer {
    addr: SocketAddr,
    body: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free one) and starts answering.
    pub fn bind(addr: SocketAddr) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let body = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name("fpn-probe-http".into()).spawn({
            let (body, stop) = (body.clone(), stop.clone());
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let text = body.lock().expect("metrics body lock").clone();
                        let _ = answer(stream, &text);
                    }
                }
            }
        })?;
        Ok(MetricsServer { addr, body, stop, thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces what `/metrics` answers.
    pub fn publish(&self, text: String) {
        *self.body.lock().expect("metrics body lock") = text;
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(mut stream: TcpStream, metrics: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let mut words = line.split_whitespace();
    let (status, body, kind) = match (words.next(), words.next()) {
        (Some("GET"), Some("/metrics")) => ("200 OK", metrics, "text/plain; version=0.0.4"),
        (Some("GET"), Some(_)) => ("404 Not Found", "only /metrics here\n", "text/plain"),
        _ => ("405 Method Not Allowed", "GET /metrics\n", "text/plain"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_the_latest_published_text() {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        server.publish("fpn_ebpf_socket_queued_total 1\n".into());
        let first = get(server.addr(), "/metrics");
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
        assert!(first.ends_with("\r\n\r\nfpn_ebpf_socket_queued_total 1\n"), "{first}");
        server.publish("fpn_ebpf_socket_queued_total 2\n".into());
        assert!(get(server.addr(), "/metrics").ends_with("fpn_ebpf_socket_queued_total 2\n"));
        assert!(get(server.addr(), "/other").starts_with("HTTP/1.1 404"));
        drop(server);
    }
}
