use std::fs;

use fpn_prover::{CircuitId, KeyError, KeyStore};

use crate::{TempDir, rng};

#[test]
fn keys_are_created_then_loaded() {
    let dir = TempDir::new("create-reopen");
    let made = KeyStore::open(&dir.0).unwrap().keys_with_rng(CircuitId::Mul, &mut rng(20)).unwrap();
    for file in ["mul.pk", "mul.vk", "mul.digest"] {
        assert!(dir.0.join(file).is_file(), "{file} written");
    }
    // A different rng would give different keys if it were used: the stored ones must come back.
    let loaded = KeyStore::open(&dir.0).unwrap().keys_with_rng(CircuitId::Mul, &mut rng(21)).unwrap();
    assert_eq!(made.vk(), loaded.vk());
    assert_eq!(made.digest, loaded.digest);
}

#[test]
fn setup_replaces_stored_keys() {
    let dir = TempDir::new("force");
    let store = KeyStore::open(&dir.0).unwrap();
    let old = store.keys_with_rng(CircuitId::Mul, &mut rng(22)).unwrap();
    let new = store.setup(CircuitId::Mul, &mut rng(23)).unwrap();
    assert_ne!(old.vk(), new.vk());
    assert_eq!(store.keys(CircuitId::Mul).unwrap().vk(), new.vk());
}

#[test]
fn digest_of_another_circuit_is_a_mismatch() {
    let dir = TempDir::new("mismatch");
    let store = KeyStore::open(&dir.0).unwrap();
    store.keys_with_rng(CircuitId::Mul, &mut rng(24)).unwrap();
    let digest_path = dir.0.join("mul.digest");
    let stored = fs::read_to_string(&digest_path).unwrap();
    let fields: Vec<&str> = stored.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{stored}");
    // Keys made by an older version of the circuit: same files, another circuit digest.
    let stale = format!("mul {} {}\n", "ab".repeat(32), fields[2]);
    fs::write(&digest_path, stale).unwrap();
    let err = store.keys(CircuitId::Mul).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, KeyError::CircuitMismatch { circuit: "mul", stored, .. } if *stored == "ab".repeat(32)),
        "{err:?}"
    );
    assert!(message.contains("fpn zk setup --force"), "{message}");
    assert!(message.contains(&dir.0.display().to_string()), "{message}");
}

#[test]
fn corrupt_keys_are_reported() {
    let dir = TempDir::new("corrupt");
    let store = KeyStore::open(&dir.0).unwrap();
    store.keys_with_rng(CircuitId::Mul, &mut rng(25)).unwrap();
    let pk = dir.0.join("mul.pk");
    let good = fs::read(&pk).unwrap();
    // One flipped byte: caught by the checksum (the key is loaded without point checks).
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    fs::write(&pk, &flipped).unwrap();
    assert!(matches!(store.keys(CircuitId::Mul), Err(KeyError::Corrupt { .. })));
    fs::write(&pk, &good).unwrap();
    assert!(store.keys(CircuitId::Mul).is_ok());
    let mut bytes = good;
    bytes.truncate(bytes.len() / 2);
    fs::write(&pk, bytes).unwrap();
    assert!(matches!(store.keys(CircuitId::Mul), Err(KeyError::Corrupt { .. })));
    fs::remove_file(&pk).unwrap();
    assert!(matches!(store.keys(CircuitId::Mul), Err(KeyError::Corrupt { .. })));
    fs::write(dir.0.join("mul.digest"), "garbage").unwrap();
    assert!(matches!(store.keys(CircuitId::Mul), Err(KeyError::Corrupt { .. })));
}

#[test]
fn digests_differ_between_circuits_and_are_stable() {
    let mul = fpn_prover::circuit_digest(CircuitId::Mul).unwrap();
    assert_eq!(mul, fpn_prover::circuit_digest(CircuitId::Mul).unwrap());
    assert_ne!(mul, crate::clearing_keys().digest);
}
