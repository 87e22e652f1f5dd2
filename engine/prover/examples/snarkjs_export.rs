//! Prints the circuits' constraint counts, proves a sample clearing and writes
//! `verification_key.json`, `proof.json` and `public.json` to a directory, for checking with
//! snarkjs: `snarkjs groth16 verify verification_key.json public.json proof.json`.
//!
//! `cargo run -p fpn-prover --example snarkjs_export -- OUT_DIR`
//! (keys are set up in, or loaded from, `OUT_DIR/keys`).

use std::path::PathBuf;

use ark_std::rand::rngs::OsRng;
use fpn_prover::{
    CircuitId, ClearingCircuit, ClearingWitness, KeyStore, MulCircuit, MulWitness, constraint_counts,
    prove_clearing_timed, snarkjs, verify_clearing,
};

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: snarkjs_export OUT_DIR"));
    for (name, counts) in [
        ("mul", constraint_counts(MulCircuit::new(MulWitness::default()))),
        ("clearing", constraint_counts(ClearingCircuit::blank())),
    ] {
        let (constraints, instance, witness) = counts.expect("synthesis");
        println!(
            "{name}: {constraints} constraints, {} public inputs (+1 constant), {witness} witness variables",
            instance - 1
        );
    }

    let keys = KeyStore::open(out.join("keys"))
        .and_then(|store| store.keys(CircuitId::Clearing))
        .expect("clearing keys");
    let witness = ClearingWitness::sample();
    let (proof, timings) = prove_clearing_timed(&keys.pk, &witness, &mut OsRng).expect("prove");
    println!("proved: {timings:?}");
    assert!(verify_clearing(&keys.pvk, &proof).expect("verify"));

    let write = |name: &str, value: serde_json::Value| {
        let path = out.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(&value).expect("json")).expect("write");
        println!("wrote {}", path.display());
    };
    write("verification_key.json", snarkjs::vk_to_json(keys.vk()));
    write("proof.json", snarkjs::proof_to_json(&proof.proof));
    write("public.json", snarkjs::public_to_json(&proof.public_inputs.to_field_elements()));
}
