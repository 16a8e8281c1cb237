//! The permission bundle: everything one device needs to decide on its own.
//!
//! The cloud compiles one company's policy for one device into a `Bundle`,
//! encodes it as `BundleBody::V1`, and seals it in a signed envelope.
//! `VerifiedBundle::verify` is the only way to obtain a `VerifiedBundle`; the
//! store, the compiler and the evaluator accept nothing else.
//!
//! References between records are by id string; resolving them (and refusing
//! a bundle whose references dangle or whose groups form a cycle) is the
//! policy compiler's job in the `edgegate` crate.

use crate::codec::{self, DecodeError};
use crate::envelope::{self, EnvelopeError, Purpose, TrustPolicy};
use crate::keys::PublicKey;
use crate::reason::Level;
use crate::ticket::TicketId;
use crate::UnixTime;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Caps checked after decoding, before anything is compiled. The envelope
/// size cap already bounds memory; these bound work and keep ids printable.
pub mod limits {
    /// Longest id or name, in bytes.
    pub const MAX_STRING: usize = 256;
    /// Most users in one bundle.
    pub const MAX_USERS: usize = 200_000;
    /// Most groups, roles, categories, organizations or services, each.
    pub const MAX_ITEMS: usize = 50_000;
    /// Most entries in one list inside a record (grants, memberships, networks...).
    pub const MAX_LIST: usize = 1_024;
    /// Most revoked ticket ids.
    pub const MAX_REVOKED: usize = 100_000;
}

/// The versioned body. New formats are new variants at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BundleBody {
    /// Format version 1.
    V1(Bundle),
}

/// Format version 1 of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// The device this bundle is for.
    pub device_id: String,
    /// Strictly increasing per device; a device never accepts a lower or equal one
    /// (the identical bytes again are a no-op).
    pub serial: u64,
    /// When the cloud signed it; feeds the device's time floor.
    pub issued_at: UnixTime,
    /// After this instant the bundle no longer counts as valid.
    pub not_after: UnixTime,
    /// The tenant that owns the device.
    pub company: Company,
    /// Organizations users come from (the company's own, partners, customers...).
    pub organizations: Vec<Organization>,
    /// Access categories.
    pub categories: Vec<Category>,
    /// Groups, forming a forest through `parent`.
    pub groups: Vec<Group>,
    /// Roles.
    pub roles: Vec<Role>,
    /// Users who may matter to this device.
    pub users: Vec<User>,
    /// This device, its groups and services.
    pub device: Device,
    /// Ticket ids revoked before their expiry.
    pub revoked_tickets: Vec<TicketId>,
}

/// The tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// An organization a user belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// A named selection of services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// `active` or `inactive`, for users and groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// May be used.
    Active,
    /// Refused everywhere.
    Inactive,
}

/// A typed node in the group forest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `region`, `division`, `customer`, `partner`, or any other type name.
    pub kind: String,
    /// Parent group id, if any.
    pub parent: Option<String>,
    /// Status; memberships of an inactive group grant nothing.
    pub status: Status,
}

/// Whether a role applies company-wide or only through a group membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// Assigned directly to users; applies to every device of the company.
    Company,
    /// Assigned with a group; applies to devices in that group or below it.
    Group,
}

/// One category grant of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Category id.
    pub category: String,
    /// Level granted.
    pub level: Level,
}

/// A selection of category grants with their demands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Company-wide or group-specific.
    pub scope: Scope,
    /// Category grants.
    pub grants: Vec<Grant>,
    /// Grants of this role count only with two-factor authentication.
    pub mfa: bool,
    /// Grants of this role count only while on-site consent is active.
    pub site_consent: bool,
}

/// A user's membership: a group and the group-specific role held there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Group id.
    pub group: String,
    /// Role id (scope `group`).
    pub role: String,
}

/// A user. One id everywhere, whichever organization they come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Id, as tickets name it.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Organization id.
    pub org: String,
    /// Status.
    pub status: Status,
    /// Company-wide role ids.
    pub roles: Vec<String>,
    /// Group memberships.
    pub memberships: Vec<Membership>,
    /// Two-factor authentication enforced for this user.
    pub mfa: bool,
    /// Seconds after authentication that a session may last.
    pub logout_period: u64,
}

/// The kind of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceKind {
    /// Layer-3/4 access to networks behind the router.
    Vpn,
    /// A VNC server.
    Vnc,
    /// An HTTP server.
    Http,
    /// A WebSocket endpoint (HTTP upgrade).
    Websocket,
}

impl ServiceKind {
    /// The stable name: `vpn`, `vnc`, `http`, `websocket`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Vpn => "vpn",
            ServiceKind::Vnc => "vnc",
            ServiceKind::Http => "http",
            ServiceKind::Websocket => "websocket",
        }
    }
}

/// An IP network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix: u8,
}

impl Network {
    /// Whether `ip` lies inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let bits = u32::from(self.prefix.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let bits = u32::from(self.prefix.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port, inclusive.
    pub end: u16,
}

/// Where a service's traffic goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// One endpoint (vnc, http, websocket).
    Endpoint {
        /// Host name or address on the machine network.
        host: String,
        /// Port.
        port: u16,
    },
    /// Networks and optional ports (vpn). Empty `ports` means every port.
    Networks {
        /// Allowed networks.
        networks: Vec<Network>,
        /// Allowed ports; empty means all.
        ports: Vec<PortRange>,
    },
}

/// One service this device exposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Id, as clients name it.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Kind.
    pub kind: ServiceKind,
    /// Target.
    pub target: Target,
    /// The one access category it belongs to.
    pub category: String,
}

/// This device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Groups the device is in.
    pub groups: Vec<String>,
    /// Services.
    pub services: Vec<Service>,
}

/// Why a bundle failed verification (before any device state is consulted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The envelope was refused (size, shape, signatures).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The body is not a valid bundle encoding.
    #[error("bundle body: {0}")]
    Body(DecodeError),
    /// A size or count cap was exceeded.
    #[error("bundle exceeds a limit: {0}")]
    Limit(String),
    /// `issued_at` lies after `not_after`: no instant at which it is valid.
    #[error("bundle issued at {issued_at}, after its not_after {not_after}")]
    Dates {
        /// The bundle's `issued_at`.
        issued_at: UnixTime,
        /// The bundle's `not_after`.
        not_after: UnixTime,
    },
}

impl BundleError {
    /// Stable short name for audit records and wire answers.
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::Envelope(e) => e.code(),
            BundleError::Body(DecodeError::UnknownVersion(_)) => "unknown-format",
            BundleError::Body(_) => "malformed",
            BundleError::Limit(_) => "too-large",
            BundleError::Dates { .. } => "malformed",
        }
    }
}

/// A bundle whose envelope met the trust policy and whose body decoded and
/// passed the caps. Only `verify` constructs it.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    bundle: Bundle,
    raw: Vec<u8>,
    signers: Vec<PublicKey>,
}

impl VerifiedBundle {
    /// Verify envelope bytes against `trust`, then decode and cap the body.
    /// Order: size and envelope shape, signatures (each trusted key tried
    /// once), then decode, caps and dates: nothing is decoded before it is
    /// authenticated.
    pub fn verify(bytes: &[u8], trust: &TrustPolicy) -> Result<Self, BundleError> {
        let (bundle, signers) = verify_parts(bytes, trust)?;
        Ok(VerifiedBundle {
            bundle,
            raw: bytes.to_vec(),
            signers,
        })
    }

    /// [`VerifiedBundle::verify`] keeping `bytes` as the raw envelope
    /// instead of copying them (the push path owns what it received).
    pub fn verify_owned(bytes: Vec<u8>, trust: &TrustPolicy) -> Result<Self, BundleError> {
        let (bundle, signers) = verify_parts(&bytes, trust)?;
        Ok(VerifiedBundle {
            bundle,
            raw: bytes,
            signers,
        })
    }

    /// The decoded bundle.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The exact envelope bytes that were verified.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Distinct trusted keys that signed it.
    pub fn signers(&self) -> &[PublicKey] {
        &self.signers
    }
}

fn verify_parts(
    bytes: &[u8],
    trust: &TrustPolicy,
) -> Result<(Bundle, Vec<PublicKey>), BundleError> {
    let opened = envelope::open(Purpose::Bundle, bytes, trust)?;
    let bundle = decode_body(opened.body)?;
    check_limits(&bundle)?;
    check_dates(&bundle)?;
    Ok((bundle, opened.trusted_signers))
}

/// A bundle is valid from `issued_at` to `not_after`; the other way round
/// it is valid at no instant, and its `issued_at` would still feed the time
/// floor: refused as malformed.
fn check_dates(b: &Bundle) -> Result<(), BundleError> {
    if b.issued_at > b.not_after {
        return Err(BundleError::Dates {
            issued_at: b.issued_at,
            not_after: b.not_after,
        });
    }
    Ok(())
}

/// Decode a bundle body (already authenticated, or for inspection).
pub fn decode_body(body: &[u8]) -> Result<Bundle, BundleError> {
    let version = codec::peek_version(body).map_err(BundleError::Body)?;
    if version != 0 {
        return Err(BundleError::Body(DecodeError::UnknownVersion(version)));
    }
    let BundleBody::V1(bundle) = codec::decode_exact(body).map_err(BundleError::Body)?;
    Ok(bundle)
}

/// Encode a bundle as a version-1 body, ready to seal.
pub fn encode_body(bundle: &Bundle) -> Vec<u8> {
    codec::encode(&BundleBody::V1(bundle.clone()))
}

/// Encode and sign a bundle with each key: the cloud's side.
pub fn seal(bundle: &Bundle, keys: &[&ed25519_dalek::SigningKey]) -> Vec<u8> {
    envelope::seal(Purpose::Bundle, encode_body(bundle), keys)
}

fn check_limits(b: &Bundle) -> Result<(), BundleError> {
    use limits::*;
    let lim = |what: &str, n: usize, max: usize| {
        if n > max {
            Err(BundleError::Limit(format!("{what}: {n} > {max}")))
        } else {
            Ok(())
        }
    };
    lim("users", b.users.len(), MAX_USERS)?;
    lim("groups", b.groups.len(), MAX_ITEMS)?;
    lim("roles", b.roles.len(), MAX_ITEMS)?;
    lim("categories", b.categories.len(), MAX_ITEMS)?;
    lim("organizations", b.organizations.len(), MAX_ITEMS)?;
    lim("services", b.device.services.len(), MAX_ITEMS)?;
    lim("device groups", b.device.groups.len(), MAX_LIST)?;
    lim("revoked tickets", b.revoked_tickets.len(), MAX_REVOKED)?;
    let mut strings: Vec<&str> = vec![
        &b.device_id,
        &b.company.id,
        &b.company.name,
        &b.device.id,
        &b.device.name,
    ];
    for r in &b.roles {
        lim("grants of a role", r.grants.len(), MAX_LIST)?;
        strings.extend([r.id.as_str(), &r.name]);
    }
    for u in &b.users {
        lim("roles of a user", u.roles.len(), MAX_LIST)?;
        lim("memberships of a user", u.memberships.len(), MAX_LIST)?;
        strings.extend([u.id.as_str(), &u.name, &u.org]);
    }
    for s in &b.device.services {
        if let Target::Networks { networks, ports } = &s.target {
            lim("networks of a service", networks.len(), MAX_LIST)?;
            lim("ports of a service", ports.len(), MAX_LIST)?;
        }
        strings.extend([s.id.as_str(), &s.name, &s.category]);
    }
    for g in &b.groups {
        strings.extend([g.id.as_str(), &g.name, &g.kind]);
    }
    if let Some(s) = strings.iter().find(|s| s.len() > MAX_STRING) {
        return Err(BundleError::Limit(format!(
            "string of {} bytes > {MAX_STRING}",
            s.len()
        )));
    }
    Ok(())
}
