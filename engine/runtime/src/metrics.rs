//! Shard-local metrics, published in housekeeping, rendered by the admin side.
//!
//! On the hot path a shard touches only its own plain fields: [`Counter`] is a `u64`,
//! [`Histogram`] an HdrHistogram (1 ns ..= 60 s, 3 significant figures, about 220 KiB,
//! allocated once). In housekeeping the shard calls [`ShardPublisher::publish`], which copies
//! its values into the shard's slot in the [`MetricsHub`] under a `Mutex` taken with
//! `try_lock`: if the admin thread is copying the slot at that moment the shard skips this
//! round (counted) rather than wait. After the first publish (do one before READY) a
//! publish allocates nothing: series are found in place and histograms copied with
//! `reset` + `add` into a histogram of the same bounds.
//!
//! The admin side ([`MetricsHub::render_prometheus`], [`MetricsHub::render_json`]) copies
//! each slot under the lock and renders outside it. Every series carries a `shard` label;
//! every histogram is also rendered merged across shards (HdrHistogram `add` of the copied
//! snapshots, per set of other labels) as the series `shard="all"` ([`SHARD_ALL`]), so a
//! stage's latency quantiles are over all its shards. The merge is done at render time, on
//! the admin side, never by a shard.
//! Prometheus names follow `fpn_<subject>_<action>_<unit>`, counters end in `_total`,
//! latency histograms end in `_seconds` and are recorded in nanoseconds, rendered in seconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use crate::idle::IdleCounters;
use crate::ring::{RxCounters, TxCounters};

/// Smallest recordable latency in nanoseconds.
pub const HISTOGRAM_NS_MIN: u64 = 1;
/// Largest recordable latency in nanoseconds (60 s); larger values are clamped to it.
pub const HISTOGRAM_NS_MAX: u64 = 60_000_000_000;
/// Significant figures kept by every histogram.
pub const HISTOGRAM_SIGFIG: u8 = 3;

/// The `shard` label value of a histogram merged across shards (a shard may not be named so).
pub const SHARD_ALL: &str = "all";

/// Upper bounds (ns) of the Prometheus buckets rendered for every histogram, then `+Inf`.
pub const BUCKET_BOUNDS_NS: [u64; 25] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    5_000_000_000,
    10_000_000_000,
    60_000_000_000,
];

/// The type of a metric, as in Prometheus' `# TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// Description of one metric: declared once as a `static`, referenced by every series.
#[derive(Debug, PartialEq, Eq)]
pub struct MetricDesc {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
}

impl MetricDesc {
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self { name, help, kind: MetricKind::Counter }
    }
    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self { name, help, kind: MetricKind::Gauge }
    }
    pub const fn histogram(name: &'static str, help: &'static str) -> Self {
        Self { name, help, kind: MetricKind::Histogram }
    }

    /// Checks the house naming rules: `fpn_` prefix, `[a-z0-9_]`, counters end in `_total`,
    /// histograms in `_seconds`, no `_total` on anything else, help text present.
    pub fn check(&self) -> Result<(), String> {
        let name = self.name;
        let fail = |why: &str| Err(format!("metric {name:?}: {why}"));
        if !name.starts_with("fpn_") {
            return fail("must start with `fpn_`");
        }
        if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return fail("only [a-z0-9_] allowed");
        }
        if self.help.is_empty() || self.help.contains('\n') {
            return fail("help must be one non-empty line");
        }
        match self.kind {
            MetricKind::Counter if !name.ends_with("_total") => fail("counters end in `_total`"),
            MetricKind::Histogram if !name.ends_with("_seconds") => fail("histograms end in `_seconds`"),
            MetricKind::Gauge | MetricKind::Histogram if name.ends_with("_total") => {
                fail("only counters end in `_total`")
            }
            _ => Ok(()),
        }
    }
}

pub static RING_PUSH_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_ring_push_total", "Values pushed into an SPSC ring.");
pub static RING_FULL_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_ring_full_total",
    "Pushes refused because the ring was full (value handed back to the caller).",
);
pub static RING_POP_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_ring_pop_total", "Values taken out of an SPSC ring.");
pub static RING_OCCUPIED_SLOTS: MetricDesc =
    MetricDesc::gauge("fpn_ring_occupied_slots", "Values waiting in an SPSC ring at the last publish.");
pub static IDLE_SPIN_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_idle_spin_total", "Idle run-loop iterations answered with a spin hint.");
pub static IDLE_YIELD_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_idle_yield_total", "Run-loop yields to the executor.");
pub static IDLE_PARK_TOTAL: MetricDesc =
    MetricDesc::counter("fpn_idle_park_total", "Run-loop parks (sleeps).");
pub static METRICS_PUBLISH_SKIP_TOTAL: MetricDesc = MetricDesc::counter(
    "fpn_metrics_publish_skip_total",
    "Housekeeping publishes skipped because the admin side held the shard's slot.",
);

/// The metrics this crate publishes (register them with [`MetricsHub::describe`]).
pub static RUNTIME_METRICS: [&MetricDesc; 8] = [
    &RING_PUSH_TOTAL,
    &RING_FULL_TOTAL,
    &RING_POP_TOTAL,
    &RING_OCCUPIED_SLOTS,
    &IDLE_SPIN_TOTAL,
    &IDLE_YIELD_TOTAL,
    &IDLE_PARK_TOTAL,
    &METRICS_PUBLISH_SKIP_TOTAL,
];

/// A shard-local counter: a plain `u64`, no atomics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter(u64);

impl Counter {
    #[inline]
    pub fn inc(&mut self) {
        self.0 += 1;
    }
    #[inline]
    pub fn add(&mut self, n: u64) {
        self.0 += n;
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0
    }
}

/// A shard-local latency histogram in nanoseconds with an exact sum.
#[derive(Clone, Debug)]
pub struct Histogram {
    hist: hdrhistogram::Histogram<u64>,
    sum_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// Allocates the fixed-bounds histogram (do it at start-up).
    pub fn new() -> Self {
        let hist =
            hdrhistogram::Histogram::new_with_bounds(HISTOGRAM_NS_MIN, HISTOGRAM_NS_MAX, HISTOGRAM_SIGFIG)
                .expect("constant histogram bounds are valid");
        Self { hist, sum_ns: 0 }
    }

    /// Records one latency; values above 60 s are clamped to 60 s.
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        let ns = ns.min(HISTOGRAM_NS_MAX);
        self.hist.saturating_record(ns);
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// Records one latency given as a `Duration`.
    #[inline]
    pub fn record(&mut self, latency: Duration) {
        self.record_ns(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Exact sum of the recorded (clamped) values.
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns
    }

    /// The value at `quantile` (0.0 ..= 1.0), within 0.1 %; 0 when empty.
    pub fn value_at_quantile_ns(&self, quantile: f64) -> u64 {
        self.hist.value_at_quantile(quantile)
    }

    pub fn max_ns(&self) -> u64 {
        self.hist.max()
    }

    pub fn reset(&mut self) {
        self.hist.reset();
        self.sum_ns = 0;
    }

    /// Adds another histogram's values (same bounds: no allocation).
    pub fn merge(&mut self, other: &Histogram) {
        self.hist.add(&other.hist).expect("histograms share constant bounds");
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// Becomes a copy of `other` without allocating.
    pub fn copy_from(&mut self, other: &Histogram) {
        self.reset();
        self.merge(other);
    }

    /// Cumulative counts for [`BUCKET_BOUNDS_NS`] then `+Inf`. A value counts in a bucket
    /// when the lowest value of its HdrHistogram cell is `<=` the bound: a value exactly at
    /// a bound counts in it, and one within 0.1 % above a bound may too.
    pub fn cumulative_buckets(&self) -> [u64; BUCKET_BOUNDS_NS.len() + 1] {
        let mut counts = [0u64; BUCKET_BOUNDS_NS.len() + 1];
        for cell in self.hist.iter_recorded() {
            let value = self.hist.lowest_equivalent(cell.value_iterated_to());
            let index =
                BUCKET_BOUNDS_NS.iter().position(|&bound| value <= bound).unwrap_or(BUCKET_BOUNDS_NS.len());
            counts[index] += cell.count_at_value();
        }
        let mut running = 0;
        for count in &mut counts {
            running += *count;
            *count = running;
        }
        counts
    }
}

/// Extra labels of a series besides `shard`, fixed at start-up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels {
    pairs: Vec<(String, String)>,
}

impl Labels {
    /// No extra labels.
    pub fn none() -> Self {
        Self::default()
    }

    /// Labels from `(name, value)` pairs.
    ///
    /// # Panics
    /// On a label name outside `[a-z_][a-z0-9_]*` or the reserved names `shard` and `le`.
    pub fn new(pairs: &[(&str, &str)]) -> Self {
        for (name, _) in pairs {
            let ok = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && *name != "shard"
                && *name != "le";
            assert!(ok, "bad label name {name:?}");
        }
        Self { pairs: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }
}

#[derive(Clone, Debug)]
enum SeriesValue {
    Counter(u64),
    Gauge(i64),
    Histogram(Box<Histogram>),
}

#[derive(Clone, Debug)]
struct Series {
    desc: &'static MetricDesc,
    labels: Labels,
    value: SeriesValue,
}

/// The published values of one shard.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    series: Vec<Series>,
    /// Where the next lookup starts: a role publishes the same series in the same order
    /// every time, so the next series is almost always the one after the last.
    cursor: usize,
}

impl Snapshot {
    fn slot(
        &mut self,
        desc: &'static MetricDesc,
        labels: &Labels,
        init: impl FnOnce() -> SeriesValue,
    ) -> &mut SeriesValue {
        let matches = |s: &Series| std::ptr::eq(s.desc, desc) && s.labels == *labels;
        let hint = self.series.get(self.cursor).is_some_and(matches).then_some(self.cursor);
        let index = match hint.or_else(|| self.series.iter().position(matches)) {
            Some(index) => index,
            None => {
                self.series.push(Series { desc, labels: labels.clone(), value: init() });
                self.series.len() - 1
            }
        };
        self.cursor = index + 1;
        &mut self.series[index].value
    }

    /// Sets a counter series.
    ///
    /// # Panics
    /// If `desc` is not a counter.
    pub fn counter(&mut self, desc: &'static MetricDesc, labels: &Labels, value: u64) {
        assert_eq!(desc.kind, MetricKind::Counter, "{} is not a counter", desc.name);
        if let SeriesValue::Counter(v) = self.slot(desc, labels, || SeriesValue::Counter(0)) {
            *v = value;
        }
    }

    /// Sets a gauge series.
    ///
    /// # Panics
    /// If `desc` is not a gauge.
    pub fn gauge(&mut self, desc: &'static MetricDesc, labels: &Labels, value: i64) {
        assert_eq!(desc.kind, MetricKind::Gauge, "{} is not a gauge", desc.name);
        if let SeriesValue::Gauge(v) = self.slot(desc, labels, || SeriesValue::Gauge(0)) {
            *v = value;
        }
    }

    /// Copies a histogram series (allocates only the first time the series is seen).
    ///
    /// # Panics
    /// If `desc` is not a histogram.
    pub fn histogram(&mut self, desc: &'static MetricDesc, labels: &Labels, value: &Histogram) {
        assert_eq!(desc.kind, MetricKind::Histogram, "{} is not a histogram", desc.name);
        if let SeriesValue::Histogram(h) = self.slot(desc, labels, || SeriesValue::Histogram(Box::default()))
        {
            h.copy_from(value);
        }
    }

    /// Publishes a ring producer's counters under `labels` (e.g. `ring="intake"`).
    pub fn ring_tx(&mut self, labels: &Labels, counters: TxCounters, occupied_slots: usize) {
        self.counter(&RING_PUSH_TOTAL, labels, counters.pushed_total);
        self.counter(&RING_FULL_TOTAL, labels, counters.full_total);
        self.gauge(&RING_OCCUPIED_SLOTS, labels, i64::try_from(occupied_slots).unwrap_or(i64::MAX));
    }

    /// Publishes a ring consumer's counters under `labels`.
    pub fn ring_rx(&mut self, labels: &Labels, counters: RxCounters) {
        self.counter(&RING_POP_TOTAL, labels, counters.popped_total);
    }

    /// Publishes a run loop's idle counters.
    pub fn idle(&mut self, labels: &Labels, counters: IdleCounters) {
        self.counter(&IDLE_SPIN_TOTAL, labels, counters.spins_total);
        self.counter(&IDLE_YIELD_TOTAL, labels, counters.yields_total);
        self.counter(&IDLE_PARK_TOTAL, labels, counters.parks_total);
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// One metric and its series from every shard: `(desc, [(shard, series)])`.
type Group = (&'static MetricDesc, Vec<(String, Series)>);

#[derive(Debug)]
struct ShardSlot {
    shard: String,
    snapshot: Mutex<Snapshot>,
}

/// The shard's handle for publishing in housekeeping.
#[derive(Debug)]
pub struct ShardPublisher {
    slot: Arc<ShardSlot>,
    skipped_total: u64,
}

impl ShardPublisher {
    /// Lets `write` update the shard's published snapshot, unless the admin side holds it
    /// right now: then nothing is written, the skip is counted, and `false` is returned.
    pub fn publish(&mut self, write: impl FnOnce(&mut Snapshot)) -> bool {
        let mut guard = match self.slot.snapshot.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => {
                self.skipped_total += 1;
                return false;
            }
            // A panic elsewhere while holding the lock left plain values: keep publishing.
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        };
        guard.cursor = 0;
        write(&mut guard);
        guard.counter(&METRICS_PUBLISH_SKIP_TOTAL, &Labels::default(), self.skipped_total);
        true
    }

    /// Publishes that were skipped so far.
    pub fn skipped_total(&self) -> u64 {
        self.skipped_total
    }

    pub fn shard(&self) -> &str {
        &self.slot.shard
    }
}

/// All shards' published snapshots plus the metric descriptions; owned by the admin side.
#[derive(Debug, Default)]
pub struct MetricsHub {
    slots: Mutex<Vec<Arc<ShardSlot>>>,
    descs: Mutex<BTreeMap<&'static str, &'static MetricDesc>>,
}

impl MetricsHub {
    /// A hub that already knows [`RUNTIME_METRICS`].
    pub fn new() -> Self {
        let hub = Self::default();
        hub.describe(&RUNTIME_METRICS);
        hub
    }

    /// Registers metric descriptions so they render (HELP/TYPE) even before any series.
    ///
    /// # Panics
    /// On a name breaking [`MetricDesc::check`] or registered twice with another description.
    pub fn describe(&self, descs: &[&'static MetricDesc]) {
        let mut known = lock(&self.descs);
        for desc in descs {
            if let Err(why) = desc.check() {
                panic!("{why}");
            }
            let previous = known.insert(desc.name, desc);
            assert!(previous.is_none_or(|p| p == *desc), "metric {} described twice differently", desc.name);
        }
    }

    /// Adds a shard and returns its publisher. Each shard name is used once.
    ///
    /// # Panics
    /// If `shard` is already registered.
    pub fn register(&self, shard: &str) -> ShardPublisher {
        let mut slots = lock(&self.slots);
        assert!(shard != SHARD_ALL, "shard name {SHARD_ALL:?} is reserved for merged histograms");
        assert!(slots.iter().all(|s| s.shard != shard), "shard {shard:?} registered twice");
        let slot =
            Arc::new(ShardSlot { shard: shard.to_string(), snapshot: Mutex::new(Snapshot::default()) });
        slots.push(slot.clone());
        ShardPublisher { slot, skipped_total: 0 }
    }

    /// Copies every shard's snapshot (each lock held only for the copy).
    fn collect(&self) -> Vec<(String, Snapshot)> {
        let slots: Vec<Arc<ShardSlot>> = lock(&self.slots).clone();
        slots.iter().map(|slot| (slot.shard.clone(), lock(&slot.snapshot).clone())).collect()
    }

    /// Groups all series by metric name: `(desc, [(shard, series)])`, names sorted.
    fn grouped(&self) -> Vec<Group> {
        let mut groups: BTreeMap<&'static str, Group> =
            lock(&self.descs).iter().map(|(name, desc)| (*name, (*desc, Vec::new()))).collect();
        for (shard, snapshot) in self.collect() {
            for series in snapshot.series {
                groups
                    .entry(series.desc.name)
                    .or_insert_with(|| (series.desc, Vec::new()))
                    .1
                    .push((shard.clone(), series));
            }
        }
        groups.into_values().collect()
    }

    /// Groups as [`MetricsHub::grouped`], each histogram metric followed by its series merged
    /// across shards (`shard="all"`, one per set of other labels, in first-seen order).
    fn grouped_with_merged(&self) -> Vec<Group> {
        let mut groups = self.grouped();
        for (desc, series) in &mut groups {
            if desc.kind != MetricKind::Histogram {
                continue;
            }
            let mut merged: Vec<Series> = Vec::new();
            for (_, s) in series.iter() {
                let SeriesValue::Histogram(h) = &s.value else { continue };
                match merged.iter_mut().find(|m| m.labels == s.labels) {
                    Some(Series { value: SeriesValue::Histogram(m), .. }) => m.merge(h),
                    _ => merged.push(Series {
                        desc: s.desc,
                        labels: s.labels.clone(),
                        value: SeriesValue::Histogram(h.clone()),
                    }),
                }
            }
            series.extend(merged.into_iter().map(|m| (SHARD_ALL.to_string(), m)));
        }
        groups
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        for (desc, series) in self.grouped_with_merged() {
            let _ = writeln!(out, "# HELP {} {}", desc.name, escape_help(desc.help));
            let _ = writeln!(out, "# TYPE {} {}", desc.name, desc.kind.as_str());
            for (shard, series) in series {
                let labels = prom_labels(&shard, &series.labels);
                match &series.value {
                    SeriesValue::Counter(v) => {
                        let _ = writeln!(out, "{}{{{labels}}} {v}", desc.name);
                    }
                    SeriesValue::Gauge(v) => {
                        let _ = writeln!(out, "{}{{{labels}}} {v}", desc.name);
                    }
                    SeriesValue::Histogram(h) => {
                        let counts = h.cumulative_buckets();
                        for (bound, count) in BUCKET_BOUNDS_NS.iter().zip(counts) {
                            let le = seconds(*bound);
                            let _ = writeln!(out, "{}_bucket{{{labels},le=\"{le}\"}} {count}", desc.name);
                        }
                        let _ = writeln!(out, "{}_bucket{{{labels},le=\"+Inf\"}} {}", desc.name, h.count());
                        let _ = writeln!(out, "{}_sum{{{labels}}} {}", desc.name, seconds(h.sum_ns()));
                        let _ = writeln!(out, "{}_count{{{labels}}} {}", desc.name, h.count());
                    }
                }
            }
        }
        out
    }

    /// JSON form: `{"metrics":[{"name","type","help","series":[{"labels":{..},"value"}|
    /// {"labels","count","sum_seconds","p50_seconds","p99_seconds","p999_seconds","max_seconds"}]}]}`.
    pub fn render_json(&self) -> String {
        let metrics: Vec<serde_json::Value> = self
            .grouped_with_merged()
            .into_iter()
            .map(|(desc, series)| {
                let series: Vec<serde_json::Value> = series
                    .into_iter()
                    .map(|(shard, series)| {
                        let mut labels = serde_json::Map::new();
                        labels.insert("shard".into(), shard.into());
                        for (k, v) in &series.labels.pairs {
                            labels.insert(k.clone(), v.clone().into());
                        }
                        match &series.value {
                            SeriesValue::Counter(v) => serde_json::json!({"labels": labels, "value": v}),
                            SeriesValue::Gauge(v) => serde_json::json!({"labels": labels, "value": v}),
                            SeriesValue::Histogram(h) => serde_json::json!({
                                "labels": labels,
                                "count": h.count(),
                                "sum_seconds": seconds(h.sum_ns()),
                                "p50_seconds": seconds(h.value_at_quantile_ns(0.5)),
                                "p99_seconds": seconds(h.value_at_quantile_ns(0.99)),
                                "p999_seconds": seconds(h.value_at_quantile_ns(0.999)),
                                "max_seconds": seconds(h.max_ns()),
                            }),
                        }
                    })
                    .collect();
                serde_json::json!({
                    "name": desc.name,
                    "type": desc.kind.as_str(),
                    "help": desc.help,
                    "series": series,
                })
            })
            .collect();
        serde_json::json!({ "metrics": metrics }).to_string()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn prom_labels(shard: &str, labels: &Labels) -> String {
    let mut out = format!("shard=\"{}\"", escape_label(shard));
    for (k, v) in &labels.pairs {
        let _ = write!(out, ",{k}=\"{}\"", escape_label(v));
    }
    out
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    static TEST_LATENCY_SECONDS: MetricDesc =
        MetricDesc::histogram("fpn_test_handle_seconds", "Time to handle one test record.");
    static TEST_RECORDS_TOTAL: MetricDesc = MetricDesc::counter("fpn_test_records_total", "Test records.");

    #[test]
    fn names_are_checked() {
        for desc in RUNTIME_METRICS {
            desc.check().unwrap();
        }
        assert!(MetricDesc::counter("fpn_x_count", "h").check().is_err());
        assert!(MetricDesc::counter("x_total", "h").check().is_err());
        assert!(MetricDesc::histogram("fpn_x_ns", "h").check().is_err());
        assert!(MetricDesc::gauge("fpn_x_total", "h").check().is_err());
        assert!(MetricDesc::gauge("fpn_X_slots", "h").check().is_err());
        assert!(MetricDesc::gauge("fpn_x_slots", "").check().is_err());
    }

    #[test]
    fn histogram_clamps_sums_and_buckets() {
        let mut h = Histogram::new();
        h.record_ns(800);
        h.record_ns(800);
        h.record(Duration::from_micros(3));
        h.record_ns(120_000_000_000);
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum_ns(), 800 + 800 + 3_000 + HISTOGRAM_NS_MAX);
        let b = h.cumulative_buckets();
        assert_eq!(b[2], 0, "le 500ns");
        assert_eq!(b[3], 2, "le 1us");
        assert_eq!(b[5], 3, "le 5us");
        assert_eq!(b[BUCKET_BOUNDS_NS.len() - 1], 4, "le 60s");
        assert_eq!(b[BUCKET_BOUNDS_NS.len()], 4, "+Inf");
        let mut copy = Histogram::new();
        copy.record_ns(1);
        copy.copy_from(&h);
        assert_eq!((copy.count(), copy.sum_ns()), (4, h.sum_ns()));
        assert!(copy.value_at_quantile_ns(0.5).abs_diff(800) <= 1);
    }

    #[test]
    fn prometheus_and_json_render_all_shards() {
        let hub = MetricsHub::new();
        hub.describe(&[&TEST_LATENCY_SECONDS, &TEST_RECORDS_TOTAL]);
        let mut a = hub.register("builder-0");
        let mut b = hub.register("intake \"q\"");
        let mut h = Histogram::new();
        h.record_ns(2_000);
        let ring = Labels::new(&[("ring", "intake")]);
        assert!(a.publish(|s| {
            s.counter(&TEST_RECORDS_TOTAL, &Labels::none(), 7);
            s.histogram(&TEST_LATENCY_SECONDS, &Labels::none(), &h);
            s.ring_tx(&ring, TxCounters { pushed_total: 5, full_total: 1 }, 3);
        }));
        assert!(b.publish(|s| s.counter(&TEST_RECORDS_TOTAL, &Labels::none(), 2)));
        let text = hub.render_prometheus();
        for line in [
            "# HELP fpn_test_records_total Test records.",
            "# TYPE fpn_test_records_total counter",
            "fpn_test_records_total{shard=\"builder-0\"} 7",
            "fpn_test_records_total{shard=\"intake \\\"q\\\"\"} 2",
            "# TYPE fpn_test_handle_seconds histogram",
            "fpn_test_handle_seconds_bucket{shard=\"builder-0\",le=\"0.000001\"} 0",
            "fpn_test_handle_seconds_bucket{shard=\"builder-0\",le=\"0.0000025\"} 1",
            "fpn_test_handle_seconds_bucket{shard=\"builder-0\",le=\"+Inf\"} 1",
            "fpn_test_handle_seconds_sum{shard=\"builder-0\"} 0.000002",
            "fpn_test_handle_seconds_count{shard=\"builder-0\"} 1",
            "fpn_ring_push_total{shard=\"builder-0\",ring=\"intake\"} 5",
            "fpn_ring_full_total{shard=\"builder-0\",ring=\"intake\"} 1",
            "fpn_ring_occupied_slots{shard=\"builder-0\",ring=\"intake\"} 3",
            "fpn_metrics_publish_skip_total{shard=\"builder-0\"} 0",
            "# TYPE fpn_idle_park_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // HELP/TYPE appear once per metric even with two shards.
        assert_eq!(text.matches("# TYPE fpn_test_records_total").count(), 1);

        let json: serde_json::Value = serde_json::from_str(&hub.render_json()).unwrap();
        let metrics = json["metrics"].as_array().unwrap();
        let records = metrics.iter().find(|m| m["name"] == "fpn_test_records_total").unwrap();
        assert_eq!(records["type"], "counter");
        assert_eq!(records["series"][0]["labels"]["shard"], "builder-0");
        assert_eq!(records["series"][0]["value"], 7);
        let latency = metrics.iter().find(|m| m["name"] == "fpn_test_handle_seconds").unwrap();
        assert_eq!(latency["series"][0]["count"], 1);
        assert!((latency["series"][0]["p50_seconds"].as_f64().unwrap() - 2e-6).abs() < 1e-8);
    }

    /// The series lines of `name{shard="<shard>"...}` in `text`, without the shard label.
    fn series_lines(text: &str, name: &str, shard: &str) -> Vec<String> {
        let prefix = format!("shard=\"{shard}\"");
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(&prefix))
            .map(|l| l.replacen(&prefix, "", 1))
            .collect()
    }

    fn value(line: &str) -> f64 {
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn histograms_are_also_rendered_merged_across_shards() {
        let hub = MetricsHub::new();
        hub.describe(&[&TEST_LATENCY_SECONDS]);
        let ring = Labels::new(&[("ring", "r")]);
        let (mut a, mut b) = (hub.register("builder0"), hub.register("builder1"));
        let (mut ha, mut hb) = (Histogram::new(), Histogram::new());
        for ns in [300, 800, 2_000, 40_000] {
            ha.record_ns(ns);
        }
        for ns in [90, 800, 7_000_000, 3_000_000_000] {
            hb.record_ns(ns);
        }
        a.publish(|s| {
            s.histogram(&TEST_LATENCY_SECONDS, &Labels::none(), &ha);
            s.histogram(&TEST_LATENCY_SECONDS, &ring, &ha);
        });
        b.publish(|s| s.histogram(&TEST_LATENCY_SECONDS, &Labels::none(), &hb));
        let text = hub.render_prometheus();
        let name = TEST_LATENCY_SECONDS.name;

        // Per shard, unchanged.
        let (la, lb) = (series_lines(&text, name, "builder0"), series_lines(&text, name, "builder1"));
        let all = series_lines(&text, name, SHARD_ALL);
        // Unlabelled: buckets, sum and count of the merged series are the sums of the shards'.
        let unlabelled = |lines: &[String]| -> Vec<String> {
            lines.iter().filter(|l| !l.contains("ring=")).cloned().collect()
        };
        let (ua, ub, uall) = (unlabelled(&la), unlabelled(&lb), unlabelled(&all));
        assert_eq!(ua.len(), BUCKET_BOUNDS_NS.len() + 3);
        assert_eq!(uall.len(), ua.len());
        for ((x, y), m) in ua.iter().zip(&ub).zip(&uall) {
            assert_eq!(x.rsplit_once(' ').unwrap().0, m.rsplit_once(' ').unwrap().0, "same series");
            assert!((value(x) + value(y) - value(m)).abs() < 1e-12, "{x} + {y} != {m}");
        }
        assert!(uall.iter().any(|l| l == &format!("{name}_count{{}} 8")), "{uall:?}");
        let sum_s = (300 + 800 + 2_000 + 40_000 + 90 + 800 + 7_000_000 + 3_000_000_000u64) as f64 / 1e9;
        assert!(
            uall.iter()
                .any(|l| l.starts_with(&format!("{name}_sum{{}}")) && (value(l) - sum_s).abs() < 1e-12)
        );
        // Other labels are kept apart: the `ring` series has one shard, so its merge is a copy.
        let ring_all: Vec<&String> = all.iter().filter(|l| l.contains("ring=")).collect();
        assert_eq!(ring_all.len(), BUCKET_BOUNDS_NS.len() + 3);
        assert!(ring_all.iter().any(|l| l.ends_with("_count{,ring=\"r\"} 4")), "{ring_all:?}");

        // The same merge in the JSON form.
        let json: serde_json::Value = serde_json::from_str(&hub.render_json()).unwrap();
        let m = json["metrics"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap();
        let merged = m["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["labels"]["shard"] == SHARD_ALL && s["labels"].get("ring").is_none())
            .unwrap();
        assert_eq!(merged["count"], 8);
        assert!((merged["max_seconds"].as_f64().unwrap() - 3.0).abs() < 0.01);
        // Counters are not merged.
        assert!(!text.contains("fpn_metrics_publish_skip_total{shard=\"all\"}"));
    }

    #[test]
    #[should_panic(expected = "reserved")]
    fn the_merged_shard_name_is_reserved() {
        let _ = MetricsHub::new().register(SHARD_ALL);
    }

    #[test]
    fn republish_updates_in_place_and_busy_slot_is_skipped() {
        let hub = MetricsHub::new();
        let mut p = hub.register("s");
        p.publish(|s| s.counter(&RING_POP_TOTAL, &Labels::none(), 1));
        p.publish(|s| s.counter(&RING_POP_TOTAL, &Labels::none(), 2));
        {
            let slots = lock(&hub.slots);
            let snapshot = lock(&slots[0].snapshot);
            assert_eq!(snapshot.len(), 2, "pop + publish-skip series, not duplicated");
            // While the admin side holds the slot, the shard does not wait.
            assert!(!p.publish(|_| panic!("must not run while the slot is held")));
        }
        assert_eq!(p.skipped_total(), 1);
        assert!(p.publish(|_| {}));
        assert!(hub.render_prometheus().contains("fpn_metrics_publish_skip_total{shard=\"s\"} 1\n"));
        assert!(hub.render_prometheus().contains("fpn_ring_pop_total{shard=\"s\"} 2\n"));
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn shard_names_are_unique() {
        let hub = MetricsHub::new();
        let _a = hub.register("x");
        let _b = hub.register("x");
    }

    #[test]
    #[should_panic(expected = "bad label name")]
    fn reserved_label_names_are_refused() {
        let _ = Labels::new(&[("shard", "x")]);
    }
}
