//! Walking the chain: every kept record must follow the anchor (or genesis)
//! with consecutive sequence numbers and matching `prev_hash`, and the last
//! one must be the head mark.

use super::{key_seq, read_mark, record_hash, Mark, ANCHOR, HEAD};
use edgegate_proto::audit::{AuditEntry, AuditVerifyError, VerifyReport};

fn fail(seq: u64, what: impl Into<String>) -> AuditVerifyError {
    AuditVerifyError {
        seq,
        what: what.into(),
    }
}

pub(super) fn run(tree: &sled::Tree, meta: &sled::Tree) -> Result<VerifyReport, AuditVerifyError> {
    let mark = |key: &[u8]| read_mark(meta, key).map_err(|e| fail(0, e.to_string()));
    let anchor = mark(ANCHOR)?;
    let head = mark(HEAD)?;
    let mut prev = anchor.unwrap_or(Mark {
        seq: 0,
        hash: [0; 32],
    });
    let mut first = None;
    let mut records = 0u64;
    for kv in tree.iter() {
        let (k, v) = kv.map_err(|e| fail(prev.seq + 1, format!("storage: {e}")))?;
        let seq = key_seq(&k);
        let rec = AuditEntry::decode(&v)
            .map_err(|e| fail(seq, format!("undecodable record: {e}")))?
            .into_record();
        if rec.seq != seq {
            return Err(fail(
                seq,
                format!("stored under key {seq} but says seq {}", rec.seq),
            ));
        }
        if seq != prev.seq + 1 {
            let what = if first.is_none() && anchor.is_none() {
                format!("records 1..={} are missing (no retention anchor)", seq - 1)
            } else {
                format!("records {}..={} are missing", prev.seq + 1, seq - 1)
            };
            return Err(fail(seq, what));
        }
        if rec.prev_hash != prev.hash {
            let what = if prev.seq == 0 {
                "first record does not start from the genesis hash".to_string()
            } else if first.is_none() {
                format!(
                    "prev_hash does not match the retention anchor (record {})",
                    prev.seq
                )
            } else {
                format!(
                    "prev_hash does not match the hash of record {}: record {} or {seq} was altered",
                    prev.seq, prev.seq
                )
            };
            return Err(fail(seq, what));
        }
        first.get_or_insert(seq);
        records += 1;
        prev = Mark {
            seq,
            hash: record_hash(&v),
        };
    }
    check_head(head, prev)?;
    Ok(VerifyReport {
        records,
        first_seq: first,
        last_seq: first.map(|_| prev.seq),
    })
}

/// The head mark must name the last record walked (nothing at all for a log
/// never written).
fn check_head(head: Option<Mark>, last: Mark) -> Result<(), AuditVerifyError> {
    match head {
        None if last.seq == 0 => Ok(()),
        None => Err(fail(last.seq, "head mark is missing")),
        Some(h) if h.seq > last.seq => Err(fail(
            last.seq + 1,
            format!(
                "records {}..={} at the tail are missing",
                last.seq + 1,
                h.seq
            ),
        )),
        Some(h) if h.seq < last.seq => Err(fail(
            h.seq,
            format!("head mark says {} but the log runs to {}", h.seq, last.seq),
        )),
        Some(h) if h.hash != last.hash => Err(fail(
            h.seq,
            format!(
                "record {} does not match the head mark: it was altered",
                h.seq
            ),
        )),
        Some(_) => Ok(()),
    }
}
