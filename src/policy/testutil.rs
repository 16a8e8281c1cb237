//! Test fixtures: keys, sealing and verifying, a hand-written bundle shaped
//! like seed use case 3 (Europe > Division > Customer), and `Case`, a request
//! with owned parts.

use super::{
    decide, explain, CompileError, Decision, Explanation, Policy, PolicyIndex, Request, TicketInput,
};
use crate::testkit::{self, bundle, endpoint, group, networks, role, service, user, UserBuilder};
use ed25519_dalek::SigningKey;
use edgegate_proto::bundle::{Bundle, Scope, ServiceKind};
use edgegate_proto::{Level, PublicKey, Ticket, VerifiedBundle, VerifiedTicket};
use std::net::SocketAddr;

pub(super) const T0: u64 = 1_000_000;
pub(super) const NOT_AFTER: u64 = T0 + 86_400;
pub(super) const DEVICE: &str = "dev-1";

fn authority() -> SigningKey {
    testkit::key(1)
}

pub(super) fn client_key() -> PublicKey {
    testkit::public(&testkit::key(2))
}

pub(super) fn other_key() -> PublicKey {
    testkit::public(&testkit::key(3))
}

pub(super) fn verify_bundle(b: &Bundle) -> VerifiedBundle {
    testkit::verified(b, &authority())
}

pub(super) fn compile(b: &Bundle) -> Result<PolicyIndex, CompileError> {
    PolicyIndex::compile(&verify_bundle(b))
}

pub(super) fn verify_ticket(t: &Ticket) -> VerifiedTicket {
    testkit::verified_ticket(t, &authority())
}

/// A user of the fixture: company roles `roles`, memberships (group, role).
fn member(id: &str, roles: &[&str], memberships: &[(&str, &str)]) -> UserBuilder {
    let u = roles.iter().fold(user(id), |u, r| u.role(r));
    memberships.iter().fold(u, |u, &(g, r)| u.member(g, r))
}

/// Europe > div-1 > cust-a and Europe > div-2 > cust-b; `plant` (inactive
/// root); `legacy` (inactive root) > `line-x` (active). The device is in
/// cust-a, plant and line-x.
pub(super) fn fixture() -> Bundle {
    use Level::{Manage as M, Read as R};
    use Scope::Group as G;
    let host = |port| endpoint("10.10.0.5", port);
    let vpn = networks(&["10.10.0.0/16", "fd00:10::/32"], &[(22, 22), (80, 90)]);
    bundle(DEVICE)
        .serial(7)
        .valid(T0 - 100, NOT_AFTER)
        .org("org-1", "Org 1")
        .categories(["vpn-access", "vnc-access", "info-access", "maint-access"])
        .groups([
            group("europe"),
            group("div-1").parent("europe"),
            group("cust-a").parent("div-1"),
            group("div-2").parent("europe"),
            group("cust-b").parent("div-2"),
            group("plant").active(false),
            group("legacy").active(false),
            group("line-x").parent("legacy"),
        ])
        .roles([
            role("admin")
                .grant("vpn-access", M)
                .grant("vnc-access", M)
                .grant("info-access", M)
                .mfa(true),
            role("viewer").grant("info-access", R),
            role("service-manager")
                .scope(G)
                .grant("vnc-access", M)
                .grant("vpn-access", M),
            role("operator")
                .scope(G)
                .grant("vnc-access", M)
                .grant("info-access", R),
            role("provider")
                .scope(G)
                .grant("maint-access", M)
                .grant("vnc-access", R)
                .site_consent(true),
            role("secure-op")
                .scope(G)
                .grant("maint-access", M)
                .mfa(true),
            role("info-manager").scope(G).grant("info-access", M),
            role("both")
                .scope(G)
                .grant("vpn-access", M)
                .mfa(true)
                .site_consent(true),
            role("vpn-reader").grant("vpn-access", R).mfa(true),
        ])
        .users([
            member("alice", &["admin"], &[]),
            member("bob", &[], &[("europe", "service-manager")]),
            member("carol", &[], &[("div-2", "service-manager")]),
            member("dave", &[], &[("plant", "operator")]),
            member("erin", &[], &[("line-x", "operator")]),
            member("frank", &["viewer"], &[("cust-a", "info-manager")]),
            member("gina", &["viewer"], &[]),
            member("hank", &[], &[("cust-a", "provider")]),
            member("ivan", &["admin"], &[]).active(false),
            member("judy", &["viewer"], &[]).mfa(true),
            member("kim", &[], &[("cust-a", "both"), ("cust-a", "provider")]),
            member(
                "leo",
                &[],
                &[("cust-a", "secure-op"), ("div-1", "provider")],
            ),
            member("mia", &[], &[("legacy", "operator")]),
            member("nina", &["vpn-reader"], &[]),
            member("oscar", &["vpn-reader"], &[("europe", "service-manager")]),
        ])
        .device_groups(["cust-a", "plant", "line-x"])
        .services([
            service("vpn", ServiceKind::Vpn, "vpn-access", vpn),
            service(
                "vpn-any",
                ServiceKind::Vpn,
                "vpn-access",
                networks(&["192.168.1.0/24"], &[]),
            ),
            service("vnc", ServiceKind::Vnc, "vnc-access", host(5900)),
            service("dash", ServiceKind::Http, "info-access", host(80)),
            service("ws", ServiceKind::Websocket, "maint-access", host(8080)),
        ])
        .revoked([[0xee; 16]])
        .build()
}

/// A request with owned parts; `ticket: None` stands for an invalid ticket.
pub(super) struct Case {
    pub(super) ticket: Option<Ticket>,
    pub(super) key: PublicKey,
    pub(super) service: String,
    pub(super) dest: Option<SocketAddr>,
    /// The destination is an ICMP echo target.
    pub(super) echo: bool,
    pub(super) now: u64,
    pub(super) consent: bool,
    pub(super) limit: bool,
    pub(super) grace: u64,
    /// The router's own addresses.
    pub(super) local: crate::policy::destination::LocalAddrs,
}

impl Case {
    /// User `user` asks for `service` at T0 with a fresh ticket without 2FA.
    pub(super) fn new(user: &str, service: &str) -> Case {
        Case {
            ticket: Some(Ticket {
                issued_at: T0,
                auth_time: T0,
                expires_at: T0 + 3600,
                ..testkit::ticket(user, DEVICE, client_key(), T0)
            }),
            key: client_key(),
            service: service.into(),
            dest: None,
            echo: false,
            now: T0,
            consent: false,
            limit: false,
            grace: 0,
            local: Default::default(),
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
            echo: self.echo,
            now: self.now,
            consent: self.consent,
            limit_exceeded: self.limit,
            local: &self.local,
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
