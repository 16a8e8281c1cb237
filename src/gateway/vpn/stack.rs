//! One VPN session's user-space network stack, driven by one task: packets
//! from the engineer come in (`inbound`), each new flow is decided
//! (`Gateway::decide_flow`, the one decision function) and re-originated
//! from the router's own sockets (`tcp.rs`, `datagram.rs`); what those
//! sockets answer goes back as packets. TCP is terminated by smoltcp (an
//! `Interface` in `Medium::Ip` with AnyIP, so it answers for every
//! destination the engineer addresses); UDP and ICMP echo need no stack
//! and are read and built with `smoltcp::wire` (`packet.rs`).

use super::flows::{FlowId, Key, Table};
use super::packet::{self, Flow as Parsed};
use super::tcp::TcpFlow;
use super::{datagram, Backlog, Out};
use crate::gateway::authorize::{Permit, Subject};
use crate::gateway::redecide::GuardEnd;
use crate::gateway::registry::Session;
use crate::gateway::Gateway;
use bytes::Bytes;
use edgegate_proto::audit::CloseReason;
use edgegate_proto::frame::{FlowClosed, FlowProtocol};
use edgegate_proto::DenyReason;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::wire::{HardwareAddress, Icmpv4DstUnreachable, IpAddress, IpCidr};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The interface's own address: the gateway of its default route, which
/// is what AnyIP needs to take every destination as local. Never on a wire.
const IFACE_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);

/// Run a flow's `pump` under the live re-decision of `subject`, the
/// question that admitted it: a denial ends the pump and tells the stack
/// (`Event::Cut`); a session's end or the pump's own end just returns.
pub(super) async fn guarded(
    gw: &Gateway,
    session: &Session,
    subject: Subject<'_>,
    permit: &Permit,
    id: FlowId,
    events: &mpsc::Sender<Event>,
    pump: impl Future<Output = ()>,
) {
    tokio::select! {
        biased;
        end = gw.stream_guard(session, subject, permit) => {
            if let GuardEnd::Denied(r) = end {
                let _ = events.send(Event::Cut(id, r)).await;
            }
        }
        () = pump => {}
    }
}

/// What the flows' tasks tell the stack.
#[derive(Debug)]
pub(crate) enum Event {
    /// A TCP flow's connection to its destination: made, or why not.
    Connected(FlowId, Result<(), String>),
    /// Bytes from a TCP destination (their credit already taken).
    Data(FlowId, Bytes),
    /// The TCP destination finished sending.
    Eof(FlowId),
    /// The TCP destination's connection failed or was reset.
    Failed(FlowId),
    /// A packet for the engineer from a UDP or ICMP flow.
    Packet(FlowId, Vec<u8>),
    /// A re-decision cut the flow.
    Cut(FlowId, DenyReason),
}

/// One open flow.
pub(crate) enum Flow {
    Tcp(TcpFlow),
    Datagram(datagram::DatagramFlow),
}

/// What every flow records for its audit and `FlowClosed`.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) service: String,
    pub(crate) protocol: FlowProtocol,
    pub(crate) destination: String,
    pub(crate) started: Instant,
    pub(crate) up: u64,
    pub(crate) down: u64,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Drop for Record {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Packets dropped rather than carried, by cause (logged at the end).
#[derive(Debug, Default)]
pub(crate) struct Drops {
    pub(crate) spoofed: u64,
    pub(crate) malformed: u64,
    pub(crate) oversize: u64,
    pub(crate) other: u64,
}

/// The smoltcp device: the packet being processed in, the packets the
/// stack emitted out. It takes a packet only while the backlog towards the
/// engineer has room for it (`Backlog`); an answer to a packet coming in
/// (an ACK, a RST) is always taken.
pub(crate) struct Queue {
    rx: Option<Vec<u8>>,
    pub(crate) tx: Vec<Vec<u8>>,
    /// Bytes in `tx`.
    tx_bytes: usize,
    /// Take packets whatever the backlog (a cut flow's RST must leave).
    force: bool,
    mtu: usize,
    backlog: Arc<Backlog>,
}

pub(crate) struct Rx(Vec<u8>);
pub(crate) struct Tx<'a> {
    tx: &'a mut Vec<Vec<u8>>,
    bytes: &'a mut usize,
}

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        *self.bytes += len;
        self.tx.push(buf);
        r
    }
}

impl Device for Queue {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let p = self.rx.take()?;
        let tx = Tx {
            tx: &mut self.tx,
            bytes: &mut self.tx_bytes,
        };
        Some((Rx(p), tx))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        if !self.force && !self.backlog.room(self.tx_bytes + self.mtu) {
            return None;
        }
        Some(Tx {
            tx: &mut self.tx,
            bytes: &mut self.tx_bytes,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

/// The stack of one VPN session.
pub(crate) struct Stack {
    pub(crate) gw: Arc<Gateway>,
    pub(crate) session: Arc<Session>,
    pub(crate) address: Ipv4Addr,
    pub(crate) mtu: usize,
    pub(crate) iface: Interface,
    pub(crate) device: Queue,
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) flows: Table<Flow>,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) out: Out,
    epoch: Instant,
    pub(crate) drops: Drops,
    pub(crate) denials: super::denials::Denials,
}

impl Stack {
    pub(crate) fn new(
        gw: Arc<Gateway>,
        session: Arc<Session>,
        address: Ipv4Addr,
        mtu: usize,
        out: Out,
        events: mpsc::Sender<Event>,
    ) -> Stack {
        let mut device = Queue {
            rx: None,
            tx: Vec::new(),
            tx_bytes: 0,
            force: false,
            mtu,
            backlog: out.backlog.clone(),
        };
        let mut config = IfaceConfig::new(HardwareAddress::Ip);
        config.random_seed = rand::random();
        let epoch = Instant::now();
        let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(IFACE_ADDR), 32));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(IFACE_ADDR);
        iface.set_any_ip(true);
        let limits = &gw.config().limits;
        let flows = Table::new(limits.max_vpn_flows, limits.vpn_buffer);
        Stack {
            gw,
            session,
            address,
            mtu,
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            flows,
            events,
            out,
            epoch,
            drops: Drops::default(),
            denials: super::denials::Denials::default(),
        }
    }

    /// smoltcp's clock: time since the stack started, on tokio time.
    pub(crate) fn now(&self) -> smoltcp::time::Instant {
        let micros = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_micros();
        smoltcp::time::Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// Run smoltcp: process `packet` if any, then what its sockets have to
    /// send; what it emitted goes to the engineer.
    pub(crate) fn poll(&mut self, packet: Option<Vec<u8>>) {
        let now = self.now();
        match packet {
            // A packet in, and what smoltcp answers to it at once (an ACK
            // to data, a RST): the sockets send at the end of the stack's
            // turn (`None`), once for all the packets that came in
            // together, not once per packet over every socket.
            Some(p) => {
                self.device.rx = Some(p);
                self.iface
                    .poll_ingress_single(now, &mut self.device, &mut self.sockets);
                self.device.rx = None;
            }
            // Every socket sends what it may (smoltcp 0.13 passes over them
            // until none has more, or the backlog is full).
            None => {
                self.iface.poll(now, &mut self.device, &mut self.sockets);
            }
        }
        self.flush();
    }

    /// Send what the stack emitted.
    pub(crate) fn flush(&mut self) {
        self.device.tx_bytes = 0;
        for p in std::mem::take(&mut self.device.tx) {
            self.out.packet(p);
        }
    }

    /// How long until smoltcp wants to be polled again.
    pub(crate) fn delay(&mut self) -> Option<Duration> {
        let now = self.now();
        self.iface
            .poll_delay(now, &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
    }

    /// One packet from the engineer.
    pub(crate) fn inbound(&mut self, p: Vec<u8>) {
        if p.len() > self.mtu {
            self.drops.oversize += 1;
            return;
        }
        let flow = match packet::parse(&p) {
            Ok((src, _)) if src != self.address => {
                self.drops.spoofed += 1;
                return;
            }
            Ok((_, flow)) => flow,
            Err(_) => {
                self.drops.malformed += 1;
                return;
            }
        };
        match flow {
            Parsed::Tcp { src_port, dst, syn } => self.tcp_packet(src_port, dst, syn, p),
            Parsed::Udp {
                src_port,
                dst,
                payload,
            } => {
                let out = datagram::Outgoing::Udp(payload.to_vec());
                self.datagram(Key::Udp(src_port, dst), &p, out);
            }
            Parsed::Echo {
                dst,
                ident,
                seq,
                data,
            } => {
                let out = datagram::Outgoing::Echo {
                    ident,
                    seq,
                    data: data.to_vec(),
                };
                self.datagram(Key::Echo(dst), &p, out);
            }
            Parsed::Other => self.drops.other += 1,
        }
    }

    /// Decide a new flow to `dst` (`echo`: an ICMP echo target) with the
    /// flow table's bounds as step 7. `Err` after answering the refusal.
    pub(crate) fn admit(
        &mut self,
        protocol: FlowProtocol,
        dst: SocketAddr,
        cost: usize,
    ) -> Result<(String, crate::gateway::authorize::Permit), (String, DenyReason)> {
        let full = self.flows.check(cost).err();
        let echo = protocol == FlowProtocol::Icmp;
        let (service, outcome) = self
            .gw
            .decide_flow(&self.session, dst, echo, full.is_some());
        match outcome {
            Ok(permit) => Ok((service, permit)),
            Err(reason) => {
                if let Some(full) = full {
                    tracing::debug!(session = self.session.id, ?full, "vpn flow over the limit");
                }
                let what = format!("{} {dst}", protocol.as_str());
                let records = self.denials.deny(Instant::now(), what, reason);
                self.audit_denials(records);
                Err((service, reason))
            }
        }
    }

    /// Write refusal records (`denials.rs` decides when).
    pub(crate) fn audit_denials(&self, records: impl IntoIterator<Item = super::denials::Denied>) {
        for r in records {
            self.gw
                .audit
                .flows_denied(&self.session, r.what, r.reason, r.count);
        }
    }

    /// Answer a refused UDP or ICMP packet: administratively prohibited.
    pub(crate) fn prohibit(&mut self, original: &[u8], code: Icmpv4DstUnreachable) {
        if let Some(answer) = packet::unreachable(original, code) {
            self.out.datagram(answer);
        }
    }

    /// Close a flow: audit it, tell the engineer if it was cut.
    pub(crate) fn close(&mut self, id: FlowId, reason: CloseReason) {
        let Some((_, flow)) = self.flows.remove(id) else {
            return;
        };
        let record = match flow {
            Flow::Tcp(mut t) => {
                if let Some(h) = t.handle.take() {
                    let socket = self.sockets.get_mut::<smoltcp::socket::tcp::Socket>(h);
                    if socket.is_open() {
                        socket.abort();
                    }
                    // The RST leaves before the socket is forgotten, even
                    // past a full backlog.
                    let now = self.now();
                    self.device.force = true;
                    self.iface.poll(now, &mut self.device, &mut self.sockets);
                    self.device.force = false;
                    self.sockets.remove(h);
                    self.flush();
                }
                t.record
            }
            Flow::Datagram(d) => d.record,
        };
        if let CloseReason::Denied(r) = reason {
            self.out
                .frame(edgegate_proto::frame::Frame::FlowClosed(FlowClosed {
                    service: record.service.clone(),
                    protocol: record.protocol,
                    destination: record.destination.clone(),
                    reason: r,
                    cut: true,
                }));
        }
        self.gw
            .audit
            .vpn_flow_closed(&self.session, &record, reason);
    }

    /// An event from a flow's task.
    pub(crate) fn event(&mut self, e: Event) {
        match e {
            Event::Cut(id, r) => self.close(id, CloseReason::Denied(r)),
            Event::Packet(id, p) => {
                let now = Instant::now();
                self.flows.touch(id, now);
                if let Some(Flow::Datagram(d)) = self.flows.get_mut(id) {
                    d.record.down += p.len() as u64;
                }
                if p.len() <= self.mtu {
                    self.out.datagram(p);
                } else {
                    self.drops.oversize += 1;
                }
            }
            Event::Connected(id, r) => self.tcp_connected(id, r),
            Event::Data(id, bytes) => self.tcp_data(id, bytes),
            Event::Eof(id) => self.tcp_eof(id),
            Event::Failed(id) => self.tcp_failed(id),
        }
    }

    /// Close the UDP and ICMP flows idle for too long.
    pub(crate) fn expire(&mut self) {
        for id in self.flows.idle(Instant::now()) {
            self.close(id, CloseReason::IdleTimeout);
        }
    }

    /// Close every flow (the VPN ends).
    pub(crate) fn close_all(&mut self, reason: &CloseReason) {
        for id in self.flows.ids() {
            self.close(id, reason.clone());
        }
        let last = self.denials.flush(Instant::now());
        self.audit_denials(last);
    }
}

/// The destination of a key, as audited and reported.
pub(crate) fn destination(key: Key) -> (FlowProtocol, SocketAddr) {
    match key {
        Key::Tcp(_, d) => (FlowProtocol::Tcp, SocketAddr::V4(d)),
        Key::Udp(_, d) => (FlowProtocol::Udp, SocketAddr::V4(d)),
        Key::Echo(a) => (FlowProtocol::Icmp, SocketAddr::V4(SocketAddrV4::new(a, 0))),
    }
}
