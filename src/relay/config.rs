//! The relay's configuration file (DESIGN §8): strict TOML, validated in
//! full before anything binds, errors as one line naming the file, the
//! line and the key (the daemon's `ConfigError`, and its helpers).
//!
//! It does not create the key or the state directory: that is the relay's
//! start-up (`relay.rs`).

use crate::config::{parse_toml, read_text, ConfigError, Ctx};
use edgegate_proto::{PublicKey, TrustPolicy};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A validated relay configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Path of the relay's ed25519 private key (created on first start).
    pub relay_key: PathBuf,
    /// The relay's state directory (created on first start).
    pub state_dir: PathBuf,
    /// The authority's public keys: enrollments and tickets must be signed
    /// by `threshold` of them.
    pub trusted_keys: Vec<PublicKey>,
    /// Distinct signatures required (≥ 1, ≤ keys).
    pub threshold: usize,
    /// UDP address of the QUIC listener.
    pub listen_quic: SocketAddr,
    /// TCP address of the TLS listener.
    pub listen_tls: SocketAddr,
    /// Path of the local control socket (`edgegate relay status`).
    pub control_socket: PathBuf,
    /// Group whose members may use the control socket (besides root).
    pub control_group: Option<String>,
    /// `tracing` filter used when `EDGEGATE_LOG` is unset (default `info`).
    pub log_level: String,
    /// Resource limits.
    pub limits: RelayLimits,
}

/// The relay's limits (`[limits]`). Their sum, the worst case at once:
/// `max_handshakes` × 2 listeners of handshake state; `max_routers` × an
/// idle registration (31–32 KiB, release, `benches/relay.sh`);
/// `max_routers` × `max_sessions_per_router` relayed sessions × (2 × 64 KiB
/// copy buffers + the transports' windows, 256 KiB a stream each way);
/// 4 push bodies × `max_bundle_size`; the spool's 4 MiB sled cache. A cloud
/// relay sizes `max_routers` × `max_sessions_per_router` to its memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLimits {
    /// Most routers registered at once (default 10000).
    pub max_routers: usize,
    /// Most relayed sessions open to one router at once (default 16).
    pub max_sessions_per_router: usize,
    /// Most new connections accepted per second, per listener (default
    /// 200); beyond it new connections are refused until the next second.
    pub accept_rate: usize,
    /// Time for a handshake and the first message (default 10s).
    pub handshake_timeout: Duration,
    /// Most connections in their unauthenticated phase at once, per
    /// listener (default 256; a quarter of them, at least 2, per source).
    pub max_handshakes: usize,
    /// Largest bundle a pusher may hand over, in bytes (default 4 MiB, as
    /// the router's default).
    pub max_bundle_size: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_routers: 10_000,
            max_sessions_per_router: 16,
            accept_rate: 200,
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 256,
            max_bundle_size: crate::config::DEFAULT_MAX_BUNDLE,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelayConfig {
    relay_key: PathBuf,
    state_dir: PathBuf,
    trusted_keys: Spanned<Vec<Spanned<String>>>,
    threshold: Option<Spanned<i64>>,
    listen_quic: Spanned<String>,
    listen_tls: Spanned<String>,
    control_socket: Spanned<PathBuf>,
    control_group: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    #[serde(default)]
    limits: RawRelayLimits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRelayLimits {
    max_routers: Option<Spanned<i64>>,
    max_sessions_per_router: Option<Spanned<i64>>,
    accept_rate: Option<Spanned<i64>>,
    handshake_timeout: Option<Spanned<String>>,
    max_handshakes: Option<Spanned<i64>>,
    max_bundle_size: Option<Spanned<i64>>,
}

impl RelayConfig {
    /// Read and validate a relay config file.
    pub fn load(path: impl AsRef<Path>) -> Result<RelayConfig, ConfigError> {
        let path = path.as_ref();
        let text = read_text(path)?;
        Self::parse(&text, path)
    }

    /// Validate config text; errors name the file as `<string>`.
    pub fn from_toml_str(text: &str) -> Result<RelayConfig, ConfigError> {
        Self::parse(text, Path::new("<string>"))
    }

    /// The trust policy the configured keys and threshold describe.
    pub fn trust(&self) -> TrustPolicy {
        TrustPolicy::new(self.trusted_keys.clone(), self.threshold)
            .expect("threshold was checked against the keys at load")
    }

    fn parse(text: &str, path: &Path) -> Result<RelayConfig, ConfigError> {
        let raw: RawRelayConfig = parse_toml(text, path)?;
        let ctx = Ctx { path, text };
        let (trusted_keys, threshold) = ctx.trust(&raw.trusted_keys, &raw.threshold)?;
        let log_level = match &raw.log_level {
            None => "info".to_string(),
            Some(l) => {
                tracing_subscriber::EnvFilter::try_new(l.get_ref())
                    .map_err(|e| ctx.err("log_level", l, format!("not a tracing filter: {e}")))?;
                l.get_ref().clone()
            }
        };
        let control_socket = raw.control_socket.get_ref().clone();
        let len = control_socket.as_os_str().len();
        if len == 0 || len > crate::config::MAX_SOCKET_PATH {
            let max = crate::config::MAX_SOCKET_PATH;
            let why = format!("path must be 1..={max} bytes (a unix socket limit)");
            return Err(ctx.err("control_socket", &raw.control_socket, why));
        }
        let control_group = match &raw.control_group {
            Some(g) if g.get_ref().is_empty() => {
                let why = "must not be empty (omit the key for root only)";
                return Err(ctx.err("control_group", g, why));
            }
            g => g.as_ref().map(|g| g.get_ref().clone()),
        };
        let (l, d) = (&raw.limits, RelayLimits::default());
        let limits = RelayLimits {
            max_routers: ctx.count(
                "limits.max_routers",
                &l.max_routers,
                d.max_routers,
                (1, 1 << 24),
            )?,
            max_sessions_per_router: ctx.count(
                "limits.max_sessions_per_router",
                &l.max_sessions_per_router,
                d.max_sessions_per_router,
                (1, 1000),
            )?,
            accept_rate: ctx.count(
                "limits.accept_rate",
                &l.accept_rate,
                d.accept_rate,
                (1, 1 << 20),
            )?,
            handshake_timeout: ctx.positive_duration(
                "limits.handshake_timeout",
                &l.handshake_timeout,
                d.handshake_timeout,
            )?,
            max_handshakes: ctx.count(
                "limits.max_handshakes",
                &l.max_handshakes,
                d.max_handshakes,
                (1, 1 << 16),
            )?,
            max_bundle_size: ctx.count(
                "limits.max_bundle_size",
                &l.max_bundle_size,
                d.max_bundle_size,
                (1 << 10, edgegate_proto::Purpose::Bundle.max_size()),
            )?,
        };
        Ok(RelayConfig {
            relay_key: raw.relay_key,
            state_dir: raw.state_dir,
            trusted_keys,
            threshold,
            listen_quic: ctx.addr("listen_quic", &raw.listen_quic)?,
            listen_tls: ctx.addr("listen_tls", &raw.listen_tls)?,
            control_socket,
            control_group,
            log_level,
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ed25519:iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";

    fn config(extra: &str) -> String {
        format!(
            "relay_key = \"/r/relay.key\"\nstate_dir = \"/r\"\ntrusted_keys = [\"{KEY}\"]\n\
             listen_quic = \"0.0.0.0:443\"\nlisten_tls = \"0.0.0.0:443\"\n\
             control_socket = \"/run/r.sock\"\n{extra}"
        )
    }

    #[test]
    fn a_minimal_config_gets_the_defaults() {
        let c = RelayConfig::from_toml_str(&config("")).unwrap();
        assert_eq!(c.threshold, 1);
        assert_eq!(c.limits, RelayLimits::default());
        assert_eq!(c.listen_tls, "0.0.0.0:443".parse().unwrap());
        let c = RelayConfig::from_toml_str(&config(
            "[limits]\nmax_routers = 5\nmax_sessions_per_router = 2\naccept_rate = 9\n\
             handshake_timeout = \"3s\"\nmax_handshakes = 8\n",
        ))
        .unwrap();
        assert_eq!(
            c.limits,
            RelayLimits {
                max_routers: 5,
                max_sessions_per_router: 2,
                accept_rate: 9,
                handshake_timeout: Duration::from_secs(3),
                max_handshakes: 8,
                max_bundle_size: crate::config::DEFAULT_MAX_BUNDLE,
            }
        );
    }

    #[test]
    fn mistakes_are_one_line_naming_the_key() {
        let err = |extra: &str| RelayConfig::from_toml_str(&config(extra)).unwrap_err();
        let e = err("device_id = \"x\"\n");
        assert!(e.to_string().contains("unknown field `device_id`"), "{e}");
        let e = err("threshold = 2\n");
        assert_eq!(e.key.as_deref(), Some("threshold"), "{e}");
        let e = err("[limits]\nmax_sessions_per_router = 0\n");
        assert_eq!(e.key.as_deref(), Some("limits.max_sessions_per_router"));
        assert_eq!(e.line, Some(8));
        let e = err("control_group = \"\"\n");
        assert_eq!(e.key.as_deref(), Some("control_group"), "{e}");
        let bad = config("").replace("0.0.0.0:443\"\nlisten_tls", "nowhere\"\nlisten_tls");
        let e = RelayConfig::from_toml_str(&bad).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("listen_quic"), "{e}");
        assert!(!e.to_string().contains('\n'));
    }
}
