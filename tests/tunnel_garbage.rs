//! Bad input on both tunnel ports: garbage bytes, a client that stops
//! mid-handshake, oversized frames (TLS and QUIC) and floods of half-open
//! connections (TCP and QUIC handshakes) do not crash the daemon, and a
//! legitimate session still opens promptly.

#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::*;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

#[test]
fn garbage_on_both_ports_is_harmless() {
    let d = start_daemon();
    let http = http_backend();
    let echo = echo_backend();
    d.install(http.addr, echo);

    // UDP garbage, including something shaped like a QUIC long header.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x1234_5678u32;
    for i in 0..200usize {
        let mut pkt = vec![0u8; 1 + (i * 37) % 1300];
        for b in &mut pkt {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *b = (seed >> 24) as u8;
        }
        if i % 3 == 0 {
            pkt[0] = 0xc0;
        }
        udp.send_to(&pkt, d.quic).unwrap();
    }

    // TCP: random bytes, a truncated TLS ClientHello, and idle half-open sockets.
    let mut held = Vec::new();
    for i in 0..40usize {
        let mut s = TcpStream::connect(d.tls).unwrap();
        let junk: Vec<u8> = (0..(i * 97 % 3000)).map(|j| (j * 31 + i) as u8).collect();
        let _ = s.write_all(&junk);
        if i % 2 == 0 {
            let _ = s.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0x01]);
        }
        held.push(s);
    }

    // A legitimate session still opens quickly, over both transports.
    let (key, ticket) = d.client("alice", "alice");
    for tls in [false, true] {
        let started = Instant::now();
        let mut c = d.connect(&key, &ticket, tls, &forwards(&["web"]));
        c.ready();
        let port = c.forwarded("web");
        let took = started.elapsed();
        println!("session opened amid garbage (tls={tls}) in {took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(http_get(port, "/").contains("hello from the plc"));
    }

    // The garbage connections were closed by the daemon (at once, or at the
    // handshake timeout for a truncated ClientHello), not left open.
    let waited = Instant::now();
    for (i, mut s) in held.drain(..).enumerate() {
        assert!(
            closed_by_peer(&mut s, Duration::from_secs(15)),
            "connection {i} left open"
        );
    }
    println!(
        "40 garbage TCP connections all closed by the daemon within {:?}",
        waited.elapsed()
    );
    assert!(d_alive(&d));
}

/// Whether the peer closes `s` (EOF or reset, after any bytes it sends,
/// such as a TLS alert) within `within`.
fn closed_by_peer(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn d_alive(d: &Daemon) -> bool {
    TcpStream::connect(d.tls).is_ok()
}

#[test]
fn flood_of_half_open_connections_does_not_lock_out_a_real_session() {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    // Far more idle TCP connections than max_handshakes (64): they never
    // send a byte, so each would hold a handshake slot for 10 s.
    let flood: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(d.tls).ok())
        .collect();
    assert!(flood.len() > 200);
    let amid = format!("{} half-open connections", flood.len());
    session_and_fetch_within_a_second(&d, true, &amid);
}

/// A new session (`connect`, `ready`) and one page fetched through it take
/// under a second, amid whatever the test has thrown at the daemon.
fn session_and_fetch_within_a_second(d: &Daemon, tls: bool, amid: &str) {
    let (key, ticket) = d.client("alice", "alice");
    let started = Instant::now();
    let mut c = d.connect(&key, &ticket, tls, &forwards(&["web"]));
    c.ready();
    let port = c.forwarded("web");
    let page = http_get(port, "/");
    let took = started.elapsed();
    let transport = if tls { "TLS" } else { "QUIC" };
    println!("{transport} session and first fetch amid {amid}: {took:?}");
    assert!(page.contains("hello from the plc"));
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn oversized_frame_closes_the_connection() {
    use edgegate::tlsid::{self, Identity};
    use std::sync::Arc;
    let d = start_daemon();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let device_key = d.device_key;
    let tls_addr = d.tls;
    let (closed, raw) = rt.block_on(async move {
        use edgegate::transport::mux::{Growth, MuxConn, Side};
        use edgegate::transport::Connection;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let id = Identity::new(&key(5)).unwrap();
        let config = tlsid::client_config(&id, device_key).unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        // The session's first stream, multiplexed as a client does: a
        // frame of 4 GiB announced is refused before anything is allocated.
        let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
        let tls = connector.connect(tlsid::server_name(), tcp).await.unwrap();
        let conn = MuxConn::new(tls, Side::Client, 4, Growth::CLIENT, None, tls_addr);
        let mut stream = conn.open_bi().await.unwrap();
        stream
            .send
            .write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
            .await
            .unwrap();
        stream.send.flush().await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        // Bytes that are not even the multiplexer's framing: closed too
        // (after the multiplexer's own goodbye, if any).
        let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
        let mut tls = connector.connect(tlsid::server_name(), tcp).await.unwrap();
        tls.write_all(&[0xff; 64]).await.unwrap();
        tls.flush().await.unwrap();
        let mut rest = Vec::new();
        let raw = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
        (closed, raw)
    });
    assert!(closed.is_ok(), "multiplexed connection not closed");
    match raw {
        Ok(Ok(_)) | Ok(Err(_)) => {}
        Err(_) => panic!("raw garbage: connection not closed"),
    }
    assert!(d_alive(&d));
}

#[test]
fn oversized_frame_on_quic_closes_the_connection() {
    use edgegate::tlsid::Identity;
    let d = start_daemon();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (device_key, quic) = (d.device_key, d.quic);
    let outcome = rt.block_on(async move {
        let id = Identity::new(&key(6)).unwrap();
        let endpoint =
            edgegate::transport::quic::client(quic, &id, device_key, &Default::default()).unwrap();
        let conn = endpoint
            .connect(quic, edgegate::tlsid::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        // 4 GiB announced as the first frame: refused before allocating.
        send.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buf)).await;
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        (format!("{read:?}"), closed)
    });
    println!("oversized QUIC frame: read {:?}", outcome.0);
    match outcome.1 {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(&c.reason[..], b"no valid first frame", "{c:?}")
        }
        // The daemon closed and already forgot the connection by the time
        // the client's next packet arrived: it answered with a stateless
        // reset. Closed by the daemon all the same.
        Ok(quinn::ConnectionError::Reset) => {}
        other => panic!("connection not closed by the daemon: {other:?}"),
    }
    assert!(d_alive(&d));
}

#[test]
fn flood_of_half_open_quic_handshakes_does_not_lock_out_a_real_session() {
    use edgegate::tlsid::Identity;
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    d.install(http.addr, echo);
    // Capture a real QUIC Initial (a ClientHello) by pointing a client at a
    // socket of ours, then replay it from hundreds of source ports: each is
    // a handshake the daemon answers and that never completes.
    let trap = UdpSocket::bind("127.0.0.1:0").unwrap();
    trap.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let trap_addr = trap.local_addr().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let device_key = d.device_key;
    let endpoint = rt.block_on(async move {
        let id = Identity::new(&key(7)).unwrap();
        let endpoint =
            edgegate::transport::quic::client(trap_addr, &id, device_key, &Default::default())
                .unwrap();
        // Never completes: the trap does not answer.
        let connecting = endpoint
            .connect(trap_addr, edgegate::tlsid::SERVER_NAME)
            .unwrap();
        std::mem::forget(connecting);
        endpoint
    });
    let mut initial = vec![0u8; 65536];
    let n = trap.recv(&mut initial).expect("the client's Initial");
    initial.truncate(n);
    assert!(
        n >= 1200 && initial[0] & 0xf0 == 0xc0,
        "a QUIC Initial: {n} bytes"
    );
    let flood: Vec<UdpSocket> = (0..300)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.send_to(&initial, d.quic).unwrap();
            s
        })
        .collect();
    // The daemon is answering them (proof the flood is real, not dropped
    // unread): at least one flood socket gets a reply.
    flood[0]
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        flood[0].recv(&mut buf).is_ok(),
        "the daemon answered the replayed Initial"
    );

    let amid = format!("{} half-open handshakes", flood.len());
    session_and_fetch_within_a_second(&d, false, &amid);
    drop(endpoint);
}
