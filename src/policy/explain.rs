//! The recording tracer behind `explain`, the `Explanation` it produces (JSON
//! via serde) and its text rendering for `edgegate policy explain`.
//!
//! Nothing here decides: every verdict in the trace is reported by the
//! evaluation core as it runs. What this module adds for step 6 are the
//! compile-time facts about each role and membership of the user (does the
//! group reach the device, and through which chain; is it active), so that a
//! grant that was never a candidate can still be explained.

use super::compile::{CUser, Candidate, PolicyIndex, Source};
use super::eval::{GrantOutcome, Tracer, READ_NOT_ENFORCEABLE};
use super::Decision;
use edgegate_proto::{DenyReason, Level};
use serde::{Serialize, Serializer};
use std::fmt;

#[cfg(test)]
mod tests;

/// A decision with the trace of the checks that led to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The decision, serialized as `"allow"` or `"deny"`.
    #[serde(serialize_with = "ser_decision")]
    pub decision: Decision,
    /// The stable reason name, on deny.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_reason")]
    pub reason: Option<DenyReason>,
    /// The level, on allow.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_level")]
    pub level: Option<Level>,
    /// Every check made, in order; the last one decided a deny.
    pub trace: Vec<TraceEntry>,
}

/// One check of DESIGN §2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    /// Step number, 1 to 7.
    pub step: u8,
    /// Check name: `bundle`, `ticket-signature`, `ticket-device`,
    /// `client-key`, `ticket-window`, `ticket-revoked`, `user-known`,
    /// `user-active`, `logout-period`, `user-mfa`, `service-known`,
    /// `vpn-destination`, `vpn-destination-class`, `grants`, `limits`.
    pub check: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was compared, in words.
    pub detail: String,
    /// For `grants`: every company role and membership of the user.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceTrace>,
}

/// A company role or a membership considered in step 6.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceTrace {
    /// `company-role` or `membership`.
    pub kind: &'static str,
    /// Role id.
    pub role: String,
    /// Membership group id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Membership: whether the group is active (only its own status counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_active: Option<bool>,
    /// Membership: whether the group is a device group or an ancestor of one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reaches_device: Option<bool>,
    /// Membership reaching the device: the chain from the group down to the
    /// device group (`[group, child, ..., device group]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
    /// Whether its grants count on this device.
    pub applies: bool,
    /// The role demands 2FA.
    pub role_mfa: bool,
    /// The role demands on-site consent.
    pub role_site_consent: bool,
    /// Its grants and how each fared.
    pub grants: Vec<GrantTrace>,
}

/// One grant of a considered role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantTrace {
    /// Category id.
    pub category: String,
    /// Level granted.
    #[serde(serialize_with = "ser_level_plain")]
    pub level: Level,
    /// `match`, `other-category`, `not-applicable` (the membership does not
    /// count here), `needs-mfa`, `needs-site-consent`,
    /// `needs-mfa-and-site-consent`, `read-not-enforceable` (a `read` grant
    /// on a vpn service, where observe-only cannot be enforced).
    pub result: &'static str,
    /// Why, when the result alone does not say it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'static str>,
}

fn ser_decision<S: Serializer>(d: &Decision, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if d.is_allow() { "allow" } else { "deny" })
}

fn ser_reason<S: Serializer>(r: &Option<DenyReason>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.serialize_str(r.as_str()),
        None => s.serialize_none(),
    }
}

fn ser_level<S: Serializer>(l: &Option<Level>, s: S) -> Result<S::Ok, S::Error> {
    match l {
        Some(l) => s.serialize_str(l.as_str()),
        None => s.serialize_none(),
    }
}

fn ser_level_plain<S: Serializer>(l: &Level, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(l.as_str())
}

fn outcome_name(o: GrantOutcome) -> &'static str {
    match o {
        GrantOutcome::Match => "match",
        GrantOutcome::NeedsMfa => "needs-mfa",
        GrantOutcome::NeedsConsent => "needs-site-consent",
        GrantOutcome::NeedsBoth => "needs-mfa-and-site-consent",
        GrantOutcome::ReadNotEnforceable => "read-not-enforceable",
    }
}

fn outcome_detail(o: GrantOutcome) -> Option<&'static str> {
    match o {
        GrantOutcome::ReadNotEnforceable => Some(READ_NOT_ENFORCEABLE),
        _ => None,
    }
}

/// Records every check for `explain`.
#[derive(Default)]
pub(super) struct Recorder {
    trace: Vec<TraceEntry>,
    pending: Vec<SourceTrace>,
    src_start: u32,
}

impl Recorder {
    pub(super) fn finish(self, decision: Decision) -> Explanation {
        let (reason, level) = match decision {
            Decision::Allow(l) => (None, Some(l)),
            Decision::Deny(r) => (Some(r), None),
        };
        Explanation {
            decision,
            reason,
            level,
            trace: self.trace,
        }
    }
}

impl Tracer for Recorder {
    fn check(&mut self, step: u8, check: &'static str, passed: bool, detail: fmt::Arguments<'_>) {
        let sources = if step == 6 {
            std::mem::take(&mut self.pending)
        } else {
            Vec::new()
        };
        self.trace.push(TraceEntry {
            step,
            check,
            passed,
            detail: detail.to_string(),
            sources,
        });
    }

    fn sources(&mut self, ix: &PolicyIndex, user: &CUser, category: u32) {
        self.src_start = user.sources.start;
        self.pending = ix.sources[user.sources.range()]
            .iter()
            .map(|s| source_trace(ix, s, category))
            .collect();
    }

    fn grant(&mut self, c: &Candidate, outcome: GrantOutcome) {
        let at = (c.source - self.src_start) as usize;
        if let Some(g) = self
            .pending
            .get_mut(at)
            .and_then(|s| s.grants.get_mut(c.grant as usize))
        {
            g.result = outcome_name(outcome);
            g.detail = outcome_detail(outcome);
        }
    }
}

/// The compile-time facts of one source; grants that are candidates get
/// their verdict from the core through `Tracer::grant`.
fn source_trace(ix: &PolicyIndex, s: &Source, category: u32) -> SourceTrace {
    let role = &ix.roles[s.role as usize];
    let grants = role
        .grants
        .iter()
        .map(|&(cat, level)| GrantTrace {
            category: ix.categories[cat as usize].clone(),
            level,
            result: if cat != category {
                "other-category"
            } else if !s.applies {
                "not-applicable"
            } else {
                "unchecked"
            },
            detail: None,
        })
        .collect();
    let group = s.group.map(|g| &ix.groups[g as usize]);
    let via = s
        .group
        .and_then(|g| ix.reach_chain(g))
        .unwrap_or_default()
        .into_iter()
        .map(str::to_owned)
        .collect();
    SourceTrace {
        kind: if group.is_some() {
            "membership"
        } else {
            "company-role"
        },
        role: role.id.clone(),
        group: group.map(|g| g.id.clone()),
        group_active: group.map(|g| g.active),
        reaches_device: group.map(|g| g.reach.is_some()),
        via,
        applies: s.applies,
        role_mfa: role.mfa,
        role_site_consent: role.consent,
        grants,
    }
}

impl fmt::Display for Explanation {
    /// The text form printed by `edgegate policy explain`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.decision)?;
        for e in &self.trace {
            let mark = if e.passed { "ok  " } else { "FAIL" };
            writeln!(f, "  {} {:<16} {mark} {}", e.step, e.check, e.detail)?;
            for s in &e.sources {
                write_source(f, s)?;
            }
        }
        Ok(())
    }
}

fn write_source(f: &mut fmt::Formatter<'_>, s: &SourceTrace) -> fmt::Result {
    let mut demands = String::new();
    if s.role_mfa {
        demands.push_str(", needs 2FA");
    }
    if s.role_site_consent {
        demands.push_str(", needs site consent");
    }
    match &s.group {
        None => writeln!(f, "      company role {}{demands}", s.role)?,
        Some(g) => {
            let active = if s.group_active == Some(true) {
                "active"
            } else {
                "inactive"
            };
            let reach = if s.via.is_empty() {
                "does not reach this device".to_owned()
            } else {
                format!("reaches this device via {}", s.via.join(" > "))
            };
            writeln!(
                f,
                "      membership {g} as {}{demands}: group {active}, {reach}",
                s.role
            )?;
        }
    }
    for g in &s.grants {
        write!(f, "        {} ({}): {}", g.category, g.level, g.result)?;
        match g.detail {
            Some(d) => writeln!(f, " ({d})")?,
            None => writeln!(f)?,
        }
    }
    Ok(())
}
