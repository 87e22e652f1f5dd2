//! A server and its clients wired in memory, with a fake clock (the approach of quinn-proto's
//! own test `Pair`): datagrams are handed across at once, and time moves only when a test
//! says so, straight to the next timer. No sockets, no threads, no sleeps: the idle and
//! hello timeouts, a refused session's linger and a token bucket's refill are exact.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fpn_wire::session::ALPN;
use fpn_wire::{FrameWriter, Reason, Receipt, RecordRef, decode_frame};
use quinn_proto::{ConnectionError, SendDatagramError, WriteError};

use crate::client::{ClientCore, ClientOptions, Origin};
use crate::tls::Identity;
use crate::{Admit, Auth, Limits, Server, ServerConfig};

/// Exchanges at one instant before a pair is taken to be stuck in a loop.
const STEPS_MAX: usize = 100_000;

/// One certificate for every pair of the test binary: generating one costs more than a test.
fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| crate::tls::self_signed().expect("a self-signed certificate"))
}

/// The engine behind [`Admit`]: every valid intent joins window 1 with the next seq; a cancel
/// goes "to the merger", which answers `not_found` later (through the pair's `step`, or when
/// the test releases held answers).
#[derive(Debug, Default)]
pub struct ToyEngine {
    /// The engine cannot take a frame.
    pub busy: bool,
    /// The merger's answers wait in `late` until the test clears this.
    pub hold_late: bool,
    pub late: VecDeque<Receipt>,
    seq: u64,
    pub refused: usize,
    /// Accepted intents wait for the input log: each at the position of its seq
    /// (`Server::set_durable` releases them).
    pub logged: bool,
    durable_at: u64,
}

impl Admit for ToyEngine {
    fn ready(&mut self) -> bool {
        !self.busy
    }

    fn admit(&mut self, rx_ns: u64, record: RecordRef<'_>) -> Option<Receipt> {
        assert!(!self.busy, "a record admitted while the engine is busy");
        self.durable_at = 0;
        let mut r = Receipt::for_record(record, rx_ns);
        match record {
            RecordRef::Intent(i) => match i.validate() {
                Ok(()) => {
                    self.seq += 1;
                    r.seq = self.seq;
                    r.window_id = 1;
                    if self.logged {
                        self.durable_at = self.seq;
                    }
                }
                Err(reason) => r.status = Err(reason),
            },
            RecordRef::Cancel(_) => {
                r.status = Err(Reason::NotFound);
                self.late.push_back(r);
                return None;
            }
            _ => r.status = Err(Reason::UnknownKind),
        }
        Some(r)
    }

    fn refused(&mut self, _receipt: &Receipt) {
        self.refused += 1;
    }

    fn durable_at(&self) -> u64 {
        self.durable_at
    }
}

/// A client of the pair, by index.
pub type ClientId = usize;

struct Peer {
    core: ClientCore,
    addr: SocketAddr,
    /// The network drops everything to and from this client.
    cut_off: bool,
}

/// One receipt as a client decoded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Got {
    pub origin: Origin,
    /// The answered record's nonce (a cancel by nonce: its target); 0 for a frame refused whole.
    pub nonce: u64,
    pub status: Result<(), Reason>,
    /// Kind 0: the receipt of a frame refused whole.
    pub whole_frame: bool,
}

pub struct Pair {
    pub server: Server,
    pub engine: ToyEngine,
    clients: Vec<Peer>,
    server_addr: SocketAddr,
    epoch: Instant,
    now: Instant,
    buf: Vec<u8>,
}

impl Pair {
    pub fn new(auth: Auth, limits: Limits) -> Pair {
        // The clock's origin only: from here on time is what the test makes it.
        let epoch = Instant::now();
        let config = ServerConfig { auth, limits, mtu_discovery: false };
        Pair {
            server: Server::new(identity(), config, epoch).expect("server"),
            engine: ToyEngine::default(),
            clients: Vec::new(),
            server_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4433),
            epoch,
            now: epoch,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    pub fn open() -> Pair {
        Pair::new(Auth::Open, Limits::default())
    }

    /// Time since the pair was made.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    pub fn options(&self, key: &str) -> ClientOptions {
        ClientOptions {
            pin: identity().sha256,
            alpn: ALPN.to_vec(),
            api_key: key.as_bytes().to_vec(),
            flags: 0,
            timeout: Duration::ZERO,
        }
    }

    /// Starts a client at `ip` (a port of its own) and drives the pair: the handshake, and
    /// with `say_hello` the hello and the welcome, happen at this instant.
    pub fn start(&mut self, options: &ClientOptions, ip: Ipv4Addr, say_hello: bool) -> ClientId {
        let addr = SocketAddr::new(IpAddr::V4(ip), 40_000 + self.clients.len() as u16);
        let core = ClientCore::connect(self.now, self.server_addr, options, say_hello).expect("client");
        self.clients.push(Peer { core, addr, cut_off: false });
        self.drive();
        self.clients.len() - 1
    }

    /// A client that said hello with `key` from 10.0.0.2 and got a welcome (of any status).
    pub fn connect(&mut self, key: &str) -> ClientId {
        let options = self.options(key);
        let c = self.start(&options, Ipv4Addr::new(10, 0, 0, 2), true);
        assert!(self.welcome(c).is_some(), "no welcome: {:?}", self.lost(c));
        c
    }

    pub fn welcome(&self, c: ClientId) -> Option<fpn_wire::session::Welcome> {
        self.clients[c].core.welcome()
    }

    pub fn lost(&self, c: ClientId) -> Option<&ConnectionError> {
        self.clients[c].core.lost()
    }

    pub fn client(&mut self, c: ClientId) -> &mut ClientCore {
        &mut self.clients[c].core
    }

    /// From now on the network drops everything to and from `c`.
    pub fn cut_off(&mut self, c: ClientId) {
        self.clients[c].cut_off = true;
    }

    /// Queues `frame` as a datagram of `c` (driving the pair while the send buffer is full).
    pub fn send_datagram(&mut self, c: ClientId, frame: &[u8]) {
        let mut data = Bytes::copy_from_slice(frame);
        for _ in 0..STEPS_MAX {
            match self.clients[c].core.send_datagram(data) {
                Ok(()) => return,
                Err(SendDatagramError::Blocked(back)) => {
                    data = back;
                    self.drive();
                }
                Err(e) => panic!("datagram: {e}"),
            }
        }
        panic!("the datagram send buffer never had room");
    }

    /// Writes `bytes` on `c`'s data stream (driving the pair while flow control says wait).
    pub fn send_stream(&mut self, c: ClientId, bytes: &[u8]) {
        let id = self.clients[c].core.data_stream().expect("a uni stream");
        self.write_all(c, id, bytes);
    }

    /// Writes `bytes` on a new uni stream of `c` and finishes it.
    pub fn send_stream_once(&mut self, c: ClientId, bytes: &[u8]) {
        let id = self.clients[c].core.open_uni().expect("a uni stream");
        self.write_all(c, id, bytes);
        self.clients[c].core.finish_stream(id);
    }

    fn write_all(&mut self, c: ClientId, id: quinn_proto::StreamId, bytes: &[u8]) {
        let mut off = 0;
        for _ in 0..STEPS_MAX {
            if off == bytes.len() {
                return;
            }
            match self.clients[c].core.write_stream(id, &bytes[off..]) {
                Ok(n) => off += n,
                Err(WriteError::Blocked) => self.drive(),
                Err(e) => panic!("stream: {e}"),
            }
        }
        panic!("the stream never took its bytes");
    }

    /// Closes `c` (code 0) and drives the pair.
    pub fn close(&mut self, c: ClientId) {
        let now = self.now;
        self.clients[c].core.close(now);
        self.drive();
    }

    /// Exchanges datagrams at this instant until nobody has anything to send.
    pub fn drive(&mut self) {
        for _ in 0..STEPS_MAX {
            if !self.step() {
                return;
            }
        }
        panic!("the pair never went quiet at {:?}", self.elapsed());
    }

    /// Moves the clock forward by `d`, stopping at every timer on the way (server and
    /// clients) and driving the pair there.
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        self.drive();
        for _ in 0..STEPS_MAX {
            match self.next_timer() {
                // A timer that is due but was not handled would stop the clock: step over it.
                Some(t) if t <= until => self.now = t.max(self.now + Duration::from_nanos(1)).min(until),
                _ => break,
            }
            self.drive();
            if self.now == until {
                break;
            }
        }
        self.now = until;
        self.drive();
    }

    fn next_timer(&mut self) -> Option<Instant> {
        let clients = self.clients.iter_mut().filter_map(|p| p.core.poll_timeout());
        clients.chain(self.server.poll_timeout()).min()
    }

    /// One round: clients to the server, the engine's late answers, the server's timers, the
    /// server to the clients. Returns whether anything moved.
    fn step(&mut self) -> bool {
        let now = self.now;
        let rx_ns = (now - self.epoch).as_nanos() as u64;
        let mut moved = false;
        for peer in &mut self.clients {
            peer.core.handle_timeout(now);
            while let Some(t) = peer.core.poll_transmit(now, &mut self.buf) {
                moved = true;
                if peer.cut_off || t.destination != self.server_addr {
                    continue;
                }
                for segment in self.buf[..t.size].chunks(t.segment_size.unwrap_or(t.size).max(1)) {
                    self.server.handle_datagram(now, rx_ns, peer.addr, None, segment);
                    moved |= self.server.poll_records(now, &mut self.engine);
                }
            }
        }
        if !self.engine.hold_late {
            while let Some(r) = self.engine.late.pop_front() {
                self.server.handle_late_receipt(r);
                moved = true;
            }
        }
        if self.server.has_pending() {
            moved |= self.server.poll_records(now, &mut self.engine);
        }
        self.server.handle_timeouts(now);
        while let Some(t) = self.server.poll_transmit(now, &mut self.buf) {
            moved = true;
            let Some(peer) = self.clients.iter_mut().find(|p| p.addr == t.destination) else { continue };
            if peer.cut_off {
                continue;
            }
            for segment in self.buf[..t.size].chunks(t.segment_size.unwrap_or(t.size).max(1)) {
                peer.core.handle_datagram(now, self.server_addr, segment);
            }
        }
        moved
    }

    /// Every frame `c` has received, in order.
    pub fn frames(&mut self, c: ClientId) -> Vec<(Origin, Vec<u8>)> {
        std::iter::from_fn(|| self.clients[c].core.poll_frame()).collect()
    }

    /// Every receipt `c` has received, in order (other records are skipped).
    pub fn receipts(&mut self, c: ClientId) -> Vec<Got> {
        let mut got = Vec::new();
        for (origin, frame) in self.frames(c) {
            for record in decode_frame(&frame).expect("a frame from the server decodes") {
                if let RecordRef::Receipt(r) = record {
                    got.push(Got {
                        origin,
                        nonce: r.nonce.get(),
                        status: Reason::from_code(r.status).map_or(Ok(()), Err),
                        whole_frame: r.for_kind == 0,
                    });
                }
            }
        }
        got
    }

    /// Publishes window 1 (an empty block) and its proof, as the engine's merger and the
    /// prover would.
    pub fn publish_window_and_proof(&mut self) {
        let mut frame = Vec::new();
        let mut w = FrameWriter::new(&mut frame, u32::MAX as usize);
        let block = fpn_wire::BlockSummary {
            window_id: 1,
            total: 0,
            fifo_total: 0,
            surplus: 0,
            fee: 0,
            upper_bound: 0,
            fee_ppm: 0,
            builder: 0,
            exact: true,
        };
        w.push_block(&block, &[]).unwrap();
        w.finish();
        self.server.handle_window(1, &frame);
        frame.clear();
        let mut w = FrameWriter::new(&mut frame, u32::MAX as usize);
        let proof =
            fpn_wire::ProofAnnounce { window_first: 1, window_last: 1, job_id: 1, proof: Some([5; 128]) };
        w.push_proof(&proof).unwrap();
        w.finish();
        self.server.handle_proof(&frame);
        self.drive();
    }
}

/// One record of a test frame.
#[derive(Debug, Clone, Copy)]
pub enum Rec {
    Intent(u64),
    /// A cancel by nonce: the engine's merger answers it late.
    Cancel(u64),
}

/// A frame of `client_id`'s records, up to `len_max` bytes.
pub fn frame_of(client_id: u64, records: &[Rec], len_max: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = FrameWriter::new(&mut buf, len_max);
    for record in records {
        match *record {
            Rec::Intent(nonce) => {
                let keys = [nonce, nonce + 1_000_000];
                let intent =
                    fpn_wire::Intent { client_id, nonce, sent_ns: 1, profit: 10, priority: 0, keys: &keys };
                w.push_intent(&intent).unwrap();
            }
            Rec::Cancel(nonce) => w
                .push_cancel(&fpn_wire::Cancel { client_id, target: fpn_wire::CancelTarget::Nonce(nonce) })
                .unwrap(),
        }
    }
    w.finish();
    buf
}

/// A datagram-sized frame of `client_id`'s intents with these nonces.
pub fn intents_frame(client_id: u64, nonces: std::ops::Range<u64>) -> Vec<u8> {
    let records: Vec<Rec> = nonces.map(Rec::Intent).collect();
    frame_of(client_id, &records, fpn_wire::DATAGRAM_FRAME_LEN_MAX)
}
