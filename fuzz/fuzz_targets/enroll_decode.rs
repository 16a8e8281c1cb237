//! Untrusted bytes into the enrollment path (what a relay reads from a
//! registering stranger): envelope parsing, signature counting under the
//! enroll role, body decoding and the date, key and precedence checks must
//! never panic or allocate without bound.
#![no_main]
use edgegate_proto::enrollment::{self, VerifiedEnrollment};
use edgegate_proto::{envelope, Authority, PublicKey, TrustPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The enroll key of the golden vectors (secret 32 × 04), which signed
    // the seed, acting for every role as flat configured keys do.
    let enroll = ed25519_dalek::SigningKey::from_bytes(&[4u8; 32]);
    let trust = TrustPolicy::new(vec![PublicKey::from(enroll.verifying_key())], 1).unwrap();
    let authority = Authority::legacy(trust);
    let now = 1_700_000_100;
    if let Ok(v) = VerifiedEnrollment::verify(data, &authority, now) {
        let _ = v.check_at(u64::MAX);
        let _ = v.bound_to(&v.enrollment().device_key);
        let _ = v.precedence(&v);
    }
    if let Ok((body, _)) = envelope::parse(envelope::Purpose::Enroll, data) {
        let _ = enrollment::decode_body(&body);
    }
    let _ = enrollment::decode_body(data);
});
