//! The TLS-over-TCP transport: one TCP connection per session, its streams
//! multiplexed by yamux. yamux needs one task to drive the connection (it
//! reads and writes the socket for every stream); [`MuxConn`] is a handle
//! to that task: it asks it for outbound streams, receives the inbound
//! ones, and learns how the connection ended.
//!
//! A multiplexed stream has no reset codes, so its bytes travel as
//! `Data`/`Close` frames (`PipeReader::Framed`), which carry a cut's reason,
//! a read-level refusal and a session's end in band.

mod halves;

use super::coalesce::Coalesce;
use super::conn::{BiStream, BoxFuture, Closed, Connection, Grant};
use super::{PipeReader, PipeWriter};
use crate::tlsid::AuthenticatedPeer;
use edgegate_proto::audit::Transport;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

/// Which end of the connection this is (yamux numbers streams by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The end that dialled.
    Client,
    /// The end that accepted.
    Server,
}

/// The largest TLS plaintext record.
const TLS_RECORD: usize = 16 << 10;

/// yamux's frame header.
const YAMUX_HEADER: usize = 12;

/// The largest yamux frame body this end sends: with its header, four full
/// TLS records.
pub(crate) const FRAME_MAX: usize = 4 * TLS_RECORD - YAMUX_HEADER;

/// Most streams a connection may hold at once, whatever the config says.
pub const MAX_STREAMS: usize = 1024;

/// How long closing may take before the socket is simply dropped.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// How far the receive windows of one connection's busy streams may grow
/// beyond 256 KiB a stream, all streams together: yamux doubles a stream's
/// window while its sender uses half of it within two round trips, up to
/// this allowance. Bytes are buffered only when the reader falls behind;
/// an idle stream holds none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Growth(pub usize);

impl Growth {
    /// A router (the gateway and its uplink): none. Its streams stay at
    /// 256 KiB (as QUIC's, `quic::STREAM_WINDOW`), so an admitted session
    /// holds what `docs/deploy.md` budgets; an upload to a machine is the
    /// rare direction.
    pub const ROUTER: Growth = Growth(0);
    /// An engineer's client: 16 MiB, so a download is not capped at 256 KiB
    /// a round trip (70 Mbit/s at 30 ms; ssh's channel window is 2 MiB). On
    /// loopback it took one TLS stream from 2.6-2.7 to 2.8-3.3 Gbit/s and
    /// one through a relay from 1.2-1.3 to 1.8-2.1 (benches/README.md).
    pub const CLIENT: Growth = Growth(16 << 20);
    /// A relay (its side of a router's or an engineer's link): 4 MiB a
    /// link, so the hop from the router to the relay keeps up with the one
    /// to the engineer.
    pub const RELAY: Growth = Growth(4 << 20);
}

/// The connection's settings: at most `max_streams` streams, each with
/// yamux's 256 KiB receive window, busy ones growing into `growth`.
fn config(max_streams: usize, growth: Growth) -> yamux::Config {
    let mut c = yamux::Config::default();
    // A frame and its 12-byte header fill four TLS records exactly (rustls
    // seals records of at most 16 KiB, and `Coalesce` hands it header and
    // body as one write; yamux's default 16 KiB frames cost a full record
    // and a 12-byte one each), and a bulk stream's reads pass the driver as
    // one frame, not four.
    c.set_split_send_size(FRAME_MAX);
    // yamux asserts `max_streams * 256 KiB <= window`: keep both in range.
    let max_streams = max_streams.clamp(1, MAX_STREAMS);
    c.set_max_num_streams(max_streams);
    c.set_max_connection_receive_window(Some(
        max_streams * yamux::DEFAULT_CREDIT as usize + growth.0,
    ));
    c
}

enum Command {
    Open(oneshot::Sender<io::Result<yamux::Stream>>),
    Close,
}

/// A handle to one multiplexed connection. Cheap to clone; the connection
/// closes when every handle is gone.
#[derive(Clone)]
pub struct MuxConn {
    shared: Arc<Shared>,
}

struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    /// Inbound streams the peer may have had so far: one (the control
    /// stream, or a push) until the session is admitted. Streams beyond it
    /// are reset as they arrive, so an unadmitted peer cannot park data in
    /// many of them.
    granted: Arc<std::sync::atomic::AtomicUsize>,
    inbound: tokio::sync::Mutex<mpsc::UnboundedReceiver<yamux::Stream>>,
    ended: watch::Receiver<Option<Closed>>,
    /// How this end closed it, if it did (reported by `closed`).
    closed_here: Mutex<Option<Closed>>,
    peer: Option<AuthenticatedPeer>,
    remote: SocketAddr,
}

impl std::fmt::Debug for MuxConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxConn")
            .field("remote", &self.shared.remote)
            .finish_non_exhaustive()
    }
}

impl MuxConn {
    /// Start multiplexing over `io` (an established TLS stream), allowing
    /// the peer at most `max_streams` streams at once, their receive windows
    /// growing into `growth`.
    pub fn new<T>(
        io: T,
        side: Side,
        max_streams: usize,
        growth: Growth,
        peer: Option<AuthenticatedPeer>,
        remote: SocketAddr,
    ) -> MuxConn
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mode = match side {
            Side::Client => yamux::Mode::Client,
            Side::Server => yamux::Mode::Server,
        };
        let conn = yamux::Connection::new(
            Coalesce::new(io).compat(),
            config(max_streams, growth),
            mode,
        );
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (inbound_tx, inbound) = mpsc::unbounded_channel();
        let (ended_tx, ended) = watch::channel(None);
        // A client accepts nothing but may be sent streams only by its
        // daemon; the daemon grants one until admission.
        let granted = Arc::new(std::sync::atomic::AtomicUsize::new(match side {
            Side::Client => usize::MAX,
            Side::Server => 1,
        }));
        tokio::spawn(drive(
            conn,
            commands_rx,
            inbound_tx,
            ended_tx,
            granted.clone(),
        ));
        MuxConn {
            shared: Arc::new(Shared {
                granted,
                commands,
                inbound: tokio::sync::Mutex::new(inbound),
                ended,
                closed_here: Mutex::new(None),
                peer,
                remote,
            }),
        }
    }
}

fn lost(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, why.to_string())
}

/// A yamux stream as a pipe pair. The stream's sender parks a single
/// task, and its reads use it too (window updates): the halves are split
/// by `halves.rs` so that each may be polled from a task of its own
/// without losing a wake-up.
fn bi(stream: yamux::Stream) -> BiStream {
    let id = u64::from(stream.id().val());
    // Not `tokio::io::split`: see `halves.rs` (a lost wake-up).
    let (r, w) = halves::split(stream.compat());
    BiStream {
        id,
        send: PipeWriter::Framed(Box::new(w)),
        recv: PipeReader::Framed(Box::new(r)),
    }
}

/// Drive the connection until it ends or is asked to close: serve open
/// requests, hand inbound streams over, and publish how it ended.
async fn drive<T>(
    mut conn: yamux::Connection<tokio_util::compat::Compat<Coalesce<T>>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    inbound: mpsc::UnboundedSender<yamux::Stream>,
    ended: watch::Sender<Option<Closed>>,
    granted: Arc<std::sync::atomic::AtomicUsize>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut delivered = 0usize;
    let mut opening: std::collections::VecDeque<oneshot::Sender<io::Result<yamux::Stream>>> =
        Default::default();
    let end = poll_fn(|cx| {
        loop {
            match commands.poll_recv(cx) {
                Poll::Ready(Some(Command::Open(reply))) => opening.push_back(reply),
                // Asked to close, or every handle is gone.
                Poll::Ready(Some(Command::Close) | None) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        while !opening.is_empty() {
            match conn.poll_new_outbound(cx) {
                Poll::Ready(result) => {
                    let reply = opening.pop_front().expect("not empty");
                    let _ = reply.send(result.map_err(lost));
                }
                Poll::Pending => break,
            }
        }
        loop {
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    let allowed = granted.load(std::sync::atomic::Ordering::Acquire);
                    if delivered < allowed {
                        delivered += 1;
                        // Nobody accepting any more: the stream is dropped (reset).
                        drop(inbound.send(stream));
                    }
                    // Else dropped at once: reset, its data discarded.
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Closed::Lost(e.to_string()))),
                Poll::Ready(None) => {
                    return Poll::Ready(Some(Closed::Lost("connection closed by the peer".into())))
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
    for reply in opening {
        let _ = reply.send(Err(lost("connection closed")));
    }
    let end = match end {
        Some(lost) => lost,
        None => {
            // Say goodbye (yamux GoAway, TLS close_notify), bounded.
            let close = poll_fn(|cx| conn.poll_close(cx));
            let _ = tokio::time::timeout(CLOSE_LIMIT, close).await;
            Closed::Lost("connection closed".into())
        }
    };
    ended.send_replace(Some(end));
}

impl Connection for MuxConn {
    fn transport(&self) -> Transport {
        Transport::Tls
    }

    fn remote(&self) -> SocketAddr {
        self.shared.remote
    }

    fn peer(&self) -> Option<AuthenticatedPeer> {
        self.shared.peer
    }

    fn grant(&self, grant: Grant) {
        // yamux's windows are per stream (256 KiB, its spec's minimum); a
        // session is granted its streams (their count is bounded by yamux's
        // `max_num_streams` for the connection).
        if let Grant::Session { .. } = grant {
            self.shared
                .granted
                .store(usize::MAX, std::sync::atomic::Ordering::Release);
        }
    }

    fn open_bi(&self) -> BoxFuture<'_, io::Result<BiStream>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.shared
                .commands
                .send(Command::Open(reply))
                .map_err(|_| lost("connection closed"))?;
            let stream = answer.await.map_err(|_| lost("connection closed"))??;
            Ok(bi(stream))
        })
    }

    fn accept_bi(&self) -> BoxFuture<'_, io::Result<BiStream>> {
        Box::pin(async move {
            let mut inbound = self.shared.inbound.lock().await;
            match inbound.recv().await {
                Some(stream) => Ok(bi(stream)),
                None => Err(lost("connection closed")),
            }
        })
    }

    fn close(&self, code: u32, reason: &str) {
        let mut here = self
            .shared
            .closed_here
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        here.get_or_insert(Closed::App {
            code: code.into(),
            reason: reason.to_string(),
        });
        let _ = self.shared.commands.send(Command::Close);
    }

    fn drain(&self) -> BoxFuture<'_, ()> {
        // The driver ends once its goodbye is written (bounded).
        Box::pin(async move { drop(self.closed().await) })
    }

    fn closed(&self) -> BoxFuture<'_, Closed> {
        Box::pin(async move {
            let mut ended = self.shared.ended.clone();
            let end = match ended.wait_for(Option::is_some).await {
                Ok(end) => end.clone().expect("waited for Some"),
                Err(_) => Closed::Lost("connection closed".into()),
            };
            let here = self
                .shared
                .closed_here
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            here.unwrap_or(end)
        })
    }
}

/// TCP keep-alive on a session's socket: a peer that vanished (a laptop
/// closed, a cellular link gone) is noticed within about a minute even
/// while no stream moves a byte. Best effort.
pub fn keep_alive(tcp: &tokio::net::TcpStream) {
    keep_alive_after(tcp, 30);
}

/// [`keep_alive`], the first probe after `idle` seconds of silence: on a
/// relay link, whose own pings come less often than every 30 s (a probe
/// between them would cost as much as a ping).
pub fn keep_alive_after(tcp: &tokio::net::TcpStream, idle: u32) {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{setsockopt, sockopt};
        let _ = setsockopt(tcp, sockopt::KeepAlive, &true);
        let _ = setsockopt(tcp, sockopt::TcpKeepIdle, &idle);
        let _ = setsockopt(tcp, sockopt::TcpKeepInterval, &10);
        let _ = setsockopt(tcp, sockopt::TcpKeepCount, &3);
    }
    // Windows: the same idle time and interval; the probe count is the
    // system's (10), which socket2 cannot set there.
    #[cfg(windows)]
    {
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(std::time::Duration::from_secs(idle.into()))
            .with_interval(std::time::Duration::from_secs(10));
        let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive);
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    let _ = (tcp, idle);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{expect_frame, write_frame, Chunk};
    use edgegate_proto::frame::{Frame, MAX_FRAME};

    fn pair() -> (MuxConn, MuxConn) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        (
            MuxConn::new(a, Side::Client, 8, Growth::CLIENT, None, addr),
            MuxConn::new(b, Side::Server, 8, Growth::ROUTER, None, addr),
        )
    }

    #[tokio::test]
    async fn streams_carry_frames_both_ways_and_share_ids() {
        let (client, server) = pair();
        server.grant(Grant::Session { streams: 8 });
        for n in 0..3u8 {
            let mut out = client.open_bi().await.unwrap();
            write_frame(&mut out.send, &Frame::Data(vec![n; 10]))
                .await
                .unwrap();
            let mut inc = server.accept_bi().await.unwrap();
            assert_eq!(inc.id, out.id);
            let got = expect_frame(&mut inc.recv, MAX_FRAME).await.unwrap();
            assert_eq!(got, Frame::Data(vec![n; 10]));
            inc.send.write(&[n; 70_000]).await.unwrap();
            inc.send.finish().await.unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0;
            loop {
                match out.recv.read_chunk(&mut buf).await.unwrap() {
                    Chunk::Data(k) => total += k,
                    Chunk::End => break,
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(total, 70_000);
        }
    }

    /// A router's stream holds at most yamux's 256 KiB unread, whatever the
    /// engineer's end sends (the budget of `docs/deploy.md`; a window grows
    /// only while its reader keeps up, and a router's does not grow at all,
    /// `Growth::ROUTER`). The writer stalls until the router reads, then
    /// goes on.
    #[tokio::test(start_paused = true)]
    async fn a_router_stream_holds_at_most_its_window_unread() {
        let (client, server) = pair();
        server.grant(Grant::Session { streams: 8 });
        let mut out = client.open_bi().await.unwrap();
        let chunk = vec![7u8; 16 << 10];
        let mut sent = 0usize;
        while let Ok(r) = tokio::time::timeout(Duration::from_secs(1), out.send.write(&chunk)).await
        {
            r.unwrap();
            sent += chunk.len();
            assert!(sent <= 1 << 20, "the router's end took {sent} bytes unread");
        }
        let window = yamux::DEFAULT_CREDIT as usize;
        assert!(
            (window / 2..=window + chunk.len()).contains(&sent),
            "{sent} bytes taken before the writer stalled"
        );
        // The router reads: the writer goes on.
        let mut inc = server.accept_bi().await.unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0usize;
        while got < sent {
            match inc.recv.read_chunk(&mut buf).await.unwrap() {
                Chunk::Data(k) => got += k,
                other => panic!("{other:?}"),
            }
        }
        tokio::time::timeout(Duration::from_secs(1), out.send.write(&chunk))
            .await
            .expect("the writer goes on once the router read")
            .unwrap();
    }

    #[tokio::test]
    async fn closing_ends_both_sides_and_says_how() {
        let (client, server) = pair();
        let _s = client.open_bi().await.unwrap();
        client.close(7, "bye");
        assert_eq!(
            client.closed().await,
            Closed::App {
                code: 7,
                reason: "bye".into()
            }
        );
        assert!(matches!(server.closed().await, Closed::Lost(_)));
        // At most the stream opened before (if its SYN left), then the end.
        let first = server.accept_bi().await.is_err();
        assert!(first || server.accept_bi().await.is_err());
        assert!(client.open_bi().await.is_err());
    }

    /// Before admission the server takes one stream; further ones are
    /// reset unread (they cannot park data), until the session is granted.
    #[tokio::test]
    async fn an_unadmitted_peer_gets_one_stream() {
        let (client, server) = pair();
        let mut first = client.open_bi().await.unwrap();
        write_frame(&mut first.send, &Frame::Data(vec![1]))
            .await
            .unwrap();
        let mut extra = client.open_bi().await.unwrap();
        write_frame(&mut extra.send, &Frame::Data(vec![2; 100_000]))
            .await
            .unwrap();
        let mut got = server.accept_bi().await.unwrap();
        assert_eq!(got.id, first.id);
        assert_eq!(
            expect_frame(&mut got.recv, MAX_FRAME).await.unwrap(),
            Frame::Data(vec![1])
        );
        // The extra stream was reset: its reader sees no answer but an end.
        let mut buf = vec![0u8; 16];
        assert!(extra.recv.read_chunk(&mut buf).await.is_err());
        server.grant(Grant::Session { streams: 8 });
        let mut later = client.open_bi().await.unwrap();
        write_frame(&mut later.send, &Frame::Data(vec![3]))
            .await
            .unwrap();
        let mut got = server.accept_bi().await.unwrap();
        assert_eq!(got.id, later.id);
        assert_eq!(
            expect_frame(&mut got.recv, MAX_FRAME).await.unwrap(),
            Frame::Data(vec![3])
        );
    }

    /// Small frames both ways at once on one stream, each direction in a
    /// task of its own (the VPN's packets over TLS): a read must not steal
    /// the wake-up a blocked write waits for (yamux's halves share one
    /// command channel and its one waker slot).
    #[tokio::test]
    async fn a_stream_carries_small_frames_both_ways_at_once() {
        const FRAMES: usize = 20_000;
        let (client, server) = pair();
        server.grant(Grant::Session { streams: 8 });
        let mut out = client.open_bi().await.unwrap();
        write_frame(&mut out.send, &Frame::Data(vec![0]))
            .await
            .unwrap();
        let mut inc = server.accept_bi().await.unwrap();
        expect_frame(&mut inc.recv, MAX_FRAME).await.unwrap();
        let pump = |mut send: PipeWriter, mut recv: PipeReader| async move {
            let writing = tokio::spawn(async move {
                for n in 0..FRAMES {
                    let packet = Frame::Packet(vec![n as u8; 60]);
                    write_frame(&mut send, &packet).await.unwrap();
                }
                send
            });
            let mut got = 0;
            while got < FRAMES {
                match expect_frame(&mut recv, MAX_FRAME).await.unwrap() {
                    Frame::Packet(p) => assert_eq!(p, vec![got as u8; 60]),
                    other => panic!("{other:?}"),
                }
                got += 1;
            }
            writing.await.unwrap()
        };
        let both = async {
            tokio::join!(
                tokio::spawn(pump(out.send, out.recv)),
                tokio::spawn(pump(inc.send, inc.recv))
            )
        };
        let (a, b) = tokio::time::timeout(Duration::from_secs(30), both)
            .await
            .expect("both directions finish");
        a.unwrap();
        b.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_handle_set_closes_the_connection() {
        let (client, server) = pair();
        drop(client);
        assert!(matches!(server.closed().await, Closed::Lost(_)));
    }
}
