//! Running the control commands: one call over the daemon's unix socket
//! each, rendered for people or as JSON. Unix only (`src/cli.rs` answers
//! on other systems that these commands run on the router).

use super::render;
use super::*;
use crate::control::{Client, Request, Response};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Run one control command; prints its result and returns the exit code.
pub fn run(cmd: ControlCommand) -> ExitCode {
    block_on(async move {
        match cmd {
            ControlCommand::Status(a) => status(a).await,
            ControlCommand::Sessions(a) => sessions(a).await,
            ControlCommand::Audit(a) => audit(a).await,
            ControlCommand::Consent(a) => consent(a).await,
        }
    })
}

/// `edgegate bundle push FILE` over the control socket.
pub fn push_bundle(socket: &Path, file: &Path, keys: Option<&Path>) -> ExitCode {
    let keys = keys.map(Path::to_path_buf);
    block_on(push(socket.to_path_buf(), file.to_path_buf(), keys))
}

/// What a command ends with: `Ok` (exit 0) or one line for stderr (exit 1).
type Outcome = Result<(), String>;

fn block_on(fut: impl std::future::Future<Output = Outcome>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => fail(line),
    }
}

/// `println!` for a command's output: a reader that went away
/// (`edgegate audit | head`) ends the command quietly, not with a panic.
macro_rules! say {
    ($($arg:tt)*) => { render::emit(&format!("{}\n", format_args!($($arg)*))) };
}

fn fail(line: String) -> ExitCode {
    eprintln!("error: {}", line.replace('\n', " "));
    ExitCode::FAILURE
}

async fn call(socket: &Path, req: Request) -> Result<Response, String> {
    let mut client = Client::connect(socket).await.map_err(|e| e.to_string())?;
    match client.call(&req).await {
        Ok(Response::Error(msg)) => Err(msg),
        Ok(resp) => Ok(resp),
        Err(e) => Err(e.to_string()),
    }
}

fn unexpected(resp: &Response) -> String {
    format!("unexpected answer from the daemon: {resp:?}")
}

async fn status(a: StatusArgs) -> Outcome {
    let info = match call(&a.socket.socket, Request::Status).await? {
        Response::Status(info) => info,
        other => return Err(unexpected(&other)),
    };
    // A daemon older than key statements does not know the question.
    let keys = match call(&a.socket.socket, Request::Keys).await {
        Ok(Response::Keys(k)) => Some(k),
        _ => None,
    };
    if a.json {
        let mut v = render::status_json(&info);
        if let Some(k) = &keys {
            v["keys"] = render::keys_json(k);
        }
        render::print_json(&v);
    } else {
        render::emit(&render::status_with_keys_text(&info, keys.as_ref()));
    }
    Ok(())
}

async fn sessions(a: SessionsArgs) -> Outcome {
    let socket = &a.socket.socket;
    if let Some(SessionsCommand::Kill { id }) = a.command {
        return match call(socket, Request::Kill { id }).await? {
            Response::Killed(true) => {
                say!("killed session {id}; its ticket is refused until it expires");
                Ok(())
            }
            Response::Killed(false) => Err(format!("no session {id}")),
            other => Err(unexpected(&other)),
        };
    }
    let list = match call(socket, Request::Sessions).await? {
        Response::Sessions(list) => list,
        other => return Err(unexpected(&other)),
    };
    let now = crate::clock::Clock::system().wall();
    if a.json {
        list.iter()
            .for_each(|s| render::print_json(&render::session_json(s)));
    } else if list.is_empty() {
        say!("no sessions");
    } else {
        render::emit(&render::sessions_text(&list, now));
    }
    Ok(())
}

async fn audit(a: AuditArgs) -> Outcome {
    let socket = &a.socket.socket;
    if let Some(AuditCommand::Verify { head }) = a.command {
        let req = match head {
            Some(head) => Request::AuditVerifyHead { head },
            None => Request::AuditVerify,
        };
        return match call(socket, req).await? {
            Response::AuditVerify(Ok(r)) => {
                match (r.first_seq, r.last_seq) {
                    (Some(f), Some(l)) => {
                        say!("audit log intact: {} records, seq {f}..={l}", r.records)
                    }
                    _ => say!("audit log intact: empty"),
                }
                Ok(())
            }
            Response::AuditVerify(Err(e)) => Err(format!("audit verify failed: {e}")),
            other => Err(unexpected(&other)),
        };
    }
    if a.strangers {
        return match call(socket, Request::Strangers { limit: a.limit }).await? {
            Response::Strangers(list) => {
                for s in &list {
                    if a.json {
                        render::print_json(&crate::audit::format::stranger_json(s));
                    } else {
                        say!("{}", crate::audit::format::stranger_line(s));
                    }
                }
                Ok(())
            }
            other => Err(unexpected(&other)),
        };
    }
    let req = Request::Audit {
        since: a.since,
        limit: a.limit,
    };
    match call(socket, req).await? {
        Response::Audit(records) => {
            for r in &records {
                if a.json {
                    render::print_json(&crate::audit::format::json(r));
                } else {
                    say!("{}", crate::audit::format::line(r));
                }
            }
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

async fn consent(a: ConsentArgs) -> Outcome {
    let (req, verb) = match a.command {
        ConsentCommand::Grant { for_secs } => (Request::ConsentGrant { secs: for_secs }, "granted"),
        ConsentCommand::Revoke => (Request::ConsentRevoke, "revoked"),
    };
    match call(&a.socket.socket, req).await? {
        Response::Consent(info) => {
            say!(
                "consent {verb}: {}",
                render::consent_text(&info, crate::clock::Clock::system().wall())
            );
            Ok(())
        }
        Response::Error(e) => Err(e),
        other => Err(unexpected(&other)),
    }
}

async fn push(socket: PathBuf, file: PathBuf, keys: Option<PathBuf>) -> Outcome {
    let max = edgegate_proto::envelope::Purpose::Bundle.max_size();
    let size = std::fs::metadata(&file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .len();
    if size > max as u64 {
        return Err(format!(
            "{}: {size} bytes, a bundle is at most {max}",
            file.display()
        ));
    }
    let bytes = crate::cli::delivery::read(&file, keys.as_deref())?;
    match call(&socket, Request::PushBundle { bytes }).await? {
        Response::Push(result) => {
            let (lines, outcome) = crate::cli::delivery::render(&result);
            for line in lines {
                say!("{line}");
            }
            outcome
        }
        other => Err(unexpected(&other)),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
