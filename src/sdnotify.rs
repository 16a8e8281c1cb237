//! systemd service notifications (`sd_notify(3)`): readiness, reload, stop,
//! status text, and the watchdog keep-alive.
//!
//! A thin layer over the `sd-notify` crate. Every function is a no-op when
//! `NOTIFY_SOCKET` is unset (not started by systemd, tests, `--demo`), and a
//! failed send is logged, never fatal: losing a notification must not take the
//! gateway down (systemd's start timeout or watchdog will act if it matters).
//!
//! The watchdog task pings only while a health check supplied by the daemon
//! answers `true` in time, so a wedged accept loop or store makes systemd
//! restart the service instead of being kept alive by a timer that still
//! ticks. This module does not decide what "healthy" means.

use std::future::Future;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

/// Tells systemd that startup (or a reload) is complete: the stored bundle is
/// loaded and every listener is bound. Send it again after a reload.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// Tells systemd that the daemon is draining and will exit.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Tells systemd that a reload (SIGHUP) started; call [`ready`] when it is
/// done, whether the new config was applied or refused. `MONOTONIC_USEC` is
/// what systemd >= 253 expects alongside; older versions ignore it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Asks systemd for `extra` more time from now before its start (or stop)
/// timeout fires: for a store recovery that is slow on a router's flash.
pub fn extend_timeout(extra: Duration) {
    let usec = u32::try_from(extra.as_micros()).unwrap_or(u32::MAX);
    send(&[NotifyState::ExtendTimeoutUsec(usec)]);
}

/// Sets the one-line status shown by `systemctl status edgegated`.
pub fn status(text: &str) {
    // A newline would start a new `KEY=VALUE` assignment in the datagram.
    let line = text.replace(['\n', '\r'], " ");
    send(&[NotifyState::Status(&line)]);
}

/// The watchdog timeout systemd set for this process (`WatchdogSec=`), if any.
///
/// `None` unless both `WATCHDOG_USEC` and `WATCHDOG_PID` are set and the PID
/// is this process's.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec))
    } else {
        None
    }
}

/// Starts the watchdog task if systemd asked for one: every half of
/// [`watchdog_interval`] it runs `health` and sends `WATCHDOG=1` only when it
/// returns `true` within a quarter of the interval. Returns `None` (and spawns
/// nothing) when the watchdog is not enabled. Must be called inside a tokio
/// runtime.
pub fn spawn_watchdog<F, Fut>(health: F) -> Option<JoinHandle<()>>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let interval = watchdog_interval()?;
    Some(spawn_watchdog_every(interval / 2, interval / 4, health))
}

/// The watchdog loop with an explicit period and health-check timeout; what
/// [`spawn_watchdog`] runs. Exposed for tests and for callers that read the
/// interval themselves.
pub fn spawn_watchdog_every<F, Fut>(
    period: Duration,
    timeout: Duration,
    health: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        // After a stall, ping once and resume the rhythm rather than bursting.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_healthy = true;
        loop {
            tick.tick().await;
            let healthy = matches!(tokio::time::timeout(timeout, health()).await, Ok(true));
            if healthy {
                send(&[NotifyState::Watchdog]);
            } else if was_healthy {
                tracing::error!(
                    timeout_ms = timeout.as_millis() as u64,
                    "health check failed or timed out; withholding watchdog pings"
                );
            }
            if healthy && !was_healthy {
                tracing::warn!("health check passes again; watchdog pings resumed");
            }
            was_healthy = healthy;
        }
    })
}

fn send(states: &[NotifyState<'_>]) {
    // `false`: keep NOTIFY_SOCKET set, later notifications need it.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}
