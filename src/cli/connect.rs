//! `edgegate connect` and `edgegate bundle push` (DESIGN §6): argument
//! parsing and the stdout/stderr contract. The work is in `crate::client`.

mod vpn;

use super::shutdown::Shutdown;
use crate::client::{self, ClientError, SessionEvent, Target};
use crate::keyfile;
use crate::tlsid::Identity;
use anyhow::{anyhow, bail, Context};
use clap::Args;
use edgegate_proto::frame::Verdict;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Open a session to a gateway and forward local ports until interrupted.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The gateway's tunnel address, HOST:PORT (QUIC on UDP, or TCP with --tls).
    #[arg(long, value_name = "HOST:PORT", required_unless_present = "relay")]
    pub gateway: Option<String>,
    /// Reach the gateway through this relay, HOST:PORT (QUIC, or TCP with
    /// --tls or when QUIC gets no answer). Repeatable, each with its
    /// --relay-key; tried in order. Not with --gateway.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "gateway")]
    pub relay: Vec<String>,
    /// The public key of the --relay at the same position (`ed25519:...`
    /// or a file holding it).
    #[arg(long, value_name = "PUB")]
    pub relay_key: Vec<String>,
    /// The device's public key (`ed25519:...` or a file holding it).
    #[arg(long, value_name = "PUB")]
    pub gateway_key: String,
    /// This client's private key file. Required, except on Windows, where
    /// it defaults to %APPDATA%\edgegate\identity.key.
    #[arg(long, value_name = "KEY", required = !ENGINEER_DEFAULTS)]
    pub identity: Option<PathBuf>,
    /// The ticket file issued for this client key. Required, except on
    /// Windows, where it defaults to %APPDATA%\edgegate\ticket.
    #[arg(long, value_name = "FILE", required = !ENGINEER_DEFAULTS)]
    pub ticket: Option<PathBuf>,
    /// Forward a local port to a service: `[ADDR:]PORT=SERVICE` (ADDR defaults
    /// to 127.0.0.1; PORT 0 picks a free port, printed as `forward ADDR:PORT SERVICE`).
    #[arg(short = 'L', value_name = "[ADDR:]PORT=SERVICE")]
    pub forward: Vec<String>,
    /// Run a SOCKS5 proxy for vpn services on `[ADDR:]PORT` (PORT 0 picks a
    /// free port, printed as `socks ADDR:PORT`).
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub socks: Option<String>,
    /// Use TLS over TCP instead of QUIC.
    #[arg(long)]
    pub tls: bool,
    /// Reach the allowed vpn services' networks over IP: a TUN interface
    /// with the session's address and a route per network, removed on exit
    /// (Linux; needs root or CAP_NET_ADMIN). Prints `vpn up: IFACE ADDRESS
    /// routes CIDR[,CIDR...]`.
    #[arg(long)]
    pub vpn: bool,
    /// The TUN interface's name (default: the first free `edgegateN`).
    #[arg(long, value_name = "NAME", requires = "vpn")]
    pub vpn_interface: Option<String>,
}

/// Whether `--identity` and `--ticket` have defaults: on Windows, in the
/// engineer's `%APPDATA%\edgegate` (the roaming profile, private to the
/// user). Elsewhere there is no one obvious place, and they stay required.
const ENGINEER_DEFAULTS: bool = cfg!(windows);

/// The engineer's file `name` given as `flag`, or its default place.
fn engineer_file(flag: &str, given: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let appdata = std::env::var_os("APPDATA")
        .filter(|_| ENGINEER_DEFAULTS)
        .ok_or_else(|| anyhow!("{flag} FILE is required"))?;
    let path = PathBuf::from(appdata).join("edgegate").join(name);
    if !path.exists() {
        let shown = path.display();
        let fix = match name {
            "identity.key" => format!("`edgegate keygen --out \"{shown}\"` makes one"),
            _ => "save the ticket issued for this key there".to_string(),
        };
        bail!("{flag} not given, and its default {shown} does not exist ({fix})");
    }
    Ok(path)
}

/// Push a signed bundle to a gateway over its tunnel port.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The signed bundle file.
    pub file: PathBuf,
    /// The gateway's tunnel address, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub gateway: String,
    /// The device's public key (`ed25519:...` or a file holding it).
    #[arg(long, value_name = "PUB")]
    pub gateway_key: String,
    /// Key to connect with; a fresh ephemeral key if absent (the bundle's
    /// signatures decide, not the pusher).
    #[arg(long, value_name = "KEY")]
    pub identity: Option<PathBuf>,
    /// Use TLS over TCP instead of QUIC.
    #[arg(long)]
    pub tls: bool,
    /// A key statement file to deliver with the bundle (installed first).
    #[arg(long, value_name = "STATEMENT")]
    pub keys: Option<PathBuf>,
}

/// `edgegate device-key`: print the device's public key, creating the key
/// if absent (what the cloud and the engineer's client pin).
#[derive(Debug, Args)]
pub struct DeviceKeyArgs {
    /// The daemon's config file (its `device_key` path is used).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Run `edgegate device-key` (on the router: it reads the daemon's config).
#[cfg(unix)]
pub fn run_device_key(args: DeviceKeyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = crate::config::Config::load(&args.config).map_err(|e| anyhow!("{e}"))?;
    let key = crate::daemon::device_key(&config.device_key)?;
    writeln!(out, "{}", crate::PublicKey::from(key.verifying_key()))?;
    Ok(())
}

/// Parse `[ADDR:]PORT=SERVICE`.
pub fn parse_forward(spec: &str) -> anyhow::Result<client::Forward> {
    let (addr, service) = spec
        .rsplit_once('=')
        .ok_or_else(|| anyhow!("-L {spec}: expected [ADDR:]PORT=SERVICE"))?;
    if service.is_empty() {
        bail!("-L {spec}: empty service");
    }
    Ok(client::Forward {
        listen: parse_listen(addr).with_context(|| format!("-L {spec}"))?,
        service: service.to_string(),
    })
}

/// Parse `[ADDR:]PORT`, defaulting to 127.0.0.1.
pub fn parse_listen(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| anyhow!("{s}: expected [ADDR:]PORT"))
}

/// The target of `edgegate connect`: the gateway itself, or its relays.
async fn connect_target(args: &ConnectArgs, identity: Identity) -> anyhow::Result<Target> {
    if let Some(gateway) = &args.gateway {
        return target(gateway, &args.gateway_key, identity, args.tls).await;
    }
    if args.relay.len() != args.relay_key.len() {
        bail!(
            "--relay: {} relay(s) but {} --relay-key(s); give one key per relay, in the same order",
            args.relay.len(),
            args.relay_key.len()
        );
    }
    let device_key =
        keyfile::load_public_key(&args.gateway_key).map_err(|e| anyhow!("--gateway-key: {e}"))?;
    let mut hops = Vec::new();
    for (relay, key) in args.relay.iter().zip(&args.relay_key) {
        let key = keyfile::load_public_key(key).map_err(|e| anyhow!("--relay-key: {e}"))?;
        let address = tokio::net::lookup_host(relay)
            .await
            .with_context(|| format!("--relay {relay}"))?
            .next()
            .ok_or_else(|| anyhow!("--relay {relay}: no address"))?;
        hops.push(client::RelayHop { address, key });
    }
    Ok(Target::via_relays(hops, device_key, identity, args.tls))
}

async fn target(gateway: &str, key: &str, identity: Identity, tls: bool) -> anyhow::Result<Target> {
    let device_key = keyfile::load_public_key(key).map_err(|e| anyhow!("--gateway-key: {e}"))?;
    let gateway = tokio::net::lookup_host(gateway)
        .await
        .with_context(|| format!("--gateway {gateway}"))?
        .next()
        .ok_or_else(|| anyhow!("--gateway {gateway}: no address"))?;
    Ok(Target::new(gateway, device_key, identity, tls))
}

/// One thread, as ssh: a client serves one session, whose QUIC crypto runs
/// in one connection task anyway. Measured on a 2-core machine, a
/// two-worker runtime spent 50% more CPU per byte on a single TLS stream
/// and 5-10% more on QUIC (workers waking each other and migrating the
/// stream's task), and won only ~10% with 64 parallel TLS streams.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Run `edgegate connect`. Errors are one line; policy refusals print
/// `denied: ...` themselves and return a failure code.
pub fn run_connect(mut args: ConnectArgs) -> anyhow::Result<ExitCode> {
    // `--vpn` without its privilege fails before anything else is read.
    let vpn = args
        .vpn
        .then(|| vpn::preflight(args.vpn_interface.take()))
        .transpose()?;
    let forwards = args
        .forward
        .iter()
        .map(|s| parse_forward(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let socks = args.socks.as_deref().map(parse_listen).transpose()?;
    let identity = engineer_file("--identity", args.identity.take(), "identity.key")?;
    let ticket = engineer_file("--ticket", args.ticket.take(), "ticket")?;
    let key = keyfile::load_signing_key(&identity)
        .map_err(|e| anyhow!("--identity {}: {e}", identity.display()))?;
    let ticket =
        std::fs::read(&ticket).with_context(|| format!("--ticket {}", ticket.display()))?;
    let identity = Identity::new(&key)?;
    runtime()?.block_on(async move {
        let target = connect_target(&args, identity).await?;
        connect(&target, ticket, forwards, socks, vpn).await
    })
}

async fn connect(
    target: &Target,
    ticket: Vec<u8>,
    forwards: Vec<client::Forward>,
    socks: Option<SocketAddr>,
    vpn: Option<vpn::Request>,
) -> anyhow::Result<ExitCode> {
    let (session, mut events) = match client::open_session(target, ticket).await {
        Ok(s) => s,
        Err(ClientError::Denied(reason)) => {
            eprintln!("denied: {reason}");
            return Ok(ExitCode::FAILURE);
        }
        Err(ClientError::Refused { reason, detail }) => {
            // The reason word stays alone on its line (scripts match it);
            // what the gateway said about it follows.
            eprintln!("denied: {reason}");
            if !detail.is_empty() {
                let line: String = detail
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                eprintln!("{line}");
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(ClientError::RelayRefused(refusal)) => {
            eprintln!("denied: {refusal}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) if target.relayed() => bail!("connecting through relays: {e}"),
        Err(e) => bail!("connecting to {}: {e}", target.gateway),
    };
    let mut out = std::io::stdout().lock();
    for s in &session.welcome.services {
        match s.decision {
            Verdict::Allow(level) => writeln!(out, "allow {} {level}", s.id)?,
            Verdict::Deny(reason) => writeln!(out, "deny {} {reason}", s.id)?,
        }
    }
    out.flush()?;
    for f in &forwards {
        let verdict = session.welcome.services.iter().find(|s| s.id == f.service);
        match verdict.map(|s| s.decision) {
            Some(Verdict::Allow(_)) => {}
            Some(Verdict::Deny(reason)) => {
                eprintln!("denied: {}: {reason}", f.service);
                return Ok(leave(&session, ExitCode::FAILURE).await);
            }
            None => {
                eprintln!("denied: {}: unknown-service", f.service);
                return Ok(leave(&session, ExitCode::FAILURE).await);
            }
        }
    }
    // Each listener reports the address it bound (port 0 picks a free one),
    // so a caller never has to reserve a port and hope it stays free.
    let session = Arc::new(session);
    for f in forwards {
        let listener = TcpListener::bind(f.listen)
            .await
            .with_context(|| format!("-L {}: binding {}", f.service, f.listen))?;
        writeln!(out, "forward {} {}", listener.local_addr()?, f.service)?;
        tokio::spawn(client::forward(session.clone(), listener, f.service));
    }
    if let Some(addr) = socks {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("--socks: binding {addr}"))?;
        writeln!(out, "socks {}", listener.local_addr()?)?;
        tokio::spawn(client::socks5(session.clone(), listener));
    }
    // Interrupted (Ctrl-C, the console window closed) or stopped (SIGTERM,
    // a service manager): close the session so the daemon forgets it now,
    // not at its idle timeout. Installed before `ready`, and before the
    // VPN's interface exists.
    let mut shutdown = Shutdown::install()?;
    let mut vpn = match vpn {
        Some(request) => match vpn::start(&session, request, &mut out).await {
            Ok(vpn) => Some(vpn),
            Err(code) => return Ok(leave(&session, code).await),
        },
        None => None,
    };
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    let code = {
        let has_vpn = vpn.is_some();
        let vpn_end = vpn::run(&session, vpn.as_mut());
        tokio::pin!(vpn_end);
        tokio::select! {
            () = shutdown.recv() => ExitCode::SUCCESS,
            ev = events.recv() => {
                if has_vpn {
                    // The session's end cut the VPN's flows: their RSTs
                    // are still on the VPN's own stream, which the daemon
                    // ends right after them. They reach the interface
                    // before it goes, or the engineer's programs wait.
                    let _ = tokio::time::timeout(VPN_DRAIN, &mut vpn_end).await;
                }
                report_end(ev);
                ExitCode::FAILURE
            }
            end = &mut vpn_end => {
                vpn::report_end(end, &mut events).await;
                ExitCode::FAILURE
            }
        }
    };
    // The interface (and its routes) go before the session's close.
    vpn::finish(vpn);
    Ok(leave(&session, code).await)
}

/// How long a session's end waits for the VPN stream's last packets.
const VPN_DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// `closed: session: WHY` for a session's end.
fn report_end(ev: Option<SessionEvent>) {
    let why = match ev {
        Some(SessionEvent::Ended(why)) => why,
        None => "session ended".to_string(),
    };
    eprintln!("closed: session: {why}");
}

/// Close the session and give the close a moment (bounded) to reach the
/// daemon before the process exits: nothing runs once the runtime is gone,
/// and a close never sent leaves the session open there until QUIC's idle
/// timeout.
async fn leave(session: &client::Session, code: ExitCode) -> ExitCode {
    session.close();
    session.drain().await;
    code
}

/// Run `edgegate bundle push`; prints `accepted serial N`,
/// `unchanged serial N`, or fails with `rejected: CODE: MESSAGE`.
pub fn run_push(args: PushArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let bundle = super::delivery::read(&args.file, args.keys.as_deref()).map_err(|e| anyhow!(e))?;
    let key = match &args.identity {
        Some(path) => keyfile::load_signing_key(path)
            .map_err(|e| anyhow!("--identity {}: {e}", path.display()))?,
        None => ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng),
    };
    let identity = Identity::new(&key)?;
    let result = runtime()?.block_on(async move {
        let target = target(&args.gateway, &args.gateway_key, identity, args.tls).await?;
        let pushed = client::push_bundle(&target, bundle)
            .await
            .map_err(|e| anyhow!("pushing to {}: {e}", target.gateway));
        target.drain().await;
        pushed
    })?;
    let (lines, outcome) = super::delivery::render(&result);
    for line in lines {
        writeln!(out, "{line}")?;
    }
    outcome.map_err(|e| anyhow!(e))
}

/// Run `edgegate bundle push FILE --relay HOST:PORT --relay-key KEY
/// [--wait DURATION]`: `queued serial N for DEVICE`, or with `--wait` the
/// router's answer as a direct push prints it.
pub fn run_relay_push(
    file: &std::path::Path,
    relay: Option<String>,
    relay_key: Option<String>,
    wait: Option<String>,
    with_keys: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (Some(relay), Some(relay_key)) = (relay, relay_key) else {
        bail!("--relay needs --relay-key");
    };
    if with_keys {
        bail!("--keys: a key statement is not pushed through a relay; push it to the router");
    }
    let wait = wait
        .map(|w| crate::duration::parse_duration(&w).map_err(|e| anyhow!("--wait {w}: {e}")))
        .transpose()?
        .map(std::time::Duration::from_secs);
    let bundle = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
    let key = keyfile::load_public_key(&relay_key).map_err(|e| anyhow!("--relay-key: {e}"))?;
    let identity = Identity::new(&ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))?;
    let pushed = runtime()?.block_on(async move {
        let address = tokio::net::lookup_host(&relay)
            .await
            .with_context(|| format!("--relay {relay}"))?
            .next()
            .ok_or_else(|| anyhow!("--relay {relay}: no address"))?;
        let hop = client::RelayHop { address, key };
        // No device key: nothing is dialled through the relay.
        let target = Target::via_relays(vec![hop], key, identity, false);
        target
            .push_via_relay(bundle, wait)
            .await
            .map_err(|e| match e {
                ClientError::RelayRefused(r) => anyhow!("{r}"),
                e => anyhow!("pushing through relay {relay}: {e}"),
            })
    })?;
    match pushed {
        client::RelayPush::Queued { device, serial } => {
            writeln!(out, "queued serial {serial} for {device}")?;
            Ok(())
        }
        client::RelayPush::NoAnswer { device, serial } => {
            writeln!(out, "queued serial {serial} for {device}")?;
            bail!("no answer from the router of {device} within --wait")
        }
        client::RelayPush::Answered(result) => {
            let (lines, outcome) = super::delivery::render(&result);
            for line in lines {
                writeln!(out, "{line}")?;
            }
            outcome.map_err(|e| anyhow!(e))
        }
    }
}

/// `rejected: CODE: MESSAGE`, without repeating a code the message already
/// starts with (the store's messages read `rollback: serial 3 is not above…`).
pub(super) fn rejected(code: &str, message: &str) -> String {
    match message.strip_prefix(code) {
        Some(rest) if code.is_empty() || rest.starts_with(':') => format!("rejected: {message}"),
        _ => format!("rejected: {code}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::rejected;

    #[test]
    fn a_rejection_names_its_code_once() {
        assert_eq!(
            rejected(
                "rollback",
                "rollback: serial 3 is not greater than stored serial 5"
            ),
            "rejected: rollback: serial 3 is not greater than stored serial 5"
        );
        assert_eq!(
            rejected("rollback", "serial 3 is not above 5"),
            "rejected: rollback: serial 3 is not above 5"
        );
        // A code that is merely a prefix of the message's first word is kept.
        assert_eq!(
            rejected("bad", "badly formed"),
            "rejected: bad: badly formed"
        );
    }
}
