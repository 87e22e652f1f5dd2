//! Runs the built `flashpointd` binary as an operator would. Environment variables are given
//! to the child process only; this process's environment is never changed.

mod check_config;
mod crash;
mod daemon;
mod inproc;
mod intakes;
mod no_alloc;
mod prover;
mod quic;
mod receipts;
mod threads;
mod webtransport;

fn main() {}
