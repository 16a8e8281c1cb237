//! The ticket: the cloud's signed statement that user U authenticated at time
//! A (with or without 2FA) and may present client key K to device D until E.
//!
//! Verification here covers the signature and the encoding only. Device,
//! key binding, validity window and revocation are steps of the policy
//! decision, so that they are re-checked with everything else.

use crate::codec::{self, DecodeError};
use crate::envelope::{self, EnvelopeError, Purpose, TrustPolicy};
use crate::keys::PublicKey;
use crate::UnixTime;
use serde::{Deserialize, Serialize};

/// A ticket id: 16 random bytes chosen by the issuer.
pub type TicketId = [u8; 16];

/// The versioned ticket body. New formats are new variants at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketBody {
    /// Format version 1.
    V1(Ticket),
}

/// Format version 1 of the ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Unique id, for revocation and audit.
    pub id: TicketId,
    /// User id.
    pub user: String,
    /// Device id.
    pub device: String,
    /// The client key the bearer must prove in the handshake.
    pub client_key: PublicKey,
    /// When the ticket was issued.
    pub issued_at: UnixTime,
    /// When it stops being valid (exclusive).
    pub expires_at: UnixTime,
    /// When the user authenticated; the logout period counts from here.
    pub auth_time: UnixTime,
    /// Whether that authentication used a second factor.
    pub mfa: bool,
}

/// Why a ticket failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// The envelope was refused (size, shape, signatures).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The body is not a valid ticket encoding.
    #[error("ticket body: {0}")]
    Body(DecodeError),
}

impl TicketError {
    /// What is wrong, in one line for the engineer whose ticket it is:
    /// `signer not trusted: …`, `bad signature: …` or `malformed: …`.
    pub fn detail(&self) -> String {
        match self {
            TicketError::Envelope(e @ EnvelopeError::BelowThreshold { broken, .. }) => {
                if *broken > 0 {
                    format!("bad signature: {e}")
                } else {
                    format!("signer not trusted: {e}")
                }
            }
            TicketError::Envelope(e @ EnvelopeError::UnsatisfiableThreshold { .. }) => {
                format!("the gateway's trust policy: {e}")
            }
            TicketError::Envelope(EnvelopeError::Malformed(e)) => {
                format!("malformed: envelope: {e}")
            }
            TicketError::Envelope(e) => format!("malformed: {e}"),
            TicketError::Body(e) => format!("malformed: ticket body: {e}"),
        }
    }
}

/// A ticket whose signature met the trust policy. Only `verify` constructs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTicket {
    ticket: Ticket,
}

impl VerifiedTicket {
    /// Verify envelope bytes against `trust`, then decode the body.
    pub fn verify(bytes: &[u8], trust: &TrustPolicy) -> Result<Self, TicketError> {
        let opened = envelope::open(Purpose::Ticket, bytes, trust)?;
        Ok(VerifiedTicket {
            ticket: decode_body(opened.body)?,
        })
    }

    /// The ticket.
    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }
}

/// Decode a ticket body (already authenticated, or for inspection).
pub fn decode_body(body: &[u8]) -> Result<Ticket, TicketError> {
    let version = codec::peek_version(body).map_err(TicketError::Body)?;
    if version != 0 {
        return Err(TicketError::Body(DecodeError::UnknownVersion(version)));
    }
    let TicketBody::V1(t) = codec::decode_exact(body).map_err(TicketError::Body)?;
    Ok(t)
}

/// Encode and sign a ticket: the cloud's side.
pub fn seal(ticket: &Ticket, keys: &[&ed25519_dalek::SigningKey]) -> Vec<u8> {
    envelope::seal(
        Purpose::Ticket,
        codec::encode(&TicketBody::V1(ticket.clone())),
        keys,
    )
}
