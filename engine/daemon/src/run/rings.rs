//! The engine's queue traits over the runtime's SPSC rings, with a send stamp per message.
//!
//! `fpn_engine::shard` cores push into a [`Sink`] and pop from a [`Source`]; the runtime's
//! rings are [`Tx`]/[`Rx`]. The adapters here join the two (both traits and ring types are
//! foreign to this crate, hence the newtypes) and stamp every message with the time it was
//! pushed, so the consumer records the ring transit time in a local histogram.

use std::sync::OnceLock;
use std::time::Instant;

use fpn_engine::shard::{Full, IntakeSink, ShardWindow, Sink, Source, ToBuilder, ToMerger};
use fpn_runtime::metrics::{Histogram, Labels};
use fpn_runtime::ring::{Rx, Tx, ring};

static EPOCH: OnceLock<(Instant, u64)> = OnceLock::new();

/// Nanoseconds since the Unix epoch (as `rx_ns` on the wire), but advancing with the
/// monotonic clock (`Instant`): the wall clock is read once, at the first call, and only the
/// monotonic time since then is added. Every thread reads the same clock, so stamps compare
/// across cores and a wall-clock step never makes a latency negative.
#[inline]
pub fn now_ns() -> u64 {
    let (start, wall_ns) = *EPOCH.get_or_init(|| {
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (Instant::now(), u64::try_from(wall.as_nanos()).unwrap_or(0))
    });
    wall_ns.saturating_add(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// A message and the time it was pushed.
#[derive(Debug, Clone, Copy)]
pub struct Stamped<T> {
    pub sent_ns: u64,
    pub msg: T,
}

/// Producer end: stamps with `now_ns`, which the owning loop sets once per iteration.
#[derive(Debug)]
pub struct TxQ<T> {
    pub tx: Tx<Stamped<T>>,
    pub now_ns: u64,
    pub labels: Labels,
}

/// Consumer end: records `now_ns - sent_ns` of each popped message in `transit`.
#[derive(Debug)]
pub struct RxQ<T> {
    pub rx: Rx<Stamped<T>>,
    pub now_ns: u64,
    pub transit: Histogram,
    pub labels: Labels,
}

/// The shard's and the worker's ends of the ring pair between builder shard `k` and build
/// worker `i` (`builder<k>_build<i>` and back), one window in flight each way.
pub struct WorkerRings {
    /// The shard's ends: windows to build, built windows back.
    pub shard: (TxQ<Box<ShardWindow>>, RxQ<Box<ShardWindow>>),
    /// The worker's ends.
    pub worker: (RxQ<Box<ShardWindow>>, TxQ<Box<ShardWindow>>),
}

impl WorkerRings {
    pub fn new(k: usize, i: usize) -> WorkerRings {
        let (to_tx, to_rx) = stamped_ring(1, &format!("builder{k}_build{i}"));
        let (from_tx, from_rx) = stamped_ring(1, &format!("build{i}_builder{k}"));
        WorkerRings { shard: (to_tx, from_rx), worker: (to_rx, from_tx) }
    }
}

/// A stamped ring named `name` (the `ring` label of its metrics).
pub fn stamped_ring<T>(capacity: usize, name: &str) -> (TxQ<T>, RxQ<T>) {
    let (tx, rx) = ring(capacity);
    let labels = Labels::new(&[("ring", name)]);
    (TxQ { tx, now_ns: 0, labels: labels.clone() }, RxQ { rx, now_ns: 0, transit: Histogram::new(), labels })
}

impl<T> Sink<T> for TxQ<T> {
    #[inline]
    fn push(&mut self, value: T) -> Result<(), Full<T>> {
        self.tx.try_push(Stamped { sent_ns: self.now_ns, msg: value }).map_err(|full| Full(full.0.msg))
    }
}

impl<T> Source<T> for RxQ<T> {
    #[inline]
    fn pop(&mut self) -> Option<T> {
        let s = self.rx.pop()?;
        self.transit.record_ns(self.now_ns.saturating_sub(s.sent_ns).max(1));
        Some(s.msg)
    }

    /// In place: a popped slot would be copied whole (592 bytes for an intent), while the
    /// builder reads the meta and the keys it has. Measured on the e2e bench: see
    /// `BENCHMARKS.md`.
    #[inline]
    fn read_with(&mut self, count_max: usize, mut f: impl FnMut(&T) -> bool) -> usize {
        let (now_ns, transit) = (self.now_ns, &mut self.transit);
        self.rx.read_with(count_max, |s| {
            transit.record_ns(now_ns.saturating_sub(s.sent_ns).max(1));
            f(&s.msg)
        })
    }
}

/// An intake's output rings, as the intake core sees them.
pub struct IntakeRings<'a> {
    pub to_builder: &'a mut [TxQ<ToBuilder>],
    pub to_merger: &'a mut TxQ<ToMerger>,
}

impl IntakeSink for IntakeRings<'_> {
    #[inline]
    fn to_builder(&mut self, shard: usize, msg: ToBuilder) -> Result<(), Full<ToBuilder>> {
        self.to_builder[shard].push(msg)
    }

    #[inline]
    fn to_merger(&mut self, msg: ToMerger) -> Result<(), Full<ToMerger>> {
        self.to_merger.push(msg)
    }

    fn builder_room(&self, shard: usize) -> usize {
        self.to_builder[shard].tx.slots_free()
    }

    fn merger_room(&self) -> usize {
        self.to_merger.tx.slots_free()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ring_hands_the_value_back_and_transit_is_recorded() {
        let (mut tx, mut rx) = stamped_ring::<u32>(2, "t");
        tx.now_ns = 100;
        assert!(tx.push(1).is_ok());
        assert!(tx.push(2).is_ok());
        assert_eq!(tx.push(3), Err(Full(3)));
        rx.now_ns = 350;
        assert_eq!(rx.pop(), Some(1));
        assert_eq!(rx.pop(), Some(2));
        assert_eq!(rx.pop(), None);
        assert_eq!(rx.transit.count(), 2);
        assert!((249..=251).contains(&rx.transit.max_ns()), "{}", rx.transit.max_ns());
    }

    #[test]
    fn read_with_reads_in_place_and_records_transit() {
        let (mut tx, mut rx) = stamped_ring::<u32>(4, "t");
        tx.now_ns = 100;
        for v in [1, 2, 3] {
            tx.push(v).unwrap();
        }
        rx.now_ns = 600;
        let mut seen = Vec::new();
        assert_eq!(
            rx.read_with(8, |&v| {
                seen.push(v);
                v < 2
            }),
            2
        );
        assert_eq!(seen, [1, 2]);
        assert_eq!(rx.pop(), Some(3));
        assert_eq!(rx.transit.count(), 3);
        assert!((499..=501).contains(&rx.transit.max_ns()), "{}", rx.transit.max_ns());
    }
}
