//! Live sessions and their streams: who, over what, since when, how many
//! bytes; the session limits; the per-session kill switch.
//!
//! A QUIC connection is one session. Over TLS every stream is its own
//! connection, so connections presenting the same client key and ticket
//! join one registry entry, which lives while any of them does.

use super::admit::Credentials;
use crate::config::Limits;
use edgegate_proto::{DenyReason, PublicKey, UnixTime};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;
use tokio::time::Instant;

/// Which transport a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// QUIC over UDP.
    Quic,
    /// TLS 1.3 over TCP, one connection per stream.
    Tls,
}

impl TransportKind {
    /// `quic` or `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Quic => "quic",
            TransportKind::Tls => "tls",
        }
    }
}

/// One live session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) user: String,
    pub(crate) cred: Credentials,
    pub(crate) transport: TransportKind,
    pub(crate) started_wall: UnixTime,
    pub(crate) started: Instant,
    pub(crate) kill: watch::Sender<bool>,
    streams: Mutex<HashMap<u64, Arc<StreamStats>>>,
    /// TLS connections currently attached (1 for QUIC).
    attached: AtomicUsize,
}

/// Counters of one live stream, shared with its pumps.
#[derive(Debug)]
pub(crate) struct StreamStats {
    pub(crate) service: String,
    pub(crate) destination: Option<String>,
    pub(crate) up: AtomicU64,
    pub(crate) down: AtomicU64,
    pub(crate) started: Instant,
}

/// A stream as the control socket shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSnapshot {
    /// Stream id within the session.
    pub id: u64,
    /// Service id.
    pub service: String,
    /// Destination (vpn).
    pub destination: Option<String>,
    /// Bytes client → machine.
    pub bytes_up: u64,
    /// Bytes machine → client.
    pub bytes_down: u64,
    /// Seconds open.
    pub age_secs: u64,
}

/// A session as the control socket shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Session id.
    pub id: u64,
    /// User id.
    pub user: String,
    /// Client key.
    pub client_key: PublicKey,
    /// `quic` or `tls`.
    pub transport: &'static str,
    /// When it started (unix seconds).
    pub started: UnixTime,
    /// Open streams.
    pub streams: Vec<StreamSnapshot>,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: Mutex<HashMap<u64, Arc<Session>>>,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Session {
    /// Add a stream unless the session is at its stream limit.
    pub(crate) fn add_stream(
        &self,
        id: u64,
        service: &str,
        destination: Option<String>,
        max: usize,
    ) -> Option<Arc<StreamStats>> {
        let mut streams = lock(&self.streams);
        if streams.len() >= max {
            return None;
        }
        let stats = Arc::new(StreamStats {
            service: service.to_string(),
            destination,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            started: Instant::now(),
        });
        streams.insert(id, stats.clone());
        Some(stats)
    }

    pub(crate) fn remove_stream(&self, id: u64) {
        lock(&self.streams).remove(&id);
    }

    pub(crate) fn stream_count(&self) -> usize {
        lock(&self.streams).len()
    }

    fn info(&self) -> SessionInfo {
        let mut streams: Vec<StreamSnapshot> = lock(&self.streams)
            .iter()
            .map(|(id, s)| StreamSnapshot {
                id: *id,
                service: s.service.clone(),
                destination: s.destination.clone(),
                bytes_up: s.up.load(Ordering::Relaxed),
                bytes_down: s.down.load(Ordering::Relaxed),
                age_secs: s.started.elapsed().as_secs(),
            })
            .collect();
        streams.sort_by_key(|s| s.id);
        SessionInfo {
            id: self.id,
            user: self.user.clone(),
            client_key: *self.cred.peer.key(),
            transport: self.transport.as_str(),
            started: self.started_wall,
            streams,
        }
    }
}

impl Registry {
    /// Register a session, or join the live TLS session of the same client
    /// key and ticket. `Err(limit-exceeded)` when a new one would pass a limit.
    pub(crate) fn attach(
        &self,
        cred: &Credentials,
        transport: TransportKind,
        limits: &Limits,
        wall: UnixTime,
    ) -> Result<Arc<Session>, DenyReason> {
        let ticket = cred.ticket.as_ref().ok_or(DenyReason::BadTicket)?.ticket();
        let mut sessions = lock(&self.sessions);
        if transport == TransportKind::Tls {
            let joined = sessions.values().find(|s| {
                s.transport == TransportKind::Tls
                    && s.cred.peer == cred.peer
                    && s.cred.ticket.as_ref().map(|t| t.ticket().id) == Some(ticket.id)
            });
            if let Some(s) = joined {
                s.attached.fetch_add(1, Ordering::Relaxed);
                return Ok(s.clone());
            }
        }
        let of_user = sessions.values().filter(|s| s.user == ticket.user).count();
        if sessions.len() >= limits.max_sessions || of_user >= limits.max_sessions_per_user {
            return Err(DenyReason::LimitExceeded);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let session = Arc::new(Session {
            id,
            user: ticket.user.clone(),
            cred: cred.clone(),
            transport,
            started_wall: wall,
            started: Instant::now(),
            kill: watch::channel(false).0,
            streams: Mutex::new(HashMap::new()),
            attached: AtomicUsize::new(1),
        });
        sessions.insert(id, session.clone());
        Ok(session)
    }

    /// Detach one connection; returns true when that ended the session.
    pub(crate) fn detach(&self, session: &Session) -> bool {
        let mut sessions = lock(&self.sessions);
        if session.attached.fetch_sub(1, Ordering::Relaxed) == 1 {
            sessions.remove(&session.id);
            return true;
        }
        false
    }

    pub(crate) fn kill(&self, id: u64) -> bool {
        match lock(&self.sessions).get(&id) {
            Some(s) => {
                s.kill.send_replace(true);
                true
            }
            None => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub(crate) fn snapshot(&self) -> Vec<SessionInfo> {
        let mut all: Vec<SessionInfo> = lock(&self.sessions).values().map(|s| s.info()).collect();
        all.sort_by_key(|s| s.id);
        all
    }
}
