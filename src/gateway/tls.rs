//! The TLS-over-TCP fallback: every connection starts with `Hello`; it then
//! ends, holds the session (`Hold`: the connection that keeps an idle
//! session alive and carries its `SessionClosed`), or carries one `Open`
//! and the stream's bytes as `Data`/`Close` frames.

use super::pending::{Pending, Phase};
use super::registry::Session;
use super::stream::OpenRequest;
use super::Gateway;
use crate::tlsid::{self, AuthenticatedPeer};
use crate::transport::{read_frame, write_frame, PipeReader, PipeWriter};
use edgegate_proto::audit::Transport;
use edgegate_proto::frame::{self, Frame, SessionEnd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_rustls::TlsAcceptor;

static STREAM_IDS: AtomicU64 = AtomicU64::new(1);

/// Read-ahead under rustls: a full TLS record (16 KiB and its header) or more.
const READ_AHEAD: usize = 17 << 10;

impl Gateway {
    /// Accept TLS connections until shutdown.
    pub async fn serve_tls(self: Arc<Self>, listener: TcpListener) {
        let config = match tlsid::server_config(&self.identity) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::error!("tls: {e}");
                return;
            }
        };
        let acceptor = TlsAcceptor::from(config);
        let mut pending = Pending::new(self.config().limits.max_handshakes);
        let mut shutdown = self.shutdown_signal();
        loop {
            let (tcp, remote) = tokio::select! {
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("tls accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            let (gw, acceptor) = (self.clone(), acceptor.clone());
            pending.spawn(move |phase| gw.tls_connection(tcp, remote, acceptor, phase));
        }
    }

    async fn tls_connection(
        self: Arc<Self>,
        tcp: TcpStream,
        remote: std::net::SocketAddr,
        acceptor: TlsAcceptor,
        phase: Phase,
    ) {
        let config = self.config();
        let limits = &config.limits;
        let _ = tcp.set_nodelay(true);
        // rustls reads the socket 4 KiB at a time: one read per TLS record
        // instead (a connection is one stream; 16 KiB keeps idle ones small).
        let tcp = BufReader::with_capacity(READ_AHEAD, tcp);
        let mut tls = match timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            _ => return,
        };
        let Some(peer) = AuthenticatedPeer::from_tls(tls.get_ref().1) else {
            return;
        };
        let cap = limits
            .max_bundle_size
            .saturating_add(64)
            .min(frame::MAX_PUSH_FRAME);
        let first = timeout(limits.first_frame_timeout, read_frame(&mut tls, cap)).await;
        // Handshake and first frame are the unauthenticated phase the
        // `Phase` bounds.
        if !phase.finish() {
            return;
        }
        let ticket = match first {
            Ok(Ok(Some(Frame::Hello { ticket }))) => ticket,
            Ok(Ok(Some(Frame::PushBundle { bundle }))) => {
                self.answer_push(bundle, &mut tls).await;
                let _ = tls.shutdown().await;
                return;
            }
            _ => return,
        };
        let Some(session) = self
            .open_session(peer, &ticket, Transport::Tls, remote, &mut tls)
            .await
        else {
            let _ = tls.shutdown().await;
            return;
        };
        let mut kill = session.kill.subscribe();
        let next = tokio::select! {
            next = timeout(
                limits.first_frame_timeout,
                read_frame(&mut tls, frame::MAX_FRAME),
            ) => next,
            // The session ended while this connection had no stream yet.
            _ = async { kill.wait_for(|k| *k).await.is_ok() } => {
                let end = session.end_reason().unwrap_or(SessionEnd::Killed);
                let _ = write_frame(&mut tls, &Frame::SessionClosed { reason: end }).await;
                let _ = tls.shutdown().await;
                self.end_session(&session);
                return;
            }
        };
        if let Ok(Ok(Some(Frame::Hold))) = next {
            if session.try_hold() {
                hold(&session, tls).await;
            }
        } else if let Ok(Ok(Some(Frame::Open {
            service,
            destination,
        }))) = next
        {
            let open = OpenRequest {
                stream_id: STREAM_IDS.fetch_add(1, Ordering::Relaxed),
                service,
                destination,
            };
            let (r, w) = tokio::io::split(tls);
            self.serve_stream(
                &session,
                open,
                PipeReader::Framed(Box::new(r)),
                PipeWriter::Framed(Box::new(w)),
                |_| {},
            )
            .await;
        } else {
            let _ = tls.shutdown().await;
        }
        self.end_session(&session);
    }

    /// End a TLS session once no stream of it moved a byte, opened or
    /// closed for `idle_timeout` (QUIC's idle check is in `quic.rs`; a TLS
    /// session has a connection, hence a stream, whenever it exists).
    /// Returns when the session ends for any reason.
    pub(crate) async fn tls_idle_watch(self: Arc<Self>, session: Arc<Session>) {
        let mut kill = session.kill.subscribe();
        let (mut moved, _) = session.activity();
        let mut quiet_since = Instant::now();
        loop {
            let idle = self.config().limits.idle_timeout;
            let (now_moved, last_open_close) = session.activity();
            if now_moved != moved {
                (moved, quiet_since) = (now_moved, Instant::now());
            }
            let since = quiet_since.max(last_open_close);
            if since.elapsed() >= idle {
                session.end(SessionEnd::IdleTimeout);
                return;
            }
            // Bytes are only sampled: check a few times per period.
            let next = (since + idle).min(Instant::now() + idle / 4);
            tokio::select! {
                _ = sleep_until(next) => {}
                _ = async { kill.wait_for(|k| *k).await.is_ok() } => return,
            }
        }
    }
}

/// A connection that holds its session (`Hold`): nothing travels on it
/// until the session ends, when it carries `SessionClosed`. The client
/// closing it, or sending anything, lets go (and a new connection may
/// hold the session in its place, if the session lives on).
async fn hold<S>(session: &Session, mut tls: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut kill = session.kill.subscribe();
    let mut ended = None;
    tokio::select! {
        _ = async { kill.wait_for(|k| *k).await.is_ok() } => ended = session.end_reason(),
        // EOF, an error or an unexpected frame (at most a tiny one: a
        // holding connection has no business sending data).
        _ = read_frame(&mut tls, 16) => {}
    }
    // Bounded: a peer that vanished must not keep the session's last
    // connection (and so the session) around.
    let _ = timeout(std::time::Duration::from_secs(2), async {
        if let Some(reason) = ended {
            let _ = write_frame(&mut tls, &Frame::SessionClosed { reason }).await;
        }
        let _ = tls.shutdown().await;
    })
    .await;
    session.release_hold();
}
