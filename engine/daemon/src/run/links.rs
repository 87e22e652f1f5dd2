//! Named, bounded rings between roles, and the adapters that let the sans-IO cores use them.
//!
//! [`Links`] is the topology's ring registry: [`Links::stamped`] and [`Links::plain`] make a
//! ring of a fixed capacity under a name (`intake0_builder0`: producer, then consumer), and
//! each role takes the ends it uses by name ([`Links::tx`], [`Links::rx`], ...). An end taken
//! twice, or of the wrong type, is a programmer error and panics at start-up with the ring's
//! name; [`Links::assert_all_taken`] checks that no ring was left without its producer or
//! consumer. The name is also the `ring` label of the ring's metrics.
//!
//! Two kinds of ring:
//! - stamped ([`TxQ`]/[`RxQ`]): every message carries the time it was pushed, and the consumer
//!   records the transit in a local histogram (`fpn_ring_transit_latency_seconds`). The
//!   engine's record path: intake → builder → merger.
//! - plain ([`TxLink`]/[`RxLink`]): the runtime's ring and its label, for rings whose transit
//!   nobody needs per message (answers, result buffers, announcements).
//!
//! `fpn_engine::shard` cores push into a [`Sink`] and pop from a [`Source`]; [`TxQ`]/[`RxQ`]
//! implement both (the traits and the ring types are foreign to this crate, hence the
//! newtypes).

use std::any::Any;
use std::collections::BTreeMap;

use fpn_engine::shard::{Full, IntakeSink, Sink, Source, ToBuilder, ToMerger};
use fpn_log::LogMsg;
use fpn_runtime::metrics::{Histogram, Labels, Snapshot};
use fpn_runtime::ring::{Rx, Tx, ring};

use super::role::RING_TRANSIT_SECONDS;

/// A message and the time it was pushed.
#[derive(Debug, Clone, Copy)]
pub struct Stamped<T> {
    pub sent_ns: u64,
    pub msg: T,
}

/// Producer end of a stamped ring: stamps with `now_ns`, which the owning loop sets once per
/// iteration.
#[derive(Debug)]
pub struct TxQ<T> {
    pub tx: Tx<Stamped<T>>,
    pub now_ns: u64,
    pub labels: Labels,
}

/// Consumer end of a stamped ring: records `now_ns - sent_ns` of each popped message.
#[derive(Debug)]
pub struct RxQ<T> {
    pub rx: Rx<Stamped<T>>,
    pub now_ns: u64,
    pub transit: Histogram,
    pub labels: Labels,
}

/// Producer end of a plain ring, with its metric label.
#[derive(Debug)]
pub struct TxLink<T> {
    pub tx: Tx<T>,
    pub labels: Labels,
}

/// Consumer end of a plain ring, with its metric label.
#[derive(Debug)]
pub struct RxLink<T> {
    pub rx: Rx<T>,
    pub labels: Labels,
}

/// A stamped ring named `name` (the `ring` label of its metrics).
pub fn stamped_ring<T>(capacity: usize, name: &str) -> (TxQ<T>, RxQ<T>) {
    let (tx, rx) = ring(capacity);
    let labels = Labels::new(&[("ring", name)]);
    (TxQ { tx, now_ns: 0, labels: labels.clone() }, RxQ { rx, now_ns: 0, transit: Histogram::new(), labels })
}

impl<T> TxQ<T> {
    pub fn publish(&self, s: &mut Snapshot) {
        s.ring_tx(&self.labels, self.tx.counters(), self.tx.occupancy());
    }
}

impl<T> RxQ<T> {
    pub fn publish(&self, s: &mut Snapshot) {
        s.ring_rx(&self.labels, self.rx.counters());
        s.histogram(&RING_TRANSIT_SECONDS, &self.labels, &self.transit);
    }
}

impl<T> TxLink<T> {
    pub fn publish(&self, s: &mut Snapshot) {
        s.ring_tx(&self.labels, self.tx.counters(), self.tx.occupancy());
    }
}

impl<T> RxLink<T> {
    pub fn publish(&self, s: &mut Snapshot) {
        s.ring_rx(&self.labels, self.rx.counters());
    }
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
    /// builder reads the meta and the keys it has (`BENCHMARKS.md`, "Reading ring slots in
    /// place").
    #[inline]
    fn read_with(&mut self, count_max: usize, mut f: impl FnMut(&T) -> bool) -> usize {
        let (now_ns, transit) = (self.now_ns, &mut self.transit);
        self.rx.read_with(count_max, |s| {
            transit.record_ns(now_ns.saturating_sub(s.sent_ns).max(1));
            f(&s.msg)
        })
    }
}

/// An intake's ring to the log role (`intake<i>_log`): a copy of every message it pushed
/// that the log keeps ([`LogMsg::is_logged`]), and how many it pushed, which is the log
/// position a record's receipt waits for (`docs/log.md`, "Durability"). Without a log (the
/// e2e bench's topology), nothing is copied.
#[derive(Debug)]
pub struct LogTx {
    pub tx: Option<TxLink<LogMsg>>,
    pub pushed: u64,
}

impl LogTx {
    /// Free slots (all of them without a log).
    #[inline]
    pub fn room(&self) -> usize {
        self.tx.as_ref().map_or(usize::MAX, |l| l.tx.slots_free())
    }

    /// Copies `msg`; the caller checked [`LogTx::room`].
    #[inline]
    fn push(&mut self, msg: LogMsg) {
        if let Some(l) = &mut self.tx
            && msg.is_logged()
        {
            let pushed = l.tx.try_push(msg);
            debug_assert!(pushed.is_ok(), "log room was checked");
            self.pushed += 1;
        }
    }
}

/// An intake's output rings, as the intake core sees them. A message goes to its ring and
/// to the log ring, or to neither (`Full` when either has no room).
pub struct IntakeRings<'a> {
    pub to_builder: &'a mut [TxQ<ToBuilder>],
    pub to_merger: &'a mut TxQ<ToMerger>,
    pub log: &'a mut LogTx,
}

impl IntakeSink for IntakeRings<'_> {
    #[inline]
    fn to_builder(&mut self, shard: usize, msg: ToBuilder) -> Result<(), Full<ToBuilder>> {
        if self.log.room() == 0 {
            return Err(Full(msg));
        }
        self.to_builder[shard].push(msg)?;
        self.log.push(LogMsg::Builder { shard: shard as u16, msg });
        Ok(())
    }

    #[inline]
    fn to_merger(&mut self, msg: ToMerger) -> Result<(), Full<ToMerger>> {
        if self.log.room() == 0 {
            return Err(Full(msg));
        }
        self.to_merger.push(msg)?;
        self.log.push(LogMsg::Merger(msg));
        Ok(())
    }

    fn builder_room(&self, shard: usize) -> usize {
        self.to_builder[shard].tx.slots_free().min(self.log.room())
    }

    fn merger_room(&self) -> usize {
        self.to_merger.tx.slots_free().min(self.log.room())
    }
}

/// The rings of a topology by name, until each end is taken by its role. See the module doc.
#[derive(Default)]
pub struct Links {
    ends: BTreeMap<String, Box<dyn Any + Send>>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links").field("ends", &self.ends.keys().collect::<Vec<_>>()).finish()
    }
}

impl Links {
    pub fn new() -> Links {
        Links::default()
    }

    fn insert<E: Any + Send>(&mut self, key: String, end: E) {
        let previous = self.ends.insert(key, Box::new(end));
        assert!(previous.is_none(), "a ring end declared twice");
    }

    fn take<E: Any>(&mut self, key: String) -> E {
        let end =
            self.ends.remove(&key).unwrap_or_else(|| panic!("ring end {key} not declared, or taken twice"));
        *end.downcast::<E>().unwrap_or_else(|_| panic!("ring end {key} taken as the wrong type"))
    }

    /// A stamped ring of `capacity` messages named `name`.
    pub fn stamped<T: Send + 'static>(&mut self, name: &str, capacity: usize) {
        let (tx, rx) = stamped_ring::<T>(capacity, name);
        self.insert(format!("{name}.tx"), tx);
        self.insert(format!("{name}.rx"), rx);
    }

    /// A plain ring of `capacity` messages named `name`.
    pub fn plain<T: Send + 'static>(&mut self, name: &str, capacity: usize) {
        let (tx, rx) = ring::<T>(capacity);
        let labels = Labels::new(&[("ring", name)]);
        self.insert(format!("{name}.tx"), TxLink { tx, labels: labels.clone() });
        self.insert(format!("{name}.rx"), RxLink { rx, labels });
    }

    /// A plain ring that starts holding `preloaded` values (a pool of buffers its consumer
    /// takes and its producer gives back).
    pub fn pool<T: Send + 'static>(
        &mut self,
        name: &str,
        capacity: usize,
        preloaded: impl IntoIterator<Item = T>,
    ) {
        self.plain::<T>(name, capacity);
        let mut tx: TxLink<T> = self.take(format!("{name}.tx"));
        for value in preloaded {
            assert!(tx.tx.try_push(value).is_ok(), "pool {name} holds its preloaded values");
        }
        self.insert(format!("{name}.tx"), tx);
    }

    pub fn tx<T: 'static>(&mut self, name: &str) -> TxQ<T> {
        self.take(format!("{name}.tx"))
    }

    pub fn rx<T: 'static>(&mut self, name: &str) -> RxQ<T> {
        self.take(format!("{name}.rx"))
    }

    pub fn plain_tx<T: 'static>(&mut self, name: &str) -> TxLink<T> {
        self.take(format!("{name}.tx"))
    }

    pub fn plain_rx<T: 'static>(&mut self, name: &str) -> RxLink<T> {
        self.take(format!("{name}.rx"))
    }

    /// The consumer end of `name` if that ring was declared (optional rings: proof
    /// announcements exist only with the prover on).
    pub fn try_plain_rx<T: 'static>(&mut self, name: &str) -> Option<RxLink<T>> {
        self.ends.contains_key(&format!("{name}.rx")).then(|| self.plain_rx(name))
    }

    /// The producer end of `name` if that ring was declared (optional rings: the prover's
    /// feed exists only with the prover on).
    pub fn try_plain_tx<T: 'static>(&mut self, name: &str) -> Option<TxLink<T>> {
        self.ends.contains_key(&format!("{name}.tx")).then(|| self.plain_tx(name))
    }

    /// Names of the ring ends nobody took yet.
    pub fn left(&self) -> Vec<&str> {
        self.ends.keys().map(String::as_str).collect()
    }

    /// Every ring has its producer and its consumer.
    ///
    /// # Panics
    /// Naming the ends left.
    pub fn assert_all_taken(&self) {
        assert!(self.ends.is_empty(), "ring ends nobody took: {:?}", self.left());
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

    #[test]
    fn ends_are_taken_once_by_name_and_type() {
        let mut links = Links::new();
        links.stamped::<u32>("a_b", 4);
        links.pool::<Vec<u8>>("pool", 4, (0..2).map(|_| Vec::new()));
        let mut pool: RxLink<Vec<u8>> = links.plain_rx("pool");
        assert_eq!(pool.rx.occupancy(), 2, "preloaded");
        assert!(pool.rx.pop().is_some());
        let _tx: TxQ<u32> = links.tx("a_b");
        assert_eq!(links.left(), ["a_b.rx", "pool.tx"]);
        assert!(links.try_plain_rx::<u8>("announcements").is_none());
        let wrong = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| links.rx::<u64>("a_b")));
        assert!(wrong.is_err(), "a ring end of the wrong type");
        let twice = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| links.rx::<u32>("a_b")));
        assert!(twice.is_err(), "the end was removed by the wrong-type take");
    }
}
