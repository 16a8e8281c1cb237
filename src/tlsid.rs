//! ed25519 identities on TLS 1.3 and QUIC.
//!
//! Every party (daemon, engineer's client, pushing peer) is an ed25519 key.
//! In the handshake it presents a self-signed X.509 certificate made from
//! that key; nothing about the certificate matters except its public key,
//! and the TLS 1.3 `CertificateVerify` signature proves possession of the
//! private key. The client pins the device key; the daemon accepts any
//! ed25519 client certificate and hands the session an [`AuthenticatedPeer`]
//! that only a completed, verified handshake can produce.
//!
//! This module builds rustls and quinn configurations and verifiers; it does
//! not open sockets. Every config uses the ring provider explicitly.

use crate::PublicKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use edgegate_proto::frame::ALPN;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;

/// The name in every certificate and the SNI the client sends. It carries
/// no trust: only the pinned key does.
pub const SERVER_NAME: &str = "edgegate";

/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE {
/// SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) }, then 32 bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why an identity could not be turned into a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsIdError {
    /// The key could not be encoded as PKCS#8.
    #[error("encoding the key as PKCS#8: {0}")]
    Pkcs8(String),
    /// rcgen refused the key or the certificate parameters.
    #[error("making the self-signed certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// quinn refused the rustls configuration.
    #[error("QUIC TLS configuration: {0}")]
    Quic(String),
}

/// A signing key with its self-signed certificate, ready for rustls.
pub struct Identity {
    public: PublicKey,
    /// The device key itself: the audit writer signs the log's head with it.
    #[cfg_attr(not(unix), allow(dead_code))] // the daemon's side (src/lib.rs)
    key: SigningKey,
    cert: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is never printed.
        f.debug_struct("Identity")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Make the self-signed certificate for `key`.
    pub fn new(key: &SigningKey) -> Result<Identity, TlsIdError> {
        let der = key
            .to_pkcs8_der()
            .map_err(|e| TlsIdError::Pkcs8(e.to_string()))?;
        let key_der = der.as_bytes().to_vec();
        let pair = rcgen::KeyPair::try_from(key_der.as_slice())?;
        let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?;
        let cert = params.self_signed(&pair)?;
        Ok(Identity {
            public: PublicKey::from(key.verifying_key()),
            key: key.clone(),
            cert: cert.der().clone(),
            key_der,
        })
    }

    /// The public key this identity proves.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The signing key (zeroized on drop; never printed).
    #[cfg_attr(not(unix), allow(dead_code))] // the daemon's side (src/lib.rs)
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A client key proven by a completed handshake. Only this module builds it,
/// from the peer certificate of a connection whose verifier ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticatedPeer(PublicKey);

impl AuthenticatedPeer {
    /// The client's public key.
    pub fn key(&self) -> &PublicKey {
        &self.0
    }

    /// The peer of a finished TLS server connection.
    #[cfg_attr(not(unix), allow(dead_code))] // the daemon's side (src/lib.rs)
    pub(crate) fn from_tls(conn: &rustls::ServerConnection) -> Option<AuthenticatedPeer> {
        Self::from_chain(conn.peer_certificates()?)
    }

    /// The peer of an established QUIC connection (server side).
    pub(crate) fn from_quic(conn: &quinn::Connection) -> Option<AuthenticatedPeer> {
        let any = conn.peer_identity()?;
        let chain = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
        Self::from_chain(&chain)
    }

    /// A peer for unit tests that do not run a handshake.
    #[cfg(test)]
    #[cfg_attr(not(unix), allow(dead_code))] // the daemon's tests (src/lib.rs)
    pub(crate) fn for_tests(key: PublicKey) -> AuthenticatedPeer {
        AuthenticatedPeer(key)
    }

    fn from_chain(chain: &[CertificateDer<'_>]) -> Option<AuthenticatedPeer> {
        ed25519_key_of(chain.first()?).map(AuthenticatedPeer)
    }
}

/// The ed25519 public key of a certificate, if that is what it carries.
pub fn ed25519_key_of(cert: &CertificateDer<'_>) -> Option<PublicKey> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let raw = spki.as_ref().strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    let key: [u8; 32] = raw.try_into().ok()?;
    Some(PublicKey(key))
}

/// The ring provider, its TLS 1.3 suites ordered cheapest first for this
/// CPU: a tunnel is CPU-bound on a router, and the daemon (the server)
/// picks by its own order. With AES instructions AES-128-GCM (TLS 1.3's
/// mandatory suite; AES-256 costs 40% more rounds for no gain against our
/// threat model), without them (most 32-bit ARM routers) ChaCha20-Poly1305,
/// which is several times faster in constant-time software.
fn provider() -> Arc<CryptoProvider> {
    use rustls::CipherSuite::{TLS13_AES_128_GCM_SHA256, TLS13_CHACHA20_POLY1305_SHA256};
    let first = if has_aes_instructions() {
        TLS13_AES_128_GCM_SHA256
    } else {
        TLS13_CHACHA20_POLY1305_SHA256
    };
    let mut p = rustls::crypto::ring::default_provider();
    // Stable sort: the rest keep ring's order.
    p.cipher_suites.sort_by_key(|s| s.suite() != first);
    Arc::new(p)
}

/// Whether this CPU has AES instructions (what makes AES-GCM cheap).
fn has_aes_instructions() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    // 32-bit ARM and the rest: runtime detection is not stable Rust; the
    // 32-bit routers we target (Cortex-A7/A9) have no AES instructions.
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

fn tls13_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::NoSignatureSchemesInCommon,
        ));
    }
    verify_tls13_signature(
        message,
        cert,
        dss,
        &provider().signature_verification_algorithms,
    )
}

fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls12NotOffered,
    ))
}

/// Client side: accept exactly the pinned device key.
#[derive(Debug)]
struct PinnedServer {
    pinned: PublicKey,
    /// Told when a server presents another key.
    watch: PinWatch,
}

/// Records that a server presented a key other than the pinned one, so a
/// failed handshake can be told apart from other failures by a flag the
/// verifier set, not by the text of an error.
#[derive(Debug, Clone, Default)]
pub struct PinWatch(Arc<std::sync::atomic::AtomicBool>);

impl PinWatch {
    /// Whether a mismatch was seen since the last call (clears the flag).
    pub fn take(&self) -> bool {
        self.0.swap(false, std::sync::atomic::Ordering::AcqRel)
    }
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match ed25519_key_of(end_entity) {
            Some(key) if key == self.pinned => Ok(ServerCertVerified::assertion()),
            _ => {
                self.watch
                    .0
                    .store(true, std::sync::atomic::Ordering::Release);
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Server side: require a client certificate carrying an ed25519 key. Which
/// key is allowed is the policy's business (the ticket binds it).
#[derive(Debug)]
struct AnyEd25519Client;

impl ClientCertVerifier for AnyEd25519Client {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match ed25519_key_of(end_entity) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The daemon's rustls configuration: TLS 1.3 only, ALPN `edgegate/1`.
pub fn server_config(id: &Identity) -> Result<rustls::ServerConfig, TlsIdError> {
    server_config_alpn(id, ALPN)
}

/// [`server_config`] speaking `alpn` (a relay's `edgegate-relay/1`).
pub fn server_config_alpn(id: &Identity, alpn: &[u8]) -> Result<rustls::ServerConfig, TlsIdError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AnyEd25519Client))
        .with_single_cert(id.chain(), id.private_key())?;
    config.alpn_protocols = vec![alpn.to_vec()];
    // The router's CPU is the one that matters: its order, not the client's.
    config.ignore_client_order = true;
    Ok(config)
}

/// The client's rustls configuration, pinned to `device`.
pub fn client_config(id: &Identity, device: PublicKey) -> Result<rustls::ClientConfig, TlsIdError> {
    client_config_watched(id, device, &PinWatch::default())
}

/// [`client_config`], telling `watch` when the server's key is not `device`.
pub fn client_config_watched(
    id: &Identity,
    device: PublicKey,
    watch: &PinWatch,
) -> Result<rustls::ClientConfig, TlsIdError> {
    client_config_alpn(id, device, watch, ALPN)
}

/// [`client_config_watched`] speaking `alpn`, pinned to `pinned` (a
/// relay's key when dialling a relay).
pub fn client_config_alpn(
    id: &Identity,
    pinned: PublicKey,
    watch: &PinWatch,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TlsIdError> {
    let verifier = PinnedServer {
        pinned,
        watch: watch.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(id.chain(), id.private_key())?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// The daemon's QUIC server configuration.
pub fn quic_server_config(id: &Identity) -> Result<quinn::ServerConfig, TlsIdError> {
    quic_server_config_alpn(id, ALPN)
}

/// [`quic_server_config`] speaking `alpn`.
pub fn quic_server_config_alpn(
    id: &Identity,
    alpn: &[u8],
) -> Result<quinn::ServerConfig, TlsIdError> {
    let tls = quinn::crypto::rustls::QuicServerConfig::try_from(server_config_alpn(id, alpn)?)
        .map_err(|e| TlsIdError::Quic(e.to_string()))?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(tls)))
}

/// The client's QUIC configuration, pinned to `device`.
pub fn quic_client_config(
    id: &Identity,
    device: PublicKey,
    watch: &PinWatch,
) -> Result<quinn::ClientConfig, TlsIdError> {
    quic_client_config_alpn(id, device, watch, ALPN)
}

/// [`quic_client_config`] speaking `alpn`, pinned to `pinned`.
pub fn quic_client_config_alpn(
    id: &Identity,
    pinned: PublicKey,
    watch: &PinWatch,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, TlsIdError> {
    let tls = client_config_alpn(id, pinned, watch, alpn)?;
    let tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsIdError::Quic(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(tls)))
}

/// The TLS server name to connect with.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("a valid DNS name")
}

#[cfg(test)]
#[path = "tlsid/tests.rs"]
mod tests;
