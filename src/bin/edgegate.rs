//! `edgegate`: the operator's and engineer's command line (DESIGN §6).
//! Parse, run, and turn any error (usage errors included) into one
//! `error: ...` line on stderr and exit status 1.

use clap::error::ErrorKind;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    edgegate::memory::keep_data_path_pages(edgegate::memory::Keep::CLIENT);
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
    let mut out = Stdout {
        inner: std::io::stdout().lock(),
        reader_gone: false,
    };
    let result = edgegate::cli::run(cli, &mut out);
    if out.reader_gone {
        // `edgegate bundle inspect X | head`: the reader had what it wanted.
        return ExitCode::SUCCESS;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<edgegate::cli::AlreadyReported>() => ExitCode::FAILURE,
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

/// Standard output that notes when its reader went away (a closed pipe),
/// so that ends the command quietly rather than as an error.
struct Stdout<W> {
    inner: W,
    reader_gone: bool,
}

impl<W: std::io::Write> Stdout<W> {
    fn note<T>(&mut self, r: std::io::Result<T>) -> std::io::Result<T> {
        if matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe) {
            self.reader_gone = true;
        }
        r
    }
}

impl<W: std::io::Write> std::io::Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}
