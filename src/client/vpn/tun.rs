//! The VPN's TUN interface on Linux: created with the session's address
//! and MTU, brought up, given a route for each network the daemon named,
//! and gone with every route through it when the device is closed (the
//! kernel deletes a non-persistent TUN interface with its last file
//! descriptor, on any exit, SIGKILL included).
//!
//! The interface is made by `tun-rs` (ioctls on `/dev/net/tun`); routes by
//! `ip route add`, as the engineer would type it: iproute2 is on every
//! Linux that has a TUN device, and one command per route at start costs
//! less than a netlink crate in the client (nothing removes them: the
//! kernel does, with the interface).

use super::{cidr, PacketDevice};
use edgegate_proto::frame::VpnConfig;
use std::io;
use std::net::IpAddr;
use std::process::Command;

/// The interface name the kernel numbers: `edgegate0`, or the first free
/// `edgegateN`.
const DEFAULT_NAME: &str = "edgegate%d";

/// `CAP_NET_ADMIN`'s bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;

/// What `--vpn` needs before connecting: `CAP_NET_ADMIN` (root has it) and
/// the TUN device. The error is the line to print.
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
    Ok(())
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
        let device = tun_rs::DeviceBuilder::new()
            .name(wanted)
            .ipv4(config.address, 32u8, None)
            .mtu(config.mtu)
            .enable(true)
            .build_async()
            .map_err(|e| anyhow::anyhow!("--vpn: creating the TUN interface: {e}"))?;
        let name = device
            .name()
            .map_err(|e| anyhow::anyhow!("--vpn: naming the TUN interface: {e}"))?;
        let mut routes = Vec::new();
        for network in &config.routes {
            let cidr = cidr(network);
            if !matches!(network.addr, IpAddr::V4(_)) {
                eprintln!("vpn: route {cidr} left out: the VPN carries IPv4 only");
                continue;
            }
            match add_route(&cidr, &name) {
                Ok(()) => routes.push(cidr),
                Err(e) => eprintln!("vpn: route {cidr} left out: {e}"),
            }
        }
        Ok(Interface {
            device,
            name,
            routes,
        })
    }
}

/// `ip route add CIDR dev NAME`; the error is `ip`'s own line.
fn add_route(cidr: &str, name: &str) -> Result<(), String> {
    let out = Command::new("ip")
        .args(["-4", "route", "add", cidr, "dev", name])
        .output()
        .map_err(|e| format!("running `ip` (iproute2): {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(said
        .lines()
        .next()
        .unwrap_or("ip route add failed")
        .to_string())
}

impl PacketDevice for Interface {
    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.device.recv(buf).await
    }

    async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.device.send(packet).await
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
