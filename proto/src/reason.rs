//! Deny reasons and access levels: stable names shared by the evaluator, the
//! tunnel frames, the audit log and the command line.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a decision denied access. The names (`as_str`) are a contract: they
/// appear in client errors, audit records and `policy explain`. Variants are
/// only ever added at the end (postcard encodes the variant index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DenyReason {
    /// No verified, unexpired bundle for this device.
    NoValidBundle,
    /// The ticket is not signed by enough trusted keys.
    BadTicket,
    /// The ticket names another device.
    WrongDevice,
    /// The ticket is bound to another client key than the one in the handshake.
    KeyMismatch,
    /// Now is outside the ticket's validity window.
    TicketExpired,
    /// The ticket id is listed as revoked in the bundle.
    TicketRevoked,
    /// The ticket's user is not in the bundle.
    UnknownUser,
    /// The user's status is inactive.
    UserInactive,
    /// The user's logout period since authentication has run out.
    SessionExpired,
    /// Two-factor authentication is required and the ticket has none.
    MfaRequired,
    /// The device has no service with that id.
    UnknownService,
    /// The VPN destination is outside the service's networks or ports.
    DestinationNotAllowed,
    /// The only matching grants need on-site consent, and none is active.
    SiteConsentRequired,
    /// No grant of the user names the service's category.
    NoGrant,
    /// A per-user or global limit is exceeded.
    LimitExceeded,
    /// Not a decision of DESIGN §2 but the end of a live stream: what the
    /// stream was admitted to (its level, the service's kind, target or
    /// networks) changed with a new bundle. The stream is closed rather than
    /// left on the old backend or filter; a new stream follows the new
    /// definition.
    PermitChanged,
}

impl DenyReason {
    /// Every reason, in wire order.
    pub const ALL: [DenyReason; 16] = [
        DenyReason::NoValidBundle,
        DenyReason::BadTicket,
        DenyReason::WrongDevice,
        DenyReason::KeyMismatch,
        DenyReason::TicketExpired,
        DenyReason::TicketRevoked,
        DenyReason::UnknownUser,
        DenyReason::UserInactive,
        DenyReason::SessionExpired,
        DenyReason::MfaRequired,
        DenyReason::UnknownService,
        DenyReason::DestinationNotAllowed,
        DenyReason::SiteConsentRequired,
        DenyReason::NoGrant,
        DenyReason::LimitExceeded,
        DenyReason::PermitChanged,
    ];

    /// The stable name, e.g. `no-grant`.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NoValidBundle => "no-valid-bundle",
            DenyReason::BadTicket => "bad-ticket",
            DenyReason::WrongDevice => "wrong-device",
            DenyReason::KeyMismatch => "key-mismatch",
            DenyReason::TicketExpired => "ticket-expired",
            DenyReason::TicketRevoked => "ticket-revoked",
            DenyReason::UnknownUser => "unknown-user",
            DenyReason::UserInactive => "user-inactive",
            DenyReason::SessionExpired => "session-expired",
            DenyReason::MfaRequired => "mfa-required",
            DenyReason::UnknownService => "unknown-service",
            DenyReason::DestinationNotAllowed => "destination-not-allowed",
            DenyReason::SiteConsentRequired => "site-consent-required",
            DenyReason::NoGrant => "no-grant",
            DenyReason::LimitExceeded => "limit-exceeded",
            DenyReason::PermitChanged => "permit-changed",
        }
    }

    /// Parse a stable name.
    pub fn from_name(name: &str) -> Option<DenyReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an allowed user may do with a service. Ordered: `Read < Manage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    /// Observe only: HTTP GET/HEAD/OPTIONS, view-only VNC.
    Read,
    /// Full access.
    Manage,
}

impl Level {
    /// The stable name, `read` or `manage`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Manage => "manage",
        }
    }

    /// Parse `read` or `manage`.
    pub fn from_name(name: &str) -> Option<Level> {
        match name {
            "read" => Some(Level::Read),
            "manage" => Some(Level::Manage),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in DenyReason::ALL {
            assert!(seen.insert(r.as_str()));
            assert_eq!(DenyReason::from_name(r.as_str()), Some(r));
        }
    }

    #[test]
    fn wire_indices_are_pinned() {
        // postcard encodes a unit variant as its index; these must never move.
        for (i, r) in DenyReason::ALL.into_iter().enumerate() {
            assert_eq!(postcard::to_stdvec(&r).unwrap(), vec![i as u8]);
        }
        assert_eq!(postcard::to_stdvec(&Level::Read).unwrap(), vec![0]);
        assert_eq!(postcard::to_stdvec(&Level::Manage).unwrap(), vec![1]);
    }
}
