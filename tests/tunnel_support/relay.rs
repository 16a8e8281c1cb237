//! Relays for the relay tests (DESIGN §8): start, kill and restart a real
//! `edgegate-relay`, enroll a device, start a router that dials out to
//! relays (no listening port), and run `edgegate connect --relay`.

use super::*;
use edgegate_proto::enrollment::{self, Enrollment};

/// A running `edgegate-relay` with its directory and key.
pub struct Relay {
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub key: PublicKey,
    pub quic: SocketAddr,
    pub tls: SocketAddr,
    pub stderr: Lines,
    pub netns: Option<String>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on `ip` for both UDP and TCP (a relay listens on one
/// HOST:PORT for both, as a router's `[[relay]] address` names it). Only
/// from the test's own namespace: elsewhere any port is free.
fn same_port(ip: &str, netns: Option<&str>) -> u16 {
    if netns.is_some() {
        return 4433;
    }
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind((ip, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on {ip}");
}

/// Start a relay trusting `authority`, listening for QUIC and TLS on one
/// port of `listen_ip`, inside `netns` if given; `extra` ends its config.
pub fn start_relay(
    authority: &SigningKey,
    listen_ip: &str,
    netns: Option<&str>,
    extra: &str,
) -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let port = same_port(listen_ip, netns);
    let config = format!(
        r#"relay_key = "{key}"
state_dir = "{state}"
trusted_keys = ["{auth}"]
threshold = 1
listen_quic = "{listen_ip}:{port}"
listen_tls = "{listen_ip}:{port}"
control_socket = "{ctl}"
{extra}
"#,
        key = dir.path().join("relay.key").display(),
        state = dir.path().join("state").display(),
        auth = public(authority),
        ctl = dir.path().join("control.sock").display(),
    );
    std::fs::write(dir.path().join("relay.toml"), config).unwrap();
    let (child, key, quic, tls, stderr) = spawn_relay(&dir.path().join("relay.toml"), netns);
    Relay {
        dir,
        child,
        key,
        quic,
        tls,
        stderr,
        netns: netns.map(str::to_string),
    }
}

fn spawn_relay(
    config: &Path,
    netns: Option<&str>,
) -> (Child, PublicKey, SocketAddr, SocketAddr, Lines) {
    let mut child = command_in(netns, env!("CARGO_BIN_EXE_edgegate-relay"))
        .arg("--config")
        .arg(config)
        .env("EDGEGATE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("edgegate-relay starts");
    let mut stdout = Lines::new(child.stdout.take().unwrap());
    let stderr = Lines::new(child.stderr.take().unwrap());
    let within = Duration::from_secs(20);
    let last = |l: String| l.rsplit(' ').next().unwrap().to_string();
    let key = last(
        stdout
            .wait_for(within, |l| l.starts_with("relay key"))
            .expect("relay key line"),
    );
    let quic = last(
        stdout
            .wait_for(within, |l| l.starts_with("listening quic"))
            .expect("quic line"),
    );
    let tls = last(
        stdout
            .wait_for(within, |l| l.starts_with("listening tls"))
            .expect("tls line"),
    );
    // Its last line: the reader ends with `stdout`.
    assert!(stdout
        .wait_for(within, |l| l.starts_with("control "))
        .is_some());
    (
        child,
        key.parse().unwrap(),
        quic.parse().unwrap(),
        tls.parse().unwrap(),
        stderr,
    )
}

impl Relay {
    /// `edgegate relay status --socket … --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_edgegate"))
            .args(["relay", "status", "--json", "--socket"])
            .arg(self.dir.path().join("control.sock"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// SIGKILL: no goodbye to anyone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; the exit status once stopped (within `within`).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        wait_until(within, || self.child.try_wait().unwrap())
    }

    /// Start again with the same key, on the same ports as before.
    pub fn start_again(&mut self) {
        let path = self.dir.path().join("relay.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("listen_quic") {
                    format!("listen_quic = \"{}\"", self.quic)
                } else if l.starts_with("listen_tls") {
                    format!("listen_tls = \"{}\"", self.tls)
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, text).unwrap();
        let (child, key, quic, tls, stderr) = spawn_relay(&path, self.netns.as_deref());
        assert_eq!((key, quic, tls), (self.key, self.quic, self.tls));
        self.child = child;
        self.stderr = stderr;
    }
}

/// A signed enrollment of `device` with `device_key`, by `signer`.
pub fn enrollment_bytes(device: &str, device_key: PublicKey, signer: &SigningKey) -> Vec<u8> {
    let e = Enrollment {
        device_id: device.to_string(),
        device_key,
        serial: 1,
        issued_at: now() - 60,
        expires_at: now() + 86_400,
    };
    enrollment::seal(&e, &[signer])
}

/// The router-side config lines for `relays` (address, key), the
/// enrollment at `enrollment` and a keep-alive of `keepalive`.
pub fn relay_config(enrollment: &Path, keepalive: &str, relays: &[(String, PublicKey)]) -> String {
    let mut out = format!(
        "enrollment = \"{}\"\nrelay_keepalive = \"{keepalive}\"\n",
        enrollment.display()
    );
    for (address, key) in relays {
        out.push_str(&format!(
            "[[relay]]\naddress = \"{address}\"\nkey = \"{key}\"\n"
        ));
    }
    out
}

/// A router for `DEVICE` with no listening port, enrolled by the test
/// authority and registering with `relays`, inside `netns` if given.
pub fn start_relayed_router(relays: &[(String, PublicKey)], netns: Option<&str>) -> Daemon {
    start_relayed_router_spec(relays, netns, None)
}

/// [`start_relayed_router`], also listening on `listen_ip` if given.
pub fn start_relayed_router_spec(
    relays: &[(String, PublicKey)],
    netns: Option<&str>,
    listen_ip: Option<&str>,
) -> Daemon {
    let device = SigningKey::generate(&mut rand::rngs::OsRng);
    // In the daemon's own directory, removed with it.
    let bytes = enrollment_bytes(DEVICE, public(&device), &key(1));
    start_daemon_with_files(
        DEVICE,
        device,
        &relay_config(Path::new("@DIR@/device.enroll"), "2s", relays),
        netns,
        listen_ip,
        &[("device.enroll", bytes)],
    )
}

/// Wait for the router's `registered with relay ADDR over TRANSPORT` line
/// (`ADDR` as its config names it); the transport.
pub fn wait_registered(d: &mut Daemon, address: &str, within: Duration) -> Option<String> {
    let prefix = format!("registered with relay {address} over ");
    let line = d.stderr.wait_for_new(within, |l| l.contains(&prefix))?;
    Some(line.rsplit(' ').next().unwrap().to_string())
}

impl Daemon {
    /// Install the test policy (alice active) as serial 1 over the control
    /// socket (a relayed router may have no tunnel port).
    pub fn install_local(&self, http: SocketAddr, echo: SocketAddr) {
        let b = bundle_bytes(
            &policy_text(http, echo, "active"),
            DEVICE,
            1,
            &self.authority,
        );
        let answer = self.control(edgegate::control::Request::PushBundle { bytes: b });
        assert!(
            matches!(
                answer,
                edgegate::control::Response::Push(
                    edgegate_proto::frame::PushResult::Accepted { .. }
                )
            ),
            "{answer:?}"
        );
    }

    /// `edgegate connect --relay A --relay-key K ...` for each relay, in
    /// `netns` if given.
    pub fn connect_relayed(
        &self,
        netns: Option<&str>,
        relays: &[(SocketAddr, PublicKey)],
        key: &Path,
        ticket: &Path,
        tls: bool,
        extra: &[String],
    ) -> Client {
        let mut cmd = command_in(netns, env!("CARGO_BIN_EXE_edgegate"));
        cmd.arg("connect");
        for (addr, k) in relays {
            cmd.arg("--relay")
                .arg(addr.to_string())
                .arg("--relay-key")
                .arg(k.to_string());
        }
        cmd.arg("--gateway-key")
            .arg(self.device_key.to_string())
            .arg("--identity")
            .arg(key)
            .arg("--ticket")
            .arg(ticket)
            .args(extra);
        if tls {
            cmd.arg("--tls");
        }
        Client::spawn(cmd)
    }
}

/// A plain TCP forwarder on 127.0.0.1 in front of `target` that records
/// every byte it forwards, both ways (what a relay, or anyone on the path,
/// sees of a relayed session).
pub struct Recorder {
    pub addr: SocketAddr,
    pub recorded: Arc<Mutex<Vec<u8>>>,
}

pub fn recorder(target: SocketAddr) -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let log = recorded.clone();
    thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            let Ok(outbound) = TcpStream::connect(target) else {
                continue;
            };
            for (mut from, mut to) in [
                (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                (outbound, inbound),
            ] {
                let log = log.clone();
                thread::spawn(move || {
                    let mut buf = [0u8; 16 << 10];
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                log.lock().unwrap().extend_from_slice(&buf[..n]);
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    Recorder { addr, recorded }
}

impl Recorder {
    /// Whether `needle` appears anywhere in what was forwarded.
    pub fn saw(&self, needle: &[u8]) -> bool {
        self.recorded
            .lock()
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    }

    /// Bytes forwarded so far.
    pub fn len(&self) -> usize {
        self.recorded.lock().unwrap().len()
    }
}
