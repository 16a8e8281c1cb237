//! Untrusted bytes into the key statement path: a push's classification
//! (bundle or keys delivery), envelope parsing, signature counting against
//! the root and a new root, and body decoding must never panic or allocate
//! without bound.
#![no_main]
use edgegate_proto::authority::{self, Authority, Delivery, StatementClock};
use edgegate_proto::{envelope, PublicKey, TrustPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let root = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
    let trust = TrustPolicy::new(vec![PublicKey::from(root.verifying_key())], 1).unwrap();
    let authority = Authority::legacy(trust);
    let clock = StatementClock {
        wall: 1_700_000_100,
        floor: 0,
    };
    let statement = match Delivery::classify(data) {
        Ok(Delivery::Keys { statement, .. }) => statement,
        _ => data,
    };
    if let Ok(vs) = authority.advance(statement, clock) {
        // A statement that verified: the next one is judged by its keys.
        let _ = vs.authority().advance(statement, clock);
    }
    let _ = authority.follow(data);
    if let Ok((body, _)) = envelope::parse(envelope::Purpose::Keys, statement) {
        let _ = authority::decode_body(&body);
    }
    let _ = authority::decode_body(data);
});
