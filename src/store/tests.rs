//! The accept rules of `apply`, on a fake clock (wall time is an argument).

use super::*;
use crate::testkit::{self, key};
use ed25519_dalek::SigningKey;
use edgegate_proto::bundle::{self, Bundle};

mod keys;
mod order;
mod recovery;

const DEV: &str = "dev-1";
const T0: UnixTime = 1_700_000_000;
const DAY: u64 = 86_400;

fn trust(keys: &[u8], threshold: usize) -> TrustPolicy {
    let keys = keys.iter().map(|&n| testkit::public(&key(n))).collect();
    TrustPolicy::new(keys, threshold).unwrap()
}

fn body(serial: u64, issued_at: UnixTime) -> Bundle {
    testkit::bundle(DEV)
        .serial(serial)
        .valid(issued_at, issued_at + 30 * DAY)
        .build()
}

fn seal(b: &Bundle, signers: &[u8]) -> Vec<u8> {
    let keys: Vec<SigningKey> = signers.iter().map(|&n| key(n)).collect();
    let refs: Vec<&SigningKey> = keys.iter().collect();
    bundle::seal(b, &refs)
}

fn verified(b: &Bundle) -> VerifiedBundle {
    VerifiedBundle::verify(&seal(b, &[1]), &trust(&[1], 1)).unwrap()
}

fn open_with(dir: &Path, t: &TrustPolicy) -> Opened {
    Store::open(dir, t, DEV, |_| Ok(())).unwrap()
}

fn open(dir: &Path) -> Opened {
    open_with(dir, &trust(&[1], 1))
}

fn ok_store(dir: &Path) -> Store {
    let o = open(dir);
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    o.store
}

#[test]
fn fresh_store_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(dir.path());
    assert!(o.bundle.is_none() && o.warnings.is_empty());
    assert_eq!(o.store.serial(), None);
    assert_eq!(o.store.time_floor(), 0);
    assert!(o.store.current().is_none());
}

#[test]
fn accepted_bundle_is_returned_verified_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let b = verified(&body(5, T0));
    {
        let s = ok_store(dir.path());
        assert_eq!(s.apply(&b, T0), Ok(Applied::Accepted { serial: 5 }));
        assert_eq!(s.current().unwrap().raw(), b.raw());
        assert_eq!(s.serial(), Some(5));
    }
    let o = open(dir.path());
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    assert_eq!(o.bundle.unwrap().raw(), b.raw());
    assert_eq!(o.store.serial(), Some(5));
    assert_eq!(o.store.time_floor(), T0);
}

#[test]
fn rollback_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    s.apply(&verified(&body(7, T0)), T0).unwrap();
    let e = s.apply(&verified(&body(6, T0 + 10)), T0).unwrap_err();
    assert_eq!(e.code(), "rollback");
    assert_eq!(
        e,
        RejectReason::Rollback {
            stored: 7,
            offered: 6
        }
    );
    assert_eq!(s.serial(), Some(7));
}

#[test]
fn equal_serial_different_bytes_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    let a = verified(&body(7, T0));
    s.apply(&a, T0).unwrap();
    let e = s.apply(&verified(&body(7, T0 + 1)), T0).unwrap_err();
    assert_eq!(e.code(), "rollback");
    assert_eq!(s.current().unwrap().raw(), a.raw());
}

#[test]
fn wrong_device_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    let mut b = body(1, T0);
    b.device_id = "dev-2".into();
    let e = s.apply(&verified(&b), T0).unwrap_err();
    assert_eq!(e.code(), "wrong-device");
    let mut b = body(1, T0);
    b.device.id = "dev-2".into();
    assert_eq!(
        s.apply(&verified(&b), T0).unwrap_err().code(),
        "wrong-device"
    );
    assert_eq!(s.serial(), None);
}

#[test]
fn tampered_byte_rejected_at_verify() {
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    let mut raw = seal(&body(1, T0), &[1]);
    let at = raw.len() / 2;
    raw[at] ^= 0x01;
    let e = s.accept(raw, T0, |_| Ok(())).unwrap_err();
    assert!(matches!(e, RejectReason::Invalid(_)), "{e}");
    assert_eq!(s.serial(), None);
}

#[test]
fn below_threshold_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let t = trust(&[1, 2], 2);
    let s = open_with(dir.path(), &t).store;
    let e = s
        .accept(seal(&body(1, T0), &[1]), T0, |_| Ok(()))
        .unwrap_err();
    assert_eq!(e.code(), "bad-signature", "{e}");
    // The same key twice is still one signer.
    let e = s
        .accept(seal(&body(1, T0), &[1, 1]), T0, |_| Ok(()))
        .unwrap_err();
    assert_eq!(e.code(), "bad-signature", "{e}");
    let accepted = s
        .accept(seal(&body(1, T0), &[1, 2]), T0, |_| Ok(()))
        .unwrap();
    assert!(matches!(accepted, Accepted::Installed { serial: 1, .. }));
}

#[test]
fn untrusted_signer_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    let e = s
        .accept(seal(&body(1, T0), &[9]), T0, |_| Ok(()))
        .unwrap_err();
    assert_eq!(e.code(), "bad-signature", "{e}");
    assert_eq!(s.serial(), None);
}

#[test]
fn invalid_policy_rejected_before_storing() {
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    let e = s
        .accept(seal(&body(1, T0), &[1]), T0, |_| {
            Err::<(), _>(crate::policy::CompileError::GroupCycle {
                group: "g1\nsecond line".into(),
            })
        })
        .unwrap_err();
    assert_eq!(e.code(), "invalid-policy");
    assert_eq!(
        e.to_string(),
        "invalid-policy: group \"g1 second line\" is its own ancestor (parent cycle)"
    );
    assert_eq!(s.serial(), None);
}

#[test]
fn expired_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    let b = body(1, T0);
    let wall = b.not_after + 1;
    let e = s.apply(&verified(&b), wall).unwrap_err();
    assert_eq!(
        e,
        RejectReason::Expired {
            not_after: b.not_after,
            now: wall
        }
    );
    // At exactly not_after it still counts.
    assert!(s.apply(&verified(&b), b.not_after).is_ok());
}

#[test]
fn expired_by_time_floor_even_with_1970_clock() {
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    s.apply(&verified(&body(1, T0 + 100 * DAY)), 0).unwrap();
    assert_eq!(s.time_floor(), T0 + 100 * DAY);
    assert_eq!(s.now(0), T0 + 100 * DAY);
    // Newer serial, but it ran out before the newest signed time we saw.
    let old = body(2, T0);
    let e = s.apply(&verified(&old), 0).unwrap_err();
    assert_eq!(e.code(), "expired");
    assert_eq!(s.serial(), Some(1));
}

#[test]
fn same_bundle_twice_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let b = verified(&body(3, T0));
    {
        let s = ok_store(dir.path());
        assert_eq!(s.apply(&b, T0), Ok(Applied::Accepted { serial: 3 }));
        assert_eq!(s.apply(&b, T0), Ok(Applied::Unchanged { serial: 3 }));
    }
    let s = ok_store(dir.path());
    assert_eq!(s.apply(&b, T0), Ok(Applied::Unchanged { serial: 3 }));
    assert_eq!(s.serial(), Some(3));
}

#[test]
fn time_floor_never_decreases_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = ok_store(dir.path());
        s.apply(&verified(&body(1, T0 + 1000)), 0).unwrap();
        assert_eq!(s.time_floor(), T0 + 1000);
        // A later serial issued earlier does not pull the floor back.
        s.apply(&verified(&body(2, T0 + 500)), 0).unwrap();
        assert_eq!(s.time_floor(), T0 + 1000);
        assert_eq!(s.raise_time_floor(T0, 0).unwrap(), T0 + 1000);
        assert_eq!(s.raise_time_floor(T0 + 2000, 0).unwrap(), T0 + 2000);
        assert_eq!(s.now(T0), T0 + 2000);
        assert_eq!(s.now(T0 + 3000), T0 + 3000);
    }
    let s = ok_store(dir.path());
    assert_eq!(s.time_floor(), T0 + 2000);
    assert_eq!(s.serial(), Some(2));
}

#[test]
fn reject_reasons_have_stable_codes_and_one_line() {
    let reasons = [
        RejectReason::WrongDevice {
            expected: "a".into(),
            got: "b".into(),
        },
        RejectReason::Rollback {
            stored: 2,
            offered: 1,
        },
        RejectReason::Expired {
            not_after: 1,
            now: 2,
        },
        RejectReason::InvalidPolicy(crate::policy::CompileError::GroupCycle {
            group: "x\ny".into(),
        }),
        RejectReason::Storage("disk\nfull".into()),
    ];
    let codes: Vec<_> = reasons.iter().map(|r| r.code()).collect();
    assert_eq!(
        codes,
        [
            "wrong-device",
            "rollback",
            "expired",
            "invalid-policy",
            "storage-error"
        ]
    );
    for r in &reasons {
        let s = r.to_string();
        assert!(s.starts_with(r.code()) && !s.contains('\n'), "{s}");
    }
}

#[test]
fn store_is_send_and_sync() {
    fn assert<T: Send + Sync>() {}
    assert::<Store>();
}

#[test]
fn barred_tickets_survive_reopen_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = ok_store(dir.path());
        s.bar_ticket([1; 16], T0 + 100).unwrap();
        s.bar_ticket([2; 16], T0 - 1).unwrap();
        s.bar_ticket([1; 16], T0 + 200).unwrap(); // again: one entry
        assert_eq!(s.barred_tickets(T0).unwrap(), vec![[1; 16]]);
    }
    let s = ok_store(dir.path());
    assert_eq!(s.barred_tickets(T0).unwrap(), vec![[1; 16]]);
    // The expired one was dropped from disk, not just filtered.
    assert_eq!(s.db().open_tree("barred").unwrap().len(), 1);
    assert!(s.barred_tickets(T0 + 201).unwrap().is_empty());
}

#[test]
fn barred_tickets_are_bounded_dropping_the_soonest_to_expire() {
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    const CAP: usize = 8; // MAX_BARRED in production; small here (each bar is flushed)
    for i in (0..=CAP as u64).rev() {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&i.to_be_bytes());
        s.bar_ticket_within(id, T0 + 10 + i, CAP).unwrap();
    }
    let live = s.barred_tickets(T0).unwrap();
    assert_eq!(live.len(), CAP);
    assert!(
        !live.contains(&[0u8; 16]),
        "the soonest to expire went first"
    );
}
