//! The daemon and client processes of the tunnel tests: start, restart and
//! stop a real `edgegated`, push bundles and mint client keys and tickets
//! for it, ask its control socket, and run `edgegate connect` against it.
//! Backends, policies and bundle bytes are `harness.rs`'s.

use super::*;
use edgegate_proto::audit::AuditEvent;

/// A running `edgegated` with its state directory and keys.
pub struct Daemon {
    pub device: String,
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub authority: SigningKey,
    pub device_key: PublicKey,
    pub quic: SocketAddr,
    pub tls: SocketAddr,
    pub control: PathBuf,
    pub stderr: Lines,
    /// The namespace it runs in (`None`: the test's own).
    pub netns: Option<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_daemon() -> Daemon {
    start_daemon_with("")
}

/// Start a daemon whose config ends with `extra` (e.g. a `[limits]` table).
pub fn start_daemon_with(extra: &str) -> Daemon {
    start_daemon_for(DEVICE, extra)
}

/// Start a daemon for `device`.
pub fn start_daemon_for(device_id: &str, extra: &str) -> Daemon {
    start_daemon_spec(device_id, extra, None, Some("127.0.0.1"))
}

/// Start a daemon for `device` inside `netns` (a `netns::Netns` name, or
/// the test's own namespace), listening for QUIC and TLS on `listen_ip`
/// (ephemeral ports; `None`: no `listen_*` lines, for a config whose
/// `extra` brings its own).
pub fn start_daemon_spec(
    device_id: &str,
    extra: &str,
    netns: Option<&str>,
    listen_ip: Option<&str>,
) -> Daemon {
    let device = SigningKey::generate(&mut rand::rngs::OsRng);
    start_daemon_keyed(device_id, device, extra, netns, listen_ip)
}

/// [`start_daemon_spec`] with the device key given (a test that enrolls
/// the device with relays signs the enrollment first).
pub fn start_daemon_keyed(
    device_id: &str,
    device: SigningKey,
    extra: &str,
    netns: Option<&str>,
    listen_ip: Option<&str>,
) -> Daemon {
    start_daemon_with_files(device_id, device, extra, netns, listen_ip, &[])
}

/// [`start_daemon_keyed`], with `files` (name, bytes) written into the
/// daemon's own temporary directory first; `@DIR@` in `extra` names it.
pub fn start_daemon_with_files(
    device_id: &str,
    device: SigningKey,
    extra: &str,
    netns: Option<&str>,
    listen_ip: Option<&str>,
    files: &[(&str, Vec<u8>)],
) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let extra = extra.replace("@DIR@", &dir.path().display().to_string());
    let authority = key(1);
    let device_path = dir.path().join("device.key");
    edgegate::keyfile::write_new(&device_path, &device).unwrap();
    let config = format!(
        r#"device_id = "{device_id}"
device_key = "{dev}"
state_dir = "{state}"
trusted_keys = ["{auth}"]
threshold = 1
{listen}control_socket = "{ctl}"
expiry_grace = "0s"
{extra}
"#,
        dev = device_path.display(),
        state = dir.path().join("state").display(),
        auth = public(&authority),
        ctl = dir.path().join("control.sock").display(),
        listen = listen_ip
            .map(|ip| format!("listen_quic = \"{ip}:0\"\nlisten_tls = \"{ip}:0\"\n"))
            .unwrap_or_default(),
    );
    let config_path = dir.path().join("edgegated.toml");
    std::fs::write(&config_path, config).unwrap();
    let (child, quic, tls, stderr) = spawn_daemon(&config_path, netns);
    Daemon {
        device: device_id.to_string(),
        control: dir.path().join("control.sock"),
        dir,
        child,
        authority,
        device_key: public(&device),
        quic,
        tls,
        stderr,
        netns: netns.map(str::to_string),
    }
}

/// `program` as a command, inside `netns` if given (`ip netns exec` execs
/// it: the child's pid is the program's own).
pub fn command_in(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// Spawn `edgegated`; its QUIC and TLS addresses from its `listening`
/// lines (unspecified addresses when the config has no `listen_*`).
fn spawn_daemon(config_path: &Path, netns: Option<&str>) -> (Child, SocketAddr, SocketAddr, Lines) {
    let listens = std::fs::read_to_string(config_path)
        .unwrap()
        .lines()
        .any(|l| l.starts_with("listen_quic"));
    let mut child = command_in(netns, env!("CARGO_BIN_EXE_edgegated"))
        .arg("--config")
        .arg(config_path)
        // The daemon's own info lines too: "config reloaded" is what a
        // reload test waits for.
        // And "registered with relay ADDR over quic|tls", what relay tests
        // wait for.
        .env(
            "EDGEGATE_LOG",
            "warn,edgegate::daemon=info,edgegate::gateway::uplink=info",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("edgegated starts");
    let mut stdout = Lines::new(child.stdout.take().unwrap());
    let stderr = Lines::new(child.stderr.take().unwrap());
    let within = Duration::from_secs(20);
    // Its last line: the reader below ends with `stdout`, and a line
    // printed after that would hit a closed pipe.
    let control = |stdout: &mut Lines| {
        let seen = stdout.wait_for(within, |l| l.starts_with("control "));
        assert!(seen.is_some(), "daemon stdout {:?}", stdout.seen);
    };
    if !listens {
        control(&mut stdout);
        let none = SocketAddr::from(([0, 0, 0, 0], 0));
        return (child, none, none, stderr);
    }
    let addr = |l: &str| l.rsplit(' ').next().unwrap().parse::<SocketAddr>().unwrap();
    let quic = addr(
        &stdout
            .wait_for(within, |l| l.starts_with("listening quic"))
            .expect("quic address"),
    );
    let tls = addr(
        &stdout
            .wait_for(within, |l| l.starts_with("listening tls"))
            .expect("tls address"),
    );
    control(&mut stdout);
    (child, quic, tls, stderr)
}

impl Daemon {
    /// SIGTERM; the exit status once it stopped (within `within`).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        wait_until(within, || self.child.try_wait().unwrap())
    }

    /// Stop with SIGTERM and start again on the same config and state.
    pub fn restart(&mut self) {
        assert!(
            self.terminate(Duration::from_secs(15)).is_some(),
            "daemon stops"
        );
        self.start_again();
    }

    /// Start again on the same config and state, after `terminate`.
    pub fn start_again(&mut self) {
        let (child, quic, tls, stderr) =
            spawn_daemon(&self.path("edgegated.toml"), self.netns.as_deref());
        self.child = child;
        self.quic = quic;
        self.tls = tls;
        self.stderr = stderr;
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// A client key file and a ticket for `user` bound to it.
    pub fn client(&self, name: &str, user: &str) -> (PathBuf, PathBuf) {
        let k = SigningKey::generate(&mut rand::rngs::OsRng);
        let key_path = self.path(&format!("{name}.key"));
        edgegate::keyfile::write_new(&key_path, &k).unwrap();
        let t = ticket_bytes(user, &self.device, &public(&k), &self.authority);
        let ticket_path = self.write(&format!("{name}.ticket"), &t);
        (key_path, ticket_path)
    }

    /// A client key file and a ticket adjusted by `edit`.
    pub fn client_with(
        &self,
        name: &str,
        user: &str,
        edit: impl FnOnce(&mut Ticket),
    ) -> (PathBuf, PathBuf) {
        let k = SigningKey::generate(&mut rand::rngs::OsRng);
        let key_path = self.path(&format!("{name}.key"));
        edgegate::keyfile::write_new(&key_path, &k).unwrap();
        let t = ticket_with(user, &self.device, &public(&k), &self.authority, edit);
        let ticket_path = self.write(&format!("{name}.ticket"), &t);
        (key_path, ticket_path)
    }

    /// One request on the control socket.
    pub fn control(&self, req: edgegate::control::Request) -> edgegate::control::Response {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut c = edgegate::control::Client::connect(&self.control)
                .await
                .unwrap();
            c.call(&req).await.unwrap()
        })
    }

    /// Every audited event so far (up to 1000), oldest first.
    pub fn audit_events(&self) -> Vec<AuditEvent> {
        let edgegate::control::Response::Audit(records) =
            self.control(edgegate::control::Request::Audit {
                since: None,
                limit: 1000,
            })
        else {
            panic!("audit answer")
        };
        records.into_iter().map(|r| r.event).collect()
    }

    /// Push the test policy with alice inactive as serial 2 through the
    /// tunnel port (the revocation the tests cut live streams with); the
    /// push's output.
    pub fn revoke_alice(&self, http: SocketAddr, echo: SocketAddr) -> std::process::Output {
        let b2 = bundle_bytes(
            &policy_text(http, echo, "inactive"),
            DEVICE,
            2,
            &self.authority,
        );
        self.push(&self.write("b2", &b2), false)
    }

    /// Install the test policy (alice active) as serial 1.
    pub fn install(&self, http: SocketAddr, echo: SocketAddr) {
        let b = self.write(
            "b1",
            &bundle_bytes(
                &policy_text(http, echo, "active"),
                DEVICE,
                1,
                &self.authority,
            ),
        );
        let out = self.push(&b, false);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `edgegate bundle push FILE` through the tunnel port (run inside the
    /// daemon's namespace).
    pub fn push(&self, file: &Path, tls: bool) -> std::process::Output {
        let gw = if tls { self.tls } else { self.quic };
        // From the daemon's own namespace, where its listen address is.
        let mut cmd = command_in(self.netns.as_deref(), env!("CARGO_BIN_EXE_edgegate"));
        cmd.args(["bundle", "push"])
            .arg(file)
            .arg("--gateway")
            .arg(gw.to_string())
            .arg("--gateway-key")
            .arg(self.device_key.to_string());
        if tls {
            cmd.arg("--tls");
        }
        cmd.output().unwrap()
    }

    /// Start `edgegate connect` with extra args.
    pub fn connect(&self, key: &Path, ticket: &Path, tls: bool, extra: &[String]) -> Client {
        self.connect_in(None, key, ticket, tls, extra)
    }

    /// Start `edgegate connect` with extra args inside `netns` (the test's
    /// own namespace if `None`).
    pub fn connect_in(
        &self,
        netns: Option<&str>,
        key: &Path,
        ticket: &Path,
        tls: bool,
        extra: &[String],
    ) -> Client {
        let gw = if tls { self.tls } else { self.quic };
        let mut cmd = command_in(netns, env!("CARGO_BIN_EXE_edgegate"));
        cmd.arg("connect")
            .arg("--gateway")
            .arg(gw.to_string())
            .arg("--gateway-key")
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

pub struct Client {
    pub child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `-L 0=SERVICE` for each service: the client picks the ports and reports
/// them (`Client::forwarded`).
pub fn forwards(services: &[&str]) -> Vec<String> {
    services
        .iter()
        .flat_map(|s| ["-L".to_string(), format!("0={s}")])
        .collect()
}

impl Client {
    /// Start `cmd` (an `edgegate connect`, possibly another build of it)
    /// with its output collected.
    pub fn spawn(mut cmd: Command) -> Client {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Client {
            stdout: Lines::new(child.stdout.take().unwrap()),
            stderr: Lines::new(child.stderr.take().unwrap()),
            child,
        }
    }

    /// The local port the client bound for `-L ...=SERVICE`, from its
    /// `forward ADDR SERVICE` line (printed before `ready`).
    pub fn forwarded(&self, service: &str) -> u16 {
        self.reported(|l| {
            let (addr, svc) = l.strip_prefix("forward ")?.split_once(' ')?;
            (svc == service).then_some(addr)
        })
    }

    /// The local port of the client's SOCKS5 proxy, from its `socks ADDR` line.
    pub fn socks(&self) -> u16 {
        self.reported(|l| l.strip_prefix("socks "))
    }

    fn reported<'a>(&'a self, pick: impl Fn(&'a str) -> Option<&'a str>) -> u16 {
        let addr = self.stdout.seen.iter().find_map(|l| pick(l));
        let addr =
            addr.unwrap_or_else(|| panic!("no such line before ready: {:?}", self.stdout.seen));
        addr.parse::<SocketAddr>().expect("ADDR:PORT").port()
    }

    /// Wait for `ready`; panics with the output otherwise.
    pub fn ready(&mut self) {
        if self
            .stdout
            .wait_for(Duration::from_secs(20), |l| l == "ready")
            .is_none()
        {
            let err = self.stderr.rest(Duration::from_millis(200));
            panic!(
                "client not ready; stdout {:?} stderr {:?}",
                self.stdout.seen, err
            );
        }
    }

    /// Stop it as Ctrl-C would (SIGTERM: it closes its session); the exit
    /// status once it stopped (within `within`).
    pub fn stop(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.exit(within)
    }

    /// Exit status within `within`, if it exited.
    pub fn exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        wait_until(within, || self.child.try_wait().unwrap())
    }
}
