//! The intents of one window, stored column-wise for the builders.
//!
//! Capacity is fixed at construction; `push` never allocates and hands the intent back
//! when the batch is full. Index order is arrival order, which is the FIFO baseline.

/// The scalar fields of one intent once the engine has accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IntentMeta {
    /// Engine-assigned sequence id: unique, increasing in arrival order.
    pub seq: u64,
    pub client_id: u64,
    pub nonce: u64,
    /// Profit in minor units, `1..=MAX_AMOUNT`.
    pub profit: u64,
    pub priority: u32,
    /// Receive timestamp (ns, CLOCK_REALTIME domain of the receiving host).
    pub rx_ns: u64,
}

/// The batch is at its record or key capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchFull;

/// Column store of a window's intents. Resource keys of intent `i` are
/// `keys[key_end[i-1]..key_end[i]]`.
#[derive(Debug, Clone)]
pub struct IntentBatch {
    meta: Vec<IntentMeta>,
    profit: Vec<u64>,
    key_end: Vec<u32>,
    keys: Vec<u64>,
    records_max: usize,
    keys_max: usize,
}

impl IntentBatch {
    /// A batch that holds up to `records_max` intents and `keys_max` resource keys in total.
    pub fn with_capacity(records_max: usize, keys_max: usize) -> IntentBatch {
        assert!(keys_max <= u32::MAX as usize, "keys_max must fit in u32");
        IntentBatch {
            meta: Vec::with_capacity(records_max),
            profit: Vec::with_capacity(records_max),
            key_end: Vec::with_capacity(records_max),
            keys: Vec::with_capacity(keys_max),
            records_max,
            keys_max,
        }
    }

    /// Appends one validated intent. Never allocates; `Err(BatchFull)` leaves the batch unchanged.
    #[inline]
    pub fn push(&mut self, meta: IntentMeta, keys: &[u64]) -> Result<u32, BatchFull> {
        debug_assert!(meta.profit > 0 && !keys.is_empty());
        if self.meta.len() >= self.records_max || self.keys.len() + keys.len() > self.keys_max {
            return Err(BatchFull);
        }
        let index = self.meta.len() as u32;
        self.meta.push(meta);
        self.profit.push(meta.profit);
        self.keys.extend_from_slice(keys);
        self.key_end.push(self.keys.len() as u32);
        Ok(index)
    }

    /// Appends an intent whose keys arrive as little-endian bytes (8 per key), as they sit in a
    /// wire record. Never allocates.
    #[inline]
    pub fn push_le_keys(&mut self, meta: IntentMeta, keys_le: &[[u8; 8]]) -> Result<u32, BatchFull> {
        if self.meta.len() >= self.records_max || self.keys.len() + keys_le.len() > self.keys_max {
            return Err(BatchFull);
        }
        let index = self.meta.len() as u32;
        self.meta.push(meta);
        self.profit.push(meta.profit);
        self.keys.extend(keys_le.iter().map(|k| u64::from_le_bytes(*k)));
        self.key_end.push(self.keys.len() as u32);
        Ok(index)
    }

    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    pub fn records_max(&self) -> usize {
        self.records_max
    }

    pub fn keys_max(&self) -> usize {
        self.keys_max
    }

    /// Total resource keys held.
    pub fn keys_len(&self) -> usize {
        self.keys.len()
    }

    pub fn meta(&self, i: usize) -> &IntentMeta {
        &self.meta[i]
    }

    pub fn metas(&self) -> &[IntentMeta] {
        &self.meta
    }

    #[inline]
    pub fn profit(&self, i: usize) -> u64 {
        self.profit[i]
    }

    /// Profits of all intents, in arrival order.
    #[inline]
    pub fn profits(&self) -> &[u64] {
        &self.profit
    }

    /// Resource keys of intent `i`.
    #[inline]
    pub fn keys(&self, i: usize) -> &[u64] {
        let start = if i == 0 { 0 } else { self.key_end[i - 1] as usize };
        &self.keys[start..self.key_end[i] as usize]
    }

    /// Every key of every intent, concatenated in arrival order.
    pub fn all_keys(&self) -> &[u64] {
        &self.keys
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.meta.clear();
        self.profit.clear();
        self.key_end.clear();
        self.keys.clear();
    }

    /// Keeps only the intents for which `keep(index)` is true, preserving order, in place.
    pub fn retain_indices(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let n = self.meta.len();
        let mut write = 0usize;
        let mut key_write = 0usize;
        let mut key_start = 0usize;
        for read in 0..n {
            let key_stop = self.key_end[read] as usize;
            if keep(read) {
                self.meta[write] = self.meta[read];
                self.profit[write] = self.profit[read];
                self.keys.copy_within(key_start..key_stop, key_write);
                key_write += key_stop - key_start;
                self.key_end[write] = key_write as u32;
                write += 1;
            }
            key_start = key_stop;
        }
        self.meta.truncate(write);
        self.profit.truncate(write);
        self.key_end.truncate(write);
        self.keys.truncate(key_write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64, profit: u64) -> IntentMeta {
        IntentMeta { seq, profit, ..IntentMeta::default() }
    }

    #[test]
    fn push_and_read_back() {
        let mut b = IntentBatch::with_capacity(3, 5);
        assert_eq!(b.push(meta(1, 10), &[1, 2]), Ok(0));
        assert_eq!(b.push_le_keys(meta(2, 20), &[3u64.to_le_bytes()]), Ok(1));
        assert_eq!(b.keys(0), &[1, 2]);
        assert_eq!(b.keys(1), &[3]);
        assert_eq!(b.profits(), &[10, 20]);
        // Key capacity is the limit here: 3 keys used, 3 more would make 6 > 5.
        assert_eq!(b.push(meta(3, 30), &[4, 5, 6]), Err(BatchFull));
        assert_eq!(b.len(), 2);
        assert_eq!(b.push(meta(3, 30), &[4, 5]), Ok(2));
        assert_eq!(b.push(meta(4, 40), &[7]), Err(BatchFull));
    }

    #[test]
    fn retain_compacts_in_order() {
        let mut b = IntentBatch::with_capacity(4, 16);
        b.push(meta(1, 1), &[1, 2]).unwrap();
        b.push(meta(2, 2), &[3]).unwrap();
        b.push(meta(3, 3), &[4, 5, 6]).unwrap();
        b.push(meta(4, 4), &[7]).unwrap();
        b.retain_indices(|i| i != 1);
        assert_eq!(b.len(), 3);
        assert_eq!(b.metas().iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 3, 4]);
        assert_eq!(b.keys(0), &[1, 2]);
        assert_eq!(b.keys(1), &[4, 5, 6]);
        assert_eq!(b.keys(2), &[7]);
        assert_eq!(b.keys_len(), 6);
    }
}
