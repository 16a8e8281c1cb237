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
use crate::transport::{relay_msg, Connection, PipeReader, PipeWriter, RawStream};
use edgegate_proto::relay::{Incoming, RelayMsg, RelayRefusal};
use edgegate_proto::{KeyRole, VerifiedTicket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// An admitted engineer: the ticket's device, the route to its router (its
/// traffic counters), and the session's slot in that router's limit.
type Admitted = (String, Route, SessionSlot);

/// A refusal and its line.
type Refused = (RelayRefusal, String);

/// How long opening a stream to the router may take.
const OPEN_WAIT: Duration = Duration::from_secs(10);

/// The most one direction moves at once: a QUIC chunk taken whole, or a
/// copy buffer of four TLS records, so a bulk stream passes the relay in
/// few large writes.
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
        relay_both_ways(down, up, &router.traffic).await;
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
/// its transport times out. What passes is counted into the registration's
/// traffic as it passes (`edgegate relay status`).
async fn relay_both_ways(down: RawStream, up: RawStream, traffic: &Traffic) {
    let (down_r, down_w) = down.into_inner();
    let (up_r, up_w) = up.into_inner();
    let to_router = copy_one_way(down_r, up_w, &traffic.to_router);
    let to_engineer = copy_one_way(up_r, down_w, &traffic.from_router);
    tokio::pin!(to_router, to_engineer);
    tokio::select! {
        () = &mut to_router => drop(timeout(LINGER, to_engineer).await),
        () = &mut to_engineer => drop(timeout(LINGER, to_router).await),
    }
}

/// Copy one direction until its source ends or either side fails, then
/// end the destination's direction. QUIC to QUIC moves quinn's own
/// received chunks into the other connection's send buffer: the relay
/// copies no byte itself. Any other pair goes through a [`COPY_BUFFER`].
async fn copy_one_way(from: PipeReader, mut to: PipeWriter, count: &AtomicU64) {
    match (from, &mut to) {
        (PipeReader::Quic(mut from), PipeWriter::Quic(to)) => {
            while let Ok(Some(chunk)) = from.read_chunk(COPY_BUFFER, true).await {
                count.fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
                if to.write_chunk(chunk.bytes).await.is_err() {
                    break;
                }
            }
        }
        (mut from, to) => {
            let mut buf = vec![0u8; COPY_BUFFER];
            while let Ok(n @ 1..) = from.read(&mut buf).await {
                count.fetch_add(n as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// How long one direction of a relayed stream may outlive the other.
const LINGER: Duration = Duration::from_secs(5);
