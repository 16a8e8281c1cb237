//! Untrusted bytes into the audit record decoder (what `audit verify` reads
//! back from a possibly tampered sled tree).
#![no_main]
use edgegate_proto::audit::AuditEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = AuditEntry::decode(data) {
        // Whatever decodes must re-encode to the same bytes.
        assert_eq!(entry.encode(), data);
    }
});
