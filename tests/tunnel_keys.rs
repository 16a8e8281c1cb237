//! Authority keys with roles, end to end: `edgegate keys init` makes the
//! role keys under the root routers already trust, the statement is pushed
//! with `edgegate bundle push` over the tunnel port, bundles and tickets
//! are signed by their role's key, and after `edgegate keys rotate --role
//! ticket` is pushed over the control socket a real client whose ticket the
//! old key signed is cut with `closed: session: bad-ticket`, while a ticket
//! of the new key opens a session. `edgegate status` shows the statement's
//! version and the roles' keys, also after a restart.

#[path = "tunnel_support/harness.rs"]
mod harness;

use ed25519_dalek::SigningKey;
use harness::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn edgegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgegate"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn load(path: &Path) -> SigningKey {
    edgegate::keyfile::load_signing_key(path).unwrap()
}

/// A client key and a ticket for `user` signed by `signer`.
fn client(
    d: &Daemon,
    name: &str,
    user: &str,
    signer: &SigningKey,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let k = SigningKey::generate(&mut rand::rngs::OsRng);
    let key_path = d.path(&format!("{name}.key"));
    edgegate::keyfile::write_new(&key_path, &k).unwrap();
    let t = ticket_bytes(user, &d.device, &public(&k), signer);
    (key_path, d.write(&format!("{name}.ticket"), &t))
}

fn status(d: &Daemon) -> String {
    let socket = d.control.display().to_string();
    stdout_of(&edgegate(&["status", "--socket", &socket]))
}

#[test]
fn a_ticket_key_rotation_pushed_to_a_real_daemon_cuts_the_old_keys_sessions() {
    let mut d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    // The authority key the router trusts becomes the root.
    let root = d.path("authority.key");
    edgegate::keyfile::write_new(&root, &d.authority).unwrap();
    let dir = d.path("keys");
    let (dir_s, root_s) = (dir.display().to_string(), root.display().to_string());
    stdout_of(&edgegate(&[
        "keys", "init", "--dir", &dir_s, "--root", &root_s,
    ]));
    let out = stdout_of(&d.push(&dir.join("keys.statement"), false));
    assert_eq!(out.trim(), "accepted key statement version 1");
    // The bundle key signs bundles; the root no longer does.
    let policy = policy_text(http.addr, echo, "active");
    let by_root = d.write("b-root", &bundle_bytes(&policy, DEVICE, 1, &d.authority));
    let refused = d.push(&by_root, false);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("rejected: bad-signature"), "{err}");
    let bundle_key = load(&dir.join("bundle.key"));
    let b1 = d.write("b1", &bundle_bytes(&policy, DEVICE, 1, &bundle_key));
    assert_eq!(stdout_of(&d.push(&b1, false)).trim(), "accepted serial 1");
    // Alice's ticket is signed by the ticket key; her session is live.
    let old_ticket_key = load(&dir.join("ticket.key"));
    let (key, ticket) = client(&d, "alice", "alice", &old_ticket_key);
    let mut c = d.connect(&key, &ticket, false, &forwards(&["hmi"]));
    c.ready();
    let mut echoing = echo_through(c.forwarded("hmi"));
    // The ticket key leaks: rotate it, push over the control socket.
    stdout_of(&edgegate(&[
        "keys", "rotate", "--dir", &dir_s, "--role", "ticket", "--root", &root_s,
    ]));
    let socket = d.control.display().to_string();
    let statement = dir.join("keys.statement").display().to_string();
    let pushed = edgegate(&["bundle", "push", &statement, "--socket", &socket]);
    let acked = Instant::now();
    assert_eq!(
        stdout_of(&pushed).trim(),
        "accepted key statement version 2"
    );
    let closed = wait_closed(echoing.try_clone().unwrap(), Duration::from_secs(5));
    println!("push acknowledged → stream closed in {:?}", acked.elapsed());
    assert!(closed.is_some(), "the old key's stream is cut");
    let _ = std::io::Write::write_all(&mut echoing, b"x");
    let status_of = c.exit(Duration::from_secs(5)).expect("the client exits");
    assert!(!status_of.success());
    let err = c.stderr.rest(Duration::from_millis(200));
    assert!(
        err.iter().any(|l| l == "closed: session: bad-ticket"),
        "{err:?}"
    );
    // Old key's tickets are refused; the new key's work.
    let (key, ticket) = client(&d, "alice2", "alice", &old_ticket_key);
    let mut refused = d.connect(&key, &ticket, false, &forwards(&["hmi"]));
    assert!(!refused.exit(Duration::from_secs(10)).unwrap().success());
    let err = refused.stderr.rest(Duration::from_millis(200));
    assert!(err.iter().any(|l| l == "denied: bad-ticket"), "{err:?}");
    let new_ticket_key = load(&dir.join("ticket.key"));
    let (key, ticket) = client(&d, "alice3", "alice", &new_ticket_key);
    let mut fresh = d.connect(&key, &ticket, true, &forwards(&["hmi"]));
    fresh.ready();
    drop(echo_through(fresh.forwarded("hmi")));
    fresh.stop(Duration::from_secs(5));
    // Status shows the statement and the roles' keys, across a restart.
    let new_ticket = public(&new_ticket_key).to_string();
    let shown = |text: &str| {
        assert!(text.contains("key statement:"), "{text}");
        assert!(text.contains("version 2"), "{text}");
        // The fingerprint: the text form's first 12 base64 characters.
        assert!(text.contains(&new_ticket[..20]), "{text}");
    };
    shown(&status(&d));
    d.restart();
    shown(&status(&d));
}
