//! edgegate: the policy evaluator, the store, the daemon and the command line.

pub use edgegate_proto::PublicKey;

pub mod audit;
pub mod cli;
pub mod client;
pub mod config;
pub mod consent;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod duration;
pub mod filter;
pub mod gateway;
pub mod keyfile;
pub mod policy;
pub mod policy_file;
pub mod sdnotify;
pub mod store;
pub mod synth;
pub mod tlsid;
pub mod transport;

// The control commands' module belongs under `cli` (src/cli.rs is the
// authoring branch's); at merge it becomes `pub mod control;` in src/cli.rs
// and this line goes.
#[path = "cli/control.rs"]
pub mod cli_control;
