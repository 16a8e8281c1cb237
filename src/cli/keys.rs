//! `edgegate keygen` and the authority's keys: `edgegate keys init`,
//! `keys rotate` and `keys inspect` (DESIGN §3 as extended by `docs/trust.md`).
//!
//! A keys directory holds one private key per role (`root.key`,
//! `bundle.key`, `ticket.key`, `enroll.key`; the root belongs offline once
//! the first statement is signed), the statements signed so far
//! (`keys-N.statement`) and the newest one again as `keys.statement`. A
//! statement file is a keys delivery (`edgegate_proto::authority`): what
//! `edgegate bundle push` sends as it is, or with `--keys` alongside a bundle.

use super::KeygenArgs;
use crate::clock::Clock;
use crate::duration::{format_time, parse_duration, parse_time};
use crate::keyfile;
use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use ed25519_dalek::SigningKey;
use edgegate_proto::authority::{
    self, encode_keys_delivery, Delivery, KeyStatement, Recovery, RoleKeys,
};
use edgegate_proto::envelope::{self, Purpose};
use edgegate_proto::KeyRole;
use std::io::Write;
use std::path::{Path, PathBuf};

mod inspect;

pub(super) use inspect::inspect;

pub(super) fn keygen(a: &KeygenArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let key = keyfile::generate(&a.out)?;
    writeln!(out, "{}", keyfile::public_key(&key))?;
    Ok(())
}

/// `edgegate keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a root key (or take an existing one) and one key per online
    /// role, and the first key statement, signed by the root.
    Init(InitArgs),
    /// New keys for some roles (or the root), in the next statement; a
    /// recovery of the serial and time floor rides along if asked.
    Rotate(RotateArgs),
    /// Show a key statement file: version, dates, each role's keys,
    /// recovery, signers.
    Inspect(KeysInspectArgs),
}

/// `edgegate keys init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The keys directory to create (it must not hold keys yet).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// An existing key to use as the root (e.g. the authority key routers
    /// already trust, to migrate them); default a new DIR/root.key.
    #[arg(long, value_name = "KEY")]
    pub root: Option<PathBuf>,
    /// How long routers accept the statement, e.g. 365d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "365d")]
    pub valid_for: u64,
}

/// `edgegate keys rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The keys directory (`keys init`).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// A role to give a new key: root, bundle, ticket or enroll; repeatable.
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<KeyRole>,
    /// The current root key (brought from where it is kept offline);
    /// default DIR/root.key. A new root (`--role root`) is written to
    /// DIR/root.key.
    #[arg(long, value_name = "KEY")]
    pub root: Option<PathBuf>,
    /// Recovery: the serial a bundle must exceed from now on (the bundle in
    /// force is dropped). Only with `--role bundle`: the leaked bundle key's
    /// older bundles must not come back.
    #[arg(long, value_name = "N", requires = "roles")]
    pub reset_serial: Option<u64>,
    /// Recovery: set the routers' time floor to this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub reset_floor: Option<u64>,
    /// How long routers accept the statement, e.g. 365d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "365d")]
    pub valid_for: u64,
}

/// `edgegate keys inspect`.
#[derive(Debug, Args)]
pub struct KeysInspectArgs {
    /// A key statement file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(c: KeysCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match c {
        KeysCommand::Init(a) => init(&a, out),
        KeysCommand::Rotate(a) => rotate(&a, out),
        KeysCommand::Inspect(a) => inspect(&a, out),
    }
}

fn key_path(dir: &Path, role: KeyRole) -> PathBuf {
    dir.join(format!("{}.key", role.as_str()))
}

fn one(key: &SigningKey) -> RoleKeys {
    RoleKeys {
        keys: vec![keyfile::public_key(key)],
        threshold: 1,
    }
}

fn init(a: &InitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    keyfile::create_key_dir(&a.dir).with_context(|| a.dir.display().to_string())?;
    let root = match &a.root {
        Some(p) => keyfile::load_signing_key(p)?,
        None => keyfile::generate(&key_path(&a.dir, KeyRole::Root))?,
    };
    let mut online = Vec::new();
    for role in [KeyRole::Bundle, KeyRole::Ticket, KeyRole::Enroll] {
        online.push(keyfile::generate(&key_path(&a.dir, role))?);
    }
    let now = Clock::system().wall();
    let s = KeyStatement {
        version: 1,
        issued_at: now,
        expires_at: expiry(now, a.valid_for)?,
        root: one(&root),
        bundle: one(&online[0]),
        ticket: one(&online[1]),
        enroll: one(&online[2]),
        recovery: None,
    };
    let path = write_statement(&a.dir, &s, &[&root])?;
    report(&s, &path, out)?;
    writeln!(
        out,
        "routers pin the root key in trusted_keys; keep {} offline",
        a.root
            .as_deref()
            .unwrap_or(&key_path(&a.dir, KeyRole::Root))
            .display()
    )?;
    Ok(())
}

fn expiry(now: u64, valid_for: u64) -> anyhow::Result<u64> {
    if valid_for == 0 {
        bail!("--valid-for must be longer than 0s");
    }
    now.checked_add(valid_for)
        .filter(|t| *t <= crate::duration::LAST_RFC3339)
        .ok_or_else(|| anyhow!("--valid-for is too long: the statement would expire after 9999"))
}

fn rotate(a: &RotateArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if a.roles.is_empty() && a.reset_floor.is_none() {
        bail!("nothing to do: name a --role to rotate, or --reset-floor");
    }
    if a.reset_serial.is_some() && !a.roles.contains(&KeyRole::Bundle) {
        bail!(
            "--reset-serial needs --role bundle: resetting the serial under the same bundle \
             key would let its older bundles be installed again"
        );
    }
    let old = read_statement(&a.dir.join("keys.statement"))?;
    let root = current_root(a, &old)?;
    let now = Clock::system().wall();
    let mut s = KeyStatement {
        version: old.version + 1,
        issued_at: now,
        expires_at: expiry(now, a.valid_for)?,
        recovery: None,
        ..old.clone()
    };
    let new_root = new_keys(a, old.version, &mut s)?;
    if a.reset_serial.is_some() || a.reset_floor.is_some() {
        s.recovery = Some(Recovery {
            serial: a.reset_serial,
            time_floor: a.reset_floor,
        });
    }
    // A root rotation is signed by the old and the new root.
    let signers: Vec<&SigningKey> = std::iter::once(&root).chain(new_root.as_ref()).collect();
    let path = write_statement(&a.dir, &s, &signers)?;
    report(&s, &path, out)
}

/// The root key that signed `old` (`--root`, or DIR/root.key).
fn current_root(a: &RotateArgs, old: &KeyStatement) -> anyhow::Result<SigningKey> {
    let path = a
        .root
        .clone()
        .unwrap_or_else(|| key_path(&a.dir, KeyRole::Root));
    let root = keyfile::load_signing_key(&path)?;
    if one(&root) != old.root {
        bail!(
            "{} is not the root of {} (version {})",
            path.display(),
            a.dir.join("keys.statement").display(),
            old.version
        );
    }
    Ok(root)
}

/// A new key for each role of `--role`, named in `s`; the new root, if any.
fn new_keys(
    a: &RotateArgs,
    version: u64,
    s: &mut KeyStatement,
) -> anyhow::Result<Option<SigningKey>> {
    let mut new_root = None;
    for &role in &a.roles {
        let key = match role {
            // A root kept elsewhere (`--root`) stays where it is.
            KeyRole::Root if !key_path(&a.dir, KeyRole::Root).exists() => {
                keyfile::generate(&key_path(&a.dir, KeyRole::Root))?
            }
            _ => replace_key(&a.dir, role, version)?,
        };
        let keys = one(&key);
        match role {
            KeyRole::Root => {
                s.root = keys;
                new_root = Some(key);
            }
            KeyRole::Bundle => s.bundle = keys,
            KeyRole::Ticket => s.ticket = keys,
            KeyRole::Enroll => s.enroll = keys,
        }
    }
    Ok(new_root)
}

/// Move `DIR/ROLE.key` aside as `DIR/ROLE.key.vN` and make a new one.
fn replace_key(dir: &Path, role: KeyRole, version: u64) -> anyhow::Result<SigningKey> {
    let path = key_path(dir, role);
    let aside = dir.join(format!("{}.key.v{version}", role.as_str()));
    if aside.exists() {
        bail!("{}: already exists", aside.display());
    }
    std::fs::rename(&path, &aside).with_context(|| format!("moving {} aside", path.display()))?;
    Ok(keyfile::generate(&path)?)
}

/// The statement of a statement file (a keys delivery, or a bare
/// statement envelope), decoded without verifying anyone's signature.
pub(super) fn read_statement(path: &Path) -> anyhow::Result<KeyStatement> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    let (body, _) = statement_envelope(&bytes, path)?;
    authority::decode_body(&body).with_context(|| path.display().to_string())
}

/// The statement envelope's body and signatures in a statement file.
pub(super) fn statement_envelope(
    bytes: &[u8],
    path: &Path,
) -> anyhow::Result<(Vec<u8>, Vec<envelope::SignatureEntry>)> {
    let raw = match Delivery::classify(bytes) {
        Ok(Delivery::Keys { statement, .. }) => statement,
        // A bare statement envelope (its tag is the envelope's, 0).
        Ok(Delivery::Bundle(b)) => b,
        Err(e) => bail!("{}: not a key statement file: {e}", path.display()),
    };
    envelope::parse(Purpose::Keys, raw).with_context(|| path.display().to_string())
}

/// Write `s` signed by `signers` as `DIR/keys-N.statement` and
/// `DIR/keys.statement`; returns the first.
fn write_statement(
    dir: &Path,
    s: &KeyStatement,
    signers: &[&SigningKey],
) -> anyhow::Result<PathBuf> {
    let bytes = encode_keys_delivery(&authority::seal(s, signers), None);
    let path = dir.join(format!("keys-{}.statement", s.version));
    std::fs::write(&path, &bytes).with_context(|| path.display().to_string())?;
    let latest = dir.join("keys.statement");
    let tmp = dir.join("keys.statement.tmp");
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, &latest))
        .with_context(|| latest.display().to_string())?;
    Ok(path)
}

fn report(s: &KeyStatement, path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    for role in KeyRole::ALL {
        let keys: Vec<String> = s.role(role).keys.iter().map(|k| k.to_string()).collect();
        writeln!(out, "{:<6} {}", role.as_str(), keys.join(" "))?;
    }
    if let Some(r) = &s.recovery {
        writeln!(out, "recovery: {}", inspect::recovery_text(r))?;
    }
    writeln!(
        out,
        "wrote {}: key statement version {}, accepted until {}; push it with \
         `edgegate bundle push {}` (or with --keys beside a bundle)",
        path.display(),
        s.version,
        format_time(s.expires_at),
        path.display()
    )?;
    Ok(())
}
