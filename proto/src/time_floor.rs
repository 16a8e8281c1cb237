//! How far a signed timestamp may move a device's time floor (DESIGN §3,
//! `README.md` §5 "The time floor").
//!
//! The floor is the newest signed time a device has seen; its notion of now
//! is never below it. A floor raised too far is a brick: every fresh ticket
//! expires before the floor and is refused (`ticket-expired`) until the
//! floor is reached. So a signed timestamp (a bundle's or a ticket's
//! `issued_at`) moves the floor only up to a *ceiling*:
//!
//! - the wall clock is **plausible** when it reads at least
//!   [`PLAUSIBLE_SINCE`] and is not behind the floor by more than
//!   [`MAX_AHEAD`]: a bundle issued after `wall + MAX_AHEAD` is refused
//!   (`future-dated`), and the floor moves up to the wall clock, never past
//!   it: with a good clock the floor only guards against the clock being
//!   set back later, and one mis-dated statement denies nothing;
//! - otherwise the device has **no clock** (rebooted to 1970, or set far
//!   back): the ceiling is `max(floor at start, PLAUSIBLE_SINCE) +
//!   CLOCKLESS_STEP + (wall − wall at start)`. Its anchor is the floor when
//!   the daemon started, not the floor now, so replaying one far-future
//!   statement cannot ratchet the floor up step by step; the wall clock's
//!   own progress since start (it runs, even from 1970) keeps the ceiling
//!   moving with real time. A bundle issued beyond it is still accepted (the
//!   device cannot tell a fresh bundle from a mis-dated one), only the floor
//!   stops at the ceiling.
//!
//! One exception is the store's, not this function's: a store whose floor
//! is still 0 and has no clock takes its first bundle's `issued_at` as is
//! (trust on first use; `README.md` §3.1).
//!
//! Pure: the caller passes every time in.

use crate::UnixTime;

/// How far ahead of a plausible wall clock a signed timestamp may be: clock
/// skew between the signer and the device, with a wide margin.
pub const MAX_AHEAD: u64 = 86_400;

/// How far beyond its floor at start a device without a clock lets the
/// floor advance (plus the time its wall clock has run since). It is the
/// longest downtime after which a clockless router still admits fresh
/// tickets at once, and the longest a mis-dated signed statement can deny
/// fresh tickets on such a router (per restart; a router that gets a
/// plausible clock is bounded by [`MAX_AHEAD`] instead).
pub const CLOCKLESS_STEP: u64 = 30 * 86_400;

/// 2025-01-01T00:00:00Z. A wall clock before it is certainly wrong (this
/// code did not exist); it is also the least anchor of the clockless
/// ceiling, so a new router without a clock can take its first floor.
pub const PLAUSIBLE_SINCE: UnixTime = 1_735_689_600;

/// The times the ceiling depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloorClock {
    /// The wall clock now, as it reads.
    pub wall: UnixTime,
    /// The floor now.
    pub floor: UnixTime,
    /// The floor when the daemon started (the store was opened).
    pub start_floor: UnixTime,
    /// The wall clock when the daemon started.
    pub start_wall: UnixTime,
}

/// How far a signed timestamp may move the floor now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceiling {
    /// The wall clock (plausible): the floor stops here, and a bundle dated
    /// after `wall + MAX_AHEAD` is refused.
    Plausible(UnixTime),
    /// No usable clock: the floor stops here; later-dated statements are
    /// still accepted.
    Clockless(UnixTime),
}

impl Ceiling {
    /// The highest floor allowed now.
    pub fn limit(self) -> UnixTime {
        match self {
            Ceiling::Plausible(t) | Ceiling::Clockless(t) => t,
        }
    }

    /// The floor after a signed timestamp `t` is seen: never lower than
    /// `floor`, never above the ceiling (unless already there).
    pub fn raise(self, floor: UnixTime, t: UnixTime) -> UnixTime {
        floor.max(t.min(self.limit()))
    }

    /// The latest `issued_at` a bundle may carry now (`None`: any, there
    /// is no clock to compare with).
    pub fn latest_issue(self) -> Option<UnixTime> {
        match self {
            Ceiling::Plausible(wall) => Some(wall.saturating_add(MAX_AHEAD)),
            Ceiling::Clockless(_) => None,
        }
    }

    /// Whether something signed at `t` is refused as `future-dated`: only
    /// against a plausible clock.
    pub fn refuses(self, t: UnixTime) -> bool {
        self.latest_issue().is_some_and(|latest| t > latest)
    }
}

impl FloorClock {
    /// The ceiling under these times.
    pub fn ceiling(&self) -> Ceiling {
        let plausible =
            self.wall >= PLAUSIBLE_SINCE && self.wall.saturating_add(MAX_AHEAD) >= self.floor;
        if plausible {
            return Ceiling::Plausible(self.wall);
        }
        let ran = self.wall.saturating_sub(self.start_wall);
        Ceiling::Clockless(
            self.start_floor
                .max(PLAUSIBLE_SINCE)
                .saturating_add(CLOCKLESS_STEP)
                .saturating_add(ran),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = 1_800_000_000;
    const DAY: u64 = 86_400;

    fn at(wall: UnixTime, floor: UnixTime, start_floor: UnixTime) -> Ceiling {
        FloorClock {
            wall,
            floor,
            start_floor,
            start_wall: wall,
        }
        .ceiling()
    }

    #[test]
    fn a_plausible_clock_refuses_what_is_dated_beyond_a_day() {
        let c = at(NOW, NOW - 10 * DAY, NOW - 10 * DAY);
        assert_eq!(c, Ceiling::Plausible(NOW));
        assert!(c.refuses(4_070_908_800)); // 2099
        assert!(!c.refuses(NOW + DAY));
        assert!(c.refuses(NOW + DAY + 1));
        // The floor never passes a plausible wall clock.
        assert_eq!(c.raise(NOW - 10 * DAY, 4_070_908_800), NOW);
        assert_eq!(c.raise(NOW - 10 * DAY, NOW + 3600), NOW);
        assert_eq!(c.raise(NOW - 10 * DAY, NOW - 20 * DAY), NOW - 10 * DAY);
        // A floor up to a day ahead (skew) still counts as plausible.
        assert_eq!(at(NOW, NOW + DAY, 0), Ceiling::Plausible(NOW));
    }

    #[test]
    fn without_a_clock_the_floor_moves_one_step_from_its_start() {
        // Rebooted to 1970 with a floor from last month.
        let floor = NOW - 40 * DAY;
        let c = at(3_600, floor, floor);
        assert_eq!(c, Ceiling::Clockless(floor + CLOCKLESS_STEP));
        assert!(!c.refuses(4_070_908_800));
        assert_eq!(c.raise(floor, NOW - 35 * DAY), NOW - 35 * DAY);
        assert_eq!(c.raise(floor, 4_070_908_800), floor + CLOCKLESS_STEP);
        // Replaying the far-future statement does not ratchet: the anchor
        // is the floor at start.
        let raised = floor + CLOCKLESS_STEP;
        let again = FloorClock {
            wall: 3_600,
            floor: raised,
            start_floor: floor,
            start_wall: 3_600,
        };
        assert_eq!(again.ceiling().raise(raised, 4_070_908_800), raised);
        // The wall clock's progress since start moves the ceiling with it.
        let later = FloorClock {
            wall: 3_600 + DAY,
            ..again
        };
        assert_eq!(later.ceiling().limit(), raised + DAY);
    }

    #[test]
    fn a_new_router_without_a_clock_anchors_at_plausible_since() {
        let c = at(60, 0, 0);
        assert_eq!(c, Ceiling::Clockless(PLAUSIBLE_SINCE + CLOCKLESS_STEP));
        // A wall clock from before this code existed is not plausible.
        assert!(matches!(
            at(PLAUSIBLE_SINCE - 1, 0, 0),
            Ceiling::Clockless(_)
        ));
    }
}
