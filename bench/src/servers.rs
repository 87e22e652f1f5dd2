//! The baselines: a bare quinn datagram receiver (sink), a bare quinn datagram echo, and a
//! plain UDP echo. Minimal on purpose: they speak just enough fpn/1 (hello → OK welcome) that
//! the load generator's code is the same as against the engine, and then do the least a
//! server can do with each datagram: count it (sink) or answer its records (echo, see
//! `echo.rs` for the answer's design). One current-thread tokio runtime, pinned by the
//! caller, one task per connection.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use fpn_wire::Reason;
use fpn_wire::session::{Hello, HelloError, Welcome, app_error};

use crate::client::STATS_REQUEST;
use crate::echo::answer_frames;
use crate::procstat;

/// What the bare QUIC server does with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Count the records (frame header's count) and drop the datagram.
    Sink,
    /// Answer every record with a receipt.
    Echo,
}

/// Writes `text` to `path` atomically (temp file, rename), so a reader polling for the file
/// never sees it half written.
pub fn write_file_atomic(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

/// Serves fpn/1 sessions on `bind` until the process is killed. Writes the bound address to
/// `addr_file` and the certificate's SHA-256 to `sha_file` once listening.
pub async fn serve_quic(
    mode: Mode,
    bind: SocketAddr,
    initial_mtu: u16,
    frame_max: u16,
    addr_file: Option<&Path>,
    sha_file: Option<&Path>,
) -> io::Result<()> {
    let (config, sha) = crate::tls::server_config(initial_mtu);
    let endpoint = procstat::quinn_endpoint(bind, Some(config))?;
    let local = endpoint.local_addr()?;
    write_addr_files(local, &sha, addr_file, sha_file)?;
    eprintln!("fpn-bench: quic {mode:?} on {local}, cert sha256 {sha}");
    accept_loop(endpoint, mode, frame_max).await;
    Ok(())
}

fn write_addr_files(
    local: SocketAddr,
    sha: &str,
    addr_file: Option<&Path>,
    sha_file: Option<&Path>,
) -> io::Result<()> {
    if let Some(p) = sha_file {
        write_file_atomic(p, &format!("{sha}\n"))?;
    }
    if let Some(p) = addr_file {
        write_file_atomic(p, &format!("{local}\n"))?;
    }
    Ok(())
}

async fn accept_loop(endpoint: quinn::Endpoint, mode: Mode, frame_max: u16) {
    let t0 = Instant::now();
    while let Some(incoming) = endpoint.accept().await {
        tokio::task::spawn_local(async move {
            if let Err(e) = session(incoming, mode, frame_max, t0).await {
                eprintln!("fpn-bench: session: {e}");
            }
        });
    }
}

/// What [`serve_quic_threads`] serves, where, and on how many threads.
#[derive(Debug, Clone, Copy)]
pub struct ThreadedServe<'a> {
    pub mode: Mode,
    pub bind: SocketAddr,
    pub initial_mtu: u16,
    pub frame_max: u16,
    pub addr_file: Option<&'a Path>,
    pub sha_file: Option<&'a Path>,
    pub threads: usize,
    pub cpus: &'a [usize],
}

/// `threads` bare servers on one port, one `SO_REUSEPORT` socket each, each on its own thread
/// pinned to `cpus[i % len]` (unpinned with no CPUs) with its own runtime: N bare quinn
/// receivers to set beside N engine intakes, the kernel spreading connections over both groups
/// the same way. One certificate for all; the files are written once every socket is bound
/// (a member joining later would move flows between members). Runs until the process is
/// killed.
pub fn serve_quic_threads(o: &ThreadedServe<'_>) -> io::Result<()> {
    let ThreadedServe { mode, bind, initial_mtu, frame_max, threads, cpus, .. } = *o;
    let (config, sha) = crate::tls::server_config(initial_mtu);
    let first = procstat::bind_udp(bind, true)?;
    let local = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..threads.max(1) {
        sockets.push(procstat::bind_udp(local, true)?);
    }
    write_addr_files(local, &sha, o.addr_file, o.sha_file)?;
    eprintln!(
        "fpn-bench: quic {mode:?} on {local} ({} threads, cpus {cpus:?}), cert sha256 {sha}",
        sockets.len()
    );
    let mut handles = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let config = config.clone();
        let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
        let handle = std::thread::Builder::new().name(format!("{mode:?}{i}").to_lowercase()).spawn(
            move || -> io::Result<()> {
                if let Some(cpu) = cpu {
                    procstat::pin_current_thread(&[cpu])?;
                }
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                tokio::task::LocalSet::new().block_on(&rt, async move {
                    let runtime = std::sync::Arc::new(quinn::TokioRuntime);
                    let endpoint = quinn::Endpoint::new(
                        quinn::EndpointConfig::default(),
                        Some(config),
                        socket,
                        runtime,
                    )?;
                    accept_loop(endpoint, mode, frame_max).await;
                    Ok::<(), io::Error>(())
                })
            },
        )?;
        handles.push(handle);
    }
    for h in handles {
        h.join().map_err(|_| io::Error::other("a server thread panicked"))??;
    }
    Ok(())
}

async fn session(incoming: quinn::Incoming, mode: Mode, frame_max: u16, t0: Instant) -> io::Result<()> {
    let conn = incoming.await.map_err(io::Error::other)?;
    let (mut send, mut recv) = conn.accept_bi().await.map_err(io::Error::other)?;
    // The hello: read until it decodes.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    let client_id = loop {
        match Hello::decode(&buf) {
            Ok((hello, _)) => {
                let id = std::str::from_utf8(hello.api_key).ok().and_then(|k| k.parse::<u64>().ok());
                break id.filter(|&id| id >= 1).ok_or(Reason::Unauthorized);
            }
            Err(HelloError::Refused(reason)) => break Err(reason),
            Err(HelloError::Incomplete(_)) => match recv.read(&mut chunk).await.map_err(io::Error::other)? {
                Some(n) => buf.extend_from_slice(&chunk[..n]),
                None => return Ok(()),
            },
        }
    };
    let client_id = match client_id {
        Ok(id) => id,
        Err(reason) => {
            send.write_all(&Welcome::refused(reason).encode()).await?;
            // Give the welcome a chance to be delivered before CONNECTION_CLOSE (which may
            // discard it); the client also reads the reason from the close code.
            let _ = send.finish();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), send.stopped()).await;
            conn.close(app_error(reason).try_into().expect("small code"), reason.as_str().as_bytes());
            return Ok(());
        }
    };
    let welcome =
        Welcome { status: Ok(()), client_id, rate_per_s: 0, burst: 0, datagram_frame_max: frame_max };
    send.write_all(&welcome.encode()).await?;
    let records = Rc::new(Cell::new(0u64));
    let dgrams = Rc::new(Cell::new(0u64));
    // The control stream answers the harness's stats requests until it closes.
    {
        let (records, dgrams) = (records.clone(), dgrams.clone());
        tokio::task::spawn_local(async move {
            let mut b = [0u8; 1];
            while recv.read_exact(&mut b).await.is_ok() {
                if b[0] == STATS_REQUEST {
                    let mut out = [0u8; 16];
                    out[..8].copy_from_slice(&records.get().to_le_bytes());
                    out[8..].copy_from_slice(&dgrams.get().to_le_bytes());
                    if send.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    let (mut out, mut ends) = (Vec::with_capacity(4096), Vec::with_capacity(4));
    while let Ok(d) = conn.read_datagram().await {
        dgrams.set(dgrams.get() + 1);
        // A bare receiver trusts the frame header's count; the echo checks the structure.
        let count = d.get(4..6).map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
        records.set(records.get() + u64::from(count));
        if mode == Mode::Echo {
            out.clear();
            ends.clear();
            let rx_ns = t0.elapsed().as_nanos() as u64;
            let answer_max = conn.max_datagram_size().unwrap_or(fpn_wire::DATAGRAM_FRAME_LEN_MAX);
            answer_frames(&d, Some(client_id), rx_ns, answer_max, &mut out, &mut ends);
            let mut start = 0;
            for &end in &ends {
                if conn.send_datagram_wait(Bytes::copy_from_slice(&out[start..end])).await.is_err() {
                    return Ok(());
                }
                start = end;
            }
        }
    }
    Ok(())
}

/// The physical floor: answers each UDP datagram as the QUIC echo does, with no session.
pub async fn serve_udp_echo(bind: SocketAddr, addr_file: Option<&Path>) -> io::Result<()> {
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    procstat::grow_socket_buffers(&sock);
    let local = sock.local_addr()?;
    if let Some(p) = addr_file {
        write_file_atomic(p, &format!("{local}\n"))?;
    }
    eprintln!("fpn-bench: udp echo on {local}");
    let t0 = Instant::now();
    let mut buf = vec![0u8; 65_536];
    let (mut out, mut ends) = (Vec::with_capacity(4096), Vec::with_capacity(4));
    loop {
        let (n, peer) = sock.recv_from(&mut buf).await?;
        out.clear();
        ends.clear();
        answer_frames(&buf[..n], None, t0.elapsed().as_nanos() as u64, 1472, &mut out, &mut ends);
        let mut start = 0;
        for &end in &ends {
            sock.send_to(&out[start..end], peer).await?;
            start = end;
        }
    }
}
