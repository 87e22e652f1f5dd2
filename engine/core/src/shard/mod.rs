//! The engine as several sans-IO shard cores connected by SPSC FIFO queues.
//!
//! Roles: `N` [`IntakeCore`]s (admission, dedup, seqs, routing), `S` [`BuilderShard`]s (one
//! block builder each, over the intents whose keys all live on that shard) and one
//! [`Merger`] (cross-shard intents, the merged block, the auction). A [`WindowClock`] shared
//! by all intakes decides when windows close; [`CloseLeader`] and [`CloseFollower`] are the
//! rules by which it closes them across intakes. `docs/sharding.md` states the rules, the
//! close-marker protocol and the no-loss argument.
//!
//! Nothing here starts a thread or touches a queue implementation: every output goes through
//! a [`Sink`] that may refuse (`Err(Full(value))`, the value handed back) and every input
//! comes from a [`Source`]. [`Pipeline`] wires the cores with bounded `VecDeque`s and a
//! seeded scheduler, for tests and for replaying a failure from its seed.

mod builder;
mod close;
mod intake;
mod merger;
mod msg;
mod pipeline;
mod route;
mod worker;

pub use crate::clock::{WindowClock, WindowClose};
pub use builder::BuilderShard;
pub use close::{CLOSE_LAG_MAX, CloseFollower, CloseLeader, LeaderView, lag_of};
pub use intake::{ClosePending, IntakeCore, PREFETCH_AHEAD};
pub use merger::{Merger, MergerOutput};
pub use msg::{
    BookCancel, Full, INLINE_KEYS, IntakeSink, IntentMsg, MORE_KEYS, MoreKeys, Reassembly, ShardWindow, Sink,
    Source, ToBuilder, ToMerger, slots_for,
};
pub use pipeline::{BoundedQueue, Pipeline, PipelineConfig};
pub use route::{Route, Router, mix64};
pub use worker::{BuildWorker, WORKERS_PER_SHARD_MAX};

use thiserror::Error;

use crate::engine::{EngineConfig, EngineConfigError};
use crate::window::KEYS_PER_INTENT_MAX;

/// The engine configuration plus the shape of the sharded engine.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardConfig {
    /// Window, builder, economics and auction settings, as for the single-threaded engine.
    /// `window.records_max`, `keys_max`, `bids_max` and `book_bids_max` are totals, split
    /// evenly over the intakes (see [`ShardConfig::records_cap`]).
    pub engine: EngineConfig,
    /// Intake cores, `N >= 1`.
    pub intakes_n: usize,
    /// Builder shards, `S >= 1`.
    pub shards_n: usize,
    /// `ShardWindow` buffers per builder shard (windows a shard can have built and not yet
    /// had back from the merger), `>= 1`. Each build worker adds one.
    pub shard_windows_max: usize,
    /// Build workers per shard (`0..=WORKERS_PER_SHARD_MAX`): each builds whole windows of
    /// its shard in parallel with the shard and the other workers ([`BuildWorker`]).
    pub workers_per_shard: usize,
    /// Window closes an intake can hold while one of its queues is full, `>= 1`.
    pub closes_pending_max: usize,
}

/// A shard configuration the engine refuses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShardConfigError {
    #[error(transparent)]
    Engine(#[from] EngineConfigError),
    #[error("intakes_n and shards_n must be at least 1")]
    Count,
    #[error("auction.bids_max must be at least intakes_n (each intake owns a share of the book)")]
    BookShare,
    #[error("shard_windows_max and closes_pending_max must be at least 1")]
    Buffers,
    #[error("workers_per_shard must be at most {WORKERS_PER_SHARD_MAX}")]
    Workers,
}

impl ShardConfig {
    /// A configuration with `intakes_n` intakes and `shards_n` shards over `engine`.
    pub fn new(engine: EngineConfig, intakes_n: usize, shards_n: usize) -> ShardConfig {
        ShardConfig {
            engine,
            intakes_n,
            shards_n,
            shard_windows_max: 2,
            workers_per_shard: 0,
            closes_pending_max: 16,
        }
    }

    /// Checks the engine part as [`crate::Engine::new`] does, and the shard counts.
    pub fn validate(&self) -> Result<(), ShardConfigError> {
        self.engine.window.validate().map_err(EngineConfigError::from)?;
        if self.engine.book_bids_max == 0 {
            return Err(EngineConfigError::BookBidsMax.into());
        }
        self.engine.auction.validate(self.engine.auction.top_k).map_err(EngineConfigError::from)?;
        if self.intakes_n == 0 || self.shards_n == 0 {
            return Err(ShardConfigError::Count);
        }
        if self.engine.book_bids_max < self.intakes_n {
            return Err(ShardConfigError::BookShare);
        }
        if self.shard_windows_max == 0 || self.closes_pending_max == 0 {
            return Err(ShardConfigError::Buffers);
        }
        if self.workers_per_shard > WORKERS_PER_SHARD_MAX {
            return Err(ShardConfigError::Workers);
        }
        Ok(())
    }

    /// Records (intents + bids) one intake admits per window: `records_max / N`, at least 1.
    pub fn records_cap(&self) -> usize {
        (self.engine.window.records_max / self.intakes_n).max(1)
    }

    /// Resource keys one intake admits per window: `keys_max / N`, at least one intent's worth.
    pub fn keys_cap(&self) -> usize {
        (self.engine.window.keys_max / self.intakes_n).max(KEYS_PER_INTENT_MAX)
    }

    /// Bids one intake admits per window: `bids_max / N` (at least 1 unless `bids_max` is 0).
    pub fn bids_cap(&self) -> usize {
        let b = self.engine.window.bids_max;
        if b == 0 { 0 } else { (b / self.intakes_n).max(1) }
    }

    /// Open bids of the book attributed to one intake: `book_bids_max / N`.
    pub fn book_share(&self) -> usize {
        self.engine.book_bids_max / self.intakes_n
    }

    /// Capacity of every window-sized buffer downstream of the intakes (records, keys).
    pub(crate) fn window_capacity(&self) -> (usize, usize) {
        (self.records_cap() * self.intakes_n, self.keys_cap() * self.intakes_n)
    }
}
