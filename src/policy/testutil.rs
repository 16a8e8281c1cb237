//! Test fixtures: keys, sealing and verifying, a hand-written bundle shaped
//! like seed use case 3 (Europe > Division > Customer), and `Case`, a request
//! with owned parts.

use super::{
    decide, explain, CompileError, Decision, Explanation, Policy, PolicyIndex, Request, TicketInput,
};
use ed25519_dalek::SigningKey;
use edgegate_proto::bundle::{
    self, Bundle, Category, Company, Device, Grant, Group, Membership, Network, Organization,
    PortRange, Role, Scope, Service, ServiceKind, Status, Target, User,
};
use edgegate_proto::ticket;
use edgegate_proto::{Level, PublicKey, Ticket, TrustPolicy, VerifiedBundle, VerifiedTicket};
use std::net::SocketAddr;

pub(super) const T0: u64 = 1_000_000;
pub(super) const NOT_AFTER: u64 = T0 + 86_400;
pub(super) const DEVICE: &str = "dev-1";

fn authority() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

pub(super) fn trust() -> TrustPolicy {
    TrustPolicy::new(vec![authority().verifying_key().into()], 1).unwrap()
}

pub(super) fn client_key() -> PublicKey {
    SigningKey::from_bytes(&[2; 32]).verifying_key().into()
}

pub(super) fn other_key() -> PublicKey {
    SigningKey::from_bytes(&[3; 32]).verifying_key().into()
}

pub(super) fn verify_bundle(b: &Bundle) -> VerifiedBundle {
    VerifiedBundle::verify(&bundle::seal(b, &[&authority()]), &trust()).unwrap()
}

pub(super) fn compile(b: &Bundle) -> Result<PolicyIndex, CompileError> {
    PolicyIndex::compile(&verify_bundle(b))
}

pub(super) fn verify_ticket(t: &Ticket) -> VerifiedTicket {
    VerifiedTicket::verify(&ticket::seal(t, &[&authority()]), &trust()).unwrap()
}

fn group(id: &str, parent: Option<&str>, active: bool) -> Group {
    Group {
        id: id.into(),
        name: id.into(),
        kind: "group".into(),
        parent: parent.map(Into::into),
        status: if active {
            Status::Active
        } else {
            Status::Inactive
        },
    }
}

fn role(id: &str, scope: Scope, grants: &[(&str, Level)], mfa: bool, site_consent: bool) -> Role {
    Role {
        id: id.into(),
        name: id.into(),
        scope,
        grants: grants
            .iter()
            .map(|&(c, level)| Grant {
                category: c.into(),
                level,
            })
            .collect(),
        mfa,
        site_consent,
    }
}

pub(super) fn user(id: &str, roles: &[&str], memberships: &[(&str, &str)]) -> User {
    User {
        id: id.into(),
        name: format!("User {id}"),
        org: "org-1".into(),
        status: Status::Active,
        roles: roles.iter().map(|&r| r.into()).collect(),
        memberships: memberships
            .iter()
            .map(|&(g, r)| Membership {
                group: g.into(),
                role: r.into(),
            })
            .collect(),
        mfa: false,
        logout_period: 12 * 3600,
    }
}

fn service(id: &str, kind: ServiceKind, category: &str, target: Target) -> Service {
    Service {
        id: id.into(),
        name: id.into(),
        kind,
        target,
        category: category.into(),
    }
}

fn endpoint(port: u16) -> Target {
    Target::Endpoint {
        host: "10.10.0.5".into(),
        port,
    }
}

fn net(addr: &str, prefix: u8) -> Network {
    Network {
        addr: addr.parse().unwrap(),
        prefix,
    }
}

fn services() -> Vec<Service> {
    let vpn = Target::Networks {
        networks: vec![net("10.10.0.0", 16), net("fd00:10::", 32)],
        ports: vec![
            PortRange { start: 22, end: 22 },
            PortRange { start: 80, end: 90 },
        ],
    };
    let vpn_any = Target::Networks {
        networks: vec![net("192.168.1.0", 24)],
        ports: vec![],
    };
    vec![
        service("vpn", ServiceKind::Vpn, "vpn-access", vpn),
        service("vpn-any", ServiceKind::Vpn, "vpn-access", vpn_any),
        service("vnc", ServiceKind::Vnc, "vnc-access", endpoint(5900)),
        service("dash", ServiceKind::Http, "info-access", endpoint(80)),
        service("ws", ServiceKind::Websocket, "maint-access", endpoint(8080)),
    ]
}

fn roles() -> Vec<Role> {
    use Level::{Manage as M, Read as R};
    use Scope::{Company as C, Group as G};
    vec![
        role(
            "admin",
            C,
            &[("vpn-access", M), ("vnc-access", M), ("info-access", M)],
            true,
            false,
        ),
        role("viewer", C, &[("info-access", R)], false, false),
        role(
            "service-manager",
            G,
            &[("vnc-access", M), ("vpn-access", M)],
            false,
            false,
        ),
        role(
            "operator",
            G,
            &[("vnc-access", M), ("info-access", R)],
            false,
            false,
        ),
        role(
            "provider",
            G,
            &[("maint-access", M), ("vnc-access", R)],
            false,
            true,
        ),
        role("secure-op", G, &[("maint-access", M)], true, false),
        role("info-manager", G, &[("info-access", M)], false, false),
        role("both", G, &[("vpn-access", M)], true, true),
        role("vpn-reader", C, &[("vpn-access", R)], true, false),
    ]
}

fn users() -> Vec<User> {
    let mut inactive = user("ivan", &["admin"], &[]);
    inactive.status = Status::Inactive;
    let mut judy = user("judy", &["viewer"], &[]);
    judy.mfa = true;
    vec![
        user("alice", &["admin"], &[]),
        user("bob", &[], &[("europe", "service-manager")]),
        user("carol", &[], &[("div-2", "service-manager")]),
        user("dave", &[], &[("plant", "operator")]),
        user("erin", &[], &[("line-x", "operator")]),
        user("frank", &["viewer"], &[("cust-a", "info-manager")]),
        user("gina", &["viewer"], &[]),
        user("hank", &[], &[("cust-a", "provider")]),
        inactive,
        judy,
        user("kim", &[], &[("cust-a", "both"), ("cust-a", "provider")]),
        user(
            "leo",
            &[],
            &[("cust-a", "secure-op"), ("div-1", "provider")],
        ),
        user("mia", &[], &[("legacy", "operator")]),
        user("nina", &["vpn-reader"], &[]),
        user("oscar", &["vpn-reader"], &[("europe", "service-manager")]),
    ]
}

/// Europe > div-1 > cust-a and Europe > div-2 > cust-b; `plant` (inactive
/// root); `legacy` (inactive root) > `line-x` (active). The device is in
/// cust-a, plant and line-x.
pub(super) fn fixture() -> Bundle {
    Bundle {
        device_id: DEVICE.into(),
        serial: 7,
        issued_at: T0 - 100,
        not_after: NOT_AFTER,
        company: Company {
            id: "acme".into(),
            name: "Acme".into(),
        },
        organizations: vec![Organization {
            id: "org-1".into(),
            name: "Org 1".into(),
        }],
        categories: ["vpn-access", "vnc-access", "info-access", "maint-access"]
            .iter()
            .map(|&c| Category {
                id: c.into(),
                name: c.into(),
            })
            .collect(),
        groups: vec![
            group("europe", None, true),
            group("div-1", Some("europe"), true),
            group("cust-a", Some("div-1"), true),
            group("div-2", Some("europe"), true),
            group("cust-b", Some("div-2"), true),
            group("plant", None, false),
            group("legacy", None, false),
            group("line-x", Some("legacy"), true),
        ],
        roles: roles(),
        users: users(),
        device: Device {
            id: DEVICE.into(),
            name: "Router".into(),
            groups: vec!["cust-a".into(), "plant".into(), "line-x".into()],
            services: services(),
        },
        revoked_tickets: vec![[0xee; 16]],
    }
}

/// A request with owned parts; `ticket: None` stands for an invalid ticket.
pub(super) struct Case {
    pub(super) ticket: Option<Ticket>,
    pub(super) key: PublicKey,
    pub(super) service: String,
    pub(super) dest: Option<SocketAddr>,
    pub(super) now: u64,
    pub(super) consent: bool,
    pub(super) limit: bool,
    pub(super) grace: u64,
}

impl Case {
    /// User `user` asks for `service` at T0 with a fresh ticket without 2FA.
    pub(super) fn new(user: &str, service: &str) -> Case {
        Case {
            ticket: Some(Ticket {
                id: [9; 16],
                user: user.into(),
                device: DEVICE.into(),
                client_key: client_key(),
                issued_at: T0,
                expires_at: T0 + 3600,
                auth_time: T0,
                mfa: false,
            }),
            key: client_key(),
            service: service.into(),
            dest: None,
            now: T0,
            consent: false,
            limit: false,
            grace: 0,
        }
    }

    pub(super) fn t(&mut self) -> &mut Ticket {
        self.ticket.as_mut().expect("case has a ticket")
    }

    pub(super) fn with(mut self, f: impl FnOnce(&mut Case)) -> Case {
        f(&mut self);
        self
    }

    fn run<R>(&self, ix: Option<&PolicyIndex>, f: impl FnOnce(&Policy, &Request) -> R) -> R {
        let vt = self.ticket.as_ref().map(verify_ticket);
        let r = Request {
            ticket: vt
                .as_ref()
                .map_or(TicketInput::Invalid, TicketInput::Verified),
            client_key: &self.key,
            service: &self.service,
            destination: self.dest,
            now: self.now,
            consent: self.consent,
            limit_exceeded: self.limit,
        };
        let p = Policy {
            index: ix,
            expiry_grace: self.grace,
        };
        f(&p, &r)
    }

    pub(super) fn decide(&self, ix: Option<&PolicyIndex>) -> Decision {
        self.run(ix, |p, r| {
            let d = decide(p, r);
            assert_eq!(explain(p, r).decision, d, "explain disagrees with decide");
            d
        })
    }

    pub(super) fn explain(&self, ix: Option<&PolicyIndex>) -> Explanation {
        self.run(ix, explain)
    }

    pub(super) fn next_change(&self, ix: Option<&PolicyIndex>) -> Option<u64> {
        self.run(ix, super::next_change)
    }
}

/// The fixture, compiled once per test binary.
pub(super) fn fixture_index() -> &'static PolicyIndex {
    static IX: std::sync::OnceLock<PolicyIndex> = std::sync::OnceLock::new();
    IX.get_or_init(|| compile(&fixture()).unwrap())
}
