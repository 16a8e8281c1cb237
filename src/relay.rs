//! `edgegate-relay` (DESIGN §8): routers behind NAT dial out to it and keep
//! a registration; engineers dial it and are routed to the router enrolled
//! under their ticket's device. It copies bytes: the engineer and the
//! router run their own TLS session end to end inside the relayed stream,
//! so the relay sees ciphertext only, and decides nothing about access. It
//! limits who uses it: enrollments and tickets signed by its trusted keys,
//! each bound to the key its peer proved.
//!
//! This file owns the shared state and the order of start-up and shutdown;
//! `relay/accept.rs` the listeners and the unauthenticated phase,
//! `relay/router.rs` registrations, `relay/engineer.rs` relayed sessions,
//! `relay/registry.rs` the device → connection map, `relay/config.rs` the
//! config file.

mod accept;
pub mod config;
mod control;
mod engineer;
mod push;
mod registry;
mod router;
mod spool;

use crate::clock::Clock;
use crate::sdnotify;
use crate::tlsid::Identity;
use anyhow::{anyhow, Context};
use config::RelayConfig;
use edgegate_proto::Authority;
use registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long shutdown waits for routers to be told `GoingAway`.
const DRAIN: Duration = Duration::from_secs(2);

/// The relay's shared state.
pub struct Relay {
    config: RelayConfig,
    /// The configured keys as every role (a relay has no key statement).
    authority: Authority,
    identity: Identity,
    registry: Registry,
    /// The newest bundle per device, until its router takes it.
    spool: spool::Spool,
    /// Pushes whose bodies may be read at once (each up to
    /// `limits.max_bundle_size`).
    push_slots: Arc<tokio::sync::Semaphore>,
    /// Routers' answers to deliveries: (device, serial, answer), for
    /// pushers that wait.
    deliveries: tokio::sync::broadcast::Sender<(String, u64, edgegate_proto::frame::PushResult)>,
    clock: Clock,
    shutdown: watch::Sender<bool>,
    /// Told of each registration; see [`Relay::trim_after_bursts`].
    registered: tokio::sync::Notify,
}

/// Push bodies read at once.
const PUSH_SLOTS: usize = 4;

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// A started relay.
#[derive(Debug)]
pub struct Running {
    /// The shared state.
    pub relay: Arc<Relay>,
    /// Where QUIC listens (UDP).
    pub quic: SocketAddr,
    /// Where TLS listens (TCP).
    pub tls: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// The relay's public key (what routers and engineers pin).
    pub fn public(&self) -> crate::PublicKey {
        self.identity.public()
    }

    /// How many routers are registered.
    pub fn routers(&self) -> usize {
        self.registry.len()
    }

    fn now(&self) -> edgegate_proto::UnixTime {
        self.clock.wall()
    }
}

/// How long registrations must pause before freed memory is trimmed.
const TRIM_QUIET: Duration = Duration::from_secs(1);

impl Relay {
    /// Hand the heap pages that handshakes freed back to the kernel once
    /// registrations pause (at most once per [`TRIM_QUIET`]): a thousand
    /// routers registering at once (a relay's restart) leave their
    /// handshake buffers freed but resident, scattered between the live
    /// registrations, a few KiB a router (`benches/relay.sh`).
    async fn trim_after_bursts(self: Arc<Self>) {
        loop {
            self.registered.notified().await;
            tokio::time::sleep(TRIM_QUIET).await;
            let _ = tokio::task::spawn_blocking(crate::memory::release_freed).await;
        }
    }
}

/// Bind the listeners, load or create the key, start serving.
pub async fn start(config: RelayConfig) -> anyhow::Result<Running> {
    let (quic, tls) = (config.listen_quic, config.listen_tls);
    let udp = std::net::UdpSocket::bind(quic)
        .map_err(|e| anyhow!("listen_quic: cannot listen for QUIC on UDP {quic}: {e}"))?;
    let tcp = TcpListener::bind(tls)
        .await
        .map_err(|e| anyhow!("listen_tls: cannot listen for TLS on TCP {tls}: {e}"))?;
    let key = crate::daemon::device_key(&config.relay_key)
        .map_err(|e| anyhow!("{}", e.to_string().replace("device_key", "relay_key")))?;
    crate::store::create_private_dir(&config.state_dir)
        .with_context(|| format!("state_dir {}", config.state_dir.display()))?;
    let identity = Identity::new(&key)?;
    let spool = spool::Spool::open(&config.state_dir).map_err(|e| anyhow!("state_dir: {e}"))?;
    let endpoint = crate::transport::quic::relay_server(udp, &identity)?;
    let control = crate::control::ControlServer::bind(
        &config.control_socket,
        config.control_group.as_deref(),
    )
    .with_context(|| format!("binding control_socket {}", config.control_socket.display()))?;
    let (quic, tls) = (endpoint.local_addr()?, tcp.local_addr()?);
    let relay = Arc::new(Relay {
        authority: Authority::legacy(config.trust()),
        config,
        identity,
        registry: Registry::default(),
        spool,
        push_slots: Arc::new(tokio::sync::Semaphore::new(PUSH_SLOTS)),
        deliveries: tokio::sync::broadcast::channel(64).0,
        clock: Clock::system(),
        shutdown: watch::channel(false).0,
        registered: tokio::sync::Notify::new(),
    });
    let tasks = vec![
        tokio::spawn(relay.clone().serve_quic(endpoint)),
        tokio::spawn(relay.clone().serve_tls(tcp)),
        tokio::spawn(relay.clone().serve_control(control)),
        tokio::spawn(relay.clone().trim_after_bursts()),
    ];
    tracing::info!(%quic, %tls, key = %relay.public(), "edgegate-relay listening");
    Ok(Running {
        relay,
        quic,
        tls,
        tasks,
    })
}

impl Running {
    /// Tell every router `GoingAway`, give it a moment (bounded), stop.
    pub async fn shutdown(self) {
        self.relay.shutdown.send_replace(true);
        let deadline = tokio::time::Instant::now() + DRAIN;
        while self.relay.routers() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.relay.config.control_socket);
    }
}

/// Run the relay until SIGTERM/SIGINT; print where it listens.
pub async fn run(config: RelayConfig) -> anyhow::Result<()> {
    let running = start(config).await?;
    let term = crate::daemon::terminated();
    println!("relay key {}", running.relay.public());
    println!("listening quic {}", running.quic);
    println!("listening tls {}", running.tls);
    println!("control {}", running.relay.config.control_socket.display());
    sdnotify::ready();
    sdnotify::status(&format!(
        "listening quic {} tls {}",
        running.quic, running.tls
    ));
    let listeners: Vec<_> = running.tasks.iter().map(|t| t.abort_handle()).collect();
    let watchdog = sdnotify::spawn_watchdog(move || {
        let alive = listeners.iter().all(|t| !t.is_finished());
        async move { alive }
    });
    term.await;
    tracing::info!("shutting down");
    sdnotify::stopping();
    if let Some(w) = watchdog {
        w.abort();
    }
    running.shutdown().await;
    Ok(())
}
