//! `edgegate`: the operator's and engineer's command line (DESIGN §6).
//! Parse, run, and turn any error into one `error: ...` line and exit 1.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Temporary: the tunnel commands until they join the clap tree.
    if let Some(code) = edgegate::cli::connect::dispatch_from_env() {
        return code;
    }
    let cli = edgegate::cli::Cli::parse();
    let mut out = std::io::stdout().lock();
    match edgegate::cli::run(cli, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
