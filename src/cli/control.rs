//! The operator's commands over the local control socket: `edgegate status
//! | sessions | sessions kill ID | audit [--json] | audit verify | consent
//! grant [--for 2h] | consent revoke | bundle push FILE`.
//!
//! Argument types and `run`; the lead plugs [`ControlCommand`] into the
//! top-level clap tree with `#[command(flatten)]`, and routes `bundle push
//! FILE` without `--gateway` to [`push_bundle`]. Output is for humans
//! (aligned `key: value` lines, ages like `3m ago`) or, with `--json`, one
//! JSON object per line. Errors are one line on stderr and exit 1.

#[cfg(unix)]
#[path = "control/render.rs"]
mod render;
#[cfg(unix)]
#[path = "control/run.rs"]
mod run;

use crate::duration::parse_duration;
use edgegate_proto::audit::SignedHead;
use edgegate_proto::control::MAX_AUDIT_BATCH;
#[cfg(unix)]
pub use run::{push_bundle, run};
use std::path::PathBuf;

/// Where the daemon listens unless `--socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/edgegate/control.sock";

/// `--socket PATH`, shared by every control command.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArg {
    /// The daemon's control socket (before or after a subcommand).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,
}

/// The control-socket subcommands, to flatten into the top-level command enum.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ControlCommand {
    /// Show the daemon's device id, bundle, time floor, consent and sessions.
    Status(StatusArgs),
    /// List live sessions and their streams, or kill one.
    Sessions(SessionsArgs),
    /// Show the audit log, or verify its hash chain.
    Audit(AuditArgs),
    /// Grant or revoke on-site consent for remote access.
    Consent(ConsentArgs),
}

impl ControlCommand {
    /// The command's name as typed (`status`, `sessions`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            ControlCommand::Status(_) => "status",
            ControlCommand::Sessions(_) => "sessions",
            ControlCommand::Audit(_) => "audit",
            ControlCommand::Consent(_) => "consent",
        }
    }
}

/// `edgegate status`
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `edgegate sessions [kill ID]`
#[derive(Debug, Clone, clap::Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// One JSON object per session instead of text.
    #[arg(long)]
    pub json: bool,
    /// `kill ID`.
    #[command(subcommand)]
    pub command: Option<SessionsCommand>,
}

/// What to do with sessions.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SessionsCommand {
    /// Close a session now (its streams are audited as `killed`). Its ticket
    /// is refused from then on until it expires, across restarts: the
    /// engineer needs a fresh ticket. To bar a user, push a bundle that
    /// makes the user inactive.
    Kill {
        /// Session id, as `edgegate sessions` shows it.
        id: u64,
    },
}

/// `edgegate audit [--json] [--since SEQ] [--limit N] | audit verify`
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// One JSON object per record instead of text.
    #[arg(long)]
    pub json: bool,
    /// Start at this sequence number (default: the newest `--limit` records).
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
    /// Most records to show.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_AUDIT_BATCH)))]
    pub limit: u32,
    /// Show the counters of unauthenticated events (refused sessions,
    /// rejected pushes, garbage per source address and minute) instead of
    /// the chain.
    #[arg(long)]
    pub strangers: bool,
    /// `verify`.
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
}

/// Audit subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; exits non-zero on an edited or deleted record
    /// or a tail cut short of the newest signed head.
    Verify {
        /// Also check against this signed head line
        /// (`edgegate-audit-head:v1:…`, as the daemon logged it) kept off-box.
        #[arg(long, value_name = "LINE", value_parser = parse_head)]
        head: Option<SignedHead>,
    },
}

fn parse_head(s: &str) -> Result<SignedHead, String> {
    SignedHead::parse_line(s).map_err(|e| e.to_string())
}

/// `edgegate consent grant [--for 2h] | consent revoke`
#[derive(Debug, Clone, clap::Args)]
pub struct ConsentArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// `grant` or `revoke`.
    #[command(subcommand)]
    pub command: ConsentCommand,
}

/// Consent subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ConsentCommand {
    /// Allow roles that need on-site consent, for a while or until revoked.
    Grant {
        /// How long, e.g. `2h`, `30m` (default: until revoked).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        for_secs: Option<u64>,
    },
    /// Withdraw consent; streams that depended on it are closed at once.
    Revoke,
}
