//! Property test: `compile` accepts exactly the bundles a naive validator,
//! written directly over the proto `Bundle`, finds consistent. Bundles are
//! generated with references that may dangle, parents that may loop, roles in
//! the wrong scope, repeated ids and targets of the wrong shape.

use crate::policy::testutil::compile;
use crate::testkit::{self, bundle, group, role, user, ServiceBuilder};
use edgegate_proto::bundle::{Bundle, Scope, ServiceKind, Target};
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
    let group_forest = (s.groups.iter().enumerate()).map(|(i, p)| {
        // Mostly an earlier group (no cycle), sometimes any.
        let parent = p.and_then(|p| match (p >= 12, i) {
            (true, 0) => None,
            (true, _) => Some(format!("g{}", p as usize % i)),
            (false, _) => Some(id("g", p, ng)),
        });
        let g = group(&format!("g{i}"));
        match parent {
            Some(p) => g.parent(&p),
            None => g,
        }
    });
    let roles = (s.roles.iter().enumerate()).map(|(i, (company, cats))| {
        let scope = if *company {
            Scope::Company
        } else {
            Scope::Group
        };
        (cats.iter()).fold(role(&format!("r{i}")).scope(scope), |r, &c| {
            r.grant(&pick(c, &cat_ids, "c", nc), Level::Read)
        })
    });
    let users = (s.users.iter().enumerate()).map(|(i, (roles, ms))| {
        let u = (roles.iter()).fold(user(&format!("u{i}")), |u, &r| {
            u.role(&pick(r, &company_roles, "r", nr))
        });
        (ms.iter()).fold(u, |u, &(g, r)| {
            u.member(&pick(g, &groups, "g", ng), &pick(r, &group_roles, "r", nr))
        })
    });
    let device_groups = (s.device_groups.iter()).map(|&g| pick(g, &groups, "g", ng));
    let services = (s.services.iter().enumerate())
        .map(|(i, &(vpn, fits, c))| service(i, vpn, fits, &pick(c, &cat_ids, "c", nc)));
    let mut b = bundle("d")
        .valid(0, 10)
        .categories(&cat_ids)
        .groups(group_forest)
        .roles(roles)
        .users(users)
        .device_groups(device_groups)
        .services(services)
        .build();
    if s.wrong_device {
        b.device.id = "other".into();
    }
    match s.dup {
        Some(0) if ng > 1 => b.groups[1].id = "g0".into(),
        Some(1) if nr > 1 => b.roles[1].id = "r0".into(),
        Some(2) => b.users.push(b.users[0].clone()),
        Some(_) => b.categories[1].id = "c0".into(),
        None => {}
    }
    b
}

/// A vpn or http service; `fits` says whether its target has its kind's shape.
fn service(i: usize, vpn: bool, fits: bool, category: &str) -> ServiceBuilder {
    let (kind, networks, endpoint) = (
        if vpn {
            ServiceKind::Vpn
        } else {
            ServiceKind::Http
        },
        testkit::networks(&["10.0.0.0/8"], &[]),
        testkit::endpoint("h", 1),
    );
    let target = if vpn == fits { networks } else { endpoint };
    testkit::service(&format!("s{i}"), kind, category, target)
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
            .all(|g| g.parent.as_ref().is_none_or(|p| has(&groups, p)))
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
