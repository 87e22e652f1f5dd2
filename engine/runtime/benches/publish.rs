//! One housekeeping publish of a role's metrics: ring counters for 24 rings (3 series
//! each, labelled), idle counters, 20 plain counters and 4 stage histograms, as a QUIC intake
//! publishes every 100 ms (`docs/runtime.md`, "Metrics").
//!
//! Run: `cargo bench -p fpn-runtime --bench publish`

use criterion::{Criterion, criterion_group, criterion_main};
use fpn_runtime::idle::IdleCounters;
use fpn_runtime::metrics::{Histogram, Labels, MetricDesc, MetricsHub};
use fpn_runtime::ring::{RxCounters, TxCounters};

static COUNTERS: [MetricDesc; 20] =
    [const { MetricDesc::counter("fpn_bench_total", "A bench counter.") }; 20];
static HIST: MetricDesc = MetricDesc::histogram("fpn_bench_seconds", "A bench histogram.");

fn publish(c: &mut Criterion) {
    let hub = MetricsHub::new();
    let mut publisher = hub.register("intake0");
    let ring_labels: Vec<Labels> =
        (0..24).map(|i| Labels::new(&[("ring", &format!("ring{i}")), ("peer", "builder0")])).collect();
    let hist_labels: Vec<Labels> = (0..4).map(|i| Labels::new(&[("stage", &format!("s{i}"))])).collect();
    let counter_labels: Vec<Labels> = (0..20).map(|i| Labels::new(&[("reason", &format!("r{i}"))])).collect();
    let mut hists: Vec<Histogram> = (0..4).map(|_| Histogram::new()).collect();
    for (k, h) in hists.iter_mut().enumerate() {
        for i in 0..10_000u64 {
            h.record_ns(1_000 + (i * 7919 + k as u64) % 5_000_000);
        }
    }
    let none = Labels::none();
    c.bench_function("publish one role's metrics (24 rings, 20 counters, 4 histograms)", |b| {
        b.iter(|| {
            publisher.publish(|s| {
                for l in &ring_labels {
                    s.ring_tx(l, TxCounters::default(), 3);
                    s.ring_rx(l, RxCounters::default());
                }
                s.idle(&none, IdleCounters::default());
                for (d, l) in COUNTERS.iter().zip(&counter_labels) {
                    s.counter(d, l, 7);
                }
                for (h, l) in hists.iter().zip(&hist_labels) {
                    s.histogram(&HIST, l, h);
                }
            })
        })
    });
}

criterion_group!(benches, publish);
criterion_main!(benches);
