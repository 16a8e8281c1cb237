//! The QUIC side: one connection is one session. The first bidirectional
//! stream is the control stream (`Hello`/`Welcome`, later `StreamClosed`
//! notices); every further one carries one `Open` and then raw bytes.

use super::pending::{Pending, Phase};
use super::registry::Session;
use super::stream::OpenRequest;
use super::Gateway;
use crate::tlsid::AuthenticatedPeer;
use crate::transport::{read_frame, write_frame, PipeReader, PipeWriter};
use edgegate_proto::audit::Transport;
use edgegate_proto::frame::{self, Frame, SessionEnd, CONN_PROTOCOL_ERROR, CONN_SHUTDOWN};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

/// How long the daemon lingers after its last answer for the client to
/// read it and close.
const LINGER: Duration = Duration::from_secs(5);

/// How long a session-closed notice may take to be written before the
/// connection closes anyway (the close code carries the reason too).
const NOTICE_FLUSH: Duration = Duration::from_millis(200);

/// What the control stream's writer is asked to do.
enum Notice {
    /// Write this frame.
    Frame(Frame),
    /// Answer once everything before has been written.
    Flush(oneshot::Sender<()>),
}

/// Write notices on the control stream until the session ends.
async fn write_notices(mut control: quinn::SendStream, mut rx: mpsc::UnboundedReceiver<Notice>) {
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

fn close(conn: &quinn::Connection, code: u32, why: &str) {
    conn.close(quinn::VarInt::from_u32(code), why.as_bytes());
}

impl Gateway {
    /// Accept QUIC connections until shutdown.
    pub async fn serve_quic(self: Arc<Self>, endpoint: quinn::Endpoint) {
        let mut pending = Pending::new(self.config().limits.max_handshakes);
        let mut shutdown = self.shutdown_signal();
        loop {
            let incoming = tokio::select! {
                i = endpoint.accept() => match i { Some(i) => i, None => break },
                _ = shutdown.changed() => break,
            };
            let gw = self.clone();
            pending.spawn(move |phase| gw.quic_connection(incoming, phase));
        }
        endpoint.close(quinn::VarInt::from_u32(CONN_SHUTDOWN), b"shutdown");
    }

    async fn quic_connection(self: Arc<Self>, incoming: quinn::Incoming, phase: Phase) {
        let config = self.config();
        let limits = &config.limits;
        let remote = incoming.remote_address();
        let conn = match incoming.accept() {
            Ok(connecting) => match timeout(limits.handshake_timeout, connecting).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, "quic handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "quic handshake timed out");
                    return;
                }
            },
            Err(e) => {
                tracing::debug!(%remote, "quic accept failed: {e}");
                return;
            }
        };
        let Some(peer) = AuthenticatedPeer::from_quic(&conn) else {
            return close(&conn, CONN_PROTOCOL_ERROR, "no client key");
        };
        let first = timeout(limits.first_frame_timeout, async {
            let (send, mut recv) = conn.accept_bi().await.ok()?;
            let cap = limits
                .max_bundle_size
                .saturating_add(64)
                .min(frame::MAX_PUSH_FRAME);
            let f = read_frame(&mut recv, cap).await.ok()??;
            Some((send, f))
        })
        .await;
        let Ok(Some((mut send, first))) = first else {
            return close(&conn, CONN_PROTOCOL_ERROR, "no valid first frame");
        };
        // Handshake and first frame are the unauthenticated phase the
        // `Phase` bounds; a push or a session goes on without it.
        if !phase.finish() {
            return;
        }
        let ticket = match first {
            Frame::Hello { ticket } => ticket,
            Frame::PushBundle { bundle } => {
                self.answer_push(bundle, &mut send).await;
                let _ = send.finish();
                let _ = timeout(LINGER, conn.closed()).await;
                return;
            }
            _ => return close(&conn, CONN_PROTOCOL_ERROR, "unexpected first frame"),
        };
        let Some(session) = self
            .open_session(peer, &ticket, Transport::Quic, remote, &mut send)
            .await
        else {
            let _ = send.finish();
            let _ = timeout(LINGER, conn.closed()).await;
            return;
        };
        self.quic_session(&conn, &session, send).await;
        self.end_session(&session);
    }

    async fn quic_session(
        self: &Arc<Self>,
        conn: &quinn::Connection,
        session: &Arc<Session>,
        control: quinn::SendStream,
    ) {
        // At most one notice per stream plus the session's own: bounded by
        // the stream limit.
        let (notices, notices_rx) = mpsc::unbounded_channel::<Notice>();
        tokio::spawn(write_notices(control, notices_rx));
        let mut kill = session.kill.subscribe();
        loop {
            // Read every turn: a reload may change it.
            let idle = self.config().limits.idle_timeout;
            // Re-checked at least every idle period: streams opening and
            // closing move the deadline.
            let deadline = session
                .idle_deadline(idle)
                .unwrap_or_else(|| tokio::time::Instant::now() + idle);
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    let still_idle = session
                        .idle_deadline(idle)
                        .is_some_and(|d| d <= tokio::time::Instant::now());
                    if still_idle {
                        session.end(SessionEnd::IdleTimeout);
                    }
                }
                bi = conn.accept_bi() => match bi {
                    Ok((send, recv)) => {
                        let (gw, session, notices) = (self.clone(), session.clone(), notices.clone());
                        tokio::spawn(async move { gw.quic_stream(&session, send, recv, notices).await });
                    }
                    Err(_) => break,
                },
                _ = kill.changed() => {}
            }
            if let Some(end) = session.end_reason() {
                // Let the streams post their own notices first (bounded),
                // say why on the control stream, give it a moment to leave,
                // then close with the code that says it too.
                let settle = tokio::time::Instant::now() + NOTICE_FLUSH;
                while session.stream_count() > 0 && tokio::time::Instant::now() < settle {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let (flushed, flushed_rx) = oneshot::channel();
                let _ = notices.send(Notice::Frame(Frame::SessionClosed { reason: end }));
                let _ = notices.send(Notice::Flush(flushed));
                let _ = timeout(NOTICE_FLUSH, flushed_rx).await;
                // The client closes once it read the notice; closing first
                // could reach it before the streams' resets.
                let _ = timeout(NOTICE_FLUSH, conn.closed()).await;
                close(conn, end.conn_code(), end.as_str());
                break;
            }
        }
    }

    async fn quic_stream(
        &self,
        session: &Arc<Session>,
        send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        notices: mpsc::UnboundedSender<Notice>,
    ) {
        let stream = u64::from(send.id());
        let open = timeout(
            self.config().limits.first_frame_timeout,
            read_frame(&mut recv, frame::MAX_FRAME),
        )
        .await;
        let Ok(Ok(Some(Frame::Open {
            service,
            destination,
        }))) = open
        else {
            let _ = recv.stop(quinn::VarInt::from_u32(CONN_PROTOCOL_ERROR));
            return;
        };
        let open = OpenRequest {
            stream_id: stream,
            service,
            destination,
        };
        self.serve_stream(
            session,
            open,
            PipeReader::Quic(recv),
            PipeWriter::Quic(send),
            move |reason| {
                let _ = notices.send(Notice::Frame(Frame::StreamClosed { stream, reason }));
            },
        )
        .await;
    }
}
