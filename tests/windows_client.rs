//! The engineer's Windows client, `edgegate.exe` (x86_64-pc-windows-gnu),
//! run under Wine against the real Linux `edgegated` on loopback: a `-L`
//! forward fetched with the Linux curl, `--socks` to the `vpn` service over
//! TLS with the key and ticket in `%APPDATA%\edgegate`, a denied service,
//! a revocation cutting a live stream, Ctrl-C closing the session, the
//! authoring commands and a push over the tunnel port, and the router-only
//! commands' one line.
//!
//! Runs when `EDGEGATE_WINDOWS_EXE` names a built `edgegate.exe` (and, on
//! Debian 12's Wine 8.0, `bcryptprimitives.dll` stands beside it: see
//! `cross/wine/bcryptprimitives.c`) and a `wine64` is found. Otherwise it
//! says why and passes, unless `EDGEGATE_REQUIRE_WINE=1` (what `.ci/run`
//! sets), when a missing piece fails the test. `.ci/run` builds both and
//! runs this file; by hand:
//!
//! ```sh
//! bash cross/build-windows.sh --test
//! ```

#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::*;
use std::io::{Read, Write};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A Wine prefix of this test run, with the client installed under a path
/// with a space in it, as `C:\Program Files\...` would be.
struct Wine {
    /// The `wine64` loader.
    loader: PathBuf,
    /// `edgegate.exe` (and the DLLs beside it) inside `root`.
    exe: PathBuf,
    /// Holds the install and WINEPREFIX (`pfx`, ~800 MB): a static is never
    /// dropped, so each run removes what earlier runs left (see [`root`]).
    prefix: PathBuf,
}

/// This run's directory under cargo's temp dir for tests, `wine-PID`;
/// those of runs no longer alive are removed first.
fn root() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for entry in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("wine-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!("wine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn find_wine64() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("wine64"));
    // Debian puts the 64-bit loader outside PATH.
    on_path
        .chain([PathBuf::from("/usr/lib/wine/wine64")])
        .find(|p| p.is_file())
}

/// The shared Wine setup, or `None` when this run has none (after saying
/// why; a panic instead when `EDGEGATE_REQUIRE_WINE=1`).
fn wine() -> Option<&'static Wine> {
    static WINE: OnceLock<Option<Wine>> = OnceLock::new();
    WINE.get_or_init(|| {
        let required = std::env::var("EDGEGATE_REQUIRE_WINE").as_deref() == Ok("1");
        let skip = |why: String| {
            assert!(!required, "EDGEGATE_REQUIRE_WINE=1 but {why}");
            eprintln!("skipped: {why}");
            None
        };
        let Some(exe) = std::env::var_os("EDGEGATE_WINDOWS_EXE").map(PathBuf::from) else {
            return skip("EDGEGATE_WINDOWS_EXE is not set".into());
        };
        if !exe.is_file() {
            return skip(format!(
                "EDGEGATE_WINDOWS_EXE={}: no such file",
                exe.display()
            ));
        }
        let Some(loader) = find_wine64() else {
            return skip("no wine64 (apt-get install wine64)".into());
        };
        Some(setup(loader, &exe))
    })
    .as_ref()
}

/// Copy the exe and any DLL beside it into `.../Program Files/edgegate`, make
/// a fresh prefix and boot it (the first start of Wine takes seconds).
fn setup(loader: PathBuf, exe: &Path) -> Wine {
    let prefix = root();
    let install = prefix.join("Program Files").join("edgegate");
    std::fs::create_dir_all(&install).unwrap();
    let from = exe.parent().unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        if name
            .to_string_lossy()
            .to_ascii_lowercase()
            .ends_with(".dll")
        {
            std::fs::copy(entry.path(), install.join(&name)).unwrap();
        }
    }
    let installed = install.join("edgegate.exe");
    std::fs::copy(exe, &installed).unwrap();
    let wine = Wine {
        loader,
        exe: installed,
        prefix,
    };
    let start = Instant::now();
    let status = wine
        .command_of("wineboot", &["--init"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "wineboot --init: {status}");
    eprintln!("wineboot --init took {:?}", start.elapsed());
    wine
}

impl Wine {
    fn env(&self, cmd: &mut Command) {
        cmd.env("WINEPREFIX", self.prefix.join("pfx"))
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
    }

    fn command_of(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.loader);
        cmd.arg(program).args(args);
        self.env(&mut cmd);
        cmd
    }

    /// `edgegate.exe ARGS` under Wine.
    fn edgegate(&self) -> Command {
        let mut cmd = Command::new(&self.loader);
        cmd.arg(windows_path(&self.exe));
        self.env(&mut cmd);
        cmd
    }

    /// The prefix's `%APPDATA%` (the roaming profile of the Wine user).
    fn appdata(&self) -> PathBuf {
        let users = self.prefix.join("pfx/drive_c/users");
        std::fs::read_dir(&users)
            .unwrap()
            .flatten()
            .map(|e| e.path().join("AppData/Roaming"))
            .find(|p| p.is_dir() && !p.starts_with(users.join("Public")))
            .expect("the wine user's AppData\\Roaming")
    }
}

/// A unix path as the Windows program sees it: drive Z: is `/`.
fn windows_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// `connect` to `d` under Wine, with `creds` (`--identity`/`--ticket` or
/// nothing) and `extra`.
fn connect(w: &Wine, d: &Daemon, tls: bool, creds: &[String], extra: &[String]) -> Client {
    let gw = if tls { d.tls } else { d.quic };
    let mut cmd = w.edgegate();
    cmd.arg("connect")
        .arg("--gateway")
        .arg(gw.to_string())
        .arg("--gateway-key")
        .arg(d.device_key.to_string())
        .args(creds)
        .args(extra);
    if tls {
        cmd.arg("--tls");
    }
    Client::spawn(cmd)
}

/// The engineer's key and ticket for `user`, in a folder whose name has a
/// space, as `--identity`/`--ticket` with backslashes.
fn credentials(d: &Daemon, user: &str) -> Vec<String> {
    let (key, ticket) = d.client(user, user);
    let dir = d.dir.path().join("Field Engineer");
    std::fs::create_dir_all(&dir).unwrap();
    let (k, t) = (
        dir.join(format!("{user}.key")),
        dir.join(format!("{user} ticket")),
    );
    std::fs::rename(key, &k).unwrap();
    std::fs::rename(ticket, &t).unwrap();
    vec![
        "--identity".into(),
        windows_path(&k),
        "--ticket".into(),
        windows_path(&t),
    ]
}

/// Wine's first start of a program takes a while; give `ready` more.
fn ready(c: &mut Client) {
    if c.stdout
        .wait_for(Duration::from_secs(90), |l| l == "ready")
        .is_none()
    {
        let err = c.stderr.rest(Duration::from_millis(500));
        panic!(
            "edgegate.exe not ready; stdout {:?} stderr {err:?}",
            c.stdout.seen
        );
    }
}

fn curl(port: u16) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("curl (apt-get install curl)");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn forward_fetched_by_curl_then_revocation_closes_it() {
    let Some(w) = wine() else { return };
    let d = start_daemon();
    let http = http_backend();
    let echo = echo_backend();
    d.install(http.addr, echo);
    let creds = credentials(&d, "alice");
    let mut c = connect(w, &d, false, &creds, &forwards(&["web", "hmi"]));
    ready(&mut c);
    assert!(
        c.stdout.seen.iter().any(|l| l == "allow web manage"),
        "{:?}",
        c.stdout.seen
    );
    assert_eq!(curl(c.forwarded("web")), "hello from the plc\n");
    let live = echo_through(c.forwarded("hmi"));

    let pushed = d.revoke_alice(http.addr, echo);
    assert!(pushed.status.success(), "{pushed:?}");
    assert!(wait_closed(live, Duration::from_secs(10)).is_some());
    let closed = c
        .stderr
        .wait_for(Duration::from_secs(10), |l| l.starts_with("closed: "));
    assert!(
        closed.as_deref() == Some("closed: hmi: user-inactive")
            || closed.as_deref() == Some("closed: session: user-inactive"),
        "{closed:?}; stderr {:?}",
        c.stderr.seen
    );
    let status = c.exit(Duration::from_secs(20)).expect("edgegate.exe exits");
    assert!(!status.success());
}

#[test]
fn a_denied_service_says_so_and_exits_non_zero() {
    let Some(w) = wine() else { return };
    let d = start_daemon();
    let http = http_backend();
    let echo = echo_backend();
    d.install(http.addr, echo);
    let creds = credentials(&d, "bob");
    let mut c = connect(w, &d, false, &creds, &forwards(&["web"]));
    let line = c
        .stderr
        .wait_for(Duration::from_secs(90), |l| l.starts_with("denied: "));
    assert_eq!(
        line.as_deref(),
        Some("denied: web: no-grant"),
        "{:?}",
        c.stdout.seen
    );
    let status = c.exit(Duration::from_secs(20)).expect("edgegate.exe exits");
    assert!(!status.success());
    let listed = c
        .stdout
        .wait_for(Duration::from_secs(5), |l| l == "deny web no-grant");
    assert!(listed.is_some(), "{:?}", c.stdout.seen);
}

#[test]
fn socks_over_tls_with_appdata_defaults_and_ctrl_c_closes_the_session() {
    let Some(w) = wine() else { return };
    let d = start_daemon();
    let http = http_backend();
    let echo = echo_backend();
    d.install(http.addr, echo);
    // No --identity/--ticket: %APPDATA%\edgegate\identity.key and ...\ticket.
    let (key, ticket) = d.client("alice", "alice");
    let home = w.appdata().join("edgegate");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::copy(key, home.join("identity.key")).unwrap();
    std::fs::copy(ticket, home.join("ticket")).unwrap();
    let mut c = connect(w, &d, true, &[], &["--socks".into(), "0".into()]);
    ready(&mut c);
    let (code, mut s) = socks_connect(c.socks(), echo);
    assert_eq!(code, 0);
    s.write_all(b"ping through the lan").unwrap();
    let mut back = [0u8; 20];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping through the lan");
    drop(s);
    let (code, _) = socks_connect(c.socks(), http.addr);
    assert_eq!(code, 2, "outside the vpn service's ports");

    // Ctrl-C (Wine turns SIGINT into CTRL_C_EVENT): a clean exit, and the
    // daemon forgets the session at once, not at its idle timeout.
    let pid = nix::unistd::Pid::from_raw(c.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = c
        .exit(Duration::from_secs(20))
        .expect("edgegate.exe exits on Ctrl-C");
    assert!(
        status.success(),
        "{status:?}; stderr {:?}",
        c.stderr.rest(Duration::ZERO)
    );
    let gone = wait_until(Duration::from_secs(5), || {
        match d.control(edgegate::control::Request::Sessions) {
            edgegate::control::Response::Sessions(list) if list.is_empty() => Some(()),
            _ => None,
        }
    });
    assert!(gone.is_some(), "the session is still open on the daemon");
}

#[test]
fn router_only_commands_say_so_in_one_line_and_help_has_no_colour_codes() {
    let Some(w) = wine() else { return };
    let out = w.edgegate().arg("status").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("runs on the router"), "{err}");
    // No colour codes where the output is not a console (here a pipe).
    let help = w.edgegate().args(["connect", "--help"]).output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("%APPDATA%\\edgegate\\identity.key"), "{help}");
    assert!(!help.contains('\x1b') && !err.contains('\x1b'), "{help:?}");
}

/// `edgegate.exe ARGS` run to its end; stdout, or a panic with stderr.
fn run_ok(w: &Wine, args: &[&str]) -> String {
    let out = w.edgegate().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "edgegate.exe {args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The cloud operator's and the engineer's authoring on Windows, with
/// backslash paths that have spaces: policy check, bundle build, inspect,
/// explain, keygen, ticket issue, bundle push over the tunnel port; then
/// the key and ticket made there open a session.
#[test]
fn authoring_on_windows_then_a_session_with_what_it_made() {
    let Some(w) = wine() else { return };
    let d = start_daemon();
    let http = http_backend();
    let echo = echo_backend();
    let dir = d.dir.path().join("Cloud Operator");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| windows_path(&dir.join(name));
    std::fs::write(
        dir.join("policy.toml"),
        policy_text(http.addr, echo, "active"),
    )
    .unwrap();
    edgegate::keyfile::write_new(&dir.join("authority.key"), &d.authority).unwrap();

    run_ok(w, &["policy", "check", &file("policy.toml")]);
    let bundle = file("router 1.bundle");
    run_ok(
        w,
        &[
            "bundle",
            "build",
            &file("policy.toml"),
            "--device",
            DEVICE,
            "--serial",
            "1",
            "--valid-for",
            "1d",
            "--key",
            &file("authority.key"),
            "--out",
            &bundle,
        ],
    );
    let inspect = run_ok(w, &["bundle", "inspect", &bundle, "--json"]);
    assert!(inspect.contains(DEVICE), "{inspect}");
    let explain = run_ok(
        w,
        &[
            "policy",
            "explain",
            "--bundle",
            &bundle,
            "--user",
            "alice",
            "--service",
            "web",
            "--json",
        ],
    );
    assert!(explain.contains(r#""decision":"allow""#), "{explain}");
    let public = run_ok(w, &["keygen", "--out", &file("identity.key")]);
    assert!(public.starts_with("ed25519:"), "{public}");
    run_ok(
        w,
        &[
            "ticket",
            "issue",
            "--user",
            "alice",
            "--device",
            DEVICE,
            "--client-key",
            public.trim(),
            "--ttl",
            "8h",
            "--key",
            &file("authority.key"),
            "--out",
            &file("alice ticket"),
        ],
    );
    let pushed = run_ok(
        w,
        &[
            "bundle",
            "push",
            &bundle,
            "--gateway",
            &d.quic.to_string(),
            "--gateway-key",
            &d.device_key.to_string(),
        ],
    );
    assert_eq!(pushed.trim(), "accepted serial 1");

    let creds = [
        "--identity".to_string(),
        file("identity.key"),
        "--ticket".to_string(),
        file("alice ticket"),
    ];
    let mut c = connect(w, &d, true, &creds, &forwards(&["web"]));
    ready(&mut c);
    assert_eq!(curl(c.forwarded("web")), "hello from the plc\n");
}
