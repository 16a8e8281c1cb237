//! The evaluation core: DESIGN §2 steps 1 to 7, in order, once.
//!
//! Generic over a `Tracer` so that `decide` (no-op tracer, no allocation) and
//! `explain` (recording tracer) run exactly this code. Details are passed as
//! `fmt::Arguments`, which are only formatted by a tracer that keeps them.

use super::compile::{CUser, Candidate, CompiledService, PolicyIndex};
use super::{destination, Decision, Denial, Policy, Request, TicketInput, SKEW};
use edgegate_proto::bundle::Target;
use edgegate_proto::{DenyReason, Level, Ticket};
use std::fmt;
use std::net::SocketAddr;

/// Observes the checks of one evaluation.
pub(super) trait Tracer {
    /// A check of `step` was made; `detail` says what was compared.
    fn check(&mut self, step: u8, check: &'static str, passed: bool, detail: fmt::Arguments<'_>);
    /// Step 6 is about to match `user`'s candidates for `category`.
    fn sources(&mut self, _ix: &PolicyIndex, _user: &CUser, _category: u32) {}
    /// One candidate grant was checked against the ticket and consent.
    fn grant(&mut self, _c: &Candidate, _outcome: GrantOutcome) {}
}

/// The tracer of `decide`: records nothing.
pub(super) struct NoTrace;

impl Tracer for NoTrace {
    #[inline(always)]
    fn check(&mut self, _: u8, _: &'static str, _: bool, _: fmt::Arguments<'_>) {}
}

/// How one candidate grant fared against the role's demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GrantOutcome {
    /// Category matches and every demand is met.
    Match,
    /// The role demands 2FA and the ticket has none.
    NeedsMfa,
    /// The role demands site consent and none is active.
    NeedsConsent,
    /// Both demands fail.
    NeedsBoth,
    /// A `read` grant on a service whose read level the gateway cannot
    /// enforce (vpn): it grants nothing there and is not a near miss.
    ReadNotEnforceable,
}

/// The read level cannot be enforced on this service (vpn: raw TCP to a
/// network), so a `read` grant does not match it, whatever its demands.
pub(super) fn grant_outcome(
    c: &Candidate,
    svc: &CompiledService,
    ticket_mfa: bool,
    consent: bool,
) -> GrantOutcome {
    if c.level == Level::Read && !svc.read_enforceable {
        return GrantOutcome::ReadNotEnforceable;
    }
    match (c.mfa && !ticket_mfa, c.consent && !consent) {
        (false, false) => GrantOutcome::Match,
        (true, false) => GrantOutcome::NeedsMfa,
        (false, true) => GrantOutcome::NeedsConsent,
        (true, true) => GrantOutcome::NeedsBoth,
    }
}

/// The reason of the closest miss when no candidate matched. A grant missing
/// one demand is closer than one missing both; a grant missing both is
/// reported as `mfa-required`, since consent alone would not admit the user
/// and re-authenticating with 2FA is the step the user can take.
pub(super) fn closest_miss(only_mfa: bool, only_consent: bool, both: bool) -> DenyReason {
    if only_mfa {
        DenyReason::MfaRequired
    } else if only_consent {
        DenyReason::SiteConsentRequired
    } else if both {
        DenyReason::MfaRequired
    } else {
        DenyReason::NoGrant
    }
}

/// Run steps 1 to 7.
pub(super) fn evaluate<T: Tracer>(p: &Policy, r: &Request, t: &mut T) -> Decision {
    match run(p, r, t) {
        Ok(level) => Decision::Allow(level),
        Err(denial) => Decision::Deny(denial.reason),
    }
}

/// Tag a step's reason with the step that gave it.
fn at(step: u8) -> impl Fn(DenyReason) -> Denial {
    move |reason| Denial { reason, step }
}

/// Steps 1 to 7; a denial names the step it came from.
pub(super) fn run<T: Tracer>(p: &Policy, r: &Request, t: &mut T) -> Result<Level, Denial> {
    let ix = bundle(p, r, t).map_err(at(1))?;
    let ticket = ticket(ix, r, t).map_err(at(2))?;
    let user = user(ix, ticket, t).map_err(at(3))?;
    session(user, ticket, r, t).map_err(at(4))?;
    let service = service(ix, r, t).map_err(at(5))?;
    let level = grants(ix, user, service, ticket.mfa, r.consent, t).map_err(at(6))?;
    check(
        t,
        7,
        "limits",
        !r.limit_exceeded,
        DenyReason::LimitExceeded,
        format_args!(
            "per-user and global limits {}",
            if r.limit_exceeded {
                "exceeded"
            } else {
                "respected"
            }
        ),
    )
    .map_err(at(7))?;
    Ok(level)
}

fn check<T: Tracer>(
    t: &mut T,
    step: u8,
    name: &'static str,
    ok: bool,
    reason: DenyReason,
    detail: fmt::Arguments<'_>,
) -> Result<(), DenyReason> {
    t.check(step, name, ok, detail);
    if ok {
        Ok(())
    } else {
        Err(reason)
    }
}

/// Step 1: a verified bundle, unexpired (with grace).
fn bundle<'a, T: Tracer>(
    p: &Policy<'a>,
    r: &Request,
    t: &mut T,
) -> Result<&'a PolicyIndex, DenyReason> {
    let Some(ix) = p.index else {
        t.check(
            1,
            "bundle",
            false,
            format_args!("no verified bundle is loaded"),
        );
        return Err(DenyReason::NoValidBundle);
    };
    let until = ix.not_after().saturating_add(p.expiry_grace);
    check(
        t,
        1,
        "bundle",
        r.now < until,
        DenyReason::NoValidBundle,
        format_args!(
            "bundle serial {} for device {}: valid until {} (not_after + grace {} s), now {}",
            ix.serial(),
            ix.device_id(),
            At(until),
            p.expiry_grace,
            At(r.now)
        ),
    )?;
    Ok(ix)
}

/// Step 2: signature, device, key binding, validity window, revocation.
fn ticket<'r, T: Tracer>(
    ix: &PolicyIndex,
    r: &Request<'r>,
    t: &mut T,
) -> Result<&'r Ticket, DenyReason> {
    let TicketInput::Verified(vt) = r.ticket else {
        t.check(
            2,
            "ticket-signature",
            false,
            format_args!("ticket not signed by the trusted keys"),
        );
        return Err(DenyReason::BadTicket);
    };
    let tk = vt.ticket();
    t.check(
        2,
        "ticket-signature",
        true,
        format_args!(
            "ticket {} of user {} signed by a trusted key",
            Hex(&tk.id),
            tk.user
        ),
    );
    check(
        t,
        2,
        "ticket-device",
        tk.device == ix.device_id(),
        DenyReason::WrongDevice,
        format_args!(
            "ticket for device {}, this device is {}",
            tk.device,
            ix.device_id()
        ),
    )?;
    check(
        t,
        2,
        "client-key",
        tk.client_key == *r.client_key,
        DenyReason::KeyMismatch,
        format_args!(
            "ticket bound to {}, handshake key {}",
            tk.client_key, r.client_key
        ),
    )?;
    ticket_validity(ix, tk, r, t)?;
    Ok(tk)
}

/// Step 2, continued: validity window (with skew) and revocation.
fn ticket_validity<T: Tracer>(
    ix: &PolicyIndex,
    tk: &Ticket,
    r: &Request,
    t: &mut T,
) -> Result<(), DenyReason> {
    let from = tk.issued_at.saturating_sub(SKEW);
    check(
        t,
        2,
        "ticket-window",
        from <= r.now && r.now < tk.expires_at,
        DenyReason::TicketExpired,
        format_args!(
            "valid from {} (issued {} - skew {SKEW} s) until {}, now {}",
            At(from),
            At(tk.issued_at),
            At(tk.expires_at),
            At(r.now)
        ),
    )?;
    let revoked = ix.is_revoked(&tk.id);
    check(
        t,
        2,
        "ticket-revoked",
        !revoked,
        DenyReason::TicketRevoked,
        format_args!(
            "ticket id {} {}",
            Hex(&tk.id),
            if revoked {
                "is revoked"
            } else {
                "is not revoked"
            }
        ),
    )
}

/// Step 3: the user exists and is active.
fn user<'i, T: Tracer>(
    ix: &'i PolicyIndex,
    tk: &Ticket,
    t: &mut T,
) -> Result<&'i CUser, DenyReason> {
    let Some((i, u)) = ix.user(&tk.user) else {
        t.check(
            3,
            "user-known",
            false,
            format_args!("user {} is not in the bundle", tk.user),
        );
        return Err(DenyReason::UnknownUser);
    };
    t.check(
        3,
        "user-known",
        true,
        format_args!("user {} ({})", tk.user, ix.user_names[i as usize]),
    );
    check(
        t,
        3,
        "user-active",
        u.active,
        DenyReason::UserInactive,
        format_args!(
            "user status is {}",
            if u.active { "active" } else { "inactive" }
        ),
    )?;
    Ok(u)
}

/// Step 4: logout period, and the user's own 2FA demand.
fn session<T: Tracer>(u: &CUser, tk: &Ticket, r: &Request, t: &mut T) -> Result<(), DenyReason> {
    let end = tk.auth_time.saturating_add(u.logout_period);
    check(
        t,
        4,
        "logout-period",
        r.now < end,
        DenyReason::SessionExpired,
        format_args!(
            "authenticated at {}, logout period {} s: session ends at {}, now {}",
            At(tk.auth_time),
            u.logout_period,
            At(end),
            At(r.now)
        ),
    )?;
    check(
        t,
        4,
        "user-mfa",
        !u.mfa || tk.mfa,
        DenyReason::MfaRequired,
        format_args!("user requires 2FA: {}, ticket has 2FA: {}", u.mfa, tk.mfa),
    )
}

/// Step 5: the service exists; for vpn, the destination is allowed.
fn service<'i, T: Tracer>(
    ix: &'i PolicyIndex,
    r: &Request,
    t: &mut T,
) -> Result<&'i CompiledService, DenyReason> {
    let Some(svc) = ix.service(r.service) else {
        t.check(
            5,
            "service-known",
            false,
            format_args!("device has no service {}", r.service),
        );
        return Err(DenyReason::UnknownService);
    };
    t.check(
        5,
        "service-known",
        true,
        format_args!(
            "service {} ({}), category {}",
            svc.id,
            svc.kind.as_str(),
            svc.category
        ),
    );
    if let Target::Networks { .. } = svc.target {
        let ok = r
            .destination
            .is_some_and(|d| destination_allowed(&svc.target, d, r.echo));
        check(
            t,
            5,
            "vpn-destination",
            ok,
            DenyReason::DestinationNotAllowed,
            format_args!(
                "destination {} within the service's networks and ports: {ok}",
                OptAddr(r.destination)
            ),
        )?;
    }
    screen(svc, r, t)?;
    Ok(svc)
}

/// Step 5, continued: a vpn destination of a screened class (loopback,
/// the router's own address…, `destination.rs`) passes only if a network
/// of the service names it explicitly.
fn screen<T: Tracer>(svc: &CompiledService, r: &Request, t: &mut T) -> Result<(), DenyReason> {
    let (Target::Networks { networks, .. }, Some(d)) = (&svc.target, r.destination) else {
        return Ok(());
    };
    let Some((class, within)) = destination::classify(d.ip(), r.local) else {
        return Ok(());
    };
    let named = destination::named_explicitly(networks, d.ip(), &within);
    check(
        t,
        5,
        "vpn-destination-class",
        named,
        DenyReason::DestinationNotAllowed,
        format_args!(
            "destination {} is {}: allowed only by a service network inside {}/{}: {named}",
            d.ip().to_canonical(),
            class.as_str(),
            within.addr,
            within.prefix
        ),
    )
}

/// Whether `d` lies in one of the networks and (if any are listed, and `d`
/// is no ICMP echo target) ports. An IPv4-mapped IPv6 address is checked as
/// the IPv4 address it denotes.
pub(super) fn destination_allowed(target: &Target, d: SocketAddr, echo: bool) -> bool {
    let Target::Networks { networks, ports } = target else {
        return false;
    };
    let ip = d.ip().to_canonical();
    networks.iter().any(|n| n.contains(ip))
        && (echo
            || ports.is_empty()
            || ports
                .iter()
                .any(|p| p.start <= d.port() && d.port() <= p.end))
}

/// Step 6: the highest level among matching candidates, or the closest miss.
fn grants<T: Tracer>(
    ix: &PolicyIndex,
    user: &CUser,
    svc: &CompiledService,
    ticket_mfa: bool,
    consent: bool,
    t: &mut T,
) -> Result<Level, DenyReason> {
    t.sources(ix, user, svc.cat);
    let (mut best, mut only_mfa, mut only_consent, mut both) = (None, false, false, false);
    let mut read_skipped = false;
    for c in ix.candidates(user, svc.cat) {
        let outcome = grant_outcome(c, svc, ticket_mfa, consent);
        t.grant(c, outcome);
        match outcome {
            GrantOutcome::Match => best = best.max(Some(c.level)),
            GrantOutcome::NeedsMfa => only_mfa = true,
            GrantOutcome::NeedsConsent => only_consent = true,
            GrantOutcome::NeedsBoth => both = true,
            GrantOutcome::ReadNotEnforceable => read_skipped = true,
        }
    }
    let result = best.ok_or_else(|| closest_miss(only_mfa, only_consent, both));
    t.check(
        6,
        "grants",
        result.is_ok(),
        format_args!(
            "category {}: {}",
            svc.category,
            Outcome(result, read_skipped)
        ),
    );
    result
}

/// The step-6 verdict in words; the flag says a `read` grant was ignored
/// because the service cannot enforce it.
struct Outcome(Result<Level, DenyReason>, bool);

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(level) => write!(f, "highest matching level {level}")?,
            Err(DenyReason::NoGrant) if self.1 => f.write_str("no grant matched")?,
            Err(DenyReason::NoGrant) => f.write_str("no applicable grant names it")?,
            Err(reason) => write!(f, "no grant matched; closest miss {reason}")?,
        }
        if self.1 {
            write!(f, " (read grants ignored: {READ_NOT_ENFORCEABLE})")?;
        }
        Ok(())
    }
}

/// Why a `read` grant does not match a vpn service, as the trace says it.
pub(super) const READ_NOT_ENFORCEABLE: &str = "read level cannot be enforced on a vpn service";

struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

struct OptAddr(Option<SocketAddr>);

impl fmt::Display for OptAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("(none)"),
        }
    }
}

/// A timestamp as RFC 3339 UTC, formatted only when a tracer keeps it.
struct At(u64);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::duration::format_time(self.0))
    }
}
