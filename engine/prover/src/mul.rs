//! The smoke-test circuit: knowledge of `x, y` with `x · y = z`, `z` public.

use ark_r1cs_std::{alloc::AllocVar, fields::FieldVar, fields::fp::FpVar};
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};

use crate::Fr;

/// The private factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MulWitness {
    pub x: u64,
    pub y: u64,
}

/// The public product (as a field element: `x · y` may exceed `u64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MulPublic {
    pub z: Fr,
}

impl MulWitness {
    pub fn public(&self) -> MulPublic {
        MulPublic { z: Fr::from(self.x) * Fr::from(self.y) }
    }
}

/// `x · y = z`: one constraint, one public input.
#[derive(Debug, Clone)]
pub struct MulCircuit {
    pub witness: MulWitness,
    pub public: MulPublic,
}

impl MulCircuit {
    /// The circuit for an honest witness.
    pub fn new(witness: MulWitness) -> MulCircuit {
        MulCircuit { public: witness.public(), witness }
    }
}

impl ConstraintSynthesizer<Fr> for MulCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let z = FpVar::new_input(cs.clone(), || Ok(self.public.z))?;
        let x = FpVar::new_witness(cs.clone(), || Ok(Fr::from(self.witness.x)))?;
        let y = FpVar::new_witness(cs, || Ok(Fr::from(self.witness.y)))?;
        x.mul_equals(&y, &z)
    }
}
