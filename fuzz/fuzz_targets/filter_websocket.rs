//! Untrusted client bytes into the WebSocket read-level filter: the upgrade
//! request, then frames. Script format and invariant:
//! common/filter_script.rs.
#![no_main]
use edgegate::filter::{ByteFilter, WebSocketReadFilter};
use libfuzzer_sys::fuzz_target;

#[path = "common/filter_script.rs"]
mod filter_script;

fuzz_target!(|data: &[u8]| {
    filter_script::check(
        || Box::new(WebSocketReadFilter::new()) as Box<dyn ByteFilter>,
        data,
    );
});
