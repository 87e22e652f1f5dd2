//! Flashpoint engine core.
//!
//! Everything here is sans-IO: no sockets, no threads, no clock reads. Time comes in as a
//! `now_ns` argument, bytes come in as slices, and results go out through `poll_*` calls or
//! caller-owned buffers. The daemon, the simulator, journal replay and the tests all drive
//! this same code.

pub mod amount;
pub mod auction;
pub mod batch;
pub mod build;

pub use amount::{FeeRate, FeeRateError, MAX_AMOUNT};
pub use auction::{
    AuctionRules, Bid, BidOrder, Book, BookSnapshot, Clearing, ParseRuleError, Pricing, RulesError,
    Winner,
};
pub use batch::{BatchFull, IntentBatch, IntentMeta};
pub use build::{BlockBuilder, BuilderKind, Selection};
