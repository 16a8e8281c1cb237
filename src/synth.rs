//! Deterministic synthetic bundles for tests and benchmarks.
//!
//! `synth_bundle` builds a consistent bundle (it compiles) of any size from a
//! seed: a group forest three to four levels deep, company- and group-scope
//! roles with read/manage grants and 2FA/consent demands, vpn/vnc/http/
//! websocket services, a few inactive users and groups and revoked tickets.
//! The generator is a local SplitMix64 so the output never changes with a
//! dependency's version.

use crate::testkit;
use edgegate_proto::bundle::{
    Bundle, Grant, Group, Membership, Network, PortRange, Role, Scope, Service, ServiceKind,
    Status, Target, User,
};
use edgegate_proto::Level;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The device id of every synthetic bundle.
pub const SYNTH_DEVICE: &str = "device-0";
/// `issued_at` of every synthetic bundle.
pub const SYNTH_ISSUED_AT: u64 = 1_800_000_000;
/// `not_after` of every synthetic bundle (30 days later).
pub const SYNTH_NOT_AFTER: u64 = SYNTH_ISSUED_AT + 30 * 86_400;
/// Number of categories in a synthetic bundle.
pub const SYNTH_CATEGORIES: usize = 8;

/// A small deterministic generator (SplitMix64).
pub struct SplitMix(u64);

impl SplitMix {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

fn status(active: bool) -> Status {
    if active {
        Status::Active
    } else {
        Status::Inactive
    }
}

/// A consistent bundle for device `SYNTH_DEVICE` with the given counts.
pub fn synth_bundle(
    users: usize,
    groups: usize,
    roles: usize,
    services: usize,
    seed: u64,
) -> Bundle {
    let mut rng = SplitMix::new(seed);
    let groups_v = synth_groups(&mut rng, groups);
    let roles_v = synth_roles(&mut rng, roles);
    let users_v = synth_users(&mut rng, users, &groups_v, &roles_v);
    let device_groups = pick_device_groups(&mut rng, &groups_v);
    let services_v: Vec<Service> = (0..services).map(|i| synth_service(&mut rng, i)).collect();
    let revoked_tickets: Vec<_> = (0..users / 10)
        .map(|_| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
            id[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
            id
        })
        .collect();
    let builder = (0..5).fold(testkit::bundle(SYNTH_DEVICE), |b, i| {
        b.org(&format!("org-{i}"), &format!("Organization {i}"))
    });
    (0..SYNTH_CATEGORIES)
        .fold(builder, |b, i| {
            b.category(&format!("cat-{i}"), &format!("Category {i} access"))
        })
        .valid(SYNTH_ISSUED_AT, SYNTH_NOT_AFTER)
        .company("company-0", "Synthetic Machines Ltd")
        .groups(groups_v)
        .roles(roles_v)
        .users(users_v)
        .device_name("Synthetic router")
        .device_groups(device_groups)
        .services(services_v)
        .revoked(revoked_tickets)
        .build()
}

const KINDS: [&str; 4] = ["region", "division", "customer", "site"];

/// Roots are the first ~2%; every other group hangs below an earlier one of
/// depth < 3, so depth is at most 4 levels.
fn synth_groups(rng: &mut SplitMix, n: usize) -> Vec<Group> {
    let roots = (n / 50).max(1).min(n);
    let mut depth: Vec<usize> = Vec::with_capacity(n);
    let mut parents: Vec<Option<usize>> = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let parent = if i < roots {
            None
        } else {
            let mut p = rng.below(i);
            while depth[p] >= 3 {
                p = parents[p].unwrap_or(0);
            }
            Some(p)
        };
        let d = parent.map_or(0, |p| depth[p] + 1);
        depth.push(d);
        parents.push(parent);
        out.push(Group {
            id: format!("group-{i}"),
            name: format!("Group {i}"),
            kind: KINDS[d].into(),
            parent: parent.map(|p| format!("group-{p}")),
            status: status(!rng.chance(5)),
        });
    }
    out
}

/// About a third company-scope, the rest group-scope; roles alternate scope
/// for the first two so both kinds exist whenever `n >= 2`.
fn synth_roles(rng: &mut SplitMix, n: usize) -> Vec<Role> {
    (0..n)
        .map(|i| {
            let company = i == 0 || (i != 1 && rng.chance(33));
            let grants = (0..1 + rng.below(3))
                .map(|_| Grant {
                    category: format!("cat-{}", rng.below(SYNTH_CATEGORIES)),
                    level: if rng.chance(30) {
                        Level::Read
                    } else {
                        Level::Manage
                    },
                })
                .collect();
            Role {
                id: format!("role-{i}"),
                name: format!("Role {i}"),
                scope: if company {
                    Scope::Company
                } else {
                    Scope::Group
                },
                grants,
                mfa: rng.chance(20),
                site_consent: rng.chance(10),
            }
        })
        .collect()
}

fn synth_users(rng: &mut SplitMix, n: usize, groups: &[Group], roles: &[Role]) -> Vec<User> {
    let company: Vec<usize> = (0..roles.len())
        .filter(|&i| roles[i].scope == Scope::Company)
        .collect();
    let group: Vec<usize> = (0..roles.len())
        .filter(|&i| roles[i].scope == Scope::Group)
        .collect();
    (0..n)
        .map(|i| {
            let mut user_roles = Vec::new();
            if !company.is_empty() {
                for _ in 0..rng.below(3) {
                    let r = format!("role-{}", company[rng.below(company.len())]);
                    if !user_roles.contains(&r) {
                        user_roles.push(r);
                    }
                }
            }
            let mut memberships = Vec::new();
            if !group.is_empty() && !groups.is_empty() {
                for _ in 0..rng.below(4) {
                    memberships.push(Membership {
                        group: groups[rng.below(groups.len())].id.clone(),
                        role: format!("role-{}", group[rng.below(group.len())]),
                    });
                }
            }
            User {
                id: format!("user-{i}"),
                name: format!("User {i}"),
                org: format!("org-{}", rng.below(5)),
                status: status(!rng.chance(5)),
                roles: user_roles,
                memberships,
                mfa: rng.chance(10),
                logout_period: [12, 22, 110][rng.below(3)] * 3600,
            }
        })
        .collect()
}

/// Up to three groups, preferring deep ones (customers and sites).
fn pick_device_groups(rng: &mut SplitMix, groups: &[Group]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for _ in 0..groups.len().min(3) * 4 {
        let g = &groups[rng.below(groups.len())];
        if out.len() < 3 && g.parent.is_some() && !out.contains(&g.id) {
            out.push(g.id.clone());
        }
    }
    if out.is_empty() {
        out.extend(groups.first().map(|g| g.id.clone()));
    }
    out
}

fn synth_service(rng: &mut SplitMix, i: usize) -> Service {
    let kind = [
        ServiceKind::Vpn,
        ServiceKind::Vnc,
        ServiceKind::Http,
        ServiceKind::Websocket,
    ][i % 4];
    let octet = (i % 250) as u8;
    let target = match kind {
        ServiceKind::Vpn => Target::Networks {
            networks: vec![
                Network {
                    addr: IpAddr::V4(Ipv4Addr::new(10, octet, 0, 0)),
                    prefix: 16,
                },
                Network {
                    addr: IpAddr::V6(Ipv6Addr::new(0xfd00, u16::from(octet), 0, 0, 0, 0, 0, 0)),
                    prefix: 32,
                },
            ],
            ports: if i.is_multiple_of(8) {
                Vec::new()
            } else {
                vec![
                    PortRange {
                        start: 1,
                        end: 1023,
                    },
                    PortRange {
                        start: 8000,
                        end: 8100,
                    },
                ]
            },
        },
        _ => Target::Endpoint {
            host: format!("10.{octet}.0.{}", 1 + rng.below(250)),
            port: [5900, 80, 8080][i % 3],
        },
    };
    Service {
        id: format!("svc-{i}"),
        name: format!("{} service {i}", kind.as_str()),
        kind,
        target,
        category: format!("cat-{}", rng.below(SYNTH_CATEGORIES)),
    }
}
