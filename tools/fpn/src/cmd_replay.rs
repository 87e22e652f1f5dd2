//! `fpn replay`: rebuild windows from a daemon's input log (`docs/log.md`, "Replay").
//!
//! Without `--builder` or `--set`, every rebuilt window is compared with the results
//! journal byte for byte; the first mismatch is printed and the exit code is 1. With them, a
//! what-if backtest: the recorded traffic through other builder settings, per window the
//! value and gap against what was published, and the time the rebuild took.
//!
//! Run it on a stopped daemon's data dir (or a copy): it reads the files as they are.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use flashpointd::config::Flag;
use serde::Serialize;

use crate::tune::daemon_settings;
use crate::{Done, UsageError, usage};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The daemon's data directory (its `log/` and `journal*.jsonl`).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The daemon's TOML file: replay needs the engine settings the log was written with
    /// (default: $FPN_CONFIG, else the built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// First window to rebuild.
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// Last window to rebuild (default: all).
    #[arg(long)]
    pub to: Option<u64>,
    /// What-if: rebuild with this builder (fifo, greedy, improved) instead of comparing.
    #[arg(long)]
    pub builder: Option<String>,
    /// What-if: a configuration key as the daemon's --set takes it, e.g.
    /// builder.local_search_steps_max=100000 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct CompareJson<'a> {
    rebuilt: u64,
    matched: u64,
    mismatches: u64,
    first_mismatch: Option<MismatchJson<'a>>,
    not_journaled: &'a [u64],
    not_in_log: &'a [u64],
}

#[derive(Debug, Serialize)]
struct MismatchJson<'a> {
    window_id: u64,
    journal: &'a str,
    replayed: &'a str,
}

#[derive(Debug, Serialize)]
struct WhatIfJson {
    window_id: u64,
    published_total: Option<u64>,
    total: u64,
    upper_bound: u64,
    gap: u64,
    build_us: f64,
}

pub fn run(args: &ReplayArgs) -> Result<Done, UsageError> {
    let what_if = args.builder.is_some() || !args.set.is_empty();
    let mut flags = vec![Flag::Key {
        flag: "--data-dir",
        key: "engine.data_dir",
        value: args.data_dir.display().to_string(),
    }];
    if let Some(kind) = &args.builder {
        flags.push(Flag::Key { flag: "--builder", key: "builder.kind", value: kind.clone() });
    }
    flags.extend(args.set.iter().cloned().map(Flag::Set));
    let settings = daemon_settings(args.config.clone(), flags)?;
    if !settings.data_dir.join(flashpointd::run::roles::log::LOG_DIR).is_dir() {
        return Err(usage(format!("{} has no input log (log/)", settings.data_dir.display())));
    }
    let report = flashpointd::replay::replay(&settings, args.from, args.to.unwrap_or(0), !what_if)
        .map_err(|e| UsageError::invalid(&e.to_string()))?;
    let mut text = String::new();
    if what_if {
        let rows: Vec<WhatIfJson> = report
            .what_if
            .iter()
            .map(|w| WhatIfJson {
                window_id: w.window_id,
                published_total: w.published.map(|p| p.0),
                total: w.total,
                upper_bound: w.upper_bound,
                gap: w.upper_bound.saturating_sub(w.total),
                build_us: w.build_ns as f64 / 1e3,
            })
            .collect();
        if args.json {
            text = serde_json::to_string(&rows)? + "\n";
        } else {
            let _ = writeln!(
                text,
                "{:>10} {:>14} {:>14} {:>14} {:>10}",
                "window", "published", "replayed", "gap", "build_us"
            );
            for r in &rows {
                let published = r.published_total.map_or("-".to_string(), |v| v.to_string());
                let _ = writeln!(
                    text,
                    "{:>10} {:>14} {:>14} {:>14} {:>10.1}",
                    r.window_id, published, r.total, r.gap, r.build_us
                );
            }
            let better = rows.iter().filter(|r| r.published_total.is_some_and(|p| r.total > p)).count();
            let worse = rows.iter().filter(|r| r.published_total.is_some_and(|p| r.total < p)).count();
            let _ = writeln!(text, "{} windows: {better} better, {worse} worse than published", rows.len());
        }
        return Ok(Done { text, code: 0 });
    }
    let first = report.first_mismatch.as_ref().map(|m| MismatchJson {
        window_id: m.window_id,
        journal: &m.journal,
        replayed: &m.replayed,
    });
    if args.json {
        let j = CompareJson {
            rebuilt: report.rebuilt,
            matched: report.matched,
            mismatches: report.mismatches,
            first_mismatch: first,
            not_journaled: &report.not_journaled,
            not_in_log: &report.not_in_log,
        };
        text = serde_json::to_string(&j)? + "\n";
    } else {
        let _ = writeln!(
            text,
            "{} windows rebuilt: {} equal to the journal, {} mismatched; {} not in the journal, {} journaled but not in the log",
            report.rebuilt,
            report.matched,
            report.mismatches,
            report.not_journaled.len(),
            report.not_in_log.len()
        );
        if let Some(m) = &report.first_mismatch {
            let _ = writeln!(
                text,
                "first mismatch: window {}\n  journal:  {}\n  replayed: {}",
                m.window_id, m.journal, m.replayed
            );
        }
    }
    Ok(Done { text, code: u8::from(report.mismatches > 0) })
}
