//! Untrusted bytes into the relay message decoder (what a relay reads from
//! any router or engineer before it knows who they are, and what a router
//! and an engineer read from a relay).
#![no_main]
use edgegate_proto::relay;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = relay::check_len([data[0], data[1], data[2], data[3]]);
    }
    if let Ok(msg) = relay::decode(data) {
        // Whatever decodes re-encodes to a message that decodes the same.
        let again = relay::encode(&msg);
        assert_eq!(relay::decode(&again[4..]).as_ref(), Ok(&msg));
    }
});
