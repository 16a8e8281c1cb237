use super::*;
use crate::filter::tests::{client_only, run_all_splits, run_cut, run_whole, Ev, Mk, Run};
use crate::filter::FilterViolation::{ForbiddenMethod, Malformed, Unsupported};
use proptest::prelude::*;

const MK: Mk = || Box::new(WebSocketReadFilter::new());

const UPGRADE: &[u8] = b"GET /live HTTP/1.1\r\nHost: hmi\r\nUpgrade: websocket\r\n\
    Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

const SWITCHED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// The handshake, the server's `101`, then `frames` from the client, at
/// every split.
fn open(frames: &[u8]) -> Run {
    run_all_splits(MK, &[Ev::C(UPGRADE), Ev::S(SWITCHED), Ev::C(frames)])
}

/// How a frame spells its payload length.
#[derive(Clone, Copy, Debug)]
enum Len {
    Short,
    U16,
    U64,
}

/// A client frame: masked with `key`, length spelled as `len`.
fn frame(b0: u8, payload: &[u8], len: Len) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![b0];
    match len {
        Len::Short => f.push(0x80 | u8::try_from(payload.len()).expect("short")),
        Len::U16 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&u16::try_from(payload.len()).expect("u16").to_be_bytes());
        }
        Len::U64 => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().zip(key.iter().cycle()).map(|(p, k)| p ^ k));
    f
}

const TEXT: u8 = 0x81;
const BINARY: u8 = 0x82;
const PING: u8 = 0x89;
const PONG: u8 = 0x8a;
const CLOSE: u8 = 0x88;

#[test]
fn data_is_dropped_ping_pong_close_pass() {
    let text = frame(TEXT, b"set speed 100", Len::Short);
    let ping = frame(PING, b"hb", Len::Short);
    let bin = frame(BINARY, &[7; 300], Len::U16);
    let pong = frame(PONG, b"", Len::Short);
    let close = frame(CLOSE, &[0x03, 0xe8], Len::Short);
    let stream = [&text[..], &ping, &bin, &pong, &close].concat();
    let want = [UPGRADE, &ping, &pong, &close].concat();
    assert_eq!(open(&stream), (want, Ok(())));
}

#[test]
fn sixteen_and_sixty_four_bit_lengths() {
    let big = vec![0x55; 70_000];
    let b64 = frame(BINARY, &big, Len::U64);
    let b16 = frame(TEXT, &big[..65_535], Len::U16);
    let odd = frame(TEXT, b"tiny", Len::U64); // not minimal, still framed
    let ping = frame(PING, &[1; 125], Len::Short);
    let stream = [&b64[..], &ping, &b16, &odd, &ping].concat();
    let want = [UPGRADE, &ping, &ping].concat();
    assert_eq!(open(&stream), (want, Ok(())));
}

#[test]
fn fragmented_messages_are_dropped_with_interleaved_control_frames() {
    let first = frame(0x01, b"part1", Len::Short); // text, FIN=0
    let ping = frame(PING, b"p", Len::Short);
    let mid = frame(0x00, b"part2", Len::Short); // continuation, FIN=0
    let last = frame(0x80, b"part3", Len::Short); // continuation, FIN=1
    let deflated = frame(0xc2, b"rsv1 data", Len::Short); // permessage-deflate
    let stream = [&first[..], &ping, &mid, &last, &deflated, &ping].concat();
    assert_eq!(open(&stream), ([UPGRADE, &ping, &ping].concat(), Ok(())));
}

#[test]
fn frame_rule_violations_close_the_stream() {
    let mut unmasked = frame(PING, b"x", Len::Short);
    unmasked[1] &= 0x7f;
    let cases: [(Vec<u8>, FilterViolation); 8] = [
        (unmasked, Malformed("unmasked client frame")),
        (
            frame(0x09, b"", Len::Short),
            Malformed("fragmented control frame or RSV bits on it"),
        ),
        (
            frame(0xc9, b"", Len::Short),
            Malformed("fragmented control frame or RSV bits on it"),
        ),
        (
            frame(PING, &[0; 126], Len::U16),
            Malformed("control frame payload over 125 bytes"),
        ),
        (
            frame(CLOSE, &[3], Len::Short),
            Malformed("close frame with a 1-byte payload"),
        ),
        (frame(0x83, b"", Len::Short), Malformed("reserved opcode")),
        (
            frame(0x80, b"", Len::Short),
            Malformed("continuation frame outside a message"),
        ),
        (
            [frame(0x01, b"a", Len::Short), frame(TEXT, b"b", Len::Short)].concat(),
            Malformed("new message inside a fragmented message"),
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(open(&bytes), (UPGRADE.to_vec(), Err(want)));
    }
    let mut huge = frame(BINARY, b"", Len::U64);
    huge[2] = 0x80;
    let want = Malformed("frame length with the high bit set");
    assert_eq!(open(&huge), (UPGRADE.to_vec(), Err(want)));
}

#[test]
fn the_handshake_must_be_a_plain_websocket_get() {
    let post = b"POST /live HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(
        client_only(MK, post),
        (vec![], Err(ForbiddenMethod("POST".into())))
    );
    let plain = b"GET / HTTP/1.1\r\nHost: hmi\r\n\r\n";
    let not_ws = Unsupported("not a WebSocket upgrade request");
    assert_eq!(client_only(MK, plain), (vec![], Err(not_ws.clone())));
    let h10 = b"GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    assert_eq!(client_only(MK, h10), (vec![], Err(not_ws.clone())));
    let no_conn = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
    assert_eq!(client_only(MK, no_conn), (vec![], Err(not_ws)));
    let body = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
        Content-Length: 2\r\n\r\nhi";
    let want = Malformed("body on a WebSocket upgrade request");
    assert_eq!(client_only(MK, body), (vec![], Err(want)));
    let over = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
        X-HTTP-Method-Override: DELETE\r\n\r\n";
    let want = ForbiddenMethod("method-override".into());
    assert_eq!(client_only(MK, over), (vec![], Err(want)));
    let sneaky = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
        Content_Length: 2\r\n\r\n";
    let want = Malformed("framing field spelled with '_'");
    assert_eq!(client_only(MK, sneaky), (vec![], Err(want)));
}

#[test]
fn a_refused_upgrade_then_http_does_not_pass() {
    // The server answered 400 and the client tries plain HTTP next.
    let get = b"GET /admin HTTP/1.1\r\nHost: hmi\r\n\r\n";
    let refused = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    let events = [Ev::C(UPGRADE), Ev::S(refused), Ev::C(get)];
    let want = Unsupported("client bytes after a refused upgrade");
    assert_eq!(run_all_splits(MK, &events), (UPGRADE.to_vec(), Err(want)));
    // A status line that only starts like a 101 is not one.
    let events = [Ev::C(UPGRADE), Ev::S(b"HTTP/1.1 1010 x\r\n"), Ev::C(get)];
    assert!(run_all_splits(MK, &events).1.is_err());
}

#[test]
fn nothing_passes_before_the_servers_101() {
    let ping = frame(PING, b"", Len::Short);
    // Pipelined with the handshake, or after it but before the answer.
    let early = Malformed("client bytes before the server's 101");
    let stream = [UPGRADE, &ping].concat();
    assert_eq!(
        client_only(MK, &stream),
        (UPGRADE.to_vec(), Err(early.clone()))
    );
    let events = [Ev::C(UPGRADE), Ev::C(&ping), Ev::S(SWITCHED)];
    assert_eq!(run_all_splits(MK, &events), (UPGRADE.to_vec(), Err(early)));
    // The 101 arriving in pieces, its status line split anywhere.
    for cut in 1..SWITCHED.len() {
        let (a, b) = SWITCHED.split_at(cut);
        let events = [Ev::C(UPGRADE), Ev::S(a), Ev::S(b), Ev::C(&ping)];
        let want = ([UPGRADE, &ping].concat(), Ok(()));
        assert_eq!(run_whole(MK, &events), want, "101 cut at {cut}");
    }
}

#[test]
fn empty_control_frames_pass_at_once() {
    for op in [CLOSE, PING, PONG] {
        let empty = frame(op, b"", Len::Short);
        let mut f = WebSocketReadFilter::new();
        let mut out = Vec::new();
        f.feed(UPGRADE, &mut out).unwrap();
        f.observe_server(SWITCHED);
        out.clear();
        // The frame is the last thing the client sends: nothing follows it.
        f.feed(&empty, &mut out).unwrap();
        assert_eq!(out, empty, "opcode {op:#x}");
    }
    let close = frame(CLOSE, b"", Len::Short);
    assert_eq!(open(&close), ([UPGRADE, &close].concat(), Ok(())));
}

/// A frame with its kept bytes: (bytes, forwarded).
fn any_frame() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let len = prop::sample::select(vec![Len::Short, Len::U16, Len::U64]);
    let data = (
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..200),
        len,
    );
    let data = data.prop_map(|(text, p, len)| {
        let len = if p.len() > 125 && matches!(len, Len::Short) {
            Len::U16
        } else {
            len
        };
        (frame(if text { TEXT } else { BINARY }, &p, len), false)
    });
    let control = (0..3u8, prop::collection::vec(any::<u8>(), 0..=125));
    // A close payload is empty or holds a 2-byte code.
    let control = control.prop_filter("1-byte close", |(k, p)| *k != 2 || p.len() != 1);
    let control = control.prop_map(|(k, p)| {
        (
            frame([PING, PONG, CLOSE][usize::from(k)], &p, Len::Short),
            true,
        )
    });
    prop_oneof![data, control]
}

proptest! {
    #[test]
    fn random_splits_match_whole_feeding(
        frames in prop::collection::vec(any_frame(), 0..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(|f| f.0.clone()).collect();
        let kept: Vec<u8> = frames.iter().filter(|f| f.1).flat_map(|f| f.0.clone()).collect();
        let want = ([UPGRADE.to_vec(), kept].concat(), Ok(()));
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len().max(1))).collect();
        at.sort_unstable();
        let events = [Ev::C(UPGRADE), Ev::S(SWITCHED), Ev::C(&stream)];
        prop_assert_eq!(run_cut(MK, &events, &|i, _| if i == 2 { at.clone() } else { vec![] }), want);
    }
}
