//! The VPN's TCP flows. A SYN for a new (source port, destination) is
//! decided first; allowed, the router connects to the destination and only
//! then lets smoltcp answer the SYN (a listening socket for exactly that
//! destination), so a destination that refuses gets a RST, as without the
//! VPN. Bytes then move between the smoltcp socket and the router's
//! connection with bounded buffers ([`Buffers`]): smoltcp's send buffer
//! towards the engineer (nothing more is read from the destination while
//! that is full), its receive buffer plus [`UP_CHUNKS`] chunks towards the
//! destination (the engineer's window closes while the destination does
//! not take them).

use super::flows::{FlowId, Key, Table};
use super::stack::{guarded, Event, Flow, Record, Stack};
use crate::gateway::authorize::{Permit, Subject};
use crate::gateway::registry::Session;
use crate::gateway::Gateway;
use bytes::Bytes;
use edgegate_proto::audit::CloseReason;
use edgegate_proto::frame::FlowProtocol;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};
use smoltcp::wire::{IpAddress, IpListenEndpoint};
use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::{timeout, Instant};

/// A flow's buffers: smoltcp's receive buffer (engineer → destination),
/// its send buffer (destination → engineer; also the most read from the
/// destination and not yet in it), and the size of one read from either
/// side ([`UP_CHUNKS`] of them on their way to the destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Buffers {
    rx: usize,
    tx: usize,
    chunk: usize,
}

impl Buffers {
    /// What the flow may buffer, counted against `limits.vpn_buffer`.
    pub(crate) const fn cost(self) -> usize {
        self.rx + self.tx + self.chunk * UP_CHUNKS
    }

    /// The buffers of the next TCP flow of a session whose flows are
    /// `flows`: [`BULK`] while they stay under half its budget with it,
    /// else [`SMALL`].
    pub(crate) fn for_next<T>(flows: &Table<T>) -> Buffers {
        if flows.under_half(BULK.cost()) {
            BULK
        } else {
            SMALL
        }
    }
}

/// A flow's buffers when the session's are at least half taken: 144 KiB,
/// 14 flows in the default `vpn_buffer` (2 MiB).
pub(crate) const SMALL: Buffers = Buffers {
    rx: 64 << 10,
    tx: 64 << 10,
    chunk: 8 << 10,
};
/// A flow's buffers while the session's stay under half its `vpn_buffer`
/// with them (the first flow, by default): a send buffer that holds the
/// round trip of a fast tunnel, so one download is not capped at 64 KiB a
/// round trip (`benches/vpn.sh`: 1.4x over TLS, 1.15x over QUIC, with
/// 256 KiB; over QUIC 512 KiB took one download from 0.62-0.78 to
/// 0.80-1.07 Gbit/s, more bought little). With it open a session still has
/// room for ten small flows, as many flows as before.
pub(crate) const BULK: Buffers = Buffers {
    rx: 64 << 10,
    tx: 512 << 10,
    chunk: 16 << 10,
};
/// Chunks on their way to the destination.
const UP_CHUNKS: usize = 2;
/// A connection the engineer stops acknowledging is dropped after this.
const STALL: Duration = Duration::from_secs(60);

/// One TCP flow, as the stack holds it.
pub(crate) struct TcpFlow {
    /// The smoltcp socket, once the destination accepted.
    pub(crate) handle: Option<SocketHandle>,
    buffers: Buffers,
    dst: SocketAddrV4,
    /// The engineer's SYN (the latest retransmission), held until the
    /// destination answers.
    syn: Option<Vec<u8>>,
    /// Bytes towards the destination; dropped when the engineer finished.
    up: Option<mpsc::Sender<Bytes>>,
    /// Bytes from the destination not yet in smoltcp's send buffer.
    pending: VecDeque<Bytes>,
    /// Bytes the flow's task may still read from the destination.
    credit: Arc<Semaphore>,
    /// Credit taken and not yet given back (`pending` + smoltcp's queue).
    held: usize,
    /// The destination finished sending.
    eof: bool,
    /// The engineer was sent a FIN.
    closing: bool,
    pub(crate) record: Record,
}

impl Stack {
    /// A TCP segment from the engineer.
    pub(crate) fn tcp_packet(&mut self, src_port: u16, dst: SocketAddrV4, syn: bool, p: Vec<u8>) {
        let key = Key::Tcp(src_port, dst);
        if let Some(id) = self.flows.id(&key) {
            if let Some(Flow::Tcp(t)) = self.flows.get_mut(id) {
                if t.handle.is_none() {
                    // Still connecting: keep the newest SYN, drop the rest.
                    if syn {
                        t.syn = Some(p);
                    }
                    return;
                }
            }
            return self.poll(Some(p));
        }
        if !syn {
            // No such connection: smoltcp answers with a RST.
            return self.poll(Some(p));
        }
        let buffers = Buffers::for_next(&self.flows);
        let cost = buffers.cost();
        let Ok((service, permit)) = self.admit(FlowProtocol::Tcp, dst.into(), cost) else {
            // Refused: no socket listens, smoltcp answers the SYN with a RST.
            return self.poll(Some(p));
        };
        let (up, up_rx) = mpsc::channel(UP_CHUNKS);
        let credit = Arc::new(Semaphore::new(buffers.tx));
        let task = FlowTask {
            gw: self.gw.clone(),
            session: self.session.clone(),
            id: 0,
            service: service.clone(),
            permit,
            dst,
            events: self.events.clone(),
            up: up_rx,
            credit: credit.clone(),
            chunk: buffers.chunk,
            wake: self.out.backlog.wake.clone(),
        };
        let inserted = self.flows.insert(key, cost, Instant::now(), |id| {
            let task = tokio::spawn(run(FlowTask { id, ..task }));
            Flow::Tcp(TcpFlow {
                handle: None,
                buffers,
                dst,
                syn: Some(p),
                up: Some(up),
                pending: VecDeque::new(),
                credit,
                held: 0,
                eof: false,
                closing: false,
                record: Record {
                    service,
                    protocol: FlowProtocol::Tcp,
                    destination: dst.to_string(),
                    started: Instant::now(),
                    up: 0,
                    down: 0,
                    task,
                },
            })
        });
        debug_assert!(inserted.is_ok(), "admit checked the bounds");
    }

    /// The destination accepted (the held SYN is answered) or refused (the
    /// SYN gets a RST).
    pub(crate) fn tcp_connected(&mut self, id: FlowId, result: Result<(), String>) {
        let Some(Flow::Tcp(t)) = self.flows.get_mut(id) else {
            return;
        };
        let syn = t.syn.take();
        match result {
            Ok(()) => {
                let mut socket = Socket::new(
                    SocketBuffer::new(vec![0; t.buffers.rx]),
                    SocketBuffer::new(vec![0; t.buffers.tx]),
                );
                socket.set_nagle_enabled(false);
                socket.set_timeout(Some(smoltcp::time::Duration::from_secs(STALL.as_secs())));
                let local = IpListenEndpoint {
                    addr: Some(IpAddress::Ipv4(*t.dst.ip())),
                    port: t.dst.port(),
                };
                if socket.listen(local).is_err() {
                    return self.close(id, CloseReason::Error("listen".into()));
                }
                t.handle = Some(self.sockets.add(socket));
                self.poll(syn);
            }
            Err(e) => {
                tracing::debug!(session = self.session.id, "vpn: {e}");
                self.close(id, CloseReason::Error(e));
                // No socket listens now: smoltcp answers with a RST.
                self.poll(syn);
            }
        }
    }

    /// Bytes from the destination.
    pub(crate) fn tcp_data(&mut self, id: FlowId, bytes: Bytes) {
        if let Some(Flow::Tcp(t)) = self.flows.get_mut(id) {
            t.held += bytes.len();
            t.record.down += bytes.len() as u64;
            t.pending.push_back(bytes);
        }
    }

    pub(crate) fn tcp_eof(&mut self, id: FlowId) {
        if let Some(Flow::Tcp(t)) = self.flows.get_mut(id) {
            t.eof = true;
        }
    }

    /// The destination's side failed: the engineer gets a RST.
    pub(crate) fn tcp_failed(&mut self, id: FlowId) {
        self.close(id, CloseReason::Error("reset by the destination".into()));
    }

    /// Move bytes between every TCP flow's smoltcp socket and its task;
    /// close the flows that ended.
    pub(crate) fn service(&mut self) {
        let mut ended = Vec::new();
        for id in self.flows.ids() {
            let Some(Flow::Tcp(t)) = self.flows.get_mut(id) else {
                continue;
            };
            let Some(h) = t.handle else {
                continue;
            };
            let socket = self.sockets.get_mut::<Socket>(h);
            if move_bytes(t, socket) {
                ended.push(id);
            }
        }
        for id in ended {
            self.close(id, CloseReason::Normal);
        }
    }
}

/// One flow's turn; `true` when it has ended.
fn move_bytes(t: &mut TcpFlow, socket: &mut Socket<'_>) -> bool {
    // Engineer → destination, as far as the task takes it.
    while socket.can_recv() {
        let Some(permit) = t.up.as_ref().and_then(|up| up.try_reserve().ok()) else {
            break;
        };
        let mut buf = vec![0; t.buffers.chunk];
        let n = socket.recv_slice(&mut buf).unwrap_or(0);
        buf.truncate(n);
        t.record.up += n as u64;
        permit.send(Bytes::from(buf));
    }
    let state = socket.state();
    let engineer_done = matches!(
        state,
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait | State::Closed
    );
    if engineer_done && socket.recv_queue() == 0 {
        // Passed on as a half-close.
        t.up = None;
    }
    // Destination → engineer, as far as the send buffer takes it.
    while let Some(front) = t.pending.front_mut() {
        let n = match socket.send_slice(front) {
            Ok(n) => n,
            Err(_) => break,
        };
        if n == front.len() {
            t.pending.pop_front();
        } else {
            let _ = front.split_to(n);
            break;
        }
    }
    let now_held = t.pending.iter().map(Bytes::len).sum::<usize>() + socket.send_queue();
    if now_held < t.held {
        t.credit.add_permits(t.held - now_held);
        t.held = now_held;
    }
    if t.eof && t.pending.is_empty() && !t.closing && socket.may_send() {
        socket.close();
        t.closing = true;
    }
    // A RST in SYN-RECEIVED puts a socket back to listening: ended too.
    matches!(state, State::Closed | State::TimeWait | State::Listen)
}

/// What a TCP flow's task needs.
struct FlowTask {
    gw: Arc<Gateway>,
    session: Arc<Session>,
    id: FlowId,
    service: String,
    permit: Permit,
    dst: SocketAddrV4,
    events: mpsc::Sender<Event>,
    up: mpsc::Receiver<Bytes>,
    credit: Arc<Semaphore>,
    /// One read from the destination.
    chunk: usize,
    wake: Arc<Notify>,
}

/// Connect and carry the flow's bytes, re-deciding it all along.
async fn run(mut f: FlowTask) {
    let (gw, session, permit, events) = (
        f.gw.clone(),
        f.session.clone(),
        f.permit.clone(),
        f.events.clone(),
    );
    let service = f.service.clone();
    let subject = Subject::Stream {
        service: &service,
        destination: Some(f.dst.into()),
        over_limit: false,
    };
    let id = f.id;
    guarded(&gw, &session, subject, &permit, id, &events, pump(&mut f)).await;
}

async fn pump(f: &mut FlowTask) {
    let limit = f.gw.config().limits.handshake_timeout;
    let tcp = match timeout(limit, TcpStream::connect(f.dst)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return connected(f, Err(format!("cannot reach {}: {e}", f.dst))).await,
        Err(_) => return connected(f, Err(format!("cannot reach {}: timed out", f.dst))).await,
    };
    let _ = tcp.set_nodelay(true);
    connected(f, Ok(())).await;
    let (mut from, mut to) = tcp.into_split();
    let (id, events, credit, wake) = (f.id, &f.events, &f.credit, &f.wake);
    let up_rx = &mut f.up;
    let up = async {
        while let Some(bytes) = up_rx.recv().await {
            to.write_all(&bytes).await?;
            wake.notify_one();
        }
        to.shutdown().await
    };
    let down = async {
        loop {
            let chunk = f.chunk;
            let Ok(permit) = credit.acquire_many(chunk as u32).await else {
                return Ok(());
            };
            permit.forget();
            let mut buf = vec![0; chunk];
            let n = match from.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    credit.add_permits(chunk);
                    return Err(e);
                }
            };
            credit.add_permits(chunk - n);
            if n == 0 {
                let _ = events.send(Event::Eof(id)).await;
                return Ok(());
            }
            buf.truncate(n);
            if events
                .send(Event::Data(id, Bytes::from(buf)))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    };
    if tokio::try_join!(up, down).is_err() {
        let _ = events.send(Event::Failed(id)).await;
    }
    // Both directions ended: the flow lives on until the stack closed it.
    std::future::pending::<()>().await;
}

async fn connected(f: &FlowTask, result: Result<(), String>) {
    let _ = f.events.send(Event::Connected(f.id, result)).await;
}

#[cfg(test)]
mod tests;
