//! On-site consent: the machine operator's "remote access may happen now"
//! switch that roles with `site_consent = true` depend on.
//!
//! The window runs on the monotonic clock (`tokio::time::Instant`), so
//! setting the wall clock back never extends it. Every change — grant,
//! revoke, and expiry when [`Consent::run_expiry`] is running — is published
//! on a `watch` channel so the gateway re-decides live streams at once.
//! Consent is not persisted: a restarted daemon starts without it, which
//! fails closed.
//!
//! This module does not audit or decide; the gateway does both when it sees
//! the change.

use edgegate_proto::control::ConsentInfo;
use edgegate_proto::UnixTime;
use std::sync::Mutex;
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

/// The consent state at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentState {
    /// No consent (never granted, revoked, or expired).
    Inactive,
    /// Granted until this monotonic instant (exclusive).
    Until(Instant),
    /// Granted until revoked.
    Indefinite,
}

impl ConsentState {
    /// Whether consent holds at `now`.
    pub fn is_active(&self, now: Instant) -> bool {
        match *self {
            ConsentState::Inactive => false,
            ConsentState::Until(end) => now < end,
            ConsentState::Indefinite => true,
        }
    }

    /// Seconds of consent left at `now` (rounded up): `None` when inactive,
    /// `Some(None)` when indefinite.
    pub fn remaining(&self, now: Instant) -> Option<Option<u64>> {
        match *self {
            ConsentState::Inactive => None,
            ConsentState::Indefinite => Some(None),
            ConsentState::Until(end) if now < end => {
                let left = end - now;
                Some(Some(left.as_secs() + u64::from(left.subsec_nanos() > 0)))
            }
            ConsentState::Until(_) => None,
        }
    }
}

/// The device's consent switch. Share it behind an `Arc`.
#[derive(Debug)]
pub struct Consent {
    // The mutex serialises read-modify-write; the watch carries the value out.
    lock: Mutex<()>,
    tx: watch::Sender<ConsentState>,
}

impl Default for Consent {
    fn default() -> Self {
        Self::new()
    }
}

impl Consent {
    /// No consent.
    pub fn new() -> Consent {
        let (tx, _) = watch::channel(ConsentState::Inactive);
        Consent {
            lock: Mutex::new(()),
            tx,
        }
    }

    /// Grant consent for `for_secs` seconds from now, or until revoked
    /// (`None`). Replaces any earlier grant (it can also shorten one).
    pub fn grant(&self, for_secs: Option<u64>) -> ConsentState {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let state = match for_secs {
            None => ConsentState::Indefinite,
            // Clamped, never turned indefinite: the gateway bounds grants
            // by limits.max_consent; this only keeps the Instant finite.
            Some(secs) => ConsentState::Until(crate::clock::after(
                Instant::now(),
                Duration::from_secs(secs),
            )),
        };
        self.tx.send_replace(state);
        state
    }

    /// Withdraw consent. Returns whether it was active before.
    pub fn revoke(&self) -> bool {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let was = self.tx.borrow().is_active(Instant::now());
        self.tx.send_replace(ConsentState::Inactive);
        was
    }

    /// The current state as last published. A timed grant that has run out
    /// may still read `Until(past)` here until [`Consent::run_expiry`]
    /// publishes `Inactive`; [`Consent::is_active`] is always exact.
    pub fn state(&self) -> ConsentState {
        *self.tx.borrow()
    }

    /// Whether consent holds at `now`.
    pub fn is_active(&self, now: Instant) -> bool {
        self.state().is_active(now)
    }

    /// When a timed grant ends; `None` when inactive or indefinite.
    pub fn expires_at(&self) -> Option<Instant> {
        match self.state() {
            ConsentState::Until(end) => Some(end),
            _ => None,
        }
    }

    /// The next instant after `now` at which consent changes by time alone
    /// (for a gateway's re-decision timer); `None` if nothing is pending.
    pub fn next_expiry(&self, now: Instant) -> Option<Instant> {
        self.expires_at().filter(|end| *end > now)
    }

    /// The state as the control socket shows it, with a timed grant's end
    /// translated to wall-clock time from `wall_now`.
    pub fn info(&self, wall_now: UnixTime) -> ConsentInfo {
        match self.state().remaining(Instant::now()) {
            None => ConsentInfo {
                active: false,
                until: None,
                remaining_secs: None,
            },
            Some(left) => ConsentInfo {
                active: true,
                until: left.map(|secs| wall_now.saturating_add(secs)),
                remaining_secs: left,
            },
        }
    }

    /// A receiver that sees every change (grant, revoke, expiry).
    pub fn subscribe(&self) -> watch::Receiver<ConsentState> {
        self.tx.subscribe()
    }

    /// Publish `Inactive` when a timed grant runs out, so subscribers are
    /// woken by expiry exactly like by a revoke. Runs until the task is
    /// aborted (it holds the `Arc`); spawn it once per daemon.
    pub async fn run_expiry(self: std::sync::Arc<Self>) {
        self.run_expiry_with(|| {}).await
    }

    /// [`Consent::run_expiry`], calling `on_expire` each time a timed grant
    /// runs out (e.g. to audit `ConsentExpired`; revokes are not reported
    /// here, their caller knows).
    pub async fn run_expiry_with(self: std::sync::Arc<Self>, mut on_expire: impl FnMut() + Send) {
        let mut rx = self.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            match state {
                ConsentState::Until(end) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(end) => if self.expire(end) { on_expire() },
                        changed = rx.changed() => if changed.is_err() { return },
                    }
                }
                _ => {
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// True if the grant being timed was still in force and is now expired.
    fn expire(&self, end: Instant) -> bool {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        // Only the grant that was being timed may be expired here: a newer
        // grant published meanwhile stays.
        self.tx.send_if_modified(|s| {
            if *s == ConsentState::Until(end) {
                *s = ConsentState::Inactive;
                true
            } else {
                false
            }
        })
    }
}

#[cfg(test)]
mod tests;
