//! Bundle push over the tunnel port: every rejection names its reason and
//! leaves the running policy unchanged; the same bytes again are a no-op.

#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::*;
use std::time::Duration;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

#[test]
fn rejected_pushes_leave_the_policy_unchanged() {
    let d = start_daemon();
    let http = http_backend();
    let echo = echo_backend();
    let policy = policy_text(http.addr, echo, "active");
    let b5 = d.write("b5", &bundle_bytes(&policy, DEVICE, 5, &d.authority));
    let out = d.push(&b5, true);
    assert_eq!(stdout(&out), "accepted serial 5", "{}", stderr(&out));
    let out = d.push(&b5, false);
    assert_eq!(stdout(&out), "unchanged serial 5", "{}", stderr(&out));

    let inactive = policy_text(http.addr, echo, "inactive");
    let older = d.write("older", &bundle_bytes(&inactive, DEVICE, 4, &d.authority));
    let mut tampered_bytes = bundle_bytes(&inactive, DEVICE, 6, &d.authority);
    let at = tampered_bytes.len() / 2;
    tampered_bytes[at] ^= 1;
    let tampered = d.write("tampered", &tampered_bytes);
    let other_policy = inactive.replace(DEVICE, "router-2");
    let other = d.write(
        "other",
        &bundle_bytes(&other_policy, "router-2", 7, &d.authority),
    );
    let untrusted = d.write("untrusted", &bundle_bytes(&inactive, DEVICE, 8, &key(77)));
    let garbage = d.write("garbage", b"not a bundle at all");
    for (file, code) in [
        (&older, "rejected: rollback: serial 4 is not greater than stored serial 5"),
        (&tampered, "rejected: bad-signature: signed by 0 trusted key(s), 1 required; 1 signature(s) by a trusted key do not verify"),
        (&other, "rejected: wrong-device: bundle is for device \"router-2\""),
        (&untrusted, "rejected: bad-signature: signed by 0 trusted key(s), 1 required; 1 signature(s) by keys not trusted here"),
        (&garbage, "rejected: malformed: "),
    ] {
        for tls in [false, true] {
            let out = d.push(file, tls);
            assert!(!out.status.success(), "{} accepted", file.display());
            let err = stderr(&out);
            assert!(err.starts_with(&format!("error: {code}")), "{err}\nwant: {code}");
            println!(
                "{} (tls={tls}): {err}",
                file.file_name().unwrap().to_string_lossy()
            );
        }
    }

    // Alice is still active: the running policy is serial 5.
    let (k, t) = d.client("alice", "alice");
    let mut c = d.connect(&k, &t, false, &forwards(&["web"]));
    c.ready();
    let port = c.forwarded("web");
    assert!(http_get(port, "/").contains("hello from the plc"));
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_edgegate"))
        .args(["bundle", "push"])
        .arg(&b5)
        .args([
            "--gateway",
            &d.quic.to_string(),
            "--gateway-key",
            &d.device_key.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&status), "unchanged serial 5");
    assert!(c.exit(Duration::from_millis(100)).is_none());
}

#[test]
fn control_socket_push_uses_the_same_accept_path() {
    use edgegate::control::{Request, Response};
    use edgegate_proto::audit::AuditEvent;
    use edgegate_proto::control::PushResult;
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    let policy = policy_text(http.addr, echo, "active");
    let bytes = bundle_bytes(&policy, DEVICE, 3, &d.authority);
    assert_eq!(
        d.control(Request::PushBundle {
            bytes: bytes.clone()
        }),
        Response::Push(PushResult::Accepted { serial: 3 })
    );
    assert_eq!(
        d.control(Request::PushBundle { bytes }),
        Response::Push(PushResult::Unchanged { serial: 3 })
    );
    let older = bundle_bytes(&policy, DEVICE, 2, &d.authority);
    let Response::Push(PushResult::Rejected { code, .. }) =
        d.control(Request::PushBundle { bytes: older })
    else {
        panic!("older serial accepted")
    };
    assert_eq!(code, "rollback");
    let Response::Audit(records) = d.control(Request::Audit {
        since: None,
        limit: 100,
    }) else {
        panic!()
    };
    let events: Vec<&AuditEvent> = records.iter().map(|r| &r.event).collect();
    assert!(events
        .iter()
        .any(|e| matches!(e, AuditEvent::BundleAccepted { serial: 3, .. })));
    assert!(events
        .iter()
        .any(|e| matches!(e, AuditEvent::BundleRejected { code, .. } if code == "rollback")));
}

/// `edgegate bundle push` answers in the same words whether it goes over
/// the control socket or to `--gateway` (DESIGN §8): `accepted serial N`,
/// `unchanged serial N`, `rejected: REASON`.
#[test]
fn push_answers_read_the_same_over_the_socket_and_the_gateway() {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    let policy = policy_text(http.addr, echo, "active");
    let b3 = d.write("b3", &bundle_bytes(&policy, DEVICE, 3, &d.authority));
    let b4 = d.write("b4", &bundle_bytes(&policy, DEVICE, 4, &d.authority));
    let b2 = d.write("b2", &bundle_bytes(&policy, DEVICE, 2, &d.authority));
    let over_socket = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_edgegate"))
            .args(["bundle", "push"])
            .arg(file)
            .arg("--socket")
            .arg(&d.control)
            .output()
            .unwrap()
    };
    let out = over_socket(&b3);
    assert_eq!(stdout(&out), "accepted serial 3", "{}", stderr(&out));
    assert_eq!(stdout(&over_socket(&b3)), "unchanged serial 3");
    let out = d.push(&b4, false);
    assert_eq!(stdout(&out), "accepted serial 4", "{}", stderr(&out));
    assert_eq!(stdout(&d.push(&b4, true)), "unchanged serial 4");
    for out in [over_socket(&b2), d.push(&b2, false)] {
        assert!(!out.status.success());
        assert_eq!(
            stderr(&out),
            "error: rejected: rollback: serial 2 is not greater than stored serial 4"
        );
    }
}
