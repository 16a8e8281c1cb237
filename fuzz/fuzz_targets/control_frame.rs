//! Untrusted bytes into the control socket's frame decoding (any local user
//! can connect before the permission check answers).
#![no_main]
use edgegate_proto::control::{check_frame_len, decode_body, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = check_frame_len(data[..4].try_into().unwrap());
    }
    let _ = decode_body::<Request>(data);
    let _ = decode_body::<Response>(data);
});
