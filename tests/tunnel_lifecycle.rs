//! The daemon's life: restart keeps the bundle and the audit chain; SIGTERM
//! ends live sessions and exits cleanly; an idle session is closed.

#[path = "tunnel_support/harness.rs"]
mod harness;

use edgegate::control::{Request, Response};
use harness::*;
use std::time::{Duration, Instant};

#[test]
fn restart_keeps_bundle_and_audit() {
    let mut d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let Response::Status(before) = d.control(Request::Status) else {
        panic!()
    };
    assert_eq!(before.bundle.as_ref().map(|b| b.serial), Some(1));

    d.restart();
    let Response::Status(after) = d.control(Request::Status) else {
        panic!()
    };
    assert_eq!(after.bundle.map(|b| b.serial), Some(1));
    assert_eq!(after.listen_quic, d.quic.to_string());
    let Response::AuditVerify(Ok(report)) = d.control(Request::AuditVerify) else {
        panic!("audit verifies")
    };
    assert!(report.records >= 4, "{report:?}");

    // Sessions work on the restored bundle, without a new push.
    let (key, ticket) = d.client("alice", "alice");
    let mut c = d.connect(&key, &ticket, false, &forwards(&["web"]));
    c.ready();
    let port = c.forwarded("web");
    assert!(http_get(port, "/").contains("hello from the plc"));
    drop(c);

    // Someone with access to the stopped router's disk rewrites record 2;
    // the restarted daemon's `edgegate audit verify` says so.
    assert!(d.terminate(Duration::from_secs(15)).is_some());
    {
        use edgegate_proto::audit::AuditEntry;
        let trust = edgegate_proto::TrustPolicy::new(vec![public(&d.authority)], 1).unwrap();
        let opened =
            edgegate::store::Store::open(&d.path("state"), &trust, DEVICE, |_| Ok(())).unwrap();
        let tree = opened.store.db().open_tree("audit").unwrap();
        let key = 2u64.to_be_bytes();
        let mut rec = AuditEntry::decode(&tree.get(key).unwrap().unwrap())
            .unwrap()
            .into_record();
        rec.time += 3600;
        tree.insert(key, AuditEntry::V1(rec).encode()).unwrap();
        opened.store.db().flush().unwrap();
    }
    d.start_again();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgegate"))
        .args(["audit", "verify", "--socket"])
        .arg(&d.control)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    println!("audit verify after an edit: {err}");
    assert!(!out.status.success(), "an edited log must not verify");
    assert!(
        err.contains("record 3"),
        "names the first record whose link breaks: {err}"
    );
}

#[test]
fn sigterm_ends_sessions_and_exits_cleanly() {
    let mut d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let mut c = d.connect(&key, &ticket, false, &forwards(&["hmi"]));
    c.ready();
    let port = c.forwarded("hmi");
    let s = echo_through(port);
    // And an idle TLS session (no stream: only its holding connection).
    let (key2, ticket2) = d.client("alice-tls", "alice");
    let mut idle = d.connect(&key2, &ticket2, true, &[]);
    idle.ready();
    let started = Instant::now();
    let status = d.terminate(Duration::from_secs(15)).expect("daemon exits");
    println!("daemon drained and exited in {:?}", started.elapsed());
    assert!(status.success(), "{status:?}");
    assert!(wait_closed(s, Duration::from_secs(5)).is_some());
    for c in [&mut c, &mut idle] {
        assert!(c.exit(Duration::from_secs(5)).is_some());
        let err = c.stderr.rest(Duration::from_millis(200));
        assert!(
            err.contains(&"closed: session: gateway shutting down".to_string()),
            "{err:?}"
        );
    }
}

/// The idle rule as the engineer sees it, over both transports: a session
/// with no stream open ends with `closed: session: idle timeout`. (That an
/// open stream keeps a session, and the timing to the second, are tested
/// on paused time in `src/gateway/tests/session.rs`.)
#[test]
fn idle_session_is_closed() {
    let d = start_daemon_with("[limits]\nidle_timeout = \"1s\"\n");
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    for tls in [false, true] {
        let mut c = d.connect(&key, &ticket, tls, &forwards(&["web"]));
        c.ready();
        let status = c.exit(Duration::from_secs(6)).expect("idle session closed");
        assert!(!status.success());
        let err = c.stderr.rest(Duration::from_millis(200));
        assert_eq!(err, ["closed: session: idle timeout"], "tls {tls}");
    }
}

#[test]
fn session_and_stream_limits_say_limit_exceeded() {
    let d = start_daemon_with("[limits]\nmax_sessions_per_user = 1\nmax_streams_per_session = 1\n");
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    for tls in [false, true] {
        // One user per transport: a killed client's QUIC session holds its
        // slot until the dead-peer timeout.
        let user = if tls { "dora" } else { "alice" };
        let (key, ticket) = d.client(&format!("{user}-{tls}"), user);
        let mut first = d.connect(&key, &ticket, tls, &forwards(&["hmi"]));
        first.ready();
        let port = first.forwarded("hmi");
        let held = echo_through(port);
        if !tls {
            // A second session of the same user.
            let mut second = d.connect(&key, &ticket, tls, &[]);
            assert!(second.exit(Duration::from_secs(20)).is_some());
            assert_eq!(
                second.stderr.rest(Duration::from_millis(200)),
                ["denied: limit-exceeded"]
            );
        }
        // A second stream in the same session.
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        assert!(matches!(
            std::io::Read::read(&mut s, &mut buf),
            Ok(0) | Err(_)
        ));
        assert!(
            first
                .stderr
                .wait_for(Duration::from_secs(5), |l| l
                    == "denied: hmi: limit-exceeded")
                .is_some(),
            "tls={tls} {:?}",
            first.stderr.seen
        );
        drop(held);
        // Stopped (not killed: a killed QUIC client's session would hold
        // on until the dead-peer timeout), the client closes its session;
        // the next round starts once the daemon has let it go.
        let pid = nix::unistd::Pid::from_raw(first.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        assert!(first.exit(Duration::from_secs(10)).is_some());
        let gone = wait_until(Duration::from_secs(10), || {
            match d.control(Request::Sessions) {
                Response::Sessions(s) => s.is_empty().then_some(()),
                other => panic!("{other:?}"),
            }
        });
        assert!(gone.is_some(), "tls={tls}: session still held");
    }
}

#[test]
fn device_key_command_prints_the_pinned_key() {
    let d = start_daemon();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgegate"))
        .args(["device-key", "--config"])
        .arg(d.path("edgegated.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        d.device_key.to_string()
    );
}
