//! The daemon's configuration file: strict TOML, validated in full before
//! anything binds.
//!
//! This module owns the file format (DESIGN §6 keys plus `[limits]` and
//! `log_level`), its defaults and its validation. Every problem becomes one
//! [`ConfigError`] line naming the file and the key (and the line, where the
//! TOML parser or a span knows it). It does not create keys, directories or
//! sockets: that is the daemon's job once the config is known to be good.

use edgegate_proto::envelope::Purpose;
use edgegate_proto::{PublicKey, TrustPolicy};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Longest path a unix socket address can hold (`sun_path` minus the NUL).
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// A validated daemon configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This router's device id; bundles and tickets must name it.
    pub device_id: String,
    /// Path of the device's ed25519 private key (created on first start).
    pub device_key: PathBuf,
    /// Directory for the sled database.
    pub state_dir: PathBuf,
    /// The authority's root public keys, distinct, in file order. They
    /// sign key statements; until one is accepted they also act as every
    /// role (bundle, ticket, enroll), as before roles existed.
    pub trusted_keys: Vec<PublicKey>,
    /// Distinct root signatures required (≥ 1, ≤ keys).
    pub threshold: usize,
    /// UDP address of the QUIC listener (`None`: no QUIC port, e.g. a
    /// router reached only through relays).
    pub listen_quic: Option<SocketAddr>,
    /// TCP address of the TLS listener (`None`: no TLS port).
    pub listen_tls: Option<SocketAddr>,
    /// The enrollment file this router presents to its relays (DESIGN §8).
    pub enrollment: Option<PathBuf>,
    /// The relays this router registers with (`[[relay]]`), in file order.
    pub relays: Vec<RelayPeer>,
    /// How often the router shows each relay it is alive (`relay_keepalive`,
    /// default 25s: UDP NAT mappings commonly expire after 30 s): QUIC
    /// keep-alives at this interval; over TLS a ping after 6 × it of silence.
    pub relay_keepalive: Duration,
    /// Path of the local control socket.
    pub control_socket: PathBuf,
    /// Group whose members may use the control socket (besides root).
    pub control_group: Option<String>,
    /// Seconds after bundle expiry before the gateway fails closed.
    pub expiry_grace: u64,
    /// `tracing` filter directive used when `RUST_LOG` is unset (default `info`).
    pub log_level: String,
    /// Resource limits.
    pub limits: Limits,
}

/// One `[[relay]]` table: a relay this router dials out to and keeps a
/// registration with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayPeer {
    /// `HOST:PORT` of the relay (QUIC on UDP, TLS on TCP; the same port).
    pub address: String,
    /// The relay's pinned public key.
    pub key: PublicKey,
}

/// Resource limits (`[limits]`). Every one is bounded; exceeding one is a
/// `limit-exceeded` decision or a clean close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time for a QUIC/TLS handshake to complete (default 10s).
    pub handshake_timeout: Duration,
    /// Time from handshake to the session's first frame (default 10s).
    pub first_frame_timeout: Duration,
    /// A session that has had no stream open for this long is closed; an
    /// open stream keeps it however quiet (default 30m). The same rule over
    /// QUIC and TLS.
    pub idle_timeout: Duration,
    /// Most live sessions in total (default 4: the memory budget of
    /// `docs/deploy.md` for the unit's 80 MiB).
    pub max_sessions: usize,
    /// Most live sessions of one user (default 2).
    pub max_sessions_per_user: usize,
    /// Most concurrently open streams in one session (default 16).
    pub max_streams_per_session: usize,
    /// Most connections in their unauthenticated phase at once, per
    /// listener (default 32; a quarter of them, at least 2, per source
    /// address).
    pub max_handshakes: usize,
    /// Largest bundle accepted over any channel, in bytes (default 4 MiB:
    /// a 10,000-user bundle is 714 KiB; the format's cap is 32 MiB). Every
    /// push is checked against it from its frame header, before its body is
    /// read, and its worst case counts in the memory budget
    /// (`docs/deploy.md`).
    pub max_bundle_size: usize,
    /// Bytes buffered per stream direction while proxying (default 64 KiB).
    pub stream_buffer: usize,
    /// Audit records kept; older ones are dropped with a hash anchor (default 100000).
    pub audit_retention: usize,
    /// Longest on-site consent one grant gives (default 12h): a longer
    /// `consent grant --for` is refused, a grant without `--for` lasts this
    /// long.
    pub max_consent: Duration,
    /// Most flows (TCP connections, UDP destinations, ICMP echo targets)
    /// one VPN session has open at once (default 128).
    pub max_vpn_flows: usize,
    /// Bytes one VPN session's TCP flows may buffer in all, both
    /// directions (default 2 MiB: 14 TCP flows of 144 KiB each, or one
    /// with bulk buffers of 608 KiB, taken while under half of it, and ten
    /// more; the memory budget of `docs/deploy.md`).
    pub vpn_buffer: usize,
}

/// The default bundle size cap: well under a quarter of the unit's
/// `MemoryMax` (80 MiB), so the worst case of every limit at once fits.
pub const DEFAULT_MAX_BUNDLE: usize = 4 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            first_frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30 * 60),
            max_sessions: 4,
            max_sessions_per_user: 2,
            max_streams_per_session: 16,
            max_handshakes: 32,
            max_bundle_size: DEFAULT_MAX_BUNDLE,
            stream_buffer: 64 << 10,
            audit_retention: 100_000,
            max_consent: Duration::from_secs(12 * 3600),
            max_vpn_flows: 128,
            vpn_buffer: 2 << 20,
        }
    }
}

/// Why a config file was refused. `Display` is one line: `FILE[:LINE[:COL]]: [key `K`: ]message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<string>` for [`Config::from_toml_str`]).
    pub path: PathBuf,
    /// 1-based line of the problem, when known.
    pub line: Option<usize>,
    /// 1-based column, when known (syntax errors).
    pub column: Option<usize>,
    /// The offending key (dotted, e.g. `limits.idle_timeout`), when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        // Keep it one line whatever the underlying message holds.
        let flat: Vec<&str> = self.message.lines().map(str::trim).collect();
        f.write_str(&flat.join(" "))
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    device_id: Spanned<String>,
    device_key: PathBuf,
    state_dir: PathBuf,
    trusted_keys: Spanned<Vec<Spanned<String>>>,
    threshold: Option<Spanned<i64>>,
    listen_quic: Option<Spanned<String>>,
    listen_tls: Option<Spanned<String>>,
    enrollment: Option<PathBuf>,
    #[serde(default)]
    relay: Vec<RawRelay>,
    relay_keepalive: Option<Spanned<String>>,
    control_socket: Spanned<PathBuf>,
    control_group: Option<Spanned<String>>,
    expiry_grace: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    address: Spanned<String>,
    key: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    handshake_timeout: Option<Spanned<String>>,
    first_frame_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    max_sessions: Option<Spanned<i64>>,
    max_sessions_per_user: Option<Spanned<i64>>,
    max_streams_per_session: Option<Spanned<i64>>,
    max_handshakes: Option<Spanned<i64>>,
    max_bundle_size: Option<Spanned<i64>>,
    stream_buffer: Option<Spanned<i64>>,
    audit_retention: Option<Spanned<i64>>,
    max_consent: Option<Spanned<String>>,
    max_vpn_flows: Option<Spanned<i64>>,
    vpn_buffer: Option<Spanned<i64>>,
}

/// Builds errors that point at a key and the line its value sits on.
pub(crate) struct Ctx<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Ctx<'_> {
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, col)
    }

    pub(crate) fn err<T>(
        &self,
        key: &str,
        at: &Spanned<T>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            path: self.path.to_path_buf(),
            line: Some(self.line_col(at.span().start).0),
            column: None,
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    pub(crate) fn duration(
        &self,
        key: &str,
        v: &Option<Spanned<String>>,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => {
                crate::duration::parse_duration(s.get_ref()).map_err(|e| self.err(key, s, e))
            }
        }
    }

    pub(crate) fn positive_duration(
        &self,
        key: &str,
        v: &Option<Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let secs = self.duration(key, v, default.as_secs())?;
        if secs == 0 {
            let at = v.as_ref().expect("a zero default is never used here");
            return Err(self.err(key, at, "must be longer than 0s"));
        }
        Ok(Duration::from_secs(secs))
    }

    pub(crate) fn count(
        &self,
        key: &str,
        v: &Option<Spanned<i64>>,
        default: usize,
        range: (usize, usize),
    ) -> Result<usize, ConfigError> {
        let Some(s) = v else { return Ok(default) };
        let n = *s.get_ref();
        let (lo, hi) = range;
        match usize::try_from(n) {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(self.err(key, s, format!("must be between {lo} and {hi}, got {n}"))),
        }
    }

    pub(crate) fn addr(&self, key: &str, v: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
        v.get_ref().parse().map_err(|_| {
            self.err(
                key,
                v,
                format!("{:?} is not an IP:PORT socket address", v.get_ref()),
            )
        })
    }
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = read_text(path)?;
        Self::parse(&text, path)
    }

    /// Validate config text; errors name the file as `<string>`.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Self::parse(text, Path::new("<string>"))
    }

    /// The trust policy the configured keys and threshold describe.
    pub fn trust(&self) -> TrustPolicy {
        TrustPolicy::new(self.trusted_keys.clone(), self.threshold)
            .expect("threshold was checked against the keys at load")
    }

    fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_toml(text, path)?;
        Ctx { path, text }.validate(raw)
    }
}

/// Read a config file's text; an error names the file.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        line: None,
        column: None,
        key: None,
        message: e.to_string(),
    })
}

/// Deserialize strict TOML (the raw form of a config), an error pointing
/// at the line and the key (shared with the relay's config).
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let ctx = Ctx { path, text };
        let (line, column) = e.span().map(|s| ctx.line_col(s.start)).unzip();
        ConfigError {
            path: path.to_path_buf(),
            line,
            column,
            // serde's type errors name no key; find it from the span.
            key: e
                .span()
                .and_then(|s| crate::toml_key::key_at(text, s.start))
                .filter(|k| !e.message().contains(&format!("`{k}`"))),
            message: e.message().to_string(),
        }
    })
}

impl Config {}

impl Ctx<'_> {
    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let device_id = raw.device_id.get_ref();
        if device_id.is_empty()
            || device_id.len() > edgegate_proto::bundle::limits::MAX_STRING
            || device_id
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(self.err(
                "device_id",
                &raw.device_id,
                "must be 1..=256 bytes without spaces or control characters",
            ));
        }
        let (trusted_keys, threshold) = self.trust_keys(&raw)?;
        let relays = self.relays(&raw)?;
        let control_socket = raw.control_socket.get_ref().clone();
        let sock_len = control_socket.as_os_str().len();
        if sock_len == 0 || sock_len > MAX_SOCKET_PATH {
            return Err(self.err(
                "control_socket",
                &raw.control_socket,
                format!("path must be 1..={MAX_SOCKET_PATH} bytes (a unix socket limit)"),
            ));
        }
        let control_group = match &raw.control_group {
            Some(g) if g.get_ref().is_empty() => {
                return Err(self.err(
                    "control_group",
                    g,
                    "must not be empty (omit the key for root only)",
                ))
            }
            g => g.as_ref().map(|g| g.get_ref().clone()),
        };
        let log_level = match &raw.log_level {
            None => "info".to_string(),
            Some(l) => {
                tracing_subscriber::EnvFilter::try_new(l.get_ref())
                    .map_err(|e| self.err("log_level", l, format!("not a tracing filter: {e}")))?;
                l.get_ref().clone()
            }
        };
        Ok(Config {
            device_id: device_id.clone(),
            device_key: raw.device_key,
            state_dir: raw.state_dir,
            trusted_keys,
            threshold,
            listen_quic: self.opt_addr("listen_quic", &raw.listen_quic)?,
            listen_tls: self.opt_addr("listen_tls", &raw.listen_tls)?,
            relays,
            relay_keepalive: self.positive_duration(
                "relay_keepalive",
                &raw.relay_keepalive,
                Duration::from_secs(25),
            )?,
            enrollment: raw.enrollment,
            control_socket,
            control_group,
            expiry_grace: self.duration("expiry_grace", &raw.expiry_grace, 0)?,
            log_level,
            limits: self.limits(&raw.limits)?,
        })
    }

    fn opt_addr(
        &self,
        key: &str,
        v: &Option<Spanned<String>>,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        v.as_ref().map(|v| self.addr(key, v)).transpose()
    }

    fn relays(&self, raw: &RawConfig) -> Result<Vec<RelayPeer>, ConfigError> {
        let mut relays = Vec::new();
        for (i, r) in raw.relay.iter().enumerate() {
            let address = r.address.get_ref();
            if address
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().map_or(true, |p| p == 0))
            {
                let msg = format!("{address:?} is not HOST:PORT");
                return Err(self.err(&format!("relay[{i}].address"), &r.address, msg));
            }
            let key = r
                .key
                .get_ref()
                .parse()
                .map_err(|e| self.err(&format!("relay[{i}].key"), &r.key, format!("{e}")))?;
            relays.push(RelayPeer {
                address: address.clone(),
                key,
            });
        }
        if let (Some(first), None) = (raw.relay.first(), &raw.enrollment) {
            return Err(self.err(
                "enrollment",
                &first.address,
                "a [[relay]] needs `enrollment = FILE` (`edgegate device enroll` makes it)",
            ));
        }
        Ok(relays)
    }

    fn trust_keys(&self, raw: &RawConfig) -> Result<(Vec<PublicKey>, usize), ConfigError> {
        self.trust(&raw.trusted_keys, &raw.threshold)
    }

    /// `trusted_keys` and `threshold`: distinct keys, at least one, and a
    /// threshold they can meet (default 1).
    pub(crate) fn trust(
        &self,
        trusted_keys: &Spanned<Vec<Spanned<String>>>,
        threshold: &Option<Spanned<i64>>,
    ) -> Result<(Vec<PublicKey>, usize), ConfigError> {
        let mut keys = Vec::new();
        for (i, k) in trusted_keys.get_ref().iter().enumerate() {
            let key: PublicKey = k
                .get_ref()
                .parse()
                .map_err(|e| self.err(&format!("trusted_keys[{i}]"), k, format!("{e}")))?;
            if keys.contains(&key) {
                return Err(self.err(&format!("trusted_keys[{i}]"), k, "duplicate key"));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(self.err(
                "trusted_keys",
                trusted_keys,
                "at least one authority key is required",
            ));
        }
        let threshold = match threshold {
            None => 1,
            Some(t) => {
                let n = *t.get_ref();
                match usize::try_from(n) {
                    Ok(n) if n >= 1 && n <= keys.len() => n,
                    _ => {
                        return Err(self.err(
                            "threshold",
                            t,
                            format!(
                                "must be between 1 and the {} trusted key(s), got {n}",
                                keys.len()
                            ),
                        ))
                    }
                }
            }
        };
        Ok((keys, threshold))
    }

    fn limits(&self, raw: &RawLimits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let max_bundle = Purpose::Bundle.max_size();
        Ok(Limits {
            handshake_timeout: self.positive_duration(
                "limits.handshake_timeout",
                &raw.handshake_timeout,
                d.handshake_timeout,
            )?,
            first_frame_timeout: self.positive_duration(
                "limits.first_frame_timeout",
                &raw.first_frame_timeout,
                d.first_frame_timeout,
            )?,
            idle_timeout: self.positive_duration(
                "limits.idle_timeout",
                &raw.idle_timeout,
                d.idle_timeout,
            )?,
            max_sessions: self.count(
                "limits.max_sessions",
                &raw.max_sessions,
                d.max_sessions,
                (1, 1 << 20),
            )?,
            max_sessions_per_user: self.count(
                "limits.max_sessions_per_user",
                &raw.max_sessions_per_user,
                d.max_sessions_per_user,
                (1, 1 << 20),
            )?,
            max_streams_per_session: self.count(
                "limits.max_streams_per_session",
                &raw.max_streams_per_session,
                d.max_streams_per_session,
                (1, 1 << 16),
            )?,
            max_handshakes: self.count(
                "limits.max_handshakes",
                &raw.max_handshakes,
                d.max_handshakes,
                (1, 1 << 16),
            )?,
            max_bundle_size: self.count(
                "limits.max_bundle_size",
                &raw.max_bundle_size,
                d.max_bundle_size,
                (1 << 10, max_bundle),
            )?,
            stream_buffer: self.count(
                "limits.stream_buffer",
                &raw.stream_buffer,
                d.stream_buffer,
                (1 << 10, 16 << 20),
            )?,
            audit_retention: self.count(
                "limits.audit_retention",
                &raw.audit_retention,
                d.audit_retention,
                (16, 100_000_000),
            )?,
            max_consent: self.positive_duration(
                "limits.max_consent",
                &raw.max_consent,
                d.max_consent,
            )?,
            max_vpn_flows: self.count(
                "limits.max_vpn_flows",
                &raw.max_vpn_flows,
                d.max_vpn_flows,
                (1, 1 << 16),
            )?,
            vpn_buffer: self.count(
                "limits.vpn_buffer",
                &raw.vpn_buffer,
                d.vpn_buffer,
                (64 << 10, 1 << 30),
            )?,
        })
    }
}

#[cfg(test)]
mod tests;
