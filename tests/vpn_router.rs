//! The VPN, router side, against a real `edgegated` on loopback: a small
//! VPN client of the test's own (the library's session, then `VpnOpen` and
//! hand-built IPv4 packets, `smoltcp::wire`), real TCP and UDP echo
//! servers on 127.0.0.1, a `vpn` service with networks `127.0.0.0/8` and
//! the two echo ports. Over QUIC (packets as datagrams) and TLS (packets
//! as `Packet` frames). The engineer's side with a TUN device and real
//! tools is `edgegate connect --vpn`'s test.
#![cfg(target_os = "linux")]

#[path = "tunnel_support/harness.rs"]
mod harness;

use bytes::Bytes;
use edgegate::client::{open_session, Session, Target};
use edgegate::tlsid::Identity;
use edgegate::transport::{read_frame, write_frame, Connection, PipeReader, PipeWriter};
use edgegate_proto::audit::AuditEvent;
use edgegate_proto::frame::{FlowClosed, FlowProtocol, Frame, VpnConfig, MAX_FRAME};
use edgegate_proto::DenyReason;
use harness::netns::{self, Netns};
use harness::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket,
    TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
const WAIT: Duration = Duration::from_secs(5);

/// A UDP echo server on loopback; counts what it received.
fn udp_echo() -> (SocketAddrV4, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let SocketAddr::V4(addr) = socket.local_addr().unwrap() else {
        unreachable!()
    };
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    (addr, seen)
}

/// The test policy with the vpn service `lan` on `127.0.0.0/8`, `ports`.
fn policy(http: SocketAddr, echo: SocketAddr, ports: &[u16], alice: &str) -> String {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    policy_text(http, echo, alice).replace(
        &format!("ports = [{}]", echo.port()),
        &format!("ports = [{}]", list.join(", ")),
    )
}

fn install(d: &Daemon, text: &str, serial: u64) {
    let b = bundle_bytes(text, DEVICE, serial, &d.authority);
    let out = d.push(&d.write(&format!("b{serial}"), &b), false);
    assert!(out.status.success(), "{:?}", out);
}

/// What arrives on the VPN.
#[derive(Debug)]
enum Incoming {
    Packet(Vec<u8>),
    Frame(Frame),
    /// The VPN stream ended (finished, reset, or the connection closed).
    End,
}

/// The test's VPN client.
struct Vpn {
    _session: Session,
    conn: Arc<dyn Connection>,
    /// Packets for the stream's task to write (`Packet` frames).
    send: mpsc::Sender<Vec<u8>>,
    config: VpnConfig,
    rx: mpsc::UnboundedReceiver<Incoming>,
}

fn frames_of(r: PipeReader) -> Box<dyn tokio::io::AsyncRead + Send + Unpin> {
    match r {
        PipeReader::Quic(r) => Box::new(r),
        PipeReader::Framed(r) => r,
    }
}

/// What a client needs to open a session as alice.
struct Login {
    quic: SocketAddr,
    tls: SocketAddr,
    device_key: edgegate::PublicKey,
    key: std::path::PathBuf,
    ticket: std::path::PathBuf,
}

impl Login {
    fn of(d: &Daemon) -> Login {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("alice{}", N.fetch_add(1, Ordering::Relaxed));
        let (key, ticket) = d.client(&name, "alice");
        Login {
            quic: d.quic,
            tls: d.tls,
            device_key: d.device_key,
            key,
            ticket,
        }
    }
}

async fn session(l: &Login, tls: bool) -> Session {
    let identity = Identity::new(&edgegate::keyfile::load_signing_key(&l.key).unwrap()).unwrap();
    let gw = if tls { l.tls } else { l.quic };
    let target = Target::new(gw, l.device_key, identity, tls);
    let (session, _events) = open_session(&target, std::fs::read(&l.ticket).unwrap())
        .await
        .expect("session");
    session
}

/// Open a VPN stream on `session`: its first answer.
async fn vpn_open(conn: &Arc<dyn Connection>, datagrams: bool) -> (PipeWriter, PipeReader, Frame) {
    let mut s = conn.open_bi().await.unwrap();
    write_frame(&mut s.send, &Frame::VpnOpen { datagrams })
        .await
        .unwrap();
    let mut r = frames_of(s.recv);
    let first = read_frame(&mut r, MAX_FRAME)
        .await
        .unwrap()
        .expect("answer");
    // Hand the reader back wrapped again for the caller.
    (s.send, PipeReader::Framed(r), first)
}

impl Vpn {
    async fn open(d: &Daemon, tls: bool) -> Vpn {
        Vpn::open_as(&Login::of(d), tls).await
    }

    async fn open_as(login: &Login, tls: bool) -> Vpn {
        let session = session(login, tls).await;
        let conn = session.connection();
        let (send, recv, first) = vpn_open(&conn, !tls).await;
        let Frame::VpnReady(config) = first else {
            panic!("VpnOpen answered {first:?}")
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let frames = tx.clone();
        let (packets, mut packets_rx) = mpsc::channel::<Vec<u8>>(16);
        // Reading and writing in one task: a yamux stream's halves polled
        // from two tasks lose wake-ups (`gateway/vpn.rs`, `stream_io`).
        tokio::spawn(async move {
            let PipeReader::Framed(mut r) = recv else {
                unreachable!()
            };
            let mut w = send;
            let reading = async {
                loop {
                    match read_frame(&mut r, MAX_FRAME).await {
                        Ok(Some(Frame::Packet(p))) => drop(frames.send(Incoming::Packet(p))),
                        Ok(Some(f)) => drop(frames.send(Incoming::Frame(f))),
                        _ => {
                            let _ = frames.send(Incoming::End);
                            return;
                        }
                    }
                }
            };
            let writing = async {
                while let Some(p) = packets_rx.recv().await {
                    w.write_frame(&Frame::Packet(p)).await.unwrap();
                }
            };
            tokio::join!(reading, writing);
        });
        if config.datagrams {
            let conn = conn.clone();
            tokio::spawn(async move {
                while let Ok(d) = conn.read_datagram().await {
                    let _ = tx.send(Incoming::Packet(d.to_vec()));
                }
            });
        }
        Vpn {
            _session: session,
            conn,
            send: packets,
            config,
            rx,
        }
    }

    async fn send(&mut self, p: Vec<u8>) {
        if self.config.datagrams {
            self.conn.send_datagram(Bytes::from(p)).unwrap();
        } else {
            let sent = tokio::time::timeout(WAIT, self.send.send(p)).await;
            sent.expect("the VPN stream takes a packet").unwrap();
        }
    }

    /// The first incoming item `pick` accepts within `within` (others are
    /// skipped).
    async fn expect<T>(
        &mut self,
        within: Duration,
        mut pick: impl FnMut(&Incoming) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = tokio::time::timeout_at(deadline, self.rx.recv()).await;
            match got {
                Ok(Some(i)) => {
                    if let Some(t) = pick(&i) {
                        return Some(t);
                    }
                }
                _ => return None,
            }
        }
    }

    fn me(&self, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(self.config.address, port)
    }
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, payload: Vec<u8>) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: payload.len(),
        hop_limit: 64,
    };
    let mut buf = vec![0; repr.buffer_len() + payload.len()];
    let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
    repr.emit(&mut p, &ChecksumCapabilities::default());
    p.payload_mut().copy_from_slice(&payload);
    buf
}

fn tcp(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    data: &[u8],
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 65_535,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1200),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: data,
    };
    let mut seg = vec![0; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut seg[..]),
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        &ChecksumCapabilities::default(),
    );
    ipv4(*src.ip(), *dst.ip(), IpProtocol::Tcp, seg)
}

fn udp(src: SocketAddrV4, dst: SocketAddrV4, data: &[u8]) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let mut seg = vec![0; repr.header_len() + data.len()];
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut seg[..]),
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        data.len(),
        |p| p.copy_from_slice(data),
        &ChecksumCapabilities::default(),
    );
    ipv4(*src.ip(), *dst.ip(), IpProtocol::Udp, seg)
}

fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest {
        ident,
        seq_no: seq,
        data: b"edgegate ping",
    };
    let mut m = vec![0; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut m[..]),
        &ChecksumCapabilities::default(),
    );
    ipv4(src, dst, IpProtocol::Icmp, m)
}

/// A TCP segment's (source, destination, flags, seq, ack, payload).
#[derive(Debug)]
struct Seg {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    syn: bool,
    ack: bool,
    rst: bool,
    fin: bool,
    seq: u32,
    ack_no: u32,
    data: Vec<u8>,
}

fn tcp_of(p: &[u8]) -> Option<Seg> {
    let ip = Ipv4Packet::new_checked(p).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    assert!(t.verify_checksum(
        &IpAddress::Ipv4(ip.src_addr()),
        &IpAddress::Ipv4(ip.dst_addr())
    ));
    Some(Seg {
        src: SocketAddrV4::new(ip.src_addr(), t.src_port()),
        dst: SocketAddrV4::new(ip.dst_addr(), t.dst_port()),
        syn: t.syn(),
        ack: t.ack(),
        rst: t.rst(),
        fin: t.fin(),
        seq: t.seq_number().0 as u32,
        ack_no: t.ack_number().0 as u32,
        data: t.payload().to_vec(),
    })
}

/// (source, destination, payload) of a UDP packet.
fn udp_of(p: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, Vec<u8>)> {
    let ip = Ipv4Packet::new_checked(p).ok()?;
    if ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let u = UdpPacket::new_checked(ip.payload()).ok()?;
    Some((
        SocketAddrV4::new(ip.src_addr(), u.src_port()),
        SocketAddrV4::new(ip.dst_addr(), u.dst_port()),
        u.payload().to_vec(),
    ))
}

/// (source, type, code, echo ident and seq) of an ICMP packet.
fn icmp_of(p: &[u8]) -> Option<(Ipv4Addr, u8, u8, u16, u16)> {
    let ip = Ipv4Packet::new_checked(p).ok()?;
    if ip.next_header() != IpProtocol::Icmp {
        return None;
    }
    let m = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    assert!(m.verify_checksum());
    let ty = u8::from(m.msg_type());
    let (ident, seq) = if ty == 0 {
        (m.echo_ident(), m.echo_seq_no())
    } else {
        (0, 0)
    };
    Some((ip.src_addr(), ty, m.msg_code(), ident, seq))
}

fn packet(i: &Incoming) -> Option<&[u8]> {
    match i {
        Incoming::Packet(p) => Some(p),
        _ => None,
    }
}

/// Open a TCP connection through the VPN: SYN, SYN-ACK, ACK. The
/// sequence numbers (ours next, theirs next) and the handshake's time.
async fn handshake(vpn: &mut Vpn, me: SocketAddrV4, dst: SocketAddrV4) -> (u32, u32, Duration) {
    let isn = 1_000;
    let started = Instant::now();
    vpn.send(tcp(me, dst, TcpControl::Syn, isn, None, &[]))
        .await;
    let syn_ack = vpn
        .expect(WAIT, |i| {
            tcp_of(packet(i)?).filter(|s| s.dst == me && s.src == dst)
        })
        .await
        .expect("an answer to the SYN");
    let rtt = started.elapsed();
    assert!(syn_ack.syn && syn_ack.ack && !syn_ack.rst, "{syn_ack:?}");
    assert_eq!(syn_ack.ack_no, isn + 1);
    let theirs = syn_ack.seq.wrapping_add(1);
    vpn.send(tcp(me, dst, TcpControl::None, isn + 1, Some(theirs), &[]))
        .await;
    (isn + 1, theirs, rtt)
}

/// Send `data` on an open connection and read as many bytes back,
/// acknowledging them.
async fn exchange(
    vpn: &mut Vpn,
    me: SocketAddrV4,
    dst: SocketAddrV4,
    (seq, mut theirs): (u32, u32),
    data: &[u8],
) -> (Vec<u8>, (u32, u32)) {
    vpn.send(tcp(me, dst, TcpControl::Psh, seq, Some(theirs), data))
        .await;
    let seq = seq.wrapping_add(data.len() as u32);
    let mut echoed = Vec::new();
    while echoed.len() < data.len() {
        let s = vpn
            .expect(WAIT, |i| {
                tcp_of(packet(i)?).filter(|s| s.dst == me && !s.data.is_empty())
            })
            .await
            .expect("the echo");
        assert_eq!(s.seq, theirs);
        theirs = theirs.wrapping_add(s.data.len() as u32);
        echoed.extend(s.data);
        vpn.send(tcp(me, dst, TcpControl::None, seq, Some(theirs), &[]))
            .await;
    }
    (echoed, (seq, theirs))
}

fn denied_flows(d: &Daemon) -> Vec<(String, DenyReason, u64)> {
    // The control client runs a runtime of its own.
    tokio::task::block_in_place(|| d.audit_events())
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::FlowsDenied {
                destination,
                reason,
                count,
                ..
            } => Some((destination, reason, count)),
            _ => None,
        })
        .collect()
}

/// The first audit event `pick` accepts, within a few seconds.
async fn wait_for_audit<T>(d: &Daemon, mut pick: impl FnMut(&AuditEvent) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let events = tokio::task::block_in_place(|| d.audit_events());
        if let Some(t) = events.iter().find_map(&mut pick) {
            return t;
        }
        assert!(Instant::now() < deadline, "not audited: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scenario(tls: bool) {
    let d = start_daemon();
    let http = "127.0.0.1:9".parse().unwrap();
    let echo = echo_backend();
    let SocketAddr::V4(echo4) = echo else {
        unreachable!()
    };
    let (udp_dst, udp_seen) = udp_echo();
    install(
        &d,
        &policy(http, echo, &[echo.port(), udp_dst.port()], "active"),
        1,
    );

    let mut vpn = Vpn::open(&d, tls).await;
    let c = vpn.config.clone();
    assert_eq!(c.address.octets()[0], 100);
    assert_eq!(c.address.octets()[1] & 0xc0, 64, "{c:?}");
    assert_eq!(c.datagrams, !tls);
    if tls {
        assert_eq!(c.mtu, 32 << 10);
    } else {
        assert!((576..=1280).contains(&c.mtu), "{c:?}");
    }
    let routes: Vec<String> = c
        .routes
        .iter()
        .map(|n| format!("{}/{}", n.addr, n.prefix))
        .collect();
    assert_eq!(routes, ["127.0.0.0/8"]);

    // A second VPN on the same session is refused.
    let (_, _, second) = vpn_open(&vpn.conn, false).await;
    assert_eq!(
        second,
        Frame::Denied {
            reason: DenyReason::LimitExceeded
        }
    );

    // TCP to the echo backend: handshake, data echoed.
    let me = vpn.me(40_001);
    let (seq, theirs, rtt) = handshake(&mut vpn, me, echo4).await;
    println!("figure: vpn tcp first packet to first answer (SYN to SYN-ACK, tls={tls}): {rtt:?}");
    let (echoed, (seq, theirs)) = exchange(&mut vpn, me, echo4, (seq, theirs), b"hello vpn").await;
    assert_eq!(echoed, b"hello vpn");

    // The engineer closes: the backend sees the end and closes too, the
    // FIN comes back, the flow is audited with its bytes.
    vpn.send(tcp(me, echo4, TcpControl::Fin, seq, Some(theirs), &[]))
        .await;
    let fin = vpn
        .expect(WAIT, |i| {
            tcp_of(packet(i)?).filter(|s| s.dst == me && s.fin)
        })
        .await
        .expect("the backend's FIN");
    assert_eq!(fin.ack_no, seq + 1);
    vpn.send(tcp(
        me,
        echo4,
        TcpControl::None,
        seq + 1,
        Some(fin.seq + 1),
        &[],
    ))
    .await;
    let audited = format!("tcp {echo4}");
    let flow = wait_for_audit(&d, |e| match e {
        AuditEvent::StreamClose {
            destination: Some(dest),
            bytes_up,
            bytes_down,
            reason,
            ..
        } if *dest == audited => Some((*bytes_up, *bytes_down, reason.clone())),
        _ => None,
    })
    .await;
    assert_eq!(flow, (9, 9, edgegate_proto::audit::CloseReason::Normal));

    // A connection that stays open, for the cut below.
    let me = vpn.me(40_006);
    handshake(&mut vpn, me, echo4).await;

    // A port outside the service's ports: RST at once, audited.
    let closed_port = SocketAddrV4::new(LO, 9);
    let probe = vpn.me(40_002);
    let t0 = Instant::now();
    vpn.send(tcp(probe, closed_port, TcpControl::Syn, 5, None, &[]))
        .await;
    let rst = vpn
        .expect(WAIT, |i| tcp_of(packet(i)?).filter(|s| s.dst == probe))
        .await
        .expect("an answer to the refused SYN");
    assert!(rst.rst && rst.ack_no == 6, "{rst:?}");
    println!(
        "figure: refused SYN answered with RST in {:?}",
        t0.elapsed()
    );

    // A scan of 200 ports outside the service's: every SYN gets its RST,
    // the audit log a few records that count them all.
    let scan_started = Instant::now();
    for port in 1..=200u16 {
        let from = vpn.me(42_000 + port);
        vpn.send(tcp(
            from,
            SocketAddrV4::new(LO, port),
            TcpControl::Syn,
            5,
            None,
            &[],
        ))
        .await;
    }
    let mut resets = 0;
    while resets < 200 {
        vpn.expect(WAIT, |i| {
            tcp_of(packet(i)?).filter(|s| s.rst && s.dst.port() > 42_000)
        })
        .await
        .unwrap_or_else(|| panic!("{resets} of 200 refused SYNs answered"));
        resets += 1;
    }

    // A destination outside the networks: administratively prohibited.
    let outside = SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 1), udp_dst.port());
    vpn.send(udp(vpn.me(40_003), outside, b"nobody")).await;
    let icmp = vpn
        .expect(WAIT, |i| icmp_of(packet(i)?))
        .await
        .expect("an ICMP answer");
    assert_eq!(icmp, (*outside.ip(), 3, 13, 0, 0));
    vpn.send(echo_request(c.address, *outside.ip(), 77, 1))
        .await;
    let icmp = vpn
        .expect(WAIT, |i| icmp_of(packet(i)?))
        .await
        .expect("an ICMP answer to the ping");
    assert_eq!(icmp, (*outside.ip(), 3, 13, 0, 0));

    // UDP to the echo server.
    let uport = vpn.me(40_004);
    let t0 = Instant::now();
    vpn.send(udp(uport, udp_dst, b"udp through the vpn")).await;
    let (src, dst, payload) = vpn
        .expect(WAIT, |i| udp_of(packet(i)?))
        .await
        .expect("the UDP echo");
    println!(
        "figure: vpn udp first datagram to its answer (tls={tls}): {:?}",
        t0.elapsed()
    );
    assert_eq!(
        (src, dst, &payload[..]),
        (udp_dst, uport, &b"udp through the vpn"[..])
    );
    assert_eq!(udp_seen.load(Ordering::SeqCst), 1);

    // A spoofed source: dropped, never reaches the server.
    let spoofed = SocketAddrV4::new(Ipv4Addr::new(100, 64, 99, 99), 40_005);
    vpn.send(udp(spoofed, udp_dst, b"spoofed")).await;
    vpn.send(udp(uport, udp_dst, b"marker")).await;
    let (_, _, payload) = vpn
        .expect(WAIT, |i| udp_of(packet(i)?))
        .await
        .expect("the marker's echo");
    assert_eq!(payload, b"marker", "only the marker came back");
    assert_eq!(
        udp_seen.load(Ordering::SeqCst),
        2,
        "the spoofed datagram leaked"
    );

    // Ping 127.0.0.1: answered if this namespace lets the daemon's group
    // open ICMP sockets, else host unreachable (and a warning).
    vpn.send(echo_request(c.address, LO, 4242, 7)).await;
    let icmp = vpn
        .expect(WAIT, |i| icmp_of(packet(i)?))
        .await
        .expect("an answer to the ping");
    if ping_allowed() {
        assert_eq!(icmp, (LO, 0, 0, 4242, 7), "echo reply");
    } else {
        assert_eq!(icmp, (LO, 3, 1, 0, 0), "host unreachable");
    }

    let denied = denied_flows(&d);
    assert!(
        denied.contains(&(
            "tcp 127.0.0.1:9".into(),
            DenyReason::DestinationNotAllowed,
            1
        )),
        "{denied:?}"
    );
    // The probe, the scan and the two outside the networks: all counted,
    // in at most two records a second.
    let total = 1 + 200 + 2;
    let denied = wait_for_audit(&d, |_| {
        let denied = denied_flows(&d);
        (denied.iter().map(|r| r.2).sum::<u64>() == total).then_some(denied)
    })
    .await;
    let secs = scan_started.elapsed().as_secs_f64();
    assert!(
        denied.len() as f64 <= 2.0 * secs.ceil() + 2.0,
        "{} records in {secs} s: {denied:?}",
        denied.len()
    );

    // A new bundle without the TCP port: the live TCP flow is cut (RST,
    // FlowClosed), the session and its UDP flow go on.
    install(&d, &policy(http, echo, &[udp_dst.port()], "active"), 2);
    let (mut closed, mut rst) = (None, None);
    while closed.is_none() || rst.is_none() {
        let got = vpn
            .expect(WAIT, |i| match i {
                Incoming::Frame(Frame::FlowClosed(f)) => Some((Some(f.clone()), None)),
                Incoming::Packet(p) => tcp_of(p).filter(|s| s.dst == me).map(|s| (None, Some(s))),
                _ => None,
            })
            .await
            .expect("FlowClosed and a RST for the cut TCP flow");
        closed = closed.or(got.0);
        rst = rst.or(got.1);
    }
    let (closed, rst) = (closed.unwrap(), rst.unwrap());
    assert_eq!(
        closed,
        FlowClosed {
            service: "lan".into(),
            protocol: FlowProtocol::Tcp,
            destination: echo4.to_string(),
            reason: DenyReason::DestinationNotAllowed,
            cut: true,
        }
    );
    assert!(rst.rst, "{rst:?}");
    vpn.send(udp(uport, udp_dst, b"still here")).await;
    assert!(vpn
        .expect(WAIT, |i| udp_of(packet(i)?)
            .filter(|u| u.2 == b"still here"))
        .await
        .is_some());

    // Alice made inactive: the session ends; its live UDP flow is reported
    // cut for the reason, then the VPN stream ends.
    install(&d, &policy(http, echo, &[udp_dst.port()], "inactive"), 3);
    let closed = vpn
        .expect(WAIT, |i| match i {
            Incoming::Frame(Frame::FlowClosed(f)) => Some(f.clone()),
            _ => None,
        })
        .await
        .expect("FlowClosed for the UDP flow");
    assert_eq!(closed.reason, DenyReason::UserInactive);
    assert_eq!(closed.protocol, FlowProtocol::Udp);
    assert!(closed.cut);
    let mut seen = Vec::new();
    let ended = vpn
        .expect(WAIT, |i| {
            seen.push(format!("{i:?}"));
            matches!(i, Incoming::End).then_some(())
        })
        .await;
    assert!(ended.is_some(), "the VPN stream did not end: {seen:?}");
}

/// Whether gid 0 (the test runs as root) may open ICMP echo sockets here.
fn ping_allowed() -> bool {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    let v: Vec<i64> = range
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let gid = nix::unistd::getegid().as_raw() as i64;
    v[0] <= gid && gid <= v[1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpn_over_quic_datagrams() {
    scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpn_over_tls_frames() {
    scenario(true).await;
}

/// Ping through the VPN into a machine network of the test's own: engineer
/// — router (the daemon, unprivileged ICMP sockets allowed as the package's
/// sysctl allows them) — machine, each a namespace; the test's client runs
/// on a thread moved into the engineer's.
#[test]
fn ping_reaches_a_machine_network_through_the_vpn() {
    netns::require_root("tests/vpn_router.rs");
    let router = Netns::new("vr");
    let engineer = Netns::new("ve");
    let machine = Netns::new("vm");
    netns::link(
        &router,
        "wan0",
        "10.89.1.1/24",
        &engineer,
        "wan0",
        "10.89.1.2/24",
    );
    netns::link(
        &router,
        "lan0",
        "10.89.2.1/24",
        &machine,
        "lan0",
        "10.89.2.10/24",
    );
    router.allow_ping_sockets();
    let d = start_daemon_spec(DEVICE, "", Some(router.name()), Some("10.89.1.1"));
    let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let text = policy_text(unused, unused, "active").replace(
        r#"networks = ["127.0.0.0/8"]"#,
        r#"networks = ["10.89.2.0/24"]"#,
    );
    install(&d, &text, 1);
    let plc = Ipv4Addr::new(10, 89, 2, 10);
    let outside = Ipv4Addr::new(10, 89, 3, 1);
    let login = Login::of(&d);
    for tls in [false, true] {
        std::thread::scope(|s| {
            s.spawn(|| {
                engineer.enter();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut vpn = Vpn::open_as(&login, tls).await;
                    let me = vpn.config.address;
                    assert_eq!(vpn.config.routes.len(), 1);
                    for seq in 1..=3 {
                        let t0 = Instant::now();
                        vpn.send(echo_request(me, plc, 99, seq)).await;
                        let reply = vpn.expect(WAIT, |i| icmp_of(packet(i)?)).await;
                        assert_eq!(reply, Some((plc, 0, 0, 99, seq)), "tls={tls}");
                        println!(
                            "figure: vpn ping round trip {seq} (tls={tls}): {:?}",
                            t0.elapsed()
                        );
                    }
                    vpn.send(echo_request(me, outside, 99, 4)).await;
                    let refused = vpn.expect(WAIT, |i| icmp_of(packet(i)?)).await;
                    assert_eq!(refused, Some((outside, 3, 13, 0, 0)));
                });
            })
            .join()
            .unwrap();
        });
    }
}

/// The daemon's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Figures: the daemon's memory per live TCP flow, and how long a new
/// bundle takes to cut them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_memory_per_flow_and_cutting_many_flows() {
    const N: u16 = 100;
    let d = start_daemon_with("[limits]\nmax_vpn_flows = 1000\nvpn_buffer = 268435456\n");
    let http = "127.0.0.1:9".parse().unwrap();
    let echo = echo_backend();
    let SocketAddr::V4(echo4) = echo else {
        unreachable!()
    };
    let (udp_dst, _) = udp_echo();
    install(
        &d,
        &policy(http, echo, &[echo.port(), udp_dst.port()], "active"),
        1,
    );
    let mut vpn = Vpn::open(&d, false).await;
    let pid = d.child.id();
    // One flow first: what every flow shares is counted before.
    let me = vpn.me(41_000);
    let open = handshake(&mut vpn, me, echo4).await;
    exchange(&mut vpn, me, echo4, (open.0, open.1), &[7; 1024]).await;
    let before = rss_kib(pid);
    for i in 1..=N {
        let me = vpn.me(41_000 + i);
        let (seq, theirs, _) = handshake(&mut vpn, me, echo4).await;
        let (back, _) = exchange(&mut vpn, me, echo4, (seq, theirs), &[7; 1024]).await;
        assert_eq!(back.len(), 1024);
    }
    let after = rss_kib(pid);
    let per_flow = after.saturating_sub(before) / u64::from(N);
    println!("figure: daemon RSS {before} KiB -> {after} KiB with {N} more TCP flows (1 KiB echoed each): {per_flow} KiB per flow");
    // The buffers a flow may fill are 144 KiB; one that carried little
    // holds less.
    assert!(per_flow < 144, "{per_flow} KiB per flow");

    let t0 = Instant::now();
    install(&d, &policy(http, echo, &[udp_dst.port()], "active"), 2);
    let mut cut = 0;
    while cut < N + 1 {
        let f = vpn
            .expect(WAIT, |i| match i {
                Incoming::Frame(Frame::FlowClosed(f)) => Some(f.clone()),
                _ => None,
            })
            .await
            .unwrap_or_else(|| panic!("only {cut} flows were cut"));
        assert!(f.cut && f.reason == DenyReason::DestinationNotAllowed);
        cut += 1;
    }
    println!(
        "figure: {} live TCP flows cut by a new bundle in {:?} (push included)",
        N + 1,
        t0.elapsed()
    );
}

/// The engineer's side of a bulk transfer: smoltcp as the client's TCP
/// stack, its packets through the test's VPN.
struct Wire {
    rx: std::collections::VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    mtu: usize,
}

struct WireRx(Vec<u8>);
struct WireTx<'a>(&'a mut Vec<Vec<u8>>);

impl smoltcp::phy::RxToken for WireRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for WireTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl smoltcp::phy::Device for Wire {
    type RxToken<'a> = WireRx;
    type TxToken<'a> = WireTx<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(WireRx, WireTx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((WireRx(p), WireTx(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<WireTx<'_>> {
        Some(WireTx(&mut self.tx))
    }

    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        let mut caps = smoltcp::phy::DeviceCapabilities::default();
        caps.medium = smoltcp::phy::Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

/// Send `total` bytes to the echo backend `dst` through the VPN and read
/// them all back (both directions at once, each past every buffer of the
/// daemon's); how long it took.
async fn bulk_echo(vpn: &mut Vpn, dst: SocketAddrV4, total: usize) -> Duration {
    use smoltcp::iface::{Config, Interface, SocketSet};
    use smoltcp::socket::tcp::{Socket, SocketBuffer};
    use smoltcp::wire::{HardwareAddress, IpCidr};
    let started = Instant::now();
    let now = || smoltcp::time::Instant::from_micros(started.elapsed().as_micros() as i64);
    let mut wire = Wire {
        rx: Default::default(),
        tx: Vec::new(),
        mtu: usize::from(vpn.config.mtu),
    };
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut wire, now());
    let me = vpn.config.address;
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::Ipv4(me), 32)).unwrap();
    });
    iface
        .routes_mut()
        .add_default_ipv4_route(Ipv4Addr::new(169, 254, 0, 2))
        .unwrap();
    let mut sockets = SocketSet::new(Vec::new());
    let socket = Socket::new(
        SocketBuffer::new(vec![0; 256 << 10]),
        SocketBuffer::new(vec![0; 256 << 10]),
    );
    let h = sockets.add(socket);
    sockets
        .get_mut::<Socket>(h)
        .connect(
            iface.context(),
            (IpAddress::Ipv4(*dst.ip()), dst.port()),
            50_000,
        )
        .unwrap();
    let pattern = |i: usize| (i % 251) as u8;
    let (mut sent, mut got) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    while got < total {
        if Instant::now() > deadline {
            let s = sockets.get_mut::<Socket>(h);
            panic!(
                "sent {sent}, got {got} of {total}: {:?}, {} bytes unacknowledged",
                s.state(),
                s.send_queue()
            );
        }
        iface.poll(now(), &mut wire, &mut sockets);
        let s = sockets.get_mut::<Socket>(h);
        if s.can_send() && sent < total {
            let chunk: Vec<u8> = (sent..total.min(sent + (16 << 10))).map(pattern).collect();
            sent += s.send_slice(&chunk).unwrap();
        }
        while s.can_recv() {
            let start = got;
            let n = s
                .recv(|buf| {
                    for (k, b) in buf.iter().enumerate() {
                        assert_eq!(*b, pattern(start + k), "byte {}", start + k);
                    }
                    (buf.len(), buf.len())
                })
                .unwrap();
            got += n;
        }
        iface.poll(now(), &mut wire, &mut sockets);
        // One segment a socket per pass: pass again while it has more.
        for _ in 0..64 {
            let before = wire.tx.len();
            iface.poll_egress(now(), &mut wire, &mut sockets);
            if wire.tx.len() == before {
                break;
            }
        }
        for p in std::mem::take(&mut wire.tx) {
            vpn.send(p).await;
        }
        let delay = iface
            .poll_delay(now(), &sockets)
            .map_or(Duration::from_millis(5), |d| {
                Duration::from_micros(d.total_micros())
            })
            .min(Duration::from_millis(5));
        tokio::select! {
            i = vpn.rx.recv() => if let Some(Incoming::Packet(p)) = i { wire.rx.push_back(p) },
            _ = tokio::time::sleep(delay) => {}
        }
        while let Ok(i) = vpn.rx.try_recv() {
            if let Incoming::Packet(p) = i {
                wire.rx.push_back(p);
            }
        }
    }
    started.elapsed()
}

/// A bulk transfer both ways through the VPN, past every buffer and
/// credit of the daemon's TCP path, over both transports; bytes checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_transfer_crosses_the_vpn_intact() {
    const TOTAL: usize = 1 << 20;
    let d = start_daemon();
    let http = "127.0.0.1:9".parse().unwrap();
    let echo = echo_backend();
    let SocketAddr::V4(echo4) = echo else {
        unreachable!()
    };
    install(&d, &policy(http, echo, &[echo.port()], "active"), 1);
    for tls in [true, false] {
        let mut vpn = Vpn::open(&d, tls).await;
        let took = bulk_echo(&mut vpn, echo4, TOTAL).await;
        let mib_s = (TOTAL as f64 / (1 << 20) as f64) / took.as_secs_f64();
        println!("figure: {} MiB each way through the VPN (tls={tls}, debug build, smoltcp client): {took:?}, {mib_s:.1} MiB/s", TOTAL >> 20);
    }
}
