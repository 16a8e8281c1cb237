//! Text and JSON renderings of control-socket answers.

use crate::control::{ConsentInfo, SessionInfo, StatusInfo};
use edgegate_proto::control::KeysInfo;
use edgegate_proto::UnixTime;
use serde_json::{json, Value};
use std::fmt::Write as _;

pub(super) fn print_json(v: &Value) {
    emit(&format!("{v}\n"));
}

/// Write `text` to stdout. A closed stdout (the reader of a pipe exited)
/// ends the process quietly with success; another write error, with one
/// line and failure.
pub(super) fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing the output: {e}");
        std::process::exit(1);
    }
}

/// RFC 3339, seconds, UTC.
pub(super) fn timestamp(t: UnixTime) -> String {
    crate::duration::format_time(t)
}

/// A short span: `45s`, `3m`, `2h 5m`, `3d 4h`.
pub(super) fn span(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3_599 => format!("{m}m"),
        3_600..=86_399 if m == 0 => format!("{h}h"),
        3_600..=86_399 => format!("{h}h {m}m"),
        _ if h == 0 => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

/// `TIME (3m ago)` or `TIME (in 2h)`.
pub(super) fn when(t: UnixTime, now: UnixTime) -> String {
    let rel = if t <= now {
        format!("{} ago", span(now - t))
    } else {
        format!("in {}", span(t - now))
    };
    format!("{} ({rel})", timestamp(t))
}

pub(super) fn consent_text(c: &ConsentInfo, now: UnixTime) -> String {
    match (c.active, c.until) {
        (false, _) => "inactive".into(),
        (true, None) => "active until revoked".into(),
        (true, Some(t)) => format!("active until {}", when(t, now)),
    }
}

fn aligned(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{:<width$} {v}", format!("{k}:"));
    }
    out
}

#[cfg(test)]
pub(super) fn status_text(s: &StatusInfo) -> String {
    status_with_keys_text(s, None)
}

/// The status, with the authority keys in force when the daemon told them.
pub(super) fn status_with_keys_text(s: &StatusInfo, keys: Option<&KeysInfo>) -> String {
    let now = s.now;
    let mut rows = vec![
        ("device", s.device_id.clone()),
        ("version", s.version.clone()),
    ];
    match &s.bundle {
        None => rows.push((
            "bundle",
            "none (every request is denied: no-valid-bundle)".into(),
        )),
        Some(b) => {
            rows.push(("bundle serial", b.serial.to_string()));
            rows.push(("bundle issued", when(b.issued_at, now)));
            let expiry = if b.not_after <= now {
                format!(
                    "{} (expired {} ago)",
                    timestamp(b.not_after),
                    span(now - b.not_after)
                )
            } else {
                when(b.not_after, now)
            };
            rows.push(("bundle expires", expiry));
            rows.push(("bundle age", span(now.saturating_sub(b.issued_at))));
        }
    }
    rows.push(("time floor", when(s.time_floor, now)));
    rows.push(("consent", consent_text(&s.consent, now)));
    rows.push(("sessions", s.sessions.to_string()));
    rows.push(("listen quic", s.listen_quic.clone()));
    rows.push(("listen tls", s.listen_tls.clone()));
    if let Some(k) = keys {
        rows.extend(keys_rows(k, now));
    }
    aligned(&rows)
}

/// `key statement` (version, or none: the config's keys act for every
/// role) and one row per role: threshold and key fingerprints.
fn keys_rows(k: &KeysInfo, now: UnixTime) -> Vec<(&'static str, String)> {
    let statement = match (k.version, k.expires_at) {
        (0, _) => "none (the configured trusted_keys act as root and every role)".to_string(),
        (v, Some(t)) if t <= now => {
            format!("version {v}, expired {} (still in force)", when(t, now))
        }
        (v, Some(t)) => format!("version {v}, accepted until {}", when(t, now)),
        (v, None) => format!("version {v}"),
    };
    let mut rows = vec![("key statement", statement)];
    for r in &k.roles {
        let name = match r.role.as_str() {
            "root" => "root keys",
            "bundle" => "bundle keys",
            "ticket" => "ticket keys",
            _ => "enroll keys",
        };
        let keys: Vec<String> = r.keys.iter().map(fingerprint).collect();
        rows.push((name, format!("{} of {}", r.threshold, keys.join(" "))));
    }
    rows
}

/// A key's short form: its text form cut after 12 base64 characters
/// (72 bits), enough to tell keys apart on one router.
pub(super) fn fingerprint(k: &edgegate_proto::PublicKey) -> String {
    let text = k.to_string();
    format!("{}…", &text[..text.len().min("ed25519:".len() + 12)])
}

pub(super) fn keys_json(k: &KeysInfo) -> Value {
    let roles: serde_json::Map<String, Value> = k
        .roles
        .iter()
        .map(|r| {
            let keys: Vec<String> = r.keys.iter().map(ToString::to_string).collect();
            (
                r.role.clone(),
                json!({ "threshold": r.threshold, "keys": keys }),
            )
        })
        .collect();
    json!({ "version": k.version, "expires_at": k.expires_at, "roles": roles })
}

pub(super) fn status_json(s: &StatusInfo) -> Value {
    json!({
        "device_id": s.device_id,
        "version": s.version,
        "now": s.now,
        "time_floor": s.time_floor,
        "bundle": s.bundle.as_ref().map(|b| json!({
            "serial": b.serial,
            "issued_at": b.issued_at,
            "not_after": b.not_after,
            "age_secs": s.now.saturating_sub(b.issued_at),
            "expired": b.not_after <= s.now,
        })),
        "consent": consent_json(&s.consent),
        "sessions": s.sessions,
        "listen_quic": s.listen_quic,
        "listen_tls": s.listen_tls,
    })
}

fn consent_json(c: &ConsentInfo) -> Value {
    json!({ "active": c.active, "until": c.until, "remaining_secs": c.remaining_secs })
}

pub(super) fn sessions_text(list: &[SessionInfo], now: UnixTime) -> String {
    let mut out = String::new();
    for s in list {
        let ends = s
            .ends_at
            .map(|t| format!(", ends {}", when(t, now)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{} {} {} {} started {}{ends}, {} stream(s), key {}",
            s.id,
            s.user,
            s.transport.as_str(),
            s.peer,
            when(s.started, now),
            s.streams.len(),
            s.client_key
        );
        for st in &s.streams {
            let dest = st
                .destination
                .as_deref()
                .map(|d| format!(" -> {d}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    {}{dest} {} up {} down {} since {}",
                st.service,
                st.level,
                st.bytes_up,
                st.bytes_down,
                span(now.saturating_sub(st.started))
            );
        }
    }
    out
}

pub(super) fn session_json(s: &SessionInfo) -> Value {
    json!({
        "id": s.id,
        "user": s.user,
        "client_key": s.client_key.to_string(),
        "transport": s.transport.as_str(),
        "peer": s.peer,
        "started": s.started,
        "ends_at": s.ends_at,
        "streams": s.streams.iter().map(|st| json!({
            "service": st.service,
            "destination": st.destination,
            "level": st.level.as_str(),
            "bytes_up": st.bytes_up,
            "bytes_down": st.bytes_down,
            "started": st.started,
        })).collect::<Vec<_>>(),
    })
}
