//! Property test: `compile` accepts exactly the bundles a naive validator,
//! written directly over the proto `Bundle`, finds consistent. Bundles are
//! generated with references that may dangle, parents that may loop, roles in
//! the wrong scope, repeated ids and targets of the wrong shape.

use crate::policy::testutil::compile;
use edgegate_proto::bundle::{
    Bundle, Category, Company, Device, Grant, Group, Membership, Network, Role, Scope, Service,
    ServiceKind, Status, Target, User,
};
use edgegate_proto::Level;
use proptest::prelude::*;
use std::collections::HashSet;

/// Any id of a kind, including one past the last, which does not exist.
fn id(prefix: &str, i: u8, n: usize) -> String {
    format!("{prefix}{}", i as usize % (n + 1))
}

/// Mostly a consistent choice among `ok`; for `i < 12` (about 5%) any id of
/// the kind, which may dangle or have the wrong scope.
fn pick(i: u8, ok: &[String], prefix: &str, n: usize) -> String {
    if i >= 12 && !ok.is_empty() {
        ok[i as usize % ok.len()].clone()
    } else {
        id(prefix, i, n)
    }
}

type UserSpec = (Vec<u8>, Vec<(u8, u8)>);

#[derive(Debug, Clone)]
struct Spec {
    groups: Vec<Option<u8>>,
    roles: Vec<(bool, Vec<u8>)>,
    users: Vec<UserSpec>,
    device_groups: Vec<u8>,
    services: Vec<(bool, bool, u8)>,
    dup: Option<u8>,
    wrong_device: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    let n = |w| prop::bool::weighted(w);
    (
        prop::collection::vec(prop::option::weighted(0.6, any::<u8>()), 1..6),
        prop::collection::vec(
            (any::<bool>(), prop::collection::vec(any::<u8>(), 0..3)),
            1..5,
        ),
        prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 0..2),
                prop::collection::vec((any::<u8>(), any::<u8>()), 0..3),
            ),
            1..4,
        ),
        prop::collection::vec(any::<u8>(), 0..3),
        prop::collection::vec((any::<bool>(), n(0.9), any::<u8>()), 0..4),
        prop::option::weighted(0.1, 0u8..4),
        n(0.05),
    )
        .prop_map(
            |(groups, roles, users, device_groups, services, dup, wrong_device)| Spec {
                groups,
                roles,
                users,
                device_groups,
                services,
                dup,
                wrong_device,
            },
        )
}

fn build(s: &Spec) -> Bundle {
    let (ng, nr, nc) = (s.groups.len(), s.roles.len(), 2);
    let all = |prefix: &str, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    };
    let (groups, cat_ids) = (all("g", ng), all("c", nc));
    let scoped = |company: bool| -> Vec<String> {
        (s.roles.iter().enumerate())
            .filter(|(_, r)| r.0 == company)
            .map(|(i, _)| format!("r{i}"))
            .collect()
    };
    let (company_roles, group_roles) = (scoped(true), scoped(false));
    let mut b = Bundle {
        device_id: "d".into(),
        serial: 1,
        issued_at: 0,
        not_after: 10,
        company: Company {
            id: "co".into(),
            name: String::new(),
        },
        organizations: vec![],
        categories: (0..nc)
            .map(|c| Category {
                id: format!("c{c}"),
                name: String::new(),
            })
            .collect(),
        groups: (s.groups.iter().enumerate())
            .map(|(i, p)| Group {
                id: format!("g{i}"),
                name: String::new(),
                kind: "k".into(),
                // Mostly an earlier group (no cycle), sometimes any.
                parent: p.and_then(|p| match (p >= 12, i) {
                    (true, 0) => None,
                    (true, _) => Some(format!("g{}", p as usize % i)),
                    (false, _) => Some(id("g", p, ng)),
                }),
                status: Status::Active,
            })
            .collect(),
        roles: (s.roles.iter().enumerate())
            .map(|(i, (company, cats))| Role {
                id: format!("r{i}"),
                name: String::new(),
                scope: if *company {
                    Scope::Company
                } else {
                    Scope::Group
                },
                grants: cats
                    .iter()
                    .map(|&c| Grant {
                        category: pick(c, &cat_ids, "c", nc),
                        level: Level::Read,
                    })
                    .collect(),
                mfa: false,
                site_consent: false,
            })
            .collect(),
        users: (s.users.iter().enumerate())
            .map(|(i, (roles, ms))| User {
                id: format!("u{i}"),
                name: String::new(),
                org: "o".into(),
                status: Status::Active,
                roles: roles
                    .iter()
                    .map(|&r| pick(r, &company_roles, "r", nr))
                    .collect(),
                memberships: ms
                    .iter()
                    .map(|&(g, r)| Membership {
                        group: pick(g, &groups, "g", ng),
                        role: pick(r, &group_roles, "r", nr),
                    })
                    .collect(),
                mfa: false,
                logout_period: 1,
            })
            .collect(),
        device: Device {
            id: if s.wrong_device {
                "other".into()
            } else {
                "d".into()
            },
            name: String::new(),
            groups: s
                .device_groups
                .iter()
                .map(|&g| pick(g, &groups, "g", ng))
                .collect(),
            services: (s.services.iter().enumerate())
                .map(|(i, &(vpn, fits, c))| service(i, vpn, fits, pick(c, &cat_ids, "c", nc)))
                .collect(),
        },
        revoked_tickets: vec![],
    };
    match s.dup {
        Some(0) if ng > 1 => b.groups[1].id = "g0".into(),
        Some(1) if nr > 1 => b.roles[1].id = "r0".into(),
        Some(2) => b.users.push(b.users[0].clone()),
        Some(_) => b.categories[1].id = "c0".into(),
        None => {}
    }
    b
}

fn service(i: usize, vpn: bool, fits: bool, category: String) -> Service {
    let networks = Target::Networks {
        networks: vec![Network {
            addr: "10.0.0.0".parse().unwrap(),
            prefix: 8,
        }],
        ports: vec![],
    };
    let endpoint = Target::Endpoint {
        host: "h".into(),
        port: 1,
    };
    Service {
        id: format!("s{i}"),
        name: String::new(),
        kind: if vpn {
            ServiceKind::Vpn
        } else {
            ServiceKind::Http
        },
        target: if vpn == fits { networks } else { endpoint },
        category,
    }
}

fn unique<'a>(ids: impl Iterator<Item = &'a String>) -> bool {
    let mut seen = HashSet::new();
    ids.into_iter().all(|i| seen.insert(i))
}

fn valid(b: &Bundle) -> bool {
    let has = |list: &[String], x: &String| list.contains(x);
    let groups: Vec<String> = b.groups.iter().map(|g| g.id.clone()).collect();
    let cats: Vec<String> = b.categories.iter().map(|c| c.id.clone()).collect();
    let role = |id: &String| b.roles.iter().find(|r| &r.id == id);
    let acyclic = b.groups.iter().all(|g| {
        let mut cur = g.parent.clone();
        for _ in 0..=b.groups.len() {
            match cur {
                None => return true,
                Some(p) => {
                    cur = b
                        .groups
                        .iter()
                        .find(|x| x.id == p)
                        .and_then(|x| x.parent.clone())
                }
            }
        }
        false
    });
    b.device.id == b.device_id
        && unique(groups.iter())
        && unique(cats.iter())
        && unique(b.roles.iter().map(|r| &r.id))
        && unique(b.users.iter().map(|u| &u.id))
        && b.groups
            .iter()
            .all(|g| g.parent.as_ref().map_or(true, |p| has(&groups, p)))
        && acyclic
        && b.roles
            .iter()
            .all(|r| r.grants.iter().all(|g| has(&cats, &g.category)))
        && b.users.iter().all(|u| {
            u.roles
                .iter()
                .all(|r| role(r).is_some_and(|r| r.scope == Scope::Company))
                && u.memberships.iter().all(|m| {
                    has(&groups, &m.group) && role(&m.role).is_some_and(|r| r.scope == Scope::Group)
                })
        })
        && b.device.groups.iter().all(|g| has(&groups, g))
        && b.device.services.iter().all(|s| {
            has(&cats, &s.category)
                && matches!(s.target, Target::Networks { .. }) == (s.kind == ServiceKind::Vpn)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn compile_accepts_exactly_the_consistent_bundles(s in spec()) {
        let b = build(&s);
        let result = compile(&b);
        prop_assert_eq!(result.is_ok(), valid(&b), "{:?}", result.err());
        if let Err(e) = result {
            let line = e.to_string();
            prop_assert!(!line.contains('\n') && line.contains('"'), "{}", line);
        }
    }
}
