//! Network namespaces for the tests that need a network of their own: a
//! router behind NAT, a machine LAN, a TUN device. Each namespace is created
//! by the test, named after the test process so parallel tests never share
//! one, and deleted (with every process still in it) when dropped.
//!
//! Addresses used inside are private ranges only (10.x, 192.168.x,
//! 100.64/10 for the VPN's sessions): nothing here leaves the machine.
//! The tests need root, as CI runs them; without it they fail with one
//! clear line rather than pass without having run.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A process a test started (a server inside a namespace), killed and
/// reaped when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP server started by [`Netns::web_server`]: stopped, and its
/// directory removed, when dropped.
pub struct WebServer {
    _proc: Proc,
    _dir: tempfile::TempDir,
}

/// A network namespace that exists while this value does.
pub struct Netns {
    name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Fail at once, clearly, if the test cannot create namespaces.
pub fn require_root(test: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{test} creates network namespaces and must run as root (CI does)"
    );
}

/// Run `program args…` on the host; panic with its output if it fails.
pub fn host(program: &str, args: &[&str]) -> Output {
    checked(
        Command::new(program).args(args),
        &format!("{program} {args:?}"),
    )
}

fn checked(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Netns {
    /// A new namespace `eg<pid>-<n>-<tag>` (names are at most 15 bytes
    /// where they become interface names, so `tag` is short), with `lo` up.
    pub fn new(tag: &str) -> Netns {
        require_root("this test");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("eg{}-{n}-{tag}", std::process::id());
        // A namespace left by a crashed earlier run with the same pid.
        let _ = Command::new("ip")
            .args(["netns", "delete", &name])
            .stderr(Stdio::null())
            .status();
        host("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.run("ip", &["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` to be run inside this namespace (`ip netns exec`).
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Run `program args…` inside; panic with its output if it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        checked(
            self.cmd(program).args(args),
            &format!("[{}] {program} {args:?}", self.name),
        )
    }

    /// Run a shell command line inside; panic with its output if it fails.
    pub fn sh(&self, line: &str) -> Output {
        self.run("sh", &["-c", line])
    }

    /// Enable IPv4 forwarding inside (a router or NAT box).
    pub fn forward(&self) {
        self.run("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
    }

    /// Masquerade everything leaving through `iface` (a NAT in front of
    /// the networks behind this namespace).
    pub fn masquerade(&self, iface: &str) {
        self.forward();
        self.run(
            "iptables",
            &[
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                iface,
                "-j",
                "MASQUERADE",
            ],
        );
    }

    /// Default route via `gateway`.
    pub fn default_route(&self, gateway: &str) {
        self.run("ip", &["route", "add", "default", "via", gateway]);
    }

    /// Allow unprivileged ICMP echo sockets for every group (as the
    /// router's package does for the daemon's group).
    pub fn allow_ping_sockets(&self) {
        self.run(
            "sysctl",
            &["-q", "-w", "net.ipv4.ping_group_range=0 2147483647"],
        );
    }

    /// Move the calling thread into this namespace: the sockets it opens
    /// from then on are inside (a test's own client, run on a thread of its
    /// own with a runtime of its own). The thread stays there.
    pub fn enter(&self) {
        let f = std::fs::File::open(format!("/run/netns/{}", self.name))
            .unwrap_or_else(|e| panic!("namespace {}: {e}", self.name));
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("entering namespace {}: {e}", self.name));
    }

    /// A real HTTP server (python3's http.server) inside, on `ip:port`,
    /// serving `/status` with `body`; returned once `/status` answers
    /// from inside the namespace (panics after 20 s).
    pub fn web_server(&self, ip: &str, port: u16, body: &str) -> WebServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), body).unwrap();
        let proc = Proc(
            self.cmd("python3")
                .args(["-m", "http.server", &port.to_string(), "--bind", ip])
                .arg("--directory")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let url = format!("http://{ip}:{port}/status");
        let up = super::wait_until(std::time::Duration::from_secs(20), || {
            self.cmd("curl")
                .args(["-sf", "--noproxy", "*", "--max-time", "10", &url])
                .stdin(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
        });
        assert!(
            up.is_some(),
            "[{}] the HTTP server on {ip}:{port} never answered",
            self.name
        );
        WebServer {
            _proc: proc,
            _dir: dir,
        }
    }

    /// The pids of the processes running inside.
    pub fn pids(&self) -> Vec<i32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// A veth pair between two namespaces: `a_if` in `a` with `a_cidr`
/// (e.g. "10.1.0.1/24"), `b_if` in `b` with `b_cidr`; both up.
pub fn link(a: &Netns, a_if: &str, a_cidr: &str, b: &Netns, b_if: &str, b_cidr: &str) {
    // Created on the host under temporary names, then moved: interface
    // names are per namespace, so tests running in parallel cannot clash
    // on `a_if`, but the host-side names could.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let ta = format!("egv{}a{n}", std::process::id() % 100_000);
    let tb = format!("egv{}b{n}", std::process::id() % 100_000);
    host(
        "ip",
        &["link", "add", &ta, "type", "veth", "peer", "name", &tb],
    );
    host("ip", &["link", "set", &ta, "netns", a.name()]);
    host("ip", &["link", "set", &tb, "netns", b.name()]);
    for (ns, tmp, name, cidr) in [(a, &ta, a_if, a_cidr), (b, &tb, b_if, b_cidr)] {
        ns.run("ip", &["link", "set", tmp, "name", name]);
        ns.run("ip", &["addr", "add", cidr, "dev", name]);
        ns.run("ip", &["link", "set", name, "up"]);
    }
}

/// The address part of a CIDR ("10.1.0.1/24" → "10.1.0.1").
pub fn addr(cidr: &str) -> &str {
    cidr.split('/').next().unwrap()
}
