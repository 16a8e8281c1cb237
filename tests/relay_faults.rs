//! Relay faults (DESIGN §8): a relay stopped (SIGTERM: it tells its
//! routers `GoingAway`) or killed (SIGKILL: nobody is told) and started
//! again: relayed sessions end with a `closed: session: …` line, the router
//! registers again (the time it took is printed), new sessions work. With
//! two relays and one killed, new sessions open through the other within
//! 5 s.

#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::relay::*;
use harness::*;
use std::time::{Duration, Instant};

#[test]
fn a_relay_stopped_or_killed_and_restarted_is_registered_with_again() {
    let http = http_backend();
    let echo = echo_backend();
    let mut relay = start_relay(&key(1), "127.0.0.1", None, "");
    let address = relay.quic.to_string();
    let mut d = start_relayed_router(&[(address.clone(), relay.key)], None);
    assert!(wait_registered(&mut d, &address, Duration::from_secs(20)).is_some());
    d.install_local(http.addr, echo);
    let (k, t) = d.client("alice", "alice");
    let relays = [(relay.quic, relay.key)];

    // Stopped, then killed with the engineer on TLS (its end is seen at
    // once), then killed with the engineer on QUIC: a dead relay says
    // nothing there, and the client's keep-alives and short idle timeout
    // end the session within ~10 s.
    for (kill, tls) in [(false, true), (true, true), (true, false)] {
        let mut c = d.connect_relayed(None, &relays, &k, &t, tls, &forwards(&["hmi"]));
        c.ready();
        drop(echo_through(c.forwarded("hmi")));
        if kill {
            relay.kill();
        } else {
            assert!(relay.terminate(Duration::from_secs(10)).is_some());
            let going = d.stderr.wait_for_new(Duration::from_secs(5), |l| {
                l.contains(&format!("relay {address} is going away"))
            });
            assert!(going.is_some(), "router stderr {:?}", d.stderr.seen);
        }
        let gone = Instant::now();
        let closed = c.stderr.wait_for(Duration::from_secs(12), |l| {
            l.starts_with("closed: session: ")
        });
        assert!(closed.is_some(), "client stderr {:?}", c.stderr.seen);
        println!(
            "relay {} under a {} engineer: `{}` after {} ms",
            if kill { "killed" } else { "stopped" },
            if tls { "TLS" } else { "QUIC" },
            closed.unwrap(),
            gone.elapsed().as_millis()
        );
        let status = c.exit(Duration::from_secs(10)).expect("the client exits");
        assert!(!status.success());

        let restarted = Instant::now();
        relay.start_again();
        let how = wait_registered(&mut d, &address, Duration::from_secs(90));
        let took = restarted.elapsed();
        assert!(how.is_some(), "router stderr {:?}", d.stderr.seen);
        println!(
            "relay {}: router registered again over {} {} ms after the relay restarted",
            if kill { "killed" } else { "stopped" },
            how.unwrap(),
            took.as_millis()
        );
        let mut c = d.connect_relayed(None, &relays, &k, &t, false, &forwards(&["hmi"]));
        c.ready();
        drop(echo_through(c.forwarded("hmi")));
    }
}

#[test]
fn with_two_relays_and_one_killed_sessions_open_through_the_other() {
    let echo = echo_backend();
    let mut first = start_relay(&key(1), "127.0.0.1", None, "");
    let second = start_relay(&key(1), "127.0.0.1", None, "");
    let (a1, a2) = (first.quic.to_string(), second.quic.to_string());
    let mut d = start_relayed_router(&[(a1.clone(), first.key), (a2.clone(), second.key)], None);
    for a in [&a1, &a2] {
        let line = d.stderr.wait_for(Duration::from_secs(20), |l| {
            l.contains(&format!("registered with relay {a} over"))
        });
        assert!(line.is_some(), "router stderr {:?}", d.stderr.seen);
    }
    d.install_local(echo, echo);
    let (k, t) = d.client("alice", "alice");
    let relays = [(first.quic, first.key), (second.quic, second.key)];
    first.kill();
    let started = Instant::now();
    let mut c = d.connect_relayed(None, &relays, &k, &t, false, &forwards(&["hmi"]));
    c.ready();
    let took = started.elapsed();
    println!(
        "ready through the second relay {} ms after the first was killed",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(echo_through(c.forwarded("hmi")));
}
