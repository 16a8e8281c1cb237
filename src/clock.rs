//! The one wall clock of the daemon and the command line.
//!
//! Wall time (seconds since the epoch) is read only through [`Clock`], and a
//! running gateway takes its clock as an input, as quinn-proto takes `now`:
//! in production it reads the system clock; in tests it starts at a chosen
//! instant and then advances with tokio's time, so a test that pauses and
//! advances tokio time moves tickets, logout periods and bundles towards
//! their expiry exactly as it moves the daemon's timers. Monotonic timers
//! are tokio's (`tokio::time`), never this clock. What the daemon treats as
//! "now" is this clock floored by the store's time floor (DESIGN §3,
//! `Gateway::now`); this module knows nothing of the floor.

use edgegate_proto::UnixTime;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// A source of wall time. Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Source);

#[derive(Debug, Clone, Copy)]
enum Source {
    /// The system's wall clock.
    System,
    /// `wall` at the tokio instant `at`, advancing with tokio's time since.
    Tokio { wall: UnixTime, at: Instant },
}

impl Clock {
    /// The system's wall clock (0 if it is set before 1970).
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock that reads `wall` now and then moves with tokio's time
    /// (paused and advanced in tests). Must be made inside a runtime.
    pub fn following_tokio(wall: UnixTime) -> Clock {
        Clock(Source::Tokio {
            wall,
            at: Instant::now(),
        })
    }

    /// Seconds since the epoch now.
    pub fn wall(&self) -> UnixTime {
        match self.0 {
            Source::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            Source::Tokio { wall, at } => wall.saturating_add(at.elapsed().as_secs()),
        }
    }

    /// When the wall clock reads `at`, as a tokio instant (now if `at` has
    /// passed). A wall clock set back later does not move it: timers run
    /// on monotonic time once armed (DESIGN §3).
    pub fn instant_at(&self, at: UnixTime) -> Instant {
        let wait = at.saturating_sub(self.wall());
        // Far-future deadlines (a bundle valid until 9999) cannot overflow
        // the instant: clamp to a year; the caller re-checks then.
        let wait = wait.min(365 * 86_400);
        Instant::now() + std::time::Duration::from_secs(wait)
    }
}

/// Longest wait armed from config, bundle or ticket data: a year. Later
/// deadlines are re-checked when it fires (every caller re-decides then).
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);

/// `from + wait`, with `wait` clamped to [`MAX_WAIT`], so a far-future
/// deadline (`idle_timeout = "99999999d"`) cannot overflow an `Instant`.
pub fn after(from: Instant, wait: std::time::Duration) -> Instant {
    from + wait.min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time() {
        let c = Clock::following_tokio(1_000);
        assert_eq!(c.wall(), 1_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(c.wall(), 1_090);
        let at = c.instant_at(1_100);
        assert_eq!(at - Instant::now(), Duration::from_secs(10));
        assert_eq!(c.instant_at(5), Instant::now());
        let huge = after(Instant::now(), Duration::MAX);
        assert!(huge <= Instant::now() + MAX_WAIT);
        let far = c.instant_at(u64::MAX);
        assert_eq!(far - Instant::now(), Duration::from_secs(365 * 86_400));
    }

    #[test]
    fn the_system_clock_is_past_2020() {
        assert!(Clock::system().wall() > 1_577_836_800);
    }
}
