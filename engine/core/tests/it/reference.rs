//! Reference checks: conflict test and brute-force optimum for tiny windows.

use fpn_engine::{IntentBatch, IntentMeta, Selection};

/// Builds a batch with `seq = index + 1`.
pub fn batch_of(intents: &[(u64, Vec<u64>)]) -> IntentBatch {
    let keys_total = intents.iter().map(|(_, k)| k.len()).sum::<usize>();
    let mut b = IntentBatch::with_capacity(intents.len(), keys_total);
    for (i, (profit, keys)) in intents.iter().enumerate() {
        let meta = IntentMeta {
            seq: i as u64 + 1,
            client_id: i as u64 % 3,
            nonce: i as u64,
            profit: *profit,
            ..IntentMeta::default()
        };
        b.push(meta, keys).unwrap();
    }
    b
}

pub fn conflicts(batch: &IntentBatch, a: usize, b: usize) -> bool {
    batch.keys(a).iter().any(|k| batch.keys(b).contains(k))
}

/// `Err` with a reason when `picked` is not a valid selection of `batch`: out of range, not
/// strictly ascending, or two picked intents sharing a key. Quadratic on purpose: it must
/// not share code or shortcuts with the builders.
pub fn check_conflict_free(batch: &IntentBatch, picked: &[u32]) -> Result<(), String> {
    for w in picked.windows(2) {
        if w[0] >= w[1] {
            return Err(format!("picked not strictly ascending: {picked:?}"));
        }
    }
    if let Some(&i) = picked.iter().find(|&&i| i as usize >= batch.len()) {
        return Err(format!("picked index {i} out of range"));
    }
    for (x, &a) in picked.iter().enumerate() {
        for &b in &picked[x + 1..] {
            if conflicts(batch, a as usize, b as usize) {
                return Err(format!("intents {a} and {b} share a key"));
            }
        }
    }
    Ok(())
}

/// Checks the selection's own consistency: conflict free, total = Σ profits, bound ≥ total,
/// and `exact` implies `upper_bound == total`.
pub fn check_selection(batch: &IntentBatch, s: &Selection) -> Result<(), String> {
    check_conflict_free(batch, &s.picked)?;
    let sum: u64 = s.picked.iter().map(|&i| batch.profit(i as usize)).sum();
    if sum != s.total {
        return Err(format!("total {} but picked profits sum to {sum}", s.total));
    }
    if s.upper_bound < s.total {
        return Err(format!("bound {} below total {}", s.upper_bound, s.total));
    }
    if s.exact && s.upper_bound != s.total {
        return Err("exact but bound != total".into());
    }
    Ok(())
}

/// Maximum conflict-free total by enumerating every subset (windows up to ~16 intents).
pub fn brute_force_optimum(batch: &IntentBatch) -> u64 {
    let n = batch.len();
    assert!(n <= 16, "brute force is exponential");
    let mut conflict = vec![0u32; n];
    for (a, mask) in conflict.iter_mut().enumerate() {
        for b in 0..n {
            if a != b && conflicts(batch, a, b) {
                *mask |= 1 << b;
            }
        }
    }
    let mut best = 0u64;
    'subsets: for set in 0u32..(1u32 << n) {
        let mut total = 0u64;
        for (a, &mask) in conflict.iter().enumerate() {
            if set & (1 << a) != 0 {
                if mask & set != 0 {
                    continue 'subsets;
                }
                total += batch.profit(a);
            }
        }
        best = best.max(total);
    }
    best
}

#[test]
fn checker_catches_a_wrong_selection() {
    let b = batch_of(&[(5, vec![1, 2]), (7, vec![2, 3]), (9, vec![4])]);
    assert!(check_conflict_free(&b, &[0, 2]).is_ok());
    assert!(check_conflict_free(&b, &[1, 2]).is_ok());
    assert!(check_conflict_free(&b, &[0, 1]).is_err(), "shared key 2 missed");
    assert!(check_conflict_free(&b, &[2, 0]).is_err(), "order not checked");
    assert!(check_conflict_free(&b, &[0, 0]).is_err(), "duplicate not caught");
    assert!(check_conflict_free(&b, &[3]).is_err(), "range not checked");
    let wrong_total = Selection { picked: vec![0, 2], total: 15, upper_bound: 21, exact: false };
    assert!(check_selection(&b, &wrong_total).is_err());
    let low_bound = Selection { picked: vec![1, 2], total: 16, upper_bound: 15, exact: false };
    assert!(check_selection(&b, &low_bound).is_err());
}

#[test]
fn brute_force_matches_hand_solution() {
    // Path 0-1-2-3 of conflicts: best is {1, 3} = 9 + 8 over {0, 2} = 5 + 6.
    let b = batch_of(&[(5, vec![1]), (9, vec![1, 2]), (6, vec![2, 3]), (8, vec![3, 4])]);
    assert_eq!(brute_force_optimum(&b), 17);
}
