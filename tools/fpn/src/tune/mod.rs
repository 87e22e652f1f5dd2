//! `fpn tune check | apply`: the host against what `flashpointd`'s configuration needs, in the
//! manner of Firedancer's `configure check` and Scylla's `perftune.py` (`docs/tuning.md`).
//!
//! The configuration is loaded exactly as the daemon loads it (`flashpointd::load`: the file
//! from `--config` or `FPN_CONFIG`, the `FPN_*` environment, `--set`), against this process's
//! CPU affinity, so under the unit's `ExecStartPre=` it sees the daemon's core map. The hot
//! CPUs are those of the hot roles (`Role::is_hot`: intake, builder, build worker, merger).
//!
//! `check` is read-only and needs no privileges. Exit 0 when nothing fails (warnings allowed;
//! always 0 with `--warn-only`), 1 when a check fails, 2 for usage or configuration errors.

mod apply;
mod check;
mod host;

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use flashpointd::config::Flag;
use flashpointd::{CpuSet, Inputs, Settings};
use fpn_ebpf::target::format_cpu_list;
use serde::Serialize;

use crate::{Done, UsageError, usage};
use check::{Plan, Status};
use host::{Host, RealHost};

#[derive(Debug, Subcommand)]
pub enum TuneCommand {
    /// Compare this host with what the daemon's configuration needs (read-only).
    Check(CheckArgs),
    /// Print (--dry-run) or write the sysctl.d file, tuned profile and kernel command line.
    Apply(ApplyArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The daemon's TOML file (default: $FPN_CONFIG, as the daemon reads it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A configuration key as the daemon's --set takes it (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Read (and, for apply, write) the kernel's files under this root instead of /.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Exit 0 even when a check fails (for ExecStartPre=: report, never block the start).
    #[arg(long)]
    pub warn_only: bool,
    /// One JSON document instead of lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print the files instead of writing them.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(command: &TuneCommand) -> Result<Done, UsageError> {
    match command {
        TuneCommand::Check(args) => run_check(args),
        TuneCommand::Apply(args) => run_apply(args),
    }
}

/// The daemon's settings, loaded as the daemon would load them here.
fn settings(args: &ConfigArgs) -> Result<Settings, UsageError> {
    daemon_settings(args.config.clone(), args.set.iter().cloned().map(Flag::Set).collect())
}

/// The daemon's settings from its config file (or `$FPN_CONFIG`), the `FPN_*` environment
/// and `flags`, loaded as the daemon would load them on this host.
pub fn daemon_settings(config: Option<PathBuf>, flags: Vec<Flag>) -> Result<Settings, UsageError> {
    let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("FPN_")).collect();
    let errors = |e: flashpointd::ConfigErrors| {
        let lines: Vec<String> = e.0.iter().map(|e| format!("  {e}")).collect();
        usage(format!("the daemon's configuration is invalid:\n{}", lines.join("\n")))
    };
    let inputs = Inputs::gather(config, env, flags).map_err(errors)?;
    Ok(flashpointd::load(&inputs, &CpuSet::host()).map_err(errors)?.settings)
}

fn plan(settings: &Settings) -> Plan {
    let hot_cpus: BTreeSet<usize> = settings
        .core_map
        .plans
        .iter()
        .filter(|p| p.roles.iter().any(|r| r.role.is_hot()))
        .map(|p| p.cpu)
        .collect();
    Plan {
        hot_cpus,
        listen: settings.quic.listen,
        lock_memory: settings.lock_memory.as_str(),
        realtime: settings.realtime.as_str(),
        realtime_priority: settings.realtime_priority,
        socket_buffer_bytes: fpn_quic::udp::SOCKET_BUFFER_BYTES as u64,
    }
}

#[derive(Debug, Serialize)]
struct CheckLine<'a> {
    name: &'a str,
    status: &'a str,
    detail: &'a str,
    fix: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct CheckReport<'a> {
    hot_cpus: Vec<usize>,
    core_map: Vec<String>,
    listen: String,
    checks: Vec<CheckLine<'a>>,
    pass: usize,
    warn: usize,
    fail: usize,
}

fn run_check(args: &CheckArgs) -> Result<Done, UsageError> {
    let settings = settings(&args.config)?;
    let plan = plan(&settings);
    let host = RealHost::new(args.config.root.clone());
    let lines = check::run(&host, &plan);
    let count = |s: Status| lines.iter().filter(|l| l.status == s).count();
    let (pass, warn, fail) = (count(Status::Pass), count(Status::Warn), count(Status::Fail));
    let core_map: Vec<String> = settings.core_map.to_string().lines().map(str::to_string).collect();
    let text = if args.json {
        let report = CheckReport {
            hot_cpus: plan.hot_cpus.iter().copied().collect(),
            core_map,
            listen: plan.listen.to_string(),
            checks: lines
                .iter()
                .map(|l| CheckLine {
                    name: l.name,
                    status: l.status.as_str(),
                    detail: &l.detail,
                    fix: l.fix.as_deref(),
                })
                .collect(),
            pass,
            warn,
            fail,
        };
        serde_json::to_string_pretty(&report).expect("the report serializes") + "\n"
    } else {
        let mut out = format!(
            "fpn tune check: hot CPUs {} ({}), quic.listen {}\n",
            format_cpu_list(plan.hot_cpus.iter().copied()),
            core_map.join("; "),
            plan.listen
        );
        for line in &lines {
            out.push_str(&format!(
                "{:<5} {:<22} {}\n",
                line.status.as_str().to_uppercase(),
                line.name,
                line.detail
            ));
            if let Some(fix) = &line.fix {
                out.push_str(&format!("{:<28} fix: {fix}\n", ""));
            }
        }
        out.push_str(&format!("{} checks: {pass} pass, {warn} warn, {fail} fail\n", lines.len()));
        out
    };
    let code = if fail > 0 && !args.warn_only { 1 } else { 0 };
    Ok(Done { text, code })
}

fn run_apply(args: &ApplyArgs) -> Result<Done, UsageError> {
    let plan = plan(&settings(&args.config)?);
    let host = RealHost::new(args.config.root.clone());
    let files = apply::files(&host, &plan);
    if args.dry_run {
        return Ok(Done::from(apply::render(&files)));
    }
    let done = apply::write(&host, &plan, &files).map_err(|e| UsageError::invalid(&e))?;
    let mut text = done.join("\n");
    text.push_str(&format!(
        "\nnext (not done here): `tuned-adm profile flashpointd` if tuned is installed; `update-grub` and a reboot \
         for the kernel command line in {}\n",
        host.path(apply::GRUB_PATH).display()
    ));
    Ok(Done::from(text))
}
