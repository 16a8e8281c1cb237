//! The one re-decide loop, for live sessions and live streams alike: wait
//! on every input of a decision — the bundle in force (a push, and a trust
//! change, which pokes the same channel), site consent, the session's end,
//! and the decision's own time deadline — and run the check again after
//! each. The check is always [`Gateway::authorize`] (`authorize.rs`).

use super::authorize::{Permit, Scope, Subject};
use super::registry::Session;
use super::Gateway;
use edgegate_proto::frame::SessionEnd;
use edgegate_proto::DenyReason;
use tokio::time::{sleep_until, Duration, Instant};

/// Why a live session or stream must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuardEnd {
    /// This stream's permit was denied or changed (stream scope).
    Denied(DenyReason),
    /// The whole session ended: `Some` with the daemon's reason, `None`
    /// when the client went away (nobody on this side ended it).
    SessionEnded(Option<SessionEnd>),
}

/// What one check found.
enum Check {
    /// Still admitted.
    Holds,
    /// End the stream.
    Stream(DenyReason),
    /// End the session.
    Session(DenyReason),
}

impl Gateway {
    /// Re-decide the session as a whole until it ends; end it when its own
    /// decision turns to deny. Returns when the session ended.
    pub(crate) async fn session_guard(&self, session: &Session) -> GuardEnd {
        self.redecide(session, || {
            let answer = self.authorize(&session.cred, Subject::Session);
            let check = match answer.outcome {
                Err(r) => Check::Session(r.reason),
                Ok(_) => Check::Holds,
            };
            (check, answer.recheck_at)
        })
        .await
    }

    /// Re-decide one live stream until its permit no longer covers it or
    /// the session ends. A session-scope denial ends the whole session.
    pub(crate) async fn stream_guard(
        &self,
        session: &Session,
        subject: Subject<'_>,
        admitted: &Permit,
    ) -> GuardEnd {
        self.redecide(session, || {
            let answer = self.authorize(&session.cred, subject);
            let check = match answer.outcome {
                Ok(Some(now)) if admitted.covers(&now) => Check::Holds,
                Ok(_) => Check::Stream(DenyReason::PermitChanged),
                Err(r) if r.scope == Scope::Session => Check::Session(r.reason),
                Err(r) => Check::Stream(r.reason),
            };
            (check, answer.recheck_at)
        })
        .await
    }

    async fn redecide(
        &self,
        session: &Session,
        mut check: impl FnMut() -> (Check, Option<Instant>),
    ) -> GuardEnd {
        let mut policy_rx = self.policy.subscribe();
        let mut consent_rx = self.consent.subscribe();
        let mut ended_rx = session.kill.subscribe();
        loop {
            policy_rx.borrow_and_update();
            consent_rx.borrow_and_update();
            if *ended_rx.borrow_and_update() {
                return GuardEnd::SessionEnded(session.end_reason());
            }
            let (verdict, recheck_at) = check();
            match verdict {
                Check::Holds => {}
                Check::Stream(r) => return GuardEnd::Denied(r),
                Check::Session(r) => {
                    // The first reason wins: a kill racing this keeps its own.
                    session.end(SessionEnd::Denied(r));
                    return GuardEnd::SessionEnded(session.end_reason());
                }
            }
            let timer = async {
                match recheck_at {
                    // At least one second: deadlines have second resolution.
                    Some(at) => sleep_until(at.max(Instant::now() + Duration::from_secs(1))).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = policy_rx.changed() => {}
                _ = consent_rx.changed() => {}
                _ = ended_rx.changed() => {}
                _ = timer => {}
            }
        }
    }
}
