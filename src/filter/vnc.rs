//! The read-level filter for `vnc` services: view-only RFB (RFC 6143).
//!
//! Passes the handshake of RFB 3.3, 3.7 and 3.8 with security type None (1)
//! or VNC authentication (2), then the client messages that only ask to see:
//! SetPixelFormat, SetEncodings and FramebufferUpdateRequest. KeyEvent,
//! PointerEvent and ClientCutText are dropped (framed exactly, so the stream
//! goes on). Any other security type or client message type closes the
//! stream: the filter cannot know how long it is, and guessing would let a
//! client hide input inside it.
//!
//! Two rewrites, both so that a view-only client is not closed or harmful:
//! - ClientInit's shared flag is forced to 1, so an observer never
//!   disconnects the other viewers of the desktop;
//! - SetEncodings loses the pseudo-encodings that make a client send message
//!   types this filter refuses (Fence, ContinuousUpdates, ExtendedDesktopSize,
//!   xvp, gii, QEMU key events and audio, extended mouse buttons, extended
//!   clipboard): the server then never starts those extensions.
//!
//! The filter needs the server's handshake ([`ByteFilter::observe_server`]):
//! in 3.3 the server alone picks the security type, and the client's bytes
//! depend on it. It never guesses: client bytes that answer a server message
//! it has not observed close the stream.

mod server;

use super::FilterViolation::{self, Malformed, TooLarge, Unsupported};
use super::{fill, latch, take, ByteFilter};
use server::ServerSide;

/// Most encodings in one SetEncodings message (clients send a few dozen).
const MAX_ENCODINGS: usize = 1024;
/// Largest ClientCutText skipped (dropped unread; the bound also refuses the
/// extended-clipboard form, whose length field is negative).
pub const MAX_CUT_TEXT: u32 = 16 * 1024 * 1024;
/// Pseudo-encodings that enable client messages this filter refuses.
const STRIPPED_ENCODINGS: [i32; 9] = [
    -258,        // QEMU Extended Key Event
    -259,        // QEMU Audio
    -305,        // gii
    -308,        // ExtendedDesktopSize (SetDesktopSize)
    -309,        // xvp (shutdown, reboot, reset)
    -312,        // Fence
    -313,        // ContinuousUpdates
    -316,        // ExtendedMouseButtons (longer PointerEvent)
    -1063131698, // 0xC0A1E5CE Extended Clipboard
];

/// The protocol version the client chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V3_3,
    V3_7,
    V3_8,
}

/// Handshake facts shared by the two directions.
#[derive(Default)]
struct Facts {
    server_version: Option<(u16, u16)>,
    version: Option<Version>,
    /// 3.7/3.8: the types the server offered.
    offered: Option<Vec<u8>>,
    /// The security type in use (3.3: the server's; else the client's).
    security: Option<u8>,
    challenge_seen: bool,
    /// The SecurityResult: `Some(true)` for OK.
    result: Option<bool>,
    /// The server reported a failed handshake.
    failed: bool,
    /// The server's bytes could not be followed.
    server_error: Option<FilterViolation>,
}

/// Client->server filter for a `vnc` service at level `read`.
#[derive(Default)]
pub struct VncReadFilter {
    step: Step,
    buf: Vec<u8>,
    facts: Facts,
    server: ServerSide,
    failed: Option<FilterViolation>,
}

impl VncReadFilter {
    /// A filter at the start of a connection.
    pub fn new() -> VncReadFilter {
        VncReadFilter::default()
    }
}

impl ByteFilter for VncReadFilter {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterViolation> {
        let Self {
            step,
            buf,
            facts,
            server,
            failed,
        } = self;
        latch(failed, || {
            if let Some(e) = &facts.server_error {
                return Err(e.clone());
            }
            Client {
                step,
                buf,
                facts,
                server,
            }
            .feed(input, out)
        })
    }

    fn observe_server(&mut self, bytes: &[u8]) {
        self.server.observe(&mut self.facts, bytes);
    }
}

/// What the client sends next.
#[derive(Default, Clone, Copy)]
enum Step {
    #[default]
    Version,
    /// 3.7/3.8: the chosen type; 3.3: nothing (the server's type decides).
    Security,
    /// The 16-byte VNC-auth response.
    AuthResponse,
    /// Nothing until the server's SecurityResult.
    AwaitResult,
    ClientInit,
    MsgType,
    /// A message that passes as is: `n` bytes including the type.
    Pass(usize),
    /// SetEncodings' first 4 bytes (type, padding, count).
    EncodingsHead,
    /// SetEncodings: `n` bytes in all.
    Encodings(usize),
    /// ClientCutText's first 8 bytes (type, padding, length).
    CutTextHead,
    /// Bytes of a dropped message still to skip.
    Drop(u64),
}

struct Client<'a> {
    step: &'a mut Step,
    buf: &'a mut Vec<u8>,
    facts: &'a mut Facts,
    server: &'a mut ServerSide,
}

impl Client<'_> {
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterViolation> {
        while !input.is_empty() {
            self.settle()?;
            if let Step::Drop(remaining) = self.step {
                take(remaining, &mut input);
                if *remaining == 0 {
                    *self.step = Step::MsgType;
                }
                continue;
            }
            let want = self.want()?;
            if fill(self.buf, want, &mut input) {
                let unit = std::mem::take(self.buf);
                *self.step = self.unit(unit, out)?;
            }
        }
        Ok(())
    }

    /// Resolves the steps where the client sends nothing, from the server's
    /// observed handshake; refuses bytes that answer something unobserved.
    fn settle(&mut self) -> Result<(), FilterViolation> {
        let f = &*self.facts;
        let handshake = matches!(
            self.step,
            Step::Version
                | Step::Security
                | Step::AuthResponse
                | Step::AwaitResult
                | Step::ClientInit
        );
        if f.failed && handshake {
            return Err(Malformed("client data after a failed VNC handshake"));
        }
        match *self.step {
            Step::Security if f.version == Some(Version::V3_3) => {
                *self.step = match f.security {
                    None => return Err(Malformed("client data before the server's security type")),
                    Some(1) => Step::ClientInit,
                    Some(_) => Step::AuthResponse,
                };
            }
            Step::AwaitResult => match f.result {
                Some(true) => *self.step = Step::ClientInit,
                _ => return Err(Malformed("client data before the server's security result")),
            },
            _ => {}
        }
        Ok(())
    }

    /// Bytes needed for the current step, once its preconditions hold.
    fn want(&self) -> Result<usize, FilterViolation> {
        let f = &*self.facts;
        Ok(match *self.step {
            Step::Version if f.server_version.is_none() => {
                return Err(Malformed("client data before the server's version"))
            }
            Step::Version => 12,
            Step::Security if f.offered.is_none() => {
                return Err(Malformed("client data before the server's security types"))
            }
            Step::AuthResponse if !f.challenge_seen => {
                return Err(Malformed("client data before the server's challenge"))
            }
            Step::AuthResponse => 16,
            Step::Security | Step::ClientInit | Step::MsgType => 1,
            Step::EncodingsHead => 4,
            Step::CutTextHead => 8,
            Step::Pass(n) | Step::Encodings(n) => n,
            Step::AwaitResult | Step::Drop(_) => unreachable!("settled before"),
        })
    }

    /// Acts on a complete unit; returns the next step.
    fn unit(&mut self, b: Vec<u8>, out: &mut Vec<u8>) -> Result<Step, FilterViolation> {
        let next = match *self.step {
            Step::Version => return self.version(b, out),
            Step::Security => return self.security(b[0], out),
            Step::AuthResponse => {
                out.extend_from_slice(&b);
                Step::AwaitResult
            }
            Step::ClientInit => {
                out.push(1);
                Step::MsgType
            }
            Step::MsgType => {
                let next = message(b[0])?;
                if !matches!(next, Step::Drop(_)) {
                    *self.buf = b; // the type byte is part of the message
                }
                next
            }
            Step::Pass(_) => {
                out.extend_from_slice(&b);
                Step::MsgType
            }
            Step::EncodingsHead => {
                let n = usize::from(u16::from_be_bytes([b[2], b[3]]));
                if n > MAX_ENCODINGS {
                    return Err(TooLarge);
                }
                if n == 0 {
                    out.extend_from_slice(&b);
                    return Ok(Step::MsgType);
                }
                *self.buf = b;
                Step::Encodings(4 + 4 * n)
            }
            Step::Encodings(_) => {
                set_encodings(&b, out);
                Step::MsgType
            }
            Step::CutTextHead => match u32::from_be_bytes([b[4], b[5], b[6], b[7]]) {
                n if n > MAX_CUT_TEXT => return Err(TooLarge),
                0 => Step::MsgType,
                n => Step::Drop(u64::from(n)),
            },
            Step::AwaitResult | Step::Drop(_) => unreachable!("settled before"),
        };
        Ok(next)
    }

    fn version(&mut self, b: Vec<u8>, out: &mut Vec<u8>) -> Result<Step, FilterViolation> {
        let (major, minor) = parse_version(&b)?;
        let v = match (major, minor) {
            (3, 3) => Version::V3_3,
            (3, 7) => Version::V3_7,
            (3, 8) => Version::V3_8,
            _ => return Err(Unsupported("RFB version other than 3.3, 3.7, 3.8")),
        };
        if Some((major, minor)) > self.facts.server_version {
            return Err(Malformed("client RFB version above the server's"));
        }
        self.facts.version = Some(v);
        out.extend_from_slice(&b);
        Ok(Step::Security)
    }

    /// 3.7/3.8: the client's security type choice.
    fn security(&mut self, t: u8, out: &mut Vec<u8>) -> Result<Step, FilterViolation> {
        let offered = self.facts.offered.as_deref().unwrap_or_default();
        if !offered.contains(&t) {
            return Err(Malformed("security type not offered by the server"));
        }
        let next = match (t, self.facts.version) {
            (1, Some(Version::V3_7)) => Step::ClientInit,
            (1, _) => Step::AwaitResult,
            (2, _) => Step::AuthResponse,
            _ => return Err(Unsupported("VNC security type other than None or VNC auth")),
        };
        self.facts.security = Some(t);
        self.server.client_chose(self.facts, t);
        out.push(t);
        Ok(next)
    }
}

/// The step after a client message type byte.
fn message(t: u8) -> Result<Step, FilterViolation> {
    Ok(match t {
        0 => Step::Pass(20), // SetPixelFormat
        2 => Step::EncodingsHead,
        3 => Step::Pass(10), // FramebufferUpdateRequest
        4 => Step::Drop(7),  // KeyEvent
        5 => Step::Drop(5),  // PointerEvent
        6 => Step::CutTextHead,
        _ => return Err(Unsupported("VNC client message type")),
    })
}

/// Forwards SetEncodings without [`STRIPPED_ENCODINGS`].
fn set_encodings(b: &[u8], out: &mut Vec<u8>) {
    let kept: Vec<&[u8]> = b[4..]
        .chunks_exact(4)
        .filter(|e| {
            let e = i32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            !STRIPPED_ENCODINGS.contains(&e)
        })
        .collect();
    let n = u16::try_from(kept.len()).expect("at most the original count");
    out.extend_from_slice(&[2, 0]);
    out.extend_from_slice(&n.to_be_bytes());
    kept.iter().for_each(|e| out.extend_from_slice(e));
}

/// A ProtocolVersion message: `RFB xxx.yyy\n`.
fn parse_version(b: &[u8]) -> Result<(u16, u16), FilterViolation> {
    let num = |d: &[u8]| -> Option<u16> {
        d.iter().try_fold(0u16, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u16::from(c - b'0'))
        })
    };
    match b {
        [b'R', b'F', b'B', b' ', maj @ .., b'\n'] if maj.len() == 7 && maj[3] == b'.' => {
            match (num(&maj[..3]), num(&maj[4..])) {
                (Some(major), Some(minor)) => Ok((major, minor)),
                _ => Err(Malformed("invalid RFB ProtocolVersion")),
            }
        }
        _ => Err(Malformed("invalid RFB ProtocolVersion")),
    }
}

#[cfg(test)]
mod tests;
