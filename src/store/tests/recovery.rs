//! Reopening: verification again under the current trust, and recovery
//! from broken or silently rolled-back state.

use super::*;

#[test]
fn reopen_under_other_trust_gives_no_bundle_and_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    ok_store(dir.path())
        .apply(&verified(&body(9, T0)), T0)
        .unwrap();
    let rotated = trust(&[2], 1);
    let o = open_with(dir.path(), &rotated);
    assert!(o.bundle.is_none());
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    assert!(o.warnings[0].contains("bad-signature"), "{}", o.warnings[0]);
    assert!(o.store.current().is_none());
    // The serial is enforced from the watermark whatever the trust; the
    // floor is kept.
    assert_eq!(o.store.serial(), Some(9));
    assert_eq!(o.store.time_floor(), T0);
    let lower = VerifiedBundle::verify(&seal(&body(1, T0), &[2]), &rotated).unwrap();
    assert_eq!(o.store.apply(&lower, T0).unwrap_err().code(), "rollback");
    let fresh = VerifiedBundle::verify(&seal(&body(10, T0), &[2]), &rotated).unwrap();
    assert_eq!(
        o.store.apply(&fresh, T0),
        Ok(Applied::Accepted { serial: 10 })
    );
}

#[test]
fn config_mistake_is_recoverable_by_reopening_with_the_right_trust() {
    let dir = tempfile::tempdir().unwrap();
    let b = verified(&body(9, T0));
    ok_store(dir.path()).apply(&b, T0).unwrap();
    let o = open_with(dir.path(), &trust(&[2], 1));
    assert!(o.bundle.is_none());
    drop(o);
    let o = open(dir.path());
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    assert_eq!(o.bundle.unwrap().raw(), b.raw());
}

#[test]
fn reopen_for_another_device_gives_no_bundle() {
    let dir = tempfile::tempdir().unwrap();
    ok_store(dir.path())
        .apply(&verified(&body(9, T0)), T0)
        .unwrap();
    let o = Store::open(dir.path(), &trust(&[1], 1), "dev-2", |_| Ok(())).unwrap();
    assert!(o.bundle.is_none());
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    assert!(o.warnings[0].contains("dev-2"));
}

#[test]
fn reopen_refused_by_check_gives_no_bundle_but_keeps_serial() {
    let dir = tempfile::tempdir().unwrap();
    ok_store(dir.path())
        .apply(&verified(&body(9, T0)), T0)
        .unwrap();
    let o = Store::open(dir.path(), &trust(&[1], 1), DEV, |_| {
        Err("group cycle g1".into())
    })
    .unwrap();
    assert!(o.bundle.is_none());
    assert_eq!(o.warnings.len(), 1);
    assert!(o.warnings[0].contains("group cycle g1"));
    assert_eq!(o.store.serial(), Some(9));
    let same = verified(&body(9, T0));
    assert_eq!(o.store.apply(&same, T0).unwrap_err().code(), "rollback");
    assert!(o.store.apply(&verified(&body(10, T0)), T0).is_ok());
}

fn garble_files(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            n += garble_files(&path);
        } else {
            let len = std::fs::metadata(&path).unwrap().len().max(64) as usize;
            let junk: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
            std::fs::write(&path, junk).unwrap();
            n += 1;
        }
    }
    n
}

fn broken_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("db.broken-"))
        .collect()
}

#[test]
fn corrupted_sled_directory_opens_fresh_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    ok_store(dir.path())
        .apply(&verified(&body(4, T0)), T0)
        .unwrap();
    assert!(garble_files(&dir.path().join(SLED_DIR)) > 0);
    let o = open(dir.path());
    assert!(o.bundle.is_none());
    assert_eq!(o.warnings.len(), 2, "{:?}", o.warnings);
    assert!(o.warnings[0].contains("moved aside"), "{}", o.warnings[0]);
    assert_eq!(broken_dirs(dir.path()).len(), 1);
    // The watermark carries the acknowledged serial and floor over.
    assert!(o.warnings[1].contains("older state"), "{}", o.warnings[1]);
    assert_eq!(o.store.serial(), Some(4));
    assert_eq!(o.store.time_floor(), T0);
    // Another bundle at the lost serial is a rollback; the very bundle that
    // was acknowledged (the watermark has its digest) may come back, also
    // after the floor moved (and the watermark was rewritten) meanwhile,
    // and after a reopen.
    o.store.raise_time_floor(T0 + 5, 0).unwrap();
    drop(o);
    let o = open(dir.path());
    assert!(matches!(
        o.store.apply(&verified(&body(4, T0 + 1)), T0),
        Err(RejectReason::Rollback {
            stored: 4,
            offered: 4
        })
    ));
    assert_eq!(
        o.store.apply(&verified(&body(4, T0)), T0),
        Ok(Applied::Accepted { serial: 4 })
    );
    assert_eq!(
        o.store.apply(&verified(&body(4, T0)), T0),
        Ok(Applied::Unchanged { serial: 4 })
    );
    assert!(o.store.apply(&verified(&body(5, T0)), T0).is_ok());
    drop(o);
    assert!(open(dir.path()).warnings.is_empty());
}

#[test]
fn corrupted_sled_directory_without_watermark_opens_empty() {
    let dir = tempfile::tempdir().unwrap();
    ok_store(dir.path())
        .apply(&verified(&body(4, T0)), T0)
        .unwrap();
    std::fs::remove_file(dir.path().join(watermark::FILE)).unwrap();
    garble_files(&dir.path().join(SLED_DIR));
    let o = open(dir.path());
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    assert_eq!(o.store.serial(), None);
    assert_eq!(o.store.time_floor(), 0);
}

#[test]
fn silent_sled_rollback_is_detected_by_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = ok_store(dir.path());
        s.apply(&verified(&body(1, T0)), T0).unwrap();
        let w = std::fs::read(dir.path().join(watermark::FILE)).unwrap();
        s.apply(&verified(&body(2, T0 + 10)), T0).unwrap();
        s.raise_time_floor(T0 + 20, 0).unwrap();
        // Put sled back to serial 1 behind the store's back, as a truncated
        // log would, keeping the newer watermark.
        let old = verified(&body(1, T0));
        s.bundle.insert(KEY_ENVELOPE, old.raw()).unwrap();
        s.bundle.insert(KEY_SERIAL, &1u64.to_be_bytes()).unwrap();
        s.meta.insert(KEY_FLOOR, &T0.to_be_bytes()).unwrap();
        s.db.flush().unwrap();
        assert_ne!(std::fs::read(dir.path().join(watermark::FILE)).unwrap(), w);
    }
    let o = open(dir.path());
    assert!(o.bundle.is_none(), "an older bundle is a rollback");
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    assert!(o.warnings[0].contains("serial 1 < 2"), "{}", o.warnings[0]);
    assert_eq!(o.store.serial(), Some(2));
    assert_eq!(o.store.time_floor(), T0 + 20);
    drop(o);
    // The repair was persisted: the next open is quiet.
    let o = open(dir.path());
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    assert_eq!(o.store.serial(), Some(2));
}

#[test]
fn floor_only_lag_keeps_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let b = verified(&body(1, T0));
    {
        let s = ok_store(dir.path());
        s.apply(&b, T0).unwrap();
        s.raise_time_floor(T0 + 50, 0).unwrap();
        s.meta.insert(KEY_FLOOR, &T0.to_be_bytes()).unwrap();
        s.db.flush().unwrap();
    }
    let o = open(dir.path());
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    assert_eq!(o.bundle.unwrap().raw(), b.raw());
    assert_eq!(o.store.time_floor(), T0 + 50);
}

#[test]
fn an_unreadable_watermark_fails_closed_until_an_operator_resets_it() {
    let dir = tempfile::tempdir().unwrap();
    let b1 = verified(&body(1, T0));
    ok_store(dir.path()).apply(&b1, T0).unwrap();
    let file = dir.path().join(watermark::FILE);
    std::fs::write(&file, "junk").unwrap();
    let reset = |at| reset_watermark(dir.path(), at, 1000);
    {
        let o = open(dir.path());
        assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
        assert!(
            o.warnings[0].contains("reset-watermark"),
            "{}",
            o.warnings[0]
        );
        assert!(o.bundle.is_none(), "the stored bundle is not used");
        assert!(o.store.sealed().is_some());
        let e = o.store.apply(&verified(&body(2, T0)), T0).unwrap_err();
        assert_eq!(e.code(), "watermark-unreadable");
        let e = o
            .store
            .accept(seal(&body(3, T0), &[1]), T0, |_| Ok(()))
            .unwrap_err();
        assert_eq!(e.code(), "watermark-unreadable");
        assert!(
            e.to_string().contains("edgegate store reset-watermark"),
            "{e}"
        );
        // Raising the floor does not overwrite the unreadable file.
        o.store.raise_time_floor(T0 + 9, 0).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "junk");
        // Not while the store is open (the daemon running).
        assert!(matches!(reset(T0), Err(ResetError::Running(_))));
    }
    // Still closed after a restart: only the operator ends it.
    assert!(open(dir.path()).store.sealed().is_some());
    let done = reset(T0 + 100).unwrap();
    assert_eq!(
        done,
        WatermarkReset {
            at: T0 + 100,
            by_uid: 1000,
            serial: Some(1),
            floor: T0 + 9
        }
    );
    let aside = dir
        .path()
        .join(format!("{}.unreadable-{}", watermark::FILE, T0 + 100));
    assert_eq!(std::fs::read_to_string(aside).unwrap(), "junk");
    assert!(matches!(reset(T0 + 200), Err(ResetError::Readable(_))));
    let o = open(dir.path());
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    assert_eq!(o.reset, Some(done));
    assert_eq!(o.bundle.as_ref().unwrap().raw(), b1.raw());
    assert_eq!(o.store.serial(), Some(1));
    assert_eq!(
        o.store.apply(&verified(&body(2, T0)), T0),
        Ok(Applied::Accepted { serial: 2 })
    );
    clear_reset_note(dir.path()).unwrap();
    drop(o);
    assert_eq!(open(dir.path()).reset, None);
}

#[test]
fn state_files_and_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state/edgegate");
    let s = ok_store(&dir);
    s.apply(&verified(&body(1, T0)), T0).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root.path().join("state")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(SLED_DIR)), 0o700);
    assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
    assert_eq!(mode(&dir.join(watermark::FILE)), 0o600);
}

#[test]
fn unknown_format_marker_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = ok_store(dir.path());
        s.meta
            .insert(KEY_FORMAT, &b"edgegate-store/99"[..])
            .unwrap();
        s.db.flush().unwrap();
    }
    let o = open(dir.path());
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    assert!(o.warnings[0].contains("unknown store format"));
    assert_eq!(broken_dirs(dir.path()).len(), 1);
}

#[test]
fn second_open_is_refused_and_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    s.apply(&verified(&body(1, T0)), T0).unwrap();
    let e = Store::open(dir.path(), &trust(&[1], 1), DEV, |_| Ok(())).unwrap_err();
    assert!(matches!(e, StoreError::Locked(_)), "{e}");
    assert!(broken_dirs(dir.path()).is_empty());
    assert_eq!(s.serial(), Some(1));
}
