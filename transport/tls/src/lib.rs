//! The certificate pin of `fpn/1` (`docs/transport.md`): the daemon writes the SHA-256 of its
//! DER certificate to `<data_dir>/tls/cert.sha256`, and a pinned client accepts exactly that
//! certificate, whatever its names and dates, while still checking the TLS 1.3 handshake
//! signature against the certificate's key, so a peer that shows the certificate without
//! holding its key fails the handshake. One piece for the server crate's test client, the
//! client library and the bench harness. rustls runs on the `ring` provider only.

use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// SHA-256 of a DER certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of_der(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Parses 64 hex digits; `:` separators and surrounding whitespace are allowed (the form
    /// `openssl x509 -fingerprint -sha256` prints).
    pub fn parse_hex(text: &str) -> Result<Fingerprint, String> {
        let digits: Vec<u8> = text.trim().bytes().filter(|b| *b != b':').collect();
        if digits.len() != 64 {
            return Err(format!("a SHA-256 pin is 64 hex digits, got {}", digits.len()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hex = |b: u8| match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'a'..=b'f' => Some(b - b'a' + 10),
                b'A'..=b'F' => Some(b - b'A' + 10),
                _ => None,
            };
            let (Some(hi), Some(lo)) = (hex(pair[0]), hex(pair[1])) else {
                return Err(format!("not a hex digit in {:?}", String::from_utf8_lossy(pair)));
            };
            out[i] = hi << 4 | lo;
        }
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = String;
    fn from_str(s: &str) -> Result<Fingerprint, String> {
        Fingerprint::parse_hex(s)
    }
}

/// Accepts the one certificate whose SHA-256 is the pin; verifies handshake signatures with
/// the provider's algorithms. Remembers the last certificate it refused, so a failed
/// handshake can be reported as a pin mismatch rather than a TLS alert.
#[derive(Debug)]
pub struct PinVerifier {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
    refused: Mutex<Option<Fingerprint>>,
}

impl PinVerifier {
    pub fn new(pin: Fingerprint, provider: Arc<CryptoProvider>) -> PinVerifier {
        PinVerifier { pin, provider, refused: Mutex::new(None) }
    }

    /// The pinned fingerprint.
    pub fn pin(&self) -> Fingerprint {
        self.pin
    }

    /// The fingerprint of the last certificate refused, and forgets it.
    pub fn take_refused(&self) -> Option<Fingerprint> {
        self.refused.lock().expect("pin verifier lock").take()
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = Fingerprint::of_der(end_entity.as_ref());
        if seen == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        *self.refused.lock().expect("pin verifier lock") = Some(seen);
        Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The ring provider, the only one this workspace builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_hex_round_trip() {
        let fp = Fingerprint::of_der(b"not a certificate");
        let hex = fp.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(Fingerprint::parse_hex(&hex), Ok(fp));
        assert_eq!(Fingerprint::parse_hex(&format!("  {}\n", hex.to_uppercase())), Ok(fp));
        let colons: Vec<String> = fp.0.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(Fingerprint::parse_hex(&colons.join(":")), Ok(fp));
        assert!(Fingerprint::parse_hex(&hex[..62]).is_err());
        assert!(Fingerprint::parse_hex(&format!("{}zz", &hex[..62])).is_err());
        // SHA-256 of the empty string, the published vector.
        assert_eq!(
            Fingerprint::of_der(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// `DigitallySignedStruct` as it comes off the wire (its constructor is private to rustls).
    fn signed(scheme: SignatureScheme, signature: &[u8]) -> DigitallySignedStruct {
        use rustls::internal::msgs::codec::{Codec, Reader};
        let mut bytes = Vec::new();
        scheme.encode(&mut bytes);
        bytes.extend_from_slice(&(signature.len() as u16).to_be_bytes());
        bytes.extend_from_slice(signature);
        DigitallySignedStruct::read(&mut Reader::init(&bytes)).unwrap()
    }

    #[test]
    fn pin_verifier_accepts_the_pin_only_and_checks_signatures() {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        let der = CertificateDer::from(cert.der().to_vec());
        let other_key = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&other_key)
            .unwrap();
        let other_der = CertificateDer::from(other.der().to_vec());

        let name = ServerName::try_from("localhost").unwrap();
        let verifier = PinVerifier::new(Fingerprint::of_der(&der), provider());
        assert!(verifier.verify_server_cert(&der, &[], &name, &[], UnixTime::now()).is_ok());
        assert_eq!(verifier.take_refused(), None);
        let refused = verifier.verify_server_cert(&other_der, &[], &name, &[], UnixTime::now());
        assert!(matches!(
            refused,
            Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        ));
        assert_eq!(verifier.take_refused(), Some(Fingerprint::of_der(&other_der)));
        assert_eq!(verifier.take_refused(), None);

        // The handshake signature is still checked against the pinned certificate's key.
        let signing = provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
            .unwrap();
        let schemes = verifier.supported_verify_schemes();
        let signer = signing.choose_scheme(&schemes).expect("a TLS 1.3 scheme for the key");
        let scheme = signer.scheme();
        let message = b"TLS 1.3, server CertificateVerify\0transcript hash";
        let signature = signer.sign(message).unwrap();
        let dss = signed(scheme, &signature);
        assert!(verifier.verify_tls13_signature(message, &der, &dss).is_ok());
        assert!(verifier.verify_tls13_signature(b"another transcript", &der, &dss).is_err());
        // A valid signature by another key than the certificate's is refused.
        assert!(verifier.verify_tls13_signature(message, &other_der, &dss).is_err());
    }
}
