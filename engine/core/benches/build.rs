//! Builder micro-benchmarks.
//!
//! Workload: uniform-universe windows, 2–8 distinct keys per intent, profits in 1..=10^6.
//! Key universe: 2,000 keys for 1k and 10k intents, 20,000 keys for 100k intents (so the
//! 100k window is not one giant clique). Run briefly on a shared machine:
//! `cargo bench -p fpn-engine --bench build -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use fpn_engine::select::radix_sort_u64;
use fpn_engine::sim::{UniformParams, random_batch_uniform};
use fpn_engine::{
    Block, BlockBuilder, BuilderKind, FeeRate, FifoBuilder, GreedyBuilder, ImprovedBuilder, ImprovedConfig,
    IntentBatch, MAX_AMOUNT, Packer, Selection,
};

fn window(intents: usize) -> (IntentBatch, UniformParams) {
    let params = UniformParams {
        intents,
        keys_min: 2,
        keys_max: 8,
        universe: if intents >= 100_000 { 20_000 } else { 2_000 },
        profit_max: 1_000_000,
    };
    (random_batch_uniform(0xF1A5, &params).unwrap(), params)
}

fn gap_percent(total: u64, bound: u64) -> f64 {
    if bound == 0 { 0.0 } else { 100.0 * (bound - total) as f64 / bound as f64 }
}

fn bench_builders(c: &mut Criterion) {
    let config = ImprovedConfig::default();
    let mut group = c.benchmark_group("build");
    for intents in [1_000usize, 10_000, 100_000] {
        let (batch, params) = window(intents);
        let (records, keys) = params.capacity();
        let mut out = Selection::with_capacity(records);

        // Quality report, once per size, for BENCHMARKS.md.
        let mut packer = Packer::new(BuilderKind::Improved, records, keys, config);
        let cmp = packer.compare(&batch);
        let bound = cmp.upper_bound();
        eprintln!(
            "quality n={intents} universe={}: fifo={} greedy={} density_greedy={} improved={} bound={} \
             gap(greedy)={:.2}% gap(improved)={:.2}% improved/greedy=+{:.3}% ls_steps={} ls_moves={}",
            params.universe,
            cmp.fifo.total,
            cmp.greedy.total,
            cmp.improved_stats.density_total,
            cmp.improved.total,
            bound,
            gap_percent(cmp.greedy.total, bound),
            gap_percent(cmp.improved.total, bound),
            100.0 * (cmp.improved.total - cmp.greedy.total) as f64 / cmp.greedy.total as f64,
            cmp.improved_stats.local_search_steps,
            cmp.improved_stats.local_search_moves,
        );

        group.throughput(Throughput::Elements(intents as u64));
        let mut fifo = FifoBuilder::new(records, keys);
        group.bench_with_input(BenchmarkId::new("fifo", intents), &batch, |b, batch| {
            b.iter(|| fifo.build(black_box(batch), &mut out))
        });
        let mut greedy = GreedyBuilder::new(records, keys);
        group.bench_with_input(BenchmarkId::new("greedy", intents), &batch, |b, batch| {
            b.iter(|| greedy.build(black_box(batch), &mut out))
        });
        let mut greedy_nobound = GreedyBuilder::new(records, keys).with_bound_passes(0);
        group.bench_with_input(BenchmarkId::new("greedy_bound0", intents), &batch, |b, batch| {
            b.iter(|| greedy_nobound.build(black_box(batch), &mut out))
        });
        let mut improved = ImprovedBuilder::new(records, keys, config);
        group.bench_with_input(BenchmarkId::new("improved", intents), &batch, |b, batch| {
            b.iter(|| improved.build(black_box(batch), &mut out))
        });
    }
    group.finish();
}

/// Greedy's order-key sort: radix vs `sort_unstable`, on the bench windows' real keys.
fn bench_sort(c: &mut Criterion) {
    let mut group = c.benchmark_group("sort");
    for intents in [10_000usize, 100_000] {
        let (batch, _) = window(intents);
        let keys: Vec<u64> =
            batch.profits().iter().enumerate().map(|(i, &p)| ((MAX_AMOUNT - p) << 20) | i as u64).collect();
        let mut work = keys.clone();
        let mut scratch = Vec::with_capacity(intents);
        group.throughput(Throughput::Elements(intents as u64));
        group.bench_function(BenchmarkId::new("unstable", intents), |b| {
            b.iter(|| {
                work.copy_from_slice(&keys);
                work.sort_unstable();
                black_box(&work);
            })
        });
        group.bench_function(BenchmarkId::new("radix", intents), |b| {
            b.iter(|| {
                work.copy_from_slice(&keys);
                radix_sort_u64(&mut work, &mut scratch);
                black_box(&work);
            })
        });
    }
    group.finish();
}

/// The daemon's path: FIFO + chosen builder + fee split into a reused block.
fn bench_pack(c: &mut Criterion) {
    let mut group = c.benchmark_group("pack");
    let intents = 10_000;
    let (batch, params) = window(intents);
    let (records, keys) = params.capacity();
    let rate = FeeRate::parse_decimal("0.1").unwrap();
    let mut block = Block::with_capacity(records);
    group.throughput(Throughput::Elements(intents as u64));
    for kind in [BuilderKind::Greedy, BuilderKind::Improved] {
        let mut packer = Packer::new(kind, records, keys, ImprovedConfig::default());
        group.bench_function(BenchmarkId::new(kind.as_str(), intents), |b| {
            b.iter(|| packer.pack(1, black_box(&batch), rate, &mut block))
        });
    }
    group.finish();
}

/// A builder shard's work per window in the end-to-end bench (`flashpointd`'s `e2e`): FIFO
/// and improved through [`Packer::select`], 4 distinct keys per intent from 2^18, profits in
/// 1..=1000, with the daemon's default window capacity (65,536 records, 8 keys each), at the
/// window sizes that bench sees (20k at its current rate, 65,536 when windows close full).
///
/// Also each builder kind alone, and improved with other local-search budgets
/// (`improved_ls<steps>`), with the quality of each printed once per size, for the cost of
/// each part of the default builder's work (`BENCHMARKS.md`, "The floor on two CPUs").
fn bench_select(c: &mut Criterion) {
    let mut group = c.benchmark_group("select");
    let (records, keys) = (65_536, 65_536 * 8);
    for intents in [20_000usize, 65_536] {
        let params =
            UniformParams { intents, keys_min: 4, keys_max: 4, universe: 1 << 18, profit_max: 1_000 };
        let batch = random_batch_uniform(0xE2E, &params).unwrap();
        group.throughput(Throughput::Elements(intents as u64));
        let default_steps = ImprovedConfig::default().local_search_steps_max;
        let variants = [
            (BuilderKind::Fifo, default_steps),
            (BuilderKind::Greedy, default_steps),
            (BuilderKind::Improved, default_steps),
            (BuilderKind::Improved, 0),
            (BuilderKind::Improved, 200_000),
        ];
        for (kind, steps) in variants {
            let config = ImprovedConfig { local_search_steps_max: steps, ..ImprovedConfig::default() };
            let mut packer = Packer::new(kind, records, keys, config);
            let name = if kind == BuilderKind::Improved && steps != default_steps {
                format!("improved_ls{steps}")
            } else {
                kind.as_str().to_string()
            };
            if kind == BuilderKind::Improved {
                let cmp = packer.compare(&batch);
                let start = cmp.fifo.total.max(cmp.greedy.total).max(cmp.improved_stats.density_total);
                eprintln!(
                    "select quality n={intents} {name}: fifo={} greedy={} density_greedy={} improved={} \
                     bound={} improved/best_start=+{:.3}% ls_steps={} ls_moves={}",
                    cmp.fifo.total,
                    cmp.greedy.total,
                    cmp.improved_stats.density_total,
                    cmp.improved.total,
                    cmp.upper_bound(),
                    100.0 * (cmp.improved.total - start) as f64 / start as f64,
                    cmp.improved_stats.local_search_steps,
                    cmp.improved_stats.local_search_moves,
                );
            }
            group.bench_with_input(BenchmarkId::new(name, intents), &batch, |b, batch| {
                b.iter(|| packer.select(black_box(batch)).total)
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_builders, bench_sort, bench_pack, bench_select);
criterion_main!(benches);
