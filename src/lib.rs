//! edgegate: the policy evaluator, the store, the daemon and the command line.

pub use edgegate_proto::PublicKey;

pub mod config;
pub mod consent;
pub mod filter;
pub mod policy;
pub mod store;
pub mod synth;
pub mod tlsid;
pub mod transport;
