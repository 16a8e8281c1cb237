//! The first exchange of a session, the same over QUIC and TLS: `Hello`
//! (ticket) → `Welcome` (user, end, one decision per service) or `Refused`;
//! or `PushBundle` → `PushResult`.

use super::authorize::Credentials;
use super::registry::Session;
use super::Gateway;
use crate::tlsid::AuthenticatedPeer;
use crate::transport::{write_frame, Connection, Grant};
use edgegate_proto::audit::CloseReason;
use edgegate_proto::frame::SessionEnd;
use edgegate_proto::frame::{Frame, ServiceDecision, Verdict, Welcome};
use edgegate_proto::{DenyReason, VerifiedTicket};
use std::sync::Arc;
use tokio::io::AsyncWrite;

/// The audited close reason of a session that ended (`None`: normally).
pub(crate) fn close_reason(end: Option<SessionEnd>) -> CloseReason {
    match end {
        None => CloseReason::Normal,
        Some(SessionEnd::Denied(r)) => CloseReason::Denied(r),
        Some(SessionEnd::Killed) => CloseReason::Killed,
        Some(SessionEnd::IdleTimeout) => CloseReason::IdleTimeout,
        Some(SessionEnd::Shutdown) => CloseReason::Shutdown,
    }
}

impl Gateway {
    /// The line that says what a refusal's reason word cannot: which
    /// device the ticket names and which this gateway is, or what is wrong
    /// with the ticket (`ticket_problem`). Empty for the other reasons.
    fn refusal_detail(
        &self,
        reason: DenyReason,
        ticket_device: Option<String>,
        ticket: &[u8],
    ) -> String {
        match (reason, ticket_device) {
            (DenyReason::WrongDevice, Some(device)) => format!(
                "the ticket is for device {device:?}; this gateway is device {:?}",
                self.config().device_id
            ),
            // Verified again for the words only: a refusal is the rare path.
            (DenyReason::BadTicket, _) => VerifiedTicket::verify(ticket, &self.ticket_trust())
                .err()
                .map(|e| e.detail())
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// Verify the ticket, admit the session and answer. `None` when it was
    /// refused (the `RefusedWithDetail` frame is written).
    /// Admitted, the connection is granted the session's streams before
    /// `Welcome` leaves (a client may open one the moment it reads it).
    pub(crate) async fn open_session<W: AsyncWrite + Unpin>(
        self: &Arc<Self>,
        peer: AuthenticatedPeer,
        ticket: &[u8],
        conn: &dyn Connection,
        out: &mut W,
    ) -> Option<Arc<Session>> {
        let (transport, remote) = (conn.transport(), conn.remote());
        let cred = Credentials::new(self, peer, ticket);
        if let Some(t) = &cred.ticket {
            self.raise_floor(t.ticket().issued_at).await;
        }
        let user = cred.authenticated_user().map(str::to_owned);
        let ticket_device = cred.ticket.as_ref().map(|t| t.ticket().device.clone());
        let ends_at = self.session_end(&cred);
        let admitted = self.authorize_session(&cred).and_then(|()| {
            self.registry.attach(
                cred,
                transport,
                remote.to_string(),
                ends_at,
                self.now(),
                &self.config().limits,
            )
        });
        let session = match admitted {
            Ok(s) => s,
            Err(reason) => {
                self.audit.session_refused(user.as_deref(), remote, reason);
                let detail = self.refusal_detail(reason, ticket_device, ticket);
                let _ = write_frame(out, &Frame::RefusedWithDetail { reason, detail }).await;
                return None;
            }
        };
        let welcome = self.welcome(&session);
        self.audit.session_opened(&session);
        self.churned();
        // The per-service decisions the client is shown are decisions too
        // (each stream it opens is decided and audited again).
        for s in &welcome.services {
            self.audit.listing_decision(&session, &s.id, s.decision);
        }
        let (gw, guarded) = (self.clone(), session.clone());
        tokio::spawn(async move { gw.session_guard(&guarded).await });
        // The control stream, the session's streams and one over the limit
        // (refused with `limit-exceeded` rather than left waiting).
        let streams = self
            .config()
            .limits
            .max_streams_per_session
            .saturating_add(2);
        conn.grant(Grant::Session {
            streams: u32::try_from(streams).unwrap_or(u32::MAX),
        });
        if write_frame(out, &Frame::Welcome(welcome)).await.is_err() {
            self.end_session(&session);
            return None;
        }
        Some(session)
    }

    /// A verified ticket's `issued_at` is signed time: raise the time floor
    /// to it, within its ceiling (DESIGN §3), before the ticket is judged,
    /// so a router that rebooted without a clock admits a fresh ticket
    /// without waiting for the next bundle. The flush runs off the async
    /// threads, and only when the floor actually moves.
    async fn raise_floor(self: &Arc<Self>, issued_at: edgegate_proto::UnixTime) {
        let wall = self.wall();
        if !self.store.floor_would_rise(issued_at, wall) {
            return;
        }
        let store = self.store.clone();
        let raised =
            tokio::task::spawn_blocking(move || store.raise_time_floor(issued_at, wall)).await;
        match raised {
            Ok(Ok(floor)) => tracing::debug!(floor, "time floor raised by a ticket"),
            Ok(Err(e)) => tracing::warn!("raising the time floor: {e}"),
            Err(e) => tracing::warn!("raising the time floor: task failed: {e}"),
        }
    }

    /// Detach one connection from its session, auditing the session's end.
    pub(crate) fn end_session(&self, session: &Session) {
        if self.registry.detach(session) {
            let reason = close_reason(session.end_reason());
            self.audit.session_closed(session, reason);
            self.churned();
        }
    }

    fn welcome(&self, session: &Session) -> Welcome {
        let services = match self.active() {
            Some(active) => active
                .index
                .services()
                .map(|s| ServiceDecision {
                    id: s.id.clone(),
                    kind: s.kind,
                    decision: match self.authorize_listing(&session.cred, &s.id, &s.target) {
                        Ok(level) => Verdict::Allow(level),
                        Err(reason) => Verdict::Deny(reason),
                    },
                })
                .collect(),
            None => Vec::new(),
        };
        let user_name = self
            .active_user(&session.user, |ix, id| ix.user_name(id).map(str::to_owned))
            .unwrap_or_default();
        Welcome {
            session_id: session.id,
            user: session.user.clone(),
            user_name,
            session_end: self.session_end(&session.cred),
            services,
        }
    }

    /// Answer a `PushBundle` first frame from `remote` (any peer may push:
    /// a rejection is a stranger's event, counted).
    pub(crate) async fn answer_push<W: AsyncWrite + Unpin>(
        self: &Arc<Self>,
        bundle: Vec<u8>,
        remote: std::net::SocketAddr,
        out: &mut W,
    ) {
        let result = self.push_bundle_from(bundle, Some(remote.ip())).await;
        let _ = write_frame(out, &Frame::PushResult(result)).await;
    }
}
