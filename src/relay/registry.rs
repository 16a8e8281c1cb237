//! The relay's registrations: which connection carries which device, one
//! per device (DESIGN §8: a newer registration replaces the older, whose
//! connection is closed). Routing only: who may reach a router is decided
//! by that router, never here.

use crate::transport::Connection;
use edgegate_proto::enrollment::{Precedence, VerifiedEnrollment};
use edgegate_proto::relay::{RegisteredRouter, RelayRefusal};
use edgegate_proto::UnixTime;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Application close code of a router connection replaced by a newer
/// registration of the same device.
pub(crate) const CONN_REPLACED: u32 = 0x10;

/// One live registration.
struct Entry {
    id: u64,
    enrollment: VerifiedEnrollment,
    conn: Arc<dyn Connection>,
    sessions: Arc<AtomicUsize>,
    since: UnixTime,
    traffic: Arc<Traffic>,
}

/// Bytes relayed over one registration, counted as they pass.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// From engineers to the router.
    pub(crate) to_router: AtomicU64,
    /// From the router to engineers.
    pub(crate) from_router: AtomicU64,
}

/// The registrations, by device id.
#[derive(Default)]
pub(crate) struct Registry {
    entries: Mutex<HashMap<String, Entry>>,
    next: AtomicU64,
}

/// A route to a registered router, with its session count.
pub(crate) struct Route {
    pub(crate) conn: Arc<dyn Connection>,
    pub(crate) sessions: Arc<AtomicUsize>,
    pub(crate) traffic: Arc<Traffic>,
}

/// A relayed session counted against its router's limit while held.
pub(crate) struct SessionSlot(Arc<AtomicUsize>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Route {
    /// Take one of the router's `limit` session slots, if one is free.
    pub(crate) fn slot(&self, limit: usize) -> Option<SessionSlot> {
        self.sessions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(SessionSlot(self.sessions.clone()))
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register `conn` under its verified enrollment (already bound to the
    /// key `conn` proved); the registration's id, for [`Registry::remove`].
    pub(crate) fn register(
        &self,
        enrollment: VerifiedEnrollment,
        conn: Arc<dyn Connection>,
        max_routers: usize,
        since: UnixTime,
    ) -> Result<u64, (RelayRefusal, String)> {
        let device = enrollment.enrollment().device_id.clone();
        let mut entries = self.lock();
        if let Some(old) = entries.get(&device) {
            match enrollment.precedence(&old.enrollment) {
                Precedence::Newer | Precedence::Same => {
                    old.conn
                        .close(CONN_REPLACED, "replaced by a newer registration");
                }
                Precedence::Older | Precedence::Conflict => {
                    let serial = old.enrollment.enrollment().serial;
                    return Err((
                        RelayRefusal::Superseded,
                        format!("device {device:?} is registered with enrollment serial {serial}"),
                    ));
                }
            }
        } else if entries.len() >= max_routers {
            return Err((
                RelayRefusal::Limit,
                format!("this relay holds its maximum of {max_routers} routers"),
            ));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let sessions = Arc::new(AtomicUsize::new(0));
        let entry = Entry {
            id,
            enrollment,
            conn,
            sessions,
            since,
            traffic: Arc::default(),
        };
        entries.insert(device, entry);
        Ok(id)
    }

    /// Forget registration `id` of `device` (if it was not replaced).
    pub(crate) fn remove(&self, device: &str, id: u64) {
        let mut entries = self.lock();
        if entries.get(device).is_some_and(|e| e.id == id) {
            entries.remove(device);
        }
    }

    /// The route to `device`'s router, if one is registered.
    pub(crate) fn route(&self, device: &str) -> Option<Route> {
        self.lock().get(device).map(|e| Route {
            conn: e.conn.clone(),
            sessions: e.sessions.clone(),
            traffic: e.traffic.clone(),
        })
    }

    /// Every registration, by device id (for `edgegate relay status`).
    pub(crate) fn snapshot(&self) -> Vec<RegisteredRouter> {
        let mut all: Vec<RegisteredRouter> = self
            .lock()
            .iter()
            .map(|(device, e)| RegisteredRouter {
                device: device.clone(),
                key: e.enrollment.enrollment().device_key,
                serial: e.enrollment.enrollment().serial,
                since: e.since,
                transport: e.conn.transport(),
                remote: e.conn.remote(),
                sessions: u32::try_from(e.sessions.load(Ordering::Acquire)).unwrap_or(u32::MAX),
                bytes_to_router: e.traffic.to_router.load(Ordering::Relaxed),
                bytes_from_router: e.traffic.from_router.load(Ordering::Relaxed),
            })
            .collect();
        all.sort_by(|a, b| a.device.cmp(&b.device));
        all
    }

    /// How many routers are registered.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
