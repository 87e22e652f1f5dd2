//! `fpn sim`: random windows through FIFO, greedy and improved, side by side.

use clap::Args;
use fpn_engine::sim::{SimParams, SplitMix64, random_batch};
use fpn_engine::{Block, BuilderKind, FeeRate, Packer};
use serde::Serialize;
use std::fmt::Write as _;

use crate::render::{ImprovedFlags, change_pct, parse_fee_rate, pct};
use crate::{UsageError, usage};

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Number of windows.
    #[arg(long, default_value_t = 10)]
    pub windows: u32,
    /// Intents per window.
    #[arg(long, default_value_t = 1_000)]
    pub intents: usize,
    /// Probability that each key of an intent is drawn from the hot pool (0..=1); the
    /// other keys are unique, so 0 means no conflicts (docs/economics.md).
    #[arg(long, default_value_t = 0.5)]
    pub conflict_rate: f64,
    /// Size of the hot key pool.
    #[arg(long, default_value_t = 200)]
    pub hot_keys: u64,
    #[arg(long, default_value_t = 2)]
    pub keys_min: usize,
    #[arg(long, default_value_t = 8)]
    pub keys_max: usize,
    /// Profits are drawn uniformly from 1..=profit_max.
    #[arg(long, default_value_t = 1_000_000)]
    pub profit_max: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Sequencer fee rate, a decimal in [0, 1] with at most 6 places.
    #[arg(long, default_value = "0.1", value_parser = parse_fee_rate)]
    pub fee_rate: FeeRate,
    #[command(flatten)]
    pub improved: ImprovedFlags,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default, Serialize, Clone, Copy)]
struct WindowRow {
    window: u32,
    intents: usize,
    fifo: u64,
    greedy: u64,
    improved: u64,
    upper_bound: u64,
    exact: bool,
    surplus: u64,
    fee: u64,
}

#[derive(Debug, Serialize)]
struct SimReport {
    seed: u64,
    conflict_rate: f64,
    fee_rate: String,
    windows: Vec<WindowRow>,
    total: WindowRow,
    greedy_vs_fifo_pct: String,
    improved_vs_greedy_pct: String,
    improved_gap_pct: String,
}

pub fn run(args: &SimArgs) -> Result<String, UsageError> {
    let params = SimParams {
        intents: args.intents,
        keys_min: args.keys_min,
        keys_max: args.keys_max,
        conflict_rate: args.conflict_rate,
        hot_keys: args.hot_keys,
        profit_max: args.profit_max,
    };
    params.validate()?;
    if args.windows == 0 {
        return Err(usage("--windows must be at least 1".into()));
    }
    let (records_max, keys_max) = params.capacity();
    let (records_max, keys_max) = (records_max.max(1), keys_max.max(64));
    let mut packer = Packer::new(BuilderKind::Improved, records_max, keys_max, args.improved.config());
    let mut block = Block::with_capacity(records_max);
    // Each window's seed comes from the run seed through SplitMix64, so window w is the same
    // whatever --windows says.
    let mut seeds = SplitMix64::new(args.seed);
    let mut rows = Vec::with_capacity(args.windows as usize);
    for w in 1..=args.windows {
        let batch = random_batch(seeds.next_u64(), &params)?;
        let cmp = packer.compare(&batch);
        packer.pack(u64::from(w), &batch, args.fee_rate, &mut block);
        rows.push(WindowRow {
            window: w,
            intents: batch.len(),
            fifo: cmp.fifo.total,
            greedy: cmp.greedy.total,
            improved: block.total,
            upper_bound: block.upper_bound.min(cmp.upper_bound()),
            exact: block.exact,
            surplus: block.surplus,
            fee: block.fee,
        });
    }
    let mut total = WindowRow::default();
    for r in &rows {
        total.intents += r.intents;
        total.fifo += r.fifo;
        total.greedy += r.greedy;
        total.improved += r.improved;
        total.upper_bound += r.upper_bound;
        total.surplus += r.surplus;
        total.fee += r.fee;
    }
    total.exact = rows.iter().all(|r| r.exact);
    let report = SimReport {
        seed: args.seed,
        conflict_rate: args.conflict_rate,
        fee_rate: args.fee_rate.to_string(),
        greedy_vs_fifo_pct: change_pct(total.greedy, total.fifo),
        improved_vs_greedy_pct: change_pct(total.improved, total.greedy),
        improved_gap_pct: pct(total.upper_bound - total.improved, total.upper_bound),
        windows: rows,
        total,
    };
    if args.json {
        return Ok(serde_json::to_string_pretty(&report)? + "\n");
    }
    let mut out = String::new();
    writeln!(
        out,
        "{:>6} {:>8} {:>14} {:>14} {:>14} {:>14} {:>7} {:>13} {:>12}",
        "window", "intents", "fifo", "greedy", "improved", "upper_bound", "gap%", "surplus", "fee"
    )?;
    let line = |out: &mut String, label: &str, r: &WindowRow| {
        writeln!(
            out,
            "{:>6} {:>8} {:>14} {:>14} {:>14} {:>14} {:>7} {:>13} {:>12}{}",
            label,
            r.intents,
            r.fifo,
            r.greedy,
            r.improved,
            r.upper_bound,
            pct(r.upper_bound - r.improved, r.upper_bound),
            r.surplus,
            r.fee,
            if r.exact { "  exact" } else { "" }
        )
    };
    for r in &report.windows {
        line(&mut out, &r.window.to_string(), r)?;
    }
    line(&mut out, "total", &report.total)?;
    writeln!(
        out,
        "greedy vs fifo {}%, improved vs greedy {}%, improved gap to upper bound {}% (seed {}, conflict rate {}, fee rate {})",
        report.greedy_vs_fifo_pct,
        report.improved_vs_greedy_pct,
        report.improved_gap_pct,
        args.seed,
        args.conflict_rate,
        report.fee_rate
    )?;
    Ok(out)
}
