//! `edgegate keys inspect FILE`: a key statement file without trusting
//! anyone: its version, dates, each role's keys, the recovery it carries,
//! and who signed it (each signature checked against the key it names,
//! and whether that key is the statement's own root).

use super::{statement_envelope, KeysInspectArgs};
use crate::duration::format_time;
use anyhow::Context;
use edgegate_proto::authority::{self, Delivery, KeyStatement, Recovery};
use edgegate_proto::envelope::{self, Purpose, SignatureEntry};
use edgegate_proto::{KeyRole, TrustPolicy};
use serde_json::{json, Value};
use std::io::Write;

pub(in crate::cli) fn inspect(a: &KeysInspectArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let bytes = std::fs::read(&a.file).with_context(|| a.file.display().to_string())?;
    let (body, signatures) = statement_envelope(&bytes, &a.file)?;
    let s = authority::decode_body(&body).with_context(|| a.file.display().to_string())?;
    let bundle = match Delivery::classify(&bytes) {
        Ok(Delivery::Keys { bundle, .. }) => bundle.map(<[u8]>::len),
        _ => None,
    };
    let raw = envelope_bytes(&bytes);
    let signers: Vec<(String, bool, bool)> =
        signatures.iter().map(|e| signer(e, raw, &s)).collect();
    if a.json {
        writeln!(out, "{}", as_json(&s, &signers, bundle))?;
        return Ok(());
    }
    writeln!(
        out,
        "key statement version {}, issued {}, accepted until {}",
        s.version,
        format_time(s.issued_at),
        format_time(s.expires_at)
    )?;
    for role in KeyRole::ALL {
        let rk = s.role(role);
        let keys: Vec<String> = rk.keys.iter().map(ToString::to_string).collect();
        writeln!(
            out,
            "{:<6} {} of {}",
            role.as_str(),
            rk.threshold,
            keys.join(" ")
        )?;
    }
    if let Some(r) = &s.recovery {
        writeln!(out, "recovery: {}", recovery_text(r))?;
    }
    if let Some(n) = bundle {
        writeln!(out, "carries a bundle of {n} bytes")?;
    }
    for (key, valid, root) in signers {
        let what = match (valid, root) {
            (false, _) => "signature does not verify",
            (true, true) => "valid, a root key of this statement",
            (true, false) => "valid, not a root key of this statement (the previous root?)",
        };
        writeln!(out, "signed by {key}: {what}")?;
    }
    Ok(())
}

/// The statement envelope inside a statement file.
fn envelope_bytes(bytes: &[u8]) -> &[u8] {
    match Delivery::classify(bytes) {
        Ok(Delivery::Keys { statement, .. }) => statement,
        _ => bytes,
    }
}

/// `(key, signature valid, key is one of the statement's root keys)`.
fn signer(e: &SignatureEntry, raw: &[u8], s: &KeyStatement) -> (String, bool, bool) {
    let valid = TrustPolicy::new(vec![e.key], 1)
        .ok()
        .is_some_and(|t| envelope::open(Purpose::Keys, raw, &t).is_ok());
    (e.key.to_string(), valid, s.root.keys.contains(&e.key))
}

pub(super) fn recovery_text(r: &Recovery) -> String {
    let serial = r.serial.map_or("unchanged".to_string(), |n| {
        format!("reset to {n} (the bundle in force is dropped)")
    });
    let floor = r.time_floor.map_or("unchanged".to_string(), format_time);
    format!("serial {serial}, time floor {floor}")
}

fn as_json(s: &KeyStatement, signers: &[(String, bool, bool)], bundle: Option<usize>) -> Value {
    let roles: serde_json::Map<String, Value> = KeyRole::ALL
        .iter()
        .map(|&r| {
            let rk = s.role(r);
            let keys: Vec<String> = rk.keys.iter().map(ToString::to_string).collect();
            (
                r.as_str().to_string(),
                json!({"threshold": rk.threshold, "keys": keys}),
            )
        })
        .collect();
    let signers: Vec<Value> = signers
        .iter()
        .map(|(k, valid, root)| json!({"key": k, "valid": valid, "root": root}))
        .collect();
    json!({
        "version": s.version,
        "issued_at": s.issued_at,
        "expires_at": s.expires_at,
        "roles": roles,
        "recovery": s.recovery.as_ref().map(|r| json!({"serial": r.serial, "time_floor": r.time_floor})),
        "bundle_bytes": bundle,
        "signers": signers,
    })
}
