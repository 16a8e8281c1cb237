//! The VPN's TUN interface on Linux: created with the session's address
//! and MTU, brought up, given a route for each network the daemon named,
//! and gone with every route through it when the device is closed (the
//! kernel deletes a non-persistent TUN interface with its last file
//! descriptor, on any exit, SIGKILL included).
//!
//! The interface is made by `tun-rs` (ioctls on `/dev/net/tun`); routes
//! over rtnetlink (`route.rs`). It runs with the kernel's segmentation
//! offloads (`IFF_VNET_HDR`, as wireguard-go does): the engineer's TCP
//! hands over segments of up to 64 KiB, split here into packets of the
//! VPN's MTU, and the packets of a batch from the gateway are coalesced
//! back into large segments before they are written. A 1280-byte MTU then
//! costs the engineer's kernel one packet's work per 64 KiB, not per 1.2.

use super::route;
use super::{cidr, PacketDevice};
use edgegate_proto::frame::VpnConfig;
use std::io;
use std::net::IpAddr;

/// The interface name the kernel numbers: `edgegate0`, or the first free
/// `edgegateN`.
const DEFAULT_NAME: &str = "edgegate%d";

/// Packets the kernel queues for the client to read (its default is 500):
/// the engineer's TCP answers a batch of coalesced segments from many
/// flows at once, and every ACK or SYN past the queue is dropped, which
/// costs its flow a retransmission timeout (`benches/vpn.sh`, 64 flows
/// over QUIC: 45% of what the engineer sent was dropped at 500).
const TX_QUEUE: u32 = 10_000;

/// The TUN clone device.
const TUN_DEVICE: &str = "/dev/net/tun";

/// `CAP_NET_ADMIN`'s bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;

/// What `--vpn` needs before connecting: `CAP_NET_ADMIN` (root has it) and
/// the TUN device, open to this user. The error is the line to print.
pub fn check_privilege() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("--vpn: reading /proc/self/status: {e}"))?;
    if !has_net_admin(&status) {
        return Err(
            "--vpn needs root or CAP_NET_ADMIN (to create the TUN interface and its routes); \
             --socks reaches vpn services without them"
                .into(),
        );
    }
    // Usually open to everyone (mode 0666); some systems keep it to root.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(TUN_DEVICE)
        .map(drop)
        .map_err(|e| format!("--vpn: {TUN_DEVICE}: {e}"))
}

/// Whether a `/proc/PID/status` text shows `CAP_NET_ADMIN` in effect.
fn has_net_admin(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// The VPN's TUN interface, up, with its routes. Dropping it removes both.
pub struct Interface {
    device: tun_rs::AsyncDevice,
    reading: tokio::sync::Mutex<Reading>,
    writing: tokio::sync::Mutex<Writing>,
    /// The name the kernel gave it.
    pub name: String,
    /// The routes installed through it, `ADDRESS/PREFIX`.
    pub routes: Vec<String>,
}

impl Interface {
    /// Create the interface `name` (default: the first free `edgegateN`)
    /// with the daemon's settings, bring it up and route the daemon's
    /// networks through it. A route the system refuses (the network is
    /// already routed elsewhere, say) is left out with a line on stderr;
    /// `routes` lists the ones in place.
    pub fn create(name: Option<&str>, config: &VpnConfig) -> anyhow::Result<Interface> {
        let wanted = name.unwrap_or(DEFAULT_NAME);
        let build = |offload: bool| {
            tun_rs::DeviceBuilder::new()
                .name(wanted)
                .ipv4(config.address, 32u8, None)
                .mtu(config.mtu)
                .offload(offload)
                .tx_queue_len(TX_QUEUE)
                .enable(true)
                .build_async()
        };
        // A kernel without TUN offloads gets one packet per read and write.
        let device = build(true)
            .or_else(|_| build(false))
            .map_err(|e| anyhow::anyhow!("--vpn: creating the TUN interface: {e}"))?;
        let name = device
            .name()
            .map_err(|e| anyhow::anyhow!("--vpn: naming the TUN interface: {e}"))?;
        let mut routes = Vec::new();
        for network in &config.routes {
            let cidr = cidr(network);
            let IpAddr::V4(addr) = network.addr else {
                eprintln!("vpn: route {cidr} left out: the VPN carries IPv4 only");
                continue;
            };
            match route::add(addr, network.prefix, &name) {
                Ok(()) => routes.push(cidr),
                Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => eprintln!(
                    "vpn: route {cidr} left out: this computer routes that network already \
                     (a local network or another VPN)"
                ),
                Err(e) => eprintln!("vpn: route {cidr} left out: {e}"),
            }
        }
        Ok(Interface {
            device,
            reading: tokio::sync::Mutex::new(Reading::new(usize::from(config.mtu))),
            writing: tokio::sync::Mutex::new(Writing {
                gro: tun_rs::GROTable::default(),
                bufs: Vec::new(),
            }),
            name,
            routes,
        })
    }
}

/// The largest read from the device: the offload header and a 64 KiB
/// segment.
const READ_MAX: usize = tun_rs::VIRTIO_NET_HDR_LEN + 65_535;

/// Buffers for reading: the raw read, and the packets it splits into.
struct Reading {
    raw: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
}

impl Reading {
    /// Room for the packets of one 64 KiB segment at `mtu` (the first
    /// buffer also takes a whole unsegmented packet).
    fn new(mtu: usize) -> Reading {
        let count = (65_535 / mtu.saturating_sub(40).max(1) + 2).min(tun_rs::IDEAL_BATCH_SIZE);
        let mut bufs = vec![vec![0; mtu.max(1500)]; count];
        bufs[0] = vec![0; 65_535];
        Reading {
            raw: vec![0; READ_MAX],
            bufs,
            sizes: vec![0; count],
        }
    }
}

/// What writing keeps: the coalescing table, the buffers of a batch.
struct Writing {
    gro: tun_rs::GROTable,
    bufs: Vec<Vec<u8>>,
}

impl PacketDevice for Interface {
    async fn recv(&self, packets: &mut Vec<Vec<u8>>) -> io::Result<()> {
        packets.clear();
        let mut reading = self.reading.lock().await;
        let Reading { raw, bufs, sizes } = &mut *reading;
        let n = self.device.recv_multiple(raw, bufs, sizes, 0).await?;
        for (buf, size) in bufs.iter().zip(sizes.iter()).take(n) {
            packets.push(buf[..*size].to_vec());
        }
        Ok(())
    }

    async fn send(&self, packets: &mut Vec<Vec<u8>>) -> io::Result<()> {
        if packets.is_empty() {
            return Ok(());
        }
        let mut writing = self.writing.lock().await;
        let Writing { gro, bufs } = &mut *writing;
        bufs.clear();
        let head = tun_rs::VIRTIO_NET_HDR_LEN;
        for p in packets.drain(..) {
            let mut b = Vec::with_capacity(head + p.len());
            b.resize(head, 0);
            b.extend_from_slice(&p);
            bufs.push(b);
        }
        self.device.send_multiple(gro, bufs, head).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::has_net_admin;

    #[test]
    fn net_admin_is_read_from_the_effective_set() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert!(has_net_admin(root));
        let user = "CapPrm:\t0000000000001000\nCapEff:\t0000000000000000\n";
        assert!(!has_net_admin(user));
        let only_net_admin = "CapEff:\t0000000000001000\n";
        assert!(has_net_admin(only_net_admin));
        assert!(!has_net_admin("CapEff:\tzz\n"));
        assert!(!has_net_admin(""));
    }
}
