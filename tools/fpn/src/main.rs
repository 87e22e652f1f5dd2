//! `fpn`, the Flashpoint command-line tool.
//!
//! Subcommands that need no daemon: `sim` (compare builders on random windows), `build`
//! (one block from a JSON-lines file of intents), `clear` (one auction from a JSON-lines
//! file of bids) and `zk`. Subcommands that talk to a running `flashpointd` over QUIC
//! (`fpn-client`): `submit`, `bid`, `cancel`, `watch`; and over its admin endpoint: `status`.
//! On the daemon's host: `probe` (eBPF latency probes, `fpn-ebpf`) and `tune` (host checks).
//! Human-readable output by default, `--json` for scripts. Exit codes: 0 ok, 1 a record
//! refused, a daemon not ready or a connection failure, 2 bad arguments or input.

mod cmd_build;
mod cmd_clear;
mod cmd_probe;
mod cmd_replay;
mod cmd_sim;
mod cmd_status;
mod cmd_submit;
mod cmd_watch;
mod cmd_zk;
mod feed;
mod jsonl;
mod net;
mod render;
mod tune;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "fpn", version, about = "Flashpoint command-line tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Random windows: FIFO vs greedy vs improved profit, surplus, fee and optimality gap.
    Sim(cmd_sim::SimArgs),
    /// Build one block from a JSON-lines file of intents (docs/jsonl.md).
    Build(cmd_build::BuildArgs),
    /// Clear one auction from a JSON-lines file of bids (docs/jsonl.md).
    Clear(cmd_clear::ClearArgs),
    /// Clearing proofs: setup keys, prove a window, verify a proof (docs/proofs.md).
    #[command(subcommand)]
    Zk(cmd_zk::ZkCommand),
    /// Send intents to a daemon: one from flags, or a JSON-lines file (docs/cli.md).
    Submit(cmd_submit::SubmitArgs),
    /// Send sealed bids to a daemon: one from flags, or a JSON-lines file.
    Bid(cmd_submit::BidArgs),
    /// Cancel an intent or bid by its nonce or its sequence id.
    Cancel(cmd_submit::CancelArgs),
    /// Print every window's block and clearing as the daemon publishes them.
    Watch(cmd_watch::WatchArgs),
    /// The daemon's readiness and metrics (admin endpoint).
    Status(cmd_status::StatusArgs),
    /// eBPF latency probes on a running daemon: a live view and a Prometheus endpoint (root).
    Probe(cmd_probe::ProbeArgs),
    /// Rebuild windows from a data dir's input log: compare with the journal, or a what-if
    /// backtest with other builder settings (docs/log.md).
    Replay(cmd_replay::ReplayArgs),
    /// The host against the daemon's core map: check (read-only) or apply tuning (docs/tuning.md).
    #[command(subcommand)]
    Tune(tune::TuneCommand),
}

/// A command's output and exit code (0, or 1 when a record was refused, a check failed...).
#[derive(Debug)]
pub struct Done {
    pub text: String,
    pub code: u8,
}

impl From<String> for Done {
    fn from(text: String) -> Done {
        Done { text, code: 0 }
    }
}

/// An error the user can act on: printed as `fpn: <message>`, with exit code 2 for bad
/// arguments or input and 1 for a check that failed (a proof that does not verify, a daemon
/// that cannot be reached).
#[derive(Debug)]
pub struct UsageError {
    pub message: String,
    pub code: u8,
}

/// A usage error (exit code 2).
pub fn usage(message: String) -> UsageError {
    UsageError { message, code: 2 }
}

impl UsageError {
    /// A failed check (exit code 1).
    pub fn invalid(message: &str) -> UsageError {
        UsageError { message: message.to_string(), code: 1 }
    }
}

impl<E: std::fmt::Display> From<E> for UsageError {
    fn from(e: E) -> UsageError {
        usage(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => cmd_sim::run(&args).map(Done::from),
        Command::Build(args) => cmd_build::run(&args).map(Done::from),
        Command::Clear(args) => cmd_clear::run(&args).map(Done::from),
        Command::Zk(command) => cmd_zk::run(&command).map(Done::from),
        Command::Submit(args) => cmd_submit::run_submit(&args),
        Command::Bid(args) => cmd_submit::run_bid(&args),
        Command::Cancel(args) => cmd_submit::run_cancel(&args),
        Command::Watch(args) => cmd_watch::run(&args),
        Command::Status(args) => cmd_status::run(&args),
        Command::Probe(args) => cmd_probe::run(&args),
        Command::Replay(args) => cmd_replay::run(&args),
        Command::Tune(command) => tune::run(&command),
    };
    match result {
        Ok(Done { text, code }) => {
            print!("{text}");
            ExitCode::from(code)
        }
        Err(UsageError { message, code }) => {
            eprintln!("fpn: {message}");
            ExitCode::from(code)
        }
    }
}
