//! The VPN's UDP and ICMP echo flows: no TCP stack, one socket of the
//! router's per flow. A UDP flow is one (source port, destination): a
//! connected UDP socket, whose answers go back as datagrams from the
//! destination to the engineer's port. An ICMP flow is one echo target: an
//! unprivileged ICMP socket (`SOCK_DGRAM`, `IPPROTO_ICMP`; the daemon's
//! group must be in `net.ipv4.ping_group_range`). The kernel gives such a
//! socket an identifier of its own and rewrites every request's, so the
//! flow numbers its requests itself and maps each reply back to the
//! engineer's identifier and sequence number. Both expire when idle
//! (`flows::IDLE`).

use super::flows::{FlowId, Key};
use super::packet;
use super::stack::{destination, guarded, Event, Flow, Record, Stack};
use crate::gateway::authorize::{Permit, Subject};
use crate::gateway::registry::Session;
use crate::gateway::Gateway;
use edgegate_proto::frame::FlowProtocol;
use smoltcp::wire::{Icmpv4DstUnreachable, Icmpv4Repr};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Packets waiting for a flow's socket; more are dropped (as a full link
/// drops them).
const QUEUE: usize = 4;
/// Echo requests remembered for their replies.
const ECHOES: usize = 64;
/// IPv4 and UDP headers around a UDP answer.
const UDP_OVERHEAD: usize = 28;

/// Whether the missing ping permission was logged already (once a run).
static PING_WARNED: AtomicBool = AtomicBool::new(false);

/// What goes out on a flow's socket.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A UDP payload.
    Udp(Vec<u8>),
    /// An echo request as the engineer sent it.
    Echo { ident: u16, seq: u16, data: Vec<u8> },
}

impl Outgoing {
    fn len(&self) -> usize {
        match self {
            Outgoing::Udp(p) => p.len(),
            Outgoing::Echo { data, .. } => data.len(),
        }
    }
}

/// One UDP or ICMP flow, as the stack holds it.
pub(crate) struct DatagramFlow {
    out: mpsc::Sender<Outgoing>,
    pub(crate) record: Record,
}

impl Stack {
    /// A UDP datagram or echo request from the engineer, `original` the
    /// whole packet (quoted in an ICMP answer).
    pub(crate) fn datagram(&mut self, key: Key, original: &[u8], out: Outgoing) {
        if let Some(id) = self.flows.id(&key) {
            self.flows.touch(id, Instant::now());
            if let Some(Flow::Datagram(d)) = self.flows.get_mut(id) {
                d.record.up += out.len() as u64;
                let _ = d.out.try_send(out);
            }
            return;
        }
        let (protocol, dst) = destination(key);
        let Ok((service, permit)) = self.admit(protocol, dst, 0) else {
            return self.prohibit(original, Icmpv4DstUnreachable::CommProhibited);
        };
        let socket = match open(key) {
            Ok(s) => s,
            Err(e) => {
                if protocol == FlowProtocol::Icmp {
                    if !PING_WARNED.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "vpn ping: cannot open an ICMP socket ({e}): add the daemon's group \
                             to sysctl net.ipv4.ping_group_range"
                        );
                    }
                } else {
                    tracing::warn!("vpn: cannot open a UDP socket to {dst}: {e}");
                }
                return self.prohibit(original, Icmpv4DstUnreachable::HostUnreachable);
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let first_len = out.len() as u64;
        let _ = tx.try_send(out);
        let task = FlowTask {
            gw: self.gw.clone(),
            session: self.session.clone(),
            id: 0,
            service: service.clone(),
            permit,
            key,
            engineer: self.address,
            mtu: self.mtu,
            socket,
            out: rx,
            events: self.events.clone(),
        };
        let inserted = self.flows.insert(key, 0, Instant::now(), |id| {
            let task = tokio::spawn(run(FlowTask { id, ..task }));
            Flow::Datagram(DatagramFlow {
                out: tx,
                record: Record {
                    service,
                    protocol,
                    destination: dst.to_string(),
                    started: Instant::now(),
                    up: first_len,
                    down: 0,
                    task,
                },
            })
        });
        debug_assert!(inserted.is_ok(), "admit checked the bounds");
    }
}

/// The router's socket for a flow, connected to its destination.
fn open(key: Key) -> std::io::Result<UdpSocket> {
    let socket = match key {
        Key::Udp(_, dst) => {
            let s = std::net::UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0)))?;
            s.connect(dst)?;
            s
        }
        Key::Echo(ip) => {
            use socket2::{Domain, Protocol, Socket, Type};
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4))?;
            s.connect(&SocketAddr::from((ip, 0)).into())?;
            std::net::UdpSocket::from(s)
        }
        Key::Tcp(..) => return Err(std::io::Error::other("not a datagram flow")),
    };
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

struct FlowTask {
    gw: Arc<Gateway>,
    session: Arc<Session>,
    id: FlowId,
    service: String,
    permit: Permit,
    key: Key,
    engineer: Ipv4Addr,
    mtu: usize,
    socket: UdpSocket,
    out: mpsc::Receiver<Outgoing>,
    events: mpsc::Sender<Event>,
}

async fn run(mut f: FlowTask) {
    let (gw, session, permit, events) = (
        f.gw.clone(),
        f.session.clone(),
        f.permit.clone(),
        f.events.clone(),
    );
    let service = f.service.clone();
    let subject = match f.key {
        Key::Echo(ip) => Subject::Echo {
            service: &service,
            address: ip.into(),
            over_limit: false,
        },
        _ => Subject::Stream {
            service: &service,
            destination: Some(destination(f.key).1),
            over_limit: false,
        },
    };
    let id = f.id;
    guarded(&gw, &session, subject, &permit, id, &events, pump(&mut f)).await;
}

/// Send what the engineer sends, answer with what comes back.
async fn pump(f: &mut FlowTask) {
    // (our sequence number, the engineer's identifier and sequence number)
    let mut echoes: VecDeque<(u16, u16, u16)> = VecDeque::new();
    let mut next_seq: u16 = 0;
    // One byte more than fits: a larger answer is seen and dropped.
    let mut buf = vec![0; f.mtu + 1];
    loop {
        tokio::select! {
            out = f.out.recv() => match out {
                None => return,
                Some(Outgoing::Udp(p)) => {
                    let _ = f.socket.send(&p).await;
                }
                Some(Outgoing::Echo { ident, seq, data }) => {
                    next_seq = next_seq.wrapping_add(1);
                    if echoes.len() == ECHOES {
                        echoes.pop_front();
                    }
                    echoes.push_back((next_seq, ident, seq));
                    let request = Icmpv4Repr::EchoRequest { ident: 0, seq_no: next_seq, data: &data };
                    let _ = f.socket.send(&packet::icmp(&request)).await;
                }
            },
            n = f.socket.recv(&mut buf) => {
                // Errors (an ICMP error for an earlier datagram) are the
                // destination's answer; nothing to pass on.
                let Ok(n) = n else { continue };
                let Some(p) = answer(f, &echoes, &buf[..n]) else { continue };
                if f.events.send(Event::Packet(f.id, p)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The packet for the engineer carrying what the socket received.
fn answer(f: &FlowTask, echoes: &VecDeque<(u16, u16, u16)>, got: &[u8]) -> Option<Vec<u8>> {
    match f.key {
        Key::Udp(port, dst) => {
            if got.len() + UDP_OVERHEAD > f.mtu {
                return None;
            }
            Some(packet::udp(dst, SocketAddrV4::new(f.engineer, port), got))
        }
        Key::Echo(ip) => {
            let (_, seq, data) = packet::echo_reply(got)?;
            let &(_, ident, their_seq) = echoes.iter().find(|e| e.0 == seq)?;
            let reply = Icmpv4Repr::EchoReply {
                ident,
                seq_no: their_seq,
                data,
            };
            Some(packet::icmp_packet(ip, f.engineer, &reply))
        }
        Key::Tcp(..) => None,
    }
}
