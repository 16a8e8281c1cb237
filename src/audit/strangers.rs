//! What strangers send is counted, not chained (STYLE: "Nothing a stranger
//! sends is worth a record each").
//!
//! An unauthenticated event (a session refused before a ticket bound to
//! the peer's key verified, a push rejected on the tunnel port, a garbage
//! first frame) only bumps a counter of its source address in the current
//! minute. When the minute is over its counters become one
//! [`StrangerSummary`] per source, stored in their own sled tree
//! (`audit_strangers`) with their own retention, so a flood of them can
//! neither grow memory nor push a single authenticated record out of the
//! chain.
//!
//! Bounds: at most [`MAX_SOURCES`] addresses per minute in memory (later
//! ones are counted together as `other`), so a minute is at most
//! `MAX_SOURCES + 1` summaries; the tree keeps the newest
//! [`STRANGER_RETENTION`] summaries (~60 bytes each: well under 1 MB).

use edgegate_proto::audit::StrangerSummary;
use edgegate_proto::UnixTime;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Distinct source addresses counted one by one per minute.
pub const MAX_SOURCES: usize = 64;

/// Summaries kept on disk (about a week at a few sources a minute, a
/// couple of hours of a flood from more than [`MAX_SOURCES`] addresses).
pub const STRANGER_RETENTION: usize = 10_000;

/// The kinds of unauthenticated event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stranger {
    /// A session refused before a key-bound ticket verified.
    RefusedSession,
    /// A bundle push over the tunnel port that was rejected.
    RejectedPush,
    /// A missing, undecodable or unexpected first frame.
    Garbage,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    refused: u64,
    pushes: u64,
    garbage: u64,
}

impl Counts {
    fn bump(&mut self, what: Stranger) {
        let c = match what {
            Stranger::RefusedSession => &mut self.refused,
            Stranger::RejectedPush => &mut self.pushes,
            Stranger::Garbage => &mut self.garbage,
        };
        *c = c.saturating_add(1);
    }

    fn is_zero(&self) -> bool {
        self.refused == 0 && self.pushes == 0 && self.garbage == 0
    }

    fn summary(&self, minute: u64, source: String) -> StrangerSummary {
        StrangerSummary {
            minute: minute * 60,
            source,
            refused_sessions: self.refused,
            rejected_pushes: self.pushes,
            garbage: self.garbage,
        }
    }
}

#[derive(Debug, Default)]
struct Window {
    /// Minutes since the epoch.
    minute: u64,
    sources: HashMap<IpAddr, Counts>,
    other: Counts,
}

impl Window {
    fn summaries(&self) -> Vec<StrangerSummary> {
        let mut out: Vec<_> = self
            .sources
            .iter()
            .map(|(ip, c)| c.summary(self.minute, ip.to_string()))
            .collect();
        out.sort_by(|a, b| a.source.cmp(&b.source));
        if !self.other.is_zero() {
            out.push(self.other.summary(self.minute, "other".into()));
        }
        out
    }

    fn take(&mut self, minute: u64) -> Vec<StrangerSummary> {
        let done = self.summaries();
        *self = Window {
            minute,
            ..Window::default()
        };
        done
    }
}

/// The current minute's counters.
#[derive(Debug, Default)]
pub struct StrangerCounter {
    window: Mutex<Window>,
}

impl StrangerCounter {
    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one event from `source` at `now`. Returns the previous
    /// minute's summaries when this event starts a new minute (the caller
    /// stores them).
    pub fn count(&self, now: UnixTime, source: IpAddr, what: Stranger) -> Vec<StrangerSummary> {
        let minute = now / 60;
        let mut w = self.window();
        let done = if minute != w.minute {
            w.take(minute)
        } else {
            Vec::new()
        };
        let source = source.to_canonical();
        let full = w.sources.len() >= MAX_SOURCES;
        match w.sources.get_mut(&source) {
            Some(c) => c.bump(what),
            None if full => w.other.bump(what),
            None => w.sources.entry(source).or_default().bump(what),
        }
        done
    }

    /// The summaries of a minute that is over by `now` (the periodic
    /// flush), or nothing.
    pub fn roll(&self, now: UnixTime) -> Vec<StrangerSummary> {
        let minute = now / 60;
        let mut w = self.window();
        if minute == w.minute {
            return Vec::new();
        }
        w.take(minute)
    }

    /// Everything counted so far, emptying the window (shutdown).
    pub fn drain(&self) -> Vec<StrangerSummary> {
        let mut w = self.window();
        let minute = w.minute;
        w.take(minute)
    }

    /// The minute in progress, left as it is (for `audit --strangers`).
    pub fn snapshot(&self) -> Vec<StrangerSummary> {
        self.window().summaries()
    }
}

/// The tree's key: minute (u64 BE) ‖ source, so iteration is by time.
pub(super) fn key(s: &StrangerSummary) -> Vec<u8> {
    let mut k = s.minute.to_be_bytes().to_vec();
    k.extend_from_slice(s.source.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn a_minute_is_one_summary_per_source_and_rolls_over() {
        let c = StrangerCounter::default();
        let t = 1_700_000_040;
        assert!(c.count(t, ip(1), Stranger::RefusedSession).is_empty());
        for _ in 0..1000 {
            assert!(c.count(t, ip(2), Stranger::RejectedPush).is_empty());
        }
        c.count(t, ip(1), Stranger::Garbage);
        let done = c.count(t + 60, ip(3), Stranger::Garbage);
        assert_eq!(done.len(), 2);
        assert_eq!(done[0].source, "0.0.0.1");
        assert_eq!((done[0].refused_sessions, done[0].garbage), (1, 1));
        assert_eq!(done[1].rejected_pushes, 1000);
        assert_eq!(done[1].minute, t / 60 * 60);
        assert_eq!(c.roll(t + 60), vec![]);
        assert_eq!(c.roll(t + 120).len(), 1);
    }

    #[test]
    fn sources_beyond_the_cap_are_counted_together() {
        let c = StrangerCounter::default();
        let t = 6000;
        c.count(t, ip(0), Stranger::Garbage);
        for n in 0..10_000 {
            assert!(c.count(t, ip(n), Stranger::Garbage).is_empty());
        }
        let s = c.drain();
        assert_eq!(s.len(), MAX_SOURCES + 1);
        let other = s.last().unwrap();
        assert_eq!(other.source, "other");
        assert_eq!(other.garbage, 10_000 - MAX_SOURCES as u64);
        assert_eq!(s.iter().map(|x| x.garbage).sum::<u64>(), 10_001);
    }

    #[test]
    fn v4_mapped_addresses_are_one_source() {
        let c = StrangerCounter::default();
        c.count(60, "1.2.3.4".parse().unwrap(), Stranger::Garbage);
        c.count(60, "::ffff:1.2.3.4".parse().unwrap(), Stranger::Garbage);
        let s = c.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].source.as_str(), s[0].garbage), ("1.2.3.4", 2));
    }
}
