//! The `edgegate` command line (DESIGN §6): the clap tree and dispatch.
//!
//! This file owns the tree and the authoring commands' arguments; each
//! command's work lives in a sibling module (`cli/keys.rs`, `cli/bundle.rs`,
//! `cli/ticket.rs`, `cli/policy.rs`). Commands write their normal output to
//! the writer they are given and return errors; `src/bin/edgegate.rs` turns
//! an error into one `error: ...` line on stderr and exit status 1.

mod bundle;
pub mod connect;
pub mod control;
mod delivery;
mod device;
mod evaluate;
mod keys;
mod policy;
#[cfg(unix)]
pub mod relay;
mod shutdown;
mod store;
mod ticket;

use crate::duration::parse_duration;
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

/// edgegate: access-enforcing gateway for industrial routers.
#[derive(Debug, Parser)]
#[command(name = "edgegate", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new ed25519 key file (owner-only) and print its public key.
    Keygen(KeygenArgs),
    /// The authority's keys: a root and one key per role, and the key
    /// statements routers accept (init, rotate, inspect).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Build and inspect signed permission bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Issue tickets admitting a client key to a device.
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// Check policy files and explain decisions.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Commands to the local daemon over its control socket.
    #[command(flatten)]
    Control(control::ControlCommand),
    /// Open a session to a gateway and forward local ports until interrupted.
    Connect(connect::ConnectArgs),
    /// Print the device's public key, creating the key if absent.
    DeviceKey(connect::DeviceKeyArgs),
    /// Enroll a device with relays: sign and inspect "device ID has key K".
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Repair the daemon's state directory (run with edgegated stopped).
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Ask a relay (edgegate-relay) over its control socket.
    #[cfg(unix)]
    #[command(subcommand)]
    Relay(relay::RelayCommand),
}

/// `edgegate keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key; an existing file is never overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `edgegate bundle ...`.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Compile a policy file for one device and sign it.
    Build(BuildArgs),
    /// Show a bundle's contents and signers (no trusted key needed).
    Inspect(InspectArgs),
    /// Push a bundle to the local daemon (control socket) or to a gateway
    /// (`--gateway`, over its tunnel port).
    Push(PushArgs),
}

/// `edgegate bundle push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The signed bundle file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub socket: control::SocketArg,
    /// Push to this gateway's tunnel port (HOST:PORT) instead of the local socket.
    #[arg(long, value_name = "HOST:PORT", requires = "gateway_key")]
    pub gateway: Option<String>,
    /// The gateway's public key (`ed25519:...` or a file holding it).
    #[arg(long, value_name = "PUB", requires = "gateway")]
    pub gateway_key: Option<String>,
    /// Key to connect to the gateway with; a fresh ephemeral key if absent
    /// (the bundle's signatures decide, not the pusher).
    #[arg(long, value_name = "KEY", requires = "gateway")]
    pub identity: Option<PathBuf>,
    /// With --gateway: use TLS over TCP instead of QUIC.
    #[arg(long, requires = "gateway")]
    pub tls: bool,
    /// Push through this relay (HOST:PORT) instead: it keeps the newest
    /// bundle per device and delivers it when the router is registered.
    /// Prints `queued serial N for DEVICE`.
    #[arg(
        long,
        value_name = "HOST:PORT",
        requires = "relay_key",
        conflicts_with = "gateway"
    )]
    pub relay: Option<String>,
    /// The relay's public key (`ed25519:...` or a file holding it).
    #[arg(long, value_name = "PUB", requires = "relay")]
    pub relay_key: Option<String>,
    /// With --relay: wait this long (e.g. 30s) for the router's answer and
    /// print it (`accepted serial N` or `rejected: REASON`).
    #[arg(long, value_name = "DURATION", requires = "relay")]
    pub wait: Option<String>,
    /// A key statement file (`edgegate keys init|rotate`) to deliver with
    /// the bundle, installed first: FILE is then verified under its keys.
    /// FILE itself may also be a key statement file, pushed alone.
    #[arg(long, value_name = "STATEMENT")]
    pub keys: Option<PathBuf>,
}

/// An error whose one line has already been written to stderr: the binary
/// exits non-zero without printing it again.
#[derive(Debug)]
pub struct AlreadyReported;

impl std::fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("already reported")
    }
}

impl std::error::Error for AlreadyReported {}

fn exit_code(code: std::process::ExitCode) -> anyhow::Result<()> {
    if code == std::process::ExitCode::SUCCESS {
        Ok(())
    } else {
        Err(AlreadyReported.into())
    }
}

/// `edgegate bundle build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The policy file (TOML, DESIGN §7).
    #[arg(value_name = "POLICY.toml")]
    pub policy: PathBuf,
    /// The device the bundle is for.
    #[arg(long, value_name = "ID")]
    pub device: String,
    /// Serial number; the device accepts only a higher one than it has.
    #[arg(long, value_name = "N")]
    pub serial: u64,
    /// How long the bundle stays valid after it is issued, e.g. 30d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub valid_for: u64,
    /// Signing key: the bundle role's (keys/bundle.key), or, before any key
    /// statement, the authority key routers trust; repeat for a threshold.
    #[arg(
        long = "key",
        value_name = "AUTHORITY.key",
        required_unless_present = "keys_dir"
    )]
    pub keys: Vec<PathBuf>,
    /// Sign with the bundle key of this keys directory (`edgegate keys init`).
    #[arg(long, value_name = "DIR", conflicts_with = "keys")]
    pub keys_dir: Option<PathBuf>,
    /// Where to write the signed bundle.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Issue time (RFC 3339); default now.
    #[arg(long, value_name = "RFC3339", value_parser = crate::duration::parse_time)]
    pub issued_at: Option<u64>,
}

/// `edgegate bundle inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The signed bundle.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// A trusted authority key (ed25519:.. or a file); repeatable. With it,
    /// reports whether the signatures meet the trust policy.
    #[arg(long = "trust", value_name = "KEY")]
    pub trust: Vec<String>,
    /// Distinct trusted signers required (with --trust).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threshold: usize,
}

/// `edgegate ticket ...`.
#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Sign a ticket for one user, device and client key.
    Issue(IssueArgs),
}

/// `edgegate ticket issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// User id.
    #[arg(long, value_name = "ID")]
    pub user: String,
    /// Device id.
    #[arg(long, value_name = "ID")]
    pub device: String,
    /// The client's public key: ed25519:.., or a file holding it or the private key.
    #[arg(long, value_name = "PUB|FILE")]
    pub client_key: String,
    /// How long the ticket is valid, e.g. 8h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ttl: u64,
    /// The user authenticated with a second factor.
    #[arg(long)]
    pub mfa: bool,
    /// When the user authenticated (RFC 3339); default now.
    #[arg(long, value_name = "RFC3339", value_parser = crate::duration::parse_time)]
    pub auth_time: Option<u64>,
    /// Issue time (RFC 3339); default now.
    #[arg(long, value_name = "RFC3339", value_parser = crate::duration::parse_time)]
    pub issued_at: Option<u64>,
    /// Signing key: the ticket role's (keys/ticket.key), or, before any key
    /// statement, the authority key routers trust; repeatable.
    #[arg(
        long = "key",
        value_name = "AUTHORITY.key",
        required_unless_present = "keys_dir"
    )]
    pub keys: Vec<PathBuf>,
    /// Sign with the ticket key of this keys directory (`edgegate keys init`).
    #[arg(long, value_name = "DIR", conflicts_with = "keys")]
    pub keys_dir: Option<PathBuf>,
    /// Where to write the signed ticket.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `edgegate policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and run its [[test]] expectations.
    Check(CheckArgs),
    /// Show the decision for one question, and why.
    Explain(ExplainArgs),
}

/// `edgegate policy check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file.
    #[arg(value_name = "POLICY.toml")]
    pub policy: PathBuf,
}

/// `edgegate policy explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The signed bundle to ask.
    #[arg(long, value_name = "FILE")]
    pub bundle: PathBuf,
    /// User id (as a ticket would name it).
    #[arg(long, value_name = "ID")]
    pub user: String,
    /// Service id.
    #[arg(long, value_name = "ID")]
    pub service: String,
    /// The ticket carries two-factor authentication.
    #[arg(long)]
    pub mfa: bool,
    /// On-site consent is active on the device.
    #[arg(long)]
    pub consent: bool,
    /// VPN destination inside the machine network.
    #[arg(long, value_name = "IP:PORT")]
    pub destination: Option<std::net::SocketAddr>,
    /// When to ask (RFC 3339); default now.
    #[arg(long, value_name = "RFC3339", value_parser = crate::duration::parse_time)]
    pub at: Option<u64>,
    /// When the user authenticated (RFC 3339); default the --at time.
    #[arg(long, value_name = "RFC3339", value_parser = crate::duration::parse_time)]
    pub auth_time: Option<u64>,
    /// Trusted authority key (ed25519:.. or file), repeatable; default: the
    /// bundle's own signers (signatures checked, authority not).
    #[arg(long = "trust", value_name = "KEY")]
    pub trust: Vec<String>,
    /// Distinct trusted signers required (with --trust).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threshold: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run a parsed command, writing normal output to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen(a) => keys::keygen(&a, out),
        Command::Keys(c) => keys::run(c, out),
        Command::Bundle(BundleCommand::Build(a)) => bundle::build(&a, out),
        Command::Bundle(BundleCommand::Inspect(a)) => bundle::inspect(&a, out),
        Command::Ticket(TicketCommand::Issue(a)) => ticket::issue(&a, out),
        Command::Policy(PolicyCommand::Check(a)) => policy::check(&a, out),
        Command::Policy(PolicyCommand::Explain(a)) => policy::explain(&a, out),
        Command::Bundle(BundleCommand::Push(a)) if a.relay.is_some() => {
            connect::run_relay_push(&a.file, a.relay, a.relay_key, a.wait, a.keys.is_some(), out)
        }
        Command::Bundle(BundleCommand::Push(a)) => match (a.gateway, a.gateway_key) {
            (Some(gateway), Some(gateway_key)) => connect::run_push(
                connect::PushArgs {
                    file: a.file,
                    gateway,
                    gateway_key,
                    identity: a.identity,
                    tls: a.tls,
                    keys: a.keys,
                },
                out,
            ),
            #[cfg(unix)]
            _ => exit_code(control::push_bundle(
                &a.socket.socket,
                &a.file,
                a.keys.as_deref(),
            )),
            #[cfg(not(unix))]
            _ => router_only(
                "bundle push FILE",
                "; from here, push over the tunnel port with --gateway HOST:PORT --gateway-key PUB",
            ),
        },
        Command::Device(c) => device::run(c, out),
        Command::Connect(a) => exit_code(connect::run_connect(a)?),
        #[cfg(unix)]
        Command::Control(c) => exit_code(control::run(c)),
        #[cfg(unix)]
        Command::DeviceKey(a) => connect::run_device_key(a, out),
        #[cfg(unix)]
        Command::Store(c) => store::run(c, out),
        #[cfg(unix)]
        Command::Relay(c) => relay::run(c, out),
        #[cfg(not(unix))]
        Command::Control(c) => router_only(c.name(), ""),
        #[cfg(not(unix))]
        Command::DeviceKey(_) => router_only("device-key", ""),
        #[cfg(not(unix))]
        Command::Store(_) => router_only("store", ""),
    }
}

/// The signing keys of `--key`, or `role`'s key in `--keys-dir`.
fn role_keys(
    paths: &[PathBuf],
    dir: Option<&std::path::Path>,
    role: edgegate_proto::KeyRole,
) -> anyhow::Result<Vec<ed25519_dalek::SigningKey>> {
    load_keys(&role_key_paths(paths, dir, role))
}

/// The files of `--key`, or `role`'s key file in `--keys-dir`.
fn role_key_paths(
    paths: &[PathBuf],
    dir: Option<&std::path::Path>,
    role: edgegate_proto::KeyRole,
) -> Vec<PathBuf> {
    match dir {
        Some(dir) => vec![dir.join(format!("{}.key", role.as_str()))],
        None => paths.to_vec(),
    }
}

/// The answer of a router-only command (the control socket, the daemon's
/// config and state) on a system that has no edgegated: one line, exit 1.
#[cfg(not(unix))]
fn router_only(command: &str, hint: &str) -> anyhow::Result<()> {
    anyhow::bail!(
        "`edgegate {command}` runs on the router, where edgegated and its control \
         socket are; it is not available on this system{hint}"
    )
}

/// Load each authority key file.
fn load_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<ed25519_dalek::SigningKey>> {
    paths
        .iter()
        .map(|p| crate::keyfile::load_signing_key(p).map_err(anyhow::Error::from))
        .collect()
}

/// A trust policy from `--trust` arguments.
fn trust_policy(keys: &[String], threshold: usize) -> anyhow::Result<edgegate_proto::TrustPolicy> {
    let keys = keys
        .iter()
        .map(|k| crate::keyfile::load_public_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(edgegate_proto::TrustPolicy::new(keys, threshold)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn tree_is_consistent() {
        Cli::command().debug_assert();
    }

    /// `--identity` and `--ticket` may be left out on Windows only (they
    /// default to %APPDATA%\edgegate there).
    #[test]
    fn connect_credentials_default_on_windows_only() {
        let parsed = Cli::try_parse_from([
            "edgegate",
            "connect",
            "--gateway",
            "127.0.0.1:4433",
            "--gateway-key",
            "ed25519:x",
        ]);
        assert_eq!(parsed.is_ok(), cfg!(windows), "{parsed:?}");
    }

    /// `device enroll` (a subcommand group) and `device-key` (a command of
    /// its own since DESIGN §6) live side by side.
    #[test]
    fn device_group_and_device_key_do_not_clash() {
        let cli = Cli::try_parse_from(["edgegate", "device-key", "--config", "c.toml"]).unwrap();
        assert!(matches!(cli.command, Command::DeviceKey(_)));
        let cli = Cli::try_parse_from([
            "edgegate",
            "device",
            "enroll",
            "--device",
            "r1",
            "--device-key",
            "ed25519:x",
            "--keys-dir",
            "keys",
            "--out",
            "r1.enroll",
        ])
        .unwrap();
        let Command::Device(device::DeviceCommand::Enroll(a)) = cli.command else {
            panic!("device enroll")
        };
        assert_eq!((a.valid_for, a.serial), (365 * 86_400, None));
        let cli = Cli::try_parse_from(["edgegate", "device", "inspect-enrollment", "f", "--json"])
            .unwrap();
        assert!(matches!(
            cli.command,
            Command::Device(device::DeviceCommand::InspectEnrollment(_))
        ));
    }

    #[test]
    fn parses_design_flags() {
        let cli = Cli::try_parse_from([
            "edgegate",
            "bundle",
            "build",
            "p.toml",
            "--device",
            "r1",
            "--serial",
            "3",
            "--valid-for",
            "30d",
            "--key",
            "a.key",
            "--key",
            "b.key",
            "--out",
            "b.bin",
        ])
        .unwrap();
        let Command::Bundle(BundleCommand::Build(a)) = cli.command else {
            panic!("build")
        };
        assert_eq!((a.serial, a.valid_for, a.keys.len()), (3, 30 * 86_400, 2));
        let err = Cli::try_parse_from([
            "edgegate",
            "ticket",
            "issue",
            "--user",
            "u",
            "--device",
            "d",
            "--client-key",
            "k",
            "--ttl",
            "8 hours",
            "--key",
            "a",
            "--out",
            "t",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("invalid duration"));
    }
}
