//! The QUIC listener: accept connections, bound their handshakes, and hand
//! each established one to `serve_connection` (`connection.rs`).

use super::pending::{Pending, Phase};
use super::Gateway;
use crate::transport::QuicConn;
use edgegate_proto::frame::CONN_SHUTDOWN;
use std::sync::Arc;
use tokio::time::timeout;

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
            let source = incoming.remote_address().ip();
            // Past half the handshake slots, a source must prove its
            // address (QUIC Retry: one round trip, no state kept here) so
            // that spoofed Initials cost a packet, not a slot.
            if pending.len() * 2 >= pending.cap() && !incoming.remote_address_validated() {
                if incoming.may_retry() {
                    let _ = incoming.retry();
                } else {
                    incoming.ignore();
                }
                continue;
            }
            let gw = self.clone();
            pending.spawn(source, move |phase| gw.quic_connection(incoming, phase));
        }
        endpoint.close(quinn::VarInt::from_u32(CONN_SHUTDOWN), b"shutdown");
    }

    async fn quic_connection(self: Arc<Self>, incoming: quinn::Incoming, phase: Phase) {
        let limit = self.config().limits.handshake_timeout;
        let remote = incoming.remote_address();
        let conn = match incoming.accept() {
            Ok(connecting) => match timeout(limit, connecting).await {
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
        self.serve_connection(Arc::new(QuicConn::new(conn, None)), phase)
            .await;
    }
}
