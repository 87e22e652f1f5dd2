//! Sealed-bid auction: the open-bid book and its per-window clearing.
//!
//! Bids enter with [`Book::handle_bid`], may leave early with [`Book::cancel_seq`] /
//! [`Book::cancel_nonce`], and once per window [`Book::clear`] expires stale bids, picks the
//! winners under [`AuctionRules`], prices them and removes them from the book. Losers stay
//! open for the next window. `docs/auction.md` states the rules with a worked example.
//!
//! Sans-IO: time is the `now_ns` argument, output goes into caller-owned buffers
//! ([`Clearing`], [`BookSnapshot`]) that are sized once and reused.

mod book;
mod table;

use std::str::FromStr;

use thiserror::Error;

use crate::amount::MAX_AMOUNT;

pub use book::Book;

/// Largest `top_k_max` a book accepts. Keeps Σ of winner amounts (≤ `top_k × MAX_AMOUNT`)
/// inside `u64`: `2^20 × (2^44 − 1) < 2^64`.
pub const TOP_K_MAX_LIMIT: u32 = 1 << 20;

/// One sealed bid, as the engine accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Bid {
    /// Engine sequence id: unique among open bids, increasing with arrival. Ties in the
    /// ordering go to the lower seq, i.e. the earlier arrival.
    pub seq: u64,
    pub client_id: u64,
    pub nonce: u64,
    /// Bid in minor units, `1..=MAX_AMOUNT`.
    pub amount: u64,
    /// Lower is better under [`BidOrder::PriorityFirst`].
    pub priority: u32,
    /// Engine receive time (ns); compared with `now_ns` for the recency window.
    pub rx_ns: u64,
}

/// The order in which eligible bids are walked to pick winners. Ties always go to the lower
/// seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BidOrder {
    /// Ascending priority, then amount descending, then lower seq.
    #[default]
    PriorityFirst,
    /// Amount descending, then lower seq.
    AmountDescending,
}

impl BidOrder {
    pub const ALL: [BidOrder; 2] = [BidOrder::PriorityFirst, BidOrder::AmountDescending];

    /// The name used in config files and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            BidOrder::PriorityFirst => "priority-first",
            BidOrder::AmountDescending => "amount-desc",
        }
    }

    /// The wire code (`docs/wire.md`, clearing record): 0 priority-first, 1 amount-desc.
    pub const fn code(self) -> u8 {
        match self {
            BidOrder::PriorityFirst => 0,
            BidOrder::AmountDescending => 1,
        }
    }
}

/// What a winner pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Pricing {
    /// Each winner pays its own bid.
    #[default]
    FirstPrice,
    /// One clearing price `P = max(highest eligible losing bid, reserve)`; each winner pays
    /// `min(P, own bid)`.
    Uniform,
}

impl Pricing {
    pub const ALL: [Pricing; 2] = [Pricing::FirstPrice, Pricing::Uniform];

    /// The name used in config files and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Pricing::FirstPrice => "first-price",
            Pricing::Uniform => "uniform",
        }
    }

    /// The wire code (`docs/wire.md`, clearing record): 0 first-price, 1 uniform.
    pub const fn code(self) -> u8 {
        match self {
            Pricing::FirstPrice => 0,
            Pricing::Uniform => 1,
        }
    }
}

/// A config or command-line value that names no known variant.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {field} {value:?}; expected one of: {expected}")]
pub struct ParseRuleError {
    /// The config field being parsed (`order` or `pricing`).
    pub field: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for BidOrder {
    type Err = ParseRuleError;

    fn from_str(s: &str) -> Result<BidOrder, ParseRuleError> {
        BidOrder::ALL.into_iter().find(|o| o.as_str() == s).ok_or_else(|| ParseRuleError {
            field: "order",
            value: s.to_string(),
            expected: "priority-first, amount-desc",
        })
    }
}

impl FromStr for Pricing {
    type Err = ParseRuleError;

    fn from_str(s: &str) -> Result<Pricing, ParseRuleError> {
        Pricing::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| ParseRuleError {
            field: "pricing",
            value: s.to_string(),
            expected: "first-price, uniform",
        })
    }
}

impl std::fmt::Display for BidOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Pricing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one window is cleared. Check with [`AuctionRules::validate`] when loading config;
/// [`Book::clear`] panics on rules that do not validate against its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuctionRules {
    /// Most winners per window, `1..=top_k_max` of the book.
    pub top_k: u32,
    /// Bids below this amount are not eligible (they stay open). `0..=MAX_AMOUNT`.
    pub reserve: u64,
    /// Upper bound on the sum of winners' *bid amounts*; `None` means no cap.
    pub budget_cap: Option<u64>,
    /// Bids older than this at clearing time expire; `None` means bids never expire.
    pub recency_ns: Option<u64>,
    pub order: BidOrder,
    pub pricing: Pricing,
}

impl Default for AuctionRules {
    fn default() -> AuctionRules {
        AuctionRules {
            top_k: 64,
            reserve: 0,
            budget_cap: None,
            recency_ns: None,
            order: BidOrder::PriorityFirst,
            pricing: Pricing::FirstPrice,
        }
    }
}

/// A rule value the engine cannot use; each variant names its field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RulesError {
    #[error("top_k must be at least 1")]
    TopKZero,
    #[error("top_k {top_k} exceeds the book's preallocated top_k_max {top_k_max}")]
    TopKTooLarge { top_k: u32, top_k_max: u32 },
    #[error("reserve {0} exceeds MAX_AMOUNT ({MAX_AMOUNT})")]
    ReserveTooLarge(u64),
    #[error("budget_cap must be at least 1 (leave it unset for no cap)")]
    BudgetCapZero,
    #[error("recency_ns must be at least 1 (leave it unset for no limit)")]
    RecencyZero,
}

impl RulesError {
    /// The config field at fault.
    pub const fn field(&self) -> &'static str {
        match self {
            RulesError::TopKZero | RulesError::TopKTooLarge { .. } => "top_k",
            RulesError::ReserveTooLarge(_) => "reserve",
            RulesError::BudgetCapZero => "budget_cap",
            RulesError::RecencyZero => "recency_ns",
        }
    }
}

impl AuctionRules {
    /// Checks the rules against a book preallocated for `top_k_max` winners
    /// ([`Book::top_k_max`]).
    pub fn validate(&self, top_k_max: u32) -> Result<(), RulesError> {
        if self.top_k == 0 {
            return Err(RulesError::TopKZero);
        }
        if self.top_k > top_k_max {
            return Err(RulesError::TopKTooLarge { top_k: self.top_k, top_k_max });
        }
        if self.reserve > MAX_AMOUNT {
            return Err(RulesError::ReserveTooLarge(self.reserve));
        }
        if self.budget_cap == Some(0) {
            return Err(RulesError::BudgetCapZero);
        }
        if self.recency_ns == Some(0) {
            return Err(RulesError::RecencyZero);
        }
        Ok(())
    }
}

/// One filled bid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Winner {
    pub seq: u64,
    pub client_id: u64,
    pub nonce: u64,
    /// The bid amount.
    pub amount: u64,
    /// What the winner pays; never more than `amount`.
    pub price: u64,
}

/// The result of one [`Book::clear`]. Allocate once with [`Clearing::with_capacity`] and
/// pass the same value to every clear; each clear overwrites it. `clone` keeps the capacity.
#[derive(Debug, PartialEq, Eq)]
pub struct Clearing {
    pub window_id: u64,
    /// Winners in walk order (the rules' [`BidOrder`]).
    pub winners: Vec<Winner>,
    /// `Some(P)` under [`Pricing::Uniform`] (also when nobody won), `None` under first price.
    pub uniform_price: Option<u64>,
    /// Σ of winners' prices.
    pub revenue: u64,
    /// Open bids at or above the reserve after expiry.
    pub eligible_count: usize,
    /// Bids removed because they were older than the recency window.
    pub expired_count: usize,
    /// Bids still open once expired bids and winners are removed.
    pub open_count_after: usize,
}

impl Clone for Clearing {
    fn clone(&self) -> Clearing {
        Clearing { winners: book::clone_with_capacity(&self.winners), ..*self }
    }
}

impl Clearing {
    /// Room for `top_k_max` winners, so clearing never allocates.
    pub fn with_capacity(top_k_max: u32) -> Clearing {
        Clearing {
            window_id: 0,
            winners: Vec::with_capacity(top_k_max as usize),
            uniform_price: None,
            revenue: 0,
            eligible_count: 0,
            expired_count: 0,
            open_count_after: 0,
        }
    }

    fn reset(&mut self, window_id: u64) {
        self.window_id = window_id;
        self.winners.clear();
        self.uniform_price = None;
        self.revenue = 0;
        self.eligible_count = 0;
        self.expired_count = 0;
        self.open_count_after = 0;
    }
}

/// A view of the book: how many bids are open and the best few in some order. Allocate
/// once with [`BookSnapshot::with_capacity`] and reuse with [`Book::snapshot`].
#[derive(Debug)]
pub struct BookSnapshot {
    /// Open bids in the book.
    pub count: usize,
    /// The best `top_n` open bids, best first.
    pub bids: Vec<Bid>,
    /// Bounded max-heap of the best keys seen so far (worst on top); reused between calls.
    heap: std::collections::BinaryHeap<book::Cand>,
    top_n_max: usize,
}

/// Keeps the capacity (see `Clone for Book`).
impl Clone for BookSnapshot {
    fn clone(&self) -> BookSnapshot {
        BookSnapshot {
            count: self.count,
            bids: book::clone_with_capacity(&self.bids),
            heap: std::collections::BinaryHeap::with_capacity(self.top_n_max),
            top_n_max: self.top_n_max,
        }
    }
}

impl BookSnapshot {
    /// Room for up to `top_n_max` bids.
    pub fn with_capacity(top_n_max: usize) -> BookSnapshot {
        BookSnapshot {
            count: 0,
            bids: Vec::with_capacity(top_n_max),
            heap: std::collections::BinaryHeap::with_capacity(top_n_max),
            top_n_max,
        }
    }

    pub fn top_n_max(&self) -> usize {
        self.top_n_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_round_trip() {
        for o in BidOrder::ALL {
            assert_eq!(o.as_str().parse::<BidOrder>(), Ok(o));
        }
        for p in Pricing::ALL {
            assert_eq!(p.as_str().parse::<Pricing>(), Ok(p));
        }
        assert_eq!("amount-desc".parse::<BidOrder>(), Ok(BidOrder::AmountDescending));
        assert_eq!("uniform".parse::<Pricing>(), Ok(Pricing::Uniform));
        let e = "second-price".parse::<Pricing>().unwrap_err();
        assert_eq!(e.field, "pricing");
        assert_eq!(e.to_string(), "unknown pricing \"second-price\"; expected one of: first-price, uniform");
        assert_eq!("Uniform".parse::<Pricing>().unwrap_err().field, "pricing");
        assert_eq!("".parse::<BidOrder>().unwrap_err().field, "order");
    }

    #[test]
    fn default_rules() {
        let r = AuctionRules::default();
        assert_eq!(r.top_k, 64);
        assert_eq!(r.reserve, 0);
        assert_eq!(r.budget_cap, None);
        assert_eq!(r.recency_ns, None);
        assert_eq!(r.order, BidOrder::PriorityFirst);
        assert_eq!(r.pricing, Pricing::FirstPrice);
        assert_eq!(r.validate(64), Ok(()));
    }

    #[test]
    fn validation_names_the_field() {
        let ok = AuctionRules::default();
        let cases = [
            (AuctionRules { top_k: 0, ..ok }, RulesError::TopKZero, "top_k"),
            (
                AuctionRules { top_k: 65, ..ok },
                RulesError::TopKTooLarge { top_k: 65, top_k_max: 64 },
                "top_k",
            ),
            (
                AuctionRules { reserve: MAX_AMOUNT + 1, ..ok },
                RulesError::ReserveTooLarge(MAX_AMOUNT + 1),
                "reserve",
            ),
            (AuctionRules { budget_cap: Some(0), ..ok }, RulesError::BudgetCapZero, "budget_cap"),
            (AuctionRules { recency_ns: Some(0), ..ok }, RulesError::RecencyZero, "recency_ns"),
        ];
        for (rules, err, field) in cases {
            let got = rules.validate(64).unwrap_err();
            assert_eq!(got, err);
            assert_eq!(got.field(), field);
        }
        // Boundaries that are fine.
        let edge =
            AuctionRules { top_k: 64, reserve: MAX_AMOUNT, budget_cap: Some(1), recency_ns: Some(1), ..ok };
        assert_eq!(edge.validate(64), Ok(()));
        assert!(RulesError::TopKTooLarge { top_k: 65, top_k_max: 64 }.to_string().contains("top_k_max 64"));
    }
}
