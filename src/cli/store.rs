//! `edgegate store ...`: repairs of the daemon's state directory, run on
//! the router with edgegated stopped (the state directory's lock says so).

use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `edgegate store ...`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Acknowledge an unreadable anti-rollback watermark: keep it aside and
    /// write a new one from the database's serial and time floor, so the
    /// daemon accepts bundles again. Audited when the daemon next starts.
    ResetWatermark(ResetWatermarkArgs),
}

/// `edgegate store reset-watermark`.
#[derive(Debug, Args)]
pub struct ResetWatermarkArgs {
    /// The daemon's config file (its `state_dir` is reset).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

#[cfg(unix)]
pub(super) fn run(c: StoreCommand, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    use crate::{clock::Clock, config::Config, store};
    use anyhow::anyhow;
    let StoreCommand::ResetWatermark(a) = c;
    let config = Config::load(&a.config).map_err(|e| anyhow!("{e}"))?;
    let uid = nix::unistd::getuid().as_raw();
    let done = store::reset_watermark(&config.state_dir, Clock::system().wall(), uid)?;
    let serial = done.serial.map_or("none".to_string(), |s| s.to_string());
    writeln!(
        out,
        "watermark reset: serial {serial}, time floor {}; the previous file is kept beside it; \
         start edgegated (the reset is audited then)",
        done.floor
    )?;
    Ok(())
}
