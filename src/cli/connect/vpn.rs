//! `connect --vpn`'s part of the command: the checks before connecting,
//! the start (`vpn up: IFACE ADDRESS routes CIDR[,CIDR…]`), the run beside
//! the session, and the end. The VPN itself is `crate::client::vpn`. Only
//! Linux has one; elsewhere `--vpn` is refused before connecting.

use crate::client::{self, SessionEvent};
use anyhow::bail;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a VPN that lost its stream waits for the session's own word
/// on why (a session's end closes the VPN stream too, often first).
const SESSION_WORD: Duration = Duration::from_secs(1);

/// What `--vpn` asked for, checked before connecting.
pub(super) struct Request {
    /// `--vpn-interface`, if given.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    interface: Option<String>,
}

/// Check that `--vpn` can work here, before connecting: Linux, a usable
/// interface name, the privilege.
pub(super) fn preflight(interface: Option<String>) -> anyhow::Result<Request> {
    if !cfg!(target_os = "linux") {
        bail!("--vpn is not supported on this platform (Linux only); --socks reaches vpn services");
    }
    if let Some(name) = &interface {
        let ok = !name.is_empty()
            && name.len() < 16
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            bail!("--vpn-interface {name}: 1 to 15 letters, digits, '-', '_' or '.'");
        }
    }
    #[cfg(target_os = "linux")]
    client::vpn::check_privilege().map_err(|e| anyhow::anyhow!(e))?;
    Ok(Request { interface })
}

/// A VPN that is up: its stream (until the pump takes it) and interface.
#[cfg(target_os = "linux")]
pub(super) struct Running {
    stream: Option<client::vpn::Vpn>,
    interface: client::vpn::Interface,
    dropped: client::vpn::Dropped,
}

/// No VPN off Linux (`preflight` refused the flag).
#[cfg(not(target_os = "linux"))]
pub(super) enum Running {}

/// Open the VPN stream, make the interface, print `vpn up: …` (`routes
/// none` when every route was left out). A failure is printed here (one
/// line) and becomes the exit code.
#[cfg(target_os = "linux")]
pub(super) async fn start(
    session: &client::Session,
    request: Request,
    out: &mut impl std::io::Write,
) -> Result<Running, ExitCode> {
    let vpn = match session.open_vpn().await {
        Ok(vpn) => vpn,
        Err(client::ClientError::Denied(reason) | client::ClientError::Refused { reason, .. }) => {
            eprintln!("denied: vpn: {reason}");
            return Err(ExitCode::FAILURE);
        }
        Err(e) => {
            eprintln!("error: vpn: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    let interface = match client::vpn::Interface::create(request.interface.as_deref(), &vpn.config)
    {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    let line = format!(
        "vpn up: {} {} routes {}",
        interface.name,
        vpn.config.address,
        match interface.routes.is_empty() {
            true => "none".to_string(),
            false => interface.routes.join(","),
        }
    );
    if writeln!(out, "{line}").is_err() {
        return Err(ExitCode::FAILURE);
    }
    Ok(Running {
        stream: Some(vpn),
        interface,
        dropped: client::vpn::Dropped::default(),
    })
}

/// Off Linux there is no VPN to start.
#[cfg(not(target_os = "linux"))]
pub(super) async fn start(
    _session: &client::Session,
    _request: Request,
    _out: &mut impl std::io::Write,
) -> Result<Running, ExitCode> {
    eprintln!("error: --vpn is not supported on this platform");
    Err(ExitCode::FAILURE)
}

/// Carry the VPN's packets until it ends; never ends without a VPN.
pub(super) async fn run(
    session: &client::Session,
    running: Option<&mut Running>,
) -> client::vpn::VpnEnd {
    #[cfg(target_os = "linux")]
    if let Some(Running {
        stream: stream @ Some(_),
        interface,
        dropped,
    }) = running
    {
        if let Some(vpn) = stream.take() {
            return vpn.pump(session, &*interface, dropped).await;
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (session, running);
    std::future::pending().await
}

/// Print why the VPN ended: `closed: vpn: REASON` for a cut, the session's
/// `closed: session: WHY` when the session's end took the VPN with it.
pub(super) async fn report_end(
    end: client::vpn::VpnEnd,
    events: &mut mpsc::UnboundedReceiver<SessionEvent>,
) {
    use client::vpn::VpnEnd;
    match end {
        VpnEnd::Cut(reason) => eprintln!("closed: vpn: {reason}"),
        VpnEnd::SessionEnded | VpnEnd::Lost(_) => {
            match tokio::time::timeout(SESSION_WORD, events.recv()).await {
                Ok(ev) => super::report_end(ev),
                Err(_) => eprintln!("closed: vpn: {end}"),
            }
        }
    }
}

/// Take the interface down (its routes with it) and say what was dropped.
pub(super) fn finish(running: Option<Running>) {
    #[cfg(target_os = "linux")]
    if let Some(running) = running {
        let dropped = running.dropped;
        drop(running);
        if dropped.too_large > 0 {
            eprintln!(
                "vpn: {} packets larger than the MTU were dropped",
                dropped.too_large
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = running;
}
