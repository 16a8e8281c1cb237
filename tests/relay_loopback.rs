//! Reaching a router with no listening port through a relay, on loopback
//! (DESIGN §8): the router dials out and registers; `edgegate connect
//! --relay` reaches `ready` and carries HTTP, an echo stream (the VNC
//! stand-in) and a SOCKS stream, with QUIC or TLS to the relay.

#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::relay::*;
use harness::*;
use std::time::Duration;

fn relayed_session(tls: bool) {
    let http = http_backend();
    let echo = echo_backend();
    let relay = start_relay(&key(1), "127.0.0.1", None, "");
    let address = relay.quic.to_string();
    let mut d = start_relayed_router(&[(address.clone(), relay.key)], None);
    assert_eq!(
        wait_registered(&mut d, &address, Duration::from_secs(20)).as_deref(),
        Some("quic"),
        "router stderr {:?}",
        d.stderr.seen
    );
    d.install_local(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let mut extra = forwards(&["web", "hmi"]);
    extra.extend(["--socks".to_string(), "0".to_string()]);
    let mut c = d.connect_relayed(None, &[(relay.quic, relay.key)], &key, &ticket, tls, &extra);
    c.ready();
    assert!(c.stdout.seen.iter().any(|l| l == "allow web manage"));
    let page = http_get(c.forwarded("web"), "/");
    assert!(page.contains("hello from the plc"), "{page}");
    let s = echo_through(c.forwarded("hmi"));
    drop(s);
    let (code, mut s) = socks_connect(c.socks(), echo);
    assert_eq!(code, 0);
    use std::io::{Read, Write};
    s.write_all(b"socks!").unwrap();
    let mut back = [0u8; 6];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"socks!");
    // The router's own session list shows the relayed session, from the
    // engineer's address as the relay saw it.
    let edgegate::control::Response::Sessions(sessions) =
        d.control(edgegate::control::Request::Sessions)
    else {
        panic!("sessions answer")
    };
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].user, "alice");
    // The relay's side: one registration, one relayed session, bytes
    // counted each way (ciphertext: it knows sizes, not contents).
    let status = relay.status();
    assert_eq!(status["key"], relay.key.to_string());
    let routers = status["routers"].as_array().unwrap();
    assert_eq!(routers.len(), 1, "{status}");
    let r = &routers[0];
    assert_eq!(r["device"], DEVICE);
    assert_eq!(r["key"], d.device_key.to_string());
    assert_eq!(r["transport"], "quic");
    assert_eq!(r["sessions"], 1);
    assert!(r["bytes_to_router"].as_u64().unwrap() > 500, "{status}");
    assert!(r["bytes_from_router"].as_u64().unwrap() > 500, "{status}");
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_edgegate"))
        .args(["relay", "status", "--socket"])
        .arg(relay.dir.path().join("control.sock"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("router {DEVICE} over quic from 127.0.0.1:")),
        "{text}"
    );
    assert!(c.stop(Duration::from_secs(10)).is_some());
    // The relay lets go of the ended session (its slot, its streams) soon,
    // whatever the engineer's transport still says.
    let released = wait_until(Duration::from_secs(10), || {
        (relay.status()["routers"][0]["sessions"] == 0).then_some(())
    });
    assert!(released.is_some(), "{}", relay.status());
}

#[test]
fn a_router_without_ports_is_reached_through_a_relay_over_quic() {
    relayed_session(false);
}

#[test]
fn a_router_without_ports_is_reached_through_a_relay_over_tls() {
    relayed_session(true);
}
