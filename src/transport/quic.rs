//! QUIC endpoint setup for both sides: transport parameters that bound a
//! session's streams, keep-alive, idle detection, and the two settings that
//! decide how much CPU a byte costs: datagram size and socket buffers.

mod plain_udp;

use crate::tlsid::{self, Identity, TlsIdError};
use crate::PublicKey;
use quinn::Runtime as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a QUIC connection may be silent before it is considered dead.
/// The client sends keep-alives well within it.
pub const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Client keep-alive interval.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// The largest UDP payload path MTU discovery may reach (and that we accept
/// from peers). quinn's default stops at 1452 (an Ethernet frame); on paths
/// that carry more (loopback, jumbo-frame LANs) each datagram costs the same
/// packet work and AEAD set-up however many bytes it holds, so larger ones
/// cut the tunnel's CPU per byte by half or more. 6500 is the largest size
/// at which quinn's batch of 10 datagrams (its `MAX_TRANSMIT_SEGMENTS`) still
/// fits one 64 KiB UDP segmentation-offload send: above it the kernel refuses
/// the batch (EMSGSIZE), quinn drops it silently, and its black-hole
/// detection falls back to 1200 bytes. Paths that carry less are found by
/// the probing itself; probes that do not arrive cost nothing but time.
pub const MAX_UDP_PAYLOAD: u16 = 6500;

/// Socket buffer size asked for on every QUIC socket (the kernel caps it at
/// `net.core.rmem_max` / `wmem_max`). A bulk stream over loopback or a fast
/// LAN overruns the 208 KiB default receive buffer: every overrun is a lost
/// datagram, a retransmission and a halved congestion window.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Why an endpoint could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] TlsIdError),
    /// Binding the UDP socket failed. The cause is part of the message and
    /// deliberately not a `source`: an error chain printed with `{:#}` would
    /// name it twice.
    #[error("binding UDP {addr}: {cause}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        cause: std::io::Error,
    },
}

/// What the daemon lets a connection send before it is admitted: one
/// stream (the control stream, or a push) and this much unread data. A
/// session or a push raises it (`Connection::grant`).
pub const PREAUTH_WINDOW: u32 = 64 << 10;

/// The daemon's receive window for one stream of an admitted session.
pub const STREAM_WINDOW: u32 = 256 << 10;

/// The daemon's receive window for all streams of an admitted session.
pub const SESSION_WINDOW: u32 = 1 << 20;

/// A relay's receive window for one relayed stream (four of them for a
/// connection): bytes are held only while the far hop is slower. On
/// loopback, 256 KiB → 2 MiB took a relayed QUIC download from 1.8-2.1 to
/// 2.4-2.7 Gbit/s (1 MiB: 2.3-2.4, 4 MiB: 2.6); the relay runs where
/// memory is not a router's.
pub const RELAY_STREAM_WINDOW: u32 = 2 << 20;

/// The daemon's buffer for QUIC datagrams received, per connection: about
/// 50 VPN packets.
pub const DATAGRAM_WINDOW: usize = 64 << 10;

/// The daemon's buffer for QUIC datagrams waiting for the congestion
/// window, per connection (only a VPN's session sends any): room for
/// several TCP flows' bursts (64 KiB each). quinn would drop the oldest
/// past it; the VPN drops the newest instead (`gateway/vpn.rs`, `Out`).
pub const DATAGRAM_SEND: usize = 256 << 10;

/// The client's buffer for QUIC datagrams received and not yet written to
/// the VPN's interface. Datagrams have no flow control: when the client
/// falls behind (many flows at once) quinn drops the oldest past this, and
/// each drop is a lost TCP segment that costs its flow a retransmission
/// timeout. quinn's default (1.25 MB) lost segments with 64 flows
/// (`benches/vpn.sh`); an engineer's computer has room for more.
pub const CLIENT_DATAGRAM_BUFFER: usize = 16 << 20;

/// The daemon's send window: data written and not yet acknowledged, per
/// connection (quinn's default is 10 MB).
pub const SEND_WINDOW: u64 = 1 << 20;

fn transport(max_streams: u32, keep_alive: bool) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(max_streams.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.max_idle_timeout(Some(
        DEAD_PEER_TIMEOUT
            .try_into()
            .expect("30 s fits an idle timeout"),
    ));
    if keep_alive {
        t.keep_alive_interval(Some(KEEP_ALIVE));
    }
    let mut mtud = quinn::MtuDiscoveryConfig::default();
    mtud.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtud));
    t
}

/// A UDP socket for an endpoint at `addr`, its buffers enlarged, wrapped in
/// quinn with our endpoint settings.
fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, EndpointError> {
    let socket =
        std::net::UdpSocket::bind(addr).map_err(|cause| EndpointError::Bind { addr, cause })?;
    endpoint_on(socket, server)
}

/// `socket` wrapped in quinn with our endpoint settings, its buffers enlarged.
fn endpoint_on(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, EndpointError> {
    let addr = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let bind = |cause| EndpointError::Bind { addr, cause };
    enlarge_buffers(&socket);
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .expect("6500 is within QUIC's 1200..=65527");
    let runtime = Arc::new(quinn::TokioRuntime);
    let spare = socket.try_clone().map_err(bind)?;
    let socket: Arc<dyn quinn::AsyncUdpSocket> = match runtime.wrap_udp_socket(socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::debug!(error = %e, "quinn-udp refused the socket; plain UDP instead");
            Arc::new(plain_udp::PlainUdp::new(spare).map_err(bind)?)
        }
    };
    quinn::Endpoint::new_with_abstract_socket(config, server, socket, runtime).map_err(bind)
}

/// Ask for [`SOCKET_BUFFER`] both ways; what the kernel grants is logged
/// (a small `rmem_max` shows up as lost datagrams under load).
fn enlarge_buffers(socket: &std::net::UdpSocket) {
    let (rcv, snd) = set_buffers(socket, SOCKET_BUFFER);
    // Linux reports twice the size asked for (bookkeeping overhead).
    if rcv < SOCKET_BUFFER {
        tracing::debug!(
            "udp receive buffer {} KiB (asked for {} KiB; raise net.core.rmem_max for more)",
            rcv >> 10,
            SOCKET_BUFFER >> 10
        );
    }
    tracing::trace!(
        "udp buffers: receive {} KiB, send {} KiB",
        rcv >> 10,
        snd >> 10
    );
}

/// Ask for `size` bytes of receive and send buffer; returns what was
/// granted (0 where unknown). Failure is not fatal: the defaults work, only
/// slower.
#[cfg(unix)]
fn set_buffers(socket: &std::net::UdpSocket, size: usize) -> (usize, usize) {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    let _ = setsockopt(socket, sockopt::RcvBuf, &size);
    let _ = setsockopt(socket, sockopt::SndBuf, &size);
    let rcv = getsockopt(socket, sockopt::RcvBuf).unwrap_or(0);
    let snd = getsockopt(socket, sockopt::SndBuf).unwrap_or(0);
    (rcv, snd)
}

/// As on unix, through socket2 (Windows: `SO_RCVBUF`/`SO_SNDBUF` on the
/// socket handle).
#[cfg(windows)]
fn set_buffers(socket: &std::net::UdpSocket, size: usize) -> (usize, usize) {
    let sock = socket2::SockRef::from(socket);
    let _ = sock.set_recv_buffer_size(size);
    let _ = sock.set_send_buffer_size(size);
    let rcv = sock.recv_buffer_size().unwrap_or(0);
    let snd = sock.send_buffer_size().unwrap_or(0);
    (rcv, snd)
}

/// The daemon's endpoint on a bound UDP socket.
pub fn server(
    socket: std::net::UdpSocket,
    id: &Identity,
) -> Result<quinn::Endpoint, EndpointError> {
    let mut config = tlsid::quic_server_config(id)?;
    // Sized for a router's memory (docs/deploy.md, "Memory budget"): before
    // admission one stream and a small window; the session's streams and
    // window are granted with its `Welcome`. Datagrams carry a VPN's
    // packets (`gateway/vpn.rs`); unread ones (before a VPN opens, or from
    // a stranger) cost at most `DATAGRAM_WINDOW`, the oldest dropped first;
    // what a VPN sends waits in at most `DATAGRAM_SEND`.
    let mut t = transport(1, false);
    t.stream_receive_window(STREAM_WINDOW.into());
    t.receive_window(PREAUTH_WINDOW.into());
    t.send_window(SEND_WINDOW);
    t.datagram_receive_buffer_size(Some(DATAGRAM_WINDOW));
    t.datagram_send_buffer_size(DATAGRAM_SEND);
    config.transport_config(Arc::new(t));
    endpoint_on(socket, Some(config))
}

/// A client endpoint able to reach `gateway`, pinned to `device` (a server
/// presenting another key is reported to `watch`).
pub fn client(
    gateway: SocketAddr,
    id: &Identity,
    device: PublicKey,
    watch: &tlsid::PinWatch,
) -> Result<quinn::Endpoint, EndpointError> {
    let local: SocketAddr = if gateway.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let mut endpoint = endpoint(local, None)?;
    let mut config = tlsid::quic_client_config(id, device, watch)?;
    // The daemon opens no streams towards the client.
    let mut t = transport(0, true);
    t.datagram_receive_buffer_size(Some(CLIENT_DATAGRAM_BUFFER));
    config.transport_config(Arc::new(t));
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// How long a relay link (router ↔ relay) may be silent before it is
/// considered dead: longer than a keep-alive interval and a lost packet.
pub const RELAY_IDLE: Duration = Duration::from_secs(60);

fn relay_transport(incoming: u32, keep_alive: Option<Duration>) -> quinn::TransportConfig {
    let mut t = transport(incoming, false);
    t.max_idle_timeout(Some(RELAY_IDLE.try_into().expect("60 s fits")));
    t.keep_alive_interval(keep_alive);
    t.stream_receive_window(STREAM_WINDOW.into());
    t.receive_window((4 * SESSION_WINDOW).into());
    t.send_window(4 * SEND_WINDOW);
    t.datagram_receive_buffer_size(None);
    t
}

/// A relay's endpoint on a bound UDP socket: each peer may open one stream
/// (a router's control stream, an engineer's relayed stream); the relay
/// opens the rest.
pub fn relay_server(
    socket: std::net::UdpSocket,
    id: &Identity,
) -> Result<quinn::Endpoint, EndpointError> {
    let alpn = edgegate_proto::relay::RELAY_ALPN;
    let mut config = tlsid::quic_server_config_alpn(id, alpn)?;
    let mut t = relay_transport(1, None);
    // A relay forwards every relayed byte: a router's 256 KiB stream window
    // would cap a relayed download at 256 KiB a round trip of the hop.
    t.stream_receive_window(RELAY_STREAM_WINDOW.into());
    t.receive_window((4 * RELAY_STREAM_WINDOW).into());
    config.transport_config(Arc::new(t));
    endpoint_on(socket, Some(config))
}

/// A router's endpoint towards the relay at `relay`, pinned to its key:
/// the relay may open `streams` streams at once (one per relayed session),
/// and keep-alives every `keep_alive` hold the NAT mapping open.
pub fn uplink(
    relay: SocketAddr,
    id: &Identity,
    relay_key: PublicKey,
    watch: &tlsid::PinWatch,
    streams: u32,
    keep_alive: Duration,
) -> Result<quinn::Endpoint, EndpointError> {
    let alpn = edgegate_proto::relay::RELAY_ALPN;
    let mut endpoint = endpoint(unspecified(relay), None)?;
    let mut config = tlsid::quic_client_config_alpn(id, relay_key, watch, alpn)?;
    let mut t = relay_transport(streams, Some(keep_alive));
    // The keep-alives are the link's liveness check: a relay that answers
    // none for two of them and a few seconds more is gone.
    let idle = (keep_alive * 2 + Duration::from_secs(5)).min(RELAY_IDLE);
    t.max_idle_timeout(Some(idle.try_into().expect("at most 60 s")));
    config.transport_config(Arc::new(t));
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// An engineer's endpoint towards the relay at `relay`, pinned to its key.
pub fn relay_client(
    relay: SocketAddr,
    id: &Identity,
    relay_key: PublicKey,
    watch: &tlsid::PinWatch,
) -> Result<quinn::Endpoint, EndpointError> {
    let alpn = edgegate_proto::relay::RELAY_ALPN;
    let mut endpoint = endpoint(unspecified(relay), None)?;
    let mut config = tlsid::quic_client_config_alpn(id, relay_key, watch, alpn)?;
    let mut t = transport(0, false);
    // A relay that died tells nobody: its engineers learn it from silence.
    // Keep-alives every 2 s and 8 s of silence end the session within ~10 s
    // (not at the 30 s of a direct session); the client's side only, its
    // traffic lasts as long as the engineer's session.
    t.keep_alive_interval(Some(RELAY_CLIENT_KEEP_ALIVE));
    t.max_idle_timeout(Some(
        RELAY_CLIENT_IDLE
            .try_into()
            .expect("8 s fits an idle timeout"),
    ));
    config.transport_config(Arc::new(t));
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// An engineer's keep-alive interval towards a relay.
pub const RELAY_CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(2);

/// How long an engineer's connection to a relay may be silent before the
/// relay is considered gone (negotiated: the lower of the two sides wins).
pub const RELAY_CLIENT_IDLE: Duration = Duration::from_secs(8);

/// The unspecified local address of `remote`'s family.
fn unspecified(remote: SocketAddr) -> SocketAddr {
    if remote.is_ipv6() {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon's endpoint on loopback, an engineer's endpoint pinned to
    /// its key, and the daemon's address.
    fn loopback_pair() -> (quinn::Endpoint, quinn::Endpoint, SocketAddr) {
        let (dk, ck) = (crate::testkit::key(1), crate::testkit::key(2));
        let (did, cid) = (Identity::new(&dk).unwrap(), Identity::new(&ck).unwrap());
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = server(udp, &did).unwrap();
        let addr = server.local_addr().unwrap();
        let watch = tlsid::PinWatch::default();
        let client = client(addr, &cid, PublicKey::from(dk.verifying_key()), &watch).unwrap();
        (server, client, addr)
    }

    /// A bulk transfer on loopback climbs above Ethernet's 1452 bytes and
    /// never trips black-hole detection: the guard on `MAX_UDP_PAYLOAD`
    /// staying within one segmentation-offload send of quinn's batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        windows,
        ignore = "run under Wine here, whose sockets get the plain UDP fallback: \
                  no DF bit, so quinn leaves path MTU discovery off"
    )]
    async fn loopback_transfers_use_large_datagrams_without_loss() {
        let (server, client, addr) = loopback_pair();
        let total = 32usize << 20;
        let serve = tokio::spawn(async move {
            let conn = server.accept().await.unwrap().await.unwrap();
            let (mut send, _recv) = conn.accept_bi().await.unwrap();
            let chunk = bytes::Bytes::from(vec![7u8; 64 << 10]);
            for _ in 0..total / chunk.len() {
                send.write_chunk(chunk.clone()).await.unwrap();
            }
            send.finish().unwrap();
            let _ = send.stopped().await;
            let stats = conn.stats().path;
            conn.close(0u32.into(), b"done");
            stats
        });
        let conn = client
            .connect(addr, tlsid::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"go").await.unwrap();
        let got = recv.read_to_end(total + 1).await.unwrap();
        assert_eq!(got.len(), total);
        let sender = serve.await.unwrap();
        assert!(
            sender.current_mtu > 1452,
            "path MTU stayed at {}",
            sender.current_mtu
        );
        assert_eq!(sender.black_holes_detected, 0);
    }

    /// An admitted session is granted its first streams, and the whole of
    /// its limit once it shows it uses them: an idle session holds no
    /// state for streams it never opens, a busy one is not held to the
    /// first grant.
    #[tokio::test]
    async fn a_session_is_granted_its_stream_limit_once_it_opens_streams() {
        use crate::transport::conn::{FIRST_STREAMS, RAISE_AT};
        use crate::transport::{Connection, Grant, QuicConn};
        let (server, client, addr) = loopback_pair();
        let connecting = client.connect(addr, tlsid::SERVER_NAME).unwrap();
        let (daemon, engineer) = tokio::join!(
            async { QuicConn::new(server.accept().await.unwrap().await.unwrap(), None) },
            async { connecting.await.unwrap() }
        );
        // The control stream, accepted before the grant (one stream is
        // all a connection may open before admission).
        let open = |n: u8| {
            let engineer = engineer.clone();
            async move {
                let (mut send, recv) = engineer.open_bi().await.unwrap();
                send.write_all(&[n]).await.unwrap();
                (send, recv)
            }
        };
        let mut held = vec![open(0).await];
        let mut accepted = vec![daemon.accept_bi().await.unwrap()];
        daemon.grant(Grant::Session { streams: 100 });
        for n in 1..FIRST_STREAMS {
            held.push(open(n as u8).await);
        }
        let beyond = tokio::time::timeout(Duration::from_millis(200), open(99)).await;
        assert!(
            beyond.is_err(),
            "more than the first grant before any was used"
        );
        // The RAISE_AT-th accepted stream raises the grant to the limit.
        while accepted.len() < RAISE_AT as usize {
            accepted.push(daemon.accept_bi().await.unwrap());
        }
        for n in 0..40u8 {
            let opened = tokio::time::timeout(Duration::from_secs(5), open(100 + n)).await;
            held.push(opened.expect("the grant was raised to the limit"));
        }
        assert_eq!(held.len(), FIRST_STREAMS as usize + 40);
    }
}
