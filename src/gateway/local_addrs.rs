//! The router's own addresses, for step 5's destination screen
//! (`policy::destination`): read with getifaddrs(3) at start and again
//! every [`REFRESH`] (an interface that comes up later, a DHCP lease that
//! moves), so a stream cannot reach the router itself through a vpn
//! service whose network contains one of its addresses. A read costs a few
//! netlink messages (the unit allows AF_NETLINK for it); a failed read
//! keeps the last list and is logged.
//!
//! What it does not do: re-decide live streams when an address appears
//! (the next stream open sees it).

use crate::policy::destination::LocalAddrs;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

/// How often the addresses are read again.
pub(crate) const REFRESH: Duration = Duration::from_secs(30);

/// The last list read.
#[derive(Debug, Default)]
pub(crate) struct Local {
    addrs: RwLock<Arc<LocalAddrs>>,
}

impl Local {
    /// Read the addresses now, and keep reading them every [`REFRESH`]
    /// while the returned value is alive.
    pub(crate) fn start() -> Arc<Local> {
        let local = Arc::new(Local::default());
        local.refresh();
        let weak: Weak<Local> = Arc::downgrade(&local);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(local) = weak.upgrade() else { return };
                let _ = tokio::task::spawn_blocking(move || local.refresh()).await;
            }
        });
        local
    }

    /// The addresses as last read.
    pub(crate) fn get(&self) -> Arc<LocalAddrs> {
        self.addrs.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn refresh(&self) {
        match read() {
            Ok(addrs) => {
                let mut cur = self.addrs.write().unwrap_or_else(|p| p.into_inner());
                if **cur != addrs {
                    tracing::info!(own = ?addrs.own, "the router's own addresses (refused as vpn destinations)");
                    *cur = Arc::new(addrs);
                }
            }
            Err(e) => tracing::warn!("reading the router's own addresses: {e}"),
        }
    }
}

fn ip(s: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// The addresses of every interface, sorted and deduplicated.
fn read() -> nix::Result<LocalAddrs> {
    let mut out = LocalAddrs::default();
    for ifa in nix::ifaddrs::getifaddrs()? {
        out.own.extend(ifa.address.as_ref().and_then(ip));
        out.broadcast.extend(ifa.broadcast.as_ref().and_then(ip));
    }
    for v in [&mut out.own, &mut out.broadcast] {
        v.sort();
        v.dedup();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_is_among_the_addresses_read() {
        let addrs = super::read().unwrap();
        assert!(
            addrs.own.contains(&"127.0.0.1".parse().unwrap()),
            "{addrs:?}"
        );
    }
}
