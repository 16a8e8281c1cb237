//! edgegate: the policy evaluator, the store, the daemon and the command line.

pub mod audit;
pub mod config;
pub mod consent;
pub mod control;
pub mod store;

// The control commands' module belongs under `cli` (src/cli.rs is the
// authoring branch's); at merge it becomes `pub mod control;` in src/cli.rs
// and this line goes.
#[path = "cli/control.rs"]
pub mod cli_control;
