//! HTTP/1.x request heads, shared by the `http` and `websocket` filters:
//! a strict incremental scanner (CRLF only, bounded) and the framing facts a
//! filter needs from a complete head (method, body length, upgrade).
//!
//! Strictness is deliberate: a filter that finds the end of a head or body
//! somewhere else than the backend does can be made to forward a request it
//! never checked (request smuggling). So bare CR or LF, obsolete line folding,
//! duplicate or non-numeric `Content-Length`, `Content-Length` together
//! with `Transfer-Encoding`, and a framing field spelled with `_` for `-`
//! (`Content_Length`, which some servers normalise and we would not) are
//! refused, not interpreted.

use super::FilterViolation::{self, Malformed, TooLarge, Unsupported};

/// Longest request head (request line, fields, final CRLF) accepted.
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head (or trailer section).
const MAX_FIELDS: usize = 100;
/// Fields that delimit a body: their `_` look-alikes are refused.
const FRAMING_FIELDS: [&str; 2] = ["content-length", "transfer-encoding"];
/// Fields some frameworks read as the request's real method.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Collects one head, byte by byte, enforcing CRLF line ends and the bound.
/// Empty lines before the request line are dropped (RFC 9112 §2.2).
#[derive(Default)]
pub(super) struct HeadScanner {
    buf: Vec<u8>,
    leading_cr: bool,
}

impl HeadScanner {
    /// Consumes bytes from `input`; `Ok(true)` once the head is complete
    /// (then [`bytes`](Self::bytes) holds it and `input` its remainder).
    pub(super) fn push(&mut self, input: &mut &[u8]) -> Result<bool, FilterViolation> {
        while let Some((&b, rest)) = input.split_first() {
            *input = rest;
            if self.buf.is_empty() && self.skip_empty_line(b)? {
                continue;
            }
            if self.buf.len() == MAX_HEAD {
                return Err(TooLarge);
            }
            self.buf.push(b);
            if line_byte(&self.buf)? && self.buf.ends_with(b"\r\n\r\n") {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Before the request line: true when `b` belonged to an empty line.
    fn skip_empty_line(&mut self, b: u8) -> Result<bool, FilterViolation> {
        match (self.leading_cr, b) {
            (false, b'\r') => self.leading_cr = true,
            (true, b'\n') => self.leading_cr = false,
            (true, _) => return Err(Malformed("bare CR before request line")),
            (false, b'\n') => return Err(Malformed("bare LF before request line")),
            (false, _) => return Ok(false),
        }
        Ok(true)
    }

    /// The complete head.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Gets ready for the next head, releasing memory kept by a large one.
    pub(super) fn reset(&mut self) {
        self.buf.clear();
        self.buf.shrink_to(4096);
    }
}

/// Checks the byte just pushed on `buf` against the CRLF rule; true when it
/// ended a line.
pub(super) fn line_byte(buf: &[u8]) -> Result<bool, FilterViolation> {
    let (last, prev) = match buf {
        [.., p, l] => (*l, Some(*p)),
        [l] => (*l, None),
        [] => return Ok(false),
    };
    match (prev, last) {
        (Some(b'\r'), b'\n') => Ok(true),
        (_, b'\n') => Err(Malformed("bare LF")),
        (Some(b'\r'), _) => Err(Malformed("bare CR")),
        _ => Ok(false),
    }
}

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What a filter needs to know about a complete request head.
#[derive(Debug)]
pub(super) struct RequestHead {
    pub(super) method: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(super) version: u8,
    pub(super) framing: Framing,
    /// An `Upgrade` field is present.
    pub(super) upgrade: bool,
    /// `Upgrade` lists the `websocket` token.
    pub(super) upgrade_websocket: bool,
    /// `Connection` lists the `upgrade` token.
    pub(super) connection_upgrade: bool,
    /// A method-override field (`X-HTTP-Method-Override`, …, or its `_`
    /// spelling) is present: the method line is not the whole story.
    pub(super) method_override: bool,
}

/// Parses a complete head as collected by [`HeadScanner`].
pub(super) fn parse_request(head: &[u8]) -> Result<RequestHead, FilterViolation> {
    if head.starts_with(b"PRI * HTTP/2.0") {
        return Err(Unsupported("HTTP/2"));
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(Malformed("incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(TooLarge),
        Err(httparse::Error::Version) => return Err(Unsupported("HTTP version")),
        Err(_) => return Err(Malformed("invalid request head")),
    }
    let (Some(method), Some(version)) = (req.method, req.version) else {
        return Err(Malformed("invalid request line"));
    };
    let mut out = RequestHead {
        method: method.to_owned(),
        version,
        framing: Framing::None,
        upgrade: false,
        upgrade_websocket: false,
        connection_upgrade: false,
        method_override: false,
    };
    let mut length = None;
    let mut chunked = None;
    for f in req.headers.iter() {
        let name = f.name;
        if name.contains('_') && FRAMING_FIELDS.iter().any(|n| same_field(name, n)) {
            return Err(Malformed("framing field spelled with '_'"));
        }
        out.method_override |= METHOD_OVERRIDES.iter().any(|n| same_field(name, n));
        if name.eq_ignore_ascii_case("content-length") {
            if length.replace(parse_length(f.value)?).is_some() {
                return Err(Malformed("duplicate content-length"));
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked.replace(trim(f.value)).is_some() {
                return Err(Malformed("duplicate transfer-encoding"));
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            out.upgrade = true;
            out.upgrade_websocket |= has_token(f.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            out.connection_upgrade |= has_token(f.value, "upgrade");
        }
    }
    out.framing = framing(version, length, chunked)?;
    Ok(out)
}

/// Whether field `name` is `canonical` (lowercase, with `-`) in the loose
/// reading some servers apply: case-insensitive, `_` taken for `-`.
fn same_field(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name.bytes().zip(canonical.bytes()).all(|(a, c)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            a == c
        })
}

/// RFC 9112 §6: a body is delimited by exactly one of the two fields.
fn framing(
    version: u8,
    length: Option<u64>,
    te: Option<&[u8]>,
) -> Result<Framing, FilterViolation> {
    match (length, te) {
        (Some(_), Some(_)) => Err(Malformed("both content-length and transfer-encoding")),
        (_, Some(_)) if version == 0 => Err(Malformed("transfer-encoding in HTTP/1.0")),
        (_, Some(te)) if te.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
        (_, Some(_)) => Err(Unsupported("transfer-encoding other than chunked")),
        (Some(0), None) | (None, None) => Ok(Framing::None),
        (Some(n), None) => Ok(Framing::Length(n)),
    }
}

/// `Content-Length`: 1*DIGIT (surrounding whitespace allowed), no lists.
fn parse_length(value: &[u8]) -> Result<u64, FilterViolation> {
    let v = trim(value);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(Malformed("invalid content-length"));
    }
    Ok(v.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

fn trim(v: &[u8]) -> &[u8] {
    let ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !ws(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !ws(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

/// Whether a comma-separated field value lists `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// Validates a chunked trailer section (fields then the empty line).
pub(super) fn check_trailer(block: &[u8]) -> Result<(), FilterViolation> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    match httparse::parse_headers(block, &mut fields) {
        Ok(httparse::Status::Complete((n, _))) if n == block.len() => Ok(()),
        Err(httparse::Error::TooManyHeaders) => Err(TooLarge),
        _ => Err(Malformed("invalid chunked trailer")),
    }
}
