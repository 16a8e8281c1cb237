//! The one admission check (STYLE habit 3): the function that admits a
//! stream is the function that re-checks it after every change. It only
//! gathers inputs — the policy in force, the time floor, consent — and asks
//! `policy::decide`.

use super::Gateway;
use crate::policy::{self, Decision, Policy, Request, TicketInput};
use crate::tlsid::AuthenticatedPeer;
use edgegate_proto::bundle::{ServiceKind, Target};
use edgegate_proto::{DenyReason, UnixTime, VerifiedTicket};
use std::net::SocketAddr;
use tokio::time::{Duration, Instant};

/// What a session proved: the handshake's client key and the ticket (or
/// `None` when the ticket failed verification: `bad-ticket`).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub(crate) peer: AuthenticatedPeer,
    pub(crate) ticket: Option<VerifiedTicket>,
    /// The ticket as received, verified again when the trusted keys change.
    pub(crate) ticket_bytes: std::sync::Arc<[u8]>,
}

impl Credentials {
    /// The user the ticket names, if the ticket verified.
    pub fn user(&self) -> Option<&str> {
        self.ticket.as_ref().map(|t| t.ticket().user.as_str())
    }
}

/// Reasons that refuse a whole session: DESIGN §2 steps 1–4.
pub(crate) fn session_level(reason: DenyReason) -> bool {
    use DenyReason::*;
    matches!(
        reason,
        NoValidBundle
            | BadTicket
            | WrongDevice
            | KeyMismatch
            | TicketExpired
            | TicketRevoked
            | UnknownUser
            | UserInactive
            | SessionExpired
            | MfaRequired
    )
}

impl Gateway {
    /// Decide one stream with everything as it is right now.
    pub(crate) fn admit(
        &self,
        cred: &Credentials,
        service: &str,
        destination: Option<SocketAddr>,
        limit_exceeded: bool,
    ) -> Decision {
        let active = self.active();
        let (policy, request) = self.inputs(&active, cred, service, destination, limit_exceeded);
        policy::decide(&policy, &request)
    }

    /// When the decision of this stream can next change by time alone, as
    /// a monotonic instant (the unix deadline is converted now, so a wall
    /// clock set back later does not move it).
    pub(crate) fn next_deadline(
        &self,
        cred: &Credentials,
        service: &str,
        destination: Option<SocketAddr>,
    ) -> Option<Instant> {
        let active = self.active();
        let (policy, request) = self.inputs(&active, cred, service, destination, false);
        let at = policy::next_change(&policy, &request)?;
        let wait = at.saturating_sub(request.now);
        Some(Instant::now() + Duration::from_secs(wait))
    }

    /// Whether the session as a whole is admitted: the decision for a
    /// service id no device has stops at step 5 unless steps 1–4 deny.
    /// A ticket whose session an operator killed is refused as revoked.
    pub(crate) fn admit_session(&self, cred: &Credentials) -> Result<(), DenyReason> {
        match self.admit(cred, "", None, false) {
            Decision::Deny(r) if session_level(r) => Err(r),
            _ => match &cred.ticket {
                Some(t) if self.registry.is_killed(&t.ticket().id) => {
                    Err(DenyReason::TicketRevoked)
                }
                _ => Ok(()),
            },
        }
    }

    /// The decision for a service as listed in `Welcome`. A `vpn` service is
    /// decided for a representative destination inside its first network,
    /// since the session has not named one yet.
    pub(crate) fn admit_listing(
        &self,
        cred: &Credentials,
        service: &str,
        kind: ServiceKind,
        target: &Target,
    ) -> Decision {
        let destination = match (kind, target) {
            (ServiceKind::Vpn, Target::Networks { networks, ports }) => networks
                .first()
                .map(|n| SocketAddr::new(n.addr, ports.first().map_or(1, |p| p.start))),
            _ => None,
        };
        self.admit(cred, service, destination, false)
    }

    /// The session's end: ticket expiry or the end of the logout period.
    pub(crate) fn session_end(&self, cred: &Credentials) -> UnixTime {
        let Some(t) = cred.ticket.as_ref().map(VerifiedTicket::ticket) else {
            return 0;
        };
        let logout = self
            .active_user(&t.user, |ix, id| ix.user_logout_period(id))
            .map(|period| t.auth_time.saturating_add(period))
            .unwrap_or(t.expires_at);
        logout.min(t.expires_at)
    }

    fn inputs<'a>(
        &self,
        active: &'a Option<std::sync::Arc<super::Active>>,
        cred: &'a Credentials,
        service: &'a str,
        destination: Option<SocketAddr>,
        limit_exceeded: bool,
    ) -> (Policy<'a>, Request<'a>) {
        let policy = Policy {
            index: active.as_deref().map(|a| &a.index),
            expiry_grace: self.config().expiry_grace,
        };
        let request = Request {
            ticket: match &cred.ticket {
                Some(t) => TicketInput::Verified(t),
                None => TicketInput::Invalid,
            },
            client_key: cred.peer.key(),
            service,
            destination,
            now: self.now(),
            consent: self.consent.is_active(Instant::now()),
            limit_exceeded,
        };
        (policy, request)
    }
}
