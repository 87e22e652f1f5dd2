//! Server authentication: a SHA-256 pin of the server's certificate, or a CA file.
//!
//! The daemon generates a self-signed certificate at first start and writes its SHA-256 (of
//! the DER encoding) to `<data_dir>/tls/cert.sha256` (`docs/transport.md`). A pinned client
//! accepts exactly that certificate, whatever its names and dates, and still checks the TLS
//! 1.3 handshake signature against the certificate's key with the ring provider, so a peer
//! that shows the certificate without holding its key fails the handshake.

use std::path::PathBuf;
use std::sync::Arc;

pub use fpn_tls::{Fingerprint, PinVerifier, provider};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::ConnectError;

/// How the client authenticates the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Accept exactly the certificate whose DER encoding has this SHA-256.
    Pin(Fingerprint),
    /// Accept certificates that chain to a certificate of this PEM file and name the
    /// configured server name.
    CaFile(PathBuf),
    /// As [`Trust::CaFile`], from PEM text.
    CaPem(String),
}

/// A quinn client configuration speaking ALPN `fpn/1` over TLS 1.3, and the pin verifier when
/// the trust is a pin (kept to explain a refused handshake).
pub(crate) fn quic_client_config(
    trust: &Trust,
    transport: Arc<quinn::TransportConfig>,
) -> Result<(quinn::ClientConfig, Option<Arc<PinVerifier>>), ConnectError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ConnectError::Tls(e.to_string()))?;
    let (mut tls, pin) = match trust {
        Trust::Pin(fp) => {
            let verifier = Arc::new(PinVerifier::new(*fp, provider));
            let tls =
                builder.dangerous().with_custom_certificate_verifier(verifier.clone()).with_no_client_auth();
            (tls, Some(verifier))
        }
        Trust::CaFile(path) => {
            let pem =
                std::fs::read(path).map_err(|e| ConnectError::Tls(format!("{}: {e}", path.display())))?;
            (builder.with_root_certificates(roots(&pem)?).with_no_client_auth(), None)
        }
        Trust::CaPem(pem) => {
            (builder.with_root_certificates(roots(pem.as_bytes())?).with_no_client_auth(), None)
        }
    };
    tls.alpn_protocols = vec![fpn_wire::session::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls))
        .map_err(|e| ConnectError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport);
    Ok((config, pin))
}

fn roots(pem: &[u8]) -> Result<rustls::RootCertStore, ConnectError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| ConnectError::Tls(format!("CA file: {e}")))?;
        roots.add(cert).map_err(|e| ConnectError::Tls(format!("CA file: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ConnectError::Tls("CA file holds no certificate".to_string()));
    }
    Ok(roots)
}
