//! `connect --socks`: a SOCKS5 CONNECT reaches a destination inside the vpn
//! service's networks and ports; one outside gets "connection not allowed
//! by ruleset" (reply 2) and the client names the reason.

#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

fn socks_roundtrip(tls: bool) {
    let d = start_daemon();
    let http = http_backend();
    let echo = echo_backend();
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let mut c = d.connect(&key, &ticket, tls, &["--socks".into(), "0".into()]);
    c.ready();
    let proxy = c.socks();

    // Inside the networks and on the allowed port (the echo backend).
    let (code, mut s) = socks_connect(proxy, echo);
    assert_eq!(code, 0);
    s.write_all(b"ping through the lan").unwrap();
    let mut back = [0u8; 20];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping through the lan");

    // A port outside the service's ports: not allowed by ruleset.
    let (code, _) = socks_connect(proxy, http.addr);
    assert_eq!(code, 2);
    let line = c
        .stderr
        .wait_for(Duration::from_secs(5), |l| l.starts_with("denied: socks"));
    assert_eq!(
        line.as_deref(),
        Some(format!("denied: socks {}: destination-not-allowed", http.addr).as_str())
    );

    // A domain name is not an address inside the networks.
    let mut s = TcpStream::connect(("127.0.0.1", proxy)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut greet = [0u8; 2];
    s.read_exact(&mut greet).unwrap();
    let mut req = vec![5, 1, 0, 3, 9];
    req.extend_from_slice(b"localhost");
    req.extend_from_slice(&echo.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 2);
    let _ = Ipv4Addr::LOCALHOST;

    // Revoking alice cuts the one stream that opened (the echo, still
    // held above), and only it: the refused opens are not reported as cut.
    assert!(d.revoke_alice(http.addr, echo).status.success());
    let end = c
        .stderr
        .wait_for(Duration::from_secs(5), |l| l.starts_with("closed: session"));
    assert_eq!(end.as_deref(), Some("closed: session: user-inactive"));
    let all = c.stderr.rest(Duration::from_millis(200));
    let cuts: Vec<&String> = all
        .iter()
        .filter(|l| l.starts_with("closed: lan"))
        .collect();
    assert_eq!(cuts, ["closed: lan: user-inactive"], "tls={tls}: {all:?}");
}

#[test]
fn socks5_over_quic() {
    socks_roundtrip(false);
}

#[test]
fn socks5_over_tls() {
    socks_roundtrip(true);
}

/// A SOCKS stream cut by a revocation is reported once, and nothing is
/// reported for a stream that ended before.
#[test]
fn a_revoked_socks_stream_is_reported_once() {
    let d = start_daemon();
    let http = http_backend();
    let echo = echo_backend();
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let mut c = d.connect(
        &key,
        &ticket,
        false,
        &["--socks".into(), "127.0.0.1:0".into()],
    );
    c.ready();
    let proxy = c.socks();
    let (code, mut s) = socks_connect(proxy, echo);
    assert_eq!(code, 0);
    // That the stream outlives the 30 s handshake limit, busy or idle, is
    // shown on paused time in `src/client/socks/tests.rs`.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"still here").unwrap();
    let mut back = [0u8; 10];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still here");

    assert!(d.revoke_alice(http.addr, echo).status.success());
    assert!(wait_closed(s, Duration::from_secs(5)).is_some());
    c.exit(Duration::from_secs(5)).expect("client exits");
    assert_eq!(
        c.stderr.rest(Duration::from_millis(200)),
        [
            "closed: lan: user-inactive",
            "closed: session: user-inactive"
        ]
    );
}
