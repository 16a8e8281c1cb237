use super::*;
use std::sync::Arc;

#[tokio::test(start_paused = true)]
async fn timed_grant_expires_on_the_monotonic_clock() {
    let c = Consent::new();
    assert!(!c.is_active(Instant::now()));
    assert_eq!(c.next_expiry(Instant::now()), None);
    let t0 = Instant::now();
    c.grant(Some(7200));
    assert_eq!(c.expires_at(), Some(t0 + Duration::from_secs(7200)));
    assert_eq!(c.state().remaining(t0), Some(Some(7200)));
    tokio::time::advance(Duration::from_secs(7199)).await;
    assert!(c.is_active(Instant::now()));
    assert_eq!(
        c.next_expiry(Instant::now()),
        Some(t0 + Duration::from_secs(7200))
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!c.is_active(Instant::now()));
    assert_eq!(c.next_expiry(Instant::now()), None);
    assert_eq!(c.state().remaining(Instant::now()), None);
}

#[tokio::test(start_paused = true)]
async fn indefinite_grant_and_revoke() {
    let c = Consent::new();
    assert_eq!(c.grant(None), ConsentState::Indefinite);
    tokio::time::advance(Duration::from_secs(365 * 86_400)).await;
    assert!(c.is_active(Instant::now()));
    assert_eq!(c.expires_at(), None);
    assert_eq!(c.state().remaining(Instant::now()), Some(None));
    assert!(c.revoke());
    assert!(!c.is_active(Instant::now()));
    assert!(!c.revoke());
}

#[tokio::test(start_paused = true)]
async fn watchers_see_grant_revoke_and_expiry() {
    let c = Arc::new(Consent::new());
    let mut rx = c.subscribe();
    let task = tokio::spawn(c.clone().run_expiry());

    c.grant(Some(60));
    rx.changed().await.unwrap();
    assert!(matches!(*rx.borrow_and_update(), ConsentState::Until(_)));

    let before = Instant::now();
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_and_update(), ConsentState::Inactive);
    assert_eq!(Instant::now() - before, Duration::from_secs(60));

    c.grant(None);
    rx.changed().await.unwrap();
    c.revoke();
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_and_update(), ConsentState::Inactive);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_newer_grant_is_not_cut_by_the_old_timer() {
    let c = Arc::new(Consent::new());
    let task = tokio::spawn(c.clone().run_expiry());
    c.grant(Some(10));
    tokio::time::advance(Duration::from_secs(5)).await;
    c.grant(Some(100));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(c.is_active(Instant::now()));
    assert!(matches!(c.state(), ConsentState::Until(_)));
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(c.state(), ConsentState::Inactive);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn shortening_a_grant_reschedules_expiry() {
    let c = Arc::new(Consent::new());
    let task = tokio::spawn(c.clone().run_expiry());
    let mut rx = c.subscribe();
    c.grant(Some(3600));
    tokio::task::yield_now().await;
    c.grant(Some(2));
    rx.borrow_and_update();
    let t0 = Instant::now();
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow(), ConsentState::Inactive);
    assert_eq!(Instant::now() - t0, Duration::from_secs(2));
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn info_translates_to_wall_time() {
    let c = Consent::new();
    assert!(!c.info(1000).active);
    c.grant(Some(90));
    tokio::time::advance(Duration::from_secs(30)).await;
    let i = c.info(1000);
    assert!(i.active);
    assert_eq!((i.until, i.remaining_secs), (Some(1060), Some(60)));
    c.grant(None);
    let i = c.info(1000);
    assert!(i.active && i.until.is_none() && i.remaining_secs.is_none());
}

#[tokio::test(start_paused = true)]
async fn expiry_callback_fires_only_for_expiry() {
    let c = Arc::new(Consent::new());
    let fired = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let f = fired.clone();
    let task = tokio::spawn(c.clone().run_expiry_with(move || {
        f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    c.grant(Some(10));
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.revoke();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(fired.load(std::sync::atomic::Ordering::SeqCst), 0);
    c.grant(Some(10));
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(fired.load(std::sync::atomic::Ordering::SeqCst), 1);
    task.abort();
}

/// A grant of u64::MAX seconds neither overflows nor turns indefinite.
#[tokio::test(start_paused = true)]
async fn a_far_future_grant_is_clamped_not_indefinite() {
    let c = Consent::new();
    let state = c.grant(Some(u64::MAX));
    assert!(matches!(state, ConsentState::Until(_)), "{state:?}");
    assert!(c.expires_at().unwrap() <= Instant::now() + crate::clock::MAX_WAIT);
}
