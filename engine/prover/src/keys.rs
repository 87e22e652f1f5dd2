//! Proving and verifying keys on disk, bound to the circuit they were made for.
//!
//! Layout of a key directory, per circuit `NAME` (`mul`, `clearing`):
//! `NAME.pk` (ark-serialize compressed `ProvingKey<Bn254>`), `NAME.vk` (compressed
//! `VerifyingKey<Bn254>`), `NAME.digest` (one line: `NAME <hex circuit digest> <hex SHA-256 of
//! NAME.pk>`). Files are written to a temporary name and renamed, digest last, so a crash
//! mid-write leaves no digest and the next open sets up again instead of loading half a key.
//!
//! The verifying key is loaded with full point validation. The proving key (~6 MB for the
//! clearing circuit) is loaded without the curve and subgroup checks, which take ~10 s against
//! ~2 s unchecked (measured on the shared dev machine, opt-level 3): a bad proving key can only
//! make this prover's proofs fail to verify, never make a false proof verify, and the SHA-256
//! in the digest file catches corruption on disk. It must also carry the validated verifying
//! key. (Stored uncompressed it would load in ~40 ms at twice the size.)

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ark_groth16::{Groth16, PreparedVerifyingKey, ProvingKey, VerifyingKey, prepare_verifying_key};
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystem, OptimizationGoal, R1CS_PREDICATE_LABEL, SynthesisError,
    SynthesisMode,
};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use ark_snark::SNARK;
use ark_std::rand::{CryptoRng, RngCore, rngs::OsRng};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::clearing::{AMOUNT_BITS, BLOCK_ENTRIES_MAX, ClearingCircuit, WINNERS_MAX};
use crate::mul::{MulCircuit, MulWitness};
use crate::{Bn254, Fr};

/// Bumped whenever the meaning of a circuit changes without its R1CS changing (for example
/// the order of public inputs). Part of every circuit digest.
pub const CIRCUIT_VERSION: u32 = 2;

/// A cryptographic rng as a trait object, so the setup is compiled once, in this crate.
trait SetupRng: RngCore + CryptoRng {}

impl<R: RngCore + CryptoRng> SetupRng for R {}

/// The circuits this crate proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitId {
    Mul,
    Clearing,
}

impl CircuitId {
    pub fn name(self) -> &'static str {
        match self {
            CircuitId::Mul => "mul",
            CircuitId::Clearing => "clearing",
        }
    }

    /// The capacities that shape the circuit, for the digest.
    fn shape(self) -> String {
        match self {
            CircuitId::Mul => String::new(),
            CircuitId::Clearing => {
                format!("entries={BLOCK_ENTRIES_MAX} winners={WINNERS_MAX} amount_bits={AMOUNT_BITS}")
            }
        }
    }

    fn synthesize(self, cs: ark_relations::gr1cs::ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        match self {
            CircuitId::Mul => MulCircuit::new(MulWitness::default()).generate_constraints(cs),
            CircuitId::Clearing => ClearingCircuit::blank().generate_constraints(cs),
        }
    }

    fn setup(
        self,
        mut rng: &mut dyn SetupRng,
    ) -> Result<(ProvingKey<Bn254>, VerifyingKey<Bn254>), SynthesisError> {
        let rng = &mut rng;
        match self {
            CircuitId::Mul => {
                Groth16::<Bn254>::circuit_specific_setup(MulCircuit::new(MulWitness::default()), rng)
            }
            CircuitId::Clearing => Groth16::<Bn254>::circuit_specific_setup(ClearingCircuit::blank(), rng),
        }
    }
}

/// SHA-256 over the circuit's name, [`CIRCUIT_VERSION`], capacities, sizes and its R1CS
/// matrices (every coefficient and column). Any change to the constraints, including the
/// Poseidon constants, changes it.
pub fn circuit_digest(id: CircuitId) -> Result<[u8; 32], SynthesisError> {
    let cs = ConstraintSystem::<Fr>::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Setup);
    id.synthesize(cs.clone())?;
    cs.finalize();
    let mut hasher = Sha256::new();
    hasher.update(b"fpn-prover circuit digest\0");
    hasher.update(id.name().as_bytes());
    hasher.update(b"\0");
    hasher.update(CIRCUIT_VERSION.to_le_bytes());
    hasher.update(id.shape().as_bytes());
    hasher.update(b"\0");
    for n in [cs.num_constraints(), cs.num_instance_variables(), cs.num_witness_variables()] {
        hasher.update((n as u64).to_le_bytes());
    }
    let matrices = cs.to_matrices()?;
    let matrices = matrices.get(R1CS_PREDICATE_LABEL).ok_or(SynthesisError::MissingCS)?;
    let mut buf = Vec::new();
    for matrix in matrices {
        hasher.update((matrix.len() as u64).to_le_bytes());
        for row in matrix {
            hasher.update((row.len() as u64).to_le_bytes());
            for (coeff, column) in row {
                buf.clear();
                coeff.serialize_compressed(&mut buf).expect("writing to a Vec cannot fail");
                hasher.update(&buf);
                hasher.update((*column as u64).to_le_bytes());
            }
        }
    }
    Ok(hasher.finalize().into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Key store failures.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("key store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("key store {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "stored keys are for circuit {circuit} digest {stored}, current circuit is {current}; \
         delete {dir} or run `fpn zk setup --force`"
    )]
    CircuitMismatch { circuit: &'static str, stored: String, current: String, dir: PathBuf },
    #[error("key setup failed: {0}")]
    Setup(#[from] SynthesisError),
}

/// A circuit's keys, ready to prove and verify.
#[derive(Debug, Clone)]
pub struct CircuitKeys {
    pub id: CircuitId,
    pub pk: ProvingKey<Bn254>,
    pub pvk: PreparedVerifyingKey<Bn254>,
    pub digest: [u8; 32],
}

impl CircuitKeys {
    pub fn vk(&self) -> &VerifyingKey<Bn254> {
        &self.pvk.vk
    }
}

/// A directory of circuit keys. See the module documentation for the layout.
///
/// Keys made here come from a circuit-specific setup run by this process: whoever ran it
/// knows the toxic waste (alpha, beta, gamma, delta, tau) only for as long as the process
/// keeps it in memory, but a compromised or malicious setup host can forge proofs of false
/// statements forever. A deployment whose verifiers do not trust the operator needs the keys
/// from a multi-party ceremony (for example snarkjs's phase 2 on a public phase 1), imported
/// in place of these.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// Opens (creating if needed) a key directory. No key is read or made until
    /// [`KeyStore::keys`].
    pub fn open(dir: impl AsRef<Path>) -> Result<KeyStore, KeyError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|source| KeyError::Io { path: dir.clone(), source })?;
        Ok(KeyStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The circuit's keys: loaded if stored, else set up with OS randomness and stored.
    pub fn keys(&self, id: CircuitId) -> Result<CircuitKeys, KeyError> {
        self.keys_with_rng(id, &mut OsRng)
    }

    /// [`KeyStore::keys`] with the setup randomness from `rng` (a seeded rng makes the keys
    /// reproducible, which is for tests only: anyone with the seed can forge proofs).
    pub fn keys_with_rng(
        &self,
        id: CircuitId,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<CircuitKeys, KeyError> {
        self.keys_dyn(id, rng)
    }

    fn keys_dyn(&self, id: CircuitId, rng: &mut dyn SetupRng) -> Result<CircuitKeys, KeyError> {
        let digest = circuit_digest(id)?;
        match self.load(id, &digest)? {
            Some(keys) => Ok(keys),
            None => self.store_new(id, digest, rng),
        }
    }

    /// Runs the setup and replaces whatever keys are stored (`fpn zk setup --force`).
    pub fn setup(
        &self,
        id: CircuitId,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<CircuitKeys, KeyError> {
        let digest = circuit_digest(id)?;
        self.store_new(id, digest, rng as &mut dyn SetupRng)
    }

    fn path(&self, id: CircuitId, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", id.name()))
    }

    fn read(path: &Path) -> Result<Option<Vec<u8>>, KeyError> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyError::Io { path: path.to_path_buf(), source }),
        }
    }

    fn load(&self, id: CircuitId, digest: &[u8; 32]) -> Result<Option<CircuitKeys>, KeyError> {
        let digest_path = self.path(id, "digest");
        let Some(stored) = Self::read(&digest_path)? else {
            return Ok(None);
        };
        let corrupt = |path: &Path, reason: String| KeyError::Corrupt { path: path.to_path_buf(), reason };
        let stored = String::from_utf8(stored)
            .map_err(|_| corrupt(&digest_path, "digest file is not UTF-8".into()))?;
        let fields: Vec<&str> = stored.split_whitespace().collect();
        let (stored_hex, pk_sha256) = match fields[..] {
            [name, digest, pk_sha256] if name == id.name() => (digest.to_string(), pk_sha256),
            _ => {
                return Err(corrupt(
                    &digest_path,
                    format!("expected `{} <hex digest> <hex pk sha256>`", id.name()),
                ));
            }
        };
        let current_hex = hex(digest);
        if stored_hex != current_hex {
            return Err(KeyError::CircuitMismatch {
                circuit: id.name(),
                stored: stored_hex,
                current: current_hex,
                dir: self.dir.clone(),
            });
        }
        let read_required = |ext: &str| {
            let path = self.path(id, ext);
            match Self::read(&path)? {
                Some(bytes) => Ok((path, bytes)),
                None => Err(corrupt(&path, "missing (the digest file exists)".into())),
            }
        };
        let (pk_path, pk_bytes) = read_required("pk")?;
        let (vk_path, vk_bytes) = read_required("vk")?;
        if hex(&Sha256::digest(&pk_bytes)) != pk_sha256 {
            return Err(corrupt(
                &pk_path,
                format!("SHA-256 differs from the one in {}", digest_path.display()),
            ));
        }
        let pk = ProvingKey::<Bn254>::deserialize_compressed_unchecked(&pk_bytes[..])
            .map_err(|e| corrupt(&pk_path, e.to_string()))?;
        let vk = VerifyingKey::<Bn254>::deserialize_compressed(&vk_bytes[..])
            .map_err(|e| corrupt(&vk_path, e.to_string()))?;
        if pk.vk != vk {
            return Err(corrupt(&vk_path, "verifying key does not match the proving key".into()));
        }
        Ok(Some(CircuitKeys { id, pvk: prepare_verifying_key(&vk), pk, digest: *digest }))
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
        let tmp = path.with_extension("tmp");
        let io_err = |source| KeyError::Io { path: path.to_path_buf(), source };
        fs::write(&tmp, bytes).map_err(io_err)?;
        fs::rename(&tmp, path).map_err(io_err)
    }

    fn store_new(
        &self,
        id: CircuitId,
        digest: [u8; 32],
        rng: &mut dyn SetupRng,
    ) -> Result<CircuitKeys, KeyError> {
        let (pk, vk) = id.setup(rng)?;
        // The digest goes first out of the way: a crash below leaves no digest, not a stale one.
        let digest_path = self.path(id, "digest");
        match fs::remove_file(&digest_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyError::Io { path: digest_path, source });
            }
        }
        let mut pk_bytes = Vec::with_capacity(pk.compressed_size());
        pk.serialize_compressed(&mut pk_bytes).expect("writing to a Vec cannot fail");
        let mut vk_bytes = Vec::with_capacity(vk.compressed_size());
        vk.serialize_compressed(&mut vk_bytes).expect("writing to a Vec cannot fail");
        self.write_atomic(&self.path(id, "pk"), &pk_bytes)?;
        self.write_atomic(&self.path(id, "vk"), &vk_bytes)?;
        let line = format!("{} {} {}\n", id.name(), hex(&digest), hex(&Sha256::digest(&pk_bytes)));
        self.write_atomic(&digest_path, line.as_bytes())?;
        Ok(CircuitKeys { id, pvk: prepare_verifying_key(&vk), pk, digest })
    }
}
