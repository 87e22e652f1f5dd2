//! LSD radix sort for the builders' packed `u64` order keys.

/// Below this length `sort_unstable` is used. `benches/build.rs` (`sort/*`, shared and loaded
/// machine, rough): 10k keys: radix 277 µs vs `sort_unstable` 255 µs (no win; 8-bit digits
/// were worse still); 100k keys: radix 2.6 ms vs 4.8 ms.
const RADIX_LEN_MIN: usize = 32_768;

/// Sorts `keys` ascending; `scratch` must have capacity for `keys.len()` (it is resized, so
/// it only allocates when it has less).
///
/// LSD radix on 11-bit digits, skipping digits on which every key agrees: greedy keys carry
/// 44 bits of inverted profit and 20 bits of index, and for real profit ranges the top
/// digits are constant. Measured in `benches/build.rs` (`sort/*`) against `sort_unstable`.
pub fn radix_sort_u64(keys: &mut [u64], scratch: &mut Vec<u64>) {
    let n = keys.len();
    if n < RADIX_LEN_MIN {
        keys.sort_unstable();
        return;
    }
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    const DIGITS: usize = 64_usize.div_ceil(BITS as usize);
    let mut counts = [[0u32; BUCKETS]; DIGITS];
    for &k in keys.iter() {
        for (d, count) in counts.iter_mut().enumerate() {
            count[((k >> (d as u32 * BITS)) as usize) & (BUCKETS - 1)] += 1;
        }
    }
    scratch.clear();
    scratch.resize(n, 0);
    let first = keys[0];
    let mut in_scratch = false;
    for (d, count) in counts.iter_mut().enumerate() {
        let shift = d as u32 * BITS;
        if count[((first >> shift) as usize) & (BUCKETS - 1)] as usize == n {
            continue;
        }
        let mut offset = 0u32;
        for c in count.iter_mut() {
            let here = *c;
            *c = offset;
            offset += here;
        }
        let (src, dst): (&[u64], &mut [u64]) =
            if in_scratch { (&scratch[..], &mut *keys) } else { (&*keys, &mut scratch[..]) };
        scatter(src, dst, count, shift, BUCKETS);
        in_scratch = !in_scratch;
    }
    if in_scratch {
        keys.copy_from_slice(scratch);
    }
}

/// Below this length [`sort_order_keys`] uses `sort_unstable`.
const ORDER_RADIX_LEN_MIN: usize = 1_024;

/// Sorts packed order keys (`value << index_bits | index`) that were pushed in ascending
/// index order, as the greedy orders are: the index part already ascends, so a stable LSD
/// radix sort over the value bits alone orders the whole key, one pass per 11-bit digit
/// of the value that is not the same in every key. For e2e-like windows (profits in
/// 1..=1000) that is one counting pass and one scatter, where `sort_unstable` on 20k keys
/// was 8 % of `select/improved/20000` in perf. Same result as any sort (keys are distinct).
pub(crate) fn sort_order_keys(keys: &mut [u64], index_bits: u32, scratch: &mut Vec<u64>) {
    let n = keys.len();
    debug_assert!(
        keys.windows(2).all(|w| (w[0] & ((1 << index_bits) - 1)) < (w[1] & ((1 << index_bits) - 1))),
        "order keys must be pushed in ascending index order"
    );
    if n < ORDER_RADIX_LEN_MIN {
        keys.sort_unstable();
        return;
    }
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    let first = keys[0];
    let varying = keys.iter().fold(0u64, |acc, &k| acc | (k ^ first)) >> index_bits;
    scratch.clear();
    scratch.resize(n, 0);
    let mut in_scratch = false;
    let mut counts = [0u32; BUCKETS];
    let mut digit_shift = 0;
    while digit_shift < 64 - index_bits {
        let shift = index_bits + digit_shift;
        digit_shift += BITS;
        if (varying >> (shift - index_bits)) & (BUCKETS as u64 - 1) == 0 {
            continue;
        }
        let (src, dst): (&[u64], &mut [u64]) =
            if in_scratch { (&scratch[..], &mut *keys) } else { (&*keys, &mut scratch[..]) };
        counts.fill(0);
        for &k in src {
            counts[((k >> shift) as usize) & (BUCKETS - 1)] += 1;
        }
        let mut offset = 0u32;
        for c in counts.iter_mut() {
            let here = *c;
            *c = offset;
            offset += here;
        }
        scatter(src, dst, &mut counts, shift, BUCKETS);
        in_scratch = !in_scratch;
    }
    if in_scratch {
        keys.copy_from_slice(scratch);
    }
}

#[inline]
fn scatter(src: &[u64], dst: &mut [u64], offsets: &mut [u32], shift: u32, buckets: usize) {
    for &k in src {
        let b = ((k >> shift) as usize) & (buckets - 1);
        dst[offsets[b] as usize] = k;
        offsets[b] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SplitMix64;

    #[test]
    fn matches_sort_unstable() {
        let mut rng = SplitMix64::new(5);
        let mut scratch = Vec::new();
        for (n, mask) in [
            (0usize, u64::MAX),
            (10, u64::MAX),
            (40_000, 0xFFFF),
            (40_000, u64::MAX),
            (RADIX_LEN_MIN, 0xF0F0_0000_0000_0FFF),
        ] {
            let mut keys: Vec<u64> = (0..n).map(|_| rng.next_u64() & mask).collect();
            let mut expected = keys.clone();
            expected.sort_unstable();
            radix_sort_u64(&mut keys, &mut scratch);
            assert_eq!(keys, expected, "n={n} mask={mask:x}");
        }
    }

    #[test]
    fn order_keys_sort_as_sort_unstable() {
        let mut rng = SplitMix64::new(6);
        let mut scratch = Vec::new();
        for (n, value_mask) in [
            (0usize, u64::MAX),
            (10, 3),
            (300, 0),
            (300, 1),
            (5_000, 1023),
            (5_000, (1 << 44) - 1),
            (5_000, 0xF00F_0000_0F0F),
            (40_000, 0x0FFF_F000),
        ] {
            let mut keys: Vec<u64> =
                (0..n as u64).map(|i| ((rng.next_u64() & value_mask) << 20) | i).collect();
            let mut expected = keys.clone();
            expected.sort_unstable();
            sort_order_keys(&mut keys, 20, &mut scratch);
            assert_eq!(keys, expected, "n={n} mask={value_mask:x}");
        }
    }
}
