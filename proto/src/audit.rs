//! Audit records: what the daemon stores in its hash-chained log and shows
//! over the control socket.
//!
//! On disk each record is `AuditEntry::V1(AuditRecord)` in postcard. The
//! hash of a record is SHA-256 over exactly those stored bytes, and each
//! record carries the hash of the one before (`prev_hash`; all zeros for the
//! very first record), so editing or deleting a record breaks the chain.
//! Hashing and storage are the `edgegate` crate's; this module only defines
//! the encoding. Enums here only ever grow at the end.

use crate::codec::{self, DecodeError};
use crate::keys::PublicKey;
use crate::reason::{DenyReason, Level};
use crate::UnixTime;
use serde::{Deserialize, Serialize};

/// Length of a record hash (SHA-256).
pub const HASH_LEN: usize = 32;

/// A record hash.
pub type Hash = [u8; HASH_LEN];

/// The versioned on-disk form of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditEntry {
    /// Format version 1.
    V1(AuditRecord),
}

impl AuditEntry {
    /// Encode for storage; these are the bytes that are hashed.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decode stored bytes, rejecting trailing bytes and unknown versions.
    pub fn decode(bytes: &[u8]) -> Result<AuditEntry, DecodeError> {
        let version = codec::peek_version(bytes)?;
        if version > 0 {
            return Err(DecodeError::UnknownVersion(version));
        }
        codec::decode_exact(bytes)
    }

    /// The record inside.
    pub fn record(&self) -> &AuditRecord {
        match self {
            AuditEntry::V1(r) => r,
        }
    }

    /// Take the record out.
    pub fn into_record(self) -> AuditRecord {
        match self {
            AuditEntry::V1(r) => r,
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Sequence number, strictly increasing by one, starting at 1.
    pub seq: u64,
    /// Wall-clock time of the event (the daemon's floored notion of now).
    pub time: UnixTime,
    /// Hash of the previous record's stored bytes; zeros for `seq == 1`.
    pub prev_hash: Hash,
    /// What happened.
    pub event: AuditEvent,
}

/// How a session reached the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Transport {
    /// QUIC over UDP.
    Quic,
    /// TLS 1.3 over TCP.
    Tls,
}

impl Transport {
    /// Stable name: `quic` or `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Tls => "tls",
        }
    }
}

/// The result of one policy decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Allowed with this level.
    Allow(Level),
    /// Denied for this reason.
    Deny(DenyReason),
}

/// Why a session or stream ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseReason {
    /// One side closed it normally.
    Normal,
    /// A (re-)decision denied it.
    Denied(DenyReason),
    /// An operator killed it over the control socket.
    Killed,
    /// Nothing happened for longer than the idle timeout.
    IdleTimeout,
    /// The daemon is shutting down.
    Shutdown,
    /// A transport or backend error, described.
    Error(String),
    /// The client went away (its connection closed or was lost) while the
    /// stream was open: nobody on the daemon's side ended it.
    Disconnected,
}

impl CloseReason {
    /// Stable name: `normal`, a deny reason name, `killed`, `idle-timeout`,
    /// `shutdown`, `error: <text>` or `disconnected`.
    pub fn name(&self) -> String {
        match self {
            CloseReason::Normal => "normal".into(),
            CloseReason::Denied(r) => r.as_str().into(),
            CloseReason::Killed => "killed".into(),
            CloseReason::IdleTimeout => "idle-timeout".into(),
            CloseReason::Shutdown => "shutdown".into(),
            CloseReason::Error(e) => format!("error: {e}"),
            CloseReason::Disconnected => "disconnected".into(),
        }
    }
}

/// Something worth recording. Variants only ever grow at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditEvent {
    /// A policy decision: a session admission (`service` is `None`) or a
    /// stream open or re-decision.
    Decision {
        /// Session id, 0 if the session never got one.
        session: u64,
        /// User id from the ticket, if it could be read.
        user: Option<String>,
        /// Service id, `None` for the session-level check.
        service: Option<String>,
        /// VPN destination `host:port`, if any.
        destination: Option<String>,
        /// Allow with level or deny with reason.
        outcome: Outcome,
    },
    /// A session was admitted.
    SessionOpen {
        /// Session id.
        session: u64,
        /// User id.
        user: String,
        /// The client's key from the handshake.
        client_key: PublicKey,
        /// QUIC or TLS.
        transport: Transport,
        /// Peer `ip:port`.
        peer: String,
    },
    /// A session ended.
    SessionClose {
        /// Session id.
        session: u64,
        /// User id.
        user: String,
        /// Why.
        reason: CloseReason,
        /// How long it lasted.
        duration_ms: u64,
    },
    /// A stream to a service was opened.
    StreamOpen {
        /// Session id.
        session: u64,
        /// User id.
        user: String,
        /// Service id.
        service: String,
        /// VPN destination or the service's target.
        destination: Option<String>,
        /// Granted level.
        level: Level,
    },
    /// A stream ended, with byte counts.
    StreamClose {
        /// Session id.
        session: u64,
        /// User id.
        user: String,
        /// Service id.
        service: String,
        /// VPN destination or the service's target.
        destination: Option<String>,
        /// Bytes from client to service.
        bytes_up: u64,
        /// Bytes from service to client.
        bytes_down: u64,
        /// How long it lasted.
        duration_ms: u64,
        /// Why it ended.
        reason: CloseReason,
    },
    /// A bundle was accepted and is now enforced.
    BundleAccepted {
        /// Its serial.
        serial: u64,
        /// When it was signed.
        issued_at: UnixTime,
        /// When it expires.
        not_after: UnixTime,
    },
    /// A bundle was refused; the running policy is unchanged.
    BundleRejected {
        /// Stable reason code (e.g. `rollback`, `bad-signature`).
        code: String,
        /// One-line description.
        message: String,
        /// The bundle's serial, if it could be read.
        serial: Option<u64>,
    },
    /// On-site consent was granted.
    ConsentGranted {
        /// Wall-clock end, `None` until revoked.
        until: Option<UnixTime>,
        /// Uid of the control-socket caller.
        by_uid: u32,
    },
    /// On-site consent was revoked.
    ConsentRevoked {
        /// Uid of the control-socket caller.
        by_uid: u32,
    },
    /// A timed consent ran out.
    ConsentExpired,
    /// The daemon started.
    DaemonStart {
        /// Its version string.
        version: String,
    },
    /// The daemon stopped cleanly.
    DaemonStop,
    /// An operator reset an unreadable anti-rollback watermark
    /// (`edgegate store reset-watermark`) while the daemon was stopped;
    /// recorded when the daemon next starts.
    WatermarkReset {
        /// When the reset was made (wall clock of the command).
        at: UnixTime,
        /// Uid that ran the command.
        by_uid: u32,
        /// The serial the new watermark enforces.
        serial: Option<u64>,
        /// The time floor it records.
        floor: UnixTime,
    },
    /// A key statement was accepted: its roles' keys verify from now on.
    KeysAccepted {
        /// Its version.
        version: u64,
        /// Whether it changed the root keys.
        root_rotated: bool,
        /// The recovery it applied, if it carried one.
        recovery: Option<RecoveryApplied>,
    },
    /// A key statement was refused; the keys in force are unchanged.
    KeysRejected {
        /// Stable reason code (e.g. `stale-key-statement`, `bad-signature`).
        code: String,
        /// One-line description.
        message: String,
    },
    /// VPN flows refused at their first packet. One record stands for one
    /// refusal, or for every refusal of the second after the session's
    /// last such record (so a port scan costs at most two records a
    /// second); `destination` and `reason` are the first of them.
    FlowsDenied {
        /// Session id.
        session: u64,
        /// User id.
        user: String,
        /// `PROTOCOL ADDRESS:PORT` (`tcp 192.168.1.10:502`; port 0 for icmp).
        destination: String,
        /// Why the first was refused.
        reason: DenyReason,
        /// How many flows were refused.
        count: u64,
    },
}

/// What a key statement's recovery changed: the anti-rollback serial and
/// the time floor, before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryApplied {
    /// The serial a bundle had to exceed before.
    pub serial_before: Option<u64>,
    /// The serial a bundle must exceed now.
    pub serial: Option<u64>,
    /// The time floor before.
    pub floor_before: UnixTime,
    /// The time floor now.
    pub floor: UnixTime,
}

/// Unauthenticated events from one source address in one minute: what a
/// stranger sent is counted here, never recorded one by one in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrangerSummary {
    /// Start of the minute (unix seconds, a multiple of 60).
    pub minute: UnixTime,
    /// The source IP address, or `other` for the sources beyond the
    /// per-minute cap, counted together.
    pub source: String,
    /// Sessions refused before a ticket bound to the peer's key verified.
    pub refused_sessions: u64,
    /// Bundle pushes over the tunnel port that were rejected.
    pub rejected_pushes: u64,
    /// Connections whose first frame was missing, undecodable or unexpected.
    pub garbage: u64,
}

/// Domain separation for [`SignedHead`] signatures.
pub const HEAD_DOMAIN: &[u8] = b"edgegate/audit-head/v1\0";

/// The chain's head signed with the device key: "record `seq` with hash
/// `hash` existed at `time`". The daemon stores the newest and logs each
/// as a line ([`SignedHead::to_line`]) for the operator to keep off-box; a
/// log that ends before a signed head lost its tail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    /// Sequence number of the head record.
    pub seq: u64,
    /// Its hash.
    pub hash: Hash,
    /// Its time (the record's own `time`).
    pub time: UnixTime,
    /// ed25519 by the device key over [`SignedHead::message`].
    #[serde(with = "crate::codec::array64")]
    pub signature: [u8; 64],
}

/// Why a signed-head line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a signed audit head ({0}); expected edgegate-audit-head:v1:SEQ:HASH:TIME:SIGNATURE")]
pub struct HeadLineError(&'static str);

impl SignedHead {
    /// The signed bytes: domain ‖ seq (u64 BE) ‖ hash ‖ time (u64 BE).
    pub fn message(seq: u64, hash: &Hash, time: UnixTime) -> Vec<u8> {
        let mut m = Vec::with_capacity(HEAD_DOMAIN.len() + 48);
        m.extend_from_slice(HEAD_DOMAIN);
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(hash);
        m.extend_from_slice(&time.to_be_bytes());
        m
    }

    /// Whether the signature is `key`'s over this head.
    pub fn verify(&self, key: &PublicKey) -> bool {
        let Ok(vk) = key.verifying_key() else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature);
        vk.verify_strict(&Self::message(self.seq, &self.hash, self.time), &sig)
            .is_ok()
    }

    /// One line: `edgegate-audit-head:v1:SEQ:HASH:TIME:SIGNATURE` (hash and
    /// signature in lower-case hex).
    pub fn to_line(&self) -> String {
        format!(
            "edgegate-audit-head:v1:{}:{}:{}:{}",
            self.seq,
            hex(&self.hash),
            self.time,
            hex(&self.signature)
        )
    }

    /// Read a line written by [`SignedHead::to_line`] (surrounding text,
    /// such as a journal prefix, is ignored).
    pub fn parse_line(line: &str) -> Result<SignedHead, HeadLineError> {
        let start = line
            .find("edgegate-audit-head:")
            .ok_or(HeadLineError("no edgegate-audit-head: prefix"))?;
        let body = line[start..].split_whitespace().next().unwrap_or_default();
        let parts: Vec<&str> = body.split(':').collect();
        let [_, "v1", seq, hash, time, sig] = parts.as_slice() else {
            return Err(HeadLineError("wrong number of fields or version"));
        };
        Ok(SignedHead {
            seq: seq.parse().map_err(|_| HeadLineError("bad seq"))?,
            hash: unhex(hash).ok_or(HeadLineError("bad hash"))?,
            time: time.parse().map_err(|_| HeadLineError("bad time"))?,
            signature: unhex(sig).ok_or(HeadLineError("bad signature"))?,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// What `audit verify` found on a good chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// First kept sequence number (`None` if the log is empty).
    pub first_seq: Option<u64>,
    /// Last sequence number (`None` if the log is empty).
    pub last_seq: Option<u64>,
}

/// Where and why the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("audit chain broken at record {seq}: {what}")]
pub struct AuditVerifyError {
    /// The first record found inconsistent.
    pub seq: u64,
    /// What is wrong with it.
    pub what: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_are_pinned() {
        let rec = AuditEntry::V1(AuditRecord {
            seq: 1,
            time: 1_700_000_000,
            prev_hash: [0; 32],
            event: AuditEvent::BundleAccepted {
                serial: 7,
                issued_at: 2,
                not_after: 3,
            },
        });
        let bytes = rec.encode();
        let mut expected = vec![0, 1, 0x80, 0xe2, 0xcf, 0xaa, 0x06];
        expected.extend([0; 32]);
        expected.extend([5, 7, 2, 3]);
        assert_eq!(bytes, expected);
        assert_eq!(AuditEntry::decode(&bytes).unwrap(), rec);
        assert_eq!(
            codec::encode(&AuditEvent::DaemonStop),
            vec![11],
            "variant indices must not move"
        );
        let denied = AuditEvent::FlowsDenied {
            session: 3,
            user: "al".into(),
            destination: "tcp 10.0.0.1:81".into(),
            reason: DenyReason::DestinationNotAllowed,
            count: 300,
        };
        let mut expected = vec![15, 3, 2, b'a', b'l', 15];
        expected.extend(b"tcp 10.0.0.1:81");
        expected.extend([11, 0xac, 0x02]);
        assert_eq!(codec::encode(&denied), expected);
    }

    #[test]
    fn signed_head_lines_round_trip_and_verify() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let (seq, hash, time) = (42, [9u8; 32], 1_700_000_000);
        let sig = ed25519_signature(&key, &SignedHead::message(seq, &hash, time));
        let head = SignedHead {
            seq,
            hash,
            time,
            signature: sig,
        };
        let line = format!("Jan 01 edgegated[1]: audit head {}", head.to_line());
        let back = SignedHead::parse_line(&line).unwrap();
        assert_eq!(back, head);
        assert!(back.verify(&PublicKey::from(key.verifying_key())));
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        assert!(!back.verify(&PublicKey::from(other.verifying_key())));
        let moved = SignedHead { seq: 41, ..back };
        assert!(!moved.verify(&PublicKey::from(key.verifying_key())));
        assert!(SignedHead::parse_line("edgegate-audit-head:v1:1:zz:2:00").is_err());
    }

    fn ed25519_signature(key: &ed25519_dalek::SigningKey, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        key.sign(msg).to_bytes()
    }

    #[test]
    fn rejects_unknown_version_and_trailing_bytes() {
        assert_eq!(
            AuditEntry::decode(&[1, 0]),
            Err(DecodeError::UnknownVersion(1))
        );
        let mut bytes = AuditEntry::V1(AuditRecord {
            seq: 1,
            time: 0,
            prev_hash: [0; 32],
            event: AuditEvent::DaemonStop,
        })
        .encode();
        bytes.push(0);
        assert_eq!(
            AuditEntry::decode(&bytes),
            Err(DecodeError::TrailingBytes(1))
        );
    }
}
