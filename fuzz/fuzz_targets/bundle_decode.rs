//! Untrusted bytes into the bundle path: envelope parsing, signature counting
//! and body decoding must never panic or allocate without bound.
#![no_main]
use edgegate_proto::{bundle, envelope, PublicKey, TrustPolicy, VerifiedBundle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let authority = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
    let trust = TrustPolicy::new(vec![PublicKey::from(authority.verifying_key())], 1).unwrap();
    let _ = VerifiedBundle::verify(data, &trust);
    if let Ok((body, _)) = envelope::parse(envelope::Purpose::Bundle, data) {
        let _ = bundle::decode_body(&body);
    }
    // The body decoder on its own, as if a signer had signed garbage.
    // postcard accepts overlong varints, so decode→encode is not required to
    // round-trip to the same bytes; signatures cover the bytes, not values.
    let _ = bundle::decode_body(data);
});
