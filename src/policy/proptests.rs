//! Property tests: on random small policies and requests, `decide` equals a
//! deliberately naive reference evaluator written directly over the proto
//! `Bundle` (linear searches, parent walks, no index), and `explain` reaches
//! the same decision as `decide`.

use super::testutil::{client_key, compile, other_key, verify_ticket};
use super::{decide, explain, next_change, Decision, Policy, Request, TicketInput, SKEW};
use crate::testkit::{
    bundle, endpoint, group, networks, role, service, user, ServiceBuilder, UserBuilder,
};
use edgegate_proto::bundle::{Bundle, Role, Scope, Service, ServiceKind, Status, Target, User};
use edgegate_proto::{DenyReason as D, Level, PublicKey, Ticket};
use proptest::prelude::*;
use std::net::{IpAddr, SocketAddr};

const T: u64 = 1_000_000;
const DEVICE: &str = "dev";
const CATS: usize = 3;

type RoleSpec = (bool, Vec<(u8, bool)>, bool, bool);
type UserSpec = (bool, bool, bool, Vec<u8>, Vec<(u8, u8)>);

#[derive(Debug, Clone)]
struct Spec {
    groups: Vec<(Option<u8>, bool)>,
    roles: Vec<RoleSpec>,
    users: Vec<UserSpec>,
    device_groups: Vec<u8>,
    services: Vec<(u8, u8)>,
    revoked: Vec<u8>,
}

#[derive(Debug, Clone)]
struct ReqSpec {
    no_index: bool,
    grace: bool,
    user: Option<u8>,
    service: Option<u8>,
    invalid: bool,
    wrong_device: bool,
    wrong_key: bool,
    ticket_id: u8,
    issued: i64,
    valid_for: u64,
    auth_before: u64,
    mfa: bool,
    now: i64,
    consent: bool,
    limit: bool,
    dest: Option<(u8, u16)>,
}

fn spec() -> impl Strategy<Value = Spec> {
    let role = (
        any::<bool>(),
        prop::collection::vec((any::<u8>(), any::<bool>()), 0..4),
        any::<bool>(),
        any::<bool>(),
    );
    let user = (
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop::collection::vec(any::<u8>(), 0..3),
        prop::collection::vec((any::<u8>(), any::<u8>()), 0..4),
    );
    (
        prop::collection::vec(
            (
                prop::option::weighted(0.7, any::<u8>()),
                prop::bool::weighted(0.8),
            ),
            1..7,
        ),
        prop::collection::vec(role, 1..6),
        prop::collection::vec(user, 2..6),
        prop::collection::vec(any::<u8>(), 1..4),
        prop::collection::vec((any::<u8>(), any::<u8>()), 2..6),
        prop::collection::vec(0u8..16, 0..2),
    )
        .prop_map(
            |(groups, roles, users, device_groups, services, revoked)| Spec {
                groups,
                roles,
                users,
                device_groups,
                services,
                revoked,
            },
        )
}

fn req_spec() -> impl Strategy<Value = ReqSpec> {
    (
        (
            prop::bool::weighted(0.03),
            any::<bool>(),
            prop::option::weighted(0.9, any::<u8>()),
            prop::option::weighted(0.9, any::<u8>()),
        ),
        (
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.05),
            0u8..16,
        ),
        (-200i64..200, 100u64..4000, 0u64..600, any::<bool>()),
        (-400i64..1100, any::<bool>(), prop::bool::weighted(0.1)),
        prop::option::weighted(0.8, (0u8..6, 0u16..40)),
    )
        .prop_map(|(a, b, c, d, dest)| ReqSpec {
            no_index: a.0,
            grace: a.1,
            user: a.2,
            service: a.3,
            invalid: b.0,
            wrong_device: b.1,
            wrong_key: b.2,
            ticket_id: b.3,
            issued: c.0,
            valid_for: c.1,
            auth_before: c.2,
            mfa: c.3,
            now: d.0,
            consent: d.1,
            limit: d.2,
            dest,
        })
}

fn build_roles(spec: &Spec) -> Vec<Role> {
    let roles = spec.roles.iter().enumerate();
    roles
        .map(|(i, (company, grants, mfa, consent))| {
            let scope = if *company {
                Scope::Company
            } else {
                Scope::Group
            };
            let r = role(&format!("r{i}")).scope(scope).mfa(*mfa);
            grants
                .iter()
                .fold(r.site_consent(*consent), |r, &(c, read)| {
                    let level = if read { Level::Read } else { Level::Manage };
                    r.grant(&format!("c{}", c as usize % CATS), level)
                })
                .into()
        })
        .collect()
}

fn build_users(spec: &Spec, roles: &[Role]) -> Vec<UserBuilder> {
    let of = |scope| -> Vec<&str> {
        roles
            .iter()
            .filter(|r| r.scope == scope)
            .map(|r| r.id.as_str())
            .collect()
    };
    let (company, group) = (of(Scope::Company), of(Scope::Group));
    let ng = spec.groups.len();
    let users = spec.users.iter().enumerate();
    users
        .map(|(i, (active, mfa, short, rs, ms))| {
            let u = user(&format!("u{i}"))
                .active(*active)
                .mfa(*mfa)
                .logout_period(if *short { 300 } else { 2000 });
            let u = (rs.iter())
                .filter(|_| !company.is_empty())
                .fold(u, |u, &r| u.role(company[r as usize % company.len()]));
            (ms.iter())
                .filter(|_| !group.is_empty())
                .fold(u, |u, &(g, r)| {
                    let role = group[r as usize % group.len()];
                    u.member(&format!("g{}", g as usize % ng), role)
                })
        })
        .collect()
}

fn build_services(spec: &Spec) -> Vec<ServiceBuilder> {
    let kinds = [
        ServiceKind::Vpn,
        ServiceKind::Vnc,
        ServiceKind::Http,
        ServiceKind::Websocket,
    ];
    let services = spec.services.iter().enumerate();
    services
        .map(|(i, &(k, c))| {
            let kind = kinds[k as usize % 4];
            let target = match kind {
                ServiceKind::Vpn if k % 8 < 4 => {
                    networks(&["10.0.0.0/8", "fd00::/16"], &[(20, 30)])
                }
                ServiceKind::Vpn => networks(&["10.0.0.0/8", "fd00::/16"], &[]),
                _ => endpoint("10.0.0.1", 80),
            };
            service(
                &format!("s{i}"),
                kind,
                &format!("c{}", c as usize % CATS),
                target,
            )
        })
        .collect()
}

fn build(spec: &Spec) -> Bundle {
    let ng = spec.groups.len();
    let roles = build_roles(spec);
    let users = build_users(spec, &roles);
    let groups = (spec.groups.iter().enumerate()).map(|(i, &(parent, active))| {
        let g = group(&format!("g{i}")).active(active);
        // Parents point to earlier groups, so there is never a cycle.
        match parent.filter(|_| i > 0) {
            Some(p) => g.parent(&format!("g{}", p as usize % i)),
            None => g,
        }
    });
    let device_groups = (spec.device_groups.iter()).map(|&g| format!("g{}", g as usize % ng));
    bundle(DEVICE)
        .valid(T - 10, T + 1000)
        .categories((0..CATS).map(|c| format!("c{c}")))
        .groups(groups)
        .roles(roles)
        .users(users)
        .device_groups(device_groups)
        .services(build_services(spec))
        .revoked(spec.revoked.iter().map(|&b| [b; 16]))
        .build()
}

const DESTS: [&str; 6] = [
    "10.1.2.3",
    "11.0.0.1",
    "fd00::1",
    "fe80::1",
    "::ffff:10.0.0.1",
    "::ffff:11.0.0.1",
];

struct Req {
    ticket: Option<Ticket>,
    key: PublicKey,
    service: String,
    dest: Option<SocketAddr>,
    now: u64,
    consent: bool,
    limit: bool,
    grace: u64,
    present: bool,
}

fn make_req(r: &ReqSpec, spec: &Spec) -> Req {
    let pick = |i: Option<u8>, prefix: &str, n: usize| match i {
        Some(i) => format!("{prefix}{}", i as usize % n),
        None => "missing".to_owned(),
    };
    let issued_at = T.saturating_add_signed(r.issued);
    let ticket = Ticket {
        id: [r.ticket_id; 16],
        user: pick(r.user, "u", spec.users.len()),
        device: if r.wrong_device {
            "other".into()
        } else {
            DEVICE.into()
        },
        client_key: client_key(),
        issued_at,
        expires_at: issued_at + r.valid_for,
        auth_time: issued_at - r.auth_before,
        mfa: r.mfa,
    };
    Req {
        ticket: (!r.invalid).then_some(ticket),
        key: if r.wrong_key {
            other_key()
        } else {
            client_key()
        },
        service: pick(r.service, "s", spec.services.len()),
        dest: r
            .dest
            .map(|(a, port)| SocketAddr::new(DESTS[a as usize].parse().unwrap(), port)),
        now: T.saturating_add_signed(r.now),
        consent: r.consent,
        limit: r.limit,
        grace: if r.grace { 200 } else { 0 },
        present: !r.no_index,
    }
}

/// DESIGN §2 read literally, over the proto bundle.
fn reference(b: &Bundle, q: &Req) -> Decision {
    reference_steps(b, q).map_or_else(Decision::Deny, Decision::Allow)
}

fn reference_steps(b: &Bundle, q: &Req) -> Result<Level, D> {
    if !q.present || q.now >= b.not_after + q.grace {
        return Err(D::NoValidBundle);
    }
    let t = q.ticket.as_ref().ok_or(D::BadTicket)?;
    if t.device != b.device_id {
        return Err(D::WrongDevice);
    }
    if t.client_key != q.key {
        return Err(D::KeyMismatch);
    }
    if q.now + SKEW < t.issued_at || q.now >= t.expires_at {
        return Err(D::TicketExpired);
    }
    if b.revoked_tickets.contains(&t.id) {
        return Err(D::TicketRevoked);
    }
    let u = b
        .users
        .iter()
        .find(|u| u.id == t.user)
        .ok_or(D::UnknownUser)?;
    if u.status != Status::Active {
        return Err(D::UserInactive);
    }
    if q.now >= t.auth_time + u.logout_period {
        return Err(D::SessionExpired);
    }
    if u.mfa && !t.mfa {
        return Err(D::MfaRequired);
    }
    let s = b
        .device
        .services
        .iter()
        .find(|s| s.id == q.service)
        .ok_or(D::UnknownService)?;
    if s.kind == ServiceKind::Vpn && !reference_destination(&s.target, q.dest) {
        return Err(D::DestinationNotAllowed);
    }
    let level = reference_grants(b, u, s, t.mfa, q.consent)?;
    if q.limit {
        return Err(D::LimitExceeded);
    }
    Ok(level)
}

fn reference_destination(target: &Target, dest: Option<SocketAddr>) -> bool {
    let (Target::Networks { networks, ports }, Some(d)) = (target, dest) else {
        return false;
    };
    let ip = match d.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let port_ok = ports.is_empty() || ports.iter().any(|p| (p.start..=p.end).contains(&d.port()));
    networks.iter().any(|n| n.contains(ip)) && port_ok
}

fn reaches(b: &Bundle, group: &str) -> bool {
    b.device.groups.iter().any(|dg| {
        let mut cur = Some(dg.as_str());
        while let Some(c) = cur {
            if c == group {
                return true;
            }
            cur = b
                .groups
                .iter()
                .find(|g| g.id == c)
                .and_then(|g| g.parent.as_deref());
        }
        false
    })
}

fn reference_grants(
    b: &Bundle,
    u: &User,
    s: &Service,
    mfa: bool,
    consent: bool,
) -> Result<Level, D> {
    let role = |id: &str| b.roles.iter().find(|r| r.id == id).unwrap();
    let mut roles: Vec<&Role> = u.roles.iter().map(|r| role(r)).collect();
    for m in &u.memberships {
        let g = b.groups.iter().find(|g| g.id == m.group).unwrap();
        if g.status == Status::Active && reaches(b, &g.id) {
            roles.push(role(&m.role));
        }
    }
    let mut best = None;
    let mut misses = Vec::new();
    for r in roles {
        for g in r.grants.iter().filter(|g| g.category == s.category) {
            // Observe-only cannot be enforced on raw TCP: a read grant on a
            // vpn service grants nothing and is no near miss.
            if s.kind == ServiceKind::Vpn && g.level == Level::Read {
                continue;
            }
            match (r.mfa && !mfa, r.site_consent && !consent) {
                (false, false) => best = best.max(Some(g.level)),
                miss => misses.push(miss),
            }
        }
    }
    best.ok_or(if misses.contains(&(true, false)) {
        D::MfaRequired
    } else if misses.contains(&(false, true)) {
        D::SiteConsentRequired
    } else if misses.is_empty() {
        D::NoGrant
    } else {
        D::MfaRequired
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn decide_matches_the_naive_reference(spec in spec(), reqs in prop::collection::vec(req_spec(), 1..10)) {
        let bundle = build(&spec);
        let ix = compile(&bundle).expect("generated bundles are consistent");
        for rs in &reqs {
            let q = make_req(rs, &spec);
            let vt = q.ticket.as_ref().map(verify_ticket);
            let r = Request {
                ticket: vt.as_ref().map_or(TicketInput::Invalid, TicketInput::Verified),
                client_key: &q.key,
                service: &q.service,
                destination: q.dest,
                echo: false,
                now: q.now,
                consent: q.consent,
                limit_exceeded: q.limit,
                local: crate::policy::destination::LocalAddrs::none(),
            };
            let p = Policy { index: q.present.then_some(&ix), expiry_grace: q.grace };
            let d = decide(&p, &r);
            prop_assert_eq!(d, reference(&bundle, &q), "request {:?}", rs);
            prop_assert_eq!(explain(&p, &r).decision, d);
            // The decision holds until next_change, and may change there.
            let next = next_change(&p, &r);
            let later = |now| decide(&p, &Request { now, ..r });
            match next {
                Some(at) => {
                    prop_assert!(at > q.now);
                    prop_assert_eq!(later(at - 1), d);
                    prop_assert_eq!(later(q.now + (at - q.now) / 2), d);
                }
                None => prop_assert_eq!(later(q.now + 1_000_000), d),
            }
        }
    }
}
