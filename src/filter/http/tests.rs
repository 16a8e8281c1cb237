use super::*;
use crate::filter::tests::{client_only, Mk};
use crate::filter::FilterViolation::{ForbiddenMethod, Malformed, TooLarge, Unsupported};
use proptest::prelude::*;

const MK: Mk = || Box::new(HttpReadFilter::new());

fn forbidden(m: &str) -> Result<(), FilterViolation> {
    Err(ForbiddenMethod(m.into()))
}

#[test]
fn read_methods_pass_unchanged() {
    for m in ["GET", "HEAD", "OPTIONS"] {
        let req = format!("{m} /x?y=1 HTTP/1.1\r\nHost: plc\r\nAccept: */*\r\n\r\n");
        assert_eq!(client_only(MK, req.as_bytes()), (req.into_bytes(), Ok(())));
    }
    let star = b"OPTIONS * HTTP/1.0\r\n\r\n";
    assert_eq!(client_only(MK, star), (star.to_vec(), Ok(())));
}

#[test]
fn other_methods_are_refused_without_a_byte() {
    for m in [
        "POST", "PUT", "DELETE", "PATCH", "CONNECT", "TRACE", "get", "PROPFIND",
    ] {
        let req = format!("{m} / HTTP/1.1\r\nHost: plc\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            client_only(MK, req.as_bytes()),
            (vec![], forbidden(m)),
            "{m}"
        );
    }
}

#[test]
fn pipelined_get_then_post_leaks_nothing_of_the_post() {
    let get = b"GET /a HTTP/1.1\r\nHost: plc\r\n\r\n";
    let head = b"HEAD /b HTTP/1.1\r\nHost: plc\r\nContent-Length: 3\r\n\r\nabc";
    let post = b"POST /set HTTP/1.1\r\nHost: plc\r\nContent-Length: 4\r\n\r\nstop";
    let stream = [&get[..], head, post, get].concat();
    let want = [&get[..], head].concat();
    assert_eq!(client_only(MK, &stream), (want, forbidden("POST")));
}

#[test]
fn keep_alive_requests_and_empty_lines_between_them() {
    let a = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n";
    let b = b"GET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let stream = [&a[..], b"\r\n\r\n", b].concat();
    assert_eq!(client_only(MK, &stream), ([&a[..], b].concat(), Ok(())));
}

#[test]
fn get_with_a_body_is_bounded() {
    let ok = b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(client_only(MK, ok), (ok.to_vec(), Ok(())));
    let big = format!("GET / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
    assert_eq!(client_only(MK, big.as_bytes()), (vec![], Err(TooLarge)));
    // A body that looks like a request is data, not a request.
    let hidden = b"GET / HTTP/1.1\r\nContent-Length: 19\r\n\r\nPOST / HTTP/1.1\r\n\r\n";
    assert_eq!(client_only(MK, hidden), (hidden.to_vec(), Ok(())));
}

#[test]
fn oversized_head_is_too_large() {
    let filler = "a".repeat(MAX_HEAD);
    let req = format!("GET / HTTP/1.1\r\nX-Big: {filler}\r\n\r\n");
    assert_eq!(client_only(MK, req.as_bytes()), (vec![], Err(TooLarge)));
    // Exactly at the bound is fine.
    let line = "GET / HTTP/1.1\r\nX: ";
    let pad = "b".repeat(MAX_HEAD - line.len() - 4);
    let exact = format!("{line}{pad}\r\n\r\n");
    assert_eq!(exact.len(), MAX_HEAD);
    assert_eq!(
        client_only(MK, exact.as_bytes()),
        (exact.clone().into_bytes(), Ok(()))
    );
    // Endless garbage without a line end is cut at the bound too.
    let mut f = HttpReadFilter::new();
    let mut out = Vec::new();
    let chunk = [b'x'; 4096];
    let e = (0..20).find_map(|_| f.feed(&chunk, &mut out).err());
    assert_eq!(e, Some(TooLarge));
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(101));
    assert_eq!(client_only(MK, many.as_bytes()), (vec![], Err(TooLarge)));
}

#[test]
fn smuggling_shapes_are_refused() {
    let cases: [(&[u8], FilterViolation); 11] = [
        (
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            Malformed("duplicate transfer-encoding"),
        ),
        (b"GET / HTTP/1.1\nHost: h\n\n", Malformed("bare LF")),
        (
            b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
            Malformed("bare CR"),
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            Malformed("both content-length and transfer-encoding"),
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            Malformed("duplicate content-length"),
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
            Malformed("invalid content-length"),
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            Malformed("invalid content-length"),
        ),
        (
            b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Unsupported("transfer-encoding other than chunked"),
        ),
        (
            b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            Malformed("transfer-encoding in HTTP/1.0"),
        ),
        (
            b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
            Malformed("invalid request head"),
        ),
        (
            b"GET / HTTP/1.1\r\nX: a\r\n  folded\r\n\r\n",
            Malformed("invalid request head"),
        ),
    ];
    for (req, want) in cases {
        assert_eq!(
            client_only(MK, req),
            (vec![], Err(want)),
            "{}",
            req.escape_ascii()
        );
    }
}

#[test]
fn method_override_fields_are_refused() {
    for field in [
        "X-HTTP-Method-Override",
        "x-http-method-override",
        "X-HTTP-Method",
        "X-Method-Override",
        "X_HTTP_Method_Override",
        "x_method_override",
    ] {
        // Even an override to a read method: no client needs one.
        for to in ["DELETE", "GET"] {
            let req = format!("GET /a HTTP/1.1\r\nHost: plc\r\n{field}: {to}\r\n\r\n");
            let got = client_only(MK, req.as_bytes());
            assert_eq!(got, (vec![], forbidden("method-override")), "{field}: {to}");
        }
    }
    // Only the named fields: similar names are ordinary fields.
    let other = b"GET /a HTTP/1.1\r\nX-HTTP-Method-Overrides: x\r\nX-Method: y\r\n\r\n";
    assert_eq!(client_only(MK, other), (other.to_vec(), Ok(())));
    // The verdict comes only after the pipelined GET before it passed.
    let get = b"GET /a HTTP/1.1\r\nHost: plc\r\n\r\n";
    let sneaky = b"GET /b HTTP/1.1\r\nX-HTTP-Method: PUT\r\n\r\n";
    let stream = [&get[..], sneaky].concat();
    let want = (get.to_vec(), forbidden("method-override"));
    assert_eq!(client_only(MK, &stream), want);
}

#[test]
fn underscore_look_alikes_of_framing_fields_are_refused() {
    let want = Err(Malformed("framing field spelled with '_'"));
    for field in [
        "Content_Length: 5",
        "content_length: 0",
        "Transfer_Encoding: chunked",
        "TRANSFER_ENCODING: chunked",
    ] {
        let req = format!("GET / HTTP/1.1\r\nHost: plc\r\n{field}\r\n\r\n");
        let got = client_only(MK, req.as_bytes());
        assert_eq!(got, (vec![], want.clone()), "{field}");
    }
    // Other fields with `_` are the backend's business.
    let ok = b"GET / HTTP/1.1\r\nX_Trace_Id: 7\r\nContent_Type: text/plain\r\n\r\n";
    assert_eq!(client_only(MK, ok), (ok.to_vec(), Ok(())));
}

#[test]
fn upgrades_and_http2_are_refused() {
    let ws = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(client_only(MK, ws), (vec![], forbidden("upgrade")));
    let h2c = b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n";
    assert_eq!(client_only(MK, h2c), (vec![], forbidden("upgrade")));
    let pri = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    assert_eq!(client_only(MK, pri), (vec![], Err(Unsupported("HTTP/2"))));
}

#[test]
fn chunked_bodies_are_followed_to_their_end() {
    let req = b"GET / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n\
        5;name=\"v\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\n\r\n";
    let next = b"HEAD / HTTP/1.1\r\n\r\n";
    let post = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let stream = [&req[..], next, post].concat();
    let want = [&req[..], next].concat();
    assert_eq!(client_only(MK, &stream), (want, forbidden("POST")));
    // A chunk that hides a request inside its data stays data.
    let hidden = b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        13\r\nPOST / HTTP/1.1\r\n\r\n\r\n0\r\n\r\n";
    assert_eq!(client_only(MK, hidden), (hidden.to_vec(), Ok(())));
}

#[test]
fn malformed_chunked_bodies_are_refused() {
    let head = "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cases: [(&str, &[u8], FilterViolation); 6] = [
        (
            "5\r\nhelloXX",
            b"5\r\nhello",
            Malformed("chunk data not followed by CRLF"),
        ),
        ("zz\r\n", b"", Malformed("invalid chunk size")),
        ("-1\r\n", b"", Malformed("invalid chunk size")),
        ("5 x\r\n", b"", Malformed("invalid chunk extension")),
        ("1000000000000000\r\n", b"", Malformed("invalid chunk size")),
        (
            "0\r\nno colon\r\n\r\n",
            b"0\r\n",
            Malformed("invalid chunked trailer"),
        ),
    ];
    for (body, passed, want) in cases {
        let req = format!("{head}{body}");
        let out = [head.as_bytes(), passed].concat();
        assert_eq!(
            client_only(MK, req.as_bytes()),
            (out, Err(want)),
            "{body:?}"
        );
    }
    let big = format!("{head}{:x}\r\n", MAX_BODY + 1);
    assert_eq!(
        client_only(MK, big.as_bytes()),
        (head.as_bytes().to_vec(), Err(TooLarge))
    );
    let long_ext = format!("{head}1;{}\r\n", "e".repeat(MAX_CHUNK_LINE));
    assert_eq!(client_only(MK, long_ext.as_bytes()).1, Err(TooLarge));
}

#[test]
fn without_bodies_refuses_any_body() {
    const STRICT: Mk = || Box::new(HttpReadFilter::without_bodies());
    let get = b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx";
    let chunked = b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let refused = Err(Unsupported("request body at read level"));
    for tail in [&body[..], chunked] {
        let stream = [&get[..], tail].concat();
        assert_eq!(
            client_only(STRICT, &stream),
            (get.to_vec(), refused.clone())
        );
    }
}

/// One allowed request: method, optional body framing.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "HEAD", "OPTIONS"]);
    let body = prop::collection::vec(any::<u8>(), 0..40);
    let chunks = prop::collection::vec(prop::collection::vec(any::<u8>(), 1..20), 0..4);
    (method, 0..3u8, body, chunks, any::<bool>()).prop_map(|(m, kind, body, chunks, ext)| {
        let mut r = format!("{m} /p HTTP/1.1\r\nHost: plc\r\n").into_bytes();
        match kind {
            0 => r.extend_from_slice(b"\r\n"),
            1 => {
                r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                r.extend_from_slice(&body);
            }
            _ => {
                r.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for c in &chunks {
                    let e = if ext { ";a=b" } else { "" };
                    r.extend_from_slice(format!("{:X}{e}\r\n", c.len()).as_bytes());
                    r.extend_from_slice(c);
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(if ext {
                    b"0\r\nT: v\r\n\r\n"
                } else {
                    b"0\r\n\r\n"
                });
            }
        }
        r
    })
}

proptest! {
    #[test]
    fn random_splits_match_whole_feeding(
        reqs in prop::collection::vec(request(), 1..5),
        post in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let allowed = reqs.concat();
        let mut stream = allowed.clone();
        if post {
            stream.extend_from_slice(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
        }
        let want = (allowed, if post { forbidden("POST") } else { Ok(()) });
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len())).collect();
        at.sort_unstable();
        let got = crate::filter::tests::run_cut(MK, &[crate::filter::tests::Ev::C(&stream)], &|_, _| at.clone());
        prop_assert_eq!(got, want);
    }
}

/// Feeds `stream` to a fresh filter; its answer once it refused.
fn answer_to(stream: &[u8]) -> Option<Vec<u8>> {
    let mut f = HttpReadFilter::without_bodies();
    assert_eq!(f.refusal_answer(), None);
    let refused = f.feed(stream, &mut Vec::new()).is_err();
    let answer = f.refusal_answer();
    assert!(refused || answer.is_none(), "an answer without a refusal");
    answer
}

#[test]
fn a_refused_write_is_answered_403_with_a_plain_text_body() {
    let writes: [&[u8]; 5] = [
        b"POST /setpoint HTTP/1.1\r\nHost: plc\r\nContent-Length: 3\r\n\r\n100",
        b"DELETE /recipe/4 HTTP/1.1\r\nHost: plc\r\n\r\n",
        b"CONNECT plc:443 HTTP/1.1\r\nHost: plc:443\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: plc\r\n\r\nGET /b HTTP/1.1\r\nX-HTTP-Method: PUT\r\n\r\n",
    ];
    for w in writes {
        let answer = answer_to(w).unwrap_or_else(|| panic!("{}", w.escape_ascii()));
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut fields);
        let httparse::Status::Complete(n) = resp.parse(&answer).expect("a valid response") else {
            panic!("incomplete response");
        };
        assert_eq!(resp.code, Some(403));
        let field = |name: &str| {
            let f = resp
                .headers
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(name));
            String::from_utf8_lossy(f.expect(name).value).into_owned()
        };
        let body = &answer[n..];
        assert_eq!(field("content-length"), body.len().to_string());
        assert_eq!(field("connection"), "close");
        assert!(field("content-type").starts_with("text/plain"));
        assert!(String::from_utf8_lossy(body).contains("read-only"));
    }
}

#[test]
fn only_writes_are_answered() {
    // Passing requests, and refusals where the filter lost the framing or the
    // request is not a write: closed without an answer.
    let quiet: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n",
        b"GET / HTTP/1.1\nHost: plc\n\n",
        b"GET / HTTP/1.1\r\nContent_Length: 4\r\n\r\nPOST",
        b"GET / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody",
    ];
    for q in quiet {
        assert_eq!(answer_to(q), None, "{}", q.escape_ascii());
    }
}
