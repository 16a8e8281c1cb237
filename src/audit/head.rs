//! The signed head: the chain's newest `seq` and hash, signed with the
//! device key, so a log whose tail was cut (and its `head` mark rewritten
//! to match) shows.
//!
//! The audit writer signs the head every [`SIGN_EVERY`] records, every
//! [`SIGN_INTERVAL`] when the head moved, and on shutdown. Each signature
//! is stored (`audit_meta` key `signed_head`, newest only) and logged as
//! one line (`edgegate-audit-head:v1:…`) through tracing, i.e. journald:
//! the copy an operator ships off-box, which a local attacker who also
//! rewrites `signed_head` cannot take back. `audit verify` checks the
//! stored head, and `audit verify --head LINE` a kept one: the log must
//! reach the signed `seq`, and the record there (if retention kept it) must
//! have the signed hash.
//!
//! What it does not do: a key on the same disk can sign a forged head; the
//! off-box line is what a local root cannot rewrite.

use super::{record_hash, AuditError, AuditLog, SIGNED_HEAD};
use ed25519_dalek::{Signer, SigningKey};
use edgegate_proto::audit::{AuditEntry, AuditVerifyError, SignedHead, VerifyReport};
use edgegate_proto::codec;
use std::time::Duration;

/// Records between two signatures at most.
pub(super) const SIGN_EVERY: u64 = 1000;

/// Longest time a moved head stays unsigned.
pub(super) const SIGN_INTERVAL: Duration = Duration::from_secs(600);

impl AuditLog {
    /// Sign the current head with `key`, store and log it. `None` for a log
    /// never written.
    pub fn sign_head(&self, key: &SigningKey) -> Result<Option<SignedHead>, AuditError> {
        let head = *self.head.lock().unwrap_or_else(|p| p.into_inner());
        if head.seq == 0 {
            return Ok(None);
        }
        let time = match self.tree.get(head.seq.to_be_bytes())? {
            Some(v) => AuditEntry::decode(&v)
                .map(|e| e.record().time)
                .map_err(|err| AuditError::Corrupt { seq: head.seq, err })?,
            // Cut already: sign what the mark says, with no time.
            None => 0,
        };
        let message = SignedHead::message(head.seq, &head.hash, time);
        let signed = SignedHead {
            seq: head.seq,
            hash: head.hash,
            time,
            signature: key.sign(&message).to_bytes(),
        };
        self.meta.insert(SIGNED_HEAD, codec::encode(&signed))?;
        tracing::info!(
            target: "edgegate::audit",
            seq = signed.seq,
            "audit head signed: {}",
            signed.to_line()
        );
        Ok(Some(signed))
    }

    /// The newest stored signed head.
    pub fn signed_head(&self) -> Result<Option<SignedHead>, AuditError> {
        match self.meta.get(SIGNED_HEAD)? {
            None => Ok(None),
            Some(v) => codec::decode_exact(&v)
                .map(Some)
                .map_err(|err| AuditError::Corrupt { seq: 0, err }),
        }
    }
}

fn fail(seq: u64, what: String) -> AuditVerifyError {
    AuditVerifyError { seq, what }
}

/// Check a verified chain (`report`) against one signed head.
pub(super) fn check(
    log: &AuditLog,
    signed: &SignedHead,
    report: &VerifyReport,
) -> Result<(), AuditVerifyError> {
    if let Some(device) = &log.device {
        if !signed.verify(device) {
            return Err(fail(
                signed.seq,
                format!(
                    "the signed head at record {} is not signed by this device's key",
                    signed.seq
                ),
            ));
        }
    }
    // The head mark is what the chain was checked up to (it may be past
    // the last kept record only if nothing is kept).
    let last = log.last_seq();
    if signed.seq > last || report.last_seq.is_some_and(|l| signed.seq > l) {
        let ends = report.last_seq.unwrap_or(0).min(last);
        return Err(fail(
            ends + 1,
            format!(
                "records {}..={} at the tail are missing: the device signed head {} (time {}), the log ends at {ends}",
                ends + 1,
                signed.seq,
                signed.seq,
                signed.time
            ),
        ));
    }
    let stored = log
        .tree
        .get(signed.seq.to_be_bytes())
        .map_err(|e| fail(signed.seq, format!("storage: {e}")))?;
    match stored {
        Some(v) if record_hash(&v) != signed.hash => Err(fail(
            signed.seq,
            format!(
                "record {} does not match the signed head: it was altered",
                signed.seq
            ),
        )),
        // Dropped by retention: the chain from the anchor on is all that is
        // left to check, and it was.
        _ => Ok(()),
    }
}
