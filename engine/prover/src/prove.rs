//! Proving and verifying, with the prover's time split into its phases.

use std::cell::Cell;
use std::time::{Duration, Instant};

use ark_ff::{PrimeField, UniformRand};
use ark_groth16::r1cs_to_qap::R1CSToQAP;
use ark_groth16::{Groth16, PreparedVerifyingKey, Proof, ProvingKey, r1cs_to_qap::LibsnarkReduction};
use ark_poly::EvaluationDomain;
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystem, Matrix, OptimizationGoal, R1CS_PREDICATE_LABEL, SynthesisError,
    SynthesisMode,
};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use ark_std::rand::{CryptoRng, RngCore};
use thiserror::Error;

use crate::clearing::{ClearingCircuit, ClearingPublic, ClearingWitness, WitnessError};
use crate::mul::{MulCircuit, MulPublic, MulWitness};
use crate::{Bn254, Fr};

/// Why a proof was not produced.
#[derive(Debug, Error)]
pub enum ProveError {
    #[error("the witness breaks the clearing statement: {0}")]
    Witness(#[from] WitnessError),
    #[error("proving failed: {0}")]
    Synthesis(#[from] SynthesisError),
}

/// Why a proof could not be checked (a proof that is checked and wrong is `Ok(false)`).
#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("expected {expected} public inputs, got {got}")]
    PublicInputCount { expected: usize, got: usize },
    #[error("verification failed: {0}")]
    Synthesis(#[from] SynthesisError),
}

/// Where one proof's time went. `synthesis + witness_map + msm` is the whole prover after
/// the pre-check (the remainder is allocation and copying, small).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProveTimings {
    /// Running the circuit: witness generation, constraint system, inlining the linear
    /// combinations and building the R1CS matrices.
    pub synthesis: Duration,
    /// R1CS to QAP: evaluating the constraints and the (i)FFTs that give `h(x)`.
    pub witness_map: Duration,
    /// The multi-scalar multiplications (A, B in G1 and G2, C, H) and the final additions.
    pub msm: Duration,
}

/// A clearing proof with the public inputs it proves.
#[derive(Debug, Clone, PartialEq)]
pub struct ClearingProof {
    pub proof: Proof<Bn254>,
    pub public_inputs: ClearingPublic,
}

/// A proof of the smoke-test circuit.
#[derive(Debug, Clone, PartialEq)]
pub struct MulProof {
    pub proof: Proof<Bn254>,
    pub public_inputs: MulPublic,
}

thread_local! {
    static WITNESS_MAP_TIME: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// The libsnark reduction, timed: ark-groth16 calls the witness map through this trait in the
/// middle of `create_proof_with_reduction_and_matrices`, which is the only way to time it
/// apart from the MSMs without re-implementing the prover. The time goes to a thread-local,
/// which is sound because one proof runs on one thread (no `parallel` feature).
struct TimedReduction;

impl R1CSToQAP for TimedReduction {
    #[allow(clippy::type_complexity)]
    fn instance_map_with_evaluation<F: PrimeField, D: EvaluationDomain<F>>(
        cs: ark_relations::gr1cs::ConstraintSystemRef<F>,
        t: &F,
    ) -> Result<(Vec<F>, Vec<F>, Vec<F>, F, usize, usize), SynthesisError> {
        LibsnarkReduction::instance_map_with_evaluation::<F, D>(cs, t)
    }

    fn witness_map_from_matrices<F: PrimeField, D: EvaluationDomain<F>>(
        matrices: &[Matrix<F>],
        num_inputs: usize,
        num_constraints: usize,
        full_assignment: &[F],
    ) -> Result<Vec<F>, SynthesisError> {
        let start = Instant::now();
        let h = LibsnarkReduction::witness_map_from_matrices::<F, D>(
            matrices,
            num_inputs,
            num_constraints,
            full_assignment,
        );
        WITNESS_MAP_TIME.with(|t| t.set(start.elapsed()));
        h
    }

    fn h_query_scalars<F: PrimeField, D: EvaluationDomain<F>>(
        max_power: usize,
        t: F,
        zt: F,
        delta_inverse: F,
    ) -> Result<Vec<F>, SynthesisError> {
        LibsnarkReduction::h_query_scalars::<F, D>(max_power, t, zt, delta_inverse)
    }
}

/// Groth16 proving as ark-groth16's `create_random_proof_with_reduction` does it, in phases.
///
/// The callers below take `&mut dyn RngCore` and concrete circuits, so all the arkworks generics
/// (field arithmetic, FFT, MSM) are instantiated in this crate, compiled with this crate's
/// optimisation settings, whatever crate calls the public functions.
fn prove_timed<C: ConstraintSynthesizer<Fr>>(
    circuit: C,
    pk: &ProvingKey<Bn254>,
    rng: &mut dyn RngCore,
) -> Result<(Proof<Bn254>, ProveTimings), SynthesisError> {
    let r = Fr::rand(rng);
    let s = Fr::rand(rng);
    let start = Instant::now();
    let cs = ConstraintSystem::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Prove { construct_matrices: true, generate_lc_assignments: false });
    circuit.generate_constraints(cs.clone())?;
    cs.finalize();
    // The pre-check accepted the witness, so the constraints hold (tests cover the agreement);
    // a failure here is a bug in one of the two, and would otherwise yield a proof that fails
    // to verify.
    debug_assert!(cs.is_satisfied().unwrap_or(false), "pre-checked witness unsatisfied");
    let mut matrices = cs.to_matrices()?;
    let matrices = matrices.remove(R1CS_PREDICATE_LABEL).ok_or(SynthesisError::MissingCS)?;
    let num_inputs = cs.num_instance_variables();
    let num_constraints = cs.num_constraints();
    let full_assignment = [cs.instance_assignment()?, cs.witness_assignment()?].concat();
    let synthesis = start.elapsed();

    let start = Instant::now();
    WITNESS_MAP_TIME.with(|t| t.set(Duration::ZERO));
    let proof = Groth16::<Bn254, TimedReduction>::create_proof_with_reduction_and_matrices(
        pk,
        r,
        s,
        &matrices,
        num_inputs,
        num_constraints,
        &full_assignment,
    )?;
    let rest = start.elapsed();
    let witness_map = WITNESS_MAP_TIME.with(Cell::get);
    let timings = ProveTimings { synthesis, witness_map, msm: rest.saturating_sub(witness_map) };
    Ok((proof, timings))
}

/// Proves a clearing. The witness is checked first; a witness that breaks the statement is a
/// [`ProveError::Witness`] and costs no proving work.
pub fn prove_clearing(
    pk: &ProvingKey<Bn254>,
    witness: &ClearingWitness,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<ClearingProof, ProveError> {
    prove_clearing_timed(pk, witness, rng).map(|(proof, _)| proof)
}

/// [`prove_clearing`], also returning where the time went.
pub fn prove_clearing_timed(
    pk: &ProvingKey<Bn254>,
    witness: &ClearingWitness,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<(ClearingProof, ProveTimings), ProveError> {
    prove_clearing_dyn(pk, witness, rng)
}

fn prove_clearing_dyn(
    pk: &ProvingKey<Bn254>,
    witness: &ClearingWitness,
    rng: &mut dyn RngCore,
) -> Result<(ClearingProof, ProveTimings), ProveError> {
    let circuit = ClearingCircuit::new(witness.clone())?;
    let public_inputs = *circuit.public();
    let (proof, timings) = prove_timed(circuit, pk, rng)?;
    Ok((ClearingProof { proof, public_inputs }, timings))
}

/// Checks a clearing proof against its public inputs.
pub fn verify_clearing(
    pvk: &PreparedVerifyingKey<Bn254>,
    proof: &ClearingProof,
) -> Result<bool, VerifyError> {
    verify_raw(pvk, &proof.public_inputs.to_field_elements(), &proof.proof)
}

/// Proves knowledge of factors of `x · y`.
pub fn prove_mul(
    pk: &ProvingKey<Bn254>,
    witness: MulWitness,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<MulProof, ProveError> {
    let circuit = MulCircuit::new(witness);
    let public_inputs = circuit.public;
    let (proof, _) = prove_timed(circuit, pk, rng as &mut dyn RngCore)?;
    Ok(MulProof { proof, public_inputs })
}

pub fn verify_mul(pvk: &PreparedVerifyingKey<Bn254>, proof: &MulProof) -> Result<bool, VerifyError> {
    verify_raw(pvk, &[proof.public_inputs.z], &proof.proof)
}

/// Verifies a proof against raw public inputs (as imported from snarkjs JSON, for example).
pub fn verify_raw(
    pvk: &PreparedVerifyingKey<Bn254>,
    inputs: &[Fr],
    proof: &Proof<Bn254>,
) -> Result<bool, VerifyError> {
    let expected = pvk.vk.gamma_abc_g1.len() - 1;
    if inputs.len() != expected {
        return Err(VerifyError::PublicInputCount { expected, got: inputs.len() });
    }
    Ok(Groth16::<Bn254>::verify_proof(pvk, proof, inputs)?)
}

/// Bytes of a Groth16 proof over BN254, ark-serialize compressed: A (G1, 32), B (G2, 64),
/// C (G1, 32). The proof record of the client transport carries these (`docs/wire.md`, 0x84).
pub const PROOF_COMPRESSED_LEN: usize = 128;

/// The proof, ark-serialize compressed.
pub fn proof_to_compressed(proof: &Proof<Bn254>) -> [u8; PROOF_COMPRESSED_LEN] {
    let mut out = [0u8; PROOF_COMPRESSED_LEN];
    debug_assert_eq!(proof.compressed_size(), PROOF_COMPRESSED_LEN);
    proof.serialize_compressed(&mut out[..]).expect("a BN254 Groth16 proof compresses to 128 bytes");
    out
}

/// A proof from its compressed bytes; `None` if they are not a valid proof (points off the
/// curve or outside the subgroup).
pub fn proof_from_compressed(bytes: &[u8; PROOF_COMPRESSED_LEN]) -> Option<Proof<Bn254>> {
    Proof::<Bn254>::deserialize_compressed(&bytes[..]).ok()
}

/// `(constraints, public inputs including the constant one, witness variables)` of a circuit.
pub fn constraint_counts<C: ConstraintSynthesizer<Fr>>(
    circuit: C,
) -> Result<(usize, usize, usize), SynthesisError> {
    let cs = ConstraintSystem::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Setup);
    circuit.generate_constraints(cs.clone())?;
    cs.finalize();
    Ok((cs.num_constraints(), cs.num_instance_variables(), cs.num_witness_variables()))
}
