//! Flashpoint engine core.
//!
//! Everything here is sans-IO: no sockets, no threads, no clock reads. Time comes in as a
//! `now_ns` argument, bytes come in as slices, and results go out through `poll_*` calls or
//! caller-owned buffers. The daemon, the simulator, journal replay and the tests all drive
//! this same code.

pub mod amount;
pub mod auction;
pub mod batch;
pub mod clock;
pub mod dedup;
pub mod economics;
pub mod engine;
pub mod mem;
pub mod oracle;
pub mod pace;
pub mod select;
pub mod shard;
pub mod sim;
pub mod window;

pub use amount::{FeeRate, FeeRateError, MAX_AMOUNT};
pub use auction::{
    AuctionRules, Bid, BidOrder, Book, BookSnapshot, Clearing, ParseRuleError, Pricing, RulesError, Winner,
};
pub use batch::{BatchFull, IntentBatch, IntentMeta};
pub use dedup::{Dedup, DedupEntry};
pub use economics::{Block, BlockEntry, BuilderOutcome, Comparison, Packer};
pub use engine::{Engine, EngineConfig, EngineConfigError, EngineCounters, WindowResult, WindowSummary};
pub use mem::prefetch_frame;
pub use pace::{EveryPoint, Pace, Unpaced, run_to_completion, run_unpaced, yield_once};
pub use select::{
    BlockBuilder, BuilderKind, FifoBuilder, GreedyBuilder, ImprovedBuilder, ImprovedConfig, ImprovedStats,
    KeyIndex, ParseBuilderKindError, Selection,
};
pub use shard::{
    BuildWorker, BuilderShard, IntakeCore, Merger, MergerOutput, Pipeline, PipelineConfig, ShardConfig,
    ShardConfigError, ShardWindow, WindowClock, WindowClose,
};
pub use sim::{SimParams, SimParamsError, SplitMix64, UniformParams};
pub use window::{
    Admitted, CloseReason, ClosedWindow, KEYS_PER_INTENT_MAX, PendingBid, RecordKind, Window, WindowConfig,
    WindowConfigError,
};
