//! What strangers send is counted, never chained: a flood of junk pushes
//! and refused hellos leaves every authenticated record where it was.

use super::*;
use crate::audit::strangers::MAX_SOURCES;
use edgegate_proto::audit::{AuditEvent, Outcome};
use std::net::{IpAddr, SocketAddr};

fn from(n: u32) -> IpAddr {
    IpAddr::from([198, 51, (n >> 8) as u8, n as u8])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_junk_pushes_do_not_remove_one_authenticated_record() {
    let dir = tempfile::tempdir().unwrap();
    // A small chain: before, 100 junk records would have flushed it.
    let gw = gateway(dir.path(), "[limits]\naudit_retention = 100").await;
    assert!(matches!(
        gw.push_bundle(bundle(1, true)).await,
        PushResult::Accepted { .. }
    ));
    // An operator's rejected push (control socket) is theirs: chained.
    gw.push_bundle(b"operator typo".to_vec()).await;
    gw.audit.sync().await;
    let before = gw.audit.log().list(None, 1000).unwrap();
    assert_eq!(before.len(), 2);

    const JUNK: u32 = 100_000;
    for i in 0..JUNK {
        let junk = i.to_be_bytes().repeat(3);
        let r = gw.push_bundle_from(junk, Some(from(i % 300))).await;
        assert!(matches!(r, PushResult::Rejected { .. }), "{r:?}");
    }
    gw.audit.sync().await;
    assert_eq!(gw.audit.log().list(None, 1000).unwrap(), before);
    assert!(gw.audit.log().verify().is_ok());

    let counted = gw.audit.strangers(10_000).await.unwrap();
    let pushes: u64 = counted.iter().map(|s| s.rejected_pushes).sum();
    assert_eq!(pushes, u64::from(JUNK));
    // 300 sources, at most MAX_SOURCES of them by name per minute.
    let minutes = counted
        .iter()
        .map(|s| s.minute)
        .collect::<std::collections::BTreeSet<_>>();
    assert!(counted.len() <= minutes.len() * (MAX_SOURCES + 1));
    assert!(counted.iter().any(|s| s.source == "other"));
}

/// Refused hellos: a stranger's (no ticket that verifies and is bound to
/// its key) is counted; an authenticated engineer's is chained.
#[tokio::test]
async fn refused_hellos_are_counted_unless_the_peer_is_authenticated() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path(), "").await;
    gw.push_bundle(bundle(1, false)).await; // bob inactive
    let remote: SocketAddr = "192.0.2.7:4000".parse().unwrap();
    let hello = |peer: u8, ticket: Vec<u8>| {
        let gw = gw.clone();
        async move {
            let key = testkit::public(&testkit::key(peer));
            let mut out = Vec::new();
            // A connection only to say where the peer is (nothing is sent).
            let (io, _far) = tokio::io::duplex(1024);
            let conn = crate::transport::MuxConn::new(
                io,
                crate::transport::mux::Side::Server,
                4,
                crate::transport::mux::Growth::ROUTER,
                None,
                remote,
            );
            let s = gw
                .open_session(AuthenticatedPeer::for_tests(key), &ticket, &conn, &mut out)
                .await;
            assert!(s.is_none());
        }
    };
    // Garbage for a ticket, and bob's real ticket presented by another key.
    hello(3, b"not a ticket".to_vec()).await;
    let (_, bobs) = ticket_bytes("bob", 3, now(), |_| {});
    hello(9, bobs.clone()).await;
    // Bob himself: authenticated, refused as user-inactive, chained.
    hello(3, bobs).await;
    gw.audit.sync().await;
    let refused: Vec<_> = gw
        .audit
        .log()
        .list(None, 100)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            AuditEvent::Decision {
                session: 0,
                user,
                outcome: Outcome::Deny(reason),
                ..
            } => Some((user, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        vec![(Some("bob".to_string()), DenyReason::UserInactive)]
    );
    let counted = gw.audit.strangers(100).await.unwrap();
    assert_eq!(counted.len(), 1);
    assert_eq!(counted[0].source, "192.0.2.7");
    assert_eq!(counted[0].refused_sessions, 2);
}
