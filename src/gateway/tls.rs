//! The TLS-over-TCP listener, for networks that drop UDP: accept a TCP
//! connection, run the TLS 1.3 handshake (bounded), and multiplex the
//! session's streams over that one connection (`transport::MuxConn`), so a
//! TLS session is one TCP connection however many streams it carries. The
//! session itself is `serve_connection`'s (`connection.rs`), as for QUIC.

use super::pending::{Pending, Phase};
use super::Gateway;
use crate::tlsid::{self, AuthenticatedPeer};
use crate::transport::mux::{self, Growth, MuxConn, Side};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

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
            pending.spawn(remote.ip(), move |phase| {
                gw.tls_connection(tcp, remote, acceptor, phase)
            });
        }
    }

    async fn tls_connection(
        self: Arc<Self>,
        tcp: TcpStream,
        remote: std::net::SocketAddr,
        acceptor: TlsAcceptor,
        phase: Phase,
    ) {
        let _ = tcp.set_nodelay(true);
        mux::keep_alive(&tcp);
        // rustls reads the socket 4 KiB at a time: one read per TLS record
        // instead.
        let tcp = BufReader::with_capacity(READ_AHEAD, tcp);
        self.tls_session(tcp, remote, acceptor, phase).await;
    }

    /// The TLS session on any byte stream: a TCP connection, or a stream a
    /// relay opened (`relay_uplink.rs`), where the engineer runs the very
    /// same handshake end to end: the TLS 1.3 handshake (bounded), then the
    /// session's streams multiplexed over it and served as any other.
    pub(crate) async fn tls_session<IO>(
        self: Arc<Self>,
        io: IO,
        remote: std::net::SocketAddr,
        acceptor: TlsAcceptor,
        phase: Phase,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = self.config().limits.clone();
        let tls = match timeout(limits.handshake_timeout, acceptor.accept(io)).await {
            Ok(Ok(tls)) => tls,
            _ => return,
        };
        let peer = AuthenticatedPeer::from_tls(tls.get_ref().1);
        // yamux ends the whole connection when a peer opens more streams
        // than it allows, so allow twice the session's limit: a stream over
        // the limit is refused (`limit-exceeded`) and closed at once, long
        // before the multiplexer's own bound is near.
        let streams = limits.max_streams_per_session.saturating_add(2) * 2;
        let conn = MuxConn::new(tls, Side::Server, streams, Growth::ROUTER, peer, remote);
        self.serve_connection(Arc::new(conn), phase).await;
    }
}
