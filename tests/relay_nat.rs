//! A router behind NAT reached through a relay (DESIGN §8), on namespaces
//! the test makes: the router's only way out is a masquerading NAT in front
//! of the relay; the engineer sits on another network of the relay. The
//! engineer cannot reach the router directly; through the relay curl gets
//! the router's web page. With UDP dropped at the NAT the router registers
//! over TLS within 5 s.

#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::netns::{self, Netns};
use harness::relay::*;
use harness::*;
use std::time::{Duration, Instant};

fn curl(ns: &Netns, port: u16) -> Option<String> {
    let out = ns
        .cmd("curl")
        .args(["-sf", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}/status"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_router_behind_nat_is_reached_through_the_relay() {
    netns::require_root("tests/relay_nat.rs");
    let relay_ns = Netns::new("rl");
    let nat = Netns::new("nt");
    let router = Netns::new("rt");
    let engineer = Netns::new("en");
    netns::link(
        &nat,
        "wan0",
        "10.89.2.2/24",
        &relay_ns,
        "eth0",
        "10.89.2.1/24",
    );
    netns::link(
        &router,
        "eth0",
        "10.89.1.2/24",
        &nat,
        "lan0",
        "10.89.1.1/24",
    );
    netns::link(
        &engineer,
        "eth0",
        "10.89.3.2/24",
        &relay_ns,
        "eth1",
        "10.89.3.1/24",
    );
    nat.masquerade("wan0");
    router.default_route("10.89.1.1");

    let _www = router.web_server("127.0.0.1", 18080, "plc behind the nat\n");

    let relay = start_relay(&key(1), "0.0.0.0", Some(relay_ns.name()), "");
    let port = relay.quic.port();
    let address = format!("10.89.2.1:{port}");
    let mut d = start_relayed_router_spec(
        &[(address.clone(), relay.key)],
        Some(router.name()),
        Some("10.89.1.2"),
    );
    assert_eq!(
        wait_registered(&mut d, &address, Duration::from_secs(20)).as_deref(),
        Some("quic"),
        "router stderr {:?}",
        d.stderr.seen
    );
    d.install_local(
        "127.0.0.1:18080".parse().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
    );
    let (key, ticket) = d.client("alice", "alice");

    // Directly, the engineer cannot reach the router (it is behind NAT),
    // though it listens.
    assert_eq!(d.tls.ip().to_string(), "10.89.1.2");
    let mut direct = d.connect_in(
        Some(engineer.name()),
        &key,
        &ticket,
        true,
        &forwards(&["web"]),
    );
    let status = direct.exit(Duration::from_secs(20)).expect("exits");
    assert!(!status.success());
    assert!(!direct.stdout.seen.iter().any(|l| l == "ready"));
    let err = direct.stderr.rest(Duration::from_millis(500)).join("\n");
    assert!(err.contains("connecting to 10.89.1.2"), "{err}");

    let at_relay: std::net::SocketAddr = format!("10.89.3.1:{port}").parse().unwrap();
    let relays = [(at_relay, relay.key)];
    let mut c = d.connect_relayed(
        Some(engineer.name()),
        &relays,
        &key,
        &ticket,
        false,
        &forwards(&["web"]),
    );
    c.ready();
    let page = curl(&engineer, c.forwarded("web"));
    assert_eq!(page.as_deref(), Some("plc behind the nat\n"));
    drop(c);

    // UDP dropped on the router's side: it registers over TLS within 5 s.
    nat.run("iptables", &["-A", "FORWARD", "-p", "udp", "-j", "DROP"]);
    assert!(d.terminate(Duration::from_secs(15)).is_some());
    let started = Instant::now();
    d.start_again();
    let how = wait_registered(&mut d, &address, Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(
        how.as_deref(),
        Some("tls"),
        "router stderr {:?}",
        d.stderr.seen
    );
    println!(
        "registered over tls {} ms after the router started, UDP dropped",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    let mut c = d.connect_relayed(
        Some(engineer.name()),
        &relays,
        &key,
        &ticket,
        false,
        &forwards(&["web"]),
    );
    c.ready();
    let page = curl(&engineer, c.forwarded("web"));
    assert_eq!(page.as_deref(), Some("plc behind the nat\n"));
}
