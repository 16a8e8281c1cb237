//! Unit tests of the gateway's own logic on an in-process gateway: the
//! session-level classification, session end, the time deadline, limits.
//! The data path is covered end to end in `tests/tunnel_*.rs`.

use super::authorize::{Credentials, Subject};
use super::Gateway;
use crate::clock::Clock;
use crate::config::Config;
use crate::store::Store;
use crate::testkit::{self, endpoint, role, service, user};
use crate::tlsid::{AuthenticatedPeer, Identity};
use ed25519_dalek::SigningKey;
use edgegate_proto::audit::Transport;
use edgegate_proto::bundle::ServiceKind;
use edgegate_proto::bundle::{Bundle, Network, Status, Target};
use edgegate_proto::control::PushResult;
use edgegate_proto::ticket::Ticket;
use edgegate_proto::{DenyReason, Level, PublicKey};
use std::sync::Arc;

fn authority() -> SigningKey {
    testkit::key(1)
}

mod keys;
mod redecide;
mod session;
mod strangers;
mod trust;

fn now() -> u64 {
    Clock::system().wall()
}

/// Every audit event so far (the writer's queue drained first).
async fn audit_events(gw: &Gateway) -> Vec<edgegate_proto::audit::AuditEvent> {
    gw.audit.sync().await;
    let log = gw.audit.log();
    log.list(None, 1000)
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect()
}

/// The close reasons of the streams audited so far, in order.
async fn stream_closes(gw: &Gateway) -> Vec<edgegate_proto::audit::CloseReason> {
    audit_events(gw)
        .await
        .into_iter()
        .filter_map(|e| match e {
            edgegate_proto::audit::AuditEvent::StreamClose { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

/// A backend that accepts connections and holds them open.
async fn holding_backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    addr
}

/// A multiplexed connection on an in-memory pipe whose server end the
/// gateway serves (`serve_connection`) as a peer that proved `key`; the
/// client's end is returned.
fn in_memory_connection(
    gw: &Arc<Gateway>,
    pending: &mut super::pending::Pending,
    key: PublicKey,
) -> crate::transport::MuxConn {
    use crate::transport::mux::{Growth, MuxConn, Side};
    let (a, b) = tokio::io::duplex(1 << 20);
    let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let server = MuxConn::new(
        b,
        Side::Server,
        16,
        Growth::ROUTER,
        Some(AuthenticatedPeer::for_tests(key)),
        addr,
    );
    let gw = gw.clone();
    pending.spawn(addr.ip(), move |phase| {
        gw.serve_connection(Arc::new(server), phase)
    });
    MuxConn::new(a, Side::Client, 16, Growth::CLIENT, None, addr)
}

fn bundle(serial: u64, bob_active: bool) -> Vec<u8> {
    bundle_with(serial, now(), |b| {
        if !bob_active {
            b.users[0].status = Status::Inactive;
        }
    })
}

/// The test bundle issued at `t`, after `edit`, signed by the authority.
fn bundle_with(serial: u64, t: u64, edit: impl FnOnce(&mut Bundle)) -> Vec<u8> {
    let mut b = base_bundle(serial, t);
    edit(&mut b);
    testkit::seal(&b, &authority())
}

/// User bob, company role eng granting manage on category web, http
/// service plc at 127.0.0.1:9; issued at `t - 60`, valid a day.
fn base_bundle(serial: u64, t: u64) -> Bundle {
    testkit::bundle("r1")
        .serial(serial)
        .valid(t - 60, t + 86_400)
        .company("c", "C")
        .org("c", "C")
        .categories(["web"])
        .roles([role("eng").grant("web", Level::Manage)])
        .users([user("bob").org("c").role("eng").logout_period(3600)])
        .services([service(
            "plc",
            ServiceKind::Http,
            "web",
            endpoint("127.0.0.1", 9),
        )])
        .build()
}

async fn gateway(dir: &std::path::Path, limits: &str) -> Arc<Gateway> {
    gateway_on(dir, limits, Clock::system()).await
}

/// A gateway whose wall clock is `clock` (paused-time tests).
async fn gateway_on(dir: &std::path::Path, limits: &str, clock: Clock) -> Arc<Gateway> {
    let config = Config::from_toml_str(&format!(
        r#"device_id = "r1"
device_key = "{d}/device.key"
state_dir = "{d}"
trusted_keys = ["{k}"]
listen_quic = "127.0.0.1:0"
listen_tls = "127.0.0.1:0"
control_socket = "{d}/control.sock"
{limits}
"#,
        d = dir.display(),
        k = testkit::public(&authority()),
    ))
    .unwrap();
    let opened = Store::open(dir, &config.trust(), "r1", |_| Ok(())).unwrap();
    let id = Identity::new(&testkit::key(2)).unwrap();
    Gateway::with_clock(config, opened.store, opened.bundle, id, clock).unwrap()
}

fn credentials(user: &str, client: u8, edit: impl FnOnce(&mut Ticket)) -> Credentials {
    let (key, bytes) = ticket_bytes(user, client, now(), edit);
    Credentials::for_tests(
        AuthenticatedPeer::for_tests(key),
        &bytes,
        &testkit::trust(&authority()),
    )
}

/// A ticket of `user` for client key seed `client`, issued at `t`, valid 2 h.
fn ticket_bytes(
    user: &str,
    client: u8,
    t: u64,
    edit: impl FnOnce(&mut Ticket),
) -> (PublicKey, Vec<u8>) {
    let key = testkit::public(&testkit::key(client));
    let mut ticket = Ticket {
        id: [client; 16],
        expires_at: t + 7200,
        ..testkit::ticket(user, "r1", key, t)
    };
    edit(&mut ticket);
    (key, testkit::seal_ticket(&ticket, &authority()))
}

fn stream(service: &str) -> Subject<'_> {
    Subject::Stream {
        service,
        destination: None,
        over_limit: false,
    }
}

fn level_of(gw: &Gateway, cred: &Credentials, subject: Subject<'_>) -> Result<Level, DenyReason> {
    match gw.authorize(cred, subject).outcome {
        Ok(Some(p)) => Ok(p.level),
        Ok(None) => panic!("a stream subject yields a permit"),
        Err(r) => Err(r.reason),
    }
}

#[tokio::test]
async fn session_level_reasons_refuse_the_session_service_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), "").await;
    let bob = credentials("bob", 3, |_| {});
    assert_eq!(gw.authorize_session(&bob), Err(DenyReason::NoValidBundle));
    assert!(matches!(
        gw.push_bundle(bundle(1, true)).await,
        PushResult::Accepted { serial: 1 }
    ));
    assert_eq!(gw.authorize_session(&bob), Ok(()));
    assert_eq!(level_of(&gw, &bob, stream("plc")), Ok(Level::Manage));
    assert_eq!(
        level_of(&gw, &bob, stream("nope")),
        Err(DenyReason::UnknownService)
    );
    let over = Subject::Stream {
        service: "plc",
        destination: None,
        over_limit: true,
    };
    assert_eq!(level_of(&gw, &bob, over), Err(DenyReason::LimitExceeded));
    let untrusted = edgegate_proto::TrustPolicy::new(
        vec![PublicKey::from(
            SigningKey::from_bytes(&[9; 32]).verifying_key(),
        )],
        1,
    )
    .unwrap();
    let forged = Credentials::for_tests(bob.peer, &bob.ticket_bytes, &untrusted);
    assert_eq!(gw.authorize_session(&forged), Err(DenyReason::BadTicket));
    let stranger = credentials("zed", 4, |_| {});
    assert_eq!(
        gw.authorize_session(&stranger),
        Err(DenyReason::UnknownUser)
    );
    assert!(matches!(
        gw.push_bundle(bundle(2, false)).await,
        PushResult::Accepted { serial: 2 }
    ));
    assert_eq!(gw.authorize_session(&bob), Err(DenyReason::UserInactive));
    assert_eq!(
        level_of(&gw, &bob, stream("plc")),
        Err(DenyReason::UserInactive)
    );
}

#[tokio::test]
async fn session_end_and_deadline_follow_logout_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), "").await;
    gw.push_bundle(bundle(1, true)).await;
    // Logout period (1h from auth) ends before the ticket (2h).
    let bob = credentials("bob", 3, |_| {});
    let t = bob.ticket.as_ref().unwrap().ticket().clone();
    assert_eq!(gw.session_end(&bob), t.auth_time + 3600);
    let deadline = gw
        .authorize(&bob, stream("plc"))
        .recheck_at
        .expect("a deadline");
    let wait = deadline - tokio::time::Instant::now();
    let expect = (t.auth_time + 3600 - now()) as f64;
    assert!(
        (wait.as_secs_f64() - expect).abs() < 2.0,
        "{wait:?} vs {expect}"
    );
    // A ticket expiring sooner ends the session sooner.
    let short = credentials("bob", 5, |t| t.expires_at = now() + 60);
    assert_eq!(
        gw.session_end(&short),
        short.ticket.as_ref().unwrap().ticket().expires_at
    );
    let wait =
        gw.authorize(&short, stream("plc")).recheck_at.unwrap() - tokio::time::Instant::now();
    assert!(wait.as_secs() <= 60 && wait.as_secs() >= 58, "{wait:?}");
}

#[tokio::test]
async fn registry_limits_hold_per_user_and_overall() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(
        dir.path(),
        "[limits]\nmax_sessions = 3\nmax_sessions_per_user = 2\n",
    )
    .await;
    gw.push_bundle(bundle(1, true)).await;
    let config = gw.config();
    let limits = &config.limits;
    let attach = |seed: u8, t| {
        let c = credentials("bob", seed, |_| {});
        gw.registry.attach(c, t, "peer".into(), 0, 0, limits)
    };
    let s1 = attach(3, Transport::Quic).unwrap();
    // One connection is one session, on TLS as on QUIC: the same ticket
    // twice is two sessions.
    let s2 = attach(3, Transport::Tls).unwrap();
    assert_ne!(s1.id, s2.id);
    assert_eq!(
        attach(4, Transport::Quic).unwrap_err(),
        DenyReason::LimitExceeded
    );
    assert_eq!(gw.session_count(), 2);
    assert!(gw.registry.detach(&s2));
    assert!(!gw.registry.detach(&s2), "already gone");
    assert!(attach(4, Transport::Quic).is_ok());
    assert!(gw.kill(s1.id));
    assert!(*s1.kill.borrow());
    assert!(!gw.kill(999));
}

/// Freed memory goes back once no stream is open and a second has passed
/// since the last stream ended: never under a running stream, once per
/// quiet spell.
#[tokio::test(start_paused = true)]
async fn freed_memory_is_trimmed_once_streams_are_quiet() {
    static TRIMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    fn trim() {
        TRIMS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let trims = || TRIMS.load(std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), "").await;
    gw.push_bundle(bundle(1, true)).await;
    tokio::spawn(gw.clone().trim_when_quiet_with(trim));
    let settle = |d: u64| async move {
        tokio::time::sleep(std::time::Duration::from_millis(d)).await;
        // The trim runs on a blocking thread: let it finish.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        tokio::task::spawn_blocking(|| ()).await.unwrap();
    };
    settle(5_000).await;
    assert_eq!(trims(), 0, "nothing churned, nothing trimmed");

    let config = gw.config();
    let session = gw
        .registry
        .attach(
            credentials("bob", 3, |_| {}),
            Transport::Quic,
            "peer".into(),
            0,
            0,
            &config.limits,
        )
        .unwrap();
    let held = session
        .reserve_stream(4)
        .unwrap()
        .fill(1, "plc", None, Level::Manage, 0);
    let done = session
        .reserve_stream(4)
        .unwrap()
        .fill(2, "plc", None, Level::Manage, 0);
    gw.end_stream(&session, 2);
    settle(3_000).await;
    assert_eq!(trims(), 0, "a stream still runs: its buffers stay");

    gw.end_stream(&session, 1);
    settle(500).await;
    assert_eq!(trims(), 0, "not before a quiet second");
    settle(1_000).await;
    assert_eq!(trims(), 1, "the last stream ended a second ago");
    settle(5_000).await;
    assert_eq!(trims(), 1, "once per quiet spell");
    drop((held, done));
}

#[tokio::test]
async fn ended_sessions_hold_no_slot_and_are_not_joined() {
    use edgegate_proto::frame::SessionEnd;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), "[limits]\nmax_sessions_per_user = 1\n").await;
    let config = gw.config();
    let attach = |t| {
        let c = credentials("bob", 3, |_| {});
        gw.registry
            .attach(c, t, "peer".into(), 0, 0, &config.limits)
    };
    let s1 = attach(Transport::Tls).unwrap();
    s1.end(SessionEnd::Denied(DenyReason::UserInactive));
    // The first reason wins.
    s1.end(SessionEnd::Killed);
    assert_eq!(
        s1.end_reason(),
        Some(SessionEnd::Denied(DenyReason::UserInactive))
    );
    // Still winding down, yet a new connection starts a new session.
    let s2 = attach(Transport::Tls).unwrap();
    assert_ne!(s1.id, s2.id);
    assert_eq!(gw.session_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probe_fails_while_state_is_wedged_and_never_piles_up() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), "").await;
    let check = |gw: Arc<Gateway>| async move {
        tokio::time::timeout(Duration::from_millis(200), gw.healthy())
            .await
            .unwrap_or(false)
    };
    assert!(check(gw.clone()).await);
    // A lock held (as a wedged path would hold it) stops the pings.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = gw.clone();
    let wedge = std::thread::spawn(move || {
        let _guard = holder.config.write();
        held_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    held_rx.recv().unwrap();
    assert!(!check(gw.clone()).await);
    // The stuck probe is still in flight: the next check fails at once.
    let started = std::time::Instant::now();
    assert!(!gw.healthy().await);
    assert!(started.elapsed() < Duration::from_millis(50));
    release_tx.send(()).unwrap();
    wedge.join().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(check(gw.clone()).await);
}

/// `consent grant --for` above limits.max_consent is refused with one
/// line; a grant without a length lasts the maximum.
#[tokio::test]
async fn consent_grants_are_bounded_by_max_consent() {
    use crate::control::{ControlHandler, PeerCred, Request, Response};
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), "[limits]\nmax_consent = \"2h\"").await;
    let view = super::ControlView(gw.clone());
    let op = PeerCred {
        uid: 0,
        gid: 0,
        pid: None,
    };
    let long = view
        .handle(
            Request::ConsentGrant {
                secs: Some(3 * 3600),
            },
            op,
        )
        .await;
    assert_eq!(
        long,
        Response::Error("consent grant refused: 3h is longer than limits.max_consent (2h)".into())
    );
    assert!(!gw.consent().is_active(tokio::time::Instant::now()));
    let Response::Consent(info) = view.handle(Request::ConsentGrant { secs: None }, op).await
    else {
        panic!("grant without a length refused")
    };
    assert!(info.active);
    assert!(info
        .remaining_secs
        .is_some_and(|s| s <= 2 * 3600 && s > 3600));
}
