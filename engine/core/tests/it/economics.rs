//! Published-block invariants over random windows, all builder kinds and fee rates.

use proptest::prelude::*;

use fpn_engine::sim::{SimParams, random_batch};
use fpn_engine::{Block, BuilderKind, FeeRate, ImprovedConfig, IntentBatch, Packer};

use crate::reference::{batch_of, brute_force_optimum, check_conflict_free};

fn check_block(batch: &IntentBatch, block: &Block) -> Result<(), TestCaseError> {
    // Map entries back to batch indices by seq (seq = index + 1 in these batches).
    let picked: Vec<u32> = block.entries.iter().map(|e| (e.seq - 1) as u32).collect();
    check_conflict_free(batch, &picked).map_err(TestCaseError::fail)?;
    let total: u64 = block.entries.iter().map(|e| e.profit).sum();
    prop_assert_eq!(total, block.total);
    prop_assert!(block.total >= block.fifo_total);
    prop_assert_eq!(block.surplus, block.total - block.fifo_total);
    prop_assert_eq!(block.fee, block.fee_rate.apply_floor(block.surplus));
    let payouts: u64 = block.entries.iter().map(|e| e.payout).sum();
    prop_assert_eq!(payouts + block.fee, block.total);
    let fees: u64 = block.entries.iter().map(|e| e.fee).sum();
    prop_assert_eq!(fees, block.fee);
    for e in &block.entries {
        let i = (e.seq - 1) as usize;
        prop_assert_eq!(e.profit, batch.profit(i));
        prop_assert_eq!(e.client_id, batch.meta(i).client_id);
        prop_assert!(e.fee <= e.profit && e.payout <= e.profit);
        prop_assert_eq!(e.payout + e.fee, e.profit);
    }
    // Pro rata shares rounded down, and the leftover units go one each to the first entries
    // in seq order.
    let floors: Vec<u64> = block
        .entries
        .iter()
        .map(|e| (u128::from(block.fee) * u128::from(e.profit) / u128::from(block.total.max(1))) as u64)
        .collect();
    let leftover = block.fee - floors.iter().sum::<u64>();
    prop_assert!((leftover as usize) < block.entries.len().max(1));
    for (k, (e, floor)) in block.entries.iter().zip(&floors).enumerate() {
        let extra = u64::from((k as u64) < leftover);
        prop_assert_eq!(e.fee, floor + extra, "entry {} of {}", k, block.entries.len());
    }
    if block.builder == BuilderKind::Fifo {
        prop_assert_eq!(block.total, block.fifo_total);
    }
    prop_assert!(block.entries.windows(2).all(|w| w[0].seq < w[1].seq));
    prop_assert!(block.upper_bound >= block.total);
    if block.exact {
        prop_assert_eq!(block.upper_bound, block.total);
    }
    Ok(())
}

const KINDS: [BuilderKind; 3] = [BuilderKind::Fifo, BuilderKind::Greedy, BuilderKind::Improved];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn blocks_hold_invariants(
        seed in any::<u64>(),
        intents in 0usize..300,
        rate in 0.0f64..=1.0,
        ppm in prop_oneof![Just(0u32), Just(1_000_000u32), 0u32..=1_000_000],
    ) {
        let params = SimParams {
            intents,
            keys_min: 1,
            keys_max: 5,
            conflict_rate: rate,
            hot_keys: 30,
            profit_max: 10_000,
        };
        let batch = random_batch(seed, &params).unwrap();
        let (records, keys) = params.capacity();
        let fee_rate = FeeRate::from_ppm(ppm).unwrap();
        let mut blocks = Vec::new();
        for kind in KINDS {
            let mut packer = Packer::new(kind, records, keys, ImprovedConfig::default());
            let mut block = Block::with_capacity(records);
            packer.pack(seed, &batch, fee_rate, &mut block);
            check_block(&batch, &block)?;
            // Determinism: same packer, same window, same block.
            let mut again = Block::with_capacity(records);
            packer.pack(seed, &batch, fee_rate, &mut again);
            prop_assert_eq!(&block, &again);
            blocks.push(block);
        }
        // Same FIFO baseline for every kind; improved publishes at least greedy's total.
        prop_assert!(blocks.iter().all(|b| b.fifo_total == blocks[0].fifo_total));
        prop_assert_eq!(blocks[0].surplus, 0);
        prop_assert!(blocks[2].total >= blocks[1].total);
    }

    #[test]
    fn small_blocks_bounds_cover_optimum(
        intents in proptest::collection::vec(
            (1u64..=50, proptest::collection::btree_set(0u64..8, 1..=3)
                .prop_map(|s| s.into_iter().collect::<Vec<_>>())),
            0..=12,
        ),
        ppm in 0u32..=1_000_000,
    ) {
        let batch = batch_of(&intents);
        let optimum = brute_force_optimum(&batch);
        let fee_rate = FeeRate::from_ppm(ppm).unwrap();
        for kind in KINDS {
            let mut packer = Packer::new(kind, 12, 36, ImprovedConfig::default());
            let mut block = Block::with_capacity(12);
            packer.pack(0, &batch, fee_rate, &mut block);
            check_block(&batch, &block)?;
            prop_assert!(block.upper_bound >= optimum);
            if kind == BuilderKind::Improved {
                prop_assert!(block.exact);
                prop_assert_eq!(block.total, optimum);
            }
        }
    }
}

#[test]
fn compare_reports_all_three() {
    let params = SimParams { intents: 2_000, ..SimParams::default() };
    let batch = random_batch(11, &params).unwrap();
    let (records, keys) = params.capacity();
    let mut packer = Packer::new(BuilderKind::Improved, records, keys, ImprovedConfig::default());
    let c = packer.compare(&batch);
    assert!(c.improved.total >= c.greedy.total);
    assert!(c.upper_bound() >= c.improved.total.max(c.fifo.total));
    assert_eq!(c.improved_stats.greedy_total, c.greedy.total);
    // compare and pack agree on the improved total.
    let mut block = Block::with_capacity(records);
    packer.pack(1, &batch, FeeRate::ZERO, &mut block);
    assert_eq!(block.total, c.improved.total.max(c.fifo.total));
    assert_eq!(block.fifo_total, c.fifo.total);
}
