//! Step 5's screen of vpn destinations: addresses no engineer's stream
//! should reach by accident of a wide network are refused
//! (`destination-not-allowed`) even inside an allowed network:
//!
//! - unspecified (`0.0.0.0/8`, `::`), loopback (`127.0.0.0/8`, `::1`),
//!   link-local (`169.254.0.0/16`, `fe80::/10`), multicast (`224.0.0.0/4`,
//!   `ff00::/8`) and the limited broadcast `255.255.255.255`;
//! - the router's own addresses and its interfaces' broadcast addresses
//!   ([`LocalAddrs`], read by the daemon; the evaluator does no I/O).
//!
//! A service may still name one explicitly: a network of the service that
//! contains the destination and lies wholly inside its class (e.g.
//! `127.0.0.1/32` or `169.254.0.0/16`; for an own or broadcast address, that
//! exact host as `/32` or `/128`). `192.168.1.0/24` containing the router's
//! `192.168.1.1` does not name it.

use edgegate_proto::bundle::Network;
use std::net::IpAddr;

/// The router's own addresses, as the daemon last read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalAddrs {
    /// Addresses of the router's interfaces.
    pub own: Vec<IpAddr>,
    /// Their broadcast addresses (IPv4).
    pub broadcast: Vec<IpAddr>,
}

static NONE: LocalAddrs = LocalAddrs {
    own: Vec::new(),
    broadcast: Vec::new(),
};

impl LocalAddrs {
    /// No local addresses known (authoring tools, off the router).
    pub fn none() -> &'static LocalAddrs {
        &NONE
    }
}

/// Why a destination is screened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `0.0.0.0/8` or `::`.
    Unspecified,
    /// `127.0.0.0/8` or `::1`.
    Loopback,
    /// `169.254.0.0/16` or `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4` or `ff00::/8`.
    Multicast,
    /// `255.255.255.255` or an interface's broadcast address.
    Broadcast,
    /// One of the router's own addresses.
    Own,
}

impl Special {
    /// Stable name, as the explain trace shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Special::Unspecified => "unspecified",
            Special::Loopback => "loopback",
            Special::LinkLocal => "link-local",
            Special::Multicast => "multicast",
            Special::Broadcast => "broadcast",
            Special::Own => "the router's own address",
        }
    }
}

const fn v4(a: u8, b: u8, prefix: u8) -> Network {
    Network {
        addr: IpAddr::V4(std::net::Ipv4Addr::new(a, b, 0, 0)),
        prefix,
    }
}

const fn v6(first: u16, prefix: u8) -> Network {
    Network {
        addr: IpAddr::V6(std::net::Ipv6Addr::new(first, 0, 0, 0, 0, 0, 0, 0)),
        prefix,
    }
}

const CLASSES: [(Special, Network); 9] = [
    (Special::Unspecified, v4(0, 0, 8)),
    (Special::Unspecified, v6(0, 128)),
    (Special::Loopback, v4(127, 0, 8)),
    (
        Special::Loopback,
        Network {
            addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            prefix: 128,
        },
    ),
    (Special::LinkLocal, v4(169, 254, 16)),
    (Special::LinkLocal, v6(0xfe80, 10)),
    (Special::Multicast, v4(224, 0, 4)),
    (Special::Multicast, v6(0xff00, 8)),
    (
        Special::Broadcast,
        Network {
            addr: IpAddr::V4(std::net::Ipv4Addr::BROADCAST),
            prefix: 32,
        },
    ),
];

fn host(ip: IpAddr) -> Network {
    Network {
        addr: ip,
        prefix: if ip.is_ipv4() { 32 } else { 128 },
    }
}

/// Whether network `inner` lies wholly inside `outer`.
fn within(inner: &Network, outer: &Network) -> bool {
    let max = if outer.addr.is_ipv4() { 32 } else { 128 };
    inner.prefix >= outer.prefix.min(max) && outer.contains(inner.addr)
}

/// The class `ip` (canonical) falls in, and the network of that class,
/// if it is screened.
pub fn classify(ip: IpAddr, local: &LocalAddrs) -> Option<(Special, Network)> {
    let ip = ip.to_canonical();
    if let Some(c) = CLASSES.iter().find(|(_, n)| n.contains(ip)) {
        return Some(*c);
    }
    let same = |a: &&IpAddr| a.to_canonical() == ip;
    if local.broadcast.iter().any(|a| same(&a)) {
        return Some((Special::Broadcast, host(ip)));
    }
    if local.own.iter().any(|a| same(&a)) {
        return Some((Special::Own, host(ip)));
    }
    None
}

/// Whether one of `networks` names `ip`'s class explicitly: it contains
/// `ip` and lies wholly inside `class`.
pub fn named_explicitly(networks: &[Network], ip: IpAddr, class: &Network) -> bool {
    let ip = ip.to_canonical();
    networks.iter().any(|n| n.contains(ip) && within(n, class))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Network {
        let (a, p) = s.split_once('/').unwrap();
        Network {
            addr: a.parse().unwrap(),
            prefix: p.parse().unwrap(),
        }
    }

    fn local() -> LocalAddrs {
        LocalAddrs {
            own: vec!["192.168.1.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            broadcast: vec!["192.168.1.255".parse().unwrap()],
        }
    }

    /// Each class: refused inside a network that merely contains it,
    /// allowed by a network wholly inside the class.
    #[test]
    fn each_class_is_screened_unless_named() {
        let cases = [
            ("0.0.0.0", Special::Unspecified, "0.0.0.0/0", "0.0.0.0/32"),
            ("::", Special::Unspecified, "::/0", "::/128"),
            ("127.0.0.1", Special::Loopback, "0.0.0.0/0", "127.0.0.1/32"),
            ("127.9.9.9", Special::Loopback, "96.0.0.0/3", "127.0.0.0/8"),
            ("::1", Special::Loopback, "::/0", "::1/128"),
            (
                "::ffff:127.0.0.1",
                Special::Loopback,
                "0.0.0.0/0",
                "127.0.0.0/8",
            ),
            (
                "169.254.1.2",
                Special::LinkLocal,
                "169.0.0.0/8",
                "169.254.1.0/24",
            ),
            ("fe80::2", Special::LinkLocal, "fe00::/7", "fe80::/64"),
            (
                "224.0.0.251",
                Special::Multicast,
                "192.0.0.0/2",
                "224.0.0.251/32",
            ),
            ("ff02::1", Special::Multicast, "::/0", "ff02::/16"),
            (
                "255.255.255.255",
                Special::Broadcast,
                "0.0.0.0/0",
                "255.255.255.255/32",
            ),
            (
                "192.168.1.255",
                Special::Broadcast,
                "192.168.1.0/24",
                "192.168.1.255/32",
            ),
            (
                "192.168.1.1",
                Special::Own,
                "192.168.1.0/24",
                "192.168.1.1/32",
            ),
            ("fd00::1", Special::Own, "fd00::/64", "fd00::1/128"),
        ];
        for (ip, class, wide, exact) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            let (got, within) = classify(ip, &local()).unwrap_or_else(|| panic!("{ip}"));
            assert_eq!(got, class, "{ip}");
            assert!(!named_explicitly(&[net(wide)], ip, &within), "{ip} {wide}");
            assert!(named_explicitly(&[net(exact)], ip, &within), "{ip} {exact}");
        }
    }

    #[test]
    fn ordinary_addresses_pass() {
        for ip in ["192.168.1.10", "10.0.0.1", "fd00::10", "8.8.8.8"] {
            assert_eq!(classify(ip.parse().unwrap(), &local()), None, "{ip}");
        }
        // Without the router's addresses, its own address is not known.
        assert_eq!(
            classify("192.168.1.1".parse().unwrap(), LocalAddrs::none()),
            None
        );
    }
}
