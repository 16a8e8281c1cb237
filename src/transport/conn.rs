//! The transport abstraction: one authenticated connection carrying a
//! session's streams. QUIC implements it natively (`QuicConn`); TLS over
//! TCP implements it with streams multiplexed over the one connection
//! (`MuxConn`, `mux.rs`). The gateway and the client see only
//! [`Connection`]: open or accept a bidirectional stream, close with a
//! code and a reason, learn how it closed, and send unreliable datagrams
//! where the transport has them. Dialling and accepting are each
//! transport's own (`quic.rs`, `mux.rs`); a relay will be one more
//! implementation of this trait.
//!
//! Stream bytes take one of two shapes, chosen by the transport: raw bytes
//! on a QUIC stream, whose resets carry reason codes, or `Data`/`Close`
//! frames on a multiplexed stream, which has no reset codes (see
//! [`PipeReader`], [`PipeWriter`]). Everything above the pipes is the same.

use super::{PipeReader, PipeWriter};
use crate::tlsid::AuthenticatedPeer;
use edgegate_proto::audit::Transport;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future, so that [`Connection`] can be used as `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One bidirectional stream.
pub struct BiStream {
    /// The stream's id, the same on both ends (a `StreamClosed` notice
    /// names it).
    pub id: u64,
    /// Bytes to the peer.
    pub send: PipeWriter,
    /// Bytes from the peer.
    pub recv: PipeReader,
}

impl BiStream {
    /// The stream as plain bytes both ways: a QUIC stream's own bytes, or
    /// a multiplexed stream's bytes without `Data`/`Close` frames. For
    /// protocols that bring their own framing (the relay's, and the TLS
    /// session it carries).
    pub fn into_raw(self) -> super::RawStream {
        tokio::io::join(self.recv, self.send)
    }
}

/// What a daemon grants a connection once its first frame is judged:
/// before that it may have one stream and a small window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// A push may send its bundle: this many bytes in flight.
    Push {
        /// The bundle's frame size.
        bytes: u64,
    },
    /// An admitted session may open this many streams (at once).
    Session {
        /// Streams, control stream included.
        streams: u32,
    },
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// Closed on purpose with an application code (QUIC carries the
    /// peer's; a multiplexed connection only knows the one it closed with
    /// itself, the peer's words travel on the control stream before).
    App {
        /// The application error code.
        code: u64,
        /// The reason text.
        reason: String,
    },
    /// Lost, reset, timed out or closed by the peer without a code.
    Lost(String),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::App { reason, .. } => f.write_str(reason),
            Closed::Lost(why) => f.write_str(why),
        }
    }
}

/// An established, mutually authenticated connection.
pub trait Connection: Send + Sync {
    /// Which transport this is (for the audit log and `sessions`).
    fn transport(&self) -> Transport;

    /// The peer's address.
    fn remote(&self) -> SocketAddr;

    /// The peer's key, proven by the handshake.
    fn peer(&self) -> Option<AuthenticatedPeer>;

    /// Let the peer send more than before admission (daemon side).
    fn grant(&self, grant: Grant);

    /// Open a stream towards the peer.
    fn open_bi(&self) -> BoxFuture<'_, io::Result<BiStream>>;

    /// Wait for the peer's next stream; an error once the connection ended.
    fn accept_bi(&self) -> BoxFuture<'_, io::Result<BiStream>>;

    /// Close the connection now with `code` and `reason`.
    fn close(&self, code: u32, reason: &str);

    /// Wait until the connection has ended, and say how.
    fn closed(&self) -> BoxFuture<'_, Closed>;

    /// After `close`: wait until the close has left for the peer (callers
    /// bound it in time), so a process about to exit does not leave the
    /// peer to find out by a timeout.
    fn drain(&self) -> BoxFuture<'_, ()>;

    /// The largest datagram the peer accepts now; `None` where the
    /// transport has no datagrams (there, packets ride a stream).
    fn max_datagram_size(&self) -> Option<usize> {
        None
    }

    /// Room for datagrams waiting to be sent, in bytes (QUIC only: 0
    /// elsewhere). A datagram larger than this would push out older ones.
    fn datagram_send_space(&self) -> usize {
        0
    }

    /// Send an unreliable datagram (QUIC only).
    fn send_datagram(&self, _data: bytes::Bytes) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this transport has no datagrams",
        ))
    }

    /// Send an unreliable datagram, waiting while the datagrams already
    /// queued fill the send buffer (QUIC only): nothing older is pushed out.
    fn send_datagram_wait(&self, _data: bytes::Bytes) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this transport has no datagrams",
            ))
        })
    }

    /// Receive the next datagram (QUIC only).
    fn read_datagram(&self) -> BoxFuture<'_, io::Result<bytes::Bytes>> {
        Box::pin(async {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this transport has no datagrams",
            ))
        })
    }
}

/// A QUIC connection: streams and datagrams are quinn's own.
#[derive(Debug, Clone)]
pub struct QuicConn {
    conn: quinn::Connection,
    /// Kept alive as long as a connection of it is in use (client side:
    /// the endpoint drives the socket).
    _endpoint: Option<quinn::Endpoint>,
    /// The session's stream grant, given in two steps (`grant`).
    streams: Arc<StreamGrant>,
}

/// Streams an admitted session may open at once before it has opened any:
/// quinn keeps state for every stream it allows (about 80 bytes each), and
/// an idle session with a 256-stream limit held 20 KiB for streams it
/// never opened. Its [`RAISE_AT`]th stream raises the grant to the limit.
pub(super) const FIRST_STREAMS: u32 = 8;

/// The accepted stream (control stream included) that raises a session's
/// grant from [`FIRST_STREAMS`] to its limit: while the client still has
/// half of the first grant to open, so a burst is not held up by it.
pub(super) const RAISE_AT: u32 = FIRST_STREAMS / 2;

/// A session's stream limit, and how far it is granted.
#[derive(Debug, Default)]
struct StreamGrant {
    /// The session's limit (`Grant::Session`); 0 before a session is
    /// admitted, or where nothing is granted this way.
    limit: std::sync::atomic::AtomicU32,
    /// Streams accepted so far.
    accepted: std::sync::atomic::AtomicU32,
}

impl QuicConn {
    /// Wrap an established connection. A client passes its endpoint, so
    /// the socket lives as long as the connection.
    pub fn new(conn: quinn::Connection, endpoint: Option<quinn::Endpoint>) -> QuicConn {
        QuicConn {
            conn,
            _endpoint: endpoint,
            streams: Arc::default(),
        }
    }

    /// A stream was accepted: the one that shows the session uses streams
    /// raises its grant to the limit.
    fn accepted(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.streams.accepted.fetch_add(1, Relaxed) + 1;
        let limit = self.streams.limit.load(Relaxed);
        if n == RAISE_AT && limit > FIRST_STREAMS {
            self.conn.set_max_concurrent_bi_streams(limit.into());
        }
    }
}

fn quic_stream((send, recv): (quinn::SendStream, quinn::RecvStream)) -> BiStream {
    BiStream {
        id: u64::from(send.id()),
        send: PipeWriter::Quic(send),
        recv: PipeReader::Quic(recv),
    }
}

impl Connection for QuicConn {
    fn transport(&self) -> Transport {
        Transport::Quic
    }

    fn grant(&self, grant: Grant) {
        use super::quic::SESSION_WINDOW;
        match grant {
            Grant::Push { bytes } => {
                let window = bytes.clamp(SESSION_WINDOW.into(), quinn::VarInt::MAX.into_inner());
                self.conn.set_receive_window(
                    quinn::VarInt::from_u64(window).unwrap_or(quinn::VarInt::MAX),
                );
            }
            Grant::Session { streams } => {
                use std::sync::atomic::Ordering::Relaxed;
                self.conn.set_receive_window(SESSION_WINDOW.into());
                self.streams.limit.store(streams, Relaxed);
                let first = if self.streams.accepted.load(Relaxed) >= RAISE_AT {
                    streams
                } else {
                    streams.min(FIRST_STREAMS)
                };
                self.conn.set_max_concurrent_bi_streams(first.into());
            }
        }
    }

    fn remote(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    fn peer(&self) -> Option<AuthenticatedPeer> {
        AuthenticatedPeer::from_quic(&self.conn)
    }

    fn open_bi(&self) -> BoxFuture<'_, io::Result<BiStream>> {
        Box::pin(async move {
            let pair = self.conn.open_bi().await.map_err(io::Error::other)?;
            Ok(quic_stream(pair))
        })
    }

    fn accept_bi(&self) -> BoxFuture<'_, io::Result<BiStream>> {
        Box::pin(async move {
            let pair = self.conn.accept_bi().await.map_err(io::Error::other)?;
            self.accepted();
            Ok(quic_stream(pair))
        })
    }

    fn close(&self, code: u32, reason: &str) {
        self.conn
            .close(quinn::VarInt::from_u32(code), reason.as_bytes());
    }

    fn closed(&self) -> BoxFuture<'_, Closed> {
        Box::pin(async move {
            match self.conn.closed().await {
                quinn::ConnectionError::ApplicationClosed(c) => Closed::App {
                    code: c.error_code.into_inner(),
                    reason: String::from_utf8_lossy(&c.reason).into_owned(),
                },
                e => Closed::Lost(e.to_string()),
            }
        })
    }

    fn drain(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            match &self._endpoint {
                Some(endpoint) => endpoint.wait_idle().await,
                None => drop(self.conn.closed().await),
            }
        })
    }

    fn max_datagram_size(&self) -> Option<usize> {
        self.conn.max_datagram_size()
    }

    fn datagram_send_space(&self) -> usize {
        self.conn.datagram_send_buffer_space()
    }

    fn send_datagram(&self, data: bytes::Bytes) -> io::Result<()> {
        self.conn.send_datagram(data).map_err(io::Error::other)
    }

    fn send_datagram_wait(&self, data: bytes::Bytes) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.conn
                .send_datagram_wait(data)
                .await
                .map_err(io::Error::other)
        })
    }

    fn read_datagram(&self) -> BoxFuture<'_, io::Result<bytes::Bytes>> {
        Box::pin(async move { self.conn.read_datagram().await.map_err(io::Error::other) })
    }
}
