//! The policy evaluator (DESIGN §2): compile a verified bundle into an
//! immutable `PolicyIndex`, then decide, explain and schedule re-decisions.
//!
//! Owns: `PolicyIndex::compile`, `decide`, `explain`, `next_change`. It does
//! not verify bytes (that is `edgegate_proto`), store bundles, compute limits
//! or read a clock: `now`, consent and `limit_exceeded` are inputs.
//!
//! `decide` and `explain` run the same evaluation core (`eval`), generic over a
//! tracer: a no-op one for `decide` (no allocation, proven by
//! `tests/policy_noalloc.rs`), a recording one for `explain`. There is one
//! copy of each check. When no grant matches, the reason is the closest miss:
//! a grant missing only its role's 2FA demand (`mfa-required`), else one
//! missing only site consent (`site-consent-required`), else one missing both
//! (`mfa-required`: consent alone would not admit the user), else `no-grant`.
//! A `read` grant never matches a vpn service: observe-only cannot be
//! enforced on raw TCP (`filter::read_level_supported`), so such a grant
//! grants nothing there and is no near miss either (`read-not-enforceable`
//! in the trace); `decide` never answers `Allow(Read)` for vpn.
//!
//! Authoring tools that want an index for a bundle they built themselves seal
//! it with a throw-away key and verify it against that key: there is
//! deliberately no way to compile an unverified bundle.

mod compile;
pub mod destination;
mod eval;
mod explain;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use compile::{CompileError, CompiledService, PolicyIndex};
pub use explain::{Explanation, GrantTrace, SourceTrace, TraceEntry};

use edgegate_proto::{DenyReason, Level, PublicKey, UnixTime, VerifiedTicket};
use std::net::SocketAddr;

/// Clock skew tolerated before a ticket's `issued_at`, in seconds.
pub const SKEW: u64 = 300;

/// The ticket as the handshake delivered it.
#[derive(Debug, Clone, Copy)]
pub enum TicketInput<'a> {
    /// Signature checked against the trusted keys.
    Verified(&'a VerifiedTicket),
    /// Failed verification (bad signature, malformed): denied `bad-ticket`.
    Invalid,
}

/// Everything one decision depends on besides the bundle.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The ticket.
    pub ticket: TicketInput<'a>,
    /// The client key proven in the TLS/QUIC handshake.
    pub client_key: &'a PublicKey,
    /// Service id the client asks for.
    pub service: &'a str,
    /// Destination inside the machine network (vpn only).
    pub destination: Option<SocketAddr>,
    /// The destination is an ICMP echo target (a VPN `ping`): its port is
    /// no port, and a service's `ports` do not apply to it, only its
    /// networks (an allowed port already shows that the host is up).
    pub echo: bool,
    /// The daemon's notion of now (never below its time floor).
    pub now: UnixTime,
    /// Whether an on-site consent is active on this device.
    pub consent: bool,
    /// Step 7, computed by the daemon: a per-user or global limit is exceeded.
    pub limit_exceeded: bool,
    /// The router's own addresses (step 5's screen; `LocalAddrs::none()`
    /// off the router).
    pub local: &'a destination::LocalAddrs,
}

/// The bundle side of a decision.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// The compiled current bundle, if any.
    pub index: Option<&'a PolicyIndex>,
    /// Seconds after `not_after` during which the bundle still counts.
    pub expiry_grace: u64,
}

/// The answer: allow with a level, or deny with exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Allowed at this level.
    Allow(Level),
    /// Denied for this reason.
    Deny(DenyReason),
}

impl Decision {
    /// Whether access is allowed.
    pub fn is_allow(self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

impl std::fmt::Display for Decision {
    /// `allow (read)`, `allow (manage)` or `deny: <reason>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Allow(level) => write!(f, "allow ({level})"),
            Decision::Deny(reason) => write!(f, "deny: {reason}"),
        }
    }
}

/// A denial and the step of DESIGN §2 that gave it. The step, not the
/// reason's name, says what the denial covers: `mfa-required` from step 4 is
/// the user's own 2FA demand and refuses the whole session, the same word
/// from step 6 is one role's demand and refuses only that service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Denial {
    /// The stable reason.
    pub reason: DenyReason,
    /// The step of DESIGN §2 (1 to 7) that denied.
    pub step: u8,
}

impl Denial {
    /// Steps 1–4 judge the bundle, the ticket and the user: they deny the
    /// whole session. Steps 5–7 judge one service or destination.
    pub fn ends_session(self) -> bool {
        self.step <= 4
    }
}

/// Decide a request per DESIGN §2, in order. Does not allocate.
pub fn decide(p: &Policy, r: &Request) -> Decision {
    eval::evaluate(p, r, &mut eval::NoTrace)
}

/// [`decide`], with the step a denial came from. Does not allocate.
pub fn decide_scoped(p: &Policy, r: &Request) -> Result<Level, Denial> {
    eval::run(p, r, &mut eval::NoTrace)
}

/// The same evaluation as `decide`, with the trace of every check it made.
pub fn explain(p: &Policy, r: &Request) -> Explanation {
    let mut rec = explain::Recorder::default();
    let decision = eval::evaluate(p, r, &mut rec);
    rec.finish(decision)
}

/// The earliest instant after `r.now` at which the decision could change by
/// time alone: the bundle's expiry plus grace, and for a verified ticket its
/// start (issued − skew), its expiry and the end of the user's logout period.
/// `None` if there is no bundle (nothing changes with time then). The decision
/// is the same at every instant in `[r.now, next_change)`.
pub fn next_change(p: &Policy, r: &Request) -> Option<UnixTime> {
    let ix = p.index?;
    let bundle_end = ix.not_after().saturating_add(p.expiry_grace);
    let ticket = match r.ticket {
        TicketInput::Verified(vt) => {
            let t = vt.ticket();
            let logout = ix
                .user(&t.user)
                .map(|(_, u)| t.auth_time.saturating_add(u.logout_period));
            [
                Some(t.issued_at.saturating_sub(SKEW)),
                Some(t.expires_at),
                logout,
            ]
        }
        TicketInput::Invalid => [None; 3],
    };
    ticket
        .into_iter()
        .flatten()
        .chain([bundle_end])
        .filter(|&at| at > r.now)
        .min()
}
