//! Asking the real evaluator a question the way the daemon would.
//!
//! `policy check` and `policy explain` do not shortcut the decision: they seal
//! a bundle (check) or take a signed one (explain), verify it, compile it with
//! `PolicyIndex::compile`, then issue a real signed ticket from an ephemeral
//! authority to an ephemeral client key, verify it against a trust policy
//! holding only that authority, and call `explain` (and `decide`, which must
//! agree) with the resulting `Request`. Every key here lives for one question
//! and is never written anywhere.

use crate::policy::{self, Decision, Explanation, Policy, PolicyIndex, Request, TicketInput};
use anyhow::{anyhow, bail};
use ed25519_dalek::SigningKey;
use edgegate_proto::bundle::{self, Bundle};
use edgegate_proto::ticket::{self, Ticket};
use edgegate_proto::{PublicKey, TrustPolicy, UnixTime, VerifiedBundle, VerifiedTicket};
use std::net::SocketAddr;

/// One question: may `user` use `service` at `now`?
#[derive(Debug, Clone, Copy)]
pub(super) struct Question<'a> {
    pub(super) user: &'a str,
    pub(super) service: &'a str,
    pub(super) mfa: bool,
    pub(super) consent: bool,
    pub(super) destination: Option<SocketAddr>,
    pub(super) auth_time: UnixTime,
    pub(super) now: UnixTime,
}

fn ephemeral_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// Seal `b` with an ephemeral authority, verify and compile it.
pub(super) fn compile_bundle(b: &Bundle) -> anyhow::Result<PolicyIndex> {
    let authority = ephemeral_key();
    let bytes = bundle::seal(b, &[&authority]);
    let trust = TrustPolicy::new(vec![PublicKey::from(authority.verifying_key())], 1)?;
    let verified = VerifiedBundle::verify(&bytes, &trust)?;
    compile_verified(&verified)
}

/// Compile a verified bundle, naming the device on failure.
pub(super) fn compile_verified(v: &VerifiedBundle) -> anyhow::Result<PolicyIndex> {
    PolicyIndex::compile(v).map_err(|e| {
        anyhow!(
            "bundle for device {:?} is not a valid policy: {e}",
            v.bundle().device_id
        )
    })
}

/// Ask `index` the question through a freshly signed and verified ticket.
pub(super) fn ask(index: &PolicyIndex, q: &Question) -> anyhow::Result<Explanation> {
    let authority = ephemeral_key();
    let client = ephemeral_key();
    let client_key = PublicKey::from(client.verifying_key());
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
    let t = Ticket {
        id,
        user: q.user.to_string(),
        device: index.device_id().to_string(),
        client_key,
        // The ticket itself is never the question: valid around both instants.
        issued_at: q.auth_time.min(q.now),
        expires_at: q.auth_time.max(q.now).saturating_add(3600),
        auth_time: q.auth_time,
        mfa: q.mfa,
    };
    let bytes = ticket::seal(&t, &[&authority]);
    let trust = TrustPolicy::new(vec![PublicKey::from(authority.verifying_key())], 1)?;
    let verified = VerifiedTicket::verify(&bytes, &trust)?;
    let request = Request {
        ticket: TicketInput::Verified(&verified),
        client_key: &client_key,
        service: q.service,
        destination: q.destination,
        echo: false,
        now: q.now,
        consent: q.consent,
        limit_exceeded: false,
        local: crate::policy::destination::LocalAddrs::none(),
    };
    let p = Policy {
        index: Some(index),
        expiry_grace: 0,
    };
    let explanation = policy::explain(&p, &request);
    let decided = policy::decide(&p, &request);
    if decided != explanation.decision {
        bail!(
            "evaluator disagrees with itself: decide says {}, explain says {}",
            outcome_text(decided),
            outcome_text(explanation.decision)
        );
    }
    Ok(explanation)
}

/// `allow:LEVEL` or `deny:REASON`, the notation of `[[test]] expect`.
pub(super) fn outcome_text(d: Decision) -> String {
    match d {
        Decision::Allow(l) => format!("allow:{l}"),
        Decision::Deny(r) => format!("deny:{r}"),
    }
}

/// The decision as `Ok(level)` / `Err(reason)`.
pub(super) fn outcome(d: Decision) -> Result<edgegate_proto::Level, edgegate_proto::DenyReason> {
    match d {
        Decision::Allow(l) => Ok(l),
        Decision::Deny(r) => Err(r),
    }
}
