//! Upper bound on the best block total from a feasible dual of the set-packing LP.
//!
//! The LP relaxation is `max Σ p_i x_i` s.t. `Σ_{i ∋ r} x_i ≤ 1` for every resource `r`,
//! `0 ≤ x ≤ 1`. Any `y ≥ 0` with `Σ_{r ∈ i} y_r ≥ p_i` for every intent `i` is dual feasible,
//! so by weak duality `Σ_r y_r` bounds the LP optimum and therefore the integer optimum.
//!
//! `y` is kept in fixed point (`SCALE` units per minor unit) with integers only, so dual
//! feasibility holds exactly; the bound is rounded up when converted back.
//!
//! Call order: [`DualBound::new`] once, then [`DualBound::compute`] after each
//! [`KeyIndex::prepare`] (and [`KeyIndex::build_adjacency`] when `passes > 0`). `compute`
//! does not allocate within the construction capacity.

use super::index::KeyIndex;

/// Fixed-point scale of `y`. `2^12`: with profits below `2^44` and at most 64 keys per
/// intent, a sum of `y` over one intent's resources stays below `2^62`.
const SCALE_BITS: u32 = 12;
const SCALE: u64 = 1 << SCALE_BITS;

/// The unrounded pieces of a dual bound: `Σ_r y_r` (fixed point), the profit of intents
/// without keys, and `Σ p_i`.
///
/// Why they add up over windows with disjoint key sets: `y_r` starts from the holders of
/// `r` only, and a descent step on `r` reads and writes only `y_r` and its holders' slacks,
/// so the steps of two key-disjoint windows commute; merging the windows by seq keeps each
/// one's first-seen resource order, so every `y_r` ends the same in the union as alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundParts {
    y_sum: u128,
    keyless_profit: u64,
    profit_sum: u64,
}

/// The parts of the union of two key-disjoint windows.
impl std::ops::Add for BoundParts {
    type Output = BoundParts;

    fn add(self, other: BoundParts) -> BoundParts {
        BoundParts {
            y_sum: self.y_sum + other.y_sum,
            keyless_profit: self.keyless_profit + other.keyless_profit,
            profit_sum: self.profit_sum + other.profit_sum,
        }
    }
}

impl BoundParts {
    /// The bound: `ceil(Σ y / SCALE)` plus the keyless profit, capped by `Σ p_i` (every
    /// intent taken at once is also a bound; it wins when there are few conflicts).
    pub fn bound(self) -> u64 {
        // An intent without keys conflicts with nothing; no `y` covers it, so its profit is
        // added outright (its dual slack variable `z_i = p_i`).
        let bound = self.y_sum.div_ceil(u128::from(SCALE)) + u128::from(self.keyless_profit);
        bound.min(u128::from(self.profit_sum)) as u64
    }

    /// Every field, for the pinned-results test.
    #[cfg(test)]
    pub(crate) fn words(self) -> [u64; 4] {
        [self.y_sum as u64, (self.y_sum >> 64) as u64, self.keyless_profit, self.profit_sum]
    }
}

/// Scratch for the dual bound. See the module doc.
#[derive(Debug, Clone)]
pub struct DualBound {
    /// Dual value per resource, fixed point.
    y: Vec<u64>,
    /// `Σ_{r ∈ i} y_r - p_i · SCALE ≥ 0` per intent.
    slack: Vec<u64>,
}

impl DualBound {
    pub fn new(records_max: usize, keys_max: usize) -> DualBound {
        DualBound { y: Vec::with_capacity(keys_max), slack: Vec::with_capacity(records_max) }
    }

    /// A valid upper bound on the maximum conflict-free total of the prepared window.
    ///
    /// Starts from `y_r = max_{i ∋ r} ceil(p_i · SCALE / k_i)` (feasible: each intent's `k_i`
    /// resources carry at least its profit), then runs `passes` rounds of coordinate descent
    /// that lower each `y_r` by the smallest slack among the intents holding `r`, which keeps
    /// every constraint satisfied. Each pass costs one walk over the adjacency.
    pub fn compute(&mut self, index: &KeyIndex, profits: &[u64], passes: u32) -> u64 {
        self.compute_parts(index, profits, passes).bound()
    }

    /// [`DualBound::compute`] before rounding: the parts of windows whose key sets are
    /// disjoint add up (`+`) to the parts of their union, so the bound of a
    /// union is known without recomputing it (the merger relies on this; see
    /// [`BoundParts`]).
    pub fn compute_parts(&mut self, index: &KeyIndex, profits: &[u64], passes: u32) -> BoundParts {
        let intents_count = index.intents_count();
        debug_assert_eq!(profits.len(), intents_count);
        if intents_count == 0 {
            return BoundParts::default();
        }
        let profit_sum: u64 = profits.iter().sum();
        self.init_uniform(index, profits);
        let keyless_profit = self.slack_from_y(index, profits);
        self.descend(index, passes);
        // Tried: a second start that puts each intent's uncovered profit on its most shared
        // resource, keeping the smaller bound. 1k bench window: -3 %; 10k: no change, at
        // +50 % bound cost. Not kept.
        BoundParts { y_sum: self.y_sum(), keyless_profit, profit_sum }
    }

    fn y_sum(&self) -> u128 {
        self.y.iter().map(|&y| u128::from(y)).sum()
    }

    /// `y_r = max_{i ∋ r} ceil(p_i · SCALE / k_i)`.
    fn init_uniform(&mut self, index: &KeyIndex, profits: &[u64]) {
        // Intent-major: one division per intent, and `y` (resource-sized) stays in cache.
        // The resource-major version divided once per key and walked the adjacency; it was a
        // quarter of FIFO's time on the 10k bench window.
        self.y.clear();
        self.y.resize(index.resources_count(), 0);
        for (i, &p) in profits.iter().enumerate() {
            let k = u64::from(index.distinct_count(i));
            if k == 0 {
                continue;
            }
            let share = (p << SCALE_BITS).div_ceil(k);
            for &r in index.ids(i) {
                let y = &mut self.y[r as usize];
                *y = (*y).max(share);
            }
        }
    }

    /// `Σ_{r ∈ i} y_r` over distinct resources.
    #[inline]
    fn covered(&self, index: &KeyIndex, i: usize) -> u64 {
        let ids = index.ids(i);
        if index.distinct_count(i) as usize == ids.len() {
            ids.iter().map(|&r| self.y[r as usize]).sum()
        } else {
            // A repeated key of one intent counts once (the wire layer rejects these).
            ids.iter()
                .enumerate()
                .filter(|&(k, r)| !ids[..k].contains(r))
                .map(|(_, &r)| self.y[r as usize])
                .sum()
        }
    }

    /// Fills `slack`; returns the summed profit of intents without keys, which no `y` covers.
    fn slack_from_y(&mut self, index: &KeyIndex, profits: &[u64]) -> u64 {
        self.slack.clear();
        let mut keyless_profit = 0u64;
        for (i, &p) in profits.iter().enumerate() {
            if index.distinct_count(i) == 0 {
                keyless_profit += p;
                self.slack.push(0);
                continue;
            }
            let covered = self.covered(index, i);
            let need = p << SCALE_BITS;
            debug_assert!(covered >= need, "dual infeasible");
            self.slack.push(covered - need);
        }
        keyless_profit
    }

    /// Coordinate descent: lower each `y_r` by the smallest slack among its holders.
    fn descend(&mut self, index: &KeyIndex, passes: u32) {
        if passes == 0 {
            return;
        }
        debug_assert!(index.has_adjacency(), "dual descent needs the adjacency");
        let resources_count = index.resources_count();
        for pass in 0..passes {
            // Alternate sweep direction: a forward-only sweep always favours low ids.
            let forward = pass % 2 == 0;
            for step in 0..resources_count {
                let r = if forward { step } else { resources_count - 1 - step };
                let holders = index.holders(r);
                if let &[i] = holders {
                    // One holder (most resources of an e2e window): the same step without
                    // branches on the data (subtracting 0 changes nothing). Min of 24, 3
                    // alternations: the bound on e2e-like windows 35 -> 30.5 ns per intent at
                    // 20k intents, 42.5 -> 39 at 40k, 47.4 -> 46 at 65k.
                    let lower = self.y[r].min(self.slack[i as usize]);
                    self.y[r] -= lower;
                    self.slack[i as usize] -= lower;
                    continue;
                }
                let mut lower = self.y[r];
                for &i in holders {
                    lower = lower.min(self.slack[i as usize]);
                    if lower == 0 {
                        break;
                    }
                }
                if lower > 0 {
                    self.y[r] -= lower;
                    for &i in holders {
                        self.slack[i as usize] -= lower;
                    }
                }
            }
        }
    }

    /// Checks dual feasibility of the current `y` exactly (for tests).
    #[cfg(test)]
    pub(crate) fn is_feasible(&self, index: &KeyIndex, profits: &[u64]) -> bool {
        (0..index.intents_count()).all(|i| {
            let mut sum = 0u128;
            let mut seen: Vec<u32> = index.ids(i).to_vec();
            seen.sort_unstable();
            seen.dedup();
            for r in seen {
                sum += u128::from(self.y[r as usize]);
            }
            sum >= u128::from(profits[i]) << SCALE_BITS
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{IntentBatch, IntentMeta};

    fn batch(intents: &[(u64, &[u64])]) -> IntentBatch {
        let mut b = IntentBatch::with_capacity(16, 64);
        for (i, (profit, keys)) in intents.iter().enumerate() {
            let meta = IntentMeta { seq: i as u64 + 1, profit: *profit, ..IntentMeta::default() };
            b.push(meta, keys).unwrap();
        }
        b
    }

    #[test]
    fn triangle_bound_is_lp_value_not_integer_optimum() {
        // Three intents pairwise conflicting through three resources: the integer optimum is
        // 10, the LP optimum is 15 (x = 1/2 each). No valid dual goes below 15.
        let b = batch(&[(10, &[1, 2]), (10, &[2, 3]), (10, &[3, 1])]);
        let mut index = KeyIndex::new(16, 64);
        index.prepare(&b);
        index.build_adjacency();
        let mut dual = DualBound::new(16, 64);
        for passes in 0..4 {
            let bound = dual.compute(&index, b.profits(), passes);
            assert!(dual.is_feasible(&index, b.profits()));
            assert!(bound >= 15, "bound {bound} below the LP value");
            assert!(bound <= 30);
        }
    }

    #[test]
    fn descent_tightens_a_star() {
        // One big intent on resource 1 and 2; small ones on 2. Initial y puts 50 on both 1 and
        // 2; descent can lower resource 2's share only down to what the small ones need.
        let b = batch(&[(100, &[1, 2]), (1, &[2]), (1, &[2, 3])]);
        let mut index = KeyIndex::new(16, 64);
        index.prepare(&b);
        index.build_adjacency();
        let mut dual = DualBound::new(16, 64);
        let loose = dual.compute(&index, b.profits(), 0);
        let tight = dual.compute(&index, b.profits(), 2);
        assert!(dual.is_feasible(&index, b.profits()));
        assert!(tight <= loose);
        assert!(tight >= 100);
        // Σ profits (102) caps the loose bound.
        assert!(loose <= 102);
    }

    #[test]
    fn keyless_intent_counts_in_full() {
        // `push_le_keys` accepts an empty key list; such an intent conflicts with nothing.
        let mut b = batch(&[(7, &[1]), (5, &[1])]);
        let meta = IntentMeta { seq: 3, profit: 9, ..IntentMeta::default() };
        b.push_le_keys(meta, &[]).unwrap();
        let mut index = KeyIndex::new(16, 64);
        index.prepare(&b);
        index.build_adjacency();
        let mut dual = DualBound::new(16, 64);
        assert_eq!(dual.compute(&index, b.profits(), 1), 7 + 9);
    }

    #[test]
    fn duplicate_keys_do_not_break_feasibility() {
        let b = batch(&[(10, &[5, 5])]);
        let mut index = KeyIndex::new(16, 64);
        index.prepare(&b);
        index.build_adjacency();
        let mut dual = DualBound::new(16, 64);
        assert_eq!(dual.compute(&index, b.profits(), 3), 10);
    }

    #[test]
    fn parts_of_key_disjoint_windows_add_up_to_the_union() {
        // Two windows on disjoint keys, interleaved by seq in the union.
        let a: &[(u64, &[u64])] = &[(10, &[1, 2]), (7, &[2]), (5, &[1, 3]), (9, &[3])];
        let b: &[(u64, &[u64])] = &[(4, &[10]), (8, &[10, 11]), (3, &[11])];
        let union = [a[0], b[0], a[1], a[2], b[1], b[2], a[3]];
        let parts = |intents: &[(u64, &[u64])], passes| {
            let b = batch(intents);
            let mut index = KeyIndex::new(16, 64);
            index.prepare(&b);
            index.build_adjacency();
            DualBound::new(16, 64).compute_parts(&index, b.profits(), passes)
        };
        for passes in 0..4 {
            let sum = parts(a, passes) + parts(b, passes);
            assert_eq!(sum, parts(&union, passes), "passes {passes}");
            // The rounding happens once, on the sum.
            assert!(sum.bound() <= parts(a, passes).bound() + parts(b, passes).bound());
        }
    }
}
