//! The VPN, router side (DESIGN §9, `proto/TUNNEL.md` "The VPN"): a stream
//! whose first frame is `VpnOpen` gets the session an IPv4 address and the
//! routes of the `vpn` services it is allowed (`VpnReady`), then carries
//! the engineer's IP packets, as QUIC datagrams or `Packet` frames. Each
//! packet's flow is decided by [`Gateway::authorize`] (`decide_flow`) and
//! re-originated from the router's own sockets by the session's stack
//! (`vpn/stack.rs`); every flow is re-decided live by `stream_guard`, as a
//! stream is. The daemon needs no TUN and no network privilege.
//!
//! What the engineer's side does (the TUN device, routes) is the client's.

mod datagram;
mod denials;
mod flows;
mod packet;
mod stack;
mod tcp;

pub(crate) use stack::Record;

use super::authorize::{Permit, Scope, Subject};
use super::registry::Session;
use super::stream::OpenRequest;
use super::Gateway;
use crate::transport::{read_frame, BiStream, Connection, PipeReader, PipeWriter};
use edgegate_proto::audit::CloseReason;
use edgegate_proto::bundle::{Network, ServiceKind, Target};
use edgegate_proto::frame::{Frame, SessionEnd, VpnConfig, MAX_FRAME};
use edgegate_proto::{DenyReason, Level};
use stack::{Event, Stack};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, Notify};
use tokio::time::{sleep_until, Instant};

/// The VPN's address block (RFC 6598 shared address space, 100.64.0.0/10).
const BLOCK: u32 = 0x6440_0000;
/// Addresses in the block.
const BLOCK_SIZE: u32 = 1 << 22;
/// The packet size when packets ride `Packet` frames (TLS, a relay, or QUIC
/// without datagrams). A stream carries any size, so nothing ties it to a
/// link's MTU: large packets mean the engineer's TCP sends 32 KiB segments,
/// and each costs the client, the daemon and both kernels the work of one
/// packet instead of 23 (`benches/vpn.sh`: 0.7 to 2 Gbit/s for one flow
/// over TLS). The router's own sockets re-originate every flow, so the
/// machine network never sees these packets; a UDP datagram this large is
/// fragmented by the router's kernel there, as any host's would be.
const FRAMED_MTU: u16 = 32 << 10;
/// The bounds of the packet size over QUIC datagrams.
const DATAGRAM_MTU: (usize, usize) = (576, 1280);
/// Packets from the engineer waiting for the stack, and their bytes at
/// most (16 packets at the framed 32 KiB); more are dropped.
const INBOUND: usize = 256;
const INBOUND_BYTES: usize = 512 << 10;

/// The queue of packets from the engineer: bounded in packets and bytes.
#[derive(Clone)]
struct Inbound {
    tx: mpsc::Sender<Vec<u8>>,
    bytes: Arc<AtomicUsize>,
}

impl Inbound {
    /// Queue `p`, or drop it when the queue is full (as a congested link).
    fn offer(&self, p: Vec<u8>) {
        let len = p.len();
        if self.bytes.load(Ordering::Relaxed) + len > INBOUND_BYTES {
            return;
        }
        self.bytes.fetch_add(len, Ordering::Relaxed);
        if self.tx.try_send(p).is_err() {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
        }
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
/// Events of the flows' tasks waiting for the stack.
const EVENTS: usize = 256;

/// The VPN addresses of live sessions: unique among them, and one VPN per
/// session.
#[derive(Debug, Default)]
pub(crate) struct Addresses {
    live: Mutex<HashMap<u64, Ipv4Addr>>,
}

/// A session's VPN address, given back when dropped.
#[derive(Debug)]
struct Lease {
    addresses: Arc<Addresses>,
    session: u64,
    address: Ipv4Addr,
}

impl Drop for Lease {
    fn drop(&mut self) {
        lock(&self.addresses.live).remove(&self.session);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Addresses {
    /// An address for `session`, derived from its id (the first free one
    /// after it); `None` when the session has a VPN already.
    fn lease(self: &Arc<Self>, session: u64) -> Option<Lease> {
        let mut live = lock(&self.live);
        if live.contains_key(&session) {
            return None;
        }
        // Neither the block's first nor its last address.
        let span = u64::from(BLOCK_SIZE - 2);
        let mut offset = (session.wrapping_sub(1) % span) as u32;
        let address = loop {
            let a = Ipv4Addr::from(BLOCK + 1 + offset);
            if !live.values().any(|v| *v == a) {
                break a;
            }
            offset = (offset + 1) % (BLOCK_SIZE - 2);
        };
        live.insert(session, address);
        Some(Lease {
            addresses: self.clone(),
            session,
            address,
        })
    }
}

/// Bytes of packets on their way to the engineer (queued for the VPN
/// stream's writer, or waiting for QUIC's congestion window) past which the
/// stack sends no more TCP segments until some have left. smoltcp has no
/// congestion control and counts a segment as sent once built: without
/// this bound every flow's whole window would pile up in front of the
/// transport (or be dropped there), its round trips would include that
/// queue, and a flow behind others' bursts would time out and resend what
/// is still waiting. With it, what smoltcp counts as sent is on its way,
/// and a slow link makes the stack wait, not drop or resend.
const OUT_BYTES: usize = 256 << 10;

/// What is queued towards the engineer: the stack adds what it hands the
/// writer, the writer takes away what has left (and wakes the stack).
#[derive(Debug)]
pub(crate) struct Backlog {
    bytes: AtomicUsize,
    limit: usize,
    /// Wakes the stack: packets have left, or a flow's task made room for
    /// more bytes towards its destination.
    pub(crate) wake: Arc<Notify>,
}

impl Backlog {
    fn new(mtu: usize, wake: Arc<Notify>) -> Backlog {
        Backlog {
            bytes: AtomicUsize::new(0),
            limit: OUT_BYTES.max(4 * mtu),
            wake,
        }
    }

    /// Whether `len` more bytes fit.
    pub(crate) fn room(&self, len: usize) -> bool {
        self.bytes.load(Ordering::Relaxed) + len <= self.limit
    }

    fn add(&self, len: usize) {
        self.bytes.fetch_add(len, Ordering::Relaxed);
    }

    /// `len` bytes have left: the stack may send again.
    fn sent(&self, len: usize) {
        if len > 0 {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }
}

/// How packets and frames leave for the engineer: in order, to the task
/// that writes the VPN stream and, on QUIC, sends the datagrams.
pub(crate) struct Out {
    tx: mpsc::UnboundedSender<Frame>,
    pub(crate) backlog: Arc<Backlog>,
    /// UDP and ICMP packets a full backlog refused.
    dropped: u64,
}

impl Out {
    /// A packet the stack emitted (the device checked the backlog's room
    /// before smoltcp built it).
    pub(crate) fn packet(&mut self, p: Vec<u8>) {
        self.backlog.add(p.len());
        if let Err(mpsc::error::SendError(Frame::Packet(p))) = self.tx.send(Frame::Packet(p)) {
            self.backlog.sent(p.len());
        }
    }

    /// A packet from a UDP or ICMP flow, or an answer of the router's own:
    /// dropped when the backlog is full, as a congested link drops it (the
    /// datagram's sender retries, or does not care).
    pub(crate) fn datagram(&mut self, p: Vec<u8>) {
        if self.backlog.room(p.len()) {
            self.packet(p);
        } else {
            self.dropped += 1;
        }
    }

    /// One frame on the VPN stream.
    pub(crate) fn frame(&mut self, f: Frame) {
        let _ = self.tx.send(f);
    }
}

impl Gateway {
    /// Serve a stream that opened with `VpnOpen` to its end.
    pub(crate) async fn serve_vpn(
        self: &Arc<Self>,
        conn: Arc<dyn Connection>,
        session: &Arc<Session>,
        stream: BiStream,
        want_datagrams: bool,
    ) {
        let BiStream {
            id,
            recv,
            send: mut writer,
        } = stream;
        let max = self.config().limits.max_streams_per_session;
        let slot = session.reserve_stream(max);
        let lease = self.vpn_addresses.lease(session.id);
        let routes = match (&slot, &lease) {
            (None, _) | (_, None) => Err((String::new(), DenyReason::LimitExceeded)),
            _ => self.vpn_routes(session),
        };
        let service = match &routes {
            Ok((s, _)) | Err((s, _)) => s.clone(),
        };
        let open = OpenRequest {
            stream_id: id,
            service,
            destination: None,
        };
        self.audit.decision(
            session,
            &open,
            routes.as_ref().map(|_| Level::Manage).map_err(|(_, r)| r),
        );
        let (routes, slot, lease) = match (routes, slot, lease) {
            (Ok((_, routes)), Some(slot), Some(lease)) => (routes, slot, lease),
            (refused, _, _) => {
                let reason = refused.err().map_or(DenyReason::LimitExceeded, |(_, r)| r);
                let _ = writer.write_frame(&Frame::Denied { reason }).await;
                let _ = writer.finish().await;
                return;
            }
        };
        let max_datagram = conn.max_datagram_size().filter(|_| want_datagrams);
        let mtu = match max_datagram {
            Some(max) => max.clamp(DATAGRAM_MTU.0, DATAGRAM_MTU.1) as u16,
            None => FRAMED_MTU,
        };
        let ready = VpnConfig {
            address: lease.address,
            mtu,
            routes,
            datagrams: max_datagram.is_some(),
        };
        if writer.write_frame(&Frame::VpnReady(ready)).await.is_err() {
            return;
        }
        let stats = slot.fill(
            id,
            &open.service,
            Some(lease.address.to_string()),
            Level::Manage,
            self.now(),
        );
        self.audit.stream_opened(session, &stats);
        let datagrams = max_datagram.map(|_| conn.clone());
        let reason = self
            .run_vpn(
                session,
                lease.address,
                usize::from(mtu),
                datagrams,
                recv,
                writer,
            )
            .await;
        self.end_stream(session, id);
        self.audit.stream_closed(session, &stats, reason);
    }

    /// The routes of a new VPN: the networks (IPv4) of every `vpn` service
    /// the session is allowed now, and the first such service (audited as
    /// the stream's). `Err` with the first vpn service's reason when none
    /// is allowed (`unknown-service` when the device has none).
    fn vpn_routes(
        &self,
        session: &Session,
    ) -> Result<(String, Vec<Network>), (String, DenyReason)> {
        let active = self.active();
        let services = active.as_deref().map(|a| a.index.services());
        let mut first: Option<(String, DenyReason)> = None;
        let mut allowed: Option<String> = None;
        let mut routes = Vec::new();
        for s in services.into_iter().flatten() {
            if s.kind != ServiceKind::Vpn {
                continue;
            }
            match self.authorize_listing(&session.cred, &s.id, &s.target) {
                Ok(_) => {
                    allowed.get_or_insert_with(|| s.id.clone());
                    if let Target::Networks { networks, .. } = &s.target {
                        let v4 = networks.iter().filter(|n| n.addr.is_ipv4());
                        routes.extend(
                            v4.filter(|n| !routes.contains(*n))
                                .cloned()
                                .collect::<Vec<_>>(),
                        );
                    }
                }
                Err(r) => {
                    first.get_or_insert((s.id.clone(), r));
                }
            }
        }
        match allowed {
            Some(service) => Ok((service, routes)),
            None => Err(first.unwrap_or((String::new(), DenyReason::UnknownService))),
        }
    }

    /// Decide one VPN flow to `dst` (`echo`: an ICMP echo target, no port)
    /// with the one decision function: under the first `vpn` service whose
    /// networks contain it that allows it; refused, with the first such
    /// service's reason (or the first vpn service's, when none contains
    /// it). `over_limit`: the session's flow bounds are reached (step 7).
    /// A session-scope refusal ends the session, as for a stream.
    pub(crate) fn decide_flow(
        &self,
        session: &Session,
        dst: SocketAddr,
        echo: bool,
        over_limit: bool,
    ) -> (String, Result<Permit, DenyReason>) {
        let active = self.active();
        let vpns: Vec<(&str, bool)> = active
            .as_deref()
            .map(|a| {
                a.index
                    .services()
                    .filter(|s| s.kind == ServiceKind::Vpn)
                    .map(|s| (s.id.as_str(), contains(&s.target, dst.ip())))
                    .collect()
            })
            .unwrap_or_default();
        let mut candidates: Vec<&str> = vpns.iter().filter(|v| v.1).map(|v| v.0).collect();
        if candidates.is_empty() {
            // Decided anyway: the reason comes from the one function.
            candidates.extend(vpns.first().map(|v| v.0));
        }
        let mut refused: Option<(String, DenyReason)> = None;
        for service in candidates {
            let subject = match echo {
                true => Subject::Echo {
                    service,
                    address: dst.ip(),
                    over_limit,
                },
                false => Subject::Stream {
                    service,
                    destination: Some(dst),
                    over_limit,
                },
            };
            match self.authorize(&session.cred, subject).outcome {
                Ok(Some(permit)) => return (service.to_string(), Ok(permit)),
                Ok(None) => {}
                Err(r) => {
                    if r.scope == Scope::Session {
                        session.end(SessionEnd::Denied(r.reason));
                        return (service.to_string(), Err(r.reason));
                    }
                    refused.get_or_insert((service.to_string(), r.reason));
                }
            }
        }
        match refused {
            Some((service, r)) => (service, Err(r)),
            None => (String::new(), Err(DenyReason::UnknownService)),
        }
    }

    /// Carry the VPN's packets until the engineer closes it or the session
    /// ends; the close reason and the stream's writer, finished.
    async fn run_vpn(
        self: &Arc<Self>,
        session: &Arc<Session>,
        address: Ipv4Addr,
        mtu: usize,
        datagrams: Option<Arc<dyn Connection>>,
        recv: PipeReader,
        writer: PipeWriter,
    ) -> CloseReason {
        let (tx, mut inbound_rx) = mpsc::channel::<Vec<u8>>(INBOUND);
        let bytes = Arc::new(AtomicUsize::new(0));
        let inbound = Inbound {
            tx,
            bytes: bytes.clone(),
        };
        let taken = |p: &Vec<u8>| bytes.fetch_sub(p.len(), Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel::<Frame>();
        let (events, mut events_rx) = mpsc::channel::<Event>(EVENTS);
        let (read_done, mut reading) = tokio::sync::oneshot::channel();
        let wake = Arc::new(Notify::new());
        let backlog = Arc::new(Backlog::new(mtu, wake.clone()));
        let output = Output {
            rx,
            datagrams: datagrams.clone(),
            backlog: backlog.clone(),
        };
        let io = stream_io(recv, writer, inbound.clone(), output, read_done);
        let writing = tokio::spawn(io);
        let dgrams = datagrams.map(|conn| tokio::spawn(read_datagrams(conn, inbound)));
        let out = Out {
            tx,
            backlog,
            dropped: 0,
        };
        let mut stack = Stack::new(self.clone(), session.clone(), address, mtu, out, events);
        let mut ended = session.kill.subscribe();
        let far = Duration::from_secs(3600);
        let reason = loop {
            if *ended.borrow_and_update() {
                break crate::gateway::session::close_reason(session.end_reason());
            }
            let now = Instant::now();
            let at = [
                stack.delay().map(|d| now + d),
                stack.flows.next_idle(),
                stack.denials.due(),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + far);
            tokio::select! {
                p = inbound_rx.recv() => match p {
                    Some(p) => {
                        taken(&p);
                        stack.inbound(p);
                        // Those waiting behind it in the same turn: the
                        // sockets then answer all of them at once.
                        while let Ok(p) = inbound_rx.try_recv() {
                            taken(&p);
                            stack.inbound(p);
                        }
                    }
                    None => break CloseReason::Normal,
                },
                e = events_rx.recv() => if let Some(e) = e { stack.event(e) },
                _ = wake.notified() => {}
                _ = sleep_until(at) => {
                    stack.expire();
                    let now = Instant::now();
                    if stack.denials.due().is_some_and(|d| d <= now) {
                        let records = stack.denials.flush(now);
                        stack.audit_denials(records);
                    }
                }
                _ = ended.changed() => {}
                _ = &mut reading => break CloseReason::Normal,
            }
            stack.service();
            stack.poll(None);
        };
        stack.close_all(&reason);
        let drops = &stack.drops;
        tracing::debug!(
            session = session.id,
            spoofed = drops.spoofed,
            malformed = drops.malformed,
            oversize = drops.oversize,
            other = drops.other,
            unsent = stack.out.dropped,
            "vpn closed"
        );
        if let Some(d) = dgrams {
            d.abort();
        }
        drop(stack);
        if let Ok(mut writer) = writing.await {
            match (session.end_reason(), &writer) {
                // TLS: the stream says why the session ended. QUIC: the
                // connection's close does; a reset here could discard the
                // flows' `FlowClosed` notices still in flight.
                (Some(end), PipeWriter::Framed(_)) => writer.end_session(end).await,
                _ => {
                    let _ = writer.finish().await;
                }
            }
        }
        reason
    }
}

/// Whether a vpn service's networks contain `ip`.
fn contains(target: &Target, ip: IpAddr) -> bool {
    matches!(target, Target::Networks { networks, .. } if networks.iter().any(|n| n.contains(ip)))
}

/// The VPN stream's frames as a byte stream (both transports frame it).
fn frames_of(recv: PipeReader) -> Box<dyn AsyncRead + Send + Unpin> {
    match recv {
        PipeReader::Quic(r) => Box::new(r),
        PipeReader::Framed(r) => r,
    }
}

/// The VPN stream's reading and writing, in one task: a multiplexed
/// (yamux) stream wakes only one task for its sender, which its reads use
/// too (window updates), so halves polled from two tasks lose wake-ups.
/// `read_done` fires when the engineer's side ended; the writer is given
/// back once the stack dropped its frames' sender.
async fn stream_io(
    recv: PipeReader,
    writer: PipeWriter,
    inbound: Inbound,
    output: Output,
    read_done: tokio::sync::oneshot::Sender<()>,
) -> PipeWriter {
    let reading = read_packets(recv, inbound);
    let writing = write_out(writer, output);
    tokio::pin!(reading, writing);
    let mut read_done = Some(read_done);
    loop {
        tokio::select! {
            () = &mut reading, if read_done.is_some() => {
                if let Some(done) = read_done.take() {
                    let _ = done.send(());
                }
            }
            writer = &mut writing => return writer,
        }
    }
}

/// Packets from the VPN stream, until it ends or carries something else.
async fn read_packets(recv: PipeReader, inbound: Inbound) {
    let mut r = frames_of(recv);
    while let Ok(Some(Frame::Packet(p))) = read_frame(&mut r, MAX_FRAME).await {
        // A full queue drops, as a congested link does.
        inbound.offer(p);
    }
}

/// Packets from QUIC datagrams, until the connection ends.
async fn read_datagrams(conn: Arc<dyn Connection>, inbound: Inbound) {
    while let Ok(d) = conn.read_datagram().await {
        if inbound.is_closed() {
            return;
        }
        inbound.offer(d.to_vec());
    }
}

/// Most bytes of frames written at once (what is already queued is
/// gathered up to this).
const WRITE_BATCH: usize = 64 << 10;

/// What the stack sends, and how.
struct Output {
    rx: mpsc::UnboundedReceiver<Frame>,
    /// The connection, when packets ride its datagrams.
    datagrams: Option<Arc<dyn Connection>>,
    backlog: Arc<Backlog>,
}

/// Send the stack's packets and frames; the stream's writer back at the
/// end. Packets ride datagrams when there are any, each waiting for room in
/// QUIC's send buffer; else they are frames. The frames waiting are written
/// together with one flush: over TLS a write and flush per packet cost a
/// record and a system call each.
async fn write_out(mut writer: PipeWriter, output: Output) -> PipeWriter {
    let Output {
        mut rx,
        datagrams,
        backlog,
    } = output;
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut broken = false;
    while let Some(first) = rx.recv().await {
        batch.clear();
        let mut left = 0;
        let mut next = Some(first);
        while let Some(f) = next {
            match (f, &datagrams) {
                (Frame::Packet(p), Some(conn)) => {
                    let len = p.len();
                    // Too large for the path now, or the connection is
                    // gone: lost, as on a link.
                    let _ = conn.send_datagram_wait(bytes::Bytes::from(p)).await;
                    backlog.sent(len);
                }
                (f, _) => {
                    if let Frame::Packet(p) = &f {
                        left += p.len();
                    }
                    batch.extend_from_slice(&edgegate_proto::frame::encode(&f));
                }
            }
            next = match batch.len() < WRITE_BATCH {
                true => rx.try_recv().ok(),
                false => None,
            };
        }
        // A dead stream still takes the frames: the stack never waits on it.
        if !batch.is_empty() && !broken && writer.write_encoded(&batch).await.is_err() {
            broken = true;
        }
        backlog.sent(left);
    }
    writer
}
