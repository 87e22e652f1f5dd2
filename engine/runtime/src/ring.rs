//! Bounded single-producer single-consumer rings between shards.
//!
//! A thin layer over [`rtrb`]: the capacity is fixed when the ring is made, a push into a
//! full ring hands the value back in [`Full`] (the caller decides: reject with reason
//! `overloaded`, retry next iteration, ...), and each end counts what went through it in
//! plain `u64` fields. The counters belong to the thread that owns the end; it reads them in
//! housekeeping and publishes them (see [`crate::metrics`]). Nothing here allocates after
//! [`ring`] returns.
//!
//! Call order for a shard: `Rx::drain`/`Rx::pop` on its inputs, work, `Tx::try_push` on its
//! outputs, and in housekeeping read `Tx::counters`/`Rx::counters`.

use std::fmt;

/// A push into a full ring: the value is handed back untouched.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> Full<T> {
    /// The value that did not fit.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ring full")
    }
}

impl<T> std::error::Error for Full<T> {}

/// Counters of the producing end, read by the owning shard in housekeeping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxCounters {
    /// Values accepted by the ring.
    pub pushed_total: u64,
    /// Pushes refused because the ring was full (value handed back).
    pub full_total: u64,
}

/// Counters of the consuming end, read by the owning shard in housekeeping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxCounters {
    /// Values taken out of the ring.
    pub popped_total: u64,
}

/// Producing end of a ring. `Send`, not `Clone`: exactly one producer.
pub struct Tx<T> {
    inner: rtrb::Producer<T>,
    pushed_total: u64,
    full_total: u64,
}

/// Consuming end of a ring. `Send`, not `Clone`: exactly one consumer.
pub struct Rx<T> {
    inner: rtrb::Consumer<T>,
    popped_total: u64,
}

/// Makes a ring holding at most `capacity` values. All memory is allocated here.
///
/// # Panics
/// If `capacity` is zero (a programmer error: every ring is sized from validated config).
pub fn ring<T>(capacity: usize) -> (Tx<T>, Rx<T>) {
    assert!(capacity > 0, "ring capacity must be at least 1");
    let (producer, consumer) = rtrb::RingBuffer::new(capacity);
    (Tx { inner: producer, pushed_total: 0, full_total: 0 }, Rx { inner: consumer, popped_total: 0 })
}

impl<T> Tx<T> {
    /// Pushes `value`, or hands it back in [`Full`] if the ring has no free slot.
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), Full<T>> {
        match self.inner.push(value) {
            Ok(()) => {
                self.pushed_total += 1;
                Ok(())
            }
            Err(rtrb::PushError::Full(value)) => {
                self.full_total += 1;
                Err(Full(value))
            }
        }
    }

    /// Free slots right now (a lower bound: the consumer may free more concurrently).
    #[inline]
    pub fn slots_free(&self) -> usize {
        self.inner.slots()
    }

    /// Values in the ring right now, as seen from the producer (an upper bound).
    #[inline]
    pub fn occupancy(&self) -> usize {
        self.capacity() - self.inner.slots()
    }

    /// The fixed capacity.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.inner.buffer().capacity()
    }

    /// True once the consumer end has been dropped.
    pub fn is_abandoned(&self) -> bool {
        self.inner.is_abandoned()
    }

    /// The local counters (plain reads, no synchronisation).
    #[inline]
    pub fn counters(&self) -> TxCounters {
        TxCounters { pushed_total: self.pushed_total, full_total: self.full_total }
    }
}

impl<T> Rx<T> {
    /// Takes the oldest value, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        match self.inner.pop() {
            Ok(value) => {
                self.popped_total += 1;
                Some(value)
            }
            Err(rtrb::PopError::Empty) => None,
        }
    }

    /// The oldest `min(count_max, available)` slots as one chunk; `None` when that is 0.
    #[inline]
    fn chunk(&mut self, count_max: usize) -> Option<rtrb::chunks::ReadChunk<'_, T>> {
        let count = self.inner.slots().min(count_max);
        if count == 0 {
            return None;
        }
        match self.inner.read_chunk(count) {
            Ok(chunk) => Some(chunk),
            // `count` never exceeds the slots seen above and only we consume.
            Err(rtrb::chunks::ChunkError::TooFewSlots(_)) => unreachable!("slots shrank under the consumer"),
        }
    }

    /// Takes up to `count_max` values in one batch (one index update for the whole batch)
    /// and hands each to `f`, oldest first. Returns how many were taken.
    #[inline]
    pub fn drain(&mut self, count_max: usize, mut f: impl FnMut(T)) -> usize {
        let Some(chunk) = self.chunk(count_max) else { return 0 };
        let count = chunk.len();
        for value in chunk {
            f(value);
        }
        self.popped_total += count as u64;
        count
    }

    /// Hands up to `count_max` values to `f` by reference, oldest first, and stops after the
    /// first one `f` returns `false` for; every value handed over is taken. One index update
    /// for the whole batch, like [`Rx::drain`], and no value is copied out of its slot, so a
    /// consumer of large slots reads only the bytes it uses. Returns how many were taken.
    #[inline]
    pub fn read_with(&mut self, count_max: usize, mut f: impl FnMut(&T) -> bool) -> usize {
        let Some(chunk) = self.chunk(count_max) else { return 0 };
        let (first, second) = chunk.as_slices();
        let mut taken = 0;
        for value in first.iter().chain(second) {
            taken += 1;
            if !f(value) {
                break;
            }
        }
        chunk.commit(taken);
        self.popped_total += taken as u64;
        taken
    }

    /// Moves up to `count_max` values into `out` without growing it: at most
    /// `out.capacity() - out.len()` values are taken, so a `Vec` sized at start-up never
    /// reallocates. Returns how many were taken.
    #[inline]
    pub fn drain_into(&mut self, out: &mut Vec<T>, count_max: usize) -> usize {
        let room = out.capacity() - out.len();
        self.drain(count_max.min(room), |value| out.push(value))
    }

    /// The oldest value, without taking it.
    #[inline]
    pub fn peek(&self) -> Option<&T> {
        self.inner.peek().ok()
    }

    /// Values waiting right now (a lower bound: the producer may add more concurrently).
    #[inline]
    pub fn occupancy(&self) -> usize {
        self.inner.slots()
    }

    /// True when no value is waiting right now.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The fixed capacity.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.inner.buffer().capacity()
    }

    /// True once the producer end has been dropped.
    pub fn is_abandoned(&self) -> bool {
        self.inner.is_abandoned()
    }

    /// The local counters (plain reads, no synchronisation).
    #[inline]
    pub fn counters(&self) -> RxCounters {
        RxCounters { popped_total: self.popped_total }
    }
}

impl<T> fmt::Debug for Tx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("capacity", &self.capacity())
            .field("occupancy", &self.occupancy())
            .field("counters", &self.counters())
            .finish()
    }
}

impl<T> fmt::Debug for Rx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rx")
            .field("capacity", &self.capacity())
            .field("occupancy", &self.occupancy())
            .field("counters", &self.counters())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ring_hands_value_back_and_counts() {
        let (mut tx, mut rx) = ring::<String>(2);
        assert_eq!(tx.try_push("a".into()), Ok(()));
        assert_eq!(tx.try_push("b".into()), Ok(()));
        let refused = tx.try_push("c".into()).unwrap_err();
        assert_eq!(refused.into_inner(), "c");
        assert_eq!(tx.counters(), TxCounters { pushed_total: 2, full_total: 1 });
        assert_eq!(tx.occupancy(), 2);
        assert_eq!(tx.slots_free(), 0);
        assert_eq!(rx.occupancy(), 2);
        assert_eq!(rx.pop().as_deref(), Some("a"));
        assert_eq!(tx.try_push("c".into()), Ok(()));
        assert_eq!(rx.pop().as_deref(), Some("b"));
        assert_eq!(rx.pop().as_deref(), Some("c"));
        assert_eq!(rx.pop(), None);
        assert_eq!(rx.counters().popped_total, 3);
        assert_eq!(tx.counters(), TxCounters { pushed_total: 3, full_total: 1 });
    }

    #[test]
    fn drain_respects_count_max_and_order() {
        let (mut tx, mut rx) = ring::<u32>(8);
        for i in 0..6 {
            tx.try_push(i).unwrap();
        }
        let mut seen = Vec::new();
        assert_eq!(rx.drain(4, |v| seen.push(v)), 4);
        assert_eq!(seen, [0, 1, 2, 3]);
        assert_eq!(rx.drain(100, |v| seen.push(v)), 2);
        assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
        assert_eq!(rx.drain(100, |_| panic!("empty ring yielded a value")), 0);
        assert_eq!(rx.counters().popped_total, 6);
    }

    #[test]
    fn read_with_stops_after_the_refused_value_and_wraps_around() {
        let (mut tx, mut rx) = ring::<u32>(4);
        for i in 0..3 {
            tx.try_push(i).unwrap();
        }
        let mut seen = Vec::new();
        // Stops after 1 (taken), leaves 2.
        assert_eq!(
            rx.read_with(10, |&v| {
                seen.push(v);
                v != 1
            }),
            2
        );
        assert_eq!(seen, [0, 1]);
        // Wrap around the end of the buffer: 2 sits before it, 3..6 after.
        for i in 3..6 {
            tx.try_push(i).unwrap();
        }
        let mut keep = |v: &u32| {
            seen.push(*v);
            true
        };
        assert_eq!(rx.read_with(3, &mut keep), 3);
        assert_eq!(rx.read_with(10, &mut keep), 1);
        assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
        assert_eq!(rx.read_with(10, |_| panic!("empty ring yielded a value")), 0);
        assert_eq!(rx.counters().popped_total, 6);
        // Taken values free their slots.
        assert_eq!(tx.slots_free(), 4);
    }

    #[test]
    fn drain_into_never_grows_the_vec() {
        let (mut tx, mut rx) = ring::<u32>(16);
        for i in 0..10 {
            tx.try_push(i).unwrap();
        }
        let mut out = Vec::with_capacity(4);
        out.push(100);
        let cap = out.capacity();
        let taken = rx.drain_into(&mut out, usize::MAX);
        assert_eq!(taken, cap - 1);
        assert_eq!(out.capacity(), cap);
        assert_eq!(&out[..4], &[100, 0, 1, 2]);
        assert_eq!(rx.occupancy(), 10 - taken);
        assert_eq!(rx.peek(), Some(&(taken as u32)));
    }

    #[test]
    fn drain_drops_nothing_when_values_own_memory() {
        let (mut tx, mut rx) = ring::<Vec<u8>>(4);
        tx.try_push(vec![1]).unwrap();
        tx.try_push(vec![2, 2]).unwrap();
        let mut lens = Vec::new();
        rx.drain(10, |v| lens.push(v.len()));
        assert_eq!(lens, [1, 2]);
    }

    #[test]
    fn abandonment_is_visible() {
        let (tx, rx) = ring::<u8>(1);
        assert!(!tx.is_abandoned());
        drop(rx);
        assert!(tx.is_abandoned());
    }

    #[test]
    #[should_panic(expected = "capacity")]
    fn zero_capacity_is_a_programmer_error() {
        let _ = ring::<u8>(0);
    }

    #[test]
    fn values_cross_threads_in_order() {
        const COUNT: u64 = 100_000;
        let (mut tx, mut rx) = ring::<u64>(64);
        let producer = std::thread::spawn(move || {
            let mut next = 0;
            let mut fulls = 0u64;
            while next < COUNT {
                match tx.try_push(next) {
                    Ok(()) => next += 1,
                    Err(Full(v)) => {
                        assert_eq!(v, next);
                        fulls += 1;
                        std::thread::yield_now();
                    }
                }
            }
            assert_eq!(tx.counters().full_total, fulls);
            tx.counters()
        });
        let mut expected = 0;
        while expected < COUNT {
            let n = rx.drain(32, |v| {
                assert_eq!(v, expected);
                expected += 1;
            });
            if n == 0 {
                if rx.is_abandoned() && rx.is_empty() {
                    break;
                }
                std::thread::yield_now();
            }
        }
        let tx_counters = producer.join().unwrap();
        assert_eq!(expected, COUNT);
        assert_eq!(tx_counters.pushed_total, COUNT);
        assert_eq!(rx.counters().popped_total, COUNT);
    }
}
