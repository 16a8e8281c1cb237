//! Authority keys with roles, on paused time: a key statement is one more
//! input of the one re-decide loop. A leaked ticket key is rotated out and
//! its sessions are cut on the push; a leaked bundle key that froze the
//! serial and pushed the time floor is recovered by one push; replays and
//! forgeries of statements are refused with their reason, the running
//! policy unchanged.

use super::*;
use crate::gateway::authorize::Permit;
use crate::gateway::pending::Pending;
use crate::gateway::redecide::GuardEnd;
use crate::gateway::registry::Session;
use crate::transport::{expect_frame, write_frame, Connection};
use edgegate_proto::audit::AuditEvent;
use edgegate_proto::authority::{KeyStatement, Recovery};
use edgegate_proto::frame::{Frame, SessionEnd, MAX_FRAME};
use edgegate_proto::KeyRole;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// A plausible wall clock (2030).
const T0: u64 = 1_900_000_000;
const DAY: u64 = 86_400;

/// The root is the config's key (`authority()`, seed 1); online keys:
fn bundle_key() -> SigningKey {
    testkit::key(20)
}
fn ticket_key() -> SigningKey {
    testkit::key(21)
}
fn enroll_key() -> SigningKey {
    testkit::key(22)
}
fn new_ticket_key() -> SigningKey {
    testkit::key(23)
}
fn new_bundle_key() -> SigningKey {
    testkit::key(24)
}
fn new_root() -> SigningKey {
    testkit::key(25)
}

/// Statement `version`: root, bundle key 20, ticket key 21, enroll key 22.
fn roles(version: u64) -> KeyStatement {
    testkit::key_statement(
        version,
        T0,
        [&authority(), &bundle_key(), &ticket_key(), &enroll_key()],
    )
}

fn push_keys(s: &KeyStatement, signers: &[&SigningKey]) -> Vec<u8> {
    testkit::push_statement(s, signers, None)
}

fn keys_accepted(r: &PushResult, version: u64) -> bool {
    matches!(r, PushResult::Keys { version: v, changed: true, bundle: None } if *v == version)
}

fn rejected(r: &PushResult) -> &str {
    match r {
        PushResult::Rejected { code, .. } => code,
        other => panic!("not rejected: {other:?}"),
    }
}

/// The test bundle of `serial` issued at `t`, signed by `signer`.
fn bundle_by(serial: u64, t: u64, signer: &SigningKey) -> Vec<u8> {
    testkit::seal(&base_bundle(serial, t), signer)
}

/// Bob's ticket (client key seed `client`), issued at `t`, signed by `signer`.
fn ticket_by(signer: &SigningKey, client: u8, t: u64) -> (PublicKey, Vec<u8>) {
    let key = testkit::public(&testkit::key(client));
    let ticket = Ticket {
        id: [client; 16],
        expires_at: t + 7200,
        ..testkit::ticket("bob", "r1", key, t)
    };
    (key, testkit::seal_ticket(&ticket, signer))
}

fn credentials_by(gw: &Gateway, signer: &SigningKey, client: u8) -> Credentials {
    let (key, bytes) = ticket_by(signer, client, T0);
    Credentials::new(gw, AuthenticatedPeer::for_tests(key), &bytes)
}

/// A live session of bob with a ticket by `signer`, and the guard of its
/// `plc` stream.
fn live(gw: &Arc<Gateway>, signer: &SigningKey, client: u8) -> JoinHandle<GuardEnd> {
    let cred = credentials_by(gw, signer, client);
    assert_eq!(gw.authorize_session(&cred), Ok(()));
    let limits = gw.config().limits.clone();
    let session: Arc<Session> = gw
        .registry
        .attach(cred, Transport::Quic, "peer".into(), 0, T0, &limits)
        .unwrap();
    let permit: Permit = match gw.authorize(&session.cred, stream("plc")).outcome {
        Ok(Some(p)) => p,
        other => panic!("{other:?}"),
    };
    let gw = gw.clone();
    tokio::spawn(async move { gw.stream_guard(&session, stream("plc"), &permit).await })
}

async fn still_runs(task: &mut JoinHandle<GuardEnd>) -> bool {
    timeout(Duration::from_secs(60), task).await.is_err()
}

/// The guard ended `bad-ticket` within 50 ms of `since` (paused time: no
/// timer fired in between).
async fn cut_bad_ticket(task: JoinHandle<GuardEnd>, since: Instant) {
    let end = timeout(Duration::from_millis(50), task)
        .await
        .expect("cut within 50 ms")
        .unwrap();
    assert_eq!(
        end,
        GuardEnd::SessionEnded(Some(SessionEnd::Denied(DenyReason::BadTicket)))
    );
    assert!(since.elapsed() < Duration::from_millis(50));
}

/// A gateway on paused time at `wall`, config trusting the root only.
async fn paused(dir: &std::path::Path, wall: u64) -> Arc<Gateway> {
    gateway_on(dir, "", Clock::following_tokio(wall)).await
}

#[tokio::test(start_paused = true)]
async fn a_leaked_ticket_key_is_rotated_out_and_its_sessions_cut_on_the_push() {
    let dir = tempfile::tempdir().unwrap();
    let gw = paused(dir.path(), T0).await;
    // Migration: before any statement the config's key signs everything.
    let r = gw.push_bundle(bundle_by(1, T0, &authority())).await;
    assert_eq!(r, PushResult::Accepted { serial: 1 });
    let mut legacy = live(&gw, &authority(), 3);
    assert!(still_runs(&mut legacy).await);
    // The first statement: the root's ticket is no ticket key any more,
    // and the bundle it signed stays in force until a bundle key's arrives.
    let since = Instant::now();
    assert!(keys_accepted(
        &gw.push_bundle(push_keys(&roles(1), &[&authority()])).await,
        1
    ));
    cut_bad_ticket(legacy, since).await;
    assert!(gw.active().is_some(), "the root-signed bundle is kept");
    assert_eq!(gw.store.authority().version(), 1);
    // Each role's key verifies only its own documents.
    let r = gw.push_bundle(bundle_by(2, T0, &ticket_key())).await;
    assert_eq!(rejected(&r), "bad-signature");
    let r = gw.push_bundle(bundle_by(2, T0, &authority())).await;
    assert_eq!(rejected(&r), "bad-signature", "root signs no bundle now");
    let r = gw.push_bundle(bundle_by(2, T0, &bundle_key())).await;
    assert_eq!(r, PushResult::Accepted { serial: 2 });
    let by_bundle_key = credentials_by(&gw, &bundle_key(), 4);
    assert_eq!(
        gw.authorize_session(&by_bundle_key),
        Err(DenyReason::BadTicket)
    );
    // The ticket key leaks: sessions of its tickets are cut on the push.
    let mut old = live(&gw, &ticket_key(), 5);
    assert!(still_runs(&mut old).await);
    let mut v2 = roles(2);
    v2.ticket.keys = vec![testkit::public(&new_ticket_key())];
    let since = Instant::now();
    assert!(keys_accepted(
        &gw.push_bundle(push_keys(&v2, &[&authority()])).await,
        2
    ));
    cut_bad_ticket(old, since).await;
    // New tickets of the old key are refused; the new key's work.
    let stale = credentials_by(&gw, &ticket_key(), 6);
    assert_eq!(gw.authorize_session(&stale), Err(DenyReason::BadTicket));
    let mut fresh = live(&gw, &new_ticket_key(), 7);
    assert!(still_runs(&mut fresh).await);
    let kinds: Vec<_> = audit_events(&gw).await;
    assert!(kinds.iter().any(|e| matches!(
        e,
        AuditEvent::KeysAccepted {
            version: 2,
            root_rotated: false,
            recovery: None
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn a_frozen_serial_and_a_pushed_floor_are_recovered_by_one_push() {
    let dir = tempfile::tempdir().unwrap();
    // A router without a clock (wall 1970): the floor is all it knows.
    let gw = paused(dir.path(), 0).await;
    assert!(keys_accepted(
        &gw.push_bundle(push_keys(&roles(1), &[&authority()])).await,
        1
    ));
    let r = gw.push_bundle(bundle_by(1, T0, &bundle_key())).await;
    assert_eq!(r, PushResult::Accepted { serial: 1 });
    assert_eq!(gw.now(), T0 - 60);
    // The bundle key leaks: serial 2^64-1, dated two months ahead.
    let frozen = testkit::seal(&base_bundle(u64::MAX, T0 + 60 * DAY), &bundle_key());
    let r = gw.push_bundle(frozen).await;
    assert_eq!(r, PushResult::Accepted { serial: u64::MAX });
    assert!(gw.now() >= T0 + 29 * DAY, "the floor moved to {}", gw.now());
    let fresh = credentials_by(&gw, &ticket_key(), 3);
    assert_eq!(gw.authorize_session(&fresh), Err(DenyReason::TicketExpired));
    let r = gw.push_bundle(bundle_by(2, T0, &bundle_key())).await;
    assert_eq!(rejected(&r), "rollback");
    // One push: root's recovery statement with a new bundle key, and a
    // bundle that key signed.
    let mut v2 = roles(2);
    v2.bundle.keys = vec![testkit::public(&new_bundle_key())];
    v2.recovery = Some(Recovery {
        serial: Some(0),
        time_floor: Some(T0 - 3600),
    });
    let good = bundle_by(1, T0, &new_bundle_key());
    let push = testkit::push_statement(&v2, &[&authority()], Some(&good));
    let r = gw.push_bundle(push.clone()).await;
    assert_eq!(
        r,
        PushResult::Keys {
            version: 2,
            changed: true,
            bundle: Some(Box::new(PushResult::Accepted { serial: 1 })),
        }
    );
    assert_eq!(gw.store.serial(), Some(1));
    assert_eq!(gw.now(), T0 - 60, "floor back to the good bundle's issue");
    let fresh = credentials_by(&gw, &ticket_key(), 4);
    assert_eq!(gw.authorize_session(&fresh), Ok(()));
    // The leaked key's bundles are refused now; the recovery is never again.
    let again = testkit::seal(&base_bundle(u64::MAX, T0 + 60 * DAY), &bundle_key());
    assert_eq!(rejected(&gw.push_bundle(again).await), "bad-signature");
    match gw.push_bundle(push).await {
        PushResult::Keys { changed: false, .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(gw.store.serial(), Some(1));
    let recovered = audit_events(&gw).await.into_iter().any(|e| {
        matches!(e, AuditEvent::KeysAccepted { version: 2, recovery: Some(r), .. }
            if r.serial_before == Some(u64::MAX) && r.serial == Some(0))
    });
    assert!(recovered, "the recovery is audited");
}

#[tokio::test(start_paused = true)]
async fn replayed_and_forged_statements_are_refused_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let gw = paused(dir.path(), T0).await;
    let v1 = push_keys(&roles(1), &[&authority()]);
    assert!(keys_accepted(&gw.push_bundle(v1.clone()).await, 1));
    assert!(keys_accepted(
        &gw.push_bundle(push_keys(&roles(2), &[&authority()])).await,
        2
    ));
    let r = gw.push_bundle(bundle_by(1, T0, &bundle_key())).await;
    assert_eq!(r, PushResult::Accepted { serial: 1 });
    let mut session = live(&gw, &ticket_key(), 3);
    let (before, active) = (gw.store.authority(), gw.active().unwrap());
    let mut rotate = roles(3);
    rotate.root.keys = vec![testkit::public(&new_root())];
    let mut expired = roles(3);
    (expired.issued_at, expired.expires_at) = (T0 - 10 * DAY, T0 - 1);
    let mut grant_all = roles(3);
    grant_all.ticket.keys = vec![testkit::public(&bundle_key())];
    let cases = [
        ("stale-key-statement", v1),
        ("bad-signature", push_keys(&grant_all, &[&bundle_key()])),
        ("bad-signature", push_keys(&rotate, &[&new_root()])),
        (
            "root-rotation-unsigned",
            push_keys(&rotate, &[&authority()]),
        ),
        ("expired", push_keys(&expired, &[&authority()])),
    ];
    for (code, bytes) in cases {
        assert_eq!(rejected(&control(&gw, bytes).await), code);
        assert_eq!(*gw.store.authority(), *before, "{code}: keys unchanged");
        assert!(Arc::ptr_eq(&gw.active().unwrap(), &active), "{code}");
    }
    assert!(still_runs(&mut session).await, "the session lives on");
    let codes: Vec<String> = audit_events(&gw)
        .await
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::KeysRejected { code, .. } => Some(code),
            _ => None,
        })
        .collect();
    assert_eq!(codes.len(), 5, "{codes:?}");
    // Signed by old and new root, the rotation goes through; the old root
    // signs nothing from then on.
    let both = push_keys(&rotate, &[&authority(), &new_root()]);
    assert!(keys_accepted(&gw.push_bundle(both).await, 3));
    let root = gw.store.authority().role(KeyRole::Root).clone();
    assert_eq!(root.keys(), &[testkit::public(&new_root())]);
    let r = gw.push_bundle(push_keys(&roles(4), &[&authority()])).await;
    assert_eq!(rejected(&r), "bad-signature");
}

/// A push over the control socket (audited, unlike a stranger's).
async fn control(gw: &Arc<Gateway>, bytes: Vec<u8>) -> PushResult {
    use crate::control::{ControlHandler, PeerCred, Request, Response};
    let view = crate::gateway::ControlView(gw.clone());
    let peer = PeerCred {
        uid: 0,
        gid: 0,
        pid: None,
    };
    match view.handle(Request::PushBundle { bytes }, peer).await {
        Response::Push(r) => r,
        other => panic!("{other:?}"),
    }
}

/// A statement pushed over the tunnel port by a stranger is verified like
/// a bundle: the signatures decide, not the pusher.
#[tokio::test(start_paused = true)]
async fn a_statement_travels_over_the_tunnel_port_like_a_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let gw = paused(dir.path(), T0).await;
    let mut pending = Pending::new(8);
    let client = in_memory_connection(&gw, &mut pending, testkit::public(&testkit::key(9)));
    let mut control = client.open_bi().await.unwrap();
    let bundle = push_keys(&roles(1), &[&authority()]);
    write_frame(&mut control.send, &Frame::PushBundle { bundle })
        .await
        .unwrap();
    let answer = expect_frame(&mut control.recv, MAX_FRAME).await.unwrap();
    match answer {
        Frame::PushResult(r) => assert!(keys_accepted(&r, 1), "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(gw.store.authority().version(), 1);
}
