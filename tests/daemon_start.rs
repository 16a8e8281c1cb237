//! How `edgegated --config` starts as an operator sees it on stderr: log
//! lines without terminal colour codes when stderr is a pipe or a file, and
//! a taken listen port reported as one clean line before anything (the
//! device key) is made.

#[allow(unused_imports)]
#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::*;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A config in `dir` listening on `quic` and `tls`, its device key not yet made.
fn config(dir: &Path, quic: SocketAddr, tls: SocketAddr) -> PathBuf {
    let text = format!(
        r#"device_id = "{DEVICE}"
device_key = "{dir}/device.key"
state_dir = "{dir}/state"
trusted_keys = ["{auth}"]
threshold = 1
listen_quic = "{quic}"
listen_tls = "{tls}"
control_socket = "{dir}/control.sock"
"#,
        dir = dir.display(),
        auth = public(&key(1)),
    );
    let path = dir.join("edgegated.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn edgegated(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgegated"));
    // Whatever the test runner's environment says, the daemon decides
    // colour from where its stderr goes.
    cmd.arg("--config")
        .arg(config)
        .env_remove("NO_COLOR")
        .env("EDGEGATE_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), any(), any());
    let mut child = edgegated(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = Lines::new(child.stdout.take().unwrap());
    let mut stderr = child.stderr.take().unwrap();
    assert!(stdout
        .wait_for(Duration::from_secs(20), |l| l.starts_with("control "))
        .is_some());
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut log = Vec::new();
    stderr.read_to_end(&mut log).unwrap();
    let text = String::from_utf8_lossy(&log);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {text}");
    assert!(text.contains("edgegated listening"), "{text}");
    assert!(!log.contains(&0x1b), "escape codes in the log: {text:?}");
}

/// Start on a config whose port is taken; return the exit's stderr lines.
fn start_on_taken_port(quic: SocketAddr, tls: SocketAddr, dir: &Path) -> Vec<String> {
    let out = edgegated(&config(dir, quic, tls))
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !dir.join("device.key").exists(),
        "device key made by a daemon that could not start"
    );
    String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_taken_port_is_one_line_and_leaves_no_key() {
    let udp = UdpSocket::bind(any()).unwrap();
    let taken = udp.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        start_on_taken_port(taken, any(), dir.path()),
        [format!(
            "error: listen_quic: cannot listen for QUIC on UDP {taken}: Address already in use (os error 98)"
        )]
    );

    let tcp = TcpListener::bind(any()).unwrap();
    let taken = tcp.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        start_on_taken_port(any(), taken, dir.path()),
        [format!(
            "error: listen_tls: cannot listen for TLS on TCP {taken}: Address already in use (os error 98)"
        )]
    );
}
