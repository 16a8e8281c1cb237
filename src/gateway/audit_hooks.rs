//! Where the data path reports to the audit log: one method per event, so
//! the tunnel code names what happened and this file alone knows how it is
//! recorded (the hash-chained log in sled, and tracing).

use super::registry::{Session, StreamStats};
use super::stream::OpenRequest;
use super::GatewayError;
use crate::config::Config;
use crate::store::Store;
use edgegate_proto::{DenyReason, Level};
use std::sync::atomic::Ordering;

/// Why a stream ended, as audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// Both sides finished.
    Finished,
    /// A re-decision denied it.
    Denied(DenyReason),
    /// The session was killed or the daemon stopped.
    Killed,
    /// A read-level filter refused the client's bytes.
    ReadOnlyViolation,
    /// A socket failed.
    Error,
}

impl CloseReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::Finished => "finished",
            CloseReason::Denied(r) => r.as_str(),
            CloseReason::Killed => "killed",
            CloseReason::ReadOnlyViolation => "read-only-violation",
            CloseReason::Error => "error",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Audit {}

impl Audit {
    pub(crate) fn open(_store: &Store, _config: &Config) -> Result<Audit, GatewayError> {
        Ok(Audit {})
    }

    pub(crate) fn decision(
        &self,
        session: &Session,
        open: &OpenRequest,
        decision: Result<Level, &DenyReason>,
    ) {
        match decision {
            Ok(level) => tracing::info!(
                session = session.id, user = %session.user, service = %open.service,
                destination = ?open.destination, %level, "stream allowed"
            ),
            Err(reason) => tracing::info!(
                session = session.id, user = %session.user, service = %open.service,
                destination = ?open.destination, %reason, "stream denied"
            ),
        }
    }

    pub(crate) fn stream_closed(
        &self,
        session: &Session,
        stats: &StreamStats,
        reason: CloseReason,
    ) {
        tracing::info!(
            session = session.id,
            user = %session.user,
            service = %stats.service,
            destination = ?stats.destination,
            bytes_up = stats.up.load(Ordering::Relaxed),
            bytes_down = stats.down.load(Ordering::Relaxed),
            duration_ms = stats.started.elapsed().as_millis() as u64,
            reason = reason.as_str(),
            "stream closed"
        );
    }

    pub(crate) fn session_opened(&self, session: &Session) {
        tracing::info!(session = session.id, user = %session.user,
            transport = session.transport.as_str(), "session opened");
    }

    pub(crate) fn session_refused(&self, user: Option<&str>, reason: DenyReason) {
        tracing::info!(user = user.unwrap_or("?"), %reason, "session refused");
    }

    pub(crate) fn session_closed(&self, session: &Session) {
        tracing::info!(session = session.id, user = %session.user,
            duration_ms = session.started.elapsed().as_millis() as u64, "session closed");
    }

    pub(crate) fn session_killed(&self, id: u64) {
        tracing::info!(session = id, "session killed");
    }

    pub(crate) fn bundle_accepted(&self, serial: u64) {
        tracing::info!(serial, "bundle accepted");
    }

    pub(crate) fn bundle_rejected(&self, code: &str, message: &str) {
        tracing::warn!(code, message, "bundle rejected");
    }
}
