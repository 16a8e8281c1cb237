//! edgegate: the policy evaluator, the store, the daemon and the command line.

pub use edgegate_proto::PublicKey;

pub mod audit;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod consent;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod duration;
pub mod filter;
pub mod gateway;
pub mod keyfile;
pub mod memory;
pub mod policy;
pub mod policy_file;
pub mod sdnotify;
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
