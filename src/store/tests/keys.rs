//! Key statements in the store: durable, followed from the config's keys
//! at open (root rotations included), a version used once, a bundle whose
//! signer was removed kept until replaced, a recovery that survives a
//! restart.

use super::*;
use edgegate_proto::authority::{KeyStatement, Recovery};
use edgegate_proto::KeyRole;

/// Statement `v`: root `root`, bundle key 2, ticket key 3, enroll key 4.
fn statement(v: u64, root: u8) -> KeyStatement {
    testkit::key_statement(v, T0, [&key(root), &key(2), &key(3), &key(4)])
}

fn sealed(s: &KeyStatement, signers: &[u8]) -> Vec<u8> {
    let keys: Vec<SigningKey> = signers.iter().map(|&n| key(n)).collect();
    let refs: Vec<&SigningKey> = keys.iter().collect();
    edgegate_proto::authority::seal(s, &refs)
}

fn installed(s: &Store, bytes: &[u8]) -> KeysApplied {
    let done = s.accept_keys(bytes, T0).unwrap();
    assert!(matches!(done, KeysApplied::Installed { .. }), "{done:?}");
    done
}

#[test]
fn statements_survive_a_restart_and_root_rotations_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = ok_store(dir.path());
        installed(&s, &sealed(&statement(1, 1), &[1]));
        installed(&s, &sealed(&statement(2, 9), &[1, 9]));
        installed(&s, &sealed(&statement(3, 9), &[9]));
        assert_eq!(s.authority().version(), 3);
    }
    // The config still pins root 1: the chain leads to root 9 and v3.
    let o = open(dir.path());
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    let a = o.store.authority();
    assert_eq!(a.version(), 3);
    assert_eq!(a.role(KeyRole::Root).keys(), &[testkit::public(&key(9))]);
    assert_eq!(a.role(KeyRole::Bundle).keys(), &[testkit::public(&key(2))]);
    let replay = o.store.accept_keys(&sealed(&statement(3, 9), &[9]), T0);
    assert!(matches!(replay, Ok(KeysApplied::Unchanged { version: 3 })));
    drop(o);
    // An unrelated config key: the statements are treated as absent, the
    // config's key acts as every role, and their versions stay used.
    let o = open_with(dir.path(), &trust(&[7], 1));
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    assert!(
        o.warnings[0].contains("treated as absent"),
        "{}",
        o.warnings[0]
    );
    let a = o.store.authority();
    assert_eq!(
        (a.version(), a.role(KeyRole::Ticket).clone()),
        (0, trust(&[7], 1))
    );
    let old = o.store.accept_keys(&sealed(&statement(3, 7), &[7]), T0);
    assert_eq!(old.unwrap_err().code(), "stale-key-statement");
    assert!(o
        .store
        .accept_keys(&sealed(&statement(4, 7), &[7]), T0)
        .is_ok());
}

#[test]
fn a_bundle_whose_signer_was_removed_is_kept_across_restarts_until_replaced() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = ok_store(dir.path());
        s.apply(&verified(&body(5, T0)), T0).unwrap();
        let done = installed(&s, &sealed(&statement(1, 1), &[1]));
        assert!(matches!(
            done,
            KeysApplied::Installed {
                grandfathered: true,
                dropped_bundle: false,
                ..
            }
        ));
        assert!(s.current().is_some());
    }
    let o = open(dir.path());
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    assert_eq!(o.bundle.as_ref().map(|b| b.bundle().serial), Some(5));
    // Signed by the root, which is no bundle key now: refused.
    let by_root = seal(&body(6, T0), &[1]);
    assert_eq!(
        o.store.accept(by_root, T0, |_| Ok(())).unwrap_err().code(),
        "bad-signature"
    );
    let by_bundle_key = seal(&body(6, T0), &[2]);
    assert!(o.store.accept(by_bundle_key, T0, |_| Ok(())).is_ok());
    drop(o);
    let o = open(dir.path());
    assert_eq!(o.bundle.map(|b| b.bundle().serial), Some(6));
    assert!(o.store.keys().grandfathered.is_none());
}

#[test]
fn a_recovery_resets_serial_and_floor_once_and_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let late = T0 + 20 * DAY;
    {
        let s = ok_store(dir.path());
        installed(&s, &sealed(&statement(1, 1), &[1]));
        let frozen = seal(&body(u64::MAX, late), &[2]);
        s.accept(frozen, late, |_| Ok(())).unwrap();
        assert_eq!(s.time_floor(), late);
        let mut v2 = statement(2, 1);
        v2.recovery = Some(Recovery {
            serial: Some(0),
            time_floor: Some(T0),
        });
        let done = installed(&s, &sealed(&v2, &[1]));
        assert!(matches!(
            done,
            KeysApplied::Installed {
                dropped_bundle: true,
                recovered: Some((Some(u64::MAX), f)),
                ..
            } if f == late
        ));
        assert_eq!((s.serial(), s.time_floor()), (Some(0), T0));
        assert!(s.current().is_none());
    }
    let o = open(dir.path());
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    assert!(o.bundle.is_none());
    assert_eq!((o.store.serial(), o.store.time_floor()), (Some(0), T0));
    let fresh = seal(&body(1, T0), &[2]);
    assert!(o.store.accept(fresh, T0, |_| Ok(())).is_ok());
}

#[test]
fn the_watermark_keeps_the_statement_version_and_an_older_sled_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = ok_store(dir.path());
        installed(&s, &sealed(&statement(1, 1), &[1]));
        installed(&s, &sealed(&statement(2, 1), &[1]));
    }
    let w = watermark::read(dir.path()).unwrap().unwrap();
    assert_eq!(w.keys, 2);
    // As if sled came back holding version 2 while 3 was acknowledged.
    watermark::write(dir.path(), &watermark::Watermark { keys: 3, ..w }).unwrap();
    let o = open(dir.path());
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    assert!(
        o.warnings[0].contains("version 3 was acknowledged"),
        "{}",
        o.warnings[0]
    );
    assert_eq!(o.store.authority().version(), 0);
    let again = o.store.accept_keys(&sealed(&statement(3, 1), &[1]), T0);
    assert_eq!(again.unwrap_err().code(), "stale-key-statement");
    installed(&o.store, &sealed(&statement(4, 1), &[1]));
    assert_eq!(watermark::read(dir.path()).unwrap().unwrap().keys, 4);
}
