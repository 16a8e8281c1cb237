//! Checks meaning and converts the raw file into the validated model.
//!
//! Every check records `(byte offset, message)` and carries on, so the caller
//! can report the first problem in file order and count the rest. Messages
//! name the item (`user "bert": ...`); the caller adds `FILE:LINE:`.

use super::raw::{RawFile, RawGroup, RawRole, RawUser, S};
use super::{PolicyFile, DEFAULT_LOGOUT_PERIOD};
use crate::duration::parse_duration;
use edgegate_proto::bundle::{
    Category, Company, Device, Grant, Group, Membership, Organization, Role, Scope, Status, User,
};
use edgegate_proto::ticket::TicketId;
use edgegate_proto::Level;
use std::collections::{HashMap, HashSet};

/// Problems found: byte offset of the offending value, and the message.
pub(super) type Errors = Vec<(usize, String)>;

/// Collects problems while converting; see the module doc.
pub(super) struct Checker {
    errs: Errors,
}

pub(super) fn validate(raw: RawFile, text: &str, path: &str) -> Result<PolicyFile, Errors> {
    let mut c = Checker { errs: Vec::new() };
    let company = Company {
        id: c.id("company", &raw.company.id),
        name: name_or_id(&raw.company.name, &raw.company.id),
    };
    let revoked_tickets = raw
        .revoked_tickets
        .iter()
        .filter_map(|t| c.ticket_id(t))
        .collect();
    let declared_orgs = c.named("organization", &raw.organization, |o| (&o.id, &o.name));
    let categories = c.named("category", &raw.category, |x| (&x.id, &x.name));
    let category_ids: HashSet<&str> = categories.iter().map(|x| x.0.as_str()).collect();

    let groups: Vec<Group> = raw.group.iter().map(|g| c.group(g)).collect();
    c.unique("group", raw.group.iter().map(|g| &g.id));
    c.group_parents(&raw.group);
    let group_ids: HashSet<&str> = groups.iter().map(|g| g.id.as_str()).collect();

    let roles: Vec<Role> = raw.role.iter().map(|r| c.role(r, &category_ids)).collect();
    c.unique("role", raw.role.iter().map(|r| &r.id));
    let scopes: HashMap<&str, Scope> = roles.iter().map(|r| (r.id.as_str(), r.scope)).collect();

    let users: Vec<User> = raw
        .user
        .iter()
        .map(|u| c.user(u, &company.id, &group_ids, &scopes))
        .collect();
    c.unique("user", raw.user.iter().map(|u| &u.id));
    let devices: Vec<_> = raw
        .device
        .iter()
        .map(|d| c.device(d, &group_ids, &category_ids))
        .collect();
    c.unique("device", raw.device.iter().map(|d| &d.id));
    let tests = raw
        .test
        .iter()
        .filter_map(|t| c.test(t, text, &users, &devices))
        .collect();
    if !c.errs.is_empty() {
        return Err(c.errs);
    }
    let warnings = unenforceable_read_grants(&raw.role, &devices)
        .into_iter()
        .map(|(offset, msg)| format!("{path}:{}: {msg}", super::line_of(text, offset)))
        .collect();
    Ok(PolicyFile {
        path: path.to_string(),
        organizations: organizations(declared_orgs, &company, &users),
        categories: categories
            .into_iter()
            .map(|(id, name)| Category { id, name })
            .collect(),
        company,
        groups,
        roles,
        users,
        devices,
        revoked_tickets,
        tests,
        warnings,
    })
}

/// `read` grants on a category holding a vpn service: observe-only cannot be
/// enforced on raw TCP, so the evaluator lets such a grant match nothing
/// there (DESIGN §2 levels). Legal, but almost certainly not what the author
/// meant. Runs on a file that already validated, so grants parse.
fn unenforceable_read_grants(roles: &[RawRole], devices: &[Device]) -> Errors {
    let mut out = Vec::new();
    for r in roles {
        for g in &r.grants {
            let Some((category, "read")) = g.get_ref().split_once(':') else {
                continue;
            };
            for d in devices {
                let vpns = d.services.iter().filter(|s| {
                    s.category == category && !crate::filter::read_level_supported(s.kind)
                });
                for s in vpns {
                    let msg = format!(
                        "role {:?} grants read on category {category:?}, which contains {} service {:?} of device {:?}: read cannot be enforced on {} and grants nothing there",
                        r.id.get_ref(),
                        s.kind.as_str(),
                        s.id,
                        d.id,
                        s.kind.as_str()
                    );
                    out.push((g.span().start, msg));
                }
            }
        }
    }
    out
}

/// Declared organizations, then the ones users name without declaring, in
/// order of first use; the company's own is named after the company.
fn organizations(
    declared: Vec<(String, String)>,
    company: &Company,
    users: &[User],
) -> Vec<Organization> {
    let mut orgs: Vec<Organization> = declared
        .into_iter()
        .map(|(id, name)| Organization { id, name })
        .collect();
    for u in users {
        if !orgs.iter().any(|o| o.id == u.org) {
            let name = match u.org == company.id {
                true => company.name.clone(),
                false => u.org.clone(),
            };
            orgs.push(Organization {
                id: u.org.clone(),
                name,
            });
        }
    }
    orgs
}

pub(super) fn name_or_id(name: &Option<String>, id: &S<String>) -> String {
    name.clone().unwrap_or_else(|| id.get_ref().clone())
}

fn status(text: &str) -> Option<Status> {
    match text {
        "active" => Some(Status::Active),
        "inactive" => Some(Status::Inactive),
        _ => None,
    }
}

impl Checker {
    pub(super) fn err(&mut self, at: &S<impl Sized>, msg: String) {
        self.errs.push((at.span().start, msg));
    }

    /// An id: 1..=256 characters of letters, digits and `._@+-`.
    pub(super) fn id(&mut self, kind: &str, id: &S<String>) -> String {
        let s = id.get_ref();
        let ok = !s.is_empty()
            && s.len() <= edgegate_proto::bundle::limits::MAX_STRING
            && s.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._@+-".contains(ch));
        if !ok {
            self.err(
                id,
                format!("{kind} id {s:?} must be 1 to 256 letters, digits or ._@+-"),
            );
        }
        s.clone()
    }

    pub(super) fn unique<'a>(&mut self, kind: &str, ids: impl Iterator<Item = &'a S<String>>) {
        let mut seen = HashSet::new();
        for id in ids {
            if !seen.insert(id.get_ref().as_str()) {
                self.err(id, format!("duplicate {kind} id {:?}", id.get_ref()));
            }
        }
    }

    /// Items that are just an id and an optional name, checked and unique.
    fn named<T>(
        &mut self,
        kind: &str,
        items: &[T],
        parts: impl Fn(&T) -> (&S<String>, &Option<String>),
    ) -> Vec<(String, String)> {
        let out = items
            .iter()
            .map(|x| {
                let (id, name) = parts(x);
                (self.id(kind, id), name_or_id(name, id))
            })
            .collect();
        self.unique(kind, items.iter().map(|x| parts(x).0));
        out
    }

    fn status(&mut self, what: &str, s: &Option<S<String>>) -> Status {
        let Some(s) = s else { return Status::Active };
        status(s.get_ref()).unwrap_or_else(|| {
            self.err(
                s,
                format!(
                    "{what}: status {:?} must be active or inactive",
                    s.get_ref()
                ),
            );
            Status::Active
        })
    }

    fn ticket_id(&mut self, t: &S<String>) -> Option<TicketId> {
        let s = t.get_ref();
        let bytes: Option<Vec<u8>> = (s.len() == 32)
            .then(|| {
                (0..32)
                    .step_by(2)
                    .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                    .collect()
            })
            .flatten();
        match bytes.and_then(|b| TicketId::try_from(b.as_slice()).ok()) {
            Some(id) => Some(id),
            None => {
                self.err(t, format!("revoked ticket {s:?} must be 32 hex digits"));
                None
            }
        }
    }

    fn group(&mut self, g: &RawGroup) -> Group {
        let id = self.id("group", &g.id);
        let what = format!("group {id:?}");
        if g.kind.get_ref().trim().is_empty() {
            self.err(&g.kind, format!("{what}: type must not be empty"));
        }
        Group {
            name: name_or_id(&g.name, &g.id),
            kind: g.kind.get_ref().clone(),
            parent: g.parent.as_ref().map(|p| p.get_ref().clone()),
            status: self.status(&what, &g.status),
            id,
        }
    }

    /// Parents resolve and never loop back.
    fn group_parents(&mut self, groups: &[RawGroup]) {
        let parent: HashMap<&str, &S<String>> = groups
            .iter()
            .filter_map(|g| Some((g.id.get_ref().as_str(), g.parent.as_ref()?)))
            .collect();
        for g in groups {
            let Some(p) = &g.parent else { continue };
            let id = g.id.get_ref();
            if !groups.iter().any(|x| x.id.get_ref() == p.get_ref()) {
                self.err(
                    p,
                    format!(
                        "group {id:?}: parent group {:?} is not defined",
                        p.get_ref()
                    ),
                );
                continue;
            }
            let mut chain = vec![id.as_str()];
            let mut at = p.get_ref().as_str();
            while chain.len() <= groups.len() {
                chain.push(at);
                if at == id {
                    self.err(
                        p,
                        format!(
                            "group {id:?}: parent chain forms a cycle ({})",
                            chain.join(" > ")
                        ),
                    );
                    break;
                }
                match parent.get(at) {
                    Some(next) => at = next.get_ref(),
                    None => break,
                }
            }
        }
    }

    fn role(&mut self, r: &RawRole, categories: &HashSet<&str>) -> Role {
        let id = self.id("role", &r.id);
        let scope = match r.scope.get_ref().as_str() {
            "company" => Scope::Company,
            "group" => Scope::Group,
            other => {
                self.err(
                    &r.scope,
                    format!("role {id:?}: scope {other:?} must be company or group"),
                );
                Scope::Company
            }
        };
        let grants = r
            .grants
            .iter()
            .filter_map(|g| self.grant(&id, g, categories))
            .collect();
        Role {
            name: name_or_id(&r.name, &r.id),
            scope,
            grants,
            mfa: r.mfa,
            site_consent: r.site_consent,
            id,
        }
    }

    fn grant(&mut self, role: &str, g: &S<String>, categories: &HashSet<&str>) -> Option<Grant> {
        let text = g.get_ref();
        let (category, level) = match text.split_once(':') {
            None => (text.as_str(), Some(Level::Manage)),
            Some((c, l)) => (c, Level::from_name(l)),
        };
        let Some(level) = level else {
            self.err(
                g,
                format!("role {role:?}: grant {text:?} must be CATEGORY, CATEGORY:read or CATEGORY:manage"),
            );
            return None;
        };
        if !categories.contains(category) {
            self.err(
                g,
                format!("role {role:?}: grant category {category:?} is not defined"),
            );
            return None;
        }
        Some(Grant {
            category: category.to_string(),
            level,
        })
    }

    fn user(
        &mut self,
        u: &RawUser,
        company: &str,
        groups: &HashSet<&str>,
        scopes: &HashMap<&str, Scope>,
    ) -> User {
        let id = self.id("user", &u.id);
        let what = format!("user {id:?}");
        let org = match &u.org {
            Some(o) => self.id(&format!("{what}: organization"), o),
            None => company.to_string(),
        };
        for r in &u.roles {
            self.role_ref(&what, "role", r, scopes, Scope::Company);
        }
        for m in &u.memberships {
            if !groups.contains(m.group.get_ref().as_str()) {
                self.err(
                    &m.group,
                    format!(
                        "{what}: membership group {:?} is not defined",
                        m.group.get_ref()
                    ),
                );
            }
            self.role_ref(&what, "membership role", &m.role, scopes, Scope::Group);
        }
        let logout_period = match &u.logout_period {
            None => DEFAULT_LOGOUT_PERIOD,
            Some(p) => match self.duration(&what, "logout_period", p) {
                Some(0) => {
                    self.err(p, format!("{what}: logout_period must be longer than 0s"));
                    0
                }
                other => other.unwrap_or(0),
            },
        };
        User {
            name: name_or_id(&u.name, &u.id),
            org,
            status: self.status(&what, &u.status),
            roles: u.roles.iter().map(|r| r.get_ref().clone()).collect(),
            memberships: u
                .memberships
                .iter()
                .map(|m| Membership {
                    group: m.group.get_ref().clone(),
                    role: m.role.get_ref().clone(),
                })
                .collect(),
            mfa: u.mfa,
            logout_period,
            id,
        }
    }

    /// A role reference that must exist and have the scope its place demands.
    fn role_ref(
        &mut self,
        what: &str,
        place: &str,
        r: &S<String>,
        scopes: &HashMap<&str, Scope>,
        want: Scope,
    ) {
        let name = r.get_ref();
        match (scopes.get(name.as_str()), want) {
            (None, _) => self.err(r, format!("{what}: {place} {name:?} is not defined")),
            (Some(Scope::Group), Scope::Company) => self.err(
                r,
                format!("{what}: role {name:?} is group-specific; assign it in memberships, not roles"),
            ),
            (Some(Scope::Company), Scope::Group) => self.err(
                r,
                format!("{what}: membership role {name:?} is company-wide; list it in roles, not memberships"),
            ),
            _ => {}
        }
    }

    pub(super) fn duration(&mut self, what: &str, key: &str, d: &S<String>) -> Option<u64> {
        parse_duration(d.get_ref())
            .map_err(|e| self.err(d, format!("{what}: {key}: {e}")))
            .ok()
    }
}
