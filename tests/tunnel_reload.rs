//! SIGHUP reload on the real `edgegated`: new limits and trusted keys apply
//! to live sessions (those still allowed survive, those whose ticket no
//! longer verifies are closed with `bad-ticket`, a bundle the new keys did
//! not sign fails closed); a broken config is refused with one line and the
//! daemon keeps serving; restart-only keys are refused with a log line.

#[path = "tunnel_support/harness.rs"]
mod harness;

use edgegate::control::{Request, Response};
use harness::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn hup(d: &Daemon) {
    let pid = nix::unistd::Pid::from_raw(d.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
}

/// Rewrite the daemon's config with `edit`, send SIGHUP and wait until the
/// daemon says the reload is done (applied and live sessions re-decided, or
/// refused). Earlier lines of the reload stay in `d.stderr.seen`.
fn reload(d: &mut Daemon, edit: impl FnOnce(String) -> String) -> String {
    let path = d.path("edgegated.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
    hup(d);
    let done = |l: &str| l.contains("config reloaded") || l.contains("config reload refused:");
    let line = d.stderr.wait_for_new(Duration::from_secs(10), done);
    line.unwrap_or_else(|| panic!("reload not reported: {:?}", d.stderr.seen))
}

fn echo_again(s: &mut std::net::TcpStream) {
    s.write_all(b"again").unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"again");
}

#[test]
fn new_limits_and_trusted_keys_apply_to_live_sessions() {
    let mut d = start_daemon_with("[limits]\nmax_sessions_per_user = 8\n");
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let mut alice = d.connect(&key, &ticket, false, &forwards(&["hmi"]));
    alice.ready();
    let port = alice.forwarded("hmi");
    let mut held = echo_through(port);

    // A limit: alice may have one session now. Hers survives; a second is refused.
    reload(&mut d, |t| {
        t.replace("max_sessions_per_user = 8", "max_sessions_per_user = 1")
    });
    let mut second = d.connect(&key, &ticket, false, &[]);
    assert!(second.exit(Duration::from_secs(20)).is_some());
    assert_eq!(
        second.stderr.rest(Duration::from_secs(5)),
        ["denied: limit-exceeded"]
    );
    echo_again(&mut held);
    // Bob is still welcome.
    let (bkey, bticket) = d.client("bob", "bob");
    let mut bob = d.connect(&bkey, &bticket, false, &[]);
    bob.ready();

    // A second trusted key: every ticket still verifies; nothing is closed.
    let old = public(&d.authority);
    let new_authority = harness::key(2);
    let new = public(&new_authority);
    reload(&mut d, |t| {
        t.replace(&format!("[\"{old}\"]"), &format!("[\"{old}\", \"{new}\"]"))
    });
    echo_again(&mut held);
    assert!(alice.exit(Duration::from_millis(10)).is_none());

    // Only the new key: the live tickets (old key) no longer verify, and the
    // bundle in force (old key) neither: sessions closed, gateway fails
    // closed. The one decision function reports the first step that fails,
    // DESIGN §2 step 1 (the bundle) before step 2 (the ticket).
    let started = Instant::now();
    reload(&mut d, |t| {
        t.replace(&format!("[\"{old}\", \"{new}\"]"), &format!("[\"{new}\"]"))
    });
    let status = alice
        .exit(Duration::from_secs(10))
        .expect("alice's session is closed");
    println!(
        "SIGHUP with new trusted key -> session closed in {:?}",
        started.elapsed()
    );
    assert!(!status.success());
    assert!(alice
        .stderr
        .rest(Duration::from_millis(200))
        .contains(&"closed: session: no-valid-bundle".to_string()));
    assert!(bob.exit(Duration::from_secs(10)).is_some());
    assert!(d
        .stderr
        .wait_for(Duration::from_secs(5), |l| l
            .contains("failing closed (no-valid-bundle)"))
        .is_some());
    let Response::Status(st) = d.control(Request::Status) else {
        panic!()
    };
    assert!(st.bundle.is_none(), "{st:?}");

    // A bundle and a ticket by the new key work again.
    let policy = policy_text(http.addr, echo, "active");
    let b2 = d.write("b2", &bundle_bytes(&policy, DEVICE, 2, &new_authority));
    let out = d.push(&b2, false);
    assert!(out.status.success(), "{out:?}");
    d.authority = new_authority;
    let (k3, t3) = d.client("alice3", "alice");
    let mut again = d.connect(&k3, &t3, false, &forwards(&["hmi"]));
    again.ready();
    let port = again.forwarded("hmi");
    echo_through(port);
}

#[test]
fn broken_or_restart_only_changes_are_refused_and_the_daemon_keeps_serving() {
    let mut d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let mut alice = d.connect(&key, &ticket, true, &forwards(&["hmi"]));
    alice.ready();
    let port = alice.forwarded("hmi");
    let mut held = echo_through(port);

    let path = d.path("edgegated.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    reload(&mut d, |t| format!("{t}\nno_such_key = 1\n"));
    let line = d
        .stderr
        .wait_for(Duration::from_secs(5), |l| {
            l.contains("config reload refused:")
        })
        .expect("refusal logged");
    assert!(line.contains("no_such_key"), "{line}");
    echo_again(&mut held);
    // New sessions still open.
    let (bkey, bticket) = d.client("bob", "bob");
    let mut bob = d.connect(&bkey, &bticket, false, &[]);
    bob.ready();

    // A restart-only key: refused with a line, the rest applied.
    std::fs::write(&path, &good).unwrap();
    reload(&mut d, |t| {
        t.replace(
            "listen_tls = \"127.0.0.1:0\"",
            "listen_tls = \"127.0.0.1:1\"",
        )
        .replace("expiry_grace = \"0s\"", "expiry_grace = \"1h\"")
    });
    let line = d
        .stderr
        .wait_for(Duration::from_secs(5), |l| l.contains("restart is needed"))
        .expect("restart-only change logged");
    assert!(line.contains("listen_tls"), "{line}");
    echo_again(&mut held);
    assert!(alice.exit(Duration::from_millis(10)).is_none());
    let Response::Status(st) = d.control(Request::Status) else {
        panic!()
    };
    assert_eq!(st.listen_tls, d.tls.to_string());
    // The daemon is still alive and drains normally.
    assert!(d
        .terminate(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
}
