//! The one authorization (STYLE habit 3): [`Gateway::authorize`] admits
//! every session and every stream, lists the services a new session sees,
//! and re-checks every live session and stream after each change. There is
//! no second copy: the re-decide loop (`redecide.rs`) calls this function and
//! compares what it returns with what the stream was admitted under.
//!
//! It reads the bundle in force once, gathers the other inputs (the
//! session's credentials, checked again when the trusted keys change; the
//! killed tickets; consent; the floored `now`) and asks `policy::decide_scoped`.
//! An allowed stream gets a [`Permit`]: everything the data path acts on
//! (level, service kind, resolved target, read-level filter). A denied one
//! gets a [`Refusal`] whose scope comes from the evaluator's step (DESIGN §2
//! steps 1–4 refuse the session, 5–7 the stream), never from the reason's
//! name.

use super::Gateway;
use crate::filter::{self, ByteFilter};
use crate::policy::{self, Policy, Request, TicketInput};
use crate::tlsid::AuthenticatedPeer;
use edgegate_proto::bundle::{ServiceKind, Target};
use edgegate_proto::{DenyReason, Level, UnixTime, VerifiedTicket};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

/// What a session proved: the handshake's client key and the ticket.
#[derive(Debug)]
pub struct Credentials {
    pub(crate) peer: AuthenticatedPeer,
    /// The ticket as it verified at admission (`None`: it did not, which
    /// is `bad-ticket`). Its content cannot change; whether it still
    /// verifies under the trusted keys in force is `trusted`.
    pub(crate) ticket: Option<VerifiedTicket>,
    /// The ticket as received, verified again when the trusted keys change.
    pub(crate) ticket_bytes: Arc<[u8]>,
    /// The trust epoch `trusted` was computed under.
    epoch: AtomicU64,
    /// Whether the ticket verifies under the trust of `epoch`.
    trusted: AtomicBool,
}

impl Credentials {
    /// Verify `ticket` under the gateway's trust in force.
    pub(crate) fn new(gw: &Gateway, peer: AuthenticatedPeer, ticket: &[u8]) -> Credentials {
        let epoch = gw.trust_epoch.load(Ordering::Acquire);
        let verified = VerifiedTicket::verify(ticket, &gw.ticket_trust()).ok();
        Credentials {
            peer,
            trusted: AtomicBool::new(verified.is_some()),
            ticket: verified,
            ticket_bytes: ticket.into(),
            epoch: AtomicU64::new(epoch),
        }
    }

    /// Credentials verified under `trust` (epoch 0), for unit tests that
    /// run no handshake.
    #[cfg(test)]
    pub(crate) fn for_tests(
        peer: AuthenticatedPeer,
        ticket: &[u8],
        trust: &edgegate_proto::TrustPolicy,
    ) -> Credentials {
        let verified = VerifiedTicket::verify(ticket, trust).ok();
        Credentials {
            peer,
            trusted: AtomicBool::new(verified.is_some()),
            ticket: verified,
            ticket_bytes: ticket.into(),
            epoch: AtomicU64::new(0),
        }
    }

    /// The user the ticket names, if the ticket verified.
    pub fn user(&self) -> Option<&str> {
        self.ticket.as_ref().map(|t| t.ticket().user.as_str())
    }

    /// The user, if the peer is who the authority says: the ticket verified
    /// and is bound to the key the handshake proved. Anything less is a
    /// stranger (counted, not chained, when refused).
    pub(crate) fn authenticated_user(&self) -> Option<&str> {
        self.ticket
            .as_ref()
            .map(VerifiedTicket::ticket)
            .filter(|t| t.client_key == *self.peer.key())
            .map(|t| t.user.as_str())
    }

    /// The ticket, if it verifies under the trust in force. A change of the
    /// trusted keys (SIGHUP, a key statement) bumps the epoch; the first check after it
    /// verifies the bytes again, later ones reuse that answer.
    fn current_ticket(&self, gw: &Gateway) -> Option<&VerifiedTicket> {
        let epoch = gw.trust_epoch.load(Ordering::Acquire);
        if self.epoch.load(Ordering::Acquire) != epoch {
            let ok = self.ticket.is_some()
                && VerifiedTicket::verify(&self.ticket_bytes, &gw.ticket_trust()).is_ok();
            self.trusted.store(ok, Ordering::Release);
            self.epoch.store(epoch, Ordering::Release);
        }
        match self.trusted.load(Ordering::Acquire) {
            true => self.ticket.as_ref(),
            false => None,
        }
    }
}

/// What is asked: the session as a whole, or one stream.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    /// DESIGN §2 steps 1–4 only: may this session exist?
    Session,
    /// One stream to `service` (`destination` for vpn).
    Stream {
        service: &'a str,
        destination: Option<SocketAddr>,
        /// Step 7: the session is at its stream limit.
        over_limit: bool,
    },
    /// One VPN ICMP echo target of `service`: inside its networks, its
    /// ports not applying (`policy::Request::echo`). Its permit's target
    /// is `ADDRESS:0`.
    Echo {
        service: &'a str,
        address: std::net::IpAddr,
        /// Step 7: the session is at its flow limit.
        over_limit: bool,
    },
}

/// Everything an allowed stream runs under. A live stream keeps running
/// while a re-check yields a permit it can follow (see [`Permit::covers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Permit {
    /// The level granted.
    pub(crate) level: Level,
    /// The service's kind.
    pub(crate) kind: ServiceKind,
    /// Where the bytes go: the service's `host:port`, or the vpn destination.
    pub(crate) target: String,
    /// The kind whose read-level filter the client's bytes pass through
    /// (`None` at level manage).
    pub(crate) filter: Option<ServiceKind>,
}

impl Permit {
    /// Whether a stream opened under `self` may go on under `now`: same
    /// kind, same target, same filter or none, and no lower level. A raised
    /// level keeps the stricter filter the stream was opened with.
    pub(crate) fn covers(&self, now: &Permit) -> bool {
        self.kind == now.kind
            && self.target == now.target
            && now.level >= self.level
            && (now.filter == self.filter || now.filter.is_none())
    }

    /// The read-level filter this permit demands.
    pub(crate) fn byte_filter(&self) -> Option<Box<dyn ByteFilter>> {
        self.filter.and_then(filter::for_read_level)
    }
}

/// What a denial covers, from the evaluator's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The whole session: its streams are closed with it.
    Session,
    /// This stream (service, destination) only.
    Stream,
}

/// A denial and what it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) reason: DenyReason,
    pub(crate) scope: Scope,
}

impl Refusal {
    fn session(reason: DenyReason) -> Refusal {
        Refusal {
            reason,
            scope: Scope::Session,
        }
    }

    fn stream(reason: DenyReason) -> Refusal {
        Refusal {
            reason,
            scope: Scope::Stream,
        }
    }
}

/// One answer, and when time alone may change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// A permit for a stream (`None` for the session subject), or why not.
    pub(crate) outcome: Result<Option<Permit>, Refusal>,
    /// The next instant the answer may change by time alone (ticket or
    /// logout period running out, bundle expiry); `None`: never by time.
    pub(crate) recheck_at: Option<Instant>,
}

impl Gateway {
    /// Decide `subject` for `cred` with everything as it is right now.
    pub(crate) fn authorize(&self, cred: &Credentials, subject: Subject<'_>) -> Answer {
        let active = self.active();
        let index = active.as_deref().map(|a| &a.index);
        let ticket = cred.current_ticket(self);
        let policy = Policy {
            index,
            expiry_grace: self.config().expiry_grace,
        };
        let local = self.local.get();
        let (service, destination, over_limit, echo) = match subject {
            // A service id no device has: the evaluator stops at step 5
            // unless steps 1–4 deny.
            Subject::Session => ("", None, false, false),
            Subject::Stream {
                service,
                destination,
                over_limit,
            } => (service, destination, over_limit, false),
            Subject::Echo {
                service,
                address,
                over_limit,
            } => (service, Some(SocketAddr::new(address, 0)), over_limit, true),
        };
        let request = Request {
            ticket: match ticket {
                Some(t) => TicketInput::Verified(t),
                None => TicketInput::Invalid,
            },
            client_key: cred.peer.key(),
            service,
            destination,
            echo,
            now: self.now(),
            consent: self.consent.is_active(Instant::now()),
            limit_exceeded: over_limit,
            local: &local,
        };
        let recheck_at = policy::next_change(&policy, &request).map(|at| self.clock.instant_at(at));
        let outcome = match ticket {
            // A ticket whose session an operator killed stays refused.
            Some(t) if self.registry.is_killed(&t.ticket().id) => {
                Err(Refusal::session(DenyReason::TicketRevoked))
            }
            _ => match policy::decide_scoped(&policy, &request) {
                Err(d) if d.ends_session() => Err(Refusal::session(d.reason)),
                Err(d) => match subject {
                    Subject::Session => Ok(None),
                    Subject::Stream { .. } | Subject::Echo { .. } => Err(Refusal::stream(d.reason)),
                },
                Ok(_) if matches!(subject, Subject::Session) => Ok(None),
                Ok(level) => permit(index, service, destination, level).map(Some),
            },
        };
        Answer {
            outcome,
            recheck_at,
        }
    }

    /// The session as a whole: `Err` with a session-scope reason, or `Ok`.
    pub(crate) fn authorize_session(&self, cred: &Credentials) -> Result<(), DenyReason> {
        match self.authorize(cred, Subject::Session).outcome {
            Err(r) => Err(r.reason),
            Ok(_) => Ok(()),
        }
    }

    /// The decision for a service as listed in `Welcome`. A `vpn` service is
    /// decided for a representative destination inside its first network,
    /// since the session has not named one yet.
    pub(crate) fn authorize_listing(
        &self,
        cred: &Credentials,
        service: &str,
        target: &Target,
    ) -> Result<Level, DenyReason> {
        let destination = match target {
            Target::Networks { networks, ports } => networks
                .first()
                .map(|n| SocketAddr::new(n.addr, ports.first().map_or(1, |p| p.start))),
            Target::Endpoint { .. } => None,
        };
        let subject = Subject::Stream {
            service,
            destination,
            over_limit: false,
        };
        match self.authorize(cred, subject).outcome {
            Ok(Some(p)) => Ok(p.level),
            Ok(None) => Err(DenyReason::UnknownService),
            Err(r) => Err(r.reason),
        }
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
}

/// The permit of an allowed stream, from the same index the decision read.
fn permit(
    index: Option<&policy::PolicyIndex>,
    service: &str,
    destination: Option<SocketAddr>,
    level: Level,
) -> Result<Permit, Refusal> {
    // The evaluator allowed, so the index and the service exist.
    let svc = index
        .and_then(|ix| ix.service(service))
        .ok_or(Refusal::stream(DenyReason::UnknownService))?;
    let filter = match level {
        Level::Manage => None,
        // A read grant on a kind that cannot be filtered is no usable
        // grant: refuse rather than pass unfiltered (the evaluator already
        // ignores such grants; this is the data path's own guard).
        Level::Read if filter::read_level_supported(svc.kind) => Some(svc.kind),
        Level::Read => return Err(Refusal::stream(DenyReason::NoGrant)),
    };
    let target = match (&svc.target, destination) {
        (Target::Endpoint { host, port }, _) => format!("{host}:{port}"),
        (Target::Networks { .. }, Some(d)) => d.to_string(),
        (Target::Networks { .. }, None) => {
            return Err(Refusal::stream(DenyReason::DestinationNotAllowed))
        }
    };
    Ok(Permit {
        level,
        kind: svc.kind,
        target,
        filter,
    })
}
