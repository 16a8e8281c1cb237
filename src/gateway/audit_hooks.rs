//! Where the data path reports to the audit log: one method per event, so
//! the tunnel code names what happened and this file alone knows how it is
//! recorded (the hash-chained log in sled, appended by the audit writer's
//! thread; the log also emits tracing). Events carry the time they happened;
//! a failing append is logged and never stops traffic.
//!
//! What an unauthenticated peer causes (a session refused before a ticket
//! bound to its key verified, a push rejected on the tunnel port, garbage)
//! is only counted per source and minute (`audit::strangers`); the chain
//! keeps what authenticated peers and operators did.

use super::registry::{Session, StreamStats};
use super::stream::OpenRequest;
use super::GatewayError;
use crate::audit::{AuditLog, AuditWriter, Stranger, StrangerCounter};
use crate::clock::Clock;
use crate::config::Config;
use crate::consent::{Consent, ConsentState};
use crate::store::Store;
use crate::tlsid::Identity;
use edgegate_proto::audit::StrangerSummary;
use edgegate_proto::audit::{AuditEvent, CloseReason, Outcome};
use edgegate_proto::frame::Verdict;
use edgegate_proto::{DenyReason, Level};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Audit {
    writer: AuditWriter,
    /// Records are stamped with the gateway's floored now (DESIGN §3).
    now: Now,
    /// This minute's unauthenticated events.
    strangers: Arc<StrangerCounter>,
}

/// The gateway's notion of now: the clock floored by the store.
#[derive(Debug, Clone)]
struct Now {
    clock: Clock,
    store: Arc<Store>,
}

impl Now {
    fn get(&self) -> edgegate_proto::UnixTime {
        self.store.now(self.clock.wall())
    }
}

impl Audit {
    pub(crate) fn open(
        store: &Arc<Store>,
        config: &Config,
        clock: Clock,
        identity: &Identity,
    ) -> Result<Audit, GatewayError> {
        let log = AuditLog::open(store.db(), config.limits.audit_retention)
            .map_err(|e| GatewayError::Audit(e.to_string()))?
            .with_device_key(identity.public());
        let key = Some(identity.signing_key().clone());
        let writer = AuditWriter::start_signing(Arc::new(log), key)
            .map_err(|e| GatewayError::Audit(format!("starting the audit writer: {e}")))?;
        let audit = Audit {
            writer,
            now: Now {
                clock,
                store: store.clone(),
            },
            strangers: Arc::default(),
        };
        audit.flush_strangers_every_minute();
        Ok(audit)
    }

    /// A minute's counters are stored once it is over, even when no
    /// further event arrives to roll it.
    fn flush_strangers_every_minute(&self) {
        let (writer, now) = (self.writer.clone(), self.now.clone());
        let counter = Arc::downgrade(&self.strangers);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // The gateway is gone: so is the window.
                let Some(counter) = counter.upgrade() else {
                    return;
                };
                writer.strangers(counter.roll(now.get()));
            }
        });
    }

    /// Count one unauthenticated event from `source`.
    pub(crate) fn stranger(&self, source: IpAddr, what: Stranger) {
        let done = self.strangers.count(self.now.get(), source, what);
        self.writer.strangers(done);
    }

    /// The stored stranger summaries (newest `limit`) and the minute in
    /// progress.
    pub(crate) async fn strangers(
        &self,
        limit: usize,
    ) -> Result<Vec<StrangerSummary>, crate::audit::AuditError> {
        self.writer.sync().await;
        let log = self.log().clone();
        let mut out = tokio::task::spawn_blocking(move || log.strangers(limit))
            .await
            .unwrap_or_else(|e| Ok(panic_to_empty(e)))?;
        out.extend(self.strangers.snapshot());
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        Ok(out)
    }

    /// The log, for readers: call [`Audit::sync`] first to see every event
    /// queued so far.
    pub(crate) fn log(&self) -> &Arc<AuditLog> {
        self.writer.log()
    }

    /// Wait until every event queued so far is in the log.
    pub(crate) async fn sync(&self) {
        self.writer.sync().await;
    }

    /// Put every queued event and counter in the log, sign the head and
    /// make the log durable (shutdown).
    pub(crate) async fn flush(&self) -> Result<(), crate::audit::AuditError> {
        self.writer.strangers(self.strangers.drain());
        self.writer.sign_head().await;
        self.log().flush_async().await
    }

    /// Audit consent windows that run out (grants and revokes are audited
    /// where the operator's request is answered).
    pub(crate) fn watch_consent_expiry(&self, consent: &Consent) {
        let (writer, clock) = (self.writer.clone(), self.now.clone());
        let mut rx = consent.subscribe();
        tokio::spawn(async move {
            let mut before = *rx.borrow_and_update();
            while rx.changed().await.is_ok() {
                let now = *rx.borrow_and_update();
                let expired = matches!(before, ConsentState::Until(end) if end <= Instant::now());
                if now == ConsentState::Inactive && expired {
                    writer.append(clock.get(), AuditEvent::ConsentExpired);
                }
                before = now;
            }
        });
    }

    pub(crate) fn append(&self, event: AuditEvent) {
        self.writer.append(self.now.get(), event);
    }

    pub(crate) fn decision(
        &self,
        session: &Session,
        open: &OpenRequest,
        decision: Result<Level, &DenyReason>,
    ) {
        self.append(AuditEvent::Decision {
            session: session.id,
            user: Some(session.user.clone()),
            service: Some(open.service.clone()),
            destination: open.destination.clone(),
            outcome: match decision {
                Ok(level) => Outcome::Allow(level),
                Err(reason) => Outcome::Deny(*reason),
            },
        });
    }

    /// One service's decision in the session's `Welcome`.
    pub(crate) fn listing_decision(&self, session: &Session, service: &str, verdict: Verdict) {
        self.append(AuditEvent::Decision {
            session: session.id,
            user: Some(session.user.clone()),
            service: Some(service.to_string()),
            destination: None,
            outcome: match verdict {
                Verdict::Allow(level) => Outcome::Allow(level),
                Verdict::Deny(reason) => Outcome::Deny(reason),
            },
        });
    }

    pub(crate) fn stream_opened(&self, session: &Session, stats: &StreamStats) {
        self.append(AuditEvent::StreamOpen {
            session: session.id,
            user: session.user.clone(),
            service: stats.service.clone(),
            destination: stats.destination.clone(),
            level: stats.level,
        });
    }

    pub(crate) fn stream_closed(
        &self,
        session: &Session,
        stats: &StreamStats,
        reason: CloseReason,
    ) {
        self.append(AuditEvent::StreamClose {
            session: session.id,
            user: session.user.clone(),
            service: stats.service.clone(),
            destination: stats.destination.clone(),
            bytes_up: stats.up.load(Ordering::Relaxed),
            bytes_down: stats.down.load(Ordering::Relaxed),
            duration_ms: stats.started.elapsed().as_millis() as u64,
            reason,
        });
    }

    /// VPN flows refused (`vpn/denials.rs` bounds how often).
    pub(crate) fn flows_denied(
        &self,
        session: &Session,
        destination: String,
        reason: DenyReason,
        count: u64,
    ) {
        self.append(AuditEvent::FlowsDenied {
            session: session.id,
            user: session.user.clone(),
            destination,
            reason,
            count,
        });
    }

    /// A VPN flow ended: recorded as a stream of its service, its
    /// destination `PROTOCOL ADDRESS:PORT`.
    pub(crate) fn vpn_flow_closed(
        &self,
        session: &Session,
        flow: &super::vpn::Record,
        reason: CloseReason,
    ) {
        self.append(AuditEvent::StreamClose {
            session: session.id,
            user: session.user.clone(),
            service: flow.service.clone(),
            destination: Some(format!("{} {}", flow.protocol.as_str(), flow.destination)),
            bytes_up: flow.up,
            bytes_down: flow.down,
            duration_ms: flow.started.elapsed().as_millis() as u64,
            reason,
        });
    }

    pub(crate) fn session_opened(&self, session: &Session) {
        self.append(AuditEvent::SessionOpen {
            session: session.id,
            user: session.user.clone(),
            client_key: *session.cred.peer.key(),
            transport: session.transport,
            peer: session.remote.clone(),
        });
    }

    /// A refused session. Only one whose ticket verified and is bound to
    /// the peer's key is chained; anything else is a stranger, counted.
    pub(crate) fn session_refused(
        &self,
        authenticated: Option<&str>,
        remote: SocketAddr,
        reason: DenyReason,
    ) {
        match authenticated {
            Some(user) => self.refused_decision(user, reason),
            None => self.stranger(remote.ip(), Stranger::RefusedSession),
        }
    }

    fn refused_decision(&self, user: &str, reason: DenyReason) {
        self.append(AuditEvent::Decision {
            session: 0,
            user: Some(user.to_string()),
            service: None,
            destination: None,
            outcome: Outcome::Deny(reason),
        });
    }

    pub(crate) fn session_closed(&self, session: &Session, reason: CloseReason) {
        self.append(AuditEvent::SessionClose {
            session: session.id,
            user: session.user.clone(),
            reason,
            duration_ms: session.started.elapsed().as_millis() as u64,
        });
    }

    pub(crate) fn bundle_accepted(&self, serial: u64, issued_at: u64, not_after: u64) {
        self.append(AuditEvent::BundleAccepted {
            serial,
            issued_at,
            not_after,
        });
    }

    pub(crate) fn keys_accepted(
        &self,
        version: u64,
        root_rotated: bool,
        recovery: Option<edgegate_proto::audit::RecoveryApplied>,
    ) {
        self.append(AuditEvent::KeysAccepted {
            version,
            root_rotated,
            recovery,
        });
    }

    pub(crate) fn keys_rejected(&self, code: &str, message: &str) {
        self.append(AuditEvent::KeysRejected {
            code: code.to_string(),
            message: message.to_string(),
        });
    }

    pub(crate) fn bundle_rejected(&self, code: &str, message: &str, serial: Option<u64>) {
        self.append(AuditEvent::BundleRejected {
            code: code.to_string(),
            message: message.to_string(),
            serial,
        });
    }
}

fn panic_to_empty(e: tokio::task::JoinError) -> Vec<StrangerSummary> {
    tracing::error!("reading the strangers summaries failed: {e}");
    Vec::new()
}
