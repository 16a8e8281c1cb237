//! End to end on loopback: real daemon, real `edgegate connect`, real HTTP
//! and echo backends. Allowed and denied services over QUIC and TLS,
//! session-level refusals, the read level.

#[path = "tunnel_support/harness.rs"]
mod harness;

use edgegate_proto::audit::{AuditEvent, CloseReason};
use harness::*;
use std::io::{Read, Write};
use std::time::Duration;

fn world() -> (Daemon, HttpBackend, std::net::SocketAddr) {
    let d = start_daemon();
    let http = http_backend();
    let echo = echo_backend();
    let b = bundle_bytes(
        &policy_text(http.addr, echo, "active"),
        DEVICE,
        1,
        &d.authority,
    );
    let f = d.write("bundle-1", &b);
    let out = d.push(&f, false);
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "accepted serial 1"
    );
    (d, http, echo)
}

fn fetch_through(tls: bool) {
    let (d, http, _) = world();
    let (key, ticket) = d.client("alice", "alice");
    let mut c = d.connect(&key, &ticket, tls, &forwards(&["web"]));
    c.ready();
    let port = c.forwarded("web");
    // DESIGN §6: one line per service, then what each listener bound, then `ready`.
    assert_eq!(
        c.stdout.seen,
        [
            "allow web manage",
            "allow info read",
            "allow hmi manage",
            "allow lan manage",
            format!("forward 127.0.0.1:{port} web").as_str(),
            "ready"
        ]
    );
    let page = http_get(port, "/");
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.ends_with("hello from the plc\n"), "{page}");
    // A second connection is a second stream of the same session.
    assert!(http_get(port, "/again").contains("hello from the plc"));
    assert_eq!(http.requests.lock().unwrap().len(), 2);
}

#[test]
fn http_fetch_over_quic() {
    fetch_through(false);
}

#[test]
fn http_fetch_over_tls() {
    fetch_through(true);
}

#[test]
fn denied_service_exits_before_listening() {
    let (d, _, _) = world();
    let (key, ticket) = d.client("bob", "bob");
    let mut c = d.connect(&key, &ticket, false, &forwards(&["web"]));
    let status = c.exit(Duration::from_secs(20)).expect("client exits");
    assert!(!status.success());
    let err = c.stderr.rest(Duration::from_millis(300));
    assert!(
        err.contains(&"denied: web: no-grant".to_string()),
        "{err:?}"
    );
    // It has exited, so this is all it printed: no listener, no `ready`.
    let out = c.stdout.rest(Duration::from_secs(5));
    assert!(
        !out.iter()
            .any(|l| l == "ready" || l.starts_with("forward ")),
        "{out:?}"
    );
    // The client closed its session before exiting: the daemon forgets it
    // at once, not after QUIC's 30-second idle timeout.
    assert!(
        sessions_gone(&d, Duration::from_secs(3)),
        "the denied client's session is still open"
    );
    // What the client was shown at session start is audited, per service.
    let shown: Vec<_> = d
        .audit_events()
        .into_iter()
        .filter_map(|e| match e {
            edgegate_proto::audit::AuditEvent::Decision {
                user: Some(u),
                service: Some(s),
                destination: None,
                outcome,
                ..
            } if u == "bob" => Some((s, outcome)),
            _ => None,
        })
        .collect();
    assert!(
        shown.contains(&(
            "web".to_string(),
            edgegate_proto::audit::Outcome::Deny(edgegate_proto::DenyReason::NoGrant)
        )),
        "{shown:?}"
    );
    assert_eq!(shown.len(), 4, "one per service of the device: {shown:?}");
}

/// Sessions the daemon holds.
fn live_sessions(d: &Daemon) -> usize {
    match d.control(edgegate::control::Request::Sessions) {
        edgegate::control::Response::Sessions(s) => s.len(),
        other => panic!("{other:?}"),
    }
}

/// Whether the daemon holds no session within `within`.
fn sessions_gone(d: &Daemon, within: Duration) -> bool {
    wait_until(within, || (live_sessions(d) == 0).then_some(())).is_some()
}

#[test]
fn a_client_stopped_with_sigterm_closes_its_session() {
    let (d, _, _) = world();
    let (key, ticket) = d.client("alice", "alice");
    for tls in [false, true] {
        let mut c = d.connect(&key, &ticket, tls, &[]);
        c.ready();
        // An idle session, over TLS too (its `Hold` connection), is listed.
        assert_eq!(live_sessions(&d), 1, "tls={tls}");
        let pid = nix::unistd::Pid::from_raw(c.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = c.exit(Duration::from_secs(5)).expect("client exits");
        assert!(status.success(), "tls={tls}: {status:?}");
        assert!(
            sessions_gone(&d, Duration::from_secs(3)),
            "tls={tls}: the daemon still holds the session"
        );
    }
}

#[test]
fn ticket_bound_to_another_key_is_refused() {
    let (d, _, _) = world();
    let (key, _) = d.client("mallory", "alice");
    let (_, alices_ticket) = d.client("alice", "alice");
    for tls in [false, true] {
        let mut c = d.connect(&key, &alices_ticket, tls, &[]);
        let status = c.exit(Duration::from_secs(20)).expect("client exits");
        assert!(!status.success());
        let err = c.stderr.rest(Duration::from_millis(300));
        assert_eq!(err, ["denied: key-mismatch"], "tls={tls}");
        // A ticket presented with another key is a stranger's: not one
        // chained record, one count per attempt (over TLS too) under the
        // source address (STYLE: nothing a stranger sends is worth a record).
        let chained = d
            .audit_events()
            .into_iter()
            .filter(|e| {
                matches!(
                    e,
                    edgegate_proto::audit::AuditEvent::Decision {
                        outcome: edgegate_proto::audit::Outcome::Deny(
                            edgegate_proto::DenyReason::KeyMismatch
                        ),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(chained, 0, "tls={tls}");
        let edgegate::control::Response::Strangers(counted) =
            d.control(edgegate::control::Request::Strangers { limit: 100 })
        else {
            panic!("no strangers answer")
        };
        let refused: u64 = counted
            .iter()
            .filter(|s| s.source == "127.0.0.1")
            .map(|s| s.refused_sessions)
            .sum();
        assert_eq!(refused, if tls { 2 } else { 1 }, "tls={tls}");
    }
}

#[test]
fn wrong_pinned_device_key_fails_the_handshake() {
    let (mut d, _, _) = world();
    let (key, ticket) = d.client("alice", "alice");
    d.device_key = public(&harness::key(42));
    let mut c = d.connect(&key, &ticket, false, &[]);
    let status = c.exit(Duration::from_secs(20)).expect("client exits");
    assert!(!status.success());
    let err = c.stderr.rest(Duration::from_millis(300)).join("\n");
    assert!(err.starts_with("error: connecting"), "{err}");
}

#[test]
fn read_level_passes_get_and_blocks_post() {
    for tls in [false, true] {
        read_level(tls);
    }
}

fn read_level(tls: bool) {
    let (d, http, _) = world();
    let (key, ticket) = d.client("bob", "bob");
    let mut c = d.connect(&key, &ticket, tls, &forwards(&["info"]));
    c.ready();
    let port = c.forwarded("info");
    let (ok, page) = curl(port, &["/"]);
    assert!(ok && page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.ends_with("hello from the plc\n"), "{page}");

    // A write gets a real answer that says why, not an empty reply.
    let (ok, answer) = curl(port, &["-X", "POST", "-d", "value=100", "/setpoint"]);
    assert!(ok, "curl failed: {answer}");
    assert_forbidden(&answer);
    // So does a GET that asks a framework to run it as a DELETE.
    let (ok, answer) = curl(port, &["-H", "X-HTTP-Method-Override: DELETE", "/recipe"]);
    assert!(ok, "curl failed: {answer}");
    assert_forbidden(&answer);
    let seen = http.requests.lock().unwrap().clone();
    assert_eq!(
        seen,
        ["GET / HTTP/1.1"],
        "the backend saw a refused request"
    );

    // Audited as before: two streams closed for the read level.
    let audited = wait_until(Duration::from_secs(5), || {
        let n = d
            .audit_events()
            .into_iter()
            .filter(|e| {
                matches!(e, AuditEvent::StreamClose { service, reason: CloseReason::Error(r), .. }
                    if service == "info" && r == "read-only-violation: forbidden-method")
            })
            .count();
        (n == 2).then_some(())
    });
    assert!(audited.is_some(), "{:?}", d.audit_events());
}

/// The daemon's `403` for a refused write, headers included.
fn assert_forbidden(answer: &str) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(head.contains("\r\nConnection: close"), "{answer}");
    let length = format!("\r\nContent-Length: {}", body.len());
    assert!(head.contains(&length), "{answer}");
    assert!(
        body.starts_with("403 Forbidden: this edgegate access is read-only."),
        "{answer}"
    );
}

/// The real curl against a local forward (never a proxy): whether it exited
/// 0, and what it printed, response headers included.
fn curl(port: u16, args: &[&str]) -> (bool, String) {
    let (path, opts) = args.split_last().expect("a path");
    let out = std::process::Command::new("curl")
        .args(["-sS", "-i", "--noproxy", "*", "--max-time", "20"])
        .args(opts)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn read_level_answers_after_what_passed_when_pipelined() {
    let (d, http, _) = world();
    let (key, ticket) = d.client("bob", "bob");
    let mut c = d.connect(&key, &ticket, false, &forwards(&["info"]));
    c.ready();
    let port = c.forwarded("info");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(
        b"GET /a HTTP/1.1\r\nHost: plc\r\n\r\n\
          DELETE /b HTTP/1.1\r\nHost: plc\r\n\r\n",
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let out = String::from_utf8_lossy(&out);
    // The backend's answer to the GET first, then the refusal, then the end.
    let (first, refusal) = out
        .split_once("hello from the plc\n")
        .expect("the GET's answer");
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert_forbidden(refusal);
    assert_eq!(*http.requests.lock().unwrap(), ["GET /a HTTP/1.1"]);
}

#[test]
fn read_level_websocket_close_is_answered_promptly() {
    for tls in [false, true] {
        read_level_websocket(tls);
    }
}

fn read_level_websocket(tls: bool) {
    let d = start_daemon();
    let (http, echo, ws) = (http_backend(), echo_backend(), ws_backend());
    // `live` in a category bob may only read.
    let policy = policy_text_ws(http.addr, echo, Some(ws), "active").replace(
        &format!(r#"target = "{ws}", category = "http""#),
        &format!(r#"target = "{ws}", category = "info""#),
    );
    let f = d.write("bundle-ws", &bundle_bytes(&policy, DEVICE, 1, &d.authority));
    assert!(d.push(&f, false).status.success());
    let (key, ticket) = d.client("bob", "bob");
    let mut c = d.connect(&key, &ticket, tls, &forwards(&["live"]));
    c.ready();
    assert!(
        c.stdout.seen.iter().any(|l| l == "allow live read"),
        "{:?}",
        c.stdout.seen
    );
    let (mut s, head) = ws_upgrade(c.forwarded("live"), Duration::from_secs(10));
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", head.escape_ascii());
    let mask = [1, 2, 3, 4];
    // A text message is dropped at read level; an empty ping is answered.
    s.write_all(&[[0x81, 0x82].as_slice(), &mask, &[b'h' ^ 1, b'i' ^ 2]].concat())
        .unwrap();
    s.write_all(&[[0x89, 0x80].as_slice(), &mask].concat())
        .unwrap();
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(pong, [0x8a, 0], "tls={tls}");
    // An empty Close is the last thing the client sends: it must pass
    // without a further byte, and the server's Close comes back.
    s.write_all(&[[0x88, 0x80].as_slice(), &mask].concat())
        .unwrap();
    let mut close = [0u8; 2];
    s.read_exact(&mut close).unwrap();
    assert_eq!(close, [0x88, 0], "tls={tls}");
    assert!(
        wait_closed(s, Duration::from_secs(10)).is_some(),
        "tls={tls}: the stream stayed open after the close handshake"
    );
}

#[test]
fn vnc_stand_in_echoes_over_tls() {
    let (d, _, _) = world();
    let (key, ticket) = d.client("alice", "alice");
    let mut c = d.connect(
        &key,
        &ticket,
        true,
        &["-L".into(), "127.0.0.1:0=hmi".into()],
    );
    c.ready();
    let port = c.forwarded("hmi");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let payload = vec![7u8; 200_000];
    s.write_all(&payload).unwrap();
    let mut back = vec![0u8; payload.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, payload);
}

#[test]
fn session_level_refusals_name_their_reason() {
    let d = start_daemon();
    // Before any bundle: fail closed.
    let (key, ticket) = d.client("early", "alice");
    let mut c = d.connect(&key, &ticket, false, &[]);
    assert!(c.exit(Duration::from_secs(20)).is_some());
    assert_eq!(
        c.stderr.rest(Duration::from_millis(200)),
        ["denied: no-valid-bundle"]
    );

    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    // wrong-device says, on the next line, which device the ticket names
    // and which this gateway is (the client knows only the former).
    let (key, ticket) = d.client_with("wd", "alice", |t| t.device = "router-9".into());
    for tls in [false, true] {
        let mut c = d.connect(&key, &ticket, tls, &[]);
        let status = c.exit(Duration::from_secs(20)).expect("client exits");
        assert!(!status.success());
        assert_eq!(
            c.stderr.rest(Duration::from_millis(200)),
            [
                "denied: wrong-device",
                "the ticket is for device \"router-9\"; this gateway is device \"router-1\""
            ],
            "tls={tls}"
        );
    }
    let cases: Vec<(&str, (std::path::PathBuf, std::path::PathBuf), &str)> = vec![
        (
            "expired",
            d.client_with("ex", "alice", |t| t.expires_at = now() - 5),
            "denied: ticket-expired",
        ),
        (
            "future",
            d.client_with("fu", "alice", |t| t.issued_at = now() + 3600),
            "denied: ticket-expired",
        ),
        (
            "unknown user",
            d.client("nobody", "zed"),
            "denied: unknown-user",
        ),
        (
            "logout over",
            d.client_with("lo", "dora", |t| t.auth_time = now() - 23 * 3600),
            "denied: session-expired",
        ),
        (
            "revoked",
            d.client_with("rv", "alice", |t| {
                t.id = 0x00112233445566778899aabbccddeeffu128.to_be_bytes()
            }),
            "denied: ticket-revoked",
        ),
        ("no 2fa", d.client("mira", "mira"), "denied: mfa-required"),
    ];
    for (what, (key, ticket), expect) in cases {
        for tls in [false, true] {
            let mut c = d.connect(&key, &ticket, tls, &[]);
            let status = c.exit(Duration::from_secs(20)).expect("client exits");
            assert!(!status.success(), "{what}");
            assert_eq!(
                c.stderr.rest(Duration::from_millis(200)),
                [expect],
                "{what} tls={tls}"
            );
        }
    }
    // A ticket signed by an untrusted key.
    let k = harness::key(60);
    let kp = d.path("untrusted.key");
    edgegate::keyfile::write_new(&kp, &k).unwrap();
    let forged = ticket_bytes("alice", DEVICE, &public(&k), &harness::key(61));
    let tp = d.write("untrusted.ticket", &forged);
    // bad-ticket says what is wrong: an untrusted signer, a signature that
    // does not verify (the body altered), or bytes that are no ticket.
    let mut altered = ticket_bytes("alice", DEVICE, &public(&k), &d.authority);
    let at = altered
        .windows(5)
        .position(|w| w == b"alice")
        .expect("the user id is in the body");
    altered[at + 4] = b'x';
    let altered = d.write("altered.ticket", &altered);
    let garbage = d.write("garbage.ticket", b"not a ticket");
    for (ticket, detail) in [
        (&tp, "signer not trusted: signed by 0 trusted key(s), 1 required; 1 signature(s) by keys not trusted here"),
        (&altered, "bad signature: signed by 0 trusted key(s), 1 required; 1 signature(s) by a trusted key do not verify (altered or damaged bytes)"),
        (&garbage, "malformed: envelope: "),
    ] {
        for tls in [false, true] {
            let mut c = d.connect(&kp, ticket, tls, &[]);
            assert!(c.exit(Duration::from_secs(20)).is_some());
            let err = c.stderr.rest(Duration::from_millis(200));
            assert_eq!(err.len(), 2, "{err:?}");
            assert_eq!(err[0], "denied: bad-ticket");
            assert!(err[1].starts_with(detail), "{err:?}, want {detail}");
            println!("{} tls={tls}: {}", ticket.display(), err[1]);
        }
    }
    // With 2FA, Mira is in; the daemon is still serving after every refusal.
    let (key, ticket) = d.client_with("mira2", "mira", |t| t.mfa = true);
    let mut c = d.connect(&key, &ticket, false, &[]);
    c.ready();
    assert_eq!(c.stdout.seen[0], "allow web manage");
}
