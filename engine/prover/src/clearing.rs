//! The clearing circuit: a block's fee split and an auction's revenue, against commitments to
//! the padded entries and winners. The statement is fixed in `docs/proofs.md`.

use ark_crypto_primitives::sponge::{
    constraints::CryptographicSpongeVar, poseidon::constraints::PoseidonSpongeVar,
};
use ark_ff::{Field, PrimeField};
use ark_r1cs_std::{alloc::AllocVar, boolean::Boolean, eq::EqGadget, fields::FieldVar, fields::fp::FpVar};
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};
use thiserror::Error;

use crate::Fr;
use crate::gadgets::{enforce_bits, enforce_boolean};
use crate::poseidon::{self, ENTRIES_TAG, WINNERS_TAG};

/// Entry slots in the circuit (padding fills the rest).
pub const BLOCK_ENTRIES_MAX: usize = 64;
/// Winner slots in the circuit.
pub const WINNERS_MAX: usize = 16;
/// Every amount is below `2^AMOUNT_BITS`.
pub const AMOUNT_BITS: usize = 44;
/// The largest amount, equal to `fpn_wire::MAX_AMOUNT`.
pub const MAX_AMOUNT: u64 = (1 << AMOUNT_BITS) - 1;
/// Parts per million in one whole: `fee = floor(fee_ppm · surplus / PPM_ONE)`.
pub const PPM_ONE: u64 = 1_000_000;
/// `AuctionWitness::pricing` for first-price (each winner pays its bid).
pub const PRICING_FIRST_PRICE: u8 = 0;
/// `AuctionWitness::pricing` for uniform pricing (each winner pays `min(P, bid)`).
pub const PRICING_UNIFORM: u8 = 1;
/// Public inputs of the clearing circuit, in the order of [`ClearingPublic::to_field_elements`].
pub const PUBLIC_INPUTS_COUNT: usize = 12;
/// Windows one proof may cover (a span, `docs/proofs.md`): `windows_count` is in
/// `1..=SPAN_WINDOWS_MAX`. Empty windows inside a span count, so the bound is generous: 1,024
/// windows of 20 ms are about 20 s.
pub const SPAN_WINDOWS_MAX: u32 = 1_024;

/// Bits for `u64` quantities (sequence numbers, totals, the fee).
const U64_BITS: usize = 64;
/// `PPM_ONE < 2^20`.
const PPM_BITS: usize = 20;
/// `SPAN_WINDOWS_MAX · PPM_ONE < 2^30`: the bound of the fee remainder of a span.
const SPAN_REM_BITS: usize = 30;
/// `SPAN_WINDOWS_MAX − 1 < 2^10`.
const SPAN_BITS: usize = 10;

/// One entry of the block, in block order (ascending `seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryWitness {
    pub seq: u64,
    pub profit: u64,
    pub payout: u64,
}

/// One auction winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WinnerWitness {
    pub seq: u64,
    /// The winning bid.
    pub amount: u64,
    /// What the winner pays.
    pub price: u64,
}

/// The auction of the window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuctionWitness {
    /// [`PRICING_FIRST_PRICE`] or [`PRICING_UNIFORM`].
    pub pricing: u8,
    pub reserve: u64,
    /// Uniform pricing: `P`, the clearing price before the per-winner cap. First-price: 0.
    pub uniform_price: u64,
    pub winners: Vec<WinnerWitness>,
}

/// Everything the prover knows about one window's clearing, or about a span of
/// `windows_count` consecutive windows ending at `window_id` (entries and winners of the
/// windows concatenated in window order, totals summed; `docs/proofs.md`, "Spans"). Plain
/// integers: the engine converts its own types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingWitness {
    /// The window, or the last window of the span.
    pub window_id: u64,
    /// `1` for one window; `n` for the span `window_id − n + 1 ..= window_id`.
    pub windows_count: u32,
    pub fee_ppm: u32,
    pub fifo_total: u64,
    /// At most [`BLOCK_ENTRIES_MAX`], ascending `seq`.
    pub entries: Vec<EntryWitness>,
    pub auction: AuctionWitness,
}

impl Default for ClearingWitness {
    /// The empty window 0 (one window, no entries, no winners, first-price).
    fn default() -> ClearingWitness {
        ClearingWitness {
            window_id: 0,
            windows_count: 1,
            fee_ppm: 0,
            fifo_total: 0,
            entries: Vec::new(),
            auction: AuctionWitness::default(),
        }
    }
}

/// The public inputs of the clearing circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClearingPublic {
    pub window_id: u64,
    pub fee_ppm: u32,
    pub fifo_total: u64,
    /// `Σ profit`.
    pub total: u64,
    /// `floor(fee_ppm · (total − fifo_total) / 10^6)`.
    pub fee: u64,
    /// [`crate::entries_commitment`] of the entries.
    pub entries_commitment: Fr,
    pub pricing: u8,
    pub reserve: u64,
    pub uniform_price: u64,
    /// `Σ price` over the winners.
    pub revenue: u64,
    /// [`crate::winners_commitment`] of the winners.
    pub winners_commitment: Fr,
    /// Windows covered: `window_id − windows_count + 1 ..= window_id`.
    pub windows_count: u32,
}

/// A witness that breaks the statement: proving it would fail, so it is refused up front.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WitnessError {
    #[error(
        "windows_count {windows_count} for window {window_id}: must be in 1..={SPAN_WINDOWS_MAX} and at most window_id + 1"
    )]
    SpanOutOfRange { window_id: u64, windows_count: u32 },
    #[error(
        "span of {windows_count} windows: fee {fee} is not within {windows_count} of floor(fee_ppm {fee_ppm} x surplus {surplus} / 10^6)"
    )]
    SpanFeeOutOfRange { windows_count: u32, fee: u64, fee_ppm: u32, surplus: u64 },
    #[error("{what} count {count} exceeds the circuit capacity {max}")]
    CapacityExceeded { what: &'static str, count: usize, max: usize },
    #[error("fee_ppm {0} exceeds {PPM_ONE}")]
    FeeRateOutOfRange(u32),
    #[error("{what} {value} exceeds MAX_AMOUNT {MAX_AMOUNT}")]
    AmountOutOfRange { what: &'static str, value: u64 },
    #[error("entry seq {seq}: payout {payout} exceeds profit {profit}")]
    PayoutExceedsProfit { seq: u64, profit: u64, payout: u64 },
    #[error("entry seqs are not strictly ascending: {prev} then {next}")]
    SeqNotAscending { prev: u64, next: u64 },
    #[error("fifo_total {fifo_total} exceeds the block total {total}")]
    FifoExceedsTotal { fifo_total: u64, total: u64 },
    #[error("payouts sum to {payouts} and the fee is {fee}, but the block total is {total}")]
    PayoutSumMismatch { payouts: u64, fee: u64, total: u64 },
    #[error("pricing {0} is neither 0 (first-price) nor 1 (uniform)")]
    UnknownPricing(u8),
    #[error("first-price auction with uniform_price {0} (must be 0)")]
    UniformPriceInFirstPrice(u64),
    #[error("uniform price {price} is below the reserve {reserve}")]
    UniformPriceBelowReserve { price: u64, reserve: u64 },
    #[error("winner seq {seq}: amount {amount} is below the reserve {reserve}")]
    BidBelowReserve { seq: u64, amount: u64, reserve: u64 },
    #[error("winner seq {seq}: price {price}, the pricing rule gives {expected}")]
    WrongPrice { seq: u64, price: u64, expected: u64 },
}

impl ClearingWitness {
    /// Checks the witness against the statement and computes the public inputs.
    pub fn check(&self) -> Result<ClearingPublic, WitnessError> {
        if self.entries.len() > BLOCK_ENTRIES_MAX {
            return Err(WitnessError::CapacityExceeded {
                what: "entries",
                count: self.entries.len(),
                max: BLOCK_ENTRIES_MAX,
            });
        }
        let auction = &self.auction;
        if auction.winners.len() > WINNERS_MAX {
            return Err(WitnessError::CapacityExceeded {
                what: "winners",
                count: auction.winners.len(),
                max: WINNERS_MAX,
            });
        }
        if u64::from(self.fee_ppm) > PPM_ONE {
            return Err(WitnessError::FeeRateOutOfRange(self.fee_ppm));
        }
        let n = self.windows_count;
        if n == 0 || n > SPAN_WINDOWS_MAX || u64::from(n - 1) > self.window_id {
            return Err(WitnessError::SpanOutOfRange { window_id: self.window_id, windows_count: n });
        }
        let amount = |what: &'static str, value: u64| {
            if value > MAX_AMOUNT { Err(WitnessError::AmountOutOfRange { what, value }) } else { Ok(()) }
        };
        // Sums cannot overflow: at most 64 terms below 2^44.
        let mut total = 0u64;
        let mut payouts = 0u64;
        let mut prev_seq: Option<u64> = None;
        for e in &self.entries {
            amount("profit", e.profit)?;
            amount("payout", e.payout)?;
            if e.payout > e.profit {
                return Err(WitnessError::PayoutExceedsProfit {
                    seq: e.seq,
                    profit: e.profit,
                    payout: e.payout,
                });
            }
            if let Some(prev) = prev_seq
                && e.seq <= prev
            {
                return Err(WitnessError::SeqNotAscending { prev, next: e.seq });
            }
            prev_seq = Some(e.seq);
            total += e.profit;
            payouts += e.payout;
        }
        let Some(surplus) = total.checked_sub(self.fifo_total) else {
            return Err(WitnessError::FifoExceedsTotal { fifo_total: self.fifo_total, total });
        };
        let product = u128::from(surplus) * u128::from(self.fee_ppm);
        let floor_fee = (product / u128::from(PPM_ONE)) as u64;
        let fee = if n == 1 {
            // One window: the fee is the floor.
            if payouts + floor_fee != total {
                return Err(WitnessError::PayoutSumMismatch { payouts, fee: floor_fee, total });
            }
            floor_fee
        } else {
            // A span: the fee is the sum of the windows' floors, which lies in
            // (product/10^6 − n, product/10^6]: 0 ≤ product − fee·10^6 < n·10^6.
            let Some(fee) = total.checked_sub(payouts) else {
                return Err(WitnessError::PayoutSumMismatch { payouts, fee: floor_fee, total });
            };
            let scaled = u128::from(fee) * u128::from(PPM_ONE);
            if scaled > product || product - scaled >= u128::from(n) * u128::from(PPM_ONE) {
                return Err(WitnessError::SpanFeeOutOfRange {
                    windows_count: n,
                    fee,
                    fee_ppm: self.fee_ppm,
                    surplus,
                });
            }
            fee
        };

        amount("reserve", auction.reserve)?;
        amount("uniform_price", auction.uniform_price)?;
        match auction.pricing {
            PRICING_FIRST_PRICE if auction.uniform_price != 0 => {
                return Err(WitnessError::UniformPriceInFirstPrice(auction.uniform_price));
            }
            PRICING_FIRST_PRICE => {}
            PRICING_UNIFORM if auction.uniform_price < auction.reserve => {
                return Err(WitnessError::UniformPriceBelowReserve {
                    price: auction.uniform_price,
                    reserve: auction.reserve,
                });
            }
            PRICING_UNIFORM => {}
            other => return Err(WitnessError::UnknownPricing(other)),
        }
        let mut revenue = 0u64;
        for w in &auction.winners {
            amount("winner amount", w.amount)?;
            if w.amount < auction.reserve {
                return Err(WitnessError::BidBelowReserve {
                    seq: w.seq,
                    amount: w.amount,
                    reserve: auction.reserve,
                });
            }
            let expected = if auction.pricing == PRICING_UNIFORM {
                auction.uniform_price.min(w.amount)
            } else {
                w.amount
            };
            if w.price != expected {
                return Err(WitnessError::WrongPrice { seq: w.seq, price: w.price, expected });
            }
            revenue += w.price;
        }

        Ok(ClearingPublic {
            window_id: self.window_id,
            fee_ppm: self.fee_ppm,
            fifo_total: self.fifo_total,
            total,
            fee,
            entries_commitment: poseidon::entries_commitment(
                self.window_id,
                &self.entries,
                BLOCK_ENTRIES_MAX,
            ),
            pricing: auction.pricing,
            reserve: auction.reserve,
            uniform_price: auction.uniform_price,
            revenue,
            winners_commitment: poseidon::winners_commitment(self.window_id, &auction.winners, WINNERS_MAX),
            windows_count: n,
        })
    }
}

impl ClearingPublic {
    /// The public inputs in circuit order: `window_id, fee_ppm, fifo_total, total, fee,
    /// entries_commitment, pricing, reserve, uniform_price, revenue, winners_commitment,
    /// windows_count`.
    pub fn to_field_elements(&self) -> [Fr; PUBLIC_INPUTS_COUNT] {
        [
            Fr::from(self.window_id),
            Fr::from(self.fee_ppm),
            Fr::from(self.fifo_total),
            Fr::from(self.total),
            Fr::from(self.fee),
            self.entries_commitment,
            Fr::from(self.pricing),
            Fr::from(self.reserve),
            Fr::from(self.uniform_price),
            Fr::from(self.revenue),
            self.winners_commitment,
            Fr::from(self.windows_count),
        ]
    }

    /// The inverse of [`ClearingPublic::to_field_elements`]; `None` if the count is wrong or
    /// an integer input does not fit its type.
    pub fn from_field_elements(inputs: &[Fr]) -> Option<ClearingPublic> {
        if inputs.len() != PUBLIC_INPUTS_COUNT {
            return None;
        }
        let int = |f: &Fr| -> Option<u64> {
            let big = f.into_bigint();
            if big.0[1..].iter().any(|&limb| limb != 0) {
                return None;
            }
            Some(big.0[0])
        };
        Some(ClearingPublic {
            window_id: int(&inputs[0])?,
            fee_ppm: u32::try_from(int(&inputs[1])?).ok()?,
            fifo_total: int(&inputs[2])?,
            total: int(&inputs[3])?,
            fee: int(&inputs[4])?,
            entries_commitment: inputs[5],
            pricing: u8::try_from(int(&inputs[6])?).ok()?,
            reserve: int(&inputs[7])?,
            uniform_price: int(&inputs[8])?,
            revenue: int(&inputs[9])?,
            winners_commitment: inputs[10],
            windows_count: u32::try_from(int(&inputs[11])?).ok()?,
        })
    }
}

/// The clearing circuit at capacity [`BLOCK_ENTRIES_MAX`] entries and [`WINNERS_MAX`] winners.
///
/// [`ClearingCircuit::new`] checks the witness; [`ClearingCircuit::new_unchecked`] takes any
/// witness and claimed public inputs, so tests can show the constraints themselves reject what
/// the pre-check rejects.
#[derive(Debug, Clone)]
pub struct ClearingCircuit {
    witness: ClearingWitness,
    public: ClearingPublic,
}

impl ClearingCircuit {
    pub fn new(witness: ClearingWitness) -> Result<ClearingCircuit, WitnessError> {
        let public = witness.check()?;
        Ok(ClearingCircuit { witness, public })
    }

    /// A circuit with arbitrary (possibly unsatisfying) values. Slots beyond the capacity are
    /// ignored.
    pub fn new_unchecked(witness: ClearingWitness, public: ClearingPublic) -> ClearingCircuit {
        ClearingCircuit { witness, public }
    }

    /// The circuit used for key generation: an empty window (the shape does not depend on the
    /// values).
    pub fn blank() -> ClearingCircuit {
        ClearingCircuit::new(ClearingWitness::default()).expect("the empty clearing is valid")
    }

    pub fn public(&self) -> &ClearingPublic {
        &self.public
    }
}

fn constant(value: u64) -> FpVar<Fr> {
    FpVar::Constant(Fr::from(value))
}

fn pow2(bits: usize) -> Fr {
    Fr::from(2u64).pow([bits as u64])
}

/// `seq · 2^88 + hi · 2^44 + lo` as a linear combination (no constraint).
fn pack(seq: &FpVar<Fr>, hi: &FpVar<Fr>, lo: &FpVar<Fr>) -> FpVar<Fr> {
    seq * pow2(2 * AMOUNT_BITS) + hi * pow2(AMOUNT_BITS) + lo
}

/// Allocates the "slot is real" flags for `count` real slots out of `slots` and enforces that
/// they are boolean and non-increasing (real slots first, padding after). Returns the flags.
fn alloc_active_flags(
    cs: &ConstraintSystemRef<Fr>,
    count: usize,
    slots: usize,
) -> Result<Vec<FpVar<Fr>>, SynthesisError> {
    let mut flags: Vec<FpVar<Fr>> = Vec::with_capacity(slots);
    for i in 0..slots {
        let flag: FpVar<Fr> = Boolean::new_witness(cs.clone(), || Ok(i < count))?.into();
        if let Some(prev) = flags.last() {
            // flag_i · (1 − flag_{i−1}) = 0
            flag.mul_equals(&(FpVar::one() - prev), &FpVar::zero())?;
        }
        flags.push(flag);
    }
    Ok(flags)
}

fn commit(
    cs: &ConstraintSystemRef<Fr>,
    tag: u64,
    window_id: &FpVar<Fr>,
    count: FpVar<Fr>,
    packed: Vec<FpVar<Fr>>,
) -> Result<FpVar<Fr>, SynthesisError> {
    let mut elements = Vec::with_capacity(packed.len() + 3);
    elements.push(constant(tag));
    elements.push(window_id.clone());
    elements.push(count);
    elements.extend(packed);
    let mut sponge = PoseidonSpongeVar::new(cs.clone(), poseidon::config());
    sponge.absorb(&elements)?;
    Ok(sponge.squeeze_field_elements(1)?.remove(0))
}

impl ConstraintSynthesizer<Fr> for ClearingCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let w = &self.witness;
        let p = &self.public;
        let input = |value: Fr| FpVar::new_input(cs.clone(), || Ok(value));
        let witness = |value: u64| FpVar::new_witness(cs.clone(), || Ok(Fr::from(value)));

        // Public inputs, in the order of `ClearingPublic::to_field_elements`.
        let [
            window_id,
            fee_ppm,
            fifo_total,
            total,
            fee,
            entries_commitment,
            pricing,
            reserve,
            uniform_price,
            revenue,
            winners_commitment,
            windows_count,
        ] = p.to_field_elements().map(input);
        let (window_id, fee_ppm, fifo_total, total, fee) = (window_id?, fee_ppm?, fifo_total?, total?, fee?);
        let (entries_commitment, pricing, reserve, uniform_price, revenue, winners_commitment) =
            (entries_commitment?, pricing?, reserve?, uniform_price?, revenue?, winners_commitment?);
        let windows_count = windows_count?;

        // Ranges of the public integers the arithmetic below relies on.
        enforce_bits(&fee_ppm, PPM_BITS)?;
        enforce_bits(&(constant(PPM_ONE) - &fee_ppm), PPM_BITS)?;
        enforce_bits(&fifo_total, U64_BITS)?;
        enforce_bits(&fee, U64_BITS)?;
        enforce_bits(&reserve, AMOUNT_BITS)?;
        enforce_bits(&uniform_price, AMOUNT_BITS)?;
        enforce_boolean(&pricing)?;
        // 1 ≤ windows_count ≤ 1024, and the span starts at window 0 or later.
        enforce_bits(&(&windows_count - FpVar::one()), SPAN_BITS)?;
        enforce_bits(&(&window_id - &windows_count + FpVar::one()), U64_BITS)?;

        // Entries.
        let entries_count = w.entries.len().min(BLOCK_ENTRIES_MAX);
        let active = alloc_active_flags(&cs, entries_count, BLOCK_ENTRIES_MAX)?;
        let mut packed = Vec::with_capacity(BLOCK_ENTRIES_MAX);
        let mut profit_sum = FpVar::zero();
        let mut payout_sum = FpVar::zero();
        let mut prev_seq: Option<FpVar<Fr>> = None;
        for (i, flag) in active.iter().enumerate() {
            let e = w.entries.get(i).copied().unwrap_or_default();
            let seq = witness(e.seq)?;
            let profit = witness(e.profit)?;
            let payout = witness(e.payout)?;
            enforce_bits(&seq, U64_BITS)?;
            enforce_bits(&profit, AMOUNT_BITS)?;
            enforce_bits(&payout, AMOUNT_BITS)?;
            // payout ≤ profit
            enforce_bits(&(&profit - &payout), AMOUNT_BITS)?;
            if let Some(prev) = &prev_seq {
                // A real entry's seq exceeds its predecessor's (which is real too, as the flags
                // do not increase): flag · (seq − prev − 1) ∈ [0, 2^64).
                let gap = flag * (&seq - prev - FpVar::one());
                enforce_bits(&gap, U64_BITS)?;
            }
            let slot = pack(&seq, &profit, &payout);
            // Padding slots are all zero: (1 − flag) · pack = 0.
            slot.mul_equals(&(FpVar::one() - flag), &FpVar::zero())?;
            profit_sum += &profit;
            payout_sum += &payout;
            packed.push(slot);
            prev_seq = Some(seq);
        }
        let count = active.iter().fold(FpVar::zero(), |acc, f| acc + f);
        commit(&cs, ENTRIES_TAG, &window_id, count, packed)?.enforce_equal(&entries_commitment)?;

        // total = Σ profit; surplus = total − fifo_total ≥ 0 (fits 64 bits, so no wrap-around:
        // total < 2^50 and fifo_total < 2^64).
        total.enforce_equal(&profit_sum)?;
        let surplus = &total - &fifo_total;
        enforce_bits(&surplus, U64_BITS)?;
        // fee_ppm · surplus = fee · 10^6 + rem, 0 ≤ rem < n · 10^6 (n = windows_count): for one
        // window fee = floor(fee_ppm · surplus / 10^6); for a span, the fee is within n of it,
        // as the sum of n floors is. Both sides stay below 2^84 as integers (rem < 2^30), so
        // the field equation is exact.
        let ppm_one = Fr::from(PPM_ONE);
        let product = Fr::from(p.fee_ppm) * (Fr::from(p.total) - Fr::from(p.fifo_total));
        let rem_value = {
            let big = (product - Fr::from(p.fee) * ppm_one).into_bigint();
            big.0[0]
        };
        let rem = witness(rem_value)?;
        enforce_bits(&rem, SPAN_REM_BITS)?;
        enforce_bits(&(&windows_count * ppm_one - FpVar::one() - &rem), SPAN_REM_BITS)?;
        fee_ppm.mul_equals(&surplus, &(&fee * ppm_one + &rem))?;
        // Σ payout + fee = total.
        (payout_sum + &fee).enforce_equal(&total)?;

        // Auction. First-price: P = 0. Uniform: P ≥ reserve.
        (FpVar::one() - &pricing).mul_equals(&uniform_price, &FpVar::zero())?;
        enforce_bits(&(&pricing * (&uniform_price - &reserve)), AMOUNT_BITS)?;
        let auction = &w.auction;
        let winners_count = auction.winners.len().min(WINNERS_MAX);
        let active = alloc_active_flags(&cs, winners_count, WINNERS_MAX)?;
        let mut packed = Vec::with_capacity(WINNERS_MAX);
        let mut price_sum = FpVar::zero();
        for (j, flag) in active.iter().enumerate() {
            let win = auction.winners.get(j).copied().unwrap_or_default();
            let seq = witness(win.seq)?;
            let amount = witness(win.amount)?;
            enforce_bits(&seq, U64_BITS)?;
            enforce_bits(&amount, AMOUNT_BITS)?;
            // A real winner bids at least the reserve: amount − flag · reserve ≥ 0.
            enforce_bits(&(&amount - flag * &reserve), AMOUNT_BITS)?;
            // b = [P ≤ amount], t = b · (amount − P); then
            // 2t + P − amount − 1 + b is amount − P when b = 1 and P − amount − 1 when b = 0,
            // so its range check proves b right. min(P, amount) = amount − t.
            let below = Boolean::new_witness(cs.clone(), || Ok(auction.uniform_price <= win.amount))?;
            let below: FpVar<Fr> = below.into();
            let t = &below * (&amount - &uniform_price);
            let cmp = t.double()? + &uniform_price - &amount - FpVar::one() + &below;
            enforce_bits(&cmp, AMOUNT_BITS)?;
            // price = amount − pricing · t: the bid (first-price) or min(P, bid) (uniform).
            // Below 2^44 because both candidates are.
            let price = &amount - &pricing * &t;
            let slot = pack(&seq, &amount, &price);
            slot.mul_equals(&(FpVar::one() - flag), &FpVar::zero())?;
            price_sum += &price;
            packed.push(slot);
        }
        revenue.enforce_equal(&price_sum)?;
        let count = active.iter().fold(FpVar::zero(), |acc, f| acc + f);
        commit(&cs, WINNERS_TAG, &window_id, count, packed)?.enforce_equal(&winners_commitment)?;
        Ok(())
    }
}

impl ClearingWitness {
    /// A small valid witness for examples, tests and benches: three entries (61 padding
    /// slots) and two uniform-price winners (14 padding slots); total 4,200, FIFO 1,200,
    /// surplus 3,000, fee 10 % = 300.
    pub fn sample() -> ClearingWitness {
        ClearingWitness {
            window_id: 42,
            windows_count: 1,
            fee_ppm: 100_000,
            fifo_total: 1_200,
            entries: vec![
                EntryWitness { seq: 3, profit: 1_000, payout: 900 },
                EntryWitness { seq: 5, profit: 2_500, payout: 2_300 },
                EntryWitness { seq: 11, profit: 700, payout: 700 },
            ],
            auction: AuctionWitness {
                pricing: PRICING_UNIFORM,
                reserve: 100,
                uniform_price: 500,
                winners: vec![
                    WinnerWitness { seq: 7, amount: 800, price: 500 },
                    WinnerWitness { seq: 9, amount: 300, price: 300 },
                ],
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ark_relations::gr1cs::ConstraintSystem;

    pub(crate) fn sample() -> ClearingWitness {
        ClearingWitness::sample()
    }

    /// Runs the constraints (no proving) and reports whether they hold.
    pub(crate) fn satisfied(circuit: ClearingCircuit) -> bool {
        let cs = ConstraintSystem::<Fr>::new_ref();
        circuit.generate_constraints(cs.clone()).unwrap();
        cs.finalize();
        cs.is_satisfied().unwrap()
    }

    fn unchecked(witness: ClearingWitness, edit: impl FnOnce(&mut ClearingPublic)) -> bool {
        let mut public = sample().check().unwrap();
        edit(&mut public);
        // Keep the commitments consistent with the witness, so only the edited relation can
        // be what fails.
        public.entries_commitment =
            poseidon::entries_commitment(witness.window_id, &witness.entries, BLOCK_ENTRIES_MAX);
        public.winners_commitment =
            poseidon::winners_commitment(witness.window_id, &witness.auction.winners, WINNERS_MAX);
        satisfied(ClearingCircuit::new_unchecked(witness, public))
    }

    #[test]
    fn sample_public_inputs() {
        let p = sample().check().unwrap();
        assert_eq!((p.total, p.fee, p.revenue), (4_200, 300, 800));
        assert_eq!(ClearingPublic::from_field_elements(&p.to_field_elements()), Some(p));
    }

    #[test]
    fn valid_witnesses_satisfy_the_constraints() {
        assert!(satisfied(ClearingCircuit::new(sample()).unwrap()));
        assert!(satisfied(ClearingCircuit::blank()));
        let mut first_price = sample();
        first_price.auction.pricing = PRICING_FIRST_PRICE;
        first_price.auction.uniform_price = 0;
        for w in &mut first_price.auction.winners {
            w.price = w.amount;
        }
        assert!(satisfied(ClearingCircuit::new(first_price).unwrap()));
        // Uniform price equal to a bid, and P = reserve.
        let mut edge = sample();
        edge.auction.uniform_price = 300;
        edge.auction.reserve = 300;
        edge.auction.winners[0].price = 300;
        assert!(satisfied(ClearingCircuit::new(edge).unwrap()));
        assert!(satisfied(ClearingCircuit::new(full_capacity()).unwrap()));
    }

    /// Every slot used, amounts at the limit.
    pub(crate) fn full_capacity() -> ClearingWitness {
        let entries: Vec<EntryWitness> = (0..BLOCK_ENTRIES_MAX as u64)
            .map(|i| EntryWitness {
                seq: u64::MAX - 1_000 + i * 7,
                profit: MAX_AMOUNT - i,
                payout: MAX_AMOUNT - i - 1_000,
            })
            .collect();
        let payouts: u64 = entries.iter().map(|e| e.payout).sum();
        // At a fee rate of one the fee is the whole surplus, total − payouts = 64_000.
        let fifo_total = payouts;
        let winners = (0..WINNERS_MAX as u64)
            .map(|j| {
                let amount = MAX_AMOUNT - j * 1_000_000;
                WinnerWitness { seq: j, amount, price: amount.min(MAX_AMOUNT - 5_000_000) }
            })
            .collect();
        ClearingWitness {
            window_id: u64::MAX,
            windows_count: 1,
            fee_ppm: 1_000_000,
            fifo_total,
            entries,
            auction: AuctionWitness {
                pricing: PRICING_UNIFORM,
                reserve: MAX_AMOUNT - 20_000_000,
                uniform_price: MAX_AMOUNT - 5_000_000,
                winners,
            },
        }
    }

    #[test]
    fn constraint_budget() {
        let (constraints, inputs, witnesses) = crate::constraint_counts(ClearingCircuit::blank()).unwrap();
        println!(
            "clearing circuit ({BLOCK_ENTRIES_MAX} entries, {WINNERS_MAX} winners): \
             {constraints} constraints, {inputs} instance variables, {witnesses} witness variables"
        );
        assert_eq!(inputs, PUBLIC_INPUTS_COUNT + 1);
        assert!(constraints + inputs <= crate::DOMAIN_SIZE_MAX);
    }

    #[test]
    fn pre_check_rejects_broken_witnesses() {
        let reject = |edit: fn(&mut ClearingWitness)| {
            let mut w = sample();
            edit(&mut w);
            w.check().unwrap_err()
        };
        assert!(matches!(
            reject(|w| w.entries = vec![EntryWitness { seq: 0, profit: 0, payout: 0 }; 65]
                .into_iter()
                .enumerate()
                .map(|(i, e)| EntryWitness { seq: i as u64, ..e })
                .collect()),
            WitnessError::CapacityExceeded { what: "entries", count: 65, max: 64 }
        ));
        assert!(matches!(
            reject(|w| w.auction.winners = vec![WinnerWitness { seq: 0, amount: 500, price: 500 }; 17]),
            WitnessError::CapacityExceeded { what: "winners", .. }
        ));
        assert_eq!(reject(|w| w.fee_ppm = 1_000_001), WitnessError::FeeRateOutOfRange(1_000_001));
        assert!(matches!(
            reject(|w| w.entries[0].profit = MAX_AMOUNT + 1),
            WitnessError::AmountOutOfRange { what: "profit", .. }
        ));
        assert!(matches!(
            reject(|w| w.entries[2].payout = 701),
            WitnessError::PayoutExceedsProfit { seq: 11, .. }
        ));
        assert_eq!(reject(|w| w.entries[1].seq = 3), WitnessError::SeqNotAscending { prev: 3, next: 3 });
        assert!(matches!(reject(|w| w.fifo_total = 4_201), WitnessError::FifoExceedsTotal { .. }));
        assert_eq!(
            reject(|w| w.entries[0].payout = 899),
            WitnessError::PayoutSumMismatch { payouts: 3_899, fee: 300, total: 4_200 }
        );
        assert_eq!(reject(|w| w.auction.pricing = 2), WitnessError::UnknownPricing(2));
        assert_eq!(
            reject(|w| w.auction.pricing = PRICING_FIRST_PRICE),
            WitnessError::UniformPriceInFirstPrice(500)
        );
        assert!(matches!(reject(|w| w.auction.reserve = 501), WitnessError::UniformPriceBelowReserve { .. }));
        assert!(matches!(
            reject(|w| w.auction.winners[1].amount = 99),
            WitnessError::BidBelowReserve { seq: 9, .. }
        ));
        assert_eq!(
            reject(|w| w.auction.winners[0].price = 800),
            WitnessError::WrongPrice { seq: 7, price: 800, expected: 500 }
        );
    }

    /// Two windows at a 10 % fee: surpluses 15 and 15 give fees 1 + 1 = 2, while the floor of
    /// the summed surplus is 3.
    fn span_of_two() -> ClearingWitness {
        ClearingWitness {
            window_id: 8,
            windows_count: 2,
            fee_ppm: 100_000,
            fifo_total: 0,
            entries: vec![
                EntryWitness { seq: 1, profit: 15, payout: 14 },
                EntryWitness { seq: 4, profit: 15, payout: 14 },
            ],
            auction: AuctionWitness::default(),
        }
    }

    #[test]
    fn spans_prove_summed_fees_within_the_window_count() {
        let span = span_of_two();
        let public = span.check().unwrap();
        assert_eq!((public.fee, public.windows_count), (2, 2));
        assert!(satisfied(ClearingCircuit::new(span.clone()).unwrap()));
        // The same numbers as one window break the fee rule, natively and in the constraints.
        let mut one = span.clone();
        one.windows_count = 1;
        assert!(matches!(one.check(), Err(WitnessError::PayoutSumMismatch { .. })));
        let mut claimed = public;
        claimed.windows_count = 1;
        assert!(!satisfied(ClearingCircuit::new_unchecked(one, claimed)));
        // fee 3 (the floor of the sum) is within range too; fee 1 and fee 4 are not.
        for (payout, ok) in [(14, true), (13, true), (15, false)] {
            let mut w = span.clone();
            w.entries[1].payout = payout;
            assert_eq!(w.check().is_ok(), ok, "payout {payout}");
        }
        let mut w = span.clone();
        w.entries[0].payout = 15;
        w.entries[1].payout = 14;
        assert!(matches!(w.check(), Err(WitnessError::SpanFeeOutOfRange { fee: 1, .. })));
        let mut w = span.clone();
        w.entries[0].payout = 13;
        w.entries[1].payout = 13;
        assert!(matches!(w.check(), Err(WitnessError::SpanFeeOutOfRange { fee: 4, .. })));
        // The constraints refuse a fee one below the range (fee 1, payouts adjusted).
        let mut w = span.clone();
        w.entries[0].payout = 15;
        let mut claimed = public;
        claimed.fee = 1;
        assert!(!satisfied(ClearingCircuit::new_unchecked(w, claimed)));
        // Span bounds.
        for (window_id, windows_count) in [(8, 0), (100, SPAN_WINDOWS_MAX + 1), (0, 2)] {
            let w = ClearingWitness { window_id, windows_count, ..span.clone() };
            assert!(
                matches!(w.check(), Err(WitnessError::SpanOutOfRange { .. })),
                "{window_id} {windows_count}"
            );
        }
        for windows_count in [0, SPAN_WINDOWS_MAX + 1] {
            let mut claimed = public;
            claimed.windows_count = windows_count;
            assert!(!satisfied(ClearingCircuit::new_unchecked(span.clone(), claimed)), "{windows_count}");
        }
    }

    #[test]
    fn honest_unchecked_circuit_is_satisfied() {
        // The control for the tests below: the harness itself does not break anything.
        assert!(unchecked(sample(), |_| {}));
    }

    #[test]
    fn constraints_reject_what_the_pre_check_rejects() {
        // Fee one too high, payouts adjusted so Σ payout + fee = total still holds.
        let mut w = sample();
        w.entries[0].payout -= 1;
        assert!(!unchecked(w, |p| p.fee += 1));
        // Fee one too low.
        let mut w = sample();
        w.entries[0].payout += 1;
        assert!(!unchecked(w, |p| p.fee -= 1));
        // Payout above profit (sums still balanced by lowering another payout).
        let mut w = sample();
        w.entries[2].payout += 1;
        w.entries[1].payout -= 1;
        assert!(!unchecked(w, |_| {}));
        // Seqs not ascending.
        let mut w = sample();
        w.entries[2].seq = 5;
        assert!(!unchecked(w, |_| {}));
        // fifo_total above the total.
        assert!(!unchecked(sample(), |p| p.fifo_total = 4_201));
        // Wrong total.
        assert!(!unchecked(sample(), |p| p.total += 1));
        // Winner below the reserve (uniform price capped at its bid).
        let mut w = sample();
        w.auction.winners[1] = WinnerWitness { seq: 9, amount: 99, price: 99 };
        assert!(!unchecked(w, |p| p.revenue = 599));
        // Uniform winner paying its bid instead of min(P, bid).
        let mut w = sample();
        w.auction.winners[0].price = 800;
        assert!(!unchecked(w, |p| p.revenue = 1_100));
        // Revenue that is not Σ price.
        assert!(!unchecked(sample(), |p| p.revenue += 1));
        // P below the reserve.
        assert!(!unchecked(sample(), |p| p.reserve = 501));
        // Fee rate above one.
        assert!(!unchecked(sample(), |p| p.fee_ppm = 1_000_001));
        // A commitment that does not match the entries.
        let mut public = sample().check().unwrap();
        public.entries_commitment += Fr::from(1u64);
        assert!(!satisfied(ClearingCircuit::new_unchecked(sample(), public)));
    }
}

#[cfg(test)]
mod properties {
    use super::tests::satisfied;
    use super::*;
    use proptest::prelude::*;

    /// A valid witness: ascending seqs, payouts that sum with the fee to the total, winners
    /// priced by the rule.
    fn valid_witness() -> impl Strategy<Value = ClearingWitness> {
        let entries = prop::collection::vec((1u64..1_000, 0..=MAX_AMOUNT), 0..=BLOCK_ENTRIES_MAX);
        let winners = prop::collection::vec((any::<u64>(), 0..=MAX_AMOUNT), 0..=WINNERS_MAX);
        (
            any::<u64>(),
            0..=PPM_ONE as u32,
            0.0..=1.0f64,
            entries,
            any::<bool>(),
            0..=MAX_AMOUNT,
            0..=MAX_AMOUNT,
            winners,
        )
            .prop_map(|(window_id, fee_ppm, fifo_share, gaps, uniform, a, b, bids)| {
                let mut seq = 0u64;
                let mut entries: Vec<EntryWitness> = gaps
                    .iter()
                    .map(|&(gap, profit)| {
                        seq += gap;
                        EntryWitness { seq, profit, payout: profit }
                    })
                    .collect();
                let total: u64 = entries.iter().map(|e| e.profit).sum();
                let fifo_total = (total as f64 * fifo_share) as u64;
                let surplus = total - fifo_total;
                let mut fee = ((u128::from(surplus) * u128::from(fee_ppm)) / u128::from(PPM_ONE)) as u64;
                // Take the fee out of the payouts, first entries first.
                for e in &mut entries {
                    let cut = fee.min(e.payout);
                    e.payout -= cut;
                    fee -= cut;
                }
                let (reserve, price) = (a.min(b), a.max(b));
                let pricing = if uniform { PRICING_UNIFORM } else { PRICING_FIRST_PRICE };
                let winners = bids
                    .iter()
                    .map(|&(seq, bid)| {
                        let amount = reserve + bid % (MAX_AMOUNT - reserve + 1);
                        let price = if uniform { price.min(amount) } else { amount };
                        WinnerWitness { seq, amount, price }
                    })
                    .collect();
                ClearingWitness {
                    window_id,
                    windows_count: 1,
                    fee_ppm,
                    fifo_total,
                    entries,
                    auction: AuctionWitness {
                        pricing,
                        reserve,
                        uniform_price: if uniform { price } else { 0 },
                        winners,
                    },
                }
            })
    }

    /// Moves one private value (entry seq/profit/payout, winner seq/amount/price) by `delta`.
    fn mutate(w: &mut ClearingWitness, slot: usize, field: usize, delta: i64) -> bool {
        let entries = w.entries.len();
        let target = if slot.is_multiple_of(2) && entries > 0 {
            let e = &mut w.entries[slot / 2 % entries];
            match field {
                0 => &mut e.seq,
                1 => &mut e.profit,
                _ => &mut e.payout,
            }
        } else if !w.auction.winners.is_empty() {
            let count = w.auction.winners.len();
            let win = &mut w.auction.winners[slot / 2 % count];
            match field {
                0 => &mut win.seq,
                1 => &mut win.amount,
                _ => &mut win.price,
            }
        } else {
            return false;
        };
        let moved = target.saturating_add_signed(delta);
        let changed = moved != *target;
        *target = moved;
        changed
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn valid_witnesses_pass_the_pre_check_and_the_constraints(w in valid_witness()) {
            let circuit = ClearingCircuit::new(w).unwrap();
            prop_assert!(satisfied(circuit));
        }

        /// The pre-check and the constraints agree: with the public inputs of the original
        /// witness (commitments recomputed over the changed one), the constraints hold exactly
        /// when the pre-check accepts the changed witness with those same public inputs.
        #[test]
        fn pre_check_and_constraints_agree_on_changed_witnesses(
            w in valid_witness(),
            slot in 0usize..1_000,
            field in 0usize..3,
            delta in prop_oneof![Just(-1i64), Just(1i64), -1_000_000i64..1_000_000],
        ) {
            let mut public = w.check().unwrap();
            let mut changed = w.clone();
            prop_assume!(mutate(&mut changed, slot, field, delta));
            public.entries_commitment = poseidon::entries_commitment(
                changed.window_id, &changed.entries, BLOCK_ENTRIES_MAX);
            public.winners_commitment = poseidon::winners_commitment(
                changed.window_id, &changed.auction.winners, WINNERS_MAX);
            let accepted = changed.check() == Ok(public);
            prop_assert_eq!(satisfied(ClearingCircuit::new_unchecked(changed, public)), accepted);
        }
    }
}
