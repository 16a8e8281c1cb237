//! End to end: the real `edgegate` binary's authoring commands on the
//! use-case fixtures: keygen, bundle build/inspect, ticket issue, policy
//! check and policy explain, and one-line errors for broken input.

use edgegate_proto::{PublicKey, TrustPolicy, VerifiedTicket};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_edgegate");

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn edgegate(args: &[&str]) -> Out {
    let out = Command::new(BIN).args(args).output().expect("run edgegate");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn ok(args: &[&str]) -> String {
    let out = edgegate(args);
    assert!(out.ok, "edgegate {args:?} failed: {}", out.stderr);
    out.stdout
}

/// Runs a command that must fail and returns its single stderr line.
fn fails(args: &[&str]) -> String {
    let out = edgegate(args);
    assert!(
        !out.ok,
        "edgegate {args:?} should fail; stdout: {}",
        out.stdout
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line expected: {:?}", out.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    lines[0].to_string()
}

fn example(n: u8) -> String {
    format!("{}/examples/usecase-{n}.toml", env!("CARGO_MANIFEST_DIR"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    authority: PathBuf,
    authority_pub: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let authority = path.join("authority.key");
    let authority_pub = ok(&["keygen", "--out", s(&authority)]).trim().to_string();
    Setup {
        _dir: dir,
        dir: path,
        authority,
        authority_pub,
    }
}

impl Setup {
    fn build(&self, usecase: u8, device: &str) -> PathBuf {
        let out = self.dir.join(format!("uc{usecase}-{device}.bundle"));
        let stdout = ok(&[
            "bundle",
            "build",
            &example(usecase),
            "--device",
            device,
            "--serial",
            "1",
            "--valid-for",
            "30d",
            "--key",
            s(&self.authority),
            "--out",
            s(&out),
        ]);
        assert!(
            stdout.starts_with(&format!("wrote {}", s(&out))),
            "{stdout}"
        );
        out
    }

    fn explain(&self, bundle: &Path, user: &str, service: &str, extra: &[&str]) -> Value {
        let mut args = vec![
            "policy",
            "explain",
            "--bundle",
            s(bundle),
            "--user",
            user,
            "--service",
            service,
            "--trust",
            &self.authority_pub,
            "--json",
        ];
        args.extend_from_slice(extra);
        serde_json::from_str(&ok(&args)).expect("explain --json prints one JSON object")
    }
}

fn decision(v: &Value) -> String {
    match v["decision"].as_str().unwrap() {
        "allow" => format!("allow:{}", v["level"].as_str().unwrap()),
        "deny" => format!("deny:{}", v["reason"].as_str().unwrap()),
        other => panic!("decision {other}"),
    }
}

#[test]
fn keygen_prints_public_key_and_never_overwrites() {
    let t = setup();
    let key: PublicKey = t.authority_pub.parse().unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&t.authority).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(&t.authority).unwrap();
    let err = fails(&["keygen", "--out", s(&t.authority)]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&t.authority).unwrap(), before);
    assert!(!err.contains("edgegate-ed25519-secret"));
    assert_ne!(key.to_string(), "");
}

#[test]
fn bundle_build_and_inspect() {
    let t = setup();
    let bundle = t.build(1, "router-b1");
    let v: Value = serde_json::from_str(&ok(&["bundle", "inspect", s(&bundle), "--json"])).unwrap();
    assert_eq!(v["device_id"], "router-b1");
    assert_eq!(v["serial"], 1);
    assert_eq!(v["company"]["id"], "machine-builder");
    assert_eq!(v["counts"]["users"], 5);
    assert_eq!(v["device"]["services"].as_array().unwrap().len(), 4);
    assert_eq!(v["device"]["services"][1]["target"], "127.0.0.33:5900");
    assert_eq!(v["signers"][0]["key"], t.authority_pub.as_str());
    assert_eq!(v["signers"][0]["signature_valid"], true);
    assert!(v["trust"].is_null());

    let v: Value = serde_json::from_str(&ok(&[
        "bundle",
        "inspect",
        s(&bundle),
        "--json",
        "--trust",
        &t.authority_pub,
    ]))
    .unwrap();
    assert_eq!(v["trust"]["verified"], true);
    assert_eq!(v["signers"][0]["trusted"], true);

    let text = ok(&["bundle", "inspect", s(&bundle)]);
    assert!(
        text.contains("router-b1") && text.contains("signature valid"),
        "{text}"
    );

    let other = t.dir.join("other.key");
    ok(&["keygen", "--out", s(&other)]);
    let err = fails(&["bundle", "inspect", s(&bundle), "--trust", s(&other)]);
    assert!(
        err.contains("signed by 0 trusted key(s), 1 required"),
        "{err}"
    );
}

#[test]
fn inspect_refuses_broken_signatures_and_names_a_ticket() {
    let t = setup();
    let bundle = t.build(1, "router-b1");
    // The envelope ends with the last signature's bytes: flip one of them.
    let mut bytes = std::fs::read(&bundle).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    let bad = t.dir.join("bad-sig.bundle");
    std::fs::write(&bad, &bytes).unwrap();
    let out = edgegate(&["bundle", "inspect", s(&bad)]);
    assert!(
        !out.ok,
        "a broken signature must not exit 0: {}",
        out.stdout
    );
    assert!(out.stdout.contains("signature INVALID"), "{}", out.stdout);
    assert!(
        out.stderr.contains("1 of 1 signature(s) do not verify"),
        "{}",
        out.stderr
    );

    let client = t.dir.join("client.key");
    ok(&["keygen", "--out", s(&client)]);
    let ticket = t.dir.join("bert.ticket");
    ok(&[
        "ticket",
        "issue",
        "--user",
        "bert",
        "--device",
        "router-b1",
        "--client-key",
        s(&client),
        "--ttl",
        "1h",
        "--key",
        s(&t.authority),
        "--out",
        s(&ticket),
    ]);
    let err = fails(&["bundle", "inspect", s(&ticket)]);
    assert!(err.contains("a ticket, not a bundle"), "{err}");
}

#[test]
fn signing_key_mistakes_are_named() {
    let t = setup();
    let bundle = t.build(1, "router-b1");
    let build = |key: &str| {
        fails(&[
            "bundle",
            "build",
            &example(1),
            "--device",
            "router-b1",
            "--serial",
            "2",
            "--valid-for",
            "1d",
            "--key",
            key,
            "--out",
            s(&t.dir.join("x.bundle")),
        ])
    };
    let err = build(s(&bundle));
    assert!(err.contains("not an edgegate private key file"), "{err}");
    let err = build(&t.authority_pub);
    assert!(
        err.contains("a public key; signing needs the private key"),
        "{err}"
    );
}

#[test]
fn multi_signature_bundle() {
    let t = setup();
    let second = t.dir.join("second.key");
    let second_pub = ok(&["keygen", "--out", s(&second)]).trim().to_string();
    let out = t.dir.join("two.bundle");
    ok(&[
        "bundle",
        "build",
        &example(2),
        "--device",
        "router-a1",
        "--serial",
        "9",
        "--valid-for",
        "1d12h",
        "--key",
        s(&t.authority),
        "--key",
        s(&second),
        "--out",
        s(&out),
        "--issued-at",
        "2026-11-25T08:00:00Z",
    ]);
    let v: Value = serde_json::from_str(&ok(&[
        "bundle",
        "inspect",
        s(&out),
        "--json",
        "--trust",
        &t.authority_pub,
        "--trust",
        &second_pub,
        "--threshold",
        "2",
    ]))
    .unwrap();
    assert_eq!(v["signers"].as_array().unwrap().len(), 2);
    assert_eq!(v["trust"]["verified"], true);
    assert_eq!(v["issued_at"], "2026-11-25T08:00:00Z");
    assert_eq!(v["not_after"], "2026-11-26T20:00:00Z");
}

#[test]
fn ticket_issue_signs_what_was_asked() {
    let t = setup();
    let client = t.dir.join("client.key");
    let client_pub = ok(&["keygen", "--out", s(&client)]).trim().to_string();
    let ticket = t.dir.join("bert.ticket");
    let stdout = ok(&[
        "ticket",
        "issue",
        "--user",
        "bert",
        "--device",
        "router-b1",
        "--client-key",
        s(&client),
        "--ttl",
        "8h",
        "--mfa",
        "--auth-time",
        "2026-11-25T07:30:00Z",
        "--issued-at",
        "2026-11-25T08:00:00Z",
        "--key",
        s(&t.authority),
        "--out",
        s(&ticket),
    ]);
    let lines: Vec<&str> = stdout.lines().collect();
    let id = lines[0].strip_prefix("ticket ").unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(lines[1], "expires 2026-11-25T16:00:00Z");

    let trust = TrustPolicy::new(vec![t.authority_pub.parse().unwrap()], 1).unwrap();
    let vt = VerifiedTicket::verify(&std::fs::read(&ticket).unwrap(), &trust).unwrap();
    let tk = vt.ticket();
    assert_eq!(
        (tk.user.as_str(), tk.device.as_str()),
        ("bert", "router-b1")
    );
    assert_eq!(tk.client_key, client_pub.parse::<PublicKey>().unwrap());
    assert_eq!(tk.expires_at - tk.issued_at, 8 * 3600);
    assert_eq!(tk.issued_at - tk.auth_time, 1800);
    assert!(tk.mfa);
    let hex: String = tk.id.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, id);

    // The public key string works as well as the file.
    ok(&[
        "ticket",
        "issue",
        "--user",
        "bert",
        "--device",
        "router-b1",
        "--client-key",
        &client_pub,
        "--ttl",
        "8h",
        "--key",
        s(&t.authority),
        "--out",
        s(&t.dir.join("t2")),
    ]);
    let err = fails(&[
        "ticket",
        "issue",
        "--user",
        "bert",
        "--device",
        "router-b1",
        "--client-key",
        "not-a-key",
        "--ttl",
        "8h",
        "--key",
        s(&t.authority),
        "--out",
        s(&t.dir.join("t3")),
    ]);
    assert!(err.contains("not-a-key: not a public key"), "{err}");
}

#[test]
fn policy_check_passes_on_every_use_case() {
    for n in 1..=3 {
        let stdout = ok(&["policy", "check", &example(n)]);
        assert!(
            stdout.starts_with("ok: ") && stdout.trim_end().ends_with(" tests passed"),
            "{stdout}"
        );
    }
}

/// Writes use case 1 with one edit and returns (path, line of `marker`).
fn broken(dir: &Path, name: &str, from: &str, to: &str, marker: &str) -> (PathBuf, usize) {
    let text = std::fs::read_to_string(example(1)).unwrap();
    assert!(text.contains(from));
    let text = text.replacen(from, to, 1);
    let line = text.lines().position(|l| l.contains(marker)).unwrap() + 1;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    (path, line)
}

#[test]
fn broken_policy_files_fail_with_one_line_naming_the_line() {
    let t = setup();
    let cases = [
        (
            "dangling.toml",
            "{ group = \"customer-b\", role = \"customer-operator\" }",
            "{ group = \"customer-b\", role = \"nope\" }",
            "role = \"nope\"",
            "user \"bert\": membership role \"nope\" is not defined",
        ),
        (
            "duplicate.toml",
            "id = \"olga\"",
            "id = \"henk\"",
            "name = \"Olga",
            "duplicate user id \"henk\"",
        ),
        (
            "unknown-key.toml",
            "logout_period = \"22h\"",
            "logout_period = \"22h\"\nshoe_size = 44",
            "shoe_size",
            "key `user[3].shoe_size`: unknown field `shoe_size`",
        ),
    ];
    for (name, from, to, marker, message) in cases {
        let (path, mut line) = broken(&t.dir, name, from, to, marker);
        if name == "duplicate.toml" {
            line -= 1; // the duplicate id sits on the line above Olga's name
        }
        let want = format!("error: {}:{line}: {message}", s(&path));
        for cmd in [
            vec!["policy", "check", s(&path)],
            vec![
                "bundle",
                "build",
                s(&path),
                "--device",
                "router-a1",
                "--serial",
                "1",
                "--valid-for",
                "1d",
                "--key",
                s(&t.authority),
                "--out",
                "/nonexistent/x",
            ],
        ] {
            let err = fails(&cmd);
            assert!(err.starts_with(&want), "{cmd:?}\n got: {err}\nwant: {want}");
        }
    }
}

#[test]
fn failing_expectation_is_reported_with_the_actual_decision() {
    let t = setup();
    let text = std::fs::read_to_string(example(1)).unwrap();
    let from =
        "user = \"bert\"\ndevice = \"router-b1\"\nservice = \"hmi-vnc\"\nexpect = \"allow:manage\"";
    assert!(text.contains(from));
    let text = text.replacen(from, &from.replace("allow:manage", "deny:no-grant"), 1);
    let path = t.dir.join("wrong.toml");
    std::fs::write(&path, &text).unwrap();
    let out = edgegate(&["policy", "check", s(&path)]);
    assert!(!out.ok);
    let line = text
        .find(&from.replace("allow:manage", "deny:no-grant"))
        .unwrap();
    let line = text[..line].lines().count() + 1;
    assert!(
        out.stdout.contains(&format!(
            "{}:{line}: test bert/router-b1/hmi-vnc: expected deny:no-grant, got allow:manage (grants:",
            s(&path)
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("1 of 53 tests failed"),
        "{}",
        out.stderr
    );
}

#[test]
fn explain_gives_the_seed_decisions() {
    let t = setup();
    let b1 = t.build(1, "router-b1");
    let a1 = t.build(1, "router-a1");
    // Use case 1: Bert, operator of customer B, reaches only the VNC of customer B's machines.
    let v = t.explain(&b1, "bert", "hmi-vnc", &[]);
    assert_eq!(decision(&v), "allow:manage");
    assert!(v["trace"].as_array().unwrap().len() > 5);
    for (bundle, service) in [
        (&b1, "machine-info"),
        (&b1, "machine-live"),
        (&a1, "hmi-vnc"),
    ] {
        assert_eq!(
            decision(&t.explain(bundle, "bert", service, &[])),
            "deny:no-grant"
        );
    }
    let v = t.explain(&b1, "bert", "lan", &["--destination", "127.0.0.34:502"]);
    assert_eq!(decision(&v), "deny:no-grant");
    // 2FA: Nathany's role demands it.
    assert_eq!(
        decision(&t.explain(&a1, "nathany", "hmi-vnc", &[])),
        "deny:mfa-required"
    );
    assert_eq!(
        decision(&t.explain(&a1, "nathany", "hmi-vnc", &["--mfa"])),
        "allow:manage"
    );
    // Logout period: Bert's 22h.
    let late = [
        "--auth-time",
        "2026-11-25T08:00:00Z",
        "--at",
        "2026-11-26T06:00:00Z",
    ];
    assert_eq!(
        decision(&t.explain(&b1, "bert", "hmi-vnc", &late)),
        "deny:session-expired"
    );

    // Use case 3: Emmy, service manager of Europe, reaches Customer A's router
    // (Europe > Division 1 > Customer A), not Customer B's under Asia.
    let uc3_a1 = t.build(3, "router-a1");
    let uc3_b1 = t.build(3, "router-b1");
    for service in ["hmi-vnc", "machine-info", "maintenance"] {
        let v = t.explain(&uc3_a1, "emmy", service, &[]);
        assert_eq!(decision(&v), "allow:manage", "{service}");
        assert_eq!(
            decision(&t.explain(&uc3_b1, "emmy", service, &[])),
            "deny:no-grant"
        );
    }
    let v = t.explain(&uc3_a1, "emmy", "lan", &["--destination", "127.0.0.20:502"]);
    assert_eq!(decision(&v), "allow:manage");
    let text = v.to_string();
    assert!(
        text.contains("europe") && text.contains("division-1"),
        "{text}"
    );
    // The customer has no access yet.
    assert_eq!(
        decision(&t.explain(&uc3_a1, "chris", "machine-info", &[])),
        "deny:no-grant"
    );

    // Use case 2: site consent and read-only grants.
    let uc2_b1 = t.build(2, "router-b1");
    let v = t.explain(&uc2_b1, "sven", "hmi-vnc", &[]);
    assert_eq!(decision(&v), "deny:site-consent-required");
    let v = t.explain(&uc2_b1, "sven", "hmi-vnc", &["--consent"]);
    assert_eq!(decision(&v), "allow:manage");
    assert_eq!(
        decision(&t.explain(&uc2_b1, "lena", "machine-info", &[])),
        "allow:read"
    );
}

#[test]
fn explain_exits_zero_on_deny_and_non_zero_on_broken_questions() {
    let t = setup();
    let b1 = t.build(1, "router-b1");
    let text = ok(&[
        "policy",
        "explain",
        "--bundle",
        s(&b1),
        "--user",
        "nobody",
        "--service",
        "hmi-vnc",
    ]);
    assert!(text.contains("deny: unknown-user"), "{text}");
    let err = fails(&[
        "policy",
        "explain",
        "--bundle",
        s(&t.dir.join("missing")),
        "--user",
        "bert",
        "--service",
        "hmi-vnc",
    ]);
    assert!(err.contains("missing"), "{err}");
    let other = t.dir.join("other.key");
    ok(&["keygen", "--out", s(&other)]);
    let err = fails(&[
        "policy",
        "explain",
        "--bundle",
        s(&b1),
        "--user",
        "bert",
        "--service",
        "hmi-vnc",
        "--trust",
        s(&other),
    ]);
    assert!(err.contains("trusted key"), "{err}");
    let err = fails(&[
        "policy",
        "explain",
        "--bundle",
        s(&b1),
        "--user",
        "bert",
        "--service",
        "hmi-vnc",
        "--at",
        "tomorrow",
    ]);
    assert!(err.contains("invalid time"), "{err}");
    let err = fails(&["policy", "explain", "--bundle", s(&b1), "--user", "bert"]);
    assert!(
        err.contains("required arguments were not provided: --service"),
        "{err}"
    );
    let v: Value = serde_json::from_str(&ok(&[
        "policy",
        "explain",
        "--bundle",
        s(&b1),
        "--user",
        "bert",
        "--service",
        "hmi-vnc",
        "--at",
        "2030-01-01T00:00:00Z",
        "--json",
    ]))
    .unwrap();
    assert_eq!(decision(&v), "deny:no-valid-bundle");
    // Before the bundle's issue time a gateway would use its time floor
    // (the issue time), not the clock: so does the explanation.
    let v: Value = serde_json::from_str(&ok(&[
        "policy",
        "explain",
        "--bundle",
        s(&b1),
        "--user",
        "bert",
        "--service",
        "hmi-vnc",
        "--at",
        "2001-01-01T00:00:00Z",
        "--json",
    ]))
    .unwrap();
    assert_eq!(decision(&v), "allow:manage");
    assert!(
        v["time_floor"]
            .as_str()
            .unwrap()
            .contains("before the bundle's issue time"),
        "{v}"
    );
    assert_ne!(v["at"], "2001-01-01T00:00:00Z");
}

#[test]
fn read_grant_on_vpn_is_a_warning_not_an_error() {
    let t = setup();
    let mut text = std::fs::read_to_string(example(1)).unwrap();
    let at = text.len();
    text.push_str(
        "\n[[role]]\nid = \"vpn-watcher\"\nscope = \"company\"\ngrants = [\"vpn:read\"]\n",
    );
    let line = text[..at].lines().count() + 5;
    let path = t.dir.join("vpn-read.toml");
    std::fs::write(&path, &text).unwrap();
    let stdout = ok(&["policy", "check", s(&path)]);
    let want = format!(
        "warning: {}:{line}: role \"vpn-watcher\" grants read on category \"vpn\", which contains \
         vpn service \"lan\" of device \"router-a1\": read cannot be enforced on vpn and grants \
         nothing there\n",
        s(&path)
    );
    assert!(stdout.starts_with(&want), "got: {stdout}\nwant: {want}");
    assert!(stdout.contains("ok: "), "{stdout}");
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    // `edgegate bundle inspect X | head -1`: the reader is gone before the
    // output is written. No `error: Broken pipe`, exit 0.
    let t = setup();
    let bundle = t.build(1, "router-b1");
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let out = Command::new(BIN)
        .args(["bundle", "inspect", s(&bundle)])
        .stdout(std::process::Stdio::from(write))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn zero_lifetimes_are_refused() {
    let t = setup();
    let out = t.dir.join("expired.bundle");
    let err = fails(&[
        "bundle",
        "build",
        &example(1),
        "--device",
        "router-b1",
        "--serial",
        "1",
        "--valid-for",
        "0s",
        "--key",
        s(&t.authority),
        "--out",
        s(&out),
    ]);
    assert_eq!(
        err,
        "error: --valid-for must be longer than 0s: the bundle would expire as it is issued"
    );
    assert!(!out.exists(), "no bundle written");
    let ticket = t.dir.join("expired.ticket");
    let err = fails(&[
        "ticket",
        "issue",
        "--user",
        "bert",
        "--device",
        "router-b1",
        "--client-key",
        &t.authority_pub,
        "--ttl",
        "0s",
        "--key",
        s(&t.authority),
        "--out",
        s(&ticket),
    ]);
    assert_eq!(
        err,
        "error: --ttl must be longer than 0s: the ticket would expire as it is issued"
    );
    assert!(!ticket.exists(), "no ticket written");
}
