//! The local control socket: the daemon's server side, the client used by
//! `edgegate status` and friends, and the [`ControlHandler`] trait through
//! which the gateway answers.
//!
//! The server owns the socket file (stale-file removal, mode 0660, group
//! ownership), the per-connection permission check on SO_PEERCRED, framing
//! and size caps. What a request *means* (status, sessions, kill, consent,
//! bundle push, audit) is the handler's: this module never touches the
//! store, the policy or the sessions. Message types live in
//! `edgegate_proto::control`.

pub(crate) mod access;
mod client;
pub(crate) mod frame;
mod server;

pub use access::PeerCred;
pub use client::{Client, ClientError};
pub use edgegate_proto::control::{
    BundleStatus, ConsentInfo, PushResult, Request, Response, SessionInfo, StatusInfo, StreamInfo,
};
pub use server::ControlServer;

use crate::audit::AuditLog;
use edgegate_proto::control::MAX_AUDIT_BATCH;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed, sendable future (what [`ControlHandler::handle`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Answers control requests; implemented by the gateway.
///
/// Called only for peers that passed the permission check, once per
/// request, concurrently across connections. Every request gets exactly one
/// response; failures are `Response::Error(one line)`. Expected answers:
///
/// - `Status` → `Status(StatusInfo)`; `now` is the floored wall clock, and
///   `consent` can come from [`Consent::info`](crate::consent::Consent::info).
/// - `Sessions` → `Sessions(..)`; `Kill{id}` → `Killed(existed)`, closing
///   the session's streams with `CloseReason::Killed` (audited).
/// - `Audit{..}` / `AuditVerify` → [`audit_response`] / [`audit_verify_response`].
/// - `ConsentGrant{secs}` / `ConsentRevoke` → `Consent(info after)`, audited
///   as `ConsentGranted{until, by_uid: peer.uid}` / `ConsentRevoked`.
/// - `PushBundle{bytes}` → `Push(..)`: the same accept path as a push over
///   the tunnel port (verify, compile, store, swap), audited either way.
pub trait ControlHandler: Send + Sync + 'static {
    /// Answer one request from `peer`.
    fn handle(&self, req: Request, peer: PeerCred) -> BoxFuture<'_, Response>;
}

/// The standard answer to `Request::Audit`, read off the blocking pool.
pub async fn audit_response(log: Arc<AuditLog>, since: Option<u64>, limit: u32) -> Response {
    let limit = limit.min(MAX_AUDIT_BATCH) as usize;
    let res = tokio::task::spawn_blocking(move || log.list(since, limit)).await;
    match res {
        Ok(Ok(records)) => Response::Audit(records),
        Ok(Err(e)) => Response::Error(e.to_string()),
        Err(e) => Response::Error(format!("audit listing failed: {e}")),
    }
}

/// The standard answer to `Request::AuditVerify`, run off the blocking pool.
pub async fn audit_verify_response(log: Arc<AuditLog>) -> Response {
    match tokio::task::spawn_blocking(move || log.verify()).await {
        Ok(result) => Response::AuditVerify(result),
        Err(e) => Response::Error(format!("audit verification failed: {e}")),
    }
}

#[cfg(test)]
mod tests;
