//! What the daemon-facing subcommands (`submit`, `bid`, `cancel`, `watch`) share: the
//! connection flags, where their defaults come from, and sending records and collecting their
//! receipts with `fpn-client`.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use fpn_client::{
    CancelTarget, Client, ClientConfig, ConnectError, Event, Events, Fingerprint, Kind, Ledger, Reason,
    Receipt, Record, STREAM_FRAME_LEN_MAX, Trust, Via, pack_frames,
};
use serde::Serialize;

use crate::{UsageError, usage};

/// Where `flashpointd` listens when nothing says otherwise.
pub const ADDR_DEFAULT: &str = "127.0.0.1:4433";

#[derive(Debug, Clone, Args)]
pub struct ConnectFlags {
    /// The daemon's QUIC address, host:port. Default: the address in <data-dir>/quic.addr
    /// (written by the daemon), else 127.0.0.1:4433.
    #[arg(long)]
    pub addr: Option<String>,
    /// The daemon's data directory, for quic.addr and tls/cert.sha256.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// The SHA-256 of the server certificate (64 hex digits). Default: <data-dir>/tls/cert.sha256.
    #[arg(long, conflicts_with = "ca")]
    pub pin: Option<Fingerprint>,
    /// Trust server certificates issued by this PEM file instead of a pin.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// TLS server name; with --ca the certificate must name it.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// API key. Default: the client id in decimal (the daemon's open mode).
    #[arg(long)]
    pub key: Option<String>,
    /// Seconds allowed for the connection and, after sending, for the receipts.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    pub timeout: f64,
}

pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!("{text:?} is not a number of seconds in (0, 86400]")),
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// `host:port` to one socket address (the first the resolver gives).
pub fn resolve(text: &str) -> Result<SocketAddr, UsageError> {
    text.to_socket_addrs()
        .map_err(|e| usage(format!("address {text:?}: {e}")))?
        .next()
        .ok_or_else(|| usage(format!("address {text:?} resolves to nothing")))
}

impl ConnectFlags {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    pub fn addr(&self) -> Result<SocketAddr, UsageError> {
        match &self.addr {
            Some(addr) => resolve(addr),
            None => match read_trimmed(&self.data_dir.join("quic.addr")) {
                Some(addr) => resolve(&addr),
                None => resolve(ADDR_DEFAULT),
            },
        }
    }

    pub fn trust(&self) -> Result<Trust, UsageError> {
        if let Some(pin) = self.pin {
            return Ok(Trust::Pin(pin));
        }
        if let Some(ca) = &self.ca {
            return Ok(Trust::CaFile(ca.clone()));
        }
        let path = self.data_dir.join("tls").join("cert.sha256");
        match read_trimmed(&path) {
            Some(hex) => Fingerprint::parse_hex(&hex)
                .map(Trust::Pin)
                .map_err(|e| usage(format!("{}: {e}", path.display()))),
            None => Err(usage(format!(
                "no way to authenticate the server: give --pin or --ca, or --data-dir with tls/cert.sha256 ({} not found)",
                path.display()
            ))),
        }
    }

    /// The client configuration; `client_id` gives the default key.
    pub fn config(&self, client_id: Option<u64>) -> Result<ClientConfig, UsageError> {
        let key = match (&self.key, client_id) {
            (Some(key), _) => key.clone(),
            (None, Some(id)) => id.to_string(),
            (None, None) => return Err(usage("give --client-id (open mode) or --key".to_string())),
        };
        if key.is_empty() || key.len() > 256 {
            return Err(usage(format!("--key of {} bytes (1..=256)", key.len())));
        }
        let mut config = ClientConfig::new(self.addr()?, self.trust()?, key.into_bytes());
        config.server_name = self.server_name.clone();
        config.connect_timeout = self.timeout();
        Ok(config)
    }
}

/// A connection failure: exit code 1, as a refused record.
pub fn failed(what: &str, e: impl std::fmt::Display) -> UsageError {
    UsageError { message: format!("{what}: {e}"), code: 1 }
}

pub fn connect_error(addr: SocketAddr, e: ConnectError) -> UsageError {
    failed(&format!("connect to {addr}"), e)
}

/// A current-thread runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, UsageError> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| failed("tokio runtime", e))
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// One sent record and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Line of the input file, when the records came from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub kind: &'static str,
    pub client_id: u64,
    pub nonce: u64,
    /// `accepted`, `accepted_before` (a resend refused `duplicate_nonce`: the first copy got
    /// in), a reason name, or `no_receipt`.
    pub status: &'static str,
    /// 0 accepted, a reason code, or absent without a receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
    /// Absent when a watermark confirmed the record (`--receipts refusals`): only receipts
    /// carry the seq and window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_id: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub addr: String,
    pub client_id: u64,
    pub via: &'static str,
    pub frames: usize,
    /// Rounds of resending datagram records that had no receipt.
    pub resends: u32,
    /// Records accepted, now or (`accepted_before`) by an earlier copy.
    pub accepted: usize,
    pub refused: usize,
    pub no_receipt: usize,
    /// Receipts for a frame refused whole (they name no record).
    pub frames_refused: Vec<String>,
    pub records: Vec<Outcome>,
    /// Why the receipts stopped coming before all arrived, if they did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// 0 when every record was accepted, else 1.
    pub fn exit_code(&self) -> u8 {
        u8::from(
            self.accepted != self.records.len() || !self.frames_refused.is_empty() || self.error.is_some(),
        )
    }

    pub fn render(&self, json: bool) -> Result<String, UsageError> {
        if json {
            return Ok(serde_json::to_string_pretty(self)? + "\n");
        }
        let mut out = String::new();
        for r in &self.records {
            let at = r.line.map(|l| format!("line {l}: ")).unwrap_or_default();
            let what = format!("{at}{} client {} nonce {}", r.kind, r.client_id, r.nonce);
            match (r.status, r.seq, r.window_id) {
                ("accepted", Some(seq), Some(window)) => {
                    out.push_str(&format!("accepted {what}: seq {seq}, window {window}\n"))
                }
                ("accepted", ..) => out.push_str(&format!("accepted {what}: confirmed by a watermark\n")),
                ("no_receipt", ..) => out.push_str(&format!("no receipt for {what}\n")),
                (ACCEPTED_BEFORE, ..) => {
                    out.push_str(&format!("accepted {what}: by an earlier copy (resent: duplicate_nonce)\n"))
                }
                (reason, ..) => {
                    out.push_str(&format!("refused {what}: {reason} ({})\n", r.code.unwrap_or(0)))
                }
            }
        }
        for f in &self.frames_refused {
            out.push_str(&format!("a frame was refused whole: {f}\n"));
        }
        out.push_str(&format!(
            "{} record(s) to {} as client {} in {} {}(s): {} accepted, {} refused, {} without receipt\n",
            self.records.len(),
            self.addr,
            self.client_id,
            self.frames,
            if self.via == "stream" { "stream frame" } else { "datagram" },
            self.accepted,
            self.refused,
            self.no_receipt
        ));
        if self.resends > 0 {
            out.push_str(&format!(
                "resent the datagram records without a receipt {} time(s)\n",
                self.resends
            ));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("stopped waiting: {e}\n"));
        }
        Ok(out)
    }
}

/// The status of a resent record answered `duplicate_nonce`.
pub const ACCEPTED_BEFORE: &str = "accepted_before";

/// What identifies a receipt's record: kind, and the nonce (or a cancel's target seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Match {
    Nonce(Kind, u64),
    CancelSeq(u64),
}

fn match_of_record(record: &Record<'_>) -> Match {
    match record {
        Record::Cancel(c) => match c.target {
            CancelTarget::Nonce(n) => Match::Nonce(Kind::Cancel, n),
            CancelTarget::Seq(s) => Match::CancelSeq(s),
        },
        r => Match::Nonce(r.kind(), r.receipt_nonce()),
    }
}

fn match_of_receipt(r: &Receipt) -> Option<Match> {
    let kind = r.for_kind?;
    if kind == Kind::Cancel && r.nonce == 0 {
        return Some(Match::CancelSeq(r.seq));
    }
    Some(Match::Nonce(kind, r.nonce))
}

/// How records are sent and how long receipts are waited for.
#[derive(Debug, Clone, Copy)]
pub struct Sending {
    pub via: Via,
    /// After the last send, how long to wait for the receipts.
    pub timeout: Duration,
    /// Datagrams only: rounds of resending the records still without a receipt (same nonce).
    pub resends_max: u32,
    /// Datagrams only: a pause this long in the receipts after sending starts a resend round.
    pub quiet: Duration,
}

/// Sends `records` (packed into frames) while collecting their receipts, then waits until
/// each has its receipt (or, in receipt mode `refusals`, a watermark lists an accepted intent
/// or bid: `fpn_client::Ledger` keeps that account), the timeout passes, or the connection
/// ends. Receipts are read while
/// sending, so a large file does not fill the client's bounded event channel (which would
/// leave receipt datagrams to quinn's receive buffer, which drops the oldest). Datagram records still without a receipt when the receipts pause are sent
/// again with the same nonce, up to `resends_max` rounds; a resend answered
/// `duplicate_nonce` got in the first time and is reported `accepted_before`. `lines` gives
/// each record's input line, if any.
pub async fn send_and_collect(
    client: &Client,
    events: &mut Events,
    addr: SocketAddr,
    records: &[Record<'_>],
    lines: Option<&[usize]>,
    sending: Sending,
) -> Result<Report, UsageError> {
    let via = sending.via;
    let len_max = match via {
        Via::Datagram => client.session().map_or(0, |s| s.datagram_frame_max),
        Via::Stream => STREAM_FRAME_LEN_MAX,
    };
    if len_max == 0 {
        return Err(failed("send", "the server takes no datagrams on this connection; use --stream"));
    }
    let mut pending: HashMap<Match, VecDeque<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        pending.entry(match_of_record(r)).or_default().push_back(i);
    }
    let mut receipts: Vec<Option<Receipt>> = vec![None; records.len()];
    // Receipt mode `refusals`: intents and bids a watermark confirmed.
    let mut ledger = Ledger::new();
    let mut confirmed = vec![false; records.len()];
    let mut listed = Vec::new();
    let mut resent = vec![false; records.len()];
    let mut waiting = records.len();
    let mut frames_refused = Vec::new();
    let mut error = None;
    let mut frames_total = 0;
    let mut resends = 0u32;
    let mut round: Vec<Record<'_>> = records.to_vec();
    'rounds: loop {
        let mut frames = Vec::new();
        pack_frames(&round, len_max, &mut frames).map_err(|e| failed("send", e))?;
        for r in round.iter().filter(|r| matches!(r, Record::Intent(_) | Record::Bid(_))) {
            ledger.sent(via.path(), r.receipt_nonce());
        }
        let frames_sent = Cell::new(0usize);
        let send = async {
            for frame in &frames {
                client.send_frame(frame, via).await?;
                frames_sent.set(frames_sent.get() + 1);
            }
            Ok::<(), fpn_client::SendError>(())
        };
        tokio::pin!(send);
        let mut sending_now = true;
        // Both clocks run from the end of sending.
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        let (mut deadline, mut quiet_at) = (far, far);
        let resend = via == Via::Datagram && resends < sending.resends_max;
        while waiting > 0 || sending_now {
            let event = tokio::select! {
                sent = &mut send, if sending_now => {
                    sending_now = false;
                    let now = tokio::time::Instant::now();
                    (deadline, quiet_at) = (now + sending.timeout, now + sending.quiet);
                    if let Err(e) = sent {
                        error = Some(format!("send: {e}"));
                        frames_total += frames_sent.get();
                        break 'rounds;
                    }
                    continue;
                }
                event = events.recv() => event,
                () = tokio::time::sleep_until(quiet_at), if !sending_now && resend => break,
                () = tokio::time::sleep_until(deadline), if !sending_now => {
                    error = Some(format!("{waiting} receipt(s) missing after {:.1} s", sending.timeout.as_secs_f64()));
                    break;
                }
            };
            if !sending_now {
                quiet_at = tokio::time::Instant::now() + sending.quiet;
            }
            let Some(event) = event else { break };
            match event {
                Event::Watermark(w) => {
                    listed.clear();
                    ledger.handle_watermark(w.path, w.ranges.iter().copied(), &mut listed);
                    for &nonce in &listed {
                        let at = [Kind::Intent, Kind::Bid].iter().find_map(|&k| {
                            pending.get_mut(&Match::Nonce(k, nonce)).and_then(VecDeque::pop_front)
                        });
                        if let Some(i) = at {
                            confirmed[i] = true;
                            waiting -= 1;
                        }
                    }
                }
                Event::Receipt { receipt, .. } => {
                    // A refused nonce must not count as accepted when a watermark lists it.
                    ledger.handle_receipt(&receipt);
                    match match_of_receipt(&receipt) {
                        None => {
                            frames_refused
                                .push(receipt.status.err().map_or("accepted?", |r| r.as_str()).to_string());
                        }
                        Some(m) => {
                            if let Some(i) = pending.get_mut(&m).and_then(VecDeque::pop_front) {
                                receipts[i] = Some(receipt);
                                waiting -= 1;
                            }
                        }
                    }
                }
                Event::Disconnected { error: e, .. } | Event::Closed { error: Some(e) } => {
                    error = Some(format!("connection lost: {e}"));
                    frames_total += frames_sent.get();
                    break 'rounds;
                }
                Event::Closed { error: None } => {
                    frames_total += frames_sent.get();
                    break 'rounds;
                }
                Event::BadFrame { reason, .. } => {
                    frames_refused.push(format!("server sent a bad frame: {}", reason.as_str()))
                }
                Event::Connected { .. } | Event::Block(_) | Event::Clearing(_) | Event::Proof { .. } => {}
            }
        }
        frames_total += frames_sent.get();
        if waiting == 0 || !resend || error.is_some() {
            break;
        }
        resends += 1;
        round.clear();
        for (i, record) in records.iter().enumerate() {
            if receipts[i].is_none() && !confirmed[i] {
                resent[i] = true;
                round.push(*record);
            }
        }
    }
    let frames = frames_total;
    let outcomes: Vec<Outcome> = records
        .iter()
        .zip(&receipts)
        .enumerate()
        .map(|(i, (record, receipt))| {
            let mut o = Outcome {
                line: lines.map(|l| l[i]),
                kind: record.kind().as_str(),
                client_id: record.client_id(),
                nonce: match record {
                    Record::Cancel(c) => match c.target {
                        CancelTarget::Nonce(n) => n,
                        CancelTarget::Seq(_) => 0,
                    },
                    r => r.receipt_nonce(),
                },
                status: "no_receipt",
                code: None,
                seq: None,
                window_id: None,
            };
            if confirmed[i] {
                (o.status, o.code) = ("accepted", Some(0));
            }
            if let Some(r) = receipt {
                match r.status {
                    Ok(()) => {
                        (o.status, o.code, o.seq, o.window_id) =
                            ("accepted", Some(0), Some(r.seq), Some(r.window_id))
                    }
                    // The first copy got in; its receipt was lost.
                    Err(Reason::DuplicateNonce) if resent[i] => {
                        (o.status, o.code) = (ACCEPTED_BEFORE, Some(Reason::DuplicateNonce.code()))
                    }
                    Err(reason) => (o.status, o.code) = (reason.as_str(), Some(reason.code())),
                }
            }
            o
        })
        .collect();
    let accepted = outcomes.iter().filter(|o| matches!(o.status, "accepted" | ACCEPTED_BEFORE)).count();
    let no_receipt = outcomes.iter().filter(|o| o.status == "no_receipt").count();
    Ok(Report {
        addr: addr.to_string(),
        client_id: client.client_id().unwrap_or(0),
        via: match via {
            Via::Datagram => "datagram",
            Via::Stream => "stream",
        },
        frames,
        resends,
        accepted,
        refused: outcomes.len() - accepted - no_receipt,
        no_receipt,
        frames_refused,
        records: outcomes,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(data_dir: PathBuf) -> ConnectFlags {
        ConnectFlags {
            addr: None,
            data_dir,
            pin: None,
            ca: None,
            server_name: "localhost".to_string(),
            key: None,
            timeout: 10.0,
        }
    }

    #[test]
    fn defaults_come_from_the_data_dir_then_the_built_in_address() {
        let dir = std::env::temp_dir().join(format!("fpn-net-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let f = flags(dir.clone());
        assert_eq!(f.addr().unwrap(), ADDR_DEFAULT.parse().unwrap());
        assert_eq!(f.trust().unwrap_err().code, 2, "no pin, no CA: a usage error");
        assert_eq!(f.config(None).unwrap_err().code, 2, "no key, no client id");

        std::fs::create_dir_all(dir.join("tls")).unwrap();
        std::fs::write(dir.join("quic.addr"), "127.0.0.1:5555\n").unwrap();
        let pin = Fingerprint::of_der(b"cert");
        std::fs::write(dir.join("tls/cert.sha256"), format!("{pin}\n")).unwrap();
        let config = f.config(Some(7)).unwrap();
        assert_eq!(config.addr, "127.0.0.1:5555".parse().unwrap());
        assert_eq!(config.trust, Trust::Pin(pin));
        assert_eq!(config.api_key, b"7");

        // Flags win over the files.
        let f = ConnectFlags { addr: Some("[::1]:6000".to_string()), key: Some("k".to_string()), ..f };
        let config = f.config(Some(7)).unwrap();
        assert_eq!(config.addr, "[::1]:6000".parse().unwrap());
        assert_eq!(config.api_key, b"k");

        std::fs::write(dir.join("tls/cert.sha256"), "not hex\n").unwrap();
        assert_eq!(flags(dir.clone()).trust().unwrap_err().code, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn receipts_match_records_by_kind_and_nonce_or_cancelled_seq() {
        use fpn_client::{Cancel, Intent};
        let keys = [1u64];
        let intent = Record::Intent(Intent {
            client_id: 7,
            nonce: 5,
            sent_ns: 0,
            profit: 1,
            priority: 0,
            keys: &keys,
        });
        let by_seq = Record::Cancel(Cancel { client_id: 7, target: CancelTarget::Seq(42) });
        let receipt = |kind, nonce, seq| Receipt {
            client_id: 7,
            nonce,
            seq,
            window_id: 1,
            rx_ns: 0,
            status: Ok(()),
            for_kind: kind,
        };
        assert_eq!(match_of_receipt(&receipt(Some(Kind::Intent), 5, 9)), Some(match_of_record(&intent)));
        assert_eq!(match_of_receipt(&receipt(Some(Kind::Cancel), 0, 42)), Some(match_of_record(&by_seq)));
        assert_eq!(match_of_receipt(&receipt(None, 0, 0)), None, "a frame refused whole names no record");
    }
}
