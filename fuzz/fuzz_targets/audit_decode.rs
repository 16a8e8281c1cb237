//! Untrusted bytes into the audit record decoder (what `audit verify` reads
//! back from a possibly tampered sled tree).
#![no_main]
use edgegate_proto::audit::AuditEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = AuditEntry::decode(data) {
        // Whatever decodes re-encodes to bytes that decode to the same
        // record. Not necessarily to `data` itself: postcard accepts an
        // overlong varint (`ff 00` for 127), which proto/README.md allows
        // because hashes and signatures cover the bytes as stored, never a
        // re-encoding (so the chain still catches such an edit).
        let again = entry.encode();
        assert_eq!(AuditEntry::decode(&again).as_ref(), Ok(&entry));
        if again.len() == data.len() {
            assert_eq!(again, data, "same length, so no overlong varint");
        }
    }
});
