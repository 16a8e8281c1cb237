//! Session-level revocation: a session whose own decision (DESIGN §2 steps
//! 1–4) turns to deny is closed as a whole, even with no stream open; the
//! client prints `closed: session: REASON` and exits non-zero; the close is
//! audited with the reason.

#[path = "tunnel_support/harness.rs"]
mod harness;

use edgegate::control::{Request, Response};
use edgegate_proto::audit::{AuditEvent, CloseReason};
use edgegate_proto::DenyReason;
use harness::*;
use std::time::{Duration, Instant};

/// The reasons of every audited session close for `user`.
fn session_closes(d: &Daemon, user: &str) -> Vec<CloseReason> {
    d.audit_events()
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::SessionClose {
                user: u, reason, ..
            } if u == user => Some(reason),
            _ => None,
        })
        .collect()
}

fn wait_for_close(d: &Daemon, user: &str, want: CloseReason) {
    let seen = wait_until(Duration::from_secs(5), || {
        session_closes(d, user).contains(&want).then_some(())
    });
    if seen.is_none() {
        panic!("no SessionClose {want:?}: {:?}", session_closes(d, user));
    }
}

fn inactive_user_closes_session(tls: bool) {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let mut c = d.connect(&key, &ticket, tls, &forwards(&["hmi"]));
    c.ready();
    // No stream at all: over QUIC the connection is the session, over TLS
    // the connection the client sent `Hold` on. Either way it is listed.
    let Response::Sessions(live) = d.control(Request::Sessions) else {
        panic!()
    };
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].user, "alice");
    assert!(live[0].streams.is_empty(), "{live:?}");
    let out = d.revoke_alice(http.addr, echo);
    assert!(out.status.success(), "{out:?}");
    let acked = Instant::now();
    let status = c
        .exit(Duration::from_secs(5))
        .expect("client exits when its session is closed");
    println!(
        "tls={tls}: push acknowledged → client exited in {:?}",
        acked.elapsed()
    );
    assert!(!status.success());
    let err = c.stderr.rest(Duration::from_millis(200));
    assert!(
        err.contains(&"closed: session: user-inactive".to_string()),
        "{err:?}"
    );
    wait_for_close(&d, "alice", CloseReason::Denied(DenyReason::UserInactive));
    let Response::Sessions(live) = d.control(Request::Sessions) else {
        panic!()
    };
    assert!(live.is_empty(), "{live:?}");
    // The log tells it in order: the bundle, then what it closed.
    let events = d.audit_events();
    let at = |f: &dyn Fn(&AuditEvent) -> bool| events.iter().position(f).unwrap();
    let accepted = at(&|e| matches!(e, AuditEvent::BundleAccepted { serial: 2, .. }));
    let closed = at(&|e| {
        matches!(
            e,
            AuditEvent::SessionClose {
                reason: CloseReason::Denied(_),
                ..
            }
        )
    });
    assert!(accepted < closed, "{events:?}");
}

#[test]
fn quic_session_without_streams_is_closed_when_user_turns_inactive() {
    inactive_user_closes_session(false);
}

#[test]
fn tls_session_is_closed_when_user_turns_inactive() {
    inactive_user_closes_session(true);
}

#[test]
fn session_is_closed_when_the_logout_period_ends() {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    // Dora's logout period is 22h; she authenticated 22h minus 3 s ago.
    let (key, ticket) = d.client_with("dora", "dora", |t| {
        t.auth_time = now() - 22 * 3600 + 3;
    });
    let mut c = d.connect(&key, &ticket, false, &[]);
    c.ready();
    let started = Instant::now();
    let status = c
        .exit(Duration::from_secs(10))
        .expect("client exits when the logout period ends");
    println!(
        "logout period ended; session closed after {:?}",
        started.elapsed()
    );
    assert!(!status.success());
    let err = c.stderr.rest(Duration::from_millis(200));
    assert_eq!(err, ["closed: session: session-expired"]);
    wait_for_close(&d, "dora", CloseReason::Denied(DenyReason::SessionExpired));
}

/// One SOCKS5 CONNECT to the echo backend (the vpn service `lan`): a
/// line there and back, then closed by this side.
fn socks_echo_once(proxy: u16, echo: std::net::SocketAddr) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let std::net::SocketAddr::V4(v4) = echo else {
        panic!("v4 only")
    };
    let mut req = vec![5, 1, 0, 5, 1, 0, 1];
    req.extend_from_slice(&v4.ip().octets());
    req.extend_from_slice(&v4.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 12];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[3], 0, "{reply:?}");
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
}

/// Streams that already ended are not reported when the session is later
/// cut; one still open is, once.
fn only_open_streams_are_reported_cut(tls: bool) {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let mut args = forwards(&["web", "hmi"]);
    args.extend(["--socks".into(), "127.0.0.1:0".into()]);
    let mut c = d.connect(&key, &ticket, tls, &args);
    c.ready();
    let (web, hmi, socks) = (c.forwarded("web"), c.forwarded("hmi"), c.socks());
    assert!(http_get(web, "/").contains("hello from the plc"));
    drop(echo_through(hmi));
    socks_echo_once(socks, echo);
    // Both finished streams are gone on the daemon's side too.
    let gone = wait_until(Duration::from_secs(5), || {
        let Response::Sessions(live) = d.control(Request::Sessions) else {
            panic!()
        };
        (live.len() == 1 && live[0].streams.is_empty()).then_some(())
    });
    assert!(gone.is_some(), "finished streams still listed");
    let open = echo_through(hmi);
    assert!(d.revoke_alice(http.addr, echo).status.success());
    assert!(wait_closed(open, Duration::from_secs(5)).is_some());
    let status = c.exit(Duration::from_secs(5)).expect("client exits");
    assert!(!status.success());
    assert_eq!(
        c.stderr.rest(Duration::from_millis(200)),
        [
            "closed: hmi: user-inactive",
            "closed: session: user-inactive"
        ],
        "tls={tls}"
    );
}

#[test]
fn quic_finished_streams_are_not_reported_cut() {
    only_open_streams_are_reported_cut(false);
}

#[test]
fn tls_finished_streams_are_not_reported_cut() {
    only_open_streams_are_reported_cut(true);
}
