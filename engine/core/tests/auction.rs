//! Auction book against a naive reference (clone everything, full sort, walk), plus the
//! direct invariants of clearing and a proof that the hot path does not allocate.

use std::cmp::Ordering;

use fpn_engine::{AuctionRules, Bid, BidOrder, Book, BookSnapshot, Clearing, MAX_AMOUNT, Pricing, Winner};
use fpn_wire::Reason;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Allocation counting. Per thread, so tests running in parallel do not disturb each other.

#[global_allocator]
static GLOBAL: fpn_testkit::Counting = fpn_testkit::Counting;

use fpn_testkit::allocations as allocs;

// ---------------------------------------------------------------------------------------
// The reference: obviously right, slow, allocating.

#[derive(Debug, PartialEq, Eq)]
struct RefClearing {
    winners: Vec<Winner>,
    uniform_price: Option<u64>,
    revenue: u64,
    eligible_count: usize,
    expired_count: usize,
    /// Open bids afterwards, sorted by seq.
    open_after: Vec<Bid>,
}

fn ref_cmp(order: BidOrder, a: &Bid, b: &Bid) -> Ordering {
    let by_amount = b.amount.cmp(&a.amount);
    let major = match order {
        BidOrder::PriorityFirst => a.priority.cmp(&b.priority).then(by_amount),
        BidOrder::AmountDescending => by_amount,
    };
    major.then(a.seq.cmp(&b.seq))
}

fn ref_expired(bid: &Bid, now_ns: u64, rules: &AuctionRules) -> bool {
    // u128 rather than saturating arithmetic: an independent way to say the same thing.
    rules.recency_ns.is_some_and(|r| u128::from(bid.rx_ns) + u128::from(r) < u128::from(now_ns))
}

fn ref_clear(open: &[Bid], now_ns: u64, rules: &AuctionRules) -> RefClearing {
    let live: Vec<Bid> = open.iter().copied().filter(|b| !ref_expired(b, now_ns, rules)).collect();
    let mut eligible: Vec<Bid> = live.iter().copied().filter(|b| b.amount >= rules.reserve).collect();
    eligible.sort_by(|a, b| ref_cmp(rules.order, a, b));
    let mut winners = Vec::new();
    let mut sum: u128 = 0;
    for b in &eligible {
        if winners.len() == rules.top_k as usize {
            break;
        }
        if let Some(cap) = rules.budget_cap
            && sum + u128::from(b.amount) > u128::from(cap)
        {
            continue;
        }
        sum += u128::from(b.amount);
        winners.push(Winner {
            seq: b.seq,
            client_id: b.client_id,
            nonce: b.nonce,
            amount: b.amount,
            price: b.amount,
        });
    }
    let winner_seqs: Vec<u64> = winners.iter().map(|w| w.seq).collect();
    let is_winner = |b: &Bid| winner_seqs.contains(&b.seq);
    let uniform_price = match rules.pricing {
        Pricing::FirstPrice => None,
        Pricing::Uniform => {
            let loser_max = eligible.iter().filter(|b| !is_winner(b)).map(|b| b.amount).max();
            Some(loser_max.unwrap_or(0).max(rules.reserve))
        }
    };
    if let Some(p) = uniform_price {
        for w in &mut winners {
            w.price = p.min(w.amount);
        }
    }
    let mut open_after: Vec<Bid> = live.iter().copied().filter(|b| !is_winner(b)).collect();
    open_after.sort_by_key(|b| b.seq);
    RefClearing {
        revenue: winners.iter().map(|w| w.price).sum(),
        uniform_price,
        eligible_count: eligible.len(),
        expired_count: open.len() - live.len(),
        winners,
        open_after,
    }
}

fn open_sorted(book: &Book) -> Vec<Bid> {
    let mut v = book.bids().to_vec();
    v.sort_by_key(|b| b.seq);
    v
}

/// The invariants stated directly, without the reference.
fn check_invariants(
    before: &[Bid],
    book: &Book,
    now_ns: u64,
    rules: &AuctionRules,
    out: &Clearing,
) -> Result<(), TestCaseError> {
    prop_assert!(out.winners.len() <= rules.top_k as usize);
    let find = |seq: u64| before.iter().find(|b| b.seq == seq).copied();
    let mut sum: u128 = 0;
    for w in &out.winners {
        let b = find(w.seq).expect("winner was open");
        prop_assert_eq!((w.client_id, w.nonce, w.amount), (b.client_id, b.nonce, b.amount));
        prop_assert!(w.amount >= rules.reserve);
        prop_assert!(!ref_expired(&b, now_ns, rules));
        prop_assert!(w.price <= w.amount);
        prop_assert!(book.get(w.seq).is_none(), "winner {} still open", w.seq);
        sum += u128::from(w.amount);
    }
    if let Some(cap) = rules.budget_cap {
        prop_assert!(sum <= u128::from(cap));
    }
    let winner = |seq: u64| out.winners.iter().any(|w| w.seq == seq);
    let losers: Vec<&Bid> =
        before.iter().filter(|b| !ref_expired(b, now_ns, rules) && !winner(b.seq)).collect();
    for b in &losers {
        prop_assert_eq!(book.get(b.seq), Some(*b), "loser or below-reserve bid stays open");
    }
    prop_assert_eq!(out.open_count_after, losers.len());
    prop_assert_eq!(book.len(), losers.len());
    let p = losers
        .iter()
        .filter(|b| b.amount >= rules.reserve)
        .map(|b| b.amount)
        .max()
        .unwrap_or(0)
        .max(rules.reserve);
    match rules.pricing {
        Pricing::FirstPrice => {
            prop_assert_eq!(out.uniform_price, None);
            for w in &out.winners {
                prop_assert_eq!(w.price, w.amount);
            }
        }
        Pricing::Uniform => {
            prop_assert_eq!(out.uniform_price, Some(p));
            for w in &out.winners {
                prop_assert_eq!(w.price, p.min(w.amount));
            }
        }
    }
    prop_assert_eq!(out.revenue, out.winners.iter().map(|w| w.price).sum::<u64>());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Strategies. Small value sets so equal amounts, priorities and timestamps are common.

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 1u64..=12,
        1 => (MAX_AMOUNT - 3)..=MAX_AMOUNT,
    ]
}

fn order() -> impl Strategy<Value = BidOrder> {
    prop_oneof![Just(BidOrder::PriorityFirst), Just(BidOrder::AmountDescending)]
}

fn pricing() -> impl Strategy<Value = Pricing> {
    prop_oneof![Just(Pricing::FirstPrice), Just(Pricing::Uniform)]
}

const TOP_K_MAX: u32 = 8;

fn rules() -> impl Strategy<Value = AuctionRules> {
    (
        1..=TOP_K_MAX,
        prop_oneof![Just(0u64), 0u64..=8, Just(MAX_AMOUNT)],
        prop_oneof![Just(None), (1u64..=40).prop_map(Some), Just(Some(u64::MAX)), Just(Some(MAX_AMOUNT)),],
        prop_oneof![Just(None), (1u64..=30).prop_map(Some), Just(Some(u64::MAX))],
        order(),
        pricing(),
    )
        .prop_map(|(top_k, reserve, budget_cap, recency_ns, order, pricing)| AuctionRules {
            top_k,
            reserve,
            budget_cap,
            recency_ns,
            order,
            pricing,
        })
}

/// (seq gap, client, amount, priority, rx_ns)
fn bid_parts() -> impl Strategy<Value = (u64, u64, u64, u32, u64)> {
    (1u64..=3, 0u64..6, amount(), 0u32..4, 0u64..=40)
}

#[derive(Debug, Clone)]
struct Round {
    now_ns: u64,
    rules: AuctionRules,
    /// Bids arriving after the previous clear.
    arrivals: Vec<(u64, u64, u64, u32, u64)>,
    /// Cancels before clearing: (by nonce?, index into the open bids sorted by seq, wrong client?)
    cancels: Vec<(bool, usize, bool)>,
}

fn round() -> impl Strategy<Value = Round> {
    (
        0u64..=60,
        rules(),
        proptest::collection::vec(bid_parts(), 0..160),
        proptest::collection::vec((any::<bool>(), 0usize..200, any::<bool>()), 0..6),
    )
        .prop_map(|(now_ns, rules, arrivals, cancels)| Round { now_ns, rules, arrivals, cancels })
}

const BIDS_MAX: usize = 400;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Several windows on one book, with arrivals, cancels and clears in between; every
    /// clearing and the open set afterwards must equal the reference's.
    #[test]
    fn clear_matches_reference(rounds in proptest::collection::vec(round(), 1..4), seed in any::<u64>()) {
        let mut book = Book::with_capacity_seeded(BIDS_MAX, TOP_K_MAX, seed);
        let mut out = Clearing::with_capacity(TOP_K_MAX);
        let mut seq = 0u64;
        let mut nonce = 0u64;
        for (window_id, r) in rounds.iter().enumerate() {
            for &(gap, client_id, amount, priority, rx_ns) in &r.arrivals {
                seq += gap;
                nonce += 1;
                let bid = Bid { seq, client_id, nonce, amount, priority, rx_ns };
                let full = book.len() == BIDS_MAX;
                let res = book.handle_bid(bid);
                prop_assert_eq!(res, if full { Err(Reason::BookFull) } else { Ok(()) });
            }
            for &(by_nonce, index, wrong_client) in &r.cancels {
                let open = open_sorted(&book);
                if open.is_empty() {
                    break;
                }
                let target = open[index % open.len()];
                let client = if wrong_client { target.client_id + 100 } else { target.client_id };
                let got = if by_nonce {
                    book.cancel_nonce(client, target.nonce)
                } else {
                    book.cancel_seq(client, target.seq)
                };
                if wrong_client {
                    prop_assert_eq!(got, Err(Reason::NotFound));
                    prop_assert_eq!(book.get(target.seq), Some(&target));
                } else {
                    prop_assert_eq!(got, Ok(target));
                    prop_assert!(book.get(target.seq).is_none());
                }
            }

            let before = open_sorted(&book);
            let want = ref_clear(&before, r.now_ns, &r.rules);
            let mut twin = book.clone();
            book.clear(r.now_ns, window_id as u64, &r.rules, &mut out);

            prop_assert_eq!(&out.winners, &want.winners);
            prop_assert_eq!(out.uniform_price, want.uniform_price);
            prop_assert_eq!(out.revenue, want.revenue);
            prop_assert_eq!(out.eligible_count, want.eligible_count);
            prop_assert_eq!(out.expired_count, want.expired_count);
            prop_assert_eq!(out.open_count_after, want.open_after.len());
            prop_assert_eq!(out.window_id, window_id as u64);
            prop_assert_eq!(open_sorted(&book), want.open_after);
            check_invariants(&before, &book, r.now_ns, &r.rules, &out)?;

            // Determinism: the same calls on an identical book give the identical clearing.
            let mut again = Clearing::with_capacity(TOP_K_MAX);
            twin.clear(r.now_ns, window_id as u64, &r.rules, &mut again);
            prop_assert_eq!(&again, &out);
        }
    }

    /// Results do not depend on the index hash seed or on the order bids sit in the book.
    #[test]
    fn independent_of_seed_and_insertion_order(
        parts in proptest::collection::vec(bid_parts(), 0..120),
        rules in rules(),
        now_ns in 0u64..=60,
        seeds in (any::<u64>(), any::<u64>()),
    ) {
        let bids: Vec<Bid> = parts
            .iter()
            .enumerate()
            .map(|(i, &(_, client_id, amount, priority, rx_ns))| Bid {
                seq: i as u64 + 1, client_id, nonce: i as u64, amount, priority, rx_ns,
            })
            .collect();
        let mut a = Book::with_capacity_seeded(BIDS_MAX, TOP_K_MAX, seeds.0);
        let mut b = Book::with_capacity_seeded(BIDS_MAX, TOP_K_MAX, seeds.1);
        for x in &bids {
            a.handle_bid(*x).unwrap();
        }
        for x in bids.iter().rev() {
            b.handle_bid(*x).unwrap();
        }
        let (mut oa, mut ob) = (Clearing::with_capacity(TOP_K_MAX), Clearing::with_capacity(TOP_K_MAX));
        a.clear(now_ns, 7, &rules, &mut oa);
        b.clear(now_ns, 7, &rules, &mut ob);
        prop_assert_eq!(oa, ob);
    }

    /// Snapshot equals the reference's full sort, truncated.
    #[test]
    fn snapshot_matches_reference(
        parts in proptest::collection::vec(bid_parts(), 0..120),
        top_n in 0usize..=10,
        order in order(),
    ) {
        let mut book = Book::with_capacity(BIDS_MAX, TOP_K_MAX);
        let mut all = Vec::new();
        for (i, &(_, client_id, amount, priority, rx_ns)) in parts.iter().enumerate() {
            let bid = Bid { seq: 1000 - i as u64, client_id, nonce: i as u64, amount, priority, rx_ns };
            book.handle_bid(bid).unwrap();
            all.push(bid);
        }
        all.sort_by(|a, b| ref_cmp(order, a, b));
        all.truncate(top_n);
        let mut snap = BookSnapshot::with_capacity(10);
        book.snapshot(top_n, order, &mut snap);
        prop_assert_eq!(snap.count, parts.len());
        prop_assert_eq!(snap.bids, all);
    }
}

// ---------------------------------------------------------------------------------------

/// After construction, bids, cancels, snapshots and clears of every rule combination do not
/// allocate, including at full capacity and under heavy budget skipping.
#[test]
fn hot_path_does_not_allocate() {
    let bids_max = 20_000;
    let top_k_max = 64;
    // Through `clone`, which must keep the capacity the constructors reserved.
    let mut book = Book::with_capacity(bids_max, top_k_max).clone();
    let mut out = Clearing::with_capacity(top_k_max).clone();
    let mut snap = BookSnapshot::with_capacity(16).clone();
    let mut rules_all = Vec::new();
    for order in BidOrder::ALL {
        for pricing in Pricing::ALL {
            for budget_cap in [None, Some(1_000), Some(3)] {
                rules_all.push(AuctionRules {
                    top_k: 64,
                    reserve: 2,
                    budget_cap,
                    recency_ns: Some(5_000),
                    order,
                    pricing,
                });
            }
        }
    }

    let before = allocs();
    let mut seq = 0u64;
    // A cheap deterministic generator (xorshift) so the loop itself does not allocate.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (window, rules) in rules_all.iter().cycle().take(24).enumerate() {
        let now_ns = window as u64 * 1_000;
        while book.len() < bids_max {
            seq += 1;
            let r = next();
            let bid = Bid {
                seq,
                client_id: r % 97,
                nonce: seq,
                amount: 1 + (r >> 8) % 500,
                priority: ((r >> 20) % 8) as u32,
                rx_ns: now_ns,
            };
            book.handle_bid(bid).unwrap();
        }
        assert_eq!(
            book.handle_bid(Bid { seq: u64::MAX, amount: 1, ..Bid::default() }),
            Err(Reason::BookFull)
        );
        for s in (seq - 50)..seq {
            if let Some(b) = book.get(s).copied() {
                assert_eq!(book.cancel_nonce(b.client_id, b.nonce), Ok(b));
            }
        }
        book.snapshot(16, rules.order, &mut snap);
        book.clear(now_ns, window as u64, rules, &mut out);
        assert!(out.eligible_count > 0);
    }
    assert_eq!(allocs() - before, 0, "allocations on the hot path");

    // The counter works: this allocates.
    let v: Vec<u8> = Vec::with_capacity(1);
    drop(v);
    assert!(allocs() > before);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Books large enough for the sampled selection and for widening over thousands of
    /// candidates, against the reference.
    #[test]
    fn large_books_match_reference(
        len in 4_096usize..24_000,
        rules in rules(),
        salt in any::<u64>(),
        amount_span in prop_oneof![Just(12u64), Just(1_000), Just(MAX_AMOUNT)],
        cap_scale in 1u64..2_000,
    ) {
        let top_k_max = 64;
        let rules = AuctionRules {
            top_k: rules.top_k * 8,
            // Caps on the scale of the amounts, so that skips are frequent.
            budget_cap: rules.budget_cap.map(|_| cap_scale * amount_span.min(1 << 30) / 16 + 1),
            ..rules
        };
        let mut x = salt | 1;
        let mut book = Book::with_capacity(len, top_k_max);
        for seq in 0..len as u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bid = Bid {
                seq,
                client_id: x % 1000,
                nonce: seq,
                amount: 1 + (x >> 12) % amount_span,
                priority: ((x >> 5) % 4) as u32,
                rx_ns: (x >> 50) % 40,
            };
            book.handle_bid(bid).unwrap();
        }
        let before = open_sorted(&book);
        let want = ref_clear(&before, 30, &rules);
        let mut out = Clearing::with_capacity(top_k_max);
        book.clear(30, 1, &rules, &mut out);
        prop_assert_eq!(&out.winners, &want.winners);
        prop_assert_eq!(out.uniform_price, want.uniform_price);
        prop_assert_eq!(out.revenue, want.revenue);
        prop_assert_eq!(out.eligible_count, want.eligible_count);
        prop_assert_eq!(out.expired_count, want.expired_count);
        prop_assert_eq!(open_sorted(&book), want.open_after);
    }
}

fn assert_matches_reference(mut book: Book, now_ns: u64, rules: &AuctionRules) -> Clearing {
    let before = open_sorted(&book);
    let want = ref_clear(&before, now_ns, rules);
    let mut out = Clearing::with_capacity(book.top_k_max());
    book.clear(now_ns, 1, rules, &mut out);
    assert_eq!(out.winners, want.winners);
    assert_eq!(out.uniform_price, want.uniform_price);
    assert_eq!(out.revenue, want.revenue);
    assert_eq!(out.eligible_count, want.eligible_count);
    assert_eq!(open_sorted(&book), want.open_after);
    out
}

/// In a large book the clear only collects keys up to a threshold sampled from evenly spaced
/// slots (every `len / 1024`-th bid here, as nothing was removed). Put the best bids exactly
/// on those slots so the threshold admits fewer than `top_k`: the walk runs out, must collect
/// the deferred bids, and must not collect the threshold bid (which already won) twice.
#[test]
fn deferred_bids_are_collected_once_when_the_walk_runs_out() {
    let len = 8192u64;
    let stride = len / 1024;
    let mut book = Book::with_capacity(len as usize, 64);
    for seq in 0..len {
        let amount = if seq % stride == 0 { 1_000_000 + seq } else { 1 + seq % 500 };
        book.handle_bid(Bid { seq, client_id: seq % 7, nonce: seq, amount, priority: 0, rx_ns: 0 }).unwrap();
    }
    for pricing in Pricing::ALL {
        let rules =
            AuctionRules { top_k: 64, order: BidOrder::AmountDescending, pricing, ..AuctionRules::default() };
        let out = assert_matches_reference(book.clone(), 0, &rules);
        assert_eq!(out.winners.len(), 64);
    }
}

/// Bids beyond the threshold are not collected unless needed, but under priority-first order
/// one of them can hold the highest losing amount, which sets the uniform price.
#[test]
fn uniform_price_sees_deferred_bids() {
    let len = 8192u64;
    let mut book = Book::with_capacity(len as usize, 64);
    for seq in 0..len {
        let (priority, amount) = if seq == 5_000 { (9, 777_777) } else { (0, 1 + seq % 1000) };
        book.handle_bid(Bid { seq, client_id: 1, nonce: seq, amount, priority, rx_ns: 0 }).unwrap();
    }
    let rules = AuctionRules { top_k: 4, pricing: Pricing::Uniform, ..AuctionRules::default() };
    let out = assert_matches_reference(book, 0, &rules);
    assert_eq!(out.uniform_price, Some(777_777));
}
