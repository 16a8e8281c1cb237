//! The accept path checks the cheapest thing first and compiles last; the
//! time floor moves only under its ceiling (`edgegate_proto::time_floor`).

use super::*;
use edgegate_proto::time_floor::{CLOCKLESS_STEP, MAX_AHEAD};

/// A plausible wall clock (2027-01-15).
const NOW: UnixTime = 1_800_000_000;
/// 2099-01-01.
const Y2099: UnixTime = 4_070_908_800;

fn never_compiled(_: &VerifiedBundle) -> Result<(), crate::policy::CompileError> {
    panic!("compiled a bundle the cheap checks should have refused")
}

#[test]
fn stale_foreign_and_identical_bundles_are_never_compiled() {
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    let five = seal(&body(5, NOW), &[1]);
    let compiled = std::cell::Cell::new(0);
    let count = |_: &VerifiedBundle| {
        compiled.set(compiled.get() + 1);
        Ok(())
    };
    assert!(matches!(
        s.accept(five.clone(), NOW, count),
        Ok(Accepted::Installed { serial: 5, .. })
    ));
    assert_eq!(compiled.get(), 1);
    // A replayed stale serial: a signature check, then `rollback`.
    let e = s
        .accept(seal(&body(4, NOW), &[1]), NOW, never_compiled)
        .unwrap_err();
    assert_eq!(e.code(), "rollback", "{e}");
    let other = testkit::bundle("dev-2")
        .serial(9)
        .valid(NOW, NOW + DAY)
        .build();
    let e = s
        .accept(seal(&other, &[1]), NOW, never_compiled)
        .unwrap_err();
    assert_eq!(e.code(), "wrong-device", "{e}");
    // The bundle in force again: answered from its digest, before any
    // signature check (here the trust no longer has its signer at all).
    s.set_trust(trust(&[2], 1));
    assert!(matches!(
        s.accept(five, NOW, never_compiled),
        Ok(Accepted::Unchanged { serial: 5 })
    ));
    assert_eq!(compiled.get(), 1);
}

#[test]
fn a_bundle_dated_2099_is_refused_against_a_plausible_clock() {
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    s.apply(&verified(&body(1, NOW - DAY)), NOW).unwrap();
    let far = testkit::bundle(DEV)
        .serial(2)
        .valid(Y2099, Y2099 + DAY)
        .build();
    let e = s.accept(seal(&far, &[1]), NOW, never_compiled).unwrap_err();
    assert_eq!(
        e,
        RejectReason::FutureDated {
            issued_at: Y2099,
            limit: NOW + MAX_AHEAD
        }
    );
    assert!(e.to_string().starts_with("future-dated: "), "{e}");
    assert_eq!((s.serial(), s.time_floor()), (Some(1), NOW - DAY));
    // Within a day of the wall clock is skew, not an attack; the floor
    // stops at the (plausible) wall clock.
    s.apply(&verified(&body(3, NOW + MAX_AHEAD)), NOW).unwrap();
    assert_eq!(s.time_floor(), NOW);
    // A ticket dated 2099 moves the floor no further than the wall clock.
    assert!(!s.floor_would_rise(Y2099, NOW));
    assert_eq!(s.raise_time_floor(Y2099, NOW).unwrap(), NOW);
    assert_eq!(s.raise_time_floor(Y2099, NOW + 60).unwrap(), NOW + 60);
}

#[test]
fn without_a_clock_the_floor_moves_one_bounded_step_per_start() {
    let dir = tempfile::tempdir().unwrap();
    let last_month = NOW - 40 * DAY;
    {
        let s = ok_store(dir.path());
        s.apply(&verified(&body(1, last_month)), last_month)
            .unwrap();
    }
    // Rebooted without a clock: the wall reads 1970.
    let s = ok_store(dir.path());
    let far = testkit::bundle(DEV)
        .serial(2)
        .valid(Y2099, Y2099 + DAY)
        .build();
    // Accepted (a clockless router cannot tell it from a fresh one), but
    // the floor stops one step past where it started.
    s.apply(&verified(&far), 60).unwrap();
    let ceiling = last_month + CLOCKLESS_STEP;
    assert_eq!(s.time_floor(), ceiling);
    // Replayed, as a ticket: no ratchet.
    assert!(!s.floor_would_rise(Y2099, 60));
    assert_eq!(s.raise_time_floor(Y2099, 60).unwrap(), ceiling);
    // As the (1970) wall clock runs, the ceiling moves with it.
    assert_eq!(
        s.raise_time_floor(Y2099, 60 + 3600).unwrap(),
        ceiling + 3600
    );
    // Off for less than the step: a fresh ticket from today takes the
    // floor all the way to it.
    drop(s);
    let dir = tempfile::tempdir().unwrap();
    let weeks_ago = NOW - 20 * DAY;
    {
        let s = ok_store(dir.path());
        s.apply(&verified(&body(1, weeks_ago)), weeks_ago).unwrap();
    }
    let s = ok_store(dir.path());
    assert!(s.floor_would_rise(NOW, 60));
    assert_eq!(s.raise_time_floor(NOW, 60).unwrap(), NOW);
}

#[test]
fn a_new_router_without_a_clock_takes_its_first_bundles_date() {
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    // A ticket does not get the first-use exception.
    assert_eq!(
        s.raise_time_floor(NOW, 60).unwrap(),
        edgegate_proto::time_floor::PLAUSIBLE_SINCE + CLOCKLESS_STEP
    );
    let dir = tempfile::tempdir().unwrap();
    let s = ok_store(dir.path());
    s.apply(&verified(&body(1, NOW)), 60).unwrap();
    assert_eq!(s.time_floor(), NOW);
    // ... and anchors there: a fresh ticket a week later is in reach.
    assert_eq!(
        s.raise_time_floor(NOW + 7 * DAY, 60).unwrap(),
        NOW + 7 * DAY
    );
}
