//! The real `edgegate device enroll` and `device inspect-enrollment`:
//! keys init → device enroll → inspect, and the enrollment verifies the
//! way a relay will verify it (under the enroll role of the statement the
//! keys directory holds, or under flat keys before any statement).

use edgegate::keyfile::{load_signing_key, public_key};
use edgegate_proto::authority::{Authority, Delivery, StatementClock};
use edgegate_proto::{TrustPolicy, VerifiedEnrollment};
use std::path::Path;
use std::process::Command;

fn edgegate(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgegate"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (ok, out, err) = edgegate(dir, args);
    assert!(ok, "edgegate {args:?}: {err}");
    out
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let (ok, out, err) = edgegate(dir, args);
    assert!(!ok, "edgegate {args:?} should fail: {out}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

fn now() -> u64 {
    edgegate::clock::Clock::system().wall()
}

/// The relay's view of a keys directory: the root pinned, the statement
/// followed.
fn authority(keys: &Path) -> Authority {
    let root = public_key(&load_signing_key(&keys.join("root.key")).unwrap());
    let pinned = Authority::legacy(TrustPolicy::new(vec![root], 1).unwrap());
    let bytes = std::fs::read(keys.join("keys.statement")).unwrap();
    let Ok(Delivery::Keys { statement, .. }) = Delivery::classify(&bytes) else {
        panic!("not a keys delivery")
    };
    let clock = StatementClock {
        wall: now(),
        floor: 0,
    };
    pinned
        .advance(statement, clock)
        .unwrap()
        .authority()
        .clone()
}

#[test]
fn keys_init_then_enroll_then_inspect() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["keys", "init", "--dir", "keys"]);
    let device_pub = ok(d, &["keygen", "--out", "device.key"]);
    let device_pub = device_pub.trim();
    let out = ok(
        d,
        &[
            "device",
            "enroll",
            "--device",
            "router-7",
            "--device-key",
            device_pub,
            "--keys-dir",
            "keys",
            "--serial",
            "4",
            "--valid-for",
            "30d",
            "--out",
            "r7.enroll",
        ],
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("wrote r7.enroll: device router-7 has key "),
        "{out}"
    );
    assert!(
        out.contains(device_pub) && out.contains("serial 4"),
        "{out}"
    );

    // A relay following the statement accepts it; one trusting only the
    // root (roles separated) or the bundle key does not.
    let bytes = std::fs::read(d.join("r7.enroll")).unwrap();
    let v = VerifiedEnrollment::verify(&bytes, &authority(&d.join("keys")), now()).unwrap();
    assert_eq!(v.enrollment().device_id, "router-7");
    assert_eq!(v.enrollment().device_key.to_string(), device_pub);
    assert_eq!(v.enrollment().serial, 4);
    assert_eq!(
        v.enrollment().expires_at - v.enrollment().issued_at,
        30 * 86_400
    );
    let bundle = public_key(&load_signing_key(&d.join("keys/bundle.key")).unwrap());
    let wrong = TrustPolicy::new(vec![bundle], 1).unwrap();
    let err = VerifiedEnrollment::verify_policy(&bytes, &wrong, now()).unwrap_err();
    assert_eq!(err.code(), "bad-signature");

    // inspect, text and JSON; with --trust the relay's answer.
    let text = ok(d, &["device", "inspect-enrollment", "r7.enroll"]);
    assert!(text.contains("device:     router-7"), "{text}");
    assert!(
        text.contains(&format!("device key: {device_pub}")),
        "{text}"
    );
    assert!(text.contains("(valid now)"), "{text}");
    assert!(text.contains("trust:      not checked"), "{text}");
    let json = ok(
        d,
        &[
            "device",
            "inspect-enrollment",
            "r7.enroll",
            "--json",
            "--trust",
            "keys/enroll.key",
        ],
    );
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(j["device_id"], "router-7");
    assert_eq!(j["device_key"], device_pub);
    assert_eq!(j["serial"], 4);
    assert_eq!(j["state"], "valid");
    assert_eq!(j["trust"]["verified"], true);
    assert_eq!(j["signers"][0]["signature_valid"], true);
    let err = fails(
        d,
        &[
            "device",
            "inspect-enrollment",
            "r7.enroll",
            "--trust",
            "keys/bundle.key",
        ],
    );
    assert!(err.contains("a relay refuses it: bad-signature"), "{err}");

    // A tampered file: its signature no longer verifies.
    let mut bad = bytes.clone();
    bad[4] ^= 1;
    std::fs::write(d.join("bad.enroll"), &bad).unwrap();
    let err = fails(d, &["device", "inspect-enrollment", "bad.enroll"]);
    assert!(err.contains("do not verify"), "{err}");
}

#[test]
fn flat_authority_key_and_default_serial() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let authority_pub = ok(d, &["keygen", "--out", "authority.key"]);
    ok(d, &["keygen", "--out", "device.key"]);
    let before = now();
    let out = ok(
        d,
        &[
            "device",
            "enroll",
            "--device",
            "router-1",
            "--device-key",
            "device.key",
            "--key",
            "authority.key",
            "--out",
            "r1.enroll",
        ],
    );
    assert!(
        out.contains(&format!("signed by {}", authority_pub.trim())),
        "{out}"
    );
    let bytes = std::fs::read(d.join("r1.enroll")).unwrap();
    let flat = TrustPolicy::new(vec![authority_pub.trim().parse().unwrap()], 1).unwrap();
    let v = VerifiedEnrollment::verify(&bytes, &Authority::legacy(flat), now()).unwrap();
    let e = v.enrollment();
    // Default serial: the issue time; default validity: 365 days.
    assert_eq!(e.serial, e.issued_at);
    assert!(e.issued_at >= before);
    assert_eq!(e.expires_at - e.issued_at, 365 * 86_400);
}

#[test]
fn bad_input_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["keys", "init", "--dir", "keys"]);
    ok(d, &["keygen", "--out", "device.key"]);
    let enroll = |extra: &[&str]| {
        let mut args = vec!["device", "enroll", "--device", "r1", "--out", "x.enroll"];
        args.extend_from_slice(extra);
        fails(d, &args)
    };
    let err = enroll(&["--device-key", "device.key", "--key", "keys/bundle.key"]);
    assert!(
        err.contains("keys/bundle.key is the bundle key of keys/keys.statement (version 1), not an enroll key"),
        "{err}"
    );
    let err = enroll(&["--device-key", "device.key", "--key", "keys/ticket.key"]);
    assert!(err.contains("the ticket key of"), "{err}");
    let err = enroll(&["--device-key", "ssh-ed25519 AAAAC3Nz", "--keys-dir", "keys"]);
    assert!(
        err.contains("--device-key: ssh-ed25519 AAAAC3Nz: not a public key"),
        "{err}"
    );
    let err = enroll(&["--device-key", "ed25519:AAAA", "--keys-dir", "keys"]);
    assert!(err.contains("32 bytes"), "{err}");
    let err = enroll(&["--device-key", "device.key", "--key", "missing.key"]);
    assert!(err.starts_with("error: missing.key: "), "{err}");
    let err = enroll(&[
        "--device-key",
        "device.key",
        "--keys-dir",
        "keys",
        "--valid-for",
        "0s",
    ]);
    assert!(err.contains("--valid-for must be longer than 0s"), "{err}");
    let err = enroll(&["--device-key", "device.key", "--keys-dir", "nokeys"]);
    assert!(err.contains("nokeys/enroll.key"), "{err}");
    let err = fails(d, &["device", "inspect-enrollment", "keys/keys.statement"]);
    assert!(err.contains("a key statement, not an enrollment"), "{err}");
    assert!(!d.join("x.enroll").exists());
    // The router's own command is unchanged beside the new group.
    let (_, help, _) = edgegate(d, &["device-key", "--help"]);
    assert!(help.contains("--config"), "{help}");
}
