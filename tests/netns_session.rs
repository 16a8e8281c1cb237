//! A session across a real network: the daemon in a "router" namespace, the
//! engineer's client in another, joined by a veth pair; the service a real
//! HTTP server inside the router's namespace, fetched with curl inside the
//! engineer's. The test's own namespace reaches neither. This is the
//! topology the relay and VPN tests build on (tests/tunnel_support/netns.rs).

#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::netns::{self, Netns};
use harness::*;
use std::time::Duration;

fn across_veth(tls: bool) {
    netns::require_root("tests/netns_session.rs");
    let router = Netns::new("rt");
    let engineer = Netns::new("en");
    netns::link(
        &router,
        "lan0",
        "10.88.1.1/24",
        &engineer,
        "wan0",
        "10.88.1.2/24",
    );

    // The machine's web server, on the router's loopback only.
    let _www = router.web_server("127.0.0.1", 18080, "plc across the veth\n");
    let http: std::net::SocketAddr = "127.0.0.1:18080".parse().unwrap();

    let d = start_daemon_spec(DEVICE, "", Some(router.name()), Some("10.88.1.1"));
    assert_eq!(d.quic.ip().to_string(), "10.88.1.1");
    // The echo backend is never used here; any address does.
    d.install(http, "127.0.0.1:9".parse().unwrap());

    let (key, ticket) = d.client("alice", "alice");
    let mut c = d.connect_in(
        Some(engineer.name()),
        &key,
        &ticket,
        tls,
        &forwards(&["web"]),
    );
    c.ready();
    let port = c.forwarded("web");
    let page = engineer.run("curl", &["-sS", &format!("http://127.0.0.1:{port}/status")]);
    assert_eq!(
        String::from_utf8_lossy(&page.stdout),
        "plc across the veth\n"
    );

    // The test's own namespace has no route to the router.
    let mut direct = d.connect(&key, &ticket, tls, &forwards(&["web"]));
    let status = direct.exit(Duration::from_secs(30)).expect("exits");
    assert!(!status.success(), "reached the router from outside");
}

#[test]
fn session_across_namespaces_over_quic() {
    across_veth(false);
}

#[test]
fn session_across_namespaces_over_tls() {
    across_veth(true);
}
