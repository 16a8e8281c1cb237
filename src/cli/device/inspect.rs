//! `edgegate device inspect-enrollment FILE`: an enrollment without
//! trusting anyone (device, key, serial, dates and whether they hold now,
//! each signature checked against the key it names), and with `--trust`
//! whether a relay trusting those enroll keys accepts it now; as
//! `bundle inspect` does for bundles, a refusal is reported and exits
//! non-zero.

use super::InspectEnrollmentArgs;
use crate::clock::Clock;
use crate::duration::format_time;
use anyhow::{anyhow, Context};
use edgegate_proto::authority::Delivery;
use edgegate_proto::enrollment::{self, Enrollment, EnrollmentError};
use edgegate_proto::envelope::{self, Purpose};
use edgegate_proto::{PublicKey, TrustPolicy, VerifiedEnrollment};
use serde_json::{json, Value};
use std::io::Write;

/// A signer as `inspect-enrollment` reports it.
struct Signer {
    key: PublicKey,
    valid: bool,
    trusted: Option<bool>,
}

pub(super) fn inspect(a: &InspectEnrollmentArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = a.file.display();
    let bytes = std::fs::read(&a.file).with_context(|| path.to_string())?;
    let e = decode(&bytes).map_err(|e| anyhow!("{path}: {e}"))?;
    let (_, sigs) = envelope::parse(Purpose::Enroll, &bytes)?;
    let trust = match a.trust.is_empty() {
        true => None,
        false => Some(crate::cli::trust_policy(&a.trust, a.threshold)?),
    };
    let signers: Vec<Signer> = sigs
        .iter()
        .map(|s| Signer {
            key: s.key,
            valid: signature_valid(&bytes, s.key),
            trusted: trust.as_ref().map(|t| t.keys().contains(&s.key)),
        })
        .collect();
    let now = Clock::system().wall();
    let verdict = trust
        .as_ref()
        .map(|t| VerifiedEnrollment::verify_policy(&bytes, t, now));
    if a.json {
        let mut v = summary_json(&e, bytes.len(), &signers, now);
        v["trust"] = match (&verdict, &trust) {
            (Some(Ok(v)), Some(t)) => {
                json!({"verified": true, "signers": v.signers().len(), "threshold": t.threshold()})
            }
            (Some(Err(err)), Some(t)) => {
                json!({"verified": false, "error": err.to_string(), "code": err.code(), "threshold": t.threshold()})
            }
            _ => Value::Null,
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        write_summary(out, &e, bytes.len(), &signers, now)?;
        match (&verdict, &trust) {
            (Some(Ok(v)), Some(t)) => writeln!(
                out,
                "trust:      accepted ({} trusted signer(s), {} required)",
                v.signers().len(),
                t.threshold()
            )?,
            (Some(Err(err)), _) => writeln!(out, "trust:      REFUSED: {}: {err}", err.code())?,
            _ => writeln!(out, "trust:      not checked (give --trust KEY)")?,
        }
    }
    let broken = signers.iter().filter(|s| !s.valid).count();
    match verdict {
        Some(Err(err)) => Err(anyhow!("{path}: a relay refuses it: {}: {err}", err.code())),
        _ if broken > 0 => Err(anyhow!(
            "{path}: {broken} of {} signature(s) do not verify (altered or damaged enrollment)",
            signers.len()
        )),
        _ => Ok(()),
    }
}

/// The enrollment in `bytes`, or what the file is instead.
fn decode(bytes: &[u8]) -> Result<Enrollment, String> {
    if let Ok(Delivery::Keys { .. }) = Delivery::classify(bytes) {
        return Err("a key statement, not an enrollment (`edgegate keys inspect`)".into());
    }
    let (body, _) = envelope::parse(Purpose::Enroll, bytes).map_err(|e| e.to_string())?;
    enrollment::decode_body(&body).map_err(|e| match e {
        EnrollmentError::Body(_) if edgegate_proto::bundle::decode_body(&body).is_ok() => {
            "a bundle, not an enrollment (`edgegate bundle inspect`)".to_string()
        }
        EnrollmentError::Body(_) if edgegate_proto::ticket::decode_body(&body).is_ok() => {
            "a ticket, not an enrollment".to_string()
        }
        e => e.to_string(),
    })
}

/// Whether the envelope carries a valid signature by `key` (trusting only it).
fn signature_valid(bytes: &[u8], key: PublicKey) -> bool {
    TrustPolicy::new(vec![key], 1)
        .map(|t| envelope::open(Purpose::Enroll, bytes, &t).is_ok())
        .unwrap_or(false)
}

/// `valid`, `expired` or `not-yet-valid` at `now`.
fn state(e: &Enrollment, now: u64) -> &'static str {
    if now >= e.expires_at {
        "expired"
    } else if e.issued_at > now.saturating_add(enrollment::MAX_SKEW) {
        "not-yet-valid"
    } else {
        "valid"
    }
}

fn summary_json(e: &Enrollment, size: usize, signers: &[Signer], now: u64) -> Value {
    json!({
        "format": 1,
        "size": size,
        "device_id": e.device_id,
        "device_key": e.device_key.to_string(),
        "serial": e.serial,
        "issued_at": format_time(e.issued_at),
        "expires_at": format_time(e.expires_at),
        "state": state(e, now),
        "signers": signers.iter().map(|s| json!({
            "key": s.key.to_string(), "signature_valid": s.valid, "trusted": s.trusted,
        })).collect::<Vec<_>>(),
    })
}

fn write_summary(
    out: &mut dyn Write,
    e: &Enrollment,
    size: usize,
    signers: &[Signer],
    now: u64,
) -> std::io::Result<()> {
    writeln!(out, "enrollment: format 1, {size} bytes")?;
    writeln!(out, "device:     {}", e.device_id)?;
    writeln!(out, "device key: {}", e.device_key)?;
    writeln!(out, "serial:     {}", e.serial)?;
    let state = match state(e, now) {
        "valid" => "valid now",
        "expired" => "EXPIRED",
        _ => "NOT YET VALID",
    };
    writeln!(
        out,
        "valid:      {} to {} ({state})",
        format_time(e.issued_at),
        format_time(e.expires_at)
    )?;
    writeln!(out, "signers:")?;
    for s in signers {
        let valid = match s.valid {
            true => "signature valid",
            false => "signature INVALID",
        };
        let trusted = match s.trusted {
            Some(true) => ", trusted",
            Some(false) => ", not trusted",
            None => "",
        };
        writeln!(out, "  {}  {valid}{trusted}", s.key)?;
    }
    Ok(())
}
