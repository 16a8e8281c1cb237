//! edgegate: the policy evaluator, the store, the daemon and the command line.

pub mod audit;
pub mod config;
pub mod consent;
pub mod control;
