//! The one authorization and the one re-decide loop, on paused tokio time
//! with the gateway's clock following it: expiry, logout period, consent
//! deadlines, kills, disconnects, trust reloads, scope, and permits that
//! change under a live stream. Each stream here is a real `serve_stream`
//! (over an in-memory pipe, to a real backend socket) or its guard.

use super::*;
use crate::gateway::authorize::Permit;
use crate::gateway::redecide::GuardEnd;
use crate::gateway::registry::Session;
use crate::gateway::stream::OpenRequest;
use crate::transport::{expect_frame, PipeReader, PipeWriter};
use edgegate_proto::audit::{AuditEvent, CloseReason, Outcome};
use edgegate_proto::bundle::{seal, Category, Grant, Role, Scope, Service};
use edgegate_proto::frame::{Frame, SessionEnd, MAX_FRAME};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// The wall time the paused tests start at.
const T0: u64 = 1_900_000_000;

/// A gateway on paused time (wall clock `T0` at the start) holding `b`.
async fn paused_gateway(dir: &std::path::Path, limits: &str, b: Vec<u8>) -> Arc<Gateway> {
    let gw = gateway_on(dir, limits, Clock::following_tokio(T0)).await;
    assert!(matches!(
        gw.push_bundle(b).await,
        PushResult::Accepted { .. }
    ));
    gw
}

/// A session of bob (client key seed 3) with a ticket issued at `T0 - 10`.
fn session_of(gw: &Gateway, edit: impl FnOnce(&mut Ticket)) -> Arc<Session> {
    let (key, bytes) = ticket_bytes("bob", 3, T0, edit);
    let cred = Credentials::new(gw, AuthenticatedPeer::for_tests(key), &bytes);
    assert_eq!(gw.authorize_session(&cred), Ok(()));
    let limits = gw.config().limits.clone();
    gw.registry
        .attach(cred, Transport::Quic, "peer".into(), 0, T0, &limits)
        .unwrap()
}

fn permit_for(gw: &Gateway, session: &Session, service: &'static str) -> Permit {
    match gw.authorize(&session.cred, stream(service)).outcome {
        Ok(Some(p)) => p,
        other => panic!("{service}: {other:?}"),
    }
}

/// Run the guard of a live stream of `service` admitted under `permit`.
fn guard(
    gw: &Arc<Gateway>,
    session: &Arc<Session>,
    service: &'static str,
    permit: Permit,
) -> JoinHandle<GuardEnd> {
    let (gw, session) = (gw.clone(), session.clone());
    tokio::spawn(async move { gw.stream_guard(&session, stream(service), &permit).await })
}

/// Still running after `secs` seconds (of paused time)?
async fn runs_for<T>(task: &mut JoinHandle<T>, secs: u64) -> bool {
    timeout(Duration::from_secs(secs), task).await.is_err()
}

async fn ended<T: std::fmt::Debug>(task: JoinHandle<T>) -> T {
    timeout(Duration::from_secs(5), task)
        .await
        .expect("the guard ends")
        .unwrap()
}

fn with_two_categories(b: &mut Bundle) {
    b.categories.push(Category {
        id: "vnc".into(),
        name: "VNC".into(),
    });
    b.device.services.push(Service {
        id: "hmi".into(),
        name: "HMI".into(),
        kind: ServiceKind::Vnc,
        target: Target::Endpoint {
            host: "127.0.0.1".into(),
            port: 5900,
        },
        category: "vnc".into(),
    });
    b.roles[0].grants.push(Grant {
        category: "vnc".into(),
        level: Level::Manage,
    });
}

/// Bug: a 2FA demand of one role (step 6) closed the whole session, as if
/// it were the user's own (step 4). Only that role's streams end.
#[tokio::test(start_paused = true)]
async fn one_roles_2fa_demand_ends_only_the_streams_it_alone_granted() {
    let dir = tempfile::tempdir().unwrap();
    let secure = |b: &mut Bundle| {
        with_two_categories(b);
        b.roles.push(Role {
            id: "secure".into(),
            name: "Secure".into(),
            scope: Scope::Company,
            grants: vec![Grant {
                category: "web".into(),
                level: Level::Manage,
            }],
            mfa: true,
            site_consent: false,
        });
        b.users[0].roles.push("secure".into());
    };
    let gw = paused_gateway(dir.path(), "", bundle_with(1, T0, secure)).await;
    let session = session_of(&gw, |_| {});
    let mut web = guard(&gw, &session, "plc", permit_for(&gw, &session, "plc"));
    let mut vnc = guard(&gw, &session, "hmi", permit_for(&gw, &session, "hmi"));
    assert!(runs_for(&mut web, 1).await);
    // eng no longer grants web: only the 2FA-demanding role does.
    let v2 = bundle_with(2, T0, |b| {
        secure(b);
        b.roles[0].grants.retain(|g| g.category == "vnc");
    });
    assert!(matches!(
        gw.push_bundle(v2).await,
        PushResult::Accepted { serial: 2 }
    ));
    assert_eq!(ended(web).await, GuardEnd::Denied(DenyReason::MfaRequired));
    assert_eq!(session.end_reason(), None, "the session lives on");
    assert!(runs_for(&mut vnc, 60).await, "the vnc stream lives on");
    // The user's own 2FA demand (step 4) does end the session.
    let v3 = bundle_with(3, T0, |b| {
        secure(b);
        b.users[0].mfa = true;
    });
    gw.push_bundle(v3).await;
    assert_eq!(
        ended(vnc).await,
        GuardEnd::SessionEnded(Some(SessionEnd::Denied(DenyReason::MfaRequired)))
    );
}

/// Bug: the re-check compared only allow/deny and the level, so a service
/// moved to another host or changed kind kept its live streams on the old
/// backend and filter.
#[tokio::test(start_paused = true)]
async fn a_moved_or_changed_service_closes_its_live_streams() {
    let dir = tempfile::tempdir().unwrap();
    let gw = paused_gateway(dir.path(), "", bundle_with(1, T0, |_| {})).await;
    let session = session_of(&gw, |_| {});
    let admitted = permit_for(&gw, &session, "plc");
    assert_eq!(admitted.target, "127.0.0.1:9");
    let mut old = guard(&gw, &session, "plc", admitted);
    assert!(runs_for(&mut old, 1).await);
    let moved = |b: &mut Bundle| {
        b.device.services[0].target = Target::Endpoint {
            host: "127.0.0.1".into(),
            port: 10,
        }
    };
    gw.push_bundle(bundle_with(2, T0, moved)).await;
    assert_eq!(
        ended(old).await,
        GuardEnd::Denied(DenyReason::PermitChanged)
    );
    // A new stream goes to the new place; then the kind changes.
    let admitted = permit_for(&gw, &session, "plc");
    assert_eq!(admitted.target, "127.0.0.1:10");
    let mut second = guard(&gw, &session, "plc", admitted);
    assert!(runs_for(&mut second, 1).await);
    gw.push_bundle(bundle_with(3, T0, |b| {
        moved(b);
        b.device.services[0].kind = ServiceKind::Websocket;
    }))
    .await;
    assert_eq!(
        ended(second).await,
        GuardEnd::Denied(DenyReason::PermitChanged)
    );
    // The level lowered to read: the stream would need a filter it lacks.
    let mut third = guard(&gw, &session, "plc", permit_for(&gw, &session, "plc"));
    assert!(runs_for(&mut third, 1).await);
    let read = |b: &mut Bundle| {
        moved(b);
        b.device.services[0].kind = ServiceKind::Websocket;
        b.roles[0].grants[0].level = Level::Read;
    };
    gw.push_bundle(bundle_with(4, T0, read)).await;
    assert_eq!(
        ended(third).await,
        GuardEnd::Denied(DenyReason::PermitChanged)
    );
    // Raised back to manage: a read stream keeps its stricter filter.
    let filtered = permit_for(&gw, &session, "plc");
    assert_eq!(filtered.filter, Some(ServiceKind::Websocket));
    let mut fourth = guard(&gw, &session, "plc", filtered);
    gw.push_bundle(bundle_with(5, T0, |b| {
        moved(b);
        b.device.services[0].kind = ServiceKind::Websocket;
    }))
    .await;
    assert!(runs_for(&mut fourth, 60).await);
}

/// A vpn stream whose service's networks no longer hold its destination is
/// cut with `destination-not-allowed` (a stream-scope denial).
#[tokio::test(start_paused = true)]
async fn a_vpn_stream_outside_the_new_networks_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let vpn = |net: [u8; 4]| {
        let net = Network {
            addr: std::net::Ipv4Addr::from(net).into(),
            prefix: 24,
        };
        move |b: &mut Bundle| {
            b.device.services[0].kind = ServiceKind::Vpn;
            b.device.services[0].target = Target::Networks {
                networks: vec![net],
                ports: vec![],
            };
        }
    };
    let gw = paused_gateway(dir.path(), "", bundle_with(1, T0, vpn([127, 1, 0, 0]))).await;
    let session = session_of(&gw, |_| {});
    let to = Subject::Stream {
        service: "plc",
        destination: Some("127.1.0.5:502".parse().unwrap()),
        over_limit: false,
    };
    let permit = gw.authorize(&session.cred, to).outcome.unwrap().unwrap();
    assert_eq!(permit.target, "127.1.0.5:502");
    let (g, s) = (gw.clone(), session.clone());
    let mut task = tokio::spawn(async move { g.stream_guard(&s, to, &permit).await });
    assert!(runs_for(&mut task, 1).await);
    gw.push_bundle(bundle_with(2, T0, vpn([127, 2, 0, 0])))
        .await;
    assert_eq!(
        ended(task).await,
        GuardEnd::Denied(DenyReason::DestinationNotAllowed)
    );
    assert_eq!(session.end_reason(), None);
}

#[tokio::test(start_paused = true)]
async fn ticket_expiry_ends_the_session_on_the_second() {
    let dir = tempfile::tempdir().unwrap();
    let gw = paused_gateway(dir.path(), "", bundle_with(1, T0, |_| {})).await;
    let session = session_of(&gw, |t| t.expires_at = T0 + 60);
    let mut task = guard(&gw, &session, "plc", permit_for(&gw, &session, "plc"));
    assert!(runs_for(&mut task, 59).await);
    assert_eq!(
        ended(task).await,
        GuardEnd::SessionEnded(Some(SessionEnd::Denied(DenyReason::TicketExpired)))
    );
    // On the second: the clock read T0 + 60 when it ended.
    assert_eq!(gw.now(), T0 + 60);
}

#[tokio::test(start_paused = true)]
async fn the_logout_period_ends_the_session_and_its_own_guard_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let gw = paused_gateway(dir.path(), "", bundle_with(1, T0, |_| {})).await;
    // Authenticated at T0 - 10 with a logout period of 1 h.
    let session = session_of(&gw, |_| {});
    let (g, s) = (gw.clone(), session.clone());
    let mut own = tokio::spawn(async move { g.session_guard(&s).await });
    assert!(runs_for(&mut own, 3589).await);
    assert_eq!(
        ended(own).await,
        GuardEnd::SessionEnded(Some(SessionEnd::Denied(DenyReason::SessionExpired)))
    );
    assert_eq!(
        session.end_reason(),
        Some(SessionEnd::Denied(DenyReason::SessionExpired))
    );
}

#[tokio::test(start_paused = true)]
async fn a_consent_window_running_out_ends_only_consent_streams() {
    let dir = tempfile::tempdir().unwrap();
    let consent = |b: &mut Bundle| b.roles[0].site_consent = true;
    let gw = paused_gateway(dir.path(), "", bundle_with(1, T0, consent)).await;
    let session = session_of(&gw, |_| {});
    assert_eq!(
        level_of(&gw, &session.cred, stream("plc")),
        Err(DenyReason::SiteConsentRequired)
    );
    gw.consent().grant(Some(600));
    let mut task = guard(&gw, &session, "plc", permit_for(&gw, &session, "plc"));
    assert!(runs_for(&mut task, 599).await);
    assert_eq!(
        ended(task).await,
        GuardEnd::Denied(DenyReason::SiteConsentRequired)
    );
    assert_eq!(session.end_reason(), None);
}

#[tokio::test(start_paused = true)]
async fn a_kill_is_a_kill_and_a_disconnect_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let gw = paused_gateway(dir.path(), "", bundle_with(1, T0, |_| {})).await;
    let killed = session_of(&gw, |_| {});
    let task = guard(&gw, &killed, "plc", permit_for(&gw, &killed, "plc"));
    assert!(gw.kill(killed.id));
    assert_eq!(
        ended(task).await,
        GuardEnd::SessionEnded(Some(SessionEnd::Killed))
    );
    let (key, bytes) = ticket_bytes("bob", 4, T0, |_| {});
    let cred = Credentials::new(&gw, AuthenticatedPeer::for_tests(key), &bytes);
    let limits = gw.config().limits.clone();
    let gone = gw
        .registry
        .attach(cred, Transport::Quic, "peer".into(), 0, T0, &limits)
        .unwrap();
    let task = guard(&gw, &gone, "plc", permit_for(&gw, &gone, "plc"));
    assert!(gw.registry.detach(&gone));
    assert_eq!(ended(task).await, GuardEnd::SessionEnded(None));
}

/// SIGHUP with new trusted keys: a session whose ticket no longer verifies
/// is closed `bad-ticket` by the same loop, while the bundle (signed by a
/// key that stays trusted) stays in force.
#[tokio::test(start_paused = true)]
async fn a_trust_reload_is_one_more_input_of_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    let other = SigningKey::from_bytes(&[7; 32]);
    let both = seal(&base_bundle(1, T0), &[&authority(), &other]);
    let gw = paused_gateway(dir.path(), "", both).await;
    let session = session_of(&gw, |_| {});
    let mut task = guard(&gw, &session, "plc", permit_for(&gw, &session, "plc"));
    assert!(runs_for(&mut task, 1).await);
    let mut config = (*gw.config()).clone();
    config.trusted_keys = vec![PublicKey::from(other.verifying_key())];
    let done = gw.reload(config).await;
    assert!(done.trust_changed && !done.bundle_dropped);
    assert_eq!(done.bad_tickets, 1);
    assert_eq!(
        ended(task).await,
        GuardEnd::SessionEnded(Some(SessionEnd::Denied(DenyReason::BadTicket)))
    );
}

/// Serve one stream of `session` over an in-memory framed pipe; returns
/// the client's ends and the serving task.
fn open_stream(
    gw: &Arc<Gateway>,
    session: &Arc<Session>,
    id: u64,
) -> (
    tokio::io::DuplexStream,
    tokio::io::DuplexStream,
    JoinHandle<()>,
) {
    let (to_daemon, from_client) = tokio::io::duplex(1 << 16);
    let (to_client, from_daemon) = tokio::io::duplex(1 << 16);
    let (gw, session) = (gw.clone(), session.clone());
    let open = OpenRequest {
        stream_id: id,
        service: "plc".into(),
        destination: None,
    };
    let task = tokio::spawn(async move {
        let reader = PipeReader::Framed(Box::new(from_client));
        let writer = PipeWriter::Framed(Box::new(to_client));
        gw.serve_stream(&session, open, reader, writer, |_| {})
            .await
    });
    (to_daemon, from_daemon, task)
}

fn at_backend(addr: std::net::SocketAddr) -> impl FnOnce(&mut Bundle) {
    move |b: &mut Bundle| {
        b.device.services[0].target = Target::Endpoint {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

/// Bugs: the stream limit was checked after the audit had said "allow",
/// and a client that went away had its streams audited as killed.
#[tokio::test]
async fn the_limit_is_part_of_the_audited_decision_and_a_disconnect_is_no_kill() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), "[limits]\nmax_streams_per_session = 1\n").await;
    let t = now();
    gw.push_bundle(bundle_with(1, t, at_backend(holding_backend().await)))
        .await;
    let (key, bytes) = ticket_bytes("bob", 3, t, |_| {});
    let cred = Credentials::new(&gw, AuthenticatedPeer::for_tests(key), &bytes);
    let limits = gw.config().limits.clone();
    let session = gw
        .registry
        .attach(cred, Transport::Quic, "peer".into(), 0, t, &limits)
        .unwrap();
    let (_first_in, mut first_out, first) = open_stream(&gw, &session, 1);
    let answer = expect_frame(&mut first_out, MAX_FRAME).await.unwrap();
    assert_eq!(
        answer,
        Frame::Opened {
            level: Level::Manage
        }
    );
    let (_second_in, mut second_out, second) = open_stream(&gw, &session, 2);
    let answer = expect_frame(&mut second_out, MAX_FRAME).await.unwrap();
    assert_eq!(
        answer,
        Frame::Denied {
            reason: DenyReason::LimitExceeded
        }
    );
    second.await.unwrap();
    let decisions: Vec<Outcome> = audit_events(&gw)
        .await
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::Decision {
                service: Some(_),
                outcome,
                ..
            } => Some(outcome),
            _ => None,
        })
        .collect();
    assert_eq!(
        decisions,
        [
            Outcome::Allow(Level::Manage),
            Outcome::Deny(DenyReason::LimitExceeded)
        ]
    );
    // The client's connection is lost: its open stream is not "killed".
    assert!(gw.registry.detach(&session));
    timeout(Duration::from_secs(5), first)
        .await
        .unwrap()
        .unwrap();
    let closes = stream_closes(&gw).await;
    assert_eq!(closes, [CloseReason::Disconnected]);
}

/// A read-level violation is audited with the filter's code; a refused
/// HTTP write is answered `403`.
#[tokio::test]
async fn a_read_level_violation_is_audited_with_its_code() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), "").await;
    let t = now();
    let at = at_backend(holding_backend().await);
    gw.push_bundle(bundle_with(1, t, |b| {
        at(b);
        b.roles[0].grants[0].level = Level::Read;
    }))
    .await;
    let (key, bytes) = ticket_bytes("bob", 3, t, |_| {});
    let cred = Credentials::new(&gw, AuthenticatedPeer::for_tests(key), &bytes);
    let limits = gw.config().limits.clone();
    let session = gw
        .registry
        .attach(cred, Transport::Quic, "peer".into(), 0, t, &limits)
        .unwrap();
    let (mut to_daemon, mut from_daemon, task) = open_stream(&gw, &session, 1);
    let answer = expect_frame(&mut from_daemon, MAX_FRAME).await.unwrap();
    assert_eq!(answer, Frame::Opened { level: Level::Read });
    let post = Frame::Data(b"POST /x HTTP/1.1\r\nHost: plc\r\n\r\n".to_vec());
    to_daemon
        .write_all(&edgegate_proto::frame::encode(&post))
        .await
        .unwrap();
    timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    // The backend holds its connection open and was sent nothing: the `403`
    // goes at once, then the stream ends normally (a reset could lose it).
    let answer = expect_frame(&mut from_daemon, MAX_FRAME).await.unwrap();
    assert_eq!(
        answer,
        Frame::Data(crate::filter::http::forbidden_response())
    );
    let end = expect_frame(&mut from_daemon, MAX_FRAME).await.unwrap();
    assert_eq!(end, Frame::Close { reason: None });
    let closes = stream_closes(&gw).await;
    assert_eq!(
        closes,
        [CloseReason::Error(
            "read-only-violation: forbidden-method".into()
        )]
    );
}
