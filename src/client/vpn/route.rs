//! One route through the VPN's interface, added over rtnetlink: the
//! `RTM_NEWROUTE` that `ip route add CIDR dev IFACE` sends, built here (44
//! bytes; no netlink crate for one message). In-process rather than by
//! running `ip`: a client given `CAP_NET_ADMIN` as a file capability
//! (`setcap`) keeps it, where a child `ip` would not inherit it. Nothing
//! removes the routes: the kernel does, with the interface.

use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol};
use nix::sys::time::TimeVal;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

/// `RTM_NEWROUTE`.
const RTM_NEWROUTE: u16 = 24;
/// `NLMSG_ERROR`: the kernel's answer (an error of 0 is the ack).
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE`: add, never
/// replace a route the system already has.
const FLAGS: u16 = 0x1 | 0x4 | 0x200 | 0x400;
/// `RT_TABLE_MAIN`, `RTPROT_BOOT` (what `ip route add` marks), `RT_SCOPE_LINK`
/// (no gateway: the interface's own link), `RTN_UNICAST`.
const RTMSG: [u8; 4] = [254, 3, 253, 1];
/// `AF_INET`.
const AF_INET: u8 = 2;
/// `RTA_DST` and `RTA_OIF`.
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;

/// The request for `dst/prefix dev ifindex`.
fn new_route(dst: Ipv4Addr, prefix: u8, ifindex: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(44);
    m.extend(44u32.to_ne_bytes());
    m.extend(RTM_NEWROUTE.to_ne_bytes());
    m.extend(FLAGS.to_ne_bytes());
    m.extend(1u32.to_ne_bytes()); // sequence
    m.extend(0u32.to_ne_bytes()); // port id: the kernel's
    m.extend([AF_INET, prefix, 0, 0]); // family, dst_len, src_len, tos
    m.extend(RTMSG);
    m.extend(0u32.to_ne_bytes()); // rtm_flags
    m.extend(8u16.to_ne_bytes());
    m.extend(RTA_DST.to_ne_bytes());
    m.extend(dst.octets());
    m.extend(8u16.to_ne_bytes());
    m.extend(RTA_OIF.to_ne_bytes());
    m.extend(ifindex.to_ne_bytes());
    m
}

/// The kernel's answer: `Ok` for the ack, its errno otherwise.
fn answer(reply: &[u8]) -> io::Result<()> {
    let field = |at: usize, n: usize| reply.get(at..at + n);
    let kind = field(4, 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let error = field(16, 4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, error) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(e)) => Err(io::Error::from_raw_os_error(-e)),
        _ => Err(io::Error::other("unexpected netlink answer")),
    }
}

/// Route `dst/prefix` through the interface `name`.
pub(super) fn add(dst: Ipv4Addr, prefix: u8, name: &str) -> io::Result<()> {
    let ifindex = nix::net::if_::if_nametoindex(name)?;
    let fd = socket::socket(
        AddressFamily::Netlink,
        socket::SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &TimeVal::new(5, 0))?;
    let request = new_route(dst, prefix, ifindex);
    socket::sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut reply = [0u8; 1024];
    let n = socket::recv(fd.as_raw_fd(), &mut reply, MsgFlags::empty())?;
    answer(&reply[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_what_ip_route_add_sends() {
        let m = new_route(Ipv4Addr::new(192, 168, 77, 0), 24, 7);
        assert_eq!(m.len(), 44);
        assert_eq!(&m[..4], &44u32.to_ne_bytes());
        assert_eq!(&m[4..6], &24u16.to_ne_bytes());
        assert_eq!(&m[6..8], &0x0605u16.to_ne_bytes());
        assert_eq!(&m[16..28], &[2, 24, 0, 0, 254, 3, 253, 1, 0, 0, 0, 0]);
        assert_eq!(&m[28..30], &8u16.to_ne_bytes());
        assert_eq!(&m[30..32], &RTA_DST.to_ne_bytes());
        assert_eq!(&m[32..36], &[192, 168, 77, 0]);
        assert_eq!(&m[40..44], &7u32.to_ne_bytes());
    }

    #[test]
    fn the_answer_is_the_ack_or_an_errno() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert!(answer(&ack).is_ok());
        ack[16..20].copy_from_slice(&(-17i32).to_ne_bytes());
        let e = answer(&ack).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(17), "EEXIST");
        assert!(answer(&[0u8; 8]).is_err());
    }
}
