//! Read-level stream filters: what an engineer allowed only to observe may send.
//!
//! DESIGN §2: `read` means observe only — for `http` services GET, HEAD and
//! OPTIONS; for `vnc`, view-only. The gateway proxies raw bytes, so at level
//! `read` it passes the client->server direction through a [`ByteFilter`].
//!
//! This module owns the filters and nothing else: they are pure, incremental
//! state machines with no I/O and no clock. Bytes may arrive split at any
//! boundary; the concatenated output (and the error, if any) does not depend
//! on how the input was split. A filter forwards a protocol unit only once it
//! has been checked, so the bytes of a refused unit never reach the backend.
//!
//! Two outcomes for a client message that read level does not allow:
//! - *dropped*: the protocol frames it exactly and the backend does not need
//!   it (VNC key/pointer/clipboard events, WebSocket data frames); the stream
//!   continues.
//! - *refused* (an `Err`): the message would change state on the backend (an
//!   HTTP POST), or the filter cannot frame what follows (unknown message
//!   types, unsupported security types, malformed framing). The stream must
//!   be closed; an HTTP write is first answered `403 Forbidden` (see
//!   [`ByteFilter::refusal_answer`]) so a browser shows why instead of an
//!   empty reply, and does not retry the request.
//!
//! `vpn` services carry arbitrary IP traffic: no filter can tell reading from
//! writing there, so [`read_level_supported`] is false and the gateway refuses
//! a `vpn` stream allowed only at level `read` (fail closed).

use edgegate_proto::bundle::ServiceKind;

mod head;
pub mod http;
pub mod vnc;
pub mod websocket;

#[cfg(test)]
mod tests;

pub use http::HttpReadFilter;
pub use vnc::VncReadFilter;
pub use websocket::WebSocketReadFilter;

/// A client->server filter for one stream.
///
/// Contract for the gateway:
/// - call [`feed`](ByteFilter::feed) with every client->server chunk and write
///   what it appends to `out` to the backend;
/// - call [`observe_server`](ByteFilter::observe_server) with every
///   server->client chunk *before* writing that chunk to the client (VNC needs
///   the server's handshake to frame the client's bytes; causality then
///   guarantees the filter saw what the client is answering);
/// - on `Err`, close the stream with the violation as the logged reason.
///   `out` then holds only bytes of messages that passed before the offending
///   one (never any byte of it); writing them before closing is allowed.
///   Once it has failed, a filter fails every later call with the same error;
/// - after an `Err`, if [`refusal_answer`](ByteFilter::refusal_answer) gives
///   bytes, send them to the client *after* the server's answers to every
///   message that passed (the protocol's way of saying no, e.g. an HTTP
///   `403`), then end the stream normally; without them, close it.
pub trait ByteFilter: Send {
    /// Feed client->server bytes; append what may pass to `out`.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterViolation>;

    /// Observe server->client bytes (never modified, never forwarded by the
    /// filter). Most filters do not need them.
    fn observe_server(&mut self, _bytes: &[u8]) {}

    /// Once [`feed`](ByteFilter::feed) failed: what the client is told in
    /// place of the server's answer to the refused message, if the protocol
    /// has a way to refuse one. `None` before a failure.
    fn refusal_answer(&self) -> Option<Vec<u8>> {
        None
    }
}

/// Why a filtered stream must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterViolation {
    /// A request that read level does not allow (an HTTP method other than
    /// GET/HEAD/OPTIONS, or `upgrade` for a protocol switch).
    #[error("not allowed at read level: {0}")]
    ForbiddenMethod(String),
    /// The client's bytes break the protocol's framing rules.
    #[error("malformed client stream: {0}")]
    Malformed(&'static str),
    /// Valid protocol, but the filter cannot frame or vet it.
    #[error("unsupported at read level: {0}")]
    Unsupported(&'static str),
    /// A head, line or message over the filter's bounds.
    #[error("client message over the read-level filter's size limit")]
    TooLarge,
}

impl FilterViolation {
    /// A stable short name for audit records.
    pub fn code(&self) -> &'static str {
        match self {
            FilterViolation::ForbiddenMethod(_) => "forbidden-method",
            FilterViolation::Malformed(_) => "malformed",
            FilterViolation::Unsupported(_) => "unsupported",
            FilterViolation::TooLarge => "too-large",
        }
    }

    /// A `ForbiddenMethod` safe to log: token characters only, at most 32.
    pub(crate) fn forbidden(method: &str) -> FilterViolation {
        let clean: String = method
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(32)
            .collect();
        FilterViolation::ForbiddenMethod(clean)
    }
}

/// Whether a stream of this kind can be filtered to level `read`.
///
/// False for `vpn`: the gateway must refuse a `vpn` stream whose decision is
/// `Allow(Read)` instead of passing it unfiltered.
pub fn read_level_supported(kind: ServiceKind) -> bool {
    for_read_level(kind).is_some()
}

/// The client->server filter for a stream of `kind` allowed at level `read`;
/// `None` when there is none (`vpn`; see [`read_level_supported`]).
pub fn for_read_level(kind: ServiceKind) -> Option<Box<dyn ByteFilter>> {
    match kind {
        // Observe-only traffic has no business sending bodies, and a backend
        // that mis-frames a GET body (common on embedded HMI servers) would
        // read it as a request the filter never saw: refuse bodies outright.
        ServiceKind::Http => Some(Box::new(HttpReadFilter::without_bodies())),
        ServiceKind::Websocket => Some(Box::new(WebSocketReadFilter::new())),
        ServiceKind::Vnc => Some(Box::new(VncReadFilter::new())),
        ServiceKind::Vpn => None,
    }
}

/// Latches the first violation: later calls fail with the same error.
fn latch(
    failed: &mut Option<FilterViolation>,
    step: impl FnOnce() -> Result<(), FilterViolation>,
) -> Result<(), FilterViolation> {
    if let Some(e) = failed {
        return Err(e.clone());
    }
    step().inspect_err(|e| *failed = Some(e.clone()))
}

/// Moves bytes from `input` into `buf` until it holds `want`; true when full.
fn fill(buf: &mut Vec<u8>, want: usize, input: &mut &[u8]) -> bool {
    let take = want.saturating_sub(buf.len()).min(input.len());
    buf.extend_from_slice(&input[..take]);
    *input = &input[take..];
    buf.len() == want
}

/// Consumes up to `*remaining` bytes of `input`, returning them.
fn take<'a>(remaining: &mut u64, input: &mut &'a [u8]) -> &'a [u8] {
    let n = usize::try_from(*remaining)
        .unwrap_or(usize::MAX)
        .min(input.len());
    let (head, rest) = input.split_at(n);
    *remaining -= n as u64;
    *input = rest;
    head
}
