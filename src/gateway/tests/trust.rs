//! A hostile network cannot wedge the push path or brick the clock: a
//! second push is `busy` at once on both entry points, and a verified
//! ticket raises the time floor within its ceiling, so a router that
//! rebooted without a clock admits a fresh ticket.

use super::*;
use crate::control::{ControlHandler, PeerCred, Request, Response};
use crate::gateway::pending::Pending;
use crate::gateway::ControlView;
use crate::transport::{expect_frame, write_frame, Connection};
use edgegate_proto::frame::{Frame, MAX_FRAME};

const DAY: u64 = 86_400;
/// A plausible wall clock (2030).
const T0: u64 = 1_900_000_000;

fn busy(r: &PushResult) -> bool {
    matches!(r, PushResult::Rejected { code, .. } if code == "busy")
}

/// The first frame of a connection and the answer, over an in-memory
/// multiplexed connection served by the gateway.
async fn first_frame(gw: &Arc<Gateway>, pending: &mut Pending, seed: u8, frame: Frame) -> Frame {
    let client = in_memory_connection(gw, pending, testkit::public(&testkit::key(seed)));
    let mut control = client.open_bi().await.unwrap();
    write_frame(&mut control.send, &frame).await.unwrap();
    let answer = expect_frame(&mut control.recv, MAX_FRAME).await.unwrap();
    drop(client);
    answer
}

fn control_push(gw: &Arc<Gateway>, bytes: Vec<u8>) -> impl std::future::Future<Output = Response> {
    let view = ControlView(gw.clone());
    let peer = PeerCred {
        uid: 0,
        gid: 0,
        pid: None,
    };
    async move { view.handle(Request::PushBundle { bytes }, peer).await }
}

#[tokio::test(start_paused = true)]
async fn a_second_push_is_busy_at_once_over_the_tunnel_and_the_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_on(dir.path(), "", Clock::following_tokio(T0)).await;
    let mut pending = Pending::new(8);
    // A push being installed holds the slot.
    let installing = gw.push_lock.try_lock().unwrap();
    let b = bundle_with(1, T0, |_| {});
    let answer = first_frame(
        &gw,
        &mut pending,
        3,
        Frame::PushBundle { bundle: b.clone() },
    )
    .await;
    assert!(
        matches!(&answer, Frame::PushResult(r) if busy(r)),
        "{answer:?}"
    );
    match control_push(&gw, b.clone()).await {
        Response::Push(r) => assert!(busy(&r), "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert!(gw.active().is_none());
    // Once the install is done, the same push goes through.
    drop(installing);
    match control_push(&gw, b).await {
        Response::Push(r) => assert_eq!(r, PushResult::Accepted { serial: 1 }),
        other => panic!("{other:?}"),
    }
}

/// Bob's `Hello` with a ticket issued at `t`; the answer.
async fn hello(gw: &Arc<Gateway>, pending: &mut Pending, t: u64) -> Frame {
    let (_, ticket) = ticket_bytes("bob", 4, t, |_| {});
    first_frame(gw, pending, 4, Frame::Hello { ticket }).await
}

#[tokio::test(start_paused = true)]
async fn after_a_reboot_without_a_clock_a_fresh_ticket_is_admitted() {
    let dir = tempfile::tempdir().unwrap();
    let last_week = T0 - 7 * DAY;
    {
        // Last week, with a clock: a bundle valid for two months.
        let opened =
            Store::open(dir.path(), &testkit::trust(&authority()), "r1", |_| Ok(())).unwrap();
        let b = bundle_with(1, last_week, |b| b.not_after = T0 + 60 * DAY);
        let done = opened.store.accept(b, last_week, |_| Ok(())).unwrap();
        assert!(matches!(done, crate::store::Accepted::Installed { .. }));
    }
    // Rebooted with the wall clock at 1970: the floor is last week's.
    let gw = gateway_on(dir.path(), "", Clock::following_tokio(0)).await;
    assert_eq!(gw.now(), last_week - 60);
    let mut pending = Pending::new(8);
    let answer = hello(&gw, &mut pending, T0).await;
    assert!(matches!(answer, Frame::Welcome(_)), "{answer:?}");
    assert!(gw.now() > T0 - DAY, "the floor stayed at {}", gw.now());
}

#[tokio::test(start_paused = true)]
async fn a_ticket_dated_2099_moves_the_floor_no_further_than_the_wall_clock() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_on(dir.path(), "", Clock::following_tokio(T0)).await;
    assert!(matches!(
        gw.push_bundle(bundle_with(1, T0, |b| b.not_after = T0 + 60 * DAY))
            .await,
        PushResult::Accepted { serial: 1 }
    ));
    let mut pending = Pending::new(8);
    let answer = hello(&gw, &mut pending, 4_070_908_800).await;
    assert!(
        matches!(
            answer,
            Frame::RefusedWithDetail {
                reason: DenyReason::TicketExpired,
                ..
            }
        ),
        "{answer:?}"
    );
    assert_eq!(gw.store.time_floor(), T0);
    // A fresh ticket is still admitted.
    let answer = hello(&gw, &mut pending, T0).await;
    assert!(matches!(answer, Frame::Welcome(_)), "{answer:?}");
}

/// A bundle-sized push while another one's body is being received is
/// answered `busy` before its own body is read (at most one in memory).
#[tokio::test(start_paused = true)]
async fn a_large_push_while_another_is_received_is_busy_unread() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_on(dir.path(), "", Clock::following_tokio(T0)).await;
    let mut pending = Pending::new(8);
    let receiving = gw.push_slot.clone().try_acquire_owned().unwrap();
    let big = Frame::PushBundle {
        bundle: vec![7; 200 << 10],
    };
    let answer = first_frame(&gw, &mut pending, 3, big.clone()).await;
    assert!(
        matches!(&answer, Frame::PushResult(r) if busy(r)),
        "{answer:?}"
    );
    drop(receiving);
    // Free again: the junk is read and refused on its merits.
    let answer = first_frame(&gw, &mut pending, 4, big).await;
    assert!(
        matches!(&answer, Frame::PushResult(r) if !busy(r)),
        "{answer:?}"
    );
}
