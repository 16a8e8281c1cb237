//! Live sessions and their streams: who, over what, since when, how many
//! bytes; the session limits; the per-session kill switch. One connection
//! is one session, over QUIC and TLS alike.

use super::authorize::Credentials;
use crate::config::Limits;
use edgegate_proto::audit::Transport;
use edgegate_proto::control::{SessionInfo, StreamInfo};
use edgegate_proto::frame::SessionEnd;
use edgegate_proto::ticket::TicketId;
use edgegate_proto::{DenyReason, Level, UnixTime};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;
use tokio::time::Instant;

/// One live session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) user: String,
    pub(crate) cred: Credentials,
    pub(crate) transport: Transport,
    pub(crate) remote: String,
    pub(crate) ends_at: UnixTime,
    pub(crate) started_wall: UnixTime,
    pub(crate) started: Instant,
    /// Fires when the session must end (see `end`) or has ended.
    pub(crate) kill: watch::Sender<bool>,
    /// Why the daemon ended the session; the first reason wins.
    end: Mutex<Option<SessionEnd>>,
    streams: Mutex<HashMap<u64, Arc<StreamStats>>>,
    /// Stream slots taken by streams being decided or connected (under the
    /// `streams` lock's discipline: counted with them against the limit).
    reserved: AtomicUsize,
    /// When a stream last opened or closed (idle timeout).
    last_activity: Mutex<Instant>,
}

/// Counters of one live stream, shared with its pumps.
#[derive(Debug)]
pub(crate) struct StreamStats {
    pub(crate) service: String,
    pub(crate) destination: Option<String>,
    pub(crate) level: Level,
    pub(crate) up: AtomicU64,
    pub(crate) down: AtomicU64,
    pub(crate) started: Instant,
    pub(crate) started_wall: UnixTime,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: Mutex<HashMap<u64, Arc<Session>>>,
    next_id: AtomicU64,
    /// Tickets of killed sessions, refused from then on (oldest forgotten
    /// first past `MAX_KILLED`; by then they have long expired). The store
    /// keeps them across restarts (`Store::bar_ticket`).
    killed: Mutex<std::collections::VecDeque<TicketId>>,
}

/// How many killed tickets are remembered.
const MAX_KILLED: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Session {
    /// End the whole session for `why`: every connection and stream of it
    /// closes at once (they all wait on `kill`). A second reason is ignored.
    pub(crate) fn end(&self, why: SessionEnd) {
        lock(&self.end).get_or_insert(why);
        self.kill.send_replace(true);
    }

    /// Why the daemon ended the session, if it did.
    pub(crate) fn end_reason(&self) -> Option<SessionEnd> {
        *lock(&self.end)
    }

    /// Take a stream slot unless the session is at its stream limit. The
    /// slot counts against the limit until it is filled or dropped.
    pub(crate) fn reserve_stream(&self, max: usize) -> Option<StreamSlot<'_>> {
        let streams = lock(&self.streams);
        if streams.len() + self.reserved.load(Ordering::Acquire) >= max {
            return None;
        }
        self.reserved.fetch_add(1, Ordering::AcqRel);
        Some(StreamSlot { session: self })
    }

    pub(crate) fn remove_stream(&self, id: u64) {
        lock(&self.streams).remove(&id);
        *lock(&self.last_activity) = Instant::now();
    }

    /// When the session becomes idle if nothing happens: `None` while a
    /// stream is open.
    pub(crate) fn idle_deadline(&self, idle: std::time::Duration) -> Option<Instant> {
        let streams = lock(&self.streams);
        if !streams.is_empty() {
            return None;
        }
        Some(crate::clock::after(*lock(&self.last_activity), idle))
    }

    pub(crate) fn stream_count(&self) -> usize {
        lock(&self.streams).len()
    }

    fn info(&self) -> SessionInfo {
        let mut streams: Vec<(u64, StreamInfo)> = lock(&self.streams)
            .iter()
            .map(|(id, s)| {
                let info = StreamInfo {
                    service: s.service.clone(),
                    destination: s.destination.clone(),
                    level: s.level,
                    bytes_up: s.up.load(Ordering::Relaxed),
                    bytes_down: s.down.load(Ordering::Relaxed),
                    started: s.started_wall,
                };
                (*id, info)
            })
            .collect();
        streams.sort_by_key(|(id, _)| *id);
        SessionInfo {
            id: self.id,
            user: self.user.clone(),
            client_key: *self.cred.peer.key(),
            transport: self.transport,
            peer: self.remote.clone(),
            started: self.started_wall,
            ends_at: Some(self.ends_at),
            streams: streams.into_iter().map(|(_, s)| s).collect(),
        }
    }
}

/// A stream slot of a session, taken before the stream is decided.
#[derive(Debug)]
pub(crate) struct StreamSlot<'a> {
    session: &'a Session,
}

impl StreamSlot<'_> {
    /// The stream is open (since `now`, wall time): it holds a place of its
    /// own until `remove_stream`, and the reservation is given back.
    pub(crate) fn fill(
        self,
        id: u64,
        service: &str,
        destination: Option<String>,
        level: Level,
        now: UnixTime,
    ) -> Arc<StreamStats> {
        let stats = Arc::new(StreamStats {
            service: service.to_string(),
            destination,
            level,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            started: Instant::now(),
            started_wall: now,
        });
        // Under one lock: a concurrent `reserve_stream` sees the stream or
        // its reservation, never both and never neither.
        let mut streams = lock(&self.session.streams);
        streams.insert(id, stats.clone());
        self.session.reserved.fetch_sub(1, Ordering::AcqRel);
        *lock(&self.session.last_activity) = Instant::now();
        drop(streams);
        std::mem::forget(self);
        stats
    }
}

impl Drop for StreamSlot<'_> {
    /// Never filled: give the reservation back.
    fn drop(&mut self) {
        let _streams = lock(&self.session.streams);
        self.session.reserved.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Registry {
    /// Register a session. `Err(limit-exceeded)` when it would pass a
    /// limit. `now` is the gateway's wall time.
    pub(crate) fn attach(
        &self,
        cred: Credentials,
        transport: Transport,
        remote: String,
        ends_at: UnixTime,
        now: UnixTime,
        limits: &Limits,
    ) -> Result<Arc<Session>, DenyReason> {
        let ticket = cred.ticket.as_ref().ok_or(DenyReason::BadTicket)?.ticket();
        let mut sessions = lock(&self.sessions);
        // Sessions the daemon already ended hold no slot while their
        // connections wind down.
        let live = || sessions.values().filter(|s| s.end_reason().is_none());
        let of_user = live().filter(|s| s.user == ticket.user).count();
        if live().count() >= limits.max_sessions || of_user >= limits.max_sessions_per_user {
            return Err(DenyReason::LimitExceeded);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let session = Arc::new(Session {
            id,
            user: ticket.user.clone(),
            cred,
            transport,
            remote,
            ends_at,
            started_wall: now,
            started: Instant::now(),
            kill: watch::channel(false).0,
            end: Mutex::new(None),
            streams: Mutex::new(HashMap::new()),
            reserved: AtomicUsize::new(0),
            last_activity: Mutex::new(Instant::now()),
        });
        sessions.insert(id, session.clone());
        Ok(session)
    }

    /// The session's connection is gone: forget the session. Returns false
    /// when it was already forgotten.
    pub(crate) fn detach(&self, session: &Session) -> bool {
        let removed = lock(&self.sessions).remove(&session.id).is_some();
        // Stops the guards; the end reason stays as it was (none: the
        // client went away).
        session.kill.send_replace(true);
        removed
    }

    /// Kill a session; its ticket cannot open a session again (the
    /// engineer needs a fresh ticket, which the cloud decides anew).
    /// `None`: no such session; else the ticket barred and its expiry, for
    /// the store to keep across restarts.
    pub(crate) fn kill(&self, id: u64) -> Option<Option<(TicketId, UnixTime)>> {
        let s = lock(&self.sessions).get(&id).cloned()?;
        let barred = s.cred.ticket.as_ref().map(|t| {
            self.bar(t.ticket().id);
            (t.ticket().id, t.ticket().expires_at)
        });
        s.end(SessionEnd::Killed);
        Some(barred)
    }

    /// Refuse this ticket from now on (a killed session's, also those the
    /// store kept from before a restart).
    pub(crate) fn bar(&self, ticket: TicketId) {
        let mut killed = lock(&self.killed);
        if killed.contains(&ticket) {
            return;
        }
        if killed.len() >= MAX_KILLED {
            killed.pop_front();
        }
        killed.push_back(ticket);
    }

    /// Whether this ticket belonged to a killed session.
    pub(crate) fn is_killed(&self, ticket: &TicketId) -> bool {
        lock(&self.killed).contains(ticket)
    }

    /// Ask every session to end (shutdown), without barring their tickets.
    pub(crate) fn end_all(&self) {
        for s in lock(&self.sessions).values() {
            s.end(SessionEnd::Shutdown);
        }
    }

    /// Every live session (for re-deciding them all).
    pub(crate) fn all(&self) -> Vec<Arc<Session>> {
        lock(&self.sessions).values().cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Streams open in all sessions together.
    pub(crate) fn live_streams(&self) -> usize {
        lock(&self.sessions)
            .values()
            .map(|s| s.stream_count())
            .sum()
    }

    pub(crate) fn snapshot(&self) -> Vec<SessionInfo> {
        let mut all: Vec<SessionInfo> = lock(&self.sessions).values().map(|s| s.info()).collect();
        all.sort_by_key(|s| s.id);
        all
    }
}
