//! Test fixtures, in one place for the unit tests, `tests/` and the benches:
//! seeded keys, one fluent `Bundle` builder, sealing and tickets.
//!
//! Not for production use. No binary calls it, so a release build drops it;
//! it uses only what the crate already depends on. The builder checks
//! nothing: a test may build a bundle with dangling references on purpose,
//! and `PolicyIndex::compile` is what judges it.

use ed25519_dalek::SigningKey;
use edgegate_proto::authority::{self, encode_keys_delivery, KeyStatement, RoleKeys};
use edgegate_proto::bundle::{
    self, Bundle, Category, Company, Device, Grant, Group, Membership, Network, Organization,
    PortRange, Role, Scope, Service, ServiceKind, Status, Target, User,
};
use edgegate_proto::ticket::{self, Ticket, TicketId};
use edgegate_proto::{Level, PublicKey, TrustPolicy, UnixTime, VerifiedBundle, VerifiedTicket};

/// The signing key whose 32 secret bytes are all `seed`.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The public half of `k`.
pub fn public(k: &SigningKey) -> PublicKey {
    PublicKey::from(k.verifying_key())
}

/// Trust exactly `signer`, threshold 1.
pub fn trust(signer: &SigningKey) -> TrustPolicy {
    TrustPolicy::new(vec![public(signer)], 1).expect("one key, threshold 1")
}

/// `b` sealed by `signer`.
pub fn seal(b: &Bundle, signer: &SigningKey) -> Vec<u8> {
    bundle::seal(b, &[signer])
}

/// `b` sealed by `signer` and verified against trusting only `signer`.
pub fn verified(b: &Bundle, signer: &SigningKey) -> VerifiedBundle {
    VerifiedBundle::verify(&seal(b, signer), &trust(signer)).expect("a sealed bundle verifies")
}

/// A ticket for `user` on `device`, bound to `client`: issued and
/// authenticated 10 s before `now`, valid for an hour, no 2FA, id `[9; 16]`.
/// Adjust the public fields for anything else.
pub fn ticket(user: &str, device: &str, client: PublicKey, now: UnixTime) -> Ticket {
    Ticket {
        id: [9; 16],
        user: user.into(),
        device: device.into(),
        client_key: client,
        issued_at: now - 10,
        expires_at: now + 3600,
        auth_time: now - 10,
        mfa: false,
    }
}

/// `t` sealed by `signer`.
pub fn seal_ticket(t: &Ticket, signer: &SigningKey) -> Vec<u8> {
    ticket::seal(t, &[signer])
}

/// `t` sealed by `signer` and verified against trusting only `signer`.
pub fn verified_ticket(t: &Ticket, signer: &SigningKey) -> VerifiedTicket {
    VerifiedTicket::verify(&seal_ticket(t, signer), &trust(signer))
        .expect("a sealed ticket verifies")
}

/// A key statement of `version`, one key per role (threshold 1), issued
/// at `t` and accepted for a year; no recovery. Adjust the public fields
/// for anything else.
pub fn key_statement(
    version: u64,
    t: UnixTime,
    [root, bundle, ticket, enroll]: [&SigningKey; 4],
) -> KeyStatement {
    let one = |k: &SigningKey| RoleKeys {
        keys: vec![public(k)],
        threshold: 1,
    };
    KeyStatement {
        version,
        issued_at: t,
        expires_at: t + 365 * 86_400,
        root: one(root),
        bundle: one(bundle),
        ticket: one(ticket),
        enroll: one(enroll),
        recovery: None,
    }
}

/// `s` sealed by `signers`, as a keys delivery ready to push, with
/// `bundle` riding along if given.
pub fn push_statement(s: &KeyStatement, signers: &[&SigningKey], bundle: Option<&[u8]>) -> Vec<u8> {
    encode_keys_delivery(&authority::seal(s, signers), bundle)
}

/// A bundle for `device`: serial 1, valid from 0 for ever, company `acme`,
/// nothing else until added.
pub fn bundle(device: &str) -> BundleBuilder {
    BundleBuilder(Bundle {
        device_id: device.into(),
        serial: 1,
        issued_at: 0,
        not_after: UnixTime::MAX,
        company: Company {
            id: "acme".into(),
            name: "Acme".into(),
        },
        organizations: vec![],
        categories: vec![],
        groups: vec![],
        roles: vec![],
        users: vec![],
        device: Device {
            id: device.into(),
            name: "Router".into(),
            groups: vec![],
            services: vec![],
        },
        revoked_tickets: vec![],
    })
}

/// Builds a `Bundle`; see `bundle`.
#[derive(Debug, Clone)]
pub struct BundleBuilder(Bundle);

impl BundleBuilder {
    /// The serial.
    pub fn serial(mut self, serial: u64) -> Self {
        self.0.serial = serial;
        self
    }

    /// `issued_at` and `not_after`.
    pub fn valid(mut self, issued_at: UnixTime, not_after: UnixTime) -> Self {
        self.0.issued_at = issued_at;
        self.0.not_after = not_after;
        self
    }

    /// The company.
    pub fn company(mut self, id: &str, name: &str) -> Self {
        self.0.company = Company {
            id: id.into(),
            name: name.into(),
        };
        self
    }

    /// An organization, named `name`.
    pub fn org(mut self, id: &str, name: &str) -> Self {
        self.0.organizations.push(Organization {
            id: id.into(),
            name: name.into(),
        });
        self
    }

    /// A category named `name`.
    pub fn category(mut self, id: &str, name: &str) -> Self {
        self.0.categories.push(Category {
            id: id.into(),
            name: name.into(),
        });
        self
    }

    /// Categories, each named after its id.
    pub fn categories<S: AsRef<str>>(mut self, ids: impl IntoIterator<Item = S>) -> Self {
        let named = ids.into_iter().map(|id| Category {
            id: id.as_ref().into(),
            name: id.as_ref().into(),
        });
        self.0.categories.extend(named);
        self
    }

    /// Groups (see `group`).
    pub fn groups<G: Into<Group>>(mut self, groups: impl IntoIterator<Item = G>) -> Self {
        self.0.groups.extend(groups.into_iter().map(Into::into));
        self
    }

    /// Roles (see `role`).
    pub fn roles<R: Into<Role>>(mut self, roles: impl IntoIterator<Item = R>) -> Self {
        self.0.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Users (see `user`).
    pub fn users<U: Into<User>>(mut self, users: impl IntoIterator<Item = U>) -> Self {
        self.0.users.extend(users.into_iter().map(Into::into));
        self
    }

    /// The device's display name.
    pub fn device_name(mut self, name: &str) -> Self {
        self.0.device.name = name.into();
        self
    }

    /// Groups the device is in.
    pub fn device_groups<S: AsRef<str>>(mut self, ids: impl IntoIterator<Item = S>) -> Self {
        let ids = ids.into_iter().map(|g| g.as_ref().to_string());
        self.0.device.groups.extend(ids);
        self
    }

    /// The device's services (see `service`).
    pub fn services<S: Into<Service>>(mut self, services: impl IntoIterator<Item = S>) -> Self {
        let services = services.into_iter().map(Into::into);
        self.0.device.services.extend(services);
        self
    }

    /// Revoked ticket ids.
    pub fn revoked(mut self, ids: impl IntoIterator<Item = TicketId>) -> Self {
        self.0.revoked_tickets.extend(ids);
        self
    }

    /// The bundle.
    pub fn build(self) -> Bundle {
        self.0
    }
}

/// An active user in org `org-1`, named `User ID`, logout period 12 h, no
/// roles, no memberships, no 2FA.
pub fn user(id: &str) -> UserBuilder {
    UserBuilder(User {
        id: id.into(),
        name: format!("User {id}"),
        org: "org-1".into(),
        status: Status::Active,
        roles: vec![],
        memberships: vec![],
        mfa: false,
        logout_period: 12 * 3600,
    })
}

/// Builds a `User`; see `user`.
#[derive(Debug, Clone)]
pub struct UserBuilder(User);

impl UserBuilder {
    /// Display name.
    pub fn name(mut self, name: &str) -> Self {
        self.0.name = name.into();
        self
    }

    /// Organization id.
    pub fn org(mut self, org: &str) -> Self {
        self.0.org = org.into();
        self
    }

    /// A company-wide role.
    pub fn role(mut self, role: &str) -> Self {
        self.0.roles.push(role.into());
        self
    }

    /// A group-scope role held in `group`.
    pub fn member(mut self, group: &str, role: &str) -> Self {
        self.0.memberships.push(Membership {
            group: group.into(),
            role: role.into(),
        });
        self
    }

    /// Two-factor authentication enforced, or not.
    pub fn mfa(mut self, mfa: bool) -> Self {
        self.0.mfa = mfa;
        self
    }

    /// Active or inactive.
    pub fn active(mut self, active: bool) -> Self {
        self.0.status = status(active);
        self
    }

    /// Seconds after authentication that a session may last.
    pub fn logout_period(mut self, secs: u64) -> Self {
        self.0.logout_period = secs;
        self
    }
}

impl From<UserBuilder> for User {
    fn from(b: UserBuilder) -> User {
        b.0
    }
}

/// A company-scope role named after its id, no grants, no demands.
pub fn role(id: &str) -> RoleBuilder {
    RoleBuilder(Role {
        id: id.into(),
        name: id.into(),
        scope: Scope::Company,
        grants: vec![],
        mfa: false,
        site_consent: false,
    })
}

/// Builds a `Role`; see `role`.
#[derive(Debug, Clone)]
pub struct RoleBuilder(Role);

impl RoleBuilder {
    /// Display name.
    pub fn name(mut self, name: &str) -> Self {
        self.0.name = name.into();
        self
    }

    /// Company-wide or group-specific.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.0.scope = scope;
        self
    }

    /// A grant of `level` on `category`.
    pub fn grant(mut self, category: &str, level: Level) -> Self {
        self.0.grants.push(Grant {
            category: category.into(),
            level,
        });
        self
    }

    /// Grants count only with two-factor authentication, or not.
    pub fn mfa(mut self, mfa: bool) -> Self {
        self.0.mfa = mfa;
        self
    }

    /// Grants count only while on-site consent is active, or not.
    pub fn site_consent(mut self, consent: bool) -> Self {
        self.0.site_consent = consent;
        self
    }
}

impl From<RoleBuilder> for Role {
    fn from(b: RoleBuilder) -> Role {
        b.0
    }
}

/// An active root group of kind `group`, named after its id.
pub fn group(id: &str) -> GroupBuilder {
    GroupBuilder(Group {
        id: id.into(),
        name: id.into(),
        kind: "group".into(),
        parent: None,
        status: Status::Active,
    })
}

/// Builds a `Group`; see `group`.
#[derive(Debug, Clone)]
pub struct GroupBuilder(Group);

impl GroupBuilder {
    /// Display name.
    pub fn name(mut self, name: &str) -> Self {
        self.0.name = name.into();
        self
    }

    /// Type name (`region`, `customer`...).
    pub fn kind(mut self, kind: &str) -> Self {
        self.0.kind = kind.into();
        self
    }

    /// Parent group id.
    pub fn parent(mut self, parent: &str) -> Self {
        self.0.parent = Some(parent.into());
        self
    }

    /// Active or inactive.
    pub fn active(mut self, active: bool) -> Self {
        self.0.status = status(active);
        self
    }
}

impl From<GroupBuilder> for Group {
    fn from(b: GroupBuilder) -> Group {
        b.0
    }
}

/// A service of `kind` in `category` reaching `target`, named after its id.
/// Nothing ties the kind to the target's shape (see `endpoint`, `networks`).
pub fn service(id: &str, kind: ServiceKind, category: &str, target: Target) -> ServiceBuilder {
    ServiceBuilder(Service {
        id: id.into(),
        name: id.into(),
        kind,
        target,
        category: category.into(),
    })
}

/// Builds a `Service`; see `service`.
#[derive(Debug, Clone)]
pub struct ServiceBuilder(Service);

impl ServiceBuilder {
    /// Display name.
    pub fn name(mut self, name: &str) -> Self {
        self.0.name = name.into();
        self
    }
}

impl From<ServiceBuilder> for Service {
    fn from(b: ServiceBuilder) -> Service {
        b.0
    }
}

/// One endpoint (vnc, http, websocket).
pub fn endpoint(host: &str, port: u16) -> Target {
    Target::Endpoint {
        host: host.into(),
        port,
    }
}

/// Networks `"addr/prefix"` and inclusive port ranges (vpn); no ranges
/// means every port.
pub fn networks(nets: &[&str], ports: &[(u16, u16)]) -> Target {
    let net = |cidr: &&str| {
        let (addr, prefix) = cidr.split_once('/').expect("addr/prefix");
        Network {
            addr: addr.parse().expect("an IP address"),
            prefix: prefix.parse().expect("a prefix length"),
        }
    };
    Target::Networks {
        networks: nets.iter().map(net).collect(),
        ports: ports
            .iter()
            .map(|&(start, end)| PortRange { start, end })
            .collect(),
    }
}

fn status(active: bool) -> Status {
    if active {
        Status::Active
    } else {
        Status::Inactive
    }
}
