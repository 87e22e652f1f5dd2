//! Small R1CS gadgets: range checks by bit decomposition.

use ark_ff::{BigInteger, PrimeField};
use ark_r1cs_std::{boolean::Boolean, eq::EqGadget, fields::fp::FpVar, prelude::*};
use ark_relations::gr1cs::SynthesisError;

use crate::Fr;

/// Enforces `0 <= value < 2^bits` (as an integer below the field modulus): `bits` boolean
/// witnesses (one constraint each) whose weighted sum equals `value` (one more constraint).
///
/// The bits are taken from the low bits of the value's canonical form. A value out of range
/// yields bits that do not recompose to it, so the system is unsatisfied rather than the
/// synthesis failing: tests rely on that to check the constraints without the pre-check.
pub(crate) fn enforce_bits(value: &FpVar<Fr>, bits: usize) -> Result<(), SynthesisError> {
    assert!(bits < Fr::MODULUS_BIT_SIZE as usize, "range check wider than the field");
    let cs = value.cs();
    let native = value.value();
    let mut bit_vars = Vec::with_capacity(bits);
    for i in 0..bits {
        let bit = Boolean::new_witness(cs.clone(), || native.map(|v| v.into_bigint().get_bit(i)))?;
        bit_vars.push(bit);
    }
    Boolean::le_bits_to_fp(&bit_vars)?.enforce_equal(value)
}

/// Enforces `value ∈ {0, 1}` for a field variable (one constraint).
pub(crate) fn enforce_boolean(value: &FpVar<Fr>) -> Result<(), SynthesisError> {
    let minus_one = value.clone() - FpVar::Constant(Fr::from(1u64));
    value.mul_equals(&minus_one, &FpVar::Constant(Fr::from(0u64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_r1cs_std::alloc::AllocVar;
    use ark_relations::gr1cs::ConstraintSystem;

    fn satisfied(value: Fr, bits: usize) -> bool {
        let cs = ConstraintSystem::<Fr>::new_ref();
        let v = FpVar::new_witness(cs.clone(), || Ok(value)).unwrap();
        enforce_bits(&v, bits).unwrap();
        cs.is_satisfied().unwrap()
    }

    #[test]
    fn range_check_accepts_in_range_and_rejects_out_of_range() {
        assert!(satisfied(Fr::from(0u64), 44));
        assert!(satisfied(Fr::from((1u64 << 44) - 1), 44));
        assert!(!satisfied(Fr::from(1u64 << 44), 44));
        // -1 is the largest field element: a subtraction that went negative.
        assert!(!satisfied(-Fr::from(1u64), 64));
        assert!(satisfied(Fr::from(u64::MAX), 64));
    }
}
