//! `edgegate ticket issue`: what the cloud signs when an engineer asks to
//! open a session. Prints the ticket id (hex) and its expiry.

use super::IssueArgs;
use crate::clock::Clock;
use crate::duration::format_time;
use crate::keyfile;
use anyhow::bail;
use edgegate_proto::ticket::{self, Ticket};
use rand::RngCore;
use std::io::Write;

pub(super) fn issue(a: &IssueArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let client_key = keyfile::load_public_key(&a.client_key)?;
    let keys = super::role_keys(
        &a.keys,
        a.keys_dir.as_deref(),
        edgegate_proto::KeyRole::Ticket,
    )?;
    let issued_at = a.issued_at.unwrap_or_else(|| Clock::system().wall());
    let auth_time = a.auth_time.unwrap_or(issued_at);
    if a.ttl == 0 {
        bail!("--ttl must be longer than 0s: the ticket would expire as it is issued");
    }
    if issued_at.saturating_add(a.ttl) > crate::duration::LAST_RFC3339 {
        bail!("--ttl is too long: the ticket would expire after 9999");
    }
    if auth_time > issued_at {
        bail!(
            "--auth-time {} is after the issue time {}",
            format_time(auth_time),
            format_time(issued_at)
        );
    }
    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let t = Ticket {
        id,
        user: a.user.clone(),
        device: a.device.clone(),
        client_key,
        issued_at,
        expires_at: issued_at.saturating_add(a.ttl),
        auth_time,
        mfa: a.mfa,
    };
    let refs: Vec<_> = keys.iter().collect();
    let bytes = ticket::seal(&t, &refs);
    std::fs::write(&a.out, bytes).map_err(|e| anyhow::anyhow!("{}: {e}", a.out.display()))?;
    writeln!(out, "ticket {}", hex(&id))?;
    writeln!(out, "expires {}", format_time(t.expires_at))?;
    Ok(())
}

/// Lower-case hex, as revocation lists in policy files write ticket ids.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
