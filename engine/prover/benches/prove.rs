//! Groth16 proving on one thread: the bare ark-groth16 prover for the mul and clearing
//! circuits, and the clearing prover split into synthesis, witness map (R1CS→QAP, FFTs) and MSM.
//!
//! `cargo bench -p fpn-prover --bench prove -- --warm-up-time 1 --measurement-time 5 --sample-size 10`

use std::hint::black_box;
use std::time::Duration;

use ark_groth16::{Groth16, r1cs_to_qap::LibsnarkReduction, r1cs_to_qap::R1CSToQAP};
use ark_poly::GeneralEvaluationDomain;
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystem, OptimizationGoal, SynthesisMode};
use ark_snark::SNARK;
use ark_std::rand::{SeedableRng, rngs::StdRng};
use criterion::{Criterion, criterion_group, criterion_main};
use fpn_prover::{
    AuctionWitness, BLOCK_ENTRIES_MAX, Bn254, ClearingCircuit, ClearingWitness, EntryWitness, Fr, MAX_AMOUNT,
    MulCircuit, MulWitness, PRICING_UNIFORM, ProveTimings, WINNERS_MAX, WinnerWitness, prove_clearing_timed,
};

/// Every entry and winner slot used.
fn full_capacity() -> ClearingWitness {
    let entries: Vec<EntryWitness> = (0..BLOCK_ENTRIES_MAX as u64)
        .map(|i| EntryWitness { seq: 1_000 + 3 * i, profit: MAX_AMOUNT - i, payout: MAX_AMOUNT - i - 1_000 })
        .collect();
    let payouts: u64 = entries.iter().map(|e| e.payout).sum();
    let winners = (0..WINNERS_MAX as u64)
        .map(|j| {
            let amount = 1_000_000 + j * 1_000;
            WinnerWitness { seq: 2_000 + j, amount, price: amount.min(1_005_000) }
        })
        .collect();
    ClearingWitness {
        windows_count: 1,
        window_id: 7,
        // fee = total − payouts = surplus at a fee rate of one.
        fee_ppm: 1_000_000,
        fifo_total: payouts,
        entries,
        auction: AuctionWitness {
            pricing: PRICING_UNIFORM,
            reserve: 1_000_000,
            uniform_price: 1_005_000,
            winners,
        },
    }
}

fn synthesize(circuit: ClearingCircuit) -> ark_relations::gr1cs::ConstraintSystemRef<Fr> {
    let cs = ConstraintSystem::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Prove { construct_matrices: true, generate_lc_assignments: false });
    circuit.generate_constraints(cs.clone()).unwrap();
    cs.finalize();
    cs
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);

    let mul = MulCircuit::new(MulWitness { x: 3, y: 5 });
    let (mul_pk, _) = Groth16::<Bn254>::circuit_specific_setup(mul.clone(), &mut rng).unwrap();
    c.bench_function("mul/prove", |b| {
        b.iter(|| Groth16::<Bn254>::prove(&mul_pk, black_box(mul.clone()), &mut rng).unwrap())
    });

    let witness = full_capacity();
    let circuit = ClearingCircuit::new(witness.clone()).unwrap();
    let (pk, _) = Groth16::<Bn254>::circuit_specific_setup(circuit.clone(), &mut rng).unwrap();
    c.bench_function("clearing_full/prove_bare", |b| {
        b.iter(|| Groth16::<Bn254>::prove(&pk, black_box(circuit.clone()), &mut rng).unwrap())
    });
    c.bench_function("clearing_full/synthesis", |b| b.iter(|| synthesize(black_box(circuit.clone()))));
    let cs = synthesize(circuit.clone());
    c.bench_function("clearing_full/witness_map", |b| {
        b.iter(|| LibsnarkReduction::witness_map::<Fr, GeneralEvaluationDomain<Fr>>(cs.clone()).unwrap())
    });

    let mut split = Vec::new();
    c.bench_function("clearing_full/prove_timed", |b| {
        b.iter(|| {
            let (proof, timings) = prove_clearing_timed(&pk, black_box(&witness), &mut rng).unwrap();
            split.push(timings);
            proof
        })
    });
    let n = split.len() as u32;
    let mean = |f: fn(&ProveTimings) -> Duration| split.iter().map(f).sum::<Duration>() / n;
    println!(
        "clearing_full/prove_timed split over {n} proofs: synthesis {:?}, witness map {:?}, msm {:?}",
        mean(|t| t.synthesis),
        mean(|t| t.witness_map),
        mean(|t| t.msm),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
