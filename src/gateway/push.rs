//! The bundle accept path, shared by the tunnel port and the control
//! socket: one install at a time (a second push meanwhile is answered
//! `busy` at once, never queued) → a key statement first if the push
//! carries one (`keys.rs`) → the store's checks, cheapest first
//! (same digest, signatures, device, serial, expiry, date) → compile
//! (`invalid-policy`) → store (flushed) → publish the new index → every
//! live stream re-decides.

use super::{Active, Gateway};
use crate::audit::Stranger;
use crate::policy::PolicyIndex;
use crate::store::Accepted;
use edgegate_proto::authority::Delivery;
use edgegate_proto::control::PushResult;
use std::net::IpAddr;
use std::sync::Arc;

impl Gateway {
    /// Install a bundle an operator pushed (control socket) if DESIGN §3
    /// allows it. Whatever the outcome, the answer is ready to send and
    /// audited in the chain; on rejection nothing changed.
    pub async fn push_bundle(self: &Arc<Self>, bytes: Vec<u8>) -> PushResult {
        self.push_bundle_from(bytes, None).await
    }

    /// [`Gateway::push_bundle`] for a push from `stranger` (the tunnel
    /// port, where any peer may push): an accepted bundle is chained (the
    /// authority signed it), a rejection is only counted.
    pub async fn push_bundle_from(
        self: &Arc<Self>,
        bytes: Vec<u8>,
        stranger: Option<IpAddr>,
    ) -> PushResult {
        let max = self.config().limits.max_bundle_size;
        if bytes.len() > max {
            let message = format!(
                "bundle of {} bytes exceeds max_bundle_size {max}",
                bytes.len(),
            );
            return self.rejected("too-large", message, stranger);
        }
        // One install at a time, so the index published last is the one
        // stored last; a second is refused, not queued, so pushes in flight
        // (and the bundles they hold in memory) number at most one. Not
        // audited: it says nothing about the bundle, and anyone may push.
        let Ok(_one) = self.push_lock.try_lock() else {
            return PushResult::Rejected {
                code: "busy".to_string(),
                message: "another bundle is being installed; push again when it is done"
                    .to_string(),
            };
        };
        match Delivery::classify(&bytes) {
            Ok(Delivery::Bundle(_)) => self.install_bundle(bytes, stranger).await,
            Ok(Delivery::Keys { statement, bundle }) => {
                let (statement, bundle) = (statement.to_vec(), bundle.map(<[u8]>::to_vec));
                drop(bytes);
                self.install_keys(statement, bundle, stranger).await
            }
            Err(e) => self.rejected("malformed", format!("push: {e}"), stranger),
        }
    }

    /// The bundle accept path, the push lock held.
    pub(super) async fn install_bundle(
        self: &Arc<Self>,
        bytes: Vec<u8>,
        stranger: Option<IpAddr>,
    ) -> PushResult {
        let gw = self.clone();
        let accepted = tokio::task::spawn_blocking(move || {
            gw.store.accept(bytes, gw.wall(), PolicyIndex::compile)
        })
        .await;
        match accepted {
            Ok(Ok(Accepted::Installed {
                serial,
                bundle,
                compiled: index,
            })) => {
                let (issued, not_after) = (index.issued_at(), index.not_after());
                // Audited first: the closes the new index causes follow it.
                self.audit.bundle_accepted(serial, issued, not_after);
                self.publish(Some(Arc::new(Active { index })));
                // The decoded bundle and the index replaced are gone now.
                drop(bundle);
                tokio::task::spawn_blocking(crate::memory::release_freed);
                PushResult::Accepted { serial }
            }
            Ok(Ok(Accepted::Unchanged { serial })) => PushResult::Unchanged { serial },
            Ok(Err(reason)) => self.rejected(reason.code(), reason.to_string(), stranger),
            Err(e) => self.rejected("internal", format!("install task failed: {e}"), None),
        }
    }

    fn rejected(&self, code: &str, message: String, stranger: Option<IpAddr>) -> PushResult {
        match stranger {
            Some(ip) => self.audit.stranger(ip, Stranger::RejectedPush),
            None => self.audit.bundle_rejected(code, &message, None),
        }
        PushResult::Rejected {
            code: code.to_string(),
            message,
        }
    }
}
