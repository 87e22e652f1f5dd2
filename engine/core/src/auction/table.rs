//! A fixed-capacity open-addressing hash map for the book's indexes.
//!
//! Why not `std::collections::HashMap::with_capacity`: hashbrown deletes by leaving
//! tombstones, and once inserts have used up the free slots it rehashes; when the table is
//! more than half full that rehash *grows* the allocation (`reserve_rehash_inner`: rehash in
//! place only if `items + additional <= full_capacity / 2`, else resize). A book that churns near capacity
//! (insert, clear, insert, ...) would therefore allocate on the hot path. This table uses
//! linear probing with backward-shift deletion: there are no tombstones, the bucket array is
//! allocated once, and the load factor never exceeds 1/2, so probe runs stay short.
//!
//! The hash is a fixed bijective mixer keyed by a seed chosen by the caller, so behaviour is
//! deterministic for a given seed (replay) and keys chosen by clients do not land on
//! predictable buckets unless the seed is known.

/// A key the table can hash.
pub(crate) trait TableKey: Copy + Eq {
    fn hash(self, seed: u64) -> u64;
}

/// The murmur3 64-bit finaliser: a bijection on `u64` with good avalanche.
#[inline]
fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

impl TableKey for u64 {
    #[inline]
    fn hash(self, seed: u64) -> u64 {
        fmix64(self ^ seed)
    }
}

impl TableKey for (u64, u64) {
    #[inline]
    fn hash(self, seed: u64) -> u64 {
        fmix64(fmix64(self.0 ^ seed) ^ self.1)
    }
}

/// Map from `K` to `V` holding at most `len_max` entries, never reallocating.
#[derive(Debug, Clone)]
pub(crate) struct FixedMap<K, V> {
    buckets: Vec<Option<(K, V)>>,
    mask: usize,
    len: usize,
    len_max: usize,
    seed: u64,
}

impl<K: TableKey, V: Copy> FixedMap<K, V> {
    /// A map for up to `len_max` entries. Buckets are the next power of two at or above
    /// `2 × len_max` (at least 8), so at least half the buckets are always empty.
    pub(crate) fn with_capacity(len_max: usize, seed: u64) -> FixedMap<K, V> {
        let buckets_len = len_max.checked_mul(2).expect("len_max too large").max(8).next_power_of_two();
        let mut buckets = Vec::with_capacity(buckets_len);
        buckets.resize(buckets_len, None);
        FixedMap { buckets, mask: buckets_len - 1, len: 0, len_max, seed }
    }

    #[inline]
    fn home(&self, key: K) -> usize {
        (key.hash(self.seed) as usize) & self.mask
    }

    /// The bucket holding `key`, if any. Terminates because a bucket is always empty.
    #[inline]
    fn find(&self, key: K) -> Option<usize> {
        let mut i = self.home(key);
        loop {
            match &self.buckets[i] {
                None => return None,
                Some((k, _)) if *k == key => return Some(i),
                Some(_) => i = (i + 1) & self.mask,
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn get(&self, key: K) -> Option<V> {
        self.find(key).map(|i| self.buckets[i].as_ref().expect("found bucket").1)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: K) -> Option<&mut V> {
        let i = self.find(key)?;
        self.buckets[i].as_mut().map(|(_, v)| v)
    }

    /// Inserts `key → value`. If `key` is present the map is unchanged and its current value
    /// is handed back. Panics past `len_max` (the caller bounds its own size first).
    #[inline]
    pub(crate) fn insert(&mut self, key: K, value: V) -> Result<(), V> {
        assert!(self.len < self.len_max, "FixedMap over capacity");
        let mut i = self.home(key);
        loop {
            match &self.buckets[i] {
                None => {
                    self.buckets[i] = Some((key, value));
                    self.len += 1;
                    return Ok(());
                }
                Some((k, v)) if *k == key => return Err(*v),
                Some(_) => i = (i + 1) & self.mask,
            }
        }
    }

    /// Removes `key`, returning its value. Backward-shift deletion: entries after the hole
    /// whose probe path crosses it move back, so lookups never need tombstones.
    #[inline]
    pub(crate) fn remove(&mut self, key: K) -> Option<V> {
        let mut hole = self.find(key)?;
        let (_, value) = self.buckets[hole].take().expect("found bucket");
        self.len -= 1;
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let Some((k, _)) = self.buckets[j] else {
                return Some(value);
            };
            let home = self.home(k);
            // The entry at j may fill the hole only if the hole lies on its probe path
            // home → j, i.e. it is at least as far from home as the hole is from j.
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.buckets[hole] = self.buckets[j].take();
                hole = j;
            }
        }
    }

    /// Bucket count; fixed for the life of the map.
    #[cfg(test)]
    pub(crate) fn buckets_len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn insert_get_remove() {
        let mut m: FixedMap<u64, u32> = FixedMap::with_capacity(4, 7);
        assert_eq!(m.insert(10, 1), Ok(()));
        assert_eq!(m.insert(10, 2), Err(1));
        assert_eq!(m.get(10), Some(1));
        *m.get_mut(10).unwrap() = 5;
        assert_eq!(m.remove(10), Some(5));
        assert_eq!(m.remove(10), None);
        assert_eq!(m.get(10), None);
        assert_eq!(m.len(), 0);
    }

    #[test]
    #[should_panic(expected = "over capacity")]
    fn refuses_past_capacity() {
        let mut m: FixedMap<u64, u32> = FixedMap::with_capacity(2, 0);
        m.insert(1, 1).unwrap();
        m.insert(2, 2).unwrap();
        let _ = m.insert(3, 3);
    }

    /// Keys that all share a home bucket exercise wrap-around and backward shift.
    #[test]
    fn colliding_keys_survive_deletes() {
        let mut m: FixedMap<u64, u32> = FixedMap::with_capacity(8, 0);
        let buckets = m.buckets_len();
        let home_of = |k: u64| (k.hash(0) as usize) & (buckets - 1);
        let target = home_of(0);
        let same: Vec<u64> = (0u64..).filter(|k| home_of(*k) == target).take(5).collect();
        for (i, k) in same.iter().enumerate() {
            m.insert(*k, i as u32).unwrap();
        }
        assert_eq!(m.remove(same[1]), Some(1));
        for (i, k) in same.iter().enumerate() {
            let want = if i == 1 { None } else { Some(i as u32) };
            assert_eq!(m.get(*k), want, "key {k}");
        }
    }

    proptest! {
        /// Against BTreeMap, with a small key space so inserts collide and repeat.
        #[test]
        fn matches_btreemap(ops in proptest::collection::vec((any::<bool>(), 0u64..40, 0u32..1000), 0..400)) {
            let len_max = 24;
            let mut m: FixedMap<(u64, u64), u32> = FixedMap::with_capacity(len_max, 99);
            let buckets = m.buckets_len();
            let mut r = BTreeMap::new();
            for (is_insert, k, v) in ops {
                let key = (k % 3, k);
                if is_insert {
                    if r.len() < len_max {
                        let want = match r.get(&key) { Some(old) => Err(*old), None => { r.insert(key, v); Ok(()) } };
                        prop_assert_eq!(m.insert(key, v), want);
                    }
                } else {
                    prop_assert_eq!(m.remove(key), r.remove(&key));
                }
                prop_assert_eq!(m.len(), r.len());
            }
            for k in 0..40u64 {
                let key = (k % 3, k);
                prop_assert_eq!(m.get(key), r.get(&key).copied());
            }
            prop_assert_eq!(m.buckets_len(), buckets);
        }
    }
}
