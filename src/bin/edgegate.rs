//! `edgegate`: the operator's and engineer's command line (DESIGN §6).
//! Parse, run, and turn any error (usage errors included) into one
//! `error: ...` line on stderr and exit status 1.

use clap::error::ErrorKind;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Temporary: the tunnel commands until they join the clap tree.
    if let Some(code) = edgegate::cli::connect::dispatch_from_env() {
        return code;
    }
    let cli = match edgegate::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {} (see --help)", one_line(&e.to_string()));
            return ExitCode::FAILURE;
        }
    };
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

/// clap's message without its `error:` prefix, usage and tips, on one line.
fn one_line(text: &str) -> String {
    let text = text.strip_prefix("error: ").unwrap_or(text);
    text.lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ")
}
