//! Untrusted bytes into the SOCKS5 parser of `edgegate connect --socks`
//! (any local program may connect). The input is a greeting followed by a
//! request, read the way the server reads them: exactly the bytes the
//! parser asks for. Invariants: a message is never longer than its input,
//! asking for more never asks for 0, and feeding the parser one prefix at a
//! time reaches the same verdict as the whole input.
#![no_main]
use edgegate::fuzzing::socks5::{parse_greeting, parse_request, Parsed};
use libfuzzer_sys::fuzz_target;

/// Parse like the server: start empty, add what is asked for.
fn incremental<T>(input: &[u8], parse: fn(&[u8]) -> Parsed<T>) -> Option<(Parsed<T>, usize)> {
    let mut have = 0;
    loop {
        match parse(&input[..have]) {
            Parsed::NeedMore(n) => {
                assert!(n > 0);
                if have + n > input.len() {
                    return None;
                }
                have += n;
            }
            done => return Some((done, have)),
        }
    }
}

fn check<T: PartialEq + std::fmt::Debug>(input: &[u8], parse: fn(&[u8]) -> Parsed<T>) -> usize {
    let whole = parse(input);
    match &whole {
        Parsed::NeedMore(n) => assert!(*n > 0),
        Parsed::Done { len, .. } => assert!(*len <= input.len()),
        Parsed::Refused(r) => {
            let _ = r.answer();
        }
    }
    match incremental(input, parse) {
        Some((step, used)) => {
            if let Parsed::Done { len, .. } = &step {
                assert_eq!(
                    *len, used,
                    "reading what is asked for reads exactly the message"
                );
            }
            assert_eq!(step, whole);
            used
        }
        None => {
            assert!(matches!(whole, Parsed::NeedMore(_)));
            input.len()
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let used = check(data, parse_greeting);
    if let Parsed::Done { value, .. } = parse_request(&data[used..]) {
        let _ = value.to_string();
    }
    check(&data[used..], parse_request);
});
