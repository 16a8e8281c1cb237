//! The VPN through a relay (DESIGN §8 and §9): a router with no listening
//! port registers with a relay; `edgegate connect --relay … --vpn` in an
//! engineer namespace reaches `vpn up`, and curl, with no proxy, reaches
//! an HTTP server in a machine namespace by its IP address. The relayed
//! session is TLS end to end, so the packets ride `Packet` frames on its
//! VPN stream, inside the relay's stream (over QUIC or TLS to the relay).
//!
//! ```text
//! engineer ns ── wan0 10.77.1.2 ═ eng0 10.77.1.1 ── router ns ── lan0 192.168.77.1 ═ eth0 192.168.77.10 ── machine ns
//! (edgegate connect --relay                         (edgegate-relay on 10.77.1.1:4433;  (http.server)
//!  10.77.1.1:4433 --vpn; curl)                       edgegated, no listening port,
//!                                                    registered with it; no ip_forward)
//! ```

#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::netns::{self, Netns};
use harness::relay::*;
use harness::*;
use std::process::Stdio;
use std::time::Duration;

const MACHINE: &str = "192.168.77.10";

fn policy() -> String {
    format!(
        r#"
[company]
id = "acme"
name = "ACME"

[[category]]
id = "vpn"
name = "VPN"

[[role]]
id = "engineer"
name = "Engineer"
scope = "company"
grants = ["vpn"]

[[user]]
id = "alice"
name = "Alice"
roles = ["engineer"]

[[device]]
id = "{DEVICE}"
name = "Router"
services = [
  {{ id = "lan", name = "Machine LAN", kind = "vpn", networks = ["192.168.77.0/24"], ports = [80], category = "vpn" }},
]
"#
    )
}

fn vpn_through_the_relay(tls_to_relay: bool) {
    netns::require_root("tests/vpn_relay.rs");
    let engineer = Netns::new("er");
    let router = Netns::new("rr");
    let machine = Netns::new("mr");
    netns::link(
        &router,
        "eng0",
        "10.77.1.1/24",
        &engineer,
        "wan0",
        "10.77.1.2/24",
    );
    netns::link(
        &router,
        "lan0",
        "192.168.77.1/24",
        &machine,
        "eth0",
        "192.168.77.10/24",
    );
    let forwarding = router.run("sysctl", &["-n", "net.ipv4.ip_forward"]);
    assert_eq!(String::from_utf8_lossy(&forwarding.stdout).trim(), "0");

    let _www = machine.web_server(MACHINE, 80, "filling line: running\n");
    let url = format!("http://{MACHINE}:80/status");
    let curl = |ns: &Netns| {
        ns.cmd("curl")
            .args(["-sS", "--noproxy", "*", "--max-time", "10", &url])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    // The relay and the router, both in the router namespace; the router
    // has no listening port and dials out to the relay.
    let relay = start_relay(&key(1), "10.77.1.1", Some(router.name()), "");
    let address = relay.quic.to_string();
    let mut d = start_relayed_router(&[(address.clone(), relay.key)], Some(router.name()));
    assert!(
        wait_registered(&mut d, &address, Duration::from_secs(20)).is_some(),
        "router stderr {:?}",
        d.stderr.seen
    );
    // Over the control socket: the router has no tunnel port to push to.
    let bytes = bundle_bytes(&policy(), DEVICE, 1, &d.authority);
    let answer = d.control(edgegate::control::Request::PushBundle { bytes });
    assert!(
        matches!(
            answer,
            edgegate::control::Response::Push(edgegate_proto::frame::PushResult::Accepted { .. })
        ),
        "{answer:?}"
    );

    let (key, ticket) = d.client("alice", "alice");
    let mut c = d.connect_relayed(
        Some(engineer.name()),
        &[(relay.quic, relay.key)],
        &key,
        &ticket,
        tls_to_relay,
        &["--vpn".to_string()],
    );
    c.ready();
    let up = c
        .stdout
        .seen
        .iter()
        .find(|l| l.starts_with("vpn up: "))
        .cloned()
        .unwrap_or_else(|| panic!("no vpn up line: {:?}", c.stdout.seen));
    assert!(up.ends_with(" routes 192.168.77.0/24"), "{up}");

    let out = curl(&engineer);
    assert!(
        out.status.success(),
        "curl through the relayed VPN: {out:?}; client {:?}",
        c.stderr.seen
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "filling line: running\n"
    );
    // The relay carried it: one relayed session, the page's bytes counted
    // towards the engineer.
    let status = relay.status();
    let r = &status["routers"][0];
    assert_eq!(r["sessions"], 1, "{status}");
    assert!(r["bytes_from_router"].as_u64().unwrap() > 500, "{status}");
}

#[test]
fn vpn_through_a_relay_over_quic() {
    vpn_through_the_relay(false);
}

#[test]
fn vpn_through_a_relay_over_tls() {
    vpn_through_the_relay(true);
}
