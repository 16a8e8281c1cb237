//! edgegate: the policy evaluator, the store, the daemon and the command line.

pub mod audit;
pub mod cli;
pub mod config;
pub mod consent;
pub mod control;
pub mod duration;
pub mod filter;
pub mod keyfile;
pub mod policy;
pub mod policy_file;
pub mod sdnotify;
pub mod store;
pub mod synth;
