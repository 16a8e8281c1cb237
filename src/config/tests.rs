use super::*;

fn key(seed: u8) -> String {
    crate::testkit::public(&crate::testkit::key(seed)).to_string()
}

/// A documented example, every key spelled out (the shipped
/// `systemd/edgegated.toml` is the deploy helper's; this one is pinned here).
fn example() -> String {
    format!(
        r#"# This router's id: bundles and tickets must name it.
device_id = "router-7"
# The device's private key, created (mode 0600) on first start if absent.
device_key = "/var/lib/edgegate/device.key"
# The sled database lives here.
state_dir = "/var/lib/edgegate"
# Authority public keys and how many of them must sign a bundle or ticket.
trusted_keys = ["{k1}", "{k2}"]
threshold = 2
listen_quic = "0.0.0.0:4433"   # UDP
listen_tls = "[::]:4433"       # TCP
control_socket = "/run/edgegate/control.sock"
control_group = "edgegate"     # omit: root (and the daemon's user) only
expiry_grace = "1h"            # keep enforcing an expired bundle this long
log_level = "info,edgegate=debug"

[limits]
handshake_timeout = "10s"
first_frame_timeout = "10s"
idle_timeout = "30m"
max_sessions = 256
max_sessions_per_user = 8
max_streams_per_session = 64
max_handshakes = 64
max_bundle_size = 8388608
stream_buffer = 65536
audit_retention = 100000
"#,
        k1 = key(1),
        k2 = key(2)
    )
}

fn minimal() -> String {
    format!(
        r#"device_id = "router-1"
device_key = "/k"
state_dir = "/s"
trusted_keys = ["{}"]
listen_quic = "127.0.0.1:4433"
listen_tls = "127.0.0.1:4433"
control_socket = "/run/edgegate/control.sock"
"#,
        key(1)
    )
}

fn err(text: &str) -> String {
    Config::from_toml_str(text).unwrap_err().to_string()
}

#[test]
fn example_parses_with_every_key() {
    let c = Config::from_toml_str(&example()).unwrap();
    assert_eq!(c.device_id, "router-7");
    assert_eq!(c.threshold, 2);
    assert_eq!(c.trusted_keys.len(), 2);
    assert_eq!(c.listen_tls, Some("[::]:4433".parse().unwrap()));
    assert_eq!(c.control_group.as_deref(), Some("edgegate"));
    assert_eq!(c.expiry_grace, 3600);
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(1800));
    assert_eq!(c.limits.max_bundle_size, 8 << 20);
    assert_eq!(c.trust().threshold(), 2);
}

#[test]
fn defaults_apply() {
    let c = Config::from_toml_str(&minimal()).unwrap();
    assert_eq!(c.threshold, 1);
    assert_eq!(c.expiry_grace, 0);
    assert_eq!(c.control_group, None);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.limits, Limits::default());
}

#[test]
fn unknown_keys_are_errors_with_a_line() {
    let e = err(&format!("{}bogus = 1\n", minimal()));
    assert!(e.starts_with("<string>:8:"), "{e}");
    assert!(e.contains("bogus"), "{e}");
    let e = err(&format!("{}[limits]\nmax_session = 3\n", minimal()));
    assert!(e.starts_with("<string>:9:"), "{e}");
    assert!(e.contains("max_session"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn semantic_errors_name_the_key_and_line() {
    let text = minimal().replace("127.0.0.1:4433\"\nlisten_tls", "nowhere\"\nlisten_tls");
    assert_eq!(
        err(&text),
        "<string>:5: key `listen_quic`: \"nowhere\" is not an IP:PORT socket address"
    );
    let text = format!("{}threshold = 2\n", minimal());
    let e = err(&text);
    assert!(e.starts_with("<string>:8: key `threshold`: "), "{e}");
    let text = minimal().replace("trusted_keys = [\"", "trusted_keys = [\"x");
    assert!(err(&text).contains("key `trusted_keys[0]`: a public key must look like"));
    let text = format!("{}expiry_grace = \"5 minutes\"\n", minimal());
    assert!(err(&text).starts_with("<string>:8: key `expiry_grace`: invalid duration"));
    let text = format!("{}[limits]\nidle_timeout = \"0s\"\n", minimal());
    assert!(err(&text).contains("key `limits.idle_timeout`: must be longer than 0s"));
    let text = format!("{}[limits]\nmax_sessions = -1\n", minimal());
    assert!(err(&text).contains("key `limits.max_sessions`: must be between"));
    let text = format!("{}[limits]\nmax_bundle_size = 1000000000\n", minimal());
    assert!(err(&text).contains("key `limits.max_bundle_size`"));
    let text = minimal().replace(
        "trusted_keys = [\"",
        &format!("trusted_keys = [\"{}\", \"", key(1)),
    );
    assert!(err(&text).contains("key `trusted_keys[1]`: duplicate key"));
    let long = format!("/{}", "a".repeat(200));
    let text = minimal().replace("/run/edgegate/control.sock", &long);
    assert!(err(&text).contains("key `control_socket`"));
}

#[test]
fn missing_and_mistyped_keys() {
    let text = minimal().replace("device_id = \"router-1\"\n", "");
    assert!(err(&text).contains("device_id"), "{}", err(&text));
    let text = minimal().replace("\"router-1\"", "7");
    let e = err(&text);
    assert!(e.starts_with("<string>:1:"), "{e}");
    assert!(
        e.contains("key `device_id`: invalid type: integer `7`"),
        "{e}"
    );
    // A type error names the key, nested and in arrays too.
    let e = err(&format!("{}threshold = \"one\"\n", minimal()));
    assert!(e.starts_with("<string>:8:"), "{e}");
    assert!(
        e.contains("key `threshold`: invalid type: string \"one\""),
        "{e}"
    );
    let e = err(&format!("{}[limits]\nmax_sessions = \"lots\"\n", minimal()));
    assert!(e.contains("key `limits.max_sessions`: invalid type"), "{e}");
    let e = err(&minimal().replace("trusted_keys = [\"", "trusted_keys = [5, \""));
    assert!(
        e.contains("key `trusted_keys[0]`: invalid type: integer `5`"),
        "{e}"
    );
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgegated.toml");
    std::fs::write(&path, format!("{}threshold = 0\n", minimal())).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:8: key `threshold`", path.display())),
        "{e}"
    );
    let e = Config::load(dir.path().join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.toml: "), "{e}");
}

#[test]
fn a_router_may_listen_on_nothing_and_dial_relays_instead() {
    let text = minimal()
        .replace("listen_quic = \"127.0.0.1:4433\"\n", "")
        .replace("listen_tls = \"127.0.0.1:4433\"\n", "");
    let c = Config::from_toml_str(&text).unwrap();
    assert_eq!((c.listen_quic, c.listen_tls), (None, None));
    assert!(c.relays.is_empty());
    assert_eq!(c.relay_keepalive, Duration::from_secs(25));
    let relayed = format!(
        "{text}enrollment = \"/etc/edgegate/router-1.enroll\"\nrelay_keepalive = \"20s\"\n\
         [[relay]]\naddress = \"relay.example:443\"\nkey = \"{k}\"\n\
         [[relay]]\naddress = \"192.0.2.1:443\"\nkey = \"{k}\"\n",
        k = key(5)
    );
    let c = Config::from_toml_str(&relayed).unwrap();
    assert_eq!(c.relays.len(), 2);
    assert_eq!(c.relays[0].address, "relay.example:443");
    assert_eq!(c.relays[1].key.to_string(), key(5));
    assert_eq!(c.relay_keepalive, Duration::from_secs(20));
    assert_eq!(
        c.enrollment.as_deref(),
        Some(Path::new("/etc/edgegate/router-1.enroll"))
    );
}

#[test]
fn relay_tables_are_checked_key_by_key() {
    let relay = |address: &str, k: &str| {
        format!(
            "{}[[relay]]\naddress = \"{address}\"\nkey = \"{k}\"\n",
            minimal()
        )
    };
    let e = err(&relay("relay.example:443", &key(5)));
    assert!(
        e.contains("key `enrollment`") && e.contains("edgegate device enroll"),
        "{e}"
    );
    let with = |extra: String| extra.replacen("[[relay]]", "enrollment = \"/e\"\n[[relay]]", 1);
    let e = err(&with(relay("relay.example", &key(5))));
    assert!(
        e.contains("key `relay[0].address`") && e.contains("HOST:PORT"),
        "{e}"
    );
    let e = err(&with(relay("relay.example:0", &key(5))));
    assert!(e.contains("key `relay[0].address`"), "{e}");
    let e = err(&with(relay("relay.example:443", "ed25519:nope")));
    assert!(e.contains("key `relay[0].key`"), "{e}");
    let e = err(&with(relay("relay.example:443", &key(5))).replace("\nkey = ", "\npin = "));
    assert!(e.contains("unknown field `pin`"), "{e}");
    assert_eq!(err(&with(relay("r:x", &key(5)))).lines().count(), 1);
}
