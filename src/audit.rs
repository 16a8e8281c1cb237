//! The append-only, hash-chained audit log in sled.
//!
//! Tree `audit`: key = big-endian `u64` sequence number, value = the
//! postcard bytes of `AuditEntry::V1(AuditRecord)`. A record's hash is
//! SHA-256 over those bytes and the next record carries it as `prev_hash`.
//! Tree `audit_meta` holds two marks (`seq ‖ hash`, 40 bytes):
//! - `head`: the newest record, so a deleted or edited tail shows;
//! - `anchor`: the newest record dropped by retention, so the chain can be
//!   checked from the first kept record;
//! - `signed_head`: the newest [`SignedHead`], the head signed with the
//!   device key (`head.rs`): a log that ends before it lost its tail, even
//!   if `head` was rewritten to match.
//!
//! Tree `audit_strangers` holds the counters of unauthenticated events
//! (`strangers.rs`), outside the chain and under their own retention.
//!
//! Each append (of one record or a batch) writes the records, the head and
//! any retention removals in one sled transaction, under a mutex that
//! serialises sequence numbers. It is not flushed: the caller decides when
//! ([`AuditLog::flush_async`]).
//! Every append is also emitted as a `tracing` info event (journald).
//!
//! The daemon appends through [`AuditWriter`], a thread of its own, so no
//! sled transaction runs on the data path.
//!
//! This module does not decide what to audit; the gateway does.

pub mod format;
mod head;
pub mod strangers;
mod writer;

pub use strangers::{Stranger, StrangerCounter};
pub use writer::AuditWriter;

use edgegate_proto::audit::{
    AuditEntry, AuditEvent, AuditRecord, Hash, SignedHead, StrangerSummary,
};
pub use edgegate_proto::audit::{AuditVerifyError, VerifyReport};
use edgegate_proto::codec::{self, DecodeError};
use edgegate_proto::{PublicKey, UnixTime};
use sha2::{Digest, Sha256};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::sync::Mutex;

const TREE: &str = "audit";
const META: &str = "audit_meta";
const HEAD: &[u8] = b"head";
const ANCHOR: &[u8] = b"anchor";
const SIGNED_HEAD: &[u8] = b"signed_head";
const STRANGERS: &str = "audit_strangers";
/// Most records one append (or one pruning step) removes, so a lowered
/// retention is applied in bounded transactions.
const PRUNE_CHUNK: u64 = 1024;

/// Why the audit log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// sled failed.
    #[error("audit storage: {0}")]
    Storage(#[from] sled::Error),
    /// A stored record or mark could not be decoded.
    #[error("audit record {seq} is corrupt: {err}")]
    Corrupt {
        /// Its key.
        seq: u64,
        /// Why.
        err: DecodeError,
    },
}

/// The hash of a record's stored bytes.
pub fn record_hash(stored: &[u8]) -> Hash {
    Sha256::digest(stored).into()
}

/// A position in the chain: a sequence number and that record's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    seq: u64,
    hash: Hash,
}

impl Mark {
    fn encode(&self) -> [u8; 40] {
        let mut out = [0; 40];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..].copy_from_slice(&self.hash);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Mark> {
        let bytes: &[u8; 40] = bytes.try_into().ok()?;
        let seq = u64::from_be_bytes(bytes[..8].try_into().ok()?);
        Some(Mark {
            seq,
            hash: bytes[8..].try_into().ok()?,
        })
    }
}

/// The audit log. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct AuditLog {
    tree: sled::Tree,
    meta: sled::Tree,
    strangers: sled::Tree,
    retention: u64,
    /// The key signed heads must verify under (`None`: signatures are not
    /// checked, only what the heads say).
    device: Option<PublicKey>,
    /// The newest record (seq 0 and zero hash before the first append).
    head: Mutex<Mark>,
}

impl AuditLog {
    /// Open (or create) the log in `db`, keeping at most `retention` records.
    pub fn open(db: &sled::Db, retention: usize) -> Result<AuditLog, AuditError> {
        let tree = db.open_tree(TREE)?;
        let meta = db.open_tree(META)?;
        let strangers = db.open_tree(STRANGERS)?;
        let head = Self::find_head(&tree, &meta)?;
        let log = AuditLog {
            tree,
            meta,
            strangers,
            retention: (retention as u64).max(1),
            device: None,
            head: Mutex::new(head),
        };
        while log.prune_step()? {}
        Ok(log)
    }

    /// Check signed heads against `device`, the daemon's public key.
    pub fn with_device_key(mut self, device: PublicKey) -> AuditLog {
        self.device = Some(device);
        self
    }

    /// Continue after the stored head mark, so a deleted tail stays visible
    /// as a gap; fall back to the last record, then the anchor, then genesis.
    fn find_head(tree: &sled::Tree, meta: &sled::Tree) -> Result<Mark, AuditError> {
        let last = tree.last()?.map(|(k, v)| Mark {
            seq: key_seq(&k),
            hash: record_hash(&v),
        });
        let stored = read_mark(meta, HEAD)?;
        if let (Some(s), Some(l)) = (stored, last) {
            if s != l {
                tracing::warn!(
                    head_seq = s.seq,
                    last_seq = l.seq,
                    "audit head mark does not match the last record; `audit verify` will report it"
                );
            }
        }
        let anchor = read_mark(meta, ANCHOR)?;
        Ok(stored.or(last).or(anchor).unwrap_or(Mark {
            seq: 0,
            hash: [0; 32],
        }))
    }

    /// Append one event at wall-clock `time`; returns its sequence number.
    pub fn append(&self, time: UnixTime, event: AuditEvent) -> Result<u64, AuditError> {
        self.append_all(vec![(time, event)])
    }

    /// Append events in order, in one transaction (one chain step each);
    /// returns the sequence number of the last (the head if `events` is
    /// empty).
    pub fn append_all(&self, events: Vec<(UnixTime, AuditEvent)>) -> Result<u64, AuditError> {
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        if events.is_empty() {
            return Ok(head.seq);
        }
        let mut new_head = *head;
        let mut entries = Vec::with_capacity(events.len());
        for (time, event) in events {
            let entry = AuditEntry::V1(AuditRecord {
                seq: new_head.seq + 1,
                time,
                prev_hash: new_head.hash,
                event,
            });
            let bytes = entry.encode();
            new_head = Mark {
                seq: new_head.seq + 1,
                hash: record_hash(&bytes),
            };
            entries.push((new_head.seq, entry, bytes));
        }
        let first = self.first_kept(head.seq + 1)?;
        let excess = (new_head.seq + 1 - first).saturating_sub(self.retention);
        let drop_to = first + excess.min(PRUNE_CHUNK);
        (&self.tree, &self.meta)
            .transaction(|(t, m)| {
                for (seq, _, bytes) in &entries {
                    t.insert(&seq.to_be_bytes()[..], bytes.as_slice())?;
                }
                m.insert(HEAD, &new_head.encode()[..])?;
                remove_range(t, m, first, drop_to)?;
                Ok(())
            })
            .map_err(tx_err)?;
        *head = new_head;
        drop(head);
        for (_, entry, _) in &entries {
            format::trace(entry.record());
        }
        Ok(new_head.seq)
    }

    /// Sequence number of the oldest kept record once records from `next`
    /// on are added.
    fn first_kept(&self, next: u64) -> Result<u64, AuditError> {
        Ok(match self.tree.first()? {
            Some((k, _)) => key_seq(&k),
            None => next,
        })
    }

    /// Remove up to one chunk of records beyond retention. True if more remain.
    fn prune_step(&self) -> Result<bool, AuditError> {
        let _head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let (Some((f, _)), Some((l, _))) = (self.tree.first()?, self.tree.last()?) else {
            return Ok(false);
        };
        let (first, last) = (key_seq(&f), key_seq(&l));
        let excess = (last + 1 - first).saturating_sub(self.retention);
        if excess == 0 {
            return Ok(false);
        }
        let drop_to = first + excess.min(PRUNE_CHUNK);
        (&self.tree, &self.meta)
            .transaction(|(t, m)| remove_range(t, m, first, drop_to))
            .map_err(tx_err)?;
        Ok(excess > PRUNE_CHUNK)
    }

    /// Records in sequence order: from `since` on, or the newest `limit` if
    /// `since` is `None`.
    pub fn list(&self, since: Option<u64>, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        let mut out = Vec::new();
        match since {
            Some(s) => {
                for kv in self.tree.range(s.to_be_bytes()..).take(limit) {
                    out.push(decode(kv?)?);
                }
            }
            None => {
                for kv in self.tree.iter().rev().take(limit) {
                    out.push(decode(kv?)?);
                }
                out.reverse();
            }
        }
        Ok(out)
    }

    /// Records currently kept.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Sequence number of the newest record (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.head.lock().unwrap_or_else(|p| p.into_inner()).seq
    }

    /// Make every append so far durable.
    pub async fn flush_async(&self) -> Result<(), AuditError> {
        self.tree.flush_async().await?;
        Ok(())
    }

    /// Make every append so far durable, blocking.
    pub fn flush(&self) -> Result<(), AuditError> {
        self.tree.flush()?;
        Ok(())
    }

    /// Check the chain from the first kept record to the head mark, and
    /// against the newest stored signed head.
    pub fn verify(&self) -> Result<VerifyReport, AuditVerifyError> {
        self.verify_against(None)
    }

    /// [`AuditLog::verify`], and also against `kept`, a signed head the
    /// operator kept off-box (what a rewritten `signed_head` cannot hide).
    pub fn verify_against(
        &self,
        kept: Option<&SignedHead>,
    ) -> Result<VerifyReport, AuditVerifyError> {
        let report = verify::run(&self.tree, &self.meta)?;
        let stored = self.signed_head().map_err(|e| AuditVerifyError {
            seq: 0,
            what: e.to_string(),
        })?;
        for h in stored.iter().chain(kept) {
            head::check(self, h, &report)?;
        }
        Ok(report)
    }

    /// Store unauthenticated-event summaries (merged into any stored for
    /// the same minute and source), then drop the oldest beyond retention.
    pub fn add_strangers(&self, batch: &[StrangerSummary]) -> Result<(), AuditError> {
        for s in batch {
            let key = strangers::key(s);
            let mut merged = s.clone();
            if let Some(old) = self.strangers.get(&key)? {
                if let Ok(old) = codec::decode_exact::<StrangerSummary>(&old) {
                    merged.refused_sessions += old.refused_sessions;
                    merged.rejected_pushes += old.rejected_pushes;
                    merged.garbage += old.garbage;
                }
            }
            self.strangers.insert(key, codec::encode(&merged))?;
        }
        let excess = self
            .strangers
            .len()
            .saturating_sub(strangers::STRANGER_RETENTION);
        for _ in 0..excess {
            self.strangers.pop_min()?;
        }
        Ok(())
    }

    /// The newest `limit` stored summaries, oldest first.
    pub fn strangers(&self, limit: usize) -> Result<Vec<StrangerSummary>, AuditError> {
        let mut out = Vec::new();
        for kv in self.strangers.iter().rev().take(limit) {
            let (_, v) = kv?;
            out.push(codec::decode_exact(&v).map_err(|err| AuditError::Corrupt { seq: 0, err })?);
        }
        out.reverse();
        Ok(out)
    }
}

mod verify;

fn key_seq(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX)
}

fn read_mark(meta: &sled::Tree, key: &[u8]) -> Result<Option<Mark>, AuditError> {
    match meta.get(key)? {
        None => Ok(None),
        Some(v) => Mark::decode(&v).map(Some).ok_or(AuditError::Corrupt {
            seq: 0,
            err: DecodeError::Malformed(format!(
                "audit_meta {} is not 40 bytes",
                String::from_utf8_lossy(key)
            )),
        }),
    }
}

fn decode((k, v): (sled::IVec, sled::IVec)) -> Result<AuditRecord, AuditError> {
    AuditEntry::decode(&v)
        .map(AuditEntry::into_record)
        .map_err(|err| AuditError::Corrupt {
            seq: key_seq(&k),
            err,
        })
}

/// Remove records `from..to`, moving the anchor to the last one removed.
fn remove_range(
    t: &sled::transaction::TransactionalTree,
    m: &sled::transaction::TransactionalTree,
    from: u64,
    to: u64,
) -> Result<(), ConflictableTransactionError<()>> {
    let mut anchor = None;
    for seq in from..to {
        if let Some(old) = t.remove(&seq.to_be_bytes()[..])? {
            anchor = Some(Mark {
                seq,
                hash: record_hash(&old),
            });
        }
    }
    if let Some(a) = anchor {
        m.insert(ANCHOR, &a.encode()[..])?;
    }
    Ok(())
}

fn tx_err(e: TransactionError<()>) -> AuditError {
    match e {
        TransactionError::Storage(e) => AuditError::Storage(e),
        TransactionError::Abort(()) => unreachable!("audit transactions never abort"),
    }
}

#[cfg(test)]
mod tests;
