use super::*;
use edgegate_proto::bundle::{Scope, ServiceKind, Status, Target};

const GOOD: &str = r#"
[company]
id = "acme"
name = "ACME Machines"

[[organization]]
id = "partner-a"
name = "Partner A"

[[category]]
id = "vnc"
name = "VNC access"

[[category]]
id = "vpn"

[[group]]
id = "partner-a"
type = "partner"

[[group]]
id = "customer-a"
type = "customer"
parent = "partner-a"
status = "inactive"

[[role]]
id = "engineer"
scope = "company"
grants = ["vpn", "vnc:read"]
mfa = true

[[role]]
id = "operator"
scope = "group"
grants = ["vnc"]
site_consent = true

[[user]]
id = "henk"
roles = ["engineer"]

[[user]]
id = "bert"
org = "customer-b"
status = "inactive"
memberships = [{ group = "customer-a", role = "operator" }]
logout_period = "22h"

[[device]]
id = "router-1"
groups = ["customer-a"]
services = [
  { id = "hmi", kind = "vnc", target = "127.0.0.17:5900", category = "vnc" },
  { id = "lan", kind = "vpn", networks = ["127.0.0.16/28", "127.0.0.99"], ports = [502, "8000-8100"], category = "vpn" },
]

[[test]]
user = "bert"
device = "router-1"
service = "hmi"
expect = "deny:user-inactive"

[[test]]
user = "henk"
device = "router-1"
service = "lan"
expect = "allow:manage"
mfa = true
destination = "127.0.0.18:502"
after = "13h"

[[test]]
user = "ghost"
device = "router-1"
service = "hmi"
expect = "deny:unknown-user"
at = "2026-11-25T08:00:00Z"
"#;

fn parse(text: &str) -> Result<PolicyFile, PolicyFileError> {
    PolicyFile::parse(text, "x.toml")
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

/// GOOD with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    GOOD.replacen(from, to, 1)
}

#[test]
fn good_file_parses_with_defaults() {
    let p = parse(GOOD).unwrap();
    assert_eq!(p.company.name, "ACME Machines");
    assert_eq!(p.categories[1].name, "vpn");
    assert_eq!(p.groups[1].parent.as_deref(), Some("partner-a"));
    assert_eq!(p.groups[1].status, Status::Inactive);
    assert_eq!(p.groups[0].status, Status::Active);
    let eng = &p.roles[0];
    assert_eq!(eng.scope, Scope::Company);
    assert!(eng.mfa && !eng.site_consent);
    assert_eq!(eng.grants[0].level, Level::Manage);
    assert_eq!(eng.grants[1].level, Level::Read);
    assert_eq!(p.roles[1].scope, Scope::Group);
    let henk = &p.users[0];
    assert_eq!(henk.org, "acme");
    assert_eq!(henk.logout_period, DEFAULT_LOGOUT_PERIOD);
    assert_eq!(p.users[1].logout_period, 22 * 3600);
    let orgs: Vec<_> = p.organizations.iter().map(|o| (&*o.id, &*o.name)).collect();
    assert_eq!(
        orgs,
        [
            ("partner-a", "Partner A"),
            ("acme", "ACME Machines"),
            ("customer-b", "customer-b")
        ]
    );
    let svc = &p.devices[0].services;
    assert_eq!(svc[0].kind, ServiceKind::Vnc);
    assert_eq!(
        svc[0].target,
        Target::Endpoint {
            host: "127.0.0.17".into(),
            port: 5900
        }
    );
    let Target::Networks { networks, ports } = &svc[1].target else {
        panic!("vpn target")
    };
    assert_eq!(networks.len(), 2);
    assert_eq!(networks[1].prefix, 32);
    assert_eq!(
        ports.iter().map(|r| (r.start, r.end)).collect::<Vec<_>>(),
        [(502, 502), (8000, 8100)]
    );
    assert_eq!(p.tests.len(), 3);
    assert_eq!(p.tests[0].expect, Expect::Deny(DenyReason::UserInactive));
    assert_eq!(p.tests[0].when, TestTime::AfterAuth(DEFAULT_TEST_AFTER));
    assert_eq!(p.tests[1].when, TestTime::AfterAuth(13 * 3600));
    assert_eq!(
        p.tests[1].destination,
        Some("127.0.0.18:502".parse().unwrap())
    );
    assert_eq!(p.tests[2].when, TestTime::At(1_795_593_600));
    assert_eq!(
        GOOD.lines().nth(p.tests[1].line - 1),
        Some("user = \"henk\"")
    );
}

#[test]
fn compiles_one_device() {
    let p = parse(GOOD).unwrap();
    let b = compile_for_device(&p, "router-1", 7, 100, 200).unwrap();
    assert_eq!((b.device_id.as_str(), b.serial), ("router-1", 7));
    assert_eq!((b.issued_at, b.not_after), (100, 200));
    assert_eq!(b.device.services.len(), 2);
    assert_eq!(b.users.len(), 2);
    let err = compile_for_device(&p, "router-9", 7, 100, 200).unwrap_err();
    assert_eq!(
        err.to_string(),
        "x.toml: no device \"router-9\" (devices: router-1)"
    );
}

#[test]
fn errors_name_the_line() {
    let text = edit(
        "memberships = [{ group = \"customer-a\", role = \"operator\" }]",
        "memberships = [{ group = \"customer-a\", role = \"nope\" }]",
    );
    let line = text.lines().position(|l| l.contains("\"nope\"")).unwrap() + 1;
    assert_eq!(
        error(&text),
        format!("x.toml:{line}: user \"bert\": membership role \"nope\" is not defined")
    );
}

#[test]
fn unknown_key_is_refused_with_its_line() {
    let text = edit("mfa = true\n", "mfa = true\ncolour = \"red\"\n");
    let line = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    let err = error(&text);
    assert!(
        err.starts_with(&format!(
            "x.toml:{line}: key `role[0].colour`: unknown field `colour`"
        )),
        "{err}"
    );
    assert!(!err.contains('\n'));
}

#[test]
fn syntax_error_is_one_line() {
    let err = error("[company\nid = 1");
    assert!(err.starts_with("x.toml:1: "), "{err}");
    assert!(!err.contains('\n'));
}

#[test]
fn each_validation_is_enforced() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "id = \"vpn\"",
            "id = \"vnc\"",
            "duplicate category id \"vnc\"",
        ),
        (
            "id = \"bert\"",
            "id = \"henk\"",
            "duplicate user id \"henk\"",
        ),
        (
            "parent = \"partner-a\"",
            "parent = \"nowhere\"",
            "parent group \"nowhere\" is not defined",
        ),
        (
            "type = \"partner\"",
            "type = \"partner\"\nparent = \"customer-a\"",
            "parent chain forms a cycle (partner-a > customer-a > partner-a)",
        ),
        (
            "roles = [\"engineer\"]",
            "roles = [\"operator\"]",
            "role \"operator\" is group-specific",
        ),
        (
            "role = \"operator\"",
            "role = \"engineer\"",
            "membership role \"engineer\" is company-wide",
        ),
        (
            "group = \"customer-a\", role",
            "group = \"customer-z\", role",
            "membership group \"customer-z\" is not defined",
        ),
        (
            "groups = [\"customer-a\"]",
            "groups = [\"customer-q\"]",
            "device \"router-1\": group \"customer-q\" is not defined",
        ),
        (
            "\"vnc:read\"",
            "\"vnc:write\"",
            "grant \"vnc:write\" must be CATEGORY",
        ),
        (
            "\"vnc:read\"",
            "\"hmi:read\"",
            "grant category \"hmi\" is not defined",
        ),
        (
            "scope = \"company\"",
            "scope = \"world\"",
            "scope \"world\" must be company or group",
        ),
        (
            "status = \"inactive\"\nmemberships",
            "status = \"gone\"\nmemberships",
            "user \"bert\": status \"gone\" must be active or inactive",
        ),
        (
            "logout_period = \"22h\"",
            "logout_period = \"1 day\"",
            "invalid duration \"1 day\"",
        ),
        (
            "logout_period = \"22h\"",
            "logout_period = \"0s\"",
            "logout_period must be longer than 0s",
        ),
        (
            "kind = \"vnc\"",
            "kind = \"rdp\"",
            "kind \"rdp\" must be vpn, vnc, http or websocket",
        ),
        (
            "target = \"127.0.0.17:5900\"",
            "target = \"127.0.0.17\"",
            "target \"127.0.0.17\" must be host:port",
        ),
        (
            "target = \"127.0.0.17:5900\"",
            "networks = [\"10.0.0.0/8\"]",
            "needs target = \"host:port\" (and 3 more",
        ),
        (
            "networks = [\"127.0.0.16/28\", \"127.0.0.99\"]",
            "target = \"127.0.0.1:1\", networks = [\"127.0.0.16/28\"]",
            "a vpn service has networks, not a target",
        ),
        (
            "\"127.0.0.99\"",
            "\"127.0.0.0/33\"",
            "network \"127.0.0.0/33\" is not an address or CIDR",
        ),
        ("\"8000-8100\"", "\"8100-8000\"", "ports must be numbers"),
        (
            "category = \"vnc\" }",
            "category = \"hmi\" }",
            "category \"hmi\" is not defined",
        ),
        (
            "id = \"lan\"",
            "id = \"hmi\"",
            "duplicate device \"router-1\": service id \"hmi\"",
        ),
        (
            "expect = \"deny:user-inactive\"",
            "expect = \"deny:bored\"",
            "must be allow, allow:read",
        ),
        (
            "expect = \"deny:user-inactive\"",
            "expect = \"allow:admin\"",
            "must be allow, allow:read",
        ),
        (
            "expect = \"deny:unknown-user\"",
            "expect = \"allow\"",
            "user \"ghost\" is not defined",
        ),
        (
            "service = \"hmi\"\nexpect = \"deny:user",
            "service = \"web\"\nexpect = \"deny:user",
            "has no service \"web\"",
        ),
        (
            "device = \"router-1\"\nservice = \"lan\"",
            "device = \"router-2\"\nservice = \"lan\"",
            "device \"router-2\" is not defined",
        ),
        (
            "destination = \"127.0.0.18:502\"",
            "destination = \"plc:502\"",
            "destination \"plc:502\" must be IP:PORT",
        ),
        (
            "at = \"2026-11-25T08:00:00Z\"",
            "at = \"noon\"",
            "invalid time \"noon\"",
        ),
        (
            "after = \"13h\"",
            "after = \"13h\"\nat = \"2026-11-25T08:00:00Z\"",
            "give at or after, not both",
        ),
        (
            "id = \"henk\"",
            "id = \"henk van dam\"",
            "user id \"henk van dam\" must be",
        ),
        (
            "id = \"acme\"",
            "id = \"acme\"\nrevoked = []",
            "unknown field `revoked`",
        ),
    ];
    for (from, to, want) in cases {
        let text = edit(from, to);
        let err = error(&text);
        assert!(err.contains(want), "{from} -> {to}: {err}");
        assert!(err.starts_with("x.toml:"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn several_errors_report_the_first_and_count() {
    let text = edit("roles = [\"engineer\"]", "roles = [\"x\", \"y\"]");
    let err = error(&text);
    assert!(
        err.contains("role \"x\" is not defined (and 1 more error)"),
        "{err}"
    );
}

#[test]
fn revoked_tickets_are_hex() {
    let text = format!("revoked_tickets = [\"{}\"]\n{GOOD}", "0f".repeat(16));
    assert_eq!(parse(&text).unwrap().revoked_tickets, vec![[0x0f; 16]]);
    let text = format!("revoked_tickets = [\"abc\"]\n{GOOD}");
    assert!(error(&text).starts_with("x.toml:1: revoked ticket \"abc\" must be 32 hex digits"));
}

#[test]
fn expect_round_trips() {
    for text in [
        "allow",
        "allow:read",
        "allow:manage",
        "deny:no-grant",
        "deny:mfa-required",
    ] {
        assert_eq!(Expect::parse(text).unwrap().to_string(), text);
    }
    assert!(Expect::Allow(None).matches(Ok(Level::Read)));
    assert!(!Expect::Allow(Some(Level::Manage)).matches(Ok(Level::Read)));
    assert!(Expect::Deny(DenyReason::NoGrant).matches(Err(DenyReason::NoGrant)));
    assert!(!Expect::Deny(DenyReason::NoGrant).matches(Ok(Level::Read)));
}

fn fixture(n: u8) -> PolicyFile {
    let path = format!("{}/examples/usecase-{n}.toml", env!("CARGO_MANIFEST_DIR"));
    PolicyFile::load(Path::new(&path)).unwrap()
}

#[test]
fn fixtures_cover_every_user_service_and_device() {
    for n in 1..=3 {
        let p = fixture(n);
        assert!(p.devices.len() >= 2, "usecase-{n}: at least two devices");
        let kinds: std::collections::HashSet<_> = p
            .devices
            .iter()
            .flat_map(|d| d.services.iter().map(|s| s.kind))
            .collect();
        assert_eq!(kinds.len(), 4, "usecase-{n}: vpn, vnc, http and websocket");
        for u in &p.users {
            for d in &p.devices {
                for s in &d.services {
                    let covered = p
                        .tests
                        .iter()
                        .any(|t| t.user == u.id && t.device == d.id && t.service == s.id);
                    assert!(
                        covered,
                        "usecase-{n}: no test for {}/{}/{}",
                        u.id, d.id, s.id
                    );
                }
            }
        }
    }
}

#[test]
fn fixture_targets_are_loopback() {
    for n in 1..=3 {
        for d in &fixture(n).devices {
            for s in &d.services {
                match &s.target {
                    Target::Endpoint { host, .. } => {
                        assert!(host.starts_with("127.0.0."), "{}/{}", d.id, s.id)
                    }
                    Target::Networks { networks, .. } => {
                        assert!(networks.iter().all(|n| n.addr.is_loopback()), "{}", d.id)
                    }
                }
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any edit of a real file is either accepted or refused with one line;
    /// the parser never panics.
    #[test]
    fn mangled_files_never_panic(pos in 0usize..10_000, len in 0usize..40, junk in ".{0,12}") {
        let text = std::fs::read_to_string(format!(
            "{}/examples/usecase-2.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let mut start = pos % text.len();
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + len).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mangled = format!("{}{junk}{}", &text[..start], &text[end..]);
        if let Err(e) = PolicyFile::parse(&mangled, "m.toml") {
            let line = e.to_string();
            proptest::prop_assert!(!line.contains('\n'), "{}", line);
            proptest::prop_assert!(line.starts_with("m.toml:"), "{}", line);
        }
    }
}

#[test]
fn read_grant_on_a_vpn_category_is_a_warning() {
    let p = PolicyFile::parse(GOOD, "p.toml").unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let text = GOOD.replace(
        r#"grants = ["vpn", "vnc:read"]"#,
        r#"grants = ["vpn:read", "vnc:read"]"#,
    );
    let p = PolicyFile::parse(&text, "p.toml").unwrap();
    let line = line_of(&text, text.find("\"vpn:read\"").unwrap());
    assert_eq!(
        p.warnings,
        [format!(
            "p.toml:{line}: role \"engineer\" grants read on category \"vpn\", which contains \
             vpn service \"lan\" of device \"router-1\": read cannot be enforced on vpn and \
             grants nothing there"
        )]
    );
}

#[test]
fn fixtures_have_no_unenforceable_read_grants() {
    for n in 1..=3 {
        assert_eq!(fixture(n).warnings, Vec::<String>::new(), "usecase-{n}");
    }
}

#[test]
fn type_errors_name_the_key() {
    let err = error(&edit("mfa = true", "mfa = \"yes\""));
    assert!(
        err.contains("key `role[0].mfa`: invalid type: string \"yes\""),
        "{err}"
    );
    let err = error(&edit(
        "memberships = [{ group = \"customer-a\", role = \"operator\" }]",
        "memberships = [{ group = 7, role = \"operator\" }]",
    ));
    assert!(err.contains("key `user[1].memberships[0].group`"), "{err}");
    assert!(
        err.starts_with(&format!("x.toml:{}: ", line_of_text(GOOD, "memberships"))),
        "{err}"
    );
}

fn line_of_text(text: &str, needle: &str) -> usize {
    text[..text.find(needle).unwrap()].matches('\n').count() + 1
}
