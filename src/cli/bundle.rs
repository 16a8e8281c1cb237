//! `edgegate bundle build` and `edgegate bundle inspect`.
//!
//! Inspect reads a bundle without trusting anyone: it decodes the envelope
//! and body, checks each signature against the key it names, and only with
//! `--trust` says whether the signatures meet a trust policy (exiting
//! non-zero when they do not, after printing the report).

use super::{BuildArgs, InspectArgs};
use crate::clock::Clock;
use crate::duration::format_time;
use crate::policy_file::{compile_for_device, PolicyFile};
use anyhow::{anyhow, bail, Context};
use edgegate_proto::bundle::{self, Bundle, Service, Target};
use edgegate_proto::envelope::{self, Purpose};
use edgegate_proto::{PublicKey, TrustPolicy, VerifiedBundle};
use serde_json::{json, Value};
use std::io::Write;

pub(super) fn build(a: &BuildArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let policy = PolicyFile::load(&a.policy)?;
    let keys = super::role_keys(
        &a.keys,
        a.keys_dir.as_deref(),
        edgegate_proto::KeyRole::Bundle,
    )?;
    let issued_at = a.issued_at.unwrap_or_else(|| Clock::system().wall());
    if a.valid_for == 0 {
        bail!("--valid-for must be longer than 0s: the bundle would expire as it is issued");
    }
    let not_after = issued_at
        .checked_add(a.valid_for)
        .filter(|t| *t <= crate::duration::LAST_RFC3339)
        .ok_or_else(|| anyhow!("--valid-for is too long: the bundle would expire after 9999"))?;
    let b = compile_for_device(&policy, &a.device, a.serial, issued_at, not_after)?;
    let refs: Vec<_> = keys.iter().collect();
    let bytes = bundle::seal(&b, &refs);
    // Check what we are about to hand out the way a device will.
    let signers: Vec<PublicKey> = keys.iter().map(crate::keyfile::public_key).collect();
    let trust = TrustPolicy::new(signers.clone(), signers.len())?;
    let verified =
        VerifiedBundle::verify(&bytes, &trust).context("the built bundle does not verify")?;
    // ...and compile it as the device will, so it is never refused as invalid-policy.
    super::evaluate::compile_verified(&verified)?;
    std::fs::write(&a.out, &bytes).map_err(|e| anyhow!("{}: {e}", a.out.display()))?;
    writeln!(
        out,
        "wrote {}: device {}, serial {}, valid {} to {}, {} bytes, {} signature(s)",
        a.out.display(),
        b.device_id,
        b.serial,
        format_time(issued_at),
        format_time(not_after),
        bytes.len(),
        signers.len()
    )?;
    for k in signers {
        writeln!(out, "signed by {k}")?;
    }
    Ok(())
}

/// A signer as `inspect` reports it.
struct Signer {
    key: PublicKey,
    valid: bool,
    trusted: Option<bool>,
}

pub(super) fn inspect(a: &InspectArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = a.file.display();
    let bytes = std::fs::read(&a.file).map_err(|e| anyhow!("{path}: {e}"))?;
    let (body, sigs) =
        envelope::parse(Purpose::Bundle, &bytes).map_err(|e| anyhow!("{path}: {e}"))?;
    let b = bundle::decode_body(&body).map_err(|e| {
        if edgegate_proto::ticket::decode_body(&body).is_ok() {
            anyhow!("{path}: a ticket, not a bundle (tickets go to `edgegate connect --ticket`)")
        } else {
            anyhow!("{path}: {e}")
        }
    })?;
    let trust = if a.trust.is_empty() {
        None
    } else {
        Some(super::trust_policy(&a.trust, a.threshold)?)
    };
    let signers: Vec<Signer> = sigs
        .iter()
        .map(|s| Signer {
            key: s.key,
            valid: signature_valid(&bytes, s.key),
            trusted: trust.as_ref().map(|t| t.keys().contains(&s.key)),
        })
        .collect();
    let verdict = trust
        .as_ref()
        .map(|t| VerifiedBundle::verify(&bytes, t).map(|v| v.signers().len()));
    if a.json {
        let mut v = summary_json(&b, bytes.len(), &signers);
        v["trust"] = match (&verdict, &trust) {
            (Some(Ok(n)), Some(t)) => {
                json!({"verified": true, "signers": n, "threshold": t.threshold()})
            }
            (Some(Err(e)), Some(t)) => {
                json!({"verified": false, "error": e.to_string(), "code": e.code(), "threshold": t.threshold()})
            }
            _ => Value::Null,
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        write_summary(out, &b, bytes.len(), &signers)?;
        match (&verdict, &trust) {
            (Some(Ok(n)), Some(t)) => writeln!(
                out,
                "trust:      verified ({n} trusted signer(s), {} required)",
                t.threshold()
            )?,
            (Some(Err(e)), _) => writeln!(out, "trust:      NOT verified: {e}")?,
            _ => writeln!(out, "trust:      not checked (give --trust KEY)")?,
        }
    }
    let broken = signers.iter().filter(|s| !s.valid).count();
    match verdict {
        Some(Err(e)) => Err(anyhow!(
            "{path}: signatures do not meet the trust policy: {e}"
        )),
        // Without --trust nothing is checked against an authority, but a
        // signature that does not verify even on its own is a broken bundle.
        _ if broken > 0 => Err(anyhow!(
            "{path}: {broken} of {} signature(s) do not verify (altered or damaged bundle)",
            signers.len()
        )),
        _ => Ok(()),
    }
}

/// Whether the envelope carries a valid signature by `key` (trusting only it).
fn signature_valid(bytes: &[u8], key: PublicKey) -> bool {
    TrustPolicy::new(vec![key], 1)
        .map(|t| envelope::open(Purpose::Bundle, bytes, &t).is_ok())
        .unwrap_or(false)
}

pub(super) fn target_text(t: &Target) -> String {
    match t {
        Target::Endpoint { host, port } if host.contains(':') => format!("[{host}]:{port}"),
        Target::Endpoint { host, port } => format!("{host}:{port}"),
        Target::Networks { networks, ports } => {
            let nets: Vec<String> = networks
                .iter()
                .map(|n| format!("{}/{}", n.addr, n.prefix))
                .collect();
            let mut s = nets.join(",");
            if !ports.is_empty() {
                let ports: Vec<String> = ports
                    .iter()
                    .map(|p| match p.start == p.end {
                        true => p.start.to_string(),
                        false => format!("{}-{}", p.start, p.end),
                    })
                    .collect();
                s.push_str(&format!(" ports {}", ports.join(",")));
            }
            s
        }
    }
}

fn service_json(s: &Service) -> Value {
    json!({
        "id": s.id, "name": s.name, "kind": s.kind.as_str(),
        "target": target_text(&s.target), "category": s.category,
    })
}

fn summary_json(b: &Bundle, size: usize, signers: &[Signer]) -> Value {
    json!({
        "format": 1,
        "size": size,
        "device_id": b.device_id,
        "serial": b.serial,
        "issued_at": format_time(b.issued_at),
        "not_after": format_time(b.not_after),
        "company": { "id": b.company.id, "name": b.company.name },
        "device": {
            "id": b.device.id, "name": b.device.name, "groups": b.device.groups,
            "services": b.device.services.iter().map(service_json).collect::<Vec<_>>(),
        },
        "counts": {
            "organizations": b.organizations.len(), "categories": b.categories.len(),
            "groups": b.groups.len(), "roles": b.roles.len(), "users": b.users.len(),
            "services": b.device.services.len(), "revoked_tickets": b.revoked_tickets.len(),
        },
        "signers": signers.iter().map(|s| json!({
            "key": s.key.to_string(), "signature_valid": s.valid, "trusted": s.trusted,
        })).collect::<Vec<_>>(),
    })
}

fn write_summary(
    out: &mut dyn Write,
    b: &Bundle,
    size: usize,
    signers: &[Signer],
) -> std::io::Result<()> {
    writeln!(out, "bundle:     format 1, {size} bytes")?;
    writeln!(
        out,
        "device:     {} ({}), groups: {}",
        b.device.id,
        b.device.name,
        b.device.groups.join(", ")
    )?;
    writeln!(out, "serial:     {}", b.serial)?;
    writeln!(
        out,
        "valid:      {} to {}",
        format_time(b.issued_at),
        format_time(b.not_after)
    )?;
    writeln!(out, "company:    {} ({})", b.company.id, b.company.name)?;
    writeln!(
        out,
        "contents:   {} organizations, {} categories, {} groups, {} roles, {} users, {} revoked tickets",
        b.organizations.len(),
        b.categories.len(),
        b.groups.len(),
        b.roles.len(),
        b.users.len(),
        b.revoked_tickets.len()
    )?;
    writeln!(out, "services:")?;
    for s in &b.device.services {
        writeln!(
            out,
            "  {:<16} {:<9} {:<16} {}",
            s.id,
            s.kind.as_str(),
            s.category,
            target_text(&s.target)
        )?;
    }
    writeln!(out, "signers:")?;
    for s in signers {
        let valid = if s.valid {
            "signature valid"
        } else {
            "signature INVALID"
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
