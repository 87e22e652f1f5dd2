use ark_ec::{AffineRepr, CurveGroup};

use fpn_prover::snarkjs::{
    SnarkjsError, parse, proof_from_json, proof_to_json, public_from_json, public_to_json, vk_from_json,
    vk_to_json,
};
use fpn_prover::{PUBLIC_INPUTS_COUNT, prove_clearing, verify_raw};
use serde_json::json;

use crate::{clearing_keys, rng, sample};

/// Exports to JSON text and imports it back, as a file round trip would.
fn round_trip(
    proof: &fpn_prover::Proof<fpn_prover::Bn254>,
    vk: &fpn_prover::VerifyingKey<fpn_prover::Bn254>,
    inputs: &[fpn_prover::Fr],
) -> (String, String, String) {
    (proof_to_json(proof).to_string(), vk_to_json(vk).to_string(), public_to_json(inputs).to_string())
}

#[test]
fn exported_proof_verifies_after_import_and_tampering_fails() {
    let keys = clearing_keys();
    let proof = prove_clearing(&keys.pk, &sample(), &mut rng(30)).unwrap();
    let inputs = proof.public_inputs.to_field_elements();
    let (proof_text, vk_text, public_text) = round_trip(&proof.proof, keys.vk(), &inputs);

    let vk_json = parse(&vk_text).unwrap();
    assert_eq!(vk_json["nPublic"], json!(PUBLIC_INPUTS_COUNT));
    assert_eq!(vk_json["curve"], json!("bn128"));
    let proof_json = parse(&proof_text).unwrap();
    assert_eq!(proof_json["pi_a"][2], json!("1"));
    assert_eq!(proof_json["pi_b"][2], json!(["1", "0"]));
    let public_json = parse(&public_text).unwrap();
    assert_eq!(public_json[0], json!("42"));
    assert_eq!(public_json[4], json!("300"));

    let vk = vk_from_json(&vk_json).unwrap();
    assert_eq!(&vk, keys.vk());
    let pvk = fpn_prover::prepare_verifying_key(&vk);
    let imported = proof_from_json(&proof_json).unwrap();
    assert_eq!(imported, proof.proof);
    let imported_inputs = public_from_json(&public_json).unwrap();
    assert!(verify_raw(&pvk, &imported_inputs, &imported).unwrap());

    // Tampered public input.
    let mut tampered = public_json.clone();
    tampered[4] = json!("301");
    let tampered_inputs = public_from_json(&tampered).unwrap();
    assert!(!verify_raw(&pvk, &tampered_inputs, &imported).unwrap());

    // Tampered proof: pi_a replaced by another valid curve point.
    let mut wrong = imported.clone();
    wrong.a = (wrong.a + ark_bn254::G1Affine::generator()).into_affine();
    let wrong_json = proof_to_json(&wrong);
    let wrong = proof_from_json(&wrong_json).unwrap();
    assert!(!verify_raw(&pvk, &imported_inputs, &wrong).unwrap());

    // Wrong number of public inputs is an error, not a verdict.
    assert!(verify_raw(&pvk, &imported_inputs[1..], &imported).is_err());
}

#[test]
fn malformed_json_is_refused() {
    let keys = clearing_keys();
    let proof = prove_clearing(&keys.pk, &sample(), &mut rng(31)).unwrap();
    let good = proof_to_json(&proof.proof);

    let mut off_curve = good.clone();
    let y = off_curve["pi_a"][1].as_str().unwrap().to_string();
    let last = y.as_bytes()[y.len() - 1];
    let bumped = format!("{}{}", &y[..y.len() - 1], if last == b'9' { '8' } else { (last + 1) as char });
    off_curve["pi_a"][1] = json!(bumped);
    assert!(
        matches!(proof_from_json(&off_curve), Err(SnarkjsError::Malformed { field, .. }) if field == "pi_a")
    );

    let mut not_decimal = good.clone();
    not_decimal["pi_c"][0] = json!("0x12");
    assert!(proof_from_json(&not_decimal).is_err());

    let mut too_big = good.clone();
    // The base field modulus itself.
    too_big["pi_c"][0] =
        json!("21888242871839275222246405745257275088696311157297823662689037894645226208583");
    assert!(proof_from_json(&too_big).is_err());

    let mut wrong_curve = good.clone();
    wrong_curve["curve"] = json!("bls12381");
    assert!(proof_from_json(&wrong_curve).is_err());

    assert!(public_from_json(&json!(["1", "-2"])).is_err());
    assert!(public_from_json(&json!([3])).is_err());

    let mut vk = vk_to_json(keys.vk());
    vk["nPublic"] = json!(PUBLIC_INPUTS_COUNT + 1);
    assert!(vk_from_json(&vk).is_err());
}
