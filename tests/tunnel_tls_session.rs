//! A TLS session is all of its connections: `sessions kill ID` closes every
//! one of them at once with `SessionClosed{killed}`, and a session whose
//! streams move no byte for `idle_timeout` is closed as idle. A session with
//! no stream lives on its `Hold` connection: listed, killable, idle-closed.

#[path = "tunnel_support/harness.rs"]
mod harness;

use edgegate::control::{Request, Response};
use edgegate_proto::audit::{AuditEvent, CloseReason};
use harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn session_closes(d: &Daemon) -> Vec<CloseReason> {
    d.audit_events()
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::SessionClose { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

fn echo_again(s: &mut TcpStream) {
    s.write_all(b"again").unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"again");
}

#[test]
fn kill_closes_every_tls_connection_of_the_session_at_once() {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let port = free_port();
    let mut c = d.connect(&key, &ticket, true, &["-L".into(), format!("{port}=hmi")]);
    c.ready();
    let (a, b) = (echo_through(port), echo_through(port));
    let Response::Sessions(sessions) = d.control(Request::Sessions) else {
        panic!()
    };
    assert_eq!(sessions.len(), 1, "two TLS connections, one session");
    assert_eq!(sessions[0].streams.len(), 2);
    let killed = Instant::now();
    assert_eq!(
        d.control(Request::Kill { id: sessions[0].id }),
        Response::Killed(true)
    );
    let ta = wait_closed(a, Duration::from_secs(5)).expect("first stream closed");
    let tb = wait_closed(b, Duration::from_secs(5)).expect("second stream closed");
    println!(
        "tls kill -> streams closed in {:?} / {:?} (from kill sent: {:?})",
        ta,
        tb,
        killed.elapsed()
    );
    assert!(ta < Duration::from_secs(1) && tb < Duration::from_secs(1));
    let status = c.exit(Duration::from_secs(5)).expect("client exits");
    assert!(!status.success());
    let err = c.stderr.rest(Duration::from_millis(200));
    assert!(
        err.contains(&"closed: session: session killed".to_string()),
        "{err:?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(session_closes(&d).contains(&CloseReason::Killed));
}

#[test]
fn tls_session_without_traffic_is_closed_as_idle() {
    let d = start_daemon_with("[limits]\nidle_timeout = \"2s\"\n");
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let port = free_port();
    let mut c = d.connect(&key, &ticket, true, &["-L".into(), format!("{port}=hmi")]);
    c.ready();
    let mut s = echo_through(port);
    // Traffic keeps it alive past the timeout...
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        echo_again(&mut s);
    }
    assert!(c.exit(Duration::from_millis(10)).is_none(), "closed early");
    // ...an open stream that moves nothing does not.
    let quiet = Instant::now();
    let status = c
        .exit(Duration::from_secs(8))
        .expect("idle TLS session closed");
    println!(
        "tls idle_timeout 2s: closed {:?} after the last byte",
        quiet.elapsed()
    );
    assert!(quiet.elapsed() >= Duration::from_millis(1500));
    assert!(!status.success());
    let err = c.stderr.rest(Duration::from_millis(200));
    assert!(
        err.contains(&"closed: session: idle timeout".to_string()),
        "{err:?}"
    );
    assert!(wait_closed(s, Duration::from_secs(2)).is_some());
    std::thread::sleep(Duration::from_millis(200));
    assert!(session_closes(&d).contains(&CloseReason::IdleTimeout));
}

#[test]
fn idle_tls_session_is_listed_and_killed() {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let mut c = d.connect(&key, &ticket, true, &[]);
    c.ready();
    // Longer than the spare connection lives (5 s on the client) is not
    // needed to show it: the holding connection alone keeps the session.
    std::thread::sleep(Duration::from_millis(300));
    let Response::Sessions(sessions) = d.control(Request::Sessions) else {
        panic!()
    };
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(sessions[0].streams.is_empty());
    let killed = Instant::now();
    assert_eq!(
        d.control(Request::Kill { id: sessions[0].id }),
        Response::Killed(true)
    );
    let status = c
        .exit(Duration::from_secs(5))
        .expect("client exits on kill");
    println!(
        "idle tls session: kill → client exited in {:?}",
        killed.elapsed()
    );
    assert!(killed.elapsed() < Duration::from_secs(1));
    assert!(!status.success());
    let err = c.stderr.rest(Duration::from_millis(200));
    assert_eq!(err, ["closed: session: session killed"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(session_closes(&d), [CloseReason::Killed]);
}

#[test]
fn idle_tls_session_outlives_its_spare_and_then_times_out() {
    // first_frame_timeout 1s: the daemon drops the unused spare connection
    // after a second; the session must live on its holding connection
    // until idle_timeout.
    let d = start_daemon_with("[limits]\nidle_timeout = \"3s\"\nfirst_frame_timeout = \"1s\"\n");
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let port = free_port();
    let mut c = d.connect(&key, &ticket, true, &["-L".into(), format!("{port}=hmi")]);
    c.ready();
    let opened = Instant::now();
    std::thread::sleep(Duration::from_millis(2000));
    let Response::Sessions(sessions) = d.control(Request::Sessions) else {
        panic!()
    };
    assert_eq!(
        sessions.len(),
        1,
        "session gone with its spare: {sessions:?}"
    );
    // A stream after the spare is gone still works (a fresh connection).
    let mut s = echo_through(port);
    echo_again(&mut s);
    drop(s);
    let status = c
        .exit(Duration::from_secs(8))
        .expect("idle TLS session closed");
    println!(
        "tls idle session (no stream) closed after {:?}",
        opened.elapsed()
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(4500),
        "closed early"
    );
    assert!(!status.success());
    let err = c.stderr.rest(Duration::from_millis(200));
    assert_eq!(err, ["closed: session: idle timeout"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(session_closes(&d), [CloseReason::IdleTimeout]);
}
