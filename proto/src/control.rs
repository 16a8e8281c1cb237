//! The local control socket's messages (`edgegate status`, `sessions`,
//! `audit`, `consent`, `bundle push`).
//!
//! Framing: a `u32` big-endian length, then that many bytes of postcard
//! (`Request` from the client, `Response` from the daemon), one response per
//! request, any number of requests per connection. Frames above
//! [`MAX_FRAME`] are refused before allocation. Both enums only grow at the
//! end. Socket I/O is the `edgegate` crate's.

use crate::audit::{
    AuditRecord, AuditVerifyError, SignedHead, StrangerSummary, Transport, VerifyReport,
};
use crate::codec;
use crate::keys::PublicKey;
use crate::reason::Level;
use crate::UnixTime;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Largest frame body: a maximal bundle push plus room for the envelope.
pub const MAX_FRAME: usize = (32 << 20) + (64 << 10);

/// Most audit records one `Audit` request returns.
pub const MAX_AUDIT_BATCH: u32 = 10_000;

const _: () = assert!(MAX_FRAME > (32 << 20));

/// A control request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Daemon status.
    Status,
    /// Live sessions and their streams.
    Sessions,
    /// Close a session now.
    Kill {
        /// Session id.
        id: u64,
    },
    /// Audit records with `seq >= since` (or the newest `limit` if `None`).
    Audit {
        /// First sequence number wanted.
        since: Option<u64>,
        /// Most records wanted (capped at [`MAX_AUDIT_BATCH`]).
        limit: u32,
    },
    /// Check the audit hash chain.
    AuditVerify,
    /// Grant on-site consent for `secs` seconds, or until revoked.
    ConsentGrant {
        /// Window length; `None` until revoked.
        secs: Option<u64>,
    },
    /// Revoke on-site consent.
    ConsentRevoke,
    /// Offer a signed bundle.
    PushBundle {
        /// The sealed bundle bytes exactly as built.
        #[serde(with = "crate::codec::bytes")]
        bytes: Vec<u8>,
    },
    /// The unauthenticated-event counters, newest `limit` summaries.
    Strangers {
        /// Most summaries wanted (capped at [`MAX_AUDIT_BATCH`]).
        limit: u32,
    },
    /// Check the chain as `AuditVerify` does, and also against `head`, a
    /// signed head the operator kept off-box. Answered with `AuditVerify`.
    AuditVerifyHead {
        /// The signed head (`SignedHead::parse_line` of the logged line).
        head: SignedHead,
    },
    /// The authority keys in force: the key statement's version and each
    /// role's keys. Answered with `Keys`.
    Keys,
}

/// A control response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to `Status`.
    Status(StatusInfo),
    /// Answer to `Sessions`.
    Sessions(Vec<SessionInfo>),
    /// Answer to `Kill`: whether such a session existed.
    Killed(bool),
    /// Answer to `Audit`, oldest first.
    Audit(Vec<AuditRecord>),
    /// Answer to `AuditVerify`.
    AuditVerify(Result<VerifyReport, AuditVerifyError>),
    /// Answer to `ConsentGrant` and `ConsentRevoke`: the state afterwards.
    Consent(ConsentInfo),
    /// Answer to `PushBundle`.
    Push(PushResult),
    /// The request failed (including `permission denied`).
    Error(String),
    /// Answer to `Strangers`, oldest first; the minute in progress last.
    Strangers(Vec<StrangerSummary>),
    /// Answer to `Keys`.
    Keys(KeysInfo),
}

/// The authority keys in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysInfo {
    /// Version of the key statement in force; 0 when none arrived yet (the
    /// configured trusted keys act as root and every role).
    pub version: u64,
    /// When that statement stops being accepted (it stays in force).
    pub expires_at: Option<UnixTime>,
    /// Each role, in the order root, bundle, ticket, enroll.
    pub roles: Vec<RoleInfo>,
}

/// One role's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    /// `root`, `bundle`, `ticket` or `enroll`.
    pub role: String,
    /// Distinct signers required.
    pub threshold: u32,
    /// The role's keys.
    pub keys: Vec<crate::PublicKey>,
}

/// Daemon status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// This device's id.
    pub device_id: String,
    /// Daemon version.
    pub version: String,
    /// The daemon's notion of now (floored wall clock), for computing ages.
    pub now: UnixTime,
    /// The time floor (newest signed timestamp seen).
    pub time_floor: UnixTime,
    /// The enforced bundle, if any.
    pub bundle: Option<BundleStatus>,
    /// Consent state.
    pub consent: ConsentInfo,
    /// Live sessions.
    pub sessions: u32,
    /// QUIC listen address.
    pub listen_quic: String,
    /// TLS listen address.
    pub listen_tls: String,
}

/// The enforced bundle's identity and validity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleStatus {
    /// Serial.
    pub serial: u64,
    /// Signing time.
    pub issued_at: UnixTime,
    /// Expiry.
    pub not_after: UnixTime,
}

/// On-site consent state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentInfo {
    /// Whether consent holds now.
    pub active: bool,
    /// Wall-clock end of a timed grant (`None` when inactive or indefinite).
    pub until: Option<UnixTime>,
    /// Seconds left of a timed grant (`None` when inactive or indefinite).
    pub remaining_secs: Option<u64>,
}

/// One live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Session id (for `sessions kill`).
    pub id: u64,
    /// User id.
    pub user: String,
    /// The client's key.
    pub client_key: PublicKey,
    /// QUIC or TLS.
    pub transport: Transport,
    /// Peer `ip:port`.
    pub peer: String,
    /// When it was admitted.
    pub started: UnixTime,
    /// When it ends at the latest (ticket or logout period), if known.
    pub ends_at: Option<UnixTime>,
    /// Open streams.
    pub streams: Vec<StreamInfo>,
}

/// One open stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Service id.
    pub service: String,
    /// VPN destination or the service's target.
    pub destination: Option<String>,
    /// Granted level.
    pub level: Level,
    /// Bytes from client to service so far.
    pub bytes_up: u64,
    /// Bytes from service to client so far.
    pub bytes_down: u64,
    /// When it opened.
    pub started: UnixTime,
}

/// The outcome of a bundle push: one type for the control socket and the
/// tunnel (their encodings were the same; now they are one).
pub use crate::frame::PushResult;

/// Why a frame could not be read: one type for the control socket and the
/// tunnel.
pub use crate::frame::FrameError;

/// Encode a message as one frame: length prefix and body.
pub fn encode_frame<T: Serialize>(msg: &T) -> Vec<u8> {
    codec::encode_prefixed(msg)
}

/// Check a frame's announced length before reading the body.
pub fn check_frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    codec::prefixed_len(prefix, MAX_FRAME).map_err(|len| FrameError::TooLarge {
        len,
        cap: MAX_FRAME,
    })
}

/// Decode a frame body.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(codec::decode_exact(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_pin_tags() {
        let f = encode_frame(&Request::Kill { id: 5 });
        assert_eq!(f, vec![0, 0, 0, 2, 2, 5]);
        let len = check_frame_len(f[..4].try_into().unwrap()).unwrap();
        assert_eq!(
            decode_body::<Request>(&f[4..4 + len]).unwrap(),
            Request::Kill { id: 5 }
        );
        assert_eq!(
            codec::encode(&Request::PushBundle { bytes: vec![9] }),
            vec![7, 1, 9]
        );
        assert_eq!(
            codec::encode(&Response::Error("x".into())),
            vec![7, 1, b'x']
        );
        assert_eq!(
            codec::encode(&Response::Push(PushResult::Unchanged { serial: 3 })),
            vec![6, 1, 3]
        );
        assert_eq!(codec::encode(&Request::Strangers { limit: 5 }), vec![8, 5]);
        assert_eq!(codec::encode(&Response::Strangers(vec![])), vec![8, 0]);
        assert_eq!(codec::encode(&Request::Keys), vec![10]);
        let keys = KeysInfo {
            version: 2,
            expires_at: None,
            roles: vec![RoleInfo {
                role: "root".into(),
                threshold: 1,
                keys: vec![crate::PublicKey([7; 32])],
            }],
        };
        let mut want = vec![9, 2, 0, 1, 4, b'r', b'o', b'o', b't', 1, 1];
        want.extend([7; 32]);
        assert_eq!(codec::encode(&Response::Keys(keys)), want);
    }

    #[test]
    fn oversized_frames_are_refused_before_reading() {
        let n = (MAX_FRAME as u32 + 1).to_be_bytes();
        assert_eq!(
            check_frame_len(n),
            Err(FrameError::TooLarge {
                len: MAX_FRAME + 1,
                cap: MAX_FRAME
            })
        );
        assert!(decode_body::<Request>(&[99]).is_err());
    }
}
