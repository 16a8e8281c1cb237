//! The read-level filter for `websocket` services: the opening handshake
//! passes, then only the control frames that keep the connection healthy
//! (ping, pong, close); text and binary messages are dropped.
//!
//! The handshake must be a GET with `Upgrade: websocket` and
//! `Connection: upgrade` and no body; anything else closes the stream.
//! After it, client frames (RFC 6455 §5.2) are parsed strictly: masked,
//! 7/16/64-bit lengths, control frames unfragmented with at most 125 bytes of
//! payload and no RSV bits. Data frames may carry RSV bits (a negotiated
//! extension such as permessage-deflate); they are dropped unread, so only
//! the fragmentation rules are checked. Dropped frames are skipped, never
//! buffered, so their size is not bounded here.
//!
//! Nothing after the handshake passes before the server's `101`: RFC 6455
//! §4.1 has the client wait for the response, and the filter observes the
//! server's bytes before the client can read them, so a byte that arrives
//! earlier is refused. If the server answers anything but `101`, the
//! upgrade failed and any further client byte is refused (it would be plain
//! HTTP, which this filter does not vet). Ping payloads reach the server's
//! WebSocket library, not its application.
//!
//! A control frame passes as soon as its last byte arrived: an empty Close,
//! Ping or Pong is complete with its header.

use super::head::{self, Framing, HeadScanner};
use super::FilterViolation::{self, Malformed, Unsupported};
use super::{fill, latch, take, ByteFilter};

/// Longest control frame: 2 + 4 (mask) + 125 bytes of payload.
const MAX_CONTROL_FRAME: usize = 131;
/// Longest server status line read while waiting for the `101`.
const MAX_STATUS_LINE: usize = 1024;

/// Client->server filter for a `websocket` service at level `read`.
#[derive(Default)]
pub struct WebSocketReadFilter {
    state: State,
    /// A fragmented data message is open (continuations expected).
    in_message: bool,
    /// What the server answered the handshake so far.
    server: Server,
    failed: Option<FilterViolation>,
}

/// The server's answer to the opening handshake, from its status line.
enum Server {
    /// The status line so far (its bytes up to the first LF).
    Waiting(Vec<u8>),
    /// `101`: frames may flow.
    Switched,
    /// Anything else: the upgrade failed.
    Refused,
}

impl Default for Server {
    fn default() -> Server {
        Server::Waiting(Vec::new())
    }
}

impl Server {
    fn observe(&mut self, mut bytes: &[u8]) {
        let Server::Waiting(line) = self else { return };
        while let Some((&b, rest)) = bytes.split_first() {
            bytes = rest;
            if line.len() == MAX_STATUS_LINE {
                *self = Server::Refused;
                return;
            }
            line.push(b);
            if b == b'\n' {
                *self = match line.strip_prefix(b"HTTP/1.1 101") {
                    Some([b' ' | b'\r', ..]) => Server::Switched,
                    _ => Server::Refused,
                };
                return;
            }
        }
    }

    /// Whether client frames may pass now.
    fn check(&self) -> Result<(), FilterViolation> {
        match self {
            Server::Switched => Ok(()),
            Server::Waiting(_) => Err(Malformed("client bytes before the server's 101")),
            Server::Refused => Err(Unsupported("client bytes after a refused upgrade")),
        }
    }
}

impl WebSocketReadFilter {
    /// A filter at the start of a connection.
    pub fn new() -> WebSocketReadFilter {
        WebSocketReadFilter::default()
    }
}

impl ByteFilter for WebSocketReadFilter {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterViolation> {
        let (state, in_message, server) = (&mut self.state, &mut self.in_message, &self.server);
        latch(&mut self.failed, || {
            state.feed(in_message, server, input, out)
        })
    }

    fn observe_server(&mut self, bytes: &[u8]) {
        self.server.observe(bytes);
    }
}

enum State {
    Handshake(HeadScanner),
    /// Collecting a frame header: `want` is its full length once known.
    Header {
        buf: Vec<u8>,
        want: usize,
    },
    /// Collecting a whole control frame (`buf` holds its header so far).
    Control {
        buf: Vec<u8>,
        want: usize,
    },
    /// Skipping a data frame's payload.
    Drop {
        remaining: u64,
    },
}

impl Default for State {
    fn default() -> State {
        State::Handshake(HeadScanner::default())
    }
}

fn header_state() -> State {
    State::Header {
        buf: Vec::with_capacity(14),
        want: 2,
    }
}

impl State {
    fn feed(
        &mut self,
        in_message: &mut bool,
        server: &Server,
        mut input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FilterViolation> {
        while !input.is_empty() {
            if !matches!(self, State::Handshake(_)) {
                server.check()?;
            }
            match self {
                State::Handshake(scan) => {
                    if scan.push(&mut input)? {
                        check_upgrade(scan.bytes())?;
                        out.extend_from_slice(scan.bytes());
                        *self = header_state();
                    }
                }
                State::Header { buf, want } => {
                    if fill(buf, *want, &mut input) {
                        if let Some(next) = header_step(buf, in_message)? {
                            *self = next;
                            self.flush_complete_control(out);
                        } else {
                            *want = header_len(buf);
                        }
                    }
                }
                State::Control { buf, want } => {
                    if fill(buf, *want, &mut input) {
                        out.append(buf);
                        *self = header_state();
                    }
                }
                State::Drop { remaining } => {
                    take(remaining, &mut input);
                    if *remaining == 0 {
                        *self = header_state();
                    }
                }
            }
        }
        Ok(())
    }
}

impl State {
    /// Forwards a control frame that its header completed (empty payload):
    /// no further byte may come to push it out.
    fn flush_complete_control(&mut self, out: &mut Vec<u8>) {
        if let State::Control { buf, want } = self {
            if buf.len() == *want {
                out.append(buf);
                *self = header_state();
            }
        }
    }
}

/// The opening handshake (RFC 6455 §4.1) at read level.
fn check_upgrade(bytes: &[u8]) -> Result<(), FilterViolation> {
    let req = head::parse_request(bytes)?;
    if req.method != "GET" {
        return Err(FilterViolation::forbidden(&req.method));
    }
    if req.method_override {
        return Err(FilterViolation::forbidden("method-override"));
    }
    if !(req.upgrade_websocket && req.connection_upgrade) || req.version != 1 {
        return Err(Unsupported("not a WebSocket upgrade request"));
    }
    if req.framing != Framing::None {
        return Err(Malformed("body on a WebSocket upgrade request"));
    }
    Ok(())
}

/// Full header length (2, extended length, 4 mask bytes) from its first two
/// bytes.
fn header_len(first: &[u8]) -> usize {
    let ext = match first[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + 4
}

/// Called with 2 bytes, then with the full header. `None`: need the full
/// header; `Some`: the state for what follows it.
fn header_step(buf: &[u8], in_message: &mut bool) -> Result<Option<State>, FilterViolation> {
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    let len7 = b1 & 0x7f;
    if buf.len() == 2 {
        if b1 & 0x80 == 0 {
            return Err(Malformed("unmasked client frame"));
        }
        check_opcode(opcode, fin, b0 & 0x70, len7, in_message)?;
        return Ok(None);
    }
    if opcode >= 8 {
        let want = buf.len() + usize::from(len7);
        let mut frame = Vec::with_capacity(MAX_CONTROL_FRAME);
        frame.extend_from_slice(buf);
        return Ok(Some(State::Control { buf: frame, want }));
    }
    let remaining = match len7 {
        126 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        127 => {
            let n = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
            if n >> 63 != 0 {
                return Err(Malformed("frame length with the high bit set"));
            }
            n
        }
        n => u64::from(n),
    };
    Ok(Some(if remaining == 0 {
        header_state()
    } else {
        State::Drop { remaining }
    }))
}

/// Frame-type rules (RFC 6455 §5.4, §5.5), updating the fragmentation state.
fn check_opcode(
    opcode: u8,
    fin: bool,
    rsv: u8,
    len7: u8,
    in_message: &mut bool,
) -> Result<(), FilterViolation> {
    match opcode {
        0x8..=0xa => {
            if !fin || rsv != 0 {
                return Err(Malformed("fragmented control frame or RSV bits on it"));
            }
            if len7 > 125 {
                return Err(Malformed("control frame payload over 125 bytes"));
            }
            if opcode == 0x8 && len7 == 1 {
                return Err(Malformed("close frame with a 1-byte payload"));
            }
        }
        0x1 | 0x2 => {
            if *in_message {
                return Err(Malformed("new message inside a fragmented message"));
            }
            *in_message = !fin;
        }
        0x0 => {
            if !*in_message {
                return Err(Malformed("continuation frame outside a message"));
            }
            *in_message = !fin;
        }
        _ => return Err(Malformed("reserved opcode")),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
