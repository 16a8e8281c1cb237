//! The relay sees only ciphertext (DESIGN §8): plain TCP forwarders that
//! record every byte sit between the engineer and the relay and between the
//! router and the relay (the router, finding no QUIC answer there, falls
//! back to TLS); plaintext markers sent both ways through a relayed stream
//! appear in neither recording. And a relay, or a router, that answers
//! with another key than the pinned one fails the connection with a clear
//! error.

#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::relay::*;
use harness::*;
use std::io::{Read, Write};
use std::time::Duration;

#[test]
fn the_relay_path_carries_only_ciphertext() {
    let http = http_backend();
    let echo = echo_backend();
    let relay = start_relay(&key(1), "127.0.0.1", None, "");
    let router_side = recorder(relay.tls);
    let engineer_side = recorder(relay.tls);
    let address = router_side.addr.to_string();
    let mut d = start_relayed_router(&[(address.clone(), relay.key)], None);
    assert_eq!(
        wait_registered(&mut d, &address, Duration::from_secs(20)).as_deref(),
        Some("tls"),
        "router stderr {:?}",
        d.stderr.seen
    );
    d.install_local(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let extra = forwards(&["web", "hmi"]);
    let relays = [(engineer_side.addr, relay.key)];
    let mut c = d.connect_relayed(None, &relays, &key, &ticket, true, &extra);
    c.ready();

    let marker = format!("PLAINTEXT-MARKER-{}", now());
    let mut s = echo_through(c.forwarded("hmi"));
    s.write_all(marker.as_bytes()).unwrap();
    let mut back = vec![0u8; marker.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, marker.as_bytes(), "the marker went both ways");
    let page = http_get(c.forwarded("web"), &format!("/{marker}"));
    assert!(page.contains("hello from the plc"), "{page}");
    assert!(
        http.requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains(&marker)),
        "the backend saw the marker in clear"
    );

    for (side, rec) in [("engineer", &engineer_side), ("router", &router_side)] {
        assert!(
            rec.len() > 2000,
            "{side} side forwarded {} bytes",
            rec.len()
        );
        assert!(!rec.saw(marker.as_bytes()), "{side} side saw the marker");
        assert!(!rec.saw(b"hello from the plc"), "{side} side saw the page");
        assert!(!rec.saw(b"GET /"), "{side} side saw the request");
    }
}

#[test]
fn an_engineer_whose_quic_gets_no_answer_falls_back_to_tls() {
    let echo = echo_backend();
    let relay = start_relay(&key(1), "127.0.0.1", None, "");
    let address = relay.quic.to_string();
    let mut d = start_relayed_router(&[(address.clone(), relay.key)], None);
    assert!(wait_registered(&mut d, &address, Duration::from_secs(20)).is_some());
    d.install_local(echo, echo);
    // The forwarder's port answers TCP only: QUIC hears nothing there.
    let tcp_only = recorder(relay.tls);
    let (key, ticket) = d.client("alice", "alice");
    let relays = [(tcp_only.addr, relay.key)];
    let mut c = d.connect_relayed(None, &relays, &key, &ticket, false, &forwards(&["hmi"]));
    c.ready();
    drop(echo_through(c.forwarded("hmi")));
    assert!(tcp_only.len() > 1000, "it went over TCP");
}

#[test]
fn a_relay_or_router_with_another_key_fails_the_connection_clearly() {
    let relay = start_relay(&key(1), "127.0.0.1", None, "");
    let address = relay.quic.to_string();
    let mut d = start_relayed_router(&[(address.clone(), relay.key)], None);
    assert!(wait_registered(&mut d, &address, Duration::from_secs(20)).is_some());
    let (key, ticket) = d.client("alice", "alice");
    let stranger = public(&harness::key(42));
    for tls in [false, true] {
        // A relay that is not the pinned one.
        let mut c = d.connect_relayed(None, &[(relay.quic, stranger)], &key, &ticket, tls, &[]);
        let status = c.exit(Duration::from_secs(20)).expect("exits");
        assert!(!status.success());
        let err = c.stderr.rest(Duration::from_millis(500)).join("\n");
        assert!(
            err.contains("the relay's key is not the pinned --relay-key"),
            "tls {tls}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    // The right relay, but the router behind it is not the pinned device:
    // the router's own handshake (end to end) fails.
    let real = d.device_key;
    d.device_key = stranger;
    let mut c = d.connect_relayed(None, &[(relay.quic, relay.key)], &key, &ticket, false, &[]);
    d.device_key = real;
    let status = c.exit(Duration::from_secs(20)).expect("exits");
    assert!(!status.success());
    let err = c.stderr.rest(Duration::from_millis(500)).join("\n");
    assert!(
        err.contains("the gateway's key is not the pinned --gateway-key"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}
