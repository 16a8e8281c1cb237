//! Bounding the unauthenticated phase of connections (handshake and first
//! frame) without letting a flood of half-open connections lock everyone
//! out: at most `cap` connections may be in that phase; when one more
//! arrives, the oldest pending one is cancelled to make room. A legitimate
//! client finishes its phase in milliseconds, so under a flood it is the
//! attacker's idle connections that get evicted, not the newcomer.

use std::collections::VecDeque;
use std::future::Future;
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
    queue: VecDeque<(Arc<AtomicU8>, AbortHandle)>,
}

impl Pending {
    pub(crate) fn new(cap: usize) -> Pending {
        Pending {
            cap: cap.max(1),
            queue: VecDeque::new(),
        }
    }

    /// Spawn a connection task, evicting the oldest pending one if full.
    pub(crate) fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(Phase) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.queue
            .retain(|(state, _)| state.load(Ordering::Acquire) == PENDING);
        while self.queue.len() >= self.cap {
            let Some((state, handle)) = self.queue.pop_front() else {
                break;
            };
            // Only a connection still pending is cancelled; one that just
            // finished its phase keeps running.
            if state
                .compare_exchange(PENDING, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                handle.abort();
                tracing::debug!("evicted the oldest pending connection");
            }
        }
        let state = Arc::new(AtomicU8::new(PENDING));
        let handle = tokio::spawn(task(Phase(state.clone())));
        self.queue.push_back((state, handle.abort_handle()));
    }

    /// How many connections are pending.
    #[cfg(test)]
    pub(crate) fn len(&mut self) -> usize {
        self.queue
            .retain(|(state, _)| state.load(Ordering::Acquire) == PENDING);
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn oldest_pending_is_evicted_finished_ones_are_not() {
        let mut p = Pending::new(2);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..2 {
            let tx = tx.clone();
            p.spawn(move |_phase| async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let _ = tx.send(i);
            });
        }
        let done = tx.clone();
        p.spawn(move |phase| async move {
            assert!(phase.finish());
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = done.send(99);
        });
        assert_eq!(p.len(), 1, "one evicted, the finished one not counted");
        // The finished task is never evicted by later arrivals.
        for _ in 0..3 {
            p.spawn(|_phase| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
        assert_eq!(rx.recv().await, Some(99));
    }
}
