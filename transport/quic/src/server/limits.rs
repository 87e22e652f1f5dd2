//! Who may connect, how many times and how fast: API keys ([`Auth`]), the configured
//! [`Limits`], and the books that enforce them: connections in total, per remote IP and
//! still handshaking ([`Connections`]); sessions and a token bucket per client ([`Clients`]).
//!
//! Every transport of `fpn/1` keeps these books with these types (the raw QUIC server, the
//! WebTransport endpoint of `fpn-webtransport`), so the rules are the same on both.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use fpn_wire::Reason;

/// How API keys map to client ids (`quic.auth`).
#[derive(Debug, Clone)]
pub enum Auth {
    /// The key is the client id in decimal (development only).
    Open,
    /// Only these keys, each bound to its client id.
    Keys(HashMap<Vec<u8>, u64>),
}

impl Auth {
    /// The client id `key` authenticates as, if any.
    pub fn client_of(&self, key: &[u8]) -> Option<u64> {
        match self {
            Auth::Open => {
                if key.is_empty() || key.len() > 20 || !key.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                std::str::from_utf8(key).ok()?.parse::<u64>().ok().filter(|&id| id >= 1)
            }
            Auth::Keys(map) => map.get(key).copied(),
        }
    }
}

/// Session limits (`[quic]`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Token bucket per client: records per second (0: unlimited) and burst.
    pub rate_per_s: u32,
    pub burst: u32,
    pub conns_per_client: u32,
    pub conns_per_ip: u32,
    pub conns_max: usize,
    pub idle_timeout: Duration,
    /// A connection that sends no hello this long after its handshake is closed
    /// `unauthorized` (keep-alives would otherwise hold it open forever).
    pub hello_timeout: Duration,
    /// Handshakes in flight above which new clients must pass a Retry first.
    pub retry_above: usize,
    /// Largest frame taken in one datagram.
    pub datagram_frame_max: u16,
    /// Largest frame taken on a stream.
    pub stream_frame_max: usize,
    /// Bytes a session's result stream may have queued: past half of it the session stops
    /// reading records until the stream drains; at it the session is closed `slow_consumer`.
    pub result_backlog_max: usize,
    /// Receipts one path of a session (its datagrams, or its streams) may hold before the
    /// session stops reading that path: receipts waiting behind a record the engine answers
    /// later, or for the input log's group commit (`super::RECEIPTS_HELD_MAX` by default).
    pub receipts_held_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            rate_per_s: 0,
            burst: 0,
            conns_per_client: 16,
            conns_per_ip: 64,
            conns_max: 1024,
            idle_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            retry_above: 64,
            datagram_frame_max: fpn_wire::DATAGRAM_FRAME_LEN_MAX as u16,
            stream_frame_max: 64 * 1024,
            result_backlog_max: 16 << 20,
            receipts_held_max: super::RECEIPTS_HELD_MAX,
        }
    }
}

/// What [`Connections::admission`] decides for a new connection, before the server spends
/// state on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnAdmission {
    Accept,
    /// Address validation first: too many handshakes in flight.
    Retry,
    /// CONNECTION_REFUSED: the server holds `conns_max` connections.
    RefuseMax,
    /// CONNECTION_REFUSED: this IP holds `conns_per_ip` connections.
    RefuseIp,
}

/// Connections held (handshaking, open or closing), in total and per remote IP.
#[derive(Debug)]
pub struct Connections {
    open: usize,
    handshaking: usize,
    per_ip: HashMap<IpAddr, u32>,
}

impl Connections {
    pub fn with_capacity(conns_max: usize) -> Connections {
        Connections { open: 0, handshaking: 0, per_ip: HashMap::with_capacity(conns_max) }
    }

    pub fn open(&self) -> usize {
        self.open
    }

    /// The limits in the order they are checked: total, per IP, then Retry under load
    /// (a validated address has already passed one).
    pub fn admission(&self, ip: IpAddr, validated: bool, limits: &Limits) -> ConnAdmission {
        if self.open >= limits.conns_max {
            ConnAdmission::RefuseMax
        } else if self.per_ip.get(&ip).copied().unwrap_or(0) >= limits.conns_per_ip {
            ConnAdmission::RefuseIp
        } else if self.handshaking >= limits.retry_above && !validated {
            ConnAdmission::Retry
        } else {
            ConnAdmission::Accept
        }
    }

    /// A connection accepted: it is handshaking.
    pub fn add(&mut self, ip: IpAddr) {
        self.open += 1;
        self.handshaking += 1;
        *self.per_ip.entry(ip).or_insert(0) += 1;
    }

    /// A connection's handshake ended (connected or failed).
    pub fn handshake_ended(&mut self) {
        debug_assert!(self.handshaking > 0);
        self.handshaking -= 1;
    }

    /// A connection removed; `handshaking` if its handshake never ended.
    pub fn remove(&mut self, ip: IpAddr, handshaking: bool) {
        self.open -= 1;
        if handshaking {
            self.handshake_ended();
        }
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

/// Tokens are counted in 10⁻⁹ of a record, so a refill over any number of nanoseconds is
/// exact in integers.
const NANO_TOKENS_PER_RECORD: u128 = 1_000_000_000;

#[derive(Debug, Default)]
struct ClientState {
    conns: u32,
    /// Nano-tokens, and the time they were last topped up.
    tokens_n: u128,
    topped_ns: u64,
}

/// Every client seen: its open sessions and its token bucket. A bucket outlives the client's
/// sessions, so a reconnect does not refill it; the table forgets idle clients only once it
/// holds more than `kept_max`.
#[derive(Debug)]
pub struct Clients {
    map: HashMap<u64, ClientState>,
    kept_max: usize,
}

impl Clients {
    pub fn with_capacity(conns_max: usize) -> Clients {
        Clients { map: HashMap::with_capacity(conns_max), kept_max: 4 * conns_max }
    }

    /// Counts a new session of `client_id`; `overloaded` past `conns_per_client`. A client
    /// seen for the first time starts with a full bucket.
    pub fn open_session(&mut self, client_id: u64, limits: &Limits, now_ns: u64) -> Result<(), Reason> {
        let state = self.map.entry(client_id).or_insert_with(|| ClientState {
            conns: 0,
            tokens_n: u128::from(limits.burst) * NANO_TOKENS_PER_RECORD,
            topped_ns: now_ns,
        });
        if state.conns >= limits.conns_per_client {
            return Err(Reason::Overloaded);
        }
        state.conns += 1;
        Ok(())
    }

    /// A session of `client_id` ended.
    pub fn close_session(&mut self, client_id: u64) {
        if let Some(c) = self.map.get_mut(&client_id) {
            c.conns = c.conns.saturating_sub(1);
            if c.conns == 0 && self.map.len() > self.kept_max {
                self.map.remove(&client_id);
            }
        }
    }

    /// Takes one token from `client_id`'s bucket, topped up for the time since the last take.
    pub fn take_token(&mut self, limits: &Limits, now_ns: u64, client_id: u64) -> bool {
        if limits.rate_per_s == 0 {
            return true;
        }
        let Some(c) = self.map.get_mut(&client_id) else { return true };
        let elapsed = now_ns.saturating_sub(c.topped_ns);
        c.topped_ns = now_ns;
        let cap = u128::from(limits.burst.max(1)) * NANO_TOKENS_PER_RECORD;
        c.tokens_n = (c.tokens_n + u128::from(elapsed) * u128::from(limits.rate_per_s)).min(cap);
        if c.tokens_n >= NANO_TOKENS_PER_RECORD {
            c.tokens_n -= NANO_TOKENS_PER_RECORD;
            true
        } else {
            false
        }
    }
}
