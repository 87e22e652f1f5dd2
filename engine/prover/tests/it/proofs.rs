use fpn_prover::{
    BLOCK_ENTRIES_MAX, ClearingProof, EntryWitness, Fr, MAX_AMOUNT, MulWitness, ProveError, WitnessError,
    proof_from_compressed, proof_to_compressed, prove_clearing, prove_clearing_timed, prove_mul,
    verify_clearing, verify_mul,
};

use crate::{clearing_keys, mul_keys, rng, sample};

#[test]
fn mul_proves_and_verifies() {
    let keys = mul_keys();
    let proof = prove_mul(&keys.pk, MulWitness { x: 3, y: 1 << 40 }, &mut rng(10)).unwrap();
    assert_eq!(proof.public_inputs.z, Fr::from(3u64 << 40));
    assert!(verify_mul(&keys.pvk, &proof).unwrap());
    // The 128 compressed bytes of the client transport's proof record give the proof back.
    let bytes = proof_to_compressed(&proof.proof);
    assert_eq!(proof_from_compressed(&bytes), Some(proof.proof.clone()));
    assert_eq!(proof_from_compressed(&[0xff; 128]), None);
    let mut wrong = proof.clone();
    wrong.public_inputs.z += Fr::from(1u64);
    assert!(!verify_mul(&keys.pvk, &wrong).unwrap());
}

#[test]
fn clearing_proves_and_verifies_with_padding() {
    let keys = clearing_keys();
    let (proof, timings) = prove_clearing_timed(&keys.pk, &sample(), &mut rng(11)).unwrap();
    assert_eq!(proof.public_inputs.total, 4_200);
    assert_eq!(proof.public_inputs.fee, 300);
    assert_eq!(proof.public_inputs.revenue, 800);
    assert!(verify_clearing(&keys.pvk, &proof).unwrap());
    assert!(!timings.synthesis.is_zero() && !timings.witness_map.is_zero() && !timings.msm.is_zero());
    println!("clearing prove (test profile): {timings:?}");
}

#[test]
fn clearing_proves_at_full_capacity() {
    let keys = clearing_keys();
    let mut witness = sample();
    witness.fifo_total = 0;
    witness.fee_ppm = 0;
    witness.entries = (0..BLOCK_ENTRIES_MAX as u64)
        .map(|i| EntryWitness { seq: 1_000 + i, profit: MAX_AMOUNT - i, payout: MAX_AMOUNT - i })
        .collect();
    let proof = prove_clearing(&keys.pk, &witness, &mut rng(12)).unwrap();
    assert!(verify_clearing(&keys.pvk, &proof).unwrap());
}

#[test]
fn tampered_public_inputs_are_rejected() {
    let keys = clearing_keys();
    let proof = prove_clearing(&keys.pk, &sample(), &mut rng(13)).unwrap();
    let tampers: [fn(&mut ClearingProof); 5] = [
        |p| p.public_inputs.fee += 1,
        |p| p.public_inputs.total -= 1,
        |p| p.public_inputs.window_id += 1,
        |p| p.public_inputs.revenue += 1,
        |p| p.public_inputs.entries_commitment += Fr::from(1u64),
    ];
    for tamper in tampers {
        let mut wrong = proof.clone();
        tamper(&mut wrong);
        assert!(!verify_clearing(&keys.pvk, &wrong).unwrap());
    }
    // A proof for another statement does not verify this one.
    let mut other = sample();
    other.window_id = 43;
    let other = prove_clearing(&keys.pk, &other, &mut rng(14)).unwrap();
    let mut swapped = other.clone();
    swapped.public_inputs = proof.public_inputs;
    assert!(!verify_clearing(&keys.pvk, &swapped).unwrap());
}

#[test]
fn invalid_witness_is_refused_before_proving() {
    let keys = clearing_keys();
    let mut witness = sample();
    witness.entries[0].payout = 1_001;
    let err = prove_clearing(&keys.pk, &witness, &mut rng(15)).unwrap_err();
    assert!(matches!(err, ProveError::Witness(WitnessError::PayoutExceedsProfit { seq: 3, .. })));
}
