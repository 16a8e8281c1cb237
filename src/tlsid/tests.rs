use super::*;
use crate::testkit::key;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn certificate_carries_the_key() {
    let k = key(3);
    let id = Identity::new(&k).unwrap();
    assert_eq!(
        ed25519_key_of(&id.cert),
        Some(PublicKey::from(k.verifying_key()))
    );
    assert_eq!(
        ed25519_key_of(&CertificateDer::from(vec![0x30, 0x00])),
        None
    );
}

async fn handshake(
    device: &SigningKey,
    client: &SigningKey,
    pinned: PublicKey,
) -> Result<AuthenticatedPeer, String> {
    let server_cfg = Arc::new(server_config(&Identity::new(device).unwrap()).unwrap());
    let client_cfg = Arc::new(client_config(&Identity::new(client).unwrap(), pinned).unwrap());
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let mut s = tokio_rustls::TlsAcceptor::from(server_cfg)
            .accept(b)
            .await
            .map_err(|e| e.to_string())?;
        let peer = AuthenticatedPeer::from_tls(s.get_ref().1).ok_or("no peer")?;
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let connector = tokio_rustls::TlsConnector::from(client_cfg);
    let client_result = async {
        let mut c = connector
            .connect(server_name(), a)
            .await
            .map_err(|e| e.to_string())?;
        assert_eq!(c.get_ref().1.alpn_protocol(), Some(ALPN));
        c.write_all(b"hi").await.map_err(|e| e.to_string())?;
        c.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(c)
    }
    .await;
    let server_result = server.await.unwrap();
    drop(client_result?);
    server_result
}

#[tokio::test]
async fn handshake_proves_both_keys() {
    let (d, c) = (key(1), key(2));
    let peer = handshake(&d, &c, PublicKey::from(d.verifying_key()))
        .await
        .unwrap();
    assert_eq!(*peer.key(), PublicKey::from(c.verifying_key()));
}

#[tokio::test]
async fn wrong_pinned_key_fails() {
    let (d, c) = (key(1), key(2));
    let err = handshake(&d, &c, PublicKey::from(key(9).verifying_key()))
        .await
        .unwrap_err();
    assert!(err.contains("certificate"), "{err}");
}

#[tokio::test]
async fn the_daemon_picks_the_suite_cheapest_for_its_cpu() {
    use rustls::CipherSuite::{TLS13_AES_128_GCM_SHA256, TLS13_CHACHA20_POLY1305_SHA256};
    let ours = if has_aes_instructions() {
        TLS13_AES_128_GCM_SHA256
    } else {
        TLS13_CHACHA20_POLY1305_SHA256
    };
    assert_eq!(provider().cipher_suites[0].suite(), ours);
    let (d, c) = (key(1), key(2));
    let server_cfg = Arc::new(server_config(&Identity::new(&d).unwrap()).unwrap());
    // A client that prefers the other suite (and AES-256 before either).
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| s.suite() == ours);
    let id = Identity::new(&c).unwrap();
    let pinned = PinnedServer {
        pinned: PublicKey::from(d.verifying_key()),
        watch: PinWatch::default(),
    };
    let mut client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(p))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(pinned))
        .with_client_auth_cert(id.chain(), id.private_key())
        .unwrap();
    client_cfg.alpn_protocols = vec![ALPN.to_vec()];
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let s = tokio_rustls::TlsAcceptor::from(server_cfg)
            .accept(b)
            .await
            .unwrap();
        s.get_ref().1.negotiated_cipher_suite().map(|s| s.suite())
    });
    let client = tokio_rustls::TlsConnector::from(Arc::new(client_cfg))
        .connect(server_name(), a)
        .await
        .unwrap();
    assert_eq!(server.await.unwrap(), Some(ours));
    drop(client);
}
