//! How audit records look outside sled: a `tracing` event per append, one
//! text line per record (`edgegate audit`), one JSON object per record
//! (`edgegate audit --json`). All three come from the same field list.

use edgegate_proto::audit::{AuditEvent, AuditRecord, Outcome, RecoveryApplied, StrangerSummary};

/// A field value: text or a number (kept apart so JSON gets numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Text.
    Str(String),
    /// A number.
    Num(u64),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Str(s) if s.is_empty() || s.contains([' ', '"', '=']) => write!(f, "{s:?}"),
            Field::Str(s) => f.write_str(s),
            Field::Num(n) => write!(f, "{n}"),
        }
    }
}

/// Stable kebab-case name of the event kind, e.g. `stream-close`.
pub fn kind(ev: &AuditEvent) -> &'static str {
    match ev {
        AuditEvent::Decision { .. } => "decision",
        AuditEvent::SessionOpen { .. } => "session-open",
        AuditEvent::SessionClose { .. } => "session-close",
        AuditEvent::StreamOpen { .. } => "stream-open",
        AuditEvent::StreamClose { .. } => "stream-close",
        AuditEvent::BundleAccepted { .. } => "bundle-accepted",
        AuditEvent::BundleRejected { .. } => "bundle-rejected",
        AuditEvent::ConsentGranted { .. } => "consent-granted",
        AuditEvent::ConsentRevoked { .. } => "consent-revoked",
        AuditEvent::ConsentExpired => "consent-expired",
        AuditEvent::DaemonStart { .. } => "daemon-start",
        AuditEvent::DaemonStop => "daemon-stop",
        AuditEvent::WatermarkReset { .. } => "watermark-reset",
        AuditEvent::KeysAccepted { .. } => "keys-accepted",
        AuditEvent::KeysRejected { .. } => "keys-rejected",
        AuditEvent::FlowsDenied { .. } => "flows-denied",
    }
}

fn s(v: impl Into<String>) -> Field {
    Field::Str(v.into())
}

fn opt(out: &mut Vec<(&'static str, Field)>, key: &'static str, v: &Option<String>) {
    if let Some(v) = v {
        out.push((key, s(v.as_str())));
    }
}

/// The event's fields in a fixed order; absent optional fields are left out.
pub fn fields(ev: &AuditEvent) -> Vec<(&'static str, Field)> {
    use AuditEvent as E;
    let mut out = Vec::new();
    match ev {
        E::Decision {
            session,
            user,
            service,
            destination,
            outcome,
        } => {
            out.push(("session", Field::Num(*session)));
            opt(&mut out, "user", user);
            opt(&mut out, "service", service);
            opt(&mut out, "destination", destination);
            match outcome {
                Outcome::Allow(l) => {
                    out.push(("decision", s("allow")));
                    out.push(("level", s(l.as_str())));
                }
                Outcome::Deny(r) => {
                    out.push(("decision", s("deny")));
                    out.push(("reason", s(r.as_str())));
                }
            }
        }
        E::SessionOpen {
            session,
            user,
            client_key,
            transport,
            peer,
        } => {
            out.push(("session", Field::Num(*session)));
            out.push(("user", s(user.as_str())));
            out.push(("client_key", s(client_key.to_string())));
            out.push(("transport", s(transport.as_str())));
            out.push(("peer", s(peer.as_str())));
        }
        E::SessionClose {
            session,
            user,
            reason,
            duration_ms,
        } => {
            out.push(("session", Field::Num(*session)));
            out.push(("user", s(user.as_str())));
            out.push(("reason", s(reason.name())));
            out.push(("duration_ms", Field::Num(*duration_ms)));
        }
        E::StreamOpen {
            session,
            user,
            service,
            destination,
            level,
        } => {
            out.push(("session", Field::Num(*session)));
            out.push(("user", s(user.as_str())));
            out.push(("service", s(service.as_str())));
            opt(&mut out, "destination", destination);
            out.push(("level", s(level.as_str())));
        }
        E::StreamClose {
            session,
            user,
            service,
            destination,
            bytes_up,
            bytes_down,
            duration_ms,
            reason,
        } => {
            out.push(("session", Field::Num(*session)));
            out.push(("user", s(user.as_str())));
            out.push(("service", s(service.as_str())));
            opt(&mut out, "destination", destination);
            out.push(("bytes_up", Field::Num(*bytes_up)));
            out.push(("bytes_down", Field::Num(*bytes_down)));
            out.push(("duration_ms", Field::Num(*duration_ms)));
            out.push(("reason", s(reason.name())));
        }
        E::BundleAccepted {
            serial,
            issued_at,
            not_after,
        } => {
            out.push(("serial", Field::Num(*serial)));
            out.push(("issued_at", Field::Num(*issued_at)));
            out.push(("not_after", Field::Num(*not_after)));
        }
        E::BundleRejected {
            code,
            message,
            serial,
        } => {
            out.push(("code", s(code.as_str())));
            out.push(("message", s(message.as_str())));
            if let Some(n) = serial {
                out.push(("serial", Field::Num(*n)));
            }
        }
        E::ConsentGranted { until, by_uid } => {
            match until {
                Some(t) => out.push(("until", Field::Num(*t))),
                None => out.push(("until", s("revoked"))),
            }
            out.push(("by_uid", Field::Num(u64::from(*by_uid))));
        }
        E::ConsentRevoked { by_uid } => out.push(("by_uid", Field::Num(u64::from(*by_uid)))),
        E::ConsentExpired | E::DaemonStop => {}
        E::DaemonStart { version } => out.push(("version", s(version.as_str()))),
        E::WatermarkReset {
            at,
            by_uid,
            serial,
            floor,
        } => {
            out.push(("at", Field::Num(*at)));
            out.push(("by_uid", Field::Num(u64::from(*by_uid))));
            match serial {
                Some(n) => out.push(("serial", Field::Num(*n))),
                None => out.push(("serial", s("none"))),
            }
            out.push(("floor", Field::Num(*floor)));
        }
        E::KeysAccepted {
            version,
            root_rotated,
            recovery,
        } => keys_accepted(&mut out, *version, *root_rotated, recovery),
        E::KeysRejected { code, message } => {
            out.push(("code", s(code.as_str())));
            out.push(("message", s(message.as_str())));
        }
        E::FlowsDenied {
            session,
            user,
            destination,
            reason,
            count,
        } => {
            out.push(("session", Field::Num(*session)));
            out.push(("user", s(user.as_str())));
            out.push(("destination", s(destination.as_str())));
            out.push(("reason", s(reason.as_str())));
            out.push(("count", Field::Num(*count)));
        }
    }
    out
}

fn keys_accepted(
    out: &mut Vec<(&'static str, Field)>,
    version: u64,
    root_rotated: bool,
    recovery: &Option<RecoveryApplied>,
) {
    let serial = |n: Option<u64>| n.map_or(s("none"), Field::Num);
    out.push(("version", Field::Num(version)));
    out.push(("root_rotated", s(if root_rotated { "yes" } else { "no" })));
    if let Some(r) = recovery {
        out.push(("serial_before", serial(r.serial_before)));
        out.push(("serial", serial(r.serial)));
        out.push(("floor_before", Field::Num(r.floor_before)));
        out.push(("floor", Field::Num(r.floor)));
    }
}

/// `key=value` pairs separated by spaces.
pub fn fields_text(ev: &AuditEvent) -> String {
    let parts: Vec<String> = fields(ev).iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(" ")
}

/// One human-readable line: `SEQ TIME KIND key=value...` (time in RFC 3339 UTC).
pub fn line(rec: &AuditRecord) -> String {
    let when = crate::duration::format_time(rec.time);
    let f = fields_text(&rec.event);
    let sep = if f.is_empty() { "" } else { " " };
    format!("{:>6} {when} {}{sep}{f}", rec.seq, kind(&rec.event))
}

/// One flat JSON object: `seq`, `time`, `event` (the kind), `prev_hash`
/// (hex) and the event's fields.
pub fn json(rec: &AuditRecord) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("seq".into(), rec.seq.into());
    m.insert("time".into(), rec.time.into());
    m.insert("event".into(), kind(&rec.event).into());
    for (k, v) in fields(&rec.event) {
        let v = match v {
            Field::Str(s) => serde_json::Value::from(s),
            Field::Num(n) => serde_json::Value::from(n),
        };
        m.insert(k.into(), v);
    }
    m.insert("prev_hash".into(), hex(&rec.prev_hash).into());
    serde_json::Value::Object(m)
}

/// One line per stranger summary: `MINUTE SOURCE refused-sessions=N
/// rejected-pushes=N garbage=N`.
pub fn stranger_line(s: &StrangerSummary) -> String {
    format!(
        "{} {} refused-sessions={} rejected-pushes={} garbage={}",
        crate::duration::format_time(s.minute),
        s.source,
        s.refused_sessions,
        s.rejected_pushes,
        s.garbage
    )
}

/// One JSON object per stranger summary.
pub fn stranger_json(s: &StrangerSummary) -> serde_json::Value {
    serde_json::json!({
        "minute": s.minute,
        "source": s.source,
        "refused_sessions": s.refused_sessions,
        "rejected_pushes": s.rejected_pushes,
        "garbage": s.garbage,
    })
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Emit the record as a tracing info event (target `edgegate::audit`).
pub(crate) fn trace(rec: &AuditRecord) {
    tracing::info!(
        target: "edgegate::audit",
        seq = rec.seq,
        event = kind(&rec.event),
        "{}",
        fields_text(&rec.event)
    );
}
