//! Untrusted bytes into the ticket path.
#![no_main]
use edgegate_proto::{envelope, ticket, PublicKey, TrustPolicy, VerifiedTicket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let authority = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
    let trust = TrustPolicy::new(vec![PublicKey::from(authority.verifying_key())], 1).unwrap();
    let _ = VerifiedTicket::verify(data, &trust);
    let _ = envelope::parse(envelope::Purpose::Ticket, data);
    let _ = ticket::decode_body(data);
});
