//! `edgegate-relay` as a process: strict config refused in one line, its
//! key created on first start, READY=1 and watchdog pings under a fake
//! systemd, STOPPING=1 on SIGTERM. And a router listening on nothing (only
//! relays) still starts and tells systemd it is ready; one whose enrollment
//! names another key refuses to start, in one line.

#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::relay::*;
use harness::*;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn collect(sock: &UnixDatagram, window: Duration) -> Vec<String> {
    let deadline = Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    got
}

#[test]
fn a_bad_relay_config_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(
        &path,
        format!(
            "relay_key = \"/nonexistent/k\"\nstate_dir = \"/nonexistent\"\ntrusted_keys = [\"{}\"]\n\
             listen_quic = \"127.0.0.1:0\"\nlisten_tls = \"127.0.0.1:0\"\ndevice_id = \"x\"\n",
            public(&key(1))
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgegate-relay"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("relay.toml:6") && err.contains("unknown field `device_id`"),
        "{err}"
    );
}

#[test]
fn the_relay_notifies_systemd_and_keeps_its_key() {
    let mut relay = start_relay(&key(1), "127.0.0.1", None, "");
    let key_file = relay.dir.path().join("relay.key");
    let made = edgegate::keyfile::load_signing_key(&key_file).unwrap();
    assert_eq!(
        public(&made),
        relay.key,
        "the printed key is the key file's"
    );
    relay.terminate(Duration::from_secs(10)).expect("stops");

    let notify = relay.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_edgegate-relay"))
        .arg(relay.dir.path().join("relay.toml"))
        .env("EDGEGATE_LOG", "warn")
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let got = collect(&sock, Duration::from_secs(3));
    assert!(got.iter().any(|m| m.contains("READY=1")), "{got:?}");
    let pings = got.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(pings >= 4, "{got:?}");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let got = collect(&sock, Duration::from_secs(2));
    assert!(got.iter().any(|m| m.contains("STOPPING=1")), "{got:?}");
    let status = wait_until(Duration::from_secs(10), || child.try_wait().unwrap());
    assert!(status.expect("exits").success());
}

#[test]
fn a_router_listening_on_nothing_still_starts_and_notifies() {
    let relay = start_relay(&key(1), "127.0.0.1", None, "");
    let address = relay.quic.to_string();
    let mut d = start_relayed_router(&[(address, relay.key)], None);
    let config = d.path("edgegated.toml");
    assert!(!std::fs::read_to_string(&config)
        .unwrap()
        .contains("listen_"));
    d.terminate(Duration::from_secs(10)).expect("stops");
    let notify = tempfile::tempdir().unwrap();
    let notify = notify.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgegated"))
        .arg("--config")
        .arg(&config)
        .env("EDGEGATE_LOG", "warn")
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let got = collect(&sock, Duration::from_secs(2));
    let _ = child.kill();
    let _ = child.wait();
    assert!(got.iter().any(|m| m.contains("READY=1")), "{got:?}");
    assert!(
        got.iter()
            .any(|m| m.contains("STATUS=listening quic none tls none, 1 relay(s)")),
        "{got:?}"
    );
}

#[test]
fn a_router_whose_enrollment_names_another_key_refuses_to_start() {
    let mut d = start_relayed_router(&[("127.0.0.1:9".into(), public(&key(51)))], None);
    d.terminate(Duration::from_secs(10)).expect("stops");
    let config = d.path("edgegated.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let enrollment = text
        .lines()
        .find_map(|l| l.strip_prefix("enrollment = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .to_string();
    std::fs::write(
        &enrollment,
        enrollment_bytes(DEVICE, public(&key(50)), &key(1)),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgegated"))
        .arg("--config")
        .arg(&config)
        .env("EDGEGATE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: enrollment: "), "{err}");
    assert!(err.contains("this router's device_key is"), "{err}");
}

#[test]
fn connect_takes_either_a_gateway_or_relays_each_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let id = dir.path().join("id.key");
    edgegate::keyfile::write_new(&id, &key(3)).unwrap();
    let ticket = dir.path().join("t");
    std::fs::write(&ticket, b"x").unwrap();
    let k = public(&key(4)).to_string();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_edgegate"))
            .arg("connect")
            .args(args)
            .args(["--gateway-key", &k, "--identity"])
            .arg(&id)
            .arg("--ticket")
            .arg(&ticket)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let both = run(&[
        "--gateway",
        "127.0.0.1:1",
        "--relay",
        "127.0.0.1:2",
        "--relay-key",
        &k,
    ]);
    assert!(both.contains("cannot be used with"), "{both}");
    let short = run(&[
        "--relay",
        "127.0.0.1:2",
        "--relay",
        "127.0.0.1:3",
        "--relay-key",
        &k,
    ]);
    assert!(short.contains("2 relay(s) but 1 --relay-key(s)"), "{short}");
    assert_eq!(short.lines().count(), 1, "{short}");
}
