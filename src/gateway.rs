//! The daemon's core: the state every tunnel shares and the paths that
//! change it.
//!
//! Owns the store, the published policy (a `watch` channel carrying the
//! compiled [`PolicyIndex`] of the bundle in force), site consent, the
//! session registry, the clock and the audit hooks. One function,
//! `Gateway::authorize` (`authorize.rs`), admits every session and stream
//! and re-checks them: every live session and stream waits on the policy
//! and consent channels, its session's end and its own time deadline, and
//! runs it again whenever one fires (`redecide.rs`).
//!
//! Sockets are accepted in `quic.rs` and `tls.rs` and served, the same on
//! both transports, in `connection.rs`; the bundle accept path
//! is `push.rs`; the control socket's view is `control.rs`. Deciding is the
//! policy module's business: this module only gathers the inputs.

mod audit_hooks;
mod authorize;
mod connection;
mod control;
mod health;
mod keys;
mod local_addrs;
pub(crate) mod pending;
mod push;
mod quic;
mod redecide;
mod registry;
mod reload;
mod session;
mod stream;
mod tls;
mod uplink;
mod vpn;
pub use uplink::backoff as relay_backoff;

pub use authorize::Credentials;
pub use control::ControlView;
pub use reload::Reloaded;

use crate::clock::Clock;
use crate::config::Config;
use crate::consent::Consent;
use crate::policy::PolicyIndex;
use crate::store::Store;
use crate::tlsid::Identity;
use edgegate_proto::{UnixTime, VerifiedBundle};
use registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::watch;

/// The bundle in force, compiled. The decoded bundle is not kept: the index
/// carries everything sessions and status need (names, logout periods,
/// serial and validity), and the store keeps the signed bytes on disk.
#[derive(Debug)]
pub struct Active {
    /// The compiled index every decision uses.
    pub index: PolicyIndex,
}

/// Shared daemon state. Build it once, share it behind an `Arc`.
pub struct Gateway {
    /// Swapped whole by a reload (`reload.rs`); read with `config()`.
    config: std::sync::RwLock<Arc<Config>>,
    /// Wall time; `now()` floors it with the store's time floor.
    clock: Clock,
    /// Bumped when the trusted keys change (a reload, a key statement):
    /// tickets are verified again.
    trust_epoch: AtomicU64,
    store: Arc<Store>,
    identity: Identity,
    consent: Arc<Consent>,
    policy: watch::Sender<Option<Arc<Active>>>,
    registry: Registry,
    /// One bundle install at a time, so publish order follows store order:
    /// a push finding it held is refused `busy` (a reload waits for it).
    push_lock: tokio::sync::Mutex<()>,
    /// One bundle-sized push body read from the network at a time
    /// (`connection.rs`).
    push_slot: Arc<tokio::sync::Semaphore>,
    audit: audit_hooks::Audit,
    /// The router's own addresses (refused as vpn destinations).
    local: Arc<local_addrs::Local>,
    /// The VPN addresses of the sessions that opened a VPN.
    vpn_addresses: Arc<vpn::Addresses>,
    shutdown: watch::Sender<bool>,
    /// The watchdog's probe in flight, if any.
    probe: health::ProbeSlot,
    /// Told when a stream ends or a session opens or ends, for
    /// `trim_when_quiet`.
    churned: tokio::sync::Notify,
    /// The addresses actually bound (QUIC, TLS), once listening.
    bound: std::sync::OnceLock<(Option<std::net::SocketAddr>, Option<std::net::SocketAddr>)>,
}

/// How long after the last stream ended or session came or went, with no
/// stream open, the freed memory is trimmed (`Gateway::trim_when_quiet`;
/// the relay waits as long after registrations).
const TRIM_QUIET: std::time::Duration = std::time::Duration::from_secs(1);

/// Why the gateway could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The stored bundle verified but does not compile.
    #[error("stored bundle does not compile: {0}")]
    Compile(#[from] crate::policy::CompileError),
    /// The audit log could not be opened.
    #[error("audit log: {0}")]
    Audit(String),
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("device", &self.config().device_id)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Assemble the gateway from a validated config, the opened store and
    /// the stored bundle (already verified and checked by the store).
    pub fn new(
        config: Config,
        store: Store,
        stored: Option<VerifiedBundle>,
        identity: Identity,
    ) -> Result<Arc<Gateway>, GatewayError> {
        Gateway::with_clock(config, store, stored, identity, Clock::system())
    }

    /// [`Gateway::new`] with the wall clock as an input (tests run it on
    /// tokio's paused time with [`Clock::following_tokio`]).
    pub fn with_clock(
        config: Config,
        store: Store,
        stored: Option<VerifiedBundle>,
        identity: Identity,
        clock: Clock,
    ) -> Result<Arc<Gateway>, GatewayError> {
        let active = match stored {
            Some(bundle) => {
                let index = PolicyIndex::compile(&bundle)?;
                Some(Arc::new(Active { index }))
            }
            None => None,
        };
        let store = Arc::new(store);
        let audit = audit_hooks::Audit::open(&store, &config, clock, &identity)?;
        let consent = Arc::new(Consent::new());
        tokio::spawn(consent.clone().run_expiry());
        audit.watch_consent_expiry(&consent);
        let registry = Registry::default();
        // Tickets of sessions killed before a restart stay refused.
        store.start_clock(clock.wall());
        let now = store.now(clock.wall());
        match store.barred_tickets(now) {
            Ok(barred) => barred.into_iter().for_each(|t| registry.bar(t)),
            Err(e) => tracing::warn!("store: reading the killed sessions' tickets: {e}"),
        }
        Ok(Arc::new(Gateway {
            registry,
            policy: watch::channel(active).0,
            push_lock: tokio::sync::Mutex::new(()),
            push_slot: Arc::new(tokio::sync::Semaphore::new(1)),
            shutdown: watch::channel(false).0,
            bound: std::sync::OnceLock::new(),
            churned: tokio::sync::Notify::new(),
            probe: health::ProbeSlot::default(),
            config: std::sync::RwLock::new(Arc::new(config)),
            clock,
            trust_epoch: AtomicU64::new(0),
            store,
            identity,
            consent,
            audit,
            local: local_addrs::Local::start(),
            vpn_addresses: Arc::default(),
        }))
    }

    /// The validated configuration in force (a reload may swap it).
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The device's TLS identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The bundle in force, if any.
    pub fn active(&self) -> Option<Arc<Active>> {
        self.policy.borrow().clone()
    }

    /// Find user `id` in the bundle in force and take what the caller needs
    /// from the compiled index; `None` with no bundle or no such user.
    pub(crate) fn active_user<R>(
        &self,
        id: &str,
        f: impl FnOnce(&PolicyIndex, &str) -> Option<R>,
    ) -> Option<R> {
        let active = self.active()?;
        f(&active.index, id)
    }

    /// The daemon's notion of now: the wall clock, never below the time floor.
    pub fn now(&self) -> UnixTime {
        self.store.now(self.clock.wall())
    }

    /// The wall clock as it reads, unfloored (what a bundle's acceptance
    /// compares against: the store floors it itself).
    pub(crate) fn wall(&self) -> UnixTime {
        self.clock.wall()
    }

    /// Site consent.
    pub fn consent(&self) -> &Consent {
        &self.consent
    }

    /// Live sessions.
    pub fn sessions(&self) -> Vec<edgegate_proto::control::SessionInfo> {
        self.registry.snapshot()
    }

    /// Kill a session: every stream of it is closed at once, and its ticket
    /// is refused from then on, across restarts too (until it expires).
    pub fn kill(&self, id: u64) -> bool {
        let Some(barred) = self.registry.kill(id) else {
            return false;
        };
        if let Some((ticket, until)) = barred {
            if let Err(e) = self.store.bar_ticket(ticket, until) {
                tracing::warn!(
                    "kill: the ticket of session {id} is refused, but only until restart: {e}"
                );
            }
        }
        true
    }

    /// Ask every session to end and stop accepting new ones.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.registry.end_all();
    }

    /// Whether shutdown was asked for, as a receiver to wait on.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// How many sessions are live.
    pub fn session_count(&self) -> usize {
        self.registry.len()
    }

    /// A stream of `session` has ended: its slot is free again, and the
    /// memory trim (`trim_when_quiet`) is told.
    pub(crate) fn end_stream(&self, session: &registry::Session, id: u64) {
        session.remove_stream(id);
        self.churned();
    }

    /// Buffers were freed in bulk (a stream ended, a session's handshake
    /// or its end): tell `trim_when_quiet`.
    pub(crate) fn churned(&self) {
        self.churned.notify_one();
    }

    /// Hand freed memory back to the kernel once no stream is open and
    /// [`TRIM_QUIET`] has passed since a stream ended or a session came or
    /// went (at most once per `TRIM_QUIET`). While streams run, each heap
    /// keeps up to `memory::Keep::router` of freed buffers for their next
    /// frames; an idle router should not hold them, nor what a burst of
    /// handshakes (a relay's restart: every engineer at once) left behind.
    pub async fn trim_when_quiet(self: Arc<Self>) {
        self.trim_when_quiet_with(crate::memory::release_freed)
            .await;
    }

    /// [`Gateway::trim_when_quiet`] with the trim to run (a test counts).
    pub(crate) async fn trim_when_quiet_with(self: Arc<Self>, trim: fn()) {
        loop {
            self.churned.notified().await;
            tokio::time::sleep(TRIM_QUIET).await;
            if self.registry.live_streams() == 0 {
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        }
    }

    /// Record the addresses the listeners are bound to (for `status`);
    /// `None` for a listener the config leaves out.
    pub fn set_bound(&self, quic: Option<std::net::SocketAddr>, tls: Option<std::net::SocketAddr>) {
        let _ = self.bound.set((quic, tls));
    }

    /// Append an audit event (daemon start/stop).
    pub fn audit_event(&self, event: edgegate_proto::audit::AuditEvent) {
        self.audit.append(event);
    }

    /// Write out every queued audit event, then flush the audit log and
    /// store (on shutdown).
    pub async fn flush(&self) {
        if let Err(e) = self.audit.flush().await {
            tracing::warn!("flushing the audit log: {e}");
        }
    }

    fn publish(&self, active: Option<Arc<Active>>) {
        self.policy.send_replace(active);
    }
}

#[cfg(test)]
mod tests;
