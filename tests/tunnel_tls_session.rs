//! A TLS session is one TCP connection, however many streams it carries
//! (they are multiplexed over it): the daemon holds exactly one socket for
//! it, `sessions` lists it once, and `sessions kill ID` closes every stream
//! of it at once. A session with no stream lives on that same connection:
//! listed and killable. (The idle rule, the same on both transports, is
//! tested on paused time in `src/gateway/tests/session.rs`.)

#[path = "tunnel_support/harness.rs"]
mod harness;

use edgegate::control::{Request, Response};
use edgegate_proto::audit::{AuditEvent, CloseReason};
use harness::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Wait until the audit log holds a session close, and return the reasons.
fn session_closes(d: &Daemon) -> Vec<CloseReason> {
    wait_until(Duration::from_secs(5), || {
        let closes: Vec<CloseReason> = d
            .audit_events()
            .into_iter()
            .filter_map(|e| match e {
                AuditEvent::SessionClose { reason, .. } => Some(reason),
                _ => None,
            })
            .collect();
        (!closes.is_empty()).then_some(closes)
    })
    .unwrap_or_default()
}

/// The daemon's established TCP connections accepted on `port`: its own
/// sockets (`/proc/PID/fd`) matched against the kernel's table.
fn daemon_connections_on(pid: u32, port: u16) -> usize {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f[1].rsplit(':').next().unwrap();
            u16::from_str_radix(local_port, 16).unwrap() == port
                && f[3] == "01" // ESTABLISHED
                && inodes.contains(f[9])
        })
        .count()
}

#[test]
fn a_tls_session_is_one_connection_and_a_kill_closes_all_its_streams() {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let mut c = d.connect(&key, &ticket, true, &forwards(&["hmi"]));
    c.ready();
    let port = c.forwarded("hmi");
    let streams: Vec<_> = (0..4).map(|_| echo_through(port)).collect();
    let Response::Sessions(sessions) = d.control(Request::Sessions) else {
        panic!()
    };
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].streams.len(), 4);
    assert_eq!(
        daemon_connections_on(d.child.id(), d.tls.port()),
        1,
        "four streams, one TCP connection"
    );
    let killed = Instant::now();
    assert_eq!(
        d.control(Request::Kill { id: sessions[0].id }),
        Response::Killed(true)
    );
    for s in streams {
        let t = wait_closed(s, Duration::from_secs(5)).expect("stream closed");
        assert!(t < Duration::from_secs(1), "closed after {t:?}");
    }
    println!("tls kill -> 4 streams closed within {:?}", killed.elapsed());
    let status = c.exit(Duration::from_secs(5)).expect("client exits");
    assert!(!status.success());
    let err = c.stderr.rest(Duration::from_millis(200));
    assert!(
        err.contains(&"closed: session: session killed".to_string()),
        "{err:?}"
    );
    assert!(session_closes(&d).contains(&CloseReason::Killed));
}

#[test]
fn a_tls_session_without_streams_is_listed_and_killed() {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let mut c = d.connect(&key, &ticket, true, &[]);
    // `ready` is printed after the daemon's Welcome: the session is live.
    c.ready();
    let Response::Sessions(sessions) = d.control(Request::Sessions) else {
        panic!()
    };
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(sessions[0].streams.is_empty());
    assert_eq!(daemon_connections_on(d.child.id(), d.tls.port()), 1);
    let killed = Instant::now();
    assert_eq!(
        d.control(Request::Kill { id: sessions[0].id }),
        Response::Killed(true)
    );
    let status = c
        .exit(Duration::from_secs(5))
        .expect("client exits on kill");
    println!(
        "idle tls session: kill -> client exited in {:?}",
        killed.elapsed()
    );
    assert!(killed.elapsed() < Duration::from_secs(1));
    assert!(!status.success());
    let err = c.stderr.rest(Duration::from_millis(200));
    assert_eq!(err, ["closed: session: session killed"]);
    assert_eq!(session_closes(&d), [CloseReason::Killed]);
}
