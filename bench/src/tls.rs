//! TLS for the bench: a self-signed certificate for the bare servers, and a client that pins
//! the server certificate's SHA-256 (`fpn_tls`, the pin the client library uses too).
//! rustls with the `ring` provider, TLS 1.3 only, ALPN `fpn/1`, as the engine's intake.

use std::sync::Arc;
use std::time::Duration;

use fpn_tls::{Fingerprint, PinVerifier, provider};
use fpn_wire::session::ALPN;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// SHA-256 of a DER certificate, lower-case hex (the form of `<data_dir>/tls/cert.sha256`).
pub fn cert_sha256_hex(der: &[u8]) -> String {
    Fingerprint::of_der(der).to_string()
}

/// Parses 64 hex digits (surrounding white space and `:` separators allowed).
pub fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    Fingerprint::parse_hex(text).ok().map(|f| f.0)
}

/// The transport settings both ends of the bench use. Datagram buffers are large enough for
/// a burst (2 MiB each way). `initial_mtu` (1,472 by default, the most quinn's default
/// endpoint accepts) starts the connection at full size on loopback, so no MTU discovery
/// is waited for: a datagram then carries frames of up to 1,434 bytes.
pub fn transport_config(initial_mtu: u16) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.initial_mtu(initial_mtu)
        .mtu_discovery_config(None)
        .datagram_receive_buffer_size(Some(2 << 20))
        .datagram_send_buffer_size(2 << 20)
        .max_idle_timeout(Some(Duration::from_secs(30).try_into().expect("30 s is a valid idle timeout")));
    t
}

/// A self-signed certificate for `localhost` and its SHA-256, for a bare server.
pub fn server_config(initial_mtu: u16) -> (quinn::ServerConfig, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen with ring");
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let sha = cert_sha256_hex(&der);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .expect("a fresh self-signed certificate is valid");
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls).expect("TLS 1.3 with an initial cipher suite");
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config(initial_mtu)));
    (server, sha)
}

/// Client configuration: the certificate is checked against `pin` (SHA-256 of its DER), and
/// the handshake signature is verified.
pub fn client_config(pin: [u8; 32], initial_mtu: u16) -> quinn::ClientConfig {
    let provider = provider();
    let verifier = Arc::new(PinVerifier::new(Fingerprint(pin), provider.clone()));
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).expect("TLS 1.3 with an initial cipher suite");
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(transport_config(initial_mtu)));
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_round_trip() {
        let hex = cert_sha256_hex(b"abc");
        assert_eq!(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(parse_sha256_hex(&format!("{hex}\n")), Some(Fingerprint::of_der(b"abc").0));
        assert_eq!(parse_sha256_hex("ab:cd"), None);
    }
}
