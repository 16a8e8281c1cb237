//! Tunnel frames: every message the client and the daemon exchange inside a
//! QUIC stream or a TLS connection, and their length-prefixed encoding.
//!
//! A frame on the wire is a `u32` big-endian length followed by that many
//! bytes of postcard-encoded [`Frame`]. This module encodes and decodes; it
//! reads no socket (the daemon's transport does, with [`MAX_FRAME`] and
//! [`MAX_PUSH_FRAME`] as caps checked before allocating). The protocol
//! version is carried by the ALPN (`edgegate/1`); inside it [`Frame`] only
//! ever grows new variants at the end, so postcard variant indices are stable.

use crate::bundle::ServiceKind;
use crate::codec::{self, DecodeError};
use crate::reason::{DenyReason, Level};
use crate::UnixTime;
use serde::{Deserialize, Serialize};

/// The ALPN protocol id of this tunnel protocol.
pub const ALPN: &[u8] = b"edgegate/1";

/// Largest frame body (after the 4-byte length) in ordinary traffic.
pub const MAX_FRAME: usize = 64 * 1024;

/// Largest frame body of a `PushBundle`: the bundle cap plus framing slack.
pub const MAX_PUSH_FRAME: usize = (32 << 20) + 64;

/// Application error code of a QUIC stream closed by a re-decision is
/// `STREAM_DENIED_BASE + wire index of the DenyReason`.
pub const STREAM_DENIED_BASE: u32 = 0x100;

/// Application error code of a QUIC connection closed because an operator
/// killed the session.
pub const CONN_KILLED: u32 = 0x1;

/// Application error code of a QUIC connection closed by a protocol error
/// (bad frame, timeout, limit).
pub const CONN_PROTOCOL_ERROR: u32 = 0x2;

/// Application error code of a QUIC connection closed because the daemon is
/// shutting down.
pub const CONN_SHUTDOWN: u32 = 0x3;

/// Application error code of a QUIC connection closed because the session
/// had no open stream for the configured idle timeout.
pub const CONN_IDLE: u32 = 0x4;

/// Application error code of a QUIC stream closed because the client sent
/// something its `read` level does not allow (e.g. an HTTP POST).
pub const STREAM_READ_ONLY: u32 = 0xff;

/// Application error code of a QUIC connection closed because the session's
/// own decision (DESIGN §2 steps 1–4) turned to deny is
/// `CONN_DENIED_BASE + wire index of the DenyReason`.
pub const CONN_DENIED_BASE: u32 = 0x200;

/// One tunnel message. Variants are only ever added at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Client → daemon, first frame of a session (QUIC control stream, or
    /// every TLS connection): the signed ticket envelope.
    Hello {
        /// Ticket envelope bytes, as issued.
        #[serde(with = "codec::bytes")]
        ticket: Vec<u8>,
    },
    /// Daemon → client: the session is open.
    Welcome(Welcome),
    /// Daemon → client: the session is refused as a whole.
    Refused {
        /// Why (a session-level reason: DESIGN §2 steps 1–4, or a limit).
        reason: DenyReason,
    },
    /// Client → daemon, first frame of a data stream: which service.
    Open {
        /// Service id.
        service: String,
        /// For `vpn` services, `host:port` to reach; `None` otherwise.
        destination: Option<String>,
    },
    /// Daemon → client: the stream is allowed; raw bytes follow.
    Opened {
        /// The level the stream runs at.
        level: Level,
    },
    /// Daemon → client: the stream is denied.
    Denied {
        /// Why.
        reason: DenyReason,
    },
    /// Daemon → client on the QUIC control stream: a live stream was cut
    /// by a re-decision.
    StreamClosed {
        /// The QUIC stream id of the data stream.
        stream: u64,
        /// Why.
        reason: DenyReason,
    },
    /// Payload bytes of a stream (TLS transport only; QUIC carries raw bytes).
    Data(#[serde(with = "codec::bytes")] Vec<u8>),
    /// End of a stream direction (TLS transport only). `None`: the sender
    /// has no more bytes (half close). `Some`: the daemon cut the stream.
    Close {
        /// The re-decision's reason, if the stream was cut.
        reason: Option<DenyReason>,
    },
    /// Client → daemon, instead of `Hello`: a signed bundle to install.
    PushBundle {
        /// Bundle envelope bytes.
        #[serde(with = "codec::bytes")]
        bundle: Vec<u8>,
    },
    /// Daemon → client: the outcome of a `PushBundle`.
    PushResult(PushResult),
    /// Daemon → client, instead of `Opened`: the stream was allowed but the
    /// service's target could not be reached.
    Failed {
        /// One human-readable line.
        message: String,
    },
    /// Daemon → client on a TLS stream: closed because the client sent
    /// something its `read` level does not allow (QUIC uses the stream error
    /// code `STREAM_READ_ONLY`).
    ReadOnlyViolation,
    /// Daemon → client: the whole session ends now (QUIC: on the control
    /// stream, before the connection closes; TLS: on every connection of
    /// the session, instead of `Close`).
    SessionClosed {
        /// Why.
        reason: SessionEnd,
    },
    /// Client → daemon on a TLS connection, after `Welcome`, instead of
    /// `Open`: this connection carries no stream; it holds the session open
    /// (listed, re-decided, killable) while the client has no stream, and
    /// carries `SessionClosed` when the daemon ends the session. The client
    /// closes it to end the session. One per session; QUIC does not use it
    /// (its control stream does this).
    Hold,
    /// Daemon → client, instead of `Refused` (which it no longer sends): the
    /// session is refused as a whole, with one line for the engineer saying
    /// what the stable reason word cannot (for `wrong-device`, the device
    /// the ticket names and the one this gateway is; for `bad-ticket`, what
    /// is wrong with it). Empty when there is nothing to add.
    RefusedWithDetail {
        /// Why (as in `Refused`).
        reason: DenyReason,
        /// One human-readable line, or empty.
        detail: String,
    },
    /// Client → daemon, first frame of a data stream instead of `Open`:
    /// start this session's VPN (`TUNNEL.md`, "The VPN"). One per session.
    /// The daemon answers `VpnReady`, or `Denied` when no `vpn` service is
    /// allowed.
    VpnOpen {
        /// Whether the client takes IP packets as QUIC datagrams (QUIC
        /// sessions only); otherwise they ride this stream as `Packet`.
        datagrams: bool,
    },
    /// Daemon → client, the answer to `VpnOpen`: the VPN is up.
    VpnReady(VpnConfig),
    /// One IPv4 packet, either way, on the VPN stream (when packets do not
    /// ride QUIC datagrams).
    Packet(#[serde(with = "codec::bytes")] Vec<u8>),
    /// Daemon → client on the VPN stream: one flow was refused at its first
    /// packet, or cut by a re-decision.
    FlowClosed(FlowClosed),
}

/// How an engineer's VPN is set up: the daemon's answer to `VpnOpen`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnConfig {
    /// The engineer's address on the VPN: the only source address the
    /// daemon accepts on this session.
    pub address: std::net::Ipv4Addr,
    /// The largest IP packet either side sends (the TUN's MTU).
    pub mtu: u16,
    /// The networks of the `vpn` services this session is allowed: the
    /// routes the client installs, nothing more.
    pub routes: Vec<crate::bundle::Network>,
    /// Whether packets ride QUIC datagrams (`true`) or `Packet` frames on
    /// the VPN stream (`false`).
    pub datagrams: bool,
}

/// The transport protocol of a VPN flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowProtocol {
    /// One TCP connection.
    Tcp,
    /// One UDP destination (address and port).
    Udp,
    /// ICMP echo to one address.
    Icmp,
}

impl FlowProtocol {
    /// Stable name: `tcp`, `udp` or `icmp`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowProtocol::Tcp => "tcp",
            FlowProtocol::Udp => "udp",
            FlowProtocol::Icmp => "icmp",
        }
    }
}

/// A VPN flow refused or cut, as the client reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowClosed {
    /// The `vpn` service the flow was decided under (empty when its
    /// destination lies in no service's networks).
    pub service: String,
    /// The flow's protocol.
    pub protocol: FlowProtocol,
    /// `ADDRESS:PORT` (port 0 for ICMP).
    pub destination: String,
    /// Why.
    pub reason: DenyReason,
    /// `true`: a live flow was cut by a re-decision; `false`: the flow was
    /// refused at its first packet.
    pub cut: bool,
}

/// Why the daemon ended a whole session. Variants are only ever added at
/// the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionEnd {
    /// The session's own decision (DESIGN §2 steps 1–4) turned to deny.
    Denied(DenyReason),
    /// An operator killed it over the control socket.
    Killed,
    /// No stream activity for the configured idle timeout.
    IdleTimeout,
    /// The daemon is shutting down.
    Shutdown,
}

impl SessionEnd {
    /// The QUIC application error code the connection is closed with.
    pub fn conn_code(self) -> u32 {
        match self {
            SessionEnd::Denied(r) => CONN_DENIED_BASE + (r.stream_code() - STREAM_DENIED_BASE),
            SessionEnd::Killed => CONN_KILLED,
            SessionEnd::IdleTimeout => CONN_IDLE,
            SessionEnd::Shutdown => CONN_SHUTDOWN,
        }
    }

    /// The session end behind a QUIC connection application error code.
    pub fn from_conn_code(code: u64) -> Option<SessionEnd> {
        match code {
            c if c == u64::from(CONN_KILLED) => Some(SessionEnd::Killed),
            c if c == u64::from(CONN_IDLE) => Some(SessionEnd::IdleTimeout),
            c if c == u64::from(CONN_SHUTDOWN) => Some(SessionEnd::Shutdown),
            c => {
                let index = c.checked_sub(u64::from(CONN_DENIED_BASE))?;
                let reason = DenyReason::ALL.get(usize::try_from(index).ok()?)?;
                Some(SessionEnd::Denied(*reason))
            }
        }
    }

    /// Stable name: the deny reason's name, `killed`, `idle-timeout` or
    /// `shutdown`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::Denied(r) => r.as_str(),
            SessionEnd::Killed => "killed",
            SessionEnd::IdleTimeout => "idle-timeout",
            SessionEnd::Shutdown => "shutdown",
        }
    }
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The daemon's answer to a valid `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Session id, as `edgegate sessions` lists it.
    pub session_id: u64,
    /// User id from the ticket.
    pub user: String,
    /// User's display name from the bundle.
    pub user_name: String,
    /// When the session ends at the latest (ticket expiry or logout period).
    pub session_end: UnixTime,
    /// One decision per service of the device, in bundle order.
    pub services: Vec<ServiceDecision>,
}

/// The decision for one service at session start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDecision {
    /// Service id.
    pub id: String,
    /// Service kind.
    pub kind: ServiceKind,
    /// Allow with a level, or deny with a reason.
    pub decision: Verdict,
}

/// A decision as it travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Allowed at this level.
    Allow(Level),
    /// Denied for this reason.
    Deny(DenyReason),
}

/// The outcome of a bundle push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushResult {
    /// Installed; now the running policy.
    Accepted {
        /// The new serial.
        serial: u64,
    },
    /// The same bytes as the installed bundle: nothing to do.
    Unchanged {
        /// The installed serial.
        serial: u64,
    },
    /// Refused; the running policy is untouched.
    Rejected {
        /// Stable short reason (`rollback`, `wrong-device`, `bad-signature`…).
        code: String,
        /// One human-readable line.
        message: String,
    },
    /// A key statement was accepted (or was the one in force already);
    /// the bundle that rode along with it, if any, had the outcome `bundle`.
    Keys {
        /// The version of the key statement in force now.
        version: u64,
        /// Whether this push installed it (`false`: it was in force).
        changed: bool,
        /// What became of the bundle delivered with it.
        bundle: Option<Box<PushResult>>,
    },
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix exceeds the cap for this position in the protocol.
    #[error("frame of {len} bytes exceeds the cap of {cap}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Cap in force.
        cap: usize,
    },
    /// The body is not a valid frame.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl DenyReason {
    /// The QUIC application error code of a stream closed for this reason.
    pub fn stream_code(self) -> u32 {
        let index = DenyReason::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every reason is in ALL");
        STREAM_DENIED_BASE + index as u32
    }

    /// The reason behind a QUIC stream application error code, if any.
    pub fn from_stream_code(code: u64) -> Option<DenyReason> {
        let index = code.checked_sub(u64::from(STREAM_DENIED_BASE))?;
        DenyReason::ALL.get(usize::try_from(index).ok()?).copied()
    }
}

/// Encode a frame with its 4-byte big-endian length prefix.
pub fn encode(frame: &Frame) -> Vec<u8> {
    codec::encode_prefixed(frame)
}

/// postcard variant index of [`Frame::PushBundle`]: the first byte of a
/// push's body, which the daemon reads before the rest (pinned by the
/// golden tests).
pub const PUSH_TAG: u8 = 9;

/// postcard variant index of [`Frame::Data`] (pinned by the golden tests and
/// by `data_header_matches_encode`).
const DATA_TAG: u8 = 7;

/// Longest [`data_header`]: length prefix, variant, varint of a length below
/// [`MAX_FRAME`].
pub const DATA_HEADER_MAX: usize = 4 + 1 + 3;

/// The bytes [`encode`] puts before the payload of a `Frame::Data` of `len`
/// bytes: the frame's length prefix, the variant index and the payload's
/// varint length. A transport writes these and then the payload slice,
/// without building the frame; `None` if `len` does not fit in a frame.
pub fn data_header(len: usize) -> Option<([u8; DATA_HEADER_MAX], usize)> {
    let mut varint = [0u8; 3];
    let mut v = len;
    let mut n = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            varint[n] = byte;
            n += 1;
            break;
        }
        varint[n] = byte | 0x80;
        n += 1;
        if n == varint.len() {
            return None;
        }
    }
    let body = 1 + n + len;
    if body > MAX_FRAME {
        return None;
    }
    let mut out = [0u8; DATA_HEADER_MAX];
    out[..4].copy_from_slice(&(body as u32).to_be_bytes());
    out[4] = DATA_TAG;
    out[5..5 + n].copy_from_slice(&varint[..n]);
    Some((out, 5 + n))
}

/// The payload length of a `Frame::Data` whose body (after the length
/// prefix) is `body_len` bytes, if a canonical encoding of that size exists.
/// The caller still compares the header bytes with [`data_header`].
pub fn data_len_for_body(body_len: usize) -> Option<usize> {
    (1..=3).find_map(|varint| {
        let len = body_len.checked_sub(1 + varint)?;
        match data_header(len) {
            Some((_, h)) if h == 5 + varint => Some(len),
            _ => None,
        }
    })
}

/// Check an announced length against `cap`; call before allocating.
pub fn check_len(prefix: [u8; 4], cap: usize) -> Result<usize, FrameError> {
    codec::prefixed_len(prefix, cap).map_err(|len| FrameError::TooLarge { len, cap })
}

/// Decode one frame body (without its length prefix), rejecting trailing bytes.
pub fn decode(body: &[u8]) -> Result<Frame, FrameError> {
    Ok(codec::decode_exact(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_cap_follows_bundle_cap() {
        assert_eq!(
            MAX_PUSH_FRAME,
            crate::envelope::Purpose::Bundle.max_size() + 64
        );
    }

    #[test]
    fn stream_codes_round_trip() {
        for r in DenyReason::ALL {
            assert_eq!(
                DenyReason::from_stream_code(r.stream_code().into()),
                Some(r)
            );
        }
        assert_eq!(DenyReason::UserInactive.stream_code(), 0x107);
        assert_eq!(DenyReason::from_stream_code(0x99), None);
        assert_eq!(DenyReason::from_stream_code(0x100 + 16), None);
    }

    #[test]
    fn session_end_codes_round_trip() {
        let mut all: Vec<SessionEnd> = DenyReason::ALL.map(SessionEnd::Denied).to_vec();
        all.extend([
            SessionEnd::Killed,
            SessionEnd::IdleTimeout,
            SessionEnd::Shutdown,
        ]);
        for end in all {
            assert_eq!(
                SessionEnd::from_conn_code(end.conn_code().into()),
                Some(end)
            );
        }
        assert_eq!(
            SessionEnd::Denied(DenyReason::UserInactive).conn_code(),
            0x207
        );
        assert_eq!(
            SessionEnd::from_conn_code(u64::from(CONN_PROTOCOL_ERROR)),
            None
        );
        assert_eq!(SessionEnd::from_conn_code(0x200 + 16), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_round_trip_when_accepted() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let mut body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            // Bias towards valid variant indices so decoding goes deep.
            if let Some(first) = body.first_mut() {
                *first %= 15;
            }
            if let Ok(frame) = decode(&body) {
                assert_eq!(encode(&frame)[4..], body[..], "{frame:?}");
            }
        }
    }

    #[test]
    fn data_header_matches_encode() {
        for len in [0, 1, 127, 128, 200, 16_383, 16_384, MAX_FRAME - 4] {
            let payload = vec![0xa5; len];
            let encoded = encode(&Frame::Data(payload.clone()));
            let (header, h) = data_header(len).unwrap();
            assert_eq!(&encoded[..h], &header[..h], "len {len}");
            assert_eq!(&encoded[h..], &payload[..], "len {len}");
            assert_eq!(data_len_for_body(encoded.len() - 4), Some(len));
        }
        assert_eq!(data_header(MAX_FRAME), None);
        // 130 = 1 + 1 + 128 would need a one-byte varint of 128.
        assert_eq!(data_len_for_body(130), None);
        assert_eq!(data_len_for_body(0), None);
    }

    #[test]
    fn length_prefix_and_cap() {
        let bytes = encode(&Frame::Opened { level: Level::Read });
        assert_eq!(bytes, [0, 0, 0, 2, 4, 0]);
        assert_eq!(check_len([0, 0, 0, 2], MAX_FRAME), Ok(2));
        assert!(check_len([0, 1, 0, 1], MAX_FRAME).is_err());
        assert_eq!(
            decode(&bytes[4..]),
            Ok(Frame::Opened { level: Level::Read })
        );
        assert!(decode(&[4, 0, 0]).is_err());
    }
}
