//! `fpn submit`, `fpn bid`, `fpn cancel`: records to a running daemon over QUIC, and their
//! receipts back.
//!
//! Records go as datagrams by default (packed up to the session's datagram limit), or on the
//! records stream with `--stream`. The command waits for one answer per record: a receipt,
//! or with `--receipts refusals` a receipt for a refused record and a watermark listing an
//! accepted one; a record without one after `--timeout` is reported `no_receipt`. Exit 0 when every record was
//! accepted, 1 when one was refused or had no receipt or the connection failed, 2 for usage.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use fpn_client::{Bid, Cancel, CancelTarget, Client, Intent, ReceiptMode, Record, Via};

use crate::cmd_build::read_input;
use crate::feed::{bid_record, intent_record};
use crate::jsonl::{BidLine, IntentLine, Key, parse_lines};
use crate::net::{self, ConnectFlags, Report, Sending, parse_seconds};
use crate::{Done, UsageError, usage};

#[derive(Debug, Clone, Args)]
pub struct SendFlags {
    #[command(flatten)]
    pub connect: ConnectFlags,
    /// Send on the reliable records stream instead of datagrams.
    #[arg(long)]
    pub stream: bool,
    /// Datagrams: rounds of resending records still without a receipt (same nonce) once the
    /// receipts pause for --quiet seconds.
    #[arg(long, default_value_t = 3)]
    pub resends: u32,
    /// Datagrams: the pause in the receipts, in seconds, that starts a resend round.
    #[arg(long, default_value_t = 1.0, value_parser = parse_seconds)]
    pub quiet: f64,
    /// Receipt mode of the session: `all` (one receipt per record) or `refusals` (receipts
    /// for refused records only; accepted intents and bids are confirmed by watermarks).
    #[arg(long, value_enum, default_value_t = Receipts::All)]
    pub receipts: Receipts,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `--receipts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Receipts {
    All,
    Refusals,
}

impl SendFlags {
    fn sending(&self) -> Sending {
        Sending {
            via: if self.stream { Via::Stream } else { Via::Datagram },
            timeout: self.connect.timeout(),
            resends_max: self.resends,
            quiet: Duration::from_secs_f64(self.quiet),
        }
    }
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub send: SendFlags,
    /// JSON-lines file of intents (docs/jsonl.md); `-` reads standard input. Without it, one
    /// intent from the flags below.
    #[arg(long, conflicts_with_all = ["client_id", "nonce", "profit", "priority", "resource"])]
    pub input: Option<PathBuf>,
    /// The intent's client id. Default: the id the server binds to the key.
    #[arg(long)]
    pub client_id: Option<u64>,
    /// The intent's nonce, unique per client. Default: the current time in ns.
    #[arg(long)]
    pub nonce: Option<u64>,
    /// Profit in minor units.
    #[arg(long, required_unless_present = "input")]
    pub profit: Option<u64>,
    #[arg(long, default_value_t = 0)]
    pub priority: u32,
    /// A resource key, a number or a name (hashed as in docs/jsonl.md); repeat for more.
    #[arg(long = "resource", required_unless_present = "input")]
    pub resource: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BidArgs {
    #[command(flatten)]
    pub send: SendFlags,
    /// JSON-lines file of bids (docs/jsonl.md; `at_ms` is ignored, the daemon stamps arrival);
    /// `-` reads standard input. Without it, one bid from the flags below.
    #[arg(long, conflicts_with_all = ["client_id", "nonce", "amount", "priority"])]
    pub input: Option<PathBuf>,
    /// The bid's client id. Default: the id the server binds to the key.
    #[arg(long)]
    pub client_id: Option<u64>,
    /// The bid's nonce, unique per client. Default: the current time in ns.
    #[arg(long)]
    pub nonce: Option<u64>,
    /// Amount in minor units.
    #[arg(long, required_unless_present = "input")]
    pub amount: Option<u64>,
    /// Lower is served first under priority-first ordering.
    #[arg(long, default_value_t = 0)]
    pub priority: u32,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub send: SendFlags,
    /// The cancelling (and cancelled) record's client id. Default: the id the server binds to
    /// the key.
    #[arg(long)]
    pub client_id: Option<u64>,
    /// Cancel the record with this nonce.
    #[arg(long, required_unless_present = "seq", conflicts_with = "seq")]
    pub nonce: Option<u64>,
    /// Cancel the record with this engine sequence id (from its receipt).
    #[arg(long)]
    pub seq: Option<u64>,
}

/// Connects, lets `build` make the records once the client id is known, sends them and
/// collects the receipts.
fn run_records<'k>(
    send: &SendFlags,
    client_id: Option<u64>,
    lines: Option<&[usize]>,
    build: impl FnOnce(u64) -> Result<Vec<Record<'k>>, UsageError>,
) -> Result<Done, UsageError> {
    let mut config = send.connect.config(client_id)?;
    // A one-shot command does not reconnect: a lost connection is reported (exit 1).
    config.reconnect = None;
    config.receipts = match send.receipts {
        Receipts::All => ReceiptMode::All,
        Receipts::Refusals => ReceiptMode::Refusals,
    };
    let addr = config.addr;
    let report: Report = net::runtime()?.block_on(async {
        let (client, mut events) = Client::connect(config).await.map_err(|e| net::connect_error(addr, e))?;
        let bound = client.client_id().unwrap_or(0);
        let records = build(client_id.unwrap_or(bound))?;
        let report = net::send_and_collect(&client, &mut events, addr, &records, lines, send.sending()).await;
        client.close().await;
        report
    })?;
    Ok(Done { code: report.exit_code(), text: report.render(send.json)? })
}

/// All lines share one client id in the common case; it gives the default key.
fn first_client_id<T>(lines: &[(usize, T)], id: impl Fn(&T) -> u64) -> Option<u64> {
    lines.first().map(|(_, l)| id(l))
}

pub fn run_submit(args: &SubmitArgs) -> Result<Done, UsageError> {
    if let Some(path) = &args.input {
        let text = read_input(path)?;
        let lines: Vec<(usize, IntentLine)> = parse_lines(&text).map_err(|e| usage(e.to_string()))?;
        if lines.is_empty() {
            return Err(usage(format!("{}: no intents", path.display())));
        }
        let numbers: Vec<usize> = lines.iter().map(|(n, _)| *n).collect();
        let client_id = first_client_id(&lines, |l| l.client_id);
        let sent_ns = net::now_ns();
        let keys: Vec<Vec<u64>> =
            lines.iter().map(|(_, l)| l.keys.iter().map(Key::value).collect()).collect();
        return run_records(&args.send, client_id, Some(&numbers), |_| {
            Ok(lines
                .iter()
                .zip(&keys)
                .map(|((_, l), keys)| Record::Intent(intent_record(l, keys, sent_ns)))
                .collect())
        });
    }
    let profit = args.profit.ok_or_else(|| usage("--profit is required".to_string()))?;
    let keys: Vec<u64> = args.resource.iter().map(|k| key_value(k)).collect();
    let nonce = args.nonce.unwrap_or_else(net::now_ns);
    run_records(&args.send, args.client_id, None, |client_id| {
        Ok(vec![Record::Intent(Intent {
            client_id,
            nonce,
            sent_ns: net::now_ns(),
            profit,
            priority: args.priority,
            keys: &keys,
        })])
    })
}

/// A resource key flag: a decimal number, or a name hashed like a JSON-lines string key.
fn key_value(text: &str) -> u64 {
    match text.parse::<u64>() {
        Ok(n) => Key::Number(n).value(),
        Err(_) => Key::Name(text.to_string()).value(),
    }
}

pub fn run_bid(args: &BidArgs) -> Result<Done, UsageError> {
    if let Some(path) = &args.input {
        let text = read_input(path)?;
        let lines: Vec<(usize, BidLine)> = parse_lines(&text).map_err(|e| usage(e.to_string()))?;
        if lines.is_empty() {
            return Err(usage(format!("{}: no bids", path.display())));
        }
        let numbers: Vec<usize> = lines.iter().map(|(n, _)| *n).collect();
        let client_id = first_client_id(&lines, |l| l.client_id);
        let sent_ns = net::now_ns();
        return run_records(&args.send, client_id, Some(&numbers), |_| {
            Ok(lines.iter().map(|(_, l)| Record::Bid(bid_record(l, sent_ns))).collect())
        });
    }
    let amount = args.amount.ok_or_else(|| usage("--amount is required".to_string()))?;
    let nonce = args.nonce.unwrap_or_else(net::now_ns);
    run_records(&args.send, args.client_id, None, move |client_id| {
        Ok(vec![Record::Bid(Bid {
            client_id,
            nonce,
            sent_ns: net::now_ns(),
            amount,
            priority: args.priority,
        })])
    })
}

pub fn run_cancel(args: &CancelArgs) -> Result<Done, UsageError> {
    let target = match (args.nonce, args.seq) {
        (Some(nonce), None) => CancelTarget::Nonce(nonce),
        (None, Some(seq)) => CancelTarget::Seq(seq),
        _ => return Err(usage("give one of --nonce or --seq".to_string())),
    };
    run_records(&args.send, args.client_id, None, move |client_id| {
        Ok(vec![Record::Cancel(Cancel { client_id, target })])
    })
}
