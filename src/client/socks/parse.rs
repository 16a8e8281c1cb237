//! SOCKS5 (RFC 1928) greeting and request parsing: bytes in, a decision
//! out. No I/O and no clock: the server in `client/socks.rs` reads what
//! [`Parsed::NeedMore`] asks for, answers, and opens the stream; the fuzz
//! crate feeds these functions arbitrary bytes.
//!
//! Only what `edgegate connect --socks` serves is accepted: no
//! authentication, the CONNECT command, IPv4, IPv6 and domain addresses.
//!
//! Written here rather than taken from a crate: the SOCKS5 crates on
//! crates.io (socks5-proto, fast-socks5, socks5-impl) read straight from an
//! `AsyncRead` (or an `io::Read`), so none gives a parser over a slice that
//! says how many bytes it still needs; this subset is a hundred lines.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// The protocol version byte of every SOCKS5 message.
pub const VERSION: u8 = 5;
/// The only authentication method offered: none.
pub const NO_AUTH: u8 = 0;
/// Method-selection answer: "no acceptable methods".
pub const NO_ACCEPTABLE: u8 = 0xff;
/// The only command served.
pub const CMD_CONNECT: u8 = 1;
/// Address type: IPv4, 4 bytes.
pub const ATYP_IPV4: u8 = 1;
/// Address type: a length byte and a domain name.
pub const ATYP_DOMAIN: u8 = 3;
/// Address type: IPv6, 16 bytes.
pub const ATYP_IPV6: u8 = 4;

/// Reply code: succeeded.
pub const REP_OK: u8 = 0;
/// Reply code: general failure.
pub const REP_FAILURE: u8 = 1;
/// Reply code: connection not allowed by ruleset.
pub const REP_NOT_ALLOWED: u8 = 2;
/// Reply code: connection refused.
pub const REP_REFUSED: u8 = 5;
/// Reply code: command not supported.
pub const REP_CMD_UNSUPPORTED: u8 = 7;
/// Reply code: address type not supported.
pub const REP_ATYP_UNSUPPORTED: u8 = 8;

/// The answer to an acceptable greeting: version 5, no authentication.
pub const GREETING_ACCEPTED: [u8; 2] = [VERSION, NO_AUTH];

/// The reply to a request, with bound address 0.0.0.0:0 (clients ignore it
/// for CONNECT).
pub const fn reply(code: u8) -> [u8; 10] {
    [VERSION, code, 0, ATYP_IPV4, 0, 0, 0, 0, 0, 0]
}

const NO_METHOD_ANSWER: [u8; 2] = [VERSION, NO_ACCEPTABLE];
const CMD_ANSWER: [u8; 10] = reply(REP_CMD_UNSUPPORTED);
const ATYP_ANSWER: [u8; 10] = reply(REP_ATYP_UNSUPPORTED);

/// What a parser makes of the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// At least this many more bytes (never 0) are needed. Reading exactly
    /// that many never reads past the end of the message.
    NeedMore(usize),
    /// A whole message: its value and its length (the first `len` bytes).
    Done {
        /// What the message says.
        value: T,
        /// How many bytes of the input it took.
        len: usize,
    },
    /// A message this server will not serve: answer, then close.
    Refused(Refusal),
}

/// Why a greeting or a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The version byte is not 5: not SOCKS5, closed without an answer.
    #[error("not a SOCKS5 client (version byte {0})")]
    BadVersion(u8),
    /// The greeting does not offer "no authentication".
    #[error("the client offers no acceptable authentication method")]
    NoAcceptableMethod,
    /// A command other than CONNECT (BIND, UDP ASSOCIATE, unknown).
    #[error("unsupported command {0}")]
    CommandUnsupported(u8),
    /// An address type other than IPv4, IPv6 or domain name.
    #[error("unsupported address type {0}")]
    AddressTypeUnsupported(u8),
}

impl Refusal {
    /// The bytes to send before closing, if any.
    pub fn answer(self) -> Option<&'static [u8]> {
        match self {
            Refusal::BadVersion(_) => None,
            Refusal::NoAcceptableMethod => Some(&NO_METHOD_ANSWER),
            Refusal::CommandUnsupported(_) => Some(&CMD_ANSWER),
            Refusal::AddressTypeUnsupported(_) => Some(&ATYP_ANSWER),
        }
    }
}

/// Where a CONNECT request wants to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An IPv4 or IPv6 address and port.
    Ip(SocketAddr),
    /// A domain name (lossily decoded as UTF-8) and port.
    Domain(String, u16),
}

/// `host:port`, IPv6 in brackets: the form `Open`'s destination takes.
impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Ip(addr) => write!(f, "{addr}"),
            Destination::Domain(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

/// Bytes still missing for `want`, as a result.
fn need<T>(buf: &[u8], want: usize) -> Option<Parsed<T>> {
    (buf.len() < want).then(|| Parsed::NeedMore(want - buf.len()))
}

/// The greeting: `VER NMETHODS METHODS…`. `Done` means: answer
/// [`GREETING_ACCEPTED`], then read the request.
pub fn parse_greeting(buf: &[u8]) -> Parsed<()> {
    if let Some(more) = need(buf, 2) {
        return more;
    }
    if buf[0] != VERSION {
        return Parsed::Refused(Refusal::BadVersion(buf[0]));
    }
    let len = 2 + usize::from(buf[1]);
    if let Some(more) = need(buf, len) {
        return more;
    }
    if !buf[2..len].contains(&NO_AUTH) {
        return Parsed::Refused(Refusal::NoAcceptableMethod);
    }
    Parsed::Done { value: (), len }
}

/// The request: `VER CMD RSV ATYP DST.ADDR DST.PORT`.
pub fn parse_request(buf: &[u8]) -> Parsed<Destination> {
    if let Some(more) = need(buf, 4) {
        return more;
    }
    if buf[0] != VERSION {
        return Parsed::Refused(Refusal::BadVersion(buf[0]));
    }
    if buf[1] != CMD_CONNECT {
        return Parsed::Refused(Refusal::CommandUnsupported(buf[1]));
    }
    let (start, addr_len) = match buf[3] {
        ATYP_IPV4 => (4, 4),
        ATYP_IPV6 => (4, 16),
        ATYP_DOMAIN => match buf.get(4) {
            Some(n) => (5, usize::from(*n)),
            None => return Parsed::NeedMore(1),
        },
        other => return Parsed::Refused(Refusal::AddressTypeUnsupported(other)),
    };
    let len = start + addr_len + 2;
    if let Some(more) = need(buf, len) {
        return more;
    }
    let addr = &buf[start..start + addr_len];
    let port = u16::from_be_bytes([buf[len - 2], buf[len - 1]]);
    let value = match buf[3] {
        ATYP_IPV4 => {
            let ip: [u8; 4] = addr.try_into().expect("4 bytes");
            Destination::Ip(SocketAddr::from((Ipv4Addr::from(ip), port)))
        }
        ATYP_IPV6 => {
            let ip: [u8; 16] = addr.try_into().expect("16 bytes");
            Destination::Ip(SocketAddr::from((Ipv6Addr::from(ip), port)))
        }
        _ => Destination::Domain(String::from_utf8_lossy(addr).into_owned(), port),
    };
    Parsed::Done { value, len }
}

#[cfg(test)]
mod tests;
