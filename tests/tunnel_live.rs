//! Live re-decision beyond bundles: site consent granted and revoked
//! mid-stream, a logout period running out mid-stream (timer driven), a
//! session killed from the control socket; and the audit trail of closes.

#[path = "tunnel_support/harness.rs"]
mod harness;

use edgegate::control::{Request, Response};
use edgegate_proto::audit::{AuditEvent, CloseReason};
use edgegate_proto::DenyReason;
use harness::*;
use std::time::{Duration, Instant};

fn closes(d: &Daemon) -> Vec<(String, CloseReason, u64, u64)> {
    d.audit_events()
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::StreamClose {
                service,
                reason,
                bytes_up,
                bytes_down,
                ..
            } => Some((service, reason, bytes_up, bytes_down)),
            _ => None,
        })
        .collect()
}

#[test]
fn consent_gates_and_revoking_cuts_the_stream() {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("sven", "sven");

    let mut c = d.connect(&key, &ticket, false, &forwards(&["hmi"]));
    assert!(c.exit(Duration::from_secs(20)).is_some());
    assert_eq!(
        c.stderr.rest(Duration::from_millis(200)),
        ["denied: hmi: site-consent-required"]
    );

    let Response::Consent(info) = d.control(Request::ConsentGrant { secs: Some(3600) }) else {
        panic!()
    };
    assert!(info.active);
    let mut c = d.connect(&key, &ticket, false, &forwards(&["hmi"]));
    c.ready();
    let port = c.forwarded("hmi");
    assert!(c.stdout.seen.contains(&"allow hmi manage".to_string()));
    let s = echo_through(port);
    let revoked = Instant::now();
    d.control(Request::ConsentRevoke);
    wait_closed(s, Duration::from_secs(5)).expect("stream closed");
    println!(
        "consent revoke sent -> stream closed in {:?}",
        revoked.elapsed()
    );
    assert!(c
        .stderr
        .wait_for(Duration::from_secs(5), |l| l
            == "closed: hmi: site-consent-required")
        .is_some());
    let audited = closes(&d);
    assert!(
        audited.iter().any(|(s, r, up, down)| s == "hmi"
            && *r == CloseReason::Denied(DenyReason::SiteConsentRequired)
            && *up == 5
            && *down == 5),
        "{audited:?}"
    );
}

#[test]
fn logout_period_ending_mid_stream_closes_it() {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    // Dora's logout period is 22h; she authenticated 22h minus 3s ago.
    let (key, ticket) = d.client_with("dora", "dora", |t| t.auth_time = now() - 22 * 3600 + 3);
    let mut c = d.connect(&key, &ticket, false, &forwards(&["hmi"]));
    c.ready();
    let port = c.forwarded("hmi");
    let s = echo_through(port);
    let took = wait_closed(s, Duration::from_secs(10)).expect("closed by the timer");
    println!("stream closed by the logout timer after {took:?}");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(
        c.stderr
            .wait_for(Duration::from_secs(5), |l| l
                == "closed: hmi: session-expired")
            .is_some(),
        "{:?}",
        c.stderr.seen
    );
}

#[test]
fn ticket_expiring_mid_stream_closes_it_over_tls() {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client_with("alice2", "alice", |t| t.expires_at = now() + 3);
    let mut c = d.connect(&key, &ticket, true, &forwards(&["hmi"]));
    c.ready();
    let port = c.forwarded("hmi");
    let s = echo_through(port);
    assert!(wait_closed(s, Duration::from_secs(10)).is_some());
    assert!(
        c.stderr
            .wait_for(Duration::from_secs(5), |l| l
                == "closed: hmi: ticket-expired")
            .is_some(),
        "{:?}",
        c.stderr.seen
    );
}

#[test]
fn killing_a_session_ends_it() {
    let mut d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let (key, ticket) = d.client("alice", "alice");
    let mut c = d.connect(&key, &ticket, false, &forwards(&["hmi"]));
    c.ready();
    let port = c.forwarded("hmi");
    let s = echo_through(port);
    let Response::Sessions(sessions) = d.control(Request::Sessions) else {
        panic!()
    };
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].user, "alice");
    assert_eq!(sessions[0].streams.len(), 1);
    assert_eq!(sessions[0].streams[0].bytes_up, 5);
    assert_eq!(
        d.control(Request::Kill { id: sessions[0].id }),
        Response::Killed(true)
    );
    assert!(wait_closed(s, Duration::from_secs(5)).is_some());
    let status = c.exit(Duration::from_secs(5)).expect("client exits");
    assert!(!status.success());
    assert!(c
        .stderr
        .rest(Duration::from_millis(200))
        .contains(&"closed: session: session killed".to_string()));
    // The client closes first (on the notice); the daemon forgets the
    // session right after.
    let gone = wait_until(Duration::from_secs(2), || {
        match d.control(Request::Sessions) {
            Response::Sessions(sessions) => sessions.is_empty().then_some(()),
            other => panic!("{other:?}"),
        }
    });
    assert!(gone.is_some(), "{:?}", d.control(Request::Sessions));
    // The killed session's ticket does not get back in.
    let mut again = d.connect(&key, &ticket, true, &[]);
    assert!(again.exit(Duration::from_secs(20)).is_some());
    assert_eq!(
        again.stderr.rest(Duration::from_millis(200)),
        ["denied: ticket-revoked"]
    );
    assert!(closes(&d)
        .iter()
        .any(|(_, r, _, _)| *r == CloseReason::Killed));
    // Nor after a restart: the bar is kept in the store until the ticket
    // expires. Another ticket of the same user still gets in.
    d.restart();
    let mut again = d.connect(&key, &ticket, false, &[]);
    assert!(again.exit(Duration::from_secs(20)).is_some());
    assert_eq!(
        again.stderr.rest(Duration::from_millis(200)),
        ["denied: ticket-revoked"]
    );
    let (key2, ticket2) = d.client("alice-2", "alice");
    let mut fresh = d.connect(&key2, &ticket2, false, &[]);
    fresh.ready();
}

#[test]
fn consent_running_out_cuts_the_stream_and_is_audited() {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    d.control(Request::ConsentGrant { secs: Some(2) });
    let (key, ticket) = d.client("sven", "sven");
    let mut c = d.connect(&key, &ticket, true, &forwards(&["hmi"]));
    c.ready();
    let port = c.forwarded("hmi");
    let s = echo_through(port);
    let took = wait_closed(s, Duration::from_secs(10)).expect("closed at consent expiry");
    println!("consent window ended -> stream closed after {took:?}");
    assert!(c
        .stderr
        .wait_for(Duration::from_secs(5), |l| l
            == "closed: hmi: site-consent-required")
        .is_some());
    let audited = wait_until(Duration::from_secs(5), || {
        (d.audit_events().contains(&AuditEvent::ConsentExpired)).then_some(())
    });
    assert!(audited.is_some(), "{:?}", d.audit_events());
}
