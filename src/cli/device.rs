//! `edgegate device enroll` and `edgegate device inspect-enrollment`: the
//! authority's signed statement "device ID has key K" that a router
//! presents to relays (DESIGN §8; format `proto/README.md` §4c).
//!
//! Enrolling is an authoring command, like `bundle build`: it runs where
//! the enroll key is (the cloud), needs no router and builds for Windows.
//! It signs with the enroll role's key (`--keys-dir DIR` takes
//! `DIR/enroll.key`; `--key FILE` any key, e.g. the flat authority key
//! before any key statement) and refuses a key that the keys directory's
//! statement names for another role. `edgegate device-key` (the router's
//! own key) is another command and is unchanged.

use crate::clock::Clock;
use crate::duration::{format_time, parse_duration, parse_time, LAST_RFC3339};
use crate::keyfile;
use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use ed25519_dalek::SigningKey;
use edgegate_proto::enrollment::{self, Enrollment};
use edgegate_proto::{KeyRole, PublicKey, TrustPolicy, VerifiedEnrollment};
use std::io::Write;
use std::path::{Path, PathBuf};

mod inspect;

/// `edgegate device ...`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Sign an enrollment: "device ID has key K", what a router presents to
    /// the relays it registers with.
    Enroll(EnrollArgs),
    /// Show an enrollment file: device, key, serial, dates, signers.
    InspectEnrollment(InspectEnrollmentArgs),
}

/// `edgegate device enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The device id (as bundles and tickets name it).
    #[arg(long, value_name = "ID")]
    pub device: String,
    /// The device's public key (`edgegate device-key` on the router):
    /// ed25519:.., or a file holding it or the private key.
    #[arg(long, value_name = "PUB|FILE")]
    pub device_key: String,
    /// Signing key: the enroll role's (keys/enroll.key), or, before any key
    /// statement, the authority key relays trust; repeat for a threshold.
    #[arg(
        long = "key",
        value_name = "AUTHORITY.key",
        required_unless_present = "keys_dir"
    )]
    pub keys: Vec<PathBuf>,
    /// Sign with the enroll key of this keys directory (`edgegate keys init`).
    #[arg(long, value_name = "DIR", conflicts_with = "keys")]
    pub keys_dir: Option<PathBuf>,
    /// How long relays accept the enrollment, e.g. 365d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "365d")]
    pub valid_for: u64,
    /// Orders enrollments of one device (a higher one replaces a lower);
    /// default the issue time in Unix seconds.
    #[arg(long, value_name = "N")]
    pub serial: Option<u64>,
    /// Issue time (RFC 3339); default now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub issued_at: Option<u64>,
    /// Where to write the signed enrollment.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `edgegate device inspect-enrollment`.
#[derive(Debug, Args)]
pub struct InspectEnrollmentArgs {
    /// The enrollment file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// A trusted enroll key (ed25519:.. or a file); repeatable. With it,
    /// reports whether a relay trusting these keys accepts it now.
    #[arg(long = "trust", value_name = "KEY")]
    pub trust: Vec<String>,
    /// Distinct trusted signers required (with --trust).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threshold: usize,
}

pub(super) fn run(c: DeviceCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match c {
        DeviceCommand::Enroll(a) => enroll(&a, out),
        DeviceCommand::InspectEnrollment(a) => inspect::inspect(&a, out),
    }
}

fn enroll(a: &EnrollArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let device_key =
        keyfile::load_public_key(&a.device_key).with_context(|| "--device-key".to_string())?;
    let keys = signing_keys(a)?;
    let issued_at = a.issued_at.unwrap_or_else(|| Clock::system().wall());
    if a.valid_for == 0 {
        bail!("--valid-for must be longer than 0s: the enrollment would expire as it is issued");
    }
    let expires_at = issued_at
        .checked_add(a.valid_for)
        .filter(|t| *t <= LAST_RFC3339)
        .ok_or_else(|| {
            anyhow!("--valid-for is too long: the enrollment would expire after 9999")
        })?;
    let e = Enrollment {
        device_id: a.device.clone(),
        device_key,
        serial: a.serial.unwrap_or(issued_at),
        issued_at,
        expires_at,
    };
    enrollment::validate(&e).context("--device")?;
    let refs: Vec<&SigningKey> = keys.iter().collect();
    let bytes = enrollment::seal(&e, &refs);
    // Check what we hand out the way a relay will.
    let signers: Vec<PublicKey> = keys.iter().map(keyfile::public_key).collect();
    let trust = TrustPolicy::new(signers.clone(), signers.len())?;
    VerifiedEnrollment::verify_policy(&bytes, &trust, issued_at)
        .context("the signed enrollment does not verify")?;
    std::fs::write(&a.out, &bytes).with_context(|| a.out.display().to_string())?;
    let by: Vec<String> = signers.iter().map(ToString::to_string).collect();
    writeln!(
        out,
        "wrote {}: device {} has key {}, serial {}, valid until {}, signed by {}",
        a.out.display(),
        e.device_id,
        e.device_key,
        e.serial,
        format_time(e.expires_at),
        by.join(" ")
    )?;
    Ok(())
}

/// The keys of `--key`, or `--keys-dir`'s enroll key; each checked against
/// the keys directory's statement, where there is one.
fn signing_keys(a: &EnrollArgs) -> anyhow::Result<Vec<SigningKey>> {
    let paths = super::role_key_paths(&a.keys, a.keys_dir.as_deref(), KeyRole::Enroll);
    let mut keys = Vec::new();
    for path in &paths {
        let key = keyfile::load_signing_key(path)?;
        check_role(path, &keyfile::public_key(&key))?;
        keys.push(key);
    }
    Ok(keys)
}

/// A key file that sits in a keys directory (a `keys.statement` beside it)
/// must be an enroll key of that statement: signing with its bundle or
/// ticket key (or the root) makes an enrollment no relay following the
/// statement accepts.
fn check_role(path: &Path, key: &PublicKey) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let statement_path = dir.join("keys.statement");
    if !statement_path.exists() {
        return Ok(());
    }
    let s = super::keys::read_statement(&statement_path)?;
    if s.enroll.keys.contains(key) {
        return Ok(());
    }
    let held = KeyRole::ALL
        .into_iter()
        .filter(|r| s.role(*r).keys.contains(key))
        .map(KeyRole::as_str)
        .collect::<Vec<_>>();
    let what = match held.is_empty() {
        true => "not a key of".to_string(),
        false => format!("the {} key of", held.join(" and ")),
    };
    bail!(
        "{} is {what} {} (version {}), not an enroll key: sign with {} (or --keys-dir {})",
        path.display(),
        statement_path.display(),
        s.version,
        dir.join("enroll.key").display(),
        dir.display()
    )
}
