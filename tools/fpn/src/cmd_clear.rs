//! `fpn clear`: one auction clearing from a JSON-lines file of bids.
//!
//! Every bid goes through the engine as a wire record received at its `at_ms`; the window is
//! then closed at `--now-ms` and the book cleared with the rules given by the flags.

use clap::Args;
use fpn_engine::auction::{AuctionRules, BidOrder, Pricing};
use fpn_engine::window::WindowConfig;
use fpn_engine::{Engine, EngineConfig};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::cmd_build::read_input;
use crate::feed::{self, Fed, Rejected};
use crate::jsonl::{BidLine, parse_lines};
use crate::{UsageError, usage};

const NS_PER_MS: u64 = 1_000_000;

#[derive(Debug, Args)]
pub struct ClearArgs {
    /// JSON-lines file of bids (docs/jsonl.md); `-` reads standard input.
    #[arg(long)]
    pub input: PathBuf,
    /// Most winners.
    #[arg(long, default_value_t = 64)]
    pub top_k: u32,
    /// Minimum bid amount.
    #[arg(long, default_value_t = 0)]
    pub reserve: u64,
    /// Cap on the sum of the winners' bid amounts; a bid that would pass it is skipped.
    #[arg(long)]
    pub budget_cap: Option<u64>,
    /// Only bids that arrived within this many ms before --now-ms take part.
    #[arg(long)]
    pub recency_ms: Option<u64>,
    /// priority-first (ascending priority, then amount descending) or amount-desc.
    #[arg(long, default_value = "priority-first")]
    pub order: BidOrder,
    /// first-price (pay your bid) or uniform (pay the highest losing bid or the reserve,
    /// never more than your bid).
    #[arg(long, default_value = "first-price")]
    pub pricing: Pricing,
    /// Clearing time in ms (default: the latest at_ms in the file).
    #[arg(long)]
    pub now_ms: Option<u64>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct WinnerOut {
    line: usize,
    seq: u64,
    client_id: u64,
    nonce: u64,
    amount: u64,
    price: u64,
}

#[derive(Debug, Serialize)]
struct ClearReport {
    order: String,
    pricing: String,
    bids_accepted: usize,
    eligible: usize,
    expired: usize,
    uniform_price: Option<u64>,
    revenue: u64,
    winners: Vec<WinnerOut>,
    open_after: usize,
    rejected: Vec<Rejected>,
}

pub fn run(args: &ClearArgs) -> Result<String, UsageError> {
    let text = read_input(&args.input)?;
    let lines: Vec<(usize, BidLine)> = parse_lines(&text).map_err(|e| usage(e.to_string()))?;
    let records_max = lines.len().clamp(1, WindowConfig::RECORDS_MAX_MAX);
    if lines.len() > records_max {
        return Err(usage(format!("at most {records_max} bids, got {}", lines.len())));
    }
    let now_ms = args.now_ms.unwrap_or_else(|| lines.iter().map(|(_, b)| b.at_ms).max().unwrap_or(0));
    if let Some((line, late)) = lines.iter().find(|(_, b)| b.at_ms > now_ms) {
        return Err(usage(format!("line {line}: at_ms {} is after --now-ms {now_ms}", late.at_ms)));
    }
    let rules = AuctionRules {
        top_k: args.top_k,
        reserve: args.reserve,
        budget_cap: args.budget_cap,
        recency_ns: args.recency_ms.map(|ms| ms.saturating_mul(NS_PER_MS)),
        order: args.order,
        pricing: args.pricing,
    };
    let config = EngineConfig {
        window: WindowConfig {
            window_ns: WindowConfig::WINDOW_NS_MAX,
            bids_max: records_max,
            ..WindowConfig::with_records_max(records_max)
        },
        auction: rules,
        book_bids_max: records_max,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, 0)?;
    let mut fed = Fed::default();
    feed::bids(&mut engine, &lines, &mut fed)?;
    let result = engine.drain(now_ms.saturating_mul(NS_PER_MS));
    let c = &result.clearing;
    let report = ClearReport {
        order: args.order.to_string(),
        pricing: args.pricing.to_string(),
        bids_accepted: fed.line_of_seq.len(),
        eligible: c.eligible_count,
        expired: c.expired_count,
        uniform_price: c.uniform_price,
        revenue: c.revenue,
        winners: c
            .winners
            .iter()
            .map(|w| WinnerOut {
                line: fed.line(w.seq),
                seq: w.seq,
                client_id: w.client_id,
                nonce: w.nonce,
                amount: w.amount,
                price: w.price,
            })
            .collect(),
        open_after: c.open_count_after,
        rejected: fed.rejected,
    };
    if args.json {
        return Ok(serde_json::to_string_pretty(&report)? + "\n");
    }
    let mut out = String::new();
    writeln!(
        out,
        "{} winners of {} eligible bids ({} accepted, {} expired, {} refused), {} / {}",
        report.winners.len(),
        report.eligible,
        report.bids_accepted,
        report.expired,
        report.rejected.len(),
        report.order,
        report.pricing
    )?;
    match report.uniform_price {
        Some(p) => writeln!(out, "uniform price {p}  revenue {}", report.revenue)?,
        None => writeln!(out, "revenue {}", report.revenue)?,
    }
    writeln!(
        out,
        "{:>6} {:>8} {:>10} {:>10} {:>14} {:>14}",
        "line", "seq", "client", "nonce", "amount", "price"
    )?;
    for w in &report.winners {
        writeln!(
            out,
            "{:>6} {:>8} {:>10} {:>10} {:>14} {:>14}",
            w.line, w.seq, w.client_id, w.nonce, w.amount, w.price
        )?;
    }
    for r in &report.rejected {
        writeln!(out, "refused line {}: {} ({})", r.line, r.reason, r.code)?;
    }
    Ok(out)
}
