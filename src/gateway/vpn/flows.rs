//! A VPN session's flow table: which flow a packet belongs to, and the
//! session's bounds on flows (`limits.max_vpn_flows`), on the bytes they
//! may buffer (`limits.vpn_buffer`, what a TCP flow's buffers cost), and
//! on how long a UDP or ICMP flow lives without a packet
//! ([`IDLE`]). No I/O: the stack (`stack.rs`) holds the sockets in `T`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use tokio::time::Instant;

/// How long a UDP or ICMP flow lives after its last packet either way.
pub(crate) const IDLE: Duration = Duration::from_secs(60);

/// A flow's number, unique within its session.
pub(crate) type FlowId = u64;

/// What makes a packet part of a flow: one TCP connection, one UDP
/// (source port, destination), one ICMP echo target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// Engineer's source port, destination.
    Tcp(u16, SocketAddrV4),
    /// Engineer's source port, destination.
    Udp(u16, SocketAddrV4),
    /// The echo target.
    Echo(Ipv4Addr),
}

impl Key {
    /// Whether the flow ends when idle (UDP and ICMP have no end of their own).
    fn expires(self) -> bool {
        !matches!(self, Key::Tcp(..))
    }
}

/// Why a flow was not taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// `max_vpn_flows` flows are open.
    Flows,
    /// Its buffers would pass `vpn_buffer`.
    Bytes,
}

struct Entry<T> {
    key: Key,
    cost: usize,
    last: Instant,
    flow: T,
}

/// The flows of one session.
pub(crate) struct Table<T> {
    by_key: HashMap<Key, FlowId>,
    flows: HashMap<FlowId, Entry<T>>,
    next: FlowId,
    max_flows: usize,
    max_bytes: usize,
    bytes: usize,
}

impl<T> Table<T> {
    pub(crate) fn new(max_flows: usize, max_bytes: usize) -> Table<T> {
        Table {
            by_key: HashMap::new(),
            flows: HashMap::new(),
            next: 1,
            max_flows,
            max_bytes,
            bytes: 0,
        }
    }

    /// Whether a flow costing `cost` buffered bytes would be refused.
    pub(crate) fn check(&self, cost: usize) -> Result<(), Full> {
        if self.flows.len() >= self.max_flows {
            return Err(Full::Flows);
        }
        if self.bytes.saturating_add(cost) > self.max_bytes {
            return Err(Full::Bytes);
        }
        Ok(())
    }

    /// Whether a flow costing `cost` would leave the buffered bytes at or
    /// under half their bound.
    pub(crate) fn under_half(&self, cost: usize) -> bool {
        self.bytes.saturating_add(cost) <= self.max_bytes / 2
    }

    /// Take in a flow whose buffers cost `cost` bytes, at `now`; `flow`
    /// makes it, given its id.
    pub(crate) fn insert(
        &mut self,
        key: Key,
        cost: usize,
        now: Instant,
        flow: impl FnOnce(FlowId) -> T,
    ) -> Result<FlowId, Full> {
        self.check(cost)?;
        let id = self.next;
        let flow = flow(id);
        self.next += 1;
        self.bytes += cost;
        self.by_key.insert(key, id);
        let entry = Entry {
            key,
            cost,
            last: now,
            flow,
        };
        self.flows.insert(id, entry);
        Ok(id)
    }

    pub(crate) fn id(&self, key: &Key) -> Option<FlowId> {
        self.by_key.get(key).copied()
    }

    pub(crate) fn get_mut(&mut self, id: FlowId) -> Option<&mut T> {
        self.flows.get_mut(&id).map(|e| &mut e.flow)
    }

    /// A packet passed either way at `now`.
    pub(crate) fn touch(&mut self, id: FlowId, now: Instant) {
        if let Some(e) = self.flows.get_mut(&id) {
            e.last = now;
        }
    }

    /// Forget a flow; its buffers no longer count.
    pub(crate) fn remove(&mut self, id: FlowId) -> Option<(Key, T)> {
        let e = self.flows.remove(&id)?;
        self.by_key.remove(&e.key);
        self.bytes -= e.cost;
        Some((e.key, e.flow))
    }

    /// The UDP and ICMP flows idle for [`IDLE`] at `now`.
    pub(crate) fn idle(&self, now: Instant) -> Vec<FlowId> {
        self.flows
            .iter()
            .filter(|(_, e)| e.key.expires() && now.saturating_duration_since(e.last) >= IDLE)
            .map(|(id, _)| *id)
            .collect()
    }

    /// When the next UDP or ICMP flow turns idle, if any is open.
    pub(crate) fn next_idle(&self) -> Option<Instant> {
        self.flows
            .values()
            .filter(|e| e.key.expires())
            .map(|e| e.last + IDLE)
            .min()
    }

    pub(crate) fn ids(&self) -> Vec<FlowId> {
        self.flows.keys().copied().collect()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }

    /// Bytes the open flows' buffers may hold.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests;
