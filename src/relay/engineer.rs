//! An engineer's relayed session: check the ticket (the trusted keys'
//! threshold, its validity window, bound to the key the handshake proved),
//! open a stream on the registered router's connection, write the
//! `Incoming` header there, answer `Connected`, and copy bytes both ways
//! with bounded buffers until either side ends. The bytes are the
//! engineer's and the router's own TLS session: the relay cannot read them
//! and does not try.

use super::accept::refuse;
use super::registry::{Route, SessionSlot, Traffic};
use super::Relay;
use crate::tlsid::AuthenticatedPeer;
use crate::transport::{relay_msg, Connection, RawStream};
use edgegate_proto::relay::{Incoming, RelayMsg, RelayRefusal};
use edgegate_proto::{KeyRole, VerifiedTicket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

/// An admitted engineer: the ticket's device, the route to its router (its
/// traffic counters), and the session's slot in that router's limit.
type Admitted = (String, Route, SessionSlot);

/// A refusal and its line.
type Refused = (RelayRefusal, String);

/// How long opening a stream to the router may take.
const OPEN_WAIT: Duration = Duration::from_secs(10);

/// Copy buffer per direction: four TLS records, so a bulk stream passes
/// the relay in few large writes.
const COPY_BUFFER: usize = 64 << 10;

impl Relay {
    /// Serve an engineer's connection from its `Connect` on.
    pub(super) async fn engineer(
        self: Arc<Self>,
        conn: Arc<dyn Connection>,
        mut down: RawStream,
        peer: AuthenticatedPeer,
        ticket: Vec<u8>,
    ) {
        let remote = conn.remote();
        let (device, router, _slot) = match self.admit(&peer, &ticket) {
            Ok(admitted) => admitted,
            Err((reason, detail)) => {
                tracing::info!(%remote, "engineer refused: {reason}: {detail}");
                return refuse(&*conn, down, reason, &detail).await;
            }
        };
        let header = RelayMsg::Incoming(Incoming {
            engineer: *peer.key(),
            remote,
        });
        let opened = async {
            let mut up = router.conn.open_bi().await?.into_raw();
            relay_msg::write(&mut up, &header).await?;
            Ok::<_, std::io::Error>(up)
        };
        let up = match timeout(OPEN_WAIT, opened).await {
            Ok(Ok(up)) => up,
            _ => {
                let why = format!("the router of device {device:?} did not answer");
                return refuse(&*conn, down, RelayRefusal::RouterOffline, &why).await;
            }
        };
        if relay_msg::write(&mut down, &RelayMsg::Connected)
            .await
            .is_err()
        {
            return;
        }
        tracing::debug!(%remote, device, "relaying");
        let down = Counted {
            io: down,
            traffic: router.traffic.clone(),
        };
        relay_both_ways(down, up).await;
        tracing::debug!(%remote, device, "relayed session ended");
        conn.close(0, "relayed session ended");
    }

    /// The ticket's checks and the route, or the refusal.
    fn admit(&self, peer: &AuthenticatedPeer, ticket: &[u8]) -> Result<Admitted, Refused> {
        let trust = self.authority.role(KeyRole::Ticket);
        let verified = VerifiedTicket::verify(ticket, trust)
            .map_err(|e| (RelayRefusal::BadTicket, e.detail()))?;
        let t = verified.ticket();
        let now = self.now();
        if now < t.issued_at.saturating_sub(crate::policy::SKEW) || now >= t.expires_at {
            let why = format!(
                "the ticket is valid from {} until {}, it is now {now}",
                t.issued_at, t.expires_at
            );
            return Err((RelayRefusal::TicketExpired, why));
        }
        if t.client_key != *peer.key() {
            let why = format!(
                "the ticket is bound to {}, this connection proved {}",
                t.client_key,
                peer.key()
            );
            return Err((RelayRefusal::NotBound, why));
        }
        let route = self.registry.route(&t.device).ok_or_else(|| {
            let why = format!("no router of device {:?} is registered here", t.device);
            (RelayRefusal::RouterOffline, why)
        })?;
        let limit = self.config.limits.max_sessions_per_router;
        let slot = route.slot(limit).ok_or_else(|| {
            let why = format!("device {:?} has {limit} relayed sessions open", t.device);
            (RelayRefusal::Limit, why)
        })?;
        Ok((t.device.clone(), route, slot))
    }
}

/// Copy both ways until both directions ended, or one ended and the other
/// did not follow within [`LINGER`]: a TLS session over a relayed stream
/// ends with a close from one side, and a peer that vanished without
/// finishing its direction must not hold the router's session slot until
/// its transport times out.
async fn relay_both_ways(down: Counted, up: RawStream) {
    let (down_r, mut down_w) = tokio::io::split(down);
    let (up_r, mut up_w) = tokio::io::split(up);
    let to_router = async {
        let mut from = tokio::io::BufReader::with_capacity(COPY_BUFFER, down_r);
        let _ = tokio::io::copy_buf(&mut from, &mut up_w).await;
        let _ = up_w.shutdown().await;
    };
    let to_engineer = async {
        let mut from = tokio::io::BufReader::with_capacity(COPY_BUFFER, up_r);
        let _ = tokio::io::copy_buf(&mut from, &mut down_w).await;
        let _ = down_w.shutdown().await;
    };
    tokio::pin!(to_router, to_engineer);
    tokio::select! {
        () = &mut to_router => drop(timeout(LINGER, to_engineer).await),
        () = &mut to_engineer => drop(timeout(LINGER, to_router).await),
    }
}

/// How long one direction of a relayed stream may outlive the other.
const LINGER: Duration = Duration::from_secs(5);

/// The engineer's side of a relayed stream, counting what passes into the
/// registration's traffic as it passes (`edgegate relay status`).
struct Counted {
    io: RawStream,
    traffic: Arc<Traffic>,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.traffic.to_router.fetch_add(n, Ordering::Relaxed);
        polled
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = polled {
            self.traffic
                .from_router
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
