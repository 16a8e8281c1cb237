//! `edgegated --demo` as the README tells a newcomer to use it: start it,
//! paste the commands it prints (each run by `sh` exactly as printed, with
//! no edgegate on `PATH`; only `curl` and `python3` besides ours). Henk reaches the PLC page, the WebSocket
//! and the VNC stand-in; Bert is denied the PLC page; Sven is denied the HMI
//! until on-site consent is granted, and cut when it is revoked; the
//! printed revocation push closes Henk's streams; Ctrl-C (SIGINT) stops the
//! demo and removes its directory.

// Of the daemon side of the harness only `Client` is used: the demo starts
// its own daemon.
#[allow(unused_imports)]
#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const EDGEGATED: &str = env!("CARGO_BIN_EXE_edgegated");
const EDGEGATE: &str = env!("CARGO_BIN_EXE_edgegate");

/// Start a program with piped output, as the harness's `Client` (which
/// kills it when dropped). Not `Client::spawn`: that closes stdin, and the
/// telnet step types into it.
fn spawn(mut cmd: Command) -> Client {
    let mut child = cmd
        .env("NO_COLOR", "1")
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

/// `PATH` without any directory holding an `edgegate`: a printed command
/// must not depend on one being installed.
fn path_without_edgegate() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|d| !d.join("edgegate").exists() && !d.join("edgegated").exists())
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// A printed command line, run as a reader pastes it: by `sh`, from
/// another directory, with a `PATH` that has no edgegate.
fn shell(line: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec {line}"))
        .current_dir(std::env::temp_dir())
        .env("PATH", path_without_edgegate())
        .stdin(Stdio::null());
    cmd
}

/// The printed command containing `needle` (once, indented by two spaces).
fn command<'a>(out: &'a [String], needle: &str) -> &'a str {
    let found: Vec<&String> = out.iter().filter(|l| l.contains(needle)).collect();
    assert_eq!(found.len(), 1, "one line with {needle:?}: {found:?}");
    found[0].strip_prefix("  ").expect("commands are indented")
}

fn run(line: &str) -> std::process::Output {
    let out = shell(line).output().unwrap();
    assert!(out.status.success(), "{line}: {out:?}");
    out
}

fn port_for(line: &str, service: &str) -> u16 {
    line.split_whitespace()
        .find_map(|a| a.strip_suffix(&format!("={service}")))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no -L PORT={service} in {line}"))
}

/// Every indented line of the demo's output that is not a `->` result or a
/// parenthesised remark is a command; its program must be one a reader has:
/// the `edgegate` beside `edgegated` by absolute path, or a Debian tool.
fn assert_runnable_as_printed(out: &[String]) {
    let commands: Vec<&str> = out
        .iter()
        .skip(4) // the header: addresses and keys
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| !l.starts_with("->") && !l.starts_with('('))
        .collect();
    // 11, and 3 through the relay (started beside the daemon: the test
    // builds `edgegate-relay` with the other binaries).
    assert_eq!(commands.len(), 14, "{commands:#?}");
    let edgegate = std::path::Path::new(EDGEGATE).canonicalize().unwrap();
    for c in commands {
        let program = c.split_whitespace().next().unwrap();
        match program {
            "curl" | "python3" => {}
            _ => assert_eq!(
                std::path::Path::new(program).canonicalize().ok().as_ref(),
                Some(&edgegate),
                "{c}"
            ),
        }
    }
}

/// Start `edgegated --demo`; its printed lines once it has printed them all.
fn start_demo() -> (Client, Vec<String>) {
    let mut cmd = Command::new(EDGEGATED);
    cmd.arg("--demo");
    let mut demo = spawn(cmd);
    demo.stdout
        .wait_for(Duration::from_secs(30), |l| {
            l.starts_with("Ctrl-C stops the demo")
        })
        .unwrap_or_else(|| {
            panic!(
                "demo did not start: {:?}",
                demo.stderr.rest(Duration::from_millis(200))
            )
        });
    let out = demo.stdout.seen.clone();
    (demo, out)
}

#[test]
fn the_demo_does_what_it_prints() {
    let (mut demo, out) = start_demo();
    let text = out.join("\n");
    println!("{text}");
    let dir = out[0]
        .split("state in ")
        .nth(1)
        .expect("the first line names the demo's directory")
        .to_string();
    assert!(std::path::Path::new(&dir).is_dir());
    assert_runnable_as_printed(&out);
    let connects: Vec<&str> = out
        .iter()
        .filter(|l| l.contains("edgegate connect --gateway "))
        .map(|l| l.trim_start())
        .collect();
    assert_eq!(
        connects.len(),
        3,
        "Henk's, Bert's and Sven's commands: {text}"
    );
    let (henk, bert, sven) = (connects[0], connects[1], connects[2]);

    // Henk: allowed everything; the PLC page (directly and through the
    // SOCKS proxy), the WebSocket echo, VNC, each with the printed command.
    let mut h = spawn(shell(henk));
    h.ready();
    for service in ["plc-web", "maintenance", "hmi-vnc", "lan"] {
        assert!(
            h.stdout
                .seen
                .iter()
                .any(|l| l.starts_with(&format!("allow {service} manage"))),
            "{:?}",
            h.stdout.seen
        );
    }
    let web = format!("curl http://127.0.0.1:{}/", port_for(henk, "plc-web"));
    for needle in [web.as_str(), "curl --socks5 "] {
        let page = run(command(&out, needle));
        assert!(
            String::from_utf8_lossy(&page.stdout).contains("Filling line PLC"),
            "{page:?}"
        );
    }
    let hello = run(command(&out, "python3 "));
    assert_eq!(
        String::from_utf8_lossy(&hello.stdout),
        "HTTP/1.1 101 Switching Protocols\nhello\n"
    );
    let mut telnet = shell(command(&out, "telnet://"));
    telnet.stdin(Stdio::piped());
    let mut telnet = spawn(telnet);
    let mut typed = telnet.child.stdin.take().unwrap();
    std::io::Write::write_all(&mut typed, b"hello vnc\n").unwrap();
    assert!(telnet
        .stdout
        .wait_for(Duration::from_secs(10), |l| l == "hello vnc")
        .is_some());
    drop((typed, telnet));
    let vnc = echo_through(port_for(henk, "hmi-vnc"));
    let ws = ws_open(port_for(henk, "maintenance"));

    // Bert: denied the PLC page, as printed.
    let mut b = spawn(shell(bert));
    let status = b
        .exit(Duration::from_secs(20))
        .expect("bert's connect exits");
    assert!(!status.success());
    assert_eq!(
        b.stderr.rest(Duration::from_millis(200)),
        ["denied: plc-web: no-grant"]
    );

    // Sven: site consent required, then granted with the printed command.
    let mut s = spawn(shell(sven));
    let status = s
        .exit(Duration::from_secs(20))
        .expect("sven's connect exits");
    assert!(!status.success());
    assert_eq!(
        s.stderr.rest(Duration::from_millis(200)),
        ["denied: hmi-vnc: site-consent-required"]
    );
    run(command(&out, "edgegate consent grant "));
    let mut s = spawn(shell(sven));
    s.ready();
    let sven_vnc = echo_through(port_for(sven, "hmi-vnc"));
    run(command(&out, "edgegate consent revoke "));
    assert!(
        wait_closed(sven_vnc, Duration::from_secs(5)).is_some(),
        "revoking consent cuts Sven's stream"
    );
    assert!(s
        .stderr
        .wait_for(Duration::from_secs(5), |l| l
            == "closed: hmi-vnc: site-consent-required")
        .is_some());

    // The printed push makes Henk inactive: his streams are cut.
    let push = run(command(&out, "edgegate bundle push "));
    assert_eq!(
        String::from_utf8_lossy(&push.stdout).trim(),
        "accepted serial 2"
    );
    assert!(wait_closed(vnc, Duration::from_secs(5)).is_some());
    assert!(wait_closed(ws, Duration::from_secs(5)).is_some());
    let status = h
        .exit(Duration::from_secs(5))
        .expect("henk's connect exits");
    assert!(!status.success());
    assert!(h
        .stderr
        .rest(Duration::from_millis(200))
        .contains(&"closed: session: user-inactive".to_string()));

    // The router's side, as printed.
    let status = run(command(&out, "edgegate status "));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("demo-router"),
        "{status:?}"
    );

    // Ctrl-C stops the demo and cleans up after it.
    let pid = nix::unistd::Pid::from_raw(demo.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = demo
        .exit(Duration::from_secs(10))
        .expect("the demo stops on Ctrl-C");
    assert!(status.success(), "{status:?}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
}

/// Henk's command through the demo's relay, as printed, reaches `ready`
/// and carries the PLC page; the printed `relay status` lists the router.
#[test]
fn henks_command_through_the_demo_relay_reaches_the_plc_page() {
    let (mut demo, out) = start_demo();
    let text = out.join("\n");
    let relayed = command(&out, "edgegate connect --relay ");
    assert!(relayed.contains(" --gateway-key ") && !relayed.contains(" --gateway "));
    let mut h = spawn(shell(relayed));
    h.ready();
    assert!(
        h.stdout.seen.iter().any(|l| l == "allow plc-web manage"),
        "{:?}",
        h.stdout.seen
    );
    let web = format!("curl http://127.0.0.1:{}/", port_for(relayed, "plc-web"));
    let page = run(command(&out, &web));
    assert!(
        String::from_utf8_lossy(&page.stdout).contains("Filling line PLC"),
        "{page:?}\n{text}"
    );
    let status = run(command(&out, "edgegate relay status "));
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("router demo-router over quic") && status.contains("sessions 1"),
        "{status}"
    );
    drop(h);
    let pid = nix::unistd::Pid::from_raw(demo.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = demo
        .exit(Duration::from_secs(10))
        .expect("the demo stops on Ctrl-C");
    assert!(status.success(), "{status:?}");
}
