//! Output helpers shared by the subcommands.

use fpn_engine::{FeeRate, ImprovedConfig};

/// `part / whole` as a percentage with two decimals; `0.00` when `whole` is 0.
pub fn pct(part: u64, whole: u64) -> String {
    if whole == 0 { "0.00".to_string() } else { format!("{:.2}", part as f64 * 100.0 / whole as f64) }
}

/// Signed relative change `(new − old) / old` in percent.
pub fn change_pct(new: u64, old: u64) -> String {
    if old == 0 {
        "n/a".to_string()
    } else {
        format!("{:+.2}", (new as f64 - old as f64) * 100.0 / old as f64)
    }
}

pub fn parse_fee_rate(text: &str) -> Result<FeeRate, String> {
    FeeRate::parse_decimal(text).map_err(|e| e.to_string())
}

pub fn parse_builder(text: &str) -> Result<fpn_engine::BuilderKind, String> {
    text.parse().map_err(|e: fpn_engine::ParseBuilderKindError| e.to_string())
}

/// The improved builder's budgets, as flags shared by `sim` and `build`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImprovedFlags {
    /// Local-search step budget of the improved builder (deterministic; no time budget).
    #[arg(long, default_value_t = ImprovedConfig::default().local_search_steps_max)]
    pub steps: u64,
    /// Windows with at most this many intents are solved exactly (branch and bound), ≤ 64.
    #[arg(long, default_value_t = ImprovedConfig::default().exact_intents_max)]
    pub exact_intents_max: usize,
    /// Node budget of the exact solver.
    #[arg(long, default_value_t = ImprovedConfig::default().exact_nodes_max)]
    pub exact_nodes_max: u64,
}

impl ImprovedFlags {
    pub fn config(&self) -> ImprovedConfig {
        ImprovedConfig {
            local_search_steps_max: self.steps,
            exact_intents_max: self.exact_intents_max,
            exact_nodes_max: self.exact_nodes_max,
            ..ImprovedConfig::default()
        }
    }
}
