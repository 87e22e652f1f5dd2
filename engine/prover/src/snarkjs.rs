//! snarkjs JSON for Groth16 over BN254 (`"curve": "bn128"`): `proof.json`,
//! `verification_key.json` and `public.json`, exported and imported.
//!
//! Points are affine in projective form, coordinates as decimal strings: G1 `[x, y, "1"]`, G2
//! `[[x.c0, x.c1], [y.c0, y.c1], ["1", "0"]]` (Fq2 as `[c0, c1]`, real part first); the point at
//! infinity is `["0", "1", "0"]` / `[["0","0"],["1","0"],["0","0"]]`. `vk_alphabeta_12` is not
//! exported (snarkjs's verifier does not read it; see `docs/proofs.md`) and ignored on import.

use std::str::FromStr;

use ark_bn254::{Fq, Fq2, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::{BigInt, PrimeField, Zero};
use ark_groth16::{Proof, VerifyingKey};
use serde_json::{Value, json};
use thiserror::Error;

use crate::{Bn254, Fr};

/// Malformed snarkjs JSON.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnarkjsError {
    #[error("{field}: {reason}")]
    Malformed { field: String, reason: String },
}

fn malformed(field: &str, reason: impl Into<String>) -> SnarkjsError {
    SnarkjsError::Malformed { field: field.to_string(), reason: reason.into() }
}

fn g1_to_json(p: &G1Affine) -> Value {
    match p.xy() {
        Some((x, y)) => json!([x.to_string(), y.to_string(), "1"]),
        None => json!(["0", "1", "0"]),
    }
}

fn fq2_to_json(f: &Fq2) -> Value {
    json!([f.c0.to_string(), f.c1.to_string()])
}

fn g2_to_json(p: &G2Affine) -> Value {
    match p.xy() {
        Some((x, y)) => json!([fq2_to_json(&x), fq2_to_json(&y), ["1", "0"]]),
        None => json!([["0", "0"], ["1", "0"], ["0", "0"]]),
    }
}

/// Parses a canonical decimal string below the field modulus (no sign, no leading `+`).
fn parse_decimal<F: PrimeField<BigInt = BigInt<4>>>(field: &str, v: &Value) -> Result<F, SnarkjsError> {
    let s = v.as_str().ok_or_else(|| malformed(field, "expected a decimal string"))?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(field, format!("`{s}` is not a decimal number")));
    }
    let mut limbs = [0u64; 4];
    for digit in s.bytes().map(|b| u128::from(b - b'0')) {
        let mut carry = digit;
        for limb in &mut limbs {
            let wide = u128::from(*limb) * 10 + carry;
            *limb = wide as u64;
            carry = wide >> 64;
        }
        if carry != 0 {
            return Err(malformed(field, "number exceeds 256 bits"));
        }
    }
    F::from_bigint(BigInt(limbs)).ok_or_else(|| malformed(field, "number is not below the field modulus"))
}

fn array<'a>(field: &str, v: &'a Value, len: usize) -> Result<&'a [Value], SnarkjsError> {
    match v.as_array() {
        Some(a) if a.len() == len => Ok(a),
        _ => Err(malformed(field, format!("expected an array of {len}"))),
    }
}

fn g1_from_json(field: &str, v: &Value) -> Result<G1Affine, SnarkjsError> {
    let a = array(field, v, 3)?;
    let x: Fq = parse_decimal(field, &a[0])?;
    let y: Fq = parse_decimal(field, &a[1])?;
    let z: Fq = parse_decimal(field, &a[2])?;
    if z.is_zero() {
        return Ok(G1Affine::zero());
    }
    if z != Fq::from(1u64) {
        return Err(malformed(field, "expected an affine point (z = 1)"));
    }
    let p = G1Affine::new_unchecked(x, y);
    if !p.is_on_curve() || !p.is_in_correct_subgroup_assuming_on_curve() {
        return Err(malformed(field, "point is not on the curve"));
    }
    Ok(p)
}

fn fq2_from_json(field: &str, v: &Value) -> Result<Fq2, SnarkjsError> {
    let a = array(field, v, 2)?;
    Ok(Fq2::new(parse_decimal(field, &a[0])?, parse_decimal(field, &a[1])?))
}

fn g2_from_json(field: &str, v: &Value) -> Result<G2Affine, SnarkjsError> {
    let a = array(field, v, 3)?;
    let x = fq2_from_json(field, &a[0])?;
    let y = fq2_from_json(field, &a[1])?;
    let z = fq2_from_json(field, &a[2])?;
    if z.is_zero() {
        return Ok(G2Affine::zero());
    }
    if z != Fq2::new(Fq::from(1u64), Fq::zero()) {
        return Err(malformed(field, "expected an affine point (z = [1, 0])"));
    }
    let p = G2Affine::new_unchecked(x, y);
    if !p.is_on_curve() || !p.is_in_correct_subgroup_assuming_on_curve() {
        return Err(malformed(field, "point is not on the curve or not in the subgroup"));
    }
    Ok(p)
}

fn get<'a>(v: &'a Value, field: &str) -> Result<&'a Value, SnarkjsError> {
    v.get(field).ok_or_else(|| malformed(field, "missing"))
}

fn check_header(v: &Value) -> Result<(), SnarkjsError> {
    if get(v, "protocol")?.as_str() != Some("groth16") {
        return Err(malformed("protocol", "expected \"groth16\""));
    }
    if get(v, "curve")?.as_str() != Some("bn128") {
        return Err(malformed("curve", "expected \"bn128\""));
    }
    Ok(())
}

/// `proof.json`.
pub fn proof_to_json(proof: &Proof<Bn254>) -> Value {
    json!({
        "pi_a": g1_to_json(&proof.a),
        "pi_b": g2_to_json(&proof.b),
        "pi_c": g1_to_json(&proof.c),
        "protocol": "groth16",
        "curve": "bn128",
    })
}

pub fn proof_from_json(v: &Value) -> Result<Proof<Bn254>, SnarkjsError> {
    check_header(v)?;
    Ok(Proof {
        a: g1_from_json("pi_a", get(v, "pi_a")?)?,
        b: g2_from_json("pi_b", get(v, "pi_b")?)?,
        c: g1_from_json("pi_c", get(v, "pi_c")?)?,
    })
}

/// `verification_key.json` (without `vk_alphabeta_12`).
pub fn vk_to_json(vk: &VerifyingKey<Bn254>) -> Value {
    json!({
        "protocol": "groth16",
        "curve": "bn128",
        "nPublic": vk.gamma_abc_g1.len() - 1,
        "vk_alpha_1": g1_to_json(&vk.alpha_g1),
        "vk_beta_2": g2_to_json(&vk.beta_g2),
        "vk_gamma_2": g2_to_json(&vk.gamma_g2),
        "vk_delta_2": g2_to_json(&vk.delta_g2),
        "IC": vk.gamma_abc_g1.iter().map(g1_to_json).collect::<Vec<_>>(),
    })
}

pub fn vk_from_json(v: &Value) -> Result<VerifyingKey<Bn254>, SnarkjsError> {
    check_header(v)?;
    let n_public = get(v, "nPublic")?.as_u64().ok_or_else(|| malformed("nPublic", "expected an integer"))?;
    let ic = get(v, "IC")?.as_array().ok_or_else(|| malformed("IC", "expected an array"))?;
    if ic.len() as u64 != n_public + 1 {
        return Err(malformed("IC", format!("expected nPublic + 1 = {} points", n_public + 1)));
    }
    Ok(VerifyingKey {
        alpha_g1: g1_from_json("vk_alpha_1", get(v, "vk_alpha_1")?)?,
        beta_g2: g2_from_json("vk_beta_2", get(v, "vk_beta_2")?)?,
        gamma_g2: g2_from_json("vk_gamma_2", get(v, "vk_gamma_2")?)?,
        delta_g2: g2_from_json("vk_delta_2", get(v, "vk_delta_2")?)?,
        gamma_abc_g1: ic.iter().map(|p| g1_from_json("IC", p)).collect::<Result<_, _>>()?,
    })
}

/// `public.json`: the public inputs as decimal strings, in circuit order.
pub fn public_to_json(inputs: &[Fr]) -> Value {
    Value::Array(inputs.iter().map(|f| Value::String(f.to_string())).collect())
}

pub fn public_from_json(v: &Value) -> Result<Vec<Fr>, SnarkjsError> {
    v.as_array()
        .ok_or_else(|| malformed("public", "expected an array"))?
        .iter()
        .map(|x| parse_decimal("public", x))
        .collect()
}

/// Parses `text` as JSON, for callers holding file contents.
pub fn parse(text: &str) -> Result<Value, SnarkjsError> {
    Value::from_str(text).map_err(|e| malformed("json", e.to_string()))
}
