//! Deterministic synthetic windows for the simulator, benches and property tests.
//!
//! Everything derives from a `u64` seed through [`SplitMix64`], so a failing run replays
//! from its seed. Two key models:
//! - [`SimParams`] (hot pool): each key of an intent is, with probability `conflict_rate`,
//!   one of `hot_keys` shared hot keys, and otherwise a fresh cold key that no other intent
//!   holds. Conflicts therefore only come from hot keys: `conflict_rate = 0` gives a window
//!   with no conflicts, `conflict_rate = 1` one where every key is contended.
//! - [`UniformParams`]: every key is drawn uniformly from a universe of `universe` keys (the
//!   bench workload).
//!
//! Within one intent keys are distinct; profits are uniform in `1..=profit_max`; intent `i`
//! gets `seq = i + 1`, `client_id = i % 16 + 1`, `nonce = i / 16`.

use thiserror::Error;

use crate::amount::MAX_AMOUNT;
use crate::batch::{IntentBatch, IntentMeta};

/// Most keys one intent may hold.
pub const INTENT_KEYS_MAX: usize = 64;

/// Cold keys live above this, hot and universe keys below, so they never collide.
const COLD_KEY_BASE: u64 = 1 << 62;

/// The splitmix64 generator (Steele, Lea and Flood's `SplittableRandom` mixer): tiny, fast,
/// passes BigCrush, and every seed is a good seed.
///
/// Call order: [`SplitMix64::new`] with a seed, then any `next_*`/`below`/`range_inclusive`;
/// the sequence depends only on the seed.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`) by multiply-high; the bias is below `n / 2^64`, far under
    /// anything a simulation can see.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)` with 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Parameters that cannot produce a valid window.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SimParamsError {
    #[error("keys per intent must satisfy 1 <= keys_min <= keys_max <= 64, got {keys_min}..={keys_max}")]
    KeysRange { keys_min: usize, keys_max: usize },
    #[error("profit_max must be within 1..={MAX_AMOUNT}, got {0}")]
    ProfitMax(u64),
    #[error("conflict_rate must be within [0, 1], got {0}")]
    ConflictRate(f64),
    #[error("hot_keys must be at least 1 when conflict_rate > 0")]
    HotKeys,
    #[error("universe ({universe}) must hold at least keys_max ({keys_max}) keys")]
    Universe { universe: u64, keys_max: usize },
    #[error("intents must be at most 2^20, got {0}")]
    Intents(usize),
}

/// Hot-pool workload (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct SimParams {
    pub intents: usize,
    pub keys_min: usize,
    pub keys_max: usize,
    /// Probability that each key is drawn from the hot pool.
    pub conflict_rate: f64,
    pub hot_keys: u64,
    pub profit_max: u64,
}

impl Default for SimParams {
    fn default() -> SimParams {
        SimParams {
            intents: 10_000,
            keys_min: 2,
            keys_max: 8,
            conflict_rate: 0.5,
            hot_keys: 2_000,
            profit_max: 1_000_000,
        }
    }
}

fn check_common(
    intents: usize,
    keys_min: usize,
    keys_max: usize,
    profit_max: u64,
) -> Result<(), SimParamsError> {
    if keys_min == 0 || keys_min > keys_max || keys_max > INTENT_KEYS_MAX {
        return Err(SimParamsError::KeysRange { keys_min, keys_max });
    }
    if profit_max == 0 || profit_max > MAX_AMOUNT {
        return Err(SimParamsError::ProfitMax(profit_max));
    }
    if intents > crate::select::RECORDS_MAX_LIMIT {
        return Err(SimParamsError::Intents(intents));
    }
    Ok(())
}

impl SimParams {
    pub fn validate(&self) -> Result<(), SimParamsError> {
        check_common(self.intents, self.keys_min, self.keys_max, self.profit_max)?;
        if !(0.0..=1.0).contains(&self.conflict_rate) {
            return Err(SimParamsError::ConflictRate(self.conflict_rate));
        }
        if self.conflict_rate > 0.0 && self.hot_keys == 0 {
            return Err(SimParamsError::HotKeys);
        }
        Ok(())
    }

    /// Capacity (records, keys) a batch needs to hold one window of these parameters.
    pub fn capacity(&self) -> (usize, usize) {
        (self.intents, self.intents * self.keys_max)
    }
}

/// Uniform-universe workload (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniformParams {
    pub intents: usize,
    pub keys_min: usize,
    pub keys_max: usize,
    /// Keys are drawn uniformly from `0..universe`.
    pub universe: u64,
    pub profit_max: u64,
}

impl UniformParams {
    pub fn validate(&self) -> Result<(), SimParamsError> {
        check_common(self.intents, self.keys_min, self.keys_max, self.profit_max)?;
        if self.universe < self.keys_max as u64 {
            return Err(SimParamsError::Universe { universe: self.universe, keys_max: self.keys_max });
        }
        Ok(())
    }

    pub fn capacity(&self) -> (usize, usize) {
        (self.intents, self.intents * self.keys_max)
    }
}

fn meta(i: usize, profit: u64) -> IntentMeta {
    IntentMeta {
        seq: i as u64 + 1,
        client_id: (i % 16) as u64 + 1,
        nonce: (i / 16) as u64,
        profit,
        ..IntentMeta::default()
    }
}

/// A hot-pool window from `seed`.
pub fn random_batch(seed: u64, params: &SimParams) -> Result<IntentBatch, SimParamsError> {
    params.validate()?;
    let (records, keys) = params.capacity();
    let mut batch = IntentBatch::with_capacity(records, keys);
    fill_batch(seed, params, &mut batch)?;
    Ok(batch)
}

/// Refills `batch` (cleared first) with a hot-pool window; does not allocate when the batch
/// has [`SimParams::capacity`]. Panics if it has less.
pub fn fill_batch(seed: u64, params: &SimParams, batch: &mut IntentBatch) -> Result<(), SimParamsError> {
    params.validate()?;
    batch.clear();
    let mut rng = SplitMix64::new(seed);
    let mut cold_next = COLD_KEY_BASE;
    let mut keys = [0u64; INTENT_KEYS_MAX];
    for i in 0..params.intents {
        let count = rng.range_inclusive(params.keys_min as u64, params.keys_max as u64) as usize;
        let mut hot_taken = 0u64;
        for k in 0..count {
            let hot = params.conflict_rate > 0.0
                && hot_taken < params.hot_keys
                && rng.next_f64() < params.conflict_rate;
            keys[k] = if hot {
                // Rejection keeps keys distinct; terminates because a free hot key remains.
                loop {
                    let key = rng.below(params.hot_keys);
                    if !keys[..k].contains(&key) {
                        break key;
                    }
                }
            } else {
                cold_next += 1;
                cold_next
            };
            hot_taken += u64::from(hot);
        }
        let profit = rng.range_inclusive(1, params.profit_max);
        batch.push(meta(i, profit), &keys[..count]).expect("batch smaller than SimParams::capacity");
    }
    Ok(())
}

/// A uniform-universe window from `seed`.
pub fn random_batch_uniform(seed: u64, params: &UniformParams) -> Result<IntentBatch, SimParamsError> {
    params.validate()?;
    let (records, keys) = params.capacity();
    let mut batch = IntentBatch::with_capacity(records, keys);
    fill_batch_uniform(seed, params, &mut batch)?;
    Ok(batch)
}

/// Refills `batch` with a uniform-universe window; does not allocate when the batch has
/// [`UniformParams::capacity`]. Panics if it has less.
pub fn fill_batch_uniform(
    seed: u64,
    params: &UniformParams,
    batch: &mut IntentBatch,
) -> Result<(), SimParamsError> {
    params.validate()?;
    batch.clear();
    let mut rng = SplitMix64::new(seed);
    let mut keys = [0u64; INTENT_KEYS_MAX];
    for i in 0..params.intents {
        let count = rng.range_inclusive(params.keys_min as u64, params.keys_max as u64) as usize;
        for k in 0..count {
            keys[k] = loop {
                let key = rng.below(params.universe);
                if !keys[..k].contains(&key) {
                    break key;
                }
            };
        }
        let profit = rng.range_inclusive(1, params.profit_max);
        batch.push(meta(i, profit), &keys[..count]).expect("batch smaller than UniformParams::capacity");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs for seed 0 of the published splitmix64 reference implementation.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn same_seed_same_batch_and_keys_distinct() {
        let params = SimParams { intents: 500, hot_keys: 3, conflict_rate: 0.9, ..SimParams::default() };
        let a = random_batch(42, &params).unwrap();
        let b = random_batch(42, &params).unwrap();
        assert_eq!(a.all_keys(), b.all_keys());
        assert_eq!(a.profits(), b.profits());
        let c = random_batch(43, &params).unwrap();
        assert_ne!(a.profits(), c.profits());
        for i in 0..a.len() {
            let mut keys = a.keys(i).to_vec();
            assert!((2..=8).contains(&keys.len()));
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), a.keys(i).len());
            // At most 3 hot keys fit; the rest are cold.
            assert!(a.keys(i).iter().filter(|&&k| k < 3).count() <= 3);
            assert_eq!(a.meta(i).seq, i as u64 + 1);
            assert!((1..=params.profit_max).contains(&a.profit(i)));
        }
    }

    #[test]
    fn conflict_rate_zero_has_no_shared_keys() {
        let params = SimParams { intents: 200, conflict_rate: 0.0, ..SimParams::default() };
        let b = random_batch(1, &params).unwrap();
        let mut keys = b.all_keys().to_vec();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), b.keys_len());
    }

    #[test]
    fn uniform_keys_in_universe() {
        let params = UniformParams { intents: 300, keys_min: 2, keys_max: 8, universe: 50, profit_max: 10 };
        let b = random_batch_uniform(9, &params).unwrap();
        assert!(b.all_keys().iter().all(|&k| k < 50));
        assert_eq!(b.len(), 300);
    }

    #[test]
    fn rejects_bad_params() {
        let bad = SimParams { keys_min: 0, ..SimParams::default() };
        assert!(matches!(bad.validate(), Err(SimParamsError::KeysRange { .. })));
        let bad = SimParams { conflict_rate: 1.5, ..SimParams::default() };
        assert!(matches!(bad.validate(), Err(SimParamsError::ConflictRate(_))));
        let bad = SimParams { profit_max: MAX_AMOUNT + 1, ..SimParams::default() };
        assert!(matches!(bad.validate(), Err(SimParamsError::ProfitMax(_))));
    }
}
