//! `fpn build`: one block from a JSON-lines file of intents.
//!
//! Each line is encoded as a wire intent and handed to the engine like a network record, so
//! the file meets exactly the engine's rules; refused lines are listed with their reason.

use clap::Args;
use fpn_engine::window::WindowConfig;
use fpn_engine::{BuilderKind, Engine, EngineConfig, FeeRate};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::feed::{self, Fed, Rejected};
use crate::jsonl::{IntentLine, parse_lines};
use crate::render::{ImprovedFlags, parse_builder, parse_fee_rate, pct};
use crate::{UsageError, usage};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// JSON-lines file of intents (docs/jsonl.md); `-` reads standard input.
    #[arg(long)]
    pub input: PathBuf,
    /// fifo, greedy or improved.
    #[arg(long, default_value = "improved", value_parser = parse_builder)]
    pub builder: BuilderKind,
    /// Sequencer fee rate, a decimal in [0, 1] with at most 6 places.
    #[arg(long, default_value = "0.1", value_parser = parse_fee_rate)]
    pub fee_rate: FeeRate,
    #[command(flatten)]
    pub improved: ImprovedFlags,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct EntryOut {
    seq: u64,
    line: usize,
    client_id: u64,
    nonce: u64,
    profit: u64,
    fee: u64,
    payout: u64,
}

#[derive(Debug, Serialize)]
struct BuildReport {
    builder: &'static str,
    intents_accepted: usize,
    total: u64,
    fifo_total: u64,
    surplus: u64,
    fee_rate: String,
    fee: u64,
    upper_bound: u64,
    gap_pct: String,
    exact: bool,
    entries: Vec<EntryOut>,
    rejected: Vec<Rejected>,
}

pub fn read_input(path: &PathBuf) -> Result<String, UsageError> {
    if path.as_os_str() == "-" {
        return std::io::read_to_string(std::io::stdin()).map_err(|e| usage(format!("stdin: {e}")));
    }
    std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))
}

pub fn run(args: &BuildArgs) -> Result<String, UsageError> {
    let text = read_input(&args.input)?;
    let lines: Vec<(usize, IntentLine)> = parse_lines(&text).map_err(|e| usage(e.to_string()))?;
    let keys_total: usize = lines.iter().map(|(_, l)| l.keys.len()).sum();
    let records_max = lines.len().clamp(1, WindowConfig::RECORDS_MAX_MAX);
    if lines.len() > records_max {
        return Err(usage(format!("at most {records_max} intents per window, got {}", lines.len())));
    }
    let window = WindowConfig {
        window_ns: WindowConfig::WINDOW_NS_MAX,
        keys_max: keys_total.clamp(64, records_max * 64),
        bids_max: 0,
        ..WindowConfig::with_records_max(records_max)
    };
    let config = EngineConfig {
        window,
        builder: args.builder,
        improved: args.improved.config(),
        fee_rate: args.fee_rate,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, 0)?;
    let mut fed = Fed::default();
    feed::intents(&mut engine, &lines, &mut fed)?;
    let result = engine.drain(0);
    let block = &result.block;
    let report = BuildReport {
        builder: block.builder.as_str(),
        intents_accepted: fed.line_of_seq.len(),
        total: block.total,
        fifo_total: block.fifo_total,
        surplus: block.surplus,
        fee_rate: block.fee_rate.to_string(),
        fee: block.fee,
        upper_bound: block.upper_bound,
        gap_pct: pct(block.upper_bound - block.total, block.upper_bound),
        exact: block.exact,
        entries: block
            .entries
            .iter()
            .map(|e| EntryOut {
                seq: e.seq,
                line: fed.line(e.seq),
                client_id: e.client_id,
                nonce: e.nonce,
                profit: e.profit,
                fee: e.fee,
                payout: e.payout,
            })
            .collect(),
        rejected: fed.rejected,
    };
    if args.json {
        return Ok(serde_json::to_string_pretty(&report)? + "\n");
    }
    let mut out = String::new();
    writeln!(
        out,
        "block of {} intents from {} accepted ({} refused), builder {}{}",
        report.entries.len(),
        report.intents_accepted,
        report.rejected.len(),
        report.builder,
        if report.exact { ", proven optimal" } else { "" }
    )?;
    writeln!(
        out,
        "total {}  fifo {}  surplus {}  fee {} (rate {})  upper bound {}  gap {}%",
        report.total,
        report.fifo_total,
        report.surplus,
        report.fee,
        report.fee_rate,
        report.upper_bound,
        report.gap_pct
    )?;
    writeln!(
        out,
        "{:>6} {:>8} {:>10} {:>10} {:>14} {:>10} {:>14}",
        "line", "seq", "client", "nonce", "profit", "fee", "payout"
    )?;
    for e in &report.entries {
        writeln!(
            out,
            "{:>6} {:>8} {:>10} {:>10} {:>14} {:>10} {:>14}",
            e.line, e.seq, e.client_id, e.nonce, e.profit, e.fee, e.payout
        )?;
    }
    for r in &report.rejected {
        writeln!(out, "refused line {}: {} ({})", r.line, r.reason, r.code)?;
    }
    Ok(out)
}
