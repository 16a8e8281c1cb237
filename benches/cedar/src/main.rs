//! edgegate's `decide` against the `cedar-policy` crate on the same model.
//!
//! Builds `synth_bundle(10_000 users, 1_000 groups, 100 roles, 50 services)`,
//! translates it into Cedar entities and five policies (see `POLICIES` and
//! benches/README.md for the encoding), checks that both evaluators agree on
//! allow/deny for every request of a mixed sample, then times both per
//! decision (median and p99 of the per-call mean over batches of calls).
//!
//! Output lines prefixed `RESULT` are machine-readable for benches/compare.sh.

use cedar_policy::{
    Authorizer, Context, Decision as CDecision, Entities, EntityUid, PolicySet, Request,
    RestrictedExpression,
};
use ed25519_dalek::SigningKey;
use edgegate::policy::{decide, Policy, PolicyIndex, Request as EgRequest, TicketInput};
use edgegate::synth::{synth_bundle, SplitMix, SYNTH_DEVICE, SYNTH_ISSUED_AT};
use edgegate_proto::bundle::{Bundle, Scope, ServiceKind, Status, Target};
use edgegate_proto::VerifiedTicket;
use edgegate_proto::{bundle, ticket, Level, PublicKey, Ticket, TrustPolicy, VerifiedBundle};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hint::black_box;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

const USERS: usize = 10_000;
const SAMPLE: usize = 50_000;
const BATCH: usize = 50;

/// One forbid holding every check that is not the grant rule (steps 1-5),
/// and one permit per combination of role demands (step 6). A grant is a
/// scope string `GROUP|CATEGORY|LEVEL` (`*` for company-wide roles) in the
/// user's set for its role's demands; the resource's `scopes` are the
/// service's category crossed with the active device groups and their
/// active ancestors (and `*`), at level `manage`, plus `read` where the
/// service can enforce the read level (not vpn).
const POLICIES: &str = r#"
forbid (principal, action, resource) unless {
  context.ticket_valid &&
  context.now < resource.device.not_after &&
  context.ticket_device == resource.device.id &&
  context.ticket_key == context.client_key &&
  context.issued_at - 300 <= context.now && context.now < context.expires_at &&
  !(resource.device.revoked.contains(context.ticket_id)) &&
  principal.active &&
  context.now < context.auth_time + principal.logout_period &&
  (!principal.mfa || context.mfa) &&
  context.destination_ok
};
permit (principal, action == Action::"open", resource) when {
  principal.g_plain.containsAny(resource.scopes)
};
permit (principal, action == Action::"open", resource) when {
  context.mfa && principal.g_mfa.containsAny(resource.scopes)
};
permit (principal, action == Action::"open", resource) when {
  context.consent && principal.g_consent.containsAny(resource.scopes)
};
permit (principal, action == Action::"open", resource) when {
  context.mfa && context.consent && principal.g_both.containsAny(resource.scopes)
};
"#;

fn main() {
    let authority = SigningKey::from_bytes(&[1; 32]);
    let client: PublicKey = SigningKey::from_bytes(&[2; 32]).verifying_key().into();
    let other: PublicKey = SigningKey::from_bytes(&[3; 32]).verifying_key().into();
    let trust = TrustPolicy::new(vec![authority.verifying_key().into()], 1).unwrap();

    let b = synth_bundle(USERS, 1_000, 100, 50, 1);
    let vb = VerifiedBundle::verify(&bundle::seal(&b, &[&authority]), &trust).unwrap();
    let ix = PolicyIndex::compile(&vb).unwrap();
    let t = Instant::now();
    let entities = Entities::from_json_value(cedar_entities(&b), None).unwrap();
    let policies = PolicySet::from_str(POLICIES).unwrap();
    println!(
        "cedar: {} entities, {} policies, translated and parsed in {:.0} ms",
        entities.iter().count(),
        policies.policies().count(),
        t.elapsed().as_secs_f64() * 1e3
    );

    let now = SYNTH_ISSUED_AT + 3_600;
    let tickets = make_tickets(&authority, &trust, client, other, now, &b);
    let mut services: Vec<&str> = b.device.services.iter().map(|s| s.id.as_str()).collect();
    services.push("missing");
    let reqs = make_requests(&tickets, &services, &client, now);
    let creqs: Vec<Request> = reqs.iter().map(|r| cedar_request(r, &b)).collect();

    let p = Policy {
        index: Some(&ix),
        expiry_grace: 0,
    };
    let auth = Authorizer::new();
    let (mut agree, mut allow) = (0usize, 0usize);
    let mut disagreements = Vec::new();
    for (r, c) in reqs.iter().zip(&creqs) {
        let e = decide(&p, r).is_allow();
        let resp = auth.is_authorized(c, &policies, &entities);
        let cd = resp.decision() == CDecision::Allow;
        allow += usize::from(e);
        if e == cd {
            agree += 1;
        } else if disagreements.len() < 5 {
            disagreements.push(format!(
                "{:?} vs cedar {:?}: {:?}",
                decide(&p, r),
                resp.decision(),
                c
            ));
        }
    }
    println!(
        "agreement: {agree}/{} requests (edgegate allows {allow})",
        reqs.len()
    );
    for d in &disagreements {
        println!("DISAGREE {d}");
    }
    println!("RESULT cedar_agree {agree} {}", reqs.len());

    let eg = time_batches(5, &reqs, |r| {
        black_box(decide(&p, black_box(r)));
    });
    let ce = time_batches(1, &creqs, |r| {
        black_box(auth.is_authorized(black_box(r), &policies, &entities));
    });
    println!(
        "edgegate decide: median {:.0} ns, p99 {:.0} ns per decision",
        eg.0, eg.1
    );
    println!(
        "cedar is_authorized: median {:.0} ns, p99 {:.0} ns per decision",
        ce.0, ce.1
    );
    println!("RESULT decide_ns {:.1} {:.1}", eg.0, eg.1);
    println!("RESULT cedar_ns {:.1} {:.1}", ce.0, ce.1);
    println!("ratio cedar/edgegate (median): {:.0}x", ce.0 / eg.0);
}

/// Median and p99 (ns) of the per-call mean over batches of `BATCH` calls.
fn time_batches<R>(passes: usize, reqs: &[R], mut f: impl FnMut(&R)) -> (f64, f64) {
    let mut means: Vec<Duration> = Vec::new();
    for _ in 0..passes {
        for chunk in reqs.chunks(BATCH) {
            let t = Instant::now();
            chunk.iter().for_each(&mut f);
            means.push(t.elapsed() / chunk.len() as u32);
        }
    }
    means.sort_unstable();
    let at = |q: usize| means[(means.len() * q / 100).min(means.len() - 1)].as_secs_f64() * 1e9;
    (at(50), at(99))
}

/// Tickets: mostly known users, some unknown, some bound to another key,
/// some expired, some revoked, half with 2FA.
fn make_tickets(
    authority: &SigningKey,
    trust: &TrustPolicy,
    client: PublicKey,
    other: PublicKey,
    now: u64,
    b: &Bundle,
) -> Vec<VerifiedTicket> {
    let mut rng = SplitMix::new(99);
    (0..2_000u32)
        .map(|i| {
            let mut id = [(i % 251) as u8; 16];
            if rng.chance(2) {
                id = b.revoked_tickets[rng.below(b.revoked_tickets.len())];
            }
            let t = Ticket {
                id,
                user: format!("user-{}", rng.below(USERS + USERS / 50)),
                device: if rng.chance(1) {
                    "device-x".into()
                } else {
                    SYNTH_DEVICE.into()
                },
                client_key: if rng.chance(1) { other } else { client },
                issued_at: now - 60,
                expires_at: if rng.chance(2) { now - 1 } else { now + 3_600 },
                auth_time: now - [600, 13 * 3600, 30 * 3600][rng.below(3)],
                mfa: rng.chance(50),
            };
            VerifiedTicket::verify(&ticket::seal(&t, &[authority]), trust).unwrap()
        })
        .collect()
}

fn make_requests<'a>(
    tickets: &'a [VerifiedTicket],
    services: &[&'a str],
    client: &'a PublicKey,
    now: u64,
) -> Vec<EgRequest<'a>> {
    let dests: [SocketAddr; 5] = [
        "10.4.1.2:22".parse().unwrap(),
        "[fd00:8::9]:8080".parse().unwrap(),
        "10.12.1.2:443".parse().unwrap(),
        "10.0.7.7:9000".parse().unwrap(),
        "192.168.0.1:22".parse().unwrap(),
    ];
    let mut rng = SplitMix::new(7);
    (0..SAMPLE)
        .map(|_| EgRequest {
            ticket: if rng.chance(1) {
                TicketInput::Invalid
            } else {
                TicketInput::Verified(&tickets[rng.below(tickets.len())])
            },
            client_key: client,
            service: services[rng.below(services.len())],
            destination: Some(dests[rng.below(dests.len())]),
            echo: false,
            now,
            consent: rng.chance(50),
            limit_exceeded: false,
            // Off the router: no addresses of its own to screen (the
            // destinations here are in no screened class either).
            local: edgegate::policy::destination::LocalAddrs::none(),
        })
        .collect()
}

fn uid(ty: &str, id: &str) -> Value {
    json!({"__entity": {"type": ty, "id": id}})
}

/// Users with their grants as scope strings split by demand; services with
/// their reachable scopes; the device with its revoked tickets.
fn cedar_entities(b: &Bundle) -> Value {
    let roles: HashMap<&str, _> = b.roles.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut out = Vec::new();
    for u in &b.users {
        let mut sets: [BTreeSet<String>; 4] = Default::default();
        let mut add = |scope: &str, role: &str| {
            let r = roles[role];
            let slot = usize::from(r.mfa) | (usize::from(r.site_consent) << 1);
            for g in &r.grants {
                let lvl = if g.level == Level::Read {
                    "read"
                } else {
                    "manage"
                };
                sets[slot].insert(format!("{scope}|{}|{lvl}", g.category));
            }
        };
        for r in &u.roles {
            if roles[r.as_str()].scope == Scope::Company {
                add("*", r);
            }
        }
        for m in &u.memberships {
            add(&m.group, &m.role);
        }
        out.push(json!({
            "uid": {"type": "User", "id": u.id},
            "attrs": {
                "active": u.status == Status::Active,
                "mfa": u.mfa,
                "logout_period": u.logout_period as i64,
                "g_plain": sets[0], "g_mfa": sets[1], "g_consent": sets[2], "g_both": sets[3],
            },
            "parents": [],
        }));
    }
    let reach = reachable_groups(b);
    for s in &b.device.services {
        let mut scopes = Vec::new();
        for g in reach.iter().map(String::as_str).chain(["*"]) {
            scopes.push(format!("{g}|{}|manage", s.category));
            if s.kind != ServiceKind::Vpn {
                scopes.push(format!("{g}|{}|read", s.category));
            }
        }
        out.push(json!({
            "uid": {"type": "Service", "id": s.id},
            "attrs": {"scopes": scopes, "device": uid("Device", &b.device.id)},
            "parents": [uid("Device", &b.device.id)["__entity"].clone()],
        }));
    }
    let revoked: Vec<String> = b.revoked_tickets.iter().map(|t| hex(t)).collect();
    out.push(json!({
        "uid": {"type": "Device", "id": b.device.id},
        "attrs": {"id": b.device.id, "not_after": b.not_after as i64, "revoked": revoked},
        "parents": [],
    }));
    Value::Array(out)
}

/// Active groups that are device groups or ancestors of one (only a group's
/// own status counts, as in DESIGN §2 step 6).
fn reachable_groups(b: &Bundle) -> BTreeSet<String> {
    let by_id: HashMap<&str, _> = b.groups.iter().map(|g| (g.id.as_str(), g)).collect();
    let mut seen = HashSet::new();
    for dg in &b.device.groups {
        let mut cur = Some(dg.as_str());
        while let Some(id) = cur {
            if !seen.insert(id) {
                break;
            }
            cur = by_id[id].parent.as_deref();
        }
    }
    seen.into_iter()
        .filter(|id| by_id[id].status == Status::Active)
        .map(str::to_owned)
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The Cedar request for one edgegate request. The ticket's signature is
/// verified before either evaluator runs (`ticket_valid`). Cedar has no
/// quantifier over a set of networks and port ranges, so the vpn
/// destination check is computed here with the same rule (`destination_ok`).
fn cedar_request(r: &EgRequest, b: &Bundle) -> Request {
    let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
    let n = |v: u64| RestrictedExpression::new_long(v as i64);
    let bl = RestrictedExpression::new_bool;
    let svc = b.device.services.iter().find(|x| x.id == r.service);
    let destination_ok = match svc.map(|x| &x.target) {
        Some(t @ Target::Networks { .. }) => r.destination.is_some_and(|d| dest_ok(t, d)),
        _ => true,
    };
    let (valid, tk) = match r.ticket {
        TicketInput::Verified(vt) => (true, Some(vt.ticket())),
        TicketInput::Invalid => (false, None),
    };
    let user = tk.map_or("", |t| t.user.as_str());
    let pairs = vec![
        ("ticket_valid".to_owned(), bl(valid)),
        ("now".to_owned(), n(r.now)),
        (
            "ticket_device".to_owned(),
            s(tk.map_or("", |t| t.device.as_str())),
        ),
        (
            "ticket_key".to_owned(),
            s(&tk.map_or(String::new(), |t| t.client_key.to_string())),
        ),
        ("client_key".to_owned(), s(&r.client_key.to_string())),
        ("issued_at".to_owned(), n(tk.map_or(0, |t| t.issued_at))),
        ("expires_at".to_owned(), n(tk.map_or(0, |t| t.expires_at))),
        ("auth_time".to_owned(), n(tk.map_or(0, |t| t.auth_time))),
        (
            "ticket_id".to_owned(),
            s(&tk.map_or(String::new(), |t| hex(&t.id))),
        ),
        ("mfa".to_owned(), bl(tk.is_some_and(|t| t.mfa))),
        ("consent".to_owned(), bl(r.consent)),
        ("destination_ok".to_owned(), bl(destination_ok)),
    ];
    Request::new(
        EntityUid::from_str(&format!("User::{:?}", user)).unwrap(),
        EntityUid::from_str(r#"Action::"open""#).unwrap(),
        EntityUid::from_str(&format!("Service::{:?}", r.service)).unwrap(),
        Context::from_pairs(pairs).unwrap(),
        None,
    )
    .unwrap()
}

/// DESIGN §2 step 5 for vpn services (IPv4-mapped addresses as IPv4).
fn dest_ok(t: &Target, d: SocketAddr) -> bool {
    let Target::Networks { networks, ports } = t else {
        return false;
    };
    let ip = d.ip().to_canonical();
    networks.iter().any(|n| n.contains(ip))
        && (ports.is_empty()
            || ports
                .iter()
                .any(|p| p.start <= d.port() && d.port() <= p.end))
}
