//! The use-case fixture end to end: `examples/usecase-2.toml` for device
//! `router-a1`, real backends on the policy's own loopback addresses (HTTP
//! pages, a WebSocket echo, a VNC stand-in echo, a LAN host), and for each
//! user a real `edgegate connect` over QUIC and over TLS: the listed
//! decisions are right, allowed services carry bytes, denied ones give
//! their reason. Keys are role-separated: the configured root signs a key
//! statement, a bundle key the bundle, a ticket key the tickets.

#[path = "tunnel_support/harness.rs"]
mod harness;

use edgegate::policy_file::{compile_for_device, PolicyFile};
use harness::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

const DEVICE_A1: &str = "router-a1";

/// The backends of router-a1's machine network, started once.
fn backends() {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            use edgegate::demo::backends::{echo, http, websocket};
            let a = |s: &str| s.parse::<SocketAddr>().unwrap();
            http(a("127.0.0.18:8080")).await.expect("plc-web backend");
            http(a("127.0.0.17:8080"))
                .await
                .expect("machine-info backend");
            websocket(a("127.0.0.17:8081"))
                .await
                .expect("maintenance backend");
            echo(a("127.0.0.17:5900")).await.expect("vnc stand-in");
            echo(a("127.0.0.20:4840")).await.expect("lan host");
        });
        rt
    });
}

/// What each user gets on router-a1 (DESIGN §2 applied to the fixture).
fn expected(user: &str) -> [&'static str; 5] {
    // Order: lan, hmi-vnc, plc-web, machine-info, maintenance.
    match user {
        "nathany" => [
            "deny lan mfa-required",
            "deny hmi-vnc mfa-required",
            "deny plc-web mfa-required",
            "deny machine-info mfa-required",
            "deny maintenance mfa-required",
        ],
        "henk" => [
            "allow lan manage",
            "allow hmi-vnc manage",
            "allow plc-web manage",
            "allow machine-info read",
            "allow maintenance manage",
        ],
        "lena" => [
            "deny lan no-grant",
            "deny hmi-vnc no-grant",
            "deny plc-web no-grant",
            "allow machine-info read",
            "allow maintenance read",
        ],
        "emmy" => [
            "deny lan no-grant",
            "allow hmi-vnc manage",
            "allow plc-web manage",
            "allow machine-info manage",
            "allow maintenance manage",
        ],
        "eddy" => [
            "deny lan no-grant",
            "allow hmi-vnc manage",
            "deny plc-web no-grant",
            "allow machine-info manage",
            "deny maintenance no-grant",
        ],
        "bert" | "sven" | "carla" => [
            "deny lan no-grant",
            "deny hmi-vnc no-grant",
            "deny plc-web no-grant",
            "deny machine-info no-grant",
            "deny maintenance no-grant",
        ],
        _ => unreachable!(),
    }
}

fn ws_roundtrip(port: u16, expect_echo: bool) {
    let (mut s, head) = ws_upgrade(port, Duration::from_secs(3));
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    // A masked text frame "hi".
    s.write_all(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2])
        .unwrap();
    let mut frame = [0u8; 4];
    if !expect_echo {
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
    }
    let got = s.read_exact(&mut frame);
    if expect_echo {
        got.unwrap();
        assert_eq!(frame, [0x81, 2, b'h', b'i']);
    } else {
        assert!(
            got.is_err(),
            "read level must not pass client frames: {frame:?}"
        );
    }
}

fn exercise(d: &Daemon, user: &str, tls: bool, mfa: bool) {
    let (key, ticket) = d.client_with(&format!("{user}-{tls}-{mfa}"), user, |t| t.mfa = mfa);
    // Forward only what the listing allows (a denied -L would end the client).
    let lines = expected(user);
    let allowed = |svc: &str| {
        mfa || lines
            .iter()
            .any(|l| l.starts_with(&format!("allow {svc} ")))
    };
    let services: Vec<&str> = ["hmi-vnc", "plc-web", "machine-info", "maintenance"]
        .into_iter()
        .filter(|s| allowed(s))
        .collect();
    let mut args = forwards(&services);
    args.extend(["--socks".into(), "0".into()]);
    let mut c = d.connect(&key, &ticket, tls, &args);
    c.ready();
    let socks = c.socks();
    let ports: Vec<(&str, u16)> = services.iter().map(|s| (*s, c.forwarded(s))).collect();
    let listed: Vec<&str> = c.stdout.seen.iter().map(String::as_str).collect();
    if mfa {
        assert!(
            listed[..5].iter().all(|l| l.ends_with("manage")),
            "{user}: {listed:?}"
        );
    } else {
        assert_eq!(&listed[..5], &lines[..], "{user} tls={tls}");
    }
    for &(svc, port) in &ports {
        let level_read = !mfa && lines.iter().any(|l| *l == format!("allow {svc} read"));
        match svc {
            "plc-web" | "machine-info" => {
                assert!(
                    http_get(port, "/").contains("Filling line PLC"),
                    "{user} {svc}"
                );
            }
            "maintenance" => ws_roundtrip(port, !level_read),
            "hmi-vnc" => drop(echo_through(port)),
            _ => unreachable!(),
        }
    }
    // The LAN through SOCKS: allowed users reach 127.0.0.20:4840.
    let lan_allowed = mfa || lines[0].starts_with("allow");
    let mut s = TcpStream::connect(("127.0.0.1", socks)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 20, 0x12, 0xe8])
        .unwrap();
    let mut reply = [0u8; 12];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[3], if lan_allowed { 0 } else { 2 }, "{user} lan");
}

#[test]
fn every_user_of_use_case_2_over_quic_and_tls() {
    backends();
    // Every user of the use case, one after another: sessions of clients
    // that were stopped linger until the daemon notices (dead-peer
    // timeout), so more than the default 4 may be live at once.
    let mut d = start_daemon_for(
        DEVICE_A1,
        "[limits]\nmax_sessions = 64\nmax_sessions_per_user = 8\n",
    );
    // With role-separated keys (docs/trust.md): the configured key is the
    // root, which signs a key statement and nothing else; bundles are the
    // bundle key's, tickets the ticket key's. The other tunnel tests keep
    // the flat configuration (the configured key signs everything).
    let now = now();
    let (root, bundle_key, ticket_key) = (d.authority.clone(), key(20), key(21));
    let roles = [&root, &bundle_key, &ticket_key, &key(22)];
    let statement = edgegate::testkit::key_statement(1, now - 60, roles);
    let push = edgegate::testkit::push_statement(&statement, &[&root], None);
    let out = d.push(&d.write("keys.statement", &push), false);
    assert!(out.status.success(), "{out:?}");
    // `client_with` signs tickets with `d.authority`.
    d.authority = ticket_key;
    let file = PolicyFile::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/usecase-2.toml"
    )))
    .unwrap();
    let b = compile_for_device(&file, DEVICE_A1, 1, now - 60, now + 86_400).unwrap();
    let f = d.write(
        "usecase-2.bundle",
        &edgegate_proto::bundle::seal(&b, &[&bundle_key]),
    );
    assert!(d.push(&f, false).status.success());
    for user in [
        "nathany", "henk", "lena", "emmy", "eddy", "bert", "sven", "carla",
    ] {
        for tls in [false, true] {
            exercise(&d, user, tls, false);
        }
    }
    exercise(&d, "nathany", false, true);
}
