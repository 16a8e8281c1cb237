//! The policy file (DESIGN §7): one company's users, groups, roles,
//! categories, devices and `[[test]]` expectations, in strict TOML.
//!
//! This module owns reading and validating the file and compiling it into the
//! `Bundle` of one device. Validation is complete before anything is built:
//! unknown keys, duplicate ids, dangling references, group cycles, misused
//! role scopes, bad grants, targets, statuses, durations and test questions
//! are all reported as `FILE:LINE: message`. It does not evaluate policy:
//! running the tests is `cli::policy`'s job, with the real evaluator.
//!
//! Defaults: `name` = id; group and user `status` = active; user `org` = the
//! company; `logout_period` = 12h (seed 004); grant level = manage; role and
//! user `mfa`, role `site_consent` = false. Organizations named by users but
//! not declared in `[[organization]]` exist implicitly, named after their id.

mod questions;
mod raw;
mod services;
mod validate;

use edgegate_proto::bundle::{Bundle, Category, Company, Device, Group, Organization, Role, User};
use edgegate_proto::ticket::TicketId;
use edgegate_proto::{DenyReason, Level, UnixTime};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// The default logout period when a user names none: 12 hours (seed 004).
pub const DEFAULT_LOGOUT_PERIOD: u64 = 12 * 3600;

/// When the user of every `[[test]]` authenticated: Monday
/// 2026-01-05T08:00:00Z. `after` counts from here; `at` instants in tests
/// should lie within a week before and 400 days after it (the test bundle's
/// validity).
pub const TEST_AUTH_TIME: u64 = 1_767_600_000;

/// When a test names neither `at` nor `after`: one minute after authentication.
pub const DEFAULT_TEST_AFTER: u64 = 60;

/// A validated policy file. Every reference in it resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    /// The path it was read from, as given (used in messages).
    pub path: String,
    /// The tenant.
    pub company: Company,
    /// Declared organizations, then implicit ones in order of first use.
    pub organizations: Vec<Organization>,
    /// Access categories.
    pub categories: Vec<Category>,
    /// Groups (a forest, checked acyclic).
    pub groups: Vec<Group>,
    /// Roles.
    pub roles: Vec<Role>,
    /// Users.
    pub users: Vec<User>,
    /// Devices of the company, each with its services.
    pub devices: Vec<Device>,
    /// Ticket ids revoked before their expiry (32 hex digits each).
    pub revoked_tickets: Vec<TicketId>,
    /// The file's own expectations.
    pub tests: Vec<PolicyTest>,
    /// Legal but suspicious things, each `FILE:LINE: message` (e.g. a `read`
    /// grant on a category holding a vpn service, which grants nothing there).
    pub warnings: Vec<String>,
}

/// One `[[test]]`: a question and the decision the file expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTest {
    /// Line of the test's `user` key, for messages.
    pub line: usize,
    /// User id (may be unknown only when `expect = "deny:unknown-user"`).
    pub user: String,
    /// Device id (always a device of the file).
    pub device: String,
    /// Service id (may be unknown only when `expect = "deny:unknown-service"`).
    pub service: String,
    /// Expected decision.
    pub expect: Expect,
    /// The ticket carries two-factor authentication.
    pub mfa: bool,
    /// On-site consent is active on the device.
    pub consent: bool,
    /// VPN destination.
    pub destination: Option<SocketAddr>,
    /// When the question is asked.
    pub when: TestTime,
}

/// When a test's question is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestTime {
    /// This many seconds after the user authenticated (`after = "13h"`).
    AfterAuth(u64),
    /// At this instant (`at = "RFC3339"`).
    At(UnixTime),
}

/// An expected decision: `allow`, `allow:read`, `allow:manage`, `deny:<reason>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Allowed; with a level if the test names one.
    Allow(Option<Level>),
    /// Denied with this reason.
    Deny(DenyReason),
}

impl Expect {
    /// Parse the `expect` text.
    pub fn parse(text: &str) -> Result<Expect, String> {
        let bad = || {
            format!(
                "expect {text:?} must be allow, allow:read, allow:manage or deny:<reason> \
                 (reasons: {})",
                DenyReason::ALL.map(|r| r.as_str()).join(", ")
            )
        };
        match text.split_once(':') {
            None if text == "allow" => Ok(Expect::Allow(None)),
            Some(("allow", level)) => Level::from_name(level)
                .map(|l| Expect::Allow(Some(l)))
                .ok_or_else(bad),
            Some(("deny", reason)) => DenyReason::from_name(reason)
                .map(Expect::Deny)
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }

    /// Whether an actual outcome (`Ok(level)` allowed, `Err(reason)` denied) meets it.
    pub fn matches(&self, actual: Result<Level, DenyReason>) -> bool {
        match (self, actual) {
            (Expect::Allow(None), Ok(_)) => true,
            (Expect::Allow(Some(want)), Ok(got)) => *want == got,
            (Expect::Deny(want), Err(got)) => *want == got,
            _ => false,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Allow(None) => f.write_str("allow"),
            Expect::Allow(Some(l)) => write!(f, "allow:{l}"),
            Expect::Deny(r) => write!(f, "deny:{r}"),
        }
    }
}

/// Why a policy file was refused: one line, `FILE:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFileError {
    /// The file, as given.
    pub path: String,
    /// 1-based line of the offending value, when known.
    pub line: Option<usize>,
    /// What is wrong, naming the item.
    pub message: String,
    /// How many further errors the file has (reported one at a time).
    pub more: usize,
}

impl fmt::Display for PolicyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path, self.message)?,
            None => write!(f, "{}: {}", self.path, self.message)?,
        }
        match self.more {
            0 => Ok(()),
            1 => f.write_str(" (and 1 more error)"),
            n => write!(f, " (and {n} more errors)"),
        }
    }
}

impl std::error::Error for PolicyFileError {}

impl PolicyFile {
    /// Read and validate the file at `path`.
    pub fn load(path: &Path) -> Result<PolicyFile, PolicyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyFileError {
            path: shown.clone(),
            line: None,
            message: e.to_string(),
            more: 0,
        })?;
        PolicyFile::parse(&text, &shown)
    }

    /// Validate `text`; `path` only names the file in messages.
    pub fn parse(text: &str, path: &str) -> Result<PolicyFile, PolicyFileError> {
        let error = |offset: Option<usize>, message: String, more: usize| PolicyFileError {
            path: path.to_string(),
            line: offset.map(|o| line_of(text, o)),
            message,
            more,
        };
        let raw: raw::RawFile = toml::from_str(text).map_err(|e| {
            let mut message = e.message().trim().replace('\n', " ");
            // serde's type errors name no key; find it from the span.
            let key = e
                .span()
                .and_then(|s| crate::toml_key::key_at(text, s.start));
            if let Some(key) = key.filter(|k| !message.contains(&format!("`{k}`"))) {
                message = format!("key `{key}`: {message}");
            }
            error(e.span().map(|s| s.start), message, 0)
        })?;
        validate::validate(raw, text, path).map_err(|mut errs| {
            errs.sort_by_key(|(offset, _)| *offset);
            let more = errs.len() - 1;
            let (offset, message) = errs.swap_remove(0);
            error(Some(offset), message, more)
        })
    }

    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.id == id)
    }
}

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The file names no device with this id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: no device {device:?} (devices: {known})")]
pub struct UnknownDevice {
    /// The policy file.
    pub path: String,
    /// The device asked for.
    pub device: String,
    /// The devices the file has, comma-separated.
    pub known: String,
}

/// Compile the policy for one device: the bundle carries the whole company
/// (organizations, categories, groups, roles, users) and that device.
pub fn compile_for_device(
    policy: &PolicyFile,
    device_id: &str,
    serial: u64,
    issued_at: UnixTime,
    not_after: UnixTime,
) -> Result<Bundle, UnknownDevice> {
    let device = policy.device(device_id).ok_or_else(|| UnknownDevice {
        path: policy.path.clone(),
        device: device_id.to_string(),
        known: policy
            .devices
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    Ok(Bundle {
        device_id: device.id.clone(),
        serial,
        issued_at,
        not_after,
        company: policy.company.clone(),
        organizations: policy.organizations.clone(),
        categories: policy.categories.clone(),
        groups: policy.groups.clone(),
        roles: policy.roles.clone(),
        users: policy.users.clone(),
        device: device.clone(),
        revoked_tickets: policy.revoked_tickets.clone(),
    })
}

#[cfg(test)]
mod tests;
