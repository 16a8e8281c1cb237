//! Refused VPN flows in the audit log without letting a scan flood it: a
//! session's first refusal is recorded at once; the refusals of the second
//! after it are counted and recorded as one (`AuditEvent::FlowsDenied`,
//! `count`), then the next refusal opens a new second. At most two records
//! a second per session, whatever the engineer sends. No I/O: the stack
//! writes the records this returns.

use edgegate_proto::DenyReason;
use std::time::Duration;
use tokio::time::Instant;

/// How long refusals are counted into one record.
const WINDOW: Duration = Duration::from_secs(1);

/// One record to write: the first refusal it stands for, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denied {
    pub(crate) what: String,
    pub(crate) reason: DenyReason,
    pub(crate) count: u64,
}

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
    /// One flow refused at `now` (`what`: `PROTOCOL ADDRESS:PORT`); the
    /// records to write now.
    pub(crate) fn deny(&mut self, now: Instant, what: String, reason: DenyReason) -> Vec<Denied> {
        if self.since.is_some_and(|t| now < t + WINDOW) {
            self.first.get_or_insert((what, reason));
            self.count += 1;
            return Vec::new();
        }
        let mut out: Vec<Denied> = self.flush(now).into_iter().collect();
        out.push(Denied {
            what,
            reason,
            count: 1,
        });
        self.since = Some(now);
        out
    }

    /// When the counted refusals are due to be recorded.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.since.filter(|_| self.count > 0).map(|t| t + WINDOW)
    }

    /// The record of the counted refusals, if any.
    pub(crate) fn flush(&mut self, now: Instant) -> Option<Denied> {
        let (what, reason) = self.first.take()?;
        let count = std::mem::take(&mut self.count);
        self.since = Some(now);
        Some(Denied {
            what,
            reason,
            count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_scan_costs_at_most_two_records_a_second() {
        let mut d = Denials::default();
        let mut records = Vec::new();
        let start = Instant::now();
        // 1,000 refusals a second for three seconds, flushed when due as
        // the stack does.
        for i in 0..3000u32 {
            let now = Instant::now();
            if d.due().is_some_and(|t| t <= now) {
                records.extend(d.flush(now));
            }
            let what = format!("tcp 10.0.0.{}:{}", i % 250, i % 1000);
            records.extend(d.deny(now, what, DenyReason::DestinationNotAllowed));
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        records.extend(d.flush(Instant::now()));
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            records.len() as f64 <= 2.0 * elapsed + 1.0,
            "{} records in {elapsed} s",
            records.len()
        );
        assert_eq!(records.iter().map(|r| r.count).sum::<u64>(), 3000);
        assert_eq!(records[0].what, "tcp 10.0.0.0:0");
        assert_eq!(records[0].count, 1);
        // The second record counts what followed the first, from the next.
        assert_eq!(records[1].what, "tcp 10.0.0.1:1");
        assert_eq!(d.due(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_seconds_apart_are_each_recorded_at_once() {
        let mut d = Denials::default();
        for i in 0..3 {
            let r = d.deny(
                Instant::now(),
                format!("udp 10.0.0.1:{i}"),
                DenyReason::NoGrant,
            );
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].count, 1);
            tokio::time::advance(WINDOW).await;
        }
        assert_eq!(d.due(), None);
    }
}
