//! Pins every builder's output on a fixed set of windows to a digest, so that work on the
//! builders' speed provably changes no result: selections, totals, bounds (rounded and
//! unrounded), exactness, the improved builder's stats and published blocks.
//!
//! The windows cover what the unit tests cover separately, in one run through one
//! [`Packer`] per kind (so the key table is reused across windows of very different sizes):
//! hot-pool and uniform windows, repeated and missing keys, windows small enough for the
//! exact solver, and windows large enough for the radix sort and for the table prefix to
//! grow. If a change is meant to alter results, update `DIGEST` and say why in the commit.

use crate::amount::FeeRate;
use crate::batch::{IntentBatch, IntentMeta};
use crate::economics::{Block, Packer};
use crate::pace::{EveryPoint, run_to_completion};
use crate::select::{BuilderKind, ImprovedConfig, Selection};
use crate::sim::{SimParams, SplitMix64, UniformParams, random_batch, random_batch_uniform};

/// FNV-1a over 64-bit words.
struct Digest(u64);

impl Digest {
    fn word(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    fn selection(&mut self, s: &Selection) {
        self.word(s.picked.len() as u64);
        for &i in &s.picked {
            self.word(u64::from(i));
        }
        self.word(s.total);
        self.word(s.upper_bound);
        self.word(u64::from(s.exact));
    }

    fn block(&mut self, b: &Block) {
        self.word(u64::from(b.builder.code()));
        for e in &b.entries {
            self.word(e.seq);
            self.word(e.fee);
        }
        for w in [b.total, b.fifo_total, b.surplus, b.fee, b.upper_bound, u64::from(b.exact)] {
            self.word(w);
        }
    }
}

/// Intents with repeated keys, without keys, and equal profits.
fn odd_batch(seed: u64, intents: usize) -> IntentBatch {
    let mut rng = SplitMix64::new(seed);
    let mut b = IntentBatch::with_capacity(intents, intents * 6);
    for i in 0..intents {
        let meta = IntentMeta { seq: i as u64 + 1, profit: 1 + rng.below(20), ..IntentMeta::default() };
        let count = rng.below(6) as usize;
        let keys: Vec<[u8; 8]> = (0..count).map(|_| (1 + rng.below(40)).to_le_bytes()).collect();
        b.push_le_keys(meta, &keys).unwrap();
    }
    b
}

fn windows() -> Vec<IntentBatch> {
    let mut out = Vec::new();
    for seed in 0..24u64 {
        let params = SimParams {
            intents: [0, 1, 7, 30, 40, 41, 300, 2_000][seed as usize % 8],
            keys_min: 1,
            keys_max: 1 + seed as usize % 8,
            conflict_rate: (seed % 5) as f64 / 4.0,
            hot_keys: 8 + seed * 5,
            profit_max: [3, 1_000, 1_000_000][seed as usize % 3],
        };
        out.push(random_batch(seed, &params).unwrap());
        out.push(odd_batch(seed, [5, 40, 400][seed as usize % 3]));
    }
    for (seed, intents, keys_min, keys_max, universe, profit_max) in [
        (1u64, 1_000usize, 2usize, 8usize, 2_000u64, 1_000_000u64),
        (2, 10_000, 2, 8, 2_000, 1_000_000),
        (3, 6_000, 4, 4, 1 << 18, 1_000),
        (4, 34_000, 4, 4, 1 << 18, 1_000),
        (5, 50, 4, 4, 1 << 18, 1_000),
        (6, 12_000, 1, 3, 5_000, 100),
    ] {
        let params = UniformParams { intents, keys_min, keys_max, universe, profit_max };
        out.push(random_batch_uniform(seed, &params).unwrap());
    }
    out
}

/// The digest `DIGEST` holds.
fn digest() -> u64 {
    let mut d = Digest(0xCBF2_9CE4_8422_2325);
    let (records, keys) = (40_000, 40_000 * 8);
    let rate = FeeRate::parse_decimal("0.3").unwrap();
    let mut block = Block::with_capacity(records);
    let mut packers = [BuilderKind::Fifo, BuilderKind::Greedy, BuilderKind::Improved]
        .map(|kind| Packer::new(kind, records, keys, ImprovedConfig::default()));
    let small_budget =
        ImprovedConfig { local_search_steps_max: 300, exact_nodes_max: 50, ..ImprovedConfig::default() };
    let mut budgeted = Packer::new(BuilderKind::Improved, records, keys, small_budget);
    let mut paced = Packer::new(BuilderKind::Improved, records, keys, ImprovedConfig::default());
    for (w, batch) in windows().iter().enumerate() {
        for packer in &mut packers {
            packer.pack(w as u64, batch, rate, &mut block);
            d.block(&block);
            d.selection(packer.last_fifo_selection());
            d.selection(packer.last_selection());
            for w in packer.last_fifo_bound_parts().words() {
                d.word(w);
            }
        }
        let improved = &mut packers[2];
        let cmp = improved.compare(batch);
        for o in [cmp.fifo, cmp.greedy, cmp.improved] {
            for w in [o.total, o.upper_bound, u64::from(o.exact), o.picked_count as u64] {
                d.word(w);
            }
        }
        let s = cmp.improved_stats;
        for w in [s.greedy_total, s.density_total, s.local_search_steps, s.local_search_moves, s.exact_nodes]
        {
            d.word(w);
        }
        d.selection(improved.last_selection());
        budgeted.pack(w as u64, batch, rate, &mut block);
        d.block(&block);
        let s = budgeted.improved_stats();
        d.word(s.local_search_steps);
        d.word(s.exact_nodes);
        let mut pace = EveryPoint::default();
        let selection = run_to_completion(paced.select_paced(batch, &mut pace)).clone();
        assert_eq!(&selection, packers[2].select(batch), "window {w}: pacing changed the selection");
        d.selection(&selection);
        for w in paced.last_fifo_bound_parts().words() {
            d.word(w);
        }
    }
    d.0
}

/// Computed on the builders as of the commit that added this test.
const DIGEST: u64 = 0x585a_ce3f_057d_5d2a;

#[test]
fn builders_match_the_pinned_digest() {
    let got = digest();
    assert_eq!(got, DIGEST, "builder results changed: digest {got:#018x}");
}
