//! Applying a new config to a running gateway (SIGHUP): new trusted keys
//! and threshold, expiry grace and limits take effect; what is bound or
//! opened at start keeps its running value until a restart.
//!
//! Parsing and validating the file is `Config::load`'s job (a config that
//! fails is refused by the caller before it gets here). After the swap every
//! live session and stream is decided again by the same function that
//! admitted it (`authorize`): new trusted keys bump the trust epoch, so each
//! session's ticket is verified again there, and the policy channel is
//! poked, which wakes every guard. A trust change is one more input of the
//! one re-decide loop, not a path of its own.
//!
//! Not applied here: QUIC stream credit is fixed in the endpoint's transport
//! config at start, so a raised `max_streams_per_session` is enforced by the
//! daemon at once but only granted to QUIC peers after a restart.

use super::Gateway;
use crate::config::Config;
use edgegate_proto::VerifiedTicket;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What a reload did, for the log and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys that changed but need a restart; their running values were kept.
    pub needs_restart: Vec<&'static str>,
    /// Whether the trusted keys or threshold changed.
    pub trust_changed: bool,
    /// Live sessions whose ticket no longer verifies under the new trust:
    /// their guards close them with `bad-ticket`.
    pub bad_tickets: usize,
    /// Whether the bundle in force stopped verifying (the gateway now fails
    /// closed with `no-valid-bundle`).
    pub bundle_dropped: bool,
}

/// The keys only a restart can change: what was bound, opened or created
/// at start. Compared by value.
fn fixed_keys(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("device_id", old.device_id != new.device_id);
    check("device_key", old.device_key != new.device_key);
    check("state_dir", old.state_dir != new.state_dir);
    check("listen_quic", old.listen_quic != new.listen_quic);
    check("listen_tls", old.listen_tls != new.listen_tls);
    check("enrollment", old.enrollment != new.enrollment);
    check("relay", old.relays != new.relays);
    check(
        "relay_keepalive",
        old.relay_keepalive != new.relay_keepalive,
    );
    check("control_socket", old.control_socket != new.control_socket);
    check("control_group", old.control_group != new.control_group);
    check("log_level", old.log_level != new.log_level);
    check(
        "limits.max_handshakes",
        old.limits.max_handshakes != new.limits.max_handshakes,
    );
    check(
        "limits.audit_retention",
        old.limits.audit_retention != new.limits.audit_retention,
    );
    changed
}

/// `new` with every restart-only key put back to its running value.
fn merged(old: &Config, mut new: Config) -> Config {
    new.device_id = old.device_id.clone();
    new.device_key = old.device_key.clone();
    new.state_dir = old.state_dir.clone();
    new.listen_quic = old.listen_quic;
    new.listen_tls = old.listen_tls;
    new.enrollment = old.enrollment.clone();
    new.relays = old.relays.clone();
    new.relay_keepalive = old.relay_keepalive;
    new.control_socket = old.control_socket.clone();
    new.control_group = old.control_group.clone();
    new.log_level = old.log_level.clone();
    new.limits.max_handshakes = old.limits.max_handshakes;
    new.limits.audit_retention = old.limits.audit_retention;
    new
}

impl Gateway {
    /// Apply a validated config to the running gateway, then re-decide
    /// every live session and stream.
    pub async fn reload(self: &Arc<Self>, new: Config) -> Reloaded {
        // One install at a time: a push must not interleave with the
        // trust swap and the re-verification of the bundle in force.
        let _one = self.push_lock.lock().await;
        let old = self.config();
        let mut out = Reloaded {
            needs_restart: fixed_keys(&old, &new),
            trust_changed: old.trusted_keys != new.trusted_keys || old.threshold != new.threshold,
            ..Reloaded::default()
        };
        let applied = Arc::new(merged(&old, new));
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = applied.clone();
        if out.trust_changed {
            for line in self.store.set_trust(applied.trust()) {
                tracing::warn!("{line}");
            }
            let trust = self.ticket_trust();
            // Counted for the log only; the guards decide (step 2 comes
            // before step 1's bundle only in the reason they report: a
            // session losing both its ticket and the bundle sees
            // `no-valid-bundle`, the evaluator's order).
            out.bad_tickets = self
                .registry
                .all()
                .iter()
                .filter(|s| VerifiedTicket::verify(&s.cred.ticket_bytes, &trust).is_err())
                .count();
            self.trust_epoch.fetch_add(1, Ordering::AcqRel);
            out.bundle_dropped = self.reverify_bundle().await;
        }
        // Wake every session and stream guard: each runs its admission
        // check again under the new trust, grace and limits.
        self.policy.send_modify(|_| {});
        out
    }

    /// Verify the bundle in force again under the store's (new) trust; if
    /// it no longer verifies, fail closed. True when it was dropped.
    async fn reverify_bundle(self: &Arc<Self>) -> bool {
        if self.active().is_none() {
            return false;
        }
        let gw = self.clone();
        let still = tokio::task::spawn_blocking(move || gw.store.current().is_some())
            .await
            .unwrap_or(false);
        if !still {
            tracing::error!(
                "the bundle in force does not verify under the new trusted keys: \
                 failing closed (no-valid-bundle) until a bundle they sign is pushed"
            );
            self.store.forget_current();
            self.publish(None);
        }
        !still
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_keys_keep_their_running_values() {
        let key = crate::testkit::public(&crate::testkit::key(1));
        let text = format!(
            "device_id = \"r1\"\ndevice_key = \"/k\"\nstate_dir = \"/s\"\n\
             trusted_keys = [\"{key}\"]\nlisten_quic = \"127.0.0.1:1\"\n\
             listen_tls = \"127.0.0.1:1\"\ncontrol_socket = \"/c.sock\"\n"
        );
        let old = Config::from_toml_str(&text).unwrap();
        let mut new = old.clone();
        new.listen_tls = Some("127.0.0.1:9".parse().unwrap());
        new.device_id = "other".into();
        new.limits.idle_timeout = std::time::Duration::from_secs(5);
        assert_eq!(fixed_keys(&old, &new), ["device_id", "listen_tls"]);
        let m = merged(&old, new);
        assert_eq!(m.listen_tls, old.listen_tls);
        assert_eq!(m.device_id, old.device_id);
        assert_eq!(m.limits.idle_timeout, std::time::Duration::from_secs(5));
    }
}
