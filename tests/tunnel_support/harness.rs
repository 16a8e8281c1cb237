//! Shared loopback fixtures for the tunnel tests: a real `edgegated`
//! process, real `edgegate connect` processes, real backends (HTTP, TCP
//! echo) on 127.0.0.1, keys, bundles and tickets made with the library.
#![allow(dead_code, unreachable_pub)]

#[path = "daemon.rs"]
mod daemon;
pub use daemon::*;

#[path = "netns.rs"]
pub mod netns;

#[path = "relay.rs"]
pub mod relay;

use ed25519_dalek::SigningKey;
use edgegate::policy_file::{compile_for_device, PolicyFile};
use edgegate_proto::ticket::Ticket;
use edgegate_proto::PublicKey;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

pub const DEVICE: &str = "router-1";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub use edgegate::testkit::{key, public};

/// An HTTP/1.1 backend: `GET /` answers a small page, `GET /stream` sends
/// headers then a chunk every 10 ms until the client goes away. Every
/// request line is recorded.
pub struct HttpBackend {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
}

pub fn http_backend() -> HttpBackend {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let log = log.clone();
            thread::spawn(move || serve_http(conn, log));
        }
    });
    HttpBackend { addr, requests }
}

fn serve_http(conn: TcpStream, log: Arc<Mutex<Vec<String>>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    // One request per connection: the response ends with the connection.
    {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let request = line.trim_end().to_string();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
        }
        log.lock().unwrap().push(request.clone());
        if request.contains(" /stream ") {
            let _ = out.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n");
            loop {
                if out.write_all(&[b'x'; 1024]).is_err() {
                    return;
                }
                // The pace of the stream (a scenario, not a wait).
                thread::sleep(Duration::from_millis(10));
            }
        }
        let body = "hello from the plc\n";
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        if !request.starts_with("HEAD") {
            let _ = out.write_all(body.as_bytes());
        }
    }
}

/// A TCP echo backend (stands in for VNC and for a VPN host).
pub fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut r = conn.try_clone().unwrap();
                let mut w = conn;
                let _ = std::io::copy(&mut r, &mut w);
            });
        }
    });
    addr
}

/// The test policy, with backend ports filled in. `alice_status` lets a
/// later bundle make her inactive.
pub fn policy_text(http: SocketAddr, echo: SocketAddr, alice_status: &str) -> String {
    policy_text_ws(http, echo, None, alice_status)
}

/// The test policy with, if `ws` is given, a WebSocket service `live`.
pub fn policy_text_ws(
    http: SocketAddr,
    echo: SocketAddr,
    ws: Option<SocketAddr>,
    alice_status: &str,
) -> String {
    let live = ws
        .map(|ws| {
            format!(
                r#"  {{ id = "live", name = "Live", kind = "websocket", target = "{ws}", category = "http" }},"#
            )
        })
        .unwrap_or_default();
    format!(
        r#"
revoked_tickets = ["00112233445566778899aabbccddeeff"]

[company]
id = "acme"
name = "ACME"

[[category]]
id = "http"
name = "HTTP"

[[category]]
id = "info"
name = "Machine info"

[[category]]
id = "vnc"
name = "VNC"

[[category]]
id = "vpn"
name = "VPN"

[[group]]
id = "site"
name = "Site"
type = "customer"

[[role]]
id = "engineer"
name = "Engineer"
scope = "company"
grants = ["http", "vnc", "vpn", "info:read"]

[[role]]
id = "viewer"
name = "Viewer"
scope = "company"
grants = ["info:read"]

[[user]]
id = "alice"
name = "Alice"
status = "{alice_status}"
roles = ["engineer"]

[[user]]
id = "bob"
name = "Bob"
roles = ["viewer"]

[[role]]
id = "technician"
name = "Service technician"
scope = "group"
grants = ["vnc"]
site_consent = true

[[user]]
id = "sven"
name = "Sven"
memberships = [{{ group = "site", role = "technician" }}]

[[user]]
id = "dora"
name = "Dora"
roles = ["engineer"]
logout_period = "22h"

[[user]]
id = "mira"
name = "Mira"
roles = ["engineer"]
mfa = true

[[device]]
id = "{DEVICE}"
name = "Router"
groups = ["site"]
services = [
  {{ id = "web", name = "PLC web", kind = "http", target = "{http}", category = "http" }},
  {{ id = "info", name = "Info", kind = "http", target = "{http}", category = "info" }},
  {{ id = "hmi", name = "HMI", kind = "vnc", target = "{echo}", category = "vnc" }},
  {{ id = "lan", name = "LAN", kind = "vpn", networks = ["127.0.0.0/8"], ports = [{port}], category = "vpn" }},
{live}
]
"#,
        port = echo.port()
    )
}

/// Seal a bundle of `policy` for `device` with `serial`.
pub fn bundle_bytes(policy: &str, device: &str, serial: u64, signer: &SigningKey) -> Vec<u8> {
    let file = PolicyFile::parse(policy, "test-policy.toml").expect("test policy parses");
    let now = now();
    let b = compile_for_device(&file, device, serial, now - 60, now + 86_400).unwrap();
    edgegate::testkit::seal(&b, signer)
}

pub fn ticket_bytes(
    user: &str,
    device: &str,
    client: &PublicKey,
    authority: &SigningKey,
) -> Vec<u8> {
    ticket_with(user, device, client, authority, |_| {})
}

/// A ticket, adjusted by `edit` before sealing.
pub fn ticket_with(
    user: &str,
    device: &str,
    client: &PublicKey,
    authority: &SigningKey,
    edit: impl FnOnce(&mut Ticket),
) -> Vec<u8> {
    let mut t = Ticket {
        id: rand::random(),
        ..edgegate::testkit::ticket(user, device, *client, now())
    };
    edit(&mut t);
    edgegate::testkit::seal_ticket(&t, authority)
}

/// Lines of a child's output, collected by a thread.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    pub fn new(r: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Wait for a line satisfying `f` (up to `within`), among those already
    /// seen too.
    pub fn wait_for(&mut self, within: Duration, f: impl Fn(&str) -> bool) -> Option<String> {
        if let Some(l) = self.seen.iter().find(|l| f(l)) {
            return Some(l.clone());
        }
        self.wait_for_new(within, f)
    }

    /// Wait for a line satisfying `f` among those not yet seen: for a line
    /// printed once per event (each reload logs the same one).
    pub fn wait_for_new(&mut self, within: Duration, f: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.rx.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if f(&line) {
                return Some(line);
            }
        }
    }

    /// Everything until the stream closes (or `within`).
    pub fn rest(&mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => break,
            }
        }
        self.seen.clone()
    }
}

/// The one polling wait of the tests, for what the code reports only when
/// asked (an exit status, the control socket's answers): `f` every 20 ms
/// until it gives `Some`, or `None` after `within`. Anything the code
/// prints is waited for with `Lines::wait_for` instead.
pub fn wait_until<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Connect to a local echo forward and check it echoes.
pub fn echo_through(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    s
}

/// Wait until the peer closes `s`; how long it took.
pub fn wait_closed(mut s: TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return None
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

/// A WebSocket echo backend (the demo's), on 127.0.0.1.
pub fn ws_backend() -> SocketAddr {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| tokio::runtime::Runtime::new().unwrap());
    rt.block_on(edgegate::demo::backends::websocket(
        ([127, 0, 0, 1], 0).into(),
    ))
    .unwrap()
}

/// Send a WebSocket upgrade for `/live` through a local port and read the
/// response head, blank line included. The caller judges the head.
pub fn ws_upgrade(port: u16, read_timeout: Duration) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(read_timeout)).unwrap();
    s.write_all(
        b"GET /live HTTP/1.1\r\nHost: hmi\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    (s, head)
}

/// Open a WebSocket through a local forward: upgrade, then one echoed frame.
pub fn ws_open(port: u16) -> TcpStream {
    let (mut s, head) = ws_upgrade(port, Duration::from_secs(10));
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s.write_all(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2])
        .unwrap();
    let mut frame = [0u8; 4];
    s.read_exact(&mut frame).unwrap();
    assert_eq!(frame, [0x81, 2, b'h', b'i']);
    s
}

/// One HTTP/1.0-style GET through a local port; returns the whole response.
pub fn http_get(port: u16, path: &str) -> String {
    http_request(port, "GET", path)
}

pub fn http_request(port: u16, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: plc\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// SOCKS5: greet, CONNECT to `dest` (IPv4) through the proxy on `proxy`;
/// the reply code and the stream.
pub fn socks_connect(proxy: u16, dest: SocketAddr) -> (u8, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", proxy)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut greet = [0u8; 2];
    s.read_exact(&mut greet).unwrap();
    assert_eq!(greet, [5, 0]);
    let SocketAddr::V4(v4) = dest else {
        panic!("v4 only")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&v4.ip().octets());
    req.extend_from_slice(&v4.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).unwrap();
    (reply[1], s)
}
