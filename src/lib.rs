//! edgegate: the policy evaluator, the store, the daemon and the command line.
//!
//! Two platforms, one gate. Everything the engineer and the cloud operator
//! run (the client, the authoring tools, the policy evaluator, the
//! transports) builds everywhere, `x86_64-pc-windows-gnu` included. The
//! router's side (the sled store, the audit log, the control socket with
//! SO_PEERCRED, signals, file modes, systemd) is unix-only and gated here,
//! whole modules at a time, not line by line inside them. The command
//! line's dispatch (`src/cli.rs`) is the other place that knows.

pub use edgegate_proto::PublicKey;

#[cfg(unix)]
pub mod audit;
pub mod cli;
pub mod client;
pub mod clock;
#[cfg(unix)]
pub mod config;
#[cfg(unix)]
pub mod consent;
#[cfg(unix)]
pub mod control;
#[cfg(unix)]
pub mod daemon;
#[cfg(unix)]
pub mod demo;
pub mod duration;
pub mod filter;
#[cfg(unix)]
pub mod gateway;
pub mod keyfile;
// Everywhere: its calls are no-ops off glibc.
pub mod memory;
pub mod policy;
pub mod policy_file;
#[cfg(unix)]
pub mod relay;
#[cfg(unix)]
pub mod sdnotify;
#[cfg(unix)]
pub mod store;
pub mod synth;
#[doc(hidden)]
pub mod testkit;
pub mod tlsid;
pub mod toml_key;
pub mod transport;

/// Decoders of untrusted bytes that live inside private modules, reachable
/// for the fuzz crate (`fuzz/`). Not part of the library's API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::client::socks::parse as socks5;
}
