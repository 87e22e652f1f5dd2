//! Which builder shard owns a resource key.

/// The SplitMix64 finaliser (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", 2014): a bijection on `u64` whose output bits all depend on all input bits.
/// Fixed forever: changing it moves keys between shards, so a replay would differ.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Where an intent goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Every key of the intent has this home shard.
    Local(usize),
    /// Its keys live on more than one shard: the merger takes it.
    Cross,
}

/// `home(key) = mix64(key) % S`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Router {
    shards_n: u64,
}

impl Router {
    pub fn new(shards_n: usize) -> Router {
        assert!(shards_n >= 1, "at least one shard");
        Router { shards_n: shards_n as u64 }
    }

    pub fn shards_n(&self) -> usize {
        self.shards_n as usize
    }

    /// The shard that owns `key`.
    #[inline]
    pub fn home(&self, key: u64) -> usize {
        (mix64(key) % self.shards_n) as usize
    }

    /// Local to the common home of all `keys`, or cross-shard. An intent has at least one key.
    #[inline]
    pub fn route(&self, keys: impl IntoIterator<Item = u64>) -> Route {
        let mut keys = keys.into_iter();
        let Some(first) = keys.next() else {
            debug_assert!(false, "an intent has at least one key");
            return Route::Local(0);
        };
        if self.shards_n == 1 {
            return Route::Local(0);
        }
        let home = self.home(first);
        if keys.all(|k| self.home(k) == home) { Route::Local(home) } else { Route::Cross }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixer_is_the_splitmix64_finaliser() {
        // SplitMix64 seeded with 0 returns mix64(0x9e3779b97f4a7c15) first: 0xe220a8397b1dcdaf.
        assert_eq!(mix64(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
        assert_eq!(mix64(0), 0);
    }

    #[test]
    fn one_shard_takes_everything_local() {
        let r = Router::new(1);
        assert_eq!(r.route([1, 2, 3, u64::MAX]), Route::Local(0));
    }

    #[test]
    fn local_iff_all_keys_share_a_home() {
        for shards in 2..=5usize {
            let r = Router::new(shards);
            let mut counts = vec![0usize; shards];
            for k in 0..1000u64 {
                let h = r.home(k);
                assert!(h < shards);
                counts[h] += 1;
                assert_eq!(r.route([k]), Route::Local(h));
            }
            // The mixer spreads sequential keys: every shard gets a fair share.
            assert!(counts.iter().all(|&c| c > 1000 / shards / 2), "{counts:?}");
            let (a, b) = (0..100u64)
                .flat_map(|a| (0..100u64).map(move |b| (a, b)))
                .find(|&(a, b)| r.home(a) != r.home(b))
                .unwrap();
            assert_eq!(r.route([a, b]), Route::Cross);
            let same = (0..100u64).find(|&c| c != a && r.home(c) == r.home(a)).unwrap();
            assert_eq!(r.route([a, same]), Route::Local(r.home(a)));
        }
    }
}
