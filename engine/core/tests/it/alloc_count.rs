//! Counts heap allocations per thread, to prove `build` and `pack` do not allocate after
//! construction.

use fpn_engine::economics::Block;
use fpn_engine::sim::{UniformParams, random_batch_uniform};
use fpn_engine::{
    BlockBuilder, BuilderKind, FeeRate, FifoBuilder, GreedyBuilder, ImprovedBuilder, ImprovedConfig, Packer,
    Selection,
};

#[global_allocator]
static GLOBAL: fpn_testkit::Counting = fpn_testkit::Counting;

use fpn_testkit::allocations;

#[test]
fn builders_and_packer_do_not_allocate_after_construction() {
    let records_max = 3_000;
    let keys_max = records_max * 8;
    // Windows of several sizes, largest first and last, all within capacity.
    let sizes = [3_000usize, 10, 0, 1_500, 37, 3_000];
    let batches: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(s, &n)| {
            random_batch_uniform(
                s as u64,
                &UniformParams { intents: n, keys_min: 2, keys_max: 8, universe: 600, profit_max: 1_000 },
            )
            .unwrap()
        })
        .collect();
    let mut fifo = FifoBuilder::new(records_max, keys_max);
    let mut greedy = GreedyBuilder::new(records_max, keys_max);
    let mut improved = ImprovedBuilder::new(records_max, keys_max, ImprovedConfig::default());
    let mut packers: Vec<Packer> = [BuilderKind::Fifo, BuilderKind::Greedy, BuilderKind::Improved]
        .into_iter()
        .map(|k| Packer::new(k, records_max, keys_max, ImprovedConfig::default()))
        .collect();
    let mut selection = Selection::with_capacity(records_max);
    let mut block = Block::with_capacity(records_max);
    let rate = FeeRate::parse_decimal("0.2").unwrap();

    let before = allocations();
    for batch in &batches {
        fifo.build(batch, &mut selection);
        greedy.build(batch, &mut selection);
        improved.build(batch, &mut selection);
        for packer in &mut packers {
            packer.pack(1, batch, rate, &mut block);
        }
        let _ = packers[0].compare(batch);
    }
    assert_eq!(allocations() - before, 0, "hot path allocated");

    // The counter does see allocations (the test can fail).
    let v: Vec<u64> = Vec::with_capacity(4);
    assert!(allocations() > before);
    drop(v);
}
