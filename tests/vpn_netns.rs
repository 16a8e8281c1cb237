//! The VPN end to end (DESIGN §9), across namespaces the test creates:
//!
//! ```text
//! engineer ns ── wan0 10.77.1.2 ═ eng0 10.77.1.1 ── router ns ── lan0 192.168.77.1 ═ eth0 192.168.77.10 ── machine ns
//! (edgegate connect --vpn,                           (edgegated;          192.168.78.1      192.168.78.10
//!  its TUN, mbpoll, curl,                             no ip_forward:                       (Modbus, HTTP, SNMP;
//!  snmpget, ping)                                     only it carries)                      iptables counts arrivals)
//! ```
//!
//! The router namespace does not forward: whatever reaches the machine
//! namespace from the engineer's was carried by the daemon. The programs
//! on both ends are the real ones and know nothing of edgegate: pymodbus
//! and mbpoll, Python's http.server and curl (no proxy), snmpd and
//! snmpget, ping. The vpn service `lan` covers 192.168.77.0/24, ports 502,
//! 80 and 161; 192.168.78.0/24 is outside it, reached only through a route
//! the engineer adds by hand (an engineer's machine is not trusted).

#[path = "tunnel_support/harness.rs"]
mod harness;

use edgegate_proto::audit::AuditEvent;
use harness::netns::{self, Netns, Proc};
use harness::*;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The machine: Modbus, HTTP and SNMP server.
const MACHINE: &str = "192.168.77.10";
/// A host of the machine network outside the service's networks.
const OUTSIDE: &str = "192.168.78.10";
/// The router's address on the machine network (every re-originated flow's
/// source).
const ROUTER_LAN: &str = "192.168.77.1";

/// The policy: alice (engineer) has the VPN; tess (a technician of the
/// site) has it with on-site consent; bob has only the web page.
fn policy() -> String {
    format!(
        r#"
[company]
id = "acme"
name = "ACME"

[[category]]
id = "vpn"
name = "VPN"

[[category]]
id = "http"
name = "HTTP"

[[group]]
id = "site"
name = "Site"
type = "customer"

[[role]]
id = "engineer"
name = "Engineer"
scope = "company"
grants = ["vpn", "http"]

[[role]]
id = "viewer"
name = "Viewer"
scope = "company"
grants = ["http:read"]

[[role]]
id = "technician"
name = "Service technician"
scope = "group"
grants = ["vpn"]
site_consent = true

[[user]]
id = "alice"
name = "Alice"
roles = ["engineer"]

[[user]]
id = "bob"
name = "Bob"
roles = ["viewer"]

[[user]]
id = "tess"
name = "Tess"
memberships = [{{ group = "site", role = "technician" }}]

[[device]]
id = "{DEVICE}"
name = "Router"
groups = ["site"]
services = [
  {{ id = "web", name = "PLC web", kind = "http", target = "{MACHINE}:80", category = "http" }},
  {{ id = "lan", name = "Machine LAN", kind = "vpn", networks = ["192.168.77.0/24"], ports = [502, 80, 161], category = "vpn" }},
]
"#
    )
}

/// The size of the file a test downloads whole (its time is printed).
const BULK: u64 = 32 << 20;

/// A Modbus/TCP server (pymodbus 3.0, Debian's python3-pymodbus): holding
/// registers 0..4 read 1234, 5678, 42, 7.
const MODBUS_SERVER: &str = r#"
import sys
from pymodbus.server import StartTcpServer
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusSlaveContext, ModbusServerContext
block = ModbusSequentialDataBlock(0, [1234, 5678, 42, 7] + [0] * 96)
store = ModbusSlaveContext(hr=block, zero_mode=True)
StartTcpServer(context=ModbusServerContext(slaves=store, single=True), address=("0.0.0.0", 502))
"#;

/// Packets with forged source addresses, through the engineer's routes:
/// a TCP SYN to 502 and 80 and a UDP datagram to 161 from each source.
const SPOOF: &str = r#"
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
def ip(src, dst, proto, payload):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 7, 0x4000, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack('!H', csum(h)) + h[12:] + payload
def pseudo(src, dst, proto, n):
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, proto, n)
def syn(src, dst, dport):
    t = struct.pack('!HHIIBBHHH', 40000, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    return t[:16] + struct.pack('!H', csum(pseudo(src, dst, 6, len(t)) + t)) + t[18:]
def udp(src, dst, dport, data):
    u = struct.pack('!HHHH', 40000, dport, 8 + len(data), 0) + data
    return u[:6] + struct.pack('!H', csum(pseudo(src, dst, 17, len(u)) + u) or 0xffff) + u[8:]
dst = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
sent = 0
for src in sys.argv[2:]:
    for port in (502, 80):
        s.sendto(ip(src, dst, 6, syn(src, dst, port)), (dst, 0)); sent += 1
    s.sendto(ip(src, dst, 17, udp(src, dst, 161, b'spoofed')), (dst, 0)); sent += 1
print(sent)
"#;

/// A TCP connect scan of NET.1-254 on PORTS, 254 connects at a time, one
/// second each: how many connected, were refused, timed out.
const SCAN: &str = r#"
import socket, select, sys, time, errno, json
net, ports = sys.argv[1], [int(p) for p in sys.argv[2].split(',')]
res = {'open': [], 'refused': 0, 'timeout': 0, 'other': 0}
for port in ports:
    socks = {}
    for h in range(1, 255):
        s = socket.socket(); s.setblocking(False)
        s.connect_ex(('%s.%d' % (net, h), port)); socks[s] = '%s.%d:%d' % (net, h, port)
    pending, deadline = set(socks), time.time() + 1.0
    while pending and time.time() < deadline:
        _, w, _ = select.select([], list(pending), [], max(0, deadline - time.time()))
        for s in w:
            pending.discard(s)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0: res['open'].append(socks[s])
            elif err in (errno.ECONNREFUSED, errno.ECONNRESET): res['refused'] += 1
            else: res['other'] += 1
    res['timeout'] += len(pending)
    for s in socks: s.close()
print(json.dumps(res))
"#;

/// The three namespaces, the machine's servers, the daemon with the
/// policy installed.
struct Lab {
    engineer: Netns,
    router: Netns,
    machine: Netns,
    d: Daemon,
    dir: tempfile::TempDir,
    /// Clients made so far (each gets key files of its own).
    clients: AtomicU32,
    _servers: Vec<Proc>,
}

impl Lab {
    fn new() -> Lab {
        netns::require_root("tests/vpn_netns.rs");
        let engineer = Netns::new("en");
        let router = Netns::new("rt");
        let machine = Netns::new("mc");
        netns::link(
            &router,
            "eng0",
            "10.77.1.1/24",
            &engineer,
            "wan0",
            "10.77.1.2/24",
        );
        netns::link(
            &router,
            "lan0",
            "192.168.77.1/24",
            &machine,
            "eth0",
            "192.168.77.10/24",
        );
        router.run("ip", &["addr", "add", "192.168.78.1/24", "dev", "lan0"]);
        machine.run("ip", &["addr", "add", "192.168.78.10/24", "dev", "eth0"]);
        router.allow_ping_sockets();
        let forwarding = router.run("sysctl", &["-n", "net.ipv4.ip_forward"]);
        assert_eq!(
            String::from_utf8_lossy(&forwarding.stdout).trim(),
            "0",
            "the router namespace must not forward: only the daemon carries"
        );
        count_arrivals(&machine);

        let dir = tempfile::tempdir().unwrap();
        let servers = machine_servers(&machine, dir.path());
        let d = start_daemon_spec(DEVICE, "", Some(router.name()), Some("10.77.1.1"));
        let bundle = d.write("b1", &bundle_bytes(&policy(), DEVICE, 1, &d.authority));
        let pushed = d.push(&bundle, false);
        assert!(pushed.status.success(), "{pushed:?}");
        Lab {
            engineer,
            router,
            machine,
            d,
            dir,
            clients: AtomicU32::new(0),
            _servers: servers,
        }
    }

    /// `edgegate connect --vpn` for `user` in the engineer's namespace.
    fn connect(&self, user: &str, tls: bool, extra: &[&str]) -> Client {
        let name = format!("{user}{}", self.clients.fetch_add(1, Ordering::Relaxed));
        let (key, ticket) = self.d.client(&name, user);
        let mut args = vec!["--vpn".to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.d
            .connect_in(Some(self.engineer.name()), &key, &ticket, tls, &args)
    }

    /// A client that is up: its `vpn up` line read.
    fn vpn(&self, user: &str, tls: bool) -> (Client, VpnUp) {
        let mut c = self.connect(user, tls, &[]);
        c.ready();
        let up = vpn_up(&c);
        (c, up)
    }

    /// Run `program args…` in the engineer's namespace, timed.
    fn engineer_timed(&self, program: &str, args: &[&str]) -> (Output, Duration) {
        let start = Instant::now();
        let out = self
            .engineer
            .cmd(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out, start.elapsed())
    }

    /// `curl` from the engineer's namespace with no proxy whatever the
    /// environment says.
    fn curl(&self, url: &str) -> (Output, Duration) {
        self.engineer_timed("curl", &["-sS", "--noproxy", "*", "--max-time", "10", url])
    }

    /// The highest audit sequence number so far.
    fn audit_head(&self) -> u64 {
        match self.d.control(edgegate::control::Request::Audit {
            since: None,
            limit: 1,
        }) {
            edgegate::control::Response::Audit(records) => {
                records.last().map(|r| r.seq).unwrap_or(0)
            }
            other => panic!("audit answer: {other:?}"),
        }
    }

    /// The audit records after `seq`.
    fn audit_after(&self, seq: u64) -> Vec<AuditEvent> {
        match self.d.control(edgegate::control::Request::Audit {
            since: Some(seq + 1),
            limit: 1000,
        }) {
            edgegate::control::Response::Audit(records) => {
                records.into_iter().map(|r| r.event).collect()
            }
            other => panic!("audit answer: {other:?}"),
        }
    }

    /// The refused flows audited after `seq`: each record's first
    /// destination, and how many refusals the records stand for.
    fn refusals_after(&self, seq: u64) -> (Vec<String>, u64) {
        let mut first = Vec::new();
        let mut count = 0;
        for event in self.audit_after(seq) {
            if let AuditEvent::FlowsDenied {
                destination,
                count: n,
                ..
            } = event
            {
                first.push(destination);
                count += n;
            }
        }
        (first, count)
    }
}

/// What `vpn up: IFACE ADDRESS routes CIDR[,CIDR…]` said.
#[derive(Debug)]
struct VpnUp {
    iface: String,
    address: String,
    routes: String,
}

fn vpn_up(c: &Client) -> VpnUp {
    let line = c
        .stdout
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("vpn up: "))
        .unwrap_or_else(|| panic!("no `vpn up` line before ready: {:?}", c.stdout.seen));
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words.len(), 4, "vpn up: IFACE ADDRESS routes CIDRS: {line}");
    assert_eq!(words[2], "routes", "{line}");
    VpnUp {
        iface: words[0].to_string(),
        address: words[1].to_string(),
        routes: words[3].to_string(),
    }
}

/// The machine's servers: Modbus on 502, HTTP on 80 (every address, the
/// one outside the service included), snmpd on 161; each answering before
/// this returns.
fn machine_servers(machine: &Netns, dir: &std::path::Path) -> Vec<Proc> {
    let www = dir.join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("status"), "filling line: running\n").unwrap();
    // A download that lasts (curl paces it): sparse, costs no disk.
    let big = std::fs::File::create(www.join("big")).unwrap();
    big.set_len(256 << 20).unwrap();
    let bulk = std::fs::File::create(www.join("bulk")).unwrap();
    bulk.set_len(BULK).unwrap();
    std::fs::write(dir.join("modbus.py"), MODBUS_SERVER).unwrap();
    std::fs::write(
        dir.join("snmpd.conf"),
        "agentaddress udp:0.0.0.0:161\nrocommunity public default\nsysName plc-7\n",
    )
    .unwrap();
    let quiet = |mut c: Command| {
        Proc(
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut modbus = machine.cmd("/usr/bin/python3");
    modbus.arg(dir.join("modbus.py"));
    let mut http = machine.cmd("python3");
    http.args(["-m", "http.server", "80", "--directory"])
        .arg(&www);
    let mut snmpd = machine.cmd("snmpd");
    snmpd
        .args(["-f", "-Lo", "-C", "-c"])
        .arg(dir.join("snmpd.conf"))
        .arg("-p")
        .arg(dir.join("snmpd.pid"));
    let servers = vec![quiet(modbus), quiet(http), quiet(snmpd)];
    let answers = |program: &str, args: &[&str]| {
        wait_until(Duration::from_secs(20), || {
            machine
                .cmd(program)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
        })
        .is_some()
    };
    assert!(
        answers(
            "mbpoll",
            &[
                "-m",
                "tcp",
                "-a",
                "1",
                "-r",
                "1",
                "-c",
                "4",
                "-t",
                "4",
                "-1",
                "127.0.0.1"
            ]
        ),
        "the Modbus server starts"
    );
    assert!(
        answers(
            "curl",
            &["-sf", "--noproxy", "*", "http://127.0.0.1/status"]
        ),
        "the web server starts"
    );
    assert!(
        answers(
            "snmpget",
            &[
                "-v2c",
                "-c",
                "public",
                "-t",
                "1",
                "-r",
                "0",
                "127.0.0.1",
                "1.3.6.1.2.1.1.5.0"
            ]
        ),
        "snmpd starts"
    );
    servers
}

/// The machine's sink on TCP port 161 (snmpd has UDP 161): it reads one
/// connection to its end and answers with the byte count and SHA-256.
const SINK: &str = r#"
import hashlib, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 161))
s.listen(1)
c, _ = s.accept()
h, n = hashlib.sha256(), 0
while True:
    d = c.recv(1 << 20)
    if not d:
        break
    h.update(d)
    n += len(d)
c.sendall(("%d %s\n" % (n, h.hexdigest())).encode())
c.close()
"#;

/// The engineer's side: 16 MiB to the sink, then its answer and the same
/// line for what was sent, one line each.
const UPLOAD: &str = r#"
import hashlib, socket, sys
data = bytes((i * 7 + 3) % 251 for i in range(1 << 20)) * 16
c = socket.create_connection((sys.argv[1], 161), timeout=30)
c.sendall(data)
c.shutdown(socket.SHUT_WR)
answer = b""
while True:
    d = c.recv(256)
    if not d:
        break
    answer += d
print(answer.decode().strip())
print("%d %s" % (len(data), hashlib.sha256(data).hexdigest()))
"#;

/// Upload 16 MiB through the VPN: (the sink's answer, what was sent).
fn upload(lab: &Lab) -> (String, String) {
    let _sink = Proc(
        lab.machine
            .cmd("python3")
            .args(["-c", SINK])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Until the sink listens (a refused connection is answered at once).
    let out = wait_until(Duration::from_secs(20), || {
        let (out, _) = lab.engineer_timed("python3", &["-c", UPLOAD, MACHINE]);
        out.status.success().then_some(out)
    })
    .expect("the upload");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().map(str::to_string);
    let answer = lines.next().unwrap_or_default();
    (answer, lines.next().unwrap_or_default())
}

/// The machine namespace counts what arrives on its network interface,
/// with iptables rules that only count (comment = name):
const ARRIVALS: &[(&str, &str)] = &[
    ("syn502", "-p tcp --syn --dport 502"),
    ("syn80", "-p tcp --syn --dport 80"),
    ("udp161", "-p udp --dport 161"),
    ("synother", "-p tcp --syn -m multiport ! --dports 502,80"),
    ("udpother", "-p udp ! --dport 161"),
    ("outside", "-d 192.168.78.10"),
    ("foreign", "-d 192.168.77.10 ! -s 192.168.77.1"),
];

fn count_arrivals(machine: &Netns) {
    for (name, rule) in ARRIVALS {
        machine.sh(&format!(
            "iptables -A INPUT -i eth0 {rule} -m comment --comment {name}"
        ));
    }
}

/// Packets counted so far by the arrival rule `name`.
fn arrivals(machine: &Netns, name: &str) -> u64 {
    let out = machine.run("iptables", &["-L", "INPUT", "-v", "-x", "-n"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let tag = format!("/* {name} */");
    text.lines()
        .find(|l| l.contains(&tag))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no counter {name} in {text}"))
}

/// The engineer's namespace has neither the interface nor a route via it.
fn assert_gone(lab: &Lab, up: &VpnUp) {
    let links = lab.engineer.run("ip", &["-o", "link", "show"]);
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains(&format!(": {}:", up.iface)),
        "{} still exists: {links}",
        up.iface
    );
    let routes = lab.engineer.run("ip", &["route", "show"]);
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        !routes.contains("192.168.77.0/24") && !routes.contains(&up.iface),
        "a route is left: {routes}"
    );
}

/// The interface is up with the session's address and MTU, and the
/// engineer's namespace routes exactly the service's network through it.
fn assert_installed(lab: &Lab, up: &VpnUp) {
    assert!(up.address.starts_with("100."), "{up:?}");
    assert_eq!(up.routes, "192.168.77.0/24");
    let addr = lab
        .engineer
        .run("ip", &["-o", "-4", "addr", "show", "dev", &up.iface]);
    let addr = String::from_utf8_lossy(&addr.stdout);
    assert!(addr.contains(&format!("inet {}/32", up.address)), "{addr}");
    let link = lab
        .engineer
        .run("ip", &["-o", "link", "show", "dev", &up.iface]);
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(link.contains(",UP") || link.contains("<UP"), "{link}");
    let routes = lab.engineer.run("ip", &["route", "show", "dev", &up.iface]);
    let routes = String::from_utf8_lossy(&routes.stdout);
    let routes: Vec<&str> = routes.lines().map(str::trim).collect();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(routes[0].starts_with("192.168.77.0/24"), "{routes:?}");
}

#[test]
fn without_cap_net_admin_it_says_so_before_connecting() {
    let lab = Lab::new();
    let before = lab.audit_head();
    let (key, ticket) = lab.d.client("alice", "alice");
    let out = lab
        .engineer
        .cmd("setpriv")
        .args(["--bounding-set=-net_admin", "--inh-caps=-net_admin"])
        .arg(env!("CARGO_BIN_EXE_edgegate"))
        .args(["connect", "--vpn", "--gateway"])
        .arg(lab.d.quic.to_string())
        .arg("--gateway-key")
        .arg(lab.d.device_key.to_string())
        .arg("--identity")
        .arg(&key)
        .arg("--ticket")
        .arg(&ticket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "it printed decisions: it connected");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
    assert_eq!(lab.audit_head(), before, "the daemon saw a session");
}

fn a_session_without_the_vpn_is_refused_it(tls: bool) {
    let lab = Lab::new();
    let mut c = lab.connect("bob", tls, &[]);
    let line = c
        .stderr
        .wait_for(Duration::from_secs(20), |l| l.starts_with("denied: vpn: "))
        .unwrap_or_else(|| panic!("no denial: {:?}", c.stderr.rest(Duration::from_millis(200))));
    assert!(line.len() > "denied: vpn: ".len(), "{line}");
    let status = c.exit(Duration::from_secs(10)).expect("exits");
    assert!(!status.success());
    assert!(
        !c.stdout
            .seen
            .iter()
            .any(|l| l.starts_with("vpn up") || l == "ready"),
        "{:?}",
        c.stdout.seen
    );
    let links = lab.engineer.run("ip", &["-o", "link", "show"]);
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("edgegate"),
        "an interface was made"
    );
}

#[test]
fn a_session_without_the_vpn_is_refused_it_over_quic() {
    a_session_without_the_vpn_is_refused_it(false);
}

#[test]
fn a_session_without_the_vpn_is_refused_it_over_tls() {
    a_session_without_the_vpn_is_refused_it(true);
}

/// mbpoll, curl, snmpget and ping reach the machine; a port and a network
/// outside the service are refused fast and audited.
fn unmodified_tools_reach_the_machine(tls: bool) {
    let lab = Lab::new();
    // With --socks beside it: the same download both ways, for the figures.
    let mut c = lab.connect("alice", tls, &["--socks", "0"]);
    c.ready();
    let up = vpn_up(&c);
    assert_installed(&lab, &up);
    // The daemon needs no TUN: the router namespace has none.
    let tuns = lab.router.run("ip", &["-o", "link", "show", "type", "tun"]);
    assert!(tuns.stdout.is_empty(), "{tuns:?}");

    let (out, took) = lab.engineer_timed(
        "mbpoll",
        &[
            "-m", "tcp", "-a", "1", "-r", "1", "-c", "4", "-t", "4", "-1", MACHINE,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "mbpoll: {text} {out:?}");
    for (i, v) in [1234, 5678, 42, 7].iter().enumerate() {
        assert!(
            text.contains(&format!("[{}]: \t{v}", i + 1)),
            "register {i}: {text}"
        );
    }
    println!("mbpoll through the VPN: {} ms", took.as_millis());

    let (out, _) = lab.curl(&format!("http://{MACHINE}/status"));
    assert!(out.status.success(), "curl: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "filling line: running\n"
    );

    let (out, _) = lab.engineer_timed(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-t",
            "2",
            "-r",
            "1",
            "-On",
            MACHINE,
            "1.3.6.1.2.1.1.5.0",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "snmpget: {text} {out:?}");
    assert!(text.contains("STRING: \"plc-7\""), "{text}");

    // An upload: the engineer's TCP hands the interface large segments
    // (offload), which the client splits into packets of the VPN's MTU.
    let (line, mine) = upload(&lab);
    assert_eq!(line, mine, "what the machine received");

    let cpu_before = (cpu_ms(lab.d.child.id()), cpu_ms(c.child.id()));
    let (out, took) = lab.engineer_timed(
        "curl",
        &[
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "120",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &format!("http://{MACHINE}/bulk"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        BULK.to_string(),
        "{out:?}"
    );
    let via = if tls { "tls" } else { "quic" };
    let vpn_cpu = (
        cpu_ms(lab.d.child.id()) - cpu_before.0,
        cpu_ms(c.child.id()) - cpu_before.1,
    );
    let socks = format!("127.0.0.1:{}", c.socks());
    let cpu_before = (cpu_ms(lab.d.child.id()), cpu_ms(c.child.id()));
    let (out, socks_took) = lab.engineer_timed(
        "curl",
        &[
            "-sS",
            "--socks5",
            &socks,
            "--max-time",
            "120",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &format!("http://{MACHINE}/bulk"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        BULK.to_string(),
        "{out:?}"
    );
    let mib_s = |t: Duration| (BULK >> 20) as f64 / t.as_secs_f64();
    println!(
        "{} MiB ({via}): VPN {} ms, {:.1} MiB/s, CPU daemon {} ms client {} ms; \
         SOCKS {} ms, {:.1} MiB/s, CPU daemon {} ms client {} ms; VPN/SOCKS {:.2}",
        BULK >> 20,
        took.as_millis(),
        mib_s(took),
        vpn_cpu.0,
        vpn_cpu.1,
        socks_took.as_millis(),
        mib_s(socks_took),
        cpu_ms(lab.d.child.id()) - cpu_before.0,
        cpu_ms(c.child.id()) - cpu_before.1,
        mib_s(took) / mib_s(socks_took),
    );

    let (out, _) = lab.engineer_timed("ping", &["-c", "3", "-i", "0.2", "-W", "2", MACHINE]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ping: {text}");
    assert!(text.contains("3 received"), "{text}");
    if let Some(rtt) = text.lines().find(|l| l.starts_with("rtt")) {
        println!(
            "ping through the VPN ({}): {rtt}",
            if tls { "tls" } else { "quic" }
        );
    }

    // Refused: a port outside the service's ports, and (through a route
    // the engineer adds by hand) a network outside its networks.
    let head = lab.audit_head();
    let before = arrivals(&lab.machine, "synother") + arrivals(&lab.machine, "outside");
    let (out, took) = lab.curl(&format!("http://{MACHINE}:8080/"));
    let err = String::from_utf8_lossy(&out.stderr);
    // curl's 7: could not connect (refused), not 28 (timed out).
    assert_eq!(out.status.code(), Some(7), "port 8080: {err}");
    assert!(took < Duration::from_secs(1), "refused in {took:?}");
    lab.engineer
        .run("ip", &["route", "add", "192.168.78.0/24", "dev", &up.iface]);
    let (out, took) = lab.curl(&format!("http://{OUTSIDE}/status"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{OUTSIDE}: {err}");
    assert!(took < Duration::from_secs(1), "refused in {took:?}");
    let (out, took) = lab.engineer_timed("ping", &["-c", "1", "-W", "3", OUTSIDE]);
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(!out.status.success(), "ping {OUTSIDE}: {text}");
    assert!(
        text.contains("unreachable") || text.contains("prohibited") || text.contains("filtered"),
        "ping sees an unreachable: {text}"
    );
    assert!(took < Duration::from_secs(1), "answered in {took:?}");
    let (out, _) = lab.engineer_timed(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-t",
            "1",
            "-r",
            "0",
            OUTSIDE,
            "1.3.6.1.2.1.1.5.0",
        ],
    );
    assert!(!out.status.success(), "snmp on {OUTSIDE} answered");
    assert_eq!(
        arrivals(&lab.machine, "synother") + arrivals(&lab.machine, "outside"),
        before,
        "a refused flow reached the machine network"
    );
    // Audited: the first refusal on its own record, the next ones counted
    // (a scan must not cost a record each).
    let (first, count) = wait_until(Duration::from_secs(5), || {
        let (first, count) = lab.refusals_after(head);
        (count >= 4).then_some((first, count))
    })
    .unwrap_or_else(|| panic!("refusals audited: {:?}", lab.audit_after(head)));
    assert_eq!(first[0], format!("tcp {MACHINE}:8080"), "{first:?} {count}");
    // Refusals are answered in the packets; the session goes on.
    let (out, _) = lab.engineer_timed(
        "mbpoll",
        &[
            "-m", "tcp", "-a", "1", "-r", "1", "-c", "1", "-t", "4", "-1", MACHINE,
        ],
    );
    assert!(out.status.success(), "Modbus after the refusals: {out:?}");

    // Ctrl-C: a normal exit, and nothing left behind.
    let pid = nix::unistd::Pid::from_raw(c.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = c.exit(Duration::from_secs(10)).expect("exits on Ctrl-C");
    assert!(status.success(), "{status:?}");
    assert_gone(&lab, &up);
}

#[test]
fn unmodified_tools_reach_the_machine_over_quic() {
    unmodified_tools_reach_the_machine(false);
}

#[test]
fn unmodified_tools_reach_the_machine_over_tls() {
    unmodified_tools_reach_the_machine(true);
}

/// Consent revoked while mbpoll polls and curl downloads: both flows cut,
/// the client says so, new flows refused.
fn revocation_cuts_live_flows(tls: bool) {
    let lab = Lab::new();
    lab.d
        .control(edgegate::control::Request::ConsentGrant { secs: None });
    let (mut c, up) = lab.vpn("tess", tls);
    assert_installed(&lab, &up);

    // mbpoll says what failed on stderr: both go to one pipe.
    let mut mbpoll = lab
        .engineer
        .cmd("sh")
        .arg("-c")
        .arg(format!(
            "exec mbpoll -m tcp -a 1 -r 1 -c 1 -t 4 -l 100 {MACHINE} 2>&1"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut poll = Lines::new(mbpoll.stdout.take().unwrap());
    let _mbpoll = Proc(mbpoll);
    assert!(
        poll.wait_for(Duration::from_secs(10), |l| l.contains("1234"))
            .is_some(),
        "mbpoll polls: {:?}",
        poll.seen
    );
    let mut download = Proc(
        lab.engineer
            .cmd("curl")
            .args([
                "-sS",
                "--noproxy",
                "*",
                "--limit-rate",
                "2M",
                "-o",
                "/dev/null",
            ])
            .arg(format!("http://{MACHINE}/big"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let established = wait_until(Duration::from_secs(10), || {
        let out = lab
            .machine
            .run("ss", &["-Htn", "state", "established", "( sport = :80 )"]);
        (!out.stdout.is_empty()).then_some(())
    });
    assert!(established.is_some(), "the download runs");

    let start = Instant::now();
    lab.d.control(edgegate::control::Request::ConsentRevoke);
    let closed = c
        .stderr
        .wait_for(Duration::from_secs(5), |l| {
            l.starts_with("closed: lan: site-consent-required")
        })
        .unwrap_or_else(|| panic!("no cut: {:?}", c.stderr.rest(Duration::from_millis(200))));
    let to_notice = start.elapsed();
    let curl_end = wait_until(Duration::from_secs(5), || download.0.try_wait().unwrap());
    let to_curl = start.elapsed();
    println!(
        "revocation ({}): `closed` after {} ms, curl ended after {} ms",
        if tls { "tls" } else { "quic" },
        to_notice.as_millis(),
        to_curl.as_millis()
    );
    let curl_end = curl_end.expect("the download is cut");
    assert!(!curl_end.success(), "the download finished instead");
    // The Modbus flow is cut too, and the next polls are refused.
    let mut cuts = vec![closed];
    while cuts.len() < 2 {
        let next = c
            .stderr
            .wait_for_new(Duration::from_secs(5), |l| l.starts_with("closed: lan: "))
            .unwrap_or_else(|| panic!("one cut only: {cuts:?} {:?}", c.stderr.seen));
        cuts.push(next);
    }
    assert!(
        cuts.iter().any(|l| l.contains(&format!("{MACHINE}:502"))),
        "{cuts:?}"
    );
    assert!(
        cuts.iter().any(|l| l.contains(&format!("{MACHINE}:80"))),
        "{cuts:?}"
    );
    assert!(
        poll.wait_for_new(Duration::from_secs(5), |l| l
            .to_lowercase()
            .contains("fail")
            || l.to_lowercase().contains("error"))
            .is_some(),
        "mbpoll notices: {:?}",
        poll.seen
    );
    assert!(to_notice < Duration::from_secs(1), "{to_notice:?}");
    assert!(to_curl < Duration::from_secs(2), "{to_curl:?}");
    let (out, took) = lab.curl(&format!("http://{MACHINE}/status"));
    assert!(!out.status.success(), "a new flow after the revocation");
    assert!(took < Duration::from_secs(1), "refused in {took:?}");

    // SIGTERM: the interface and its routes go.
    let status = c.stop(Duration::from_secs(10)).expect("stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert_gone(&lab, &up);
}

#[test]
fn revocation_cuts_live_flows_over_quic() {
    revocation_cuts_live_flows(false);
}

#[test]
fn revocation_cuts_live_flows_over_tls() {
    revocation_cuts_live_flows(true);
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user and system) a process has used, in ms.
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the whole line, in clock ticks (100 a second).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    (fields[0] + fields[1]) * 10
}

/// `MemoryMax=` of the shipped unit, in KiB.
fn unit_memory_max_kib() -> u64 {
    let unit = include_str!("../systemd/edgegated.service");
    let value = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("MemoryMax="))
        .expect("the unit sets MemoryMax");
    let (n, unit) = value.split_at(value.len() - 1);
    let n: u64 = n.parse().expect("MemoryMax=<n>M");
    assert_eq!(unit, "M", "MemoryMax in MiB");
    n * 1024
}

/// Forged sources and a scan of the whole /24: nothing reaches the
/// machine network that the policy does not allow, the daemon's memory
/// and its audit log stay bounded.
fn spoofing_and_scanning_leak_nothing(tls: bool) {
    let lab = Lab::new();
    let (c, up) = lab.vpn("alice", tls);
    assert_installed(&lab, &up);
    let counters = |lab: &Lab| -> Vec<u64> {
        ARRIVALS
            .iter()
            .map(|(name, _)| arrivals(&lab.machine, name))
            .collect()
    };

    // Forged sources: the router's own, the engineer's WAN address, a
    // machine-network address, another VPN address.
    std::fs::write(lab.dir.path().join("spoof.py"), SPOOF).unwrap();
    let before = counters(&lab);
    let spoofed = lab.engineer.run(
        "python3",
        &[
            lab.dir.path().join("spoof.py").to_str().unwrap(),
            MACHINE,
            ROUTER_LAN,
            "10.77.1.2",
            "192.168.77.99",
            "100.64.0.250",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&spoofed.stdout).trim(), "12");
    // Then one real flow on the same session: the daemon handles the
    // session's packets in order, so once this one has arrived the forged
    // ones before it have been dealt with too.
    let (out, _) = lab.curl(&format!("http://{MACHINE}/status"));
    assert!(out.status.success(), "{out:?}");
    let after = counters(&lab);
    let delta: Vec<(&str, u64)> = ARRIVALS
        .iter()
        .zip(before.iter().zip(&after))
        .map(|((name, _), (b, a))| (*name, a - b))
        .collect();
    let got = |name: &str| delta.iter().find(|(n, _)| *n == name).unwrap().1;
    assert_eq!(got("syn80"), 1, "only the real connection: {delta:?}");
    assert_eq!(got("syn502"), 0, "{delta:?}");
    assert_eq!(got("udp161"), 0, "{delta:?}");
    assert_eq!(got("foreign"), 0, "{delta:?}");

    // A connect scan of the /24 on seven ports.
    std::fs::write(lab.dir.path().join("scan.py"), SCAN).unwrap();
    let pid = lab.d.child.id();
    let (rss_before, _) = memory_kib(pid);
    let head = lab.audit_head();
    let before = counters(&lab);
    let start = Instant::now();
    let scan = lab.engineer.run(
        "python3",
        &[
            lab.dir.path().join("scan.py").to_str().unwrap(),
            "192.168.77",
            "21,22,23,80,443,502,8080",
        ],
    );
    let took = start.elapsed();
    let result: serde_json::Value = serde_json::from_slice(&scan.stdout).unwrap();
    let (rss_after, peak) = memory_kib(pid);
    let records = lab.audit_after(head).len();
    let after = counters(&lab);
    println!(
        "scan of 1778 ports ({}) in {:.1} s: {result}; daemon RSS {} -> {} KiB, peak {} KiB; \
         {records} audit records",
        if tls { "tls" } else { "quic" },
        took.as_secs_f64(),
        rss_before,
        rss_after,
        peak
    );
    let open: Vec<&str> = result["open"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // What answers is the machine on an allowed port, nothing else. (An
    // allowed port may be refused too: the flows of the scan's hosts that
    // do not exist hold the session's flow budget while the router's
    // connects to them wait.)
    let allowed = [format!("{MACHINE}:502"), format!("{MACHINE}:80")];
    assert!(
        !open.is_empty() && open.iter().all(|o| allowed.iter().any(|a| a == o)),
        "{open:?}"
    );
    // Five of the seven ports are outside the service: refused at once.
    assert!(result["refused"].as_u64().unwrap() >= 5 * 254, "{result}");
    let index = |name: &str| ARRIVALS.iter().position(|(n, _)| *n == name).unwrap();
    for name in ["synother", "udpother", "outside", "foreign"] {
        assert_eq!(
            after[index(name)],
            before[index(name)],
            "{name} reached the machine"
        );
    }
    assert!(
        peak < unit_memory_max_kib() && peak - rss_before < 8 << 10,
        "the daemon's peak memory {peak} KiB, {rss_before} KiB before the scan"
    );
    assert!(
        records < 1778 / 2,
        "{records} audit records for a scan of 1778 ports"
    );
    // And the session still works once the scan's flows are gone.
    let polled = wait_until(Duration::from_secs(60), || {
        let (out, _) = lab.engineer_timed(
            "mbpoll",
            &[
                "-m", "tcp", "-a", "1", "-r", "1", "-c", "1", "-t", "4", "-1", MACHINE,
            ],
        );
        out.status.success().then_some(())
    });
    assert!(polled.is_some(), "Modbus after the scan");
    drop(c);
}

#[test]
fn spoofing_and_scanning_leak_nothing_over_quic() {
    spoofing_and_scanning_leak_nothing(false);
}

#[test]
fn spoofing_and_scanning_leak_nothing_over_tls() {
    spoofing_and_scanning_leak_nothing(true);
}

/// The interface and its routes go however the client ends: SIGTERM, the
/// session killed on the router, SIGKILL (the kernel's doing); a name of
/// the engineer's choosing.
#[test]
fn the_interface_and_routes_go_with_the_client() {
    let lab = Lab::new();

    let (mut c, up) = lab.vpn("alice", false);
    assert_eq!(up.iface, "edgegate0", "the first free edgegateN");
    assert_installed(&lab, &up);
    let status = c.stop(Duration::from_secs(10)).expect("stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert_gone(&lab, &up);

    // With -L and --socks: their lines, then `vpn up`, then `ready`.
    let mut c = lab.connect(
        "alice",
        true,
        &["--vpn-interface", "plc-vpn", "-L", "0=web", "--socks", "0"],
    );
    c.ready();
    let up = vpn_up(&c);
    assert_eq!(up.iface, "plc-vpn");
    assert_installed(&lab, &up);
    let kinds: Vec<&str> = c
        .stdout
        .seen
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["allow", "allow", "forward", "socks", "vpn", "ready"],
        "{:?}",
        c.stdout.seen
    );
    let port = c.forwarded("web");
    let page = lab.engineer.run(
        "curl",
        &[
            "-sS",
            "--noproxy",
            "*",
            &format!("http://127.0.0.1:{port}/status"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&page.stdout),
        "filling line: running\n"
    );
    let edgegate::control::Response::Sessions(sessions) =
        lab.d.control(edgegate::control::Request::Sessions)
    else {
        panic!("sessions answer")
    };
    assert_eq!(sessions.len(), 1);
    lab.d
        .control(edgegate::control::Request::Kill { id: sessions[0].id });
    assert!(c
        .stderr
        .wait_for(Duration::from_secs(10), |l| l
            == "closed: session: session killed")
        .is_some());
    let status = c.exit(Duration::from_secs(10)).expect("exits");
    assert!(!status.success());
    assert_gone(&lab, &up);

    // A network the engineer's computer routes already is left alone,
    // and said so.
    lab.engineer
        .run("ip", &["route", "add", "192.168.77.0/24", "dev", "wan0"]);
    let (mut c, up) = lab.vpn("alice", false);
    assert_eq!(up.routes, "none");
    let said = c
        .stderr
        .wait_for(Duration::from_secs(5), |l| {
            l.starts_with("vpn: route 192.168.77.0/24 left out")
        })
        .expect("the route left out is named");
    assert!(said.contains("routes that network already"), "{said}");
    let routes = lab
        .engineer
        .run("ip", &["route", "show", "192.168.77.0/24"]);
    assert!(
        String::from_utf8_lossy(&routes.stdout).contains("dev wan0"),
        "the engineer's own route was replaced"
    );
    c.stop(Duration::from_secs(10)).expect("stops");
    lab.engineer
        .run("ip", &["route", "del", "192.168.77.0/24", "dev", "wan0"]);

    let (mut c, up) = lab.vpn("alice", false);
    assert_installed(&lab, &up);
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    assert_gone(&lab, &up);
}
