//! The real `edgegated` under a fake systemd: `NOTIFY_SOCKET` and
//! `WATCHDOG_USEC` set, the test reads what systemd would. READY=1 comes
//! only once the stored bundle is loaded and the listeners are bound;
//! WATCHDOG=1 pings arrive at half the interval while healthy; SIGHUP gives
//! RELOADING=1 then READY=1.

#[path = "tunnel_support/harness.rs"]
mod harness;

use edgegate::control::{Request, Response};
use harness::*;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn recv(sock: &UnixDatagram, wait: Duration) -> Option<String> {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn collect(sock: &UnixDatagram, window: Duration) -> Vec<String> {
    let deadline = Instant::now() + window;
    let mut got = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match recv(sock, left.max(Duration::from_millis(1))) {
            Some(m) => got.push(m),
            None => break,
        }
    }
    got
}

#[test]
fn ready_after_bundle_and_listeners_then_watchdog_pings_and_reload() {
    // A state dir with a stored bundle, from a first run.
    let mut d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    assert!(d.terminate(Duration::from_secs(15)).is_some());

    let notify = d.path("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    // systemd sets WATCHDOG_PID to the service's pid: `exec` from a shell
    // keeps the shell's pid, which `$$` knows before the daemon starts.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_edgegated"))
        .arg(d.path("edgegated.toml"))
        .env("EDGEGATE_LOG", "warn")
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());

    let first = recv(&sock, Duration::from_secs(20)).expect("a notification");
    assert_eq!(first, "READY=1\n");
    // At READY the listeners are bound and the bundle is loaded.
    let mut tls = None;
    for _ in 0..8 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        if let Some(a) = line.trim().strip_prefix("listening tls ") {
            tls = Some(a.parse::<SocketAddr>().unwrap());
            break;
        }
    }
    let tls = tls.expect("tls address printed before READY");
    TcpStream::connect(tls).expect("TLS listener bound at READY");
    let Response::Status(st) = d.control(Request::Status) else {
        panic!()
    };
    assert_eq!(st.bundle.map(|b| b.serial), Some(1));

    // WatchdogSec=400ms: a ping every 200 ms while healthy.
    let got = collect(&sock, Duration::from_millis(1100));
    let pings = got.iter().filter(|m| *m == "WATCHDOG=1\n").count();
    println!("watchdog pings in 1.1 s at WATCHDOG_USEC=400000: {pings}");
    assert!(pings >= 3, "{got:?}");

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let got = collect(&sock, Duration::from_millis(800));
    let states: Vec<&String> = got.iter().filter(|m| *m != "WATCHDOG=1\n").collect();
    assert!(
        states.len() >= 2 && states[0].starts_with("RELOADING=1") && states[1] == "READY=1\n",
        "{got:?}"
    );

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let got = collect(&sock, Duration::from_secs(2));
    assert!(got.iter().any(|m| m == "STOPPING=1\n"), "{got:?}");
    let _ = child.kill();
    let _ = child.wait();
}
