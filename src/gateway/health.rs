//! The watchdog's health probe: the store answers a small write and read,
//! and the shared state's locks answer. Whether the accept loops still run
//! is the daemon's part (it holds their task handles).
//!
//! The probe runs on the blocking pool because a wedged sled or a lock held
//! forever would block the thread that asks; the watchdog's timeout then
//! withholds the ping. At most one probe is in flight: while one is stuck,
//! later checks fail at once instead of piling up blocked threads.

use super::Gateway;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set while a probe runs on the blocking pool.
#[derive(Debug, Default)]
pub(crate) struct ProbeSlot(AtomicBool);

impl Gateway {
    /// Whether the store and the shared state answer. Await it under a
    /// timeout: a wedged part makes it never return.
    pub async fn healthy(self: &Arc<Self>) -> bool {
        if self.probe.0.swap(true, Ordering::AcqRel) {
            return false;
        }
        let gw = self.clone();
        tokio::task::spawn_blocking(move || {
            let ok = gw.probe_once();
            gw.probe.0.store(false, Ordering::Release);
            ok
        })
        .await
        .unwrap_or(false)
    }

    fn probe_once(&self) -> bool {
        // Each of these takes a lock the serving paths take.
        let _config = self.config();
        let _sessions = self.registry.len();
        let _policy = self.policy.borrow().is_some();
        self.store.heartbeat(self.wall())
    }
}
