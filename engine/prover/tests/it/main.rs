//! End-to-end: keys on disk, proofs, verification, snarkjs JSON.

mod keys;
mod proofs;
mod snarkjs;

use std::path::PathBuf;
use std::sync::OnceLock;

use ark_std::rand::{SeedableRng, rngs::StdRng};
use fpn_prover::{CircuitId, CircuitKeys, ClearingWitness, KeyStore};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fpn-prover-it-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The clearing circuit's keys, set up once per test binary through a key store (and then
/// reopened, which checks the stored keys load back to the same verifying key).
pub fn clearing_keys() -> &'static CircuitKeys {
    static KEYS: OnceLock<CircuitKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = TempDir::new("clearing-keys");
        let store = KeyStore::open(&dir.0).unwrap();
        let made = store.keys_with_rng(CircuitId::Clearing, &mut rng(1)).unwrap();
        let loaded = KeyStore::open(&dir.0).unwrap().keys_with_rng(CircuitId::Clearing, &mut rng(2)).unwrap();
        assert_eq!(made.vk(), loaded.vk());
        assert!(made.pk == loaded.pk);
        loaded
    })
}

pub fn mul_keys() -> &'static CircuitKeys {
    static KEYS: OnceLock<CircuitKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = TempDir::new("mul-keys");
        KeyStore::open(&dir.0).unwrap().keys_with_rng(CircuitId::Mul, &mut rng(3)).unwrap()
    })
}

/// See [`ClearingWitness::sample`].
pub fn sample() -> ClearingWitness {
    ClearingWitness::sample()
}
