//! The enrollment: the authority's signed statement "device D has key K",
//! which a router presents to a relay (DESIGN §8) to register under D.
//!
//! An enrollment is signed by the authority's `enroll` role (threshold as
//! for bundles), in its own envelope domain, so no bundle, ticket or key
//! statement signature can ever verify as one. It grants availability
//! only: a relay routes engineers whose tickets name D to the router that
//! proved K; it decides nothing about access.
//!
//! What this module decides, from bytes, the authority and `now` (no
//! clock, no I/O): size, signatures, encoding, the body's sanity, expiry,
//! and which of two enrollments of one device wins ([`Precedence`]). It
//! does not keep registrations, nor check the router's proof of K (the
//! relay's handshake does; [`VerifiedEnrollment::bound_to`] is the
//! comparison it makes).

use crate::authority::{Authority, KeyRole};
use crate::codec::{self, DecodeError};
use crate::envelope::{self, EnvelopeError, Purpose, TrustPolicy};
use crate::keys::PublicKey;
use crate::UnixTime;
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Longest device id, in bytes (as for a bundle's strings).
pub const MAX_DEVICE_ID: usize = 256;

/// How far an enrollment's `issued_at` may lie ahead of the verifier's
/// clock: the signer's and the relay's clocks disagree by a little (as the
/// ticket's skew, 300 s).
pub const MAX_SKEW: u64 = 300;

/// The versioned body. New formats are new variants at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollmentBody {
    /// Format version 1.
    V1(Enrollment),
}

/// Format version 1 of the enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The device id (a bundle's `device_id`, a ticket's `device`).
    pub device_id: String,
    /// The device's ed25519 public key (`edgegate device-key`), which the
    /// router proves when it registers.
    pub device_key: PublicKey,
    /// Orders enrollments of one device: a higher serial supersedes a
    /// lower one (a replaced router, a rotated device key).
    pub serial: u64,
    /// When the authority signed it.
    pub issued_at: UnixTime,
    /// Not accepted from this instant on (exclusive). Required: an
    /// enrollment for a router that was decommissioned must run out.
    pub expires_at: UnixTime,
}

/// Why an enrollment was refused. Each variant has a stable [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollmentError {
    /// Size, envelope shape, or the enroll role's threshold not met (signed
    /// by another role's key, altered bytes, an unknown signer).
    #[error("enrollment envelope: {0}")]
    Envelope(EnvelopeError),
    /// The body is not a valid enrollment encoding.
    #[error("enrollment body: {0}")]
    Body(DecodeError),
    /// The body decodes but makes no sense (bad device id or key, dates).
    #[error("invalid enrollment: {0}")]
    Invalid(String),
    /// It expired before it was presented.
    #[error("enrollment expired at {expires_at}, it is now {now}")]
    Expired {
        /// The enrollment's `expires_at`.
        expires_at: UnixTime,
        /// The instant it was checked against.
        now: UnixTime,
    },
    /// It is dated further ahead of the verifier's clock than [`MAX_SKEW`].
    #[error("enrollment issued at {issued_at}, in the future (it is now {now})")]
    NotYetValid {
        /// The enrollment's `issued_at`.
        issued_at: UnixTime,
        /// The instant it was checked against.
        now: UnixTime,
    },
    /// The key a registering peer proved is not the enrolled device key.
    #[error("peer proved {proved}, the enrollment names {enrolled}")]
    KeyMismatch {
        /// The key in the enrollment.
        enrolled: PublicKey,
        /// The key the peer proved in its handshake.
        proved: PublicKey,
    },
}

impl EnrollmentError {
    /// Stable short name for logs, audit records and wire answers.
    pub fn code(&self) -> &'static str {
        match self {
            EnrollmentError::Envelope(EnvelopeError::BelowThreshold { .. }) => "bad-signature",
            EnrollmentError::Envelope(e) => e.code(),
            EnrollmentError::Body(DecodeError::UnknownVersion(_)) => "unknown-format",
            EnrollmentError::Body(_) => "malformed",
            EnrollmentError::Invalid(_) => "invalid-enrollment",
            EnrollmentError::Expired { .. } => "expired",
            EnrollmentError::NotYetValid { .. } => "not-yet-valid",
            EnrollmentError::KeyMismatch { .. } => "key-mismatch",
        }
    }
}

/// How a newly presented enrollment stands against the one a device is
/// registered with now (DESIGN §8: one live registration per device, a
/// newer one replaces the older).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precedence {
    /// A higher serial: it replaces the registration in force.
    Newer,
    /// The same enrollment (the router reconnecting): the newer
    /// registration replaces the older one.
    Same,
    /// A lower serial: refused; it was superseded.
    Older,
    /// The same serial with different contents (another key or dates):
    /// refused; the authority must not sign two enrollments of one serial.
    Conflict,
}

/// An enrollment whose signatures met the enroll role and whose dates hold
/// at the instant it was checked. Only [`VerifiedEnrollment::verify`] (and
/// [`VerifiedEnrollment::verify_policy`]) build one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEnrollment {
    enrollment: Enrollment,
    signers: Vec<PublicKey>,
}

impl VerifiedEnrollment {
    /// Verify envelope bytes under `authority`'s enroll role (the flat
    /// configured keys act as it until a key statement is in force) and
    /// check the body at `now`.
    pub fn verify(
        bytes: &[u8],
        authority: &Authority,
        now: UnixTime,
    ) -> Result<Self, EnrollmentError> {
        Self::verify_policy(bytes, authority.role(KeyRole::Enroll), now)
    }

    /// [`VerifiedEnrollment::verify`] against an explicit trust policy (the
    /// enroll role's keys and threshold).
    pub fn verify_policy(
        bytes: &[u8],
        trust: &TrustPolicy,
        now: UnixTime,
    ) -> Result<Self, EnrollmentError> {
        let opened =
            envelope::open(Purpose::Enroll, bytes, trust).map_err(EnrollmentError::Envelope)?;
        let enrollment = decode_body(opened.body)?;
        check_dates(&enrollment, now)?;
        Ok(VerifiedEnrollment {
            enrollment,
            signers: opened.trusted_signers,
        })
    }

    /// The enrollment.
    pub fn enrollment(&self) -> &Enrollment {
        &self.enrollment
    }

    /// Distinct trusted keys whose signature verified, sorted.
    pub fn signers(&self) -> &[PublicKey] {
        &self.signers
    }

    /// Still valid at `now`: a relay calls it again for a live
    /// registration (an enrollment runs out while the router is online).
    pub fn check_at(&self, now: UnixTime) -> Result<(), EnrollmentError> {
        check_dates(&self.enrollment, now)
    }

    /// The peer that registers proved `proved` in its handshake: it must be
    /// the enrolled device key.
    pub fn bound_to(&self, proved: &PublicKey) -> Result<(), EnrollmentError> {
        if *proved != self.enrollment.device_key {
            return Err(EnrollmentError::KeyMismatch {
                enrolled: self.enrollment.device_key,
                proved: *proved,
            });
        }
        Ok(())
    }

    /// How this enrollment stands against `current`, the one the same
    /// device is registered with. Meaningful for one device id only; for
    /// two different ids it answers [`Precedence::Conflict`].
    pub fn precedence(&self, current: &VerifiedEnrollment) -> Precedence {
        let (new, old) = (&self.enrollment, &current.enrollment);
        if new.device_id != old.device_id {
            return Precedence::Conflict;
        }
        match new.serial.cmp(&old.serial) {
            std::cmp::Ordering::Greater => Precedence::Newer,
            std::cmp::Ordering::Less => Precedence::Older,
            std::cmp::Ordering::Equal if new == old => Precedence::Same,
            std::cmp::Ordering::Equal => Precedence::Conflict,
        }
    }
}

/// `issued_at - MAX_SKEW <= now < expires_at`.
fn check_dates(e: &Enrollment, now: UnixTime) -> Result<(), EnrollmentError> {
    if now >= e.expires_at {
        return Err(EnrollmentError::Expired {
            expires_at: e.expires_at,
            now,
        });
    }
    if e.issued_at > now.saturating_add(MAX_SKEW) {
        return Err(EnrollmentError::NotYetValid {
            issued_at: e.issued_at,
            now,
        });
    }
    Ok(())
}

/// Decode a body (already authenticated, or for inspection) and check what
/// does not depend on time: the device id, the key, the date order.
pub fn decode_body(body: &[u8]) -> Result<Enrollment, EnrollmentError> {
    let version = codec::peek_version(body).map_err(EnrollmentError::Body)?;
    if version != 0 {
        return Err(EnrollmentError::Body(DecodeError::UnknownVersion(version)));
    }
    let EnrollmentBody::V1(e) = codec::decode_exact(body).map_err(EnrollmentError::Body)?;
    validate(&e)?;
    Ok(e)
}

/// The rules of a well-formed enrollment, shared by the signer (who must
/// not sign a broken one) and the verifier.
pub fn validate(e: &Enrollment) -> Result<(), EnrollmentError> {
    let invalid = |why: String| Err(EnrollmentError::Invalid(why));
    if e.device_id.is_empty() || e.device_id.len() > MAX_DEVICE_ID {
        return invalid(format!(
            "device id of {} bytes (1 to {MAX_DEVICE_ID})",
            e.device_id.len()
        ));
    }
    if e.device_id.chars().any(char::is_control) {
        return invalid(format!(
            "device id {:?} has control characters",
            e.device_id
        ));
    }
    if e.device_key.verifying_key().is_err() {
        return invalid(format!(
            "device key {} is not a valid ed25519 key",
            e.device_key
        ));
    }
    if e.issued_at >= e.expires_at {
        return invalid(format!(
            "issued at {} is not before it expires at {}",
            e.issued_at, e.expires_at
        ));
    }
    Ok(())
}

/// Encode an enrollment as a version-1 body, ready to seal.
pub fn encode_body(e: &Enrollment) -> Vec<u8> {
    codec::encode(&EnrollmentBody::V1(e.clone()))
}

/// Encode and sign an enrollment with each key: the authority's side.
pub fn seal(e: &Enrollment, keys: &[&ed25519_dalek::SigningKey]) -> Vec<u8> {
    envelope::seal(Purpose::Enroll, encode_body(e), keys)
}
