//! End-to-end: keys on disk, proofs, verification, snarkjs JSON.

mod keys;
mod proofs;
mod snarkjs;

use std::path::PathBuf;
use std::sync::OnceLock;

use ark_std::rand::{SeedableRng, rngs::StdRng};
use fpn_prover::{
    AuctionWitness, CircuitId, CircuitKeys, ClearingWitness, EntryWitness, KeyStore, PRICING_UNIFORM,
    WinnerWitness,
};

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

/// Three entries (61 padding slots), two uniform-price winners (14 padding slots).
pub fn sample() -> ClearingWitness {
    ClearingWitness {
        window_id: 42,
        fee_ppm: 100_000,
        fifo_total: 1_200,
        entries: vec![
            EntryWitness { seq: 3, profit: 1_000, payout: 900 },
            EntryWitness { seq: 5, profit: 2_500, payout: 2_300 },
            EntryWitness { seq: 11, profit: 700, payout: 700 },
        ],
        auction: AuctionWitness {
            pricing: PRICING_UNIFORM,
            reserve: 100,
            uniform_price: 500,
            winners: vec![
                WinnerWitness { seq: 7, amount: 800, price: 500 },
                WinnerWitness { seq: 9, amount: 300, price: 300 },
            ],
        },
    }
}
