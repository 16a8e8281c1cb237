//! The IPv4 packets of a VPN session, read and written with
//! `smoltcp::wire`: what the stack needs to know of an incoming packet
//! before it is decided (its flow), and the packets the daemon builds
//! itself (UDP answers, ICMP echo replies and unreachables). TCP segments
//! are the stack's (`stack.rs`); no I/O here.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket, UdpRepr,
};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Hop limit of the packets the daemon builds.
const TTL: u8 = 64;

/// Bytes of the offending datagram an ICMP error quotes after its header.
const QUOTE: usize = 8;

/// What an incoming packet is, as far as deciding it goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow<'a> {
    /// A TCP segment; `syn` when it opens a connection (SYN without ACK).
    Tcp {
        src_port: u16,
        dst: SocketAddrV4,
        syn: bool,
    },
    /// A UDP datagram.
    Udp {
        src_port: u16,
        dst: SocketAddrV4,
        payload: &'a [u8],
    },
    /// An ICMP echo request.
    Echo {
        dst: Ipv4Addr,
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// Anything else (other protocols, other ICMP messages): dropped.
    Other,
}

/// A packet that is not a well-formed, unfragmented IPv4 packet with valid
/// checksums.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// The source address and flow of `packet`.
pub(crate) fn parse(packet: &[u8]) -> Result<(Ipv4Addr, Flow<'_>), Malformed> {
    let caps = ChecksumCapabilities::default();
    let ip = Ipv4Packet::new_checked(packet).map_err(|_| Malformed)?;
    let repr = Ipv4Repr::parse(&ip, &caps).map_err(|_| Malformed)?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(Malformed);
    }
    let payload = ip.payload();
    let (src, dst) = (repr.src_addr, repr.dst_addr);
    let flow = match repr.next_header {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(payload).map_err(|_| Malformed)?;
            if !tcp.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst)) {
                return Err(Malformed);
            }
            Flow::Tcp {
                src_port: tcp.src_port(),
                dst: SocketAddrV4::new(dst, tcp.dst_port()),
                syn: tcp.syn() && !tcp.ack() && !tcp.rst(),
            }
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(payload).map_err(|_| Malformed)?;
            let (s, d) = (IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
            UdpRepr::parse(&udp, &s, &d, &caps).map_err(|_| Malformed)?;
            Flow::Udp {
                src_port: udp.src_port(),
                dst: SocketAddrV4::new(dst, udp.dst_port()),
                payload: udp.payload(),
            }
        }
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(payload).map_err(|_| Malformed)?;
            match Icmpv4Repr::parse(&icmp, &caps).map_err(|_| Malformed)? {
                Icmpv4Repr::EchoRequest {
                    ident,
                    seq_no,
                    data,
                } => Flow::Echo {
                    dst,
                    ident,
                    seq: seq_no,
                    data,
                },
                _ => Flow::Other,
            }
        }
        _ => Flow::Other,
    };
    Ok((src, flow))
}

/// An IPv4 packet from `src` to `dst` carrying `len` bytes of `protocol`,
/// the payload written by `fill`.
fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len: len,
        hop_limit: TTL,
    };
    let mut buf = vec![0u8; repr.buffer_len() + len];
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[..]);
    repr.emit(&mut ip, &ChecksumCapabilities::default());
    fill(ip.payload_mut());
    buf
}

/// A UDP datagram from `src` to `dst`.
pub(crate) fn udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let len = repr.header_len() + payload.len();
    ipv4(*src.ip(), *dst.ip(), IpProtocol::Udp, len, |buf| {
        let mut udp = UdpPacket::new_unchecked(buf);
        repr.emit(
            &mut udp,
            &IpAddress::Ipv4(*src.ip()),
            &IpAddress::Ipv4(*dst.ip()),
            payload.len(),
            |p| p.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        );
    })
}

/// An ICMP message alone (no IP header), as an ICMP socket sends it.
pub(crate) fn icmp(repr: &Icmpv4Repr<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut buf[..]),
        &ChecksumCapabilities::default(),
    );
    buf
}

/// An ICMP message in an IPv4 packet from `src` to `dst`.
pub(crate) fn icmp_packet(src: Ipv4Addr, dst: Ipv4Addr, repr: &Icmpv4Repr<'_>) -> Vec<u8> {
    ipv4(src, dst, IpProtocol::Icmp, repr.buffer_len(), |buf| {
        repr.emit(
            &mut Icmpv4Packet::new_unchecked(buf),
            &ChecksumCapabilities::default(),
        );
    })
}

/// The echo reply an ICMP socket received (ICMP header and data, no IP
/// header): its identifier, sequence number and data.
pub(crate) fn echo_reply(icmp: &[u8]) -> Option<(u16, u16, &[u8])> {
    let packet = Icmpv4Packet::new_checked(icmp).ok()?;
    if packet.msg_type() != Icmpv4Message::EchoReply {
        return None;
    }
    // The kernel checked the checksum (and rewrote the identifier).
    match Icmpv4Repr::parse(&packet, &ChecksumCapabilities::ignored()).ok()? {
        Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        } => Some((ident, seq_no, data)),
        _ => None,
    }
}

/// ICMP destination unreachable (`code`) for `original`, from its
/// destination back to its source. `None` when `original` is no IPv4
/// packet (nothing is answered to garbage).
pub(crate) fn unreachable(original: &[u8], code: Icmpv4DstUnreachable) -> Option<Vec<u8>> {
    let ip = Ipv4Packet::new_checked(original).ok()?;
    let header = Ipv4Repr::parse(&ip, &ChecksumCapabilities::ignored()).ok()?;
    let payload = ip.payload();
    let repr = Icmpv4Repr::DstUnreachable {
        reason: code,
        header,
        data: &payload[..payload.len().min(QUOTE)],
    };
    Some(icmp_packet(header.dst_addr, header.src_addr, &repr))
}

#[cfg(test)]
mod tests;
