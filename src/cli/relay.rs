//! `edgegate relay status`: what a relay's control socket says about its
//! registered routers (DESIGN §8), as text or JSON.

use crate::control::frame::{read_frame, write_frame};
use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use edgegate_proto::relay::{RelayControlRequest, RelayControlResponse, RelayStatus};
use std::io::Write;
use std::path::PathBuf;

/// `edgegate relay ...`.
#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// The relay's key and its registered routers (device, since,
    /// transport, sessions, bytes each way).
    Status(StatusArgs),
}

/// `edgegate relay status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The relay's control socket.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/run/edgegate-relay/control.sock"
    )]
    pub socket: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `edgegate relay ...`.
pub fn run(cmd: RelayCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let RelayCommand::Status(args) = cmd;
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(ask(&args.socket))?;
    if args.json {
        writeln!(out, "{}", json(&status))?;
    } else {
        render(&status, out)?;
    }
    Ok(())
}

pub(crate) async fn ask(socket: &std::path::Path) -> anyhow::Result<RelayStatus> {
    let shown = socket.display();
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("--socket {shown}"))?;
    write_frame(&mut stream, &RelayControlRequest::Status)
        .await
        .with_context(|| format!("--socket {shown}"))?;
    let answer = read_frame::<RelayControlResponse>(&mut stream)
        .await
        .map_err(|e| anyhow!("--socket {shown}: {e}"))?;
    match answer {
        Some(RelayControlResponse::Status(status)) => Ok(status),
        Some(RelayControlResponse::Error(e)) => bail!("relay: {e}"),
        None => bail!("--socket {shown}: the relay closed the connection"),
    }
}

fn when(t: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
    humantime::format_rfc3339_seconds(at).to_string()
}

fn render(s: &RelayStatus, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "relay key {}", s.key)?;
    writeln!(out, "routers {}", s.routers.len())?;
    for r in &s.routers {
        writeln!(
            out,
            "router {} over {} from {} since {} serial {} sessions {} bytes to {} from {} key {}",
            r.device,
            r.transport.as_str(),
            r.remote,
            when(r.since),
            r.serial,
            r.sessions,
            r.bytes_to_router,
            r.bytes_from_router,
            r.key
        )?;
    }
    writeln!(out, "bundles {}", s.bundles.len())?;
    for b in &s.bundles {
        writeln!(
            out,
            "bundle {} serial {} {}",
            b.device,
            b.serial,
            answer(&b.answer)
        )?;
    }
    Ok(())
}

/// A spooled bundle's state: `not delivered`, or the router's answer.
fn answer(a: &Option<edgegate_proto::frame::PushResult>) -> String {
    let Some(result) = a else {
        return "not delivered".to_string();
    };
    let (lines, outcome) = super::delivery::render(result);
    match outcome {
        Ok(()) => format!("delivered: {}", lines.join(", ")),
        Err(e) => format!("delivered: {e}"),
    }
}

fn json(s: &RelayStatus) -> serde_json::Value {
    let routers: Vec<serde_json::Value> = s
        .routers
        .iter()
        .map(|r| {
            serde_json::json!({
                "device": r.device,
                "key": r.key.to_string(),
                "serial": r.serial,
                "since": when(r.since),
                "transport": r.transport.as_str(),
                "remote": r.remote.to_string(),
                "sessions": r.sessions,
                "bytes_to_router": r.bytes_to_router,
                "bytes_from_router": r.bytes_from_router,
            })
        })
        .collect();
    let bundles: Vec<serde_json::Value> = s
        .bundles
        .iter()
        .map(|b| {
            serde_json::json!({
                "device": b.device,
                "serial": b.serial,
                "delivered": b.answer.is_some(),
                "answer": b.answer.as_ref().map(|_| answer(&b.answer)),
            })
        })
        .collect();
    serde_json::json!({ "key": s.key.to_string(), "routers": routers, "bundles": bundles })
}
