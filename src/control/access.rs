//! Who may use the control socket: root, the daemon's own uid, and members
//! of the configured group (primary gid, the process's supplementary groups
//! from `/proc/PID/status`, or the user's groups from `getgrouplist`).

use nix::unistd::{Gid, Uid, User};
use std::ffi::CString;

/// The connecting process's credentials, from SO_PEERCRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Process id, when the kernel reports it.
    pub pid: Option<i32>,
}

/// The rule the server applies.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub(crate) daemon_uid: u32,
    pub(crate) group: Option<u32>,
}

impl Access {
    /// Decide for `peer`; `groups_of` lists its supplementary groups and is
    /// only asked when uid and primary gid do not settle it.
    pub(crate) fn allows(
        &self,
        peer: &PeerCred,
        groups_of: impl FnOnce(&PeerCred) -> Vec<u32>,
    ) -> bool {
        if peer.uid == 0 || peer.uid == self.daemon_uid {
            return true;
        }
        let Some(group) = self.group else {
            return false;
        };
        peer.gid == group || groups_of(peer).contains(&group)
    }
}

/// Supplementary groups of the peer: those of the live process when
/// `/proc` tells, plus those the group database gives its user.
pub(crate) fn supplementary_groups(peer: &PeerCred) -> Vec<u32> {
    let mut out = peer.pid.map(proc_groups).unwrap_or_default();
    if let Ok(Some(user)) = User::from_uid(Uid::from_raw(peer.uid)) {
        if let Ok(name) = CString::new(user.name) {
            if let Ok(gids) = nix::unistd::getgrouplist(&name, Gid::from_raw(peer.gid)) {
                out.extend(gids.into_iter().map(Gid::as_raw));
            }
        }
    }
    out
}

fn proc_groups(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> PeerCred {
        PeerCred {
            uid,
            gid,
            pid: None,
        }
    }

    #[test]
    fn root_and_own_uid_always() {
        let a = Access {
            daemon_uid: 999,
            group: None,
        };
        assert!(a.allows(&peer(0, 0), |_| unreachable!()));
        assert!(a.allows(&peer(999, 5), |_| unreachable!()));
        assert!(!a.allows(&peer(1000, 1000), |_| vec![]));
    }

    #[test]
    fn group_by_primary_or_supplementary_gid() {
        let a = Access {
            daemon_uid: 0,
            group: Some(120),
        };
        assert!(a.allows(&peer(1000, 120), |_| unreachable!()));
        assert!(a.allows(&peer(1000, 1000), |_| vec![27, 120]));
        assert!(!a.allows(&peer(1000, 1000), |_| vec![27]));
    }

    #[test]
    fn own_process_groups_are_readable() {
        let me = peer(0, 0);
        let pid = std::process::id() as i32;
        let groups = supplementary_groups(&PeerCred {
            pid: Some(pid),
            ..me
        });
        // root is in group 0 at least via getgrouplist.
        assert!(groups.contains(&0));
    }
}
