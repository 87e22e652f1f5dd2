//! The open-bid book and its clearing.

use fpn_wire::Reason;

use super::table::FixedMap;
use super::{AuctionRules, Bid, BidOrder, BookSnapshot, Clearing, Pricing, TOP_K_MAX_LIMIT, Winner};
use crate::amount::MAX_AMOUNT;

/// Hash seed used by [`Book::with_capacity`]. Drivers facing untrusted clients should pass
/// a secret seed to [`Book::with_capacity_seeded`] so nonces cannot be chosen to collide.
const SEED_DEFAULT: u64 = 0x9e37_79b9_7f4a_7c15;

/// The sort key of one open bid under some [`BidOrder`], plus where the bid sits.
///
/// Smaller is better: keys compare by `(major, minor, seq)`. `minor` is
/// `MAX_AMOUNT − amount` in both orders (so the amount can be read back without touching the
/// bid); `major` is the priority under `PriorityFirst` and 0 under `AmountDescending`. `seq`
/// is unique among open bids, so no two keys compare equal and `slot` never decides
/// anything: the order is total and deterministic. 24 bytes rather than 32 (fields laid out
/// by hand, `Ord` written out) because `clear` moves these around in bulk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cand {
    minor: u64,
    seq: u64,
    major: u32,
    slot: u32,
}

impl Ord for Cand {
    #[inline]
    fn cmp(&self, other: &Cand) -> std::cmp::Ordering {
        (self.major, self.minor, self.seq, self.slot).cmp(&(other.major, other.minor, other.seq, other.slot))
    }
}

impl PartialOrd for Cand {
    #[inline]
    fn partial_cmp(&self, other: &Cand) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Cand {
    #[inline]
    fn new(order: BidOrder, bid: &Bid, slot: u32) -> Cand {
        debug_assert!(bid.amount <= MAX_AMOUNT);
        Cand {
            major: match order {
                BidOrder::PriorityFirst => bid.priority,
                BidOrder::AmountDescending => 0,
            },
            minor: MAX_AMOUNT - bid.amount,
            seq: bid.seq,
            slot,
        }
    }

    #[inline]
    fn amount(self) -> u64 {
        MAX_AMOUNT - self.minor
    }

    /// The ordering key without the slot: what the threshold of `clear` compares, so that
    /// the split does not depend on where a bid sits.
    #[inline]
    fn key(self) -> (u32, u64, u64) {
        (self.major, self.minor, self.seq)
    }
}

/// Candidates sampled to pick a selection threshold (see [`select_smallest`]).
const SAMPLE_LEN: usize = 1024;

/// Moves the `w` smallest candidates to the front of `cands`, in no particular order: the
/// contract of `cands.select_nth_unstable(w - 1)`.
///
/// Used for the walk's slices, which can span most of the book once the deferred bids have
/// been collected. Why not just quickselect: for `w ≪ len` it makes several partition passes
/// over the whole slice, and with the three-part key most comparisons are unpredictable
/// branches; when every clear still selected over all eligible keys, it was half of a 2.3 ms
/// clear in the bench profile. Instead, sample `SAMPLE_LEN` evenly spaced candidates,
/// take a threshold that should admit roughly `2w + 8·len/SAMPLE_LEN` of them, and move
/// everything at or below it to the front in one pass (mostly a well-predicted "no"). Then
/// quickselect only that small prefix, or, if the sample was unlucky and admitted fewer than
/// `w`, the remainder. The result is exact either way; the sample only affects speed.
fn select_smallest(cands: &mut [Cand], w: usize, sample: &mut Vec<Cand>) {
    let len = cands.len();
    debug_assert!(0 < w && w < len);
    debug_assert!(sample.capacity() >= SAMPLE_LEN);
    if len < 4 * SAMPLE_LEN || w.saturating_mul(32) > len {
        cands.select_nth_unstable(w - 1);
        return;
    }
    let stride = len / SAMPLE_LEN;
    sample.clear();
    sample.extend((0..SAMPLE_LEN).map(|i| cands[i * stride]));
    let rank = (2 * w * SAMPLE_LEN / len + 8).min(SAMPLE_LEN - 1);
    let (_, threshold, _) = sample.select_nth_unstable(rank);
    let threshold = *threshold;
    let mut admitted = 0usize;
    for i in 0..len {
        if cands[i] <= threshold {
            cands.swap(admitted, i);
            admitted += 1;
        }
    }
    if admitted > w {
        cands[..admitted].select_nth_unstable(w - 1);
    } else if admitted < w {
        // Everything admitted is among the w smallest; fetch the rest from beyond.
        cands[admitted..].select_nth_unstable(w - 1 - admitted);
    }
}

/// Sealed bids waiting for a clearing.
///
/// Call order: [`Book::handle_bid`] for each accepted bid, [`Book::cancel_seq`] /
/// [`Book::cancel_nonce`] whenever a cancel arrives, and [`Book::clear`] once per window
/// (which fills the caller's [`Clearing`]). [`Book::snapshot`] and [`Book::get`] are
/// read-only and may be called at any time.
///
/// Capacity is fixed at construction: the bids, both indexes (seq → slot and
/// (client, nonce) → seq) and the clearing scratch buffer are allocated once, and none of
/// the methods above allocates afterwards. Bids live in a dense vector removed from with
/// `swap_remove`, so every removal is O(1) and a clear scans contiguous memory.
#[derive(Debug)]
pub struct Book {
    /// Open bids, in no particular order (removals swap the last bid into the hole).
    bids: Vec<Bid>,
    slot_by_seq: FixedMap<u64, u32>,
    seq_by_nonce: FixedMap<(u64, u64), u64>,
    /// Clearing scratch: one key per eligible bid.
    cands: Vec<Cand>,
    /// Clearing scratch for [`select_smallest`].
    sample: Vec<Cand>,
    bids_max: usize,
    top_k_max: u32,
}

/// Vec's derived `clone` keeps only the length; a clone must keep the capacity too, or it
/// would allocate on the hot path (benches clone a loaded book per iteration).
impl Clone for Book {
    fn clone(&self) -> Book {
        Book {
            bids: clone_with_capacity(&self.bids),
            slot_by_seq: self.slot_by_seq.clone(),
            seq_by_nonce: self.seq_by_nonce.clone(),
            cands: Vec::with_capacity(self.cands.capacity()),
            sample: Vec::with_capacity(self.sample.capacity()),
            bids_max: self.bids_max,
            top_k_max: self.top_k_max,
        }
    }
}

/// A copy of `v` with the same capacity.
pub(crate) fn clone_with_capacity<T: Copy>(v: &Vec<T>) -> Vec<T> {
    let mut copy = Vec::with_capacity(v.capacity());
    copy.extend_from_slice(v);
    copy
}

impl Book {
    /// A book for up to `bids_max` open bids, cleared with `top_k ≤ top_k_max`.
    pub fn with_capacity(bids_max: usize, top_k_max: u32) -> Book {
        Book::with_capacity_seeded(bids_max, top_k_max, SEED_DEFAULT)
    }

    /// As [`Book::with_capacity`], with the seed of the index hash. Results never depend on
    /// the seed; only probe lengths do.
    pub fn with_capacity_seeded(bids_max: usize, top_k_max: u32, hash_seed: u64) -> Book {
        assert!(bids_max < u32::MAX as usize, "bids_max must fit a u32 slot index");
        assert!((1..=TOP_K_MAX_LIMIT).contains(&top_k_max), "top_k_max must be within 1..={TOP_K_MAX_LIMIT}");
        Book {
            bids: Vec::with_capacity(bids_max),
            slot_by_seq: FixedMap::with_capacity(bids_max, hash_seed),
            seq_by_nonce: FixedMap::with_capacity(bids_max, hash_seed.rotate_left(32)),
            cands: Vec::with_capacity(bids_max),
            sample: Vec::with_capacity(SAMPLE_LEN),
            bids_max,
            top_k_max,
        }
    }

    pub fn bids_max(&self) -> usize {
        self.bids_max
    }

    pub fn top_k_max(&self) -> u32 {
        self.top_k_max
    }

    /// Open bids.
    pub fn len(&self) -> usize {
        self.bids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bids.is_empty()
    }

    /// The open bid with this seq.
    pub fn get(&self, seq: u64) -> Option<&Bid> {
        let slot = self.slot_by_seq.get(seq)?;
        Some(&self.bids[slot as usize])
    }

    /// Every open bid, in no particular order.
    pub fn bids(&self) -> &[Bid] {
        &self.bids
    }

    /// Opens a bid. Never allocates.
    ///
    /// Errors (the book is unchanged): `ZeroAmount`, `AmountTooLarge` (over `MAX_AMOUNT`),
    /// `BookFull`, and `DuplicateNonce` if the client already has an open bid with this
    /// nonce (the (client, nonce) index must stay one-to-one for `cancel_nonce`).
    /// A second open bid with the same seq is a programmer error: it panics in debug builds
    /// and is refused with `DuplicateNonce` in release builds so the indexes stay consistent.
    #[inline]
    pub fn handle_bid(&mut self, bid: Bid) -> Result<(), Reason> {
        if bid.amount == 0 {
            return Err(Reason::ZeroAmount);
        }
        if bid.amount > MAX_AMOUNT {
            return Err(Reason::AmountTooLarge);
        }
        if self.bids.len() >= self.bids_max {
            return Err(Reason::BookFull);
        }
        let slot = self.bids.len() as u32;
        if self.seq_by_nonce.insert((bid.client_id, bid.nonce), bid.seq).is_err() {
            return Err(Reason::DuplicateNonce);
        }
        if self.slot_by_seq.insert(bid.seq, slot).is_err() {
            debug_assert!(false, "seq {} is already open", bid.seq);
            self.seq_by_nonce.remove((bid.client_id, bid.nonce));
            return Err(Reason::DuplicateNonce);
        }
        self.bids.push(bid);
        debug_assert_eq!(self.slot_by_seq.len(), self.bids.len());
        debug_assert_eq!(self.seq_by_nonce.len(), self.bids.len());
        Ok(())
    }

    /// Withdraws the client's open bid `seq`. `NotFound` if no such bid is open or it
    /// belongs to another client (which must not learn that it exists).
    pub fn cancel_seq(&mut self, client_id: u64, seq: u64) -> Result<Bid, Reason> {
        let slot = self.slot_by_seq.get(seq).ok_or(Reason::NotFound)? as usize;
        if self.bids[slot].client_id != client_id {
            return Err(Reason::NotFound);
        }
        Ok(self.remove_slot(slot))
    }

    /// Withdraws the client's open bid with this nonce. `NotFound` if there is none.
    pub fn cancel_nonce(&mut self, client_id: u64, nonce: u64) -> Result<Bid, Reason> {
        let seq = self.seq_by_nonce.get((client_id, nonce)).ok_or(Reason::NotFound)?;
        let slot = self.slot_by_seq.get(seq).expect("indexes agree") as usize;
        Ok(self.remove_slot(slot))
    }

    /// Removes the bid at `slot` in O(1): the last bid moves into the hole and its index
    /// entry is repointed.
    #[inline]
    fn remove_slot(&mut self, slot: usize) -> Bid {
        let bid = self.bids.swap_remove(slot);
        let removed = self.slot_by_seq.remove(bid.seq);
        debug_assert_eq!(removed, Some(slot as u32));
        let removed = self.seq_by_nonce.remove((bid.client_id, bid.nonce));
        debug_assert_eq!(removed, Some(bid.seq));
        if let Some(moved) = self.bids.get(slot) {
            *self.slot_by_seq.get_mut(moved.seq).expect("indexes agree") = slot as u32;
        }
        bid
    }

    /// Fills `out` with the open count and the best `top_n` open bids under `order`, best
    /// first. O(n log top_n); does not allocate. Panics if `top_n` exceeds the snapshot's
    /// capacity.
    pub fn snapshot(&self, top_n: usize, order: BidOrder, out: &mut BookSnapshot) {
        assert!(top_n <= out.top_n_max, "top_n {top_n} exceeds the snapshot's top_n_max {}", out.top_n_max);
        out.count = self.bids.len();
        out.bids.clear();
        out.heap.clear();
        if top_n == 0 {
            return;
        }
        for (slot, bid) in self.bids.iter().enumerate() {
            let cand = Cand::new(order, bid, slot as u32);
            if out.heap.len() < top_n {
                out.heap.push(cand);
            } else if let Some(mut worst) = out.heap.peek_mut()
                && cand < *worst
            {
                *worst = cand;
            }
        }
        out.bids.extend(out.heap.drain().map(|c| self.bids[c.slot as usize]));
        // Re-key by (major, minor, seq): slots are unique too, but seq alone decides ties.
        out.bids.sort_unstable_by_key(|b| {
            let c = Cand::new(order, b, 0);
            (c.major, c.minor, c.seq)
        });
    }

    /// A key such that roughly `2·width + 8·len/SAMPLE_LEN` eligible, affordable bids are at
    /// or below it, estimated from `SAMPLE_LEN` evenly spaced bids. `None` (collect
    /// everything) for small books, wide walks, or when too few sampled bids are eligible.
    /// Only speed depends on the estimate, never the result.
    fn threshold(&mut self, now_ns: u64, rules: &AuctionRules, width: usize) -> Option<Cand> {
        let len = self.bids.len();
        if len < 4 * SAMPLE_LEN || width.saturating_mul(32) > len {
            return None;
        }
        let stride = len / SAMPLE_LEN;
        let amount_fit_max = rules.budget_cap.unwrap_or(u64::MAX);
        self.sample.clear();
        for slot in (0..SAMPLE_LEN).map(|k| k * stride) {
            let bid = &self.bids[slot];
            let expired = rules.recency_ns.is_some_and(|r| bid.rx_ns.saturating_add(r) < now_ns);
            if !expired && bid.amount >= rules.reserve && bid.amount <= amount_fit_max {
                self.sample.push(Cand::new(rules.order, bid, slot as u32));
            }
        }
        let rank = 2 * width * SAMPLE_LEN / len + 8;
        if rank >= self.sample.len() {
            return None;
        }
        let (_, t, _) = self.sample.select_nth_unstable(rank);
        Some(*t)
    }

    /// Clears one window at `now_ns` under `rules`, writing the result into `out` (its
    /// previous contents are overwritten). Winners leave the book; losers stay open.
    ///
    /// Steps (see `docs/auction.md`): expire bids with `rx_ns + recency_ns < now_ns`; the
    /// rest at or above the reserve are eligible; walk the eligible bids in `rules.order`,
    /// skipping any bid that would lift the winners' amount sum over `budget_cap`, until
    /// `top_k` have won; price; remove the winners.
    ///
    /// Cost: usually one pass over the book, no full sort. Only candidates at or below a
    /// threshold key sampled from 1024 evenly spaced bids are collected (about a thousand in
    /// a 100k book); the walk orders a slice of `top_k` of them (`4 × top_k` with a budget
    /// cap, since skips need more), doubles the slice if it runs out, drops candidates that
    /// no longer fit the budget between slices, and rescans the book for the deferred bids
    /// only if the collected ones are exhausted. Bench (`benches/auction.rs`, 100k bids,
    /// top_k 64, shared 2-core machine): median single clear ≈ 0.37–0.41 ms uncapped,
    /// ≈ 0.65–0.75 ms with a cap that forces the rescan. Does not allocate provided `out` came
    /// from `Clearing::with_capacity(top_k_max)`.
    ///
    /// Panics if `rules` do not validate against this book's `top_k_max`.
    pub fn clear(&mut self, now_ns: u64, window_id: u64, rules: &AuctionRules, out: &mut Clearing) {
        if let Err(e) = rules.validate(self.top_k_max) {
            panic!("invalid auction rules: {e}");
        }
        let top_k = rules.top_k as usize;
        debug_assert!(out.winners.capacity() >= top_k, "Clearing too small");
        out.reset(window_id);

        // 1 + 2. Expire and collect the eligible in one pass. `swap_remove` at `i` moves a
        // bid from the end into `i`, which is then examined next; candidates already taken
        // sit at slots below `i` and are not moved. A bid above the whole cap can never win,
        // so it is only counted (and remembered as a loser for the uniform price).
        //
        // Only candidates at or below a sampled threshold key are collected; the rest are
        // counted as deferred (every one of them is ordered after every collected one) and
        // collected by a second scan only if the walk runs out, which without a budget cap
        // is rare (fewer than top_k eligible bids at or below the threshold). Skipping the
        // writes and the selection over ~100k keys per clear brings the common case down to
        // about one pass over the bids; a cap that skips most bids costs one more pass.
        let width_first = if rules.budget_cap.is_some() { top_k.saturating_mul(4) } else { top_k };
        let mut threshold = self.threshold(now_ns, rules, width_first);
        self.cands.clear();
        let amount_fit_max = rules.budget_cap.unwrap_or(u64::MAX);
        let mut expired_count = 0usize;
        let mut eligible_count = 0usize;
        let mut loser_amount_max = 0u64; // amounts are ≥ 1, so 0 means "no loser seen"
        let mut amount_min = u64::MAX; // smallest amount among collected and deferred
        let mut deferred_count = 0usize;
        let mut deferred_amount_max = 0u64;
        let mut i = 0usize;
        while i < self.bids.len() {
            let bid = self.bids[i];
            if let Some(recency_ns) = rules.recency_ns
                && bid.rx_ns.saturating_add(recency_ns) < now_ns
            {
                self.remove_slot(i);
                expired_count += 1;
                continue;
            }
            if bid.amount >= rules.reserve {
                eligible_count += 1;
                if bid.amount > amount_fit_max {
                    loser_amount_max = loser_amount_max.max(bid.amount);
                } else {
                    let cand = Cand::new(rules.order, &bid, i as u32);
                    amount_min = amount_min.min(bid.amount);
                    if threshold.is_none_or(|t| cand.key() <= t.key()) {
                        self.cands.push(cand);
                    } else {
                        deferred_count += 1;
                        deferred_amount_max = deferred_amount_max.max(bid.amount);
                    }
                }
            }
            i += 1;
        }

        // 3 + 4. Walk in order, one ordered slice of candidates at a time. `sum ≤ budget_cap`
        // holds throughout, so `cap − sum` cannot underflow; without a cap
        // `sum ≤ top_k × MAX_AMOUNT` fits (TOP_K_MAX_LIMIT).
        //
        // Candidate layout: [0, walked_end) walked; [walked_end, sorted_end) ordered, not yet
        // walked; [sorted_end, live_end) unordered, each ordered after every earlier one;
        // [live_end, len) dropped because they no longer fit the budget (already counted in
        // `loser_amount_max`).
        let mut sum = 0u64;
        let mut width = width_first;
        let mut live_end = self.cands.len();
        let mut walked_end = 0usize;
        let mut sorted_end = 0usize;
        let mut done = false;
        while !done {
            if walked_end == live_end {
                // Out of collected candidates: collect the deferred ones (all ordered after
                // everything walked so far), dropping those that no longer fit the budget.
                let Some(t) = threshold.take() else { break };
                if deferred_count == 0 {
                    break;
                }
                let budget_left = rules.budget_cap.map_or(u64::MAX, |cap| cap - sum);
                self.cands.truncate(walked_end);
                for (slot, bid) in self.bids.iter().enumerate() {
                    if bid.amount < rules.reserve || bid.amount > amount_fit_max {
                        continue;
                    }
                    let cand = Cand::new(rules.order, bid, slot as u32);
                    if cand.key() <= t.key() {
                        continue;
                    }
                    if bid.amount <= budget_left {
                        self.cands.push(cand);
                    } else {
                        loser_amount_max = loser_amount_max.max(bid.amount);
                    }
                }
                deferred_count = 0;
                deferred_amount_max = 0;
                live_end = self.cands.len();
                sorted_end = walked_end;
                continue;
            }
            let lo = walked_end;
            let end = if live_end - lo > width {
                select_smallest(&mut self.cands[lo..live_end], width, &mut self.sample);
                lo + width
            } else {
                live_end
            };
            self.cands[lo..end].sort_unstable();
            sorted_end = end;
            let mut j = lo;
            while j < end {
                let cand = self.cands[j];
                j += 1;
                let amount = cand.amount();
                if let Some(cap) = rules.budget_cap
                    && amount > cap - sum
                {
                    loser_amount_max = loser_amount_max.max(amount);
                    continue;
                }
                sum += amount;
                let bid = &self.bids[cand.slot as usize];
                debug_assert_eq!(bid.seq, cand.seq);
                out.winners.push(Winner {
                    seq: bid.seq,
                    client_id: bid.client_id,
                    nonce: bid.nonce,
                    amount,
                    price: amount,
                });
                // Once what is left of the cap is below every candidate's amount, no later
                // bid can fit: stop instead of walking the whole book.
                let cap_spent = rules.budget_cap.is_some_and(|cap| cap - sum < amount_min);
                if out.winners.len() == top_k || cap_spent {
                    done = true;
                    break;
                }
            }
            walked_end = j;
            width = width.saturating_mul(2);
            // The budget left only shrinks, so a candidate that does not fit now never will:
            // drop those in one linear pass rather than ordering them in the next slices.
            // (In the bench's capped runs this took criterion's mean from ~12 ms to ~1.5 ms,
            // before the threshold scan existed.)
            if !done && let Some(cap) = rules.budget_cap {
                let budget_left = cap - sum;
                let mut keep = walked_end;
                for r in walked_end..live_end {
                    let cand = self.cands[r];
                    if cand.amount() <= budget_left {
                        self.cands.swap(keep, r);
                        keep += 1;
                    } else {
                        loser_amount_max = loser_amount_max.max(cand.amount());
                    }
                }
                live_end = keep;
            }
        }

        // 5. Price.
        if rules.pricing == Pricing::Uniform {
            // The highest losing bid is the highest amount among the skipped, dropped and
            // deferred (already tracked) and the collected candidates the walk never reached.
            // Under amount-descending order the first unreached sorted candidate is the
            // maximum of the latter, because the selection left only smaller amounts beyond
            // `sorted_end`.
            let rest_max = if walked_end >= live_end {
                0
            } else if rules.order == BidOrder::AmountDescending && walked_end < sorted_end {
                self.cands[walked_end].amount()
            } else {
                self.cands[walked_end..live_end].iter().map(|c| c.amount()).max().unwrap_or(0)
            };
            let price = loser_amount_max.max(rest_max).max(deferred_amount_max).max(rules.reserve);
            out.uniform_price = Some(price);
            for w in &mut out.winners {
                // A winner can bid below a loser (priority order, budget skips): it never
                // pays more than it bid.
                w.price = price.min(w.amount);
            }
        }
        out.revenue = out.winners.iter().map(|w| w.price).sum();

        // 6. Fill: winners leave the book. Slots in `cands` are stale from here on.
        for w in &out.winners {
            let slot = self.slot_by_seq.get(w.seq).expect("winner is open") as usize;
            self.remove_slot(slot);
        }
        out.eligible_count = eligible_count;
        out.expired_count = expired_count;
        out.open_count_after = self.bids.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cand(major: u32, minor: u64, seq: u64) -> Cand {
        Cand { minor, seq, major, slot: seq as u32 }
    }

    /// `select_smallest` must agree with a full sort on both its sampled path and its
    /// fallbacks, whatever the layout.
    fn check_select(mut cands: Vec<Cand>, w: usize) -> Result<(), TestCaseError> {
        let mut sorted = cands.clone();
        sorted.sort_unstable();
        let mut sample = Vec::with_capacity(SAMPLE_LEN);
        select_smallest(&mut cands, w, &mut sample);
        let mut front = cands[..w].to_vec();
        front.sort_unstable();
        prop_assert_eq!(&front[..], &sorted[..w]);
        cands.sort_unstable();
        prop_assert_eq!(cands, sorted, "a permutation of the input");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn select_smallest_is_exact(
            len in 1usize..20_000,
            w_raw in 1usize..2_000,
            layout in 0u8..4,
            salt in any::<u64>(),
        ) {
            prop_assume!(len >= 2);
            let w = 1 + w_raw % (len - 1);
            let stride = (len / SAMPLE_LEN).max(1);
            let cands: Vec<Cand> = (0..len as u64)
                .map(|i| match layout {
                    // Pseudo-random keys with many ties in major and minor.
                    0 => {
                        let x = (i ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                        cand((x >> 61) as u32, (x >> 40) % 50, i)
                    }
                    1 => cand(0, i, i),
                    2 => cand(0, len as u64 - i, i),
                    // The best keys sit exactly where the sample looks, so the threshold
                    // admits too few and the fallback has to fetch the rest.
                    _ => {
                        let at_sample = (i as usize).is_multiple_of(stride);
                        cand(u32::from(!at_sample), i, i)
                    }
                })
                .collect();
            check_select(cands, w)?;
        }
    }

    #[test]
    fn select_smallest_fallback_when_sample_admits_too_few() {
        let len = 8192;
        let stride = len / SAMPLE_LEN;
        let cands: Vec<Cand> =
            (0..len as u64).map(|i| cand(u32::from(!(i as usize).is_multiple_of(stride)), i, i)).collect();
        // rank = 2·200·1024/8192 + 8 = 58 → 59 admitted < 200.
        check_select(cands, 200).unwrap();
    }

    fn bid(seq: u64, client_id: u64, amount: u64) -> Bid {
        Bid { seq, client_id, nonce: seq * 10, amount, priority: 0, rx_ns: 0 }
    }

    #[test]
    fn handle_bid_validates() {
        let mut b = Book::with_capacity(2, 4);
        assert_eq!(b.handle_bid(bid(1, 1, 0)), Err(Reason::ZeroAmount));
        assert_eq!(b.handle_bid(bid(1, 1, MAX_AMOUNT + 1)), Err(Reason::AmountTooLarge));
        assert_eq!(b.handle_bid(bid(1, 1, MAX_AMOUNT)), Ok(()));
        assert_eq!(
            b.handle_bid(Bid { seq: 2, ..bid(1, 1, 5) }),
            Err(Reason::DuplicateNonce),
            "same (client, nonce) as seq 1"
        );
        assert_eq!(b.handle_bid(bid(2, 1, 5)), Ok(()));
        assert_eq!(b.handle_bid(bid(3, 1, 5)), Err(Reason::BookFull));
        assert_eq!(b.len(), 2);
        assert_eq!(b.get(2), Some(&bid(2, 1, 5)));
        assert_eq!(b.get(3), None);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "already open")]
    fn duplicate_seq_is_a_programmer_error() {
        let mut b = Book::with_capacity(4, 4);
        b.handle_bid(bid(1, 1, 5)).unwrap();
        let _ = b.handle_bid(Bid { nonce: 99, ..bid(1, 2, 5) });
    }

    /// Release builds refuse a repeated seq instead of corrupting the indexes.
    #[test]
    #[cfg(not(debug_assertions))]
    fn duplicate_seq_is_refused_in_release() {
        let mut b = Book::with_capacity(4, 4);
        b.handle_bid(bid(1, 1, 5)).unwrap();
        let again = Bid { nonce: 99, ..bid(1, 2, 7) };
        assert_eq!(b.handle_bid(again), Err(Reason::DuplicateNonce));
        assert_eq!((b.len(), b.get(1)), (1, Some(&bid(1, 1, 5))));
        assert_eq!(b.cancel_nonce(2, 99), Err(Reason::NotFound));
        assert_eq!(b.handle_bid(again), Err(Reason::DuplicateNonce));
    }

    #[test]
    fn cancel_by_seq_and_nonce() {
        let mut b = Book::with_capacity(8, 4);
        for s in 1..=4 {
            b.handle_bid(bid(s, 100 + s % 2, s * 3)).unwrap();
        }
        // seq 1 belongs to client 101: another client cannot cancel it or learn of it.
        assert_eq!(b.cancel_seq(100, 1), Err(Reason::NotFound));
        assert_eq!(b.cancel_seq(101, 1), Ok(bid(1, 101, 3)));
        assert_eq!(b.cancel_seq(101, 1), Err(Reason::NotFound));
        assert_eq!(b.cancel_seq(101, 77), Err(Reason::NotFound));
        // seq 2 (client 100) has nonce 20.
        assert_eq!(b.cancel_nonce(101, 20), Err(Reason::NotFound));
        assert_eq!(b.cancel_nonce(100, 20), Ok(bid(2, 100, 6)));
        assert_eq!(b.cancel_nonce(100, 20), Err(Reason::NotFound));
        assert_eq!(b.len(), 2);
        // The survivors are still reachable through both indexes after the swaps.
        assert_eq!(b.get(3), Some(&bid(3, 101, 9)));
        assert_eq!(b.get(4), Some(&bid(4, 100, 12)));
        assert_eq!(b.cancel_nonce(100, 40), Ok(bid(4, 100, 12)));
        assert_eq!(b.cancel_seq(101, 3), Ok(bid(3, 101, 9)));
        assert!(b.is_empty());
        // The nonce is free again once its bid is gone.
        assert_eq!(b.handle_bid(bid(4, 100, 1)), Ok(()));
    }

    #[test]
    fn snapshot_orders_and_counts() {
        let mut b = Book::with_capacity(8, 4);
        let bids = [
            Bid { priority: 2, ..bid(1, 1, 50) },
            Bid { priority: 1, ..bid(2, 1, 10) },
            Bid { priority: 1, ..bid(3, 1, 30) },
            Bid { priority: 0, ..bid(4, 1, 30) },
            Bid { priority: 2, ..bid(5, 1, 50) },
        ];
        for x in bids {
            b.handle_bid(x).unwrap();
        }
        let mut s = BookSnapshot::with_capacity(4);
        b.snapshot(3, BidOrder::PriorityFirst, &mut s);
        assert_eq!(s.count, 5);
        let seqs: Vec<u64> = s.bids.iter().map(|x| x.seq).collect();
        assert_eq!(seqs, [4, 3, 2]);
        b.snapshot(4, BidOrder::AmountDescending, &mut s);
        let seqs: Vec<u64> = s.bids.iter().map(|x| x.seq).collect();
        assert_eq!(seqs, [1, 5, 3, 4], "equal amounts: lower seq first");
        b.snapshot(0, BidOrder::AmountDescending, &mut s);
        assert_eq!((s.count, s.bids.len()), (5, 0));
        let empty = Book::with_capacity(1, 1);
        empty.snapshot(4, BidOrder::PriorityFirst, &mut s);
        assert_eq!((s.count, s.bids.len()), (0, 0));
    }

    #[test]
    #[should_panic(expected = "top_n_max")]
    fn snapshot_larger_than_buffer_panics() {
        let b = Book::with_capacity(1, 1);
        b.snapshot(3, BidOrder::PriorityFirst, &mut BookSnapshot::with_capacity(2));
    }

    #[test]
    #[should_panic(expected = "invalid auction rules")]
    fn clear_refuses_invalid_rules() {
        let mut b = Book::with_capacity(4, 8);
        let rules = AuctionRules { top_k: 9, ..AuctionRules::default() };
        b.clear(0, 0, &rules, &mut Clearing::with_capacity(8));
    }

    fn at(seq: u64, client_id: u64, amount: u64, rx_ns: u64) -> Bid {
        Bid { seq, client_id, nonce: 1, amount, priority: 0, rx_ns }
    }

    /// The worked example in `docs/auction.md`; keep the two in step.
    #[test]
    fn docs_worked_example() {
        let load = || {
            let mut b = Book::with_capacity(16, 4);
            for x in [
                at(1, 0xA, 60, 4_000),
                at(2, 0xB, 50, 4_000),
                at(3, 0xC, 45, 4_000),
                at(4, 0xD, 30, 4_000),
                at(5, 0xE, 5, 4_000),
                at(6, 0xF, 50, 4_000),
                at(7, 0x10, 90, 3_999),
            ] {
                b.handle_bid(x).unwrap();
            }
            b
        };
        let rules = AuctionRules {
            top_k: 2,
            reserve: 10,
            budget_cap: Some(100),
            recency_ns: Some(1_000),
            order: BidOrder::AmountDescending,
            pricing: Pricing::Uniform,
        };
        let w = |seq, client_id, amount, price| Winner { seq, client_id, nonce: 1, amount, price };

        let mut book = load();
        let mut out = Clearing::with_capacity(4);
        book.clear(5_000, 42, &rules, &mut out);
        assert_eq!(
            out,
            Clearing {
                window_id: 42,
                winners: vec![w(1, 0xA, 60, 50), w(4, 0xD, 30, 30)],
                uniform_price: Some(50),
                revenue: 80,
                eligible_count: 5,
                expired_count: 1,
                open_count_after: 4,
            }
        );
        let mut open: Vec<u64> = book.bids().iter().map(|b| b.seq).collect();
        open.sort_unstable();
        assert_eq!(open, [2, 3, 5, 6]);

        let mut book = load();
        let first = AuctionRules { pricing: Pricing::FirstPrice, ..rules };
        book.clear(5_000, 42, &first, &mut out);
        assert_eq!(out.winners, [w(1, 0xA, 60, 60), w(4, 0xD, 30, 30)]);
        assert_eq!((out.uniform_price, out.revenue), (None, 90));
    }

    #[test]
    fn uniform_winner_never_pays_more_than_it_bid() {
        // Priority order lets a low bid win while a higher bid loses.
        let mut b = Book::with_capacity(4, 4);
        b.handle_bid(Bid { priority: 0, ..bid(1, 1, 10) }).unwrap();
        b.handle_bid(Bid { priority: 1, ..bid(2, 2, 70) }).unwrap();
        let rules = AuctionRules { top_k: 1, pricing: Pricing::Uniform, ..AuctionRules::default() };
        let mut out = Clearing::with_capacity(4);
        b.clear(0, 1, &rules, &mut out);
        assert_eq!(out.uniform_price, Some(70));
        assert_eq!(out.winners.len(), 1);
        assert_eq!((out.winners[0].seq, out.winners[0].price), (1, 10));
        assert_eq!(out.revenue, 10);
    }

    #[test]
    fn uniform_price_is_reserve_without_losers() {
        let mut b = Book::with_capacity(4, 4);
        b.handle_bid(bid(1, 1, 40)).unwrap();
        b.handle_bid(bid(2, 2, 3)).unwrap(); // below reserve: not a loser, stays open
        let rules =
            AuctionRules { top_k: 4, reserve: 7, pricing: Pricing::Uniform, ..AuctionRules::default() };
        let mut out = Clearing::with_capacity(4);
        b.clear(0, 1, &rules, &mut out);
        assert_eq!(out.uniform_price, Some(7));
        assert_eq!(out.winners[0].price, 7);
        assert_eq!((out.eligible_count, out.open_count_after), (1, 1));
        assert_eq!(b.get(2), Some(&bid(2, 2, 3)));
        // Nobody eligible: still a price, no winners.
        b.clear(0, 2, &rules, &mut out);
        assert_eq!((out.uniform_price, out.winners.len()), (Some(7), 0));
    }

    /// The walk must widen past the first `4 × top_k` candidates when budget skips eat them.
    #[test]
    fn budget_skips_widen_the_walk() {
        let mut b = Book::with_capacity(200, 2);
        // 150 bids of 100 (too big for the cap) and then 2 of 1, with the worst amounts.
        for s in 0..150 {
            b.handle_bid(bid(s, s, 100)).unwrap();
        }
        b.handle_bid(bid(500, 1, 1)).unwrap();
        b.handle_bid(bid(501, 2, 1)).unwrap();
        let rules = AuctionRules {
            top_k: 2,
            budget_cap: Some(50),
            order: BidOrder::AmountDescending,
            pricing: Pricing::Uniform,
            ..AuctionRules::default()
        };
        let mut out = Clearing::with_capacity(2);
        b.clear(0, 1, &rules, &mut out);
        let seqs: Vec<u64> = out.winners.iter().map(|w| w.seq).collect();
        assert_eq!(seqs, [500, 501]);
        assert_eq!(out.uniform_price, Some(100));
        assert_eq!(out.revenue, 2);
        assert_eq!(out.open_count_after, 150);
    }
}
