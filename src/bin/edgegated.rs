//! `edgegated`: the daemon systemd runs (`--config FILE`), or a
//! self-contained loopback demo (`--demo`). Unix only: on other systems
//! (Windows, where `edgegate.exe` is the engineer's client) it says so in
//! one line.

#![cfg_attr(not(unix), allow(unused))]

use clap::Parser;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(not(unix))]
fn main() -> ExitCode {
    eprintln!(
        "error: edgegated runs on the router (Linux); on this system use the client, edgegate"
    );
    ExitCode::FAILURE
}

/// edgegate daemon: enforces the cloud's signed access policy on tunnels.
#[derive(Debug, Parser)]
#[command(name = "edgegated", version, about)]
struct Args {
    /// The daemon's TOML config file.
    #[arg(long, value_name = "FILE", required_unless_present = "demo")]
    config: Option<PathBuf>,
    /// Run a self-contained demo on 127.0.0.1 with built-in policy and keys.
    #[arg(long, conflicts_with = "config")]
    demo: bool,
}

#[cfg(unix)]
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGEGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal: a file, a pipe or journald
    // would keep the escape codes as bytes.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

#[cfg(unix)]
fn main() -> ExitCode {
    // tokio's runtime runs a worker per core, as it is built below.
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    edgegate::memory::keep_data_path_pages(edgegate::memory::Keep::router(workers));
    let args = Args::parse();
    let config = match &args.config {
        Some(path) => match edgegate::config::Config::load(path) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    init_tracing(config.as_ref().map_or("info", |c| c.log_level.as_str()));
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
    let result = runtime.block_on(async move {
        match config {
            Some(config) => {
                let path = args.config.as_deref().unwrap_or(std::path::Path::new(""));
                edgegate::daemon::run(config, path).await
            }
            None => edgegate::demo::run().await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
