//! Refused VPN flows in the audit log without letting a scan flood it: a
//! session's first refusal is recorded at once; the refusals of the second
//! after it are counted and recorded as one (`AuditEvent::FlowsDenied`,
//! `count`), then the next refusal opens a new second. At most two records
//! a second per session, whatever the engineer sends.

use crate::gateway::registry::Session;
use crate::gateway::Gateway;
use edgegate_proto::frame::FlowProtocol;
use edgegate_proto::DenyReason;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// How long refusals are counted into one record.
const WINDOW: Duration = Duration::from_secs(1);

/// A session's refusals not yet recorded.
#[derive(Debug, Default)]
pub(crate) struct Denials {
    /// When the last record was written.
    since: Option<Instant>,
    /// The first refusal counted since then, and how many.
    first: Option<(String, DenyReason)>,
    count: u64,
}

impl Denials {
    /// One flow refused.
    pub(crate) fn deny(
        &mut self,
        gw: &Gateway,
        session: &Session,
        protocol: FlowProtocol,
        dst: SocketAddr,
        reason: DenyReason,
    ) {
        let now = Instant::now();
        let what = format!("{} {dst}", protocol.as_str());
        if self.since.is_some_and(|t| now < t + WINDOW) {
            self.first.get_or_insert((what, reason));
            self.count += 1;
            return;
        }
        self.flush(gw, session);
        gw.audit.flows_denied(session, what, reason, 1);
        self.since = Some(now);
    }

    /// When the counted refusals are due to be recorded.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.since.filter(|_| self.count > 0).map(|t| t + WINDOW)
    }

    /// Record the counted refusals, if any.
    pub(crate) fn flush(&mut self, gw: &Gateway, session: &Session) {
        if let Some((what, reason)) = self.first.take() {
            gw.audit.flows_denied(session, what, reason, self.count);
            self.since = Some(Instant::now());
        }
        self.count = 0;
    }
}
