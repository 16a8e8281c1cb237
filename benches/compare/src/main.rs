//! `egb`: the loopback tools of benches/compare.sh. Every subcommand is
//! bounded in time and bytes and prints its figures on `RESULT` lines.
//!
//! - `source ADDR BYTES [hold]`: TCP backend; each connection gets BYTES
//!   bytes, then (with `hold`) stays open until the peer closes.
//! - `pull ADDR BYTES TIMEOUT_S`: one stream; reads until EOF or BYTES.
//! - `multi ADDR STREAMS BYTES TIMEOUT_S`: STREAMS concurrent pulls.
//! - `firstbyte ADDR RUNS`: TCP connect + first byte, and connect alone.
//! - `spawnfirst PORT RUNS CMD...`: spawn CMD (a forwarder), then time until
//!   the first backend byte arrives through 127.0.0.1:PORT.
//! - `libsetup GW DEVKEY IDKEY TICKET SERVICE RUNS quic|tls`: the library
//!   client in-process: new session + stream to first byte, and stream open
//!   on an existing session to first byte.
//! - `idle GW DEVKEY IDKEY TICKET COUNT`: open COUNT idle QUIC sessions and
//!   hold them until stdin closes.
//! - `synth OUT AUTHKEY DEVICE SERIAL`: write the signed 10,000-user
//!   synthetic bundle for DEVICE (valid from now), and time the accept path
//!   (verify + compile + store, flushed) in-process in a scratch store.
//! - `revoke PORT STREAMS CMD...`: hold STREAMS streams through PORT, run
//!   CMD (the push), time each stream's close from the push's exit.
//! - `relayidle RELAY RELAYKEY AUTHKEY COUNT`: COUNT simulated routers
//!   (one UDP socket, the router's QUIC keep-alive) enroll under AUTHKEY
//!   and register with the relay; `RESULT relayidle COUNT SECS` once all
//!   are. When the relay goes away each registers again as `edgegated`'s
//!   uplink does (at once after `GoingAway`, else after its full-jitter
//!   back-off; 3 s per QUIC attempt); `RESULT reregister COUNT SECS` from
//!   the first loss until all are back. Runs until stdin closes.

use edgegate::client::{open_session, Session, Target};
use edgegate::keyfile::{load_public_key, load_signing_key};
use edgegate::tlsid::Identity;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| args.get(i).cloned().unwrap_or_else(|| usage());
    match args.first().map(String::as_str) {
        Some("source") => source(&a(1), num(&a(2)), args.get(3).is_some_and(|s| s == "hold")),
        Some("pull") => pull(&a(1), num(&a(2)), num(&a(3))),
        Some("multi") => multi(&a(1), num(&a(2)) as usize, num(&a(3)), num(&a(4))),
        Some("firstbyte") => firstbyte(&a(1), num(&a(2)) as usize),
        Some("spawnfirst") => spawnfirst(num(&a(1)) as u16, num(&a(2)) as usize, &args[3..]),
        Some("libsetup") => libsetup(&args[1..]),
        Some("idle") => idle(&args[1..]),
        Some("synth") => synth(&args[1..]),
        Some("revoke") => revoke(num(&a(1)) as u16, num(&a(2)) as usize, &args[3..]),
        Some("aead") => aead(num(&a(1))),
        Some("relayidle") => relayidle(&args[1..]),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: egb source|pull|multi|firstbyte|spawnfirst|libsetup|idle|revoke|aead|relayidle ... (see src/main.rs)");
    std::process::exit(2)
}

fn num(s: &str) -> u64 {
    s.parse().unwrap_or_else(|_| usage())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| usage())
}

fn source(listen: &str, bytes: u64, hold: bool) {
    let l = TcpListener::bind(addr(listen)).expect("bind");
    println!("listening {}", l.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    let buf = vec![0x5au8; 256 << 10];
    let buf: &'static [u8] = Box::leak(buf.into_boxed_slice());
    for c in l.incoming().flatten() {
        thread::spawn(move || {
            let mut c = c;
            let _ = c.set_nodelay(true);
            let mut left = bytes;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                if c.write_all(&buf[..n]).is_err() {
                    return;
                }
                left -= n as u64;
            }
            if hold {
                let mut sink = [0u8; 4096];
                while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
            }
        });
    }
}

fn connect_retry(a: SocketAddr, within: Duration) -> TcpStream {
    let end = Instant::now() + within;
    loop {
        match TcpStream::connect(a) {
            Ok(c) => return c,
            Err(e) if Instant::now() > end => panic!("connect {a}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Read until EOF or `bytes`; (bytes read, seconds from connect).
fn pull_one(a: SocketAddr, bytes: u64, timeout: Duration) -> (u64, f64) {
    let mut c = connect_retry(a, Duration::from_secs(5));
    c.set_read_timeout(Some(timeout)).unwrap();
    let t = Instant::now();
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    while got < bytes && t.elapsed() < timeout {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
    }
    (got, t.elapsed().as_secs_f64())
}

fn gbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs / 1e9
}

fn pull(a: &str, bytes: u64, timeout_s: u64) {
    let (got, secs) = pull_one(addr(a), bytes, Duration::from_secs(timeout_s));
    println!("RESULT pull {got} {secs:.3} {:.3}", gbps(got, secs));
}

fn multi(a: &str, streams: usize, bytes: u64, timeout_s: u64) {
    let a = addr(a);
    let t = Instant::now();
    let hs: Vec<_> = (0..streams)
        .map(|_| thread::spawn(move || pull_one(a, bytes, Duration::from_secs(timeout_s))))
        .collect();
    let r: Vec<(u64, f64)> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    let secs = t.elapsed().as_secs_f64();
    let total: u64 = r.iter().map(|x| x.0).sum();
    let per: Vec<f64> = r.iter().map(|&(b, s)| gbps(b, s)).collect();
    let min = per.iter().cloned().fold(f64::MAX, f64::min);
    let max = per.iter().cloned().fold(0.0, f64::max);
    let complete = r.iter().filter(|x| x.0 == bytes).count();
    println!(
        "RESULT multi {:.3} {:.3} {:.3} {total} {complete}",
        gbps(total, secs),
        min,
        max
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn firstbyte(a: &str, runs: usize) {
    let a = addr(a);
    let mut fb = Vec::new();
    let mut conn = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut c = TcpStream::connect(a).unwrap();
        conn.push(t.elapsed().as_secs_f64() * 1e3);
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        fb.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "RESULT firstbyte {:.4} {:.4}",
        median(&mut fb),
        median(&mut conn)
    );
}

/// Connect to `port` until a backend byte arrives; retries refused or cut
/// connections (the forwarder may not listen or forward yet).
fn first_byte_through(port: u16, within: Duration) -> Option<(TcpStream, Instant)> {
    let a: SocketAddr = ([127, 0, 0, 1], port).into();
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(mut c) = TcpStream::connect(a) {
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut b = [0u8; 1];
            if c.read_exact(&mut b).is_ok() {
                return Some((c, Instant::now()));
            }
        }
        thread::sleep(Duration::from_micros(200));
    }
    None
}

fn spawnfirst(port: u16, runs: usize, cmd: &[String]) {
    let mut total = Vec::new();
    let mut ready = Vec::new();
    let mut again = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if l == "ready" {
                    let _ = tx.send(Instant::now());
                }
            }
        });
        let got = first_byte_through(port, Duration::from_secs(10));
        if let Some((_c, at)) = got {
            total.push((at - t).as_secs_f64() * 1e3);
            if let Ok(r) = rx.try_recv() {
                ready.push((r - t).as_secs_f64() * 1e3);
            }
            let t2 = Instant::now();
            if first_byte_through(port, Duration::from_secs(5)).is_some() {
                again.push(t2.elapsed().as_secs_f64() * 1e3);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        thread::sleep(Duration::from_millis(20));
    }
    let m = |v: &mut Vec<f64>| if v.is_empty() { f64::NAN } else { median(v) };
    println!(
        "RESULT spawnfirst {:.3} {:.3} {:.3} {}",
        m(&mut total),
        m(&mut ready),
        m(&mut again),
        total.len()
    );
}

fn target(gw: &str, devkey: &str, idkey: &str, tls: bool) -> Target {
    let key = load_signing_key(Path::new(idkey)).expect("identity key");
    Target::new(
        addr(gw),
        load_public_key(devkey).expect("device key"),
        Identity::new(&key).expect("identity"),
        tls,
    )
}

/// The runtime `edgegate connect` uses: one thread.
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn first_byte(s: &Session, service: &str) -> f64 {
    let t = Instant::now();
    let mut st = s.open(service, None).await.expect("open");
    let mut buf = vec![0u8; 64 << 10];
    let _ = st.reader.read_chunk(&mut buf).await.expect("first byte");
    t.elapsed().as_secs_f64() * 1e3
}

fn libsetup(a: &[String]) {
    if a.len() < 7 {
        usage();
    }
    let tgt = target(&a[0], &a[1], &a[2], a[6] == "tls");
    let ticket = std::fs::read(&a[3]).expect("ticket");
    let (service, runs) = (a[4].clone(), num(&a[5]) as usize);
    rt().block_on(async move {
        let (mut new, mut again) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = Instant::now();
            let (s, _ev) = open_session(&tgt, ticket.clone()).await.expect("session");
            let _ = first_byte(&s, &service).await;
            new.push(t.elapsed().as_secs_f64() * 1e3);
            again.push(first_byte(&s, &service).await);
            s.close();
            drop(s);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!(
            "RESULT libsetup {:.3} {:.3}",
            median(&mut new),
            median(&mut again)
        );
    });
}

fn idle(a: &[String]) {
    if a.len() < 5 {
        usage();
    }
    let tgt = std::sync::Arc::new(target(&a[0], &a[1], &a[2], false));
    let ticket = std::fs::read(&a[3]).expect("ticket");
    let count = num(&a[4]) as usize;
    rt().block_on(async move {
        let t = Instant::now();
        let mut sessions = Vec::with_capacity(count);
        // Batches below the daemon's max_handshakes.
        for chunk in (0..count).collect::<Vec<_>>().chunks(32) {
            let hs: Vec<_> = chunk
                .iter()
                .map(|_| {
                    let (tgt, ticket) = (tgt.clone(), ticket.clone());
                    tokio::spawn(async move { open_session(&tgt, ticket).await })
                })
                .collect();
            for h in hs {
                match h.await.unwrap() {
                    Ok(s) => sessions.push(s),
                    Err(e) => eprintln!("session: {e}"),
                }
            }
        }
        println!(
            "RESULT idle {} {:.3}",
            sessions.len(),
            t.elapsed().as_secs_f64()
        );
        std::io::stdout().flush().unwrap();
        // Hold until stdin closes (bounded by the caller's timeout).
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_to_string(&mut s);
        })
        .await
        .unwrap();
        drop(sessions);
    });
}

fn revoke(port: u16, streams: usize, cmd: &[String]) {
    let (tx, rx) = mpsc::channel();
    let mut opened = 0;
    for i in 0..streams {
        let Some((mut c, _)) = first_byte_through(port, Duration::from_secs(5)) else {
            eprintln!("stream {i} did not open");
            continue;
        };
        opened += 1;
        let tx = tx.clone();
        thread::spawn(move || {
            let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
            let mut b = [0u8; 4096];
            while matches!(c.read(&mut b), Ok(n) if n > 0) {}
            let _ = tx.send(Instant::now());
        });
    }
    drop(tx);
    thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let st = Command::new(&cmd[0])
        .args(&cmd[1..])
        .status()
        .expect("push");
    let ack = Instant::now();
    assert!(st.success(), "push failed");
    let mut from_ack = Vec::new();
    let mut from_start = Vec::new();
    let mut early = 0;
    let end = Instant::now() + Duration::from_secs(10);
    while from_start.len() < opened {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(at) => {
                from_start.push((at - t0).as_secs_f64() * 1e3);
                if at < ack {
                    early += 1;
                } else {
                    from_ack.push((at - ack).as_secs_f64() * 1e3);
                }
            }
            Err(_) => break,
        }
    }
    let closed = from_start.len();
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let (ack_max, start_max) = (max(&from_ack), max(&from_start));
    let ack_med = if from_ack.is_empty() {
        0.0
    } else {
        median(&mut from_ack)
    };
    let start_med = if from_start.is_empty() {
        0.0
    } else {
        median(&mut from_start)
    };
    // closed opened med_from_ack max_from_ack push_ms closed_before_ack med_from_start max_from_start
    println!(
        "RESULT revoke {closed} {opened} {ack_med:.3} {ack_max:.3} {:.3} {early} {start_med:.3} {start_max:.3}",
        (ack - t0).as_secs_f64() * 1e3
    );
}

fn synth(a: &[String]) {
    use edgegate::policy::PolicyIndex;
    use edgegate::store::Store;
    use edgegate_proto::{bundle, TrustPolicy, VerifiedBundle};
    if a.len() < 4 {
        usage();
    }
    let key = load_signing_key(Path::new(&a[1])).expect("authority key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut b = edgegate::synth::synth_bundle(10_000, 1_000, 100, 50, 1);
    b.device_id = a[2].clone();
    b.device.id = a[2].clone();
    b.serial = num(&a[3]);
    b.issued_at = now - 60;
    b.not_after = now + 30 * 86_400;
    let bytes = bundle::seal(&b, &[&key]);
    std::fs::write(&a[0], &bytes).expect("write bundle");
    let trust = TrustPolicy::new(vec![key.verifying_key().into()], 1).unwrap();
    let (mut verify, mut compile, mut accept) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..5 {
        let t = Instant::now();
        let vb = VerifiedBundle::verify(&bytes, &trust).unwrap();
        verify.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        std::hint::black_box(PolicyIndex::compile(&vb).unwrap());
        compile.push(t.elapsed().as_secs_f64() * 1e3);
        let dir = std::env::temp_dir().join(format!("egb-store-{}-{i}", std::process::id()));
        let store = Store::open(&dir, &trust, &a[2], |_| Ok(()))
            .expect("store")
            .store;
        let t = Instant::now();
        store
            .accept(bytes.clone(), now, PolicyIndex::compile)
            .expect("accept");
        accept.push(t.elapsed().as_secs_f64() * 1e3);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "RESULT synth {} {:.3} {:.3} {:.3}",
        bytes.len(),
        median(&mut verify),
        median(&mut compile),
        median(&mut accept)
    );
}

/// `aead BYTES`: the CPU one AES-128-GCM pass costs per GiB, sealing
/// 16 KiB records as TLS does (ring, the provider the tunnels use): the
/// crypto share of the floor any encrypting forwarder pays, once on each
/// side of the tunnel.
fn aead(bytes: u64) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7; 16]).expect("key"));
    let mut record = vec![0u8; 16 << 10];
    let records = bytes.div_ceil(record.len() as u64);
    let t = Instant::now();
    for i in 0..records {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&i.to_be_bytes());
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut record,
            )
            .expect("seal");
        std::hint::black_box(&tag);
    }
    let secs = t.elapsed().as_secs_f64();
    let gib = (records * record.len() as u64) as f64 / (1u64 << 30) as f64;
    println!("RESULT aead {:.3}", secs / gib);
}

/// One simulated router's registration: the connection and its control
/// stream (held: dropping them ends the registration).
type Registration = (quinn::Connection, quinn::SendStream, quinn::RecvStream);

async fn register_sim(
    endpoint: &quinn::Endpoint,
    config: &quinn::ClientConfig,
    relay: SocketAddr,
    enrollment: &[u8],
) -> Result<Registration, String> {
    use edgegate_proto::relay::RelayMsg;
    let conn = endpoint
        .connect_with(config.clone(), relay, edgegate::tlsid::SERVER_NAME)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let msg = RelayMsg::Register {
        enrollment: enrollment.to_vec(),
    };
    edgegate::transport::relay_msg::write(&mut send, &msg)
        .await
        .map_err(|e| e.to_string())?;
    match edgegate::transport::relay_msg::read(&mut recv).await {
        Ok(RelayMsg::Registered) => Ok((conn, send, recv)),
        other => Err(format!("{other:?}")),
    }
}

/// A simulated router: register, hold, and on loss register again as the
/// uplink does; each registration is reported on `tx`.
async fn sim_router(
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    relay: SocketAddr,
    enrollment: Vec<u8>,
    tx: tokio::sync::mpsc::UnboundedSender<bool>,
) {
    use edgegate_proto::relay::RelayMsg;
    let mut attempt = 0u32;
    loop {
        let dialled = tokio::time::timeout(
            Duration::from_secs(3),
            register_sim(&endpoint, &config, relay, &enrollment),
        )
        .await;
        if let Ok(Ok((conn, _send, mut recv))) = dialled {
            attempt = 0;
            let _ = tx.send(true);
            let end = edgegate::transport::relay_msg::read(&mut recv).await;
            drop(conn);
            let _ = tx.send(false);
            if matches!(end, Ok(RelayMsg::GoingAway)) {
                continue;
            }
        }
        tokio::time::sleep(edgegate::gateway::relay_backoff(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

fn relayidle(a: &[String]) {
    if a.len() < 4 {
        usage();
    }
    let relay = addr(&a[0]);
    let relay_key = load_public_key(&a[1]).expect("relay key");
    let authority = load_signing_key(Path::new(&a[2])).expect("authority key");
    let count = num(&a[3]) as usize;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Keys, enrollments and configurations first: the relay's cost is
    // measured, not this process's.
    let routers: Vec<(Vec<u8>, quinn::ClientConfig)> = (0..count)
        .map(|i| {
            let device = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let e = edgegate_proto::enrollment::Enrollment {
                device_id: format!("sim-{i}"),
                device_key: edgegate_proto::PublicKey::from(device.verifying_key()),
                serial: 1,
                issued_at: now - 60,
                expires_at: now + 86_400,
            };
            let enrollment = edgegate_proto::enrollment::seal(&e, &[&authority]);
            let id = Identity::new(&device).unwrap();
            let pin = edgegate::tlsid::PinWatch::default();
            let mut config = edgegate::tlsid::quic_client_config_alpn(
                &id,
                relay_key,
                &pin,
                edgegate_proto::relay::RELAY_ALPN,
            )
            .unwrap();
            // The router's: keep-alive every 25 s (`relay_keepalive`).
            let mut t = quinn::TransportConfig::default();
            t.keep_alive_interval(Some(Duration::from_secs(25)));
            t.max_idle_timeout(Some(Duration::from_secs(55).try_into().unwrap()));
            config.transport_config(std::sync::Arc::new(t));
            (enrollment, config)
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let started = Instant::now();
        // Batches of 32, as a fleet does not start in one instant either.
        let mut registered = 0usize;
        for (i, batch) in routers.chunks(32).enumerate() {
            for (enrollment, config) in batch.iter().cloned() {
                let task = sim_router(endpoint.clone(), config, relay, enrollment, tx.clone());
                tokio::spawn(task);
            }
            while registered < i * 32 + batch.len() {
                match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
                    Ok(Some(true)) => registered += 1,
                    Ok(Some(false)) => registered -= 1,
                    _ => break,
                }
            }
        }
        println!(
            "RESULT relayidle {registered} {:.3}",
            started.elapsed().as_secs_f64()
        );
        std::io::stdout().flush().unwrap();
        let (stdin_tx, mut stdin_closed) = tokio::sync::oneshot::channel::<()>();
        thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::stdin().read_to_string(&mut s);
            let _ = stdin_tx.send(());
        });
        let mut first_loss: Option<Instant> = None;
        let mut reported = false;
        loop {
            tokio::select! {
                up = rx.recv() => match up {
                    Some(true) => registered += 1,
                    Some(false) => {
                        registered -= 1;
                        first_loss.get_or_insert_with(Instant::now);
                    }
                    None => break,
                },
                _ = &mut stdin_closed => break,
            }
            if let (Some(t), false, true) = (first_loss, reported, registered == count) {
                println!(
                    "RESULT reregister {registered} {:.3}",
                    t.elapsed().as_secs_f64()
                );
                std::io::stdout().flush().unwrap();
                reported = true;
            }
        }
    });
}
