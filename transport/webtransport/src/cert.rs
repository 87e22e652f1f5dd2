//! The endpoint's certificate: self-signed and short-lived for browsers that pin it through
//! `serverCertificateHashes`, or a configured (CA-issued) PEM pair.
//!
//! Chromium accepts a certificate by hash without any CA only if it is X.509v3, its key is
//! ECDSA P-256, and its validity period is at most 14 days. So the self-signed certificate is
//! made with those properties and replaced before it expires; the endpoint then serves the new
//! one to new connections (connections already open keep theirs). A page must fetch the
//! current hashes (`EndpointInfo`) before it connects.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fpn_tls::Fingerprint;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The longest validity Chromium accepts for a certificate pinned by hash.
pub const HASH_VALIDITY_MAX: Duration = Duration::from_secs(14 * 24 * 3600);
/// How far `not_before` lies in the past, for clocks slightly behind ours. Counted in the
/// validity: Chromium measures `not_after - not_before`.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Where the endpoint's certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// Generated here (ECDSA P-256) for `names`, valid for `validity` (at most 14 days, the
    /// backdating included) and replaced `renew_before` ahead of its expiry.
    SelfSigned { names: Vec<String>, validity: Duration, renew_before: Duration },
    /// A certificate chain and key from PEM files (a CA-issued certificate: browsers then need
    /// no hash). Not rotated here; restart to change it.
    Pem { cert: PathBuf, key: PathBuf },
}

impl Default for CertSource {
    /// Self-signed for the loopback names, 13 days, renewed a day ahead.
    fn default() -> CertSource {
        CertSource::SelfSigned {
            names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            validity: Duration::from_secs(13 * 24 * 3600),
            renew_before: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why a certificate could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("a certificate pinned by hash is valid for at most 14 days, {0:?} asked")]
    ValidityTooLong(Duration),
    #[error("renew_before ({renew_before:?}) must be shorter than the validity ({validity:?})")]
    RenewTooEarly { validity: Duration, renew_before: Duration },
    #[error("generating the certificate: {0}")]
    Generate(String),
    #[error(transparent)]
    Load(#[from] fpn_quic::tls::TlsError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A certificate chain and key ready to serve.
#[derive(Debug)]
pub struct Certificate {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf's DER: what `serverCertificateHashes` carries.
    pub sha256: Fingerprint,
    /// When a generated certificate must be replaced (`None`: never, a configured one).
    pub renew_at: Option<SystemTime>,
    /// Its expiry, seconds since the Unix epoch (`None` for a configured one: not parsed).
    pub not_after_unix_s: Option<u64>,
}

impl Certificate {
    /// The certificate `source` names, made or loaded `now`.
    pub fn from_source(source: &CertSource, now: SystemTime) -> Result<Certificate, CertError> {
        match source {
            CertSource::SelfSigned { names, validity, renew_before } => {
                Certificate::self_signed(names, *validity, *renew_before, now)
            }
            CertSource::Pem { cert, key } => {
                let identity = fpn_quic::tls::load_pem(cert, key)?;
                Ok(Certificate {
                    chain: identity.chain,
                    key: identity.key,
                    sha256: Fingerprint(identity.sha256),
                    renew_at: None,
                    not_after_unix_s: None,
                })
            }
        }
    }

    /// A fresh ECDSA P-256 certificate for `names`, valid from an hour before `now` for
    /// `validity` in all.
    pub fn self_signed(
        names: &[String],
        validity: Duration,
        renew_before: Duration,
        now: SystemTime,
    ) -> Result<Certificate, CertError> {
        if validity > HASH_VALIDITY_MAX {
            return Err(CertError::ValidityTooLong(validity));
        }
        if renew_before >= validity.saturating_sub(BACKDATE.min(validity / 2)) {
            return Err(CertError::RenewTooEarly { validity, renew_before });
        }
        let gen_err = |e: rcgen::Error| CertError::Generate(e.to_string());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(gen_err)?;
        // A short validity backdates less, so renewal still happens before the expiry.
        let backdate = BACKDATE.min(validity / 2);
        let not_before = now - backdate;
        let not_after = not_before + validity;
        params.not_before = offset_date_time(not_before);
        params.not_after = offset_date_time(not_after);
        params.distinguished_name.push(rcgen::DnType::CommonName, "flashpoint webtransport");
        let cert = params.self_signed(&key).map_err(gen_err)?;
        let der = cert.der().clone();
        Ok(Certificate {
            sha256: Fingerprint::of_der(&der),
            chain: vec![der],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            renew_at: Some(not_after - renew_before),
            not_after_unix_s: Some(unix_s(not_after)),
        })
    }

    /// rustls server config: TLS 1.3, ALPN `h3`, ring provider.
    pub fn server_crypto(&self) -> Result<rustls::ServerConfig, CertError> {
        let mut config = rustls::ServerConfig::builder_with_provider(fpn_tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![crate::wt::ALPN_H3.to_vec()];
        config.max_early_data_size = 0;
        Ok(config)
    }

    /// The quinn server crypto of this certificate.
    pub fn quic_crypto(&self) -> Result<Arc<quinn::crypto::rustls::QuicServerConfig>, CertError> {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(self.server_crypto()?)
            .map_err(|e| CertError::Rustls(rustls::Error::General(e.to_string())))?;
        Ok(Arc::new(crypto))
    }

    /// Whether it is time to replace it.
    pub fn due(&self, now: SystemTime) -> bool {
        self.renew_at.is_some_and(|at| now >= at)
    }
}

fn unix_s(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn offset_date_time(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::UNIX_EPOCH + t.duration_since(UNIX_EPOCH).expect("after 1970")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::UnixTime;

    fn names() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into()]
    }

    #[test]
    fn self_signed_is_p256_and_short_lived() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let c = Certificate::self_signed(&names(), 13 * day, day, now).unwrap();
        assert_eq!(c.sha256, Fingerprint::of_der(&c.chain[0]));
        let not_after = c.not_after_unix_s.unwrap();
        assert!(not_after > unix_s(now) + 12 * 86_400 && not_after <= unix_s(now) + 13 * 86_400);
        assert!(!c.due(now));
        assert!(c.due(now + 12 * day));
        // The key is ECDSA P-256 with SHA-256 (what Chromium requires for hash pinning): a
        // webpki check of the certificate against itself as the anchor verifies its signature
        // with that algorithm, and only inside its validity.
        c.server_crypto().unwrap();
        const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        assert!(c.chain[0].windows(10).any(|w| w == P256_OID), "the key is on P-256");
        let anchor = webpki_anchor(&c.chain[0]);
        let ee = rustls::server::ParsedCertificate::try_from(&c.chain[0]).unwrap();
        let algs = fpn_tls::provider().signature_verification_algorithms;
        let at = |t: SystemTime| UnixTime::since_unix_epoch(t.duration_since(UNIX_EPOCH).unwrap());
        rustls::client::verify_server_cert_signed_by_trust_anchor(&ee, &anchor, &[], at(now), algs.all)
            .unwrap();
        assert!(
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &ee,
                &anchor,
                &[],
                at(now + 14 * day),
                algs.all
            )
            .is_err()
        );
    }

    fn webpki_anchor(der: &CertificateDer<'static>) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.clone()).unwrap();
        roots
    }

    #[test]
    fn refuses_validities_chromium_would_refuse() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        assert!(matches!(
            Certificate::self_signed(&names(), 15 * day, day, now),
            Err(CertError::ValidityTooLong(_))
        ));
        assert!(matches!(
            Certificate::self_signed(&names(), 2 * day, 2 * day, now),
            Err(CertError::RenewTooEarly { .. })
        ));
    }
}
