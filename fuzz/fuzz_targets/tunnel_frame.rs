//! Untrusted bytes into the tunnel frame decoding: what a peer sends first
//! on every QUIC stream and TLS connection, before any ticket is checked.
//! The input is a byte stream of length-prefixed frames, read the way the
//! transport reads it: the prefix checked against the cap before the body.
#![no_main]
use edgegate_proto::frame::{
    check_len, data_header, decode, encode, Frame, MAX_FRAME, MAX_PUSH_FRAME,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while rest.len() >= 4 {
        let prefix: [u8; 4] = rest[..4].try_into().unwrap();
        rest = &rest[4..];
        let push = check_len(prefix, MAX_PUSH_FRAME);
        let len = match check_len(prefix, MAX_FRAME) {
            Ok(len) => {
                assert_eq!(
                    push,
                    Ok(len),
                    "a frame under MAX_FRAME is under the push cap"
                );
                len
            }
            Err(_) => rest.len(),
        };
        let (body, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        let Ok(frame) = decode(body) else {
            continue;
        };
        // Whatever decodes re-encodes to a frame that decodes to itself.
        let wire = encode(&frame);
        assert_eq!(decode(&wire[4..]).as_ref(), Ok(&frame));
        // The transport's fast path builds Data headers without encode().
        if let Frame::Data(payload) = &frame {
            if let Some((header, n)) = data_header(payload.len()) {
                assert_eq!(&wire[..n], &header[..n]);
            }
        }
    }
});
