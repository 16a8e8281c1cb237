//! Golden bytes of the enrollment (`README.md` §4c walks through them).
//! Any change to field order, types or variant indices fails here.

use ed25519_dalek::SigningKey;
use edgegate_proto::enrollment::*;
use edgegate_proto::{envelope, Authority, PublicKey, TrustPolicy};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn pk(n: u8) -> PublicKey {
    PublicKey::from(key(n).verifying_key())
}

/// Device "r1" with the key whose secret is 32 × `05`, serial 2, signed by
/// the enroll key of `keys_golden.rs` (secret 32 × `04`).
fn sample() -> Enrollment {
    Enrollment {
        device_id: "r1".into(),
        device_key: pk(5),
        serial: 2,
        issued_at: 1_700_000_000,
        expires_at: 1_731_536_000,
    }
}

const BODY_HEX: &str = "000272316e7a1cdd29b0b78fd13af4c5598feff4ef2a97166e3ca6f2e4fbfccd80505bf10280e2cfaa0680c9d4b906";
const SIGNATURE_HEX: &str = "957fbc2cfe379cd509f912606b1079314638f9c1d2cb097de6606ffac78041246cbd969d71e033bf789b0a2859d22067e74b72d8ce8306ad88776675538f7708";

#[test]
fn enrollment_body_bytes_are_pinned() {
    let body = encode_body(&sample());
    assert_eq!(hex(&body), BODY_HEX);
    assert_eq!(
        pk(5).to_string(),
        "ed25519:bnoc3Smwt4/ROvTFWY/v9O8qlxZuPKby5Pv8zYBQW/E="
    );
    assert_eq!(decode_body(&body).unwrap(), sample());
}

#[test]
fn enrollment_signature_is_pinned_and_verifies() {
    let env = seal(&sample(), &[&key(4)]);
    let (body, sigs) = envelope::parse(envelope::Purpose::Enroll, &env).unwrap();
    assert_eq!(hex(&body), BODY_HEX);
    assert_eq!(hex(&sigs[0].key.0), hex(&pk(4).0));
    assert_eq!(hex(&sigs[0].signature), SIGNATURE_HEX);
    // The envelope: tag 00, the body's length, the body, one signature.
    let head = format!("00{:02x}{BODY_HEX}01", body.len());
    assert!(hex(&env).starts_with(&head));
    assert_eq!(env.len(), 1 + 1 + body.len() + 1 + 32 + 64);
    assert_eq!((body.len(), env.len()), (47, 146));
    let enroll = TrustPolicy::new(vec![pk(4)], 1).unwrap();
    let v = VerifiedEnrollment::verify_policy(&env, &enroll, 1_700_000_100).unwrap();
    assert_eq!(v.enrollment(), &sample());
    // Under a flat authority of key 4 (no statement), too.
    assert!(VerifiedEnrollment::verify(&env, &Authority::legacy(enroll), 1_700_000_100).is_ok());
}

#[test]
fn the_signing_domain_is_pinned() {
    assert_eq!(envelope::Purpose::Enroll.domain(), b"edgegate enroll v1\0");
    assert_eq!(envelope::Purpose::Enroll.max_size(), 4096);
}
