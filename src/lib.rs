//! edgegate: the policy evaluator, the store, the daemon and the command line.

pub mod sdnotify;
