//! Accepting a key statement on a running gateway: the store verifies and
//! stores it (`store/keys.rs`), then it is one more input of the one
//! re-decide loop: the trust epoch is bumped, so every live session's ticket
//! is verified again under the new ticket keys by `authorize` (a ticket of a
//! removed key is cut `bad-ticket`), and the policy channel is poked (or the
//! bundle in force dropped, for a serial reset), which wakes every guard at
//! once, with no timer in between.
//!
//! A bundle that rides along is installed after the statement, under the
//! new keys, by the ordinary bundle path.

use super::Gateway;
use crate::store::KeysApplied;
use edgegate_proto::audit::RecoveryApplied;
use edgegate_proto::control::{KeysInfo, PushResult, RoleInfo};
use edgegate_proto::{KeyRole, TrustPolicy};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Gateway {
    /// The keys tickets are verified under: the ticket role in force.
    pub(crate) fn ticket_trust(&self) -> TrustPolicy {
        self.store.authority().role(KeyRole::Ticket).clone()
    }

    /// The authority keys in force, for `edgegate status`.
    pub fn keys_info(&self) -> KeysInfo {
        let a = self.store.authority();
        let roles = KeyRole::ALL
            .iter()
            .map(|&r| RoleInfo {
                role: r.as_str().to_string(),
                threshold: u32::try_from(a.role(r).threshold()).unwrap_or(u32::MAX),
                keys: a.role(r).keys().to_vec(),
            })
            .collect();
        KeysInfo {
            version: a.version(),
            expires_at: a.expires_at(),
            roles,
        }
    }

    /// Install a key statement, then the bundle delivered with it; the
    /// push lock is held by the caller.
    pub(super) async fn install_keys(
        self: &Arc<Self>,
        statement: Vec<u8>,
        bundle: Option<Vec<u8>>,
        stranger: Option<IpAddr>,
    ) -> PushResult {
        let gw = self.clone();
        let applied =
            tokio::task::spawn_blocking(move || gw.store.accept_keys(&statement, gw.wall())).await;
        let (version, changed) = match applied {
            Ok(Ok(KeysApplied::Unchanged { version })) => (version, false),
            Ok(Ok(done)) => (self.keys_installed(&done), true),
            Ok(Err(e)) => return self.keys_rejected(e.code(), e.to_string(), stranger),
            Err(e) => return self.keys_rejected("internal", format!("key task failed: {e}"), None),
        };
        let bundle = match bundle {
            Some(b) => Some(Box::new(self.install_bundle(b, stranger).await)),
            None => None,
        };
        PushResult::Keys {
            version,
            changed,
            bundle,
        }
    }

    /// Audit the new statement and re-decide every live session and stream
    /// under it. Returns its version.
    fn keys_installed(&self, done: &KeysApplied) -> u64 {
        let KeysApplied::Installed {
            version,
            root_rotated,
            dropped_bundle,
            grandfathered,
            recovered,
        } = *done
        else {
            return 0;
        };
        let recovery = recovered.map(|(serial_before, floor_before)| RecoveryApplied {
            serial_before,
            serial: self.store.serial(),
            floor_before,
            floor: self.store.time_floor(),
        });
        // Audited first: the closes the new keys cause follow it.
        self.audit.keys_accepted(version, root_rotated, recovery);
        tracing::info!(
            version,
            root_rotated,
            dropped_bundle,
            grandfathered,
            "key statement accepted"
        );
        self.trust_epoch.fetch_add(1, Ordering::AcqRel);
        if dropped_bundle {
            self.publish(None);
        } else {
            self.policy.send_modify(|_| {});
        }
        version
    }

    fn keys_rejected(&self, code: &str, message: String, stranger: Option<IpAddr>) -> PushResult {
        match stranger {
            Some(ip) => self
                .audit
                .stranger(ip, crate::audit::Stranger::RejectedPush),
            None => self.audit.keys_rejected(code, &message),
        }
        PushResult::Rejected {
            code: code.to_string(),
            message,
        }
    }
}
