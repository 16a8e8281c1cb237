//! Authority keys with roles: which keys may sign what, and how that changes
//! in band (the shape of TUF's root metadata, for access instead of updates).
//!
//! A device's config pins only the **root** keys and their threshold. Root
//! signs a versioned [`KeyStatement`] naming the keys and threshold of each
//! online role: `bundle` (permission bundles), `ticket` (engineer tickets)
//! and `enroll` (relay enrollments). Each role's keys verify only that
//! role's documents. A statement is accepted ([`Authority::advance`]) only
//! if it is signed by the current root threshold, has a higher version and
//! has not expired; one that changes the root keys must also meet its own
//! new root threshold (TUF's rule: old and new root both sign).
//!
//! What this module decides: signatures, encoding, caps, version order and
//! expiry, from bytes and the times passed in. It does not store anything,
//! nor apply a statement's [`Recovery`] (the store owns the serial and the
//! time floor); [`VerifiedStatement`] is the proof it hands over, and only
//! this module builds one.

use crate::codec::{self, DecodeError};
use crate::envelope::{self, EnvelopeError, Purpose, TrustPolicy, MAX_SIGNATURES};
use crate::keys::PublicKey;
use crate::UnixTime;
use serde::{Deserialize, Serialize};

mod delivery;
#[cfg(test)]
mod tests;

pub use delivery::{encode_keys_delivery, Delivery};

/// One of the authority's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// Signs key statements; kept offline; pinned in the device's config.
    Root,
    /// Signs permission bundles.
    Bundle,
    /// Signs engineer tickets.
    Ticket,
    /// Signs relay enrollments.
    Enroll,
}

impl KeyRole {
    /// Every role, in statement order.
    pub const ALL: [KeyRole; 4] = [
        KeyRole::Root,
        KeyRole::Bundle,
        KeyRole::Ticket,
        KeyRole::Enroll,
    ];

    /// Stable lower-case name (`root`, `bundle`, `ticket`, `enroll`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Root => "root",
            KeyRole::Bundle => "bundle",
            KeyRole::Ticket => "ticket",
            KeyRole::Enroll => "enroll",
        }
    }
}

impl std::str::FromStr for KeyRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (root, bundle, ticket or enroll)"))
    }
}

/// The keys of one role and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    /// Distinct public keys, at most [`MAX_SIGNATURES`].
    pub keys: Vec<PublicKey>,
    /// Distinct signers required, from 1 to the number of keys.
    pub threshold: u8,
}

/// The one-time repair of a device's anti-rollback state, carried by a key
/// statement (so it is root-signed, versioned, and never replayable: a
/// version is accepted once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Set the serial a bundle must exceed to exactly this (lower or
    /// higher); the bundle in force is dropped when it is set.
    pub serial: Option<u64>,
    /// Set the time floor to exactly this (lower or higher).
    pub time_floor: Option<UnixTime>,
}

/// The versioned body. New formats are new variants at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStatementBody {
    /// Format version 1.
    V1(KeyStatement),
}

/// Format version 1 of the key statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatement {
    /// Strictly increasing; a device accepts each version once.
    pub version: u64,
    /// When root signed it (informative; does not move the time floor).
    pub issued_at: UnixTime,
    /// Not accepted from this instant on (the one in force stays in force).
    pub expires_at: UnixTime,
    /// The root keys from this version on.
    pub root: RoleKeys,
    /// Keys that sign bundles.
    pub bundle: RoleKeys,
    /// Keys that sign tickets.
    pub ticket: RoleKeys,
    /// Keys that sign relay enrollments.
    pub enroll: RoleKeys,
    /// A one-time repair of the serial and the time floor, if any.
    pub recovery: Option<Recovery>,
}

impl KeyStatement {
    /// The keys of `role`.
    pub fn role(&self, role: KeyRole) -> &RoleKeys {
        match role {
            KeyRole::Root => &self.root,
            KeyRole::Bundle => &self.bundle,
            KeyRole::Ticket => &self.ticket,
            KeyRole::Enroll => &self.enroll,
        }
    }
}

/// Why a key statement was refused. The authority in force is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// Size, envelope shape, or the current root threshold not met (signed
    /// by an online role's key, say).
    #[error("not signed by the root keys in force: {0}")]
    Envelope(EnvelopeError),
    /// It changes the root keys but the new root threshold did not sign.
    #[error("root rotation not signed by the new root keys: {0}")]
    NewRootUnsigned(EnvelopeError),
    /// The body is not a valid statement encoding.
    #[error("key statement body: {0}")]
    Body(DecodeError),
    /// A role's keys or threshold, or the dates, make no sense.
    #[error("invalid key statement: {0}")]
    Invalid(String),
    /// Its version is not above the one in force: a replay, or out of order.
    #[error("key statement version {offered} is not greater than version {current} in force")]
    Stale {
        /// Version in force.
        current: u64,
        /// Version offered.
        offered: u64,
    },
    /// It expired before it arrived.
    #[error("key statement expired at {expires_at}, it is now {now}")]
    Expired {
        /// The statement's `expires_at`.
        expires_at: UnixTime,
        /// The instant it was checked against.
        now: UnixTime,
    },
}

impl StatementError {
    /// Stable short name for audit records and wire answers.
    pub fn code(&self) -> &'static str {
        match self {
            StatementError::Envelope(EnvelopeError::BelowThreshold { .. }) => "bad-signature",
            StatementError::Envelope(e) => e.code(),
            StatementError::NewRootUnsigned(_) => "root-rotation-unsigned",
            StatementError::Body(DecodeError::UnknownVersion(_)) => "unknown-format",
            StatementError::Body(_) => "malformed",
            StatementError::Invalid(_) => "invalid-key-statement",
            StatementError::Stale { .. } => "stale-key-statement",
            StatementError::Expired { .. } => "expired",
        }
    }
}

/// The times a statement's expiry is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementClock {
    /// The wall clock as it reads.
    pub wall: UnixTime,
    /// The device's time floor.
    pub floor: UnixTime,
}

/// Which keys hold each role now, and from which statement. Built from the
/// config's keys ([`Authority::legacy`]: they act as root and every role)
/// or from a verified statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    version: u64,
    expires_at: Option<UnixTime>,
    root: TrustPolicy,
    bundle: TrustPolicy,
    ticket: TrustPolicy,
    enroll: TrustPolicy,
}

/// A statement that met the authority in force. Only [`Authority::advance`]
/// (and the store's re-check, [`Authority::follow`]) builds one.
#[derive(Debug, Clone)]
pub struct VerifiedStatement {
    statement: KeyStatement,
    raw: Vec<u8>,
    authority: Authority,
    root_rotated: bool,
}

impl VerifiedStatement {
    /// The decoded statement.
    pub fn statement(&self) -> &KeyStatement {
        &self.statement
    }

    /// The exact envelope bytes that were verified.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The authority it establishes.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Whether it changed the root keys or threshold.
    pub fn root_rotated(&self) -> bool {
        self.root_rotated
    }
}

impl Authority {
    /// No statement yet: the config's keys act as root and every role.
    pub fn legacy(root: TrustPolicy) -> Authority {
        Authority {
            version: 0,
            expires_at: None,
            bundle: root.clone(),
            ticket: root.clone(),
            enroll: root.clone(),
            root,
        }
    }

    /// The keys that verify `role`'s documents.
    pub fn role(&self, role: KeyRole) -> &TrustPolicy {
        match role {
            KeyRole::Root => &self.root,
            KeyRole::Bundle => &self.bundle,
            KeyRole::Ticket => &self.ticket,
            KeyRole::Enroll => &self.enroll,
        }
    }

    /// The version of the statement in force; 0 without one.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the statement in force stops being accepted; `None` without one.
    pub fn expires_at(&self) -> Option<UnixTime> {
        self.expires_at
    }

    /// Accept `bytes` as the next statement if the rules allow: signed by
    /// the current root threshold (and by its own new root threshold if it
    /// changes the root), version above the one in force, not expired at
    /// `clock`. Expiry is judged against `max(wall, floor)`, except for a
    /// statement that resets the time floor: the floor is what it repairs,
    /// so it is judged against the wall clock alone.
    pub fn advance(
        &self,
        bytes: &[u8],
        clock: StatementClock,
    ) -> Result<VerifiedStatement, StatementError> {
        let vs = self.follow(bytes)?;
        let s = &vs.statement;
        if s.version <= self.version {
            return Err(StatementError::Stale {
                current: self.version,
                offered: s.version,
            });
        }
        let resets_floor = s.recovery.as_ref().is_some_and(|r| r.time_floor.is_some());
        let now = match resets_floor {
            true => clock.wall,
            false => clock.wall.max(clock.floor),
        };
        if s.expires_at <= now {
            return Err(StatementError::Expired {
                expires_at: s.expires_at,
                now,
            });
        }
        Ok(vs)
    }

    /// The signature and shape rules of [`Authority::advance`] without its
    /// version order and expiry: how a device re-checks the statements it
    /// stored (they may have expired since; their order is the store's).
    pub fn follow(&self, bytes: &[u8]) -> Result<VerifiedStatement, StatementError> {
        let opened =
            envelope::open(Purpose::Keys, bytes, &self.root).map_err(StatementError::Envelope)?;
        let statement = decode_body(opened.body)?;
        let authority = Authority::from_statement(&statement)?;
        let root_rotated = authority.root != self.root;
        if root_rotated {
            envelope::open(Purpose::Keys, bytes, &authority.root)
                .map_err(StatementError::NewRootUnsigned)?;
        }
        Ok(VerifiedStatement {
            statement,
            raw: bytes.to_vec(),
            authority,
            root_rotated,
        })
    }

    fn from_statement(s: &KeyStatement) -> Result<Authority, StatementError> {
        if s.issued_at > s.expires_at {
            return Err(StatementError::Invalid(format!(
                "issued at {} after it expires at {}",
                s.issued_at, s.expires_at
            )));
        }
        let policy = |role: KeyRole| role_policy(role, s.role(role));
        Ok(Authority {
            version: s.version,
            expires_at: Some(s.expires_at),
            root: policy(KeyRole::Root)?,
            bundle: policy(KeyRole::Bundle)?,
            ticket: policy(KeyRole::Ticket)?,
            enroll: policy(KeyRole::Enroll)?,
        })
    }
}

/// A role's keys as a trust policy: at most [`MAX_SIGNATURES`] distinct
/// keys, a threshold from 1 to their number (0 is not raised here: a
/// statement says what it means).
fn role_policy(role: KeyRole, rk: &RoleKeys) -> Result<TrustPolicy, StatementError> {
    let invalid = |why: String| StatementError::Invalid(format!("role {}: {why}", role.as_str()));
    let mut keys = rk.keys.clone();
    keys.sort();
    keys.dedup();
    if keys.len() != rk.keys.len() {
        return Err(invalid("a key is listed twice".into()));
    }
    if keys.len() > MAX_SIGNATURES {
        return Err(invalid(format!(
            "{} keys, at most {MAX_SIGNATURES}",
            keys.len()
        )));
    }
    if rk.threshold == 0 || usize::from(rk.threshold) > keys.len() {
        return Err(invalid(format!(
            "threshold {} with {} key(s)",
            rk.threshold,
            keys.len()
        )));
    }
    if let Some(k) = keys.iter().find(|k| k.verifying_key().is_err()) {
        return Err(invalid(format!("{k} is not a valid ed25519 key")));
    }
    TrustPolicy::new(keys, usize::from(rk.threshold)).map_err(|e| invalid(e.to_string()))
}

/// Decode a statement body (already authenticated, or for inspection).
pub fn decode_body(body: &[u8]) -> Result<KeyStatement, StatementError> {
    let version = codec::peek_version(body).map_err(StatementError::Body)?;
    if version != 0 {
        return Err(StatementError::Body(DecodeError::UnknownVersion(version)));
    }
    let KeyStatementBody::V1(s) = codec::decode_exact(body).map_err(StatementError::Body)?;
    Ok(s)
}

/// Encode a statement as a version-1 body, ready to seal.
pub fn encode_body(statement: &KeyStatement) -> Vec<u8> {
    codec::encode(&KeyStatementBody::V1(statement.clone()))
}

/// Encode and sign a statement with each key (root's side: the old and,
/// for a root rotation, the new root keys).
pub fn seal(statement: &KeyStatement, keys: &[&ed25519_dalek::SigningKey]) -> Vec<u8> {
    envelope::seal(Purpose::Keys, encode_body(statement), keys)
}
