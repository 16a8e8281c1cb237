//! Validation of devices and their services: kinds, categories, endpoint
//! targets (`host:port`) and VPN networks and ports.

use super::raw::{RawDevice, RawService, S};
use super::validate::{name_or_id, Checker};
use edgegate_proto::bundle::{Device, Network, PortRange, Service, ServiceKind, Target};
use std::collections::HashSet;

impl Checker {
    pub(super) fn device(
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
            (!host.is_empty() && !host.contains(char::is_whitespace)).then_some((host, port))
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
}
