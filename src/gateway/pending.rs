//! Bounding the unauthenticated phase of connections (handshake and first
//! frame) without letting a flood of half-open connections lock everyone
//! out: at most `cap` connections may be in that phase, and at most a
//! quarter of them (at least two) from one source address. A newcomer is
//! never refused: when its address already holds its share, that address's
//! oldest pending connection is cancelled; when all slots are taken, the
//! oldest pending connection *of the address holding the most slots* is.
//! A legitimate client finishes its phase in milliseconds, so under a flood
//! it is the attacker's idle connections that get evicted, not the
//! newcomer, nor another host's (nor a client behind the same address as
//! the flood, which keeps being let in and finishing first).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tokio::task::AbortHandle;

const PENDING: u8 = 0;
const DONE: u8 = 1;
const EVICTED: u8 = 2;

/// Held by a connection task while it is in its unauthenticated phase.
#[derive(Debug)]
pub(crate) struct Phase(Arc<AtomicU8>);

impl Phase {
    /// The phase is over (authenticated or answered). Returns false when
    /// the connection was evicted meanwhile and must stop.
    pub(crate) fn finish(&self) -> bool {
        self.0
            .compare_exchange(PENDING, DONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        let _ = self
            .0
            .compare_exchange(PENDING, DONE, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The accept loop's view of the pending connections (owned by that loop).
#[derive(Debug)]
pub(crate) struct Pending {
    cap: usize,
    queue: VecDeque<(IpAddr, Arc<AtomicU8>, AbortHandle)>,
}

impl Pending {
    pub(crate) fn new(cap: usize) -> Pending {
        Pending {
            cap: cap.max(1),
            queue: VecDeque::new(),
        }
    }

    /// Most pending connections one source address may hold.
    pub(crate) fn per_source(&self) -> usize {
        (self.cap / 4).max(2)
    }

    /// Spawn a connection task from `source`, evicting as the module's doc
    /// says.
    pub(crate) fn spawn<F, Fut>(&mut self, source: IpAddr, task: F)
    where
        F: FnOnce(Phase) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.prune();
        while self.queue.iter().filter(|(ip, ..)| *ip == source).count() >= self.per_source() {
            self.evict_oldest_of(source);
        }
        while self.queue.len() >= self.cap {
            let mut held: HashMap<IpAddr, usize> = HashMap::new();
            for (ip, ..) in &self.queue {
                *held.entry(*ip).or_default() += 1;
            }
            let Some((&busiest, _)) = held.iter().max_by_key(|(_, n)| **n) else {
                break;
            };
            self.evict_oldest_of(busiest);
        }
        let state = Arc::new(AtomicU8::new(PENDING));
        let handle = tokio::spawn(task(Phase(state.clone())));
        self.queue.push_back((source, state, handle.abort_handle()));
    }

    /// How many connections are pending.
    pub(crate) fn len(&mut self) -> usize {
        self.prune();
        self.queue.len()
    }

    /// The cap on pending connections.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Cancel the oldest pending connection of `source`. Only a connection
    /// still pending is cancelled; one that just finished its phase keeps
    /// running (and leaves the queue either way).
    fn evict_oldest_of(&mut self, source: IpAddr) {
        let Some(i) = self.queue.iter().position(|(ip, ..)| *ip == source) else {
            return;
        };
        if let Some((_, state, handle)) = self.queue.remove(i) {
            if state
                .compare_exchange(PENDING, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                handle.abort();
                tracing::debug!(%source, "evicted a pending connection");
            }
        }
    }

    fn prune(&mut self) {
        self.queue
            .retain(|(_, state, _)| state.load(Ordering::Acquire) == PENDING);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// A connection that stays in its phase (holding `Phase`).
    async fn parked(phase: Phase) {
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(phase);
    }

    #[tokio::test]
    async fn the_busiest_source_is_evicted_finished_ones_are_not() {
        let mut p = Pending::new(8);
        assert_eq!(p.per_source(), 2);
        // Two sources hold two slots each, a third one.
        for last in [1, 1, 2, 2, 3] {
            p.spawn(ip(last), parked);
        }
        let held = |p: &Pending, last| p.queue.iter().filter(|(i, ..)| *i == ip(last)).count();
        // A third from one source takes the place of its own oldest.
        p.spawn(ip(1), parked);
        assert_eq!((held(&p, 1), p.len()), (2, 5));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        p.spawn(ip(4), move |phase| async move {
            assert!(phase.finish());
            let _ = tx.send(99);
        });
        assert_eq!(rx.recv().await, Some(99));
        assert_eq!(p.len(), 5, "the finished one is not counted");
        for last in [5, 6, 6] {
            p.spawn(ip(last), parked);
        }
        assert_eq!(p.len(), 8);
        // Full: a newcomer evicts from a source holding the most (two).
        p.spawn(ip(7), parked);
        assert_eq!(p.len(), 8);
        assert_eq!(held(&p, 7), 1);
        assert_eq!(
            held(&p, 3) + held(&p, 5),
            2,
            "single-slot sources untouched"
        );
        assert_eq!(held(&p, 1) + held(&p, 2) + held(&p, 6), 5);
    }
}
