//! Log2 histograms of durations in nanoseconds, as the probes count them: slot `b` counts the
//! durations in `[2^b, 2^(b+1))` ns (slot 0 also counts 0), the last slot everything longer.
//! A quantile read from one is the upper edge of its slot, so it over-states by less than 2×
//! and never under-states; that is the price of a histogram the kernel updates with one
//! atomic add.

/// Slots per histogram (`SLOTS` in the C): the last one starts at 2^39 ns, about 9 minutes.
pub const SLOTS: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Log2Hist {
    pub slots: [u64; SLOTS],
    /// The sum of the recorded durations.
    pub sum_ns: u64,
    /// What the kind counts besides time (bytes copied, messages returned); 0 if nothing.
    pub items: u64,
}

impl Default for Log2Hist {
    fn default() -> Log2Hist {
        Log2Hist { slots: [0; SLOTS], sum_ns: 0, items: 0 }
    }
}

impl Log2Hist {
    /// The slot of a duration, exactly as the BPF side computes it.
    pub fn slot_of(ns: u64) -> usize {
        (ns.max(1).ilog2() as usize).min(SLOTS - 1)
    }

    /// The exclusive upper edge of slot `slot`, in nanoseconds.
    pub fn upper_ns(slot: usize) -> u64 {
        assert!(slot < SLOTS, "slot {slot} out of range");
        1u64 << (slot + 1)
    }

    /// Records one duration (the kernel does this; here for tests and merging).
    pub fn record(&mut self, ns: u64) {
        self.slots[Self::slot_of(ns)] += 1;
        self.sum_ns += ns;
    }

    pub fn count(&self) -> u64 {
        self.slots.iter().sum()
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Log2Hist) {
        for (a, b) in self.slots.iter_mut().zip(other.slots.iter()) {
            *a += b;
        }
        self.sum_ns += other.sum_ns;
        self.items += other.items;
    }

    /// The upper edge of the slot holding the `q`-quantile (`0 < q <= 1`); `None` if empty.
    pub fn quantile_ns(&self, q: f64) -> Option<u64> {
        assert!(q > 0.0 && q <= 1.0, "quantile {q} outside (0, 1]");
        let count = self.count();
        if count == 0 {
            return None;
        }
        // The rank of the sample wanted, 1-based: ceil(q * count), at least 1.
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (slot, &n) in self.slots.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Self::upper_ns(slot));
            }
        }
        unreachable!("rank {rank} <= count {count}")
    }

    /// The upper edge of the highest non-empty slot.
    pub fn max_ns(&self) -> Option<u64> {
        self.slots.iter().rposition(|&n| n > 0).map(Self::upper_ns)
    }
}

/// A duration for people: `850 ns`, `12.3 µs`, `4.1 ms`, `2.00 s`.
pub fn human_ns(ns: u64) -> String {
    let ns_f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", ns_f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1} ms", ns_f / 1e6)
    } else {
        format!("{:.2} s", ns_f / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_log2_with_zero_in_the_first_and_the_rest_in_the_last() {
        assert_eq!(Log2Hist::slot_of(0), 0);
        assert_eq!(Log2Hist::slot_of(1), 0);
        assert_eq!(Log2Hist::slot_of(2), 1);
        assert_eq!(Log2Hist::slot_of(3), 1);
        assert_eq!(Log2Hist::slot_of(1023), 9);
        assert_eq!(Log2Hist::slot_of(1024), 10);
        assert_eq!(Log2Hist::slot_of(u64::MAX), SLOTS - 1);
        for ns in [1u64, 5, 999, 1 << 20, (1 << 39) - 1] {
            let slot = Log2Hist::slot_of(ns);
            assert!(ns < Log2Hist::upper_ns(slot), "{ns} below its slot's upper edge");
            assert!(slot == 0 || ns >= Log2Hist::upper_ns(slot - 1), "{ns} at or above the previous edge");
        }
    }

    #[test]
    fn quantiles_are_slot_upper_edges_and_never_below_the_truth() {
        let mut h = Log2Hist::default();
        assert_eq!(h.quantile_ns(0.5), None);
        assert_eq!(h.max_ns(), None);
        // 90 samples of 100 ns, 9 of 10 µs, 1 of 5 ms.
        for _ in 0..90 {
            h.record(100);
        }
        for _ in 0..9 {
            h.record(10_000);
        }
        h.record(5_000_000);
        assert_eq!(h.count(), 100);
        assert_eq!(h.sum_ns, 90 * 100 + 9 * 10_000 + 5_000_000);
        assert_eq!(h.quantile_ns(0.5), Some(128));
        assert_eq!(h.quantile_ns(0.9), Some(128));
        assert_eq!(h.quantile_ns(0.91), Some(16_384));
        assert_eq!(h.quantile_ns(0.99), Some(16_384));
        assert_eq!(h.quantile_ns(1.0), Some(8_388_608));
        assert_eq!(h.max_ns(), Some(8_388_608));
    }

    #[test]
    fn merge_adds_counts_sums_and_items() {
        let mut a = Log2Hist::default();
        a.record(10);
        a.items = 3;
        let mut b = Log2Hist::default();
        b.record(10);
        b.record(1_000);
        b.items = 4;
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.slots[Log2Hist::slot_of(10)], 2);
        assert_eq!(a.sum_ns, 1_020);
        assert_eq!(a.items, 7);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_ns(850), "850 ns");
        assert_eq!(human_ns(12_345), "12.3 µs");
        assert_eq!(human_ns(4_100_000), "4.1 ms");
        assert_eq!(human_ns(2_000_000_000), "2.00 s");
    }
}
