//! `fpn`, the Flashpoint command-line tool.
//!
//! Subcommands that need no daemon: `sim` (compare builders on random windows), `build`
//! (one block from a JSON-lines file of intents) and `clear` (one auction from a JSON-lines
//! file of bids). Human-readable output by default, `--json` for scripts. Exit codes: 0 ok,
//! 2 bad arguments or input.

mod cmd_build;
mod cmd_clear;
mod cmd_sim;
mod cmd_zk;
mod feed;
mod jsonl;
mod render;

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
}

/// An error the user can act on: printed as `fpn: <message>`, with exit code 2 for bad
/// arguments or input and 1 for a check that failed (a proof that does not verify).
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
        Command::Sim(args) => cmd_sim::run(&args),
        Command::Build(args) => cmd_build::run(&args),
        Command::Clear(args) => cmd_clear::run(&args),
        Command::Zk(command) => cmd_zk::run(&command),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(UsageError { message, code }) => {
            eprintln!("fpn: {message}");
            ExitCode::from(code)
        }
    }
}
