//! Whole sessions in process, on paused tokio time: the daemon's
//! `serve_connection` over a multiplexed connection on an in-memory pipe,
//! the engineer's side speaking the tunnel protocol on the other end, and a
//! real backend socket. The idle rule and a kill as the client sees them.

use super::*;
use crate::gateway::pending::Pending;
use crate::transport::mux::MuxConn;
use crate::transport::{expect_frame, write_frame, BiStream, Connection};
use edgegate_proto::audit::CloseReason;
use edgegate_proto::frame::{Frame, SessionEnd, MAX_FRAME};
use std::time::Duration;
use tokio::time::{timeout, Instant};

const T0: u64 = 1_900_000_000;

/// A gateway on paused time whose plc service is a real backend.
async fn world(dir: &std::path::Path, limits: &str) -> Arc<Gateway> {
    let gw = gateway_on(dir, limits, Clock::following_tokio(T0)).await;
    let addr = holding_backend().await;
    let b = bundle_with(1, T0, |b| {
        b.device.services[0].target = Target::Endpoint {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    });
    assert!(matches!(
        gw.push_bundle(b).await,
        PushResult::Accepted { .. }
    ));
    gw
}

/// Bob's session (client key and ticket of `seed`): the daemon serves one end of an in-memory connection,
/// the test speaks on the other. Returns the client's connection and its
/// control stream, after `Welcome`.
async fn session(gw: &Arc<Gateway>, pending: &mut Pending, seed: u8) -> (MuxConn, BiStream) {
    let (key, ticket) = ticket_bytes("bob", seed, T0, |_| {});
    let client = in_memory_connection(gw, pending, key);
    let mut control = client.open_bi().await.unwrap();
    write_frame(&mut control.send, &Frame::Hello { ticket })
        .await
        .unwrap();
    match expect_frame(&mut control.recv, MAX_FRAME).await.unwrap() {
        Frame::Welcome(_) => {}
        other => panic!("{other:?}"),
    }
    (client, control)
}

async fn open_plc(client: &MuxConn) -> BiStream {
    let mut s = client.open_bi().await.unwrap();
    let open = Frame::Open {
        service: "plc".into(),
        destination: None,
    };
    write_frame(&mut s.send, &open).await.unwrap();
    let answer = expect_frame(&mut s.recv, MAX_FRAME).await.unwrap();
    assert_eq!(
        answer,
        Frame::Opened {
            level: Level::Manage
        }
    );
    s
}

/// The idle rule, one for both transports: a session ends once no stream
/// has been open for `idle_timeout`; an open stream keeps it however quiet.
#[tokio::test(start_paused = true)]
async fn a_session_ends_when_no_stream_was_open_for_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let gw = world(dir.path(), "[limits]\nidle_timeout = \"60s\"\n").await;
    let mut pending = Pending::new(4);
    let (client, mut control) = session(&gw, &mut pending, 3).await;
    let stream = open_plc(&client).await;
    // Ten idle periods with a stream open that moves nothing: nothing ends.
    let quiet = timeout(
        Duration::from_secs(600),
        control.recv.read_chunk(&mut vec![0; 64]),
    )
    .await;
    assert!(quiet.is_err(), "{quiet:?}");
    assert_eq!(gw.session_count(), 1);
    // The stream closes; the session ends one idle period later.
    drop(stream);
    let closed_at = Instant::now();
    let end = expect_frame(&mut control.recv, MAX_FRAME).await.unwrap();
    assert_eq!(
        end,
        Frame::SessionClosed {
            reason: SessionEnd::IdleTimeout
        }
    );
    let after = closed_at.elapsed();
    assert!(
        after >= Duration::from_secs(59) && after <= Duration::from_secs(61),
        "{after:?}"
    );
}

/// A kill reaches the client as `SessionClosed{killed}` on the control
/// stream at once, the open stream is audited as killed; a client that just
/// goes away has its stream audited as gone, never as killed.
#[tokio::test(start_paused = true)]
async fn a_kill_reaches_the_client_and_a_disconnect_is_audited_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let gw = world(dir.path(), "").await;
    let mut pending = Pending::new(4);
    let (client, mut control) = session(&gw, &mut pending, 3).await;
    let _stream = open_plc(&client).await;
    let id = gw.sessions()[0].id;
    let killed_at = Instant::now();
    assert!(gw.kill(id));
    let end = expect_frame(&mut control.recv, MAX_FRAME).await.unwrap();
    assert_eq!(
        end,
        Frame::SessionClosed {
            reason: SessionEnd::Killed
        }
    );
    // At once: within the session's bounded wind-down (its streams' own
    // notices, at most 200 ms, then the notice's flush, at most 200 ms),
    // not after any timeout. (Paused time jumps to the next timer whenever
    // the runtime waits for a thread, so no tighter bound is meaningful.)
    assert!(killed_at.elapsed() < Duration::from_millis(500));
    client.close(0, "bye");

    // A second session (another ticket: the killed one stays barred)
    // whose client vanishes.
    let (gone, _control) = session(&gw, &mut pending, 4).await;
    let _open = open_plc(&gone).await;
    gone.close(0, "gone");
    drop(gone);
    // Bounded in real time: paused time runs ahead while the audit writer
    // (a thread) works.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let closes = loop {
        let closes = stream_closes(&gw).await;
        if closes.len() == 2 || std::time::Instant::now() > deadline {
            break closes;
        }
        tokio::task::yield_now().await;
    };
    // The client's side went away: whichever the daemon noticed first, the
    // connection's end or the stream's, it is no kill.
    assert_eq!(closes.len(), 2, "{closes:?}");
    assert_eq!(closes[0], CloseReason::Killed);
    let gone = [
        CloseReason::Disconnected,
        CloseReason::Error("transport".into()),
    ];
    assert!(gone.contains(&closes[1]), "{closes:?}");
}
