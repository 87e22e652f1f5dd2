//! The Poseidon sponge used for the entry and winner commitments, natively and in-circuit.
//!
//! Parameters: BN254 scalar field, width 3 (rate 2, capacity 1), S-box x^5, 8 full and 57
//! partial rounds (the Poseidon paper's 128-bit choice for this width); round constants and
//! MDS matrix from the Grain LFSR as implemented by `ark-crypto-primitives`
//! (`find_poseidon_ark_and_mds`). These are NOT circomlib's constants, so a circomlib
//! Poseidon gives different commitments; any arkworks-compatible implementation matches.

use std::sync::OnceLock;

use ark_crypto_primitives::sponge::{
    CryptographicSponge,
    poseidon::{PoseidonConfig, PoseidonSponge, find_poseidon_ark_and_mds},
};
use ark_ff::PrimeField;

use crate::Fr;
use crate::clearing::{AMOUNT_BITS, EntryWitness, WinnerWitness};

pub(crate) const FULL_ROUNDS: usize = 8;
pub(crate) const PARTIAL_ROUNDS: usize = 57;
const ALPHA: u64 = 5;
const RATE: usize = 2;

/// Domain separation: the first element absorbed by each commitment.
pub(crate) const ENTRIES_TAG: u64 = 1;
pub(crate) const WINNERS_TAG: u64 = 2;

pub(crate) fn config() -> &'static PoseidonConfig<Fr> {
    static CONFIG: OnceLock<PoseidonConfig<Fr>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let (ark, mds) = find_poseidon_ark_and_mds::<Fr>(
            u64::from(Fr::MODULUS_BIT_SIZE),
            RATE,
            FULL_ROUNDS as u64,
            PARTIAL_ROUNDS as u64,
            0,
        );
        PoseidonConfig::new(FULL_ROUNDS, PARTIAL_ROUNDS, ALPHA, mds, ark, RATE, 1)
    })
}

/// `seq · 2^88 + hi · 2^44 + lo`: one field element per slot. Injective because the circuit
/// range-checks `seq < 2^64` and `hi, lo < 2^44` (152 bits < the 254-bit field).
pub(crate) fn pack(seq: u64, hi: u64, lo: u64) -> Fr {
    let shift = Fr::from(1u64 << AMOUNT_BITS);
    (Fr::from(seq) * shift + Fr::from(hi)) * shift + Fr::from(lo)
}

fn sponge_hash(elements: &[Fr]) -> Fr {
    let mut sponge = PoseidonSponge::new(config());
    sponge.absorb(&elements.to_vec());
    sponge.squeeze_field_elements::<Fr>(1)[0]
}

/// The commitment to a block's entries: Poseidon over
/// `[1, window_id, count, pack(seq, profit, payout) for each of the BLOCK_ENTRIES_MAX slots]`,
/// padding slots packing to 0.
pub fn entries_commitment(window_id: u64, entries: &[EntryWitness], slots: usize) -> Fr {
    assert!(entries.len() <= slots, "more entries than slots");
    let mut elements = Vec::with_capacity(slots + 3);
    elements.push(Fr::from(ENTRIES_TAG));
    elements.push(Fr::from(window_id));
    elements.push(Fr::from(entries.len() as u64));
    elements.extend(entries.iter().map(|e| pack(e.seq, e.profit, e.payout)));
    elements.resize(slots + 3, Fr::from(0u64));
    sponge_hash(&elements)
}

/// The commitment to an auction's winners: Poseidon over
/// `[2, window_id, count, pack(seq, amount, price) for each of the WINNERS_MAX slots]`.
pub fn winners_commitment(window_id: u64, winners: &[WinnerWitness], slots: usize) -> Fr {
    assert!(winners.len() <= slots, "more winners than slots");
    let mut elements = Vec::with_capacity(slots + 3);
    elements.push(Fr::from(WINNERS_TAG));
    elements.push(Fr::from(window_id));
    elements.push(Fr::from(winners.len() as u64));
    elements.extend(winners.iter().map(|w| pack(w.seq, w.amount, w.price)));
    elements.resize(slots + 3, Fr::from(0u64));
    sponge_hash(&elements)
}
