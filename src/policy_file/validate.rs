//! Checks meaning and converts the raw file into the validated model.
//!
//! Every check records `(byte offset, message)` and carries on, so the caller
//! can report the first problem in file order and count the rest. Messages
//! name the item (`user "bert": ...`); the caller adds `FILE:LINE:`.

use super::raw::{RawDevice, RawFile, RawGroup, RawRole, RawService, RawTest, RawUser, S};
use super::{Expect, PolicyFile, PolicyTest, TestTime, DEFAULT_LOGOUT_PERIOD};
use crate::duration::parse_duration;
use edgegate_proto::bundle::{
    Category, Company, Device, Grant, Group, Membership, Network, Organization, PortRange, Role,
    Scope, Service, ServiceKind, Status, Target, User,
};
use edgegate_proto::ticket::TicketId;
use edgegate_proto::{DenyReason, Level};
use std::collections::{HashMap, HashSet};

type Errors = Vec<(usize, String)>;

struct Checker {
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
    let mut organizations: Vec<Organization> = raw
        .organization
        .iter()
        .map(|o| Organization {
            id: c.id("organization", &o.id),
            name: name_or_id(&o.name, &o.id),
        })
        .collect();
    c.unique("organization", raw.organization.iter().map(|o| &o.id));
    let categories: Vec<Category> = raw
        .category
        .iter()
        .map(|x| Category {
            id: c.id("category", &x.id),
            name: name_or_id(&x.name, &x.id),
        })
        .collect();
    c.unique("category", raw.category.iter().map(|x| &x.id));
    let category_ids: HashSet<&str> = categories.iter().map(|x| x.id.as_str()).collect();

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
    for u in &users {
        if !organizations.iter().any(|o| o.id == u.org) {
            let name = if u.org == company.id {
                company.name.clone()
            } else {
                u.org.clone()
            };
            organizations.push(Organization {
                id: u.org.clone(),
                name,
            });
        }
    }

    let devices: Vec<Device> = raw
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
    Ok(PolicyFile {
        path: path.to_string(),
        company,
        organizations,
        categories,
        groups,
        roles,
        users,
        devices,
        revoked_tickets,
        tests,
    })
}

fn name_or_id(name: &Option<String>, id: &S<String>) -> String {
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
    fn err(&mut self, at: &S<impl Sized>, msg: String) {
        self.errs.push((at.span().start, msg));
    }

    /// An id: 1..=256 characters of letters, digits and `._@+-`.
    fn id(&mut self, kind: &str, id: &S<String>) -> String {
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

    fn unique<'a>(&mut self, kind: &str, ids: impl Iterator<Item = &'a S<String>>) {
        let mut seen = HashSet::new();
        for id in ids {
            if !seen.insert(id.get_ref().as_str()) {
                self.err(id, format!("duplicate {kind} id {:?}", id.get_ref()));
            }
        }
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

    fn duration(&mut self, what: &str, key: &str, d: &S<String>) -> Option<u64> {
        parse_duration(d.get_ref())
            .map_err(|e| self.err(d, format!("{what}: {key}: {e}")))
            .ok()
    }

    fn device(
        &mut self,
        d: &RawDevice,
        groups: &HashSet<&str>,
        categories: &HashSet<&str>,
    ) -> Device {
        let id = self.id("device", &d.id);
        let what = format!("device {id:?}");
        for g in &d.groups {
            if !groups.contains(g.get_ref().as_str()) {
                self.err(g, format!("{what}: group {:?} is not defined", g.get_ref()));
            }
        }
        self.unique(
            &format!("{what}: service"),
            d.services.iter().map(|s| &s.id),
        );
        Device {
            name: name_or_id(&d.name, &d.id),
            groups: d.groups.iter().map(|g| g.get_ref().clone()).collect(),
            services: d
                .services
                .iter()
                .filter_map(|s| self.service(&what, s, categories))
                .collect(),
            id,
        }
    }

    fn service(
        &mut self,
        device: &str,
        s: &RawService,
        categories: &HashSet<&str>,
    ) -> Option<Service> {
        let id = self.id("service", &s.id);
        let what = format!("{device}: service {id:?}");
        if !categories.contains(s.category.get_ref().as_str()) {
            self.err(
                &s.category,
                format!("{what}: category {:?} is not defined", s.category.get_ref()),
            );
        }
        let kind = match s.kind.get_ref().as_str() {
            "vpn" => ServiceKind::Vpn,
            "vnc" => ServiceKind::Vnc,
            "http" => ServiceKind::Http,
            "websocket" => ServiceKind::Websocket,
            other => {
                self.err(
                    &s.kind,
                    format!("{what}: kind {other:?} must be vpn, vnc, http or websocket"),
                );
                return None;
            }
        };
        let target = if kind == ServiceKind::Vpn {
            self.vpn_target(&what, s)?
        } else {
            self.endpoint_target(&what, s)?
        };
        Some(Service {
            name: name_or_id(&s.name, &s.id),
            kind,
            target,
            category: s.category.get_ref().clone(),
            id,
        })
    }

    fn endpoint_target(&mut self, what: &str, s: &RawService) -> Option<Target> {
        if let Some(n) = s.networks.as_ref().and_then(|n| n.first()) {
            self.err(n, format!("{what}: networks are only for vpn services"));
        }
        if let Some(p) = &s.ports {
            self.err(p, format!("{what}: ports are only for vpn services"));
        }
        let Some(t) = &s.target else {
            self.err(&s.id, format!("{what}: needs target = \"host:port\""));
            return None;
        };
        let parsed = t.get_ref().rsplit_once(':').and_then(|(host, port)| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
            (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| (host, port))
        });
        match parsed {
            Some((host, port)) => Some(Target::Endpoint {
                host: host.to_string(),
                port,
            }),
            None => {
                self.err(
                    t,
                    format!("{what}: target {:?} must be host:port", t.get_ref()),
                );
                None
            }
        }
    }

    fn vpn_target(&mut self, what: &str, s: &RawService) -> Option<Target> {
        if let Some(t) = &s.target {
            self.err(
                t,
                format!("{what}: a vpn service has networks, not a target"),
            );
        }
        let Some(nets) = s.networks.as_ref().filter(|n| !n.is_empty()) else {
            self.err(
                &s.id,
                format!("{what}: a vpn service needs networks = [\"CIDR\", ...]"),
            );
            return None;
        };
        let mut networks = Vec::new();
        for n in nets {
            let text = n.get_ref();
            let parsed = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => networks.push(Network {
                    addr: net.network(),
                    prefix: net.prefix_len(),
                }),
                Err(_) => self.err(
                    n,
                    format!("{what}: network {text:?} is not an address or CIDR"),
                ),
            }
        }
        let ports = match &s.ports {
            None => Vec::new(),
            Some(p) => self.ports(what, p)?,
        };
        Some(Target::Networks { networks, ports })
    }

    fn ports(&mut self, what: &str, p: &S<Vec<toml::Value>>) -> Option<Vec<PortRange>> {
        let one = |v: &toml::Value| -> Option<PortRange> {
            let num = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p != 0);
            match v {
                toml::Value::Integer(n) => {
                    let p = u16::try_from(*n).ok().filter(|p| *p != 0)?;
                    Some(PortRange { start: p, end: p })
                }
                toml::Value::String(s) => {
                    let (a, b) = s.split_once('-').unwrap_or((s, s));
                    let (start, end) = (num(a)?, num(b)?);
                    (start <= end).then_some(PortRange { start, end })
                }
                _ => None,
            }
        };
        let ranges: Option<Vec<PortRange>> = p.get_ref().iter().map(one).collect();
        if ranges.is_none() {
            self.err(
                p,
                format!("{what}: ports must be numbers 1-65535 or \"FIRST-LAST\" ranges"),
            );
        }
        ranges
    }

    fn test(
        &mut self,
        t: &RawTest,
        text: &str,
        users: &[User],
        devices: &[Device],
    ) -> Option<PolicyTest> {
        let what = format!(
            "test {}/{}/{}",
            t.user.get_ref(),
            t.device.get_ref(),
            t.service.get_ref()
        );
        let expect = Expect::parse(t.expect.get_ref())
            .map_err(|e| self.err(&t.expect, format!("{what}: {e}")))
            .ok();
        let Some(device) = devices.iter().find(|d| &d.id == t.device.get_ref()) else {
            self.err(
                &t.device,
                format!("{what}: device {:?} is not defined", t.device.get_ref()),
            );
            return None;
        };
        if expect != Some(Expect::Deny(DenyReason::UnknownUser))
            && !users.iter().any(|u| &u.id == t.user.get_ref())
        {
            self.err(
                &t.user,
                format!(
                    "{what}: user {:?} is not defined (expect deny:unknown-user if meant)",
                    t.user.get_ref()
                ),
            );
        }
        if expect != Some(Expect::Deny(DenyReason::UnknownService))
            && !device.services.iter().any(|s| &s.id == t.service.get_ref())
        {
            self.err(&t.service, format!("{what}: device {:?} has no service {:?} (expect deny:unknown-service if meant)", device.id, t.service.get_ref()));
        }
        let when = self.test_time(&what, t)?;
        let destination = match &t.destination {
            None => None,
            Some(d) => Some(
                d.get_ref()
                    .parse()
                    .map_err(|_| {
                        self.err(
                            d,
                            format!("{what}: destination {:?} must be IP:PORT", d.get_ref()),
                        )
                    })
                    .ok()?,
            ),
        };
        Some(PolicyTest {
            line: super::line_of(text, t.user.span().start),
            user: t.user.get_ref().clone(),
            device: t.device.get_ref().clone(),
            service: t.service.get_ref().clone(),
            expect: expect?,
            mfa: t.mfa,
            consent: t.consent,
            destination,
            when,
        })
    }

    fn test_time(&mut self, what: &str, t: &RawTest) -> Option<TestTime> {
        match (&t.at, &t.after) {
            (Some(at), Some(_)) => {
                self.err(at, format!("{what}: give at or after, not both"));
                None
            }
            (Some(at), None) => crate::duration::parse_time(at.get_ref())
                .map(TestTime::At)
                .map_err(|e| self.err(at, format!("{what}: at: {e}")))
                .ok(),
            (None, Some(after)) => self.duration(what, "after", after).map(TestTime::AfterAuth),
            (None, None) => Some(TestTime::AfterAuth(super::DEFAULT_TEST_AFTER)),
        }
    }
}
