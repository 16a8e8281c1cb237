//! `edgegate::sdnotify` against a real notify socket: the test binds a unix
//! datagram socket, points `NOTIFY_SOCKET` at it and reads what systemd would.
//!
//! The environment is process-wide, so the tests that set it hold `ENV`; this
//! file is its own test binary, so no other test sees these variables.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edgegate::sdnotify;
use tokio::net::UnixDatagram;
use tokio::sync::{Mutex, MutexGuard};

static ENV: Mutex<()> = Mutex::const_new(());

async fn lock_env() -> MutexGuard<'static, ()> {
    ENV.lock().await
}

struct Listener {
    _dir: tempfile::TempDir,
    path: PathBuf,
    sock: UnixDatagram,
}

impl Listener {
    fn bind() -> Listener {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        Listener {
            _dir: dir,
            path,
            sock,
        }
    }

    /// The next datagram, or `None` if none arrives within `wait`.
    async fn recv(&self, wait: Duration) -> Option<String> {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(wait, self.sock.recv(&mut buf)).await {
            Ok(Ok(n)) => Some(String::from_utf8(buf[..n].to_vec()).unwrap()),
            Ok(Err(e)) => panic!("recv on {}: {e}", self.path.display()),
            Err(_) => None,
        }
    }

    /// Every datagram arriving within `window`.
    async fn collect(&self, window: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + window;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return got;
            }
            match self.recv(left).await {
                Some(msg) => got.push(msg),
                None => return got,
            }
        }
    }
}

fn set_watchdog(usec: u64, pid: u32) {
    std::env::set_var("WATCHDOG_USEC", usec.to_string());
    std::env::set_var("WATCHDOG_PID", pid.to_string());
}

fn clear_watchdog() {
    std::env::remove_var("WATCHDOG_USEC");
    std::env::remove_var("WATCHDOG_PID");
}

#[tokio::test]
async fn lifecycle_notifications_reach_the_socket() {
    let _env = lock_env().await;
    let l = Listener::bind();
    let wait = Duration::from_secs(2);

    sdnotify::ready();
    assert_eq!(l.recv(wait).await.as_deref(), Some("READY=1\n"));

    sdnotify::status("serving 3 sessions\nSTOPPING=1");
    assert_eq!(
        l.recv(wait).await.as_deref(),
        Some("STATUS=serving 3 sessions STOPPING=1\n"),
        "a newline in the status must not inject a second assignment"
    );

    sdnotify::reloading();
    let msg = l.recv(wait).await.unwrap();
    assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{msg:?}");

    sdnotify::extend_timeout(Duration::from_secs(90));
    assert_eq!(
        l.recv(wait).await.as_deref(),
        Some("EXTEND_TIMEOUT_USEC=90000000\n")
    );

    sdnotify::stopping();
    assert_eq!(l.recv(wait).await.as_deref(), Some("STOPPING=1\n"));

    std::env::remove_var("NOTIFY_SOCKET");
}

#[tokio::test]
async fn everything_is_a_no_op_without_notify_socket() {
    let _env = lock_env().await;
    std::env::remove_var("NOTIFY_SOCKET");
    clear_watchdog();
    sdnotify::ready();
    sdnotify::status("x");
    sdnotify::reloading();
    sdnotify::stopping();
    assert_eq!(sdnotify::watchdog_interval(), None);
    assert!(sdnotify::spawn_watchdog(|| async { true }).is_none());
}

#[test]
fn watchdog_interval_only_for_this_pid() {
    let _env = ENV.blocking_lock();
    set_watchdog(30_000_000, std::process::id());
    assert_eq!(sdnotify::watchdog_interval(), Some(Duration::from_secs(30)));
    set_watchdog(30_000_000, std::process::id() + 1);
    assert_eq!(
        sdnotify::watchdog_interval(),
        None,
        "another process's watchdog"
    );
    set_watchdog(0, std::process::id());
    assert_eq!(
        sdnotify::watchdog_interval(),
        None,
        "WATCHDOG_USEC=0 disables it"
    );
    clear_watchdog();
    assert_eq!(sdnotify::watchdog_interval(), None);
}

#[tokio::test]
async fn watchdog_pings_only_while_healthy() {
    let _env = lock_env().await;
    let l = Listener::bind();
    // WatchdogSec=400ms: pings every 200 ms, health must answer within 100 ms.
    set_watchdog(400_000, std::process::id());
    let healthy = Arc::new(AtomicBool::new(true));
    let slow = Arc::new(AtomicBool::new(false));
    let (h, s) = (healthy.clone(), slow.clone());
    let task = sdnotify::spawn_watchdog(move || {
        let (h, s) = (h.clone(), s.clone());
        async move {
            if s.load(Ordering::SeqCst) {
                // A slow health check is the scenario, not a wait.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            h.load(Ordering::SeqCst)
        }
    })
    .expect("watchdog enabled for this pid");

    let got = l.collect(Duration::from_millis(700)).await;
    let pings = got.iter().filter(|m| *m == "WATCHDOG=1\n").count();
    assert!(pings >= 2, "expected pings while healthy, got {got:?}");

    healthy.store(false, Ordering::SeqCst);
    // A ping already past its health check may still be in flight.
    l.collect(Duration::from_millis(250)).await;
    let got = l.collect(Duration::from_millis(700)).await;
    assert!(
        got.is_empty(),
        "unhealthy check must stop pings, got {got:?}"
    );

    // Healthy but answering after the timeout counts as unhealthy.
    healthy.store(true, Ordering::SeqCst);
    slow.store(true, Ordering::SeqCst);
    l.collect(Duration::from_millis(250)).await;
    let got = l.collect(Duration::from_millis(700)).await;
    assert!(
        got.is_empty(),
        "a timed-out check must stop pings, got {got:?}"
    );

    slow.store(false, Ordering::SeqCst);
    let got = l.collect(Duration::from_millis(700)).await;
    assert!(
        got.iter().any(|m| m == "WATCHDOG=1\n"),
        "pings resume, got {got:?}"
    );

    task.abort();
    clear_watchdog();
    std::env::remove_var("NOTIFY_SOCKET");
}
