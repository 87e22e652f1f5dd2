//! `fpn zk`: clearing proofs from the command line (docs/proofs.md).
//!
//! - `setup` makes (or, with `--force`, remakes) the circuit keys in a key directory.
//! - `prove` runs one window through the engine (intents and bids from JSON-lines files),
//!   proves its block and clearing, and writes snarkjs-format `proof.json`, `public.json` and
//!   `verification_key.json`.
//! - `verify` checks those three files with our verifier (snarkjs verifies the same files).

use std::path::{Path, PathBuf};

use ark_std::rand::rngs::OsRng;
use clap::{Args, Subcommand};
use fpn_engine::auction::{AuctionRules, BidOrder, Pricing};
use fpn_engine::window::WindowConfig;
use fpn_engine::{BuilderKind, Engine, EngineConfig, FeeRate, WindowResult};
use fpn_prover::{
    AuctionWitness, BLOCK_ENTRIES_MAX, CircuitId, ClearingWitness, EntryWitness, KeyStore,
    PRICING_FIRST_PRICE, PRICING_UNIFORM, WINNERS_MAX, WinnerWitness, prove_clearing_timed, snarkjs,
    verify_raw,
};
use serde::Serialize;
use std::fmt::Write as _;

use crate::cmd_build::read_input;
use crate::feed::{self, Fed};
use crate::jsonl::{BidLine, IntentLine, parse_lines};
use crate::render::{ImprovedFlags, parse_builder, parse_fee_rate};
use crate::{UsageError, usage};

#[derive(Debug, Subcommand)]
pub enum ZkCommand {
    /// Make the clearing circuit's keys in the key directory (kept if present, unless --force).
    Setup(SetupArgs),
    /// Prove one window built from JSON-lines intents (and bids).
    Prove(ProveArgs),
    /// Verify proof.json and public.json against verification_key.json in a directory.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Key directory (the daemon's is `<data_dir>/keys`).
    #[arg(long, default_value = "data/keys")]
    pub keys: PathBuf,
    /// Replace stored keys (required after a circuit change; old proofs stop verifying).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ProveArgs {
    #[arg(long, default_value = "data/keys")]
    pub keys: PathBuf,
    /// JSON-lines intents (docs/jsonl.md).
    #[arg(long)]
    pub intents: PathBuf,
    /// JSON-lines bids (docs/jsonl.md), cleared at the window close.
    #[arg(long)]
    pub bids: Option<PathBuf>,
    /// Where proof.json, public.json and verification_key.json are written.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "improved", value_parser = parse_builder)]
    pub builder: BuilderKind,
    #[arg(long, default_value = "0.1", value_parser = parse_fee_rate)]
    pub fee_rate: FeeRate,
    #[command(flatten)]
    pub improved: ImprovedFlags,
    #[arg(long, default_value_t = WINNERS_MAX as u32)]
    pub top_k: u32,
    #[arg(long, default_value_t = 0)]
    pub reserve: u64,
    #[arg(long, default_value = "priority-first")]
    pub order: BidOrder,
    #[arg(long, default_value = "first-price")]
    pub pricing: Pricing,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Directory holding proof.json, public.json and verification_key.json.
    #[arg(long)]
    pub dir: PathBuf,
}

pub fn run(command: &ZkCommand) -> Result<String, UsageError> {
    match command {
        ZkCommand::Setup(args) => setup(args),
        ZkCommand::Prove(args) => prove(args),
        ZkCommand::Verify(args) => verify(args),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn setup(args: &SetupArgs) -> Result<String, UsageError> {
    let store = KeyStore::open(&args.keys)?;
    let keys = if args.force {
        store.setup(CircuitId::Clearing, &mut OsRng)?
    } else {
        store.keys(CircuitId::Clearing)?
    };
    Ok(format!("clearing keys in {} (circuit digest {})\n", store.dir().display(), hex(&keys.digest)))
}

/// The prover's plain witness for one window result. Refuses windows larger than the
/// circuit's fixed capacity rather than proving a part of them.
pub fn witness_of(
    result: &WindowResult,
    reserve: u64,
    pricing: Pricing,
) -> Result<ClearingWitness, UsageError> {
    let block = &result.block;
    if block.entries.len() > BLOCK_ENTRIES_MAX {
        return Err(usage(format!(
            "the block has {} entries; the clearing circuit holds {BLOCK_ENTRIES_MAX} (docs/proofs.md)",
            block.entries.len()
        )));
    }
    let clearing = &result.clearing;
    if clearing.winners.len() > WINNERS_MAX {
        return Err(usage(format!(
            "the clearing has {} winners; the circuit holds {WINNERS_MAX}",
            clearing.winners.len()
        )));
    }
    Ok(ClearingWitness {
        window_id: block.window_id,
        windows_count: 1,
        fee_ppm: block.fee_rate.ppm(),
        fifo_total: block.fifo_total,
        entries: block
            .entries
            .iter()
            .map(|e| EntryWitness { seq: e.seq, profit: e.profit, payout: e.payout })
            .collect(),
        auction: AuctionWitness {
            pricing: match pricing {
                Pricing::FirstPrice => PRICING_FIRST_PRICE,
                Pricing::Uniform => PRICING_UNIFORM,
            },
            reserve,
            uniform_price: match pricing {
                Pricing::FirstPrice => 0,
                Pricing::Uniform => clearing.uniform_price.unwrap_or(reserve),
            },
            winners: clearing
                .winners
                .iter()
                .map(|w| WinnerWitness { seq: w.seq, amount: w.amount, price: w.price })
                .collect(),
        },
    })
}

#[derive(Debug, Serialize)]
struct ProveReport {
    window_id: u64,
    entries: usize,
    winners: usize,
    total: u64,
    fee: u64,
    revenue: u64,
    /// Lines the engine refused, with their reasons (docs/wire.md), per input file.
    rejected_intents: Vec<feed::Rejected>,
    rejected_bids: Vec<feed::Rejected>,
    synthesis_ms: f64,
    witness_map_ms: f64,
    msm_ms: f64,
    out: String,
}

fn prove(args: &ProveArgs) -> Result<String, UsageError> {
    let intents: Vec<(usize, IntentLine)> =
        parse_lines(&read_input(&args.intents)?).map_err(|e| usage(format!("intents: {e}")))?;
    let bids: Vec<(usize, BidLine)> = match &args.bids {
        Some(path) => parse_lines(&read_input(path)?).map_err(|e| usage(format!("bids: {e}")))?,
        None => Vec::new(),
    };
    let records_max = (intents.len() + bids.len()).clamp(1, WindowConfig::RECORDS_MAX_MAX);
    let keys_total: usize = intents.iter().map(|(_, l)| l.keys.len()).sum();
    let now_ns = bids.iter().map(|(_, b)| b.at_ms).max().unwrap_or(0).saturating_mul(1_000_000);
    let config = EngineConfig {
        window: WindowConfig {
            window_ns: WindowConfig::WINDOW_NS_MAX,
            keys_max: keys_total.clamp(64, records_max * 64),
            bids_max: bids.len(),
            ..WindowConfig::with_records_max(records_max)
        },
        builder: args.builder,
        improved: args.improved.config(),
        fee_rate: args.fee_rate,
        auction: AuctionRules {
            top_k: args.top_k,
            reserve: args.reserve,
            order: args.order,
            pricing: args.pricing,
            ..AuctionRules::default()
        },
        book_bids_max: bids.len().max(1),
    };
    let mut engine = Engine::new(config, 0)?;
    let (mut fed_intents, mut fed_bids) = (Fed::default(), Fed::default());
    feed::intents(&mut engine, &intents, &mut fed_intents)?;
    feed::bids(&mut engine, &bids, &mut fed_bids)?;
    let result = engine.drain(now_ns);
    let witness = witness_of(result, args.reserve, args.pricing)?;
    let keys = KeyStore::open(&args.keys)?.keys(CircuitId::Clearing)?;
    let (proof, timings) = prove_clearing_timed(&keys.pk, &witness, &mut OsRng)?;
    std::fs::create_dir_all(&args.out).map_err(|e| usage(format!("{}: {e}", args.out.display())))?;
    write_json(&args.out, "verification_key.json", &snarkjs::vk_to_json(keys.vk()))?;
    write_json(&args.out, "proof.json", &snarkjs::proof_to_json(&proof.proof))?;
    write_json(&args.out, "public.json", &snarkjs::public_to_json(&proof.public_inputs.to_field_elements()))?;
    let report = ProveReport {
        window_id: result.block.window_id,
        entries: result.block.entries.len(),
        winners: result.clearing.winners.len(),
        total: result.block.total,
        fee: result.block.fee,
        revenue: result.clearing.revenue,
        rejected_intents: fed_intents.rejected,
        rejected_bids: fed_bids.rejected,
        synthesis_ms: timings.synthesis.as_secs_f64() * 1e3,
        witness_map_ms: timings.witness_map.as_secs_f64() * 1e3,
        msm_ms: timings.msm.as_secs_f64() * 1e3,
        out: args.out.display().to_string(),
    };
    if args.json {
        return Ok(serde_json::to_string_pretty(&report)? + "\n");
    }
    let mut out = String::new();
    writeln!(
        out,
        "proved window {}: {} entries (total {}, fee {}), {} winners (revenue {})",
        report.window_id, report.entries, report.total, report.fee, report.winners, report.revenue
    )?;
    for (file, rejected) in [("intents", &report.rejected_intents), ("bids", &report.rejected_bids)] {
        for r in rejected {
            writeln!(out, "refused {file} line {}: {} ({})", r.line, r.reason, r.code)?;
        }
    }
    writeln!(
        out,
        "synthesis {:.1} ms, witness map {:.1} ms, msm {:.1} ms; wrote {}/{{proof,public,verification_key}}.json",
        report.synthesis_ms, report.witness_map_ms, report.msm_ms, report.out
    )?;
    Ok(out)
}

fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> Result<(), UsageError> {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value)?)
        .map_err(|e| usage(format!("{}: {e}", path.display())))
}

fn read_json(dir: &Path, name: &str) -> Result<serde_json::Value, UsageError> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    snarkjs::parse(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
}

fn verify(args: &VerifyArgs) -> Result<String, UsageError> {
    let vk = snarkjs::vk_from_json(&read_json(&args.dir, "verification_key.json")?)?;
    let proof = snarkjs::proof_from_json(&read_json(&args.dir, "proof.json")?)?;
    let public = snarkjs::public_from_json(&read_json(&args.dir, "public.json")?)?;
    let pvk = fpn_prover::prepare_verifying_key(&vk);
    if verify_raw(&pvk, &public, &proof)? {
        Ok("valid\n".to_string())
    } else {
        Err(UsageError::invalid("INVALID: the proof does not verify against these public inputs"))
    }
}
