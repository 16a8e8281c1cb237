//! Untrusted client bytes into the HTTP read-level filter (an engineer at
//! level `read` sends whatever they like). Script format and invariant:
//! common/filter_script.rs. Both the gateway's filter (no bodies) and the
//! one that frames bodies are run.
#![no_main]
use edgegate::filter::{ByteFilter, HttpReadFilter};
use libfuzzer_sys::fuzz_target;

#[path = "common/filter_script.rs"]
mod filter_script;

fuzz_target!(|data: &[u8]| {
    filter_script::check(
        || Box::new(HttpReadFilter::without_bodies()) as Box<dyn ByteFilter>,
        data,
    );
    filter_script::check(
        || Box::new(HttpReadFilter::new()) as Box<dyn ByteFilter>,
        data,
    );
});
