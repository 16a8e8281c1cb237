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
use edgegate_proto::frame::SessionEnd;
use edgegate_proto::frame::{Frame, PushResult as WirePush, ServiceDecision, Verdict, Welcome};
use edgegate_proto::{DenyReason, VerifiedTicket};
use std::sync::Arc;
use tokio::io::AsyncWrite;
use tokio::time::{sleep_until, Duration, Instant};

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
        cred: &Credentials,
        ticket_problem: Option<String>,
    ) -> String {
        match (reason, &cred.ticket) {
            (DenyReason::WrongDevice, Some(t)) => format!(
                "the ticket is for device {:?}; this gateway is device {:?}",
                t.ticket().device,
                self.config().device_id
            ),
            (DenyReason::BadTicket, _) => ticket_problem.unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// Verify the ticket, admit the session and answer. `None` when it was
    /// refused (the `RefusedWithDetail` frame is written).
    pub(crate) async fn open_session<W: AsyncWrite + Unpin>(
        self: &Arc<Self>,
        peer: AuthenticatedPeer,
        ticket: &[u8],
        transport: Transport,
        remote: std::net::SocketAddr,
        out: &mut W,
    ) -> Option<Arc<Session>> {
        let verified = VerifiedTicket::verify(ticket, &self.config().trust());
        let ticket_problem = verified.as_ref().err().map(|e| e.detail());
        let cred = Credentials {
            peer,
            ticket: verified.ok(),
            ticket_bytes: ticket.into(),
        };
        let ends_at = self.session_end(&cred);
        let admitted = self.admit_session(&cred).and_then(|()| {
            self.registry.attach(
                &cred,
                transport,
                remote.to_string(),
                ends_at,
                &self.config().limits,
            )
        });
        let session = match admitted {
            Ok(s) => s,
            Err(reason) => {
                self.audit.session_refused(cred.user(), reason);
                let detail = self.refusal_detail(reason, &cred, ticket_problem);
                let _ = write_frame(out, &Frame::RefusedWithDetail { reason, detail }).await;
                return None;
            }
        };
        let welcome = self.welcome(&session);
        // A TLS connection joining a live session is not a new session.
        if session.connections() == 1 {
            self.audit.session_opened(&session);
            // The per-service decisions the client is shown are decisions
            // too (each stream it opens is decided and audited again).
            for s in &welcome.services {
                self.audit.listing_decision(&session, &s.id, s.decision);
            }
            tokio::spawn(self.clone().session_guard(session.clone()));
            if transport == Transport::Tls {
                tokio::spawn(self.clone().tls_idle_watch(session.clone()));
            }
        }
        if write_frame(out, &Frame::Welcome(welcome)).await.is_err() {
            self.end_session(&session);
            return None;
        }
        Some(session)
    }

    /// Detach one connection from its session, auditing the session's end.
    pub(crate) fn end_session(&self, session: &Session) {
        if self.registry.detach(session) {
            let reason = close_reason(session.end_reason());
            self.audit.session_closed(session, reason);
        }
    }

    /// Re-decide the session as a whole (DESIGN §2 steps 1–4, through
    /// `admit_session`, the check that admitted it) on every policy change
    /// and at its time deadline; end it when that turns to deny. Returns
    /// when the session ends for any reason.
    async fn session_guard(self: Arc<Self>, session: Arc<Session>) {
        let mut policy_rx = self.policy.subscribe();
        let mut kill_rx = session.kill.subscribe();
        loop {
            policy_rx.borrow_and_update();
            if *kill_rx.borrow_and_update() {
                return;
            }
            if let Err(reason) = self.admit_session(&session.cred) {
                session.end(SessionEnd::Denied(reason));
                return;
            }
            let deadline = self.next_deadline(&session.cred, "", None);
            let timer = async {
                match deadline {
                    // At least one second: the deadline has second resolution.
                    Some(at) => sleep_until(at.max(Instant::now() + Duration::from_secs(1))).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = policy_rx.changed() => {}
                _ = kill_rx.changed() => {}
                _ = timer => {}
            }
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
