//! Bundles through a relay (DESIGN §8): a bundle pushed while its router
//! is offline is kept and applied within 5 s of the router registering; a
//! push with `--wait` prints the router's answer; an older serial and a
//! tampered bundle are refused at the relay.

#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::relay::*;
use harness::*;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn push(relay: &Relay, file: &std::path::Path, wait: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgegate"));
    cmd.args(["bundle", "push"])
        .arg(file)
        .arg("--relay")
        .arg(relay.quic.to_string())
        .arg("--relay-key")
        .arg(relay.key.to_string());
    if let Some(w) = wait {
        cmd.args(["--wait", w]);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn serial(d: &Daemon) -> Option<u64> {
    match d.control(edgegate::control::Request::Status) {
        edgegate::control::Response::Status(s) => s.bundle.map(|b| b.serial),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bundles_are_kept_for_offline_routers_and_checked_at_the_relay() {
    let (http, echo) = (http_backend(), echo_backend());
    let relay = start_relay(&key(1), "127.0.0.1", None, "");
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, serial: u64, status: &str| {
        let path = dir.path().join(name);
        let b = bundle_bytes(
            &policy_text(http.addr, echo, status),
            DEVICE,
            serial,
            &key(1),
        );
        std::fs::write(&path, b).unwrap();
        path
    };
    let (b1, b2, b3) = (
        file("b1", 1, "active"),
        file("b2", 2, "active"),
        file("b3", 3, "inactive"),
    );

    // The router is offline: the relay keeps the bundle.
    let out = push(&relay, &b1, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("queued serial 1 for {DEVICE}\n"));

    let address = relay.quic.to_string();
    let mut d = start_relayed_router(&[(address.clone(), relay.key)], None);
    assert!(wait_registered(&mut d, &address, Duration::from_secs(20)).is_some());
    let registered = Instant::now();
    let applied = wait_until(Duration::from_secs(5), || {
        (serial(&d) == Some(1)).then_some(())
    });
    assert!(applied.is_some(), "router stderr {:?}", d.stderr.seen);
    println!(
        "spooled bundle applied {} ms after the router registered",
        registered.elapsed().as_millis()
    );

    // Online, waiting for the router's answer.
    let out = push(&relay, &b2, Some("10s"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "accepted serial 2\n");
    assert_eq!(serial(&d), Some(2));

    // An older serial is refused at the relay; so is a tampered bundle.
    let out = push(&relay, &b1, None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("refused: rollback") && err.contains("serial 1"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let mut tampered = std::fs::read(&b3).unwrap();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    let t = dir.path().join("tampered");
    std::fs::write(&t, tampered).unwrap();
    let out = push(&relay, &t, Some("5s"));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("refused: bad-bundle"), "{err}");
    assert_eq!(serial(&d), Some(2));

    // The relay says what it keeps and what became of it.
    let status = relay.status();
    let bundles = status["bundles"].as_array().unwrap();
    assert_eq!(bundles.len(), 1, "{status}");
    assert_eq!(bundles[0]["device"], DEVICE);
    assert_eq!(bundles[0]["serial"], 2);
    assert_eq!(bundles[0]["delivered"], true);

    // A revocation pushed to the relay reaches the online router at once.
    let out = push(&relay, &b3, Some("10s"));
    assert_eq!(
        text(&out.stdout),
        "accepted serial 3\n",
        "{}",
        text(&out.stderr)
    );
}
