//! The real `edgegate keys` commands: init makes a root and one key per
//! role and statement 1; rotate makes the next statement, signed by the
//! root (and by the new root for a root rotation); inspect shows it; and
//! the statements verify the way a router verifies them.

use edgegate::keyfile::{load_signing_key, public_key};
use edgegate_proto::authority::{Authority, Delivery, StatementClock};
use edgegate_proto::{KeyRole, TrustPolicy};
use std::path::Path;
use std::process::Command;

fn edgegate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgegate"))
        .args(args)
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

fn ok(args: &[&str]) -> String {
    let (ok, out, err) = edgegate(args);
    assert!(ok, "edgegate {args:?}: {err}");
    out
}

fn fails(args: &[&str]) -> String {
    let (ok, out, err) = edgegate(args);
    assert!(!ok, "edgegate {args:?} should fail: {out}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

/// The router's view: advance `a` by the statement in `file`.
fn advance(a: &Authority, file: &Path) -> Authority {
    let bytes = std::fs::read(file).unwrap();
    let Ok(Delivery::Keys { statement, .. }) = Delivery::classify(&bytes) else {
        panic!("not a keys delivery")
    };
    let clock = StatementClock {
        wall: edgegate::clock::Clock::system().wall(),
        floor: 0,
    };
    a.advance(statement, clock).unwrap().authority().clone()
}

#[test]
fn init_rotate_and_inspect_make_statements_a_router_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let d = dir.to_str().unwrap();
    let out = ok(&["keys", "init", "--dir", d]);
    assert!(out.contains("key statement version 1"), "{out}");
    let root = load_signing_key(&dir.join("root.key")).unwrap();
    let pinned = TrustPolicy::new(vec![public_key(&root)], 1).unwrap();
    let v1 = advance(&Authority::legacy(pinned), &dir.join("keys.statement"));
    let ticket1 = public_key(&load_signing_key(&dir.join("ticket.key")).unwrap());
    assert_eq!(v1.role(KeyRole::Ticket).keys(), &[ticket1]);
    // Rotate the ticket key: the old one is kept aside, the new one named.
    ok(&["keys", "rotate", "--dir", d, "--role", "ticket"]);
    assert!(dir.join("ticket.key.v1").exists());
    let v2 = advance(&v1, &dir.join("keys-2.statement"));
    let ticket2 = public_key(&load_signing_key(&dir.join("ticket.key")).unwrap());
    assert_ne!(ticket1, ticket2);
    assert_eq!(v2.role(KeyRole::Ticket).keys(), &[ticket2]);
    assert_eq!(v2.role(KeyRole::Bundle), v1.role(KeyRole::Bundle));
    // A root rotation is signed by both roots.
    ok(&["keys", "rotate", "--dir", d, "--role", "root"]);
    let v3 = advance(&v2, &dir.join("keys.statement"));
    let statement = dir.join("keys.statement");
    let text = ok(&["keys", "inspect", statement.to_str().unwrap()]);
    assert!(text.contains("key statement version 3"), "{text}");
    assert_eq!(text.matches("signed by").count(), 2, "{text}");
    assert!(
        text.contains("valid, a root key of this statement"),
        "{text}"
    );
    let json = ok(&["keys", "inspect", statement.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["version"], 3);
    // A recovery: serial reset only with a new bundle key.
    let err = fails(&[
        "keys",
        "rotate",
        "--dir",
        d,
        "--role",
        "ticket",
        "--reset-serial",
        "0",
    ]);
    assert!(err.contains("--reset-serial needs --role bundle"), "{err}");
    ok(&[
        "keys",
        "rotate",
        "--dir",
        d,
        "--role",
        "bundle",
        "--reset-serial",
        "0",
        "--reset-floor",
        "2026-12-01T00:00:00Z",
    ]);
    let v4 = advance(&v3, &dir.join("keys.statement"));
    assert_eq!(v4.version(), 4);
    let text = ok(&["keys", "inspect", statement.to_str().unwrap()]);
    assert!(text.contains("recovery: serial reset to 0"), "{text}");
    // The old root signs nothing from version 3 on.
    let old_root = dir.join("root.key.v2");
    let err = fails(&[
        "keys",
        "rotate",
        "--dir",
        d,
        "--role",
        "enroll",
        "--root",
        old_root.to_str().unwrap(),
    ]);
    assert!(err.contains("is not the root of"), "{err}");
}

#[test]
fn bundle_build_and_ticket_issue_take_their_roles_key_from_a_keys_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let d = dir.to_str().unwrap();
    ok(&["keys", "init", "--dir", d]);
    let policy = format!("{}/examples/usecase-1.toml", env!("CARGO_MANIFEST_DIR"));
    let bundle = tmp.path().join("b.bundle");
    let out = ok(&[
        "bundle",
        "build",
        &policy,
        "--device",
        "router-b1",
        "--serial",
        "1",
        "--valid-for",
        "30d",
        "--keys-dir",
        d,
        "--out",
        bundle.to_str().unwrap(),
    ]);
    let bundle_key = public_key(&load_signing_key(&dir.join("bundle.key")).unwrap());
    assert!(out.contains(&format!("signed by {bundle_key}")), "{out}");
    let client = tmp.path().join("c.key");
    ok(&["keygen", "--out", client.to_str().unwrap()]);
    let ticket = tmp.path().join("t.ticket");
    ok(&[
        "ticket",
        "issue",
        "--user",
        "bert",
        "--device",
        "router-b1",
        "--client-key",
        client.to_str().unwrap(),
        "--ttl",
        "8h",
        "--keys-dir",
        d,
        "--out",
        ticket.to_str().unwrap(),
    ]);
    let ticket_key = load_signing_key(&dir.join("ticket.key")).unwrap();
    let trust = TrustPolicy::new(vec![public_key(&ticket_key)], 1).unwrap();
    let bytes = std::fs::read(&ticket).unwrap();
    assert!(edgegate_proto::VerifiedTicket::verify(&bytes, &trust).is_ok());
}
