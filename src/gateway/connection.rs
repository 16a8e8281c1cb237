//! One connection, the same over every transport (`transport::Connection`):
//! one connection is one session. Its first stream is the control stream
//! (`Hello`/`Welcome`, later `StreamClosed` and `SessionClosed` notices), or
//! carries one `PushBundle` and its answer; every further stream carries one
//! `Open` and then the stream's bytes. QUIC and TLS differ only in how they
//! are accepted (`quic.rs`, `tls.rs`) and how a stream's bytes are shaped
//! (the pipes).

use super::pending::Phase;
use super::registry::Session;
use super::stream::OpenRequest;
use super::Gateway;
use crate::audit::Stranger;
use crate::transport::{
    read_body, read_frame, read_prefix, write_frame, BiStream, Connection, Grant, PipeWriter,
};
use edgegate_proto::frame::{self, Frame, PushResult, SessionEnd, CONN_PROTOCOL_ERROR};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};

/// How long the daemon lingers after its last answer for the client to
/// read it and close.
const LINGER: Duration = Duration::from_secs(5);

/// How long a push answered `busy` is given to read its answer and close.
const BUSY_LINGER: Duration = Duration::from_secs(2);

/// How long a session-closed notice may take to be written before the
/// connection closes anyway (a QUIC close code carries the reason too).
const NOTICE_FLUSH: Duration = Duration::from_millis(200);

/// A connection's first frame, or a push turned away before its body.
enum First {
    /// The frame (with the push slot, for a large push).
    Frame(BiStream, Frame, Option<tokio::sync::OwnedSemaphorePermit>),
    /// A large push while another one is being received.
    Busy(BiStream),
    /// A push over `max_bundle_size` (its announced frame length).
    TooLarge(BiStream, usize),
}

/// What the control stream's writer is asked to do.
enum Notice {
    /// Write this frame.
    Frame(Frame),
    /// Answer once everything before has been written.
    Flush(oneshot::Sender<()>),
}

/// Write notices on the control stream until the session ends.
async fn write_notices(mut control: PipeWriter, mut rx: mpsc::UnboundedReceiver<Notice>) {
    while let Some(n) = rx.recv().await {
        match n {
            Notice::Frame(f) => {
                if write_frame(&mut control, &f).await.is_err() {
                    break;
                }
            }
            Notice::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

impl Gateway {
    /// Serve an authenticated connection to its end. `phase` bounds its
    /// unauthenticated part (up to the first frame).
    pub(crate) async fn serve_connection(self: Arc<Self>, conn: Arc<dyn Connection>, phase: Phase) {
        let config = self.config();
        let limits = &config.limits;
        let Some(peer) = conn.peer() else {
            return conn.close(CONN_PROTOCOL_ERROR, "no client key");
        };
        let first = timeout(limits.first_frame_timeout, self.first_frame(&*conn, limits)).await;
        let (mut control, first, _push_slot) = match first {
            Ok(Some(First::Frame(control, f, slot))) => (control, f, slot),
            Ok(Some(First::Busy(control))) => {
                let busy = PushResult::Rejected {
                    code: "busy".into(),
                    message: "another bundle is being received; push again shortly".into(),
                };
                return self.refuse_push(&*conn, control, busy).await;
            }
            Ok(Some(First::TooLarge(control, len))) => {
                self.audit
                    .stranger(conn.remote().ip(), Stranger::RejectedPush);
                let max = limits.max_bundle_size;
                let too_large = PushResult::Rejected {
                    code: "too-large".into(),
                    message: format!("a push of {len} bytes exceeds max_bundle_size {max}"),
                };
                return self.refuse_push(&*conn, control, too_large).await;
            }
            _ => {
                self.audit.stranger(conn.remote().ip(), Stranger::Garbage);
                return conn.close(CONN_PROTOCOL_ERROR, "no valid first frame");
            }
        };
        // Handshake and first frame are the unauthenticated phase the
        // `Phase` bounds; a push or a session goes on without it.
        if !phase.finish() {
            return;
        }
        let ticket = match first {
            Frame::Hello { ticket } => ticket,
            Frame::PushBundle { bundle } => {
                self.answer_push(bundle, conn.remote(), &mut control.send)
                    .await;
                let _ = control.send.finish().await;
                let _ = timeout(LINGER, conn.closed()).await;
                return conn.close(0, "done");
            }
            _ => {
                self.audit.stranger(conn.remote().ip(), Stranger::Garbage);
                return conn.close(CONN_PROTOCOL_ERROR, "unexpected first frame");
            }
        };
        let opened = self
            .open_session(peer, &ticket, &*conn, &mut control.send)
            .await;
        let Some(session) = opened else {
            let _ = control.send.finish().await;
            let _ = timeout(LINGER, conn.closed()).await;
            return conn.close(0, "refused");
        };
        self.session_loop(&conn, &session, control.send).await;
        self.end_session(&session);
    }

    /// The connection's first stream and frame, within the unauthenticated
    /// phase. Only a push may be larger than an ordinary frame; its body is
    /// read only by the one push that holds the push slot (a second is
    /// answered `busy` before its body is read), with the connection's
    /// window raised for it: at most one bundle-sized body is in memory,
    /// whatever strangers send.
    async fn first_frame(
        &self,
        conn: &dyn Connection,
        limits: &crate::config::Limits,
    ) -> Option<First> {
        let mut control = conn.accept_bi().await.ok()?;
        let prefix = read_prefix(&mut control.recv).await.ok()??;
        let cap = limits
            .max_bundle_size
            .saturating_add(64)
            .min(frame::MAX_PUSH_FRAME);
        let fits = match frame::check_len(prefix, cap) {
            Ok(len) if len <= frame::MAX_FRAME => {
                let f = read_body(&mut control.recv, len, Vec::new()).await.ok()?;
                return Some(First::Frame(control, f, None));
            }
            Ok(len) => Ok(len),
            Err(frame::FrameError::TooLarge { len, .. }) => Err(len),
            Err(_) => return None,
        };
        // Only a push may be larger than an ordinary frame: its tag first.
        let tag = control.recv.read_u8().await.ok()?;
        if tag != frame::PUSH_TAG {
            return None;
        }
        let len = match fits {
            Ok(len) => len,
            // Too large for any push: told so, nothing more is read.
            Err(announced) => return Some(First::TooLarge(control, announced)),
        };
        let Ok(slot) = self.push_slot.clone().try_acquire_owned() else {
            return Some(First::Busy(control));
        };
        conn.grant(Grant::Push { bytes: len as u64 });
        let f = read_body(&mut control.recv, len, vec![tag]).await.ok()?;
        Some(First::Frame(control, f, Some(slot)))
    }

    /// Answer a push without reading its body (QUIC also tells the sender
    /// to stop), give the answer a moment to leave, close.
    async fn refuse_push(&self, conn: &dyn Connection, mut control: BiStream, answer: PushResult) {
        control.recv.stop(0);
        let _ = write_frame(&mut control.send, &Frame::PushResult(answer)).await;
        let _ = control.send.finish().await;
        let _ = timeout(BUSY_LINGER, conn.closed()).await;
        conn.close(0, "refused");
    }

    /// Accept the session's streams until it ends: by the daemon (a
    /// decision, a kill, the idle rule, shutdown), or by the client.
    async fn session_loop(
        self: &Arc<Self>,
        conn: &Arc<dyn Connection>,
        session: &Arc<Session>,
        control: PipeWriter,
    ) {
        // At most one notice per stream plus the session's own: bounded by
        // the stream limit.
        let (notices, notices_rx) = mpsc::unbounded_channel::<Notice>();
        tokio::spawn(write_notices(control, notices_rx));
        let mut ended = session.kill.subscribe();
        loop {
            // Read every turn: a reload may change it.
            let idle = self.config().limits.idle_timeout;
            // The idle rule, the same on every transport: no stream open
            // for `idle_timeout`. Re-checked at least every idle period:
            // streams opening and closing move the deadline.
            let deadline = session
                .idle_deadline(idle)
                .unwrap_or_else(|| crate::clock::after(Instant::now(), idle));
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    let still_idle = session
                        .idle_deadline(idle)
                        .is_some_and(|d| d <= Instant::now());
                    if still_idle {
                        session.end(SessionEnd::IdleTimeout);
                    }
                }
                bi = conn.accept_bi() => match bi {
                    Ok(stream) => {
                        let (gw, session, notices) = (self.clone(), session.clone(), notices.clone());
                        let conn = conn.clone();
                        tokio::spawn(async move { gw.serve_bi(conn, &session, stream, notices).await });
                    }
                    Err(_) => break,
                },
                _ = ended.changed() => {}
            }
            if let Some(end) = session.end_reason() {
                // Let the streams post their own notices first (bounded),
                // say why on the control stream, give it a moment to leave,
                // then close with the code that says it too.
                let settle = Instant::now() + NOTICE_FLUSH;
                while session.stream_count() > 0 && Instant::now() < settle {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let (flushed, flushed_rx) = oneshot::channel();
                let _ = notices.send(Notice::Frame(Frame::SessionClosed { reason: end }));
                let _ = notices.send(Notice::Flush(flushed));
                let _ = timeout(NOTICE_FLUSH, flushed_rx).await;
                // The client closes once it read the notice; closing first
                // could reach it before the streams' resets.
                let _ = timeout(NOTICE_FLUSH, conn.closed()).await;
                conn.close(end.conn_code(), end.as_str());
                break;
            }
        }
    }

    /// One data stream: its `Open`, then `serve_stream`; or `VpnOpen`,
    /// then `serve_vpn`.
    async fn serve_bi(
        self: &Arc<Self>,
        conn: Arc<dyn Connection>,
        session: &Arc<Session>,
        mut stream: BiStream,
        notices: mpsc::UnboundedSender<Notice>,
    ) {
        let id = stream.id;
        let open = timeout(
            self.config().limits.first_frame_timeout,
            read_frame(&mut stream.recv, frame::MAX_FRAME),
        )
        .await;
        let (service, destination) = match open {
            Ok(Ok(Some(Frame::Open {
                service,
                destination,
            }))) => (service, destination),
            Ok(Ok(Some(Frame::VpnOpen { datagrams }))) => {
                return self.serve_vpn(conn, session, stream, datagrams).await;
            }
            _ => {
                stream.recv.stop(CONN_PROTOCOL_ERROR);
                stream.send.abort().await;
                return;
            }
        };
        let open = OpenRequest {
            stream_id: id,
            service,
            destination,
        };
        self.serve_stream(session, open, stream.recv, stream.send, move |reason| {
            let _ = notices.send(Notice::Frame(Frame::StreamClosed { stream: id, reason }));
        })
        .await;
    }
}
