//! The server's TLS identity: a certificate and key from PEM files, or a self-signed pair
//! generated at first start into `<data_dir>/tls/` and reused afterwards; its SHA-256 (of the
//! DER certificate) is what clients pin. rustls runs on the `ring` provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fpn_tls::{Fingerprint, PinVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// File names under `<data_dir>/tls/`.
pub const GENERATED_CERT_FILE: &str = "cert.pem";
pub const GENERATED_KEY_FILE: &str = "key.pem";
pub const CERT_SHA256_FILE: &str = "cert.sha256";

/// Why the TLS identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A certificate chain and its key, plus the SHA-256 of the leaf certificate's DER.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub sha256: [u8; 32],
    /// Whether this start generated the pair.
    pub generated: bool,
}

impl Identity {
    pub fn sha256_hex(&self) -> String {
        Fingerprint(self.sha256).to_string()
    }
}

/// SHA-256 of a DER certificate.
pub fn cert_sha256(der: &[u8]) -> [u8; 32] {
    Fingerprint::of_der(der).0
}

fn pem_err(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError {
    let path = path.to_path_buf();
    move |e| TlsError::Pem { path, message: e.to_string() }
}

/// Loads a PEM certificate chain and a PEM private key.
pub fn load_pem(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem_err(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(cert))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Pem { path: cert.to_path_buf(), message: "no certificate in the file".into() });
    };
    let sha256 = cert_sha256(leaf);
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key))?;
    Ok(Identity { chain, key, sha256, generated: false })
}

/// The pair in `<dir>` (`cert.pem`, `key.pem`), generated self-signed for `localhost`,
/// `127.0.0.1` and `::1` if absent. Writes `cert.sha256` (hex, newline) either way.
pub fn load_or_generate(dir: &Path) -> Result<Identity, TlsError> {
    let (cert_path, key_path) = (dir.join(GENERATED_CERT_FILE), dir.join(GENERATED_KEY_FILE));
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { what, path, source }
    };
    let mut identity = if cert_path.exists() && key_path.exists() {
        load_pem(&cert_path, &key_path)?
    } else {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let ck = generate_for_loopback()?;
        // Key first, owner-only: a reader never sees a certificate without its key.
        write_private(&key_path, ck.key_pair.serialize_pem().as_bytes()).map_err(io("writing", &key_path))?;
        std::fs::write(&cert_path, ck.cert.pem()).map_err(io("writing", &cert_path))?;
        let mut identity = load_pem(&cert_path, &key_path)?;
        identity.generated = true;
        identity
    };
    let sha_path = dir.join(CERT_SHA256_FILE);
    std::fs::write(&sha_path, format!("{}\n", identity.sha256_hex())).map_err(io("writing", &sha_path))?;
    identity.chain.shrink_to_fit();
    Ok(identity)
}

/// A self-signed pair for the loopback names, in memory only: for servers that live as long
/// as a test (the in-memory client–server pair).
pub fn self_signed() -> Result<Identity, TlsError> {
    let ck = generate_for_loopback()?;
    let cert = ck.cert.der().clone();
    let sha256 = cert_sha256(&cert);
    let key = PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    Ok(Identity { chain: vec![cert], key, sha256, generated: true })
}

/// A fresh self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
fn generate_for_loopback() -> Result<rcgen::CertifiedKey, TlsError> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)
}

pub use fpn_tls::provider;

/// rustls server config: TLS 1.3 only, ALPN `fpn/1` only (a client offering another ALPN, or
/// none, fails the handshake with `no_application_protocol`).
pub fn server_crypto(identity: &Identity) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![fpn_wire::session::ALPN.to_vec()];
    config.max_early_data_size = 0;
    Ok(config)
}

/// rustls client config that trusts the certificate with SHA-256 `pin`, offering `alpn`.
pub fn client_crypto_pinned(pin: [u8; 32], alpn: &[u8]) -> Result<rustls::ClientConfig, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier::new(Fingerprint(pin), provider())))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// Parses the 64 hex digits of a pin (`cert.sha256`).
pub fn parse_pin(hex_text: &str) -> Option<[u8; 32]> {
    Fingerprint::parse_hex(hex_text).ok().map(|f| f.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_is_reused_and_its_digest_written() {
        let dir = std::env::temp_dir().join(format!("fpn-quic-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_generate(&dir).unwrap();
        assert!(first.generated);
        let second = load_or_generate(&dir).unwrap();
        assert!(!second.generated);
        assert_eq!(first.sha256, second.sha256);
        let written = std::fs::read_to_string(dir.join(CERT_SHA256_FILE)).unwrap();
        assert_eq!(parse_pin(&written), Some(first.sha256));
        server_crypto(&second).unwrap();
        client_crypto_pinned(second.sha256, fpn_wire::session::ALPN).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
