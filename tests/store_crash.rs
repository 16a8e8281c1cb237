//! Crash test of the store (DESIGN §3: "a crash at any point leaves either
//! the old or the new bundle, never a mix, never a lower serial").
//!
//! The test binary re-executes itself as the child (`child_applies_bundles`
//! with `EDGEGATE_STORE_CRASH_CHILD=<dir>`), so nothing extra ships. The child
//! opens the store and applies bundles with increasing serials (verified
//! ahead on a second thread), printing `ack <serial>` only after `apply`
//! returned `Ok`. The parent SIGKILLs it at a random moment: 5–150 ms after
//! spawn (some kills land inside `open`), 5–150 ms after the child reported
//! ready, or 0–4 ms after its first to third ack (inside the next
//! back-to-back apply). It then reopens the store in-process and checks that
//! it opens without warnings and holds a verified bundle with
//! `last ack <= serial <= last ack + 1`, byte-for-byte one of those written,
//! and a time floor no lower than after the round before.
//! The same directory is used for every round, so serials keep increasing
//! across crashes. (Injecting a non-atomic write, envelope flushed before
//! the serial, makes this test fail within a few rounds.)
//!
//! `EDGEGATE_STORE_CRASH_ROUNDS` (default 100) and `EDGEGATE_STORE_CRASH_SEED`
//! (default: from the clock, printed) make a failure reproducible.

use ed25519_dalek::SigningKey;
use edgegate::store::Store;
use edgegate::testkit::{self, user};
use edgegate_proto::{TrustPolicy, UnixTime, VerifiedBundle};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "EDGEGATE_STORE_CRASH_CHILD";
const CHILD_TEST: &str = "child_applies_bundles";
const DEV: &str = "crash-dev";
const BASE: UnixTime = 1_750_000_000;
/// Bundles the child verifies before its first apply.
const PREFETCH: usize = 3;

fn authority() -> SigningKey {
    testkit::key(42)
}

fn trust() -> TrustPolicy {
    testkit::trust(&authority())
}

fn issued_at(serial: u64) -> UnixTime {
    BASE + 10 * serial
}

/// The bundle written for `serial`; deterministic (ed25519 signatures are),
/// so the parent can tell whether what it finds is one of those written.
/// Every seventh is large enough for sled to keep it as a separate blob.
fn bundle_for(serial: u64) -> Vec<u8> {
    let users = if serial.is_multiple_of(7) {
        2_000
    } else {
        (serial % 40) as usize
    };
    let b = testkit::bundle(DEV)
        .serial(serial)
        .valid(issued_at(serial), issued_at(serial) + 365 * 86_400)
        .users((0..users).map(|i| {
            user(&format!("u{i}"))
                .name(&format!("User {i} of bundle {serial}"))
                .org("acme")
                .logout_period(3600)
        }))
        .build();
    testkit::seal(&b, &authority())
}

/// The child: a no-op unless re-executed by the parent.
#[test]
fn child_applies_bundles() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let opened = Store::open(Path::new(&dir), &trust(), DEV, |_| Ok(())).expect("child: open");
    let store = opened.store;
    let mut out = std::io::stdout().lock();
    let start = store.serial().unwrap_or(0);
    // Signature checks are slow in debug builds; verify ahead on another
    // thread so the kills land mostly inside `apply` (the write and flush).
    let (tx, rx) = mpsc::sync_channel(4);
    std::thread::spawn(move || {
        for serial in start + 1.. {
            let vb = VerifiedBundle::verify(&bundle_for(serial), &trust()).unwrap();
            if tx.send(vb).is_err() {
                return;
            }
        }
    });
    writeln!(out, "ready {start}").unwrap();
    out.flush().unwrap();
    // Prefetch a few so the first applies run back to back.
    let ahead: Vec<_> = rx.iter().take(PREFETCH).collect();
    for vb in ahead.into_iter().chain(rx) {
        let serial = vb.bundle().serial;
        store
            .apply(&vb, 0)
            .unwrap_or_else(|e| panic!("child: apply {serial}: {e}"));
        if serial % 5 == 0 {
            store.raise_time_floor(issued_at(serial) + 1, 0).unwrap();
        }
        writeln!(out, "ack {serial}").unwrap();
        out.flush().unwrap();
    }
}

enum Event {
    Ready(u64),
    Ack(u64),
}

/// One round: spawn, kill at a random moment, return the acks seen and
/// whether the child got as far as opening the store.
fn run_child(exe: &Path, dir: &Path, rng: &mut impl Rng) -> (Option<u64>, Vec<u64>) {
    let mut child = Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        // Only whole lines: a kill can cut the last one short.
        while r.read_line(&mut line).unwrap_or(0) > 0 && line.ends_with('\n') {
            // libtest may have put `test child_applies_bundles ... ` in
            // front of the first line: look at the last two words only.
            let words: Vec<&str> = line.split_whitespace().collect();
            let ev = match words[words.len().saturating_sub(2)..] {
                ["ready", n] => n.parse().ok().map(Event::Ready),
                ["ack", n] => n.parse().ok().map(Event::Ack),
                _ => None,
            };
            if let Some(ev) = ev {
                let _ = tx.send(ev);
            }
            line.clear();
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let mut events = Vec::new();
    // Collect events until one matches; false if the child stalls or dies.
    let mut wait_for = |what: fn(&Event) -> bool| loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(ev) => {
                let done = what(&ev);
                events.push(ev);
                if done {
                    return true;
                }
            }
            Err(_) => return false,
        }
    };
    let reached = match rng.gen_range(0..4) {
        // From spawn: often lands inside `Store::open`.
        0 => true,
        // While applying, at any point of the loop.
        1 => wait_for(|e| matches!(e, Event::Ready(_))),
        // Just after an ack, inside the next back-to-back apply.
        _ => (0..rng.gen_range(1..PREFETCH)).all(|_| wait_for(|e| matches!(e, Event::Ack(_)))),
    };
    if !reached {
        let _ = child.kill();
        panic!("child stalled: {}", err_reader.join().unwrap());
    }
    let pause = match events.last() {
        // An apply takes a few ms (most of it the flushes): spread the kill over it.
        Some(Event::Ack(_)) => Duration::from_micros(rng.gen_range(0..=4_000)),
        _ => Duration::from_millis(rng.gen_range(5..=150)),
    };
    // The pause is the scenario (a kill at a random moment), not a wait.
    std::thread::sleep(pause);
    if let Some(status) = child.try_wait().unwrap() {
        panic!(
            "child exited on its own ({status}): {}",
            err_reader.join().unwrap()
        );
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    let _ = err_reader.join();
    events.extend(rx.try_iter());

    let mut ready = None;
    let mut acks = Vec::new();
    for ev in events {
        match ev {
            Event::Ready(n) => ready = Some(n),
            Event::Ack(n) => acks.push(n),
        }
    }
    (ready, acks)
}

#[test]
fn store_survives_sigkill_at_random_moments() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let rounds: usize = env_or("EDGEGATE_STORE_CRASH_ROUNDS", 100);
    let seed: u64 = env_or(
        "EDGEGATE_STORE_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    println!("store crash test: {rounds} rounds, EDGEGATE_STORE_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (mut stored, mut total_acks, mut killed_in_open, mut in_flight_landed) = (0u64, 0, 0, 0);
    let mut reopen_time = Duration::ZERO;
    let mut floor = 0;

    for round in 0..rounds {
        let (ready, acks) = run_child(&exe, dir.path(), &mut rng);
        match ready {
            Some(n) => assert_eq!(n, stored, "round {round}: child opened a different serial"),
            None => killed_in_open += 1,
        }
        for w in acks.windows(2) {
            assert_eq!(w[1], w[0] + 1, "round {round}: acks out of order");
        }
        total_acks += acks.len();
        let acked = acks.last().copied().unwrap_or(stored).max(stored);

        let t = Instant::now();
        let opened = Store::open(dir.path(), &trust(), DEV, |_| Ok(())).unwrap();
        reopen_time += t.elapsed();
        assert!(
            opened.warnings.is_empty(),
            "round {round}: {:?}",
            opened.warnings
        );
        let Some(b) = opened.bundle else {
            assert_eq!(acked, 0, "round {round}: bundle lost after ack {acked}");
            continue;
        };
        let serial = b.bundle().serial;
        assert!(
            (acked..=acked + 1).contains(&serial),
            "round {round}: stored serial {serial}, last acknowledged {acked}"
        );
        if serial == acked + 1 {
            in_flight_landed += 1;
        }
        assert_eq!(
            b.raw(),
            bundle_for(serial),
            "round {round}: not a bundle we wrote"
        );
        assert_eq!(opened.store.serial(), Some(serial));
        assert!(opened.store.time_floor() >= b.bundle().issued_at);
        // The time floor never decreases, across crashes too.
        assert!(
            opened.store.time_floor() >= floor,
            "round {round}: time floor fell from {floor} to {}",
            opened.store.time_floor()
        );
        floor = opened.store.time_floor();
        stored = serial;
    }
    println!(
        "store crash test: {rounds}/{rounds} rounds passed in {:.1} s; final serial {stored}, \
         {total_acks} acks, {killed_in_open} kills before the store was open, \
         {in_flight_landed} unacknowledged applies found durable; {:.1} s in reopen+verify",
        started.elapsed().as_secs_f64(),
        reopen_time.as_secs_f64()
    );
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
