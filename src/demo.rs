//! `edgegated --demo`: the whole product on loopback in one command. Makes
//! a temporary state directory, fresh authority/device/client keys, a
//! bundle of the built-in policy (`demo_policy.toml`), demo backends, the
//! daemon on ephemeral 127.0.0.1 ports, tickets for an allowed and a
//! restricted user, and prints ready-to-paste commands. Runs until Ctrl-C.

pub mod backends;

use crate::config::Config;
use crate::daemon;
use crate::keyfile;
use crate::policy_file::{compile_for_device, PolicyFile};
use anyhow::{anyhow, Context};
use ed25519_dalek::SigningKey;
use edgegate_proto::control::PushResult;
use edgegate_proto::ticket::{self, Ticket};
use edgegate_proto::{bundle, PublicKey};
use std::fmt::Write as _;
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

fn edgegate_command() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("edgegate")))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "edgegate".to_string())
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
    let now = crate::gateway::wall_clock();
    let authority = keyfile::generate(&dir.join("authority.key"))?;
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let b = Backends {
        http: backends::http(any).await?,
        ws: backends::websocket(any).await?,
        vnc: backends::echo(any).await?,
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
"#,
        dir = dir.display(),
        auth = PublicKey::from(authority.verifying_key()),
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
    let stop = daemon::terminated();
    print!("{}", instructions(dir, &running, &b, &henk, &bert, &sven));
    stop.await;
    println!("stopping the demo");
    running.shutdown().await;
    Ok(())
}

fn instructions(
    dir: &Path,
    running: &daemon::Running,
    b: &Backends,
    henk: &(PathBuf, PathBuf),
    bert: &(PathBuf, PathBuf),
    sven: &(PathBuf, PathBuf),
) -> String {
    let eg = edgegate_command();
    let key = running.gateway.identity().public();
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
            running.quic,
            who.0.display(),
            who.1.display()
        )
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "edgegate demo: device {DEVICE}, state in {}",
        dir.display()
    );
    let _ = writeln!(
        s,
        "  daemon: QUIC udp/{}  TLS tcp/{}  control {}",
        running.quic,
        running.tls,
        running.control.display()
    );
    let _ = writeln!(s, "  device key {key}");
    let _ = writeln!(
        s,
        "  machine network: PLC page http://{}  WebSocket echo ws://{}  VNC stand-in (TCP echo) {}",
        b.http, b.ws, b.vnc
    );
    let _ = writeln!(
        s,
        "\nHenk (engineer: vpn, vnc, http, maintenance) -- in another terminal:"
    );
    let _ = writeln!(
        s,
        "  {} -L {web}=plc-web -L {ws}=maintenance -L {vnc}=hmi-vnc --socks {socks}",
        base(henk)
    );
    let _ = writeln!(s, "then:");
    let _ = writeln!(s, "  curl http://127.0.0.1:{web}/");
    let _ = writeln!(
        s,
        "  curl --socks5 127.0.0.1:{socks} http://{}/      # through the vpn service 'lan'",
        b.http
    );
    let _ = writeln!(
        s,
        "  websocat ws://127.0.0.1:{ws}/                 # any WebSocket client"
    );
    let _ = writeln!(
        s,
        "  nc 127.0.0.1 {vnc}                              # the VNC stand-in echoes"
    );
    let _ = writeln!(
        s,
        "  (add --tls and use --gateway {} for the TCP fallback)",
        running.tls
    );
    let _ = writeln!(
        s,
        "\nBert (customer operator: read-only VNC only) is denied the PLC page:"
    );
    let _ = writeln!(s, "  {} -L {bert_web}=plc-web", base(bert));
    let _ = writeln!(s, "  -> denied: plc-web: no-grant");
    let _ = writeln!(
        s,
        "\nSven (FieldService GmbH, service technician) needs on-site consent for the HMI:"
    );
    let _ = writeln!(s, "  {} -L {sven_vnc}=hmi-vnc", base(sven));
    let _ = writeln!(
        s,
        "  -> denied: hmi-vnc: site-consent-required; then, on the router:"
    );
    let _ = writeln!(
        s,
        "  {eg} consent grant --for 1h --socket {}   (and run Sven's command again;",
        running.control.display()
    );
    let _ = writeln!(s, "  `consent revoke` cuts his stream at once)");
    let _ = writeln!(
        s,
        "\nRevoke Henk while his tunnel is open (his streams close with user-inactive):"
    );
    let _ = writeln!(
        s,
        "  {eg} bundle push {} --gateway {} --gateway-key {key}",
        dir.join("bundle-2-henk-inactive.bin").display(),
        running.quic
    );
    let _ = writeln!(
        s,
        "\nOn the router: {eg} status --socket {}   (also: sessions, audit, consent grant)",
        running.control.display()
    );
    let _ = writeln!(s, "Ctrl-C stops the demo and removes {}.", dir.display());
    s
}
