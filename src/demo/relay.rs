//! The demo's relay (DESIGN §8): the `edgegate-relay` built beside
//! `edgegated`, started on one loopback port (QUIC and TLS), trusting the
//! demo's authority; the demo router's enrollment, made in-process; and the
//! wait until the router has registered through it. Without the relay
//! binary the demo goes on without it: `start` says so in one line.
//!
//! It does not decide anything about the router's config: `demo.rs` adds
//! the `[[relay]]` table with what `start` returns.

use crate::keyfile;
use anyhow::{anyhow, bail, Context};
use ed25519_dalek::SigningKey;
use edgegate_proto::enrollment::{self, Enrollment};
use edgegate_proto::PublicKey;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running demo relay; killed when dropped.
pub(super) struct DemoRelay {
    child: Child,
    /// `127.0.0.1:PORT`, for QUIC (UDP) and TLS (TCP) alike.
    pub(super) address: SocketAddr,
    /// The relay's public key (engineers and the router pin it).
    pub(super) key: PublicKey,
    /// The relay's control socket (`edgegate relay status`).
    pub(super) control: PathBuf,
}

impl Drop for DemoRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The relay binary beside this `edgegated`, if it was built.
fn relay_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let sibling = exe.with_file_name("edgegate-relay");
    if sibling.exists() {
        Some(sibling)
    } else {
        eprintln!(
            "note: no edgegate-relay beside {}: the demo runs without a relay (cargo build --release --locked builds it)",
            exe.display()
        );
        None
    }
}

/// A loopback port free for both UDP and TCP: a relay serves QUIC and TLS
/// on one `HOST:PORT`, as a router's `[[relay]] address` names it.
fn same_port() -> anyhow::Result<u16> {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no loopback port free for both UDP and TCP")
}

/// Start the relay in `dir/relay`, trusting `authority`; `None` (said in
/// one line) when no relay binary was built beside the daemon.
pub(super) fn start(dir: &Path, authority: &PublicKey) -> anyhow::Result<Option<DemoRelay>> {
    let Some(binary) = relay_binary() else {
        return Ok(None);
    };
    let home = dir.join("relay");
    keyfile::create_key_dir(&home).with_context(|| home.display().to_string())?;
    let key = PublicKey::from(keyfile::generate(&home.join("relay.key"))?.verifying_key());
    let address: SocketAddr = ([127, 0, 0, 1], same_port()?).into();
    let control = home.join("control.sock");
    let config = home.join("relay.toml");
    std::fs::write(
        &config,
        format!(
            r#"relay_key = "{home}/relay.key"
state_dir = "{home}/state"
trusted_keys = ["{authority}"]
threshold = 1
listen_quic = "{address}"
listen_tls = "{address}"
control_socket = "{control}"
log_level = "warn"
"#,
            home = home.display(),
            control = control.display(),
        ),
    )?;
    let mut child = Command::new(&binary)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| binary.display().to_string())?;
    let stdout = child.stdout.take().expect("piped");
    let relay = DemoRelay {
        child,
        address,
        key,
        control,
    };
    // The relay's last start-up line names its control socket. The reader
    // drains whatever follows, so no later line meets a closed pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.starts_with("control ") => return Ok(Some(relay)),
            Ok(_) => {}
            Err(_) => bail!("edgegate-relay did not start (its errors are above)"),
        }
    }
}

/// The demo router's enrollment ("`device` has key `device_key`"), signed
/// by the demo authority, written to `dir/DEVICE.enroll`.
pub(super) fn enroll(
    dir: &Path,
    device: &str,
    device_key: PublicKey,
    authority: &SigningKey,
    now: u64,
) -> anyhow::Result<PathBuf> {
    let e = Enrollment {
        device_id: device.to_string(),
        device_key,
        serial: now,
        issued_at: now - 60,
        expires_at: now + 30 * 86_400,
    };
    enrollment::validate(&e).map_err(|e| anyhow!("demo enrollment: {e}"))?;
    let path = dir.join(format!("{device}.enroll"));
    std::fs::write(&path, enrollment::seal(&e, &[authority]))?;
    Ok(path)
}

/// Wait (up to 10 s) until the relay lists `device` as registered.
pub(super) async fn registered(relay: &DemoRelay, device: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(status) = crate::cli::relay::ask(&relay.control).await {
            if status.routers.iter().any(|r| r.device == device) {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{device} did not register with the demo relay within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
