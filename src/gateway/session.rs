//! The first exchange of a session, the same over QUIC and TLS: `Hello`
//! (ticket) → `Welcome` (user, end, one decision per service) or `Refused`;
//! or `PushBundle` → `PushResult`.

use super::admit::Credentials;
use super::registry::Session;
use super::Gateway;
use crate::policy::Decision;
use crate::tlsid::AuthenticatedPeer;
use crate::transport::write_frame;
use edgegate_proto::audit::{CloseReason, Transport};
use edgegate_proto::control::PushResult;
use edgegate_proto::frame::{Frame, PushResult as WirePush, ServiceDecision, Verdict, Welcome};
use edgegate_proto::VerifiedTicket;
use std::sync::Arc;
use tokio::io::AsyncWrite;

impl Gateway {
    /// Verify the ticket, admit the session and answer. `None` when it was
    /// refused (the `Refused` frame is written).
    pub(crate) async fn open_session<W: AsyncWrite + Unpin>(
        &self,
        peer: AuthenticatedPeer,
        ticket: &[u8],
        transport: Transport,
        remote: std::net::SocketAddr,
        out: &mut W,
    ) -> Option<Arc<Session>> {
        let cred = Credentials {
            peer,
            ticket: VerifiedTicket::verify(ticket, &self.trust).ok(),
        };
        let ends_at = self.session_end(&cred);
        let admitted = self.admit_session(&cred).and_then(|()| {
            self.registry.attach(
                &cred,
                transport,
                remote.to_string(),
                ends_at,
                &self.config.limits,
            )
        });
        let session = match admitted {
            Ok(s) => s,
            Err(reason) => {
                self.audit.session_refused(cred.user(), reason);
                let _ = write_frame(out, &Frame::Refused { reason }).await;
                return None;
            }
        };
        // A TLS connection joining a live session is not a new session.
        if session.connections() == 1 {
            self.audit.session_opened(&session);
        }
        let welcome = self.welcome(&session);
        if write_frame(out, &Frame::Welcome(welcome)).await.is_err() {
            self.end_session(&session);
            return None;
        }
        Some(session)
    }

    /// Detach one connection from its session, auditing the session's end.
    pub(crate) fn end_session(&self, session: &Session) {
        if self.registry.detach(session) {
            let idle = session.idled_out.load(std::sync::atomic::Ordering::Relaxed);
            let reason = match (*session.kill.borrow(), *self.shutdown.borrow()) {
                (true, true) => CloseReason::Shutdown,
                (true, false) => CloseReason::Killed,
                _ if idle => CloseReason::IdleTimeout,
                _ => CloseReason::Normal,
            };
            self.audit.session_closed(session, reason);
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
                    decision: match self.admit_listing(&session.cred, &s.id, s.kind, &s.target) {
                        Decision::Allow(level) => Verdict::Allow(level),
                        Decision::Deny(reason) => Verdict::Deny(reason),
                    },
                })
                .collect(),
            None => Vec::new(),
        };
        let user_name = self
            .active()
            .and_then(|a| {
                a.bundle
                    .bundle()
                    .users
                    .iter()
                    .find(|u| u.id == session.user)
                    .map(|u| u.name.clone())
            })
            .unwrap_or_default();
        Welcome {
            session_id: session.id,
            user: session.user.clone(),
            user_name,
            session_end: self.session_end(&session.cred),
            services,
        }
    }

    /// Answer a `PushBundle` first frame.
    pub(crate) async fn answer_push<W: AsyncWrite + Unpin>(
        self: &Arc<Self>,
        bundle: Vec<u8>,
        out: &mut W,
    ) {
        let result = match self.push_bundle(bundle).await {
            PushResult::Accepted { serial } => WirePush::Accepted { serial },
            PushResult::Unchanged { serial } => WirePush::Unchanged { serial },
            PushResult::Rejected { code, message } => WirePush::Rejected { code, message },
        };
        let _ = write_frame(out, &Frame::PushResult(result)).await;
    }
}
