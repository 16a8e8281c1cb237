//! `edgegated --demo` as the README tells a newcomer to use it: start it,
//! paste the commands it prints. Henk reaches the PLC page, the WebSocket
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
/// kills it when dropped).
fn spawn(program: &str, args: &[String]) -> Client {
    let mut child = Command::new(program)
        .args(args)
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

/// The arguments of a printed `…/edgegate SUBCOMMAND …` line (paths, keys
/// and addresses: no spaces inside an argument).
fn args_of(line: &str, subcommand: &str) -> Vec<String> {
    let at = line
        .find(&format!("edgegate {subcommand} "))
        .unwrap_or_else(|| panic!("no `edgegate {subcommand}` in {line:?}"));
    let rest = &line[at + "edgegate ".len()..];
    let rest = rest.split("   ").next().unwrap(); // drop trailing comments
    rest.split_whitespace().map(str::to_string).collect()
}

fn port_for(args: &[String], service: &str) -> u16 {
    args.iter()
        .find_map(|a| a.strip_suffix(&format!("={service}")))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no -L PORT={service} in {args:?}"))
}

#[test]
fn the_demo_does_what_it_prints() {
    let mut demo = spawn(EDGEGATED, &["--demo".into()]);
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
    let text = out.join("\n");
    println!("{text}");
    let dir = out[0]
        .split("state in ")
        .nth(1)
        .expect("the first line names the demo's directory")
        .to_string();
    assert!(std::path::Path::new(&dir).is_dir());
    let connects: Vec<&String> = out
        .iter()
        .filter(|l| l.contains("edgegate connect "))
        .collect();
    assert_eq!(
        connects.len(),
        3,
        "Henk's, Bert's and Sven's commands: {text}"
    );
    let (henk, bert, sven) = (
        args_of(connects[0], "connect"),
        args_of(connects[1], "connect"),
        args_of(connects[2], "connect"),
    );

    // Henk: allowed everything; the PLC page, the WebSocket echo, VNC.
    let mut h = spawn(EDGEGATE, &henk);
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
    let page = http_get(port_for(&henk, "plc-web"), "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let vnc = echo_through(port_for(&henk, "hmi-vnc"));
    let ws = ws_open(port_for(&henk, "maintenance"));

    // Bert: denied the PLC page, as printed.
    let mut b = spawn(EDGEGATE, &bert);
    let status = b
        .exit(Duration::from_secs(20))
        .expect("bert's connect exits");
    assert!(!status.success());
    assert_eq!(
        b.stderr.rest(Duration::from_millis(200)),
        ["denied: plc-web: no-grant"]
    );

    // Sven: site consent required, then granted with the printed command.
    let mut s = spawn(EDGEGATE, &sven);
    let status = s
        .exit(Duration::from_secs(20))
        .expect("sven's connect exits");
    assert!(!status.success());
    assert_eq!(
        s.stderr.rest(Duration::from_millis(200)),
        ["denied: hmi-vnc: site-consent-required"]
    );
    let grant_line = out
        .iter()
        .find(|l| l.contains("edgegate consent grant"))
        .expect("consent line");
    let grant = Command::new(EDGEGATE)
        .args(args_of(grant_line, "consent"))
        .output()
        .unwrap();
    assert!(grant.status.success(), "{grant:?}");
    let mut s = spawn(EDGEGATE, &sven);
    s.ready();
    let sven_vnc = echo_through(port_for(&sven, "hmi-vnc"));
    let socket = args_of(grant_line, "consent");
    let socket = socket.last().unwrap();
    let revoke = Command::new(EDGEGATE)
        .args(["consent", "revoke", "--socket", socket])
        .output()
        .unwrap();
    assert!(revoke.status.success(), "{revoke:?}");
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
    let push_line = out
        .iter()
        .find(|l| l.contains("edgegate bundle push"))
        .expect("push line");
    let push = Command::new(EDGEGATE)
        .args(args_of(push_line, "bundle"))
        .output()
        .unwrap();
    assert!(push.status.success(), "{push:?}");
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

    // Ctrl-C stops the demo and cleans up after it.
    let pid = nix::unistd::Pid::from_raw(demo.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = demo
        .exit(Duration::from_secs(10))
        .expect("the demo stops on Ctrl-C");
    assert!(status.success(), "{status:?}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
}
