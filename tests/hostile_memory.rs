//! A hostile network cannot crash the router: the real daemon runs in a
//! memory cgroup limited to the unit's own `MemoryMax` (read from
//! `systemd/edgegated.service`), with its default limits, while strangers
//! (no ticket) push maximum-size junk bundles over QUIC and TLS in
//! parallel, flood streams before authentication on both transports, and
//! replay QUIC Initials from many ports. It must stay alive, and a
//! legitimate engineer must still get a session and a first byte within a
//! second. The peak memory of the cgroup is printed.
//!
//! Needs root (it creates a memory cgroup), as CI runs; it says so and
//! fails elsewhere rather than passing without having checked anything.

#[path = "tunnel_support/harness.rs"]
mod harness;

use edgegate::tlsid::{self, Identity};
use edgegate::transport::mux::{Growth, MuxConn, Side};
use edgegate::transport::{Connection, QuicConn};
use harness::*;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// `MemoryMax=` of the shipped unit, in bytes.
fn unit_memory_max() -> u64 {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/edgegated.service"),
    )
    .unwrap();
    let v = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("MemoryMax="))
        .expect("the unit sets MemoryMax");
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().unwrap();
    match unit {
        "K" => n << 10,
        "M" => n << 20,
        "G" => n << 30,
        _ => v.parse().unwrap(),
    }
}

/// A memory cgroup (v1 `memory.limit_in_bytes`, or v2 `memory.max`),
/// removed on drop.
struct Cgroup {
    dir: PathBuf,
    v2: bool,
}

impl Cgroup {
    fn new(limit: u64) -> Cgroup {
        assert!(
            nix::unistd::geteuid().is_root(),
            "tests/hostile_memory.rs creates a memory cgroup and must run as root (CI does)"
        );
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let (dir, v2) = if v1.join("memory.limit_in_bytes").exists() {
            (
                v1.join(format!("edgegate-test-{}", std::process::id())),
                false,
            )
        } else {
            let root = Path::new("/sys/fs/cgroup");
            assert!(
                root.join("cgroup.controllers").exists(),
                "no memory cgroup controller found"
            );
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory");
            (
                root.join(format!("edgegate-test-{}", std::process::id())),
                true,
            )
        };
        std::fs::create_dir(&dir).unwrap();
        let file = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        std::fs::write(dir.join(file), limit.to_string()).unwrap();
        if v2 {
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        }
        Cgroup { dir, v2 }
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    /// Peak usage, in bytes.
    fn peak(&self) -> u64 {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        std::fs::read_to_string(self.dir.join(file))
            .map(|s| s.trim().parse().unwrap_or(0))
            .unwrap_or(0)
    }

    /// OOM kills inside the group.
    fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Processes left in it (a killed daemon) go back to the root group.
        let root = self.dir.parent().unwrap().join("cgroup.procs");
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(&root, pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A real QUIC Initial, captured by pointing a client at a socket of ours.
fn captured_initial(device_key: edgegate::PublicKey, rt: &tokio::runtime::Runtime) -> Vec<u8> {
    let trap = UdpSocket::bind("127.0.0.1:0").unwrap();
    trap.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let trap_addr = trap.local_addr().unwrap();
    let endpoint = rt.block_on(async move {
        let id = Identity::new(&key(7)).unwrap();
        let endpoint =
            edgegate::transport::quic::client(trap_addr, &id, device_key, &Default::default())
                .unwrap();
        std::mem::forget(endpoint.connect(trap_addr, tlsid::SERVER_NAME).unwrap());
        endpoint
    });
    let mut initial = vec![0u8; 65536];
    let n = trap.recv(&mut initial).expect("the client's Initial");
    initial.truncate(n);
    drop(endpoint);
    initial
}

/// Strangers open streams before any `Hello` and write into them, on one
/// connection per round, until `stop`.
async fn stream_flood(
    d_quic: std::net::SocketAddr,
    d_tls: std::net::SocketAddr,
    device_key: edgegate::PublicKey,
    stop: Arc<AtomicBool>,
    counters: Counters,
) {
    use tokio::io::AsyncWriteExt;
    let id = Identity::new(&key(8)).unwrap();
    let junk = vec![0x5a; 200 << 10];
    let quic =
        edgegate::transport::quic::client(d_quic, &id, device_key, &Default::default()).unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(tlsid::client_config(&id, device_key).unwrap()));
    while !stop.load(Ordering::Relaxed) {
        let mut conns: Vec<Arc<dyn Connection>> = Vec::new();
        if let Ok(Ok(c)) = tokio::time::timeout(
            Duration::from_secs(2),
            quic.connect(d_quic, tlsid::SERVER_NAME).unwrap(),
        )
        .await
        {
            conns.push(Arc::new(QuicConn::new(c, None)));
        }
        if let Ok(tcp) = tokio::net::TcpStream::connect(d_tls).await {
            if let Ok(Ok(tls)) = tokio::time::timeout(
                Duration::from_secs(2),
                connector.connect(tlsid::server_name(), tcp),
            )
            .await
            {
                conns.push(Arc::new(MuxConn::new(
                    tls,
                    Side::Client,
                    64,
                    Growth::CLIENT,
                    None,
                    d_tls,
                )));
            }
        }
        for conn in &conns {
            // 32 streams of 200 KiB each, none of them ever a frame.
            for _ in 0..32 {
                let opened = tokio::time::timeout(Duration::from_millis(200), conn.open_bi()).await;
                let Ok(Ok(mut s)) = opened else { break };
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), s.send.write_all(&junk)).await;
                std::mem::forget(s);
            }
        }
        counters.add(2);
        drop(conns);
    }
}

#[test]
fn strangers_cannot_crash_the_daemon_under_its_memory_limit() {
    let limit = unit_memory_max();
    let cgroup = Cgroup::new(limit);
    let mut d = start_daemon();
    cgroup.add(d.child.id());
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Junk the size of the largest bundle the daemon accepts (4 MiB).
    let mut junk = vec![0u8; 4 << 20];
    for (i, b) in junk.iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0];
    }
    // And 33 MB, the attack that used to kill it: refused from its header.
    let mut huge = junk.clone();
    huge.resize(33_000_000, 0x77);
    let huge = d.write("huge.bundle", &huge);
    let junk = d.write("junk.bundle", &junk);
    let initial = captured_initial(d.device_key, &rt);

    let counters = Counters::default();
    let (key, ticket) = d.client("alice", "alice");
    let phases = [
        ("maximum-size junk pushes", [true, false, false]),
        ("pre-authentication stream floods", [false, true, false]),
        ("an Initial flood", [false, false, true]),
        ("all of them at once", [true, true, true]),
    ];
    for (what, [push, flood, initial_flood]) in phases {
        let stop = Arc::new(AtomicBool::new(false));
        let before = counters.snapshot();
        let mut attackers = Vec::new();
        if push {
            attackers.extend(junk_pushers(&d, [&junk, &huge], &stop, &counters));
        }
        if flood {
            attackers.extend(stream_flooders(&d, &stop, &counters));
        }
        if initial_flood {
            attackers.push(initial_flooder(&d, &initial, &stop, &counters));
        }
        // Let the attack build up before the engineer comes.
        let under_way = wait_until(Duration::from_secs(60), || {
            let now = counters.snapshot();
            let going = (!push || now[0] >= before[0] + 16)
                && (!flood || now[2] >= before[2] + 6)
                && (!initial_flood || now[3] >= before[3] + 1000);
            going.then_some(())
        });
        assert!(under_way.is_some(), "{what}: the attack never got going");
        let mut clients = Vec::new();
        for tls in [false, true] {
            let started = Instant::now();
            let mut c = d.connect(&key, &ticket, tls, &forwards(&["web"]));
            c.ready();
            let page = http_get(c.forwarded("web"), "/");
            let took = started.elapsed();
            assert!(page.contains("hello from the plc"));
            println!(
                "{} session and first fetch amid {what}: {took:?}",
                if tls { "TLS" } else { "QUIC" }
            );
            assert!(took < Duration::from_secs(1), "{what}: {took:?}");
            clients.push(c);
        }
        stop.store(true, Ordering::Relaxed);
        for a in attackers {
            a.join().unwrap();
        }
        // The engineer leaves as Ctrl-C leaves (the session is closed), so
        // the next phase's session is no third of alice's (two per user).
        for mut c in clients {
            assert!(c.stop(Duration::from_secs(5)).is_some());
        }
        let gone = wait_until(Duration::from_secs(5), || {
            let edgegate::control::Response::Sessions(live) =
                d.control(edgegate::control::Request::Sessions)
            else {
                panic!()
            };
            live.is_empty().then_some(())
        });
        assert!(gone.is_some(), "{what}: a session lingers");
        assert!(
            d.child.try_wait().unwrap().is_none(),
            "the daemon died under {what}"
        );
    }
    let [pushes, rejected, rounds, initials] = counters.snapshot();
    println!(
        "peak memory of the daemon's cgroup: {:.1} MiB of {} MiB; {pushes} junk pushes \
         ({rejected} answered rejected), {rounds} flood rounds, {initials} Initials",
        cgroup.peak() as f64 / (1 << 20) as f64,
        limit >> 20,
    );
    assert_eq!(cgroup.oom_kills(), 0, "the OOM killer fired in the cgroup");
    // Every junk push got an answer (`rejected: bad-signature` or `busy`),
    // none a dropped connection.
    assert_eq!(rejected, pushes, "junk pushes left unanswered");
}

/// What the attackers did: junk pushes, of them answered `rejected`,
/// stream-flood rounds, Initials sent.
#[derive(Default, Clone)]
struct Counters(Arc<[AtomicUsize; 4]>);

impl Counters {
    fn add(&self, i: usize) {
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> [usize; 4] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

/// 8 parallel junk pushers through the real CLI: half over TLS, half of
/// each with the bundle-sized junk, half with the oversized.
fn junk_pushers(
    d: &Daemon,
    files: [&Path; 2],
    stop: &Arc<AtomicBool>,
    counters: &Counters,
) -> Vec<thread::JoinHandle<()>> {
    (0..8)
        .map(|i| {
            let (stop, counters) = (stop.clone(), counters.clone());
            let junk = files[i / 4].to_path_buf();
            let (bin, key) = (env!("CARGO_BIN_EXE_edgegate"), d.device_key);
            let gw = if i % 2 == 0 { d.quic } else { d.tls };
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut cmd = std::process::Command::new(bin);
                    cmd.args(["bundle", "push"]).arg(&junk).args([
                        "--gateway",
                        &gw.to_string(),
                        "--gateway-key",
                        &key.to_string(),
                    ]);
                    if i % 2 == 1 {
                        cmd.arg("--tls");
                    }
                    let out = cmd.output().unwrap();
                    counters.add(0);
                    if String::from_utf8_lossy(&out.stderr).contains("rejected") {
                        counters.add(1);
                    }
                }
            })
        })
        .collect()
}

/// Two pre-authentication stream flooders, each on both transports.
fn stream_flooders(
    d: &Daemon,
    stop: &Arc<AtomicBool>,
    counters: &Counters,
) -> Vec<thread::JoinHandle<()>> {
    (0..2)
        .map(|_| {
            let (stop, counters) = (stop.clone(), counters.clone());
            let (q, t, k) = (d.quic, d.tls, d.device_key);
            thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(stream_flood(q, t, k, stop, counters));
            })
        })
        .collect()
}

/// Replayed QUIC Initials from many ports and addresses of 127/8.
fn initial_flooder(
    d: &Daemon,
    initial: &[u8],
    stop: &Arc<AtomicBool>,
    counters: &Counters,
) -> thread::JoinHandle<()> {
    let (stop, counters, quic, initial) =
        (stop.clone(), counters.clone(), d.quic, initial.to_vec());
    thread::spawn(move || {
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let src = std::net::Ipv4Addr::new(127, 0, (n >> 8) as u8 % 250 + 1, n as u8);
            if let Ok(s) = UdpSocket::bind((src, 0)) {
                let _ = s.send_to(&initial, quic);
                counters.add(3);
            }
            n = n.wrapping_add(1);
            thread::yield_now();
        }
    })
}
