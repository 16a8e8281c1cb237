use super::*;
use edgegate_proto::audit::{CloseReason, Outcome};
use edgegate_proto::{DenyReason, Level};

/// Open sled in `dir`, waiting out a dropped `Db` of this test whose
/// background flusher still holds sled's lock (as `store::open` does).
fn db(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::Config::new().path(dir).cache_capacity(4 << 20).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}

fn ev(i: u64) -> AuditEvent {
    match i % 3 {
        0 => AuditEvent::Decision {
            session: i,
            user: Some("bert".into()),
            service: Some("hmi-vnc".into()),
            destination: None,
            outcome: Outcome::Deny(DenyReason::NoGrant),
        },
        1 => AuditEvent::StreamClose {
            session: i,
            user: "anna".into(),
            service: "lan".into(),
            destination: Some("192.168.1.10:502".into()),
            bytes_up: 10 * i,
            bytes_down: 20 * i,
            duration_ms: 5,
            reason: CloseReason::Denied(DenyReason::UserInactive),
        },
        _ => AuditEvent::BundleAccepted {
            serial: i,
            issued_at: 100,
            not_after: 200,
        },
    }
}

fn fill(log: &AuditLog, n: u64) {
    for i in 0..n {
        log.append(1_700_000_000 + i, ev(i)).unwrap();
    }
}

#[test]
fn chain_verifies_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&db(dir.path()), 1000).unwrap();
    assert_eq!(
        log.verify().unwrap(),
        VerifyReport {
            records: 0,
            first_seq: None,
            last_seq: None
        }
    );
    fill(&log, 10);
    assert_eq!(
        log.verify().unwrap(),
        VerifyReport {
            records: 10,
            first_seq: Some(1),
            last_seq: Some(10)
        }
    );
    let all = log.list(Some(1), 100).unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all[0].prev_hash, [0; 32]);
    assert_eq!(all[3].seq, 4);
    assert_eq!(log.list(Some(8), 100).unwrap().len(), 3);
    let newest: Vec<u64> = log.list(None, 3).unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(newest, vec![8, 9, 10]);
    assert_eq!(log.list(Some(2), 2).unwrap()[1].seq, 3);
}

#[test]
fn edited_record_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let log = AuditLog::open(&db, 1000).unwrap();
    fill(&log, 6);
    let tree = db.open_tree("audit").unwrap();
    let key = 3u64.to_be_bytes();
    let mut rec = AuditEntry::decode(&tree.get(key).unwrap().unwrap())
        .unwrap()
        .into_record();
    rec.time += 1;
    tree.insert(key, AuditEntry::V1(rec).encode()).unwrap();
    let err = log.verify().unwrap_err();
    assert_eq!(err.seq, 4, "{err}");
    assert!(
        err.to_string().contains("record 3 or 4 was altered"),
        "{err}"
    );
}

#[test]
fn edited_last_record_is_detected_by_the_head_mark() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let log = AuditLog::open(&db, 1000).unwrap();
    fill(&log, 3);
    let tree = db.open_tree("audit").unwrap();
    let key = 3u64.to_be_bytes();
    let mut rec = AuditEntry::decode(&tree.get(key).unwrap().unwrap())
        .unwrap()
        .into_record();
    rec.event = AuditEvent::DaemonStop;
    tree.insert(key, AuditEntry::V1(rec).encode()).unwrap();
    let err = log.verify().unwrap_err();
    assert_eq!(err.seq, 3, "{err}");
}

#[test]
fn deleted_records_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let log = AuditLog::open(&db, 1000).unwrap();
    fill(&log, 8);
    let tree = db.open_tree("audit").unwrap();
    tree.remove(5u64.to_be_bytes()).unwrap();
    let err = log.verify().unwrap_err();
    assert_eq!(err.seq, 6);
    assert!(err.what.contains("records 5..=5 are missing"), "{err}");

    // Renumbering the rest to hide the gap breaks the hash chain instead.
    for seq in 6..=8u64 {
        let v = tree.remove(seq.to_be_bytes()).unwrap().unwrap();
        let mut rec = AuditEntry::decode(&v).unwrap().into_record();
        rec.seq -= 1;
        tree.insert((seq - 1).to_be_bytes(), AuditEntry::V1(rec).encode())
            .unwrap();
    }
    let err = log.verify().unwrap_err();
    assert_eq!(err.seq, 5, "{err}");

    // Deleting the first records without an anchor shows too.
    let dir2 = tempfile::tempdir().unwrap();
    let db2 = self::db(dir2.path());
    let log2 = AuditLog::open(&db2, 1000).unwrap();
    fill(&log2, 4);
    db2.open_tree("audit")
        .unwrap()
        .remove(1u64.to_be_bytes())
        .unwrap();
    let err = log2.verify().unwrap_err();
    assert!(err.what.contains("records 1..=1 are missing"), "{err}");
}

#[test]
fn deleted_tail_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let log = AuditLog::open(&db, 1000).unwrap();
    fill(&log, 5);
    let tree = db.open_tree("audit").unwrap();
    tree.remove(5u64.to_be_bytes()).unwrap();
    tree.remove(4u64.to_be_bytes()).unwrap();
    let err = log.verify().unwrap_err();
    assert_eq!(err.seq, 4);
    assert!(
        err.what.contains("records 4..=5 at the tail are missing"),
        "{err}"
    );
}

#[test]
fn retention_keeps_verify_passing() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let log = AuditLog::open(&db, 16).unwrap();
    fill(&log, 50);
    assert_eq!(log.len(), 16);
    assert_eq!(
        log.verify().unwrap(),
        VerifyReport {
            records: 16,
            first_seq: Some(35),
            last_seq: Some(50)
        }
    );
    // Deleting the first kept record is still caught against the anchor.
    db.open_tree("audit")
        .unwrap()
        .remove(35u64.to_be_bytes())
        .unwrap();
    let err = log.verify().unwrap_err();
    assert!(err.what.contains("records 35..=35 are missing"), "{err}");
}

#[test]
fn lowering_retention_prunes_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    fill(&AuditLog::open(&db, 5000).unwrap(), 3000);
    let log = AuditLog::open(&db, 20).unwrap();
    assert_eq!(log.len(), 20);
    let report = log.verify().unwrap();
    assert_eq!(
        (report.first_seq, report.last_seq),
        (Some(2981), Some(3000))
    );
}

#[test]
fn reopen_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = db(dir.path());
        let log = AuditLog::open(&db, 100).unwrap();
        fill(&log, 4);
        log.flush().unwrap();
    }
    let db = db(dir.path());
    let log = AuditLog::open(&db, 100).unwrap();
    assert_eq!(log.last_seq(), 4);
    assert_eq!(log.append(1, AuditEvent::DaemonStop).unwrap(), 5);
    assert_eq!(log.verify().unwrap().records, 5);
}

#[test]
fn appends_from_many_threads_stay_chained() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(AuditLog::open(&db(dir.path()), 10_000).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || fill(&log, 50))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(log.verify().unwrap().records, 200);
}

#[tokio::test]
async fn flush_async_works() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&db(dir.path()), 100).unwrap();
    fill(&log, 2);
    log.flush_async().await.unwrap();
}

#[test]
fn text_and_json_forms() {
    let rec = AuditRecord {
        seq: 7,
        time: 0,
        prev_hash: [0xab; 32],
        event: AuditEvent::StreamOpen {
            session: 3,
            user: "anna".into(),
            service: "hmi vnc".into(),
            destination: None,
            level: Level::Read,
        },
    };
    assert_eq!(
        format::line(&rec),
        "     7 1970-01-01T00:00:00Z stream-open session=3 user=anna service=\"hmi vnc\" level=read"
    );
    let j = format::json(&rec);
    assert_eq!(j["event"], "stream-open");
    assert_eq!(j["session"], 3);
    assert_eq!(j["service"], "hmi vnc");
    assert!(j.get("destination").is_none());
    assert_eq!(j["prev_hash"].as_str().unwrap().len(), 64);
}

#[test]
fn a_batch_is_the_same_chain_as_single_appends() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (one, all) = (
        AuditLog::open(&db(d1.path()), 1000).unwrap(),
        AuditLog::open(&db(d2.path()), 1000).unwrap(),
    );
    fill(&one, 10);
    all.append(1_700_000_000, ev(0)).unwrap();
    let rest: Vec<_> = (1..10).map(|i| (1_700_000_000 + i, ev(i))).collect();
    assert_eq!(all.append_all(rest).unwrap(), 10);
    assert_eq!(
        all.append_all(Vec::new()).unwrap(),
        10,
        "an empty batch is no step"
    );
    assert_eq!(one.list(None, 100).unwrap(), all.list(None, 100).unwrap());
    assert_eq!(all.verify().unwrap().records, 10);
}

#[test]
fn a_batch_larger_than_retention_keeps_the_newest_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&db(dir.path()), 5).unwrap();
    let batch: Vec<_> = (0..12).map(|i| (1_700_000_000 + i, ev(i))).collect();
    log.append_all(batch).unwrap();
    let kept: Vec<u64> = log.list(None, 100).unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(kept, vec![8, 9, 10, 11, 12]);
    let report = log.verify().unwrap();
    assert_eq!(
        (report.records, report.first_seq, report.last_seq),
        (5, Some(8), Some(12))
    );
}

/// A careful attacker cuts the tail and rewrites the head mark to match:
/// the chain alone still verifies; the signed head does not.
#[test]
fn a_cut_tail_with_a_rewritten_head_mark_is_caught_by_the_signed_head() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let device = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let public = PublicKey::from(device.verifying_key());
    let log = AuditLog::open(&db, 1000).unwrap().with_device_key(public);
    fill(&log, 10);
    let signed = log.sign_head(&device).unwrap().unwrap();
    assert_eq!(signed.seq, 10);
    assert!(log.verify().is_ok());
    let line = signed.to_line();
    drop(log);

    let tree = db.open_tree(TREE).unwrap();
    let meta = db.open_tree(META).unwrap();
    for seq in 8..=10u64 {
        tree.remove(seq.to_be_bytes()).unwrap();
    }
    let (k, v) = tree.last().unwrap().unwrap();
    let mark = Mark {
        seq: key_seq(&k),
        hash: record_hash(&v),
    };
    meta.insert(HEAD, &mark.encode()[..]).unwrap();

    // What the chain alone says: intact, to 7.
    assert!(verify::run(&tree, &meta).is_ok());
    let log = AuditLog::open(&db, 1000).unwrap().with_device_key(public);
    let err = log.verify().unwrap_err();
    assert_eq!(err.seq, 8);
    assert!(
        err.what.contains("records 8..=10 at the tail are missing"),
        "{err}"
    );

    // The attacker also deletes the stored signature: the line the
    // operator kept off-box still catches it.
    meta.remove(SIGNED_HEAD).unwrap();
    assert!(log.verify().is_ok());
    let kept = SignedHead::parse_line(&line).unwrap();
    let err = log.verify_against(Some(&kept)).unwrap_err();
    assert!(err.what.contains("at the tail are missing"), "{err}");
}

#[test]
fn a_forged_or_mismatched_signed_head_fails() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let device = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let other = ed25519_dalek::SigningKey::from_bytes(&[6; 32]);
    let log = AuditLog::open(&db, 1000)
        .unwrap()
        .with_device_key(PublicKey::from(device.verifying_key()));
    fill(&log, 5);
    let forged = log.sign_head(&other).unwrap().unwrap();
    let err = log.verify().unwrap_err();
    assert!(
        err.what.contains("not signed by this device's key"),
        "{err}"
    );
    // A genuine head, and a record under it edited (hash differs).
    let good = log.sign_head(&device).unwrap().unwrap();
    assert!(log.verify_against(Some(&good)).is_ok());
    let wrong = SignedHead {
        hash: [1; 32],
        ..good.clone()
    };
    assert!(log.verify_against(Some(&wrong)).is_err());
    assert_ne!(forged, good);
    // Signed heads are checked; later records past them are fine.
    fill(&log, 3);
    assert!(log.verify_against(Some(&good)).is_ok());
}

#[test]
fn stranger_summaries_are_merged_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let log = AuditLog::open(&db, 10).unwrap();
    let s = |minute: u64, n: u64| StrangerSummary {
        minute: minute * 60,
        source: "192.0.2.1".into(),
        refused_sessions: n,
        rejected_pushes: 0,
        garbage: 1,
    };
    log.add_strangers(&[s(1, 2)]).unwrap();
    log.add_strangers(&[s(1, 3)]).unwrap();
    let got = log.strangers(10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].refused_sessions, got[0].garbage), (5, 2));
    let many: Vec<_> = (2..strangers::STRANGER_RETENTION as u64 + 500)
        .map(|m| s(m, 1))
        .collect();
    log.add_strangers(&many).unwrap();
    let kept = log.strangers(usize::MAX).unwrap();
    assert_eq!(kept.len(), strangers::STRANGER_RETENTION);
    assert_eq!(kept.last().unwrap().minute, many.last().unwrap().minute);
    // Nothing of this touched the chain.
    assert_eq!(log.last_seq(), 0);
}
