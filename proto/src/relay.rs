//! Relay messages: what a router and an engineer say to a relay (DESIGN §8,
//! `RELAY.md`), and the header a relay writes on each stream it opens
//! towards a router.
//!
//! A relay message on the wire is a `u32` big-endian length followed by that
//! many bytes of postcard-encoded [`RelayMsg`], as tunnel frames are, capped
//! at [`MAX_RELAY_MSG`]. After `Connected` (engineer) and `Incoming`
//! (router) a stream carries raw bytes: the engineer's and the router's own
//! TLS session, which the relay copies and cannot read. The protocol
//! version is carried by the ALPN ([`RELAY_ALPN`]); [`RelayMsg`] only ever
//! grows new variants at the end.
//!
//! This module encodes and decodes; it reads no socket and decides nothing.

use crate::codec::{self, DecodeError};
use crate::keys::PublicKey;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The ALPN protocol id spoken to a relay (distinct from the tunnel's
/// `edgegate/1`, so a relay port and a router port are never confused).
pub const RELAY_ALPN: &[u8] = b"edgegate-relay/1";

/// Largest relay message body (after the 4-byte length): an enrollment or
/// ticket envelope (4 KiB each at most) and framing.
pub const MAX_RELAY_MSG: usize = 8 * 1024;

/// Longest `detail` a relay writes in a refusal.
pub const MAX_DETAIL: usize = 512;

/// One relay message. Variants are only ever added at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayMsg {
    /// Router → relay, first message of the router's control stream: the
    /// enrollment envelope, as signed. The handshake proved the key.
    Register {
        /// Enrollment envelope bytes.
        #[serde(with = "codec::bytes")]
        enrollment: Vec<u8>,
    },
    /// Relay → router: registered; the relay routes this device's
    /// engineers to this connection until it ends or is replaced.
    Registered,
    /// Relay → router or engineer: refused; the relay closes the connection.
    Refused {
        /// Why, as a stable code.
        reason: RelayRefusal,
        /// One human-readable line, or empty.
        detail: String,
    },
    /// Router → relay on the control stream: are you there?
    Ping(u64),
    /// Relay → router: the answer to `Ping`, with its number.
    Pong(u64),
    /// Relay → router on the control stream: the relay is shutting down;
    /// register again (elsewhere, or here once it is back) without waiting.
    GoingAway,
    /// Engineer → relay, first message of the engineer's stream: the ticket
    /// envelope, as signed. The handshake proved the engineer's key.
    Connect {
        /// Ticket envelope bytes.
        #[serde(with = "codec::bytes")]
        ticket: Vec<u8>,
    },
    /// Relay → engineer: a stream to the router is open; raw bytes follow.
    Connected,
    /// Relay → router, first message of each stream the relay opens: one
    /// engineer's session follows as raw bytes. Nothing secret: who the
    /// relay let through and from where (the router's own handshake
    /// decides whether the engineer is who this says).
    Incoming(Incoming),
    /// Anyone → relay, first message instead of `Register`/`Connect`: a
    /// signed bundle for the relay to keep (the newest serial per device)
    /// and deliver to its router. The bundle's signatures decide, not the
    /// pusher. Capped by the relay's bundle size, not [`MAX_RELAY_MSG`].
    PushBundle {
        /// Bundle envelope bytes, as signed.
        #[serde(with = "codec::bytes")]
        bundle: Vec<u8>,
        /// Whether the pusher waits for the router's answer (`Delivered`
        /// follows `Queued`).
        wait: bool,
    },
    /// Relay → pusher: the bundle is kept; it is delivered when its router
    /// registers, or at once if it is registered.
    Queued {
        /// The bundle's device.
        device: String,
        /// The bundle's serial.
        serial: u64,
    },
    /// Relay → router, first message of a stream the relay opens instead
    /// of `Incoming`: a bundle to apply by the router's own rules.
    Deliver {
        /// Bundle envelope bytes, as pushed.
        #[serde(with = "codec::bytes")]
        bundle: Vec<u8>,
    },
    /// Router → relay on that stream, and relay → a waiting pusher: the
    /// router's answer.
    Delivered(crate::frame::PushResult),
}

/// The header of a relayed stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incoming {
    /// The key the engineer proved to the relay.
    pub engineer: PublicKey,
    /// The engineer's address as the relay sees it.
    pub remote: SocketAddr,
}

/// Why a relay refused a router or an engineer. Variants are only ever
/// added at the end; [`RelayRefusal::as_str`] names are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayRefusal {
    /// The enrollment does not verify (signatures, encoding, contents).
    BadEnrollment,
    /// The enrollment expired (or is dated in the future).
    EnrollmentExpired,
    /// The key the router proved is not the enrolled device key.
    KeyMismatch,
    /// An enrollment of this device with a higher serial is registered
    /// (or one with the same serial and other contents).
    Superseded,
    /// The ticket does not verify (signatures, encoding).
    BadTicket,
    /// The ticket is expired or not yet valid.
    TicketExpired,
    /// The ticket is bound to another key than the one the engineer proved.
    NotBound,
    /// No router of the ticket's device is registered with this relay.
    RouterOffline,
    /// A relay limit (routers, sessions per router) is reached.
    Limit,
    /// The peer broke the protocol (unexpected message, too slow).
    Protocol,
    /// A pushed bundle does not verify under the relay's trusted keys (or
    /// is too large).
    BadBundle,
    /// A pushed bundle's serial is not above the one the relay keeps for
    /// its device (or the same serial with other bytes).
    Rollback,
}

impl RelayRefusal {
    /// Every refusal, in wire order.
    pub const ALL: [RelayRefusal; 12] = [
        RelayRefusal::BadEnrollment,
        RelayRefusal::EnrollmentExpired,
        RelayRefusal::KeyMismatch,
        RelayRefusal::Superseded,
        RelayRefusal::BadTicket,
        RelayRefusal::TicketExpired,
        RelayRefusal::NotBound,
        RelayRefusal::RouterOffline,
        RelayRefusal::Limit,
        RelayRefusal::Protocol,
        RelayRefusal::BadBundle,
        RelayRefusal::Rollback,
    ];

    /// Stable short name for logs and the engineer's error line.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayRefusal::BadEnrollment => "bad-enrollment",
            RelayRefusal::EnrollmentExpired => "enrollment-expired",
            RelayRefusal::KeyMismatch => "key-mismatch",
            RelayRefusal::Superseded => "superseded",
            RelayRefusal::BadTicket => "bad-ticket",
            RelayRefusal::TicketExpired => "ticket-expired",
            RelayRefusal::NotBound => "not-bound",
            RelayRefusal::RouterOffline => "router-offline",
            RelayRefusal::Limit => "limit-exceeded",
            RelayRefusal::Protocol => "protocol",
            RelayRefusal::BadBundle => "bad-bundle",
            RelayRefusal::Rollback => "rollback",
        }
    }
}

impl std::fmt::Display for RelayRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a relay message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayMsgError {
    /// The length prefix exceeds the cap in force ([`MAX_RELAY_MSG`], or a
    /// bundle's for `PushBundle` and `Deliver`).
    #[error("relay message of {0} bytes exceeds its cap")]
    TooLarge(usize),
    /// The body is not a valid relay message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Encode a message with its 4-byte big-endian length prefix.
pub fn encode(msg: &RelayMsg) -> Vec<u8> {
    codec::encode_prefixed(msg)
}

/// Check an announced length against [`MAX_RELAY_MSG`]; call before
/// allocating.
pub fn check_len(prefix: [u8; 4]) -> Result<usize, RelayMsgError> {
    check_len_capped(prefix, MAX_RELAY_MSG)
}

/// Check an announced length against `cap` (a bundle's, for `PushBundle`
/// and `Deliver`); call before allocating.
pub fn check_len_capped(prefix: [u8; 4], cap: usize) -> Result<usize, RelayMsgError> {
    codec::prefixed_len(prefix, cap).map_err(RelayMsgError::TooLarge)
}

/// postcard variant index of [`RelayMsg::PushBundle`]: the first body byte
/// a relay reads before it lets a message be larger than [`MAX_RELAY_MSG`].
pub const PUSH_TAG: u8 = 9;

/// postcard variant index of [`RelayMsg::Deliver`].
pub const DELIVER_TAG: u8 = 11;

/// Decode one message body (without its length prefix), rejecting
/// trailing bytes.
pub fn decode(body: &[u8]) -> Result<RelayMsg, RelayMsgError> {
    Ok(codec::decode_exact(body)?)
}

/// A request on the relay's control socket (`edgegate relay status`),
/// framed as the daemon's control socket is (`AUDIT_AND_CONTROL.md`).
/// Variants are only ever added at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayControlRequest {
    /// The relay's key and its registered routers.
    Status,
}

/// The relay's answer on its control socket. Variants are only ever
/// added at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayControlResponse {
    /// Answer to `Status`.
    Status(RelayStatus),
    /// The request failed (including `permission denied`).
    Error(String),
}

/// What `edgegate relay status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayStatus {
    /// The relay's public key (what routers and engineers pin).
    pub key: PublicKey,
    /// The registered routers, by device id.
    pub routers: Vec<RegisteredRouter>,
    /// The spooled bundles, by device id.
    pub bundles: Vec<SpooledBundle>,
}

/// One bundle the relay keeps for a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledBundle {
    /// The bundle's device.
    pub device: String,
    /// Its serial.
    pub serial: u64,
    /// The router's answer, once it took the bundle (`None`: not delivered
    /// yet).
    pub answer: Option<crate::frame::PushResult>,
}

/// One registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredRouter {
    /// The enrolled device id.
    pub device: String,
    /// The device key it proved.
    pub key: PublicKey,
    /// The enrollment's serial.
    pub serial: u64,
    /// When it registered (this registration).
    pub since: crate::UnixTime,
    /// How it is connected.
    pub transport: crate::audit::Transport,
    /// Its address as the relay sees it (its NAT's, usually).
    pub remote: SocketAddr,
    /// Relayed sessions open to it now.
    pub sessions: u32,
    /// Bytes relayed from engineers to it, over this registration.
    pub bytes_to_router: u64,
    /// Bytes relayed from it to engineers, over this registration.
    pub bytes_from_router: u64,
}

#[cfg(test)]
mod tests;
