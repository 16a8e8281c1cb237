//! Assembling and running `edgegated`: device key, store, compiled bundle,
//! gateway, QUIC and TLS listeners, control socket; then serve until
//! SIGTERM/SIGINT and drain.
//!
//! The config is validated (by `Config::load`) before anything here binds.
//! This module owns the order of start-up and shutdown, nothing else.

use crate::config::Config;
use crate::control::ControlServer;
use crate::gateway::{ControlView, Gateway};
use crate::keyfile;
use crate::policy::PolicyIndex;
use crate::sdnotify;
use crate::store::Store;
use crate::tlsid::Identity;
use anyhow::{anyhow, Context};
use ed25519_dalek::SigningKey;
use edgegate_proto::audit::AuditEvent;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long shutdown waits for sessions to end after asking them to.
const DRAIN: Duration = Duration::from_secs(5);

/// A started daemon.
pub struct Running {
    /// The shared state.
    pub gateway: Arc<Gateway>,
    /// Where QUIC listens (UDP), if it does.
    pub quic: Option<SocketAddr>,
    /// Where TLS listens (TCP), if it does.
    pub tls: Option<SocketAddr>,
    /// The control socket.
    pub control: PathBuf,
    tasks: Vec<JoinHandle<()>>,
}

/// Load the device key, creating it (mode 0600) if absent.
pub fn device_key(path: &Path) -> anyhow::Result<SigningKey> {
    if path.exists() {
        return keyfile::load_signing_key(path).map_err(|e| anyhow!("device_key: {e}"));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::store::create_private_dir(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let key = keyfile::generate(path).with_context(|| "creating device_key")?;
    tracing::info!(path = %path.display(), "created device key");
    Ok(key)
}

/// Bind the QUIC (UDP) and TLS (TCP) ports the config names; an error is
/// one line naming the config key, the address and the listener.
async fn bind_listeners(
    config: &Config,
) -> anyhow::Result<(Option<std::net::UdpSocket>, Option<TcpListener>)> {
    let udp = match config.listen_quic {
        Some(quic) => Some(
            std::net::UdpSocket::bind(quic)
                .map_err(|e| anyhow!("listen_quic: cannot listen for QUIC on UDP {quic}: {e}"))?,
        ),
        None => None,
    };
    let tcp = match config.listen_tls {
        Some(tls) => Some(
            TcpListener::bind(tls)
                .await
                .map_err(|e| anyhow!("listen_tls: cannot listen for TLS on TCP {tls}: {e}"))?,
        ),
        None => None,
    };
    Ok((udp, tcp))
}

/// The enrollment file, read and checked against this router before any
/// relay sees it: it must name this device and this device's key.
fn enrollment(config: &Config, device: &crate::PublicKey) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(path) = &config.enrollment else {
        return Ok(None);
    };
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| anyhow!("enrollment: {shown}: {e}"))?;
    let (body, _) = edgegate_proto::envelope::parse(edgegate_proto::Purpose::Enroll, &bytes)
        .map_err(|e| anyhow!("enrollment: {shown}: {e}"))?;
    let e = edgegate_proto::enrollment::decode_body(&body)
        .map_err(|e| anyhow!("enrollment: {shown}: {e}"))?;
    if e.device_id != config.device_id {
        anyhow::bail!(
            "enrollment: {shown} enrolls device {:?}, this router is {:?}",
            e.device_id,
            config.device_id
        );
    }
    if e.device_key != *device {
        anyhow::bail!(
            "enrollment: {shown} enrolls key {}, this router's device_key is {device}",
            e.device_key
        );
    }
    Ok(Some(bytes))
}

/// Start everything; listeners are bound when this returns.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    // Ports first: a taken port is the likeliest start-up failure, and it
    // must leave nothing behind (no device key made for a daemon that never ran).
    let (udp, tls) = bind_listeners(&config).await?;
    let key = device_key(&config.device_key)?;
    let identity = Identity::new(&key)?;
    let enrolled = enrollment(&config, &identity.public())?;
    crate::store::create_private_dir(&config.state_dir)
        .with_context(|| format!("state_dir {}", config.state_dir.display()))?;
    let trust = config.trust();
    let opened = Store::open(&config.state_dir, &trust, &config.device_id, |vb| {
        PolicyIndex::compile(vb)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;
    for w in &opened.warnings {
        tracing::warn!("store: {w}");
    }
    if let Some(why) = opened.store.sealed() {
        tracing::error!(
            "store: {why}: every bundle push is refused (watermark-unreadable) and no bundle is \
             in force; stop edgegated, run `edgegate store reset-watermark --config FILE`, start it again"
        );
    }
    let reset = opened.reset;
    let endpoint = udp
        .map(|udp| crate::transport::quic::server(udp, &identity))
        .transpose()?;
    let control = ControlServer::bind(&config.control_socket, config.control_group.as_deref())
        .with_context(|| format!("binding control_socket {}", config.control_socket.display()))?;
    let control_path = config.control_socket.clone();
    let state_dir = config.state_dir.clone();
    let gateway = Gateway::new(config, opened.store, opened.bundle, identity)?;
    // Loading verified and compiled the stored bundle; only its index stays.
    tokio::task::spawn_blocking(crate::memory::release_freed);
    let quic_addr = endpoint.as_ref().map(|e| e.local_addr()).transpose()?;
    let tls_addr = tls.as_ref().map(|t| t.local_addr()).transpose()?;
    gateway.set_bound(quic_addr, tls_addr);
    gateway.audit_event(AuditEvent::DaemonStart {
        version: env!("CARGO_PKG_VERSION").to_string(),
    });
    if let Some(r) = reset {
        audit_reset(&gateway, &state_dir, r).await;
    }
    let mut tasks = vec![
        tokio::spawn(control.serve(Arc::new(ControlView(gateway.clone())))),
        tokio::spawn(gateway.clone().trim_when_quiet()),
    ];
    if let Some(endpoint) = endpoint {
        tasks.push(tokio::spawn(gateway.clone().serve_quic(endpoint)));
    }
    if let Some(tls) = tls {
        tasks.push(tokio::spawn(gateway.clone().serve_tls(tls)));
    }
    if let Some(enrollment) = enrolled {
        let enrollment = Arc::new(enrollment);
        for relay in gateway.config().relays.iter().cloned() {
            let uplink = gateway.clone().uplink(relay, enrollment.clone());
            tasks.push(tokio::spawn(uplink));
        }
    }
    tracing::info!(quic = ?quic_addr, tls = ?tls_addr, device = %gateway.identity().public(), "edgegated listening");
    Ok(Running {
        gateway,
        quic: quic_addr,
        tls: tls_addr,
        control: control_path,
        tasks,
    })
}

/// Record an operator's `store reset-watermark` made while the daemon was
/// stopped, then drop its note (after the record is on disk).
async fn audit_reset(gateway: &Gateway, state_dir: &Path, r: crate::store::WatermarkReset) {
    tracing::warn!(
        by_uid = r.by_uid,
        at = r.at,
        "store: the anti-rollback watermark was reset by an operator"
    );
    gateway.audit_event(AuditEvent::WatermarkReset {
        at: r.at,
        by_uid: r.by_uid,
        serial: r.serial,
        floor: r.floor,
    });
    gateway.flush().await;
    if let Err(e) = crate::store::clear_reset_note(state_dir) {
        tracing::warn!("store: removing the watermark reset note: {e}");
    }
}

impl Running {
    /// Ask sessions to end, wait for them (bounded), flush and stop.
    pub async fn shutdown(self) {
        self.gateway.begin_shutdown();
        let deadline = tokio::time::Instant::now() + DRAIN;
        while self.gateway.session_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.gateway.audit_event(AuditEvent::DaemonStop);
        self.gateway.flush().await;
        for t in self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.control);
    }
}

/// Re-read the config file and apply it; a file that does not load is
/// refused with one line and nothing changes.
async fn reload(gateway: &Arc<Gateway>, path: &Path) {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("config reload refused: {e}");
            return;
        }
    };
    let done = gateway.reload(config).await;
    if !done.needs_restart.is_empty() {
        tracing::warn!(
            "config reload: {} changed; a restart is needed to apply that (running values kept)",
            done.needs_restart.join(", ")
        );
    }
    if done.bad_tickets > 0 {
        tracing::warn!(
            sessions = done.bad_tickets,
            "config reload: sessions whose ticket no longer verifies under the new trusted keys were closed (bad-ticket)"
        );
    }
    tracing::info!(
        trust_changed = done.trust_changed,
        bundle_dropped = done.bundle_dropped,
        "config reloaded; live sessions re-decided"
    );
}

/// Wait for SIGTERM or SIGINT. The handlers are installed by the call, not
/// at the first poll: call it before telling anyone the daemon is up, or a
/// signal sent on that cue kills it with the default action.
pub fn terminated() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let (term, int) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            },
            _ => std::future::pending().await,
        }
    }
}

/// Run the daemon for `config` (read from `path`, re-read on SIGHUP) until
/// SIGTERM/SIGINT; print where it listens.
pub async fn run(config: Config, path: &Path) -> anyhow::Result<()> {
    let running = start(config).await?;
    let term = terminated();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    println!("device key {}", running.gateway.identity().public());
    let shown = |a: Option<SocketAddr>| a.map_or_else(|| "none".to_string(), |a| a.to_string());
    if let Some(quic) = running.quic {
        println!("listening quic {quic}");
    }
    if let Some(tls) = running.tls {
        println!("listening tls {tls}");
    }
    println!("control {}", running.control.display());
    sdnotify::ready();
    sdnotify::status(&format!(
        "listening quic {} tls {}, {} relay(s)",
        shown(running.quic),
        shown(running.tls),
        running.gateway.config().relays.len()
    ));
    // Healthy while the accept loops run, the store answers a write and a
    // read, and the shared state's locks answer (`Gateway::healthy`).
    let gw = running.gateway.clone();
    let listeners: Vec<_> = running.tasks.iter().map(|t| t.abort_handle()).collect();
    let watchdog = sdnotify::spawn_watchdog(move || {
        let gw = gw.clone();
        let alive = listeners.iter().all(|t| !t.is_finished());
        async move { alive && gw.healthy().await }
    });
    tokio::pin!(term);
    loop {
        tokio::select! {
            _ = &mut term => break,
            _ = hup.recv() => {
                sdnotify::reloading();
                reload(&running.gateway, path).await;
                sdnotify::ready();
            }
        }
    }
    tracing::info!("shutting down");
    sdnotify::stopping();
    if let Some(w) = watchdog {
        w.abort();
    }
    running.shutdown().await;
    Ok(())
}
