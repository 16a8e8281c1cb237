//! `edgegated --demo`: the whole product on loopback in one command. Makes
//! a temporary state directory, fresh authority/device/client keys, a
//! bundle of the built-in policy (`demo_policy.toml`), demo backends, the
//! daemon on ephemeral 127.0.0.1 ports, tickets for an allowed and a
//! restricted user, and prints ready-to-paste commands. Runs until Ctrl-C.

pub mod backends;
mod relay;

use crate::config::Config;
use crate::daemon;
use crate::keyfile;
use crate::policy_file::{compile_for_device, PolicyFile};
use anyhow::{anyhow, Context};
use ed25519_dalek::SigningKey;
use edgegate_proto::control::PushResult;
use edgegate_proto::ticket::{self, Ticket};
use edgegate_proto::{bundle, PublicKey};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const POLICY: &str = include_str!("demo_policy.toml");
const DEVICE: &str = "demo-router";

struct Backends {
    http: SocketAddr,
    ws: SocketAddr,
    vnc: SocketAddr,
}

fn policy_text(b: &Backends, henk_inactive: bool) -> String {
    let text = POLICY
        .replace("{HTTP}", &b.http.to_string())
        .replace("{WS}", &b.ws.to_string())
        .replace("{VNC}", &b.vnc.to_string())
        .replace("{HTTP_PORT}", &b.http.port().to_string())
        .replace("{VNC_PORT}", &b.vnc.port().to_string());
    if henk_inactive {
        text.replace(
            "roles = [\"engineer\"]",
            "status = \"inactive\"\nroles = [\"engineer\"]",
        )
    } else {
        text
    }
}

fn seal_bundle(
    text: &str,
    serial: u64,
    authority: &SigningKey,
    now: u64,
) -> anyhow::Result<Vec<u8>> {
    let file = PolicyFile::parse(text, "demo_policy.toml").map_err(|e| anyhow!("{e}"))?;
    let b = compile_for_device(&file, DEVICE, serial, now - 60, now + 30 * 86_400)
        .map_err(|e| anyhow!("{e:?}"))?;
    Ok(bundle::seal(&b, &[authority]))
}

fn client(
    dir: &Path,
    user: &str,
    authority: &SigningKey,
    now: u64,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let key_path = dir.join(format!("{user}.key"));
    let key = keyfile::generate(&key_path)?;
    let t = Ticket {
        id: rand::random(),
        user: user.to_string(),
        device: DEVICE.to_string(),
        client_key: PublicKey::from(key.verifying_key()),
        issued_at: now,
        expires_at: now + 8 * 3600,
        auth_time: now,
        mfa: false,
    };
    let ticket_path = dir.join(format!("{user}.ticket"));
    std::fs::write(&ticket_path, ticket::seal(&t, &[authority]))?;
    Ok((key_path, ticket_path))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The `edgegate` built beside this `edgegated`, by absolute path, so the
/// printed commands run as printed whatever the reader's `PATH` holds.
/// `cargo run --bin edgegated` builds only the daemon: then say so, once.
fn edgegate_command() -> String {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("edgegated"));
    let sibling = exe.with_file_name("edgegate");
    if !sibling.exists() {
        eprintln!(
            "warning: no edgegate beside {}: build it (cargo build --release --locked) before running the commands below",
            exe.display()
        );
    }
    shell_word(&sibling.display().to_string())
}

/// `text` as one shell word: as it is when it needs no quoting, else in
/// single quotes.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:=,@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// A Python 3 one-liner (Debian's `python3`) that opens a WebSocket on
/// `port`, sends `hello` and prints the answer's status line and the echo.
fn websocket_hello(port: u16) -> String {
    format!(
        r#"python3 -c 'import socket;s=socket.create_connection(("127.0.0.1",{port}));s.sendall(b"GET / HTTP/1.1\r\nHost: hmi\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85\0\0\0\0hello");f=s.makefile("rb");print(f.readline().decode().strip());any(l==b"\r\n" for l in iter(f.readline,b""));print(f.read(7)[2:].decode())'"#
    )
}

/// Run the demo until Ctrl-C.
pub async fn run() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("edgegate-demo-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = demo(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn demo(dir: &Path) -> anyhow::Result<()> {
    let now = crate::clock::Clock::system().wall();
    let authority = keyfile::generate(&dir.join("authority.key"))?;
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let b = Backends {
        http: backends::http(any).await?,
        ws: backends::websocket(any).await?,
        vnc: backends::echo(any).await?,
    };
    let auth = PublicKey::from(authority.verifying_key());
    let relay = relay::start(dir, &auth).unwrap_or_else(|e| {
        eprintln!("warning: the demo relay: {e:#}; the demo goes on without it");
        None
    });
    let device = keyfile::generate(&dir.join("device.key"))?;
    let uplink = match &relay {
        Some(r) => {
            let device_key = PublicKey::from(device.verifying_key());
            let enroll = relay::enroll(dir, DEVICE, device_key, &authority, now)?;
            format!(
                "enrollment = \"{}\"\n[[relay]]\naddress = \"{}\"\nkey = \"{}\"\n",
                enroll.display(),
                r.address,
                r.key
            )
        }
        None => String::new(),
    };
    let config = Config::from_toml_str(&format!(
        r#"device_id = "{DEVICE}"
device_key = "{dir}/device.key"
state_dir = "{dir}/state"
trusted_keys = ["{auth}"]
threshold = 1
listen_quic = "127.0.0.1:0"
listen_tls = "127.0.0.1:0"
control_socket = "{dir}/control.sock"
expiry_grace = "0s"
{uplink}"#,
        dir = dir.display(),
    ))
    .map_err(|e| anyhow!("demo config: {e}"))?;
    let running = daemon::start(config).await?;
    let b1 = seal_bundle(&policy_text(&b, false), 1, &authority, now)?;
    std::fs::write(dir.join("bundle-1.bin"), &b1)?;
    match running.gateway.push_bundle(b1).await {
        PushResult::Accepted { .. } => {}
        other => return Err(anyhow!("demo bundle refused: {other:?}")),
    }
    let b2 = seal_bundle(&policy_text(&b, true), 2, &authority, now)?;
    std::fs::write(dir.join("bundle-2-henk-inactive.bin"), &b2)?;
    let henk = client(dir, "henk", &authority, now)?;
    let bert = client(dir, "bert", &authority, now)?;
    let sven = client(dir, "sven", &authority, now)?;
    let relay = match relay {
        Some(r) => match relay::registered(&r, DEVICE).await {
            Ok(()) => Some(r),
            Err(e) => {
                eprintln!("warning: {e:#}; the demo goes on without the relay");
                None
            }
        },
        None => None,
    };
    let stop = daemon::terminated();
    let people = People {
        henk: &henk,
        bert: &bert,
        sven: &sven,
    };
    print!(
        "{}",
        instructions(dir, &running, relay.as_ref(), &b, &people)
    );
    stop.await;
    println!("stopping the demo");
    running.shutdown().await;
    drop(relay);
    Ok(())
}

/// The demo's engineers: each a key file and a ticket file.
struct People<'a> {
    henk: &'a (PathBuf, PathBuf),
    bert: &'a (PathBuf, PathBuf),
    sven: &'a (PathBuf, PathBuf),
}

fn instructions(
    dir: &Path,
    running: &daemon::Running,
    relay: Option<&relay::DemoRelay>,
    b: &Backends,
    people: &People<'_>,
) -> String {
    let (henk, bert, sven) = (people.henk, people.bert, people.sven);
    let eg = edgegate_command();
    let path = |p: &Path| shell_word(&p.display().to_string());
    let key = running.gateway.identity().public();
    let control = path(&running.control);
    let (quic, tls) = (
        running.quic.expect("the demo listens for QUIC"),
        running.tls.expect("the demo listens for TLS"),
    );
    let (web, ws, vnc, socks, bert_web, sven_vnc) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let base = |who: &(PathBuf, PathBuf)| {
        format!(
            "{eg} connect --gateway {} --gateway-key {key} --identity {} --ticket {}",
            quic,
            path(&who.0),
            path(&who.1)
        )
    };
    // Every indented line that is not a `->` result is a command that runs
    // as printed (tests/demo.rs runs them through `sh`); remarks follow `#`.
    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line(format!(
        "edgegate demo: device {DEVICE}, state in {}",
        dir.display()
    ));
    line(format!(
        "  daemon: QUIC udp/{}  TLS tcp/{}  control {}",
        quic,
        tls,
        running.control.display()
    ));
    line(format!("  device key {key}"));
    line(format!(
        "  machine network: PLC page http://{}  WebSocket echo ws://{}  VNC stand-in (TCP echo) {}",
        b.http, b.ws, b.vnc
    ));
    line(String::new());
    line("Henk (engineer: vpn, vnc, http, maintenance) -- in another terminal:".into());
    line(format!(
        "  {} -L {web}=plc-web -L {ws}=maintenance -L {vnc}=hmi-vnc --socks {socks}",
        base(henk)
    ));
    line("then:".into());
    line(format!("  curl http://127.0.0.1:{web}/"));
    line(format!(
        "  curl --socks5 127.0.0.1:{socks} http://{}/   # through the vpn service 'lan'",
        b.http
    ));
    line(format!(
        "  {}   # a WebSocket: prints the 101 and the echoed hello",
        websocket_hello(ws)
    ));
    line(format!(
        "  curl -N telnet://127.0.0.1:{vnc}   # the VNC stand-in echoes each line you type; Ctrl-C ends"
    ));
    line(format!(
        "  (add --tls and use --gateway {} for the TCP fallback)",
        tls
    ));
    line(String::new());
    line("Bert (customer operator: read-only VNC only) is denied the PLC page:".into());
    line(format!("  {} -L {bert_web}=plc-web", base(bert)));
    line("  -> denied: plc-web: no-grant".into());
    line(String::new());
    line("Sven (FieldService GmbH, service technician) needs on-site consent for the HMI:".into());
    line(format!("  {} -L {sven_vnc}=hmi-vnc", base(sven)));
    line("  -> denied: hmi-vnc: site-consent-required; then, on the router:".into());
    line(format!(
        "  {eg} consent grant --for 1h --socket {control}   # then run Sven's command again"
    ));
    line(format!(
        "  {eg} consent revoke --socket {control}   # cuts his stream at once"
    ));
    line(String::new());
    if let Some(r) = relay {
        let (rweb, rsocks) = (free_port(), free_port());
        line(
            "Through the relay, Henk's command again (the router dialed out to it: no route to it needed):"
                .into(),
        );
        line(format!(
            "  {eg} connect --relay {} --relay-key {} --gateway-key {key} --identity {} --ticket {} -L {rweb}=plc-web --socks {rsocks}",
            r.address,
            r.key,
            path(&henk.0),
            path(&henk.1)
        ));
        line(format!("  curl http://127.0.0.1:{rweb}/"));
        line(format!(
            "  {eg} relay status --socket {}   # the relay's side: the router, its sessions, bytes",
            path(&r.control)
        ));
        line(String::new());
    }
    line("Revoke Henk while his tunnel is open (his streams close with user-inactive):".into());
    line(format!(
        "  {eg} bundle push {} --gateway {} --gateway-key {key}",
        path(&dir.join("bundle-2-henk-inactive.bin")),
        quic
    ));
    line(String::new());
    line("On the router (also: sessions, audit, consent grant):".into());
    line(format!("  {eg} status --socket {control}"));
    line(format!(
        "Ctrl-C stops the demo and removes {}.",
        dir.display()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn shell_words_quote_only_what_needs_it() {
        assert_eq!(
            shell_word("/tmp/edgegate-demo-1/henk.key"),
            "/tmp/edgegate-demo-1/henk.key"
        );
        assert_eq!(shell_word("/home/a b/edgegate"), "'/home/a b/edgegate'");
        assert_eq!(shell_word("/it's"), r"'/it'\''s'");
    }
}
