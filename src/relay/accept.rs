//! The relay's listeners: QUIC and TLS over TCP (streams multiplexed by
//! yamux, as the tunnel's). Each bounds the unauthenticated phase as the
//! daemon does (`gateway/pending.rs`: capped, evicting the busiest
//! source), caps the accept rate, and reads the peer's first message: a
//! router's `Register` or an engineer's `Connect`.

use super::Relay;
use crate::gateway::pending::{Pending, Phase};
use crate::tlsid::{self, AuthenticatedPeer};
use crate::transport::mux::{self, Growth, MuxConn, Side};
use crate::transport::{relay_msg, Connection, QuicConn, RawStream};
use edgegate_proto::frame::CONN_SHUTDOWN;
use edgegate_proto::relay::{RelayMsg, RelayRefusal, PUSH_TAG, RELAY_ALPN};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};
use tokio_rustls::TlsAcceptor;

/// Read-ahead under rustls: a full TLS record.
const READ_AHEAD: usize = 17 << 10;

/// How long a refusal may take to reach the peer before the connection is
/// closed under it.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

/// A token bucket: `rate` new connections a second, a burst of as many.
struct Rate {
    rate: f64,
    tokens: f64,
    last: Instant,
}

/// Seconds of silence before the relay's first TCP keep-alive probe on a
/// TLS connection: longer than a router's default TLS ping interval.
const TLS_KEEP_IDLE: u32 = 180;

impl Rate {
    fn new(rate: usize) -> Rate {
        Rate {
            rate: rate as f64,
            tokens: rate as f64,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }
}

impl Relay {
    /// Accept QUIC connections until shutdown.
    pub(super) async fn serve_quic(self: Arc<Self>, endpoint: quinn::Endpoint) {
        let limits = self.config.limits.clone();
        let mut pending = Pending::new(limits.max_handshakes);
        let mut rate = Rate::new(limits.accept_rate);
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let incoming = tokio::select! {
                i = endpoint.accept() => match i { Some(i) => i, None => break },
                _ = shutdown.changed() => break,
            };
            if !rate.take() {
                incoming.refuse();
                continue;
            }
            // Past half the slots a source must prove its address (QUIC
            // Retry), so spoofed Initials cost a packet, not a slot.
            if pending.len() * 2 >= pending.cap() && !incoming.remote_address_validated() {
                if incoming.may_retry() {
                    let _ = incoming.retry();
                } else {
                    incoming.ignore();
                }
                continue;
            }
            let source = incoming.remote_address().ip();
            let relay = self.clone();
            pending.spawn(source, move |phase| relay.quic_connection(incoming, phase));
        }
        // Routers were told `GoingAway`; let it leave before the close.
        tokio::time::sleep(Duration::from_millis(200)).await;
        endpoint.close(quinn::VarInt::from_u32(CONN_SHUTDOWN), b"shutdown");
    }

    async fn quic_connection(self: Arc<Self>, incoming: quinn::Incoming, phase: Phase) {
        let limit = self.config.limits.handshake_timeout;
        let Ok(connecting) = incoming.accept() else {
            return;
        };
        let Ok(Ok(conn)) = timeout(limit, connecting).await else {
            return;
        };
        self.first_message(Arc::new(QuicConn::new(conn, None)), phase)
            .await;
    }

    /// Accept TLS connections until shutdown.
    pub(super) async fn serve_tls(self: Arc<Self>, listener: TcpListener) {
        let config = match tlsid::server_config_alpn(&self.identity, RELAY_ALPN) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::error!("tls: {e}");
                return;
            }
        };
        let acceptor = TlsAcceptor::from(config);
        let limits = self.config.limits.clone();
        let mut pending = Pending::new(limits.max_handshakes);
        let mut rate = Rate::new(limits.accept_rate);
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let (tcp, remote) = tokio::select! {
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("tls accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            if !rate.take() {
                continue;
            }
            let (relay, acceptor) = (self.clone(), acceptor.clone());
            pending.spawn(remote.ip(), move |phase| {
                relay.tls_connection(tcp, remote, acceptor, phase)
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
        // A router over TLS pings every 6 × its keep-alive (150 s by
        // default): a probe of ours in between would double its idle
        // traffic. A vanished peer is noticed within 180 + 3 × 10 s.
        mux::keep_alive_after(&tcp, TLS_KEEP_IDLE);
        let tcp = BufReader::with_capacity(READ_AHEAD, tcp);
        let limit = self.config.limits.handshake_timeout;
        let Ok(Ok(tls)) = timeout(limit, acceptor.accept(tcp)).await else {
            return;
        };
        let peer = AuthenticatedPeer::from_tls(tls.get_ref().1);
        // The peer may open one stream (the server side grants no more);
        // the relay opens one per relayed session towards a router.
        let streams = self.config.limits.max_sessions_per_router + 2;
        let conn = MuxConn::new(tls, Side::Server, streams, Growth::RELAY, peer, remote);
        self.first_message(Arc::new(conn), phase).await;
    }

    /// The peer's first stream and message, within the handshake timeout;
    /// then the unauthenticated phase is over and the message is served.
    async fn first_message(self: Arc<Self>, conn: Arc<dyn Connection>, phase: Phase) {
        let Some(peer) = conn.peer() else {
            conn.close(0, "no client key");
            return;
        };
        // A push may be bundle-sized, while a slot for its body is free.
        let slot = self.push_slots.clone().try_acquire_owned().ok();
        let large = slot
            .as_ref()
            .map(|_| (PUSH_TAG, self.config.limits.max_bundle_size + 64));
        let first = async {
            let mut raw = conn.accept_bi().await?.into_raw();
            let msg = relay_msg::read_allowing(&mut raw, large).await?;
            Ok::<_, std::io::Error>((raw, msg))
        };
        let limit = self.config.limits.handshake_timeout;
        let (raw, msg) = match timeout(limit, first).await {
            Ok(Ok(first)) => first,
            _ => {
                conn.close(0, "no first message");
                return;
            }
        };
        drop(slot);
        if !phase.finish() {
            return;
        }
        match msg {
            RelayMsg::PushBundle { bundle, wait } => self.push(conn, raw, bundle, wait).await,
            RelayMsg::Register { enrollment } => self.router(conn, raw, peer, enrollment).await,
            RelayMsg::Connect { ticket } => self.engineer(conn, raw, peer, ticket).await,
            _ => {
                let why = "expected Register or Connect";
                refuse(&*conn, raw, RelayRefusal::Protocol, why).await;
            }
        }
    }
}

/// Answer `Refused`, give it a moment to arrive (the peer closes on
/// reading it), then close.
pub(super) async fn refuse(
    conn: &dyn Connection,
    mut raw: RawStream,
    reason: RelayRefusal,
    detail: &str,
) {
    let mut detail = detail.to_string();
    if detail.len() > edgegate_proto::relay::MAX_DETAIL {
        let mut end = edgegate_proto::relay::MAX_DETAIL;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
    }
    tracing::debug!(remote = %conn.remote(), "refused: {reason}: {detail}");
    let msg = RelayMsg::Refused { reason, detail };
    if relay_msg::write(&mut raw, &msg).await.is_ok() {
        let _ = raw.shutdown().await;
        let _ = timeout(REFUSAL_LINGER, conn.closed()).await;
    }
    conn.close(0, reason.as_str());
}
