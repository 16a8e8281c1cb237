//! The read-level filter for `http` services: HTTP/1.x requests with method
//! GET, HEAD or OPTIONS pass unchanged; anything else closes the stream
//! before a byte of it is forwarded. So does a method-override field
//! (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`, any case,
//! `_` for `-`): frameworks that honour it would run a GET as a write.
//! A refused write is answered `403 Forbidden` by the gateway
//! ([`ByteFilter::refusal_answer`]), not cut without a word.
//!
//! Handles keep-alive and pipelining: requests are framed one after another
//! by their own `Content-Length` or chunked encoding (RFC 9112 §6), the way
//! the backend frames them. Bodies are allowed (a GET may carry one) up to
//! [`MAX_BODY`]. Chunked bodies are parsed strictly and forwarded as they
//! are, so the filter never loses its place in the stream. Any `Upgrade`
//! request is refused: after a protocol switch the bytes are no longer HTTP
//! (WebSocket services have their own filter).
//!
//! Residual risk of request bodies: a backend that ignores the framing of a
//! GET body (or does not implement chunked requests) reads the body as the
//! next request, which this filter never checked. Browsers never send such
//! bodies; [`HttpReadFilter::without_bodies`] refuses them for deployments
//! that cannot vouch for their backends' parsers.

use super::head::{self, Framing, HeadScanner, MAX_HEAD};
use super::FilterViolation::{self, Malformed, TooLarge, Unsupported};
use super::{latch, take, ByteFilter};

/// Largest request body accepted on a read-level request.
pub const MAX_BODY: u64 = 1024 * 1024;
/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Methods that only observe.
const READ_METHODS: [&str; 3] = ["GET", "HEAD", "OPTIONS"];

/// Client->server filter for an `http` service at level `read`.
#[derive(Default)]
pub struct HttpReadFilter {
    state: State,
    no_bodies: bool,
    failed: Option<FilterViolation>,
}

impl HttpReadFilter {
    /// A filter at the start of a connection; bodies up to [`MAX_BODY`].
    pub fn new() -> HttpReadFilter {
        HttpReadFilter::default()
    }

    /// A filter that also refuses any request body (`Unsupported`).
    pub fn without_bodies() -> HttpReadFilter {
        HttpReadFilter {
            no_bodies: true,
            ..HttpReadFilter::default()
        }
    }
}

impl ByteFilter for HttpReadFilter {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterViolation> {
        let (state, no_bodies) = (&mut self.state, self.no_bodies);
        latch(&mut self.failed, || state.feed(no_bodies, input, out))
    }

    /// A write (method, upgrade or method override) is answered `403`; a
    /// request the filter could not frame gets no answer, since the client
    /// and the filter may not agree on where it ends.
    fn refusal_answer(&self) -> Option<Vec<u8>> {
        match self.failed {
            Some(FilterViolation::ForbiddenMethod(_)) => Some(forbidden_response()),
            _ => None,
        }
    }
}

/// What the client reads instead of an answer to a refused write. Plain
/// text, not HTML: it is the same for curl and a browser, and nothing of the
/// request is echoed back.
const FORBIDDEN_BODY: &str = "403 Forbidden: this edgegate access is read-only. \
Only GET, HEAD and OPTIONS requests reach the device; ask for write access \
to change anything.\n";

/// The complete `403` response, ending the connection.
pub(crate) fn forbidden_response() -> Vec<u8> {
    format!(
        "HTTP/1.1 403 Forbidden\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Cache-Control: no-store\r\n\
         Connection: close\r\n\r\n{FORBIDDEN_BODY}",
        FORBIDDEN_BODY.len()
    )
    .into_bytes()
}

/// Where in the request stream the filter is.
enum State {
    Head(HeadScanner),
    Body { remaining: u64 },
    Chunked(Chunked),
}

impl Default for State {
    fn default() -> State {
        State::Head(HeadScanner::default())
    }
}

impl State {
    fn feed(
        &mut self,
        no_bodies: bool,
        mut input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FilterViolation> {
        while !input.is_empty() {
            let next = match self {
                State::Head(scan) => {
                    if !scan.push(&mut input)? {
                        return Ok(());
                    }
                    let framing = check_request(scan.bytes(), no_bodies)?;
                    out.extend_from_slice(scan.bytes());
                    scan.reset();
                    body_state(framing)
                }
                State::Body { remaining } => {
                    out.extend_from_slice(take(remaining, &mut input));
                    if *remaining > 0 {
                        return Ok(());
                    }
                    None
                }
                State::Chunked(c) => {
                    if !c.feed(&mut input, out)? {
                        return Ok(());
                    }
                    None
                }
            };
            *self = next.unwrap_or_default();
        }
        Ok(())
    }
}

/// The state after a head with this framing; `None` for the next head.
fn body_state(framing: Framing) -> Option<State> {
    match framing {
        Framing::None => None,
        Framing::Length(n) => Some(State::Body { remaining: n }),
        Framing::Chunked => Some(State::Chunked(Chunked::default())),
    }
}

/// The read-level verdict on one complete request head.
fn check_request(bytes: &[u8], no_bodies: bool) -> Result<Framing, FilterViolation> {
    let req = head::parse_request(bytes)?;
    if !READ_METHODS.contains(&req.method.as_str()) {
        return Err(FilterViolation::forbidden(&req.method));
    }
    if req.upgrade {
        return Err(FilterViolation::forbidden("upgrade"));
    }
    if req.method_override {
        return Err(FilterViolation::forbidden("method-override"));
    }
    match req.framing {
        Framing::Length(_) | Framing::Chunked if no_bodies => {
            Err(Unsupported("request body at read level"))
        }
        Framing::Length(n) if n > MAX_BODY => Err(TooLarge),
        f => Ok(f),
    }
}

/// A chunked body (RFC 9112 §7.1): size lines and trailers are checked whole
/// before they pass; chunk data streams through.
#[derive(Default)]
struct Chunked {
    part: Part,
    /// The size line or trailer section being collected.
    line: Vec<u8>,
    /// Data bytes seen so far in this body.
    total: u64,
}

#[derive(Default)]
enum Part {
    #[default]
    SizeLine,
    Data {
        remaining: u64,
    },
    /// The CRLF after chunk data; `cr` once the CR passed.
    DataEnd {
        cr: bool,
    },
    Trailer,
}

impl Chunked {
    /// Consumes body bytes; true when the body is complete.
    fn feed(&mut self, input: &mut &[u8], out: &mut Vec<u8>) -> Result<bool, FilterViolation> {
        while !input.is_empty() {
            match &mut self.part {
                Part::SizeLine => self.size_line(input, out)?,
                Part::Data { remaining } => {
                    out.extend_from_slice(take(remaining, input));
                    if *remaining == 0 {
                        self.part = Part::DataEnd { cr: false };
                    }
                }
                Part::DataEnd { cr } => {
                    let b = input[0];
                    *input = &input[1..];
                    match (*cr, b) {
                        (false, b'\r') => *cr = true,
                        (true, b'\n') => self.part = Part::SizeLine,
                        _ => return Err(Malformed("chunk data not followed by CRLF")),
                    }
                    out.push(b);
                }
                Part::Trailer => {
                    if self.trailer(input, out)? {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    fn size_line(&mut self, input: &mut &[u8], out: &mut Vec<u8>) -> Result<(), FilterViolation> {
        while let Some((&b, rest)) = input.split_first() {
            *input = rest;
            if self.line.len() == MAX_CHUNK_LINE {
                return Err(TooLarge);
            }
            self.line.push(b);
            if head::line_byte(&self.line)? {
                let size = chunk_size(&self.line[..self.line.len() - 2])?;
                self.total = self.total.saturating_add(size);
                if self.total > MAX_BODY {
                    return Err(TooLarge);
                }
                out.append(&mut self.line);
                self.part = match size {
                    0 => Part::Trailer,
                    n => Part::Data { remaining: n },
                };
                return Ok(());
            }
        }
        Ok(())
    }

    /// Collects the trailer section; true once it (and the body) ended.
    fn trailer(&mut self, input: &mut &[u8], out: &mut Vec<u8>) -> Result<bool, FilterViolation> {
        while let Some((&b, rest)) = input.split_first() {
            *input = rest;
            if self.line.len() == MAX_HEAD {
                return Err(TooLarge);
            }
            self.line.push(b);
            let ended = head::line_byte(&self.line)?
                && (self.line == b"\r\n" || self.line.ends_with(b"\r\n\r\n"));
            if ended {
                head::check_trailer(&self.line)?;
                out.append(&mut self.line);
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// `chunk-size [ chunk-ext ]` without the CRLF: hex digits, then optionally
/// whitespace and `;` extensions of visible characters, spaces and tabs.
fn chunk_size(line: &[u8]) -> Result<u64, FilterViolation> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(Malformed("invalid chunk size"));
    }
    let ext = &line[digits..];
    let ext = &ext[ext
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count()..];
    let ext_ok = ext.is_empty()
        || (ext[0] == b';'
            && ext
                .iter()
                .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\t'));
    if !ext_ok {
        return Err(Malformed("invalid chunk extension"));
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| Malformed("invalid chunk size"))?;
    u64::from_str_radix(hex, 16).map_err(|_| Malformed("invalid chunk size"))
}

#[cfg(test)]
mod tests;
