//! Arbitrary text into the policy file parser. Besides "never panics", one
//! invariant: a file that validates compiles, for each of its devices, into
//! a bundle that the device's compiler accepts.
#![no_main]
use edgegate::policy::PolicyIndex;
use edgegate::policy_file::{compile_for_device, PolicyFile};
use edgegate_proto::{bundle, PublicKey, TrustPolicy, VerifiedBundle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = PolicyFile::parse(text, "fuzz.toml") else {
        return;
    };
    let authority = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
    let trust = TrustPolicy::new(vec![PublicKey::from(authority.verifying_key())], 1).unwrap();
    for device in &policy.devices {
        let b = compile_for_device(&policy, &device.id, 1, 1_700_000_000, 1_800_000_000).unwrap();
        let sealed = bundle::seal(&b, &[&authority]);
        let verified = VerifiedBundle::verify(&sealed, &trust).expect("own bundle verifies");
        if let Err(e) = PolicyIndex::compile(&verified) {
            panic!(
                "validated policy file does not compile for {}: {e}",
                device.id
            );
        }
    }
});
