//! Groth16 proofs of block clearings over BN254 (arkworks).
//!
//! Everything here is sans-IO except [`KeyStore`], which reads and writes key files in the
//! directory it is given. The call order for a prover is:
//!
//! 1. [`KeyStore::open`] a key directory, then [`KeyStore::keys`] for a [`CircuitId`]: the first
//!    call runs the circuit-specific setup and stores the keys, later calls load them and refuse
//!    keys made for a different circuit ([`KeyError::CircuitMismatch`]).
//! 2. [`prove_clearing`] (or [`prove_clearing_timed`] to see where the time goes) with the
//!    proving key and a [`ClearingWitness`]; witnesses that break the statement are rejected
//!    before any proving work.
//! 3. [`verify_clearing`] with the verifying key, or export with [`snarkjs`] for other verifiers.
//!
//! The statement proven is fixed in `docs/proofs.md`.

mod clearing;
mod gadgets;
mod keys;
mod mul;
mod poseidon;
mod prove;
pub mod snarkjs;

pub use ark_bn254::{Bn254, Fr};
pub use ark_groth16::{PreparedVerifyingKey, Proof, ProvingKey, VerifyingKey, prepare_verifying_key};

pub use clearing::{
    AMOUNT_BITS, AuctionWitness, BLOCK_ENTRIES_MAX, ClearingCircuit, ClearingPublic, ClearingWitness,
    EntryWitness, MAX_AMOUNT, PPM_ONE, PRICING_FIRST_PRICE, PRICING_UNIFORM, PUBLIC_INPUTS_COUNT,
    SPAN_WINDOWS_MAX, WINNERS_MAX, WinnerWitness, WitnessError,
};
pub use keys::{CIRCUIT_VERSION, CircuitId, CircuitKeys, KeyError, KeyStore, circuit_digest};
pub use mul::{MulCircuit, MulPublic, MulWitness};
pub use poseidon::{entries_commitment, winners_commitment};
pub use prove::{
    ClearingProof, MulProof, ProveError, ProveTimings, VerifyError, constraint_counts, prove_clearing,
    prove_clearing_timed, prove_mul, verify_clearing, verify_mul, verify_raw,
};

/// Number of R1CS constraints plus public inputs (including the constant one) a circuit may
/// have: the QAP evaluation domain of BN254 Groth16 provers in this project is capped at 2^16.
pub const DOMAIN_SIZE_MAX: usize = 1 << 16;
