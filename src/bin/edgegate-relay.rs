//! `edgegate-relay`: the relay routers behind NAT dial out to (DESIGN §8).
//! Runs in the cloud, on Linux; elsewhere it says so in one line.

#![cfg_attr(not(unix), allow(unused))]

use clap::Parser;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(not(unix))]
fn main() -> ExitCode {
    eprintln!("error: edgegate-relay runs on Linux");
    ExitCode::FAILURE
}

/// edgegate relay: routers dial out to it, engineers reach them through
/// it; it forwards ciphertext and decides nothing.
#[derive(Debug, Parser)]
#[command(name = "edgegate-relay", version, about)]
struct Args {
    /// The relay's TOML config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[cfg(unix)]
fn main() -> ExitCode {
    // Every relayed byte passes through the relay's buffers too.
    // Its runtime runs a worker per core.
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    edgegate::memory::keep_data_path_pages(edgegate::memory::Keep::relay(workers));
    let args = Args::parse();
    let config = match edgegate::relay::config::RelayConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGEGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(edgegate::relay::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
