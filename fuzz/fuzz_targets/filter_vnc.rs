//! Untrusted bytes into the VNC read-level filter: client messages, and the
//! server's handshake it observes (a hostile or broken VNC server is as
//! likely as a hostile client). Script format and invariant:
//! common/filter_script.rs.
#![no_main]
use edgegate::filter::{ByteFilter, VncReadFilter};
use libfuzzer_sys::fuzz_target;

#[path = "common/filter_script.rs"]
mod filter_script;

fuzz_target!(|data: &[u8]| {
    filter_script::check(
        || Box::new(VncReadFilter::new()) as Box<dyn ByteFilter>,
        data,
    );
});
